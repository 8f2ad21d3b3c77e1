#include "actors/node_leader.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cstring>

#include <caf/all.hpp>

#include "actors/node_proxy.hpp"
#include "proto/node.pb.h"
#include "runtime/node/wire.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/store/inspect.hpp"

namespace tandem {

// A follower's socket, shared by its reader thread and its link actor: closed when both are
// done with it, so a descriptor number is never reused under a writer.
struct NodeLeader::Connection {
  int fd = -1;
  std::thread reader;
  std::atomic<bool> done{false};
  ~Connection() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

struct link_state {
  std::shared_ptr<void> keep;  // the Connection (its descriptor lives while the link does)
  int fd = -1;
  std::string name;
  db_worker_actor worker;
  tab_bus_actor bus;
  std::shared_ptr<NodeLeader::SyncState> sync;
  std::chrono::milliseconds timeout{60000};
  bool broken = false;
};

using link_pointer = caf::stateful_actor<link_state>*;

void write(link_pointer self, const node::Envelope& e) {
  auto& st = self->state;
  if (st.broken) return;
  Status s = node::write_frame(st.fd, e);
  if (!s.ok()) {
    // The reader thread sees the same failure and ends the link; stop writing meanwhile.
    st.broken = true;
    spdlog::info("{}: follower connection lost: {}", st.name, s.message());
    ::shutdown(st.fd, SHUT_RDWR);
  }
}

node::Envelope failed(uint64_t id, const Status& why) {
  node::Envelope e;
  e.set_id(id);
  to_proto(why, e.mutable_failed());
  return e;
}

// Forwards one db_worker request; the answer goes back under the same id.
template <class Request, class Response>
void forward(link_pointer self, uint64_t id, const Request& req, Response* (node::Envelope::*body)()) {
  self->request(self->state.worker, self->state.timeout, req)
      .then(
          [self, id, body](Response& r) {
            node::Envelope e;
            e.set_id(id);
            *(e.*body)() = std::move(r);
            write(self, e);
          },
          [self, id](caf::error& err) { write(self, failed(id, Status::Unavailable("db_worker: " + caf::to_string(err)))); });
}

actors::peer_syncer_actor current_syncer(const NodeLeader::SyncState& sync) {
  std::lock_guard<std::mutex> lock(sync.mu);
  return sync.syncer;
}

void sync_wait(link_pointer self, uint64_t id, const node::SyncWaitRequest& req) {
  ask_syncer(self, current_syncer(*self->state.sync), req, [self, id](Result<node::SyncWaitResponse> r) {
    if (!r.ok()) return write(self, failed(id, r.status()));
    node::Envelope e;
    e.set_id(id);
    *e.mutable_sync_wait_response() = std::move(*r);
    write(self, e);
  });
}

void dispatch(link_pointer self, node::Envelope& e) {
  const uint64_t id = e.id();
  switch (e.body_case()) {
    case node::Envelope::kWrite: return forward(self, id, e.write(), &node::Envelope::mutable_write_response);
    case node::Envelope::kQuery: return forward(self, id, e.query(), &node::Envelope::mutable_query_response);
    case node::Envelope::kChangesSince: return forward(self, id, e.changes_since(), &node::Envelope::mutable_changes_since_response);
    case node::Envelope::kMerge: return forward(self, id, e.merge(), &node::Envelope::mutable_merge_response);
    case node::Envelope::kPeerAck: return forward(self, id, e.peer_ack(), &node::Envelope::mutable_peer_status_response);
    case node::Envelope::kPeerStatus: return forward(self, id, e.peer_status(), &node::Envelope::mutable_peer_status_response);
    case node::Envelope::kPeers: return forward(self, id, e.peers(), &node::Envelope::mutable_peers_response);
    case node::Envelope::kStatus: return forward(self, id, e.status(), &node::Envelope::mutable_status_response);
    case node::Envelope::kBind: return forward(self, id, e.bind(), &node::Envelope::mutable_bind_response);
    case node::Envelope::kNewSite: return forward(self, id, e.new_site(), &node::Envelope::mutable_new_site_response);
    case node::Envelope::kPending: return self->send(self->state.bus, e.pending());
    case node::Envelope::kSettlement: return self->send(self->state.bus, e.settlement());
    case node::Envelope::kSyncWait: return sync_wait(self, id, e.sync_wait());
    default:
      spdlog::warn("{}: unexpected frame (body {}) from the follower", self->state.name, static_cast<int>(e.body_case()));
      if (id != 0) write(self, failed(id, Status::InvalidArgument("the leader does not serve this request")));
  }
}

caf::behavior link(link_pointer self, std::shared_ptr<void> keep, int fd, NodeLeaderConfig config, std::shared_ptr<NodeLeader::SyncState> sync,
                   std::string name) {
  auto& st = self->state;
  st.keep = std::move(keep);
  st.fd = fd;
  st.name = std::move(name);
  st.worker = config.worker;
  st.bus = config.bus;
  st.sync = std::move(sync);
  st.timeout = config.request_timeout;
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& m) -> caf::result<caf::message> {
    spdlog::warn("{}: dropped an unexpected message {}", self->state.name, caf::to_string(m.copy_content_to_message()));
    return caf::make_error(caf::sec::unexpected_message);
  });
  self->set_error_handler([self](caf::error& err) { spdlog::warn("{}: {}", self->state.name, caf::to_string(err)); });
  worker::SubscribeRequest sub;
  sub.set_versions(true);
  const bool online = static_cast<bool>(current_syncer(*st.sync));
  self->request(st.worker, std::chrono::seconds(30), sub)
      .then(
          [self, online](const worker::SubscribeResponse& r) {
            node::Envelope welcome;
            welcome.mutable_welcome()->set_db_version(r.db_version());
            welcome.mutable_welcome()->set_online(online);
            write(self, welcome);
            tab::RegisterView reg;
            reg.set_name(self->state.name);
            self->send(self->state.bus, reg);
            spdlog::info("{}: follower admitted at db_version {}", self->state.name, r.db_version());
          },
          [self](caf::error& err) {
            node::Envelope welcome;
            to_proto(Status::Unavailable("the leader's db_worker did not answer: " + caf::to_string(err)), welcome.mutable_welcome()->mutable_error());
            write(self, welcome);
            ::shutdown(self->state.fd, SHUT_RDWR);
            self->quit();
          });
  return {
      [self](node::Envelope& e) { dispatch(self, e); },
      [self](const change::RowDeltaBatch& batch) {
        // The bus forwards the worker's deltas too: only the worker's own copy is written,
        // so deltas and answers keep the worker's order.
        if (caf::actor_cast<caf::actor_addr>(self->current_sender()) != self->state.worker.address()) return;
        node::Envelope e;
        *e.mutable_deltas() = batch;
        write(self, e);
      },
      [self](const tab::PendingMutation& p) {
        node::Envelope e;
        *e.mutable_pending() = p;
        write(self, e);
      },
      [self](const tab::Settlement& s) {
        node::Envelope e;
        *e.mutable_settlement() = s;
        write(self, e);
      },
  };
}

}  // namespace

