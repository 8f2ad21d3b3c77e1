// `tandem server compact --data-dir D`: compacts the metadata of every user's file (or one
// user's) of a stopped server (runtime/store/compact.cpp), printing one JSON line per file.
// It takes the data directory's lock, so it refuses to run beside a server on D, and a server
// started meanwhile refuses to start. A running server compacts each file as it closes it.
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apps/tandem/commands.hpp"
#include "runtime/auth/token.hpp"
#include "runtime/auth/user_id.hpp"
#include "runtime/backup/file_util.hpp"
#include "runtime/common/process_lock.hpp"
#include "runtime/sync/channel_core.hpp"

namespace tandem::app {
namespace {

struct CompactCommand {
  std::string data_dir;
  std::string user;              // empty: every user
  std::string peer_expiry = "0";  // a duration; 0: peers never expire
};

[[noreturn]] void die(const std::string& message) {
  std::cerr << "tandem server compact: " << message << "\n";
  throw CLI::RuntimeError(2);
}

// Compacts one user's file; false when it failed (said on stderr).
bool compact_file(const std::string& user, const std::string& path, int64_t now, int64_t expiry) {
  auto core = sync_channel::ChannelCore::open(path);
  if (!core.ok()) {
    std::cerr << "tandem server compact: " << path << ": " << core.status().to_string() << "\n";
    return false;
  }
  auto before = (*core)->store().metadata_size();
  auto report = (*core)->compact(now, expiry);
  auto after = (*core)->store().metadata_size();
  if (!report.ok() || !before.ok() || !after.ok()) {
    const Status& failed = !report.ok() ? report.status() : !before.ok() ? before.status() : after.status();
    std::cerr << "tandem server compact: " << path << ": " << failed.to_string() << "\n";
    return false;
  }
  nlohmann::json line = {{"user", user},
                         {"file", path},
                         {"horizon", report->horizon},
                         {"tombstones_removed", report->tombstones_removed},
                         {"peers_expired", report->peers_expired},
                         {"changelog_keys_before", report->changelog_keys_before},
                         {"changelog_keys_after", report->changelog_keys_after},
                         {"compacted_through", report->compacted_through},
                         {"live_rows", after->live_rows},
                         {"metadata_bytes_before", before->bytes},
                         {"metadata_bytes_after", after->bytes}};
  std::cout << line.dump() << std::endl;
  return true;
}

void run_compact(const CompactCommand& opts) {
  namespace fs = std::filesystem;
  int64_t expiry = 0;
  if (opts.peer_expiry != "0") {
    auto parsed = auth::parse_duration(opts.peer_expiry);
    if (!parsed.ok()) die("--peer-expiry: " + parsed.status().message());
    expiry = parsed->count();
  }
  std::error_code ec;
  if (!fs::is_directory(opts.data_dir, ec)) die("--data-dir '" + opts.data_dir + "' is not a directory");
  auto lock = ProcessLock::acquire(opts.data_dir + "/server.lock", "--data-dir '" + opts.data_dir + "'");
  if (!lock.ok()) die(lock.status().message());
  const auto now = static_cast<int64_t>(std::time(nullptr));
  std::vector<std::pair<std::string, std::string>> files;  // (user, path)
  if (!opts.user.empty()) {
    auto path = auth::user_db_path(opts.data_dir, opts.user);
    if (!path.ok()) die(path.status().message());
    if (!fs::exists(*path, ec)) die("no file for user '" + opts.user + "' (" + *path + ")");
    files.emplace_back(opts.user, *path);
  } else {
    // The same listing as backups: <data-dir>/users/<valid user id>.db, sorted.
    auto users = backup::list_user_files(opts.data_dir + "/users");
    if (!users.ok()) die(users.status().message());
    for (const auto& user : *users) {
      auto path = auth::user_db_path(opts.data_dir, user);
      if (path.ok()) files.emplace_back(user, *path);
    }
  }
  bool ok = true;
  for (const auto& [user, path] : files) ok = compact_file(user, path, now, expiry) && ok;
  if (!ok) throw CLI::RuntimeError(1);
}

}  // namespace

void add_server_compact_command(CLI::App& server) {
  auto opts = std::make_shared<CompactCommand>();
  auto* cmd = server.add_subcommand(
      "compact", "Compact the metadata of a stopped server's user files (tombstones every device acknowledged, "
                 "the change log, expired devices); one JSON line per file");
  cmd->add_option("--data-dir", opts->data_dir, "The server's --data-dir")->required();
  cmd->add_option("--user", opts->user, "Only this user's file");
  cmd->add_option("--peer-expiry", opts->peer_expiry, "Forget devices unseen this long first (e.g. 90d; 0: none)")
      ->capture_default_str();
  cmd->callback([opts] { run_compact(*opts); });
}

}  // namespace tandem::app
