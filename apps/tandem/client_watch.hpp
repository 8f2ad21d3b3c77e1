// `tandem client watch`: a live query printed on stdout as it changes. The node's real view
// roles do the work: a ui_view (actors/ui_view.hpp) of the node (actors/node.hpp, in this
// process or another) maintains the result incrementally from the committed row deltas; the printer keeps a copy of the
// result by applying each tandem.view.ViewChange, and prints the whole table after each
// change, or (--json) one JSON line per row change.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "actors/db_worker.hpp"
#include "actors/node.hpp"
#include "actors/ui_view.hpp"
#include "runtime/common/status.hpp"
#include "runtime/ivm/journal.hpp"

namespace tandem::app {

struct Watch {
  ui_view_actor view;
  view_watcher_actor watcher;  // prints; the view keeps the watch while it lives
};

// Spawns a ui_view of `node` watching `sql`; prints the initial result, then every change,
// until the actors are stopped.
Result<Watch> start_watch(caf::actor_system& system, Node& node, const std::string& sql, const std::vector<change::Value>& params,
                          bool json);

}  // namespace tandem::app
