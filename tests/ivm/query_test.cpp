// The SQL subset: refused constructs (tests/ivm/data/refused.txt), accepted queries whose
// rendering SQLite runs identically and which a live view reproduces
// (tests/ivm/data/accepted.txt), and the semantics that need an exact check of their own.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "tests/ivm/ivm_test_util.hpp"

#ifndef TANDEM_IVM_TEST_DATA
#error "TANDEM_IVM_TEST_DATA must name tests/ivm/data"
#endif

namespace tandem::test {
namespace {

const char* kSchema =
    "CREATE TABLE t1(id INTEGER PRIMARY KEY NOT NULL, a, b INTEGER, c TEXT);"
    "CREATE TABLE t2(id INTEGER PRIMARY KEY NOT NULL, k, v REAL);"
    "CREATE TABLE n(id INTEGER PRIMARY KEY NOT NULL, s TEXT COLLATE NOCASE);";

void fill(Node& node) {
  const std::vector<Row> rows = {
      {Value::Integer(1), Value::Integer(1), Value::Integer(2), Value::Text("ab")},
      {Value::Integer(2), Value::Real(1.0), Value::Integer(3), Value::Text("aB")},
      {Value::Integer(3), Value::Text("2"), Value::Integer(-4), Value::Text("5")},
      {Value::Integer(4), Value(), Value::Integer(2), Value::Text("xB")},
      {Value::Integer(5), Value::Blob("5"), Value(), Value::Text("\xc3\xa9")},
      {Value::Integer(6), Value::Integer(3), Value::Integer(4611686018427387904LL), Value()},
      {Value::Integer(7), Value::Text("abc"), Value::Integer(0), Value::Text("x%")},
      {Value::Integer(8), Value::Real(0.5), Value::Integer(16), Value::Text("10")},
  };
  for (const auto& r : rows) node.write("INSERT INTO t1(id, a, b, c) VALUES (?, ?, ?, ?)", r);
  node.write("INSERT INTO t2(id, k, v) VALUES (1, 1, 2.5), (2, 3, -1), (3, '2', NULL), (4, 1, 0), (5, 99, 7)");
  node.write("INSERT INTO n(id, s) VALUES (1, 'a')");
}

std::vector<std::string> lines(const std::string& file) {
  std::ifstream in(std::string(TANDEM_IVM_TEST_DATA) + "/" + file);
  REQUIRE(in.good());
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    // A line starting with whitespace continues the previous one.
    if (!out.empty() && (line[0] == ' ' || line.find('\t') == std::string::npos) && out.back().find('\t') != std::string::npos &&
        file == "refused.txt" && line.find('\t') == std::string::npos) {
      out.back() += "\n" + line;
      continue;
    }
    if (!out.empty() && line[0] == ' ' && file == "accepted.txt") {
      out.back() += "\n" + line;
      continue;
    }
    out.push_back(line);
  }
  return out;
}

Status parse_and_bind(Database& db, const std::string& sql) {
  auto q = query::parse(sql);
  if (!q.ok()) return q.status();
  Row params(static_cast<size_t>(q->parameter_count()), Value::Integer(1));
  auto plan = ivm::bind(db, *q, params);
  return plan.status();
}

std::vector<Row> run_sql(Database& db, const std::string& sql, const Row& params) {
  auto st = db.prepare(sql);
  INFO(sql << ": " << st.status().to_string());
  REQUIRE(st.ok());
  REQUIRE((*st)->bind_all(params).ok());
  std::vector<Row> rows;
  for (;;) {
    auto has = (*st)->step();
    INFO(sql << ": " << has.status().to_string());
    REQUIRE(has.ok());
    if (!*has) break;
    rows.push_back((*st)->row());
  }
  return rows;
}

}  // namespace

