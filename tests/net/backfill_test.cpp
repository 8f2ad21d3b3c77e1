// Backfill for a late-upgraded device, at the channel's level (no actors, no sockets): a
// device that declares a table or a column after rows were written to it gets their current
// cells before the ordinary stream, even when its connection or the server goes away in the
// middle (runtime/sync/backfill.hpp, docs/schema.md "Backfill").
#include <catch2/catch.hpp>

#include <cstdlib>
#include <deque>
#include <random>
#include <optional>

#include "tests/net/net_test_util.hpp"
#include "runtime/sync/backfill.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/schema_sync.hpp"

using namespace tandem;
using tandem::test::TempDir;
using namespace tandem::sync_channel;

namespace {

const char* kTodoV1 = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);";
const char* kTodoV2 = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0, note TEXT DEFAULT 'none');";
const char* kTodoV3 =
    "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0, note TEXT DEFAULT 'none', prio INTEGER DEFAULT 0);";
const char* kTag = "CREATE TABLE tag(id INTEGER PRIMARY KEY NOT NULL, todo INTEGER, name TEXT);";

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xBF;
  s[15] = n;
  return s;
}

// A device as the channel sees it: its store, what it declares, its cursor, what it pushed.
struct Device {
  std::unique_ptr<Store> store;
  std::vector<std::string> schema;
  std::string server_site;
  int64_t cursor = 0;
  int64_t pushed = 0;
  uint64_t push_seq = 0;
  bool backfilling = false;  // the last welcome announced a backfill not merged yet
  int backfill_forwards = 0; // forwards with an empty range merged on this connection
  int level = 1;             // schema version: 1 (kTodoV1), 2 (kTodoV2 + kTag), 3 (kTodoV3 + kTag)
};

Device device(uint8_t n) {
  Device d;
  d.store = test::client_store(site(n), kTodoV1, "todo");
  d.schema = {kTodoV1};
  return d;
}

// The next schema version, migrated in place.
void upgrade(Device& d) {
  REQUIRE(d.level < 3);
  const char* todo = ++d.level == 2 ? kTodoV2 : kTodoV3;
  auto migrated = d.store->execute_schema(sync_schema::if_not_exists(todo));
  INFO(migrated.to_string());
  REQUIRE(migrated.ok());
  if (d.level == 2) {
    REQUIRE(d.store->execute_schema(kTag).ok());
    REQUIRE(d.store->register_table("tag").ok());
  }
  d.schema = {todo, kTag};
}

void write(Device& d, const std::string& sql) {
  auto r = d.store->write({SqlStatement{sql, {}}});
  INFO(r.status().to_string());
  REQUIRE(r.ok());
}

std::string dump(Store& s, const std::string& sql) {
  auto r = s.query(sql);
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  std::string out;
  for (const auto& row : r->rows) {
    for (const auto& v : row) out += v.to_sql_literal() + " ";
    out += "\n";
  }
  return out;
}
const char* kTodos = "SELECT id, title, done, note FROM todo ORDER BY id";
const char* kTags = "SELECT id, todo, name FROM tag ORDER BY id";

sync::Hello hello(const Device& d) {
  sync::Hello h;
  h.set_protocol_version(1);
  h.set_site_id(site_bytes(d.store->site_id()));
  h.set_server_site_id(d.server_site);
  h.set_cursor(d.server_site.empty() ? 0 : d.cursor);
  h.set_acked_db_version(d.server_site.empty() ? 0 : d.pushed);
  for (const auto& s : d.schema) h.add_schema(s);
  return h;
}

