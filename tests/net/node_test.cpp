// A node spread over "processes" (actors/node.hpp): two actor systems in this test process
// open one database file. The database lock is per open file, so the second finds it held
// and joins the first over the real Unix-domain socket, exactly as another process would
// (the real binary in separate processes: node_process_test.cpp).
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/send.hpp>

#include "actors/node.hpp"
#include "actors/system_config.hpp"
#include "runtime/node/wire.hpp"
#include "runtime/sqlite/database.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "tests/common/temp_dir.hpp"
#include "tests/net/view_mirror.hpp"

using namespace tandem;
using tandem::test::TempDir;
using tandem::test::Mirror;
using tandem::test::mirror_actor;
using namespace std::chrono_literals;

namespace {

const char* kSchema =
    "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT CHECK (length(title) < 20), done INTEGER DEFAULT 0)";

caf::actor_system_config& configured(caf::actor_system_config& cfg) {
  configure_actor_system(cfg);
  return cfg;
}

// One "process": an actor system, the node, one view and its watcher.
struct Proc {
  caf::actor_system_config cfg;
  caf::actor_system system{configured(cfg)};
  std::unique_ptr<tandem::Node> node;
  ui_view_actor view;
  view_watcher_actor watcher;
  std::shared_ptr<Mirror> mirror = std::make_shared<Mirror>();
  std::atomic<bool> lost{false};
  std::atomic<int> taken_over{0};  // takeovers reported OK
  std::chrono::milliseconds follower_write_timeout{10000};

  Result<bool> open(const std::string& db, const std::string& name, const std::string& schema = kSchema) {
    NodeConfig nc;
    nc.database_path = db;
    nc.schema = {schema};
    nc.name = name;
    nc.join_within = 2s;
    nc.follower_write_timeout = follower_write_timeout;
    nc.on_leader_lost = [this](const Status&) { lost = true; };
    nc.on_takeover = [this](const TakeoverReport& r) {
      if (r.status.ok()) ++taken_over;
    };
    auto n = tandem::Node::open(system, nc);
    if (!n.ok()) return n.status();
    node = std::move(*n);
    // Named after the "process": the Procs of this test share one pid, which view names carry.
    auto v = node->spawn_view("view-" + name);
    if (!v.ok()) return v.status();
    view = *v;
    watcher = system.spawn(mirror_actor, mirror, view);
    return node->is_leader();
  }
  ~Proc() { close(); }
  void close() {
    if (!node) return;
    caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(view, caf::exit_reason::user_shutdown);
    node.reset();
    system.await_all_actors_done();
  }

  worker::WriteResponse exec(const std::string& sql) {
    caf::scoped_actor self{system};
    worker::WriteRequest req;
    req.add_statements()->set_sql(sql);
    worker::WriteResponse out;
    self->request(node->worker(), 10s, req)
        .receive([&](worker::WriteResponse& r) { out = std::move(r); },
                 [&](caf::error& e) { to_proto(Status::Unavailable(caf::to_string(e)), out.mutable_error()); });
    return out;
  }
  view::MutateResponse insert(int64_t id, const std::string& title) {
    caf::scoped_actor self{system};
    view::MutateRequest req;
    auto* m = req.add_mutations();
    m->set_table("todo");
    m->mutable_insert()->add_columns("id");
    m->mutable_insert()->add_columns("title");
    *m->mutable_insert()->add_values() = to_proto(Value::Integer(id));
    *m->mutable_insert()->add_values() = to_proto(Value::Text(title));
    view::MutateResponse out;
    self->request(view, 10s, req).receive([&](view::MutateResponse& r) { out = std::move(r); },
                                          [&](caf::error& e) { to_proto(Status::Unavailable(caf::to_string(e)), out.mutable_error()); });
    return out;
  }
  // The rows as SQLite holds them, rendered like Mirror::render.
  std::string truth() {
    caf::scoped_actor self{system};
    worker::QueryRequest req;
    req.set_sql("SELECT id, title, done FROM todo ORDER BY id");
    std::string out;
    self->request(node->worker(), 10s, req)
        .receive(
            [&](worker::QueryResponse& r) {
              for (const auto& row : r.rows()) {
                for (const auto& v : row.values()) out += from_proto(v).to_sql_literal() + " ";
                out += "\n";
              }
            },
            [&](caf::error& e) { out = "error: " + caf::to_string(e); });
    return out;
  }
};

template <class F>
bool eventually(F f, std::chrono::milliseconds within = 10s) {
  const auto end = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return f();
}

}  // namespace

