// tab_bus: one per node, the BroadcastChannel of the seed design. Every ui_view of the node
// registers (tandem.tab.RegisterView, the sender is the member); a pending mutation or a
// settlement published by one view reaches every other view; committed row deltas from the
// db_worker (local and merged), to which the bus subscribes, reach every view exactly once.
// It owns nothing durable: the list of its members, which it monitors.
#pragma once

#include "proto/caf_glue.hpp"
#include "proto/change.pb.h"
#include "proto/tab.pb.h"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/typed_actor.hpp>

#include "actors/db_worker.hpp"

namespace tandem {

// What a member of the bus (a ui_view) handles.
using tab_member_actor = caf::typed_actor<caf::reacts_to<tab::PendingMutation>, caf::reacts_to<tab::Settlement>,
                                          caf::reacts_to<change::RowDeltaBatch>>;

using tab_bus_actor = caf::typed_actor<caf::reacts_to<tab::RegisterView>, caf::reacts_to<tab::UnregisterView>,
                                       caf::reacts_to<tab::PendingMutation>, caf::reacts_to<tab::Settlement>,
                                       caf::reacts_to<change::RowDeltaBatch>>;

// Spawns the bus and subscribes it to `worker`'s committed row deltas.
tab_bus_actor spawn_tab_bus(caf::actor_system& system, db_worker_actor worker, std::string name = "tab_bus");

void add_tab_message_types(caf::actor_system_config& cfg);

}  // namespace tandem
