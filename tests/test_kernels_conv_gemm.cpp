// test_kernels_conv_gemm.cpp: the CPU gemm and conv2d fprop/dgrad/wgrad against naive
// loops (computed in double), the conv adjoint identities, and the CVAE's layer shapes.
// Kernel-level only: no tensors, no autograd, no CUDA.
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/conv_thin.h"
#include "kernels/kernels.h"
#include "test_util.h"

namespace {

using cvae::kernels::Conv2dShape;
using cvae::testing::all_close;
using cvae::testing::random_vector;
namespace kc = cvae::kernels;
namespace cpu = cvae::kernels::cpu;

template <typename T> constexpr double tol() { return sizeof(T) == 4 ? 2e-5 : 1e-12; }
template <typename T> T nan_v() { return std::numeric_limits<T>::quiet_NaN(); }

template <typename T> class KernelsTyped : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(KernelsTyped, Types);

// ----------------------------------------------------------------------------- gemm

// C = alpha * op(A) op(B) + beta * C, in double (beta == 0: C not read).
template <typename T>
std::vector<double> gemm_ref(bool ta, bool tb, int M, int N, int K, double alpha,
                             const std::vector<T>& A, int lda, const std::vector<T>& B, int ldb,
                             double beta, const std::vector<T>& C, int ldc) {
  std::vector<double> out(C.begin(), C.end());
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k)
        acc += double(ta ? A[k * lda + i] : A[i * lda + k]) * double(tb ? B[j * ldb + k] : B[k * ldb + j]);
      double& c = out[i * ldc + j];
      c = beta == 0 ? alpha * acc : alpha * acc + beta * c;
    }
  return out;
}

// One gemm call with padded leading dimensions; C poisoned with NaN when beta == 0.
template <typename T>
void check_gemm(bool ta, bool tb, int M, int N, int K, T alpha, T beta, uint32_t seed) {
  const int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 1;
  auto A = random_vector<T>(size_t(ta ? K : M) * lda, seed);
  auto B = random_vector<T>(size_t(tb ? N : K) * ldb, seed + 1);
  auto C = random_vector<T>(size_t(M) * ldc, seed + 2);
  if (beta == T(0))  // poison C's M x N part; its padding columns must stay as they are
    for (int i = 0; i < M; ++i) std::fill_n(C.begin() + i * ldc, N, nan_v<T>());
  auto ref = gemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  cpu::gemm<T>(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  EXPECT_TRUE(all_close(C.data(), ref.data(), (int64_t)C.size(), tol<T>(), tol<T>() * K))
      << "ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N << " K=" << K;
}

TYPED_TEST(KernelsTyped, GemmOddSizesAllTransposes) {
  using T = TypeParam;
  const int sizes[] = {1, 3, 7, 17, 40, 131};
  uint32_t seed = 1;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (int M : sizes)
        for (int N : sizes)
          for (int K : {1, 7, 17, 300}) check_gemm<T>(ta, tb, M, N, K, T(1), T(0), seed++);
}

TYPED_TEST(KernelsTyped, GemmAlphaBeta) {
  using T = TypeParam;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      check_gemm<T>(ta, tb, 37, 45, 29, T(0.5), T(-1.5), 7);
      check_gemm<T>(ta, tb, 100, 70, 600, T(-2), T(1), 8);   // K spans several KC blocks
      check_gemm<T>(ta, tb, 9, 200, 13, T(1.25), T(0), 9);
    }
}

TYPED_TEST(KernelsTyped, GemmLargeParallelShapes) {
  using T = TypeParam;
  check_gemm<T>(false, false, 100, 100, 2304, T(1), T(0), 11);  // encoder fc forward
  check_gemm<T>(true, false, 2304, 100, 100, T(1), T(0), 12);   // encoder fc dW
  check_gemm<T>(false, true, 100, 1568, 50, T(1), T(0), 13);    // decoder fc (W as [out,in])
  check_gemm<T>(false, false, 300, 700, 270, T(1), T(0.5), 14);
}

TYPED_TEST(KernelsTyped, GemmKZeroScalesC) {
  using T = TypeParam;
  std::vector<T> C(6, nan_v<T>()), A(1), B(1);
  cpu::gemm<T>(false, false, 2, 3, 0, T(1), A.data(), 1, B.data(), 3, T(0), C.data(), 3);
  for (T c : C) EXPECT_EQ(c, T(0));
}

// One thread walks the tiles in order: a B block kept for one column tile must not be
// reused after a tile too wide to keep its own has overwritten the buffer (double,
// K = 900: the first column tile is too wide to keep its B block, the second is not).
TEST(Gemm, PackedBlocksAreNotReusedAfterTheBufferWasOverwritten) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  check_gemm<double>(false, false, 200, 296, 900, 1.0, 0.0, 41);
  check_gemm<float>(false, false, 300, 1060, 1100, 1.f, 0.f, 42);
  omp_set_num_threads(saved);
}

TEST(Gemm, RejectsBadLeadingDimension) {
  std::vector<float> A(16), B(16), C(16);
  EXPECT_THROW(cpu::gemm<float>(false, false, 4, 4, 4, 1.f, A.data(), 3, B.data(), 4, 0.f,
                                C.data(), 4),
               std::invalid_argument);
}

