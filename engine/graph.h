// graph.h: capturing GPU work into a CUDA graph and replaying it: one launch
// for a whole training step instead of ~100. Rules for the captured body:
//  - it may only allocate blocks the caching allocator already holds: run it
//    eagerly once or twice first so the cache is warm (sizes repeat per step);
//  - no host reads inside (item(), to_float_vector(), checkpoint writes);
//  - host-side values it uses (Philox offsets, batch start indices, step
//    counts on the host) are baked in at capture time and repeat on replay;
//  - the blocks the body freed during capture go back to the shared cache, and
//    a replay writes into them again: live tensors of other work must not sit
//    there while replays run (a private pool per graph would lift this: not
//    built yet, so the training loop does not use graphs yet).
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
  // Queues the captured work on the engine's stream.
  void replay();
  bool captured() const { return exec_ != nullptr; }

 private:
  void* exec_ = nullptr;
};

}  // namespace cvae
