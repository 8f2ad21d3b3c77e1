#include "runtime/sync/placement.hpp"

#include <algorithm>
#include <cstdint>

namespace tandem::sync_placement {
namespace {

uint64_t fnv1a(const std::string& a, const std::string& b) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
  };
  mix(a);
  h ^= 0xff;  // separator: ("ab", "c") and ("a", "bc") differ
  h *= 1099511628211ULL;
  mix(b);
  // Final avalanche (splitmix64) so that nearby inputs spread over the whole range.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  h ^= h >> 31;
  return h;
}

}  // namespace

std::string owner_of(const std::string& user, const std::vector<std::string>& members) {
  std::string best;
  uint64_t best_score = 0;
  for (const auto& m : members) {
    uint64_t score = fnv1a(user, m);
    if (best.empty() || score > best_score || (score == best_score && m < best)) {
      best = m;
      best_score = score;
    }
  }
  return best;
}

std::vector<std::string> ranked(const std::string& user, const std::vector<std::string>& members) {
  std::vector<std::pair<uint64_t, std::string>> scored;
  for (const auto& m : members) scored.emplace_back(fnv1a(user, m), m);
  std::sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  std::vector<std::string> out;
  for (auto& [score, m] : scored) out.push_back(std::move(m));
  return out;
}

}  // namespace tandem::sync_placement
