// internal.h: what the emulator's runtime (runtime.cpp) and executor (exec.cpp) share:
// error state, stream work that either runs now or is recorded by a capture, and the
// grid runner. Not for kernels or tests (they use cuda_runtime.h and emulator.h).
#pragma once

#include <cuda_runtime.h>

#include <functional>
#include <string>

#include "kernels/cuda/emulator/launch.h"

namespace cvae::emu::detail {

// Makes err the calling thread's last error, with the emulator's explanation; returns err.
cudaError_t fail(cudaError_t err, const std::string& why);
// A fault inside a kernel: every later call of the process returns it (as on a GPU).
void set_sticky(cudaError_t err, const std::string& why);
cudaError_t sticky_error();

// Work queued on a stream: run now (the emulator executes in stream order at once), or
// appended to the stream's capture. Fails, and invalidates the capture, where CUDA's
// global capture mode would (work on the legacy stream during a capture).
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work);

// Runs every block of the grid; "" or the first fault, naming kernel, block and thread.
std::string run_grid(const LaunchConfig& cfg, const std::function<void()>& thread_body);

}  // namespace cvae::emu::detail
