// Actor graphs in one process: a server (directory, channels, sessions behind a real
// WebSocket listener) and three client nodes (db_worker + peer_syncer + tab_bus + ui_view
// each). Writes on every node, including while one node is offline, converge everywhere and
// every node's live view shows what its database holds; an acknowledged write is on the
// server; a node that was offline catches up on reconnect.
#include <catch2/catch.hpp>

#include "actors/system_config.hpp"
#include "actors/peer_syncer.hpp"
#include "actors/session.hpp"
#include "actors/tab_bus.hpp"
#include "actors/ui_view.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scheduled_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <caf/send.hpp>

#include "runtime/auth/token.hpp"
#include "runtime/ivm/journal.hpp"
#include "runtime/sqlite/proto_value.hpp"

#include "tests/common/temp_dir.hpp"
#include "tests/net/view_mirror.hpp"

using namespace tandem;
using tandem::test::TempDir;
using tandem::test::Mirror;
using tandem::test::mirror_actor;
using namespace std::chrono_literals;

namespace {

const std::string kSecret = "graph-test-secret-0123456789abcdef0123456789";
const char* kSchema = "CREATE TABLE IF NOT EXISTS todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0)";


caf::actor_system_config& make_config(caf::actor_system_config& cfg) {
  configure_actor_system(cfg);
  return cfg;
}

struct Node {
  db_worker_actor worker;
  actors::peer_syncer_actor syncer;
  tab_bus_actor bus;
  ui_view_actor view;
  view_watcher_actor watcher;
  std::shared_ptr<Mirror> mirror;
  // Held here too: the journal must outlive the view's LiveViews whatever order the
  // stopping actors release it in.
  std::shared_ptr<ivm::DeltaJournal> journal;
};

struct Graph {
  TempDir dir;
  caf::actor_system_config cfg;
  caf::actor_system system{make_config(cfg)};
  actors::directory_actor directory;
  std::shared_ptr<net::EventLoop> server_loop = std::make_shared<net::EventLoop>(1);
  std::shared_ptr<net::EventLoop> client_loop = std::make_shared<net::EventLoop>(1);
  std::unique_ptr<net::Server> server;
  std::deque<Node> nodes;  // stable references
  std::vector<Node> retired;
  std::vector<std::string> schema{kSchema};  // every node's; must declare todo (the watched table)

  Graph() {
    actors::DirectoryConfig dc;
    dc.data_dir = dir.path + "/server";
    dc.idle_close = 60s;
    directory = actors::spawn_directory(system, dc);
    auto sc = std::make_shared<actors::SessionConfig>();
    sc->secret = kSecret;
    auto s = net::Server::listen(*server_loop, {}, actors::make_session_acceptor(system, sc, directory));
    REQUIRE(s.ok());
    server = std::move(*s);
  }
  ~Graph() {
    for (auto& n : nodes) stop(n);
    server->stop();
    caf::anon_send_exit(directory, caf::exit_reason::user_shutdown);
    system.await_all_actors_done();
  }

  static void stop(Node& n) {
    for (auto a : {caf::actor_cast<caf::actor>(n.watcher), caf::actor_cast<caf::actor>(n.view),
                   caf::actor_cast<caf::actor>(n.bus), caf::actor_cast<caf::actor>(n.syncer),
                   caf::actor_cast<caf::actor>(n.worker)})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  }

  Node& add_node(const std::string& name, const std::string& user = "alice", bool online = true,
                 size_t push_batch_changes = 2000) {
    DbWorkerConfig wc;
    wc.path = dir.path + "/" + name + ".db";
    wc.schema = schema;
    wc.name = name;
    wc.journal = std::make_shared<ivm::DeltaJournal>();
    auto worker = spawn_db_worker(system, wc);
    INFO(worker.status().to_string());
    REQUIRE(worker.ok());
    actors::PeerSyncerConfig pc;
    pc.url = "ws://127.0.0.1:" + std::to_string(server->port()) + "/sync";
    auto token = auth::mint_token(kSecret, user, std::chrono::hours(1));
    REQUIRE(token.ok());
    pc.token = *token;
    pc.loop = client_loop;
    pc.schema = schema;
    pc.client_name = name;
    pc.backoff_base = 20ms;
    pc.backoff_cap = 200ms;
    pc.seed = 7 + nodes.size();
    pc.start_online = online;
    pc.push_batch_changes = push_batch_changes;
    auto syncer = actors::spawn_peer_syncer(system, *worker, pc);
    Node n{*worker, syncer, spawn_tab_bus(system, *worker), {}, {}, std::make_shared<Mirror>(), wc.journal};
    UiViewConfig vc;
    vc.name = name + "-view";
    vc.database_path = wc.path;
    vc.journal = wc.journal;
    vc.worker = n.worker;
    vc.bus = n.bus;
    auto view = spawn_ui_view(system, vc);
    REQUIRE(view.ok());
    n.view = *view;
    n.watcher = system.spawn(mirror_actor, n.mirror, n.view);
    nodes.push_back(n);
    return nodes.back();
  }

