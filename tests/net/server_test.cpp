// The server's actors behind a real WebSocket listener, in one process, driven by raw
// protocol clients: the happy path, every bad input the issue lists (each answered with an
// error frame or a close within a bounded time while other clients are served), tokens and
// user ids, and the bound on open channel files.
#include <catch2/catch.hpp>

#include "actors/system_config.hpp"
#include "actors/session.hpp"
#include "actors/status_reporter.hpp"

#include <jwt.h>
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <spdlog/spdlog.h>
#include <spdlog/sinks/ostream_sink.h>

#include "tests/net/net_test_util.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/metrics/recent_errors.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/frames.hpp"

using namespace tandem;
using tandem::test::TempDir;
using namespace std::chrono_literals;

namespace {

const std::string kSecret = "server-test-secret-0123456789abcdef0123456789";
const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT);";

// Every file under `dir`, recursively (relative names).
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  std::string cmd = "cd " + dir + " && find . -type f | sort";
  FILE* p = ::popen(cmd.c_str(), "r");
  char line[4096];
  while (p && std::fgets(line, sizeof line, p)) {
    std::string s(line);
    if (!s.empty() && s.back() == '\n') s.pop_back();
    out.push_back(s);
  }
  if (p) ::pclose(p);
  return out;
}

caf::actor_system_config& make_config(caf::actor_system_config& cfg) {
  configure_actor_system(cfg);
  return cfg;
}

// A server with its actors and listener, in this process.
struct TestServer {
  TempDir data;
  caf::actor_system_config cfg;
  caf::actor_system system{make_config(cfg)};
  actors::directory_actor directory;
  net::EventLoop loop{1};
  std::unique_ptr<net::Server> server;

  explicit TestServer(size_t max_channels = 16, std::chrono::milliseconds hello_timeout = 5000ms,
                      size_t max_frame = 1 << 20, int64_t token_leeway_seconds = 30) {
    actors::DirectoryConfig dc;
    dc.data_dir = data.path;
    dc.max_open_channels = max_channels;
    dc.idle_close = 60s;
    directory = actors::spawn_directory(system, dc);
    auto sc = std::make_shared<actors::SessionConfig>();
    sc->secret = kSecret;
    sc->hello_timeout = hello_timeout;
    sc->token_leeway_seconds = token_leeway_seconds;
    net::ServerOptions so;
    so.transport.max_frame_bytes = max_frame;
    auto s = net::Server::listen(loop, so, actors::make_session_acceptor(system, sc, directory));
    REQUIRE(s.ok());
    server = std::move(*s);
  }
  ~TestServer() {
    server->stop();
    caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
    system.await_all_actors_done();
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(server->port()) + "/sync"; }
  cluster::DirectoryStatus status() {
    caf::scoped_actor self{system};
    cluster::DirectoryStatus out;
    self->request(directory, 5s, cluster::DirectoryStatusRequest{})
        .receive([&](cluster::DirectoryStatus& st) { out = st; }, [&](caf::error&) { FAIL("no directory status"); });
    return out;
  }
};

// A protocol client over a real WebSocket, with a Store as its database.
struct RawClient {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<sync::Envelope> inbox;
  std::optional<Status> closed;
  net::EventLoop loop{1};
  std::shared_ptr<net::Connection> conn;

  explicit RawClient(const std::string& url) {
    net::Handler h;
    h.on_frame = [this](std::string f) {
      sync::Envelope e;
      if (!e.ParseFromString(f)) e.mutable_error()->set_message("client could not parse a frame");
      std::lock_guard<std::mutex> l(mu);
      inbox.push_back(std::move(e));
      cv.notify_all();
    };
    h.on_close = [this](const Status& why) {
      std::lock_guard<std::mutex> l(mu);
      closed = why;
      cv.notify_all();
    };
    auto c = net::connect_blocking(loop, url, {}, h);
    REQUIRE(c.ok());
    conn = *c;
  }
  ~RawClient() {
    if (conn) conn->abort();
    loop.stop();
  }
  void send(const sync::Envelope& e) { REQUIRE(conn->send(sync_frames::encode(e))); }
  void send_raw(std::string bytes) { conn->send(std::move(bytes)); }
  std::optional<sync::Envelope> next(std::chrono::milliseconds within = 10s) {
    std::unique_lock<std::mutex> l(mu);
    if (!cv.wait_for(l, within, [&] { return !inbox.empty(); })) return std::nullopt;
    auto e = std::move(inbox.front());
    inbox.pop_front();
    return e;
  }
  bool wait_closed(std::chrono::milliseconds within = 10s) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, within, [&] { return closed.has_value(); });
  }
  // The next frame must be a fatal error with `code`, then the connection closes.
  void expect_fatal(sync::Error::Code code) {
    auto e = next();
    REQUIRE(e);
    INFO(sync_frames::describe(*e));
    REQUIRE(e->has_error());
    CHECK(e->error().code() == code);
    CHECK(e->error().fatal());
    CHECK(wait_closed());
  }
};

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xAB;
  s[15] = n;
  return s;
}

