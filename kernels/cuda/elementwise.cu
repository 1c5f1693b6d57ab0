// elementwise.cu: CUDA bias add (+ReLU), activations, arithmetic and the
// [outer,mid,inner] sum/broadcast, the twins of kernels/cpu/elementwise.cpp.
// Grid-stride loops with 64-bit indices; reductions in double, fixed order, no atomics.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;  // grid-stride beyond this
constexpr int kReduceThreads = 256;  // block reductions: a power of two

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(
      1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid)));
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Sums s[0..kReduceThreads) into s[0] in a fixed tree order; all threads call it.
__device__ void block_tree_sum(double* s) {
  __syncthreads();
  for (int w = kReduceThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) s[threadIdx.x] += s[threadIdx.x + w];
    __syncthreads();
  }
}

// Layout: x, y [N,C,HW] contiguous, b [C].   y = x + b[c]   (relu: max(., 0), NaN kept)
template <bool Relu>
__global__ void bias_fwd_kernel(int64_t total, int C, int64_t HW, const float* x,
                                const float* b, float* y) {
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const float v = x[e] + b[(e / HW) % C];
    y[e] = Relu ? (v < 0.f ? 0.f : v) : v;
  }
}

// Layout: dy [N,C,HW], db [C]; block c.   db[c] = sum_{n,hw} dy[n,c,hw]
// Thread t sums elements t, t+256, ... of the channel's N*HW in order, then a
// fixed tree: deterministic, and in double like the CPU twin.
__global__ void bias_bwd_kernel(int N, int C, int64_t HW, const float* dy, float* db) {
  __shared__ double s[kReduceThreads];
  const int c = blockIdx.x;
  const int64_t count = static_cast<int64_t>(N) * HW;
  double acc = 0;
  for (int64_t e = threadIdx.x; e < count; e += kReduceThreads) {
    const int64_t n = e / HW, hw = e - n * HW;
    acc += static_cast<double>(dy[(n * C + c) * HW + hw]);
  }
  s[threadIdx.x] = acc;
  block_tree_sum(s);
  if (threadIdx.x == 0) db[c] = static_cast<float>(s[0]);
}

enum class Op { Relu, ReluBwd, Sigmoid, SigmoidBwd, Exp, Add, Sub, Mul, Scale, Axpy, Fill };

// Layout: a, b, y [n] flat (y may alias an input).   y[i] = op(a[i], b[i], alpha)
template <Op op>
__global__ void map_kernel(int64_t n, const float* a, const float* b, float alpha, float* y) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    if constexpr (op == Op::Relu) {
      const float x = a[i];
      y[i] = x < 0.f ? 0.f : x;  // NaN propagates, as the CPU twin
    } else if constexpr (op == Op::ReluBwd) {  // a = y, b = dy
      y[i] = a[i] > 0.f ? b[i] : 0.f;
    } else if constexpr (op == Op::Sigmoid) {  // one exp(-|x|), stable both sides
      const float x = a[i];
      const float e = expf(-fabsf(x));
      const float r = 1.f / (1.f + e);
      y[i] = x >= 0.f ? r : e * r;
    } else if constexpr (op == Op::SigmoidBwd) {  // a = y, b = dy: dy * y * (1 - y)
      y[i] = b[i] * a[i] * (1.f - a[i]);
    } else if constexpr (op == Op::Exp) {
      y[i] = expf(a[i]);
    } else if constexpr (op == Op::Add) {
      y[i] = a[i] + b[i];
    } else if constexpr (op == Op::Sub) {
      y[i] = a[i] - b[i];
    } else if constexpr (op == Op::Mul) {
      y[i] = a[i] * b[i];
    } else if constexpr (op == Op::Scale) {
      y[i] = alpha * a[i];
    } else if constexpr (op == Op::Axpy) {  // separate multiply and add (--fmad=false), as the CPU
      y[i] += alpha * a[i];
    } else {  // Fill
      y[i] = alpha;
    }
  }
}

template <Op op>
void map(int64_t n, const float* a, const float* b, float alpha, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  launch<map_kernel<op>>(grid_for(n), kThreads, 0, stream, n, a, b, alpha, y);
}

// Layout: x [outer,mid,inner], y [outer,inner]; one thread per (o,i).
// y[o,i] = sum_m x[o,m,i], m in increasing order, double accumulator
__global__ void sum_mid_thread_kernel(int64_t outer, int64_t mid, int64_t inner, const float* x,
                                      float* y) {
  const int64_t total = outer * inner;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t o = e / inner, i = e - o * inner;
    const float* xp = x + o * mid * inner + i;
    double acc = 0;
    for (int64_t m = 0; m < mid; ++m) acc += static_cast<double>(xp[m * inner]);
    y[e] = static_cast<float>(acc);
  }
}

