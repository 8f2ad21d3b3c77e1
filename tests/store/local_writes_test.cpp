// Local writes record clocks exactly as crdt-semantics.md says, whatever SQL ran.
// Observed through changes_since: the clocks a peer would receive.
#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;

namespace {

const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a, b, c);"
                      "CREATE TABLE k(x TEXT NOT NULL, y INTEGER NOT NULL, PRIMARY KEY (x, y));"
                      "CREATE TABLE s(name TEXT PRIMARY KEY NOT NULL, v DEFAULT 7);";

struct Seen {
  std::string cid;
  int64_t col_version, cl;
  Value val;
};

// The changes with db_version > since, keyed "pk/cid" for the first key value.
std::map<std::string, Seen> changes(Store& s, int64_t since) {
  auto b = s.changes_since(since);
  REQUIRE(b.ok());
  std::map<std::string, Seen> out;
  for (const auto& c : b->changes()) {
    std::string key = from_proto(c.pk(0)).to_sql_literal() + "/" + c.cid();
    REQUIRE(out.count(key) == 0);
    out[key] = Seen{c.cid(), c.col_version(), c.cl(), from_proto(c.val())};
  }
  return out;
}

std::unique_ptr<Store> store() { return memory_store(1, kSchema, {"t", "k", "s"}); }

}  // namespace

TEST_CASE("insert of a new key gives every value column col_version 1 and no sentinel", "[store][local]") {
  auto s = store();
  auto r = exec(*s, "INSERT INTO t VALUES (1, 'x', 2.5, NULL)");
  CHECK(r.changed);
  CHECK(r.db_version == 1);
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 3);
  CHECK(c["1/a"].col_version == 1);
  CHECK(c["1/b"].col_version == 1);
  CHECK(c["1/c"].col_version == 1);
  CHECK(c["1/a"].cl == 1);
  CHECK(identical(c["1/b"].val, Value::Real(2.5)));
  CHECK(c["1/c"].val.is_null());
}

TEST_CASE("a table whose only columns are the key records the sentinel at cl 1", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO k VALUES ('a', 1)");
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 1);
  CHECK(c["'a'/-1"].col_version == 1);
  CHECK(c["'a'/-1"].cl == 1);
}

TEST_CASE("update records only the columns whose value changed", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y', 'z')");
  auto r = exec(*s, "UPDATE t SET a = 'x', b = 'new' WHERE id = 1");
  CHECK(r.db_version == 2);
  auto c = changes(*s, 1);
  REQUIRE(c.size() == 1);
  CHECK(c["1/b"].col_version == 2);
  CHECK(identical(c["1/b"].val, Value::Text("new")));
}

TEST_CASE("setting a column to the value it holds records nothing and keeps db_version", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 2, NULL)");
  auto r = exec(*s, "UPDATE t SET a = 'x', b = 2, c = NULL WHERE id = 1");
  CHECK_FALSE(r.changed);
  CHECK(r.db_version == 1);
  CHECK(s->db_version() == 1);
  CHECK(changes(*s, 1).empty());
}

TEST_CASE("a change of storage class is a change (1 to 1.0), unlike SQLite's IS", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 1, NULL, NULL)");
  exec(*s, "UPDATE t SET a = 1.0 WHERE id = 1");
  auto c = changes(*s, 1);
  REQUIRE(c.size() == 1);
  CHECK(identical(c["1/a"].val, Value::Real(1.0)));
  CHECK(c["1/a"].col_version == 2);
}

TEST_CASE("delete moves the sentinel to 2 and drops the column clocks", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y', 'z')");
  exec(*s, "DELETE FROM t WHERE id = 1");
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 1);
  CHECK(c["1/-1"].col_version == 2);
  CHECK(c["1/-1"].cl == 2);
}

