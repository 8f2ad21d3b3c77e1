// The client side of the sync protocol (docs/protocol.md), without actors or sockets: the
// counterpart of ChannelCore. The peer_syncer actor owns one, turns its messages into the
// events below and carries out the Outbox each event returns, in order.
//
// What the core decides (the actor only relays):
//   - Phases: starting (reading the site, the peer table and the binding from the db_worker)
//     -> connecting -> awaiting_welcome -> live, and offline. Every connection attempt has a
//     generation; events of an older one (frames, a close, a timer, a read or a merge that
//     answers late) are ignored, so a dropped connection never acts again.
//   - Pushes: after the welcome, every own change after welcome.client_acked_db_version,
//     read from the db_worker in batches (count and bytes, cut inside a large version with a
//     resume token) and sent as contiguous Pushes, at most push_window of them and
//     push_window_bytes of bytes unacknowledged (one larger push alone). A lost connection
//     forgets what was in flight: the next welcome says where to start again.
//   - Forwards: merged by the db_worker in arrival order, each acknowledged (ClientAck) only
//     after its merge committed; a forward in Fragments is merged only once whole.
//   - Backfill (a late schema upgrade, docs/schema.md): when the welcome announces one, the
//     client is not caught up before it merged the forward that ends it.
//   - Re-sync (a compacted server, docs/protocol.md): when the welcome announces one, the
//     keys of the snapshot's forwards are collected, the last one is merged with a
//     reconcile of the rows the snapshot lacks, and nothing is pushed before that.
//   - Acks: recorded in the peer table before the callers waiting for them are answered, so
//     that the next hello (maybe of the next process) tells the server what it holds.
//   - Waiters (wait_acked, wait_caught_up) are answered with a value once the state allows,
//     or an error: a fatal refusal, or, until the server was reached in this run, the cause
//     of the attempt that ended a round of the URLs (every host of the list tried once).
//   - Reconnects with exponential backoff and full jitter (sync_backoff::Backoff, seeded
//     from the config), reset by a welcome; a fatal refusal waits the whole cap.
//   - The binding (runtime/sync/binding.hpp) is checked before the first connection, and
//     against the welcome's user; a mismatch stops the client for this run.
//   - SITE_CONFLICT: the db_worker takes a new site id, then the core connects again at once.
// Nothing here reads a clock or a random source: the seed and the instance id come in the
// config, time passes only as StartTimer actions and on_timer events. Not thread-safe: one
// owner (the peer_syncer's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "proto/change.pb.h"
#include "proto/sync.pb.h"
#include "proto/worker.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/backoff.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::sync_client {

enum class LogLevel { debug, info, warn, error, critical };

// Where the core's log lines go ("hop=client.<step> ..."); both may be empty (no logs).
struct LogSink {
  std::function<bool(LogLevel)> enabled;  // lines below it are not even built
  std::function<void(LogLevel, const std::string&)> write;
};

// What an application chooses (actors::PeerSyncerConfig extends it).
struct ClientSettings {
  std::string url;                       // ws://host:port/sync or wss://...
  // Other hosts of the same server cluster (docs/cluster.md): after a failed or lost
  // connection the next one is tried, in turn. The database is bound to `url`, and any of
  // these reaches the same channels.
  std::vector<std::string> also_urls;
  std::string token;
  std::vector<std::string> schema;       // CREATE TABLE statements, sent in the hello
  std::string client_name;
  size_t push_batch_changes = 2000;      // own changes per push (cut at a db_version boundary)
  // Bytes of changes per push: rows up to this, or one larger row alone (in Fragments).
  size_t push_batch_bytes = size_t{4} << 20;
  std::chrono::milliseconds backoff_base{250};
  std::chrono::milliseconds backoff_cap{30000};
  uint64_t seed = 0;                     // the jitter's (the peer_syncer takes 0 as: from the clock)
  bool start_online = true;
};

// ... and what the core's owner supplies besides.
struct ClientConfig : ClientSettings {
  std::string token_user;  // the token's subject, unverified ("" when unreadable)
  std::string instance;    // 16 random bytes of this run (hello.instance_id)
  LogSink log;
};

