// `tandem client inspect --db F [--json]`: what a device database holds about its sync
// (runtime/store/inspect.hpp). Needs no server and no token, and works while another process
// has the database open (it reads through a read-only connection, taking no lock).
// Exit status: 0 printed; 2 no such file, or not a Tandem database.
#include <iostream>

#include "apps/tandem/commands.hpp"
#include "runtime/store/inspect.hpp"

namespace tandem::app {

void add_client_inspect(CLI::App& client, const std::string* db) {
  auto json = std::make_shared<bool>(false);
  auto* cmd = client.add_subcommand("inspect", "Describe the database: site, user, server, cursor, pending changes, schema, "
                                               "metadata size (no server needed)");
  cmd->add_flag("--json", *json, "One JSON object instead of text");
  cmd->fallthrough();  // `client inspect --db F`: --db is the client's option
  cmd->callback([db, json] {
    if (db->empty()) {
      std::cerr << "tandem client inspect: --db is required\n";
      throw CLI::RuntimeError(2);
    }
    auto report = inspect_store(*db);
    if (!report.ok()) {
      std::cerr << "tandem client inspect: " << report.status().message() << "\n";
      throw CLI::RuntimeError(2);
    }
    if (*json)
      std::cout << inspection_json(*report).dump() << std::endl;
    else
      std::cout << inspection_text(*report) << std::flush;
  });
}

}  // namespace tandem::app
