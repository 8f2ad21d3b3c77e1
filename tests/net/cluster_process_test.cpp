// The cluster port between server hosts, with the real binary (docs/operations.md, "Security
// between hosts"): TLS with certificates made here by the `openssl` command, a host that is
// not signed by the cluster's CA refused, garbage and half handshakes from non-members that
// leave the hosts serving their clients, the start-up checks of the certificate options, and
// a prompt SIGTERM after the peer was killed. Every wait is bounded; each case takes seconds.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>

#include <nlohmann/json.hpp>

#include "runtime/sync/placement.hpp"
#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;
using namespace tandem_process_test;

namespace {

uint16_t port_of(const std::string& member) { return static_cast<uint16_t>(std::stoi(member.substr(member.rfind(':') + 1))); }

// A plain TCP connection to 127.0.0.1:port (blocking, 3 s receive timeout), or -1.
int connect_to(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{3, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;  // the host may close first: that is allowed
    off += static_cast<size_t>(n);
  }
}

// Certificates for the test cluster, made with the `openssl` command (EC keys: fast).
struct Pki {
  const TempDir& dir;
  std::string ca = dir / "ca.pem", ca_key = dir / "ca.key";
  explicit Pki(const TempDir& d) : dir(d) {
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + ca_key + " -out " + ca +
       " -days 2 -subj /CN=tandem-test-cluster-ca");
  }
  struct Cert {
    std::string cert, key;
  };
  // A host certificate signed by the cluster's CA.
  Cert member(const std::string& name) const {
    Cert c{dir / (name + ".pem"), dir / (name + ".key")};
    sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + c.key + " -out " +
       (dir / (name + ".csr")) + " -subj /CN=" + name);
    sh("openssl x509 -req -in " + (dir / (name + ".csr")) + " -CA " + ca + " -CAkey " + ca_key +
       " -CAcreateserial -days 2 -out " + c.cert);
    return c;
  }
  // A certificate that signs itself: not from the cluster's CA.
  Cert self_signed(const std::string& name) const {
    Cert c{dir / (name + ".pem"), dir / (name + ".key")};
    sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + c.key + " -out " + c.cert +
       " -days 2 -subj /CN=" + name);
    return c;
  }
  void sh(const std::string& cmd) const {
    INFO(cmd << "\n" << slurp(dir / "openssl.log"));
    REQUIRE(std::system((cmd + " >>" + (dir / "openssl.log") + " 2>&1").c_str()) == 0);
  }
};

// One server host of a cluster: the process, its client URL and its --cluster-listen.
struct Host {
  std::unique_ptr<Process> process;
  std::string url, member, name;
};

std::vector<std::string> tls_args(const Pki::Cert& c, const std::string& ca) {
  return {"--cluster-cert", c.cert, "--cluster-key", c.key, "--cluster-ca", ca};
}

Host start_host(World& w, const std::string& name, const std::string& self, const std::vector<std::string>& others,
                const std::vector<std::string>& extra) {
  std::vector<std::string> args{kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir", w.dir / name,
                                "--secret-file", w.secret, "--cluster-listen", self, "--log-level", "debug"};
  for (const auto& o : others) args.insert(args.end(), {"--cluster-member", o});
  args.insert(args.end(), extra.begin(), extra.end());
  Host h{std::make_unique<Process>(args, w.dir / (name + ".log")), "", self, name};
  auto line = h.process->line();
  INFO(slurp(w.dir / (name + ".log")));
  REQUIRE(line);
  REQUIRE(line->rfind("listening on ws://127.0.0.1:", 0) == 0);
  h.url = line->substr(std::string("listening on ").size()) + "/sync";
  return h;
}

// A user whose channel `members` place on `member` (user0, user1, ...).
std::string user_on(const std::string& member, const std::vector<std::string>& members) {
  for (int i = 0;; ++i) {
    std::string u = "user" + std::to_string(i);
    if (tandem::sync_placement::owner_of(u, members) == member) return u;
  }
}

