#include "runtime/sync/channel_core.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "runtime/sync/backfill.hpp"
#include "runtime/sync/frames.hpp"
#include "runtime/sync/schema_sync.hpp"
#include "runtime/sync/server_lineage.hpp"

namespace tandem::sync_channel {
namespace {

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

int64_t elapsed_nanos(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - since).count();
}

Status make_parent_dirs(const std::string& path) {
  for (size_t pos = path.find('/', 1); pos != std::string::npos; pos = path.find('/', pos + 1)) {
    const std::string dir = path.substr(0, pos);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      return Status::Internal("cannot create directory '" + dir + "': " + std::strerror(errno));
  }
  return Status::Ok();
}

// SQLite table names are case-insensitive (ASCII).
std::string lower(std::string s) {
  for (auto& ch : s)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return s;
}

// Takes the batch by value: a caller done with its batch moves it in, and large values are
// then moved, not copied.
// `site` null: every site's changes are kept (a re-sync's snapshot).
change::ChangeBatch filter_site(change::ChangeBatch batch, const SiteId* site, bool keep_site,
                                const sync_schema::DeclaredColumns* tables = nullptr) {
  change::ChangeBatch out;
  out.set_sender_site_id(batch.sender_site_id());
  out.set_from_db_version(batch.from_db_version());
  out.set_to_db_version(batch.to_db_version());
  out.set_complete(batch.complete());
  out.set_resume_after(batch.resume_after());
  const std::string bytes = site ? site_bytes(*site) : std::string();
  for (auto& c : *batch.mutable_changes()) {
    if (site && (c.site_id() == bytes) != keep_site) continue;
    if (tables && !tables->empty()) {
      auto declared = tables->find(lower(c.table()));
      if (declared == tables->end()) continue;
      if (c.cid() != "-1" && !declared->second.count(lower(c.cid()))) continue;
    }
    *out.add_changes() = std::move(c);
  }
  return out;
}

}  // namespace

change::ChangeBatch without_site(const change::ChangeBatch& batch, const SiteId& site) {
  return filter_site(batch, &site, false);
}
change::ChangeBatch for_client(const change::ChangeBatch& batch, const SiteId& site, const sync_schema::DeclaredColumns& tables) {
  return filter_site(batch, &site, false, &tables);
}
change::ChangeBatch for_client(change::ChangeBatch&& batch, const SiteId& site, const sync_schema::DeclaredColumns& tables) {
  return filter_site(std::move(batch), &site, false, &tables);
}

Result<std::unique_ptr<ChannelCore>> ChannelCore::open(const std::string& path, const ChannelOptions& options) {
  TANDEM_RETURN_IF_ERROR(make_parent_dirs(path));
  StoreOptions store_options;
  // flush() asks each merge for its fsync (CommitSync); other writes need none of their own.
  store_options.open.synchronous_full = false;
  store_options.open.vfs = options.vfs;
  store_options.capture_row_images = false;
  store_options.allocate_keys = false;  // the server only merges: every row comes with its key
  TANDEM_ASSIGN_OR_RETURN(auto store, Store::open(path, store_options));
  TANDEM_ASSIGN_OR_RETURN(auto former, sync_lineage::former_sites(*store));
  std::unique_ptr<ChannelCore> core(new ChannelCore(std::move(store), options));
  for (const auto& site : former) core->former_sites_.insert(site_bytes(site));
  return core;
}

ChannelCore::ChannelCore(std::unique_ptr<Store> store, const ChannelOptions& options)
    : store_(std::move(store)), options_(options) {}

ChannelCore::~ChannelCore() { (void)checkpoint(); }

std::vector<SessionInfo> ChannelCore::sessions() const {
  std::vector<SessionInfo> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_)
    out.push_back({id, m.site, m.name, m.acked, m.sent, m.joined_ms, m.last_seen_ms, m.pushes, m.replica});
  return out;
}

int64_t ChannelCore::db_version() const { return store_->db_version(); }
const SiteId& ChannelCore::site_id() const { return store_->site_id(); }

