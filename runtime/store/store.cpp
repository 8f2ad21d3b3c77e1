// Store: opening, schema and registration, local writes (capture -> clocks), reads, peers.
// Merging is in merge.cpp, change extraction in changes.cpp; the format in store_format.hpp.
#include "runtime/store/store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>

#include "runtime/common/process_lock.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/mutation_rules.hpp"
#include "runtime/store/schema_diff.hpp"
#include "runtime/store/store_impl.hpp"

namespace tandem {
namespace {

constexpr int64_t kFormat = 1;

const char* kBookkeeping = R"sql(
CREATE TABLE IF NOT EXISTS tandem_meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tandem_sites(ordinal INTEGER PRIMARY KEY, site_id BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS tandem_tables(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, value_columns TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tandem_changelog(seq INTEGER PRIMARY KEY, db_version INTEGER NOT NULL,
                                            table_id INTEGER NOT NULL, keys BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS tandem_changelog_version ON tandem_changelog(db_version);
CREATE TABLE IF NOT EXISTS tandem_peers(site_id BLOB PRIMARY KEY, received INTEGER NOT NULL DEFAULT 0,
                                        acked INTEGER NOT NULL DEFAULT 0, seen INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tandem_requests(key TEXT NOT NULL UNIQUE, db_version INTEGER NOT NULL,
                                           rows_changed INTEGER NOT NULL, last_key INTEGER NOT NULL);
)sql";

// Keys of idempotent writes kept (Store::write's request_key): far more than can be in
// flight at a leader's death.
constexpr int64_t kRequestsKept = 1000;

// Files created before peers had a last-seen time (unix seconds; Store::compact's expiry)
// get the column, their peers counted as seen now.
const char* kPeersSeen = R"sql(
ALTER TABLE tandem_peers ADD COLUMN seen INTEGER NOT NULL DEFAULT 0;
UPDATE tandem_peers SET seen = CAST(strftime('%s', 'now') AS INTEGER);
)sql";

bool is_tandem_table(const char* name) { return name && sqlite3_strnicmp(name, "tandem_", 7) == 0; }

int authorize(void* ctx, int action, const char* a, const char* b, const char*, const char*) {
  auto* s = static_cast<Store::Impl*>(ctx);
  using Mode = Store::Impl::Mode;
  if (s->mode == Mode::internal) return SQLITE_OK;
  auto deny = [&](const std::string& why) {
    s->denial = why;
    return SQLITE_DENY;
  };
  switch (action) {
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
      return deny("transaction control is not allowed here: every write runs as exactly one transaction");
    case SQLITE_ATTACH:
    case SQLITE_DETACH: return deny("ATTACH and DETACH are not allowed");
    case SQLITE_PRAGMA: {
      // Reads may introspect the schema (also through pragma_table_info() and friends).
      static const char* const introspection[] = {"table_info", "table_xinfo", "table_list", "index_list", "index_info",
                                                  "index_xinfo", "foreign_key_list", "collation_list", "function_list"};
      if (s->mode == Mode::user_read && a)
        for (const char* p : introspection)
          if (sqlite3_stricmp(a, p) == 0) return SQLITE_OK;
      return deny(std::string("PRAGMA ") + (a ? a : "") + " is not allowed here");
    }
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
      // SQLite reports its own schema reads as writes to sqlite_master.
      if (a && (sqlite3_stricmp(a, "sqlite_master") == 0 || sqlite3_stricmp(a, "sqlite_temp_master") == 0)) return SQLITE_OK;
      if (s->mode == Mode::user_read) return deny("this is a read-only query; writes go through a write");
      if (is_tandem_table(a) && s->mode != Mode::schema)
        return deny(std::string("table ") + a + " belongs to Tandem and cannot be written directly");
      return SQLITE_OK;
    case SQLITE_CREATE_INDEX:
    case SQLITE_CREATE_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_CREATE_TRIGGER:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_INDEX:
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_VIEW:
    case SQLITE_DROP_TRIGGER:
    case SQLITE_DROP_VIEW:
    case SQLITE_ALTER_TABLE:
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
    case SQLITE_REINDEX:
    case SQLITE_ANALYZE: {
      if (s->mode != Mode::schema) return deny("schema changes are not allowed here; they belong in the schema");
      const char* object = action == SQLITE_ALTER_TABLE ? b : a;
      const char* table = (action == SQLITE_CREATE_INDEX || action == SQLITE_CREATE_TRIGGER ||
                           action == SQLITE_DROP_INDEX || action == SQLITE_DROP_TRIGGER)
                              ? b
                              : object;
      if (is_tandem_table(object) || is_tandem_table(table))
        return deny(std::string("Tandem's own objects cannot be changed (") + (object ? object : "") + ")");
      if (action == SQLITE_DROP_TABLE && table && s->find_table(table))
        return deny(std::string("table ") + table + " is replicated; dropping it is not supported (devices on the old "
                    "schema still write it): keep it in the schema");
      // ALTER TABLE on a replicated table may add columns; execute_schema checks what it did
      // (SQLite reports ADD, RENAME and DROP COLUMN alike here). A CREATE TABLE of a table
      // that exists is the table's newer declaration (schema_change.cpp).
      if (action == SQLITE_CREATE_TABLE && a) s->created_table = a;
      if (action == SQLITE_ALTER_TABLE && table) s->altered_table = table;
      return SQLITE_OK;
    }
    default: return SQLITE_OK;
  }
}

// tandem_bump(clock, cl, bumps, cells, version, base_cells): the clock record after UPDATEs of
// a live row by this replica at `version`; `bumps` lists (value column, seq) pairs in order,
// each one col_version + 1 (or 1 where the column had no clock). See record_local_write.
void tandem_bump(sqlite3_context* ctx, int, sqlite3_value** argv) {
  RowClock clock;
  clock.exists = true;
  clock.cl = sqlite3_value_int64(argv[1]);
  auto ncells = static_cast<size_t>(sqlite3_value_int64(argv[3]));
  const int64_t version = sqlite3_value_int64(argv[4]);
  const auto base_cells = static_cast<size_t>(sqlite3_value_int64(argv[5]));
  auto blob = [](sqlite3_value* v) {
    auto* p = static_cast<const char*>(sqlite3_value_blob(v));
    return std::string_view(p ? p : "", static_cast<size_t>(sqlite3_value_bytes(v)));
  };
  Status decoded = decode_clock(blob(argv[0]), ncells, base_cells, &clock);
  if (!decoded.ok()) {
    sqlite3_result_error(ctx, decoded.message().c_str(), -1);
    return;
  }
  std::string_view bumps = blob(argv[2]);
  while (!bumps.empty()) {
    uint64_t cell, seq;
    if (!get_varint(bumps, &cell) || !get_varint(bumps, &seq) || cell >= ncells) {
      sqlite3_result_error(ctx, "corrupt clock bump list", -1);
      return;
    }
    CellClock& c = clock.cells[cell];
    c.col_version = c.present() ? c.col_version + 1 : 1;
    c.db_version = version;
    c.site = 0;
    c.seq = static_cast<int64_t>(seq);
  }
  std::string out = encode_clock(clock, base_cells);
  sqlite3_result_blob(ctx, out.data(), static_cast<int>(out.size()), SQLITE_TRANSIENT);
}

SiteId random_site() {
  std::random_device rd;
  SiteId s{};
  for (size_t i = 0; i < s.size(); i += 4) {
    uint32_t x = rd();
    for (size_t j = 0; j < 4; ++j) s[i + j] = static_cast<uint8_t>(x >> (8 * j));
  }
  return s;
}

struct KeyHash {
  size_t operator()(const Value& v) const { return hash_identical(v); }
};
struct KeyEq {
  bool operator()(const Value& a, const Value& b) const { return identical(a, b); }
};

}  // namespace

// ---- site ids ----

std::string site_hex(const SiteId& site) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (uint8_t b : site) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::optional<SiteId> site_from_hex(const std::string& text) {
  if (text.size() != 32) return std::nullopt;
  SiteId s{};
  for (size_t i = 0; i < 16; ++i) {
    int v = 0;
    for (size_t j = 0; j < 2; ++j) {
      char c = static_cast<char>(std::toupper(static_cast<unsigned char>(text[2 * i + j])));
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    s[i] = static_cast<uint8_t>(v);
  }
  return s;
}

std::optional<SiteId> site_from_bytes(const std::string& bytes) {
  if (bytes.size() != 16) return std::nullopt;
  SiteId s{};
  std::copy(bytes.begin(), bytes.end(), s.begin());
  return s;
}

std::string site_bytes(const SiteId& site) { return std::string(site.begin(), site.end()); }

// ---- Impl helpers ----

Store::Impl::~Impl() {
  capture.detach();
  table_statements.clear();
  if (db) sqlite3_set_authorizer(db->raw(), nullptr, nullptr);
  user_statements.clear();
}

const TableInfo* Store::Impl::find_table(const std::string& name, size_t* position) const {
  for (size_t i = 0; i < tables.size(); ++i) {
    if (sqlite3_stricmp(tables[i]->name.c_str(), name.c_str()) == 0) {
      if (position) *position = i;
      return tables[i].get();
    }
  }
  return nullptr;
}

namespace {

// Prepares `sql` into `slot` on first use and lends it out (reset when the lease ends).
Result<StatementLease> lend(Database& db, std::unique_ptr<Statement>& slot, const std::function<std::string()>& sql) {
  if (!slot) {
    TANDEM_ASSIGN_OR_RETURN(slot, db.prepare(sql()));
  }
  return StatementLease(slot.get());
}

}  // namespace

Result<RowClock> Store::Impl::load_clock(const TableInfo& t, const Value& key) {
  TANDEM_ASSIGN_OR_RETURN(auto st, lend(*db, table_statements[t.id].load_clock,
                                        [&] { return "SELECT cl, clock FROM " + t.clock_table() + " WHERE pk = ?1"; }));
  TANDEM_RETURN_IF_ERROR(st->bind(1, key));
  TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
  RowClock clock;
  clock.cells.assign(t.value_columns.size(), CellClock{});
  if (!found) return clock;
  clock.exists = true;
  clock.cl = st->column_int64(0);
  auto* p = static_cast<const char*>(sqlite3_column_blob(st->raw(), 1));
  auto n = static_cast<size_t>(sqlite3_column_bytes(st->raw(), 1));
  TANDEM_RETURN_IF_ERROR(decode_clock(std::string_view(p ? p : "", n), t.value_columns.size(), t.base_cells, &clock)
                             .with_context("clock of a row of " + t.name));
  return clock;
}

Result<std::optional<Row>> Store::Impl::load_row(const TableInfo& t, const Row& pk) {
  TANDEM_ASSIGN_OR_RETURN(auto st, lend(*db, table_statements[t.id].load_row, [&] {
    std::string sql = "SELECT * FROM " + t.quoted_name() + " WHERE ";
    for (size_t i = 0; i < t.pk_columns.size(); ++i) {
      if (i) sql += " AND ";
      sql += quote_identifier(t.columns[static_cast<size_t>(t.pk_columns[i])].name) + " = ?" + std::to_string(i + 1);
    }
    return sql;
  }));
  for (size_t i = 0; i < pk.size(); ++i) TANDEM_RETURN_IF_ERROR(st->bind(static_cast<int>(i + 1), pk[i]));
  TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
  if (!found) return std::optional<Row>();
  return std::optional<Row>(st->row());
}

Status Store::Impl::append_changelog(int64_t version, const TouchedKeys& touched) {
  for (size_t i = 0; i < touched.per_table.size(); ++i) {
    const auto& keys = touched.per_table[i];
    if (keys.empty()) continue;
    std::string blob;
    for (const auto& k : keys) append_key(blob, k);
    TANDEM_ASSIGN_OR_RETURN(auto st, db->cached("INSERT INTO tandem_changelog(db_version, table_id, keys) VALUES (?1, ?2, ?3)"));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(1, version));
    TANDEM_RETURN_IF_ERROR(st->bind_int64(2, tables[i]->id));
    int rc = sqlite3_bind_blob(st->raw(), 3, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    if (rc != SQLITE_OK) return db->error(rc);
    TANDEM_RETURN_IF_ERROR(st->run());
    changelog_keys += static_cast<int64_t>(keys.size());
  }
  return Status::Ok();
}

Status Store::Impl::save_counters(int64_t version, int64_t records, int64_t keys) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db->cached(
      "INSERT OR REPLACE INTO tandem_meta(key, value) VALUES ('db_version', ?1), ('clock_records', ?2), ('changelog_keys', ?3)"));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(1, version));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(2, records));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(3, keys));
  return st->run();
}

