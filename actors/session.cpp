#include "actors/session.hpp"

#include <algorithm>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include <optional>

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
  enum class Phase { awaiting_hello, joining, joined, closed };
  std::shared_ptr<net::Connection> connection;
  std::shared_ptr<const SessionConfig> config;
  directory_actor directory;
  channel_actor channel;
  Phase phase = Phase::awaiting_hello;
  std::string user;
  std::string client;        // the client's name and address, for logs
  sync::Hello hello;         // kept (without token) for a re-join after a channel restart
  sync_frames::Reassembler fragments;  // a fragmented Push under way
  int join_attempts = 0;
  static inline const char* name = "session";

  // The phase, counted in tandem_sessions{state}: every change goes through set_phase, and
  // the state's end leaves the gauge of its last phase whichever way the actor ended.
  session_state() { gauge(phase, 1); }
  ~session_state() { gauge(phase, -1); }
  void set_phase(Phase p) {
    if (p == phase) return;
    gauge(phase, -1);
    gauge(p, 1);
    phase = p;
  }
  static void gauge(Phase p, int64_t delta) {
    using metrics::SessionPhase;
    auto& sessions = metrics::server_metrics().sessions;
    switch (p) {
      case Phase::awaiting_hello: return sessions[static_cast<int>(SessionPhase::kAwaitingHello)].add(delta);
      case Phase::joining: return sessions[static_cast<int>(SessionPhase::kJoining)].add(delta);
      case Phase::joined: return sessions[static_cast<int>(SessionPhase::kJoined)].add(delta);
      case Phase::closed: return;
    }
  }
};

using self_ptr = session_impl::stateful_pointer<session_state>;

void send_frame(self_ptr self, const sync::Envelope& e) {
  if (!self->state.connection) return;
  std::string frame = sync_frames::encode(e);
  metrics::server_metrics().bytes_sent.inc(frame.size());
  self->state.connection->send(std::move(frame));
}

// A forward holding a large value goes out in Fragments (docs/protocol.md).
void send_message(self_ptr self, sync::Envelope&& e) {
  if (!self->state.connection) return;
  auto& connection = *self->state.connection;
  sync_frames::send_frames(std::move(e), [&connection](std::string frame) {
    metrics::server_metrics().bytes_sent.inc(frame.size());
    connection.send(std::move(frame));
  });
}

