// The node transport without actors (docs/node.md): the files beside a database that let the
// processes of one user share it, length-prefixed protobuf frames over a Unix-domain
// socket, and the join handshake.
//
//   <db>.node    the leader's listening socket (mode 0600)
//   <db>.secret  32 random bytes, mode 0600, owned by the user; created by the first leader
//
// Handshake: the leader sends Hello{nonce}; the follower answers Join{proof =
// HMAC-SHA256(secret, "tandem-node-join" || nonce), schema}; the leader checks the proof, the
// peer's uid (SO_PEERCRED) and the schema, then answers Welcome. A process that cannot read
// the secret cannot produce the proof; the nonce makes a recorded proof useless. The secret
// never crosses the socket, so a process impersonating the leader learns nothing from it.
//
// Threading: every function is safe on any thread; a descriptor is read by one thread and
// written by one thread at a time (the callers' job).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/node.pb.h"
#include "runtime/common/status.hpp"

namespace tandem::node {

inline constexpr size_t kMaxFrameBytes = 256u << 20;  // a bigger length is a corrupt stream

std::string socket_path(const std::string& database_path);  // "<db>.node"
std::string secret_path(const std::string& database_path);  // "<db>.secret"

// One frame: 4-byte big-endian length, then the serialized envelope.
std::string encode_frame(const Envelope& envelope);

// Reassembles frames from a byte stream fed in arbitrary pieces.
class FrameReader {
 public:
  void feed(const char* data, size_t n) { buffer_.append(data, n); }
  // The next complete envelope, nullopt when more bytes are needed, an error when the stream
  // is corrupt (oversized length, unparsable envelope): the connection must be dropped.
  Result<std::optional<Envelope>> next();
  size_t buffered() const { return buffer_.size() - at_; }

 private:
  std::string buffer_;
  size_t at_ = 0;
};

// Blocking I/O on a connected socket. write_frame writes the whole frame (no SIGPIPE; with
// SO_SNDTIMEO set, a peer that takes no bytes for that long fails it: the stream then holds
// a partial frame and must be dropped);
// read_frame waits at most `within` (nullopt: for ever). Unavailable on EOF, reset or timeout.
Status write_frame(int fd, const Envelope& envelope);
Result<Envelope> read_frame(int fd, FrameReader& reader, std::optional<std::chrono::milliseconds> within);

// The leader's secret: created with `length` random bytes (O_EXCL, mode 0600) when missing.
// An existing file too short to be a secret (a leader died while creating it) is replaced:
// only the lock holder calls this. Refused (PERMISSION_DENIED) when the file is not owned by this user or is readable or
// writable by group or others: a secret others can read authenticates nobody.
Result<std::string> ensure_secret(const std::string& path, size_t length = 32);
// A follower's read of the secret, with the same ownership and mode checks.
Result<std::string> read_secret(const std::string& path);

std::string random_bytes(size_t n);
std::string join_proof(const std::string& secret, const std::string& nonce);

// What a joining process would sync with (all empty: it runs offline). The leader checks
// server and user against its own; a leader running offline adopts the whole of it.
struct JoinSync {
  std::string server;
  std::string user;  // the token's subject, read unverified
  std::string token;
  std::vector<std::string> also_servers;
  std::string ca_file;
  bool insecure = false;
};

Envelope make_hello(const std::string& nonce);
Envelope make_join(const std::string& secret, const Hello& hello, const std::vector<std::string>& schema, const std::string& name,
                   const JoinSync& sync = {});
// The leader's decision on a Join: OK, PERMISSION_DENIED (wrong proof or another user) or
// INVALID_ARGUMENT (another schema, unless either names none; another server or token user
// when both name one), with a message meant for the follower's user.
Status check_join(const std::string& secret, const std::string& nonce, const Join& join, const std::vector<std::string>& schema,
                  uid_t leader_uid, uid_t peer_uid, const std::string& leader_server = "", const std::string& leader_user = "");

// Listening socket at `path` (mode 0600). The caller holds the database lock, so a file
// already at `path` is a dead leader's and is replaced. Close-on-exec.
Result<int> listen_unix(const std::string& path);
// Unavailable when nobody listens (no leader, or a dead leader's socket file).
Result<int> connect_unix(const std::string& path);
Result<int> accept_unix(int listen_fd);
Result<uid_t> peer_uid(int fd);

}  // namespace tandem::node