Result<int64_t> Store::Impl::site_ordinal(const std::string& site_bytes_) {
  auto it = site_ordinals.find(site_bytes_);
  if (it != site_ordinals.end()) return it->second;
  auto ordinal = static_cast<int64_t>(sites.size());
  TANDEM_ASSIGN_OR_RETURN(auto st, db->cached("INSERT INTO tandem_sites(ordinal, site_id) VALUES (?1, ?2)"));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(1, ordinal));
  TANDEM_RETURN_IF_ERROR(st->bind(2, Value::Blob(site_bytes_)));
  TANDEM_RETURN_IF_ERROR(st->run());
  sites.push_back(*site_from_bytes(site_bytes_));
  site_ordinals.emplace(site_bytes_, ordinal);
  return ordinal;
}

void Store::Impl::forget_sites_after(size_t count) {
  while (sites.size() > count) {
    site_ordinals.erase(site_bytes(sites.back()));
    sites.pop_back();
  }
}

Result<Statement*> Store::Impl::user_statement(const std::string& sql) {
  auto it = user_statements.find(sql);
  if (it != user_statements.end()) return it->second.get();
  denial.clear();
  auto st = db->prepare(sql);
  if (!st.ok()) {
    if (!denial.empty()) return Status::PermissionDenied(denial);
    return st.status();
  }
  if (user_statements.size() >= 256) user_statements.clear();
  auto* raw = st->get();
  user_statements.emplace(sql, std::move(st).value());
  return raw;
}

