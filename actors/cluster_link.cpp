// The cluster port's transport, and why it is not caf-openssl's own middleman actor.
//
// caf-openssl (CAF 0.17) wraps BASP in TLS and, with certificate, key and CA set, refuses
// every peer whose certificate the CA did not sign: nothing such a peer sends reaches the
// BASP parser. Used as shipped, three things went wrong (measured on loopback, 2 cores):
//  1. No handshake deadline: a connection that stops half-way through the TLS handshake,
//     or says nothing, is held for ever with its socket and an OpenSSL context (caf-openssl
//     builds one per connection): ~70 KB and one descriptor each (2,000 held: RSS 20 -> 110
//     MB); enough of them exhaust the descriptors the client port and the user files need.
//  2. Each unfinished accepted handshake spins the multiplexer thread: BASP queues its server
//     handshake at once, the stream asks to write, and caf-openssl answers every writable
//     event with "wrote 0 bytes" while SSL_accept waits for the peer (10 silent connections:
//     ~45% of a core, for as long as they stay).
//  3. OpenSSL's per-thread error queue is left filled after a failed handshake, and every
//     connection shares the multiplexer thread: the next read or write on the healthy member
//     link saw the stale error and dropped the link (20 connections of one garbage byte each
//     dropped it, every time; plain connect-and-close did not).
//
// So the cluster port is served by a middleman actor of our own (GuardedMiddleman), a
// subclass of CAF's middleman_actor_impl that CAF's BASP broker uses exactly like
// caf-openssl's, with the same caf::openssl::session per connection (the same TLS setup and
// verification), and:
//  - a HandshakeGuard that registers each connection from accept (or connect) until the
//    peer's first bytes arrive through TLS, i.e. the handshake is done and the peer is
//    authenticated. One still pending after `handshake_timeout` is shut down (shutdown(2):
//    the multiplexer sees end-of-file and CAF closes it as if the peer had left), and at most
//    `max_pending_handshakes` inbound ones are pending at once (the oldest is shut down to
//    make room): a non-member holds at most that many descriptors, each for at most the
//    timeout (2,000 held: RSS stays ~26 MB, descriptors ~80);
//  - an accepted connection holds back BASP's writes until the peer has spoken (GuardedScribe);
//  - every TLS call starts and ends with an empty error queue (GuardedTls).
//
// Threads: the doorman and scribes run on CAF's multiplexer thread, the middleman actor on
// its own thread, the guard's sweep on a thread of its own, and a scribe may be destroyed on
// any of them: the guard's table is behind a mutex. A table entry exists only while its
// connection's socket is open (the TLS policy removes it in its destructor, which runs
// before CAF's event_handler closes the socket), so a shutdown(2) never hits a reused
// descriptor.
#include "actors/cluster_link.hpp"

#include <sys/socket.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <caf/actor_registry.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/detail/socket_guard.hpp>
#include <caf/function_view.hpp>
#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor_impl.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/doorman_impl.hpp>
#include <caf/io/network/stream_impl.hpp>
#include <caf/io/scribe.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/session.hpp>
#include <openssl/err.h>
#include <spdlog/spdlog.h>

namespace tandem::actors {
namespace {

namespace net_io = caf::io::network;
using net_io::native_socket;
using net_io::rw_state;

// The registry key of the cluster's middleman actor (the directory asks for it by name).
const caf::atom_value kClusterMiddleman = caf::atom("tclusmm");

std::string peer_of(native_socket fd) {
  auto addr = net_io::remote_addr_of_fd(fd);
  auto port = net_io::remote_port_of_fd(fd);
  return (addr ? *addr : std::string("?")) + ":" + (port ? std::to_string(*port) : std::string("?"));
}

// Connections whose TLS handshake has not finished (see the file comment).
class HandshakeGuard {
 public:
  HandshakeGuard(std::chrono::milliseconds timeout, size_t max_pending) : timeout_(timeout), max_pending_(max_pending) {}

