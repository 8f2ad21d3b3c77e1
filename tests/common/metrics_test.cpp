// runtime/metrics: counting from many threads, the Prometheus text, and reading it back.
#include <catch2/catch.hpp>

#include <thread>
#include <vector>

#include "runtime/metrics/metrics.hpp"

using namespace tandem::metrics;
using namespace std::chrono_literals;

namespace {
std::string names(int code) {
  switch (code) {
    case 5: return "PROTOCOL";
    case 10: return "UNAVAILABLE";
    default: return "";
  }
}
}  // namespace

TEST_CASE("metrics: counters, gauges and histograms count exactly from several threads", "[metrics]") {
  ServerMetrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&m] {
      for (int i = 0; i < 10000; ++i) {
        m.pushes.inc();
        m.bytes_received.inc(3);
        m.connections_open.add();
        m.merge_commit_seconds.observe(std::chrono::microseconds(i % 3 == 0 ? 50 : 3000));
        m.connections_open.sub();
        m.count_error(5);
      }
    });
  for (auto& t : threads) t.join();
  CHECK(m.pushes.value() == 40000);
  CHECK(m.bytes_received.value() == 120000);
  CHECK(m.connections_open.value() == 0);
  CHECK(m.errors[5].value() == 40000);
  const auto s = m.merge_commit_seconds.snapshot();
  CHECK(s.count == 40000);
  CHECK(s.cumulative[0] == 4 * 3334);            // <= 100 us: i % 3 == 0
  CHECK(s.cumulative[4] == 4 * 3334);            // <= 2.5 ms: none of the 3 ms ones
  CHECK(s.cumulative[5] == 40000);               // <= 5 ms: all
  CHECK(s.sum_seconds == Approx(4 * (3334 * 50e-6 + 6666 * 3e-3)));
}

TEST_CASE("metrics: the rendered text parses back as Prometheus exposition with every value", "[metrics]") {
  ServerMetrics m;
  m.connections_open.add(3);
  m.connections_total.inc(7);
  m.sessions[static_cast<int>(SessionPhase::kJoined)].add(2);
  m.sessions[static_cast<int>(SessionPhase::kAwaitingHello)].add(1);
  m.channels_open.add(1);
  m.pushes.inc(11);
  m.acks.inc(10);
  m.forwards.inc(9);
  m.changes_merged.inc(1234);
  m.group_commits.inc(4);
  m.count_error(5);
  m.count_error(5);
  m.count_error(17);   // no name: rendered as its number
  m.count_error(999);  // out of range: the last slot
  m.bytes_received.inc(100);
  m.bytes_sent.inc(200);
  m.merge_commit_seconds.observe(2ms);
  m.merge_commit_seconds.observe(20s);  // above every bound: only +Inf
  m.commit_sync_seconds.observe(300us);

  const std::string text = render_prometheus(m, names);
  INFO(text);
  Exposition e;
  std::string error;
  REQUIRE(parse_prometheus(text, &e, &error));
  CHECK(e.value("tandem_connections_open") == 3);
  CHECK(e.value("tandem_connections_total") == 7);
  CHECK(e.value("tandem_sessions", "state=\"joined\"") == 2);
  CHECK(e.value("tandem_sessions", "state=\"awaiting_hello\"") == 1);
  CHECK(e.value("tandem_sessions", "state=\"joining\"") == 0);
  CHECK(e.value("tandem_channels_open") == 1);
  CHECK(e.value("tandem_pushes_total") == 11);
  CHECK(e.value("tandem_acks_total") == 10);
  CHECK(e.value("tandem_forwards_total") == 9);
  CHECK(e.value("tandem_changes_merged_total") == 1234);
  CHECK(e.value("tandem_group_commits_total") == 4);
  CHECK(e.value("tandem_errors_total", "code=\"PROTOCOL\"") == 2);
  CHECK(e.value("tandem_errors_total", "code=\"UNAVAILABLE\"") == 0);  // named codes always shown
  CHECK(e.value("tandem_errors_total", "code=\"17\"") == 1);
  CHECK(e.value("tandem_errors_total", "code=\"31\"") == 1);
  CHECK(e.value("tandem_errors_total", "code=\"3\"") == -1);  // unnamed and zero: absent
  CHECK(e.value("tandem_received_bytes_total") == 100);
  CHECK(e.value("tandem_sent_bytes_total") == 200);
  CHECK(e.value("tandem_merge_commit_seconds_bucket", "le=\"0.001\"") == 0);
  CHECK(e.value("tandem_merge_commit_seconds_bucket", "le=\"0.0025\"") == 1);
  CHECK(e.value("tandem_merge_commit_seconds_bucket", "le=\"10\"") == 1);
  CHECK(e.value("tandem_merge_commit_seconds_bucket", "le=\"+Inf\"") == 2);
  CHECK(e.value("tandem_merge_commit_seconds_count") == 2);
  CHECK(e.value("tandem_merge_commit_seconds_sum") == Approx(20.002));
  CHECK(e.value("tandem_commit_sync_seconds_bucket", "le=\"0.0005\"") == 1);
  // Every family has HELP and TYPE, and counters end in _total.
  int counters = 0, histograms = 0;
  for (const auto& f : e.families) {
    CHECK_FALSE(f.help.empty());
    if (f.type == "counter") ++counters;
    if (f.type == "histogram") ++histograms;
  }
  CHECK(counters == 9);
  CHECK(histograms == 2);
}

TEST_CASE("metrics: the parser refuses text that is not valid exposition", "[metrics]") {
  Exposition e;
  std::string error;
  CHECK_FALSE(parse_prometheus("x_total 1\n", &e, &error));  // no TYPE before it
  CHECK_THAT(error, Catch::Contains("before its # TYPE"));
  CHECK_FALSE(parse_prometheus("# HELP x a\n# TYPE x counter\nx 1\n", &e, &error));  // counter without _total
  CHECK_FALSE(parse_prometheus("# HELP g a\n# TYPE g gauge\ng{a=b} 1\n", &e, &error));  // unquoted label
  CHECK_FALSE(parse_prometheus("# HELP g a\n# TYPE g gauge\ng one\n", &e, &error));
  CHECK_FALSE(parse_prometheus(
      "# HELP h a\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n", &e, &error));
  CHECK_THAT(error, Catch::Contains("cumulative"));
  CHECK_FALSE(parse_prometheus("# HELP h a\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n", &e, &error));
  Exposition ok;
  CHECK(parse_prometheus("# HELP g a gauge\n# TYPE g gauge\ng{a=\"b\",c=\"d\"} -2.5\n", &ok, &error));
  CHECK(ok.value("g", "a=\"b\",c=\"d\"") == -2.5);
}
