// `tandem bench schema`'s backfill figure: a device upgraded late backfills a new column over
// --backfill-rows rows through a real server (`tandem server`, a child process), next to an
// ordinary catch-up of as many changes by the same device, in the same run.
//
// The devices are real nodes (db_worker + peer_syncer), opened and closed per phase:
//   1. writer W (schema v2: t(id, a, b, note)) inserts the rows with a note each; device D
//      (schema v1: t(id, a, b)) catches up on them (not timed) and closes;
//   2. W updates b on every row (one change per row) and closes;
//   3. catch-up: D reopens on v1 and is timed from open to caught up: N changes of b;
//   4. backfill: D reopens on v2 (its table migrates in place) and is timed from open to
//      caught up: N cells of note, sent as a backfill (docs/schema.md "Backfill").
// Each phase runs in its own actor system, so a database closed in one is free for the next.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/db_worker.hpp"
#include "actors/peer_syncer.hpp"
#include "actors/system_config.hpp"
#include "apps/tandem/bench_util.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/common/child_process.hpp"
#include "runtime/net/websocket.hpp"

namespace tandem::app {
namespace {

using Clock = std::chrono::steady_clock;
const std::string kSecret = "bench-schema-secret-0123456789abcdef0123456789abcdef";
const char* kV1 = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER)";
const char* kV2 = "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY NOT NULL, a TEXT, b INTEGER, note TEXT)";

[[noreturn]] void fail(const std::string& what) { bench_fail("schema", Status::Internal(what), "backfill"); }

// One node of a phase: its worker and syncer, closed when the phase's system ends.
struct BenchNode {
  db_worker_actor worker;
  actors::peer_syncer_actor syncer;
};

BenchNode open_node(caf::actor_system& system, const std::shared_ptr<net::EventLoop>& loop, const std::string& url,
                    const std::string& path, const char* schema) {
  DbWorkerConfig wc;
  wc.path = path;
  wc.schema = {schema};
  wc.name = path;
  auto worker = spawn_db_worker(system, wc);
  if (!worker.ok()) fail("opening " + path + ": " + worker.status().message());
  actors::PeerSyncerConfig pc;
  pc.url = url;
  auto token = auth::mint_token(kSecret, "bench", std::chrono::hours(1));
  if (!token.ok()) fail("minting a token: " + token.status().message());
  pc.token = *token;
  pc.loop = loop;
  pc.schema = {schema};
  pc.client_name = path;
  pc.seed = 7;
  return {*worker, actors::spawn_peer_syncer(system, *worker, pc)};
}

void caught_up(caf::actor_system& system, const BenchNode& node) {
  caf::scoped_actor self{system};
  bool ok = false;
  std::string why;
  self->request(node.syncer, std::chrono::minutes(10), actors::caught_up_atom::value)
      .receive([&](int64_t, int64_t) { ok = true; }, [&](caf::error& e) { why = system.render(e); });
  if (!ok) fail("waiting to be caught up: " + why);
}

void write(caf::actor_system& system, const BenchNode& node, const std::string& sql) {
  caf::scoped_actor self{system};
  worker::WriteRequest req;
  req.add_statements()->set_sql(sql);
  std::string why = "no answer";
  self->request(node.worker, std::chrono::minutes(10), req)
      .receive([&](worker::WriteResponse& r) { why = r.error().code() == change::Error::OK ? "" : r.error().message(); },
               [&](caf::error& e) { why = system.render(e); });
  if (!why.empty()) fail("writing: " + why);
}

void close(std::initializer_list<BenchNode> nodes) {
  for (const auto& n : nodes) {
    caf::anon_send_exit(n.syncer, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(n.worker, caf::exit_reason::user_shutdown);
  }
}

// Runs `body` in an actor system of its own, which ends (every actor done) before returning.
template <class F>
void phase(F&& body) {
  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  caf::actor_system system{cfg};
  auto loop = std::make_shared<net::EventLoop>(1);
  body(system, loop);
  system.await_all_actors_done();
}

}  // namespace

void run_backfill_bench(const std::string& parent, int64_t rows) {
  spdlog::set_level(spdlog::level::warn);
  signal(SIGPIPE, SIG_IGN);
  BenchDir d(parent, "tandem-bench-backfill");
  const std::string dir = d.path.string();
  auto server = start_bench_server(dir, kSecret);
  if (!server.ok()) fail(server.status().message());
  const std::string url = server->url;
  const std::string w = dir + "/writer.db", dev = dir + "/device.db";
  const std::string n = std::to_string(rows);

  phase([&](caf::actor_system& system, const std::shared_ptr<net::EventLoop>& loop) {
    auto writer = open_node(system, loop, url, w, kV2);
    write(system, writer,
          "WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < " + n +
              ") INSERT INTO t(id, a, b, note) SELECT v, 'row ' || v, v, 'note ' || v FROM s");
    caught_up(system, writer);
    auto device = open_node(system, loop, url, dev, kV1);
    caught_up(system, device);
    close({device});
    write(system, writer, "UPDATE t SET b = b + 1");
    caught_up(system, writer);
    close({writer});
  });
  double catchup_s = 0, backfill_s = 0;
  phase([&](caf::actor_system& system, const std::shared_ptr<net::EventLoop>& loop) {
    const auto t0 = Clock::now();
    auto device = open_node(system, loop, url, dev, kV1);
    caught_up(system, device);
    catchup_s = std::chrono::duration<double>(Clock::now() - t0).count();
    close({device});
  });
  phase([&](caf::actor_system& system, const std::shared_ptr<net::EventLoop>& loop) {
    const auto t0 = Clock::now();
    auto device = open_node(system, loop, url, dev, kV2);
    caught_up(system, device);
    backfill_s = std::chrono::duration<double>(Clock::now() - t0).count();
    close({device});
  });
  // The device holds every note and every updated b.
  auto store = Store::open(dev);
  if (!store.ok()) fail("reopening the device: " + store.status().message());
  auto check = (*store)->query("SELECT count(*) FROM t WHERE note = 'note ' || id AND b = id + 1");
  if (!check.ok() || check->rows.size() != 1 || check->rows[0][0].integer() != rows)
    fail("the device does not hold every backfilled note and caught-up b");
  const double catchup_rate = static_cast<double>(rows) / catchup_s, backfill_rate = static_cast<double>(rows) / backfill_s;
  nlohmann::json out = {{"bench", "schema"},
                        {"op", "backfill"},
                        {"rows", rows},
                        {"backfill_changes", rows},
                        {"backfill_s", backfill_s},
                        {"backfill_changes_per_s", backfill_rate},
                        {"catchup_changes", rows},
                        {"catchup_s", catchup_s},
                        {"catchup_changes_per_s", catchup_rate},
                        {"ratio", catchup_rate > 0 ? backfill_rate / catchup_rate : 0.0},
                        {"target_ratio", 0.5}};
  std::cout << out.dump() << std::endl;
}

}  // namespace tandem::app