Result<Outbox> ChannelCore::join(uint64_t session, const std::string& user, const sync::Hello& hello) {
  if (members_.count(session)) return Status::InvalidArgument("session already joined");
  auto site = site_from_bytes(hello.site_id());
  if (!site) return Status::InvalidArgument("hello.site_id must be 16 bytes");
  if (*site == store_->site_id()) return Status::InvalidArgument("client site id equals the server's");
  sync_schema::DeclaredColumns declared_columns;
  if (auto adopted = sync_schema::adopt_tables(*store_, {hello.schema().begin(), hello.schema().end()}, &declared_columns);
      !adopted.ok())
    return adopted.status();
  // The hello may have created or widened a table: links are sent the schema before its rows.
  if (std::any_of(members_.begin(), members_.end(), [](const auto& e) { return e.second.replica; }))
    TANDEM_RETURN_IF_ERROR(refresh_schema());
  if (durability_owed_) {
    // A failed group commit left merges on disk that were never fsync'd, and the welcome
    // below tells the client the server holds them: sync first, or refuse.
    Status synced = store_->sync();
    if (!synced.ok()) return Status::Unavailable("server could not commit durably: " + synced.message());
    durability_owed_ = false;
  }
  TANDEM_ASSIGN_OR_RETURN(PeerCursor cursor, store_->peer(*site));
  // One site id, one device: a device knows of every change of its site the server holds
  // (it records each ack), so holding more than the device knows of means another device
  // pushed under this id (a copied file), or an ack was lost on the way. Either way the
  // device's later changes would share (site id, db_version) with changes the server
  // already has, and be acked and dropped: it must take a new site id first.
  const int64_t device_acked = honours_acked_of(hello.server_site_id()) ? hello.acked_db_version() : 0;
  // Except when the push that took the server past what the device knows came from this
  // very process (hello.instance_id): pushes of a site form one contiguous chain, so every
  // push after the device's last ack is then its own, and only the ack was lost.
  auto pusher = last_pusher_.find(*site);
  const bool own_lost_ack = hello.instance_id().size() == 16 && pusher != last_pusher_.end() &&
                            pusher->second == hello.instance_id();
  if (cursor.received > device_acked && !own_lost_ack) {
    Outbox refused;
    refused.push_back({session,
                       sync_frames::error_envelope(
                           sync::Error::SITE_CONFLICT,
                           "site " + site_hex(*site) + " is also used by another device: the server holds its changes up to " +
                               std::to_string(cursor.received) + ", this device knows of " + std::to_string(device_acked) +
                               "; take a new site id",
                           true),
                       true});
    return refused;
  }

  Member m;
  m.site = *site;
  m.instance = hello.instance_id();
  m.tables = std::move(declared_columns);
  m.name = hello.client_name();
  int64_t from = cursor.acked;
  if (hello.server_site_id() == site_bytes(store_->site_id())) from = hello.cursor();
  else if (auto translated = translate_cursor(hello.server_site_id(), hello.cursor())) from = std::max(from, *translated);
  from = std::min(from, store_->db_version());
  const bool resync = start_resync(m, &from);
  m.sent = m.acked = from;
  m.joined_ms = m.last_seen_ms = wall_clock_ms();
  m.next_push_from = cursor.received;
  {
    // A late upgrade: what the device declares now but is not covered for comes first,
    // from the start of the history (runtime/sync/backfill.hpp).
    const std::string key = sync_backfill::covered_note_key(*site);
    TANDEM_ASSIGN_OR_RETURN(auto note, store_->note(key));
    std::optional<sync_schema::DeclaredColumns> covered;
    if (note) covered = sync_backfill::decode_columns(*note);  // unreadable: backfill everything
    auto plan = sync_backfill::plan(m.tables, covered, from);
    if (plan.record_now)
      TANDEM_RETURN_IF_ERROR(store_->put_notes({{key, sync_backfill::encode_columns(*plan.record_now)}}));
    if (!plan.backfill.empty()) {
      m.backfill.emplace();
      m.backfill->columns = std::move(plan.backfill);
      m.backfill->through = from;
    }
  }

  Outbox out;
  out.push_back(welcome(session, user, cursor.received, from, m.backfill.has_value(), resync));

  auto& member = members_[session] = std::move(m);
  ReadCache cache;
  pump(session, member, cache, out);
  return out;
}

