// Durability: state survives reopening; injected I/O errors and killed processes leave the
// store exactly at its last committed transaction; corrupt files are refused clearly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/sqlite/fault_vfs.hpp"
#include "tests/common/temp_dir.hpp"
#include "tests/store/store_test_util.hpp"

using namespace tandem;
using namespace tandem::test;
namespace fs = std::filesystem;

namespace {

const char* kSchema = "CREATE TABLE t(id INTEGER PRIMARY KEY NOT NULL, a, b)";

std::unique_ptr<Store> open_store(const fs::path& file, bool faulty = false, uint8_t site = 1) {
  StoreOptions o;
  o.site_id = site_number(site);
  if (faulty) o.open.vfs = kFaultVfsName;
  auto s = Store::open(file.string(), o);
  INFO(s.status().to_string());
  REQUIRE(s.ok());
  return std::move(s).value();
}

std::unique_ptr<Store> fresh_store(const fs::path& file, bool faulty = false) {
  auto s = open_store(file, faulty);
  REQUIRE(s->execute_schema(kSchema).ok());
  REQUIRE(s->register_table("t").ok());
  return s;
}

}  // namespace

TEST_CASE("a store reopens with its site, version, tables and changes", "[store][durability]") {
  TempDir dir;
  auto file = fs::path(dir.path) / "a.db";
  int64_t version;
  std::string site;
  {
    auto s = fresh_store(file);
    exec(*s, "INSERT INTO t VALUES (1, 'x', 2)");
    exec(*s, "UPDATE t SET a = 'y' WHERE id = 1");
    version = s->db_version();
    site = site_hex(s->site_id());
  }
  {
    StoreOptions o;  // no site id given: the stored one is kept
    auto s = Store::open(file.string(), o);
    REQUIRE(s.ok());
    CHECK(site_hex((*s)->site_id()) == site);
    CHECK((*s)->db_version() == version);
    CHECK((*s)->replicated_tables() == std::vector<std::string>{"t"});
    CHECK((*s)->changes_since(0)->changes_size() == 2);
    CHECK((*s)->verify().ok());
    exec(**s, "INSERT INTO t VALUES (2, 'z', 3)");
    CHECK((*s)->db_version() == version + 1);
  }
}

TEST_CASE("an injected I/O error at any point of a write or merge leaves the last committed state", "[store][durability][faults]") {
  REQUIRE(register_fault_vfs());
  auto source = memory_store(2, kSchema, {"t"});
  for (int i = 0; i < 30; ++i) exec(*source, "INSERT INTO t VALUES (?, 'remote', ?)", {Value::Integer(100 + i), Value::Integer(i)});
  auto batch = source->changes_since(0);
  REQUIRE(batch.ok());

  for (int op = 0; op < 2; ++op) {
    bool succeeded = false;
    for (int64_t fault_at = 0; !succeeded && fault_at < 400; ++fault_at) {
      TempDir dir;
      auto file = fs::path(dir.path) / "f.db";
      std::vector<Row> before;
      int64_t version_before;
      {
        auto s = fresh_store(file, /*faulty*/ true);
        for (int i = 0; i < 20; ++i) exec(*s, "INSERT INTO t VALUES (?, 'local', ?)", {Value::Integer(i), Value::Integer(i)});
        before = dump(*s, "t");
        version_before = s->db_version();
        fail_after(fault_at);
        Status result;
        if (op == 0) {
          std::vector<SqlStatement> writes;
          for (int i = 0; i < 50; ++i) writes.push_back({"INSERT OR REPLACE INTO t VALUES (?, 'new', ?)", {Value::Integer(i % 25), Value::Integer(i)}});
          result = s->write(writes).status();
        } else {
          result = s->merge(*batch).status();
        }
        clear_faults();
        succeeded = result.ok();
        if (!result.ok()) {
          INFO(result.to_string());
          CHECK((result.code() == StatusCode::internal || result.code() == StatusCode::resource_exhausted));
          CHECK(s->db_version() == version_before);  // the in-memory mirror rolled back too
        }
      }
      auto reopened = open_store(file);
      INFO("operation " << op << ", fault after " << fault_at << " I/O operations");
      REQUIRE(reopened->verify().ok());
      if (!succeeded) {
        CHECK(reopened->db_version() == version_before);
        CHECK(same_rows(dump(*reopened, "t"), before));
      } else {
        CHECK(reopened->db_version() == version_before + (op == 0 ? 1 : 0) + (op == 1 ? reopened->db_version() - version_before : 0));
        CHECK_FALSE(same_rows(dump(*reopened, "t"), before));
      }
      exec(*reopened, "INSERT INTO t VALUES (999, 'after', 0)");  // still writable
    }
    CHECK(succeeded);
  }
}

