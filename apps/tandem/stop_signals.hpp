// Ctrl-C (SIGINT) and SIGTERM for the tandem commands: every command stops within a second.
//
// install() blocks both signals in the calling thread before any other thread exists (CAF's
// and the I/O loop's threads inherit the mask, so no worker thread is ever interrupted) and
// starts one thread that waits for them with sigwait. When one arrives it records it, makes
// fd() readable, runs the registered stop callbacks (which make the command's blocking
// waits return: a request to an actor is answered with an error, a poll() on fd() wakes),
// and the command unwinds and exits normally. If the process still runs `grace` after the
// signal (a stop that hangs: an actor that never finishes, a blocking call nobody woke),
// the thread ends it with _exit(128 + signal): the databases need nothing at exit (every
// commit is durable and a crash is recovered by SQLite; an acknowledgement only follows a
// durable commit), and the user asked for the process to end.
#pragma once

#include <signal.h>

#include <chrono>
#include <functional>

namespace tandem::app {

// How long a clean stop may take before the process is ended. A sanitizer build stops several
// times slower (its allocator and leak check at exit), so it gets more: the ASan pass checks
// memory safety, not this promise.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::chrono::milliseconds kStopGrace{5000};
#else
inline constexpr std::chrono::milliseconds kStopGrace{900};
#endif

void install_stop_signals(std::chrono::milliseconds grace = kStopGrace);
// Blocks SIGINT and SIGTERM in the calling thread (threads started later inherit it) and
// ignores SIGPIPE; returns the blocked set, for a command that sigwaits itself (the server).
sigset_t block_stop_signals();
// 0 until SIGINT or SIGTERM arrived, then its number.
int stop_signal();
// Readable once a stop signal arrived (for poll()); -1 before install_stop_signals().
int stop_fd();
// Waits up to `timeout` for a stop signal; true if one arrived.
bool wait_for_stop(std::chrono::milliseconds timeout);

// Runs `fn` on the signal thread when a stop signal arrives (at once if one already did).
// The returned id removes it (remove_stop_callback waits for a running callback to finish,
// so what `fn` uses may be destroyed afterwards).
int add_stop_callback(std::function<void()> fn);
void remove_stop_callback(int id);

// For a command that waits for its stop signal itself (the server's sigwait): ends the
// process with _exit(code) unless it exited normally within `grace` from now.
void exit_after(std::chrono::milliseconds grace, int code);

}  // namespace tandem::app
