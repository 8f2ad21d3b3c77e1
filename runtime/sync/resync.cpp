#include "runtime/sync/resync.hpp"

namespace tandem::sync_resync {

Result<SnapshotReconcile> reconcile(Store& store, const worker::MergeRequest& request) {
  if (!request.has_snapshot_end()) return SnapshotReconcile{};
  const auto& end = request.snapshot_end();
  auto server = site_from_bytes(end.server_site_id());
  if (!server) return Status::InvalidArgument("snapshot_end.server_site_id must be 16 bytes");
  SnapshotKeys seen;
  for (const auto& t : end.tables()) seen[t.table()].insert(t.keys().begin(), t.keys().end());
  collect_snapshot_keys(request.batch(), &seen);
  return store.reconcile_snapshot(seen, *server, end.server_acked(), end.compacted_cl());
}

}  // namespace tandem::sync_resync