TEST_CASE("a process killed in the middle of writing leaves a consistent store", "[store][durability][faults]") {
  TempDir dir;
  auto file = fs::path(dir.path) / "k.db";
  { fresh_store(file); }
  for (int attempt = 0; attempt < 3; ++attempt) {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      StoreOptions o;
      auto s = Store::open(file.string(), o);
      if (!s.ok()) _exit(3);
      for (int i = 0;; ++i) {
        std::vector<SqlStatement> writes;
        for (int j = 0; j < 200; ++j)
          writes.push_back({"INSERT OR REPLACE INTO t VALUES (?, ?, ?)", {Value::Integer((i * 200 + j) % 5000), Value::Text("w"), Value::Integer(i)}});
        if (i % 3 == 0) writes.push_back({"DELETE FROM t WHERE id % 7 = ?", {Value::Integer(i % 7)}});
        if (!(*s)->write(writes).ok()) _exit(4);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + 100 * attempt));
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    REQUIRE(WIFSIGNALED(status));
    auto s = open_store(file);
    auto v = s->verify();
    INFO(v.to_string());
    CHECK(v.ok());
    CHECK(s->db_version() > 0);
    // Every committed version is complete: its changes can be extracted and merged.
    auto copy = memory_store(7, kSchema, {"t"});
    sync(*s, *copy);
    CHECK(same_rows(dump(*s, "t"), dump(*copy, "t")));
  }
}

TEST_CASE("corrupt and foreign files are refused with a clear error", "[store][durability][errors]") {
  TempDir dir;
  {
    std::ofstream(fs::path(dir.path) / "garbage.db") << std::string(8192, 'x');
    auto s = Store::open((fs::path(dir.path) / "garbage.db").string());
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("not a database") != std::string::npos);
  }
  {
    auto file = fs::path(dir.path) / "trunc.db";
    { auto s = fresh_store(file); for (int i = 0; i < 200; ++i) exec(*s, "INSERT INTO t VALUES (?, 'x', 1)", {Value::Integer(i)}); }
    fs::remove(fs::path(dir.path) / "trunc.db-wal");
    fs::resize_file(file, 4096 + 100);
    auto s = Store::open(file.string());
    if (s.ok()) {
      CHECK_FALSE((*s)->verify().ok());
    } else {
      CHECK_FALSE(s.status().message().empty());
    }
  }
  {
    auto s = Store::open((fs::path(dir.path) / "missing-dir" / "x.db").string());
    REQUIRE_FALSE(s.ok());
    CHECK(s.status().message().find("cannot open") != std::string::npos);
  }
}

TEST_CASE("a row written behind Tandem's back is detected, and recorded whole when Tandem next updates it", "[store][durability]") {
  TempDir dir;
  auto file = fs::path(dir.path) / "behind.db";
  {
    auto s = fresh_store(file);
    exec(*s, "INSERT INTO t VALUES (1, 'tracked', 1)");
  }
  {
    auto raw = Database::open(file.string());
    REQUIRE(raw.ok());
    REQUIRE((*raw)->exec("INSERT INTO t VALUES (2, 'untracked', 2)").ok());
  }
  auto s = open_store(file);
  auto v = s->verify();
  CHECK_FALSE(v.ok());
  CHECK(v.message().find("bypassed Tandem") != std::string::npos);
  int64_t before = s->db_version();
  exec(*s, "UPDATE t SET b = 20 WHERE id IN (1, 2)");
  CHECK(s->verify().ok());
  auto b = s->changes_since(before);
  REQUIRE(b.ok());
  int row1 = 0, row2 = 0;
  for (const auto& c : b->changes()) (from_proto(c.pk(0)).integer() == 1 ? row1 : row2)++;
  CHECK(row1 == 1);  // the tracked row: only the changed column
  CHECK(row2 == 2);  // the untracked row: every column, as a fresh write
}

TEST_CASE("a database file is open in one Store at a time, and free again once it closes", "[store][durability][lock]") {
  TempDir dir;
  auto file = fs::path(dir.path) / "one.db";
  {
    auto first = fresh_store(file);
    auto second = Store::open(file.string());
    REQUIRE_FALSE(second.ok());
    CHECK(second.status().code() == StatusCode::unavailable);
    CHECK(second.status().message().find("in use by this process") != std::string::npos);
    CHECK(second.status().message().find("pid " + std::to_string(::getpid())) != std::string::npos);
    exec(*first, "INSERT INTO t VALUES (1, 'still the only writer', 1)");  // the refusal changed nothing
  }
  auto again = Store::open(file.string());
  INFO(again.status().to_string());
  REQUIRE(again.ok());
  CHECK((*again)->db_version() == 1);
  // In-memory databases are private to their connection: never locked.
  auto m1 = Store::open(":memory:");
  auto m2 = Store::open(":memory:");
  CHECK(m1.ok());
  CHECK(m2.ok());
}

