// The public C++ API (include/tandem/) through libtandem.so: open, query, write
// transactions, live queries, optimistic mutations and their outcome, two Databases on one
// file (leader and follower), the sync state without a reachable server, close and misuse.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "tandem/tandem.hpp"
#include "tests/common/temp_dir.hpp"

using namespace tandem::api;
using namespace std::chrono_literals;

namespace {

const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '', done INTEGER DEFAULT 0)";

Options options_for(const std::string& path) {
  Options o;
  o.path = path;
  o.schema = {kSchema};
  o.timeout = 10s;
  return o;
}

// A watch's rows by key, and the titles it saw added and removed, for the test thread.
struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Row> rows;
  std::vector<std::string> events;
  int initial_events = 0;

  void on_event(const WatchEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (e.initial) ++initial_events;
    for (const auto& c : e.changes) {
      std::string title = c.row.size() > 1 ? to_sql_literal(c.row[1]) : "?";
      if (c.kind == RowChange::Kind::removed) {
        rows.erase(c.key);
        events.push_back("-" + title);
      } else {
        rows[c.key] = c.row;
        events.push_back("+" + title);
      }
    }
    cv.notify_all();
  }
  bool wait_for(const std::string& event) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 10s, [&] { return std::find(events.begin(), events.end(), event) != events.end(); });
  }
  size_t size() {
    std::lock_guard<std::mutex> lock(mu);
    return rows.size();
  }
};

// Two Databases on one file: the first opened leads, the second ("widget") follows it.
struct LeaderAndFollower {
  tandem::test::TempDir dir;
  std::unique_ptr<Database> leader, follower;
  LeaderAndFollower() {
    auto l = Database::open(options_for(dir / "app.db"));
    REQUIRE(l.ok());
    leader = std::move(*l);
    Options o = options_for(dir / "app.db");
    o.name = "widget";
    auto f = Database::open(o);
    REQUIRE(f.ok());
    follower = std::move(*f);
  }
};

}  // namespace

TEST_CASE("api: open, write a transaction, query", "[api]") {
  tandem::test::TempDir dir;
  auto db = Database::open(options_for(dir / "app.db"));
  REQUIRE(db.ok());
  CHECK((*db)->is_leader());

  auto w = (*db)->write({{"INSERT INTO todo(id, title) VALUES (?, ?)", {int64_t{1}, std::string("milk")}},
                         {"INSERT INTO todo(id, title) VALUES (?, ?)", {int64_t{2}, std::string("eggs")}}});
  REQUIRE(w.ok());
  CHECK(w->rows_changed == 2);
  CHECK(w->db_version > 0);

  // All or nothing: the second statement fails, the first is not kept.
  auto bad = (*db)->write({{"INSERT INTO todo(id, title) VALUES (3, 'bread')", {}}, {"INSERT INTO todo(id, title) VALUES (1, 'dup')", {}}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == Code::constraint);

  auto q = (*db)->query("SELECT id, title FROM todo ORDER BY id");
  REQUIRE(q.ok());
  REQUIRE(q->columns == std::vector<std::string>{"id", "title"});
  REQUIRE(q->rows.size() == 2);
  CHECK(std::get<int64_t>(q->rows[0][0]) == 1);
  CHECK(std::get<std::string>(q->rows[1][1]) == "eggs");

  auto refused = (*db)->query("SELECT nothing FROM nowhere");
  CHECK_FALSE(refused.ok());
  CHECK(refused.status().code() != Code::ok);
  CHECK((*db)->close().ok());
}

TEST_CASE("api: a watch gets the initial rows then changes, mutations confirm or roll back", "[api]") {
  tandem::test::TempDir dir;
  auto db = Database::open(options_for(dir / "app.db"));
  REQUIRE(db.ok());
  REQUIRE((*db)->exec("INSERT INTO todo(id, title) VALUES (1, 'milk')").ok());

  Seen seen;
  auto watch = (*db)->watch("SELECT id, title FROM todo WHERE done = ? ORDER BY id", {int64_t{0}},
                            [&](const WatchEvent& e) { seen.on_event(e); });
  REQUIRE(watch.ok());
  // The initial result arrived before watch returned.
  CHECK(seen.initial_events == 1);
  CHECK(seen.size() == 1);
  CHECK(watch->columns() == std::vector<std::string>{"id", "title"});
  CHECK(watch->ordered());

  REQUIRE((*db)->exec("INSERT INTO todo(id, title) VALUES (2, 'eggs')").ok());
  REQUIRE(seen.wait_for("+'eggs'"));

  auto version = (*db)->mutate({Mutation::insert("todo", {"id", "title"}, {int64_t{3}, std::string("bread")})});
  REQUIRE(version.ok());
  CHECK(*version > 0);
  REQUIRE(seen.wait_for("+'bread'"));

  // A refused mutation shows (pending) and is rolled back; its outcome says why.
  auto refused = (*db)->mutate({Mutation::insert("todo", {"id", "title"}, {int64_t{1}, std::string("duplicate")})});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == Code::constraint);

  auto done = (*db)->mutate({Mutation::update("todo", {int64_t{2}}, {"done"}, {int64_t{1}})});
  REQUIRE(done.ok());
  REQUIRE(seen.wait_for("-'eggs'"));
  CHECK(seen.size() == 2);

  auto invalid = (*db)->mutate({Mutation::insert("todo", {"id"}, {})});
  CHECK(invalid.status().code() == Code::invalid_argument);

  // A stopped watch gets nothing more.
  watch->stop();
  size_t events = seen.events.size();
  REQUIRE((*db)->exec("INSERT INTO todo(id, title) VALUES (9, 'late')").ok());
  std::this_thread::sleep_for(200ms);
  std::lock_guard<std::mutex> lock(seen.mu);
  CHECK(seen.events.size() == events);
}

