// Schema evolution of replicated tables (docs/schema.md): additive changes applied in place
// without rewriting a row or a clock, merges of the new columns between migrated replicas, and
// one test per refused kind of change (message, nothing changed, the old schema still opens).
#include <filesystem>

#include "runtime/store/store_internal.hpp"
#include "tests/common/temp_dir.hpp"
#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {

const char* kV1 = "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT);";
// v2: a nullable column, a NOT NULL column with a constant DEFAULT, an index on the new
// column, a new table.
const char* kV2 =
    "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, note TEXT, done INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS todo_done ON todo(done);"
    "CREATE TABLE IF NOT EXISTS tag(id INTEGER PRIMARY KEY, todo INTEGER, label TEXT);";

std::unique_ptr<Store> open_file(const std::string& path, uint8_t site, const std::string& schema) {
  StoreOptions o;
  o.site_id = site_number(site);
  auto s = Store::open(path, o);
  INFO(s.status().to_string());
  REQUIRE(s.ok());
  auto st = (*s)->execute_schema(schema);
  INFO(st.to_string());
  REQUIRE(st.ok());
  return std::move(s).value();
}

// Registers every application table the store does not replicate yet (what the db_worker does
// with the tables a schema creates).
void register_all(Store& s) {
  auto tables = s.application_tables();
  REQUIRE(tables.ok());
  for (const auto& t : *tables) REQUIRE(s.register_table(t).ok());
}

std::vector<Row> raw_rows(Store& s, const std::string& sql) {
  auto st = store_connection(s).prepare(sql);
  REQUIRE(st.ok());
  std::vector<Row> rows;
  for (;;) {
    auto row = (*st)->step();
    REQUIRE(row.ok());
    if (!*row) break;
    rows.push_back((*st)->row());
  }
  return rows;
}

std::vector<Row> clock_records(Store& s, const std::string& table) {
  const TableInfo* t = s.table(table);
  REQUIRE(t);
  return raw_rows(s, "SELECT pk, cl, clock FROM " + t->clock_table() + " ORDER BY pk");
}

std::vector<std::string> column_names(Store& s, const std::string& table) {
  const TableInfo* t = s.table(table);
  REQUIRE(t);
  std::vector<std::string> names;
  for (const auto& c : t->columns) names.push_back(c.name);
  return names;
}

// The changes of `batch` as "table key cid=value@col_version" lines.
std::string describe(const change::ChangeBatch& batch) {
  std::string out;
  for (const auto& c : batch.changes())
    out += c.table() + " " + from_proto(c.pk(0)).to_sql_literal() + " " + c.cid() + "=" + from_proto(c.val()).to_sql_literal() + "@" +
           std::to_string(c.col_version()) + "\n";
  return out;
}

void require_verified(Store& s) {
  auto v = s.verify();
  INFO(v.to_string());
  REQUIRE(v.ok());
}

}  // namespace

