// `tandem bench node`: a node over two processes. The bench process leads the node on a
// temporary database and writes one row at a time; a child `tandem bench node --follower`
// joins it and watches the table through a ui_view. Each row carries the steady clock
// (CLOCK_MONOTONIC, shared by the processes of one machine) read just before its write was
// sent: the follower's view callback measures write -> change visible in process B. The
// baseline is the same path within one process: a ui_view of the leader, measured the same
// way in the same run. The same rows then go as optimistic mutations through another view of
// the leader: mutation -> pending row visible in process B, and in A; then one plain SQLite
// commit per row, the committed path's floor. One JSON line each (docs/testing.md,
// Benchmarks). Then the takeover figure (bench_node_takeover.cpp): kill -9 of the leader to a
// write acknowledged on the new leader, over --cycles.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/node.hpp"
#include "actors/system_config.hpp"
#include "apps/tandem/bench_node_takeover.hpp"
#include "apps/tandem/bench_util.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/common/child_process.hpp"
#include "runtime/sqlite/database.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::app {
namespace {

const char* kSchema = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY NOT NULL, written_ns INTEGER)";

struct Options {
  int count = 2000;
  int cycles = 20;
  std::string dir;
  bool follower = false;
  std::string role;  // takeover children (bench_node_takeover.cpp)
  std::string db;
  std::string schema_sql;
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Latencies of rows the first time a view shows them (a mutation's pending row; its commit
// then changes nothing), in the order seen, and a wait for the n-th.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<double> us;
  std::unordered_set<int64_t> ids;
  void on_change(const view::ViewChange& change) {
    const int64_t at = now_ns();
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& c : change.changes())
      if (c.kind() == view::RowChange::ADDED && c.row().values_size() == 2 && ids.insert(c.row().values(0).integer()).second)
        us.push_back(static_cast<double>(at - c.row().values(1).integer()) / 1000.0);
    cv.notify_all();
  }
  bool wait_for(size_t n, std::chrono::milliseconds within) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, within, [&] { return us.size() >= n; });
  }
};

[[noreturn]] void die(const std::string& why) {
  std::cerr << "tandem bench node: " << why << "\n";
  std::exit(1);
}

struct Opened {
  std::unique_ptr<Node> node;
  ui_view_actor view;
  std::unique_ptr<caf::scoped_actor> watcher;  // the view keeps the watch while it lives
};

// Opens the node and a view watching t; the view's changes go to `seen`.
Opened open(caf::actor_system& system, const std::string& db, Seen& seen) {
  NodeConfig nc;
  nc.database_path = db;
  nc.schema = {kSchema};
  nc.name = "bench";
  auto node = Node::open(system, nc);
  if (!node.ok()) die("cannot open the node: " + node.status().to_string());
  auto view = (*node)->spawn_view("bench", [&seen](const view::ViewChange& c) { seen.on_change(c); });
  if (!view.ok()) die("cannot spawn the view: " + view.status().to_string());
  auto self = std::make_unique<caf::scoped_actor>(system);
  view::WatchRequest req;
  req.set_sql("SELECT id, written_ns FROM t");
  bool ok = false;
  (*self)->request(*view, std::chrono::seconds(30), req)
      .receive([&](const view::WatchResponse& r) { ok = r.error().code() == change::Error::OK; }, [](caf::error&) {});
  if (!ok) die("the view refused the watch");
  return {std::move(*node), *view, std::move(self)};
}

void close(caf::actor_system& system, Opened opened) {
  caf::anon_send_exit(opened.view, caf::exit_reason::user_shutdown);
  opened.watcher.reset();
  opened.node.reset();
  system.await_all_actors_done();
}

// One JSON line of latencies along `path`.
void print_line(const std::vector<double>& us, const std::string& path) {
  std::cout << nlohmann::json{{"bench", "node"},
                              {"path", path},
                              {"changes", us.size()},
                              {"us_p50", percentile(us, 0.5)},
                              {"us_p99", percentile(us, 0.99)},
                              {"us_max", percentile(us, 1.0)}}
                   .dump()
            << std::endl;
}

// One JSON line of the latencies `seen` recorded along `path`: the `count` from `from` on.
void print_latencies(Seen& seen, size_t from, size_t count, const std::string& path) {
  std::vector<double> us;
  {
    std::lock_guard<std::mutex> lock(seen.mu);
    us.assign(seen.us.begin() + static_cast<std::ptrdiff_t>(std::min(from, seen.us.size())),
              seen.us.begin() + static_cast<std::ptrdiff_t>(std::min(from + count, seen.us.size())));
  }
  print_line(us, path);
}

// The child: joins, says "ready", prints its latencies once it saw `count` rows.
void run_follower(const Options& opt) {
  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  caf::actor_system system{cfg};
  Seen seen;
  auto opened = open(system, opt.db, seen);
  if (opened.node->is_leader()) die("--follower found no leader");
  std::cout << "ready" << std::endl;
  const auto n = static_cast<size_t>(opt.count);
  if (!seen.wait_for(2 * n, std::chrono::minutes(10))) die("not every write reached the follower's view");
  print_latencies(seen, 0, n, "write in process A -> change in a watched query in process B");
  print_latencies(seen, n, n, "optimistic mutation in process A -> pending row in a watched query in process B");
  close(system, std::move(opened));
}

// The floor of the committed path, in the same run: one plain SQLite commit of one row (WAL,
// synchronous=FULL, as the node's store commits a local write), nothing else.
void print_commit_floor(const std::string& dir, int count) {
  print_line(plain_commit_us("node", dir + "/floor.db", count),
             "baseline: one plain SQLite commit of one row (WAL, synchronous=FULL), the committed path's floor");
}