// ---- local writes ----

Result<CommitResult> Store::Impl::local_write(const std::function<Status()>& body, const std::string& mutation_id,
                                              const std::string& request_key) {
  MirrorGuard mirror(*this);
  Transaction txn(*db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  if (!request_key.empty()) {
    // Inside the write lock: the answer cannot change before this transaction ends.
    TANDEM_ASSIGN_OR_RETURN(auto st, db->cached("SELECT db_version, rows_changed, last_key FROM tandem_requests WHERE key = ?1"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(request_key)));
    TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
    if (found) {
      CommitResult replay;
      replay.replayed = true;
      replay.db_version = st->column_int64(0);
      replay.rows_changed = st->column_int64(1);
      replay.last_key = st->column_int64(2);
      replay.deltas.db_version = db_version;
      replay.deltas.mutation_id = mutation_id;
      return replay;
    }
  }
  int64_t changes_before = db->total_changes();
  last_key = 0;
  mode = Mode::user_write;
  capture.start(options.capture_row_images);
  Status body_status = body();
  capture.stop();
  mode = Mode::internal;
  if (body_status.ok() && !capture.refusal().empty()) body_status = Status::ResourceExhausted(capture.refusal());
  if (!body_status.ok()) {
    capture.clear();
    if (body_status.code() == StatusCode::resource_exhausted && sqlite3_errcode(db->raw()) == SQLITE_TOOBIG)
      return Status::ResourceExhausted("a value or row is larger than the limit of " + std::to_string(kMaxValueBytes >> 20) +
                                       " MiB (" + std::to_string(kMaxValueBytes) + " bytes per value); nothing of this write was stored (" +
                                       body_status.message() + ")");
    return body_status;
  }
  int64_t rows_changed = db->total_changes() - changes_before;
  TANDEM_ASSIGN_OR_RETURN(CommitResult result, record_local_write(capture.take(), mutation_id));
  if (!request_key.empty()) {
    TANDEM_ASSIGN_OR_RETURN(auto ins, db->cached("INSERT INTO tandem_requests(key, db_version, rows_changed, last_key) VALUES (?1, ?2, ?3, ?4)"));
    TANDEM_RETURN_IF_ERROR(ins->bind(1, Value::Text(request_key)));
    TANDEM_RETURN_IF_ERROR(ins->bind(2, Value::Integer(result.db_version)));
    TANDEM_RETURN_IF_ERROR(ins->bind(3, Value::Integer(rows_changed)));
    TANDEM_RETURN_IF_ERROR(ins->bind(4, Value::Integer(last_key)));
    TANDEM_RETURN_IF_ERROR(ins->run());
    TANDEM_ASSIGN_OR_RETURN(auto prune, db->cached("DELETE FROM tandem_requests WHERE rowid <= last_insert_rowid() - ?1"));
    TANDEM_RETURN_IF_ERROR(prune->bind(1, Value::Integer(kRequestsKept)));
    TANDEM_RETURN_IF_ERROR(prune->run());
  }
  TANDEM_RETURN_IF_ERROR(txn.commit());
  mirror.commit();
  result.rows_changed = rows_changed;
  result.last_key = last_key;
  return result;
}

Result<CommitResult> Store::Impl::record_local_write(std::vector<CaptureEvent> events, const std::string& mutation_id) {
  CommitResult result;
  result.db_version = db_version;
  result.deltas.db_version = db_version;
  result.deltas.origin = DeltaOrigin::local;
  result.deltas.mutation_id = mutation_id;
  if (events.empty()) return result;

  const int64_t version = db_version + 1;
  int64_t seq = 0;
  struct Touched {
    size_t table;
    Value key;
    RowClock clock;
    bool dirty = false;
    bool seen = false;  // first_old is set
    std::optional<Row> first_old;
    std::optional<Row> last_new;
    // Keys that only see UPDATEs keeping their key (the common update) are not read: their
    // clock records are bumped in place by one UPDATE with tandem_bump() at the end.
    bool update_only = true;
    std::string bumps;  // varint (value column, seq) pairs, in order
  };
  std::vector<Touched> touched;
  std::vector<std::unordered_map<Value, size_t, KeyHash, KeyEq>> index(tables.size());
  // For INTEGER PRIMARY KEY tables: keys above the largest clock key have no clock yet, so
  // appends (the common insert) skip the clock lookup.
  std::vector<std::optional<int64_t>> max_key(tables.size());
  int64_t new_records = 0;

  // Pass 1: every key the events touch, in first-touch order. Clocks are then read in one
  // statement per table, except where none can exist (keys above the largest clock key of an
  // INTEGER PRIMARY KEY table: appends, the common insert) and for update-only keys.
  std::vector<bool> known_absent;
  auto add_touch = [&](size_t table, const Value& key) -> Status {
    auto& idx = index[table];
    if (idx.count(key)) return Status::Ok();
    const TableInfo& t = *tables[table];
    bool absent = false;
    if (t.integer_pk && key.is_integer()) {
      if (!max_key[table]) {
        TANDEM_ASSIGN_OR_RETURN(auto st, db->cached("SELECT coalesce(max(pk), -9223372036854775808) FROM " + t.clock_table()));
        TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
        max_key[table] = row ? st->column_int64(0) : INT64_MIN;
      }
      absent = key.integer() > *max_key[table];
    }
    Touched entry{table, key, RowClock{}};
    entry.clock.cells.assign(t.value_columns.size(), CellClock{});
    entry.update_only = !absent;
    idx.emplace(key, touched.size());
    touched.push_back(std::move(entry));
    known_absent.push_back(absent);
    return Status::Ok();
  };
  touched.reserve(events.size() + 1);
  for (const auto& ev : events) {
    if (ev.kind != CaptureEvent::Kind::insert) TANDEM_RETURN_IF_ERROR(add_touch(ev.table, ev.old_key));
    if (ev.kind != CaptureEvent::Kind::remove) TANDEM_RETURN_IF_ERROR(add_touch(ev.table, ev.new_key));
    if (ev.kind == CaptureEvent::Kind::update && identical(ev.old_key, ev.new_key)) continue;
    if (ev.kind != CaptureEvent::Kind::insert) touched[index[ev.table].at(ev.old_key)].update_only = false;
    if (ev.kind != CaptureEvent::Kind::remove) touched[index[ev.table].at(ev.new_key)].update_only = false;
  }
  auto load_clocks_of = [&](const std::function<bool(size_t)>& wanted) -> Status {
    std::vector<std::vector<Value>> keys(tables.size());
    std::vector<std::vector<size_t>> slots(tables.size());
    for (size_t i = 0; i < touched.size(); ++i) {
      if (!wanted(i)) continue;
      keys[touched[i].table].push_back(touched[i].key);
      slots[touched[i].table].push_back(i);
    }
    for (size_t table = 0; table < tables.size(); ++table) {
      if (keys[table].empty()) continue;
      std::vector<RowClock> clocks;
      TANDEM_RETURN_IF_ERROR(load_clocks(*tables[table], keys[table], &clocks));
      for (size_t i = 0; i < clocks.size(); ++i) touched[slots[table][i]].clock = std::move(clocks[i]);
    }
    return Status::Ok();
  };
  TANDEM_RETURN_IF_ERROR(load_clocks_of([&](size_t i) { return !known_absent[i] && !touched[i].update_only; }));
  auto touch = [&](size_t table, const Value& key) -> Result<Touched*> { return &touched[index[table].at(key)]; };
  auto stamp = [&](CellClock& c, int64_t col_version) {
    c.col_version = col_version;
    c.db_version = version;
    c.site = 0;
    c.seq = seq++;
  };
  // crdt-semantics.md, local writes: INSERT of a new key, re-insert, and REPLACE.
  auto insert_row = [&](Touched& t) {
    RowClock& c = t.clock;
    if (c.alive()) {
      // A REPLACE over a live row. Where the row has a sentinel (it was re-inserted, here or
      // at the origin of a merged change, or its table has only key columns), cr-sqlite 0.16
      // raises the causal length by 2 and the REPLACE starts a new life that beats a
      // concurrent delete of the old one; a row without a sentinel keeps cl 1.
      if (c.sentinel.present()) {
        c.cl += 2;
        stamp(c.sentinel, c.cl);
      }
      for (auto& cell : c.cells) stamp(cell, cell.present() ? cell.col_version + 1 : 1);
    } else {
      if (!c.exists) {
        c.exists = true;
        c.cl = 1;
        ++new_records;
        if (c.cells.empty()) stamp(c.sentinel, 1);
      } else {
        c.cl += 1;
        stamp(c.sentinel, c.cl);
      }
      for (auto& cell : c.cells) stamp(cell, 1);
    }
    t.dirty = true;
  };
  auto delete_row = [&](Touched& t) {
    RowClock& c = t.clock;
    if (!c.exists) {
      c.exists = true;
      c.cl = 2;
      ++new_records;
    } else {
      c.cl += (c.cl & 1) ? 1 : 2;
    }
    for (auto& cell : c.cells) cell = CellClock{};
    stamp(c.sentinel, c.cl);
    t.dirty = true;
  };
  auto first_touch = [](Touched& t, const std::optional<Row>& old_row) {
    if (t.seen) return;
    t.seen = true;
    t.first_old = old_row;
  };

  for (size_t e = 0; e < events.size(); ++e) {
    CaptureEvent& ev = events[e];
    size_t table = ev.table;
    switch (ev.kind) {
      case CaptureEvent::Kind::insert: {
        TANDEM_ASSIGN_OR_RETURN(Touched * t, touch(table, ev.new_key));
        first_touch(*t, std::nullopt);
        insert_row(*t);
        t->last_new = std::move(ev.new_row);
        break;
      }
      case CaptureEvent::Kind::remove: {
        TANDEM_ASSIGN_OR_RETURN(Touched * t, touch(table, ev.old_key));
        first_touch(*t, ev.old_row);
        // An unconfirmed delete was a REPLACE conflict. When the write that caused it
        // lands on the same key, that write records every column (crdt-semantics.md);
        // a conflict that removed another key is that key's delete.
        bool replaced_in_place = false;
        if (!ev.confirmed) {
          for (size_t next = e + 1; next < events.size(); ++next) {
            const CaptureEvent& n = events[next];
            if (n.table != ev.table) continue;
            replaced_in_place = n.kind != CaptureEvent::Kind::remove && identical(n.new_key, ev.old_key);
            break;
          }
        }
        if (!replaced_in_place) delete_row(*t);
        t->last_new.reset();
        break;
      }
      case CaptureEvent::Kind::update: {
        if (!identical(ev.old_key, ev.new_key)) {
          // A primary-key update: a delete of the old key plus an insert of the new key with
          // every column as a fresh write (where cr-sqlite 0.16 diverges).
          TANDEM_ASSIGN_OR_RETURN(Touched * from, touch(table, ev.old_key));
          first_touch(*from, ev.old_row);
          delete_row(*from);
          from->last_new.reset();
          TANDEM_ASSIGN_OR_RETURN(Touched * to, touch(table, ev.new_key));
          first_touch(*to, std::nullopt);
          insert_row(*to);
          to->last_new = std::move(ev.new_row);
          break;
        }
        TANDEM_ASSIGN_OR_RETURN(Touched * t, touch(table, ev.new_key));
        first_touch(*t, ev.old_row);
        if (t->update_only) {
          for (uint32_t c : ev.changed) {
            put_varint(t->bumps, c);
            put_varint(t->bumps, static_cast<uint64_t>(seq++));
          }
          t->last_new = std::move(ev.new_row);
          break;
        }
        if (!t->clock.alive()) {
          insert_row(*t);  // a row Tandem had no live clock for: record every column
        } else if (!ev.changed.empty()) {
          for (uint32_t c : ev.changed) {
            CellClock& cell = t->clock.cells[c];
            stamp(cell, cell.present() ? cell.col_version + 1 : 1);
          }
          t->dirty = true;
        }
        t->last_new = std::move(ev.new_row);
        break;
      }
    }
  }

  // Renumber seq so that it increases along the change log (table order, then first-touch
  // order, then write order within a row): changes_since can then stream a version in seq
  // order without sorting it, and resume inside it (changes.cpp).
  {
    int64_t next = 0;
    for (size_t table = 0; table < tables.size(); ++table) {
      for (auto& t : touched) {
        if (t.table != table) continue;
        if (t.update_only) {
          std::string_view in = t.bumps;
          std::string renumbered;
          uint64_t cell, old_seq;
          while (get_varint(in, &cell) && get_varint(in, &old_seq)) {
            put_varint(renumbered, cell);
            put_varint(renumbered, static_cast<uint64_t>(next++));
          }
          t.bumps = std::move(renumbered);
          continue;
        }
        if (!t.dirty) continue;
        std::vector<CellClock*> written;
        for (auto& c : t.clock.cells)
          if (c.present() && c.db_version == version) written.push_back(&c);
        if (t.clock.sentinel.present() && t.clock.sentinel.db_version == version) written.push_back(&t.clock.sentinel);
        std::sort(written.begin(), written.end(), [](const CellClock* a, const CellClock* b) { return a->seq < b->seq; });
        for (CellClock* c : written) c->seq = next++;
      }
    }
    seq = next;  // later stamps (rows found without a live clock below) come after
  }

  // Update-only keys: bump their records in place. A row Tandem holds no live clock for (a
  // write that bypassed it) is not matched; it is recorded as a fresh write of every column.
  {
    std::vector<std::vector<Value>> cells(tables.size());
    std::vector<int64_t> expected(tables.size(), 0);
    for (auto& t : touched) {
      if (!t.update_only || t.bumps.empty()) continue;
      cells[t.table].push_back(t.key);
      cells[t.table].push_back(Value::Blob(t.bumps));
      ++expected[t.table];
    }
    bool all_matched = true;
    for (size_t table = 0; table < tables.size(); ++table) {
      if (cells[table].empty()) continue;
      TANDEM_ASSIGN_OR_RETURN(int64_t matched, bump_clocks(*tables[table], version, cells[table]));
      all_matched = all_matched && matched == expected[table];
    }
    if (!all_matched) {
      TANDEM_RETURN_IF_ERROR(load_clocks_of([&](size_t i) { return touched[i].update_only && !touched[i].bumps.empty(); }));
      for (auto& t : touched) {
        if (!t.update_only || t.bumps.empty() || t.clock.alive()) continue;
        insert_row(t);
        t.update_only = false;
      }
    }
  }

  TouchedKeys keys;
  std::vector<std::vector<std::pair<Value, const RowClock*>>> records(tables.size());
  for (auto& t : touched) {
    if (t.update_only && !t.bumps.empty()) {
      keys.add(t.table, t.key);
    } else if (t.dirty) {
      records[t.table].emplace_back(t.key, &t.clock);
      keys.add(t.table, t.key);
    }
  }
  for (size_t table = 0; table < tables.size(); ++table) TANDEM_RETURN_IF_ERROR(save_clocks(*tables[table], records[table]));
  for (auto& t : touched) {
    if (!options.capture_row_images) continue;
    if (!t.first_old && !t.last_new) continue;
    if (t.first_old && t.last_new && identical(*t.first_old, *t.last_new)) continue;
    result.deltas.deltas.push_back(RowDelta{tables[t.table]->name, std::move(t.first_old), std::move(t.last_new)});
  }
  if (keys.per_table.empty()) return result;

  TANDEM_RETURN_IF_ERROR(append_changelog(version, keys));
  clock_records += new_records;
  db_version = version;
  TANDEM_RETURN_IF_ERROR(compact_changelog_if_needed());
  TANDEM_RETURN_IF_ERROR(save_counters(db_version, clock_records, changelog_keys));
  result.changed = true;
  result.db_version = version;
  result.deltas.db_version = version;
  return result;
}

// ---- Store ----

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const std::string& path, const StoreOptions& options) {
  std::unique_ptr<ProcessLock> lock;
  if (const std::string lock_path = database_lock_path(path); !lock_path.empty()) {
    TANDEM_ASSIGN_OR_RETURN(lock, ProcessLock::acquire(lock_path, "database '" + path + "'"));
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  TANDEM_ASSIGN_OR_RETURN(impl->db, Database::open(path, options.open));
  impl->synchronous_full = options.open.synchronous_full;
  Database& db = *impl->db;

  {
    Transaction txn(db);
    TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
    TANDEM_RETURN_IF_ERROR(db.exec(kBookkeeping).with_context("creating Tandem's tables in " + path));
    {
      TANDEM_ASSIGN_OR_RETURN(auto cols, db.prepare("SELECT count(*) FROM pragma_table_info('tandem_peers') WHERE name = 'seen'"));
      TANDEM_ASSIGN_OR_RETURN(bool row, cols->step());
      const bool has_seen = row && cols->column_int64(0) > 0;
      cols.reset();
      if (!has_seen) TANDEM_RETURN_IF_ERROR(db.exec(kPeersSeen).with_context("adding tandem_peers.seen in " + path));
    }
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT key, value FROM tandem_meta"));
    std::optional<SiteId> site;
    std::optional<int64_t> format;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      std::string key = st->column(0).bytes();
      Value v = st->column(1);
      if (key == "site_id") {
        site = v.is_blob() ? site_from_bytes(v.bytes()) : std::nullopt;
        if (!site) return Status::Internal(path + ": corrupt site_id in tandem_meta");
      } else if (key == "format") {
        format = v.integer();
      } else if (key == "db_version") {
        impl->db_version = v.integer();
      } else if (key == "clock_records") {
        impl->clock_records = v.integer();
      } else if (key == "changelog_keys") {
        impl->changelog_keys = v.integer();
      }
    }
    st.reset();
    if (format && *format != kFormat)
      return Status::Unsupported(path + " has Tandem format " + std::to_string(*format) + "; this build reads format " +
                                 std::to_string(kFormat));
    if (!site) {
      site = options.site_id ? *options.site_id : random_site();
      TANDEM_ASSIGN_OR_RETURN(auto ins, db.prepare("INSERT INTO tandem_meta(key, value) VALUES ('site_id', ?1), ('format', ?2), ('db_version', 0)"));
      TANDEM_RETURN_IF_ERROR(ins->bind(1, Value::Blob(site_bytes(*site))));
      TANDEM_RETURN_IF_ERROR(ins->bind_int64(2, kFormat));
      TANDEM_RETURN_IF_ERROR(ins->run());
      TANDEM_ASSIGN_OR_RETURN(auto own, db.prepare("INSERT OR REPLACE INTO tandem_sites(ordinal, site_id) VALUES (0, ?1)"));
      TANDEM_RETURN_IF_ERROR(own->bind(1, Value::Blob(site_bytes(*site))));
      TANDEM_RETURN_IF_ERROR(own->run());
    }
    impl->site = *site;
    TANDEM_RETURN_IF_ERROR(txn.commit());
  }

  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT ordinal, site_id FROM tandem_sites ORDER BY ordinal"));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      auto s = site_from_bytes(st->column(1).bytes());
      if (!s || st->column_int64(0) != static_cast<int64_t>(impl->sites.size()))
        return Status::Internal(path + ": corrupt tandem_sites");
      impl->site_ordinals.emplace(site_bytes(*s), static_cast<int64_t>(impl->sites.size()));
      impl->sites.push_back(*s);
    }
    if (impl->sites.empty() || impl->sites[0] != impl->site) return Status::Internal(path + ": corrupt tandem_sites");
  }

  {
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT id, name, value_columns FROM tandem_tables ORDER BY id"));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      int64_t id = st->column_int64(0);
      std::string name = st->column(1).bytes();
      std::string stored = st->column(2).bytes();
      TANDEM_ASSIGN_OR_RETURN(TableInfo info, inspect_table(db, name));
      info.id = id;
      TANDEM_ASSIGN_OR_RETURN(info.base_cells, load_base_cells(db, info));
      TANDEM_RETURN_IF_ERROR(fill_default_values(info));
      nlohmann::json columns = nlohmann::json::array();
      for (int c : info.value_columns) columns.push_back(info.columns[static_cast<size_t>(c)].name);
      if (columns.dump() != stored)
        return Status::Internal(path + ": replicated table " + name + " changed outside Tandem (value columns " +
                                columns.dump() + ", registered " + stored + ")");
      impl->tables.push_back(std::make_unique<TableInfo>(std::move(info)));
      impl->table_list.push_back(impl->tables.back().get());
    }
  }

  // tandem_merging(): 1 while a merge writes rows, so application triggers on replicated
  // tables can skip work that the origin replica already did (WHEN NOT tandem_merging()).
  sqlite3_create_function_v2(
      db.raw(), "tandem_merging", 0, SQLITE_UTF8 | SQLITE_INNOCUOUS, impl.get(),
      [](sqlite3_context* ctx, int, sqlite3_value**) {
        sqlite3_result_int(ctx, static_cast<Store::Impl*>(sqlite3_user_data(ctx))->merging ? 1 : 0);
      },
      nullptr, nullptr, nullptr);
  sqlite3_create_function_v2(db.raw(), "tandem_bump", 6, SQLITE_UTF8 | SQLITE_DIRECTONLY | SQLITE_DETERMINISTIC, nullptr, tandem_bump,
                             nullptr, nullptr, nullptr);
  impl->register_key_function();
  for (const auto& t : impl->tables) TANDEM_RETURN_IF_ERROR(impl->install_key_allocation(*t));
  impl->capture.attach(db.raw(), &impl->table_list);
  impl->capture.set_max_value_bytes(kMaxValueBytes);
  sqlite3_limit(db.raw(), SQLITE_LIMIT_LENGTH, static_cast<int>(kMaxValueBytes + kMaxRowOverheadBytes));
  sqlite3_set_authorizer(db.raw(), authorize, impl.get());
  auto store = std::unique_ptr<Store>(new Store(std::move(impl)));
  store->lock_ = std::move(lock);
  return store;
}

