// conv2d.cpp: CPU Conv2d fprop / dgrad / wgrad (NCHW), each pass one GEMM over views of
// the tensors themselves (gemm_views.h): im2col happens inside the GEMM's packing and
// col2im inside its tile writer, so no column matrix is ever stored. The passes with one
// input channel run their own kernels instead (conv_thin.h). The workspace holds wgrad's
// per-slot partial sums and the direct forms' bordered copies.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "kernels/cpu/conv_thin.h"
#include "kernels/cpu/dgrad_rows.h"
#include "kernels/cpu/gemm_views.h"
#include "kernels/cpu/plane_border.h"
#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

int64_t crs_of(const Conv2dShape& s) { return (int64_t)s.C * s.R * s.S; }
int64_t pq_of(const Conv2dShape& s) { return (int64_t)s.P * s.Q; }
int64_t chw_of(const Conv2dShape& s) { return (int64_t)s.C * s.H * s.W; }

void check_shape(const Conv2dShape& s) {
  bool ok = s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.K >= 1 && s.R >= 1 && s.S >= 1;
  ok = ok && s.P >= 1 && s.Q >= 1 && s.stride_h >= 1 && s.stride_w >= 1;
  ok = ok && s.pad_h >= 0 && s.pad_w >= 0;
  ok = ok && (int64_t)s.N * pq_of(s) <= INT32_MAX && crs_of(s) <= INT32_MAX;
  if (!ok) throw std::invalid_argument("conv2d: invalid Conv2dShape");
}

// The filter taps (c, r, s) over x: offset c*H*W + r*W + s, image position (r, s).
GemmAxis taps_axis(const Conv2dShape& s) {
  GemmAxis a;
  a.sa = (int64_t)s.H * s.W;
  a.nb = s.R, a.sb = s.W, a.hb = 1;
  a.nc = s.S, a.sc = 1, a.wc = 1;
  return a;
}

// The output positions (n, p, q) over x: offset n*C*H*W + p*sh*W + q*sw, position
// (p*sh, q*sw); with a tap added, the input pixel the output reads.
GemmAxis positions_in_x(const Conv2dShape& s) {
  GemmAxis a;
  a.sa = chw_of(s);
  a.nb = s.P, a.sb = (int64_t)s.stride_h * s.W, a.hb = s.stride_h;
  a.nc = s.Q, a.sc = s.stride_w, a.wc = s.stride_w;
  return a;
}

// The output positions (n, pq) over an [N,K,P,Q] tensor, and its channels k.
GemmAxis positions_in_y(const Conv2dShape& s) {
  GemmAxis a;
  a.sa = s.K * pq_of(s);
  a.nc = s.P * s.Q, a.sc = 1;
  return a;
}
GemmAxis channels_in_y(const Conv2dShape& s) {
  GemmAxis a;
  a.sa = pq_of(s);
  return a;
}

// Where (tap, position) pairs fall in x: padding offsets, and bounds when any can fall
// outside (the top/left padding, or a bottom/right row or column past the image).
template <typename V>
void set_image_bounds(const Conv2dShape& s, V* v) {
  v->off0 = -(int64_t)s.pad_h * s.W - s.pad_w;
  v->h0 = -s.pad_h, v->w0 = -s.pad_w, v->H = s.H, v->W = s.W;
  v->bounded = s.pad_h > 0 || s.pad_w > 0 || (int64_t)(s.P - 1) * s.stride_h - s.pad_h + s.R > s.H ||
               (int64_t)(s.Q - 1) * s.stride_w - s.pad_w + s.S > s.W;
}

// The column matrix of images [n0, ...) as an operand: taps x positions, or transposed.
template <typename T>
GemmOperand<T> im2col_view(const Conv2dShape& s, const T* x, bool taps_are_rows) {
  GemmOperand<T> v;
  v.base = x;
  v.layout = GemmLayout::Gather;
  v.row = taps_are_rows ? taps_axis(s) : positions_in_x(s);
  v.col = taps_are_rows ? positions_in_x(s) : taps_axis(s);
  set_image_bounds(s, &v);
  return v;
}

// An [N,K,P,Q] tensor as the matrix channels x positions.
template <typename T>
GemmOperand<T> channels_by_positions(const Conv2dShape& s, const T* y) {
  GemmOperand<T> v;
  v.base = y;
  v.layout = GemmLayout::Gather;
  v.row = channels_in_y(s);
  v.col = positions_in_y(s);
  return v;
}

