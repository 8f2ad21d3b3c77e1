// The WebSocket transport: frames round-trip in order, limits and timeouts close bad
// connections, and a bad connection never disturbs the others. Waits are bounded (a
// hang fails the test) but nothing asserts on speed.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "runtime/net/websocket.hpp"
#include "tests/common/temp_dir.hpp"

using namespace tandem;
using namespace tandem::net;
using namespace std::chrono_literals;

namespace {

// Collects what a connection's handler receives; waits with a deadline.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> frames;
  std::optional<Status> closed;

  Handler handler() {
    return Handler{[this](std::string f) {
                     std::lock_guard<std::mutex> l(mu);
                     frames.push_back(std::move(f));
                     cv.notify_all();
                   },
                   [this](const Status& why) {
                     std::lock_guard<std::mutex> l(mu);
                     closed = why;
                     cv.notify_all();
                   }};
  }
  std::optional<std::string> next(std::chrono::milliseconds within = 10s) {
    std::unique_lock<std::mutex> l(mu);
    if (!cv.wait_for(l, within, [&] { return !frames.empty(); })) return std::nullopt;
    auto f = std::move(frames.front());
    frames.pop_front();
    return f;
  }
  std::optional<Status> wait_closed(std::chrono::milliseconds within = 10s) {
    std::unique_lock<std::mutex> l(mu);
    cv.wait_for(l, within, [&] { return closed.has_value(); });
    return closed;
  }
};

// An echo server: every frame is sent back; connections are kept so tests can act on them.
struct EchoServer {
  EventLoop loop{1};
  std::unique_ptr<Server> server;
  std::mutex mu;
  std::vector<std::shared_ptr<Connection>> accepted;
  std::vector<Status> closes;

  explicit EchoServer(ServerOptions options = {}) {
    auto s = Server::listen(loop, options, [this](const std::shared_ptr<Connection>& c) {
      {
        std::lock_guard<std::mutex> l(mu);
        accepted.push_back(c);
      }
      std::weak_ptr<Connection> weak = c;
      return Handler{[weak](std::string f) {
                       if (auto conn = weak.lock()) conn->send(std::move(f));
                     },
                     [this](const Status& why) {
                       std::lock_guard<std::mutex> l(mu);
                       closes.push_back(why);
                     }};
    });
    REQUIRE(s.ok());
    server = std::move(*s);
  }
  // The server-side reasons of closed connections, once `n` are known (bounded wait).
  std::vector<Status> wait_closes(size_t n) {
    for (int i = 0; i < 1000; ++i) {
      {
        std::lock_guard<std::mutex> l(mu);
        if (closes.size() >= n) return closes;
      }
      std::this_thread::sleep_for(10ms);
    }
    std::lock_guard<std::mutex> l(mu);
    return closes;
  }
  std::string url() const { return std::string(server->tls() ? "wss" : "ws") + "://127.0.0.1:" + std::to_string(server->port()) + "/sync"; }
};

// A raw TCP socket for bytes no WebSocket client would send.
struct RawSocket {
  int fd = -1;
  explicit RawSocket(uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    timeval tv{20, 0};  // a bound on every read: a hang fails the test instead of blocking it
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawSocket() { if (fd >= 0) ::close(fd); }
  void write(const std::string& bytes) { REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())); }
  // Reads until the peer closes (true) or the receive timeout fires (false); returns the bytes.
  bool read_until_closed(std::string* out) {
    char buf[4096];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
      out->append(buf, static_cast<size_t>(n));
    }
  }
  std::string read_some() {
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }
};

const char* kUpgradeRequest =
    "GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

void require_echo_works(EchoServer& echo) {
  Inbox in;
  auto c = connect_blocking(echo.loop, echo.url(), {}, in.handler());
  REQUIRE(c.ok());
  REQUIRE((*c)->send("still serving"));
  auto f = in.next();
  REQUIRE(f);
  CHECK(*f == "still serving");
  (*c)->close(kCloseNormal, "bye");
  REQUIRE(in.wait_closed());
}

}  // namespace

