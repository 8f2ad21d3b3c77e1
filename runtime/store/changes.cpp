// Store::changes_since and the change-log compaction.
//
// tandem_changelog lists, per db_version and table, the keys whose clock records that
// version wrote. Extraction walks the entries after the cursor in version order; for each
// listed key it reads the record and emits the cells (and sentinel) whose db_version is the
// entry's version, so a key listed again by a later version emits each cell exactly once, at
// its latest version. Within a version, changes are ordered by seq, then table, key and
// column, which is deterministic across runs.
//
// A key that a later version rewrote stays listed under the older version (it emits nothing
// there). When the listed keys outgrow the clock records (2x plus a constant), the log is
// rebuilt from the records inside the writing transaction: O(records), amortized over at
// least as many writes.
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <set>

#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/store_impl.hpp"

namespace tandem {
namespace {

struct Pending {
  int64_t seq;
  size_t table;
  std::string key;  // encoded, for ordering
  int cell;         // -1 sentinel
  change::Change change;
};

Status decode_record(const TableInfo& t, Statement& st, int cl_column, int clock_column, RowClock* clock) {
  clock->exists = true;
  clock->cl = st.column_int64(cl_column);
  auto* p = static_cast<const char*>(sqlite3_column_blob(st.raw(), clock_column));
  auto n = static_cast<size_t>(sqlite3_column_bytes(st.raw(), clock_column));
  return decode_clock(std::string_view(p ? p : "", n), t.value_columns.size(), clock).with_context("clock of a row of " + t.name);
}

}  // namespace

Result<change::ChangeBatch> Store::changes_since(int64_t since, const std::optional<SiteId>& exclude, size_t limit) {
  Impl& s = *impl_;
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_deferred());

  int64_t excluded = -1;
  if (exclude) {
    auto it = s.site_ordinals.find(site_bytes(*exclude));
    if (it != s.site_ordinals.end()) excluded = it->second;
  }
  std::map<int64_t, size_t> table_by_id;
  for (size_t i = 0; i < s.tables.size(); ++i) table_by_id[s.tables[i]->id] = i;

  change::ChangeBatch batch;
  batch.set_sender_site_id(site_bytes(s.site));
  batch.set_from_db_version(since);
  batch.set_complete(true);

  std::vector<Pending> pending;
  std::set<std::pair<size_t, std::string>> seen;
  int64_t current = -1;
  int64_t last_flushed = since;
  auto flush = [&] {
    std::sort(pending.begin(), pending.end(), [](const Pending& a, const Pending& b) {
      if (a.seq != b.seq) return a.seq < b.seq;
      if (a.table != b.table) return a.table < b.table;
      if (a.key != b.key) return a.key < b.key;
      return a.cell < b.cell;
    });
    for (auto& p : pending) *batch.add_changes() = std::move(p.change);
    pending.clear();
    seen.clear();
    if (current >= 0) last_flushed = current;
  };

  TANDEM_ASSIGN_OR_RETURN(auto entries, s.db->cached(
      "SELECT db_version, table_id, keys FROM tandem_changelog WHERE db_version > ?1 ORDER BY db_version, seq"));
  TANDEM_RETURN_IF_ERROR(entries->bind_int64(1, since));
  std::vector<Value> keys;
  bool cut = false;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool more, entries->step());
    if (!more) break;
    int64_t version = entries->column_int64(0);
    if (version != current) {
      flush();
      if (limit > 0 && static_cast<size_t>(batch.changes_size()) >= limit) {
        cut = true;
        break;
      }
      current = version;
    }
    auto table_it = table_by_id.find(entries->column_int64(1));
    if (table_it == table_by_id.end()) return Status::Internal("tandem_changelog names an unknown table");
    const size_t position = table_it->second;
    const TableInfo& t = *s.tables[position];
    auto* p = static_cast<const char*>(sqlite3_column_blob(entries->raw(), 2));
    auto n = static_cast<size_t>(sqlite3_column_bytes(entries->raw(), 2));
    TANDEM_RETURN_IF_ERROR(read_keys(std::string_view(p ? p : "", n), &keys));

    for (const Value& key : keys) {
      std::string encoded = key.is_integer() ? std::to_string(key.integer()) : key.bytes();
      if (!seen.emplace(position, encoded).second) continue;
      TANDEM_ASSIGN_OR_RETURN(RowClock clock, s.load_clock(t, key));
      if (!clock.exists) continue;
      Row pk;
      TANDEM_RETURN_IF_ERROR(key_values(t.integer_pk, key, &pk));
      std::optional<Row> row;
      bool row_loaded = false;
      auto emit = [&](int cell, const CellClock& c, const Value& value) {
        Pending out{c.seq, position, encoded, cell, change::Change()};
        change::Change& ch = out.change;
        ch.set_table(t.name);
        to_proto(pk, ch.mutable_pk());
        ch.set_cid(cell < 0 ? "-1" : t.columns[static_cast<size_t>(t.value_columns[static_cast<size_t>(cell)])].name);
        to_proto(value, ch.mutable_val());
        ch.set_col_version(c.col_version);
        ch.set_db_version(version);
        ch.set_site_id(site_bytes(s.sites[static_cast<size_t>(c.site)]));
        ch.set_cl(clock.cl);
        ch.set_seq(c.seq);
        pending.push_back(std::move(out));
      };
      for (size_t i = 0; i < clock.cells.size(); ++i) {
        const CellClock& c = clock.cells[i];
        if (c.col_version < 1 || c.db_version != version || c.site == excluded) continue;
        if (!row_loaded) {
          TANDEM_ASSIGN_OR_RETURN(row, s.load_row(t, pk));
          row_loaded = true;
        }
        if (!row) return Status::Internal("a live clock of " + t.name + " has no row");
        emit(static_cast<int>(i), c, (*row)[static_cast<size_t>(t.value_columns[i])]);
      }
      if (clock.sentinel.present() && clock.sentinel.db_version == version && clock.sentinel.site != excluded)
        emit(-1, clock.sentinel, Value());
    }
  }
  if (!cut) flush();
  batch.set_complete(!cut);
  batch.set_to_db_version(cut ? last_flushed : std::max(s.db_version, since));
  TANDEM_RETURN_IF_ERROR(txn.commit());
  return batch;
}

