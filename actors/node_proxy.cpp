#include "actors/node_proxy.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <caf/all.hpp>
#include <cstdio>
#include <map>
#include <random>
#include <type_traits>

#include "actors/tab_bus.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/node/wire.hpp"
#include "runtime/sqlite/proto_value.hpp"

namespace tandem {
namespace {

struct proxy_state {
  std::string name;
  std::shared_ptr<ivm::DeltaJournal> journal;
  int fd = -1;                    // remote: the follower connection (owned by NodeFollower)
  db_worker_actor local;          // local: this process's own db_worker
  actors::peer_syncer_actor syncer;
  std::string dead;               // non-empty: no leader will come, every request fails with it
  uint64_t next_id = 1;
  std::string key_prefix;         // request keys of this proxy's writes: random, then the request id
  // Remote requests sent and not answered, by id. `retry` (when set) sends the request again
  // at the next leader if this one dies first: reads and waits, and writes, which carry a
  // request key and so run exactly once (Store::write).
  struct Waiting {
    std::function<void(node::Envelope&)> done;
    std::function<void()> retry;
    bool write = false;  // a keyed write (for the log)
  };
  std::map<uint64_t, Waiting> waiting;
  // Requests that came between leaders, replayed at the next attachment.
  std::vector<std::function<void()>> queued;
  std::vector<delta_subscriber_actor> subscribers;
  tab_bus_actor bus;
  // Mutations other processes published through this proxy and did not settle yet, with
  // the version of the commit that carried them once streamed here (0: not seen).
  std::map<std::string, int64_t> foreign;
};

using proxy_pointer = caf::stateful_actor<proxy_state>*;

bool between_leaders(proxy_pointer self) {
  auto& st = self->state;
  return st.fd < 0 && !st.local && st.dead.empty();
}

node::Envelope failed_envelope(const Status& s) {
  node::Envelope f;
  to_proto(s, f.mutable_failed());
  return f;
}

// Sends a request over the connection; `done` runs with the answer (or a `failed` body).
// false: the frame could not be written, so the leader never read it (a partial frame is
// never handled): the connection is treated as gone and the caller queues the request for
// the next leader (the reader thread reports the loss and the node takes over).
bool send_remote(proxy_pointer self, node::Envelope e, std::function<void(node::Envelope&)> done, std::function<void()> retry,
                 bool write = false) {
  auto& st = self->state;
  const uint64_t id = st.next_id++;
  e.set_id(id);
  Status s = node::write_frame(st.fd, e);
  if (!s.ok()) {
    spdlog::info("{}: the leader connection broke ({}); the request waits for the next leader", st.name, s.message());
    ::shutdown(st.fd, SHUT_RDWR);  // the reader thread ends too, and the node finds a leader again
    st.fd = -1;
    return false;
  }
  st.waiting[id] = {std::move(done), std::move(retry), write};
  return true;
}

// Which requests may be sent again to the next leader when the one they went to died without
// answering: those that change nothing, and writes (keyed below). A merge, an ack, a binding
// or a new site id are not: their outcome at the dead leader is unknown.
template <class Request>
constexpr bool retry_safe = std::is_same_v<Request, worker::WriteRequest> || std::is_same_v<Request, worker::QueryRequest> ||
                            std::is_same_v<Request, worker::ChangesSinceRequest> || std::is_same_v<Request, worker::PeerStatusRequest> ||
                            std::is_same_v<Request, worker::PeersRequest> || std::is_same_v<Request, worker::StatusRequest>;

// A write going to a leader process gets a key (unless its sender named one), so that sent
// again after that leader's death it runs exactly once.
template <class Request>
void key_request(proxy_pointer self, Request& req, uint64_t id) {
  if constexpr (std::is_same_v<Request, worker::WriteRequest>)
    if (req.request_key().empty()) req.set_request_key(self->state.key_prefix + std::to_string(id));
}

// One db_worker request of this process, routed to whatever stands behind the proxy now.
template <class Request, class Response>
void route(proxy_pointer self, const Request& req, void (node::Envelope::*set)(Request*), Response* (node::Envelope::*get)(),
           caf::response_promise rp) {
  auto& st = self->state;
  if (!st.dead.empty()) return rp.deliver(caf::make_error(caf::sec::runtime_error, st.dead));
  if (between_leaders(self)) {
    st.queued.push_back([self, req, set, get, rp]() mutable { route(self, req, set, get, rp); });
    return;
  }
  if (st.local) {
    self->request(st.local, std::chrono::seconds(60), req)
        .then([rp](Response& r) mutable { rp.deliver(std::move(r)); }, [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
    return;
  }
  Request keyed = req;
  key_request(self, keyed, st.next_id);
  std::function<void()> retry;
  if constexpr (retry_safe<Request>) retry = [self, keyed, set, get, rp]() mutable { route(self, keyed, set, get, rp); };
  node::Envelope e;
  (e.*set)(new Request(keyed));
  const bool sent = send_remote(
      self, std::move(e),
      [rp, get](node::Envelope& answer) mutable {
        if (answer.has_failed()) return rp.deliver(caf::make_error(caf::sec::runtime_error, answer.failed().message()));
        rp.deliver(std::move(*(answer.*get)()));
      },
      std::move(retry), std::is_same_v<Request, worker::WriteRequest>);
  if (!sent) route(self, keyed, set, get, rp);  // between leaders now: queued, with its key
}

template <class Request, class Response>
caf::response_promise forward(proxy_pointer self, const Request& req, void (node::Envelope::*set)(Request*),
                              Response* (node::Envelope::*get)()) {
  auto rp = self->make_response_promise();
  route(self, req, set, get, rp);
  return rp;
}

void sync_wait(proxy_pointer self, const node::SyncWaitRequest& req, caf::response_promise rp) {
  auto& st = self->state;
  if (!st.dead.empty()) return rp.deliver(caf::make_error(caf::sec::runtime_error, st.dead));
  if (between_leaders(self)) {
    st.queued.push_back([self, req, rp]() mutable { sync_wait(self, req, rp); });
    return;
  }
  if (st.local) {
    ask_syncer(self, st.syncer, req, [rp](Result<node::SyncWaitResponse> r) mutable {
      if (r.ok()) return rp.deliver(std::move(*r));
      rp.deliver(caf::make_error(caf::sec::runtime_error, r.status().message()));
    });
    return;
  }
  node::Envelope e;
  *e.mutable_sync_wait() = req;
  // A wait in progress at the leader's death waits on at the next leader's syncer.
  const bool sent = send_remote(
      self, std::move(e),
      [rp](node::Envelope& answer) mutable {
        if (answer.has_failed()) return rp.deliver(caf::make_error(caf::sec::runtime_error, answer.failed().message()));
        rp.deliver(std::move(*answer.mutable_sync_wait_response()));
      },
      [self, req, rp]() mutable { sync_wait(self, req, rp); });
  if (!sent) sync_wait(self, req, rp);  // between leaders now: queued
}

void to_subscribers(proxy_pointer self, const change::RowDeltaBatch& batch) {
  for (const auto& s : self->state.subscribers) self->send(s, batch);
}

// A new leader stands behind the proxy: wake the views (a gap in the journal makes them
// rehydrate), settle what other processes left pending, replay what waited.
void attached(proxy_pointer self) {
  auto& st = self->state;
  change::RowDeltaBatch wake;
  wake.set_db_version(st.journal->last_version());
  to_subscribers(self, wake);
  if (st.bus) {
    for (const auto& [id, version] : st.foreign) {
      tab::Settlement s;
      s.set_mutation_id(id);
      if (version > 0) {
        s.mutable_error()->set_code(change::Error::OK);
        s.set_db_version(version);
      } else {
        to_proto(Status::Unavailable("the node's leader process died before mutation " + id +
                                     " was seen committed; rolled back (the views show what the database holds)"),
                 s.mutable_error());
      }
      spdlog::info("{}: settled mutation {} of another process after the leader changed ({})", st.name, id,
                   version > 0 ? "committed" : "rolled back");
      self->send(st.bus, s);
    }
  }
  st.foreign.clear();
  auto queued = std::move(st.queued);
  st.queued.clear();
  for (auto& f : queued) f();
}

// A frame the follower connection's reader thread handed over (already in the journal).
void on_frame(proxy_pointer self, node::Envelope& e) {
  auto& st = self->state;
  switch (e.body_case()) {
    case node::Envelope::kDeltas:
      if (!e.deltas().mutation_id().empty()) {
        auto it = st.foreign.find(e.deltas().mutation_id());
        if (it != st.foreign.end()) it->second = e.deltas().db_version();
      }
      if (e.deltas().deltas_size() == 0) return;
      to_subscribers(self, e.deltas());
      return;
    case node::Envelope::kPending:
      st.foreign[e.pending().mutation_id()] = 0;
      if (st.bus) self->send(st.bus, e.pending());
      return;
    case node::Envelope::kSettlement:
      st.foreign.erase(e.settlement().mutation_id());
      if (st.bus) self->send(st.bus, e.settlement());
      return;
    default: {
      auto it = st.waiting.find(e.id());
      if (it == st.waiting.end()) {
        spdlog::warn("{}: an answer to no request (id {}) from the leader", st.name, e.id());
        return;
      }
      auto cb = std::move(it->second.done);
      st.waiting.erase(it);
      cb(e);
    }
  }
}

// A pending mutation or settlement of this process for the other processes: written to a
// remote leader, kept for the next one between leaders, nothing to do when this process
// leads (its bus is the node's).
void to_leader(proxy_pointer self, node::Envelope e) {
  if (between_leaders(self)) {
    self->state.queued.push_back([self, e]() mutable { to_leader(self, std::move(e)); });
    return;
  }
  if (self->state.fd < 0) return;
  if (!node::write_frame(self->state.fd, e).ok()) {
    ::shutdown(self->state.fd, SHUT_RDWR);
    self->state.fd = -1;
    to_leader(self, std::move(e));  // between leaders now: kept for the next one
  }
}

// Requests sent to a leader that is gone: those that may be sent again wait for the next
// leader, ahead of the requests made since (a keyed write runs there exactly once: either the
// dead leader committed it and the next one answers the recorded outcome, or it runs now);
// the others fail now (their outcome at the dead leader is unknown).
void fail_waiting(proxy_pointer self, const std::string& why) {
  auto waiting = std::move(self->state.waiting);
  self->state.waiting.clear();
  std::vector<std::function<void()>> again;
  size_t writes = 0;
  for (auto& [id, w] : waiting) {
    if (w.retry) {
      writes += w.write;
      again.push_back(std::move(w.retry));
      continue;
    }
    auto f = failed_envelope(Status::Unavailable(why));
    w.done(f);
  }
  if (!again.empty())
    spdlog::info("{}: {} request(s) in flight at the leader's death, {} of them write(s), wait for the next leader", self->state.name,
                 again.size(), writes);
  auto& queued = self->state.queued;
  queued.insert(queued.begin(), std::make_move_iterator(again.begin()), std::make_move_iterator(again.end()));
}

caf::behavior proxy_behavior(proxy_pointer self, std::string name, std::shared_ptr<ivm::DeltaJournal> journal) {
  self->state.name = std::move(name);
  self->state.journal = std::move(journal);
  // Unique, not secret: std::random_device rather than OpenSSL, whose per-thread generator
  // state on this detached actor's thread LeakSanitizer reports at exit.
  std::random_device rd;
  char prefix[40];
  std::snprintf(prefix, sizeof prefix, "%08x%08x-%d-", rd(), rd(), static_cast<int>(::getpid()));
  self->state.key_prefix = prefix;
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
        auto rp = self->make_response_promise();
        sync_wait(self, r, rp);
        return rp;
      },
      [self](const worker::SubscribeRequest&) {
        // Batches handed over after this point reach the new subscriber; the journal's last
        // version is what it has, at least, been given.
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
      // From this process's bus: what local views publish goes to the leader's bus (remote
      // only: a local leader's bus is this process's). The bus never sends a member its own
      // messages back, so nothing loops.
      [self](const tab::PendingMutation& p) {
        node::Envelope e;
        *e.mutable_pending() = p;
        to_leader(self, std::move(e));
      },
      [self](const tab::Settlement& s) {
        node::Envelope e;
        *e.mutable_settlement() = s;
        to_leader(self, std::move(e));
      },
      [self](const change::RowDeltaBatch& batch) {
        // Local: the worker's commits go on to the subscribers. Anything else is the bus's
        // copy of a batch this proxy handed to it.
        auto& st = self->state;
        if (st.local && caf::actor_cast<caf::actor_addr>(self->current_sender()) == st.local.address()) to_subscribers(self, batch);
      },
      [self](attach_remote_atom, int fd) {
        self->state.fd = fd;
        spdlog::debug("{}: attached to a leader process", self->state.name);
        attached(self);
      },
      [self](attach_local_atom, db_worker_actor worker, actors::peer_syncer_actor syncer) {
        auto rp = self->make_response_promise();
        self->request(worker, std::chrono::seconds(30), worker::SubscribeRequest{})
            .then(
                [self, rp, worker, syncer](const worker::SubscribeResponse&) mutable {
                  self->state.local = worker;
                  self->state.syncer = syncer;
                  spdlog::debug("{}: this process leads", self->state.name);
                  attached(self);
                  rp.deliver(true);
                },
                [self, rp](caf::error& err) mutable {
                  spdlog::error("{}: cannot subscribe to this process's db_worker: {}", self->state.name, caf::to_string(err));
                  rp.deliver(false);
                });
        return rp;
      },
      [self](detach_atom) {
        self->state.fd = -1;
        return true;
      },
      [self](lost_atom, const std::string& why) {
        self->state.fd = -1;
        fail_waiting(self, why);
      },
      [self](dead_atom, const std::string& why) {
        auto& st = self->state;
        st.fd = -1;
        st.dead = why;
        fail_waiting(self, why);
        auto queued = std::move(st.queued);
        st.queued.clear();
        for (auto& f : queued) f();  // each fails with `dead`
      },
  };
}

}  // namespace

caf::actor spawn_node_proxy(caf::actor_system& system, std::string name, std::shared_ptr<ivm::DeltaJournal> journal) {
  return system.spawn<caf::detached>(proxy_behavior, std::move(name), std::move(journal));
}

void ask_syncer(caf::event_based_actor* self, const actors::peer_syncer_actor& syncer, const node::SyncWaitRequest& req,
                std::function<void(Result<node::SyncWaitResponse>)> done) {
  if (!syncer) {
    done(Status::Unavailable("the node's leader process (pid " + std::to_string(::getpid()) + ") is not connected to a server"));
    return;
  }
  auto within = std::chrono::milliseconds(std::max<int64_t>(1, req.timeout_ms()));
  // A timeout reads "request_timeout": the caller then asks what the connection last hit.
  auto fail = [self, done](caf::error& err) {
    std::string text = err.context().match_elements<std::string>() ? err.context().get_as<std::string>(0) : self->system().render(err);
    if (err == caf::sec::request_timeout) text = "request_timeout";
    done(Status::Unavailable(text));
  };
  auto answer = [done](int64_t acked, int64_t cursor) {
    node::SyncWaitResponse r;
    r.set_acked(acked);
    r.set_cursor(cursor);
    done(std::move(r));
  };
  if (req.kind() == node::SyncWaitRequest::ACKED)
    self->request(syncer, within, actors::wait_acked_atom::value, req.version()).then([answer](int64_t acked) { answer(acked, 0); }, fail);
  else if (req.kind() == node::SyncWaitRequest::CAUGHT_UP)
    self->request(syncer, within, actors::caught_up_atom::value)
        .then([answer](int64_t local, int64_t cursor) { answer(local, cursor); }, fail);
  else
    self->request(syncer, within, actors::last_error_atom::value).then([done](std::string& why) {
      node::SyncWaitResponse r;
      to_proto(Status::Ok(), r.mutable_error());
      r.mutable_error()->set_message(why);
      done(std::move(r));
    }, fail);
}

}  // namespace tandem
