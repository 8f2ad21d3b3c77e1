// Re-sync after compaction (docs/protocol.md, "Re-sync"): the client core against a real
// channel core whose store was compacted past the client's cursor (client_core_bench.hpp).
#include <ctime>

#include "runtime/store/store_internal.hpp"
#include "tests/net/client_core_bench.hpp"

using namespace tandem;
using namespace tandem::sync_client;
using namespace tandem::client_core_bench;

namespace {

// Forgets `node` at the server (unseen for long) and compacts; returns the tombstones removed.
int64_t expire_and_compact(Server& server, Node& node) {
  Store& store = server.channel->store();
  REQUIRE(store_connection(store).exec("UPDATE tandem_peers SET seen = 0 WHERE site_id = x'" + site_hex(node.store->site_id()) + "'").ok());
  auto report = server.channel->compact(static_cast<int64_t>(std::time(nullptr)), 60);
  INFO(report.status().to_string());
  REQUIRE(report.ok());
  CHECK(report->peers_expired == 1);
  return report->tombstones_removed;
}

}  // namespace

TEST_CASE("the client core re-syncs a device offline across a compaction", "[client-core][resync]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  for (int i = 1; i <= 10; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  server.settle({&a, &b});
  REQUIRE(rows(*b.store) == rows(*a.store));

  b.take(b.core.set_online(false));
  server.settle({&a, &b});
  a.write("DELETE FROM todo WHERE id <= 5");
  server.settle({&a, &b});
  // Offline: b updates a row deleted meanwhile and one that lives, and inserts a row.
  b.write("UPDATE todo SET done = 1 WHERE id IN (1, 7)");
  b.write("INSERT INTO todo(id, title) VALUES (50, 'offline')");

  CHECK(expire_and_compact(server, b) == 5);
  REQUIRE(server.channel->store().compacted_through() > 0);

  b.take(b.core.set_online(true));
  sb = server.accept(b);
  server.settle({&a, &b});
  CHECK_FALSE(b.core.pushes_in_flight());
  CHECK(b.core.caught_up());
  CHECK(b.snapshot_ends == 1);
  CHECK(a.snapshot_ends == 0);
  CHECK(rows(*b.store) == rows(server.channel->store()));
  CHECK(rows(*a.store) == rows(server.channel->store()));
  auto r = server.channel->store().query("SELECT id, done FROM todo ORDER BY id");
  REQUIRE(r.ok());
  REQUIRE(r->rows.size() == 6);  // 6..10 and 50: row 1's offline update lost to the delete
  CHECK(r->rows[0][0].integer() == 6);
  CHECK(r->rows[1][1].integer() == 1);  // row 7's update arrived
  CHECK(r->rows[5][0].integer() == 50);
  REQUIRE(b.store->verify().ok());
  // A later connection is ordinary: the cursor is past the horizon now.
  server.cut(sb);
  b.take(b.core.on_timer(b.timers.back().generation));
  sb = server.accept(b);
  server.settle({&a, &b});
  CHECK(b.snapshot_ends == 1);
  CHECK(rows(*b.store) == rows(server.channel->store()));
}

TEST_CASE("a re-sync cut by a lost connection re-syncs again", "[client-core][resync]") {
  sync_channel::ChannelOptions options;
  options.forward_batch_changes = 2;  // the snapshot in many parts
  options.forward_window = 1;
  Server server(options);
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  for (int i = 1; i <= 20; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  server.settle({&a, &b});
  b.take(b.core.set_online(false));
  server.settle({&a, &b});
  for (int i = 1; i <= 20; i += 2) a.write("DELETE FROM todo WHERE id = " + std::to_string(i));
  server.settle({&a, &b});
  CHECK(expire_and_compact(server, b) == 10);

  b.take(b.core.set_online(true));
  sb = server.accept(b);
  // A few parts of the snapshot arrive, then the connection drops.
  for (int step = 0; step < 6; ++step) {
    b.answer_one();
    server.from_clients();
  }
  CHECK_FALSE(b.core.caught_up());
  CHECK(b.snapshot_ends == 0);
  const int64_t cursor = b.store->peer(server.channel->site_id())->received;
  CHECK(cursor < server.channel->store().compacted_through());  // parts do not move it
  server.cut(sb);
  b.answer_all();
  b.take(b.core.on_timer(b.timers.back().generation));
  sb = server.accept(b);
  server.settle({&a, &b});
  CHECK(b.core.caught_up());
  CHECK(b.snapshot_ends == 1);
  CHECK(rows(*b.store) == rows(server.channel->store()));
  CHECK(rows(*a.store) == rows(server.channel->store()));
  auto r = b.store->query("SELECT count(*) FROM todo");
  REQUIRE(r.ok());
  CHECK(r->rows[0][0].integer() == 10);
}
