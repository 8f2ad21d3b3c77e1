#include "runtime/node/wire.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace tandem::node {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

Status check_secret_file(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::Internal("cannot stat '" + path + "': " + errno_text(errno));
  if (st.st_uid != ::geteuid())
    return Status::PermissionDenied("node secret '" + path + "' belongs to uid " + std::to_string(st.st_uid) + ", not to this user");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%o", static_cast<unsigned>(st.st_mode & 0777));
    return Status::PermissionDenied("node secret '" + path + "' is accessible to group or others (mode " + mode + "); it must be 0600");
  }
  return Status::Ok();
}

Result<std::string> read_fd(int fd, const std::string& path) {
  std::string out;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Internal("cannot read '" + path + "': " + errno_text(errno));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > 4096) return Status::InvalidArgument("node secret '" + path + "' is too large");
  }
  return out;
}

// A socket's address. A path longer than sun_path is reached through its directory: the
// directory is opened and the address names the socket as /proc/self/fd/N/<file>, which the
// kernel resolves to the same file beside the database (so a deep --db path works and the
// socket keeps the directory's permissions). The directory stays open while the address is
// in use.
struct UnixAddress {
  sockaddr_un addr{};
  int dir_fd = -1;
  UnixAddress() = default;
  UnixAddress(const UnixAddress&) = delete;
  UnixAddress& operator=(const UnixAddress&) = delete;
  UnixAddress(UnixAddress&& o) noexcept : addr(o.addr), dir_fd(std::exchange(o.dir_fd, -1)) {}
  ~UnixAddress() {
    if (dir_fd >= 0) ::close(dir_fd);
  }
};

Result<UnixAddress> unix_address(const std::string& path) {
  UnixAddress out;
  out.addr.sun_family = AF_UNIX;
  std::string name = path;
  if (path.size() >= sizeof out.addr.sun_path) {
    const auto slash = path.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    out.dir_fd = ::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (out.dir_fd < 0) return Status::Unavailable("cannot open the directory of node socket '" + path + "': " + errno_text(errno));
    name = "/proc/self/fd/" + std::to_string(out.dir_fd) + "/" + path.substr(slash + 1);
    if (name.size() >= sizeof out.addr.sun_path)
      return Status::InvalidArgument("node socket '" + path + "': its file name is longer than a Unix socket address may hold (" +
                                     std::to_string(sizeof out.addr.sun_path - 1) + " bytes with its directory); use a shorter --db file name");
  }
  std::memcpy(out.addr.sun_path, name.c_str(), name.size() + 1);
  return out;
}

}  // namespace

std::string socket_path(const std::string& database_path) { return database_path + ".node"; }
std::string secret_path(const std::string& database_path) { return database_path + ".secret"; }

std::string encode_frame(const Envelope& envelope) {
  std::string body = envelope.SerializeAsString();
  const auto n = static_cast<uint32_t>(body.size());
  std::string out;
  out.reserve(4 + body.size());
  out.push_back(static_cast<char>(n >> 24));
  out.push_back(static_cast<char>(n >> 16));
  out.push_back(static_cast<char>(n >> 8));
  out.push_back(static_cast<char>(n));
  out += body;
  return out;
}

Result<std::optional<Envelope>> FrameReader::next() {
  if (buffer_.size() - at_ < 4) return std::optional<Envelope>{};
  const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + at_);
  const size_t n = (size_t{p[0]} << 24) | (size_t{p[1]} << 16) | (size_t{p[2]} << 8) | size_t{p[3]};
  if (n > kMaxFrameBytes) return Status::InvalidArgument("node frame of " + std::to_string(n) + " bytes: corrupt stream");
  if (buffer_.size() - at_ - 4 < n) return std::optional<Envelope>{};
  Envelope e;
  if (!e.ParseFromArray(buffer_.data() + at_ + 4, static_cast<int>(n))) return Status::InvalidArgument("unparsable node frame");
  at_ += 4 + n;
  // Compact once the consumed prefix dominates: amortized O(1) per byte.
  if (at_ > 65536 && at_ * 2 > buffer_.size()) {
    buffer_.erase(0, at_);
    at_ = 0;
  }
  return std::optional<Envelope>(std::move(e));
}

