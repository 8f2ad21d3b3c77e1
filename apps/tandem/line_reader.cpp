#include "apps/tandem/line_reader.hpp"

#include <editline/readline.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstdio>

#include "apps/tandem/stop_signals.hpp"

namespace tandem::app {
namespace {

constexpr int kHistoryLines = 1000;

// libedit's callback interface takes a plain function: the lines it completes land here.
// Only the one interactive reader uses them.
std::deque<std::optional<std::string>>* g_lines = nullptr;
// A pipe the watch threads write a byte to after printing (output_written): the reader's
// poll() wakes and redraws. -1 while no interactive reader exists.
std::atomic<int> g_redraw_write{-1};
int g_redraw_read = -1;

void on_line(char* line) {
  if (!g_lines) return;
  if (!line) {
    g_lines->push_back(std::nullopt);  // Ctrl-D on an empty line
    return;
  }
  g_lines->push_back(std::string(line));
  std::free(line);
}

void drain_redraws() {
  if (g_redraw_read < 0) return;
  char bytes[64];
  while (::read(g_redraw_read, bytes, sizeof bytes) > 0) {
  }
}

std::string history_path() {
  if (const char* p = std::getenv("TANDEM_HISTORY"); p && *p) return p;
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.tandem_history";
  return {};
}

}  // namespace

LineReader::LineReader(std::string prompt) : prompt_(std::move(prompt)), tty_(::isatty(0) && ::isatty(2)) {
  if (!tty_) return;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0) {
    g_redraw_read = fds[0];
    g_redraw_write = fds[1];
  }
  // Our signals stay with stop_signals' thread: libedit installs no handlers of its own.
  rl_catch_signals = 0;
  rl_outstream = stderr;  // the prompt and echo stay off stdout, which carries results
  history_file_ = history_path();
  if (!history_file_.empty()) {
    (void)read_history(history_file_.c_str());  // none yet is fine
  }
  stifle_history(kHistoryLines);
}

LineReader::~LineReader() {
  if (!tty_) return;
  if (!history_file_.empty()) {
    // Created private: commands may hold data (values written, queries).
    const int fd = ::open(history_file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
    if (write_history(history_file_.c_str()) != 0)
      std::fprintf(stderr, "tandem shell: could not save the history to %s\n", history_file_.c_str());
  }
  const int w = g_redraw_write.exchange(-1);
  if (w >= 0) ::close(w);
  if (g_redraw_read >= 0) ::close(g_redraw_read);
  g_redraw_read = -1;
}

void LineReader::output_written() {
  const int w = g_redraw_write.load();
  if (w < 0) return;
  const char byte = 1;
  (void)!::write(w, &byte, 1);  // full pipe: a redraw is already due
}

std::optional<std::string> LineReader::next() { return tty_ ? next_edited() : next_plain(); }

std::optional<std::string> LineReader::next_edited() {
  std::deque<std::optional<std::string>> lines;
  g_lines = &lines;
  // The handler is installed (terminal in raw mode, prompt drawn) only while a line is being
  // read: a command's output then comes before the next prompt, and the terminal is left
  // as it was found whenever this returns, also on a stop signal.
  drain_redraws();  // output printed before this prompt needs no redraw
  rl_callback_handler_install(prompt_.c_str(), on_line);
  struct Reset {
    ~Reset() {
      rl_callback_handler_remove();
      g_lines = nullptr;
    }
  } reset;
  while (lines.empty()) {
    if (stop_signal() != 0) return std::nullopt;
    pollfd fds[3] = {{0, POLLIN, 0}, {stop_fd(), POLLIN, 0}, {g_redraw_read, POLLIN, 0}};
    if (::poll(fds, g_redraw_read >= 0 ? 3 : 2, -1) < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (fds[1].revents != 0) return std::nullopt;
    if (g_redraw_read >= 0 && fds[2].revents != 0) {
      drain_redraws();
      rl_forced_update_display();
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) rl_callback_read_char();
  }
  auto line = std::move(lines.front());
  if (line && line->find_first_not_of(" \t") != std::string::npos) add_history(line->c_str());
  return line;
}

std::optional<std::string> LineReader::next_plain() {
  for (;;) {
    const auto nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    if (stop_signal() != 0) return std::nullopt;
    pollfd fds[2] = {{0, POLLIN, 0}, {stop_fd(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return std::nullopt;
    }
    if (fds[1].revents != 0) return std::nullopt;
    if (fds[0].revents == 0) continue;
    char buf[4096];
    const ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (pending_.empty()) return std::nullopt;
      std::string last = std::move(pending_);  // a last line without a newline
      pending_.clear();
      return last;
    }
    pending_.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace tandem::app