  int64_t write(Node& n, const std::string& sql) { return write_all(n, {sql}); }

  // One transaction of several statements.
  int64_t write_all(Node& n, const std::vector<std::string>& statements) {
    caf::scoped_actor self{system};
    worker::WriteRequest req;
    for (const auto& sql : statements) req.add_statements()->set_sql(sql);
    int64_t version = -1;
    self->request(n.worker, 10s, req)
        .receive(
            [&](worker::WriteResponse& r) {
              INFO(r.error().message());
              REQUIRE(r.error().code() == change::Error::OK);
              version = r.db_version();
            },
            [&](caf::error& e) { FAIL(system.render(e)); });
    return version;
  }

  std::string rows(Node& n) { return query(n, "SELECT id, title, done FROM todo ORDER BY id"); }

  std::string query(Node& n, const std::string& sql) {
    caf::scoped_actor self{system};
    worker::QueryRequest q;
    q.set_sql(sql);
    std::string out;
    self->request(n.worker, 10s, q)
        .receive(
            [&](worker::QueryResponse& r) {
              REQUIRE(r.error().code() == change::Error::OK);
              for (const auto& row : r.rows()) {
                for (const auto& v : row.values()) out += from_proto(v).to_sql_literal() + " ";
                out += "\n";
              }
            },
            [&](caf::error& e) { FAIL(system.render(e)); });
    return out;
  }

  // True once the server durably holds the node's changes up to `version`.
  bool wait_acked(Node& n, int64_t version) {
    caf::scoped_actor self{system};
    bool ok = false;
    self->request(n.syncer, 20s, actors::wait_acked_atom::value, version)
        .receive([&](int64_t acked) { ok = acked >= version; }, [&](caf::error&) { ok = false; });
    return ok;
  }

  bool caught_up(Node& n) {
    caf::scoped_actor self{system};
    bool ok = false;
    self->request(n.syncer, 20s, actors::caught_up_atom::value)
        .receive([&](int64_t, int64_t) { ok = true; }, [&](caf::error&) { ok = false; });
    return ok;
  }

  // Waits (bounded) until the nodes (default: all) hold the same rows; returns them.
  std::string converge(std::vector<Node*> which = {}) {
    if (which.empty())
      for (auto& n : nodes) which.push_back(&n);
    for (int round = 0; round < 200; ++round) {
      for (auto* n : which) REQUIRE(caught_up(*n));
      std::string first = rows(*which[0]);
      bool same = true;
      for (size_t i = 1; i < which.size(); ++i) same = same && rows(*which[i]) == first;
      // Every node's live view shows the same rows as its database.
      for (auto* n : which) same = same && n->mirror->render() == first;
      if (same) return first;
      std::this_thread::sleep_for(25ms);
    }
    for (auto* n : which) {
      INFO("database: " << rows(*n) << " view: " << n->mirror->render());
      CHECK(false);
    }
    FAIL("nodes (or their views) did not converge");
    return {};
  }

  void set_online(Node& n, bool online) { caf::anon_send(n.syncer, actors::online_atom::value, online); }
};

}  // namespace