TEST(Gemm, SameBitsWithOneOrTwoThreads) {
  auto A = random_vector<float>(300 * 500, 21), B = random_vector<float>(500 * 260, 22);
  std::vector<float> C1(300 * 260), C2(300 * 260);
  int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::gemm<float>(false, false, 300, 260, 500, 1.f, A.data(), 500, B.data(), 260, 0.f, C1.data(), 260);
  omp_set_num_threads(2);
  cpu::gemm<float>(false, false, 300, 260, 500, 1.f, A.data(), 500, B.data(), 260, 0.f, C2.data(), 260);
  omp_set_num_threads(saved);
  EXPECT_EQ(0, std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)));
}

// ----------------------------------------------------------------------------- conv

int64_t x_size(const Conv2dShape& s) { return (int64_t)s.N * s.C * s.H * s.W; }
int64_t w_size(const Conv2dShape& s) { return (int64_t)s.K * s.C * s.R * s.S; }
int64_t y_size(const Conv2dShape& s) { return (int64_t)s.N * s.K * s.P * s.Q; }

// Calls f(x_index, w_index, y_index) for every in-range term of the conv sum.
template <typename F>
void for_each_tap(const Conv2dShape& s, F f) {
  for (int n = 0; n < s.N; ++n)
    for (int k = 0; k < s.K; ++k)
      for (int p = 0; p < s.P; ++p)
        for (int q = 0; q < s.Q; ++q)
          for (int c = 0; c < s.C; ++c)
            for (int r = 0; r < s.R; ++r)
              for (int t = 0; t < s.S; ++t) {
                int h = p * s.stride_h - s.pad_h + r, w = q * s.stride_w - s.pad_w + t;
                if (h < 0 || h >= s.H || w < 0 || w >= s.W) continue;
                f(((int64_t(n) * s.C + c) * s.H + h) * s.W + w, ((int64_t(k) * s.C + c) * s.R + r) * s.S + t,
                  ((int64_t(n) * s.K + k) * s.P + p) * s.Q + q);
              }
}

// y[n,k,p,q] = sum x[n,c,p*sh-ph+r,q*sw-pw+s] * w[k,c,r,s]
template <typename T>
std::vector<double> fprop_ref(const Conv2dShape& s, const std::vector<T>& x, const std::vector<T>& w) {
  std::vector<double> y(y_size(s), 0.0);
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += double(x[xi]) * w[wi]; });
  return y;
}
template <typename T>
std::vector<double> dgrad_ref(const Conv2dShape& s, const std::vector<T>& dy, const std::vector<T>& w) {
  std::vector<double> dx(x_size(s), 0.0);
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) { dx[xi] += double(dy[yi]) * w[wi]; });
  return dx;
}
template <typename T>
std::vector<double> wgrad_ref(const Conv2dShape& s, const std::vector<T>& x, const std::vector<T>& dy) {
  std::vector<double> dw(w_size(s), 0.0);
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) { dw[wi] += double(x[xi]) * dy[yi]; });
  return dw;
}

// All three passes of one shape against the naive loops, outputs NaN-poisoned.
template <typename T>
void check_conv(const Conv2dShape& s, uint32_t seed) {
  auto x = random_vector<T>(x_size(s), seed), w = random_vector<T>(w_size(s), seed + 1);
  auto dy = random_vector<T>(y_size(s), seed + 2);
  std::vector<T> ws(kc::conv2d_workspace_elems(s), nan_v<T>());
  std::vector<T> y(y_size(s), nan_v<T>()), dx(x_size(s), nan_v<T>()), dw(w_size(s), nan_v<T>());
  const double atol = tol<T>() * s.K * s.C * s.R * s.S * s.N;
  cpu::conv2d_fprop<T>(s, x.data(), w.data(), y.data(), ws.data());
  EXPECT_TRUE(all_close(y, fprop_ref(s, x, w), tol<T>(), atol)) << "fprop";
  std::fill(ws.begin(), ws.end(), nan_v<T>());
  cpu::conv2d_dgrad<T>(s, dy.data(), w.data(), dx.data(), ws.data());
  EXPECT_TRUE(all_close(dx, dgrad_ref(s, dy, w), tol<T>(), atol)) << "dgrad";
  std::fill(ws.begin(), ws.end(), nan_v<T>());
  cpu::conv2d_wgrad<T>(s, x.data(), dy.data(), dw.data(), ws.data());
  EXPECT_TRUE(all_close(dw, wgrad_ref(s, x, dy), tol<T>(), atol)) << "wgrad";
}

