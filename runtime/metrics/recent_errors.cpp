#include "runtime/metrics/recent_errors.hpp"

#include <chrono>

namespace tandem::metrics {

void RecentErrors::add(int code, std::string user, std::string client, std::string message) {
  if (message.size() > kMaxMessage) message.resize(kMaxMessage);
  RecentError e;
  e.unix_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  e.code = code;
  e.user = std::move(user);
  e.client = std::move(client);
  e.message = std::move(message);
  std::lock_guard<std::mutex> lock(mu_);
  ++total_;
  if (capacity_ == 0) return;
  if (ring_.size() == capacity_) ring_.pop_front();
  ring_.push_back(std::move(e));
}

std::vector<RecentError> RecentErrors::newest_first() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {ring_.rbegin(), ring_.rend()};
}

uint64_t RecentErrors::total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return total_;
}

RecentErrors& server_recent_errors() {
  static RecentErrors ring(50);
  return ring;
}

}  // namespace tandem::metrics