TEST_CASE("frames round-trip in order, binary-safe, up to the size limit", "[net]") {
  ServerOptions options;
  options.transport.max_frame_bytes = 1 << 20;
  EchoServer echo(options);
  EventLoop client_loop{1};
  Inbox in;
  ClientOptions copts;
  copts.transport.max_frame_bytes = 1 << 20;
  auto c = connect_blocking(client_loop, echo.url(), copts, in.handler());
  REQUIRE(c.ok());
  std::string binary("\0\1\2\xff\xfe", 5);
  for (int i = 0; i < 500; ++i) REQUIRE((*c)->send(std::to_string(i) + binary));
  for (int i = 0; i < 500; ++i) {
    auto f = in.next();
    REQUIRE(f);
    REQUIRE(*f == std::to_string(i) + binary);
  }
  std::string big((1 << 20) - 1, 'x');
  REQUIRE((*c)->send(big));
  auto f = in.next();
  REQUIRE(f);
  CHECK(f->size() == big.size());
  REQUIRE((*c)->send(""));  // an empty frame is a frame
  f = in.next();
  REQUIRE(f);
  CHECK(f->empty());
  (*c)->close(kCloseNormal, "done");
  auto why = in.wait_closed();
  REQUIRE(why);
  CHECK_FALSE((*c)->send("after close"));
}

TEST_CASE("an oversized frame closes that connection with 1009, others go on", "[net][bad-input]") {
  ServerOptions options;
  options.transport.max_frame_bytes = 4096;
  EchoServer echo(options);
  Inbox in;
  auto c = connect_blocking(echo.loop, echo.url(), {}, in.handler());
  REQUIRE(c.ok());
  REQUIRE((*c)->send(std::string(4097, 'y')));
  // The client may see the close frame (1009) or, if it was still writing, a broken pipe.
  REQUIRE(in.wait_closed());
  auto closes = echo.wait_closes(1);
  REQUIRE(closes.size() == 1);
  CHECK_THAT(closes[0].message(), Catch::Contains("larger than 4096"));
  require_echo_works(echo);
}

TEST_CASE("a text frame closes the connection with 1003", "[net][bad-input]") {
  ServerOptions options;
  options.transport.handshake_timeout = 500ms;  // also bounds the closing handshake the raw peer never answers
  EchoServer echo(options);
  RawSocket raw(echo.server->port());
  raw.write(kUpgradeRequest);
  std::string response = raw.read_some();
  REQUIRE(response.rfind("HTTP/1.1 101", 0) == 0);
  // A masked text frame "hi" (FIN, opcode 1, mask bit, length 2, key 0).
  raw.write(std::string("\x81\x82\0\0\0\0hi", 8));
  std::string rest;
  REQUIRE(raw.read_until_closed(&rest));
  REQUIRE(rest.size() >= 4);
  CHECK(static_cast<unsigned char>(rest[0]) == 0x88);  // a close frame
  CHECK((static_cast<unsigned char>(rest[2]) << 8 | static_cast<unsigned char>(rest[3])) == 1003);
  require_echo_works(echo);
}

TEST_CASE("garbage bytes on the port are dropped without disturbing others", "[net][bad-input]") {
  EchoServer echo;
  {
    RawSocket raw(echo.server->port());
    std::string garbage;
    for (int i = 0; i < 3000; ++i) garbage.push_back(static_cast<char>((i * 7919) & 0xff));
    raw.write(garbage);
    std::string answer;
    REQUIRE(raw.read_until_closed(&answer));
  }
  {
    RawSocket raw(echo.server->port());
    raw.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");  // plain HTTP: told to upgrade
    std::string answer;
    REQUIRE(raw.read_until_closed(&answer));
    CHECK(answer.rfind("HTTP/1.1 426", 0) == 0);
  }
  {
    RawSocket raw(echo.server->port());
    raw.write(std::string(20000, 'A'));  // an endless header line
    std::string answer;
    REQUIRE(raw.read_until_closed(&answer));
  }
  require_echo_works(echo);
  CHECK(echo.server->connection_count() == 0);
}

TEST_CASE("a connection that never finishes the handshake is closed by the handshake timeout", "[net][bad-input]") {
  ServerOptions options;
  options.transport.handshake_timeout = 300ms;
  EchoServer echo(options);
  RawSocket silent(echo.server->port());
  RawSocket half(echo.server->port());
  half.write("GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\n");  // and then nothing
  require_echo_works(echo);  // served while the two are pending
  std::string ignored;
  CHECK(silent.read_until_closed(&ignored));
  CHECK(half.read_until_closed(&ignored));
}

