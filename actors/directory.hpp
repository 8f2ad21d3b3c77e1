// The `directory` role (server): which channel serves which user, on this host. It spawns a
// channel (detached) the first time a user's session asks, hands the same channel to every
// later session of that user, and bounds the number of open channel files: a channel
// without sessions is closed after `idle_close`, and when `max_open_channels` are open the
// longest-idle one is closed to make room (a lookup waits until its file is closed, so two
// channels never hold the same file). With every channel busy, the lookup fails
// (UNAVAILABLE: the server is at capacity) and the client retries later.
//
// One host today: channels are local actors. A multi-host directory would hand out remote
// channel handles (CAF remote actors between trusted hosts) through the same interface.
#pragma once

#include "actors/channel.hpp"

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace tandem::actors {

using sweep_atom = caf::atom_constant<caf::atom("sweep")>;

using directory_actor = caf::typed_actor<
    caf::replies_to<cluster::ChannelLookup>::with<channel_actor>,  // errors: UNAVAILABLE, bad user
    caf::reacts_to<cluster::ChannelUsage>,
    caf::replies_to<cluster::DirectoryStatusRequest>::with<cluster::DirectoryStatus>,
    caf::reacts_to<sweep_atom>>;

struct DirectoryConfig {
  std::string data_dir;
  size_t max_open_channels = 256;
  std::chrono::milliseconds idle_close{60000};
  sync_channel::ChannelOptions channel;
};

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
  static inline const char* name = "directory";
};

directory_actor::behavior_type directory(directory_actor::stateful_pointer<directory_state> self, DirectoryConfig config);

}  // namespace tandem::actors