TEST_CASE("re-insert after delete: sentinel to 3, columns restart at 1", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y', 'z')");
  exec(*s, "UPDATE t SET a = 'x2' WHERE id = 1");
  exec(*s, "DELETE FROM t WHERE id = 1");
  exec(*s, "INSERT INTO t VALUES (1, 'p', 'q', 'r')");
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 4);
  CHECK(c["1/-1"].col_version == 3);
  for (const char* col : {"1/a", "1/b", "1/c"}) {
    CHECK(c[col].col_version == 1);
    CHECK(c[col].cl == 3);
  }
  exec(*s, "DELETE FROM t WHERE id = 1");
  c = changes(*s, 0);
  REQUIRE(c.size() == 1);
  CHECK(c["1/-1"].cl == 4);
}

TEST_CASE("INSERT OR REPLACE over an existing row writes every column, cl unchanged", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y', 'z')");
  exec(*s, "INSERT OR REPLACE INTO t VALUES (1, 'x', 'y2', 'z')");
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 3);
  for (const char* col : {"1/a", "1/b", "1/c"}) {
    CHECK(c[col].col_version == 2);
    CHECK(c[col].cl == 1);
  }
  SECTION("also for a text key (REPLACE through the key's unique index)") {
    exec(*s, "INSERT INTO s VALUES ('n', 1)");
    exec(*s, "REPLACE INTO s VALUES ('n', 2)");
    auto d = changes(*s, 2);
    REQUIRE(d.size() == 1);
    CHECK(d["'n'/v"].col_version == 2);
    CHECK(d["'n'/v"].cl == 1);
  }
}

// The expectations below are cr-sqlite 0.16's own change rows for the same SQL (run through
// ../shared/oracle): a REPLACE over a row that has a sentinel raises its cl by 2.
TEST_CASE("INSERT OR REPLACE over a re-inserted row raises cl by 2 and writes every column", "[store][local][replace]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (2, 'a', 1, NULL)");
  exec(*s, "DELETE FROM t WHERE id = 2");
  exec(*s, "INSERT INTO t VALUES (2, 'b', 1, NULL)");
  exec(*s, "INSERT OR REPLACE INTO t VALUES (2, 'b', 1, NULL)");
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 4);
  CHECK(c["2/-1"].col_version == 5);
  CHECK(c["2/-1"].cl == 5);
  for (const char* col : {"2/a", "2/b", "2/c"}) {
    CHECK(c[col].col_version == 2);
    CHECK(c[col].cl == 5);
  }
  SECTION("and again: every REPLACE is a new life") {
    exec(*s, "UPDATE t SET a = 'zz' WHERE id = 2");
    exec(*s, "REPLACE INTO t VALUES (2, 'zz', 1, NULL)");
    auto d = changes(*s, 0);
    CHECK(d["2/-1"].cl == 7);
    CHECK(d["2/a"].col_version == 4);
    CHECK(d["2/b"].col_version == 3);
    CHECK(d["2/b"].cl == 7);
  }
  SECTION("an UPSERT or an UPDATE OR REPLACE of the row stays an update") {
    exec(*s, "INSERT INTO t VALUES (2, 'c', 1, NULL) ON CONFLICT(id) DO UPDATE SET a = excluded.a, b = excluded.b");
    exec(*s, "UPDATE OR REPLACE t SET c = 'q' WHERE id = 2");
    exec(*s, "INSERT OR IGNORE INTO t VALUES (2, 'd', 1, NULL)");
    auto d = changes(*s, 0);
    CHECK(d["2/-1"].cl == 5);
    CHECK(d["2/a"].col_version == 3);
    CHECK(d["2/b"].col_version == 2);
    CHECK(d["2/c"].col_version == 3);
  }
}

