// Schema evolution with the real `tandem client` (docs/schema.md): a device opened with schema
// v1 is reopened with a newer additive schema v2 and keeps its rows, which its `query` and
// `exec` then use with the new column and table; a v3 that drops a column is refused with
// exit code 2 and a message naming the table and column, and the file still opens with v2.
// The first test's server is a port that refuses connections: writes stay local (exit code 3,
// "not yet acknowledged"). The others sync through a real server: devices on old and new
// schemas, a device upgraded late that is backfilled every row it missed, and three devices
// upgraded one at a time while they all keep writing, one of them watching a live query.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;
using namespace tandem_process_test;

namespace {

const char* kV1 = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT);\n";
const char* kV2 =
    "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT,\n"
    "                  note TEXT,                          -- new, nullable\n"
    "                  prio INTEGER NOT NULL DEFAULT 2);   -- new, with a DEFAULT\n"
    "CREATE INDEX todo_prio ON todo(prio);\n"
    "CREATE TABLE tag(id INTEGER PRIMARY KEY, todo INTEGER, label TEXT);\n";
// v3 drops `note`.
const char* kV3 =
    "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT, prio INTEGER NOT NULL DEFAULT 2);\n"
    "CREATE INDEX todo_prio ON todo(prio);\n"
    "CREATE TABLE tag(id INTEGER PRIMARY KEY, todo INTEGER, label TEXT);\n";

struct Device {
  World& world;
  LoopbackPort& port;
  std::string db = world.dir / "device.db";

  std::string schema_file(const std::string& name, const char* text) {
    const std::string path = world.dir / name;
    std::ofstream(path) << text;
    return path;
  }
  RunResult query(const std::string& schema, const std::string& sql, const std::string& log = "query.log") {
    return run({kTandem, "client", "--db", db, "--schema", schema, "query", sql}, world.dir / log);
  }
  // A local write: the server refuses connections, so it is kept and reported unacknowledged.
  RunResult exec(const std::string& schema, const std::string& sql) {
    return run({kTandem, "client", "--server", port.url(), "--token", world.token("alice"), "--timeout", "2s", "--db", db,
                "--schema", schema, "exec", sql},
               world.dir / "exec.log");
  }
};

}  // namespace

TEST_CASE("a device reopened with an additive schema keeps its rows and uses the new columns", "[process][schema]") {
  World world;
  LoopbackPort port(/*listening=*/false);  // connections are refused at once
  Device device{world, port};
  const std::string v1 = device.schema_file("v1.sql", kV1);
  const std::string v2 = device.schema_file("v2.sql", kV2);
  const std::string v3 = device.schema_file("v3.sql", kV3);

  auto first = device.exec(v1, "INSERT INTO todo(id, title) VALUES (1, 'milk'), (2, 'bread')");
  INFO(slurp(world.dir / "exec.log"));
  REQUIRE(first.code == 3);  // written locally, not acknowledged
  CHECK(nlohmann::json::parse(first.out)["rows_changed"] == 2);

  // v2: the rows are there, with the new columns' NULL and DEFAULT.
  auto rows = device.query(v2, "SELECT id, title, note, prio FROM todo ORDER BY id");
  INFO(slurp(world.dir / "query.log"));
  REQUIRE(rows.code == 0);
  CHECK(rows.out == "[{\"id\":1,\"note\":null,\"prio\":2,\"title\":\"milk\"},{\"id\":2,\"note\":null,\"prio\":2,\"title\":\"bread\"}]\n");

  // exec writes the new column and the new table; query reads them, through the new index.
  REQUIRE(device.exec(v2, "UPDATE todo SET note = 'oat', prio = 1 WHERE id = 1").code == 3);
  REQUIRE(device.exec(v2, "INSERT INTO tag(id, todo, label) VALUES (1, 1, 'shop')").code == 3);
  REQUIRE(device.exec(v2, "INSERT INTO todo(id, title, note) VALUES (3, 'tea', 'green')").code == 3);
  rows = device.query(v2, "SELECT t.id, t.note, t.prio, g.label FROM todo t LEFT JOIN tag g ON g.todo = t.id WHERE t.prio <= 2 ORDER BY t.id");
  REQUIRE(rows.code == 0);
  CHECK(rows.out ==
        "[{\"id\":1,\"label\":\"shop\",\"note\":\"oat\",\"prio\":1},{\"id\":2,\"label\":null,\"note\":null,\"prio\":2},"
        "{\"id\":3,\"label\":null,\"note\":\"green\",\"prio\":2}]\n");
  auto indexes = device.query(v2, "SELECT name FROM pragma_index_list('todo')");
  REQUIRE(indexes.code == 0);
  CHECK(indexes.out == "[{\"name\":\"todo_prio\"}]\n");

  // v3 drops a column: refused with exit code 2, naming the table and the column.
  auto refused = device.query(v3, "SELECT id FROM todo", "refused.log");
  const std::string why = slurp(world.dir / "refused.log");
  INFO(why);
  CHECK(refused.code == 2);
  CHECK(why.find("table todo") != std::string::npos);
  CHECK(why.find("dropping column note") != std::string::npos);

  // Nothing changed: the same file still opens with v2, every row and value intact.
  rows = device.query(v2, "SELECT id, title, note, prio FROM todo ORDER BY id");
  REQUIRE(rows.code == 0);
  CHECK(rows.out ==
        "[{\"id\":1,\"note\":\"oat\",\"prio\":1,\"title\":\"milk\"},{\"id\":2,\"note\":null,\"prio\":2,\"title\":\"bread\"},"
        "{\"id\":3,\"note\":\"green\",\"prio\":2,\"title\":\"tea\"}]\n");
  REQUIRE(device.exec(v2, "UPDATE todo SET note = NULL WHERE id = 3").code == 3);
}