std::vector<Conv2dShape> test_shapes() {
  return {
      kc::conv2d_shape_valid(1, 1, 5, 5, 1, 3, 3, 1),
      kc::conv2d_shape_valid(3, 2, 7, 9, 3, 3, 3, 2),
      kc::conv2d_shape_valid(3, 2, 5, 6, 3, 1, 1, 1),   // pointwise: no columns
      kc::conv2d_shape_valid(3, 3, 8, 8, 2, 1, 1, 2),   // 1x1 stride 2
      kc::conv2d_shape_same(3, 3, 8, 7, 5, 3, 3, 2),
      kc::conv2d_shape_same(1, 4, 9, 6, 2, 3, 2, 1),
      kc::conv2d_shape_same(3, 3, 6, 5, 4, 5, 5, 2),
      kc::conv2d_shape_same(11, 2, 7, 7, 3, 3, 3, 1),   // more images than batch slots
      kc::conv_transpose2d_shape_same(3, 5, 7, 7, 4, 3, 3, 2),
      kc::conv2d_shape_valid(3, 1, 28, 28, 32, 3, 3, 2),
      kc::conv2d_shape_same(2, 3, 11, 13, 3, 4, 4, 3),  // stride 3, even kernel
      // many channels: the direct forms (fprop reads x in place, dgrad by phases)
      kc::conv2d_shape_valid(3, 32, 13, 13, 64, 3, 3, 2),        // the encoder's conv2
      kc::conv_transpose2d_shape_same(2, 32, 7, 7, 64, 3, 3, 2),  // deconv1: zero border
      kc::conv_transpose2d_shape_same(3, 40, 5, 6, 17, 3, 3, 2),  // odd sizes and channels
      kc::conv2d_shape_same(2, 20, 9, 8, 18, 3, 3, 1),           // stride 1, border all round
      kc::conv2d_shape_same(2, 18, 10, 9, 16, 4, 4, 3),          // stride 3, even kernel
      kc::conv2d_shape_valid(2, 16, 8, 8, 20, 1, 1, 2),          // 1x1 s2: phases without taps
      kc::conv2d_shape_same(2, 30, 6, 6, 150, 3, 3, 1),          // dgrad's K past a K block
      // one input channel (conv_thin.h; the encoder's conv1 is above): stride 1 with padding
      // (the decoder's deconv3), odd widths, K not a multiple of the channel block, rows
      // wider than a vector, several column chunks, a plane too big for dgrad's scratch
      kc::conv_transpose2d_shape_same(3, 7, 9, 11, 1, 3, 3, 1),
      kc::conv2d_shape_same(2, 1, 10, 37, 5, 3, 3, 2),
      kc::conv2d_shape_valid(3, 1, 30, 40, 3, 3, 3, 1),
      kc::conv2d_shape_same(1, 1, 50, 45, 2, 3, 3, 1),
      kc::conv2d_shape_same(1, 1, 200, 190, 2, 3, 3, 1),
  };
}

TYPED_TEST(KernelsTyped, ConvMatchesNaiveLoops) {
  uint32_t seed = 100;
  for (const auto& s : test_shapes()) {
    SCOPED_TRACE(::testing::Message() << "N" << s.N << " C" << s.C << " " << s.H << "x" << s.W
                                      << " K" << s.K << " " << s.R << "x" << s.S << " s"
                                      << s.stride_h << " pad " << s.pad_h << "," << s.pad_w);
    check_conv<TypeParam>(s, seed += 10);
  }
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += a[i] * b[i];
  return d;
}

// <conv(x,w), y> == <x, dgrad(y,w)> == <w, wgrad(x,y)>
TEST(Conv, AdjointIdentities) {
  for (const auto& s : test_shapes()) {
    auto x = random_vector<double>(x_size(s), 1), w = random_vector<double>(w_size(s), 2);
    auto y = random_vector<double>(y_size(s), 3);
    std::vector<double> ws(kc::conv2d_workspace_elems(s)), cx(y.size()), dx(x.size()), dw(w.size());
    cpu::conv2d_fprop(s, x.data(), w.data(), cx.data(), ws.data());
    cpu::conv2d_dgrad(s, y.data(), w.data(), dx.data(), ws.data());
    cpu::conv2d_wgrad(s, x.data(), y.data(), dw.data(), ws.data());
    double a = dot(cx, y), b = dot(x, dx), c = dot(w, dw);
    EXPECT_NEAR(a, b, 1e-10 * (1 + std::fabs(a)));
    EXPECT_NEAR(a, c, 1e-10 * (1 + std::fabs(a)));
  }
}

// Every pass, in both of its forms (direct: many channels; packed / col2im: few), gives the
// same bits on one thread as on two.
TEST(Conv, SameBitsWithOneOrTwoThreads) {
  for (const auto& s : {kc::conv2d_shape_same(13, 8, 14, 14, 16, 3, 3, 2),     // packed, col2im
                        kc::conv2d_shape_same(13, 24, 14, 14, 32, 3, 3, 2),    // direct forms
                        kc::conv_transpose2d_shape_same(9, 32, 7, 7, 64, 3, 3, 2),
                        kc::conv2d_shape_valid(13, 1, 28, 28, 32, 3, 3, 2),             // conv1
                        kc::conv_transpose2d_shape_same(9, 32, 28, 28, 1, 3, 3, 1)}) {  // deconv3
    auto x = random_vector<float>(x_size(s), 5), dy = random_vector<float>(y_size(s), 6);
    auto w = random_vector<float>(w_size(s), 7);
    std::vector<float> ws(kc::conv2d_workspace_elems(s));
    std::vector<float> y[2], dx[2], dw[2];
    const int saved = omp_get_max_threads();
    for (int t = 0; t < 2; ++t) {
      omp_set_num_threads(t + 1);
      y[t].resize(y_size(s)), dx[t].resize(x_size(s)), dw[t].resize(w_size(s));
      cpu::conv2d_fprop(s, x.data(), w.data(), y[t].data(), ws.data());
      cpu::conv2d_dgrad(s, dy.data(), w.data(), dx[t].data(), ws.data());
      cpu::conv2d_wgrad(s, x.data(), dy.data(), dw[t].data(), ws.data());
    }
    omp_set_num_threads(saved);
    EXPECT_EQ(0, std::memcmp(y[0].data(), y[1].data(), y[0].size() * sizeof(float))) << "fprop";
    EXPECT_EQ(0, std::memcmp(dx[0].data(), dx[1].data(), dx[0].size() * sizeof(float))) << "dgrad";
    EXPECT_EQ(0, std::memcmp(dw[0].data(), dw[1].data(), dw[0].size() * sizeof(float))) << "wgrad";
  }
}

