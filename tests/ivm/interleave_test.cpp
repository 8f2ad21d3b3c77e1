// Interleavings of writes and lookups: the writer runs ahead while views apply older batches,
// so every lookup a view makes (join partners, window refills, overlay base rows) reads a newer
// database version and must be compensated with the journal. The expected result of every
// version is recorded when that version is current; a lagging view that reaches version V
// must equal exactly that result.
#include <catch2/catch.hpp>

#include <map>

#include "tests/ivm/ivm_test_util.hpp"

namespace tandem::test {
namespace {

const char* kSchema =
    "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, val INTEGER, grp INTEGER, tag TEXT);"
    "CREATE INDEX t_val ON t(val);"
    "CREATE TABLE g(grp INTEGER PRIMARY KEY NOT NULL, name TEXT, weight);";

// Queries that need SQLite while they are maintained.
const std::vector<std::string> kQueries = {
    "SELECT id, val FROM t WHERE val > 20 ORDER BY val, id LIMIT 5",
    "SELECT id, val FROM t WHERE val > 20 ORDER BY val DESC, id LIMIT 3 OFFSET 2",
    "SELECT id, val, tag FROM t ORDER BY tag, val DESC LIMIT 4",
    "SELECT t.id, t.val, g.name FROM t JOIN g ON t.grp = g.grp WHERE t.val > 30",
    "SELECT t.id, g.name, g.weight FROM t LEFT JOIN g ON g.grp = t.grp WHERE t.val < 60",
    "SELECT g.name, count(*), sum(t.val), min(t.val), max(t.tag) FROM g LEFT JOIN t ON t.grp = g.grp GROUP BY g.name",
    "SELECT a.id, b.id FROM t AS a JOIN t AS b ON b.val = a.grp WHERE a.val > 50",
    "SELECT DISTINCT grp FROM t WHERE val BETWEEN 10 AND 80 ORDER BY 1 LIMIT 4",
    "SELECT grp, count(*), avg(val) FROM t GROUP BY grp HAVING count(*) > 1 ORDER BY 2 DESC, 1 LIMIT 3",
    "SELECT grp, min(val), max(tag), max(val) FROM t WHERE val > 5 GROUP BY grp",
    "SELECT min(val), max(val), count(*) FROM t WHERE tag IS NOT NULL",
    "SELECT t.id, t.val, g.name FROM t JOIN g ON t.grp = g.grp WHERE t.val > 20 ORDER BY t.val, t.id LIMIT 4",
    "SELECT t.val, t.id, g.name, g.weight FROM t LEFT JOIN g ON g.grp = t.grp WHERE (g.weight <> 3 OR g.weight IS NULL) ORDER BY t.val DESC, t.id LIMIT 3 OFFSET 1",
};

Value maybe_text(std::mt19937_64& rng, int v) {
  if (rng() % 7 == 0) return Value();
  return Value::Text(std::string(1, static_cast<char>('a' + v % 6)));
}

ivm::BatchPtr random_write(std::mt19937_64& rng, Node& node) {
  auto r = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  Status err;
  switch (r(9)) {
    case 0:
    case 1:
      return node.write("INSERT INTO t(id, val, grp, tag) VALUES (?, ?, ?, ?)",
                        {Value::Integer(1 + r(60)), Value::Integer(r(100)), Value::Integer(r(8)), maybe_text(rng, r(50))}, &err);
    case 2:
    case 3: return node.write("UPDATE t SET val = ? WHERE id = ?", {Value::Integer(r(100)), Value::Integer(1 + r(60))}, &err);
    case 4: return node.write("UPDATE t SET grp = ?, tag = ? WHERE id = ?", {Value::Integer(r(8)), maybe_text(rng, r(50)), Value::Integer(1 + r(60))}, &err);
    case 5: return node.write("DELETE FROM t WHERE id = ?", {Value::Integer(1 + r(60))}, &err);
    case 6:
      return node.write("INSERT OR REPLACE INTO g(grp, name, weight) VALUES (?, ?, ?)",
                        {Value::Integer(r(8)), Value::Text("n" + std::to_string(r(4))), Value::Integer(r(5))}, &err);
    case 7: return node.write("DELETE FROM g WHERE grp = ?", {Value::Integer(r(8))}, &err);
    default: {
      auto res = node.store().write({{"UPDATE t SET val = val + 7 WHERE grp = ?", {Value::Integer(r(8))}},
                                     {"DELETE FROM t WHERE val > ?", {Value::Integer(90 + r(10))}}});
      if (!res.ok()) return nullptr;
      return node.publish(res->changed, std::move(res->deltas), res->db_version);
    }
  }
}

struct Lagging {
  std::shared_ptr<const ivm::Plan> plan;
  std::unique_ptr<Database> db;
  std::unique_ptr<ivm::LiveView> view;
  std::vector<int> order_columns;
  size_t next = 0;  // index into the batch list
};

void run(uint64_t seed) {
  std::mt19937_64 rng(seed);
  TempDir dir;
  Node node(dir.path, "n", kSchema, {"t", "g"});
  for (int i = 0; i < 40; ++i) random_write(rng, node);
  std::vector<ivm::BatchPtr> batches;
  std::map<int64_t, std::vector<Expected>> expected;  // version -> per query
  std::vector<Lagging> views;
  int64_t start_version = node.store().db_version();
  for (const auto& sql : kQueries) {
    Lagging l;
    l.db = node.open_connection();
    l.plan = must_bind(*l.db, sql);
    ivm::ViewOptions options;
    options.window_boundary = 1 + seed % 3;
    options.extreme_buffer = 1 + seed % 2;
    auto v = ivm::LiveView::create(*l.db, &node.journal(), l.plan, options);
    INFO(sql << ": " << v.status().to_string());
    REQUIRE(v.ok());
    l.view = std::move(v).value();
    l.order_columns = order_columns_of(*l.plan);
    views.push_back(std::move(l));
  }
  auto record = [&](int64_t version) {
    auto& e = expected[version];
    for (auto& l : views) e.push_back(expected_of(node, *l.plan));
  };
  record(start_version);
  for (int step = 0; step < 120; ++step) {
    // The writer runs ahead by a few commits...
    int writes = 1 + static_cast<int>(rng() % 4);
    for (int w = 0; w < writes; ++w) {
      auto b = random_write(rng, node);
      if (b) {
        batches.push_back(b);
        record(b->db_version);
      }
    }
    // ...while each view catches up by a random number of batches.
    for (size_t i = 0; i < views.size(); ++i) {
      auto& l = views[i];
      size_t n = rng() % (batches.size() - l.next + 1);
      if (step % 10 == 9) n = batches.size() - l.next;
      for (size_t k = 0; k < n; ++k, ++l.next) {
        Status st = l.view->apply(batches[l.next]);
        INFO("seed " << seed << " step " << step << " " << kQueries[i] << ": " << st.to_string());
        if (st.code() == StatusCode::resource_exhausted) {
          // Fell off the journal: rehydrate at the current version and skip to it.
          REQUIRE(l.view->rehydrate().ok());
          while (l.next < batches.size() && batches[l.next]->db_version <= l.view->applied_version()) ++l.next;
          break;
        }
        REQUIRE(st.ok());
      }
      int64_t v = l.view->applied_version();
      auto it = expected.find(v);
      REQUIRE(it != expected.end());
      std::string diff = compare_rows(*l.plan, *l.view, l.order_columns, it->second[i]);
      INFO("seed " << seed << " step " << step << " at version " << v << " (writer at " << node.store().db_version()
                   << ")\n" << kQueries[i]);
      REQUIRE(diff == "");
    }
  }
  // The workload must have exercised compensation, or this test proves nothing.
  int64_t compensated = 0, lookups = 0;
  for (auto& l : views) {
    compensated += l.view->compensated_lookup_count();
    lookups += l.view->lookup_count();
  }
  INFO("lookups " << lookups << ", compensated " << compensated);
  REQUIRE(compensated > 50);
}

}  // namespace

TEST_CASE("lagging views stay exact while the writer runs ahead (journal compensation)", "[ivm][interleave][property]") {
  int runs = property_runs(6);
  for (int r = 0; r < runs; ++r) {
    DYNAMIC_SECTION("seed " << r) { run(7000 + static_cast<uint64_t>(r)); }
  }
}

TEST_CASE("a view that falls off a bounded journal rehydrates and is exact again", "[ivm][interleave]") {
  // A journal bound of a few kilobytes drops batches that lagging views still need.
  std::mt19937_64 rng(42);
  TempDir dir;
  Node node(dir.path, "n", kSchema, {"t", "g"});
  ivm::DeltaJournal small(4096);
  for (int i = 0; i < 20; ++i) random_write(rng, node);
  small.note_version(node.store().db_version());
  auto db = node.open_connection();
  auto plan = must_bind(*db, kQueries[3]);
  auto view = ivm::LiveView::create(*db, &small, plan);
  REQUIRE(view.ok());
  std::vector<ivm::BatchPtr> batches;
  for (int i = 0; i < 200; ++i) {
    auto b = random_write(rng, node);
    if (b) {
      REQUIRE(small.append(b).ok());
      batches.push_back(b);
    }
  }
  Status st = (*view)->apply(batches.front());
  REQUIRE(st.code() == StatusCode::resource_exhausted);
  REQUIRE((*view)->rehydrate().ok());
  REQUIRE((*view)->applied_version() == node.store().db_version());
  REQUIRE(compare_with_sqlite(node, *plan, **view, {}) == "");
}

}  // namespace tandem::test
