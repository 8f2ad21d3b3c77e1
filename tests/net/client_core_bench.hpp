// The test bench of the client core (runtime/sync/client_core) without actors or sockets: a
// real Store plays the node's db_worker (its requests answered when the test says), and a
// real ChannelCore on a temporary file plays the server: the frames the core sends reach the
// channel, and the channel's envelopes come back as frames (large ones in Fragments). So the
// tests check the core against the server's own rules, not against a restatement of itself.
// Used by client_core_test.cpp (connections) and client_core_flow_test.cpp (pushes, forwards).
#pragma once

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>

#include "runtime/sync/binding.hpp"
#include "runtime/sync/channel_core.hpp"
#include "runtime/sync/client_core.hpp"
#include "runtime/sync/frames.hpp"
#include "runtime/sync/resync.hpp"
#include "tests/net/net_test_util.hpp"

namespace tandem::client_core_bench {

using namespace tandem::sync_client;

inline const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);";
inline const char* kUrl = "ws://server.test:7000/sync";

inline SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xCC;
  s[15] = n;
  return s;
}

using tandem::test::TempDir;  // tests/common/temp_dir.hpp, through net_test_util.hpp

inline std::string rows(Store& s) {
  auto r = s.query("SELECT id, title, done FROM todo ORDER BY id");
  REQUIRE(r.ok());
  std::string out;
  for (const auto& row : r->rows) {
    for (const auto& v : row) out += v.to_sql_literal() + " ";
    out += "\n";
  }
  return out;
}

inline ClientConfig config(const std::string& user = "alice", uint64_t seed = 42) {
  ClientConfig c;
  c.url = kUrl;
  c.token = "token-of-" + user;
  c.token_user = user;
  c.schema = {kSchema};
  c.client_name = "test";
  c.instance = std::string(16, static_cast<char>(seed));
  c.seed = seed;
  return c;
}

// A client node: the core, and its db_worker played by a Store. Collects what the core asks.
struct Node {
  std::unique_ptr<Store> store;
  ClientCore core;
  sync_binding::Binding binding;           // what the worker's database is bound to
  std::deque<Action> requests;             // db_worker requests, not answered yet
  size_t merges_answered = 0;              // Merge requests answered so far
  size_t snapshot_ends = 0;                // of which ended a re-sync's snapshot
  std::vector<Send> sends;                 // everything the core sent, in order
  std::vector<uint64_t> connects;          // generations of the Connects asked for
  std::vector<std::string> connect_urls;   // and their URLs
  std::vector<StartTimer> timers;
  std::vector<std::string> closes;
  std::vector<size_t> close_points;        // sends.size() at each CloseLink
  std::map<uint64_t, Result<int64_t>> acked;
  std::map<uint64_t, Result<CaughtUp>> caught_up;
  bool subscribed = false;
  bool fail_reads = false;                 // the worker refuses ReadChanges
  bool fail_merges = false;                // the worker refuses Merge
  worker::ChangesSinceRequest own_changes;  // the subscription's limits for a commit's own changes
  bool own_changes_bare = false;            // and whether commits come without them
  size_t subscribes = 0;
  uint64_t next_waiter = 0;

  explicit Node(uint8_t n, ClientConfig c = config()) : store(test::client_store(site(n), kSchema, "todo")), core(std::move(c)) {}

  void take(Outbox out) {
    for (auto& action : out) {
      if (auto* c = std::get_if<Connect>(&action)) {
        connects.push_back(c->generation);
        connect_urls.push_back(c->url);
      }
      else if (auto* s = std::get_if<Send>(&action)) sends.push_back(std::move(*s));
      else if (auto* t = std::get_if<StartTimer>(&action)) timers.push_back(*t);
      else if (auto* close = std::get_if<CloseLink>(&action)) {
        closes.push_back(close->why);
        close_points.push_back(sends.size());
      }
      else if (auto* a = std::get_if<SettleAcked>(&action)) acked.emplace(a->waiter, a->value);
      else if (auto* u = std::get_if<SettleCaughtUp>(&action)) caught_up.emplace(u->waiter, u->value);
      else if (auto* sub = std::get_if<Subscribe>(&action)) {
        // Taken at once: the worker handles it before any later commit, and nothing of its
        // answer is used.
        subscribed = true;
        ++subscribes;
        own_changes = sub->request.own_changes();
        own_changes_bare = sub->request.own_changes_bare();
      } else requests.push_back(std::move(action));
    }
  }