TEST_CASE("a newer CREATE TABLE adds nullable and DEFAULT columns in place, keeping rows and clocks", "[store][schema][evolution]") {
  TempDir dir;
  const std::string path = dir / "device.db";
  auto s = open_file(path, 1, kV1);
  register_all(*s);
  exec(*s, "INSERT INTO todo(id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c')");
  exec(*s, "UPDATE todo SET title = 'b2' WHERE id = 2");
  exec(*s, "DELETE FROM todo WHERE id = 3");
  const auto records = clock_records(*s, "todo");
  const int64_t version = s->db_version();
  auto before = s->changes_since(0);
  REQUIRE(before.ok());

  REQUIRE(s->execute_schema(kV2).ok());
  register_all(*s);
  CHECK(column_names(*s, "todo") == std::vector<std::string>{"id", "title", "note", "done"});
  CHECK(s->table("todo")->value_columns.size() == 3);
  CHECK(s->table("todo")->base_cells == 1);
  CHECK(s->table("tag") != nullptr);
  // No row, no clock and no version was written by the migration.
  CHECK(same_rows(clock_records(*s, "todo"), records));
  CHECK(s->db_version() == version);
  auto after = s->changes_since(0);
  REQUIRE(after.ok());
  CHECK(describe(*after) == describe(*before));
  CHECK(render(dump(*s, "todo")) == "(1, 'a', NULL, 0)\n(2, 'b2', NULL, 0)\n");
  require_verified(*s);

  // Local writes to the new columns are changes like any other; rows inserted now carry
  // every column at col_version 1.
  // The row images (for live queries) show the DEFAULT of a column the stored row predates,
  // as a SELECT does, and only the written column changed.
  auto written = exec(*s, "UPDATE todo SET note = 'soon' WHERE id = 1");
  REQUIRE(written.deltas.deltas.size() == 1);
  REQUIRE(written.deltas.deltas[0].old_row);
  CHECK(render({*written.deltas.deltas[0].old_row}) == "(1, 'a', NULL, 0)\n");
  CHECK(render({*written.deltas.deltas[0].new_row}) == "(1, 'a', 'soon', 0)\n");
  auto removed = exec(*s, "DELETE FROM todo WHERE id = 2");
  REQUIRE(removed.deltas.deltas.size() == 1);
  CHECK(render({*removed.deltas.deltas[0].old_row}) == "(2, 'b2', NULL, 0)\n");
  exec(*s, "INSERT INTO todo(id, title) VALUES (2, 'b2')");  // back, as a new life
  exec(*s, "INSERT INTO todo(id, title, done) VALUES (4, 'd', 1)");
  exec(*s, "UPDATE todo SET done = 1, title = 'a2' WHERE id = 1");
  auto newer = s->changes_since(version);
  REQUIRE(newer.ok());
  CHECK(describe(*newer) ==
        "todo 1 note='soon'@1\n"
        "todo 2 -1=NULL@3\ntodo 2 title='b2'@1\ntodo 2 note=NULL@1\ntodo 2 done=0@1\n"
        "todo 4 title='d'@1\ntodo 4 note=NULL@1\ntodo 4 done=1@1\n"
        "todo 1 title='a2'@2\ntodo 1 done=1@1\n");
  CHECK(render(dump(*s, "todo")) == "(1, 'a2', 'soon', 1)\n(2, 'b2', NULL, 0)\n(4, 'd', NULL, 1)\n");
  auto indexed = s->query("SELECT id FROM todo WHERE done = 1 ORDER BY id");
  REQUIRE(indexed.ok());
  CHECK(render(indexed->rows) == "(1)\n(4)\n");
  require_verified(*s);

  // The same writes on plain SQLite with the same schema changes give the same rows.
  auto oracle = Database::open(":memory:");
  REQUIRE(oracle.ok());
  REQUIRE((*oracle)->exec(std::string(kV1) +
                          "INSERT INTO todo(id, title) VALUES (1, 'a'), (2, 'b'), (3, 'c');"
                          "UPDATE todo SET title = 'b2' WHERE id = 2; DELETE FROM todo WHERE id = 3;"
                          "ALTER TABLE todo ADD COLUMN note TEXT; ALTER TABLE todo ADD COLUMN done INTEGER NOT NULL DEFAULT 0;"
                          "UPDATE todo SET note = 'soon' WHERE id = 1; DELETE FROM todo WHERE id = 2; INSERT INTO todo(id, title) VALUES (2, 'b2'); "
                          "INSERT INTO todo(id, title, done) VALUES (4, 'd', 1);"
                          "UPDATE todo SET done = 1, title = 'a2' WHERE id = 1;")
              .ok());
  auto plain = (*oracle)->prepare("SELECT * FROM todo ORDER BY id");
  REQUIRE(plain.ok());
  std::vector<Row> expected;
  for (;;) {
    auto row = (*plain)->step();
    REQUIRE(row.ok());
    if (!*row) break;
    expected.push_back((*plain)->row());
  }
  CHECK(same_rows(dump(*s, "todo"), expected));

  // Reopened with v2 (and again with v2), it is the same store.
  s.reset();
  auto again = open_file(path, 1, kV2);
  register_all(*again);
  CHECK(column_names(*again, "todo") == std::vector<std::string>{"id", "title", "note", "done"});
  CHECK(again->table("todo")->base_cells == 1);
  CHECK(render(dump(*again, "todo")) == "(1, 'a2', 'soon', 1)\n(2, 'b2', NULL, 0)\n(4, 'd', NULL, 1)\n");
  require_verified(*again);
}