std::unique_ptr<Store> client_store(uint8_t n) { return test::client_store(site(n), kSchema, "todo"); }

std::string token_for(const std::string& user) {
  auto t = auth::mint_token(kSecret, user, std::chrono::hours(1));
  REQUIRE(t.ok());
  return *t;
}

sync::Envelope hello(const std::string& token, uint8_t site_number) {
  sync::Envelope e;
  auto* h = e.mutable_hello();
  h->set_protocol_version(1);
  h->set_token(token);
  h->set_site_id(site_bytes(site(site_number)));
  h->add_schema(kSchema);
  h->set_client_name("test-" + std::to_string(site_number));
  return e;
}

sync::Welcome expect_welcome(RawClient& c) {
  auto e = c.next();
  REQUIRE(e);
  INFO(sync_frames::describe(*e));
  REQUIRE(e->has_welcome());
  return e->welcome();
}

void require_ping_pong(RawClient& c, uint64_t nonce) {
  sync::Envelope ping;
  ping.mutable_ping()->set_nonce(nonce);
  c.send(ping);
  auto e = c.next();
  REQUIRE(e);
  REQUIRE(e->has_pong());
  CHECK(e->pong().nonce() == nonce);
}

std::string rows(Store& s) {
  auto r = s.query("SELECT id, title FROM todo ORDER BY id");
  REQUIRE(r.ok());
  std::string out;
  for (const auto& row : r->rows) out += row[0].to_sql_literal() + "=" + row[1].to_sql_literal() + " ";
  return out;
}

std::string raw_jwt(const std::string& grants) {
  jwt_t* j = nullptr;
  REQUIRE(jwt_new(&j) == 0);
  REQUIRE(jwt_add_grants_json(j, grants.c_str()) == 0);
  REQUIRE(jwt_set_alg(j, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(kSecret.data()),
                      static_cast<int>(kSecret.size())) == 0);
  char* s = jwt_encode_str(j);
  std::string out(s);
  std::free(s);
  jwt_free(j);
  return out;
}

}  // namespace

TEST_CASE("two devices of one user: push, durable ack, forward, client ack", "[server]") {
  TestServer srv;
  auto a = client_store(1), b = client_store(2);
  RawClient ca(srv.url()), cb(srv.url());
  ca.send(hello(token_for("alice"), 1));
  auto wa = expect_welcome(ca);
  CHECK(wa.user() == "alice");
  cb.send(hello(token_for("alice"), 2));
  expect_welcome(cb);

  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, 'milk'), (2, 'eggs')", {}}}).ok());
  sync::Envelope push;
  push.mutable_push()->set_seq(1);
  *push.mutable_push()->mutable_batch() = *a->changes_since(0);
  ca.send(push);
  auto ack = ca.next();
  REQUIRE(ack);
  REQUIRE(ack->has_ack());
  CHECK(ack->ack().seq() == 1);
  CHECK(ack->ack().client_acked_db_version() == a->db_version());

  auto fwd = cb.next();
  REQUIRE(fwd);
  REQUIRE(fwd->has_forward());
  REQUIRE(b->merge(fwd->forward().batch()).ok());
  CHECK(rows(*b) == rows(*a));
  sync::Envelope cack;
  cack.mutable_client_ack()->set_seq(fwd->forward().seq());
  cack.mutable_client_ack()->set_server_db_version(fwd->forward().batch().to_db_version());
  cb.send(cack);
  require_ping_pong(cb, 42);
  auto files = files_under(srv.data.path);
  std::sort(files.begin(), files.end());  // byte order, whatever sort(1)'s locale does
  CHECK(files == std::vector<std::string>{"./users/alice.db", "./users/alice.db-shm", "./users/alice.db-wal", "./users/alice.db.lock"});
}

