// gemm.cu: the hand-written SGEMM, row-major C = alpha op(A) op(B) + beta C, the
// twin of cpu::gemm. Shared-memory tiles, register tiles, explicit FMAs; no
// split-K atomics, so results are deterministic. Not here: cuBLAS (gemm_cublas.cu).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {
namespace {

// A block computes a BM x BN tile of C with TY x TX threads, each holding a
// TM x TN register tile as (TM/4) x (TN/4) groups of 4x4 spread BM/(TM/4) rows
// and BN/(TN/4) columns apart (so the shared-memory reads are float4 and
// conflict-free). K advances BK at a time through double-buffered shared
// memory. KS > 1 splits K inside the block: KS slices of TY*TX threads take
// every KS-th K tile and are summed in slice order at the end (deterministic),
// which gives small-C problems (the CVAE's dense layers) more warps per SM.
template <int BM_, int BN_, int BK_, int TM_, int TN_, int KS_>
struct Cfg {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_, KS = KS_;
  static constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY, THREADS = NT * KS;
  static constexpr int PAD = 4;  // keeps float4 alignment, breaks store bank conflicts
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register tiles are groups of 4x4");
  static_assert((BM * BK) % NT == 0 && (BN * BK) % NT == 0, "tile loads must divide evenly");
};
using Large = Cfg<128, 128, 8, 8, 8, 1>;  // 256 threads, for C with >= 2 waves of 128x128 tiles
using Medium = Cfg<64, 64, 16, 4, 4, 1>;  // 256 threads
using Small = Cfg<32, 32, 8, 4, 4, 4>;    // 64 threads x 4 K slices

// C[m,n] = alpha * sum_k op(A)[m,k] op(B)[k,n] + beta * C[m,n]   (beta == 0: C not read)
// op(A)[m,k] = TA ? A[k*lda + m] : A[m*lda + k];  op(B)[k,n] = TB ? B[n*ldb + k] : B[k*ldb + n]
// Within a K slice each C element is one fmaf chain over k in increasing order.
template <class G, bool TA, bool TB>
__global__ void __launch_bounds__(G::THREADS)
    sgemm_kernel(int M, int N, int K, float alpha, const float* __restrict__ A, int lda,
                 const float* __restrict__ B, int ldb, float beta, float* __restrict__ C,
                 int ldc) {
  constexpr int BM = G::BM, BN = G::BN, BK = G::BK, TM = G::TM, TN = G::TN, KS = G::KS;
  constexpr int NT = G::NT, TX = G::TX;
  constexpr int LA = BM * BK / NT, LB = BN * BK / NT;  // elements each thread loads
  constexpr int RS = BM / (TM / 4), CS = BN / (TN / 4);  // row / column stride of 4x4 groups
  // The tiles, and (KS > 1) the space where slices 1..KS-1 park their sums.
  struct Tiles {
    float A[KS][2][BK][BM + G::PAD];
    float B[KS][2][BK][BN + G::PAD];
  };
  union Smem {
    Tiles t;
    float red[KS > 1 ? (KS - 1) * TM * TN * NT : 1];
  };
  __shared__ __align__(16) Smem sm;
  auto& As = sm.t.A;
  auto& Bs = sm.t.B;

  const int slice = static_cast<int>(threadIdx.x) / NT;
  const int t = static_cast<int>(threadIdx.x) % NT;
  const int tx = t % TX, ty = t / TX;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.x) * BN;

  // Which (row/col, k) of the tile load element l of this thread: consecutive
  // threads walk the direction that is contiguous in global memory (coalesced).
  auto a_coord = [&](int l, int& mm, int& kk) {
    const int e = t + l * NT;
    if (TA) { kk = e / BM; mm = e % BM; } else { mm = e / BK; kk = e % BK; }
  };
  auto b_coord = [&](int l, int& nn, int& kk) {
    const int e = t + l * NT;
    if (TB) { nn = e / BK; kk = e % BK; } else { kk = e / BN; nn = e % BN; }
  };

  float ra[LA], rb[LB];
  auto load = [&](int64_t k0) {  // global -> registers, zeros outside the matrices
#pragma unroll
    for (int l = 0; l < LA; ++l) {
      int mm, kk;
      a_coord(l, mm, kk);
      const int64_t gm = m0 + mm, gk = k0 + kk;
      ra[l] = (gm < M && gk < K) ? (TA ? A[gk * lda + gm] : A[gm * lda + gk]) : 0.f;
    }
#pragma unroll
    for (int l = 0; l < LB; ++l) {
      int nn, kk;
      b_coord(l, nn, kk);
      const int64_t gn = n0 + nn, gk = k0 + kk;
      rb[l] = (gn < N && gk < K) ? (TB ? B[gn * ldb + gk] : B[gk * ldb + gn]) : 0.f;
    }
  };
  auto store = [&](int buf) {  // registers -> shared, A and B both stored k-major
#pragma unroll
    for (int l = 0; l < LA; ++l) {
      int mm, kk;
      a_coord(l, mm, kk);
      As[slice][buf][kk][mm] = ra[l];
    }
#pragma unroll
    for (int l = 0; l < LB; ++l) {
      int nn, kk;
      b_coord(l, nn, kk);
      Bs[slice][buf][kk][nn] = rb[l];
    }
  };

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  // Every slice runs the same number of steps (uniform __syncthreads); a slice
  // whose K tile lies past K loads zeros.
  const int64_t ktiles = (static_cast<int64_t>(K) + BK - 1) / BK;
  const int64_t steps = (ktiles + KS - 1) / KS;
  int buf = 0;
  load(static_cast<int64_t>(slice) * BK);
  store(0);
  __syncthreads();
  for (int64_t s = 0; s < steps; ++s) {
    const bool more = s + 1 < steps;
    if (more) load(((s + 1) * KS + slice) * BK);  // in flight while we compute
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&As[slice][buf][kk][g * RS + ty * 4]);
        a[g * 4 + 0] = v.x; a[g * 4 + 1] = v.y; a[g * 4 + 2] = v.z; a[g * 4 + 3] = v.w;
      }
