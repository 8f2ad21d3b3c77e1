// `tandem server status --url http://HOST:PORT [--url ...]`: what each running host holds,
// read from its /status.json (docs/operations.md): the cluster's members as that host sees
// them, the channels it serves (a client connected) or replicates (only other hosts' links),
// each channel's replica lag, and its devices. One host per --url; with --json, one JSON line
// per host as the host sent it, with the URL added. Exit status 0 when every host answered,
// 1 when one did not (the others are still printed), 2 for bad arguments.
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/tandem/commands.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/net/http_get.hpp"

namespace tandem::app {
namespace {

using nlohmann::json;

struct StatusCommand {
  std::vector<std::string> urls;
  std::string token_file;  // holds the server's --metrics-token; none: loopback access
  std::string ca_file;
  bool json_lines = false;
};

// Hosts connect to each other when a user first needs it: a member without a connection
// and without an error was simply not needed yet.
std::string member_state(const json& m) {
  if (m.value("self", false)) return "";
  if (m.value("connected", false)) return "  connected";
  if (m.value("connecting", false)) return "  connecting";
  const std::string error = m.value("last_error", "");
  return error.empty() ? "  not connected yet (hosts connect on first use)" : "  NOT connected: " + error;
}

void print_host(const std::string& url, const json& s) {
  std::cout << "host " << url << "  up " << s.value("uptime_s", 0) << " s";
  const auto& d = s["directory"];
  if (d.value("ok", false))
    std::cout << "  open channels " << d.value("open_channels", 0) << "/" << d.value("max_open_channels", 0);
  else
    std::cout << "  directory did not answer: " << d.value("error", "");
  std::cout << "\n";
  if (!s["members"].empty()) {
    std::cout << "  members:\n";
    for (const auto& m : s["members"])
      std::cout << "    " << m.value("endpoint", "") << (m.value("self", false) ? "  (this host)" : "")
                << member_state(m) << "\n";
  }
  if (s["channels"].empty()) {
    std::cout << "  no channel open\n";
  } else {
    std::cout << "  channels:\n";
    for (const auto& c : s["channels"]) {
      int devices = 0;
      for (const auto& v : c["devices"]) devices += !v.value("replica", false);
      std::cout << "    " << c.value("user", "") << "  " << c.value("role", "") << "  db_version "
                << c.value("db_version", 0) << "  devices " << devices << "  replica links "
                << c.value("replica_links", 0);
      if (c.value("replica_links", 0) > 0) std::cout << " (lag " << c.value("replica_lag", 0) << ")";
      std::cout << "\n";
      for (const auto& v : c["devices"]) {
        if (v.value("replica", false)) continue;
        std::cout << "      device " << v.value("site", "") << " " << v.value("client", "") << "  cursor "
                  << v.value("cursor", 0) << "  lag " << v.value("lag", 0) << "  seen "
                  << v.value("last_seen_ago_ms", 0) / 1000.0 << " s ago\n";
      }
    }
  }
  for (const auto& u : s["unanswered"]) std::cout << "  channel " << u.get<std::string>() << " did not answer in time\n";
  std::cout << "  errors since start: " << s.value("errors_total", 0) << "\n";
}

int run_status(const StatusCommand& opts) {
  net::HttpGetOptions get;
  get.ca_file = opts.ca_file;
  if (!opts.token_file.empty()) {
    auto token = auth::read_trimmed_file(opts.token_file, "--token-file");
    if (!token.ok()) {
      std::cerr << "tandem server status: " << token.status().message() << "\n";
      return 2;
    }
    get.authorization = "Bearer " + *token;
  }
  for (const auto& url : opts.urls)
    if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
      std::cerr << "tandem server status: --url '" << url << "' must start with http:// or https://\n";
      return 2;
    }
  int code = 0;
  for (const auto& url : opts.urls) {
    std::string base = url;
    while (!base.empty() && base.back() == '/') base.pop_back();
    auto answer = net::http_get(base + "/status.json", get);
    std::string failure;
    json status;
    if (!answer.ok()) failure = answer.status().to_string();
    else if (answer->status != 200)
      failure = "HTTP " + std::to_string(answer->status) +
                (answer->status == 401 || answer->status == 403 ? " (give --token-file with the server's --metrics-token)" : "");
    else {
      status = json::parse(answer->body, nullptr, false);
      if (status.is_discarded() || !status.is_object()) failure = "the answer is not the status JSON";
    }
    if (!failure.empty()) {
      std::cerr << "tandem server status: " << url << ": " << failure << "\n";
      code = 1;
      continue;
    }
    if (opts.json_lines) {
      status["url"] = url;
      std::cout << status.dump() << std::endl;
    } else {
      print_host(url, status);
    }
  }
  return code;
}

}  // namespace

void add_server_status_command(CLI::App& server) {
  auto opts = std::make_shared<StatusCommand>();
  auto* cmd = server.add_subcommand(
      "status", "Show what running hosts hold: members, channels served or replicated, replica lag, devices");
  cmd->add_option("--url", opts->urls, "A host's HTTP address, e.g. http://127.0.0.1:7000 (repeat for each host)")
      ->required();
  cmd->add_option("--token-file", opts->token_file,
                  "File holding the servers' --metrics-token (needed unless run on the server's host)");
  cmd->add_option("--ca-file", opts->ca_file, "PEM certificate to trust for https:// (default: system store)");
  cmd->add_flag("--json", opts->json_lines, "One JSON line per host (its /status.json with \"url\")");
  cmd->callback([opts] {
    const int code = run_status(*opts);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace tandem::app