TEST_CASE("devices on the old and the new schema sync through one server", "[process][schema]") {
  World world;
  world.start_server();
  std::ofstream(world.dir / "old.sql") << "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT);\n";
  std::ofstream(world.dir / "new.sql") << "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT, note TEXT DEFAULT '');\n";
  auto client = [&](const std::string& db, const std::string& schema, std::vector<std::string> rest) {
    std::vector<std::string> args{kTandem, "client", "--server", world.url, "--token", world.token("alice"), "--db", world.dir / db,
                                  "--schema", world.dir / schema, "--name", db};
    args.insert(args.end(), rest.begin(), rest.end());
    auto r = run(args, world.dir / (db + ".log"));
    INFO(db << ": " << slurp(world.dir / (db + ".log")) << slurp(world.dir / "server.log"));
    REQUIRE(r.code == 0);
    return r.out;
  };
  client("old.db", "old.sql", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'milk')"});
  // The newer device joins the channel the old schema created: its column is adopted.
  client("new.db", "new.sql", {"sync"});
  client("new.db", "new.sql", {"exec", "UPDATE todo SET note = 'oat' WHERE id = 1"});
  client("new.db", "new.sql", {"exec", "INSERT INTO todo(id, title, note) VALUES (2, 'tea', 'green')"});
  // The old device receives the rows without the column it lacks, and keeps writing.
  client("old.db", "old.sql", {"sync"});
  CHECK(client("old.db", "old.sql", {"query", "SELECT id, title FROM todo ORDER BY id"}) ==
        "[{\"id\":1,\"title\":\"milk\"},{\"id\":2,\"title\":\"tea\"}]\n");
  client("old.db", "old.sql", {"exec", "UPDATE todo SET title = 'oat milk' WHERE id = 1"});
  // The new device's value survives the old device's write to another column of the row.
  client("new.db", "new.sql", {"sync"});
  CHECK(client("new.db", "new.sql", {"query", "SELECT id, title, note FROM todo ORDER BY id"}) ==
        "[{\"id\":1,\"note\":\"oat\",\"title\":\"oat milk\"},{\"id\":2,\"note\":\"green\",\"title\":\"tea\"}]\n");
}