  // A connection's handshake begins. An inbound one beyond max_pending shuts the oldest
  // pending inbound one down first.
  void begin(native_socket fd, bool inbound) {
    std::lock_guard<std::mutex> lock(mu_);
    if (inbound) {
      size_t count = 0;
      auto oldest = pending_.end();
      for (auto it = pending_.begin(); it != pending_.end(); ++it) {
        if (!it->second.inbound || it->second.shut) continue;
        ++count;
        if (oldest == pending_.end() || it->second.since < oldest->second.since) oldest = it;
      }
      if (count >= max_pending_ && oldest != pending_.end()) shut(oldest->first, oldest->second, "too many pending");
    }
    pending_[fd] = Entry{std::chrono::steady_clock::now(), inbound, false};
  }

  // The handshake finished, or the connection is going away. Idempotent.
  void end(native_socket fd) {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.erase(fd);
  }

  // Shuts down the connections pending for longer than the timeout; returns how many.
  size_t expire() {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    size_t n = 0;
    for (auto& [fd, e] : pending_)
      if (!e.shut && now - e.since >= timeout_) {
        shut(fd, e, "handshake timeout");
        ++n;
      }
    return n;
  }

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  struct Entry {
    std::chrono::steady_clock::time_point since;
    bool inbound = true;
    bool shut = false;
  };

  // mu_ held; the entry proves the socket is still open and CAF's.
  void shut(native_socket fd, Entry& e, const char* why) {
    spdlog::info("hop=server.cluster handshake_refused peer={} inbound={} reason=\"{}\"", peer_of(fd), e.inbound, why);
    ::shutdown(fd, SHUT_RDWR);
    e.shut = true;
  }

  const std::chrono::milliseconds timeout_;
  const size_t max_pending_;
  std::mutex mu_;
  std::map<native_socket, Entry> pending_;
};

class GuardedScribe;

// caf-openssl's session as a stream policy, reporting to the guard and to its scribe when the
// peer's first bytes arrive (the handshake is done: both certificates were verified).
class GuardedTls {
 public:
  GuardedTls(caf::openssl::session_ptr session, std::shared_ptr<HandshakeGuard> guard, native_socket fd,
             GuardedScribe* owner)
      : session_(std::move(session)), guard_(std::move(guard)), fd_(fd), owner_(owner) {}
  GuardedTls(GuardedTls&&) = default;
  GuardedTls& operator=(GuardedTls&&) = delete;
  ~GuardedTls() {
    if (guard_ && pending_) guard_->end(fd_);
  }

  // OpenSSL keeps failures in a per-thread error queue that SSL_get_error consults, and
  // caf-openssl leaves it filled after a failed connection (it drains it only to log): one
  // peer's garbage made the member link's next call look failed (file comment, 3). Each
  // call therefore starts and ends with an empty queue.
  rw_state read_some(size_t& result, native_socket fd, void* buf, size_t len);
  rw_state write_some(size_t& result, native_socket fd, const void* buf, size_t len) {
    ERR_clear_error();
    auto st = session_->write_some(result, fd, buf, len);
    ERR_clear_error();
    return st;
  }
  bool must_read_more(native_socket fd, size_t threshold) { return session_->must_read_more(fd, threshold); }

 private:
  caf::openssl::session_ptr session_;
  std::shared_ptr<HandshakeGuard> guard_;
  native_socket fd_;
  GuardedScribe* owner_;  // owns the stream that owns this policy
  bool pending_ = true;
};

// A BASP connection over GuardedTls (the scribe interface CAF's brokers drive).
//
// An accepted connection holds back what BASP writes (its server handshake, at once) until the
// peer's first bytes arrive, or the multiplexer thread spins (file comment, 2). The connecting side sends BASP's client handshake first, so holding back
// the accepting side's cannot deadlock; a connection we opened writes at once (and may spin
// for the milliseconds a member takes to answer, at most handshake_timeout).
class GuardedScribe final : public caf::io::scribe {
 public:
  GuardedScribe(net_io::default_multiplexer& mpx, native_socket fd, caf::openssl::session_ptr session,
                std::shared_ptr<HandshakeGuard> guard, bool inbound)
      : scribe(net_io::conn_hdl_from_socket(fd)),
        holding_(inbound),
        stream_(mpx, fd, std::move(session), std::move(guard), fd, this) {}

