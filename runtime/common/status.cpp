#include "runtime/common/status.hpp"

namespace tandem {

const char* to_string(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "ok";
    case StatusCode::invalid_argument: return "invalid argument";
    case StatusCode::constraint: return "constraint";
    case StatusCode::unsupported: return "unsupported";
    case StatusCode::not_found: return "not found";
    case StatusCode::unauthenticated: return "unauthenticated";
    case StatusCode::permission_denied: return "permission denied";
    case StatusCode::unavailable: return "unavailable";
    case StatusCode::internal: return "internal";
    case StatusCode::resource_exhausted: return "resource exhausted";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(tandem::to_string(code_)) + ": " + message_;
}

}  // namespace tandem
