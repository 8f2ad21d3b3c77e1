// The public Database over the engine's Node facade (actors/node.hpp).
//
// Each Database owns an actor system (two scheduler threads), the Node (leader or follower)
// and one ui_view through which every watch and every optimistic mutation goes, so that a
// mutation shows at once in all of the Database's live queries.
//
// Lifetime and threads. Blocking calls hold `use` shared for their whole duration; close()
// marks the Database closed, interrupts the node's waits (wait_synced, wait_acked answer at
// once), then takes `use` exclusively, so the actor system is never destroyed under a call
// in flight. Callbacks run on actor threads with `callback_depth` raised: a blocking call
// there would hold one of the two scheduler threads while waiting for actors that may need
// it, so those calls refuse with wrong_thread instead. A watch's callback runs under the
// watch's mutex, which is how stop() guarantees that no callback runs after it returns.
#include "tandem/database.hpp"

#include <atomic>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/node.hpp"
#include "actors/system_config.hpp"
#include "lib/convert.hpp"
#include "runtime/net/websocket.hpp"
#include "runtime/sync/schema_sync.hpp"

namespace tandem::api {
namespace detail {
namespace {

thread_local int callback_depth = 0;

// Marks the current thread as running a user callback.
struct CallbackScope {
  CallbackScope() { ++callback_depth; }
  ~CallbackScope() { --callback_depth; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

Status wrong_thread(const char* what) {
  return {Code::wrong_thread, std::string(what) + " blocks: call it outside Tandem's callbacks"};
}
Status closed_status() { return {Code::closed, "the database is closed"}; }

// One request from a blocking caller; caf errors (timeouts, actors gone) are unavailable.
template <class Resp, class Handle, class Req>
Result<Resp> ask(caf::actor_system& system, const Handle& to, Req req, std::chrono::milliseconds timeout) {
  caf::scoped_actor self{system};
  std::optional<Resp> out;
  Status err;
  self->request(to, timeout, std::move(req))
      .receive([&](Resp& r) { out = std::move(r); },
               [&](caf::error& e) { err = Status(Code::unavailable, system.render(e)); });
  if (out) return std::move(*out);
  return err;
}

}  // namespace

struct DatabaseImpl;

struct WatchImpl {
  std::function<void(const WatchEvent&)> on_event;
  std::mutex mu;  // held while on_event runs
  std::atomic<bool> stopped{false};
  std::vector<std::string> columns;
  bool ordered = false;
  caf::actor watcher;  // guarded by the DatabaseImpl's mu
  std::weak_ptr<DatabaseImpl> db;

  // On the watcher actor's thread.
  void deliver(const WatchEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    if (stopped) return;
    CallbackScope scope;
    on_event(e);
  }
  void stop();
};

struct DatabaseImpl {
  Options options;
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> system;
  std::shared_ptr<net::EventLoop> loop;
  std::unique_ptr<::tandem::Node> node;
  ui_view_actor view;
  std::shared_mutex use;  // shared: a call using the actors; exclusive: close tearing down
  std::mutex mu;          // closed, watches, WatchImpl::watcher
  bool closed = false;
  std::vector<std::shared_ptr<WatchImpl>> watches;

  // Ends the view, the node, the actors and the I/O thread (the caller holds `use`
  // exclusively, or nobody else knows this object yet).
  void teardown() {
    if (view) caf::anon_send_exit(view, caf::exit_reason::user_shutdown);
    // A detached actor's thread ends only once no handle to it remains.
    view = ui_view_actor();
    node.reset();
    if (system) system->await_all_actors_done();
    if (loop) loop->stop();
    system.reset();
  }

  Status close() {
    if (callback_depth > 0) return wrong_thread("close");
    std::vector<std::shared_ptr<WatchImpl>> ws;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (closed) return {};
      closed = true;
      ws.swap(watches);
    }
    for (auto& w : ws) {
      w->stopped = true;
      { std::lock_guard<std::mutex> wait_for_callback(w->mu); }
      if (w->watcher) caf::anon_send_exit(w->watcher, caf::exit_reason::user_shutdown);
      std::lock_guard<std::mutex> lock(mu);
      w->watcher = caf::actor();
    }
    if (node) node->interrupt();
    std::unique_lock<std::shared_mutex> exclusive(use);
    teardown();
    return {};
  }
};

void WatchImpl::stop() {
  stopped = true;
  // From a callback (this watch's or another's) waiting could deadlock: the flag alone
  // keeps any further callback from starting.
  if (callback_depth == 0) {
    std::lock_guard<std::mutex> wait_for_callback(mu);
  }
  auto d = db.lock();
  if (!d) return;
  std::lock_guard<std::mutex> lock(d->mu);
  if (d->closed) return;
  if (watcher) caf::anon_send_exit(watcher, caf::exit_reason::user_shutdown);
  watcher = caf::actor();
  for (auto it = d->watches.begin(); it != d->watches.end(); ++it) {
    if (it->get() == this) {
      d->watches.erase(it);
      break;
    }
  }
}

namespace {

// A blocking call's hold on the Database: while ok(), the actor system and node stay up.
class Use {
 public:
  explicit Use(DatabaseImpl& d) : lock_(d.use) {
    std::lock_guard<std::mutex> l(d.mu);
    ok_ = !d.closed && d.system != nullptr;
  }
  bool ok() const { return ok_; }

