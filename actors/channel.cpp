#include "actors/channel.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>

#include <random>
#include <chrono>

#include "actors/session.hpp"
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
  std::map<uint64_t, envelope_sink> sessions;  // session id -> session actor (or linked channel)
  // Sessions of this process: their envelopes go straight to the connection (SessionOutlet).
  std::map<uint64_t, std::weak_ptr<SessionOutlet>> outlets;
  // Replica links: channels of other hosts this one joined (by address; our session id
  // there), and the sessions here that are other hosts' links (`true`: a back link, which
  // does not keep this channel open).
  struct LinkOut {
    channel_actor peer;
    uint64_t session = 0;
    int64_t peer_head = -1;  // the peer's db_version when it welcomed the link (-1: not yet)
  };
  // A channel of a cluster keeping replicas holds its clients' joins back until one link
  // caught up with its peer's history as of the link's welcome (a host back from a crash
  // serves nothing stale), or until catch_up_until passes with no link caught up.
  bool catching_up = false;
  std::chrono::steady_clock::time_point catch_up_until{};
  std::vector<std::pair<cluster::Join, envelope_sink>> held_joins;
  std::map<caf::actor_addr, LinkOut> links_out;
  std::map<uint64_t, bool> links_in;
  std::chrono::steady_clock::time_point links_asked{};
  uint32_t replicas = 1;
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
  auto outlet = self->state.outlets.find(o.session);
  if (outlet != self->state.outlets.end()) {
    if (auto direct = outlet->second.lock()) {
      direct->deliver(std::move(o.envelope));
      return it;
    }
  }
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
      self->state.outlets.erase(o.session);
    }
  }
}

// Sessions that keep the channel open: clients, and links other than back links.
uint32_t usage_count(self_ptr self) {
  uint32_t n = 0;
  for (const auto& [id, s] : self->state.sessions) {
    auto link = self->state.links_in.find(id);
    n += link == self->state.links_in.end() || !link->second;
  }
  return n;
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
  usage.set_sessions(usage_count(self));
  self->send(self->state.directory, std::move(usage));
}

void remove_session(self_ptr self, uint64_t session) {
  const uint32_t before = usage_count(self);
  if (self->state.sessions.erase(session) == 0) return;
  self->state.outlets.erase(session);
  self->state.links_in.erase(session);
  if (self->state.core) self->state.core->leave(session);
  spdlog::debug("hop=server.leave user={} session={} sessions={}", self->state.user, session,
                self->state.sessions.size());
  if (before > 0 && usage_count(self) == 0) report_usage(self);
}

// Joins `peer` (the same user's channel on another host) as a replica link.
void link_to(self_ptr self, const channel_actor& peer, bool back) {
  if (!self->state.core || !peer || peer.address() == self->address() || self->state.links_out.count(peer.address()))
    return;
  auto hello = self->state.core->replica_hello();
  if (!hello.ok()) {
    spdlog::warn("hop=server.link user={} error=\"{}\"", self->state.user, hello.status().to_string());
    return;
  }
  // Session ids of links have the top bit set: a host's own session ids count up from 1.
  std::random_device rd;
  const uint64_t session = (uint64_t{1} << 63) | (uint64_t{rd()} << 32) | rd();
  cluster::Join join;
  join.set_session(session);
  join.set_user(self->state.user);
  *join.mutable_hello() = std::move(*hello);
  join.set_replica(true);
  join.set_back(back);
  self->state.links_out[peer.address()] = {peer, session};
  self->monitor(peer);
  self->send(peer, std::move(join));
  spdlog::info("hop=server.link user={} peer={} back={}", self->state.user, caf::to_string(peer.node()), back);
}

void drop_link(self_ptr self, const caf::actor_addr& peer, const std::string& why) {
  auto it = self->state.links_out.find(peer);
  if (it == self->state.links_out.end()) return;
  spdlog::warn("hop=server.link_lost user={} peer={} reason=\"{}\"", self->state.user, caf::to_string(peer.node()), why);
  cluster::Leave leave;
  leave.set_session(it->second.session);
  self->send(it->second.peer, std::move(leave));
  self->state.links_out.erase(it);
}

void client_join(self_ptr self, cluster::Join& join, const envelope_sink& session);

