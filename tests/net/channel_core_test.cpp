// The server channel's logic without actors or sockets: joins, pushes, group commits,
// acks, forwards and client acks between real Stores, and every refusal.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "tests/net/net_test_util.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/frames.hpp"
#include "runtime/sync/schema_sync.hpp"
#include "runtime/sync/binding.hpp"
#include "runtime/store/store_internal.hpp"
#include "runtime/sqlite/fault_vfs.hpp"

using namespace tandem;
using tandem::test::TempDir;
using namespace tandem::sync_channel;

namespace {

const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);";

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xC0;
  s[15] = n;
  return s;
}

std::unique_ptr<Store> client_store(uint8_t n) { return test::client_store(site(n), kSchema, "todo"); }

void write(Store& s, const std::string& sql) {
  auto r = s.write({SqlStatement{sql, {}}});
  INFO(r.status().to_string());
  REQUIRE(r.ok());
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

sync::Hello hello(Store& s, const std::string& server_site = {}, int64_t cursor = 0) {
  sync::Hello h;
  h.set_protocol_version(1);
  h.set_site_id(site_bytes(s.site_id()));
  h.set_server_site_id(server_site);
  h.set_cursor(cursor);
  h.add_schema(kSchema);
  return h;
}

sync::Push push_since(Store& s, uint64_t seq, int64_t since) {
  sync::Push p;
  p.set_seq(seq);
  *p.mutable_batch() = test::own_changes_since(s, since);
  return p;
}

// A channel of `user` in `dir`, opened or the test fails.
std::unique_ptr<ChannelCore> open_channel(const TempDir& dir, const std::string& user, const ChannelOptions& options = {}) {
  auto channel = ChannelCore::open(dir.path + "/users/" + user + ".db", options);
  INFO(channel.status().to_string());
  REQUIRE(channel.ok());
  return std::move(channel).value();
}

std::vector<sync::Envelope> for_session(const Outbox& out, uint64_t session) {
  std::vector<sync::Envelope> v;
  for (const auto& o : out)
    if (o.session == session) v.push_back(o.envelope);
  return v;
}


}  // namespace

TEST_CASE("a push is merged, acked after the group commit, and forwarded to the other session", "[channel]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1), b = client_store(2);

  auto joined_a = ch.join(1, "alice", hello(*a));
  INFO(joined_a.status().to_string());
  REQUIRE(joined_a.ok());
  REQUIRE(joined_a->size() == 1);
  const auto& welcome = (*joined_a)[0].envelope.welcome();
  CHECK(welcome.user() == "alice");
  CHECK(welcome.client_acked_db_version() == 0);
  CHECK(welcome.server_site_id().size() == 16);
  REQUIRE(ch.join(2, "alice", hello(*b)).ok());

  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'milk'), (2, 'eggs')");
  write(*a, "UPDATE todo SET done = 1 WHERE id = 1");
  REQUIRE(ch.push(1, push_since(*a, 1, 0)).ok());
  CHECK(ch.has_pending());
  Outbox out = ch.flush();
  CHECK_FALSE(ch.has_pending());
  CHECK(ch.stats().group_commits == 1);

  auto to_a = for_session(out, 1);
  // The ack alone: the new versions are all a's, so the ack moves a's cursor instead of an
  // empty forward.
  REQUIRE(to_a.size() == 1);
  REQUIRE(to_a[0].has_ack());
  CHECK(to_a[0].ack().seq() == 1);
  CHECK(to_a[0].ack().client_acked_db_version() == a->db_version());
  CHECK(to_a[0].ack().forwarded_db_version() == ch.db_version());

  auto to_b = for_session(out, 2);
  REQUIRE(to_b.size() == 1);
  REQUIRE(to_b[0].has_forward());
  CHECK(to_b[0].forward().seq() == 1);
  auto merged = b->merge(to_b[0].forward().batch());
  REQUIRE(merged.ok());
  CHECK(rows(*b) == rows(*a));
  CHECK(rows(*b) == "1 'milk' 1 \n2 'eggs' 0 \n");

  sync::ClientAck ack;
  ack.set_seq(1);
  ack.set_server_db_version(to_b[0].forward().batch().to_db_version());
  auto more = ch.client_ack(2, ack);
  REQUIRE(more.ok());
  CHECK(more->empty());
  REQUIRE(ch.checkpoint().ok());
  auto cursor = ch.store().peer(b->site_id());
  REQUIRE(cursor.ok());
  CHECK(cursor->acked == ch.db_version());
  auto a_cursor = ch.store().peer(a->site_id());
  REQUIRE(a_cursor.ok());
  CHECK(a_cursor->acked == ch.db_version());  // a was told so in its ack
}

TEST_CASE("an ack moves the pusher's cursor only when nothing else is owed to it", "[channel]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1), b = client_store(2);
  REQUIRE(ch.join(1, "alice", hello(*a)).ok());
  REQUIRE(ch.join(2, "alice", hello(*b)).ok());

  // Both push in one flush: each must be forwarded the other's changes, in a forward.
  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  write(*b, "INSERT INTO todo(id, title) VALUES (2, 'eggs')");
  REQUIRE(ch.push(1, push_since(*a, 1, 0)).ok());
  REQUIRE(ch.push(2, push_since(*b, 1, 0)).ok());
  Outbox out = ch.flush();
  for (uint64_t session : {1, 2}) {
    auto to = for_session(out, session);
    REQUIRE(to.size() == 2);
    REQUIRE(to[0].has_ack());
    CHECK(to[0].ack().forwarded_db_version() == 0);
    REQUIRE(to[1].has_forward());
    CHECK(to[1].forward().batch().changes_size() == 2);  // the other's row: its sentinel and title
  }

  // a has not acknowledged its forward: its next ack cannot move its cursor either, and the
  // forward it is then owed carries only the range after the unacknowledged one.
  write(*a, "INSERT INTO todo(id, title) VALUES (3, 'jam')");
  REQUIRE(ch.push(1, push_since(*a, 2, 1)).ok());
  out = ch.flush();
  auto to_a = for_session(out, 1);
  REQUIRE_FALSE(to_a.empty());
  REQUIRE(to_a[0].has_ack());
  CHECK(to_a[0].ack().forwarded_db_version() == 0);
  REQUIRE(to_a.size() == 2);
  REQUIRE(to_a[1].has_forward());
  CHECK(to_a[1].forward().batch().changes_size() == 0);
  CHECK(to_a[1].forward().batch().to_db_version() == ch.db_version());
}