TEST_CASE("ALTER TABLE ADD COLUMN in a schema migrates a replicated table too", "[store][schema][evolution]") {
  auto s = memory_store(1, kV1, {"todo"});
  exec(*s, "INSERT INTO todo(id, title) VALUES (1, 'a')");
  auto st = s->execute_schema("ALTER TABLE todo ADD COLUMN prio INTEGER DEFAULT 3");
  INFO(st.to_string());
  REQUIRE(st.ok());
  CHECK(column_names(*s, "todo") == std::vector<std::string>{"id", "title", "prio"});
  exec(*s, "UPDATE todo SET prio = 5 WHERE id = 1");
  exec(*s, "INSERT INTO todo(title) VALUES ('allocated key')");  // the key trigger knows prio
  auto rows = s->query("SELECT title, prio FROM todo ORDER BY id");
  REQUIRE(rows.ok());
  CHECK(render(rows->rows) == "('a', 5)\n('allocated key', 3)\n");
  require_verified(*s);
  // The declaration that matches the altered table is no change.
  CHECK(s->execute_schema("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, prio INTEGER DEFAULT 3)").ok());
}

TEST_CASE("writes to a new column merge between migrated replicas and converge", "[store][schema][evolution]") {
  auto a = memory_store(1, kV1, {"todo"});
  auto b = memory_store(2, kV1, {"todo"});
  exec(*a, "INSERT INTO todo(id, title) VALUES (1, 'a'), (2, 'b')");
  exec(*b, "INSERT INTO todo(id, title) VALUES (3, 'c')");
  sync(*a, *b);
  sync(*b, *a);
  REQUIRE(a->execute_schema(kV2).ok());
  register_all(*a);
  REQUIRE(b->execute_schema(kV2).ok());
  register_all(*b);

  // Old rows: one replica writes the new column, the other writes another column of the row.
  exec(*a, "UPDATE todo SET note = 'from a' WHERE id = 1");
  exec(*b, "UPDATE todo SET title = 'b from b' WHERE id = 2");
  // Concurrent writes of the new column of one row: the greater value wins at equal versions.
  exec(*a, "UPDATE todo SET done = 5 WHERE id = 3");
  exec(*b, "UPDATE todo SET done = 7 WHERE id = 3");
  // New rows and the new table.
  exec(*b, "INSERT INTO todo(id, title, note) VALUES (10, 'new', 'n')");
  exec(*a, "INSERT INTO tag(id, todo, label) VALUES (1, 1, 'home')");
  sync(*a, *b);
  sync(*b, *a);
  const std::string expected =
      "(1, 'a', 'from a', 0)\n(2, 'b from b', NULL, 0)\n(3, 'c', NULL, 7)\n(10, 'new', 'n', 0)\n";
  CHECK(render(dump(*a, "todo")) == expected);
  CHECK(render(dump(*b, "todo")) == expected);
  CHECK(same_rows(dump(*a, "tag"), dump(*b, "tag")));
  CHECK(render(dump(*b, "tag")) == "(1, 1, 'home')\n");
  require_verified(*a);
  require_verified(*b);

  // A replica created with v2 from the start receives everything and holds the same rows.
  auto c = memory_store(3, kV2, {"todo", "tag"});
  sync(*a, *c);
  CHECK(render(dump(*c, "todo")) == expected);
  CHECK(same_rows(dump(*c, "tag"), dump(*a, "tag")));
  // Its writes flow back to the migrated ones.
  exec(*c, "UPDATE todo SET note = 'from c' WHERE id = 2");
  sync(*c, *a);
  sync(*a, *b);
  CHECK(render(dump(*b, "todo")) == render(dump(*c, "todo")));
  require_verified(*c);
}

