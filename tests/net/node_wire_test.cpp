// The node transport without actors (runtime/node/wire.hpp): frames, the secret file, the
// join handshake, and a leader and a follower over a real Unix-domain socket.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/node/wire.hpp"
#include "runtime/sqlite/database.hpp"
#include "runtime/store/inspect.hpp"
#include "tests/common/temp_dir.hpp"

using namespace tandem;
using tandem::test::TempDir;

namespace {
node::Envelope write_request(uint64_t id, const std::string& sql) {
  node::Envelope e;
  e.set_id(id);
  e.mutable_write()->add_statements()->set_sql(sql);
  return e;
}
}  // namespace

TEST_CASE("node wire: frames split at every byte reassemble in order", "[node]") {
  std::string stream;
  for (uint64_t i = 1; i <= 3; ++i) stream += node::encode_frame(write_request(i, "INSERT INTO t VALUES (" + std::to_string(i) + ")"));
  node::FrameReader reader;
  std::vector<uint64_t> ids;
  for (char c : stream) {
    reader.feed(&c, 1);
    auto next = reader.next();
    REQUIRE(next.ok());
    if (*next) {
      ids.push_back((*next)->id());
      CHECK((*next)->write().statements(0).sql() == "INSERT INTO t VALUES (" + std::to_string((*next)->id()) + ")");
    }
  }
  CHECK(ids == std::vector<uint64_t>{1, 2, 3});
  CHECK(reader.buffered() == 0);
}

TEST_CASE("node wire: an oversized length or junk bytes are a corrupt stream", "[node]") {
  node::FrameReader big;
  const char huge[4] = {'\x7f', '\xff', '\xff', '\xff'};
  big.feed(huge, 4);
  CHECK(big.next().status().code() == StatusCode::invalid_argument);
  node::FrameReader junk;
  const char bad[] = {0, 0, 0, 3, '\xff', '\xff', '\xff'};
  junk.feed(bad, sizeof bad);
  CHECK_FALSE(junk.next().ok());
}

TEST_CASE("node wire: the secret is created 0600 once, and refused when others can read it", "[node]") {
  TempDir dir;
  const std::string path = dir / "a.db.secret";
  auto first = node::ensure_secret(path);
  REQUIRE(first.ok());
  CHECK(first->size() == 32);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto again = node::ensure_secret(path);
  REQUIRE(again.ok());
  CHECK(*again == *first);
  CHECK(*node::read_secret(path) == *first);
  REQUIRE(::chmod(path.c_str(), 0644) == 0);
  CHECK(node::read_secret(path).status().code() == StatusCode::permission_denied);
  CHECK(node::ensure_secret(path).status().code() == StatusCode::permission_denied);
  CHECK(node::read_secret(dir / "missing.secret").status().code() == StatusCode::not_found);

  // A secret file left empty by a leader that died creating it is replaced by the next one.
  const std::string empty = dir / "b.db.secret";
  std::ofstream(empty).close();
  REQUIRE(::chmod(empty.c_str(), 0600) == 0);
  CHECK(node::read_secret(empty).status().code() == StatusCode::invalid_argument);
  auto replaced = node::ensure_secret(empty);
  REQUIRE(replaced.ok());
  CHECK(replaced->size() == 32);
}