TEST_CASE("bad frames get an error frame and a close, other clients go on", "[server][bad-input]") {
  TestServer srv;
  RawClient good(srv.url());
  good.send(hello(token_for("alice"), 1));
  expect_welcome(good);

  SECTION("malformed frame") {
    RawClient c(srv.url());
    c.send_raw(std::string("\x0a\xff\xff\xff\xff\x0f", 6));
    c.expect_fatal(sync::Error::MALFORMED);
  }
  SECTION("garbage bytes in a frame") {
    RawClient c(srv.url());
    std::string junk;
    for (int i = 0; i < 512; ++i) junk.push_back(static_cast<char>((i * 131 + 7) & 0xff));
    c.send_raw(junk);
    c.expect_fatal(sync::Error::MALFORMED);
  }
  SECTION("unknown message") {
    RawClient c(srv.url());
    c.send_raw(std::string("\xfa\x06\x02hi", 5));  // field 111, length-delimited
    c.expect_fatal(sync::Error::UNKNOWN_MESSAGE);
  }
  SECTION("wrong protocol version") {
    RawClient c(srv.url());
    auto h = hello(token_for("alice"), 3);
    h.mutable_hello()->set_protocol_version(99);
    c.send(h);
    c.expect_fatal(sync::Error::UNSUPPORTED_VERSION);
  }
  SECTION("push before hello") {
    RawClient c(srv.url());
    sync::Envelope push;
    push.mutable_push()->set_seq(1);
    c.send(push);
    c.expect_fatal(sync::Error::PROTOCOL);
  }
  SECTION("a second hello") {
    RawClient c(srv.url());
    c.send(hello(token_for("alice"), 3));
    expect_welcome(c);
    c.send(hello(token_for("alice"), 3));
    c.expect_fatal(sync::Error::PROTOCOL);
  }
  SECTION("a server-only message from a client") {
    RawClient c(srv.url());
    c.send(hello(token_for("alice"), 3));
    expect_welcome(c);
    sync::Envelope fwd;
    fwd.mutable_forward()->set_seq(1);
    c.send(fwd);
    c.expect_fatal(sync::Error::PROTOCOL);
  }
  SECTION("a push out of sequence") {
    RawClient c(srv.url());
    c.send(hello(token_for("alice"), 3));
    expect_welcome(c);
    sync::Envelope push;
    push.mutable_push()->set_seq(5);
    push.mutable_push()->mutable_batch()->set_sender_site_id(site_bytes(site(3)));
    c.send(push);
    c.expect_fatal(sync::Error::PROTOCOL);
  }
  SECTION("a batch the store refuses") {
    RawClient c(srv.url());
    c.send(hello(token_for("alice"), 3));
    expect_welcome(c);
    sync::Envelope push;
    push.mutable_push()->set_seq(1);
    auto* b = push.mutable_push()->mutable_batch();
    b->set_sender_site_id(site_bytes(site(3)));
    b->set_to_db_version(1);
    auto* ch = b->add_changes();
    ch->set_table("nope");
    ch->set_cid("x");
    ch->set_db_version(1);
    c.send(push);
    c.expect_fatal(sync::Error::REJECTED);
  }
  SECTION("an oversized frame") {
    RawClient c(srv.url());
    c.send_raw(std::string((1 << 20) + 1, 'x'));
    CHECK(c.wait_closed());
  }
  require_ping_pong(good, 7);
}

TEST_CASE("a connection that never says hello is closed after the hello timeout", "[server][bad-input]") {
  TestServer srv(16, 300ms);
  RawClient silent(srv.url());
  RawClient good(srv.url());
  good.send(hello(token_for("alice"), 1));
  expect_welcome(good);
  silent.expect_fatal(sync::Error::TIMEOUT);
  require_ping_pong(good, 1);
}

TEST_CASE("tokens: missing, expired, forged, wrong audience, bad subjects, nothing is created", "[server][bad-input]") {
  TestServer srv;
  auto refused = [&](const std::string& token) {
    RawClient c(srv.url());
    c.send(hello(token, 1));
    c.expect_fatal(sync::Error::UNAUTHENTICATED);
  };
  refused("");
  refused("not-a-token");
  refused(*auth::mint_token(kSecret, "alice", 1s, auth::kDefaultAudience, 1000));           // expired long ago
  refused(*auth::mint_token(kSecret + "-other", "alice", std::chrono::hours(1)));           // forged
  refused(*auth::mint_token(kSecret, "alice", std::chrono::hours(1), "another-service"));   // wrong audience
  refused(raw_jwt(R"({"sub":"../x","aud":"tandem-sync","exp":9999999999})"));
  refused(raw_jwt(R"({"sub":"a/b","aud":"tandem-sync","exp":9999999999})"));
  refused(raw_jwt(R"({"sub":"","aud":"tandem-sync","exp":9999999999})"));
  refused(raw_jwt(R"({"sub":")" + std::string(65, 'u') + R"(","aud":"tandem-sync","exp":9999999999})"));
  CHECK(files_under(srv.data.path).empty());
  CHECK(srv.status().open_channels() == 0);
}