TEST_CASE("node: the second opener joins the first, writes go through the leader, every view shows them", "[node]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  Proc a, b;
  REQUIRE(*a.open(db, "a") == true);
  auto joined = b.open(db, "b");
  INFO(joined.status().to_string());
  REQUIRE(joined.ok());
  CHECK(*joined == false);
  CHECK(b.node->leader_pid() == ::getpid());
  REQUIRE(eventually([&] { return a.mirror->ready && b.mirror->ready; }));

  auto w = b.exec("INSERT INTO todo(id, title) VALUES (1, 'from b')");
  REQUIRE(w.error().code() == change::Error::OK);
  CHECK(w.db_version() > 0);
  CHECK(a.exec("INSERT INTO todo(id, title) VALUES (2, 'from a')").error().code() == change::Error::OK);
  const std::string expected = "1 'from b' 0 \n2 'from a' 0 \n";
  CHECK(a.truth() == expected);
  CHECK(b.truth() == expected);
  CHECK(eventually([&] { return a.mirror->render() == expected && b.mirror->render() == expected; }));
  INFO(a.mirror->render() << "/" << b.mirror->render());
}

TEST_CASE("node: a follower's optimistic mutation shows in the leader's view, a CHECK-refused one is rolled back everywhere",
          "[node]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  Proc a, b;
  REQUIRE(*a.open(db, "a"));
  REQUIRE(b.open(db, "b").ok());
  REQUIRE(eventually([&] { return a.mirror->ready && b.mirror->ready; }));

  auto ok = b.insert(1, "short");
  CHECK(ok.error().code() == change::Error::OK);
  auto refused = b.insert(2, "a title far too long for the check");
  CHECK(refused.error().code() == change::Error::CONSTRAINT);
  // The leader's view showed the refused mutation as pending, then took it back.
  CHECK(eventually([&] { return a.mirror->saw("-'a title far too long for the check'"); }));
  CHECK(a.mirror->saw("+'a title far too long for the check'"));
  const std::string expected = "1 'short' 0 \n";
  CHECK(a.truth() == expected);
  CHECK(eventually([&] { return a.mirror->render() == expected && b.mirror->render() == expected; }));
  // And the other way: the leader's mutation reaches the follower's view.
  CHECK(a.insert(3, "from a").error().code() == change::Error::OK);
  CHECK(eventually([&] { return b.mirror->render() == "1 'short' 0 \n3 'from a' 0 \n"; }));
}

TEST_CASE("node: a process with a wrong or exposed secret, or another schema, is refused with a clear error", "[node]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  Proc a;
  REQUIRE(*a.open(db, "a"));
  const std::string secret = node::secret_path(db);
  const std::string real = *node::read_secret(secret);

  SECTION("another schema") {
    Proc b;
    auto r = b.open(db, "b", "CREATE TABLE IF NOT EXISTS other(id INTEGER PRIMARY KEY)");
    CHECK(r.status().code() == StatusCode::invalid_argument);
    CHECK_THAT(r.status().message(), Catch::Contains("same --schema"));
  }
  SECTION("a newer additive schema: refused, and told how to migrate") {
    Proc b;
    auto r = b.open(db, "b",
                    "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT CHECK (length(title) < 20), done "
                    "INTEGER DEFAULT 0, note TEXT)");
    CHECK(r.status().code() == StatusCode::invalid_argument);
    CHECK_THAT(r.status().message(), Catch::Contains("end every process of this database, then start them again with the new --schema"));
  }
  SECTION("a wrong secret") {
    {
      std::ofstream out(secret, std::ios::trunc | std::ios::binary);
      out << std::string(32, 'x');
    }
    Proc b;
    auto r = b.open(db, "b");
    CHECK(r.status().code() == StatusCode::permission_denied);
    CHECK_THAT(r.status().message(), Catch::Contains("refused this process"));
    CHECK_THAT(r.status().message(), Catch::Contains("wrong proof"));
  }
  SECTION("a secret others can read") {
    REQUIRE(::chmod(secret.c_str(), 0644) == 0);
    Proc b;
    auto r = b.open(db, "b");
    CHECK(r.status().code() == StatusCode::permission_denied);
    CHECK_THAT(r.status().message(), Catch::Contains("must be 0600"));
  }
  // The leader is unaffected.
  CHECK(a.exec("INSERT INTO todo(id, title) VALUES (1, 'still here')").error().code() == change::Error::OK);
  (void)real;
}

