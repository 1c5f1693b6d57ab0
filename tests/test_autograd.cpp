// test_autograd.cpp: the tape itself: accumulation, no-grad scope, freeing,
// reuse of a tensor, error cases, and stable parameter names.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "models/cvae.h"
#include "support/cvae_spec.h"
#include "test_util.h"

namespace cvae {
namespace {

Tensor leaf(std::vector<double> v) {
  Shape s{static_cast<int64_t>(v.size())};
  return Tensor::from_vector(v, s).set_requires_grad(true);
}

TEST(Autograd, GradientsAccumulateAcrossBackwardCalls) {
  Tensor x = leaf({1.0, 2.0, -3.0});
  sum(mul(x, x)).backward();  // d/dx sum x^2 = 2x
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{2, 4, -6}));
  sum(scale(x, 3.0)).backward();  // += 3
  EXPECT_EQ(x.grad().to_double_vector(), (std::vector<double>{5, 7, -3}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, ReusedTensorGetsBothContributions) {
  Tensor x = leaf({0.5, -1.5});
  Tensor y = exp(x);
  sum(add(mul(y, x), y)).backward();  // d/dx (x e^x + e^x) = e^x (x + 2)
  std::vector<double> g = x.grad().to_double_vector();
  EXPECT_NEAR(g[0], std::exp(0.5) * 2.5, 1e-12);
  EXPECT_NEAR(g[1], std::exp(-1.5) * 0.5, 1e-12);
}

TEST(Autograd, SharedGradientBufferIsNotModifiedInPlace) {
  // add's backward hands the same gradient tensor to both inputs; the second
  // accumulation must not write into the first input's gradient.
  Tensor a = leaf({1.0}), b = leaf({2.0});
  Tensor s = add(a, b);
  sum(add(s, mul(b, b))).backward();
  EXPECT_EQ(a.grad().item(), 1.0);
  EXPECT_EQ(b.grad().item(), 5.0);
}

TEST(Autograd, NoGradScopeRecordsNothing) {
  Tensor x = leaf({1.0, 2.0});
  {
    NoGradGuard guard;
    EXPECT_FALSE(grad_enabled());
    Tensor y = mul(x, x);
    EXPECT_TRUE(y.is_leaf());
    EXPECT_FALSE(tracks_grad(y));
  }
  EXPECT_TRUE(grad_enabled());
  EXPECT_FALSE(mul(x, x).is_leaf());
}

TEST(Autograd, TapeIsFreedAfterBackward) {
  int64_t before = live_nodes();
  int64_t bytes_before = cpu_bytes_in_use();
  {
    CVAE model(2, 3);
    Tensor x = Tensor::full({2, 1, 28, 28}, 1.0);
    Philox rng{5, 0};
    Tensor loss = cvae_loss(model, x, rng, KlMode::MonteCarlo);
    EXPECT_GT(live_nodes(), before + 10);
    loss.backward();
    EXPECT_EQ(live_nodes(), before);
    EXPECT_TRUE(loss.is_leaf());
  }
  EXPECT_EQ(cpu_bytes_in_use(), bytes_before);  // model, tape and gradients all released
}

TEST(Autograd, BackwardNeedsAScalarThatRequiresGrad) {
  Tensor x = leaf({1.0, 2.0});
  EXPECT_THROW(mul(x, x).backward(), std::logic_error);
  Tensor c = Tensor::full({1}, 2.0, DType::F64);
  EXPECT_THROW(c.backward(), std::logic_error);
}

TEST(Autograd, MismatchedShapesAreRejected) {
  Tensor a = leaf({1.0, 2.0}), b = leaf({1.0, 2.0, 3.0});
  EXPECT_THROW(add(a, b), std::invalid_argument);
  EXPECT_THROW(reshape(a, {3}), std::invalid_argument);
  EXPECT_THROW(split(reshape(a, {1, 2}), {1, 2}), std::invalid_argument);
}

TEST(Autograd, ReshapeSharesStorage) {
  Tensor x = leaf({1, 2, 3, 4, 5, 6});
  Tensor y = reshape(x, {2, -1});
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(y.raw(), x.raw());
}

// deconv3's input-gradient kernel takes deconv2's ReLU backward over (GradHandOver) when
// deconv2's output has no other consumer; with a second consumer (one whose gradient is
// zero) the two layers go the plain way. Every gradient is the same bits both ways.
std::vector<std::vector<float>> decoder_grads(DType dtype, bool second_use, int64_t* taken) {
  auto param = [&](Shape shape, uint32_t seed) {
    std::vector<float> v = testing::random_vector<float>(size_t(shape_numel(shape)), seed);
    return Tensor::from_vector(v, shape, dtype).set_requires_grad(true);
  };
  Tensor x = param({3, 16, 7, 9}, 1), w2 = param({16, 6, 3, 3}, 2), b2 = param({6}, 3);
  Tensor w3 = param({6, 1, 3, 3}, 4), b3 = param({1}, 5);
  Tensor r = Tensor::from_vector(testing::random_vector<float>(3 * 14 * 18, 6), {3, 1, 14, 18}, dtype);
  Tensor y2 = conv_transpose2d(x, w2, b2, 2, Padding::Same, true);
  Tensor loss = sum(mul(conv_transpose2d(y2, w3, b3, 1, Padding::Same, false), r));
  if (second_use) loss = add(loss, sum(mul(y2, Tensor::zeros(y2.shape(), dtype))));
  const int64_t before = hand_overs_taken();
  loss.backward();
  *taken = hand_overs_taken() - before;
  std::vector<std::vector<float>> g;
  for (const Tensor* t : {&x, &w2, &b2, &w3, &b3}) g.push_back(t->grad().to_float_vector());
  return g;
}

TEST(Autograd, ReluHandOverGivesThePlainBackwardsBits) {
  for (DType dtype : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype_name(dtype));
    int64_t fused = -1, plain = -1;
    const auto a = decoder_grads(dtype, false, &fused), b = decoder_grads(dtype, true, &plain);
    EXPECT_EQ(fused, 1);
    EXPECT_EQ(plain, 0);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].size(), b[i].size());
      EXPECT_EQ(0, std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float))) << "gradient " << i;
    }
  }
}

