#include "runtime/sqlite/database.hpp"

#include <sqlite3.h>

namespace tandem {

Status sqlite_status(int rc, const std::string& message) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return Status::Ok();
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH: return Status::Constraint(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return Status::Unavailable(message);
    case SQLITE_TOOBIG:
    case SQLITE_NOMEM:
    case SQLITE_FULL: return Status::ResourceExhausted(message);
    case SQLITE_AUTH:
    case SQLITE_PERM:
    case SQLITE_READONLY: return Status::PermissionDenied(message);
    case SQLITE_ERROR:
    case SQLITE_RANGE: return Status::InvalidArgument(message);
    case SQLITE_IOERR:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    default: return Status::Internal(message);
  }
}

Value value_from_sqlite(sqlite3_value* v) {
  switch (sqlite3_value_type(v)) {
    case SQLITE_INTEGER: return Value::Integer(sqlite3_value_int64(v));
    case SQLITE_FLOAT: return Value::Real(sqlite3_value_double(v));
    case SQLITE_TEXT: {
      auto p = reinterpret_cast<const char*>(sqlite3_value_text(v));
      return Value::Text(std::string(p, static_cast<size_t>(sqlite3_value_bytes(v))));
    }
    case SQLITE_BLOB: {
      auto p = static_cast<const char*>(sqlite3_value_blob(v));
      auto n = static_cast<size_t>(sqlite3_value_bytes(v));
      return Value::Blob(n ? std::string(p, n) : std::string());
    }
    default: return Value();
  }
}

// ---- Statement ----

Statement::~Statement() { sqlite3_finalize(stmt_); }

Status Statement::bind(int index, const Value& v) {
  int rc = SQLITE_OK;
  switch (v.type()) {
    case Value::Type::null: rc = sqlite3_bind_null(stmt_, index); break;
    case Value::Type::integer: rc = sqlite3_bind_int64(stmt_, index, v.integer()); break;
    case Value::Type::real: rc = sqlite3_bind_double(stmt_, index, v.real()); break;
    case Value::Type::text:
      rc = sqlite3_bind_text64(stmt_, index, v.bytes().data(), v.bytes().size(), SQLITE_TRANSIENT, SQLITE_UTF8);
      break;
    case Value::Type::blob:
      // A zero-length BLOB must stay a BLOB: sqlite3_bind_blob with a null pointer binds NULL.
      if (v.bytes().empty())
        rc = sqlite3_bind_zeroblob(stmt_, index, 0);
      else
        rc = sqlite3_bind_blob64(stmt_, index, v.bytes().data(), v.bytes().size(), SQLITE_TRANSIENT);
      break;
  }
  if (rc != SQLITE_OK) return db_->error(rc);
  return Status::Ok();
}

Status Statement::bind_int64(int index, int64_t v) {
  int rc = sqlite3_bind_int64(stmt_, index, v);
  return rc == SQLITE_OK ? Status::Ok() : db_->error(rc);
}

Status Statement::bind_all(const Row& values) {
  int n = parameter_count();
  if (static_cast<size_t>(n) != values.size())
    return Status::InvalidArgument("statement has " + std::to_string(n) + " parameters but " +
                                   std::to_string(values.size()) + " values were given");
  for (int i = 0; i < n; ++i) TANDEM_RETURN_IF_ERROR(bind(i + 1, values[static_cast<size_t>(i)]));
  return Status::Ok();
}

int Statement::parameter_count() const { return sqlite3_bind_parameter_count(stmt_); }

Result<bool> Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // sqlite3_errmsg is the most specific message (it names the failed constraint).
  Status s = db_->error(rc);
  sqlite3_reset(stmt_);
  return s;
}

