// /healthz, /readyz and /metrics of the real `tandem server`, over real sockets: scraped while
// clients push, refused to whom they must be, and /readyz failing when the data directory
// stops taking writes.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "runtime/metrics/metrics.hpp"
#include "tests/net/http_util.hpp"
#include "tests/net/process_util.hpp"

using namespace tandem_process_test;
namespace metrics = tandem::metrics;

namespace {

metrics::Exposition scrape(uint16_t port) {
  auto a = http_get("127.0.0.1", port, "/metrics");
  INFO(a.headers << "\n" << a.body);
  REQUIRE(a.status == 200);
  CHECK_THAT(a.headers, Catch::Contains("text/plain; version=0.0.4"));
  metrics::Exposition e;
  std::string error;
  const bool parsed = metrics::parse_prometheus(a.body, &e, &error);
  INFO(error);
  REQUIRE(parsed);
  return e;
}

// The value of a gauge once it settles to `want` (connections end asynchronously), or its
// last value after 10 s.
double settles_to(uint16_t port, const std::string& name, const std::string& labels, double want) {
  double v = -1;
  for (int i = 0; i < 100; ++i) {
    v = scrape(port).value(name, labels);
    if (v == want) break;
    std::this_thread::sleep_for(100ms);
  }
  return v;
}

}  // namespace

TEST_CASE("metrics process: /metrics scraped during pushes from several clients moves and parses", "[process][metrics]") {
  World w;
  w.start_server();
  const auto before = scrape(w.port);
  CHECK(before.value("tandem_pushes_total") == 0);
  CHECK(before.value("tandem_channels_open") == 0);

  // A device that stays connected: a watch receives every other device's writes.
  Process watch(
      [&] {
        auto a = w.client("watch.db");
        for (std::string s : {"watch", "SELECT id, title FROM todo ORDER BY id", "--json"}) a.push_back(s);
        return a;
      }(),
      w.dir / "watch.log");
  REQUIRE(watch.line());

  constexpr int kClients = 3, kWrites = 5;
  std::atomic<int> acknowledged{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c)
    clients.emplace_back([&, c] {
      for (int i = 0; i < kWrites; ++i) {
        const int id = c * 100 + i;
        auto args = w.client("c" + std::to_string(c) + ".db");
        for (std::string s : {std::string("exec"), std::string("INSERT INTO todo(id, title) VALUES (?, 'x')"), std::to_string(id)}) args.push_back(s);
        tandem::ChildOptions o;
        o.args = args;
        o.stderr_file = w.dir / ("c" + std::to_string(c) + ".log");
        o.pipe_stdin = true;
        auto child = tandem::ChildProcess::spawn(o);
        if (!child.ok()) continue;
        (*child)->close_stdin();
        std::string out;
        while (auto l = (*child)->read_line(60s)) out += *l;
        if ((*child)->wait(60s) == 0 && nlohmann::json::parse(out)["acknowledged"] == true) ++acknowledged;
      }
    });
  // Scrapes while the clients push: every scrape is valid text and no counter goes back.
  std::vector<metrics::Exposition> scrapes;
  for (int i = 0; i < 20; ++i) {
    scrapes.push_back(scrape(w.port));
    std::this_thread::sleep_for(50ms);
  }
  for (auto& t : clients) t.join();
  REQUIRE(acknowledged == kClients * kWrites);
  for (size_t i = 1; i < scrapes.size(); ++i)
    for (const char* counter : {"tandem_pushes_total", "tandem_acks_total", "tandem_changes_merged_total",
                                "tandem_connections_total", "tandem_received_bytes_total", "tandem_sent_bytes_total"})
      CHECK(scrapes[i].value(counter) >= scrapes[i - 1].value(counter));

  // The watch has every row: its forwards were sent.
  int added = 0;
  while (added < kClients * kWrites) {
    auto l = watch.line();
    REQUIRE(l);
    if (nlohmann::json::parse(*l)["type"] == "added") ++added;
  }
  const auto during = scrape(w.port);
  CHECK(settles_to(w.port, "tandem_sessions", "state=\"joined\"", 1) == 1);  // the watch
  CHECK(settles_to(w.port, "tandem_connections_open", "", 1) == 1);
  CHECK(during.value("tandem_channels_open") == 1);  // alice's
  CHECK(during.value("tandem_connections_total") >= kClients * kWrites + 1);
  CHECK(during.value("tandem_pushes_total") >= kClients * kWrites);
  CHECK(during.value("tandem_acks_total") >= kClients * kWrites);
  CHECK(during.value("tandem_changes_merged_total") >= kClients * kWrites);  // a row is one change or more
  CHECK(during.value("tandem_forwards_total") >= 1);  // the watch's (one forward may carry several rows)
  CHECK(during.value("tandem_group_commits_total") >= 1);
  CHECK(during.value("tandem_merge_commit_seconds_count") == during.value("tandem_group_commits_total"));
  CHECK(during.value("tandem_commit_sync_seconds_count") == during.value("tandem_group_commits_total"));
  CHECK(during.value("tandem_merge_commit_seconds_sum") > 0);
  CHECK(during.value("tandem_merge_commit_seconds_sum") >= during.value("tandem_commit_sync_seconds_sum"));
  CHECK(during.value("tandem_received_bytes_total") > 0);
  CHECK(during.value("tandem_sent_bytes_total") > 0);
  CHECK(during.value("tandem_errors_total", "code=\"PROTOCOL\"") == 0);

  // A refused hello counts as an error by its code.
  {
    auto args = w.client("bad.db");
    REQUIRE(args[4] == "--token");
    args[5] = "not-a-token";
    for (std::string s : {"--timeout", "5s", "sync"}) args.push_back(s);
    CHECK(run(args, w.dir / "bad.log").code != 0);
  }
  CHECK(scrape(w.port).value("tandem_errors_total", "code=\"UNAUTHENTICATED\"") >= 1);

  watch.signal(SIGINT);
  CHECK(watch.wait(kStopWithin + 5s) == 0);
  CHECK(settles_to(w.port, "tandem_connections_open", "", 0) == 0);
  CHECK(settles_to(w.port, "tandem_sessions", "state=\"joined\"", 0) == 0);
  CHECK(settles_to(w.port, "tandem_sessions", "state=\"awaiting_hello\"", 0) == 0);
}

