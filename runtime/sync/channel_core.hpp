// The server side of one user's channel, without actors: the user's Store, the sessions
// (client connections) joined to it, what each has pushed, been acknowledged, been
// forwarded and has acknowledged. The channel actor owns one and relays its Outbox.
//
// Durability and ordering (docs/protocol.md has the client's view):
//   - push() only queues. flush() merges every queued push, then makes all of them durable
//     with one fsync (group commit: every merge but the last is a deferred commit, and the
//     last one's fsync of the WAL, which holds every frame before it, makes all durable;
//     see CommitSync in store.hpp), and only then produces the Acks. An Ack therefore never names a change that a crash or
//     power loss could take back.
//   - Forwards carry changes_since(cursor) of the channel, minus the changes that originated
//     at the receiving client, in db_version order; each session's forwards are contiguous
//     and at most `forward_window` are unacknowledged at once. Sessions at the same cursor
//     share one read of the change log (fan-out costs one query, not one per session).
//   - A hello declaring tables or columns its site is not covered for (a late schema upgrade,
//     runtime/sync/backfill.hpp) gets them first, as backfill forwards with an empty range at
//     its cursor, read from version 0; its coverage is recorded in the file once the client
//     acknowledged the last of them.
//   - Replica links (runtime/sync/channel_replica.cpp): another server host's channel of the
//     same user joins as a member that pushes nothing and is forwarded everything; it merges
//     and acknowledges like a client, naming its own db_version, which gives the pairs that
//     translate a client's cursor of that host into this one's. With write_quorum W > 1 an
//     Ack waits until W - 1 links acknowledged the versions it covers.
//   - A join whose cursor is below the store's compaction horizon (Store::compacted_through)
//     re-syncs: Welcome.resync, and forwards from 0 that include the client's own changes
//     up to the join's db_version (docs/protocol.md, "Re-sync").
//   - What each client acknowledged is kept in memory and written to the store's peer table
//     by checkpoint() (the channel actor calls it periodically and before closing) and when
//     the session leaves; losing it in a crash only means some changes are forwarded again,
//     which merges ignore.
// Not thread-safe: one owner (the channel actor's thread).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "proto/sync.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/schema_sync.hpp"

namespace tandem::sync_channel {

struct ChannelOptions {
  uint32_t push_window = 16;            // unacknowledged pushes a client may have (told in Welcome)
  uint32_t forward_window = 4;          // unacknowledged forwards per session
  size_t forward_batch_changes = 5000;  // changes per forward (cut at a db_version boundary)
  // Bytes of changes per forward: a forward holds rows up to this, or one larger row alone
  // (sent in Fragments, docs/protocol.md).
  size_t forward_batch_bytes = size_t{4} << 20;
  // No further forward while the unacknowledged ones hold this many bytes (one larger
  // forward may be in flight alone): a session's send queue holds at most about one big value.
  size_t forward_window_bytes = size_t{8} << 20;
  uint64_t push_window_bytes = uint64_t{8} << 20;  // told in Welcome; enforced in push()
  uint32_t max_frame_bytes = 16u << 20; // told in Welcome
  std::string vfs;                      // SQLite VFS of the channel's file (tests: fault injection)
  // Copies of a merged push that must be durable before its Ack: this host's and
  // write_quorum - 1 replica links' (docs/cluster.md). 1: this host's alone.
  uint32_t write_quorum = 1;
  // Copies of the channel the cluster keeps: this one and replicas - 1 links (the channel
  // actor asks the directory for links while it has fewer).
  uint32_t replicas = 1;
  // A member of a cluster (the channel actor's concern): a channel opened here first
  // catches up from another host's copy before it serves, even with replicas = 1.
  bool cluster = false;
  // How long an Ack may wait for the quorum; then its session gets a retryable UNAVAILABLE.
  std::chrono::milliseconds quorum_timeout{5000};
  // Metadata compaction (ChannelCore::compact) when the channel closes, forgetting peers
  // unseen for peer_expiry_seconds (0: peers never expire).
  bool compact_on_close = true;
  int64_t peer_expiry_seconds = 0;
};

struct Outgoing {
  uint64_t session = 0;
  sync::Envelope envelope;
  bool close_after = false;  // a fatal error: the session closes after sending it
};
using Outbox = std::vector<Outgoing>;

// One joined session as the server's status page shows it (ChannelCore::sessions()).
struct SessionInfo {
  uint64_t session = 0;
  SiteId site{};
  std::string name;          // hello.client_name
  int64_t acked = 0;         // server db_version the client acknowledged holding (its cursor)
  int64_t sent = 0;          // server db_version forwarded through
  int64_t joined_ms = 0;     // wall clock of the join, ms since the Unix epoch
  int64_t last_seen_ms = 0;  // wall clock of its last join, push or client ack
  uint64_t pushes = 0;       // pushes received in this session
  bool replica = false;      // a replica link (another host's channel), not a device
};

struct ChannelStats {
  int64_t merges = 0;          // merge transactions
  int64_t group_commits = 0;   // fsyncs that made merges durable
  int64_t changes_merged = 0;  // incoming changes in merged batches
  int64_t changes_applied = 0; // of which won
  int64_t forwards = 0;
  int64_t change_reads = 0;    // changes_since calls (shared across sessions at one cursor)
  int64_t recent_reads = 0;    // reads served from the recent reads instead
  // Time in the durable step of group commits: each group's last merge, which commits with
  // synchronous=FULL (the WAL fsync), and Store::sync() when that commit could not sync.
  int64_t sync_nanos = 0;
};

class ChannelCore {
 public:
  // Opens (creating the directory's file if needed) the user's store at `path`.
  static Result<std::unique_ptr<ChannelCore>> open(const std::string& path, const ChannelOptions& options = {});
  ~ChannelCore();

