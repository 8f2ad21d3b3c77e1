// Each merge rule of crdt-semantics.md and each consequence it lists, with hand-built
// batches; and batches that must be refused whole.
#include <sqlite3.h>

#include <algorithm>

#include "runtime/store/store_internal.hpp"
#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {

const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a, b);"
                      "CREATE TABLE k(x TEXT NOT NULL, y NUMERIC NOT NULL, PRIMARY KEY (x, y));";

std::unique_ptr<Store> store(uint8_t site = 1) { return memory_store(site, kSchema, {"t", "k"}); }

Row one(Store& s, int64_t id) {
  auto q = s.query("SELECT * FROM t WHERE id = ?", {Value::Integer(id)});
  REQUIRE(q.ok());
  return q->rows.empty() ? Row{} : q->rows[0];
}

MergeResult merge(Store& s, std::vector<change::Change> changes, uint8_t sender = 9) {
  auto r = s.merge(make_batch(sender, std::move(changes)));
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  return std::move(r).value();
}

const Value I(int64_t v) { return Value::Integer(v); }
const Value T(const char* v) { return Value::Text(v); }

}  // namespace

TEST_CASE("merging a fresh row creates it", "[store][merge]") {
  auto s = store();
  auto r = merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2), make_change("t", {I(1)}, "b", T("y"), 1, 1, 2)});
  CHECK(r.changes_applied == 2);
  CHECK(identical(one(*s, 1), Row{I(1), T("x"), T("y")}));
  REQUIRE(r.deltas.deltas.size() == 1);
  CHECK_FALSE(r.deltas.deltas[0].old_row);
  CHECK(r.deltas.origin == DeltaOrigin::merge);
}

TEST_CASE("column rule: the higher col_version wins", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "a", T("old"), 3, 1, 2)});
  merge(*s, {make_change("t", {I(1)}, "a", T("lower"), 2, 1, 3)});
  CHECK(identical(one(*s, 1)[1], T("old")));
  merge(*s, {make_change("t", {I(1)}, "a", T("higher"), 4, 1, 3)});
  CHECK(identical(one(*s, 1)[1], T("higher")));
}

TEST_CASE("column rule: equal col_version, the greater value wins by INTEGER > REAL > TEXT > BLOB > NULL", "[store][merge]") {
  struct Case {
    Value local, incoming;
    bool incoming_wins;
  } cases[] = {
      {Value::Real(1.5), I(1), true},            // the integer 1 beats the real 1.5
      {I(1), Value::Real(1.5), false},
      {T("zzz"), Value::Real(-1e9), true},       // any REAL beats any TEXT
      {Value::Blob("\xff"), T(""), true},        // any TEXT beats any BLOB
      {Value(), Value::Blob(""), true},          // an empty BLOB beats NULL
      {I(5), I(7), true},
      {I(7), I(5), false},
      {Value::Real(2.0), Value::Real(2.5), true},
      {T("abc"), T("abd"), true},
      {T("abc"), T("ab"), false},
      {Value::Blob("\x01\x02"), Value::Blob("\x01\x03"), true},
  };
  for (const auto& c : cases) {
    auto s = store();
    merge(*s, {make_change("t", {I(1)}, "a", c.local, 2, 1, 2)});
    auto r = merge(*s, {make_change("t", {I(1)}, "a", c.incoming, 2, 1, 3)});
    INFO("local " << c.local.to_sql_literal() << " incoming " << c.incoming.to_sql_literal());
    CHECK(identical(one(*s, 1)[1], c.incoming_wins ? c.incoming : c.local));
    CHECK(r.changes_applied == (c.incoming_wins ? 1 : 0));
  }
}

TEST_CASE("equal col_version and equal value: nothing changes, db_version stays", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "a", T("v"), 2, 1, 2)});
  int64_t v = s->db_version();
  auto r = merge(*s, {make_change("t", {I(1)}, "a", T("v"), 2, 1, 3)});
  CHECK(r.changes_applied == 0);
  CHECK(s->db_version() == v);
  auto b = s->changes_since(0);
  REQUIRE(b->changes_size() == 1);
  CHECK(b->changes(0).site_id() == site_bytes(site_number(2)));  // the local clock keeps its site
}

TEST_CASE("a change from an older life is ignored", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2), make_change("t", {I(1)}, "-1", Value(), 2, 2, 2)});
  CHECK(one(*s, 1).empty());
  auto r = merge(*s, {make_change("t", {I(1)}, "a", T("late"), 9, 1, 3)});
  CHECK(r.changes_applied == 0);
  CHECK(one(*s, 1).empty());
}