Outgoing ChannelCore::welcome(uint64_t session, const std::string& user, int64_t client_acked, int64_t from,
                              bool backfill, bool resync) const {
  Outgoing welcome;
  welcome.session = session;
  auto* w = welcome.envelope.mutable_welcome();
  w->set_protocol_version(sync_frames::kProtocolVersion);
  w->set_user(user);
  w->set_server_site_id(site_bytes(store_->site_id()));
  w->set_server_db_version(store_->db_version());
  w->set_client_acked_db_version(client_acked);
  w->set_forward_from(from);
  w->set_push_window(options_.push_window);
  w->set_max_frame_bytes(options_.max_frame_bytes);
  w->set_max_message_bytes(sync_frames::kMaxMessageBytes);
  w->set_push_window_bytes(options_.push_window_bytes);
  w->set_backfill(backfill);
  w->set_resync(resync);
  w->set_compacted_through(store_->compacted_through());
  w->set_compacted_cl(store_->compacted_cl());
  return welcome;
}

void ChannelCore::leave(uint64_t session) {
  auto it = members_.find(session);
  if (it == members_.end()) return;
  pending_pushes_ -= it->second.pending.size();
  // Recorded also when no ack moved (it is the peer's last-seen time, for peer expiry), but
  // not for a device that holds nothing of ours: a peer at 0 would hold every compaction back.
  if (it->second.ack_dirty || it->second.acked > 0) (void)store_->record_peer_ack(it->second.site, it->second.acked);
  members_.erase(it);
  if (members_.size() < 2) forget_recent_reads();
}

Status ChannelCore::push(uint64_t session, sync::Push push) {
  auto it = members_.find(session);
  if (it == members_.end()) return Status::InvalidArgument("push from a session that has not joined");
  Member& m = it->second;
  if (m.replica) return Status::InvalidArgument("a replica link pushes nothing");
  m.last_seen_ms = wall_clock_ms();
  ++m.pushes;
  if (push.seq() != m.last_push_seq + 1)
    return Status::InvalidArgument("push seq " + std::to_string(push.seq()) + " out of order (expected " +
                                   std::to_string(m.last_push_seq + 1) + ")");
  if (push.seq() - m.acked_push_seq > options_.push_window)
    return Status::InvalidArgument("more than " + std::to_string(options_.push_window) + " unacknowledged pushes");
  // Pending pushes are a subset of those the client has not seen acknowledged, so a client
  // that keeps the byte window never trips this.
  if (options_.push_window_bytes > 0 && m.pending_bytes >= options_.push_window_bytes)
    return Status::InvalidArgument("push " + std::to_string(push.seq()) + " sent while " + std::to_string(m.pending_bytes) +
                                   " bytes of pushes were unacknowledged (window " +
                                   std::to_string(options_.push_window_bytes) + " bytes)");
  if (push.batch().sender_site_id() != site_bytes(m.site))
    return Status::InvalidArgument("push batch sender is not the hello's site id");
  const auto& batch = push.batch();
  if (batch.from_db_version() < 0 || batch.to_db_version() < batch.from_db_version())
    return Status::InvalidArgument("push batch has a bad version range");
  // Pushes are contiguous from what the welcome said the server holds: a push that starts
  // elsewhere would skip versions the server then claims to hold.
  if (batch.from_db_version() != m.next_push_from)
    return Status::InvalidArgument("push " + std::to_string(push.seq()) + " starts after version " +
                                   std::to_string(batch.from_db_version()) + ", the previous one ended at " +
                                   std::to_string(m.next_push_from));
  if (batch.changes_size() == 0) return Status::InvalidArgument("push " + std::to_string(push.seq()) + " carries no change");
  // Every change must lie in the range the batch claims (a part may also hold the first
  // rows of version to + 1, see ChangeBatch.resume_after): a change outside it would move
  // the server's clock to wherever the client likes and never be accounted for.
  const int64_t highest = batch.to_db_version() + (batch.resume_after().empty() ? 0 : 1);
  int64_t last_change = 0;
  for (int i = 0; i < batch.changes_size(); ++i) {
    const int64_t v = batch.changes(i).db_version();
    if (v <= batch.from_db_version() || v > highest)
      return Status::InvalidArgument("push change " + std::to_string(i) + " has db_version " + std::to_string(v) +
                                     " outside its batch's range (" + std::to_string(batch.from_db_version()) + ", " +
                                     std::to_string(batch.to_db_version()) + "]");
    last_change = std::max(last_change, v);
  }
  // The range ends at a change the push carries: the server never claims to hold versions
  // of the device that nobody showed it.
  if (batch.to_db_version() > last_change)
    return Status::InvalidArgument("push " + std::to_string(push.seq()) + " claims versions up to " +
                                   std::to_string(batch.to_db_version()) + " but its last change is at " +
                                   std::to_string(last_change));
  m.next_push_from = batch.to_db_version();
  m.last_push_seq = push.seq();
  m.pending_bytes += push.ByteSizeLong();
  m.pending.push_back(std::move(push));
  ++pending_pushes_;
  return Status::Ok();
}