Status write_frame(int fd, const Envelope& envelope) {
  const std::string frame = encode_frame(envelope);
  size_t done = 0;
  while (done < frame.size()) {
    ssize_t n = ::send(fd, frame.data() + done, frame.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return Status::Unavailable("node connection: the peer took no bytes within the send timeout (stopped or hung)");
    if (n < 0) return Status::Unavailable("node connection: " + errno_text(errno));
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<Envelope> read_frame(int fd, FrameReader& reader, std::optional<std::chrono::milliseconds> within) {
  const auto deadline = std::chrono::steady_clock::now() + within.value_or(std::chrono::milliseconds(0));
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(auto next, reader.next());
    if (next) return std::move(*next);
    if (within) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Status::Unavailable("node connection: no answer in time");
      pollfd p{fd, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc == 0) return Status::Unavailable("node connection: no answer in time");
    }
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Unavailable("node connection: " + errno_text(errno));
    if (n == 0) return Status::Unavailable("node connection closed by the other process");
    reader.feed(buf, static_cast<size_t>(n));
  }
}

Result<std::string> ensure_secret(const std::string& path, size_t length) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    const std::string secret = random_bytes(length);
    Status s = check_secret_file(fd, path);  // a umask cannot widen 0600, but an ACL'd directory could
    if (s.ok() && ::write(fd, secret.data(), secret.size()) != static_cast<ssize_t>(secret.size()))
      s = Status::Internal("cannot write node secret '" + path + "': " + errno_text(errno));
    if (s.ok() && ::fsync(fd) != 0) s = Status::Internal("cannot sync node secret '" + path + "': " + errno_text(errno));
    ::close(fd);
    if (!s.ok()) {
      ::unlink(path.c_str());
      return s;
    }
    return secret;
  }
  if (errno != EEXIST) return Status::Internal("cannot create node secret '" + path + "': " + errno_text(errno));
  auto existing = read_secret(path);
  if (existing.ok() || existing.status().code() != StatusCode::invalid_argument) return existing;
  // Empty or truncated: a leader died between creating and writing it. The caller holds the
  // database lock (no follower can be using it), so it is replaced.
  if (::unlink(path.c_str()) != 0) return Status::Internal("cannot replace node secret '" + path + "': " + errno_text(errno));
  return ensure_secret(path, length);
}

Result<std::string> read_secret(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int err = errno;
    if (err == EACCES || err == EPERM) return Status::PermissionDenied("cannot read node secret '" + path + "': " + errno_text(err));
    if (err == ENOENT) return Status::NotFound("node secret '" + path + "' does not exist");
    return Status::Internal("cannot open node secret '" + path + "': " + errno_text(err));
  }
  Status s = check_secret_file(fd, path);
  Result<std::string> out = s.ok() ? read_fd(fd, path) : Result<std::string>(s);
  ::close(fd);
  if (out.ok() && out->size() < 16) return Status::InvalidArgument("node secret '" + path + "' is too short (" + std::to_string(out->size()) + " bytes)");
  return out;
}

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    // OpenSSL without entropy is not a state to continue in: a guessable secret is worse.
    std::abort();
  }
  return out;
}

std::string join_proof(const std::string& secret, const std::string& nonce) {
  const std::string message = "tandem-node-join" + nonce;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()), reinterpret_cast<const unsigned char*>(message.data()),
       message.size(), mac, &len);
  return std::string(reinterpret_cast<const char*>(mac), len);
}

Envelope make_hello(const std::string& nonce) {
  Envelope e;
  e.mutable_hello()->set_nonce(nonce);
  e.mutable_hello()->set_leader_pid(::getpid());
  return e;
}

