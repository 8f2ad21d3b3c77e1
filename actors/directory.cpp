#include "actors/directory.hpp"

#include <caf/stateful_actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/sec.hpp>
#include <spdlog/spdlog.h>

#include "runtime/auth/user_id.hpp"

namespace tandem::actors {
namespace {

using self_ptr = directory_actor::stateful_pointer<directory_state>;

channel_actor open_channel(self_ptr self, const std::string& user, const std::string& path) {
  channel_usage_sink sink = self;
  auto ch = self->spawn<caf::detached>(channel, user, path, self->state.config.channel, sink);
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

}  // namespace

directory_actor::behavior_type directory(directory_actor::stateful_pointer<directory_state> self, DirectoryConfig config) {
  self->state.config = std::move(config);
  self->set_default_handler(caf::drop);
  self->set_down_handler([self](caf::down_msg& down) {
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
        auto it = self->state.channels.find(user);
        if (it != self->state.channels.end()) {
          if (!it->second.closing) return it->second.channel;
          auto promise = self->make_response_promise<channel_actor>();
          it->second.waiting.push_back(promise);
          return promise;
        }
        if (open_count(self) < self->state.config.max_open_channels) return open_channel(self, user, *path);
        const std::string victim = eviction_candidate(self);
        if (victim.empty())
          return caf::make_error(caf::sec::runtime_error, "server at capacity: " +
                                                              std::to_string(self->state.config.max_open_channels) +
                                                              " channels open, all in use");
        close_channel(self, victim, self->state.channels[victim], "making room for another channel");
        auto promise = self->make_response_promise<channel_actor>();
        self->state.queued.emplace_back(user, promise);
        return promise;
      },
      [self](cluster::ChannelUsage& usage) {
        auto it = self->state.channels.find(usage.user());
        if (it == self->state.channels.end()) return;
        it->second.sessions = usage.sessions();
        if (usage.sessions() == 0) it->second.idle_since = std::chrono::steady_clock::now();
      },
      [self](cluster::DirectoryStatusRequest&) {
        cluster::DirectoryStatus st;
        st.set_open_channels(static_cast<uint32_t>(self->state.channels.size()));
        st.set_max_open_channels(static_cast<uint32_t>(self->state.config.max_open_channels));
        for (auto& [user, e] : self->state.channels) st.add_users(user);
        st.set_channels_opened(self->state.opened);
        st.set_channels_closed(self->state.closed);
        return st;
      },
      [self](sweep_atom) {
        const auto now = std::chrono::steady_clock::now();
        for (auto& [user, e] : self->state.channels)
          if (!e.closing && e.sessions == 0 && now - e.idle_since >= self->state.config.idle_close)
            close_channel(self, user, e, "idle");
        self->delayed_send(self, self->state.config.idle_close / 2, sweep_atom::value);
      },
  };
}

}  // namespace tandem::actors
