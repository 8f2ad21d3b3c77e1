// OverlayOperator: optimistic mutations shown at once, folded over the confirmed rows.
//
// State (OverlayState): the pending mutations in the order they were added; per table the
// touched keys' confirmed base rows and the rows the operators were last told (the `graph`,
// TableOverlay); the schemas of tables the query does not read (for validation only).
// Invariants:
//  - the operators always see displayed rows: for a touched key, graph == the fold of every
//    pending mutation over base; base follows the confirmed batches (apply());
//  - refold() recomputes every touched key's displayed row and tells the join the difference
//    key by key, with ctx.overlay_delta naming the change so that lookups excluding it see the
//    row before it; keys no pending mutation touches any more are forgotten;
//  - one origin's mutations run in order: the batch of one retires it and every earlier one of
//    its origin (retire()).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/ivm/operators/delta_context.hpp"
#include "runtime/ivm/operators/join.hpp"

namespace tandem::ivm {

struct Pending {
  std::string origin;  // the view that sent it; one origin's mutations run in order
  std::string id;
  std::vector<worker::Mutation> mutations;
  std::optional<int64_t> success_version;
};

struct OverlayState {
  std::vector<Pending> pending;
  OverlayTables tables;
  std::map<std::string, std::shared_ptr<const TableSchema>> other_schemas;
};

class OverlayOperator {
 public:
  // `plan` and `join` outlive the operator.
  OverlayOperator(const Plan& plan, const JoinOperator& join) : plan_(plan), join_(join) {}

  // Validates `mutations` (known replicated tables and columns, key arity) and appends them as
  // pending `id`; the caller refolds. Changes nothing on error.
  Status add(const DeltaContext& ctx, const std::string& id, const std::vector<worker::Mutation>& mutations,
             const std::string& origin, OverlayState& state) const;
  // Drops the mutations `batch` settles: its own mutation and the earlier ones of its origin,
  // and those that succeeded at or before its version. True when any was dropped.
  bool retire(const DeltaBatch& batch, OverlayState& state) const;
  // One confirmed delta: passes it to the join, except for touched keys, whose base row it
  // updates before refolding.
  Status apply(const DeltaContext& ctx, const RowDelta& d, OverlayState& state, JoinState& js) const;
  // Recomputes the displayed rows of every touched key and tells the join what changed.
  Status refold(const DeltaContext& ctx, OverlayState& state, JoinState& js) const;

 private:
  Result<std::shared_ptr<const TableSchema>> schema_of(const DeltaContext& ctx, const std::string& table,
                                                       OverlayState& state) const;
  Result<Row> insert_row(const DeltaContext& ctx, const TableSchema& t, const worker::Mutation::Insert& in) const;

  const Plan& plan_;
  const JoinOperator& join_;
};

}  // namespace tandem::ivm
