// Replica links of a channel: the same user's channel on another server host (docs/cluster.md).
//
// Two hosts' channels of one user each join the other as a member (join_replica) and are
// forwarded everything, with the cursors and windows clients have; merges are idempotent,
// so changes that come back (an echo) change nothing and cost only a read.
//
// Cursor translation. A client's cursor is a db_version of the host that served it, and
// each host numbers its versions itself. When host Y acknowledges our forwards through t,
// it names its own db_version r once they are durable there: every change here up to t is
// then held by Y at r (a pair (t, r)). A client arriving from Y with cursor v holds Y's
// changes up to v; for a pair with r <= v it therefore holds ours up to t, and we forward
// from the largest such t. Forwarding from lower than needed only resends what merges
// ignore; never higher. Pairs are kept per other host in a note, bounded (older ones thinned).
//
// Devices' own cursors. A device's acked_db_version counts here when it was given by a host
// of this channel (honours_acked_of), since forwards to links carry, once they reach the
// sender's head, how much of each device the sender holds (Forward.replica_sites): the
// receiver then holds as much, and a device failing over finds the server holds what it was
// acknowledged. What a host holds beyond that (W = 1 and a host lost) the Welcome's
// client_acked_db_version tells the device, which pushes it again.
//
// Write quorum. With W > 1 an Ack waits until W - 1 links acknowledged (durably) the
// versions it covers, and fails with UNAVAILABLE (the client retries) after quorum_timeout.
#include <algorithm>

#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/frames.hpp"
#include "runtime/sync/schema_sync.hpp"

namespace tandem::sync_channel {

std::string pairs_note_key(const SiteId& site) { return "sync_replica_pairs_" + site_hex(site); }

std::string encode_pairs(const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  std::string out;
  for (const auto& [t, r] : pairs) {
    if (!out.empty()) out += ',';
    out += std::to_string(t) + ':' + std::to_string(r);
  }
  return out;
}

std::optional<std::vector<std::pair<int64_t, int64_t>>> decode_pairs(const std::string& text) {
  std::vector<std::pair<int64_t, int64_t>> pairs;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    const size_t colon = item.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == item.size()) return std::nullopt;
    if (item.find_first_not_of("0123456789:") != std::string::npos) return std::nullopt;
    try {
      pairs.emplace_back(std::stoll(item.substr(0, colon)), std::stoll(item.substr(colon + 1)));
    } catch (...) {
      return std::nullopt;
    }
    if (pairs.size() > 1 && pairs[pairs.size() - 2].first >= pairs.back().first) return std::nullopt;
    pos = end + 1;
  }
  return pairs;
}

Result<std::vector<std::pair<int64_t, int64_t>>*> ChannelCore::pairs_of(const SiteId& site) {
  auto it = pairs_.find(site);
  if (it != pairs_.end()) return &it->second;
  TANDEM_ASSIGN_OR_RETURN(auto note, store_->note(pairs_note_key(site)));
  std::vector<std::pair<int64_t, int64_t>> pairs;
  if (note) {
    auto decoded = decode_pairs(*note);
    if (decoded) pairs = std::move(*decoded);  // unreadable: no pair, forwards start lower
  }
  return &pairs_.emplace(site, std::move(pairs)).first->second;
}

std::optional<int64_t> ChannelCore::translate_cursor(const std::string& server_site, int64_t cursor) {
  auto site = site_from_bytes(server_site);
  if (!site || *site == store_->site_id()) return std::nullopt;
  auto pairs = pairs_of(*site);
  if (!pairs.ok()) return std::nullopt;
  std::optional<int64_t> best;
  for (const auto& [t, r] : **pairs)
    if (r <= cursor) best = t;  // ascending in t, and r grows with t
  return best;
}

bool ChannelCore::honours_acked_of(const std::string& server_site) {
  auto site = site_from_bytes(server_site);
  if (!site) return false;
  if (*site == store_->site_id()) return true;
  // A restored file's former ids: it holds a prefix of what they acknowledged.
  if (former_sites_.count(server_site)) return true;
  for (const auto& [session, m] : members_)
    if (m.replica && m.site == *site) return true;
  auto pairs = pairs_of(*site);
  return pairs.ok() && !(*pairs)->empty();
}

