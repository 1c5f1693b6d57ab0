// bench_train_step_cuda.cpp: one CVAE training step on the GPU (forward,
// backward, Adam), eager and replayed from a CUDA graph, at batch 100 latent 50
// and the tutorial's batch 32 latent 2, on a fixed batch and fixed noise.
// Timed with the stream drained before and after 200 steps (steady_clock);
// the epoch estimate is 600 steps at batch 100. Exits 0 with a note when no GPU.
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>

#include "engine/device.h"
#include "engine/graph.h"
#include "engine/optim.h"
#include "models/cvae.h"

namespace {

using namespace cvae;

double time_steps(const std::function<void()>& step, int n) {
  cuda_synchronize();  // start from an idle stream
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) step();
  cuda_synchronize();  // the steps are asynchronous: wait for the last one
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / n;
}

void bench(int batch, int latent) {
  CVAE model(latent, 1);
  model.to_device(Device::CUDA);
  Adam adam(model.named_parameters(), AdamOptions{1e-4});
  Philox data{2, 0}, noise{3, 0};
  Tensor u = rand_uniform({batch, 1, 28, 28}, 0.0, 1.0, data);
  float* p = u.data<float>();
  for (int64_t i = 0; i < u.numel(); ++i) p[i] = p[i] < 0.13f ? 1.0f : 0.0f;  // MNIST's density
  Tensor x = u.to_device(Device::CUDA);
  Tensor eps = randn({batch, latent}, noise, DType::F32, Device::CUDA);
  auto step = [&] {
    Tensor loss = cvae_loss(model, x, eps, KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
    adam.step();
  };
  for (int i = 0; i < 20; ++i) step();  // warm-up: allocator cache, Adam's table
  const double eager = time_steps(step, 200);
  CudaGraph graph;
  graph.capture(step);
  for (int i = 0; i < 5; ++i) graph.replay();  // the first launches upload the graph
  const double replay = time_steps([&] { graph.replay(); }, 200);
  // Rows start with "batch": gpu_check.sh copies them into its summary.
  std::printf("batch %3d latent %2d | %8.3f %9.0f | %8.3f %9.0f | %7.3f %7.3f | %7.1f\n", batch, latent,
              eager * 1e3, batch / eager, replay * 1e3, batch / replay, eager * 600, replay * 600,
              double(cuda_memory_stats().peak_in_use) / (1 << 20));
  std::fflush(stdout);
}

}  // namespace

int main() {
  std::string why;
  if (!cvae::cuda_available(&why)) {
    std::printf("bench_train_step_cuda: no GPU (%s); nothing to time\n", why.c_str());
    return 0;
  }
  std::printf("CVAE training step on the GPU (forward, backward, Adam; fixed batch and noise), 200 steps each\n");
  std::printf("                    | eager              | graph replay       | epoch = 600 steps | peak in use\n");
  std::printf("                    | ms/step      img/s | ms/step      img/s | eager s  graph s  | MB (process)\n");
  try {
    bench(100, 50);
    bench(32, 2);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train_step_cuda: %s\n", e.what());
    return 1;
  }
  return 0;
}
