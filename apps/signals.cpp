// signals.cpp: the handler only stores the signal and writes a prepared
// message (write(2) and _exit are async-signal-safe; printf is not).
#include "apps/signals.h"

#include "apps/errors.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>

namespace cvae::app {
namespace {

volatile std::sig_atomic_t g_signal = 0;
char g_first_int[320], g_first_term[320];
const char kSecond[] = "cvae: second signal: exiting now\n";
struct sigaction g_old_int, g_old_term;

void say(const char* s) {
  ssize_t ignored = ::write(STDERR_FILENO, s, std::strlen(s));
  (void)ignored;
}

extern "C" void on_stop_signal(int sig) {
  if (g_signal != 0) {
    say(kSecond);
    ::_exit(128 + sig);
  }
  g_signal = sig;
  say(sig == SIGTERM ? g_first_term : g_first_int);
}

}  // namespace

StopOnSignal::StopOnSignal(const char* what) {
  g_signal = 0;
  std::snprintf(g_first_int, sizeof g_first_int,
                "\ncvae: Ctrl-C: stopping %s; press Ctrl-C again to exit at once\n", what);
  std::snprintf(g_first_term, sizeof g_first_term,
                "cvae: SIGTERM: stopping %s; a second signal exits at once\n", what);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in progress carry on
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopOnSignal::~StopOnSignal() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

bool stop_requested() { return g_signal != 0; }
int stop_signal() { return g_signal; }
int stopped_exit_code() { return kExitInterrupted + g_signal; }
const char* stop_signal_name() { return g_signal == SIGTERM ? "SIGTERM" : "Ctrl-C"; }

}  // namespace cvae::app