// What the actor does for the core. A db_worker request action holds the `request` to send
// and names its `Response`; the answer goes back to ClientCore::answer with the action
// (its request moved out), which carries what the answer must be matched with.
struct Connect {  // open a connection to `url`; its events carry `generation`
  uint64_t generation = 0;
  std::string url;
};
// Send on the current connection (nothing when there is none). A push goes in Fragments
// when larger than fragment_bytes (sync_frames::send_frames); 0: one frame whatever its size.
struct Send {
  sync::Envelope envelope;
  size_t fragment_bytes = 0;
};
struct CloseLink { std::string why; };       // close the current connection (normal close)
// Call on_timer(generation) after `delay`.
struct StartTimer {
  std::chrono::milliseconds delay{0};
  uint64_t generation = 0;
};
struct ReadStatus {};      // worker::StatusRequest -> on_status (a failure stops the actor)
// Committed deltas -> on_local_commit; local commits come with their own changes
// (request.own_changes: the push is built where the commit happened).
struct Subscribe { worker::SubscribeRequest request; };
struct ReadPeers {         // -> on_peers
  using Response = worker::PeersResponse;
  worker::PeersRequest request;
};
struct ReadBinding {       // -> on_binding
  using Response = worker::BindResponse;
  worker::BindRequest request;  // record = false: only read
};
struct RecordBinding {     // -> on_bound
  using Response = worker::BindResponse;
  worker::BindRequest request;
};
struct ReadChanges {       // -> on_changes_read(generation, ...)
  using Response = worker::ChangesSinceResponse;
  uint64_t generation = 0;
  worker::ChangesSinceRequest request;
};
struct MergeTicket {
  uint64_t generation = 0;
  uint64_t seq = 0;        // the forward's
  int64_t from = 0, to = 0;
  int changes = 0;
  bool backfill_done = false;  // the last forward of a backfill (Welcome.backfill)
  bool resync_done = false;    // the last forward of a re-sync's snapshot (Welcome.resync)
};
struct Merge {             // -> on_merged(ticket, ...)
  using Response = worker::MergeResponse;
  MergeTicket ticket;
  worker::MergeRequest request;
};
struct AckTicket {
  int64_t acked = 0;       // what the request records
  std::string site;        // our site id when it was sent (a new site id voids it)
};
struct RecordAck {         // -> on_ack_recorded(ticket, ...)
  using Response = worker::PeerStatus;
  AckTicket ticket;
  worker::PeerAckRequest request;
};
struct TakeNewSite {       // -> on_new_site(keep_through, ...)
  using Response = worker::NewSiteResponse;
  int64_t keep_through = 0;
  worker::NewSiteRequest request;
};
// Answer a waiter registered by wait_acked / wait_caught_up (the error's message is what
// the caller is told).
struct SettleAcked {
  uint64_t waiter = 0;
  Result<int64_t> value;
};
struct CaughtUp {
  int64_t client_acked = 0;  // own changes the server holds up to
  int64_t cursor = 0;        // server changes merged here up to
};
struct SettleCaughtUp {
  uint64_t waiter = 0;
  Result<CaughtUp> value;
};

using Action = std::variant<Connect, Send, CloseLink, StartTimer, ReadStatus, Subscribe, ReadPeers, ReadBinding,
                            RecordBinding, ReadChanges, Merge, RecordAck, TakeNewSite, SettleAcked, SettleCaughtUp>;
using Outbox = std::vector<Action>;

// A waiter's registration: answered now, or later by a Settle action naming it.
template <class T>
struct WaitAnswer {
  std::optional<Result<T>> now;  // empty: pending
  Outbox out;
};

class ClientCore {
 public:
  enum class Phase { starting, offline, connecting, awaiting_welcome, live };

  explicit ClientCore(ClientConfig config);

  // Start-up: learn the site and version, subscribe, read the peer table and the binding,
  // then connect (each step an action whose answer is the next event).
  Outbox start();
  Outbox on_status(const worker::StatusResponse& status);
  // The failed Result is a failed request (its rendering); the worker's own error is in the response.
  Outbox on_peers(const Result<worker::PeersResponse>& peers);
  Outbox on_binding(const Result<worker::BindResponse>& binding);
  Outbox on_bound(const Result<worker::BindResponse>& bound);

