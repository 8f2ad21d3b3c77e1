// `tandem server`: the sync server. Accepts WebSocket (or TLS) connections, authenticates
// each client's hello, and keeps one SQLite file per user under --data-dir.
// Prints "listening on ws://HOST:PORT" on stdout once it accepts connections; runs until
// SIGINT or SIGTERM, then closes every connection and every channel file cleanly. The same
// port answers plain HTTP GETs of /healthz, /readyz, /metrics and /status
// (runtime/metrics/admin_http.hpp).
#include "actors/system_config.hpp"
#include "actors/session.hpp"
#include "actors/cluster_link.hpp"
#include "actors/status_reporter.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include "apps/tandem/commands.hpp"
#include "apps/tandem/logging.hpp"
#include "apps/tandem/stop_signals.hpp"
#include "proto/cluster.pb.h"
#include "runtime/auth/token.hpp"
#include "runtime/common/process_lock.hpp"
#include "runtime/metrics/admin_http.hpp"

namespace tandem::app {
namespace {

struct ServerCommand {
  std::string listen = "127.0.0.1:7000";
  std::string data_dir;
  std::string secret_file;
  std::string tls_cert, tls_key;
  std::string log_level;
  std::string metrics_token;  // empty: /metrics for loopback peers only
  size_t max_channels = 256;
  std::string idle_close = "60s";
  std::string peer_expiry = "0";  // a duration; 0: peers never expire
  std::string hello_timeout = "10s";
  std::string idle_timeout = "30s";
  size_t max_frame_bytes = 16u << 20;
  uint32_t push_window = 16;
  uint32_t forward_window = 4;
  int io_threads = 1;
  int actor_threads = 2;
  std::string cluster_listen;                // this host's BASP endpoint (several hosts)
  std::vector<std::string> cluster_members;  // every host's endpoint, the same list everywhere
  std::string cluster_member_file;           // more members, one per line; re-read on SIGHUP
  uint32_t replicas = 0;      // 0: 2 with at least two hosts, else 1
  uint32_t write_quorum = 0;  // 0: 2 when replicas >= 2, else 1
  actors::ClusterLinkConfig cluster_link;    // --cluster-cert/-key/-ca or --cluster-insecure
  std::string cluster_handshake_timeout = "5s";
};

[[noreturn]] void die(const std::string& message) {
  std::cerr << "tandem server: " << message << "\n";
  throw CLI::RuntimeError(2);
}

bool split_host_port(const std::string& text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) return false;
  *host = text.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  const std::string p = text.substr(colon + 1);
  if (host->empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos) return false;
  int v = std::stoi(p);
  if (v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

// This host and the others: --cluster-member flags and the lines of --cluster-member-file
// (blank lines and '#' comments skipped; this host's own line is allowed, so one file can
// serve every host). Every entry must be HOST:PORT with a port.
Result<cluster::ClusterMembers> cluster_members(const ServerCommand& opts) {
  std::vector<std::string> listed = opts.cluster_members;
  if (!opts.cluster_member_file.empty()) {
    std::ifstream in(opts.cluster_member_file);
    if (!in) return Status::InvalidArgument("--cluster-member-file " + opts.cluster_member_file + ": cannot read it");
    std::string line;
    while (std::getline(in, line)) {
      line = line.substr(0, line.find('#'));
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos) continue;
      listed.push_back(line.substr(first, line.find_last_not_of(" \t\r") - first + 1));
    }
  }
  cluster::ClusterMembers members;
  members.set_self(opts.cluster_listen);
  std::set<std::string> seen{opts.cluster_listen};
  members.add_members(opts.cluster_listen);
  for (const auto& m : listed) {
    std::string h;
    uint16_t p = 0;
    if (!split_host_port(m, &h, &p) || p == 0) return Status::InvalidArgument("cluster member must be HOST:PORT, got '" + m + "'");
    if (seen.insert(m).second) members.add_members(m);
  }
  return members;
}


std::chrono::milliseconds duration_or_die(const std::string& flag, const std::string& text) {
  auto d = auth::parse_duration(text);
  if (!d.ok()) die(flag + ": " + d.status().message());
  return std::chrono::duration_cast<std::chrono::milliseconds>(*d);
}

void run_server(const ServerCommand& opts) {
  if (!setup_logging("server", opts.log_level)) throw CLI::RuntimeError(2);
  // Not required by the parser: `server compact`, `server backup` and `server restore` go without them.
  if (opts.data_dir.empty()) die("--data-dir is required");
  if (opts.secret_file.empty()) die("--secret-file is required");
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(opts.listen, &host, &port)) die("--listen must be HOST:PORT, got '" + opts.listen + "'");
  if (opts.tls_cert.empty() != opts.tls_key.empty()) die("--tls-cert and --tls-key go together");
  auto secret = auth::read_secret_file(opts.secret_file);
  if (!secret.ok()) die(secret.status().message());
  if (::mkdir(opts.data_dir.c_str(), 0700) != 0 && errno != EEXIST)
    die("cannot create --data-dir '" + opts.data_dir + "': " + std::strerror(errno));
  struct stat st{};
  if (::stat(opts.data_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) die("--data-dir '" + opts.data_dir + "' is not a directory");
  // Refused now rather than at the first client's write: every user file is created here.
  if (auto writable = metrics::probe_writable(opts.data_dir); !writable.ok())
    die(writable.message());
  // One server per data directory: two would write the same user files, each with its own
  // idea of their versions. Held until this function returns.
  auto data_dir_lock = ProcessLock::acquire(opts.data_dir + "/server.lock", "--data-dir '" + opts.data_dir + "'");
  if (!data_dir_lock.ok()) die(data_dir_lock.status().message());
  if (opts.max_channels == 0) die("--max-channels must be at least 1");
  if (opts.push_window == 0 || opts.forward_window == 0) die("windows must be at least 1");
  std::string cluster_host;
  uint16_t cluster_port = 0;
  const bool clustered = !opts.cluster_listen.empty();
  if (clustered && !split_host_port(opts.cluster_listen, &cluster_host, &cluster_port))
    die("--cluster-listen must be HOST:PORT, got '" + opts.cluster_listen + "'");
  if (!clustered && !opts.cluster_members.empty()) die("--cluster-member needs --cluster-listen");
  if (!clustered && !opts.cluster_member_file.empty()) die("--cluster-member-file needs --cluster-listen");
  auto listed = cluster_members(opts);
  if (!listed.ok()) die(listed.status().message());
  if (clustered && cluster_port == 0) die("--cluster-listen needs a fixed port: other hosts name this one by it");
  const uint32_t hosts = clustered ? static_cast<uint32_t>(listed->members_size()) : 1;
  const uint32_t replicas = opts.replicas != 0 ? opts.replicas : (hosts >= 2 ? 2 : 1);
  const uint32_t write_quorum = opts.write_quorum != 0 ? opts.write_quorum : (replicas >= 2 ? 2 : 1);
  if (replicas > hosts) die("--replicas " + std::to_string(replicas) + " needs at least that many hosts");
  if (write_quorum > replicas) die("--write-quorum cannot exceed --replicas");
  const bool cluster_flags = opts.cluster_link.insecure || !opts.cluster_link.tls.cert.empty() ||
                             !opts.cluster_link.tls.key.empty() || !opts.cluster_link.tls.ca.empty();
  if (!clustered && cluster_flags) die("--cluster-cert/--cluster-key/--cluster-ca/--cluster-insecure need --cluster-listen");
  auto link_cfg = opts.cluster_link;
  if (clustered) {
    link_cfg.handshake_timeout = duration_or_die("--cluster-handshake-timeout", opts.cluster_handshake_timeout);
    auto link = actors::check_cluster_link(link_cfg);
    if (!link.ok()) die(link.message());
  }

  // Every thread (CAF's, the I/O loop's) inherits this mask; the main thread waits for them,
  // and for SIGHUP, which re-reads the member file.
  sigset_t waited = block_stop_signals();
  if (!opts.cluster_member_file.empty()) {
    sigaddset(&waited, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &waited, nullptr);
  }

  caf::actor_system_config cfg;
  configure_actor_system(cfg, opts.actor_threads);
  if (clustered) actors::configure_cluster_link(cfg, link_cfg);
  caf::actor_system system{cfg};

  actors::DirectoryConfig dir_cfg;
  dir_cfg.data_dir = opts.data_dir;
  dir_cfg.max_open_channels = opts.max_channels;
  dir_cfg.idle_close = duration_or_die("--idle-close", opts.idle_close);
  dir_cfg.channel.push_window = opts.push_window;
  dir_cfg.channel.forward_window = opts.forward_window;
  if (opts.peer_expiry != "0")
    dir_cfg.channel.peer_expiry_seconds = duration_or_die("--peer-expiry", opts.peer_expiry).count() / 1000;
  dir_cfg.channel.max_frame_bytes = static_cast<uint32_t>(opts.max_frame_bytes);
  dir_cfg.channel.replicas = replicas;
  dir_cfg.channel.write_quorum = write_quorum;
  auto directory = actors::spawn_directory(system, dir_cfg);
  caf::io::middleman_actor cluster_mm;
  if (clustered) {
    cluster_mm = actors::start_cluster_link(system, link_cfg);
    auto published = actors::publish_directory(system, directory, cluster_port, cluster_host);
    if (!published) {
      caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
      die("--cluster-listen " + opts.cluster_listen + ": " + system.render(published.error()));
    }
    caf::anon_send(directory, *listed);
    spdlog::info("hop=server.cluster listen={} members={} replicas={} write_quorum={} tls={}", opts.cluster_listen,
                 listed->members_size(), replicas, write_quorum, link_cfg.insecure ? "off" : "on");
  }

  auto session_cfg = std::make_shared<actors::SessionConfig>();
  session_cfg->secret = *secret;
  session_cfg->hello_timeout = duration_or_die("--hello-timeout", opts.hello_timeout);
  session_cfg->session_id_base = (std::random_device{}() & 0xffffffULL) << 40;

  net::EventLoop loop(opts.io_threads);
  net::ServerOptions server_opts;
  server_opts.host = host;
  server_opts.port = port;
  server_opts.tls_cert_file = opts.tls_cert;
  server_opts.tls_key_file = opts.tls_key;
  server_opts.websocket_path = "/sync";  // the one sync path; anything else is 404
  server_opts.transport.max_frame_bytes = opts.max_frame_bytes;
  server_opts.transport.idle_timeout = duration_or_die("--idle-timeout", opts.idle_timeout);
  server_opts.transport.handshake_timeout = session_cfg->hello_timeout;
  auto admin = std::make_shared<metrics::AdminOptions>();
  admin->data_dir = opts.data_dir;
  admin->metrics_token = opts.metrics_token;
  admin->started_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  admin->status = [&system, directory](std::function<void(Result<cluster::DirectoryStatus>)> done) {
    actors::report_status(system, directory, std::chrono::seconds(1), std::move(done));
  };
  server_opts.http_async = [admin](const net::HttpRequest& request, net::HttpReply reply) {
    metrics::answer_admin_async(*admin, request, std::move(reply));
  };
  auto server = net::Server::listen(loop, server_opts, actors::make_session_acceptor(system, session_cfg, directory));
  if (!server.ok()) {
    caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
    die(server.status().message());
  }
  const std::string scheme = (*server)->tls() ? "wss" : "ws";
  const std::string shown_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::cout << "listening on " << scheme << "://" << shown_host << ":" << (*server)->port() << std::endl;
  spdlog::info("hop=server.start listen={}://{}:{} data_dir={} max_channels={}", scheme, shown_host,
               (*server)->port(), opts.data_dir, opts.max_channels);

  int sig = 0;
  for (;;) {
    sigwait(&waited, &sig);
    if (sig != SIGHUP) break;
    // Membership changes at run time: every host is given the new list the same way.
    auto changed = cluster_members(opts);
    if (!changed.ok()) {
      spdlog::error("hop=server.cluster reload refused, members unchanged: {}", changed.status().message());
      continue;
    }
    caf::anon_send(directory, *changed);
    spdlog::info("hop=server.cluster reload members={}", changed->members_size());
  }
  spdlog::info("hop=server.stop signal={}", sig);
  // Stopped within a second whatever hangs: every acknowledged write is already durable.
  exit_after(kStopGrace, 128 + sig);
  (*server)->stop();
  caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
  if (cluster_mm) caf::anon_send_exit(cluster_mm, caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  loop.stop();
  if (clustered) {
    // Every actor has finished: each channel recorded its acknowledgements and closed its file
    // when its state was destroyed on exit. ~actor_system would now wait (CAF 0.17,
    // await_detached_threads -> private_thread::await_self_destroyed) until every finished
    // detached actor is also *deallocated*; after a cluster peer died, a reference to a
    // finished channel can stay behind in CAF's remoting, and that wait never ends (seen with
    // gdb: the channel's file closed, its thread blocked there). Nothing is left to write,
    // so the process ends here rather than hang on SIGTERM.
    spdlog::info("hop=server.stopped");
    spdlog::shutdown();
    std::cout.flush();
    std::_Exit(0);
  }
}

}  // namespace

void add_server_command(CLI::App& app) {
  auto opts = std::make_shared<ServerCommand>();
  auto* cmd = app.add_subcommand("server", "Run the sync server (one SQLite file per user)");
  cmd->add_option("--listen", opts->listen, "HOST:PORT to accept connections on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--data-dir", opts->data_dir, "Directory of the per-user files (<dir>/users/<user>.db) (required)");
  cmd->add_option("--secret-file", opts->secret_file, "File holding the token secret (>= 32 bytes) (required)");
  cmd->add_option("--tls-cert", opts->tls_cert, "PEM certificate chain: serve wss:// (needs --tls-key)");
  cmd->add_option("--tls-key", opts->tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--max-channels", opts->max_channels, "Most user files open at once")->capture_default_str();
  cmd->add_option("--idle-close", opts->idle_close, "Close a user's file after this long without clients")->capture_default_str();
  cmd->add_option("--hello-timeout", opts->hello_timeout, "Time a connection has to handshake and say hello")->capture_default_str();
  cmd->add_option("--idle-timeout", opts->idle_timeout, "Close a connection silent this long (pings at half)")->capture_default_str();
  cmd->add_option("--max-frame-bytes", opts->max_frame_bytes, "Largest frame accepted")->capture_default_str();
  cmd->add_option("--push-window", opts->push_window, "Unacknowledged pushes a client may have")->capture_default_str();
  cmd->add_option("--forward-window", opts->forward_window, "Unacknowledged forwards per connection")->capture_default_str();
  cmd->add_option("--io-threads", opts->io_threads, "Network threads")->capture_default_str();
  cmd->add_option("--actor-threads", opts->actor_threads, "Actor scheduler threads")->capture_default_str();
  cmd->add_option("--cluster-listen", opts->cluster_listen,
                  "Several server hosts: this host's HOST:PORT for the others (needs --cluster-cert, "
                  "--cluster-key and --cluster-ca, or --cluster-insecure)");
  cmd->add_option("--cluster-member", opts->cluster_members,
                  "Another host's --cluster-listen (repeat; the same set on every host)");
  cmd->add_option("--cluster-member-file", opts->cluster_member_file,
                  "Members, one HOST:PORT per line (this host's may be listed); re-read on SIGHUP to add or "
                  "remove hosts at run time");
  cmd->add_option("--replicas", opts->replicas,
                  "Hosts holding each user's file: the first reachable serves it, the next ones keep replicas "
                  "(default: 2 with two or more hosts, else 1; docs/cluster.md)");
  cmd->add_option("--write-quorum", opts->write_quorum,
                  "Hosts that must hold a push durably before it is acknowledged (default: 2 when --replicas >= 2)");
  cmd->add_option("--cluster-cert", opts->cluster_link.tls.cert,
                  "PEM certificate of this host, signed by --cluster-ca (TLS on the cluster port)");
  cmd->add_option("--cluster-key", opts->cluster_link.tls.key, "PEM private key of --cluster-cert (not encrypted)");
  cmd->add_option("--cluster-ca", opts->cluster_link.tls.ca,
                  "PEM CA certificate: only hosts whose certificate it signed may connect");
  cmd->add_option("--cluster-handshake-timeout", opts->cluster_handshake_timeout,
                  "Close a cluster connection whose TLS handshake has not finished by then")
      ->capture_default_str();
  cmd->add_flag("--cluster-insecure", opts->cluster_link.insecure,
                "TESTS ONLY: plain, unauthenticated BASP on the cluster port; anyone who reaches the "
                "port can crash the host or act as a member");
  cmd->add_option("--metrics-token", opts->metrics_token,
                  "Serve /metrics and /status to anyone sending 'Authorization: Bearer TOKEN' (/status: or "
                  "?token=TOKEN), and only them; without it they answer loopback peers only");
  cmd->add_option("--peer-expiry", opts->peer_expiry,
                  "Forget a device unseen this long when its user's file is compacted (at close; 0: never); "
                  "it re-syncs when it comes back")
      ->capture_default_str();
  add_log_level_option(cmd, &opts->log_level);
  add_server_compact_command(*cmd);
  add_server_backup_commands(*cmd);
  add_server_status_command(*cmd);
  cmd->callback([opts, cmd] {
    if (cmd->get_subcommands().empty()) run_server(*opts);
  });
}

}  // namespace tandem::app