TEST_CASE("a merge commits as asked: deferred without an fsync, full and sync() with one", "[store][durability][sync]") {
  REQUIRE(register_fault_vfs());
  TempDir dir;
  auto s = fresh_store(fs::path(dir.path) / "a.db", /*faulty=*/true);
  auto source = memory_store(2, kSchema, {"t"});
  auto merge_next = [&](CommitSync mode) {
    exec(*source, "INSERT INTO t VALUES (?, 'remote', 1)", {Value::Integer(source->db_version() + 1)});
    auto batch = source->changes_since(s->peer(source->site_id())->received);
    REQUIRE(batch.ok());
    MergeOptions options;
    options.sync = mode;
    clear_faults();
    auto merged = s->merge(*batch, options);
    REQUIRE(merged.ok());
    return std::make_pair(merged->synced, fault_vfs_syncs());
  };
  // Opened with synchronous=FULL (the default): a default merge syncs the WAL.
  auto [default_synced, default_syncs] = merge_next(CommitSync::kDefault);
  CHECK(default_synced);
  CHECK(default_syncs >= 1);
  auto [deferred_synced, deferred_syncs] = merge_next(CommitSync::kDeferred);
  CHECK_FALSE(deferred_synced);
  CHECK(deferred_syncs == 0);
  // The store's own mode is back after a deferred merge.
  clear_faults();
  exec(*s, "INSERT INTO t VALUES (1000, 'local', 0)");
  CHECK(fault_vfs_syncs() >= 1);
  auto [full_synced, full_syncs] = merge_next(CommitSync::kFull);
  CHECK(full_synced);
  CHECK(full_syncs >= 1);
  // sync() makes deferred commits durable with an fsync of its own.
  merge_next(CommitSync::kDeferred);
  clear_faults();
  REQUIRE(s->sync().ok());
  CHECK(fault_vfs_syncs() >= 1);
  CHECK(s->verify().ok());
}

TEST_CASE("a store opened with synchronous=NORMAL commits without an fsync unless asked", "[store][durability][sync]") {
  REQUIRE(register_fault_vfs());
  TempDir dir;
  StoreOptions o;
  o.site_id = site_number(1);
  o.open.vfs = kFaultVfsName;
  o.open.synchronous_full = false;
  auto opened = Store::open((fs::path(dir.path) / "n.db").string(), o);
  REQUIRE(opened.ok());
  auto& s = **opened;
  REQUIRE(s.execute_schema(kSchema).ok());
  REQUIRE(s.register_table("t").ok());
  auto source = memory_store(2, kSchema, {"t"});
  exec(*source, "INSERT INTO t VALUES (1, 'remote', 1)");
  clear_faults();
  auto merged = s.merge(*source->changes_since(0));
  REQUIRE(merged.ok());
  CHECK_FALSE(merged->synced);
  CHECK(fault_vfs_syncs() == 0);
  exec(*source, "INSERT INTO t VALUES (2, 'remote', 1)");
  MergeOptions full;
  full.sync = CommitSync::kFull;
  clear_faults();
  merged = s.merge(*source->changes_since(1), full);
  REQUIRE(merged.ok());
  CHECK(merged->synced);
  CHECK(fault_vfs_syncs() >= 1);
  // Back to NORMAL afterwards.
  clear_faults();
  exec(s, "INSERT INTO t VALUES (3, 'local', 0)");
  CHECK(fault_vfs_syncs() == 0);
}

TEST_CASE("notes keep the sync layer's values, and only under sync_ keys", "[store][notes]") {
  TempDir dir;
  auto file = fs::path(dir.path) / "a.db";
  {
    auto s = fresh_store(file);
    CHECK_FALSE(s->note("sync_user")->has_value());
    REQUIRE(s->put_notes({{"sync_user", "alice"}, {"sync_server", "ws://h:1/sync"}}).ok());
    CHECK(s->note("sync_user")->value() == "alice");
    // The store's own bookkeeping is out of reach, and a refused batch writes nothing.
    CHECK(s->note("db_version").status().code() == StatusCode::invalid_argument);
    CHECK(s->put_notes({{"sync_user", "bob"}, {"site_id", "x"}}).code() == StatusCode::invalid_argument);
    CHECK(s->note("sync_user")->value() == "alice");
    CHECK(s->verify().ok());
  }
  auto s = open_store(file);
  CHECK(s->note("sync_server")->value() == "ws://h:1/sync");
}

TEST_CASE("record_peer_acks records several peers in one transaction, monotonically", "[store][peers]") {
  TempDir dir;
  auto s = fresh_store(fs::path(dir.path) / "a.db");
  REQUIRE(s->record_peer_acks({{site_number(7), 5}, {site_number(8), 9}}).ok());
  REQUIRE(s->record_peer_acks({{site_number(7), 3}}).ok());  // older: kept at 5
  CHECK(s->peer(site_number(7))->acked == 5);
  CHECK(s->peer(site_number(8))->acked == 9);
  CHECK(s->record_peer_acks({}).ok());
}
