#include "runtime/ivm/operators/downstream.hpp"

namespace tandem::ivm {

void Downstream::tuple(const DeltaContext& ctx, int sign, const Tuple& t) const {
  const Plan& p = *plan;
  const size_t n = p.occurrences.size();
  EvalContext ectx;
  ectx.rows = t.data();
  if (p.residual_where && !p.residual_where->test(ectx)) return;
  if (p.aggregate) return aggregate->apply(ctx, sign, ectx, *aggregate_state);
  if (p.distinct) return distinct->apply(ctx, sign, ectx, *distinct_state, *result);
  // The result key: every occurrence's primary key, 'X' for a NULL extension.
  std::string key;
  for (size_t i = 0; i < n; ++i) {
    if (!t[i]) { key.push_back('X'); continue; }
    for (int c : p.occurrences[i].table->pk) encode_canonical((*t[i])[static_cast<size_t>(c)], &key);
  }
  if (sign < 0) {
    result->erase(key);
    return;
  }
  Row row;
  row.reserve(p.outputs.size());
  for (const auto& e : p.outputs) row.push_back(e.eval(ectx));
  Row order;
  if (internally_ordered(p)) {
    order.reserve(p.order.size() + n);
    for (const auto& k : p.order) order.push_back(k.expr.eval(ectx));
    for (size_t i = 0; i < n; ++i)
      for (int c : p.occurrences[i].table->pk) order.push_back(t[i] ? (*t[i])[static_cast<size_t>(c)] : Value());
  }
  if (ctx.collect) {
    ctx.collect->push_back(Entry{std::move(key), std::move(row), std::move(order)});
    return;
  }
  if (prefix_mode) {
    Entry probe{key, {}, order};
    if (!result->admits(probe)) return;
  }
  result->upsert(std::move(key), std::move(row), std::move(order));
}

}  // namespace tandem::ivm