TEST_CASE("metrics process: /metrics refuses remote peers, and anyone without the token when one is set", "[process][metrics]") {
  const std::string remote = non_loopback_address();
  if (remote.empty()) WARN("no non-loopback IPv4 address on this host: the remote-peer checks are skipped");

  SECTION("without --metrics-token: loopback only, health for everyone") {
    World w;
    start_server(w, "0.0.0.0");
    CHECK(http_get("127.0.0.1", w.port, "/metrics").status == 200);
    CHECK(http_get("127.0.0.1", w.port, "/healthz").body == "ok\n");
    CHECK(http_get("127.0.0.1", w.port, "/nothing-here").status == 404);
    if (!remote.empty()) {
      auto refused = http_get(remote, w.port, "/metrics", "", remote);
      CHECK(refused.status == 403);
      CHECK(refused.body.find("tandem_") == std::string::npos);
      CHECK(http_get(remote, w.port, "/healthz", "", remote).status == 200);
      CHECK(http_get(remote, w.port, "/readyz", "", remote).status == 200);
    }
    // The sync path is untouched: a client syncs through the same port.
    CHECK(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}).code == 0);
  }
  SECTION("with --metrics-token: the bearer token from anyone, nothing without it") {
    World w;
    start_server(w, "0.0.0.0", {"--metrics-token", "s3cret-scrape-token"});
    auto none = http_get("127.0.0.1", w.port, "/metrics");
    CHECK(none.status == 401);
    CHECK_THAT(none.headers, Catch::Contains("WWW-Authenticate: Bearer"));
    CHECK(http_get("127.0.0.1", w.port, "/metrics", "Bearer wrong-token").status == 401);
    CHECK(http_get("127.0.0.1", w.port, "/metrics", "Bearer s3cret-scrape-token-and-more").status == 401);
    CHECK(http_get("127.0.0.1", w.port, "/metrics", "Basic s3cret-scrape-token").status == 401);
    CHECK(http_get("127.0.0.1", w.port, "/metrics", "Bearer s3cret-scrape-token").status == 200);
    if (!remote.empty()) {
      CHECK(http_get(remote, w.port, "/metrics", "", remote).status == 401);
      auto ok = http_get(remote, w.port, "/metrics", "Bearer s3cret-scrape-token", remote);
      CHECK(ok.status == 200);
      CHECK_THAT(ok.body, Catch::Contains("# TYPE tandem_pushes_total counter"));
    }
  }
}

// The data directory stops taking writes while the server runs. chmod cannot show it when
// the tests run as root (root writes through any mode), so the directory is moved away and
// a regular file put at its path: what an operator sees when the volume behind the path is
// gone or replaced. As another user chmod 0500 is checked too.
TEST_CASE("metrics process: /readyz is 503 while the data directory cannot be written, /healthz stays 200", "[process][metrics]") {
  World w;
  w.start_server();
  const std::string data = w.dir / "server";
  auto ready = http_get("127.0.0.1", w.port, "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body == "ready\n");
  CHECK_FALSE(std::filesystem::exists(data + "/.readyz-probe"));  // the probe cleans up

  std::filesystem::rename(data, w.dir / "server.moved");
  std::ofstream(data) << "not a directory\n";
  auto gone = http_get("127.0.0.1", w.port, "/readyz");
  CHECK(gone.status == 503);
  CHECK_THAT(gone.body, Catch::Contains("not writable") && Catch::Contains("Not a directory"));
  CHECK(http_get("127.0.0.1", w.port, "/healthz").status == 200);
  std::filesystem::remove(data);
  std::filesystem::rename(w.dir / "server.moved", data);
  CHECK(http_get("127.0.0.1", w.port, "/readyz").status == 200);

  if (::geteuid() != 0) {
    REQUIRE(::chmod(data.c_str(), 0500) == 0);
    auto readonly = http_get("127.0.0.1", w.port, "/readyz");
    ::chmod(data.c_str(), 0700);
    CHECK(readonly.status == 503);
    CHECK_THAT(readonly.body, Catch::Contains("Permission denied"));
    CHECK(http_get("127.0.0.1", w.port, "/readyz").status == 200);
  }
}
