// User ids name per-user files on the server, so they are validated before any path is
// built from them: nothing a client says can name a file outside the data directory.
//
// A valid user id is 1..64 bytes of [A-Za-z0-9_.@+-], starting with a letter or a digit
// (so never ".", "..", a hidden file or an option-like "-x"), with no ".." anywhere.
// Everything else is refused: separators ("a/b", "a\\b"), control characters, spaces,
// non-ASCII bytes, the empty string, over-long ids.
#pragma once

#include <string>

#include "runtime/common/status.hpp"

namespace tandem::auth {

inline constexpr size_t kMaxUserIdBytes = 64;

Status validate_user_id(const std::string& user);

// The channel file of `user`: <data_dir>/users/<user>.db. Validates the id first; the
// result is always directly inside <data_dir>/users. Creates nothing.
Result<std::string> user_db_path(const std::string& data_dir, const std::string& user);

}  // namespace tandem::auth
