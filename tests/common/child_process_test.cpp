// ChildProcess: the one launcher of the demo, the sync benchmark and the process tests.
#include <catch2/catch.hpp>

#include <signal.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/common/child_process.hpp"

using namespace tandem;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path path;
  Scratch() {
    char tmpl[] = "/tmp/tandem-child-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Scratch() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<ChildProcess> start(ChildOptions o) {
  auto child = ChildProcess::spawn(o);
  INFO(child.status().to_string());
  REQUIRE(child.ok());
  return std::move(child).value();
}

}  // namespace

TEST_CASE("a child's stdout comes back line by line, its stderr goes to its file, its exit code to wait", "[child]") {
  Scratch dir;
  ChildOptions o;
  o.args = {"/bin/sh", "-c", "echo one; echo two; echo oops >&2; exit 3"};
  o.stderr_file = dir.file("err.log");
  auto child = start(o);
  CHECK(child->read_line(5s) == std::optional<std::string>("one"));
  CHECK(child->read_line(5s) == std::optional<std::string>("two"));
  CHECK_FALSE(child->read_line(5s).has_value());
  CHECK(child->at_eof());
  CHECK(child->wait(5s) == 3);
  CHECK(child->exited());
  CHECK(slurp(dir.file("err.log")) == "oops\n");
}

TEST_CASE("a child reads the stdin pipe, and program may differ from argv[0]", "[child]") {
  Scratch dir;
  ChildOptions o;
  o.args = {"not-a-path", "-c", "read a; echo \"$0 got $a\""};
  o.program = "/bin/sh";
  o.stderr_file = dir.file("err.log");
  o.pipe_stdin = true;
  auto child = start(o);
  REQUIRE(child->write("hello\n").ok());
  child->close_stdin();
  CHECK(child->read_line(5s) == std::optional<std::string>("not-a-path got hello"));
  CHECK(child->wait(5s) == 0);
  CHECK_FALSE(child->write("late\n").ok());  // stdin closed: an error, not a crash
}

TEST_CASE("a child starts with no signal blocked, even when its parent blocks stop signals", "[child]") {
  Scratch dir;
  sigset_t stop, old;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  REQUIRE(pthread_sigmask(SIG_BLOCK, &stop, &old) == 0);
  ChildOptions o;
  o.args = {"/bin/sleep", "30"};
  o.stderr_file = dir.file("err.log");
  auto child = start(o);
  REQUIRE(pthread_sigmask(SIG_SETMASK, &old, nullptr) == 0);
  child->signal(SIGTERM);
  CHECK(child->wait(5s) == 128 + SIGTERM);
}

TEST_CASE("a child that cannot start is an error naming it, and a running one is stopped at the end", "[child]") {
  Scratch dir;
  ChildOptions o;
  o.args = {dir.file("no-such-program")};
  o.stderr_file = dir.file("err.log");
  auto missing = ChildProcess::spawn(o);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().message().find("no-such-program") != std::string::npos);
  CHECK_FALSE(ChildProcess::spawn(ChildOptions{}).ok());

  o.args = {"/bin/sleep", "30"};
  pid_t pid;
  {
    auto child = start(o);
    pid = child->pid();
    CHECK(child->wait(50ms) == -1);  // still running
    CHECK(::kill(pid, 0) == 0);
  }
  CHECK(::kill(pid, 0) != 0);  // killed and reaped
}