void ChannelCore::put(Outbox& out, Outgoing&& o) {
  if (emitting_ && emit_ && !o.close_after)
    emit_(std::move(o));
  else
    out.push_back(std::move(o));
}

Outbox ChannelCore::flush() {
  EmitScope emitting(emitting_);
  Outbox out;
  // One merge per session per flush: a session's queued batches are contiguous, so they
  // are one batch.
  struct Job {
    uint64_t session;
    uint64_t last_seq;
    change::ChangeBatch batch;
  };
  std::vector<Job> jobs;
  for (auto& [session, m] : members_) {
    if (m.pending.empty()) continue;
    // (Checked against the store at merge time below: another session of the same site
    // may have pushed since this one joined.) Moved, not copied: a push may hold a value of
    // hundreds of MiB.
    Job job{session, m.pending.back().seq(), std::move(*m.pending.front().mutable_batch())};
    for (size_t i = 1; i < m.pending.size(); ++i) {
      auto* b = m.pending[i].mutable_batch();
      for (auto& c : *b->mutable_changes()) *job.batch.add_changes() = std::move(c);
      job.batch.set_to_db_version(std::max(job.batch.to_db_version(), b->to_db_version()));
    }
    pending_pushes_ -= m.pending.size();
    m.pending.clear();
    m.pending_bytes = 0;
    jobs.push_back(std::move(job));
  }
  if (jobs.empty()) return out;
  const int64_t before = store_->db_version();

  // Group commit: every merge but the last is deferred (no fsync); the last one commits with
  // an fsync of the WAL, which makes all of them durable. If the last one is refused, or its
  // fsync could not be asked for, Store::sync() does that fsync instead.
  std::vector<SiteId> merged_sites;
  std::vector<std::pair<uint64_t, uint64_t>> to_ack;  // session, last push seq
  bool synced = false;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const bool last = j + 1 == jobs.size();
    {
      const SiteId& site = members_.at(jobs[j].session).site;
      auto held = store_->peer(site);
      if (held.ok() && held->received != jobs[j].batch.from_db_version()) {
        // Another connection pushed under this site id since this one joined: two devices
        // share it. Nothing of this batch is merged; the device takes a new site id.
        out.push_back({jobs[j].session,
                       sync_frames::error_envelope(sync::Error::SITE_CONFLICT,
                                                   "site " + site_hex(site) + " is also used by another device: the server " +
                                                       "holds its changes up to " + std::to_string(held->received) +
                                                       ", this push continues from " +
                                                       std::to_string(jobs[j].batch.from_db_version()) + "; take a new site id",
                                                   true),
                       true});
        continue;
      }
    }
    MergeOptions merge_options;
    merge_options.sync = last ? CommitSync::kFull : CommitSync::kDeferred;
    const auto merge_start = std::chrono::steady_clock::now();
    auto merged = store_->merge(jobs[j].batch, merge_options);
    if (last) stats_.sync_nanos += elapsed_nanos(merge_start);
    ++stats_.merges;
    if (!merged.ok()) {
      out.push_back({jobs[j].session,
                     sync_frames::error_envelope(sync_frames::error_code_for(merged.status()),
                                                 "push " + std::to_string(jobs[j].last_seq) + " refused: " +
                                                     merged.status().message(),
                                                 true),
                     true});
      continue;
    }
    // Not synced when FULL could not be set: then Store::sync() below fails the same way and
    // nothing is acked.
    synced = merged->synced;
    stats_.changes_merged += jobs[j].batch.changes_size();
    // Released now: the forwards read below may hold the same large values again.
    change::ChangeBatch().Swap(&jobs[j].batch);
    stats_.changes_applied += merged->changes_applied;
    merged_sites.push_back(members_.at(jobs[j].session).site);
    last_pusher_[members_.at(jobs[j].session).site] = members_.at(jobs[j].session).instance;
    to_ack.emplace_back(jobs[j].session, jobs[j].last_seq);
  }
  if (!merged_sites.empty()) {
    const auto sync_start = std::chrono::steady_clock::now();
    Status durable = synced ? Status::Ok() : store_->sync();
    if (!synced) stats_.sync_nanos += elapsed_nanos(sync_start);
    if (!durable.ok()) {
      // Nothing may be acknowledged that is not known durable; the clients push again.
      durability_owed_ = true;
      for (auto& [session, seq] : to_ack)
        out.push_back({session, sync_frames::error_envelope(sync::Error::UNAVAILABLE,
                                                             "server could not commit durably: " + durable.message(), true),
                       true});
      return out;
    }
    ++stats_.group_commits;
    durability_owed_ = false;
    const int64_t head = store_->db_version();
    for (auto& [session, seq] : to_ack) {
      Member& m = members_.at(session);
      m.acked_push_seq = seq;
      auto cursor = store_->peer(m.site);
      Outgoing ack;
      ack.session = session;
      ack.envelope.mutable_ack()->set_seq(seq);
      ack.envelope.mutable_ack()->set_client_acked_db_version(cursor.ok() ? cursor->received : 0);
      ack.envelope.mutable_ack()->set_server_db_version(head);
      // The pusher alone was merged and it holds everything before: the new versions are
      // all its own, so instead of an empty forward the Ack moves its cursor (saving the
      // client a merge and an ack, and the server a read and a send per push).
      if (merged_sites.size() == 1 && m.sent == before && m.in_flight.empty() && m.resume.empty() && !m.backfill && head > before) {
        m.sent = m.acked = head;
        m.ack_dirty = true;
        ack.envelope.mutable_ack()->set_forwarded_db_version(head);
      }
      if (options_.write_quorum > 1 && quorum_version() < head)
        quorum_waiting_.push_back({std::chrono::steady_clock::now(), head, std::move(ack)});
      else
        put(out, std::move(ack));
    }
  }
  ReadCache cache;
  for (auto& [session, m] : members_) pump(session, m, cache, out);
  return out;
}

