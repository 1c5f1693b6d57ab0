// test_gradcheck.cpp: a float64 finite-difference gradient check for every op,
// on random inputs of several shapes (odd sizes, batch 1 and batch > 1).
#include <gtest/gtest.h>

#include <array>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "kernels/kernels.h"
#include "models/cvae.h"
#include "support/gradcheck.h"

namespace cvae {
namespace {

using testing::gradcheck;
using testing::random_leaf;
using testing::random_leaf_away_from_zero;

struct ConvCase {
  int N, C, H, W, K, R, stride;
  Padding pad;
};

const ConvCase kConvCases[] = {
    {1, 1, 5, 5, 2, 3, 1, Padding::Valid}, {2, 3, 7, 6, 2, 3, 2, Padding::Valid},
    {1, 2, 6, 7, 3, 3, 1, Padding::Same},  {3, 2, 7, 7, 2, 3, 2, Padding::Same},
    {2, 3, 8, 5, 2, 2, 2, Padding::Same},  {1, 2, 9, 9, 1, 5, 3, Padding::Valid},
};

// The oracle must be able to fail: an op whose backward is off by 1% is caught.
TEST(Gradcheck, CatchesAWrongBackward) {
  auto wrong_square = [](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor y = mul(x.detach(), x.detach());
    return attach(y, {x}, [x](const Tensor& dy) -> std::vector<Tensor> {
      return {scale(mul(dy, x.detach()), 2.02)};  // should be 2.0
    });
  };
  Tensor x = random_leaf({3, 4}, 7);
  EXPECT_FALSE(gradcheck(wrong_square, {x}));
}

TEST(Gradcheck, Conv2d) {
  uint32_t seed = 1;
  for (const ConvCase& c : kConvCases) {
    SCOPED_TRACE(::testing::Message() << "N" << c.N << " C" << c.C << " H" << c.H << " W" << c.W
                                      << " K" << c.K << " R" << c.R << " s" << c.stride);
    Tensor x = random_leaf({c.N, c.C, c.H, c.W}, seed++);
    Tensor w = random_leaf({c.K, c.C, c.R, c.R}, seed++);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], c.stride, c.pad); },
        {x, w}));
  }
}

TEST(Gradcheck, ConvTranspose2d) {
  uint32_t seed = 100;
  for (const ConvCase& c : kConvCases) {
    if (c.pad == Padding::Valid && c.R < c.stride) continue;
    SCOPED_TRACE(::testing::Message() << "N" << c.N << " C" << c.C << " H" << c.H << " K" << c.K
                                      << " R" << c.R << " s" << c.stride);
    Tensor x = random_leaf({c.N, c.C, c.H, c.W}, seed++);
    Tensor w = random_leaf({c.C, c.K, c.R, c.R}, seed++);  // [Cin, Cout, R, S]
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return conv_transpose2d(in[0], in[1], c.stride, c.pad);
        },
        {x, w}));
  }
}

// The layer as the CVAE's decoder uses it (bias, ReLU) at shapes where the CPU writes the
// ReLU's gradient bordered for both backward passes (kernels::conv2d_shared_x_border):
// the deconvs' own path, which the small cases above do not take.
TEST(Gradcheck, ConvTranspose2dWithBiasAndReluWhereTheGradientIsBordered) {
  struct Case { int N, Cin, H, W, Cout, stride; };
  uint32_t seed = 150;
  for (const Case& c : {Case{2, 16, 3, 4, 4, 2}, Case{1, 16, 4, 3, 5, 1}}) {
    ASSERT_TRUE(kernels::conv2d_shared_x_border(
                    kernels::conv_transpose2d_shape_same(c.N, c.Cin, c.H, c.W, c.Cout, 3, 3, c.stride))
                    .any());
    Tensor x = random_leaf({c.N, c.Cin, c.H, c.W}, seed++);
    Tensor w = random_leaf({c.Cin, c.Cout, 3, 3}, seed++);
    Tensor b = random_leaf({c.Cout}, seed++, -0.1, 0.1);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& in) {
          return conv_transpose2d(in[0], in[1], in[2], c.stride, Padding::Same, true);
        },
        {x, w, b}));
  }
}