  template <class T>
  bool pending() const {
    for (const auto& r : requests)
      if (std::holds_alternative<T>(r)) return true;
    return false;
  }

  // Answers the oldest db_worker request as the db_worker would. False when none is queued.
  bool answer_one() {
    if (requests.empty()) return false;
    Action action = std::move(requests.front());
    requests.pop_front();
    if (std::holds_alternative<ReadStatus>(action)) {
      worker::StatusResponse r;
      r.set_site_id(site_bytes(store->site_id()));
      r.set_db_version(store->db_version());
      take(core.on_status(r));
    } else if (std::holds_alternative<ReadPeers>(action)) {
      auto peers = store->peers();
      REQUIRE(peers.ok());
      worker::PeersResponse r;
      for (const auto& p : *peers) {
        auto* s = r.add_peers();
        s->set_peer_site_id(site_bytes(p.site));
        s->set_received_db_version(p.cursor.received);
        s->set_acked_db_version(p.cursor.acked);
      }
      take(core.on_peers(r));
    } else if (std::holds_alternative<ReadBinding>(action)) {
      worker::BindResponse r;
      r.set_user(binding.user);
      r.set_server(binding.server);
      take(core.on_binding(r));
    } else if (auto* b = std::get_if<RecordBinding>(&action)) {
      CHECK(b->request.record());
      if (binding.empty()) binding = {b->request.user(), b->request.server()};
      worker::BindResponse r;
      r.set_user(binding.user);
      r.set_server(binding.server);
      take(core.on_bound(r));
    } else if (auto* read = std::get_if<ReadChanges>(&action)) {
      worker::ChangesSinceResponse r;
      if (fail_reads) {
        r.mutable_error()->set_code(change::Error::INVALID_ARGUMENT);
        r.mutable_error()->set_message("refused read");
        take(core.on_changes_read(read->generation, std::move(r)));
        return true;
      }
      REQUIRE(read->request.only_site_id() == site_bytes(store->site_id()));  // a client pushes only its own changes
      take(core.on_changes_read(read->generation, changes(read->request)));
    } else if (auto* m = std::get_if<Merge>(&action)) {
      ++merges_answered;
      worker::MergeResponse r;
      // As the db_worker: a re-sync's last part first reconciles the rows the snapshot lacks.
      auto reconciled = sync_resync::reconcile(*store, m->request);
      INFO(reconciled.status().to_string());
      REQUIRE(reconciled.ok());
      r.set_rows_reconciled(reconciled->rows_dropped);
      snapshot_ends += m->request.has_snapshot_end();
      auto merged = fail_merges ? Result<MergeResult>(Status::Internal("disk full")) : store->merge(m->request.batch());
      if (merged.ok()) {
        r.set_db_version(merged->db_version);
        r.set_changes_applied(merged->changes_applied);
      } else {
        r.mutable_error()->set_code(change::Error::INTERNAL);
        r.mutable_error()->set_message(merged.status().message());
      }
      take(core.on_merged(m->ticket, r));
    } else if (auto* a = std::get_if<RecordAck>(&action)) {
      auto peer = site_from_bytes(a->request.peer_site_id());
      REQUIRE(peer);
      REQUIRE(store->record_peer_ack(*peer, a->request.acked_db_version(), a->request.received_db_version()).ok());
      worker::PeerStatus r;
      r.set_peer_site_id(a->request.peer_site_id());
      take(core.on_ack_recorded(a->ticket, r));
    } else if (auto* n = std::get_if<TakeNewSite>(&action)) {
      auto fresh = store->take_new_site(n->request.keep_through());
      REQUIRE(fresh.ok());
      worker::NewSiteResponse r;
      r.set_site_id(site_bytes(*fresh));
      take(core.on_new_site(n->keep_through, r));
    } else {
      FAIL("unexpected action");
    }
    return true;
  }
  void answer_all() {
    while (answer_one()) {
    }
  }

