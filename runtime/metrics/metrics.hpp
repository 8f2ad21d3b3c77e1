// The server's metrics: a small registry of atomics that actors update on their hot paths,
// and the one place that renders it as Prometheus text (exposition format 0.0.4).
//
// Design: every metric is a fixed member of ServerMetrics, so updating one is a single
// relaxed atomic add (no lookup, no lock, no allocation) from any thread. Relaxed order is
// enough: a scrape needs each value to be a value the counter had, not a consistent cut
// across metrics. Histograms keep one atomic per bucket (not cumulative; render sums them)
// and their sum in nanoseconds, so observe() is two adds and a short scan of the bounds.
// Labels are closed sets known here (error codes by number, session phases), which keeps
// the registry free of maps and of proto or CAF types.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::metrics {

// Monotonic count. Thread-safe.
class Counter {
 public:
  void inc(uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A value that goes up and down. Thread-safe.
class Gauge {
 public:
  void add(int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  void sub(int64_t n = 1) { v_.fetch_sub(n, std::memory_order_relaxed); }
  int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> v_{0};
};

// Durations in buckets with fixed upper bounds (seconds). Thread-safe.
class Histogram {
 public:
  static constexpr size_t kMaxBuckets = 16;
  // `bounds_seconds`: increasing upper bounds, at most kMaxBuckets (+Inf is implicit).
  explicit Histogram(std::vector<double> bounds_seconds);
  void observe(std::chrono::nanoseconds d);

  struct Snapshot {
    std::vector<double> bounds;        // as given
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (size bounds + 1)
    double sum_seconds = 0;
    uint64_t count = 0;                // equals cumulative.back()
  };
  Snapshot snapshot() const;

 private:
  std::vector<double> bounds_;
  std::array<std::atomic<uint64_t>, kMaxBuckets + 1> buckets_{};
  std::atomic<uint64_t> sum_nanos_{0};
};

// Sessions by phase of the handshake (label `state`).
enum class SessionPhase : int { kAwaitingHello = 0, kJoining = 1, kJoined = 2 };
inline constexpr int kSessionPhases = 3;

// Error codes are the numbers of tandem.sync.Error.Code; larger ones count under the last slot.
inline constexpr int kErrorCodeSlots = 32;

struct ServerMetrics {
  ServerMetrics();
  Gauge connections_open;       // WebSocket connections established and not yet down
  Counter connections_total;    // ever established
  std::array<Gauge, kSessionPhases> sessions;  // by SessionPhase
  Gauge channels_open;          // user files open (channel actors holding their store)
  Counter pushes;               // Push messages received by channels
  Counter acks;                 // Ack messages sent to clients
  Counter forwards;             // Forward messages sent to clients
  Counter changes_merged;       // changes in merged (durably committed) pushes
  Counter group_commits;        // durable commits of one or more merged pushes
  std::array<Counter, kErrorCodeSlots> errors;  // Error frames sent to clients, by code
  Counter bytes_received;       // WebSocket frame payload bytes
  Counter bytes_sent;
  Histogram merge_commit_seconds;  // one group commit: every merge of it and its fsync
  Histogram commit_sync_seconds;   // the durable step of a group commit (see ChannelStats::sync_nanos)
  // Counts an error frame; `code` is a tandem.sync.Error.Code number.
  void count_error(int code) { errors[code >= 0 && code < kErrorCodeSlots ? code : kErrorCodeSlots - 1].inc(); }
};

// The process's registry (Prometheus clients' default registry likewise): a server process
// serves one listener. Tests read differences, not absolute values.
ServerMetrics& server_metrics();

// Renders `m` as Prometheus text. `error_name` maps an error code number to its label value
// (empty: that slot is not rendered unless non-zero, then as its number).
std::string render_prometheus(const ServerMetrics& m, std::string (*error_name)(int code));

// Parsed sample of Prometheus text: name, labels as written ("code=\"PROTOCOL\"", sorted as
// written), value. Used by tests and by tools that read a scrape back.
struct Sample {
  std::string name;
  std::string labels;  // inside the braces, empty when none
  double value = 0;
};
struct Family {
  std::string name, type, help;
};
struct Exposition {
  std::vector<Family> families;
  std::vector<Sample> samples;
  // The value of `name{labels}`; -1 when absent.
  double value(const std::string& name, const std::string& labels = "") const;
};
// Parses the text format strictly enough to check what render_prometheus wrote (and what a
// Prometheus server accepts): every sample belongs to a family declared by # HELP and
// # TYPE before it, counters end in _total, histograms have cumulative _bucket{le=...}
// ending in +Inf equal to _count. Returns false and says why in `error`.
bool parse_prometheus(const std::string& text, Exposition* out, std::string* error);

}  // namespace tandem::metrics
