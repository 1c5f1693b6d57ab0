// test_cuda_kernels.cpp: the CUDA runtime, GEMM, elementwise/reduction and
// random kernels against their CPU twins (cvae::kernels::cpu, float) on odd
// sizes with NaN-poisoned outputs. Skips with a reason without a GPU. Not here: conv, losses.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "support/cuda_test_util.h"
#include "test_util.h"

#if defined(CVAE_HAVE_CUDA)

namespace cpu = cvae::kernels::cpu;
namespace gpu = cvae::kernels::cuda;
using cvae::testing::all_close;
using cvae::testing::DeviceBuffer;
using cvae::testing::max_abs;
using cvae::testing::random_vector;
using cvae::testing::test_stream;

namespace {

// Tolerances, |got - ref| <= atol + rtol * |ref|, written once:
// - Bitwise: add/sub/mul/scale/axpy/fill/relu/bias/broadcast and the sigmoid's
//   backward are the same IEEE operations in the same order on both sides, and
//   neither contracts a*b+c into an FMA (nvcc --fmad=false; the CPU kernels and the
//   emulated .cu files -ffp-contract=off), so they agree bit for bit on any device.
// - Libm: expf and the sigmoid built on it: CUDA's expf (<= 2 ulp) differs from
//   glibc's by a few ulp, so rtol 1e-6 (about 8 ulp) on a GPU; on the emulator both
//   sides call glibc, and the results are bitwise equal.
//   atol 1e-7 * max|ref| only keeps a result that cancels to ~0 from being judged
//   relative to itself.
// - Reductions and GEMM: rtol 1e-5 plus atol 1e-5 * max|ref|: the GPU sums in
//   a different order than the CPU, and the rounding error of a sum scales with
//   the size of its terms, not of the (possibly cancelled) result.
constexpr double kElemRtol = 1e-6, kElemAtolScale = 1e-7;
constexpr double kSumRtol = 1e-5, kSumAtolScale = 1e-5;

// Bit for bit; on failure, the elements that differ (all_close with zero tolerance).
::testing::AssertionResult same_bits(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() == ref.size() && std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)) == 0)
    return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "not bitwise equal: " << all_close(got, ref, 0.0, 0.0).message();
}
::testing::AssertionResult libm_close(const std::vector<float>& got, const std::vector<float>& ref) {
#if defined(CVAE_CUDA_EMULATED)
  return same_bits(got, ref);
#else
  return all_close(got, ref, kElemRtol, kElemAtolScale * max_abs(ref));
#endif
}
::testing::AssertionResult sum_close(const std::vector<float>& got, const std::vector<float>& ref) {
  return all_close(got, ref, kSumRtol, kSumAtolScale * max_abs(ref));
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) { return same_bits(a, b); }

const int64_t kSizes[] = {1, 7, 1001, 65537, (int64_t{1} << 20) + 3};

// Non-zero inputs: uniform in [0.1, 1) with random signs.
std::vector<float> nonzero(size_t n, uint32_t seed) {
  auto v = random_vector<float>(n, seed, 0.1, 1.0);
  auto s = random_vector<float>(n, seed + 1000, -1.0, 1.0);
  for (size_t i = 0; i < n; ++i) v[i] = s[i] < 0 ? -v[i] : v[i];
  return v;
}

// ------------------------------------------------------------------ elementwise
using Unary = void (*)(int64_t, const float*, float*, cudaStream_t);
using UnaryCpu = void (*)(int64_t, const float*, float*);
using Binary = void (*)(int64_t, const float*, const float*, float*, cudaStream_t);
using BinaryCpu = void (*)(int64_t, const float*, const float*, float*);

using Compare = ::testing::AssertionResult (*)(const std::vector<float>&, const std::vector<float>&);

void check_unary(const char* name, Unary g, UnaryCpu c, Compare compare, double lo = -1, double hi = 1) {
  for (int64_t n : kSizes) {
    SCOPED_TRACE(std::string(name) + " n=" + std::to_string(n));
    auto x = random_vector<float>(static_cast<size_t>(n), 11, lo, hi);
    std::vector<float> ref(x.size());
    c(n, x.data(), ref.data());
    DeviceBuffer<float> dx(x), dy(x.size());
    dy.poison();
    g(n, dx.get(), dy.get(), test_stream());
    EXPECT_TRUE(compare(dy.download(), ref));
  }
}

