#include "actors/node.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <caf/all.hpp>
#include <thread>

#include "actors/node_follower.hpp"
#include "actors/node_leader.hpp"
#include "runtime/common/process_lock.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/node/wire.hpp"

namespace tandem {

Node::Node(caf::actor_system& system, NodeConfig config)
    : system_(system), config_(std::move(config)), journal_(std::make_shared<ivm::DeltaJournal>()) {}

Result<std::unique_ptr<Node>> Node::open(caf::actor_system& system, NodeConfig config) {
  std::unique_ptr<Node> n(new Node(system, std::move(config)));
  const auto& cfg = n->config_;
  const auto deadline = std::chrono::steady_clock::now() + cfg.join_within;
  for (;;) {
    DbWorkerConfig wc;
    wc.path = cfg.database_path;
    wc.schema = cfg.schema;
    wc.name = cfg.name;
    wc.journal = n->journal_;
    auto worker = spawn_db_worker(system, wc);
    if (worker.ok()) {
      n->worker_ = *worker;
      n->bus_ = spawn_tab_bus(system, n->worker_, cfg.name + "/tab_bus");
      if (cfg.sync) n->syncer_ = actors::spawn_peer_syncer(system, n->worker_, *cfg.sync);
      if (!database_lock_path(cfg.database_path).empty()) {
        std::string why;
        auto secret = node::ensure_secret(node::secret_path(cfg.database_path));
        if (secret.ok()) {
          NodeLeaderConfig lc;
          lc.database_path = cfg.database_path;
          lc.schema = cfg.schema;
          lc.secret = *secret;
          lc.server = cfg.sync ? cfg.sync->url : std::string();
          lc.worker = n->worker_;
          lc.bus = n->bus_;
          lc.syncer = n->syncer_;
          lc.name = cfg.name + "/leader";
          auto leader = NodeLeader::start(system, lc);
          if (leader.ok()) return (n->leader_ = std::move(*leader), std::move(n));
          why = leader.status().to_string();
        } else {
          why = secret.status().to_string();
        }
        // This process holds the database: without a node socket it would lock everyone
        // else out, which is what the caller must hear.
        return Status(secret.ok() ? StatusCode::internal : secret.status().code(), "cannot serve other processes: " + why);
      }
      return n;  // in memory: no other process can open it
    }
    if (worker.status().code() != StatusCode::unavailable) return worker.status();
    NodeFollowerConfig fc;
    fc.database_path = cfg.database_path;
    fc.schema = cfg.schema;
    fc.name = cfg.name;
    fc.server = cfg.sync ? cfg.sync->url : std::string();
    fc.journal = n->journal_;
    fc.on_leader_lost = cfg.on_leader_lost;
    auto follower = NodeFollower::join(system, fc);
    if (follower.ok()) {
      n->follower_ = std::move(*follower);
      n->worker_ = n->follower_->worker();
      n->bus_ = spawn_tab_bus(system, n->worker_, cfg.name + "/tab_bus");
      n->follower_->attach_bus(n->bus_);
      spdlog::info("{}: joined the node's leader process (pid {}) at db_version {}", cfg.name, n->follower_->leader_pid(),
                   n->follower_->joined_at());
      return n;
    }
    if (follower.status().code() != StatusCode::unavailable) return follower.status();
    if (std::chrono::steady_clock::now() >= deadline)
      return Status::Unavailable(worker.status().message() + "; and its leader did not answer on " +
                                 node::socket_path(cfg.database_path) + ": " + follower.status().message());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Node::~Node() {
  // Followers first (they see the leader gone), then the actors, newest first.
  const bool owns_worker = follower_ == nullptr;
  leader_.reset();
  if (syncer_) caf::anon_send_exit(syncer_, caf::exit_reason::user_shutdown);
  if (bus_) caf::anon_send_exit(bus_, caf::exit_reason::user_shutdown);
  follower_.reset();  // stops the proxy
  if (worker_ && owns_worker) caf::anon_send_exit(worker_, caf::exit_reason::user_shutdown);
}

int64_t Node::leader_pid() const { return follower_ ? follower_->leader_pid() : static_cast<int64_t>(::getpid()); }

bool Node::online() const { return follower_ ? follower_->leader_online() : static_cast<bool>(syncer_); }

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
  if (follower_) {
    // The leader's own request times out first and says why; this bound only covers a
    // leader that stopped answering altogether.
    self->request(follower_->proxy(), within + std::chrono::seconds(5), req)
        .receive([&](node::SyncWaitResponse& r) { out = std::move(r); },
                 [&](caf::error& e) { out = Status::Unavailable(render(e)); });
    return out;
  }
  if (!syncer_) return Status::Unavailable("the node is not connected to a server");
  node::SyncWaitResponse r;
  switch (req.kind()) {
    case node::SyncWaitRequest::ACKED:
      self->request(syncer_, within, actors::wait_acked_atom::value, req.version())
          .receive([&](int64_t acked) { r.set_acked(acked), out = r; }, [&](caf::error& e) { out = Status::Unavailable(render(e)); });
      break;
    case node::SyncWaitRequest::CAUGHT_UP:
      self->request(syncer_, within, actors::caught_up_atom::value)
          .receive([&](int64_t local, int64_t cursor) { r.set_acked(local), r.set_cursor(cursor), out = r; },
                   [&](caf::error& e) { out = Status::Unavailable(render(e)); });
      break;
    default:
      self->request(syncer_, within, actors::last_error_atom::value)
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
  if (syncer_) caf::anon_send_exit(syncer_, caf::exit_reason::user_shutdown);
  if (follower_) caf::anon_send_exit(follower_->proxy(), caf::exit_reason::user_shutdown);
}

std::string Node::last_sync_error() {
  node::SyncWaitRequest req;
  req.set_kind(node::SyncWaitRequest::LAST_ERROR);
  auto r = sync_wait(req, std::chrono::seconds(1));
  return r.ok() ? r->error().message() : std::string();
}

}  // namespace tandem
