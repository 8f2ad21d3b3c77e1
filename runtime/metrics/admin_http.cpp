#include "runtime/metrics/admin_http.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "proto/sync.pb.h"
#include "runtime/metrics/metrics.hpp"
#include "runtime/metrics/recent_errors.hpp"
#include "runtime/metrics/status_page.hpp"

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

// The value of `key` in the target's query string, percent-decoded; empty when absent.
std::string query_param(const std::string& target, const std::string& key) {
  const size_t q = target.find('?');
  if (q == std::string::npos) return "";
  size_t pos = q + 1;
  while (pos <= target.size()) {
    size_t end = target.find('&', pos);
    if (end == std::string::npos) end = target.size();
    const std::string pair = target.substr(pos, end - pos);
    const size_t eq = pair.find('=');
    if (eq != std::string::npos && pair.compare(0, eq, key) == 0 && eq == key.size()) {
      std::string out;
      const std::string raw = pair.substr(eq + 1);
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '%' && i + 2 < raw.size() && std::isxdigit(static_cast<unsigned char>(raw[i + 1])) &&
            std::isxdigit(static_cast<unsigned char>(raw[i + 2]))) {
          out += static_cast<char>(std::stoi(raw.substr(i + 1, 2), nullptr, 16));
          i += 2;
        } else {
          out += raw[i] == '+' ? ' ' : raw[i];
        }
      }
      return out;
    }
    pos = end + 1;
  }
  return "";
}

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The refusal of a request for `path` that may not read it under `token`.
net::HttpResponse refusal(const std::string& path, const std::string& token) {
  if (token.empty()) return text(403, path + " answers loopback peers only (see --metrics-token)\n");
  auto r = text(401, path + " needs Authorization: Bearer <--metrics-token>" +
                         (path == "/metrics" ? std::string() : std::string(" or ?token=<--metrics-token>")) + "\n");
  r.www_authenticate = "Bearer realm=\"tandem\"";
  return r;
}

net::HttpResponse status_json(const AdminOptions& options, const cluster::DirectoryStatus* directory,
                              std::string directory_error) {
  StatusInputs in;
  in.directory = directory;
  in.directory_error = std::move(directory_error);
  in.metrics = &server_metrics();
  in.errors = server_recent_errors().newest_first();
  in.errors_total = server_recent_errors().total();
  in.now_ms = wall_clock_ms();
  in.started_ms = options.started_ms;
  net::HttpResponse r;
  r.status = 200;
  r.content_type = "application/json";
  r.body = render_status_json(in, error_name);
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

bool status_allowed(const net::HttpRequest& request, const std::string& token) {
  if (metrics_allowed(request, token)) return true;
  return !token.empty() && same_secret(query_param(request.target, "token"), token);
}

net::HttpResponse answer_admin(const AdminOptions& options, const net::HttpRequest& request) {
  const std::string path = request.target.substr(0, request.target.find('?'));
  const bool known = path == "/healthz" || path == "/readyz" || path == "/metrics" || path == "/status" ||
                     path == "/status.json";
  if (!known)
    return text(404, "not found: " + path +
                         " (this port serves the WebSocket sync path, /healthz, /readyz, /metrics, /status)\n");
  if (request.method != "GET" && request.method != "HEAD") return text(405, "only GET\n");
  if (path == "/healthz") return text(200, "ok\n");
  if (path == "/readyz") {
    auto st = probe_writable(options.data_dir);
    return st.ok() ? text(200, "ready\n") : text(503, "not ready: " + st.message() + "\n");
  }
  if (path == "/metrics") {
    if (!metrics_allowed(request, options.metrics_token)) return refusal(path, options.metrics_token);
    net::HttpResponse r;
    r.status = 200;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = render_prometheus(server_metrics(), error_name);
    return r;
  }
  if (!status_allowed(request, options.metrics_token)) return refusal(path, options.metrics_token);
  if (path == "/status") {
    net::HttpResponse r;
    r.status = 200;
    r.content_type = "text/html; charset=utf-8";
    r.body = status_html();
    return r;
  }
  // /status.json without waiting on the actors: counters and errors only.
  return status_json(options, nullptr, "not asked (answered synchronously)");
}

void answer_admin_async(const AdminOptions& options, const net::HttpRequest& request, net::HttpReply reply) {
  const std::string path = request.target.substr(0, request.target.find('?'));
  const bool gather = path == "/status.json" && options.status && (request.method == "GET" || request.method == "HEAD") &&
                      status_allowed(request, options.metrics_token);
  if (!gather) return reply(answer_admin(options, request));
  options.status([options, reply = std::move(reply)](Result<cluster::DirectoryStatus> directory) {
    if (directory.ok()) reply(status_json(options, &*directory, ""));
    else reply(status_json(options, nullptr, directory.status().message()));
  });
}

}  // namespace tandem::metrics
