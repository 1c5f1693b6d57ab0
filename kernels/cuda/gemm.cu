// gemm.cu: the hand-written SGEMM, row-major C = alpha op(A) op(B) + beta C, the
// twin of cpu::gemm, and the dense layer's forward with its bias/ReLU epilogue (the
// twin of cpu::linear_fwd). Shared-memory tiles, register tiles, explicit FMAs. A C too
// small to fill the GPU splits K over blocks; no float atomics: the last block of a
// tile adds the slices in order, so results are deterministic. Not here: cuBLAS.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "kernels/cuda/grid_reduce.cuh"
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

// What the kernel does after the sums: C = act(alpha * sum + beta * C + bias[n]), and where
// a split K parks its slices.
struct Epilogue {
  const float* bias;   // [N] or null
  bool relu;
  int k_split;         // the K extent of one blockIdx.z (all of K when gridDim.z == 1)
  float* partial;      // gridDim.z > 1: [gridDim.z][M][N], one slice per z
  unsigned* counters;  // gridDim.z > 1: one per tile, zero between launches
};

// C[m,n] = act(alpha * sum_k op(A)[m,k] op(B)[k,n] + beta * C[m,n] + bias[n])   (beta == 0: C not read)
// op(A)[m,k] = TA ? A[k*lda + m] : A[m*lda + k];  op(B)[k,n] = TB ? B[n*ldb + k] : B[k*ldb + n]
// Within a K slice (of the block, KS, and of the grid, blockIdx.z) each C element is one
// fmaf chain over k in increasing order; slices are added in increasing order.
template <class G, bool TA, bool TB>
__global__ void __launch_bounds__(G::THREADS)
    sgemm_kernel(int M, int N, int K, float alpha, const float* __restrict__ A, int lda,
                 const float* __restrict__ B, int ldb, float beta, float* __restrict__ C,
                 int ldc, Epilogue ep) {
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
  // This block's K range (the grid's split of K along z).
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * ep.k_split;
  const int64_t k_end = min(static_cast<long long>(K), static_cast<long long>(k_begin + ep.k_split));

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
      ra[l] = (gm < M && gk < k_end) ? (TA ? A[gk * lda + gm] : A[gm * lda + gk]) : 0.f;
    }
#pragma unroll
    for (int l = 0; l < LB; ++l) {
      int nn, kk;
      b_coord(l, nn, kk);
      const int64_t gn = n0 + nn, gk = k0 + kk;
      rb[l] = (gn < N && gk < k_end) ? (TB ? B[gn * ldb + gk] : B[gk * ldb + gn]) : 0.f;
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
  const int64_t ktiles = (k_end - k_begin + BK - 1) / BK;
  const int64_t steps = (ktiles + KS - 1) / KS;
  int buf = 0;
  load(k_begin + static_cast<int64_t>(slice) * BK);
  store(0);
  __syncthreads();
  for (int64_t s = 0; s < steps; ++s) {
    const bool more = s + 1 < steps;
    if (more) load(k_begin + ((s + 1) * KS + slice) * BK);  // in flight while we compute
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

  // Slice 0 of the block ends up with the block's sums (the others only hand theirs over).
  const bool owner = slice == 0;
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
    if (owner)
      for (int s2 = 1; s2 < KS; ++s2)
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] += red[(((s2 - 1) * TM + i) * TN + j) * NT + t];
  }

  // The C element (i, j) of this thread's register tile, and its final value.
  auto row_of = [&](int i) { return m0 + (i / 4) * RS + ty * 4 + (i % 4); };
  auto col_of = [&](int j) { return n0 + (j / 4) * CS + tx * 4 + (j % 4); };
  auto finish = [&](int64_t row, int64_t col, float sum) {
    float* c = C + row * ldc + col;
    const float v = alpha * sum;
    float out = beta == 0.f ? v : v + beta * *c;
    if (ep.bias) out += ep.bias[col];
    if (ep.relu) out = out < 0.f ? 0.f : out;  // NaN kept, as the CPU's relu
    *c = out;
  };
  // f(i, j, row, col) for every element of the register tile inside C.
  auto each_inside = [&](auto&& f) {
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = row_of(i);
      if (row >= M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int64_t col = col_of(j);
        if (col < N) f(i, j, row, col);
      }
    }
  };

  if (gridDim.z == 1) {
    if (!owner) return;
    each_inside([&](int i, int j, int64_t row, int64_t col) { finish(row, col, acc[i][j]); });
    return;
  }
  // Split K: every block parks its slice; the tile's last block adds the slices in z order.
  const int64_t mn = static_cast<int64_t>(M) * N;
  if (owner) {
    float* mine = ep.partial + blockIdx.z * mn;
    each_inside([&](int i, int j, int64_t row, int64_t col) { mine[row * N + col] = acc[i][j]; });
  }
  if (!last_block_arrives(&ep.counters[blockIdx.y * gridDim.x + blockIdx.x], gridDim.z) || !owner) return;
  const volatile float* slices = ep.partial;
  each_inside([&](int, int, int64_t row, int64_t col) {
    float sum = slices[row * N + col];
    for (unsigned z = 1; z < gridDim.z; ++z) sum += slices[z * mn + row * N + col];
    finish(row, col, sum);
  });
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
                  const float* B, int ldb, float beta, float* C, int ldc, Epilogue ep, unsigned splits,
                  cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((N + G::BN - 1) / G::BN),
                  static_cast<unsigned>((M + G::BM - 1) / G::BM), splits);
  if (grid.y > 65535u) throw std::invalid_argument("gemm: M too large for the grid");
  if (!ta && !tb)
    launch<sgemm_kernel<G, false, false>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc, ep);
  else if (!ta && tb)
    launch<sgemm_kernel<G, false, true>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc, ep);
  else if (ta && !tb)
    launch<sgemm_kernel<G, true, false>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc, ep);
  else
    launch<sgemm_kernel<G, true, true>>(grid, G::THREADS, 0, stream, M, N, K, alpha, A, lda, B,
        ldb, beta, C, ldc, ep);
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

