// `tandem demo`: the main job on this machine, with the real binaries. It starts
// `tandem server` on a free loopback port, mints a token, starts a client node "phone"
// watching a live query (`tandem client ... watch`), and writes on a second node "laptop"
// (`tandem client ... exec`): each write appears in the phone's watched query, live, through
// the server. Everything the processes print is shown prefixed with its origin.
// Ctrl-C or SIGTERM stops the demo and its processes within a second.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "apps/tandem/commands.hpp"
#include "apps/tandem/stop_signals.hpp"
#include "runtime/auth/token.hpp"

extern char** environ;

namespace tandem::app {
namespace {

// The children alive now: a stop signal is passed on to them at once.
std::mutex children_mu;
std::set<pid_t> children;

struct Child {
  pid_t pid = -1;
  int out = -1;
  std::string name;
  std::string pending;

  Child(const std::string& label, const std::vector<std::string>& args, const std::string& log) : name(label) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw CLI::RuntimeError(2);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    // The demo blocks SIGINT and SIGTERM (stop_signals.hpp); its children start unblocked.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::lock_guard<std::mutex> lock(children_mu);
    const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv.data(), environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      ::close(p[0]);
      ::close(p[1]);
      pid = -1;
      std::cerr << "tandem demo: cannot start " << label << "\n";
      throw CLI::RuntimeError(2);
    }
    children.insert(pid);
    ::close(p[1]);
    out = p[0];
  }
  ~Child() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
      forget();
    }
    if (out >= 0) ::close(out);
  }
  void forget() {
    std::lock_guard<std::mutex> lock(children_mu);
    children.erase(pid);
  }
  // Prints what the child wrote within `ms`, prefixed; returns the lines.
  std::vector<std::string> pump(int ms) {
    std::vector<std::string> lines;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) break;
      if (const int sig = stop_signal(); sig != 0) throw CLI::RuntimeError(128 + sig);
      pollfd p[2] = {{out, POLLIN, 0}, {stop_fd(), POLLIN, 0}};
      if (::poll(p, 2, static_cast<int>(left)) <= 0 || p[0].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(out, buf, sizeof buf);
      if (n <= 0) break;
      pending.append(buf, static_cast<size_t>(n));
      for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        lines.push_back(pending.substr(0, nl));
        std::cout << "[" << name << "] " << lines.back() << "\n";
        pending.erase(0, nl + 1);
      }
      std::cout << std::flush;
    }
    return lines;
  }
  // SIGTERM, then what it still prints, then its exit.
  int stop() {
    ::kill(pid, SIGTERM);
    pump(2000);
    return wait();
  }
  int wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    forget();
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

struct DemoOptions {
  std::string data_dir = "data";
  int pause_ms = 700;
};

void run_demo(const DemoOptions& o) {
  install_stop_signals();
  const int passing_on = add_stop_callback([] {
    std::lock_guard<std::mutex> lock(children_mu);
    for (pid_t child : children) ::kill(child, SIGTERM);
  });
  struct Forget {
    int id;
    ~Forget() { remove_stop_callback(id); }
  } forget{passing_on};
  ::mkdir(o.data_dir.c_str(), 0700);
  const std::string secret_file = o.data_dir + "/secret";
  if (!auth::read_secret_file(secret_file).ok()) {
    std::random_device rd;
    std::string hex;
    for (int i = 0; i < 32; ++i) hex += "0123456789abcdef"[rd() % 16];
    std::ofstream(secret_file) << hex << hex << "\n";
    ::chmod(secret_file.c_str(), 0600);
  }
  const std::string schema = o.data_dir + "/schema.sql";
  std::ofstream(schema) << "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);\n";
  auto secret = auth::read_secret_file(secret_file);
  auto token = auth::mint_token(*secret, "demo", std::chrono::hours(1));
  if (!token.ok()) {
    std::cerr << "tandem demo: " << token.status().message() << "\n";
    throw CLI::RuntimeError(2);
  }
  const std::string log = o.data_dir + "/demo.log";
  std::cout << "tandem demo: a server and two client nodes on this machine (logs: " << log << ")\n";

  Child server("server", {"tandem", "server", "--listen", "127.0.0.1:0", "--data-dir", o.data_dir + "/server",
                          "--secret-file", secret_file},
               log);
  auto first = server.pump(10000);
  if (first.empty() || first[0].rfind("listening on ", 0) != 0) {
    std::cerr << "tandem demo: the server did not start (see " << log << ")\n";
    throw CLI::RuntimeError(2);
  }
  const std::string url = first[0].substr(13) + "/sync";
  auto client = [&](const std::string& node) {
    return std::vector<std::string>{"tandem", "client", "--server", url, "--token", *token, "--db",
                                    o.data_dir + "/" + node + ".db", "--schema", schema, "--name", node};
  };
  auto watch_args = client("phone");
  watch_args.insert(watch_args.end(), {"watch", "SELECT id, title, done FROM todo ORDER BY id"});
  Child phone("phone: watch", watch_args, log);
  phone.pump(1500);

  const std::vector<std::string> writes = {
      "INSERT INTO todo(title) VALUES ('buy milk')",
      "INSERT INTO todo(title) VALUES ('write the report')",
      "UPDATE todo SET done = 1 WHERE title = 'buy milk'",
      "DELETE FROM todo WHERE done = 1",
  };
  int failures = 0;
  for (const auto& sql : writes) {
    std::cout << "[laptop] exec " << sql << std::endl;
    auto args = client("laptop");
    args.insert(args.end(), {"exec", sql});
    Child laptop("laptop", args, log);
    laptop.pump(200);
    if (laptop.wait() != 0) ++failures;
    phone.pump(o.pause_ms);
  }
  // Check what the demo claims: both nodes hold the same rows.
  auto rows_of = [&](const std::string& node) {
    Child q(node + ": query",
            {"tandem", "client", "--db", o.data_dir + "/" + node + ".db", "--schema", schema, "query",
             "SELECT id, title, done FROM todo ORDER BY id"},
            log);
    auto lines = q.pump(5000);
    q.wait();
    return lines.empty() ? std::string() : lines.back();
  };
  // One process per database file: the phone's watch ends before its file is read here.
  phone.pump(o.pause_ms);
  phone.stop();
  const std::string laptop_rows = rows_of("laptop"), phone_rows = rows_of("phone");
  const bool same = !laptop_rows.empty() && laptop_rows == phone_rows;
  std::cout << "tandem demo: " << (same ? "the phone's view and both databases agree" : "the nodes DIFFER")
            << (failures ? "; some writes were not acknowledged (see the log)" : "") << std::endl;
  if (failures || !same) throw CLI::RuntimeError(3);
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "The main job: a server and two client nodes; a write on one appears live on the other");
  cmd->add_option("--data-dir", o->data_dir, "Where the demo keeps its files")->capture_default_str();
  cmd->add_option("--pause-ms", o->pause_ms, "Time to show each change")->capture_default_str();
  cmd->callback([o] { run_demo(*o); });
}

}  // namespace tandem::app
