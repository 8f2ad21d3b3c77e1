// ui_view: one per tab, window or embedding view of a node. It watches live queries (with
// parameters) and sends each watcher the result and then every change to it
// (tandem.view.ViewChange, positions where ordered); an embedding application can instead
// (or also) pass a callback. Mutate (structured insert/update/delete): the mutation shows at
// once as a pending overlay in this view and, through the tab_bus, in every other view of
// the node; it goes to the db_worker; the answer confirms or rolls it back everywhere and is
// returned to the caller. The state and logic live in runtime/ivm/view_set.hpp.
//
// Runs detached: hydration and lookups read SQLite on the view's own connection.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "proto/caf_glue.hpp"
#include "proto/view.pb.h"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/typed_actor.hpp>

#include "actors/db_worker.hpp"
#include "actors/tab_bus.hpp"
#include "runtime/common/status.hpp"

namespace tandem {
namespace ivm {
class DeltaJournal;
}

// A watcher: receives the changes of the views it watches.
using view_watcher_actor = caf::typed_actor<caf::reacts_to<view::ViewChange>>;

using ui_view_actor = caf::typed_actor<
    // The sender becomes the view's watcher (if it handles tandem.view.ViewChange).
    caf::replies_to<view::WatchRequest>::with<view::WatchResponse>,
    caf::replies_to<view::UnwatchRequest>::with<view::UnwatchResponse>,
    caf::replies_to<view::SyncRequest>::with<view::SyncResponse>,
    caf::replies_to<view::MutateRequest>::with<view::MutateResponse>,
    caf::reacts_to<tab::PendingMutation>, caf::reacts_to<tab::Settlement>, caf::reacts_to<change::RowDeltaBatch>>;

struct UiViewConfig {
  std::string name;                          // unique within the node: origin of its mutations
  std::string database_path;                 // the node's database file (opened read-only use)
  std::shared_ptr<ivm::DeltaJournal> journal;  // the node's journal (the db_worker's)
  db_worker_actor worker;
  tab_bus_actor bus;
  std::function<void(const view::ViewChange&)> on_change;  // optional, called on the view's thread
  std::chrono::milliseconds write_timeout{30000};
};

// Opens the view's connection (errors come back here) and spawns the detached actor, which
// registers with the bus.
Result<ui_view_actor> spawn_ui_view(caf::actor_system& system, UiViewConfig config);

void add_view_message_types(caf::actor_system_config& cfg);

}  // namespace tandem
