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

// What one change costs in a batch besides its table name, key and value: the clock
// fields, site id and protobuf tags (an estimate; batches are bounded approximately).
constexpr size_t kChangeOverheadBytes = 48;

Status decode_record(const TableInfo& t, Statement& st, int cl_column, int clock_column, RowClock* clock) {
  clock->exists = true;
  clock->cl = st.column_int64(cl_column);
  auto* p = static_cast<const char*>(sqlite3_column_blob(st.raw(), clock_column));
  auto n = static_cast<size_t>(sqlite3_column_bytes(st.raw(), clock_column));
  return decode_clock(std::string_view(p ? p : "", n), t.value_columns.size(), t.base_cells, clock).with_context("clock of a row of " + t.name);
}

}  // namespace

Result<change::ChangeBatch> Store::changes_since(int64_t since, const std::optional<SiteId>& exclude, size_t limit) {
  ChangesRequest request;
  request.since = since;
  request.exclude = exclude;
  request.limit = limit;
  return changes(request);
}

namespace {

// Where a batch cut inside a version stopped: the version, the change-log entry, and the
// index of the next key of that entry.
struct ResumePoint {
  int64_t version = 0;
  int64_t entry = 0;
  uint64_t key = 0;
};

std::string encode_resume(const ResumePoint& r) {
  std::string out;
  put_varint(out, static_cast<uint64_t>(r.version));
  put_varint(out, static_cast<uint64_t>(r.entry));
  put_varint(out, r.key);
  return out;
}

std::optional<ResumePoint> decode_resume(std::string_view in) {
  uint64_t v, e, k;
  if (!get_varint(in, &v) || !get_varint(in, &e) || !get_varint(in, &k) || !in.empty()) return std::nullopt;
  return ResumePoint{static_cast<int64_t>(v), static_cast<int64_t>(e), k};
}

}  // namespace

