// Schema evolution of replicated tables: which differences between a table as it is and a
// newer declaration of it Tandem applies in place, and the refusals for the others
// (docs/schema.md).
//
// The allowed change is appending columns that are nullable or have a constant DEFAULT: SQLite
// adds such a column without touching a row (ALTER TABLE ADD COLUMN rewrites only the table's
// CREATE text), and existing clock records simply lack the column's cell (store_format.hpp), so
// a migration costs the same for 10 rows and for 10 million. Anything that would change what
// an existing column means to the devices still on the old schema (its name, type, key
// position, NOT NULL, DEFAULT, collation) or its position is refused, naming the table and the
// column and saying what to do instead.
//
// Internal to runtime/store; every function works on the connection it is given, on the
// caller's thread, inside the caller's transaction.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/database.hpp"
#include "runtime/store/schema.hpp"

namespace tandem {

// Compares the columns of table `table` before and after (both from read_columns). Returns the
// indexes into `after` of the columns it appends to `before`, or UNSUPPORTED naming the first
// difference that is not such an append: a dropped, renamed, moved or changed column, a new
// column inside the existing ones, in the key, generated, or NOT NULL without a DEFAULT.
Result<std::vector<size_t>> appended_columns(const std::string& table, const std::vector<ColumnInfo>& before,
                                             const std::vector<ColumnInfo>& after);

// The column definitions of a CREATE TABLE statement as written, as (column name, text)
// pairs in order; table constraints (PRIMARY KEY(...), UNIQUE, CHECK, FOREIGN KEY,
// CONSTRAINT) are left out. INVALID_ARGUMENT when the text has no column list.
Result<std::vector<std::pair<std::string, std::string>>> column_definitions(const std::string& create_table_sql);

// What a newer declaration of a replicated table adds to it.
struct ColumnPlan {
  std::vector<std::pair<std::string, std::string>> additions;  // (column, definition) to append, in order
  std::vector<ColumnInfo> declared;                             // the declaration's columns
};

// The replicated table `live` (as the store holds it) against `declared_sql`, a CREATE TABLE
// statement of the same table: the declaration is built in a scratch in-memory database and
// compared column by column. Returns the columns to append with ALTER TABLE ADD COLUMN
// (none: nothing to do), or the refusal (the declaration breaks one of the rules of a
// replicated table, or changes the table in another way).
Result<ColumnPlan> plan_added_columns(const TableInfo& live, const std::string& declared_sql);

// Appends the plan's columns to `live` on `db` (one ALTER TABLE ... ADD COLUMN statement each)
// and checks that the table then has the declaration's columns. SQLite's own refusals (a
// non-constant DEFAULT) come back naming the table and column.
Status add_columns(Database& db, const TableInfo& live, const ColumnPlan& plan);

// Sets ColumnInfo::default_value for every column of `t` with a DEFAULT: the DEFAULT stored
// into a scratch table of the same declared type and read back, so with the column's affinity
// applied as SQLite applies it to a row that predates the column.
Status fill_default_values(TableInfo& t);

// The cell count of `t`'s records in their original forms (TableInfo::base_cells): stored in
// tandem_meta once a migration added columns, else the table's value columns.
Result<size_t> load_base_cells(Database& db, const TableInfo& t);
// Records t.base_cells in tandem_meta if not recorded yet (the first migration of `t`).
Status save_base_cells(Database& db, const TableInfo& t);

}  // namespace tandem
