// DeltaJournal: the node-local, in-memory log of committed DeltaBatches that lets a view bring
// a lookup it read at db_version W back to the version V it is applying (docs/ivm.md,
// "Consistency"). The writer (db_worker) appends every committed batch, in db_version order,
// BEFORE it notifies anyone, so a reader that saw W in a read transaction finds (V, W] here.
//
// Thread-safe: one writer appends, readers on other threads read and advance. Entries are
// shared_ptr<const DeltaBatch>: readers keep them alive without copying. An entry is dropped
// once every registered reader has passed it, or, when the retained bytes exceed the bound,
// even if a lagging reader has not: that reader's next read fails with resource_exhausted and
// it must rehydrate (then re-register or reset its cursor).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/store/row_delta.hpp"

namespace tandem::ivm {

using BatchPtr = std::shared_ptr<const DeltaBatch>;

class DeltaJournal {
 public:
  explicit DeltaJournal(size_t max_bytes = 256u << 20, int wait_ms = 5000);

  // Appends a committed batch. Versions must increase strictly (gaps are allowed: a commit that
  // changed nothing replicated keeps db_version). Returns invalid_argument otherwise.
  Status append(BatchPtr batch);
  // Tells the journal that everything up to `version` has been appended, for commits that
  // advanced db_version without producing a batch.
  void note_version(int64_t version);
  // The commits in (after, version] happened but were never appended here (a node's leader
  // process died before it streamed them): a reader behind `version` fell off and must
  // rehydrate, exactly as one the byte bound dropped. Nothing when version <= after.
  void mark_gap(int64_t after, int64_t version);
  int64_t last_version() const;

  // A reader that has applied everything up to `from_version`.
  int64_t register_reader(int64_t from_version);
  void unregister_reader(int64_t reader);
  // The reader has applied everything up to `version`: older entries may be dropped.
  void advance(int64_t reader, int64_t version);
  // Moves a reader that rehydrated at `version` (clears its "fell off" mark).
  void reset_reader(int64_t reader, int64_t version);

  // Batches with after < db_version <= upto, oldest first. Waits (bounded) until `upto` has
  // been appended; resource_exhausted if part of the range was dropped (the reader fell off),
  // unavailable if `upto` never arrived.
  Result<std::vector<BatchPtr>> range(int64_t after, int64_t upto) const;
  // Batches after `after`, up to the last appended (no waiting).
  std::vector<BatchPtr> since(int64_t after) const;
  // The db_version of the first batch after `after`, or -1 if none is held (cheap: no copy).
  // resource_exhausted when batches after `after` may have been dropped.
  Result<int64_t> next_version(int64_t after) const;

  size_t retained_bytes() const;
  size_t retained_batches() const;

 private:
  void trim_locked();
  static size_t batch_bytes(const DeltaBatch& b);

  mutable std::mutex mu_;
  mutable std::condition_variable appended_;
  std::deque<std::pair<BatchPtr, size_t>> entries_;  // (batch, bytes)
  size_t bytes_ = 0;
  size_t max_bytes_;
  int wait_ms_;
  int64_t last_version_ = 0;
  int64_t dropped_through_ = 0;  // every version <= this may be missing
  int64_t next_reader_ = 1;
  std::map<int64_t, int64_t> readers_;  // reader -> applied version
};

}  // namespace tandem::ivm
