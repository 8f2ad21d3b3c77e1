#include "actors/session.hpp"

#include <algorithm>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include <mutex>
#include <optional>
#include <unordered_map>

#include "runtime/metrics/metrics.hpp"
#include "runtime/metrics/recent_errors.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::actors {
namespace {

// Timers the session sets for itself only, so they extend the public interface here.
using hello_timeout_atom = caf::atom_constant<caf::atom("hellotime")>;
using token_expired_atom = caf::atom_constant<caf::atom("tokenexp")>;
using session_impl = session_actor::extend<caf::reacts_to<hello_timeout_atom>, caf::reacts_to<token_expired_atom>>;

struct session_state {
  using Phase = SessionOutlet::Phase;
  std::shared_ptr<net::Connection> connection;
  std::shared_ptr<SessionOutlet> outlet;  // the phase, and what the client is sent
  std::shared_ptr<const SessionConfig> config;
  directory_actor directory;
  channel_actor channel;
  sync::Hello hello;         // kept (without token) for a re-join after a channel restart
  sync_frames::Reassembler fragments;  // a fragmented Push under way
  int join_attempts = 0;
  static inline const char* name = "session";

  Phase phase() const { return outlet->phase(); }
  void set_phase(Phase p) { outlet->set_phase(p); }
};

using self_ptr = session_impl::stateful_pointer<session_state>;

void send_frame(self_ptr self, const sync::Envelope& e) {
  if (self->state.connection) self->state.outlet->send_frame(e);
}

// Sends a fatal error and closes; the session stops when the connection reports it is down.
void fail(self_ptr self, sync::Error::Code code, const std::string& message) {
  // Closed first: a channel delivering on its own thread sends nothing after the error.
  if (!self->state.outlet->set_phase(session_state::Phase::closed)) return;
  metrics::server_metrics().count_error(code);
  metrics::server_recent_errors().add(code, self->state.outlet->user, self->state.outlet->client, message);
  spdlog::info("hop=server.session_refused client={} user={} code={} reason=\"{}\"", self->state.outlet->client,
               self->state.outlet->user, sync::Error::Code_Name(code), sync_frames::log_escape(message, 1024));
  send_frame(self, sync_frames::error_envelope(code, message, true));
  if (self->state.connection) self->state.connection->close(net::kClosePolicyViolation, sync::Error::Code_Name(code));
}

// Sends `atom` to the session after `delay`, through a timer of its connection. Not
// delayed_send: CAF's clock holds a strong reference to the receiver until the message is
// due, so every session would outlive its connection by the hello timeout, and an
// authenticated one by its token's whole lifetime (days): memory that grows with every
// connection. The connection's timer ends with the connection and holds only a weak handle.
template <class Atom>
void after(self_ptr self, std::chrono::milliseconds delay, Atom atom) {
  if (!self->state.connection) return;
  auto weak = caf::actor_cast<caf::actor_addr>(self);
  self->state.connection->set_timer(std::max(delay, std::chrono::milliseconds(0)), [weak, atom] {
    if (auto me = caf::actor_cast<session_impl>(weak)) caf::anon_send(me, atom);
  });
}

// The session's name within its channel, unique across the cluster's hosts (connection ids
// are unique only within a process).
uint64_t make_session_id(const SessionConfig& config, const net::Connection& connection) {
  return config.session_id_base | (connection.id() & ((uint64_t{1} << 40) - 1));
}
uint64_t session_id(self_ptr self) { return self->state.outlet->session_id(); }

// This process's sessions by id, for the channels they join (local_session_outlet). An
// entry whose outlet is gone is removed by the outlet's destructor.
struct OutletRegistry {
  std::mutex mutex;
  std::unordered_map<uint64_t, std::pair<caf::actor_addr, std::weak_ptr<SessionOutlet>>> by_id;
};
OutletRegistry& outlets() {
  static auto* registry = new OutletRegistry;  // never destroyed: outlets may die at exit
  return *registry;
}

void leave_channel(self_ptr self) {
  if (self->state.channel) {
    cluster::Leave leave;
    leave.set_session(session_id(self));
    self->send(self->state.channel, std::move(leave));
  }
}

void join(self_ptr self) {
  ++self->state.join_attempts;
  cluster::ChannelLookup lookup;
  lookup.set_user(self->state.outlet->user);
  self->request(self->state.directory, self->state.config->lookup_timeout, std::move(lookup))
      .then(
          [self](channel_actor ch) {
            if (self->state.phase() != session_state::Phase::joining) return;
            self->state.channel = ch;
            self->state.outlet->set_channel(ch);
            self->monitor(ch);
            {
              auto& r = outlets();
              std::lock_guard<std::mutex> lock(r.mutex);
              r.by_id[session_id(self)] = {self->address(), self->state.outlet};
            }
            cluster::Join j;
            j.set_session(session_id(self));
            j.set_user(self->state.outlet->user);
            *j.mutable_hello() = self->state.hello;
            self->send(ch, std::move(j));
          },
          [self](caf::error& err) {
            fail(self, sync::Error::UNAVAILABLE, "no channel for user: " + self->system().render(err));
          });
}

void on_hello(self_ptr self, const sync::Hello& hello) {
  sync::Error refusal;
  if (!sync_frames::check_hello(hello, &refusal)) return fail(self, refusal.code(), refusal.message());
  auth::VerifyOptions verify;
  verify.audience = self->state.config->audience;
  verify.leeway_seconds = self->state.config->token_leeway_seconds;
  auto claims = auth::verify_token(self->state.config->secret, hello.token(), verify);
  if (!claims.ok()) return fail(self, sync::Error::UNAUTHENTICATED, claims.status().message());
  {
    const auto now = std::chrono::system_clock::now();
    const auto expiry = std::chrono::system_clock::time_point(std::chrono::seconds(claims->expires_at + verify.leeway_seconds));
    after(self, std::chrono::duration_cast<std::chrono::milliseconds>(expiry - now), token_expired_atom::value);
  }
  self->state.outlet->user = claims->user;
  self->state.hello = hello;
  self->state.hello.clear_token();
  // The name is the client's free text: escaped, so that it cannot forge log records.
  self->state.outlet->client = sync_frames::log_escape(hello.client_name(), 64) + "@" + self->state.connection->peer();
  self->state.set_phase(session_state::Phase::joining);
  spdlog::debug("hop=server.hello user={} client={} cursor={}", self->state.outlet->user, self->state.outlet->client, hello.cursor());
  join(self);
}

void on_envelope(self_ptr self, sync::Envelope& e);

// A joined session's push or client ack (taken from `e`), wrapped as its channel takes it
// (cluster.proto) and handed to `send`: from the session actor, or from the connection's
// thread (route_to_channel).
template <class Send>
void to_channel(uint64_t session, sync::Envelope& e, Send&& send) {
  if (e.has_push()) {
    cluster::SessionPush p;
    p.set_session(session);
    *p.mutable_push() = std::move(*e.mutable_push());
    send(std::move(p));
  } else {
    cluster::SessionClientAck a;
    a.set_session(session);
    *a.mutable_ack() = std::move(*e.mutable_client_ack());
    send(std::move(a));
  }
}

void on_frame(self_ptr self, const std::string& frame) {
  if (self->state.phase() == session_state::Phase::closed) return;
  auto decoded = sync_frames::decode(frame);
  if (!decoded.ok) return fail(self, decoded.error.code(), decoded.error.message());
  on_envelope(self, decoded.envelope);
}

void on_envelope(self_ptr self, sync::Envelope& e) {
  if (self->state.fragments.active() && !e.has_fragment() && !e.has_ping() && !e.has_pong() && !e.has_error())
    return fail(self, sync::Error::PROTOCOL, "a " + sync_frames::describe(e) + " in the middle of a fragmented message");
  switch (e.kind_case()) {
    case sync::Envelope::kFragment: {
      if (self->state.phase() != session_state::Phase::joined)
        return fail(self, sync::Error::PROTOCOL, "a fragment before the welcome");
      std::optional<sync::Envelope> whole;
      sync::Error refusal;
      if (!self->state.fragments.add(std::move(*e.mutable_fragment()), &whole, &refusal))
        return fail(self, refusal.code(), refusal.message());
      if (!whole) return;
      if (!whole->has_push()) return fail(self, sync::Error::PROTOCOL, "clients do not send " + sync_frames::describe(*whole));
      return on_envelope(self, *whole);
    }
    case sync::Envelope::kHello:
      if (self->state.phase() != session_state::Phase::awaiting_hello)
        return fail(self, sync::Error::PROTOCOL, "a second hello on one connection");
      return on_hello(self, e.hello());
    case sync::Envelope::kPing: {
      sync::Envelope pong;
      pong.mutable_pong()->set_nonce(e.ping().nonce());
      return send_frame(self, pong);
    }
    case sync::Envelope::kPong:
      return;
    case sync::Envelope::kPush: {
      if (self->state.phase() != session_state::Phase::joined)
        return fail(self, sync::Error::PROTOCOL, "push before the welcome");
      return to_channel(session_id(self), e, [self](auto&& m) { self->send(self->state.channel, std::move(m)); });
    }
    case sync::Envelope::kClientAck: {
      if (self->state.phase() != session_state::Phase::joined)
        return fail(self, sync::Error::PROTOCOL, "client ack before the welcome");
      return to_channel(session_id(self), e, [self](auto&& m) { self->send(self->state.channel, std::move(m)); });
    }
    case sync::Envelope::kError:
      spdlog::info("hop=server.client_error client={} user={} {}", self->state.outlet->client, self->state.outlet->user,
                   sync_frames::describe(e));
      if (e.error().fatal()) {
        self->state.set_phase(session_state::Phase::closed);
        self->state.connection->close(net::kCloseNormal, "client error");
      }
      return;
    default:
      return fail(self, sync::Error::PROTOCOL, "clients do not send " + sync_frames::describe(e));
  }
}

session_impl::behavior_type session(self_ptr self, std::shared_ptr<net::Connection> connection,
                                    std::shared_ptr<const SessionConfig> config, directory_actor directory,
                                    std::shared_ptr<SessionOutlet> outlet) {
  self->state.connection = std::move(connection);
  self->state.config = std::move(config);
  self->state.directory = std::move(directory);
  self->state.outlet = std::move(outlet);
  self->set_default_handler(caf::drop);
  self->set_error_handler([self](caf::error& err) {
    spdlog::warn("hop=server.session client={} error=\"{}\"", self->state.outlet->client, self->system().render(err));
  });
  self->set_down_handler([self](caf::down_msg& down) {
    if (!self->state.channel || down.source != self->state.channel.address()) return;
    self->state.channel = channel_actor{};
    self->state.outlet->set_channel(channel_actor{});
    if (self->state.phase() == session_state::Phase::joining && self->state.join_attempts < 3) {
      join(self);  // the channel closed between the lookup and the join: ask again
      return;
    }
    fail(self, sync::Error::UNAVAILABLE, "the user's channel closed; reconnect");
  });
  after(self, self->state.config->hello_timeout, hello_timeout_atom::value);
  return {
      [self](frame_atom, std::string& frame) { on_frame(self, frame); },
      [self](closed_atom, std::string& why) {
        // Info, like the welcome: an operator sees each connection's end and its cause.
        spdlog::info("hop=server.disconnect client={} user={} why=\"{}\"", self->state.outlet->client, self->state.outlet->user, why);
        leave_channel(self);
        self->state.set_phase(session_state::Phase::closed);
        self->state.connection.reset();
        self->quit();
      },
      [self](sync::Envelope& e) {
        // From a channel of another host (a channel of this process delivers through the
        // outlet itself).
        const bool fatal = e.has_error() && e.error().fatal();
        self->state.outlet->deliver(std::move(e));
        if (fatal) {
          self->state.channel = channel_actor{};  // the channel already dropped this session
          self->state.outlet->set_channel(channel_actor{});
        }
      },
      [self](token_expired_atom) {
        if (self->state.phase() != session_state::Phase::closed)
          fail(self, sync::Error::UNAUTHENTICATED, "the token expired; connect again with a new token");
      },
      [self](hello_timeout_atom) {
        if (self->state.phase() == session_state::Phase::awaiting_hello)
          fail(self, sync::Error::TIMEOUT, "no hello within " + std::to_string(self->state.config->hello_timeout.count()) + " ms");
      },
  };
}

}  // namespace

