// test_cuda_conv.cpp: the CUDA conv kernels (kernels/cuda/conv2d.cu) against their CPU twins
// (kernels/cpu/conv2d.cpp) on random odd shapes, the fused bias/ReLU epilogue, bitwise
// determinism, and cuDNN against ours where cuDNN can express the padding. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/cuda_test_util.h"
#include "test_util.h"

#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/kernels.h"

namespace {

namespace kc = cvae::kernels;
using cvae::testing::all_close;
using cvae::testing::DeviceBuffer;
using cvae::testing::max_abs;
using cvae::testing::random_vector;
using cvae::testing::test_stream;
using kc::Conv2dShape;

struct NamedShape {
  std::string name;
  Conv2dShape s;
};

// Odd shapes (valid and same, strides 1-3, odd channel counts, batch 1 and 3, non-square
// kernels, a 1x1, windows large enough to stage weights in several chunks), the CVAE's five
// conv layers at batch 7, and one at batch 32 (wide enough for the 8-channel register tile).
std::vector<NamedShape> shapes() {
  std::vector<NamedShape> v = {
      {"valid_s1_c3_k5_3x2", kc::conv2d_shape_valid(1, 3, 7, 6, 5, 3, 2, 1)},
      {"same_s2_asym_c5_k7", kc::conv2d_shape_same(3, 5, 10, 9, 7, 3, 3, 2)},
      {"same_s3_c2_k3_5x4", kc::conv2d_shape_same(1, 2, 11, 10, 3, 5, 4, 3)},
      {"valid_s3_c7_k9", kc::conv2d_shape_valid(3, 7, 13, 11, 9, 3, 3, 3)},
      {"same_s1_k1_out", kc::conv2d_shape_same(3, 3, 8, 8, 1, 3, 3, 1)},
      {"pointwise_1x1", kc::conv2d_shape_same(3, 1, 10, 9, 6, 1, 1, 1)},
      {"same_s1_c50_k9_7x7", kc::conv2d_shape_same(2, 50, 9, 9, 9, 7, 7, 1)},
      {"same_s2_c9_k50_7x7", kc::conv2d_shape_same(2, 9, 9, 9, 50, 7, 7, 2)},
      {"cvae_conv1_b7", kc::conv2d_shape_valid(7, 1, 28, 28, 32, 3, 3, 2)},
      {"cvae_conv2_b7", kc::conv2d_shape_valid(7, 32, 13, 13, 64, 3, 3, 2)},
      {"cvae_deconv1_b7", kc::conv_transpose2d_shape_same(7, 32, 7, 7, 64, 3, 3, 2)},
      {"cvae_deconv2_b7", kc::conv_transpose2d_shape_same(7, 64, 14, 14, 32, 3, 3, 2)},
      {"cvae_deconv3_b7", kc::conv_transpose2d_shape_same(7, 32, 28, 28, 1, 3, 3, 1)},
      {"cvae_deconv2_b32", kc::conv_transpose2d_shape_same(32, 64, 14, 14, 32, 3, 3, 2)},
  };
  // Different strides and paddings per axis (bottom/right padding implied by P, Q).
  v.push_back({"aniso_sh2_sw3_ph1_pw0", Conv2dShape{3, 3, 9, 11, 5, 3, 2, 5, 4, 2, 3, 1, 0}});
  return v;
}

size_t x_elems(const Conv2dShape& s) { return (size_t)s.N * s.C * s.H * s.W; }
size_t w_elems(const Conv2dShape& s) { return (size_t)s.K * s.C * s.R * s.S; }
size_t y_elems(const Conv2dShape& s) { return (size_t)s.N * s.K * s.P * s.Q; }

// The tolerance rule of this suite, |got - ref| <= atol + rtol |ref| with rtol = 1e-5 and
//   atol = 1e-5 * sqrt(L) * max|a| * max|b|
// for a sum of L products of a and b: rounding error grows like sqrt(L) times the size of
// a term, and near-zero outputs (cancellation) have no relative accuracy to speak of.
constexpr double kRtol = 1e-5;
double atol_for(int64_t terms, const std::vector<float>& a, const std::vector<float>& b) {
  return 1e-5 * std::sqrt(static_cast<double>(terms)) * max_abs(a) * max_abs(b);
}
int64_t fprop_terms(const Conv2dShape& s) { return (int64_t)s.C * s.R * s.S; }
int64_t dgrad_terms(const Conv2dShape& s) { return (int64_t)s.K * s.R * s.S; }
int64_t wgrad_terms(const Conv2dShape& s) { return (int64_t)s.N * s.P * s.Q; }

std::vector<float> cpu_fprop(const Conv2dShape& s, const std::vector<float>& x,
                             const std::vector<float>& w) {
  std::vector<float> y(y_elems(s)), work(kc::conv2d_workspace_elems(s));
  kc::cpu::conv2d_fprop(s, x.data(), w.data(), y.data(), work.data());
  return y;
}
std::vector<float> cpu_dgrad(const Conv2dShape& s, const std::vector<float>& dy,
                             const std::vector<float>& w) {
  std::vector<float> dx(x_elems(s)), work(kc::conv2d_workspace_elems(s));
  kc::cpu::conv2d_dgrad(s, dy.data(), w.data(), dx.data(), work.data());
  return dx;
}
std::vector<float> cpu_wgrad(const Conv2dShape& s, const std::vector<float>& x,
                             const std::vector<float>& dy) {
  std::vector<float> dw(w_elems(s)), work(kc::conv2d_workspace_elems(s));
  kc::cpu::conv2d_wgrad(s, x.data(), dy.data(), dw.data(), work.data());
  return dw;
}

// Random device inputs of one shape; outputs NaN-poisoned before every call.
struct Problem {
  Conv2dShape s;
  std::vector<float> x, w, dy;
  DeviceBuffer<float> dx_in, dw_in, ddy_in, out_y, out_x, out_w;
  explicit Problem(const Conv2dShape& shape, uint32_t seed = 1)
      : s(shape),
        x(random_vector<float>(x_elems(shape), seed)),
        w(random_vector<float>(w_elems(shape), seed + 1)),
        dy(random_vector<float>(y_elems(shape), seed + 2)),
        dx_in(x), dw_in(w), ddy_in(dy),
        out_y(y_elems(shape)), out_x(x_elems(shape)), out_w(w_elems(shape)) {}

