#include "runtime/store/capture.hpp"

#include <sqlite3.h>

#include <cstring>

#include "runtime/sqlite/database.hpp"
#include "runtime/store/store_format.hpp"

namespace tandem {
namespace {

void preupdate_trampoline(void* ctx, sqlite3* db, int op, const char* database, const char* table, sqlite3_int64 old_rowid,
                          sqlite3_int64 new_rowid) {
  static_cast<Capture*>(ctx)->on_preupdate(db, op, database, table, old_rowid, new_rowid);
}

void update_trampoline(void* ctx, int op, const char* database, const char* table, sqlite3_int64 rowid) {
  static_cast<Capture*>(ctx)->on_update(op, database, table, rowid);
}

// Same storage class and same value, bit for bit (see identical() in value.hpp). In a
// REAL-affinity column an INTEGER is a REAL that SQLite stored compactly.
bool identical_values(sqlite3_value* a, sqlite3_value* b, bool real_affinity) {
  int ta = sqlite3_value_type(a);
  int tb = sqlite3_value_type(b);
  if (real_affinity && (ta == SQLITE_INTEGER || tb == SQLITE_INTEGER) && (ta == SQLITE_FLOAT || tb == SQLITE_FLOAT)) {
    double x = sqlite3_value_double(a), y = sqlite3_value_double(b);
    return std::memcmp(&x, &y, sizeof x) == 0;
  }
  if (ta != tb) return false;
  switch (ta) {
    case SQLITE_NULL: return true;
    case SQLITE_INTEGER: return sqlite3_value_int64(a) == sqlite3_value_int64(b);
    case SQLITE_FLOAT: {
      double x = sqlite3_value_double(a), y = sqlite3_value_double(b);
      return std::memcmp(&x, &y, sizeof x) == 0;
    }
    default: {
      const void* pa = ta == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(a)) : sqlite3_value_blob(a);
      int na = sqlite3_value_bytes(a);
      const void* pb = ta == SQLITE_TEXT ? static_cast<const void*>(sqlite3_value_text(b)) : sqlite3_value_blob(b);
      int nb = sqlite3_value_bytes(b);
      return na == nb && (na == 0 || std::memcmp(pa, pb, static_cast<size_t>(na)) == 0);
    }
  }
}

using ValueReader = int (*)(sqlite3*, int, sqlite3_value**);

// SQLite 3.40's preupdate hook reports a column that the old row's stored record predates
// (added by ALTER TABLE ADD COLUMN since the row was last written) as its one static NULL
// value, where a SELECT reads the column's DEFAULT. That static value is also what
// sqlite3_column_value() returns without a statement, and never a NULL read from a record,
// so its address tells the two apart. (Later SQLite versions return the DEFAULT themselves;
// then this never matches.)
bool predates_column(sqlite3_value* v) {
  static sqlite3_value* const missing = sqlite3_column_value(nullptr, 0);
  return v == missing;
}

// The old value of column `i` as a SELECT would have read it, if it differs from what the
// hook reports (a column the stored record predates, with a DEFAULT).
const Value* old_default(sqlite3_value* v, const TableInfo& t, size_t i) {
  const auto& d = t.columns[i].default_value;
  return v && d && predates_column(v) ? &*d : nullptr;
}

Row read_row(sqlite3* db, ValueReader read, const TableInfo& t) {
  Row row;
  row.reserve(t.columns.size());
  const bool old = read == sqlite3_preupdate_old;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    sqlite3_value* v = nullptr;
    read(db, static_cast<int>(i), &v);
    const Value* dflt = old ? old_default(v, t, i) : nullptr;
    row.push_back(dflt ? *dflt : v ? value_from_sqlite(v) : Value());
  }
  realify(t.columns, row);
  return row;
}

Value read_key(sqlite3* db, ValueReader read, const TableInfo& t, int64_t rowid) {
  if (t.integer_pk) return Value::Integer(rowid);
  Row pk;
  pk.reserve(t.pk_columns.size());
  for (int c : t.pk_columns) {
    sqlite3_value* v = nullptr;
    read(db, c, &v);
    pk.push_back(v ? value_from_sqlite(v) : Value());
    if (t.columns[static_cast<size_t>(c)].real_affinity && pk.back().is_integer())
      pk.back() = Value::Real(static_cast<double>(pk.back().integer()));
  }
  return Value::Blob(encode_key(pk));
}

}  // namespace

void Capture::attach(sqlite3* db, const std::vector<const TableInfo*>* tables) {
  db_ = db;
  tables_ = tables;
  sqlite3_preupdate_hook(db, preupdate_trampoline, this);
  sqlite3_update_hook(db, update_trampoline, this);
}

void Capture::detach() {
  if (!db_) return;
  sqlite3_preupdate_hook(db_, nullptr, nullptr);
  sqlite3_update_hook(db_, nullptr, nullptr);
  db_ = nullptr;
}

