// The server's status page: GET /status is one self-contained HTML page (inline CSS and
// script, no external assets) that fetches GET /status.json every second and updates its
// tables in place; /status.json is assembled here from what the actors report (the
// directory's DirectoryStatus with its channels' sessions), the metrics registry and the
// ring of recent errors. Pure: no actors, no sockets; the caller gathers the inputs.
//
// The page builds its DOM with textContent only (user and client names come from clients),
// so nothing a client sends is ever parsed as HTML.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proto/cluster.pb.h"
#include "runtime/metrics/metrics.hpp"
#include "runtime/metrics/recent_errors.hpp"

namespace tandem::metrics {

struct StatusInputs {
  // The directory's answer; null when it did not answer (directory_error says why): the
  // counters and errors are still shown.
  const cluster::DirectoryStatus* directory = nullptr;
  std::string directory_error;
  const ServerMetrics* metrics = nullptr;  // required
  std::vector<RecentError> errors;         // newest first
  uint64_t errors_total = 0;               // ever recorded (the ring keeps the last few)
  int64_t now_ms = 0;                      // wall clock, ms since the Unix epoch
  int64_t started_ms = 0;                  // when the server started
};

// The JSON of /status.json (docs/operations.md lists its fields). Channels are sorted by
// user, devices by site; a device's `lag` is its channel's db_version minus its acknowledged
// cursor (never negative). `error_name` maps an error code to its name (empty: the number).
std::string render_status_json(const StatusInputs& in, std::string (*error_name)(int code));

// The page served at /status (constant).
const std::string& status_html();

}  // namespace tandem::metrics
