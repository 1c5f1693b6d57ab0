// elementwise.cpp: CPU bias add, activations, arithmetic and the [outer,mid,inner]
// sum/broadcast of kernels/kernels.h. Plain loops for GCC to vectorize; OpenMP only
// for large n. Not here: GEMM/conv (gemm.cpp, conv.cpp), losses (loss.cpp).
// Reductions accumulate in double in a fixed order: bit-identical for any thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/plane_border.h"
#include "kernels/cpu/parallel.h"
#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

// Below this many elements a loop stays on one thread.
constexpr int64_t kParallelMin = int64_t{1} << 16;
// Columns of the inner extent summed at once by sum_mid (a stack accumulator).
constexpr int64_t kChunk = 256;

// sum_{i<n} x[i] in double, 8 interleaved partial sums combined in a fixed
// order (vectorizable, and independent of threads).
template <typename T>
double sum_contig(const T* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]);
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace

// y[n,c,hw] = x[n,c,hw] + b[c], then max(., 0) when Relu (NaN kept, as relu_fwd)
template <bool Relu, typename T>
void bias_fwd(int N, int C, int64_t HW, const T* x, const T* b, T* y) {
  const int64_t rows = static_cast<int64_t>(N) * C;
#pragma omp parallel for schedule(static) if (parallel_worth(rows * HW, kParallelMin))
  for (int64_t r = 0; r < rows; ++r) {
    const T bc = b[r % C];
    const T* xr = x + r * HW;
    T* yr = y + r * HW;
    for (int64_t i = 0; i < HW; ++i) {
      const T v = xr[i] + bc;
      yr[i] = Relu && v < T(0) ? T(0) : v;
    }
  }
}

template <typename T>
void bias_add_fwd(int N, int C, int64_t HW, const T* x, const T* b, T* y) {
  bias_fwd<false>(N, C, HW, x, b, y);
}

// the fused epilogue of a layer and its ReLU
template <typename T>
void bias_relu_fwd(int N, int C, int64_t HW, const T* x, const T* b, T* y) {
  bias_fwd<true>(N, C, HW, x, b, y);
}

// db[c] = sum_n sum_hw dy[n,c,hw]   (double accumulator, n outer, hw inner)
template <typename T>
void bias_add_bwd(int N, int C, int64_t HW, const T* dy, T* db) {
#pragma omp parallel for schedule(static) if (parallel_worth(static_cast<int64_t>(N) * C * HW, kParallelMin))
  for (int c = 0; c < C; ++c) {
    double s = 0;
    for (int n = 0; n < N; ++n) s += sum_contig(dy + (static_cast<int64_t>(n) * C + c) * HW, HW);
    db[c] = static_cast<T>(s);
  }
}

