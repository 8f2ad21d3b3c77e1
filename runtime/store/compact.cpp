// Store::compact and Store::reconcile_snapshot: removing metadata no peer needs any more, and
// the device's side of a re-sync after such a removal (docs/crdt.md, "Compaction").
//
// What a store keeps that only the past needs:
//   - tombstones: the clock record of a deleted row (its causal length, the sentinel's clock;
//     a delete already drops the column clocks, so the record holds nothing else);
//   - change-log listings of keys whose clocks later moved on (changes.cpp skips them);
//   - peers in tandem_peers that will never come back.
//
// What may be dropped without breaking convergence:
//   - A tombstone exists so that a change of an older life of the row (cl below the
//     tombstone's) loses: an update from a device that has not seen the delete yet (the delete
//     must win over it), or the arrival of the row's insert after its delete. Once a peer has
//     acknowledged holding our db_version v, it merged the delete stamped v: its own record of
//     the row is the tombstone (or a later life), its column clocks of the old life are gone,
//     and so it can never again send a change of that life: its later writes to the key are a
//     re-insert at the next odd cl, which creates the row whether the tombstone is here or not
//     (rule 3 against local_cl 0 or against the tombstone gives the same row). Pushes of a
//     device reach the server in order on one connection, before its ack of the delete; a push
//     lost with a connection is read again from the device's clocks, which no longer hold it.
//     So a tombstone at db_version <= min(acked of every known peer) is dropped (the horizon).
//   - A resurrecting re-insert is thus safe; what is not is a peer the horizon did not count:
//     one not yet known (a new device), or one expired. Either may hold rows, or write keys,
//     of lives whose delete it never saw and can no longer be sent. Its cursor is then below
//     compacted_through() (the highest db_version of a dropped tombstone), and the server
//     tells it to re-sync: it receives the whole current state, and reconcile_snapshot()
//     deletes what it held that the server knew and no longer has (the delete won there, and
//     would have won over any concurrent update of that life), keeping only rows that hold
//     nothing but its own unacknowledged writes (new rows, to push), whose causal length it
//     raises above every compacted one (compacted_cl()) when it is not already: a re-insert
//     made while away, or a never-synced device's insert of a key deleted and compacted,
//     would otherwise be taken by the server (no record) and ignored by devices that kept
//     the tombstone. Such a write then wins over those deletes. For rows the server knew it
//     keeps a tombstone at the next even cl, as a device that merged the delete would, so
//     that an allocated key is never handed out again and other devices' re-inserts win.
//     Left open: the true cl is gone with the server's tombstone; when the row lived and died
//     again while the device was away, the device's own later explicit re-insert of the key
//     (its cl + 2) can be below the tombstones other devices kept, which ignore it while the
//     server takes it (docs/crdt.md). Keys Tandem allocates (keys.hpp) are never re-inserted.
//   - Change-log listings: the log is rebuilt from the remaining clock records, so it lists
//     each key once, under the version of each of its clocks; nothing a reader can be sent
//     is lost (every live clock and remaining tombstone stays listed).
//   - Peers unseen for longer than the expiry are forgotten before the horizon is taken, so
//     they no longer hold it back; when they return they re-sync as above.
// Rows, live clock records and db_version never change, so a compaction sends nothing and a
// store compacted at any point merges every later batch exactly as before.
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <climits>

#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/store_impl.hpp"

namespace tandem {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Result<int64_t> meta_integer(Database& db, const std::string& key) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.cached("SELECT value FROM tandem_meta WHERE key = ?1"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(key)));
  TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
  const int64_t v = found ? st->column_int64(0) : 0;
  st->reset();
  return v;
}

Status decode_row_clock(const TableInfo& t, Statement& st, RowClock* clock) {
  clock->exists = true;
  clock->cl = st.column_int64(1);
  auto* p = static_cast<const char*>(sqlite3_column_blob(st.raw(), 2));
  auto n = static_cast<size_t>(sqlite3_column_bytes(st.raw(), 2));
  return decode_clock(std::string_view(p ? p : "", n), t.value_columns.size(), t.base_cells, clock)
      .with_context("clock of a row of " + t.name);
}

Status delete_records(Database& db, const TableInfo& t, const std::vector<Value>& keys) {
  if (keys.empty()) return Status::Ok();
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("DELETE FROM " + t.clock_table() + " WHERE pk = ?1"));
  for (const Value& key : keys) {
    st->reset();
    TANDEM_RETURN_IF_ERROR(st->bind(1, key));
    TANDEM_RETURN_IF_ERROR(st->run());
  }
  return Status::Ok();
}

}  // namespace

