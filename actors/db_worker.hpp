// db_worker: the actor that owns one node's database file (a replicated Store).
//
// It runs local write transactions (SQL with parameters, or structured mutations) and
// answers success or a clear error, serves "changes since", merges batches, keeps the
// peer-tracking table, and sends every committed transaction's row deltas
// (tandem.change.RowDeltaBatch) to its subscribers, after appending them to the node's
// DeltaJournal when one is given (views read it to align lookups, docs/ivm.md).
//
// SQLite calls block, so the worker runs detached (its own thread) and never stalls CAF's
// scheduler. Requests are answered in arrival order; deltas of a transaction reach every
// subscriber before the transaction's own response is sent.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "proto/caf_glue.hpp"
#include "proto/worker.pb.h"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/typed_actor.hpp>

#include "runtime/common/status.hpp"
#include "runtime/sqlite/proto_value.hpp"  // Status <-> change::Error of the answers
#include "runtime/store/store.hpp"

namespace tandem {
namespace ivm {
class DeltaJournal;
}

// Anything that receives committed row deltas (tab_bus, ui_view, peer_syncer, tests).
using delta_subscriber_actor = caf::typed_actor<caf::reacts_to<change::RowDeltaBatch>>;
// A subscriber that pushes the node's changes (SubscribeRequest.own_changes: the peer_syncer).
using own_changes_subscriber_actor = caf::typed_actor<caf::reacts_to<worker::LocalCommit>>;

using db_worker_actor = caf::typed_actor<
    caf::replies_to<worker::WriteRequest>::with<worker::WriteResponse>,
    caf::replies_to<worker::QueryRequest>::with<worker::QueryResponse>,
    caf::replies_to<worker::ChangesSinceRequest>::with<worker::ChangesSinceResponse>,
    caf::replies_to<worker::MergeRequest>::with<worker::MergeResponse>,
    caf::replies_to<worker::PeerAckRequest>::with<worker::PeerStatus>,
    caf::replies_to<worker::PeerStatusRequest>::with<worker::PeerStatus>,
    caf::replies_to<worker::PeersRequest>::with<worker::PeersResponse>,
    caf::replies_to<worker::StatusRequest>::with<worker::StatusResponse>,
    caf::replies_to<worker::BindRequest>::with<worker::BindResponse>,
    caf::replies_to<worker::NewSiteRequest>::with<worker::NewSiteResponse>,
    // The sender (any actor that handles tandem.change.RowDeltaBatch) receives the deltas
    // of every transaction committed after the response's db_version.
    caf::replies_to<worker::SubscribeRequest>::with<worker::SubscribeResponse>,
    caf::reacts_to<worker::UnsubscribeRequest>>;

struct DbWorkerConfig {
  std::string path;                         // the database file (":memory:" for tests)
  StoreOptions store;
  std::vector<std::string> schema;          // run on open in one transaction (CREATE TABLE IF NOT EXISTS ...; a newer declaration migrates a table, docs/schema.md)
  std::vector<std::string> replicate;       // tables to register; empty: every table schema creates
  std::shared_ptr<ivm::DeltaJournal> journal;  // optional
  std::string name = "db_worker";           // for logs
};

// Opens the store, runs the schema and registers tables on the calling thread (so failures
// come back as a Status), then spawns the detached worker that owns the store from then on.
Result<db_worker_actor> spawn_db_worker(caf::actor_system& system, DbWorkerConfig config);

// Registers the messages of the worker protocol (and the change protocol) on `cfg`.
void add_db_worker_message_types(caf::actor_system_config& cfg);

}  // namespace tandem