// ---------------------------------------------------------------------------------
// The direct forms (GemmLayout::Direct): the micro-kernel reads the image itself, so a
// tensor whose taps can fall outside is first copied with a zero border. Which form a
// pass takes depends only on the shape, never on the thread count.

using Border = PlaneBorder;

int64_t padded_elems(int64_t planes, int H, int W, const Border& b) {
  return planes * (H + b.top + b.bottom) * (W + b.left + b.right);
}

// dst[plane][h + top][w + left] = src[plane][h][w], zero elsewhere.
template <typename T>
void copy_with_border(int64_t planes, int H, int W, const Border& b, const T* src, T* dst) {
  const int64_t hw = int64_t(H) * W, plane = padded_elems(1, H, W, b);
#pragma omp parallel for schedule(static) if (planes * plane >= (1 << 16) && !omp_in_parallel())
  for (int64_t pl = 0; pl < planes; ++pl) put_plane(H, W, b, src + pl * hw, dst + pl * plane);
}

// fprop reads x[p*sh - ph + r][q*sw - pw + s]: the border that keeps every read inside.
Border fprop_border(const Conv2dShape& s) {
  Border b;
  b.top = s.pad_h, b.left = s.pad_w;
  b.bottom = std::max(0, (s.P - 1) * s.stride_h + s.R - s.pad_h - s.H);
  b.right = std::max(0, (s.Q - 1) * s.stride_w + s.S - s.pad_w - s.W);
  return b;
}

// Few output channels and a long reduction: fprop as y^T = col^T w^T with col read directly.
bool fprop_is_direct(const Conv2dShape& s) { return s.K >= 16 && crs_of(s) >= 32; }

// dgrad in gather form: the rows h of dx with (h + pad) % stride == rho ("phase" rho) take
// the taps r = rho + stride*u, u < U, from dy row p = m - u, where h = stride*m + rho - pad.
struct Phase {
  int taps = 0;     // U
  int m_lo = 0;     // the first m whose h is inside [0, H)
  int count = 0;    // how many such m
};
Phase phase_of(int rho, int stride, int R, int pad, int H) {
  Phase ph;
  ph.taps = rho < R ? (R - rho + stride - 1) / stride : 0;
  const int lo_num = pad - rho;  // m_lo = ceil(lo_num / stride), m_hi = floor((H-1+pad-rho)/stride)
  ph.m_lo = lo_num <= 0 ? -((-lo_num) / stride) : (lo_num + stride - 1) / stride;
  const int hi_num = H - 1 + pad - rho;
  const int m_hi = hi_num >= 0 ? hi_num / stride : -((-hi_num + stride - 1) / stride);
  ph.count = std::max(0, m_hi - ph.m_lo + 1);
  return ph;
}

// The border of dy that keeps the reads of every phase inside: p from m_lo - (U-1) to m_hi.
void dy_border_1d(int stride, int R, int pad, int H, int P, int* before, int* after) {
  *before = *after = 0;
  for (int rho = 0; rho < stride; ++rho) {
    Phase ph = phase_of(rho, stride, R, pad, H);
    if (ph.taps == 0 || ph.count == 0) continue;
    *before = std::max(*before, ph.taps - 1 - ph.m_lo);
    *after = std::max(*after, ph.m_lo + ph.count - 1 - (P - 1));
  }
}
Border dgrad_border(const Conv2dShape& s) {
  Border b;
  dy_border_1d(s.stride_h, s.R, s.pad_h, s.H, s.P, &b.top, &b.bottom);
  dy_border_1d(s.stride_w, s.S, s.pad_w, s.W, s.Q, &b.left, &b.right);
  return b;
}

// Enough output channels to fill the vectors: dw^T with x read directly.
bool wgrad_is_direct(const Conv2dShape& s) { return s.K >= 16; }

// x_bordered promises x with the border both direct passes read it through.
void check_x_bordered(const Conv2dShape& s, bool x_bordered) {
  if (x_bordered && !conv2d_shared_x_border(s).any())
    throw std::invalid_argument("conv2d: a bordered x for a shape whose passes read none");
}

