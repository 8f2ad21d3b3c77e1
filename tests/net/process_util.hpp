// Helpers of the multi-process tests (tests/net/process_test.cpp and the other *process*
// tests): the real `tandem` binary as a child process with piped stdin and stdout, temporary
// directories, and a World of a server, its secret, a schema and tokens. Every wait is
// bounded: a hang fails the test instead of blocking CI.
#pragma once

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/common/child_process.hpp"
#include "tests/common/temp_dir.hpp"

namespace tandem_process_test {

using namespace std::chrono_literals;

inline const std::string kTandem = TANDEM_BINARY;
// What "stops within a second" allows: more under ASan, whose binaries stop several times
// slower (apps/tandem/stop_signals.hpp, kStopGrace).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::chrono::milliseconds kStopWithin{6000};
#else
inline constexpr std::chrono::milliseconds kStopWithin{1000};
#endif
inline const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);\n";

using tandem::test::TempDir;

// A loopback TCP socket bound to a port. listen() without accept(): connections complete
// (the kernel's backlog) and then hear nothing, like a server that hangs. Without listen():
// connections to the port are refused.
class LoopbackPort {
 public:
  explicit LoopbackPort(bool listening) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    if (listening) REQUIRE(::listen(fd_, 16) == 0);
  }
  ~LoopbackPort() { ::close(fd_); }
  uint16_t port() const { return port_; }
  std::string url(const std::string& scheme = "ws") const { return scheme + "://127.0.0.1:" + std::to_string(port_) + "/sync"; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};


// A TCP port free right now (bound then released), for endpoints other hosts must name.
inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A child process with stdin and stdout as pipes and stderr to a file (runtime's
// ChildProcess, with failures as test failures). Killed with SIGKILL if still running at the end.
class Process {
 public:
  Process(const std::vector<std::string>& args, const std::string& stderr_file) {
    tandem::ChildOptions o;
    o.args = args;
    o.stderr_file = stderr_file;
    o.pipe_stdin = true;
    auto child = tandem::ChildProcess::spawn(o);
    INFO(child.status().to_string());
    REQUIRE(child.ok());
    child_ = std::move(child).value();
  }
  void write(const std::string& s) {
    auto st = child_->write(s);
    INFO(st.to_string());
    REQUIRE(st.ok());
  }
  void close_stdin() { child_->close_stdin(); }
  // The next stdout line, or nullopt after `within` / at end of output.
  std::optional<std::string> line(std::chrono::milliseconds within = 20s) { return child_->read_line(within); }
  void signal(int sig) { child_->signal(sig); }
  // Exit status (or 128+signal) once it ends; -1 if it did not end within `within`.
  int wait(std::chrono::milliseconds within = 60s) { return child_->wait(within); }
  pid_t pid() const { return child_->pid(); }

 private:
  std::unique_ptr<tandem::ChildProcess> child_;
};

struct RunResult {
  int code;
  std::string out;
};

inline RunResult run(const std::vector<std::string>& args, const std::string& err_file) {
  Process p(args, err_file);
  p.close_stdin();
  std::string out;
  while (auto l = p.line(60s)) out += *l + "\n";
  int code = p.wait();
  return {code, out};
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A world: a data directory, a secret, a schema, a server process and its URL.
struct World {
  TempDir dir;
  std::string secret = dir / "secret";
  std::string schema = dir / "schema.sql";
  std::unique_ptr<Process> server;
  std::string url;
  uint16_t port = 0;
  std::map<std::string, std::string> tokens;

  World() {
    std::ofstream(secret) << "process-test-secret-0123456789abcdef0123456789\n";
    std::ofstream(schema) << kSchema;
  }
  ~World() {
    if (server) {
      server->signal(SIGTERM);
      server->wait(10s);
    }
  }
  void start_server(uint16_t fixed_port = 0, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{kTandem, "server", "--listen", "127.0.0.1:" + std::to_string(fixed_port), "--data-dir",
                                  dir / "server", "--secret-file", secret, "--log-level", "info"};
    args.insert(args.end(), extra.begin(), extra.end());
    server = std::make_unique<Process>(args, dir / "server.log");
    auto line = server->line();
    REQUIRE(line);
    const bool tls = !extra.empty();
    REQUIRE(line->rfind(tls ? "listening on wss://127.0.0.1:" : "listening on ws://127.0.0.1:", 0) == 0);
    url = line->substr(std::string("listening on ").size()) + "/sync";
    port = static_cast<uint16_t>(std::stoi(line->substr(line->rfind(':') + 1)));
  }
  void kill_server() {
    server->signal(SIGKILL);
    REQUIRE(server->wait() == 128 + SIGKILL);
    server.reset();
  }
  const std::string& token(const std::string& user) {
    auto it = tokens.find(user);
    if (it != tokens.end()) return it->second;
    auto r = run({kTandem, "token", "--secret-file", secret, "--user", user}, dir / "token.log");
    REQUIRE(r.code == 0);
    std::string t = r.out.substr(0, r.out.find('\n'));
    return tokens[user] = t;
  }
  std::vector<std::string> client(const std::string& db, const std::string& user = "alice") {
    return {kTandem, "client", "--server", url, "--token", token(user), "--db", dir / db, "--schema", schema, "--name", db,
            "--log-level", "info"};
  }
  RunResult cmd(const std::string& db, std::vector<std::string> rest, const std::string& user = "alice") {
    auto args = client(db, user);
    args.insert(args.end(), rest.begin(), rest.end());
    return run(args, dir / (db + ".log"));
  }
  std::string rows(const std::string& db) {
    auto r = run({kTandem, "client", "--db", dir / db, "--schema", schema, "query", "SELECT id, title, done FROM todo ORDER BY id"},
                 dir / (db + ".log"));
    REQUIRE(r.code == 0);
    return r.out;
  }
};

}  // namespace tandem_process_test