// Sends a fatal error and closes; the session stops when the connection reports it is down.
void fail(self_ptr self, sync::Error::Code code, const std::string& message) {
  if (self->state.phase == session_state::Phase::closed) return;
  metrics::server_metrics().count_error(code);
  metrics::server_recent_errors().add(code, self->state.user, self->state.client, message);
  spdlog::info("hop=server.session_refused client={} user={} code={} reason=\"{}\"", self->state.client,
               self->state.user, sync::Error::Code_Name(code), sync_frames::log_escape(message, 1024));
  send_frame(self, sync_frames::error_envelope(code, message, true));
  self->state.set_phase(session_state::Phase::closed);
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
uint64_t session_id(self_ptr self) {
  return self->state.config->session_id_base | (self->state.connection->id() & ((uint64_t{1} << 40) - 1));
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
  lookup.set_user(self->state.user);
  self->request(self->state.directory, self->state.config->lookup_timeout, std::move(lookup))
      .then(
          [self](channel_actor ch) {
            if (self->state.phase != session_state::Phase::joining) return;
            self->state.channel = ch;
            self->monitor(ch);
            cluster::Join j;
            j.set_session(session_id(self));
            j.set_user(self->state.user);
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
  self->state.user = claims->user;
  self->state.hello = hello;
  self->state.hello.clear_token();
  // The name is the client's free text: escaped, so that it cannot forge log records.
  self->state.client = sync_frames::log_escape(hello.client_name(), 64) + "@" + self->state.connection->peer();
  self->state.set_phase(session_state::Phase::joining);
  spdlog::debug("hop=server.hello user={} client={} cursor={}", self->state.user, self->state.client, hello.cursor());
  join(self);
}

void on_envelope(self_ptr self, sync::Envelope& e);

void on_frame(self_ptr self, const std::string& frame) {
  if (self->state.phase == session_state::Phase::closed) return;
  auto decoded = sync_frames::decode(frame);
  if (!decoded.ok) return fail(self, decoded.error.code(), decoded.error.message());
  on_envelope(self, decoded.envelope);
}

void on_envelope(self_ptr self, sync::Envelope& e) {
  if (self->state.fragments.active() && !e.has_fragment() && !e.has_ping() && !e.has_pong() && !e.has_error())
    return fail(self, sync::Error::PROTOCOL, "a " + sync_frames::describe(e) + " in the middle of a fragmented message");
  switch (e.kind_case()) {
    case sync::Envelope::kFragment: {
      if (self->state.phase != session_state::Phase::joined)
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
      if (self->state.phase != session_state::Phase::awaiting_hello)
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
      if (self->state.phase != session_state::Phase::joined)
        return fail(self, sync::Error::PROTOCOL, "push before the welcome");
      cluster::SessionPush p;
      p.set_session(session_id(self));
      *p.mutable_push() = std::move(*e.mutable_push());
      self->send(self->state.channel, std::move(p));
      return;
    }
    case sync::Envelope::kClientAck: {
      if (self->state.phase != session_state::Phase::joined)
        return fail(self, sync::Error::PROTOCOL, "client ack before the welcome");
      cluster::SessionClientAck a;
      a.set_session(session_id(self));
      *a.mutable_ack() = e.client_ack();
      self->send(self->state.channel, std::move(a));
      return;
    }
    case sync::Envelope::kError:
      spdlog::info("hop=server.client_error client={} user={} {}", self->state.client, self->state.user,
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
                                    std::shared_ptr<const SessionConfig> config, directory_actor directory) {
  self->state.connection = std::move(connection);
  self->state.config = std::move(config);
  self->state.directory = std::move(directory);
  self->state.client = self->state.connection->peer();
  self->set_default_handler(caf::drop);
  self->set_error_handler([self](caf::error& err) {
    spdlog::warn("hop=server.session client={} error=\"{}\"", self->state.client, self->system().render(err));
  });
  self->set_down_handler([self](caf::down_msg& down) {
    if (!self->state.channel || down.source != self->state.channel.address()) return;
    self->state.channel = channel_actor{};
    if (self->state.phase == session_state::Phase::joining && self->state.join_attempts < 3) {
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
        spdlog::info("hop=server.disconnect client={} user={} why=\"{}\"", self->state.client, self->state.user, why);
        leave_channel(self);
        self->state.set_phase(session_state::Phase::closed);
        self->state.connection.reset();
        self->quit();
      },
      [self](sync::Envelope& e) {
        if (self->state.phase == session_state::Phase::closed) return;
        if (e.has_error()) {
          metrics::server_metrics().count_error(e.error().code());
          metrics::server_recent_errors().add(e.error().code(), self->state.user, self->state.client, e.error().message());
        }
        if (e.has_welcome()) {
          self->state.set_phase(session_state::Phase::joined);
          spdlog::info("hop=server.welcome user={} client={} server_v={} client_acked={} forward_from={}",
                       self->state.user, self->state.client, e.welcome().server_db_version(),
                       e.welcome().client_acked_db_version(), e.welcome().forward_from());
        }
        if (e.has_error() && e.error().fatal()) {
          send_frame(self, e);
          self->state.set_phase(session_state::Phase::closed);
          self->state.channel = channel_actor{};  // the channel already dropped this session
          self->state.connection->close(net::kClosePolicyViolation, sync::Error::Code_Name(e.error().code()));
          return;
        }
        send_message(self, std::move(e));
      },
      [self](token_expired_atom) {
        if (self->state.phase != session_state::Phase::closed)
          fail(self, sync::Error::UNAUTHENTICATED, "the token expired; connect again with a new token");
      },
      [self](hello_timeout_atom) {
        if (self->state.phase == session_state::Phase::awaiting_hello)
          fail(self, sync::Error::TIMEOUT, "no hello within " + std::to_string(self->state.config->hello_timeout.count()) + " ms");
      },
  };
}

}  // namespace

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
    session_actor s = system.spawn(session, connection, config, directory);
    auto& m = metrics::server_metrics();
    m.connections_open.add();
    m.connections_total.inc();
    net::Handler h;
    h.on_frame = [s, weak = std::weak_ptr<net::Connection>(connection)](std::string frame) {
      metrics::server_metrics().bytes_received.inc(frame.size());
      if (auto pong = sync_frames::pong_for(frame)) {
        metrics::server_metrics().bytes_sent.inc(pong->size());
        if (auto c = weak.lock()) c->send(std::move(*pong));
        return;
      }
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
