// `tandem client watch`: a live query printed on stdout as it changes. The printer is the
// terminal's view: it owns an ivm::LiveView on its own read-only connection to the node's
// file, fed by the db_worker's committed row deltas (through the node's DeltaJournal), and
// prints the full result first, then each change: as a table, or one JSON line per change.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "actors/db_worker.hpp"
#include "runtime/common/status.hpp"
#include "runtime/ivm/journal.hpp"

namespace tandem::app {

void add_watch_message_types(caf::actor_system_config& cfg);
std::shared_ptr<ivm::DeltaJournal> make_watch_journal();

// Spawns the printer for `sql`; it prints to stdout until it is stopped.
Result<caf::actor> start_watch(caf::actor_system& system, db_worker_actor worker,
                               std::shared_ptr<ivm::DeltaJournal> journal, const std::string& db_path,
                               const std::string& sql, const std::vector<std::string>& params, bool json);

}  // namespace tandem::app
