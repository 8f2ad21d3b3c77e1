#include "actors/peer_syncer.hpp"

#include <random>

#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <spdlog/spdlog.h>

#include "runtime/auth/token.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/sync/binding.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::actors {
namespace {

using self_ptr = peer_syncer_actor::stateful_pointer<peer_syncer_state>;
using Phase = peer_syncer_state::Phase;

std::string short_site(const std::string& bytes) {
  auto s = site_from_bytes(bytes);
  return s ? site_hex(*s).substr(0, 8) : "?";
}

void send_envelope(self_ptr self, const sync::Envelope& e) {
  if (self->state.connection) self->state.connection->send(sync_frames::encode(e));
}

// A push holding a large value goes out in Fragments (docs/protocol.md).
void send_message(self_ptr self, sync::Envelope&& e) {
  if (!self->state.connection) return;
  auto& connection = *self->state.connection;
  sync_frames::send_frames(std::move(e), [&connection](std::string frame) { connection.send(std::move(frame)); },
                           self->state.fragment_bytes);
}

bool caught_up(self_ptr self) {
  auto& st = self->state;
  return st.phase == Phase::live && st.in_flight.empty() && !st.reading && st.merges_in_flight == 0 &&
         st.recorded_acked >= st.client_acked &&
         st.pushed_through >= st.local_version && st.resume.empty() && st.cursor >= st.server_known;
}

void settle_waiters(self_ptr self) {
  auto& st = self->state;
  auto& acks = st.ack_waiters;
  for (auto it = acks.begin(); it != acks.end();) {
    if (st.client_acked >= it->first && st.recorded_acked >= it->first) {
      it->second.deliver(st.client_acked);
      it = acks.erase(it);
    } else if (!st.fatal_error.empty()) {
      it->second.deliver(caf::make_error(caf::sec::runtime_error, st.fatal_error));
      it = acks.erase(it);
    } else {
      ++it;
    }
  }
  if (caught_up(self)) {
    for (auto& p : st.caught_up_waiters) p.deliver(st.client_acked, st.cursor);
    st.caught_up_waiters.clear();
  } else if (!st.fatal_error.empty()) {
    for (auto& p : st.caught_up_waiters) p.deliver(caf::make_error(caf::sec::runtime_error, st.fatal_error));
    st.caught_up_waiters.clear();
  }
}

// Answers every waiting caller with `why` (the syncer itself goes on).
void fail_waiters(self_ptr self, const std::string& why) {
  auto& st = self->state;
  for (auto& [version, p] : st.ack_waiters) p.deliver(caf::make_error(caf::sec::runtime_error, why));
  st.ack_waiters.clear();
  for (auto& p : st.caught_up_waiters) p.deliver(caf::make_error(caf::sec::runtime_error, why));
  st.caught_up_waiters.clear();
}

// A failure before the server was ever reached in this run: tell the callers now.
void attempt_failed(self_ptr self, const std::string& why) {
  auto& st = self->state;
  st.last_error = why;
  if (!st.ever_live) fail_waiters(self, why);
}

void connect(self_ptr self);
void record_ack(self_ptr self);

void schedule_reconnect(self_ptr self) {
  auto& st = self->state;
  if (!st.online) return;
  const auto delay = st.fatal_error.empty() ? st.backoff->next() : st.config.backoff_cap;
  spdlog::debug("hop=client.reconnect_in ms={} attempt={}", delay.count(), st.backoff->attempts());
  self->delayed_send(self, delay, reconnect_atom::value, st.generation);
}

// Drops the current connection (if any) and forgets what was in flight on it: unacked
// pushes are pushed again from client_acked on the next welcome.
void drop_link(self_ptr self, const std::string& why) {
  auto& st = self->state;
  if (st.connection) {
    st.connection->close(net::kCloseNormal, why);
    st.connection.reset();
  }
  ++st.generation;  // late events of the old connection are ignored from now on
  st.in_flight.clear();
  st.in_flight_bytes = 0;
  st.fragments.reset();  // a partial forward is dropped, never merged; the cursor resends it
  st.reading = false;
  st.phase = st.online ? Phase::connecting : Phase::offline;
}

void try_push(self_ptr self) {
  auto& st = self->state;
  if (st.phase != Phase::live || st.reading || st.in_flight.size() >= st.push_window) return;
  if (!st.in_flight.empty() && st.push_window_bytes > 0 && st.in_flight_bytes >= st.push_window_bytes) return;
  if (st.local_version <= st.pushed_through && st.resume.empty()) return;
  st.reading = true;
  const uint64_t gen = st.generation;
  worker::ChangesSinceRequest req;
  req.set_since_db_version(st.pushed_through);
  req.set_limit(static_cast<int64_t>(st.config.push_batch_changes));
  // A transaction larger than a push is sent in parts (cut at row boundaries).
  req.set_split_versions(true);
  req.set_resume_after(st.resume);
  req.set_max_bytes(static_cast<int64_t>(st.config.push_batch_bytes));
  self->request(st.worker, st.config.request_timeout, std::move(req))
      .then(
          [self, gen](worker::ChangesSinceResponse& resp) {
            auto& ls = self->state;
            if (gen != ls.generation) return;
            ls.reading = false;
            if (resp.error().code() != change::Error::OK) {
              spdlog::error("hop=client.read_changes error=\"{}\"", resp.error().message());
              return;
            }
            const auto& all = resp.batch();
            if (all.to_db_version() <= ls.pushed_through && all.resume_after().empty() && all.changes_size() == 0) {
              ls.local_version = ls.pushed_through;  // nothing newer exists
              ls.resume.clear();
              settle_waiters(self);
              return;
            }
            auto site = site_from_bytes(ls.site);
            const int64_t read_to = all.to_db_version();
            std::string resume_after = all.resume_after();
            // Moved out of the response: a batch may hold a value of hundreds of MiB.
            change::ChangeBatch mine = sync_channel::only_from_site(std::move(*resp.mutable_batch()), *site);
            mine.set_sender_site_id(ls.site);
            if (mine.changes_size() > 0) {
              // Pushes are contiguous (each starts where the previous one ended) and end at
              // a change they carry (docs/protocol.md): versions in between hold only
              // merged changes, which the server has.
              int64_t last_change = 0;
              for (const auto& c : mine.changes()) last_change = std::max(last_change, c.db_version());
              // (`all` was moved from above: its saved read_to stands for it.)
              const bool continues = last_change > read_to;  // own rows of the split version to + 1
              mine.set_from_db_version(ls.push_from);
              mine.set_to_db_version(continues ? read_to : last_change);
              if (!continues) mine.clear_resume_after();
              ls.push_from = mine.to_db_version();
              sync::Envelope e;
              auto* p = e.mutable_push();
              p->set_seq(++ls.push_seq);
              *p->mutable_batch() = std::move(mine);
              spdlog::debug("hop=client.push seq={} client_v=({},{}] changes={} cells=\"{}\"", p->seq(),
                            p->batch().from_db_version(), p->batch().to_db_version(), p->batch().changes_size(),
                            sync_frames::cells(p->batch()));
              const uint64_t bytes = p->ByteSizeLong();
              ls.in_flight.push_back({p->seq(), read_to, bytes});
              ls.in_flight_bytes += bytes;
              send_message(self, std::move(e));
            }
            ls.pushed_through = std::max(ls.pushed_through, read_to);
            ls.resume = std::move(resume_after);
            ls.local_version = std::max(ls.local_version, ls.pushed_through);
            try_push(self);
            settle_waiters(self);
          },
          [self, gen](caf::error& err) {
            if (gen != self->state.generation) return;
            self->state.reading = false;
            spdlog::error("hop=client.read_changes error=\"{}\"", self->system().render(err));
          });
}

void on_welcome(self_ptr self, const sync::Welcome& w) {
  auto& st = self->state;
  const std::string server = sync_binding::normalize_server_url(st.config.url);
  Status allowed = sync_binding::check({st.bound_user, st.bound_server}, w.user(), server);
  if (!allowed.ok()) {
    // The server verified a user other than the one this database belongs to (the token's
    // subject could not be read before): nothing is pushed or merged on this connection.
    spdlog::error("hop=client.binding_refused user={} error=\"{}\"", w.user(), allowed.message());
    st.fatal_error = allowed.message();
    st.binding_refused = true;
    st.online = false;
    drop_link(self, "database bound to another user");
    settle_waiters(self);
    return;
  }
  if (st.bound_user.empty() || st.bound_server.empty()) {
    // The first successful hello binds the database. The worker records it before it reads
    // the changes of the first push (it answers in arrival order).
    worker::BindRequest bind;
    bind.set_user(w.user());
    bind.set_server(server);
    bind.set_record(true);
    self->request(st.worker, st.config.request_timeout, std::move(bind))
        .then(
            [](worker::BindResponse& r) {
              if (r.error().code() != change::Error::OK) spdlog::error("hop=client.bind error=\"{}\"", r.error().message());
            },
            [self](caf::error& err) { spdlog::error("hop=client.bind error=\"{}\"", self->system().render(err)); });
    st.bound_user = w.user();
    st.bound_server = server;
  }
  st.ever_live = true;
  st.last_error.clear();
  st.phase = Phase::live;
  st.server_site = w.server_site_id();
  st.cursor = w.forward_from();
  st.server_known = std::max(st.cursor, w.server_db_version());
  st.client_acked = w.client_acked_db_version();
  st.pushed_through = st.client_acked;
  st.push_from = st.client_acked;
  st.resume.clear();
  st.push_seq = 0;
  st.in_flight.clear();
  st.in_flight_bytes = 0;
  st.push_window = std::max<uint32_t>(1, w.push_window());
  st.push_window_bytes = w.push_window_bytes();
  st.fragment_bytes = sync_frames::fragment_bytes_for(w.max_frame_bytes());
  st.fatal_error.clear();
  st.backoff->reset();
  spdlog::info("hop=client.welcome user={} server={} server_v={} client_acked={} forward_from={} local_v={}", w.user(),
               short_site(w.server_site_id()), w.server_db_version(), w.client_acked_db_version(), w.forward_from(),
               st.local_version);
  record_ack(self);
  try_push(self);
  settle_waiters(self);
}

// Records in the peer table what the server holds of ours; waiters for acks are released
// only once that is recorded, so that a process that exits right after (`tandem client
// exec`) tells the server the same in its next hello (a device that knows of less than the
// server holds of its site is refused as a copy, docs/protocol.md).
void record_ack(self_ptr self) {
  auto& st = self->state;
  worker::PeerAckRequest rec;
  rec.set_peer_site_id(st.server_site);
  rec.set_acked_db_version(st.client_acked);
  const int64_t value = st.client_acked;
  const std::string site = st.site;
  self->request(st.worker, st.config.request_timeout, std::move(rec))
      .then(
          [self, value, site](worker::PeerStatus& status) {
            auto& ls = self->state;
            if (status.error().code() != change::Error::OK) {
              spdlog::warn("hop=client.record_ack error=\"{}\"", status.error().message());
            } else if (site == ls.site) {
              ls.recorded_acked = std::max(ls.recorded_acked, value);
            }
            settle_waiters(self);
          },
          [self](caf::error& err) { spdlog::warn("hop=client.record_ack error=\"{}\"", self->system().render(err)); });
}

void on_ack(self_ptr self, const sync::Ack& ack) {
  auto& st = self->state;
  while (!st.in_flight.empty() && st.in_flight.front().seq <= ack.seq()) {
    st.in_flight_bytes -= st.in_flight.front().bytes;
    st.in_flight.pop_front();
  }
  st.client_acked = std::max(st.client_acked, ack.client_acked_db_version());
  st.server_known = std::max(st.server_known, ack.server_db_version());
  spdlog::debug("hop=client.acked seq={} client_v={} server_v={}", ack.seq(), ack.client_acked_db_version(),
                ack.server_db_version());
  record_ack(self);
  try_push(self);
  settle_waiters(self);
}

void on_forward(self_ptr self, sync::Forward& fwd) {
  auto& st = self->state;
  const uint64_t gen = st.generation;
  const uint64_t seq = fwd.seq();
  const int64_t to = fwd.batch().to_db_version();
  const int64_t from = fwd.batch().from_db_version();
  const int changes = fwd.batch().changes_size();
  if (spdlog::should_log(spdlog::level::debug))
    spdlog::debug("hop=client.forward seq={} server_v=({},{}] changes={} cells=\"{}\"", seq, from, to, changes,
                  sync_frames::cells(fwd.batch()));
  st.server_known = std::max(st.server_known, to);
  ++st.merges_in_flight;
  worker::MergeRequest req;
  *req.mutable_batch() = std::move(*fwd.mutable_batch());
  req.set_resendable(true);  // the hello's cursor brings back whatever a crash undoes
  self->request(st.worker, st.config.request_timeout, std::move(req))
      .then(
          [self, gen, seq, to, from, changes](worker::MergeResponse& resp) {
            auto& ls = self->state;
            --ls.merges_in_flight;
            if (resp.error().code() != change::Error::OK) {
              spdlog::error("hop=client.merge seq={} server_v=({},{}] error=\"{}\"", seq, from, to, resp.error().message());
              if (gen == ls.generation) {
                send_envelope(self, sync_frames::error_envelope(sync::Error::REJECTED,
                                                                "client could not merge forward: " + resp.error().message(), true));
                drop_link(self, "merge failed");
                schedule_reconnect(self);
              }
              return;
            }
            ls.cursor = std::max(ls.cursor, to);
            spdlog::debug("hop=client.merged seq={} server_v=({},{}] changes={} applied={} local_v={}", seq, from, to,
                          changes, resp.changes_applied(), resp.db_version());
            if (gen == ls.generation && ls.phase == Phase::live) {
              sync::Envelope e;
              e.mutable_client_ack()->set_seq(seq);
              e.mutable_client_ack()->set_server_db_version(to);
              send_envelope(self, e);
            }
            settle_waiters(self);
          },
          [self, seq](caf::error& err) {
            --self->state.merges_in_flight;
            spdlog::error("hop=client.merge seq={} error=\"{}\"", seq, self->system().render(err));
            drop_link(self, "merge failed");
            schedule_reconnect(self);
          });
}

// The server says another device uses our site id (a copy of this database file): take a
// new one, keeping what the server acknowledged under the old id, and connect again at once;
// every later change of ours is then pushed under the new id.
void take_new_site(self_ptr self) {
  auto& st = self->state;
  st.resiting = true;
  const int64_t keep = st.client_acked;
  worker::NewSiteRequest req;
  req.set_keep_through(keep);
  self->request(st.worker, st.config.request_timeout, std::move(req))
      .then(
          [self, keep](worker::NewSiteResponse& resp) {
            auto& ls = self->state;
            ls.resiting = false;
            if (resp.error().code() != change::Error::OK) {
              ls.fatal_error = "cannot take a new site id: " + resp.error().message();
              spdlog::error("hop=client.new_site error=\"{}\"", resp.error().message());
              settle_waiters(self);
              return;
            }
            spdlog::warn("hop=client.new_site old={} new={} kept_through={}", short_site(ls.site), short_site(resp.site_id()), keep);
            ls.site = resp.site_id();
            ls.client_acked = 0;
            ls.recorded_acked = 0;
            ls.pushed_through = 0;
            ls.push_from = 0;
            ls.resume.clear();
            if (ls.online && !ls.connection) connect(self);
          },
          [self](caf::error& err) {
            auto& ls = self->state;
            ls.resiting = false;
            ls.fatal_error = "cannot take a new site id: " + self->system().render(err);
            settle_waiters(self);
          });
}

void on_envelope(self_ptr self, sync::Envelope& e);

void on_frame(self_ptr self, const std::string& frame) {
  auto decoded = sync_frames::decode(frame);
  if (!decoded.ok) {
    spdlog::error("hop=client.bad_frame {}", decoded.error.message());
    send_envelope(self, sync_frames::error_envelope(decoded.error.code(), decoded.error.message(), true));
    drop_link(self, "bad frame from server");
    schedule_reconnect(self);
    return;
  }
  on_envelope(self, decoded.envelope);
}

void on_envelope(self_ptr self, sync::Envelope& e) {
  auto& st = self->state;
  const bool in_the_middle = st.fragments.active() && !e.has_fragment() && !e.has_ping() && !e.has_pong() && !e.has_error();
  switch (in_the_middle ? sync::Envelope::KIND_NOT_SET : e.kind_case()) {
    case sync::Envelope::kFragment: {
      if (st.phase != Phase::live) break;
      if (!st.fragments.active())
        spdlog::debug("hop=client.fragments total={} (a forward in fragments)", e.fragment().total_bytes());
      std::optional<sync::Envelope> whole;
      sync::Error refusal;
      if (!st.fragments.add(std::move(*e.mutable_fragment()), &whole, &refusal)) {
        spdlog::error("hop=client.bad_fragment {}", refusal.message());
        send_envelope(self, sync_frames::error_envelope(refusal.code(), refusal.message(), true));
        drop_link(self, "bad fragment from server");
        schedule_reconnect(self);
        return;
      }
      if (!whole) return;
      if (whole->has_forward()) return on_forward(self, *whole->mutable_forward());
      e = std::move(*whole);  // refused below as unexpected
      break;
    }
    case sync::Envelope::kWelcome:
      if (st.phase != Phase::awaiting_welcome) break;
      return on_welcome(self, e.welcome());
    case sync::Envelope::kAck:
      if (st.phase != Phase::live) break;
      return on_ack(self, e.ack());
    case sync::Envelope::kForward:
      if (st.phase != Phase::live) break;
      return on_forward(self, *e.mutable_forward());
    case sync::Envelope::kPing: {
      sync::Envelope pong;
      pong.mutable_pong()->set_nonce(e.ping().nonce());
      return send_envelope(self, pong);
    }
    case sync::Envelope::kPong:
      return;
    case sync::Envelope::kError: {
      const auto code = e.error().code();
      spdlog::error("hop=client.server_error code={} message=\"{}\"", sync::Error::Code_Name(code),
                    sync_frames::log_escape(e.error().message(), 1024));
      if (code == sync::Error::SITE_CONFLICT) {
        drop_link(self, "site conflict");
        return take_new_site(self);
      }
      const bool retryable = code == sync::Error::UNAVAILABLE || code == sync::Error::TIMEOUT || code == sync::Error::INTERNAL;
      const std::string why = "server refused: " + sync::Error::Code_Name(code) + ": " + e.error().message();
      if (!retryable) st.fatal_error = why;
      else if (st.phase == Phase::awaiting_welcome) attempt_failed(self, why);
      if (e.error().fatal()) {
        drop_link(self, "server error");
        schedule_reconnect(self);
      }
      settle_waiters(self);
      return;
    }
    default:
      break;
  }
  spdlog::error("hop=client.protocol unexpected {}", sync_frames::describe(e));
  send_envelope(self, sync_frames::error_envelope(sync::Error::PROTOCOL, "unexpected " + sync_frames::describe(e), true));
  drop_link(self, "protocol error");
  schedule_reconnect(self);
}

void connect(self_ptr self) {
  auto& st = self->state;
  if (!st.online) return;
  const uint64_t gen = ++st.generation;
  st.phase = Phase::connecting;
  auto slot = st.slot;
  net::Handler h;
  peer_syncer_actor me = self;
  h.on_frame = [me, gen](std::string frame) { caf::anon_send(me, link_frame_atom::value, gen, std::move(frame)); };
  h.on_close = [me, gen](const Status& why) { caf::anon_send(me, link_closed_atom::value, gen, why.message()); };
  spdlog::debug("hop=client.connect url={} attempt={}", st.config.url, st.backoff->attempts());
  net::connect(*st.config.loop, st.config.url, st.config.client, std::move(h),
               [me, gen, slot](Result<std::shared_ptr<net::Connection>> r) {
                 {
                   std::lock_guard<std::mutex> lock(slot->mu);
                   slot->generation = gen;
                   slot->connection = r.ok() ? *r : nullptr;
                   slot->error = r.ok() ? std::string() : r.status().message();
                 }
                 caf::anon_send(me, link_open_atom::value, gen);
               });
}

void on_open(self_ptr self, uint64_t gen) {
  auto& st = self->state;
  std::shared_ptr<net::Connection> conn;
  std::string error;
  {
    std::lock_guard<std::mutex> lock(st.slot->mu);
    if (st.slot->generation != gen) return;
    conn = std::move(st.slot->connection);
    error = st.slot->error;
  }
  if (gen != st.generation || st.phase != Phase::connecting) {
    if (conn) conn->close(net::kCloseNormal, "superseded");
    return;
  }
  if (!conn) {
    spdlog::info("hop=client.connect_failed url={} error=\"{}\"", st.config.url, error);
    attempt_failed(self, "cannot reach the server at " + st.config.url + ": " + error);
    st.phase = Phase::connecting;
    schedule_reconnect(self);
    return;
  }
  st.connection = std::move(conn);
  st.phase = Phase::awaiting_welcome;
  sync::Envelope e;
  auto* h = e.mutable_hello();
  h->set_protocol_version(sync_frames::kProtocolVersion);
  h->set_token(st.config.token);
  h->set_site_id(st.site);
  h->set_server_site_id(st.server_site);
  h->set_cursor(st.server_site.empty() ? 0 : st.cursor);
  h->set_acked_db_version(st.server_site.empty() ? 0 : st.client_acked);
  h->set_instance_id(st.instance);
  h->set_client_name(st.config.client_name.substr(0, 64));
  for (const auto& s : st.config.schema) h->add_schema(s);
  spdlog::debug("hop=client.hello server={} cursor={}", short_site(st.server_site), h->cursor());
  send_envelope(self, e);
}

// Before the first connection: a database bound to another user or server is never
// connected (nothing is sent, not even the hello with that user's token).
void check_binding_then_connect(self_ptr self) {
  auto& st = self->state;
  worker::BindRequest read;
  self->request(st.worker, st.config.request_timeout, std::move(read))
      .then(
          [self](worker::BindResponse& r) {
            auto& ls = self->state;
            Status allowed = from_proto(r.error());
            if (allowed.ok()) {
              ls.bound_user = r.user();
              ls.bound_server = r.server();
              allowed = sync_binding::check({r.user(), r.server()}, ls.token_user, ls.config.url);
            }
            if (!allowed.ok()) {
              spdlog::error("hop=client.binding_refused error=\"{}\"", allowed.message());
              ls.fatal_error = allowed.message();
              ls.binding_refused = true;
              ls.online = false;
              ls.phase = Phase::offline;
              settle_waiters(self);
              return;
            }
            ls.phase = ls.online ? Phase::connecting : Phase::offline;
            if (ls.online) connect(self);
          },
          [self](caf::error& err) {
            auto& ls = self->state;
            ls.fatal_error = "cannot read the database's binding: " + self->system().render(err);
            ls.binding_refused = true;
            ls.online = false;
            ls.phase = Phase::offline;
            settle_waiters(self);
          });
}

// Start-up: learn our site id and version, subscribe to committed deltas, find the server
// cursor a previous run left in the peer table, then connect.
void start(self_ptr self) {
  auto& st = self->state;
  self->request(st.worker, st.config.request_timeout, worker::StatusRequest{})
      .then(
          [self](worker::StatusResponse& status) {
            auto& ls = self->state;
            ls.site = status.site_id();
            ls.local_version = status.db_version();
            self->request(ls.worker, ls.config.request_timeout, worker::SubscribeRequest{})
                .then([](worker::SubscribeResponse&) {}, [](caf::error&) {});
            worker::QueryRequest q;
            q.set_sql("SELECT site_id, received, acked FROM tandem_peers ORDER BY received DESC LIMIT 1");
            self->request(ls.worker, ls.config.request_timeout, std::move(q))
                .then(
                    [self](worker::QueryResponse& rows) {
                      auto& ns = self->state;
                      if (rows.error().code() == change::Error::OK && rows.rows_size() == 1) {
                        auto site = from_proto(rows.rows(0).values(0));
                        auto received = from_proto(rows.rows(0).values(1));
                        auto acked = from_proto(rows.rows(0).values(2));
                        if (site.is_blob() && site.bytes().size() == 16 && received.is_integer()) {
                          ns.server_site = site.bytes();
                          ns.cursor = received.integer();
                          // Told in the hello: what of ours this device knows the server holds.
                          if (acked.is_integer()) ns.client_acked = ns.recorded_acked = acked.integer();
                        }
                      }
                      check_binding_then_connect(self);
                    },
                    [self](caf::error&) { check_binding_then_connect(self); });
          },
          [self](caf::error& err) {
            spdlog::critical("hop=client.start db_worker did not answer: {}", self->system().render(err));
            self->quit(err);
          });
}

}  // namespace

