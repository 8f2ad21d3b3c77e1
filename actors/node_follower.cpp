#include "actors/node_follower.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <caf/all.hpp>
#include <map>

#include "runtime/ivm/journal.hpp"
#include "runtime/node/wire.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem {
namespace {

// The proxy's own message: the leader is gone.
struct leader_lost {
  std::string why;
};

struct proxy_state {
  int fd = -1;
  std::string name;
  uint64_t next_id = 1;
  std::map<uint64_t, std::function<void(node::Envelope&)>> waiting;
  std::vector<delta_subscriber_actor> subscribers;
  std::shared_ptr<ivm::DeltaJournal> journal;
  tab_bus_actor bus;
  std::string lost;  // non-empty once the leader is gone: every request fails with it
};

using proxy_pointer = caf::stateful_actor<proxy_state>*;

caf::error gone_error(const std::string& why) { return caf::make_error(caf::sec::runtime_error, why); }

// Sends a request to the leader; `done` runs with its answer (or a `failed` body).
void send_request(proxy_pointer self, node::Envelope e, std::function<void(node::Envelope&)> done) {
  auto& st = self->state;
  if (!st.lost.empty()) {
    node::Envelope f;
    to_proto(Status::Unavailable(st.lost), f.mutable_failed());
    return done(f);
  }
  const uint64_t id = st.next_id++;
  e.set_id(id);
  st.waiting[id] = std::move(done);
  Status s = node::write_frame(st.fd, e);
  if (!s.ok()) {
    // The reader thread notices too and reports the leader lost; answer this one now.
    auto it = st.waiting.find(id);
    node::Envelope f;
    to_proto(s, f.mutable_failed());
    auto cb = std::move(it->second);
    st.waiting.erase(it);
    cb(f);
  }
}

// A db_worker request of this process, answered from the leader's reply.
template <class Request, class Response>
caf::response_promise forward(proxy_pointer self, const Request& req, void (node::Envelope::*set)(Request*),
                              Response* (node::Envelope::*get)()) {
  auto rp = self->make_response_promise();
  node::Envelope e;
  Request* copy = new Request(req);
  (e.*set)(copy);
  send_request(self, std::move(e), [rp, get](node::Envelope& answer) mutable {
    if (answer.has_failed()) {
      rp.deliver(gone_error(answer.failed().message()));
      return;
    }
    rp.deliver(std::move(*(answer.*get)()));
  });
  return rp;
}

void on_frame(proxy_pointer self, node::Envelope& e) {
  auto& st = self->state;
  switch (e.body_case()) {
    case node::Envelope::kDeltas:
      // Already in the journal (the reader thread appended it): tell the subscribers.
      if (e.deltas().deltas_size() == 0) return;
      for (const auto& s : st.subscribers) self->send(s, e.deltas());
      return;
    case node::Envelope::kPending:
      if (st.bus) self->send(st.bus, e.pending());
      return;
    case node::Envelope::kSettlement:
      if (st.bus) self->send(st.bus, e.settlement());
      return;
    default: {
      auto it = st.waiting.find(e.id());
      if (it == st.waiting.end()) {
        spdlog::warn("{}: an answer to no request (id {}) from the leader", st.name, e.id());
        return;
      }
      auto cb = std::move(it->second);
      st.waiting.erase(it);
      cb(e);
    }
  }
}

caf::behavior proxy_behavior(proxy_pointer self, int fd, std::string name, std::shared_ptr<ivm::DeltaJournal> journal) {
  auto& st = self->state;
  st.fd = fd;
  st.name = std::move(name);
  st.journal = std::move(journal);
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& m) -> caf::result<caf::message> {
    spdlog::warn("{}: dropped an unexpected message {}", self->state.name, caf::to_string(m.copy_content_to_message()));
    return caf::make_error(caf::sec::unexpected_message);
  });
  self->set_error_handler([self](caf::error& err) { spdlog::warn("{}: {}", self->state.name, caf::to_string(err)); });
  self->set_down_handler([self](const caf::down_msg& down) {
    auto& subs = self->state.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(), [&](const delta_subscriber_actor& a) { return a.address() == down.source; }), subs.end());
  });
  using E = node::Envelope;
  return {
      [self](const worker::WriteRequest& r) { return forward(self, r, &E::set_allocated_write, &E::mutable_write_response); },
      [self](const worker::QueryRequest& r) { return forward(self, r, &E::set_allocated_query, &E::mutable_query_response); },
      [self](const worker::ChangesSinceRequest& r) {
        return forward(self, r, &E::set_allocated_changes_since, &E::mutable_changes_since_response);
      },
      [self](const worker::MergeRequest& r) { return forward(self, r, &E::set_allocated_merge, &E::mutable_merge_response); },
      [self](const worker::PeerAckRequest& r) { return forward(self, r, &E::set_allocated_peer_ack, &E::mutable_peer_status_response); },
      [self](const worker::PeerStatusRequest& r) {
        return forward(self, r, &E::set_allocated_peer_status, &E::mutable_peer_status_response);
      },
      [self](const worker::PeersRequest& r) { return forward(self, r, &E::set_allocated_peers, &E::mutable_peers_response); },
      [self](const worker::StatusRequest& r) { return forward(self, r, &E::set_allocated_status, &E::mutable_status_response); },
      [self](const worker::BindRequest& r) { return forward(self, r, &E::set_allocated_bind, &E::mutable_bind_response); },
      [self](const worker::NewSiteRequest& r) { return forward(self, r, &E::set_allocated_new_site, &E::mutable_new_site_response); },
      [self](const node::SyncWaitRequest& r) {
        return forward(self, r, &E::set_allocated_sync_wait, &E::mutable_sync_wait_response);
      },
      [self](const worker::SubscribeRequest&) {
        // Batches the reader thread handed over after this point reach the new subscriber;
        // the journal's last version is what it has, at least, been given.
        auto sender = caf::actor_cast<delta_subscriber_actor>(self->current_sender());
        worker::SubscribeResponse out;
        out.set_db_version(self->state.journal->last_version());
        auto& subs = self->state.subscribers;
        if (sender && std::find(subs.begin(), subs.end(), sender) == subs.end()) {
          subs.push_back(sender);
          self->monitor(sender);
        }
        return out;
      },
      [self](const worker::UnsubscribeRequest&) {
        auto sender = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto& subs = self->state.subscribers;
        subs.erase(std::remove_if(subs.begin(), subs.end(), [&](const delta_subscriber_actor& a) { return a.address() == sender; }), subs.end());
      },
      [self](node::Envelope& e) { on_frame(self, e); },
      [self](tab_bus_actor bus) {
        self->state.bus = bus;
        tab::RegisterView reg;
        reg.set_name(self->state.name);
        self->send(bus, reg);
      },
      // From this process's bus: what local views publish goes to the leader's bus. The
      // bus never sends a member its own messages back, so nothing loops.
      [self](const tab::PendingMutation& p) {
        node::Envelope e;
        *e.mutable_pending() = p;
        if (self->state.lost.empty()) (void)node::write_frame(self->state.fd, e);
      },
      [self](const tab::Settlement& s) {
        node::Envelope e;
        *e.mutable_settlement() = s;
        if (self->state.lost.empty()) (void)node::write_frame(self->state.fd, e);
      },
      [](const change::RowDeltaBatch&) {
        // The bus's copy of deltas this proxy itself handed to it: nothing to do.
      },
      [self](const std::string& lost) {
        self->state.lost = lost;
        auto waiting = std::move(self->state.waiting);
        self->state.waiting.clear();
        for (auto& [id, cb] : waiting) {
          node::Envelope f;
          to_proto(Status::Unavailable(lost), f.mutable_failed());
          cb(f);
        }
      },
  };
}

}  // namespace