Status Store::register_table(const std::string& name) {
  Impl& s = *impl_;
  TANDEM_ASSIGN_OR_RETURN(TableInfo info, inspect_table(*s.db, name));
  if (s.find_table(info.name)) return Status::Ok();

  MirrorGuard mirror(s);
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  nlohmann::json columns = nlohmann::json::array();
  for (int c : info.value_columns) columns.push_back(info.columns[static_cast<size_t>(c)].name);
  {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare("INSERT INTO tandem_tables(name, value_columns) VALUES (?1, ?2)"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(info.name)));
    TANDEM_RETURN_IF_ERROR(st->bind(2, Value::Text(columns.dump())));
    TANDEM_RETURN_IF_ERROR(st->run());
    info.id = sqlite3_last_insert_rowid(s.db->raw());
  }
  info.base_cells = info.value_columns.size();
  TANDEM_RETURN_IF_ERROR(fill_default_values(info));
  std::string key_type = info.integer_pk ? "INTEGER PRIMARY KEY" : "BLOB PRIMARY KEY NOT NULL";
  TANDEM_RETURN_IF_ERROR(s.db->exec("CREATE TABLE " + info.clock_table() + "(pk " + key_type +
                                    ", cl INTEGER NOT NULL, clock BLOB NOT NULL)"));

  // Rows the table already holds become this replica's inserts, in one new db_version.
  auto owned = std::make_unique<TableInfo>(info);
  size_t position = s.tables.size();
  s.tables.push_back(std::move(owned));
  s.table_list.push_back(s.tables.back().get());
  auto undo_registration = [&] {
    s.tables.pop_back();
    s.table_list.pop_back();
  };
  std::string select = "SELECT ";
  for (size_t i = 0; i < info.pk_columns.size(); ++i)
    select += (i ? ", " : "") + quote_identifier(info.columns[static_cast<size_t>(info.pk_columns[i])].name);
  select += " FROM " + info.quoted_name();
  auto backfill = [&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto st, s.db->prepare(select));
    TouchedKeys keys;
    const int64_t version = s.db_version + 1;
    int64_t seq = 0, rows = 0;
    std::vector<std::pair<Value, RowClock>> chunk;
    auto save_chunk = [&]() -> Status {
      std::vector<std::pair<Value, const RowClock*>> records;
      for (const auto& [key, clock] : chunk) records.emplace_back(key, &clock);
      TANDEM_RETURN_IF_ERROR(s.save_clocks(info, records));
      chunk.clear();
      return Status::Ok();
    };
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      Value key = clock_key(info.integer_pk, st->row());
      RowClock clock;
      clock.exists = true;
      clock.cl = 1;
      clock.cells.assign(info.value_columns.size(), CellClock{});
      if (clock.cells.empty()) clock.sentinel = CellClock{1, version, 0, seq++};
      for (auto& cell : clock.cells) cell = CellClock{1, version, 0, seq++};
      keys.add(position, key);
      chunk.emplace_back(std::move(key), std::move(clock));
      ++rows;
      if (chunk.size() >= 10000) TANDEM_RETURN_IF_ERROR(save_chunk());
    }
    TANDEM_RETURN_IF_ERROR(save_chunk());
    if (rows > 0) {
      TANDEM_RETURN_IF_ERROR(s.append_changelog(version, keys));
      s.clock_records += rows;
      s.db_version = version;
      TANDEM_RETURN_IF_ERROR(s.save_counters(s.db_version, s.clock_records, s.changelog_keys));
    }
    return txn.commit();
  };
  Status done = backfill();
  if (done.ok()) done = s.install_key_allocation(*s.tables.back());
  if (!done.ok()) {
    undo_registration();
    return done;
  }
  mirror.commit();
  s.user_statements.clear();
  return Status::Ok();
}

