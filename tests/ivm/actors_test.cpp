// The view roles composed with the real db_worker in one actor system: two ui_views (tabs) on
// one node, a tab_bus, a watcher actor for one tab and the callback API for the other. Each
// replays the ViewChange messages it receives into its own copy of the result; after every
// step both copies must equal SQLite running the query (waiting, with a generous deadline,
// for the messages in flight), pending mutations show in both tabs, refusals roll back in both.
#include <catch2/catch.hpp>

#include "actors/system_config.hpp"
#include "actors/tab_bus.hpp"
#include "actors/ui_view.hpp"

#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "runtime/ivm/journal.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "tests/ivm/ivm_test_util.hpp"

using namespace std::chrono_literals;

namespace tandem::test {
namespace {

const char* kSchema =
    "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY NOT NULL, name TEXT, qty INTEGER CHECK (qty >= 0), grp INTEGER);"
    "CREATE TABLE IF NOT EXISTS groups(grp INTEGER PRIMARY KEY NOT NULL, label TEXT);"
    "CREATE TRIGGER IF NOT EXISTS items_no_bad BEFORE INSERT ON items WHEN NEW.name = 'bad'"
    " BEGIN SELECT RAISE(ABORT, 'bad name'); END;";

const char* kWindow = "SELECT id, name, qty FROM items WHERE qty > 0 ORDER BY qty DESC, id LIMIT 3";
const char* kJoin = "SELECT groups.label, count(items.id), sum(items.qty) FROM groups LEFT JOIN items ON items.grp = groups.grp GROUP BY groups.label";

caf::actor_system_config& configure(caf::actor_system_config& cfg) {
  configure_actor_system(cfg);
  return cfg;
}

// A receiver's copy of a view's result, kept by replaying changes.
struct Replica {
  bool ordered = false;
  std::vector<std::pair<std::string, Row>> rows;
  std::vector<view::RowChange::Kind> kinds;  // every change seen, in order

