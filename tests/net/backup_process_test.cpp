// Backups, restores and `client inspect` with the real binary: a backup taken while two
// clients write, a restore after more writes, the clients reconnecting to the restored server
// and converging with nothing acknowledged lost; the refusals; a backup that runs out of
// space; inspect on a database that another process has open.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "runtime/sqlite/database.hpp"
#include "tests/net/process_util.hpp"

using namespace tandem_process_test;

namespace {

// The ids in a JSON array of rows (`client query` output).
std::set<int64_t> ids(const std::string& rows_json) {
  std::set<int64_t> out;
  for (const auto& r : nlohmann::json::parse(rows_json)) out.insert(r["id"].get<int64_t>());
  return out;
}

// Reads a server user file (or a backup's copy) directly: its todo ids and integrity_check.
std::set<int64_t> file_ids(const std::string& path, std::string* integrity = nullptr) {
  tandem::OpenOptions o;
  o.create = false;
  o.read_only = true;
  auto db = tandem::Database::open(path, o);
  INFO(db.status().to_string());
  REQUIRE(db.ok());
  std::set<int64_t> out;
  auto st = (*db)->prepare("SELECT id FROM todo");
  REQUIRE(st.ok());
  while (*(*st)->step()) out.insert((*st)->column_int64(0));
  if (integrity) {
    auto check = (*db)->prepare("PRAGMA integrity_check");
    REQUIRE(check.ok());
    REQUIRE(*(*check)->step());
    *integrity = (*check)->column(0).bytes();
  }
  return out;
}

nlohmann::json inspect(World& w, const std::string& db) {
  auto r = run({kTandem, "client", "inspect", "--db", w.dir / db, "--json"}, w.dir / (db + ".inspect.log"));
  INFO(slurp(w.dir / (db + ".inspect.log")));
  REQUIRE(r.code == 0);
  return nlohmann::json::parse(r.out);
}

void insert(World& w, const std::string& db, int64_t id, const std::string& title) {
  auto r = w.cmd(db, {"exec", "INSERT INTO todo(id, title) VALUES (?, ?)", std::to_string(id), title});
  INFO(slurp(w.dir / (db + ".log")));
  REQUIRE(r.code == 0);
}

void stop_server(World& w) {
  w.server->signal(SIGTERM);
  REQUIRE(w.server->wait() == 0);
  w.server.reset();
}

}  // namespace