  std::vector<float> fprop() {
    out_y.poison();
    kc::cuda::conv2d_fprop(s, dx_in.get(), dw_in.get(), out_y.get(), test_stream());
    return out_y.download();
  }
  std::vector<float> dgrad() {
    out_x.poison();
    kc::cuda::conv2d_dgrad(s, ddy_in.get(), dw_in.get(), out_x.get(), test_stream());
    return out_x.download();
  }
  std::vector<float> wgrad() {
    out_w.poison();
    kc::cuda::conv2d_wgrad(s, dx_in.get(), ddy_in.get(), out_w.get(), test_stream());
    return out_w.download();
  }
};

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// cuDNN pads symmetrically; these are the shapes it can compute (conv_cudnn.cu).
bool cudnn_expressible(const Conv2dShape& s) {
  return s.H + 2 * s.pad_h >= s.R && s.W + 2 * s.pad_w >= s.S &&
         s.P == (s.H + 2 * s.pad_h - s.R) / s.stride_h + 1 &&
         s.Q == (s.W + 2 * s.pad_w - s.S) / s.stride_w + 1;
}

}  // namespace
#endif  // CVAE_HAVE_CUDA

TEST(CudaConv, FpropMatchesCpu) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (const auto& [name, s] : shapes()) {
    SCOPED_TRACE(name);
    Problem pr(s);
    EXPECT_TRUE(all_close(pr.fprop(), cpu_fprop(s, pr.x, pr.w), kRtol,
                          atol_for(fprop_terms(s), pr.x, pr.w)));
  }
