// device.h: the engine's view of the GPU: whether one is usable, the one
// stream all CUDA work is queued on (in order, so no event juggling), and the
// caching device allocator. Builds without CUDA answer "no GPU" everywhere.
#pragma once

#include <cstdint>
#include <string>

#include "engine/allocator.h"
#include "engine/tensor.h"

struct CUstream_st;

namespace cvae {

// True when this build has CUDA and a device answers; otherwise false with the
// reason in *why (a missing driver is "no GPU", never an error).
bool cuda_available(std::string* why = nullptr);

// The stream every CUDA op of this process runs on (created on first use).
CUstream_st* cuda_stream();

// Waits for all queued GPU work (the host needs a value). Call sites say why.
void cuda_synchronize();

// True while the engine's stream is being captured into a CUDA graph (graph.h):
// nothing may then be allocated from the driver, uploaded from host memory or waited on.
bool cuda_capturing();

// The caching allocator: blocks are kept for reuse by exact rounded size, so a
// training step that allocates the same sequence of sizes gets the same
// addresses every time (which lets a CUDA graph capture the step).
Allocator* cuda_allocator();
struct CudaMemoryStats {
  int64_t in_use = 0;    // bytes handed out now
  int64_t reserved = 0;  // bytes obtained from cudaMalloc (in use + cached)
  int64_t peak_in_use = 0;
};
CudaMemoryStats cuda_memory_stats();
// Returns cached blocks to the driver (after an out-of-memory, or on request).
void cuda_empty_cache();

// "cpu" -> CPU, "cuda" -> CUDA (throws if unusable, with the reason), "auto" ->
// CUDA when a real GPU is available, else CPU (the CPU emulator of an emulated build,
// CVAE_CUDA=EMULATE, is only used when asked for by name: it is for tests, and slow).
// *note says what was chosen and why.
Device resolve_device(const std::string& name, std::string* note);

}  // namespace cvae