std::vector<std::string> Store::replicated_tables() const {
  std::vector<std::string> names;
  for (const auto& t : impl_->tables) names.push_back(t->name);
  return names;
}

Result<std::vector<std::string>> Store::application_tables() { return tandem::application_tables(*impl_->db); }

const TableInfo* Store::table(const std::string& name) const { return impl_->find_table(name); }

Result<CommitResult> Store::write(const std::vector<SqlStatement>& statements, const std::string& mutation_id,
                                  const std::string& request_key) {
  Impl& s = *impl_;
  return s.local_write(
      [&]() -> Status {
        for (size_t i = 0; i < statements.size(); ++i) {
          const auto& stmt = statements[i];
          auto context = [&](const Status& st) {
            return statements.size() == 1 ? st : st.with_context("statement " + std::to_string(i + 1));
          };
          auto prepared = s.user_statement(stmt.sql);
          if (!prepared.ok()) return context(prepared.status());
          Statement* st = *prepared;
          st->reset();
          Status bound = st->bind_all(stmt.params);
          if (!bound.ok()) return context(bound);
          Status ran = st->run();
          st->reset();
          if (!ran.ok()) return context(ran);
        }
        return Status::Ok();
      },
      mutation_id, request_key);
}

Result<CommitResult> Store::transact(const std::function<Status(Database&)>& body, const std::string& mutation_id) {
  Impl& s = *impl_;
  return s.local_write([&]() { return body(*s.db); }, mutation_id);
}

