// Store::merge: applies a batch of changes with exactly the rules of crdt-semantics.md.
//
// The batch is validated whole before anything is written (unknown table or column, wrong
// key arity, malformed values and clocks are refused with the change's position). Changes
// are then grouped by row, keeping batch order within a row (rows are independent under the
// rules, so this is the same as applying them one by one), and each row costs one clock
// read, one data read, and at most one data write and one clock write.
//
// db_version: the transaction takes D = max(local + 1, highest incoming db_version), and every
// change that wins is stamped with D (crdt-semantics.md asks for "at least" that). If nothing
// wins, db_version does not move, so merging a batch twice changes nothing at all.
//
// Values are written exactly as sent. SQLite's column affinity could convert one (TEXT '1'
// into INTEGER 1); a correct peer only sends values read back from storage, which affinity
// leaves alone, so the written row is read back and any difference refuses the
// batch rather than storing a value other replicas would not hold. CHECK constraints are not
// applied to merged rows (ignore_check_constraints): a row can be valid only once all of its
// columns have arrived, and every replica checked its own writes.
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <unordered_map>

#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/store_impl.hpp"

namespace tandem {
namespace {

constexpr int64_t kMaxVersion = int64_t{1} << 53;  // far beyond any real clock; refuses absurd ones

struct Incoming {
  size_t table;
  Value key;
  Row pk;
  int cell;  // index into value_columns, -1 for the sentinel
  Value val;
  int64_t col_version, db_version, cl, seq;
  const std::string* site;
};

struct KeyHash {
  size_t operator()(const std::pair<size_t, Value>& k) const { return hash_identical(k.second) * 31 + k.first; }
};
struct KeyEq {
  bool operator()(const std::pair<size_t, Value>& a, const std::pair<size_t, Value>& b) const {
    return a.first == b.first && identical(a.second, b.second);
  }
};

// Switches CHECK constraints off for the merge when `needed` (a table of the batch may have
// one). Only then: the pragma, like every flag pragma, expires all compiled statements of the
// connection, and recompiling them cost about a quarter of a sync's CPU.
class CheckConstraintsOff {
 public:
  CheckConstraintsOff(Database& db, bool needed) : db_(db), on_(needed) {
    ok_ = !on_ || db_.exec("PRAGMA ignore_check_constraints = ON").ok();
  }
  ~CheckConstraintsOff() {
    if (on_) (void)db_.exec("PRAGMA ignore_check_constraints = OFF");
  }
  bool ok() const { return ok_; }