TEST_CASE("a reconnecting client gets exactly what it missed, by its cursor or the server's record", "[channel]") {
  TempDir dir;
  const std::string path = dir.path + "/users/bob.db";
  auto a = client_store(1), b = client_store(2);
  std::string server_site;
  int64_t b_cursor = 0;
  {
    auto ch = ChannelCore::open(path);
    REQUIRE(ch.ok());
    REQUIRE((*ch)->join(1, "bob", hello(*a)).ok());
    REQUIRE((*ch)->join(2, "bob", hello(*b)).ok());
    write(*a, "INSERT INTO todo(id, title) VALUES (1, 'one')");
    REQUIRE((*ch)->push(1, push_since(*a, 1, 0)).ok());
    auto out = (*ch)->flush();
    auto to_b = for_session(out, 2);
    REQUIRE(to_b.size() == 1);
    REQUIRE(b->merge(to_b[0].forward().batch()).ok());
    sync::ClientAck ack;
    ack.set_seq(1);
    ack.set_server_db_version(to_b[0].forward().batch().to_db_version());
    REQUIRE((*ch)->client_ack(2, ack).ok());
    (*ch)->leave(2);  // b goes offline; its ack is recorded
    server_site = site_bytes((*ch)->site_id());
    b_cursor = to_b[0].forward().batch().to_db_version();

    write(*a, "INSERT INTO todo(id, title) VALUES (2, 'two')");
    REQUIRE((*ch)->push(1, push_since(*a, 2, 1)).ok());
    (*ch)->flush();
  }
  auto ch = ChannelCore::open(path);  // the server restarted
  REQUIRE(ch.ok());
  SECTION("by the client's cursor") {
    auto joined = (*ch)->join(7, "bob", hello(*b, server_site, b_cursor));
    REQUIRE(joined.ok());
    REQUIRE(joined->size() == 2);
    const auto& fwd = (*joined)[1].envelope.forward();
    CHECK(fwd.batch().from_db_version() == b_cursor);
    REQUIRE(b->merge(fwd.batch()).ok());
    CHECK(rows(*b) == rows(*a));
  }
  SECTION("by the server's record when the client does not know the server") {
    auto joined = (*ch)->join(7, "bob", hello(*b));
    REQUIRE(joined.ok());
    REQUIRE(joined->size() == 2);
    CHECK((*joined)[0].envelope.welcome().forward_from() == b_cursor);
    REQUIRE(b->merge((*joined)[1].envelope.forward().batch()).ok());
    CHECK(rows(*b) == rows(*a));
  }
  SECTION("a pusher learns what the server holds of it") {
    sync::Hello h = hello(*a, server_site, 0);
    h.set_acked_db_version(a->db_version());
    auto joined = (*ch)->join(8, "bob", h);
    REQUIRE(joined.ok());
    CHECK((*joined)[0].envelope.welcome().client_acked_db_version() == a->db_version());
  }
}