// Few input channels and the scatter of col2im would dominate: gather form instead.
bool dgrad_is_direct(const Conv2dShape& s) { return s.C >= 16 && s.K >= 8; }

// dgrad adds each image's columns into its dx through col2im; images go in fixed groups
// of about kGroupColumns output positions, so every dx element receives its terms in the
// same order whatever the thread count.
constexpr int64_t kGroupColumns = 256;
constexpr int64_t kGroupBytes = 384 * 1024;

// Each thread's staging area for the phases of a dgrad group (together, the group's dx).
constexpr int64_t kStageBytes = 512 * 1024;
template <typename T>
T* stage_buffer() {
  alignas(64) static thread_local unsigned char buf[kStageBytes];
  return reinterpret_cast<T*>(buf);
}

}  // namespace

// y[n,k,p,q] = act(sum_{c,r,s} x[n,c,p*sh-ph+r,q*sw-pw+s] * w[k,c,r,s] + bias[k])
// One input channel: conv_thin.h. Direct: y^T[(n,p,q), k] = sum_{(c,r,s)} x(...) w^T, x read
// in place (or bordered). Otherwise y[k, (n,p,q)] = w col, the columns packed from x by the
// GEMM. Either way the bias and ReLU are applied to each tile as it is stored.
template <typename T>
void conv2d_fprop_bias_act(const Conv2dShape& s, const T* x, const T* w, const T* bias, bool relu,
                           T* y, T* workspace, bool x_bordered) {
  check_shape(s);
  check_x_bordered(s, x_bordered);
  if (thin_fprop_applies(s)) return thin_fprop(s, x, w, bias, relu, y);
  GemmProblem<T> p;
  p.C.base = y, p.C.layout = GemmLayout::Gather;
  p.C.bias = bias, p.C.relu = relu;
  if (!fprop_is_direct(s)) {
    p.M = s.K, p.N = s.N * (int)pq_of(s), p.K = (int)crs_of(s);
    p.A.base = w, p.A.layout = GemmLayout::Rows, p.A.ld = crs_of(s);
    p.B = im2col_view(s, x, true);
    p.C.row = channels_in_y(s), p.C.col = positions_in_y(s);
    return gemm_run(p);
  }
  const Border b = fprop_border(s);
  const bool copy = b.any() && !x_bordered;
  if (copy) copy_with_border((int64_t)s.N * s.C, s.H, s.W, b, x, workspace);
  Conv2dShape sp = s;  // the bordered image, read as a `valid` conv
  sp.H += b.top + b.bottom, sp.W += b.left + b.right, sp.pad_h = sp.pad_w = 0;
  p.M = s.N * (int)pq_of(s), p.N = s.K, p.K = (int)crs_of(s);
  p.A.base = copy ? workspace : x, p.A.layout = GemmLayout::Direct;
  p.A.row = positions_in_x(sp), p.A.col = taps_axis(sp);
  p.B.base = w, p.B.layout = GemmLayout::Cols, p.B.ld = crs_of(s);  // w^T
  p.C.row = positions_in_y(s), p.C.col = channels_in_y(s);
  p.C.bias_per_col = true;
  gemm_run(p);
}

template <typename T>
void conv2d_fprop(const Conv2dShape& s, const T* x, const T* w, T* y, T* workspace) {
  conv2d_fprop_bias_act<T>(s, x, w, nullptr, false, y, workspace, false);
}