Result<CommitResult> Store::mutate(const std::vector<worker::Mutation>& mutations, const std::string& mutation_id,
                                   const std::string& request_key) {
  Impl& s = *impl_;
  return s.local_write(
      [&]() -> Status {
        for (size_t i = 0; i < mutations.size(); ++i) {
          const auto& m = mutations[i];
          const std::string where = "mutation " + std::to_string(i + 1);
          const TableInfo* t = s.find_table(m.table());
          if (!t) return Status::InvalidArgument(where + ": no replicated table named '" + m.table() + "'");
          std::string sql;
          Row params;
          std::vector<std::string> names;
          for (const auto& c : t->columns) names.push_back(c.name);
          std::vector<int> pk(t->pk_columns.begin(), t->pk_columns.end());
          TANDEM_RETURN_IF_ERROR(validate_mutation({t->name, names, pk}, m).with_context(where));
          // Columns as declared: the same resolution the overlay used (mutation_rules.hpp).
          auto column = [&](const std::string& name) { return quote_identifier(names[static_cast<size_t>(mutation_column(names, name))]); };
          auto key_clause = [&](const google::protobuf::RepeatedPtrField<change::Value>& key) {
            sql += " WHERE ";
            for (size_t k = 0; k < t->pk_columns.size(); ++k) {
              if (k) sql += " AND ";
              sql += quote_identifier(names[static_cast<size_t>(t->pk_columns[k])]) + " = ?";
              params.push_back(from_proto(key[static_cast<int>(k)]));
            }
          };
          switch (m.op_case()) {
            case worker::Mutation::kInsert: {
              const auto& ins = m.insert();
              sql = std::string(ins.or_replace() ? "INSERT OR REPLACE INTO " : "INSERT INTO ") + t->quoted_name() + "(";
              for (int c = 0; c < ins.columns_size(); ++c) sql += (c ? ", " : "") + column(ins.columns(c));
              sql += ") VALUES (";
              for (int c = 0; c < ins.values_size(); ++c) sql += c ? ", ?" : "?";
              sql += ")";
              params = from_proto(ins.values());
              break;
            }
            case worker::Mutation::kUpdate: {
              const auto& up = m.update();
              sql = "UPDATE " + t->quoted_name() + " SET ";
              for (int c = 0; c < up.columns_size(); ++c) sql += (c ? ", " : "") + column(up.columns(c)) + " = ?";
              params = from_proto(up.values());
              key_clause(up.pk());
              break;
            }
            case worker::Mutation::kDelete:
              sql = "DELETE FROM " + t->quoted_name();
              key_clause(m.delete_().pk());
              break;
            case worker::Mutation::OP_NOT_SET: break;  // refused by validate_mutation
          }
          TANDEM_ASSIGN_OR_RETURN(Statement * st, s.user_statement(sql));
          st->reset();
          TANDEM_RETURN_IF_ERROR(st->bind_all(params).with_context(where));
          Status ran = st->run();
          st->reset();
          TANDEM_RETURN_IF_ERROR(ran.with_context(where));
          if (m.op_case() == worker::Mutation::kUpdate && s.db->changes() == 0)
            return Status::NotFound(where + ": no row of " + t->name + " has that primary key");
        }
        return Status::Ok();
      },
      mutation_id, request_key);
}

