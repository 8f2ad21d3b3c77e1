#include "actors/tab_bus.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <caf/all.hpp>
#include <map>

namespace tandem {
namespace {

struct tab_bus_state {
  std::vector<tab_member_actor> members;
  std::string name;
  db_worker_actor worker;
  // Mutations published and not yet settled, by id: the publishing view, and the version
  // of the commit that carried the id once the worker's deltas showed it.
  struct Pending {
    caf::actor_addr origin;
    std::string origin_name;
    int64_t committed_version = 0;
  };
  std::map<std::string, Pending> pending;
};

using bus_pointer = tab_bus_actor::stateful_pointer<tab_bus_state>;

void remove_member(bus_pointer self, const caf::actor_addr& who) {
  auto& m = self->state.members;
  m.erase(std::remove_if(m.begin(), m.end(), [&](const tab_member_actor& a) { return a.address() == who; }), m.end());
}

// Sends to every member except the one that published.
template <class Message>
void broadcast(bus_pointer self, const Message& msg, const caf::actor_addr& except) {
  for (const auto& m : self->state.members)
    if (m.address() != except) self->send(m, msg);
}

// A view that stopped can no longer settle what it published, so the bus does: the view's
// write, if it sent one, is already in the worker's mailbox (sent before the view stopped,
// hence before this request), and the worker sends a commit's deltas before answering
// anything after it. So once the worker answers, a mutation either showed up in committed
// deltas (settled as committed) or never will (rolled back): no view keeps a phantom row.
void settle_orphans(bus_pointer self, const caf::actor_addr& gone) {
  std::vector<std::string> orphans;
  for (const auto& [id, p] : self->state.pending)
    if (p.origin == gone) orphans.push_back(id);
  if (orphans.empty()) return;
  auto settle = [self, orphans](bool worker_answered) {
    for (const auto& id : orphans) {
      auto it = self->state.pending.find(id);
      if (it == self->state.pending.end()) continue;
      tab::Settlement s;
      s.set_mutation_id(id);
      if (worker_answered && it->second.committed_version > 0) {
        s.mutable_error()->set_code(change::Error::OK);
        s.set_db_version(it->second.committed_version);
      } else {
        to_proto(Status::Unavailable("view " + it->second.origin_name + " stopped before its mutation " + id +
                                     " was written; rolled back"),
                 s.mutable_error());
      }
      spdlog::info("{}: settled mutation {} of stopped view {} ({})", self->state.name, id, it->second.origin_name,
                   s.error().code() == change::Error::OK ? "committed" : "rolled back");
      self->state.pending.erase(it);
      broadcast(self, s, caf::actor_addr{});
    }
  };
  self->request(self->state.worker, std::chrono::seconds(30), worker::StatusRequest{})
      .then([settle](const worker::StatusResponse&) { settle(true); },
            [self, settle](caf::error& err) {
              spdlog::warn("{}: db_worker did not answer while settling a stopped view's mutations: {}", self->state.name,
                           caf::to_string(err));
              settle(false);
            });
}

tab_bus_actor::behavior_type tab_bus(bus_pointer self, db_worker_actor worker, std::string name) {
  self->state.name = std::move(name);
  self->state.worker = worker;
  self->set_down_handler([self](const caf::down_msg& down) {
    remove_member(self, down.source);
    settle_orphans(self, down.source);
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& m) -> caf::result<caf::message> {
    spdlog::warn("{}: dropped an unexpected message {}", self->state.name, caf::to_string(m.copy_content_to_message()));
    return caf::make_error(caf::sec::unexpected_message);
  });
  self->set_error_handler([self](caf::error& err) { spdlog::warn("{}: {}", self->state.name, caf::to_string(err)); });
  // The worker answers with its version; deltas committed after it come as messages.
  self->request(worker, std::chrono::seconds(30), worker::SubscribeRequest{})
      .then([](const worker::SubscribeResponse&) {},
            [self](caf::error& err) { spdlog::error("{}: cannot subscribe to the db_worker: {}", self->state.name, caf::to_string(err)); });
  return {
      [self](const tab::RegisterView& reg) {
        auto member = caf::actor_cast<tab_member_actor>(self->current_sender());
        if (!member) return;
        auto& m = self->state.members;
        if (std::find(m.begin(), m.end(), member) != m.end()) return;
        m.push_back(member);
        self->monitor(member);
        spdlog::debug("{}: view {} registered ({} views)", self->state.name, reg.name(), m.size());
      },
      [self](const tab::UnregisterView&) { remove_member(self, caf::actor_cast<caf::actor_addr>(self->current_sender())); },
      [self](const tab::PendingMutation& p) {
        spdlog::debug("{}: pending mutation {} from {}", self->state.name, p.mutation_id(), p.origin());
        auto origin = caf::actor_cast<caf::actor_addr>(self->current_sender());
        auto& m = self->state.members;
        if (std::none_of(m.begin(), m.end(), [&](const tab_member_actor& a) { return a.address() == origin; }))
          self->monitor(caf::actor_cast<caf::actor>(self->current_sender()));
        self->state.pending[p.mutation_id()] = {origin, p.origin(), 0};
        broadcast(self, p, origin);
      },
      [self](const tab::Settlement& s) {
        self->state.pending.erase(s.mutation_id());
        spdlog::debug("{}: settlement of {} ({})", self->state.name, s.mutation_id(), s.error().code() == change::Error::OK ? "ok" : s.error().message());
        broadcast(self, s, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      },
      [self](const change::RowDeltaBatch& batch) {
        if (!batch.mutation_id().empty()) {
          auto it = self->state.pending.find(batch.mutation_id());
          if (it != self->state.pending.end()) it->second.committed_version = batch.db_version();
        }
        spdlog::debug("{}: db_version {} to {} views", self->state.name, batch.db_version(), self->state.members.size());
        broadcast(self, batch, caf::actor_addr{});
      },
  };
}

}  // namespace

tab_bus_actor spawn_tab_bus(caf::actor_system& system, db_worker_actor worker, std::string name) {
  return system.spawn(tab_bus, std::move(worker), std::move(name));
}

void add_tab_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<tab::PendingMutation>("tandem.tab.PendingMutation");
  cfg.add_message_type<tab::Settlement>("tandem.tab.Settlement");
  cfg.add_message_type<tab::RegisterView>("tandem.tab.RegisterView");
  cfg.add_message_type<tab::UnregisterView>("tandem.tab.UnregisterView");
}

}  // namespace tandem