TEST_CASE("REPLACE over a row deleted in the same transaction, or over a tombstone", "[store][local][replace]") {
  auto s = store();
  SECTION("delete, insert and REPLACE in one transaction: cl 5, columns 2") {
    exec(*s, "INSERT INTO t VALUES (7, 'a', 1, NULL)");
    auto r = s->write({{"DELETE FROM t WHERE id = 7", {}},
                       {"INSERT INTO t VALUES (7, 'a', 1, NULL)", {}},
                       {"INSERT OR REPLACE INTO t VALUES (7, 'c', 1, NULL)", {}}});
    REQUIRE(r.ok());
    auto c = changes(*s, 0);
    REQUIRE(c.size() == 4);
    CHECK(c["7/-1"].cl == 5);
    CHECK(c["7/a"].col_version == 2);
    CHECK(c["7/a"].cl == 5);
    CHECK(identical(c["7/a"].val, Value::Text("c")));
  }
  SECTION("insert and REPLACE of a fresh row in one transaction: no sentinel, cl 1") {
    auto r = s->write({{"INSERT INTO t VALUES (5, 'a', 1, NULL)", {}}, {"INSERT OR REPLACE INTO t VALUES (5, 'a', 2, NULL)", {}}});
    REQUIRE(r.ok());
    auto c = changes(*s, 0);
    REQUIRE(c.size() == 3);
    CHECK(c["5/a"].col_version == 2);
    CHECK(c["5/a"].cl == 1);
  }
  SECTION("REPLACE over a tombstone is a re-insert, the next REPLACE a new life") {
    exec(*s, "INSERT INTO t VALUES (6, 'a', 1, NULL)");
    exec(*s, "DELETE FROM t WHERE id = 6");
    exec(*s, "INSERT OR REPLACE INTO t VALUES (6, 'q', 1, NULL)");
    auto c = changes(*s, 0);
    CHECK(c["6/-1"].cl == 3);
    CHECK(c["6/a"].col_version == 1);
    exec(*s, "INSERT OR REPLACE INTO t VALUES (6, 'q', 1, NULL)");
    c = changes(*s, 0);
    CHECK(c["6/-1"].cl == 5);
    CHECK(c["6/a"].col_version == 2);
  }
}

TEST_CASE("REPLACE in a key-only table raises the sentinel from 1 to 3", "[store][local][replace]") {
  auto s = store();
  exec(*s, "INSERT INTO k VALUES ('x', 1)");
  exec(*s, "INSERT OR REPLACE INTO k VALUES ('x', 1)");
  auto c = changes(*s, 0);
  REQUIRE(c.size() == 1);
  CHECK(c["'x'/-1"].col_version == 3);
  CHECK(c["'x'/-1"].cl == 3);
  SECTION("INSERT OR IGNORE and DO NOTHING record nothing") {
    exec(*s, "INSERT OR IGNORE INTO k VALUES ('x', 1)");
    exec(*s, "INSERT INTO k VALUES ('x', 1) ON CONFLICT DO NOTHING");
    CHECK(changes(*s, 0)["'x'/-1"].cl == 3);
  }
}

TEST_CASE("REPLACE over a merged row: a merged sentinel counts, a merged fresh row has none", "[store][local][replace]") {
  auto a = store();
  auto b = memory_store(2, kSchema, {"t", "k", "s"});
  exec(*a, "INSERT INTO t VALUES (1, 'a', 1, NULL)");
  exec(*a, "INSERT OR REPLACE INTO t VALUES (1, 'a', 2, NULL)");
  REQUIRE(a->write({{"INSERT INTO t VALUES (2, 'a', 1, NULL)", {}},
                    {"DELETE FROM t WHERE id = 2", {}},
                    {"INSERT INTO t VALUES (2, 'b', 1, NULL)", {}}}).ok());
  REQUIRE(a->write({{"INSERT INTO s VALUES ('n', 1)", {}}, {"DELETE FROM s", {}}, {"INSERT INTO s VALUES ('n', 2)", {}}}).ok());
  sync(*a, *b);
  const int64_t before = b->db_version();
  exec(*b, "INSERT OR REPLACE INTO t VALUES (1, 'a', 2, NULL)");
  exec(*b, "INSERT OR REPLACE INTO t VALUES (2, 'b', 1, NULL)");
  exec(*b, "REPLACE INTO s VALUES ('n', 2)");
  auto c = changes(*b, before);
  REQUIRE(c.size() == 9);
  CHECK(c.count("1/-1") == 0);
  CHECK(c["1/a"].col_version == 3);
  CHECK(c["1/a"].cl == 1);
  CHECK(c["2/-1"].cl == 5);
  CHECK(c["2/a"].col_version == 2);
  CHECK(c["2/a"].cl == 5);
  CHECK(c["'n'/-1"].cl == 5);
  CHECK(c["'n'/v"].col_version == 2);
  CHECK(c["'n'/v"].cl == 5);
  SECTION("so the REPLACE beats a concurrent delete of the merged life") {
    exec(*a, "DELETE FROM t WHERE id = 2");
    sync(*a, *b);
    sync(*b, *a);
    CHECK(same_rows(dump(*a, "t"), dump(*b, "t")));
    REQUIRE(dump(*b, "t").size() == 2);
  }
}

