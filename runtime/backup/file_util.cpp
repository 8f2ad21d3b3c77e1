#include "runtime/backup/file_util.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "runtime/auth/user_id.hpp"

namespace tandem::backup {
namespace {

std::string os_error(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

Status write_all(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Internal(os_error("writing", path));
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

bool path_exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<int64_t> file_size(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return Status::Internal(os_error("cannot stat", path));
  return static_cast<int64_t>(st.st_size);
}

Result<std::vector<std::string>> list_dir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::Internal(os_error("cannot list", dir));
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<std::string>> list_user_files(const std::string& users_dir) {
  if (!path_exists(users_dir)) return std::vector<std::string>{};
  TANDEM_ASSIGN_OR_RETURN(auto names, list_dir(users_dir));
  std::vector<std::string> users;
  for (const auto& name : names) {
    if (name.size() <= 3 || name.compare(name.size() - 3, 3, ".db") != 0) continue;
    const std::string user = name.substr(0, name.size() - 3);
    if (auth::validate_user_id(user).ok()) users.push_back(user);
  }
  return users;
}

void remove_sqlite_files(const std::string& path) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) ::unlink((path + suffix).c_str());
}

Status fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Internal(os_error("cannot open", path));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    errno = err;
    return Status::Internal(os_error("cannot fsync", path));
  }
  return Status::Ok();
}

Status fsync_parent_dir(const std::string& path) {
  const auto slash = path.rfind('/');
  return fsync_path(slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash));
}

Status write_file_durably(const std::string& path, const std::string& content) {
  const std::string part = path + ".part";
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Internal(os_error("cannot create", part));
  Status s = write_all(fd, content.data(), content.size(), part);
  if (s.ok() && ::fsync(fd) != 0) s = Status::Internal(os_error("cannot fsync", part));
  ::close(fd);
  if (s.ok() && ::rename(part.c_str(), path.c_str()) != 0) s = Status::Internal(os_error("cannot rename to", path));
  if (!s.ok()) {
    ::unlink(part.c_str());
    return s;
  }
  return fsync_parent_dir(path);
}

Status copy_file_durably(const std::string& from, const std::string& to) {
  const int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::Internal(os_error("cannot open", from));
  const int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    ::close(in);
    return Status::Internal(os_error("cannot create", to));
  }
  Status s;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = Status::Internal(os_error("reading", from));
      break;
    }
    if (n == 0) break;
    s = write_all(out, buf, static_cast<size_t>(n), to);
    if (!s.ok()) break;
  }
  if (s.ok() && ::fsync(out) != 0) s = Status::Internal(os_error("cannot fsync", to));
  ::close(in);
  ::close(out);
  if (!s.ok()) ::unlink(to.c_str());
  return s;
}

std::string utc_stamp(bool iso) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace tandem::backup