 private:
  std::shared_lock<std::shared_mutex> lock_;
  bool ok_ = false;
};

struct watcher_state {
  std::shared_ptr<WatchImpl> watch;
  static inline const char* name = "api_watcher";
};

// The watch's actor: watches `req` on the view, delivers the initial result, then every change.
view_watcher_actor::behavior_type watcher_actor(view_watcher_actor::stateful_pointer<watcher_state> self,
                                                std::shared_ptr<WatchImpl> watch, ui_view_actor view,
                                                view::WatchRequest req, std::shared_ptr<std::promise<Status>> started,
                                                std::chrono::milliseconds timeout) {
  self->state.watch = std::move(watch);
  self->set_default_handler(caf::drop);
  self->request(view, timeout, std::move(req))
      .then(
          [self, started](view::WatchResponse& r) {
            auto& w = *self->state.watch;
            if (r.error().code() != change::Error::OK) {
              started->set_value(from_error(r.error()));
              self->quit();
              return;
            }
            w.columns.assign(r.columns().begin(), r.columns().end());
            w.ordered = r.ordered();
            WatchEvent e;
            e.initial = true;
            e.db_version = r.db_version();
            int64_t position = 0;
            for (const auto& row : r.rows()) {
              RowChange c;
              c.key = row.key();
              c.row = from_proto(row.row());
              c.position = r.ordered() ? position : -1;
              ++position;
              e.changes.push_back(std::move(c));
            }
            w.deliver(e);
            started->set_value(Status());
          },
          [self, started](caf::error& err) {
            started->set_value(Status(Code::unavailable, "the view did not answer: " + self->system().render(err)));
            self->quit();
          });
  return {
      [self](view::ViewChange& change) {
        WatchEvent e;
        e.db_version = change.db_version();
        for (const auto& c : change.changes()) e.changes.push_back(from_proto(c));
        if (change.error().code() != change::Error::OK) e.error = from_error(change.error()).to_string();
        self->state.watch->deliver(e);
      },
  };
}

// One optimistic mutation: sends it through the view and reports the outcome, then ends.
void mutation_actor(caf::event_based_actor* self, view::MutateRequest req, ui_view_actor view,
                    std::chrono::milliseconds timeout, std::function<void(const Status&, int64_t)> finish) {
  self->request(view, timeout, std::move(req))
      .then([finish](view::MutateResponse& r) { finish(from_error(r.error()), r.db_version()); },
            [self, finish](caf::error& e) { finish(Status(Code::unavailable, self->system().render(e)), 0); });
}

}  // namespace
}  // namespace detail

using detail::callback_depth;
using detail::closed_status;
using detail::Use;
using detail::wrong_thread;

Watch::Watch() = default;
Watch::~Watch() { stop(); }
Watch::Watch(Watch&&) noexcept = default;
Watch& Watch::operator=(Watch&& o) noexcept {
  if (this != &o) {
    stop();
    impl_ = std::move(o.impl_);
  }
  return *this;
}
const std::vector<std::string>& Watch::columns() const {
  static const std::vector<std::string> none;
  return impl_ ? impl_->columns : none;
}
bool Watch::ordered() const { return impl_ && impl_->ordered; }
void Watch::stop() {
  if (impl_) impl_->stop();
}

Database::Database() : impl_(std::make_shared<detail::DatabaseImpl>()) {}

Database::~Database() {
  if (callback_depth == 0) {
    (void)impl_->close();
  } else {
    // Destroyed inside a callback: closing here would wait for this very thread.
    std::thread([impl = impl_] { (void)impl->close(); }).detach();
  }
}

Result<std::unique_ptr<Database>> Database::open(Options options) {
  if (callback_depth > 0) return wrong_thread("open");
  if (options.path.empty()) return Status(Code::invalid_argument, "open: the database path is empty");
  std::vector<std::string> schema;
  for (const auto& text : options.schema) {
    auto statements = sync_schema::split_statements(text);
    if (!statements.ok()) return detail::from_internal(statements.status().with_context("schema"));
    for (const auto& s : *statements) schema.push_back(sync_schema::if_not_exists(s));
  }
  if (schema.empty()) return Status(Code::invalid_argument, "open: the schema holds no CREATE TABLE statement");
  if (options.sync) {
    if (options.sync->url.empty() || options.sync->token.empty())
      return Status(Code::invalid_argument, "open: sync needs a url and a token");
    auto url = net::parse_url(options.sync->url);
    if (!url.ok()) return detail::from_internal(url.status().with_context("sync url"));
  }

  if (!options.log_level.empty()) {
    auto level = spdlog::level::from_str(options.log_level);
    if (level == spdlog::level::off && options.log_level != "off")
      return Status(Code::invalid_argument, "open: unknown log level '" + options.log_level + "'");
    spdlog::set_level(level);
  }

  std::unique_ptr<Database> db(new Database());
  auto& d = *db->impl_;
  d.options = options;
  configure_actor_system(d.cfg);
  d.system = std::make_unique<caf::actor_system>(d.cfg);

  NodeConfig nc;
  nc.database_path = options.path;
  nc.schema = schema;
  nc.name = options.name;
  if (options.sync) {
    d.loop = std::make_shared<net::EventLoop>(1);
    actors::PeerSyncerConfig pc;
    pc.url = options.sync->url;
    pc.token = options.sync->token;
    pc.schema = schema;
    pc.client_name = options.name;
    pc.loop = d.loop;
    pc.client.ca_file = options.sync->ca_file;
    pc.client.verify_peer = options.sync->verify_peer;
    nc.sync = pc;
  }
  nc.on_leader_lost = [cb = options.on_leader_lost](const ::tandem::Status& why) {
    if (!cb) return;
    detail::CallbackScope scope;
    cb(detail::from_internal(why));
  };
  auto node = ::tandem::Node::open(*d.system, nc);
  if (!node.ok()) {
    d.teardown();
    return detail::from_internal(node.status());
  }
  d.node = std::move(*node);
  auto view = d.node->spawn_view(options.name);
  if (!view.ok()) {
    d.teardown();
    return detail::from_internal(view.status());
  }
  d.view = *view;
  return Result<std::unique_ptr<Database>>(std::move(db));
}

bool Database::is_leader() const {
  Use use(*impl_);
  return use.ok() && impl_->node->is_leader();
}

Result<QueryResult> Database::query(const std::string& sql, const Row& params) {
  if (callback_depth > 0) return wrong_thread("query");
  Use use(*impl_);
  if (!use.ok()) return closed_status();
  worker::QueryRequest req;
  req.set_sql(sql);
  for (const auto& p : params) detail::to_proto(p, req.add_params());
  auto r = detail::ask<worker::QueryResponse>(*impl_->system, impl_->node->worker(), std::move(req), impl_->options.timeout);
  if (!r.ok()) return r.status();
  if (r->error().code() != change::Error::OK) return detail::from_error(r->error());
  QueryResult out;
  out.columns.assign(r->columns().begin(), r->columns().end());
  for (const auto& row : r->rows()) out.rows.push_back(detail::from_proto(row));
  out.db_version = r->db_version();
  return out;
}

Result<WriteResult> Database::write(const std::vector<Statement>& statements) {
  if (callback_depth > 0) return wrong_thread("write");
  if (statements.empty()) return Status(Code::invalid_argument, "write: no statement");
  Use use(*impl_);
  if (!use.ok()) return closed_status();
  worker::WriteRequest req;
  for (const auto& s : statements) {
    auto* st = req.add_statements();
    st->set_sql(s.sql);
    for (const auto& p : s.params) detail::to_proto(p, st->add_params());
  }
  auto r = detail::ask<worker::WriteResponse>(*impl_->system, impl_->node->worker(), std::move(req), impl_->options.timeout);
  if (!r.ok()) return r.status();
  if (r->error().code() != change::Error::OK) return detail::from_error(r->error());
  return WriteResult{r->db_version(), r->rows_changed(), r->last_key()};
}

Result<Watch> Database::watch(const std::string& sql, const Row& params, std::function<void(const WatchEvent&)> on_event) {
  if (callback_depth > 0) return wrong_thread("watch");
  if (!on_event) return Status(Code::invalid_argument, "watch: no callback");
  Use use(*impl_);
  if (!use.ok()) return closed_status();
  auto w = std::make_shared<detail::WatchImpl>();
  w->on_event = std::move(on_event);
  w->db = impl_;
  view::WatchRequest req;
  req.set_sql(sql);
  for (const auto& p : params) detail::to_proto(p, req.add_params());
  auto started = std::make_shared<std::promise<Status>>();
  auto outcome = started->get_future();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    w->watcher = caf::actor_cast<caf::actor>(
        impl_->system->spawn(detail::watcher_actor, w, impl_->view, std::move(req), started, impl_->options.timeout));
    impl_->watches.push_back(w);
  }
  Watch handle;
  handle.impl_ = w;
  // The request carries the timeout, so the promise is kept, unless close() stopped the
  // watcher first (the promise then breaks).
  Status s;
  try {
    s = outcome.get();
  } catch (const std::future_error&) {
    s = Status(Code::closed, "the database was closed while the watch started");
  }
  if (!s.ok()) return s;  // `handle` stops the actor (already quitting) and forgets it
  return handle;
}

void Database::mutate_async(std::vector<Mutation> mutations, std::function<void(const Status&, int64_t)> done) {
  auto finish = [done](const Status& s, int64_t version) {
    if (!done) return;
    detail::CallbackScope scope;
    done(s, version);
  };
  view::MutateRequest req;
  for (const auto& m : mutations) {
    Status s = detail::to_proto(m, req.add_mutations());
    if (!s.ok()) return finish(s, 0);
  }
  if (mutations.empty()) return finish(Status(Code::invalid_argument, "mutate: no mutation"), 0);
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->closed || !impl_->system) return finish(closed_status(), 0);
  // The arguments go through spawn (not lambda captures): CAF 0.17 binds a reference to a
  // null tuple for a function actor without arguments, which UBSan reports.
  impl_->system->spawn(detail::mutation_actor, std::move(req), impl_->view, impl_->options.timeout,
                       std::function<void(const Status&, int64_t)>(finish));
}