// A transposed conv's backward on the CPU writes its ReLU'd output gradient with the
// border its fprop and wgrad both read (conv2d_shared_x_border); the passes then read it
// as it is. Same bits as the plain kernels: relu_bwd, bias_add_bwd, then each pass
// bordering x itself. And a border is refused for a shape whose passes read none.
TEST(Conv, SharedBorderGivesThePlainPassesBits) {
  for (const auto& s : {kc::conv_transpose2d_shape_same(3, 32, 7, 7, 64, 3, 3, 2),    // deconv1
                        kc::conv_transpose2d_shape_same(2, 64, 14, 14, 32, 3, 3, 2),  // deconv2
                        kc::conv2d_shape_same(2, 20, 9, 8, 18, 3, 3, 1)}) {           // stride 1
    SCOPED_TRACE(::testing::Message() << "C" << s.C << " " << s.H << "x" << s.W << " K" << s.K);
    const kc::PlaneBorder b = kc::conv2d_shared_x_border(s);
    ASSERT_TRUE(b.any());
    auto y = random_vector<float>(x_size(s), 41), g = random_vector<float>(x_size(s), 42);
    auto w = random_vector<float>(w_size(s), 43), dy = random_vector<float>(y_size(s), 44);
    // the plain way
    std::vector<float> dpre(x_size(s)), db(s.C), db_plain(s.C), ws(kc::conv2d_workspace_elems(s));
    std::vector<float> out(y_size(s)), dw(w_size(s));
    cpu::relu_bwd<float>(int64_t(x_size(s)), y.data(), g.data(), dpre.data());
    cpu::bias_add_bwd<float>(s.N, s.C, int64_t(s.H) * s.W, dpre.data(), db_plain.data());
    cpu::conv2d_fprop<float>(s, dpre.data(), w.data(), out.data(), ws.data());
    cpu::conv2d_wgrad<float>(s, dpre.data(), dy.data(), dw.data(), ws.data());
    // bordered once
    std::vector<float> xb(kc::bordered_elems(s.N, s.C, s.H, s.W, b), nan_v<float>());
    std::vector<float> out_b(y_size(s), nan_v<float>()), dw_b(w_size(s), nan_v<float>());
    std::fill(ws.begin(), ws.end(), nan_v<float>());
    cpu::bias_act_bwd_bordered<float>(s.N, s.C, s.H, s.W, b, y.data(), g.data(), xb.data(), db.data());
    cpu::conv2d_fprop_bias_act<float>(s, xb.data(), w.data(), nullptr, false, out_b.data(), ws.data(), true);
    cpu::conv2d_wgrad<float>(s, xb.data(), dy.data(), dw_b.data(), ws.data(), true);
    EXPECT_EQ(0, std::memcmp(db.data(), db_plain.data(), db.size() * sizeof(float))) << "db";
    EXPECT_EQ(0, std::memcmp(out.data(), out_b.data(), out.size() * sizeof(float))) << "fprop";
    EXPECT_EQ(0, std::memcmp(dw.data(), dw_b.data(), dw.size() * sizeof(float))) << "wgrad";
    // without the ReLU: dy itself, bordered
    std::vector<float> gb(xb.size(), nan_v<float>());
    cpu::bias_act_bwd_bordered<float>(s.N, s.C, s.H, s.W, b, nullptr, g.data(), gb.data(), nullptr);
    cpu::conv2d_fprop<float>(s, g.data(), w.data(), out.data(), ws.data());
    cpu::conv2d_fprop_bias_act<float>(s, gb.data(), w.data(), nullptr, false, out_b.data(), ws.data(), true);
    EXPECT_EQ(0, std::memcmp(out.data(), out_b.data(), out.size() * sizeof(float))) << "fprop, no relu";
  }
  const auto plain = kc::conv2d_shape_valid(2, 32, 13, 13, 64, 3, 3, 2);  // valid: no border
  EXPECT_FALSE(kc::conv2d_shared_x_border(plain).any());
  std::vector<float> x(x_size(plain)), w(w_size(plain)), y(y_size(plain)), ws(kc::conv2d_workspace_elems(plain));
  EXPECT_THROW(cpu::conv2d_fprop_bias_act<float>(plain, x.data(), w.data(), nullptr, false, y.data(), ws.data(), true),
               std::invalid_argument);
}

