// device_lang.h: CUDA's device-side language as host C++ for the emulator: the
// qualifiers, the built-in index variables (per emulated thread), __syncthreads (a
// real barrier over the block's fibers, exec.cpp), __shared__ storage per block, the
// vector types and math functions the kernels use, and the integer atomics and fences of
// the multi-block reductions (grid_reduce.cuh): the blocks of a grid really run at the same
// time on the pool's OS threads, so these are real C++ atomics and fences. Arithmetic stays IEEE single/double:
// the .cu files are compiled with -ffp-contract=off, as nvcc --fmad=false; an explicit
// fmaf/__fmaf_rn is one fused operation (std::fma), as on the GPU.
#pragma once

#include <math.h>

#include <cmath>
#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// One instance per OS thread; a worker runs one block at a time, all of that block's
// threads on its fibers: exactly block-shared. (Like the GPU, not cleared between blocks.)
#define __shared__ static thread_local
// __restrict__ is a GCC keyword already.

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}  // NOLINT: implicit, as CUDA's
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};

namespace cvae::emu {

// What the built-in variables read for the emulated thread now running.
struct ThreadState {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
// __thread, not thread_local: no TLS wrapper call on every threadIdx read.
extern __thread const ThreadState* tls_thread;

// The block barrier; file/line name the call site in errors.
void syncthreads(const char* file, int line);
// This block's dynamic shared memory (poisoned at block start).
void* dynamic_shared();

}  // namespace cvae::emu

#define threadIdx (::cvae::emu::tls_thread->thread_idx)
#define blockIdx (::cvae::emu::tls_thread->block_idx)
#define blockDim (::cvae::emu::tls_thread->block_dim)
#define gridDim (::cvae::emu::tls_thread->grid_dim)
#define __syncthreads() ::cvae::emu::syncthreads(__FILE__, __LINE__)

inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }

// CUDA's atomicAdd on unsigned: returns the old value (sequentially consistent here, at
// least as strong as the GPU's relaxed device-scope atomic).
inline unsigned atomicAdd(unsigned* address, unsigned value) {
  return __atomic_fetch_add(address, value, __ATOMIC_SEQ_CST);
}
// __threadfence: this thread's writes before it are seen by every thread of the device
// before its writes after it (a full fence here, as on the GPU at device scope).
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// CUDA's overloaded integer/float min and max (device functions in global scope).
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
