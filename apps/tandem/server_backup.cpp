// `tandem server backup` and `tandem server restore` (docs/operations.md, "Backups"): thin
// shells over runtime/backup. Exit status: 0 done; 1 the backup or restore failed (nothing is
// left under a final name that is not complete), or a copy failed integrity_check; 2 bad
// arguments, or refused (the output directory is not empty, the data directory is in use).
#include <chrono>
#include <iostream>
#include <memory>

#include "apps/tandem/commands.hpp"
#include "runtime/backup/backup.hpp"

namespace tandem::app {
namespace {

struct BackupOptions {
  std::string data_dir, out, from;
};

[[noreturn]] void fail(const std::string& command, const Status& s) {
  std::cerr << "tandem server " << command << ": " << s.message() << "\n";
  const bool refused = s.code() == StatusCode::invalid_argument || s.code() == StatusCode::unavailable ||
                       s.code() == StatusCode::not_found || s.code() == StatusCode::unsupported;
  throw CLI::RuntimeError(refused ? 2 : 1);
}

void run_backup(const BackupOptions& o) {
  using clock = std::chrono::steady_clock;
  auto file_start = clock::now();
  auto last_report = clock::now();
  backup::BackupEvents events;
  // Progress of a file that takes a while, at most once a second.
  events.progress = [&](const std::string& user, int64_t done, int64_t total) {
    if (clock::now() - last_report < std::chrono::seconds(1) || done == total) return;
    last_report = clock::now();
    std::cout << user << ": " << (total > 0 ? done * 100 / total : 100) << "% (" << done << " of " << total << " pages)" << std::endl;
  };
  events.file_done = [&](const backup::BackupEntry& e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - file_start).count();
    std::cout << e.user << ": " << e.file << " " << e.copy.size << " bytes, db_version " << e.copy.db_version << ", site "
              << e.copy.site_id << ", integrity_check " << e.copy.integrity << " (" << ms << " ms)" << std::endl;
    file_start = clock::now();
  };
  auto summary = backup::backup_data_dir(o.data_dir, o.out, events);
  if (!summary.ok()) fail("backup", summary.status().with_context("backup failed (no manifest written: '" + o.out + "' is not a backup)"));
  std::cout << "backup complete: " << summary->files.size() << " files, " << summary->bytes << " bytes in " << o.out
            << " (manifest " << summary->manifest << ")" << std::endl;
  if (!summary->damaged.empty()) {
    std::string users;
    for (const auto& u : summary->damaged) users += (users.empty() ? "" : ", ") + u;
    std::cerr << "tandem server backup: the files of " << users
              << " failed integrity_check; they are copied as they are, and a restore refuses them\n";
    throw CLI::RuntimeError(1);
  }
}

void run_restore(const BackupOptions& o) {
  auto summary = backup::restore_data_dir(o.from, o.data_dir, [](const backup::RestoredFile& f) {
    std::cout << f.user << ": restored at db_version " << f.db_version << ", site " << f.backup_site_id << " -> "
              << f.new_site_id << (f.replaced.empty() ? "" : "; the file it replaced is kept at " + f.replaced) << std::endl;
  });
  if (!summary.ok()) fail("restore", summary.status().with_context("restore failed"));
  std::cout << "restore complete: " << summary->files.size() << " files into " << o.data_dir;
  if (!summary->untouched.empty()) {
    std::cout << "; not in the backup, left as they were:";
    for (const auto& u : summary->untouched) std::cout << " " << u;
  }
  if (!summary->set_aside_dir.empty()) std::cout << "; replaced files are in " << summary->set_aside_dir;
  std::cout << std::endl;
}

}  // namespace

void add_server_backup_commands(CLI::App& server) {
  auto opts = std::make_shared<BackupOptions>();
  auto* backup = server.add_subcommand(
      "backup", "Copy every user file of a data directory (the server may be running) with a manifest");
  backup->add_option("--data-dir", opts->data_dir, "The server's data directory")->required();
  backup->add_option("--out", opts->out, "A new or empty directory for the backup")->required();
  backup->callback([opts] { run_backup(*opts); });
  auto* restore = server.add_subcommand(
      "restore", "Put a backup's files into a data directory (the server stopped); each restored file gets a new site id");
  restore->add_option("--from", opts->from, "The backup directory (holding manifest.json)")->required();
  restore->add_option("--data-dir", opts->data_dir, "The server's data directory")->required();
  restore->callback([opts] { run_restore(*opts); });
}

}  // namespace tandem::app
