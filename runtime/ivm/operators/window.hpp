// WindowOperator: ORDER BY + LIMIT windows kept as a prefix of the order ("prefix mode").
//
// State: none of its own. The window is the ResultStore in prefix mode: the rows of the
// prefix up to OFFSET+LIMIT plus a boundary of up to 3 x ViewOptions::window_boundary rows, and
// whether the prefix is the whole result (`complete`).
// Invariants:
//  - the store's rows are exactly the first rows of the order at the context's position; rows
//    past the last held one are unknown unless `complete` (ResultStore::admits refuses them);
//  - refills read the rows after the last held one in SQL order (keys, then primary key),
//    asking for later_delta_count() more rows than needed, and trust only rows that sort
//    before the last row SQLite returned (compensation may have removed or added rows past it);
//  - over joins (ORDER BY keys from the first table only) the tuples of one root row are
//    contiguous in the order: the refill reads root rows in order and expands each through
//    the join, gathering its tuples through ctx.collect.
#pragma once

#include "runtime/common/status.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/operators/join.hpp"
#include "runtime/ivm/operators/result_store.hpp"

namespace tandem::ivm {

class WindowOperator {
 public:
  // `plan` (prefix mode: ORDER BY keys over the first table, LIMIT) and `options` outlive it.
  WindowOperator(const Plan& plan, const ViewOptions& options) : plan_(plan), options_(options) {}

  // Reads rows after the last held one until OFFSET+LIMIT+boundary are held (or the result
  // ends). Tuples reach `result` through ctx.downstream (single table) or directly (joins).
  Status refill(const DeltaContext& ctx, ResultStore& result, const JoinOperator& join, JoinState& js) const;
  // After an operation changed the window: trims the boundary to 3 x window_boundary and
  // refills when fewer than OFFSET+LIMIT rows are held.
  Status apply(const DeltaContext& ctx, ResultStore& result, const JoinOperator& join, JoinState& js) const;

 private:
  Status refill_single(const DeltaContext& ctx, ResultStore& result) const;
  Status refill_join(const DeltaContext& ctx, ResultStore& result, const JoinOperator& join, JoinState& js) const;
  // The ORDER BY values of a first-table row followed by its primary key.
  Row order_of(const Row& r) const;
  // SQL for "sorts after `boundary`" over ORDER BY keys then the primary key (ascending).
  std::string after_sql(const Row& boundary, size_t i, Row* binds, bool inclusive = false) const;
  // " ORDER BY keys, pk LIMIT n" over the first table.
  std::string order_limit_sql(size_t limit) const;

  const Plan& plan_;
  const ViewOptions& options_;
};

}  // namespace tandem::ivm