TEST_CASE("queries outside the subset are refused with the construct and its position", "[ivm][query]") {
  TempDir dir;
  Node node(dir.path, "q", kSchema, {"t1", "t2"});
  auto cases = lines("refused.txt");
  REQUIRE(cases.size() > 40);
  for (const auto& c : cases) {
    auto tab = c.find('\t');
    REQUIRE(tab != std::string::npos);
    std::string expected = c.substr(0, tab), sql = c.substr(tab + 1);
    Status st = parse_and_bind(node.oracle(), sql);
    INFO(sql << "\n  got: " << st.to_string() << "\n  want: " << expected);
    REQUIRE_FALSE(st.ok());
    REQUIRE(st.to_string().find(expected) != std::string::npos);
  }
}

TEST_CASE("accepted queries render to SQL that SQLite runs identically, and views match", "[ivm][query]") {
  TempDir dir;
  Node node(dir.path, "q", kSchema, {"t1", "t2"});
  fill(node);
  for (const auto& sql : lines("accepted.txt")) {
    auto q = query::parse(sql);
    INFO(sql << ": " << q.status().to_string());
    REQUIRE(q.ok());
    Row params;
    for (int i = 0; i < q->parameter_count(); ++i) params.push_back(Value::Integer(i < 2 ? 1 : 2));
    std::string rendered = query::render(*q);
    auto a = run_sql(node.oracle(), sql, params);
    auto b = run_sql(node.oracle(), rendered, params);
    INFO(sql << "\nrendered: " << rendered << "\noriginal:\n" << show(a) << "rendered gives:\n" << show(b));
    REQUIRE(sub_multiset(a, b, false));
    REQUIRE(a.size() == b.size());
    // The proto survives serialization.
    std::string bytes;
    REQUIRE(q->SerializeToString(&bytes));
    query::Query back;
    REQUIRE(back.ParseFromString(bytes));
    REQUIRE(query::render(back) == rendered);
    auto db = node.open_connection();
    auto plan = ivm::bind(*db, *q, params);
    INFO(plan.status().to_string());
    REQUIRE(plan.ok());
    auto view = ivm::LiveView::create(*db, &node.journal(), *plan);
    REQUIRE(view.ok());
    std::vector<int> order_columns;
    if ((*plan)->ordered()) order_columns = order_columns_of(**plan);
    REQUIRE(compare_with_sqlite(node, **plan, **view, order_columns) == "");
  }
}

TEST_CASE("SUM reports SQLite's integer overflow and recovers when the data no longer overflows", "[ivm][aggregate]") {
  TempDir dir;
  Node node(dir.path, "q", kSchema, {"t1", "t2"});
  node.write("INSERT INTO t1(id, a, b) VALUES (1, 1, 9223372036854775000), (2, 1, 100)");
  auto db = node.open_connection();
  auto plan = must_bind(*db, "SELECT a, sum(b), count(*) FROM t1 GROUP BY a");
  auto view = ivm::LiveView::create(*db, &node.journal(), plan);
  REQUIRE(view.ok());
  REQUIRE_FALSE((*view)->error());
  REQUIRE(compare_with_sqlite(node, *plan, **view, {}) == "");
  auto b = node.write("UPDATE t1 SET b = 1000 WHERE id = 2");
  REQUIRE((*view)->apply(b).ok());
  REQUIRE((*view)->error());
  REQUIRE((*view)->error()->message() == "integer overflow");
  REQUIRE(compare_with_sqlite(node, *plan, **view, {}) == "");
  b = node.write("DELETE FROM t1 WHERE id = 2");
  REQUIRE((*view)->apply(b).ok());
  REQUIRE_FALSE((*view)->error());
  REQUIRE(compare_with_sqlite(node, *plan, **view, {}) == "");
  REQUIRE((*view)->rows().at(0).at(1).integer() == 9223372036854775000LL);
}

