#include "actors/directory.hpp"
#include "actors/cluster_link.hpp"

#include <caf/stateful_actor.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <caf/actor_system.hpp>
#include <caf/sec.hpp>
#include <spdlog/spdlog.h>

#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>

#include "runtime/auth/user_id.hpp"
#include "runtime/sync/placement.hpp"

namespace tandem::actors {
namespace {

// Sent by the directory to itself only: close idle channels (every idle_close / 2).
using sweep_atom = caf::atom_constant<caf::atom("sweep")>;
using directory_impl = directory_actor::extend<caf::reacts_to<sweep_atom>>;

// Cluster fields: this member, all members, the other members' directories once connected,
// and the lookups waiting for a connection.
struct directory_state {
  struct Entry {
    channel_actor channel;
    uint32_t sessions = 0;
    bool closing = false;
    std::chrono::steady_clock::time_point idle_since;
    std::vector<caf::typed_response_promise<channel_actor>> waiting;  // lookups held while closing
  };
  DirectoryConfig config;
  std::map<std::string, Entry> channels;
  std::deque<std::pair<std::string, caf::typed_response_promise<channel_actor>>> queued;  // waiting for a slot
  uint64_t opened = 0;
  uint64_t closed = 0;
  // Cluster: this member, all members, the other members' directories once connected, and
  // the lookups waiting for a connection.
  std::string self_member;
  std::vector<std::string> members;
  std::vector<std::string> former_members;  // removed by a membership change
  std::map<std::string, directory_actor> remotes;
  std::map<std::string, std::string> member_errors;  // member -> its last failure (status only)
  std::map<std::string, std::vector<std::pair<cluster::ChannelLookup, std::function<void(caf::expected<channel_actor>)>>>>
      connecting;
  static inline const char* name = "directory";
};


using self_ptr = directory_impl::stateful_pointer<directory_state>;

channel_actor open_channel(self_ptr self, const std::string& user, const std::string& path) {
  channel_usage_sink sink = self;
  auto ch = spawn_channel(self->system(), user, path, self->state.config.channel, sink);
  self->monitor(ch);
  auto& e = self->state.channels[user];
  e.channel = ch;
  e.sessions = 0;
  e.closing = false;
  e.idle_since = std::chrono::steady_clock::now();
  ++self->state.opened;
  return ch;
}

void close_channel(self_ptr self, const std::string& user, directory_state::Entry& e, const std::string& reason) {
  if (e.closing) return;
  e.closing = true;
  spdlog::debug("hop=server.directory closing user={} reason=\"{}\"", user, reason);
  cluster::CloseChannel close;
  close.set_reason(reason);
  self->send(e.channel, std::move(close));
}

// The longest-idle channel without sessions, if any.
std::string eviction_candidate(self_ptr self) {
  std::string best;
  std::chrono::steady_clock::time_point oldest = std::chrono::steady_clock::time_point::max();
  for (auto& [user, e] : self->state.channels) {
    if (e.closing || e.sessions > 0) continue;
    if (e.idle_since < oldest) {
      oldest = e.idle_since;
      best = user;
    }
  }
  return best;
}

size_t open_count(self_ptr self) { return self->state.channels.size(); }

// Called once with the channel another member's directory handed out, or the error.
using LookupDone = std::function<void(caf::expected<channel_actor>)>;

// Asks `remote` (another member's directory) for a user's channel.
void ask_remote(self_ptr self, const directory_actor& remote, cluster::ChannelLookup lookup, LookupDone done) {
  lookup.set_forwarded(true);
  self->request(remote, self->state.config.remote_timeout, std::move(lookup))
      .then([done](channel_actor ch) { done(std::move(ch)); }, [done](caf::error& err) { done(std::move(err)); });
}

// A lookup on `member`: through its directory, connecting first if needed.
void lookup_remote(self_ptr self, const std::string& member, cluster::ChannelLookup lookup, LookupDone done) {
  auto known = self->state.remotes.find(member);
  if (known != self->state.remotes.end()) {
    ask_remote(self, known->second, std::move(lookup), std::move(done));
    return;
  }
  auto& queue = self->state.connecting[member];
  queue.emplace_back(std::move(lookup), std::move(done));
  if (queue.size() > 1) return;  // a connection is under way
  auto colon = member.rfind(':');
  const std::string port_text = colon == std::string::npos ? "" : member.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    auto waiting = std::move(self->state.connecting[member]);
    self->state.connecting.erase(member);
    for (auto& [l, d] : waiting) d(caf::make_error(caf::sec::invalid_argument, "cluster member '" + member + "' is not HOST:PORT"));
    return;
  }
  std::string host = member.substr(0, colon);
  auto port = static_cast<uint16_t>(std::stoi(port_text));
  spdlog::debug("hop=server.directory connecting member={}", member);
  auto mm = cluster_middleman(self->system());  // TLS (caf-openssl) unless --cluster-insecure
  self->request(mm, self->state.config.remote_timeout, caf::connect_atom::value, host, port)
      .then(
          [self, member](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
            auto remote = caf::actor_cast<directory_actor>(ptr);
            auto waiting = std::move(self->state.connecting[member]);
            self->state.connecting.erase(member);
            if (!remote) {
              for (auto& [l, d] : waiting)
                d(caf::make_error(caf::sec::runtime_error, "member " + member + " published no directory"));
              return;
            }
            self->state.remotes[member] = remote;
            self->state.member_errors.erase(member);
            self->monitor(remote);
            for (auto& [l, d] : waiting) ask_remote(self, remote, std::move(l), std::move(d));
          },
          [self, member](caf::error& err) {
            spdlog::warn("hop=server.directory unreachable member={} error=\"{}\"", member, self->system().render(err));
            self->state.member_errors[member] = "unreachable: " + self->system().render(err);
            auto waiting = std::move(self->state.connecting[member]);
            self->state.connecting.erase(member);
            for (auto& [l, d] : waiting)
              d(caf::make_error(caf::sec::runtime_error, "the user's server host " + member + " is unreachable"));
          });
}

// Finds `needed` more of the user's channels on the members in `rest` (in order, skipping
// the unreachable) and tells `channel` to link to each.
// Then tells it the search is over.
void find_links(self_ptr self, const std::string& user, const channel_actor& channel, std::vector<std::string> rest,
                size_t needed) {
  if (needed == 0 || rest.empty()) {
    self->send(channel, link_atom::value);
    return;
  }
  const std::string member = rest.front();
  rest.erase(rest.begin());
  cluster::ChannelLookup lookup;
  lookup.set_user(user);
  lookup.set_if_exists(self->state.config.channel.replicas <= 1);
  lookup_remote(self, member, std::move(lookup),
                [self, user, channel, rest, needed](caf::expected<channel_actor> found) {
                  if (found) self->send(channel, link_atom::value, caf::actor_cast<caf::actor>(*found));
                  find_links(self, user, channel, rest, found ? needed - 1 : needed);
                });
}

// The members other than this one, in the user's order, then the former members (removed
// from the cluster at run time, which may still hold a copy to catch up from).
std::vector<std::string> others_ranked(self_ptr self, const std::string& user) {
  auto order = sync_placement::ranked(user, self->state.members);
  for (const auto& m : sync_placement::ranked(user, self->state.former_members)) order.push_back(m);
  order.erase(std::remove(order.begin(), order.end(), self->state.self_member), order.end());
  return order;
}

void serve_here(self_ptr self, const cluster::ChannelLookup& lookup, caf::typed_response_promise<channel_actor> promise);

// Tries the members in `order` until one serves the lookup (this member serves it itself).
void try_members(self_ptr self, cluster::ChannelLookup lookup, std::vector<std::string> order,
                 caf::typed_response_promise<channel_actor> promise) {
  if (order.empty()) {
    promise.deliver(caf::make_error(caf::sec::runtime_error, "no server host of user " + lookup.user() + " is reachable"));
    return;
  }
  const std::string member = order.front();
  order.erase(order.begin());
  if (member == self->state.self_member) {
    serve_here(self, lookup, promise);
    return;
  }
  lookup_remote(self, member, lookup, [self, lookup, order, promise](caf::expected<channel_actor> found) mutable {
    if (found) {
      promise.deliver(std::move(*found));
      return;
    }
    spdlog::info("hop=server.directory failover user={} error=\"{}\"", lookup.user(), self->system().render(found.error()));
    try_members(self, std::move(lookup), std::move(order), promise);
  });
}

// Serves lookups that waited for a slot, as far as slots allow.
void serve_queue(self_ptr self) {
  while (!self->state.queued.empty() && open_count(self) < self->state.config.max_open_channels) {
    auto [user, promise] = std::move(self->state.queued.front());
    self->state.queued.pop_front();
    auto it = self->state.channels.find(user);
    if (it != self->state.channels.end()) {
      if (it->second.closing) it->second.waiting.push_back(std::move(promise));
      else promise.deliver(it->second.channel);
      continue;
    }
    auto path = auth::user_db_path(self->state.config.data_dir, user);
    promise.deliver(open_channel(self, user, *path));
  }
}

// Serves the lookup with this member's channel of the user, opening it if needed.
void serve_here(self_ptr self, const cluster::ChannelLookup& lookup, caf::typed_response_promise<channel_actor> promise) {
  const std::string& user = lookup.user();
  auto path = auth::user_db_path(self->state.config.data_dir, user);
  if (!path.ok()) {
    promise.deliver(caf::make_error(caf::sec::invalid_argument, path.status().message()));
    return;
  }
  auto it = self->state.channels.find(user);
  if (it != self->state.channels.end()) {
    if (!it->second.closing) promise.deliver(it->second.channel);
    else it->second.waiting.push_back(promise);
    return;
  }
  struct stat file;
  if (lookup.if_exists() && ::stat(path->c_str(), &file) != 0) {
    promise.deliver(caf::make_error(caf::sec::runtime_error, "no file of user " + user + " here"));
    return;
  }
  if (open_count(self) < self->state.config.max_open_channels) {
    promise.deliver(open_channel(self, user, *path));
    return;
  }
  const std::string victim = eviction_candidate(self);
  if (victim.empty()) {
    promise.deliver(caf::make_error(caf::sec::runtime_error, "server at capacity: " +
                                                                 std::to_string(self->state.config.max_open_channels) +
                                                                 " channels open, all in use"));
    return;
  }
  close_channel(self, victim, self->state.channels[victim], "making room for another channel");
  self->state.queued.emplace_back(user, promise);
}

// The directory's status; with request.channels, delivered once every open channel has
// answered with its sessions or failed to within the request's timeout (listed unanswered):
// a channel busy in a long commit delays the status page by at most that timeout.
caf::result<cluster::DirectoryStatus> directory_status(self_ptr self, const cluster::DirectoryStatusRequest& request) {
  cluster::DirectoryStatus st;
  st.set_open_channels(static_cast<uint32_t>(self->state.channels.size()));
  st.set_max_open_channels(static_cast<uint32_t>(self->state.config.max_open_channels));
  for (auto& [user, e] : self->state.channels) st.add_users(user);
  st.set_channels_opened(self->state.opened);
  st.set_channels_closed(self->state.closed);
  for (const auto& m : self->state.members) {
    auto* ms = st.add_members();
    ms->set_endpoint(m);
    ms->set_self(m == self->state.self_member);
    ms->set_connected(ms->self() || self->state.remotes.count(m) > 0);
    ms->set_connecting(self->state.connecting.count(m) > 0);
    if (auto e = self->state.member_errors.find(m); e != self->state.member_errors.end()) ms->set_last_error(e->second);
  }
  if (!request.channels() || self->state.channels.empty()) return st;
  struct Gathering {
    cluster::DirectoryStatus status;
    size_t left = 0;
    caf::typed_response_promise<cluster::DirectoryStatus> promise;
    void one_done() {
      if (--left == 0) promise.deliver(std::move(status));
    }
  };
  auto g = std::make_shared<Gathering>();
  g->status = std::move(st);
  g->left = self->state.channels.size();
  g->promise = self->make_response_promise<cluster::DirectoryStatus>();
  const std::chrono::milliseconds timeout{request.channel_timeout_ms() > 0 ? request.channel_timeout_ms() : 1000};
  for (auto& [user, e] : self->state.channels) {
    self->request(e.channel, timeout, cluster::ChannelStatusRequest{})
        .then(
            [g](cluster::ChannelStatus& cs) {
              *g->status.add_channels() = std::move(cs);
              g->one_done();
            },
            [g, user = user](caf::error&) {
              g->status.add_unanswered(user);
              g->one_done();
            });
  }
  return g->promise;
}

directory_impl::behavior_type directory(self_ptr self, DirectoryConfig config) {
  self->state.config = std::move(config);
  self->set_default_handler(caf::drop);
  self->set_down_handler([self](caf::down_msg& down) {
    for (auto it = self->state.remotes.begin(); it != self->state.remotes.end(); ++it) {
      if (it->second.address() != down.source) continue;
      spdlog::warn("hop=server.directory member_lost member={}", it->first);
      self->state.member_errors[it->first] = "connection lost";
      self->state.remotes.erase(it);  // the next lookup connects again
      return;
    }
    for (auto it = self->state.channels.begin(); it != self->state.channels.end(); ++it) {
      if (it->second.channel.address() != down.source) continue;
      const std::string user = it->first;
      auto waiting = std::move(it->second.waiting);
      self->state.channels.erase(it);
      ++self->state.closed;
      spdlog::debug("hop=server.directory channel_closed user={} open={}", user, self->state.channels.size());
      if (!waiting.empty()) {
        auto path = auth::user_db_path(self->state.config.data_dir, user);
        auto ch = open_channel(self, user, *path);
        for (auto& p : waiting) p.deliver(ch);
      }
      serve_queue(self);
      return;
    }
  });
  self->set_exit_handler([self](caf::exit_msg& msg) {
    // Shutdown: every channel records its acknowledgements and closes its file.
    for (auto& [user, e] : self->state.channels) close_channel(self, user, e, "server shutting down");
    self->quit(msg.reason);
  });
  if (self->state.config.idle_close.count() > 0)
    self->delayed_send(self, self->state.config.idle_close / 2, sweep_atom::value);
  return {
      [self](cluster::ChannelLookup& lookup) -> caf::result<channel_actor> {
        const std::string& user = lookup.user();
        auto path = auth::user_db_path(self->state.config.data_dir, user);
        if (!path.ok()) return caf::make_error(caf::sec::invalid_argument, path.status().message());
        if (!self->state.members.empty() && !lookup.forwarded()) {
          // Served by the first reachable member in the user's order; a forwarded lookup is
          // served where it lands (the asker found the members before it unreachable).
          auto order = sync_placement::ranked(user, self->state.members);
          // A single copy lives on its owner only: served elsewhere, it would start empty.
          if (self->state.config.channel.replicas <= 1) order.resize(1);
          if (order.front() != self->state.self_member) {
            auto promise = self->make_response_promise<channel_actor>();
            try_members(self, std::move(lookup), std::move(order), promise);
            return promise;
          }
        }
        auto promise = self->make_response_promise<channel_actor>();
        serve_here(self, lookup, promise);
        return promise;
      },
      [self](cluster::ClusterMembers& m) {
        self->state.config.channel.cluster = true;
        self->state.self_member = m.self();
        std::vector<std::string> next(m.members().begin(), m.members().end());
        for (const auto& old : self->state.members)
          if (std::find(next.begin(), next.end(), old) == next.end() &&
              std::find(self->state.former_members.begin(), self->state.former_members.end(), old) ==
                  self->state.former_members.end())
            self->state.former_members.push_back(old);
        for (const auto& now : next)
          self->state.former_members.erase(
              std::remove(self->state.former_members.begin(), self->state.former_members.end(), now),
              self->state.former_members.end());
        self->state.members = std::move(next);
        if (std::find(self->state.members.begin(), self->state.members.end(), m.self()) == self->state.members.end())
          self->state.members.push_back(m.self());
        spdlog::info("hop=server.cluster self={} members={}", m.self(), self->state.members.size());
      },
      [self](cluster::LinksWanted& wanted) {
        auto it = self->state.channels.find(wanted.user());
        if (it == self->state.channels.end() || it->second.closing || self->state.members.empty()) return;
        // A single copy asks for one link while it catches up.
        const uint32_t replicas = std::max<uint32_t>(self->state.config.channel.replicas, 2);
        find_links(self, wanted.user(), it->second.channel, others_ranked(self, wanted.user()), replicas - 1);
      },
      [self](cluster::ChannelUsage& usage) {
        auto it = self->state.channels.find(usage.user());
        if (it == self->state.channels.end()) return;
        it->second.sessions = usage.sessions();
        if (usage.sessions() == 0) it->second.idle_since = std::chrono::steady_clock::now();
      },
      [self](cluster::DirectoryStatusRequest& request) { return directory_status(self, request); },
      [self](sweep_atom) {
        const auto now = std::chrono::steady_clock::now();
        for (auto& [user, e] : self->state.channels)
          if (!e.closing && e.sessions == 0 && now - e.idle_since >= self->state.config.idle_close)
            close_channel(self, user, e, "idle");
        self->delayed_send(self, self->state.config.idle_close / 2, sweep_atom::value);
      },
  };
}

}  // namespace

directory_actor spawn_directory(caf::actor_system& system, DirectoryConfig config) {
  return system.spawn(directory, std::move(config));
}

}  // namespace tandem::actors
