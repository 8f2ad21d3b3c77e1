#include "actors/node.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <caf/all.hpp>
#include <thread>

#include "actors/node_follower.hpp"
#include "actors/node_leader.hpp"
#include "actors/node_proxy.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/common/process_lock.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/node/wire.hpp"

namespace tandem {
namespace {

// Whose data this process would sync: its token's subject (read unverified, as the
// binding check does; the server verifies). Empty offline or when unreadable.
std::string token_user(const NodeConfig& cfg) {
  if (!cfg.sync) return {};
  auto user = auth::unverified_subject(cfg.sync->token);
  return user.ok() ? *user : std::string();
}

}  // namespace

Node::Node(caf::actor_system& system, NodeConfig config)
    : system_(system), config_(std::move(config)), journal_(std::make_shared<ivm::DeltaJournal>()) {}

Status Node::lead() {
  const auto& cfg = config_;
  const int64_t before = journal_->last_version();
  DbWorkerConfig wc;
  wc.path = cfg.database_path;
  wc.schema = cfg.schema;
  wc.name = cfg.name;
  wc.journal = journal_;
  TANDEM_ASSIGN_OR_RETURN(db_worker_actor worker, spawn_db_worker(system_, wc));
  // After a takeover: the commits the dead leader made and never streamed here are a gap in
  // the journal (spawn_db_worker noted the file's version): views behind it rehydrate.
  if (proxy_) journal_->mark_gap(before, journal_->last_version());
  actors::peer_syncer_actor syncer;
  tab_bus_actor bus = bus_;
  if (!proxy_) bus = spawn_tab_bus(system_, worker, cfg.name + "/tab_bus");
  if (cfg.sync) syncer = actors::spawn_peer_syncer(system_, worker, *cfg.sync);
  auto undo = [&](Status why) {
    if (syncer) caf::anon_send_exit(syncer, caf::exit_reason::user_shutdown);
    if (!proxy_) caf::anon_send_exit(bus, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(worker, caf::exit_reason::user_shutdown);
    return why;
  };
  if (proxy_) {
    // The proxy must be subscribed before anyone else can write (followers, the syncer's
    // merges), so that the views hear of every commit.
    bool attached = false;
    caf::scoped_actor self{system_};
    self->request(proxy_, std::chrono::seconds(30), attach_local_atom::value, worker, syncer)
        .receive([&](bool ok) { attached = ok; }, [&](caf::error&) {});
    if (!attached) return undo(Status::Internal("the node's proxy did not take this process's db_worker"));
  }
  std::unique_ptr<NodeLeader> leader;
  if (!database_lock_path(cfg.database_path).empty()) {
    auto secret = node::ensure_secret(node::secret_path(cfg.database_path));
    Status why = secret.status();
    if (secret.ok()) {
      NodeLeaderConfig lc;
      lc.database_path = cfg.database_path;
      lc.schema = cfg.schema;
      lc.secret = *secret;
      lc.server = cfg.sync ? cfg.sync->url : std::string();
      lc.user = token_user(cfg);
      lc.worker = worker;
      lc.bus = bus;
      lc.syncer = syncer;
      if (!syncer) lc.adopt_sync = [this, worker](const node::Join& join) { return adopt_sync(worker, join); };
      lc.name = cfg.name + "/leader";
      lc.follower_write_timeout = cfg.follower_write_timeout;
      auto started = NodeLeader::start(system_, lc);
      if (started.ok()) leader = std::move(*started);
      else why = started.status();
    }
    // This process holds the database: without a node socket it would lock everyone else
    // out, which is what the caller must hear.
    if (!leader) {
      const StatusCode code = secret.ok() || secret.status().code() == StatusCode::unavailable ? StatusCode::internal : secret.status().code();
      return undo(Status(code, "cannot serve other processes: " + why.to_string()));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  own_worker_ = worker;
  // A follower may already have had its server adopted (the listener runs): keep that.
  if (syncer) syncer_ = syncer;
  leader_ = std::move(leader);
  if (!proxy_) {
    worker_ = worker;
    bus_ = bus;
  }
  leader_pid_ = ::getpid();
  online_ = static_cast<bool>(syncer_);
  leads_ = true;
  return Status::Ok();
}

Status Node::join() {
  const auto& cfg = config_;
  const bool first = !proxy_;
  if (first) proxy_ = spawn_node_proxy(system_, cfg.name + "/proxy", journal_);
  NodeFollowerConfig fc;
  fc.database_path = cfg.database_path;
  fc.schema = cfg.schema;
  fc.name = cfg.name;
  if (cfg.sync) {
    fc.sync.server = cfg.sync->url;
    fc.sync.user = token_user(cfg);
    fc.sync.token = cfg.sync->token;
    fc.sync.also_servers = cfg.sync->also_urls;
    fc.sync.ca_file = cfg.sync->client.ca_file;
    fc.sync.insecure = !cfg.sync->client.verify_peer;
  }
  fc.journal = journal_;
  fc.proxy = proxy_;
  fc.on_leader_lost = [this](const Status& why) { on_lost(why); };
  auto follower = NodeFollower::join(system_, fc);
  if (!follower.ok()) {
    if (first) {
      caf::anon_send_exit(proxy_, caf::exit_reason::user_shutdown);
      proxy_ = caf::actor{};
    }
    return follower.status();
  }
  if (first) {
    worker_ = caf::actor_cast<db_worker_actor>(proxy_);
    bus_ = spawn_tab_bus(system_, worker_, cfg.name + "/tab_bus");
    caf::anon_send(proxy_, bus_);
  }
  spdlog::info("{}: joined the node's leader process (pid {}) at db_version {}", cfg.name, (*follower)->leader_pid(),
               (*follower)->joined_at());
  std::lock_guard<std::mutex> lock(mu_);
  leader_pid_ = (*follower)->leader_pid();
  online_ = (*follower)->leader_online();
  leads_ = false;
  follower_ = std::move(*follower);
  if (first) takeover_ = std::thread([this] { takeover_loop(); });
  return Status::Ok();
}

// The leader runs offline and a follower names a server: the node syncs from now on, with the
// follower's server, token and TLS settings, and this process's schema (or the follower's,
// which the leader checked against the file, when this process opened without one).
Result<actors::peer_syncer_actor> Node::adopt_sync(const db_worker_actor& worker, const node::Join& join) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return Status::Unavailable("the node is stopping");
  if (syncer_) return syncer_;
  actors::PeerSyncerConfig pc;
  pc.url = join.server();
  pc.also_urls.assign(join.also_servers().begin(), join.also_servers().end());
  pc.token = join.token();
  pc.schema = config_.schema.empty() ? std::vector<std::string>(join.schema().begin(), join.schema().end()) : config_.schema;
  pc.client_name = config_.name;
  pc.client.ca_file = join.ca_file();
  pc.client.verify_peer = !join.insecure();
  if (!adopted_loop_) adopted_loop_ = std::make_shared<net::EventLoop>(1);
  pc.loop = adopted_loop_;
  syncer_ = actors::spawn_peer_syncer(system_, worker, pc);
  online_ = true;
  return syncer_;
}

Status Node::lead_or_join(const Status& first) {
  const auto deadline = std::chrono::steady_clock::now() + config_.join_within;
  Status led = first;
  for (bool again = false;; again = true) {
    if (again) {
      led = lead();
      if (led.code() != StatusCode::unavailable) return led;
    }
    Status joined = join();
    if (joined.code() != StatusCode::unavailable) return joined;
    if (stopping_) return Status::Unavailable("the node is stopping");
    if (std::chrono::steady_clock::now() >= deadline)
      return Status::Unavailable(led.message() + "; and its leader did not answer on " + node::socket_path(config_.database_path) +
                                 ": " + joined.message());
    std::this_thread::sleep_for(std::chrono::milliseconds(proxy_ ? 5 : 20));
  }
}

Result<std::unique_ptr<Node>> Node::open(caf::actor_system& system, NodeConfig config) {
  std::unique_ptr<Node> n(new Node(system, std::move(config)));
  Status s = n->lead();
  if (s.code() == StatusCode::unavailable) s = n->lead_or_join(s);
  if (!s.ok()) return s;
  return n;
}

void Node::on_lost(const Status& why) {
  if (config_.on_leader_lost) config_.on_leader_lost(why);
  {
    std::lock_guard<std::mutex> lock(mu_);
    lost_ = true;
    lost_why_ = why;
  }
  wake_.notify_all();
}

// The follower's side of an election: its leader died, so it leads or joins whoever took
// the lock. Views keep their handles (the proxy): the proxy queues requests meanwhile.
void Node::takeover_loop() {
  for (;;) {
    Status why;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return lost_ || stopping_; });
      if (stopping_) return;
      lost_ = false;
      why = lost_why_;
    }
    const auto start = std::chrono::steady_clock::now();
    std::unique_ptr<NodeFollower> old;
    {
      std::lock_guard<std::mutex> lock(mu_);
      old = std::move(follower_);
    }
    old.reset();  // joins its reader thread and detaches the proxy
    TakeoverReport report;
    report.status = lead();
    if (report.status.code() == StatusCode::unavailable) report.status = lead_or_join(report.status);
    report.took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
    report.leads = leads_;
    report.leader_pid = leader_pid_;
    if (report.status.ok()) {
      spdlog::info("{}: {}; {} ({} us)", config_.name, why.message(),
                   report.leads ? std::string("this process now leads the node")
                                : "joined the new leader process (pid " + std::to_string(report.leader_pid) + ")",
                   report.took.count());
    } else {
      report.status = Status(report.status.code(), why.message() + "; no process could lead the node again: " + report.status.message());
      spdlog::error("{}: {}", config_.name, report.status.message());
      caf::anon_send(proxy_, dead_atom::value, report.status.message());
    }
    if (config_.on_takeover) config_.on_takeover(report);
    if (!report.status.ok()) return;
  }
}

