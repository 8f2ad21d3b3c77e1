// The client core's pushes and forwards, without actors or sockets (the bench:
// client_core_bench.hpp): windows, parts, reconnects mid-push, merges and acks, waiters,
// fragments, convergence of two clients through a channel core.
#include "tests/net/client_core_bench.hpp"

using namespace tandem;
using namespace tandem::sync_client;
using namespace tandem::client_core_bench;
using namespace std::chrono_literals;

TEST_CASE("the push window by count holds pushes back until acks open it", "[client-core]") {
  sync_channel::ChannelOptions options;
  options.push_window = 2;
  Server server(options);
  ClientConfig c = config();
  c.push_batch_changes = 1;  // one version per push
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  for (int i = 1; i <= 5; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  a.answer_all();
  CHECK(a.core.pushes_in_flight() == 2);  // the window is full: no read is even asked for
  CHECK_FALSE(a.pending<ReadChanges>());
  int pushes = 0;
  for (const auto& e : a.messages()) pushes += e.has_push();
  CHECK(pushes == 2);
  server.settle({&a});  // acks come back, each opening the window again
  CHECK(a.core.pushes_in_flight() == 0);
  CHECK(a.core.client_acked() == a.store->db_version());
  pushes = 0;
  for (const auto& e : a.messages()) pushes += e.has_push();
  CHECK(pushes == 5);
  CHECK(rows(server.channel->store()) == rows(*a.store));
}

TEST_CASE("the push window by bytes lets one large push go alone", "[client-core]") {
  sync_channel::ChannelOptions options;
  options.push_window_bytes = 50000;
  Server server(options);
  ClientConfig c = config();
  c.push_batch_bytes = 40000;
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (1, hex(randomblob(30000)))", {}}}).ok();
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (2, hex(randomblob(30000)))", {}}}).ok();
  a.write("INSERT INTO todo(id, title) VALUES (3, 'small')");
  a.answer_all();
  // Each large row is a push of its own (60 KB of text); the first fills the byte window.
  CHECK(a.core.pushes_in_flight() == 1);
  CHECK(a.core.push_bytes_in_flight() > options.push_window_bytes);
  CHECK_FALSE(a.pending<ReadChanges>());
  server.settle({&a});
  CHECK(a.core.pushes_in_flight() == 0);
  CHECK(rows(server.channel->store()) == rows(*a.store));
}

TEST_CASE("a connection lost in the middle of pushing resends from what the server acknowledged", "[client-core]") {
  Server server;
  ClientConfig c = config();
  c.push_batch_changes = 1;  // one version per push
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  server.settle({&a});
  const int64_t acked_before = a.core.client_acked();
  CHECK(acked_before == a.store->db_version());
  for (int i = 2; i <= 4; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  a.answer_all();
  CHECK(a.core.pushes_in_flight() == 3);
  const size_t before_cut = a.sends.size();
  server.cut(session);  // the pushes never reached the server
  CHECK(a.core.pushes_in_flight() == 0);
  REQUIRE(a.timers.size() == 1);
  // A stale timer does nothing; the current one connects.
  a.take(a.core.on_timer(a.timers[0].generation - 1));
  CHECK(a.connects.size() == 1);
  a.take(a.core.on_timer(a.timers[0].generation));
  REQUIRE(a.connects.size() == 2);
  const uint64_t second = server.accept(a);
  server.settle({&a});
  auto again = a.messages(before_cut);
  REQUIRE(again.size() >= 2);
  CHECK(again[0].has_hello());
  CHECK(again[0].hello().acked_db_version() == acked_before);
  // The pushes start over at seq 1 from the welcome's client_acked_db_version.
  std::vector<const sync::Push*> pushes;
  for (const auto& e : again)
    if (e.has_push()) pushes.push_back(&e.push());
  REQUIRE(pushes.size() == 3);
  CHECK(pushes[0]->seq() == 1);
  CHECK(pushes[0]->batch().from_db_version() == acked_before);
  CHECK(rows(server.channel->store()) == rows(*a.store));
  CHECK(a.core.client_acked() == a.store->db_version());
  (void)second;
}

TEST_CASE("a transaction larger than a push goes in parts by resume token, restarted whole after a reconnect", "[client-core]") {
  Server server;
  ClientConfig c = config();
  c.push_batch_changes = 4;  // a 10-row transaction is cut inside its version
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  std::string values;
  for (int i = 1; i <= 10; ++i) values += std::string(i > 1 ? "," : "") + "(" + std::to_string(i) + ", 'r')";
  a.write("INSERT INTO todo(id, title) VALUES " + values);

  SECTION("honoured: every part continues the last") {
    server.settle({&a});
    int parts = 0;
    for (const auto& e : a.messages())
      if (e.has_push()) parts += !e.push().batch().resume_after().empty();
    CHECK(parts >= 2);
    CHECK(rows(server.channel->store()) == rows(*a.store));
    CHECK(a.core.client_acked() == a.store->db_version());
  }
  SECTION("not carried over to the next connection") {
    REQUIRE(a.answer_one());  // the first part is read and pushed
    bool cut_inside = false;
    for (const auto& r : a.requests)
      if (auto* read = std::get_if<ReadChanges>(&r)) cut_inside = !read->request.resume_after().empty();
    CHECK(cut_inside);
    server.cut(session);
    a.answer_all();  // the read of the old connection answers late: ignored
    CHECK(a.core.pushes_in_flight() == 0);
    a.take(a.core.on_timer(a.timers.back().generation));
    const size_t before = a.sends.size();
    server.accept(a);
    server.from_clients();  // hello -> welcome: the first read of this connection
    bool first_read_found = false;
    for (const auto& r : a.requests)
      if (auto* read = std::get_if<ReadChanges>(&r)) {
        if (first_read_found) continue;
        first_read_found = true;
        CHECK(read->request.resume_after().empty());
        CHECK(read->request.since_db_version() == 0);
      }
    CHECK(first_read_found);
    server.settle({&a});
    CHECK(a.messages(before).size() > 2);
    CHECK(rows(server.channel->store()) == rows(*a.store));
  }
  SECTION("a read the worker refuses sends nothing") {
    a.fail_reads = true;
    a.answer_all();
    for (const auto& e : a.messages()) CHECK_FALSE(e.has_push());
    CHECK(a.core.pushes_in_flight() == 0);
    // The next local commit asks again.
    a.fail_reads = false;
    a.write("INSERT INTO todo(id, title) VALUES (11, 'r')");
    server.settle({&a});
    CHECK(rows(server.channel->store()) == rows(*a.store));
  }
}

TEST_CASE("forwards are merged in order and acknowledged only after their merge", "[client-core]") {
  sync_channel::ChannelOptions options;
  options.forward_batch_changes = 3;  // one row per forward
  options.forward_window = 2;
  Server server(options);
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  for (int i = 1; i <= 4; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  server.settle({&a});  // b's worker answers nothing yet
  std::vector<uint64_t> merge_seqs;
  for (const auto& r : b.requests)
    if (auto* m = std::get_if<Merge>(&r)) merge_seqs.push_back(m->ticket.seq);
  REQUIRE(merge_seqs.size() == 2);  // the server's window
  CHECK(merge_seqs[0] == 1);
  CHECK(merge_seqs[1] == 2);
  size_t sent = b.sends.size();
  CHECK_FALSE(b.core.caught_up());
  REQUIRE(b.answer_one());  // merge 1 commits: its ClientAck goes out, not before
  REQUIRE(b.sends.size() == sent + 1);
  CHECK(b.sends.back().envelope.client_ack().seq() == 1);
  server.settle({&a, &b});
  CHECK(rows(*b.store) == rows(*a.store));
  CHECK(b.core.cursor() == server.channel->db_version());
  auto cursor = b.store->peer(server.channel->site_id());
  REQUIRE(cursor.ok());
  CHECK(cursor->received == server.channel->db_version());

  SECTION("a merge the worker refuses is rejected and the client reconnects") {
    a.write("INSERT INTO todo(id, title) VALUES (5, 'y')");
    b.fail_merges = true;
    server.settle({&a, &b});
    REQUIRE_FALSE(server.errors_from_clients.empty());
    CHECK(server.errors_from_clients.back().code() == sync::Error::REJECTED);
    REQUIRE_FALSE(b.closes.empty());
    CHECK(b.closes.back() == "merge failed");
    CHECK_FALSE(b.timers.empty());
    b.fail_merges = false;
    b.take(b.core.on_timer(b.timers.back().generation));
    server.accept(b);
    server.settle({&a, &b});
    CHECK(rows(*b.store) == rows(*a.store));
  }
}

TEST_CASE("caught-up is answered only once everything is pushed, acknowledged, recorded and merged", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  const uint64_t early = a.wait_caught_up();  // before the welcome
  CHECK(a.caught_up.empty());
  server.settle({&a, &b});
  REQUIRE(a.caught_up.count(early));
  REQUIRE(a.caught_up.at(early).ok());

  b.write("INSERT INTO todo(id, title) VALUES (1, 'from b')");
  const int64_t own = a.write("INSERT INTO todo(id, title) VALUES (2, 'from a')");
  const uint64_t w = a.wait_caught_up();
  CHECK(a.caught_up.count(w) == 0);
  // Step by step: after a's push is acknowledged but before the ack is recorded, and
  // before b's change is merged, a is not caught up.
  for (int round = 0; round < 1000 && !a.caught_up.count(w); ++round) {
    bool moved = b.answer_one();
    moved = server.from_clients() || moved;
    moved = server.flush() || moved;
    if (!moved && !a.answer_one()) break;
    if (a.caught_up.count(w)) break;
    // Whenever it is not yet answered, something is still outstanding.
    CHECK_FALSE(a.core.caught_up());
  }
  REQUIRE(a.caught_up.count(w));
  REQUIRE(a.caught_up.at(w).ok());
  CHECK(a.caught_up.at(w)->client_acked == own);
  CHECK(a.caught_up.at(w)->cursor == server.channel->db_version());
  CHECK(rows(*a.store) == rows(*b.store));
  auto recorded = a.store->peer(server.channel->site_id());
  REQUIRE(recorded.ok());
  CHECK(recorded->acked == own);
}

TEST_CASE("a lone writer's cursor moves with its ack, recorded, with no empty forward to merge", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  const size_t merges_before = a.merges_answered;
  for (int i = 0; i < 3; ++i) {
    a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(10 + i) + ", 'mine')");
    const uint64_t w = a.wait_caught_up();
    server.settle({&a, &b});
    REQUIRE(a.caught_up.count(w));
    REQUIRE(a.caught_up.at(w).ok());
    CHECK(a.caught_up.at(w)->cursor == server.channel->db_version());
  }
  CHECK(a.merges_answered == merges_before);  // a was never sent a forward of its own changes
  // The cursor is in the peer table, so a restart says hello from it.
  auto recorded = a.store->peer(server.channel->site_id());
  REQUIRE(recorded.ok());
  CHECK(recorded->received == server.channel->db_version());
  CHECK(rows(*a.store) == rows(*b.store));
}

TEST_CASE("wait-acked answers once the ack is recorded, and fails on a fatal refusal", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  const int64_t v = a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  const uint64_t w = a.wait_acked(v);
  // Run until the server's ack arrived but leave its recording unanswered.
  a.answer_all();
  server.from_clients();
  server.flush();
  CHECK(a.core.client_acked() == v);
  CHECK(a.acked.count(w) == 0);  // not before the peer table holds it
  REQUIRE(a.pending<RecordAck>());
  a.answer_all();
  REQUIRE(a.acked.count(w));
  REQUIRE(a.acked.at(w).ok());
  CHECK(*a.acked.at(w) == v);
  const uint64_t now = a.wait_acked(v);  // already recorded: answered at once
  REQUIRE(a.acked.count(now));
  CHECK(*a.acked.at(now) == v);

  const int64_t v2 = a.write("INSERT INTO todo(id, title) VALUES (2, 'two')");
  const uint64_t pending = a.wait_acked(v2);
  sync::Envelope refusal = sync_frames::error_envelope(sync::Error::UNAUTHENTICATED, "token expired", true);
  server.to_client(session, refusal);
  REQUIRE(a.acked.count(pending));
  CHECK_FALSE(a.acked.at(pending).ok());
  CHECK(a.acked.at(pending).status().message() == "server refused: UNAUTHENTICATED: token expired");
  // A fatal refusal waits the whole cap before trying again.
  REQUIRE_FALSE(a.timers.empty());
  CHECK(a.timers.back().delay == config().backoff_cap);
  const uint64_t after = a.wait_acked(v2 + 1);
  REQUIRE(a.acked.count(after));
  CHECK_FALSE(a.acked.at(after).ok());

  SECTION("and the node stopping fails the waiters left") {
    server.cut(session);
    a.take(a.core.on_timer(a.timers.back().generation));
    server.accept(a);
    server.from_clients();  // the welcome clears the refusal
    CHECK(a.core.fatal_error().empty());
    const uint64_t last = a.wait_acked(v2 + 5);  // a version that never comes
    a.take(a.core.fail_waiters("the node is stopping"));
    REQUIRE(a.acked.count(last));
    CHECK(a.acked.at(last).status().message() == "the node is stopping");
  }
}

TEST_CASE("a forward in fragments is merged only once whole, and dropped with its connection", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  // A value of 3 MiB: a's push goes out in Fragments, the forward to b too.
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (1, hex(randomblob(1572864)))", {}}}).ok();
  a.write("INSERT INTO todo(id, title) VALUES (2, 'small')");
  a.answer_all();
  size_t frames = 0;
  auto pushed = a.messages(0, &frames);
  CHECK(frames > pushed.size());  // some message went in several frames
  server.from_clients();
  auto out = server.channel->flush();
  std::vector<sync::Envelope> to_b;
  for (auto& o : out)
    if (o.session == sb) to_b.push_back(o.envelope);
    else server.to_client(o.session, o.envelope);
  REQUIRE_FALSE(to_b.empty());
  REQUIRE(to_b[0].has_forward());
  std::vector<std::string> pieces;
  sync_frames::send_frames(sync::Envelope(to_b[0]), [&](std::string f) { pieces.push_back(std::move(f)); });
  REQUIRE(pieces.size() > 2);
  const uint64_t gen = b.core.generation();
  for (size_t i = 0; i + 1 < pieces.size(); ++i) b.take(b.core.on_frame(gen, pieces[i]));
  CHECK_FALSE(b.pending<Merge>());  // not before the last fragment

  SECTION("the last fragment completes it") {
    b.take(b.core.on_frame(gen, pieces.back()));
    REQUIRE(b.pending<Merge>());
    for (size_t i = 1; i < to_b.size(); ++i) server.to_client(sb, to_b[i]);
    server.settle({&a, &b});
    CHECK(rows(*b.store) == rows(*a.store));
  }
  SECTION("a lost connection drops the part, and the next one brings the whole forward again") {
    server.cut(sb);
    CHECK_FALSE(b.pending<Merge>());
    b.take(b.core.on_timer(b.timers.back().generation));
    server.accept(b);
    server.settle({&a, &b});
    CHECK(rows(*b.store) == rows(*a.store));
  }
  SECTION("a fragment out of order is a protocol error") {
    b.take(b.core.on_frame(gen, pieces[0]));  // offset 0 again in the middle
    CHECK_FALSE(b.pending<Merge>());
    REQUIRE_FALSE(b.sends.empty());
    CHECK(b.sends.back().envelope.error().code() == sync::Error::PROTOCOL);
    CHECK(b.closes.back() == "bad fragment from server");
    CHECK_FALSE(b.timers.empty());
  }
}

TEST_CASE("two clients converge through a channel core, each pushing only its own changes", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  for (int i = 0; i < 20; ++i) {
    Node& n = i % 2 ? a : b;
    n.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'n" + std::to_string(i) + "') "
            "ON CONFLICT(id) DO UPDATE SET done = done + 1");
    if (i % 3 == 0) server.settle({&a, &b});
    if (i == 10) {
      server.cut(sb);
      b.take(b.core.on_timer(b.timers.back().generation));
      sb = server.accept(b);
    }
  }
  server.settle({&a, &b});
  CHECK(rows(*a.store) == rows(*b.store));
  CHECK(rows(server.channel->store()) == rows(*a.store));
  for (Node* n : {&a, &b})
    for (const auto& e : n->messages())
      if (e.has_push())
        for (const auto& c : e.push().batch().changes()) CHECK(c.site_id() == site_bytes(n->store->site_id()));
  CHECK(a.core.caught_up());
  CHECK(b.core.caught_up());
}