TEST_CASE("three nodes and a server converge, including writes made offline", "[graph]") {
  Graph g;
  auto& a = g.add_node("a");
  auto& b = g.add_node("b");
  auto& c = g.add_node("c", "alice", /*online=*/false);

  const int64_t va = g.write(a, "INSERT INTO todo(id, title) VALUES (1, 'from a')");
  REQUIRE(g.wait_acked(a, va));
  g.write(b, "INSERT INTO todo(id, title) VALUES (2, 'from b')");
  // c is offline: its writes commit locally at once and wait for the link.
  g.write(c, "INSERT INTO todo(id, title) VALUES (3, 'from c, offline')");
  g.write(c, "UPDATE todo SET done = 1 WHERE id = 3");
  CHECK(g.rows(c) == "3 'from c, offline' 1 \n");

  // Concurrent updates of one cell: the higher value wins on equal col_version.
  g.write(a, "UPDATE todo SET title = 'a wins?' WHERE id = 1");
  g.write(b, "INSERT INTO todo(id, title) VALUES (4, 'b')");
  CHECK(g.converge({&a, &b}) == "1 'a wins?' 0 \n2 'from b' 0 \n4 'b' 0 \n");
  CHECK(g.rows(c) == "3 'from c, offline' 1 \n");  // still offline: nothing arrived

  g.set_online(c, true);
  const std::string all = g.converge();
  CHECK(all == "1 'a wins?' 0 \n2 'from b' 0 \n3 'from c, offline' 1 \n4 'b' 0 \n");

  // Offline again, conflicting writes on both sides, then back.
  g.set_online(b, false);
  g.write(b, "UPDATE todo SET done = 5 WHERE id = 2");
  g.write(a, "UPDATE todo SET done = 3 WHERE id = 2");
  g.write(c, "DELETE FROM todo WHERE id = 4");
  g.set_online(b, true);
  const std::string final_rows = g.converge();
  CHECK(final_rows == "1 'a wins?' 0 \n2 'from b' 5 \n3 'from c, offline' 1 \n");
}

TEST_CASE("another user's nodes never see the data", "[graph]") {
  Graph g;
  auto& a = g.add_node("a", "alice");
  auto& m = g.add_node("m", "mallory");
  REQUIRE(g.wait_acked(a, g.write(a, "INSERT INTO todo(id, title) VALUES (1, 'alice only')")));
  REQUIRE(g.wait_acked(m, g.write(m, "INSERT INTO todo(id, title) VALUES (9, 'mallory')")));
  REQUIRE(g.caught_up(a));
  REQUIRE(g.caught_up(m));
  CHECK(g.rows(a) == "1 'alice only' 0 \n");
  CHECK(g.rows(m) == "9 'mallory' 0 \n");
}

TEST_CASE("a node restarted on the same file pushes what was never acknowledged", "[graph]") {
  Graph g;
  auto& a = g.add_node("a");
  auto& b = g.add_node("b");
  g.set_online(a, false);
  g.write(a, "INSERT INTO todo(id, title) VALUES (1, 'written offline, then restarted')");
  // a's actors stop before anything was pushed; a new pair opens the same file once the old
  // worker closed it (one Store per file: the old one must be gone).
  caf::scoped_actor watcher{g.system};
  watcher->monitor(a.worker);
  Graph::stop(a);
  bool closed = false;
  watcher->receive([&](caf::down_msg&) { closed = true; }, caf::after(std::chrono::seconds(30)) >> [] {});
  REQUIRE(closed);
  g.retired.push_back(g.nodes.front());  // keeps its journal until the graph stops
  g.nodes.pop_front();
  g.add_node("a");
  const std::string rows = g.converge();
  CHECK(rows == "1 'written offline, then restarted' 0 \n");
  (void)b;
}

TEST_CASE("a transaction larger than a push is pushed in parts and converges", "[graph]") {
  Graph g;
  auto& a = g.add_node("a", "alice", true, /*push_batch_changes=*/64);
  auto& b = g.add_node("b");
  std::string values;
  for (int i = 1; i <= 1500; ++i) values += (i > 1 ? "," : "") + std::string("(") + std::to_string(i) + ", 'row')";
  const int64_t v = g.write(a, "INSERT INTO todo(id, title) VALUES " + values);
  REQUIRE(g.wait_acked(a, v));
  const std::string rows = g.converge();
  CHECK(std::count(rows.begin(), rows.end(), '\n') == 1500);
  (void)b;
}

