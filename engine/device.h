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
// A private pool of the caching allocator (for a CUDA graph, graph.h): while a
// CudaPoolScope of it is alive, allocations come from it, and its blocks return to it
// when freed, whenever that is, never to be handed to other work.
int cuda_new_pool();
class CudaPoolScope {
 public:
  explicit CudaPoolScope(int pool);
  ~CudaPoolScope();
  CudaPoolScope(const CudaPoolScope&) = delete;
  CudaPoolScope& operator=(const CudaPoolScope&) = delete;

 private:
  int previous_ = 0;
};
// Returns cached blocks to the driver (after an out-of-memory, or on request).
void cuda_empty_cache();

// What this process queued on the GPU so far (kernels/cuda counts it where it is queued):
// kernels (with the kernel nodes each graph launch ran), device-side copies and memsets,
// host synchronisations (reads back and stream waits), graph launches. Differences of two
// snapshots measure a stretch of work. All zero in builds without CUDA.
struct CudaCounts {
  int64_t kernels = 0, copies = 0, host_syncs = 0, graph_launches = 0;
};
CudaCounts cuda_counts();
inline CudaCounts operator-(const CudaCounts& a, const CudaCounts& b) {
  return {a.kernels - b.kernels, a.copies - b.copies, a.host_syncs - b.host_syncs,
          a.graph_launches - b.graph_launches};
}

// "cpu" -> CPU, "cuda" -> CUDA (throws if unusable, with the reason), "auto" ->
// CUDA when a real GPU is available, else CPU (the CPU emulator of an emulated build,
// CVAE_CUDA=EMULATE, is only used when asked for by name: it is for tests, and slow).
// *note says what was chosen and why.
Device resolve_device(const std::string& name, std::string* note);

}  // namespace cvae
