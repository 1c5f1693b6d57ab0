// test_golden.cpp: every op against PyTorch (TF semantics), from the fixtures
// that tests/golden/make_fixtures.py writes. The engine runs in float32 on the
// stored float32 inputs; the references are float64 torch on the same values.
// Each case checks the forward result, then the gradients of sum(out * dy)
// (dy stored with the case) for every differentiable input.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/cvae.h"
#include "support/fixtures.h"
#include "test_util.h"

namespace cvae {
namespace {

using testing::Fixture;
using testing::load_fixture;

// The tolerance rule of this suite, the same for every op, value and gradient:
//   |got - ref| <= atol + rtol*|ref|,  rtol = 1e-5,  atol = 1e-5 * max|ref|
// rtol is DESIGN.md's "matches PyTorch to 1e-5 relative in float32". The
// absolute part is scaled to the tensor compared because float32 rounding in a
// sum (conv, GEMM, reductions, backward accumulations) is relative to the
// magnitude of the terms, not of a result that may have cancelled to ~0.
constexpr double kRtol = 1e-5;
constexpr double kAtolScale = 1e-5;

::testing::AssertionResult matches(const Tensor& got, const Fixture& fx, const std::string& ref) {
  if (!got.defined())
    return ::testing::AssertionFailure() << ref << ": the engine produced no tensor "
                                         << "(a gradient that was never accumulated?)";
  Tensor r = fx.f64(ref);
  if (got.shape() != r.shape())
    return ::testing::AssertionFailure() << ref << ": shape " << shape_str(got.shape())
                                         << ", reference " << shape_str(r.shape());
  if (got.dtype() != DType::F32)
    return ::testing::AssertionFailure() << ref << ": dtype " << dtype_name(got.dtype())
                                         << ", expected float32";
  std::vector<double> rv = r.to_double_vector();
  std::vector<double> gv = got.to_double_vector();
  ::testing::AssertionResult res =
      testing::all_close(gv, rv, kRtol, kAtolScale * testing::max_abs(rv));
  if (!res) return ::testing::AssertionFailure() << ref << ": " << res.message();
  return res;
}

// Input `field` of case k as float32; requires grad unless told otherwise.
Tensor input(const Fixture& fx, int k, const std::string& field, bool requires_grad = true) {
  Tensor t = fx.f32(Fixture::case_key(k, field));
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

std::string key(int k, const std::string& field) { return Fixture::case_key(k, field); }

// Checks out against case k's "y" (or `y_field`), then back-propagates
// sum(out * dy) and checks each (tensor, reference field) gradient.
void check_case(const Fixture& fx, int k, const Tensor& out,
                const std::vector<std::pair<Tensor, std::string>>& grads,
                const std::string& y_field = "y") {
  EXPECT_TRUE(matches(out, fx, key(k, y_field)));
  Tensor dy = input(fx, k, "dy", /*requires_grad=*/false);
  cvae::sum(cvae::mul(out, dy)).backward();
  for (const auto& [t, field] : grads) EXPECT_TRUE(matches(t.grad(), fx, key(k, field)));
}

// Loads the fixture and runs body(k) for each case under a trace naming it.
template <typename Body>
void for_each_case(const std::string& name, Body body) {
  Fixture fx;
  ASSERT_TRUE(load_fixture(name, &fx));
  ASSERT_GT(fx.num_cases(), 0) << fx.path() << " has no cases";
  for (int k = 0; k < fx.num_cases(); ++k) {
    SCOPED_TRACE(fx.path() + " case" + std::to_string(k) + " " + fx.meta("case" + std::to_string(k)));
    body(fx, k);
  }
}

Padding padding_of(const nlohmann::json& info) {
  return info.at("padding").get<std::string>() == "same" ? Padding::Same : Padding::Valid;
}

// --- layers ---------------------------------------------------------------------

TEST(Golden, Conv2d) {
  for_each_case("conv2d", [](const Fixture& fx, int k) {
    auto info = fx.case_info(k);
    Tensor x = input(fx, k, "x"), w = input(fx, k, "w");
    Tensor y = conv2d(x, w, info.at("stride").get<int>(), padding_of(info));
    check_case(fx, k, y, {{x, "dx"}, {w, "dw"}});
  });
}

TEST(Golden, ConvTranspose2d) {
  for_each_case("conv_transpose2d", [](const Fixture& fx, int k) {
    auto info = fx.case_info(k);
    Tensor x = input(fx, k, "x"), w = input(fx, k, "w");
    Tensor y = conv_transpose2d(x, w, info.at("stride").get<int>(), padding_of(info));
    check_case(fx, k, y, {{x, "dx"}, {w, "dw"}});
  });
}

TEST(Golden, Linear) {
  for_each_case("linear", [](const Fixture& fx, int k) {
    Tensor x = input(fx, k, "x"), w = input(fx, k, "w");
    check_case(fx, k, linear(x, w), {{x, "dx"}, {w, "dw"}});
  });
}

TEST(Golden, BiasAdd) {
  for_each_case("bias_add", [](const Fixture& fx, int k) {
    Tensor x = input(fx, k, "x"), b = input(fx, k, "b");
    check_case(fx, k, bias_add(x, b), {{x, "dx"}, {b, "db"}});
  });
}

// --- elementwise -----------------------------------------------------------------

template <typename Op>
void unary_golden(const std::string& name, Op op) {
  for_each_case(name, [&](const Fixture& fx, int k) {
    Tensor x = input(fx, k, "x");
    check_case(fx, k, op(x), {{x, "dx"}});
  });
}

template <typename Op>
void binary_golden(const std::string& name, Op op) {
  for_each_case(name, [&](const Fixture& fx, int k) {
    Tensor a = input(fx, k, "a"), b = input(fx, k, "b");
    check_case(fx, k, op(a, b), {{a, "da"}, {b, "db"}});
  });
}

TEST(Golden, Relu) { unary_golden("relu", [](const Tensor& x) { return relu(x); }); }
TEST(Golden, Sigmoid) { unary_golden("sigmoid", [](const Tensor& x) { return sigmoid(x); }); }
TEST(Golden, Exp) { unary_golden("exp", [](const Tensor& x) { return cvae::exp(x); }); }

TEST(Golden, Add) { binary_golden("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }); }
TEST(Golden, Sub) { binary_golden("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }); }
TEST(Golden, Mul) { binary_golden("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }); }

TEST(Golden, Scale) {
  for_each_case("scale", [](const Fixture& fx, int k) {
    double alpha = fx.case_info(k).at("alpha").get<double>();
    Tensor x = input(fx, k, "x");
    check_case(fx, k, scale(x, alpha), {{x, "dx"}});
  });
}

// --- reductions and shape ---------------------------------------------------------

// axes null: the whole-tensor overload (shape []).
template <typename Reduce, typename ReduceAll>
void reduce_golden(const std::string& name, Reduce reduce, ReduceAll reduce_all) {
  for_each_case(name, [&](const Fixture& fx, int k) {
    auto info = fx.case_info(k);
    Tensor x = input(fx, k, "x");
    Tensor y = info.at("axes").is_null()
                   ? reduce_all(x)
                   : reduce(x, info.at("axes").get<std::vector<int>>(),
                            info.at("keepdim").get<bool>());
    check_case(fx, k, y, {{x, "dx"}});
  });
}

TEST(Golden, Sum) {
  reduce_golden(
      "sum", [](const Tensor& x, std::vector<int> axes, bool keep) { return cvae::sum(x, axes, keep); },
      [](const Tensor& x) { return cvae::sum(x); });
}

TEST(Golden, Mean) {
  reduce_golden(
      "mean", [](const Tensor& x, std::vector<int> axes, bool keep) { return cvae::mean(x, axes, keep); },
      [](const Tensor& x) { return cvae::mean(x); });
}

TEST(Golden, Reshape) {
  for_each_case("reshape", [](const Fixture& fx, int k) {
    auto info = fx.case_info(k);
    Tensor x = input(fx, k, "x");
    Tensor y = info.at("op").get<std::string>() == "flatten"
                   ? flatten(x)
                   : reshape(x, info.at("shape").get<Shape>());
    check_case(fx, k, y, {{x, "dx"}});
  });
}

TEST(Golden, Split) {
  for_each_case("split", [](const Fixture& fx, int k) {
    auto sizes = fx.case_info(k).at("sizes").get<std::vector<int64_t>>();
    Tensor x = input(fx, k, "x");
    std::vector<Tensor> ys = split(x, sizes);
    ASSERT_EQ(ys.size(), sizes.size());
    // loss = sum_i sum(y_i * dy_i): every piece carries its own upstream gradient.
    Tensor loss;
    for (size_t i = 0; i < ys.size(); ++i) {
      std::string n = std::to_string(i);
      EXPECT_TRUE(matches(ys[i], fx, key(k, "y" + n)));
      Tensor part = cvae::sum(cvae::mul(ys[i], input(fx, k, "dy" + n, false)));
      loss = loss.defined() ? add(loss, part) : part;
    }
    loss.backward();
    EXPECT_TRUE(matches(x.grad(), fx, key(k, "dx")));
  });
}

// --- losses and densities -----------------------------------------------------------

TEST(Golden, SigmoidCrossEntropy) {
  for_each_case("sigmoid_cross_entropy", [](const Fixture& fx, int k) {
    Tensor logits = input(fx, k, "logits"), labels = input(fx, k, "labels");
    check_case(fx, k, sigmoid_cross_entropy_with_logits(logits, labels),
               {{logits, "dlogits"}, {labels, "dlabels"}});
  });
}

TEST(Golden, LogNormalPdf) {
  for_each_case("log_normal_pdf", [](const Fixture& fx, int k) {
    Tensor x = input(fx, k, "x");
    if (fx.case_info(k).at("standard").get<bool>()) {
      // Undefined mean and logvar: the standard normal, log p(z).
      check_case(fx, k, log_normal_pdf(x, Tensor(), Tensor()), {{x, "dx"}});
    } else {
      Tensor m = input(fx, k, "mean"), lv = input(fx, k, "logvar");
      check_case(fx, k, log_normal_pdf(x, m, lv), {{x, "dx"}, {m, "dmean"}, {lv, "dlogvar"}});
    }
  });
}

TEST(Golden, KlNormal) {
  for_each_case("kl_normal", [](const Fixture& fx, int k) {
    Tensor m = input(fx, k, "mean"), lv = input(fx, k, "logvar");
    check_case(fx, k, kl_normal(m, lv), {{m, "dmean"}, {lv, "dlogvar"}});
  });
}

TEST(Golden, Reparameterize) {
  for_each_case("reparameterize", [](const Fixture& fx, int k) {
    Tensor m = input(fx, k, "mean"), lv = input(fx, k, "logvar"), eps = input(fx, k, "eps");
    check_case(fx, k, reparameterize(m, lv, eps),
               {{m, "dmean"}, {lv, "dlogvar"}, {eps, "deps"}}, "z");
  });
}

// --- optimizer ---------------------------------------------------------------------

// torch.optim.Adam(lr=1e-3, betas=(0.9,0.999), eps=1e-8), three steps with the
// stored gradients. Besides the parameters (the suite's rule), the update
// p - p0 is compared at float32 rounding of the parameters: the update is only
// ~1e-3 of a parameter, so a wrong epsilon form or bias correction could hide
// inside the parameter tolerance. param1 holds gradients of 1e-8..1e-6, where
// the epsilon's place decides the step.
TEST(Golden, Adam) {
  Fixture fx;
  ASSERT_TRUE(load_fixture("adam", &fx));
  const int num_params = std::stoi(fx.meta("num_params"));
  const int num_steps = std::stoi(fx.meta("num_steps"));
  ASSERT_GT(num_params, 0);
  AdamOptions opt;
  opt.lr = 1e-3;
  opt.beta1 = 0.9;
  opt.beta2 = 0.999;
  opt.eps = 1e-8;
  NamedTensors params;
  std::vector<std::vector<double>> init;
  for (int i = 0; i < num_params; ++i) {
    std::string n = "param" + std::to_string(i);
    Tensor p = fx.f32(n + ".init");
    p.set_requires_grad(true);
    params.emplace_back(n, p);
    init.push_back(p.to_double_vector());
  }
  Adam adam(params, opt);
  for (int s = 1; s <= num_steps; ++s) {
    std::string step = "step" + std::to_string(s);
    for (int i = 0; i < num_params; ++i) {
      Tensor& p = params[i].second;
      p.zero_grad();
      // d/dp sum(p * g) = g: the stored gradient, set through the tape.
      cvae::sum(cvae::mul(p, fx.f32(step + ".grad" + std::to_string(i)))).backward();
    }
    adam.step();
    EXPECT_EQ(adam.steps(), s);
    for (int i = 0; i < num_params; ++i) {
      std::string ref = step + ".param" + std::to_string(i);
      SCOPED_TRACE(ref);
      const Tensor& p = params[i].second;
      EXPECT_TRUE(matches(p, fx, ref));
      std::vector<double> got = p.to_double_vector(), want = fx.values(ref);
      ASSERT_EQ(got.size(), want.size());
      std::vector<double> got_delta(got.size()), want_delta(got.size());
      for (size_t j = 0; j < got.size(); ++j) {
        got_delta[j] = got[j] - init[i][j];
        want_delta[j] = want[j] - init[i][j];
      }
      // One float32 rounding of the parameter per step (2^-24 relative), and
      // 1e-4 of the update for the arithmetic of the update itself.
      double atol = s * 0x1p-24 * testing::max_abs(want);
      EXPECT_TRUE(testing::all_close(got_delta, want_delta, 1e-4, atol)) << "update p - p0";
    }
  }
}

// --- the whole model ----------------------------------------------------------------

// The tutorial's loss at latent 2, batch 3, against a PyTorch module with TF
// semantics and the same parameter names: intermediate values, both loss
// forms, and the gradient of the Monte Carlo loss for every parameter.
TEST(Golden, CvaeLoss) {
  Fixture fx;
  ASSERT_TRUE(load_fixture("cvae", &fx));
  const int latent = std::stoi(fx.meta("latent_dim"));
  CVAE model(latent, /*init_seed=*/7);
  auto names = nlohmann::json::parse(fx.meta("params")).get<std::vector<std::string>>();
  NamedTensors params = model.named_parameters();
  ASSERT_EQ(params.size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(params[i].first, names[i]);
  model.load(fx.tensors());
  for (const auto& [n, p] : params) {
    ASSERT_EQ(p.dtype(), DType::F32) << n;
    ASSERT_EQ(p.to_double_vector(), fx.values(n)) << n << " did not load";
  }
  Tensor x = fx.f32("x"), eps = fx.f32("eps");

  {
    NoGradGuard no_grad;
    auto [mean, logvar] = model.encode(x);
    EXPECT_TRUE(matches(mean, fx, "mean"));
    EXPECT_TRUE(matches(logvar, fx, "logvar"));
    EXPECT_TRUE(matches(model.decode(reparameterize(mean, logvar, eps)), fx, "logits"));
  }

  model.zero_grad();
  Tensor loss = cvae_loss(model, x, eps, KlMode::MonteCarlo);
  EXPECT_TRUE(matches(loss, fx, "loss_mc"));
  loss.backward();
  for (const auto& [n, p] : model.named_parameters()) {
    SCOPED_TRACE(n);
    EXPECT_TRUE(matches(p.grad(), fx, "grad." + n));
  }

  model.zero_grad();
  {
    NoGradGuard no_grad;
    EXPECT_TRUE(matches(cvae_loss(model, x, eps, KlMode::Analytic), fx, "loss_analytic"));
  }
}

}  // namespace
}  // namespace cvae
