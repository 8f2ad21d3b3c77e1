#include "apps/tandem/commands.hpp"

namespace tandem::app {

CLI::App* add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure Tandem against its baseline; prints one JSON object per line");
  bench->require_subcommand(1);
  return bench;
}

}  // namespace tandem::app
