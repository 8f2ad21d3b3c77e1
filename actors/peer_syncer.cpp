// The peer_syncer actor: a shell over sync_client::ClientCore (see peer_syncer.hpp). Every
// handler hands its message to the core as an event and carries out the Outbox it returns.
#include "actors/peer_syncer.hpp"

#include <map>
#include <mutex>
#include <random>
#include <variant>

#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <spdlog/spdlog.h>

#include "runtime/auth/token.hpp"

namespace tandem::actors {
namespace {

using link_open_atom = caf::atom_constant<caf::atom("lnkopen")>;
using link_frame_atom = caf::atom_constant<caf::atom("lnkframe")>;
using link_closed_atom = caf::atom_constant<caf::atom("lnkclosed")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;

// The public interface plus what only the actor's own connection callbacks and timer send.
using syncer_impl = peer_syncer_actor::extend<caf::reacts_to<link_open_atom, uint64_t>,                // attempt finished
                                              caf::reacts_to<link_frame_atom, uint64_t, std::string>,  // a frame of it
                                              caf::reacts_to<link_closed_atom, uint64_t, std::string>, // it is down (why)
                                              caf::reacts_to<reconnect_atom, uint64_t>>;

// The net callbacks hand the connection over through this slot (not a message type).
struct LinkSlot {
  std::mutex mu;
  uint64_t generation = 0;
  std::shared_ptr<net::Connection> connection;
  std::string error;
};

struct peer_syncer_state {
  PeerSyncerConfig config;
  db_worker_actor worker;
  std::unique_ptr<sync_client::ClientCore> core;
  std::shared_ptr<LinkSlot> slot = std::make_shared<LinkSlot>();
  std::shared_ptr<net::Connection> connection;  // of core->generation(), while up
  uint64_t next_waiter = 0;
  std::map<uint64_t, caf::typed_response_promise<int64_t>> ack_waiters;
  std::map<uint64_t, caf::typed_response_promise<int64_t, int64_t>> caught_up_waiters;
  static inline const char* name = "peer_syncer";
  ~peer_syncer_state() {
    if (connection) connection->close(net::kCloseGoingAway, "client stopping");
  }
};

using self_ptr = syncer_impl::stateful_pointer<peer_syncer_state>;

void relay(self_ptr self, sync_client::Outbox&& out);

caf::error runtime_error(const Status& status) { return caf::make_error(caf::sec::runtime_error, status.message()); }

// Carries out one action of the core's outbox.
struct Carrier {
  self_ptr self;

