// The `tandem` command line as a new user meets it, through the real binary: help and
// --version, one exit status (2) for every argument error, local client commands that need
// neither --server nor --schema and never wait for a timeout, options after the subcommand,
// the server's start-up refusal of a data directory it cannot write and its info-level
// disconnect log, and WebSocket on its sync path only.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>

#include <nlohmann/json.hpp>

#include "tests/net/process_util.hpp"

using namespace tandem_process_test;

namespace {

struct Outcome {
  int code;
  std::string out, err;
  std::chrono::milliseconds took;
};

Outcome tandem_run(const TempDir& dir, std::vector<std::string> args) {
  args.insert(args.begin(), kTandem);
  const std::string err_file = dir / "stderr.log";
  std::filesystem::remove(err_file);
  const auto start = std::chrono::steady_clock::now();
  auto r = run(args, err_file);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  return {r.code, r.out, slurp(err_file), took};
}

}  // namespace

TEST_CASE("cli: help and --version answer with exit 0 and --help lists the exit statuses", "[process][cli]") {
  TempDir dir;
  auto version = tandem_run(dir, {"--version"});
  CHECK(version.code == 0);
  CHECK_THAT(version.out, Catch::Matches("tandem [0-9]+\\.[0-9]+\\.[0-9]+\n"));

  auto help = tandem_run(dir, {"help"});
  INFO(help.out << help.err);
  CHECK(help.code == 0);
  for (const char* text : {"client", "server", "token", "Exit status:", "bad arguments", "128+N"})
    CHECK_THAT(help.out, Catch::Contains(text));
  CHECK(tandem_run(dir, {"--help"}).out == help.out);

  auto client_help = tandem_run(dir, {"help", "client"});
  CHECK(client_help.code == 0);
  CHECK_THAT(client_help.out, Catch::Contains("--db") && Catch::Contains("--token-file") && Catch::Contains("Exit status:"));
  auto exec_help = tandem_run(dir, {"help", "client", "exec"});
  CHECK(exec_help.code == 0);
  CHECK_THAT(exec_help.out, Catch::Contains("sql") && Catch::Contains("Exit status:"));
  CHECK_THAT(tandem_run(dir, {"server", "--help"}).out, Catch::Contains("--data-dir") && Catch::Contains("Exit status:"));
}

