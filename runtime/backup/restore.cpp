// restore_data_dir: see backup.hpp. Why each restored file becomes a new lineage is told in
// runtime/sync/server_lineage.hpp. The order of the steps keeps a crash harmless: the new
// file is complete and checked under a temporary name before the old one is moved aside, and
// running the restore again starts over from the backup.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "runtime/auth/user_id.hpp"
#include "runtime/backup/backup.hpp"
#include "runtime/backup/file_util.hpp"
#include "runtime/common/process_lock.hpp"
#include "runtime/store/store.hpp"
#include "runtime/sync/server_lineage.hpp"

namespace tandem::backup {
namespace {

struct ManifestFile {
  std::string user;
  std::string path;  // in the backup
  int64_t size = 0;
};

Result<std::vector<ManifestFile>> read_manifest(const std::string& from) {
  const std::string path = from + "/manifest.json";
  std::ifstream in(path);
  if (!in) return Status::NotFound("'" + from + "' holds no manifest.json: not a complete backup");
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json m = nlohmann::json::parse(text.str(), nullptr, false);
  if (m.is_discarded() || !m.is_object() || m.value("format", "") != "tandem-backup" || !m.contains("files") ||
      !m["files"].is_array())
    return Status::InvalidArgument(path + " is not a Tandem backup manifest");
  if (m.value("version", 0) != 1) return Status::Unsupported(path + ": manifest version " + m["version"].dump() + " is not 1");
  std::vector<ManifestFile> files;
  std::set<std::string> seen;
  for (const auto& f : m["files"]) {
    if (!f.is_object() || !f.contains("user") || !f["user"].is_string())
      return Status::InvalidArgument(path + ": an entry without a user");
    ManifestFile mf;
    mf.user = f["user"].get<std::string>();
    // The user id names files in the data directory: nothing in a manifest may name another path.
    TANDEM_RETURN_IF_ERROR(auth::validate_user_id(mf.user).with_context(path));
    if (!seen.insert(mf.user).second) return Status::InvalidArgument(path + ": user '" + mf.user + "' is listed twice");
    const std::string integrity = f.value("integrity_check", "");
    if (integrity != "ok")
      return Status::InvalidArgument(path + ": the copy of user '" + mf.user + "' failed integrity_check when it was taken (" +
                                     integrity + "); restore refuses a damaged backup");
    mf.path = from + "/users/" + mf.user + ".db";
    mf.size = f.value("size", int64_t{-1});
    auto size = file_size(mf.path);
    if (!size.ok()) return Status::NotFound("the backup lacks the file of user '" + mf.user + "': " + size.status().message());
    if (*size != mf.size)
      return Status::InvalidArgument(mf.path + " has " + std::to_string(*size) + " bytes, the manifest says " +
                                     std::to_string(mf.size) + ": the backup was changed or truncated");
    files.push_back(std::move(mf));
  }
  return files;
}

// The site ids of the file being replaced (its own and its former ones): clients that synced
// with it after the backup was taken know it by them. Unreadable (the reason to restore may
// be a damaged file): none.
std::set<SiteId> replaced_sites(const std::string& live) {
  std::set<SiteId> out;
  if (!path_exists(live)) return out;
  OpenOptions o;
  o.create = false;
  o.wal = false;
  auto db = Database::open(live, o);
  if (!db.ok()) return out;
  auto facts = read_store_facts(**db);
  if (!facts.ok()) return out;
  if (auto site = site_from_hex(facts->site_id)) out.insert(*site);
  for (const auto& s : sync_lineage::decode_sites(facts->former_sites)) out.insert(s);
  return out;
}

Status make_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::Internal("cannot create '" + dir + "': " + std::strerror(errno));
  return Status::Ok();
}

Status move(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    return Status::Internal("cannot move '" + from + "' to '" + to + "': " + std::strerror(errno));
  return Status::Ok();
}

// Copies the backup's file to `staged`, checks it, and makes it a new lineage.
Result<RestoredFile> stage(const ManifestFile& f, const std::string& staged, const std::set<SiteId>& also_former) {
  remove_sqlite_files(staged);
  TANDEM_RETURN_IF_ERROR(copy_file_durably(f.path, staged));
  RestoredFile r;
  r.user = f.user;
  {
    OpenOptions o;
    o.create = false;
    o.wal = false;
    TANDEM_ASSIGN_OR_RETURN(auto db, Database::open(staged, o));
    TANDEM_ASSIGN_OR_RETURN(auto integrity, integrity_check(*db));
    if (integrity != "ok") return Status::Internal("the backup's file of user '" + f.user + "' is damaged: " + integrity);
    TANDEM_ASSIGN_OR_RETURN(auto facts, read_store_facts(*db));
    if (facts.site_id.empty()) return Status::InvalidArgument("the backup's file of user '" + f.user + "' is not a Tandem store");
    r.backup_site_id = facts.site_id;
  }
  // As ChannelCore::open opens a user file: the restore must not add what a server file lacks.
  StoreOptions so;
  so.open.synchronous_full = false;
  so.capture_row_images = false;
  so.allocate_keys = false;
  TANDEM_ASSIGN_OR_RETURN(auto store, Store::open(staged, so));
  TANDEM_ASSIGN_OR_RETURN(SiteId fresh, sync_lineage::start_new_lineage(*store, also_former));
  r.new_site_id = site_hex(fresh);
  r.db_version = store->db_version();
  store.reset();
  ::unlink(database_lock_path(staged).c_str());
  if (path_exists(staged + "-wal")) return Status::Internal("the restored file of user '" + f.user + "' kept a WAL after closing");
  TANDEM_RETURN_IF_ERROR(fsync_path(staged));
  return r;
}

}  // namespace