  void reset(const view::WatchResponse& w) {
    ordered = w.ordered();
    rows.clear();
    for (const auto& r : w.rows()) rows.emplace_back(r.key(), from_proto(r.row()));
  }
  void apply(const view::ViewChange& c) {
    for (const auto& ch : c.changes()) {
      kinds.push_back(ch.kind());
      Row row = from_proto(ch.row());
      auto find = [&] {
        return std::find_if(rows.begin(), rows.end(), [&](const auto& e) { return e.first == ch.key(); });
      };
      if (ch.kind() == view::RowChange::REMOVED) {
        if (ordered) rows.erase(rows.begin() + ch.position());
        else rows.erase(find());
      } else if (ch.kind() == view::RowChange::ADDED) {
        if (ordered) rows.insert(rows.begin() + ch.position(), {ch.key(), row});
        else rows.emplace_back(ch.key(), row);
      } else if (ordered) {
        rows.erase(rows.begin() + ch.old_position());
        rows.insert(rows.begin() + ch.position(), {ch.key(), row});
      } else {
        find()->second = row;
      }
    }
  }
  std::vector<Row> values() const {
    std::vector<Row> out;
    for (const auto& [k, r] : rows) out.push_back(r);
    return out;
  }
};

std::vector<Row> sqlite_rows(Database& db, const std::string& sql) {
  auto st = db.prepare(sql);
  REQUIRE(st.ok());
  std::vector<Row> out;
  for (;;) {
    auto has = (*st)->step();
    REQUIRE(has.ok());
    if (!*has) break;
    out.push_back((*st)->row());
  }
  return out;
}

bool same_result(const std::vector<Row>& got, const std::vector<Row>& want, bool ordered) {
  if (got.size() != want.size()) return false;
  if (ordered) {
    for (size_t i = 0; i < got.size(); ++i)
      if (!identical(got[i], want[i])) return false;
    return true;
  }
  return sub_multiset(got, want, false);
}

worker::Mutation insert_item(int64_t id, const std::string& name, int64_t qty, int64_t grp) {
  worker::Mutation m;
  m.set_table("items");
  auto* in = m.mutable_insert();
  for (const char* c : {"id", "name", "qty", "grp"}) in->add_columns(c);
  to_proto(Value::Integer(id), in->add_values());
  to_proto(Value::Text(name), in->add_values());
  to_proto(Value::Integer(qty), in->add_values());
  to_proto(Value::Integer(grp), in->add_values());
  return m;
}

worker::Mutation set_qty(int64_t id, int64_t qty) {
  worker::Mutation m;
  m.set_table("items");
  to_proto(Value::Integer(id), m.mutable_update()->add_pk());
  m.mutable_update()->add_columns("qty");
  to_proto(Value::Integer(qty), m.mutable_update()->add_values());
  return m;
}

// The node of these tests: a db_worker on a file of `dir` with the items/groups schema.
DbWorkerConfig node_config(const TempDir& dir, std::shared_ptr<ivm::DeltaJournal> journal) {
  DbWorkerConfig wc;
  wc.path = dir.path + "/node.db";
  wc.store.open.synchronous_full = false;
  wc.schema = {kSchema};
  wc.replicate = {"items", "groups"};
  wc.journal = std::move(journal);
  return wc;
}

// Stops the actors even when an assertion fails (the actor system waits for them).
struct StopAll {
  std::vector<caf::actor> actors;
  ~StopAll() {
    for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }
};

}  // namespace

TEST_CASE("ui_views and the tab_bus with the real db_worker: pending, confirmed, refused, remote", "[ivm][actors]") {
  TempDir dir;
  // What tab2's callback touches outlives the actor system (which waits for tab2 to stop).
  std::mutex mu;
  Replica tab2_join;
  caf::actor_system_config cfg;
  caf::actor_system system{configure(cfg)};
  auto journal = std::make_shared<ivm::DeltaJournal>();
  DbWorkerConfig wc = node_config(dir, journal);
  auto worker = spawn_db_worker(system, wc);
  REQUIRE(worker.ok());
  auto bus = spawn_tab_bus(system, *worker);
  StopAll stop{{caf::actor_cast<caf::actor>(*worker), caf::actor_cast<caf::actor>(bus)}};
  caf::scoped_actor self{system};

  auto sql_write = [&](const std::string& sql) {
    worker::WriteRequest w;
    w.add_statements()->set_sql(sql);
    worker::WriteResponse resp;
    self->request(*worker, 10s, w).receive([&](const worker::WriteResponse& r) { resp = r; },
                                           [&](caf::error& e) { FAIL(caf::to_string(e)); });
    INFO(sql << ": " << resp.error().message());
    REQUIRE(resp.error().code() == change::Error::OK);
  };
  sql_write("INSERT INTO groups VALUES (1, 'one'), (2, 'two'), (3, 'three')");
  sql_write("INSERT INTO items VALUES (1, 'a', 5, 1), (2, 'b', 0, 2), (3, 'c', 9, 1), (4, 'd', 2, 3)");

  // tab2 reports through the callback API (called on tab2's own thread).
  UiViewConfig c1{"tab1", wc.path, journal, *worker, bus, nullptr};
  UiViewConfig c2{"tab2", wc.path, journal, *worker, bus, [&](const view::ViewChange& ch) {
                    std::lock_guard<std::mutex> lock(mu);
                    tab2_join.apply(ch);
                  }};
  auto tab1 = spawn_ui_view(system, c1);
  auto tab2 = spawn_ui_view(system, c2);
  REQUIRE(tab1.ok());
  REQUIRE(tab2.ok());
  stop.actors.push_back(caf::actor_cast<caf::actor>(*tab1));
  stop.actors.push_back(caf::actor_cast<caf::actor>(*tab2));

  // tab1's window, watched by this (scoped) actor through messages.
  Replica tab1_window;
  view::WatchRequest wreq;
  wreq.set_sql(kWindow);
  self->request(*tab1, 10s, wreq).receive([&](const view::WatchResponse& r) {
    REQUIRE(r.error().code() == change::Error::OK);
    REQUIRE(r.ordered());
    tab1_window.reset(r);
  }, [&](caf::error& e) { FAIL(caf::to_string(e)); });
  // tab2's view is watched by another actor (its messages are not read: tab2's callback is).
  caf::scoped_actor other{system};
  view::WatchRequest jreq;
  jreq.set_sql(kJoin);
  other->request(*tab2, 10s, jreq).receive([&](const view::WatchResponse& r) {
    REQUIRE(r.error().code() == change::Error::OK);
    std::lock_guard<std::mutex> lock(mu);
    tab2_join.reset(r);
  }, [&](caf::error& e) { FAIL(caf::to_string(e)); });

  auto oracle_db = Database::open(wc.path, OpenOptions{false});
  REQUIRE(oracle_db.ok());
  // Waits (bounded) for the messages in flight, then compares both receivers with SQLite.
  auto check = [&](const std::string& when) {
    auto want_window = sqlite_rows(**oracle_db, kWindow);
    auto want_join = sqlite_rows(**oracle_db, kJoin);
    bool ok = false;
    for (int i = 0; i < 500 && !ok; ++i) {
      self->receive([&](const view::ViewChange& c) { tab1_window.apply(c); }, caf::after(5ms) >> [] {});
      std::lock_guard<std::mutex> lock(mu);
      ok = same_result(tab1_window.values(), want_window, true) && same_result(tab2_join.values(), want_join, false);
    }
    INFO(when << "\nwindow want:\n" << show(want_window) << "window got:\n" << show(tab1_window.values()) << "join want:\n"
              << show(want_join) << "join got:\n" << show(tab2_join.values()));
    REQUIRE(ok);
  };
  check("after watching");

  auto mutate_via = [&](ui_view_actor& tab, std::vector<worker::Mutation> ms) {
    view::MutateRequest req;
    for (auto& m : ms) *req.add_mutations() = m;
    view::MutateResponse out;
    self->request(tab, 10s, req).receive([&](const view::MutateResponse& r) { out = r; },
                                         [&](caf::error& e) { FAIL(caf::to_string(e)); });
    return out;
  };

  // Confirmed: a new item from tab1 shows in both tabs and stays.
  auto r1 = mutate_via(*tab1, {insert_item(5, "e", 7, 2)});
  REQUIRE(r1.error().code() == change::Error::OK);
  REQUIRE(r1.mutation_id() == "tab1:1");
  check("after a confirmed insert");

  // Refused by the CHECK constraint: shown, then rolled back everywhere; the caller gets why.
  size_t seen;
  {
    std::lock_guard<std::mutex> lock(mu);
    seen = tab2_join.kinds.size();
  }
  auto r2 = mutate_via(*tab1, {set_qty(3, -4)});
  REQUIRE(r2.error().code() == change::Error::CONSTRAINT);
  REQUIRE(r2.error().message().find("CHECK") != std::string::npos);
  check("after a refused update");
  // tab2 saw the pending change and its rollback (the group's sum changed and changed back).
  bool saw_both = false;
  for (int i = 0; i < 1000 && !saw_both; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      saw_both = tab2_join.kinds.size() >= seen + 2;
    }
    if (!saw_both) std::this_thread::sleep_for(5ms);
  }
  REQUIRE(saw_both);

