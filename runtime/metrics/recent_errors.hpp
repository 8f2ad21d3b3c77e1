// The last errors the server sent to clients, for the status page (/status): a bounded ring,
// the oldest dropped first, so memory stays fixed however many errors a bad client causes.
// Errors are rare next to pushes, so a mutex (not the registry's atomics) is cheap enough
// and keeps each entry whole.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace tandem::metrics {

struct RecentError {
  int64_t unix_ms = 0;  // wall clock when it was sent
  int code = 0;         // tandem.sync.Error.Code number
  std::string user;     // empty before the hello was authenticated
  std::string client;   // the client's name and address, as logged
  std::string message;  // cut to kMaxMessage bytes
};

class RecentErrors {
 public:
  static constexpr size_t kMaxMessage = 200;
  explicit RecentErrors(size_t capacity) : capacity_(capacity) {}
  // Records one error, stamped with the wall clock; drops the oldest past the capacity.
  // Thread-safe.
  void add(int code, std::string user, std::string client, std::string message);
  // The kept errors, newest first, and how many were ever added. Thread-safe.
  std::vector<RecentError> newest_first() const;
  uint64_t total() const;

 private:
  const size_t capacity_;
  mutable std::mutex mu_;
  std::deque<RecentError> ring_;  // oldest first
  uint64_t total_ = 0;
};

// The process's ring of the last 50 errors sent to clients (like server_metrics()).
RecentErrors& server_recent_errors();

}  // namespace tandem::metrics