Result<std::unique_ptr<NodeLeader>> NodeLeader::start(caf::actor_system& system, NodeLeaderConfig config) {
  if (config.secret.empty()) return Status::InvalidArgument("node leader needs the node secret");
  TANDEM_ASSIGN_OR_RETURN(int fd, node::listen_unix(node::socket_path(config.database_path)));
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    ::close(fd);
    return Status::Internal("pipe: " + std::string(std::strerror(errno)));
  }
  std::unique_ptr<NodeLeader> leader(new NodeLeader(system, std::move(config), fd, pipefd[0], pipefd[1]));
  leader->acceptor_ = std::thread([l = leader.get()] { l->accept_loop(); });
  return leader;
}

NodeLeader::NodeLeader(caf::actor_system& system, NodeLeaderConfig config, int listen_fd, int wake_read, int wake_write)
    : system_(system),
      config_(std::move(config)),
      listen_fd_(listen_fd),
      wake_read_(wake_read),
      wake_write_(wake_write),
      sync_(std::make_shared<SyncState>()) {
  sync_->server = config_.server;
  sync_->user = config_.user;
  sync_->syncer = config_.syncer;
}

NodeLeader::~NodeLeader() {
  stopping_ = true;
  const char b = 1;
  if (::write(wake_write_, &b, 1) != 1) spdlog::warn("{}: cannot wake the accept thread", config_.name);
  if (acceptor_.joinable()) acceptor_.join();
  // A follower that connects from now on finds no listener; then end every connection.
  ::unlink(node::socket_path(config_.database_path).c_str());
  ::close(listen_fd_);
  std::vector<std::shared_ptr<Connection>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    all.swap(connections_);
  }
  for (auto& c : all) ::shutdown(c->fd, SHUT_RDWR);
  for (auto& c : all)
    if (c->reader.joinable()) c->reader.join();
  ::close(wake_read_);
  ::close(wake_write_);
}