TEST_CASE("a delete beats any number of concurrent updates of the same life", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2)});
  merge(*s, {make_change("t", {I(1)}, "a", T("u"), 50, 1, 3)});
  merge(*s, {make_change("t", {I(1)}, "-1", Value(), 2, 2, 4)});
  CHECK(one(*s, 1).empty());
  merge(*s, {make_change("t", {I(1)}, "a", T("later update"), 99, 1, 3)});
  CHECK(one(*s, 1).empty());
}

TEST_CASE("a delete of a row never seen leaves a tombstone that older inserts respect", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "-1", Value(), 2, 2, 4)});
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2)});
  CHECK(one(*s, 1).empty());
}

TEST_CASE("a re-insert (cl 3) beats concurrent updates of the deleted life", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2), make_change("t", {I(1)}, "b", T("y"), 1, 1, 2)});
  merge(*s, {make_change("t", {I(1)}, "-1", Value(), 3, 3, 4), make_change("t", {I(1)}, "a", T("new"), 1, 3, 4),
             make_change("t", {I(1)}, "b", T("life"), 1, 3, 4)});
  CHECK(identical(one(*s, 1), Row{I(1), T("new"), T("life")}));
  merge(*s, {make_change("t", {I(1)}, "a", T("stale"), 7, 1, 3)});
  CHECK(identical(one(*s, 1), Row{I(1), T("new"), T("life")}));
}

TEST_CASE("a newer life's column arriving alone resurrects the row, its other columns follow", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2), make_change("t", {I(1)}, "b", T("y"), 1, 1, 2)});
  merge(*s, {make_change("t", {I(1)}, "b", T("B3"), 1, 3, 4)});
  // The new life starts from the DEFAULTs (here NULL) until its other column arrives; that
  // column's clock is at version 0. (A device on an older schema never sends the columns it
  // lacks: every replica must then hold the DEFAULT, not what its old life had.)
  CHECK(identical(one(*s, 1), Row{I(1), Value(), T("B3")}));
  merge(*s, {make_change("t", {I(1)}, "a", T("A3"), 1, 3, 4)});
  CHECK(identical(one(*s, 1), Row{I(1), T("A3"), T("B3")}));
  SECTION("into a replica where the row never existed: the key alone, then columns") {
    auto fresh = store();
    merge(*fresh, {make_change("t", {I(1)}, "b", T("B3"), 1, 3, 4)});
    CHECK(identical(one(*fresh, 1), Row{I(1), Value(), T("B3")}));
  }
}

TEST_CASE("delete-reinsert-delete (cl 4) beats delete-reinsert (cl 3)", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("t", {I(1)}, "-1", Value(), 4, 4, 2)});
  merge(*s, {make_change("t", {I(1)}, "-1", Value(), 3, 3, 3), make_change("t", {I(1)}, "a", T("x"), 1, 3, 3)});
  CHECK(one(*s, 1).empty());
  auto other = store(5);
  merge(*other, {make_change("t", {I(1)}, "-1", Value(), 3, 3, 3), make_change("t", {I(1)}, "a", T("x"), 1, 3, 3)});
  CHECK_FALSE(one(*other, 1).empty());
  merge(*other, {make_change("t", {I(1)}, "-1", Value(), 4, 4, 2)});
  CHECK(one(*other, 1).empty());
}

TEST_CASE("two concurrent re-inserts at the same cl are decided column by column by value", "[store][merge]") {
  auto a = store(1);
  auto b = store(2);
  std::vector<change::Change> life_one = {make_change("t", {I(1)}, "-1", Value(), 3, 3, 3), make_change("t", {I(1)}, "a", T("a1"), 1, 3, 3),
                                          make_change("t", {I(1)}, "b", T("zz"), 1, 3, 3)};
  std::vector<change::Change> life_two = {make_change("t", {I(1)}, "-1", Value(), 3, 3, 4), make_change("t", {I(1)}, "a", T("a2"), 1, 3, 4),
                                          make_change("t", {I(1)}, "b", T("b2"), 1, 3, 4)};
  merge(*a, life_one);
  merge(*a, life_two);
  merge(*b, life_two);
  merge(*b, life_one);
  Row expected{I(1), T("a2"), T("zz")};
  CHECK(identical(one(*a, 1), expected));
  CHECK(identical(one(*b, 1), expected));
}