Result<RestoreSummary> restore_data_dir(const std::string& from, const std::string& data_dir,
                                        const std::function<void(const RestoredFile&)>& file_done) {
  TANDEM_ASSIGN_OR_RETURN(auto files, read_manifest(from));
  TANDEM_RETURN_IF_ERROR(make_dir(data_dir));
  if (!is_directory(data_dir)) return Status::InvalidArgument("--data-dir '" + data_dir + "' is not a directory");
  // The server's own lock: no server runs on the directory now, and none starts before the end.
  TANDEM_ASSIGN_OR_RETURN(auto dir_lock, ProcessLock::acquire(data_dir + "/server.lock", "--data-dir '" + data_dir + "'"));
  const std::string users_dir = data_dir + "/users";
  TANDEM_RETURN_IF_ERROR(make_dir(users_dir));
  // Every restored user's file lock, before anything changes: a process holding one (a
  // channel of another server process on the same files, a tool) refuses the whole restore.
  std::vector<std::unique_ptr<ProcessLock>> file_locks;
  for (const auto& f : files) {
    TANDEM_ASSIGN_OR_RETURN(std::string live, auth::user_db_path(data_dir, f.user));
    TANDEM_ASSIGN_OR_RETURN(auto lock, ProcessLock::acquire(database_lock_path(live), "user file '" + live + "'"));
    file_locks.push_back(std::move(lock));
  }

  RestoreSummary summary;
  std::set<std::string> restored;
  const std::string aside = data_dir + "/pre-restore-" + utc_stamp(false);
  for (const auto& f : files) {
    TANDEM_ASSIGN_OR_RETURN(std::string live, auth::user_db_path(data_dir, f.user));
    const std::string staged = live + ".restore";
    auto r = stage(f, staged, replaced_sites(live));
    if (!r.ok()) {
      remove_sqlite_files(staged);
      ::unlink(database_lock_path(staged).c_str());
      return r.status();
    }
    if (path_exists(live)) {
      // Kept, not deleted: its changes after the backup may matter to someone. Its WAL goes
      // with it (a WAL left beside the restored file would be replayed into it); -shm is
      // rebuilt from the WAL.
      TANDEM_RETURN_IF_ERROR(make_dir(aside));
      TANDEM_RETURN_IF_ERROR(make_dir(aside + "/users"));
      const std::string kept = aside + "/users/" + f.user + ".db";
      TANDEM_RETURN_IF_ERROR(move(live, kept));
      if (path_exists(live + "-wal")) TANDEM_RETURN_IF_ERROR(move(live + "-wal", kept + "-wal"));
      ::unlink((live + "-shm").c_str());
      ::unlink((live + "-journal").c_str());
      r->replaced = kept;
      summary.set_aside_dir = aside;
    }
    TANDEM_RETURN_IF_ERROR(move(staged, live));
    TANDEM_RETURN_IF_ERROR(fsync_path(users_dir));
    restored.insert(f.user);
    if (file_done) file_done(*r);
    summary.files.push_back(std::move(*r));
  }
  TANDEM_ASSIGN_OR_RETURN(auto present, list_user_files(users_dir));
  for (const auto& u : present)
    if (!restored.count(u)) summary.untouched.push_back(u);
  return summary;
}

}  // namespace tandem::backup