  void configure_read(caf::io::receive_policy::config config) override {
    stream_.configure_read(config);
    if (!launched_) {
      launched_ = true;
      stream_.start(this);
      // Drives SSL_connect even before there is anything to write (SSL_accept is driven by
      // the peer's bytes).
      if (!holding_) stream_.force_empty_write(this);
    }
  }
  // The peer's first bytes arrived through TLS: what was held back may go.
  void release_writes() {
    if (!holding_) return;
    holding_ = false;
    if (flush_wanted_) stream_.flush(this);
    flush_wanted_ = false;
  }
  void ack_writes(bool enable) override { stream_.ack_writes(enable); }
  std::vector<char>& wr_buf() override { return stream_.wr_buf(); }
  std::vector<char>& rd_buf() override { return stream_.rd_buf(); }
  void graceful_shutdown() override {
    stream_.graceful_shutdown();
    detach(&stream_.backend(), false);
  }
  void flush() override {
    if (holding_) flush_wanted_ = true;
    else stream_.flush(this);
  }
  std::string addr() const override {
    auto a = net_io::remote_addr_of_fd(stream_.fd());
    return a ? *a : std::string();
  }
  uint16_t port() const override {
    auto p = net_io::remote_port_of_fd(stream_.fd());
    return p ? *p : 0;
  }
  void add_to_loop() override { stream_.activate(this); }
  void remove_from_loop() override { stream_.passivate(); }

 private:
  bool launched_ = false;
  bool holding_;
  bool flush_wanted_ = false;
  net_io::stream_impl<GuardedTls> stream_;
};

rw_state GuardedTls::read_some(size_t& result, native_socket fd, void* buf, size_t len) {
  ERR_clear_error();
  auto st = session_->read_some(result, fd, buf, len);
  ERR_clear_error();
  if (pending_ && st == rw_state::success && result > 0) {
    pending_ = false;
    guard_->end(fd_);
    owner_->release_writes();
  }
  return st;
}

// The cluster port's acceptor: every accepted socket becomes a GuardedScribe.
class GuardedDoorman final : public net_io::doorman_impl {
 public:
  GuardedDoorman(net_io::default_multiplexer& mpx, native_socket fd, std::shared_ptr<HandshakeGuard> guard)
      : doorman_impl(mpx, fd), guard_(std::move(guard)) {}

  bool new_connection() override {
    if (detached()) return false;  // the broker let go of this acceptor; the loop has yet to notice
    auto& mpx = acceptor_.backend();
    const native_socket fd = acceptor_.accepted_socket();
    caf::detail::socket_guard owner{fd};
    net_io::nonblocking(fd, true);
    guard_->begin(fd, true);
    ERR_clear_error();
    auto session = caf::openssl::make_session(parent()->system(), fd, true);
    ERR_clear_error();
    if (!session) {
      guard_->end(fd);
      return false;
    }
    auto scribe = caf::make_counted<GuardedScribe>(mpx, fd, std::move(session), guard_, true);
    owner.release();
    auto hdl = scribe->hdl();
    parent()->add_scribe(std::move(scribe));
    return doorman::new_connection(&mpx, hdl);
  }

 private:
  std::shared_ptr<HandshakeGuard> guard_;
};

// CAF's middleman actor (publish, connect, the cache of connected nodes) with the guarded
// TLS transport underneath.
class GuardedMiddleman final : public caf::io::middleman_actor_impl {
 public:
  GuardedMiddleman(caf::actor_config& cfg, caf::actor broker, std::shared_ptr<HandshakeGuard> guard)
      : middleman_actor_impl(cfg, std::move(broker)), guard_(std::move(guard)) {}

  const char* name() const override { return "tandem.cluster_middleman"; }

 protected:
  caf::expected<caf::io::scribe_ptr> connect(const std::string& host, uint16_t port) override {
    auto fd = net_io::new_tcp_connection(host, port);
    if (!fd) return std::move(fd.error());
    caf::detail::socket_guard owner{*fd};
    net_io::nonblocking(*fd, true);
    guard_->begin(*fd, false);
    ERR_clear_error();
    auto session = caf::openssl::make_session(system(), *fd, false);
    ERR_clear_error();
    if (!session) {
      guard_->end(*fd);
      return caf::make_error(caf::sec::cannot_connect_to_node, "TLS with " + host + ":" + std::to_string(port) + " failed");
    }
    caf::io::scribe_ptr scribe = caf::make_counted<GuardedScribe>(mpx(), *fd, std::move(session), guard_, false);
    owner.release();
    return scribe;
  }