  // Start-up against the worker: status, subscription, peers, binding.
  void start() {
    take(core.start());
    answer_all();
  }

  int64_t write(const std::string& sql) {
    auto r = store->write({SqlStatement{sql, {}}});
    INFO(r.status().to_string());
    REQUIRE(r.ok());
    change::RowDeltaBatch batch;
    batch.set_origin(change::RowDeltaBatch::LOCAL);
    batch.set_db_version(r->db_version);
    take(core.on_local_commit(batch));
    return r->db_version;
  }

  // As the db_worker answers a ChangesSinceRequest.
  worker::ChangesSinceResponse changes(const worker::ChangesSinceRequest& q) {
    worker::ChangesSinceResponse r;
    Store::ChangesRequest request;
    request.since = q.since_db_version();
    request.only_from = site_from_bytes(q.only_site_id());
    request.limit = static_cast<size_t>(q.limit());
    request.split_versions = q.split_versions();
    request.resume_after = q.resume_after();
    request.max_bytes = static_cast<size_t>(q.max_bytes());
    auto batch = store->changes(request);
    if (batch.ok()) {
      *r.mutable_batch() = std::move(batch).value();
    } else {
      r.mutable_error()->set_code(change::Error::INVALID_ARGUMENT);
      r.mutable_error()->set_message(batch.status().message());
    }
    return r;
  }

  // A local write told as the db_worker tells its pusher: a LocalCommit with the commit's
  // own changes read at once with the subscription's limits (none while it asks for bare).
  int64_t write_attached(const std::string& sql) {
    REQUIRE(subscribed);
    const int64_t before = store->db_version();
    auto r = store->write({SqlStatement{sql, {}}});
    INFO(r.status().to_string());
    REQUIRE(r.ok());
    worker::LocalCommit commit;
    commit.mutable_batch()->set_origin(change::RowDeltaBatch::LOCAL);
    commit.mutable_batch()->set_db_version(r->db_version);
    commit.set_since_db_version(before);
    commit.set_site_id(site_bytes(store->site_id()));
    if (!own_changes_bare) {
      worker::ChangesSinceRequest read = own_changes;
      read.set_since_db_version(before);
      read.set_only_site_id(site_bytes(store->site_id()));
      read.clear_resume_after();
      *commit.mutable_changes() = changes(read);
    }
    take(core.on_local_commit(std::move(commit)));
    return r->db_version;
  }

  uint64_t wait_acked(int64_t version) {
    const uint64_t id = ++next_waiter;
    auto answer = core.wait_acked(version, id);
    if (answer.now) acked.emplace(id, *answer.now);
    take(std::move(answer.out));
    return id;
  }
  uint64_t wait_caught_up() {
    const uint64_t id = ++next_waiter;
    auto answer = core.wait_caught_up(id);
    if (answer.now) caught_up.emplace(id, *answer.now);
    take(std::move(answer.out));
    return id;
  }

  // The messages of sends[from..]: what the server would act on (fragments reassembled).
  std::vector<sync::Envelope> messages(size_t from = 0, size_t* frames = nullptr, size_t end = SIZE_MAX) {
    std::vector<sync::Envelope> out;
    sync_frames::Reassembler reassembler;
    for (size_t i = from; i < std::min(end, sends.size()); ++i) {
      std::vector<std::string> wire;
      sync::Envelope copy = sends[i].envelope;
      if (sends[i].fragment_bytes == 0) wire.push_back(sync_frames::encode(copy));
      else sync_frames::send_frames(std::move(copy), [&](std::string f) { wire.push_back(std::move(f)); }, sends[i].fragment_bytes);
      if (frames) *frames += wire.size();
      for (auto& f : wire) {
        auto d = sync_frames::decode(f);
        REQUIRE(d.ok);
        if (!d.envelope.has_fragment()) {
          out.push_back(std::move(d.envelope));
          continue;
        }
        std::optional<sync::Envelope> whole;
        sync::Error error;
        REQUIRE(reassembler.add(std::move(*d.envelope.mutable_fragment()), &whole, &error));
        if (whole) out.push_back(std::move(*whole));
      }
    }
    return out;
  }
};