Result<QueryResult> Store::query(const std::string& sql, const Row& params) {
  Impl& s = *impl_;
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_deferred());
  s.mode = Impl::Mode::user_read;
  auto prepared = s.user_statement(sql);
  s.mode = Impl::Mode::internal;
  if (!prepared.ok()) return prepared.status();
  Statement* st = *prepared;
  if (!st->readonly()) return Status::InvalidArgument("a query must not write; use a write for: " + sql);
  st->reset();
  TANDEM_RETURN_IF_ERROR(st->bind_all(params));
  QueryResult result;
  result.db_version = s.db_version;
  for (int i = 0; i < st->column_count(); ++i) result.columns.push_back(st->column_name(i));
  s.mode = Impl::Mode::user_read;
  for (;;) {
    auto row = st->step();
    if (!row.ok()) {
      s.mode = Impl::Mode::internal;
      st->reset();
      return row.status();
    }
    if (!*row) break;
    result.rows.push_back(st->row());
  }
  s.mode = Impl::Mode::internal;
  st->reset();
  TANDEM_RETURN_IF_ERROR(txn.commit());
  return result;
}

Result<PeerCursor> Store::peer(const SiteId& peer) {
  TANDEM_ASSIGN_OR_RETURN(auto st, impl_->db->cached("SELECT received, acked FROM tandem_peers WHERE site_id = ?1"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Blob(site_bytes(peer))));
  TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
  PeerCursor c;
  if (found) {
    c.received = st->column_int64(0);
    c.acked = st->column_int64(1);
  }
  return c;
}