#endif
}

TEST(CudaConv, DgradMatchesCpu) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (const auto& [name, s] : shapes()) {
    SCOPED_TRACE(name);
    Problem pr(s);
    EXPECT_TRUE(all_close(pr.dgrad(), cpu_dgrad(s, pr.dy, pr.w), kRtol,
                          atol_for(dgrad_terms(s), pr.dy, pr.w)));
  }
#endif
}

TEST(CudaConv, WgradMatchesCpu) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (const auto& [name, s] : shapes()) {
    SCOPED_TRACE(name);
    Problem pr(s);
    EXPECT_TRUE(all_close(pr.wgrad(), cpu_wgrad(s, pr.x, pr.dy), kRtol,
                          atol_for(wgrad_terms(s), pr.x, pr.dy)));
  }
#endif
}

// conv2d_fprop_bias_act == relu?(cpu fprop + bias[k]); also with no bias.
TEST(CudaConv, FpropBiasActMatchesCpu) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (const auto& [name, s] : shapes()) {
    Problem pr(s);
    const auto bias = random_vector<float>(s.K, 7);
    DeviceBuffer<float> dbias(bias);
    const auto conv = cpu_fprop(s, pr.x, pr.w);
    const double atol = atol_for(fprop_terms(s), pr.x, pr.w);
    for (bool with_bias : {true, false})
      for (bool relu : {true, false}) {
        SCOPED_TRACE(name + (with_bias ? " bias" : " no bias") + (relu ? " relu" : " linear"));
        std::vector<float> ref = conv;
        const size_t pq = (size_t)s.P * s.Q;
        for (size_t i = 0; i < ref.size(); ++i) {
          if (with_bias) ref[i] += bias[(i / pq) % s.K];
          if (relu) ref[i] = ref[i] > 0.f ? ref[i] : 0.f;
        }
        pr.out_y.poison();
        kc::cuda::conv2d_fprop_bias_act(s, pr.dx_in.get(), pr.dw_in.get(),
                                        with_bias ? dbias.get() : nullptr, relu, pr.out_y.get(),
                                        test_stream());
        EXPECT_TRUE(all_close(pr.out_y.download(), ref, kRtol, atol));
      }
  }
#endif
}

// conv2d_dgrad_bias_act (a transposed conv's forward with its epilogue) against the CPU
// twin, and bitwise its own dgrad + bias[c] then ReLU (the epilogue adds nothing else).
TEST(CudaConv, DgradBiasActMatchesCpu) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (const auto& [name, s] : shapes()) {
    Problem pr(s);
    const auto bias = random_vector<float>(s.C, 8);
    DeviceBuffer<float> dbias(bias);
    const auto plain = pr.dgrad();
    const double atol = atol_for(dgrad_terms(s), pr.dy, pr.w);
    std::vector<float> work(kc::conv2d_workspace_elems(s));
    for (bool with_bias : {true, false})
      for (bool relu : {true, false}) {
        SCOPED_TRACE(name + (with_bias ? " bias" : " no bias") + (relu ? " relu" : " linear"));
        std::vector<float> ref(x_elems(s)), own = plain;
        kc::cpu::conv2d_dgrad_bias_act<float>(s, pr.dy.data(), pr.w.data(), with_bias ? bias.data() : nullptr,
                                              relu, ref.data(), work.data());
        const size_t hw = (size_t)s.H * s.W;
        for (size_t i = 0; i < own.size(); ++i) {
          if (with_bias) own[i] += bias[(i / hw) % s.C];
          if (relu) own[i] = own[i] < 0.f ? 0.f : own[i];
        }
        pr.out_x.poison();
        kc::cuda::conv2d_dgrad_bias_act(s, pr.ddy_in.get(), pr.dw_in.get(), with_bias ? dbias.get() : nullptr, relu,
                                        pr.out_x.get(), test_stream());
        const auto got = pr.out_x.download();
        EXPECT_TRUE(all_close(got, ref, kRtol, atol));
        EXPECT_TRUE(bitwise_equal(got, own));
      }
  }