TEST_CASE("the forward window holds back forwards until the client acks", "[channel]") {
  TempDir dir;
  ChannelOptions options;
  options.forward_window = 2;
  options.forward_batch_changes = 1;  // one db_version per forward
  auto ch = ChannelCore::open(dir.path + "/users/w.db", options);
  REQUIRE(ch.ok());
  auto a = client_store(1), b = client_store(2);
  REQUIRE((*ch)->join(1, "w", hello(*a)).ok());
  REQUIRE((*ch)->join(2, "w", hello(*b)).ok());
  // Five pushes, five server versions: only two forwards may be unacknowledged at once.
  std::vector<sync::Envelope> to_b;
  for (int i = 1; i <= 5; ++i) {
    const int64_t since = a->db_version();
    write(*a, "INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
    REQUIRE((*ch)->push(1, push_since(*a, static_cast<uint64_t>(i), since)).ok());
    for (auto& e : for_session((*ch)->flush(), 2)) to_b.push_back(e);
  }
  REQUIRE(to_b.size() == 2);
  uint64_t acked = 0;
  int64_t merged_to = 0;
  while (!to_b.empty()) {
    for (const auto& e : to_b) {
      REQUIRE(e.has_forward());
      CHECK(e.forward().seq() == acked + 1);
      REQUIRE(b->merge(e.forward().batch()).ok());
      merged_to = e.forward().batch().to_db_version();
      ++acked;
    }
    sync::ClientAck ack;
    ack.set_seq(acked);
    ack.set_server_db_version(merged_to);
    auto more = (*ch)->client_ack(2, ack);
    REQUIRE(more.ok());
    to_b = for_session(*more, 2);
    CHECK(to_b.size() <= 2);
  }
  CHECK(rows(*b) == rows(*a));
  sync::ClientAck bogus;
  bogus.set_seq(99);
  CHECK_FALSE((*ch)->client_ack(2, bogus).ok());
}

TEST_CASE("bad pushes are refused and change nothing", "[channel][bad-input]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/c.db");
  REQUIRE(ch.ok());
  auto a = client_store(1), b = client_store(2);
  REQUIRE((*ch)->join(1, "c", hello(*a)).ok());
  REQUIRE((*ch)->join(2, "c", hello(*b)).ok());
  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'x')");
  CHECK_FALSE((*ch)->push(1, push_since(*a, 2, 0)).ok());  // seq must start at 1
  CHECK_FALSE((*ch)->push(2, push_since(*a, 1, 0)).ok());  // a's batch on b's session
  CHECK_FALSE((*ch)->push(9, push_since(*a, 1, 0)).ok());  // not joined
  {
    // More unacknowledged pushes than the window allows (a third session).
    auto c = client_store(3);
    REQUIRE((*ch)->join(3, "c", hello(*c)).ok());
    for (uint64_t seq = 1; seq <= 17; ++seq) {
      write(*c, "INSERT INTO todo(id, title) VALUES (" + std::to_string(100 + seq) + ", 'c')");
      if (seq <= 16) REQUIRE((*ch)->push(3, push_since(*c, seq, static_cast<int64_t>(seq) - 1)).ok());
    }
    CHECK_FALSE((*ch)->push(3, push_since(*c, 17, 16)).ok());
    (*ch)->flush();  // acks 1..16: the window opens again
    REQUIRE((*ch)->push(3, push_since(*c, 17, 16)).ok());
    (*ch)->flush();
  }

  const int64_t before = (*ch)->db_version();
  sync::Push bad = push_since(*a, 1, 0);
  bad.mutable_batch()->mutable_changes(0)->set_table("no_such_table");
  REQUIRE((*ch)->push(1, bad).ok());  // queued; the merge refuses it
  auto out = (*ch)->flush();
  auto to_a = for_session(out, 1);
  REQUIRE(to_a.size() == 1);
  REQUIRE(to_a[0].has_error());
  CHECK(to_a[0].error().code() == sync::Error::REJECTED);
  CHECK(to_a[0].error().fatal());
  CHECK(for_session(out, 2).empty());
  CHECK((*ch)->db_version() == before);
}

TEST_CASE("schemas from clients: tables adopted, mismatches and hostile statements refused", "[channel][bad-input]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/d.db");
  REQUIRE(ch.ok());
  auto a = client_store(1);
  REQUIRE((*ch)->join(1, "d", hello(*a)).ok());
  REQUIRE((*ch)->store().table("todo") != nullptr);

  sync::Hello other = hello(*a);
  other.clear_schema();
  other.add_schema("CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, name TEXT);");
  auto refused = (*ch)->join(2, "d", other);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Catch::Contains("differs"));

  const std::string victim = dir.path + "/victim.db";
  sync::Hello hostile = hello(*a);
  hostile.add_schema("ATTACH DATABASE '" + victim + "' AS x; CREATE TABLE x.evil(a PRIMARY KEY NOT NULL);");
  hostile.add_schema("VACUUM INTO '" + victim + "';");
  hostile.add_schema("CREATE TABLE notes(id INTEGER PRIMARY KEY NOT NULL, body TEXT);");
  auto joined = (*ch)->join(3, "d", hostile);
  CHECK_FALSE(joined.ok());  // CREATE TABLE x.evil needs the attached database
  CHECK(::access(victim.c_str(), F_OK) != 0);
  CHECK((*ch)->store().table("notes") == nullptr);  // refused whole

  sync::Hello skipped = hello(*a);
  skipped.add_schema("VACUUM INTO '" + victim + "'; CREATE TABLE notes(id INTEGER PRIMARY KEY NOT NULL, body TEXT);"
                     "CREATE INDEX notes_body ON notes(body);");
  REQUIRE((*ch)->join(4, "d", skipped).ok());
  CHECK(::access(victim.c_str(), F_OK) != 0);
  CHECK((*ch)->store().table("notes") != nullptr);

  sync::Hello unsupported = hello(*a);
  unsupported.add_schema("CREATE TABLE nokey(a, b);");
  CHECK_FALSE((*ch)->join(5, "d", unsupported).ok());
}

