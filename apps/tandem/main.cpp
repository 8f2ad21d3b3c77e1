// The `tandem` binary: thin; every subcommand lives in its own file (commands.hpp).
#include <CLI/CLI.hpp>

#include <iostream>

#include "apps/tandem/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tandem: a local-first sync engine (SQLite + CRDT + live queries)"};
  // At most one subcommand, checked after parsing: requiring one up front makes CLI11 answer
  // a mistyped command ("tandem sever") with "A subcommand is required".
  app.require_subcommand(0, 1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  tandem::app::add_scenario_command(app);
  auto* bench = tandem::app::add_bench_command(app);
  tandem::app::add_bench_store(*bench);
  tandem::app::add_bench_ivm(*bench);
  tandem::app::add_bench_sync(*bench);
  tandem::app::add_bench_schema(*bench);
  tandem::app::add_bench_node(*bench);
  tandem::app::add_bench_compact(*bench);
  tandem::app::add_server_command(app);
  tandem::app::add_token_command(app);
  tandem::app::add_client_command(app);
  tandem::app::add_demo_command(app);
  CLI11_PARSE(app, argc, argv);
  if (app.get_subcommands().empty()) {
    std::cerr << app.help() << "\ntandem: a command is required (scenario, bench, server, token, client, demo)\n";
    return 2;
  }
  return 0;
}
