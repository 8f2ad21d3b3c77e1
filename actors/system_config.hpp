// How every Tandem process configures its CAF actor system: every message type of every
// role registered under its protobuf name (so any edge can cross processes), and the
// scheduler.
//
// Scheduler: CAF 0.17's default work-stealing scheduler parks idle workers in 50 us sleeps,
// so a message to an idle event-based actor waited ~100 us; a change crosses about eight of
// them between two views. The "sharing" policy wakes a worker through a condition variable:
// measured request/response to an event-based actor, p50 121 us -> 27.5 us. Tandem's actors
// mostly wait on I/O, so the shared queue's contention does not matter on small machines.
#pragma once

#include <caf/actor_system_config.hpp>

namespace tandem {

// Registers all of Tandem's message types and sets the scheduler (`threads` workers).
void configure_actor_system(caf::actor_system_config& cfg, int threads = 2);

}  // namespace tandem