namespace {

// Split K over blocks when the tiles of C cannot fill the GPU: enough slices for about one
// wave, each at least kMinSplitK deep and a whole number of the Small tile's K step.
constexpr int kMinSplitK = 64, kSplitStep = Small::BK * Small::KS, kMaxSplits = 32;

// The epilogue's act(... + bias) and the choice of tile and split: the one GEMM driver.
void gemm_ex(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
             int ldb, float beta, float* C, int ldc, const float* bias, bool relu, cudaStream_t stream) {
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("gemm: negative size");
  if (M == 0 || N == 0) return;
  bool ok = A && B && C && ldc >= N;
  ok = ok && lda >= (ta ? M : K) && ldb >= (tb ? K : N) && lda >= 1 && ldb >= 1;
  if (!ok) throw std::invalid_argument("gemm: bad leading dimension or null pointer");
  Epilogue ep{bias, relu, std::max(K, 1), nullptr, nullptr};
  if (K == 0 && !bias && !relu) {
    const int64_t total = static_cast<int64_t>(M) * N;
    const unsigned grid = static_cast<unsigned>(std::min<int64_t>((total + 255) / 256, 65535));
    launch<scale_c_kernel>(grid, 256, 0, stream, M, N, beta, C, ldc);
    return;
  }
  // The largest tile that still fills the GPU: Large wants two waves of
  // 128x128 tiles, Medium one wave of 64x64; the rest (small C) splits K.
  const int sms = sm_count();
  if (tiles(M, N, Large::BM, Large::BN) >= 2 * sms)
    return launch_tiles<Large>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, 1, stream);
  if (tiles(M, N, Medium::BM, Medium::BN) >= sms)
    return launch_tiles<Medium>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, 1, stream);
  const int64_t t = tiles(M, N, Small::BM, Small::BN);
  int64_t splits = std::max<int64_t>(1, std::min<int64_t>({(sms + t - 1) / t, K / kMinSplitK, kMaxSplits}));
  if (splits > 1) {
    const int64_t depth = (K + splits - 1) / splits;
    ep.k_split = static_cast<int>((depth + kSplitStep - 1) / kSplitStep * kSplitStep);
    splits = (K + ep.k_split - 1) / ep.k_split;
  }
  if (splits > 1) {
    ep.partial = detail::partials(stream, static_cast<size_t>(splits) * M * N);
    ep.counters = detail::arrival_counters(stream, static_cast<int>(t));
  } else {
    ep.k_split = std::max(K, 1);
  }
  launch_tiles<Small>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep, static_cast<unsigned>(splits),
                      stream);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream) {
  gemm_ex(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr, false, stream);
}

void linear_fwd(int N, int in, int out, const float* x, const float* w, const float* b, bool relu, float* y,
                cudaStream_t stream) {
  gemm_ex(false, true, N, out, in, 1.f, x, std::max(in, 1), w, std::max(in, 1), 0.f, y, out, b, relu, stream);
}

}  // namespace cvae::kernels::cuda