void collect_snapshot_keys(const change::ChangeBatch& batch, SnapshotKeys* keys) {
  for (const auto& ch : batch.changes()) (*keys)[lower(ch.table())].insert(encode_key(from_proto(ch.pk())));
}

int64_t Store::compacted_through() const {
  auto v = meta_integer(*impl_->db, "compacted_through");
  return v.ok() ? *v : 0;
}

int64_t Store::compacted_cl() const {
  auto v = meta_integer(*impl_->db, "compacted_cl");
  return v.ok() ? *v : 0;
}

Result<CompactReport> Store::compact(const CompactOptions& options) {
  Impl& s = *impl_;
  CompactReport report;
  report.changelog_keys_before = s.changelog_keys;
  MirrorGuard mirror(s);
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());

  if (options.peer_expiry > 0) {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("DELETE FROM tandem_peers WHERE seen < ?1"));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(1, options.now - options.peer_expiry));
    TANDEM_RETURN_IF_ERROR(st->run());
    report.peers_expired = sqlite3_changes(s.db->raw());
  }
  {
    // No peer at all: nobody holds a cursor into our history, and any newcomer re-syncs.
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("SELECT count(*), min(acked) FROM tandem_peers"));
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    report.horizon = row && st->column_int64(0) > 0 ? st->column_int64(1) : s.db_version;
  }
  report.horizon = std::min(report.horizon, options.horizon_limit);

  TANDEM_ASSIGN_OR_RETURN(int64_t through, meta_integer(*s.db, "compacted_through"));
  TANDEM_ASSIGN_OR_RETURN(int64_t top_cl, meta_integer(*s.db, "compacted_cl"));
  for (const auto& tp : s.tables) {
    const TableInfo& t = *tp;
    std::vector<Value> drop;
    {
      // Even cl: a deleted row; its record holds the sentinel alone.
      TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("SELECT pk, cl, clock FROM " + t.clock_table() + " WHERE cl % 2 = 0"));
      RowClock clock;
      for (;;) {
        TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
        if (!row) break;
        TANDEM_RETURN_IF_ERROR(decode_row_clock(t, *st, &clock));
        int64_t newest = clock.sentinel.present() ? clock.sentinel.db_version : 0;
        for (const auto& c : clock.cells)
          if (c.present()) newest = std::max(newest, c.db_version);
        if (newest > report.horizon) continue;
        drop.push_back(st->column(0));
        through = std::max(through, newest);
        top_cl = std::max(top_cl, clock.cl);
      }
    }
    TANDEM_RETURN_IF_ERROR(delete_records(*s.db, t, drop));
    report.tombstones_removed += static_cast<int64_t>(drop.size());
  }
  s.clock_records -= report.tombstones_removed;
  TANDEM_RETURN_IF_ERROR(s.rebuild_changelog());
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare(
        "INSERT OR REPLACE INTO tandem_meta(key, value) VALUES ('compacted_through', ?1), ('compacted_cl', ?2)"));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(1, through));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(2, top_cl));
    TANDEM_RETURN_IF_ERROR(st->run());
  }
  TANDEM_RETURN_IF_ERROR(s.save_counters(s.db_version, s.clock_records, s.changelog_keys));
  TANDEM_RETURN_IF_ERROR(txn.commit());
  mirror.commit();
  report.changelog_keys_after = s.changelog_keys;
  report.compacted_through = through;
  return report;
}

Result<Store::MetadataSize> Store::metadata_size() {
  Impl& s = *impl_;
  MetadataSize size;
  // dbstat names each B-tree; Tandem's are its tables and their indexes (sqlite_autoindex_tandem_*).
  TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare(
      "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name LIKE 'tandem\\_%' ESCAPE '\\' "
      "OR name LIKE 'sqlite\\_autoindex\\_tandem\\_%' ESCAPE '\\'"));
  TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
  if (row) size.bytes = st->column_int64(0);
  for (const auto& t : s.tables) {
    TANDEM_ASSIGN_OR_RETURN(auto count, s.db->prepare("SELECT count(*) FROM " + t->clock_table() + " WHERE cl % 2 = 1"));
    TANDEM_ASSIGN_OR_RETURN(bool r, count->step());
    if (r) size.live_rows += count->column_int64(0);
  }
  return size;
}