void check_binary(const char* name, Binary g, BinaryCpu c) {
  for (int64_t n : kSizes) {
    SCOPED_TRACE(std::string(name) + " n=" + std::to_string(n));
    auto a = nonzero(static_cast<size_t>(n), 21);
    auto b = nonzero(static_cast<size_t>(n), 23);
    std::vector<float> ref(a.size());
    c(n, a.data(), b.data(), ref.data());
    DeviceBuffer<float> da(a), db(b), dy(a.size());
    dy.poison();
    g(n, da.get(), db.get(), dy.get(), test_stream());
    EXPECT_TRUE(same_bits(dy.download(), ref));
  }
}

}  // namespace

TEST(CudaElementwise, Unary) {
  CVAE_REQUIRE_GPU();
  check_unary("relu_fwd", gpu::relu_fwd, cpu::relu_fwd<float>, same_bits);
  check_unary("sigmoid_fwd", gpu::sigmoid_fwd, cpu::sigmoid_fwd<float>, libm_close, -30, 30);
  check_unary("exp_fwd", gpu::exp_fwd, cpu::exp_fwd<float>, libm_close, -20, 20);
}

TEST(CudaElementwise, Binary) {
  CVAE_REQUIRE_GPU();
  check_binary("relu_bwd", gpu::relu_bwd, cpu::relu_bwd<float>);
  check_binary("sigmoid_bwd", gpu::sigmoid_bwd, cpu::sigmoid_bwd<float>);
  check_binary("add", gpu::add, cpu::add<float>);
  check_binary("sub", gpu::sub, cpu::sub<float>);
  check_binary("mul", gpu::mul, cpu::mul<float>);
}

TEST(CudaElementwise, ScaleAxpyFill) {
  CVAE_REQUIRE_GPU();
  for (int64_t n : kSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const size_t un = static_cast<size_t>(n);
    auto x = nonzero(un, 31), y0 = nonzero(un, 33);
    std::vector<float> ref(un);
    cpu::scale<float>(n, -1.75f, x.data(), ref.data());
    DeviceBuffer<float> dx(x), dy(un);
    dy.poison();
    gpu::scale(n, -1.75f, dx.get(), dy.get(), test_stream());
    EXPECT_TRUE(same_bits(dy.download(), ref)) << "scale";

    gpu::scale(n, 0.5f, dx.get(), dx.get(), test_stream());  // in place
    cpu::scale<float>(n, 0.5f, x.data(), ref.data());
    EXPECT_TRUE(same_bits(dx.download(), ref)) << "scale in place";

    ref = y0;
    cpu::axpy<float>(n, 0.3f, x.data(), ref.data());
    DeviceBuffer<float> dx2(x), dy2(y0);
    gpu::axpy(n, 0.3f, dx2.get(), dy2.get(), test_stream());
    EXPECT_TRUE(same_bits(dy2.download(), ref)) << "axpy";

    cpu::fill<float>(n, 2.5f, ref.data());
    dy.poison();
    gpu::fill(n, 2.5f, dy.get(), test_stream());
    EXPECT_TRUE(bitwise_equal(dy.download(), ref)) << "fill";
  }
}