void ChannelCore::send_forward(uint64_t session, Member& m, change::ChangeBatch batch, int64_t to, bool backfill_done,
                               Outbox& out) {
  batch.set_to_db_version(to);  // what the client's ClientAck must name (client_ack())
  Outgoing fwd;
  fwd.session = session;
  fwd.envelope.mutable_forward()->set_seq(m.next_forward_seq);
  fwd.envelope.mutable_forward()->set_backfill_done(backfill_done);
  *fwd.envelope.mutable_forward()->mutable_batch() = std::move(batch);
  if (m.replica) add_replica_state(m, to, *fwd.envelope.mutable_forward());
  const size_t bytes = fwd.envelope.forward().ByteSizeLong();
  m.in_flight.push_back({m.next_forward_seq, to, bytes});
  m.in_flight_bytes += bytes;
  ++m.next_forward_seq;
  ++stats_.forwards;
  put(out, std::move(fwd));
}

bool ChannelCore::pump_backfill(uint64_t session, Member& m, Outbox& out) {
  Member::Backfill& b = *m.backfill;
  if (b.done_seq != 0) return true;
  while (m.in_flight.size() < options_.forward_window &&
         (m.in_flight.empty() || m.in_flight_bytes < options_.forward_window_bytes)) {
    Store::ChangesRequest request;
    request.since = b.read_from;
    request.exclude = m.site;  // what the device wrote itself it holds
    request.limit = options_.forward_batch_changes;
    request.split_versions = true;
    request.resume_after = b.resume;
    request.max_bytes = options_.forward_batch_bytes;
    request.only_columns = b.columns;
    auto read = store_->changes(request);
    ++stats_.change_reads;
    if (!read.ok()) {
      out.push_back({session, sync_frames::error_envelope(sync::Error::INTERNAL,
                                                           "reading the backfill failed: " + read.status().message(), true),
                     true});
      return false;
    }
    // Done once every version up to `through` was read: later ones (also read, harmlessly
    // sent twice) come by the ordinary stream, which starts at `through`.
    const bool done = read->complete() || read->to_db_version() >= b.through;
    b.read_from = read->to_db_version();
    b.resume = read->resume_after();
    change::ChangeBatch batch = std::move(*read);
    // An empty range at the cursor: the client merges the cells and its cursor stays.
    batch.set_from_db_version(m.sent);
    batch.set_complete(true);
    batch.clear_resume_after();
    send_forward(session, m, std::move(batch), m.sent, done, out);
    if (done) {
      b.done_seq = m.next_forward_seq - 1;
      return true;
    }
  }
  return false;
}