TEST_CASE("node: when the leader ends, one follower takes over by itself, the other joins it, views stay exact", "[node][takeover]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  auto a = std::make_unique<Proc>();
  Proc b, c;
  REQUIRE(*a->open(db, "a"));
  REQUIRE(b.open(db, "b").ok());
  REQUIRE(c.open(db, "c").ok());
  REQUIRE(eventually([&] { return b.mirror->ready && c.mirror->ready; }));
  CHECK(a->exec("INSERT INTO todo(id, title) VALUES (1, 'before')").error().code() == change::Error::OK);
  CHECK(eventually([&] { return b.mirror->render() == "1 'before' 0 \n" && c.mirror->render() == "1 'before' 0 \n"; }));
  a->close();
  CHECK(eventually([&] { return b.lost.load() && c.lost.load(); }, 5s));
  CHECK(eventually([&] { return b.taken_over.load() == 1 && c.taken_over.load() == 1; }, 5s));
  // Exactly one of them leads; the other follows it.
  CHECK(b.node->is_leader() != c.node->is_leader());
  Proc& leader = b.node->is_leader() ? b : c;
  Proc& follower = b.node->is_leader() ? c : b;
  CHECK(follower.node->leader_pid() == ::getpid());
  // The same handles (worker, views) work on: writes from both, every view shows them.
  CHECK(follower.exec("INSERT INTO todo(id, title) VALUES (2, 'after f')").error().code() == change::Error::OK);
  CHECK(leader.insert(3, "after l").error().code() == change::Error::OK);
  auto f2 = follower.insert(4, "after f2");
  INFO(f2.error().message());
  CHECK(f2.error().code() == change::Error::OK);
  const std::string expected = "1 'before' 0 \n2 'after f' 0 \n3 'after l' 0 \n4 'after f2' 0 \n";
  CHECK(leader.truth() == expected);
  CHECK(eventually([&] { return b.mirror->render() == expected && c.mirror->render() == expected; }));
  INFO(b.mirror->render() << "/" << c.mirror->render());
}

TEST_CASE("node: mutations pending at a leader that ends are settled in every surviving view, commits it never streamed show",
          "[node][takeover]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  auto a = std::make_unique<Proc>();
  Proc b, c;
  REQUIRE(*a->open(db, "a"));
  REQUIRE(b.open(db, "b").ok());
  REQUIRE(c.open(db, "c").ok());
  REQUIRE(eventually([&] { return a->mirror->ready && b.mirror->ready && c.mirror->ready; }));
  // Another connection holds the write lock: the leader's db_worker waits on it with both
  // mutations, while every view shows them pending.
  auto blocker = Database::open(db);
  REQUIRE(blocker.ok());
  REQUIRE((*blocker)->exec("BEGIN IMMEDIATE").ok());
  auto mutate = [&](int64_t id, const std::string& title) {
    view::MutateRequest req;
    auto* m = req.add_mutations();
    m->set_table("todo");
    m->mutable_insert()->add_columns("id");
    m->mutable_insert()->add_columns("title");
    *m->mutable_insert()->add_values() = to_proto(Value::Integer(id));
    *m->mutable_insert()->add_values() = to_proto(Value::Text(title));
    caf::anon_send(a->view, req);
  };
  mutate(5, "commits");
  mutate(6, "a title far too long for the check");
  const std::string both = "5 'commits' 0 \n6 'a title far too long for the check' 0 \n";
  REQUIRE(eventually([&] { return b.mirror->render() == both && c.mirror->render() == both; }));
  // The leader ends with both in its worker's hands: its connections close at once, the
  // worker commits one and refuses the other once the lock is free, then lets the lock go.
  std::thread closing([&] { a->close(); });
  std::this_thread::sleep_for(300ms);
  REQUIRE((*blocker)->exec("COMMIT").ok());
  closing.join();
  CHECK(eventually([&] { return b.taken_over.load() == 1 && c.taken_over.load() == 1; }, 5s));
  Proc& leader = b.node->is_leader() ? b : c;
  const std::string expected = "5 'commits' 0 \n";
  CHECK(leader.truth() == expected);
  // No phantom of the refused one; the committed one shows although its deltas never came.
  CHECK(eventually([&] { return b.mirror->render() == expected && c.mirror->render() == expected; }));
  INFO(b.mirror->render() << "/" << c.mirror->render());
}

