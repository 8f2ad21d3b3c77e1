// `tandem bench cluster`: server hosts as one cluster on this machine (children of this
// binary), driven by raw protocol peers over loopback. One JSON line per figure:
//   ingest    changes/s durably merged into channels of --users users spread over 3 hosts,
//             each user's peer pushing to the host that serves it, with R=1 W=1 and R=2 W=2,
//             and the CPU seconds each host spent per 1,000 changes (utime + stime from
//             /proc), which shows the cost of a replica independent of the 2 cores that the
//             3 hosts share here. Baseline in the same run: one host alone, no cluster.
//   failover  kill -9 of the host serving a user while that user's peer writes through
//             another host: ms from the kill until a push is acknowledged again (a new
//             connection through the surviving host, served by the next replica); p50 and
//             max over --failover-cycles (the host is restarted between cycles).
//   moved     the share of channels whose replica set gains the new host when a 4th host
//             joins 3 (placement over --placement-users users, as every host computes it).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <random>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/tandem/bench_peer.hpp"
#include "apps/tandem/bench_util.hpp"
#include "apps/tandem/commands.hpp"
#include "runtime/common/child_process.hpp"
#include "runtime/net/websocket.hpp"
#include "runtime/sync/placement.hpp"

namespace tandem::app {
namespace {

using Clock = std::chrono::steady_clock;
const char* kSchema = "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY NOT NULL, v INTEGER)";
const std::string kSecret = "bench-cluster-secret-0123456789abcdef0123456789abcdef";

struct Options {
  int users = 12;
  int pushes = 20;   // per user
  int batch = 500;   // changes per push
  int failover_cycles = 5;
  int placement_users = 10000;
  std::string dir;
};

[[noreturn]] void die(const std::string& m) {
  std::cerr << "tandem bench cluster: " << m << "\n";
  throw CLI::RuntimeError(2);
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    die("no free port");
  ::close(fd);
  return ntohs(a.sin_port);
}

// Seconds of CPU (user + system) the process has used.
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stod(f);
    if (i == 15) stime = std::stod(f);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Host {
  std::string name, member;
  std::unique_ptr<ChildProcess> child;
  std::string url;
};

struct Cluster {
  std::string dir;
  std::vector<Host> hosts;
  std::vector<std::string> extra;
  Cluster(const std::string& d, int n, std::vector<std::string> more) : dir(d), extra(std::move(more)) {
    std::ofstream(dir + "/secret") << kSecret << "\n";
    for (int i = 0; i < n; ++i)
      hosts.push_back({"host" + std::to_string(i), n > 1 ? "127.0.0.1:" + std::to_string(free_port()) : "", nullptr, ""});
    for (auto& h : hosts) start(h);
  }
  void start(Host& h) {
    ChildOptions o;
    o.args = {"/proc/self/exe", "server", "--listen", "127.0.0.1:0", "--data-dir", dir + "/" + h.name,
              "--secret-file", dir + "/secret", "--log-level", "warn"};
    if (!h.member.empty()) {
      // Plain BASP: the bench measures replication, not TLS (every host is this machine).
      o.args.insert(o.args.end(), {"--cluster-listen", h.member, "--cluster-insecure"});
      for (const auto& other : hosts)
        if (other.member != h.member) o.args.insert(o.args.end(), {"--cluster-member", other.member});
    }
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    o.stderr_file = dir + "/" + h.name + ".log";
    o.stop_signal = SIGTERM;
    auto started = ChildProcess::spawn(o);
    if (!started.ok()) die("starting a host: " + started.status().message());
    h.child = std::move(started).value();
    auto line = h.child->read_line(std::chrono::seconds(10));
    if (!line || line->rfind("listening on ", 0) != 0) die("a host did not start (see " + o.stderr_file + ")");
    h.url = line->substr(13) + "/sync";
  }
  std::vector<std::string> members() const {
    std::vector<std::string> m;
    for (const auto& h : hosts) m.push_back(h.member);
    return m;
  }
  // The host serving `user` while every host is up.
  Host& serving(const std::string& user) {
    if (hosts.size() == 1) return hosts[0];
    const std::string first = sync_placement::ranked(user, members()).front();
    for (auto& h : hosts)
      if (h.member == first) return h;
    die("placement names no host");
  }
};

// Pushes of `n` inserts each from a fresh device store.
std::vector<sync::Envelope> make_pushes(uint32_t site, int pushes, int batch, int64_t first_id) {
  StoreOptions so;
  so.site_id = bench_site(site);
  so.open.synchronous_full = false;
  auto store = Store::open(":memory:", so);
  if (!store.ok() || !(*store)->execute_schema(kSchema).ok() || !(*store)->register_table("bench").ok()) die("device store");
  std::vector<sync::Envelope> out;
  int64_t id = first_id;
  for (int k = 0; k < pushes; ++k) {
    const int64_t since = (*store)->db_version();
    auto r = (*store)->transact([&](Database& db) -> Status {
      TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("INSERT INTO bench(id, v) VALUES (?, ?)"));
      for (int i = 0; i < batch; ++i) {
        st->reset();
        TANDEM_RETURN_IF_ERROR(st->bind_int64(1, ++id));
        TANDEM_RETURN_IF_ERROR(st->bind_int64(2, i));
        TANDEM_RETURN_IF_ERROR(st->run());
      }
      return Status::Ok();
    });
    if (!r.ok()) die("device write: " + r.status().message());
    auto changes = (*store)->changes_since(since);
    if (!changes.ok()) die("device changes");
    sync::Envelope e;
    e.mutable_push()->set_seq(static_cast<uint64_t>(k + 1));
    *e.mutable_push()->mutable_batch() = std::move(*changes);
    out.push_back(std::move(e));
  }
  return out;
}

nlohmann::json run_ingest(const Options& o, int hosts, int replicas, int quorum) {
  BenchDir dir(o.dir.empty() ? "/tmp" : o.dir, "tandem-bench-cluster");
  std::vector<std::string> extra;
  if (hosts > 1) extra = {"--replicas", std::to_string(replicas), "--write-quorum", std::to_string(quorum)};
  Cluster c(dir.path.string(), hosts, extra);
  net::EventLoop loop(1);
  std::vector<std::vector<sync::Envelope>> pushes;
  int64_t total = 0;
  for (int u = 0; u < o.users; ++u) {
    pushes.push_back(make_pushes(static_cast<uint32_t>(100 + u), o.pushes, o.batch, int64_t{u} * 10000000));
    for (const auto& p : pushes.back()) total += p.push().batch().changes_size();
  }
  std::vector<std::unique_ptr<RawPeer>> peers;
  for (int u = 0; u < o.users; ++u) {
    const std::string user = "user" + std::to_string(u);
    peers.push_back(std::make_unique<RawPeer>());
    auto conn = net::connect_blocking(loop, c.serving(user).url, {}, peers.back()->handler());
    if (!conn.ok()) die(conn.status().message());
    peers.back()->conn = *conn;
    peers.back()->hello(bench_token(kSecret, user), bench_site(static_cast<uint32_t>(100 + u)), kSchema);
  }
  for (auto& p : peers)
    if (!wait_until([&] { return p->welcomed.load(); }, std::chrono::seconds(30))) die("ingest: no welcome");
  std::vector<double> cpu_before;
  for (auto& h : c.hosts) cpu_before.push_back(cpu_seconds(h.child->pid()));
  const uint64_t window = 16;
  std::vector<size_t> next(peers.size(), 0);
  const auto t0 = Clock::now();
  for (;;) {
    bool done = true;
    for (size_t p = 0; p < peers.size(); ++p) {
      while (next[p] < pushes[p].size() && next[p] - peers[p]->acked_seq.load() < window)
        peers[p]->conn->send(sync_frames::encode(pushes[p][next[p]++]));
      if (peers[p]->acked_seq.load() < pushes[p].size()) done = false;
      if (peers[p]->failed) die("ingest: a host refused a push (see its log under " + c.dir + ")");
    }
    if (done) break;
    if (Clock::now() - t0 > std::chrono::seconds(300)) die("ingest: timed out");
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  nlohmann::json cpu = nlohmann::json::array();
  double cpu_total = 0;
  for (size_t i = 0; i < c.hosts.size(); ++i) {
    const double used = cpu_seconds(c.hosts[i].child->pid()) - cpu_before[i];
    cpu_total += used;
    cpu.push_back(used * 1000.0 / static_cast<double>(total));
  }
  for (auto& p : peers) p->conn->close(net::kCloseNormal, "done");
  return {{"bench", "cluster"},
          {"metric", "ingest"},
          {"hosts", hosts},
          {"replicas", replicas},
          {"write_quorum", quorum},
          {"users", o.users},
          {"changes", total},
          {"changes_per_s", static_cast<double>(total) / seconds},
          {"cpu_s_per_1000_changes_per_host", cpu},
          {"cpu_s_per_1000_changes_all_hosts", cpu_total * 1000.0 / static_cast<double>(total)},
          {"seconds", seconds}};
}

// One change pushed by a new device of `user` through `url`; true once acknowledged.
bool push_acked(net::EventLoop& loop, const std::string& url, const std::string& user, uint32_t site,
                std::chrono::milliseconds within) {
  auto pushes = make_pushes(site, 1, 1, int64_t{site} * 1000);
  RawPeer peer;
  auto conn = net::connect_blocking(loop, url, {}, peer.handler());
  if (!conn.ok()) return false;
  peer.conn = *conn;
  peer.hello(bench_token(kSecret, user), bench_site(site), kSchema);
  bool ok = wait_until([&] { return peer.welcomed.load() || peer.failed.load(); }, within) && !peer.failed;
  if (ok) {
    peer.conn->send(sync_frames::encode(pushes[0]));
    ok = wait_until([&] { return peer.acked_seq.load() >= 1 || peer.failed.load(); }, within) && !peer.failed;
  }
  return ok;  // ~RawPeer drops the connection and waits for its end
}

nlohmann::json run_failover(const Options& o) {
  BenchDir dir(o.dir.empty() ? "/tmp" : o.dir, "tandem-bench-cluster");
  Cluster c(dir.path.string(), 3, {});
  net::EventLoop loop(1);
  const std::string user = "failover-user";
  Host& victim = c.serving(user);
  Host* edge = nullptr;
  for (auto& h : c.hosts)
    if (&h != &victim) edge = &h;
  std::vector<double> ms;
  uint32_t site = 5000;
  for (int cycle = 0; cycle < o.failover_cycles; ++cycle) {
    if (!push_acked(loop, edge->url, user, ++site, std::chrono::seconds(10))) die("failover: no ack before the kill");
    victim.child->signal(SIGKILL);
    const auto killed = Clock::now();
    victim.child->wait(std::chrono::seconds(10));
    bool served = false;
    while (!served && Clock::now() - killed < std::chrono::seconds(30))
      served = push_acked(loop, edge->url, user, ++site, std::chrono::seconds(3));
    if (!served) die("failover: no host served the user within 30 s");
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - killed).count());
    c.start(victim);
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  return {{"bench", "cluster"},   {"metric", "failover"}, {"hosts", 3}, {"replicas", 2},
          {"write_quorum", 2},    {"cycles", ms.size()},  {"failover_ms_p50", median(ms)},
          {"failover_ms_max", *std::max_element(ms.begin(), ms.end())}};
}

nlohmann::json run_moved(const Options& o, size_t replicas) {
  const std::vector<std::string> three{"h1:7001", "h2:7001", "h3:7001"};
  std::vector<std::string> four = three;
  four.push_back("h4:7001");
  int moved = 0;
  for (int u = 0; u < o.placement_users; ++u) {
    const std::string user = "user" + std::to_string(u);
    auto before = sync_placement::ranked(user, three);
    auto after = sync_placement::ranked(user, four);
    before.resize(replicas);
    after.resize(replicas);
    moved += std::set<std::string>(before.begin(), before.end()) != std::set<std::string>(after.begin(), after.end());
  }
  return {{"bench", "cluster"},
          {"metric", "moved"},
          {"hosts_before", 3},
          {"hosts_after", 4},
          {"replicas", replicas},
          {"users", o.placement_users},
          {"moved_share", static_cast<double>(moved) / o.placement_users},
          {"expected_share", static_cast<double>(replicas) / 4.0}};
}

void run(const Options& o) {
  spdlog::set_level(spdlog::level::warn);
  std::cout << run_moved(o, 1).dump() << std::endl;
  std::cout << run_moved(o, 2).dump() << std::endl;
  std::cout << run_ingest(o, 1, 1, 1).dump() << std::endl;
  std::cout << run_ingest(o, 3, 1, 1).dump() << std::endl;
  std::cout << run_ingest(o, 3, 2, 2).dump() << std::endl;
  std::cout << run_failover(o).dump() << std::endl;
}

}  // namespace

void add_bench_cluster(CLI::App& bench) {
  auto o = std::make_shared<Options>();
  auto* cmd = bench.add_subcommand("cluster", "Server hosts as a cluster: ingest with 1 and 2 replicas, failover, channels moved");
  cmd->add_option("--users", o->users, "Users (channels) written to at once")->capture_default_str();
  cmd->add_option("--pushes", o->pushes, "Pushes per user")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Changes per push")->capture_default_str();
  cmd->add_option("--failover-cycles", o->failover_cycles, "Kills of the serving host")->capture_default_str();
  cmd->add_option("--placement-users", o->placement_users, "Users placed for the moved share")->capture_default_str();
  cmd->add_option("--dir", o->dir, "Parent of the working directories (default /tmp)");
  cmd->callback([o] { run(*o); });
}

}  // namespace tandem::app
