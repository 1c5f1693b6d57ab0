// runtime.cu: the engine's only door to the CUDA runtime: devices, memory,
// copies, streams and CUDA graphs, every call checked (check.cuh), and the counts of
// what was queued (stream_counts). No kernels here, and no hidden synchronisation: the
// one sync (memcpy_d2h) says why.
#include <cuda_runtime.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/grid_reduce.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {

// ---------------------------------------------------------------------------- counts
namespace {

// What was queued, and what the capture in progress (at most one: the engine captures
// on its one stream) recorded instead of running: a graph launch adds that again.
struct Counting {
  std::mutex mu;
  StreamCounts live;
  cudaStream_t capturing = nullptr;
  StreamCounts captured;
  std::map<void*, StreamCounts> per_graph;  // exec -> what one launch of it runs
};
Counting& counting() {
  static Counting* c = new Counting();  // never destroyed: tensors freed at exit still copy
  return *c;
}

enum class Counted { Kernel, Copy, HostSync };

void count(cudaStream_t stream, Counted what) {
  Counting& c = counting();
  std::lock_guard<std::mutex> lock(c.mu);
  StreamCounts& into = stream && stream == c.capturing ? c.captured : c.live;
  switch (what) {
    case Counted::Kernel: ++into.kernels; break;
    case Counted::Copy: ++into.copies; break;
    case Counted::HostSync: ++into.host_syncs; break;
  }
}

}  // namespace

StreamCounts stream_counts() {
  std::lock_guard<std::mutex> lock(counting().mu);
  return counting().live;
}

void detail::count_kernel(cudaStream_t stream) { count(stream, Counted::Kernel); }

// Never trusts the count of a call that failed (DESIGN.md: without a driver,
// cudaGetDeviceCount returns "driver version is insufficient" and leaves the
// count unset).
int device_count(std::string* why) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the error so later calls start clean
    return 0;
  }
  if (count <= 0) {
    if (why) *why = "no CUDA devices";
    return 0;
  }
  return count;
}

std::string device_description(int i) {
  cudaDeviceProp p{};
  const cudaError_t err = cudaGetDeviceProperties(&p, i);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("unknown device (") + cudaGetErrorString(err) + ")";
  }
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return buf;
}

int64_t device_free_bytes() {
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) return static_cast<int64_t>(free_b);
  cudaGetLastError();  // not sticky: clear it
  return -1;
}

void* device_malloc(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaSuccess) return p;
  cudaGetLastError();  // an allocation failure is not sticky: clear it
  if (err == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    std::string tail;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
      tail = " (free " + std::to_string(free_b) + " of " + std::to_string(total_b) + " bytes)";
    else
      cudaGetLastError();
    throw DeviceOutOfMemory(std::string(__FILE__) + ":" + std::to_string(__LINE__) +
                            ": CUDA out of memory: tried to allocate " + std::to_string(bytes) +
                            " bytes" + tail);
  }
  detail::throw_cuda_error(__FILE__, __LINE__, "cudaMalloc", err);
}

void device_free(void* ptr) {
  if (ptr) CVAE_CUDA_CHECK(cudaFree(ptr));
}

void memcpy_h2d(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CVAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  count(stream, Counted::Copy);
}

void memcpy_d2h(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CVAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  // Sync: the caller reads dst as soon as we return. The copy is ordered after
  // the kernels that produced src on this stream, and into pinned memory it
  // would still be in flight here; waiting on this stream alone (not the
  // device) keeps other streams running.
  CVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  count(stream, Counted::HostSync);  // a read: counted as the wait it is, not as a copy
}

void memcpy_d2d(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CVAE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  count(stream, Counted::Copy);
}

void memset_zero(void* dst, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  CVAE_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream));
  count(stream, Counted::Copy);
}

// Non-blocking: work on it never waits for (or blocks) the legacy default stream. Its
// reduction counters (grid_reduce.cuh) are made now, so that no capture on it needs them.
cudaStream_t stream_create() {
  cudaStream_t s = nullptr;
  CVAE_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  detail::arrival_counters(s, 0);
  return s;
}

void stream_synchronize(cudaStream_t stream) {
  CVAE_CUDA_CHECK(cudaStreamSynchronize(stream));
  count(stream, Counted::HostSync);
}

bool stream_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CVAE_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Global capture mode: a captured training step must hold no hidden
// synchronisation, allocation or legacy-stream work. In global mode any such
// "unsafe" call, from any thread, fails loudly during capture instead of
// running eagerly once and silently missing from every replay (what relaxed
// mode would allow). The caching allocator is warmed up before capture, so a
// well-formed step never calls cudaMalloc inside it.
void graph_capture_begin(cudaStream_t stream) {
  CVAE_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  std::lock_guard<std::mutex> lock(counting().mu);
  counting().capturing = stream;
  counting().captured = StreamCounts{};
}

void* graph_capture_end(cudaStream_t stream) {
  StreamCounts captured;
  {
    std::lock_guard<std::mutex> lock(counting().mu);
    captured = counting().captured;
    counting().capturing = nullptr;
  }
  cudaGraph_t graph = nullptr;
  CVAE_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  // The executable graph is self-contained: the template graph is not needed.
  const cudaError_t derr = cudaGraphDestroy(graph);
  if (err != cudaSuccess) detail::throw_cuda_error(__FILE__, __LINE__, "cudaGraphInstantiate", err);
  if (derr != cudaSuccess) {
    cudaGraphExecDestroy(exec);
    detail::throw_cuda_error(__FILE__, __LINE__, "cudaGraphDestroy", derr);
  }
  std::lock_guard<std::mutex> lock(counting().mu);
  counting().per_graph[exec] = captured;
  return static_cast<void*>(exec);
}

StreamCounts graph_counts(void* exec) {
  std::lock_guard<std::mutex> lock(counting().mu);
  auto it = counting().per_graph.find(exec);
  return it == counting().per_graph.end() ? StreamCounts{} : it->second;
}

// One launch runs every node the capture recorded: those count as queued again.
void graph_launch(void* exec, cudaStream_t stream) {
  CVAE_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), stream));
  std::lock_guard<std::mutex> lock(counting().mu);
  StreamCounts& live = counting().live;
  const StreamCounts& g = counting().per_graph[exec];
  live.kernels += g.kernels;
  live.copies += g.copies;
  live.graph_launches += 1;
}

void graph_destroy(void* exec) {
  if (!exec) return;
  {
    std::lock_guard<std::mutex> lock(counting().mu);
    counting().per_graph.erase(exec);
  }
  CVAE_CUDA_CHECK(cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)));
}

}  // namespace cvae::kernels::cuda
