#include "runtime/ivm/operators/aggregate.hpp"

#include <cmath>

#include "runtime/ivm/operators/lookup.hpp"

namespace tandem::ivm {

void RealSum::add(double v) {
  double t = sum + v;
  if (std::fabs(sum) >= std::fabs(v)) comp += (sum - t) + v;
  else comp += (v - t) + sum;
  sum = t;
}

AggregateOperator::AggregateOperator(const Plan& plan, const ViewOptions& options)
    : plan_(plan), options_(options), bounded_extremes_(plan.aggregate && plan.occurrences.size() == 1) {}

Group& AggregateOperator::ensure_group(const Row& key_values, AggregateState& state) const {
  std::string key;
  for (const auto& v : key_values) encode_canonical(v, &key);
  auto it = state.groups.find(key);
  if (it != state.groups.end()) return it->second;
  Group& g = state.groups[key];
  g.key = key;
  g.key_values = key_values;
  g.accs.resize(plan_.aggregates.size());
  return g;
}

void AggregateOperator::touch_global_group(AggregateState& state) const {
  Group& g = ensure_group(Row{}, state);
  if (!g.dirty) {
    g.dirty = true;
    state.dirty.push_back(g.key);
  }
}

void AggregateOperator::apply(const DeltaContext& /*ctx: refills wait for flush*/, int sign, const EvalContext& tuple,
                              AggregateState& state) const {
  const Plan& p = plan_;
  Row key_values;
  key_values.reserve(p.group_keys.size());
  for (const auto& k : p.group_keys) key_values.push_back(k.eval(tuple));
  Group& g = ensure_group(key_values, state);
  g.count += sign;
  if (!p.group_keys.empty()) {
    std::string exact;
    for (const auto& v : key_values) encode_identical(v, &exact);
    auto& var = g.variants[exact];
    if (var.second == 0) var.first = key_values;
    var.second += sign;
    if (var.second <= 0) g.variants.erase(exact);
  }
  for (size_t i = 0; i < p.aggregates.size(); ++i) {
    const auto& spec = p.aggregates[i];
    if (spec.func == AggregateSpec::Func::count_star) continue;
    Value v = spec.argument->eval(tuple);
    if (v.is_null()) continue;
    Accumulator& a = g.accs[i];
    a.count += sign;
    switch (spec.func) {
      case AggregateSpec::Func::count: break;
      case AggregateSpec::Func::sum:
      case AggregateSpec::Func::avg: {
        // sqlite3_value_numeric_type: TEXT that is a pure number counts as that number.
        Value n = v;
        if (n.is_text()) apply_comparison_affinity(n, Affinity::numeric);
        if (n.is_integer()) a.int_sum += sign > 0 ? int128(n.integer()) : -int128(n.integer());
        else a.non_integer += sign;
        a.real_sum.add(sign > 0 ? real_value(n) : -real_value(n));
        break;
      }
      case AggregateSpec::Func::min:
      case AggregateSpec::Func::max: {
        bool is_min = spec.func == AggregateSpec::Func::min;
        auto it = a.values.find(v);
        if (sign < 0) {
          if (it != a.values.end() && --it->second <= 0) a.values.erase(it);
          break;
        }
        bool take = a.complete;
        if (!take && !a.values.empty()) {
          int c = compare_sqlite(v, is_min ? a.values.rbegin()->first : a.values.begin()->first);
          take = is_min ? c <= 0 : c >= 0;
        }
        if (!take) break;
        if (it == a.values.end()) a.values.emplace(v, 1);
        else ++it->second;
        if (bounded_extremes_ && a.values.size() > 2 * options_.extreme_buffer) {
          while (a.values.size() > options_.extreme_buffer)
            a.values.erase(is_min ? std::prev(a.values.end()) : a.values.begin());
          a.complete = false;
        }
        break;
      }
      default: break;
    }
  }
  if (!g.dirty) {
    g.dirty = true;
    state.dirty.push_back(g.key);
  }
}

Status AggregateOperator::flush(const DeltaContext& ctx, AggregateState& state, ResultStore& result) const {
  const Plan& p = plan_;
  const bool ordered = internally_ordered(p);
  for (const auto& key : state.dirty) {
    auto it = state.groups.find(key);
    if (it == state.groups.end()) continue;
    Group& g = it->second;
    g.dirty = false;
    if (g.count > 0 || p.group_keys.empty()) {
      for (size_t i = 0; i < p.aggregates.size(); ++i) {
        Accumulator& a = g.accs[i];
        if (a.values.empty() && !a.complete && a.count > 0) {
          Status st = refill_extreme(ctx, g, i);
          if (!st.ok()) {
            state.dirty.clear();
            return st;
          }
        }
      }
    }
    bool was_overflow = g.overflow;
    if (g.count <= 0 && !p.group_keys.empty()) {
      if (was_overflow) --state.overflow_groups;
      result.erase(key);
      state.groups.erase(it);
      continue;
    }
    if (!g.variants.empty()) g.key_values = g.variants.begin()->second.first;
    Row aggs;
    aggs.reserve(p.aggregates.size());
    bool overflow = false;
    for (size_t i = 0; i < p.aggregates.size(); ++i) {
      const Accumulator& a = g.accs[i];
      switch (p.aggregates[i].func) {
        case AggregateSpec::Func::count_star: aggs.push_back(Value::Integer(g.count)); break;
        case AggregateSpec::Func::count: aggs.push_back(Value::Integer(a.count)); break;
        case AggregateSpec::Func::sum:
          if (a.count <= 0) aggs.push_back(Value());
          else if (a.non_integer > 0) aggs.push_back(Value::Real(a.real_sum.value()));
          else if (a.int_sum > int128(INT64_MAX) || a.int_sum < int128(INT64_MIN)) {
            overflow = true;
            aggs.push_back(Value());
          } else {
            aggs.push_back(Value::Integer(static_cast<int64_t>(a.int_sum)));
          }
          break;
        case AggregateSpec::Func::avg:
          if (a.count <= 0) aggs.push_back(Value());
          else aggs.push_back(Value::Real(avg_value(a)));
          break;
        case AggregateSpec::Func::min:
          aggs.push_back(a.values.empty() ? Value() : a.values.begin()->first);
          break;
        case AggregateSpec::Func::max:
          aggs.push_back(a.values.empty() ? Value() : a.values.rbegin()->first);
          break;
      }
    }
    if (overflow != was_overflow) state.overflow_groups += overflow ? 1 : -1;
    g.overflow = overflow;
    EvalContext ectx;
    ectx.group_keys = g.key_values.data();
    ectx.aggregates = aggs.data();
    if (p.having && !p.having->test(ectx)) {
      result.erase(key);
      continue;
    }
    Row row;
    row.reserve(p.outputs.size());
    for (const auto& e : p.outputs) row.push_back(e.eval(ectx));
    Row order;
    if (ordered) {
      for (const auto& k : p.order) order.push_back(k.expr.eval(ectx));
      for (const auto& v : g.key_values) order.push_back(v);
    }
    const Entry* cur = result.find(key);
    if (cur && identical(cur->row, row) && (!ordered || identical(cur->order, order))) continue;
    result.upsert(key, std::move(row), std::move(order));
  }
  state.dirty.clear();
  return Status::Ok();
}

// Reads the most extreme inputs of one group's MIN/MAX from SQLite (single-table queries).
Status AggregateOperator::refill_extreme(const DeltaContext& ctx, Group& g, size_t i) const {
  const Plan& p = plan_;
  const Occurrence& o = p.occurrences[0];
  const TableSchema& t = *o.table;
  const AggregateSpec& spec = p.aggregates[i];
  Accumulator& a = g.accs[i];
  bool is_min = spec.func == AggregateSpec::Func::min;
  std::string where = p.where_sql.empty() ? "" : "(" + p.where_sql + ")";
  Row binds;
  auto add = [&](const std::string& cond) { where += (where.empty() ? "" : " AND ") + cond; };
  for (size_t k = 0; k < p.group_keys.size(); ++k) {
    binds.push_back(g.key_values[k]);
    add("(" + p.group_sql[k] + ") IS ?" + std::to_string(p.params.size() + binds.size()));
  }
  add("(" + spec.argument_sql + ") IS NOT NULL");
  auto pred = [&](const Row& r) {
    const Row* rows[1] = {&r};
    EvalContext ectx;
    ectx.rows = rows;
    if (p.residual_where && !p.residual_where->test(ectx)) return false;
    if (o.local_filter && !o.local_filter->test(ectx)) return false;
    for (size_t k = 0; k < p.group_keys.size(); ++k) {
      std::string x, y;
      encode_canonical(p.group_keys[k].eval(ectx), &x);
      encode_canonical(g.key_values[k], &y);
      if (x != y) return false;
    }
    return !spec.argument->eval(ectx).is_null();
  };
  size_t limit = options_.extreme_buffer + ctx.lookup->later_delta_count(ctx, t.name);
  for (;;) {
    std::string sql = select_columns(o) + " WHERE " + where + " ORDER BY (" + spec.argument_sql + ")" +
                      (is_min ? "" : " DESC") + " LIMIT " + std::to_string(limit);
    std::vector<Row> rows;
    Row last_raw;
    int64_t sql_rows = 0;
    TANDEM_RETURN_IF_ERROR(ctx.lookup->fetch(ctx, sql, binds, t, pred, true, true, &rows, &sql_rows, &last_raw));
    bool exhausted = sql_rows < static_cast<int64_t>(limit);
    std::map<Value, int64_t, SqliteLess> values;
    for (const auto& r : rows) {
      if (!pred(r)) continue;
      const Row* rp[1] = {&r};
      EvalContext ectx;
      ectx.rows = rp;
      values[spec.argument->eval(ectx)] += 1;
    }
    if (!exhausted) {
      // SQLite's rows are the first `limit` in order at W: every row at our position with a
      // value strictly before the last one read is in the compensated result.
      const Row* lr[1] = {&last_raw};
      EvalContext lctx;
      lctx.rows = lr;
      Value last_sql = spec.argument->eval(lctx);
      auto cut = [&](const Value& v) {
        int c = compare_sqlite(v, last_sql);
        return is_min ? c >= 0 : c <= 0;
      };
      for (auto it = values.begin(); it != values.end();) it = cut(it->first) ? values.erase(it) : std::next(it);
      if (values.empty()) {
        limit *= 4;  // every value read ties with the last: read further
        continue;
      }
    }
    a.values = std::move(values);
    a.complete = exhausted;
    return Status::Ok();
  }
}

double AggregateOperator::avg_value(const Accumulator& a) {
  if (a.non_integer == 0 && a.int_sum <= int128(INT64_MAX) && a.int_sum >= int128(INT64_MIN))
    return static_cast<double>(static_cast<int64_t>(a.int_sum)) / static_cast<double>(a.count);
  return a.real_sum.value() / static_cast<double>(a.count);
}

size_t AggregateOperator::memory_bytes(const AggregateState& state) const {
  size_t n = 0;
  for (const auto& [k, g] : state.groups) {
    n += sizeof(Group) + k.capacity() + row_bytes(g.key_values) + g.accs.size() * sizeof(Accumulator) + 64;
    for (const auto& a : g.accs) n += a.values.size() * (sizeof(Value) + 48);
  }
  return n;
}

}  // namespace tandem::ivm