  // Refused by a trigger with RAISE, sent from tab2.
  auto r3 = mutate_via(*tab2, {insert_item(6, "bad", 1, 1)});
  REQUIRE(r3.error().code() == change::Error::CONSTRAINT);
  REQUIRE(r3.error().message().find("bad name") != std::string::npos);
  check("after a refused insert");

  // Malformed: refused before anything is shown or sent.
  worker::Mutation bad = set_qty(1, 3);
  bad.mutable_update()->set_columns(0, "nope");
  auto r4 = mutate_via(*tab2, {bad});
  REQUIRE(r4.error().code() == change::Error::INVALID_ARGUMENT);
  check("after a malformed mutation");

  // Other writers (another client's SQL through the db_worker) reach both tabs exactly once.
  sql_write("UPDATE items SET qty = 11 WHERE id = 4");
  sql_write("DELETE FROM items WHERE id = 1");
  sql_write("INSERT INTO groups VALUES (4, 'four')");
  check("after remote writes");

  // Interleaved mutations from both tabs.
  for (int i = 0; i < 20; ++i) {
    auto& tab = i % 2 ? *tab1 : *tab2;
    int64_t id = 2 + i % 4;  // items 2..5 exist (1 was deleted)
    auto r = mutate_via(tab, {set_qty(id, i % 4 == 0 ? -1 : (i * 5) % 13), insert_item(20 + i, "n", i % 6, 1 + i % 4)});
    INFO(i << ": " << r.error().message());
    REQUIRE(r.error().code() == (i % 4 == 0 ? change::Error::CONSTRAINT : change::Error::OK));
  }
  check("after interleaved mutations");

}

}  // namespace tandem::test

