// threads.cpp: how the kernels' OpenMP threads wait at the end of a parallel loop.
// libgomp's default is to spin some 300,000 times before it sleeps. Beside one other busy
// process on 2 cores that spinning takes the CPU from the very thread the others wait for:
// a training step slowed 2.5x (batch 100) to 3.2x (batch 32). With a spin of 1000 it
// slows 1.6-1.7x; the price is paid alone, where a step is about 10% slower (threads now
// sleep between the step's parallel loops, and waking them takes time): benchmarks/RESULTS.md,
// 2026-12-01. GOMP_SPINCOUNT=300000 restores libgomp's default. libgomp reads its settings
// once, when it is loaded, before main() runs, so a program that wants them sets the
// variable and executes itself again, once.
#include <cstdlib>
#include <cstring>

#include <unistd.h>

#include "kernels/kernels.h"

namespace cvae::kernels::cpu {

void use_short_openmp_spin(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;  // the user's choice
  // Under valgrind /proc/self/exe would start the program again outside it.
  const char* preload = std::getenv("LD_PRELOAD");
  if (preload && std::strstr(preload, "vgpreload")) return;
  setenv("GOMP_SPINCOUNT", "1000", 1);
  execv("/proc/self/exe", argv);  // returns only if it failed: run on with the default
}

}  // namespace cvae::kernels::cpu
