// Reconnect delays: exponential backoff with full jitter (a random delay between 0 and the
// current ceiling, the ceiling doubling from `base` up to `cap`), so that many clients cut
// off at once by a server restart do not all come back in the same instant.
// Deterministic for a given seed (tests); not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace tandem::sync_backoff {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds cap, uint64_t seed)
      : base_(base), cap_(cap), ceiling_(base), rng_(seed) {}

  // The delay before the next attempt; raises the ceiling for the one after.
  std::chrono::milliseconds next() {
    std::uniform_int_distribution<int64_t> pick(0, ceiling_.count());
    const auto delay = std::chrono::milliseconds(pick(rng_));
    ceiling_ = std::min(cap_, ceiling_ * 2);
    ++attempts_;
    return delay;
  }
  // After a connection that worked: start again from `base`.
  void reset() {
    ceiling_ = base_;
    attempts_ = 0;
  }
  std::chrono::milliseconds ceiling() const { return ceiling_; }
  uint32_t attempts() const { return attempts_; }

 private:
  std::chrono::milliseconds base_, cap_, ceiling_;
  std::mt19937_64 rng_;
  uint32_t attempts_ = 0;
};

}  // namespace tandem::sync_backoff
