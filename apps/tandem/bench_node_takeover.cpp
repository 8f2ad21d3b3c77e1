// `tandem bench node`, the takeover figure (issue 9): kill -9 of a node's leader process to a
// write acknowledged locally on the new leader. Each cycle starts a leader child and two
// follower children on one database; the bench process (not part of the node) kills the
// leader with SIGKILL, reading the steady clock (CLOCK_MONOTONIC, shared by the processes of
// one machine) just before, and sends that time to the followers. Each follower, as soon as
// it hears its leader is gone, writes one row through its node (its Node takes over by
// itself: it leads, or joins the one that does; the write waits in the proxy meanwhile) and
// reports kill -> acknowledged. A cycle's figure is the slower of the two survivors: every
// surviving process can write again. One JSON line: p50 and max over the cycles.
#include "apps/tandem/bench_node_takeover.hpp"

#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <optional>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/node.hpp"
#include "actors/system_config.hpp"
#include "apps/tandem/bench_util.hpp"
#include "runtime/common/child_process.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem::app {
namespace {

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void die(const std::string& why) {
  std::cerr << "tandem bench node: " << why << "\n";
  std::exit(1);
}

std::unique_ptr<ChildProcess> start(const std::string& db, const std::string& schema, const std::string& role, const std::string& log) {
  ChildOptions co;
  co.program = "/proc/self/exe";
  co.args = {"tandem", "bench", "node", "--role", role, "--db", db, "--schema-sql", schema};
  co.stderr_file = log;
  co.pipe_stdin = true;
  auto child = ChildProcess::spawn(co);
  if (!child.ok()) die(child.status().to_string());
  auto ready = (*child)->read_line(std::chrono::seconds(30));
  if (!ready || *ready != "ready") die("a " + role + " process did not start (see " + log + ")");
  return std::move(*child);
}

}  // namespace

void run_takeover_role(const std::string& role, const std::string& db, const std::string& schema) {
  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  caf::actor_system system{cfg};
  std::mutex mu;
  std::condition_variable cv;
  bool lost = false;
  std::optional<TakeoverReport> taken;  // how this process came out of the takeover
  NodeConfig nc;
  nc.database_path = db;
  nc.schema = {schema};
  nc.name = "bench-" + role;
  nc.on_leader_lost = [&](const Status&) {
    std::lock_guard<std::mutex> lock(mu);
    lost = true;
    cv.notify_all();
  };
  // Whether this process leads is read from its takeover report, not from is_leader() once
  // the write is acknowledged: the new leader's proxy passes writes to its own worker
  // before the takeover has finished (and set is_leader()).
  nc.on_takeover = [&](const TakeoverReport& report) {
    std::lock_guard<std::mutex> lock(mu);
    taken = report;
    cv.notify_all();
  };
  auto node = Node::open(system, nc);
  if (!node.ok()) die("cannot open the node: " + node.status().to_string());
  if ((*node)->is_leader() != (role == "leader")) die("the " + role + " process found the wrong role");
  std::cout << "ready" << std::endl;
  if (role == "follower") {
    {
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return lost; })) die("the leader did not go away");
    }
    worker::WriteRequest req;
    auto* st = req.add_statements();
    st->set_sql("INSERT INTO t(written_ns) VALUES (?)");
    *st->add_params() = to_proto(Value::Integer(steady_ns()));
    bool ok = false;
    std::string why;
    {
      caf::scoped_actor self{system};
      self->request((*node)->worker(), std::chrono::seconds(30), req)
          .receive([&](const worker::WriteResponse& r) { ok = r.error().code() == change::Error::OK, why = r.error().message(); },
                   [&](caf::error& e) { why = caf::to_string(e); });
    }
    const int64_t acked = steady_ns();
    if (!ok) die("the write after the takeover failed: " + why);
    bool leads = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return taken.has_value(); })) die("the takeover never ended");
      if (!taken->status.ok()) die("the takeover failed: " + taken->status.to_string());
      leads = taken->leads;
    }
    std::string killed;
    if (!std::getline(std::cin, killed)) die("no kill time");
    std::cout << nlohmann::json{{"us", static_cast<double>(acked - std::stoll(killed)) / 1000.0}, {"leads", leads}}.dump()
              << std::endl;
  }
  // Until the bench ends this process (stdin closed) or kills it.
  for (std::string line; std::getline(std::cin, line);) {
  }
  node->reset();
  system.await_all_actors_done();
}

void run_takeover_bench(const std::string& dir, const std::string& schema, int cycles) {
  const std::string db = dir + "/takeover.db";
  std::vector<double> ms;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    auto leader = start(db, schema, "leader", dir + "/takeover-leader.log");
    auto f1 = start(db, schema, "follower", dir + "/takeover-f1.log");
    auto f2 = start(db, schema, "follower", dir + "/takeover-f2.log");
    const int64_t killed = steady_ns();
    leader->signal(SIGKILL);
    leader->wait(std::chrono::seconds(10));
    double worst = 0;
    int leads = 0;
    for (auto* f : {f1.get(), f2.get()}) {
      if (!f->write(std::to_string(killed) + "\n").ok()) die("a follower ended early");
      auto line = f->read_line(std::chrono::seconds(60));
      if (!line) die("a follower did not write after the takeover (see " + dir + "/takeover-f*.log)");
      auto j = nlohmann::json::parse(*line);
      worst = std::max(worst, j["us"].get<double>() / 1000.0);
      leads += j["leads"].get<bool>() ? 1 : 0;
    }
    if (leads != 1) die("cycle " + std::to_string(cycle) + ": " + std::to_string(leads) + " processes lead after the takeover");
    ms.push_back(worst);
    for (auto* f : {f1.get(), f2.get()}) {
      f->close_stdin();
      f->wait(std::chrono::seconds(30));
    }
  }
  std::cout << nlohmann::json{{"bench", "node"},
                              {"path", "kill -9 of the leader process -> a write acknowledged on the new leader, in every survivor"},
                              {"cycles", cycles},
                              {"ms_p50", percentile(ms, 0.5)},
                              {"ms_max", percentile(ms, 1.0)},
                              {"target_ms", 500}}
                   .dump()
            << std::endl;
}

}  // namespace tandem::app