// Plays the client's part for `session`: takes the welcome, merges every forward in order and
// acknowledges it (which may release more forwards, handled in turn). Stops after
// `max_forwards` merged forwards when given (the connection is then lost: the rest is never
// merged nor acknowledged).
void play(ChannelCore& ch, uint64_t session, Device& d, const Outbox& first, std::optional<int> max_forwards = std::nullopt) {
  std::deque<sync::Envelope> queue;
  for (const auto& o : first)
    if (o.session == session) queue.push_back(o.envelope);
  int merged = 0;
  while (!queue.empty()) {
    sync::Envelope e = std::move(queue.front());
    queue.pop_front();
    if (e.has_welcome()) {
      d.server_site = e.welcome().server_site_id();
      d.cursor = e.welcome().forward_from();
      d.backfilling = e.welcome().backfill();
      d.backfill_forwards = 0;
      d.pushed = e.welcome().client_acked_db_version();
      d.push_seq = 0;
      continue;
    }
    REQUIRE_FALSE(e.has_error());
    if (!e.has_forward()) continue;
    if (max_forwards && merged == *max_forwards) return;
    const auto& batch = e.forward().batch();
    if (d.backfilling) {
      // Backfill forwards do not move the cursor.
      CHECK(batch.from_db_version() == d.cursor);
      CHECK(batch.to_db_version() == d.cursor);
      ++d.backfill_forwards;
    } else {
      CHECK(batch.from_db_version() == d.cursor);
    }
    auto result = d.store->merge(batch);
    INFO(result.status().to_string());
    REQUIRE(result.ok());
    ++merged;
    d.cursor = std::max(d.cursor, batch.to_db_version());
    if (e.forward().backfill_done()) d.backfilling = false;
    sync::ClientAck ack;
    ack.set_seq(e.forward().seq());
    ack.set_server_db_version(batch.to_db_version());
    auto more = ch.client_ack(session, ack);
    REQUIRE(more.ok());
    for (const auto& o : *more)
      if (o.session == session) queue.push_back(o.envelope);
  }
}

Outbox join(ChannelCore& ch, uint64_t session, Device& d) {
  auto joined = ch.join(session, "u", hello(d));
  INFO(joined.status().to_string());
  REQUIRE(joined.ok());
  return std::move(joined).value();
}

// Pushes everything `d` wrote since its last push and commits it; returns the flush's outbox.
Outbox push(ChannelCore& ch, uint64_t session, Device& d) {
  sync::Push p;
  p.set_seq(++d.push_seq);
  *p.mutable_batch() = test::own_changes_since(*d.store, d.pushed);
  REQUIRE(ch.push(session, std::move(p)).ok());
  d.pushed = d.store->db_version();
  return ch.flush();
}

}  // namespace

TEST_CASE("a late-upgraded device is backfilled its new column and table, then is covered", "[channel][schema][backfill]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/u.db");
  REQUIRE(ch.ok());
  Device a = device(1), b = device(2);
  upgrade(a);
  play(**ch, 1, a, join(**ch, 1, a));
  play(**ch, 2, b, join(**ch, 2, b));
  CHECK_FALSE(b.backfilling);  // from version 0 the stream carries everything
  for (int i = 1; i <= 20; ++i) {
    write(a, "INSERT INTO todo(id, title, note) VALUES (" + std::to_string(i) + ", 't" + std::to_string(i) + "', 'n" +
                 std::to_string(i) + "')");
    write(a, "INSERT INTO tag(id, todo, name) VALUES (" + std::to_string(i) + ", " + std::to_string(i) + ", 'g')");
  }
  write(a, "UPDATE todo SET note = NULL WHERE id = 3");
  write(a, "DELETE FROM tag WHERE id = 4");
  play(**ch, 2, b, push(**ch, 1, a));
  CHECK(dump(*b.store, "SELECT count(*) FROM todo") == "20 \n");
  (*ch)->leave(2);

  // Much later, b upgrades: its cursor is past every row, yet it must get their notes and tags.
  upgrade(b);
  CHECK(dump(*b.store, kTodos) != dump(*a.store, kTodos));
  const int64_t cursor = b.cursor;
  play(**ch, 3, b, join(**ch, 3, b));
  CHECK(b.backfill_forwards >= 1);
  CHECK_FALSE(b.backfilling);
  CHECK(b.cursor == cursor);
  CHECK(dump(*b.store, kTodos) == dump(*a.store, kTodos));
  CHECK(dump(*b.store, kTags) == dump(*a.store, kTags));
  CHECK(b.store->verify().ok());

  // It is covered now: the next connection has no backfill, and new writes flow as usual.
  (*ch)->leave(3);
  write(a, "UPDATE todo SET note = 'later' WHERE id = 1");
  (void)push(**ch, 1, a);
  play(**ch, 4, b, join(**ch, 4, b));
  CHECK(b.backfill_forwards == 0);
  CHECK(dump(*b.store, kTodos) == dump(*a.store, kTodos));
}

