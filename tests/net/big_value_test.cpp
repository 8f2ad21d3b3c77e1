// Large values between real processes (`tandem server`, `tandem client`) over loopback:
// values of tens and hundreds of MiB pushed and forwarded in fragments, a catch-up larger
// than a frame, the write-size limit, and a receiving client killed in the middle of a value.
// The 200 MiB case also reports the peak RSS (VmHWM) of each process and its duration.
// The process helpers are those of process_util.hpp.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kTandem = TANDEM_BINARY;
const char* kSchema = "CREATE TABLE doc(id INTEGER PRIMARY KEY NOT NULL, body BLOB);\n";

using tandem_process_test::Process;
using tandem_process_test::RunResult;
using tandem_process_test::slurp;
using tandem_process_test::TempDir;

// Peak resident set sizes (VmHWM, kB) of processes while they run, sampled every 20 ms.
class PeakWatch {
 public:
  PeakWatch() : thread_([this] { loop(); }) {}
  ~PeakWatch() {
    stop_ = true;
    thread_.join();
  }
  void watch(const std::string& name, pid_t pid) {
    std::lock_guard<std::mutex> lock(mu_);
    pids_[name] = pid;
  }
  std::map<std::string, long> peaks() {
    sample();
    std::lock_guard<std::mutex> lock(mu_);
    return peaks_;
  }

 private:
  void sample() {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [name, pid] : pids_) {
      std::ifstream in("/proc/" + std::to_string(pid) + "/status");
      std::string line;
      while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) peaks_[name] = std::max(peaks_[name], std::stol(line.substr(6)));
    }
  }
  void loop() {
    while (!stop_) {
      sample();
      std::this_thread::sleep_for(20ms);
    }
  }
  std::mutex mu_;
  std::map<std::string, pid_t> pids_;
  std::map<std::string, long> peaks_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

RunResult run(const std::vector<std::string>& args, const std::string& err_file, PeakWatch* peaks = nullptr,
              const std::string& name = {}) {
  Process p(args, err_file);
  if (peaks) peaks->watch(name, p.pid());
  p.close_stdin();
  std::string out;
  while (auto l = p.line(120s)) out += *l + "\n";
  int code = p.wait(120s);
  return {code, out};
}


struct World {
  TempDir dir;
  std::string secret = dir / "secret";
  std::string schema = dir / "schema.sql";
  std::unique_ptr<Process> server;
  std::string url;
  std::string token;

  World() {
    std::ofstream(secret) << "big-value-test-secret-0123456789abcdef0123456789\n";
    std::ofstream(schema) << kSchema;
    server = std::make_unique<Process>(std::vector<std::string>{kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir",
                                                                dir / "server", "--secret-file", secret, "--log-level", "info"},
                                       dir / "server.log");
    auto line = server->line();
    REQUIRE(line);
    REQUIRE(line->rfind("listening on ws://127.0.0.1:", 0) == 0);
    url = line->substr(std::string("listening on ").size()) + "/sync";
    auto t = run({kTandem, "token", "--secret-file", secret, "--user", "alice"}, dir / "token.log");
    REQUIRE(t.code == 0);
    token = t.out.substr(0, t.out.find('\n'));
  }
  ~World() {
    server->signal(SIGTERM);
    server->wait(10s);
  }
  std::vector<std::string> client(const std::string& db, std::vector<std::string> rest, const std::string& level = "info") {
    std::vector<std::string> args{kTandem, "client", "--server", url, "--token", token, "--db", dir / db, "--schema", schema,
                                  "--name", db, "--log-level", level, "--timeout", "90s"};
    args.insert(args.end(), rest.begin(), rest.end());
    return args;
  }
  RunResult cmd(const std::string& db, std::vector<std::string> rest, PeakWatch* peaks = nullptr) {
    return run(client(db, std::move(rest)), dir / (db + ".log"), peaks, db);
  }
  // Per row: id, length, and the bytes at the start, middle and end of the value (a value
  // cut, shifted or reassembled out of order differs).
  std::string digest(const std::string& db) {
    auto r = run({kTandem, "client", "--db", dir / db, "--schema", schema, "query",
                  "SELECT id, length(body) AS n, hex(substr(body, 1, 24)) AS head, "
                  "hex(substr(body, length(body) / 2, 24)) AS mid, hex(substr(body, -24)) AS tail FROM doc ORDER BY id"},
                 dir / (db + ".query.log"));
    REQUIRE(r.code == 0);
    return r.out;
  }
};

void write_value(World& w, const std::string& db, int id, size_t bytes, PeakWatch* peaks = nullptr) {
  auto r = w.cmd(db, {"exec", "INSERT INTO doc(id, body) VALUES (" + std::to_string(id) + ", randomblob(" + std::to_string(bytes) + "))"},
                 peaks);
  INFO(slurp(w.dir / (db + ".log")));
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out)["acknowledged"] == true);
}

}  // namespace