Result<SnapshotReconcile> Store::reconcile_snapshot(const SnapshotKeys& seen, const SiteId& server, int64_t server_acked,
                                                    int64_t compacted_cl) {
  Impl& s = *impl_;
  SnapshotReconcile result;
  result.deltas.origin = DeltaOrigin::merge;
  MirrorGuard mirror(s);
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  s.merging = true;  // application triggers see a merge: the server's delete reaching us
  struct MergingFlag {
    bool& flag;
    ~MergingFlag() { flag = false; }
  } merging_flag{s.merging};
  TANDEM_ASSIGN_OR_RETURN(const int64_t server_ordinal, s.site_ordinal(site_bytes(server)));
  // The deletes take a db_version of their own, so that the views hear of them like of a merge.
  const int64_t version = s.db_version + 1;
  static const std::set<std::string> kNone;
  bool wrote = false;
  for (const auto& tp : s.tables) {
    const TableInfo& t = *tp;
    auto it = seen.find(lower(t.name));
    const std::set<std::string>& carried = it == seen.end() ? kNone : it->second;
    std::vector<Value> keys;
    std::vector<Row> pks;
    std::vector<RowClock> tombstones;
    std::vector<Value> raised_keys;
    std::vector<RowClock> raised;
    {
      // Live rows only: a tombstone the snapshot lacks was compacted there and stays here.
      TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("SELECT pk, cl, clock FROM " + t.clock_table() + " WHERE cl % 2 = 1"));
      RowClock clock;
      for (;;) {
        TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
        if (!row) break;
        Value key = st->column(0);
        Row pk;
        TANDEM_RETURN_IF_ERROR(key_values(t.integer_pk, key, &pk));
        if (carried.count(encode_key(pk))) continue;
        TANDEM_RETURN_IF_ERROR(decode_row_clock(t, *st, &clock));
        // Known to the server: some clock came from elsewhere, or is ours and acknowledged.
        auto known = [&](const CellClock& c) { return c.present() && (c.site != 0 || c.db_version <= server_acked); };
        if (!known(clock.sentinel) && std::none_of(clock.cells.begin(), clock.cells.end(), known)) {
          ++result.rows_kept;
          // Only our unacknowledged writes: a new row, or a re-insert of a key whose later
          // lives (deleted, compacted) we may never have seen. Devices that kept such a
          // tombstone (cl <= compacted_cl) would ignore it while the server, which has no
          // record, took it: it becomes a life above every compacted one.
          if (clock.cl <= compacted_cl) {
            RowClock up = clock;
            up.cl = compacted_cl + ((compacted_cl & 1) ? 2 : 1);
            up.sentinel = CellClock{up.cl, version, 0, 0};
            raised_keys.push_back(std::move(key));
            raised.push_back(std::move(up));
          }
          continue;
        }
        // The server's delete, as far as we can tell it: the next even cl. It is attributed
        // to the server's site so that it is never pushed (a client pushes only its own
        // changes).
        RowClock dead;
        dead.exists = true;
        dead.cl = clock.cl + 1;
        dead.sentinel = CellClock{dead.cl, version, server_ordinal, 0};
        dead.cells.assign(clock.cells.size(), CellClock{});
        keys.push_back(std::move(key));
        pks.push_back(std::move(pk));
        tombstones.push_back(std::move(dead));
      }
    }
    if (!raised.empty()) {
      std::vector<std::pair<Value, const RowClock*>> records;
      for (size_t i = 0; i < raised.size(); ++i) records.emplace_back(raised_keys[i], &raised[i]);
      TANDEM_RETURN_IF_ERROR(s.save_clocks(t, records));
      result.rows_raised += static_cast<int64_t>(raised.size());
      wrote = true;
    }
    if (keys.empty()) continue;
    std::vector<const Row*> pk_ptrs;
    for (const Row& pk : pks) pk_ptrs.push_back(&pk);
    std::vector<std::optional<Row>> old_rows;
    TANDEM_RETURN_IF_ERROR(s.load_rows(t, pk_ptrs, &old_rows));
    TANDEM_RETURN_IF_ERROR(s.delete_rows(t, pk_ptrs));
    std::vector<std::pair<Value, const RowClock*>> records;
    for (size_t i = 0; i < keys.size(); ++i) records.emplace_back(keys[i], &tombstones[i]);
    TANDEM_RETURN_IF_ERROR(s.save_clocks(t, records));
    for (auto& old : old_rows)
      if (old) result.deltas.deltas.push_back(RowDelta{t.name, std::move(old), std::nullopt});
    result.rows_dropped += static_cast<int64_t>(keys.size());
    wrote = true;
  }
  if (wrote) {
    s.db_version = version;
    // The log must list the tombstones under their version (store_format.hpp).
    TANDEM_RETURN_IF_ERROR(s.rebuild_changelog());
    TANDEM_RETURN_IF_ERROR(s.save_counters(s.db_version, s.clock_records, s.changelog_keys));
  }
  TANDEM_RETURN_IF_ERROR(txn.commit());
  mirror.commit();
  result.deltas.db_version = s.db_version;
  return result;
}

}  // namespace tandem