Status ChannelCore::refresh_schema() {
  TANDEM_ASSIGN_OR_RETURN(auto statements, sync_schema::table_statements(*store_));
  if (statements != schema_) {
    schema_ = std::move(statements);
    ++schema_epoch_;
  }
  return Status::Ok();
}

Result<sync::Hello> ChannelCore::replica_hello() {
  TANDEM_RETURN_IF_ERROR(refresh_schema());
  sync::Hello hello;
  hello.set_protocol_version(sync_frames::kProtocolVersion);
  hello.set_site_id(site_bytes(store_->site_id()));
  hello.set_client_name("replica");
  for (const auto& s : schema_) hello.add_schema(s);
  return hello;
}

Result<Outbox> ChannelCore::join_replica(uint64_t session, const std::string& user, const sync::Hello& hello) {
  if (members_.count(session)) return Status::InvalidArgument("session already joined");
  auto site = site_from_bytes(hello.site_id());
  if (!site) return Status::InvalidArgument("replica hello.site_id must be 16 bytes");
  if (*site == store_->site_id()) return Status::InvalidArgument("a replica link to this very file");
  for (const auto& [id, other] : members_)
    if (other.replica && other.site == *site) return Status::InvalidArgument("a link of that host is already joined");
  TANDEM_RETURN_IF_ERROR(
      sync_schema::adopt_tables(*store_, {hello.schema().begin(), hello.schema().end()}).status().with_context(
          "replica schema"));
  TANDEM_RETURN_IF_ERROR(refresh_schema());
  // Forwards resume from what the link acknowledged here last (recorded at checkpoints; an
  // older record only resends what its merges ignore).
  TANDEM_ASSIGN_OR_RETURN(PeerCursor cursor, store_->peer(*site));
  Member m;
  m.site = *site;
  m.replica = true;
  m.name = "replica";
  m.sent = m.acked = std::min(cursor.acked, store_->db_version());
  Outbox out;
  out.push_back(welcome(session, user, 0, m.sent, false));
  auto& member = members_[session] = std::move(m);
  ReadCache cache;
  pump(session, member, cache, out);
  return out;
}

void ChannelCore::add_replica_state(Member& m, int64_t to, sync::Forward& forward) {
  if (m.schema_sent != schema_epoch_) {
    for (const auto& s : schema_) forward.add_replica_schema(s);
    m.schema_sent = schema_epoch_;
  }
  if (to < store_->db_version()) return;
  auto peers = store_->peers();
  if (!peers.ok()) return;  // the next forward that reaches the head carries them
  std::set<SiteId> links;
  for (const auto& [id, other] : members_)
    if (other.replica) links.insert(other.site);
  for (const auto& p : *peers) {
    auto known = pairs_.find(p.site);
    if (p.cursor.received <= 0 || links.count(p.site) || (known != pairs_.end() && !known->second.empty())) continue;
    auto* rs = forward.add_replica_sites();
    rs->set_site_id(site_bytes(p.site));
    rs->set_received(p.cursor.received);
    auto pusher = last_pusher_.find(p.site);
    if (pusher != last_pusher_.end()) rs->set_instance_id(pusher->second);
  }
}

Result<ChannelCore::ReplicaMerge> ChannelCore::merge_replica(const sync::Forward& forward) {
  if (!forward.replica_schema().empty()) {
    TANDEM_RETURN_IF_ERROR(sync_schema::adopt_tables(*store_, {forward.replica_schema().begin(), forward.replica_schema().end()})
                               .status()
                               .with_context("replica schema"));
    TANDEM_RETURN_IF_ERROR(refresh_schema());
  }
  const auto& batch = forward.batch();
  auto sender = site_from_bytes(batch.sender_site_id());
  if (!sender || *sender == store_->site_id()) return Status::InvalidArgument("replica forward from a bad site");
  MergeOptions options;
  options.sync = CommitSync::kFull;
  const auto start = std::chrono::steady_clock::now();
  const int64_t before = store_->db_version();
  TANDEM_ASSIGN_OR_RETURN(auto merged, store_->merge(batch, options));
  if (!merged.synced) TANDEM_RETURN_IF_ERROR(store_->sync());
  note_echo(*sender, before, store_->db_version());
  stats_.sync_nanos += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
  ++stats_.merges;
  ++stats_.group_commits;
  stats_.changes_merged += batch.changes_size();
  stats_.changes_applied += merged.changes_applied;
  // What the sender holds of each device, this host now holds too. Recorded without an
  // fsync: lost, it only makes a failing-over device push those changes again.
  for (const auto& rs : forward.replica_sites()) {
    auto site = site_from_bytes(rs.site_id());
    if (!site || *site == store_->site_id()) continue;
    (void)store_->record_peer_ack(*site, 0, rs.received());
    if (!rs.instance_id().empty()) last_pusher_[*site] = rs.instance_id();
  }
  ReplicaMerge result;
  result.ack.set_seq(forward.seq());
  result.ack.set_server_db_version(batch.to_db_version());
  result.db_version = store_->db_version();
  {
    EmitScope emitting(emitting_);
    ReadCache cache;
    for (auto& [session, m] : members_) pump(session, m, cache, result.out);
  }
  return result;
}

