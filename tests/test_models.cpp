// test_models.cpp: the model zoo behind make_model (cvae, vae-mlp, ae-conv,
// ae-mlp): factory and option names, shapes, parameter names, losses, the VAE
// evaluation bounds, float64 gradient checks, and short training runs.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/autoencoders.h"
#include "models/cvae.h"
#include "models/model.h"
#include "models/vae.h"
#include "support/gradcheck.h"

namespace cvae {
namespace {

const char* const kKinds[] = {"cvae", "vae-mlp", "ae-conv", "ae-mlp"};

std::unique_ptr<Model> make(const std::string& kind, int latent, uint64_t seed = 1,
                            ReconLoss recon = ReconLoss::BCE) {
  ModelConfig c;
  c.kind = kind;
  c.latent_dim = latent;
  c.recon = recon;
  return make_model(c, seed);
}

// n binary 28x28 images, each a horizontal and a vertical bar at positions
// that depend on the image: structure every model can learn quickly.
Tensor bars(int n, DType dtype = DType::F32) {
  std::vector<double> v(static_cast<size_t>(n) * 784, 0.0);
  for (int i = 0; i < n; ++i) {
    int r = 3 + (7 * i) % 22, c = 5 + (11 * i) % 19;
    for (int y = 0; y < 28; ++y)
      for (int x = 0; x < 28; ++x)
        if ((y >= r && y < r + 3) || (x >= c && x < c + 2)) v[static_cast<size_t>(i * 784 + y * 28 + x)] = 1.0;
  }
  return Tensor::from_vector(v, {n, 1, 28, 28}, dtype);
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_double_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

// --- factory and names ----------------------------------------------------------

TEST(Models, OptionNamesRoundTrip) {
  for (KlMode k : {KlMode::MonteCarlo, KlMode::Analytic}) EXPECT_EQ(parse_kl(kl_name(k)), k);
  for (ReconLoss r : {ReconLoss::BCE, ReconLoss::L1, ReconLoss::L2})
    EXPECT_EQ(parse_recon(recon_name(r)), r);
  EXPECT_STREQ(kl_name(KlMode::MonteCarlo), "mc");
  EXPECT_STREQ(kl_name(KlMode::Analytic), "analytic");
  EXPECT_STREQ(recon_name(ReconLoss::L1), "l1");
  EXPECT_THROW(parse_kl("MC"), std::invalid_argument);
  EXPECT_THROW(parse_kl(""), std::invalid_argument);
  EXPECT_THROW(parse_recon("mse"), std::invalid_argument);
}

TEST(Models, FactoryRejectsUnknownKindsAndLatentZero) {
  try {
    make("vae-conv", 2);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("vae-conv"), std::string::npos) << msg;
    for (const char* k : kKinds) EXPECT_NE(msg.find(k), std::string::npos) << msg;
  }
  EXPECT_THROW(make("", 2), std::invalid_argument);
  for (const char* k : kKinds) {
    EXPECT_THROW(make(k, 0), std::invalid_argument) << k;
    EXPECT_THROW(make(k, -3), std::invalid_argument) << k;
  }
}

TEST(Models, KindsFlagsAndLatentSizes) {
  for (const char* k : kKinds) {
    auto m = make(k, 5);
    EXPECT_EQ(m->kind(), k);
    EXPECT_EQ(m->is_vae(), std::string(k) == "cvae" || std::string(k) == "vae-mlp");
    EXPECT_EQ(m->latent_dim(), std::string(k) == "ae-conv" ? 392 : 5) << k;
    EXPECT_EQ(m->is_vae(), dynamic_cast<VAE*>(m.get()) != nullptr);
  }
  EXPECT_NE(dynamic_cast<CVAE*>(make("cvae", 2).get()), nullptr);
}

TEST(Models, InitDependsOnlyOnTheSeed) {
  for (const char* k : kKinds) {
    auto a = make(k, 3, 42), b = make(k, 3, 42), c = make(k, 3, 43);
    NamedTensors pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
    ASSERT_EQ(pa.size(), pb.size());
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_EQ(pa[i].second.to_double_vector(), pb[i].second.to_double_vector()) << k;
    EXPECT_NE(pa[0].second.to_double_vector(), pc[0].second.to_double_vector()) << k;
  }
}

using NamedShapes = std::vector<std::pair<std::string, Shape>>;

NamedShapes expected_parameters(const std::string& kind, int64_t L) {
  if (kind == "cvae")
    return {{"encoder.conv1.weight", {32, 1, 3, 3}},  {"encoder.conv1.bias", {32}},
            {"encoder.conv2.weight", {64, 32, 3, 3}}, {"encoder.conv2.bias", {64}},
            {"encoder.fc.weight", {2 * L, 2304}},     {"encoder.fc.bias", {2 * L}},
            {"decoder.fc.weight", {1568, L}},         {"decoder.fc.bias", {1568}},
            {"decoder.deconv1.weight", {32, 64, 3, 3}}, {"decoder.deconv1.bias", {64}},
            {"decoder.deconv2.weight", {64, 32, 3, 3}}, {"decoder.deconv2.bias", {32}},
            {"decoder.deconv3.weight", {32, 1, 3, 3}},  {"decoder.deconv3.bias", {1}}};
  if (kind == "vae-mlp")
    return {{"encoder.fc1.weight", {512, 784}}, {"encoder.fc1.bias", {512}},
            {"encoder.fc2.weight", {2 * L, 512}}, {"encoder.fc2.bias", {2 * L}},
            {"decoder.fc1.weight", {512, L}},   {"decoder.fc1.bias", {512}},
            {"decoder.fc2.weight", {784, 512}}, {"decoder.fc2.bias", {784}}};
  if (kind == "ae-conv")  // ConvTranspose2d weights are [in, out, k, k]
    return {{"encoder.conv1.weight", {16, 1, 3, 3}},  {"encoder.conv1.bias", {16}},
            {"encoder.conv2.weight", {8, 16, 3, 3}},  {"encoder.conv2.bias", {8}},
            {"decoder.deconv1.weight", {8, 8, 3, 3}}, {"decoder.deconv1.bias", {8}},
            {"decoder.deconv2.weight", {8, 16, 3, 3}}, {"decoder.deconv2.bias", {16}},
            {"decoder.conv.weight", {1, 16, 3, 3}},   {"decoder.conv.bias", {1}}};
  return {{"encoder.fc.weight", {L, 784}}, {"encoder.fc.bias", {L}},
          {"decoder.fc.weight", {784, L}}, {"decoder.fc.bias", {784}}};
}

TEST(Models, ParameterNamesShapesAndOrder) {
  for (const char* k : kKinds) {
    for (int L : {2, 5}) {
      SCOPED_TRACE(std::string(k) + " latent " + std::to_string(L));
      NamedTensors got = make(k, L)->named_parameters();
      NamedShapes want = expected_parameters(k, L);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(got[i].first, want[i].first);
        EXPECT_EQ(got[i].second.shape(), want[i].second) << want[i].first;
        // Keras init: zero biases, Glorot-uniform kernels (so not all zero)
        double abs_sum = 0;
        for (double v : got[i].second.to_double_vector()) abs_sum += std::fabs(v);
        if (got[i].second.dim() == 1) EXPECT_EQ(abs_sum, 0.0) << want[i].first;
        else EXPECT_GT(abs_sum, 0.0) << want[i].first;
      }
    }
  }
}

// --- shapes and losses ------------------------------------------------------------

TEST(Models, ShapesAndFiniteLosses) {
  for (const char* k : kKinds) {
    for (int L : {2, 5}) {
      auto m = make(k, L, 9);
      int64_t code = m->latent_dim();
      for (int N : {1, 3}) {
        SCOPED_TRACE(std::string(k) + " latent " + std::to_string(L) + " batch " + std::to_string(N));
        Tensor x = bars(N);
        auto [a, b] = m->encode(x);
        EXPECT_EQ(a.shape(), (Shape{N, code}));
        EXPECT_EQ(b.defined(), m->is_vae());
        EXPECT_TRUE(all_finite(a));
        if (b.defined()) {
          EXPECT_EQ(b.shape(), (Shape{N, code}));
          EXPECT_TRUE(all_finite(b));
        }
        Philox zr{3, 0};
        Tensor img = m->decode_images(randn({N, code}, zr));
        EXPECT_EQ(img.shape(), (Shape{N, 1, 28, 28}));
        for (double v : img.to_double_vector()) {
          ASSERT_GE(v, 0.0);
          ASSERT_LE(v, 1.0);
        }
        Tensor r = m->reconstruct(x);
        EXPECT_EQ(r.shape(), (Shape{N, 1, 28, 28}));
        EXPECT_EQ(m->forward(x).to_double_vector(), r.to_double_vector());
        if (auto* v = dynamic_cast<VAE*>(m.get())) {
          EXPECT_EQ(v->decode_logits(a).shape(), (Shape{N, 1, 28, 28}));
        }
        for (KlMode kl : {KlMode::MonteCarlo, KlMode::Analytic}) {
          Philox rng{5, 0};
          Tensor loss = m->loss(x, rng, kl);
          EXPECT_EQ(loss.dim(), 0);
          EXPECT_TRUE(std::isfinite(loss.item()));
          EXPECT_GT(loss.item(), 0.0);
        }
      }
    }
  }
}

TEST(Models, AutoencoderLossesIgnoreRngAndKlAndFollowTheirDefinition) {
  for (const char* k : {"ae-mlp", "ae-conv"}) {
    for (ReconLoss rl : {ReconLoss::BCE, ReconLoss::L1, ReconLoss::L2}) {
      SCOPED_TRACE(std::string(k) + " " + recon_name(rl));
      auto m = make(k, 4, 2, rl);
      Tensor x = bars(3);
      Philox rng{1, 7};
      double l1 = m->loss(x, rng, KlMode::MonteCarlo).item();
      EXPECT_EQ(rng.offset, 7u);  // no noise drawn
      double l2 = m->loss(x, rng, KlMode::Analytic).item();
      EXPECT_EQ(l1, l2);
      // by hand, from the images y = sigmoid(logits): a mean over every element
      std::vector<double> y = m->reconstruct(x).to_double_vector(), t = x.to_double_vector();
      double want = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        double d = y[i] - t[i];
        want += rl == ReconLoss::L1   ? std::fabs(d)
                : rl == ReconLoss::L2 ? d * d
                                      : -(t[i] * std::log(y[i]) + (1 - t[i]) * std::log(1 - y[i]));
      }
      want /= static_cast<double>(y.size());
      EXPECT_NEAR(l1, want, 1e-5 * want);
    }
  }
}

