// LiveView: one live query's incrementally maintained result, with the pending overlay of
// optimistic mutations. Pure logic (no actors); actors/ui_view wraps it. The design, the state
// each operator keeps and the consistency argument are in docs/ivm.md; in short:
//   - hydration reads the query at version H on the view's own read-only connection, in a read
//     transaction that also reads tandem_meta.db_version; batches <= H are skipped;
//   - batches apply strictly in db_version order, delta by delta; what the view lacks (join
//     partners, the next rows of a LIMIT window, an overlay key's base row) it reads from SQLite
//     at W >= V and brings back to exactly its position with the DeltaJournal's deltas (V, W];
//   - pending mutations are per-key patches folded over the confirmed base rows; the operators
//     always see displayed rows; settlement retires or rolls back a patch in every view.
// Threading: a LiveView and its connection belong to one thread (the ui_view actor or a test).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/ivm/plan.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem::ivm {

struct ViewOptions {
  // Rows kept past OFFSET+LIMIT in a single-table ordered window, so that most rows leaving
  // the window are replaced without asking SQLite. The window holds at most 3x this many.
  size_t window_boundary = 32;
  // MIN/MAX over one table keep about this many of each group's extreme values (exact
  // counts) and ask SQLite for the next ones when they run out.
  size_t extreme_buffer = 8;
};

struct RowChangeRecord {
  enum class Kind : uint8_t { added, removed, changed };
  Kind kind = Kind::added;
  std::string key;           // stable identity of the result row (binary)
  Row row;                   // new values (added, changed), old values (removed)
  int64_t position = -1;     // ordered views: see proto/view.proto (sequential semantics)
  int64_t old_position = -1;
};

class LiveView {
 public:
  // Binds nothing: `plan` comes from bind(). `db` is the view's own connection to the node's
  // database file (read-only use); it must outlive the view. `journal` must hold every batch
  // committed after the hydration read (the view registers as a reader before reading).
  static Result<std::unique_ptr<LiveView>> create(Database& db, DeltaJournal* journal,
                                                  std::shared_ptr<const Plan> plan, ViewOptions options = {});
  ~LiveView();
  LiveView(const LiveView&) = delete;
  LiveView& operator=(const LiveView&) = delete;

  // Applies one committed batch. Batches at or below applied_version() are ignored (already
  // seen, e.g. by hydration); a batch must otherwise be the next one the journal holds.
  // On a resource_exhausted error (the view fell off the journal) call rehydrate().
  Status apply(const BatchPtr& batch);
  // Applies every batch the journal holds after applied_version().
  Status catch_up();
  // Reads the whole result again at the current version (only when the view fell off the
  // journal); pending mutations are kept and shown again.
  Status rehydrate();

  // Shows `mutations` at once as pending mutation `mutation_id`. A malformed mutation (unknown
  // table or column, wrong key arity, missing key columns) is refused and changes nothing.
  // Mutations of tables this view does not read are validated and remembered only.
  // `origin` names the view that sends it to the db_worker: one origin's mutations run in the
  // order they were sent, so the committed batch of one retires the earlier ones of its origin
  // (a mutation that changed nothing produces no batch).
  Status add_pending(const std::string& mutation_id, const std::vector<worker::Mutation>& mutations,
                     const std::string& origin = {});
  // The db_worker's answer: success retires the patch once the view reached `db_version` (or
  // applied the batch carrying mutation_id); failure rolls it back now.
  Status settle(const std::string& mutation_id, bool success, int64_t db_version);
  size_t pending_count() const;

  const std::vector<std::string>& columns() const;
  bool ordered() const;
  // The visible result: in order for ordered views (after OFFSET, at most LIMIT rows).
  std::vector<Row> rows() const;
  std::vector<std::pair<std::string, Row>> keyed_rows() const;
  // Set while the query would fail in SQLite (SUM integer overflow).
  std::optional<Status> error() const;
  // Changes to the visible result since the last call, in application order.
  std::vector<RowChangeRecord> take_changes();

  int64_t applied_version() const;
  int64_t hydrated_version() const;
  // Approximate bytes held by the view's operators and result (not the plan).
  size_t memory_bytes() const;
  // Lookups (SQLite reads) made since creation; for tests and benchmarks.
  int64_t lookup_count() const;
  // Lookups whose rows had to be brought back with journal deltas (the writer was ahead).
  int64_t compensated_lookup_count() const;

  class Impl;

 private:
  explicit LiveView(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Canonical binary key of values: equal under SQLite's comparison (1 and 1.0 alike) <=> equal keys.
void encode_canonical(const Value& v, std::string* out);
// Exact binary key: equal <=> identical().
void encode_identical(const Value& v, std::string* out);

}  // namespace tandem::ivm