Result<std::unique_ptr<NodeFollower>> NodeFollower::join(caf::actor_system& system, NodeFollowerConfig config) {
  if (!config.journal) return Status::InvalidArgument("a node follower needs a journal");
  const std::string secret_file = node::secret_path(config.database_path);
  TANDEM_ASSIGN_OR_RETURN(int fd, node::connect_unix(node::socket_path(config.database_path)));
  std::unique_ptr<NodeFollower> f(new NodeFollower());
  f->fd_ = fd;
  f->system_ = &system;
  f->config_ = std::move(config);
  auto frames = std::make_shared<node::FrameReader>();
  f->frames_ = frames;
  auto fail = [&](Status s) -> Result<std::unique_ptr<NodeFollower>> {
    ::close(f->fd_);
    f->fd_ = -1;
    return s;
  };
  auto hello = node::read_frame(fd, *frames, f->config_.handshake_timeout);
  if (!hello.ok()) return fail(hello.status());
  if (!hello->has_hello()) return fail(Status::Unavailable("the node socket's first frame is not a hello"));
  f->leader_pid_ = hello->hello().leader_pid();
  auto secret = node::read_secret(secret_file);
  if (!secret.ok()) return fail(secret.status().with_context("cannot join the node's leader process (pid " + std::to_string(f->leader_pid_) + ")"));
  Status sent = node::write_frame(fd, node::make_join(*secret, hello->hello(), f->config_.schema, f->config_.name, f->config_.server));
  if (!sent.ok()) return fail(sent);
  auto welcome = node::read_frame(fd, *frames, f->config_.handshake_timeout + std::chrono::seconds(30));
  if (!welcome.ok()) return fail(welcome.status());
  if (!welcome->has_welcome()) return fail(Status::Unavailable("the leader answered the join with something else"));
  Status accepted = from_proto(welcome->welcome().error());
  if (!accepted.ok())
    return fail(Status(accepted.code(), "the node's leader process (pid " + std::to_string(f->leader_pid_) + ") refused this process: " + accepted.message()));
  f->online_ = welcome->welcome().online();
  f->joined_at_ = welcome->welcome().db_version();
  f->config_.journal->note_version(f->joined_at_);
  f->proxy_ = system.spawn<caf::detached>(proxy_behavior, fd, f->config_.name + "/proxy", f->config_.journal);
  f->reader_ = std::thread([raw = f.get()] { raw->read_loop(); });
  return f;
}