peer_syncer_actor::behavior_type peer_syncer(self_ptr self, db_worker_actor worker, PeerSyncerConfig config) {
  auto& st = self->state;
  st.worker = std::move(worker);
  st.online = config.start_online;
  const uint64_t seed =
      config.seed != 0 ? config.seed : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  st.backoff = std::make_unique<sync_backoff::Backoff>(config.backoff_base, config.backoff_cap, seed);
  {
    std::random_device random;
    for (int i = 0; i < 4; ++i) {
      const uint32_t word = random();
      st.instance.append(reinterpret_cast<const char*>(&word), sizeof word);
    }
  }
  st.config = std::move(config);
  if (auto subject = auth::unverified_subject(st.config.token); subject.ok()) st.token_user = *subject;
  self->set_default_handler(caf::drop);
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (msg.reason == caf::exit_reason::normal) return;
    fail_waiters(self, "the node is stopping");
    self->quit(msg.reason);
  });
  self->set_error_handler([self](caf::error& err) {
    spdlog::warn("hop=client.error {}", self->system().render(err));
  });
  start(self);
  return {
      [self](link_open_atom, uint64_t gen) { on_open(self, gen); },
      [self](link_frame_atom, uint64_t gen, std::string& frame) {
        if (gen == self->state.generation && self->state.connection) on_frame(self, frame);
      },
      [self](link_closed_atom, uint64_t gen, std::string& why) {
        auto& ls = self->state;
        if (gen != ls.generation) return;
        spdlog::info("hop=client.disconnected why=\"{}\"", why);
        if (ls.phase == Phase::awaiting_welcome) attempt_failed(self, "the server at " + ls.config.url + " closed the connection before welcoming us: " + why);
        else ls.last_error = "lost the connection to " + ls.config.url + ": " + why;
        ls.connection.reset();
        drop_link(self, why);
        schedule_reconnect(self);
        settle_waiters(self);
      },
      [self](reconnect_atom, uint64_t gen) {
        auto& ls = self->state;
        if (gen != ls.generation || !ls.online || ls.connection || ls.resiting) return;
        connect(self);
      },
      [self](const change::RowDeltaBatch& batch) {
        auto& ls = self->state;
        if (batch.origin() != change::RowDeltaBatch::LOCAL) return;
        ls.local_version = std::max(ls.local_version, batch.db_version());
        spdlog::debug("hop=client.local_commit local_v={} rows={}{}", batch.db_version(), batch.deltas_size(),
                      batch.mutation_id().empty() ? "" : " mutation=" + batch.mutation_id());
        try_push(self);
      },
      [self](wait_acked_atom, int64_t version) -> caf::result<int64_t> {
        auto& ls = self->state;
        if (ls.client_acked >= version && ls.recorded_acked >= version) return ls.client_acked;
        if (!ls.fatal_error.empty()) return caf::make_error(caf::sec::runtime_error, ls.fatal_error);
        if (!ls.ever_live && !ls.last_error.empty()) return caf::make_error(caf::sec::runtime_error, ls.last_error);
        ls.local_version = std::max(ls.local_version, version);
        auto p = self->make_response_promise<int64_t>();
        ls.ack_waiters.emplace_back(version, p);
        try_push(self);
        return p;
      },
      [self](caught_up_atom) -> caf::result<int64_t, int64_t> {
        auto& ls = self->state;
        if (caught_up(self)) return caf::result<int64_t, int64_t>(ls.client_acked, ls.cursor);
        if (!ls.fatal_error.empty()) return caf::make_error(caf::sec::runtime_error, ls.fatal_error);
        if (!ls.ever_live && !ls.last_error.empty()) return caf::make_error(caf::sec::runtime_error, ls.last_error);
        auto p = self->make_response_promise<int64_t, int64_t>();
        ls.caught_up_waiters.push_back(p);
        return p;
      },
      [self](last_error_atom) -> std::string { return self->state.last_error; },
      [self](online_atom, bool online) {
        auto& ls = self->state;
        if (online == ls.online) return;
        ls.online = online;
        spdlog::info("hop=client.{}", online ? "online" : "offline");
        if (!online) {
          drop_link(self, "going offline");
        } else if (ls.phase != Phase::starting && !ls.binding_refused && !ls.resiting) {
          ls.backoff->reset();
          connect(self);
        }
      },
  };
}

}  // namespace tandem::actors
