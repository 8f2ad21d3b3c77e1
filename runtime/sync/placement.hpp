// Which server host holds a user's channel, when channels are spread over several hosts.
//
// Rendezvous (highest random weight) hashing: every host scores hash(user, host) and the
// highest score wins. Every host computes the same owner from the same member list without
// talking to the others, and adding or removing a host moves only the users it gains or
// held. The hash is FNV-1a 64 (fixed, unlike std::hash, so hosts built apart agree).
#pragma once

#include <string>
#include <vector>

namespace tandem::sync_placement {

// The member that owns `user`; empty when `members` is empty.
std::string owner_of(const std::string& user, const std::vector<std::string>& members);

// Every member, highest score first (owner_of is the first). A user's channel is served by
// the first reachable member and kept on the next reachable ones (docs/cluster.md).
std::vector<std::string> ranked(const std::string& user, const std::vector<std::string>& members);

}  // namespace tandem::sync_placement