// Serves the joins held while catching up.
void end_catch_up(self_ptr self, const char* why) {
  if (!self->state.catching_up) return;
  self->state.catching_up = false;
  spdlog::info("hop=server.catch_up_done user={} why=\"{}\" held_joins={}", self->state.user, why,
               self->state.held_joins.size());
  if (self->state.replicas <= 1) {
    // One copy: the link served the catch-up only. Both directions end (the peer drops its
    // back link when told so).
    while (!self->state.links_out.empty()) drop_link(self, self->state.links_out.begin()->first, "caught up");
    std::vector<uint64_t> links_in;
    for (const auto& [id, back] : self->state.links_in) links_in.push_back(id);
    for (auto id : links_in) {
      auto session = self->state.sessions.find(id);
      if (session != self->state.sessions.end())
        self->send(session->second, sync_frames::error_envelope(sync::Error::UNAVAILABLE, "link ended: caught up", true));
      remove_session(self, id);
    }
  }
  auto held = std::move(self->state.held_joins);
  for (auto& [join, session] : held) client_join(self, join, session);
}

// Asks the directory for links, in the user's order of hosts, while the channel is in use
// (or `held` joins wait): every 2 s while it has fewer than the cluster keeps (a host died,
// or none was reachable yet), every 5 s otherwise (a preferred host that came back is linked
// again; extra links stay until either end closes), and at once when `urgent` (a first client).
void ask_links(self_ptr self, bool urgent, bool held = false) {
  const auto now = std::chrono::steady_clock::now();
  // While catching up, a single-copy channel wants one link too: the host that held the
  // user's file before this one joined the cluster.
  const uint32_t replicas = self->state.catching_up ? std::max<uint32_t>(self->state.replicas, 2) : self->state.replicas;
  if (replicas <= 1 || (usage_count(self) == 0 && !held)) return;
  const bool short_of_links = self->state.links_out.size() + 1 < replicas;
  const auto interval = urgent ? std::chrono::seconds(0) : std::chrono::seconds(short_of_links ? 2 : 5);
  if (now - self->state.links_asked < interval) return;
  self->state.links_asked = now;
  cluster::LinksWanted wanted;
  wanted.set_user(self->state.user);
  self->send(self->state.directory, std::move(wanted));
}

// An envelope from a channel this one joined: merge its forwards durably and acknowledge.
void on_link_envelope(self_ptr self, sync::Envelope& e) {
  auto it = self->state.links_out.find(self->current_sender() ? self->current_sender()->address() : caf::actor_addr{});
  if (it == self->state.links_out.end() || !self->state.core) return;
  if (e.has_error()) {
    drop_link(self, it->first, "refused: " + e.error().message());
    return;
  }
  if (e.has_welcome()) {
    it->second.peer_head = e.welcome().server_db_version();
    if (it->second.peer_head <= e.welcome().forward_from()) end_catch_up(self, "link welcomed, nothing to catch up");
    return;
  }
  if (!e.has_forward()) return;
  auto merged = self->state.core->merge_replica(e.forward());
  if (!merged.ok()) {
    drop_link(self, it->first, "merge failed: " + merged.status().to_string());
    return;
  }
  cluster::SessionClientAck ack;
  ack.set_session(it->second.session);
  *ack.mutable_ack() = merged->ack;
  ack.set_replica_db_version(merged->db_version);
  const bool caught_up = it->second.peer_head >= 0 && e.forward().batch().to_db_version() >= it->second.peer_head;
  self->send(it->second.peer, std::move(ack));
  deliver(self, std::move(merged->out));
  if (caught_up) end_catch_up(self, "caught up with a replica");
}

