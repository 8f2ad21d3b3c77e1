#include "runtime/sync/client_core.hpp"

#include <algorithm>

#include "runtime/store/store.hpp"
#include "runtime/sync/binding.hpp"

namespace tandem::sync_client {
namespace {

std::string short_site(const std::string& bytes) {
  auto s = site_from_bytes(bytes);
  return s ? site_hex(*s).substr(0, 8) : "?";
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

Status failure(const std::string& why) { return Status::Unavailable(why); }

}  // namespace

ClientCore::ClientCore(ClientConfig config)
    : config_(std::move(config)),
      backoff_(config_.backoff_base, config_.backoff_cap, config_.seed),
      online_(config_.start_online) {}

void ClientCore::log(LogLevel level, const std::function<std::string()>& line) const {
  if (!config_.log.write || (config_.log.enabled && !config_.log.enabled(level))) return;
  config_.log.write(level, line());
}

void ClientCore::send(Outbox& out, sync::Envelope envelope, bool fragmentable) const {
  out.emplace_back(Send{std::move(envelope), fragmentable ? fragment_bytes_ : 0});
}

bool ClientCore::caught_up() const {
  return phase_ == Phase::live && in_flight_.empty() && !reading_ && merges_in_flight_ == 0 &&
         recorded_acked_ >= client_acked_ && pushed_through_ >= local_version_ && resume_.empty() &&
         cursor_ >= server_known_ && !backfilling_ && !resyncing_;
}

void ClientCore::settle_waiters(Outbox& out) {
  for (auto it = ack_waiters_.begin(); it != ack_waiters_.end();) {
    if (client_acked_ >= it->first && recorded_acked_ >= it->first) {
      out.emplace_back(SettleAcked{it->second, client_acked_});
      it = ack_waiters_.erase(it);
    } else if (!fatal_error_.empty()) {
      out.emplace_back(SettleAcked{it->second, failure(fatal_error_)});
      it = ack_waiters_.erase(it);
    } else {
      ++it;
    }
  }
  if (caught_up()) {
    for (uint64_t w : caught_up_waiters_) out.emplace_back(SettleCaughtUp{w, CaughtUp{client_acked_, cursor_}});
    caught_up_waiters_.clear();
  } else if (!fatal_error_.empty()) {
    for (uint64_t w : caught_up_waiters_) out.emplace_back(SettleCaughtUp{w, failure(fatal_error_)});
    caught_up_waiters_.clear();
  }
}

void ClientCore::fail_all(Outbox& out, const std::string& why) {
  for (const auto& [version, w] : ack_waiters_) out.emplace_back(SettleAcked{w, failure(why)});
  ack_waiters_.clear();
  for (uint64_t w : caught_up_waiters_) out.emplace_back(SettleCaughtUp{w, failure(why)});
  caught_up_waiters_.clear();
}

Outbox ClientCore::fail_waiters(const std::string& why) {
  Outbox out;
  fail_all(out, why);
  return out;
}

// A failure before the server was ever reached in this run: the callers are told now.
void ClientCore::attempt_failed(Outbox& out, const std::string& why) {
  last_error_ = why;
  // Callers learn it at once only once every host of the cluster was tried (the last URL
  // of the list failing ends a round: they are tried in order from the first).
  if (!ever_live_ && url_index_ == config_.also_urls.size()) {
    round_failed_ = true;
    fail_all(out, why);
  }
}

// The database belongs to another user or server: never connect again in this run.
void ClientCore::refuse_binding(Outbox& out, const std::string& why) {
  fatal_error_ = why;
  binding_refused_ = true;
  online_ = false;
  phase_ = Phase::offline;
  settle_waiters(out);
}

void ClientCore::schedule_reconnect(Outbox& out) {
  if (!online_) return;
  const auto delay = fatal_error_.empty() ? backoff_.next() : config_.backoff_cap;
  log(LogLevel::debug, [&] {
    return "hop=client.reconnect_in ms=" + std::to_string(delay.count()) + " attempt=" + std::to_string(backoff_.attempts());
  });
  out.emplace_back(StartTimer{delay, generation_});
}

// Drops the current connection (if any) and forgets what was in flight on it: unacked
// pushes are pushed again from client_acked on the next welcome.
void ClientCore::drop_link(Outbox& out, const std::string& why) {
  if (link_up_) {
    out.emplace_back(CloseLink{why});
    link_up_ = false;
  }
  ++generation_;  // late events of the old connection are ignored from now on
  tell_attach(out, false);
  in_flight_.clear();
  in_flight_bytes_ = 0;
  fragments_.reset();  // a partial forward is dropped, never merged; the cursor resends it
  reading_ = false;
  phase_ = online_ ? Phase::connecting : Phase::offline;
}

// The server broke the protocol (or sent what cannot be handled): tell it, drop, retry.
void ClientCore::protocol_failure(Outbox& out, const sync::Error& error, const std::string& why) {
  send(out, sync_frames::error_envelope(error.code(), error.message(), true));
  drop_link(out, why);
  schedule_reconnect(out);
}

const std::string& ClientCore::current_url() const {
  return url_index_ == 0 || url_index_ > config_.also_urls.size() ? config_.url : config_.also_urls[url_index_ - 1];
}

void ClientCore::next_url() { url_index_ = (url_index_ + 1) % (config_.also_urls.size() + 1); }

Status ClientCore::binding_allows(const std::string& stored_user, const std::string& stored_server,
                                  const std::string& user) const {
  Status first = sync_binding::check({stored_user, stored_server}, user, config_.url);
  if (first.ok()) return first;
  for (const auto& url : config_.also_urls)
    if (sync_binding::check({stored_user, stored_server}, user, url).ok()) return Status::Ok();
  return first;
}

void ClientCore::connect(Outbox& out) {
  if (!online_) return;
  const uint64_t gen = ++generation_;
  phase_ = Phase::connecting;
  log(LogLevel::debug, [&] { return "hop=client.connect url=" + current_url() + " attempt=" + std::to_string(backoff_.attempts()); });
  out.emplace_back(Connect{gen, current_url()});
}

Outbox ClientCore::start() { return {ReadStatus{}}; }

Outbox ClientCore::on_status(const worker::StatusResponse& status) {
  site_ = status.site_id();
  local_version_ = status.db_version();
  Outbox out;
  subscribed_ = true;
  tell_attach(out, false, true);  // nothing can be pushed before a welcome
  out.emplace_back(ReadPeers{});
  return out;
}

// A commit's own changes come with it when its row deltas are under 256 KiB; a larger one
// is read as before (the worker would otherwise copy a huge value into a message on every
// commit). While the link is not live the commits come bare: the worker's read would only
// be dropped (on_local_commit takes the read path once live), and the writer waits for it.
void ClientCore::tell_attach(Outbox& out, bool attach, bool first) {
  if (!subscribed_ || (!first && attach == attach_told_)) return;
  attach_told_ = attach;
  Subscribe subscribe;
  auto* own = subscribe.request.mutable_own_changes();
  *own = push_read();
  own->set_max_bytes(static_cast<int64_t>(std::min<size_t>(config_.push_batch_bytes, size_t{256} << 10)));
  subscribe.request.set_own_changes_bare(!attach);
  out.emplace_back(std::move(subscribe));
}

Outbox ClientCore::on_peers(const Result<worker::PeersResponse>& peers) {
  // The server is the peer we received most from; its cursor and what it acknowledged are
  // told in the hello. An unreadable table only means starting from nothing.
  if (peers.ok() && peers->error().code() == change::Error::OK) {
    const worker::PeerStatus* best = nullptr;
    for (const auto& p : peers->peers())
      if (p.peer_site_id().size() == 16 && (!best || p.received_db_version() > best->received_db_version())) best = &p;
    if (best) {
      server_site_ = best->peer_site_id();
      cursor_ = best->received_db_version();
      client_acked_ = recorded_acked_ = best->acked_db_version();
    }
  }
  return {ReadBinding{}};
}

// Before the first connection: a database bound to another user or server is never
// connected (nothing is sent, not even the hello with that user's token).
Outbox ClientCore::on_binding(const Result<worker::BindResponse>& binding) {
  Outbox out;
  if (!binding.ok()) {
    refuse_binding(out, "cannot read the database's binding: " + binding.status().message());
    return out;
  }
  Status allowed = binding->error().code() == change::Error::OK
                       ? Status::Ok()
                       : Status(StatusCode::internal, binding->error().message());
  if (allowed.ok()) {
    bound_user_ = binding->user();
    bound_server_ = binding->server();
    allowed = binding_allows(binding->user(), binding->server(), config_.token_user);
  }
  if (!allowed.ok()) {
    log(LogLevel::error, [&] { return "hop=client.binding_refused error=" + quoted(allowed.message()); });
    refuse_binding(out, allowed.message());
    return out;
  }
  phase_ = online_ ? Phase::connecting : Phase::offline;
  if (online_) connect(out);
  return out;
}

Outbox ClientCore::on_bound(const Result<worker::BindResponse>& bound) {
  if (!bound.ok()) {
    log(LogLevel::error, [&] { return "hop=client.bind error=" + quoted(bound.status().message()); });
  } else if (bound->error().code() != change::Error::OK) {
    log(LogLevel::error, [&] { return "hop=client.bind error=" + quoted(bound->error().message()); });
  }
  return {};
}

bool ClientCore::accepts_link(uint64_t generation) const {
  return generation == generation_ && phase_ == Phase::connecting;
}

Outbox ClientCore::on_connect_failed(uint64_t generation, const std::string& error) {
  Outbox out;
  if (!accepts_link(generation)) return out;
  log(LogLevel::info, [&] { return "hop=client.connect_failed url=" + current_url() + " error=" + quoted(error); });
  attempt_failed(out, "cannot reach the server at " + current_url() + ": " + error);
  next_url();
  phase_ = Phase::connecting;
  schedule_reconnect(out);
  return out;
}

Outbox ClientCore::on_link_opened(uint64_t generation) {
  Outbox out;
  if (!accepts_link(generation)) return out;
  link_up_ = true;
  phase_ = Phase::awaiting_welcome;
  sync::Envelope e;
  auto* h = e.mutable_hello();
  h->set_protocol_version(sync_frames::kProtocolVersion);
  h->set_token(config_.token);
  h->set_site_id(site_);
  h->set_server_site_id(server_site_);
  h->set_cursor(server_site_.empty() ? 0 : cursor_);
  h->set_acked_db_version(server_site_.empty() ? 0 : client_acked_);
  h->set_instance_id(config_.instance);
  h->set_client_name(config_.client_name.substr(0, 64));
  for (const auto& s : config_.schema) h->add_schema(s);
  log(LogLevel::debug, [&] { return "hop=client.hello server=" + short_site(server_site_) + " cursor=" + std::to_string(h->cursor()); });
  send(out, std::move(e));
  return out;
}

Outbox ClientCore::on_link_closed(uint64_t generation, const std::string& why) {
  Outbox out;
  if (generation != generation_) return out;
  log(LogLevel::info, [&] { return "hop=client.disconnected why=" + quoted(why); });
  if (phase_ == Phase::awaiting_welcome)
    attempt_failed(out, "the server at " + current_url() + " closed the connection before welcoming us: " + why);
  else
    last_error_ = "lost the connection to " + current_url() + ": " + why;
  next_url();  // another host of the cluster, if there are others
  link_up_ = false;  // already closed: nothing to close
  drop_link(out, why);
  schedule_reconnect(out);
  settle_waiters(out);
  return out;
}

Outbox ClientCore::on_timer(uint64_t generation) {
  Outbox out;
  if (generation != generation_ || !online_ || link_up_ || resiting_) return out;
  connect(out);
  return out;
}

Outbox ClientCore::set_online(bool online) {
  Outbox out;
  if (online == online_) return out;
  online_ = online;
  log(LogLevel::info, [&] { return std::string("hop=client.") + (online ? "online" : "offline"); });
  if (!online) {
    drop_link(out, "going offline");
  } else if (phase_ != Phase::starting && !binding_refused_ && !resiting_) {
    backoff_.reset();
    connect(out);
  }
  return out;
}

Outbox ClientCore::on_local_commit(const change::RowDeltaBatch& batch) {
  Outbox out;
  if (batch.origin() != change::RowDeltaBatch::LOCAL) return out;
  local_version_ = std::max(local_version_, batch.db_version());
  log(LogLevel::debug, [&] {
    return "hop=client.local_commit local_v=" + std::to_string(batch.db_version()) + " rows=" +
           std::to_string(batch.deltas_size()) + (batch.mutation_id().empty() ? "" : " mutation=" + batch.mutation_id());
  });
  try_push(out);
  return out;
}

// The worker read (since_db_version, v] of our site right after commit v. When our last
// read ended exactly at since_db_version (pushed_through_ == since, nothing of it left to
// resume) and a push may go now, no commit of any kind came between, so that read holds
// what push_read() would find (cut at the worker's smaller byte limit for a big commit, as
// a read in parts): it is pushed without asking again, one round trip to the worker less
// per write. Anything else (a commit the syncer was not told of, a merge or a re-sync's
// reconcile in between, a read out, a full window, a new site) takes the read path.
Outbox ClientCore::on_local_commit(worker::LocalCommit&& commit) {
  const bool usable = commit.has_changes() && commit.changes().error().code() == change::Error::OK &&
                      commit.batch().origin() == change::RowDeltaBatch::LOCAL && commit.site_id() == site_ && can_push() &&
                      resume_.empty() && pushed_through_ == commit.since_db_version() &&
                      commit.batch().db_version() > pushed_through_;
  if (!usable) return on_local_commit(commit.batch());
  local_version_ = std::max(local_version_, commit.batch().db_version());
  log(LogLevel::debug, [&] {
    return "hop=client.local_commit local_v=" + std::to_string(commit.batch().db_version()) +
           " rows=" + std::to_string(commit.batch().deltas_size()) + " changes_attached=" +
           std::to_string(commit.changes().batch().changes_size());
  });
  reading_ = true;
  return on_changes_read(generation_, Result<worker::ChangesSinceResponse>(std::move(*commit.mutable_changes())));
}

WaitAnswer<int64_t> ClientCore::wait_acked(int64_t version, uint64_t waiter) {
  WaitAnswer<int64_t> answer;
  if (client_acked_ >= version && recorded_acked_ >= version) {
    answer.now = Result<int64_t>(client_acked_);
  } else if (!fatal_error_.empty()) {
    answer.now = Result<int64_t>(failure(fatal_error_));
  } else if (!ever_live_ && round_failed_) {
    answer.now = Result<int64_t>(failure(last_error_));
  } else {
    local_version_ = std::max(local_version_, version);
    ack_waiters_.emplace_back(version, waiter);
    try_push(answer.out);
  }
  return answer;
}

WaitAnswer<CaughtUp> ClientCore::wait_caught_up(uint64_t waiter) {
  WaitAnswer<CaughtUp> answer;
  if (caught_up()) {
    answer.now = Result<CaughtUp>(CaughtUp{client_acked_, cursor_});
  } else if (!fatal_error_.empty()) {
    answer.now = Result<CaughtUp>(failure(fatal_error_));
  } else if (!ever_live_ && round_failed_) {
    answer.now = Result<CaughtUp>(failure(last_error_));
  } else {
    caught_up_waiters_.push_back(waiter);
  }
  return answer;
}

// Reads the next own changes to push, when the windows allow one more push.
bool ClientCore::can_push() const {
  if (phase_ != Phase::live || reading_ || resyncing_ || in_flight_.size() >= push_window_) return false;
  return in_flight_.empty() || push_window_bytes_ == 0 || in_flight_bytes_ < push_window_bytes_;
}

worker::ChangesSinceRequest ClientCore::push_read() const {
  worker::ChangesSinceRequest req;
  req.set_since_db_version(pushed_through_);
  req.set_only_site_id(site_);  // everything else we hold came from the server, which has it
  req.set_limit(static_cast<int64_t>(config_.push_batch_changes));
  // A transaction larger than a push is sent in parts (cut at row boundaries).
  req.set_split_versions(true);
  req.set_resume_after(resume_);
  req.set_max_bytes(static_cast<int64_t>(config_.push_batch_bytes));
  return req;
}

void ClientCore::try_push(Outbox& out) {
  if (!can_push()) return;
  if (local_version_ <= pushed_through_ && resume_.empty()) return;
  reading_ = true;
  ReadChanges read;
  read.generation = generation_;
  read.request = push_read();
  out.emplace_back(std::move(read));
}

Outbox ClientCore::on_changes_read(uint64_t generation, Result<worker::ChangesSinceResponse>&& read) {
  Outbox out;
  if (generation != generation_) return out;
  reading_ = false;
  if (!read.ok() || read->error().code() != change::Error::OK) {
    log(LogLevel::error, [&] {
      return "hop=client.read_changes error=" + quoted(read.ok() ? read->error().message() : read.status().message());
    });
    return out;
  }
  change::ChangeBatch& mine = *read->mutable_batch();  // only our changes (only_site_id)
  if (mine.to_db_version() <= pushed_through_ && mine.resume_after().empty() && mine.changes_size() == 0) {
    local_version_ = pushed_through_;  // nothing newer exists
    resume_.clear();
    settle_waiters(out);
    return out;
  }
  const int64_t read_to = mine.to_db_version();
  std::string resume_after = mine.resume_after();
  mine.set_sender_site_id(site_);
  if (mine.changes_size() > 0) {
    // Pushes are contiguous (each starts where the previous one ended) and end at a change
    // they carry (docs/protocol.md): versions in between hold only merged changes, which
    // the server has.
    int64_t last_change = 0;
    for (const auto& c : mine.changes()) last_change = std::max(last_change, c.db_version());
    const bool continues = last_change > read_to;  // own rows of the split version to + 1
    mine.set_from_db_version(push_from_);
    mine.set_to_db_version(continues ? read_to : last_change);
    if (!continues) mine.clear_resume_after();
    push_from_ = mine.to_db_version();
    sync::Envelope e;
    auto* p = e.mutable_push();
    p->set_seq(++push_seq_);
    // Moved, not copied: a batch may hold a value of hundreds of MiB.
    *p->mutable_batch() = std::move(mine);
    log(LogLevel::debug, [&] {
      return "hop=client.push seq=" + std::to_string(p->seq()) + " client_v=(" + std::to_string(p->batch().from_db_version()) +
             "," + std::to_string(p->batch().to_db_version()) + "] changes=" + std::to_string(p->batch().changes_size()) +
             " cells=" + quoted(sync_frames::cells(p->batch()));
    });
    const uint64_t bytes = p->ByteSizeLong();
    in_flight_.push_back({p->seq(), read_to, bytes});
    in_flight_bytes_ += bytes;
    send(out, std::move(e), true);
  }
  pushed_through_ = std::max(pushed_through_, read_to);
  resume_ = std::move(resume_after);
  local_version_ = std::max(local_version_, pushed_through_);
  try_push(out);
  settle_waiters(out);
  return out;
}

Outbox ClientCore::on_frame(uint64_t generation, const std::string& frame) {
  Outbox out;
  if (generation != generation_ || !link_up_) return out;
  auto decoded = sync_frames::decode(frame);
  if (!decoded.ok) {
    log(LogLevel::error, [&] { return "hop=client.bad_frame " + decoded.error.message(); });
    protocol_failure(out, decoded.error, "bad frame from server");
    return out;
  }
  on_envelope(out, decoded.envelope);
  return out;
}

void ClientCore::on_envelope(Outbox& out, sync::Envelope& e) {
  // Between a forward's fragments the server may send only Ping, Pong and Error.
  const bool in_the_middle = fragments_.active() && !e.has_fragment() && !e.has_ping() && !e.has_pong() && !e.has_error();
  switch (in_the_middle ? sync::Envelope::KIND_NOT_SET : e.kind_case()) {
    case sync::Envelope::kFragment: {
      if (phase_ != Phase::live) break;
      if (!fragments_.active())
        log(LogLevel::debug, [&] {
          return "hop=client.fragments total=" + std::to_string(e.fragment().total_bytes()) + " (a forward in fragments)";
        });
      std::optional<sync::Envelope> whole;
      sync::Error refusal;
      if (!fragments_.add(std::move(*e.mutable_fragment()), &whole, &refusal)) {
        log(LogLevel::error, [&] { return "hop=client.bad_fragment " + refusal.message(); });
        protocol_failure(out, refusal, "bad fragment from server");
        return;
      }
      if (!whole) return;
      if (whole->has_forward()) return on_forward(out, *whole->mutable_forward());
      e = std::move(*whole);  // refused below as unexpected
      break;
    }
    case sync::Envelope::kWelcome:
      if (phase_ != Phase::awaiting_welcome) break;
      return on_welcome(out, e.welcome());
    case sync::Envelope::kAck:
      if (phase_ != Phase::live) break;
      return on_ack(out, e.ack());
    case sync::Envelope::kForward:
      if (phase_ != Phase::live) break;
      return on_forward(out, *e.mutable_forward());
    case sync::Envelope::kPing: {
      sync::Envelope pong;
      pong.mutable_pong()->set_nonce(e.ping().nonce());
      return send(out, std::move(pong));
    }
    case sync::Envelope::kPong:
      return;
    case sync::Envelope::kError:
      return on_server_error(out, e.error());
    default:
      break;
  }
  const std::string what = sync_frames::describe(e);
  log(LogLevel::error, [&] { return "hop=client.protocol unexpected " + what; });
  sync::Error unexpected;
  unexpected.set_code(sync::Error::PROTOCOL);
  unexpected.set_message("unexpected " + what);
  protocol_failure(out, unexpected, "protocol error");
}

void ClientCore::on_server_error(Outbox& out, const sync::Error& error) {
  const auto code = error.code();
  log(LogLevel::error, [&] {
    return "hop=client.server_error code=" + sync::Error::Code_Name(code) + " message=" +
           quoted(sync_frames::log_escape(error.message(), 1024));
  });
  if (code == sync::Error::SITE_CONFLICT) {
    // Another device uses our site id (a copy of this database file): take a new one,
    // keeping what the server acknowledged under the old id, and connect again at once;
    // every later change of ours is then pushed under the new id.
    drop_link(out, "site conflict");
    resiting_ = true;
    TakeNewSite take;
    take.keep_through = client_acked_;
    take.request.set_keep_through(client_acked_);
    out.emplace_back(std::move(take));
    return;
  }
  const bool retryable = code == sync::Error::UNAVAILABLE || code == sync::Error::TIMEOUT || code == sync::Error::INTERNAL;
  const std::string why = "server refused: " + sync::Error::Code_Name(code) + ": " + error.message();
  if (!retryable) fatal_error_ = why;
  else if (phase_ == Phase::awaiting_welcome) attempt_failed(out, why);
  if (error.fatal()) {
    // As after a lost connection: the next attempt goes to another host of the cluster (a
    // host that refuses, say, a channel it cannot serve would otherwise be asked forever).
    next_url();
    drop_link(out, "server error");
    schedule_reconnect(out);
  }
  settle_waiters(out);
}

Outbox ClientCore::on_new_site(int64_t keep_through, const Result<worker::NewSiteResponse>& fresh) {
  Outbox out;
  resiting_ = false;
  if (!fresh.ok() || fresh->error().code() != change::Error::OK) {
    const std::string why = fresh.ok() ? fresh->error().message() : fresh.status().message();
    fatal_error_ = "cannot take a new site id: " + why;
    if (fresh.ok()) log(LogLevel::error, [&] { return "hop=client.new_site error=" + quoted(why); });
    settle_waiters(out);
    return out;
  }
  log(LogLevel::warn, [&] {
    return "hop=client.new_site old=" + short_site(site_) + " new=" + short_site(fresh->site_id()) +
           " kept_through=" + std::to_string(keep_through);
  });
  site_ = fresh->site_id();
  client_acked_ = 0;
  recorded_acked_ = 0;
  pushed_through_ = 0;
  push_from_ = 0;
  resume_.clear();
  if (online_ && !link_up_) connect(out);
  return out;
}

void ClientCore::on_welcome(Outbox& out, const sync::Welcome& w) {
  // The database is bound to the first URL given, whichever host of the cluster welcomed us.
  const std::string server = sync_binding::normalize_server_url(config_.url);
  Status allowed = binding_allows(bound_user_, bound_server_, w.user());
  if (!allowed.ok()) {
    // The server verified a user other than the one this database belongs to (the token's
    // subject could not be read before): nothing is pushed or merged on this connection.
    log(LogLevel::error, [&] { return "hop=client.binding_refused user=" + w.user() + " error=" + quoted(allowed.message()); });
    fatal_error_ = allowed.message();
    binding_refused_ = true;
    online_ = false;
    drop_link(out, "database bound to another user");
    settle_waiters(out);
    return;
  }
  if (bound_user_.empty() || bound_server_.empty()) {
    // The first successful hello binds the database. The worker records it before it reads
    // the changes of the first push (it answers in arrival order).
    RecordBinding bind;
    bind.request.set_user(w.user());
    bind.request.set_server(server);
    bind.request.set_record(true);
    out.emplace_back(std::move(bind));
    bound_user_ = w.user();
    bound_server_ = server;
  }
  ever_live_ = true;
  last_error_.clear();
  resyncing_ = w.resync() && w.server_db_version() > 0;
  resync_through_ = w.server_db_version();
  resync_acked_ = std::max(recorded_acked_, client_acked_);
  compacted_cl_ = w.compacted_cl();
  snapshot_keys_.clear();
  phase_ = Phase::live;
  server_site_ = w.server_site_id();
  cursor_ = w.forward_from();
  server_known_ = std::max(cursor_, w.server_db_version());
  backfilling_ = w.backfill();
  client_acked_ = w.client_acked_db_version();
  pushed_through_ = client_acked_;
  push_from_ = client_acked_;
  resume_.clear();
  push_seq_ = 0;
  in_flight_.clear();
  in_flight_bytes_ = 0;
  push_window_ = std::max<uint32_t>(1, w.push_window());
  push_window_bytes_ = w.push_window_bytes();
  fragment_bytes_ = sync_frames::fragment_bytes_for(w.max_frame_bytes());
  fatal_error_.clear();
  backoff_.reset();
  log(LogLevel::info, [&] {
    return "hop=client.welcome user=" + w.user() + " server=" + short_site(w.server_site_id()) +
           " server_v=" + std::to_string(w.server_db_version()) + " client_acked=" + std::to_string(w.client_acked_db_version()) +
           " forward_from=" + std::to_string(w.forward_from()) + " local_v=" + std::to_string(local_version_) +
           (w.backfill() ? " backfill=1" : "") + (resyncing_ ? " resync=1" : "");
  });
  tell_attach(out, true);
  record_ack(out);
  try_push(out);
  settle_waiters(out);
}

// Records in the peer table what the server holds of ours; waiters for acks are released
// only once that is recorded, so that a process that exits right after (`tandem client
// exec`) tells the server the same in its next hello (a device that knows of less than the
// server holds of its site is refused as a copy, docs/protocol.md).
void ClientCore::record_ack(Outbox& out, int64_t received) {
  RecordAck rec;
  rec.ticket = AckTicket{client_acked_, site_};
  rec.request.set_peer_site_id(server_site_);
  rec.request.set_acked_db_version(client_acked_);
  rec.request.set_received_db_version(received);
  out.emplace_back(std::move(rec));
}

Outbox ClientCore::on_ack_recorded(const AckTicket& ticket, const Result<worker::PeerStatus>& recorded) {
  Outbox out;
  if (!recorded.ok()) {
    log(LogLevel::warn, [&] { return "hop=client.record_ack error=" + quoted(recorded.status().message()); });
    return out;
  }
  if (recorded->error().code() != change::Error::OK) {
    log(LogLevel::warn, [&] { return "hop=client.record_ack error=" + quoted(recorded->error().message()); });
  } else if (ticket.site == site_) {
    recorded_acked_ = std::max(recorded_acked_, ticket.acked);
  }
  settle_waiters(out);
  return out;
}

void ClientCore::on_ack(Outbox& out, const sync::Ack& ack) {
  while (!in_flight_.empty() && in_flight_.front().seq <= ack.seq()) {
    in_flight_bytes_ -= in_flight_.front().bytes;
    in_flight_.pop_front();
  }
  client_acked_ = std::max(client_acked_, ack.client_acked_db_version());
  server_known_ = std::max(server_known_, ack.server_db_version());
  // The server only advances the cursor this way once every forward before it is
  // acknowledged, so every merge of this connection has committed; a merge still in flight
  // would mean a forward the server thinks acknowledged, and then the cursor stays put.
  int64_t received = 0;
  if (ack.forwarded_db_version() > cursor_ && merges_in_flight_ == 0) received = cursor_ = ack.forwarded_db_version();
  log(LogLevel::debug, [&] {
    return "hop=client.acked seq=" + std::to_string(ack.seq()) + " client_v=" + std::to_string(ack.client_acked_db_version()) +
           " server_v=" + std::to_string(ack.server_db_version()) + " forwarded_v=" + std::to_string(ack.forwarded_db_version());
  });
  record_ack(out, received);
  try_push(out);
  settle_waiters(out);
}

void ClientCore::on_forward(Outbox& out, sync::Forward& forward) {
  Merge merge;
  merge.ticket = MergeTicket{generation_, forward.seq(), forward.batch().from_db_version(), forward.batch().to_db_version(),
                             forward.batch().changes_size(), forward.backfill_done()};
  const MergeTicket& t = merge.ticket;
  log(LogLevel::debug, [&] {
    return "hop=client.forward seq=" + std::to_string(t.seq) + " server_v=(" + std::to_string(t.from) + "," +
           std::to_string(t.to) + "] changes=" + std::to_string(t.changes) + " cells=" + quoted(sync_frames::cells(forward.batch()));
  });
  server_known_ = std::max(server_known_, t.to);
  ++merges_in_flight_;
  if (resyncing_ && t.to >= resync_through_ && forward.batch().resume_after().empty()) {
    // The snapshot's last part: the rows it lacks are reconciled with its merge.
    merge.ticket.resync_done = true;
    auto* end = merge.request.mutable_snapshot_end();
    for (auto& [table, keys] : snapshot_keys_) {
      auto* listed = end->add_tables();
      listed->set_table(table);
      for (const auto& key : keys) listed->add_keys(key);
    }
    end->set_server_site_id(server_site_);
    end->set_server_acked(resync_acked_);
    end->set_compacted_cl(compacted_cl_);
    snapshot_keys_.clear();
  } else if (resyncing_) {
    collect_snapshot_keys(forward.batch(), &snapshot_keys_);
  }
  *merge.request.mutable_batch() = std::move(*forward.mutable_batch());
  merge.request.set_resendable(true);  // the hello's cursor brings back whatever a crash undoes
  out.emplace_back(std::move(merge));
}

Outbox ClientCore::on_merged(const MergeTicket& t, const Result<worker::MergeResponse>& merged) {
  Outbox out;
  --merges_in_flight_;
  const std::string range = " server_v=(" + std::to_string(t.from) + "," + std::to_string(t.to) + "]";
  if (!merged.ok()) {
    // The worker did not answer: whatever connection is current starts over.
    log(LogLevel::error, [&] { return "hop=client.merge seq=" + std::to_string(t.seq) + " error=" + quoted(merged.status().message()); });
    drop_link(out, "merge failed");
    schedule_reconnect(out);
    return out;
  }
  if (merged->error().code() != change::Error::OK) {
    log(LogLevel::error, [&] { return "hop=client.merge seq=" + std::to_string(t.seq) + range + " error=" + quoted(merged->error().message()); });
    if (t.generation == generation_) {
      send(out, sync_frames::error_envelope(sync::Error::REJECTED, "client could not merge forward: " + merged->error().message(), true));
      drop_link(out, "merge failed");
      schedule_reconnect(out);
    }
    return out;
  }
  cursor_ = std::max(cursor_, t.to);
  if (t.backfill_done && t.generation == generation_) backfilling_ = false;
  if (t.resync_done && t.generation == generation_) {
    resyncing_ = false;
    // Rows the reconcile raised carry a sentinel at its version: push up to it.
    local_version_ = std::max(local_version_, merged->db_version());
    log(LogLevel::info, [&] { return "hop=client.resynced server_v=" + std::to_string(t.to) + " rows_deleted=" + std::to_string(merged->rows_reconciled()); });
    try_push(out);
  }
  log(LogLevel::debug, [&] {
    return "hop=client.merged seq=" + std::to_string(t.seq) + range + " changes=" + std::to_string(t.changes) +
           " applied=" + std::to_string(merged->changes_applied()) + " local_v=" + std::to_string(merged->db_version());
  });
  if (t.generation == generation_ && phase_ == Phase::live) {
    sync::Envelope e;
    e.mutable_client_ack()->set_seq(t.seq);
    e.mutable_client_ack()->set_server_db_version(t.to);
    send(out, std::move(e));
  }
  settle_waiters(out);
  return out;
}

}  // namespace tandem::sync_client
