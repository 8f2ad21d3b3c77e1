// The client shell in a real terminal (tmux, installed by scripts/setup.sh), typed at as a
// person would: line editing (Ctrl-A, Ctrl-E, Ctrl-W), the history recalled with the arrow
// keys within a session and in the next one (a private file), a watch's output arriving while
// a line is being typed (the prompt and the line are drawn again below it), and Ctrl-C.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "tests/net/process_util.hpp"

using namespace tandem_process_test;
using namespace std::chrono_literals;

namespace {

// tmux from PATH (the child is started by path).
std::string tmux_path() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, end - start) + "/tmux";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  FAIL("tmux is not installed (scripts/setup.sh installs it)");
  return {};
}

// One tmux server of our own (-L), so nothing of the user's tmux is touched. Each Terminal has
// its own server: restarting one right after kill-server raced its teardown (a new session
// could land on the exiting server and vanish with it).
struct Terminal {
  std::string binary = tmux_path();
  std::string socket;
  std::string log;
  Terminal(std::string log_file, const std::string& name)
      : socket("tandem-test-" + std::to_string(::getpid()) + "-" + name), log(std::move(log_file)) {}
  ~Terminal() { (void)!std::system((binary + " -L " + socket + " kill-server 2>/dev/null").c_str()); }
  RunResult tmux(std::vector<std::string> args) {
    args.insert(args.begin(), {binary, "-L", socket, "-f", "/dev/null"});
    return run(args, log);
  }
  // remain-on-exit is set before the command starts, so a command that dies at once leaves its
  // pane (and its last words) for describe() instead of taking the server with it.
  void start(const std::vector<std::string>& command) {
    std::vector<std::string> args{"start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
                                  "new-session", "-d", "-s", "t", "-x", "200", "-y", "50"};
    args.insert(args.end(), command.begin(), command.end());
    auto r = tmux(args);
    INFO("tmux: " << slurp(log));
    REQUIRE(r.code == 0);
  }
  void keys(std::vector<std::string> k) {
    k.insert(k.begin(), {"send-keys", "-t", "t"});
    REQUIRE(tmux(k).code == 0);
  }
  void type(const std::string& text) { keys({"-l", text}); }
  std::string screen() { return tmux({"capture-pane", "-t", "t", "-p"}).out; }
  // What a failed wait saw: the pane with its scrollback, and whether its command has ended.
  std::string describe() {
    return "pane dead/status: " + tmux({"display-message", "-p", "-t", "t", "#{pane_dead} #{pane_dead_status}"}).out +
           "pane with scrollback:\n" + tmux({"capture-pane", "-t", "t", "-p", "-S", "-"}).out + "tmux log: " + slurp(log);
  }
  // Waits until the screen holds `text` `times` times.
  bool wait_for(const std::string& text, int times = 1, std::chrono::milliseconds within = 15s) {
    const auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
      const std::string s = screen();
      int n = 0;
      for (size_t at = s.find(text); at != std::string::npos; at = s.find(text, at + 1)) ++n;
      if (n >= times) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
  // wait_for, failing the test with what the terminal showed.
  void expect(const std::string& text, int times = 1) {
    if (!wait_for(text, times)) FAIL("the terminal never showed " << text << " x" << times << ": " << describe());
  }
  bool pane_dead() { return tmux({"display-message", "-p", "-t", "t", "#{pane_dead}"}).out.rfind("1", 0) == 0; }
  // Waits up to 10 s for the pane's command to end; whether it did.
  bool wait_dead() {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (!pane_dead() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
    return pane_dead();
  }
};

// The half-typed query of both cases, drawn again below other output, finished and run;
// then the shell is left with `quit`.
void finish_half_line_and_quit(Terminal& term) {
  term.expect("tandem> query SELECT 'half", 2);
  term.type(" done' AS c");
  term.keys({"Enter"});
  term.expect("[{\"c\":\"half done\"}]");
  term.type("quit");
  term.keys({"Enter"});
  REQUIRE(term.wait_dead());
}

std::string shell_command(World& w, const std::string& history) {
  std::string cmd = "env TANDEM_HISTORY=" + history;
  for (const auto& a : w.client("shell.db")) cmd += " '" + a + "'";
  return cmd;
}

}  // namespace

TEST_CASE("shell on a terminal: line editing, history across sessions, a watch redrawn around the typed line, Ctrl-C",
          "[process][cli][shell]") {
  World w;
  w.start_server();
  const std::string history = w.dir / "history";
  Terminal term(w.dir / "tmux.log", "first");
  term.start({shell_command(w, history)});
  term.expect("tandem> ");

  // Typed with a missing first letter, then fixed at the start of the line.
  term.type("uery SELECT 41 AS a");
  term.keys({"C-a"});
  term.type("q");
  term.keys({"Enter"});
  term.expect("[{\"a\":41}]");
  // The previous line again (Up), its last word replaced (Ctrl-E, Ctrl-W).
  term.keys({"Up"});
  term.keys({"C-e", "C-w"});
  term.type("b");
  term.keys({"Enter"});
  term.expect("[{\"b\":41}]");

  // A watch, then a write from another process while a line is half typed: the change is
  // printed and the prompt with the half line is drawn again below it.
  term.type("watch SELECT count(*) AS n FROM todo");
  term.keys({"Enter"});
  term.expect("\"n\":0");
  term.type("query SELECT 'half");
  term.expect("tandem> query SELECT 'half");
  REQUIRE(w.cmd("other.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'milk')"}).code == 0);
  term.expect("\"n\":1");
  finish_half_line_and_quit(term);

  // The history is kept privately and brought back in the next session.
  struct stat st {};
  REQUIRE(::stat(history.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string saved = slurp(history);
  CHECK(saved.find("SELECT\\04041\\040AS\\040b") != std::string::npos);
  Terminal second(w.dir / "tmux2.log", "second");
  second.start({shell_command(w, history)});
  second.expect("tandem> ");
  second.keys({"Up", "Up", "Up"});  // quit, the half-done query, the watch ... back to "AS b"
  second.keys({"Up"});
  second.keys({"Enter"});
  second.expect("[{\"b\":41}]");

  // Ctrl-C leaves the shell promptly, with the terminal given back (the pane's shell is gone).
  second.keys({"C-c"});
  CHECK(second.wait_dead());
}

// A log line of another thread while a line is half typed (the syncer's, at --log-level info,
// when the server goes away): the prompt and the half line are drawn again below it, as after
// a watch's output, and the line is finished where it is.
TEST_CASE("shell on a terminal: a log line while a line is half typed is followed by the prompt and the line again",
          "[process][cli][shell]") {
  World w;
  w.start_server();
  Terminal term(w.dir / "tmux.log", "log");
  term.start({shell_command(w, w.dir / "history")});
  term.expect("tandem> ");
  term.expect("hop=client.welcome");  // no log line of the connection is still to come
  term.type("query SELECT 'half");
  term.expect("tandem> query SELECT 'half");
  w.kill_server();
  term.expect("hop=client.disconnected");
  finish_half_line_and_quit(term);
}
