// A thin RAII layer over SQLite: a connection (Database), prepared statements (Statement),
// a per-connection statement cache, and transactions. Errors come back as Status values
// carrying SQLite's own message ("constraint: NOT NULL constraint failed: t.a").
//
// Threading: a Database and its statements belong to one thread at a time (the actor or
// test that owns it); SQLite is built thread-safe, but Tandem never shares a connection.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/value.hpp"

struct sqlite3;
struct sqlite3_stmt;
struct sqlite3_value;

namespace tandem {

class Database;

// A copy of a SQLite value with its storage class.
Value value_from_sqlite(sqlite3_value* v);

// Maps a SQLite result code (extended or primary) and message to a Status.
Status sqlite_status(int rc, const std::string& message);

class Statement {
 public:
  Statement(Database* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Binds to the 1-based parameter `index`. Values keep their storage class.
  Status bind(int index, const Value& value);
  // Binds values to parameters 1..n; fails if the statement has a different count.
  Status bind_all(const Row& values);
  Status bind_int64(int index, int64_t v);
  int parameter_count() const;

  // Advances: true when a row is available, false when done.
  Result<bool> step();
  // Steps until done, for statements that return no rows.
  Status run();
  void reset();  // resets and clears bindings

  int column_count() const;
  std::string column_name(int i) const;
  Value column(int i) const;
  int64_t column_int64(int i) const;
  Row row() const;  // every column of the current row
  bool readonly() const;
  std::string sql() const;
  sqlite3_stmt* raw() const { return stmt_; }

 private:
  Database* db_;
  sqlite3_stmt* stmt_;
};

// A cached statement lent out by Database::cached(); resets it when the lease ends.
class StatementLease {
 public:
  explicit StatementLease(Statement* s) : s_(s) {}
  ~StatementLease() { if (s_) s_->reset(); }
  StatementLease(StatementLease&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  StatementLease(const StatementLease&) = delete;
  StatementLease& operator=(const StatementLease&) = delete;
  Statement* operator->() const { return s_; }
  Statement& operator*() const { return *s_; }

 private:
  Statement* s_;
};

struct OpenOptions {
  bool create = true;
  bool read_only = false;
  bool wal = true;                  // journal_mode=WAL (ignored for :memory:)
  bool synchronous_full = true;     // synchronous=FULL, else NORMAL
  int busy_timeout_ms = 5000;
  int cache_size_kib = 64 * 1024;   // page cache per connection
  std::string vfs;                  // empty: SQLite's default VFS
};

class Database {
 public:
  // Opens (and with `create`, creates) the file; sets WAL, synchronous, DEFENSIVE,
  // recursive_triggers=OFF (Debian's SQLite defaults it ON) and foreign_keys=OFF. The WAL is
  // checkpointed every 8192 pages (32 MiB) instead of SQLite's 1000: a 10,000-change merge
  // dirties thousands of pages, and checkpointing after every such commit wrote each page
  // twice (merge throughput +20%, measured); the file is truncated back to 64 MiB.
  static Result<std::unique_ptr<Database>> open(const std::string& path, const OpenOptions& options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs one or more statements without parameters.
  Status exec(const std::string& sql);
  // A new statement owned by the caller. Fails on SQL errors and on trailing statements.
  Result<std::unique_ptr<Statement>> prepare(const std::string& sql);
  // A statement from this connection's cache (prepared on first use).
  Result<StatementLease> cached(const std::string& sql);
  void clear_cache() { cache_.clear(); }

  Status begin_immediate() { return exec("BEGIN IMMEDIATE"); }
  Status begin_deferred() { return exec("BEGIN"); }
  Status commit() { return exec("COMMIT"); }
  // Never fails visibly: a failed rollback leaves SQLite's own automatic rollback.
  void rollback();
  bool in_transaction() const;

  // A Status for the connection's last error, with `rc`.
  Status error(int rc) const;
  int64_t changes() const;
  int64_t total_changes() const;
  const std::string& path() const { return path_; }
  sqlite3* raw() const { return db_; }

 private:
  Database(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

// Commits on commit(), rolls back on destruction otherwise.
class Transaction {
 public:
  explicit Transaction(Database& db) : db_(db) {}
  ~Transaction() { if (open_) db_.rollback(); }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Status begin_immediate() { auto s = db_.begin_immediate(); open_ = s.ok(); return s; }
  Status begin_deferred() { auto s = db_.begin_deferred(); open_ = s.ok(); return s; }
  Status commit() { auto s = db_.commit(); if (s.ok()) open_ = false; return s; }
  void rollback() { if (open_) { db_.rollback(); open_ = false; } }

 private:
  Database& db_;
  bool open_ = false;
};

}  // namespace tandem
