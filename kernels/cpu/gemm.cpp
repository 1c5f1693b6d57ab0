// gemm.cpp: the CPU GEMM, row-major C = alpha*op(A)*op(B) + beta*C, float and double.
// Goto-style: A and B blocks packed into fixed thread-local buffers, a register-blocked
// micro-kernel in GCC vector extensions, OpenMP over tiles of C. Not a full BLAS (no
// complex types, no batched or strided-batch calls).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

template <typename T> struct Simd;  // one 64-byte vector (zmm with AVX-512)
template <> struct Simd<float> { typedef float V __attribute__((vector_size(64))); };
template <> struct Simd<double> { typedef double V __attribute__((vector_size(64))); };

// Block sizes: an MR x NR register tile (NV vectors wide: 2 normally, 1 for narrow C),
// KC-deep panels, MC x NC tiles of C. KC is set in bytes so one buffer serves both types.
template <typename T, int NV_ = 2> struct Blk {
  static constexpr int L = 64 / sizeof(T);  // lanes per vector
  static constexpr int NV = NV_, MR = NV == 2 ? 8 : 16, NR = NV * L;
  static constexpr int KC = 1024 / sizeof(T);
  static constexpr int MC = 96, NC = 512;
  static_assert(MC % MR == 0 && NC % NR == 0);
};
constexpr size_t kPackABytes = 96 * 1024, kPackBBytes = 512 * 1024;
static_assert(Blk<float>::MC * Blk<float>::KC * sizeof(float) <= kPackABytes);
static_assert(Blk<double>::KC * Blk<double>::NC * sizeof(double) <= kPackBBytes);

alignas(64) thread_local unsigned char t_pack_a[kPackABytes];
alignas(64) thread_local unsigned char t_pack_b[kPackBBytes];

template <typename T> struct Args {
  bool ta, tb;
  int M, N, K;
  T alpha;
  const T* A;
  int lda;
  const T* B;
  int ldb;
  T beta;
  T* C;
  int ldc;
};

// dst[ir-panel][k][i] = op(A)[i0+ir+i, p0+k], rows past M zero.
template <typename T, int NV>
void pack_a(const Args<T>& g, int i0, int mc, int p0, int kc, T* dst) {
  constexpr int MR = Blk<T, NV>::MR;
  for (int ir = 0; ir < mc; ir += MR, dst += (size_t)MR * kc) {
    int rows = std::min(MR, g.M - i0 - ir);
    if (rows < MR) std::fill(dst, dst + (size_t)MR * kc, T(0));
    if (g.ta) {  // A stored [K,M]: rows of A are columns of the panel
      for (int k = 0; k < kc; ++k)
        std::memcpy(dst + k * MR, g.A + (size_t)(p0 + k) * g.lda + i0 + ir, rows * sizeof(T));
    } else {
      for (int i = 0; i < rows; ++i)
        for (int k = 0; k < kc; ++k) dst[k * MR + i] = g.A[(size_t)(i0 + ir + i) * g.lda + p0 + k];
    }
  }
}

// dst[jr-panel][k][j] = op(B)[p0+k, j0+jr+j], columns past N zero.
template <typename T, int NV>
void pack_b(const Args<T>& g, int j0, int nc, int p0, int kc, T* dst) {
  constexpr int NR = Blk<T, NV>::NR;
  for (int jr = 0; jr < nc; jr += NR, dst += (size_t)NR * kc) {
    int cols = std::min(NR, g.N - j0 - jr);
    if (cols < NR) std::fill(dst, dst + (size_t)NR * kc, T(0));
    if (g.tb) {
      for (int j = 0; j < cols; ++j)
        for (int k = 0; k < kc; ++k) dst[k * NR + j] = g.B[(size_t)(j0 + jr + j) * g.ldb + p0 + k];
    } else {
      for (int k = 0; k < kc; ++k)
        std::memcpy(dst + k * NR, g.B + (size_t)(p0 + k) * g.ldb + j0 + jr, cols * sizeof(T));
    }
  }
}

// c[MR,NR] = alpha * sum_k a[k,:]^T b[k,:] + beta * c   (beta == 0: c not read);
// only the top-left rows x cols part of c is touched.
template <typename T, int NV_>
void micro_kernel(int kc, const T* __restrict a, const T* __restrict b, T alpha, T beta,
                  T* __restrict c, int ldc, int rows, int cols) {
  using V = typename Simd<T>::V;
  using B_ = Blk<T, NV_>;
  constexpr int MR = B_::MR, NV = B_::NV, NR = B_::NR, L = B_::L;
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  for (int k = 0; k < kc; ++k, a += MR, b += NR) {
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) std::memcpy(&bv[j], b + j * L, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T ai = a[i];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
    }
  }
  if (rows == MR && cols == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) {
        T* cp = c + (size_t)i * ldc + j * L;
        V cv = alpha * acc[i][j];
        if (beta != T(0)) {
          V old;
          std::memcpy(&old, cp, sizeof(V));
          cv += beta * old;
        }
        std::memcpy(cp, &cv, sizeof(V));
      }
    return;
  }
  alignas(64) T tmp[MR * NR];
  std::memcpy(tmp, acc, sizeof(tmp));
  for (int i = 0; i < rows; ++i)
    for (int j = 0; j < cols; ++j) {
      T& cij = c[(size_t)i * ldc + j];
      cij = beta == T(0) ? alpha * tmp[i * NR + j] : alpha * tmp[i * NR + j] + beta * cij;
    }
}

