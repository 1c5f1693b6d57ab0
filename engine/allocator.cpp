// allocator.cpp: the 64-byte aligned host allocator, caching large blocks.
// A training step asks for the same sizes every step; handing back a block freed by the
// last step, instead of a fresh mmap from malloc, takes the page faults (and the kernel's
// zeroing of every page) out of the step. Under AddressSanitizer nothing is cached, so
// that a use after free is still caught.
#include "engine/allocator.h"

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace cvae {
namespace {

std::atomic<int64_t> g_cpu_bytes{0};
std::atomic<int64_t> g_cpu_peak{0};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kCache = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kCache = false;
#else
constexpr bool kCache = true;
#endif
#else
constexpr bool kCache = true;
#endif

// Blocks of at least this size are cached, rounded up to a multiple of it so that
// nearly equal requests share blocks; at most kMaxCached bytes wait in the cache.
constexpr size_t kCacheMin = 64 * 1024;
constexpr size_t kMaxCached = size_t(2) << 30;

// Raises the recorded peak of bytes handed out to `now` if above it.
void note_in_use(int64_t now) {
  int64_t peak = g_cpu_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    const size_t size = rounded(bytes);
    note_in_use(g_cpu_bytes += static_cast<int64_t>(bytes));
    if (cached(size)) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= size;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, size);
    if (!p) {
      release_cache();  // the cache may hold what the system lacks: give it back, retry
      p = std::aligned_alloc(64, size);
    }
    if (!p) {
      g_cpu_bytes -= static_cast<int64_t>(bytes);
      throw std::bad_alloc();
    }
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    const size_t size = rounded(bytes);
    g_cpu_bytes -= static_cast<int64_t>(bytes);
    if (cached(size)) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_bytes_ + size <= kMaxCached) {
        free_[size].push_back(ptr);
        cached_bytes_ += size;
        return;
      }
    }
    std::free(ptr);
  }
  void release_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, list] : free_)
      for (void* p : list) std::free(p);
    free_.clear();
    cached_bytes_ = 0;
  }

 private:
  // aligned_alloc wants a multiple of the alignment; never ask for 0 bytes.
  static size_t rounded(size_t bytes) {
    const size_t unit = bytes >= kCacheMin ? kCacheMin : 64;
    return bytes == 0 ? 64 : (bytes + unit - 1) / unit * unit;
  }
  static bool cached(size_t size) { return kCache && size >= kCacheMin; }

  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
};

CpuAllocator& the_allocator() {
  static auto* a = new CpuAllocator();  // never destroyed: outlives static tensors
  return *a;
}

}  // namespace

Allocator* cpu_allocator() { return &the_allocator(); }

int64_t cpu_bytes_in_use() { return g_cpu_bytes.load(); }

void cpu_empty_cache() { the_allocator().release_cache(); }

int64_t cpu_bytes_peak() { return g_cpu_peak.load(); }

void reset_cpu_bytes_peak() { g_cpu_peak.store(g_cpu_bytes.load()); }

}  // namespace cvae
