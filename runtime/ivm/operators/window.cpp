#include "runtime/ivm/operators/window.hpp"

#include <algorithm>

#include "runtime/ivm/operators/downstream.hpp"
#include "runtime/ivm/operators/lookup.hpp"
#include "runtime/query/render.hpp"

namespace tandem::ivm {

Status WindowOperator::apply(const DeltaContext& ctx, ResultStore& result, const JoinOperator& join,
                             JoinState& js) const {
  const Plan& p = plan_;
  size_t keep = static_cast<size_t>(p.offset + p.limit) + 3 * options_.window_boundary;
  result.trim(keep);
  if (!result.complete() && result.held() < static_cast<size_t>(p.offset + p.limit))
    return refill(ctx, result, join, js);
  return Status::Ok();
}

Status WindowOperator::refill(const DeltaContext& ctx, ResultStore& result, const JoinOperator& join,
                              JoinState& js) const {
  if (plan_.occurrences.size() > 1) return refill_join(ctx, result, join, js);
  return refill_single(ctx, result);
}

std::string WindowOperator::order_limit_sql(size_t limit) const {
  const Plan& p = plan_;
  const Occurrence& o = p.occurrences[0];
  const TableSchema& t = *o.table;
  std::string sql = " ORDER BY ";
  for (size_t i = 0; i < p.order_sql.size(); ++i) {
    // A constant key orders nothing, and a bare integer would read as a column ordinal.
    if (p.order[i].expr.occurrences() == 0) continue;
    sql += p.order_sql[i] + (p.order[i].descending ? " DESC, " : ", ");
  }
  for (size_t i = 0; i < t.pk.size(); ++i)
    sql += (i ? ", " : "") + query::quote_name(o.name) + "." + query::quote_name(t.columns[static_cast<size_t>(t.pk[i])]);
  return sql + " LIMIT " + std::to_string(limit);
}

Status WindowOperator::refill_single(const DeltaContext& ctx, ResultStore& result) const {
  const Plan& p = plan_;
  size_t want = static_cast<size_t>(p.offset + p.limit) + options_.window_boundary;
  if (result.complete() || result.held() >= static_cast<size_t>(p.offset + p.limit)) return Status::Ok();
  const Occurrence& o = p.occurrences[0];
  const TableSchema& t = *o.table;
  for (int round = 0; round < 64 && !result.complete() && result.held() < want; ++round) {
    size_t need = want - result.held();
    const Entry* last = result.last();
    Row boundary = last ? last->order : Row();
    std::string where = p.where_sql.empty() ? "" : "(" + p.where_sql + ")";
    Row binds;
    if (last) {
      std::string after = after_sql(boundary, 0, &binds);
      where += (where.empty() ? "" : " AND ") + std::string("(") + after + ")";
    }
    size_t extra = ctx.lookup->later_delta_count(ctx, t.name);
    size_t fetch_n = need + extra;
    std::string sql = select_columns(o) + (where.empty() ? "" : " WHERE " + where) + order_limit_sql(fetch_n);
    const EntryLess less = result.less();
    Entry bound{"", {}, boundary};
    auto pred = [&](const Row& r) {
      const Row* rows[1] = {&r};
      EvalContext ectx;
      ectx.rows = rows;
      if (p.residual_where && !p.residual_where->test(ectx)) return false;
      if (o.local_filter && !o.local_filter->test(ectx)) return false;
      if (!last) return true;
      Entry e{"", {}, order_of(r)};
      return less(&bound, &e);
    };
    std::vector<Row> rows;
    int64_t sql_rows = 0;
    TANDEM_RETURN_IF_ERROR(ctx.lookup->fetch(ctx, sql, binds, t, pred, true, true, &rows, &sql_rows));
    std::vector<Entry> entries;
    for (auto& r : rows) {
      if (!pred(r)) continue;
      Entry e;
      e.order = order_of(r);
      entries.push_back(std::move(e));
      entries.back().row.swap(r);
    }
    std::sort(entries.begin(), entries.end(), [&](const Entry& a, const Entry& b) { return less(&a, &b); });
    bool exhausted = sql_rows < static_cast<int64_t>(fetch_n);
    bool complete = exhausted ? entries.size() <= need : entries.size() < need;
    if (entries.size() > need) entries.resize(need);
    // Refilled rows are known to be inside the prefix: insert them bypassing admits().
    bool saved = result.complete();
    result.set_complete(true);
    for (auto& e : entries) {
      Tuple tuple{&e.row};
      ctx.downstream->tuple(ctx, +1, tuple);
    }
    result.set_complete(saved);
    if (complete) result.set_complete(true);
    if (entries.empty()) break;
  }
  return Status::Ok();
}

Status WindowOperator::refill_join(const DeltaContext& ctx, ResultStore& result, const JoinOperator& join,
                                   JoinState& js) const {
  const Plan& p = plan_;
  const size_t n = p.occurrences.size();
  size_t want = static_cast<size_t>(p.offset + p.limit) + options_.window_boundary;
  if (result.complete() || result.held() >= static_cast<size_t>(p.offset + p.limit)) return Status::Ok();
  const Occurrence& o = p.occurrences[0];
  const TableSchema& t = *o.table;
  const size_t nroot = p.order.size() + t.pk.size();
  const EntryLess less = result.less();
  const Entry* last = result.last();
  const Row boundary = last ? last->order : Row();  // the last held tuple
  Row cursor(boundary.begin(), boundary.begin() + static_cast<std::ptrdiff_t>(std::min(nroot, boundary.size())));
  bool inclusive = last != nullptr;  // the boundary's root row may have more tuples after it
  bool have_cursor = last != nullptr;
  std::vector<Entry> found;
  bool exhausted = false;
  size_t fetch_n = want - result.held() + 1;
  for (int round = 0; round < 256 && !exhausted; ++round) {
    size_t need = want - result.held();
    if (found.size() >= need) break;
    std::string where = o.local_filter_sql.empty() ? "" : "(" + o.local_filter_sql + ")";
    Row binds;
    if (have_cursor) where += (where.empty() ? "(" : " AND (") + after_sql(cursor, 0, &binds, inclusive) + ")";
    size_t limit = fetch_n + ctx.lookup->later_delta_count(ctx, t.name);
    std::string sql = select_columns(o) + (where.empty() ? "" : " WHERE " + where) + order_limit_sql(limit);
    Entry cursor_entry{"", {}, cursor};
    auto pred = [&](const Row& r) {
      if (!join.local_ok(0, r, js)) return false;
      if (!have_cursor) return true;
      Entry e{"", {}, order_of(r)};
      return inclusive ? !less(&e, &cursor_entry) : less(&cursor_entry, &e);
    };
    std::vector<Row> rows;
    Row last_raw;
    int64_t sql_rows = 0;
    TANDEM_RETURN_IF_ERROR(ctx.lookup->fetch(ctx, sql, binds, t, pred, true, true, &rows, &sql_rows, &last_raw));
    exhausted = sql_rows < static_cast<int64_t>(limit);
    std::vector<std::pair<Row, Row>> roots;  // (order, row)
    for (auto& r : rows)
      if (pred(r)) roots.emplace_back(order_of(r), std::move(r));
    std::sort(roots.begin(), roots.end(), [&](const auto& a, const auto& b) {
      Entry x{"", {}, a.first}, y{"", {}, b.first};
      return less(&x, &y);
    });
    // Root rows at our position that sort before SQLite's last row are all here.
    size_t trusted = roots.size();
    if (!exhausted) {
      Entry last_entry{"", {}, order_of(last_raw)};
      trusted = 0;
      while (trusted < roots.size()) {
        Entry e{"", {}, roots[trusted].first};
        if (!less(&e, &last_entry)) break;
        ++trusted;
      }
      if (trusted == 0) {
        fetch_n *= 4;
        continue;
      }
    }
    for (size_t i = 0; i < trusted; ++i) {
      std::vector<Entry> tuples;
      DeltaContext gather = ctx;
      gather.collect = &tuples;
      Tuple tuple(n, nullptr);
      std::vector<char> assigned(n, 0);
      assigned[0] = 1;
      tuple[0] = &roots[i].second;
      TANDEM_RETURN_IF_ERROR(join.expand(gather, tuple, assigned, +1, -1, js));
      Entry bound{last ? last->key : std::string(), {}, boundary};
      for (auto& e : tuples)
        if (!last || less(&bound, &e)) found.push_back(std::move(e));
      cursor = roots[i].first;
      have_cursor = true;
      inclusive = false;
      if (found.size() >= need) break;
    }
    if (trusted < roots.size() || found.size() >= need) exhausted = false;
  }
  std::sort(found.begin(), found.end(), [&](const Entry& a, const Entry& b) { return less(&a, &b); });
  size_t need = want - result.held();
  bool complete = exhausted && found.size() <= need;
  if (found.size() > need) found.resize(need);
  for (auto& e : found) result.upsert(std::move(e.key), std::move(e.row), std::move(e.order));
  if (complete) result.set_complete(true);
  return Status::Ok();
}

Row WindowOperator::order_of(const Row& r) const {
  const Plan& p = plan_;
  const Row* rows[1] = {&r};
  EvalContext ectx;
  ectx.rows = rows;
  Row order;
  for (const auto& k : p.order) order.push_back(k.expr.eval(ectx));
  for (int c : p.occurrences[0].table->pk) order.push_back(r[static_cast<size_t>(c)]);
  return order;
}

std::string WindowOperator::after_sql(const Row& boundary, size_t i, Row* binds, bool inclusive) const {
  const Plan& p = plan_;
  const Occurrence& o = p.occurrences[0];
  size_t nkeys = p.order.size();
  std::string expr;
  bool desc = false;
  if (i < nkeys) {
    expr = "(" + p.order_sql[i] + ")";
    desc = p.order[i].descending;
  } else {
    expr = query::quote_name(o.name) + "." + query::quote_name(o.table->columns[static_cast<size_t>(o.table->pk[i - nkeys])]);
  }
  const Value& b = boundary[i];
  auto param = [&](const Value& v) {
    binds->push_back(v);
    return "?" + std::to_string(p.params.size() + binds->size());
  };
  std::string after, tie;
  if (b.is_null()) {
    after = desc ? "0" : expr + " IS NOT NULL";
    tie = expr + " IS NULL";
  } else {
    std::string ph = param(b);
    after = desc ? "(" + expr + " < " + ph + " OR " + expr + " IS NULL)" : expr + " > " + ph;
    tie = expr + " = " + ph;
  }
  if (i + 1 == boundary.size()) return inclusive ? "(" + after + " OR " + tie + ")" : after;
  return after + " OR (" + tie + " AND (" + after_sql(boundary, i + 1, binds, inclusive) + "))";
}

}  // namespace tandem::ivm
