// random.cu: CUDA normal_fill / uniform_fill from Philox4x32-10, bit-identical
// to kernels/cpu/random.cpp (the mapping lives in kernels/philox.h), also at an offset
// held on the device; and the reparameterisation that turns the normals into latents.
// One thread per Philox block (4 elements), grid-stride. Compiled with --fmad=false.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/grid_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/philox.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;  // grid-stride beyond this

unsigned grid_for(int64_t threads) {  // one thread per Philox block or element
  return static_cast<unsigned>(std::min<int64_t>((threads + kThreads - 1) / kThreads, kMaxGrid));
}

// y[i] = Box-Muller normal of Philox block offset + i/4, lane i%4, where offset is
// *device_offset when that is given (and the last block then adds ceil(n/4) to it)
template <typename T>
__global__ void normal_fill_kernel(int64_t n, uint64_t seed, uint64_t offset, uint64_t* device_offset,
                                   unsigned* counter, T* y) {
  if (device_offset) offset = *device_offset;
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
  if (device_offset && last_block_arrives(counter, gridDim.x) && threadIdx.x == 0)
    *device_offset = offset + static_cast<uint64_t>(nblocks);
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

// Layout: [n] flat.   z = eps * exp(0.5 * logvar) + mean   (the CPU's scale, exp, mul, add)
__global__ void reparameterize_fwd_kernel(int64_t n, const float* mean, const float* logvar,
                                          const float* eps, float* z) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float e = expf(0.5f * logvar[i]);
    z[i] = eps[i] * e + mean[i];
  }
}

// Layout: [n] flat; e = exp(0.5 * logvar).  dmean (+)= dz;  dlogvar (+)= 0.5 * ((dz * eps) * e);
// deps = dz * e  (the CPU's backward of the chain: add, mul, exp, scale; any may be null)
__global__ void reparameterize_bwd_kernel(int64_t n, const float* logvar, const float* eps,
                                          const float* dz, float* dmean, bool acc_mean, float* dlogvar,
                                          bool acc_logvar, float* deps) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float g = dz[i];
    if (dmean) dmean[i] = acc_mean ? dmean[i] + g : g;
    if (dlogvar || deps) {
      const float e = expf(0.5f * logvar[i]);
      if (dlogvar) {
        const float d = 0.5f * ((g * eps[i]) * e);
        dlogvar[i] = acc_logvar ? dlogvar[i] + d : d;
      }
      if (deps) deps[i] = g * e;
    }
  }
}

}  // namespace

template <typename T>
void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y, cudaStream_t stream) {
  if (n <= 0) return;
  launch<normal_fill_kernel<T>>(grid_for((n + 3) / 4), kThreads, 0, stream, n, seed, offset, nullptr, nullptr, y);
}

void normal_fill_from_device(int64_t n, uint64_t seed, uint64_t* device_offset, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  launch<normal_fill_kernel<float>>(grid_for((n + 3) / 4), kThreads, 0, stream, n, seed, uint64_t{0},
                                    device_offset, detail::arrival_counters(stream, 1), y);
}

void reparameterize_fwd(int64_t n, const float* mean, const float* logvar, const float* eps, float* z,
                        cudaStream_t stream) {
  if (n <= 0) return;
  launch<reparameterize_fwd_kernel>(grid_for(n), kThreads, 0, stream, n, mean, logvar, eps, z);
}

void reparameterize_bwd(int64_t n, const float* logvar, const float* eps, const float* dz, float* dmean,
                        bool accumulate_mean, float* dlogvar, bool accumulate_logvar, float* deps,
                        cudaStream_t stream) {
  if (n <= 0 || (!dmean && !dlogvar && !deps)) return;
  launch<reparameterize_bwd_kernel>(grid_for(n), kThreads, 0, stream, n, logvar, eps, dz, dmean,
                                    accumulate_mean, dlogvar, accumulate_logvar, deps);
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
