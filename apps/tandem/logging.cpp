#include "apps/tandem/logging.hpp"

#include <iostream>
#include <memory>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apps/tandem/line_reader.hpp"

namespace tandem::app {
namespace {

// stderr, and after each line a redraw of the shell's prompt and half-typed line below it
// (LineReader::output_written, a no-op unless a shell reads a line on a terminal): a log line
// of another thread (the syncer's, say) otherwise leaves the line being typed above it, cut.
class RedrawingSink : public spdlog::sinks::sink {
 public:
  RedrawingSink() : inner_(std::make_shared<spdlog::sinks::stderr_color_sink_mt>()) {}
  void log(const spdlog::details::log_msg& msg) override {
    inner_->log(msg);
    LineReader::output_written();
  }
  void flush() override { inner_->flush(); }
  void set_pattern(const std::string& pattern) override { inner_->set_pattern(pattern); }
  void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override { inner_->set_formatter(std::move(formatter)); }

 private:
  std::shared_ptr<spdlog::sinks::sink> inner_;
};

}  // namespace

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
  auto logger = std::make_shared<spdlog::logger>(process, std::make_shared<RedrawingSink>());
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%f %^%l%$ [%n] %v");
  spdlog::set_level(parsed);
  spdlog::flush_on(spdlog::level::info);
  return true;
}

}  // namespace tandem::app
