// The C API (include/tandem/tandem.h) through libtandem.so: the operations, and misuse
// (NULL arguments, a closed handle, callbacks that call back into the API) answered with
// error codes. Runs under the ASan build as well.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tandem/tandem.h"
#include "tests/common/temp_dir.hpp"

using namespace std::chrono_literals;

namespace {

const char* kSchema =
    "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER DEFAULT 0);"
    "CREATE TABLE tag(id INTEGER PRIMARY KEY, name TEXT)";

tandem_value integer(int64_t v) { return tandem_value{TANDEM_INTEGER, v, 0.0, nullptr, 0}; }
tandem_value text(const char* s) { return tandem_value{TANDEM_TEXT, 0, 0.0, s, std::strlen(s)}; }

tandem_db* open_db(const std::string& path, const char* server = nullptr) {
  tandem_options o{};
  o.path = path.c_str();
  o.schema = kSchema;
  o.server_url = server;
  o.token = server ? "not-a-real-token" : nullptr;
  o.timeout_ms = 10000;
  tandem_db* db = nullptr;
  int32_t code = tandem_db_open(&o, &db);
  INFO(tandem_last_error());
  REQUIRE(code == TANDEM_OK);
  REQUIRE(db != nullptr);
  return db;
}

// What the watch callback saw, and what its calls back into the API answered.
struct Probe {
  tandem_db* db = nullptr;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> events;  // "+title" / "-title"
  int initial = 0;
  int32_t query_code = -1;
  int32_t close_code = -1;
  int32_t mutate_code = -1;
  std::atomic<int32_t> outcome{-1};
  bool probe_next = false;
};

void on_outcome(void* user, int32_t code, const char*, int64_t) {
  auto* p = static_cast<Probe*>(user);
  std::lock_guard<std::mutex> lock(p->mu);
  p->outcome = code;
  p->cv.notify_all();
}

void on_event(void* user, const tandem_event* e) {
  auto* p = static_cast<Probe*>(user);
  std::lock_guard<std::mutex> lock(p->mu);
  if (tandem_event_is_initial(e)) ++p->initial;
  for (size_t i = 0; i < tandem_event_count(e); ++i) {
    int32_t kind = -1;
    REQUIRE(tandem_event_change(e, i, &kind, nullptr, nullptr) == TANDEM_OK);
    tandem_value title{};
    REQUIRE(tandem_event_value(e, i, 1, &title) == TANDEM_OK);
    p->events.push_back(std::string(kind == TANDEM_REMOVED ? "-" : "+") + std::string(title.bytes, title.size));
  }
  if (p->probe_next && !tandem_event_is_initial(e)) {
    p->probe_next = false;
    tandem_rows* rows = nullptr;
    p->query_code = tandem_query(p->db, "SELECT 1", nullptr, 0, &rows);
    p->close_code = tandem_db_close(p->db);
    tandem_mutation* m = nullptr;
    REQUIRE(tandem_mutation_begin(p->db, &m) == TANDEM_OK);
    const char* cols[] = {"id", "title"};
    tandem_value vals[] = {integer(50), text("from a callback")};
    REQUIRE(tandem_mutation_insert(m, "todo", cols, vals, 2, 0) == TANDEM_OK);
    p->mutate_code = tandem_mutate_commit(m, on_outcome, p, nullptr);
  }
  p->cv.notify_all();
}

bool wait_for(Probe& p, const std::string& event) {
  std::unique_lock<std::mutex> lock(p.mu);
  return p.cv.wait_for(lock, 10s, [&] {
    for (const auto& e : p.events)
      if (e == event) return true;
    return false;
  });
}

}  // namespace

TEST_CASE("c api: NULL arguments are refused with invalid_argument", "[c_api]") {
  tandem_db* db = nullptr;
  CHECK(tandem_db_open(nullptr, &db) == TANDEM_INVALID_ARGUMENT);
  CHECK(std::string(tandem_last_error()).find("options") != std::string::npos);
  tandem_options o{};
  CHECK(tandem_db_open(&o, nullptr) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_db_open(&o, &db) == TANDEM_INVALID_ARGUMENT);  // no path
  CHECK(db == nullptr);
  tandem_rows* rows = nullptr;
  CHECK(tandem_query(nullptr, "SELECT 1", nullptr, 0, &rows) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_exec(nullptr, "SELECT 1", nullptr, 0, nullptr) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_db_close(nullptr) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_db_is_leader(nullptr) < 0);
  tandem_watch* w = nullptr;
  CHECK(tandem_watch_start(nullptr, "SELECT 1", nullptr, 0, on_event, nullptr, &w) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_watch_stop(nullptr) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_txn_add(nullptr, "x", nullptr, 0) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_txn_commit(nullptr, nullptr, nullptr) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_mutate_commit(nullptr, nullptr, nullptr, nullptr) == TANDEM_INVALID_ARGUMENT);
  tandem_sync_state st{};
  CHECK(tandem_sync_state_get(nullptr, &st) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_wait_synced(nullptr, 10) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_rows_count(nullptr) == 0);
  CHECK(tandem_rows_column_name(nullptr, 0) == nullptr);
  tandem_db_free(nullptr);
  tandem_watch_free(nullptr);
  tandem_rows_free(nullptr);
  CHECK(std::string(tandem_code_name(TANDEM_CLOSED)) == "closed");
  CHECK(std::string(tandem_code_name(99)) == "unknown");
}

