// random.cu: CUDA normal_fill / uniform_fill from Philox4x32-10, bit-identical
// to kernels/cpu/random.cpp (the mapping lives in kernels/philox.h). One thread
// per Philox block (4 elements), grid-stride. Compiled with --fmad=false.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/philox.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;  // grid-stride beyond this

unsigned grid_for(int64_t nblocks) {
  return static_cast<unsigned>(std::min<int64_t>((nblocks + kThreads - 1) / kThreads, kMaxGrid));
}

// y[i] = Box-Muller normal of Philox block offset + i/4, lane i%4
template <typename T>
__global__ void normal_fill_kernel(int64_t n, uint64_t seed, uint64_t offset, T* y) {
  const int64_t nblocks = (n + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < nblocks;
       j += stride) {
    double v[4];
    philox::philox_normal4(seed, offset + static_cast<uint64_t>(j), v);
    const int64_t base = 4 * j;
    const int64_t cnt = n - base < 4 ? n - base : 4;
    for (int64_t l = 0; l < cnt; ++l) y[base + l] = static_cast<T>(v[l]);
  }
}

// y[i] = lo + (hi - lo) * u of Philox block offset + i/4, lane i%4
template <typename T>
__global__ void uniform_fill_kernel(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi,
                                    T* y) {
  const int64_t nblocks = (n + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < nblocks;
       j += stride) {
    T v[4];
    philox::philox_uniform4<T>(seed, offset + static_cast<uint64_t>(j), lo, hi, v);
    const int64_t base = 4 * j;
    const int64_t cnt = n - base < 4 ? n - base : 4;
    for (int64_t l = 0; l < cnt; ++l) y[base + l] = v[l];
  }
}

}  // namespace

template <typename T>
void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y, cudaStream_t stream) {
  if (n <= 0) return;
  launch<normal_fill_kernel<T>>(grid_for((n + 3) / 4), kThreads, 0, stream, n, seed, offset, y);
}

template <typename T>
void uniform_fill(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi, T* y,
                  cudaStream_t stream) {
  if (n <= 0) return;
  launch<uniform_fill_kernel<T>>(grid_for((n + 3) / 4), kThreads, 0, stream, n, seed, offset, lo, hi, y);
}

template void normal_fill<float>(int64_t, uint64_t, uint64_t, float*, cudaStream_t);
template void normal_fill<double>(int64_t, uint64_t, uint64_t, double*, cudaStream_t);
template void uniform_fill<float>(int64_t, uint64_t, uint64_t, float, float, float*,
                                  cudaStream_t);
template void uniform_fill<double>(int64_t, uint64_t, uint64_t, double, double, double*,
                                   cudaStream_t);

}  // namespace cvae::kernels::cuda