TEST_CASE("a user's token reaches only that user's channel", "[server]") {
  TestServer srv;
  auto a = client_store(1);
  RawClient alice(srv.url());
  alice.send(hello(token_for("alice"), 1));
  expect_welcome(alice);
  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, 'alice secret')", {}}}).ok());
  sync::Envelope push;
  push.mutable_push()->set_seq(1);
  *push.mutable_push()->mutable_batch() = *a->changes_since(0);
  alice.send(push);
  REQUIRE(alice.next());

  // Mallory has her own valid token and claims alice's device's site id and cursor: she
  // still lands in her own channel and receives nothing of alice's.
  RawClient mallory(srv.url());
  auto h = hello(token_for("mallory"), 1);
  mallory.send(h);
  auto w = expect_welcome(mallory);
  CHECK(w.user() == "mallory");
  CHECK(w.server_db_version() == 0);
  require_ping_pong(mallory, 3);  // nothing else arrived before the pong
  auto st = srv.status();
  CHECK(st.open_channels() == 2);
}

TEST_CASE("open channel files are bounded, idle ones make room", "[server]") {
  TestServer srv(1);
  {
    RawClient alice(srv.url());
    alice.send(hello(token_for("alice"), 1));
    expect_welcome(alice);
    RawClient bob(srv.url());
    bob.send(hello(token_for("bob"), 2));
    bob.expect_fatal(sync::Error::UNAVAILABLE);  // alice's channel is busy: at capacity
    require_ping_pong(alice, 5);
    alice.conn->close(net::kCloseNormal, "bye");
    REQUIRE(alice.wait_closed());
  }
  // alice left; her channel is idle and is closed to make room for bob's.
  for (int attempt = 0;; ++attempt) {
    RawClient bob(srv.url());
    bob.send(hello(token_for("bob"), 2));
    auto e = bob.next();
    REQUIRE(e);
    if (e->has_welcome()) break;
    // alice's departure may not have reached the directory yet: retry like a client would.
    REQUIRE(attempt < 50);
    std::this_thread::sleep_for(50ms);
  }
  auto st = srv.status();
  CHECK(st.open_channels() == 1);
  CHECK(st.users(0) == "bob");
  CHECK(st.channels_closed() >= 1);
}

TEST_CASE("a user file that cannot be opened is reported, and the server serves everyone else", "[server][fault]") {
  TestServer srv;
  // Make alice's file impossible to open: a directory where the file should be.
  REQUIRE(std::system(("mkdir -p " + srv.data.path + "/users/alice.db").c_str()) == 0);
  {
    RawClient alice(srv.url());
    alice.send(hello(token_for("alice"), 1));
    alice.expect_fatal(sync::Error::UNAVAILABLE);
  }
  RawClient bob(srv.url());
  bob.send(hello(token_for("bob"), 2));
  expect_welcome(bob);
  for (int i = 0; i < 100 && srv.status().open_channels() != 1; ++i) std::this_thread::sleep_for(20ms);
  CHECK(srv.status().open_channels() == 1);  // alice's failed channel gave its slot back
}

TEST_CASE("a connection ends when its token expires", "[server][auth]") {
  TestServer srv(16, 5000ms, 1 << 20, /*token_leeway_seconds*/ 0);
  auto short_lived = auth::mint_token(kSecret, "alice", std::chrono::seconds(2));
  REQUIRE(short_lived.ok());
  RawClient c(srv.url());
  c.send(hello(*short_lived, 1));
  expect_welcome(c);
  require_ping_pong(c, 7);  // served while the token is valid
  auto e = c.next(5s);
  REQUIRE(e);
  INFO(sync_frames::describe(*e));
  REQUIRE(e->has_error());
  CHECK(e->error().code() == sync::Error::UNAUTHENTICATED);
  CHECK(e->error().fatal());
  CHECK(e->error().message().find("expired") != std::string::npos);
  RawClient other(srv.url());  // a fresh token still gets in
  other.send(hello(token_for("alice"), 2));
  expect_welcome(other);
}

namespace {

// Captures the default logger's records (one per line, message only) while alive.
struct LogCapture {
  std::shared_ptr<std::ostringstream> out = std::make_shared<std::ostringstream>();
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  spdlog::level::level_enum previous_level = spdlog::get_level();
  LogCapture() {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*out);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_pattern("%v");
    logger->set_level(spdlog::level::debug);
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::debug);
  }
  ~LogCapture() {
    spdlog::set_default_logger(previous);
    spdlog::set_level(previous_level);
  }
  std::string text() {
    spdlog::default_logger()->flush();
    return out->str();
  }
};

// A push of `a`'s changes since `since`, ready to send.
sync::Envelope push_of(Store& a, uint64_t seq, int64_t since) {
  sync::Envelope push;
  push.mutable_push()->set_seq(seq);
  *push.mutable_push()->mutable_batch() = test::own_changes_since(a, since);
  return push;
}

}  // namespace