 private:
  Database& db_;
  bool on_;
  bool ok_;
};

Status refuse(size_t index, const std::string& why) {
  return Status::InvalidArgument("batch refused, nothing merged: change " + std::to_string(index) + ": " + why);
}

Status validate(Store::Impl& s, const change::ChangeBatch& batch, std::vector<Incoming>* out, int64_t* max_version) {
  if (!site_from_bytes(batch.sender_site_id()))
    return Status::InvalidArgument("batch refused, nothing merged: sender site id must be 16 bytes");
  if (batch.from_db_version() < 0 || batch.to_db_version() < batch.from_db_version() || batch.to_db_version() > kMaxVersion)
    return Status::InvalidArgument("batch refused, nothing merged: bad version range (" + std::to_string(batch.from_db_version()) +
                                   ", " + std::to_string(batch.to_db_version()) + "]");
  out->reserve(static_cast<size_t>(batch.changes_size()));
  *max_version = 0;
  for (int i = 0; i < batch.changes_size(); ++i) {
    const change::Change& ch = batch.changes(i);
    auto index = static_cast<size_t>(i);
    size_t position = 0;
    const TableInfo* t = s.find_table(ch.table(), &position);
    if (!t) return refuse(index, "unknown table '" + ch.table() + "'");
    if (static_cast<size_t>(ch.pk_size()) != t->pk_columns.size())
      return refuse(index, "table " + t->name + " has a " + std::to_string(t->pk_columns.size()) + "-column primary key, the change has " +
                               std::to_string(ch.pk_size()));
    Incoming in{position, Value(), from_proto(ch.pk()), -1, from_proto(ch.val()), ch.col_version(), ch.db_version(), ch.cl(),
                ch.seq(), &ch.site_id()};
    for (const Value& v : in.pk)
      if (v.is_null()) return refuse(index, "a primary-key value is NULL");
    if (t->integer_pk && !in.pk[0].is_integer())
      return refuse(index, "the INTEGER PRIMARY KEY of " + t->name + " must be an integer, not a " + type_name(in.pk[0].type()));
    if (ch.cid() == "-1") {
      if (!in.val.is_null()) return refuse(index, "a sentinel change carries no value");
    } else {
      in.cell = t->value_index(ch.cid());
      if (in.cell < 0) return refuse(index, "table " + t->name + " has no value column '" + ch.cid() + "'");
      if (in.col_version < 1) return refuse(index, "col_version must be at least 1");
    }
    if (in.cl < 1) return refuse(index, "causal length must be at least 1");
    if (in.db_version < 0 || in.db_version > kMaxVersion) return refuse(index, "db_version out of range");
    if (in.seq < 0 || in.col_version > kMaxVersion || in.cl > kMaxVersion) return refuse(index, "negative or absurd clock");
    if (in.site->size() != 16) return refuse(index, "site id must be 16 bytes");
    if (in.val.is_real() && in.val.real() != in.val.real()) return refuse(index, "NaN is not a SQLite value");
    in.key = clock_key(t->integer_pk, in.pk);
    *max_version = std::max(*max_version, in.db_version);
    out->push_back(std::move(in));
  }
  return Status::Ok();
}

// Checks that the stored row holds exactly the values the merge wrote.
Status verify_stored(const TableInfo& t, const Row& stored, const Row& wanted, const std::vector<bool>& written) {
  if (stored.size() != wanted.size()) return Status::Internal("unexpected row shape returned for " + t.name);
  for (size_t c = 0; c < wanted.size(); ++c) {
    if (!written[c] || identical(stored[c], wanted[c])) continue;
    return Status::InvalidArgument("batch refused, nothing merged: " + t.name + "." + t.columns[c].name + " value " +
                                   wanted[c].to_sql_literal() + " would be stored as " + stored[c].to_sql_literal() +
                                   " (column affinity); peers only send stored values");
  }
  return Status::Ok();
}

}  // namespace

Result<MergeResult> Store::merge(const change::ChangeBatch& batch, const MergeOptions& options) {
  Impl& s = *impl_;
  std::vector<Incoming> incoming;
  int64_t max_version = 0;
  TANDEM_RETURN_IF_ERROR(validate(s, batch, &incoming, &max_version));

  // Group by row, first appearance first.
  std::vector<std::vector<size_t>> groups;
  {
    std::unordered_map<std::pair<size_t, Value>, size_t, KeyHash, KeyEq> group_of;
    group_of.reserve(incoming.size());
    for (size_t i = 0; i < incoming.size(); ++i) {
      auto [it, fresh] = group_of.try_emplace({incoming[i].table, incoming[i].key}, groups.size());
      if (fresh) groups.emplace_back();
      groups[it->second].push_back(i);
    }
  }

  const int64_t version = std::max(s.db_version + 1, max_version);
  MergeResult result;
  result.deltas.origin = DeltaOrigin::merge;

  // Declared before the transaction, so the store's own mode is back only after it ended.
  SyncScope sync_mode(s, options.sync);
  MirrorGuard mirror(s);
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  bool any_check = false;
  for (const Incoming& in : incoming) any_check = any_check || s.tables[in.table]->may_have_check;
  CheckConstraintsOff checks_off(*s.db, any_check);
  if (!checks_off.ok()) return Status::Internal("cannot turn CHECK constraints off for a merge");
  s.merging = true;
  struct MergingFlag {
    bool& flag;
    ~MergingFlag() { flag = false; }
  } merging_flag{s.merging};

  // Read every row's clock and data in one statement per table.
  struct Outcome {
    RowClock clock;
    std::optional<Row> old_row;
    Row row;                   // the row after the merge (when alive)
    std::vector<bool> written; // columns the merge assigned
    bool changed = false;      // some change won
  };
  std::vector<Outcome> outcomes(groups.size());
  std::vector<std::vector<size_t>> groups_of_table(s.tables.size());
  for (size_t g = 0; g < groups.size(); ++g) groups_of_table[incoming[groups[g].front()].table].push_back(g);
  for (size_t table = 0; table < s.tables.size(); ++table) {
    const auto& ids = groups_of_table[table];
    if (ids.empty()) continue;
    const TableInfo& t = *s.tables[table];
    std::vector<Value> keys;
    std::vector<const Row*> pks;
    for (size_t g : ids) {
      keys.push_back(incoming[groups[g].front()].key);
      pks.push_back(&incoming[groups[g].front()].pk);
    }
    std::vector<RowClock> clocks;
    std::vector<std::optional<Row>> rows;
    TANDEM_RETURN_IF_ERROR(s.load_clocks(t, keys, &clocks));
    TANDEM_RETURN_IF_ERROR(s.load_rows(t, pks, &rows));
    for (size_t i = 0; i < ids.size(); ++i) {
      Outcome& o = outcomes[ids[i]];
      o.clock = std::move(clocks[i]);
      o.old_row = std::move(rows[i]);
      if (o.old_row) {
        for (size_t k = 0; k < t.pk_columns.size(); ++k)
          if (!identical((*o.old_row)[static_cast<size_t>(t.pk_columns[k])], (*pks[i])[k]))
            return Status::InvalidArgument("batch refused, nothing merged: key value " + (*pks[i])[k].to_sql_literal() + " of " + t.name +
                                           " is stored as " + (*o.old_row)[static_cast<size_t>(t.pk_columns[k])].to_sql_literal());
      }
    }
  }

  // The rules, in memory.
  int64_t new_records = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const Incoming& first = incoming[groups[g].front()];
    const TableInfo& t = *s.tables[first.table];
    Outcome& o = outcomes[g];
    RowClock& clock = o.clock;
    Row& row = o.row;
    row = o.old_row ? *o.old_row : Row(t.columns.size());
    o.written.assign(t.columns.size(), false);
    std::vector<bool>& written = o.written;

    for (size_t i : groups[g]) {
      const Incoming& ch = incoming[i];
      TANDEM_ASSIGN_OR_RETURN(int64_t site, s.site_ordinal(*ch.site));
      const int64_t local_cl = clock.local_cl();
      const CellClock winner{ch.col_version, version, site, ch.seq};
      if (ch.cl < local_cl) continue;  // rule 1: an older life of the row
      if ((ch.cl & 1) == 0) {          // rule 2: a delete
        if (ch.cl == local_cl) continue;
        if (!clock.exists) ++new_records;
        clock.exists = true;
        clock.cl = ch.cl;
        for (auto& cell : clock.cells) cell = CellClock{};
        clock.sentinel = CellClock{ch.cl, version, site, ch.seq};
        o.changed = true;
        ++result.changes_applied;
        continue;
      }
      if (ch.cl > local_cl) {  // rule 3: a newer life
        if (!clock.exists) ++new_records;
        clock.exists = true;
        clock.cl = ch.cl;
        // cl 1 needs no sentinel ("1 if any clock exists"), as at the origin of a fresh
        // insert; recording one would send an extra change per row onwards.
        clock.sentinel = ch.cl > 1 || ch.cell < 0 ? CellClock{ch.cl, version, site, ch.seq} : CellClock{};
        for (auto& cell : clock.cells) cell = CellClock{0, version, site, ch.seq};
        // A newer life of a row known here starts from the DEFAULTs, as a row created by a
        // merge does: columns the new life does not write must not keep the old life's values.
        // (Its origin writes every column it has; a device on an older schema lacks the newer
        // columns, docs/schema.md, and every replica must then hold their DEFAULT.)
        if (o.old_row || local_cl > 0) {
          for (int v : t.value_columns) {
            const auto column = static_cast<size_t>(v);
            row[column] = t.columns[column].default_value.value_or(Value());
            written[column] = true;
          }
        }
        if (ch.cell >= 0) {
          clock.cells[static_cast<size_t>(ch.cell)] = winner;
          auto column = static_cast<size_t>(t.value_columns[static_cast<size_t>(ch.cell)]);
          row[column] = ch.val;
          written[column] = true;
        }
        o.changed = true;
        ++result.changes_applied;
        continue;
      }
      if (ch.cell < 0) continue;  // same life: a sentinel adds nothing
      CellClock& cell = clock.cells[static_cast<size_t>(ch.cell)];
      auto column = static_cast<size_t>(t.value_columns[static_cast<size_t>(ch.cell)]);
      bool wins = !cell.present() || ch.col_version > cell.col_version ||
                  (ch.col_version == cell.col_version && compare_crdt(ch.val, row[column]) > 0);
      if (!wins) continue;  // rule 4: the column rule
      cell = winner;
      row[column] = ch.val;
      written[column] = true;
      o.changed = true;
      ++result.changes_applied;
    }
    if (o.changed && clock.alive() && !o.old_row) {
      for (size_t k = 0; k < t.pk_columns.size(); ++k) {
        row[static_cast<size_t>(t.pk_columns[k])] = first.pk[k];
        written[static_cast<size_t>(t.pk_columns[k])] = true;
      }
    }
  }

