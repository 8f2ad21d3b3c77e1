// Internal to runtime/store: the state behind Store, shared by store.cpp (open, schema,
// local writes, reads, peers), merge.cpp and changes.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/sqlite/row_feed.hpp"
#include "runtime/store/capture.hpp"
#include "runtime/store/store.hpp"
#include "runtime/store/store_format.hpp"

namespace tandem {

// Keys of the clock records a transaction touched, per table, in first-touch order.
struct TouchedKeys {
  std::vector<std::vector<Value>> per_table;  // index = table position
  void add(size_t table, Value key) {
    if (per_table.size() <= table) per_table.resize(table + 1);
    per_table[table].push_back(std::move(key));
  }
};

class Store::Impl {
 public:
  // What the SQLite authorizer allows right now (see authorize() in store.cpp).
  enum class Mode { internal, user_write, user_read, schema };

  std::unique_ptr<Database> db;
  StoreOptions options;
  SiteId site{};
  int64_t db_version = 0;
  int64_t clock_records = 0;     // records in every clock table (meta 'clock_records')
  int64_t changelog_keys = 0;    // keys listed by tandem_changelog (meta 'changelog_keys')

  std::vector<std::unique_ptr<TableInfo>> tables;
  std::vector<const TableInfo*> table_list;  // same order, for Capture
  std::vector<SiteId> sites;                 // ordinal -> site id (0 is this replica)
  std::unordered_map<std::string, int64_t> site_ordinals;  // site bytes -> ordinal

  Capture capture;
  Mode mode = Mode::internal;
  bool synchronous_full = true;  // the connection's synchronous mode now (FULL or NORMAL)
  bool merging = false;  // tandem_merging() for application triggers
  std::string denial;  // why the authorizer refused the last statement
  std::string created_table;  // the table the last schema statement prepared creates (authorizer)
  std::string altered_table;  // the table the last schema statement prepared alters (authorizer)

  // Tandem's per-table statements, prepared once (building and hashing their SQL text per
  // row showed up in profiles of 10,000-row transactions).
  struct TableStatements {
    std::unique_ptr<Statement> load_clock, load_row;
    std::unique_ptr<Statement> load_clocks, save_clocks, bump_clocks, load_rows, delete_rows, update_rows;
    std::unordered_map<std::string, std::unique_ptr<Statement>> insert_rows;  // by written-column mask
  };
  std::unordered_map<int64_t, TableStatements> table_statements;
  std::string clock_buffer;  // reused by save_clocks

  // Statements prepared from application SQL live apart from Tandem's own, so that SQL
  // text cannot reuse a statement authorized in internal mode.
  std::unordered_map<std::string, std::unique_ptr<Statement>> user_statements;

  ~Impl();

  // Registered table by name (case-insensitive, as SQLite), or nullptr; and its position.
  const TableInfo* find_table(const std::string& name, size_t* position = nullptr) const;

  // Clock record of `key` in `t` (exists = false when there is none).
  Result<RowClock> load_clock(const TableInfo& t, const Value& key);
  // Current data row of `pk` (every column), or nullopt.
  Result<std::optional<Row>> load_row(const TableInfo& t, const Row& pk);

  // Bulk forms, one statement each through a RowFeed (row_feed.hpp). Keys must be distinct.
  // load_clocks: (*out)[i] is the clock of keys[i] (exists = false when there is none).
  Status load_clocks(const TableInfo& t, const std::vector<Value>& keys, std::vector<RowClock>* out);
  // save_clocks: writes (key, clock) records.
  Status save_clocks(const TableInfo& t, const std::vector<std::pair<Value, const RowClock*>>& records);
  // load_rows: (*out)[i] is the row of pks[i], or nullopt.
  Status load_rows(const TableInfo& t, const std::vector<const Row*>& pks, std::vector<std::optional<Row>>* out);
  // delete_rows / update_rows: by key; update_rows sets every value column from `rows`.
  Status delete_rows(const TableInfo& t, const std::vector<const Row*>& pks);
  Status update_rows(const TableInfo& t, const std::vector<const Row*>& rows);
  // insert_rows: the columns flagged in `columns` (key columns included) of each row.
  Status insert_rows(const TableInfo& t, const std::vector<bool>& columns, const std::vector<const Row*>& rows);

