// Structured logs for the sync commands: spdlog to stderr, one line per event, key=value
// fields after the message ("hop=server.push user=alice seq=3 ..."), so that at debug level
// one change can be followed from the writing client through the server to the receiving
// client by its db_version ranges.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace tandem::app {

// Adds --log-level (trace, debug, info, warn, error, off; default `fallback`) to `cmd`.
void add_log_level_option(CLI::App* cmd, std::string* level, const std::string& fallback = "info");
// Installs the stderr logger named `process` at `level`. False (after printing why) on a bad level.
bool setup_logging(const std::string& process, const std::string& level);

}  // namespace tandem::app