TEST_CASE("a device on a newer additive schema joins: the channel adopts its columns, older devices get only theirs", "[channel][schema]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/e.db");
  REQUIRE(ch.ok());
  // Merges every forward of `out` for `session` into `into`; returns how many it merged.
  auto deliver = [](const Outbox& out, uint64_t session, Store& into) {
    int forwards = 0;
    for (const auto& env : for_session(out, session)) {
      if (!env.has_forward()) continue;
      for (const auto& c : env.forward().batch().changes()) CHECK(into.table(c.table())->value_index(c.cid()) >= (c.cid() == "-1" ? -1 : 0));
      auto merged = into.merge(env.forward().batch());
      INFO(merged.status().to_string());
      CHECK(merged.ok());
      ++forwards;
    }
    return forwards;
  };
  auto older = client_store(1);
  REQUIRE((*ch)->join(1, "e", hello(*older)).ok());
  write(*older, "INSERT INTO todo(id, title) VALUES (1, 'a')");
  REQUIRE((*ch)->push(1, push_since(*older, 1, 0)).ok());
  (void)(*ch)->flush();

  // The newer device: todo gains a column, declared after the others.
  const char* v2 = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0, note TEXT);";
  auto newer = test::client_store(site(2), kSchema, "todo");
  REQUIRE(newer->execute_schema(sync_schema::if_not_exists(v2)).ok());
  sync::Hello h = hello(*newer);
  h.clear_schema();
  h.add_schema(v2);
  auto joined = (*ch)->join(2, "e", h);
  REQUIRE(joined.ok());
  REQUIRE((*ch)->store().table("todo")->value_columns.size() == 3);  // adopted in place
  deliver(*joined, 2, *newer);
  deliver((*ch)->flush(), 2, *newer);
  REQUIRE(rows(*newer) == "1 'a' 0 \n");

  // A third device on the old schema still joins.
  auto late = client_store(3);
  auto late_joined = (*ch)->join(3, "e", hello(*late));
  REQUIRE(late_joined.ok());
  deliver(*late_joined, 3, *late);
  deliver((*ch)->flush(), 3, *late);

  write(*newer, "INSERT INTO todo(id, title, note) VALUES (2, 'b', 'only new devices see this')");
  write(*newer, "UPDATE todo SET note = 'n1' WHERE id = 1");
  REQUIRE((*ch)->push(2, push_since(*newer, 1, 0)).ok());
  auto out = (*ch)->flush();
  CHECK(deliver(out, 1, *older) > 0);  // no change of `note` in them: deliver checks each column
  CHECK(deliver(out, 3, *late) > 0);
  CHECK(rows(*older) == "1 'a' 0 \n2 'b' 0 \n");
  CHECK(rows(*late) == rows(*older));
  // Older devices keep writing other columns; the new column's value survives on the channel.
  write(*older, "UPDATE todo SET title = 'a2' WHERE id = 1");
  REQUIRE((*ch)->push(1, push_since(*older, 2, 1)).ok());
  (void)(*ch)->flush();
  auto on_channel = (*ch)->store().query("SELECT id, title, note FROM todo ORDER BY id");
  REQUIRE(on_channel.ok());
  REQUIRE(on_channel->rows.size() == 2);
  CHECK(identical(on_channel->rows[0], Row{Value::Integer(1), Value::Text("a2"), Value::Text("n1")}));

  // A declaration that is neither older nor newer is refused, naming the difference.
  sync::Hello renamed = hello(*late);
  renamed.clear_schema();
  renamed.add_schema("CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, name TEXT, done INTEGER DEFAULT 0, note TEXT);");
  auto refused = (*ch)->join(4, "e", renamed);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Catch::Contains("differs") && Catch::Contains("renaming column title to name"));
}

TEST_CASE("schema text splits into statements", "[channel]") {
  auto s = sync_schema::split_statements("CREATE TABLE a(x PRIMARY KEY); -- c\n CREATE TABLE b(';', y)");
  REQUIRE(s.ok());
  REQUIRE(s->size() == 2);
  CHECK_FALSE(sync_schema::split_statements("CREATE TABLE a('x").ok());
  CHECK(sync_schema::if_not_exists("create table t(a)") == "create table IF NOT EXISTS t(a)");
  CHECK(sync_schema::if_not_exists(" CREATE UNIQUE INDEX i ON t(a)") == " CREATE UNIQUE INDEX IF NOT EXISTS i ON t(a)");
  CHECK(sync_schema::if_not_exists("CREATE TABLE IF NOT EXISTS t(a)") == "CREATE TABLE IF NOT EXISTS t(a)");
  CHECK(sync_schema::if_not_exists("CREATE VIEW v AS SELECT 1") == "CREATE VIEW v AS SELECT 1");
}

TEST_CASE("frames: malformed and unknown envelopes, hello checks", "[channel][bad-input]") {
  auto garbage = sync_frames::decode(std::string("\xff\xff\xff\xff", 4));
  CHECK_FALSE(garbage.ok);
  CHECK(garbage.error.code() == sync::Error::MALFORMED);
  // Field 99 (varint): a valid protobuf, but no message this version knows.
  auto unknown = sync_frames::decode(std::string("\x98\x06\x01", 3));
  CHECK_FALSE(unknown.ok);
  CHECK(unknown.error.code() == sync::Error::UNKNOWN_MESSAGE);
  sync::Envelope e;
  e.mutable_ping()->set_nonce(7);
  auto ping = sync_frames::decode(sync_frames::encode(e));
  REQUIRE(ping.ok);
  CHECK(ping.envelope.ping().nonce() == 7);

  sync::Hello h;
  h.set_protocol_version(2);
  h.set_site_id(std::string(16, 'x'));
  sync::Error why;
  CHECK_FALSE(sync_frames::check_hello(h, &why));
  CHECK(why.code() == sync::Error::UNSUPPORTED_VERSION);
  h.set_protocol_version(1);
  CHECK(sync_frames::check_hello(h, &why));
  h.set_site_id("short");
  CHECK_FALSE(sync_frames::check_hello(h, &why));
  CHECK(why.code() == sync::Error::MALFORMED);
}

TEST_CASE("a version larger than a forward is forwarded in parts, and a large push is accepted in parts", "[channel]") {
  TempDir dir;
  ChannelOptions options;
  options.forward_batch_changes = 7;
  options.forward_window = 100;
  auto ch = ChannelCore::open(dir.path + "/users/big.db", options);
  REQUIRE(ch.ok());
  auto a = client_store(1), b = client_store(2);
  REQUIRE((*ch)->join(1, "big", hello(*a)).ok());
  REQUIRE((*ch)->join(2, "big", hello(*b)).ok());
  std::string values;
  for (int i = 1; i <= 50; ++i) values += (i > 1 ? "," : "") + std::string("(") + std::to_string(i) + ", 't')";
  write(*a, "INSERT INTO todo(id, title) VALUES " + values);  // one version, 100 changes

  // The client side of a split push: parts of one version, each resumed from the last.
  Store::ChangesRequest req;
  req.limit = 30;
  req.split_versions = true;
  uint64_t seq = 0;
  for (;;) {
    auto part = a->changes(req);
    REQUIRE(part.ok());
    sync::Push p;
    p.set_seq(++seq);
    *p.mutable_batch() = *part;
    REQUIRE((*ch)->push(1, p).ok());
    if (part->resume_after().empty()) break;
    req.since = part->to_db_version();
    req.resume_after = part->resume_after();
  }
  CHECK(seq >= 3);
  auto out = (*ch)->flush();
  auto to_a = for_session(out, 1);
  REQUIRE_FALSE(to_a.empty());
  REQUIRE(to_a[0].has_ack());
  CHECK(to_a[0].ack().client_acked_db_version() == a->db_version());

  auto to_b = for_session(out, 2);
  CHECK(to_b.size() >= 12);  // 100 changes, parts of 8 (whole rows of 2 cells)
  for (const auto& e : to_b) {
    REQUIRE(e.has_forward());
    CHECK(e.forward().batch().changes_size() <= 7 + 2);  // cut at row boundaries
    REQUIRE(b->merge(e.forward().batch()).ok());
  }
  CHECK(rows(*b) == rows(*a));
}