// dx[n,c,h,w] = sum_{k,p,q,r,s : p*sh-ph+r=h, q*sw-pw+s=w} dy[n,k,p,q] * w[k,c,r,s]
// Direct: per phase (rho_h, rho_w), dx^T[(n,m,m'), c] = sum_{(k,u,v)} dy(n,k,m-u,m'-v)
// w[k,c,rho_h+sh*u,rho_w+sw*v], dy read in place from a bordered copy; each dx element is
// written once. Otherwise col2im(w^T dy), the columns added straight into dx.
template <typename T>
void conv2d_dgrad_phase(const Conv2dShape& s, const T* dyp, const Border& b, int rho_h,
                        int rho_w, const T* w, const T* bias, bool relu, T* dx, T* stage) {
  const Phase ph = phase_of(rho_h, s.stride_h, s.R, s.pad_h, s.H);
  const Phase pw = phase_of(rho_w, s.stride_w, s.S, s.pad_w, s.W);
  if (ph.count == 0 || pw.count == 0) return;
  const int64_t Pp = s.P + b.top + b.bottom, Qp = s.Q + b.left + b.right;
  const int64_t hw = (int64_t)s.H * s.W, rs = (int64_t)s.R * s.S;
  const int64_t h0 = (int64_t)s.stride_h * ph.m_lo + rho_h - s.pad_h;
  const int64_t w0 = (int64_t)s.stride_w * pw.m_lo + rho_w - s.pad_w;
  GemmAxis pos;  // (n, m, m') over dx
  pos.sa = chw_of(s), pos.nb = ph.count, pos.sb = s.stride_h * (int64_t)s.W;
  pos.nc = pw.count, pos.sc = s.stride_w;
  GemmAxis chan;
  chan.sa = hw;
  if (ph.taps == 0 || pw.taps == 0) {  // no tap reaches these rows: dx is zero there
    for (int n = 0; n < s.N; ++n)
      for (int c = 0; c < s.C; ++c)
        for (int m = 0; m < ph.count; ++m)
          for (int q = 0; q < pw.count; ++q)
            dx[n * pos.sa + c * hw + (h0 + m * s.stride_h) * s.W + w0 + q * s.stride_w] =
                bias && !(relu && bias[c] < T(0)) ? bias[c] : T(0);  // act(0 + bias)
    return;
  }
  GemmProblem<T> p;
  p.M = s.N * ph.count * pw.count, p.N = s.C, p.K = s.K * ph.taps * pw.taps;
  p.A.base = dyp, p.A.layout = GemmLayout::Direct;
  p.A.off0 = (ph.m_lo + b.top) * Qp + (pw.m_lo + b.left);
  p.A.row.sa = s.K * Pp * Qp, p.A.row.nb = ph.count, p.A.row.sb = Qp, p.A.row.nc = pw.count,
  p.A.row.sc = 1;
  p.A.col.sa = Pp * Qp, p.A.col.nb = ph.taps, p.A.col.sb = -Qp, p.A.col.nc = pw.taps,
  p.A.col.sc = -1;
  p.B.base = w, p.B.layout = GemmLayout::Gather;
  p.B.off0 = (int64_t)rho_h * s.S + rho_w;
  p.B.row.sa = crs_of(s), p.B.row.nb = ph.taps, p.B.row.sb = (int64_t)s.stride_h * s.S,
  p.B.row.nc = pw.taps, p.B.row.sc = s.stride_w;
  p.B.col.sa = rs;
  p.C.layout = GemmLayout::Gather;
  p.C.bias = bias, p.C.bias_per_col = true, p.C.relu = relu;
  p.threads = omp_in_parallel() ? 1 : 0;
  const int64_t pc = (int64_t)ph.count * pw.count;
  if (!stage) {  // straight into dx, every tile a scatter of stride-apart elements
    p.C.base = dx, p.C.off0 = h0 * s.W + w0;
    p.C.row = pos, p.C.col = chan;
    return gemm_run(p);
  }
  // Into stage as [n][c][m][m'] (tiles stored as contiguous rows); spread_phases puts
  // every phase of the group into dx afterwards. Scattered tile stores interleaved with
  // the kernel's loads ran up to 1.4x slower, depending on how dx and dy happened to be
  // aligned (4K aliasing).
  p.C.base = stage;
  p.C.row.sa = s.C * pc, p.C.row.nc = (int)pc, p.C.row.sc = 1;
  p.C.col.sa = pc;
  gemm_run(p);
}

// Where phase (rho_h, rho_w) of a group starts in its stage: phases one after another.
int64_t phase_stage_offset(const Conv2dShape& s, int rho_h, int rho_w) {
  int64_t off = 0;
  for (int a = 0; a < s.stride_h; ++a)
    for (int b = 0; b < s.stride_w; ++b) {
      if (a == rho_h && b == rho_w) return off;
      off += (int64_t)s.N * s.C * phase_of(a, s.stride_h, s.R, s.pad_h, s.H).count *
             phase_of(b, s.stride_w, s.S, s.pad_w, s.W).count;
    }
  return off;
}

