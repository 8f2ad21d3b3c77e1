// Which tables Tandem replicates, which it refuses (with a message naming the feature), and
// what happens to the schema afterwards.
#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {
std::unique_ptr<Store> empty_store() { return memory_store(1, "SELECT 1", {}); }
}  // namespace

TEST_CASE("tables Tandem accepts", "[store][schema]") {
  const char* accepted[] = {
      "CREATE TABLE x(id INTEGER PRIMARY KEY, a)",
      "CREATE TABLE x(id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT, b REAL, c BLOB, d NUMERIC)",
      "CREATE TABLE x(a TEXT NOT NULL, b INTEGER NOT NULL, c, PRIMARY KEY (b, a))",
      "CREATE TABLE x(id TEXT PRIMARY KEY NOT NULL, n INTEGER NOT NULL DEFAULT 0, CHECK (n >= 0))",
      "CREATE TABLE x(id INTEGER PRIMARY KEY, a ANY, b TEXT) STRICT",
      "CREATE TABLE x(k1 NUMERIC NOT NULL, k2 TEXT NOT NULL, PRIMARY KEY (k1, k2))",
      "CREATE TABLE \"odd name\"(\"the key\" INTEGER PRIMARY KEY, \"a \"\"quoted\"\" col\")",
  };
  for (const char* sql : accepted) {
    auto s = empty_store();
    auto created = s->execute_schema(sql);
    INFO(sql << " -> " << created.to_string());
    REQUIRE(created.ok());
    std::string name = std::string(sql).find("odd name") != std::string::npos ? "odd name" : "x";
    auto r = s->register_table(name);
    INFO(sql << " -> " << r.to_string());
    CHECK(r.ok());
    CHECK(s->register_table(name).ok());  // idempotent
  }
}

TEST_CASE("tables Tandem refuses, with the reason", "[store][schema][errors]") {
  struct Case {
    const char* sql;
    const char* says;
  } cases[] = {
      {"CREATE TABLE x(a, b)", "no explicit PRIMARY KEY"},
      {"CREATE TABLE x(id TEXT PRIMARY KEY NOT NULL, a) WITHOUT ROWID", "WITHOUT ROWID"},
      {"CREATE TABLE x(id TEXT PRIMARY KEY, a)", "must be declared NOT NULL"},
      {"CREATE TABLE x(id INTEGER PRIMARY KEY, a UNIQUE)", "UNIQUE"},
      {"CREATE TABLE x(id INTEGER PRIMARY KEY, a); CREATE UNIQUE INDEX xa ON x(a)", "UNIQUE"},
      {"CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE x(id INTEGER PRIMARY KEY, p REFERENCES p(id))", "FOREIGN KEY"},
      {"CREATE TABLE x(id INTEGER PRIMARY KEY, a NOT NULL)", "NOT NULL without a DEFAULT"},
      {"CREATE TABLE x(id INTEGER PRIMARY KEY, a, b AS (a + 1))", "generated column"},
      {"CREATE TABLE x(id TEXT COLLATE NOCASE PRIMARY KEY NOT NULL, a)", "collation"},
      {"CREATE TABLE y(id INTEGER PRIMARY KEY); CREATE VIEW x AS SELECT * FROM y", "view"},
      {"CREATE TABLE x(id INTEGER PRIMARY KEY, \"-1\")", "sentinel"},
      {"CREATE TABLE x(k NOT NULL PRIMARY KEY, a)", "affinity"},
      {"CREATE TABLE x(k BLOB NOT NULL PRIMARY KEY, a)", "affinity"},
  };
  for (const auto& c : cases) {
    auto s = empty_store();
    REQUIRE(s->execute_schema(c.sql).ok());
    auto r = s->register_table("x");
    INFO(c.sql << " -> " << r.to_string());
    REQUIRE_FALSE(r.ok());
    CHECK(r.code() == StatusCode::unsupported);
    CHECK(r.message().find(c.says) != std::string::npos);
    CHECK(s->replicated_tables().empty());
  }
  auto s = empty_store();
  CHECK(s->register_table("missing").code() == StatusCode::not_found);
  CHECK(s->register_table("tandem_meta").code() == StatusCode::unsupported);
}

TEST_CASE("rows a table holds before registration become this replica's inserts", "[store][schema]") {
  auto s = empty_store();
  REQUIRE(s->execute_schema("CREATE TABLE x(id INTEGER PRIMARY KEY, a); INSERT INTO x VALUES (1, 'a'), (2, 'b');").ok());
  REQUIRE(s->register_table("x").ok());
  CHECK(s->db_version() == 1);
  auto b = s->changes_since(0);
  REQUIRE(b.ok());
  CHECK(b->changes_size() == 2);
  auto other = memory_store(2, "CREATE TABLE x(id INTEGER PRIMARY KEY, a)", {"x"});
  sync(*s, *other);
  CHECK(same_rows(dump(*s, "x"), dump(*other, "x")));
}

TEST_CASE("schema changes may not drop, rename or shrink replicated tables or touch Tandem's", "[store][schema][errors]") {
  auto s = memory_store(1, "CREATE TABLE x(id INTEGER PRIMARY KEY, a)", {"x"});
  struct Case {
    const char* sql;
    const char* says;
  } cases[] = {
      {"DROP TABLE x", "replicated"},
      {"ALTER TABLE x DROP COLUMN a", "dropping column a"},
      {"ALTER TABLE x RENAME TO y", "replicated"},
      {"CREATE UNIQUE INDEX xa ON x(a)", "UNIQUE"},
      {"DROP TABLE tandem_meta", "Tandem's own"},
      {"CREATE TABLE tandem_mine(a)", "Tandem's own"},
      {"CREATE INDEX i ON tandem_clock_1(cl)", "Tandem's own"},
  };
  for (const auto& c : cases) {
    auto r = s->execute_schema(c.sql);
    INFO(c.sql << " -> " << r.to_string());
    REQUIRE_FALSE(r.ok());
    CHECK(r.message().find(c.says) != std::string::npos);
  }
  CHECK(s->execute_schema("CREATE INDEX xa ON x(a); CREATE TABLE local_only(v)").ok());
  CHECK(s->execute_schema("DROP TABLE local_only").ok());
}