  // A db_worker request: its answer, or the request's failure (timeout, worker gone) as a
  // failed Result, goes back to the core with the action (its request moved out).
  template <class A, class Response = typename A::Response>
  void operator()(A& action) const {
    auto s = self;
    auto request = std::move(action.request);
    s->request(s->state.worker, s->state.config.request_timeout, std::move(request))
        .then([s, action](Response& r) { relay(s, s->state.core->answer(action, Result<Response>(std::move(r)))); },
              [s, action](caf::error& err) {
                relay(s, s->state.core->answer(action, Result<Response>(Status::Unavailable(s->system().render(err)))));
              });
  }
  void operator()(sync_client::ReadStatus&) const {
    auto s = self;
    s->request(s->state.worker, s->state.config.request_timeout, worker::StatusRequest{})
        .then([s](worker::StatusResponse& status) { relay(s, s->state.core->on_status(status)); },
              [s](caf::error& err) {
                spdlog::critical("hop=client.start db_worker did not answer: {}", s->system().render(err));
                s->quit(err);
              });
  }
  void operator()(sync_client::Subscribe& s) const {
    self->request(self->state.worker, self->state.config.request_timeout, std::move(s.request))
        .then([](worker::SubscribeResponse&) {}, [](caf::error&) {});
  }
  void operator()(sync_client::Connect& c) const {
    auto& st = self->state;
    const uint64_t gen = c.generation;
    syncer_impl me = self;
    net::Handler h;
    h.on_frame = [me, gen](std::string frame) { caf::anon_send(me, link_frame_atom::value, gen, std::move(frame)); };
    h.on_close = [me, gen](const Status& why) { caf::anon_send(me, link_closed_atom::value, gen, why.message()); };
    net::connect(*st.config.loop, c.url, st.config.client, std::move(h),
                 [me, gen, slot = st.slot](Result<std::shared_ptr<net::Connection>> r) {
                   {
                     std::lock_guard<std::mutex> lock(slot->mu);
                     slot->generation = gen;
                     slot->connection = r.ok() ? *r : nullptr;
                     slot->error = r.ok() ? std::string() : r.status().message();
                   }
                   caf::anon_send(me, link_open_atom::value, gen);
                 });
  }
  void operator()(sync_client::Send& s) const {
    if (!self->state.connection) return;
    auto& connection = *self->state.connection;
    if (s.fragment_bytes == 0) connection.send(sync_frames::encode(s.envelope));
    else sync_frames::send_frames(std::move(s.envelope), [&connection](std::string frame) { connection.send(std::move(frame)); },
                                  s.fragment_bytes);
  }
  void operator()(sync_client::CloseLink& c) const {
    if (auto connection = std::move(self->state.connection)) connection->close(net::kCloseNormal, c.why);
  }
  void operator()(sync_client::StartTimer& t) const { self->delayed_send(self, t.delay, reconnect_atom::value, t.generation); }
  void operator()(sync_client::SettleAcked& a) const {
    auto p = self->state.ack_waiters.extract(a.waiter);
    if (p && a.value.ok()) p.mapped().deliver(*a.value);
    else if (p) p.mapped().deliver(runtime_error(a.value.status()));
  }
  void operator()(sync_client::SettleCaughtUp& c) const {
    auto p = self->state.caught_up_waiters.extract(c.waiter);
    if (p && c.value.ok()) p.mapped().deliver(c.value->client_acked, c.value->cursor);
    else if (p) p.mapped().deliver(runtime_error(c.value.status()));
  }
};

void relay(self_ptr self, sync_client::Outbox&& out) {
  for (auto& action : out) std::visit(Carrier{self}, action);
}

// The core's settings, with what it must not choose itself: this run's random instance id,
// the jitter's seed, the token's subject, and spdlog as its log.
sync_client::ClientConfig core_config(const PeerSyncerConfig& config) {
  sync_client::ClientConfig c;
  static_cast<sync_client::ClientSettings&>(c) = config;
  if (auto subject = auth::unverified_subject(config.token); subject.ok()) c.token_user = *subject;
  std::random_device random;
  for (int i = 0; i < 4; ++i) {
    const uint32_t word = random();
    c.instance.append(reinterpret_cast<const char*>(&word), sizeof word);
  }
  if (c.seed == 0) c.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  static constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::debug, spdlog::level::info, spdlog::level::warn,
                                                          spdlog::level::err, spdlog::level::critical};
  c.log.enabled = [](sync_client::LogLevel l) { return spdlog::should_log(kLevels[static_cast<int>(l)]); };
  c.log.write = [](sync_client::LogLevel l, const std::string& line) { spdlog::log(kLevels[static_cast<int>(l)], "{}", line); };
  return c;
}

syncer_impl::behavior_type peer_syncer(self_ptr self, db_worker_actor worker, PeerSyncerConfig config) {
  auto& st = self->state;
  st.worker = std::move(worker);
  st.core = std::make_unique<sync_client::ClientCore>(core_config(config));
  st.config = std::move(config);
  self->set_default_handler(caf::drop);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (msg.reason == caf::exit_reason::normal) return;
    relay(self, self->state.core->fail_waiters("the node is stopping"));
    self->quit(msg.reason);
  });
  self->set_error_handler([self](caf::error& err) { spdlog::warn("hop=client.error {}", self->system().render(err)); });
  relay(self, st.core->start());
  return {
      [self](link_open_atom, uint64_t gen) {
        auto& ls = self->state;
        std::shared_ptr<net::Connection> conn;
        std::string error;
        {
          std::lock_guard<std::mutex> lock(ls.slot->mu);
          if (ls.slot->generation != gen) return;
          conn = std::move(ls.slot->connection);
          error = ls.slot->error;
        }
        if (!ls.core->accepts_link(gen)) {
          if (conn) conn->close(net::kCloseNormal, "superseded");
          return;
        }
        if (!conn) return relay(self, ls.core->on_connect_failed(gen, error));
        ls.connection = std::move(conn);
        relay(self, ls.core->on_link_opened(gen));
      },
      [self](link_frame_atom, uint64_t gen, std::string& frame) { relay(self, self->state.core->on_frame(gen, frame)); },
      [self](link_closed_atom, uint64_t gen, std::string& why) {
        if (gen == self->state.core->generation()) self->state.connection.reset();  // closed already: nothing to close
        relay(self, self->state.core->on_link_closed(gen, why));
      },
      [self](reconnect_atom, uint64_t gen) { relay(self, self->state.core->on_timer(gen)); },
      [self](const change::RowDeltaBatch& batch) { relay(self, self->state.core->on_local_commit(batch)); },
      [self](worker::LocalCommit& commit) { relay(self, self->state.core->on_local_commit(std::move(commit))); },
      [self](wait_acked_atom, int64_t version) -> caf::result<int64_t> {
        auto& ls = self->state;
        const uint64_t id = ++ls.next_waiter;
        auto answer = ls.core->wait_acked(version, id);
        if (answer.now) return answer.now->ok() ? caf::result<int64_t>(answer.now->value()) : runtime_error(answer.now->status());
        auto p = self->make_response_promise<int64_t>();
        ls.ack_waiters.emplace(id, p);
        relay(self, std::move(answer.out));
        return p;
      },
      [self](caught_up_atom) -> caf::result<int64_t, int64_t> {
        auto& ls = self->state;
        const uint64_t id = ++ls.next_waiter;
        auto answer = ls.core->wait_caught_up(id);
        if (answer.now && answer.now->ok()) return {answer.now->value().client_acked, answer.now->value().cursor};
        if (answer.now) return runtime_error(answer.now->status());
        auto p = self->make_response_promise<int64_t, int64_t>();
        ls.caught_up_waiters.emplace(id, p);
        relay(self, std::move(answer.out));
        return p;
      },
      [self](last_error_atom) -> std::string { return self->state.core->last_error(); },
      [self](online_atom, bool online) { relay(self, self->state.core->set_online(online)); },
  };
}

}  // namespace

peer_syncer_actor spawn_peer_syncer(caf::actor_system& system, db_worker_actor worker, PeerSyncerConfig config) {
  return system.spawn(peer_syncer, std::move(worker), std::move(config));
}

}  // namespace tandem::actors
