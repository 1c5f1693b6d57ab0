// gemm_core.h: the CPU GEMM loop framework, compiled once per ISA. A gemm_<isa>.cpp
// defines CVAE_GEMM_NS and, in that namespace, the vector width and register tiles,
// then includes this file; nothing else may include it (see gemm_views.h on why).
// Goto/BLIS structure: op(B) packed in KC x NC blocks, op(A) in MC x KC blocks, an
// MR x NR register tile (NR = 1 or 2 vectors). The packers read plain or gathered
// operands; the tile writer stores plainly, through a view, or adds (col2im).
// Deterministic: every C element is summed by one thread, over K in KC blocks, in
// order, whatever the tiling and the thread count.
#include <omp.h>

#include <cstring>

#include "kernels/cpu/gemm_views.h"
#include "kernels/cpu/simd.h"

namespace cvae::kernels::cpu::CVAE_GEMM_NS {
namespace {

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Block sizes for element type T with an NV-vector-wide tile. KC and MC, NC are sized
// in bytes so that one pair of buffers serves float and double.
template <typename T, int NV_>
struct Blk {
  static constexpr int L = kVectorBytes / int(sizeof(T));  // lanes per vector
  static constexpr int NV = NV_, NR = NV * L;
  static constexpr int MR = NV == 2 ? kRowsWide : kRowsNarrow;
  static constexpr int KC = kKcBytes / int(sizeof(T));
  static constexpr int MC_ROWS = kMcRows < kGemmPackABytes / (KC * int64_t(sizeof(T)))
                                     ? kMcRows : int(kGemmPackABytes / (KC * int64_t(sizeof(T))));
  static constexpr int MC = (MC_ROWS / MR) * MR;
  static constexpr int NC = (kNcBytes / int(sizeof(T)) / NR) * NR;
  static_assert(int64_t(MC) * KC * int64_t(sizeof(T)) <= kGemmPackABytes, "A block");
  static_assert(int64_t(KC) * NC * int64_t(sizeof(T)) <= kGemmPackBBytes, "B block");
};
constexpr int kMaxKcDirect = 640;  // a direct A's K block: covers the CVAE's 576 taps
constexpr int kMaxKc = kKcBytes / 4 > kMaxKcDirect ? kKcBytes / 4 : kMaxKcDirect, kMaxTile = 64;

template <typename T>
using Vec = SimdVec<T, kVectorBytes>;

// Offsets and image positions of axis indices i0 .. i0+n-1 (digits stepped, not divided).
void axis_fill(const GemmAxis& ax, int i0, int n, int64_t* off, int* h, int* w) {
  const int per_a = ax.nb * ax.nc;
  int a = i0 / per_a, rem = i0 % per_a, b = rem / ax.nc, c = rem % ax.nc;
  for (int t = 0; t < n; ++t) {
    off[t] = a * ax.sa + b * ax.sb + c * ax.sc;
    h[t] = b * ax.hb;
    w[t] = c * ax.wc;
    if (++c == ax.nc) {
      c = 0;
      if (++b == ax.nb) b = 0, ++a;
    }
  }
}

// Offsets alone of axis indices i0 .. i0+n-1.
void axis_offsets(const GemmAxis& ax, int i0, int n, int64_t* off) {
  const int per_a = ax.nb * ax.nc;
  int a = i0 / per_a, rem = i0 % per_a, b = rem / ax.nc, c = rem % ax.nc;
  for (int t = 0; t < n; ++t) {
    off[t] = a * ax.sa + b * ax.sb + c * ax.sc;
    if (++c == ax.nc) {
      c = 0;
      if (++b == ax.nb) b = 0, ++a;
    }
  }
}

// True (and *off the first offset) when indices i0 .. i0+n-1 are n consecutive elements
// at the same image row: within one run of the last digit, unit stride, one b digit.
bool axis_contiguous(const GemmAxis& ax, int i0, int n, int64_t* off) {
  const int per_a = ax.nb * ax.nc;
  int a = i0 / per_a, rem = i0 % per_a, b = rem / ax.nc, c = rem % ax.nc;
  *off = a * ax.sa + b * ax.sb + c * ax.sc;
  if (ax.nc == 1 && ax.nb == 1) return n == 1 || ax.sa == 1;
  return ax.sc == 1 && c + n <= ax.nc && (ax.wc == 1 || ax.wc == 0);
}

// A run of indices with the same a and b digits: consecutive c, so offsets step by sc
// and image columns by wc (one run per index for a plain axis, stepping by sa).
struct AxisRun {
  int j, len;    // first index (relative to the range start) and length
  int64_t off;   // offset of the first
  int h, w;      // image position of the first
  int64_t step;  // offset step within the run
  int wstep;     // image-column step within the run
};

// Splits indices i0 .. i0+n-1 into runs; returns their count (at most n).
int axis_runs(const GemmAxis& ax, int i0, int n, AxisRun* runs) {
  if (ax.nb == 1 && ax.nc == 1) {
    runs[0] = AxisRun{0, n, i0 * ax.sa, 0, 0, ax.sa, 0};
    return 1;
  }
  const int per_a = ax.nb * ax.nc;
  int a = i0 / per_a, rem = i0 % per_a, b = rem / ax.nc, c = rem % ax.nc;
  int count = 0;
  for (int j = 0; j < n;) {
    const int len = imin(ax.nc - c, n - j);
    runs[count++] = AxisRun{j, len, a * ax.sa + b * ax.sb + c * ax.sc, b * ax.hb, c * ax.wc,
                            ax.sc, ax.wc};
    j += len, c = 0;
    if (++b == ax.nb) b = 0, ++a;
  }
  return count;
}

// The part [lo, hi) of a run's len elements whose image column w0 + q*wstep is in [0, W).
inline void run_inside(int w0, int wstep, int len, int W, int* lo, int* hi) {
  if (wstep == 0) {
    *lo = 0, *hi = unsigned(w0) < unsigned(W) ? len : 0;
    return;
  }
  // wstep > 0: q >= ceil(-w0 / wstep) and q <= (W - 1 - w0) / wstep
  int l = w0 >= 0 ? 0 : (-w0 + wstep - 1) / wstep;
  int h = w0 > W - 1 ? 0 : (W - 1 - w0) / wstep + 1;
  *lo = imin(l, len), *hi = imin(h, len);
  if (*hi < *lo) *hi = *lo;
}

// dst[i] = src[i], i < n <= N, as copies of constant size, which the compiler inlines as
// vector moves: a whole panel row, or vectors with the last one ending at n (overlapping
// the one before); a row shorter than a vector (only in a panel at the matrix's edge)
// still calls memcpy. A memcpy call per row was ~230,000 calls a batch-100 step (memcpy
// alone 1.6% of it, and a vzeroupper before each call).
template <int N, typename T>
inline void copy_panel_row(T* dst, const T* src, int n) {
  constexpr int L = Vec<T>::L;
  if (n == N) {
    std::memcpy(dst, src, sizeof(T) * N);
  } else if (n >= L) {
    for (int i = 0; i + L < n; i += L) std::memcpy(dst + i, src + i, sizeof(T) * L);
    std::memcpy(dst + n - L, src + n - L, sizeof(T) * L);
  } else {
    std::memcpy(dst, src, sizeof(T) * size_t(n));
  }
}

// ---------------------------------------------------------------------------------
// Packing. A: MR-row panels, dst[panel][k][i] = A(i0+ir+i, p0+k), rows past M zero.
template <typename T, int MR>
void pack_a(const GemmOperand<T>& A, int M, int i0, int mc, int p0, int kc, T* dst) {
  int64_t co[kMaxKc];
  int ch[kMaxKc], cw[kMaxKc];
  if (A.layout == GemmLayout::Gather) axis_fill(A.col, p0, kc, co, ch, cw);
  for (int ir = 0; ir < mc; ir += MR, dst += int64_t(MR) * kc) {
    const int rows = imin(MR, M - i0 - ir);
    if (rows < MR) std::memset(dst, 0, sizeof(T) * size_t(MR) * size_t(kc));
    if (A.layout == GemmLayout::Cols) {  // A(i,k) at k*ld + i: rows are contiguous
      for (int k = 0; k < kc; ++k)
        copy_panel_row<MR>(dst + k * MR, A.base + (p0 + k) * A.ld + i0 + ir, rows);
    } else if (A.layout == GemmLayout::Rows) {
      for (int i = 0; i < rows; ++i) {
        const T* src = A.base + (i0 + ir + i) * A.ld + p0;
        for (int k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
      }
    } else {
      int64_t ro[kMaxTile];
      int rh[kMaxTile], rw[kMaxTile];
      axis_fill(A.row, i0 + ir, rows, ro, rh, rw);
      for (int i = 0; i < rows; ++i) {
        const T* src = A.base + A.off0 + ro[i];
        if (!A.bounded) {
          for (int k = 0; k < kc; ++k) dst[k * MR + i] = src[co[k]];
          continue;
        }
        const int hh = A.h0 + rh[i], ww = A.w0 + rw[i];
        for (int k = 0; k < kc; ++k) {
          const bool in = unsigned(hh + ch[k]) < unsigned(A.H) && unsigned(ww + cw[k]) < unsigned(A.W);
          dst[k * MR + i] = in ? src[co[k]] : T(0);
        }
      }
    }
  }
}

// One B panel through per-element column offsets (rows ro/rh/rw filled by the caller).
template <typename T, int NR>
void pack_b_elements(const GemmOperand<T>& B, int p0, int kc, int j, int cols, const int64_t* ro,
                     const int* rh, const int* rw, T* dst) {
  (void)p0;
  int64_t co[kMaxTile];
  int ch[kMaxTile], cw[kMaxTile];
  axis_fill(B.col, j, cols, co, ch, cw);
  for (int k = 0; k < kc; ++k) {
    const T* src = B.base + B.off0 + ro[k];
    T* d = dst + k * NR;
    if (!B.bounded) {
      for (int q = 0; q < cols; ++q) d[q] = src[co[q]];
      continue;
    }
    const int hh = B.h0 + rh[k], ww = B.w0 + rw[k];
    for (int q = 0; q < cols; ++q) {
      const bool in = unsigned(hh + ch[q]) < unsigned(B.H) && unsigned(ww + cw[q]) < unsigned(B.W);
      d[q] = in ? src[co[q]] : T(0);
    }
  }
}

// A full B panel whose columns lie `step` apart and whose rows k at base + ro[k]
// (wgrad's dy^T: channels a plane apart, positions contiguous within an image):
// dst[k][j] = base[ro[k] + j * step]. Float blocks of L consecutive positions are
// transposed in registers; other rows (at an image's end) go element by element.
template <typename T, int NR>
void pack_b_strided_columns(const T* base, int64_t step, const int64_t* ro, int kc, T* dst) {
  constexpr int L = kVectorBytes / int(sizeof(T));
  int k = 0;
  if constexpr (sizeof(T) == 4 && NR % L == 0) {
    int consecutive[kMaxKc];  // how many rows from k on lie one element apart
    if (kc > 0) consecutive[kc - 1] = 1;
    for (int i = kc - 2; i >= 0; --i) consecutive[i] = ro[i + 1] == ro[i] + 1 ? consecutive[i + 1] + 1 : 1;
    while (k + L <= kc) {
      if (consecutive[k] < L) {
        for (int j = 0; j < NR; ++j) dst[k * NR + j] = base[ro[k] + j * step];
        ++k;
        continue;
      }
      for (int jb = 0; jb < NR; jb += L) transpose_block<L>(base + ro[k] + jb * step, step, dst + k * NR + jb, NR);
      k += L;
    }
  }
  for (; k < kc; ++k)
    for (int j = 0; j < NR; ++j) dst[k * NR + j] = base[ro[k] + j * step];
}

// B: NR-column panels, dst[panel][k][j] = B(p0+k, j0+jr+j), columns past N zero.
template <typename T, int NR>
void pack_b(const GemmOperand<T>& B, int N, int p0, int kc, int j0, int nc, T* dst) {
  int64_t ro[kMaxKc];
  int rh[kMaxKc], rw[kMaxKc];
  if (B.layout == GemmLayout::Gather) axis_fill(B.row, p0, kc, ro, rh, rw);
  for (int jr = 0; jr < nc; jr += NR, dst += int64_t(NR) * kc) {
    const int cols = imin(NR, N - j0 - jr);
    if (cols < NR) std::memset(dst, 0, sizeof(T) * size_t(NR) * size_t(kc));
    if (B.layout == GemmLayout::Rows) {  // B(k,j) at k*ld + j: columns are contiguous
      for (int k = 0; k < kc; ++k)
        copy_panel_row<NR>(dst + k * NR, B.base + (p0 + k) * B.ld + j0 + jr, cols);
      continue;
    }
    if (B.layout == GemmLayout::Cols) {
      for (int j = 0; j < cols; ++j) {
        const T* src = B.base + (j0 + jr + j) * B.ld + p0;
        for (int k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
      }
      continue;
    }
    int64_t c0 = 0;
    if (!B.bounded && axis_contiguous(B.col, j0 + jr, cols, &c0)) {
      for (int k = 0; k < kc; ++k)
        copy_panel_row<NR>(dst + k * NR, B.base + B.off0 + ro[k] + c0, cols);
      continue;
    }
    AxisRun runs[kMaxTile];
    const int nruns = axis_runs(B.col, j0 + jr, cols, runs);
    if (4 * nruns > cols) {  // short runs (the taps of a small filter): element by element
      pack_b_elements<T, NR>(B, p0, kc, j0 + jr, cols, ro, rh, rw, dst);
      continue;
    }
    if (!B.bounded && nruns == 1 && runs[0].step > 1 && cols == NR) {
      pack_b_strided_columns<T, NR>(B.base + B.off0 + runs[0].off, runs[0].step, ro, kc, dst);
      continue;
    }
    for (int k = 0; k < kc; ++k) {
      const T* src = B.base + B.off0 + ro[k];
      T* d = dst + k * NR;
      for (int r = 0; r < nruns; ++r) {
        const AxisRun& u = runs[r];
        const T* s_ = src + u.off;
        T* d_ = d + u.j;
        int lo = 0, hi = u.len;
        if (B.bounded) {
          if (unsigned(B.h0 + rh[k] + u.h) < unsigned(B.H)) run_inside(B.w0 + rw[k] + u.w, u.wstep, u.len, B.W, &lo, &hi);
          else lo = hi = u.len;
          for (int q = 0; q < lo; ++q) d_[q] = T(0);
          for (int q = hi; q < u.len; ++q) d_[q] = T(0);
        }
        if (u.step == 1) std::memcpy(d_ + lo, s_ + lo, sizeof(T) * size_t(hi - lo));
        else if (u.step == 2)
          for (int q = lo; q < hi; ++q) d_[q] = s_[2 * q];
        else
          for (int q = lo; q < hi; ++q) d_[q] = s_[q * u.step];
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// Storing a finished tile. beta: this K block's beta (0: C not read); last: the last K
// block, when the epilogue (bias, ReLU) applies.
template <typename T>
struct TileOut {
  T alpha, beta;
  const T* bias;  // at the tile's first row (or column, bias_per_col), or null
  bool bias_per_col;
  bool relu;
};

template <typename T>
inline T finish(const TileOut<T>& o, int i, int j, T acc, const T* c) {
  T v = o.alpha * acc;
  if (o.beta != T(0)) v += o.beta * *c;
  if (o.bias) v += o.bias[o.bias_per_col ? j : i];
  return o.relu ? relu_s(v) : v;
}

// The transposed store of write_tile (C(i, j) at r0 + i + (j0 + j) * C.col.sa) for the
// tile's first rows, in L x L blocks (L = 8, then 4) transposed in registers; C's old
// values added (beta 1: a later K block), then a bias per column and the ReLU, to each
// stored vector (alpha is 1): the same operations as element by element. Returns how many
// rows it stored (all columns of them).
template <int L>
int store_transposed_rows(const GemmResult<float>& C, const TileOut<float>& o, int64_t r0, int i_from,
                          int rows, int j0, int cols, const float* tile, int ldt) {
  using V = typename Lanes<L>::V;
  if (cols % L != 0) return i_from;
  for (; i_from + L <= rows; i_from += L)
    for (int jb = 0; jb < cols; jb += L) {
      float* c = C.base + C.off0 + r0 + i_from + (j0 + jb) * C.col.sa;
      transpose_block<L>(tile + i_from * ldt + jb, ldt, c, C.col.sa, [&](V& v, int t) {
        if (o.beta != 0.0f) v += load<V>(c + t * C.col.sa);  // beta is 1: 1 * old is old
        if (o.bias) v += o.bias[jb + t];
        if (o.relu) v = relu_v(v);
      });
    }
  return i_from;
}
template <typename T>
int store_transposed_blocks(const GemmResult<T>& C, const TileOut<T>& o, int64_t r0, int rows, int j0,
                            int cols, const T* tile, int ldt) {
  int i = 0;
  if constexpr (kVectorBytes >= 32) i = store_transposed_rows<8>(C, o, r0, i, rows, j0, cols, tile, ldt);
  return store_transposed_rows<4>(C, o, r0, i, rows, j0, cols, tile, ldt);
}

// The general writer: tile[rows x cols] (leading dimension ldt) into C at (i0, j0).
template <typename T>
void write_tile(const GemmResult<T>& C, const TileOut<T>& o, int i0, int rows, int j0, int cols,
                const T* tile, int ldt) {
  if (C.layout == GemmLayout::Rows) {
    for (int i = 0; i < rows; ++i) {
      T* c = C.base + (i0 + i) * C.ld + j0;
      for (int j = 0; j < cols; ++j) c[j] = finish(o, i, j, tile[i * ldt + j], c + j);
    }
    return;
  }
  int64_t r0 = 0;
  if (C.store == GemmStore::Overwrite && !C.bounded && C.col.nb == 1 && C.col.nc == 1 &&
      axis_contiguous(C.row, i0, rows, &r0)) {
    // A tile stored transposed (rows: output positions, contiguous; columns: channels,
    // C.col.sa apart); a channel's bias is one number. Floats go in square blocks
    // transposed in registers (the phases of dgrad: 12% of their time went on storing
    // element by element; wgrad's dw^T, added to once per K block, as much), the rest one
    // channel at a time.
    int i_from = 0;
    if constexpr (sizeof(T) == 4)
      if (o.alpha == T(1) && (o.beta == T(0) || o.beta == T(1)) &&
          !(o.bias && !o.bias_per_col))  // alpha and beta 1: no FMA to differ
        i_from = store_transposed_blocks(C, o, r0, rows, j0, cols, tile, ldt);
    for (int j = 0; j < cols; ++j) {
      T* c = C.base + C.off0 + r0 + (j0 + j) * C.col.sa;
      const T* t = tile + j;
      const T b = !o.bias ? T(0) : o.bias_per_col ? o.bias[j] : T(0);
      if (o.beta != T(0) || (o.bias && !o.bias_per_col)) {
        for (int i = i_from; i < rows; ++i) c[i] = finish(o, i, j, t[i * ldt], c + i);
      } else if (o.relu) {
        for (int i = i_from; i < rows; ++i) c[i] = relu_s(o.alpha * t[i * ldt] + b);
      } else {
        for (int i = i_from; i < rows; ++i) c[i] = o.alpha * t[i * ldt] + b;
      }
    }
    return;
  }
  int64_t ro[kMaxTile];
  int rh[kMaxTile], rw[kMaxTile];
  AxisRun runs[kMaxTile];
  axis_fill(C.row, i0, rows, ro, rh, rw);
  const int nruns = axis_runs(C.col, j0, cols, runs);
  for (int i = 0; i < rows; ++i) {
    T* c = C.base + C.off0 + ro[i];
    const T* t = tile + i * ldt;
    for (int r = 0; r < nruns; ++r) {
      const AxisRun& u = runs[r];
      T* c_ = c + u.off;
      const T* t_ = t + u.j;
      int lo = 0, hi = u.len;
      if (C.bounded) {
        if (unsigned(C.h0 + rh[i] + u.h) >= unsigned(C.H)) continue;
        run_inside(C.w0 + rw[i] + u.w, u.wstep, u.len, C.W, &lo, &hi);
      }
      if (C.store == GemmStore::Accumulate) {  // col2im: add what lands inside the image
        if (u.step == 1)
          for (int q = lo; q < hi; ++q) c_[q] += t_[q];
        else if (u.step == 2)
          for (int q = lo; q < hi; ++q) c_[2 * q] += t_[q];
        else
          for (int q = lo; q < hi; ++q) c_[q * u.step] += t_[q];
      } else if (o.beta == T(0) && !o.bias && !o.relu && o.alpha == T(1)) {
        for (int q = lo; q < hi; ++q) c_[q * u.step] = t_[q];
      } else {
        for (int q = lo; q < hi; ++q)
          c_[q * u.step] = finish(o, i, u.j + q, t_[q], c_ + q * u.step);
      }
    }
  }
}

// Where the micro-kernel reads A: a packed MR-row panel (a[k*MR + i]), or the operand
// itself (Direct: element (i, k) at base[ro[i] + co[k]], no packing).
template <typename T, int MR>
struct PackedA {
  const T* a;
  const T* at_k(int k) const { return a + k * MR; }
  T get(const T* ak, int i) const { return ak[i]; }
};
// Direct keeps a pointer per row, so that each element is one load at row + co[k] (an
// offset from base per row cost an address computation per element: 8 of 37 uops a k).
template <typename T, int MR>
struct DirectA {
  const int64_t* co;
  const T* row[MR];
  int64_t at_k(int k) const { return co[k]; }
  T get(int64_t ck, int i) const { return row[i][ck]; }
};

// The register tile: acc[MR][NV] = sum_k A(:,k)^T b[k][:], then either stored straight to
// c (a full tile over contiguous rows, ldc apart) or left in tile[MR*NR] for write_tile.
template <typename T, int NV_, typename ASrc>
void micro_kernel(int kc, const ASrc a, const T* __restrict b, const TileOut<T>& o,
                  T* __restrict c, int64_t ldc, T* __restrict tile) {
  using V = typename Vec<T>::V;
  using B_ = Blk<T, NV_>;
  constexpr int MR = B_::MR, NV = B_::NV, NR = B_::NR, L = B_::L;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  for (int k = 0; k < kc; ++k, b += NR) {
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(&bv[j], b + j * L, sizeof(V));
    const auto ak = a.at_k(k);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T ai = a.get(ak, i);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];  // an FMA where the ISA has one
    }
  }
  if (!c) {
    std::memcpy(tile, acc, sizeof(acc));
    return;
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) {
      T* cp = c + i * ldc + j * L;
      V v = o.alpha * acc[i][j];
      if (o.beta != T(0)) {
        V old;
        std::memcpy(&old, cp, sizeof(V));
        v += o.beta * old;
      }
      if (o.bias && o.bias_per_col) {
        V bj;
        std::memcpy(&bj, o.bias + j * L, sizeof(V));
        v += bj;
      } else if (o.bias) {
        v += o.bias[i];
      }
      if (o.relu) v = relu_v(v);
      std::memcpy(cp, &v, sizeof(V));
    }
}

// Where a full tile at (i, j) can be stored straight: its rows contiguous, ldc apart.
template <typename T>
T* direct_tile(const GemmResult<T>& C, int i, int j, int n, int64_t* ldc) {
  if (C.store != GemmStore::Overwrite) return nullptr;
  if (C.layout == GemmLayout::Rows) {
    *ldc = C.ld;
    return C.base + i * C.ld + j;
  }
  int64_t c0 = 0;
  if (C.bounded || C.row.nb != 1 || C.row.nc != 1 || !axis_contiguous(C.col, j, n, &c0))
    return nullptr;
  *ldc = C.row.sa;
  return C.base + C.off0 + i * C.row.sa + c0;
}

// ---------------------------------------------------------------------------------
// What a thread keeps packed between its tiles: the A block of rows i0 and the B block of
// columns j0 (all K blocks of each), when they fit their buffers.
struct PackCache {
  int a_rows = -1, b_cols = -1;
};

// One mc x nc tile of C at (i0, j0): K in equal blocks of at most KC, in order.
template <typename T, int NV>
void gemm_tile(const GemmProblem<T>& p, int i0, int mc, int j0, int nc, PackCache* cache) {
  using B_ = Blk<T, NV>;
  constexpr int MR = B_::MR, NR = B_::NR, KC = B_::KC;
  T* pa = reinterpret_cast<T*>(gemm_pack_a_buffer());
  T* pb = reinterpret_cast<T*>(gemm_pack_b_buffer());
  mc = imin(mc, p.M - i0);
  nc = imin(nc, p.N - j0);
  const int mc_pad = ceil_div(mc, MR) * MR, nc_pad = ceil_div(nc, NR) * NR;
  const bool direct_a = p.A.layout == GemmLayout::Direct;
  const bool keep_a = !direct_a && int64_t(mc_pad) * p.K * int64_t(sizeof(T)) <= kGemmPackABytes;
  const bool keep_b = int64_t(nc_pad) * p.K * int64_t(sizeof(T)) <= kGemmPackBBytes;
  if (!keep_a) cache->a_rows = -1;  // this tile overwrites what the buffer held
  if (!keep_b) cache->b_cols = -1;
  alignas(64) T tile[kMaxTile * kMaxTile / 4];
  static_assert(B_::MR * B_::NR <= kMaxTile * kMaxTile / 4, "tile buffer");
  // K in equal blocks of at most KC; a direct A keeps up to kMaxKcDirect in one block, so that a
  // tile (stored transposed, element by element) is written once.
  const int kc_max = direct_a && keep_b ? kMaxKcDirect : KC;
  const int kcb = ceil_div(p.K, ceil_div(p.K, kc_max));
  for (int p0 = 0; p0 < p.K; p0 += kcb) {
    const int kc = imin(kcb, p.K - p0);
    T* a_blk = keep_a ? pa + int64_t(mc_pad) * p0 : pa;
    T* b_blk = keep_b ? pb + int64_t(nc_pad) * p0 : pb;
    if (!direct_a && (!keep_a || cache->a_rows != i0)) pack_a<T, MR>(p.A, p.M, i0, mc, p0, kc, a_blk);
    if (!keep_b || cache->b_cols != j0) pack_b<T, NR>(p.B, p.N, p0, kc, j0, nc, b_blk);
    int64_t co[kMaxKc];
    if (direct_a) axis_offsets(p.A.col, p0, kc, co);
    const bool last = p0 + kc >= p.K;
    const bool accumulate = p.C.store == GemmStore::Accumulate;
    const T beta = p0 == 0 ? p.C.beta : T(1);
    for (int jr = 0; jr < nc; jr += NR) {
      const int cols = imin(NR, nc - jr);
      for (int ir = 0; ir < mc; ir += MR) {
        const int rows = imin(MR, mc - ir);
        const T* bias = !last || !p.C.bias ? nullptr
                        : p.C.bias_per_col ? p.C.bias + j0 + jr : p.C.bias + i0 + ir;
        const TileOut<T> o{accumulate ? T(1) : p.C.alpha, beta, bias, p.C.bias_per_col,
                           last && p.C.relu};
        int64_t ldc = 0;
        T* c = rows == MR && cols == NR ? direct_tile(p.C, i0 + ir, j0 + jr, NR, &ldc) : nullptr;
        const T* bp = b_blk + int64_t(jr) * kc;
        if (direct_a) {
          int64_t ro[MR];
          axis_offsets(p.A.row, i0 + ir, rows, ro);
          DirectA<T, MR> a{co, {}};
          for (int i = 0; i < MR; ++i)  // rows past the last: read, then discarded
            a.row[i] = p.A.base + p.A.off0 + ro[imin(i, rows - 1)];
          micro_kernel<T, NV>(kc, a, bp, o, c, ldc, tile);
        } else {
          micro_kernel<T, NV>(kc, PackedA<T, MR>{a_blk + int64_t(ir) * kc}, bp, o, c, ldc, tile);
        }
        if (!c) write_tile(p.C, o, i0 + ir, rows, j0 + jr, cols, tile, NR);
      }
    }
  }
  if (keep_a) cache->a_rows = i0;
  if (keep_b) cache->b_cols = j0;
}

// Tiles of C: at most MC x NC, split further until every thread has about two.
// Tiling never changes any element's summation order, only who computes it.
void choose_tiles(int M, int N, int MR, int NR, int MC, int NC, int threads, int* mc, int* nc) {
  int mt = ceil_div(M, MC), nt = ceil_div(N, NC);
  const int m_units = ceil_div(M, MR), n_units = ceil_div(N, NR);
  while (threads > 1 && mt * nt < 2 * threads) {
    const bool grow_m = mt < m_units && (M / mt >= N / nt || nt >= n_units);
    if (grow_m) ++mt;
    else if (nt < n_units) ++nt;
    else break;
  }
  *mc = ceil_div(ceil_div(M, mt), MR) * MR;
  *nc = ceil_div(ceil_div(N, nt), NR) * NR;
}

template <typename T, int NV>
void run_tiles(const GemmProblem<T>& p) {
  using B_ = Blk<T, NV>;
  const double flops = 2.0 * p.M * p.N * p.K;
  int threads = p.threads;
  if (threads == 0) threads = (omp_in_parallel() || flops < 2e5) ? 1 : omp_get_max_threads();
  int mc = 0, nc = 0;
  choose_tiles(p.M, p.N, B_::MR, B_::NR, B_::MC, B_::NC, threads, &mc, &nc);
  const int mt = ceil_div(p.M, mc), nt = ceil_div(p.N, nc);
  if (threads == 1) {  // no parallel region: inside another one it would still build a team
    PackCache cache;
    for (int t = 0; t < mt * nt; ++t) gemm_tile<T, NV>(p, (t / nt) * mc, mc, (t % nt) * nc, nc, &cache);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    PackCache cache;
    // Dynamic: under contention from another process the threads that run more take
    // more tiles. Who computes a tile never changes its bits.
#pragma omp for schedule(dynamic)
    for (int t = 0; t < mt * nt; ++t) gemm_tile<T, NV>(p, (t / nt) * mc, mc, (t % nt) * nc, nc, &cache);
  }
}

template <typename T>
void run(const GemmProblem<T>& p) {
  // Narrow C (N = 9, 36, ...) wastes less of a one-vector tile. Either tile sums every
  // element in the same order, so the choice never changes a bit of the result.
  constexpr int L = Blk<T, 1>::L;
  const bool narrow = 5 * ceil_div(p.N, L) * L < 4 * ceil_div(p.N, 2 * L) * 2 * L;
  if (narrow) run_tiles<T, 1>(p);
  else run_tiles<T, 2>(p);
}

}  // namespace
}  // namespace cvae::kernels::cpu::CVAE_GEMM_NS