TEST_CASE("a client's name and error text are logged escaped and cannot forge a log record", "[server][bad-input]") {
  LogCapture logs;
  {
    TestServer srv;
    RawClient c(srv.url());
    auto h = hello(token_for("alice"), 1);
    h.mutable_hello()->set_client_name("evil\nhop=server.forged user=bob");
    c.send(h);
    expect_welcome(c);
    sync::Envelope err = sync_frames::error_envelope(sync::Error::INTERNAL, "bye\nhop=server.forged2", true);
    c.send(err);
    CHECK(c.wait_closed());
  }
  const std::string text = logs.text();
  INFO(text);
  CHECK(text.find("evil\\nhop=server.forged user=bob") != std::string::npos);
  CHECK(text.find("bye\\nhop=server.forged2") != std::string::npos);
  CHECK(text.find("\nhop=server.forged") == std::string::npos);
}

TEST_CASE("a client ack must name the version its forward carried", "[server][bad-input]") {
  TestServer srv;
  auto a = client_store(1);
  RawClient ca(srv.url()), cb(srv.url());
  ca.send(hello(token_for("alice"), 1));
  expect_welcome(ca);
  cb.send(hello(token_for("alice"), 2));
  expect_welcome(cb);
  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, 'milk')", {}}}).ok());
  ca.send(push_of(*a, 1, 0));
  auto acked = ca.next();
  REQUIRE(acked);
  REQUIRE(acked->has_ack());
  // The pusher alone was merged: its ack moves its cursor, no empty forward follows.
  CHECK(acked->ack().forwarded_db_version() == acked->ack().server_db_version());
  auto fwd = cb.next();
  REQUIRE(fwd);
  REQUIRE(fwd->has_forward());
  const int64_t carried = fwd->forward().batch().to_db_version();
  sync::Envelope cack;
  cack.mutable_client_ack()->set_seq(fwd->forward().seq());
  SECTION("a negative version") { cack.mutable_client_ack()->set_server_db_version(-99); }
  SECTION("the largest version") { cack.mutable_client_ack()->set_server_db_version(INT64_MAX); }
  SECTION("one past the forward") { cack.mutable_client_ack()->set_server_db_version(carried + 1); }
  cb.send(cack);
  cb.expect_fatal(sync::Error::PROTOCOL);
  require_ping_pong(ca, 1);  // the pusher is still served
}

TEST_CASE("a push holding a change outside its batch's range is refused and moves no clock", "[server][bad-input]") {
  TestServer srv;
  auto a = client_store(1);
  RawClient ca(srv.url());
  ca.send(hello(token_for("alice"), 1));
  expect_welcome(ca);
  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, 'milk')", {}}}).ok());
  auto push = push_of(*a, 1, 0);
  auto* batch = push.mutable_push()->mutable_batch();
  batch->set_to_db_version(5);
  for (auto& c : *batch->mutable_changes()) c.set_db_version(50);
  ca.send(push);
  ca.expect_fatal(sync::Error::PROTOCOL);
  RawClient other(srv.url());
  other.send(hello(token_for("alice"), 2));
  CHECK(expect_welcome(other).server_db_version() == 0);  // nothing merged, the clock did not jump
}

TEST_CASE("a malformed first hello is refused before it fixes the user's tables", "[server][bad-input]") {
  TestServer srv;
  auto bad_hello = [&](const std::string& statement, sync::Error::Code code, const std::string& why) {
    RawClient c(srv.url());
    auto h = hello(token_for("alice"), 9);
    h.mutable_hello()->clear_schema();
    h.mutable_hello()->add_schema(statement);
    c.send(h);
    auto e = c.next();
    REQUIRE(e);
    INFO(sync_frames::describe(*e));
    REQUIRE(e->has_error());
    CHECK(e->error().code() == code);
    CHECK(e->error().fatal());
    CHECK_THAT(e->error().message(), Catch::Contains(why));
    CHECK(c.wait_closed());
  };
  bad_hello("CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, \"do\te\" TEXT);", sync::Error::REJECTED,
            "contains a control character");
  bad_hello("CREATE TABLE " + std::string(100000, 't') + "(id INTEGER PRIMARY KEY NOT NULL);", sync::Error::MALFORMED,
            "longer than");
  bad_hello("CREATE TABLE " + std::string(1000, 't') + "(id INTEGER PRIMARY KEY NOT NULL);", sync::Error::REJECTED,
            "table name is longer than 128 bytes");
  bad_hello("CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, big BLOB DEFAULT (zeroblob(500000000)));",
            sync::Error::REJECTED, "DEFAULT of todo.big");
  // The real client still gets in with its schema, and syncs.
  auto a = client_store(1);
  RawClient ca(srv.url());
  ca.send(hello(token_for("alice"), 1));
  expect_welcome(ca);
  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, 'milk')", {}}}).ok());
  ca.send(push_of(*a, 1, 0));
  auto ack = ca.next();
  REQUIRE(ack);
  INFO(sync_frames::describe(*ack));
  CHECK(ack->has_ack());
}