void ChannelCore::pump(uint64_t session, Member& m, ReadCache& cache, Outbox& out) {
  if (m.backfill && !pump_backfill(session, m, out)) return;
  const int64_t head = store_->db_version();
  // The sessions at m's point that will take a read from there in this pump.
  auto users_at = [this, &m] {
    int users = 0;
    for (const auto& [id, other] : members_)
      users += other.sent == m.sent && other.resume == m.resume && !(other.backfill && other.backfill->done_seq == 0);
    return users;
  };
  while ((m.sent < head || !m.resume.empty()) && m.in_flight.size() < options_.forward_window &&
         (m.in_flight.empty() || m.in_flight_bytes < options_.forward_window_bytes)) {
    // Versions larger than a forward are cut at row boundaries and resumed (ChangeBatch.resume_after),
    // so that no frame outgrows the transport's limit.
    auto key = std::make_pair(m.sent, m.resume);
    auto cached = cache.find(key);
    // A re-sync's snapshot reads the store as it is (its parts decide which rows the client
    // keeps: Store::reconcile_snapshot), never an older read.
    const change::ChangeBatch* recent = cached == cache.end() && m.resync_through == 0 ? recent_read(key) : nullptr;
    if (recent) {
      cached = cache.emplace(key, CachedRead{*recent, users_at()}).first;
      ++stats_.recent_reads;
    } else if (cached == cache.end()) {
      Store::ChangesRequest request;
      request.since = m.sent;
      request.limit = options_.forward_batch_changes;
      request.split_versions = true;
      request.resume_after = m.resume;
      request.max_bytes = options_.forward_batch_bytes;
      auto read = store_->changes(request);
      ++stats_.change_reads;
      if (!read.ok()) {
        out.push_back({session, sync_frames::error_envelope(sync::Error::INTERNAL,
                                                             "reading changes failed: " + read.status().message(), true),
                       true});
        return;
      }
      remember_read(key, *read);
      // The read is shared by the sessions at the same point; the last of them takes it.
      cached = cache.emplace(key, CachedRead{std::move(*read), users_at()}).first;
    }
    const change::ChangeBatch& all = cached->second.batch;
    if (all.to_db_version() <= m.sent && all.resume_after().empty() && all.changes_size() == 0) {
      m.sent = std::max(m.sent, head);  // nothing left to read (cannot happen with a consistent log)
      break;
    }
    // A range whose changes all came from this client is still forwarded, empty: the
    // client's cursor then keeps up with the server, so it can tell when it is caught up.
    const int64_t to = std::max(all.to_db_version(), m.sent);
    const std::string resume_after = all.resume_after();
    change::ChangeBatch mine;
    // A re-sync's snapshot carries the client's own changes too: it tells live rows from
    // rows deleted and compacted here by what the snapshot holds (Store::reconcile_snapshot).
    const bool snapshot = m.resync_through > 0;
    const SiteId* exclude = snapshot ? nullptr : &m.site;
    if (--cached->second.users <= 0) {
      mine = filter_site(std::move(cached->second.batch), exclude, false, &m.tables);
      cache.erase(cached);
    } else {
      mine = filter_site(all, exclude, false, &m.tables);
    }
    if (m.replica) drop_echoes(m, mine);
    int64_t wire_to = to;
    if (snapshot) {
      // Its parts move the client's cursor only once it is whole, (0, 0] until the last,
      // (0, to]: a connection lost before that leaves the cursor below the horizon, and the
      // next join re-syncs again.
      mine.set_from_db_version(0);
      if (to < m.resync_through || !resume_after.empty()) wire_to = 0;
      else m.resync_through = 0;
    }
    send_forward(session, m, std::move(mine), wire_to, false, out);
    m.sent = to;
    m.resume = resume_after;
  }
}