TEST_CASE("a merged change is re-stamped with max(local + 1, incoming db_version) and keeps its origin", "[store][merge]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (5, 'l', 'l')");
  CHECK(s->db_version() == 1);
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2, /*db_version*/ 40, /*seq*/ 7)});
  CHECK(s->db_version() == 40);
  merge(*s, {make_change("t", {I(2)}, "a", T("y"), 1, 1, 2, 3, 0)});
  CHECK(s->db_version() == 41);
  auto b = s->changes_since(1);
  REQUIRE(b->changes_size() == 2);
  CHECK(b->changes(0).db_version() == 40);
  CHECK(b->changes(0).seq() == 7);
  CHECK(b->changes(0).site_id() == site_bytes(site_number(2)));
  CHECK(b->changes(1).db_version() == 41);
}

TEST_CASE("merging advances the sender's cursor in the peer-tracking table", "[store][merge]") {
  auto s = store();
  auto r = s->merge(make_batch(7, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 7)}, 12));
  REQUIRE(r.ok());
  CHECK(s->peer(site_number(7))->received == 12);
  REQUIRE(s->merge(make_batch(7, {}, 5)).ok());  // an older batch never moves it back
  CHECK(s->peer(site_number(7))->received == 12);
  REQUIRE(s->record_peer_ack(site_number(7), 3).ok());
  REQUIRE(s->record_peer_ack(site_number(7), 2).ok());
  CHECK(s->peer(site_number(7))->acked == 3);
}

TEST_CASE("composite and text keys merge like integer keys", "[store][merge]") {
  auto s = store();
  merge(*s, {make_change("k", {T("a"), I(1)}, "-1", Value(), 1, 1, 2), make_change("k", {T("a"), Value::Real(1.5)}, "-1", Value(), 1, 1, 2)});
  auto rows = dump(*s, "k");
  REQUIRE(rows.size() == 2);
  merge(*s, {make_change("k", {T("a"), I(1)}, "-1", Value(), 2, 2, 2)});
  rows = dump(*s, "k");
  REQUIRE(rows.size() == 1);
  CHECK(identical(rows[0][1], Value::Real(1.5)));
}

TEST_CASE("bad batches are refused whole with a clear error and change nothing", "[store][merge][errors]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'keep', 'me')");
  auto good = make_change("t", {I(2)}, "a", T("x"), 1, 1, 2);
  struct Case {
    const char* what;
    change::Change bad;
    const char* says;
  };
  std::vector<Case> cases;
  {
    auto c = good;
    c.set_table("nope");
    cases.push_back({"unknown table", c, "unknown table 'nope'"});
  }
  {
    auto c = good;
    c.set_cid("zzz");
    cases.push_back({"unknown column", c, "no value column 'zzz'"});
  }
  {
    auto c = good;
    to_proto(I(3), c.add_pk());
    cases.push_back({"key arity", c, "primary key"});
  }
  {
    auto c = good;
    c.clear_pk();
    cases.push_back({"no key", c, "primary key"});
  }
  {
    auto c = good;
    c.mutable_pk(0)->set_text("2");
    cases.push_back({"text in an INTEGER PRIMARY KEY", c, "must be an integer"});
  }
  {
    auto c = good;
    c.mutable_pk(0)->Clear();
    cases.push_back({"NULL key", c, "NULL"});
  }
  {
    auto c = good;
    c.set_site_id("short");
    cases.push_back({"site id", c, "16 bytes"});
  }
  {
    auto c = good;
    c.set_cl(0);
    cases.push_back({"cl 0", c, "causal length"});
  }
  {
    auto c = good;
    c.set_col_version(0);
    cases.push_back({"col_version 0", c, "col_version"});
  }
  {
    auto c = good;
    c.set_db_version(-4);
    cases.push_back({"negative version", c, "db_version"});
  }
  {
    auto c = good;
    c.set_cid("-1");
    cases.push_back({"sentinel with a value", c, "no value"});
  }
  {
    auto c = good;
    c.mutable_val()->set_real(std::nan(""));
    cases.push_back({"NaN", c, "NaN"});
  }
  for (const auto& c : cases) {
    // The bad change comes after a good one: the good one must not land either.
    auto r = s->merge(make_batch(2, {good, c.bad}));
    INFO(c.what << " -> " << r.status().to_string());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == StatusCode::invalid_argument);
    CHECK(r.status().message().find(c.says) != std::string::npos);
    CHECK(r.status().message().find("change 1") != std::string::npos);
  }
  SECTION("a value that column affinity would convert") {
    REQUIRE(s->execute_schema("CREATE TABLE typed(id INTEGER PRIMARY KEY, n INTEGER)").ok());
    REQUIRE(s->register_table("typed").ok());
    auto r = s->merge(make_batch(2, {good, make_change("typed", {I(1)}, "n", T("42"), 1, 1, 2)}));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find("affinity") != std::string::npos);
    CHECK(dump(*s, "typed").empty());
  }
  SECTION("a bad sender") {
    auto b = make_batch(2, {good});
    b.set_sender_site_id("x");
    CHECK_FALSE(s->merge(b).ok());
    b = make_batch(2, {good});
    b.set_to_db_version(-1);
    CHECK_FALSE(s->merge(b).ok());
  }
  CHECK(s->db_version() == 1);
  CHECK(dump(*s, "t").size() == 1);
  CHECK(s->peer(site_number(2))->received == 0);
}