TEST_CASE("a connection claiming another device's site id is refused and the device's writes are kept", "[server][bad-input]") {
  TestServer srv;
  auto a = client_store(1);
  RawClient real(srv.url());
  real.send(hello(token_for("alice"), 1));
  const auto welcome = expect_welcome(real);
  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, 'milk')", {}}}).ok());
  real.send(push_of(*a, 1, 0));
  auto ack = real.next();
  REQUIRE(ack);
  REQUIRE(ack->has_ack());
  const int64_t acked = ack->ack().client_acked_db_version();

  {
    // The same user's second connection says it is the device (its site id), knowing nothing.
    RawClient hostile(srv.url());
    hostile.send(hello(token_for("alice"), 1));
    hostile.expect_fatal(sync::Error::SITE_CONFLICT);
  }
  {
    // It knows what the device knows, and pushes nothing while claiming version 1,000,000.
    RawClient hostile(srv.url());
    auto h = hello(token_for("alice"), 1);
    h.mutable_hello()->set_server_site_id(welcome.server_site_id());
    h.mutable_hello()->set_acked_db_version(acked);
    hostile.send(h);
    expect_welcome(hostile);
    sync::Envelope claim;
    claim.mutable_push()->set_seq(1);
    auto* b = claim.mutable_push()->mutable_batch();
    b->set_sender_site_id(site_bytes(site(1)));
    b->set_from_db_version(acked);
    b->set_to_db_version(1000000);
    hostile.send(claim);
    auto e = hostile.next();
    while (e && e->has_forward()) e = hostile.next();  // its catch-up comes first
    REQUIRE(e);
    INFO(sync_frames::describe(*e));
    REQUIRE(e->has_error());
    CHECK(e->error().code() == sync::Error::PROTOCOL);
    CHECK(hostile.wait_closed());
  }
  // The device's next writes are acknowledged and stored.
  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (2, 'eggs')", {}}}).ok());
  real.send(push_of(*a, 2, acked));
  ack = real.next();
  while (ack && ack->has_forward()) ack = real.next();  // forwards of its first push's version
  REQUIRE(ack);
  INFO(sync_frames::describe(*ack));
  REQUIRE(ack->has_ack());
  CHECK(ack->ack().client_acked_db_version() == a->db_version());
  auto c = client_store(3);
  RawClient reader(srv.url());
  reader.send(hello(token_for("alice"), 3));
  expect_welcome(reader);
  while (rows(*c) != rows(*a)) {
    auto fwd = reader.next(5s);
    REQUIRE(fwd);
    REQUIRE(fwd->has_forward());
    REQUIRE(c->merge(fwd->forward().batch()).ok());
  }
  CHECK(rows(*c) == "1='milk' 2='eggs' ");
}

