// The C API (include/tandem/tandem.h) over the public C++ API: handles own C++ objects,
// values are converted at the boundary, no exception crosses it (each entry point catches
// and answers TANDEM_INTERNAL), and the calling thread's last error is kept for
// tandem_last_error. The threading rules are the C++ API's (tandem/database.hpp).
#include "tandem/tandem.h"

#include <memory>
#include <string>
#include <vector>

#include "tandem/tandem.hpp"

using tandem::api::Code;
using tandem::api::Database;
using tandem::api::Mutation;
using tandem::api::Row;
using tandem::api::Status;
using tandem::api::Value;

struct tandem_db {
  std::unique_ptr<Database> db;
};
struct tandem_watch {
  tandem::api::Watch watch;
};
struct tandem_rows {
  tandem::api::QueryResult result;
};
struct tandem_txn {
  tandem_db* db;
  std::vector<tandem::api::Statement> statements;
};
struct tandem_mutation {
  tandem_db* db;
  std::vector<Mutation> mutations;
};
struct tandem_event {
  const tandem::api::WatchEvent* event;
};

namespace {

thread_local std::string last_error;

int32_t fail(Code code, std::string message) {
  last_error = std::move(message);
  return static_cast<int32_t>(code);
}
int32_t answer(const Status& s) {
  if (s.ok()) {
    last_error.clear();
    return TANDEM_OK;
  }
  return fail(s.code(), s.message());
}
int32_t null_argument(const char* function, const char* argument) {
  return fail(Code::invalid_argument, std::string(function) + ": " + argument + " is NULL");
}

// Runs `body` (returning int32_t); an escaping exception becomes TANDEM_INTERNAL.
template <class F>
int32_t guarded(F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    return fail(Code::internal, std::string("unexpected: ") + e.what());
  } catch (...) {
    return fail(Code::internal, "unexpected exception");
  }
}

// Borrowed C values to owned ones; false (with the error set) on a malformed value.
bool to_row(const char* function, const tandem_value* values, size_t count, Row* out, int32_t* code) {
  out->clear();
  if (count > 0 && values == nullptr) {
    *code = null_argument(function, "values");
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    const tandem_value& v = values[i];
    switch (v.type) {
      case TANDEM_NULL: out->emplace_back(nullptr); break;
      case TANDEM_INTEGER: out->emplace_back(v.integer); break;
      case TANDEM_REAL: out->emplace_back(v.real); break;
      case TANDEM_TEXT:
      case TANDEM_BLOB: {
        if (v.bytes == nullptr && v.size > 0) {
          *code = fail(Code::invalid_argument, std::string(function) + ": value " + std::to_string(i) + " has size but no bytes");
          return false;
        }
        std::string bytes(v.bytes == nullptr ? "" : v.bytes, v.size);
        if (v.type == TANDEM_TEXT) {
          out->emplace_back(std::move(bytes));
        } else {
          out->emplace_back(tandem::api::Blob{std::move(bytes)});
        }
        break;
      }
      default:
        *code = fail(Code::invalid_argument, std::string(function) + ": value " + std::to_string(i) + " has an unknown type");
        return false;
    }
  }
  return true;
}

bool to_columns(const char* function, const char* const* columns, size_t count, std::vector<std::string>* out, int32_t* code) {
  out->clear();
  if (count > 0 && columns == nullptr) {
    *code = null_argument(function, "columns");
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    if (columns[i] == nullptr) {
      *code = null_argument(function, "a column name");
      return false;
    }
    out->emplace_back(columns[i]);
  }
  return true;
}

// An owned value seen through a borrowed tandem_value (bytes point into `v`).
void to_c(const Value& v, tandem_value* out) {
  *out = tandem_value{TANDEM_NULL, 0, 0.0, nullptr, 0};
  if (auto* i = std::get_if<int64_t>(&v)) {
    out->type = TANDEM_INTEGER;
    out->integer = *i;
  } else if (auto* d = std::get_if<double>(&v)) {
    out->type = TANDEM_REAL;
    out->real = *d;
  } else if (auto* s = std::get_if<std::string>(&v)) {
    out->type = TANDEM_TEXT;
    out->bytes = s->c_str();
    out->size = s->size();
  } else if (auto* b = std::get_if<tandem::api::Blob>(&v)) {
    out->type = TANDEM_BLOB;
    out->bytes = b->bytes.c_str();
    out->size = b->bytes.size();
  }
}

}  // namespace