TEST_CASE("a client is forwarded only the tables its hello declared", "[channel]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/s.db");
  REQUIRE(ch.ok());
  const char* two = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);"
                    "CREATE TABLE note(id INTEGER PRIMARY KEY NOT NULL, body TEXT);";
  StoreOptions options;
  options.site_id = site(1);
  auto newer = Store::open(":memory:", options);
  REQUIRE(newer.ok());
  REQUIRE((*newer)->execute_schema(two).ok());
  REQUIRE((*newer)->register_table("todo").ok());
  REQUIRE((*newer)->register_table("note").ok());
  auto older = client_store(2);  // knows only todo

  sync::Hello h = hello(**newer);
  h.clear_schema();
  h.add_schema(two);
  REQUIRE((*ch)->join(1, "s", h).ok());
  REQUIRE((*ch)->join(2, "s", hello(*older)).ok());
  write(**newer, "INSERT INTO todo(id, title) VALUES (1, 'a')");
  write(**newer, "INSERT INTO note(id, body) VALUES (1, 'only for new devices')");
  REQUIRE((*ch)->push(1, push_since(**newer, 1, 0)).ok());
  auto to_old = for_session((*ch)->flush(), 2);
  REQUIRE(to_old.size() == 1);
  for (const auto& c : to_old[0].forward().batch().changes()) CHECK(c.table() == "todo");
  REQUIRE(older->merge(to_old[0].forward().batch()).ok());  // nothing it cannot merge
  CHECK(rows(*older) == "1 'a' 0 \n");
}

TEST_CASE("binding: the first sync binds a database to its user and server, others are refused", "[sync][binding]") {
  TempDir dir;
  auto db = Store::open(dir.path + "/device.db");
  REQUIRE(db.ok());
  auto none = sync_binding::load(**db);
  REQUIRE(none.ok());
  CHECK(none->empty());
  CHECK(sync_binding::check(*none, "bob", "ws://a:1/sync").ok());  // never synced: anyone

  auto bound = sync_binding::record(**db, {"alice", sync_binding::normalize_server_url("WS://Host:7000/sync")});
  REQUIRE(bound.ok());
  auto stored = sync_binding::load(**db);
  REQUIRE(stored.ok());
  CHECK(stored->user == "alice");
  CHECK(stored->server == "ws://host:7000/sync");

  CHECK(sync_binding::check(*stored, "alice", "ws://host:7000/sync").ok());
  CHECK(sync_binding::check(*stored, "alice", "ws://HOST:7000/sync").ok());
  CHECK(sync_binding::check(*stored, "", "ws://host:7000/sync").ok());  // unreadable subject: the server decides
  Status other_user = sync_binding::check(*stored, "bob", "ws://host:7000/sync");
  CHECK(other_user.code() == StatusCode::permission_denied);
  CHECK(other_user.message().find("belongs to user 'alice'") != std::string::npos);
  Status other_server = sync_binding::check(*stored, "alice", "ws://host:7001/sync");
  CHECK(other_server.code() == StatusCode::permission_denied);
  CHECK(other_server.message().find("syncs with ws://host:7000/sync") != std::string::npos);
  // Recording again: the same binding is kept, another is refused and changes nothing.
  CHECK(sync_binding::record(**db, {"alice", "ws://host:7000/sync"}).ok());
  CHECK(sync_binding::record(**db, {"bob", "ws://host:7000/sync"}).status().code() == StatusCode::permission_denied);
  CHECK(sync_binding::load(**db)->user == "alice");

  CHECK(sync_binding::normalize_server_url("wss://h/sync") == "wss://h:443/sync");
  CHECK(sync_binding::normalize_server_url("ws://[::1]:80/x") == sync_binding::normalize_server_url("ws://[::1]/x"));
}

namespace {

// Refuses only `PRAGMA synchronous`, as a connection whose durability cannot be set would.
int deny_synchronous(void*, int action, const char* a, const char*, const char*, const char*) {
  return action == SQLITE_PRAGMA && a != nullptr && std::string(a) == "synchronous" ? SQLITE_DENY : SQLITE_OK;
}

}  // namespace

