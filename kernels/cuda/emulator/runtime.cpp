// runtime.cpp: the emulator's CUDA runtime: one device that answers like an H100
// (132 SMs, 48 KB shared memory per block, 1024 threads per block), device memory as
// poisoned host heap memory, streams that execute in order at once, stream capture with
// CUDA's global-mode rules, and graphs that replay what was captured. Errors carry
// CUDA's codes; cudaGetErrorString adds what the emulator saw.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/emulator/emulator.h"
#include "kernels/cuda/emulator/internal.h"

struct CUstream_st {
  unsigned flags = 0;
  bool capturing = false;
  bool invalidated = false;  // a prohibited call during the capture: EndCapture fails
  std::string invalid_why;
  std::vector<std::function<void()>> nodes;
};
struct CUgraph_st {
  std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> nodes;
};

namespace cvae::emu {
namespace {

constexpr size_t kTotalMemory = size_t{79} << 30;  // an H100 80GB after the context
constexpr unsigned char kPoison = 0xFF;            // NaN as float and double, -1 as integer
constexpr size_t kDeviceAlign = 256;               // cudaMalloc's alignment

struct State {
  std::mutex mu;
  std::map<uintptr_t, size_t> device;  // base -> bytes, every live cudaMalloc
  std::map<uintptr_t, size_t> pinned;  // base -> bytes, every live cudaMallocHost
  size_t in_use = 0, limit = kTotalMemory;
  std::set<CUstream_st*> streams;
  cudaError_t sticky = cudaSuccess;
  std::string sticky_why;
};
State& state() {
  static State* s = new State();  // never destroyed: tensors freed at exit still call cudaFree
  return *s;
}

thread_local cudaError_t t_last = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;
thread_local std::string t_detail;

const char* error_text(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalState: return "the operation cannot be performed in the present state";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureImplicit:
      return "operation would make the legacy stream depend on a capturing blocking stream";
  }
  return "unknown error";
}

// The live allocation of map that holds [p, p+bytes), if any.
bool inside(const std::map<uintptr_t, size_t>& map, const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = map.upper_bound(a);
  if (it == map.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

// Global capture mode: the first capture that a prohibited call breaks. Caller holds mu.
CUstream_st* active_capture_locked() {
  for (CUstream_st* s : state().streams)
    if (s->capturing) return s;
  return nullptr;
}

// A call that CUDA's global mode forbids while any capture runs (allocation, free,
// device synchronisation): fails and invalidates every capture in progress.
cudaError_t refuse_during_capture(const char* call) {
  std::string why;
  {
    std::lock_guard<std::mutex> lock(state().mu);
    for (CUstream_st* s : state().streams)
      if (s->capturing) {
        s->invalidated = true;
        s->invalid_why = std::string(call) + " during stream capture";
        why = s->invalid_why;
      }
  }
  if (why.empty()) return cudaSuccess;
  return detail::fail(cudaErrorStreamCaptureUnsupported,
                      why + " (global capture mode forbids it; a replay would skip it)");
}

bool is_capturing(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(state().mu);
  return stream && stream->capturing;
}

}  // namespace

namespace detail {

cudaError_t fail(cudaError_t err, const std::string& why) {
  t_last = err;
  t_detail_code = err;
  t_detail = why;
  return err;
}

void set_sticky(cudaError_t err, const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(state().mu);
    if (state().sticky == cudaSuccess) {
      state().sticky = err;
      state().sticky_why = why;
    }
  }
  std::fprintf(stderr, "cvae CUDA emulator: %s\n", why.c_str());
  fail(err, why);
}

cudaError_t sticky_error() {
  std::lock_guard<std::mutex> lock(state().mu);
  if (state().sticky != cudaSuccess) {
    t_detail_code = state().sticky;
    t_detail = state().sticky_why;
    t_last = state().sticky;
  }
  return state().sticky;
}

cudaError_t enqueue(cudaStream_t stream, std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(state().mu);
    if (stream && !state().streams.count(stream))
      return fail(cudaErrorInvalidResourceHandle, "unknown or destroyed stream");
    if (!stream) {
      if (CUstream_st* c = active_capture_locked()) {
        c->invalidated = true;
        c->invalid_why = "work on the legacy default stream during capture";
        return fail(cudaErrorStreamCaptureImplicit, c->invalid_why);
      }
    } else if (stream->capturing) {
      if (stream->invalidated)
        return fail(cudaErrorStreamCaptureInvalidated, "the capture failed earlier: " + stream->invalid_why);
      stream->nodes.push_back(std::move(work));
      return cudaSuccess;
    }
  }
  work();  // stream order is program order: nothing else is in flight
  return sticky_error();
}

}  // namespace detail

void clear_sticky_error() {
  std::lock_guard<std::mutex> lock(state().mu);
  state().sticky = cudaSuccess;
  state().sticky_why.clear();
  t_last = cudaSuccess;
}

size_t set_memory_limit(size_t bytes) {
  std::lock_guard<std::mutex> lock(state().mu);
  return std::exchange(state().limit, bytes);
}

