// Shared harness of the IVM tests: a node (a real replicated Store on a temporary file, the
// DeltaJournal its writes feed, and separate connections for views and for the oracle), and
// the comparison of a view with SQLite running the same SQL.
#pragma once

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/ivm/journal.hpp"
#include "runtime/ivm/plan.hpp"
#include "runtime/ivm/view.hpp"
#include "runtime/query/parser.hpp"
#include "runtime/query/render.hpp"
#include "runtime/store/store.hpp"
#include "tests/common/temp_dir.hpp"

namespace tandem::test {

// Number of random workloads: a fixed CI default, or TANDEM_PROPERTY_RUNS.
inline int property_runs(int ci_default) {
  const char* env = std::getenv("TANDEM_PROPERTY_RUNS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
  return ci_default;
}



inline std::string show(const Row& row) {
  std::string s = "(";
  for (size_t i = 0; i < row.size(); ++i) s += (i ? ", " : "") + row[i].to_sql_literal();
  return s + ")";
}
inline bool identical_rows(const std::vector<Row>& a, const std::vector<Row>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!identical(a[i], b[i])) return false;
  return true;
}
inline std::string show(const std::vector<Row>& rows) {
  std::string s;
  for (const auto& r : rows) s += show(r) + "\n";
  return s;
}

// One node: a Store, its journal, and read connections.
class Node {
 public:
  Node(const std::string& dir, const std::string& name, const std::string& schema, const std::vector<std::string>& tables,
       uint8_t site = 1) {
    path_ = dir + "/" + name + ".db";
    StoreOptions options;
    SiteId id{};
    id[15] = site;
    options.site_id = id;
    options.open.synchronous_full = false;
    auto store = Store::open(path_, options);
    INFO(store.status().to_string());
    REQUIRE(store.ok());
    store_ = std::move(store).value();
    auto st = store_->execute_schema(schema);
    INFO(st.to_string());
    REQUIRE(st.ok());
    for (const auto& t : tables) {
      auto r = store_->register_table(t);
      INFO(r.to_string());
      REQUIRE(r.ok());
    }
    journal_ = std::make_unique<ivm::DeltaJournal>();
    journal_->note_version(store_->db_version());
    oracle_ = open_connection();
  }

  std::unique_ptr<Database> open_connection() const {
    OpenOptions o;
    o.create = false;
    o.synchronous_full = false;
    o.cache_size_kib = 2048;
    auto db = Database::open(path_, o);
    INFO(db.status().to_string());
    REQUIRE(db.ok());
    return std::move(db).value();
  }

  // Runs a local write; returns the committed batch (nullptr when nothing changed or the write
  // failed; then `error` says why). Every committed batch goes to the journal first.
  ivm::BatchPtr write(const std::string& sql, Row params = {}, Status* error = nullptr) {
    auto r = store_->write({SqlStatement{sql, std::move(params)}});
    if (!r.ok()) {
      if (error) *error = r.status();
      return nullptr;
    }
    return publish(r->changed, std::move(r->deltas), r->db_version);
  }

  ivm::BatchPtr mutate(const std::vector<worker::Mutation>& m, const std::string& id, Status* error) {
    auto r = store_->mutate(m, id);
    if (!r.ok()) {
      *error = r.status();
      return nullptr;
    }
    *error = Status::Ok();
    return publish(r->changed, std::move(r->deltas), r->db_version);
  }

  ivm::BatchPtr merge(const change::ChangeBatch& batch) {
    auto r = store_->merge(batch);
    INFO(r.status().to_string());
    REQUIRE(r.ok());
    bool changed = !r->deltas.deltas.empty() || r->db_version > journal_->last_version();
    return publish(changed, std::move(r->deltas), r->db_version);
  }