// VAE::loss draws eps [N,L] from the rng and is the tutorial's loss; the CVAE
// wrappers give the same numbers.
TEST(Models, VaeLossUsesTheRngsNoiseAndCvaeWrappersAgree) {
  for (const char* k : {"cvae", "vae-mlp"}) {
    auto m = make(k, 3, 4);
    auto& v = dynamic_cast<VAE&>(*m);
    Tensor x = bars(2);
    for (KlMode kl : {KlMode::MonteCarlo, KlMode::Analytic}) {
      Philox a{8, 2}, b{8, 2};
      Tensor eps = randn({2, 3}, b);
      EXPECT_EQ(v.loss(x, a, kl).item(), vae_loss(v, x, eps, kl).item()) << k;
      EXPECT_EQ(a.offset, b.offset);
    }
  }
  CVAE c(3, 4);
  Tensor x = bars(2);
  Philox a{8, 2}, b{8, 2};
  EXPECT_EQ(cvae_loss(c, x, a, KlMode::MonteCarlo).item(), c.loss(x, b, KlMode::MonteCarlo).item());
  Tensor eps = randn({2, 3}, a);
  EXPECT_EQ(cvae_loss(c, x, eps, KlMode::Analytic).item(), vae_loss(c, x, eps, KlMode::Analytic).item());
}