// backward_in_chunks: a leaf's gradient is what it held, then chunk 0's, then chunk 1's,
// ... added in that order, whichever thread ran which chunk. Values of mixed magnitude so
// that another order of the float sums gives other bits.
std::vector<float> chunk_values(int c) {
  std::vector<float> v = testing::random_vector<float>(37, 10 + c);
  for (size_t i = 0; i < v.size(); ++i) v[i] *= c % 2 ? 1e7f : 1e-3f;
  return v;
}

std::vector<float> chunked_grad(int threads, int chunks, bool held_before) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const std::vector<float> w0 = testing::random_vector<float>(37, 1);
  Tensor w = Tensor::from_vector(w0, {37}).set_requires_grad(true);
  if (held_before) sum(mul(w, w)).backward();  // 2 w
  backward_in_chunks(chunks, [&](int c) {
    sum(mul(w, Tensor::from_vector(chunk_values(c), {37}))).backward();  // d/dw = the values
  });
  omp_set_num_threads(saved);
  return w.grad().to_float_vector();
}

TEST(Autograd, ChunkedBackwardAddsTheChunksInOrderOnAnyThreadCount) {
  for (bool held : {false, true}) {
    SCOPED_TRACE(held ? "a gradient held before" : "no gradient before");
    std::vector<float> want(37, 0.0f);
    if (held)
      for (size_t i = 0; i < want.size(); ++i) want[i] = 2 * testing::random_vector<float>(37, 1)[i];
    for (int c = 0; c < 3; ++c) {  // the products rounded first (no FMA), as the engine's
      const std::vector<float> v = chunk_values(c);
      for (size_t i = 0; i < v.size(); ++i) want[i] += v[i];
    }
    for (int threads : {1, 2, 3, 6}) {
      const std::vector<float> got = chunked_grad(threads, 3, held);
      EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float))) << threads << " threads";
    }
  }
}

