// elementwise.cu: CUDA bias add (+ReLU) and its gradients, activations, arithmetic, the
// [outer,mid,inner] sum/broadcast (the twins of kernels/cpu/elementwise.cpp), and the
// column split of a matrix and a ring log of scalars. Grid-stride loops with 64-bit
// indices; reductions in double, fixed order, no float atomics.
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

// Layout: y, dy, dpre [N,C,HW]; grid (chunks, C): block (j, c) reduces elements
// [j*len, (j+1)*len) of channel c's N*HW (element e is n = e / HW, hw = e % HW).
// dpre = dy * (y > 0) (Relu; else dpre is not written);  db[c] = sum_{n,hw} dpre (or dy)
// Thread t sums the block's elements t, t+256, ... in double, a fixed tree adds the
// threads, the block's sum goes to partial[c*chunks + j]; the channel's last block adds
// its chunks' sums in j order.
template <bool Relu>
__global__ void bias_grad_kernel(int N, int C, int64_t HW, int64_t len, const float* y, const float* dy,
                                 float* dpre, double* partial, unsigned* counters, float* db) {
  __shared__ double s[kReduceThreads];
  const int c = blockIdx.y, chunks = static_cast<int>(gridDim.x), j = blockIdx.x;
  const int64_t count = static_cast<int64_t>(N) * HW;
  const int64_t end = (j + 1) * len < count ? (j + 1) * len : count;
  double acc = 0;
  for (int64_t e = j * len + threadIdx.x; e < end; e += kReduceThreads) {
    const int64_t n = e / HW, at = (n * C + c) * HW + (e - n * HW);
    float g = dy[at];
    if (Relu) {
      g = y[at] > 0.f ? g : 0.f;
      dpre[at] = g;
    }
    acc += static_cast<double>(g);
  }
  s[threadIdx.x] = acc;
  block_tree_sum(s);
  if (chunks == 1) {
    if (threadIdx.x == 0) db[c] = static_cast<float>(s[0]);
    return;
  }
  if (threadIdx.x == 0) partial[static_cast<int64_t>(c) * chunks + j] = s[0];
  if (!last_block_arrives(&counters[c], static_cast<unsigned>(chunks))) return;
  if (threadIdx.x == 0) {
    const volatile double* p = partial + static_cast<int64_t>(c) * chunks;
    double sum = 0;
    for (int k = 0; k < chunks; ++k) sum += p[k];
    db[c] = static_cast<float>(sum);
  }
}

// Layout: dense layers, y, dy, dpre [N,C] (HW = 1); grid (ceil(C/256), row chunks):
// thread t of block (b, j) owns channel c = 256 b + t and sums rows [j*rows, (j+1)*rows)
// in order (coalesced over c). db[c] = sum_n dpre[n,c] (Relu: dpre = dy * (y > 0)).
// With several row chunks the channel block's last block adds their sums in j order.
template <bool Relu>
__global__ void bias_grad_dense_kernel(int N, int C, int rows, const float* y, const float* dy, float* dpre,
                                       double* partial, unsigned* counters, float* db) {
  const int c = static_cast<int>(blockIdx.x) * kReduceThreads + static_cast<int>(threadIdx.x);
  const int chunks = static_cast<int>(gridDim.y), j = blockIdx.y;
  double acc = 0;
  if (c < C) {
    const int end = min(N, (j + 1) * rows);
    for (int n = j * rows; n < end; ++n) {
      const int64_t at = static_cast<int64_t>(n) * C + c;
      float g = dy[at];
      if (Relu) {
        g = y[at] > 0.f ? g : 0.f;
        dpre[at] = g;
      }
      acc += static_cast<double>(g);
    }
  }
  if (chunks == 1) {
    if (c < C) db[c] = static_cast<float>(acc);
    return;
  }
  if (c < C) partial[static_cast<int64_t>(c) * chunks + j] = acc;
  if (!last_block_arrives(&counters[blockIdx.x], static_cast<unsigned>(chunks))) return;
  if (c < C) {
    const volatile double* p = partial + static_cast<int64_t>(c) * chunks;
    double sum = 0;
    for (int k = 0; k < chunks; ++k) sum += p[k];
    db[c] = static_cast<float>(sum);
  }
}

// Elements of one channel per block, and rows per block for dense layers: enough blocks
// to fill the GPU at the CVAE's shapes (deconv3's 78,400-element channel: 77 blocks).
constexpr int64_t kBiasChunk = 1024;
constexpr int kBiasDenseRows = 32;

