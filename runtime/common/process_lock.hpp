// One process per file, by construction: an exclusive flock(2) on a lock file beside the
// guarded file (a database) or inside the guarded directory (a server's --data-dir).
//
// Why flock and not fcntl: POSIX fcntl locks belong to the process and are dropped when ANY
// descriptor of the file is closed (SQLite and this process open the same paths), and they
// do not conflict inside one process; an flock belongs to the open file description, so a
// second opener in the same process is refused too, and nothing else releases it. The
// kernel drops it when the holder dies, even by kill -9: a crash never leaves a stale lock.
// The lock file is never deleted (deleting it would let a waiter lock an unlinked inode);
// the holder writes its pid and command line into it so that a refused process can say
// who holds the file. The descriptor is close-on-exec: children never inherit the lock.
#pragma once

#include <memory>
#include <string>

#include "runtime/common/status.hpp"

namespace tandem {

class ProcessLock {
 public:
  // Takes the lock on `lock_path` (created if missing) without waiting. `what` names the
  // guarded thing in messages ("database 'a.db'"). When another process (or another
  // opener in this one) holds it: UNAVAILABLE, "database 'a.db' is in use by another
  // process: pid 4242 (tandem client --db a.db watch ...)".
  static Result<std::unique_ptr<ProcessLock>> acquire(const std::string& lock_path, const std::string& what);
  ~ProcessLock();
  ProcessLock(const ProcessLock&) = delete;
  ProcessLock& operator=(const ProcessLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  ProcessLock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

// "pid 4242 (tandem client --db a.db watch ...)": this process as a lock holder. The values
// of options whose name mentions a token or a secret are left out (the file is readable by
// whoever can read the database's directory).
std::string describe_this_process();

// The lock file guarding a SQLite database path: "<path>.lock". Empty for in-memory
// databases (":memory:", "", URIs with mode=memory), which no other process can open.
std::string database_lock_path(const std::string& database_path);

}  // namespace tandem
