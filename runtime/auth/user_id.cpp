#include "runtime/auth/user_id.hpp"

namespace tandem::auth {
namespace {

bool alnum(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, kMaxUserIdBytes)) {
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return s.size() > kMaxUserIdBytes ? out + "..." : out;
}

}  // namespace

Status validate_user_id(const std::string& user) {
  if (user.empty()) return Status::InvalidArgument("user id is empty");
  if (user.size() > kMaxUserIdBytes)
    return Status::InvalidArgument("user id longer than " + std::to_string(kMaxUserIdBytes) + " bytes");
  if (!alnum(static_cast<unsigned char>(user[0])))
    return Status::InvalidArgument("user id '" + printable(user) + "' must start with a letter or a digit");
  for (unsigned char c : user) {
    if (!(alnum(c) || c == '_' || c == '.' || c == '@' || c == '+' || c == '-'))
      return Status::InvalidArgument("user id '" + printable(user) +
                                     "' has a character outside [A-Za-z0-9_.@+-]");
  }
  if (user.find("..") != std::string::npos)
    return Status::InvalidArgument("user id '" + printable(user) + "' contains '..'");
  return Status::Ok();
}

Result<std::string> user_db_path(const std::string& data_dir, const std::string& user) {
  TANDEM_RETURN_IF_ERROR(validate_user_id(user));
  if (data_dir.empty()) return Status::InvalidArgument("data directory is empty");
  std::string dir = data_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/users/" + user + ".db";
}

}  // namespace tandem::auth