template <bool Relu>
void bias_grad(int N, int C, int64_t HW, const float* y, const float* dy, float* dpre, float* db,
               cudaStream_t stream) {
  const int64_t count = static_cast<int64_t>(N) * HW;
  if (HW == 1) {
    const unsigned cblocks = static_cast<unsigned>((C + kReduceThreads - 1) / kReduceThreads);
    const int chunks = (N + kBiasDenseRows - 1) / kBiasDenseRows;
    if (chunks > 65535) throw std::invalid_argument("bias gradient: too many rows");
    double* partial = reinterpret_cast<double*>(detail::partials(stream, 2 * static_cast<size_t>(C) * chunks));
    unsigned* counters = detail::arrival_counters(stream, static_cast<int>(cblocks));
    launch<bias_grad_dense_kernel<Relu>>(dim3(cblocks, static_cast<unsigned>(chunks)), kReduceThreads, 0, stream,
                                         N, C, kBiasDenseRows, y, dy, dpre, partial, counters, db);
    return;
  }
  const int64_t chunks = (count + kBiasChunk - 1) / kBiasChunk;
  if (chunks > 2147483647 || C > 65535) throw std::invalid_argument("bias gradient: tensor too large");
  double* partial = reinterpret_cast<double*>(detail::partials(stream, 2 * static_cast<size_t>(C) * chunks));
  unsigned* counters = detail::arrival_counters(stream, C);
  launch<bias_grad_kernel<Relu>>(dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(C)), kReduceThreads,
                                 0, stream, N, C, HW, kBiasChunk, y, dy, dpre, partial, counters, db);
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

// The pieces of split_cols, by value (CUDA copies a launch's arguments).
struct Pieces {
  ColumnPiece p[kMaxColumnPieces];
  int count;
};

// Layout: x [rows, cols] -> piece q [rows, width_q]; one thread per element of x.
// piece_q[n, c - offset_q] = x[n, c] for the piece whose columns hold c (none: skipped)
__global__ void split_cols_kernel(int64_t rows, int64_t cols, const float* x, Pieces pieces) {
  const int64_t total = rows * cols;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t n = e / cols, c = e - n * cols;
    for (int q = 0; q < pieces.count; ++q) {
      const ColumnPiece& p = pieces.p[q];
      if (c >= p.offset && c < p.offset + p.width) {
        p.data[n * p.width + (c - p.offset)] = x[e];
        break;
      }
    }
  }
}

// Layout: dy [rows, width], dx [rows, cols]; write: one thread per element of dx,
// dx[n, c] = c in [offset, offset+width) ? dy[n, c - offset] : 0.
__global__ void place_cols_kernel(int64_t rows, int64_t cols, int64_t offset, int64_t width,
                                  const float* dy, float* dx) {
  const int64_t total = rows * cols;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t n = e / cols, c = e - n * cols;
    dx[e] = c >= offset && c < offset + width ? dy[n * width + (c - offset)] : 0.f;
  }
}

// Layout as above, accumulate: one thread per element of dy.   dx[n, offset + j] += dy[n, j]
__global__ void add_cols_kernel(int64_t rows, int64_t cols, int64_t offset, int64_t width, const float* dy,
                                float* dx) {
  const int64_t total = rows * width;
  for (int64_t e = first_index(); e < total; e += grid_stride()) {
    const int64_t n = e / width, j = e - n * width;
    dx[n * cols + offset + j] += dy[e];
  }
}

// Layout: one thread.   ring[*count % capacity] = *value; *count += 1
__global__ void append_to_ring_kernel(const float* value, float* ring, int64_t capacity, int64_t* count) {
  const int64_t k = *count;
  ring[k % capacity] = *value;
  *count = k + 1;
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
  bias_grad<false>(N, C, HW, nullptr, dy, nullptr, db, stream);
}

void bias_relu_bwd(int N, int C, int64_t HW, const float* y, const float* dy, float* dpre, float* db,
                   cudaStream_t stream) {
  if (C <= 0) return;
  if (static_cast<int64_t>(N) * HW <= 0) return fill(C, 0.f, db, stream);
  bias_grad<true>(N, C, HW, y, dy, dpre, db, stream);
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

void split_cols(int64_t rows, int64_t cols, const float* x, const ColumnPiece* pieces, int count,
                cudaStream_t stream) {
  if (count < 0 || count > kMaxColumnPieces)
    throw std::invalid_argument("split_cols: at most " + std::to_string(kMaxColumnPieces) + " pieces");
  Pieces p{};
  for (int q = 0; q < count; ++q) {
    if (pieces[q].offset < 0 || pieces[q].width < 0 || pieces[q].offset + pieces[q].width > cols)
      throw std::invalid_argument("split_cols: a piece outside the matrix's columns");
    p.p[q] = pieces[q];
  }
  p.count = count;
  const int64_t total = rows * cols;
  if (total <= 0 || count == 0) return;
  launch<split_cols_kernel>(grid_for(total), kThreads, 0, stream, rows, cols, x, p);
}

void place_cols(int64_t rows, int64_t cols, int64_t offset, int64_t width, const float* dy, float* dx,
                bool accumulate, cudaStream_t stream) {
  if (offset < 0 || width < 0 || offset + width > cols)
    throw std::invalid_argument("place_cols: columns outside the matrix");
  if (accumulate) {
    if (rows * width > 0)
      launch<add_cols_kernel>(grid_for(rows * width), kThreads, 0, stream, rows, cols, offset, width, dy, dx);
  } else if (rows * cols > 0) {
    launch<place_cols_kernel>(grid_for(rows * cols), kThreads, 0, stream, rows, cols, offset, width, dy, dx);
  }
}

void append_to_ring(const float* value, float* ring, int64_t capacity, int64_t* count, cudaStream_t stream) {
  if (capacity <= 0) throw std::invalid_argument("append_to_ring: capacity must be positive");
  launch<append_to_ring_kernel>(1, 1, 0, stream, value, ring, capacity, count);
}

}  // namespace cvae::kernels::cuda
