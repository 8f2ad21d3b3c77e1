// Backfill for a late-upgraded device (docs/schema.md, "Backfill"): which cells a device
// must be sent from the start of the channel's history, because its cursor is already past
// changes to tables or columns it did not declare when they were forwarded.
//
// The channel keeps, per site, the columns that site is *covered* for: every change of those
// columns up to the site's cursor was forwarded to it. A hello declaring more than the
// covered set gets the difference as a backfill up to its forward_from; the covered set is
// widened only once the client acknowledged the whole backfill, so a connection lost or a
// server restarted in the middle simply starts the backfill again (merges are idempotent).
// Pure functions; the set is stored as a note of the channel's file (Store::note).
#pragma once

#include <optional>
#include <string>

#include "runtime/store/store.hpp"
#include "runtime/sync/schema_sync.hpp"

namespace tandem::sync_backfill {

using sync_schema::DeclaredColumns;

// The Store note holding `site`'s covered columns.
std::string covered_note_key(const SiteId& site);
// One line per table: the table name and its columns, separated by tabs (declared names
// hold no control characters, sync_schema checks that). decode returns nullopt for text
// that is not such lines.
std::string encode_columns(const DeclaredColumns& columns);
std::optional<DeclaredColumns> decode_columns(const std::string& text);

struct Plan {
  // Tables and columns to backfill: a table with no columns listed is new to the device and
  // goes whole (sentinels included); otherwise only the listed columns' cells.
  DeclaredColumns backfill;
  // What to record as covered at the join (before any forward of the session): the
  // declared columns the device stays covered for; nullopt: the record stays as it is.
  std::optional<DeclaredColumns> record_now;
};

// `declared`: the hello's tables (empty: the device declared none and is sent every table,
// so there is nothing to backfill and nothing to record). `covered`: the stored record
// (nullopt: none). `from`: the session's forward_from. A device starting from 0 gets every
// change by the ordinary stream. A device with a cursor and no record synced before records
// existed (or its record was lost): everything it declares is backfilled, whole tables.
Plan plan(const DeclaredColumns& declared, const std::optional<DeclaredColumns>& covered, int64_t from);

}  // namespace tandem::sync_backfill