Node::~Node() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (takeover_.joinable()) takeover_.join();
  // The listener first (its followers see the leader gone), then the actors, newest first.
  leader_.reset();
  if (syncer_) caf::anon_send_exit(syncer_, caf::exit_reason::user_shutdown);
  if (bus_) caf::anon_send_exit(bus_, caf::exit_reason::user_shutdown);
  if (proxy_) {
    // Ended before the connection closes: it writes to the connection until it ends.
    caf::anon_send_exit(proxy_, caf::exit_reason::user_shutdown);
    caf::scoped_actor self{system_};
    self->wait_for(proxy_);
  }
  follower_.reset();
  if (own_worker_) caf::anon_send_exit(own_worker_, caf::exit_reason::user_shutdown);
  if (adopted_loop_) {
    // The adopted syncer's connection lives on this loop: it ends first.
    caf::scoped_actor self{system_};
    if (syncer_) self->wait_for(syncer_);
    adopted_loop_->stop();
  }
}

int64_t Node::leader_pid() const { return leader_pid_; }

bool Node::online() const { return online_; }

Result<ui_view_actor> Node::spawn_view(const std::string& name, std::function<void(const view::ViewChange&)> on_change) {
  UiViewConfig vc;
  // Mutation ids start with the view's name: unique across the node's processes.
  vc.name = name + "@" + std::to_string(::getpid());
  vc.database_path = config_.database_path;
  vc.journal = journal_;
  vc.worker = worker_;
  vc.bus = bus_;
  vc.on_change = std::move(on_change);
  return spawn_ui_view(system_, vc);
}

