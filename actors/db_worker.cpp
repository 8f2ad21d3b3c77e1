#include "actors/db_worker.hpp"

#include <spdlog/spdlog.h>

#include <caf/all.hpp>

#include "runtime/ivm/journal.hpp"
#include "runtime/sqlite/proto_value.hpp"
#include "runtime/sync/binding.hpp"
#include "runtime/sync/resync.hpp"

namespace tandem {
namespace {

struct db_worker_state {
  std::unique_ptr<Store> store;
  std::shared_ptr<ivm::DeltaJournal> journal;
  std::vector<delta_subscriber_actor> subscribers;
  std::vector<delta_subscriber_actor> version_subscribers;  // also told of commits without deltas
  // Told of local commits with their own changes, and the subscription that says the limits
  // of that read (own_changes) and whether to skip it (own_changes_bare).
  std::vector<std::pair<own_changes_subscriber_actor, worker::SubscribeRequest>> pushers;
  std::string name;
};

using worker_pointer = db_worker_actor::stateful_pointer<db_worker_state>;

template <class Response>
Response error_response(const Status& s) {
  Response r;
  to_proto(s, r.mutable_error());
  return r;
}

// One read of the change log, for a ChangesSinceRequest and for a pusher's LocalCommit.
worker::ChangesSinceResponse read_changes(Store& store, const worker::ChangesSinceRequest& req) {
  std::optional<SiteId> exclude;
  if (!req.exclude_site_id().empty()) {
    exclude = site_from_bytes(req.exclude_site_id());
    if (!exclude) return error_response<worker::ChangesSinceResponse>(Status::InvalidArgument("exclude_site_id must be 16 bytes"));
  }
  std::optional<SiteId> only;
  if (!req.only_site_id().empty()) {
    only = site_from_bytes(req.only_site_id());
    if (!only) return error_response<worker::ChangesSinceResponse>(Status::InvalidArgument("only_site_id must be 16 bytes"));
  }
  if (req.since_db_version() < 0 || req.limit() < 0 || req.max_bytes() < 0)
    return error_response<worker::ChangesSinceResponse>(Status::InvalidArgument("negative version or limit"));
  Store::ChangesRequest request;
  request.since = req.since_db_version();
  request.exclude = exclude;
  request.only_from = only;
  request.limit = static_cast<size_t>(req.limit());
  request.split_versions = req.split_versions();
  request.resume_after = req.resume_after();
  request.max_bytes = static_cast<size_t>(req.max_bytes());
  auto batch = store.changes(request);
  if (!batch.ok()) return error_response<worker::ChangesSinceResponse>(batch.status());
  worker::ChangesSinceResponse out;
  *out.mutable_batch() = std::move(batch).value();
  return out;
}

// A local commit for the pushers, with the changes they would otherwise ask for next. A
// commit whose row deltas reach a pusher's byte limit goes without them (the pusher reads
// it in parts): a 200 MB value is not copied into a message per commit.
void tell_pushers(worker_pointer self, const change::RowDeltaBatch& message, int64_t version_before) {
  auto& st = self->state;
  if (st.pushers.empty() || message.origin() != change::RowDeltaBatch::LOCAL) return;
  const std::string site = site_bytes(st.store->site_id());
  const auto delta_bytes = static_cast<int64_t>(message.ByteSizeLong());
  for (const auto& [pusher, subscription] : st.pushers) {
    const worker::ChangesSinceRequest& limits = subscription.own_changes();
    worker::LocalCommit commit;
    *commit.mutable_batch() = message;
    commit.set_since_db_version(version_before);
    commit.set_site_id(site);
    if (!subscription.own_changes_bare() && (limits.max_bytes() == 0 || delta_bytes < limits.max_bytes())) {
      worker::ChangesSinceRequest read = limits;
      read.set_since_db_version(version_before);
      read.set_only_site_id(site);
      read.clear_exclude_site_id();
      read.clear_resume_after();
      *commit.mutable_changes() = read_changes(*st.store, read);
    }
    self->send(pusher, std::move(commit));
  }
}

// Journal first, then subscribers: a view that read version v in SQLite finds v in the
// journal (docs/ivm.md), and every subscriber sees transactions in commit order. Pushers
// come last, so that their read delays no view (the writer's answer waits for it).
void publish(worker_pointer self, const DeltaBatch& batch, int64_t version_before) {
  auto& st = self->state;
  if (batch.db_version == version_before) return;
  if (st.journal) {
    if (batch.deltas.empty()) {
      st.journal->note_version(batch.db_version);
    } else {
      Status appended = st.journal->append(std::make_shared<const DeltaBatch>(batch));
      if (!appended.ok()) spdlog::error("{}: journal refused version {}: {}", st.name, batch.db_version, appended.to_string());
    }
  }
  change::RowDeltaBatch message;
  to_proto(batch, &message);
  if (batch.deltas.empty()) {
    for (const auto& s : st.version_subscribers) self->send(s, message);
    return;
  }
  spdlog::debug("{}: committed db_version {} ({} row deltas, {}{}) -> {} subscribers, {} pushers", st.name, batch.db_version,
                batch.deltas.size(), batch.origin == DeltaOrigin::merge ? "merge" : "local",
                batch.mutation_id.empty() ? "" : ", mutation " + batch.mutation_id, st.subscribers.size(), st.pushers.size());
  for (const auto& s : st.subscribers) self->send(s, message);
  tell_pushers(self, message, version_before);
}

void forget_subscriber(worker_pointer self, const caf::actor_addr& who) {
  auto& st = self->state;
  for (auto* subs : {&st.subscribers, &st.version_subscribers})
    subs->erase(std::remove_if(subs->begin(), subs->end(), [&](const delta_subscriber_actor& a) { return a.address() == who; }), subs->end());
  st.pushers.erase(std::remove_if(st.pushers.begin(), st.pushers.end(), [&](const auto& p) { return p.first.address() == who; }),
                   st.pushers.end());
}

worker::PeerStatus peer_status(Store& store, const std::string& peer_bytes) {
  worker::PeerStatus out;
  auto site = site_from_bytes(peer_bytes);
  if (!site) {
    to_proto(Status::InvalidArgument("peer site id must be 16 bytes"), out.mutable_error());
    return out;
  }
  auto cursor = store.peer(*site);
  if (!cursor.ok()) {
    to_proto(cursor.status(), out.mutable_error());
    return out;
  }
  out.set_peer_site_id(peer_bytes);
  out.set_received_db_version(cursor->received);
  out.set_acked_db_version(cursor->acked);
  return out;
}

db_worker_actor::behavior_type db_worker(worker_pointer self, std::shared_ptr<std::unique_ptr<Store>> opened,
                                         std::shared_ptr<ivm::DeltaJournal> journal, std::string name) {
  self->state.store = std::move(*opened);
  self->state.journal = std::move(journal);
  self->state.name = std::move(name);
  self->set_down_handler([self](const caf::down_msg& down) { forget_subscriber(self, down.source); });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& m) -> caf::result<caf::message> {
    spdlog::warn("{}: dropped an unexpected message {}", self->state.name, caf::to_string(m.copy_content_to_message()));
    return caf::make_error(caf::sec::unexpected_message);
  });
  return {
      [self](const worker::WriteRequest& req) -> worker::WriteResponse {
        Store& store = *self->state.store;
        if (req.statements_size() > 0 && req.mutations_size() > 0)
          return error_response<worker::WriteResponse>(Status::InvalidArgument("a write holds SQL statements or mutations, not both"));
        if (req.statements_size() == 0 && req.mutations_size() == 0)
          return error_response<worker::WriteResponse>(Status::InvalidArgument("an empty write"));
        int64_t before = store.db_version();
        Result<CommitResult> result = Status::Internal("unreachable");
        if (req.statements_size() > 0) {
          std::vector<SqlStatement> statements;
          for (const auto& s : req.statements()) statements.push_back({s.sql(), from_proto(s.params())});
          result = store.write(statements, req.mutation_id(), req.request_key());
        } else {
          std::vector<worker::Mutation> mutations(req.mutations().begin(), req.mutations().end());
          result = store.mutate(mutations, req.mutation_id(), req.request_key());
        }
        worker::WriteResponse out;
        out.set_mutation_id(req.mutation_id());
        if (!result.ok()) {
          spdlog::debug("{}: write{} refused: {}", self->state.name, req.mutation_id().empty() ? "" : " " + req.mutation_id(),
                        result.status().to_string());
          to_proto(result.status(), out.mutable_error());
          out.set_db_version(store.db_version());
          return out;
        }
        if (result->replayed)
          spdlog::info("{}: write {} was committed before (at db_version {}); answered again", self->state.name, req.request_key(),
                       result->db_version);
        else
          publish(self, result->deltas, before);
        out.set_db_version(result->db_version);
        out.set_rows_changed(result->rows_changed);
        out.set_last_key(result->last_key);
        return out;
      },
      [self](const worker::QueryRequest& req) -> worker::QueryResponse {
        auto result = self->state.store->query(req.sql(), from_proto(req.params()));
        if (!result.ok()) return error_response<worker::QueryResponse>(result.status());
        worker::QueryResponse out;
        for (const auto& c : result->columns) out.add_columns(c);
        for (const auto& row : result->rows) to_proto(row, out.add_rows());
        out.set_db_version(result->db_version);
        return out;
      },
      [self](const worker::ChangesSinceRequest& req) -> worker::ChangesSinceResponse {
        return read_changes(*self->state.store, req);
      },
      [self](const worker::MergeRequest& req) -> worker::MergeResponse {
        Store& store = *self->state.store;
        int64_t before = store.db_version();
        // A batch the server forwards again after a crash need not be fsynced here.
        MergeOptions options;
        options.sync = req.resendable() ? CommitSync::kDeferred : CommitSync::kDefault;
        int64_t reconciled = 0;
        if (req.has_snapshot_end()) {
          // The end of a re-sync's snapshot: rows it lacks are reconciled before the merge.
          const int64_t at = store.db_version();
          auto done = sync_resync::reconcile(store, req);
          if (!done.ok()) return error_response<worker::MergeResponse>(done.status());
          spdlog::info("hop=worker.resync db={} rows_deleted={} rows_kept={} rows_raised={}", self->state.name, done->rows_dropped,
                       done->rows_kept, done->rows_raised);
          publish(self, done->deltas, at);
          reconciled = done->rows_dropped;
        }
        auto result = store.merge(req.batch(), options);
        if (!result.ok()) {
          spdlog::warn("{}: merge of {} changes refused: {}", self->state.name, req.batch().changes_size(), result.status().to_string());
          return error_response<worker::MergeResponse>(result.status());
        }
        spdlog::debug("{}: merged {} of {} changes from {} up to its version {}", self->state.name, result->changes_applied,
                      req.batch().changes_size(), site_from_bytes(req.batch().sender_site_id()) ? site_hex(*site_from_bytes(req.batch().sender_site_id())) : "?",
                      req.batch().to_db_version());
        publish(self, result->deltas, before);
        worker::MergeResponse out;
        out.set_db_version(result->db_version);
        out.set_changes_applied(result->changes_applied);
        out.set_rows_reconciled(reconciled);
        return out;
      },
      [self](const worker::PeerAckRequest& req) -> worker::PeerStatus {
        auto site = site_from_bytes(req.peer_site_id());
        if (!site) return error_response<worker::PeerStatus>(Status::InvalidArgument("peer site id must be 16 bytes"));
        Status s = self->state.store->record_peer_ack(*site, req.acked_db_version(), req.received_db_version());
        if (!s.ok()) return error_response<worker::PeerStatus>(s);
        return peer_status(*self->state.store, req.peer_site_id());
      },
      [self](const worker::PeerStatusRequest& req) -> worker::PeerStatus { return peer_status(*self->state.store, req.peer_site_id()); },
      [self](const worker::PeersRequest&) -> worker::PeersResponse {
        auto peers = self->state.store->peers();
        if (!peers.ok()) return error_response<worker::PeersResponse>(peers.status());
        worker::PeersResponse out;
        for (const auto& p : *peers) {
          auto* status = out.add_peers();
          status->set_peer_site_id(site_bytes(p.site));
          status->set_received_db_version(p.cursor.received);
          status->set_acked_db_version(p.cursor.acked);
        }
        return out;
      },
      [self](const worker::NewSiteRequest& req) -> worker::NewSiteResponse {
        auto fresh = self->state.store->take_new_site(req.keep_through());
        if (!fresh.ok()) return error_response<worker::NewSiteResponse>(fresh.status());
        spdlog::warn("hop=worker.new_site db={} site={} kept_through={}", self->state.name, site_hex(*fresh), req.keep_through());
        worker::NewSiteResponse out;
        out.set_site_id(site_bytes(*fresh));
        return out;
      },
      [self](const worker::StatusRequest&) -> worker::StatusResponse {
        worker::StatusResponse out;
        out.set_site_id(site_bytes(self->state.store->site_id()));
        out.set_db_version(self->state.store->db_version());
        for (const auto& t : self->state.store->replicated_tables()) out.add_tables(t);
        return out;
      },
      [self](const worker::BindRequest& req) -> worker::BindResponse {
        Store& store = *self->state.store;
        auto bound = req.record() ? sync_binding::record(store, {req.user(), req.server()}) : sync_binding::load(store);
        worker::BindResponse out;
        if (!bound.ok()) {
          to_proto(bound.status(), out.mutable_error());
          return out;
        }
        out.set_user(bound->user);
        out.set_server(bound->server);
        return out;
      },
      [self](const worker::SubscribeRequest& req) -> worker::SubscribeResponse {
        auto sender = caf::actor_cast<delta_subscriber_actor>(self->current_sender());
        worker::SubscribeResponse out;
        out.set_db_version(self->state.store->db_version());
        if (!sender) return out;
        if (req.has_own_changes()) {
          auto pusher = caf::actor_cast<own_changes_subscriber_actor>(self->current_sender());
          auto& pushers = self->state.pushers;
          auto known = std::find_if(pushers.begin(), pushers.end(), [&](const auto& p) { return p.first == pusher; });
          if (known != pushers.end()) {
            known->second = req;
          } else {
            pushers.emplace_back(pusher, req);
            self->monitor(pusher);
          }
          return out;
        }
        auto& subs = self->state.subscribers;
        if (std::find(subs.begin(), subs.end(), sender) == subs.end()) {
          subs.push_back(sender);
          self->monitor(sender);
          if (req.versions()) self->state.version_subscribers.push_back(sender);
        }
        return out;
      },
      [self](const worker::UnsubscribeRequest&) { forget_subscriber(self, caf::actor_cast<caf::actor_addr>(self->current_sender())); },
  };
}

}  // namespace