TEST(Gradcheck, Linear) {
  for (auto [N, in, out] : {std::array<int, 3>{1, 3, 2}, {4, 7, 5}, {3, 17, 9}}) {
    Tensor x = random_leaf({N, in}, 200 + N), w = random_leaf({out, in}, 300 + N);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return linear(t[0], t[1]); }, {x, w}));
  }
}

TEST(Gradcheck, BiasAdd) {
  for (Shape s : {Shape{1, 3}, Shape{4, 5}, Shape{2, 3, 4, 5}, Shape{1, 2, 3, 1}}) {
    Tensor x = random_leaf(s, 400), b = random_leaf({s[1]}, 401);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return bias_add(t[0], t[1]); }, {x, b}));
    // fused with the ReLU: inputs kept off the kink (x + b away from 0)
    Tensor xr = random_leaf_away_from_zero(s, 402, 0.3, 1.0);
    Tensor br = random_leaf({s[1]}, 403, -0.1, 0.1);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return bias_add(t[0], t[1], true); }, {xr, br}));
  }
}

TEST(Gradcheck, Relu) {
  for (Shape s : {Shape{1, 7}, Shape{3, 2, 5, 3}}) {
    Tensor x = random_leaf_away_from_zero(s, 500);  // relu has a kink at 0
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return relu(t[0]); }, {x}));
  }
}

TEST(Gradcheck, Sigmoid) {
  for (Shape s : {Shape{1, 7}, Shape{3, 2, 5, 3}}) {
    Tensor x = random_leaf(s, 510, -6, 6);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return sigmoid(t[0]); }, {x}));
  }
}

TEST(Gradcheck, Exp) {
  for (Shape s : {Shape{1, 7}, Shape{3, 2, 5, 3}}) {
    Tensor x = random_leaf(s, 520, -3, 3);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return exp(t[0]); }, {x}));
  }
}

TEST(Gradcheck, AddSubMulScale) {
  for (Shape s : {Shape{1, 1}, Shape{3, 5}, Shape{2, 3, 4, 3}}) {
    Tensor a = random_leaf(s, 530), b = random_leaf(s, 531);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return add(t[0], t[1]); }, {a, b}));
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return sub(t[0], t[1]); }, {a, b}));
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return mul(t[0], t[1]); }, {a, b}));
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return scale(t[0], -2.5); }, {a}));
    // the same tensor on both sides: gradients from two uses must add up
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return mul(t[0], t[0]); }, {a}));
  }
}

TEST(Gradcheck, SumAndMean) {
  Tensor x = random_leaf({2, 3, 4, 5}, 540);
  std::vector<std::vector<int>> axis_sets = {{0}, {1}, {3}, {-1}, {1, 2, 3}, {0, 2}, {0, 1, 2, 3}, {2, 0}};
  for (const auto& axes : axis_sets) {
    for (bool keep : {false, true}) {
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& t) { return sum(t[0], axes, keep); }, {x}));
      EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>& t) { return mean(t[0], axes, keep); }, {x}));
    }
  }
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return sum(t[0]); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return mean(t[0]); }, {x}));
}

TEST(Gradcheck, ReshapeFlatten) {
  Tensor x = random_leaf({3, 2, 5, 1}, 550);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return reshape(t[0], {5, -1}); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return flatten(t[0]); }, {x}));
}

TEST(Gradcheck, Split) {
  Tensor x = random_leaf({3, 7, 2}, 560);
  EXPECT_TRUE(gradcheck(
      [](const std::vector<Tensor>& t) {
        auto parts = split(t[0], {2, 0, 5});
        // use the pieces unequally so a swapped gradient shows
        return add(sum(parts[0], {1}), scale(sum(parts[2], {1}), 3.0));
      },
      {x}));
  Tensor y = random_leaf({1, 4}, 561);
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return split(t[0], {2, 2})[1]; }, {y}));
}

TEST(Gradcheck, SigmoidCrossEntropy) {
  for (Shape s : {Shape{1, 5}, Shape{2, 1, 3, 4}}) {
    Tensor logits = random_leaf(s, 570, -8, 8);
    Tensor labels = random_leaf(s, 571, 0, 1);
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& t) { return sigmoid_cross_entropy_with_logits(t[0], t[1]); },
        {logits, labels}));
  }
}

