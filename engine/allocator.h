// allocator.h: where tensor bytes come from. The CPU allocator hands out
// 64-byte aligned blocks (cache lines, AVX-512 loads). The CUDA caching
// allocator arrives with the CUDA backend behind the same interface.
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

// Process-wide 64-byte aligned host allocator; throws std::bad_alloc on failure.
Allocator* cpu_allocator();

// Bytes currently held by the CPU allocator (for leak checks in tests).
int64_t cpu_bytes_in_use();
// The most bytes held at once since the last reset (the app's memory estimate
// measures a small training step with it).
int64_t cpu_bytes_peak();
void reset_cpu_bytes_peak();  // the peak restarts from what is held now

}  // namespace cvae
