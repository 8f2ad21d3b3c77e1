// The client core's connections, without actors or sockets (the bench: client_core_bench.hpp):
// start-up and hello, the binding, generations, backoff, site conflicts, errors, offline.
#include "tests/net/client_core_bench.hpp"

using namespace tandem;
using namespace tandem::sync_client;
using namespace tandem::client_core_bench;
using namespace std::chrono_literals;

TEST_CASE("start-up reads the site, the peer table and the binding, then says hello with them", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  CHECK(a.subscribed);
  REQUIRE(a.sends.size() == 1);
  const auto& hello = a.sends[0].envelope.hello();
  CHECK(hello.site_id() == site_bytes(site(1)));
  CHECK(hello.server_site_id().empty());  // never synced: no cursor, no ack told
  CHECK(hello.cursor() == 0);
  CHECK(hello.token() == "token-of-alice");
  CHECK(hello.instance_id().size() == 16);
  REQUIRE(hello.schema_size() == 1);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'milk')");
  server.settle({&a});
  CHECK(a.core.phase() == ClientCore::Phase::live);
  CHECK(a.binding.user == "alice");  // the first welcome binds the database
  CHECK(a.binding.server == sync_binding::normalize_server_url(kUrl));
  CHECK(a.core.client_acked() == a.store->db_version());

  // The next run of the same file tells the server its cursor and what it holds of ours.
  Node again(1);
  again.store = std::move(a.store);
  again.binding = a.binding;
  server.cut(session);
  uint64_t second = 0;
  connect(again, server, &second);
  const auto& h2 = again.sends.back().envelope.hello();
  CHECK(h2.server_site_id() == site_bytes(server.channel->site_id()));
  CHECK(h2.cursor() == server.channel->db_version());
  CHECK(h2.acked_db_version() == again.store->db_version());
  server.settle({&again});
  CHECK(again.core.phase() == ClientCore::Phase::live);
}

TEST_CASE("a database bound to another user or server is refused before anything is sent", "[client-core]") {
  Node a(1);
  SECTION("another user") { a.binding = {"bob", sync_binding::normalize_server_url(kUrl)}; }
  SECTION("another server") { a.binding = {"alice", "ws://elsewhere.test:7000/sync"}; }
  const uint64_t early = a.wait_acked(1);  // registered before the binding is read
  a.start();
  CHECK(a.connects.empty());
  CHECK(a.sends.empty());
  CHECK(a.core.phase() == ClientCore::Phase::offline);
  REQUIRE(a.acked.count(early));
  CHECK_FALSE(a.acked.at(early).ok());
  CHECK(a.acked.at(early).status().message() == a.core.fatal_error());
  const uint64_t later = a.wait_caught_up();
  REQUIRE(a.caught_up.count(later));
  CHECK_FALSE(a.caught_up.at(later).ok());
  a.take(a.core.set_online(false));
  a.take(a.core.set_online(true));
  CHECK(a.connects.empty());  // never in this run
}

TEST_CASE("a welcome for another user than the binding drops the link before anything is pushed", "[client-core]") {
  Server server;  // its user is alice
  ClientConfig c = config();
  c.token_user = "";  // the token's subject could not be read before connecting
  Node a(1, c);
  a.binding = {"bob", sync_binding::normalize_server_url(kUrl)};
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (1, 'x')", {}}}).ok();
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  REQUIRE(a.closes.size() == 1);
  CHECK(a.closes[0] == "database bound to another user");
  CHECK_FALSE(a.core.fatal_error().empty());
  for (const auto& e : a.messages()) CHECK_FALSE(e.has_push());
  CHECK(server.channel->db_version() == 0);
  CHECK(a.binding.user == "bob");
  CHECK(a.timers.empty());  // and no reconnect
}

TEST_CASE("events of a stale connection generation are ignored", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  const uint64_t old = a.core.generation();
  a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  a.answer_all();
  b.write("INSERT INTO todo(id, title) VALUES (2, 'two')");
  server.settle({&b});
  // a's connection is dropped by a going offline, with a forward from b's push outstanding.
  REQUIRE(a.pending<Merge>());
  a.take(a.core.set_online(false));
  CHECK(a.core.generation() != old);
  REQUIRE(a.closes.size() == 1);
  const size_t sent = a.sends.size();
  a.answer_all();  // the merge answers after the drop: no ClientAck on a later connection
  CHECK(a.sends.size() == sent);
  sync::Envelope ack;
  ack.mutable_ack()->set_seq(1);
  ack.mutable_ack()->set_client_acked_db_version(99);
  a.take(a.core.on_frame(old, sync_frames::encode(ack)));
  CHECK(a.core.client_acked() < 99);
  a.take(a.core.on_link_closed(old, "late close"));
  CHECK(a.timers.empty());
  CHECK(a.core.last_error().empty());
  CHECK(a.core.phase() == ClientCore::Phase::offline);
  // Online again: connects at once, and everything converges.
  a.take(a.core.set_online(true));
  REQUIRE(a.connects.size() == 2);
  server.accept(a);
  server.settle({&a, &b});
  CHECK(rows(*a.store) == rows(*b.store));
}

