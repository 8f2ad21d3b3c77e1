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

class CheckConstraintsOff {
 public:
  explicit CheckConstraintsOff(Database& db) : db_(db) { ok_ = db_.exec("PRAGMA ignore_check_constraints = ON").ok(); }
  ~CheckConstraintsOff() { (void)db_.exec("PRAGMA ignore_check_constraints = OFF"); }
  bool ok() const { return ok_; }

 private:
  Database& db_;
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

std::string where_key(const TableInfo& t) {
  std::string sql = " WHERE ";
  for (size_t i = 0; i < t.pk_columns.size(); ++i) {
    if (i) sql += " AND ";
    sql += quote_identifier(t.columns[static_cast<size_t>(t.pk_columns[i])].name) + " = ?";
  }
  return sql;
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

Result<MergeResult> Store::merge(const change::ChangeBatch& batch) {
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

  MirrorGuard mirror(s);
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  CheckConstraintsOff checks_off(*s.db);
  if (!checks_off.ok()) return Status::Internal("cannot turn CHECK constraints off for a merge");
  s.merging = true;
  struct MergingFlag {
    bool& flag;
    ~MergingFlag() { flag = false; }
  } merging_flag{s.merging};

  TouchedKeys touched;
  int64_t new_records = 0;
  for (const auto& group : groups) {
    const Incoming& first = incoming[group.front()];
    const TableInfo& t = *s.tables[first.table];
    TANDEM_ASSIGN_OR_RETURN(RowClock clock, s.load_clock(t, first.key));
    TANDEM_ASSIGN_OR_RETURN(std::optional<Row> old_row, s.load_row(t, first.pk));
    if (old_row) {
      for (size_t k = 0; k < t.pk_columns.size(); ++k)
        if (!identical((*old_row)[static_cast<size_t>(t.pk_columns[k])], first.pk[k]))
          return Status::InvalidArgument("batch refused, nothing merged: key value " + first.pk[k].to_sql_literal() + " of " + t.name +
                                         " is stored as " + (*old_row)[static_cast<size_t>(t.pk_columns[k])].to_sql_literal());
    }
    Row row = old_row ? *old_row : Row(t.columns.size());
    std::vector<bool> written(t.columns.size(), false);
    bool clock_changed = false;

    for (size_t i : group) {
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
        clock_changed = true;
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
        if (ch.cell >= 0) {
          clock.cells[static_cast<size_t>(ch.cell)] = winner;
          auto column = static_cast<size_t>(t.value_columns[static_cast<size_t>(ch.cell)]);
          row[column] = ch.val;
          written[column] = true;
        }
        clock_changed = true;
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
      clock_changed = true;
      ++result.changes_applied;
    }
    if (!clock_changed) continue;

    TANDEM_RETURN_IF_ERROR(s.save_clock(t, first.key, clock));
    touched.add(first.table, first.key);
    std::optional<Row> new_row;
    if (clock.alive()) {
      bool any_written = false;
      for (bool w : written) any_written = any_written || w;
      if (old_row && !any_written) {
        new_row = old_row;
      } else {
        std::string sql;
        Row params;
        if (old_row) {
          sql = "UPDATE " + t.quoted_name() + " SET ";
          bool comma = false;
          for (size_t c = 0; c < written.size(); ++c) {
            if (!written[c]) continue;
            sql += (comma ? ", " : "") + quote_identifier(t.columns[c].name) + " = ?";
            params.push_back(row[c]);
            comma = true;
          }
          sql += where_key(t);
          for (const Value& v : first.pk) params.push_back(v);
        } else {
          for (size_t k = 0; k < t.pk_columns.size(); ++k) {
            row[static_cast<size_t>(t.pk_columns[k])] = first.pk[k];
            written[static_cast<size_t>(t.pk_columns[k])] = true;
          }
          std::string names, marks;
          for (size_t c = 0; c < written.size(); ++c) {
            if (!written[c]) continue;
            names += (names.empty() ? "" : ", ") + quote_identifier(t.columns[c].name);
            marks += marks.empty() ? "?" : ", ?";
            params.push_back(row[c]);
          }
          sql = "INSERT INTO " + t.quoted_name() + "(" + names + ") VALUES (" + marks + ")";
        }
        TANDEM_ASSIGN_OR_RETURN(auto st, s.db->cached(sql));
        TANDEM_RETURN_IF_ERROR(st->bind_all(params));
        TANDEM_RETURN_IF_ERROR(st->run());
        // Read back rather than RETURNING: SQLite 3.40's RETURNING applies REAL affinity to
        // the wrong columns of tables with a REAL key.
        TANDEM_ASSIGN_OR_RETURN(new_row, s.load_row(t, first.pk));
        if (!new_row) return Status::Internal("merge wrote no row of " + t.name);
        TANDEM_RETURN_IF_ERROR(verify_stored(t, *new_row, row, written));
      }
    } else if (old_row) {
      TANDEM_ASSIGN_OR_RETURN(auto st, s.db->cached("DELETE FROM " + t.quoted_name() + where_key(t)));
      TANDEM_RETURN_IF_ERROR(st->bind_all(first.pk));
      TANDEM_RETURN_IF_ERROR(st->run());
    }
    bool row_changed = old_row.has_value() != new_row.has_value() || (old_row && !identical(*old_row, *new_row));
    if (row_changed) result.deltas.deltas.push_back(RowDelta{t.name, std::move(old_row), std::move(new_row)});
  }

  {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->cached(
        "INSERT INTO tandem_peers(site_id, received) VALUES (?1, ?2) "
        "ON CONFLICT(site_id) DO UPDATE SET received = max(received, excluded.received)"));
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
  result.db_version = s.db_version;
  result.deltas.db_version = s.db_version;
  if (!s.options.capture_row_images) result.deltas.deltas.clear();
  return result;
}

}  // namespace tandem
