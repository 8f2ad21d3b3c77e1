// The device's side of a re-sync (docs/protocol.md, "Re-sync"): what a db_worker does with a
// MergeRequest that ends a re-sync's snapshot. Pure logic over a Store; the caller's thread.
#pragma once

#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"

namespace tandem::sync_resync {

// Store::reconcile_snapshot of the rows that neither the snapshot's earlier parts (listed in
// request.snapshot_end) nor request.batch carried. Call it before merging request.batch: a
// crash in between leaves the device's cursor below the server's horizon, so the re-sync
// runs again, and the rows the batch carries are not touched. Nothing to do without
// snapshot_end (an empty result).
Result<SnapshotReconcile> reconcile(Store& store, const worker::MergeRequest& request);

}  // namespace tandem::sync_resync