Status Store::verify() {
  Impl& s = *impl_;
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_deferred());
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("PRAGMA quick_check"));
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row || st->column(0).bytes() != "ok")
      return Status::Internal("SQLite quick_check: " + (row ? st->column(0).bytes() : std::string("no answer")));
  }
  int64_t records = 0;
  for (const auto& tp : s.tables) {
    const TableInfo& t = *tp;
    int64_t live = 0;
    TANDEM_ASSIGN_OR_RETURN(auto clocks, s.db->prepare("SELECT pk, cl, clock FROM " + t.clock_table()));
    RowClock clock;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, clocks->step());
      if (!row) break;
      ++records;
      TANDEM_RETURN_IF_ERROR(decode_record(t, *clocks, 1, 2, &clock));
      if (clock.cl < 1) return Status::Internal(t.name + ": a clock record with causal length " + std::to_string(clock.cl));
      for (const auto& c : clock.cells)
        if (c.present() && c.db_version > s.db_version) return Status::Internal(t.name + ": a clock ahead of db_version");
      if (!clock.alive()) continue;
      ++live;
      Row pk;
      TANDEM_RETURN_IF_ERROR(key_values(t.integer_pk, clocks->column(0), &pk));
      TANDEM_ASSIGN_OR_RETURN(auto data, s.load_row(t, pk));
      if (!data) return Status::Internal(t.name + ": a live clock record without its row");
    }
    TANDEM_ASSIGN_OR_RETURN(auto count, s.db->prepare("SELECT count(*) FROM " + t.quoted_name()));
    TANDEM_ASSIGN_OR_RETURN(bool row, count->step());
    if (!row || count->column_int64(0) != live)
      return Status::Internal(t.name + ": " + std::to_string(row ? count->column_int64(0) : -1) + " rows but " + std::to_string(live) +
                              " live clock records (a write bypassed Tandem?)");
  }
  if (records != s.clock_records)
    return Status::Internal("clock record counter says " + std::to_string(s.clock_records) + ", found " + std::to_string(records));
  return Status::Ok();
}

Status Store::Impl::compact_changelog_if_needed() {
  if (changelog_keys <= 2 * clock_records + 65536) return Status::Ok();
  std::map<int64_t, TouchedKeys> by_version;
  for (size_t position = 0; position < tables.size(); ++position) {
    const TableInfo& t = *tables[position];
    TANDEM_ASSIGN_OR_RETURN(auto st, db->prepare("SELECT pk, cl, clock FROM " + t.clock_table()));
    RowClock clock;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      TANDEM_RETURN_IF_ERROR(decode_record(t, *st, 1, 2, &clock));
      std::set<int64_t> versions;
      for (const auto& c : clock.cells)
        if (c.col_version >= 1) versions.insert(c.db_version);
      if (clock.sentinel.present()) versions.insert(clock.sentinel.db_version);
      Value key = st->column(0);
      for (int64_t v : versions) by_version[v].add(position, key);
    }
  }
  TANDEM_RETURN_IF_ERROR(db->exec("DELETE FROM tandem_changelog"));
  changelog_keys = 0;
  for (const auto& [version, keys] : by_version) TANDEM_RETURN_IF_ERROR(append_changelog(version, keys));
  return Status::Ok();
}

}  // namespace tandem
