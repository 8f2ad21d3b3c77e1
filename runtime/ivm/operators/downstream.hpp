// Downstream: where the join sends each complete tuple. It checks the residual WHERE, then
// hands the tuple to the aggregate, to DISTINCT, or projects it into the result store (or into
// ctx.collect while a join window gathers tuples). It owns no state: it binds the operators
// after the join to the state they update, once per view, and is reached through
// DeltaContext::downstream (a plain call, no virtual dispatch per tuple).
#pragma once

#include "runtime/ivm/operators/aggregate.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/operators/distinct.hpp"
#include "runtime/ivm/operators/result_store.hpp"

namespace tandem::ivm {

struct Downstream {
  const Plan* plan = nullptr;
  // Prefix windows admit only rows inside the known prefix (ResultStore::admits).
  bool prefix_mode = false;
  const AggregateOperator* aggregate = nullptr;
  AggregateState* aggregate_state = nullptr;
  const DistinctOperator* distinct = nullptr;
  DistinctState* distinct_state = nullptr;
  ResultStore* result = nullptr;

  // One joined tuple entering (sign +1) or leaving (-1) the query's input; `t`'s rows are
  // borrowed for the call.
  void tuple(const DeltaContext& ctx, int sign, const Tuple& t) const;
};

}  // namespace tandem::ivm