TEST_CASE("node wire: the join handshake accepts the secret's holder and refuses a wrong proof, uid or schema", "[node]") {
  const std::string secret = node::random_bytes(32), nonce = node::random_bytes(32);
  const std::vector<std::string> schema{"CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY)"};
  auto hello = node::make_hello(nonce);
  auto join = node::make_join(secret, hello.hello(), schema, "b");
  CHECK(node::check_join(secret, nonce, join.join(), schema, 1000, 1000).ok());
  // Another secret, a replayed proof on a fresh nonce, another user, another schema.
  auto wrong = node::make_join(node::random_bytes(32), hello.hello(), schema, "b");
  CHECK(node::check_join(secret, nonce, wrong.join(), schema, 1000, 1000).code() == StatusCode::permission_denied);
  CHECK(node::check_join(secret, node::random_bytes(32), join.join(), schema, 1000, 1000).code() == StatusCode::permission_denied);
  CHECK(node::check_join(secret, nonce, join.join(), schema, 1000, 1001).code() == StatusCode::permission_denied);
  auto other = node::make_join(secret, hello.hello(), {"CREATE TABLE IF NOT EXISTS u(id INTEGER PRIMARY KEY)"}, "b");
  Status s = node::check_join(secret, nonce, other.join(), schema, 1000, 1000);
  CHECK(s.code() == StatusCode::invalid_argument);
  CHECK_THAT(s.message(), Catch::Contains("same --schema"));
  // A process without --schema (a local query) takes the leader's.
  auto schemaless = node::make_join(secret, hello.hello(), {}, "b");
  CHECK(node::check_join(secret, nonce, schemaless.join(), schema, 1000, 1000).ok());
  // Another server is refused when both name one; an offline process may join any leader.
  auto elsewhere = node::make_join(secret, hello.hello(), schema, "b", {"ws://other:7000/sync"});
  s = node::check_join(secret, nonce, elsewhere.join(), schema, 1000, 1000, "ws://127.0.0.1:7000/sync");
  CHECK(s.code() == StatusCode::invalid_argument);
  CHECK_THAT(s.message(), Catch::Contains("another server"));
  CHECK(node::check_join(secret, nonce, elsewhere.join(), schema, 1000, 1000, "ws://other:7000/sync").ok());
  CHECK(node::check_join(secret, nonce, elsewhere.join(), schema, 1000, 1000, "").ok());
  CHECK(node::check_join(secret, nonce, join.join(), schema, 1000, 1000, "ws://127.0.0.1:7000/sync").ok());
  // A token of another user is refused when both have one; no token on either side is not compared.
  const std::string url = "ws://127.0.0.1:7000/sync";
  auto bob = node::make_join(secret, hello.hello(), schema, "b", {url, "bob"});
  s = node::check_join(secret, nonce, bob.join(), schema, 1000, 1000, url, "alice");
  CHECK(s.code() == StatusCode::permission_denied);
  CHECK_THAT(s.message(), Catch::Contains("another user"));
  CHECK_THAT(s.message(), Catch::Contains("'bob'"));
  CHECK(node::check_join(secret, nonce, bob.join(), schema, 1000, 1000, url, "bob").ok());
  CHECK(node::check_join(secret, nonce, bob.join(), schema, 1000, 1000, "", "").ok());
  CHECK(node::check_join(secret, nonce, join.join(), schema, 1000, 1000, url, "alice").ok());
  // A leader opened without a schema leaves the comparison to the file (below).
  CHECK(node::check_join(secret, nonce, other.join(), {}, 1000, 1000).ok());
  // What a leader running offline adopts travels in the join.
  node::JoinSync sync{url, "alice", "tok", {"ws://second:7000/sync"}, "/ca.pem", true};
  auto online = node::make_join(secret, hello.hello(), schema, "b", sync);
  CHECK(online.join().server() == url);
  CHECK(online.join().user() == "alice");
  CHECK(online.join().token() == "tok");
  REQUIRE(online.join().also_servers_size() == 1);
  CHECK(online.join().also_servers(0) == "ws://second:7000/sync");
  CHECK(online.join().ca_file() == "/ca.pem");
  CHECK(online.join().insecure());
}

TEST_CASE("node wire: a schema is checked against the file's tables by what they hold, not by text", "[node]") {
  TempDir dir;
  const std::string path = dir / "a.db";
  {
    auto db = Database::open(path);
    REQUIRE(db.ok());
    REQUIRE((*db)->exec("CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '')").ok());
  }
  // The same table written another way.
  CHECK(check_schema_against_file(path, {"CREATE TABLE IF NOT EXISTS todo (\n  id INTEGER PRIMARY KEY,\n  title TEXT NOT NULL DEFAULT ''\n)"}).ok());
  // A newer declaration (one more column), a table the file lacks, a changed column, bad SQL.
  Status s = check_schema_against_file(path, {"CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER)"});
  CHECK(s.code() == StatusCode::invalid_argument);
  CHECK_THAT(s.message(), Catch::Contains("adds column(s) done") && Catch::Contains("todo"));
  s = check_schema_against_file(path, {"CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '')",
                                       "CREATE TABLE tag(id INTEGER PRIMARY KEY)"});
  CHECK(s.code() == StatusCode::invalid_argument);
  CHECK_THAT(s.message(), Catch::Contains("tag") && Catch::Contains("does not hold"));
  s = check_schema_against_file(path, {"CREATE TABLE todo(id INTEGER PRIMARY KEY, title BLOB)"});
  CHECK(s.code() == StatusCode::invalid_argument);
  CHECK_THAT(s.message(), Catch::Contains("title"));
  CHECK_FALSE(check_schema_against_file(path, {"CREATE TABLE todo(id INTEGER PRIMARY KEY,"}).ok());
  // The file is only read.
  CHECK_FALSE(check_schema_against_file(dir / "missing.db", {"CREATE TABLE t(id INTEGER PRIMARY KEY)"}).ok());
  CHECK_FALSE(std::filesystem::exists(dir / "missing.db"));
}

