// Capture of local writes to replicated tables, whatever SQL the application ran.
//
// Why hooks and not triggers: SQLite's preupdate hook reports every row an INSERT, UPDATE,
// DELETE, REPLACE or UPSERT touches (including rows touched by the application's own
// triggers), with old and new values, at the cost of a C call; a trigger costs a sub-program
// per row (a trigger that inserts one tiny row already halves insert throughput here).
// The store turns the captured events into clock records once, at commit (store.cpp).
//
// REPLACE: when INSERT OR REPLACE (or UPDATE OR REPLACE, or an UPSERT's REPLACE) removes a
// conflicting row, the preupdate hook reports a DELETE but the update hook does not (SQLite
// documents this). A DELETE event stays unconfirmed until the update hook confirms it; an
// unconfirmed one at commit time was a REPLACE conflict, which crdt-semantics.md counts as a
// write of every column (no delete recorded). That is also why WITHOUT ROWID tables, which
// have no update hook, are refused at registration.
//
// Internal to runtime/store. Not thread-safe: used on the store's connection thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/sqlite/value.hpp"
#include "runtime/store/schema.hpp"

struct sqlite3;

namespace tandem {

struct CaptureEvent {
  enum class Kind : uint8_t { insert, update, remove };
  Kind kind = Kind::insert;
  bool confirmed = false;      // remove: the update hook saw it (a real delete, not a REPLACE)
  uint32_t table = 0;          // index into the capture's table list
  int64_t rowid = 0;           // rowid removed (remove) or of the row (insert, update)
  Value old_key;               // clock key before (update, remove)
  Value new_key;               // clock key after (insert, update)
  std::vector<uint32_t> changed;  // update: value columns whose value is no longer identical
  std::optional<Row> old_row;  // images, when requested
  std::optional<Row> new_row;
};

class Capture {
 public:
  // Installs the hooks on `db`. `tables` (owned by the caller, outlives the capture) are the
  // replicated tables; events name them by index.
  void attach(sqlite3* db, const std::vector<const TableInfo*>* tables);
  void detach();
  // Starts recording (with row images or not) until stop().
  void start(bool images);
  void stop() { active_ = false; }
  bool active() const { return active_; }
  // The events recorded since start(), in order; clears them.
  std::vector<CaptureEvent> take();
  void clear() { events_.clear(); }
  // Set when a captured insert or update wrote a TEXT or BLOB value over `max_value_bytes`
  // (the hook cannot fail the statement; the write is refused at its end). Cleared by start().
  const std::string& refusal() const { return refusal_; }
  void set_max_value_bytes(size_t n) { max_value_bytes_ = n; }

  // Hook entry points (public for the C callbacks only).
  void on_preupdate(sqlite3* db, int op, const char* database, const char* table, int64_t old_rowid, int64_t new_rowid);
  void on_update(int op, const char* database, const char* table, int64_t rowid);

 private:
  int find_table(const char* name);
  void check_value_sizes(sqlite3* db, const TableInfo& t);
  sqlite3* db_ = nullptr;
  const std::vector<const TableInfo*>* tables_ = nullptr;
  bool active_ = false;
  bool images_ = false;
  int last_table_ = -1;
  std::vector<CaptureEvent> events_;
  size_t max_value_bytes_ = 0;  // 0: no bound
  std::string refusal_;
};

}  // namespace tandem
