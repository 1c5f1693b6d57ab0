// allocator.h: where tensor bytes come from. The CPU allocator hands out
// 64-byte aligned blocks (cache lines, AVX-512 loads), caching the large ones as the
// CUDA caching allocator does, behind the same interface.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cvae {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

// Process-wide 64-byte aligned host allocator; throws std::bad_alloc on failure. Blocks of
// 64 KiB and more are cached when freed and handed out again (not under ASan).
Allocator* cpu_allocator();

// Bytes currently handed out by the CPU allocator (for leak checks in tests); the cache
// is not counted.
int64_t cpu_bytes_in_use();
// The most bytes held at once since the last reset (the app's memory estimate
// measures a small training step with it).
int64_t cpu_bytes_peak();
void reset_cpu_bytes_peak();  // the peak restarts from what is held now

// Returns the cached blocks to the system.
void cpu_empty_cache();

}  // namespace cvae
