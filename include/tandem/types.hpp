// The values the public C++ API exchanges: SQLite values and rows, statements, structured
// mutations, query results, live-query events and the sync state. Plain value types.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "tandem/export.hpp"

namespace tandem::api {

// A BLOB's bytes (a distinct type so that TEXT and BLOB stay apart).
struct Blob {
  std::string bytes;
  bool operator==(const Blob& o) const { return bytes == o.bytes; }
};

// One SQLite value: NULL, INTEGER, REAL, TEXT or BLOB.
using Value = std::variant<std::nullptr_t, int64_t, double, std::string, Blob>;
using Row = std::vector<Value>;

// The value as SQL would print it: NULL, 42, 1.5, 'it''s', x'00ff'.
TANDEM_API std::string to_sql_literal(const Value& v);

// One SQL statement with its `?` parameters.
struct Statement {
  std::string sql;
  Row params;
};

// A structured write through the node's views: applied at once as a pending overlay in
// every live query of the node, then committed or rolled back (docs/embedding.md).
struct Mutation {
  enum class Kind { insert, update, remove };
  Kind kind = Kind::insert;
  std::string table;
  std::vector<std::string> columns;  // insert, update: the columns set
  Row values;                        // insert, update: their values, in order
  Row pk;                            // update, remove: the primary key's values
  bool or_replace = false;           // insert: INSERT OR REPLACE

  static Mutation insert(std::string table, std::vector<std::string> columns, Row values, bool or_replace = false) {
    return {Kind::insert, std::move(table), std::move(columns), std::move(values), {}, or_replace};
  }
  static Mutation update(std::string table, Row pk, std::vector<std::string> columns, Row values) {
    return {Kind::update, std::move(table), std::move(columns), std::move(values), std::move(pk), false};
  }
  static Mutation remove(std::string table, Row pk) { return {Kind::remove, std::move(table), {}, {}, std::move(pk), false}; }
};

struct QueryResult {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  int64_t db_version = 0;  // the database version the result reflects
};

struct WriteResult {
  int64_t db_version = 0;    // the version the commit took (unchanged if nothing changed)
  int64_t rows_changed = 0;
  int64_t last_key = 0;      // the key Tandem allocated for the last row inserted without one
};

// One change to a live query's result. Apply the changes of an event in order to a list:
// removed at `position` (index before removal), added at `position` (index after
// insertion), changed moves from `old_position` to `position` and takes `row`. Positions
// are -1 when the query has no ORDER BY.
struct RowChange {
  enum class Kind { added, removed, changed };
  Kind kind = Kind::added;
  std::string key;  // stable identity of the row across events
  Row row;          // new values (added, changed); old values (removed)
  int64_t position = -1;
  int64_t old_position = -1;
};

// What a watch callback receives: first the initial result (initial = true, every row
// `added` in order), then every change to it.
struct WatchEvent {
  bool initial = false;
  std::vector<RowChange> changes;
  int64_t db_version = 0;  // confirmed database version after this event
  std::string error;       // non-empty: the query now fails (rows kept), e.g. SUM overflow
};

// The node's link to its server.
struct SyncState {
  bool syncing = false;      // the node has a server (here or in the leader process)
  bool online = false;       // syncing, and no connection attempt failed since the last welcome
  std::string last_error;    // what the last connection attempt hit ("" if none failed)
  int64_t db_version = 0;    // the local database's version
  int64_t acked_version = 0; // the server holds every own change up to this version
  int64_t pending_changes = 0;  // own changes the server has not acknowledged yet
};

}  // namespace tandem::api