// A write of `user` through `host`, acknowledged by the server (so through the user's owner).
void write_acked(World& w, const Host& host, const std::string& user, const std::string& db, int id) {
  w.url = host.url;
  auto r = w.cmd(db, {"--timeout", "10s", "exec", "INSERT INTO todo(id, title) VALUES (?, ?)", std::to_string(id), db}, user);
  INFO("user " << user << " via " << host.name << ": " << r.out << slurp(w.dir / (db + ".log")));
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out.substr(0, r.out.find('\n')))["acknowledged"] == true);
}

// What a TLS client presenting `cert` (or none) gets from a cluster port: it sends one byte
// after the handshake (the host holds its BASP handshake back until a peer has spoken) and
// counts the bytes the host sends within 2 s (CAF's BASP handshake, if it was let through).
struct TlsProbe {
  bool handshake_ok = false;
  size_t app_bytes = 0;
};

TlsProbe tls_probe(uint16_t port, const std::string& ca, const Pki::Cert* cert) {
  TlsProbe out;
  std::unique_ptr<SSL_CTX, void (*)(SSL_CTX*)> ctx(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  REQUIRE(ctx);
  REQUIRE(SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) == 1);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (cert) {
    REQUIRE(SSL_CTX_use_certificate_chain_file(ctx.get(), cert->cert.c_str()) == 1);
    REQUIRE(SSL_CTX_use_PrivateKey_file(ctx.get(), cert->key.c_str(), SSL_FILETYPE_PEM) == 1);
  }
  int fd = connect_to(port);
  REQUIRE(fd >= 0);
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::unique_ptr<SSL, void (*)(SSL*)> ssl(SSL_new(ctx.get()), &SSL_free);
  SSL_set_fd(ssl.get(), fd);
  out.handshake_ok = SSL_connect(ssl.get()) == 1;
  if (out.handshake_ok && SSL_write(ssl.get(), "\0", 1) == 1) {
    // TLS 1.3: the host checks the client's certificate after the client's side finished,
    // so a refusal shows here, as an alert instead of data.
    char buf[4096];
    const auto until = std::chrono::steady_clock::now() + 2s;
    while (std::chrono::steady_clock::now() < until) {
      int n = SSL_read(ssl.get(), buf, sizeof buf);
      if (n <= 0) break;
      out.app_bytes += static_cast<size_t>(n);
    }
  }
  ERR_clear_error();
  ::close(fd);
  return out;
}

struct TwoHosts {
  World w;
  Pki pki{w.dir};
  std::string a_member = "127.0.0.1:" + std::to_string(free_port());
  std::string b_member = "127.0.0.1:" + std::to_string(free_port());
  Pki::Cert a_cert = pki.member("host-a"), b_cert = pki.member("host-b");
  Host a, b;
  explicit TwoHosts(const std::vector<std::string>& extra = {}) {
    auto with = [&](std::vector<std::string> args) {
      args.insert(args.end(), extra.begin(), extra.end());
      return args;
    };
    a = start_host(w, "host-a", a_member, {b_member}, with(tls_args(a_cert, pki.ca)));
    b = start_host(w, "host-b", b_member, {a_member}, with(tls_args(b_cert, pki.ca)));
  }
  std::vector<std::string> members() const { return {a_member, b_member}; }
  // Each host serves a user placed on the other one (through the TLS link) and its own.
  // Row ids are unique across the test: every device of a user receives every row.
  int next_id = 1;
  void both_serve(const std::string& tag) {
    for (const Host* via : {&a, &b})
      for (const auto& owner : {a_member, b_member}) {
        const std::string user = user_on(owner, members());
        write_acked(w, *via, user, user + "-" + tag + "-" + via->name + ".db", next_id++);
      }
  }
  bool running(Host& h) { return h.process->wait(0ms) == -1; }
};

}  // namespace