TEST_CASE("a backfill cut by a lost connection or a server restart starts again and misses nothing", "[channel][schema][backfill]") {
  TempDir dir;
  const std::string path = dir.path + "/users/u.db";
  ChannelOptions options;
  options.forward_batch_changes = 7;  // many small forwards
  options.forward_window = 2;
  Device a = device(1), b = device(2);
  upgrade(a);
  {
    auto ch = ChannelCore::open(path, options);
    REQUIRE(ch.ok());
    play(**ch, 1, a, join(**ch, 1, a));
    play(**ch, 2, b, join(**ch, 2, b));
    for (int i = 1; i <= 30; ++i)
      write(a, "INSERT INTO todo(id, title, note) VALUES (" + std::to_string(i) + ", 't', 'n" + std::to_string(i) + "')");
    for (int i = 1; i <= 10; ++i) write(a, "INSERT INTO tag(id, todo, name) VALUES (" + std::to_string(i) + ", 1, 'g')");
    play(**ch, 2, b, push(**ch, 1, a));
    (*ch)->leave(2);
    upgrade(b);
    // The connection is lost after two backfill forwards.
    play(**ch, 3, b, join(**ch, 3, b), 2);
    CHECK(b.backfilling);
    (*ch)->leave(3);
    // The next connection starts the backfill again; a is still writing meanwhile.
    write(a, "UPDATE todo SET note = 'moved' WHERE id = 30");
    write(a, "INSERT INTO tag(id, todo, name) VALUES (11, 2, 'new')");
    (void)push(**ch, 1, a);
    play(**ch, 4, b, join(**ch, 4, b), 3);
    CHECK(b.backfilling);
  }  // the server restarts in the middle of the backfill
  auto ch = ChannelCore::open(path, options);
  REQUIRE(ch.ok());
  play(**ch, 5, b, join(**ch, 5, b));
  CHECK_FALSE(b.backfilling);
  CHECK(b.backfill_forwards > 2);
  CHECK(dump(*b.store, kTodos) == dump(*a.store, kTodos));
  CHECK(dump(*b.store, kTags) == dump(*a.store, kTags));
  (*ch)->leave(5);
  play(**ch, 6, b, join(**ch, 6, b));
  CHECK(b.backfill_forwards == 0);  // recorded as covered once the whole backfill was acked
}

TEST_CASE("a device that stops declaring a table is backfilled when it declares it again", "[channel][schema][backfill]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/u.db");
  REQUIRE(ch.ok());
  Device a = device(1), b = device(2);
  upgrade(a);
  upgrade(b);
  play(**ch, 1, a, join(**ch, 1, a));
  play(**ch, 2, b, join(**ch, 2, b));
  (*ch)->leave(2);
  b.schema = {kTodoV2};  // this connection syncs todo only: tag's changes pass it by
  play(**ch, 3, b, join(**ch, 3, b));
  write(a, "INSERT INTO tag(id, todo, name) VALUES (1, 1, 'skipped')");
  write(a, "INSERT INTO todo(id, title) VALUES (1, 'x')");
  play(**ch, 3, b, push(**ch, 1, a));
  CHECK(dump(*b.store, kTags).empty());
  (*ch)->leave(3);
  b.schema = {kTodoV2, kTag};
  play(**ch, 4, b, join(**ch, 4, b));
  CHECK(b.backfill_forwards == 1);
  CHECK(dump(*b.store, kTags) == dump(*a.store, kTags));
}

