// node_proxy: the db_worker of a process that did not open the database first
// (docs/node.md). Views, the tab_bus and the application hold this one handle for the node's
// whole life, while what stands behind it changes with the node's leader:
//   - remote: requests go over a follower connection (actors/node_follower) to the leader
//     process, answers come back by request id, the leader's committed deltas, pending
//     mutations and settlements come in and go to the subscribers and the bus;
//   - between leaders (the leader process died): requests wait in a queue, those already sent
//     to the dead leader fail (whether they committed is what the database now holds);
//   - local: this process took the lock and leads; requests go to its own db_worker, whose
//     deltas the proxy passes on to its subscribers.
// On every new attachment (remote or local) the proxy wakes its subscribers with an empty
// batch (so views notice a gap the journal marks, DeltaJournal::mark_gap, and rehydrate) and
// settles every mutation another process published through it and did not settle: committed
// if its commit was streamed here, else rolled back. The database is the truth either way:
// a view rehydrated after a gap shows a commit the dead leader never streamed.
//
// The owner (actors/node) sends the control messages; their order is the attachment order.
#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>

#include "actors/db_worker.hpp"
#include "actors/peer_syncer.hpp"
#include "proto/node.pb.h"
#include "runtime/common/status.hpp"

namespace tandem {
namespace ivm {
class DeltaJournal;
}

// (attach_remote_atom, fd): a follower connection whose Welcome was read; frames follow as
// node::Envelope messages from its reader thread.
using attach_remote_atom = caf::atom_constant<caf::atom("attremote")>;
// (attach_local_atom, db_worker_actor, peer_syncer_actor) -> bool: this process leads; the
// answer comes once the proxy is subscribed to the worker.
using attach_local_atom = caf::atom_constant<caf::atom("attlocal")>;
// (detach_atom) -> bool: stop writing to the connection (its owner closes it after the answer).
using detach_atom = caf::atom_constant<caf::atom("detach")>;
// (lost_atom, why): the leader is gone; fail what was sent to it, queue what comes next.
using lost_atom = caf::atom_constant<caf::atom("lost")>;
// (dead_atom, why): no leader will come: fail everything queued and everything after.
using dead_atom = caf::atom_constant<caf::atom("dead")>;

// Spawns the proxy (detached: it writes to the socket). It starts between leaders: requests
// queue until the first attachment.
caf::actor spawn_node_proxy(caf::actor_system& system, std::string name, std::shared_ptr<ivm::DeltaJournal> journal);

// Asks `syncer` what `req` asks (acked, caught up, last error); `done` runs on `self`'s
// thread. A null syncer answers "not connected to a server". Shared by the leader's links
// and a proxy in local mode.
void ask_syncer(caf::event_based_actor* self, const actors::peer_syncer_actor& syncer, const node::SyncWaitRequest& req,
                std::function<void(Result<node::SyncWaitResponse>)> done);

}  // namespace tandem