TEST_CASE("node wire: a leader and a follower exchange frames over the socket, the peer's uid is ours", "[node]") {
  TempDir dir;
  const std::string path = node::socket_path(dir / "a.db");
  CHECK(node::connect_unix(path).status().code() == StatusCode::unavailable);  // no leader yet
  auto listener = node::listen_unix(path);
  REQUIRE(listener.ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0077) == 0);
  std::thread leader([fd = *listener] {
    auto conn = node::accept_unix(fd);
    REQUIRE(conn.ok());
    CHECK(*node::peer_uid(*conn) == ::geteuid());
    node::FrameReader reader;
    for (;;) {
      auto e = node::read_frame(*conn, reader, std::chrono::milliseconds(5000));
      if (!e.ok()) break;  // the follower closed
      node::Envelope reply;
      reply.set_id(e->id());
      reply.mutable_write_response()->set_db_version(static_cast<int64_t>(e->id()) * 10);
      REQUIRE(node::write_frame(*conn, reply).ok());
    }
    ::close(*conn);
  });
  auto conn = node::connect_unix(path);
  REQUIRE(conn.ok());
  node::FrameReader reader;
  for (uint64_t i = 1; i <= 50; ++i) {
    REQUIRE(node::write_frame(*conn, write_request(i, "x")).ok());
    auto reply = node::read_frame(*conn, reader, std::chrono::milliseconds(5000));
    REQUIRE(reply.ok());
    CHECK(reply->id() == i);
    CHECK(reply->write_response().db_version() == static_cast<int64_t>(i) * 10);
  }
  ::close(*conn);
  leader.join();
  ::close(*listener);
}

TEST_CASE("node wire: a socket beside a database deeper than sun_path works, a file name too long is refused", "[node]") {
  TempDir dir;
  // A directory path of about 300 bytes: far past the 107 a socket address holds.
  std::string deep = dir.path;
  for (int i = 0; i < 6; ++i) {
    deep += "/" + std::string(45, static_cast<char>('a' + i));
    REQUIRE(::mkdir(deep.c_str(), 0700) == 0);
  }
  const std::string path = node::socket_path(deep + "/todo.db");
  REQUIRE(path.size() > 200);
  auto listener = node::listen_unix(path);
  INFO(listener.status().to_string());
  REQUIRE(listener.ok());
  // The socket file is beside the database, the owner's only, and a follower reaches it by the same path.
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 077) == 0);
  auto conn = node::connect_unix(path);
  REQUIRE(conn.ok());
  auto accepted = node::accept_unix(*listener);
  REQUIRE(accepted.ok());
  node::Envelope e;
  e.set_id(7);
  REQUIRE(node::write_frame(*conn, e).ok());
  node::FrameReader reader;
  auto got = node::read_frame(*accepted, reader, std::chrono::milliseconds(5000));
  REQUIRE(got.ok());
  CHECK(got->id() == 7);
  ::close(*conn);
  ::close(*accepted);
  ::close(*listener);
  // A file name that alone overflows the address is refused, saying what to shorten.
  auto r = node::listen_unix(dir.path + "/" + std::string(120, 'x') + ".node");
  CHECK(r.status().code() == StatusCode::invalid_argument);
  CHECK_THAT(r.status().message(), Catch::Contains("shorter --db file name"));
}
