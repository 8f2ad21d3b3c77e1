#include <cstdio>

#include "tandem/status.hpp"
#include "tandem/types.hpp"

namespace tandem::api {

const char* code_name(Code code) {
  switch (code) {
    case Code::ok: return "ok";
    case Code::invalid_argument: return "invalid_argument";
    case Code::constraint: return "constraint";
    case Code::unsupported: return "unsupported";
    case Code::not_found: return "not_found";
    case Code::unauthenticated: return "unauthenticated";
    case Code::permission_denied: return "permission_denied";
    case Code::unavailable: return "unavailable";
    case Code::internal: return "internal";
    case Code::resource_exhausted: return "resource_exhausted";
    case Code::closed: return "closed";
    case Code::wrong_thread: return "wrong_thread";
  }
  return "unknown";
}

std::string Status::to_string() const { return ok() ? "ok" : std::string(code_name(code_)) + ": " + message_; }

std::string to_sql_literal(const Value& v) {
  if (std::holds_alternative<std::nullptr_t>(v)) return "NULL";
  if (auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", *d);
    return buf;
  }
  if (auto* s = std::get_if<std::string>(&v)) {
    std::string out = "'";
    for (char c : *s) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  }
  static const char* hex = "0123456789abcdef";
  std::string out = "x'";
  for (unsigned char c : std::get<Blob>(v).bytes) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out + "'";
}

}  // namespace tandem::api
