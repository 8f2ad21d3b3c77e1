// One blocking HTTP GET for command-line tools (`tandem server status`): http:// or https://,
// the answer read whole. Not for the sync path, which stays on the WebSocket event loop.
#pragma once

#include <chrono>
#include <string>

#include "runtime/common/status.hpp"

namespace tandem::net {

struct HttpGetOptions {
  std::string authorization;  // the Authorization header's value; empty: none
  std::string ca_file;        // PEM to trust for https://; empty: the system's trust store
  std::chrono::milliseconds timeout{5000};  // for the whole exchange
};

struct HttpGetAnswer {
  int status = 0;
  std::string body;
};

// GET `url` (http://host[:port]/path or https://...). An error when the host cannot be reached,
// TLS fails, or no whole answer came within the timeout; any HTTP status is an answer.
Result<HttpGetAnswer> http_get(const std::string& url, const HttpGetOptions& options);

}  // namespace tandem::net
