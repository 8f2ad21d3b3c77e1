// What every `tandem bench` subcommand shares: its scratch directory, its error exit, and
// the order statistics its JSON lines report (one definition, so that p99 means the same in
// every bench).
#pragma once

#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>

#include "runtime/common/child_process.hpp"
#include "runtime/common/status.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem::app {

// A fresh directory under `parent`, removed with its contents at the end of the scope.
struct BenchDir {
  std::filesystem::path path;
  explicit BenchDir(const std::string& parent, const std::string& prefix = "tandem-bench") {
    std::string tmpl = (std::filesystem::path(parent) / (prefix + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::cerr << "tandem bench: cannot create a directory under " << parent << "\n";
      throw CLI::RuntimeError(1);
    }
    path = tmpl;
  }
  ~BenchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  BenchDir(const BenchDir&) = delete;
  BenchDir& operator=(const BenchDir&) = delete;
};

// Exits the bench `bench` (exit code 1) saying what failed and why.
[[noreturn]] inline void bench_fail(const char* bench, const Status& s, const std::string& what) {
  std::cerr << "tandem bench " << bench << ": " << what << ": " << s.to_string() << "\n";
  throw CLI::RuntimeError(1);
}

// bench_fail when `s` is an error.
inline void bench_check(const char* bench, const Status& s, const std::string& what) {
  if (!s.ok()) bench_fail(bench, s, what);
}

// A `tandem server` child on a free loopback port, its data and secret file (holding `secret`)
// under `dir`, logging to dir/server.log; stopped with SIGTERM when the child is destroyed.
struct BenchServer {
  std::unique_ptr<ChildProcess> child;
  std::string url;  // ws://127.0.0.1:PORT/sync
};
inline Result<BenchServer> start_bench_server(const std::string& dir, const std::string& secret) {
  std::ofstream(dir + "/secret") << secret << "\n";
  ChildOptions o;
  o.args = {"/proc/self/exe", "server", "--listen", "127.0.0.1:0", "--data-dir", dir + "/server",
            "--secret-file", dir + "/secret", "--log-level", "warn"};
  o.stderr_file = dir + "/server.log";
  o.truncate_stderr = true;
  o.stop_signal = SIGTERM;
  auto started = ChildProcess::spawn(o);
  if (!started.ok()) return Status::Internal("starting the server: " + started.status().message());
  BenchServer server{std::move(started).value(), {}};
  auto line = server.child->read_line(std::chrono::seconds(10));
  if (!line || line->rfind("listening on ", 0) != 0) return Status::Internal("the server did not start (see " + dir + "/server.log)");
  server.url = line->substr(13) + "/sync";
  return server;
}

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The nearest-rank percentile, p in [0, 1].
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// The floor under every committed path, measured in the bench's own run: `count` plain SQLite
// commits of one row each (WAL, synchronous=FULL, as a store commits a local write or a
// server a push) into a fresh file at `path`, each timed from BEGIN to COMMIT's return, in us.
inline std::vector<double> plain_commit_us(const char* bench, const std::string& path, int count) {
  auto db = Database::open(path);
  if (!db.ok()) bench_fail(bench, db.status(), "cannot open the baseline database " + path);
  bench_check(bench, (*db)->exec("CREATE TABLE t(id INTEGER PRIMARY KEY, written_ns INTEGER)"), "baseline schema");
  auto st = (*db)->prepare("INSERT INTO t(id, written_ns) VALUES (?1, ?2)");
  if (!st.ok()) bench_fail(bench, st.status(), "baseline statement");
  std::vector<double> us;
  us.reserve(static_cast<size_t>(std::max(count, 0)));
  for (int i = 1; i <= count; ++i) {
    const auto start = std::chrono::steady_clock::now();
    bench_check(bench, (*db)->begin_immediate(), "baseline begin");
    (*st)->reset();
    bench_check(bench, (*st)->bind(1, Value::Integer(i)), "baseline bind");
    bench_check(bench, (*st)->bind(2, Value::Integer(start.time_since_epoch().count())), "baseline bind");
    bench_check(bench, (*st)->run(), "baseline insert");
    bench_check(bench, (*db)->commit(), "baseline commit");
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  return us;
}

}  // namespace tandem::app
