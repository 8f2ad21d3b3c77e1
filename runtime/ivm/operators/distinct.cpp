#include "runtime/ivm/operators/distinct.hpp"

namespace tandem::ivm {

void DistinctOperator::apply(const DeltaContext& /*ctx: no lookups*/, int sign, const EvalContext& tuple,
                             DistinctState& state, ResultStore& result) const {
  const Plan& p = plan_;
  Row row;
  for (const auto& e : p.outputs) row.push_back(e.eval(tuple));
  std::string key, exact;
  for (const auto& v : row) {
    encode_canonical(v, &key);
    encode_identical(v, &exact);
  }
  auto& d = state.rows[key];
  d.count += sign;
  auto& var = d.variants[exact];
  if (var.second == 0) var.first = row;
  var.second += sign;
  if (var.second <= 0) d.variants.erase(exact);
  if (d.count <= 0) {
    state.rows.erase(key);
    result.erase(key);
    return;
  }
  const Row& shown = d.variants.begin()->second.first;
  Row order;
  if (internally_ordered(p)) {
    for (int c : p.order_columns) order.push_back(shown[static_cast<size_t>(c)]);
    for (const auto& v : shown) order.push_back(v);
  }
  const Entry* cur = result.find(key);
  if (cur && identical(cur->row, shown)) return;
  result.upsert(key, shown, std::move(order));
}

size_t DistinctOperator::memory_bytes(const DistinctState& state) const {
  size_t n = 0;
  for (const auto& [k, d] : state.rows) n += sizeof(DistinctRow) + k.capacity() + d.variants.size() * 96 + 64;
  return n;
}

}  // namespace tandem::ivm