TEST_CASE("CHECK constraints hold for local writes, not for merged rows", "[store][merge]") {
  auto s = store();
  REQUIRE(s->execute_schema("CREATE TABLE c(id INTEGER PRIMARY KEY, lo DEFAULT 0, hi DEFAULT 0, CHECK (lo <= hi))").ok());
  REQUIRE(s->register_table("c").ok());
  // A row whose columns arrive one by one is transiently invalid.
  auto r = s->merge(make_batch(2, {make_change("c", {I(1)}, "lo", I(5), 1, 1, 2)}));
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  REQUIRE(s->merge(make_batch(2, {make_change("c", {I(1)}, "hi", I(9), 1, 1, 2)})).ok());
  CHECK(dump(*s, "c").size() == 1);
  CHECK_FALSE(s->write({{"INSERT INTO c VALUES (2, 9, 1)", {}}}).ok());
}

TEST_CASE("merges switch CHECK constraints off only around tables that may have one", "[store][merge]") {
  // The pragma expires every compiled statement of the connection: a merge into a table
  // without CHECK must not run it, one into a table with CHECK must (and still merge).
  auto s = store();
  REQUIRE(s->execute_schema("CREATE TABLE c(id INTEGER PRIMARY KEY, lo DEFAULT 0, hi DEFAULT 0, check(lo <= hi));"
                            "CREATE TABLE checked(id INTEGER PRIMARY KEY, checklist TEXT, \"unchecked\" INTEGER)")
              .ok());
  REQUIRE(s->register_table("c").ok());
  REQUIRE(s->register_table("checked").ok());
  std::vector<std::string> statements;
  sqlite3_trace_v2(
      store_connection(*s).raw(), SQLITE_TRACE_STMT,
      [](unsigned, void* ctx, void* stmt, void*) {
        const char* sql = sqlite3_sql(static_cast<sqlite3_stmt*>(stmt));
        if (sql) static_cast<std::vector<std::string>*>(ctx)->push_back(sql);
        return 0;
      },
      &statements);
  auto pragmas = [&] {
    return std::count_if(statements.begin(), statements.end(),
                         [](const std::string& sql) { return sql.find("ignore_check_constraints") != std::string::npos; });
  };
  merge(*s, {make_change("t", {I(1)}, "a", T("x"), 1, 1, 2)});
  merge(*s, {make_change("checked", {I(1)}, "checklist", T("x"), 1, 1, 2)});
  CHECK(pragmas() == 0);
  merge(*s, {make_change("c", {I(1)}, "lo", I(5), 1, 1, 2)});
  CHECK(pragmas() == 2);  // on, then off
  sqlite3_trace_v2(store_connection(*s).raw(), 0, nullptr, nullptr);
  CHECK(dump(*s, "c").size() == 1);
  CHECK_FALSE(s->write({{"INSERT INTO c VALUES (2, 9, 1)", {}}}).ok());
}

TEST_CASE("application triggers can tell merges apart with tandem_merging()", "[store][merge]") {
  auto s = store();
  REQUIRE(s->execute_schema("CREATE TABLE audit(n INTEGER PRIMARY KEY, id);"
                            "CREATE TRIGGER t_log AFTER INSERT ON t WHEN NOT tandem_merging() BEGIN INSERT INTO audit(id) VALUES (new.id); END;")
              .ok());
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y')");
  merge(*s, {make_change("t", {I(2)}, "a", T("x"), 1, 1, 2)});
  auto q = s->query("SELECT id FROM audit");
  REQUIRE(q.ok());
  REQUIRE(q->rows.size() == 1);
  CHECK(identical(q->rows[0][0], I(1)));
}
