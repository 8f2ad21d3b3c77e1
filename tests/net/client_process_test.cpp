// The `tandem` binary's process-level guarantees, with real processes over loopback:
//   - one server per data directory (a second one is refused with the first one's pid and
//     command; a kill -9'd holder leaves no lock); a second client process on a database
//     joins the first (docs/node.md);
//   - a database is bound to the user and server of its first sync;
//   - a live query outside the subset is a clear error, in `watch` and in the shell;
//   - every command stops on SIGINT / SIGTERM within a second (pipes and a pseudo-terminal);
//   - an unreachable server is reported at once with its real cause.
// Every wait is bounded. The one-second bounds are the promise being tested; each is
// measured from the signal to the exit.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <iterator>

#include <nlohmann/json.hpp>

#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;
using namespace tandem_process_test;

namespace {

// A child process on a pseudo-terminal (its controlling terminal, stdin, stdout and stderr):
// Ctrl-C and Ctrl-D are typed as a user would, and the prompt is read from the terminal.
class PtyProcess {
 public:
  explicit PtyProcess(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_ = ::forkpty(&master_, nullptr, nullptr, nullptr);
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~PtyProcess() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(master_);
  }
  void type(const std::string& s) { REQUIRE(::write(master_, s.data(), s.size()) == static_cast<ssize_t>(s.size())); }
  // Reads the terminal until `text` appeared after the previous match (true; the match is
  // consumed, so a second expect of the same prompt waits for the next one) or `within` passed.
  bool expect(const std::string& text, std::chrono::milliseconds within = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    for (;;) {
      if (auto at = seen_.find(text); at != std::string::npos) {
        seen_.erase(0, at + text.size());
        return true;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::read(master_, buf, sizeof buf);
      if (n <= 0) return false;
      seen_.append(buf, static_cast<size_t>(n));
      transcript_.append(buf, static_cast<size_t>(n));
    }
  }
  // expect, failing the test with everything the terminal showed when `text` never came.
  void require(const std::string& text, std::chrono::milliseconds within = 20s) {
    if (!expect(text, within)) FAIL("the terminal never showed '" << text << "'; it showed:\n" << transcript_);
  }
  int wait(std::chrono::milliseconds within) {
    const auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      char buf[4096];
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) (void)::read(master_, buf, sizeof buf);  // keep the terminal drained
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int master_ = -1;
  bool exited_ = false;
  std::string seen_;  // output after the last match
  std::string transcript_;  // everything read, for a failure's message
};

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// Signal, then the time to the exit. -1 ms when it did not exit within kStopWithin + 5 s.
template <class P>
std::pair<int, std::chrono::milliseconds> stop_with(P& p, int sig) {
  const auto start = std::chrono::steady_clock::now();
  ::kill(p.pid(), sig);
  const int code = p.wait(kStopWithin + 5s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  return {code, code == -1 ? std::chrono::milliseconds(-1) : took};
}

// Processes (other than this one) whose command line mentions `text`.
int processes_mentioning(const std::string& text) {
  int found = 0;
  DIR* proc = ::opendir("/proc");
  REQUIRE(proc != nullptr);
  while (dirent* e = ::readdir(proc)) {
    const std::string name = e->d_name;
    if (name.find_first_not_of("0123456789") != std::string::npos || std::stoi(name) == ::getpid()) continue;
    std::ifstream in("/proc/" + name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(text) != std::string::npos) ++found;
  }
  ::closedir(proc);
  return found;
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

// Issue 9 changed this on purpose: a second process on one database used to be refused
// with the holder's pid; it now joins the holder (docs/node.md; node_process_test.cpp).
TEST_CASE("client processes: a second process on one database joins the holder, the holder goes on", "[process][lock]") {
  World w;
  w.start_server();
  Process holder(with(w.client("a.db"), {"watch", "SELECT id, title FROM todo ORDER BY id", "--json"}), w.dir / "holder.log");
  auto first = holder.line();
  REQUIRE(first);
  CHECK(nlohmann::json::parse(*first)["rows"].empty());

  // Every kind of second opener works through the holder: exec, query, sync, the shell.
  for (std::vector<std::string> rest : std::vector<std::vector<std::string>>{
           {"exec", "INSERT INTO todo(id, title) VALUES (1, 'second writer')"}, {"query", "SELECT * FROM todo"}, {"sync"}, {}}) {
    INFO("second process: " << (rest.empty() ? std::string("shell") : rest[0]));
    std::ofstream(w.dir / "a.db.log", std::ios::trunc).close();
    auto r = w.cmd("a.db", rest);
    INFO(slurp(w.dir / "a.db.log"));
    CHECK(r.code == 0);
  }
  auto own = holder.line();
  REQUIRE(own);
  CHECK(nlohmann::json::parse(*own)["row"]["title"] == "second writer");

  // The holder is unaffected: a write of another device reaches its watch.
  auto r = w.cmd("b.db", {"exec", "INSERT INTO todo(id, title) VALUES (2, 'from b')"});
  REQUIRE(r.code == 0);
  auto change = holder.line();
  REQUIRE(change);
  CHECK(nlohmann::json::parse(*change)["row"]["title"] == "from b");

  // A holder killed with no warning leaves no lock behind.
  holder.signal(SIGKILL);
  REQUIRE(holder.wait(5s) == 128 + SIGKILL);
  r = w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (3, 'after the crash')"});
  INFO(slurp(w.dir / "a.db.log"));
  CHECK(r.code == 0);
  CHECK(nlohmann::json::parse(w.rows("a.db")).size() == 3);
}

TEST_CASE("client processes: a second server on one data directory is refused, a kill -9'd one leaves no lock",
          "[process][lock]") {
  World w;
  w.start_server();
  auto second = run({kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir", w.dir / "server", "--secret-file", w.secret},
                    w.dir / "second.log");
  CHECK(second.code != 0);
  CHECK(second.out.find("listening") == std::string::npos);
  const std::string err = slurp(w.dir / "second.log");
  CHECK_THAT(err, Catch::Contains("in use by another process: pid " + std::to_string(w.server->pid())));
  CHECK_THAT(err, Catch::Contains("server"));
  // The first server is unaffected.
  CHECK(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}).code == 0);
  w.kill_server();
  w.start_server();
  CHECK(w.cmd("b.db", {"sync"}).code == 0);
  CHECK(w.rows("b.db") == w.rows("a.db"));
}

TEST_CASE("client processes: a database synced as alice refuses bob's token and another server before sending anything",
          "[process][binding]") {
  World w;
  w.start_server();
  REQUIRE(w.cmd("alice.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'alice''s secret')"}).code == 0);
  REQUIRE(std::system(("cp " + (w.dir / "alice.db") + " " + (w.dir / "copy.db")).c_str()) == 0);

  auto r = w.cmd("copy.db", {"--timeout", "5s", "exec", "INSERT INTO todo(id, title) VALUES (2, 'bob writes')"}, "bob");
  CHECK(r.code == 3);
  const std::string err = slurp(w.dir / "copy.db.log");
  CHECK_THAT(err, Catch::Contains("belongs to user 'alice'"));
  CHECK_THAT(err, Catch::Contains("for user 'bob'"));
  // Nothing reached bob's channel: the server never opened it, and a device of bob's sees nothing.
  CHECK_FALSE(exists(w.dir / "server/users/bob.db"));
  CHECK(w.cmd("bob.db", {"sync"}, "bob").code == 0);
  CHECK(w.rows("bob.db") == "[]\n");
  CHECK(w.cmd("copy.db", {"sync"}, "bob").code == 3);
  CHECK(w.rows("bob.db") == "[]\n");

  // Another server: refused too, and nothing reaches it.
  World other;
  other.start_server();
  auto args = with(w.client("alice.db"), {"--timeout", "5s", "sync"});
  args[3] = other.url;
  r = run(args, w.dir / "other.log");
  CHECK(r.code == 3);
  CHECK_THAT(slurp(w.dir / "other.log"), Catch::Contains("syncs with " + w.url));
  CHECK_FALSE(exists(other.dir / "server/users/alice.db"));
  // The database still syncs with its own server as its own user.
  CHECK(w.cmd("alice.db", {"sync"}).code == 0);
}

TEST_CASE("client processes: a watch outside the live-query subset is a clear error with a non-zero exit", "[process][watch]") {
  World w;
  w.start_server();
  for (std::string sql : {"SELECT upper(title) FROM todo", "SELECT id FROM todo WHERE id IN (SELECT id FROM todo)",
                          "SELEC id FROM todo", "SELECT nope FROM todo"}) {
    INFO(sql);
    std::ofstream(w.dir / "a.db.log", std::ios::trunc).close();
    Process p(with(w.client("a.db"), {"watch", sql}), w.dir / "a.db.log");
    p.close_stdin();
    const int code = p.wait(10s);
    CHECK(code == 1);
    CHECK_THAT(slurp(w.dir / "a.db.log"), Catch::Contains("cannot watch"));
  }
  // The shell: a refused watch is an error line, and the end of input still ends the shell.
  Process shell(w.client("a.db"), w.dir / "shell.log");
  shell.write("watch SELECT upper(title) FROM todo\nexec INSERT INTO todo(id, title) VALUES (1, 'x')\n");
  auto line = shell.line();
  REQUIRE(line);
  CHECK(nlohmann::json::parse(*line)["acknowledged"] == true);
  shell.close_stdin();
  CHECK(shell.wait(kStopWithin + 5s) == 1);  // piped input had an error: the refused watch's status
  CHECK_THAT(slurp(w.dir / "shell.log"), Catch::Contains("error: cannot watch"));
}

TEST_CASE("client processes: SIGINT and SIGTERM stop watch, shell, sync and exec within a second", "[process][signal]") {
  World w;
  w.start_server();
  LoopbackPort hanging(/*listening=*/true);  // accepts TCP connections, never answers
  for (int sig : {SIGINT, SIGTERM}) {
    INFO("signal " << sig);
    {
      Process watch(with(w.client("a.db"), {"watch", "SELECT id FROM todo", "--json"}), w.dir / "watch.log");
      REQUIRE(watch.line());
      auto [code, took] = stop_with(watch, sig);
      CHECK(code == 0);
      CHECK(took.count() >= 0);
      CHECK(took < kStopWithin);
    }
    {
      Process shell(w.client("a.db"), w.dir / "shell.log");
      shell.write("exec INSERT INTO todo(title) VALUES ('x')\n");
      REQUIRE(shell.line());  // idle at its prompt, stdin open
      auto [code, took] = stop_with(shell, sig);
      CHECK(code == 128 + sig);
      CHECK(took.count() >= 0);
      CHECK(took < kStopWithin);
    }
    for (std::vector<std::string> rest : std::vector<std::vector<std::string>>{
             {"--timeout", "60s", "sync"}, {"--timeout", "60s", "exec", "INSERT INTO todo(title) VALUES ('y')"}}) {
      INFO(rest[2]);
      auto args = with(w.client("h.db"), rest);
      args[3] = hanging.url();
      Process p(args, w.dir / "h.log");
      std::this_thread::sleep_for(500ms);  // connected to the silent server, waiting
      REQUIRE(p.wait(0ms) == -1);
      auto [code, took] = stop_with(p, sig);
      CHECK(code == 128 + sig);
      CHECK(took.count() >= 0);
      CHECK(took < kStopWithin);
    }
  }
  CHECK(w.cmd("a.db", {"sync"}).code == 0);  // every stop left the database usable
}

TEST_CASE("client processes: the shell on a terminal stops on Ctrl-C and ends on Ctrl-D", "[process][signal]") {
  World w;
  w.start_server();
  // At the client's default log level, as a user runs it: the world's info level would
  // print the syncer's welcome (from another thread) into the terminal at any moment.
  auto shell_args = w.client("a.db");
  auto level = std::find(shell_args.begin(), shell_args.end(), "--log-level");
  REQUIRE(level != shell_args.end());
  *(level + 1) = "warn";
  {
    PtyProcess shell(shell_args);
    shell.require("tandem> ");
    shell.type("watch SELECT upper(title) FROM todo\n");  // refused: the shell goes on
    shell.require("error: cannot watch", 10s);
    shell.require("tandem> ", 10s);
    const auto start = std::chrono::steady_clock::now();
    shell.type("\x03");
    CHECK(shell.wait(kStopWithin + 5s) == 128 + SIGINT);
    CHECK(std::chrono::steady_clock::now() - start < kStopWithin);
  }
  {
    PtyProcess shell(shell_args);
    shell.require("tandem> ");
    shell.type("watch SELECT nope FROM todo\n");
    shell.require("error: cannot watch", 10s);
    shell.require("tandem> ", 10s);
    const auto start = std::chrono::steady_clock::now();
    shell.type("\x04");
    CHECK(shell.wait(kStopWithin + 5s) == 0);
    CHECK(std::chrono::steady_clock::now() - start < kStopWithin);
  }
}

TEST_CASE("client processes: an unreachable server is reported at once with its cause", "[process][unreachable]") {
  World w;
  w.start_server();
  LoopbackPort closed(/*listening=*/false);  // bound, not listening: connections are refused
  struct Case {
    std::string name, url, cause;
  };
  const std::string ws_port = std::to_string(w.port);
  const std::vector<Case> cases = {
      {"connection refused", closed.url(), "Connection refused"},
      {"unknown host", "ws://no-such-host.invalid:7000/sync", "resolving no-such-host.invalid"},
      {"wss to a ws server", "wss://127.0.0.1:" + ws_port + "/sync", "TLS handshake"},
  };
  for (const auto& c : cases) {
    for (std::string command : {"exec", "sync"}) {
      INFO(c.name << ", " << command);
      const std::string log = w.dir / ("unreachable-" + command + ".log");
      std::ofstream(log, std::ios::trunc).close();
      auto args = with(w.client("u.db"), {"--timeout", "30s", command});
      if (command == "exec") args.push_back("INSERT INTO todo(title) VALUES ('kept locally')");
      args[3] = c.url;
      const auto start = std::chrono::steady_clock::now();
      auto r = run(args, log);
      const auto took = std::chrono::steady_clock::now() - start;
      CHECK(r.code == 3);
      CHECK(took < 10s);  // not the 30 s timeout
      const std::string err = slurp(log);
      CHECK_THAT(err, Catch::Contains(c.cause));
      CHECK_THAT(err, !Catch::Contains("request_timeout"));
    }
  }
  // A scheme that is not ws or wss is a bad argument.
  auto args = with(w.client("u.db"), {"sync"});
  args[3] = "http://127.0.0.1:" + ws_port + "/sync";
  auto r = run(args, w.dir / "scheme.log");
  CHECK(r.code == 2);
  CHECK_THAT(slurp(w.dir / "scheme.log"), Catch::Contains("--server"));
  // The writes stayed local; the right server takes them.
  CHECK(w.cmd("u.db", {"sync"}).code == 0);
  CHECK(nlohmann::json::parse(w.rows("u.db")).size() == 3);

  // Once the server was reached, a write waits (within --timeout) for it to come back, and
  // the timeout names the last problem rather than request_timeout.
  Process shell(with(w.client("s.db"), {"--timeout", "2s"}), w.dir / "s.log");
  shell.write("exec INSERT INTO todo(title) VALUES ('before')\n");
  auto before = shell.line();
  REQUIRE(before);
  CHECK(nlohmann::json::parse(*before)["acknowledged"] == true);
  w.kill_server();
  shell.write("exec INSERT INTO todo(title) VALUES ('while the server is down')\n");
  auto during = shell.line();
  REQUIRE(during);
  CHECK(nlohmann::json::parse(*during)["acknowledged"] == false);
  shell.close_stdin();
  CHECK(shell.wait(10s) == 3);  // piped: the status of the unacknowledged exec, as `client exec`'s
  const std::string err = slurp(w.dir / "s.log");
  CHECK_THAT(err, Catch::Contains("no answer from the server within --timeout 2s; last problem: "));
  CHECK_THAT(err, !Catch::Contains("request_timeout"));
}

TEST_CASE("client processes: tandem demo stops with its server and clients on SIGINT or SIGTERM within a second",
          "[process][signal]") {
  for (int sig : {SIGINT, SIGTERM}) {
    INFO("signal " << sig);
    TempDir dir;
    Process demo({kTandem, "demo", "--data-dir", dir / "demo", "--pause-ms", "3000"}, dir / "demo.log");
    bool watching = false;
    for (int i = 0; i < 50 && !watching; ++i) {
      auto line = demo.line(20s);
      REQUIRE(line);
      watching = line->rfind("[laptop] exec", 0) == 0;  // the phone's watch is up, the writes begin
    }
    REQUIRE(watching);
    auto [code, took] = stop_with(demo, sig);
    CHECK(code == 128 + sig);
    CHECK(took.count() >= 0);
    CHECK(took < kStopWithin);
    // Its server and its clients ended with it (none is left running on its own).
    CHECK(processes_mentioning(dir.path) == 0);
    // The server's data directory is free for another server.
    auto again = Process({kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir", dir / "demo/server", "--secret-file",
                          dir / "demo/secret"},
                         dir / "again.log");
    auto line = again.line();
    INFO(slurp(dir / "again.log"));
    CHECK((line && line->rfind("listening on", 0) == 0));
    again.signal(SIGTERM);
    CHECK(again.wait(kStopWithin + 5s) == 0);
  }
}

TEST_CASE("client processes: tandem demo runs again on its data folder and when its port is taken", "[process]") {
  TempDir dir;
  // Every line it printed; ends with its verdict.
  auto run = [&](const std::string& log) {
    Process demo({kTandem, "demo", "--data-dir", dir / "demo", "--pause-ms", "100"}, dir / log);
    std::string out;
    while (auto line = demo.line(30s)) out += *line + "\n";
    INFO(out << slurp(dir / log));
    CHECK(demo.wait(30s) == 0);
    return out;
  };
  const std::string agree = "the phone's view and both databases agree";
  CHECK_THAT(run("first.log"), Catch::Contains(agree));
  const std::string second = run("second.log");
  CHECK_THAT(second, Catch::Contains(agree));
  CHECK_THAT(second, !Catch::Contains("start over"));  // the same port: the same databases
  // Another program holds the port now: the nodes start over on a new one.
  const int port = std::stoi(slurp(dir / "demo/server.port"));
  const int holder = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(holder >= 0);
  const int yes = 1;  // the demo's server has just left the port in TIME_WAIT
  REQUIRE(::setsockopt(holder, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes) == 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(holder, 1) == 0);
  const std::string third = run("third.log");
  ::close(holder);
  CHECK_THAT(third, Catch::Contains("the nodes start over"));
  CHECK_THAT(third, Catch::Contains(agree));
  CHECK(std::stoi(slurp(dir / "demo/server.port")) != port);
}

TEST_CASE("client processes: tandem server stops on SIGINT or SIGTERM within a second, with clients connected",
          "[process][signal]") {
  for (int sig : {SIGINT, SIGTERM}) {
    INFO("signal " << sig);
    World w;
    w.start_server();
    Process watch(with(w.client("a.db"), {"watch", "SELECT id FROM todo", "--json"}), w.dir / "watch.log");
    REQUIRE(watch.line());
    REQUIRE(w.cmd("b.db", {"exec", "INSERT INTO todo(title) VALUES ('x')"}).code == 0);
    REQUIRE(watch.line());  // the watch's channel is open and serving
    auto [code, took] = stop_with(*w.server, sig);
    CHECK(code == 0);
    CHECK(took.count() >= 0);
    CHECK(took < kStopWithin);
    w.server.reset();
    watch.signal(SIGTERM);
    CHECK(watch.wait(kStopWithin + 5s) == 0);
  }
}