Status Statement::run() {
  for (;;) {
    auto r = step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Ok();
  }
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int Statement::column_count() const { return sqlite3_column_count(stmt_); }

std::string Statement::column_name(int i) const {
  const char* n = sqlite3_column_name(stmt_, i);
  return n ? n : "";
}

Value Statement::column(int i) const { return value_from_sqlite(sqlite3_column_value(stmt_, i)); }

int64_t Statement::column_int64(int i) const { return sqlite3_column_int64(stmt_, i); }

Row Statement::row() const {
  Row r;
  int n = column_count();
  r.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) r.push_back(column(i));
  return r;
}

bool Statement::readonly() const { return sqlite3_stmt_readonly(stmt_) != 0; }

std::string Statement::sql() const {
  const char* s = sqlite3_sql(stmt_);
  return s ? s : "";
}

// ---- Database ----

Result<std::unique_ptr<Database>> Database::open(const std::string& path, const OpenOptions& o) {
  sqlite3* raw = nullptr;
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  flags |= o.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (o.create && !o.read_only) flags |= SQLITE_OPEN_CREATE;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, o.vfs.empty() ? nullptr : o.vfs.c_str());
  if (rc != SQLITE_OK) {
    std::string msg = raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    sqlite3_close_v2(raw);
    return sqlite_status(rc, "cannot open " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(raw, 1);
  std::unique_ptr<Database> db(new Database(raw, path));
  sqlite3_db_config(raw, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(raw, SQLITE_DBCONFIG_ENABLE_TRIGGER, 1, nullptr);
  sqlite3_busy_timeout(raw, o.busy_timeout_ms);
  std::string pragmas = "PRAGMA recursive_triggers=OFF; PRAGMA foreign_keys=OFF; PRAGMA wal_autocheckpoint=8192; "
                        "PRAGMA journal_size_limit=67108864; PRAGMA cache_size=-" +
                        std::to_string(o.cache_size_kib) + ";";
  if (!o.read_only) pragmas += o.synchronous_full ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;";
  TANDEM_RETURN_IF_ERROR(db->exec(pragmas).with_context("configuring " + path));
  if (o.wal && !o.read_only && path != ":memory:" && path.rfind("file::memory:", 0) != 0) {
    auto st = db->prepare("PRAGMA journal_mode=WAL");
    if (!st.ok()) return st.status();
    auto r = (*st)->step();
    if (!r.ok()) return r.status().with_context("enabling WAL on " + path);
    if (*r && (*st)->column(0).bytes() != "wal")
      return Status::Internal("cannot enable WAL on " + path + " (journal_mode is " + (*st)->column(0).bytes() + ")");
  }
  // Reading the schema once turns a corrupt or non-database file into an error now.
  TANDEM_RETURN_IF_ERROR(db->exec("SELECT count(*) FROM sqlite_schema").with_context("reading " + path));
  return db;
}

Database::~Database() {
  cache_.clear();
  sqlite3_close_v2(db_);
}

Status Database::error(int rc) const {
  const char* msg = sqlite3_errmsg(db_);
  return sqlite_status(rc, msg ? msg : sqlite3_errstr(rc));
}

Status Database::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  return sqlite_status(sqlite3_extended_errcode(db_), msg);
}

Result<std::unique_ptr<Statement>> Database::prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  const char* tail = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
  if (rc != SQLITE_OK) return error(rc);
  if (!stmt) return Status::InvalidArgument("empty SQL statement");
  auto owned = std::make_unique<Statement>(this, stmt);
  for (const char* p = tail; p && *p; ++p) {
    if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';') continue;
    return Status::InvalidArgument("more than one statement in: " + sql);
  }
  return owned;
}

Result<StatementLease> Database::cached(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    auto st = prepare(sql);
    if (!st.ok()) return st.status();
    it = cache_.emplace(sql, std::move(st).value()).first;
  }
  return StatementLease(it->second.get());
}

void Database::rollback() {
  if (sqlite3_get_autocommit(db_)) return;
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

bool Database::in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }
int64_t Database::changes() const { return sqlite3_changes64(db_); }
int64_t Database::total_changes() const { return sqlite3_total_changes64(db_); }

}  // namespace tandem