TEST_CASE("a push in fragments is acked once whole and forwarded in fragments, and a frame inside one is refused",
          "[server][bad-input]") {
  TestServer srv;
  auto a = client_store(1), b = client_store(2);
  RawClient ca(srv.url()), cb(srv.url());
  ca.send(hello(token_for("alice"), 1));
  auto welcome = expect_welcome(ca);
  CHECK(welcome.max_message_bytes() == sync_frames::kMaxMessageBytes);
  cb.send(hello(token_for("alice"), 2));
  expect_welcome(cb);

  REQUIRE(a->write({SqlStatement{"INSERT INTO todo VALUES (1, CAST(randomblob(3000000) AS TEXT))", {}}}).ok());
  sync::Envelope push;
  push.mutable_push()->set_seq(1);
  *push.mutable_push()->mutable_batch() = *a->changes_since(0);
  std::vector<std::string> frames;
  // This server's transport takes frames of 1 MiB (its welcome tells the channel's default).
  sync_frames::send_frames(std::move(push), [&](std::string f) { frames.push_back(std::move(f)); },
                           sync_frames::fragment_bytes_for(1 << 20));
  REQUIRE(frames.size() == 3);
  ca.send_raw(frames[0]);
  ca.send_raw(frames[1]);
  require_ping_pong(ca, 7);  // allowed between fragments; nothing is acked before the last one
  ca.send_raw(frames[2]);
  auto ack = ca.next();
  REQUIRE(ack);
  INFO(sync_frames::describe(*ack));
  REQUIRE(ack->has_ack());
  CHECK(ack->ack().seq() == 1);

  // The other device receives the forward as fragments and rebuilds it.
  sync_frames::Reassembler reassembler;
  std::optional<sync::Envelope> whole;
  for (int i = 0; i < 10 && !whole; ++i) {
    auto e = cb.next();
    REQUIRE(e);
    REQUIRE(e->has_fragment());
    sync::Error error;
    REQUIRE(reassembler.add(std::move(*e->mutable_fragment()), &whole, &error));
  }
  REQUIRE(whole);
  REQUIRE(whole->has_forward());
  REQUIRE(b->merge(whole->forward().batch()).ok());
  CHECK(rows(*b) == rows(*a));

  // A client's small push, handed to the channel by the connection's thread, then a
  // fragmented one, which goes through the session actor, then a small one again (from then
  // on its frames all go that way): acked in order.
  auto c = client_store(4);
  RawClient cc(srv.url());
  cc.send(hello(token_for("alice"), 4));
  expect_welcome(cc);
  std::vector<std::string> sizes{"'small'", "CAST(randomblob(3000000) AS TEXT)", "'small again'"};
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    const int64_t before = c->db_version();
    REQUIRE(c->write({SqlStatement{"INSERT INTO todo VALUES (" + std::to_string(10 + seq) + ", " + sizes[seq - 1] + ")", {}}}).ok());
    sync::Envelope p;
    p.mutable_push()->set_seq(seq);
    *p.mutable_push()->mutable_batch() = *c->changes_since(before);
    sync_frames::send_frames(std::move(p), [&](std::string f) { cc.send_raw(f); }, sync_frames::fragment_bytes_for(1 << 20));
  }
  // Acks may cover several pushes merged together (the last one's seq); out of order, the
  // channel would refuse a push with a fatal PROTOCOL error instead.
  uint64_t acked = 0;
  while (acked < 3) {
    auto next = cc.next();
    REQUIRE(next);
    INFO(sync_frames::describe(*next));
    REQUIRE_FALSE(next->has_error());
    if (!next->has_ack()) continue;  // a's rows forwarded
    CHECK(next->ack().seq() > acked);
    acked = next->ack().seq();
  }
  CHECK(acked == 3);

  // Bob starts a fragmented push and sends a client ack inside it: refused.
  RawClient bob(srv.url());
  bob.send(hello(token_for("bob"), 3));
  expect_welcome(bob);
  bob.send_raw(frames[0]);
  sync::Envelope cack;
  cack.mutable_client_ack()->set_seq(1);
  bob.send(cack);
  bob.expect_fatal(sync::Error::PROTOCOL);
  // A fragment before the hello is refused too.
  RawClient early(srv.url());
  early.send_raw(frames[0]);
  early.expect_fatal(sync::Error::PROTOCOL);
}

TEST_CASE("report_status gathers every channel's devices from the actors and errors land in the ring", "[server][status]") {
  TestServer srv;
  RawClient a1(srv.url()), a2(srv.url()), b1(srv.url());
  a1.send(hello(token_for("alice"), 1));
  expect_welcome(a1);
  a2.send(hello(token_for("alice"), 2));
  expect_welcome(a2);
  b1.send(hello(token_for("bob"), 3));
  expect_welcome(b1);

  auto gather = [&] {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<cluster::DirectoryStatus>> got;
    actors::report_status(srv.system, srv.directory, 1000ms, [&](Result<cluster::DirectoryStatus> r) {
      std::lock_guard<std::mutex> l(mu);
      got.emplace(std::move(r));
      cv.notify_all();
    });
    std::unique_lock<std::mutex> l(mu);
    REQUIRE(cv.wait_for(l, 10s, [&] { return got.has_value(); }));
    INFO(got->status().to_string());
    REQUIRE(got->ok());
    return std::move(*got).value();
  };
  auto st = gather();
  CHECK(st.open_channels() == 2);
  CHECK(st.unanswered_size() == 0);
  REQUIRE(st.channels_size() == 2);
  std::map<std::string, cluster::ChannelStatus> by_user;
  for (const auto& c : st.channels()) by_user[c.user()] = c;
  REQUIRE(by_user.count("alice"));
  REQUIRE(by_user.count("bob"));
  REQUIRE(by_user["alice"].sessions_size() == 2);
  std::set<std::string> sites, names;
  for (const auto& s : by_user["alice"].sessions()) {
    sites.insert(s.site_id());
    names.insert(s.client_name());
    CHECK(s.last_seen_unix_ms() > 0);
  }
  CHECK(sites == std::set<std::string>{site_hex(site(1)), site_hex(site(2))});
  CHECK(names == std::set<std::string>{"test-1", "test-2"});
  REQUIRE(by_user["bob"].sessions_size() == 1);
  CHECK(by_user["bob"].sessions(0).site_id() == site_hex(site(3)));

  // A refused hello is kept in the ring of recent errors with its code.
  const uint64_t before = metrics::server_recent_errors().total();
  RawClient bad(srv.url());
  bad.send(hello("not-a-token", 9));
  bad.expect_fatal(sync::Error::UNAUTHENTICATED);
  CHECK(metrics::server_recent_errors().total() == before + 1);
  const auto newest = metrics::server_recent_errors().newest_first();
  REQUIRE_FALSE(newest.empty());
  CHECK(newest[0].code == sync::Error::UNAUTHENTICATED);

  // A device that leaves is gone from the next status.
  a2.conn->close(net::kCloseNormal, "bye");
  REQUIRE(a2.wait_closed());
  for (int i = 0; i < 100; ++i) {
    st = gather();
    bool gone = true;
    for (const auto& c : st.channels())
      if (c.user() == "alice" && c.sessions_size() != 1) gone = false;
    if (gone) break;
    std::this_thread::sleep_for(20ms);
  }
  for (const auto& c : st.channels())
    if (c.user() == "alice") CHECK(c.sessions_size() == 1);
}