size_t device_bytes_in_use() {
  std::lock_guard<std::mutex> lock(state().mu);
  return state().in_use;
}

}  // namespace cvae::emu

using cvae::emu::detail::fail;
using cvae::emu::detail::sticky_error;
namespace emu = cvae::emu;

#define CVAE_EMU_STICKY()                                   \
  do {                                                      \
    if (const cudaError_t e_ = sticky_error()) return e_;   \
  } while (0)

// ---------------------------------------------------------------------------- device
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount(nullptr)");
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue, "cudaGetDevice(nullptr)");
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice, "the emulator has device 0 only");
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties(nullptr)");
  if (device != 0) return fail(cudaErrorInvalidDevice, "the emulator has device 0 only");
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "NVIDIA H100 80GB HBM3 (emulated on the CPU by cvae-engine)");
  p->totalGlobalMem = cvae::emu::kTotalMemory;
  p->sharedMemPerBlock = 48 << 10;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (!value) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute(nullptr)");
  if (const cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    default: return fail(cudaErrorInvalidValue, "device attribute not emulated");
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  CVAE_EMU_STICKY();
  return emu::refuse_during_capture("cudaDeviceSynchronize");
}

// ---------------------------------------------------------------------------- memory
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  CVAE_EMU_STICKY();
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMalloc(nullptr, ...)");
  *ptr = nullptr;
  if (const cudaError_t e = emu::refuse_during_capture("cudaMalloc")) return e;
  auto& st = emu::state();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    if (bytes > st.limit - st.in_use)
      return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(bytes) + " bytes: " +
                                                 std::to_string(st.limit - st.in_use) + " free");
  }
  // Plain heap memory of exactly this size: the AddressSanitizer build sees a kernel
  // that reads or writes past it. Poisoned: a read of what nothing wrote shows as NaN.
  void* p = nullptr;
  if (posix_memalign(&p, emu::kDeviceAlign, bytes ? bytes : 1) != 0)
    return fail(cudaErrorMemoryAllocation, "host allocation of " + std::to_string(bytes) + " bytes failed");
  std::memset(p, emu::kPoison, bytes);
  std::lock_guard<std::mutex> lock(st.mu);
  st.device[reinterpret_cast<uintptr_t>(p)] = bytes;
  st.in_use += bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  CVAE_EMU_STICKY();
  if (!ptr) return cudaSuccess;
  if (const cudaError_t e = emu::refuse_during_capture("cudaFree")) return e;
  auto& st = emu::state();
  std::lock_guard<std::mutex> lock(st.mu);
  auto it = st.device.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == st.device.end()) return fail(cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return");
  st.in_use -= it->second;
  st.device.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  CVAE_EMU_STICKY();
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMallocHost(nullptr, ...)");
  if (const cudaError_t e = emu::refuse_during_capture("cudaMallocHost")) return e;
  void* p = nullptr;
  if (posix_memalign(&p, 4096, bytes ? bytes : 1) != 0) return fail(cudaErrorMemoryAllocation, "cudaMallocHost");
  std::lock_guard<std::mutex> lock(emu::state().mu);
  emu::state().pinned[reinterpret_cast<uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  CVAE_EMU_STICKY();
  if (!ptr) return cudaSuccess;
  if (const cudaError_t e = emu::refuse_during_capture("cudaFreeHost")) return e;
  std::lock_guard<std::mutex> lock(emu::state().mu);
  if (!emu::state().pinned.erase(reinterpret_cast<uintptr_t>(ptr)))
    return fail(cudaErrorInvalidValue, "cudaFreeHost of a pointer cudaMallocHost did not return");
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  CVAE_EMU_STICKY();
  if (!free_bytes || !total_bytes) return fail(cudaErrorInvalidValue, "cudaMemGetInfo(nullptr)");
  std::lock_guard<std::mutex> lock(emu::state().mu);
  *free_bytes = emu::state().limit - emu::state().in_use;
  *total_bytes = emu::state().limit;
  return cudaSuccess;
}

namespace {

// The checks of a copy: the device side must lie inside one live cudaMalloc block (a
// GPU would fault or refuse); during capture, host memory must be pinned (a pageable
// buffer may change or vanish before the replay reads it).
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                       cudaStream_t stream) {
  auto& st = emu::state();
  std::lock_guard<std::mutex> lock(st.mu);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice)
    return fail(cudaErrorInvalidMemcpyDirection, "the emulator copies H2D, D2H and D2D only");
  if (dst_dev && !emu::inside(st.device, dst, bytes))
    return fail(cudaErrorInvalidValue, "copy destination is not " + std::to_string(bytes) + " bytes of device memory");
  if (src_dev && !emu::inside(st.device, src, bytes))
    return fail(cudaErrorInvalidValue, "copy source is not " + std::to_string(bytes) + " bytes of device memory");
  if (stream && stream->capturing && kind != cudaMemcpyDeviceToDevice) {
    const void* host = dst_dev ? src : dst;
    if (!emu::inside(st.pinned, host, bytes)) {
      stream->invalidated = true;
      stream->invalid_why = "a copy from/to pageable host memory during capture";
      return fail(cudaErrorStreamCaptureUnsupported,
                  stream->invalid_why + " (only cudaMallocHost memory may be captured)");
    }
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  CVAE_EMU_STICKY();
  if (bytes == 0) return cudaSuccess;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind, stream)) return e;
  return emu::detail::enqueue(stream, [dst, src, bytes] { std::memcpy(dst, src, bytes); });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  CVAE_EMU_STICKY();
  if (const cudaError_t e = emu::refuse_during_capture("cudaMemcpy (synchronous)")) return e;
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  CVAE_EMU_STICKY();
  if (bytes == 0) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(emu::state().mu);
    if (!emu::inside(emu::state().device, dst, bytes))
      return fail(cudaErrorInvalidValue, "memset target is not " + std::to_string(bytes) + " bytes of device memory");
  }
  return emu::detail::enqueue(stream, [dst, value, bytes] { std::memset(dst, value, bytes); });
}

