#include "apps/tandem/logging.hpp"

#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace tandem::app {

void add_log_level_option(CLI::App* cmd, std::string* level, const std::string& fallback) {
  *level = fallback;
  cmd->add_option("--log-level", *level, "Log level: trace, debug, info, warn, error, off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
}

bool setup_logging(const std::string& process, const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    std::cerr << "tandem: unknown log level '" << level << "'\n";
    return false;
  }
  auto logger = spdlog::stderr_color_mt(process);
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%f %^%l%$ [%n] %v");
  spdlog::set_level(parsed);
  spdlog::flush_on(spdlog::level::info);
  return true;
}

}  // namespace tandem::app
