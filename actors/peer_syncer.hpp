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
// The WebSocket connection is a runtime/net Connection; its callbacks post to this actor
// with caf::anon_send, tagged with the attempt's generation so that late events of an old
// connection are ignored.
#pragma once

#include "proto/caf_glue.hpp"
#include "proto/change.pb.h"
#include "proto/sync.pb.h"
TANDEM_PROTO_CAF_GLUE(tandem::change)
TANDEM_PROTO_CAF_GLUE(tandem::sync)

#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/db_worker.hpp"
#include "runtime/net/websocket.hpp"
#include "runtime/sync/backoff.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::actors {

using link_open_atom = caf::atom_constant<caf::atom("lnkopen")>;
using link_frame_atom = caf::atom_constant<caf::atom("lnkframe")>;
using link_closed_atom = caf::atom_constant<caf::atom("lnkclosed")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;
using wait_acked_atom = caf::atom_constant<caf::atom("waitacked")>;
using caught_up_atom = caf::atom_constant<caf::atom("caughtup")>;
using online_atom = caf::atom_constant<caf::atom("online")>;
using last_error_atom = caf::atom_constant<caf::atom("lasterror")>;

using peer_syncer_actor = caf::typed_actor<
    caf::reacts_to<link_open_atom, uint64_t>,                  // connection attempt finished
    caf::reacts_to<link_frame_atom, uint64_t, std::string>,    // a frame of that connection
    caf::reacts_to<link_closed_atom, uint64_t, std::string>,   // that connection is down (why)
    caf::reacts_to<reconnect_atom, uint64_t>,
    caf::reacts_to<change::RowDeltaBatch>,                     // the db_worker's committed deltas
    // Answers (with the server's acknowledged version) once the server durably holds every
    // change of this node up to `db_version`. Errors when the server refused us for good.
    caf::replies_to<wait_acked_atom, int64_t>::with<int64_t>,
    // Answers (own changes the server holds up to, server cursor) once connected, everything
    // local is pushed and acknowledged, and everything the server had is merged.
    caf::replies_to<caught_up_atom>::with<int64_t, int64_t>,
    caf::reacts_to<online_atom, bool>,                         // go offline / online
    // Why the last connection attempt or connection failed ("" if none did).
    caf::replies_to<last_error_atom>::with<std::string>>;

struct PeerSyncerConfig {
  std::string url;                       // ws://host:port/sync or wss://...
  std::string token;
  net::ClientOptions client;
  std::shared_ptr<net::EventLoop> loop;  // shared I/O threads
  std::vector<std::string> schema;       // CREATE TABLE statements, sent in the hello
  std::string client_name;
  size_t push_batch_changes = 2000;      // changes per push (cut at a db_version boundary)
  // Bytes of changes per push: rows up to this, or one larger row alone (in Fragments).
  size_t push_batch_bytes = size_t{4} << 20;
  std::chrono::milliseconds backoff_base{250};
  std::chrono::milliseconds backoff_cap{30000};
  std::chrono::milliseconds request_timeout{60000};  // db_worker requests
  uint64_t seed = 0;                     // jitter; 0: from the clock
  bool start_online = true;
};

// The net callbacks hand the connection over through this slot (not a message type).
struct LinkSlot {
  std::mutex mu;
  uint64_t generation = 0;
  std::shared_ptr<net::Connection> connection;
  std::string error;
};

struct peer_syncer_state {
  enum class Phase { starting, offline, connecting, awaiting_welcome, live };
  PeerSyncerConfig config;
  db_worker_actor worker;
  std::shared_ptr<LinkSlot> slot = std::make_shared<LinkSlot>();
  std::shared_ptr<net::Connection> connection;
  std::unique_ptr<sync_backoff::Backoff> backoff;
  Phase phase = Phase::starting;
  bool online = true;
  uint64_t generation = 0;

  std::string site;              // our 16-byte site id
  std::string instance;          // 16 random bytes of this run (hello.instance_id)
  std::string server_site;       // learned from the welcome (or the peer table at start)
  int64_t cursor = 0;            // highest server db_version merged here
  int64_t server_known = 0;      // highest server db_version we know exists
  int64_t local_version = 0;     // highest local db_version known (own writes)
  int64_t client_acked = 0;      // highest own db_version the server holds
  int64_t recorded_acked = 0;    // of which recorded in the peer table (told in the next hello)
  int64_t pushed_through = 0;    // own versions pushed (or found empty) on this connection
  int64_t push_from = 0;         // from_db_version of the next push (the previous push's to)
  bool resiting = false;         // taking a new site id (no connection meanwhile)
  std::string resume;            // set while version pushed_through + 1 is pushed in parts
  uint64_t push_seq = 0;
  uint32_t push_window = 16;
  uint64_t push_window_bytes = 0;  // from the welcome; 0: no byte window
  size_t fragment_bytes = sync_frames::kFragmentBytes;  // fits the server's max_frame_bytes
  struct InFlight {
    uint64_t seq;
    int64_t to;     // the push's to_db_version (of the read it came from)
    uint64_t bytes; // its serialized Push message
  };
  std::deque<InFlight> in_flight;
  uint64_t in_flight_bytes = 0;
  sync_frames::Reassembler fragments;  // a fragmented Forward under way
  bool reading = false;          // a ChangesSince request is out
  int merges_in_flight = 0;
  std::string fatal_error;       // the server refused us for good (token, version, data)
  std::string last_error;        // why the last attempt or connection failed
  bool ever_live = false;        // a welcome arrived in this run
  std::string token_user;        // the token's subject, unverified ("" when unreadable)
  std::string bound_user;        // the database's binding (empty: never synced)
  std::string bound_server;
  bool binding_refused = false;  // never connect again in this run

  std::vector<std::pair<int64_t, caf::typed_response_promise<int64_t>>> ack_waiters;
  std::vector<caf::typed_response_promise<int64_t, int64_t>> caught_up_waiters;
  static inline const char* name = "peer_syncer";
  ~peer_syncer_state() {
    if (connection) connection->close(net::kCloseGoingAway, "client stopping");
  }
};

peer_syncer_actor::behavior_type peer_syncer(peer_syncer_actor::stateful_pointer<peer_syncer_state> self,
                                             db_worker_actor worker, PeerSyncerConfig config);

}  // namespace tandem::actors