// The training step's backward (vae_loss_backward): a batch of 2 * kVaeChunkRows or more
// goes as two chunks; the loss and every gradient are the whole batch's (float64: to
// 1e-12), and the float32 bits are the same on 1, 2 and 4 threads.
struct LossAndGrads {
  double loss = 0;
  std::vector<std::vector<double>> grads;
};
LossAndGrads step_grads(const char* kind, DType dtype, int n, bool chunked, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  auto m = make(kind, 3, 4);
  m->to(dtype);
  auto& v = dynamic_cast<VAE&>(*m);
  Tensor x = bars(n, dtype);
  Philox rng{8, 2};
  Tensor eps = randn({n, 3}, rng, dtype);
  LossAndGrads out;
  if (chunked) {
    out.loss = vae_loss_backward(v, x, eps, KlMode::MonteCarlo).item();
  } else {
    Tensor l = vae_loss(v, x, eps, KlMode::MonteCarlo);
    l.backward();
    out.loss = l.item();
  }
  for (auto& [name, p] : m->named_parameters()) out.grads.push_back(p.grad().to_double_vector());
  omp_set_num_threads(saved);
  return out;
}

TEST(Models, ChunkedStepIsTheWholeBatchsLossAndGradients) {
  const int n = 2 * kVaeChunkRows + 3;  // two chunks of unequal size
  for (const char* k : {"cvae", "vae-mlp"}) {
    SCOPED_TRACE(k);
    const LossAndGrads whole = step_grads(k, DType::F64, n, false, 2);
    const LossAndGrads chunked = step_grads(k, DType::F64, n, true, 2);
    EXPECT_NEAR(chunked.loss, whole.loss, 1e-12 * std::fabs(whole.loss));
    ASSERT_EQ(chunked.grads.size(), whole.grads.size());
    for (size_t i = 0; i < whole.grads.size(); ++i) {
      double scale = 0, worst = 0;
      for (size_t j = 0; j < whole.grads[i].size(); ++j) {
        scale = std::max(scale, std::fabs(whole.grads[i][j]));
        worst = std::max(worst, std::fabs(chunked.grads[i][j] - whole.grads[i][j]));
      }
      EXPECT_GT(scale, 0.0) << "parameter " << i;
      EXPECT_LE(worst, 1e-12 * scale) << "parameter " << i;
    }
    const LossAndGrads one = step_grads(k, DType::F32, n, true, 1);
    for (int threads : {2, 4}) {  // side by side; in turn over all threads
      const LossAndGrads more = step_grads(k, DType::F32, n, true, threads);
      EXPECT_EQ(one.loss, more.loss) << threads << " threads";
      for (size_t i = 0; i < one.grads.size(); ++i)
        EXPECT_EQ(one.grads[i], more.grads[i]) << "parameter " << i << ", " << threads << " threads";
    }
  }
}

