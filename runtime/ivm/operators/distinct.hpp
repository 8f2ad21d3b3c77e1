// DistinctOperator: SELECT DISTINCT as a multiset of result rows.
//
// State (DistinctState): per distinct row (SQLite equality, encode_canonical) its multiplicity
// and the exact spellings seen with their own counts (1 and 1.0 are one distinct row).
// Invariants: a row is in the result iff its multiplicity is positive; the row shown is the
// first spelling still present (map order of encode_identical), so removing the spelling shown
// switches the result to another one.
#pragma once

#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/operators/result_store.hpp"

namespace tandem::ivm {

struct DistinctRow {
  int64_t count = 0;
  std::map<std::string, std::pair<Row, int64_t>> variants;  // exact key -> (row, count)
};

struct DistinctState {
  std::unordered_map<std::string, DistinctRow> rows;  // canonical key -> multiplicity
};

class DistinctOperator {
 public:
  // `plan` (a DISTINCT query) outlives the operator.
  explicit DistinctOperator(const Plan& plan) : plan_(plan) {}
  // One input tuple (evaluated through `tuple`) entering (sign +1) or leaving (-1); updates
  // the result row of its distinct value at once.
  void apply(const DeltaContext& ctx, int sign, const EvalContext& tuple, DistinctState& state,
             ResultStore& result) const;
  size_t memory_bytes(const DistinctState& state) const;

 private:
  const Plan& plan_;
};

}  // namespace tandem::ivm