namespace {

// One [HW] row of dpre = dy * (y > 0) (y null: dy), written in place or, with a border,
// through a scratch row into its bordered plane (H x W); returns the row's sum_contig.
template <typename T>
double bias_act_bwd_row(int64_t row, int64_t HW, int H, int W, const PlaneBorder& b, int64_t plane,
                        const T* y, const T* dy, T* dpre, T* scratch) {
  const T* g = dy + row * HW;
  const T* v = g;  // the row's dpre values
  if (y) {
    T* out = b.any() ? scratch : dpre + row * HW;
    const T* yr = y + row * HW;
    for (int64_t i = 0; i < HW; ++i) {
      const T gi = g[i];  // loaded unconditionally, so that the select vectorizes
      out[i] = yr[i] > T(0) ? gi : T(0);
    }
    v = out;
  }
  if (b.any()) put_plane(H, W, b, v, dpre + row * plane);
  else if (v != dpre + row * HW)
    for (int64_t i = 0; i < HW; ++i) dpre[row * HW + i] = v[i];
  return sum_contig(v, HW);
}

// The one allocation of a kernel here: bias_act_bwd_row's scratch row, per thread, grown
// once (when needed: a border and a ReLU).
template <typename T>
T* row_scratch(int64_t HW, bool needed) {
  static thread_local std::vector<T> scratch;
  if (needed && int64_t(scratch.size()) < HW) scratch.resize(size_t(HW));
  return scratch.data();
}

// bias_act_bwd_row over [N, C] rows; db[c] = sum_n of the rows' sums, n in order (db null:
// not kept). Each thread takes a fixed share of the channels and walks its rows in memory
// order (images outer, in blocks of kChannelBlock channels), so that it streams.
constexpr int kChannelBlock = 256;
template <typename T>
void bias_act_bwd_rows(int N, int C, int64_t HW, int H, int W, const PlaneBorder& b, const T* y,
                       const T* dy, T* dpre, T* db) {
  const int64_t plane = int64_t(H + b.top + b.bottom) * (W + b.left + b.right);
#pragma omp parallel if (parallel_worth(static_cast<int64_t>(N) * C * HW, kParallelMin))
  {
    T* scratch = row_scratch<T>(HW, b.any() && y);
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int c_end = int(int64_t(C) * (t + 1) / nt);
    for (int c0 = int(int64_t(C) * t / nt); c0 < c_end; c0 += kChannelBlock) {
      const int c1 = std::min(c_end, c0 + kChannelBlock);
      double sums[kChannelBlock] = {};
      if (HW == 1 && !b.any()) {  // a dense layer: rows of one element (their sum_contig: it)
        // Straight-line loops that vectorize: the select and the sums of a row's channels
        // at once. With the test of y inside, the ReLU mask (random) became a branch,
        // mispredicted half the time: 0.17 ms a step at batch 32 for 50K elements.
        for (int64_t r = 0; r < int64_t(N) * C; r += C) {
          const T* g = dy + r;
          T* out = dpre + r;
          if (y) {
            const T* yr = y + r;
            for (int c = c0; c < c1; ++c) {
              const T gi = g[c];  // loaded unconditionally, so that the select vectorizes
              out[c] = yr[c] > T(0) ? gi : T(0);
            }
          } else if (out != g) {
            for (int c = c0; c < c1; ++c) out[c] = g[c];
          }
          for (int c = c0; c < c1; ++c) sums[c - c0] += static_cast<double>(out[c]);
        }
      } else {
        for (int n = 0; n < N; ++n)
          for (int c = c0; c < c1; ++c)
            sums[c - c0] += bias_act_bwd_row(int64_t(n) * C + c, HW, H, W, b, plane, y, dy, dpre, scratch);
      }
      if (db)
        for (int c = c0; c < c1; ++c) db[c] = static_cast<T>(sums[c - c0]);
    }
  }
}

}  // namespace

// dpre = dy * (y > 0); db[c] = sum_n sum_hw dpre[n,c,hw], in bias_add_bwd's order
template <typename T>
void bias_relu_bwd(int N, int C, int64_t HW, const T* y, const T* dy, T* dpre, T* db) {
  bias_act_bwd_rows(N, C, HW, 1, 1, PlaneBorder{}, y, dy, dpre, db);
}

template <typename T>
void bias_act_bwd_bordered(int N, int C, int H, int W, const PlaneBorder& b, const T* y,
                           const T* dy, T* dpre, T* db) {
  bias_act_bwd_rows(N, C, int64_t(H) * W, H, W, b, y, dy, dpre, db);
}

template <typename T>
void bias_act_bwd_bordered_image(int C, int H, int W, const PlaneBorder& b, const T* y,
                                 const T* dy, T* dpre, double* rowsum) {
  const int64_t HW = int64_t(H) * W, plane = int64_t(H + b.top + b.bottom) * (W + b.left + b.right);
  T* scratch = row_scratch<T>(HW, b.any() && y);
  for (int c = 0; c < C; ++c) rowsum[c] = bias_act_bwd_row(c, HW, H, W, b, plane, y, dy, dpre, scratch);
}

// bias_act_bwd_rows' order: each channel's row sums added image after image, from 0.
template <typename T>
void bias_sums_of_rows(int N, int C, const double* rowsum, T* db) {
  for (int c = 0; c < C; ++c) {
    double sum = 0;
    for (int n = 0; n < N; ++n) sum += rowsum[int64_t(n) * C + c];
    db[c] = static_cast<T>(sum);
  }
}

// y = max(x, 0)   (NaN propagates)
template <typename T>
void relu_fwd(int64_t n, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

// dx = dy * (y > 0)
template <typename T>
void relu_bwd(int64_t n, const T* y, const T* dy, T* dx) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) {
    const T g = dy[i];  // loaded unconditionally, so that the select vectorizes
    dx[i] = y[i] > T(0) ? g : T(0);
  }
}

// y = 1/(1+exp(-x)) for x >= 0, exp(x)/(1+exp(x)) otherwise (one exp(-|x|))
template <typename T>
void sigmoid_fwd(int64_t n, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) {
    const T xi = x[i];
    const T e = std::exp(-std::fabs(xi));
    const T r = T(1) / (T(1) + e);
    y[i] = xi >= T(0) ? r : e * r;
  }
}

// dx = dy * y * (1 - y)
template <typename T>
void sigmoid_bwd(int64_t n, const T* y, const T* dy, T* dx) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
}