#pragma unroll
      for (int g = 0; g < TN / 4; ++g) {
        const float4 v = *reinterpret_cast<const float4*>(&Bs[slice][buf][kk][g * CS + tx * 4]);
        b[g * 4 + 0] = v.x; b[g * 4 + 1] = v.y; b[g * 4 + 2] = v.z; b[g * 4 + 3] = v.w;
      }
      // Explicit FMAs: the library is built with --fmad=false (for bit-exact
      // Philox), which would otherwise split every multiply-add in two.
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = __fmaf_rn(a[i], b[j], acc[i][j]);
    }
    if (more) {
      // buf ^ 1 was last read in the previous step, before the previous sync.
      store(buf ^ 1);
      __syncthreads();
      buf ^= 1;
    }
  }

  if constexpr (KS > 1) {
    // Slices 1..KS-1 park their sums in shared memory (over the tiles), slice
    // 0 adds them in slice order.
    float* red = sm.red;
    __syncthreads();  // everyone is done reading the tiles
    if (slice > 0) {
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) red[(((slice - 1) * TM + i) * TN + j) * NT + t] = acc[i][j];
    }
    __syncthreads();
    if (slice > 0) return;
    for (int s2 = 1; s2 < KS; ++s2)
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += red[(((s2 - 1) * TM + i) * TN + j) * NT + t];
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = m0 + (i / 4) * RS + ty * 4 + (i % 4);
    if (row >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t col = n0 + (j / 4) * CS + tx * 4 + (j % 4);
      if (col >= N) continue;
      float* c = C + row * ldc + col;
      const float v = alpha * acc[i][j];
      *c = beta == 0.f ? v : v + beta * *c;
    }
  }
}

// C[m,n] = beta == 0 ? 0 : beta * C[m,n]   (K == 0; C is [M, ldc], grid-stride)
__global__ void scale_c_kernel(int M, int N, float beta, float* C, int ldc) {
  const int64_t total = static_cast<int64_t>(M) * N;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += stride) {
    float* c = C + (e / N) * ldc + e % N;
    *c = beta == 0.f ? 0.f : beta * *c;
  }
}

template <class G>
void launch_tiles(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((N + G::BN - 1) / G::BN),
                  static_cast<unsigned>((M + G::BM - 1) / G::BM));
  if (grid.y > 65535u) throw std::invalid_argument("gemm: M too large for the grid");
  if (!ta && !tb)
    launch<sgemm_kernel<G, false, false>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc);
  else if (!ta && tb)
    launch<sgemm_kernel<G, false, true>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc);
  else if (ta && !tb)
    launch<sgemm_kernel<G, true, false>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc);
  else
    launch<sgemm_kernel<G, true, true>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc);
}

// Multiprocessors of the current device (cached per thread; no synchronisation).
int sm_count() {
  thread_local int cached_dev = -1, cached_sms = 0;
  int dev = 0;
  CVAE_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev != cached_dev) {
    CVAE_CUDA_CHECK(cudaDeviceGetAttribute(&cached_sms, cudaDevAttrMultiProcessorCount, dev));
    cached_dev = dev;
  }
  return cached_sms;
}

int64_t tiles(int M, int N, int bm, int bn) {
  return static_cast<int64_t>((M + bm - 1) / bm) * ((N + bn - 1) / bn);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream) {
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("gemm: negative size");
  if (M == 0 || N == 0) return;
  bool ok = A && B && C && ldc >= N;
  ok = ok && lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && lda >= 1 && ldb >= 1;
  if (!ok) throw std::invalid_argument("gemm: bad leading dimension or null pointer");
  if (K == 0) {
    const int64_t total = static_cast<int64_t>(M) * N;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65535));
    launch<scale_c_kernel>(grid, 256, 0, stream, M, N, beta, C, ldc);
    return;
  }
  // The largest tile that still fills the GPU: Large wants two waves of
  // 128x128 tiles, Medium one wave of 64x64; the rest (small C) splits K.
  const int sms = sm_count();
  if (tiles(M, N, Large::BM, Large::BN) >= 2 * sms)
    launch_tiles<Large>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  else if (tiles(M, N, Medium::BM, Medium::BN) >= sms)
    launch_tiles<Medium>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
  else
    launch_tiles<Small>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}

}  // namespace cvae::kernels::cuda