TEST_CASE("UPSERT is an update of the columns it changes", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y', 'z')");
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'q', 'z') ON CONFLICT(id) DO UPDATE SET b = excluded.b, a = excluded.a");
  auto c = changes(*s, 1);
  REQUIRE(c.size() == 1);
  CHECK(c["1/b"].col_version == 2);
  SECTION("and an insert where the key is new") {
    exec(*s, "INSERT INTO t VALUES (2, 'x', 'q', 'z') ON CONFLICT(id) DO UPDATE SET b = excluded.b");
    auto d = changes(*s, 2);
    CHECK(d.size() == 3);
    CHECK(d["2/a"].col_version == 1);
  }
}

TEST_CASE("a primary-key update is a delete of the old key and a fresh insert of the new", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'x', 'y', 'z')");
  exec(*s, "UPDATE t SET a = 'x2' WHERE id = 1");
  exec(*s, "UPDATE t SET id = 5 WHERE id = 1");
  auto c = changes(*s, 2);
  REQUIRE(c.size() == 4);
  CHECK(c["1/-1"].cl == 2);
  for (const char* col : {"5/a", "5/b", "5/c"}) {
    CHECK(c[col].col_version == 1);
    CHECK(c[col].cl == 1);
  }
  CHECK(identical(c["5/a"].val, Value::Text("x2")));
  SECTION("onto a key that existed before (UPDATE OR REPLACE): every column +1 there") {
    exec(*s, "INSERT INTO t VALUES (6, 'o', 'o', 'o')");
    exec(*s, "UPDATE OR REPLACE t SET id = 6 WHERE id = 5");
    auto d = changes(*s, 4);
    REQUIRE(d.size() == 4);
    CHECK(d["5/-1"].cl == 2);
    CHECK(d["6/a"].col_version == 2);
    CHECK(d["6/a"].cl == 1);
    CHECK(identical(d["6/a"].val, Value::Text("x2")));
  }
}

TEST_CASE("a transaction takes one db_version and orders its changes by seq", "[store][local]") {
  auto s = store();
  auto r = s->write({{"INSERT INTO t VALUES (1, 'a', 'b', 'c')", {}},
                     {"INSERT INTO t VALUES (2, 'a', 'b', 'c')", {}},
                     {"UPDATE t SET a = ? WHERE id = ?", {Value::Text("z"), Value::Integer(1)}}});
  REQUIRE(r.ok());
  CHECK(r->db_version == 1);
  CHECK(r->rows_changed == 3);
  auto b = s->changes_since(0);
  REQUIRE(b.ok());
  REQUIRE(b->changes_size() == 6);
  for (int i = 0; i < b->changes_size(); ++i) CHECK(b->changes(i).db_version() == 1);
  for (int i = 1; i < b->changes_size(); ++i) CHECK(b->changes(i - 1).seq() < b->changes(i).seq());
  CHECK(b->to_db_version() == 1);
  CHECK(b->complete());
}

TEST_CASE("row deltas carry the net old and new rows of each touched row", "[store][local]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'a', 'b', 'c')");
  auto r = s->write({{"UPDATE t SET a = 'z' WHERE id = 1", {}},
                     {"INSERT INTO t VALUES (2, 'n', NULL, NULL)", {}},
                     {"DELETE FROM t WHERE id = 2", {}},
                     {"INSERT INTO t VALUES (3, 'm', NULL, NULL)", {}}});
  REQUIRE(r.ok());
  const auto& d = r->deltas.deltas;
  REQUIRE(d.size() == 2);  // row 2 came and went inside the transaction
  CHECK(d[0].table == "t");
  REQUIRE(d[0].old_row);
  REQUIRE(d[0].new_row);
  CHECK(identical((*d[0].old_row)[1], Value::Text("a")));
  CHECK(identical((*d[0].new_row)[1], Value::Text("z")));
  CHECK_FALSE(d[1].old_row);
  REQUIRE(d[1].new_row);
  CHECK(identical((*d[1].new_row)[0], Value::Integer(3)));
  CHECK(r->deltas.db_version == 2);
}