Status Store::record_peer_acks(const std::vector<std::pair<SiteId, int64_t>>& acks) {
  if (acks.empty()) return Status::Ok();
  SyncScope mode(*impl_, CommitSync::kDeferred);
  TANDEM_RETURN_IF_ERROR(mode.status());
  Transaction txn(*impl_->db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  for (const auto& [peer, acked] : acks) TANDEM_RETURN_IF_ERROR(impl_->write_peer_cursor(peer, acked, 0));
  return txn.commit();
}

Status Store::Impl::set_synchronous(bool full) {
  if (full == synchronous_full) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(db->exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  synchronous_full = full;
  return Status::Ok();
}

Status Store::sync() {
  SyncScope mode(*impl_, CommitSync::kFull);
  if (!mode.full()) return mode.status();
  // A commit that writes no page appends no WAL frame and syncs nothing, and SQLite skips
  // writing a row rewritten with its own bytes (measured: no fsync), so a counter changes.
  Transaction txn(*impl_->db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  TANDEM_RETURN_IF_ERROR(impl_->db->exec(
      "INSERT INTO tandem_meta(key, value) VALUES ('fsync_marks', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1"));
  return txn.commit();
}

namespace {

Status check_note_key(const std::string& key) {
  if (key.rfind("sync_", 0) != 0 || key.size() == 5)
    return Status::InvalidArgument("note key '" + key + "' must start with \"sync_\": other keys of tandem_meta are the store's own");
  return Status::Ok();
}

}  // namespace

Result<std::optional<std::string>> Store::note(const std::string& key) {
  TANDEM_RETURN_IF_ERROR(check_note_key(key));
  TANDEM_ASSIGN_OR_RETURN(auto st, impl_->db->cached("SELECT value FROM tandem_meta WHERE key = ?1"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(key)));
  TANDEM_ASSIGN_OR_RETURN(bool found, st->step());
  if (!found) return std::optional<std::string>();
  const Value v = st->column(0);
  if (!v.is_text()) return Status::Internal("corrupt " + key + " in tandem_meta (not TEXT)");
  return std::optional<std::string>(v.bytes());
}

Status Store::put_notes(const std::vector<std::pair<std::string, std::string>>& notes) {
  for (const auto& [key, value] : notes) TANDEM_RETURN_IF_ERROR(check_note_key(key));
  Transaction txn(*impl_->db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  TANDEM_ASSIGN_OR_RETURN(auto st, impl_->db->cached("INSERT OR REPLACE INTO tandem_meta(key, value) VALUES (?1, ?2)"));
  for (const auto& [key, value] : notes) {
    st->reset();
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(key)));
    TANDEM_RETURN_IF_ERROR(st->bind(2, Value::Text(value)));
    TANDEM_RETURN_IF_ERROR(st->run());
  }
  return txn.commit();
}

Result<std::vector<PeerRecord>> Store::peers() {
  TANDEM_ASSIGN_OR_RETURN(auto st, impl_->db->cached("SELECT site_id, received, acked FROM tandem_peers ORDER BY received DESC, site_id"));
  std::vector<PeerRecord> out;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    auto site = site_from_bytes(st->column(0).bytes());
    if (!site) return Status::Internal("tandem_peers holds a site id that is not 16 bytes");
    out.push_back(PeerRecord{*site, PeerCursor{st->column_int64(1), st->column_int64(2)}});
  }
  return out;
}

Status Store::record_peer_ack(const SiteId& peer, int64_t acked, int64_t received) {
  SyncScope mode(*impl_, CommitSync::kDeferred);
  TANDEM_RETURN_IF_ERROR(mode.status());
  return impl_->write_peer_cursor(peer, acked, received);
}

Status Store::Impl::write_peer_cursor(const SiteId& peer, int64_t acked, int64_t received) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db->cached(
      "INSERT INTO tandem_peers(site_id, acked, received, seen) VALUES (?1, ?2, ?3, CAST(strftime('%s', 'now') AS INTEGER)) "
      "ON CONFLICT(site_id) DO UPDATE SET acked = max(acked, excluded.acked), received = max(received, excluded.received), "
      "seen = excluded.seen"));
  TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Blob(site_bytes(peer))));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(2, acked));
  TANDEM_RETURN_IF_ERROR(st->bind_int64(3, received));
  return st->run();
}

Result<SiteId> Store::take_new_site(int64_t keep_through) {
  Impl& s = *impl_;
  const SiteId old_site = s.site;
  SiteId fresh = random_site();
  while (s.site_ordinals.count(site_bytes(fresh))) fresh = random_site();
  const auto old_ordinal = static_cast<int64_t>(s.sites.size());
  Transaction txn(*s.db);
  TANDEM_RETURN_IF_ERROR(txn.begin_immediate());
  {
    // Ordinal 0 (this replica) gets the new id; the old id becomes an ordinary site.
    TANDEM_ASSIGN_OR_RETURN(auto own, s.db->prepare("UPDATE tandem_sites SET site_id = ?1 WHERE ordinal = 0"));
    TANDEM_RETURN_IF_ERROR(own->bind(1, Value::Blob(site_bytes(fresh))));
    TANDEM_RETURN_IF_ERROR(own->run());
    TANDEM_ASSIGN_OR_RETURN(auto old, s.db->prepare("INSERT INTO tandem_sites(ordinal, site_id) VALUES (?1, ?2)"));
    TANDEM_RETURN_IF_ERROR(old->bind_int64(1, old_ordinal));
    TANDEM_RETURN_IF_ERROR(old->bind(2, Value::Blob(site_bytes(old_site))));
    TANDEM_RETURN_IF_ERROR(old->run());
    TANDEM_ASSIGN_OR_RETURN(auto meta, s.db->prepare("UPDATE tandem_meta SET value = ?1 WHERE key = 'site_id'"));
    TANDEM_RETURN_IF_ERROR(meta->bind(1, Value::Blob(site_bytes(fresh))));
    TANDEM_RETURN_IF_ERROR(meta->run());
    // No peer holds a change of the new site yet.
    TANDEM_RETURN_IF_ERROR(s.db->exec("UPDATE tandem_peers SET acked = 0"));
  }
  // Clocks of our changes up to keep_through move to the old id's ordinal.
  for (const auto& t : s.tables) {
    TANDEM_ASSIGN_OR_RETURN(auto read, s.db->prepare("SELECT pk, cl, clock FROM " + t->clock_table()));
    TANDEM_ASSIGN_OR_RETURN(auto write, s.db->prepare("UPDATE " + t->clock_table() + " SET clock = ?1 WHERE pk = ?2"));
    std::vector<std::pair<Value, std::string>> updates;
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, read->step());
      if (!row) break;
      RowClock clock;
      clock.exists = true;
      clock.cl = read->column_int64(1);
      const Value bytes = read->column(2);
      TANDEM_RETURN_IF_ERROR(decode_clock(bytes.bytes(), t->value_columns.size(), t->base_cells, &clock).with_context("clock of a row of " + t->name));
      bool moved = false;
      auto move = [&](CellClock& c) {
        if (c.present() && c.site == 0 && c.db_version <= keep_through) {
          c.site = old_ordinal;
          moved = true;
        }
      };
      for (auto& c : clock.cells) move(c);
      move(clock.sentinel);
      if (moved) updates.emplace_back(read->column(0), encode_clock(clock, t->base_cells));
    }
    for (const auto& [key, record] : updates) {
      write->reset();
      TANDEM_RETURN_IF_ERROR(write->bind(1, Value::Blob(record)));
      TANDEM_RETURN_IF_ERROR(write->bind(2, key));
      TANDEM_RETURN_IF_ERROR(write->run());
    }
  }
  TANDEM_RETURN_IF_ERROR(txn.commit());
  s.site = fresh;
  s.sites[0] = fresh;
  s.sites.push_back(old_site);
  s.site_ordinals.erase(site_bytes(old_site));
  s.site_ordinals[site_bytes(fresh)] = 0;
  s.site_ordinals[site_bytes(old_site)] = old_ordinal;
  return fresh;
}

const SiteId& Store::site_id() const { return impl_->site; }
int64_t Store::db_version() const { return impl_->db_version; }
Database& store_connection(Store& store) { return *store.impl_->db; }

}  // namespace tandem