SessionOutlet::SessionOutlet(std::shared_ptr<net::Connection> connection, uint64_t session_id)
    : connection_(std::move(connection)), session_id_(session_id) {
  gauge(Phase::awaiting_hello, 1);
}

SessionOutlet::~SessionOutlet() {
  gauge(phase_.load(), -1);
  auto& r = outlets();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.by_id.find(session_id_);
  if (it != r.by_id.end() && it->second.second.expired()) r.by_id.erase(it);
}

// The phase, counted in tandem_sessions{state}: every change goes through set_phase, and
// the outlet's end leaves the gauge of its last phase whichever way the session ended.
void SessionOutlet::gauge(Phase p, int64_t delta) {
  using metrics::SessionPhase;
  auto& sessions = metrics::server_metrics().sessions;
  switch (p) {
    case Phase::awaiting_hello: return sessions[static_cast<int>(SessionPhase::kAwaitingHello)].add(delta);
    case Phase::joining: return sessions[static_cast<int>(SessionPhase::kJoining)].add(delta);
    case Phase::joined: return sessions[static_cast<int>(SessionPhase::kJoined)].add(delta);
    case Phase::closed: return;
  }
}

bool SessionOutlet::set_phase(Phase p) {
  Phase was = phase_.load();
  do {
    if (was == p || was == Phase::closed) return false;
  } while (!phase_.compare_exchange_weak(was, p));
  gauge(was, -1);
  gauge(p, 1);
  return true;
}