// The server: a ChannelCore on a temporary file, and one connection per node at most.
struct Server {
  TempDir dir;
  std::unique_ptr<sync_channel::ChannelCore> channel;
  std::string user = "alice";
  struct Link {
    Node* node;
    uint64_t generation;
    size_t delivered;  // node->sends up to here reached the server
    bool open;
  };
  std::map<uint64_t, Link> links;  // by session
  uint64_t next_session = 0;
  std::vector<sync::Error> errors_from_clients;

  explicit Server(sync_channel::ChannelOptions options = {}) {
    auto ch = sync_channel::ChannelCore::open(dir.path + "/users/alice.db", options);
    REQUIRE(ch.ok());
    channel = std::move(ch).value();
  }

  // The node's latest Connect succeeds: it sends its hello on the new connection.
  uint64_t accept(Node& node) {
    REQUIRE_FALSE(node.connects.empty());
    const uint64_t gen = node.connects.back();
    REQUIRE(node.core.accepts_link(gen));
    const uint64_t session = ++next_session;
    links[session] = Link{&node, gen, node.sends.size(), true};
    node.take(node.core.on_link_opened(gen));
    return session;
  }
  // The connection goes down (the server side noticed first, or the network).
  void cut(uint64_t session, const std::string& why = "connection reset") {
    auto& l = links.at(session);
    if (!l.open) return;
    l.open = false;
    channel->leave(session);
    l.node->take(l.node->core.on_link_closed(l.generation, why));
  }

  void to_client(uint64_t session, sync::Envelope e) {
    auto& l = links.at(session);
    if (!l.open) return;
    std::vector<std::string> frames;
    sync_frames::send_frames(std::move(e), [&](std::string f) { frames.push_back(std::move(f)); });
    for (const auto& f : frames) l.node->take(l.node->core.on_frame(l.generation, f));
  }
  void deliver(sync_channel::Outbox out) {
    for (auto& o : out) {
      to_client(o.session, std::move(o.envelope));
      if (o.close_after) cut(o.session, "server closed after an error");
    }
  }

  // Hands every message the nodes sent to the channel; true if anything moved.
  bool from_clients() {
    bool moved = false;
    for (auto& [session, l] : links) {
      if (!l.open) continue;
      // A connection the client dropped carries what was sent before its CloseLink.
      const bool dropped = l.node->core.generation() != l.generation;
      size_t end = l.node->sends.size();
      if (dropped) {
        end = l.delivered;
        for (size_t point : l.node->close_points)
          if (point >= l.delivered) {
            end = point;
            break;
          }
      }
      auto messages = l.node->messages(l.delivered, nullptr, end);
      l.delivered = end;
      if (dropped) moved = true;
      for (auto& e : messages) {
        moved = true;
        if (e.has_hello()) {
          auto joined = channel->join(session, user, e.hello());
          INFO(joined.status().to_string());
          REQUIRE(joined.ok());
          deliver(std::move(joined).value());
        } else if (e.has_push()) {
          Status pushed = channel->push(session, std::move(*e.mutable_push()));
          INFO(pushed.to_string());
          REQUIRE(pushed.ok());  // the core keeps the server's rules (sequence, windows, ranges)
        } else if (e.has_client_ack()) {
          auto more = channel->client_ack(session, e.client_ack());
          INFO(more.status().to_string());
          REQUIRE(more.ok());
          deliver(std::move(more).value());
        } else if (e.has_error()) {
          errors_from_clients.push_back(e.error());
        }
      }
      if (dropped) {
        l.open = false;
        channel->leave(session);
      }
    }
    return moved;
  }
  bool flush() {
    if (!channel->has_pending()) return false;
    deliver(channel->flush());
    return true;
  }

  // Runs everything to quiescence: workers answer, messages travel, the channel commits.
  void settle(std::initializer_list<Node*> nodes) {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (Node* n : nodes) moved = n->answer_one() || moved;
      moved = from_clients() || moved;
      moved = flush() || moved;
      if (!moved) return;
    }
    FAIL("no quiescence");
  }
};

// A node started and connected: hello sent, nothing answered yet.
inline void connect(Node& node, Server& server, uint64_t* session) {
  node.start();
  *session = server.accept(node);
}

}  // namespace tandem::client_core_bench
