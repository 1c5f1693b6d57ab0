// gemm_views.h (kernels/cpu internal): how the CPU GEMM reads its operands and writes C.
// A matrix element (i, j) lives at base[off0 + off(row i) + off(col j)]; each axis maps
// its index to memory through up to three digits, and optional image bounds make
// positions outside an image read as zero (im2col's padding) or be skipped on store
// (col2im). So every convolution pass is one GEMM, with no im2col buffer.
//
// Plain structs only: the per-ISA translation units (gemm_avx512.cpp, ...) are compiled
// with their own -m flags, so nothing inline may be shared between them and the rest
// (the linker would keep one copy, maybe one with instructions this CPU lacks).
#pragma once

#include <cstdint>

namespace cvae::kernels::cpu {

// Index i = (a * nb + b) * nc + c  ->  offset a*sa + b*sb + c*sc, image position
// (h, w) = (b*hb, c*wc). A plain matrix axis has nb = nc = 1: offset i*sa.
struct GemmAxis {
  int64_t sa = 0, sb = 0, sc = 0;
  int nb = 1, nc = 1;
  int hb = 0, wc = 0;
};

// How the packers may read an operand: Rows (element (i,j) at i*ld + j), Cols (at
// j*ld + i), or Gather (through the axes, with bounds if `bounded`). Direct (A only): as
// Gather, never out of bounds (the caller pads), read by the micro-kernel itself with no
// packing: for convolutions with few channels, where im2col packing would cost as much
// as the arithmetic (each packed element serves only K multiply-adds).
enum class GemmLayout { Rows, Cols, Gather, Direct };

template <typename T>
struct GemmOperand {
  const T* base = nullptr;
  GemmLayout layout = GemmLayout::Rows;
  int64_t ld = 0;  // Rows / Cols
  // Gather: base[off0 + off(row) + off(col)], inside iff 0 <= h0 + h(row) + h(col) < H
  // and 0 <= w0 + w(row) + w(col) < W (when bounded).
  int64_t off0 = 0;
  GemmAxis row, col;
  bool bounded = false;
  int h0 = 0, w0 = 0, H = 0, W = 0;
};

// C = alpha * A B + beta * C (Overwrite; beta == 0: C is not read), or C += A B with
// elements outside the bounds skipped (Accumulate: col2im; the caller zeroes C and makes
// sure no two threads add into the same elements). The epilogue, applied once C is
// complete: C = max(C + bias, 0) (bias[i] per row, or bias[j] per column when
// bias_per_col; either part optional; not with Accumulate).
enum class GemmStore { Overwrite, Accumulate };

template <typename T>
struct GemmResult {
  T* base = nullptr;
  GemmLayout layout = GemmLayout::Rows;  // Rows or Gather
  int64_t ld = 0;
  int64_t off0 = 0;
  GemmAxis row, col;
  bool bounded = false;
  int h0 = 0, w0 = 0, H = 0, W = 0;
  GemmStore store = GemmStore::Overwrite;
  T alpha = T(1), beta = T(0);
  const T* bias = nullptr;
  bool bias_per_col = false;
  bool relu = false;
};

// C[M,N] (op) A[M,K] B[K,N]. threads: 0 = the GEMM decides (all threads unless called
// inside a parallel region or the problem is tiny), 1 = this thread only.
template <typename T>
struct GemmProblem {
  int M = 0, N = 0, K = 0;
  GemmOperand<T> A, B;
  GemmResult<T> C;
  int threads = 0;
};

// The per-ISA drivers (one translation unit each) and the dispatcher over them.
void gemm_run_generic(const GemmProblem<float>& p);
void gemm_run_generic(const GemmProblem<double>& p);
void gemm_run_avx2(const GemmProblem<float>& p);
void gemm_run_avx2(const GemmProblem<double>& p);
void gemm_run_avx512(const GemmProblem<float>& p);
void gemm_run_avx512(const GemmProblem<double>& p);
template <typename T> void gemm_run(const GemmProblem<T>& p);

// Each thread's packing buffers (defined once, in gemm.cpp), 64-byte aligned.
constexpr int64_t kGemmPackABytes = 192 * 1024, kGemmPackBBytes = 1024 * 1024;
unsigned char* gemm_pack_a_buffer();
unsigned char* gemm_pack_b_buffer();

}  // namespace cvae::kernels::cpu