TEST(CudaElementwise, Bias) {
  CVAE_REQUIRE_GPU();
  struct S { int N, C; int64_t HW; };
  for (S s : {S{1, 1, 1}, S{3, 7, 1}, S{100, 100, 1}, S{100, 32, 196}, S{7, 3, 1001}, S{2, 5, 65537}}) {
    SCOPED_TRACE("N=" + std::to_string(s.N) + " C=" + std::to_string(s.C) + " HW=" + std::to_string(s.HW));
    const size_t n = static_cast<size_t>(s.N * s.C * s.HW);
    auto x = nonzero(n, 41), b = nonzero(static_cast<size_t>(s.C), 43);
    std::vector<float> ref(n), ref_relu(n);
    cpu::bias_add_fwd<float>(s.N, s.C, s.HW, x.data(), b.data(), ref.data());
    cpu::relu_fwd<float>(static_cast<int64_t>(n), ref.data(), ref_relu.data());
    DeviceBuffer<float> dx(x), dbias(b), dy(n);
    dy.poison();
    gpu::bias_add_fwd(s.N, s.C, s.HW, dx.get(), dbias.get(), dy.get(), test_stream());
    EXPECT_TRUE(same_bits(dy.download(), ref)) << "bias_add_fwd";
    dy.poison();
    gpu::bias_relu_fwd(s.N, s.C, s.HW, dx.get(), dbias.get(), dy.get(), test_stream());
    EXPECT_TRUE(same_bits(dy.download(), ref_relu)) << "bias_relu_fwd";

    std::vector<float> db_ref(static_cast<size_t>(s.C));
    cpu::bias_add_bwd<float>(s.N, s.C, s.HW, x.data(), db_ref.data());
    DeviceBuffer<float> ddb(db_ref.size());
    ddb.poison();
    gpu::bias_add_bwd(s.N, s.C, s.HW, dx.get(), ddb.get(), test_stream());
    const auto db1 = ddb.download();
    EXPECT_TRUE(sum_close(db1, db_ref)) << "bias_add_bwd";
    gpu::bias_add_bwd(s.N, s.C, s.HW, dx.get(), ddb.get(), test_stream());
    EXPECT_TRUE(bitwise_equal(ddb.download(), db1)) << "bias_add_bwd not deterministic";

    // The ReLU backward fused into the reduction, with y = the ReLU output above (zeros
    // and positives) and dy = x: dpre bitwise, db as a sum, the same bits when repeated.
    std::vector<float> dpre_ref(n), dbr_ref(static_cast<size_t>(s.C));
    cpu::bias_relu_bwd<float>(s.N, s.C, s.HW, ref_relu.data(), x.data(), dpre_ref.data(), dbr_ref.data());
    DeviceBuffer<float> dyrelu(ref_relu), ddpre(n);
    ddpre.poison();
    ddb.poison();
    gpu::bias_relu_bwd(s.N, s.C, s.HW, dyrelu.get(), dx.get(), ddpre.get(), ddb.get(), test_stream());
    EXPECT_TRUE(same_bits(ddpre.download(), dpre_ref)) << "bias_relu_bwd dpre";
    const auto dbr1 = ddb.download();
    EXPECT_TRUE(sum_close(dbr1, dbr_ref)) << "bias_relu_bwd db";
    gpu::bias_relu_bwd(s.N, s.C, s.HW, dyrelu.get(), dx.get(), ddpre.get(), ddb.get(), test_stream());
    EXPECT_TRUE(bitwise_equal(ddb.download(), dbr1)) << "bias_relu_bwd not deterministic";
  }
}

// split_cols puts every piece of a [rows, cols] matrix's columns in one launch; place_cols
// puts a piece back (zeros elsewhere) or adds it in. Copies: bitwise.
TEST(CudaElementwise, SplitAndPlaceColumns) {
  CVAE_REQUIRE_GPU();
  struct S { int64_t rows, cols; std::vector<int64_t> widths; };
  for (const S& s : {S{100, 100, {50, 50}}, S{3, 7, {1, 0, 4, 2}}, S{1, 5, {5}}, S{257, 33, {16, 17}}}) {
    SCOPED_TRACE("rows=" + std::to_string(s.rows) + " cols=" + std::to_string(s.cols));
    const auto x = nonzero(static_cast<size_t>(s.rows * s.cols), 61);
    DeviceBuffer<float> dx(x);
    std::vector<std::unique_ptr<DeviceBuffer<float>>> out;
    std::vector<gpu::ColumnPiece> pieces;
    int64_t offset = 0;
    for (int64_t w : s.widths) {
      out.push_back(std::make_unique<DeviceBuffer<float>>(static_cast<size_t>(std::max<int64_t>(1, s.rows * w))));
      out.back()->poison();
      pieces.push_back({out.back()->get(), offset, w});
      offset += w;
    }
    gpu::split_cols(s.rows, s.cols, dx.get(), pieces.data(), static_cast<int>(pieces.size()), test_stream());
    DeviceBuffer<float> back(x.size()), acc(x.size());
    for (size_t q = 0; q < pieces.size(); ++q) {
      const int64_t off = pieces[q].offset, w = pieces[q].width;
      if (w == 0) continue;
      std::vector<float> want(static_cast<size_t>(s.rows * w)), placed(x.size(), 0.f);
      for (int64_t r = 0; r < s.rows; ++r)
        for (int64_t c = 0; c < w; ++c) {
          want[static_cast<size_t>(r * w + c)] = x[static_cast<size_t>(r * s.cols + off + c)];
          placed[static_cast<size_t>(r * s.cols + off + c)] = x[static_cast<size_t>(r * s.cols + off + c)];
        }
      EXPECT_TRUE(same_bits(out[q]->download(), want)) << "piece " << q;
      back.poison();
      gpu::place_cols(s.rows, s.cols, off, w, out[q]->get(), back.get(), false, test_stream());
      EXPECT_TRUE(same_bits(back.download(), placed)) << "place_cols, piece " << q;
    }
    // Accumulating every piece into 1s gives x + 1 (each column is in exactly one piece).
    std::vector<float> ones(x.size(), 1.f), want(x.size());
    for (size_t i = 0; i < x.size(); ++i) want[i] = x[i] + 1.f;
    acc.upload(ones);
    for (size_t q = 0; q < pieces.size(); ++q)
      gpu::place_cols(s.rows, s.cols, pieces[q].offset, pieces[q].width, out[q]->get(), acc.get(), true,
                      test_stream());
    EXPECT_TRUE(same_bits(acc.download(), want)) << "place_cols accumulating";
  }
  EXPECT_THROW(gpu::place_cols(2, 4, 3, 2, nullptr, nullptr, false, test_stream()), std::invalid_argument);
}

