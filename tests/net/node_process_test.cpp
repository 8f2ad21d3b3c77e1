// A node over several processes of the real binary (docs/node.md): `tandem client` processes
// on one --db form one node. The first is the leader; the others join it over `<db>.node`.
// Every wait is bounded.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <iostream>

#include <nlohmann/json.hpp>

#include "tests/net/process_util.hpp"

using namespace std::chrono_literals;
using namespace tandem_process_test;

namespace {

std::vector<std::string> with(std::vector<std::string> args, const std::vector<std::string>& more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

// The next JSON line of a watch, which must be a row change.
nlohmann::json next_change(Process& p) {
  auto line = p.line(10s);
  REQUIRE(line);
  return nlohmann::json::parse(*line);
}

}  // namespace

TEST_CASE("node processes: a watch in one process shows another process's exec at once, a refused write shows nothing",
          "[process][node]") {
  World w;
  w.start_server();
  Process a(with(w.client("a.db"), {"watch", "SELECT id, title FROM todo ORDER BY id", "--json"}), w.dir / "a.log");
  auto first = a.line();
  REQUIRE(first);
  CHECK(nlohmann::json::parse(*first)["rows"].empty());
  // A second watch, in a follower process.
  Process d(with(w.client("a.db"), {"watch", "SELECT id, title FROM todo ORDER BY id", "--json"}), w.dir / "d.log");
  auto d_first = d.line();
  INFO(slurp(w.dir / "d.log"));
  REQUIRE(d_first);
  CHECK(nlohmann::json::parse(*d_first)["rows"].empty());

  const auto start = std::chrono::steady_clock::now();
  auto r = w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'from b')"});
  INFO(slurp(w.dir / "a.db.log"));
  REQUIRE(r.code == 0);
  auto out = nlohmann::json::parse(r.out);
  CHECK(out["acknowledged"] == true);  // through the leader's connection to the server
  auto change = next_change(a);
  CHECK(change["type"] == "added");
  CHECK(change["row"]["title"] == "from b");
  CHECK(next_change(d)["row"]["title"] == "from b");
  std::cout << "node processes: exec in process B to the row in A's watch (process start included): "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count() << " ms\n";

  // A write the database refuses (duplicate key) fails in the writer and shows nowhere: the
  // next line of each watch is the next accepted write.
  r = w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'duplicate')"});
  CHECK(r.code == 1);
  CHECK_THAT(slurp(w.dir / "a.db.log"), Catch::Contains("refused the write"));
  REQUIRE(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (2, 'second')"}).code == 0);
  CHECK(next_change(a)["row"]["title"] == "second");
  CHECK(next_change(d)["row"]["title"] == "second");

  // A query in a third process reads the node's database through the leader.
  auto q = w.cmd("a.db", {"query", "SELECT id, title FROM todo ORDER BY id"});
  REQUIRE(q.code == 0);
  CHECK(nlohmann::json::parse(q.out).size() == 2);

  // Another device's write arrives through the leader's sync, in both watches.
  REQUIRE(w.cmd("b.db", {"exec", "INSERT INTO todo(id, title) VALUES (3, 'other device')"}).code == 0);
  CHECK(next_change(a)["row"]["title"] == "other device");
  CHECK(next_change(d)["row"]["title"] == "other device");

  // The leader ends: the follower's watch says so and ends (no takeover yet).
  a.signal(SIGTERM);
  CHECK(a.wait(10s) == 0);
  CHECK(d.wait(10s) == 3);
  CHECK_THAT(slurp(w.dir / "d.log"), Catch::Contains("is gone"));
  // And the database is usable by a new process.
  CHECK(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (4, 'after')"}).code == 0);
}

TEST_CASE("node processes: a process without the secret, or with a secret others can read, is refused", "[process][node]") {
  World w;
  w.start_server();
  Process a(with(w.client("a.db"), {"watch", "SELECT id, title FROM todo ORDER BY id", "--json"}), w.dir / "a.log");
  REQUIRE(a.line());
  const std::string secret = w.dir / "a.db.secret";
  struct stat st {};
  REQUIRE(::stat(secret.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  const std::string real = slurp(secret);

  // Another secret in the file: the leader refuses the proof.
  { std::ofstream(secret, std::ios::trunc | std::ios::binary) << std::string(32, 'x'); }
  auto r = w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'intruder')"});
  CHECK(r.code == 2);
  CHECK_THAT(slurp(w.dir / "a.db.log"), Catch::Contains("refused this process"));

  // The right secret, readable by others: the follower will not use it.
  { std::ofstream(secret, std::ios::trunc | std::ios::binary) << real; }
  REQUIRE(::chmod(secret.c_str(), 0644) == 0);
  r = w.cmd("a.db", {"query", "SELECT * FROM todo"});
  CHECK(r.code == 2);
  CHECK_THAT(slurp(w.dir / "a.db.log"), Catch::Contains("must be 0600"));

  // Nothing was written; with the secret restored a process joins again.
  REQUIRE(::chmod(secret.c_str(), 0600) == 0);
  r = w.cmd("a.db", {"query", "SELECT * FROM todo"});
  REQUIRE(r.code == 0);
  CHECK(nlohmann::json::parse(r.out).empty());
  a.signal(SIGTERM);
  CHECK(a.wait(10s) == 0);
}

TEST_CASE("node processes: a follower on another schema is refused with a clear error", "[process][node]") {
  World w;
  w.start_server();
  Process a(w.client("a.db"), w.dir / "a.log");  // the shell
  // The shell has started once it answers a query.
  a.write("query SELECT count(*) AS n FROM todo\n");
  REQUIRE(a.line());
  const std::string other = w.dir / "other.sql";
  std::ofstream(other) << "CREATE TABLE note(id INTEGER PRIMARY KEY NOT NULL, body TEXT);\n";
  auto r = run({kTandem, "client", "--db", w.dir / "a.db", "--schema", other, "query", "SELECT 1"}, w.dir / "b.log");
  CHECK(r.code == 2);
  CHECK_THAT(slurp(w.dir / "b.log"), Catch::Contains("same --schema"));
  a.close_stdin();
  CHECK(a.wait(10s) == 0);
}