TEST(Gradcheck, LogNormalPdf) {
  for (Shape s : {Shape{1, 2}, Shape{4, 3}, Shape{2, 3, 2}}) {
    Tensor x = random_leaf(s, 580), m = random_leaf(s, 581), lv = random_leaf(s, 582, -2, 2);
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& t) { return log_normal_pdf(t[0], t[1], t[2]); }, {x, m, lv}));
    EXPECT_TRUE(gradcheck(
        [](const std::vector<Tensor>& t) { return log_normal_pdf(t[0], Tensor(), Tensor()); }, {x}));
  }
}

TEST(Gradcheck, KlNormal) {
  for (Shape s : {Shape{1, 2}, Shape{5, 3}}) {
    Tensor m = random_leaf(s, 590), lv = random_leaf(s, 591, -2, 2);
    EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& t) { return kl_normal(t[0], t[1]); }, {m, lv}));
  }
}

TEST(Gradcheck, Reparameterize) {
  for (Shape s : {Shape{1, 2}, Shape{3, 5}}) {
    Tensor m = random_leaf(s, 600), lv = random_leaf(s, 601, -2, 2);
    Tensor eps = random_leaf(s, 602, -2, 2, /*requires_grad=*/false);
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& t) { return reparameterize(t[0], t[1], eps); }, {m, lv}));
    // The Philox path draws the same eps again for the same (seed, offset).
    EXPECT_TRUE(gradcheck(
        [&](const std::vector<Tensor>& t) {
          Philox rng{7, 3};
          return reparameterize(t[0], t[1], rng);
        },
        {m, lv}));
  }
}

// The fused loss op against finite differences, both KL forms, odd sizes.
TEST(Gradcheck, VaeElboLossFused) {
  for (auto [N, D, L] : {std::array<int, 3>{1, 5, 2}, {3, 7, 3}}) {
    Tensor logits = random_leaf({N, 1, 1, D}, 620, -4, 4);
    Tensor x = random_leaf({N, 1, 1, D}, 621, 0, 1, /*requires_grad=*/false);
    Tensor z = random_leaf({N, L}, 622), m = random_leaf({N, L}, 623), lv = random_leaf({N, L}, 624, -1, 1);
    for (bool analytic : {false, true}) {
      EXPECT_TRUE(gradcheck(
          [&](const std::vector<Tensor>& t) { return vae_elbo_loss(t[0], x, t[1], t[2], t[3], analytic); },
          {logits, z, m, lv}))
          << (analytic ? "analytic" : "mc");
    }
  }
}

// The whole tutorial loss in float64, both KL forms: a sample of elements of
// every parameter (a full check would take minutes).
TEST(Gradcheck, CvaeLoss) {
  CVAE model(2, 11);
  model.to(DType::F64);
  Tensor x = random_leaf({2, 1, 28, 28}, 610, 0, 1, false);
  double* px = x.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) px[i] = px[i] >= 0.5 ? 1.0 : 0.0;
  Tensor eps = random_leaf({2, 2}, 611, -1.5, 1.5, false);
  NamedTensors params = model.named_parameters();
  std::vector<Tensor> inputs;
  for (auto& [name, p] : params) inputs.push_back(p);
  // Biases start at zero (Keras init): move them off so relu kinks are not at ties.
  for (Tensor& p : inputs)
    if (p.dim() == 1) p.copy_from(random_leaf(p.shape(), 612 + uint32_t(p.numel()), -0.1, 0.1, false));
  for (KlMode kl : {KlMode::MonteCarlo, KlMode::Analytic}) {
    testing::GradcheckOptions opt;
    opt.max_elems = 12;
    opt.rtol = 1e-4;  // a deep float64 composite: central differences carry ~1e-6 relative noise
    opt.atol = 1e-6;
    EXPECT_TRUE(gradcheck([&](const std::vector<Tensor>&) { return cvae_loss(model, x, eps, kl); },
                          inputs, opt));
  }
}

}  // namespace
}  // namespace cvae