// A ring of per-step scalars: each launch stores *value at *count % capacity and counts.
TEST(CudaElementwise, AppendToRing) {
  CVAE_REQUIRE_GPU();
  DeviceBuffer<float> ring(std::vector<float>(3, -1.f)), value(1);
  DeviceBuffer<int64_t> count(std::vector<int64_t>{0});
  for (int i = 0; i < 4; ++i) {
    value.upload(std::vector<float>{static_cast<float>(10 + i)});
    gpu::append_to_ring(value.get(), ring.get(), 3, count.get(), test_stream());
  }
  EXPECT_EQ(count.download()[0], 4);
  EXPECT_EQ(ring.download(), (std::vector<float>{13.f, 11.f, 12.f}));
}

TEST(CudaElementwise, SumAndBroadcastMid) {
  CVAE_REQUIRE_GPU();
  struct S { int64_t outer, mid, inner; };
  // covers the thread-per-output path and the block-per-output path (long mid)
  for (S s : {S{1, 1, 1}, S{3, 7, 5}, S{1, 65537, 1}, S{100, 50, 1}, S{2, 1001, 3},
              S{5, 3, 65537}, S{1, 100003, 2}, S{1, 1, 1001}}) {
    SCOPED_TRACE("outer=" + std::to_string(s.outer) + " mid=" + std::to_string(s.mid) +
                 " inner=" + std::to_string(s.inner));
    const size_t n = static_cast<size_t>(s.outer * s.mid * s.inner);
    const size_t m = static_cast<size_t>(s.outer * s.inner);
    auto x = nonzero(n, 51);
    std::vector<float> ref(m);
    cpu::sum_mid<float>(s.outer, s.mid, s.inner, x.data(), ref.data());
    DeviceBuffer<float> dx(x), dy(m);
    dy.poison();
    gpu::sum_mid(s.outer, s.mid, s.inner, dx.get(), dy.get(), test_stream());
    const auto y1 = dy.download();
    EXPECT_TRUE(sum_close(y1, ref)) << "sum_mid";
    gpu::sum_mid(s.outer, s.mid, s.inner, dx.get(), dy.get(), test_stream());
    EXPECT_TRUE(bitwise_equal(dy.download(), y1)) << "sum_mid not deterministic";

    auto g = nonzero(m, 53);
    std::vector<float> bref(n);
    cpu::broadcast_mid<float>(s.outer, s.mid, s.inner, -0.25f, g.data(), bref.data());
    DeviceBuffer<float> dg(g), dbx(n);
    dbx.poison();
    gpu::broadcast_mid(s.outer, s.mid, s.inner, -0.25f, dg.get(), dbx.get(), test_stream());
    EXPECT_TRUE(same_bits(dbx.download(), bref)) << "broadcast_mid";
  }
}

// ------------------------------------------------------------------------- GEMM
namespace {

using GemmFn = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int,
                        float, float*, int, cudaStream_t);

struct GemmCase {
  int M, N, K;
  int pad;  // extra leading-dimension elements (tests lda/ldb/ldc > minimum)
};

