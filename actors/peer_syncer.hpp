// The `peer_syncer` role (client node): the link between a node's db_worker and the server.
//
// On every connection it says hello (token, site id, its cursor for the server), then pushes
// every change of its own that the server has not acknowledged (from the welcome's
// client_acked_db_version) and receives everything since its cursor. Forwarded batches go to
// the db_worker, whose merge records the server's version in the peer-tracking table; only
// after that merge committed does it send the ClientAck. A server Ack is recorded in the
// peer table (PeerAckRequest) and releases the callers waiting for it.
//
// Local writes never wait for the network: the db_worker commits them and publishes their
// row deltas; the syncer, subscribed to them, pushes when the link is up (at most
// `push_window` pushes unacknowledged) and otherwise keeps them for the next connection.
// Lost connections are retried with exponential backoff and full jitter.
//
// Callers learn why at once: while the server was never reached in this run (no welcome),
// a failed attempt (connection refused, unknown host, TLS or WebSocket handshake, a refusal
// before the welcome) answers every waiting caller with that cause; the syncer keeps
// retrying behind them. Once the server was reached, callers wait (within their own
// timeout) for a reconnection, and last_error_atom says what the last attempt hit.
//
// The database is bound to one user and one server (runtime/sync/binding.hpp): before the
// first connection the syncer compares the token's subject (read without verifying it)
// and its URL with the binding, and never connects when they differ; the first welcome
// records the binding. An exit message (stopping the node) answers every waiting caller.
//
// Large values (docs/protocol.md, "Large values"): pushes are bounded by bytes as well as
// changes, a push larger than a fragment goes out as Fragment frames, at most
// push_window_bytes of pushes are unacknowledged (one larger push alone), and a forward in
// fragments is merged only once whole (a lost connection drops the part received).
//
// The protocol's decisions live in runtime/sync/client_core (a pure state machine, tested
// without actors or sockets); this actor turns its messages into the core's events and
// carries out what the core asks (frames to send, db_worker requests, timers, answers). The
// WebSocket connection is a runtime/net Connection; its callbacks post to this actor,
// tagged with the attempt's generation so that late events of an old connection are ignored.
// Those messages and the reconnect timer are the actor's own: they are not in the public
// interface below (peer_syncer.cpp extends it privately).
#pragma once

#include "proto/caf_glue.hpp"
#include "proto/change.pb.h"
TANDEM_PROTO_CAF_GLUE(tandem::change)

#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "actors/db_worker.hpp"
#include "runtime/net/websocket.hpp"
#include "runtime/sync/client_core.hpp"

namespace tandem::actors {

using wait_acked_atom = caf::atom_constant<caf::atom("waitacked")>;
using caught_up_atom = caf::atom_constant<caf::atom("caughtup")>;
using online_atom = caf::atom_constant<caf::atom("online")>;
using last_error_atom = caf::atom_constant<caf::atom("lasterror")>;

// What other actors send a peer_syncer.
using peer_syncer_actor = caf::typed_actor<
    // Committed deltas, from a worker that does not tell own changes (a node proxy).
    caf::reacts_to<change::RowDeltaBatch>,
    caf::reacts_to<worker::LocalCommit>,                       // a local commit with its own changes
    // Answers (with the server's acknowledged version) once the server durably holds every
    // change of this node up to `db_version`. Errors when the server refused us for good.
    caf::replies_to<wait_acked_atom, int64_t>::with<int64_t>,
    // Answers (own changes the server holds up to, server cursor) once connected, everything
    // local is pushed and acknowledged, and everything the server had is merged.
    caf::replies_to<caught_up_atom>::with<int64_t, int64_t>,
    caf::reacts_to<online_atom, bool>,                         // go offline / online
    // Why the last connection attempt or connection failed ("" if none did).
    caf::replies_to<last_error_atom>::with<std::string>>;

// The protocol's settings (url, token, schema, client_name, push batches, backoff, seed,
// start_online: runtime/sync/client_core.hpp) and the transport's.
struct PeerSyncerConfig : sync_client::ClientSettings {
  net::ClientOptions client;
  std::shared_ptr<net::EventLoop> loop;  // shared I/O threads
  std::chrono::milliseconds request_timeout{60000};  // db_worker requests
};

// Spawns the syncer of `worker`'s database for the server at config.url; it starts at once
// (reads its state from the worker, then connects unless config.start_online is false).
peer_syncer_actor spawn_peer_syncer(caf::actor_system& system, db_worker_actor worker, PeerSyncerConfig config);

}  // namespace tandem::actors