  // Applies tandem_bump() to the live records of the keys in `cells` (key, bumps pairs).
  // Returns how many records matched.
  Result<int64_t> bump_clocks(const TableInfo& t, int64_t version, const std::vector<Value>& cells);

  // The feed with `columns` columns (temp.tandem_feed<N>), created on first use.
  Result<RowFeed*> feed(int columns);
  std::vector<std::unique_ptr<RowFeed>> feeds;  // index = columns

  // Appends one tandem_changelog entry per table with keys, and bumps counters.
  Status append_changelog(int64_t version, const TouchedKeys& touched);
  // Writes db_version and the record/changelog counters to tandem_meta.
  Status save_counters(int64_t version, int64_t records, int64_t keys);
  // Ordinal of `site`, inserting it into tandem_sites (and the in-memory maps) if new.
  // Callers roll the maps back with forget_sites_after() when the transaction fails.
  Result<int64_t> site_ordinal(const std::string& site_bytes);
  void forget_sites_after(size_t count);

  // Statement for application SQL (authorized in the current mode).
  Result<Statement*> user_statement(const std::string& sql);

  // Turns captured events into clocks, changelog entries, a db_version and row deltas.
  // Runs inside the write transaction, before COMMIT.
  Result<CommitResult> record_local_write(std::vector<CaptureEvent> events, const std::string& mutation_id);

  // Runs `body` as one local write transaction with capture on. A non-empty `request_key`
  // (Store::write) is recorded with the outcome in the same transaction; a key already
  // recorded runs nothing and returns the recorded outcome (CommitResult::replayed).
  Result<CommitResult> local_write(const std::function<Status()>& body, const std::string& mutation_id,
                                   const std::string& request_key = {});

  // Rebuilds tandem_changelog from the clock records when it has outgrown them.
  Status compact_changelog_if_needed();
  // Rebuilds it unconditionally (one entry per version and table of the clocks that remain).
  Status rebuild_changelog();

  // Raises tandem_peers' cursors of `peer` (acked, and received when > 0) in the caller's
  // transaction or its own.
  Status write_peer_cursor(const SiteId& peer, int64_t acked, int64_t received);

  // Puts the connection in synchronous=FULL or NORMAL (nothing when it already is).
  Status set_synchronous(bool full);

  // Device-unique keys for rows inserted without one (keys.hpp).
  int64_t last_key = 0;  // the key tandem_next_key() handed out last
  Result<int64_t> next_key(int64_t table_id);
  Status install_key_allocation(const TableInfo& t);
  void register_key_function();
};

// Restores the in-memory mirror of tandem_meta and tandem_sites when a transaction fails.
class MirrorGuard {
 public:
  explicit MirrorGuard(Store::Impl& s)
      : s_(s), version_(s.db_version), records_(s.clock_records), keys_(s.changelog_keys), sites_(s.sites.size()) {}
  ~MirrorGuard() {
    if (committed_) return;
    s_.db_version = version_;
    s_.clock_records = records_;
    s_.changelog_keys = keys_;
    s_.forget_sites_after(sites_);
  }
  void commit() { committed_ = true; }

 private:
  Store::Impl& s_;
  int64_t version_, records_, keys_;
  size_t sites_;
  bool committed_ = false;
};

// The synchronous mode one commit asks for (CommitSync), and the store's own mode back at the
// end of the scope. A refused pragma leaves the connection as it was: full() tells what the
// commit will do. A failed switch back is retried by the next scope (only more fsyncs meanwhile).
class SyncScope {
 public:
  SyncScope(Store::Impl& s, CommitSync want) : s_(s) {
    const bool full = want == CommitSync::kFull || (want == CommitSync::kDefault && s.options.open.synchronous_full);
    status_ = s.set_synchronous(full);
  }
  ~SyncScope() { (void)s_.set_synchronous(s_.options.open.synchronous_full); }
  SyncScope(const SyncScope&) = delete;
  SyncScope& operator=(const SyncScope&) = delete;
  bool full() const { return s_.synchronous_full; }
  const Status& status() const { return status_; }  // why the wanted mode could not be set

 private:
  Store::Impl& s_;
  Status status_;
};

}  // namespace tandem