TEST_CASE("a merge of the previous connection answering late acknowledges nothing on the next one", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  server.settle({&a});
  a.write("INSERT INTO todo(id, title) VALUES (2, 'two')");
  server.settle({&a});  // b holds two forwards, merges asked for and not answered
  size_t merges = 0;
  for (const auto& r : b.requests) merges += std::holds_alternative<Merge>(r);
  REQUIRE(merges == 2);
  server.cut(sb);
  b.take(b.core.on_timer(b.timers.back().generation));
  server.accept(b);
  server.from_clients();  // welcome, and one forward of both versions from b's old cursor
  REQUIRE(b.core.phase() == ClientCore::Phase::live);
  const size_t sent = b.sends.size();
  REQUIRE(b.answer_one());  // the first old merge: its forward was of the old connection
  REQUIRE(b.answer_one());  // the second: b's cursor is now the server's head
  CHECK(b.core.cursor() == server.channel->db_version());
  CHECK(b.sends.size() == sent);  // no ClientAck of an old forward on this connection
  // The new connection's forward is still being merged: not caught up yet.
  const uint64_t w = b.wait_caught_up();
  CHECK(b.caught_up.count(w) == 0);
  server.settle({&a, &b});
  REQUIRE(b.caught_up.count(w));
  CHECK(b.caught_up.at(w).ok());
  CHECK(rows(*b.store) == rows(*a.store));
}

TEST_CASE("reconnect delays grow with jitter within their bounds and reset after a welcome", "[client-core]") {
  ClientConfig c = config("alice", 7);
  c.backoff_base = 100ms;
  c.backoff_cap = 1000ms;
  Node a(1, c);
  a.start();
  REQUIRE(a.connects.size() == 1);
  const uint64_t first = a.wait_acked(1);
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 8; ++i) {
    a.take(a.core.on_connect_failed(a.connects.back(), "Connection refused"));
    REQUIRE(a.timers.size() == delays.size() + 1);
    delays.push_back(a.timers.back().delay);
    a.take(a.core.on_timer(a.timers.back().generation));
    REQUIRE(a.connects.size() == delays.size() + 1);
  }
  // Full jitter: attempt k waits between 0 and min(cap, base * 2^k).
  std::set<int64_t> distinct;
  for (size_t k = 0; k < delays.size(); ++k) {
    const int64_t ceiling = std::min<int64_t>(1000, 100 << k);
    CHECK(delays[k].count() >= 0);
    CHECK(delays[k].count() <= ceiling);
    distinct.insert(delays[k].count());
  }
  CHECK(distinct.size() > 1);
  // Never reached: the waiter learnt the cause at once, and so does every later one.
  REQUIRE(a.acked.count(first));
  CHECK(a.acked.at(first).status().message() == std::string("cannot reach the server at ") + kUrl + ": Connection refused");
  CHECK(a.core.last_error() == a.acked.at(first).status().message());
  const uint64_t second = a.wait_caught_up();
  REQUIRE(a.caught_up.count(second));
  CHECK_FALSE(a.caught_up.at(second).ok());

  // Another seed jitters otherwise.
  ClientConfig other = c;
  other.seed = 8;
  Node b(2, other);
  b.start();
  std::vector<std::chrono::milliseconds> other_delays;
  for (int i = 0; i < 8; ++i) {
    b.take(b.core.on_connect_failed(b.connects.back(), "Connection refused"));
    other_delays.push_back(b.timers.back().delay);
    b.take(b.core.on_timer(b.timers.back().generation));
  }
  CHECK(other_delays != delays);

  // A welcome resets the ceiling: the next loss waits at most `base` again; and from now on
  // waiters wait through failed attempts.
  Server server;
  const uint64_t session = server.accept(a);
  server.settle({&a});
  CHECK(a.core.last_error().empty());
  server.cut(session);
  REQUIRE_FALSE(a.timers.empty());
  CHECK(a.timers.back().delay <= 100ms);
  const uint64_t waiting = a.wait_acked(a.store->db_version() + 1);
  a.take(a.core.on_timer(a.timers.back().generation));
  a.take(a.core.on_connect_failed(a.connects.back(), "Connection refused"));
  CHECK(a.acked.count(waiting) == 0);
  CHECK(a.core.last_error() == std::string("cannot reach the server at ") + kUrl + ": Connection refused");
  CHECK(a.timers.back().delay <= 200ms);
}