Result<Outbox> ChannelCore::client_ack(uint64_t session, const sync::ClientAck& ack, int64_t replica_db_version) {
  EmitScope emitting(emitting_);
  auto it = members_.find(session);
  if (it == members_.end()) return Status::InvalidArgument("client ack from a session that has not joined");
  Member& m = it->second;
  m.last_seen_ms = wall_clock_ms();
  if (ack.seq() == 0 || ack.seq() >= m.next_forward_seq)
    return Status::InvalidArgument("client ack for forward " + std::to_string(ack.seq()) + " that was never sent");
  // The version acknowledged must be the one that forward carried: it becomes the cursor
  // this client is caught up from, so a made-up one would skip changes or go backwards.
  auto acked = std::find_if(m.in_flight.begin(), m.in_flight.end(),
                            [&](const Member::InFlight& f) { return f.seq == ack.seq(); });
  if (acked == m.in_flight.end())
    return Status::InvalidArgument("client ack for forward " + std::to_string(ack.seq()) + " that was already acknowledged");
  if (ack.server_db_version() != acked->to)
    return Status::InvalidArgument("client ack for forward " + std::to_string(ack.seq()) + " says server_db_version " +
                                   std::to_string(ack.server_db_version()) + ", the forward carried " +
                                   std::to_string(acked->to));
  while (!m.in_flight.empty() && m.in_flight.front().seq <= ack.seq()) {
    m.acked = std::max(m.acked, m.in_flight.front().to);
    m.in_flight_bytes -= m.in_flight.front().bytes;
    m.in_flight.pop_front();
    m.ack_dirty = true;
  }
  if (m.backfill && m.backfill->done_seq != 0 && ack.seq() >= m.backfill->done_seq) {
    // The device holds the whole backfill: it is covered for everything it declared. A
    // failed write only means the next connection backfills again (idempotent merges), so
    // the session goes on either way.
    (void)store_->put_notes({{sync_backfill::covered_note_key(m.site), sync_backfill::encode_columns(m.tables)}});
    m.backfill.reset();
  }
  Outbox out;
  if (m.replica) {
    if (replica_db_version > 0) {
      TANDEM_ASSIGN_OR_RETURN(auto* pairs, pairs_of(m.site));
      if (pairs->empty() || pairs->back().first < m.acked) {
        if (!pairs->empty() && pairs->back().second >= replica_db_version) pairs->pop_back();  // superseded
        pairs->emplace_back(m.acked, replica_db_version);
        // Bounded: the older half is thinned, so old cursors still find a (lower) pair.
        if (pairs->size() > 64) {
          std::vector<std::pair<int64_t, int64_t>> kept;
          for (size_t i = 0; i < pairs->size(); ++i)
            if (i >= 32 || i % 2 == 0) kept.push_back((*pairs)[i]);
          *pairs = std::move(kept);
        }
        pairs_dirty_.insert(m.site);
      }
    }
    release_quorum(out);
  }
  ReadCache cache;
  pump(session, m, cache, out);
  return out;
}

