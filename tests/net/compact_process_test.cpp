// Compaction and re-sync with the real binary (docs/operations.md, "Compaction"): a server's
// files compacted by `tandem server compact` while it is stopped, and a device that was away
// re-syncing when it comes back. Every wait is bounded; nothing asserts on speed.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;
using namespace tandem_process_test;

TEST_CASE("processes: a device away across a compaction re-syncs and converges", "[process][compact]") {
  World w;
  w.start_server();
  const uint16_t port = w.port;
  REQUIRE(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'x'), (2, 'x'), (3, 'x'), (4, 'x'), (5, 'x'), (6, 'x')"}).code == 0);
  REQUIRE(w.cmd("b.db", {"sync"}).code == 0);
  REQUIRE(w.cmd("a.db", {"exec", "DELETE FROM todo WHERE id <= 3"}).code == 0);
  w.server->signal(SIGTERM);
  REQUIRE(w.server->wait(10s) == 0);
  w.server.reset();

  // The server is stopped: b writes offline, to a row deleted meanwhile and to a live one.
  auto offline = w.client("b.db");
  for (std::string s : {"--timeout", "1s", "exec", "UPDATE todo SET done = 1 WHERE id IN (1, 5)"}) offline.push_back(s);
  CHECK(run(offline, w.dir / "b.db.log").code == 3);

  // Both devices unseen for over a second: forgotten, and every tombstone goes.
  std::this_thread::sleep_for(2100ms);
  auto compacted = run({kTandem, "server", "compact", "--data-dir", w.dir / "server", "--peer-expiry", "1s"}, w.dir / "compact.log");
  INFO(slurp(w.dir / "compact.log"));
  REQUIRE(compacted.code == 0);
  auto report = nlohmann::json::parse(compacted.out.substr(0, compacted.out.find('\n')));
  CHECK(report["user"] == "alice");
  CHECK(report["peers_expired"] == 2);
  CHECK(report["tombstones_removed"] == 3);
  CHECK(report["metadata_bytes_after"].get<int64_t>() <= report["metadata_bytes_before"].get<int64_t>());

  w.start_server(port);
  REQUIRE(w.cmd("b.db", {"sync"}).code == 0);
  REQUIRE(w.cmd("a.db", {"sync"}).code == 0);
  REQUIRE(w.cmd("b.db", {"sync"}).code == 0);
  CHECK_THAT(slurp(w.dir / "b.db.log"), Catch::Contains("hop=client.resynced"));
  // Row 1's offline update lost to the delete; row 5's arrived everywhere.
  const std::string expected =
      "[{\"done\":0,\"id\":4,\"title\":\"x\"},{\"done\":1,\"id\":5,\"title\":\"x\"},{\"done\":0,\"id\":6,\"title\":\"x\"}]\n";
  CHECK(w.rows("b.db") == expected);
  CHECK(w.rows("a.db") == expected);
}

TEST_CASE("processes: server compact refuses a data directory a server runs on", "[process][compact]") {
  World w;
  w.start_server();
  REQUIRE(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}).code == 0);
  auto r = run({kTandem, "server", "compact", "--data-dir", w.dir / "server"}, w.dir / "compact.log");
  CHECK(r.code == 2);
  CHECK_THAT(slurp(w.dir / "compact.log"), Catch::Contains("in use by another process"));
}
