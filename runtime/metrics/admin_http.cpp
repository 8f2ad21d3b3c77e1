#include "runtime/metrics/admin_http.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proto/sync.pb.h"
#include "runtime/metrics/metrics.hpp"

namespace tandem::metrics {
namespace {

// Compares without an early exit, so that the time taken does not tell how much of a
// guessed token was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::string& longer = a.size() >= b.size() ? a : b;
  for (size_t i = 0; i < longer.size(); ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

std::string error_name(int code) {
  if (!sync::Error::Code_IsValid(code)) return "";
  return sync::Error::Code_Name(static_cast<sync::Error::Code>(code));
}

net::HttpResponse text(int status, std::string body) {
  net::HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

bool metrics_allowed(const net::HttpRequest& request, const std::string& token) {
  if (token.empty()) return request.peer_loopback;
  static const std::string kBearer = "Bearer ";
  if (request.authorization.compare(0, kBearer.size(), kBearer) != 0) return false;
  return same_secret(request.authorization.substr(kBearer.size()), token);
}

Status probe_writable(const std::string& dir) {
  const std::string path = dir + "/.readyz-probe";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Unavailable("data directory '" + dir + "' is not writable: " + std::strerror(errno));
  const ssize_t n = ::write(fd, "x", 1);
  const int write_errno = errno;
  ::close(fd);
  ::unlink(path.c_str());
  if (n != 1)
    return Status::Unavailable("data directory '" + dir + "' does not take a write: " + std::strerror(write_errno));
  return Status::Ok();
}

net::HttpResponse answer_admin(const AdminOptions& options, const net::HttpRequest& request) {
  const std::string path = request.target.substr(0, request.target.find('?'));
  const bool known = path == "/healthz" || path == "/readyz" || path == "/metrics";
  if (!known) return text(404, "not found: " + path + " (this port serves the WebSocket sync path, /healthz, /readyz, /metrics)\n");
  if (request.method != "GET" && request.method != "HEAD") return text(405, "only GET\n");
  if (path == "/healthz") return text(200, "ok\n");
  if (path == "/readyz") {
    auto st = probe_writable(options.data_dir);
    return st.ok() ? text(200, "ready\n") : text(503, "not ready: " + st.message() + "\n");
  }
  if (!metrics_allowed(request, options.metrics_token)) {
    if (options.metrics_token.empty()) return text(403, "/metrics answers loopback peers only (see --metrics-token)\n");
    auto r = text(401, "/metrics needs Authorization: Bearer <--metrics-token>\n");
    r.www_authenticate = "Bearer realm=\"tandem\"";
    return r;
  }
  net::HttpResponse r;
  r.status = 200;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = render_prometheus(server_metrics(), error_name);
  return r;
}

}  // namespace tandem::metrics