void SessionOutlet::send_frame(const sync::Envelope& e) {
  std::string frame = sync_frames::encode(e);
  metrics::server_metrics().bytes_sent.inc(frame.size());
  connection_->send(std::move(frame));
}

void SessionOutlet::send_message(sync::Envelope&& e) {
  auto& connection = *connection_;
  sync_frames::send_frames(std::move(e), [&connection](std::string frame) {
    metrics::server_metrics().bytes_sent.inc(frame.size());
    connection.send(std::move(frame));
  });
}

void SessionOutlet::deliver(sync::Envelope&& e) {
  if (phase() == Phase::closed) return;
  if (e.has_error()) {
    metrics::server_metrics().count_error(e.error().code());
    metrics::server_recent_errors().add(e.error().code(), user, client, e.error().message());
  }
  if (e.has_welcome()) {
    set_phase(Phase::joined);
    if (phase() == Phase::closed) return;  // closed meanwhile (closed is final)
    spdlog::info("hop=server.welcome user={} client={} server_v={} client_acked={} forward_from={}", user, client,
                 e.welcome().server_db_version(), e.welcome().client_acked_db_version(), e.welcome().forward_from());
  }
  if (e.has_error() && e.error().fatal()) {
    if (!set_phase(Phase::closed)) return;  // first, as in the session's own refusals
    send_frame(e);
    connection_->close(net::kClosePolicyViolation, sync::Error::Code_Name(e.error().code()));
    return;
  }
  send_message(std::move(e));
}

