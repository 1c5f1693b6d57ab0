// conv_thin_core.h: the one-channel convolution kernels (conv_thin.h says what and why),
// compiled once per ISA. A conv_thin_<isa>.cpp defines CVAE_THIN_NS and, in it, the
// vector width, then includes this file; nothing else may include it. Only GCC vector
// extensions (the -m flags of the file choose the instructions), functions of this
// namespace and simd.h's (every file keeps its own copy): nothing inline is shared with
// the baseline code.
#include <cstring>

#include "kernels/cpu/conv_thin.h"
#include "kernels/cpu/simd.h"

namespace cvae::kernels::cpu::CVAE_THIN_NS {
namespace {

template <typename T>
struct Vec : SimdVec<T, kVectorBytes> {
  // Output channels summed at once by fprop: independent chains for the FMA pipes,
  // within the registers (the taps' 9 vectors stay in registers too).
  static constexpr int KB = kVectorBytes == 64 ? 8 : 4;
};

// dst[i] = src[i], i < n, in whole vectors: rows are short (13 to 28 elements), and a
// compiled loop's prologue and remainder cost as much as the copy. When n >= L the last
// vector ends at n, overlapping the one before.
template <typename T>
inline void copy_row(T* dst, const T* src, int n) {
  typedef typename Vec<T>::V V;
  constexpr int L = Vec<T>::L;
  if (n < L) {
    for (int i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  int i = 0;
  for (; i + L <= n; i += L) store(dst + i, load<V>(src + i));
  if (i < n) store(dst + n - L, load<V>(src + n - L));
}

// dst[i] = 0, i < n, in whole vectors where they fit (not a memset call per border).
template <typename T>
inline void zero_row(T* dst, int64_t n) {
  typedef typename Vec<T>::V V;
  constexpr int L = Vec<T>::L;
  int64_t i = 0;
  for (; i + L <= n; i += L) store(dst + i, V{});
  for (; i < n; ++i) dst[i] = T(0);
}

// dy's plane [P, Q] into dst with the plan's zero border (rows of Qp), zeros after it up
// to pl.plane: the slack is read only for the dropped columns, but must be numbers.
// put_plane's layout (plane_border.h), which this per-ISA file may not instantiate (see
// the top), with whole-vector row copies.
template <typename T>
void border_plane(const ThinPlan& pl, int P, int Q, const T* src, T* dst) {
  const int top = pl.border.top, left = pl.border.left, right = pl.border.right;
  zero_row(dst, int64_t(top) * pl.Qp);
  for (int p = 0; p < P; ++p) {
    T* row = dst + int64_t(p + top) * pl.Qp;
    for (int i = 0; i < left; ++i) row[i] = T(0);
    copy_row(row + left, src + int64_t(p) * Q, Q);
    for (int i = 0; i < right; ++i) row[left + Q + i] = T(0);
  }
  const int64_t end = int64_t(P + top) * pl.Qp;
  zero_row(dst + end, pl.plane - end);
}

// col[t][j] for output positions j = (p - p0)*Q + q of rows [p0, p0 + rows), tap t = (r, s):
// the image pixel x[p*sh - ph + r][q*sw - pw + s], zero outside the image and past rows*Q.
template <typename T>
void build_columns(const ThinPlan& pl, const Conv2dShape& s, const T* x, int p0, int rows,
                   T* col) {
  for (int r = 0; r < s.R; ++r)
    for (int c = 0; c < s.S; ++c) {
      T* dst = col + int64_t(r * s.S + c) * pl.ld;
      // q with 0 <= q*sw - pw + c < W: [q_lo, q_hi)
      const int lo_num = s.pad_w - c;
      const int q_lo = imin(s.Q, lo_num <= 0 ? 0 : (lo_num + s.stride_w - 1) / s.stride_w);
      const int hi_num = s.W - 1 + s.pad_w - c;
      const int q_hi = imax(q_lo, imin(s.Q, hi_num < 0 ? 0 : hi_num / s.stride_w + 1));
      for (int i = 0; i < rows; ++i, dst += s.Q) {
        const int h = (p0 + i) * s.stride_h - s.pad_h + r;
        if (h < 0 || h >= s.H) {
          for (int q = 0; q < s.Q; ++q) dst[q] = T(0);
          continue;
        }
        const T* src = x + int64_t(h) * s.W + (c - s.pad_w);
        for (int q = 0; q < q_lo; ++q) dst[q] = T(0);
        if (s.stride_w == 1)
          copy_row(dst + q_lo, src + q_lo, q_hi - q_lo);
        else
          for (int q = q_lo; q < q_hi; ++q) dst[q] = src[int64_t(q) * s.stride_w];
        for (int q = q_hi; q < s.Q; ++q) dst[q] = T(0);
      }
      for (int j = rows * s.Q; j < pl.ld; ++j) col[int64_t(r * s.S + c) * pl.ld + j] = T(0);
    }
}

// y[k][j] = act(sum_t w[k][t] col[t][j] + bias[k]) for j < n, kb channels from k0.
template <typename T, int KB>
inline void fprop_vector(const typename Vec<T>::V* c, const T* w, const T* bias, bool relu,
                         int k0, int64_t pq, T* y, int n) {
  typedef typename Vec<T>::V V;
  V a[KB];
  for (int j = 0; j < KB; ++j) a[j] = c[0] * w[(k0 + j) * kThinTaps];
  for (int t = 1; t < kThinTaps; ++t)
    for (int j = 0; j < KB; ++j) a[j] += c[t] * w[(k0 + j) * kThinTaps + t];
  for (int j = 0; j < KB; ++j) {
    V v = bias ? a[j] + bias[k0 + j] : a[j];
    if (relu) v = relu_v(v);
    T* dst = y + (k0 + j) * pq;
    if (n == Vec<T>::L) store(dst, v);
    else store_part(dst, v, n);
  }
}

template <typename T>
void fprop_image(const ThinPlan& pl, const Conv2dShape& s, const T* x, const T* w,
                 const T* bias, bool relu, T* y, T* col) {
  typedef typename Vec<T>::V V;
  constexpr int L = Vec<T>::L, KB = Vec<T>::KB;
  const int64_t pq = int64_t(s.P) * s.Q;
  for (int p0 = 0; p0 < s.P; p0 += pl.rows) {
    const int rows = imin(pl.rows, s.P - p0), len = rows * s.Q;
    build_columns(pl, s, x, p0, rows, col);
    T* yc = y + int64_t(p0) * s.Q;
    for (int j = 0; j < len; j += L) {
      V c[kThinTaps];
      for (int t = 0; t < kThinTaps; ++t) c[t] = load<V>(col + int64_t(t) * pl.ld + j);
      const int n = imin(L, len - j);
      int k = 0;
      for (; k + KB <= s.K; k += KB) fprop_vector<T, KB>(c, w, bias, relu, k, pq, yc + j, n);
      for (; k < s.K; ++k) fprop_vector<T, 1>(c, w, bias, relu, k, pq, yc + j, n);
    }
  }
}

// sum at rows m < kThinDgradRows (Qp apart) and CV vectors from sum += over planes
// j < kb and taps (r, c): w[j][r][c] * plane_j[that position + base - r*Qp - c]. Output
// row m with tap r reads the plane's row u = m - r + 2 of `in` (at base - 2*Qp): each of
// the RB + 2 rows' three shifted loads serves up to three output rows.
template <typename T, int CV>
inline void dgrad_band(const ThinPlan& pl, const T* in, int kb, const T* w, bool first, T* sum) {
  typedef typename Vec<T>::V V;
  constexpr int L = Vec<T>::L, RB = kThinDgradRows;
  const int64_t Qp = pl.Qp;
  V a[RB][CV];
  for (int m = 0; m < RB; ++m)
    for (int i = 0; i < CV; ++i) a[m][i] = first ? V{} : load<V>(sum + m * Qp + i * L);
  for (int j = 0; j < kb; ++j) {
    const T* pj = in + j * pl.plane;
    const T* wj = w + j * kThinTaps;
    // unrolled whole, so that the accumulators stay in registers and the m tests vanish
#pragma GCC unroll 8
    for (int u = 0; u < RB + 2; ++u)
#pragma GCC unroll 3
      for (int c = 0; c < 3; ++c) {
        V x[CV];
        for (int i = 0; i < CV; ++i) x[i] = load<V>(pj + u * Qp - c + i * L);
#pragma GCC unroll 3
        for (int r = 0; r < 3; ++r) {
          const int m = u + r - 2;
          if (m < 0 || m >= RB) continue;
          for (int i = 0; i < CV; ++i) a[m][i] += x[i] * wj[r * 3 + c];
        }
      }
  }
  for (int m = 0; m < RB; ++m)
    for (int i = 0; i < CV; ++i) store(sum + m * Qp + i * L, a[m][i]);
}

// Stride 1. dx[h][w] = act(sum_k sum_(r,s) w[k][r][s] dy[k][h + ph - r][w + pw - s] + b),
// summed at sum[h*Qp + w] over whole bordered rows, in bands of kThinDgradRows rows (the
// columns past W and rows past H are summed and dropped); dy's planes bordered
// kThinDgradPlanes at a time.
template <typename T>
void dgrad_image(const ThinPlan& pl, const Conv2dShape& s, const T* dy, const T* w,
                 const T* bias, bool relu, T* dx, T* scratch) {
  constexpr int L = Vec<T>::L, CV = 2;
  T* sum = scratch;
  T* planes = scratch + pl.acc;
  const int64_t pq = int64_t(s.P) * s.Q;
  for (int k0 = 0; k0 < s.K; k0 += kThinDgradPlanes) {
    const int kb = imin(kThinDgradPlanes, s.K - k0);
    for (int j = 0; j < kb; ++j)
      border_plane(pl, s.P, s.Q, dy + (k0 + j) * pq, planes + j * pl.plane);
    const T* wk = w + int64_t(k0) * kThinTaps;
    for (int h0 = 0; h0 < pl.rows_acc; h0 += kThinDgradRows) {
      const int64_t row = int64_t(h0) * pl.Qp;
      const T* in = planes + pl.base + row - 2 * int64_t(pl.Qp);
      int c = 0;
      for (; c + CV * L <= pl.Qp; c += CV * L)
        dgrad_band<T, CV>(pl, in + c, kb, wk, k0 == 0, sum + row + c);
      for (; c < pl.Qp; c += L) dgrad_band<T, 1>(pl, in + c, kb, wk, k0 == 0, sum + row + c);
    }
  }
  const T b = bias ? bias[0] : T(0);
  for (int h = 0; h < s.H; ++h)
    for (int x = 0; x < s.W; ++x) {
      T v = sum[int64_t(h) * pl.Qp + x];
      if (bias) v += b;
      dx[int64_t(h) * s.W + x] = relu && v < T(0) ? T(0) : v;
    }
}

// acc[t] += d * col[t][j .. j+L) for the 9 taps: one output channel's vector of dy.
template <typename T>
inline void wgrad_vector(typename Vec<T>::V d, const T* col, int64_t ld,
                         typename Vec<T>::V* acc) {
  typedef typename Vec<T>::V V;
  for (int t = 0; t < kThinTaps; ++t) acc[t] += d * load<V>(col + t * ld);
}

// dw[k][t] = sum over images [n0, n1) and positions j of dy[n][k][j] col_n[t][j]: each
// (k, t) summed lane-wise in a vector over the slot, the lanes added in order at the end.
template <typename T>
void wgrad_images(const ThinPlan& pl, const Conv2dShape& s, const T* x, const T* dy, int n0,
                  int n1, T* dw, T* scratch) {
  typedef typename Vec<T>::V V;
  constexpr int L = Vec<T>::L;
  T* col = scratch;
  T* acc = scratch + int64_t(kThinTaps) * pl.ld;  // [K][taps] vectors
  for (int64_t i = 0; i < int64_t(s.K) * kThinTaps * L; ++i) acc[i] = T(0);
  const int64_t hw = int64_t(s.H) * s.W, pq = int64_t(s.P) * s.Q;
  for (int n = n0; n < n1; ++n)
    for (int p0 = 0; p0 < s.P; p0 += pl.rows) {
      const int rows = imin(pl.rows, s.P - p0), len = rows * s.Q;
      build_columns(pl, s, x + n * hw, p0, rows, col);
      for (int k = 0; k < s.K; ++k) {
        const T* d = dy + (int64_t(n) * s.K + k) * pq + int64_t(p0) * s.Q;
        V a[kThinTaps];
        T* ak = acc + int64_t(k) * kThinTaps * L;
        for (int t = 0; t < kThinTaps; ++t) a[t] = load<V>(ak + t * L);
        int j = 0;
        for (; j + L <= len; j += L) wgrad_vector<T>(load<V>(d + j), col + j, pl.ld, a);
        if (j < len) wgrad_vector<T>(load_part<V>(d + j, len - j), col + j, pl.ld, a);
        for (int t = 0; t < kThinTaps; ++t) store(ak + t * L, a[t]);
      }
    }
  for (int i = 0; i < s.K * kThinTaps; ++i) {
    const T* lanes = acc + int64_t(i) * L;
    T total = lanes[0];
    for (int l = 1; l < L; ++l) total += lanes[l];
    dw[i] = total;
  }
}

}  // namespace

#define CVAE_THIN_DEFINE(T)                                                                   \
  void thin_fprop_image(const ThinPlan& pl, const Conv2dShape& s, const T* x, const T* w,      \
                        const T* bias, bool relu, T* y, T* scratch) {                         \
    fprop_image<T>(pl, s, x, w, bias, relu, y, scratch);                                      \
  }                                                                                           \
  void thin_dgrad_image(const ThinPlan& pl, const Conv2dShape& s, const T* dy, const T* w,     \
                        const T* bias, bool relu, T* dx, T* scratch) {                        \
    dgrad_image<T>(pl, s, dy, w, bias, relu, dx, scratch);                                    \
  }                                                                                           \
  void thin_wgrad_images(const ThinPlan& pl, const Conv2dShape& s, const T* x, const T* dy,    \
                         int n0, int n1, T* dw, T* scratch) {                                 \
    wgrad_images<T>(pl, s, x, dy, n0, n1, dw, scratch);                                       \
  }
CVAE_THIN_DEFINE(float)
CVAE_THIN_DEFINE(double)
#undef CVAE_THIN_DEFINE

}  // namespace cvae::kernels::cpu::CVAE_THIN_NS