// dx from the staged phases, one output row at a time (its phases interleaved), so that
// every row is written whole; phases without taps were written directly and are skipped.
template <typename T>
void spread_phases(const Conv2dShape& s, const T* stage, T* dx) {
  constexpr int kMaxStride = 8;
  Phase pw[kMaxStride];
  const T* region[kMaxStride];
  const int sw = std::min(s.stride_w, kMaxStride);
  for (int b = 0; b < sw; ++b) pw[b] = phase_of(b, s.stride_w, s.S, s.pad_w, s.W);
  for (int a = 0; a < s.stride_h; ++a) {
    const Phase ph = phase_of(a, s.stride_h, s.R, s.pad_h, s.H);
    if (ph.count == 0 || ph.taps == 0) continue;
    for (int b = 0; b < sw; ++b) region[b] = stage + phase_stage_offset(s, a, b);
    for (int64_t nc = 0; nc < (int64_t)s.N * s.C; ++nc)
      for (int m = 0; m < ph.count; ++m) {
        T* row = dx + nc * s.H * (int64_t)s.W +
                 ((int64_t)s.stride_h * (ph.m_lo + m) + a - s.pad_h) * s.W;
        const T* src[kMaxStride];
        T* dst[kMaxStride];
        for (int b = 0; b < sw; ++b) {
          src[b] = region[b] + (nc * ph.count + m) * pw[b].count;
          dst[b] = row + (int64_t)s.stride_w * pw[b].m_lo + b - s.pad_w;
        }
        int done = 0;  // stride 2, both phases staged: interleave them (unpack, not scatter)
        if (sw == 2 && pw[0].taps && pw[1].taps && dst[1] == dst[0] + 1) {
          done = std::min(pw[0].count, pw[1].count);
          for (int q = 0; q < done; ++q) {
            dst[0][2 * q] = src[0][q];
            dst[0][2 * q + 1] = src[1][q];
          }
        }
        for (int b = 0; b < sw; ++b) {
          if (pw[b].taps == 0) continue;
          for (int q = done; q < pw[b].count; ++q) dst[b][(int64_t)q * sw] = src[b][q];
        }
      }
  }
}

// The geometry of the both-phases tiles (dgrad_rows.h) for s, its dy bordered by b; false
// when they do not take s: not stride 2 with a 3x3 filter, an odd column padding (the two
// column phases would start at different dy columns), channels not in whole blocks, or a
// path without them (generic, or not x86-64).
bool dgrad_rows_plan(const Conv2dShape& s, const Border& b, DgradRowsPlan* pl) {
#if defined(__x86_64__)
  const CpuIsa isa = cpu_isa();
  pl->cb = isa == CpuIsa::Avx512 ? kDgradRowsChannelsAvx512
           : isa == CpuIsa::Avx2 ? kDgradRowsChannelsAvx2 : 0;
#else
  pl->cb = 0;
#endif
  if (pl->cb == 0 || s.stride_h != 2 || s.stride_w != 2 || s.R != 3 || s.S != 3 ||
      s.pad_w % 2 != 0 || s.C % pl->cb != 0 || s.H < 2 || s.W < 2)
    return false;
  pl->C = s.C, pl->H = s.H, pl->W = s.W, pl->K = s.K;
  pl->Qp = s.Q + b.left + b.right;
  pl->plane = (s.P + b.top + b.bottom) * pl->Qp;
  pl->image = s.K * pl->plane;
  for (int rho = 0; rho < 2; ++rho) {
    const Phase ph = phase_of(rho, 2, 3, s.pad_h, s.H);
    pl->row0[rho] = ph.m_lo + b.top, pl->rows[rho] = ph.count, pl->taps_h[rho] = ph.taps;
    pl->h0[rho] = 2 * ph.m_lo + rho - s.pad_h;
  }
  pl->col0 = phase_of(0, 2, 3, s.pad_w, s.W).m_lo + b.left;  // both phases' (even pad)
  return true;
}

// w [K, C, 3, 3] as the tiles read it: [C / cb][r][k][s][cb], a channel block's weights
// of one (r, k, s) one run of vectors.
void dgrad_rows_pack(const DgradRowsPlan& pl, const float* w, float* wp) {
  for (int c0 = 0; c0 < pl.C; c0 += pl.cb)
    for (int r = 0; r < 3; ++r)
      for (int k = 0; k < pl.K; ++k)
        for (int t = 0; t < 3; ++t, wp += pl.cb)
          for (int c = 0; c < pl.cb; ++c) wp[c] = w[((int64_t(k) * pl.C + c0 + c) * 3 + r) * 3 + t];
}