TEST_CASE("backfill plans: what is new to a device, and what it stays covered for", "[channel][backfill]") {
  using sync_backfill::DeclaredColumns;
  const DeclaredColumns v1{{"todo", {"id", "title"}}};
  const DeclaredColumns v2{{"todo", {"id", "title", "note"}}, {"tag", {"id", "name"}}};
  // From version 0: nothing to backfill, everything declared is covered.
  auto fresh = sync_backfill::plan(v2, std::nullopt, 0);
  CHECK(fresh.backfill.empty());
  CHECK(fresh.record_now == v2);
  CHECK_FALSE(sync_backfill::plan(v2, v2, 0).record_now);
  // Covered for all it declares: nothing at all.
  auto same = sync_backfill::plan(v1, v1, 12);
  CHECK(same.backfill.empty());
  CHECK_FALSE(same.record_now);
  // A late upgrade: the new column alone, the new table whole; the record waits for the ack.
  auto late = sync_backfill::plan(v2, v1, 12);
  CHECK(late.backfill == DeclaredColumns{{"todo", {"note"}}, {"tag", {}}});
  CHECK_FALSE(late.record_now);
  // Declaring less: what is not declared stops being covered at once.
  auto less = sync_backfill::plan(v1, v2, 12);
  CHECK(less.backfill.empty());
  CHECK(less.record_now == v1);
  // No record and a cursor (synced before records existed): everything, whole tables.
  CHECK(sync_backfill::plan(v1, std::nullopt, 12).backfill == DeclaredColumns{{"todo", {}}});
  // No declaration (every table is forwarded): nothing.
  CHECK(sync_backfill::plan({}, v1, 12).backfill.empty());
  // The record's text round-trips; damaged text is not a record.
  CHECK(sync_backfill::decode_columns(sync_backfill::encode_columns(v2)) == v2);
  CHECK(sync_backfill::decode_columns("") == DeclaredColumns{});
  CHECK_FALSE(sync_backfill::decode_columns("todo\tid"));
  CHECK_FALSE(sync_backfill::decode_columns("todo\t\tid\n"));
}

namespace {

// A random write of what `d`'s schema knows: a todo row's column, a delete, a re-insert
// (a new life of the row), a tag.
void random_write(Device& d, std::mt19937_64& rng) {
  const std::string id = std::to_string(1 + rng() % 8);
  const std::string v = std::to_string(rng() % 5);
  std::vector<std::string> columns{"title", "done"};
  if (d.level >= 2) columns.push_back("note");
  if (d.level >= 3) columns.push_back("prio");
  const std::string column = columns[rng() % columns.size()];
  switch (rng() % 7) {
    case 0: write(d, "DELETE FROM todo WHERE id = " + id); break;
    case 1: write(d, "INSERT OR REPLACE INTO todo(id, " + column + ") VALUES (" + id + ", " + v + ")"); break;
    case 2:
      if (d.level >= 2) {
        write(d, "INSERT INTO tag(id, todo, name) VALUES (" + std::to_string(rng() % 4) + ", " + id + ", " + v +
                     ") ON CONFLICT(id) DO UPDATE SET name = excluded.name");
        break;
      }
      [[fallthrough]];
    default:
      write(d, "INSERT INTO todo(id, " + column + ") VALUES (" + id + ", " + v + ") ON CONFLICT(id) DO UPDATE SET " + column +
                   " = excluded." + column);
  }
}

// One connection of `d`: joins, merges what it is sent (all of it, or only the first
// `max_forwards` forwards when the connection is lost early), pushes its own changes.
void connection(ChannelCore& ch, uint64_t session, Device& d, std::optional<int> max_forwards) {
  play(ch, session, d, join(ch, session, d), max_forwards);
  if (!max_forwards) {
    auto own = test::own_changes_since(*d.store, d.pushed);
    if (own.changes_size() > 0) {
      // A push's range ends at its last change (merges from the server took the device's
      // db_version further).
      own.set_to_db_version(own.changes(own.changes_size() - 1).db_version());
      sync::Push p;
      p.set_seq(++d.push_seq);
      *p.mutable_batch() = std::move(own);
      Status pushed = ch.push(session, std::move(p));
      INFO(pushed.to_string());
      REQUIRE(pushed.ok());
      const Outbox out = ch.flush();
      for (const auto& o : out)
        if (o.session == session && o.envelope.has_ack()) d.pushed = o.envelope.ack().client_acked_db_version();
      play(ch, session, d, out);
    }
  }
  ch.leave(session);
}

std::string projected(Store& s, int level) {
  std::string todo = "SELECT id, title, done";
  if (level >= 2) todo += ", note";
  if (level >= 3) todo += ", prio";
  std::string out = dump(s, todo + " FROM todo ORDER BY id");
  if (level >= 2) out += "tags:\n" + dump(s, kTags);
  return out;
}

}  // namespace