// Runs fn on random A, B, C for every transpose combination and a few
// (alpha, beta), against cpu::gemm. beta == 0 gets NaN in C on both sides.
void check_gemm(const char* name, GemmFn fn, const GemmCase& g) {
  // Under ASan the large cases keep every transpose (each is its own kernel) but only
  // beta == 0 (C NaN-poisoned): the other beta is the same kernel's other branch.
  const bool big = int64_t{g.M} * g.N * g.K > 2000000;
  for (int tab = 0; tab < 4; ++tab) {
    const bool ta = tab & 1, tb = tab & 2;
    for (float beta : {0.f, -1.5f}) {
      if (beta != 0.f && big && cvae::testing::kSanitized) continue;
      const float alpha = 0.75f;
      SCOPED_TRACE(std::string(name) + " M=" + std::to_string(g.M) + " N=" + std::to_string(g.N) +
                   " K=" + std::to_string(g.K) + " ta=" + std::to_string(ta) +
                   " tb=" + std::to_string(tb) + " beta=" + std::to_string(beta));
      const int arows = ta ? g.K : g.M, acols = ta ? g.M : g.K;
      const int brows = tb ? g.N : g.K, bcols = tb ? g.K : g.N;
      const int lda = acols + g.pad, ldb = bcols + g.pad, ldc = g.N + g.pad;
      auto A = nonzero(static_cast<size_t>(arows) * lda, 61);
      auto B = nonzero(static_cast<size_t>(brows) * ldb, 62);
      auto C = beta == 0.f ? std::vector<float>(static_cast<size_t>(g.M) * ldc,
                                                std::numeric_limits<float>::quiet_NaN())
                           : nonzero(static_cast<size_t>(g.M) * ldc, 63);
      auto ref = C;
      cpu::gemm<float>(ta, tb, g.M, g.N, g.K, alpha, A.data(), lda, B.data(), ldb, beta,
                       ref.data(), ldc);
      DeviceBuffer<float> dA(A), dB(B), dC(C);
      fn(ta, tb, g.M, g.N, g.K, alpha, dA.get(), lda, dB.get(), ldb, beta, dC.get(), ldc,
         test_stream());
      auto got = dC.download();
      // The padding columns of C must be untouched (NaN stays NaN: compare bits).
      for (int i = 0; i < g.M; ++i)
        for (int j = g.N; j < ldc; ++j) {
          const size_t e = static_cast<size_t>(i) * ldc + j;
          ASSERT_EQ(std::memcmp(&got[e], &C[e], sizeof(float)), 0) << "wrote padding (" << i << "," << j << ")";
          got[e] = ref[e] = 0.f;
        }
      EXPECT_TRUE(sum_close(got, ref));
    }
  }
}

const GemmCase kGemmCases[] = {
    {1, 1, 1, 0},      {7, 5, 3, 0},       {33, 65, 17, 3},  {129, 67, 1001, 1},
    {100, 100, 2304, 0}, {100, 2304, 100, 0}, {1568, 50, 100, 0}, {300, 257, 31, 2},
    {768, 776, 33, 0},    // medium tiles (>= 132 of 64x64, < 2 waves of 128x128), 3 K tiles
    {2304, 2200, 9, 5},   // large tiles (>= 2 waves of 128x128 on 132 SMs)
};

}  // namespace

TEST(CudaGemm, MatchesCpu) {
  CVAE_REQUIRE_GPU();
  for (const auto& g : kGemmCases) check_gemm("gemm", gpu::gemm, g);
}

TEST(CudaGemm, CublasMatchesCpu) {
  CVAE_REQUIRE_GPU();
  if (!gpu::cublas_available()) GTEST_SKIP() << "built without cuBLAS";
  for (const auto& g : kGemmCases) check_gemm("cublas_gemm", gpu::cublas_gemm, g);
}

TEST(CudaGemm, OursMatchesCublas) {
  CVAE_REQUIRE_GPU();
  if (!gpu::cublas_available()) GTEST_SKIP() << "built without cuBLAS";
  const int M = 257, N = 129, K = 1025;
  auto A = nonzero(static_cast<size_t>(M) * K, 71), B = nonzero(static_cast<size_t>(K) * N, 72);
  DeviceBuffer<float> dA(A), dB(B), c1(static_cast<size_t>(M) * N), c2(c1.size());
  c1.poison();
  c2.poison();
  gpu::gemm(false, false, M, N, K, 1.f, dA.get(), K, dB.get(), N, 0.f, c1.get(), N, test_stream());
  gpu::cublas_gemm(false, false, M, N, K, 1.f, dA.get(), K, dB.get(), N, 0.f, c2.get(), N,
                   test_stream());
  EXPECT_TRUE(sum_close(c1.download(), c2.download()));
}