TEST(Models, LossBackwardDrawsTheLossesNoise) {
  for (const char* k : {"cvae", "vae-mlp", "ae-conv"}) {
    auto a = make(k, 3, 4), b = make(k, 3, 4);
    Tensor x = bars(2 * kVaeChunkRows);
    Philox ra{8, 2}, rb{8, 2};
    const double got = a->loss_backward(x, ra, KlMode::MonteCarlo).item();
    const double want = b->loss(x, rb, KlMode::MonteCarlo).item();
    EXPECT_NEAR(got, want, 1e-5 * std::fabs(want)) << k;
    EXPECT_EQ(ra.offset, rb.offset) << k;
    EXPECT_TRUE(a->named_parameters()[0].second.grad().defined()) << k;
  }
}

// --- evaluation bounds ------------------------------------------------------------

// With one sample per image both bounds are exactly minus the batch's loss
// times N, from the same noise (both estimates use the same z).
TEST(Models, BoundsMatchTheLossWithTheSameNoise) {
  for (const char* k : {"cvae", "vae-mlp"}) {
    auto m = make(k, 2, 6);
    auto& v = dynamic_cast<VAE&>(*m);
    Tensor x = bars(5);
    Philox r1{11, 0}, r2{11, 0}, r3{11, 0};
    BoundSums s = vae_bounds(v, x, r1, /*k_mc=*/1, /*k_iwae=*/0);
    double mc = v.loss(x, r2, KlMode::MonteCarlo).item();
    double an = v.loss(x, r3, KlMode::Analytic).item();
    // float32 per-image terms, reduced in different orders: 1e-5 relative
    EXPECT_NEAR(s.elbo_mc, -5 * mc, 1e-5 * std::fabs(5 * mc)) << k;
    EXPECT_NEAR(s.elbo_analytic, -5 * an, 1e-5 * std::fabs(5 * an)) << k;
    EXPECT_EQ(s.iwae, 0.0);
  }
}

