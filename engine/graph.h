// graph.h: capturing GPU work into a CUDA graph and replaying it: one launch
// for a whole training step instead of ~40. Rules for the captured body:
//  - it may only allocate blocks the graph's pool already holds: run it eagerly
//    in the pool first (run_in_pool) so the pool is warm (sizes repeat per step);
//  - no host reads inside (item(), to_float_vector(), checkpoint writes);
//  - host-side values it uses (Philox offsets, batch start indices, step
//    counts on the host) are baked in at capture time and repeat on replay:
//    what changes per step must be read from device memory by the kernels;
//  - blocks the body allocates come from the graph's own pool (cuda_new_pool) and
//    go back to it when freed, so eager work never gets a block a replay writes.
#pragma once

#include <functional>

namespace cvae {

class CudaGraph {
 public:
  CudaGraph() = default;
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Runs body with the engine's stream in capture mode and instantiates the
  // graph. Throws std::runtime_error in builds without CUDA, or when the body
  // does something capture forbids (a synchronisation, a cudaMalloc).
  void capture(const std::function<void()>& body);
  // Runs body now (not captured) with allocations from the graph's pool: the warm-up
  // that fills the pool with the blocks a capture of the same body needs.
  void run_in_pool(const std::function<void()>& body);
  // Queues the captured work on the engine's stream.
  void replay();
  bool captured() const { return exec_ != nullptr; }

 private:
  void* exec_ = nullptr;
  int pool_ = -1;  // the allocator pool, made at first use
};

}  // namespace cvae