TEST_CASE("a change for a column the replica lacks is refused whole and merges once it migrates", "[store][schema][evolution]") {
  auto a = memory_store(1, kV1, {"todo"});
  auto b = memory_store(2, kV1, {"todo"});
  exec(*a, "INSERT INTO todo(id, title) VALUES (1, 'a')");
  sync(*a, *b);
  REQUIRE(a->execute_schema(kV2).ok());
  exec(*a, "UPDATE todo SET note = 'later', title = 'a2' WHERE id = 1");

  auto cursor = b->peer(a->site_id());
  REQUIRE(cursor.ok());
  auto batch = a->changes_since(cursor->received, b->site_id());
  REQUIRE(batch.ok());
  const int64_t version = b->db_version();
  auto refused = b->merge(*batch);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().message().find("no value column 'note'") != std::string::npos);
  CHECK(b->db_version() == version);
  CHECK(render(dump(*b, "todo")) == "(1, 'a')\n");
  auto kept = b->peer(a->site_id());
  REQUIRE(kept.ok());
  CHECK(kept->received == cursor->received);  // asked for again, not skipped

  REQUIRE(b->execute_schema(kV2).ok());
  sync(*a, *b);
  CHECK(render(dump(*b, "todo")) == "(1, 'a2', 'later', 0)\n");
  require_verified(*b);
}

TEST_CASE("indexes come and go with the schema, non-unique ones only", "[store][schema][evolution]") {
  auto s = memory_store(1, kV1, {"todo"});
  REQUIRE(s->execute_schema("CREATE INDEX IF NOT EXISTS todo_title ON todo(title)").ok());
  auto listed = s->query("SELECT name FROM pragma_index_list('todo') ORDER BY name");
  REQUIRE(listed.ok());
  CHECK(render(listed->rows) == "('todo_title')\n");
  REQUIRE(s->execute_schema("DROP INDEX IF EXISTS todo_title").ok());
  listed = s->query("SELECT name FROM pragma_index_list('todo') ORDER BY name");
  REQUIRE(listed.ok());
  CHECK(listed->rows.empty());
  auto unique = s->execute_schema("CREATE UNIQUE INDEX IF NOT EXISTS todo_title ON todo(title)");
  REQUIRE_FALSE(unique.ok());
  CHECK(unique.message().find("todo") != std::string::npos);
  CHECK(unique.message().find("(title)") != std::string::npos);
  CHECK(unique.message().find("non-unique index") != std::string::npos);
}

// ---- refusals: one per kind ----

namespace {

// Opens a file store with v1 holding two rows, applies `newer` (which also creates a table,
// so that "nothing changed" covers other statements of the schema), and checks the refusal:
// its message holds every string of `says`, nothing changed, and the file still opens with
// v1 and takes writes.
void check_refused(const std::string& newer, const std::vector<std::string>& says) {
  TempDir dir;
  const std::string path = dir / "device.db";
  const std::string v1 = "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0);";
  {
    auto s = open_file(path, 1, v1);
    register_all(*s);
    exec(*s, "INSERT INTO todo(id, title) VALUES (1, 'a'), (2, 'b')");
    const auto rows = dump(*s, "todo");
    const auto records = clock_records(*s, "todo");
    const int64_t version = s->db_version();
    auto r = s->execute_schema("CREATE TABLE IF NOT EXISTS extra(id INTEGER PRIMARY KEY, v);" + newer);
    INFO(newer << " -> " << r.to_string());
    REQUIRE_FALSE(r.ok());
    for (const auto& text : says) CHECK(r.message().find(text) != std::string::npos);
    CHECK(column_names(*s, "todo") == std::vector<std::string>{"id", "title", "done"});
    CHECK(same_rows(dump(*s, "todo"), rows));
    CHECK(same_rows(clock_records(*s, "todo"), records));
    CHECK(s->db_version() == version);
    auto tables = s->application_tables();
    REQUIRE(tables.ok());
    CHECK(*tables == std::vector<std::string>{"todo"});
    auto columns = s->query("SELECT name FROM pragma_table_info('todo')");
    REQUIRE(columns.ok());
    CHECK(columns->rows.size() == 3);
    exec(*s, "UPDATE todo SET done = 1 WHERE id = 1");  // the store still works
    exec(*s, "INSERT INTO todo(title) VALUES ('allocated')");  // and so does its key trigger
    exec(*s, "DELETE FROM todo WHERE title = 'allocated'");
    require_verified(*s);
  }
  auto reopened = open_file(path, 1, v1);
  register_all(*reopened);
  CHECK(render(dump(*reopened, "todo")) == "(1, 'a', 1)\n(2, 'b', 0)\n");
  exec(*reopened, "INSERT INTO todo(id, title) VALUES (3, 'c')");
  require_verified(*reopened);
}

}  // namespace