TEST_CASE("a view's changes replay to its result (positions for ordered views)", "[ivm][changes]") {
  TempDir dir;
  Node node(dir.path, "q", kSchema, {"t1", "t2"});
  fill(node);
  for (const char* sql : {"SELECT id, b FROM t1 WHERE b > 0 ORDER BY b DESC, id LIMIT 3 OFFSET 1",
                          "SELECT b, count(*) FROM t1 GROUP BY b ORDER BY 2, 1", "SELECT id, c FROM t1 WHERE c LIKE '%b%'",
                          "SELECT id, b, c FROM t1 ORDER BY b DESC, id", "SELECT DISTINCT c FROM t1 ORDER BY 1"}) {
    auto db = node.open_connection();
    auto plan = must_bind(*db, sql);
    auto view = ivm::LiveView::create(*db, &node.journal(), plan);
    REQUIRE(view.ok());
    auto replica = (*view)->keyed_rows();  // what a receiver holds
    std::mt19937_64 rng(3);
    for (int i = 0; i < 60; ++i) {
      Status err;
      int64_t id = 1 + static_cast<int64_t>(rng() % 12);
      ivm::BatchPtr b;
      switch (rng() % 3) {
        case 0: b = node.write("INSERT OR REPLACE INTO t1(id, b, c) VALUES (?, ?, ?)", {Value::Integer(id), Value::Integer(static_cast<int64_t>(rng() % 9)), Value::Text(rng() % 2 ? "ab" : "x")}, &err); break;
        case 1: b = node.write("UPDATE t1 SET b = ? WHERE id = ?", {Value::Integer(static_cast<int64_t>(rng() % 9)), Value::Integer(id)}, &err); break;
        default: b = node.write("DELETE FROM t1 WHERE id = ?", {Value::Integer(id)}, &err); break;
      }
      if (!b) continue;
      REQUIRE((*view)->apply(b).ok());
      for (const auto& c : (*view)->take_changes()) {
        if (!(*view)->ordered()) {
          auto it = std::find_if(replica.begin(), replica.end(), [&](const auto& e) { return e.first == c.key; });
          if (c.kind == ivm::RowChangeRecord::Kind::removed) { REQUIRE(it != replica.end()); replica.erase(it); }
          else if (c.kind == ivm::RowChangeRecord::Kind::added) { REQUIRE(it == replica.end()); replica.emplace_back(c.key, c.row); }
          else { REQUIRE(it != replica.end()); it->second = c.row; }
          continue;
        }
        if (c.kind == ivm::RowChangeRecord::Kind::removed) {
          REQUIRE(c.position < static_cast<int64_t>(replica.size()));
          REQUIRE(replica[static_cast<size_t>(c.position)].first == c.key);
          replica.erase(replica.begin() + c.position);
        } else if (c.kind == ivm::RowChangeRecord::Kind::added) {
          REQUIRE(c.position <= static_cast<int64_t>(replica.size()));
          replica.insert(replica.begin() + c.position, {c.key, c.row});
        } else {
          REQUIRE(replica[static_cast<size_t>(c.old_position)].first == c.key);
          replica.erase(replica.begin() + c.old_position);
          replica.insert(replica.begin() + c.position, {c.key, c.row});
        }
      }
      auto now = (*view)->keyed_rows();
      INFO(sql << " step " << i);
      REQUIRE(replica.size() == now.size());
      if ((*view)->ordered()) {
        for (size_t k = 0; k < now.size(); ++k) {
          REQUIRE(replica[k].first == now[k].first);
          REQUIRE(identical(replica[k].second, now[k].second));
        }
      } else {
        std::vector<Row> a, b2;
        for (auto& e : replica) a.push_back(e.second);
        for (auto& e : now) b2.push_back(e.second);
        REQUIRE(sub_multiset(a, b2, false));
      }
      REQUIRE(compare_with_sqlite(node, *plan, **view, (*view)->ordered() ? order_columns_of(*plan) : std::vector<int>{}) == "");
    }
  }
}

}  // namespace tandem::test