extern "C" {

const char* tandem_last_error(void) { return last_error.c_str(); }

const char* tandem_code_name(int32_t code) {
  if (code < 0 || code > TANDEM_WRONG_THREAD) return "unknown";
  return tandem::api::code_name(static_cast<Code>(code));
}

int32_t tandem_db_open(const tandem_options* options, tandem_db** out) {
  return guarded([&] {
    if (out == nullptr) return null_argument("tandem_db_open", "out");
    *out = nullptr;
    if (options == nullptr) return null_argument("tandem_db_open", "options");
    if (options->path == nullptr) return null_argument("tandem_db_open", "options->path");
    if (options->schema == nullptr) return null_argument("tandem_db_open", "options->schema");
    tandem::api::Options o;
    o.path = options->path;
    o.schema = {options->schema};
    if (options->name != nullptr) o.name = options->name;
    if (options->timeout_ms > 0) o.timeout = std::chrono::milliseconds(options->timeout_ms);
    if (options->server_url != nullptr) {
      if (options->token == nullptr) return null_argument("tandem_db_open", "options->token (with a server_url)");
      tandem::api::SyncOptions s;
      s.url = options->server_url;
      s.token = options->token;
      if (options->ca_file != nullptr) s.ca_file = options->ca_file;
      s.verify_peer = options->insecure == 0;
      o.sync = s;
    }
    auto db = Database::open(std::move(o));
    if (!db.ok()) return answer(db.status());
    *out = new tandem_db{std::move(*db)};
    return answer(Status());
  });
}

int32_t tandem_db_close(tandem_db* db) {
  return guarded([&] {
    if (db == nullptr) return null_argument("tandem_db_close", "db");
    return answer(db->db->close());
  });
}

void tandem_db_free(tandem_db* db) {
  (void)guarded([&] {
    delete db;  // the Database's destructor closes it (in the background if in a callback)
    return 0;
  });
}

int32_t tandem_db_is_leader(tandem_db* db) {
  return guarded([&]() -> int32_t {
    if (db == nullptr) return -null_argument("tandem_db_is_leader", "db");
    return db->db->is_leader() ? 1 : 0;
  });
}

int32_t tandem_query(tandem_db* db, const char* sql, const tandem_value* params, size_t param_count, tandem_rows** out) {
  return guarded([&] {
    if (out == nullptr) return null_argument("tandem_query", "out");
    *out = nullptr;
    if (db == nullptr) return null_argument("tandem_query", "db");
    if (sql == nullptr) return null_argument("tandem_query", "sql");
    Row row;
    int32_t code = 0;
    if (!to_row("tandem_query", params, param_count, &row, &code)) return code;
    auto r = db->db->query(sql, row);
    if (!r.ok()) return answer(r.status());
    *out = new tandem_rows{std::move(*r)};
    return answer(Status());
  });
}

void tandem_rows_free(tandem_rows* rows) { delete rows; }
size_t tandem_rows_count(const tandem_rows* rows) { return rows == nullptr ? 0 : rows->result.rows.size(); }
size_t tandem_rows_column_count(const tandem_rows* rows) { return rows == nullptr ? 0 : rows->result.columns.size(); }
const char* tandem_rows_column_name(const tandem_rows* rows, size_t column) {
  if (rows == nullptr || column >= rows->result.columns.size()) return nullptr;
  return rows->result.columns[column].c_str();
}
int32_t tandem_rows_value(const tandem_rows* rows, size_t row, size_t column, tandem_value* out) {
  if (rows == nullptr) return null_argument("tandem_rows_value", "rows");
  if (out == nullptr) return null_argument("tandem_rows_value", "out");
  if (row >= rows->result.rows.size() || column >= rows->result.rows[row].size())
    return fail(Code::invalid_argument, "tandem_rows_value: row or column out of range");
  to_c(rows->result.rows[row][column], out);
  return TANDEM_OK;
}

int32_t tandem_txn_begin(tandem_db* db, tandem_txn** out) {
  return guarded([&] {
    if (out == nullptr) return null_argument("tandem_txn_begin", "out");
    *out = nullptr;
    if (db == nullptr) return null_argument("tandem_txn_begin", "db");
    *out = new tandem_txn{db, {}};
    return answer(Status());
  });
}

int32_t tandem_txn_add(tandem_txn* txn, const char* sql, const tandem_value* params, size_t param_count) {
  return guarded([&] {
    if (txn == nullptr) return null_argument("tandem_txn_add", "txn");
    if (sql == nullptr) return null_argument("tandem_txn_add", "sql");
    tandem::api::Statement st;
    st.sql = sql;
    int32_t code = 0;
    if (!to_row("tandem_txn_add", params, param_count, &st.params, &code)) return code;
    txn->statements.push_back(std::move(st));
    return answer(Status());
  });
}

int32_t tandem_txn_commit(tandem_txn* txn, int64_t* db_version, int64_t* rows_changed) {
  return guarded([&] {
    if (txn == nullptr) return null_argument("tandem_txn_commit", "txn");
    std::unique_ptr<tandem_txn> owned(txn);
    auto r = owned->db->db->write(owned->statements);
    if (!r.ok()) return answer(r.status());
    if (db_version != nullptr) *db_version = r->db_version;
    if (rows_changed != nullptr) *rows_changed = r->rows_changed;
    return answer(Status());
  });
}

void tandem_txn_free(tandem_txn* txn) { delete txn; }

int32_t tandem_exec(tandem_db* db, const char* sql, const tandem_value* params, size_t param_count, int64_t* db_version) {
  tandem_txn* txn = nullptr;
  int32_t code = tandem_txn_begin(db, &txn);
  if (code != TANDEM_OK) return code;
  code = tandem_txn_add(txn, sql, params, param_count);
  if (code != TANDEM_OK) {
    tandem_txn_free(txn);
    return code;
  }
  return tandem_txn_commit(txn, db_version, nullptr);
}

int32_t tandem_mutation_begin(tandem_db* db, tandem_mutation** out) {
  return guarded([&] {
    if (out == nullptr) return null_argument("tandem_mutation_begin", "out");
    *out = nullptr;
    if (db == nullptr) return null_argument("tandem_mutation_begin", "db");
    *out = new tandem_mutation{db, {}};
    return answer(Status());
  });
}

int32_t tandem_mutation_insert(tandem_mutation* m, const char* table, const char* const* columns, const tandem_value* values,
                               size_t count, int32_t or_replace) {
  return guarded([&] {
    if (m == nullptr) return null_argument("tandem_mutation_insert", "m");
    if (table == nullptr) return null_argument("tandem_mutation_insert", "table");
    std::vector<std::string> cols;
    Row row;
    int32_t code = 0;
    if (!to_columns("tandem_mutation_insert", columns, count, &cols, &code)) return code;
    if (!to_row("tandem_mutation_insert", values, count, &row, &code)) return code;
    m->mutations.push_back(Mutation::insert(table, std::move(cols), std::move(row), or_replace != 0));
    return answer(Status());
  });
}

int32_t tandem_mutation_update(tandem_mutation* m, const char* table, const tandem_value* pk, size_t pk_count,
                               const char* const* columns, const tandem_value* values, size_t count) {
  return guarded([&] {
    if (m == nullptr) return null_argument("tandem_mutation_update", "m");
    if (table == nullptr) return null_argument("tandem_mutation_update", "table");
    std::vector<std::string> cols;
    Row key, row;
    int32_t code = 0;
    if (!to_row("tandem_mutation_update", pk, pk_count, &key, &code)) return code;
    if (!to_columns("tandem_mutation_update", columns, count, &cols, &code)) return code;
    if (!to_row("tandem_mutation_update", values, count, &row, &code)) return code;
    m->mutations.push_back(Mutation::update(table, std::move(key), std::move(cols), std::move(row)));
    return answer(Status());
  });
}

int32_t tandem_mutation_delete(tandem_mutation* m, const char* table, const tandem_value* pk, size_t pk_count) {
  return guarded([&] {
    if (m == nullptr) return null_argument("tandem_mutation_delete", "m");
    if (table == nullptr) return null_argument("tandem_mutation_delete", "table");
    Row key;
    int32_t code = 0;
    if (!to_row("tandem_mutation_delete", pk, pk_count, &key, &code)) return code;
    m->mutations.push_back(Mutation::remove(table, std::move(key)));
    return answer(Status());
  });
}

void tandem_mutation_free(tandem_mutation* m) { delete m; }

int32_t tandem_mutate_commit(tandem_mutation* m, tandem_outcome_fn done, void* user, int64_t* db_version) {
  return guarded([&] {
    if (m == nullptr) return null_argument("tandem_mutate_commit", "m");
    std::unique_ptr<tandem_mutation> owned(m);
    Database& db = *owned->db->db;
    if (done != nullptr) {
      db.mutate_async(std::move(owned->mutations), [done, user](const Status& s, int64_t version) {
        done(user, static_cast<int32_t>(s.code()), s.message().c_str(), version);
      });
      return answer(Status());
    }
    auto r = db.mutate(std::move(owned->mutations));
    if (!r.ok()) return answer(r.status());
    if (db_version != nullptr) *db_version = *r;
    return answer(Status());
  });
}

int32_t tandem_event_is_initial(const tandem_event* e) { return e != nullptr && e->event->initial ? 1 : 0; }
int64_t tandem_event_db_version(const tandem_event* e) { return e == nullptr ? 0 : e->event->db_version; }
const char* tandem_event_error(const tandem_event* e) { return e == nullptr ? "" : e->event->error.c_str(); }
size_t tandem_event_count(const tandem_event* e) { return e == nullptr ? 0 : e->event->changes.size(); }

int32_t tandem_event_change(const tandem_event* e, size_t i, int32_t* kind, int64_t* position, int64_t* old_position) {
  if (e == nullptr) return null_argument("tandem_event_change", "e");
  if (i >= e->event->changes.size()) return fail(Code::invalid_argument, "tandem_event_change: index out of range");
  const auto& c = e->event->changes[i];
  if (kind != nullptr) *kind = static_cast<int32_t>(c.kind);
  if (position != nullptr) *position = c.position;
  if (old_position != nullptr) *old_position = c.old_position;
  return TANDEM_OK;
}

const char* tandem_event_key(const tandem_event* e, size_t i, size_t* key_size) {
  if (e == nullptr || i >= e->event->changes.size()) return nullptr;
  const auto& key = e->event->changes[i].key;
  if (key_size != nullptr) *key_size = key.size();
  return key.data();
}

size_t tandem_event_column_count(const tandem_event* e, size_t i) {
  if (e == nullptr || i >= e->event->changes.size()) return 0;
  return e->event->changes[i].row.size();
}

int32_t tandem_event_value(const tandem_event* e, size_t i, size_t column, tandem_value* out) {
  if (e == nullptr) return null_argument("tandem_event_value", "e");
  if (out == nullptr) return null_argument("tandem_event_value", "out");
  if (i >= e->event->changes.size() || column >= e->event->changes[i].row.size())
    return fail(Code::invalid_argument, "tandem_event_value: change or column out of range");
  to_c(e->event->changes[i].row[column], out);
  return TANDEM_OK;
}

int32_t tandem_watch_start(tandem_db* db, const char* sql, const tandem_value* params, size_t param_count, tandem_watch_fn fn,
                           void* user, tandem_watch** out) {
  return guarded([&] {
    if (out == nullptr) return null_argument("tandem_watch_start", "out");
    *out = nullptr;
    if (db == nullptr) return null_argument("tandem_watch_start", "db");
    if (sql == nullptr) return null_argument("tandem_watch_start", "sql");
    if (fn == nullptr) return null_argument("tandem_watch_start", "fn");
    Row row;
    int32_t code = 0;
    if (!to_row("tandem_watch_start", params, param_count, &row, &code)) return code;
    auto w = db->db->watch(sql, row, [fn, user](const tandem::api::WatchEvent& e) {
      tandem_event event{&e};
      fn(user, &event);
    });
    if (!w.ok()) return answer(w.status());
    *out = new tandem_watch{std::move(*w)};
    return answer(Status());
  });
}

int32_t tandem_watch_stop(tandem_watch* w) {
  return guarded([&] {
    if (w == nullptr) return null_argument("tandem_watch_stop", "w");
    w->watch.stop();
    return answer(Status());
  });
}

size_t tandem_watch_column_count(const tandem_watch* w) { return w == nullptr ? 0 : w->watch.columns().size(); }
const char* tandem_watch_column_name(const tandem_watch* w, size_t column) {
  if (w == nullptr || column >= w->watch.columns().size()) return nullptr;
  return w->watch.columns()[column].c_str();
}

void tandem_watch_free(tandem_watch* w) {
  (void)guarded([&] {
    delete w;
    return 0;
  });
}

int32_t tandem_sync_state_get(tandem_db* db, tandem_sync_state* out) {
  return guarded([&] {
    if (db == nullptr) return null_argument("tandem_sync_state_get", "db");
    if (out == nullptr) return null_argument("tandem_sync_state_get", "out");
    auto s = db->db->sync_state();
    if (!s.ok()) return answer(s.status());
    *out = tandem_sync_state{s->syncing ? 1 : 0, s->online ? 1 : 0, s->db_version, s->acked_version, s->pending_changes};
    last_error = s->last_error;
    return int32_t{TANDEM_OK};
  });
}

int32_t tandem_wait_synced(tandem_db* db, int64_t timeout_ms) {
  return guarded([&] {
    if (db == nullptr) return null_argument("tandem_wait_synced", "db");
    return answer(db->db->wait_synced(std::chrono::milliseconds(timeout_ms)));
  });
}

int32_t tandem_wait_acked(tandem_db* db, int64_t db_version, int64_t timeout_ms, int64_t* acked) {
  return guarded([&] {
    if (db == nullptr) return null_argument("tandem_wait_acked", "db");
    auto r = db->db->wait_acked(db_version, std::chrono::milliseconds(timeout_ms));
    if (!r.ok()) return answer(r.status());
    if (acked != nullptr) *acked = *r;
    return answer(Status());
  });
}

}  // extern "C"