  // The connection of `generation` opened: whether the core still wants it (the actor
  // closes it as superseded otherwise), then on_link_opened or on_connect_failed.
  bool accepts_link(uint64_t generation) const;
  Outbox on_link_opened(uint64_t generation);
  Outbox on_connect_failed(uint64_t generation, const std::string& error);
  // The events of a connection or a timer of an older generation than the current one are
  // ignored (the actor need not filter them).
  Outbox on_frame(uint64_t generation, const std::string& frame);
  Outbox on_link_closed(uint64_t generation, const std::string& why);  // the actor already dropped it
  Outbox on_timer(uint64_t generation);                                  // a StartTimer's
  // Offline drops the link and stays down; online connects at once, with a fresh backoff.
  Outbox set_online(bool online);

  // The db_worker's committed deltas (only LOCAL ones matter).
  Outbox on_local_commit(const change::RowDeltaBatch& batch);
  // A local commit with the changes the worker read for it at once: pushed as they are when
  // the last read ended exactly where the commit began, else as on_local_commit(batch).
  Outbox on_local_commit(worker::LocalCommit&& commit);
  Outbox on_changes_read(uint64_t generation, Result<worker::ChangesSinceResponse>&& read);
  Outbox on_merged(const MergeTicket& ticket, const Result<worker::MergeResponse>& merged);
  Outbox on_ack_recorded(const AckTicket& ticket, const Result<worker::PeerStatus>& recorded);
  Outbox on_new_site(int64_t keep_through, const Result<worker::NewSiteResponse>& fresh);
  // The same events, by the request action they answer (for a relay generic over requests).
  Outbox answer(const ReadPeers&, Result<worker::PeersResponse>&& r) { return on_peers(r); }
  Outbox answer(const ReadBinding&, Result<worker::BindResponse>&& r) { return on_binding(r); }
  Outbox answer(const RecordBinding&, Result<worker::BindResponse>&& r) { return on_bound(r); }
  Outbox answer(const ReadChanges& a, Result<worker::ChangesSinceResponse>&& r) { return on_changes_read(a.generation, std::move(r)); }
  Outbox answer(const Merge& a, Result<worker::MergeResponse>&& r) { return on_merged(a.ticket, r); }
  Outbox answer(const RecordAck& a, Result<worker::PeerStatus>&& r) { return on_ack_recorded(a.ticket, r); }
  Outbox answer(const TakeNewSite& a, Result<worker::NewSiteResponse>&& r) { return on_new_site(a.keep_through, r); }

  // Once the server durably holds every change of ours up to `version`: the version it
  // acknowledged. `waiter` names the later SettleAcked.
  WaitAnswer<int64_t> wait_acked(int64_t version, uint64_t waiter);
  // Once connected, everything local pushed and acknowledged (and recorded), and everything
  // the server had merged.
  WaitAnswer<CaughtUp> wait_caught_up(uint64_t waiter);
  // Answers every waiter with `why` (the node is stopping); the core itself goes on.
  Outbox fail_waiters(const std::string& why);

  const std::string& last_error() const { return last_error_; }  // "" if no attempt failed
  uint64_t generation() const { return generation_; }
  Phase phase() const { return phase_; }
  bool online() const { return online_; }
  int64_t cursor() const { return cursor_; }
  int64_t client_acked() const { return client_acked_; }
  const std::string& site() const { return site_; }
  const std::string& fatal_error() const { return fatal_error_; }
  size_t pushes_in_flight() const { return in_flight_.size(); }
  uint64_t push_bytes_in_flight() const { return in_flight_bytes_; }
  bool caught_up() const;

 private:
  struct InFlight {
    uint64_t seq;
    int64_t to;      // the push's to_db_version (of the read it came from)
    uint64_t bytes;  // its serialized Push message
  };

  void log(LogLevel level, const std::function<std::string()>& line) const;
  void send(Outbox& out, sync::Envelope envelope, bool fragmentable = false) const;
  void settle_waiters(Outbox& out);
  void fail_all(Outbox& out, const std::string& why);
  void attempt_failed(Outbox& out, const std::string& why);
  void refuse_binding(Outbox& out, const std::string& why);
  void connect(Outbox& out);
  void schedule_reconnect(Outbox& out);
  void drop_link(Outbox& out, const std::string& why);
  void protocol_failure(Outbox& out, const sync::Error& error, const std::string& why);
  void try_push(Outbox& out);
  // Records client_acked_, and the server's cursor when `received` > 0 (Ack.forwarded_db_version).
  void record_ack(Outbox& out, int64_t received = 0);
  void on_envelope(Outbox& out, sync::Envelope& e);
  void on_welcome(Outbox& out, const sync::Welcome& w);
  void on_ack(Outbox& out, const sync::Ack& ack);
  void on_forward(Outbox& out, sync::Forward& forward);
  void on_server_error(Outbox& out, const sync::Error& error);