bool ChannelCore::has_unrecorded_acks() const {
  if (!pairs_dirty_.empty()) return true;
  for (const auto& [session, m] : members_)
    if (m.ack_dirty) return true;
  return false;
}

bool ChannelCore::start_resync(Member& m, int64_t* from) {
  // Tombstones above the client's cursor were removed: it may hold rows deleted here, or miss
  // deletes, that no forward can tell it of any more (runtime/store/compact.cpp).
  if (*from >= store_->compacted_through()) return false;
  *from = 0;
  m.resync_through = store_->db_version();
  return true;  // from 0, no backfill is planned: the snapshot carries every declared column
}

const change::ChangeBatch* ChannelCore::recent_read(const ReadKey& key) const {
  auto it = recent_reads_.find(key);
  return it == recent_reads_.end() ? nullptr : &it->second.first;
}

void ChannelCore::remember_read(const ReadKey& key, const change::ChangeBatch& batch) {
  if (key.first == 0 || members_.size() < 2 || recent_reads_.count(key)) return;
  // A read that found nothing new says "nothing left" to whoever takes it: later, with new
  // versions committed, that would skip them.
  if (batch.to_db_version() <= key.first && batch.resume_after().empty() && batch.changes_size() == 0) return;
  const size_t bytes = batch.ByteSizeLong();
  if (bytes > kRecentBytes) return;
  recent_reads_.emplace(key, std::make_pair(batch, bytes));
  recent_order_.push_back(key);
  recent_bytes_ += bytes;
  while (recent_order_.size() > kRecentReads || recent_bytes_ > kRecentBytes) {
    auto oldest = recent_reads_.find(recent_order_.front());
    recent_bytes_ -= oldest->second.second;
    recent_reads_.erase(oldest);
    recent_order_.pop_front();
  }
}

void ChannelCore::forget_recent_reads() {
  recent_reads_.clear();
  recent_order_.clear();
  recent_bytes_ = 0;
}

Result<CompactReport> ChannelCore::compact(int64_t now, int64_t peer_expiry) {
  forget_recent_reads();
  TANDEM_RETURN_IF_ERROR(checkpoint());
  CompactOptions options;
  options.now = now;
  options.peer_expiry = peer_expiry;
  // A joined session's cursor counts whether or not its peer record is written (or expired).
  for (const auto& [session, m] : members_) options.horizon_limit = std::min(options.horizon_limit, m.acked);
  return store_->compact(options);
}

Status ChannelCore::checkpoint() {
  if (!store_) return Status::Ok();
  if (!pairs_dirty_.empty()) {
    std::vector<std::pair<std::string, std::string>> notes;
    for (const auto& site : pairs_dirty_) notes.emplace_back(pairs_note_key(site), encode_pairs(pairs_[site]));
    TANDEM_RETURN_IF_ERROR(store_->put_notes(notes));
    pairs_dirty_.clear();
  }
  bool any = false;
  for (auto& [session, m] : members_) any = any || m.ack_dirty;
  if (!any) return Status::Ok();
  std::vector<std::pair<SiteId, int64_t>> acks;
  for (auto& [session, m] : members_)
    if (m.ack_dirty) acks.emplace_back(m.site, m.acked);
  TANDEM_RETURN_IF_ERROR(store_->record_peer_acks(acks));
  for (auto& [session, m] : members_) m.ack_dirty = false;
  return Status::Ok();
}

}  // namespace tandem::sync_channel