Result<db_worker_actor> spawn_db_worker(caf::actor_system& system, DbWorkerConfig config) {
  TANDEM_ASSIGN_OR_RETURN(auto store, Store::open(config.path, config.store));
  TANDEM_ASSIGN_OR_RETURN(auto before, store->application_tables());
  // One transaction for the whole schema: a refused migration changes nothing.
  std::string schema;
  for (const auto& sql : config.schema) schema += sql + "\n;\n";
  if (!schema.empty()) TANDEM_RETURN_IF_ERROR(store->execute_schema(schema).with_context("schema"));
  std::vector<std::string> replicate = config.replicate;
  if (replicate.empty()) {
    TANDEM_ASSIGN_OR_RETURN(auto after, store->application_tables());
    for (const auto& t : after)
      if (std::find(before.begin(), before.end(), t) == before.end()) replicate.push_back(t);
    for (const auto& t : store->replicated_tables())
      if (std::find(replicate.begin(), replicate.end(), t) == replicate.end()) replicate.push_back(t);
  }
  for (const auto& t : replicate) TANDEM_RETURN_IF_ERROR(store->register_table(t));
  if (config.journal) config.journal->note_version(store->db_version());
  auto holder = std::make_shared<std::unique_ptr<Store>>(std::move(store));
  return system.spawn<caf::detached>(db_worker, holder, config.journal, config.name);
}