  // Adds a session for a hello already authenticated for this channel's user: adopts the
  // hello's tables, and returns the Welcome followed by the catch-up forwards.
  Result<Outbox> join(uint64_t session, const std::string& user, const sync::Hello& hello);
  // Removes a session (its acknowledged cursor is recorded). Unknown sessions are ignored.
  void leave(uint64_t session);
  // Queues a push of a joined session. A push out of sequence, over the window (count, or
  // bytes: sent while the unacknowledged pushes already held push_window_bytes), from
  // another site or with a bad range is refused (the caller sends a fatal PROTOCOL error).
  Status push(uint64_t session, sync::Push push);
  bool has_pending() const { return pending_pushes_ > 0; }
  // Merges and durably commits every queued push; acks, errors for refused batches, and
  // the forwards the new changes cause.
  Outbox flush();
  // A client acknowledged forwards up to ack.seq; may release more forwards. From a replica
  // link, `replica_db_version` is its db_version once those forwards were durable there,
  // and the ack may release Acks waiting for the write quorum.
  Result<Outbox> client_ack(uint64_t session, const sync::ClientAck& ack, int64_t replica_db_version = 0);

  // Adds a replica link: the same user's channel on another server host (its hello names
  // that channel's site and tables, which are adopted). It is forwarded every change from
  // what it acknowledged last, and pushes nothing.
  Result<Outbox> join_replica(uint64_t session, const std::string& user, const sync::Hello& hello);
  // The hello with which this channel joins the same user's channel on another host.
  Result<sync::Hello> replica_hello();
  struct ReplicaMerge {
    sync::ClientAck ack;     // for the sender
    int64_t db_version = 0;  // this channel's, once the forward is durable here
    Outbox out;              // forwards to this channel's own sessions
  };
  // Merges a forward received over a replica link, durably (what the link's ack promises).
  Result<ReplicaMerge> merge_replica(const sync::Forward& forward);
  // Fails the Acks that waited for the write quorum since before `now - quorum_timeout`.
  Outbox expire_quorum(std::chrono::steady_clock::time_point now);
  // The highest db_version held durably by write_quorum copies (this one's and its links').
  int64_t quorum_version() const;
  bool waiting_for_quorum() const { return !quorum_waiting_.empty(); }
  // Records every session's acknowledged cursor (periodically, and before the file is
  // closed), in one transaction. Nothing to do when no cursor moved.
  Status checkpoint();
  bool has_unrecorded_acks() const;
  // Records the cursors, then compacts the store (Store::compact): peers unseen for
  // `peer_expiry` seconds at `now` (0: none expire) are forgotten, and tombstones every
  // remaining peer and every joined session acknowledged are removed. A client whose cursor
  // falls below the horizon re-syncs at its next join (Welcome.resync).
  Result<CompactReport> compact(int64_t now, int64_t peer_expiry);

  // Where flush() and client_ack() put each message as it is produced, instead of in the
  // Outbox they return: the channel actor sends it at once, so the first session of a
  // fan-out to many does not wait for the last one's forward to be built. Messages that
  // close their session (close_after) still come back in the Outbox, for the caller to act
  // on. join() returns everything (its caller registers the session first).
  using Emit = std::function<void(Outgoing&&)>;
  void set_emit(Emit emit) { emit_ = std::move(emit); }