TEST_CASE("api: a refused watch and a wrong schema come back as errors", "[api]") {
  tandem::test::TempDir dir;
  auto db = Database::open(options_for(dir / "app.db"));
  REQUIRE(db.ok());
  auto w = (*db)->watch("SELECT nope FROM todo", {}, [](const WatchEvent&) {});
  REQUIRE_FALSE(w.ok());
  CHECK(w.status().code() != Code::ok);
  auto no_callback = (*db)->watch("SELECT id FROM todo", {}, nullptr);
  CHECK(no_callback.status().code() == Code::invalid_argument);

  Options empty = options_for(dir / "other.db");
  empty.schema.clear();
  CHECK(Database::open(empty).status().code() == Code::invalid_argument);
  Options no_path;
  no_path.schema = {kSchema};
  CHECK(Database::open(no_path).status().code() == Code::invalid_argument);
}

TEST_CASE("api: a second Database on the same file follows the first", "[api]") {
  LeaderAndFollower node;
  auto& leader = node.leader;
  auto& follower = node.follower;
  CHECK(leader->is_leader());
  CHECK_FALSE(follower->is_leader());

  Seen seen;
  auto watch = follower->watch("SELECT id, title FROM todo ORDER BY id", {}, [&](const WatchEvent& e) { seen.on_event(e); });
  REQUIRE(watch.ok());
  REQUIRE(leader->mutate({Mutation::insert("todo", {"id", "title"}, {int64_t{1}, std::string("from the leader")})}).ok());
  REQUIRE(seen.wait_for("+'from the leader'"));
  REQUIRE(follower->exec("INSERT INTO todo(id, title) VALUES (2, 'from the follower')").ok());
  REQUIRE(seen.wait_for("+'from the follower'"));
  watch->stop();
  CHECK(follower->close().ok());
  CHECK(leader->close().ok());
}