  ClientConfig config_;
  sync_backoff::Backoff backoff_;
  Phase phase_ = Phase::starting;
  bool online_ = true;
  bool link_up_ = false;         // the actor holds a connection of generation_
  uint64_t generation_ = 0;

  std::string site_;             // our 16-byte site id
  std::string server_site_;      // learned from the welcome (or the peer table at start)
  int64_t cursor_ = 0;           // highest server db_version merged here
  int64_t server_known_ = 0;     // highest server db_version we know exists
  int64_t local_version_ = 0;    // highest local db_version known (own writes)
  int64_t client_acked_ = 0;     // highest own db_version the server holds
  int64_t recorded_acked_ = 0;   // of which recorded in the peer table (told in the next hello)
  int64_t pushed_through_ = 0;   // own versions pushed (or found empty) on this connection
  int64_t push_from_ = 0;        // from_db_version of the next push (the previous push's to)
  bool resiting_ = false;        // taking a new site id (no connection meanwhile)
  std::string resume_;           // set while version pushed_through_ + 1 is pushed in parts
  uint64_t push_seq_ = 0;
  uint32_t push_window_ = 16;
  uint64_t push_window_bytes_ = 0;  // from the welcome; 0: no byte window
  size_t fragment_bytes_ = sync_frames::kFragmentBytes;  // fits the server's max_frame_bytes
  std::deque<InFlight> in_flight_;
  uint64_t in_flight_bytes_ = 0;
  sync_frames::Reassembler fragments_;  // a fragmented Forward under way
  bool reading_ = false;         // a ReadChanges is out
  int merges_in_flight_ = 0;
  bool backfilling_ = false;     // the welcome announced a backfill whose last forward is not merged yet
  // A re-sync (Welcome.resync, docs/protocol.md): pushes wait until the forward reaching
  // resync_through_ merged, together with Store::reconcile_snapshot of the rows the
  // snapshot carried (collected here as its forwards arrive).
  bool resyncing_ = false;
  int64_t resync_through_ = 0;
  int64_t resync_acked_ = 0;     // own changes the server acknowledged before the re-sync
  int64_t compacted_cl_ = 0;     // Welcome.compacted_cl
  SnapshotKeys snapshot_keys_;
  std::string fatal_error_;      // the server refused us for good (token, version, data, binding)
  std::string last_error_;       // why the last attempt or connection failed
  bool ever_live_ = false;       // a welcome arrived in this run
  // Every URL of the list failed once, before any welcome: a waiter arriving now fails at
  // once. One refused host of several is not enough (a waiter must not fail while another
  // host of the cluster is still to be tried).
  bool round_failed_ = false;
  std::string bound_user_;       // the database's binding (empty: never synced)
  std::string bound_server_;
  size_t url_index_ = 0;  // which of url, also_urls... the next connection goes to
  bool can_push() const;  // connected, no read out, room in the push window
  // Tells the worker (a Subscribe) whether local commits should come with their own changes,
  // when that differs from what it was told last (`first`: tell it in any case).
  void tell_attach(Outbox& out, bool attach, bool first = false);
  bool subscribed_ = false;   // the own-changes subscription was sent
  bool attach_told_ = false;  // what it asked for last
  worker::ChangesSinceRequest push_read() const;  // the read of the next push, from pushed_through_
  const std::string& current_url() const;
  void next_url();
  // The binding check against every URL of the cluster: allowed when one of them matches.
  Status binding_allows(const std::string& stored_user, const std::string& stored_server, const std::string& user) const;
  bool binding_refused_ = false; // never connect again in this run

  std::vector<std::pair<int64_t, uint64_t>> ack_waiters_;  // (version, waiter)
  std::vector<uint64_t> caught_up_waiters_;
};

}  // namespace tandem::sync_client