Envelope make_join(const std::string& secret, const Hello& hello, const std::vector<std::string>& schema, const std::string& name,
                   const JoinSync& sync) {
  Envelope e;
  auto* j = e.mutable_join();
  j->set_proof(join_proof(secret, hello.nonce()));
  for (const auto& s : schema) j->add_schema(s);
  j->set_name(name);
  j->set_pid(::getpid());
  j->set_server(sync.server);
  j->set_user(sync.user);
  j->set_token(sync.token);
  for (const auto& url : sync.also_servers) j->add_also_servers(url);
  j->set_ca_file(sync.ca_file);
  j->set_insecure(sync.insecure);
  return e;
}

Status check_join(const std::string& secret, const std::string& nonce, const Join& join, const std::vector<std::string>& schema,
                  uid_t leader_uid, uid_t peer_uid, const std::string& leader_server, const std::string& leader_user) {
  if (peer_uid != leader_uid)
    return Status::PermissionDenied("the node's leader runs as uid " + std::to_string(leader_uid) + "; uid " +
                                    std::to_string(peer_uid) + " may not join it");
  const std::string expected = join_proof(secret, nonce);
  if (join.proof().size() != expected.size() || CRYPTO_memcmp(join.proof().data(), expected.data(), expected.size()) != 0)
    return Status::PermissionDenied("wrong proof of the node secret: this process cannot read the database's .secret file");
  std::vector<std::string> theirs(join.schema().begin(), join.schema().end());
  // A process without --schema (a local query or exec) takes the leader's; a leader opened
  // without one compares the follower's with the file itself (check_schema_against_file).
  if (!theirs.empty() && !schema.empty() && theirs != schema)
    return Status::InvalidArgument("another schema: this process's schema (" + std::to_string(theirs.size()) +
                                   " statements) differs from the one the leader process opened the database with (" +
                                   std::to_string(schema.size()) + " statements); open every process of a database with the same --schema. A newer schema "
                                   "(docs/schema.md) migrates the file when the process that opens it first has it: end every process of "
                                   "this database, then start them again with the new --schema");
  if (!join.server().empty() && !leader_server.empty() && join.server() != leader_server)
    return Status::InvalidArgument("another server: this process names " + join.server() + " but the leader process syncs the database with " +
                                   leader_server);
  if (!join.user().empty() && !leader_user.empty() && join.user() != leader_user)
    return Status::PermissionDenied("another user: this process's token is for user '" + join.user() +
                                    "' but the leader process syncs the database as user '" + leader_user +
                                    "'; every process of a database must use a token of the same user");
  return Status::Ok();
}

Result<int> listen_unix(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(auto address, unix_address(path));
  const sockaddr_un& addr = address.addr;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Internal("socket: " + errno_text(errno));
  ::unlink(path.c_str());
  // Bind under a restrictive umask: no window in which others could connect.
  const mode_t old = ::umask(077);
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int err = errno;
  ::umask(old);
  if (rc != 0) {
    ::close(fd);
    return Status::Internal("cannot bind node socket '" + path + "': " + errno_text(err));
  }
  if (::listen(fd, 64) != 0) {
    const int e = errno;
    ::close(fd);
    return Status::Internal("cannot listen on node socket '" + path + "': " + errno_text(e));
  }
  return fd;
}

Result<int> connect_unix(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(auto address, unix_address(path));
  const sockaddr_un& addr = address.addr;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Internal("socket: " + errno_text(errno));
  int rc;
  do rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EACCES || err == EPERM) return Status::PermissionDenied("cannot connect to node socket '" + path + "': " + errno_text(err));
    return Status::Unavailable("no leader listens on '" + path + "': " + errno_text(err));
  }
  return fd;
}

Result<int> accept_unix(int listen_fd) {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    return Status::Unavailable("accept: " + errno_text(errno));
  }
}

Result<uid_t> peer_uid(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return Status::Internal("SO_PEERCRED: " + errno_text(errno));
  return cred.uid;
}

}  // namespace tandem::node