namespace {

// `tandem client` of one device through the world's server, with the schema file it ships.
struct Fleet {
  World& world;
  std::vector<std::string> args(const std::string& db, const std::string& schema, const std::vector<std::string>& rest) {
    std::vector<std::string> a{kTandem, "client", "--server", world.url, "--token", world.token("alice"), "--db", world.dir / db,
                               "--schema", world.dir / schema, "--name", db, "--log-level", "info"};
    a.insert(a.end(), rest.begin(), rest.end());
    return a;
  }
  std::string operator()(const std::string& db, const std::string& schema, const std::vector<std::string>& rest) {
    auto r = run(args(db, schema, rest), world.dir / (db + ".log"));
    INFO(db << " " << schema << ": " << slurp(world.dir / (db + ".log")) << slurp(world.dir / "server.log"));
    REQUIRE(r.code == 0);
    return r.out;
  }
};

std::string values(const std::string& prefix, int from, int to, const std::string& tuple) {
  std::string out = prefix;
  for (int i = from; i <= to; ++i) {
    std::string t = tuple;
    for (size_t at; (at = t.find('#')) != std::string::npos;) t.replace(at, 1, std::to_string(i));
    out += (i == from ? "" : ", ") + t;
  }
  return out;
}

// A `watch --json` process and the result it shows, rebuilt from its lines.
struct WatchedView {
  std::unique_ptr<Process> p;
  std::map<int64_t, nlohmann::json> rows;
  void apply(const nlohmann::json& j) {
    if (j["type"] == "result") {
      rows.clear();
      for (const auto& r : j["rows"]) rows[r["id"].get<int64_t>()] = r;
    } else if (j["type"] == "removed") {
      rows.erase(j["row"]["id"].get<int64_t>());
    } else {
      rows[j["row"]["id"].get<int64_t>()] = j["row"];
    }
  }
  // Reads the watch's lines until it shows `wanted` (a query's JSON rows); false after 20 s.
  bool shows(const std::string& wanted) {
    const auto end = std::chrono::steady_clock::now() + 20s;
    for (;;) {
      nlohmann::json now = nlohmann::json::array();
      for (const auto& [id, r] : rows) now.push_back(r);
      if (now == nlohmann::json::parse(wanted)) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      auto line = p->line(left);
      if (!line) return false;
      apply(nlohmann::json::parse(*line));
    }
  }
};

const char* kFleetV1 = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT);\n";
const char* kFleetV2 = "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT, note TEXT DEFAULT 'none');\n";
const char* kFleetV3 =
    "CREATE TABLE todo(id INTEGER PRIMARY KEY, title TEXT, note TEXT DEFAULT 'none');\n"
    "CREATE TABLE tag(id INTEGER PRIMARY KEY, todo INTEGER, label TEXT);\n";

}  // namespace

TEST_CASE("a device upgraded late is backfilled every row written before its upgrade", "[process][schema][backfill]") {
  World world;
  world.start_server();
  std::ofstream(world.dir / "v1.sql") << kFleetV1;
  std::ofstream(world.dir / "v3.sql") << kFleetV3;
  Fleet client{world};
  // Device 1 is on the newest schema from the start: it writes the new column and table.
  client("d1.db", "v3.sql", {"exec", values("INSERT INTO todo(id, title, note) VALUES ", 1, 60, "(#, 't#', 'n#')")});
  client("d1.db", "v3.sql", {"exec", values("INSERT INTO tag(id, todo, label) VALUES ", 1, 30, "(#, #, 'l#')")});
  // Device 2 stays on v1 and syncs, twice, while device 1 keeps changing the new column and table.
  client("d2.db", "v1.sql", {"sync"});
  client("d1.db", "v3.sql", {"exec", "UPDATE todo SET note = 'changed ' || id WHERE id % 7 = 0"});
  client("d1.db", "v3.sql", {"exec", "DELETE FROM tag WHERE id IN (3, 4)"});
  client("d1.db", "v3.sql", {"exec", "UPDATE todo SET title = 'retitled' WHERE id = 2"});
  client("d2.db", "v1.sql", {"sync"});
  const char* todos = "SELECT id, title, note FROM todo ORDER BY id";
  const char* tags = "SELECT id, todo, label FROM tag ORDER BY id";
  CHECK(client("d2.db", "v1.sql", {"query", "SELECT count(*) AS n FROM todo"}) == "[{\"n\":60}]\n");

  // Much later, device 2 upgrades. Its cursor is past every row, yet once `sync` says it is
  // caught up it holds every value (`query` reads the local file, no network).
  client("d2.db", "v3.sql", {"sync"});
  const std::string want_todos = client("d1.db", "v3.sql", {"query", todos});
  const std::string want_tags = client("d1.db", "v3.sql", {"query", tags});
  CHECK(want_todos.find("\"note\":\"changed 14\"") != std::string::npos);
  CHECK(client("d2.db", "v3.sql", {"query", todos}) == want_todos);
  CHECK(client("d2.db", "v3.sql", {"query", tags}) == want_tags);
}

