// Node: one call opens a node on a database file, in whatever process calls it
// (docs/node.md, docs/embedding.md). The first process to take the database's lock is the
// leader: it runs the db_worker, the peer_syncer (when `sync` is set), the node's tab_bus and
// the NodeLeader that admits other processes. A process that finds the lock held joins that
// leader as a follower: its worker() is a proxy of the leader's db_worker, its tab_bus and
// journal are its own, fed from the leader. Either way the application uses the same
// handles: worker(), bus(), journal(), spawn_view(), wait_acked().
//
// When the leader process dies (exit, crash, kill -9), a follower's Node takes over by itself:
// the first survivor to take the lock starts its db_worker, peer_syncer and listener, the
// others join it. The handles the application holds (worker(), bus(), views) stay valid and
// exact: a follower's worker() is a proxy (actors/node_proxy.hpp) that outlives leaders.
//
// Threading: open and the destructor block (call them off the actor threads); the accessors
// are thread-safe. A takeover runs on the Node's own thread. The Node must be destroyed
// before its actor system.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/db_worker.hpp"
#include "actors/peer_syncer.hpp"
#include "actors/tab_bus.hpp"
#include "actors/ui_view.hpp"
#include "proto/node.pb.h"
#include "runtime/common/status.hpp"

namespace tandem {
namespace ivm {
class DeltaJournal;
}
class NodeLeader;
class NodeFollower;

struct TakeoverReport {
  Status status;          // OK: the node has a leader again
  bool leads = false;     // this process took the lock
  int64_t leader_pid = 0;
  std::chrono::microseconds took{0};  // from hearing of the loss to the new leader
};

struct NodeConfig {
  std::string database_path;
  std::vector<std::string> schema;  // run by the leader; a follower must name the same
  std::string name = "node";
  // Set: the leader connects to this server (a follower's waits go to the leader's syncer).
  std::optional<actors::PeerSyncerConfig> sync;
  // How long open keeps trying while the lock is held but no leader answers yet (a leader
  // starting, or one that just died and whose lock a process is about to take).
  std::chrono::milliseconds join_within{5000};
  // Leader: a follower process that takes no bytes for this long (stopped with SIGSTOP, hung)
  // is dropped; it joins again and its views rehydrate when it runs again.
  std::chrono::milliseconds follower_write_timeout{10000};
  // Follower only: called (on an internal thread) when the leader process is gone, before
  // this node takes over.
  std::function<void(const Status&)> on_leader_lost;
  // Follower only: called (on the Node's takeover thread) once the node has a leader again,
  // or could find none within join_within (the node is then unusable: requests fail).
  std::function<void(const TakeoverReport&)> on_takeover;
};


class Node {
 public:
  static Result<std::unique_ptr<Node>> open(caf::actor_system& system, NodeConfig config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  bool is_leader() const { return leads_; }
  db_worker_actor worker() const { return worker_; }
  tab_bus_actor bus() const { return bus_; }
  std::shared_ptr<ivm::DeltaJournal> journal() const { return journal_; }
  const std::string& database_path() const { return config_.database_path; }
  // The leader's pid (this process's when leader).
  int64_t leader_pid() const;
  // Whether a peer_syncer runs for the node (here or in the leader).
  bool online() const;

  // A ui_view of this node, reading SQLite on its own connection.
  Result<ui_view_actor> spawn_view(const std::string& name, std::function<void(const view::ViewChange&)> on_change = {});

  // The node's peer_syncer, here or in the leader: the server's acknowledged version once it
  // holds everything up to `version`; (own changes acked, server cursor) once caught up; what
  // the last connection attempt hit. Errors carry the syncer's message.
  Result<int64_t> wait_acked(int64_t version, std::chrono::milliseconds within);
  Result<std::pair<int64_t, int64_t>> caught_up(std::chrono::milliseconds within);
  std::string last_sync_error();
  // Stopping: answers every caller waiting on the node (its syncer here, or the link to the
  // leader) at once with an error, and takes over no more. The node is unusable afterwards
  // except for destruction.
  void interrupt();

 private:
  Node(caf::actor_system& system, NodeConfig config);
  Result<node::SyncWaitResponse> sync_wait(node::SyncWaitRequest req, std::chrono::milliseconds within);
  // Takes the lock and leads; UNAVAILABLE when another process holds it. On any error,
  // whatever it started is stopped again.
  Status lead();
  // Joins the process that holds the lock; UNAVAILABLE when none answers (yet).
  Status join();
  // After lead() found the lock held (`led`): join(), then lead() or join() until one works,
  // join_within passes or the node stops.
  Status lead_or_join(const Status& led);
  Result<actors::peer_syncer_actor> adopt_sync(const db_worker_actor& worker, const node::Join& join);
  void on_lost(const Status& why);
  void takeover_loop();

  caf::actor_system& system_;
  NodeConfig config_;
  std::shared_ptr<ivm::DeltaJournal> journal_;
  caf::actor proxy_;         // a process that joined first: the handle that outlives leaders
  db_worker_actor worker_;   // what the application and views use: proxy_, or own_worker_
  tab_bus_actor bus_;
  std::atomic<bool> leads_{false};
  std::atomic<bool> online_{false};
  std::atomic<int64_t> leader_pid_{0};

  std::mutex mu_;  // what a takeover replaces
  db_worker_actor own_worker_;
  actors::peer_syncer_actor syncer_;
  std::unique_ptr<NodeLeader> leader_;
  std::unique_ptr<NodeFollower> follower_;
  std::condition_variable wake_;
  bool lost_ = false;
  Status lost_why_;
  std::atomic<bool> stopping_{false};
  std::thread takeover_;
  std::shared_ptr<net::EventLoop> adopted_loop_;  // the adopted syncer's I/O thread
};

}  // namespace tandem