TEST_CASE("writes from the application's own triggers are recorded too", "[store][local]") {
  auto s = store();
  REQUIRE(s->execute_schema("CREATE TABLE log(n INTEGER PRIMARY KEY, what);"
                            "CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN INSERT INTO s(name, v) VALUES ('t' || new.id, new.a); END;")
              .ok());
  exec(*s, "INSERT INTO t VALUES (1, 'a', 'b', 'c')");
  auto c = changes(*s, 0);
  CHECK(c.count("'t1'/v") == 1);
}

TEST_CASE("a failed statement rolls the whole write back and records nothing", "[store][local][errors]") {
  auto s = store();
  REQUIRE(s->execute_schema("CREATE TABLE chk(id INTEGER PRIMARY KEY, n CHECK (n > 0))").ok());
  REQUIRE(s->register_table("chk").ok());
  auto r = s->write({{"INSERT INTO t VALUES (1, 'a', 'b', 'c')", {}}, {"INSERT INTO chk VALUES (1, -5)", {}}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == StatusCode::constraint);
  CHECK(r.status().message().find("CHECK constraint failed") != std::string::npos);
  CHECK(s->db_version() == 0);
  CHECK(dump(*s, "t").empty());
  CHECK(changes(*s, 0).empty());
}

TEST_CASE("writes refuse transaction control, schema changes, pragmas and Tandem's tables", "[store][local][errors]") {
  auto s = store();
  struct Case {
    const char* sql;
    const char* says;
  } cases[] = {
      {"BEGIN", "transaction control"},
      {"COMMIT", "transaction control"},
      {"SAVEPOINT x", "transaction control"},
      {"CREATE TABLE x(a)", "schema changes"},
      {"DROP TABLE t", "schema changes"},
      {"PRAGMA foreign_keys = ON", "PRAGMA"},
      {"ATTACH ':memory:' AS other", "ATTACH"},
      {"DELETE FROM tandem_clock_1", "belongs to Tandem"},
      {"UPDATE tandem_meta SET value = 99 WHERE key = 'db_version'", "belongs to Tandem"},
  };
  for (const auto& c : cases) {
    auto r = s->write({{c.sql, {}}});
    INFO(c.sql << " -> " << r.status().to_string());
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().find(c.says) != std::string::npos);
  }
  CHECK(s->db_version() == 0);
}

TEST_CASE("queries are read-only", "[store][local][errors]") {
  auto s = store();
  exec(*s, "INSERT INTO t VALUES (1, 'a', 'b', 'c')");
  auto q = s->query("SELECT a FROM t WHERE id = ?", {Value::Integer(1)});
  REQUIRE(q.ok());
  REQUIRE(q->rows.size() == 1);
  CHECK(q->columns == std::vector<std::string>{"a"});
  CHECK(q->db_version == 1);
  auto w = s->query("DELETE FROM t");
  REQUIRE_FALSE(w.ok());
  CHECK(dump(*s, "t").size() == 1);
  auto bad = s->query("SELEC nonsense");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("syntax error") != std::string::npos);
}

