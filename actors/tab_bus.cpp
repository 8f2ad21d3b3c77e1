#include "actors/tab_bus.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <caf/all.hpp>

namespace tandem {
namespace {

struct tab_bus_state {
  std::vector<tab_member_actor> members;
  std::string name;
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

tab_bus_actor::behavior_type tab_bus(bus_pointer self, db_worker_actor worker, std::string name) {
  self->state.name = std::move(name);
  self->set_down_handler([self](const caf::down_msg& down) { remove_member(self, down.source); });
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
        broadcast(self, p, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      },
      [self](const tab::Settlement& s) {
        spdlog::debug("{}: settlement of {} ({})", self->state.name, s.mutation_id(), s.error().code() == change::Error::OK ? "ok" : s.error().message());
        broadcast(self, s, caf::actor_cast<caf::actor_addr>(self->current_sender()));
      },
      [self](const change::RowDeltaBatch& batch) {
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