TEST_CASE("processes: a backup taken while clients write restores and the clients converge with nothing acked lost",
          "[process][backup]") {
  World w;
  w.start_server();
  const uint16_t port = w.port;
  const std::string data = w.dir / "server";
  const std::string bk = w.dir / "bk";
  std::set<int64_t> all;
  for (int64_t i = 1; i <= 3; ++i) insert(w, "phone.db", i, "phone before"), all.insert(i);
  for (int64_t i = 101; i <= 103; ++i) insert(w, "laptop.db", i, "laptop before"), all.insert(i);
  const std::string phone_site = inspect(w, "phone.db")["site_id"];
  const std::string laptop_site = inspect(w, "laptop.db")["site_id"];

  // The phone writes through one shell process while the backup runs; each exec waits for its ack.
  auto shell_args = w.client("phone.db");
  Process shell(shell_args, w.dir / "phone.shell.log");
  int64_t next = 1000;
  auto feed = [&](int n) {
    for (int k = 0; k < n; ++k, ++next) {
      shell.write("exec INSERT INTO todo(id, title) VALUES (" + std::to_string(next) + ", 'during') \n");
      all.insert(next);
    }
  };
  feed(40);
  // The backup starts once the first acks are in, while the rest are being written.
  std::set<int64_t> acked_before_backup = {1, 2, 3, 101, 102, 103};
  for (int k = 0; k < 5; ++k) {
    auto line = shell.line(30s);
    INFO(slurp(w.dir / "phone.shell.log"));
    REQUIRE(line);
    REQUIRE(nlohmann::json::parse(*line)["acknowledged"] == true);
    acked_before_backup.insert(1000 + k);
  }
  auto backup = run({kTandem, "server", "backup", "--data-dir", data, "--out", bk}, w.dir / "backup.log");
  INFO(slurp(w.dir / "backup.log"));
  REQUIRE(backup.code == 0);
  CHECK_THAT(backup.out, Catch::Contains("alice: users/alice.db"));
  CHECK_THAT(backup.out, Catch::Contains("backup complete: 1 files"));
  feed(10);
  shell.close_stdin();
  for (int k = 5; k < 50; ++k) {
    auto line = shell.line(30s);
    INFO(slurp(w.dir / "phone.shell.log"));
    REQUIRE(line);
    CHECK(nlohmann::json::parse(*line)["acknowledged"] == true);
  }
  REQUIRE(shell.wait() == 0);

  std::ifstream manifest_in(bk + "/manifest.json");
  auto manifest = nlohmann::json::parse(manifest_in);
  REQUIRE(manifest["files"].size() == 1);
  CHECK(manifest["files"][0]["user"] == "alice");
  CHECK(manifest["files"][0]["integrity_check"] == "ok");
  const std::string backup_site = manifest["files"][0]["site_id"];
  std::string integrity;
  const auto in_backup = file_ids(bk + "/users/alice.db", &integrity);
  CHECK(integrity == "ok");
  // Everything acknowledged before the backup started is in it.
  for (int64_t i : acked_before_backup) CHECK(in_backup.count(i) == 1);

  // More writes after the backup, from both devices; both hold everything.
  for (int64_t i = 201; i <= 203; ++i) insert(w, "laptop.db", i, "laptop after"), all.insert(i);
  for (int64_t i = 301; i <= 302; ++i) insert(w, "phone.db", i, "phone after"), all.insert(i);
  for (const char* db : {"phone.db", "laptop.db"}) REQUIRE(w.cmd(db, {"sync"}).code == 0);
  REQUIRE(ids(w.rows("phone.db")) == all);
  REQUIRE(ids(w.rows("laptop.db")) == all);
  CHECK(in_backup != all);  // the restore really loses something the clients must push again

  // A restore while the server runs is refused and changes nothing.
  auto refused = run({kTandem, "server", "restore", "--from", bk, "--data-dir", data}, w.dir / "refused.log");
  CHECK(refused.code == 2);
  CHECK_THAT(slurp(w.dir / "refused.log"), Catch::Contains("in use"));

  stop_server(w);
  auto restore = run({kTandem, "server", "restore", "--from", bk, "--data-dir", data}, w.dir / "restore.log");
  INFO(slurp(w.dir / "restore.log"));
  REQUIRE(restore.code == 0);
  CHECK_THAT(restore.out, Catch::Contains("restore complete: 1 files"));
  CHECK(file_ids(data + "/users/alice.db") == in_backup);

  w.start_server(port);
  for (int round = 0; round < 2; ++round)
    for (const char* db : {"phone.db", "laptop.db"}) {
      auto r = w.cmd(db, {"sync"});
      INFO(slurp(w.dir / (std::string(db) + ".log")));
      REQUIRE(r.code == 0);
    }
  CHECK(ids(w.rows("phone.db")) == all);
  CHECK(ids(w.rows("laptop.db")) == all);
  // A device that never saw the old file gets everything from the restored server.
  REQUIRE(w.cmd("tablet.db", {"sync"}).code == 0);
  CHECK(ids(w.rows("tablet.db")) == all);
  // Neither device was taken for a copy (SITE_CONFLICT would have given it a new site id),
  // and each holds the restored file's new site id as a peer that holds all its changes.
  const auto arrow = restore.out.find(" -> ");
  REQUIRE(arrow != std::string::npos);
  const std::string new_site = restore.out.substr(arrow + 4, 32);
  CHECK(new_site != backup_site);
  for (const char* db : {"phone.db", "laptop.db"}) {
    auto device = inspect(w, db);
    CHECK(device["site_id"] == (std::string(db) == "phone.db" ? phone_site : laptop_site));
    CHECK(device["pending"]["changes"] == 0);
    // What the restored server acknowledged equals what the old one had: all was pushed again.
    int64_t acked_old = -1, acked_new = -2;
    for (const auto& p : device["peers"]) {
      if (p["site_id"] == backup_site) acked_old = p["acked"];
      if (p["site_id"] == new_site) acked_new = p["acked"];
    }
    CHECK(acked_old > 0);
    CHECK(acked_new == acked_old);
  }
  CHECK_THAT(slurp(w.dir / "server.log"), !Catch::Contains("SITE_CONFLICT"));
  stop_server(w);
  CHECK(file_ids(data + "/users/alice.db", &integrity) == all);
  CHECK(integrity == "ok");
}

