// `tandem demo`: the main job on this machine, with the real binaries. It starts
// `tandem server` on a free loopback port, mints a token, starts a client node "phone"
// watching a live query (`tandem client ... watch`), and writes on a second node "laptop"
// (`tandem client ... exec`): each write appears in the phone's watched query, live, through
// the server. Everything the processes print is shown prefixed with its origin.
// Ctrl-C or SIGTERM stops the demo and its processes within a second.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <random>
#include <set>
#include <thread>

#include "apps/tandem/commands.hpp"
#include "apps/tandem/stop_signals.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/common/child_process.hpp"

namespace tandem::app {
namespace {

// The children alive now: a stop signal is passed on to them at once.
std::mutex children_mu;
std::set<pid_t> children;

struct Child {
  std::unique_ptr<ChildProcess> process;  // stopped with SIGTERM if still running at the end
  std::string name;

  Child(const std::string& label, const std::vector<std::string>& args, const std::string& log) : name(label) {
    ChildOptions o;
    o.args = args;
    o.program = "/proc/self/exe";
    o.stderr_file = log;
    o.stop_signal = SIGTERM;
    // Registered under the lock, so that a stop signal arriving meanwhile reaches it too.
    std::lock_guard<std::mutex> lock(children_mu);
    auto started = ChildProcess::spawn(o);
    if (!started.ok()) {
      std::cerr << "tandem demo: cannot start " << label << ": " << started.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    process = std::move(started).value();
    children.insert(process->pid());
  }
  ~Child() { forget(); }
  void forget() {
    std::lock_guard<std::mutex> lock(children_mu);
    if (process) children.erase(process->pid());
  }
  // Prints what the child wrote within `ms`, prefixed; returns the lines.
  std::vector<std::string> pump(int ms) {
    std::vector<std::string> lines;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      if (const int sig = stop_signal(); sig != 0) throw CLI::RuntimeError(128 + sig);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || process->at_eof()) break;
      auto line = process->read_line(left, stop_fd());
      if (!line) continue;
      lines.push_back(*line);
      std::cout << "[" << name << "] " << *line << std::endl;
    }
    return lines;
  }
  // Prints and returns the first line the child writes within `ms` (nullopt: none).
  std::optional<std::string> first_line(int ms) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      if (const int sig = stop_signal(); sig != 0) throw CLI::RuntimeError(128 + sig);
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || process->at_eof()) return std::nullopt;
      auto line = process->read_line(left, stop_fd());
      if (!line) continue;
      std::cout << "[" << name << "] " << *line << std::endl;
      return line;
    }
  }
  // SIGTERM, then what it still prints, then its exit.
  int stop() {
    process->signal(SIGTERM);
    pump(2000);
    return wait();
  }
  int wait() {
    const int code = process->wait(std::chrono::hours(24));
    forget();
    return code;
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

  // The nodes' databases are bound to their server's URL (docs/protocol.md, "Identities"), so
  // every run listens on the port the first run got (data/server.port): the data folder keeps
  // working. When that port is taken now, or none was noted, the nodes start over (their old
  // databases are kept, renamed) and sync again from the server's file.
  const std::string port_file = o.data_dir + "/server.port";
  std::string port;
  std::ifstream(port_file) >> port;
  if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) port = "0";
  auto start_server = [&](const std::string& on) {
    auto child = std::make_unique<Child>("server", std::vector<std::string>{"tandem", "server", "--listen", "127.0.0.1:" + on,
                                                                            "--data-dir", o.data_dir + "/server", "--secret-file", secret_file},
                                         log);
    auto line = child->first_line(10000);
    if (line && line->rfind("listening on ", 0) == 0) return std::make_pair(std::move(child), *line);
    child->stop();
    return std::make_pair(std::unique_ptr<Child>(), std::string());
  };
  auto [server, listening] = start_server(port);
  if (!server && port != "0") std::tie(server, listening) = start_server("0");
  if (!server) {
    std::cerr << "tandem demo: the server did not start (see " << log << ")\n";
    throw CLI::RuntimeError(2);
  }
  const std::string url = listening.substr(13) + "/sync";
  const std::string got = url.substr(url.rfind(':') + 1, url.find('/', url.rfind(':')) - url.rfind(':') - 1);
  if (got != port) {
    // Databases of earlier runs are bound to another port (or to one nobody noted).
    bool moved = false;
    const std::string stale = ".before-" + std::to_string(::time(nullptr));
    for (const char* node : {"phone", "laptop"})
      for (const char* suffix : {".db", ".db-wal", ".db-shm"}) {
        const std::string f = o.data_dir + "/" + node + suffix;
        moved = std::rename(f.c_str(), (f + stale).c_str()) == 0 || moved;
      }
    if (moved)
      std::cout << "tandem demo: the server of the earlier runs listened on another port; the nodes start over (their old "
                << "databases end in " << stale << ")" << std::endl;
    std::ofstream(port_file) << got << "\n";
  }

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