std::shared_ptr<SessionOutlet> local_session_outlet(uint64_t session_id, const caf::actor_addr& session) {
  auto& r = outlets();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.by_id.find(session_id);
  if (it == r.by_id.end() || it->second.first != session) return nullptr;
  return it->second.second.lock();
}

namespace {

// What the connection's thread knows of its session beyond the outlet.
struct IoSide {
  // Set at the first Fragment: the session actor reassembles fragmented pushes, so from then
  // on every frame goes through it, in order behind the fragments.
  bool via_actor = false;
};

// A joined session's push or client ack, handed to its channel on the connection's thread
// (one thread hand-off less than through the session actor, which would check and forward
// it the same way); true when handed. Anything else, a frame that does not decode included,
// goes to the session actor, which answers or refuses it.
bool route_to_channel(const SessionOutlet& outlet, IoSide& io, const std::string& frame) {
  if (io.via_actor || outlet.phase() != SessionOutlet::Phase::joined) return false;
  auto decoded = sync_frames::decode(frame);
  if (!decoded.ok) return false;
  sync::Envelope& e = decoded.envelope;
  if (e.has_fragment()) {
    io.via_actor = true;
    return false;
  }
  if (!e.has_push() && !e.has_client_ack()) return false;
  channel_actor channel = outlet.channel();
  if (!channel) return false;
  to_channel(outlet.session_id(), e, [&channel](auto&& m) { caf::anon_send(channel, std::move(m)); });
  return true;
}

}  // namespace

