// conv2d.cpp: CPU Conv2d fprop / dgrad / wgrad (NCHW) as im2col or col2im + the gemm.
// The batch is split into conv2d_batch_slots() contiguous ranges run under OpenMP, each
// with its own columns in the caller's workspace. No bias or activation fused here.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

int64_t crs_of(const Conv2dShape& s) { return (int64_t)s.C * s.R * s.S; }
int64_t pq_of(const Conv2dShape& s) { return (int64_t)s.P * s.Q; }

// Output positions o in [lo, hi) read input o*stride - pad + tap inside [0, size).
void valid_range(int out, int stride, int pad, int tap, int size, int* lo, int* hi) {
  int off = tap - pad;  // input index = o*stride + off
  *lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
  *hi = off >= size ? 0 : std::min(out, (size - 1 - off) / stride + 1);
  if (*hi < *lo) *hi = *lo;
}

// col[(c,r,s), (p,q)] = x[c, p*sh - ph + r, q*sw - pw + s]  (zero outside)
template <typename T>
void im2col(const Conv2dShape& s, const T* x, T* col) {
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t, col += pq_of(s)) {
        int p0, p1, q0, q1;
        valid_range(s.P, s.stride_h, s.pad_h, r, s.H, &p0, &p1);
        valid_range(s.Q, s.stride_w, s.pad_w, t, s.W, &q0, &q1);
        std::fill(col, col + pq_of(s), T(0));
        for (int p = p0; p < p1; ++p) {
          const T* xr = x + ((int64_t)c * s.H + p * s.stride_h - s.pad_h + r) * s.W;
          T* cr = col + (int64_t)p * s.Q;
          for (int q = q0; q < q1; ++q) cr[q] = xr[q * s.stride_w - s.pad_w + t];
        }
      }
}

// x[c, p*sh - ph + r, q*sw - pw + s] += col[(c,r,s), (p,q)]   (x zeroed first)
template <typename T>
void col2im(const Conv2dShape& s, const T* col, T* x) {
  std::fill(x, x + (int64_t)s.C * s.H * s.W, T(0));
  for (int c = 0; c < s.C; ++c)
    for (int r = 0; r < s.R; ++r)
      for (int t = 0; t < s.S; ++t, col += pq_of(s)) {
        int p0, p1, q0, q1;
        valid_range(s.P, s.stride_h, s.pad_h, r, s.H, &p0, &p1);
        valid_range(s.Q, s.stride_w, s.pad_w, t, s.W, &q0, &q1);
        for (int p = p0; p < p1; ++p) {
          T* xr = x + ((int64_t)c * s.H + p * s.stride_h - s.pad_h + r) * s.W;
          const T* cr = col + (int64_t)p * s.Q;
          for (int q = q0; q < q1; ++q) xr[q * s.stride_w - s.pad_w + t] += cr[q];
        }
      }
}

// A 1x1, stride-1, unpadded conv needs no columns: x itself is the column matrix.
bool is_pointwise(const Conv2dShape& s) {
  return s.R == 1 && s.S == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
         s.pad_w == 0 && s.P == s.H && s.Q == s.W;
}

void check_shape(const Conv2dShape& s) {
  bool ok = s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.K >= 1 && s.R >= 1 && s.S >= 1;
  ok = ok && s.P >= 1 && s.Q >= 1 && s.stride_h >= 1 && s.stride_w >= 1;
  ok = ok && s.pad_h >= 0 && s.pad_w >= 0;
  if (!ok) throw std::invalid_argument("conv2d: invalid Conv2dShape");
}

// Runs body(slot, n_begin, n_end) for each batch slot, slots spread over the threads.
template <typename F>
void for_each_slot(const Conv2dShape& s, F body) {
  const int slots = conv2d_batch_slots(s);
  const int threads = std::min(slots, omp_in_parallel() ? 1 : omp_get_max_threads());
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int k = 0; k < slots; ++k) {
    int64_t n0 = (int64_t)s.N * k / slots, n1 = (int64_t)s.N * (k + 1) / slots;
    body(k, (int)n0, (int)n1);
  }
}

}  // namespace

