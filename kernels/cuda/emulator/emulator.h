// emulator.h: the CUDA emulator's own controls, for tests that check the emulator and
// for the suite-wide launch count. Only in builds with CVAE_CUDA_EMULATED; kernels and
// the engine never include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace cvae::emu {

// The order in which a block's threads run between two barriers. Reverse exposes a
// missing __syncthreads whose reader has a lower index than its writer (Forward, the
// other half). Default from the environment: CVAE_EMU_ORDER=reverse.
enum class ThreadOrder { Forward, Reverse };
void set_thread_order(ThreadOrder order);
ThreadOrder thread_order();

// Kernel instances with a launch site in this program, and how often each ran (graph
// replays included). CVAE_EMU_LAUNCH_LOG=path appends both to path at exit.
std::set<std::string> registered_kernels();
std::map<std::string, int64_t> launch_counts();

// Device memory size (default: the emulated GPU's); allocations past it fail with
// cudaErrorMemoryAllocation, as on a full GPU. Returns the previous limit.
size_t set_memory_limit(size_t bytes);
size_t device_bytes_in_use();

// A fault inside a kernel is sticky (every later call fails, as on a GPU, where the
// process must restart). Tests that provoke one on purpose clear it afterwards.
void clear_sticky_error();

}  // namespace cvae::emu