// The dense layer's forward, bias and ReLU in the GEMM's epilogue, against the CPU twin;
// the CVAE's skinny layers at batch 100 split K over blocks (deterministically).
TEST(CudaGemm, LinearFwdEpilogueMatchesCpu) {
  CVAE_REQUIRE_GPU();
  struct S { int N, in, out; };
  for (S s : {S{100, 2304, 100}, S{100, 50, 1568}, S{7, 13, 5}, S{33, 1001, 9}}) {
    auto x = nonzero(static_cast<size_t>(s.N) * s.in, 101), w = nonzero(static_cast<size_t>(s.out) * s.in, 102);
    auto b = nonzero(static_cast<size_t>(s.out), 103);
    DeviceBuffer<float> dx(x), dw(w), db(b), dy(static_cast<size_t>(s.N) * s.out);
    for (bool with_bias : {true, false})
      for (bool relu : {true, false}) {
        SCOPED_TRACE("N=" + std::to_string(s.N) + " in=" + std::to_string(s.in) + " out=" + std::to_string(s.out) +
                     (with_bias ? " bias" : "") + (relu ? " relu" : ""));
        std::vector<float> ref(dy.size());
        cpu::linear_fwd<float>(s.N, s.in, s.out, x.data(), w.data(), with_bias ? b.data() : nullptr, relu, ref.data());
        dy.poison();
        gpu::linear_fwd(s.N, s.in, s.out, dx.get(), dw.get(), with_bias ? db.get() : nullptr, relu, dy.get(),
                        test_stream());
        const auto got = dy.download();
        // |x w| <= in (|x|, |w| < 1): the GEMM's sum tolerance relative to that size.
        EXPECT_TRUE(all_close(got, ref, kSumRtol, kSumAtolScale * std::sqrt(static_cast<double>(s.in))));
        dy.poison();
        gpu::linear_fwd(s.N, s.in, s.out, dx.get(), dw.get(), with_bias ? db.get() : nullptr, relu, dy.get(),
                        test_stream());
        EXPECT_TRUE(bitwise_equal(dy.download(), got)) << "not deterministic";
      }
  }
}

TEST(CudaGemm, KZeroScalesC) {
  CVAE_REQUIRE_GPU();
  const int M = 13, N = 9;
  auto C = nonzero(static_cast<size_t>(M) * N, 81);
  std::vector<float> A(1, 1.f), B(1, 1.f);
  for (float beta : {0.f, 2.f}) {
    auto ref = C;
    cpu::gemm<float>(false, false, M, N, 0, 1.f, A.data(), 1, B.data(), N, beta, ref.data(), N);
    DeviceBuffer<float> dA(A), dB(B), dC(C);
    gpu::gemm(false, false, M, N, 0, 1.f, dA.get(), 1, dB.get(), N, beta, dC.get(), N, test_stream());
    EXPECT_TRUE(bitwise_equal(dC.download(), ref)) << "beta=" << beta;
  }
}

TEST(CudaGemm, Deterministic) {
  CVAE_REQUIRE_GPU();
  for (const auto& g : {GemmCase{100, 100, 2304, 0}, GemmCase{768, 776, 33, 0},
                        GemmCase{2304, 2176, 9, 0}}) {  // small, medium, large tiles
    auto A = nonzero(static_cast<size_t>(g.M) * g.K, 91), B = nonzero(static_cast<size_t>(g.K) * g.N, 92);
    DeviceBuffer<float> dA(A), dB(B), dC(static_cast<size_t>(g.M) * g.N);
    gpu::gemm(false, true, g.M, g.N, g.K, 1.f, dA.get(), g.K, dB.get(), g.K, 0.f, dC.get(), g.N,
              test_stream());
    const auto first = dC.download();
    dC.poison();
    gpu::gemm(false, true, g.M, g.N, g.K, 1.f, dA.get(), g.K, dB.get(), g.K, 0.f, dC.get(), g.N,
              test_stream());
    EXPECT_TRUE(bitwise_equal(dC.download(), first)) << "M=" << g.M << " N=" << g.N << " K=" << g.K;
  }
}

// ---------------------------------------------------------------------- runtime
TEST(CudaRuntime, DeviceDescription) {
  CVAE_REQUIRE_GPU();
  const std::string d = gpu::device_description(0);
  EXPECT_NE(d.find("sm_"), std::string::npos) << d;
}

TEST(CudaRuntime, OutOfMemoryThrowsAndRecovers) {
  CVAE_REQUIRE_GPU();
  try {
    void* p = gpu::device_malloc(size_t{1} << 50);  // 1 PiB
    gpu::device_free(p);
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory"), std::string::npos) << e.what();
  }
  // The failure is cleared: the next calls work.
  DeviceBuffer<float> b(std::vector<float>{1.f, 2.f, 3.f});
  EXPECT_EQ(b.download(), (std::vector<float>{1.f, 2.f, 3.f}));
}