  caf::expected<caf::io::doorman_ptr> open(uint16_t port, const char* addr, bool reuse) override {
    auto fd = net_io::new_tcp_acceptor_impl(port, addr, reuse);
    if (!fd) return std::move(fd.error());
    return caf::io::doorman_ptr{caf::make_counted<GuardedDoorman>(mpx(), *fd, guard_)};
  }

 private:
  net_io::default_multiplexer& mpx() { return static_cast<net_io::default_multiplexer&>(system().middleman().backend()); }

  std::shared_ptr<HandshakeGuard> guard_;
};

// Sweeps the guard every quarter of its timeout until the guard is gone.
void sweep_until_gone(std::weak_ptr<HandshakeGuard> weak) {
  for (;;) {
    std::chrono::milliseconds period{250};
    {
      auto guard = weak.lock();
      if (!guard) return;
      period = std::max(std::chrono::milliseconds(10), guard->timeout() / 4);
      guard->expire();
    }
    std::this_thread::sleep_for(period);
  }
}

}  // namespace

Status check_cluster_link(const ClusterLinkConfig& link) {
  const auto& t = link.tls;
  const int given = !t.cert.empty() + !t.key.empty() + !t.ca.empty();
  if (given == 0) {
    if (link.insecure) return Status::Ok();
    return Status::InvalidArgument(
        "the cluster port needs TLS: give --cluster-cert, --cluster-key and --cluster-ca "
        "(or --cluster-insecure, for tests only: anyone who reaches the port can crash the host)");
  }
  if (link.insecure) return Status::InvalidArgument("--cluster-insecure contradicts --cluster-cert/--cluster-key/--cluster-ca");
  if (given != 3) return Status::InvalidArgument("--cluster-cert, --cluster-key and --cluster-ca go together (all three)");
  if (link.handshake_timeout.count() <= 0 || link.max_pending_handshakes == 0)
    return Status::InvalidArgument("the cluster handshake timeout and pending limit must be positive");
  return net::check_cluster_tls(t);
}

void configure_cluster_link(caf::actor_system_config& cfg, const ClusterLinkConfig& link) {
  cfg.load<caf::io::middleman>();
  // BASP between this host and the others: a peer that goes silent is noticed in seconds.
  cfg.set("middleman.heartbeat-interval", caf::timespan{std::chrono::seconds(1)});
  cfg.set("middleman.connection-timeout", caf::timespan{std::chrono::seconds(5)});
  if (link.tls.cert.empty()) return;
  // The module makes caf::openssl::session work (it reads these fields); its own middleman
  // actor stays unused.
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = link.tls.cert;
  cfg.openssl_key = link.tls.key;
  cfg.openssl_cafile = link.tls.ca;
}

caf::io::middleman_actor start_cluster_link(caf::actor_system& system, const ClusterLinkConfig& link) {
  if (!system.has_openssl_manager()) return {};
  auto guard = std::make_shared<HandshakeGuard>(link.handshake_timeout, link.max_pending_handshakes);
  auto broker = system.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
  auto mm = system.spawn<GuardedMiddleman, caf::detached + caf::hidden>(broker, guard);
  system.registry().put(kClusterMiddleman, mm);
  std::thread(sweep_until_gone, std::weak_ptr<HandshakeGuard>(guard)).detach();
  return mm;
}

caf::expected<uint16_t> publish_directory(caf::actor_system& system, const directory_actor& directory, uint16_t port,
                                          const std::string& host) {
  auto mm = cluster_middleman(system);
  auto publish = caf::make_function_view(mm, caf::infinite);
  return publish(caf::publish_atom::value, port, caf::actor_cast<caf::strong_actor_ptr>(directory),
                 system.message_types(directory), host, true);
}

caf::io::middleman_actor cluster_middleman(caf::actor_system& system) {
  auto mm = system.registry().get<caf::io::middleman_actor>(kClusterMiddleman);
  return mm ? mm : system.middleman().actor_handle();
}

}  // namespace tandem::actors