TEST(Models, IwaeIsAboveTheElboAndTheElboFormsAgree) {
  for (const char* k : {"cvae", "vae-mlp"}) {
    SCOPED_TRACE(k);
    auto m = make(k, 2, 12);
    auto& v = dynamic_cast<VAE&>(*m);
    // a few Adam steps so that q(z|x) is not the prior and the bounds differ
    Tensor x = bars(8);
    Adam adam(m->named_parameters(), AdamOptions{1e-3});
    Philox train{21, 0};
    for (int i = 0; i < 10; ++i) {
      m->loss(x, train, KlMode::MonteCarlo).backward();
      adam.step();
      adam.zero_grad();
    }
    Tensor xe = bars(4);
    Philox rng{13, 0};
    int64_t nodes = live_nodes();
    // k_iwae 300 x 4 images = 1200 pairs: two decode chunks, one split mid-image
    BoundSums s = vae_bounds(v, xe, rng, /*k_mc=*/200, /*k_iwae=*/300);
    EXPECT_EQ(live_nodes(), nodes);  // no tape recorded
    EXPECT_TRUE(std::isfinite(s.elbo_mc) && std::isfinite(s.elbo_analytic) && std::isfinite(s.iwae));
    EXPECT_LT(s.elbo_mc, 0.0);
    EXPECT_GE(s.iwae, s.elbo_mc);
    // Both ELBO forms average the same 200 samples per image: they estimate
    // the same bound, and the analytic one has less noise.
    EXPECT_NEAR(s.elbo_mc / 4, s.elbo_analytic / 4, 3.0);
    // the log-mean-exp bound tightens with k (on average; a 50-sample bound here)
    Philox rng2{14, 0};
    BoundSums s50 = vae_bounds(v, xe, rng2, 0, 50);
    EXPECT_EQ(s50.elbo_mc, 0.0);
    EXPECT_GE(s50.iwae, s.elbo_mc);
    std::printf("  %-8s per image: elbo_mc(200) %.2f, analytic(200) %.2f, iwae(300) %.2f, iwae(50) %.2f\n",
                k, s.elbo_mc / 4, s.elbo_analytic / 4, s.iwae / 4, s50.iwae / 4);
    EXPECT_TRUE(grad_enabled());  // the guard is released
    // reproducible from the rng
    Philox a{15, 0}, b{15, 0};
    BoundSums p = vae_bounds(v, xe, a, 3, 7), q = vae_bounds(v, xe, b, 3, 7);
    EXPECT_EQ(p.elbo_mc, q.elbo_mc);
    EXPECT_EQ(p.iwae, q.iwae);
    EXPECT_EQ(a.offset, b.offset);
  }
}

TEST(Models, BoundsRejectNegativeSampleCounts) {
  CVAE m(2, 1);
  Philox rng{1, 0};
  EXPECT_THROW(vae_bounds(m, bars(1), rng, -1, 0), std::invalid_argument);
  EXPECT_THROW(vae_bounds(m, bars(1), rng, 1, -1), std::invalid_argument);
}

