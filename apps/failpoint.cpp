// failpoint.cpp: parses CVAE_FAILPOINT once and counts visits per point.
#include "apps/failpoint.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "apps/signals.h"

namespace cvae::app {
namespace {

struct Spec {
  std::string action, point;
  long n = 0;
};

// Empty action when the variable is unset or malformed.
Spec parse_spec() {
  Spec s;
  const char* env = std::getenv("CVAE_FAILPOINT");
  if (!env) return s;
  std::string v = env;
  size_t at = v.find('@'), colon = v.rfind(':');
  if (at == std::string::npos || colon == std::string::npos || colon < at) {
    std::fprintf(stderr, "cvae: ignoring CVAE_FAILPOINT=%s (expected ACTION@POINT:N)\n", env);
    return s;
  }
  s.action = v.substr(0, at);
  s.point = v.substr(at + 1, colon - at - 1);
  s.n = std::strtol(v.c_str() + colon + 1, nullptr, 10);
  return s;
}

const Spec& spec() {
  static const Spec s = parse_spec();
  return s;
}

// True on the Nth visit of the configured point.
bool reached(const char* point) {
  static long visits = 0;
  return !spec().action.empty() && spec().point == point && ++visits == spec().n;
}

}  // namespace

bool failpoint_nan(const char* point) { return spec().action == "nan" && reached(point); }

void failpoint(const char* point) {
  const Spec& s = spec();
  if (s.action == "nan" || !reached(point)) return;
  if (s.action == "kill") {
    std::fflush(nullptr);
    std::raise(SIGKILL);
  }
  std::fprintf(stderr, "cvae: failpoint %s@%s:%ld reached (pid %d)\n", s.action.c_str(), point, s.n,
               static_cast<int>(::getpid()));
  std::fflush(nullptr);
  // Polling the flag rather than sigsuspend: the signal may be delivered to an
  // OpenMP worker thread, and only the flag is sure to be seen.
  const bool forever = s.action == "stall";
  while (forever || !stop_requested()) ::usleep(2000);
}

}  // namespace cvae::app