// ---------------------------------------------------------------------------- streams
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  CVAE_EMU_STICKY();
  if (!stream) return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags(nullptr)");
  auto* s = new CUstream_st();
  s->flags = flags;
  std::lock_guard<std::mutex> lock(emu::state().mu);
  emu::state().streams.insert(s);
  *stream = s;
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(emu::state().mu);
  if (!emu::state().streams.erase(stream)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy");
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  CVAE_EMU_STICKY();
  if (emu::is_capturing(stream)) {
    std::lock_guard<std::mutex> lock(emu::state().mu);
    stream->invalidated = true;
    stream->invalid_why = "cudaStreamSynchronize on the capturing stream";
    return fail(cudaErrorStreamCaptureUnsupported, stream->invalid_why);
  }
  if (!stream) return emu::refuse_during_capture("cudaStreamSynchronize(legacy stream)");
  return cudaSuccess;  // everything queued has run already
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  CVAE_EMU_STICKY();
  std::lock_guard<std::mutex> lock(emu::state().mu);
  if (!stream || !emu::state().streams.count(stream))
    return fail(cudaErrorInvalidValue, "capture needs a created stream (not the legacy stream)");
  if (stream->capturing) return fail(cudaErrorIllegalState, "the stream is capturing already");
  if (mode != cudaStreamCaptureModeGlobal)
    return fail(cudaErrorNotSupported, "the emulator implements the global capture mode only");
  stream->capturing = true;
  stream->invalidated = false;
  stream->invalid_why.clear();
  stream->nodes.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  CVAE_EMU_STICKY();
  if (!graph) return fail(cudaErrorInvalidValue, "cudaStreamEndCapture(..., nullptr)");
  *graph = nullptr;
  std::lock_guard<std::mutex> lock(emu::state().mu);
  if (!stream || !emu::state().streams.count(stream) || !stream->capturing)
    return fail(cudaErrorIllegalState, "cudaStreamEndCapture on a stream that is not capturing");
  stream->capturing = false;
  if (stream->invalidated)
    return fail(cudaErrorStreamCaptureInvalidated, "the capture was invalidated by " + stream->invalid_why);
  *graph = new CUgraph_st{std::move(stream->nodes)};
  stream->nodes.clear();
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (!status) return fail(cudaErrorInvalidValue, "cudaStreamIsCapturing(..., nullptr)");
  std::lock_guard<std::mutex> lock(emu::state().mu);
  if (stream && !emu::state().streams.count(stream)) return fail(cudaErrorInvalidResourceHandle, "unknown stream");
  const bool on = stream ? stream->capturing : emu::active_capture_locked() != nullptr;
  const bool bad = stream && stream->invalidated;
  *status = !on ? cudaStreamCaptureStatusNone : bad ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

// ---------------------------------------------------------------------------- graphs
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  CVAE_EMU_STICKY();
  if (!exec || !graph) return fail(cudaErrorInvalidValue, "cudaGraphInstantiate(nullptr)");
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  CVAE_EMU_STICKY();
  if (!exec) return fail(cudaErrorInvalidValue, "cudaGraphLaunch(nullptr)");
  for (const auto& node : exec->nodes)
    if (const cudaError_t e = emu::detail::enqueue(stream, node)) return e;
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

// ---------------------------------------------------------------------------- errors
cudaError_t cudaGetLastError() {
  if (const cudaError_t e = sticky_error()) return e;
  return std::exchange(cvae::emu::t_last, cudaSuccess);
}

cudaError_t cudaPeekAtLastError() {
  if (const cudaError_t e = sticky_error()) return e;
  return cvae::emu::t_last;
}

const char* cudaGetErrorString(cudaError_t err) {
  thread_local std::string text;
  text = cvae::emu::error_text(err);
  if (err != cudaSuccess && err == cvae::emu::t_detail_code && !cvae::emu::t_detail.empty())
    text += " (emulator: " + cvae::emu::t_detail + ")";
  return text.c_str();
}

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    default: return "cudaError";
  }
}
