// Replica links between two hosts' channels of one user (runtime/sync/channel_replica.cpp),
// without actors: the write quorum, what a link carries, and a client failing over from one
// host to the other with its cursor translated. Messages are routed by hand until quiet.
#include <catch2/catch.hpp>

#include <functional>

#include "runtime/sync/channel_core.hpp"
#include "tests/net/net_test_util.hpp"

using namespace tandem;
using tandem::test::TempDir;
using namespace tandem::sync_channel;

namespace {

const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);";

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xD0;
  s[15] = n;
  return s;
}

std::string rows(Store& s) {
  auto r = s.query("SELECT id, title, done FROM todo ORDER BY id");
  REQUIRE(r.ok());
  std::string out;
  for (const auto& row : r->rows) {
    for (const auto& v : row) out += v.to_sql_literal() + " ";
    out += "\n";
  }
  return out;
}

// A device: its store and what it knows of the host it is joined to.
struct Device {
  std::unique_ptr<Store> store;
  std::string server_site;
  int64_t cursor = 0;      // server db_version merged
  int64_t acked = 0;       // own db_version the server acknowledged
  int64_t pushed = 0;      // own db_version pushed
  uint64_t push_seq = 0;
  std::vector<sync::Error> errors;
  sync::Welcome welcome;
};

// Two hosts' channels of one user, linked both ways, and the devices joined to either.
struct Pair {
  static constexpr uint64_t kLinkOnA = 100;  // B's link as a session of A
  static constexpr uint64_t kLinkOnB = 200;  // A's link as a session of B
  TempDir dir;
  std::unique_ptr<ChannelCore> a, b;
  std::map<uint64_t, std::pair<ChannelCore*, Device*>> sessions;  // client sessions
  bool links_up = false;
  std::map<ChannelCore*, int> link_changes;  // changes each host forwarded over its link

  explicit Pair(uint32_t quorum) {
    ChannelOptions o;
    o.write_quorum = quorum;
    a = std::move(ChannelCore::open(dir.path + "/a/alice.db", o)).value();
    b = std::move(ChannelCore::open(dir.path + "/b/alice.db", o)).value();
  }
  void link() {
    auto hb = b->replica_hello();
    auto ha = a->replica_hello();
    REQUIRE(hb.ok());
    REQUIRE(ha.ok());
    auto on_a = a->join_replica(kLinkOnA, "alice", *hb);
    INFO(on_a.status().to_string());
    REQUIRE(on_a.ok());
    auto on_b = b->join_replica(kLinkOnB, "alice", *ha);
    REQUIRE(on_b.ok());
    links_up = true;
    route(*a, std::move(*on_a));
    route(*b, std::move(*on_b));
  }
  ChannelCore& other(ChannelCore& ch) { return &ch == a.get() ? *b : *a; }
  uint64_t link_session_of(ChannelCore& ch) { return &ch == a.get() ? kLinkOnA : kLinkOnB; }

