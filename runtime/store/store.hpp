// The replicated store: one SQLite file whose registered tables replicate as CRDTs with the
// merge rules of ../shared/spec/crdt-semantics.md (documented as built in docs/crdt.md).
//
// Public interface only; the on-disk format and its invariants are described at the top of
// store_format.hpp. A Store owns one read-write connection and is used by one thread at a
// time (the db_worker actor, a channel actor, or a test); it is not thread-safe.
//
// Every write (local SQL, structured mutations, a merge) is one SQLite transaction that
// either commits completely, with its clocks, its change-log entry and its db_version, or
// changes nothing. Each returns the row deltas it committed, for the IVM.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "proto/change.pb.h"
#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/sqlite/database.hpp"
#include "runtime/store/row_delta.hpp"
#include "runtime/store/schema.hpp"

namespace tandem {

class ProcessLock;

// The largest TEXT or BLOB value a local write may store (a larger one fails the write with
// RESOURCE_EXHAUSTED, naming the limit, and stores nothing). Every value up to it syncs
// (docs/protocol.md, "Fragments"). SQLite's own length limit on a store's connection is
// this plus kMaxRowOverheadBytes, which bounds a whole row (and so a merged value) too.
inline constexpr size_t kMaxValueBytes = size_t{256} << 20;
inline constexpr size_t kMaxRowOverheadBytes = size_t{1} << 20;

using SiteId = std::array<uint8_t, 16>;
std::string site_hex(const SiteId& site);                  // 32 upper-case hex digits
std::optional<SiteId> site_from_hex(const std::string& hex);
std::optional<SiteId> site_from_bytes(const std::string& bytes);
std::string site_bytes(const SiteId& site);

struct StoreOptions {
  OpenOptions open;
  std::optional<SiteId> site_id;   // used only when the file is created; random otherwise
  bool capture_row_images = true;  // produce RowDelta old/new rows for local writes
  // Allocate device-unique keys for rows inserted without one (keys.hpp). Its trigger makes
  // SQLite copy every inserted row's values once more (a 200 MiB value costs 200 MiB more),
  // merges included, so a store that never runs local inserts (a server channel) turns it off.
  bool allocate_keys = true;
};

// One SQL statement with parameters bound in order.
struct SqlStatement {
  std::string sql;
  Row params;
};

// What a committed transaction did.
struct CommitResult {
  int64_t db_version = 0;   // the store's db_version after the transaction
  bool changed = false;     // false: nothing replicated changed, db_version kept
  int64_t rows_changed = 0; // rows inserted, updated or deleted by the statements
  int64_t last_key = 0;     // the last key Tandem allocated for a row inserted without one (keys.hpp), or 0
  DeltaBatch deltas;        // one RowDelta per touched row of a replicated table
  // The request key was committed before (write/mutate with request_key): nothing ran; the
  // fields above are that commit's (deltas empty, at the store's current db_version).
  bool replayed = false;
};

// When a commit reaches the disk. The store runs in WAL mode, where an fsync of the WAL makes
// every commit before it durable too: group commit is deferred commits followed by one kFull
// commit (or sync()).
enum class CommitSync {
  kDefault,   // as the store was opened (OpenOptions::synchronous_full)
  kDeferred,  // no fsync: durable once a later kFull commit or sync() returns; a power loss
              // before that may take it back (a crash of the process alone does not)
  kFull,      // the commit fsyncs the WAL before it returns
};

struct MergeOptions {
  CommitSync sync = CommitSync::kDefault;
};

struct MergeResult {
  int64_t db_version = 0;
  int64_t changes_applied = 0;  // incoming changes that won
  // The commit fsynced the WAL, so it and every earlier commit are durable. False for a
  // deferred commit, and for a kFull one whose connection refused synchronous=FULL.
  bool synced = false;
  DeltaBatch deltas;
};

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  int64_t db_version = 0;  // the version the rows were read at
};

struct PeerCursor {
  int64_t received = 0;  // highest db_version of the peer merged here
  int64_t acked = 0;     // highest of our db_versions the peer acknowledged holding
};

struct PeerRecord {
  SiteId site{};
  PeerCursor cursor;
};

// What Store::compact may remove (compact.cpp explains what is safe to drop and why).
struct CompactOptions {
  int64_t now = 0;          // unix seconds, compared with each peer's last-seen time
  int64_t peer_expiry = 0;  // seconds; a peer unseen for longer is forgotten first; 0: never
  // Tombstones above this db_version stay whatever the peer table says: a server channel
  // passes the lowest cursor of its connected sessions (their acks may not be recorded yet).
  int64_t horizon_limit = INT64_MAX;
};

struct CompactReport {
  int64_t horizon = 0;             // tombstones at or below this db_version were removable
  int64_t peers_expired = 0;
  int64_t tombstones_removed = 0;
  int64_t changelog_keys_before = 0, changelog_keys_after = 0;
  int64_t compacted_through = 0;   // Store::compacted_through() after the call
};