TEST_CASE("no ack follows a group commit whose synchronous=FULL could not be set", "[channel][fault]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1);
  REQUIRE(ch.join(1, "alice", hello(*a)).ok());
  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'milk')");

  sqlite3_set_authorizer(store_connection(ch.store()).raw(), deny_synchronous, nullptr);
  REQUIRE(ch.push(1, push_since(*a, 1, 0)).ok());
  Outbox out = ch.flush();
  auto to_a = for_session(out, 1);
  REQUIRE(to_a.size() == 1);
  INFO(sync_frames::describe(to_a[0]));
  REQUIRE(to_a[0].has_error());  // not an Ack: the commit was not fsync'd
  CHECK(to_a[0].error().code() == sync::Error::UNAVAILABLE);
  CHECK(to_a[0].error().fatal());
  CHECK(ch.stats().group_commits == 0);
  // Its reconnection is refused while the server still cannot sync: the welcome would tell
  // it the server holds the merged changes.
  ch.leave(1);
  auto refused = ch.join(3, "alice", hello(*a));
  REQUIRE_FALSE(refused.ok());
  CHECK(sync_frames::error_code_for(refused.status()) == sync::Error::UNAVAILABLE);
  sqlite3_set_authorizer(store_connection(ch.store()).raw(), nullptr, nullptr);

  // Once the server can sync again, a join pays the fsync it owed before any welcome.
  auto c = client_store(3);
  auto joined = ch.join(2, "alice", hello(*c));
  REQUIRE(joined.ok());
  REQUIRE((*joined)[0].envelope.has_welcome());
  // The device was never acknowledged, while the server holds its change: the same as an
  // ack lost on the way, so it is told to take a new site id (docs/protocol.md), and its
  // change, pushed again under the new id, is acknowledged.
  sync::Hello again = hello(*a, (*joined)[0].envelope.welcome().server_site_id(), 0);
  auto conflict = ch.join(4, "alice", again);
  REQUIRE(conflict.ok());
  REQUIRE((*conflict)[0].envelope.has_error());
  CHECK((*conflict)[0].envelope.error().code() == sync::Error::SITE_CONFLICT);
  REQUIRE(a->take_new_site(0).ok());
  REQUIRE(ch.join(5, "alice", hello(*a)).ok());
  REQUIRE(ch.push(5, push_since(*a, 1, 0)).ok());
  auto acked = for_session(ch.flush(), 5);
  REQUIRE_FALSE(acked.empty());
  REQUIRE(acked[0].has_ack());
  CHECK(acked[0].ack().client_acked_db_version() == a->db_version());
  CHECK(ch.stats().group_commits == 1);
}

TEST_CASE("pushes must be contiguous, carry changes and end at one of them", "[channel][bad-input]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/k.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1);
  REQUIRE(ch.join(1, "k", hello(*a)).ok());
  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'x')");
  sync::Push p = push_since(*a, 1, 0);
  SECTION("a push that starts after what the server holds") {
    p.mutable_batch()->set_from_db_version(1);
    p.mutable_batch()->set_to_db_version(2);
    p.mutable_batch()->mutable_changes(0)->set_db_version(2);
  }
  SECTION("an empty push claiming a range") {
    p.mutable_batch()->clear_changes();
    p.mutable_batch()->set_to_db_version(1000000);
  }
  SECTION("a range beyond its last change") { p.mutable_batch()->set_to_db_version(1000000); }
  CHECK_FALSE(ch.push(1, p).ok());
  CHECK_FALSE(ch.has_pending());
  CHECK(ch.db_version() == 0);
  CHECK(ch.store().peer(a->site_id())->received == 0);
}

TEST_CASE("one site id on two devices: the second is refused and takes a new site id, nothing is lost", "[channel]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/t.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1);
  const auto welcome = (*ch.join(1, "t", hello(*a)))[0].envelope.welcome();
  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'from a before the copy')");
  REQUIRE(ch.push(1, push_since(*a, 1, 0)).ok());
  REQUIRE(for_session(ch.flush(), 1)[0].has_ack());
  const int64_t acked_at_copy = a->db_version();

  // b is a copy of a's file: the same site id and history, the same acknowledgement recorded.
  auto b = client_store(1);
  REQUIRE(b->merge(*a->changes_since(0)).ok());
  write(*a, "INSERT INTO todo(id, title) VALUES (2, 'from a after the copy')");
  REQUIRE(ch.push(1, push_since(*a, 2, acked_at_copy)).ok());
  REQUIRE(for_session(ch.flush(), 1)[0].has_ack());
  write(*b, "INSERT INTO todo(id, title) VALUES (3, 'from b')");  // the same (site, db_version) as a's id 2

  SECTION("the copy connects after the original pushed") {
    sync::Hello hb = hello(*b, welcome.server_site_id(), 0);
    hb.set_acked_db_version(acked_at_copy);
    auto refused = ch.join(2, "t", hb);
    REQUIRE(refused.ok());
    REQUIRE(refused->size() == 1);
    REQUIRE((*refused)[0].envelope.has_error());
    CHECK((*refused)[0].envelope.error().code() == sync::Error::SITE_CONFLICT);
    CHECK((*refused)[0].close_after);
    CHECK(ch.session_count() == 1);
  }
  SECTION("a copy connected at the same time pushes after the original") {
    auto c = client_store(1);
    for (int i = 0; i < 5; ++i) write(*c, "INSERT INTO todo(id, title) VALUES (" + std::to_string(10 + i) + ", 'from c')");
    const int64_t held = ch.store().peer(a->site_id())->received;
    sync::Hello hc = hello(*c, welcome.server_site_id(), 0);
    hc.set_acked_db_version(held);
    REQUIRE(ch.join(2, "t", hc).ok());  // nothing tells the copies apart yet
    const int64_t before = a->db_version();
    write(*a, "INSERT INTO todo(id, title) VALUES (4, 'from a')");
    REQUIRE(ch.push(1, push_since(*a, 3, before)).ok());
    REQUIRE(ch.push(2, push_since(*c, 1, held)).ok());
    auto out = ch.flush();
    REQUIRE(for_session(out, 1)[0].has_ack());
    auto to_c = for_session(out, 2);
    REQUIRE_FALSE(to_c.empty());
    REQUIRE(to_c[0].has_error());
    CHECK(to_c[0].error().code() == sync::Error::SITE_CONFLICT);
    CHECK_THAT(rows(ch.store()), !Catch::Contains("from c"));
  }

  // The copy takes a new site id; what the server acknowledged stays under the old one.
  auto fresh = b->take_new_site(acked_at_copy);
  REQUIRE(fresh.ok());
  CHECK(*fresh != a->site_id());
  CHECK(b->site_id() == *fresh);
  auto all = b->changes_since(0);
  REQUIRE(all.ok());
  for (const auto& c : all->changes())
    CHECK((c.db_version() <= acked_at_copy) == (c.site_id() == site_bytes(a->site_id())));
  auto joined = ch.join(3, "t", hello(*b, welcome.server_site_id(), 0));
  REQUIRE(joined.ok());
  REQUIRE((*joined)[0].envelope.has_welcome());
  CHECK((*joined)[0].envelope.welcome().client_acked_db_version() == 0);
  REQUIRE(ch.push(3, push_since(*b, 1, 0)).ok());
  auto to_b = for_session(ch.flush(), 3);
  REQUIRE_FALSE(to_b.empty());
  REQUIRE(to_b[0].has_ack());
  CHECK(to_b[0].ack().client_acked_db_version() == b->db_version());
  // A new device receives every write: a's and b's.
  auto d = client_store(4);
  auto joined_d = ch.join(4, "t", hello(*d));
  REQUIRE(joined_d.ok());
  for (const auto& o : *joined_d)
    if (o.envelope.has_forward()) REQUIRE(d->merge(o.envelope.forward().batch()).ok());
  CHECK_THAT(rows(*d), Catch::Contains("1 'from a before the copy'") && Catch::Contains("2 'from a after the copy'") &&
                           Catch::Contains("3 'from b'"));
}