void run_leader(const Options& opt) {
  std::string dir = opt.dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/tandem-bench-node-XXXXXX";
    if (!::mkdtemp(tmpl)) die("cannot create a temporary directory");
    dir = tmpl;
  }
  const std::string db = dir + "/bench.db";
  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  caf::actor_system system{cfg};
  Seen local;
  auto opened = open(system, db, local);
  if (!opened.node->is_leader()) die("the bench database is open in another process");
  ChildOptions co;
  co.program = "/proc/self/exe";
  co.args = {"tandem", "bench", "node", "--follower", "--db", db, "--count", std::to_string(opt.count)};
  co.stderr_file = dir + "/follower.log";
  co.pipe_stdin = true;
  auto child = ChildProcess::spawn(co);
  if (!child.ok()) die(child.status().to_string());
  auto ready = (*child)->read_line(std::chrono::seconds(30));
  if (!ready || *ready != "ready") die("the follower did not start (see " + co.stderr_file + ")");
  {
    // Scoped: a live scoped_actor would keep await_all_actors_done (in close) waiting.
    caf::scoped_actor self{system};
    for (int i = 1; i <= opt.count; ++i) {
      worker::WriteRequest req;
      auto* st = req.add_statements();
      st->set_sql("INSERT INTO t(id, written_ns) VALUES (?, ?)");
      *st->add_params() = to_proto(Value::Integer(i));
      *st->add_params() = to_proto(Value::Integer(now_ns()));
      bool ok = false;
      self->request(opened.node->worker(), std::chrono::seconds(30), req)
          .receive([&](const worker::WriteResponse& r) { ok = r.error().code() == change::Error::OK; }, [](caf::error&) {});
      if (!ok) die("write " + std::to_string(i) + " failed");
      // One change in flight at a time: latency, not throughput.
      if (!local.wait_for(static_cast<size_t>(i), std::chrono::seconds(30))) die("the leader's view missed a write");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    // The same rows as optimistic mutations through another view of the leader process: every
    // view of the node shows the pending row before the commit (docs/ivm.md, "Optimistic
    // overlay"), the measured ones through the node's tab_bus.
    auto mutator = opened.node->spawn_view("mutator");
    if (!mutator.ok()) die("cannot spawn the mutating view: " + mutator.status().to_string());
    for (int i = opt.count + 1; i <= 2 * opt.count; ++i) {
      view::MutateRequest req;
      auto* ins = req.add_mutations();
      ins->set_table("t");
      ins->mutable_insert()->add_columns("id");
      *ins->mutable_insert()->add_values() = to_proto(Value::Integer(i));
      ins->mutable_insert()->add_columns("written_ns");
      *ins->mutable_insert()->add_values() = to_proto(Value::Integer(now_ns()));
      bool ok = false;
      self->request(*mutator, std::chrono::seconds(30), req)
          .receive([&](const view::MutateResponse& r) { ok = r.error().code() == change::Error::OK; }, [](caf::error&) {});
      if (!ok) die("mutation " + std::to_string(i) + " failed");
      if (!local.wait_for(static_cast<size_t>(i), std::chrono::seconds(30))) die("the leader's view missed a mutation");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    caf::anon_send_exit(*mutator, caf::exit_reason::user_shutdown);
  }
  for (int i = 0; i < 2; ++i) {  // the write line and the mutation line
    auto line = (*child)->read_line(std::chrono::minutes(5));
    if (!line) die("the follower printed no result (see " + co.stderr_file + ")");
    std::cout << *line << std::endl;
  }
  (*child)->wait(std::chrono::seconds(30));
  const auto n = static_cast<size_t>(opt.count);
  print_latencies(local, 0, n, "baseline: write -> change in a watched query in the same process");
  print_latencies(local, n, n, "baseline: optimistic mutation -> pending row in a watched query in the same process");
  close(system, std::move(opened));
  print_commit_floor(dir, opt.count);
  if (opt.cycles > 0) run_takeover_bench(dir, kSchema, opt.cycles);
  if (opt.dir.empty() && std::system(("rm -rf '" + dir + "'").c_str()) != 0) std::cerr << "tandem bench node: could not remove " << dir << "\n";
}

}  // namespace

void add_bench_node(CLI::App& bench) {
  auto opt = std::make_shared<Options>();
  auto* cmd = bench.add_subcommand("node", "A node over two processes: write in A -> change in B's watched query, and in A's");
  cmd->add_option("--count", opt->count, "Writes, one at a time")->check(CLI::Range(1, 1000000));
  cmd->add_option("--dir", opt->dir, "Where to create the temporary database");
  cmd->add_flag("--follower", opt->follower, "(internal) the watching process");
  cmd->add_option("--cycles", opt->cycles, "Takeover cycles (kill -9 of the leader process); 0: none")->check(CLI::Range(0, 10000));
  cmd->add_option("--db", opt->db, "(internal) the leader's database");
  cmd->add_option("--role", opt->role, "(internal) a takeover child: leader or follower");
  cmd->add_option("--schema-sql", opt->schema_sql, "(internal) a takeover child's schema");
  cmd->callback([opt] {
    spdlog::set_level(spdlog::level::warn);
    if (!opt->role.empty()) return run_takeover_role(opt->role, opt->db, opt->schema_sql);
    opt->follower ? run_follower(*opt) : run_leader(*opt);
  });
}

}  // namespace tandem::app
