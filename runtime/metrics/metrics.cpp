#include "runtime/metrics/metrics.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>

namespace tandem::metrics {

Histogram::Histogram(std::vector<double> bounds_seconds) : bounds_(std::move(bounds_seconds)) {
  if (bounds_.size() > kMaxBuckets) bounds_.resize(kMaxBuckets);
}

void Histogram::observe(std::chrono::nanoseconds d) {
  const double s = std::chrono::duration<double>(d).count();
  size_t i = 0;
  while (i < bounds_.size() && s > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_nanos_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(0, d.count())), std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum_seconds = static_cast<double>(sum_nanos_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

namespace {

// 100 us .. 10 s: a merge of a small batch on a fast disk is well under a millisecond, an
// fsync on a cloud volume several milliseconds, a stalled disk seconds.
std::vector<double> latency_bounds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

class Writer {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  void sample(const std::string& name, const std::string& labels, double v) {
    out_ << name;
    if (!labels.empty()) out_ << '{' << labels << '}';
    out_ << ' ' << number(v) << '\n';
  }
  void counter(const char* name, const char* help, const Counter& c) {
    family(name, "counter", help);
    sample(name, "", static_cast<double>(c.value()));
  }
  void gauge(const char* name, const char* help, const Gauge& g) {
    family(name, "gauge", help);
    sample(name, "", static_cast<double>(g.value()));
  }
  void histogram(const char* name, const char* help, const Histogram& h) {
    family(name, "histogram", help);
    const auto s = h.snapshot();
    const std::string n = name;
    for (size_t i = 0; i < s.bounds.size(); ++i)
      sample(n + "_bucket", "le=\"" + number(s.bounds[i]) + "\"", static_cast<double>(s.cumulative[i]));
    sample(n + "_bucket", "le=\"+Inf\"", static_cast<double>(s.count));
    sample(n + "_sum", "", s.sum_seconds);
    sample(n + "_count", "", static_cast<double>(s.count));
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace

ServerMetrics::ServerMetrics() : merge_commit_seconds(latency_bounds()), commit_sync_seconds(latency_bounds()) {}

ServerMetrics& server_metrics() {
  static ServerMetrics m;
  return m;
}

std::string render_prometheus(const ServerMetrics& m, std::string (*error_name)(int code)) {
  Writer w;
  w.gauge("tandem_connections_open", "WebSocket connections established and not yet closed.", m.connections_open);
  w.counter("tandem_connections_total", "WebSocket connections established since the server started.",
            m.connections_total);
  w.family("tandem_sessions", "gauge", "Sessions by phase: awaiting_hello, joining (authenticated, waiting for its channel), joined.");
  static const char* kPhases[kSessionPhases] = {"awaiting_hello", "joining", "joined"};
  for (int i = 0; i < kSessionPhases; ++i)
    w.sample("tandem_sessions", std::string("state=\"") + kPhases[i] + "\"", static_cast<double>(m.sessions[i].value()));
  w.gauge("tandem_channels_open", "User channels with their file open.", m.channels_open);
  w.counter("tandem_pushes_total", "Push messages received by channels.", m.pushes);
  w.counter("tandem_acks_total", "Ack messages sent to clients (each acknowledges durable pushes).", m.acks);
  w.counter("tandem_forwards_total", "Forward messages sent to clients.", m.forwards);
  w.counter("tandem_changes_merged_total", "Changes in pushes merged and durably committed.", m.changes_merged);
  w.counter("tandem_group_commits_total", "Durable commits, each of one or more merged pushes.", m.group_commits);
  w.family("tandem_errors_total", "counter", "Error messages sent to clients, by error code.");
  for (int code = 0; code < kErrorCodeSlots; ++code) {
    const uint64_t v = m.errors[code].value();
    std::string name = error_name ? error_name(code) : std::string();
    if (name.empty()) {
      if (v == 0) continue;
      name = std::to_string(code);
    }
    w.sample("tandem_errors_total", "code=\"" + name + "\"", static_cast<double>(v));
  }
  w.counter("tandem_received_bytes_total", "WebSocket message bytes received from clients.", m.bytes_received);
  w.counter("tandem_sent_bytes_total", "WebSocket message bytes sent to clients.", m.bytes_sent);
  w.histogram("tandem_merge_commit_seconds", "Time of one group commit: merging its pushes and committing them durably.",
              m.merge_commit_seconds);
  w.histogram("tandem_commit_sync_seconds",
              "Time of the durable step of a group commit: its last merge committed with synchronous=FULL (the WAL fsync).",
              m.commit_sync_seconds);
  return w.str();
}

double Exposition::value(const std::string& name, const std::string& labels) const {
  for (const auto& s : samples)
    if (s.name == name && s.labels == labels) return s.value;
  return -1;
}

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || !(std::isalpha(static_cast<unsigned char>(n[0])) || n[0] == '_' || n[0] == ':')) return false;
  return std::all_of(n.begin(), n.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':'; });
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Checks `name="value",...` (values without escapes, which is all render_prometheus writes).
bool valid_labels(const std::string& l) {
  size_t i = 0;
  while (i < l.size()) {
    const size_t eq = l.find('=', i);
    if (eq == std::string::npos || !valid_name(l.substr(i, eq - i))) return false;
    if (eq + 1 >= l.size() || l[eq + 1] != '"') return false;
    const size_t close = l.find('"', eq + 2);
    if (close == std::string::npos) return false;
    i = close + 1;
    if (i < l.size()) {
      if (l[i] != ',') return false;
      ++i;
    }
  }
  return true;
}

}  // namespace

bool parse_prometheus(const std::string& text, Exposition* out, std::string* error) {
  auto fail = [&](size_t line_no, const std::string& why) {
    *error = "line " + std::to_string(line_no) + ": " + why;
    return false;
  };
  std::map<std::string, Family> families;
  std::istringstream in(text);
  std::string line;
  size_t no = 0;
  std::string pending_help_name, pending_help;
  while (std::getline(in, line)) {
    ++no;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream l(line.substr(1));
      std::string kw, name;
      l >> kw >> name;
      std::string rest;
      std::getline(l, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (kw == "HELP") {
        if (!valid_name(name)) return fail(no, "bad metric name in HELP");
        pending_help_name = name;
        pending_help = rest;
      } else if (kw == "TYPE") {
        if (name != pending_help_name) return fail(no, "TYPE of " + name + " without its HELP just before");
        if (rest != "counter" && rest != "gauge" && rest != "histogram")
          return fail(no, "unknown type '" + rest + "'");
        if (families.count(name)) return fail(no, "family " + name + " declared twice");
        if (rest == "counter" && !ends_with(name, "_total")) return fail(no, "counter " + name + " does not end in _total");
        families[name] = {name, rest, pending_help};
        out->families.push_back(families[name]);
      }
      continue;
    }
    Sample s;
    size_t name_end = line.find_first_of("{ ");
    if (name_end == std::string::npos) return fail(no, "no value");
    s.name = line.substr(0, name_end);
    size_t value_start = name_end;
    if (line[name_end] == '{') {
      const size_t close = line.find('}', name_end);
      if (close == std::string::npos) return fail(no, "unclosed labels");
      s.labels = line.substr(name_end + 1, close - name_end - 1);
      if (!valid_labels(s.labels)) return fail(no, "bad labels '" + s.labels + "'");
      value_start = close + 1;
    }
    if (value_start >= line.size() || line[value_start] != ' ') return fail(no, "no space before the value");
    const std::string v = line.substr(value_start + 1);
    if (v == "+Inf") s.value = INFINITY;
    else if (v == "-Inf") s.value = -INFINITY;
    else {
      char* end = nullptr;
      s.value = std::strtod(v.c_str(), &end);
      if (v.empty() || end != v.c_str() + v.size()) return fail(no, "bad value '" + v + "'");
    }
    // The family: the name itself, or a histogram's series.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (families.count(family)) break;
      if (ends_with(s.name, suffix)) {
        const std::string base = s.name.substr(0, s.name.size() - std::string(suffix).size());
        if (families.count(base) && families[base].type == "histogram") family = base;
      }
    }
    if (!families.count(family)) return fail(no, "sample " + s.name + " before its # TYPE");
    if (families[family].type == "histogram" && family == s.name) return fail(no, "histogram sample without a suffix");
    out->samples.push_back(std::move(s));
  }
  // Histograms: buckets cumulative, ending in +Inf, which equals _count.
  for (const auto& [name, f] : families) {
    if (f.type != "histogram") continue;
    double last = -1;
    bool inf = false;
    for (const auto& s : out->samples) {
      if (s.name != name + "_bucket") continue;
      if (s.labels.rfind("le=\"", 0) != 0) return fail(0, name + "_bucket without le");
      if (s.value < last) return fail(0, name + " buckets are not cumulative");
      last = s.value;
      inf = s.labels == "le=\"+Inf\"";
    }
    if (!inf) return fail(0, name + " has no +Inf bucket last");
    if (out->value(name + "_count") != last) return fail(0, name + "_count differs from its +Inf bucket");
    if (out->value(name + "_sum") < 0) return fail(0, name + " has no _sum");
  }
  return true;
}

}  // namespace tandem::metrics