TEST_CASE("an ack lost with its connection is no site conflict for the same client run, and one for another run", "[channel]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/l.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1);
  const std::string run(16, 'r'), other_run(16, 'o');
  sync::Hello first = hello(*a);
  first.set_instance_id(run);
  const auto welcome = (*ch.join(1, "l", first))[0].envelope.welcome();
  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'x')");
  REQUIRE(ch.push(1, push_since(*a, 1, 0)).ok());
  REQUIRE(for_session(ch.flush(), 1)[0].has_ack());  // merged and acked, but the ack is lost
  ch.leave(1);

  sync::Hello again = hello(*a, welcome.server_site_id(), 0);
  again.set_acked_db_version(0);  // the device never saw the ack
  SECTION("the same run reconnects") {
    again.set_instance_id(run);
    auto joined = ch.join(2, "l", again);
    REQUIRE(joined.ok());
    REQUIRE((*joined)[0].envelope.has_welcome());
    CHECK((*joined)[0].envelope.welcome().client_acked_db_version() == a->db_version());
  }
  SECTION("another run (or a copy) cannot tell its changes apart") {
    again.set_instance_id(other_run);
    auto joined = ch.join(2, "l", again);
    REQUIRE(joined.ok());
    REQUIRE((*joined)[0].envelope.has_error());
    CHECK((*joined)[0].envelope.error().code() == sync::Error::SITE_CONFLICT);
  }
}

TEST_CASE("when the last merge of a group commit is refused, the others are acked only after an fsync", "[channel][fault]") {
  REQUIRE(register_fault_vfs());
  TempDir dir;
  ChannelOptions options;
  options.vfs = kFaultVfsName;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db", options);
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1);
  auto b = client_store(2);
  REQUIRE(ch.join(1, "alice", hello(*a)).ok());
  REQUIRE(ch.join(2, "alice", hello(*b)).ok());
  // Twice: the second time, whatever the first fallback wrote is already there.
  for (int round = 0; round < 2; ++round) {
    INFO("round " << round);
    const int64_t a_since = a->db_version();
    write(*a, "INSERT INTO todo(id, title) VALUES (" + std::to_string(1 + 2 * round) + ", 'milk')");
    write(*b, "INSERT INTO todo(id, title) VALUES (" + std::to_string(2 + 2 * round) + ", 'eggs')");
    REQUIRE(ch.push(1, push_since(*a, 1 + round, a_since)).ok());
    // b's batch is well-formed but holds a value its column would store differently: the
    // merge refuses it whole. Sessions merge in id order, so it is the group's last merge.
    sync::Push bad = push_since(*b, 1, 0);  // the server holds none of b's changes
    for (auto& c : *bad.mutable_batch()->mutable_changes())
      if (c.cid() == "done") c.mutable_val()->set_text("1");
    REQUIRE(ch.push(2, bad).ok());
    clear_faults();
    Outbox out = ch.flush();
    auto to_a = for_session(out, 1);
    auto to_b = for_session(out, 2);
    REQUIRE_FALSE(to_b.empty());
    CHECK(to_b[0].has_error());
    REQUIRE_FALSE(to_a.empty());
    REQUIRE(to_a[0].has_ack());
    CHECK(to_a[0].ack().seq() == static_cast<uint64_t>(1 + round));
    // a's merge was deferred; its ack needs the fsync that the refused merge did not do.
    CHECK(fault_vfs_syncs() >= 1);
    CHECK(ch.stats().group_commits == 1 + round);
    // b's session closed on the refusal; it joins again for the next round.
    ch.leave(2);
    REQUIRE(ch.join(2, "alice", hello(*b)).ok());
  }
}

