// JoinOperator: turns a change of one row into the changes of the joined tuples it belongs to,
// by expanding along the FROM tree with single-table lookups (docs/ivm.md, "Joins as a tree").
//
// The operator is immutable after construction (the plan and each table's occurrences); the
// only mutable state is JoinState's scratch tuple for evaluating ON and pushed filters.
// Invariants:
//  - self-joins follow the standard delta rule: for a change of table T the occurrences of T are
//    processed in order, earlier ones seeing T after the change, later ones before it;
//  - a LEFT JOIN child's change also flips the NULL extension of the parent rows it joins: a
//    parent row without other partners gains or loses its (parent, NULL) tuple;
//  - every candidate row a lookup returns is checked with the exact ON condition in C++.
// Complete tuples go to ctx.downstream with their sign (+1 enters the result, -1 leaves).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/plan.hpp"

namespace tandem::ivm {

struct JoinState {
  std::vector<const Row*> scratch;  // one slot per occurrence (JoinOperator::make_state sizes it)
};

class JoinOperator {
 public:
  // `plan` outlives the operator.
  explicit JoinOperator(const Plan& plan);
  JoinState make_state() const { return JoinState{std::vector<const Row*>(n_, nullptr)}; }

  // Occurrences of `table` in FROM order, or null when the query does not read it.
  const std::vector<int>* occurrences_of(const std::string& table) const {
    auto it = table_occurrences_.find(table);
    return it == table_occurrences_.end() ? nullptr : &it->second;
  }
  // One row of `table` changed from `old_row` to `new_row` (either may be null).
  Status apply(const DeltaContext& ctx, const std::string& table, const Row* old_row, const Row* new_row,
               JoinState& state) const;
  // Completes the partial tuple `t` (occurrences marked in `assigned` are bound) in every way
  // the joins allow and sends each complete tuple downstream with `sign`. `changed_occ` is
  // the occurrence whose change is being processed (-1: none, every lookup sees the position).
  Status expand(const DeltaContext& ctx, Tuple& t, std::vector<char>& assigned, int sign, int changed_occ,
                JoinState& state) const;
  // The occurrence's pushed WHERE conjuncts hold for `row`.
  bool local_ok(int occ, const Row& row, JoinState& state) const;

 private:
  bool include_for(int occ, int changed_occ) const;
  bool on_ok(int child, const Row* parent_row, const Row* child_row, JoinState& state) const;
  bool add_equality(const Occurrence& looked_up, int column, Affinity comparison, const Value& v, std::string* where,
                    Row* binds) const;
  Status children_of(const DeltaContext& ctx, int u, const Row& parent_row, bool include_current,
                     std::vector<Row>* out, JoinState& state) const;
  Status parents_of(const DeltaContext& ctx, int u, int child, const Row& child_row, bool include_current,
                    std::vector<Row>* out, JoinState& state) const;
  Status fetch_joined(const DeltaContext& ctx, int u, std::string where, const Row& binds,
                      const std::function<bool(const Row&)>& on, bool include_current, std::vector<Row>* out,
                      JoinState& state) const;
  Status inner_delta(const DeltaContext& ctx, int k, const Row* old_row, const Row* new_row, JoinState& state) const;
  Status left_join_delta(const DeltaContext& ctx, int k, const Row* old_row, const Row* new_row,
                         JoinState& state) const;

  const Plan& plan_;
  size_t n_;
  std::map<std::string, std::vector<int>> table_occurrences_;
};

}  // namespace tandem::ivm
