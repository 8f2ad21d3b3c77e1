// The `status reporter` role (server): answers one /status.json request. A short-lived
// actor asks the directory for its status with every channel's sessions (the directory asks
// the channels, each within `channel_timeout`), hands the answer or the failure to `done`,
// and stops. Every wait is bounded, so a stuck channel or directory delays the page by at
// most `channel_timeout` plus a second and never holds the HTTP connection forever.
#pragma once

#include <chrono>
#include <functional>

#include "actors/directory.hpp"
#include "runtime/common/status.hpp"

namespace tandem::actors {

// Calls `done` exactly once, on an actor thread, within channel_timeout plus a second.
// Thread-safe; does not block.
void report_status(caf::actor_system& system, const directory_actor& directory, std::chrono::milliseconds channel_timeout,
                   std::function<void(Result<cluster::DirectoryStatus>)> done);

}  // namespace tandem::actors