void SessionOutlet::set_channel(channel_actor channel) {
  std::lock_guard<std::mutex> lock(channel_mu_);
  channel_ = std::move(channel);
}

channel_actor SessionOutlet::channel() const {
  std::lock_guard<std::mutex> lock(channel_mu_);
  return channel_;
}

void add_server_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<sync::Envelope>("tandem.sync.Envelope");
  cfg.add_message_type<cluster::ChannelLookup>("tandem.cluster.ChannelLookup");
  cfg.add_message_type<cluster::ClusterMembers>("tandem.cluster.ClusterMembers");
  cfg.add_message_type<directory_actor>("tandem.actors.directory_actor");
  cfg.add_message_type<cluster::Join>("tandem.cluster.Join");
  cfg.add_message_type<cluster::SessionPush>("tandem.cluster.SessionPush");
  cfg.add_message_type<cluster::SessionClientAck>("tandem.cluster.SessionClientAck");
  cfg.add_message_type<cluster::Leave>("tandem.cluster.Leave");
  cfg.add_message_type<cluster::ChannelUsage>("tandem.cluster.ChannelUsage");
  cfg.add_message_type<cluster::LinksWanted>("tandem.cluster.LinksWanted");
  cfg.add_message_type<cluster::CloseChannel>("tandem.cluster.CloseChannel");
  cfg.add_message_type<cluster::DirectoryStatusRequest>("tandem.cluster.DirectoryStatusRequest");
  cfg.add_message_type<cluster::DirectoryStatus>("tandem.cluster.DirectoryStatus");
  cfg.add_message_type<cluster::ChannelStatusRequest>("tandem.cluster.ChannelStatusRequest");
  cfg.add_message_type<cluster::ChannelStatus>("tandem.cluster.ChannelStatus");
  cfg.add_message_type<channel_actor>("tandem.actors.channel_actor");
}

net::Server::AcceptFn make_session_acceptor(caf::actor_system& system, std::shared_ptr<const SessionConfig> config,
                                            directory_actor directory) {
  return [&system, config, directory](const std::shared_ptr<net::Connection>& connection) {
    auto outlet = std::make_shared<SessionOutlet>(connection, make_session_id(*config, *connection));
    outlet->client = connection->peer();
    session_actor s = system.spawn(session, connection, config, directory, outlet);
    auto& m = metrics::server_metrics();
    m.connections_open.add();
    m.connections_total.inc();
    net::Handler h;
    // The handler runs on the connection's strand, one frame at a time: `io` needs no lock.
    // The outlet is held weakly (it holds the connection, which holds this handler).
    h.on_frame = [s, weak = std::weak_ptr<net::Connection>(connection), weak_outlet = std::weak_ptr<SessionOutlet>(outlet),
                  io = std::make_shared<IoSide>()](std::string frame) {
      metrics::server_metrics().bytes_received.inc(frame.size());
      if (auto pong = sync_frames::pong_for(frame)) {
        metrics::server_metrics().bytes_sent.inc(pong->size());
        if (auto c = weak.lock()) c->send(std::move(*pong));
        return;
      }
      if (auto live = weak_outlet.lock(); live && route_to_channel(*live, *io, frame)) return;
      caf::anon_send(s, frame_atom::value, std::move(frame));
    };
    h.on_close = [s](const Status& why) {
      metrics::server_metrics().connections_open.sub();
      caf::anon_send(s, closed_atom::value, why.message());
    };
    return h;
  };
}

}  // namespace tandem::actors
