// failpoint.h: test-only fault injection, so the app tests can place a signal
// or a crash exactly where they mean to, with no sleeps. CVAE_FAILPOINT =
// "ACTION@POINT:N" acts when the program reaches POINT for the Nth time:
//   pause  print "cvae: failpoint ... reached" on stderr, then wait until a stop
//          is requested (the first Ctrl-C/SIGTERM) and carry on from there;
//   stall  print the same, then wait for ever (only a second signal ends it);
//   kill   SIGKILL itself, as `kill -9` at that very point;
//   nan    make failpoint_nan() true there (the caller then puts a NaN in).
// Points: train-step (inside a step, after backward, before the optimizer
// update), gradient (the same place, for nan: the first parameter's gradient
// becomes NaN), eval-chunk (after a chunk of an evaluation), checkpoint
// (after an epoch's checkpoint is written, before its metrics line).
// Unset in normal use.
#pragma once

#include <cstdint>

namespace cvae::app {

void failpoint(const char* point);       // pause, stall, kill
bool failpoint_nan(const char* point);   // nan

}  // namespace cvae::app
