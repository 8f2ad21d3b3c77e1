#include "runtime/ivm/operators/join.hpp"

#include <set>

#include "runtime/ivm/operators/downstream.hpp"
#include "runtime/ivm/operators/lookup.hpp"
#include "runtime/query/render.hpp"

namespace tandem::ivm {

JoinOperator::JoinOperator(const Plan& plan) : plan_(plan), n_(plan.occurrences.size()) {
  for (size_t i = 0; i < n_; ++i) table_occurrences_[plan.occurrences[i].table->name].push_back(static_cast<int>(i));
}

// Adds `col = ?` for a join equality when an index lookup finds a superset of the matches;
// false when no row can match (NULL, or a number against a TEXT column without conversion).
bool JoinOperator::add_equality(const Occurrence& looked_up, int column, Affinity comparison, const Value& v,
                                std::string* where, Row* binds) const {
  if (v.is_null()) return false;
  Affinity a = looked_up.table->affinity[static_cast<size_t>(column)];
  if (is_numeric_affinity(comparison)) {
    if (!is_numeric_affinity(a)) return true;  // text converted on the fly: no index use
  } else if (a == Affinity::text && v.is_numeric()) {
    return false;  // a TEXT column never holds a number, and no conversion applies
  }
  *where += (where->empty() ? "" : " AND ") + query::quote_name(looked_up.name) + "." +
            query::quote_name(looked_up.table->columns[static_cast<size_t>(column)]) + " = ?" +
            std::to_string(plan_.params.size() + binds->size() + 1);
  binds->push_back(v);
  return true;
}

// Self-joins: an occurrence of the changed table before the changed one sees the change.
bool JoinOperator::include_for(int occ, int changed_occ) const {
  if (changed_occ < 0) return true;
  const auto& o = plan_.occurrences[static_cast<size_t>(occ)];
  if (o.table->name != plan_.occurrences[static_cast<size_t>(changed_occ)].table->name) return true;
  return occ < changed_occ;
}

bool JoinOperator::local_ok(int occ, const Row& row, JoinState& state) const {
  const auto& o = plan_.occurrences[static_cast<size_t>(occ)];
  if (!o.local_filter) return true;
  state.scratch[static_cast<size_t>(occ)] = &row;
  EvalContext ctx;
  ctx.rows = state.scratch.data();
  return o.local_filter->test(ctx);
}

bool JoinOperator::on_ok(int child, const Row* parent_row, const Row* child_row, JoinState& state) const {
  const auto& o = plan_.occurrences[static_cast<size_t>(child)];
  state.scratch[static_cast<size_t>(o.parent)] = parent_row;
  state.scratch[static_cast<size_t>(child)] = child_row;
  EvalContext ctx;
  ctx.rows = state.scratch.data();
  return o.on->test(ctx);
}

// Rows of occurrence u that join a given parent row.
Status JoinOperator::children_of(const DeltaContext& ctx, int u, const Row& parent_row, bool include_current,
                                 std::vector<Row>* out, JoinState& state) const {
  const auto& o = plan_.occurrences[static_cast<size_t>(u)];
  std::string where;
  Row binds;
  for (const auto& eq : o.equalities) {
    if (!add_equality(o, eq.column, eq.comparison, parent_row[static_cast<size_t>(eq.parent_column)], &where, &binds)) {
      out->clear();
      return Status::Ok();
    }
  }
  return fetch_joined(ctx, u, where, binds, [&](const Row& r) { return on_ok(u, &parent_row, &r, state); },
                      include_current, out, state);
}

// Rows of occurrence u (the parent of `child`) that a given child row joins.
Status JoinOperator::parents_of(const DeltaContext& ctx, int u, int child, const Row& child_row, bool include_current,
                                std::vector<Row>* out, JoinState& state) const {
  const auto& o = plan_.occurrences[static_cast<size_t>(u)];
  const auto& c = plan_.occurrences[static_cast<size_t>(child)];
  std::string where;
  Row binds;
  for (const auto& eq : c.equalities) {
    if (!add_equality(o, eq.parent_column, eq.comparison, child_row[static_cast<size_t>(eq.column)], &where, &binds)) {
      out->clear();
      return Status::Ok();
    }
  }
  return fetch_joined(ctx, u, where, binds, [&](const Row& r) { return on_ok(child, &r, &child_row, state); },
                      include_current, out, state);
}

// Rows of occurrence u matching `where` (its join equalities), its pushed filters and `on`
// (the exact ON condition, checked in C++ on every candidate).
Status JoinOperator::fetch_joined(const DeltaContext& ctx, int u, std::string where, const Row& binds,
                                  const std::function<bool(const Row&)>& on, bool include_current,
                                  std::vector<Row>* out, JoinState& state) const {
  const auto& o = plan_.occurrences[static_cast<size_t>(u)];
  if (!o.local_filter_sql.empty()) where += (where.empty() ? "(" : " AND (") + o.local_filter_sql + ")";
  std::string sql = select_columns(o) + (where.empty() ? "" : " WHERE " + where);
  auto pred = [&](const Row& r) { return local_ok(u, r, state) && on(r); };
  TANDEM_RETURN_IF_ERROR(ctx.lookup->fetch(ctx, sql, binds, *o.table, pred, include_current, true, out));
  std::vector<Row> kept;
  for (auto& r : *out)
    if (pred(r)) kept.push_back(std::move(r));
  *out = std::move(kept);
  return Status::Ok();
}

Status JoinOperator::expand(const DeltaContext& ctx, Tuple& t, std::vector<char>& assigned, int sign, int changed_occ,
                            JoinState& state) const {
  const auto& occs = plan_.occurrences;
  for (size_t ui = 0; ui < n_; ++ui) {
    if (assigned[ui]) continue;
    int u = static_cast<int>(ui);
    const auto& o = occs[ui];
    if (o.parent >= 0 && assigned[static_cast<size_t>(o.parent)]) {
      const Row* parent = t[static_cast<size_t>(o.parent)];
      assigned[ui] = 1;
      Status st;
      if (parent == nullptr) {
        if (o.left_join) {
          t[ui] = nullptr;
          st = expand(ctx, t, assigned, sign, changed_occ, state);
        }
      } else {
        std::vector<Row> rows;
        st = children_of(ctx, u, *parent, include_for(u, changed_occ), &rows, state);
        if (st.ok()) {
          if (rows.empty() && o.left_join) {
            t[ui] = nullptr;
            st = expand(ctx, t, assigned, sign, changed_occ, state);
          }
          for (size_t i = 0; st.ok() && i < rows.size(); ++i) {
            t[ui] = &rows[i];
            st = expand(ctx, t, assigned, sign, changed_occ, state);
          }
        }
      }
      assigned[ui] = 0;
      t[ui] = nullptr;
      return st;
    }
    for (int c : o.children) {
      if (!assigned[static_cast<size_t>(c)] || t[static_cast<size_t>(c)] == nullptr) continue;
      std::vector<Row> rows;
      TANDEM_RETURN_IF_ERROR(
          parents_of(ctx, u, c, *t[static_cast<size_t>(c)], include_for(u, changed_occ), &rows, state));
      assigned[ui] = 1;
      Status st;
      for (size_t i = 0; st.ok() && i < rows.size(); ++i) {
        t[ui] = &rows[i];
        st = expand(ctx, t, assigned, sign, changed_occ, state);
      }
      assigned[ui] = 0;
      t[ui] = nullptr;
      return st;
    }
  }
  ctx.downstream->tuple(ctx, sign, t);
  return Status::Ok();
}

Status JoinOperator::apply(const DeltaContext& ctx, const std::string& table, const Row* old_row, const Row* new_row,
                           JoinState& state) const {
  const std::vector<int>* occs = occurrences_of(table);
  if (!occs) return Status::Ok();
  for (int k : *occs) {
    TANDEM_RETURN_IF_ERROR(plan_.occurrences[static_cast<size_t>(k)].left_join
                               ? left_join_delta(ctx, k, old_row, new_row, state)
                               : inner_delta(ctx, k, old_row, new_row, state));
  }
  return Status::Ok();
}

Status JoinOperator::inner_delta(const DeltaContext& ctx, int k, const Row* old_row, const Row* new_row,
                                 JoinState& state) const {
  Tuple t(n_, nullptr);
  std::vector<char> assigned(n_, 0);
  assigned[static_cast<size_t>(k)] = 1;
  if (old_row && local_ok(k, *old_row, state)) {
    t[static_cast<size_t>(k)] = old_row;
    TANDEM_RETURN_IF_ERROR(expand(ctx, t, assigned, -1, k, state));
  }
  if (new_row && local_ok(k, *new_row, state)) {
    t[static_cast<size_t>(k)] = new_row;
    TANDEM_RETURN_IF_ERROR(expand(ctx, t, assigned, +1, k, state));
  }
  return Status::Ok();
}

Status JoinOperator::left_join_delta(const DeltaContext& ctx, int k, const Row* old_row, const Row* new_row,
                                     JoinState& state) const {
  const auto& o = plan_.occurrences[static_cast<size_t>(k)];
  const TableSchema& pt = *plan_.occurrences[static_cast<size_t>(o.parent)].table;
  bool old_local = old_row && local_ok(k, *old_row, state);
  bool new_local = new_row && local_ok(k, *new_row, state);
  std::vector<Row> parents, more;
  bool include_parent = include_for(o.parent, k);
  if (old_local) TANDEM_RETURN_IF_ERROR(parents_of(ctx, o.parent, k, *old_row, include_parent, &parents, state));
  if (new_local) {
    TANDEM_RETURN_IF_ERROR(parents_of(ctx, o.parent, k, *new_row, include_parent, &more, state));
    std::set<std::string> seen;
    for (const auto& r : parents) seen.insert(pk_key(pt, r));
    for (auto& r : more)
      if (!seen.count(pk_key(pt, r))) parents.push_back(std::move(r));
  }
  const TableSchema& kt = *o.table;
  std::string ko = old_row ? pk_key(kt, *old_row) : std::string();
  std::string kn = new_row ? pk_key(kt, *new_row) : std::string();
  for (const Row& y : parents) {
    bool old_m = old_local && on_ok(k, &y, old_row, state);
    bool new_m = new_local && on_ok(k, &y, new_row, state);
    if (!old_m && !new_m) continue;
    bool others = false;
    if (old_m != new_m) {
      std::vector<Row> partners;
      TANDEM_RETURN_IF_ERROR(children_of(ctx, k, y, false, &partners, state));
      for (const auto& r : partners) {
        std::string key = pk_key(kt, r);
        if ((old_row && key == ko) || (new_row && key == kn)) continue;
        others = true;
        break;
      }
    }
    bool before_nonempty = others || old_m, after_nonempty = others || new_m;
    Tuple t(n_, nullptr);
    std::vector<char> assigned(n_, 0);
    assigned[static_cast<size_t>(o.parent)] = 1;
    assigned[static_cast<size_t>(k)] = 1;
    t[static_cast<size_t>(o.parent)] = &y;
    if (old_m) {
      t[static_cast<size_t>(k)] = old_row;
      TANDEM_RETURN_IF_ERROR(expand(ctx, t, assigned, -1, k, state));
    }
    if (!before_nonempty && after_nonempty) {
      t[static_cast<size_t>(k)] = nullptr;
      TANDEM_RETURN_IF_ERROR(expand(ctx, t, assigned, -1, k, state));
    }
    if (before_nonempty && !after_nonempty) {
      t[static_cast<size_t>(k)] = nullptr;
      TANDEM_RETURN_IF_ERROR(expand(ctx, t, assigned, +1, k, state));
    }
    if (new_m) {
      t[static_cast<size_t>(k)] = new_row;
      TANDEM_RETURN_IF_ERROR(expand(ctx, t, assigned, +1, k, state));
    }
  }
  return Status::Ok();
}

}  // namespace tandem::ivm