TEST_CASE("a peer that stops answering is closed by the idle timeout", "[net]") {
  ServerOptions options;
  options.transport.idle_timeout = 400ms;
  EchoServer echo(options);
  RawSocket frozen(echo.server->port());
  frozen.write(kUpgradeRequest);
  REQUIRE(frozen.read_some().rfind("HTTP/1.1 101", 0) == 0);
  // Never answer the server's pings: the server must give up on its own.
  std::string pings;
  CHECK(frozen.read_until_closed(&pings));
  auto closes = echo.wait_closes(1);
  REQUIRE(closes.size() == 1);
  CHECK_THAT(closes[0].message(), Catch::Contains("timed out"));
  require_echo_works(echo);
}

TEST_CASE("stopping the server closes its connections with 1001", "[net]") {
  EchoServer echo;
  Inbox in;
  auto c = connect_blocking(echo.loop, echo.url(), {}, in.handler());
  REQUIRE(c.ok());
  echo.server->stop();
  auto why = in.wait_closed();
  REQUIRE(why);
  CHECK_THAT(why->message(), Catch::Contains("1001"));
  Inbox in2;
  CHECK_FALSE(connect_blocking(echo.loop, echo.url(), {}, in2.handler()).ok());
}

TEST_CASE("connecting to nothing fails with a clear reason", "[net]") {
  EventLoop loop{1};
  Inbox in;
  uint16_t port;
  {
    EchoServer gone;
    port = gone.server->port();
  }
  auto c = connect_blocking(loop, "ws://127.0.0.1:" + std::to_string(port) + "/", {}, in.handler());
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == StatusCode::unavailable);
  CHECK_FALSE(connect_blocking(loop, "http://127.0.0.1/", {}, in.handler()).ok());
}

TEST_CASE("TLS: wss with a certificate, verified against its CA file", "[net][tls]") {
  const tandem::test::TempDir tmp;  // the key is made per run, never kept in the source tree
  const std::string& dir = tmp.path;
  REQUIRE(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                       "-nodes -keyout " + dir + "/key.pem -out " + dir + "/cert.pem -days 2 -subj /CN=localhost "
                       "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null").c_str()) == 0);
  ServerOptions options;
  options.tls_cert_file = dir + "/cert.pem";
  options.tls_key_file = dir + "/key.pem";
  EchoServer echo(options);
  REQUIRE(echo.server->tls());
  const std::string port = std::to_string(echo.server->port());

  ClientOptions trusting;
  trusting.ca_file = dir + "/cert.pem";
  Inbox in;
  auto c = connect_blocking(echo.loop, "wss://localhost:" + port + "/sync", trusting, in.handler());
  REQUIRE(c.ok());
  REQUIRE((*c)->send("secret"));
  auto f = in.next();
  REQUIRE(f);
  CHECK(*f == "secret");
  (*c)->close(kCloseNormal, "bye");
  REQUIRE(in.wait_closed());

  Inbox untrusted;
  CHECK_FALSE(connect_blocking(echo.loop, "wss://localhost:" + port + "/sync", {}, untrusted.handler()).ok());
  Inbox plain;
  CHECK_FALSE(connect_blocking(echo.loop, "ws://localhost:" + port + "/sync", {}, plain.handler()).ok());

  ServerOptions half = options;
  half.tls_key_file.clear();
  EventLoop loop;
  auto refused = Server::listen(loop, half, [](const std::shared_ptr<Connection>&) { return Handler{}; });
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.status().message(), Catch::Contains("both"));
  ServerOptions missing = options;
  missing.tls_cert_file = dir + "/nope.pem";
  CHECK_FALSE(Server::listen(loop, missing, [](const std::shared_ptr<Connection>&) { return Handler{}; }).ok());
}

TEST_CASE("server URLs", "[net]") {
  auto u = parse_url("ws://example.org:8080/sync");
  REQUIRE(u.ok());
  CHECK_FALSE(u->tls);
  CHECK(u->host == "example.org");
  CHECK(u->port == 8080);
  CHECK(u->target == "/sync");
  u = parse_url("wss://[::1]");
  REQUIRE(u.ok());
  CHECK(u->tls);
  CHECK(u->host == "::1");
  CHECK(u->port == 443);
  CHECK(u->target == "/");
  for (const char* bad : {"", "http://x", "ws://", "ws://:80", "ws://h:0", "ws://h:70000", "ws://h:x", "ws://[::1"}) {
    INFO(bad);
    CHECK_FALSE(parse_url(bad).ok());
  }
}
