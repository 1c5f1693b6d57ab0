// scratch.cu: the per-stream scratch of the single-launch multi-block reductions
// (grid_reduce.cuh): zeroed arrival counters and a buffer for partial results, like a
// BLAS library's workspace per handle. Host code only; allocated outside captures.
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/grid_reduce.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda::detail {
namespace {

struct StreamScratch {
  unsigned* counters = nullptr;
  float* partials = nullptr;
  size_t partial_floats = 0;
  std::vector<float*> retired;  // outgrown buffers: a captured graph may still use one
};

std::mutex g_mu;
std::map<cudaStream_t, StreamScratch>& scratch_of() {
  static auto* m = new std::map<cudaStream_t, StreamScratch>();  // streams live as long as the process
  return *m;
}

[[noreturn]] void refuse_in_capture(const std::string& what) {
  throw std::runtime_error("CUDA reduction scratch: " + what +
                           " needed during a graph capture; run the captured work eagerly "
                           "once first so that the stream's scratch is allocated");
}

}  // namespace

unsigned* arrival_counters(cudaStream_t stream, int needed) {
  if (needed > kMaxCounters)
    throw std::invalid_argument("a reduction over " + std::to_string(needed) + " groups: at most " +
                                std::to_string(kMaxCounters) + " per launch");
  std::lock_guard<std::mutex> lock(g_mu);
  StreamScratch& s = scratch_of()[stream];
  if (!s.counters) {
    if (stream_capturing(stream)) refuse_in_capture("arrival counters");
    s.counters = static_cast<unsigned*>(device_malloc(sizeof(unsigned) * kMaxCounters));
    memset_zero(s.counters, sizeof(unsigned) * kMaxCounters, stream);  // once per stream
  }
  return s.counters;
}

float* partials(cudaStream_t stream, size_t floats) {
  std::lock_guard<std::mutex> lock(g_mu);
  StreamScratch& s = scratch_of()[stream];
  if (floats <= s.partial_floats) return s.partials;
  if (stream_capturing(stream)) refuse_in_capture(std::to_string(floats) + " floats of partials");
  // The old buffer is kept, not freed: a queued reduction, or a graph captured earlier
  // (whose kernels hold its address), may still use it. A few shapes settle the size for
  // the whole run, so this holds at most a few small buffers.
  if (s.partials) s.retired.push_back(s.partials);
  // Grown in steps of 2x, so a few shapes settle it for the whole run.
  const size_t grow = std::max(floats, 2 * s.partial_floats);
  s.partials = static_cast<float*>(device_malloc(grow * sizeof(float)));
  s.partial_floats = grow;
  return s.partials;
}

}  // namespace cvae::kernels::cuda::detail