// The rows a re-sync snapshot carried: table (lower case) -> encode_key() of each row's key.
using SnapshotKeys = std::map<std::string, std::set<std::string>>;
// Adds the rows of `batch` (one part of a snapshot) to `keys`.
void collect_snapshot_keys(const change::ChangeBatch& batch, SnapshotKeys* keys);

// What Store::reconcile_snapshot did with the rows the snapshot did not carry.
struct SnapshotReconcile {
  int64_t rows_dropped = 0;  // known to the server, absent from it: deleted there, and here now
  int64_t rows_kept = 0;     // only this device's unacknowledged writes: still to push
  int64_t rows_raised = 0;   // of which given a cl above every compacted one
  DeltaBatch deltas;         // the dropped rows that were alive (for the IVM)
};

class Store {
 public:
  // Opens or creates the file and Tandem's bookkeeping tables; loads registered tables.
  // One Store per database file, in this process or any other: the file is locked
  // (`<path>.lock`) for the Store's lifetime, and a second open fails with UNAVAILABLE
  // naming the holder's pid and command. Two writers would each keep their own db_version
  // and change log in memory and corrupt the sync state (issue 7).
  static Result<std::unique_ptr<Store>> open(const std::string& path, const StoreOptions& options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Runs schema statements (CREATE TABLE, CREATE INDEX, CREATE TRIGGER, ...) in one
  // transaction. A `CREATE TABLE IF NOT EXISTS` of an existing replicated table is its newer
  // declaration: new columns (nullable, or with a constant DEFAULT, declared after the
  // existing ones) are added in place, in time independent of its rows; so is an ALTER TABLE
  // ... ADD COLUMN. Any other change to a replicated table (drop, rename, type, key, NOT
  // NULL, DEFAULT, UNIQUE) and any change to Tandem's tables is refused (UNSUPPORTED or
  // PERMISSION_DENIED, naming the table and column) and nothing of `sql` is applied.
  // See docs/schema.md; schema_change.cpp.
  Status execute_schema(const std::string& sql);
  // Makes an existing table replicated (idempotent). Validates it against what Tandem
  // supports (schema.hpp) and backfills clocks for rows it already holds.
  Status register_table(const std::string& name);
  std::vector<std::string> replicated_tables() const;
  // Every ordinary table of the application (not Tandem's, not SQLite's), replicated or not.
  Result<std::vector<std::string>> application_tables();
  const TableInfo* table(const std::string& name) const;

  // One local write transaction running `statements` in order. Transaction control,
  // ATTACH, PRAGMA, schema changes and writes to Tandem's tables are refused.
  // `request_key` (non-empty) makes the write idempotent: the key is recorded with the
  // outcome in the same transaction, and a write whose key is already recorded runs nothing
  // and answers that outcome (replayed). A node's follower names each write it sends to the
  // leader process, so a write in flight when the leader died runs exactly once at the next
  // leader (docs/node.md). The newest 1,000 keys are kept.
  Result<CommitResult> write(const std::vector<SqlStatement>& statements, const std::string& mutation_id = {},
                             const std::string& request_key = {});
  // One local write transaction applying structured mutations in order (request_key: as write).
  Result<CommitResult> mutate(const std::vector<worker::Mutation>& mutations, const std::string& mutation_id = {},
                              const std::string& request_key = {});
  // One local write transaction running `body`, which executes statements on the given
  // connection; application SQL prepared there is authorized as in write(). For embedding
  // code and benchmarks that keep their own prepared statements.
  Result<CommitResult> transact(const std::function<Status(Database&)>& body, const std::string& mutation_id = {});
  // Read-only SQL; refuses statements that write.
  Result<QueryResult> query(const std::string& sql, const Row& params = {});

  // Changes with db_version > since, in (db_version, seq) order, leaving out those that
  // originated at `exclude`. With limit > 0 the batch stops at a db_version boundary once
  // it holds at least `limit` changes, and says so (complete = false); the next call starts
  // from the batch's to_db_version.
  Result<change::ChangeBatch> changes_since(int64_t since, const std::optional<SiteId>& exclude = std::nullopt,
                                            size_t limit = 0);
  struct ChangesRequest {
    int64_t since = 0;
    std::optional<SiteId> exclude;
    // Only the changes that originated at this site (a client pushes only its own: the
    // rest came from the server). `limit` and `max_bytes` count only those.
    std::optional<SiteId> only_from;
    size_t limit = 0;
    // Also cut inside a version larger than `limit`, at a row boundary; the batch then
    // carries resume_after, to pass back here with the same `since` (its to_db_version).
    bool split_versions = false;
    std::string resume_after;
    // Also bound the batch by bytes (about the serialized size of its changes), cut like
    // `limit`; a batch always holds at least one row, so one row larger than this is a
    // batch of its own. 0: no byte bound.
    size_t max_bytes = 0;
    // Non-empty: only these tables (lower-case names) and, for a table listing columns, only
    // those columns' cells (lower case; no sentinel); a table listing none gives all its
    // changes. A late-upgraded device's backfill reads just its new cells this way.
    std::map<std::string, std::set<std::string>> only_columns;
  };
  Result<change::ChangeBatch> changes(const ChangesRequest& request);
  // Merges a batch in one transaction and advances the sender's received cursor to the
  // batch's to_db_version. A malformed batch is refused whole and changes nothing.
  Result<MergeResult> merge(const change::ChangeBatch& batch, const MergeOptions& options = {});
  // Makes every transaction committed so far durable: one fsync of the WAL, through a
  // commit of Tandem's own that changes nothing. The end of a group of deferred commits.
  Status sync();

  Result<PeerCursor> peer(const SiteId& peer);
  // Every peer this store has merged from or recorded an ack of, the one it received the
  // most from first (a client's server).
  Result<std::vector<PeerRecord>> peers();
  // Records that `peer` holds every change of ours up to `acked`, and, when `received` > 0,
  // that every change of the peer's up to `received` is merged here (both monotonic). A
  // deferred commit (no fsync, CommitSync::kDeferred): an ack lost to a power loss is told
  // again by the peer (docs/protocol.md, "Durability"), so it is not worth an fsync per push.
  Status record_peer_ack(const SiteId& peer, int64_t acked, int64_t received = 0);
  // Several peers' acks in one deferred transaction (as record_peer_ack each).
  Status record_peer_acks(const std::vector<std::pair<SiteId, int64_t>>& acks);

  // Values that Tandem's layers above the store keep in the file (the sync binding):
  // `key` must start with "sync_"; the store's own bookkeeping cannot be read or written
  // through these. A missing key reads as nullopt. put_notes writes all in one transaction.
  Result<std::optional<std::string>> note(const std::string& key);
  Status put_notes(const std::vector<std::pair<std::string, std::string>>& notes);

  // Removes metadata no peer can need any more, in one transaction (compact.cpp): peers
  // unseen for options.peer_expiry, tombstones (clock records of deleted rows) at or below
  // the lowest `acked` of the remaining peers, and change-log listings of keys whose clocks
  // moved on or were removed. Rows, live clocks and db_version are unchanged. For a server
  // channel's store: a device merges tombstones it is sent, so only a store whose peers are
  // told of the compaction (compacted_through) may run it.
  Result<CompactReport> compact(const CompactOptions& options);
  // The highest db_version of a tombstone compact() removed (0: none). A peer whose cursor
  // is below it may have missed a delete that can no longer be sent: it must re-sync.
  int64_t compacted_through() const;
  // The highest causal length of a tombstone compact() removed (0: none).
  int64_t compacted_cl() const;
  // Bytes of Tandem's bookkeeping tables (clock tables, change log, peers, sites, meta) as
  // SQLite's dbstat reports their pages, and the live rows of the replicated tables.
  struct MetadataSize {
    int64_t bytes = 0;
    int64_t live_rows = 0;
  };
  Result<MetadataSize> metadata_size();
  // Ends a re-sync (docs/protocol.md): `seen` lists every row the server's snapshot carried
  // (collect_snapshot_keys); the snapshot itself was merged as ordinary batches. Rows held here but absent from it that the server knew (a clock of another
  // site, or of ours at or below `server_acked`) were deleted there and their tombstones
  // compacted away: they are deleted here, leaving a tombstone attributed to `server` that
  // is never pushed, as the delete would have won over any concurrent update of that life.
  // Rows holding only our unacknowledged writes stay, to be pushed, their cl raised above
  // `compacted_cl` (the server's compacted_cl()) if needed. One transaction, one db_version.
  Result<SnapshotReconcile> reconcile_snapshot(const SnapshotKeys& seen, const SiteId& server, int64_t server_acked,
                                               int64_t compacted_cl);

  // Gives this replica a new random site id, because another device uses the current one
  // (a copied file). Our changes with db_version <= keep_through stay attributed to the old
  // id (a server acknowledged them under it); later ones become the new site's. Every peer's
  // `acked` is reset: no peer holds a change of the new site. Returns the new id.
  Result<SiteId> take_new_site(int64_t keep_through);

  // Checks the invariants of store_format.hpp (every row has a live clock record and every
  // live record a row; records decode; counters agree) and SQLite's quick_check. O(rows).
  Status verify();

  const SiteId& site_id() const;
  int64_t db_version() const;

  class Impl;

 private:
  friend Database& store_connection(Store& store);  // store_internal.hpp
  explicit Store(std::unique_ptr<Impl> impl);
  // Declared first, so released after the connection closes (runtime/common/process_lock.hpp).
  std::unique_ptr<ProcessLock> lock_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