void NodeFollower::read_loop() {
  auto& frames = *std::static_pointer_cast<node::FrameReader>(frames_);
  Status why;
  for (;;) {
    auto e = node::read_frame(fd_, frames, std::nullopt);
    if (!e.ok()) {
      why = e.status();
      break;
    }
    if (e->has_deltas()) {
      // Journal first (docs/ivm.md): the answer to the write that made this commit follows it.
      const auto& b = e->deltas();
      if (b.deltas_size() == 0) {
        config_.journal->note_version(b.db_version());
      } else {
        Status s = config_.journal->append(std::make_shared<const DeltaBatch>(from_proto(b)));
        if (!s.ok()) spdlog::error("{}: journal refused version {}: {}", config_.name, b.db_version(), s.to_string());
      }
    }
    caf::anon_send(proxy_, std::move(*e));
  }
  const std::string lost = "the node's leader process (pid " + std::to_string(leader_pid_) + ") is gone: " + why.message();
  caf::anon_send(proxy_, lost);
  if (config_.on_leader_lost && !closing_) config_.on_leader_lost(Status::Unavailable(lost));
}

NodeFollower::~NodeFollower() {
  closing_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
  if (proxy_) caf::anon_send_exit(proxy_, caf::exit_reason::user_shutdown);
  // The proxy may still write to fd_ until it handles the exit: close only after it ended.
  if (proxy_) {
    caf::scoped_actor self{*system_};
    self->wait_for(proxy_);
  }
  if (fd_ >= 0) ::close(fd_);
}

db_worker_actor NodeFollower::worker() const { return caf::actor_cast<db_worker_actor>(proxy_); }

void NodeFollower::attach_bus(tab_bus_actor bus) { caf::anon_send(proxy_, std::move(bus)); }

}  // namespace tandem