TEST_CASE("a late-upgraded client is caught up only once its backfill is merged", "[client-core][backfill]") {
  const char* v2 = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0, note TEXT);";
  ClientConfig newer = config("alice", 43);
  newer.schema = {v2};
  Server server;
  Node a(1, newer), b(2);
  REQUIRE(a.store->execute_schema(sync_schema::if_not_exists(v2)).ok());
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  for (int i = 1; i <= 3; ++i)
    a.write("INSERT INTO todo(id, title, note) VALUES (" + std::to_string(i) + ", 'x', 'n" + std::to_string(i) + "')");
  server.settle({&a, &b});
  REQUIRE(rows(*b.store) == rows(*a.store));
  server.cut(sb);

  // b's application restarts with the newer schema on the same database.
  ClientConfig upgraded = config("alice", 44);
  upgraded.schema = {v2};
  Node b2(2, upgraded);
  b2.store = std::move(b.store);
  REQUIRE(b2.store->execute_schema(sync_schema::if_not_exists(v2)).ok());
  uint64_t sb2 = 0;
  connect(b2, server, &sb2);
  const uint64_t w = b2.wait_caught_up();
  // The hello reaches the server by hand, so that the welcome can arrive alone: the network
  // may hold the backfill's forwards back while everything else of the client settles.
  REQUIRE(b2.sends.back().envelope.has_hello());
  auto joined = server.channel->join(sb2, server.user, b2.sends.back().envelope.hello());
  REQUIRE(joined.ok());
  server.links.at(sb2).delivered = b2.sends.size();
  REQUIRE(joined->size() >= 2);
  REQUIRE((*joined)[0].envelope.welcome().backfill());
  server.to_client(sb2, (*joined)[0].envelope);
  while (b2.answer_one()) {}
  CHECK(b2.core.phase() == ClientCore::Phase::live);
  CHECK(b2.caught_up.count(w) == 0);
  CHECK_FALSE(b2.core.caught_up());
  joined->erase(joined->begin());
  server.deliver(std::move(joined).value());
  server.settle({&a, &b2});
  REQUIRE(b2.caught_up.count(w));
  REQUIRE(b2.caught_up.at(w).ok());
  auto notes = b2.store->query("SELECT group_concat(note, ',') FROM (SELECT note FROM todo ORDER BY id)");
  REQUIRE(notes.ok());
  CHECK(notes->rows.at(0).at(0).to_sql_literal() == "'n1,n2,n3'");
}
