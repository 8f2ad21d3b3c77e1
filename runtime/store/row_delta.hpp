// Row deltas: what one committed transaction did to the rows of replicated tables.
// The store produces them for local writes and merges; views consume them (IVM).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/change.pb.h"
#include "runtime/sqlite/value.hpp"

namespace tandem {

// One row's net change in a transaction. Rows hold every column of the table, in the
// table's declared column order. No old_row: an insert; no new_row: a delete.
struct RowDelta {
  std::string table;
  std::optional<Row> old_row;
  std::optional<Row> new_row;
};

enum class DeltaOrigin { local = 0, merge = 1 };

struct DeltaBatch {
  int64_t db_version = 0;        // the version the transaction committed as
  DeltaOrigin origin = DeltaOrigin::local;
  std::string mutation_id;       // set when the transaction ran a view's mutation
  std::vector<RowDelta> deltas;  // at most one per (table, primary key)
};

void to_proto(const DeltaBatch& batch, change::RowDeltaBatch* out);
DeltaBatch from_proto(const change::RowDeltaBatch& batch);

}  // namespace tandem