// y = exp(x)
template <typename T>
void exp_fwd(int64_t n, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
}

// y = a + b
template <typename T>
void add(int64_t n, const T* a, const T* b, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

// y = a - b
template <typename T>
void sub(int64_t n, const T* a, const T* b, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] - b[i];
}

// y = a * b
template <typename T>
void mul(int64_t n, const T* a, const T* b, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] * b[i];
}

// y = alpha * x
template <typename T>
void scale(int64_t n, T alpha, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
}

// y += alpha * x
template <typename T>
void axpy(int64_t n, T alpha, const T* x, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// y = value
template <typename T>
void fill(int64_t n, T value, T* y) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) y[i] = value;
}

// y[o,i] = sum_m x[o,m,i]   (double accumulators, m in increasing order per column
// when inner > 1; 8 interleaved partial sums when inner == 1)
template <typename T>
void sum_mid(int64_t outer, int64_t mid, int64_t inner, const T* x, T* y) {
  if (inner == 1) {
#pragma omp parallel for schedule(static) if (parallel_worth(outer * mid, kParallelMin))
    for (int64_t o = 0; o < outer; ++o) y[o] = static_cast<T>(sum_contig(x + o * mid, mid));
    return;
  }
  const int64_t chunks = (inner + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (parallel_worth(outer * mid * inner, kParallelMin))
  for (int64_t oc = 0; oc < outer * chunks; ++oc) {
    const int64_t o = oc / chunks;
    const int64_t i0 = (oc % chunks) * kChunk;
    const int64_t len = std::min(kChunk, inner - i0);
    double acc[kChunk];
    for (int64_t i = 0; i < len; ++i) acc[i] = 0;
    for (int64_t m = 0; m < mid; ++m) {
      const T* xr = x + (o * mid + m) * inner + i0;
      for (int64_t i = 0; i < len; ++i) acc[i] += static_cast<double>(xr[i]);
    }
    T* yr = y + o * inner + i0;
    for (int64_t i = 0; i < len; ++i) yr[i] = static_cast<T>(acc[i]);
  }
}

// dx[o,m,i] = alpha * dy[o,i]
template <typename T>
void broadcast_mid(int64_t outer, int64_t mid, int64_t inner, T alpha, const T* dy, T* dx) {
#pragma omp parallel for schedule(static) if (parallel_worth(outer * mid * inner, kParallelMin))
  for (int64_t om = 0; om < outer * mid; ++om) {
    const T* dyr = dy + (om / mid) * inner;
    T* dxr = dx + om * inner;
    for (int64_t i = 0; i < inner; ++i) dxr[i] = alpha * dyr[i];
  }
}

#define CVAE_INSTANTIATE(T)                                                          \
  template void bias_add_fwd<T>(int, int, int64_t, const T*, const T*, T*);          \
  template void bias_relu_fwd<T>(int, int, int64_t, const T*, const T*, T*);         \
  template void bias_add_bwd<T>(int, int, int64_t, const T*, T*);                    \
  template void relu_fwd<T>(int64_t, const T*, T*);                                  \
  template void relu_bwd<T>(int64_t, const T*, const T*, T*);                        \
  template void bias_relu_bwd<T>(int, int, int64_t, const T*, const T*, T*, T*);     \
  template void bias_act_bwd_bordered<T>(int, int, int, int, const PlaneBorder&, const T*, \
                                         const T*, T*, T*);                          \
  template void bias_act_bwd_bordered_image<T>(int, int, int, const PlaneBorder&, const T*, \
                                               const T*, T*, double*);               \
  template void bias_sums_of_rows<T>(int, int, const double*, T*);                   \
  template void sigmoid_fwd<T>(int64_t, const T*, T*);                               \
  template void sigmoid_bwd<T>(int64_t, const T*, const T*, T*);                     \
  template void exp_fwd<T>(int64_t, const T*, T*);                                   \
  template void add<T>(int64_t, const T*, const T*, T*);                             \
  template void sub<T>(int64_t, const T*, const T*, T*);                             \
  template void mul<T>(int64_t, const T*, const T*, T*);                             \
  template void scale<T>(int64_t, T, const T*, T*);                                  \
  template void axpy<T>(int64_t, T, const T*, T*);                                   \
  template void fill<T>(int64_t, T, T*);                                             \
  template void sum_mid<T>(int64_t, int64_t, int64_t, const T*, T*);                 \
  template void broadcast_mid<T>(int64_t, int64_t, int64_t, T, const T*, T*);
CVAE_INSTANTIATE(float)
CVAE_INSTANTIATE(double)
#undef CVAE_INSTANTIATE

}  // namespace cvae::kernels::cpu