TEST(CudaRuntime, CopiesAndMemset) {
  CVAE_REQUIRE_GPU();
  auto x = nonzero(1001, 101);
  DeviceBuffer<float> a(x), b(x.size());
  b.poison();
  gpu::memcpy_d2d(b.get(), a.get(), x.size() * sizeof(float), test_stream());
  EXPECT_TRUE(bitwise_equal(b.download(), x));
  gpu::memset_zero(b.get(), x.size() * sizeof(float), test_stream());
  EXPECT_TRUE(bitwise_equal(b.download(), std::vector<float>(x.size(), 0.f)));
}

TEST(CudaRuntime, GraphReplayEqualsDirect) {
  CVAE_REQUIRE_GPU();
  const int M = 64, N = 50, K = 100;
  const int64_t n = int64_t{M} * N;
  auto A = nonzero(static_cast<size_t>(M) * K, 111), B = nonzero(static_cast<size_t>(N) * K, 112);
  auto bias = nonzero(static_cast<size_t>(N), 113);
  DeviceBuffer<float> dA(A), dB(B), db(bias), h(static_cast<size_t>(n)), y(static_cast<size_t>(n)),
      s(static_cast<size_t>(N));
  cudaStream_t st = test_stream();
  // y = sigmoid(relu(A B^T + bias)) * 2; s = sum over rows of y  (a small dense layer)
  auto step = [&] {
    gpu::gemm(false, true, M, N, K, 1.f, dA.get(), K, dB.get(), K, 0.f, h.get(), N, st);
    gpu::bias_relu_fwd(M, N, 1, h.get(), db.get(), h.get(), st);
    gpu::sigmoid_fwd(n, h.get(), y.get(), st);
    gpu::scale(n, 2.f, y.get(), y.get(), st);
    gpu::sum_mid(1, M, N, y.get(), s.get(), st);
  };
  step();
  const auto y_direct = y.download(), s_direct = s.download();
  y.poison();
  s.poison();
  h.poison();  // poisoned before capture: the replay must rewrite everything
  gpu::graph_capture_begin(st);
  step();
  void* exec = gpu::graph_capture_end(st);
  for (int r = 0; r < 2; ++r) {
    gpu::graph_launch(exec, st);
    EXPECT_TRUE(bitwise_equal(y.download(), y_direct)) << "replay " << r;
    EXPECT_TRUE(bitwise_equal(s.download(), s_direct)) << "replay " << r;
  }
  gpu::graph_destroy(exec);
}

// ----------------------------------------------------------------------- random
TEST(CudaRandom, BitIdenticalToCpu) {
  CVAE_REQUIRE_GPU();
  struct S { int64_t n; uint64_t seed, offset; };
  for (S s : {S{1, 0, 0}, S{7, 42, 3}, S{1001, 1234, 0}, S{65537, 7, 1000003},
              S{102, 0xdeadbeefcafeULL, (uint64_t{1} << 40) + 5}}) {
    SCOPED_TRACE("n=" + std::to_string(s.n) + " seed=" + std::to_string(s.seed) +
                 " offset=" + std::to_string(s.offset));
    const size_t un = static_cast<size_t>(s.n);
    std::vector<float> ref(un);
    cpu::normal_fill<float>(s.n, s.seed, s.offset, ref.data());
    DeviceBuffer<float> d(un);
    d.poison();
    gpu::normal_fill<float>(s.n, s.seed, s.offset, d.get(), test_stream());
    EXPECT_TRUE(bitwise_equal(d.download(), ref)) << "normal_fill<float>";

    cpu::uniform_fill<float>(s.n, s.seed, s.offset, -0.5f, 2.f, ref.data());
    d.poison();
    gpu::uniform_fill<float>(s.n, s.seed, s.offset, -0.5f, 2.f, d.get(), test_stream());
    EXPECT_TRUE(bitwise_equal(d.download(), ref)) << "uniform_fill<float>";

    std::vector<double> refd(un);
    cpu::normal_fill<double>(s.n, s.seed, s.offset, refd.data());
    DeviceBuffer<double> dd(un);
    dd.poison();
    gpu::normal_fill<double>(s.n, s.seed, s.offset, dd.get(), test_stream());
    const auto gotd = dd.download();
    EXPECT_EQ(std::memcmp(gotd.data(), refd.data(), un * sizeof(double)), 0) << "normal_fill<double>";

    // (the one instance the suite never ran, found by cuda_kernel_coverage)
    cpu::uniform_fill<double>(s.n, s.seed, s.offset, -3.0, 0.25, refd.data());
    dd.poison();
    gpu::uniform_fill<double>(s.n, s.seed, s.offset, -3.0, 0.25, dd.get(), test_stream());
    const auto gotu = dd.download();
    EXPECT_EQ(std::memcmp(gotu.data(), refd.data(), un * sizeof(double)), 0) << "uniform_fill<double>";
  }
}

