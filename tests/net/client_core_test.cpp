// The client's protocol logic (runtime/sync/client_core) without actors or sockets. A real
// Store plays the node's db_worker (its requests answered when the test says), and a real
// ChannelCore on a temporary file plays the server: the frames the core sends reach the
// channel, and the channel's envelopes come back as frames (large ones in Fragments). So the
// tests check the core against the server's own rules, not against a restatement of itself.
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
#include "tests/net/net_test_util.hpp"

using namespace tandem;
using namespace tandem::sync_client;
using namespace std::chrono_literals;

namespace {

const char* kSchema = "CREATE TABLE todo(id INTEGER PRIMARY KEY NOT NULL, title TEXT, done INTEGER DEFAULT 0);";
const char* kUrl = "ws://server.test:7000/sync";

SiteId site(uint8_t n) {
  SiteId s{};
  s[0] = 0xCC;
  s[15] = n;
  return s;
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tandem-client-core-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { (void)std::system(("rm -rf " + path).c_str()); }
};

std::string rows(Store& s) {
  auto r = s.query("SELECT id, title, done FROM todo ORDER BY id");
  REQUIRE(r.ok());
  std::string out;
  for (const auto& row : r->rows) {
    for (const auto& v : row) out += v.to_sql_literal() + " ";
    out += "\n";
  }
  return out;
}

ClientConfig config(const std::string& user = "alice", uint64_t seed = 42) {
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
  std::vector<Send> sends;                 // everything the core sent, in order
  std::vector<uint64_t> connects;          // generations of the Connects asked for
  std::vector<StartTimer> timers;
  std::vector<std::string> closes;
  std::vector<size_t> close_points;        // sends.size() at each CloseLink
  std::map<uint64_t, Result<int64_t>> acked;
  std::map<uint64_t, Result<CaughtUp>> caught_up;
  bool subscribed = false;
  bool fail_reads = false;                 // the worker refuses ReadChanges
  bool fail_merges = false;                // the worker refuses Merge
  uint64_t next_waiter = 0;

  explicit Node(uint8_t n, ClientConfig c = config()) : store(test::client_store(site(n), kSchema, "todo")), core(std::move(c)) {}

  void take(Outbox out) {
    for (auto& action : out) {
      if (auto* c = std::get_if<Connect>(&action)) connects.push_back(c->generation);
      else if (auto* s = std::get_if<Send>(&action)) sends.push_back(std::move(*s));
      else if (auto* t = std::get_if<StartTimer>(&action)) timers.push_back(*t);
      else if (auto* close = std::get_if<CloseLink>(&action)) {
        closes.push_back(close->why);
        close_points.push_back(sends.size());
      }
      else if (auto* a = std::get_if<SettleAcked>(&action)) acked.emplace(a->waiter, a->value);
      else if (auto* u = std::get_if<SettleCaughtUp>(&action)) caught_up.emplace(u->waiter, u->value);
      else requests.push_back(std::move(action));
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
    } else if (std::holds_alternative<Subscribe>(action)) {
      subscribed = true;
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
      const auto& q = read->request;
      Store::ChangesRequest request;
      request.since = q.since_db_version();
      REQUIRE(q.only_site_id() == site_bytes(store->site_id()));  // a client pushes only its own changes
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
      take(core.on_changes_read(read->generation, std::move(r)));
    } else if (auto* m = std::get_if<Merge>(&action)) {
      worker::MergeResponse r;
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
      REQUIRE(store->record_peer_ack(*peer, a->request.acked_db_version()).ok());
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
void connect(Node& node, Server& server, uint64_t* session) {
  node.start();
  *session = server.accept(node);
}

}  // namespace

TEST_CASE("start-up reads the site, the peer table and the binding, then says hello with them", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  CHECK(a.subscribed);
  REQUIRE(a.sends.size() == 1);
  const auto& hello = a.sends[0].envelope.hello();
  CHECK(hello.site_id() == site_bytes(site(1)));
  CHECK(hello.server_site_id().empty());  // never synced: no cursor, no ack told
  CHECK(hello.cursor() == 0);
  CHECK(hello.token() == "token-of-alice");
  CHECK(hello.instance_id().size() == 16);
  REQUIRE(hello.schema_size() == 1);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'milk')");
  server.settle({&a});
  CHECK(a.core.phase() == ClientCore::Phase::live);
  CHECK(a.binding.user == "alice");  // the first welcome binds the database
  CHECK(a.binding.server == sync_binding::normalize_server_url(kUrl));
  CHECK(a.core.client_acked() == a.store->db_version());

  // The next run of the same file tells the server its cursor and what it holds of ours.
  Node again(1);
  again.store = std::move(a.store);
  again.binding = a.binding;
  server.cut(session);
  uint64_t second = 0;
  connect(again, server, &second);
  const auto& h2 = again.sends.back().envelope.hello();
  CHECK(h2.server_site_id() == site_bytes(server.channel->site_id()));
  CHECK(h2.cursor() == server.channel->db_version());
  CHECK(h2.acked_db_version() == again.store->db_version());
  server.settle({&again});
  CHECK(again.core.phase() == ClientCore::Phase::live);
}

TEST_CASE("a database bound to another user or server is refused before anything is sent", "[client-core]") {
  Node a(1);
  SECTION("another user") { a.binding = {"bob", sync_binding::normalize_server_url(kUrl)}; }
  SECTION("another server") { a.binding = {"alice", "ws://elsewhere.test:7000/sync"}; }
  const uint64_t early = a.wait_acked(1);  // registered before the binding is read
  a.start();
  CHECK(a.connects.empty());
  CHECK(a.sends.empty());
  CHECK(a.core.phase() == ClientCore::Phase::offline);
  REQUIRE(a.acked.count(early));
  CHECK_FALSE(a.acked.at(early).ok());
  CHECK(a.acked.at(early).status().message() == a.core.fatal_error());
  const uint64_t later = a.wait_caught_up();
  REQUIRE(a.caught_up.count(later));
  CHECK_FALSE(a.caught_up.at(later).ok());
  a.take(a.core.set_online(false));
  a.take(a.core.set_online(true));
  CHECK(a.connects.empty());  // never in this run
}

TEST_CASE("a welcome for another user than the binding drops the link before anything is pushed", "[client-core]") {
  Server server;  // its user is alice
  ClientConfig c = config();
  c.token_user = "";  // the token's subject could not be read before connecting
  Node a(1, c);
  a.binding = {"bob", sync_binding::normalize_server_url(kUrl)};
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (1, 'x')", {}}}).ok();
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  REQUIRE(a.closes.size() == 1);
  CHECK(a.closes[0] == "database bound to another user");
  CHECK_FALSE(a.core.fatal_error().empty());
  for (const auto& e : a.messages()) CHECK_FALSE(e.has_push());
  CHECK(server.channel->db_version() == 0);
  CHECK(a.binding.user == "bob");
  CHECK(a.timers.empty());  // and no reconnect
}

TEST_CASE("the push window by count holds pushes back until acks open it", "[client-core]") {
  sync_channel::ChannelOptions options;
  options.push_window = 2;
  Server server(options);
  ClientConfig c = config();
  c.push_batch_changes = 1;  // one version per push
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  for (int i = 1; i <= 5; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  a.answer_all();
  CHECK(a.core.pushes_in_flight() == 2);  // the window is full: no read is even asked for
  CHECK_FALSE(a.pending<ReadChanges>());
  int pushes = 0;
  for (const auto& e : a.messages()) pushes += e.has_push();
  CHECK(pushes == 2);
  server.settle({&a});  // acks come back, each opening the window again
  CHECK(a.core.pushes_in_flight() == 0);
  CHECK(a.core.client_acked() == a.store->db_version());
  pushes = 0;
  for (const auto& e : a.messages()) pushes += e.has_push();
  CHECK(pushes == 5);
  CHECK(rows(server.channel->store()) == rows(*a.store));
}

TEST_CASE("the push window by bytes lets one large push go alone", "[client-core]") {
  sync_channel::ChannelOptions options;
  options.push_window_bytes = 50000;
  Server server(options);
  ClientConfig c = config();
  c.push_batch_bytes = 40000;
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (1, hex(randomblob(30000)))", {}}}).ok();
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (2, hex(randomblob(30000)))", {}}}).ok();
  a.write("INSERT INTO todo(id, title) VALUES (3, 'small')");
  a.answer_all();
  // Each large row is a push of its own (60 KB of text); the first fills the byte window.
  CHECK(a.core.pushes_in_flight() == 1);
  CHECK(a.core.push_bytes_in_flight() > options.push_window_bytes);
  CHECK_FALSE(a.pending<ReadChanges>());
  server.settle({&a});
  CHECK(a.core.pushes_in_flight() == 0);
  CHECK(rows(server.channel->store()) == rows(*a.store));
}

TEST_CASE("a connection lost in the middle of pushing resends from what the server acknowledged", "[client-core]") {
  Server server;
  ClientConfig c = config();
  c.push_batch_changes = 1;  // one version per push
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  server.settle({&a});
  const int64_t acked_before = a.core.client_acked();
  CHECK(acked_before == a.store->db_version());
  for (int i = 2; i <= 4; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  a.answer_all();
  CHECK(a.core.pushes_in_flight() == 3);
  const size_t before_cut = a.sends.size();
  server.cut(session);  // the pushes never reached the server
  CHECK(a.core.pushes_in_flight() == 0);
  REQUIRE(a.timers.size() == 1);
  // A stale timer does nothing; the current one connects.
  a.take(a.core.on_timer(a.timers[0].generation - 1));
  CHECK(a.connects.size() == 1);
  a.take(a.core.on_timer(a.timers[0].generation));
  REQUIRE(a.connects.size() == 2);
  const uint64_t second = server.accept(a);
  server.settle({&a});
  auto again = a.messages(before_cut);
  REQUIRE(again.size() >= 2);
  CHECK(again[0].has_hello());
  CHECK(again[0].hello().acked_db_version() == acked_before);
  // The pushes start over at seq 1 from the welcome's client_acked_db_version.
  std::vector<const sync::Push*> pushes;
  for (const auto& e : again)
    if (e.has_push()) pushes.push_back(&e.push());
  REQUIRE(pushes.size() == 3);
  CHECK(pushes[0]->seq() == 1);
  CHECK(pushes[0]->batch().from_db_version() == acked_before);
  CHECK(rows(server.channel->store()) == rows(*a.store));
  CHECK(a.core.client_acked() == a.store->db_version());
  (void)second;
}

TEST_CASE("a transaction larger than a push goes in parts by resume token, restarted whole after a reconnect", "[client-core]") {
  Server server;
  ClientConfig c = config();
  c.push_batch_changes = 4;  // a 10-row transaction is cut inside its version
  Node a(1, c);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  std::string values;
  for (int i = 1; i <= 10; ++i) values += std::string(i > 1 ? "," : "") + "(" + std::to_string(i) + ", 'r')";
  a.write("INSERT INTO todo(id, title) VALUES " + values);

  SECTION("honoured: every part continues the last") {
    server.settle({&a});
    int parts = 0;
    for (const auto& e : a.messages())
      if (e.has_push()) parts += !e.push().batch().resume_after().empty();
    CHECK(parts >= 2);
    CHECK(rows(server.channel->store()) == rows(*a.store));
    CHECK(a.core.client_acked() == a.store->db_version());
  }
  SECTION("not carried over to the next connection") {
    REQUIRE(a.answer_one());  // the first part is read and pushed
    bool cut_inside = false;
    for (const auto& r : a.requests)
      if (auto* read = std::get_if<ReadChanges>(&r)) cut_inside = !read->request.resume_after().empty();
    CHECK(cut_inside);
    server.cut(session);
    a.answer_all();  // the read of the old connection answers late: ignored
    CHECK(a.core.pushes_in_flight() == 0);
    a.take(a.core.on_timer(a.timers.back().generation));
    const size_t before = a.sends.size();
    server.accept(a);
    server.from_clients();  // hello -> welcome: the first read of this connection
    bool first_read_found = false;
    for (const auto& r : a.requests)
      if (auto* read = std::get_if<ReadChanges>(&r)) {
        if (first_read_found) continue;
        first_read_found = true;
        CHECK(read->request.resume_after().empty());
        CHECK(read->request.since_db_version() == 0);
      }
    CHECK(first_read_found);
    server.settle({&a});
    CHECK(a.messages(before).size() > 2);
    CHECK(rows(server.channel->store()) == rows(*a.store));
  }
  SECTION("a read the worker refuses sends nothing") {
    a.fail_reads = true;
    a.answer_all();
    for (const auto& e : a.messages()) CHECK_FALSE(e.has_push());
    CHECK(a.core.pushes_in_flight() == 0);
    // The next local commit asks again.
    a.fail_reads = false;
    a.write("INSERT INTO todo(id, title) VALUES (11, 'r')");
    server.settle({&a});
    CHECK(rows(server.channel->store()) == rows(*a.store));
  }
}

TEST_CASE("events of a stale connection generation are ignored", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  const uint64_t old = a.core.generation();
  a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  a.answer_all();
  b.write("INSERT INTO todo(id, title) VALUES (2, 'two')");
  server.settle({&b});
  // a's connection is dropped by a going offline, with a forward from b's push outstanding.
  REQUIRE(a.pending<Merge>());
  a.take(a.core.set_online(false));
  CHECK(a.core.generation() != old);
  REQUIRE(a.closes.size() == 1);
  const size_t sent = a.sends.size();
  a.answer_all();  // the merge answers after the drop: no ClientAck on a later connection
  CHECK(a.sends.size() == sent);
  sync::Envelope ack;
  ack.mutable_ack()->set_seq(1);
  ack.mutable_ack()->set_client_acked_db_version(99);
  a.take(a.core.on_frame(old, sync_frames::encode(ack)));
  CHECK(a.core.client_acked() < 99);
  a.take(a.core.on_link_closed(old, "late close"));
  CHECK(a.timers.empty());
  CHECK(a.core.last_error().empty());
  CHECK(a.core.phase() == ClientCore::Phase::offline);
  // Online again: connects at once, and everything converges.
  a.take(a.core.set_online(true));
  REQUIRE(a.connects.size() == 2);
  server.accept(a);
  server.settle({&a, &b});
  CHECK(rows(*a.store) == rows(*b.store));
}

TEST_CASE("a merge of the previous connection answering late acknowledges nothing on the next one", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  server.settle({&a});
  a.write("INSERT INTO todo(id, title) VALUES (2, 'two')");
  server.settle({&a});  // b holds two forwards, merges asked for and not answered
  size_t merges = 0;
  for (const auto& r : b.requests) merges += std::holds_alternative<Merge>(r);
  REQUIRE(merges == 2);
  server.cut(sb);
  b.take(b.core.on_timer(b.timers.back().generation));
  server.accept(b);
  server.from_clients();  // welcome, and one forward of both versions from b's old cursor
  REQUIRE(b.core.phase() == ClientCore::Phase::live);
  const size_t sent = b.sends.size();
  REQUIRE(b.answer_one());  // the first old merge: its forward was of the old connection
  REQUIRE(b.answer_one());  // the second: b's cursor is now the server's head
  CHECK(b.core.cursor() == server.channel->db_version());
  CHECK(b.sends.size() == sent);  // no ClientAck of an old forward on this connection
  // The new connection's forward is still being merged: not caught up yet.
  const uint64_t w = b.wait_caught_up();
  CHECK(b.caught_up.count(w) == 0);
  server.settle({&a, &b});
  REQUIRE(b.caught_up.count(w));
  CHECK(b.caught_up.at(w).ok());
  CHECK(rows(*b.store) == rows(*a.store));
}

TEST_CASE("forwards are merged in order and acknowledged only after their merge", "[client-core]") {
  sync_channel::ChannelOptions options;
  options.forward_batch_changes = 3;  // one row per forward
  options.forward_window = 2;
  Server server(options);
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  for (int i = 1; i <= 4; ++i) a.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'x')");
  server.settle({&a});  // b's worker answers nothing yet
  std::vector<uint64_t> merge_seqs;
  for (const auto& r : b.requests)
    if (auto* m = std::get_if<Merge>(&r)) merge_seqs.push_back(m->ticket.seq);
  REQUIRE(merge_seqs.size() == 2);  // the server's window
  CHECK(merge_seqs[0] == 1);
  CHECK(merge_seqs[1] == 2);
  size_t sent = b.sends.size();
  CHECK_FALSE(b.core.caught_up());
  REQUIRE(b.answer_one());  // merge 1 commits: its ClientAck goes out, not before
  REQUIRE(b.sends.size() == sent + 1);
  CHECK(b.sends.back().envelope.client_ack().seq() == 1);
  server.settle({&a, &b});
  CHECK(rows(*b.store) == rows(*a.store));
  CHECK(b.core.cursor() == server.channel->db_version());
  auto cursor = b.store->peer(server.channel->site_id());
  REQUIRE(cursor.ok());
  CHECK(cursor->received == server.channel->db_version());

  SECTION("a merge the worker refuses is rejected and the client reconnects") {
    a.write("INSERT INTO todo(id, title) VALUES (5, 'y')");
    b.fail_merges = true;
    server.settle({&a, &b});
    REQUIRE_FALSE(server.errors_from_clients.empty());
    CHECK(server.errors_from_clients.back().code() == sync::Error::REJECTED);
    REQUIRE_FALSE(b.closes.empty());
    CHECK(b.closes.back() == "merge failed");
    CHECK_FALSE(b.timers.empty());
    b.fail_merges = false;
    b.take(b.core.on_timer(b.timers.back().generation));
    server.accept(b);
    server.settle({&a, &b});
    CHECK(rows(*b.store) == rows(*a.store));
  }
}

TEST_CASE("caught-up is answered only once everything is pushed, acknowledged, recorded and merged", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  const uint64_t early = a.wait_caught_up();  // before the welcome
  CHECK(a.caught_up.empty());
  server.settle({&a, &b});
  REQUIRE(a.caught_up.count(early));
  REQUIRE(a.caught_up.at(early).ok());

  b.write("INSERT INTO todo(id, title) VALUES (1, 'from b')");
  const int64_t own = a.write("INSERT INTO todo(id, title) VALUES (2, 'from a')");
  const uint64_t w = a.wait_caught_up();
  CHECK(a.caught_up.count(w) == 0);
  // Step by step: after a's push is acknowledged but before the ack is recorded, and
  // before b's change is merged, a is not caught up.
  for (int round = 0; round < 1000 && !a.caught_up.count(w); ++round) {
    bool moved = b.answer_one();
    moved = server.from_clients() || moved;
    moved = server.flush() || moved;
    if (!moved && !a.answer_one()) break;
    if (a.caught_up.count(w)) break;
    // Whenever it is not yet answered, something is still outstanding.
    CHECK_FALSE(a.core.caught_up());
  }
  REQUIRE(a.caught_up.count(w));
  REQUIRE(a.caught_up.at(w).ok());
  CHECK(a.caught_up.at(w)->client_acked == own);
  CHECK(a.caught_up.at(w)->cursor == server.channel->db_version());
  CHECK(rows(*a.store) == rows(*b.store));
  auto recorded = a.store->peer(server.channel->site_id());
  REQUIRE(recorded.ok());
  CHECK(recorded->acked == own);
}

TEST_CASE("wait-acked answers once the ack is recorded, and fails on a fatal refusal", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  server.settle({&a});
  const int64_t v = a.write("INSERT INTO todo(id, title) VALUES (1, 'one')");
  const uint64_t w = a.wait_acked(v);
  // Run until the server's ack arrived but leave its recording unanswered.
  a.answer_all();
  server.from_clients();
  server.flush();
  CHECK(a.core.client_acked() == v);
  CHECK(a.acked.count(w) == 0);  // not before the peer table holds it
  REQUIRE(a.pending<RecordAck>());
  a.answer_all();
  REQUIRE(a.acked.count(w));
  REQUIRE(a.acked.at(w).ok());
  CHECK(*a.acked.at(w) == v);
  const uint64_t now = a.wait_acked(v);  // already recorded: answered at once
  REQUIRE(a.acked.count(now));
  CHECK(*a.acked.at(now) == v);

  const int64_t v2 = a.write("INSERT INTO todo(id, title) VALUES (2, 'two')");
  const uint64_t pending = a.wait_acked(v2);
  sync::Envelope refusal = sync_frames::error_envelope(sync::Error::UNAUTHENTICATED, "token expired", true);
  server.to_client(session, refusal);
  REQUIRE(a.acked.count(pending));
  CHECK_FALSE(a.acked.at(pending).ok());
  CHECK(a.acked.at(pending).status().message() == "server refused: UNAUTHENTICATED: token expired");
  // A fatal refusal waits the whole cap before trying again.
  REQUIRE_FALSE(a.timers.empty());
  CHECK(a.timers.back().delay == config().backoff_cap);
  const uint64_t after = a.wait_acked(v2 + 1);
  REQUIRE(a.acked.count(after));
  CHECK_FALSE(a.acked.at(after).ok());

  SECTION("and the node stopping fails the waiters left") {
    server.cut(session);
    a.take(a.core.on_timer(a.timers.back().generation));
    server.accept(a);
    server.from_clients();  // the welcome clears the refusal
    CHECK(a.core.fatal_error().empty());
    const uint64_t last = a.wait_acked(v2 + 5);  // a version that never comes
    a.take(a.core.fail_waiters("the node is stopping"));
    REQUIRE(a.acked.count(last));
    CHECK(a.acked.at(last).status().message() == "the node is stopping");
  }
}

TEST_CASE("reconnect delays grow with jitter within their bounds and reset after a welcome", "[client-core]") {
  ClientConfig c = config("alice", 7);
  c.backoff_base = 100ms;
  c.backoff_cap = 1000ms;
  Node a(1, c);
  a.start();
  REQUIRE(a.connects.size() == 1);
  const uint64_t first = a.wait_acked(1);
  std::vector<std::chrono::milliseconds> delays;
  for (int i = 0; i < 8; ++i) {
    a.take(a.core.on_connect_failed(a.connects.back(), "Connection refused"));
    REQUIRE(a.timers.size() == delays.size() + 1);
    delays.push_back(a.timers.back().delay);
    a.take(a.core.on_timer(a.timers.back().generation));
    REQUIRE(a.connects.size() == delays.size() + 1);
  }
  // Full jitter: attempt k waits between 0 and min(cap, base * 2^k).
  std::set<int64_t> distinct;
  for (size_t k = 0; k < delays.size(); ++k) {
    const int64_t ceiling = std::min<int64_t>(1000, 100 << k);
    CHECK(delays[k].count() >= 0);
    CHECK(delays[k].count() <= ceiling);
    distinct.insert(delays[k].count());
  }
  CHECK(distinct.size() > 1);
  // Never reached: the waiter learnt the cause at once, and so does every later one.
  REQUIRE(a.acked.count(first));
  CHECK(a.acked.at(first).status().message() == std::string("cannot reach the server at ") + kUrl + ": Connection refused");
  CHECK(a.core.last_error() == a.acked.at(first).status().message());
  const uint64_t second = a.wait_caught_up();
  REQUIRE(a.caught_up.count(second));
  CHECK_FALSE(a.caught_up.at(second).ok());

  // Another seed jitters otherwise.
  ClientConfig other = c;
  other.seed = 8;
  Node b(2, other);
  b.start();
  std::vector<std::chrono::milliseconds> other_delays;
  for (int i = 0; i < 8; ++i) {
    b.take(b.core.on_connect_failed(b.connects.back(), "Connection refused"));
    other_delays.push_back(b.timers.back().delay);
    b.take(b.core.on_timer(b.timers.back().generation));
  }
  CHECK(other_delays != delays);

  // A welcome resets the ceiling: the next loss waits at most `base` again; and from now on
  // waiters wait through failed attempts.
  Server server;
  const uint64_t session = server.accept(a);
  server.settle({&a});
  CHECK(a.core.last_error().empty());
  server.cut(session);
  REQUIRE_FALSE(a.timers.empty());
  CHECK(a.timers.back().delay <= 100ms);
  const uint64_t waiting = a.wait_acked(a.store->db_version() + 1);
  a.take(a.core.on_timer(a.timers.back().generation));
  a.take(a.core.on_connect_failed(a.connects.back(), "Connection refused"));
  CHECK(a.acked.count(waiting) == 0);
  CHECK(a.core.last_error() == std::string("cannot reach the server at ") + kUrl + ": Connection refused");
  CHECK(a.timers.back().delay <= 200ms);
}

TEST_CASE("a site conflict takes a new site id and connects again at once", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t sa = 0;
  connect(a, server, &sa);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'a')");
  server.settle({&a});
  const int64_t acked = a.core.client_acked();
  REQUIRE(acked > 0);
  // A copy of a's file, made before that push was acknowledged, with a write of its own.
  Node copy(1, config("alice", 43));  // the same site id, another run, knowing nothing of the server
  copy.write("INSERT INTO todo(id, title) VALUES (2, 'copy')");
  uint64_t sc = 0;
  connect(copy, server, &sc);
  server.from_clients();  // the hello is refused with SITE_CONFLICT
  REQUIRE_FALSE(copy.closes.empty());
  CHECK(copy.closes[0] == "site conflict");
  REQUIRE(copy.pending<TakeNewSite>());
  CHECK(copy.timers.empty());  // no backoff: it reconnects as soon as it has a new id
  copy.answer_all();
  CHECK(copy.core.site() != site_bytes(site(1)));
  CHECK(copy.core.site() == site_bytes(copy.store->site_id()));
  REQUIRE(copy.connects.size() == 2);
  server.accept(copy);
  CHECK(copy.sends.back().envelope.hello().site_id() == copy.core.site());
  server.settle({&a, &copy});
  CHECK(rows(server.channel->store()) == "1 'a' 0 \n2 'copy' 0 \n");
  CHECK(rows(*copy.store) == rows(server.channel->store()));
  CHECK(rows(*a.store) == rows(server.channel->store()));
}

TEST_CASE("a forward in fragments is merged only once whole, and dropped with its connection", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  server.settle({&a, &b});
  // A value of 3 MiB: a's push goes out in Fragments, the forward to b too.
  a.store->write({SqlStatement{"INSERT INTO todo(id, title) VALUES (1, hex(randomblob(1572864)))", {}}}).ok();
  a.write("INSERT INTO todo(id, title) VALUES (2, 'small')");
  a.answer_all();
  size_t frames = 0;
  auto pushed = a.messages(0, &frames);
  CHECK(frames > pushed.size());  // some message went in several frames
  server.from_clients();
  auto out = server.channel->flush();
  std::vector<sync::Envelope> to_b;
  for (auto& o : out)
    if (o.session == sb) to_b.push_back(o.envelope);
    else server.to_client(o.session, o.envelope);
  REQUIRE_FALSE(to_b.empty());
  REQUIRE(to_b[0].has_forward());
  std::vector<std::string> pieces;
  sync_frames::send_frames(sync::Envelope(to_b[0]), [&](std::string f) { pieces.push_back(std::move(f)); });
  REQUIRE(pieces.size() > 2);
  const uint64_t gen = b.core.generation();
  for (size_t i = 0; i + 1 < pieces.size(); ++i) b.take(b.core.on_frame(gen, pieces[i]));
  CHECK_FALSE(b.pending<Merge>());  // not before the last fragment

  SECTION("the last fragment completes it") {
    b.take(b.core.on_frame(gen, pieces.back()));
    REQUIRE(b.pending<Merge>());
    for (size_t i = 1; i < to_b.size(); ++i) server.to_client(sb, to_b[i]);
    server.settle({&a, &b});
    CHECK(rows(*b.store) == rows(*a.store));
  }
  SECTION("a lost connection drops the part, and the next one brings the whole forward again") {
    server.cut(sb);
    CHECK_FALSE(b.pending<Merge>());
    b.take(b.core.on_timer(b.timers.back().generation));
    server.accept(b);
    server.settle({&a, &b});
    CHECK(rows(*b.store) == rows(*a.store));
  }
  SECTION("a fragment out of order is a protocol error") {
    b.take(b.core.on_frame(gen, pieces[0]));  // offset 0 again in the middle
    CHECK_FALSE(b.pending<Merge>());
    REQUIRE_FALSE(b.sends.empty());
    CHECK(b.sends.back().envelope.error().code() == sync::Error::PROTOCOL);
    CHECK(b.closes.back() == "bad fragment from server");
    CHECK_FALSE(b.timers.empty());
  }
}

TEST_CASE("pings are answered and unexpected messages are protocol errors", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  sync::Envelope ping;
  ping.mutable_ping()->set_nonce(77);
  server.to_client(session, ping);  // allowed before the welcome
  REQUIRE(a.sends.back().envelope.has_pong());
  CHECK(a.sends.back().envelope.pong().nonce() == 77);
  sync::Envelope forward;
  forward.mutable_forward()->set_seq(1);
  server.to_client(session, forward);  // a forward before the welcome
  CHECK(a.sends.back().envelope.error().code() == sync::Error::PROTOCOL);
  CHECK(a.closes.back() == "protocol error");
  CHECK(a.timers.size() == 1);
  a.take(a.core.on_frame(a.core.generation(), "not an envelope"));
  CHECK(a.timers.size() == 1);  // no link any more: ignored
}

TEST_CASE("offline keeps local writes, online connects at once and pushes them", "[client-core]") {
  Server server;
  ClientConfig c = config();
  c.start_online = false;
  Node a(1, c);
  a.start();
  CHECK(a.connects.empty());
  CHECK(a.core.phase() == ClientCore::Phase::offline);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'offline')");
  CHECK_FALSE(a.pending<ReadChanges>());
  const uint64_t w = a.wait_acked(a.store->db_version());
  CHECK(a.acked.count(w) == 0);  // waits: nothing failed yet
  a.take(a.core.set_online(true));
  REQUIRE(a.connects.size() == 1);
  server.accept(a);
  server.settle({&a});
  REQUIRE(a.acked.count(w));
  CHECK(*a.acked.at(w) == a.store->db_version());
  CHECK(rows(server.channel->store()) == rows(*a.store));
  a.take(a.core.set_online(false));
  REQUIRE(a.closes.size() == 1);
  CHECK(a.closes[0] == "going offline");
  CHECK(a.timers.empty());
}

TEST_CASE("a server error before the welcome is the cause told to waiters, then retried", "[client-core]") {
  Server server;
  Node a(1);
  uint64_t session = 0;
  connect(a, server, &session);
  const uint64_t w = a.wait_acked(1);
  server.to_client(session, sync_frames::error_envelope(sync::Error::UNAVAILABLE, "at capacity", true));
  REQUIRE(a.acked.count(w));
  CHECK(a.acked.at(w).status().message() == "server refused: UNAVAILABLE: at capacity");
  CHECK(a.core.fatal_error().empty());  // retryable
  REQUIRE(a.timers.size() == 1);
  CHECK(a.timers[0].delay <= config().backoff_base);
  a.take(a.core.on_timer(a.timers[0].generation));
  server.accept(a);
  a.write("INSERT INTO todo(id, title) VALUES (1, 'x')");
  server.settle({&a});
  CHECK(rows(server.channel->store()) == rows(*a.store));
}

TEST_CASE("two clients converge through a channel core, each pushing only its own changes", "[client-core]") {
  Server server;
  Node a(1), b(2);
  uint64_t sa = 0, sb = 0;
  connect(a, server, &sa);
  connect(b, server, &sb);
  for (int i = 0; i < 20; ++i) {
    Node& n = i % 2 ? a : b;
    n.write("INSERT INTO todo(id, title) VALUES (" + std::to_string(i) + ", 'n" + std::to_string(i) + "') "
            "ON CONFLICT(id) DO UPDATE SET done = done + 1");
    if (i % 3 == 0) server.settle({&a, &b});
    if (i == 10) {
      server.cut(sb);
      b.take(b.core.on_timer(b.timers.back().generation));
      sb = server.accept(b);
    }
  }
  server.settle({&a, &b});
  CHECK(rows(*a.store) == rows(*b.store));
  CHECK(rows(server.channel->store()) == rows(*a.store));
  for (Node* n : {&a, &b})
    for (const auto& e : n->messages())
      if (e.has_push())
        for (const auto& c : e.push().batch().changes()) CHECK(c.site_id() == site_bytes(n->store->site_id()));
  CHECK(a.core.caught_up());
  CHECK(b.core.caught_up());
}
