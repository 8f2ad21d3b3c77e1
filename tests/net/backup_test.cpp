// Backups and restores without processes: runtime/backup against files written concurrently,
// disk errors on the copy, the manifest, the restore's locks and lineage, and a channel
// honouring after a restore what devices were acknowledged before it.
#include <catch2/catch.hpp>

#include <sqlite3.h>

#include <sys/stat.h>

#include <atomic>
#include <set>
#include <fstream>
#include <thread>

#include "runtime/backup/backup.hpp"
#include "runtime/backup/file_util.hpp"
#include "runtime/common/process_lock.hpp"
#include "runtime/sqlite/fault_vfs.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/server_lineage.hpp"
#include "tests/net/net_test_util.hpp"

using namespace tandem;
using tandem::test::TempDir;

namespace {

const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);";

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xB0;
  s[15] = n;
  return s;
}

int64_t count(Database& db, const std::string& sql) {
  auto st = db.prepare(sql);
  REQUIRE(st.ok());
  auto row = (*st)->step();
  REQUIRE(row.ok());
  REQUIRE(*row);
  return (*st)->column_int64(0);
}

std::unique_ptr<Database> open_plain(const std::string& path) {
  OpenOptions o;
  o.create = false;
  o.wal = false;
  auto db = Database::open(path, o);
  INFO(db.status().to_string());
  REQUIRE(db.ok());
  return std::move(*db);
}

void write(Store& s, const std::string& sql) {
  auto r = s.write({SqlStatement{sql, {}}});
  INFO(r.status().to_string());
  REQUIRE(r.ok());
}

sync::Hello hello(Store& s, const std::string& server_site, int64_t cursor, int64_t acked) {
  sync::Hello h;
  h.set_protocol_version(1);
  h.set_site_id(site_bytes(s.site_id()));
  h.set_server_site_id(server_site);
  h.set_cursor(cursor);
  h.set_acked_db_version(acked);
  h.add_schema(kSchema);
  return h;
}

sync::Push push_since(Store& s, uint64_t seq, int64_t since) {
  sync::Push p;
  p.set_seq(seq);
  *p.mutable_batch() = test::own_changes_since(s, since);
  return p;
}

// Pushes `a`'s changes after `since` as session 1's push `seq` and returns the ack's client version.
int64_t push_and_ack(sync_channel::ChannelCore& ch, Store& a, uint64_t seq, int64_t since) {
  REQUIRE(ch.push(1, push_since(a, seq, since)).ok());
  auto out = ch.flush();
  for (const auto& o : out)
    if (o.session == 1 && o.envelope.has_ack()) return o.envelope.ack().client_acked_db_version();
  FAIL("no ack");
  return -1;
}

}  // namespace

TEST_CASE("backup_file copies a file that another connection writes meanwhile as one snapshot", "[backup]") {
  TempDir dir;
  const std::string src = dir / "src.db";
  {
    auto db = Database::open(src);
    REQUIRE(db.ok());
    REQUIRE((*db)->exec("CREATE TABLE a(id INTEGER PRIMARY KEY, v BLOB); CREATE TABLE b(id INTEGER PRIMARY KEY, v BLOB)").ok());
  }
  // Each transaction inserts one row into both tables: a snapshot holds the same ids in each.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> commits{0};
  std::atomic<bool> writer_failed{false};  // Catch2 assertions belong to the test's thread
  std::thread writer([&] {
    auto db = Database::open(src);
    if (!db.ok()) {
      writer_failed = true;
      return;
    }
    for (int64_t i = 1; !stop; ++i) {
      const std::string n = std::to_string(i);
      if (!(*db)->exec("BEGIN; INSERT INTO a VALUES (" + n + ", randomblob(3000)); INSERT INTO b VALUES (" + n +
                       ", randomblob(3000)); COMMIT")
               .ok()) {
        writer_failed = true;
        return;
      }
      ++commits;
    }
  });
  while (commits < 200 && !writer_failed) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const int64_t before = commits;
  int64_t during = -1;
  backup::FileBackupOptions o;
  o.pages_per_step = 4;
  int64_t steps = 0;
  o.progress = [&](int64_t done, int64_t total) {
    CHECK(done <= total);
    if (++steps == 1) during = commits;  // the writer keeps committing between steps
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  };
  auto copied = backup::backup_file(src, dir / "copy.db", o);
  const int64_t after = commits;
  stop = true;
  writer.join();
  REQUIRE_FALSE(writer_failed);
  INFO(copied.status().to_string());
  REQUIRE(copied.ok());
  CHECK(steps > 10);
  CHECK(after > during);  // writes happened while the copy was being taken
  CHECK(copied->integrity == "ok");
  CHECK_FALSE(backup::path_exists(dir / "copy.db.part"));
  auto copy = open_plain(dir / "copy.db");
  const int64_t rows = count(*copy, "SELECT count(*) FROM a");
  CHECK(rows == count(*copy, "SELECT count(*) FROM b"));
  CHECK(count(*copy, "SELECT count(*) FROM a JOIN b USING (id)") == rows);
  CHECK(rows == count(*copy, "SELECT max(id) FROM a"));
  CHECK(rows >= before);
  CHECK(rows <= after);
  CHECK(copied->size == *backup::file_size(dir / "copy.db"));
}

