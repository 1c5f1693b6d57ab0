// signals.h: Ctrl-C and SIGTERM for the long commands (train, eval). The first
// signal asks the command to stop at its next safe point and says so at once on
// stderr; a second one ends the process at once with 128 + the signal. Files
// are written atomically (a temporary, then rename), so nothing on disk is
// half-written either way.
#pragma once

namespace cvae::app {

// Installs the handlers for its lifetime (and restores the previous ones).
// `what` completes "stopping ..." in the first signal's message, e.g. "after
// the current step (a checkpoint will be written)".
class StopOnSignal {
 public:
  explicit StopOnSignal(const char* what);
  ~StopOnSignal();
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;
};

// Whether a stop was asked for, and by which signal (0: none).
bool stop_requested();
int stop_signal();
// The exit code of a command that stopped on request: 128 + the signal.
int stopped_exit_code();
// "Ctrl-C" or "SIGTERM", for messages.
const char* stop_signal_name();

}  // namespace cvae::app