TEST_CASE("processes: a backup refuses a used directory and leaves no partial file when the disk fills", "[process][backup]") {
  World w;
  w.start_server();
  for (int64_t i = 1; i <= 30; ++i) insert(w, "phone.db", i, std::string(2000, 'x'));
  const std::string data = w.dir / "server";
  REQUIRE(::mkdir((w.dir / "used").c_str(), 0700) == 0);
  std::ofstream(w.dir / "used/something") << "x";
  auto used = run({kTandem, "server", "backup", "--data-dir", data, "--out", w.dir / "used"}, w.dir / "used.log");
  CHECK(used.code == 2);
  CHECK_THAT(slurp(w.dir / "used.log"), Catch::Contains("not empty"));

  // Files may grow to 16 KiB only (and SIGXFSZ is ignored, so writes fail instead of killing).
  const std::string out = w.dir / "full";
  auto full = run({"/bin/sh", "-c", "trap '' XFSZ; ulimit -f 32; exec \"$0\" server backup --data-dir \"$1\" --out \"$2\"", kTandem,
                   data, out},
                  w.dir / "full.log");
  INFO(slurp(w.dir / "full.log"));
  CHECK(full.code == 1);
  CHECK_THAT(slurp(w.dir / "full.log"), Catch::Contains("backup failed"));
  CHECK_FALSE(std::filesystem::exists(out + "/users/alice.db"));
  CHECK_FALSE(std::filesystem::exists(out + "/users/alice.db.part"));
  CHECK_FALSE(std::filesystem::exists(out + "/manifest.json"));
  // Without the limit the same command succeeds into a fresh directory.
  auto ok = run({kTandem, "server", "backup", "--data-dir", data, "--out", w.dir / "bk"}, w.dir / "bk.log");
  CHECK(ok.code == 0);
}

TEST_CASE("processes: client inspect describes a database that another process has open", "[process][inspect]") {
  World w;
  w.start_server();
  const uint16_t port = w.port;
  insert(w, "phone.db", 1, "synced");
  insert(w, "phone.db", 2, "synced too");
  auto synced = inspect(w, "phone.db");
  CHECK(synced["user"] == "alice");
  CHECK(synced["server"].get<std::string>().find(std::to_string(port)) != std::string::npos);
  CHECK(synced["server_site_id"].get<std::string>().size() == 32);
  CHECK(synced["acked_db_version"] == synced["db_version"]);
  CHECK(synced["pending"]["changes"] == 0);
  REQUIRE(synced["tables"].size() == 1);
  CHECK(synced["tables"][0]["name"] == "todo");
  CHECK(synced["tables"][0]["replicated"] == true);
  CHECK(synced["tables"][0]["rows"] == 2);
  CHECK(synced["tables"][0]["columns"].size() == 3);
  CHECK(synced["tables"][0]["columns"][0]["pk"] == 1);
  CHECK(synced["size"]["bytes"].get<int64_t>() > 0);
  if (synced["size"]["measured"] == true) {
    CHECK(synced["size"]["metadata_bytes"].get<int64_t>() > 0);
    CHECK(synced["size"]["data_bytes"].get<int64_t>() > 0);
  }

  // Offline writes are pending: two rows (a change per value column each), two transactions.
  w.kill_server();
  for (int64_t i = 3; i <= 4; ++i) {
    auto r = w.cmd("phone.db", {"--timeout", "1s", "exec", "INSERT INTO todo(id, title) VALUES (?, 'offline')", std::to_string(i)});
    CHECK(r.code == 3);
  }
  auto offline = inspect(w, "phone.db");
  CHECK(offline["pending"]["rows"] == 2);
  CHECK(offline["pending"]["versions"] == 2);
  CHECK(offline["pending"]["changes"] == 4);  // title and done of each row
  CHECK(offline["acked_db_version"] == synced["acked_db_version"]);

  // While a watch process holds the database: the same answer, and who holds it.
  auto watch_args = w.client("phone.db");
  watch_args.insert(watch_args.end(), {"watch", "SELECT id FROM todo", "--json"});
  Process watch(watch_args, w.dir / "watch.log");
  REQUIRE(watch.line(20s));
  auto held = inspect(w, "phone.db");
  CHECK(held["pending"] == offline["pending"]);
  CHECK_THAT(held["lock_holder"].get<std::string>(), Catch::Contains("watch"));
  auto text = run({kTandem, "client", "--db", w.dir / "phone.db", "inspect"}, w.dir / "text.log");
  REQUIRE(text.code == 0);
  CHECK_THAT(text.out, Catch::Contains("user      alice"));
  CHECK_THAT(text.out, Catch::Contains("pending   " + std::to_string(offline["pending"]["changes"].get<int64_t>()) + " changes in 2 rows"));
  CHECK_THAT(text.out, Catch::Contains("todo (replicated, 4 rows): id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER"));
  watch.signal(SIGTERM);
  CHECK(watch.wait() == 0);

  auto missing = run({kTandem, "client", "inspect", "--db", w.dir / "nothing.db"}, w.dir / "missing.log");
  CHECK(missing.code == 2);
  CHECK_THAT(slurp(w.dir / "missing.log"), Catch::Contains("no database"));
}
