// The server's plain-HTTP endpoints, next to the WebSocket sync path on the same port:
//   GET /healthz  liveness: 200 "ok" while the process answers at all;
//   GET /readyz   readiness: 200 when the data directory takes a write, else 503 and why;
//   GET /metrics  Prometheus text of server_metrics();
// and 404 for every other path. /healthz and /readyz answer anyone (load balancers,
// orchestrators); /metrics reveals traffic, so it answers loopback peers only, unless a
// token is configured: then it answers anyone who sends `Authorization: Bearer <token>`,
// and nobody else (a scraper on the same host included, so a proxy on localhost cannot
// open it to the world by accident).
#pragma once

#include <string>

#include "runtime/common/status.hpp"
#include "runtime/net/websocket.hpp"

namespace tandem::metrics {

struct AdminOptions {
  std::string data_dir;       // probed by /readyz
  std::string metrics_token;  // empty: /metrics for loopback peers only
};

// Answers one request; thread-safe, called on the listener's I/O threads. /readyz does a
// small synchronous write in the data directory (a create, a one-byte write, an unlink:
// microseconds on a healthy disk; a hung disk is exactly what it should report as not ready).
net::HttpResponse answer_admin(const AdminOptions& options, const net::HttpRequest& request);

// Whether `request` may read /metrics under `token` (see the file comment).
bool metrics_allowed(const net::HttpRequest& request, const std::string& token);

// Ok when a file can be created, written and removed in `dir`; otherwise why not.
Status probe_writable(const std::string& dir);

}  // namespace tandem::metrics