  size_t session_count() const { return members_.size(); }
  // Every joined session, by session id.
  std::vector<SessionInfo> sessions() const;
  int64_t db_version() const;
  const SiteId& site_id() const;
  const ChannelStats& stats() const { return stats_; }
  size_t recent_read_count() const { return recent_reads_.size(); }  // reads kept across pumps
  Store& store() { return *store_; }

 private:
  struct Member {
    SiteId site{};
    bool replica = false;          // a replica link (join_replica), not a client
    uint64_t schema_sent = 0;      // replica links: the schema_epoch_ last forwarded
    std::string instance;          // hello.instance_id
    sync_schema::DeclaredColumns tables;  // declared in the hello (lower case); empty: every table
    std::string name;
    uint64_t last_push_seq = 0;
    int64_t next_push_from = 0;  // the from_db_version the next push must have
    uint64_t acked_push_seq = 0;
    uint64_t next_forward_seq = 1;
    int64_t sent = 0;   // server db_version forwarded through
    std::string resume; // set while version sent + 1 is forwarded in parts
    int64_t acked = 0;  // server db_version the client acknowledged holding
    bool ack_dirty = false;
    int64_t joined_ms = 0;     // wall clock, for the status page (SessionInfo)
    int64_t last_seen_ms = 0;
    uint64_t pushes = 0;
    struct InFlight {
      uint64_t seq;
      int64_t to;     // the forward's to_db_version
      size_t bytes;   // its serialized Forward message
    };
    std::deque<InFlight> in_flight;
    size_t in_flight_bytes = 0;
    std::vector<sync::Push> pending;
    uint64_t pending_bytes = 0;  // serialized Push messages in `pending`
    // A late upgrade's backfill (runtime/sync/backfill.hpp), forwarded before the ordinary
    // stream; reset once the client acknowledged its last forward.
    struct Backfill {
      sync_schema::DeclaredColumns columns;  // table -> columns (none listed: the whole table)
      int64_t through = 0;       // the join's forward_from: later changes come by the stream
      int64_t read_from = 0;     // server db_version read through so far
      std::string resume;        // set while version read_from + 1 is read in parts
      uint64_t done_seq = 0;     // the forward carrying backfill_done (0: not sent yet)
    };
    std::optional<Backfill> backfill;
    // A re-sync (Welcome.resync) under way: the forwards up to this server db_version are
    // the snapshot, and carry the client's own changes too. 0: none (or sent whole).
    int64_t resync_through = 0;
  };
  struct CachedRead {
    change::ChangeBatch batch;
    int users = 0;  // sessions at this point when it was read that have not taken it yet
  };
  using ReadCache = std::map<std::pair<int64_t, std::string>, CachedRead>;
  using ReadKey = std::pair<int64_t, std::string>;  // (since, resume_after) of a read

  // Reads of the change log kept across pumps, the newest few (kRecentReads, kRecentBytes):
  // sessions reach the same cursor at different moments (ten devices pushing at once had
  // each range read from SQLite ten times or more), and a range read once serves them all.
  // A later read from the same point could reach further (versions committed since: the
  // session reads on from where this one ends) or hold a cell at a newer version instead (a
  // cell changed again since); forwarding the older state first is safe, merges being
  // idempotent and commutative and the newer state following in a later forward. Never for
  // a re-sync's snapshot, nor kept for a read from 0: a snapshot must show the store as it is
  // now (Store::reconcile_snapshot). Dropped by compaction. Kept only while two sessions or
  // more are joined (one session never reads a range twice), and small: a server holds a
  // channel per active user, and typical reads are tens of KiB (4 MiB still keeps one
  // forward of the largest size).
  static constexpr size_t kRecentReads = 16;
  static constexpr size_t kRecentBytes = size_t{4} << 20;
  void forget_recent_reads();
  const change::ChangeBatch* recent_read(const ReadKey& key) const;
  void remember_read(const ReadKey& key, const change::ChangeBatch& batch);
  std::map<ReadKey, std::pair<change::ChangeBatch, size_t>> recent_reads_;  // batch, its bytes
  std::deque<ReadKey> recent_order_;  // oldest first
  size_t recent_bytes_ = 0;

  // Sets emitting_ for one scope (flush, client_ack, merge_replica).
  struct EmitScope {
    bool& flag;
    explicit EmitScope(bool& f) : flag(f) { flag = true; }
    ~EmitScope() { flag = false; }
  };

