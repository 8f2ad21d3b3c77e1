// `tandem bench sync`: the sync edge end to end on loopback. Starts `tandem server` as a
// child process (this binary), then measures from this process, printing one JSON line each:
//   loopback   the raw baseline: TCP ping-pong round trip between two sockets of this
//              process, and an application Ping/Pong round trip through the server's
//              WebSocket session (the floor under every figure below);
//   e2e        a write on node A (db_worker + peer_syncer, synchronous=FULL), from the write
//              request until the change is shown to the watcher of a live query on node C
//              (tab_bus + ui_view), through the server: e2e_us_p50 / e2e_us_p99 (targets
//              800 / 2,000 us), next to its floor measured in the same run: two plain
//              SQLite commits (the writer's and the server's, synchronous=FULL) and one
//              WebSocket round trip (floor_us_p50);
//   ingest     changes/s durably merged into one channel with 10 connected peers pushing at
//              once (each acks what it is forwarded): ingest_changes_per_s (target 200,000);
//   fanout     one change pushed by one peer until all of 1,000 connected sessions of the user
//              received it: fanout_ms, median of --fanout-rounds (target 10 ms, the first
//              session 1 ms).
#include "actors/system_config.hpp"
#include "actors/peer_syncer.hpp"
#include "actors/session.hpp"
#include "actors/tab_bus.hpp"
#include "actors/ui_view.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/tandem/bench_peer.hpp"
#include "apps/tandem/bench_util.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/common/child_process.hpp"
#include "runtime/ivm/view.hpp"
#include "runtime/query/parser.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::app {
namespace {

using Clock = std::chrono::steady_clock;
const char* kSchema = "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY NOT NULL, v INTEGER)";
const std::string kSecret = "bench-sync-secret-0123456789abcdef0123456789abcdef";

struct Options {
  int e2e_samples = 1000;
  int floor_samples = 300;
  int peers = 10;
  int ingest_pushes = 40;        // per peer
  int ingest_batch = 500;        // changes per push
  int sessions = 1000;
  int fanout_rounds = 7;
  int rtt_samples = 2000;
  std::string dir;
};

[[noreturn]] void die(const std::string& m) {
  std::cerr << "tandem bench sync: " << m << "\n";
  throw CLI::RuntimeError(2);
}

std::string token(const std::string& user) { return bench_token(kSecret, user); }

// ---- loopback baseline ----
double tcp_rtt_us_p50(int samples) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listener, 1);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::thread echo([listener] {
    int s = ::accept(listener, nullptr, nullptr);
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    for (;;) {
      ssize_t n = ::recv(s, buf, sizeof buf, 0);
      if (n <= 0) break;
      ::send(s, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
    }
    ::close(s);
  });
  int c = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int one = 1;
  ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::vector<double> rtts;
  char buf[64] = {0};
  for (int i = 0; i < samples; ++i) {
    auto t0 = Clock::now();
    ::send(c, buf, 32, MSG_NOSIGNAL);
    size_t got = 0;
    while (got < 32) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  ::close(c);
  echo.join();
  ::close(listener);
  return percentile(rtts, 0.5);
}

double ws_rtt_us_p50(net::EventLoop& loop, const std::string& url, int samples) {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t last_pong = 0;
  RawPeer peer;  // after what its handler uses: it goes first
  peer.on_envelope = [&](RawPeer&, const sync::Envelope& e) {
    if (!e.has_pong()) return;
    std::lock_guard<std::mutex> l(mu);
    last_pong = e.pong().nonce();
    cv.notify_all();
  };
  auto c = net::connect_blocking(loop, url, {}, peer.handler());
  if (!c.ok()) die(c.status().message());
  peer.conn = *c;
  std::vector<double> rtts;
  for (int i = 1; i <= samples; ++i) {
    sync::Envelope ping;
    ping.mutable_ping()->set_nonce(static_cast<uint64_t>(i));
    auto t0 = Clock::now();
    peer.conn->send(sync_frames::encode(ping));
    std::unique_lock<std::mutex> l(mu);
    if (!cv.wait_for(l, std::chrono::seconds(5), [&] { return last_pong == static_cast<uint64_t>(i); })) die("no pong");
    rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  peer.conn->close(net::kCloseNormal, "done");
  return percentile(rtts, 0.5);
}

// ---- e2e: node A writes, node C's live view shows it ----
struct Observer {
  std::mutex mu;
  std::condition_variable cv;
  int64_t last_seen_value = -1;
};

struct observer_state {
  std::shared_ptr<Observer> observer;
  static inline const char* name = "bench_watcher";
};

// Node C's watched query: the watcher of a ui_view (the node's real view role) on the row
// that node A keeps updating; records each value it is shown.
view_watcher_actor::behavior_type observer_actor(view_watcher_actor::stateful_pointer<observer_state> self,
                                                 std::shared_ptr<Observer> observer, ui_view_actor view) {
  self->state.observer = std::move(observer);
  self->set_default_handler(caf::drop);
  view::WatchRequest req;
  req.set_sql("SELECT id, v FROM bench WHERE id = 1");
  self->request(view, std::chrono::seconds(30), std::move(req)).then([](view::WatchResponse&) {}, [](caf::error&) {});
  return {
      [self](view::ViewChange& change) {
        for (const auto& c : change.changes()) {
          if (c.kind() == view::RowChange::REMOVED || c.row().values_size() < 2 || !c.row().values(1).has_integer()) continue;
          std::lock_guard<std::mutex> l(self->state.observer->mu);
          self->state.observer->last_seen_value = c.row().values(1).integer();
          self->state.observer->cv.notify_all();
        }
      },
  };
}

nlohmann::json run_e2e(caf::actor_system& system, const std::string& url, const std::string& dir, int samples) {
  auto loop = std::make_shared<net::EventLoop>(1);
  auto make_node = [&](const std::string& name, std::shared_ptr<ivm::DeltaJournal> journal) {
    DbWorkerConfig wc;
    wc.path = dir + "/" + name + ".db";
    wc.schema = {kSchema};
    wc.name = name;
    wc.journal = journal;
    auto worker = spawn_db_worker(system, wc);
    if (!worker.ok()) die(worker.status().message());
    actors::PeerSyncerConfig pc;
    pc.url = url;
    pc.token = token("e2e");
    pc.loop = loop;
    pc.schema = {kSchema};
    pc.client_name = name;
    pc.seed = 11;
    auto syncer = actors::spawn_peer_syncer(system, *worker, pc);
    return std::make_pair(*worker, syncer);
  };
  auto journal_c = std::make_shared<ivm::DeltaJournal>();
  auto [worker_a, syncer_a] = make_node("a", nullptr);
  auto [worker_c, syncer_c] = make_node("c", journal_c);
  auto observer = std::make_shared<Observer>();
  auto bus = spawn_tab_bus(system, worker_c);
  UiViewConfig vc;
  vc.name = "bench";
  vc.database_path = dir + "/c.db";
  vc.journal = journal_c;
  vc.worker = worker_c;
  vc.bus = bus;
  auto ui = spawn_ui_view(system, vc);
  if (!ui.ok()) die(ui.status().message());
  auto view = system.spawn(observer_actor, observer, *ui);

  caf::scoped_actor self{system};
  auto write = [&](int64_t v) {
    worker::WriteRequest req;
    auto* st = req.add_statements();
    st->set_sql("INSERT INTO bench(id, v) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v");
    st->add_params()->set_integer(v);
    bool ok = false;
    self->request(worker_a, std::chrono::seconds(30), req)
        .receive([&](worker::WriteResponse& r) { ok = r.error().code() == change::Error::OK; }, [&](caf::error&) {});
    if (!ok) die("write on node A failed");
  };
  auto wait_seen = [&](int64_t v) {
    std::unique_lock<std::mutex> l(observer->mu);
    return observer->cv.wait_for(l, std::chrono::seconds(30), [&] { return observer->last_seen_value == v; });
  };
  // Warm-up: both connected, view hydrated, first change through.
  write(0);
  if (!wait_seen(0)) die("e2e warm-up: the change never reached node C's view");
  std::vector<double> us;
  for (int i = 1; i <= samples; ++i) {
    auto t0 = Clock::now();
    write(i);
    if (!wait_seen(i)) die("e2e: change " + std::to_string(i) + " never reached node C's view");
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  for (auto a : {caf::actor_cast<caf::actor>(syncer_a), caf::actor_cast<caf::actor>(syncer_c),
                 caf::actor_cast<caf::actor>(view), caf::actor_cast<caf::actor>(*ui), caf::actor_cast<caf::actor>(bus),
                 caf::actor_cast<caf::actor>(worker_a),
                 caf::actor_cast<caf::actor>(worker_c)})
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  return {{"e2e_us_p50", percentile(us, 0.5)}, {"e2e_us_p99", percentile(us, 0.99)},
          {"e2e_us_max", percentile(us, 1.0)}, {"samples", samples}};
}

// ---- ingest: 10 peers push at once into one channel ----
nlohmann::json run_ingest(const std::string& url, const Options& o) {
  net::EventLoop loop(1);
  // Pre-generate every peer's pushes with a real Store (inserts, one change per row).
  std::vector<std::vector<sync::Envelope>> pushes(static_cast<size_t>(o.peers));
  int64_t total = 0;
  for (int p = 0; p < o.peers; ++p) {
    StoreOptions so;
    so.site_id = bench_site(static_cast<uint32_t>(100 + p));
    so.open.synchronous_full = false;
    auto store = Store::open(":memory:", so);
    if (!store.ok() || !(*store)->execute_schema(kSchema).ok() || !(*store)->register_table("bench").ok()) die("ingest store");
    int64_t id = static_cast<int64_t>(p) * 10000000;
    for (int k = 0; k < o.ingest_pushes; ++k) {
      const int64_t since = (*store)->db_version();
      auto r = (*store)->transact([&](Database& db) -> Status {
        TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("INSERT INTO bench(id, v) VALUES (?, ?)"));
        for (int i = 0; i < o.ingest_batch; ++i) {
          st->reset();
          TANDEM_RETURN_IF_ERROR(st->bind_int64(1, ++id));
          TANDEM_RETURN_IF_ERROR(st->bind_int64(2, i));
          TANDEM_RETURN_IF_ERROR(st->run());
        }
        return Status::Ok();
      });
      if (!r.ok()) die("ingest write: " + r.status().message());
      auto batch = (*store)->changes_since(since);
      if (!batch.ok()) die("ingest changes");
      sync::Envelope e;
      e.mutable_push()->set_seq(static_cast<uint64_t>(k + 1));
      *e.mutable_push()->mutable_batch() = std::move(*batch);
      total += e.push().batch().changes_size();
      pushes[static_cast<size_t>(p)].push_back(std::move(e));
    }
  }
  std::vector<std::unique_ptr<RawPeer>> peers;
  const std::string tok = token("ingest");
  for (int p = 0; p < o.peers; ++p) {
    peers.push_back(std::make_unique<RawPeer>());
    auto c = net::connect_blocking(loop, url, {}, peers.back()->handler());
    if (!c.ok()) die(c.status().message());
    peers.back()->conn = *c;
    peers.back()->hello(tok, bench_site(static_cast<uint32_t>(100 + p)), kSchema);
  }
  for (auto& p : peers)
    if (!wait_until([&] { return p->welcomed.load(); }, std::chrono::seconds(30))) die("ingest: no welcome");
  const uint64_t window = 16;
  std::vector<size_t> next(peers.size(), 0);
  auto t0 = Clock::now();
  for (;;) {
    bool done = true;
    for (size_t p = 0; p < peers.size(); ++p) {
      auto& mine = pushes[p];
      while (next[p] < mine.size() && next[p] - peers[p]->acked_seq.load() < window) {
        peers[p]->conn->send(sync_frames::encode(mine[next[p]]));
        ++next[p];
      }
      if (peers[p]->acked_seq.load() < mine.size()) done = false;
      if (peers[p]->failed) die("ingest: the server refused a push (see the server log)");
    }
    if (done) break;
    if (Clock::now() - t0 > std::chrono::seconds(120)) die("ingest: timed out");
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (auto& p : peers) p->conn->close(net::kCloseNormal, "done");
  return {{"ingest_changes_per_s", static_cast<double>(total) / seconds}, {"peers", o.peers}, {"changes", total},
          {"changes_per_push", o.ingest_batch}, {"seconds", seconds}};
}

// ---- fan-out: one change to 1,000 sessions ----
nlohmann::json run_fanout(const std::string& url, const Options& o) {
  net::EventLoop loop(1);
  const std::string tok = token("fanout");
  std::vector<std::unique_ptr<RawPeer>> sessions;
  for (int i = 0; i < o.sessions; ++i) {
    sessions.push_back(std::make_unique<RawPeer>());
    auto c = net::connect_blocking(loop, url, {}, sessions.back()->handler());
    if (!c.ok()) die("fanout connect " + std::to_string(i) + ": " + c.status().message());
    sessions.back()->conn = *c;
    sessions.back()->hello(tok, bench_site(static_cast<uint32_t>(1000 + i)), kSchema);
  }
  for (auto& s : sessions)
    if (!wait_until([&] { return s->welcomed.load(); }, std::chrono::seconds(60))) die("fanout: no welcome");
  RawPeer writer;
  auto c = net::connect_blocking(loop, url, {}, writer.handler());
  if (!c.ok()) die(c.status().message());
  writer.conn = *c;
  writer.hello(tok, bench_site(999), kSchema);
  if (!wait_until([&] { return writer.welcomed.load(); }, std::chrono::seconds(30))) die("fanout: writer not welcomed");

  StoreOptions so;
  so.site_id = bench_site(999);
  auto store = Store::open(":memory:", so);
  if (!store.ok() || !(*store)->execute_schema(kSchema).ok() || !(*store)->register_table("bench").ok()) die("fanout store");
  std::vector<double> ms, first_ms;
  for (int round = 1; round <= o.fanout_rounds; ++round) {
    const int64_t since = (*store)->db_version();
    if (!(*store)->write({SqlStatement{"INSERT INTO bench(id, v) VALUES (?, 1)", {Value::Integer(round)}}}).ok()) die("fanout write");
    auto batch = (*store)->changes_since(since);
    sync::Envelope e;
    e.mutable_push()->set_seq(static_cast<uint64_t>(round));
    *e.mutable_push()->mutable_batch() = std::move(*batch);
    const int64_t want = round;  // changes forwarded to each session so far
    auto t0 = Clock::now();
    writer.conn->send(sync_frames::encode(e));
    // The first session to receive it: push, merge, durable commit, first forward.
    if (!wait_until([&] {
          for (auto& s : sessions)
            if (s->forwarded_changes.load() >= want) return true;
          return false;
        }, std::chrono::seconds(30)))
      die("fanout: no session received the change");
    first_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    for (auto& s : sessions)
      if (!wait_until([&] { return s->forwarded_changes.load() >= want; }, std::chrono::seconds(30))) die("fanout: a session missed the change");
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  for (auto& s : sessions) s->conn->close(net::kCloseNormal, "done");
  writer.conn->close(net::kCloseNormal, "done");
  return {{"fanout_ms", percentile(ms, 0.5)}, {"fanout_ms_max", percentile(ms, 1.0)},
          {"first_session_ms", percentile(first_ms, 0.5)}, {"sessions", o.sessions},
          {"rounds", o.fanout_rounds}};
}

void run(const Options& o) {
  spdlog::set_level(spdlog::level::warn);
  signal(SIGPIPE, SIG_IGN);
  std::string dir = o.dir;
  if (dir.empty()) {
    char tmpl[] = "/tmp/tandem-bench-sync-XXXXXX";
    if (!::mkdtemp(tmpl)) die("cannot create a temporary directory");
    dir = tmpl;
  }
  auto started = start_bench_server(dir, kSecret);
  if (!started.ok()) die(started.status().message());
  BenchServer& server = *started;

  net::EventLoop loop(1);
  const double tcp_rtt = tcp_rtt_us_p50(o.rtt_samples);
  const double ws_rtt = ws_rtt_us_p50(loop, server.url, o.rtt_samples);
  std::cout << nlohmann::json{{"bench", "sync"}, {"metric", "loopback"}, {"tcp_rtt_us_p50", tcp_rtt},
                              {"ws_ping_rtt_us_p50", ws_rtt}, {"samples", o.rtt_samples}}
                   .dump()
            << std::endl;

  {
    caf::actor_system_config cfg;
    configure_actor_system(cfg);
    caf::actor_system system{cfg};
    auto e2e = run_e2e(system, server.url, dir, o.e2e_samples);
    e2e["bench"] = "sync";
    e2e["metric"] = "e2e";
    e2e["tcp_rtt_us_p50"] = tcp_rtt;
    e2e["ws_ping_rtt_us_p50"] = ws_rtt;
    // The floor in the same run: the writer's commit and the server's (each one fsync, on
    // this disk) and one WebSocket round trip (A to the server, the server to C).
    const double commit = median(plain_commit_us("sync", dir + "/floor.db", o.floor_samples));
    e2e["plain_commit_us_p50"] = commit;
    e2e["floor_us_p50"] = 2 * commit + ws_rtt;
    e2e["target_p50_us"] = 800;
    e2e["target_p99_us"] = 2000;
    std::cout << e2e.dump() << std::endl;
    system.await_all_actors_done();
  }
  auto ingest = run_ingest(server.url, o);
  ingest["bench"] = "sync";
  ingest["metric"] = "ingest";
  ingest["target"] = 200000;
  std::cout << ingest.dump() << std::endl;

  auto fanout = run_fanout(server.url, o);
  fanout["bench"] = "sync";
  fanout["metric"] = "fanout";
  fanout["ws_ping_rtt_us_p50"] = ws_rtt;
  fanout["target_ms"] = 10;
  fanout["target_first_ms"] = 1;
  std::cout << fanout.dump() << std::endl;
  if (o.dir.empty()) (void)std::system(("rm -rf " + dir).c_str());
}

}  // namespace

void add_bench_sync(CLI::App& bench) {
  auto o = std::make_shared<Options>();
  auto* cmd = bench.add_subcommand("sync", "Sync over loopback: e2e latency, ingest, fan-out, with the raw round trip");
  cmd->add_option("--e2e-samples", o->e2e_samples, "Writes timed from node A to node C's view")->capture_default_str();
  cmd->add_option("--peers", o->peers, "Peers pushing at once for ingest")->capture_default_str();
  cmd->add_option("--ingest-pushes", o->ingest_pushes, "Pushes per peer")->capture_default_str();
  cmd->add_option("--ingest-batch", o->ingest_batch, "Changes per push")->capture_default_str();
  cmd->add_option("--sessions", o->sessions, "Connected sessions for fan-out")->capture_default_str();
  cmd->add_option("--fanout-rounds", o->fanout_rounds, "Fan-out repetitions (median reported)")->capture_default_str();
  cmd->add_option("--rtt-samples", o->rtt_samples, "Round trips for the loopback baseline")->capture_default_str();
  cmd->add_option("--floor-samples", o->floor_samples, "Plain SQLite commits timed for the e2e floor")->capture_default_str();
  cmd->add_option("--dir", o->dir, "Working directory (kept); default: a temporary one, removed");
  cmd->callback([o] { run(*o); });
}

}  // namespace tandem::app