// deconv3's input gradient written straight as deconv2's bordered ReLU backward is the
// two passes' bits (conv2d_fprop, then bias_act_bwd_bordered): dpre with its border, db,
// on odd sizes and the CVAE's, one thread or two, float and double.
template <typename T>
void check_fprop_relu_bwd(const kc::Conv2dShape& s, const kc::PlaneBorder& b) {
  SCOPED_TRACE(::testing::Message() << "N" << s.N << " K" << s.K << " " << s.P << "x" << s.Q
                                    << (sizeof(T) == 8 ? " double" : " float"));
  ASSERT_TRUE(cpu::conv2d_fprop_relu_bwd_fuses(s));
  auto x = random_vector<T>(x_size(s), 51), w = random_vector<T>(w_size(s), 52);
  auto yd = random_vector<T>(y_size(s), 53);
  for (auto& v : yd) v = v < T(0) ? T(0) : v;  // a ReLU's output: half zeros
  const size_t nb = size_t(kc::bordered_elems(s.N, s.K, s.P, s.Q, b));
  std::vector<T> out(y_size(s)), ws(kc::conv2d_workspace_elems(s)), dpre_ref(nb, nan_v<T>()), db_ref(s.K);
  cpu::conv2d_fprop<T>(s, x.data(), w.data(), out.data(), ws.data());
  cpu::bias_act_bwd_bordered<T>(s.N, s.K, s.P, s.Q, b, yd.data(), out.data(), dpre_ref.data(), db_ref.data());
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    std::vector<T> fws(cpu::conv2d_fprop_relu_bwd_workspace_elems(s, sizeof(T)), nan_v<T>());
    std::vector<T> dpre(nb, nan_v<T>()), db(s.K, nan_v<T>());
    cpu::conv2d_fprop_relu_bwd_bordered<T>(s, x.data(), w.data(), yd.data(), b, dpre.data(), db.data(), fws.data());
    EXPECT_EQ(0, std::memcmp(dpre.data(), dpre_ref.data(), nb * sizeof(T))) << threads << " threads: dpre";
    EXPECT_EQ(0, std::memcmp(db.data(), db_ref.data(), db.size() * sizeof(T))) << threads << " threads: db";
    std::fill(dpre.begin(), dpre.end(), nan_v<T>());
    cpu::conv2d_fprop_relu_bwd_bordered<T>(s, x.data(), w.data(), yd.data(), b, dpre.data(), nullptr, fws.data());
    EXPECT_EQ(0, std::memcmp(dpre.data(), dpre_ref.data(), nb * sizeof(T))) << threads << " threads, no db";
  }
  omp_set_num_threads(saved);
}

TEST(Conv, FpropIntoBorderedReluBackwardIsTheTwoPassesBitForBit) {
  // conv_transpose2d_shape_same(N, Cin, H, W, Cout = 1, ...): the fprop of its backward
  // reads the one-channel gradient and writes Cin channels of [H, W].
  const auto odd = kc::conv_transpose2d_shape_same(3, 7, 9, 11, 1, 3, 3, 1);
  const auto cvae = kc::conv_transpose2d_shape_same(4, 32, 28, 28, 1, 3, 3, 1);
  const kc::PlaneBorder uneven{1, 2, 0, 1}, deconv2 =
      kc::conv2d_shared_x_border(kc::conv_transpose2d_shape_same(4, 64, 14, 14, 32, 3, 3, 2));
  ASSERT_TRUE(deconv2.any());
  for (const auto& s : {odd, cvae})
    for (const auto& b : {uneven, deconv2}) {
      check_fprop_relu_bwd<float>(s, b);
      check_fprop_relu_bwd<double>(s, b);
    }
  const auto wide = kc::conv_transpose2d_shape_same(2, 16, 9, 9, 8, 3, 3, 1);  // C = 8: not fused
  EXPECT_FALSE(cpu::conv2d_fprop_relu_bwd_fuses(wide));
  std::vector<float> v(1 << 16);
  EXPECT_THROW(cpu::conv2d_fprop_relu_bwd_bordered<float>(wide, v.data(), v.data(), v.data(), uneven, v.data(),
                                                          nullptr, v.data()),
               std::invalid_argument);
}

