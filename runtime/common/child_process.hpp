// A child process for the programs that run others: the demo (a server and two clients),
// the sync benchmark (a server) and the multi-process tests (every role). One launcher, so
// that what a child inherits is decided once: stdout is a pipe to the parent, stderr goes
// to a log file, stdin is a pipe or the parent's, and the signal mask starts empty (a parent
// that blocks SIGINT/SIGTERM to wait for them, apps/tandem/stop_signals.hpp, must not pass
// that on: its children would ignore a stop).
//
// Not thread-safe: one owner. Every wait is bounded by the caller's `within`.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/common/status.hpp"

namespace tandem {

struct ChildOptions {
  std::vector<std::string> args;  // argv, args[0] included
  std::string program;            // the executable's path; empty: args[0]
  std::string stderr_file;        // required: where the child's stderr goes
  bool truncate_stderr = false;   // else appended to
  bool pipe_stdin = false;        // else the child shares the parent's stdin
  int stop_signal = SIGKILL;      // sent by the destructor to a child still running, then reaped
};

class ChildProcess {
 public:
  // Starts the child; an error names the program and why it could not start.
  static Result<std::unique_ptr<ChildProcess>> spawn(const ChildOptions& options);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Writes all of `data` to the child's stdin (pipe_stdin only).
  Status write(const std::string& data);
  void close_stdin();

  // The next line of the child's stdout (without '\n'), or nullopt after `within`, at the end
  // of its output (then at_eof()), or as soon as `interrupt_fd` (if >= 0) becomes readable.
  std::optional<std::string> read_line(std::chrono::milliseconds within, int interrupt_fd = -1);
  bool at_eof() const { return eof_; }

  void signal(int sig);
  // Exit status, or 128 + signal; -1 when it has not ended within `within` (it keeps running).
  int wait(std::chrono::milliseconds within);
  bool exited() const { return exited_; }
  pid_t pid() const { return pid_; }

 private:
  ChildProcess() = default;
  ChildOptions options_;
  pid_t pid_ = -1;
  int stdin_ = -1, stdout_ = -1;
  bool exited_ = false, eof_ = false;
  int status_ = -1;
  std::string buffer_;
};

}  // namespace tandem
