#include "actors/ui_view.hpp"

#include <spdlog/spdlog.h>

#include <caf/all.hpp>
#include <map>

#include "runtime/ivm/view_set.hpp"

namespace tandem {
namespace {

struct ui_view_state {
  // Declared first so that it is destroyed last: it holds the journal the views point to.
  UiViewConfig config;
  std::unique_ptr<ivm::ViewSet> views;
  std::map<int64_t, view_watcher_actor> watchers;
};

using view_pointer = ui_view_actor::stateful_pointer<ui_view_state>;

// Sends every view's changes since the last flush to its watcher and the callback.
void flush(view_pointer self) {
  auto& st = self->state;
  for (auto& change : st.views->take_changes()) {
    if (st.config.on_change) st.config.on_change(change);
    auto it = st.watchers.find(change.view_id());
    if (it != st.watchers.end()) self->send(it->second, change);
  }
}

void catch_up(view_pointer self) {
  Status s = self->state.views->catch_up();
  if (!s.ok()) spdlog::error("{}: applying committed changes failed: {}", self->state.config.name, s.to_string());
}

void settle(view_pointer self, const std::string& id, const Status& outcome, int64_t version) {
  auto& st = self->state;
  catch_up(self);  // the journal already holds the commit: retire without a flicker
  Status s = st.views->settle(id, outcome.ok(), version);
  if (!s.ok()) spdlog::error("{}: settling {} failed: {}", st.config.name, id, s.to_string());
  tab::Settlement settlement;
  settlement.set_mutation_id(id);
  to_proto(outcome, settlement.mutable_error());
  settlement.set_db_version(version);
  self->send(st.config.bus, settlement);
  flush(self);
}

ui_view_actor::behavior_type ui_view(view_pointer self, std::shared_ptr<std::unique_ptr<ivm::ViewSet>> views, UiViewConfig config) {
  self->state.views = std::move(*views);
  self->state.config = std::move(config);
  self->set_down_handler([self](const caf::down_msg& down) {
    auto& w = self->state.watchers;
    for (auto it = w.begin(); it != w.end();) {
      if (it->second.address() == down.source) {
        (void)self->state.views->unwatch(it->first);
        it = w.erase(it);
      } else {
        ++it;
      }
    }
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& m) -> caf::result<caf::message> {
    spdlog::warn("{}: dropped an unexpected message {}", self->state.config.name, caf::to_string(m.copy_content_to_message()));
    return caf::make_error(caf::sec::unexpected_message);
  });
  self->set_error_handler([self](caf::error& err) { spdlog::warn("{}: {}", self->state.config.name, caf::to_string(err)); });
  tab::RegisterView reg;
  reg.set_name(self->state.config.name);
  self->send(self->state.config.bus, reg);
  return {
      [self](const view::WatchRequest& req) -> view::WatchResponse {
        auto& st = self->state;
        catch_up(self);
        auto r = st.views->watch(req);
        if (!r.ok()) {
          view::WatchResponse out;
          to_proto(r.status(), out.mutable_error());
          return out;
        }
        auto watcher = caf::actor_cast<view_watcher_actor>(self->current_sender());
        if (watcher) {
          st.watchers[r->view_id()] = watcher;
          self->monitor(watcher);
        }
        return std::move(r).value();
      },
      [self](const view::SyncRequest&) -> view::SyncResponse {
        catch_up(self);
        flush(self);  // the ViewChanges go out before this answer
        view::SyncResponse out;
        out.set_db_version(self->state.views->applied_version());
        return out;
      },
      [self](const view::UnwatchRequest& req) -> view::UnwatchResponse {
        view::UnwatchResponse out;
        Status s = self->state.views->unwatch(req.view_id());
        self->state.watchers.erase(req.view_id());
        to_proto(s, out.mutable_error());
        return out;
      },
      [self](const view::MutateRequest& req) -> caf::result<view::MutateResponse> {
        auto& st = self->state;
        std::string id = req.mutation_id().empty() ? st.views->next_mutation_id() : req.mutation_id();
        std::vector<worker::Mutation> mutations(req.mutations().begin(), req.mutations().end());
        view::MutateResponse out;
        out.set_mutation_id(id);
        if (mutations.empty()) {
          to_proto(Status::InvalidArgument("mutate: no mutations"), out.mutable_error());
          return out;
        }
        catch_up(self);
        Status shown = st.views->add_pending(id, mutations, st.config.name);
        if (!shown.ok()) {
          to_proto(shown, out.mutable_error());  // malformed: nothing shown, nothing sent
          return out;
        }
        tab::PendingMutation pending;
        pending.set_mutation_id(id);
        *pending.mutable_mutations() = req.mutations();
        pending.set_origin(st.config.name);
        self->send(st.config.bus, pending);
        flush(self);
        worker::WriteRequest write;
        *write.mutable_mutations() = req.mutations();
        write.set_mutation_id(id);
        auto rp = self->make_response_promise<view::MutateResponse>();
        self->request(st.config.worker, st.config.write_timeout, write)
            .then(
                [self, rp, id](const worker::WriteResponse& r) mutable {
                  Status outcome = from_proto(r.error());
                  settle(self, id, outcome, r.db_version());
                  view::MutateResponse answer;
                  answer.set_mutation_id(id);
                  *answer.mutable_error() = r.error();
                  answer.set_db_version(r.db_version());
                  rp.deliver(answer);
                },
                [self, rp, id](caf::error& err) mutable {
                  Status outcome = Status::Unavailable("db_worker: " + caf::to_string(err));
                  settle(self, id, outcome, 0);
                  view::MutateResponse answer;
                  answer.set_mutation_id(id);
                  to_proto(outcome, answer.mutable_error());
                  rp.deliver(answer);
                });
        return rp;
      },
      [self](const tab::PendingMutation& p) {
        std::vector<worker::Mutation> mutations(p.mutations().begin(), p.mutations().end());
        catch_up(self);
        Status s = self->state.views->add_pending(p.mutation_id(), mutations, p.origin());
        if (!s.ok()) spdlog::warn("{}: pending mutation {} from {} not shown: {}", self->state.config.name, p.mutation_id(), p.origin(), s.to_string());
        flush(self);
      },
      [self](const tab::Settlement& s) {
        catch_up(self);
        Status r = self->state.views->settle(s.mutation_id(), s.error().code() == change::Error::OK, s.db_version());
        if (!r.ok()) spdlog::error("{}: settling {} failed: {}", self->state.config.name, s.mutation_id(), r.to_string());
        flush(self);
      },
      [self](const change::RowDeltaBatch&) {
        // The batch is in the journal (appended before it was sent): apply from there, once.
        catch_up(self);
        flush(self);
      },
  };
}

}  // namespace

Result<ui_view_actor> spawn_ui_view(caf::actor_system& system, UiViewConfig config) {
  if (config.name.empty()) return Status::InvalidArgument("ui_view needs a name");
  if (!config.journal) return Status::InvalidArgument("ui_view needs the node's journal");
  OpenOptions o;
  o.create = false;
  o.synchronous_full = false;
  TANDEM_ASSIGN_OR_RETURN(auto db, Database::open(config.database_path, o));
  auto views = std::make_shared<std::unique_ptr<ivm::ViewSet>>(
      std::make_unique<ivm::ViewSet>(std::move(db), config.journal.get(), config.name));
  return system.spawn<caf::detached>(ui_view, views, std::move(config));
}

void add_view_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<query::Query>("tandem.query.Query");
  cfg.add_message_type<view::WatchRequest>("tandem.view.WatchRequest");
  cfg.add_message_type<view::WatchResponse>("tandem.view.WatchResponse");
  cfg.add_message_type<view::UnwatchRequest>("tandem.view.UnwatchRequest");
  cfg.add_message_type<view::UnwatchResponse>("tandem.view.UnwatchResponse");
  cfg.add_message_type<view::SyncRequest>("tandem.view.SyncRequest");
  cfg.add_message_type<view::SyncResponse>("tandem.view.SyncResponse");
  cfg.add_message_type<view::ViewChange>("tandem.view.ViewChange");
  cfg.add_message_type<view::MutateRequest>("tandem.view.MutateRequest");
  cfg.add_message_type<view::MutateResponse>("tandem.view.MutateResponse");
  add_tab_message_types(cfg);
}

}  // namespace tandem