// The one-channel kernels (conv_thin.h) take the shapes meant for them, and their fused
// bias and ReLU are what the other forms' are: the plain pass's bits, + bias, then
// max(0, .), for fprop (bias per output channel) and dgrad (per input channel).
TEST(Conv, FusedBiasReluIsThePlainPassThenBiasThenRelu) {
  const auto deconv3 = kc::conv_transpose2d_shape_same(3, 7, 9, 11, 1, 3, 3, 1);
  const auto conv1 = kc::conv2d_shape_valid(3, 1, 28, 28, 32, 3, 3, 2);
  EXPECT_TRUE(cpu::thin_fprop_applies(deconv3) && cpu::thin_dgrad_applies(deconv3));
  EXPECT_TRUE(cpu::thin_wgrad_applies(deconv3) && cpu::thin_fprop_applies(conv1));
  EXPECT_FALSE(cpu::thin_dgrad_applies(conv1));  // stride 2: the GEMM's col2im
  EXPECT_FALSE(cpu::thin_dgrad_applies(kc::conv2d_shape_same(1, 1, 200, 190, 2, 3, 3, 1)));
  EXPECT_FALSE(cpu::thin_fprop_applies(kc::conv2d_shape_same(2, 2, 9, 9, 4, 3, 3, 1)));
  for (const auto& s : {deconv3, conv1, kc::conv2d_shape_same(2, 3, 8, 7, 5, 3, 3, 2)}) {
    SCOPED_TRACE(::testing::Message() << "C" << s.C << " " << s.H << "x" << s.W << " K" << s.K);
    auto x = random_vector<float>(x_size(s), 51), w = random_vector<float>(w_size(s), 52);
    auto dy = random_vector<float>(y_size(s), 53);
    auto bk = random_vector<float>(s.K, 54), bc = random_vector<float>(s.C, 55);
    std::vector<float> ws(kc::conv2d_workspace_elems(s)), y(y_size(s)), dx(x_size(s));
    cpu::conv2d_fprop<float>(s, x.data(), w.data(), y.data(), ws.data());
    cpu::conv2d_dgrad<float>(s, dy.data(), w.data(), dx.data(), ws.data());
    const int64_t pq = int64_t(s.P) * s.Q, hw = int64_t(s.H) * s.W;
    for (bool relu : {false, true}) {
      std::vector<float> ry = y, rdx = dx, fy(y.size(), nan_v<float>()), fdx(dx.size(), nan_v<float>());
      for (size_t i = 0; i < ry.size(); ++i) {
        ry[i] += bk[(i / pq) % s.K];
        if (relu) ry[i] = ry[i] < 0.f ? 0.f : ry[i];
      }
      for (size_t i = 0; i < rdx.size(); ++i) {
        rdx[i] += bc[(i / hw) % s.C];
        if (relu) rdx[i] = rdx[i] < 0.f ? 0.f : rdx[i];
      }
      cpu::conv2d_fprop_bias_act<float>(s, x.data(), w.data(), bk.data(), relu, fy.data(), ws.data(), false);
      cpu::conv2d_dgrad_bias_act<float>(s, dy.data(), w.data(), bc.data(), relu, fdx.data(), ws.data());
      EXPECT_EQ(0, std::memcmp(ry.data(), fy.data(), ry.size() * sizeof(float))) << "fprop, relu " << relu;
      EXPECT_EQ(0, std::memcmp(rdx.data(), fdx.data(), rdx.size() * sizeof(float))) << "dgrad, relu " << relu;
    }
  }
}

// dx of a stride-2 dgrad as one chain per element: from +0 over its phase's terms in the
// order (k, u, v) (dy channel, filter row, filter column; out-of-image taps reading
// zeros), each term fused into the add (fused: std::fma) or its product rounded first;
// then + bias and the ReLU (act).
std::vector<float> stride_two_chains(const Conv2dShape& s, const std::vector<float>& dy,
                                     const std::vector<float>& w, const std::vector<float>& bias,
                                     bool act, bool fused) {
  std::vector<float> dx(x_size(s));
  for (int n = 0; n < s.N; ++n)
    for (int c = 0; c < s.C; ++c)
      for (int h = 0; h < s.H; ++h)
        for (int x = 0; x < s.W; ++x) {
          const int rh = (h + s.pad_h) % 2, mh = (h + s.pad_h) / 2;
          const int rw = (x + s.pad_w) % 2, mw = (x + s.pad_w) / 2;
          float acc = 0.f;
          for (int k = 0; k < s.K; ++k)
            for (int u = 0; rh + 2 * u < s.R; ++u)
              for (int v = 0; rw + 2 * v < s.S; ++v) {
                const int p = mh - u, q = mw - v;
                const float a = p >= 0 && p < s.P && q >= 0 && q < s.Q
                                    ? dy[((int64_t(n) * s.K + k) * s.P + p) * s.Q + q] : 0.f;
                const float b = w[((int64_t(k) * s.C + c) * s.R + rh + 2 * u) * s.S + rw + 2 * v];
                if (fused) {
                  acc = std::fma(a, b, acc);
                } else {
                  const float ab = a * b;
                  acc = acc + ab;
                }
              }
          if (act) acc += bias[c];
          if (act && acc < 0.f) acc = 0.f;
          dx[((int64_t(n) * s.C + c) * s.H + h) * s.W + x] = acc;
        }
  return dx;
}