TEST_CASE("backup_file leaves nothing under the copy's name when writing it fails", "[backup]") {
  TempDir dir;
  const std::string src = dir / "src.db";
  {
    auto db = Database::open(src);
    REQUIRE(db.ok());
    REQUIRE((*db)->exec("CREATE TABLE a(id INTEGER PRIMARY KEY, v BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                        "SELECT i + 1 FROM n WHERE i < 500) INSERT INTO a SELECT i, randomblob(2000) FROM n")
                .ok());
  }
  REQUIRE(register_fault_vfs());
  backup::FileBackupOptions o;
  o.dest_vfs = kFaultVfsName;
  o.pages_per_step = 16;
  fail_after(20);
  auto copied = backup::backup_file(src, dir / "copy.db", o);
  clear_faults();
  REQUIRE_FALSE(copied.ok());
  CHECK(copied.status().message().find("copy.db") != std::string::npos);
  CHECK_FALSE(backup::path_exists(dir / "copy.db"));
  CHECK_FALSE(backup::path_exists(dir / "copy.db.part"));
  CHECK_FALSE(backup::path_exists(dir / "copy.db.part-journal"));
  // The same call without the fault succeeds.
  auto again = backup::backup_file(src, dir / "copy.db", o);
  INFO(again.status().to_string());
  REQUIRE(again.ok());
  CHECK(count(*open_plain(dir / "copy.db"), "SELECT count(*) FROM a") == 500);
}

TEST_CASE("backup_data_dir copies every user file and describes each in the manifest", "[backup]") {
  TempDir dir;
  std::map<std::string, std::pair<std::string, int64_t>> expected;
  REQUIRE(::mkdir((dir / "data").c_str(), 0700) == 0);
  REQUIRE(::mkdir((dir / "data/users").c_str(), 0700) == 0);
  for (const std::string user : {"alice", "bob"}) {
    StoreOptions so;
    so.site_id = site(user == "alice" ? 1 : 2);
    auto s = Store::open(dir / ("data/users/" + user + ".db"), so);
    REQUIRE(s.ok());
    REQUIRE((*s)->execute_schema(kSchema).ok());
    REQUIRE((*s)->register_table("todo").ok());
    write(**s, "INSERT INTO todo(id, title) VALUES (1, '" + user + "')");
    if (user == "bob") write(**s, "INSERT INTO todo(id, title) VALUES (2, 'more')");
    expected[user] = {site_hex(*so.site_id), (*s)->db_version()};
  }
  std::ofstream(dir / "data/users/notes.txt") << "not a user file\n";
  std::vector<std::string> done;
  backup::BackupEvents events;
  events.file_done = [&](const backup::BackupEntry& e) { done.push_back(e.user); };
  auto summary = backup::backup_data_dir(dir / "data", dir / "bk", events);
  INFO(summary.status().to_string());
  REQUIRE(summary.ok());
  CHECK(done == std::vector<std::string>{"alice", "bob"});
  CHECK(summary->damaged.empty());
  std::ifstream in(dir / "bk/manifest.json");
  auto m = nlohmann::json::parse(in);
  CHECK(m["format"] == "tandem-backup");
  CHECK(m["version"] == 1);
  REQUIRE(m["files"].size() == 2);
  for (const auto& f : m["files"]) {
    const std::string user = f["user"];
    CHECK(f["file"] == "users/" + user + ".db");
    CHECK(f["site_id"] == expected[user].first);
    CHECK(f["db_version"] == expected[user].second);
    CHECK(f["integrity_check"] == "ok");
    CHECK(f["size"] == *backup::file_size(dir / ("bk/" + f["file"].get<std::string>())));
  }
  // A second backup into the same directory is refused, and changes nothing there.
  auto again = backup::backup_data_dir(dir / "data", dir / "bk");
  REQUIRE_FALSE(again.ok());
  CHECK(again.status().message().find("not empty") != std::string::npos);
}