  // Delivers `out` (produced by `from`), and everything it causes, until quiet.
  void route(ChannelCore& from, Outbox out) {
    for (auto& o : out) {
      if (o.session == link_session_of(from)) {
        if (!links_up || !o.envelope.has_forward()) continue;
        ChannelCore& to = other(from);
        link_changes[&from] += o.envelope.forward().batch().changes_size();
        auto merged = to.merge_replica(o.envelope.forward());
        INFO(merged.status().to_string());
        REQUIRE(merged.ok());
        route(to, std::move(merged->out));
        auto acked = from.client_ack(o.session, merged->ack, merged->db_version);
        REQUIRE(acked.ok());
        route(from, std::move(*acked));
        continue;
      }
      auto s = sessions.find(o.session);
      if (s == sessions.end() || s->second.first != &from) continue;
      Device& d = *s->second.second;
      const auto& e = o.envelope;
      if (e.has_welcome()) {
        d.welcome = e.welcome();
        d.server_site = e.welcome().server_site_id();
        d.acked = e.welcome().client_acked_db_version();
        d.pushed = d.acked;
        d.push_seq = 0;
        d.cursor = e.welcome().forward_from();
      } else if (e.has_ack()) {
        d.acked = std::max(d.acked, e.ack().client_acked_db_version());
        if (e.ack().forwarded_db_version() > 0) d.cursor = std::max(d.cursor, e.ack().forwarded_db_version());
      } else if (e.has_forward()) {
        REQUIRE(d.store->merge(e.forward().batch()).ok());
        d.cursor = e.forward().batch().to_db_version();
        sync::ClientAck ack;
        ack.set_seq(e.forward().seq());
        ack.set_server_db_version(e.forward().batch().to_db_version());
        auto more = from.client_ack(o.session, ack);
        REQUIRE(more.ok());
        route(from, std::move(*more));
      } else if (e.has_error()) {
        d.errors.push_back(e.error());
      }
    }
  }
  void join(ChannelCore& ch, uint64_t session, Device& d) {
    sync::Hello h;
    h.set_protocol_version(1);
    h.set_site_id(site_bytes(d.store->site_id()));
    h.set_server_site_id(d.server_site);
    h.set_cursor(d.cursor);
    h.set_acked_db_version(d.acked);
    h.add_schema(kSchema);
    sessions[session] = {&ch, &d};
    auto joined = ch.join(session, "alice", h);
    INFO(joined.status().to_string());
    REQUIRE(joined.ok());
    route(ch, std::move(*joined));
    if (d.store->db_version() > d.pushed) push(session);  // what this host lacks of the device
  }
  // Writes on the device and pushes what it has not pushed yet; flushes the channel.
  void write(uint64_t session, const std::string& sql) {
    auto [ch, d] = sessions.at(session);
    REQUIRE(d->store->write({SqlStatement{sql, {}}}).ok());
    push(session);
  }
  void push(uint64_t session) {
    auto [ch, d] = sessions.at(session);
    sync::Push p;
    *p.mutable_batch() = test::own_changes_since(*d->store, d->pushed);
    if (p.batch().changes_size() == 0) return;
    int64_t last = 0;  // the range ends at its last own change (versions after are merges)
    for (const auto& c : p.batch().changes()) last = std::max(last, c.db_version());
    p.mutable_batch()->set_to_db_version(last);
    p.set_seq(++d->push_seq);
    d->pushed = p.batch().to_db_version();
    auto pushed = ch->push(session, std::move(p));
    INFO(pushed.to_string());
    REQUIRE(pushed.ok());
    route(*ch, ch->flush());
  }
};

std::unique_ptr<Store> device_store(uint8_t n) { return test::client_store(site(n), kSchema, "todo"); }

}  // namespace