namespace tandem::test {

// Finding: a view that stopped with a mutation in flight left its row in every other view of
// the node for ever. The worker is kept busy so that the view is gone before its write is
// answered; the tab_bus must settle the mutation in the other views by the write's real outcome.
TEST_CASE("a view that stops with a pending mutation leaves no phantom row in the other views", "[ivm][actors]") {
  TempDir dir;
  caf::actor_system_config cfg;
  caf::actor_system system{configure(cfg)};
  auto journal = std::make_shared<ivm::DeltaJournal>();
  DbWorkerConfig wc = node_config(dir, journal);
  auto worker = spawn_db_worker(system, wc);
  REQUIRE(worker.ok());
  auto bus = spawn_tab_bus(system, *worker);
  StopAll stop{{caf::actor_cast<caf::actor>(*worker), caf::actor_cast<caf::actor>(bus)}};
  caf::scoped_actor self{system};
  auto tab2 = spawn_ui_view(system, UiViewConfig{"tab2", wc.path, journal, *worker, bus, nullptr});
  REQUIRE(tab2.ok());
  stop.actors.push_back(caf::actor_cast<caf::actor>(*tab2));
  const std::string kAll = "SELECT id, name, qty FROM items ORDER BY id";
  Replica seen;
  view::WatchRequest wreq;
  wreq.set_sql(kAll);
  self->request(*tab2, 10s, wreq).receive([&](const view::WatchResponse& r) { seen.reset(r); },
                                          [&](caf::error& e) { FAIL(caf::to_string(e)); });
  auto oracle_db = Database::open(wc.path, OpenOptions{false});
  REQUIRE(oracle_db.ok());
  // Waits (bounded) until tab2's result satisfies `done`.
  auto wait_for = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 1000 && !done(); ++i)
      self->receive([&](const view::ViewChange& c) { seen.apply(c); }, caf::after(5ms) >> [] {});
    return done();
  };
  auto shows_id = [&](int64_t id) {
    for (const auto& row : seen.values())
      if (row[0].integer() == id) return true;
    return false;
  };

  for (bool refused : {true, false}) {
    DYNAMIC_SECTION((refused ? "refused by a CHECK" : "committed, later deleted")) {
      auto tab1 = spawn_ui_view(system, UiViewConfig{"tab1", wc.path, journal, *worker, bus, nullptr});
      REQUIRE(tab1.ok());
      // Keeps the worker busy for a while: tab1's write waits behind this query.
      worker::QueryRequest slow;
      slow.set_sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) SELECT count(*) FROM c");
      caf::anon_send(*worker, slow);
      const int64_t id = refused ? 100 : 101;
      view::MutateRequest req;
      *req.add_mutations() = insert_item(id, "phantom?", refused ? -1 : 1, 1);
      caf::anon_send(*tab1, req);
      REQUIRE(wait_for([&] { return shows_id(id); }));  // tab2 shows it as pending
      caf::anon_send_exit(*tab1, caf::exit_reason::kill);
      if (!refused) {
        // Once committed, the row is deleted by another write: a pending insert left behind
        // would keep showing it.
        REQUIRE(wait_for([&] { return !sqlite_rows(**oracle_db, "SELECT id FROM items WHERE id = 101").empty(); }));
        worker::WriteRequest w;
        w.add_statements()->set_sql("DELETE FROM items WHERE id = 101");
        self->request(*worker, 30s, w).receive([&](const worker::WriteResponse& r) { REQUIRE(r.error().code() == change::Error::OK); },
                                               [&](caf::error& e) { FAIL(caf::to_string(e)); });
      }
      bool gone = wait_for([&] { return !shows_id(id); });
      INFO("tab2 shows:\n" << show(seen.values()));
      CHECK(gone);
      CHECK(same_result(seen.values(), sqlite_rows(**oracle_db, kAll), true));
    }
  }
}