TEST_CASE("sessions() lists each joined device with its site and name and cursor and activity", "[channel][status]") {
  TempDir dir;
  auto channel = ChannelCore::open(dir.path + "/users/alice.db");
  REQUIRE(channel.ok());
  auto& ch = **channel;
  auto a = client_store(1), b = client_store(2);
  auto hello_a = hello(*a);
  hello_a.set_client_name("phone");
  const auto before = std::chrono::system_clock::now();
  REQUIRE(ch.join(7, "alice", hello_a).ok());
  REQUIRE(ch.join(9, "alice", hello(*b)).ok());
  CHECK(ch.sessions().size() == 2);

  write(*a, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  REQUIRE(ch.push(7, push_since(*a, 1, 0)).ok());
  Outbox out = ch.flush();
  auto to_b = for_session(out, 9);
  REQUIRE(to_b.size() == 1);
  REQUIRE(to_b[0].has_forward());

  auto sessions = ch.sessions();
  REQUIRE(sessions.size() == 2);
  const auto& sa = sessions[0];
  const auto& sb = sessions[1];
  CHECK(sa.session == 7);
  CHECK(sa.site == a->site_id());
  CHECK(sa.name == "phone");
  CHECK(sa.pushes == 1);
  CHECK(sa.acked == ch.db_version());  // its own changes: the ack moved its cursor
  const int64_t before_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count();
  CHECK(sa.joined_ms >= before_ms);
  CHECK(sa.last_seen_ms >= sa.joined_ms);
  CHECK(sb.session == 9);
  CHECK(sb.site == b->site_id());
  CHECK(sb.pushes == 0);
  CHECK(sb.sent == ch.db_version());  // forwarded, not yet acknowledged: it lags
  CHECK(sb.acked == 0);

  sync::ClientAck ack;
  ack.set_seq(1);
  ack.set_server_db_version(to_b[0].forward().batch().to_db_version());
  REQUIRE(ch.client_ack(9, ack).ok());
  CHECK(ch.sessions()[1].acked == ch.db_version());
  ch.leave(7);
  REQUIRE(ch.sessions().size() == 1);
  CHECK(ch.sessions()[0].session == 9);
}

// Sessions that reach the same cursor at different moments share one read of the change log
// (ChannelCore's recent reads): the later one is forwarded the same changes without a read,
// and every store converges.
TEST_CASE("a range read for one session serves another that reaches the same cursor later", "[channel]") {
  TempDir dir;
  ChannelOptions options;
  options.forward_window = 1;  // a session with a forward unacknowledged is skipped by a pump
  auto channel = open_channel(dir, "r", options);
  auto& ch = *channel;
  auto w = client_store(1), r1 = client_store(2), r2 = client_store(3);
  REQUIRE(ch.join(1, "r", hello(*w)).ok());
  REQUIRE(ch.join(2, "r", hello(*r1)).ok());
  REQUIRE(ch.join(3, "r", hello(*r2)).ok());
  // Merges the session's forward in `out` into `s`; returns its ack.
  auto take = [](const Outbox& out, uint64_t session, Store& s) {
    auto got = for_session(out, session);
    REQUIRE(got.size() == 1);
    REQUIRE(got[0].has_forward());
    REQUIRE(s.merge(got[0].forward().batch()).ok());
    sync::ClientAck ack;
    ack.set_seq(got[0].forward().seq());
    ack.set_server_db_version(got[0].forward().batch().to_db_version());
    return std::make_pair(ack, got[0].forward().batch().changes_size());
  };

  write(*w, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  REQUIRE(ch.push(1, push_since(*w, 1, 0)).ok());
  Outbox first = ch.flush();
  auto r1_ack = take(first, 2, *r1).first;
  auto r2_ack = take(first, 3, *r2).first;  // r2 holds it unacknowledged for now
  REQUIRE(ch.client_ack(2, r1_ack).ok());

  // A second write: r1 is forwarded it from a read; r2, its window full, is skipped.
  const int64_t before = w->db_version();
  write(*w, "INSERT INTO todo(id, title) VALUES (2, 'eggs'), (3, 'tea')");
  REQUIRE(ch.push(1, push_since(*w, 2, before)).ok());
  Outbox second = ch.flush();
  CHECK(for_session(second, 3).empty());
  const auto r1_got = take(second, 2, *r1).second;
  const int64_t reads = ch.stats().change_reads;
  CHECK(ch.stats().recent_reads == 0);

  // r2 acknowledges and reaches the same cursor: the same changes, without a read.
  auto released = ch.client_ack(3, r2_ack);
  REQUIRE(released.ok());
  CHECK(take(*released, 3, *r2).second == r1_got);
  CHECK(ch.stats().change_reads == reads);
  CHECK(ch.stats().recent_reads == 1);
  CHECK(rows(*r1) == rows(*w));
  CHECK(rows(*r2) == rows(*w));
}

// The recent reads cost memory in every channel: none are kept while one session alone is
// joined, and they go when the others leave.
TEST_CASE("a channel with one session keeps no recent reads", "[channel]") {
  TempDir dir;
  auto channel = open_channel(dir, "one");
  auto& ch = *channel;
  auto w = client_store(1), r = client_store(2);
  REQUIRE(ch.join(1, "one", hello(*w)).ok());
  write(*w, "INSERT INTO todo(id, title) VALUES (1, 'milk')");
  REQUIRE(ch.push(1, push_since(*w, 1, 0)).ok());
  (void)ch.flush();
  CHECK(ch.recent_read_count() == 0);
  REQUIRE(ch.join(2, "one", hello(*r)).ok());  // forwarded from 0: not kept either
  write(*w, "INSERT INTO todo(id, title) VALUES (2, 'eggs')");
  REQUIRE(ch.push(1, push_since(*w, 2, 1)).ok());
  (void)ch.flush();
  CHECK(ch.recent_read_count() == 1);  // the read from 1, for r
  ch.leave(2);
  CHECK(ch.recent_read_count() == 0);
}