TEST_CASE("a site conflict takes a new site id and connects again at once", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t sa = 0;
  connect(a, server, &sa);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'a')");
  server.settle({&a});
  const int64_t acked = a.core.client_acked();
  REQUIRE(acked > 0);
  // A copy of a's file, made before that push was acknowledged, with a write of its own.
  Node copy(1, config("alice", 43));  // the same site id, another run, knowing nothing of the server
  copy.write("INSERT INTO todo(id, title) VALUES (2, 'copy')");
  uint64_t sc = 0;
  connect(copy, server, &sc);
  server.from_clients();  // the hello is refused with SITE_CONFLICT
  REQUIRE_FALSE(copy.closes.empty());
  CHECK(copy.closes[0] == "site conflict");
  REQUIRE(copy.pending<TakeNewSite>());
  CHECK(copy.timers.empty());  // no backoff: it reconnects as soon as it has a new id
  copy.answer_all();
  CHECK(copy.core.site() != site_bytes(site(1)));
  CHECK(copy.core.site() == site_bytes(copy.store->site_id()));
  REQUIRE(copy.connects.size() == 2);
  server.accept(copy);
  CHECK(copy.sends.back().envelope.hello().site_id() == copy.core.site());
  server.settle({&a, &copy});
  CHECK(rows(server.channel->store()) == "1 'a' 0 \n2 'copy' 0 \n");
  CHECK(rows(*copy.store) == rows(server.channel->store()));
  CHECK(rows(*a.store) == rows(server.channel->store()));
}

TEST_CASE("pings are answered and unexpected messages are protocol errors", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  sync::Envelope ping;
  ping.mutable_ping()->set_nonce(77);
  server.to_client(session, ping);  // allowed before the welcome
  REQUIRE(a.sends.back().envelope.has_pong());
  CHECK(a.sends.back().envelope.pong().nonce() == 77);
  sync::Envelope forward;
  forward.mutable_forward()->set_seq(1);
  server.to_client(session, forward);  // a forward before the welcome
  CHECK(a.sends.back().envelope.error().code() == sync::Error::PROTOCOL);
  CHECK(a.closes.back() == "protocol error");
  CHECK(a.timers.size() == 1);
  a.take(a.core.on_frame(a.core.generation(), "not an envelope"));
  CHECK(a.timers.size() == 1);  // no link any more: ignored
}

TEST_CASE("offline keeps local writes, online connects at once and pushes them", "[client-core]") {
  Server server;
  ClientConfig c = config();
  c.start_online = false;
  Node a(1, c);
  a.start();
  CHECK(a.connects.empty());
  CHECK(a.core.phase() == ClientCore::Phase::offline);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'offline')");
  CHECK_FALSE(a.pending<ReadChanges>());
  const uint64_t w = a.wait_acked(a.store->db_version());
  CHECK(a.acked.count(w) == 0);  // waits: nothing failed yet
  a.take(a.core.set_online(true));
  REQUIRE(a.connects.size() == 1);
  server.accept(a);
  server.settle({&a});
  REQUIRE(a.acked.count(w));
  CHECK(*a.acked.at(w) == a.store->db_version());
  CHECK(rows(server.channel->store()) == rows(*a.store));
  a.take(a.core.set_online(false));
  REQUIRE(a.closes.size() == 1);
  CHECK(a.closes[0] == "going offline");
  CHECK(a.timers.empty());
}

TEST_CASE("a server error before the welcome is the cause told to waiters, then retried", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  const uint64_t w = a.wait_acked(1);
  server.to_client(session, sync_frames::error_envelope(sync::Error::UNAVAILABLE, "at capacity", true));
  REQUIRE(a.acked.count(w));
  CHECK(a.acked.at(w).status().message() == "server refused: UNAVAILABLE: at capacity");
  CHECK(a.core.fatal_error().empty());  // retryable
  REQUIRE(a.timers.size() == 1);
  CHECK(a.timers[0].delay <= config().backoff_base);
  a.take(a.core.on_timer(a.timers[0].generation));
  server.accept(a);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'x')");
  server.settle({&a});
  CHECK(rows(server.channel->store()) == rows(*a.store));
}