void Capture::start(bool images) {
  events_.clear();
  refusal_.clear();
  images_ = images;
  last_table_ = -1;
  active_ = true;
}

std::vector<CaptureEvent> Capture::take() {
  std::vector<CaptureEvent> out;
  out.swap(events_);
  return out;
}

int Capture::find_table(const char* name) {
  const auto& tables = *tables_;
  if (last_table_ >= 0 && static_cast<size_t>(last_table_) < tables.size() &&
      sqlite3_stricmp(tables[static_cast<size_t>(last_table_)]->name.c_str(), name) == 0)
    return last_table_;
  for (size_t i = 0; i < tables.size(); ++i) {
    if (sqlite3_stricmp(tables[i]->name.c_str(), name) == 0) {
      last_table_ = static_cast<int>(i);
      return last_table_;
    }
  }
  return -1;
}

void Capture::check_value_sizes(sqlite3* db, const TableInfo& t) {
  if (max_value_bytes_ == 0 || !refusal_.empty()) return;
  for (size_t i = 0; i < t.columns.size(); ++i) {
    sqlite3_value* v = nullptr;
    if (sqlite3_preupdate_new(db, static_cast<int>(i), &v) != SQLITE_OK || !v) continue;
    const int type = sqlite3_value_type(v);
    if (type != SQLITE_TEXT && type != SQLITE_BLOB) continue;
    const auto n = static_cast<size_t>(sqlite3_value_bytes(v));
    if (n > max_value_bytes_) {
      refusal_ = "a value of " + std::to_string(n) + " bytes in " + t.name + "." + t.columns[i].name +
                 " is larger than the limit of " + std::to_string(max_value_bytes_ >> 20) + " MiB (" +
                 std::to_string(max_value_bytes_) + " bytes); nothing of this write was stored";
      return;
    }
  }
}

void Capture::on_preupdate(sqlite3* db, int op, const char* database, const char* table, int64_t old_rowid,
                           int64_t new_rowid) {
  if (!active_ || std::strcmp(database, "main") != 0) return;
  int index = find_table(table);
  if (index < 0) return;
  const TableInfo& t = *(*tables_)[static_cast<size_t>(index)];
  CaptureEvent ev;
  ev.table = static_cast<uint32_t>(index);
  switch (op) {
    case SQLITE_INSERT:
      ev.kind = CaptureEvent::Kind::insert;
      ev.rowid = new_rowid;
      ev.new_key = read_key(db, sqlite3_preupdate_new, t, new_rowid);
      check_value_sizes(db, t);
      if (images_) ev.new_row = read_row(db, sqlite3_preupdate_new, t);
      break;
    case SQLITE_DELETE:
      ev.kind = CaptureEvent::Kind::remove;
      ev.rowid = old_rowid;
      ev.old_key = read_key(db, sqlite3_preupdate_old, t, old_rowid);
      if (images_) ev.old_row = read_row(db, sqlite3_preupdate_old, t);
      break;
    case SQLITE_UPDATE: {
      ev.kind = CaptureEvent::Kind::update;
      ev.rowid = new_rowid;
      ev.old_key = read_key(db, sqlite3_preupdate_old, t, old_rowid);
      ev.new_key = read_key(db, sqlite3_preupdate_new, t, new_rowid);
      check_value_sizes(db, t);
      for (size_t i = 0; i < t.value_columns.size(); ++i) {
        sqlite3_value* a = nullptr;
        sqlite3_value* b = nullptr;
        const auto column = static_cast<size_t>(t.value_columns[i]);
        sqlite3_preupdate_old(db, t.value_columns[i], &a);
        sqlite3_preupdate_new(db, t.value_columns[i], &b);
        bool same;
        if (const Value* dflt = old_default(a, t, column); dflt && b) {
          Value now = value_from_sqlite(b);
          if (t.columns[column].real_affinity && now.is_integer()) now = Value::Real(static_cast<double>(now.integer()));
          same = identical(*dflt, now);
        } else {
          same = a && b && identical_values(a, b, t.columns[column].real_affinity);
        }
        if (!same) ev.changed.push_back(static_cast<uint32_t>(i));
      }
      if (images_) {
        ev.old_row = read_row(db, sqlite3_preupdate_old, t);
        ev.new_row = read_row(db, sqlite3_preupdate_new, t);
      }
      break;
    }
    default: return;
  }
  events_.push_back(std::move(ev));
}

void Capture::on_update(int op, const char* database, const char* table, int64_t rowid) {
  if (!active_ || op != SQLITE_DELETE || std::strcmp(database, "main") != 0) return;
  int index = find_table(table);
  if (index < 0) return;
  for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
    if (it->kind == CaptureEvent::Kind::remove && !it->confirmed && it->table == static_cast<uint32_t>(index) &&
        it->rowid == rowid) {
      it->confirmed = true;
      return;
    }
  }
}

}  // namespace tandem