TEST(Autograd, ChunkedBackwardRethrowsAChunksException) {
  Tensor w = leaf({1, 2, 3});
  EXPECT_THROW(backward_in_chunks(2, [&](int c) {
                 if (c == 1) throw std::runtime_error("chunk 1");
                 sum(w).backward();
               }),
               std::runtime_error);
  EXPECT_THROW(backward_in_chunks(0, [](int) {}), std::invalid_argument);
  EXPECT_EQ(live_nodes(), 0);
}

// Chunks inside a chunk: the inner ones' gradients join the outer chunk's, so the sum
// keeps the outer chunks' order: small + (big - big) is small; (small + big) - big is not.
TEST(Autograd, ChunksInsideAChunkAddInTheOuterChunksPlace) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  const std::vector<float> small = chunk_values(0), big = chunk_values(1);
  std::vector<float> minus_big = big;
  for (float& v : minus_big) v = -v;
  Tensor w = Tensor::from_vector(testing::random_vector<float>(37, 1), {37}).set_requires_grad(true);
  auto add = [&](const std::vector<float>& v) { sum(mul(w, Tensor::from_vector(v, {37}))).backward(); };
  backward_in_chunks(2, [&](int outer) {
    if (outer == 0) return add(small);
    backward_in_chunks(2, [&](int inner) { add(inner == 0 ? big : minus_big); });
  });
  omp_set_num_threads(saved);
  const std::vector<float> got = w.grad().to_float_vector();
  EXPECT_EQ(0, std::memcmp(got.data(), small.data(), small.size() * sizeof(float)));
}

TEST(Autograd, ChunksRunInTheCallersGradMode) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(2);
  Tensor w = leaf({1, 2, 3});
  std::vector<int> recorded(2, -1), on(2, -1);
  {
    NoGradGuard no_grad;
    backward_in_chunks(2, [&](int c) {
      recorded[size_t(c)] = tracks_grad(mul(w, w));
      on[size_t(c)] = grad_enabled();
    });
  }
  backward_in_chunks(2, [&](int c) { on[size_t(c)] += 2 * grad_enabled(); });
  omp_set_num_threads(saved);
  EXPECT_EQ(recorded, std::vector<int>({0, 0}));
  EXPECT_EQ(on, std::vector<int>({2, 2}));  // off inside the guard, on outside it
}

TEST(Nn, CvaeParameterNamesAndShapesAreStable) {
  CVAE model(2, 0);
  auto expected = testing::cvae_export_layout(2);
  NamedTensors params = model.named_parameters();
  ASSERT_EQ(params.size(), expected.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(params[i].first, expected[i].first);
    EXPECT_EQ(params[i].second.shape(), expected[i].second) << params[i].first;
  }
}

TEST(Nn, KerasDefaultInit) {
  CVAE model(50, 42);
  for (auto& [name, p] : model.named_parameters()) {
    std::vector<double> v = p.to_double_vector();
    if (p.dim() == 1) {
      for (double b : v) ASSERT_EQ(b, 0.0) << name;  // zero biases
      continue;
    }
    // Glorot uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
    int64_t rf = p.dim() == 4 ? p.size(2) * p.size(3) : 1;
    double a = std::sqrt(6.0 / double(rf * (p.size(0) + p.size(1))));
    double lo = 0, hi = 0, sq = 0;
    for (double w : v) {
      lo = std::min(lo, w);
      hi = std::max(hi, w);
      sq += w * w;
    }
    EXPECT_LE(hi, a) << name;
    EXPECT_GE(lo, -a) << name;
    EXPECT_GT(hi, 0.9 * a) << name;  // the range is used, not a narrower one
    double var = sq / double(v.size());
    EXPECT_NEAR(var, a * a / 3.0, 0.1 * a * a / 3.0) << name;  // variance of U(-a,a)
  }
  // Same seed, same weights; another seed, other weights.
  CVAE again(50, 42), other(50, 43);
  EXPECT_EQ(model.named_parameters()[0].second.to_double_vector(),
            again.named_parameters()[0].second.to_double_vector());
  EXPECT_NE(model.named_parameters()[0].second.to_double_vector(),
            other.named_parameters()[0].second.to_double_vector());
}

