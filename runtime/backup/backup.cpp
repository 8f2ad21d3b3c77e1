#include "runtime/backup/backup.hpp"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "runtime/backup/file_util.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/server_lineage.hpp"

namespace tandem::backup {
namespace {

// SQLite's message for `rc` and, when the OS said why, its reason: "database or disk is
// full (No space left on device)".
std::string sqlite_reason(sqlite3* db, int rc) {
  std::string why = sqlite3_errstr(rc);
  const int sys = db ? sqlite3_system_errno(db) : 0;
  if (sys != 0) why += std::string(" (") + std::strerror(sys) + ")";
  return why;
}

Status step_error(sqlite3* dest, int rc, const std::string& source, const std::string& dest_path) {
  const StatusCode code = (rc & 0xff) == SQLITE_FULL ? StatusCode::resource_exhausted : StatusCode::internal;
  return Status(code, "copying " + source + " to " + dest_path + ": " + sqlite_reason(dest, rc));
}

// Copies every page of `src` into `dest` through `src`'s open read transaction.
Status copy_pages(Database& src, Database& dest, const std::string& source, const std::string& dest_path,
                  const FileBackupOptions& options) {
  sqlite3_backup* b = sqlite3_backup_init(dest.raw(), "main", src.raw(), "main");
  if (!b) return Status::Internal("starting the backup of " + source + ": " + sqlite3_errmsg(dest.raw()));
  int rc = SQLITE_OK;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    rc = sqlite3_backup_step(b, std::max(1, options.pages_per_step));
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      // Only the destination can be busy (the source is read through our own transaction),
      // and nobody else knows its name: give up after a while rather than spin.
      if (std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (options.progress && (rc == SQLITE_OK || rc == SQLITE_DONE)) {
      const int64_t total = sqlite3_backup_pagecount(b);
      options.progress(total - sqlite3_backup_remaining(b), total);
    }
    if (rc != SQLITE_OK) break;
  }
  const int finish = sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return step_error(dest.raw(), rc, source, dest_path);
  if (finish != SQLITE_OK) return step_error(dest.raw(), finish, source, dest_path);
  return Status::Ok();
}

}  // namespace

Result<StoreFacts> read_store_facts(Database& db) {
  StoreFacts facts;
  const bool own_txn = !db.in_transaction();
  if (own_txn) TANDEM_RETURN_IF_ERROR(db.begin_deferred());
  auto body = [&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(auto has, db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'tandem_meta'"));
    TANDEM_ASSIGN_OR_RETURN(bool found, has->step());
    if (!found) return Status::Ok();
    TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("SELECT key, value FROM tandem_meta WHERE key IN ('site_id', 'db_version', ?1)"));
    TANDEM_RETURN_IF_ERROR(st->bind(1, Value::Text(sync_lineage::kFormerSitesNote)));
    for (;;) {
      TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
      if (!row) break;
      const std::string key = st->column(0).bytes();
      const Value v = st->column(1);
      if (key == "site_id") {
        auto site = site_from_bytes(v.bytes());
        if (site) facts.site_id = site_hex(*site);
      } else if (key == "db_version") {
        facts.db_version = st->column_int64(1);
      } else {
        facts.former_sites = v.bytes();
      }
    }
    return Status::Ok();
  };
  Status s = body();
  if (own_txn) db.rollback();
  if (!s.ok()) return s;
  return facts;
}

Result<std::string> integrity_check(Database& db) {
  TANDEM_ASSIGN_OR_RETURN(auto st, db.prepare("PRAGMA integrity_check(10)"));
  std::string out;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(bool row, st->step());
    if (!row) break;
    if (!out.empty()) out += "; ";
    out += st->column(0).bytes();
  }
  return out.empty() ? std::string("no answer") : out;
}

