// Backups of a server's user files, and their restore (docs/operations.md, "Backups").
//
// backup_file copies one SQLite file as ONE consistent snapshot while other processes write
// to it (the running server's channel): it opens its own connection to the source, starts a
// read transaction there and runs SQLite's online backup (sqlite3_backup_step) in chunks
// inside it. Because the backup reads through that open transaction, every chunk sees the
// same snapshot (in WAL mode writers go on meanwhile), so the copy is the file as of one
// commit and the backup never restarts however busy the writers are. The copy is written to
// "<dest>.part", checked (PRAGMA integrity_check), fsync'd, and only then renamed to <dest>:
// a failure (disk full, I/O error) removes the part and leaves nothing under <dest>.
//
// restore_data_dir (restore.cpp) puts a backup's files back into a stopped server's data
// directory, each as a new lineage (runtime/sync/server_lineage.hpp), because clients have
// seen versions of the file the backup does not hold.
//
// Pure functions on paths; no threads of their own. Progress is reported through callbacks
// on the caller's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/database.hpp"

namespace tandem::backup {

// What a Tandem store file says about itself, read with plain SQL (no Store: no lock taken,
// nothing written), so it works on a file another process has open.
struct StoreFacts {
  std::string site_id;  // 32 hex digits; empty when the file has none (not a Tandem store)
  int64_t db_version = 0;
  std::string former_sites;  // the server_lineage note (comma-separated hex), may be empty
};
// Reads them in one read transaction of `db`.
Result<StoreFacts> read_store_facts(Database& db);

// "ok", or the problems PRAGMA integrity_check reports (the first ten, "; "-separated).
Result<std::string> integrity_check(Database& db);

struct FileBackupOptions {
  int pages_per_step = 1024;  // pages copied per sqlite3_backup_step
  std::string dest_vfs;       // SQLite VFS of the copy (tests: fault injection)
  // Called after each step with pages copied so far and the source's page count.
  std::function<void(int64_t done, int64_t total)> progress;
};

struct FileBackup {
  std::string site_id;  // hex, of the copy
  int64_t db_version = 0;
  int64_t size = 0;     // bytes of the copy
  std::string integrity = "ok";
};

// Copies `source` to `dest` (see the top of this file). `dest` must not exist. On error
// nothing is left at `dest` or `dest.part`, and the message says what failed and why
// ("database or disk is full (No space left on device)").
Result<FileBackup> backup_file(const std::string& source, const std::string& dest, const FileBackupOptions& options = {});

struct BackupEntry {
  std::string user;
  std::string file;  // relative to the backup directory: "users/<user>.db"
  FileBackup copy;
};

struct BackupSummary {
  std::vector<BackupEntry> files;
  int64_t bytes = 0;
  std::vector<std::string> damaged;  // users whose copy failed integrity_check (kept as they are)
  std::string manifest;              // path of manifest.json
};

struct BackupEvents {
  std::function<void(const std::string& user, int64_t done, int64_t total)> progress;
  std::function<void(const BackupEntry&)> file_done;
};

// Backs up every user file of the server data directory `data_dir` (<data_dir>/users/<user>.db)
// into `out_dir` (created; refused when it exists and is not empty), one file at a time, then
// writes <out_dir>/manifest.json (manifest_json) through a temporary name: a directory without
// a manifest is not a backup. Stops at the first file that cannot be copied. A copy failing
// integrity_check does not stop it: it is kept and listed in `damaged`.
Result<BackupSummary> backup_data_dir(const std::string& data_dir, const std::string& out_dir, const BackupEvents& events = {},
                                      const FileBackupOptions& file_options = {});

// The manifest: {"format": "tandem-backup", "version": 1, "created": UTC time, "data_dir",
// "files": [{"user", "file", "site_id", "db_version", "size", "integrity_check"}]}.
nlohmann::json manifest_json(const BackupSummary& summary, const std::string& data_dir);

struct RestoredFile {
  std::string user;
  std::string backup_site_id;  // the backup's site id, now a former one
  std::string new_site_id;
  int64_t db_version = 0;
  std::string replaced;  // where the file it replaced was moved (empty: there was none)
};

struct RestoreSummary {
  std::vector<RestoredFile> files;
  std::vector<std::string> untouched;  // users with a file in the data dir but not in the backup
  std::string set_aside_dir;           // where replaced files went (empty: none replaced)
};

// Restores the backup in `from` into the server data directory `data_dir` (created if
// missing). Refused (UNAVAILABLE) while a server runs on it (<data_dir>/server.lock) or any
// process holds a restored user's file (<file>.lock); the lock is held throughout, so no
// server starts meanwhile. Every manifest entry is checked first (user id, size, integrity);
// then each file is copied in beside its final name, made a new lineage
// (sync_lineage::start_new_lineage, also honouring the replaced file's ids), checked, and
// renamed into place; the file it replaces (with its WAL) is moved to
// <data_dir>/pre-restore-<UTC time>/users/. Users not in the backup are left untouched.
Result<RestoreSummary> restore_data_dir(const std::string& from, const std::string& data_dir,
                                        const std::function<void(const RestoredFile&)>& file_done = {});

}  // namespace tandem::backup