// A pusher (the peer_syncer) is told of each local commit with the commit's own changes
// read at once, unless it asked for bare commits (while offline it could not push them, and
// the writer's answer would wait for the read).
TEST_CASE("the db_worker reads a commit's own changes for a pusher only while it asks for them", "[ivm][actors]") {
  TempDir dir;
  caf::actor_system_config cfg;
  caf::actor_system system{configure(cfg)};
  auto worker = spawn_db_worker(system, node_config(dir, nullptr));
  REQUIRE(worker.ok());
  StopAll stop{{caf::actor_cast<caf::actor>(*worker)}};
  caf::scoped_actor self{system};
  auto subscribe = [&](bool bare) {
    worker::SubscribeRequest req;
    req.mutable_own_changes()->set_limit(1000);
    req.mutable_own_changes()->set_max_bytes(int64_t{256} << 10);
    req.set_own_changes_bare(bare);
    self->request(*worker, 10s, req).receive([](const worker::SubscribeResponse&) {},
                                             [&](caf::error& e) { FAIL(caf::to_string(e)); });
  };
  // Writes one row; returns the LocalCommit the pusher was told of.
  auto write = [&](int id) {
    worker::WriteRequest w;
    w.add_statements()->set_sql("INSERT INTO items VALUES (" + std::to_string(id) + ", 'x', 1, 1)");
    self->request(*worker, 10s, w).receive([&](const worker::WriteResponse& r) { REQUIRE(r.error().code() == change::Error::OK); },
                                           [&](caf::error& e) { FAIL(caf::to_string(e)); });
    worker::LocalCommit told;
    bool got = false;
    self->receive([&](worker::LocalCommit& c) { told = std::move(c); got = true; },
                  caf::after(10s) >> [] {});
    REQUIRE(got);
    return told;
  };
  subscribe(false);
  auto attached = write(1);
  REQUIRE(attached.has_changes());
  CHECK(attached.changes().batch().changes_size() > 0);
  subscribe(true);  // the same pusher subscribing again changes its subscription
  auto bare = write(2);
  CHECK(bare.batch().db_version() == attached.batch().db_version() + 1);
  CHECK_FALSE(bare.has_changes());
  subscribe(false);
  auto again = write(3);
  REQUIRE(again.has_changes());
  CHECK(again.changes().batch().changes_size() > 0);
  // Told once per commit: the second subscription did not add a second pusher.
  bool more = false;
  self->receive([&](worker::LocalCommit&) { more = true; }, caf::after(200ms) >> [] {});
  CHECK_FALSE(more);
}

}  // namespace tandem::test