  ivm::BatchPtr publish(bool changed, DeltaBatch deltas, int64_t version) {
    if (!changed || version <= journal_->last_version()) {
      journal_->note_version(version);
      return nullptr;
    }
    deltas.db_version = version;
    auto batch = std::make_shared<const DeltaBatch>(std::move(deltas));
    auto st = journal_->append(batch);
    INFO(st.to_string());
    REQUIRE(st.ok());
    return batch;
  }

  // The oracle: SQLite running the plan's SQL (optionally without LIMIT/OFFSET).
  Status expected(const ivm::Plan& plan, std::vector<Row>* rows, bool without_limit = false) {
    std::string sql = plan.sql;
    if (without_limit) {
      query::Query q = plan.query;
      q.clear_limit();
      q.clear_offset();
      sql = query::render(q);
    }
    rows->clear();
    auto st = oracle_->prepare(sql);
    if (!st.ok()) return st.status();
    // Without LIMIT/OFFSET their parameters are gone from the text.
    for (int i = 0; i < (*st)->parameter_count() && i < static_cast<int>(plan.params.size()); ++i)
      TANDEM_RETURN_IF_ERROR((*st)->bind(i + 1, plan.params[static_cast<size_t>(i)]));
    for (;;) {
      auto has = (*st)->step();
      if (!has.ok()) return has.status();
      if (!*has) break;
      rows->push_back((*st)->row());
    }
    return Status::Ok();
  }

  Store& store() { return *store_; }
  ivm::DeltaJournal& journal() { return *journal_; }
  Database& oracle() { return *oracle_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ivm::DeltaJournal> journal_;
  std::unique_ptr<Database> oracle_;
};

// Value equality for the oracle. `loose` accepts SQLite-equal numbers of another storage class
// (the representative SQLite shows for a group key, DISTINCT row or MIN/MAX among 1 and 1.0
// depends on its scan order) and REAL results within 1e-9 relative (SUM/AVG of REALs depend on
// the order SQLite adds them in).
inline bool value_matches(const Value& a, const Value& b, bool loose) {
  if (identical(a, b)) return true;
  if (!loose) return false;
  if (a.is_numeric() && b.is_numeric()) {
    if (compare_sqlite(a, b) == 0) return true;
    if (a.is_real() && b.is_real()) {
      double x = a.real(), y = b.real();
      return std::fabs(x - y) <= 1e-9 * std::max({1.0, std::fabs(x), std::fabs(y)});
    }
  }
  return false;
}

inline bool row_matches(const Row& a, const Row& b, bool loose) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!value_matches(a[i], b[i], loose)) return false;
  return true;
}

// Every row of `part` matched to a distinct row of `whole`.
inline bool sub_multiset(const std::vector<Row>& part, const std::vector<Row>& whole, bool loose) {
  std::vector<char> used(whole.size(), 0);
  for (const auto& r : part) {
    bool found = false;
    for (size_t i = 0; i < whole.size(); ++i) {
      if (used[i] || !row_matches(r, whole[i], loose)) continue;
      used[i] = 1;
      found = true;
      break;
    }
    if (!found) return false;
  }
  return true;
}

// Compares a view with SQLite. Ordered queries must order by result columns (`order_columns`,
// 0-based, from the plan or given by the caller); only what SQLite's order determines is
// compared: the key sequence, and each tie group as a multiset (a group cut by LIMIT/OFFSET
// as a sub-multiset of the full group).
struct Expected {
  Status status;
  std::vector<Row> full;  // without LIMIT/OFFSET
};

inline Expected expected_of(Node& node, const ivm::Plan& plan) {
  Expected e;
  e.status = node.expected(plan, &e.full, true);
  return e;
}

inline std::string compare_rows(const ivm::Plan& plan, ivm::LiveView& view, const std::vector<int>& order_columns,
                                const Expected& expected);

inline std::string compare_with_sqlite(Node& node, const ivm::Plan& plan, ivm::LiveView& view,
                                       const std::vector<int>& order_columns) {
  return compare_rows(plan, view, order_columns, expected_of(node, plan));
}