TEST_CASE("structured mutations", "[store][local]") {
  auto s = store();
  worker::Mutation ins;
  ins.set_table("t");
  for (const char* c : {"id", "a"}) ins.mutable_insert()->add_columns(c);
  to_proto(Value::Integer(7), ins.mutable_insert()->add_values());
  to_proto(Value::Text("hi"), ins.mutable_insert()->add_values());
  worker::Mutation up;
  up.set_table("t");
  to_proto(Value::Integer(7), up.mutable_update()->add_pk());
  up.mutable_update()->add_columns("b");
  to_proto(Value::Blob(""), up.mutable_update()->add_values());
  auto r = s->mutate({ins, up}, "m1");
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  CHECK(r->deltas.mutation_id == "m1");
  auto rows = dump(*s, "t");
  REQUIRE(rows.size() == 1);
  CHECK(identical(rows[0][2], Value::Blob("")));  // a zero-length BLOB stays a BLOB

  SECTION("an update of a missing row is an error and nothing is written") {
    worker::Mutation miss = up;
    miss.mutable_update()->mutable_pk(0)->set_integer(99);
    auto e = s->mutate({miss});
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == StatusCode::not_found);
  }
  SECTION("unknown tables, unknown columns and bad key arity are refused") {
    worker::Mutation bad = ins;
    bad.set_table("nope");
    CHECK(s->mutate({bad}).status().code() == StatusCode::invalid_argument);
    bad = ins;
    bad.mutable_insert()->set_columns(1, "zzz");
    CHECK(s->mutate({bad}).status().message().find("no such column: zzz") != std::string::npos);
    bad = up;
    to_proto(Value::Integer(1), bad.mutable_update()->add_pk());
    CHECK(s->mutate({bad}).status().message().find("primary key") != std::string::npos);
    worker::Mutation empty;
    empty.set_table("t");
    CHECK_FALSE(s->mutate({empty}).ok());
  }
  CHECK(dump(*s, "t").size() == 1);
}

TEST_CASE("a write with a request key runs once: the same key again answers the recorded outcome and runs nothing",
          "[store][local][request_key]") {
  auto s = store();
  auto first = s->write({{"INSERT INTO t(id, a) VALUES (1, 'x'), (2, 'y')", {}}}, "", "proc-7");
  REQUIRE(first.ok());
  CHECK_FALSE(first->replayed);
  CHECK(first->db_version == 1);
  CHECK(first->rows_changed == 2);
  exec(*s, "UPDATE t SET a = 'z' WHERE id = 1");  // the node moves on meanwhile
  // The same write sent again (its first answer was lost with the leader process): not run.
  auto again = s->write({{"INSERT INTO t(id, a) VALUES (1, 'x'), (2, 'y')", {}}}, "", "proc-7");
  REQUIRE(again.ok());
  CHECK(again->replayed);
  CHECK(again->db_version == 1);
  CHECK(again->rows_changed == 2);
  CHECK(again->deltas.deltas.empty());
  CHECK(s->db_version() == 2);
  CHECK(render(dump(*s, "t")) == "(1, 'z', NULL, NULL)\n(2, 'y', NULL, NULL)\n");
  // Mutations are keyed the same way.
  worker::Mutation m;
  m.set_table("t");
  m.mutable_insert()->add_columns("id");
  *m.mutable_insert()->add_values() = to_proto(Value::Integer(3));
  REQUIRE(s->mutate({m}, "m1", "proc-8").ok());
  auto replay = s->mutate({m}, "m1", "proc-8");
  REQUIRE(replay.ok());
  CHECK(replay->replayed);
  CHECK(replay->db_version == 3);
  // A refused write records nothing: sent again, it runs (and is refused) again.
  CHECK_FALSE(s->write({{"INSERT INTO t(id, a) VALUES (1, 'dup')", {}}}, "", "proc-9").ok());
  CHECK_FALSE(s->write({{"INSERT INTO t(id, a) VALUES (1, 'dup')", {}}}, "", "proc-9").ok());
  // Only the newest 1,000 keys are kept.
  for (int i = 0; i < 1000; ++i)
    REQUIRE(s->write({{"UPDATE t SET b = ?1 WHERE id = 2", {Value::Integer(i)}}}, "", "k" + std::to_string(i)).ok());
  auto old = s->write({{"INSERT INTO t(id, a) VALUES (1, 'x'), (2, 'y')", {}}}, "", "proc-7");
  CHECK_FALSE(old.ok());  // forgotten: it ran again and met the rows it made
  auto recent = s->write({{"UPDATE t SET b = -1 WHERE id = 2", {}}}, "", "k999");
  REQUIRE(recent.ok());
  CHECK(recent->replayed);
}