Result<int64_t> Database::mutate(std::vector<Mutation> mutations) {
  if (callback_depth > 0) return wrong_thread("mutate");
  auto outcome = std::make_shared<std::promise<Result<int64_t>>>();
  auto future = outcome->get_future();
  mutate_async(std::move(mutations), [outcome](const Status& s, int64_t version) {
    outcome->set_value(s.ok() ? Result<int64_t>(version) : Result<int64_t>(s));
  });
  try {
    return future.get();
  } catch (const std::future_error&) {
    return Status(Code::closed, "the database was closed before the mutation's outcome");
  }
}

Result<SyncState> Database::sync_state() {
  if (callback_depth > 0) return wrong_thread("sync_state");
  Use use(*impl_);
  if (!use.ok()) return closed_status();
  auto& d = *impl_;
  SyncState out;
  out.syncing = d.node->online();
  if (out.syncing) out.last_error = d.node->last_sync_error();
  out.online = out.syncing && out.last_error.empty();
  auto status = detail::ask<worker::StatusResponse>(*d.system, d.node->worker(), worker::StatusRequest(), d.options.timeout);
  if (!status.ok()) return status.status();
  out.db_version = status->db_version();
  // A client database's peers are its server: its acknowledgements are recorded there.
  auto peers = detail::ask<worker::PeersResponse>(*d.system, d.node->worker(), worker::PeersRequest(), d.options.timeout);
  if (!peers.ok()) return peers.status();
  for (const auto& p : peers->peers()) out.acked_version = std::max(out.acked_version, p.acked_db_version());
  // Own changes past the acknowledged version (counted up to a bound: a state query must
  // not read an unbounded backlog).
  worker::ChangesSinceRequest pending;
  pending.set_since_db_version(out.acked_version);
  pending.set_only_site_id(status->site_id());
  pending.set_limit(100000);
  auto changes = detail::ask<worker::ChangesSinceResponse>(*d.system, d.node->worker(), std::move(pending), d.options.timeout);
  if (!changes.ok()) return changes.status();
  if (changes->error().code() != change::Error::OK) return detail::from_error(changes->error());
  out.pending_changes = changes->batch().changes_size();
  return out;
}

Result<int64_t> Database::wait_acked(int64_t db_version, std::chrono::milliseconds within) {
  if (callback_depth > 0) return wrong_thread("wait_acked");
  Use use(*impl_);
  if (!use.ok()) return closed_status();
  if (!impl_->node->online()) return Status(Code::invalid_argument, "wait_acked: the database has no server (Options::sync)");
  auto r = impl_->node->wait_acked(db_version, within);
  if (!r.ok()) return detail::from_internal(r.status());
  return *r;
}

Status Database::wait_synced(std::chrono::milliseconds within) {
  if (callback_depth > 0) return wrong_thread("wait_synced");
  Use use(*impl_);
  if (!use.ok()) return closed_status();
  if (!impl_->node->online()) return Status(Code::invalid_argument, "wait_synced: the database has no server (Options::sync)");
  auto r = impl_->node->caught_up(within);
  return r.ok() ? Status() : detail::from_internal(r.status());
}

Status Database::close() { return impl_->close(); }

}  // namespace tandem::api