TEST_CASE("api: when the leading Database closes the follower takes over and its watch goes on", "[api]") {
  LeaderAndFollower node;
  auto& leader = node.leader;
  auto& follower = node.follower;
  REQUIRE_FALSE(follower->is_leader());
  Seen seen;
  auto watch = follower->watch("SELECT id, title FROM todo ORDER BY id", {}, [&](const WatchEvent& e) { seen.on_event(e); });
  REQUIRE(watch.ok());
  REQUIRE(leader->exec("INSERT INTO todo(id, title) VALUES (1, 'before')").ok());
  REQUIRE(seen.wait_for("+'before'"));
  CHECK(leader->close().ok());
  // The application does nothing: the same Database and watch carry on on the new leader.
  Status written;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto r = follower->exec("INSERT INTO todo(id, title) VALUES (2, 'after')");
    written = r.ok() ? Status() : r.status();
    if (written.ok() || written.code() != Code::unavailable) break;
    std::this_thread::sleep_for(50ms);  // a call in flight at the leader's end may fail once
  }
  INFO(written.to_string());
  REQUIRE(written.ok());
  REQUIRE(seen.wait_for("+'after'"));
  CHECK(follower->is_leader());
  CHECK(seen.size() == 2);
  watch->stop();
  CHECK(follower->close().ok());
}

TEST_CASE("api: callbacks may mutate but not block, and nothing works after close", "[api]") {
  tandem::test::TempDir dir;
  auto db = Database::open(options_for(dir / "app.db"));
  REQUIRE(db.ok());
  Database& d = **db;

  std::mutex mu;
  std::condition_variable cv;
  Code blocked = Code::ok;
  bool mutated = false;
  bool asked = false;
  auto watch = d.watch("SELECT id, title FROM todo", {}, [&](const WatchEvent& e) {
    if (e.initial) return;
    std::lock_guard<std::mutex> lock(mu);
    if (asked) return;
    asked = true;
    blocked = d.query("SELECT 1").status().code();
    // Non-blocking from a callback: its outcome comes later, on a library thread.
    d.mutate_async({Mutation::insert("todo", {"id", "title"}, {int64_t{100}, std::string("from a callback")})},
                   [&](const Status& s, int64_t) {
                     std::lock_guard<std::mutex> l(mu);
                     mutated = s.ok();
                     cv.notify_all();
                   });
  });
  REQUIRE(watch.ok());
  REQUIRE(d.exec("INSERT INTO todo(id, title) VALUES (1, 'trigger')").ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, 10s, [&] { return mutated; }));
    CHECK(blocked == Code::wrong_thread);
  }
  auto rows = d.query("SELECT count(*) FROM todo");
  REQUIRE(rows.ok());
  CHECK(std::get<int64_t>(rows->rows[0][0]) == 2);

  REQUIRE(d.close().ok());
  CHECK(d.close().ok());  // idempotent
  CHECK(d.query("SELECT 1").status().code() == Code::closed);
  CHECK(d.exec("INSERT INTO todo(id, title) VALUES (5, 'x')").status().code() == Code::closed);
  CHECK(d.watch("SELECT id FROM todo", {}, [](const WatchEvent&) {}).status().code() == Code::closed);
  CHECK(d.sync_state().status().code() == Code::closed);
  Code outcome = Code::ok;
  d.mutate_async({Mutation::remove("todo", {int64_t{1}})}, [&](const Status& s, int64_t) { outcome = s.code(); });
  CHECK(outcome == Code::closed);
  watch->stop();  // after close: harmless
}

TEST_CASE("api: the sync state without a reachable server", "[api]") {
  tandem::test::TempDir dir;
  auto plain = Database::open(options_for(dir / "plain.db"));
  REQUIRE(plain.ok());
  auto state = (*plain)->sync_state();
  REQUIRE(state.ok());
  CHECK_FALSE(state->syncing);
  CHECK((*plain)->wait_synced(1s).code() == Code::invalid_argument);

  Options o = options_for(dir / "app.db");
  // A closed loopback port: the connection is refused at once.
  o.sync = SyncOptions{"ws://127.0.0.1:1/sync", "not-a-real-token", "", true};
  auto db = Database::open(o);
  REQUIRE(db.ok());
  REQUIRE((*db)->exec("INSERT INTO todo(id, title) VALUES (1, 'pending')").ok());
  Status synced = (*db)->wait_synced(10s);
  CHECK_FALSE(synced.ok());
  auto s = (*db)->sync_state();
  REQUIRE(s.ok());
  CHECK(s->syncing);
  CHECK_FALSE(s->online);
  CHECK_FALSE(s->last_error.empty());
  CHECK(s->acked_version == 0);
  CHECK(s->pending_changes >= 2);  // the row's two columns (title, done)
  CHECK(s->db_version > 0);
}
