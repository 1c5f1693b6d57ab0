// errors.h: the cvae program's exit codes and the exceptions that carry them
// out of the subcommands. cvae_main.cpp turns each into one line on stderr;
// README's table of exit codes is kExitCodes (test_app compares the two).
#pragma once

#include <stdexcept>

namespace cvae::app {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,     // a bug: please report it
  kExitRefused = 2,      // bad arguments, a bad input file, or a state to change first
  kExitNonFinite = 3,    // NaN or Inf in training or evaluation
  kExitInterrupted = 128,  // + the signal: 130 Ctrl-C, 143 SIGTERM
};

struct ExitCodeDoc {
  int code;
  const char* meaning;
};
inline constexpr ExitCodeDoc kExitCodes[] = {
    {0, "success"},
    {1, "internal error (a bug: please report it with the command line)"},
    {2, "refused: bad arguments, a missing or malformed file, or a state to change first "
        "(a run directory in use or already holding a run, an existing output file, not "
        "enough memory, a write that failed); nothing on disk was overwritten"},
    {3, "not finite: training met a NaN or Inf (the last good checkpoint is kept), or "
        "evaluation bounds came out NaN or Inf"},
    {130, "stopped by Ctrl-C (SIGINT): training wrote a checkpoint to resume from"},
    {143, "stopped by SIGTERM: as 130"},
};

// Bad arguments: one line, then "see cvae SUBCOMMAND --help"; exit 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Arguments that are fine but a state that must change first (a locked run
// directory, an existing output file, not enough memory): one line, exit 2.
class Refused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A NaN or Inf where a number was needed (a training step, a bound): exit 3.
class NonFiniteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace cvae::app
