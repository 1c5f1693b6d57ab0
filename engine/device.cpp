// device.cpp: stream, synchronisation and the caching allocator over the
// runtime wrappers of kernels/cuda (the engine never includes CUDA headers).
#include "engine/device.h"

#include <map>
#include <mutex>
#include <stdexcept>
#include <vector>

#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#endif

namespace cvae {

#if defined(CVAE_HAVE_CUDA)

bool cuda_available(std::string* why) { return kernels::cuda::device_count(why) > 0; }

CUstream_st* cuda_stream() {
  static cudaStream_t s = kernels::cuda::stream_create();
  return s;
}

void cuda_synchronize() { kernels::cuda::stream_synchronize(cuda_stream()); }

bool cuda_capturing() { return kernels::cuda::stream_capturing(cuda_stream()); }

namespace {

// Sizes round up to 512 bytes (small) or 2 MiB granules (large), so that
// nearly-equal requests share blocks. Freed blocks go on a per-size free list;
// the last freed is the first reused, which makes the address sequence of a
// repeated step repeat too.
size_t round_size(size_t bytes) {
  const size_t small = 512, large = size_t(2) << 20;
  if (bytes == 0) bytes = 1;
  return bytes < large ? (bytes + small - 1) / small * small : (bytes + large - 1) / large * large;
}

class CudaCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto& list = free_[size];
    void* p = nullptr;
    if (!list.empty()) {
      p = list.back();
      list.pop_back();
    } else {
      p = malloc_or_flush(size);
      stats_.reserved += int64_t(size);
    }
    stats_.in_use += int64_t(size);
    if (stats_.in_use > stats_.peak_in_use) stats_.peak_in_use = stats_.in_use;
    return p;
  }
  // Returned blocks may still be read by queued kernels: reuse is safe because
  // every later user is queued on the same stream, after them.
  void deallocate(void* ptr, size_t bytes) override {
    size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    free_[size].push_back(ptr);
    stats_.in_use -= int64_t(size);
  }
  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_all_locked();
  }
  CudaMemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  // A cache miss. During a graph capture nothing may come from the driver (the capture
  // would fail, and a replay would never allocate): the captured step must find every
  // block cached, so say so. On out-of-memory (and only then): wait for queued work,
  // give the cache back, try once more.
  void* malloc_or_flush(size_t size) {
    if (kernels::cuda::stream_capturing(cuda_stream()))
      throw std::runtime_error("CUDA caching allocator: no cached " + std::to_string(size) +
                               "-byte block during a graph capture; run the captured work eagerly "
                               "first so that the cache holds every block it needs");
    try {
      return kernels::cuda::device_malloc(size);
    } catch (const kernels::cuda::DeviceOutOfMemory&) {
      kernels::cuda::stream_synchronize(cuda_stream());  // cached blocks may be in use by queued kernels
      release_all_locked();
      return kernels::cuda::device_malloc(size);  // throws the out-of-memory message again
    }
  }
  void release_all_locked() {
    for (auto& [size, list] : free_) {
      for (void* p : list) kernels::cuda::device_free(p);
      stats_.reserved -= int64_t(size * list.size());
      list.clear();
    }
  }
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  CudaMemoryStats stats_;
};

CudaCachingAllocator& caching() {
  static auto* a = new CudaCachingAllocator();  // never destroyed: outlives static tensors
  return *a;
}

}  // namespace

Allocator* cuda_allocator() { return &caching(); }
CudaMemoryStats cuda_memory_stats() { return caching().stats(); }
void cuda_empty_cache() { caching().empty_cache(); }

#else  // no CUDA in this build

bool cuda_available(std::string* why) {
  if (why) *why = "this build has no CUDA support (configured with CVAE_CUDA=OFF or without nvcc)";
  return false;
}
CUstream_st* cuda_stream() { throw std::runtime_error("this build has no CUDA support"); }
void cuda_synchronize() {}
bool cuda_capturing() { return false; }
Allocator* cuda_allocator() { throw std::runtime_error("this build has no CUDA support"); }
CudaMemoryStats cuda_memory_stats() { return {}; }
void cuda_empty_cache() {}

#endif

Device resolve_device(const std::string& name, std::string* note) {
  std::string why;
  if (name == "cpu") {
    if (note) *note = "cpu";
    return Device::CPU;
  }
  bool gpu = cuda_available(&why);
  if (name == "cuda") {
    if (!gpu) throw std::invalid_argument("--device cuda: no usable GPU (" + why + ")");
    if (note) *note = "cuda";
    return Device::CUDA;
  }
  if (name != "auto") throw std::invalid_argument("unknown device '" + name + "' (cpu, cuda, auto)");
#if defined(CVAE_CUDA_EMULATED)
  if (gpu) {
    gpu = false;
    why = "the CUDA device of this build is the CPU emulator; --device cuda uses it";
  }
#endif
  if (note) *note = gpu ? "cuda (auto)" : "cpu (auto: no GPU: " + why + ")";
  return gpu ? Device::CUDA : Device::CPU;
}

}  // namespace cvae