// A cluster's device whose own host is down: a waiter that arrives after that host refused
// the connection must wait for the other hosts it knows (the replica_process_test failover
// failed this way under load: the write's commit took longer than the refusal).
TEST_CASE("a waiter arriving after one host of several refused waits for the others", "[client-core]") {
  auto c = config();
  c.also_urls = {"ws://127.0.0.1:2/sync"};
  Node a(1, c);
  Server server;
  a.start();
  REQUIRE(a.connects.size() == 1);
  a.take(a.core.on_connect_failed(a.connects.back(), "Connection refused"));
  CHECK(a.core.last_error().find("Connection refused") != std::string::npos);
  const int64_t v = a.write("INSERT INTO todo(id, title) VALUES (1, 'desk')");
  const uint64_t acked = a.wait_acked(v);
  const uint64_t caught = a.wait_caught_up();
  CHECK(a.acked.count(acked) == 0);  // not failed: the other host is still to be tried
  CHECK(a.caught_up.count(caught) == 0);
  REQUIRE(a.timers.size() == 1);
  a.take(a.core.on_timer(a.timers.back().generation));
  REQUIRE(a.connects.size() == 2);
  server.accept(a);
  server.settle({&a});
  REQUIRE(a.acked.count(acked) == 1);
  CHECK(a.acked.at(acked).ok());
  REQUIRE(a.caught_up.count(caught) == 1);
  CHECK(a.caught_up.at(caught).ok());

  // Every host refused: the round is over, and a waiter arriving then fails at once.
  Node b(2, c);
  b.start();
  b.take(b.core.on_connect_failed(b.connects.back(), "Connection refused"));
  b.take(b.core.on_timer(b.timers.back().generation));
  b.take(b.core.on_connect_failed(b.connects.back(), "Connection refused"));
  const uint64_t late = b.wait_acked(b.write("INSERT INTO todo(id, title) VALUES (2, 'x')"));
  REQUIRE(b.acked.count(late) == 1);
  CHECK_FALSE(b.acked.at(late).ok());
  CHECK(b.acked.at(late).status().message().find("127.0.0.1:2") != std::string::npos);
}

// A host of the cluster that refuses the hello with a retryable error (it cannot serve the
// channel now, say) is not asked again and again: the next attempt goes to the next host.
TEST_CASE("a retryable refusal before the welcome turns the next attempt to another host", "[client-core]") {
  auto c = config();
  c.also_urls = {"ws://other.test:7000/sync"};
  Node a(1, c);
  Server refusing, serving;
  a.start();
  REQUIRE(a.connect_urls.size() == 1);
  CHECK(a.connect_urls[0] == kUrl);
  const uint64_t first = refusing.accept(a);
  refusing.to_client(first, sync_frames::error_envelope(sync::Error::UNAVAILABLE, "not serving this channel", true));
  CHECK(a.core.fatal_error().empty());
  REQUIRE(a.timers.size() == 1);
  a.take(a.core.on_timer(a.timers.back().generation));
  REQUIRE(a.connect_urls.size() == 2);
  CHECK(a.connect_urls[1] == "ws://other.test:7000/sync");
  serving.accept(a);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'x')");
  serving.settle({&a});
  CHECK(a.core.phase() == ClientCore::Phase::live);
  CHECK(rows(serving.channel->store()) == rows(*a.store));
}