TEST_CASE("refused: dropping a column", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT);",
                {"table todo", "dropping column done", "keep it in the schema"});
}

TEST_CASE("refused: renaming a column", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, name TEXT, done INTEGER DEFAULT 0);",
                {"table todo", "renaming column title to name", "add name as a new column"});
}

TEST_CASE("refused: changing a type", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title BLOB, done INTEGER DEFAULT 0);",
                {"table todo", "type of column title from TEXT to BLOB", "add a new column"});
}

TEST_CASE("refused: changing the key", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER, title TEXT NOT NULL, done INTEGER DEFAULT 0, PRIMARY KEY(id, title));",
                {"table todo", "primary key", "title", "create a new table"});
}

TEST_CASE("refused: adding a key column", "[store][schema][evolution][errors]") {
  check_refused(
      "CREATE TABLE IF NOT EXISTS todo(id INTEGER, title TEXT, done INTEGER DEFAULT 0, k TEXT NOT NULL DEFAULT '', "
      "PRIMARY KEY(id, k));",
      {"table todo", "primary key"});
}

TEST_CASE("refused: a UNIQUE column", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0, code TEXT UNIQUE);",
                {"table todo", "UNIQUE", "(code)", "non-unique index"});
}

TEST_CASE("refused: a UNIQUE index", "[store][schema][evolution][errors]") {
  check_refused("CREATE UNIQUE INDEX IF NOT EXISTS todo_title ON todo(title);", {"table todo", "UNIQUE", "(title)", "non-unique index"});
}

TEST_CASE("refused: a NOT NULL column without a DEFAULT", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0, due TEXT NOT NULL);",
                {"table todo", "new column due", "NOT NULL without a DEFAULT", "constant DEFAULT"});
}

TEST_CASE("refused: a non-constant DEFAULT", "[store][schema][evolution][errors]") {
  check_refused(
      "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0, created TEXT DEFAULT CURRENT_TIMESTAMP);",
      {"table todo", "new column created", "not a constant"});
}

TEST_CASE("refused: a new column among the existing ones", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, note TEXT, title TEXT, done INTEGER DEFAULT 0);",
                {"table todo", "new column note", "declare it after done"});
}

TEST_CASE("refused: changing a DEFAULT or NOT NULL", "[store][schema][evolution][errors]") {
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 1);",
                {"table todo", "DEFAULT of column done from 0 to 1"});
  check_refused("CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER DEFAULT 0);",
                {"table todo", "NOT NULL on column title"});
}

TEST_CASE("refused: a generated column", "[store][schema][evolution][errors]") {
  check_refused(
      "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY, title TEXT, done INTEGER DEFAULT 0, upper_title TEXT AS (upper(title)));",
      {"table todo", "new column upper_title", "generated"});
}

TEST_CASE("refused: ALTER TABLE that drops or renames a column or the table", "[store][schema][evolution][errors]") {
  check_refused("ALTER TABLE todo DROP COLUMN done;", {"table todo", "dropping column done"});
  check_refused("ALTER TABLE todo RENAME COLUMN title TO name;", {"table todo", "renaming column title to name"});
  check_refused("ALTER TABLE todo RENAME TO todos;", {"replicated table todo", "renamed or dropped"});
  check_refused("DROP TABLE todo;", {"table todo", "replicated", "dropping it is not supported"});
}

// ---- property: random interleavings of additive upgrades, writes and syncs converge ----

