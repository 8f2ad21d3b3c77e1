#include "runtime/ivm/operators/lookup.hpp"

#include <unordered_map>

#include "runtime/query/render.hpp"

namespace tandem::ivm {

std::string select_columns(const Occurrence& o) {
  std::string s = "SELECT ";
  for (size_t c = 0; c < o.table->columns.size(); ++c) {
    if (c) s += ", ";
    s += query::quote_name(o.name) + "." + query::quote_name(o.table->columns[c]);
  }
  s += " FROM " + query::quote_name(o.table->name) + " AS " + query::quote_name(o.name);
  return s;
}

Status Lookup::begin_at_hydration() {
  TANDEM_RETURN_IF_ERROR(db_.begin_deferred());
  in_read_ = true;
  auto v = read_db_version();
  if (!v.ok()) { end(); return v.status(); }
  read_version_ = *v;
  comp_batches_.clear();
  return Status::Ok();
}

Result<int64_t> Lookup::read_db_version() {
  auto st = db_.cached("SELECT value FROM tandem_meta WHERE key = 'db_version'");
  if (!st.ok()) return st.status().with_context("reading tandem_meta.db_version");
  TANDEM_ASSIGN_OR_RETURN(bool has, (*st)->step());
  return has ? (*st)->column_int64(0) : int64_t{0};
}

Status Lookup::ensure(const DeltaContext& ctx) {
  if (in_read_) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(db_.begin_deferred());
  in_read_ = true;
  auto v = read_db_version();
  if (!v.ok()) { end(); return v.status(); }
  read_version_ = *v;
  int64_t position = ctx.position();
  if (read_version_ < position) {
    end();
    return Status::Internal("view read db_version " + std::to_string(read_version_) + " older than its position " +
                            std::to_string(position));
  }
  comp_batches_.clear();
  if (read_version_ > position) {
    if (!journal_) { end(); return Status::Internal("the writer ran ahead and the view has no journal"); }
    auto r = journal_->range(position, read_version_);
    if (!r.ok()) { end(); return r.status(); }
    comp_batches_ = std::move(r).value();
  }
  return Status::Ok();
}

void Lookup::end() {
  if (in_read_) db_.rollback();
  in_read_ = false;
  comp_batches_.clear();
}

size_t Lookup::later_delta_count(const DeltaContext& ctx, const std::string& table) const {
  size_t n = 0;
  for_each_later_delta(ctx, table, false, [&](const RowDelta&) { ++n; });
  if (ctx.overlay) {
    auto it = ctx.overlay->find(table);
    if (it != ctx.overlay->end()) n += it->second.graph.size();
  }
  return n + 1;
}

Status Lookup::fetch(const DeltaContext& ctx, const std::string& sql, const Row& binds, const TableSchema& t,
                     const std::function<bool(const Row&)>& pred, bool include_current, bool overrides,
                     std::vector<Row>* out, int64_t* sql_rows, Row* last_raw) {
  TANDEM_RETURN_IF_ERROR(ensure(ctx));
  ++lookups_;
  out->clear();
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db_.cached(sql));
    int k = 0;
    for (size_t i = 0; i < params_.size() && k < st->parameter_count(); ++i, ++k)
      TANDEM_RETURN_IF_ERROR(st->bind(k + 1, params_[i]));
    k = static_cast<int>(params_.size());
    for (const auto& v : binds) TANDEM_RETURN_IF_ERROR(st->bind(++k, v));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool has, st->step());
      if (!has) break;
      out->push_back(st->row());
    }
  }
  if (sql_rows) *sql_rows = static_cast<int64_t>(out->size());
  if (last_raw && !out->empty()) *last_raw = out->back();
  // Compensation: the state at our position of every key touched after it.
  std::unordered_map<std::string, std::optional<Row>> state;
  for_each_later_delta(ctx, t.name, include_current, [&](const RowDelta& d) {
    std::string ko, kn;
    if (d.old_row) {
      ko = pk_key(t, *d.old_row);
      state.emplace(ko, *d.old_row);
    }
    if (d.new_row) {
      kn = pk_key(t, *d.new_row);
      if (kn != ko) state.emplace(kn, std::nullopt);
    }
  });
  if (!state.empty()) ++compensated_;
  if (overrides && ctx.overlay) {
    auto it = ctx.overlay->find(t.name);
    if (it != ctx.overlay->end())
      for (const auto& [k, row] : it->second.graph) state[k] = row;
    const OverlayDelta* od = ctx.overlay_delta;
    if (od && od->table == t.name && !include_current) state[od->key] = od->old;
  }
  if (state.empty()) return Status::Ok();
  std::vector<Row> kept;
  kept.reserve(out->size());
  for (auto& r : *out)
    if (!state.count(pk_key(t, r))) kept.push_back(std::move(r));
  for (auto& [k, row] : state)
    if (row && pred(*row)) kept.push_back(*row);
  *out = std::move(kept);
  return Status::Ok();
}

Result<std::optional<Row>> Lookup::base_row(const DeltaContext& ctx, const TableSchema& t, const Row& pk_values) {
  std::string sql = "SELECT ";
  for (size_t c = 0; c < t.columns.size(); ++c) sql += (c ? ", " : "") + query::quote_name(t.columns[c]);
  sql += " FROM " + query::quote_name(t.name) + " WHERE ";
  Row binds;
  for (size_t i = 0; i < t.pk.size(); ++i) {
    sql += (i ? " AND " : "") + query::quote_name(t.columns[static_cast<size_t>(t.pk[i])]) + " = ?" +
           std::to_string(params_.size() + i + 1);
    binds.push_back(pk_values[i]);
  }
  std::string key;
  for (const auto& v : pk_values) encode_canonical(v, &key);
  auto pred = [&](const Row& r) { return pk_key(t, r) == key; };
  std::vector<Row> rows;
  TANDEM_RETURN_IF_ERROR(fetch(ctx, sql, binds, t, pred, true, false, &rows));
  for (auto& r : rows)
    if (pk_key(t, r) == key) return std::optional<Row>(std::move(r));
  return std::optional<Row>();
}

Result<Value> Lookup::evaluate(const DeltaContext& ctx, const std::string& expression) {
  TANDEM_RETURN_IF_ERROR(ensure(ctx));
  TANDEM_ASSIGN_OR_RETURN(auto st, db_.cached("SELECT " + expression));
  TANDEM_ASSIGN_OR_RETURN(bool has, st->step());
  if (!has) return Value();
  return st->column(0);
}

}  // namespace tandem::ivm