void add_db_worker_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<change::Value>("tandem.change.Value");
  cfg.add_message_type<change::Change>("tandem.change.Change");
  cfg.add_message_type<change::ChangeBatch>("tandem.change.ChangeBatch");
  cfg.add_message_type<change::Row>("tandem.change.Row");
  cfg.add_message_type<change::RowDelta>("tandem.change.RowDelta");
  cfg.add_message_type<change::RowDeltaBatch>("tandem.change.RowDeltaBatch");
  cfg.add_message_type<change::Error>("tandem.change.Error");
  cfg.add_message_type<worker::Statement>("tandem.worker.Statement");
  cfg.add_message_type<worker::Mutation>("tandem.worker.Mutation");
  cfg.add_message_type<worker::WriteRequest>("tandem.worker.WriteRequest");
  cfg.add_message_type<worker::WriteResponse>("tandem.worker.WriteResponse");
  cfg.add_message_type<worker::QueryRequest>("tandem.worker.QueryRequest");
  cfg.add_message_type<worker::QueryResponse>("tandem.worker.QueryResponse");
  cfg.add_message_type<worker::ChangesSinceRequest>("tandem.worker.ChangesSinceRequest");
  cfg.add_message_type<worker::ChangesSinceResponse>("tandem.worker.ChangesSinceResponse");
  cfg.add_message_type<worker::MergeRequest>("tandem.worker.MergeRequest");
  cfg.add_message_type<worker::MergeResponse>("tandem.worker.MergeResponse");
  cfg.add_message_type<worker::PeerAckRequest>("tandem.worker.PeerAckRequest");
  cfg.add_message_type<worker::PeerStatusRequest>("tandem.worker.PeerStatusRequest");
  cfg.add_message_type<worker::PeerStatus>("tandem.worker.PeerStatus");
  cfg.add_message_type<worker::PeersRequest>("tandem.worker.PeersRequest");
  cfg.add_message_type<worker::PeersResponse>("tandem.worker.PeersResponse");
  cfg.add_message_type<worker::NewSiteRequest>("tandem.worker.NewSiteRequest");
  cfg.add_message_type<worker::NewSiteResponse>("tandem.worker.NewSiteResponse");
  cfg.add_message_type<worker::StatusRequest>("tandem.worker.StatusRequest");
  cfg.add_message_type<worker::StatusResponse>("tandem.worker.StatusResponse");
  cfg.add_message_type<worker::BindRequest>("tandem.worker.BindRequest");
  cfg.add_message_type<worker::BindResponse>("tandem.worker.BindResponse");
  cfg.add_message_type<worker::SubscribeRequest>("tandem.worker.SubscribeRequest");
  cfg.add_message_type<worker::SubscribeResponse>("tandem.worker.SubscribeResponse");
  cfg.add_message_type<worker::UnsubscribeRequest>("tandem.worker.UnsubscribeRequest");
  cfg.add_message_type<worker::LocalCommit>("tandem.worker.LocalCommit");
  cfg.add_message_type<db_worker_actor>("tandem.actors.db_worker_actor");
  cfg.add_message_type<delta_subscriber_actor>("tandem.actors.delta_subscriber_actor");
  cfg.add_message_type<own_changes_subscriber_actor>("tandem.actors.own_changes_subscriber_actor");
}

}  // namespace tandem
