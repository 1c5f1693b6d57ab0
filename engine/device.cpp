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

CudaCounts cuda_counts() {
  const kernels::cuda::StreamCounts c = kernels::cuda::stream_counts();
  return {c.kernels, c.copies, c.host_syncs, c.graph_launches};
}

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

// Pools: blocks allocated while a pool is active (CudaPoolScope) belong to it for good
// and return to it when freed, whatever is active then; pool 0 is everyone's. A CUDA
// graph's pool thus never hands its blocks (which replays write) to eager work.
class CudaCachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    auto& list = free_[{active_pool_, size}];
    void* p = nullptr;
    if (!list.empty()) {
      p = list.back();
      list.pop_back();
    } else {
      p = malloc_or_flush(size);
      stats_.reserved += int64_t(size);
      if (active_pool_ != 0) pool_of_[p] = active_pool_;
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
    auto owner = pool_of_.find(ptr);
    free_[{owner == pool_of_.end() ? 0 : owner->second, size}].push_back(ptr);
    stats_.in_use -= int64_t(size);
  }
  int new_pool() {
    std::lock_guard<std::mutex> lock(mu_);
    return ++pools_;
  }
  int set_active_pool(int pool) {
    std::lock_guard<std::mutex> lock(mu_);
    const int before = active_pool_;
    active_pool_ = pool;
    return before;
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
  // Only the shared pool's cached blocks: a graph's pool keeps its blocks (its replays
  // write them).
  void release_all_locked() {
    for (auto& [key, list] : free_) {
      if (key.first != 0) continue;
      for (void* p : list) kernels::cuda::device_free(p);
      stats_.reserved -= int64_t(key.second * list.size());
      list.clear();
    }
  }
  std::mutex mu_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;  // (pool, size) -> blocks
  std::map<void*, int> pool_of_;                                // blocks of pools other than 0
  int active_pool_ = 0, pools_ = 0;
  CudaMemoryStats stats_;
};

CudaCachingAllocator& caching() {
  static auto* a = new CudaCachingAllocator();  // never destroyed: outlives static tensors
  return *a;
}

}  // namespace

Allocator* cuda_allocator() { return &caching(); }
int cuda_new_pool() { return caching().new_pool(); }
CudaPoolScope::CudaPoolScope(int pool) : previous_(caching().set_active_pool(pool)) {}
CudaPoolScope::~CudaPoolScope() { caching().set_active_pool(previous_); }
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
CudaCounts cuda_counts() { return {}; }
Allocator* cuda_allocator() { throw std::runtime_error("this build has no CUDA support"); }
int cuda_new_pool() { return 0; }
CudaPoolScope::CudaPoolScope(int) {}
CudaPoolScope::~CudaPoolScope() = default;
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