Result<change::ChangeBatch> Store::changes(const ChangesRequest& request) {
  Impl& s = *impl_;
  const int64_t since = request.since;
  if (since < 0) return Status::InvalidArgument("negative db_version");
  std::optional<ResumePoint> resume;
  if (!request.resume_after.empty()) {
    resume = decode_resume(request.resume_after);
    if (!resume || resume->version != since + 1)
      return Status::InvalidArgument("resume token does not continue a batch from db_version " + std::to_string(since));
  }
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_deferred());

  int64_t excluded = -1;
  if (request.exclude) {
    auto it = s.site_ordinals.find(site_bytes(*request.exclude));
    if (it != s.site_ordinals.end()) excluded = it->second;
  }
  // -1: every site; a site this store never saw has no changes here (-2 matches none).
  int64_t only = -1;
  if (request.only_from) {
    auto it = s.site_ordinals.find(site_bytes(*request.only_from));
    only = it != s.site_ordinals.end() ? it->second : -2;
  }
  const auto wanted = [&](int64_t site) { return site != excluded && (only == -1 || site == only); };
  std::map<int64_t, size_t> table_by_id;
  for (size_t i = 0; i < s.tables.size(); ++i) table_by_id[s.tables[i]->id] = i;
  // Per table position: whether its entries are read at all, and which cells (empty: all,
  // and the sentinel) when only_columns lists some.
  std::vector<bool> table_wanted(s.tables.size(), true);
  std::vector<std::vector<bool>> cells_wanted(s.tables.size());
  if (!request.only_columns.empty()) {
    const auto lower = [](std::string v) {
      for (auto& ch : v)
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
      return v;
    };
    for (size_t i = 0; i < s.tables.size(); ++i) {
      const TableInfo& t = *s.tables[i];
      auto listed = request.only_columns.find(lower(t.name));
      table_wanted[i] = listed != request.only_columns.end();
      if (!table_wanted[i] || listed->second.empty()) continue;
      cells_wanted[i].resize(t.value_columns.size());
      for (size_t c = 0; c < t.value_columns.size(); ++c)
        cells_wanted[i][c] = listed->second.count(lower(t.columns[static_cast<size_t>(t.value_columns[c])].name)) > 0;
    }
  }

  change::ChangeBatch batch;
  batch.set_sender_site_id(site_bytes(s.site));
  batch.set_from_db_version(since);
  batch.set_complete(true);
  const auto count = [&] { return static_cast<size_t>(batch.changes_size()); };
  size_t bytes = 0;  // estimated serialized size of the changes so far
  const auto full = [&] {
    return (request.limit > 0 && count() >= request.limit) || (request.max_bytes > 0 && bytes >= request.max_bytes);
  };

  TANDEM_ASSIGN_OR_RETURN(auto entries, s.db->cached(
      "SELECT seq, db_version, table_id, keys FROM tandem_changelog WHERE db_version > ?1 ORDER BY db_version, seq"));
  TANDEM_RETURN_IF_ERROR(entries->bind_int64(1, since));
  std::vector<Value> keys;
  std::set<std::pair<size_t, std::string>> seen;  // within the current version
  int64_t current = -1, last_complete = since;
  bool cut = false;
  struct Emitted {
    int64_t seq;
    int cell;
    const CellClock* clock;
  };
  std::vector<Emitted> cells;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool more, entries->step());
    if (!more) break;
    const int64_t entry = entries->column_int64(0);
    const int64_t version = entries->column_int64(1);
    if (version != current) {
      if (current >= 0) last_complete = current;
      if (full()) {
        cut = true;
        break;
      }
      current = version;
      seen.clear();
    }
    if (resume && version == resume->version && entry < resume->entry) continue;
    auto table_it = table_by_id.find(entries->column_int64(2));
    if (table_it == table_by_id.end()) return Status::Internal("tandem_changelog names an unknown table");
    const size_t position = table_it->second;
    if (!table_wanted[position]) continue;
    const TableInfo& t = *s.tables[position];
    const std::vector<bool>& only_cells = cells_wanted[position];
    auto* p = static_cast<const char*>(sqlite3_column_blob(entries->raw(), 3));
    auto n = static_cast<size_t>(sqlite3_column_bytes(entries->raw(), 3));
    TANDEM_RETURN_IF_ERROR(read_keys(std::string_view(p ? p : "", n), &keys));

    size_t first_key = resume && version == resume->version && entry == resume->entry ? static_cast<size_t>(resume->key) : 0;
    for (size_t k = first_key; k < keys.size(); ++k) {
      if (request.split_versions && full()) {
        // Cut inside this version, at a row boundary.
        cut = true;
        batch.set_resume_after(encode_resume(ResumePoint{version, entry, k}));
        last_complete = version - 1;
        break;
      }
      const Value& key = keys[k];
      std::string encoded = key.is_integer() ? std::to_string(key.integer()) : key.bytes();
      if (!seen.emplace(position, encoded).second) continue;
      TANDEM_ASSIGN_OR_RETURN(RowClock clock, s.load_clock(t, key));
      if (!clock.exists) continue;
      cells.clear();
      for (size_t i = 0; i < clock.cells.size(); ++i) {
        const CellClock& c = clock.cells[i];
        if (c.col_version >= 1 && c.db_version == version && wanted(c.site) && (only_cells.empty() || only_cells[i]))
          cells.push_back({c.seq, static_cast<int>(i), &c});
      }
      if (only_cells.empty() && clock.sentinel.present() && clock.sentinel.db_version == version && wanted(clock.sentinel.site))
        cells.push_back({clock.sentinel.seq, -1, &clock.sentinel});
      if (cells.empty()) continue;
      std::sort(cells.begin(), cells.end(), [](const Emitted& a, const Emitted& b) {
        return a.seq != b.seq ? a.seq < b.seq : a.cell < b.cell;
      });
      Row pk;
      TANDEM_RETURN_IF_ERROR(key_values(t.integer_pk, key, &pk));
      std::optional<Row> row;
      if (clock.alive()) {
        TANDEM_ASSIGN_OR_RETURN(row, s.load_row(t, pk));
        if (!row) return Status::Internal("a live clock of " + t.name + " has no row");
      }
      // The row's size is known only once it is read: a row that would take a non-empty
      // batch over max_bytes starts the next batch instead (read again there), so that a
      // large value never rides along with others.
      size_t row_bytes = 0;
      for (const Emitted& e : cells) {
        row_bytes += kChangeOverheadBytes + t.name.size() + encoded.size();
        if (e.cell >= 0 && row) {
          const Value& v = (*row)[static_cast<size_t>(t.value_columns[static_cast<size_t>(e.cell)])];
          if (v.is_text() || v.is_blob()) row_bytes += v.bytes().size();
        }
      }
      if (request.split_versions && request.max_bytes > 0 && count() > 0 && bytes + row_bytes > request.max_bytes) {
        cut = true;
        batch.set_resume_after(encode_resume(ResumePoint{version, entry, k}));
        last_complete = version - 1;
        break;
      }
      bytes += row_bytes;
      for (const Emitted& e : cells) {
        change::Change* ch = batch.add_changes();
        ch->set_table(t.name);
        to_proto(pk, ch->mutable_pk());
        if (e.cell < 0) {
          ch->set_cid("-1");
        } else {
          auto column = static_cast<size_t>(t.value_columns[static_cast<size_t>(e.cell)]);
          ch->set_cid(t.columns[column].name);
          to_proto((*row)[column], ch->mutable_val());
        }
        ch->set_col_version(e.clock->col_version);
        ch->set_db_version(version);
        ch->set_site_id(site_bytes(s.sites[static_cast<size_t>(e.clock->site)]));
        ch->set_cl(clock.cl);
        ch->set_seq(e.seq);
      }
    }
    if (cut) break;
  }
  if (!cut && current >= 0) last_complete = current;
  batch.set_complete(!cut);
  batch.set_to_db_version(cut ? last_complete : std::max(s.db_version, since));
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
  return rebuild_changelog();
}

Status Store::Impl::rebuild_changelog() {
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
