// Device-unique keys for rows inserted without one.
//
// Why: SQLite gives a row inserted into an INTEGER PRIMARY KEY table without a key the value
// max(rowid) + 1. Two devices that insert while apart both pick the same number, and after
// sync the merge rules treat the two rows as one (the greater value of each column wins): a
// row is silently lost. Tandem therefore allocates such keys itself, from a block of the
// 64-bit key space that belongs to the device:
//
//   key = block * 2^32 + n,   block = 1 + (FNV-1a-64(site id) mod (2^31 - 1)),   n = 1, 2, ...
//
// - Unique across devices: two devices of a user share a block only if their 128-bit random
//   site ids hash to the same of 2^31 - 1 blocks (about 2e-8 for 10 devices).
// - Ordered by time on one device: n is one more than the greatest key of the block that the
//   table or its clock records hold, so keys of deleted rows are never reused (their clock
//   records stay), and a key is never handed out twice.
// - Apart from keys applications choose: every allocated key is >= 2^32, so small explicit
//   keys (1, 2, 3, ...) never meet an allocated one.
//
// How: SQLite cannot be told which rowid to pick, so each such table gets a TEMP trigger on
// Tandem's own connection (other programs on the file see nothing):
//   BEFORE INSERT ... WHEN NEW.<key> = -1 AND NOT tandem_merging()
//   BEGIN INSERT INTO <table>(<key>, <columns>) VALUES (tandem_next_key(<id>), NEW.<columns>);
//         SELECT RAISE(IGNORE); END
// In a BEFORE INSERT trigger SQLite shows an omitted or NULL INTEGER PRIMARY KEY as -1; the
// trigger inserts the row under an allocated key and drops the original insert. Consequences,
// documented in docs/crdt.md: an explicit key of -1 is treated as "no key"; the statement's
// own sqlite3_changes() and last_insert_rowid() do not see the row (Tandem reports rows changed
// from total_changes and the allocated key as CommitResult::last_key); RETURNING yields no row
// for it. SQLite copies an inserted row's values once more for the trigger, merges included
// (StoreOptions::allocate_keys turns it off for stores that never insert locally).
#pragma once

#include <cstdint>

#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"

namespace tandem {

constexpr int64_t kKeyBlockBits = 32;

// The device's block for `site` (1 .. 2^31 - 1).
int64_t key_block(const SiteId& site);
// The first and last key of a block.
int64_t block_first_key(int64_t block);
int64_t block_last_key(int64_t block);

}  // namespace tandem
