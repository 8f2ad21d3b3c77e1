// Boost.Beast implementation of websocket.hpp.
//
// Design: one WsConnection<Stream> per socket, for Stream = plain TCP or TLS over TCP. All
// of a connection's state is touched only on its strand: send() and close() post to it.
// At most one async_read and one async write (a frame, or the close frame) are outstanding,
// as Beast requires. The read loop runs until the stream reports an error (including the
// normal end of a closing handshake); that is the one place where `finish` runs the
// Handler's on_close, so it runs exactly once. A write error cancels the socket, which
// makes the read fail and so also ends in `finish`.
//
// Timeouts: during the handshakes the TCP stream's own expiry bounds each step; after the
// WebSocket upgrade the TCP expiry is switched off and Beast's websocket timeout takes
// over (idle timeout with keep-alive pings, and the closing handshake's timeout).
#include "runtime/net/websocket.hpp"

#include <algorithm>
#include <atomic>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <openssl/ssl.h>

namespace tandem::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

struct EventLoop::Impl {
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{asio::make_work_guard(ioc)};
  std::vector<std::thread> threads;
  std::once_flag stopped;
};

EventLoop::EventLoop(int threads) : impl_(std::make_unique<Impl>()) {
  if (threads < 1) threads = 1;
  for (int i = 0; i < threads; ++i) impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

EventLoop::~EventLoop() { stop(); }

void EventLoop::stop() {
  std::call_once(impl_->stopped, [this] {
    impl_->work.reset();
    impl_->ioc.stop();
    for (auto& t : impl_->threads) {
      if (t.get_id() == std::this_thread::get_id()) t.detach();  // stop() from a handler
      else if (t.joinable()) t.join();
    }
  });
}

namespace {

std::atomic<uint64_t> next_connection_id{1};

std::string endpoint_string(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  return (addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string()) + ":" + std::to_string(ep.port());
}

template <class Stream>
constexpr bool is_tls_v = std::is_same_v<Stream, websocket::stream<beast::ssl_stream<beast::tcp_stream>>>;

// Registry of a server's live connections, shared with them so that a connection can
// leave it after the Server object is gone.
struct Registry {
  std::mutex mu;
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> live;
  bool stopped = false;

  bool add(uint64_t id, const std::shared_ptr<Connection>& c) {
    std::lock_guard<std::mutex> lock(mu);
    if (stopped) return false;
    live[id] = c;
    return true;
  }
  void remove(uint64_t id) {
    std::lock_guard<std::mutex> lock(mu);
    live.erase(id);
  }
};

Status status_from(const beast::error_code& ec, const std::string& phase, size_t max_frame) {
  if (ec == websocket::error::closed) return Status::Unavailable("closed");
  if (ec == beast::error::timeout) return Status::Unavailable(phase + ": timed out (idle or unresponsive peer)");
  if (ec == websocket::error::message_too_big || ec == http::error::header_limit ||
      ec == http::error::body_limit || ec == http::error::buffer_overflow)
    return Status::ResourceExhausted(phase + ": frame larger than " + std::to_string(max_frame) + " bytes");
  if (ec == asio::error::operation_aborted) return Status::Unavailable(phase + " aborted");
  if (ec == asio::error::eof || ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated)
    return Status::Unavailable(phase + ": connection closed by peer");
  return Status::Unavailable(phase + ": " + ec.message());
}

template <class Stream>
class WsConnection : public Connection, public std::enable_shared_from_this<WsConnection<Stream>> {
 public:
  using Self = WsConnection<Stream>;

  template <class... Args>
  WsConnection(const TransportOptions& options, std::shared_ptr<Registry> registry, Args&&... args)
      : ws_(std::forward<Args>(args)...), options_(options), registry_(std::move(registry)),
        id_(next_connection_id.fetch_add(1)) {}

  ~WsConnection() override = default;

  Stream& ws() { return ws_; }
  void set_peer(std::string peer, bool loopback = false) {
    peer_ = std::move(peer);
    peer_loopback_ = loopback;
  }
  void set_http(HttpFn http, HttpAsyncFn http_async, std::string websocket_path) {
    http_ = std::move(http);
    http_async_ = std::move(http_async);
    websocket_path_ = std::move(websocket_path);
  }
  void keep_context(std::shared_ptr<ssl::context> tls) { tls_ = std::move(tls); }

  // Server side: TLS handshake (if any), HTTP upgrade request, WebSocket accept.
  void accept(std::shared_ptr<ssl::context> tls, Server::AcceptFn on_accept) {
    tls_ = std::move(tls);
    on_accept_ = std::move(on_accept);
    beast::get_lowest_layer(ws_).expires_after(options_.handshake_timeout);
    if constexpr (is_tls_v<Stream>) {
      ws_.next_layer().async_handshake(ssl::stream_base::server,
                                       [self = this->shared_from_this()](beast::error_code ec) {
                                         if (ec) return self->fail_handshake(ec, "TLS handshake");
                                         self->read_upgrade();
                                       });
    } else {
      read_upgrade();
    }
  }

  // Client side: resolve, connect, TLS handshake (if any), WebSocket handshake.
  void connect(const Url& url, const ClientOptions& options, Handler handler, ConnectFn done) {
    url_ = url;
    handler_ = std::move(handler);
    done_ = std::move(done);
    auto resolver = std::make_shared<tcp::resolver>(ws_.get_executor());
    beast::get_lowest_layer(ws_).expires_after(options_.handshake_timeout);
    resolver->async_resolve(url_.host, std::to_string(url_.port),
                            [self = this->shared_from_this(), resolver](beast::error_code ec,
                                                                        tcp::resolver::results_type results) {
                              if (ec) return self->fail_connect(ec, "resolving " + self->url_.host);
                              beast::get_lowest_layer(self->ws_).async_connect(
                                  results, [self](beast::error_code ec2, const tcp::endpoint& ep) {
                                    if (ec2) return self->fail_connect(ec2, "connecting");
                                    self->peer_ = endpoint_string(ep);
                                    beast::error_code ignored;
                                    beast::get_lowest_layer(self->ws_).socket().set_option(tcp::no_delay(true), ignored);
                                    self->client_tls_handshake();
                                  });
                            });
    (void)options;
  }

  bool send(std::string frame) override {
    if (!open_.load()) return false;
    const size_t n = frame.size();
    if (queued_bytes_.fetch_add(n) + n > options_.max_queued_bytes) {
      queued_bytes_.fetch_sub(n);
      close(kClosePolicyViolation, "send queue limit exceeded (peer too slow)");
      return false;
    }
    asio::post(ws_.get_executor(), [self = this->shared_from_this(), f = std::move(frame)]() mutable {
      self->enqueue(std::move(f));
    });
    return true;
  }

  void close(uint16_t code, const std::string& reason) override {
    if (!open_.exchange(false)) return;
    asio::post(ws_.get_executor(), [self = this->shared_from_this(), code, reason] {
      self->close_requested_ = true;
      self->close_reason_ = websocket::close_reason(static_cast<websocket::close_code>(code), reason.substr(0, 120));
      if (!self->writing_) self->start_close();
    });
  }

  void abort() override {
    open_.store(false);
    asio::post(ws_.get_executor(), [self = this->shared_from_this()] {
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
      beast::get_lowest_layer(self->ws_).socket().close(ignored);
    });
  }

  void set_timer(std::chrono::milliseconds after, std::function<void()> fn) override {
    asio::post(ws_.get_executor(), [self = this->shared_from_this(), after, fn = std::move(fn)]() mutable {
      if (self->finished_) return;
      auto timer = std::make_shared<asio::steady_timer>(self->ws_.get_executor(), after);
      self->timers_.push_back(timer);
      timer->async_wait([self, timer, fn = std::move(fn)](beast::error_code ec) {
        auto& timers = self->timers_;
        timers.erase(std::remove(timers.begin(), timers.end(), timer), timers.end());
        if (!ec && !self->finished_) fn();
      });
    });
  }

  bool is_open() const override { return open_.load(); }
  size_t queued_bytes() const override { return queued_bytes_.load(); }
  const std::string& peer() const override { return peer_; }
  uint64_t id() const override { return id_; }

 private:
  void read_upgrade() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(0);
    http::async_read(ws_.next_layer(), http_buffer_, *parser_,
                     [self = this->shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->fail_handshake(ec, "reading the upgrade request");
                       if (!websocket::is_upgrade(self->parser_->get())) return self->answer_plain_http();
                       if (!self->upgrade_path_allowed()) {
                         HttpResponse refused;
                         refused.status = 404;
                         refused.content_type = "text/plain";
                         refused.body = "tandem sync: WebSocket on " + self->websocket_path_ + " only\n";
                         return self->write_http(std::move(refused));
                       }
                       self->configure_websocket(beast::role_type::server);
                       self->ws_.async_accept(self->parser_->get(), [self](beast::error_code ec2) {
                         if (ec2) return self->fail_handshake(ec2, "WebSocket handshake");
                         self->parser_.reset();
                         self->established_server();
                       });
                     });
  }

  bool upgrade_path_allowed() const {
    if (websocket_path_.empty()) return true;
    const auto target = parser_->get().target();
    const auto path = target.substr(0, target.find('?'));
    return path == websocket_path_;
  }

  // A plain HTTP request (a browser, a health check, a scrape): the server's HttpAsyncFn or
  // HttpFn answers it, or without either 426 tells the client to upgrade. Either way the
  // connection closes after the answer.
  void answer_plain_http() {
    if (!http_ && !http_async_) return write_http(std::nullopt);
    const auto& req = parser_->get();
    HttpRequest r;
    const auto method = req.method_string();
    const auto target = req.target();
    r.method.assign(method.data(), method.size());
    r.target.assign(target.data(), target.size());
    if (auto it = req.find(http::field::authorization); it != req.end())
      r.authorization.assign(it->value().data(), it->value().size());
    r.peer = peer_;
    r.peer_loopback = peer_loopback_;
    if (!http_async_) return write_http(http_(r));
    // The connection stays alive through the reply: it holds the only other reference.
    http_async_(r, [self = this->shared_from_this()](HttpResponse answer) {
      asio::post(self->ws_.get_executor(),
                 [self, answer = std::move(answer)]() mutable { self->write_http(std::move(answer)); });
    });
  }

  // Writes `answer` (none: 426 Upgrade Required) and closes the connection.
  void write_http(std::optional<HttpResponse> answer) {
    std::shared_ptr<http::response<http::string_body>> res;
    if (answer) {
      res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(answer->status), 11);
      res->set(http::field::content_type, answer->content_type);
      if (!answer->www_authenticate.empty()) res->set(http::field::www_authenticate, answer->www_authenticate);
      res->body() = std::move(answer->body);
    } else {
      res = std::make_shared<http::response<http::string_body>>(http::status::upgrade_required, 11);
      res->set(http::field::upgrade, "websocket");
      res->set(http::field::content_type, "text/plain");
      res->body() = "tandem sync: this endpoint speaks WebSocket (see docs/protocol.md)\n";
    }
    res->set(http::field::connection, "close");
    res->set(http::field::server, "tandem-server");
    res->prepare_payload();
    http::async_write(ws_.next_layer(), *res, [self = this->shared_from_this(), res](beast::error_code, size_t) {
      beast::error_code ignored;
      beast::get_lowest_layer(self->ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  void configure_websocket(beast::role_type role) {
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout t{};
    t.handshake_timeout = options_.handshake_timeout;
    t.idle_timeout = options_.idle_timeout;
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.read_message_max(options_.max_frame_bytes);
    ws_.auto_fragment(false);
    ws_.binary(true);
    if (role == beast::role_type::client) {
      ws_.set_option(websocket::stream_base::decorator(
          [](websocket::request_type& req) { req.set(http::field::user_agent, "tandem-client"); }));
    } else {
      ws_.set_option(websocket::stream_base::decorator(
          [](websocket::response_type& res) { res.set(http::field::server, "tandem-server"); }));
    }
  }

  void established_server() {
    auto self = this->shared_from_this();
    if (registry_ && !registry_->add(id_, self)) {
      open_.store(false);
      close_requested_ = true;
      close_reason_ = websocket::close_reason(websocket::close_code::going_away, "server stopping");
      start_close();
      do_read();
      return;
    }
    handler_ = on_accept_(self);
    on_accept_ = nullptr;
    do_read();
  }

  void client_tls_handshake() {
    if constexpr (is_tls_v<Stream>) {
      if (!SSL_set_tlsext_host_name(ws_.next_layer().native_handle(), url_.host.c_str()))
        return fail_connect(beast::error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category()),
                            "TLS server name");
      ws_.next_layer().async_handshake(ssl::stream_base::client, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) return self->fail_connect(ec, "TLS handshake");
        self->client_ws_handshake();
      });
    } else {
      client_ws_handshake();
    }
  }

  void client_ws_handshake() {
    configure_websocket(beast::role_type::client);
    const bool default_port = url_.port == (url_.tls ? 443 : 80);
    const std::string host = default_port ? url_.host : url_.host + ":" + std::to_string(url_.port);
    ws_.async_handshake(host, url_.target, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->fail_connect(ec, "WebSocket handshake");
      auto done = std::move(self->done_);
      self->done_ = nullptr;
      done(std::shared_ptr<Connection>(self));
      self->do_read();
    });
  }

  void fail_handshake(const beast::error_code&, const char*) {
    // Nothing was established: no handler to tell. Dropping the socket is the answer to
    // garbage bytes, a half-open connection or a failed TLS handshake.
    open_.store(false);
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  void fail_connect(const beast::error_code& ec, const std::string& phase) {
    open_.store(false);
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    auto done = std::move(done_);
    done_ = nullptr;
    handler_ = {};
    if (done) done(status_from(ec, phase + " " + url_.host + ":" + std::to_string(url_.port), options_.max_frame_bytes));
  }

  void do_read() {
    ws_.async_read(read_buffer_, [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(const beast::error_code& ec) {
    if (ec) return finish(ec);
    if (!ws_.got_binary()) {
      read_buffer_.consume(read_buffer_.size());
      if (!close_requested_) {
        open_.store(false);
        close_requested_ = true;
        close_reason_ = websocket::close_reason(websocket::close_code::unknown_data, "text frames are not part of the protocol");
        if (!writing_) start_close();
      }
      return do_read();
    }
    std::string frame = beast::buffers_to_string(read_buffer_.data());
    read_buffer_.consume(read_buffer_.size());
    if (!close_requested_ && handler_.on_frame) handler_.on_frame(std::move(frame));
    do_read();
  }

  void enqueue(std::string frame) {
    if (close_requested_ || finished_) {
      queued_bytes_.fetch_sub(frame.size());
      return;
    }
    queue_.push_back(std::move(frame));
    if (!writing_) do_write();
  }

  void do_write() {
    if (queue_.empty()) {
      if (close_requested_ && !close_started_) start_close();
      return;
    }
    writing_ = true;
    // The frame being written leaves the queue, so that dropping the queue (a close, a read
    // error) never touches the buffer Beast is still writing from.
    current_ = std::move(queue_.front());
    queue_.pop_front();
    ws_.async_write(asio::buffer(current_), [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->writing_ = false;
      self->queued_bytes_.fetch_sub(self->current_.size());
      self->current_.clear();
      if (ec) return self->drop_queue_and_cancel();
      self->do_write();
    });
  }

  void start_close() {
    if (close_started_ || finished_) return;
    close_started_ = true;
    drop_queue();
    writing_ = true;
    ws_.async_close(close_reason_, [self = this->shared_from_this()](beast::error_code ec) {
      self->writing_ = false;
      if (ec) self->drop_queue_and_cancel();
      // Otherwise the pending read completes when the peer answers the close frame (or
      // Beast's close timeout expires), and that read's error runs finish().
    });
  }

  void drop_queue() {
    for (const auto& f : queue_) queued_bytes_.fetch_sub(f.size());
    queue_.clear();
  }

  void drop_queue_and_cancel() {
    drop_queue();
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().cancel(ignored);
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

  void finish(const beast::error_code& ec) {
    if (finished_) return;
    finished_ = true;
    open_.store(false);
    drop_queue();
    Status why;
    if (close_started_ && (ec == websocket::error::closed || ec == beast::error::timeout)) {
      why = Status::Unavailable("closed here: " + std::to_string(close_reason_.code) + " " +
                                std::string(close_reason_.reason.c_str()));
    } else if (ec == websocket::error::closed) {
      const auto& r = ws_.reason();
      why = Status::Unavailable("closed by peer: " + std::to_string(r.code) +
                                (r.reason.empty() ? std::string() : " " + std::string(r.reason.c_str())));
    } else {
      why = status_from(ec, close_started_ ? "closing" : "reading", options_.max_frame_bytes);
    }
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    if (registry_) registry_->remove(id_);
    for (auto& timer : timers_) timer->cancel();  // their handlers run (aborted) and let go of fn
    auto handler = std::move(handler_);
    handler_ = {};
    if (handler.on_close) handler.on_close(why);
  }

  Stream ws_;
  TransportOptions options_;
  std::shared_ptr<Registry> registry_;
  std::shared_ptr<ssl::context> tls_;  // keeps the context alive as long as the stream
  uint64_t id_;
  std::string peer_;
  bool peer_loopback_ = false;
  HttpFn http_;  // server side: answers plain HTTP requests
  HttpAsyncFn http_async_;  // server side: the same, answered later (preferred when set)
  std::string websocket_path_;  // server side: the only upgrade path (empty: any)
  Url url_;
  Server::AcceptFn on_accept_;
  ConnectFn done_;
  Handler handler_;

  beast::flat_buffer http_buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  beast::flat_buffer read_buffer_;
  std::deque<std::string> queue_;
  std::vector<std::shared_ptr<asio::steady_timer>> timers_;  // pending set_timer()s
  std::string current_;  // the frame being written (not in queue_)
  std::atomic<size_t> queued_bytes_{0};
  std::atomic<bool> open_{true};
  bool writing_ = false;
  bool close_requested_ = false;
  bool close_started_ = false;
  bool finished_ = false;
  websocket::close_reason close_reason_;
};

using PlainConnection = WsConnection<websocket::stream<beast::tcp_stream>>;
using TlsConnection = WsConnection<websocket::stream<beast::ssl_stream<beast::tcp_stream>>>;

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(EventLoop& loop, ServerOptions opts, AcceptFn fn)
      : ioc(loop.impl().ioc), acceptor(asio::make_strand(ioc)), options(std::move(opts)), on_accept(std::move(fn)),
        registry(std::make_shared<Registry>()) {}

  void do_accept() {
    acceptor.async_accept(asio::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (!ec) self->start(std::move(socket));
      self->do_accept();  // an accept error (e.g. out of descriptors) must not stop the server
    });
  }

  void start(tcp::socket socket) {
    beast::error_code ec;
    auto remote = socket.remote_endpoint(ec);
    const std::string peer = ec ? "?" : endpoint_string(remote);
    bool loopback = false;
    if (!ec) {
      const auto a = remote.address();
      loopback = a.is_loopback() || (a.is_v6() && a.to_v6().is_v4_mapped() &&
                                     asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()).is_loopback());
    }
    socket.set_option(tcp::no_delay(true), ec);
    if (tls) {
      auto c = std::make_shared<TlsConnection>(options.transport, registry, std::move(socket), *tls);
      c->set_peer(peer, loopback);
      c->set_http(options.http, options.http_async, options.websocket_path);
      c->accept(tls, on_accept);
    } else {
      auto c = std::make_shared<PlainConnection>(options.transport, registry, std::move(socket));
      c->set_peer(peer, loopback);
      c->set_http(options.http, options.http_async, options.websocket_path);
      c->accept(nullptr, on_accept);
    }
  }

  asio::io_context& ioc;
  tcp::acceptor acceptor;
  ServerOptions options;
  AcceptFn on_accept;
  std::shared_ptr<Registry> registry;
  std::shared_ptr<ssl::context> tls;
  uint16_t port = 0;
};

Result<std::unique_ptr<Server>> Server::listen(EventLoop& loop, const ServerOptions& options, AcceptFn on_accept) {
  if (options.tls_cert_file.empty() != options.tls_key_file.empty())
    return Status::InvalidArgument("TLS needs both a certificate and a key (got only one)");
  auto impl = std::make_shared<Impl>(loop, options, std::move(on_accept));
  if (!options.tls_cert_file.empty()) {
    try {
      auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
      ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                       ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
      ctx->use_certificate_chain_file(options.tls_cert_file);
      ctx->use_private_key_file(options.tls_key_file, ssl::context::pem);
      if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
        return Status::InvalidArgument("TLS key '" + options.tls_key_file + "' does not match the certificate");
      impl->tls = std::move(ctx);
    } catch (const boost::system::system_error& e) {
      return Status::InvalidArgument("cannot load TLS certificate '" + options.tls_cert_file + "' / key '" +
                                     options.tls_key_file + "': " + e.code().message());
    }
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(options.host == "localhost" ? "127.0.0.1" : options.host, ec);
  if (ec) return Status::InvalidArgument("bad listen address '" + options.host + "': " + ec.message());
  tcp::endpoint endpoint(address, options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Unavailable("cannot listen on " + endpoint_string(endpoint) + ": " + ec.message());
  impl->port = impl->acceptor.local_endpoint().port();
  asio::post(impl->acceptor.get_executor(), [impl] { impl->do_accept(); });
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { stop(); }
uint16_t Server::port() const { return impl_->port; }
bool Server::tls() const { return impl_->tls != nullptr; }

void Server::stop() {
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard<std::mutex> lock(impl_->registry->mu);
    if (impl_->registry->stopped) return;
    impl_->registry->stopped = true;
    for (auto& [id, weak] : impl_->registry->live)
      if (auto c = weak.lock()) live.push_back(std::move(c));
  }
  std::promise<void> closed;
  asio::post(impl_->acceptor.get_executor(), [impl = impl_, &closed] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    closed.set_value();
  });
  if (impl_->ioc.stopped()) {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
  } else {
    closed.get_future().wait_for(std::chrono::seconds(5));
  }
  for (auto& c : live) c->close(kCloseGoingAway, "server stopping");
}

size_t Server::connection_count() const {
  std::lock_guard<std::mutex> lock(impl_->registry->mu);
  return impl_->registry->live.size();
}

Result<Url> parse_url(const std::string& text) {
  Url url;
  std::string rest;
  if (text.rfind("ws://", 0) == 0) {
    rest = text.substr(5);
  } else if (text.rfind("wss://", 0) == 0) {
    url.tls = true;
    rest = text.substr(6);
  } else {
    return Status::InvalidArgument("server URL '" + text + "' must start with ws:// or wss://");
  }
  const size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  url.target = slash == std::string::npos ? "/" : rest.substr(slash);
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string::npos) return Status::InvalidArgument("bad IPv6 host in '" + text + "'");
    url.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return Status::InvalidArgument("bad host in '" + text + "'");
      port = authority.substr(close + 2);
    }
  } else {
    const size_t colon = authority.find(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
  }
  if (url.host.empty()) return Status::InvalidArgument("no host in server URL '" + text + "'");
  if (port.empty()) {
    url.port = url.tls ? 443 : 80;
  } else {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
      return Status::InvalidArgument("bad port in server URL '" + text + "'");
    const int p = std::stoi(port);
    if (p < 1 || p > 65535) return Status::InvalidArgument("bad port in server URL '" + text + "'");
    url.port = static_cast<uint16_t>(p);
  }
  return url;
}

void connect(EventLoop& loop, const std::string& url_text, const ClientOptions& options, Handler handler,
             ConnectFn done) {
  auto url = parse_url(url_text);
  auto& ioc = loop.impl().ioc;
  if (!url.ok()) {
    asio::post(ioc, [done = std::move(done), s = url.status()] { done(s); });
    return;
  }
  if (!url->tls) {
    auto c = std::make_shared<PlainConnection>(options.transport, nullptr, asio::make_strand(ioc));
    asio::post(c->ws().get_executor(), [c, u = *url, options, h = std::move(handler), d = std::move(done)]() mutable {
      c->connect(u, options, std::move(h), std::move(d));
    });
    return;
  }
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  try {
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (options.verify_peer) {
      ctx->set_verify_mode(ssl::verify_peer);
      if (options.ca_file.empty()) ctx->set_default_verify_paths();
      else ctx->load_verify_file(options.ca_file);
      ctx->set_verify_callback(ssl::host_name_verification(url->host));
    } else {
      ctx->set_verify_mode(ssl::verify_none);
    }
  } catch (const boost::system::system_error& e) {
    asio::post(ioc, [done = std::move(done), m = std::string("TLS set-up: ") + e.code().message() + " (ca file '" +
                                               options.ca_file + "')"] { done(Status::InvalidArgument(m)); });
    return;
  }
  auto c = std::make_shared<TlsConnection>(options.transport, nullptr, asio::make_strand(ioc), *ctx);
  asio::post(c->ws().get_executor(), [c, ctx, u = *url, options, h = std::move(handler), d = std::move(done)]() mutable {
    // The context must outlive the stream: keep it in the completion chain.
    c->keep_context(std::move(ctx));
    c->connect(u, options, std::move(h), std::move(d));
  });
}

Result<std::shared_ptr<Connection>> connect_blocking(EventLoop& loop, const std::string& url,
                                                     const ClientOptions& options, Handler handler) {
  auto promise = std::make_shared<std::promise<Result<std::shared_ptr<Connection>>>>();
  auto future = promise->get_future();
  connect(loop, url, options, std::move(handler),
          [promise](Result<std::shared_ptr<Connection>> r) { promise->set_value(std::move(r)); });
  if (future.wait_for(options.transport.handshake_timeout + std::chrono::seconds(5)) != std::future_status::ready)
    return Status::Unavailable("connecting to " + url + " timed out");
  return future.get();
}

}  // namespace tandem::net