TEST_CASE("three devices upgraded one at a time while all keep writing converge, views exact", "[process][schema][backfill]") {
  World world;
  world.start_server();
  std::ofstream(world.dir / "v1.sql") << kFleetV1;
  std::ofstream(world.dir / "v2.sql") << kFleetV2;
  std::ofstream(world.dir / "v3.sql") << kFleetV3;
  Fleet client{world};
  std::map<std::string, std::string> schema{{"a.db", "v1.sql"}, {"b.db", "v1.sql"}, {"c.db", "v1.sql"}};
  int next_id = 1;
  // Every device writes what its schema knows: a new row, a title of a row another device
  // wrote, and, from v2 and v3, the notes of its new row and of the one before, and a tag.
  auto round = [&](int r) {
    for (const auto& [db, file] : schema) {
      const int id = next_id++;
      client(db, file, {"exec", "INSERT INTO todo(id, title) VALUES (" + std::to_string(id) + ", '" + db + " r" + std::to_string(r) + "')"});
      client(db, file, {"exec", "UPDATE todo SET title = title || '+" + db + "' WHERE id = " + std::to_string(std::max(1, id - 2))});
      if (file != "v1.sql")
        client(db, file, {"exec", "UPDATE todo SET note = '" + db + " r" + std::to_string(r) + "' WHERE id IN (" + std::to_string(id) +
                                      ", " + std::to_string(id - 1) + ")"});
      if (file == "v3.sql")
        client(db, file, {"exec", "INSERT INTO tag(id, todo, label) VALUES (" + std::to_string(id) + ", 1, '" + db + "')"});
    }
  };
  round(0);
  round(1);
  schema["a.db"] = "v2.sql";  // a first: its new column, while b and c keep writing on v1
  round(2);
  schema["b.db"] = "v2.sql";
  round(3);
  schema["a.db"] = "v3.sql";  // a again: the new table
  round(4);
  // c upgrades last, straight to v3, inside a watch that runs from now on: its view shows the
  // backfilled notes and tags as they arrive, then every later write.
  schema["c.db"] = "v3.sql";
  WatchedView view;
  view.p = std::make_unique<Process>(client.args("c.db", "v3.sql", {"watch", "SELECT id, title, note FROM todo ORDER BY id", "--json"}),
                                     world.dir / "c.watch.log");
  round(5);  // c's writes join the watching process
  round(6);
  for (const auto& [db, file] : schema) client(db, file, {"sync"});
  for (const auto& [db, file] : schema) client(db, file, {"sync"});

  const char* notes = "SELECT id, title, note FROM todo ORDER BY id";
  const char* titles = "SELECT id, title FROM todo ORDER BY id";
  const char* tags = "SELECT id, todo, label FROM tag ORDER BY id";
  // The newest devices hold everything; b (v2) the same for the columns it knows.
  const std::string all = client("a.db", "v3.sql", {"query", notes});
  CHECK(client("c.db", "v3.sql", {"query", notes}) == all);
  CHECK(client("b.db", "v2.sql", {"query", notes}) == all);
  CHECK(client("c.db", "v3.sql", {"query", tags}) == client("a.db", "v3.sql", {"query", tags}));
  CHECK(client("a.db", "v3.sql", {"query", titles}) == client("b.db", "v2.sql", {"query", titles}));
  CHECK(nlohmann::json::parse(client("a.db", "v3.sql", {"query", "SELECT count(*) AS n FROM tag"}))[0]["n"] == 5);
  // Notes written before c's upgrade, by a and by b, reached c.
  CHECK(all.find("\"note\":\"a.db r2\"") != std::string::npos);
  CHECK(all.find("\"note\":\"b.db r3\"") != std::string::npos);
  INFO(slurp(world.dir / "c.watch.log"));
  CHECK(view.shows(all));
  view.p->signal(SIGTERM);
  CHECK(view.p->wait(10s) == 0);
}