inline std::string compare_rows(const ivm::Plan& plan, ivm::LiveView& view, const std::vector<int>& order_columns,
                                const Expected& expected) {
  const std::vector<Row>& full = expected.full;
  const Status& st = expected.status;
  auto err = view.error();
  if (!st.ok()) {
    if (!err) return "SQLite failed (" + st.to_string() + ") but the view did not";
    return "";
  }
  if (err) return "the view reports " + err->to_string() + " but SQLite succeeded";
  bool loose = plan.aggregate || plan.distinct;
  std::vector<Row> got = view.rows();
  bool windowed = plan.limit >= 0 || plan.offset > 0;
  size_t begin = std::min(full.size(), static_cast<size_t>(plan.offset));
  size_t end = plan.limit < 0 ? full.size() : std::min(full.size(), begin + static_cast<size_t>(plan.limit));
  auto describe = [&] {
    return "SQL: " + plan.sql + "\nexpected (all, offset " + std::to_string(plan.offset) + " limit " +
           std::to_string(plan.limit) + "):\n" + show(full) + "got:\n" + show(got);
  };
  if (got.size() != end - begin) return "row count differs\n" + describe();
  if (!plan.ordered()) {
    if (!windowed) {
      if (!sub_multiset(got, full, loose)) return "rows differ\n" + describe();
    } else if (!sub_multiset(got, full, loose)) {
      return "window rows are not rows of the result\n" + describe();
    }
    return "";
  }
  auto key_equal = [&](const Row& a, const Row& b) {
    for (int c : order_columns) {
      const Value& x = a[static_cast<size_t>(c)];
      const Value& y = b[static_cast<size_t>(c)];
      if (compare_sqlite(x, y) != 0 && !(loose && value_matches(x, y, true))) return false;
    }
    return true;
  };
  for (size_t i = 0; i < got.size(); ++i)
    if (!key_equal(got[i], full[begin + i])) return "order differs at position " + std::to_string(i) + "\n" + describe();
  // Tie groups.
  size_t i = 0;
  while (i < full.size()) {
    size_t j = i + 1;
    while (j < full.size() && key_equal(full[i], full[j])) ++j;
    size_t lo = std::max(i, begin), hi = std::min(j, end);
    if (lo < hi) {
      std::vector<Row> group(full.begin() + static_cast<std::ptrdiff_t>(i), full.begin() + static_cast<std::ptrdiff_t>(j));
      std::vector<Row> mine(got.begin() + static_cast<std::ptrdiff_t>(lo - begin), got.begin() + static_cast<std::ptrdiff_t>(hi - begin));
      if (!sub_multiset(mine, group, loose)) return "tie group rows differ at " + std::to_string(lo - begin) + "\n" + describe();
    }
    i = j;
  }
  return "";
}

inline std::shared_ptr<const ivm::Plan> must_bind(Database& db, const std::string& sql, const Row& params = {}) {
  auto q = query::parse(sql);
  INFO(sql << ": " << q.status().to_string());
  REQUIRE(q.ok());
  auto plan = ivm::bind(db, *q, params);
  INFO(sql << ": " << plan.status().to_string());
  REQUIRE(plan.ok());
  return *plan;
}

// The result columns the plan orders by (ORDER BY terms that are result columns).
inline std::vector<int> order_columns_of(const ivm::Plan& plan) {
  if (!plan.order_columns.empty()) return plan.order_columns;
  std::vector<int> cols;
  for (const auto& k : plan.order) {
    int found = -1;
    for (size_t i = 0; i < plan.outputs.size(); ++i)
      if (plan.outputs[i].same_as(k.expr)) { found = static_cast<int>(i); break; }
    REQUIRE(found >= 0);  // the tests order by result columns only
    cols.push_back(found);
  }
  return cols;
}

}  // namespace tandem::test
