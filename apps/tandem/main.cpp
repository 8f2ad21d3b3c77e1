// The `tandem` binary: thin; every subcommand lives in its own file (commands.hpp).
// Exit statuses are the same for every command (kExitStatuses, shown by --help): CLI11's own
// codes for argument errors (106, 109, ...) are mapped to 2 here, where parsing ends.
#include <CLI/CLI.hpp>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "apps/tandem/commands.hpp"

#ifndef TANDEM_VERSION
#error "TANDEM_VERSION is set by apps/CMakeLists.txt from the project's version"
#endif

namespace {

const char* kExitStatuses =
    "Exit status:\n"
    "  0        success\n"
    "  1        the database refused a statement or mutation (or a watch's query is outside the live-query subset)\n"
    "  2        bad arguments, options or files (unknown option, missing value, unreadable file, ...)\n"
    "  3        the server did not acknowledge in time, could not be reached, or refused the client\n"
    "  128+N    stopped by signal N (130: SIGINT, 143: SIGTERM)\n";

// `tandem help [COMMAND...]` is `tandem [COMMAND...] --help`.
std::vector<std::string> rewrite_help(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  if (args.size() >= 2 && args[1] == "help") {
    args.erase(args.begin() + 1);
    args.push_back("--help");
  }
  return args;
}

// Every command's --help ends with the exit statuses (unless it has a footer of its own).
void add_exit_statuses(CLI::App& app) {
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_footer().empty()) sub->footer(kExitStatuses);
    add_exit_statuses(*sub);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandem: a local-first sync engine (SQLite + CRDT + live queries)"};
  // At most one subcommand, checked after parsing: requiring one up front makes CLI11 answer
  // a mistyped command ("tandem sever") with "A subcommand is required".
  app.require_subcommand(0, 1);
  app.set_help_all_flag("--help-all", "Print help for every subcommand");
  app.set_version_flag("--version", std::string("tandem ") + TANDEM_VERSION, "Print the version and exit");
  // Inherited by every command created below: a command's options are accepted after its
  // subcommand too (`tandem client query SQL --db F`).
  app.fallthrough();
  tandem::app::add_scenario_command(app);
  auto* bench = tandem::app::add_bench_command(app);
  tandem::app::add_bench_store(*bench);
  tandem::app::add_bench_ivm(*bench);
  tandem::app::add_bench_sync(*bench);
  tandem::app::add_bench_cluster(*bench);
  tandem::app::add_bench_schema(*bench);
  tandem::app::add_bench_node(*bench);
  tandem::app::add_bench_compact(*bench);
  tandem::app::add_server_command(app);
  tandem::app::add_token_command(app);
  tandem::app::add_client_command(app);
  tandem::app::add_demo_command(app);
  add_exit_statuses(app);
  app.footer(std::string("Run `tandem help COMMAND` (or `tandem COMMAND --help`) for a command's options.\n\n") +
             kExitStatuses);

  const auto args = rewrite_help(argc, argv);
  std::vector<const char*> cargv;
  for (const auto& a : args) cargv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cargv.size()), cargv.data());
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    // A command's own failure (CLI::RuntimeError) keeps its status; help and version are 0;
    // every argument error is 2, whichever CLI11 exception reported it.
    if (e.get_name() == "RuntimeError" || code == 0) return code;
    std::cerr << "Run `tandem help` for usage.\n";
    return 2;
  }
  if (app.get_subcommands().empty()) {
    std::cerr << app.help() << "\ntandem: a command is required (scenario, bench, server, token, client, demo)\n";
    return 2;
  }
  return 0;
}