TEST_CASE("c api: exec, transactions, query and rows", "[c_api]") {
  tandem::test::TempDir dir;
  tandem_db* db = open_db(dir / "app.db");
  CHECK(tandem_db_is_leader(db) == 1);

  tandem_value params[] = {integer(1), text("milk")};
  int64_t version = 0;
  REQUIRE(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (?, ?)", params, 2, &version) == TANDEM_OK);
  CHECK(version > 0);

  // All or nothing.
  tandem_txn* txn = nullptr;
  REQUIRE(tandem_txn_begin(db, &txn) == TANDEM_OK);
  REQUIRE(tandem_txn_add(txn, "INSERT INTO todo(id, title) VALUES (2, 'eggs')", nullptr, 0) == TANDEM_OK);
  REQUIRE(tandem_txn_add(txn, "INSERT INTO todo(id, title) VALUES (1, 'dup')", nullptr, 0) == TANDEM_OK);
  CHECK(tandem_txn_commit(txn, nullptr, nullptr) == TANDEM_CONSTRAINT);
  CHECK(std::string(tandem_last_error()).find("UNIQUE") != std::string::npos);

  tandem_value bad{TANDEM_TEXT, 0, 0.0, nullptr, 5};
  CHECK(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (3, ?)", &bad, 1, nullptr) == TANDEM_INVALID_ARGUMENT);
  tandem_value unknown{42, 0, 0.0, nullptr, 0};
  CHECK(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (3, ?)", &unknown, 1, nullptr) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (3, ?)", nullptr, 1, nullptr) == TANDEM_INVALID_ARGUMENT);

  tandem_rows* rows = nullptr;
  REQUIRE(tandem_query(db, "SELECT id, title FROM todo ORDER BY id", nullptr, 0, &rows) == TANDEM_OK);
  REQUIRE(tandem_rows_count(rows) == 1);
  REQUIRE(tandem_rows_column_count(rows) == 2);
  CHECK(std::string(tandem_rows_column_name(rows, 1)) == "title");
  tandem_value v{};
  REQUIRE(tandem_rows_value(rows, 0, 0, &v) == TANDEM_OK);
  CHECK(v.type == TANDEM_INTEGER);
  CHECK(v.integer == 1);
  REQUIRE(tandem_rows_value(rows, 0, 1, &v) == TANDEM_OK);
  CHECK(v.type == TANDEM_TEXT);
  CHECK(std::string(v.bytes) == "milk");
  CHECK(tandem_rows_value(rows, 5, 0, &v) == TANDEM_INVALID_ARGUMENT);
  tandem_rows_free(rows);
  tandem_db_free(db);
}

TEST_CASE("c api: a watch, optimistic mutations, callbacks calling back, a closed handle", "[c_api]") {
  tandem::test::TempDir dir;
  tandem_db* db = open_db(dir / "app.db");
  Probe probe;
  probe.db = db;
  tandem_watch* w = nullptr;
  tandem_value zero = integer(0);
  REQUIRE(tandem_watch_start(db, "SELECT id, title FROM todo WHERE done = ? ORDER BY id", &zero, 1, on_event, &probe, &w) ==
          TANDEM_OK);
  CHECK(probe.initial == 1);
  REQUIRE(tandem_watch_column_count(w) == 2);
  CHECK(std::string(tandem_watch_column_name(w, 0)) == "id");

  // A blocking mutation; then one the database refuses (rolled back, code constraint).
  tandem_mutation* m = nullptr;
  REQUIRE(tandem_mutation_begin(db, &m) == TANDEM_OK);
  const char* cols[] = {"id", "title"};
  tandem_value vals[] = {integer(1), text("milk")};
  REQUIRE(tandem_mutation_insert(m, "todo", cols, vals, 2, 0) == TANDEM_OK);
  int64_t version = 0;
  REQUIRE(tandem_mutate_commit(m, nullptr, nullptr, &version) == TANDEM_OK);
  CHECK(version > 0);
  REQUIRE(wait_for(probe, "+milk"));
  REQUIRE(tandem_mutation_begin(db, &m) == TANDEM_OK);
  REQUIRE(tandem_mutation_insert(m, "todo", cols, vals, 2, 0) == TANDEM_OK);
  CHECK(tandem_mutate_commit(m, nullptr, nullptr, nullptr) == TANDEM_CONSTRAINT);
  REQUIRE(tandem_mutation_begin(db, &m) == TANDEM_OK);
  tandem_value done[] = {integer(1)};
  const char* done_col[] = {"done"};
  tandem_value one = integer(1);
  REQUIRE(tandem_mutation_update(m, "todo", &one, 1, done_col, done, 1) == TANDEM_OK);
  REQUIRE(tandem_mutate_commit(m, nullptr, nullptr, nullptr) == TANDEM_OK);
  REQUIRE(wait_for(probe, "-milk"));
  REQUIRE(tandem_mutation_begin(db, &m) == TANDEM_OK);
  CHECK(tandem_mutation_insert(m, "todo", nullptr, vals, 2, 0) == TANDEM_INVALID_ARGUMENT);
  CHECK(tandem_mutation_delete(m, nullptr, &one, 1) == TANDEM_INVALID_ARGUMENT);
  tandem_mutation_free(m);

  // The callback's calls back into the API: blocking ones refused, a mutation with a callback accepted.
  {
    std::lock_guard<std::mutex> lock(probe.mu);
    probe.probe_next = true;
  }
  REQUIRE(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (2, 'eggs')", nullptr, 0, nullptr) == TANDEM_OK);
  {
    std::unique_lock<std::mutex> lock(probe.mu);
    REQUIRE(probe.cv.wait_for(lock, 10s, [&] { return probe.outcome.load() >= 0; }));
    CHECK(probe.query_code == TANDEM_WRONG_THREAD);
    CHECK(probe.close_code == TANDEM_WRONG_THREAD);
    CHECK(probe.mutate_code == TANDEM_OK);
    CHECK(probe.outcome.load() == TANDEM_OK);
  }
  REQUIRE(wait_for(probe, "+from a callback"));

  // Closed: every call answers closed; stopping and freeing stay safe.
  REQUIRE(tandem_db_close(db) == TANDEM_OK);
  CHECK(tandem_db_close(db) == TANDEM_OK);
  tandem_rows* rows = nullptr;
  CHECK(tandem_query(db, "SELECT 1", nullptr, 0, &rows) == TANDEM_CLOSED);
  CHECK(rows == nullptr);
  CHECK(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (3, 'x')", nullptr, 0, nullptr) == TANDEM_CLOSED);
  tandem_watch* w2 = nullptr;
  CHECK(tandem_watch_start(db, "SELECT id FROM todo", nullptr, 0, on_event, &probe, &w2) == TANDEM_CLOSED);
  tandem_sync_state st{};
  CHECK(tandem_sync_state_get(db, &st) == TANDEM_CLOSED);
  CHECK(tandem_db_is_leader(db) == 0);
  REQUIRE(tandem_mutation_begin(db, &m) == TANDEM_OK);
  REQUIRE(tandem_mutation_delete(m, "todo", &one, 1) == TANDEM_OK);
  CHECK(tandem_mutate_commit(m, nullptr, nullptr, nullptr) == TANDEM_CLOSED);
  CHECK(tandem_watch_stop(w) == TANDEM_OK);
  tandem_watch_free(w);
  tandem_db_free(db);
}

TEST_CASE("c api: the sync state with an unreachable server", "[c_api]") {
  tandem::test::TempDir dir;
  tandem_db* db = open_db(dir / "app.db", "ws://127.0.0.1:1/sync");
  REQUIRE(tandem_exec(db, "INSERT INTO todo(id, title) VALUES (1, 'pending')", nullptr, 0, nullptr) == TANDEM_OK);
  CHECK(tandem_wait_synced(db, 10000) != TANDEM_OK);
  CHECK(std::string(tandem_last_error()).size() > 0);
  tandem_sync_state st{};
  REQUIRE(tandem_sync_state_get(db, &st) == TANDEM_OK);
  CHECK(st.syncing == 1);
  CHECK(st.online == 0);
  CHECK(st.pending_changes >= 2);
  CHECK(std::string(tandem_last_error()).size() > 0);  // the connection problem
  tandem_db_free(db);  // closes
}