// A client's session joins (its hello was verified by the session actor).
void client_join(self_ptr self, cluster::Join& join, const envelope_sink& session) {
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
  const bool first = usage_count(self) == 0;
  self->state.sessions[join.session()] = session;
  if (auto outlet = local_session_outlet(join.session(), session.address())) self->state.outlets[join.session()] = outlet;
  self->monitor(session);
  spdlog::debug("hop=server.join user={} session={} client={} sessions={}", self->state.user, join.session(),
                sync_frames::log_escape(join.hello().client_name(), 64), self->state.sessions.size());
  if (first) {
    report_usage(self);
    ask_links(self, true);
  }
  deliver(self, std::move(*joined));
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
  self->state.replicas = options.replicas;
  if ((options.replicas > 1 || options.cluster) && self->state.core) {
    self->state.catching_up = true;
    self->state.catch_up_until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  }
  self->set_down_handler([self](caf::down_msg& down) {
    if (self->state.links_out.count(down.source)) drop_link(self, down.source, "host or channel down");
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
        if (self->state.core) {
          const auto now = std::chrono::steady_clock::now();
          deliver(self, self->state.core->expire_quorum(now));
          ask_links(self, false);
          if (self->state.catching_up && now >= self->state.catch_up_until) end_catch_up(self, "no replica caught up in time");
        }
        self->delayed_send(self, std::chrono::seconds(1), checkpoint_atom::value);
      },
      [self](cluster::Join& join) {
        auto session = caf::actor_cast<envelope_sink>(self->current_sender());
        if (!session) return;
        if (join.replica()) {
          if (!self->state.core) return;
          auto joined = self->state.core->join_replica(join.session(), join.user(), join.hello());
          if (!joined.ok()) {
            spdlog::warn("hop=server.link user={} refused=\"{}\"", self->state.user, joined.status().to_string());
            self->send(session, sync_frames::error_envelope(sync_frames::error_code_for(joined.status()),
                                                            "link refused: " + joined.status().message(), true));
            return;
          }
          const uint32_t before = usage_count(self);
          self->state.sessions[join.session()] = session;
          self->state.links_in[join.session()] = join.back();
          self->monitor(session);
          if (before == 0 && usage_count(self) > 0) report_usage(self);
          deliver(self, std::move(*joined));
          link_to(self, caf::actor_cast<channel_actor>(self->current_sender()), true);
          return;
        }
        if (!self->state.core) {
          self->send(session, sync_frames::error_envelope(sync::Error::UNAVAILABLE,
                                                          "cannot open the channel: " + self->state.open_error, true));
          // Free the directory's slot: the next session of the user tries to open it again.
          self->quit();
          return;
        }
        if (self->state.catching_up) {
          self->state.held_joins.emplace_back(std::move(join), session);
          ask_links(self, true, true);
          return;
        }
        client_join(self, join, session);
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
        auto out = self->state.core->client_ack(ack.session(), ack.ack(), ack.replica_db_version());
        if (!out.ok()) {
          sync_channel::Outbox refused;
          refused.push_back({ack.session(), sync_frames::error_envelope(sync::Error::PROTOCOL, out.status().message(), true), true});
          deliver(self, std::move(refused));
          return;
        }
        deliver(self, std::move(*out));
      },
      [self](cluster::Leave& leave) { remove_session(self, leave.session()); },
      [self](cluster::ChannelStatusRequest&) {
        cluster::ChannelStatus st;
        st.set_user(self->state.user);
        if (!self->state.core) return st;
        st.set_db_version(self->state.core->db_version());
        for (const auto& info : self->state.core->sessions()) {
          auto* s = st.add_sessions();
          s->set_session(info.session);
          s->set_site_id(site_hex(info.site));
          s->set_client_name(info.name);
          s->set_acked_db_version(info.acked);
          s->set_sent_db_version(info.sent);
          s->set_joined_unix_ms(info.joined_ms);
          s->set_last_seen_unix_ms(info.last_seen_ms);
          s->set_pushes(info.pushes);
          s->set_replica(info.replica);
        }
        return st;
      },
      [self](cluster::CloseChannel& close) {
        spdlog::info("hop=server.channel_close user={} reason=\"{}\" sessions={}", self->state.user, close.reason(),
                     self->state.sessions.size());
        for (auto& [id, session] : self->state.sessions)
          self->send(session, sync_frames::error_envelope(sync::Error::UNAVAILABLE, "channel closed: " + close.reason(), true));
        for (auto& [id, session] : self->state.sessions)
          if (self->state.core) self->state.core->leave(id);
        self->state.sessions.clear();
        while (!self->state.links_out.empty()) drop_link(self, self->state.links_out.begin()->first, "closing");
        if (self->state.core && self->state.options.compact_on_close) compact(self);
        self->quit();
      },
      [self](sync::Envelope& e) { on_link_envelope(self, e); },
      [self](link_atom, caf::actor& peer) { link_to(self, caf::actor_cast<channel_actor>(peer), false); },
      [self](link_atom) {
        if (self->state.links_out.empty()) end_catch_up(self, "no other copy reachable");
      },
  };
}

}  // namespace

channel_actor spawn_channel(caf::actor_system& system, std::string user, std::string path,
                            sync_channel::ChannelOptions options, channel_usage_sink directory) {
  return system.spawn<caf::detached>(channel, std::move(user), std::move(path), std::move(options), std::move(directory));
}

}  // namespace tandem::actors
