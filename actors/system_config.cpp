#include "actors/system_config.hpp"

#include <caf/atom.hpp>

#include "actors/db_worker.hpp"
#include "actors/node_leader.hpp"
#include "actors/session.hpp"
#include "actors/ui_view.hpp"

namespace tandem {

void configure_actor_system(caf::actor_system_config& cfg, int threads) {
  add_db_worker_message_types(cfg);
  add_view_message_types(cfg);
  actors::add_server_message_types(cfg);
  add_node_message_types(cfg);
  cfg.set("scheduler.policy", caf::atom("sharing"));
  cfg.set("scheduler.max-threads", threads);
}

}  // namespace tandem