  ChannelCore(std::unique_ptr<Store> store, const ChannelOptions& options);
  void pump(uint64_t session, Member& m, ReadCache& cache, Outbox& out);
  // When the join's cursor `*from` is below the compaction horizon: forwards start from 0
  // as a snapshot (`*from` = 0, m.resync_through set); true then.
  bool start_resync(Member& m, int64_t* from);
  // To emit_ while emitting_ (and the message keeps its session open), else into `out`.
  void put(Outbox& out, Outgoing&& o);
  // Sends backfill forwards while the window allows; false when the backfill still holds
  // the ordinary stream back (not all of it sent).
  bool pump_backfill(uint64_t session, Member& m, Outbox& out);
  void send_forward(uint64_t session, Member& m, change::ChangeBatch batch, int64_t to, bool backfill_done, Outbox& out);
  Outgoing welcome(uint64_t session, const std::string& user, int64_t client_acked, int64_t from, bool backfill,
                   bool resync = false) const;
  // Replica links (channel_replica.cpp).
  // What a forward to a replica link carries besides its batch: the devices' received
  // versions when it reaches the head, the schema when it changed since the last one.
  void add_replica_state(Member& m, int64_t to, sync::Forward& forward);
  // A client's cursor of another host of this channel, as a version of this one (the pairs
  // recorded from that host's link acks); nullopt when no pair applies.
  std::optional<int64_t> translate_cursor(const std::string& server_site, int64_t cursor);
  // Whether a device's acked_db_version of `server_site` counts here: this file's own site,
  // one it had before a restore (server_lineage.hpp), or another host of the channel (its
  // link acked here, or a pair was recorded).
  bool honours_acked_of(const std::string& server_site);
  Result<std::vector<std::pair<int64_t, int64_t>>*> pairs_of(const SiteId& site);
  Status refresh_schema();
  void release_quorum(Outbox& out);

  std::unique_ptr<Store> store_;
  ChannelOptions options_;
  Emit emit_;
  bool emitting_ = false;  // inside flush() or client_ack()
  std::map<uint64_t, Member> members_;
  size_t pending_pushes_ = 0;
  bool durability_owed_ = false;  // merges were committed without the fsync their acks need
  // Per site, the hello.instance_id of the connection whose push was merged last (kept only
  // while the channel is open): an ack lost with its connection is no site conflict.
  std::map<SiteId, std::string> last_pusher_;
  std::set<std::string> former_sites_;  // site_bytes of the file's ids before restores
  ChannelStats stats_;
  // Replica links: per other host's site, pairs (our version t, its version r) meaning every
  // change here up to t is held there at r; loaded from and recorded to a note.
  std::map<SiteId, std::vector<std::pair<int64_t, int64_t>>> pairs_;
  std::set<SiteId> pairs_dirty_;
  // Per linked host's site, ranges (from, to] of our versions made by merging its forwards,
  // ascending: not forwarded back to it, which sent them (an echo doubled a replica's merge
  // work). In memory only: after a restart an echo costs work, not correctness.
  std::map<SiteId, std::vector<std::pair<int64_t, int64_t>>> echoes_;
  void note_echo(const SiteId& from_host, int64_t before, int64_t after);
  // Drops from `batch` what `m` (a replica link) sent us; forgets ranges it is past.
  void drop_echoes(const Member& m, change::ChangeBatch& batch);
  std::vector<std::string> schema_;  // table_statements() of the store
  uint64_t schema_epoch_ = 0;
  struct WaitingAck {
    std::chrono::steady_clock::time_point since;
    int64_t needs = 0;  // the quorum must hold this version
    Outgoing ack;
  };
  std::deque<WaitingAck> quorum_waiting_;
};

// The changes that did not originate at `site`; the range is kept.
change::ChangeBatch without_site(const change::ChangeBatch& batch, const SiteId& site);
// The same, also leaving out tables not in `tables` and columns not listed for their table
// (lower-case names; empty: keep all): a device on an older schema cannot merge them.
change::ChangeBatch for_client(const change::ChangeBatch& batch, const SiteId& site, const sync_schema::DeclaredColumns& tables);
change::ChangeBatch for_client(change::ChangeBatch&& batch, const SiteId& site, const sync_schema::DeclaredColumns& tables);

// A replica link's pairs as the file keeps them: one note per other host's site, "t:r" pairs
// separated by commas, ascending. decode_pairs is nullopt for a malformed note.
std::string pairs_note_key(const SiteId& site);
std::string encode_pairs(const std::vector<std::pair<int64_t, int64_t>>& pairs);
std::optional<std::vector<std::pair<int64_t, int64_t>>> decode_pairs(const std::string& text);

}  // namespace tandem::sync_channel