// One mc x nc tile of C at (i0, j0): K in KC blocks, in order (deterministic).
template <typename T, int NV>
void gemm_tile(const Args<T>& g, int i0, int mc, int j0, int nc) {
  constexpr int MR = Blk<T, NV>::MR, NR = Blk<T, NV>::NR, KC = Blk<T, NV>::KC;
  T* pa = reinterpret_cast<T*>(t_pack_a);
  T* pb = reinterpret_cast<T*>(t_pack_b);
  mc = std::min(mc, g.M - i0);
  nc = std::min(nc, g.N - j0);
  for (int p0 = 0; p0 < g.K; p0 += KC) {
    int kc = std::min(KC, g.K - p0);
    pack_a<T, NV>(g, i0, mc, p0, kc, pa);
    pack_b<T, NV>(g, j0, nc, p0, kc, pb);
    T beta = p0 == 0 ? g.beta : T(1);
    for (int jr = 0; jr < nc; jr += NR)
      for (int ir = 0; ir < mc; ir += MR)
        micro_kernel<T, NV>(kc, pa + (size_t)ir * kc, pb + (size_t)jr * kc, g.alpha, beta,
                     g.C + (size_t)(i0 + ir) * g.ldc + j0 + jr, g.ldc, std::min(MR, mc - ir),
                     std::min(NR, nc - jr));
  }
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// Tiles of C: at most MC x NC, split further until every thread has about two.
// Tiling never changes any element's summation order, only who computes it.
void choose_tiles(int M, int N, int MR, int NR, int MC, int NC, int threads, int* mc, int* nc) {
  int mt = ceil_div(M, MC), nt = ceil_div(N, NC);
  int m_units = ceil_div(M, MR), n_units = ceil_div(N, NR);
  while (threads > 1 && mt * nt < 2 * threads) {
    bool grow_m = mt < m_units && (M / mt >= N / nt || nt >= n_units);
    if (grow_m) ++mt;
    else if (nt < n_units) ++nt;
    else break;
  }
  *mc = ceil_div(ceil_div(M, mt), MR) * MR;
  *nc = ceil_div(ceil_div(N, nt), NR) * NR;
}

// K == 0: C = beta * C (beta == 0: zeros, C not read).
template <typename T>
void scale_c(int M, int N, T beta, T* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      T& c = C[(size_t)i * ldc + j];
      c = beta == T(0) ? T(0) : beta * c;
    }
}

template <typename T>
void check_args(const Args<T>& g) {
  bool ok = g.M >= 0 && g.N >= 0 && g.K >= 0 && g.A && g.B && g.C;
  ok = ok && g.lda >= std::max(1, g.ta ? g.M : g.K) && g.ldb >= std::max(1, g.tb ? g.K : g.N);
  ok = ok && g.ldc >= std::max(1, g.N);
  if (!ok) throw std::invalid_argument("gemm: bad sizes, leading dimensions or null pointer");
}

// All tiles of C with the NV-wide micro-kernel, spread over the threads.
template <typename T, int NV>
void gemm_tiles(const Args<T>& g) {
  using B_ = Blk<T, NV>;
  double flops = 2.0 * g.M * g.N * g.K;
  int threads = (omp_in_parallel() || flops < 2e5) ? 1 : omp_get_max_threads();
  int mc = 0, nc = 0;
  choose_tiles(g.M, g.N, B_::MR, B_::NR, B_::MC, B_::NC, threads, &mc, &nc);
  int mt = ceil_div(g.M, mc), nt = ceil_div(g.N, nc);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int t = 0; t < mt * nt; ++t) gemm_tile<T, NV>(g, (t / nt) * mc, mc, (t % nt) * nc, nc);
}

}  // namespace

// C = alpha * op(A) * op(B) + beta * C
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  const Args<T> g{trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  check_args(g);
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  // Narrow C (N = 9, 36, ...) wastes less of a one-vector tile. Either kernel sums every
  // element in the same order, so the choice never changes a bit of the result.
  constexpr int L = Blk<T>::L;
  bool narrow = 5 * ceil_div(N, L) * L < 4 * ceil_div(N, 2 * L) * 2 * L;
  if (narrow) gemm_tiles<T, 1>(g);
  else gemm_tiles<T, 2>(g);
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*,
                          int, float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int,
                           const double*, int, double, double*, int);

}  // namespace cvae::kernels::cpu
