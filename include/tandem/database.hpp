// tandem::api::Database: a Tandem node on one SQLite file, for an application.
//
// open() runs the schema and makes this process the node's leader (it holds the database's
// lock and, with `sync` set, connects to the server) or, when another process already
// leads the file, joins that leader as a follower. Either way the calls below behave alike.
//
// Threading. Every method is thread-safe. Callbacks (watch events, mutation outcomes) run on
// the library's own threads, never on the caller's; the events of one watch are serialized,
// in order. A callback may call the non-blocking methods (mutate_async, and stop() of any
// Watch, its own included); every blocking method called from a callback returns
// Code::wrong_thread instead of deadlocking. After close() (or destruction) every method
// returns Code::closed and no callback runs any more.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tandem/export.hpp"
#include "tandem/status.hpp"
#include "tandem/types.hpp"

namespace tandem::api {

struct SyncOptions {
  std::string url;    // ws://host:port/sync or wss://...
  std::string token;  // from `tandem token` or the application's auth service
  std::string ca_file;       // wss: extra CA bundle ("" = system store)
  bool verify_peer = true;   // wss: verify the server's certificate
};

struct Options {
  std::string path;                 // the SQLite file (created if missing)
  // CREATE TABLE statements (several per string are fine; IF NOT EXISTS is added). Every
  // process on one file must declare the same schema; a newer additive one migrates it.
  std::vector<std::string> schema;
  std::string name = "app";         // this process's name in the node and towards the server
  std::optional<SyncOptions> sync;  // set: sync through this server (used if this process leads)
  std::chrono::milliseconds timeout{30000};  // bound of every blocking call
  // Tandem logs through spdlog's default logger (stdout unless the application set one).
  // Set: open sets that logger's level ("trace" ... "off"); empty: leaves it alone.
  std::string log_level = "warn";
  // Follower only, a notice: the leader process ended. The node takes over by itself (this
  // process leads, or joins the survivor that does) and the Database carries on; a call in
  // flight at the dead leader is sent again to the next one (a write runs exactly once).
  // Runs on a library thread.
  std::function<void(const Status&)> on_leader_lost;
};

class Database;
namespace detail {
struct DatabaseImpl;
struct WatchImpl;
}  // namespace detail

// A live query. Destroying it (or stop()) ends the watch; no callback starts after stop()
// returns, except when stop() is called from that watch's own callback (which then ends).
class TANDEM_API Watch {
 public:
  Watch();
  ~Watch();
  Watch(Watch&&) noexcept;
  Watch& operator=(Watch&&) noexcept;
  const std::vector<std::string>& columns() const;
  bool ordered() const;  // the query has an ORDER BY: positions are meaningful
  void stop();

 private:
  friend class Database;
  std::shared_ptr<detail::WatchImpl> impl_;
};

class TANDEM_API Database {
 public:
  // Blocks until the node is open (schema run, leader or follower decided).
  static Result<std::unique_ptr<Database>> open(Options options);
  ~Database();  // close()
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  bool is_leader() const;

  // Reads on the node's database (any SQL SELECT).
  Result<QueryResult> query(const std::string& sql, const Row& params = {});

  // A write transaction: every statement in one SQLite transaction, all or nothing. Every
  // live query of the node (in every process) sees the commit.
  Result<WriteResult> write(const std::vector<Statement>& statements);
  Result<WriteResult> exec(const std::string& sql, const Row& params = {}) { return write({{sql, params}}); }

  // Watches a live query in Tandem's SQL subset (docs/query.md). `on_event` first receives
  // the initial result (before watch returns), then every change, on a library thread.
  Result<Watch> watch(const std::string& sql, const Row& params, std::function<void(const WatchEvent&)> on_event);

  // Optimistic writes: every live query shows the mutations at once as pending; the
  // commit confirms them or the rollback removes them again. `done` learns the outcome
  // (ok with the commit's version, or why it was rolled back) on a library thread. May be
  // called from a callback. If the Database is closed, `done` runs at once with closed.
  void mutate_async(std::vector<Mutation> mutations, std::function<void(const Status&, int64_t db_version)> done);
  // The same, blocking until the outcome: the commit's db_version.
  Result<int64_t> mutate(std::vector<Mutation> mutations);

  // The link to the server.
  Result<SyncState> sync_state();
  // Blocks until the server holds every own change up to `db_version` (the write's); the
  // server's acknowledged version. Fails at once with the cause while the server was never
  // reached in this run (refused connection, unknown host, TLS, wrong token).
  Result<int64_t> wait_acked(int64_t db_version, std::chrono::milliseconds within);
  // Blocks until connected, everything local is acknowledged and everything the server had
  // is merged.
  Status wait_synced(std::chrono::milliseconds within);

  // Ends the watches, the node (a leader's followers take over) and the library's threads.
  // Blocks; idempotent. From a callback: wrong_thread.
  Status close();

 private:
  Database();
  std::shared_ptr<detail::DatabaseImpl> impl_;
};

}  // namespace tandem::api
