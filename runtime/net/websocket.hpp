// The WebSocket transport of the sync edge (Boost.Beast over TCP, OpenSSL TLS when
// configured). Only this header is public; Beast and asio stay inside websocket.cpp so
// that they are compiled once.
//
// Model: an EventLoop owns the I/O threads. A Server accepts connections and, once the
// TLS and WebSocket handshakes are done, asks the AcceptFn for the Handler of the new
// Connection; connect() does the same for the client side. Every frame is one binary
// WebSocket message. Handlers run on the loop's threads, in order per connection, and must
// not block (actors forward the frame with caf::anon_send). Connection::send is
// thread-safe, never blocks, and queues; a peer that falls `max_queued_bytes` behind is
// disconnected rather than buffered without bound.
//
// Limits enforced here (bad input never reaches the application):
//   - handshake_timeout: TCP accept -> TLS -> HTTP upgrade must finish within it (a
//     half-open connection or garbage bytes are closed);
//   - max_frame_bytes: a larger frame closes the connection with code 1009;
//   - idle_timeout: pings are sent after half of it; no traffic at all for the whole of it
//     closes the connection (a frozen peer or a dead network is noticed);
//   - text frames close the connection with code 1003 (the protocol is binary).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/common/status.hpp"

namespace tandem::net {

struct TransportOptions {
  size_t max_frame_bytes = 16u << 20;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds idle_timeout{30000};
  // Above the largest message (sync_frames::kMaxMessageBytes, sent as fragments queued at
  // once) plus the byte windows, so that one large value never closes a healthy connection.
  size_t max_queued_bytes = size_t{512} << 20;
};

// WebSocket close codes used by Tandem (RFC 6455 7.4.1).
enum CloseCode : uint16_t {
  kCloseNormal = 1000,
  kCloseGoingAway = 1001,
  kCloseProtocolError = 1002,
  kCloseUnsupportedData = 1003,
  kClosePolicyViolation = 1008,
  kCloseTooBig = 1009,
  kCloseInternalError = 1011,
};

// One established WebSocket connection. Thread-safe.
class Connection {
 public:
  virtual ~Connection() = default;
  // Queues one binary frame. False when the connection is closing or closed, or when the
  // queue limit is exceeded (the connection is then closed with code 1008).
  virtual bool send(std::string frame) = 0;
  // Sends a close frame after the frames already queued; later sends are dropped.
  // Idempotent. The Handler's on_close follows when the connection is down.
  virtual void close(uint16_t code, const std::string& reason) = 0;
  // Drops the TCP connection at once, without a close frame (tests, shutdown).
  virtual void abort() = 0;
  // Runs `fn` on a loop thread after `after`, unless the connection is down by then: its
  // timers are cancelled when it goes down, and `fn` is destroyed without running. (A
  // timer that ends with its connection holds nothing of a closed connection's owner.)
  virtual void set_timer(std::chrono::milliseconds after, std::function<void()> fn) = 0;
  virtual bool is_open() const = 0;
  virtual size_t queued_bytes() const = 0;
  virtual const std::string& peer() const = 0;  // "127.0.0.1:40512"
  virtual uint64_t id() const = 0;              // unique within the process
};

struct Handler {
  std::function<void(std::string frame)> on_frame;
  // Called exactly once, when the connection is down; the Status says why
  // ("closed by peer: 1000 bye", "idle timeout", "frame larger than ...").
  std::function<void(const Status& why)> on_close;
};

// I/O threads. Destroying it stops them (after Servers and Connections are closed).
class EventLoop {
 public:
  explicit EventLoop(int threads = 1);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  // Stops the threads and joins them; pending handlers are dropped. Idempotent.
  void stop();

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// A plain HTTP request on the server's port (anything but a WebSocket upgrade): health
// checks and metrics scrapes. Only what the answers depend on is kept.
struct HttpRequest {
  std::string method;         // "GET"
  std::string target;         // "/metrics?x=1" as sent
  std::string authorization;  // the Authorization header, empty when absent
  std::string peer;           // "127.0.0.1:40512"
  bool peer_loopback = false; // the peer's address is 127.0.0.0/8 or ::1 (or v4-mapped loopback)
};
struct HttpResponse {
  int status = 404;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string www_authenticate;  // sent with a 401 when not empty
};
// Answers one plain request, on a loop thread: it must not block for long. Thread-safe.
using HttpFn = std::function<HttpResponse(const HttpRequest&)>;
// Sends the answer to one plain request: call it exactly once, from any thread.
using HttpReply = std::function<void(HttpResponse)>;
// Answers one plain request later (an answer that waits on actors): called on a loop thread,
// must not block; the connection waits for `reply` (within the transport's handshake_timeout,
// after which the answer is not sent and the connection closes). Thread-safe.
using HttpAsyncFn = std::function<void(const HttpRequest&, HttpReply reply)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;          // 0: any free port (read it back with Server::port)
  std::string tls_cert_file;  // PEM chain; with tls_key_file, the server speaks wss only
  std::string tls_key_file;
  TransportOptions transport;
  // Plain HTTP requests (not upgrades) on the same port; without it every one is answered
  // 426 Upgrade Required. The answer closes the connection (no keep-alive).
  HttpFn http;
  HttpAsyncFn http_async;  // when set, answers plain requests instead of `http`
  // When set, only an upgrade to this path (the query string aside) becomes a WebSocket;
  // any other is answered 404 and closed.
  std::string websocket_path;
};

class Server {
 public:
  // Called on a loop thread for each connection whose handshakes succeeded.
  using AcceptFn = std::function<Handler(const std::shared_ptr<Connection>&)>;
  // Binds and starts accepting. Fails on a bad address, a port in use, or TLS files that
  // cannot be loaded (both or neither of cert and key must be given).
  static Result<std::unique_ptr<Server>> listen(EventLoop& loop, const ServerOptions& options, AcceptFn on_accept);
  ~Server();
  uint16_t port() const;
  bool tls() const;
  // Stops accepting and closes every connection with 1001 (going away). Idempotent.
  void stop();
  size_t connection_count() const;

  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

struct Url {
  bool tls = false;  // wss://
  std::string host;
  uint16_t port = 0;
  std::string target = "/";
};
// ws://host[:port][/path] or wss://...; IPv6 hosts in brackets. Default ports 80 / 443.
Result<Url> parse_url(const std::string& url);

struct ClientOptions {
  TransportOptions transport;
  std::string ca_file;       // PEM to trust for wss://; empty: the system's trust store
  bool verify_peer = true;   // false only for tests against self-signed certificates
};

using ConnectFn = std::function<void(Result<std::shared_ptr<Connection>>)>;
// Connects asynchronously. `done` runs once on a loop thread with the open connection or
// the reason it failed (within handshake_timeout). Frames reach `handler` only after
// `done` returned.
void connect(EventLoop& loop, const std::string& url, const ClientOptions& options, Handler handler, ConnectFn done);
// The same, waiting for the outcome (tests, command-line tools). Never call it on a loop thread.
Result<std::shared_ptr<Connection>> connect_blocking(EventLoop& loop, const std::string& url,
                                                     const ClientOptions& options, Handler handler);

}  // namespace tandem::net
