// allocator.cpp: the 64-byte aligned host allocator.
#include "engine/allocator.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace cvae {
namespace {

std::atomic<int64_t> g_cpu_bytes{0};
std::atomic<int64_t> g_cpu_peak{0};

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    // aligned_alloc wants a multiple of the alignment; never ask for 0 bytes.
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    const int64_t now = g_cpu_bytes += static_cast<int64_t>(bytes);
    int64_t peak = g_cpu_peak.load(std::memory_order_relaxed);
    while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
    }
    return p;
  }
  void deallocate(void* ptr, size_t bytes) override {
    std::free(ptr);
    g_cpu_bytes -= static_cast<int64_t>(bytes);
  }
};

}  // namespace

Allocator* cpu_allocator() {
  static CpuAllocator a;
  return &a;
}

int64_t cpu_bytes_in_use() { return g_cpu_bytes.load(); }

int64_t cpu_bytes_peak() { return g_cpu_peak.load(); }

void reset_cpu_bytes_peak() { g_cpu_peak.store(g_cpu_bytes.load()); }

}  // namespace cvae