// y[n,k,p,q] = sum_{c,r,s} x[n,c,p*sh-ph+r,q*sw-pw+s] * w[k,c,r,s]
template <typename T>
void conv2d_fprop(const Conv2dShape& s, const T* x, const T* w, T* y, T* workspace) {
  check_shape(s);
  const int64_t crs = crs_of(s), pq = pq_of(s), chw = (int64_t)s.C * s.H * s.W;
  for_each_slot(s, [&](int slot, int n0, int n1) {
    T* col = workspace + slot * crs * pq;
    for (int n = n0; n < n1; ++n) {
      const T* b = x + n * chw;
      if (!is_pointwise(s)) {
        im2col(s, b, col);
        b = col;
      }
      gemm<T>(false, false, s.K, (int)pq, (int)crs, T(1), w, (int)crs, b, (int)pq, T(0),
              y + n * s.K * pq, (int)pq);
    }
  });
}

// dx[n,c,h,w] = sum_{k,p,q,r,s : p*sh-ph+r=h, q*sw-pw+s=w} dy[n,k,p,q] * w[k,c,r,s]
template <typename T>
void conv2d_dgrad(const Conv2dShape& s, const T* dy, const T* w, T* dx, T* workspace) {
  check_shape(s);
  const int64_t crs = crs_of(s), pq = pq_of(s), chw = (int64_t)s.C * s.H * s.W;
  for_each_slot(s, [&](int slot, int n0, int n1) {
    T* col = workspace + slot * crs * pq;
    for (int n = n0; n < n1; ++n) {
      T* out = is_pointwise(s) ? dx + n * chw : col;
      gemm<T>(true, false, (int)crs, (int)pq, s.K, T(1), w, (int)crs, dy + n * s.K * pq,
              (int)pq, T(0), out, (int)pq);
      if (!is_pointwise(s)) col2im(s, col, dx + n * chw);
    }
  });
}

// dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n,c,p*sh-ph+r,q*sw-pw+s]
// Slot k sums its images into its own partial (slot 0: dw itself); partials are then
// added in slot order, so the result does not depend on the thread count.
template <typename T>
void conv2d_wgrad(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* workspace) {
  check_shape(s);
  const int64_t crs = crs_of(s), pq = pq_of(s), chw = (int64_t)s.C * s.H * s.W;
  const int64_t kcrs = s.K * crs, slots = conv2d_batch_slots(s);
  T* partials = workspace + slots * crs * pq;  // slots-1 of K*C*R*S
  for_each_slot(s, [&](int slot, int n0, int n1) {
    T* col = workspace + slot * crs * pq;
    T* acc = slot == 0 ? dw : partials + (slot - 1) * kcrs;
    for (int n = n0; n < n1; ++n) {
      const T* b = x + n * chw;
      if (!is_pointwise(s)) {
        im2col(s, b, col);
        b = col;
      }
      gemm<T>(false, true, s.K, (int)crs, (int)pq, T(1), dy + n * s.K * pq, (int)pq, b,
              (int)pq, n == n0 ? T(0) : T(1), acc, (int)crs);
    }
  });
  for (int64_t k = 1; k < slots; ++k)
    for (int64_t i = 0; i < kcrs; ++i) dw[i] += partials[(k - 1) * kcrs + i];
}

#define CVAE_INSTANTIATE_CONV(T)                                                         \
  template void conv2d_fprop<T>(const Conv2dShape&, const T*, const T*, T*, T*);         \
  template void conv2d_dgrad<T>(const Conv2dShape&, const T*, const T*, T*, T*);         \
  template void conv2d_wgrad<T>(const Conv2dShape&, const T*, const T*, T*, T*);
CVAE_INSTANTIATE_CONV(float)
CVAE_INSTANTIATE_CONV(double)
#undef CVAE_INSTANTIATE_CONV

}  // namespace cvae::kernels::cpu
