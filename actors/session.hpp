// The `session` role (server): one per client WebSocket connection. It authenticates the
// first frame (a hello with a valid token, protocol version and site id) within
// `hello_timeout`, finds the user's channel through the directory, joins it, and from then
// on is bound to that user. Once joined, the client's pushes and client acks go from the
// connection's thread straight to that channel, and the channel's envelopes (welcome, acks,
// forwards, errors) reach the client through the session's SessionOutlet: a channel of this
// process calls it directly, one of another host sends them to the session actor, which
// does (docs/architecture.md, "The server's sessions"). Anything else — a malformed or
// unknown frame, a push before the welcome, a second hello — comes to the actor, gets a
// fatal Error frame and the connection is closed; other sessions are never affected.
// A push larger than a frame arrives as Fragments and is relayed by the actor only once
// whole; a forward larger than a fragment leaves as Fragments (docs/protocol.md, "Large
// values").
//
// The connection is a runtime/net Connection: its handler (make_session_acceptor) routes
// frames or posts them here with caf::anon_send, and everything is sent through its
// thread-safe send().
#pragma once

#include "actors/directory.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "runtime/auth/token.hpp"
#include "runtime/net/websocket.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::actors {

using frame_atom = caf::atom_constant<caf::atom("frame")>;
using closed_atom = caf::atom_constant<caf::atom("closed")>;

using session_actor = caf::typed_actor<
    caf::reacts_to<frame_atom, std::string>,   // a frame from the connection
    caf::reacts_to<closed_atom, std::string>,  // the connection is down (why)
    caf::reacts_to<sync::Envelope>>;           // from the channel, for the client

struct SessionConfig {
  std::string secret;                            // HS256 token secret
  std::string audience = auth::kDefaultAudience;
  std::chrono::milliseconds hello_timeout{10000};
  std::chrono::milliseconds lookup_timeout{30000};
  // Tolerated clock skew for exp and iat. A connection is closed when its token expires
  // (exp + leeway): a token's lifetime bounds a connection's, not only its hello.
  int64_t token_leeway_seconds = 30;
  // High bits of every session id of this process (low 40 bits zero), random per server
  // process, so that sessions of several hosts joining one channel never share an id.
  uint64_t session_id_base = 0;
};

// The sending half of a session, shared with the channel of the same process that the
// session joined: the channel hands its envelopes for the client to the connection on its
// own thread, instead of through the session actor's mailbox. That is one thread hand-off
// less per ack and forward (in a fan-out to many sessions, each hand-off was a wake-up of
// another thread and most of the cost; docs/architecture.md, "Fan-out"). A channel of
// another host has no outlet and sends to the session actor, which delivers the same way.
// Every envelope for the client goes through deliver(), which keeps the session's phase.
// Thread-safe.
class SessionOutlet {
 public:
  enum class Phase { awaiting_hello, joining, joined, closed };
  SessionOutlet(std::shared_ptr<net::Connection> connection, uint64_t session_id);
  ~SessionOutlet();
  SessionOutlet(const SessionOutlet&) = delete;
  SessionOutlet& operator=(const SessionOutlet&) = delete;

  // Sends an envelope from the channel to the client: a welcome makes the session joined,
  // a fatal error is sent and then closes the connection; nothing is sent once closed.
  void deliver(sync::Envelope&& e);
  // Sends one frame, or a forward larger than a fragment as Fragments (docs/protocol.md).
  void send_frame(const sync::Envelope& e);
  void send_message(sync::Envelope&& e);
  Phase phase() const { return phase_.load(); }
  // Moves to `p`; closed is final (false then, or when already at `p`). Counted in
  // tandem_sessions{state}.
  bool set_phase(Phase p);
  // The channel the session joined: the connection's thread hands it the client's pushes
  // and client acks directly once the session is joined (route_to_channel in session.cpp).
  // Set before the Join is sent, cleared when the channel is gone.
  void set_channel(channel_actor channel);
  channel_actor channel() const;
  net::Connection& connection() const { return *connection_; }
  uint64_t session_id() const { return session_id_; }
  // For logs and the status page's errors; written by the session actor before it joins a
  // channel (the Join message orders those writes before the channel's reads), then fixed.
  std::string user;
  std::string client;

 private:
  static void gauge(Phase p, int64_t delta);
  const std::shared_ptr<net::Connection> connection_;
  const uint64_t session_id_;
  std::atomic<Phase> phase_{Phase::awaiting_hello};
  mutable std::mutex channel_mu_;
  channel_actor channel_;
};

// The outlet of the session `session_id` of this process, when `session` is that session's
// actor and it is still alive; null otherwise (a session of another host, or gone).
std::shared_ptr<SessionOutlet> local_session_outlet(uint64_t session_id, const caf::actor_addr& session);

// Registers every message type of the server roles (call on each process's config).
void add_server_message_types(caf::actor_system_config& cfg);

// The net::Server accept callback that spawns one session per connection.
net::Server::AcceptFn make_session_acceptor(caf::actor_system& system, std::shared_ptr<const SessionConfig> config,
                                            directory_actor directory);

}  // namespace tandem::actors