void NodeLeader::reap_locked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done) {
      if ((*it)->reader.joinable()) (*it)->reader.join();
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void NodeLeader::accept_loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("{}: poll: {}", config_.name, std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0 || stopping_) return;
    auto fd = node::accept_unix(listen_fd_);
    if (!fd.ok()) {
      spdlog::warn("{}: {}", config_.name, fd.status().message());
      continue;
    }
    auto conn = std::make_shared<Connection>();
    conn->fd = *fd;
    std::lock_guard<std::mutex> lock(mu_);
    reap_locked();
    connections_.push_back(conn);
    conn->reader = std::thread([this, conn] { serve(conn); });
  }
}

// Checks a Join against the node's sync as it stands, and adopts the follower's server when
// the node runs offline; one admission at a time, so two online followers cannot both be
// adopted.
Status NodeLeader::admit(const node::Join& join, const std::string& nonce, uid_t peer) {
  std::lock_guard<std::mutex> lock(sync_->mu);
  Status s = node::check_join(config_.secret, nonce, join, config_.schema, ::geteuid(), peer, sync_->server, sync_->user);
  // A leader opened without a schema (a local query, a watch of an existing file) has the
  // file's: a follower's must declare the tables as the file holds them.
  if (s.ok() && config_.schema.empty() && join.schema_size() > 0)
    s = check_schema_against_file(config_.database_path, {join.schema().begin(), join.schema().end()});
  if (!s.ok() || sync_->syncer || join.server().empty() || join.token().empty() || !config_.adopt_sync) return s;
  auto syncer = config_.adopt_sync(join);
  if (!syncer.ok()) {
    // The follower still joins; the node stays offline and says why.
    spdlog::warn("{}: could not sync the node with {} named by a follower: {}", config_.name, join.server(), syncer.status().message());
    return Status::Ok();
  }
  spdlog::info("{}: the node ran offline; it now syncs with {}, named by follower {} (pid {})", config_.name, join.server(), join.name(),
               join.pid());
  sync_->server = join.server();
  sync_->user = join.user();
  sync_->syncer = std::move(*syncer);
  return Status::Ok();
}

// The connection's thread: the handshake, then every frame to the link actor, in order.
void NodeLeader::serve(std::shared_ptr<Connection> conn) {
  node::FrameReader reader;
  const std::string nonce = node::random_bytes(32);
  Status s = node::write_frame(conn->fd, node::make_hello(nonce));
  Result<node::Envelope> join = s.ok() ? node::read_frame(conn->fd, reader, std::chrono::milliseconds(5000)) : Result<node::Envelope>(s);
  std::string who = "?";
  if (join.ok()) {
    who = join->join().name() + " (pid " + std::to_string(join->join().pid()) + ")";
    auto uid = node::peer_uid(conn->fd);
    if (!join->has_join()) s = Status::InvalidArgument("the first frame of a follower must be a join");
    else if (!uid.ok()) s = uid.status();
    else s = admit(join->join(), nonce, *uid);
  } else {
    s = join.status();
  }
  if (!s.ok()) {
    spdlog::warn("{}: refused follower {}: {}", config_.name, who, s.to_string());
    node::Envelope refusal;
    to_proto(s, refusal.mutable_welcome()->mutable_error());
    (void)node::write_frame(conn->fd, refusal);
    ::shutdown(conn->fd, SHUT_RDWR);
    conn->done = true;
    return;
  }
  // Flow control: the link writes with this bound, so a follower that stopped reading ends
  // its link instead of growing the link's mailbox without limit.
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(config_.follower_write_timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((config_.follower_write_timeout.count() % 1000) * 1000);
  if (::setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    spdlog::warn("{}: cannot bound writes to follower {}: {}", config_.name, who, std::strerror(errno));
  ++followers_;
  auto actor = system_.spawn<caf::detached>(link, std::static_pointer_cast<void>(conn), conn->fd, config_, sync_, config_.name + "/" + who);
  for (;;) {
    auto e = node::read_frame(conn->fd, reader, std::nullopt);
    if (!e.ok()) {
      spdlog::info("{}: follower {} left: {}", config_.name, who, e.status().message());
      break;
    }
    caf::anon_send(actor, std::move(*e));
  }
  caf::anon_send_exit(actor, caf::exit_reason::user_shutdown);
  --followers_;
  conn->done = true;
}

void add_node_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<node::Envelope>("tandem.node.Envelope");
  cfg.add_message_type<node::SyncWaitRequest>("tandem.node.SyncWaitRequest");
  cfg.add_message_type<node::SyncWaitResponse>("tandem.node.SyncWaitResponse");
  cfg.add_message_type<tab_bus_actor>("tandem.actors.tab_bus_actor");
  cfg.add_message_type<actors::peer_syncer_actor>("tandem.actors.peer_syncer_actor");
}

}  // namespace tandem