Result<node::SyncWaitResponse> Node::sync_wait(node::SyncWaitRequest req, std::chrono::milliseconds within) {
  req.set_timeout_ms(within.count());
  caf::scoped_actor self{system_};
  Result<node::SyncWaitResponse> out = Status::Unavailable("no answer");
  auto render = [&](const caf::error& e) -> std::string {
    if (e == caf::sec::request_timeout) return "request_timeout";
    if (e.context().match_elements<std::string>()) return e.context().get_as<std::string>(0);
    return system_.render(e);
  };
  actors::peer_syncer_actor syncer;
  bool leads = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leads = leads_;
    syncer = syncer_;
  }
  if (proxy_ && !leads) {
    // The leader's own request times out first and says why; this bound only covers a
    // leader that stopped answering altogether.
    self->request(proxy_, within + std::chrono::seconds(5), req)
        .receive([&](node::SyncWaitResponse& r) { out = std::move(r); },
                 [&](caf::error& e) { out = Status::Unavailable(render(e)); });
    return out;
  }
  if (!syncer) return Status::Unavailable("the node is not connected to a server");
  node::SyncWaitResponse r;
  switch (req.kind()) {
    case node::SyncWaitRequest::ACKED:
      self->request(syncer, within, actors::wait_acked_atom::value, req.version())
          .receive([&](int64_t acked) { r.set_acked(acked), out = r; }, [&](caf::error& e) { out = Status::Unavailable(render(e)); });
      break;
    case node::SyncWaitRequest::CAUGHT_UP:
      self->request(syncer, within, actors::caught_up_atom::value)
          .receive([&](int64_t local, int64_t cursor) { r.set_acked(local), r.set_cursor(cursor), out = r; },
                   [&](caf::error& e) { out = Status::Unavailable(render(e)); });
      break;
    default:
      self->request(syncer, within, actors::last_error_atom::value)
          .receive([&](std::string& why) { r.mutable_error()->set_message(why), out = r; },
                   [&](caf::error& e) { out = Status::Unavailable(render(e)); });
  }
  return out;
}

Result<int64_t> Node::wait_acked(int64_t version, std::chrono::milliseconds within) {
  node::SyncWaitRequest req;
  req.set_kind(node::SyncWaitRequest::ACKED);
  req.set_version(version);
  TANDEM_ASSIGN_OR_RETURN(auto r, sync_wait(req, within));
  return r.acked();
}

Result<std::pair<int64_t, int64_t>> Node::caught_up(std::chrono::milliseconds within) {
  node::SyncWaitRequest req;
  req.set_kind(node::SyncWaitRequest::CAUGHT_UP);
  TANDEM_ASSIGN_OR_RETURN(auto r, sync_wait(req, within));
  return std::make_pair(r.acked(), r.cursor());
}

void Node::interrupt() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (syncer_) caf::anon_send_exit(syncer_, caf::exit_reason::user_shutdown);
  }
  wake_.notify_all();
  if (proxy_) caf::anon_send(proxy_, dead_atom::value, std::string("the node was interrupted"));
}

std::string Node::last_sync_error() {
  node::SyncWaitRequest req;
  req.set_kind(node::SyncWaitRequest::LAST_ERROR);
  auto r = sync_wait(req, std::chrono::seconds(1));
  return r.ok() ? r->error().message() : std::string();
}

}  // namespace tandem
