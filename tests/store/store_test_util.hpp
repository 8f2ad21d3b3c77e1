// Helpers shared by the store tests: opening stores in memory, dumping tables, building
// change batches by hand.
#pragma once

#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/store.hpp"

namespace tandem::test {

inline SiteId site_number(uint8_t n) {
  SiteId s{};
  s[15] = n;
  return s;
}

// A store on a private in-memory database, with `schema` run and every table in `crr`
// registered. Fails the test on error.
inline std::unique_ptr<Store> memory_store(uint8_t site, const std::string& schema, const std::vector<std::string>& crr) {
  StoreOptions options;
  options.site_id = site_number(site);
  auto store = Store::open(":memory:", options);
  REQUIRE(store.ok());
  auto& s = *store;
  auto st = s->execute_schema(schema);
  INFO(st.to_string());
  REQUIRE(st.ok());
  for (const auto& t : crr) {
    auto r = s->register_table(t);
    INFO(r.to_string());
    REQUIRE(r.ok());
  }
  return std::move(store).value();
}

// Every row of `table`, ordered by its primary key (SQLite's order).
inline std::vector<Row> dump(Store& store, const std::string& table) {
  const TableInfo* t = store.table(table);
  REQUIRE(t);
  std::string order;
  for (int c : t->pk_columns) order += (order.empty() ? "" : ", ") + quote_identifier(t->columns[static_cast<size_t>(c)].name);
  auto r = store.query("SELECT * FROM " + t->quoted_name() + " ORDER BY " + order);
  INFO(r.status().to_string());
  REQUIRE(r.ok());
  return r->rows;
}

inline std::string render(const std::vector<Row>& rows) {
  std::string out;
  for (const auto& row : rows) {
    out += "(";
    for (size_t i = 0; i < row.size(); ++i) out += (i ? ", " : "") + row[i].to_sql_literal();
    out += ")\n";
  }
  return out;
}

inline bool same_rows(const std::vector<Row>& a, const std::vector<Row>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!identical(a[i], b[i])) return false;
  return true;
}

inline CommitResult exec(Store& store, const std::string& sql, Row params = {}) {
  auto r = store.write({SqlStatement{sql, std::move(params)}});
  INFO(sql << ": " << r.status().to_string());
  REQUIRE(r.ok());
  return std::move(r).value();
}

// Moves every change `from` holds that `to` has not received from it (by `to`'s cursor),
// leaving out `to`'s own, and merges them into `to`: the scenario format's sync step.
inline MergeResult sync(Store& from, Store& to) {
  auto cursor = to.peer(from.site_id());
  REQUIRE(cursor.ok());
  auto batch = from.changes_since(cursor->received, to.site_id());
  REQUIRE(batch.ok());
  auto merged = to.merge(*batch);
  INFO(merged.status().to_string());
  REQUIRE(merged.ok());
  return std::move(merged).value();
}

// A hand-built change.
inline change::Change make_change(const std::string& table, Row pk, const std::string& cid, const Value& val, int64_t col_version,
                                  int64_t cl, uint8_t site, int64_t db_version = 1, int64_t seq = 0) {
  change::Change ch;
  ch.set_table(table);
  to_proto(pk, ch.mutable_pk());
  ch.set_cid(cid);
  to_proto(val, ch.mutable_val());
  ch.set_col_version(col_version);
  ch.set_db_version(db_version);
  ch.set_site_id(site_bytes(site_number(site)));
  ch.set_cl(cl);
  ch.set_seq(seq);
  return ch;
}

inline change::ChangeBatch make_batch(uint8_t sender, std::vector<change::Change> changes, int64_t to_version = 1) {
  change::ChangeBatch b;
  b.set_sender_site_id(site_bytes(site_number(sender)));
  b.set_from_db_version(0);
  b.set_to_db_version(to_version);
  b.set_complete(true);
  for (auto& c : changes) *b.add_changes() = std::move(c);
  return b;
}

// Number of random workloads per property test: a CI default, more with TANDEM_PROPERTY_RUNS.
inline int property_runs(int ci_default) {
  const char* env = std::getenv("TANDEM_PROPERTY_RUNS");
  if (env && std::atoi(env) > 0) return std::atoi(env);
  return ci_default;
}

}  // namespace tandem::test
