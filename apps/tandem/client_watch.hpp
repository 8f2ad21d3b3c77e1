// `tandem client watch`: a live query printed on stdout as it changes. The node's real view
// roles do the work: a tab_bus and a ui_view (actors/ui_view.hpp) maintain the result
// incrementally from the db_worker's committed row deltas; the printer keeps a copy of the
// result by applying each tandem.view.ViewChange, and prints the whole table after each
// change, or (--json) one JSON line per row change.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "actors/db_worker.hpp"
#include "actors/ui_view.hpp"
#include "runtime/common/status.hpp"
#include "runtime/ivm/journal.hpp"

namespace tandem::app {

std::shared_ptr<ivm::DeltaJournal> make_watch_journal();

struct Watch {
  tab_bus_actor bus;
  ui_view_actor view;
  view_watcher_actor watcher;  // prints; the view keeps the watch while it lives
};

// Spawns the node's tab_bus and a ui_view watching `sql`; prints the initial result, then
// every change, until the actors are stopped.
Result<Watch> start_watch(caf::actor_system& system, db_worker_actor worker, std::shared_ptr<ivm::DeltaJournal> journal,
                          const std::string& db_path, const std::string& sql, const std::vector<change::Value>& params,
                          bool json);

}  // namespace tandem::app