TEST_CASE("node: a follower that ends with a mutation in flight leaves no phantom row in the leader's view", "[node]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  Proc a;
  REQUIRE(*a.open(db, "a"));
  for (int round = 0; round < 5; ++round) {
    Proc b;
    REQUIRE(b.open(db, "b").ok());
    REQUIRE(eventually([&] { return b.mirror->ready; }));
    // Sent without waiting, then the follower ends at once: the write may or may not have
    // reached the leader; either way the leader's bus settles the pending overlay.
    view::MutateRequest req;
    auto* m = req.add_mutations();
    m->set_table("todo");
    m->mutable_insert()->add_columns("id");
    m->mutable_insert()->add_columns("title");
    *m->mutable_insert()->add_values() = to_proto(Value::Integer(100 + round));
    *m->mutable_insert()->add_values() = to_proto(Value::Text("in flight"));
    caf::anon_send(b.view, req);
    b.close();
  }
  CHECK(eventually([&] { return a.mirror->ready && a.mirror->render() == a.truth(); }));
  INFO(a.mirror->render() << " vs " << a.truth());
}

TEST_CASE("node: a follower that stops reading is dropped while the leader and the other followers go on", "[node]") {
  TempDir dir;
  const std::string db = dir / "a.db";
  Proc a;
  a.follower_write_timeout = 300ms;
  REQUIRE(*a.open(db, "a"));
  Proc b;
  REQUIRE(b.open(db, "b").ok());
  // A follower that joins properly, then never reads again (a process stopped with SIGSTOP).
  auto fd = node::connect_unix(node::socket_path(db));
  REQUIRE(fd.ok());
  node::FrameReader reader;
  auto hello = node::read_frame(*fd, reader, 5000ms);
  REQUIRE(hello.ok());
  auto secret = node::read_secret(node::secret_path(db));
  REQUIRE(secret.ok());
  REQUIRE(node::write_frame(*fd, node::make_join(*secret, hello->hello(), {kSchema}, "stuck")).ok());
  auto welcome = node::read_frame(*fd, reader, 5000ms);
  REQUIRE(welcome.ok());
  REQUIRE(welcome->welcome().error().code() == change::Error::OK);
  // 40 commits of 64 KiB each: far more than a socket's buffer holds for the stuck one.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i <= 40; ++i)
    REQUIRE(a.exec("INSERT INTO todo(id, title, done) VALUES (" + std::to_string(i) + ", 'big', randomblob(65536))").error().code() ==
            change::Error::OK);
  // The leader and the reading follower are not held up by the stuck one.
  CHECK(eventually([&] { return b.mirror->ready && b.mirror->render() == a.truth(); }));
  INFO("writes and the follower's view took " << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count() << " ms");
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  // The stuck follower was dropped: what it reads now is what the kernel buffered, then the end
  // of the stream, not every commit (without the bound its link would wait to write them all).
  std::this_thread::sleep_for(1s);
  int deltas = 0;
  Status end = Status::Ok();
  for (;;) {
    auto e = node::read_frame(*fd, reader, 2000ms);
    if (!e.ok()) {
      end = e.status();
      break;
    }
    deltas += e->has_deltas();
  }
  ::close(*fd);
  CHECK(deltas < 40);
  CHECK_THAT(end.message(), !Catch::Contains("no answer in time"));
  // The leader still serves: a new write reaches the other follower.
  REQUIRE(a.exec("INSERT INTO todo(id, title) VALUES (100, 'after')").error().code() == change::Error::OK);
  CHECK(eventually([&] { return b.mirror->render() == a.truth(); }));
}