  // Write rows and clocks, one statement per table and kind; read the written rows back.
  TouchedKeys touched;
  std::vector<std::optional<Row>> new_rows(groups.size());
  for (size_t table = 0; table < s.tables.size(); ++table) {
    const auto& ids = groups_of_table[table];
    if (ids.empty()) continue;
    const TableInfo& t = *s.tables[table];
    std::vector<const Row*> deletes, updates, reread;
    std::vector<size_t> reread_groups;
    std::map<std::vector<bool>, std::vector<const Row*>> inserts;
    std::vector<std::pair<Value, const RowClock*>> records;
    for (size_t g : ids) {
      Outcome& o = outcomes[g];
      if (!o.changed) continue;
      const Incoming& first = incoming[groups[g].front()];
      records.emplace_back(first.key, &o.clock);
      touched.add(table, first.key);
      if (!o.clock.alive()) {
        if (o.old_row) deletes.push_back(&first.pk);
        continue;
      }
      bool any_written = std::find(o.written.begin(), o.written.end(), true) != o.written.end();
      if (o.old_row && !any_written) {
        new_rows[g] = o.old_row;
        continue;
      }
      if (o.old_row)
        updates.push_back(&o.row);
      else
        inserts[o.written].push_back(&o.row);
      reread.push_back(&first.pk);
      reread_groups.push_back(g);
    }
    TANDEM_RETURN_IF_ERROR(s.delete_rows(t, deletes));
    TANDEM_RETURN_IF_ERROR(s.update_rows(t, updates));
    for (const auto& [mask, rows] : inserts) TANDEM_RETURN_IF_ERROR(s.insert_rows(t, mask, rows));
    std::vector<std::optional<Row>> stored;
    TANDEM_RETURN_IF_ERROR(s.load_rows(t, reread, &stored));
    for (size_t i = 0; i < reread_groups.size(); ++i) {
      size_t g = reread_groups[i];
      if (!stored[i]) return Status::Internal("merge wrote no row of " + t.name);
      TANDEM_RETURN_IF_ERROR(verify_stored(t, *stored[i], outcomes[g].row, outcomes[g].written));
      new_rows[g] = std::move(stored[i]);
    }
    TANDEM_RETURN_IF_ERROR(s.save_clocks(t, records));
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    Outcome& o = outcomes[g];
    if (!o.changed) continue;
    bool row_changed = o.old_row.has_value() != new_rows[g].has_value() || (o.old_row && !identical(*o.old_row, *new_rows[g]));
    if (row_changed) result.deltas.deltas.push_back(RowDelta{s.tables[incoming[groups[g].front()].table]->name, std::move(o.old_row), std::move(new_rows[g])});
  }

  {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->cached(
        "INSERT INTO tandem_peers(site_id, received, seen) VALUES (?1, ?2, CAST(strftime('%s', 'now') AS INTEGER)) "
        "ON CONFLICT(site_id) DO UPDATE SET received = max(received, excluded.received), seen = excluded.seen"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Blob(batch.sender_site_id())));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(2, batch.to_db_version()));
    TANDEM_RETURN_IF_ERROR(st->run());
  }
  if (!touched.per_table.empty()) {
    TANDEM_RETURN_IF_ERROR(s.append_changelog(version, touched));
    s.clock_records += new_records;
    s.db_version = version;
    TANDEM_RETURN_IF_ERROR(s.compact_changelog_if_needed());
    TANDEM_RETURN_IF_ERROR(s.save_counters(s.db_version, s.clock_records, s.changelog_keys));
  }
  TANDEM_RETURN_IF_ERROR(txn.commit());
  mirror.commit();
  result.synced = sync_mode.full();
  result.db_version = s.db_version;
  result.deltas.db_version = s.db_version;
  if (!s.options.capture_row_images) result.deltas.deltas.clear();
  return result;
}

}  // namespace tandem