// The reparameterisation in one pass each way, bitwise the CPU's chain of ops
// (scale, exp, mul, add and their backwards; on a GPU expf may differ by an ulp or two).
TEST(CudaRandom, ReparameterizeMatchesTheCpuChain) {
  CVAE_REQUIRE_GPU();
  for (int64_t n : {int64_t{1}, int64_t{5000}, int64_t{70001}}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    const size_t un = static_cast<size_t>(n);
    auto mean = nonzero(un, 111), logvar = random_vector<float>(un, 112, -4.0, 4.0), eps = nonzero(un, 113);
    auto dz = nonzero(un, 114), dm0 = nonzero(un, 115);
    std::vector<float> half(un), e(un), z(un), ez(un);
    cpu::scale<float>(n, 0.5f, logvar.data(), half.data());
    cpu::exp_fwd<float>(n, half.data(), e.data());
    cpu::mul<float>(n, eps.data(), e.data(), ez.data());
    cpu::add<float>(n, ez.data(), mean.data(), z.data());
    std::vector<float> de(un), dhalf(un), dlv(un), deps(un), dm_acc = dm0;
    cpu::mul<float>(n, dz.data(), eps.data(), de.data());   // d(eps * e)/de
    cpu::mul<float>(n, de.data(), e.data(), dhalf.data());  // exp's backward: dy * y
    cpu::scale<float>(n, 0.5f, dhalf.data(), dlv.data());
    cpu::mul<float>(n, dz.data(), e.data(), deps.data());
    cpu::axpy<float>(n, 1.f, dz.data(), dm_acc.data());
    DeviceBuffer<float> d_mean(mean), d_lv(logvar), d_eps(eps), d_z(un), d_dz(dz), d_dm(dm0), d_dlv(un), d_deps(un);
    d_z.poison();
    gpu::reparameterize_fwd(n, d_mean.get(), d_lv.get(), d_eps.get(), d_z.get(), test_stream());
    EXPECT_TRUE(libm_close(d_z.download(), z)) << "z";
    d_dlv.poison();
    d_deps.poison();
    gpu::reparameterize_bwd(n, d_lv.get(), d_eps.get(), d_dz.get(), d_dm.get(), true, d_dlv.get(), false,
                            d_deps.get(), test_stream());
    EXPECT_TRUE(same_bits(d_dm.download(), dm_acc)) << "dmean accumulated";
    EXPECT_TRUE(libm_close(d_dlv.download(), dlv)) << "dlogvar";
    EXPECT_TRUE(libm_close(d_deps.download(), deps)) << "deps";
    gpu::reparameterize_bwd(n, d_lv.get(), d_eps.get(), d_dz.get(), d_dm.get(), false, nullptr, false, nullptr,
                            test_stream());
    EXPECT_TRUE(same_bits(d_dm.download(), dz)) << "dmean written";
  }
}

// normal_fill at an offset held on the device: the same numbers as normal_fill there,
// and the offset advances by the Philox blocks used, so two launches continue the stream.
TEST(CudaRandom, NormalFillFromDeviceContinuesTheStream) {
  CVAE_REQUIRE_GPU();
  const int64_t n = 1001;  // 251 Philox blocks (the last one partly used)
  const uint64_t seed = 99, start = (uint64_t{1} << 40) + 3;
  std::vector<float> ref1(n), ref2(n);
  cpu::normal_fill<float>(n, seed, start, ref1.data());
  cpu::normal_fill<float>(n, seed, start + 251, ref2.data());
  DeviceBuffer<uint64_t> offset(std::vector<uint64_t>{start});
  DeviceBuffer<float> y(static_cast<size_t>(n));
  y.poison();
  gpu::normal_fill_from_device(n, seed, offset.get(), y.get(), test_stream());
  EXPECT_TRUE(bitwise_equal(y.download(), ref1));
  EXPECT_EQ(offset.download()[0], start + 251);
  gpu::normal_fill_from_device(n, seed, offset.get(), y.get(), test_stream());
  EXPECT_TRUE(bitwise_equal(y.download(), ref2));
  EXPECT_EQ(offset.download()[0], start + 502);
}

#else  // built without CUDA: one test that says so

TEST(CudaKernels, Skipped) { CVAE_REQUIRE_GPU(); }

#endif