namespace {

// Schema levels: 1 is t(id, a); 2 adds t.b with a DEFAULT; 3 adds t.c and the table u.
const char* kLevels[] = {
    "",
    "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, a TEXT);",
    "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER NOT NULL DEFAULT 0);",
    "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER NOT NULL DEFAULT 0, c TEXT);"
    "CREATE TABLE IF NOT EXISTS u(id INTEGER PRIMARY KEY, x INTEGER);",
};

struct Replica {
  std::unique_ptr<Store> store;
  int level = 1;
};

void upgrade(Replica& r) {
  ++r.level;
  auto st = r.store->execute_schema(kLevels[r.level]);
  INFO(st.to_string());
  REQUIRE(st.ok());
  register_all(*r.store);
}

// Merges what `to` lacks of `from`. A replica on an older schema refuses a batch holding a
// column or table it lacks, whole, and asks for it again later.
void try_sync(Replica& from, Replica& to) {
  auto cursor = to.store->peer(from.store->site_id());
  REQUIRE(cursor.ok());
  auto batch = from.store->changes_since(cursor->received, to.store->site_id());
  REQUIRE(batch.ok());
  const int64_t version = to.store->db_version();
  auto merged = to.store->merge(*batch);
  if (merged.ok()) return;
  INFO(merged.status().to_string());
  CHECK(to.level < from.level);
  CHECK((merged.status().message().find("no value column") != std::string::npos ||
         merged.status().message().find("unknown table") != std::string::npos));
  CHECK(to.store->db_version() == version);
}

void random_write(Replica& r, std::mt19937_64& rng) {
  const int64_t id = 1 + static_cast<int64_t>(rng() % 8);
  const Value v = Value::Integer(static_cast<int64_t>(rng() % 5));
  std::vector<std::string> columns{"a"};
  if (r.level >= 2) columns.push_back("b");
  if (r.level >= 3) columns.push_back("c");
  const std::string column = columns[rng() % columns.size()];
  switch (rng() % 6) {
    case 0: exec(*r.store, "DELETE FROM t WHERE id = ?", {Value::Integer(id)}); break;
    case 1: exec(*r.store, "INSERT OR REPLACE INTO t(id, " + column + ") VALUES (?, ?)", {Value::Integer(id), v}); break;
    case 2:
      if (r.level >= 3) {
        exec(*r.store, "INSERT INTO u(id, x) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET x = excluded.x", {Value::Integer(id % 3), v});
        break;
      }
      [[fallthrough]];
    default:
      exec(*r.store, "INSERT INTO t(id, " + column + ") VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET " + column + " = ?2",
           {Value::Integer(id), v});
  }
}

}  // namespace

TEST_CASE("random interleavings of additive upgrades with writes and syncs converge", "[store][schema][evolution][property]") {
  const int runs = property_runs(40);
  for (int run = 0; run < runs; ++run) {
    std::mt19937_64 rng(1000 + static_cast<uint64_t>(run));
    const size_t n = 2 + rng() % 3;
    std::vector<Replica> replicas(n);
    for (size_t i = 0; i < n; ++i) replicas[i].store = memory_store(static_cast<uint8_t>(i + 1), kLevels[1], {"t"});
    INFO("run " << run << ", " << n << " replicas");
    for (int step = 0; step < 80; ++step) {
      Replica& r = replicas[rng() % n];
      switch (rng() % 8) {
        case 0:
          if (r.level < 3) upgrade(r);
          break;
        case 1:
        case 2: try_sync(r, replicas[rng() % n]); break;
        default: random_write(r, rng);
      }
    }
    for (auto& r : replicas)
      while (r.level < 3) upgrade(r);
    for (int round = 0; round < 2; ++round)
      for (auto& from : replicas)
        for (auto& to : replicas)
          if (&from != &to) try_sync(from, to);
    auto fresh = memory_store(99, kLevels[3], {"t", "u"});
    Replica oracle{std::move(fresh), 3};
    try_sync(replicas[0], oracle);
    for (auto& r : replicas) {
      INFO(render(dump(*r.store, "t")) << "vs\n" << render(dump(*replicas[0].store, "t")));
      CHECK(same_rows(dump(*r.store, "t"), dump(*replicas[0].store, "t")));
      CHECK(same_rows(dump(*r.store, "u"), dump(*replicas[0].store, "u")));
      require_verified(*r.store);
    }
    CHECK(same_rows(dump(*oracle.store, "t"), dump(*replicas[0].store, "t")));
    CHECK(same_rows(dump(*oracle.store, "u"), dump(*replicas[0].store, "u")));
  }
}