Result<FileBackup> backup_file(const std::string& source, const std::string& dest, const FileBackupOptions& options) {
  if (path_exists(dest)) return Status::InvalidArgument("'" + dest + "' already exists");
  const std::string part = dest + ".part";
  remove_sqlite_files(part);  // a previous run's leftovers
  FileBackup out;
  Status s = [&]() -> Status {
    OpenOptions so;
    so.create = false;
    so.wal = false;  // read as it is: never change the source's journal mode
    so.synchronous_full = false;
    so.cache_size_kib = 2048;
    TANDEM_ASSIGN_OR_RETURN(auto src, Database::open(source, so));
    // The snapshot: every backup step below reads through this transaction.
    TANDEM_RETURN_IF_ERROR(src->begin_deferred());
    TANDEM_RETURN_IF_ERROR(src->exec("SELECT count(*) FROM sqlite_schema").with_context("reading " + source));
    OpenOptions dop;
    dop.wal = false;
    dop.vfs = options.dest_vfs;
    dop.cache_size_kib = 2048;
    TANDEM_ASSIGN_OR_RETURN(auto copy, Database::open(part, dop));
    TANDEM_RETURN_IF_ERROR(copy_pages(*src, *copy, source, dest, options));
    src->rollback();
    src.reset();
    TANDEM_ASSIGN_OR_RETURN(out.integrity, integrity_check(*copy));
    TANDEM_ASSIGN_OR_RETURN(StoreFacts facts, read_store_facts(*copy));
    out.site_id = facts.site_id;
    out.db_version = facts.db_version;
    copy.reset();
    // The copy is one file: its connection closed its WAL (if it opened one) after a checkpoint.
    if (path_exists(part + "-wal")) return Status::Internal("the copy of " + source + " kept a WAL after closing");
    TANDEM_RETURN_IF_ERROR(fsync_path(part));
    TANDEM_ASSIGN_OR_RETURN(out.size, file_size(part));
    if (::rename(part.c_str(), dest.c_str()) != 0)
      return Status::Internal("renaming " + part + " to " + dest + ": " + std::strerror(errno));
    return fsync_parent_dir(dest);
  }();
  if (!s.ok()) {
    remove_sqlite_files(part);
    return s;
  }
  return out;
}

nlohmann::json manifest_json(const BackupSummary& summary, const std::string& data_dir) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : summary.files)
    files.push_back({{"user", f.user},
                     {"file", f.file},
                     {"site_id", f.copy.site_id},
                     {"db_version", f.copy.db_version},
                     {"size", f.copy.size},
                     {"integrity_check", f.copy.integrity}});
  return {{"format", "tandem-backup"}, {"version", 1}, {"created", utc_stamp(true)}, {"data_dir", data_dir}, {"files", files}};
}

Result<BackupSummary> backup_data_dir(const std::string& data_dir, const std::string& out_dir, const BackupEvents& events,
                                      const FileBackupOptions& file_options) {
  if (!is_directory(data_dir)) return Status::NotFound("--data-dir '" + data_dir + "' is not a directory");
  TANDEM_ASSIGN_OR_RETURN(auto users, list_user_files(data_dir + "/users"));
  if (path_exists(out_dir)) {
    if (!is_directory(out_dir)) return Status::InvalidArgument("--out '" + out_dir + "' exists and is not a directory");
    TANDEM_ASSIGN_OR_RETURN(auto entries, list_dir(out_dir));
    if (!entries.empty())
      return Status::InvalidArgument("--out '" + out_dir + "' is not empty: a backup goes into a new or empty directory");
  } else if (::mkdir(out_dir.c_str(), 0700) != 0) {
    return Status::Internal("cannot create --out '" + out_dir + "': " + std::strerror(errno));
  }
  if (::mkdir((out_dir + "/users").c_str(), 0700) != 0 && errno != EEXIST)
    return Status::Internal("cannot create '" + out_dir + "/users': " + std::strerror(errno));

  BackupSummary summary;
  for (const auto& user : users) {
    BackupEntry e;
    e.user = user;
    e.file = "users/" + user + ".db";
    FileBackupOptions fo = file_options;
    if (events.progress) fo.progress = [&](int64_t done, int64_t total) { events.progress(user, done, total); };
    auto copied = backup_file(data_dir + "/" + e.file, out_dir + "/" + e.file, fo);
    if (!copied.ok()) return copied.status().with_context("user '" + user + "'");
    e.copy = std::move(*copied);
    summary.bytes += e.copy.size;
    if (e.copy.integrity != "ok") summary.damaged.push_back(user);
    if (events.file_done) events.file_done(e);
    summary.files.push_back(std::move(e));
  }
  summary.manifest = out_dir + "/manifest.json";
  TANDEM_RETURN_IF_ERROR(write_file_durably(summary.manifest, manifest_json(summary, data_dir).dump(2) + "\n"));
  return summary;
}

}  // namespace tandem::backup
