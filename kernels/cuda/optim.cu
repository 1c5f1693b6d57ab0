// optim.cu: CUDA optimizer steps, twins of kernels/cpu/optim.cpp: Adam over every
// parameter tensor in ONE launch (PyTorch's epsilon form; the step counter and the
// learning rate read on the device, the counter advanced there, so the launch can be
// captured in a CUDA graph), and SGD.
// Not here: the table's upkeep, zero_grad, weight decay (engine/optim.cpp).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/grid_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 2048;  // grid-stride beyond this (each block rebuilds the prefix)
constexpr int kMaxTensors = 4096;   // prefix table in shared memory: (count+1) * 8 bytes

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid)));
}

// Layout: the concatenation of all tensors' elements, [0, total), grid-stride;
// element e belongs to tensor k = max{k : prefix[k] <= e} (binary search in a
// shared prefix-sum table that thread 0 builds from table[].n).
// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
// bc1 = 1 - beta1^t, bc2 = 1 - beta2^t in double from t = *step + 1 and lr = *lr_dev, then
// used as float, in the order of cpu::adam_step (float math, no FMA contraction:
// bit-identical to the CPU whenever pow agrees to the float rounding). The last block
// to finish stores t in *step: every block has read the old count by then.
__global__ void adam_multi_kernel(const AdamTensor* table, int count, int64_t total, int64_t* step,
                                  const double* lr_dev, unsigned* counter, double beta1, double beta2,
                                  float b1, float b2, float c1, float c2, float e) {
  CVAE_EXTERN_SHARED(int64_t, prefix);  // [count + 1]
  __shared__ float scal[2];            // step_size, sqrt(bc2)
  __shared__ int64_t t_now;            // the step taken
  if (threadIdx.x == 0) {
    int64_t acc = 0;
    for (int k = 0; k < count; ++k) {
      prefix[k] = acc;
      acc += table[k].n;
    }
    prefix[count] = acc;
    t_now = *step + 1;
    const double t = static_cast<double>(t_now);
    const double bc1 = 1.0 - ::pow(beta1, t);
    const double bc2 = 1.0 - ::pow(beta2, t);
    scal[0] = static_cast<float>(*lr_dev / bc1);
    scal[1] = static_cast<float>(::sqrt(bc2));
  }
  __syncthreads();
  const float step_size = scal[0], bc2_sqrt = scal[1];
  const int64_t end = total < prefix[count] ? total : prefix[count];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t el = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; el < end;
       el += stride) {
    int lo = 0, hi = count - 1;  // prefix[lo] <= el always; empty tensors are skipped over
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (prefix[mid] <= el) lo = mid;
      else hi = mid - 1;
    }
    const AdamTensor tt = table[lo];
    const int64_t i = el - prefix[lo];
    const float gi = tt.g[i];
    const float mi = b1 * tt.m[i] + c1 * gi;
    const float vi = b2 * tt.v[i] + c2 * (gi * gi);
    tt.m[i] = mi;
    tt.v[i] = vi;
    const float denom = sqrtf(vi) / bc2_sqrt + e;
    tt.p[i] -= step_size * (mi / denom);
  }
  if (last_block_arrives(counter, gridDim.x) && threadIdx.x == 0) *step = t_now;
}

// Layout: [n], one thread per element.
// p -= lr * g   (lr rounded to float, as cpu::sgd_step<float>)
__global__ void sgd_step_kernel(int64_t n, float* p, const float* g, float a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] -= a * g[i];
}

}  // namespace

// One launch over every tensor of the table. total_elems is sum of table[k].n
// (elements past the table's true total are not touched); count <= 4096.
void adam_step_multi(const AdamTensor* table_dev, int count, int64_t total_elems, int64_t* step_dev,
                     const double* lr_dev, double beta1, double beta2, double eps, cudaStream_t stream) {
  if (count <= 0 || total_elems <= 0) return;
  if (count > kMaxTensors)
    throw std::invalid_argument("adam_step_multi: " + std::to_string(count) +
                                " tensors, more than the " + std::to_string(kMaxTensors) +
                                " one launch supports");
  const size_t shmem = static_cast<size_t>(count + 1) * sizeof(int64_t);
  launch<adam_multi_kernel>(grid_for(total_elems), kThreads, shmem, stream, table_dev, count,
                            total_elems, step_dev, lr_dev, detail::arrival_counters(stream, 1), beta1,
                            beta2, static_cast<float>(beta1),
                            static_cast<float>(beta2), static_cast<float>(1.0 - beta1),
                            static_cast<float>(1.0 - beta2), static_cast<float>(eps));
}

void sgd_step(int64_t n, float* p, const float* g, double lr, cudaStream_t stream) {
  if (n <= 0) return;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
  launch<sgd_step_kernel>(grid, kThreads, 0, stream, n, p, g, static_cast<float>(lr));
}

}  // namespace cvae::kernels::cuda
