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

using directory_actor = caf::typed_actor<
    caf::replies_to<cluster::ChannelLookup>::with<channel_actor>,  // errors: UNAVAILABLE, bad user
    caf::reacts_to<cluster::ClusterMembers>,
    caf::reacts_to<cluster::ChannelUsage>,
    caf::reacts_to<cluster::LinksWanted>,
    caf::replies_to<cluster::DirectoryStatusRequest>::with<cluster::DirectoryStatus>>;

struct DirectoryConfig {
  std::string data_dir;
  size_t max_open_channels = 256;
  std::chrono::milliseconds idle_close{60000};
  std::chrono::milliseconds remote_timeout{10000};  // connecting to / asking another member
  sync_channel::ChannelOptions channel;
};

// Several hosts: every directory knows the member list (ClusterMembers) and places each user
// on one member (runtime/sync/placement.hpp). A lookup for a user placed elsewhere is
// forwarded to that member's directory, reached through CAF's remote actors (BASP, between
// trusted hosts only; the process must have loaded the middleman), and the session then
// talks to the remote channel as to a local one. A member that cannot be reached makes its
// users' lookups fail (UNAVAILABLE); clients retry.
directory_actor spawn_directory(caf::actor_system& system, DirectoryConfig config);

}  // namespace tandem::actors
