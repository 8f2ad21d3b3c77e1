// File-system helpers of backup and restore: durable writes (fsync, then rename, then fsync
// of the directory) and listing a data directory's user files. Errors carry the OS's reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/common/status.hpp"

namespace tandem::backup {

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
Result<int64_t> file_size(const std::string& path);
// Names in `dir` other than "." and "..", sorted.
Result<std::vector<std::string>> list_dir(const std::string& dir);
// The users of <users_dir>/<user>.db files (valid user ids only), sorted; none when the
// directory does not exist.
Result<std::vector<std::string>> list_user_files(const std::string& users_dir);
// Removes a SQLite file and its companions (-journal, -wal, -shm); missing ones are fine.
void remove_sqlite_files(const std::string& path);
Status fsync_path(const std::string& path);
Status fsync_parent_dir(const std::string& path);
// Writes `content` to `path` through "<path>.part", fsync'd and renamed into place.
Status write_file_durably(const std::string& path, const std::string& content);
// Copies `from` to `to` (which must not exist) and fsyncs it.
Status copy_file_durably(const std::string& from, const std::string& to);
// The current UTC time: "2026-12-07T06:00:00Z" (iso) or "20261207T060000Z" (for file names).
std::string utc_stamp(bool iso);

}  // namespace tandem::backup
