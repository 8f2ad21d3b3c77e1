// The one rule for what a structured mutation (tandem.worker.Mutation) may say. The store
// runs it before writing and the IVM overlay before showing a mutation as pending, so that a
// view never shows optimistically what the store will refuse for its shape (only the
// database's own verdict, a CHECK or a trigger, can still roll a mutation back).
#pragma once

#include <string>
#include <vector>

#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem {

// A table as a mutation sees it: its columns in declared order and its key columns.
struct MutationTable {
  const std::string& name;
  const std::vector<std::string>& columns;
  const std::vector<int>& pk;  // indexes into columns, in key order
};

// Column index of `name` under SQLite's rule for identifiers (ASCII case-insensitive), or -1.
int mutation_column(const std::vector<std::string>& columns, const std::string& name);

// Checks one mutation against its table: an operation is set; named columns exist and are
// named once; values match columns; an insert names at least one column and every key column
// (a view shows the row under its key before the commit; Tandem allocates keys only for SQL
// inserts, keys.hpp); an update names at least one column; an update or delete gives exactly
// one value per key column. The message names the table and the column.
Status validate_mutation(const MutationTable& table, const worker::Mutation& m);

// True when `table` is registered as replicated in the store file open on `db` (the only
// tables a mutation may write).
Result<bool> is_replicated_table(Database& db, const std::string& table);

}  // namespace tandem
