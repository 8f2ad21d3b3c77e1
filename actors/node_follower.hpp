// node_follower: one connection of a follower process to its node's leader process
// (docs/node.md). It joins the leader on `<db>.node` (proving the node secret) and attaches
// the process's node_proxy (actors/node_proxy.hpp) to the connection: the proxy, which views
// and the tab_bus hold as their db_worker, outlives connections, so when the leader dies and
// another process leads, a new NodeFollower (or this process's own db_worker) stands behind
// the same proxy. The reader thread appends every batch to this process's DeltaJournal
// before it hands anything else on, so the journal holds a commit before the answer to the
// write that made it arrives: views here read SQLite on their own connection and align
// lookups with the journal exactly as views in the leader do.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/db_worker.hpp"
#include "actors/tab_bus.hpp"
#include "proto/node.pb.h"
#include "runtime/node/wire.hpp"
#include "runtime/common/status.hpp"

namespace tandem {
namespace ivm {
class DeltaJournal;
}

struct NodeFollowerConfig {
  std::string database_path;
  std::vector<std::string> schema;
  std::string name = "follower";
  // What this process would sync with ({} offline): the leader's server and user must match;
  // a leader running offline adopts it.
  node::JoinSync sync;
  std::shared_ptr<ivm::DeltaJournal> journal;  // required: fed from the leader's stream
  caf::actor proxy;                            // required: spawn_node_proxy, attached once joined
  std::chrono::milliseconds handshake_timeout{5000};
  // Called on the reader thread once the leader is gone (exited, killed, refused us later),
  // after the proxy was told (lost_atom).
  std::function<void(const Status&)> on_leader_lost;
};

class NodeFollower {
 public:
  // Connects and joins; a journal behind the leader's version gets a gap mark (views behind
  // it rehydrate). UNAVAILABLE: no leader listens (none, or it is starting or dead);
  // PERMISSION_DENIED: the secret is unreadable, wrong or open to others; INVALID_ARGUMENT:
  // the leader has another schema.
  static Result<std::unique_ptr<NodeFollower>> join(caf::actor_system& system, NodeFollowerConfig config);
  // Closes the connection (the leader settles what this process left pending), joins the
  // reader thread, detaches the proxy (which lives on). Not on the reader thread.
  ~NodeFollower();
  NodeFollower(const NodeFollower&) = delete;
  NodeFollower& operator=(const NodeFollower&) = delete;

  bool leader_online() const { return online_; }
  int64_t leader_pid() const { return leader_pid_; }
  int64_t joined_at() const { return joined_at_; }  // the leader's db_version at the join

 private:
  NodeFollower() = default;
  void read_loop();

  NodeFollowerConfig config_;
  caf::actor_system* system_ = nullptr;
  std::atomic<bool> closing_{false};  // our own close is no loss to report
  int fd_ = -1;
  std::thread reader_;
  bool online_ = false;
  int64_t leader_pid_ = 0;
  int64_t joined_at_ = 0;
  std::shared_ptr<void> frames_;  // the FrameReader holding bytes read past the Welcome
};

}  // namespace tandem
