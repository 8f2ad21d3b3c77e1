#include "apps/tandem/stop_signals.hpp"

#include <cerrno>

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace tandem::app {
namespace {

struct StopState {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> signal{0};
  int fd = -1;
  int next_id = 1;
  std::map<int, std::function<void()>> callbacks;
};

StopState& state() {
  static StopState* s = new StopState();  // never destroyed: the signal thread outlives main's statics
  return *s;
}

void signal_thread(sigset_t set, std::chrono::milliseconds grace) {
  auto& s = state();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.signal = sig;
    const uint64_t one = 1;
    if (::write(s.fd, &one, sizeof one) < 0) {
      // eventfd writes of 1 do not fail short of overflow; the flag and cv still wake waiters
    }
    for (auto& [id, fn] : s.callbacks) fn();
  }
  s.cv.notify_all();
  // A second signal, or the grace period, ends the process at once.
  // sigtimedwait can return early without a signal (EINTR; under ASan's interceptor at
  // once), so it waits again for what is left of the grace period.
  const auto deadline = std::chrono::steady_clock::now() + grace;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    struct timespec wait{};
    wait.tv_sec = static_cast<time_t>(left.count() / 1000000000);
    wait.tv_nsec = static_cast<long>(left.count() % 1000000000);
    siginfo_t info;
    if (sigtimedwait(&set, &info, &wait) > 0) break;  // a second signal
    // Returned early without one: do not spin if it keeps doing so.
    if (errno != EAGAIN) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  _exit(128 + sig);
}

}  // namespace

sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return set;
}

void install_stop_signals(std::chrono::milliseconds grace) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.fd >= 0) return;
  const sigset_t set = block_stop_signals();
  s.fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::thread(signal_thread, set, grace).detach();
}

void exit_after(std::chrono::milliseconds grace, int code) {
  std::thread([grace, code] {
    std::this_thread::sleep_for(grace);
    _exit(code);
  }).detach();
}

int stop_signal() { return state().signal.load(); }

int stop_fd() { return state().fd; }

bool wait_for_stop(std::chrono::milliseconds timeout) {
  auto& s = state();
  std::unique_lock<std::mutex> lock(s.mu);
  return s.cv.wait_for(lock, timeout, [&] { return s.signal.load() != 0; });
}

int add_stop_callback(std::function<void()> fn) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.signal.load() != 0) fn();
  const int id = s.next_id++;
  s.callbacks.emplace(id, std::move(fn));
  return id;
}

void remove_stop_callback(int id) {
  auto& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.callbacks.erase(id);
}

}  // namespace tandem::app