// --- gradients ---------------------------------------------------------------------

// float64 central differences on 10 sampled elements of every parameter. The
// noise comes from a Philox constructed inside the function, so every
// evaluation sees the same eps. Biases start at zero (Keras init): move them
// off so relu kinks are not at ties.
void check_gradients(Model& m, KlMode kl, double loss_scale) {
  m.to(DType::F64);
  Tensor x = bars(2, DType::F64);
  std::vector<Tensor> inputs = m.parameters();
  uint32_t seed = 700;
  for (Tensor& p : inputs)
    if (p.dim() == 1)
      p.copy_from(testing::random_leaf(p.shape(), seed++, -0.1, 0.1, /*requires_grad=*/false));
  testing::GradcheckOptions opt;
  opt.max_elems = 10;
  opt.rtol = 1e-4;  // deep float64 composites: central differences carry ~1e-6 relative noise
  opt.atol = 1e-6;
  EXPECT_TRUE(testing::gradcheck(
      [&](const std::vector<Tensor>&) {
        Philox rng{31, 5};
        // the autoencoders' losses are means over 2*784 elements: scale them
        // to sum size so that atol means the same as for the VAEs
        return scale(m.loss(x, rng, kl), loss_scale);
      },
      inputs, opt));
}

TEST(Models, GradcheckVaeMlp) {
  for (KlMode kl : {KlMode::MonteCarlo, KlMode::Analytic}) {
    SCOPED_TRACE(kl_name(kl));
    auto m = make("vae-mlp", 3, 17);
    check_gradients(*m, kl, 1.0);
  }
}

TEST(Models, GradcheckAutoencoders) {
  for (const char* k : {"ae-mlp", "ae-conv"}) {
    for (ReconLoss rl : {ReconLoss::BCE, ReconLoss::L1, ReconLoss::L2}) {
      SCOPED_TRACE(std::string(k) + " " + recon_name(rl));
      auto m = make(k, 3, 18, rl);
      check_gradients(*m, KlMode::MonteCarlo, 2 * 784);
    }
  }
}

// --- training -----------------------------------------------------------------------

double loss_at_fixed_noise(Model& m, const Tensor& x) {
  NoGradGuard g;
  Philox rng{77, 0};
  return m.loss(x, rng, KlMode::Analytic).item();
}

TEST(Models, ShortTrainingLowersTheLoss) {
  struct Case {
    const char* kind;
    ReconLoss recon;
  };
  for (Case c : {Case{"cvae", ReconLoss::BCE}, Case{"vae-mlp", ReconLoss::BCE},
                 Case{"ae-conv", ReconLoss::BCE}, Case{"ae-mlp", ReconLoss::BCE},
                 Case{"ae-mlp", ReconLoss::L1}, Case{"ae-mlp", ReconLoss::L2},
                 Case{"ae-conv", ReconLoss::L2}}) {
    SCOPED_TRACE(std::string(c.kind) + " " + recon_name(c.recon));
    auto m = make(c.kind, 4, 3, c.recon);
    Tensor x = bars(8);
    Adam adam(m->named_parameters(), AdamOptions{1e-3});
    Philox rng{5, 0};
    double before = loss_at_fixed_noise(*m, x);
    for (int step = 0; step < 30; ++step) {
      Tensor loss = m->loss(x, rng, KlMode::MonteCarlo);
      ASSERT_TRUE(std::isfinite(loss.item()));
      loss.backward();
      adam.step();
      adam.zero_grad();
    }
    double after = loss_at_fixed_noise(*m, x);
    std::printf("  %-8s %-3s loss %.4f -> %.4f\n", c.kind, recon_name(c.recon), before, after);
    // the VAEs' summed losses fall fast; the autoencoders' per-pixel means less so in 30 steps
    EXPECT_LT(after, (m->is_vae() ? 0.8 : 0.9) * before);
  }
}

}  // namespace
}  // namespace cvae
