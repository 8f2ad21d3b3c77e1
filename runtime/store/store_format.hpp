// On-disk format of a Tandem store, and the codecs for its compact records.
//
// Tables Tandem adds to the application's SQLite file (all named tandem_*):
//   tandem_meta(key TEXT PRIMARY KEY, value)           'format' = 1, 'site_id' = 16-byte BLOB,
//                                                      'db_version' = INTEGER, 'fsync_marks' =
//                                                      INTEGER (Store::sync() calls: each changes it,
//                                                      so that its commit has a page to write and
//                                                      the WAL an fsync to do), 'sync_*' = TEXT
//                                                      (Store::note: the sync layer's binding)
//   tandem_sites(ordinal INTEGER PRIMARY KEY, site_id BLOB UNIQUE)
//                                                      ordinal 0 is this replica; clocks store ordinals
//   tandem_tables(id INTEGER PRIMARY KEY, name TEXT UNIQUE, value_columns TEXT)
//                                                      registered tables; value_columns is the JSON
//                                                      list of non-key columns in clock order
//   tandem_clock_<id>(pk PRIMARY KEY, cl INTEGER, clock BLOB)
//                                                      one record per row that ever existed: the row's
//                                                      causal length and every cell clock (below)
//   tandem_changelog(seq INTEGER PRIMARY KEY, db_version INTEGER, table_id INTEGER, keys BLOB)
//                                                      which rows each version touched (below)
//   tandem_peers(site_id BLOB PRIMARY KEY, received INTEGER, acked INTEGER)
//                                                      the peer-tracking table
//   tandem_requests(key TEXT UNIQUE, db_version INTEGER, rows_changed INTEGER, last_key INTEGER)
//                                                      outcomes of keyed writes (Store::write's
//                                                      request_key), the newest 1,000: a write sent
//                                                      again after a leader process died runs once
//
// Why a record per row, not a row per cell (cr-sqlite's layout): a local INSERT then costs one
// B-tree insert for the clocks instead of one per column plus an index entry per column, and a
// merge reads and writes one record per row instead of one per cell. Measured on this machine:
// per-cell clock rows written by triggers run at ~0.11x of plain SQLite for 10,000-row
// transactions; per-row records written from the preupdate hook at ~0.56x.
//
// Clock record (`clock` BLOB, unsigned LEB128 varints):
//   0x01 dbv site seq0            "uniform": every value column has col_version 1, db_version dbv,
//                                 site ordinal `site` and seq seq0 + i (i = position in clock
//                                 order); no sentinel. This is every freshly inserted row.
//   0x02 cell* sentinel           general: per value column in clock order either 0 (no clock:
//                                 the column's clock was dropped by a delete) or col_version+1
//                                 dbv site seq; then the sentinel: 0 (none) or 1 dbv site seq
//                                 (its col_version is the record's cl).
//   0x03 n dbv site seq0          "uniform" with its cell count n
//   0x04 n cell* sentinel         general with its cell count n (n cells, then the sentinel)
// Forms 1 and 2 hold the table's `base_cells` cells: its value columns when it was registered
// (tandem_meta 'base_cells_<id>' once a migration added columns, schema_change.cpp). Forms 3
// and 4 are written only for a table whose value columns outgrew base_cells, so the records of
// a table that never migrated keep forms 1 and 2 byte for byte, and a migration rewrites no
// record. A record with fewer cells than the table has value columns lacks the columns added
// after it was written: those cells decode as absent (no clock), i.e. never written: the row
// holds the column's DEFAULT (or NULL) and any remote write of the column wins.
// Keys: for a table with a single INTEGER PRIMARY KEY the clock `pk` is that integer; otherwise
// it is the BLOB encode_key() of the key values (a type byte per value, then 8 bytes for numbers
// or a varint length and the bytes for text and blobs).
//
// Invariants (kept by every write path, checked by tests):
//   - a row exists in the data table iff its clock record exists with an odd cl;
//   - every cell clock's db_version and the sentinel's db_version are <= tandem_meta db_version;
//   - for every (db_version, table, key) whose record holds a clock at that db_version, a
//     tandem_changelog entry of that db_version and table lists the key. Entries may also list
//     keys whose clocks later moved on (they are skipped when read) and are compacted when
//     they outgrow the clock records (see changes.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/value.hpp"

namespace tandem {

struct CellClock {
  int64_t col_version = -1;  // -1: no clock
  int64_t db_version = 0;
  int64_t site = 0;          // ordinal in tandem_sites
  int64_t seq = 0;
  bool present() const { return col_version >= 0; }
};

struct RowClock {
  bool exists = false;       // a record exists for the key
  int64_t cl = 0;            // causal length; odd: the row exists
  CellClock sentinel;        // present iff a sentinel was recorded (col_version == cl)
  std::vector<CellClock> cells;  // one per value column, clock order

  int64_t local_cl() const { return exists ? cl : 0; }
  bool alive() const { return exists && (cl & 1) == 1; }
};

// Varint helpers (unsigned LEB128). get_varint returns false on truncated input.
void put_varint(std::string& out, uint64_t v);
bool get_varint(std::string_view& in, uint64_t* v);

// `base_cells`: the cell count of the table's records in forms 1 and 2 (TableInfo::base_cells).
std::string encode_clock(const RowClock& clock, size_t base_cells);
void encode_clock(const RowClock& clock, size_t base_cells, std::string* out);  // into a reused buffer
// Decodes into `clock` (cells resized to `cells`, the table's value columns now; cells the
// record predates are absent); the caller sets exists and cl. A record with more than
// `cells` cells is corrupt.
Status decode_clock(std::string_view bytes, size_t cells, size_t base_cells, RowClock* clock);

// Key encoding for tables without a single INTEGER PRIMARY KEY.
std::string encode_key(const Row& pk);
Status decode_key(std::string_view bytes, Row* pk);

// The clock-table key of a row: the integer itself for INTEGER PRIMARY KEY tables, else a BLOB.
Value clock_key(bool integer_pk, const Row& pk);
// The primary-key values back from a clock-table key.
Status key_values(bool integer_pk, const Value& key, Row* pk);

// A list of clock keys (one tandem_changelog entry).
void append_key(std::string& out, const Value& key);
Status read_keys(std::string_view bytes, std::vector<Value>* keys);

}  // namespace tandem
