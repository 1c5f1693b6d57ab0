// bench_train_step.cpp: one whole CVAE training step on the CPU (forward,
// backward, Adam) at the DESIGN.md shapes: batch 100, latent 50, and the
// tutorial's batch 32, latent 2. Reports ms per step and images/s; the
// PyTorch twin is benchmarks/reference/train_pytorch.py --bench-step.
#include <benchmark/benchmark.h>

#include "engine/optim.h"
#include "models/cvae.h"

namespace {

void BM_CvaeTrainStep(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), latent = static_cast<int>(state.range(1));
  cvae::CVAE model(latent, 1);
  cvae::Adam adam(model.named_parameters(), cvae::AdamOptions{1e-4});
  cvae::Philox data{2, 0}, noise{3, 0};
  // Binary images with the density of MNIST's (about 13% ones).
  cvae::Tensor u = cvae::rand_uniform({batch, 1, 28, 28}, 0.0, 1.0, data);
  float* p = u.data<float>();
  for (int64_t i = 0; i < u.numel(); ++i) p[i] = p[i] < 0.13f ? 1.0f : 0.0f;
  for (auto _ : state) {
    cvae::Tensor loss = cvae::cvae_loss(model, u, noise, cvae::KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
    adam.step();
    benchmark::DoNotOptimize(loss.raw());
  }
  state.counters["images/s"] = benchmark::Counter(double(batch), benchmark::Counter::kIsIterationInvariantRate);
}

BENCHMARK(BM_CvaeTrainStep)->Args({100, 50})->Args({32, 2})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