TEST(Nn, ModuleLoadChecksNamesAndShapes) {
  CVAE a(2, 1), b(2, 2);
  b.load(a.named_parameters());
  EXPECT_EQ(a.named_parameters()[4].second.to_double_vector(),
            b.named_parameters()[4].second.to_double_vector());
  CVAE c(3, 1);
  EXPECT_THROW(c.load(a.named_parameters()), std::invalid_argument);  // encoder.fc shape differs
}

TEST(Optim, SgdStep) {
  Tensor p = leaf({1.0, -2.0});
  SGD sgd({{"p", p}}, 0.1);
  sum(mul(p, p)).backward();  // grad = 2p
  sgd.step();
  EXPECT_EQ(p.to_double_vector(), (std::vector<double>{1.0 - 0.2, -2.0 + 0.4}));
  const void* buffer = p.grad().raw();
  sgd.zero_grad();  // zeroed in place: the buffer stays
  ASSERT_TRUE(p.grad().defined());
  EXPECT_EQ(p.grad().raw(), buffer);
  EXPECT_EQ(p.grad().to_double_vector(), (std::vector<double>{0.0, 0.0}));
  sum(scale(p, 3.0)).backward();  // the next gradient lands in it, exactly
  EXPECT_EQ(p.grad().raw(), buffer);
  EXPECT_EQ(p.grad().to_double_vector(), (std::vector<double>{3.0, 3.0}));
}

// Each parameter keeps one gradient buffer across training steps (what lets
// the GPU optimizer's pointer table, and a captured step, stay valid).
TEST(Optim, GradientBuffersKeepTheirAddressAcrossSteps) {
  CVAE model(2, 5);
  Adam adam(model.named_parameters(), AdamOptions{1e-3});
  Tensor x = Tensor::full({3, 1, 28, 28}, 1.0);
  Tensor eps = Tensor::zeros({3, 2});
  std::vector<const void*> first;
  for (int step = 0; step < 4; ++step) {
    adam.zero_grad();
    cvae_loss(model, x, eps, KlMode::MonteCarlo).backward();
    adam.step();
    std::vector<const void*> now;
    for (auto& [name, p] : model.named_parameters()) now.push_back(p.grad().raw());
    if (step == 1) first = now;  // from the second step on (the first takes backward's buffers)
    if (step > 1) {
      EXPECT_EQ(now, first) << "step " << step;
    }
  }
}

TEST(Optim, TrainingLowersTheCvaeLoss) {
  CVAE model(2, 5);
  Adam adam(model.named_parameters(), AdamOptions{1e-3});
  Tensor x = Tensor::zeros({4, 1, 28, 28});
  float* px = x.data<float>();
  for (int i = 0; i < 4 * 784; ++i) px[i] = (i / 28) % 3 == 0 ? 1.0f : 0.0f;  // stripes
  Tensor eps = Tensor::zeros({4, 2});
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    Tensor loss = cvae_loss(model, x, eps, KlMode::Analytic);
    adam.zero_grad();
    loss.backward();
    adam.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_EQ(adam.steps(), 40);
  EXPECT_LT(last, first - 50.0);  // a clear drop, not noise
}

}  // namespace
}  // namespace cvae
