// The `session` role (server): one per client WebSocket connection. It authenticates the
// first frame (a hello with a valid token, protocol version and site id) within
// `hello_timeout`, finds the user's channel through the directory, joins it, and from then
// on is bound to that user: it relays the client's pushes and client acks to that channel
// and the channel's envelopes (welcome, acks, forwards, errors) to the client. Anything
// else — a malformed or unknown frame, a push before the welcome, a second hello — gets
// a fatal Error frame and the connection is closed; other sessions are never affected.
// A push larger than a frame arrives as Fragments and is relayed only once whole; a
// forward larger than a fragment leaves as Fragments (docs/protocol.md, "Large values").
//
// The connection is a runtime/net Connection: its handler posts frames here with
// caf::anon_send (make_session_acceptor does the wiring), and the session sends through
// its thread-safe send().
#pragma once

#include "actors/directory.hpp"

#include <chrono>
#include <memory>
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

// Registers every message type of the server roles (call on each process's config).
void add_server_message_types(caf::actor_system_config& cfg);

// The net::Server accept callback that spawns one session per connection.
net::Server::AcceptFn make_session_acceptor(caf::actor_system& system, std::shared_ptr<const SessionConfig> config,
                                            directory_actor directory);

}  // namespace tandem::actors
