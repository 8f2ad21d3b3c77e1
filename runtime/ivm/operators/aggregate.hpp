// AggregateOperator: GROUP BY with COUNT, SUM, AVG, MIN and MAX kept as running state.
//
// State (AggregateState): per group its row count, the exact spellings of its key seen (1 vs
// 1.0), and per aggregate an Accumulator; the groups touched since the last flush; how many
// groups overflow SUM's integer range (the view reports the error while any does).
// Invariants:
//  - COUNT, SUM and AVG never read SQLite: integer inputs sum exactly in 128 bits, others in a
//    compensated REAL sum that supports removal;
//  - MIN/MAX keep a multiset of inputs with exact counts. Over one table ("bounded extremes")
//    it holds only the most extreme values: when `complete` is false the map holds exactly the
//    inputs at or before its last key (in the aggregate's direction) and none after it, and an
//    empty incomplete map is refilled from SQLite at flush() (through ctx.lookup);
//  - apply() only marks the group dirty; flush() recomputes dirty groups' result rows.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/operators/result_store.hpp"
#include "runtime/ivm/sqlite_semantics.hpp"

namespace tandem::ivm {

// Neumaier-compensated sum that supports removal (adding the negation).
struct RealSum {
  double sum = 0, comp = 0;
  void add(double v);
  double value() const { return sum + comp; }
};

struct Accumulator {
  int64_t count = 0;     // non-NULL inputs
  int128 int_sum = 0;    // integer inputs
  int64_t non_integer = 0;
  RealSum real_sum;
  // MIN/MAX: the most extreme non-NULL inputs with exact counts (see the invariants above).
  std::map<Value, int64_t, SqliteLess> values;
  bool complete = true;
};

struct Group {
  std::string key;
  Row key_values;
  std::map<std::string, std::pair<Row, int64_t>> variants;  // identical key spellings (1 vs 1.0)
  int64_t count = 0;
  std::vector<Accumulator> accs;
  bool dirty = false;
  bool overflow = false;
};

struct AggregateState {
  std::unordered_map<std::string, Group> groups;  // canonical group key -> group
  std::vector<std::string> dirty;                 // groups touched since the last flush
  int64_t overflow_groups = 0;
};

class AggregateOperator {
 public:
  // `plan` (an aggregate query) and `options` outlive the operator.
  AggregateOperator(const Plan& plan, const ViewOptions& options);

  // An aggregate without GROUP BY always shows its one row: hydration creates it.
  void touch_global_group(AggregateState& state) const;
  // One input tuple (evaluated through `tuple`) entering (sign +1) or leaving (-1) its group.
  void apply(const DeltaContext& ctx, int sign, const EvalContext& tuple, AggregateState& state) const;
  // Recomputes the result rows of the dirty groups (refilling exhausted MIN/MAX from SQLite
  // at the context's position) and writes them to `result`.
  Status flush(const DeltaContext& ctx, AggregateState& state, ResultStore& result) const;
  size_t memory_bytes(const AggregateState& state) const;

 private:
  Group& ensure_group(const Row& key_values, AggregateState& state) const;
  Status refill_extreme(const DeltaContext& ctx, Group& g, size_t i) const;
  static double avg_value(const Accumulator& a);

  const Plan& plan_;
  const ViewOptions& options_;
  bool bounded_extremes_;
};

}  // namespace tandem::ivm
