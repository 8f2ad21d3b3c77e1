// DeltaContext: what the operators share while one operation (a batch, an overlay change,
// hydration) flows through them. The view's driver builds it on the stack for each operation
// and moves its position; operators receive it as `const DeltaContext&` and never keep it.
//
// Invariant (position): while batch V's delta i is processed, the operators hold the result of
// the query over every batch <= V-1, deltas 0..i-1 of V (and delta i for occurrences that
// precede the one being processed, for self-joins), with the overlay's displayed rows in place
// of the base rows of touched keys (TableOverlay::graph). The Lookup brings every read back to
// exactly this position (lookup.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/ivm/operators/rows.hpp"
#include "runtime/store/row_delta.hpp"

namespace tandem::ivm {

class Lookup;
struct Downstream;

// The overlay's rows of one table's keys touched by pending mutations (owned by OverlayState).
struct TableOverlay {
  std::shared_ptr<const TableSchema> schema;
  std::unordered_map<std::string, std::optional<Row>> base;   // confirmed rows of touched keys
  std::unordered_map<std::string, std::optional<Row>> graph;  // what the operators were told
};
using OverlayTables = std::map<std::string, TableOverlay>;

// The overlay change being told to the operators: key `key` of `table` showed `old` before it.
// Lookups that exclude the change being processed see `old` for that key.
struct OverlayDelta {
  const std::string& table;
  const std::string& key;
  const std::optional<Row>& old;
};

struct DeltaContext {
  // Position: the batch being applied and the index of its delta being processed; without a
  // batch (hydration, overlay operations) the view stands at `applied`.
  const DeltaBatch* batch = nullptr;
  size_t index = 0;
  int64_t applied = 0;
  // The overlay's displayed rows (never null while a view runs) and the change in progress.
  const OverlayTables* overlay = nullptr;
  const OverlayDelta* overlay_delta = nullptr;
  // The compensated reader holding the operation's read transaction.
  Lookup* lookup = nullptr;
  // Where joined tuples go, and, when set, where the plain projection collects its entries
  // instead of writing the result (a join window's refill gathers tuples this way).
  const Downstream* downstream = nullptr;
  std::vector<Entry>* collect = nullptr;

  int64_t position() const { return batch ? batch->db_version : applied; }
};

}  // namespace tandem::ivm