TEST_CASE("big values: a 24 MiB value written on one device is received by another", "[process][big-value]") {
  World w;
  write_value(w, "a.db", 1, 24u << 20);
  auto r = w.cmd("b.db", {"sync"});
  INFO(slurp(w.dir / "b.db.log"));
  REQUIRE(r.code == 0);
  const auto a = w.digest("a.db");
  CHECK(a.find("\"n\":25165824") != std::string::npos);
  CHECK(w.digest("b.db") == a);
  // No connection was lost on the way (a frame over the limit closes it with 1009).
  CHECK(slurp(w.dir / "server.log").find("larger than") == std::string::npos);
}

TEST_CASE("big values: a new device catches up two 9 MB values larger together than a frame", "[process][big-value]") {
  World w;
  write_value(w, "a.db", 1, 9'000'000);
  write_value(w, "a.db", 2, 9'000'000);
  auto r = w.cmd("c.db", {"sync"});
  INFO(slurp(w.dir / "c.db.log"));
  REQUIRE(r.code == 0);
  const auto a = w.digest("a.db");
  CHECK(a.find("\"id\":2") != std::string::npos);
  CHECK(w.digest("c.db") == a);
  CHECK(slurp(w.dir / "c.db.log").find("disconnected") == std::string::npos);
}

TEST_CASE("big values: a value over 256 MiB is refused at write with the limit named, and later writes still sync",
          "[process][big-value]") {
  World w;
  auto r = w.cmd("a.db", {"exec", "INSERT INTO doc(id, body) VALUES (1, zeroblob(268435457))"});
  CHECK(r.code == 1);
  const std::string log = slurp(w.dir / "a.db.log");
  CHECK_THAT(log, Catch::Contains("256 MiB"));
  CHECK_THAT(log, Catch::Contains("nothing of this write was stored"));
  r = w.cmd("a.db", {"exec", "INSERT INTO doc(id, body) VALUES (2, zeroblob(301000000))"});
  CHECK(r.code == 1);
  CHECK_THAT(slurp(w.dir / "a.db.log"), Catch::Contains("256 MiB"));
  write_value(w, "a.db", 3, 1000);
  REQUIRE(w.cmd("b.db", {"sync"}).code == 0);
  const auto b = w.digest("b.db");
  CHECK(b == w.digest("a.db"));
  CHECK(b.find("\"id\":3") != std::string::npos);
  CHECK(b.find("\"id\":1") == std::string::npos);
}

TEST_CASE("big values: a receiving client killed in the middle of a value keeps nothing partial and resumes",
          "[process][big-value][fault]") {
  World w;
  write_value(w, "a.db", 1, 1000);
  write_value(w, "a.db", 2, 64u << 20);
  Process b(w.client("b.db", {"sync"}, "debug"), w.dir / "b.db.log");
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (slurp(w.dir / "b.db.log").find("hop=client.fragments") == std::string::npos) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(2ms);
  }
  b.signal(SIGKILL);
  REQUIRE(b.wait() == 128 + SIGKILL);
  // What the killed client holds: the value whole or not at all.
  const auto a = w.digest("a.db");
  const auto partial = w.digest("b.db");
  INFO(partial);
  const bool mid_value = partial.find("\"id\":2") == std::string::npos;
  if (!mid_value) CHECK(partial == a);
  else WARN("killed in the middle of the value, as intended");
  auto r = w.cmd("b.db", {"sync"});
  INFO(slurp(w.dir / "b.db.log"));
  REQUIRE(r.code == 0);
  CHECK(w.digest("b.db") == a);
}

TEST_CASE("big values: a 200 MiB value syncs end to end with bounded memory", "[process][big-value][big]") {
  World w;
  PeakWatch peaks;
  peaks.watch("server", w.server->pid());
  const auto start = std::chrono::steady_clock::now();
  write_value(w, "a.db", 1, 200u << 20, &peaks);
  const auto pushed = std::chrono::steady_clock::now();
  auto r = w.cmd("b.db", {"sync"}, &peaks);
  INFO(slurp(w.dir / "b.db.log"));
  REQUIRE(r.code == 0);
  const auto done = std::chrono::steady_clock::now();
  const auto a = w.digest("a.db");
  CHECK(a.find("\"n\":209715200") != std::string::npos);
  CHECK(w.digest("b.db") == a);
  auto p = peaks.peaks();
  WARN("200 MiB value: push (exec until acknowledged) "
       << std::chrono::duration_cast<std::chrono::milliseconds>(pushed - start).count() << " ms, receive (sync) "
       << std::chrono::duration_cast<std::chrono::milliseconds>(done - pushed).count() << " ms; peak RSS (VmHWM): writer "
       << p["a.db"] / 1024 << " MiB, server " << p["server"] / 1024 << " MiB, receiver " << p["b.db"] / 1024 << " MiB");
  // Bounded: a fixed number of copies of the value per process (measured 4-9 on this
  // machine: the merge's from_proto and SQLITE_TRANSIENT binds and the row images still copy
  // it), not one per hop or fragment; a per-fragment copy of 200 fragments would be far over.
#if !defined(__SANITIZE_ADDRESS__)  // ASan's redzones and quarantine change what is measured
  CHECK(p["a.db"] < 2048 * 1024);
  CHECK(p["server"] < 2048 * 1024);
  CHECK(p["b.db"] < 2048 * 1024);
#endif
}