void ChannelCore::note_echo(const SiteId& from_host, int64_t before, int64_t after) {
  if (after <= before) return;
  auto& ranges = echoes_[from_host];
  if (!ranges.empty() && ranges.back().second == before) ranges.back().second = after;
  else ranges.emplace_back(before, after);
  constexpr size_t kMaxRanges = 4096;  // a link that never reads them back: forget the oldest
  if (ranges.size() > kMaxRanges) ranges.erase(ranges.begin(), ranges.begin() + (ranges.size() - kMaxRanges));
}

void ChannelCore::drop_echoes(const Member& m, change::ChangeBatch& batch) {
  auto found = echoes_.find(m.site);
  if (found == echoes_.end()) return;
  auto& ranges = found->second;
  // Changes come in db_version order, ranges too: one pass.
  auto* changes = batch.mutable_changes();
  size_t r = 0;
  int kept = 0;
  for (int i = 0; i < changes->size(); ++i) {
    const int64_t v = changes->Get(i).db_version();
    while (r < ranges.size() && ranges[r].second < v) ++r;
    const bool echo = r < ranges.size() && ranges[r].first < v && v <= ranges[r].second;
    if (echo) continue;
    if (kept != i) changes->SwapElements(kept, i);
    ++kept;
  }
  if (kept < changes->size()) changes->DeleteSubrange(kept, changes->size() - kept);
  // What the link was sent up to (this batch's end) needs no range any more.
  const int64_t past = batch.to_db_version();
  size_t done = 0;
  while (done < ranges.size() && ranges[done].second <= past) ++done;
  ranges.erase(ranges.begin(), ranges.begin() + static_cast<long>(done));
}

int64_t ChannelCore::quorum_version() const {
  const size_t needed = options_.write_quorum > 1 ? options_.write_quorum - 1 : 0;
  if (needed == 0) return store_->db_version();
  std::vector<int64_t> held;
  for (const auto& [session, m] : members_)
    if (m.replica) held.push_back(m.acked);
  if (held.size() < needed) return 0;
  std::nth_element(held.begin(), held.begin() + static_cast<long>(needed - 1), held.end(), std::greater<>());
  return held[needed - 1];
}

void ChannelCore::release_quorum(Outbox& out) {
  if (quorum_waiting_.empty()) return;
  const int64_t held = quorum_version();
  while (!quorum_waiting_.empty() && quorum_waiting_.front().needs <= held) {
    if (members_.count(quorum_waiting_.front().ack.session)) put(out, std::move(quorum_waiting_.front().ack));
    quorum_waiting_.pop_front();
  }
}

Outbox ChannelCore::expire_quorum(std::chrono::steady_clock::time_point now) {
  Outbox out;
  while (!quorum_waiting_.empty() && now - quorum_waiting_.front().since >= options_.quorum_timeout) {
    const uint64_t session = quorum_waiting_.front().ack.session;
    quorum_waiting_.pop_front();
    if (!members_.count(session)) continue;
    out.push_back({session,
                   sync_frames::error_envelope(
                       sync::Error::UNAVAILABLE,
                       "the push is durable on this host but not yet on " + std::to_string(options_.write_quorum) +
                           " hosts (write quorum) after " + std::to_string(options_.quorum_timeout.count()) +
                           " ms: retry; nothing was acknowledged",
                       true),
                   true});
  }
  return out;
}

}  // namespace tandem::sync_channel