// dx by the both-phases tiles, images over the threads; the weights packed first into wp.
void dgrad_by_rows(const Conv2dShape& s, const DgradRowsPlan& pl, const float* dyp,
                   const float* w, const float* bias, bool relu, float* dx, float* wp) {
  dgrad_rows_pack(pl, w, wp);
#if defined(__x86_64__)
  const auto images = cpu_isa() == CpuIsa::Avx512 ? avx512::dgrad_rows_images : avx2::dgrad_rows_images;
  const int threads = std::min(s.N, omp_in_parallel() ? 1 : omp_get_max_threads());
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int n = 0; n < s.N; ++n) images(pl, dyp, wp, bias, relu, n, n + 1, dx);
#else
  (void)s, (void)dyp, (void)bias, (void)relu, (void)dx;
#endif
}

template <typename T>
void conv2d_dgrad_bias_act(const Conv2dShape& s, const T* dy, const T* w, const T* bias,
                           bool relu, T* dx, T* workspace) {
  check_shape(s);
  const int64_t pq = pq_of(s), chw = chw_of(s), kpq = s.K * pq;
  if (thin_dgrad_applies(s)) return thin_dgrad(s, dy, w, bias, relu, dx);
  if (dgrad_is_direct(s)) {
    const Border b = dgrad_border(s);
    if (b.any()) copy_with_border((int64_t)s.N * s.K, s.P, s.Q, b, dy, workspace);
    const T* dyp = b.any() ? workspace : dy;
    if constexpr (std::is_same_v<T, float>) {
      DgradRowsPlan pl;
      if (dgrad_rows_plan(s, b, &pl))
        return dgrad_by_rows(s, pl, dyp, w, bias, relu, dx,
                             workspace + (b.any() ? padded_elems((int64_t)s.N * s.K, s.P, s.Q, b) : 0));
    }
    const int64_t dyp_image = s.K * (int64_t)(s.P + b.top + b.bottom) * (s.Q + b.left + b.right);
    // Images in groups of about kGroupBytes of dx, every phase of a group in turn, so that
    // the cache lines the phases share are completed while they are in cache.
    const int group = (int)std::max<int64_t>(1, kGroupBytes / (chw * int64_t(sizeof(T))));
    const int groups = (s.N + group - 1) / group;
    const int threads = std::min(groups, omp_in_parallel() ? 1 : omp_get_max_threads());
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
    for (int g = 0; g < groups; ++g) {
      Conv2dShape sg = s;
      sg.N = std::min(s.N, (g + 1) * group) - g * group;
      T* stage = sg.N * chw * int64_t(sizeof(T)) <= kStageBytes && s.stride_w <= 8
                     ? stage_buffer<T>() : nullptr;
      for (int rho_h = 0; rho_h < s.stride_h; ++rho_h)
        for (int rho_w = 0; rho_w < s.stride_w; ++rho_w)
          conv2d_dgrad_phase(sg, dyp + g * group * dyp_image, b, rho_h, rho_w, w, bias, relu,
                             dx + g * group * chw,
                             stage ? stage + phase_stage_offset(sg, rho_h, rho_w) : nullptr);
      if (stage) spread_phases(sg, stage, dx + g * group * chw);
    }
    return;
  }
  std::memset(dx, 0, sizeof(T) * size_t(s.N) * size_t(chw));
  const int group = (int)std::max<int64_t>(1, kGroupColumns / pq);
  const int groups = (s.N + group - 1) / group;
  const int threads = std::min(groups, omp_in_parallel() ? 1 : omp_get_max_threads());
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int g = 0; g < groups; ++g) {
    const int n0 = g * group, n1 = std::min(s.N, n0 + group);
    GemmProblem<T> p;
    p.M = (int)crs_of(s), p.N = (n1 - n0) * (int)pq, p.K = s.K;
    p.A.base = w, p.A.layout = GemmLayout::Cols, p.A.ld = crs_of(s);  // W^T
    p.B = channels_by_positions(s, dy + n0 * kpq);
    p.C.base = dx + n0 * chw, p.C.layout = GemmLayout::Gather;
    p.C.row = taps_axis(s), p.C.col = positions_in_x(s);
    set_image_bounds(s, &p.C);
    p.C.store = GemmStore::Accumulate;
    p.threads = 1;
    gemm_run(p);
  }
  const int64_t hw = s.H * (int64_t)s.W;  // the sums are complete: now the epilogue
  if (bias && relu) bias_relu_fwd<T>(s.N, s.C, hw, dx, bias, dx);
  else if (bias) bias_add_fwd<T>(s.N, s.C, hw, dx, bias, dx);
  else if (relu) relu_fwd<T>(s.N * chw, dx, dx);
}