TEST_CASE("a push is acknowledged only once the replica link holds it durably", "[channel][replica]") {
  Pair p(2);
  Device c1{device_store(1)};
  p.join(*p.a, 1, c1);
  // No link yet: the merge is durable here, the ack waits for the second copy.
  p.write(1, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  CHECK(c1.acked == 0);
  CHECK(p.a->waiting_for_quorum());
  CHECK(p.a->quorum_version() == 0);
  p.link();
  CHECK_FALSE(p.a->waiting_for_quorum());
  CHECK(c1.acked == c1.store->db_version());
  CHECK(rows(p.b->store()) == rows(*c1.store));
  CHECK(p.a->quorum_version() == p.a->db_version());
  // Linked: each later push is acked within its own routing (the link acks at once here).
  p.write(1, "INSERT INTO todo(id, title) VALUES (2, 'eggs')");
  CHECK(c1.acked == c1.store->db_version());
  CHECK(rows(p.b->store()) == rows(*c1.store));
}

TEST_CASE("a host does not forward back to a linked host what that host sent it", "[channel][replica]") {
  Pair p(2);
  Device c1{device_store(1)}, c2{device_store(2)};
  p.join(*p.a, 1, c1);
  p.link();
  p.join(*p.b, 2, c2);
  p.write(1, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  p.write(1, "INSERT INTO todo(id, title) VALUES (2, 'eggs')");
  const int sent_by_a = p.link_changes[p.a.get()];
  CHECK(sent_by_a > 0);
  CHECK(p.link_changes[p.b.get()] == 0);  // B got them from A: no echo
  // B's own client's change goes to A once, and does not come back to B.
  p.write(2, "UPDATE todo SET done = 1 WHERE id = 1");
  CHECK(p.link_changes[p.b.get()] > 0);
  CHECK(p.link_changes[p.a.get()] == sent_by_a);
  // Everyone converged and every ack went through the quorum.
  CHECK(rows(p.a->store()) == rows(p.b->store()));
  CHECK(rows(*c1.store) == rows(p.a->store()));
  CHECK(rows(*c2.store) == rows(p.b->store()));
  CHECK(c2.acked == c2.pushed);
  CHECK(c1.acked == c1.pushed);
  CHECK_FALSE(p.a->waiting_for_quorum());
  CHECK_FALSE(p.b->waiting_for_quorum());
  // A client failing over from A to B still misses nothing (the empty echo ranges moved
  // the translation pairs).
  Device c3{device_store(3)};
  p.join(*p.a, 3, c3);
  p.join(*p.b, 4, c3);
  CHECK(rows(*c3.store) == rows(p.b->store()));
}

TEST_CASE("an ack that waits for a missing replica fails retryable after the timeout", "[channel][replica]") {
  Pair p(2);
  Device c1{device_store(1)};
  p.join(*p.a, 1, c1);
  p.write(1, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  REQUIRE(p.a->waiting_for_quorum());
  CHECK(p.a->expire_quorum(std::chrono::steady_clock::now()).empty());
  auto expired = p.a->expire_quorum(std::chrono::steady_clock::now() + std::chrono::seconds(6));
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].session == 1);
  CHECK(expired[0].close_after);
  CHECK(expired[0].envelope.error().code() == sync::Error::UNAVAILABLE);
  CHECK(c1.acked == 0);
  CHECK_FALSE(p.a->waiting_for_quorum());
}

TEST_CASE("a client fails over to the other host: its cursor is translated and nothing is missed", "[channel][replica]") {
  Pair p(2);
  p.link();
  Device c1{device_store(1)}, c2{device_store(2)};
  p.join(*p.a, 1, c1);
  p.join(*p.a, 2, c2);
  for (int i = 1; i <= 20; ++i) p.write(1 + i % 2, "INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 't" + std::to_string(i) + "')");
  REQUIRE(rows(*c1.store) == rows(*c2.store));
  REQUIRE(rows(p.b->store()) == rows(*c1.store));
  const int64_t c2_cursor_on_a = c2.cursor;
  REQUIRE(c2_cursor_on_a > 0);

  // A is gone; c2 comes to B with A's site, cursor and acked version.
  p.links_up = false;
  p.a->leave(2);
  p.sessions.erase(2);
  p.b->leave(Pair::kLinkOnB);
  p.join(*p.b, 12, c2);
  CHECK(c2.errors.empty());  // its acked version counts here: no SITE_CONFLICT
  CHECK(c2.welcome.client_acked_db_version() == c2.acked);
  // Translated: B forwards from near its head, not from 0.
  CHECK(c2.welcome.forward_from() > 0);
  CHECK(c2.welcome.server_site_id() == site_bytes(p.b->site_id()));
  // With A gone B alone holds c2's next write: W = 2 holds its ack back (and fails it
  // retryable after the timeout) rather than acknowledge a single copy.
  const int64_t acked_before = c2.acked;
  p.write(12, "UPDATE todo SET done = 1 WHERE id = 3");
  CHECK(c2.acked == acked_before);
  CHECK(p.b->waiting_for_quorum());
  // c1 joins B too and both converge.
  p.a->leave(1);
  p.sessions.erase(1);
  p.join(*p.b, 11, c1);
  CHECK(c1.errors.empty());
  CHECK(rows(*c1.store) == rows(*c2.store));
  CHECK(rows(*c1.store) == rows(p.b->store()));
}

TEST_CASE("a translated cursor never skips a change the other host did not have", "[channel][replica]") {
  // B took writes A never saw (A was cut off); a client of A moving to B must get them.
  Pair p(1);
  p.link();
  Device c1{device_store(1)}, c3{device_store(3)};
  p.join(*p.a, 1, c1);
  p.write(1, "INSERT INTO todo(id, title) VALUES (1, 'a')");
  p.links_up = false;  // the link is cut: forwards are lost from here on
  p.join(*p.b, 3, c3);
  p.write(3, "INSERT INTO todo(id, title) VALUES (2, 'only on b')");
  p.write(1, "INSERT INTO todo(id, title) VALUES (3, 'only on a')");
  p.a->leave(1);
  p.sessions.erase(1);
  p.join(*p.b, 11, c1);
  CHECK(rows(*c1.store).find("only on b") != std::string::npos);
  // c1's write that never reached B is pushed again (B's welcome said it held less).
  CHECK(rows(*c1.store) == rows(p.b->store()));
}

TEST_CASE("replica pairs encode and decode, and malformed notes are refused", "[channel][replica][bad-input]") {
  std::vector<std::pair<int64_t, int64_t>> pairs{{3, 5}, {10, 12}, {11, 40}};
  auto back = decode_pairs(encode_pairs(pairs));
  REQUIRE(back);
  CHECK(*back == pairs);
  CHECK(decode_pairs("")->empty());
  CHECK_FALSE(decode_pairs("3:5,2:9"));
  CHECK_FALSE(decode_pairs("3:"));
  CHECK_FALSE(decode_pairs("x:1"));
  CHECK_FALSE(decode_pairs("-1:2"));
}