TEST_CASE("a restored channel takes a new site id and honours acks told for its former one", "[backup]") {
  TempDir dir;
  const std::string data = dir / "data";
  const std::string file = data + "/users/alice.db";
  auto a = test::client_store(site(1), kSchema, "todo");
  std::string old_site;
  {
    auto channel = sync_channel::ChannelCore::open(file);
    REQUIRE(channel.ok());
    auto& ch = **channel;
    old_site = site_bytes(ch.site_id());
    REQUIRE(ch.join(1, "alice", hello(*a, "", 0, 0)).ok());
    write(*a, "INSERT INTO todo(id, title) VALUES (1, 'before')");
    write(*a, "INSERT INTO todo(id, title) VALUES (2, 'before too')");
    CHECK(push_and_ack(ch, *a, 1, 0) == 2);
    // The backup is taken while the channel has the file open.
    auto bk = backup::backup_data_dir(data, dir / "bk");
    INFO(bk.status().to_string());
    REQUIRE(bk.ok());
    write(*a, "INSERT INTO todo(id, title) VALUES (3, 'after the backup')");
    CHECK(push_and_ack(ch, *a, 2, 2) == 3);
  }
  {
    // Refused while the data directory is a server's.
    auto held = ProcessLock::acquire(data + "/server.lock", "test");
    REQUIRE(held.ok());
    auto refused = backup::restore_data_dir(dir / "bk", data);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().code() == StatusCode::unavailable);
  }
  {
    // And while a process holds the user's file.
    auto held = ProcessLock::acquire(database_lock_path(file), "test");
    REQUIRE(held.ok());
    REQUIRE_FALSE(backup::restore_data_dir(dir / "bk", data).ok());
  }
  auto restored = backup::restore_data_dir(dir / "bk", data);
  INFO(restored.status().to_string());
  REQUIRE(restored.ok());
  REQUIRE(restored->files.size() == 1);
  CHECK(restored->files[0].backup_site_id == site_hex(*site_from_bytes(old_site)));
  CHECK(restored->files[0].new_site_id != restored->files[0].backup_site_id);
  REQUIRE_FALSE(restored->files[0].replaced.empty());
  CHECK(backup::path_exists(restored->files[0].replaced));

  auto channel = sync_channel::ChannelCore::open(file);
  REQUIRE(channel.ok());
  auto& ch = **channel;
  CHECK(site_bytes(ch.site_id()) != old_site);
  auto former = sync_lineage::former_sites(ch.store());
  REQUIRE(former.ok());
  CHECK(*former == std::set<SiteId>{*site_from_bytes(old_site)});
  // The device was acknowledged up to 3 by the old file; the restored one holds up to 2.
  auto joined = ch.join(1, "alice", hello(*a, old_site, 3, 3));
  INFO(joined.status().to_string());
  REQUIRE(joined.ok());
  REQUIRE_FALSE(joined->empty());
  REQUIRE((*joined)[0].envelope.has_welcome());
  const auto& w = (*joined)[0].envelope.welcome();
  CHECK(w.server_site_id() == site_bytes(ch.site_id()));
  CHECK(w.client_acked_db_version() == 2);  // the device pushes 3 again
  CHECK(w.forward_from() <= 2);             // the old cursor (3) is not trusted
  CHECK(push_and_ack(ch, *a, 1, 2) == 3);
  ch.leave(1);
  // Acks told relative to a server this file never was count as 0: the device is refused.
  auto stranger = ch.join(2, "alice", hello(*a, site_bytes(site(9)), 0, 3));
  REQUIRE(stranger.ok());
  REQUIRE(stranger->size() == 1);
  CHECK((*stranger)[0].envelope.error().code() == sync::Error::SITE_CONFLICT);
}

TEST_CASE("a second restore honours the ids of the file it replaces", "[backup]") {
  TempDir dir;
  const std::string data = dir / "data";
  const std::string file = data + "/users/alice.db";
  std::string first_site;
  {
    auto channel = sync_channel::ChannelCore::open(file);
    REQUIRE(channel.ok());
    first_site = site_bytes((*channel)->site_id());
  }
  REQUIRE(backup::backup_data_dir(data, dir / "bk").ok());
  REQUIRE(backup::restore_data_dir(dir / "bk", data).ok());
  std::string second_site;
  {
    auto channel = sync_channel::ChannelCore::open(file);
    REQUIRE(channel.ok());
    second_site = site_bytes((*channel)->site_id());
  }
  // The same backup again: devices that synced with the first restore know it as second_site.
  auto again = backup::restore_data_dir(dir / "bk", data);
  REQUIRE(again.ok());
  auto channel = sync_channel::ChannelCore::open(file);
  REQUIRE(channel.ok());
  auto former = sync_lineage::former_sites((*channel)->store());
  REQUIRE(former.ok());
  CHECK(*former == std::set<SiteId>{*site_from_bytes(first_site), *site_from_bytes(second_site)});
  CHECK(site_bytes((*channel)->site_id()) != second_site);
  CHECK((*channel)->store().verify().ok());

}