template <typename T>
void conv2d_dgrad(const Conv2dShape& s, const T* dy, const T* w, T* dx, T* workspace) {
  conv2d_dgrad_bias_act<T>(s, dy, w, nullptr, false, dx, workspace);
}

// dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n,c,p*sh-ph+r,q*sw-pw+s]
// Slot k sums its images into its own partial (slot 0: dw itself); partials are then
// added in slot order, so the result does not depend on the thread count.
// One input channel: conv_thin.h. Direct: dw^T[(c,r,s), k] = sum_{(n,p,q)} x(...) dy^T, x
// read in place (or bordered); otherwise dw = dy col^T with the columns packed from x.
template <typename T>
void conv2d_wgrad(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* workspace,
                  bool x_bordered) {
  check_shape(s);
  check_x_bordered(s, x_bordered);
  const int64_t crs = crs_of(s), pq = pq_of(s), chw = chw_of(s), kpq = s.K * pq;
  const int64_t kcrs = s.K * crs, slots = conv2d_batch_slots(s);
  T* partials = workspace;  // slots-1 of K*C*R*S
  const bool thin = thin_wgrad_applies(s), direct = !thin && wgrad_is_direct(s);
  const Border b = fprop_border(s);
  Conv2dShape sp = s;  // the bordered image, read as a `valid` conv
  sp.H += b.top + b.bottom, sp.W += b.left + b.right, sp.pad_h = sp.pad_w = 0;
  const T* xr = x;
  if (direct && b.any() && !x_bordered) {
    T* xp = workspace + (slots - 1) * kcrs;
    copy_with_border((int64_t)s.N * s.C, s.H, s.W, b, x, xp);
    xr = xp;
  }
  const int threads = (int)std::min<int64_t>(slots, omp_in_parallel() ? 1 : omp_get_max_threads());
#pragma omp parallel for schedule(dynamic) num_threads(threads) if (threads > 1)
  for (int k = 0; k < (int)slots; ++k) {
    const int n0 = (int)(s.N * k / slots), n1 = (int)(s.N * (k + 1) / slots);
    T* slot_dw = k == 0 ? dw : partials + (k - 1) * kcrs;
    if (thin) {
      thin_wgrad_slot(s, x, dy, n0, n1, slot_dw);
      continue;
    }
    GemmProblem<T> p;
    p.C.base = slot_dw;
    p.threads = 1;
    if (direct) {
      p.M = (int)crs, p.N = s.K, p.K = (n1 - n0) * (int)pq;
      p.A.base = xr + n0 * chw_of(sp), p.A.layout = GemmLayout::Direct;
      p.A.row = taps_axis(sp), p.A.col = positions_in_x(sp);
      p.B.base = dy + n0 * kpq, p.B.layout = GemmLayout::Gather;  // dy^T
      p.B.row = positions_in_y(s), p.B.col = channels_in_y(s);
      p.C.layout = GemmLayout::Gather;  // dw^T: taps contiguous, channels crs apart
      p.C.row.sa = 1, p.C.col.sa = crs;
    } else {
      p.M = s.K, p.N = (int)crs, p.K = (n1 - n0) * (int)pq;
      p.A = channels_by_positions(s, dy + n0 * kpq);
      p.B = im2col_view(s, x + n0 * chw, false);
      p.C.ld = crs;
    }
    gemm_run(p);
  }
  for (int64_t k = 1; k < slots; ++k)
    for (int64_t i = 0; i < kcrs; ++i) dw[i] += partials[(k - 1) * kcrs + i];
}

namespace {
// The workspace of conv2d_fprop_relu_bwd_bordered: the row sums (double), then from a
// 64-byte boundary one fprop output image per thread.
int64_t rowsum_elems(const Conv2dShape& s, size_t elem_bytes) {
  const int64_t bytes = int64_t(s.N) * s.K * int64_t(sizeof(double));
  return (bytes + 63) / 64 * 64 / int64_t(elem_bytes);
}
}  // namespace