TEST_CASE("cluster: two hosts over TLS serve a user placed on the other host", "[process][cluster][tls]") {
  TwoHosts c;
  const std::string user = user_on(c.b_member, c.members());
  write_acked(c.w, c.a, user, "laptop.db", 1);  // through A to B's channel
  c.w.url = c.b.url;
  REQUIRE(c.w.cmd("phone.db", {"sync"}, user).code == 0);
  CHECK(c.w.rows("phone.db") == c.w.rows("laptop.db"));
  // Two hosts keep two copies (docs/cluster.md): the replica link runs over TLS too.
  CHECK(std::ifstream(c.w.dir / ("host-b/users/" + user + ".db")).good());
  CHECK(std::ifstream(c.w.dir / ("host-a/users/" + user + ".db")).good());
  CHECK_THAT(slurp(c.w.dir / "host-a.log"), Catch::Contains("tls=on"));
  // A TLS client with a member's certificate gets BASP bytes; without one it gets nothing.
  CHECK(tls_probe(port_of(c.b_member), c.pki.ca, &c.a_cert).app_bytes > 0);
  auto anonymous = tls_probe(port_of(c.b_member), c.pki.ca, nullptr);
  CHECK(anonymous.app_bytes == 0u);
}

TEST_CASE("cluster: a host whose certificate the CA did not sign is refused and the members keep serving",
          "[process][cluster][tls]") {
  TwoHosts c;
  auto rogue_cert = c.pki.self_signed("rogue");
  // Straight at the port: the TLS handshake is refused, no BASP byte comes back (or goes in).
  for (int i = 0; i < 3; ++i) {
    auto probe = tls_probe(port_of(c.a_member), c.pki.ca, &rogue_cert);
    CHECK(probe.app_bytes == 0u);
  }
  // A whole `tandem server` with that certificate (its own CA: its start-up check passes)
  // that names A as a member: it cannot reach A's directory, so A's users fail through it.
  const std::string rogue_member = "127.0.0.1:" + std::to_string(free_port());
  Host rogue = start_host(c.w, "rogue", rogue_member, {c.a_member}, tls_args(rogue_cert, rogue_cert.cert));
  const std::string user = user_on(c.a_member, {c.a_member, rogue_member});
  c.w.url = rogue.url;
  auto r = c.w.cmd("stolen.db", {"--timeout", "3s", "exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}, user);
  CHECK(r.code != 0);
  CHECK(nlohmann::json::parse(r.out.substr(0, r.out.find('\n')))["acknowledged"] == false);
  CHECK_FALSE(std::ifstream(c.w.dir / ("host-a/users/" + user + ".db")).good());
  CHECK(c.running(c.a));
  CHECK(c.running(c.b));
  c.both_serve("after");
}

TEST_CASE("cluster: garbage and half handshakes on the cluster port leave the hosts serving",
          "[process][cluster][tls]") {
  TwoHosts c({"--cluster-handshake-timeout", "1s"});
  c.both_serve("before");
  std::mt19937 rng(42);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (auto& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  const uint16_t a_port = port_of(c.a_member);
  // Random bytes, and BASP-shaped headers (operation, flags, a payload length, ids) with
  // random payloads, each on a fresh connection closed right after.
  for (int i = 0; i < 300; ++i) {
    int fd = connect_to(a_port);
    REQUIRE(fd >= 0);
    std::string bytes = random_bytes(1 + rng() % 2048);
    if (i % 2 == 1) {
      std::string header(32, '\0');
      header[0] = static_cast<char>(i % 8);  // server/client handshake, direct message, ...
      const uint32_t len = rng() % 4096;
      std::memcpy(&header[4], &len, 4);
      bytes = header + random_bytes(len);
    }
    send_all(fd, bytes);
    ::close(fd);
  }
  // Half handshakes held open: a TLS record header announcing a ClientHello and part of it;
  // plain TCP connections that say nothing.
  std::vector<int> held;
  for (int i = 0; i < 300; ++i) {
    int fd = connect_to(a_port);
    REQUIRE(fd >= 0);
    if (i % 2 == 0) send_all(fd, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + random_bytes(40));
    held.push_back(fd);
  }
  CHECK(c.running(c.a));
  c.both_serve("held");  // A still serves, and still links to B, while they are held
  // A closes every one of them by itself: the oldest at once beyond 64 unfinished handshakes,
  // the others at the 1 s deadline (each recv waits at most 3 s).
  size_t closed_by_host = 0;
  for (int fd : held) {
    char byte;
    ssize_t n = ::recv(fd, &byte, 1, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) ++closed_by_host;
  }
  CHECK(closed_by_host == held.size());
  CHECK_THAT(slurp(c.w.dir / "host-a.log"), Catch::Contains("handshake_refused") && Catch::Contains("handshake timeout") &&
                                                Catch::Contains("too many pending"));
  for (int fd : held) ::close(fd);
  CHECK(c.running(c.a));
  CHECK(c.running(c.b));
  c.both_serve("after");
}

TEST_CASE("cluster: a host whose peer was killed stops on SIGTERM within seconds with status 0",
          "[process][cluster][tls]") {
  TwoHosts c;
  c.both_serve("before");  // the TLS link between A and B is up
  c.b.process->signal(SIGKILL);
  REQUIRE(c.b.process->wait(10s) == 128 + SIGKILL);
  const std::string a_user = user_on(c.a_member, c.members());
  write_acked(c.w, c.a, a_user, "own.db", c.next_id++);  // A still serves its own users
  const auto asked = std::chrono::steady_clock::now();
  c.a.process->signal(SIGTERM);
  CHECK(c.a.process->wait(10s) == 0);
  CHECK(std::chrono::steady_clock::now() - asked < 3s);
}

TEST_CASE("cluster: the certificate options are checked at start-up with a clear error and status 2",
          "[process][cluster][tls]") {
  World w;
  Pki pki(w.dir);
  auto good = pki.member("good");
  auto rogue = pki.self_signed("rogue");
  std::ofstream(w.dir / "garbage.pem") << "not a certificate\n";
  const std::string member = "127.0.0.1:" + std::to_string(free_port());
  int attempt = 0;
  auto start = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir", w.dir / "srv",
                                  "--secret-file", w.secret, "--cluster-listen", member};
    args.insert(args.end(), extra.begin(), extra.end());
    const std::string log = w.dir / ("start-" + std::to_string(++attempt) + ".log");
    auto r = run(args, log);
    return std::make_pair(r.code, slurp(log));
  };
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{}, "--cluster-insecure"},  // neither TLS nor the explicit opt-out
      {{"--cluster-cert", good.cert, "--cluster-key", good.key}, "all three"},
      {{"--cluster-cert", good.cert, "--cluster-key", good.key, "--cluster-ca", pki.ca, "--cluster-insecure"}, "contradicts"},
      {{"--cluster-cert", w.dir / "missing.pem", "--cluster-key", good.key, "--cluster-ca", pki.ca}, "cannot be read"},
      {{"--cluster-cert", w.dir / "garbage.pem", "--cluster-key", good.key, "--cluster-ca", pki.ca}, "not a PEM certificate"},
      {{"--cluster-cert", good.cert, "--cluster-key", rogue.key, "--cluster-ca", pki.ca}, "is not the key of"},
      {{"--cluster-cert", good.cert, "--cluster-key", good.key, "--cluster-ca", w.dir / "garbage.pem"}, "no PEM CA"},
      {{"--cluster-cert", rogue.cert, "--cluster-key", rogue.key, "--cluster-ca", pki.ca}, "is not signed by --cluster-ca"},
  };
  for (const auto& k : cases) {
    auto [code, log] = start(k.args);
    INFO(log);
    CHECK(code == 2);
    CHECK_THAT(log, Catch::Contains(k.says));
  }
  // An encrypted key is refused instead of prompting for its passphrase.
  pki.sh("openssl pkey -in " + good.key + " -aes256 -passout pass:secret -out " + (w.dir / "enc.key"));
  auto [code, log] = start({"--cluster-cert", good.cert, "--cluster-key", w.dir / "enc.key", "--cluster-ca", pki.ca});
  INFO(log);
  CHECK(code == 2);
  CHECK_THAT(log, Catch::Contains("not an unencrypted PEM private key"));
  // Certificate options without a cluster port are an error too.
  auto lone = run({kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir", w.dir / "srv", "--secret-file", w.secret,
                   "--cluster-insecure"},
                  w.dir / "lone.log");
  CHECK(lone.code == 2);
}