// The push built where the commit happened (worker::LocalCommit): the same pushes, byte for
// byte, as the read the core would otherwise ask for, and the old path whenever the attached
// read is not exactly that read.
TEST_CASE("a local commit with its own changes is pushed without a read and byte for byte as a read would push it", "[client-core]") {
  const std::vector<std::string> writes = {
      "INSERT INTO todo(id, title) VALUES (1, 'milk')", "INSERT INTO todo(id, title) VALUES (2, 'eggs')",
      "UPDATE todo SET title = 'oat milk' WHERE id = 1", "DELETE FROM todo WHERE id = 2",
      "INSERT INTO todo(id, title) VALUES (3, 'tea'), (4, 'rice')"};
  // Two nodes of the same site, each with a server of its own: one told of its commits with
  // their changes, one reading them.
  Server attached_server, read_server;
  Node attached(1), reads(1);
  uint64_t s1 = 0, s2 = 0;
  connect(attached, attached_server, &s1);
  connect(reads, read_server, &s2);
  attached_server.settle({&attached});
  read_server.settle({&reads});
  REQUIRE(attached.core.phase() == ClientCore::Phase::live);
  REQUIRE(attached.own_changes.limit() > 0);
  CHECK(attached.own_changes.max_bytes() <= (int64_t{256} << 10));
  const size_t from1 = attached.sends.size(), from2 = reads.sends.size();
  for (const auto& sql : writes) {
    attached.write_attached(sql);
    CHECK_FALSE(attached.pending<ReadChanges>());  // nothing asked of the worker
    reads.write(sql);
    reads.answer_all();
  }
  auto pushes = [](std::vector<sync::Envelope> all) {
    std::vector<std::string> out;
    for (auto& e : all)
      if (e.has_push()) out.push_back(e.SerializeAsString());
    return out;
  };
  const auto attached_pushes = pushes(attached.messages(from1));
  CHECK(attached_pushes.size() == writes.size());  // one push per commit, sent at once
  CHECK(attached_pushes == pushes(reads.messages(from2)));
  attached_server.settle({&attached});
  CHECK(rows(attached_server.channel->store()) == rows(*attached.store));
  CHECK(attached.core.client_acked() == attached.store->db_version());

  // A commit that takes the read path: not pushed on its own; the read, once answered,
  // sends one push up to it, and the server ends equal to the device.
  auto read_path_takes = [&](const std::string& sql) {
    const size_t from = attached.sends.size();
    attached.write_attached(sql);
    CHECK(attached.sends.size() == from);
    attached.answer_all();
    auto sent = pushes(attached.messages(from));
    REQUIRE(sent.size() == 1);
    sync::Envelope e;
    REQUIRE(e.ParseFromString(sent[0]));
    CHECK(e.push().batch().to_db_version() == attached.store->db_version());
    attached_server.settle({&attached});
    CHECK(rows(attached_server.channel->store()) == rows(*attached.store));
    CHECK(attached.core.client_acked() == attached.store->db_version());
  };

  // A read already out: the commit only waits for it; the read then carries both.
  attached.write("INSERT INTO todo(id, title) VALUES (5, 'salt')");  // its read is not answered yet
  REQUIRE(attached.pending<ReadChanges>());
  read_path_takes("INSERT INTO todo(id, title) VALUES (6, 'pepper')");

  // Acknowledged between writes, as a lone writer is: still no read per write.
  for (int id = 10; id < 13; ++id) {
    attached.write_attached("INSERT INTO todo(id, title) VALUES (" + std::to_string(id) + ", 'acked')");
    CHECK_FALSE(attached.pending<ReadChanges>());
    attached_server.settle({&attached});
    CHECK(attached.core.client_acked() == attached.store->db_version());
  }

  // A commit the syncer was never told of (made before it subscribed, say): the next
  // commit's changes start after it, so they are not pushed alone; a read takes both.
  REQUIRE(attached.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (20, 'untold')", {}}}).ok());
  read_path_takes("INSERT INTO todo(id, title) VALUES (21, 'told')");

  // Offline: the worker is asked for bare commits (its read would be dropped), once; the
  // commit is kept and pushed by a read once connected, and the changes come attached again.
  CHECK_FALSE(attached.own_changes_bare);
  const size_t subscribes = attached.subscribes;
  attached_server.cut(s1);
  CHECK(attached.own_changes_bare);
  CHECK(attached.subscribes == subscribes + 1);
  attached.write_attached("INSERT INTO todo(id, title) VALUES (7, 'flour')");
  attached.write_attached("INSERT INTO todo(id, title) VALUES (8, 'sugar')");
  CHECK(attached.subscribes == subscribes + 1);
  REQUIRE_FALSE(attached.timers.empty());
  attached.take(attached.core.on_timer(attached.timers.back().generation));
  attached_server.accept(attached);
  attached_server.settle({&attached});
  CHECK(rows(attached_server.channel->store()) == rows(*attached.store));
  CHECK(attached.core.client_acked() == attached.store->db_version());
  CHECK_FALSE(attached.own_changes_bare);
  CHECK(attached.subscribes == subscribes + 2);
  attached.write_attached("INSERT INTO todo(id, title) VALUES (9, 'yeast')");
  CHECK_FALSE(attached.pending<ReadChanges>());  // pushed as attached, no read
  attached_server.settle({&attached});
  CHECK(attached.core.client_acked() == attached.store->db_version());
}