// Layout as above; one block per (o,i) output, for few outputs over a long mid.
// y[o,i] = sum_m x[o,m,i]: thread t sums m = t, t+256, ... then a fixed tree.
__global__ void sum_mid_block_kernel(int64_t mid, int64_t inner, const float* x, float* y) {
  __shared__ double s[kReduceThreads];
  const int64_t e = blockIdx.x;  // output index o*inner + i
  const int64_t o = e / inner, i = e - o * inner;
  const float* xp = x + o * mid * inner + i;
  double acc = 0;
  for (int64_t m = threadIdx.x; m < mid; m += kReduceThreads) acc += static_cast<double>(xp[m * inner]);
  s[threadIdx.x] = acc;
  block_tree_sum(s);
  if (threadIdx.x == 0) y[e] = static_cast<float>(s[0]);
}

// Layout: dy [outer,inner], dx [outer,mid,inner].   dx[o,m,i] = alpha * dy[o,i]
__global__ void broadcast_mid_kernel(int64_t total, int64_t mid, int64_t inner, float alpha,
                                     const float* dy, float* dx) {
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t i = e % inner, o = e / (mid * inner);
    dx[e] = alpha * dy[o * inner + i];
  }
}

}  // namespace

void bias_add_fwd(int N, int C, int64_t HW, const float* x, const float* b, float* y,
                  cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(N) * C * HW;
  if (total <= 0) return;
  launch<bias_fwd_kernel<false>>(grid_for(total), kThreads, 0, stream, total, C, HW, x, b, y);
}

void bias_relu_fwd(int N, int C, int64_t HW, const float* x, const float* b, float* y,
                   cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(N) * C * HW;
  if (total <= 0) return;
  launch<bias_fwd_kernel<true>>(grid_for(total), kThreads, 0, stream, total, C, HW, x, b, y);
}

void bias_add_bwd(int N, int C, int64_t HW, const float* dy, float* db, cudaStream_t stream) {
  if (C <= 0) return;
  if (static_cast<int64_t>(N) * HW <= 0) return fill(C, 0.f, db, stream);
  launch<bias_bwd_kernel>(static_cast<unsigned>(C), kReduceThreads, 0, stream, N, C, HW, dy, db);
}

void relu_fwd(int64_t n, const float* x, float* y, cudaStream_t stream) {
  map<Op::Relu>(n, x, nullptr, 0.f, y, stream);
}
void relu_bwd(int64_t n, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  map<Op::ReluBwd>(n, y, dy, 0.f, dx, stream);
}
void sigmoid_fwd(int64_t n, const float* x, float* y, cudaStream_t stream) {
  map<Op::Sigmoid>(n, x, nullptr, 0.f, y, stream);
}
void sigmoid_bwd(int64_t n, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  map<Op::SigmoidBwd>(n, y, dy, 0.f, dx, stream);
}
void exp_fwd(int64_t n, const float* x, float* y, cudaStream_t stream) {
  map<Op::Exp>(n, x, nullptr, 0.f, y, stream);
}
void add(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream) {
  map<Op::Add>(n, a, b, 0.f, y, stream);
}
void sub(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream) {
  map<Op::Sub>(n, a, b, 0.f, y, stream);
}
void mul(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream) {
  map<Op::Mul>(n, a, b, 0.f, y, stream);
}
void scale(int64_t n, float alpha, const float* x, float* y, cudaStream_t stream) {
  map<Op::Scale>(n, x, nullptr, alpha, y, stream);
}
void axpy(int64_t n, float alpha, const float* x, float* y, cudaStream_t stream) {
  map<Op::Axpy>(n, x, nullptr, alpha, y, stream);
}
void fill(int64_t n, float value, float* y, cudaStream_t stream) {
  map<Op::Fill>(n, nullptr, nullptr, value, y, stream);
}

void sum_mid(int64_t outer, int64_t mid, int64_t inner, const float* x, float* y,
             cudaStream_t stream) {
  const int64_t outputs = outer * inner;
  if (outputs <= 0) return;
  if (mid <= 0) return fill(outputs, 0.f, y, stream);
  // Few outputs over a long mid: a block each (parallel over m); otherwise a
  // thread each (coalesced over i). Both sum in a fixed order.
  if (outputs < 2048 && mid >= 256 && outputs <= kMaxGrid) {
    launch<sum_mid_block_kernel>(static_cast<unsigned>(outputs), kReduceThreads, 0, stream, mid, inner, x, y);
  } else {
    launch<sum_mid_thread_kernel>(grid_for(outputs), kThreads, 0, stream, outer, mid, inner, x, y);
  }
}

void broadcast_mid(int64_t outer, int64_t mid, int64_t inner, float alpha, const float* dy,
                   float* dx, cudaStream_t stream) {
  const int64_t total = outer * mid * inner;
  if (total <= 0) return;
  launch<broadcast_mid_kernel>(grid_for(total), kThreads, 0, stream, total, mid, inner, alpha, dy, dx);
}

}  // namespace cvae::kernels::cuda