int64_t elements_differing(const std::vector<float>& a, const std::vector<float>& b) {
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

// A stride-2 dgrad with many channels, in either of its forms (the GEMM by phases; the
// both-phases tiles of dgrad_rows.h, AVX2 and AVX-512, channels in whole blocks and even
// column padding): every dx element is stride_two_chains' chain, bit for bit, so that
// neither form changes a bit of training. Fused on the AVX2 and AVX-512 paths as built
// for speed; the sanitizer build (-O1) contracts no FMA, so there either chain is
// accepted, whole; the generic path never fuses. The shapes: the CVAE's three, odd channel
// counts, a padded one, rows wider than a vector, odd widths cutting a tile's last run.
TEST(Conv, StrideTwoDgradIsOneChainPerElementInTapOrder) {
  const bool generic = cpu::cpu_isa() == cpu::CpuIsa::Generic;
  for (const auto& s : {kc::conv_transpose2d_shape_same(2, 64, 14, 14, 32, 3, 3, 2),  // deconv2
                        kc::conv_transpose2d_shape_same(3, 32, 7, 7, 64, 3, 3, 2),    // deconv1
                        kc::conv2d_shape_valid(3, 32, 13, 13, 64, 3, 3, 2),           // conv2
                        kc::conv_transpose2d_shape_same(3, 40, 5, 6, 17, 3, 3, 2),
                        kc::conv2d_shape_same(2, 20, 9, 8, 18, 3, 3, 2),              // pad 1
                        kc::conv2d_shape_valid(2, 24, 11, 37, 9, 3, 3, 2),
                        kc::conv2d_shape_same(1, 16, 9, 50, 8, 3, 3, 2),
                        kc::conv2d_shape_valid(2, 16, 15, 29, 12, 3, 3, 2),
                        // the paired last tiles: 11, 9 and 10 columns a row (AVX2: 5 + 5 + 1;
                        // AVX-512: 7 + 2, 7 + 3), odd and even row counts
                        kc::conv2d_shape_valid(2, 16, 9, 22, 8, 3, 3, 2),
                        kc::conv2d_shape_valid(1, 32, 11, 18, 8, 3, 3, 2),
                        kc::conv2d_shape_valid(1, 16, 7, 20, 8, 3, 3, 2)}) {
    SCOPED_TRACE(::testing::Message() << "N" << s.N << " C" << s.C << " " << s.H << "x" << s.W
                                      << " K" << s.K << " pad " << s.pad_h);
    auto dy = random_vector<float>(y_size(s), 61), w = random_vector<float>(w_size(s), 62);
    auto bias = random_vector<float>(s.C, 63);
    std::vector<float> dx(x_size(s)), ws(kc::conv2d_workspace_elems(s));
    for (bool act : {false, true}) {
      std::fill(dx.begin(), dx.end(), nan_v<float>());
      std::fill(ws.begin(), ws.end(), nan_v<float>());
      cpu::conv2d_dgrad_bias_act<float>(s, dy.data(), w.data(), act ? bias.data() : nullptr, act,
                                        dx.data(), ws.data());
      const int64_t unfused = elements_differing(dx, stride_two_chains(s, dy, w, bias, act, false));
      const int64_t fused = generic ? -1 : elements_differing(dx, stride_two_chains(s, dy, w, bias, act, true));
      EXPECT_TRUE(unfused == 0 || fused == 0)
          << "bias and ReLU " << act << ": of " << dx.size() << ", " << unfused
          << " differ from the unfused chains, " << fused << " from the fused ones";
    }
  }
}

// TF Conv2DTranspose `same` 7 -> 14, k3 s2 == PyTorch ConvTranspose2d(padding=0) (15x15)
// cropped to its first 14 rows and columns: checked by a direct scatter.
TEST(Conv, TransposedSameIsCroppedPaddingZeroScatter) {
  const int N = 2, Cin = 3, H = 7, Cout = 2, R = 3, st = 2, HO = 15;
  auto s = kc::conv_transpose2d_shape_same(N, Cin, H, H, Cout, R, R, st);
  auto in = random_vector<double>(N * Cin * H * H, 31), w = random_vector<double>(Cin * Cout * R * R, 32);
  std::vector<double> full(N * Cout * HO * HO, 0.0), ref, out(x_size(s), nan_v<double>());
  for (int n = 0; n < N; ++n)
    for (int ci = 0; ci < Cin; ++ci)
      for (int co = 0; co < Cout; ++co)
        for (int i = 0; i < H; ++i)
          for (int j = 0; j < H; ++j)
            for (int r = 0; r < R; ++r)
              for (int t = 0; t < R; ++t)
                full[((n * Cout + co) * HO + i * st + r) * HO + j * st + t] +=
                    in[((n * Cin + ci) * H + i) * H + j] * w[((ci * Cout + co) * R + r) * R + t];
  for (int nc = 0; nc < N * Cout; ++nc)
    for (int h = 0; h < 14; ++h)
      for (int x = 0; x < 14; ++x) ref.push_back(full[(nc * HO + h) * HO + x]);
  std::vector<double> ws(kc::conv2d_workspace_elems(s));
  cpu::conv2d_dgrad(s, in.data(), w.data(), out.data(), ws.data());
  EXPECT_TRUE(all_close(out, ref, 1e-12, 1e-12));
}

// ----------------------------------------------------------------------------- code paths

TEST(CpuIsa, NamesRoundTrip) {
  for (auto isa : {cpu::CpuIsa::Generic, cpu::CpuIsa::Avx2, cpu::CpuIsa::Avx512}) {
    cpu::CpuIsa parsed{};
    ASSERT_TRUE(cpu::parse_cpu_isa(cpu::cpu_isa_name(isa), &parsed));
    EXPECT_EQ(parsed, isa);
  }
  cpu::CpuIsa unused{};
  EXPECT_FALSE(cpu::parse_cpu_isa("avx3", &unused));
  EXPECT_TRUE(cpu::cpu_isa_supported(cpu::CpuIsa::Generic));
}

// In one process, every path this CPU runs gives the reference GEMM and convolutions;
// a path it cannot run is refused.
TEST(CpuIsa, EverySupportedPathMatchesTheReference) {
  const cpu::CpuIsa saved = cpu::cpu_isa();
  for (auto isa : {cpu::CpuIsa::Generic, cpu::CpuIsa::Avx2, cpu::CpuIsa::Avx512}) {
    SCOPED_TRACE(cpu::cpu_isa_name(isa));
    if (!cpu::cpu_isa_supported(isa)) {
      EXPECT_THROW(cpu::set_cpu_isa(isa), std::invalid_argument);
      continue;
    }
    cpu::set_cpu_isa(isa);
    EXPECT_EQ(cpu::cpu_isa(), isa);
    check_gemm<float>(false, true, 37, 45, 300, 1.f, 0.f, 3);
    check_gemm<double>(true, false, 19, 70, 140, 0.5, 2.0, 4);
    check_conv<float>(kc::conv_transpose2d_shape_same(2, 32, 7, 7, 64, 3, 3, 2), 5);
    check_conv<float>(kc::conv2d_shape_valid(3, 1, 28, 28, 32, 3, 3, 2), 6);
  }
  cpu::set_cpu_isa(saved);
}

// ----------------------------------------------------------------------------- shapes

void expect_shape(const Conv2dShape& s, int N, int C, int H, int K, int P, int pad) {
  EXPECT_EQ(s.N, N);
  EXPECT_EQ(s.C, C);
  EXPECT_EQ(s.H, H);
  EXPECT_EQ(s.W, H);
  EXPECT_EQ(s.K, K);
  EXPECT_EQ(s.P, P);
  EXPECT_EQ(s.Q, P);
  EXPECT_EQ(s.pad_h, pad);
  EXPECT_EQ(s.pad_w, pad);
  EXPECT_EQ(s.R, 3);
  EXPECT_EQ(s.S, 3);
}

TEST(ConvShapes, CvaeLayers) {
  // encoder: Conv2D(32, 3, s2, valid) 28 -> 13, Conv2D(64, 3, s2, valid) 13 -> 6
  expect_shape(kc::conv2d_shape_valid(100, 1, 28, 28, 32, 3, 3, 2), 100, 1, 28, 32, 13, 0);
  expect_shape(kc::conv2d_shape_valid(100, 32, 13, 13, 64, 3, 3, 2), 100, 32, 13, 64, 6, 0);
  // decoder: Conv2DTranspose(64, s2, same) 7 -> 14: the extra padding row is at the bottom
  auto d1 = kc::conv_transpose2d_shape_same(100, 32, 7, 7, 64, 3, 3, 2);
  expect_shape(d1, 100, 64, 14, 32, 7, 0);
  EXPECT_EQ((d1.P - 1) * d1.stride_h + d1.R - d1.H - d1.pad_h, 1);  // bottom padding
  EXPECT_EQ(d1.stride_h, 2);
  // Conv2DTranspose(32, s2, same) 14 -> 28; Conv2DTranspose(1, s1, same) 28 -> 28
  expect_shape(kc::conv_transpose2d_shape_same(100, 64, 14, 14, 32, 3, 3, 2), 100, 32, 28, 64, 14, 0);
  auto d3 = kc::conv_transpose2d_shape_same(100, 32, 28, 28, 1, 3, 3, 1);
  expect_shape(d3, 100, 1, 28, 32, 28, 1);
  EXPECT_EQ(d3.stride_h, 1);
}

TEST(ConvShapes, SameAndValidFormulas) {
  auto s = kc::conv2d_shape_same(1, 1, 10, 9, 1, 4, 3, 3);  // total 3*3+4-10 = 3, 2*3+3-9 = 0
  EXPECT_EQ(s.P, 4);
  EXPECT_EQ(s.Q, 3);
  EXPECT_EQ(s.pad_h, 1);
  EXPECT_EQ(s.pad_w, 0);
  auto t = kc::conv2d_shape_same(1, 1, 5, 5, 1, 5, 5, 1);   // total 4: 2 top, 2 bottom
  EXPECT_EQ(t.P, 5);
  EXPECT_EQ(t.pad_h, 2);
  auto v = kc::conv2d_shape_valid(1, 1, 8, 7, 1, 3, 2, 2);
  EXPECT_EQ(v.P, 3);
  EXPECT_EQ(v.Q, 3);
}

TEST(ConvShapes, RejectsNonsense) {
  EXPECT_THROW(kc::conv2d_shape_valid(1, 1, 2, 2, 1, 3, 3, 1), std::invalid_argument);
  EXPECT_THROW(kc::conv2d_shape_valid(0, 1, 5, 5, 1, 3, 3, 1), std::invalid_argument);
  EXPECT_THROW(kc::conv2d_shape_same(1, 1, 5, 5, 1, 3, 3, 0), std::invalid_argument);
  EXPECT_THROW(kc::conv_transpose2d_shape_same(1, -1, 5, 5, 1, 3, 3, 2), std::invalid_argument);
  Conv2dShape bad{};
  EXPECT_THROW(kc::conv2d_workspace_elems(bad), std::invalid_argument);
}

TEST(ConvShapes, WorkspaceOfLargestCvaeLayer) {
  auto s = kc::conv_transpose2d_shape_same(100, 64, 14, 14, 32, 3, 3, 2);
  // fprop and wgrad read the input [100,32,28,28] in place with one zero row and column
  // added at the bottom/right (TF `same`); wgrad also keeps 7 partial dw of 64 x 288.
  EXPECT_EQ(kc::conv2d_workspace_elems(s), size_t(100) * 32 * 29 * 29 + size_t(7) * 64 * 288);
  // A `valid` conv reads in place: only wgrad's partials remain.
  auto v = kc::conv2d_shape_valid(100, 32, 13, 13, 64, 3, 3, 2);
  EXPECT_GE(kc::conv2d_workspace_elems(v), size_t(7) * 64 * 288);
}

}  // namespace
