// What Tandem knows about a replicated table, and the validation that decides which tables
// it accepts. The rules and their reasons are in docs/crdt.md ("What a replicated table may
// be"); in short, rows arrive column by column and in any order, so every constraint that
// could refuse an intermediate state of a merge is refused at registration instead.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem {

struct ColumnInfo {
  std::string name;
  std::string declared_type;
  int pk_position = 0;    // 1-based position in the primary key, 0 when not a key column
  bool not_null = false;
  bool has_default = false;
  std::string default_sql;  // the DEFAULT expression as written, when has_default
  std::string collation;    // BINARY unless declared
  bool generated = false;   // a generated (VIRTUAL or STORED) column
  // The DEFAULT's value as a row stored before the column was added reads it. Set by the
  // store (fill_default_values) for replicated tables; Capture needs it because SQLite 3.40's
  // preupdate hook reports such a column as NULL instead.
  std::optional<Value> default_value;
  // REAL affinity: SQLite stores integral reals as integers on disk and hands them out as
  // INTEGER from the preupdate hook (inserts) and from RETURNING; readers realify them.
  bool real_affinity = false;
};

// INTEGER -> REAL for REAL-affinity columns, as a SELECT would return the row.
void realify(const std::vector<ColumnInfo>& columns, Row& row);

struct TableInfo {
  int64_t id = 0;                    // Tandem's table number (names the clock table)
  std::string name;
  std::vector<ColumnInfo> columns;   // every column, in declared order (row layout)
  std::vector<int> pk_columns;       // indexes into columns, in primary-key order
  std::vector<int> value_columns;    // non-key columns, in declared order (clock layout)
  bool integer_pk = false;           // a single INTEGER PRIMARY KEY (the rowid)
  // The definition may hold a CHECK constraint (the word CHECK appears in its SQL): merges
  // switch CHECKs off only around such tables, since the pragma that does it expires every
  // compiled statement of the connection.
  bool may_have_check = false;
  // Cells of the table's clock records in their original forms (store_format.hpp): its value
  // columns when it was registered. Set by the store, not by inspect_table.
  size_t base_cells = 0;

  // Index into `columns` of the column named `name` (exact match), or -1.
  int column_index(const std::string& name) const;
  // Index into `value_columns` of the value column named `name`, or -1.
  int value_index(const std::string& name) const;
  std::string clock_table() const { return "tandem_clock_" + std::to_string(id); }
  std::string quoted_name() const;
};

// Double-quotes an identifier for SQL.
std::string quote_identifier(const std::string& name);

// The application's tables (not SQLite's, not Tandem's), in the order they were created.
Result<std::vector<std::string>> application_tables(Database& db);

// Every column of a table as SQLite reports it (PRAGMA table_xinfo), in declared order,
// without judging it. NOT_FOUND when there is no such table.
Result<std::vector<ColumnInfo>> read_columns(Database& db, const std::string& table);

// Reads a table's definition and checks it against what Tandem supports. Refuses, with a
// message naming the table and the feature: missing tables, views, WITHOUT ROWID tables,
// tables without an explicit PRIMARY KEY, nullable key columns (other than INTEGER PRIMARY
// KEY), non-BINARY collations on key columns, UNIQUE constraints or indexes other than the
// key, FOREIGN KEY clauses, NOT NULL value columns without a DEFAULT, generated columns,
// names reserved by Tandem (tandem_*, a column named "-1").
Result<TableInfo> inspect_table(Database& db, const std::string& name);

// True when `name` is one of Tandem's own tables (reserved prefix).
bool is_reserved_table_name(const std::string& name);

}  // namespace tandem
