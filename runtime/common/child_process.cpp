#include "runtime/common/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

extern char** environ;

namespace tandem {
namespace {

int decode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

Result<std::unique_ptr<ChildProcess>> ChildProcess::spawn(const ChildOptions& options) {
  if (options.args.empty()) return Status::InvalidArgument("a child process needs a program");
  if (options.stderr_file.empty()) return Status::InvalidArgument("a child process needs a file for its stderr");
  std::unique_ptr<ChildProcess> child(new ChildProcess());
  child->options_ = options;
  int in[2] = {-1, -1}, out[2] = {-1, -1};
  auto close_all = [&] {
    for (int fd : {in[0], in[1], out[0], out[1]})
      if (fd >= 0) ::close(fd);
  };
  if (::pipe2(out, O_CLOEXEC) != 0 || (options.pipe_stdin && ::pipe2(in, O_CLOEXEC) != 0)) {
    const std::string why = std::strerror(errno);
    close_all();
    return Status::Internal("cannot create a pipe for " + options.args[0] + ": " + why);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (options.pipe_stdin) posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, options.stderr_file.c_str(),
                                   O_WRONLY | O_CREAT | (options.truncate_stderr ? O_TRUNC : O_APPEND), 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  std::vector<char*> argv;
  for (const auto& a : options.args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::string& program = options.program.empty() ? options.args[0] : options.program;
  const int rc = posix_spawn(&child->pid_, program.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    close_all();
    child->pid_ = -1;
    return Status::Internal("cannot start " + program + ": " + std::strerror(rc));
  }
  if (options.pipe_stdin) {
    ::close(in[0]);
    child->stdin_ = in[1];
  }
  ::close(out[1]);
  child->stdout_ = out[0];
  return child;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !exited_) {
    ::kill(pid_, options_.stop_signal);
    ::waitpid(pid_, nullptr, 0);
  }
  if (stdin_ >= 0) ::close(stdin_);
  if (stdout_ >= 0) ::close(stdout_);
}

Status ChildProcess::write(const std::string& data) {
  if (stdin_ < 0) return Status::InvalidArgument("the child's stdin is not a pipe, or was closed");
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(stdin_, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status::Unavailable("writing to " + options_.args[0] + ": " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

void ChildProcess::close_stdin() {
  if (stdin_ >= 0) ::close(stdin_);
  stdin_ = -1;
}

std::optional<std::string> ChildProcess::read_line(std::chrono::milliseconds within, int interrupt_fd) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  for (;;) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (eof_) return std::nullopt;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p[2] = {{stdout_, POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
    const int ready = ::poll(p, interrupt_fd >= 0 ? 2 : 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) return std::nullopt;
    if (interrupt_fd >= 0 && p[1].revents != 0) return std::nullopt;
    if (ready <= 0 || p[0].revents == 0) continue;
    char buf[4096];
    const ssize_t n = ::read(stdout_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      continue;  // a last line without '\n' stays unread: every caller reads whole lines
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

void ChildProcess::signal(int sig) {
  if (pid_ > 0 && !exited_) ::kill(pid_, sig);
}

int ChildProcess::wait(std::chrono::milliseconds within) {
  if (exited_) return status_;
  const auto deadline = std::chrono::steady_clock::now() + within;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = decode(status);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace tandem
