// The server's plain-HTTP endpoints, next to the WebSocket sync path on the same port:
//   GET /healthz      liveness: 200 "ok" while the process answers at all;
//   GET /readyz       readiness: 200 when the data directory takes a write, else 503 and why;
//   GET /metrics      Prometheus text of server_metrics();
//   GET /status       the status page (runtime/metrics/status_page.hpp), which fetches
//   GET /status.json  members, channels, devices, recent errors and counters, gathered from
//                     the actors through AdminOptions::status;
// and 404 for every other path. /healthz and /readyz answer anyone (load balancers,
// orchestrators); /metrics and /status reveal traffic and users, so they answer loopback
// peers only, unless a token is configured: then they answer anyone who sends
// `Authorization: Bearer <token>`, and nobody else (a scraper on the same host included, so a
// proxy on localhost cannot open them to the world by accident). A browser cannot send that
// header, so /status and /status.json also take the token as `?token=<token>`.
#pragma once

#include <string>

#include <functional>

#include "proto/cluster.pb.h"
#include "runtime/common/status.hpp"
#include "runtime/net/websocket.hpp"

namespace tandem::metrics {

// Gathers the directory's status with its channels' sessions and calls `done` exactly once,
// from any thread, with it or why not. Must not block (it asks actors, with timeouts).
using StatusSource = std::function<void(std::function<void(Result<cluster::DirectoryStatus>)> done)>;

struct AdminOptions {
  std::string data_dir;       // probed by /readyz
  std::string metrics_token;  // empty: /metrics and /status for loopback peers only
  StatusSource status;        // empty: /status.json shows counters and errors only
  int64_t started_ms = 0;     // wall clock of the server's start (the page shows the uptime)
};

// Answers one request; thread-safe, called on the listener's I/O threads. /readyz does a
// small synchronous write in the data directory (a create, a one-byte write, an unlink:
// microseconds on a healthy disk; a hung disk is exactly what it should report as not ready).
net::HttpResponse answer_admin(const AdminOptions& options, const net::HttpRequest& request);

// Every path above; /status.json calls options.status and replies when it is done (on the
// thread that calls `done`), every other path replies at once. Thread-safe.
void answer_admin_async(const AdminOptions& options, const net::HttpRequest& request, net::HttpReply reply);

// Whether `request` may read /metrics under `token` (see the file comment).
bool metrics_allowed(const net::HttpRequest& request, const std::string& token);
// The same for /status and /status.json, which also accept the token as ?token=.
bool status_allowed(const net::HttpRequest& request, const std::string& token);

// Ok when a file can be created, written and removed in `dir`; otherwise why not.
Status probe_writable(const std::string& dir);

}  // namespace tandem::metrics