TEST_CASE("random upgrades, writes, syncs, lost connections and server restarts over 2-4 devices converge", "[channel][schema][backfill][property]") {
  const char* env = std::getenv("TANDEM_PROPERTY_RUNS");
  const int runs = env && std::atoi(env) > 0 ? std::atoi(env) : 30;
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(5000 + static_cast<uint64_t>(run));
    TempDir dir;
    const std::string path = dir.path + "/users/u.db";
    ChannelOptions options;
    options.forward_batch_changes = 1 + rng() % 6;  // small forwards: connections lost mid-backfill
    options.forward_window = 1 + static_cast<uint32_t>(rng() % 3);
    auto opened = ChannelCore::open(path, options);
    REQUIRE(opened.ok());
    std::unique_ptr<ChannelCore> ch = std::move(opened).value();
    const size_t n = 2 + rng() % 3;
    std::vector<Device> devices;
    for (size_t i = 0; i < n; ++i) devices.push_back(device(static_cast<uint8_t>(i + 1)));
    INFO("run " << run << ", " << n << " devices");
    uint64_t session = 0;
    int backfills = 0;
    for (int step = 0; step < 60; ++step) {
      Device& d = devices[rng() % n];
      switch (rng() % 10) {
        case 0:
          if (d.level < 3) upgrade(d);
          break;
        case 1:
        case 2:
        case 3: {
          const bool lost = rng() % 3 == 0;
          connection(*ch, ++session, d, lost ? std::optional<int>(static_cast<int>(rng() % 3)) : std::nullopt);
          backfills += d.backfill_forwards > 0;
          break;
        }
        case 4:
          if (rng() % 3 == 0) {
            ch.reset();  // the server restarts
            auto again = ChannelCore::open(path, options);
            REQUIRE(again.ok());
            ch = std::move(again).value();
          }
          break;
        default: random_write(d, rng);
      }
    }
    // Everyone syncs until quiet; then every device holds the channel's rows for what it knows.
    for (int round = 0; round < 2; ++round)
      for (auto& d : devices) connection(*ch, ++session, d, std::nullopt);
    for (auto& d : devices) {
      INFO("device at level " << d.level << ", " << backfills << " connections with a backfill");
      CHECK_FALSE(d.backfilling);
      CHECK(projected(*d.store, d.level) == projected(ch->store(), d.level));
      CHECK(d.store->verify().ok());
    }
  }
}

TEST_CASE("a hello's new columns and new tables are adopted in one transaction: a refusal leaves none of them", "[channel][schema]") {
  TempDir dir;
  auto ch = ChannelCore::open(dir.path + "/users/u.db");
  REQUIRE(ch.ok());
  Device a = device(1);
  upgrade(a);  // the channel has todo (v2) and tag, with a row (SQLite refuses a non-constant
               // DEFAULT only for a table that has rows)
  play(**ch, 1, a, join(**ch, 1, a));
  write(a, "INSERT INTO tag(id, todo, name) VALUES (1, 1, 'x')");
  (void)push(**ch, 1, a);
  (*ch)->leave(1);
  // todo gains a column (fine alone), tag one with a DEFAULT SQLite refuses to add, and a new
  // table comes too: the schema is refused whole.
  sync::Hello h = hello(a);
  h.clear_schema();
  h.add_schema(kTodoV3);
  h.add_schema("CREATE TABLE tag(id INTEGER PRIMARY KEY NOT NULL, todo INTEGER, name TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP);");
  h.add_schema("CREATE TABLE extra(id INTEGER PRIMARY KEY NOT NULL, x TEXT);");
  auto refused = (*ch)->join(2, "u", h);
  REQUIRE_FALSE(refused.ok());
  INFO(refused.status().to_string());
  CHECK((*ch)->store().table("todo")->value_columns.size() == 3);  // no prio
  CHECK((*ch)->store().table("tag")->value_columns.size() == 2);
  CHECK((*ch)->store().table("extra") == nullptr);
  CHECK(dump((*ch)->store(), "SELECT count(*) FROM sqlite_master WHERE name = 'extra'") == "0 \n");
  // Without the refused column, all of it is adopted at once.
  h.set_schema(1, kTag);
  REQUIRE((*ch)->join(3, "u", h).ok());
  CHECK((*ch)->store().table("todo")->value_columns.size() == 4);
  CHECK((*ch)->store().table("extra") != nullptr);
}
