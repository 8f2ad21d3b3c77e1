#include "runtime/common/process_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>
#include <vector>

namespace tandem {
namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[1024];
  off_t at = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, at);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    at += n;
    if (out.size() > 4096) break;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\0')) out.pop_back();
  return out;
}

bool names_a_secret(const std::string& arg) {
  std::string lower;
  for (char c : arg) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return lower.rfind("-", 0) == 0 && (lower.find("token") != std::string::npos || lower.find("secret") != std::string::npos) &&
         lower.find("file") == std::string::npos;
}

}  // namespace

std::string describe_this_process() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (size_t at = 0; at < raw.size();) {
    size_t end = raw.find('\0', at);
    if (end == std::string::npos) end = raw.size();
    args.push_back(raw.substr(at, end - at));
    at = end + 1;
  }
  std::string command;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (i == 0) {
      auto slash = a.rfind('/');
      if (slash != std::string::npos) a = a.substr(slash + 1);
    } else if (names_a_secret(a)) {
      auto eq = a.find('=');
      if (eq != std::string::npos) a = a.substr(0, eq + 1) + "...";
      else if (i + 1 < args.size()) {
        command += " " + a + " ...";
        ++i;
        continue;
      }
    }
    for (char& c : a)
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';  // one line, whatever the arguments hold
    command += (command.empty() ? "" : " ") + a;
    if (command.size() > 300) {
      command = command.substr(0, 300) + "...";
      break;
    }
  }
  return "pid " + std::to_string(::getpid()) + (command.empty() ? "" : " (" + command + ")");
}

std::string database_lock_path(const std::string& database_path) {
  if (database_path.empty() || database_path == ":memory:") return {};
  std::string path = database_path;
  if (path.rfind("file:", 0) == 0) {
    // A URI filename (SQLITE_OPEN_URI): the path is between "file:" and the query string.
    const auto query = path.find('?');
    const std::string params = query == std::string::npos ? std::string() : path.substr(query);
    if (params.find("mode=memory") != std::string::npos) return {};
    path = path.substr(5, query == std::string::npos ? std::string::npos : query - 5);
    if (path.rfind("//", 0) == 0) path = path.substr(path.find('/', 2) == std::string::npos ? path.size() : path.find('/', 2));
    if (path.empty() || path == ":memory:") return {};
  }
  return path + ".lock";
}

Result<std::unique_ptr<ProcessLock>> ProcessLock::acquire(const std::string& lock_path, const std::string& what) {
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Internal("cannot open lock file '" + lock_path + "' for " + what + ": " + std::strerror(errno));
  int rc;
  do rc = ::flock(fd, LOCK_EX | LOCK_NB);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      ::close(fd);
      return Status::Internal("cannot lock '" + lock_path + "' for " + what + ": " + std::strerror(err));
    }
    // The holder writes who it is right after locking: give it a moment to do so.
    std::string holder = read_all(fd);
    for (int i = 0; holder.empty() && i < 20; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      holder = read_all(fd);
    }
    ::close(fd);
    const std::string self = "pid " + std::to_string(::getpid());
    const bool same_process = holder.rfind(self + " ", 0) == 0 || holder == self;
    return Status::Unavailable(what + " is in use by " + (same_process ? "this process (opened twice)" : "another process") + ": " +
                               (holder.empty() ? "pid unknown" : holder) +
                               "; only one process may open it at a time (lock file " + lock_path + ")");
  }
  const std::string me = describe_this_process() + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    const int err = errno;
    ::close(fd);
    return Status::Internal("cannot write lock file '" + lock_path + "': " + std::strerror(err));
  }
  return std::unique_ptr<ProcessLock>(new ProcessLock(fd, lock_path));
}

ProcessLock::~ProcessLock() {
  // Still holding the lock: nobody reads a half-cleared file. The next holder rewrites it.
  if (::ftruncate(fd_, 0) != 0) {
    // Harmless: the description is only read while the lock is held by someone.
  }
  ::close(fd_);
}

}  // namespace tandem