#endif
}

// No atomics, fixed summation orders: a second run gives the same bits.
TEST(CudaConv, RunsAreBitwiseRepeatable) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (const auto& [name, s] : shapes()) {
    if (cvae::testing::kSanitized && s.N >= 32) continue;  // the training tests run that width under ASan
    SCOPED_TRACE(name);
    Problem pr(s, 11);
    EXPECT_TRUE(bitwise_equal(pr.fprop(), pr.fprop())) << "fprop";
    EXPECT_TRUE(bitwise_equal(pr.dgrad(), pr.dgrad())) << "dgrad";
    EXPECT_TRUE(bitwise_equal(pr.wgrad(), pr.wgrad())) << "wgrad";
  }
#endif
}

TEST(CudaConv, RejectsInvalidShapes) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  Conv2dShape bad = kc::conv2d_shape_valid(1, 1, 5, 5, 1, 3, 3, 1);
  bad.stride_h = 0;
  EXPECT_THROW(kc::cuda::conv2d_fprop(bad, nullptr, nullptr, nullptr, test_stream()),
               std::invalid_argument);
  EXPECT_THROW(kc::cuda::conv2d_dgrad(bad, nullptr, nullptr, nullptr, test_stream()),
               std::invalid_argument);
  EXPECT_THROW(kc::cuda::conv2d_wgrad(bad, nullptr, nullptr, nullptr, test_stream()),
               std::invalid_argument);
#endif
}

// cuDNN (FMA math, deterministic algorithms) against ours, on the shapes whose padding
// cuDNN can express; the others must be refused with std::invalid_argument.
TEST(CudaConv, CudnnAgreesWhereExpressible) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  if (!kc::cuda::cudnn_available()) GTEST_SKIP() << "built without cuDNN";
  int compared = 0;
  for (const auto& [name, s] : shapes()) {
    SCOPED_TRACE(name);
    Problem pr(s);
    if (!cudnn_expressible(s)) {
      EXPECT_THROW(kc::cuda::cudnn_workspace_bytes(s), std::invalid_argument);
      EXPECT_THROW(kc::cuda::cudnn_conv2d_fprop(s, pr.dx_in.get(), pr.dw_in.get(),
                                                pr.out_y.get(), nullptr, test_stream()),
                   std::invalid_argument);
      continue;
    }
    ++compared;
    DeviceBuffer<char> work(kc::cuda::cudnn_workspace_bytes(s));
    const auto ours_y = pr.fprop(), ours_x = pr.dgrad(), ours_w = pr.wgrad();
    pr.out_y.poison();
    kc::cuda::cudnn_conv2d_fprop(s, pr.dx_in.get(), pr.dw_in.get(), pr.out_y.get(), work.get(),
                                 test_stream());
    EXPECT_TRUE(all_close(pr.out_y.download(), ours_y, kRtol,
                          atol_for(fprop_terms(s), pr.x, pr.w))) << "fprop";
    pr.out_x.poison();
    kc::cuda::cudnn_conv2d_dgrad(s, pr.ddy_in.get(), pr.dw_in.get(), pr.out_x.get(), work.get(),
                                 test_stream());
    EXPECT_TRUE(all_close(pr.out_x.download(), ours_x, kRtol,
                          atol_for(dgrad_terms(s), pr.dy, pr.w))) << "dgrad";
    pr.out_w.poison();
    kc::cuda::cudnn_conv2d_wgrad(s, pr.dx_in.get(), pr.ddy_in.get(), pr.out_w.get(), work.get(),
                                 test_stream());
    EXPECT_TRUE(all_close(pr.out_w.download(), ours_w, kRtol,
                          atol_for(wgrad_terms(s), pr.x, pr.dy))) << "wgrad";
  }
  EXPECT_GE(compared, 4);  // conv1, conv2, deconv3 and several odd shapes are symmetric
#endif
}
