// node_leader: the leader process's side of a node spread over processes (docs/node.md).
// It listens on `<db>.node`, admits followers that prove the node secret (same uid, same
// schema), and gives each one a link actor that
//   - forwards the follower's db_worker requests to the db_worker and writes back the
//     answers, matched by request id;
//   - is subscribed to the db_worker (with versions): every commit's row deltas reach the
//     follower before the answer to the write that made it, so the follower's journal
//     holds a commit before its writer settles (docs/ivm.md, "Consistency");
//   - is a member of the leader's tab_bus: pending mutations and settlements cross in both
//     directions; when the follower dies the bus settles what it published (no phantom row);
//   - answers the follower's sync waits from the leader's peer_syncer.
// A leader opened offline adopts the server and token of the first follower that names one
// (adopt_sync): the node then syncs whichever process took the lock first.
//
// Threads: one accept thread, and one reader thread per follower (blocking reads on the
// socket, handed to the link actor as messages); the link actors run detached because
// they write to the socket.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/db_worker.hpp"
#include "actors/peer_syncer.hpp"
#include "actors/tab_bus.hpp"
#include "proto/node.pb.h"
#include "runtime/common/status.hpp"

namespace tandem {

struct NodeLeaderConfig {
  std::string database_path;
  std::vector<std::string> schema;  // what followers must have opened the database with
  std::string secret;               // the node secret (node::ensure_secret)
  std::string server;               // the server the leader syncs with ("" offline)
  std::string user;                 // the user of the leader's token ("" offline)
  db_worker_actor worker;
  tab_bus_actor bus;
  actors::peer_syncer_actor syncer;  // null: followers' sync waits answer "offline"
  // A leader running offline (null syncer) that admits a follower naming a server calls this
  // (on that follower's connection thread, before its Welcome) to start syncing the node with
  // the follower's server and token; the returned syncer then answers every follower's sync
  // waits, and later followers must name the same server and user. Unset: never adopts.
  std::function<Result<actors::peer_syncer_actor>(const node::Join&)> adopt_sync;
  std::string name = "node_leader";
  std::chrono::milliseconds request_timeout{60000};
  // A follower that takes no bytes for this long (stopped, hung) is dropped, so what the
  // leader holds for it stays bounded; it joins again and rehydrates when it runs again.
  std::chrono::milliseconds follower_write_timeout{10000};
};

class NodeLeader {
 public:
  // Binds `<db>.node` (the caller holds the database lock) and starts accepting.
  static Result<std::unique_ptr<NodeLeader>> start(caf::actor_system& system, NodeLeaderConfig config);
  // Stops accepting and closes every follower's connection (they see the leader gone);
  // joins the threads. Call before the actor system ends.
  ~NodeLeader();
  NodeLeader(const NodeLeader&) = delete;
  NodeLeader& operator=(const NodeLeader&) = delete;

  size_t followers() const { return followers_.load(); }

  // What the node syncs with, shared with the links: a leader running offline adopts the
  // first online follower's server (NodeLeaderConfig::adopt_sync).
  struct SyncState {
    mutable std::mutex mu;
    std::string server, user;
    actors::peer_syncer_actor syncer;
  };

 private:
  struct Connection;
  NodeLeader(caf::actor_system& system, NodeLeaderConfig config, int listen_fd, int wake_read, int wake_write);
  void accept_loop();
  void serve(std::shared_ptr<Connection> conn);
  Status admit(const node::Join& join, const std::string& nonce, uid_t peer);
  void reap_locked();

  caf::actor_system& system_;
  NodeLeaderConfig config_;
  int listen_fd_, wake_read_, wake_write_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> followers_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<std::shared_ptr<Connection>> connections_;
  std::shared_ptr<SyncState> sync_;
};

// Registers the node protocol's messages (node::Envelope and the sync waits).
void add_node_message_types(caf::actor_system_config& cfg);

}  // namespace tandem
