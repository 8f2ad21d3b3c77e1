// The shell's input: lines of stdin, edited on a terminal.
//
// On a terminal, libedit (BSD editline, readline's API) gives line editing (arrows, Ctrl-A/E,
// Ctrl-W, ...) and a history kept across sessions in $TANDEM_HISTORY, else
// ~/.tandem_history (mode 0600, last 1,000 lines). Its callback interface is driven from one
// poll() that also watches the stop signals' descriptor (stop_signals.hpp): Ctrl-C still
// stops the shell within a second, and a watch's output can ask for the prompt to be drawn
// again below it (output_written). Fed by a pipe, stdin is read as is, with no prompt.
//
// Threading: one LineReader at a time, used by one thread; output_written() from any thread.
#pragma once

#include <deque>
#include <optional>
#include <string>

namespace tandem::app {

class LineReader {
 public:
  // `prompt` is shown on stderr while a line is read on a terminal.
  explicit LineReader(std::string prompt);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  bool interactive() const { return tty_; }
  // The next line (without its newline); nullopt at the end of input (Ctrl-D) or once a stop
  // signal arrived. A non-empty line typed on a terminal enters the history.
  std::optional<std::string> next();

  // Something was printed while the user may be typing: the prompt and the line being edited
  // are drawn again below it. Safe from any thread; a no-op without an interactive reader.
  static void output_written();

 private:
  std::optional<std::string> next_plain();
  std::optional<std::string> next_edited();

  std::string prompt_;
  bool tty_ = false;
  std::string history_file_;
  std::string pending_;  // plain input read past the last line
};

}  // namespace tandem::app