namespace {

// A connection that records what it is given (SessionOutlet's tests).
class RecordingConnection : public net::Connection {
 public:
  bool send(std::string frame) override {
    std::lock_guard<std::mutex> lock(mu);
    if (closed) return false;
    frames.push_back(std::move(frame));
    return true;
  }
  void close(uint16_t c, const std::string&) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!closed) code = c;
    closed = true;
  }
  void abort() override { close(0, ""); }
  void set_timer(std::chrono::milliseconds, std::function<void()>) override {}
  bool is_open() const override { return !closed; }
  size_t queued_bytes() const override { return 0; }
  const std::string& peer() const override { return peer_; }
  uint64_t id() const override { return 7; }
  std::vector<sync::Envelope> sent() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<sync::Envelope> out;
    for (const auto& f : frames) out.push_back(sync_frames::decode(f).envelope);
    return out;
  }
  std::mutex mu;
  std::vector<std::string> frames;
  bool closed = false;
  uint16_t code = 0;
  std::string peer_ = "127.0.0.1:1";
};

sync::Envelope forward_envelope(uint64_t seq) {
  sync::Envelope e;
  e.mutable_forward()->set_seq(seq);
  return e;
}

}  // namespace

TEST_CASE("a session's outlet: the welcome joins and a fatal error closes whichever thread delivers them",
          "[server][session]") {
  using Phase = actors::SessionOutlet::Phase;
  auto connection = std::make_shared<RecordingConnection>();
  actors::SessionOutlet outlet(connection, 42);
  CHECK(outlet.phase() == Phase::awaiting_hello);
  CHECK(outlet.set_phase(Phase::joining));
  CHECK_FALSE(outlet.set_phase(Phase::joining));  // already there

  sync::Envelope welcome;
  welcome.mutable_welcome()->set_server_db_version(3);
  outlet.deliver(std::move(welcome));
  CHECK(outlet.phase() == Phase::joined);
  // A channel on another thread forwards while the session's own thread stays idle.
  std::thread channel([&] {
    for (uint64_t seq = 1; seq <= 100; ++seq) outlet.deliver(forward_envelope(seq));
  });
  channel.join();
  auto sent = connection->sent();
  REQUIRE(sent.size() == 101);
  CHECK(sent[0].has_welcome());
  for (uint64_t seq = 1; seq <= 100; ++seq) CHECK(sent[seq].forward().seq() == seq);

  outlet.deliver(sync_frames::error_envelope(sync::Error::SITE_CONFLICT, "another device uses this site id", true));
  CHECK(outlet.phase() == Phase::closed);
  CHECK(connection->code == net::kClosePolicyViolation);
  sent = connection->sent();
  REQUIRE(sent.size() == 102);
  CHECK(sent.back().error().code() == sync::Error::SITE_CONFLICT);
  // Closed is final: nothing more is sent, and no phase comes back.
  connection->closed = false;  // a connection that would still take frames
  outlet.deliver(forward_envelope(101));
  sync::Envelope late_welcome;
  late_welcome.mutable_welcome();
  outlet.deliver(std::move(late_welcome));
  CHECK(connection->sent().size() == 102);
  CHECK_FALSE(outlet.set_phase(Phase::joined));
  CHECK(outlet.phase() == Phase::closed);
  // No session of this process has id 42 (the outlet was never registered by a session actor).
  CHECK(actors::local_session_outlet(42, caf::actor_addr{}) == nullptr);
}

TEST_CASE("a session's outlet: a welcome arriving after the session closed does not reopen it", "[server][session]") {
  using Phase = actors::SessionOutlet::Phase;
  auto connection = std::make_shared<RecordingConnection>();
  actors::SessionOutlet outlet(connection, 43);
  outlet.set_phase(Phase::joining);
  // The session refused a bad frame (its own thread) while the channel was welcoming it.
  std::thread session([&] { outlet.set_phase(Phase::closed); });
  session.join();
  sync::Envelope welcome;
  welcome.mutable_welcome();
  outlet.deliver(std::move(welcome));
  CHECK(outlet.phase() == Phase::closed);
  CHECK(connection->sent().empty());
}
