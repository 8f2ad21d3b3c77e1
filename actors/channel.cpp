#include "actors/channel.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include <chrono>

#include "runtime/metrics/metrics.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/frames.hpp"

namespace tandem::actors {
namespace {

// Sent by the channel to itself only, so they extend the public interface here.
using flush_atom = caf::atom_constant<caf::atom("flush")>;       // the group commit
using checkpoint_atom = caf::atom_constant<caf::atom("checkpt")>;  // record client acks (every second)
using channel_impl = channel_actor::extend<caf::reacts_to<flush_atom>, caf::reacts_to<checkpoint_atom>>;

struct channel_state {
  std::string user;
  std::unique_ptr<sync_channel::ChannelCore> core;  // null when the file could not be opened
  std::string open_error;
  channel_usage_sink directory;
  sync_channel::ChannelOptions options;
  std::map<uint64_t, envelope_sink> sessions;  // session id -> session actor
  bool flush_scheduled = false;
  static inline const char* name = "channel";
  // tandem_channels_open counts channels whose file is open: from the open to the state's end.
  ~channel_state() {
    if (core) metrics::server_metrics().channels_open.sub();
  }
};

using self_ptr = channel_impl::stateful_pointer<channel_state>;

// Sends one message to its session; returns the session's entry (end() when it is gone).
std::map<uint64_t, envelope_sink>::iterator send_one(self_ptr self, sync_channel::Outgoing& o) {
  auto it = self->state.sessions.find(o.session);
  if (it == self->state.sessions.end()) return it;
  if (o.envelope.has_forward()) metrics::server_metrics().forwards.inc();
  else if (o.envelope.has_ack()) metrics::server_metrics().acks.inc();
  if (o.envelope.has_forward() && spdlog::should_log(spdlog::level::debug))
    spdlog::debug("hop=server.forward user={} session={} seq={} server_v=({},{}] changes={} cells=\"{}\"",
                  self->state.user, o.session, o.envelope.forward().seq(),
                  o.envelope.forward().batch().from_db_version(), o.envelope.forward().batch().to_db_version(),
                  o.envelope.forward().batch().changes_size(), sync_frames::cells(o.envelope.forward().batch()));
  else if (o.envelope.has_ack())
    spdlog::debug("hop=server.ack user={} session={} seq={} client_v={} server_v={}", self->state.user, o.session,
                  o.envelope.ack().seq(), o.envelope.ack().client_acked_db_version(),
                  o.envelope.ack().server_db_version());
  else if (o.envelope.has_error())
    spdlog::warn("hop=server.error user={} session={} {}", self->state.user, o.session,
                 sync_frames::describe(o.envelope));
  self->send(it->second, std::move(o.envelope));
  return it;
}

void deliver(self_ptr self, sync_channel::Outbox out) {
  for (auto& o : out) {
    auto it = send_one(self, o);
    if (it == self->state.sessions.end()) continue;
    if (o.close_after) {
      self->state.core->leave(o.session);
      self->state.sessions.erase(it);
    }
  }
}

// Removes the metadata no peer needs any more (runtime/store/compact.cpp); the file is closing.
void compact(self_ptr self) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto report = self->state.core->compact(now, self->state.options.peer_expiry_seconds);
  if (!report.ok()) {
    spdlog::warn("hop=server.compact user={} error=\"{}\"", self->state.user, report.status().to_string());
    return;
  }
  spdlog::info("hop=server.compact user={} horizon={} tombstones_removed={} peers_expired={} changelog_keys={}->{}",
               self->state.user, report->horizon, report->tombstones_removed, report->peers_expired,
               report->changelog_keys_before, report->changelog_keys_after);
}

void report_usage(self_ptr self) {
  cluster::ChannelUsage usage;
  usage.set_user(self->state.user);
  usage.set_sessions(static_cast<uint32_t>(self->state.sessions.size()));
  self->send(self->state.directory, std::move(usage));
}

void remove_session(self_ptr self, uint64_t session) {
  if (self->state.sessions.erase(session) == 0) return;
  if (self->state.core) self->state.core->leave(session);
  spdlog::debug("hop=server.leave user={} session={} sessions={}", self->state.user, session,
                self->state.sessions.size());
  if (self->state.sessions.empty()) report_usage(self);
}

channel_impl::behavior_type channel(self_ptr self, std::string user, std::string path,
                                    sync_channel::ChannelOptions options, channel_usage_sink directory) {
  self->state.user = user;
  self->state.directory = std::move(directory);
  self->state.options = options;
  auto opened = sync_channel::ChannelCore::open(path, options);
  if (opened.ok()) {
    self->state.core = std::move(opened).value();
    metrics::server_metrics().channels_open.add();
    self->state.core->set_emit([self](sync_channel::Outgoing&& o) { send_one(self, o); });
    spdlog::info("hop=server.channel_open user={} file={} db_version={}", user, path, self->state.core->db_version());
  } else {
    self->state.open_error = opened.status().to_string();
    spdlog::error("hop=server.channel_open user={} file={} error=\"{}\"", user, path, self->state.open_error);
  }
  self->set_default_handler(caf::drop);
  self->set_down_handler([self](caf::down_msg& down) {
    // A session died without saying goodbye: forget it.
    for (auto it = self->state.sessions.begin(); it != self->state.sessions.end(); ++it) {
      if (it->second.address() == down.source) {
        remove_session(self, it->first);
        return;
      }
    }
  });
  // The state's ChannelCore records acknowledgements and closes the file when the actor ends.
  self->delayed_send(self, std::chrono::seconds(1), checkpoint_atom::value);
  return {
      [self](checkpoint_atom) {
        if (self->state.core && self->state.core->has_unrecorded_acks()) {
          auto st = self->state.core->checkpoint();
          if (!st.ok()) spdlog::warn("hop=server.checkpoint user={} error=\"{}\"", self->state.user, st.to_string());
        }
        self->delayed_send(self, std::chrono::seconds(1), checkpoint_atom::value);
      },
      [self](cluster::Join& join) {
        auto session = caf::actor_cast<envelope_sink>(self->current_sender());
        if (!session) return;
        if (!self->state.core) {
          self->send(session, sync_frames::error_envelope(sync::Error::UNAVAILABLE,
                                                          "cannot open the channel: " + self->state.open_error, true));
          // Free the directory's slot: the next session of the user tries to open it again.
          self->quit();
          return;
        }
        auto joined = self->state.core->join(join.session(), join.user(), join.hello());
        if (!joined.ok()) {
          spdlog::warn("hop=server.join user={} session={} refused=\"{}\"", self->state.user, join.session(),
                       sync_frames::log_escape(joined.status().to_string(), 1024));
          self->send(session, sync_frames::error_envelope(sync_frames::error_code_for(joined.status()),
                                                          "join refused: " + joined.status().message(), true));
          return;
        }
        if (!joined->empty() && joined->front().close_after) {
          // Refused after all (a site id another device uses): the session never joined.
          spdlog::warn("hop=server.join user={} session={} {}", self->state.user, join.session(),
                       sync_frames::describe(joined->front().envelope));
          self->send(session, std::move(joined->front().envelope));
          return;
        }
        const bool first = self->state.sessions.empty();
        self->state.sessions[join.session()] = session;
        self->monitor(session);
        spdlog::debug("hop=server.join user={} session={} client={} sessions={}", self->state.user, join.session(),
                      sync_frames::log_escape(join.hello().client_name(), 64), self->state.sessions.size());
        if (first) report_usage(self);
        deliver(self, std::move(*joined));
      },
      [self](cluster::SessionPush& push) {
        if (!self->state.core || !self->state.sessions.count(push.session())) return;
        metrics::server_metrics().pushes.inc();
        if (spdlog::should_log(spdlog::level::debug))
          spdlog::debug("hop=server.push user={} session={} seq={} client_v=({},{}] changes={} cells=\"{}\"",
                        self->state.user, push.session(), push.push().seq(), push.push().batch().from_db_version(),
                        push.push().batch().to_db_version(), push.push().batch().changes_size(),
                        sync_frames::cells(push.push().batch()));
        auto st = self->state.core->push(push.session(), std::move(*push.mutable_push()));
        if (!st.ok()) {
          sync_channel::Outbox out;
          out.push_back({push.session(), sync_frames::error_envelope(sync::Error::PROTOCOL, st.message(), true), true});
          deliver(self, std::move(out));
          return;
        }
        if (!self->state.flush_scheduled) {
          // Behind every message already queued: the pushes that arrived meanwhile share one commit.
          self->state.flush_scheduled = true;
          self->send(self, flush_atom::value);
        }
      },
      [self](flush_atom) {
        self->state.flush_scheduled = false;
        if (!self->state.core || !self->state.core->has_pending()) return;
        const auto before = self->state.core->stats();
        const auto start = std::chrono::steady_clock::now();
        auto out = self->state.core->flush();
        const auto& after = self->state.core->stats();
        auto& m = metrics::server_metrics();
        if (after.group_commits > before.group_commits) {
          m.group_commits.inc(static_cast<uint64_t>(after.group_commits - before.group_commits));
          m.changes_merged.inc(static_cast<uint64_t>(after.changes_merged - before.changes_merged));
          m.merge_commit_seconds.observe(std::chrono::steady_clock::now() - start);
          m.commit_sync_seconds.observe(std::chrono::nanoseconds(after.sync_nanos - before.sync_nanos));
        }
        spdlog::debug("hop=server.commit user={} server_v={} group_commits={}", self->state.user,
                      self->state.core->db_version(), self->state.core->stats().group_commits);
        deliver(self, std::move(out));
      },
      [self](cluster::SessionClientAck& ack) {
        if (!self->state.core || !self->state.sessions.count(ack.session())) return;
        auto out = self->state.core->client_ack(ack.session(), ack.ack());
        if (!out.ok()) {
          sync_channel::Outbox refused;
          refused.push_back({ack.session(), sync_frames::error_envelope(sync::Error::PROTOCOL, out.status().message(), true), true});
          deliver(self, std::move(refused));
          return;
        }
        deliver(self, std::move(*out));
      },
      [self](cluster::Leave& leave) { remove_session(self, leave.session()); },
      [self](cluster::CloseChannel& close) {
        spdlog::info("hop=server.channel_close user={} reason=\"{}\" sessions={}", self->state.user, close.reason(),
                     self->state.sessions.size());
        for (auto& [id, session] : self->state.sessions)
          self->send(session, sync_frames::error_envelope(sync::Error::UNAVAILABLE, "channel closed: " + close.reason(), true));
        for (auto& [id, session] : self->state.sessions)
          if (self->state.core) self->state.core->leave(id);
        self->state.sessions.clear();
        if (self->state.core && self->state.options.compact_on_close) compact(self);
        self->quit();
      },
  };
}

}  // namespace

channel_actor spawn_channel(caf::actor_system& system, std::string user, std::string path,
                            sync_channel::ChannelOptions options, channel_usage_sink directory) {
  return system.spawn<caf::detached>(channel, std::move(user), std::move(path), std::move(options), std::move(directory));
}

}  // namespace tandem::actors