TEST_CASE("cli: every argument error exits 2 and says how to get help", "[process][cli]") {
  TempDir dir;
  const std::string db = dir / "x.db";
  const std::vector<std::vector<std::string>> wrong{
      {"nosuchcommand"},                                   // CLI11: extras (109)
      {"client", "--bogus", "--db", db, "query", "SELECT 1"},  // an unknown option
      {"client", "--db"},                                  // a missing value
      {"server"},                                          // required options missing (106)
      {"server", "--data-dir", dir / "srv"},               // one required option missing
      {"client", "--db", db, "exec"},                      // a missing positional
      {"client", "--db", db, "--timeout", "soon", "sync"},  // a value the command refuses
      {"token", "--user"},
  };
  for (const auto& args : wrong) {
    auto r = tandem_run(dir, args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    INFO(joined << "-> " << r.code << ": " << r.err);
    CHECK(r.code == 2);
    CHECK_FALSE(r.err.empty());
  }
  CHECK_THAT(tandem_run(dir, {"client", "--bogus"}).err, Catch::Contains("tandem help"));
  CHECK(tandem_run(dir, {}).code == 2);  // no command
}

TEST_CASE("cli: query and exec without --server work locally at once and query needs no --schema", "[process][cli]") {
  TempDir dir;
  const std::string schema = dir / "schema.sql";
  std::ofstream(schema) << kSchema;
  const std::string db = dir / "offline.db";

  // exec without --server: written locally, said so, no wait for --timeout.
  auto exec = tandem_run(dir, {"client", "--db", db, "--schema", schema, "--timeout", "30s", "exec",
                               "INSERT INTO todo(id, title) VALUES (1, 'local')"});
  INFO(exec.err);
  REQUIRE(exec.code == 0);
  auto out = nlohmann::json::parse(exec.out);
  CHECK(out["acknowledged"] == false);
  CHECK(out["offline"] == true);
  CHECK(out["rows_changed"] == 1);
  CHECK(exec.took < 10s);  // far below --timeout 30s: nothing waited on a server

  // query: neither --server nor --schema; options after the subcommand too.
  auto query = tandem_run(dir, {"client", "query", "SELECT id, title FROM todo", "--db", db, "--timeout", "30s"});
  INFO(query.err);
  CHECK(query.code == 0);
  CHECK(query.out == "[{\"id\":1,\"title\":\"local\"}]\n");
  CHECK(query.took < 10s);
  // exec without --schema on the existing file, options after the subcommand.
  auto again = tandem_run(dir, {"client", "exec", "UPDATE todo SET done = 1 WHERE id = ?", "1", "--db", db});
  INFO(again.err);
  CHECK(again.code == 0);
  CHECK(tandem_run(dir, {"client", "--db", db, "query", "SELECT done FROM todo"}).out == "[{\"done\":1}]\n");

  // The written row is pushed by the next sync with a server: it was kept, not lost.
  World w;
  w.start_server();
  auto synced = tandem_run(dir, {"client", "--server", w.url, "--token", w.token("alice"), "--db", db, "--schema", schema, "sync"});
  INFO(synced.err);
  CHECK(synced.code == 0);
  CHECK(w.cmd("other.db", {"sync"}).code == 0);
  CHECK(w.rows("other.db") == "[{\"done\":1,\"id\":1,\"title\":\"local\"}]\n");

  // A database that does not exist is not created without its schema.
  const std::string missing = dir / "missing.db";
  auto refused = tandem_run(dir, {"client", "--db", missing, "query", "SELECT 1"});
  CHECK(refused.code == 2);
  CHECK_THAT(refused.err, Catch::Contains("does not exist") && Catch::Contains("--schema"));
  CHECK_FALSE(std::filesystem::exists(missing));
  // Commands that talk to the server still need the schema (it is what the hello declares).
  auto no_schema = tandem_run(dir, {"client", "--server", w.url, "--token", w.token("alice"), "--db", db, "sync"});
  CHECK(no_schema.code == 2);
  CHECK_THAT(no_schema.err, Catch::Contains("--schema is required"));
}

TEST_CASE("cli: the server refuses a data directory it cannot write and logs disconnects at info", "[process][cli]") {
  World w;
  // A directory the server may open but not write, with its lock file from an earlier run
  // (so the lock alone would not stop it): as root through another uid, whom the mode stops.
  const std::string data = w.dir / "readonly";
  std::filesystem::create_directory(data);
  std::ofstream(data + "/server.lock") << "";
  REQUIRE(::chmod((data + "/server.lock").c_str(), 0666) == 0);
  std::vector<std::string> args{kTandem, "server", "--listen", "127.0.0.1:0", "--data-dir", data, "--secret-file", w.secret};
  if (::geteuid() == 0) {
    // nobody must reach the binary, the secret and the directory: only the directory's
    // write bit stops it.
    REQUIRE(::chmod(w.dir.path.c_str(), 0755) == 0);
    REQUIRE(::chmod(w.secret.c_str(), 0644) == 0);
    REQUIRE(::chmod(data.c_str(), 0555) == 0);
    args.insert(args.begin(), {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  } else {
    REQUIRE(::chmod(data.c_str(), 0555) == 0);
  }
  Process server(args, w.dir / "readonly.log");
  server.close_stdin();
  const auto line = server.line(20s);
  const int code = server.wait(20s);
  ::chmod(data.c_str(), 0755);
  INFO(slurp(w.dir / "readonly.log"));
  CHECK_FALSE(line);  // never listening
  CHECK(code == 2);
  CHECK_THAT(slurp(w.dir / "readonly.log"), Catch::Contains("not writable") && Catch::Contains("Permission denied"));

  // A client that connects and leaves shows in the info log with why it ended.
  w.start_server();
  CHECK(w.cmd("a.db", {"exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}).code == 0);
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = slurp(w.dir / "server.log");
    if (log.find("hop=server.disconnect") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK_THAT(log, Catch::Contains("hop=server.disconnect") && Catch::Contains("user=alice"));
}

TEST_CASE("cli: the server speaks WebSocket on its sync path only", "[process][cli]") {
  World w;
  w.start_server();
  const std::string base = w.url.substr(0, w.url.size() - std::string("/sync").size());
  int n = 0;
  for (const std::string path : {"/other", "/", "/sync/x"}) {
    INFO(path);
    w.url = base + path;
    const std::string db = "refused-" + std::to_string(++n) + ".db";  // a database is bound to its server URL
    auto r = w.cmd(db, {"--timeout", "5s", "exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"});
    CHECK(r.code == 3);
    CHECK_THAT(slurp(w.dir / (db + ".log")), Catch::Contains("declined"));
  }
  w.url = base + "/sync?client=1";  // a query string is not part of the path
  CHECK(w.cmd("a.db", {"--timeout", "10s", "exec", "INSERT INTO todo(id, title) VALUES (1, 'x')"}).code == 0);
  w.url = base + "/sync";
  CHECK(w.cmd("b.db", {"--timeout", "10s", "sync"}).code == 0);
  CHECK(w.rows("b.db") == w.rows("a.db"));
  CHECK(w.rows("b.db").find("\"id\":1") != std::string::npos);
}

TEST_CASE("cli: the shell has help and quoted parameters and unwatch and a failing exit status when piped input had errors", "[process][cli][shell]") {
  World w;
  w.start_server();
  {
    Process shell(w.client("a.db"), w.dir / "shell.log");
    shell.write("help\n"
                "exec INSERT INTO todo(id, title) VALUES (?, ?) -- 1 'buy milk'\n"
                "exec INSERT INTO todo(id, title) VALUES (?, ?) -- \"2\" \"two  words\"\n"
                "watch SELECT id, title FROM todo ORDER BY id\n"
                "unwatch\n"
                "exec INSERT INTO todo(id, title) VALUES (?, ?) -- 3 third\n"
                "query SELECT id, title FROM todo ORDER BY id\n");
    shell.close_stdin();
    std::vector<std::string> lines;
    while (auto l = shell.line(30s)) lines.push_back(*l);
    CHECK(shell.wait(kStopWithin + 5s) == 0);  // every command succeeded
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    INFO(all << slurp(w.dir / "shell.log"));
    CHECK_THAT(all, Catch::Contains("unwatch") && Catch::Contains("quote a parameter"));
    CHECK_THAT(all, Catch::Contains(R"([{"id":1,"title":"buy milk"},{"id":2,"title":"two  words"},{"id":3,"title":"third"}])"));
    CHECK_THAT(slurp(w.dir / "shell.log"), Catch::Contains("stopped 1 watch(es)"));
    // The watch printed the first two rows, and nothing after it was stopped.
    bool watched_first = false;
    for (const auto& l : lines) {
      if (l.find("\"type\":\"") == std::string::npos) continue;  // not a watch's line
      if (l.find("buy milk") != std::string::npos) watched_first = true;
      CHECK(l.find("third") == std::string::npos);
    }
    CHECK(watched_first);
  }
  {
    // Piped input with errors: each is reported, the shell goes on, the exit status is the
    // last failure's.
    Process shell(w.client("a.db"), w.dir / "shell2.log");
    shell.write("exec INSERT INTO nosuch VALUES (1)\n"
                "query SELECT count(*) AS n FROM todo\n"
                "exec INSERT INTO todo(id, title) VALUES (?, ?) -- 4 'unclosed\n"
                "frobnicate\n"
                "query SELECT count(*) AS n FROM todo\n");
    shell.close_stdin();
    std::string out;
    while (auto l = shell.line(30s)) out += *l + "\n";
    CHECK(shell.wait(kStopWithin + 5s) == 2);  // the unknown command came last
    const std::string err = slurp(w.dir / "shell2.log");
    INFO(out << err);
    CHECK(out == "[{\"n\":3}]\n[{\"n\":3}]\n");
    CHECK_THAT(err, Catch::Contains("the database refused the write") && Catch::Contains("unclosed quote") &&
                        Catch::Contains("unknown command 'frobnicate'"));
  }
  {
    Process shell(w.client("a.db"), w.dir / "shell3.log");
    shell.write("exec INSERT INTO nosuch VALUES (1)\nquery SELECT 1 AS one\n");
    shell.close_stdin();
    while (shell.line(30s)) {
    }
    CHECK(shell.wait(kStopWithin + 5s) == 1);  // a refused statement
  }
}