bool conv2d_fprop_relu_bwd_fuses(const Conv2dShape& s) { return thin_fprop_applies(s); }

size_t conv2d_fprop_relu_bwd_workspace_elems(const Conv2dShape& s, size_t elem_bytes) {
  return size_t(rowsum_elems(s, elem_bytes) + int64_t(omp_get_max_threads()) * s.K * s.P * s.Q);
}

template <typename T>
void conv2d_fprop_relu_bwd_bordered(const Conv2dShape& s, const T* x, const T* w, const T* yd,
                                    const PlaneBorder& b, T* dpre, T* db, T* workspace) {
  check_shape(s);
  if (!conv2d_fprop_relu_bwd_fuses(s))
    throw std::invalid_argument("conv2d_fprop_relu_bwd_bordered: a shape it does not fuse");
  double* rowsum = reinterpret_cast<double*>(workspace);
  thin_fprop_relu_bwd(s, x, w, yd, b, dpre, rowsum, workspace + rowsum_elems(s, sizeof(T)));
  if (db) bias_sums_of_rows(s.N, s.K, rowsum, db);
}

#define CVAE_INSTANTIATE_CONV(T)                                                         \
  template void conv2d_fprop_bias_act<T>(const Conv2dShape&, const T*, const T*, const T*, \
                                         bool, T*, T*, bool);                            \
  template void conv2d_dgrad_bias_act<T>(const Conv2dShape&, const T*, const T*, const T*, \
                                         bool, T*, T*);                                  \
  template void conv2d_fprop<T>(const Conv2dShape&, const T*, const T*, T*, T*);         \
  template void conv2d_dgrad<T>(const Conv2dShape&, const T*, const T*, T*, T*);         \
  template void conv2d_wgrad<T>(const Conv2dShape&, const T*, const T*, T*, T*, bool);  \
  template void conv2d_fprop_relu_bwd_bordered<T>(const Conv2dShape&, const T*, const T*,   \
                                                  const T*, const PlaneBorder&, T*, T*, T*);
CVAE_INSTANTIATE_CONV(float)
CVAE_INSTANTIATE_CONV(double)
#undef CVAE_INSTANTIATE_CONV

}  // namespace cvae::kernels::cpu

namespace cvae::kernels {

// The largest of what one pass needs: fprop's or dgrad's bordered copy (direct forms),
// wgrad's (slots-1) partial sums (slot 0 accumulates straight into dw) and its bordered x.
int64_t bordered_elems(int N, int C, int H, int W, const PlaneBorder& b) {
  return cpu::padded_elems(int64_t(N) * C, H, W, b);
}

PlaneBorder conv2d_shared_x_border(const Conv2dShape& s) {
  using namespace cpu;
  return fprop_is_direct(s) && wgrad_is_direct(s) ? fprop_border(s) : PlaneBorder{};
}

size_t conv2d_workspace_elems(const Conv2dShape& s) {
  if (!(s.N >= 1 && s.C >= 1 && s.K >= 1 && s.R >= 1 && s.S >= 1 && s.P >= 1 && s.Q >= 1 &&
        s.H >= 1 && s.W >= 1 && s.stride_h >= 1 && s.stride_w >= 1))
    throw std::invalid_argument("conv2d shape: workspace of an empty or invalid shape");
  using namespace cpu;
  const int64_t partials = (conv2d_batch_slots(s) - 1) * s.K * crs_of(s);
  const Border bf = fprop_border(s), bd = dgrad_border(s);
  const int64_t xp = bf.any() ? padded_elems((int64_t)s.N * s.C, s.H, s.W, bf) : 0;
  int64_t elems = partials + (wgrad_is_direct(s) ? xp : 0);
  if (fprop_is_direct(s)) elems = std::max(elems, xp);
  if (dgrad_is_direct(s))  // the bordered dy, then the weights as the row tiles read them
    elems = std::max(elems, (bd.any() ? padded_elems((int64_t)s.N * s.K, s.P, s.Q, bd) : 0) +
                                s.K * crs_of(s));
  return static_cast<size_t>(std::max<int64_t>(1, elems));
}

}  // namespace cvae::kernels