TEST_CASE("every key kind the store accepts syncs both ways between two devices through the server", "[graph][keys]") {
  Graph g;
  g.schema = {
      kSchema,
      "CREATE TABLE IF NOT EXISTS note(id TEXT PRIMARY KEY NOT NULL, body TEXT)",
      "CREATE TABLE IF NOT EXISTS cell(a TEXT NOT NULL, b INTEGER NOT NULL, v TEXT, PRIMARY KEY(a, b))",
      "CREATE TABLE IF NOT EXISTS tag(name TEXT NOT NULL, item INTEGER NOT NULL, PRIMARY KEY(name, item))",
      "CREATE TABLE IF NOT EXISTS label(name TEXT PRIMARY KEY NOT NULL)",
      "CREATE TABLE IF NOT EXISTS num(k INT PRIMARY KEY NOT NULL, v TEXT)",
      "CREATE TABLE IF NOT EXISTS measure(x REAL NOT NULL PRIMARY KEY, v TEXT)",
  };
  auto& a = g.add_node("a");
  auto& b = g.add_node("b");
  const int64_t va = g.write_all(a,
                             {"INSERT INTO todo(id, title) VALUES (1, 'int key from a')", "INSERT INTO note VALUES ('n-a', 'text key from a')", "INSERT INTO cell VALUES ('x', 1, 'composite from a')", "INSERT INTO tag VALUES ('red', 1)", "INSERT INTO label VALUES ('only-key-a')", "INSERT INTO num VALUES (10, 'int non-rowid from a')", "INSERT INTO measure VALUES (1.5, 'real key from a')"});
  REQUIRE(g.wait_acked(a, va));
  const int64_t vb = g.write_all(b,
                             {"INSERT INTO todo(id, title) VALUES (2, 'int key from b')", "INSERT INTO note VALUES ('n-b', 'text key from b')", "INSERT INTO cell VALUES ('x', 2, 'composite from b')", "INSERT INTO tag VALUES ('red', 2)", "INSERT INTO label VALUES ('only-key-b')", "INSERT INTO num VALUES (20, 'int non-rowid from b')", "INSERT INTO measure VALUES (2.5, 'real key from b')"});
  REQUIRE(g.wait_acked(b, vb));
  auto dump = [&](Node& n) {
    return g.query(n, "SELECT id, title FROM todo ORDER BY id") + "|" + g.query(n, "SELECT * FROM note ORDER BY id") + "|" +
           g.query(n, "SELECT * FROM cell ORDER BY a, b") + "|" + g.query(n, "SELECT * FROM tag ORDER BY name, item") + "|" +
           g.query(n, "SELECT * FROM label ORDER BY name") + "|" + g.query(n, "SELECT * FROM num ORDER BY k") + "|" +
           g.query(n, "SELECT * FROM measure ORDER BY x");
  };
  auto converged = [&] {
    for (int round = 0; round < 200; ++round) {
      REQUIRE(g.caught_up(a));
      REQUIRE(g.caught_up(b));
      if (dump(a) == dump(b)) return dump(a);
      std::this_thread::sleep_for(25ms);
    }
    FAIL("a: " << dump(a) << " b: " << dump(b));
    return std::string();
  };
  CHECK(converged() ==
        "1 'int key from a' \n2 'int key from b' \n|"
        "'n-a' 'text key from a' \n'n-b' 'text key from b' \n|"
        "'x' 1 'composite from a' \n'x' 2 'composite from b' \n|"
        "'red' 1 \n'red' 2 \n|"
        "'only-key-a' \n'only-key-b' \n|"
        "10 'int non-rowid from a' \n20 'int non-rowid from b' \n|"
        "1.5 'real key from a' \n2.5 'real key from b' \n");

  // Updates and deletes of rows the other device created travel back, on every key kind.
  const int64_t vb2 = g.write_all(b,
                              {"UPDATE note SET body = 'edited by b' WHERE id = 'n-a'", "UPDATE cell SET v = 'edited by b' WHERE a = 'x' AND b = 1", "DELETE FROM tag WHERE name = 'red' AND item = 1", "DELETE FROM label WHERE name = 'only-key-a'", "UPDATE num SET v = 'edited by b' WHERE k = 10", "DELETE FROM measure WHERE x = 1.5"});
  REQUIRE(g.wait_acked(b, vb2));
  const int64_t va2 = g.write_all(a, {"UPDATE note SET body = 'edited by a' WHERE id = 'n-b'", "DELETE FROM cell WHERE a = 'x' AND b = 2"});
  REQUIRE(g.wait_acked(a, va2));
  CHECK(converged() ==
        "1 'int key from a' \n2 'int key from b' \n|"
        "'n-a' 'edited by b' \n'n-b' 'edited by a' \n|"
        "'x' 1 'edited by b' \n|"
        "'red' 2 \n|"
        "'only-key-b' \n|"
        "10 'edited by b' \n20 'int non-rowid from b' \n|"
        "2.5 'real key from b' \n");
}
