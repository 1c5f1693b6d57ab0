// bench_train_step.cpp: one whole CVAE training step on the CPU (forward, backward,
// Adam), timed as benchmarks/reference/bench_step_pytorch.py and bench_step_tf.py time
// theirs: 10 warm-up steps, then 5 repeats of --steps steps, the median repeat.
//
//   bench_train_step [--steps 30] [--shapes 100x50,32x2] [--threads N]
//
// Shapes are batch x latent (DESIGN.md: batch 100, latent 50; the tutorial: batch 32,
// latent 2); inputs are binary images of MNIST's density (about 13% ones). Prints, per
// shape, ms per step, images/s and the step's arithmetic rate (FLOPs counted from the
// layer shapes, 2 per multiply-add). CVAE_CPU_ISA picks the kernels' code path.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "benchmarks/cvae_shapes.h"
#include "engine/optim.h"
#include "kernels/kernels.h"
#include "models/cvae.h"

namespace {

// Multiply-adds of one image's forward pass: the five convolutions and the two dense layers.
double forward_macs(int latent) {
  double macs = 0;
  for (int i = 0; i < cvae::bench::kCvaeConvLayers; ++i) {
    const auto s = cvae::bench::cvae_conv_layer(i, 1);
    macs += double(s.K) * s.P * s.Q * s.C * s.R * s.S;
  }
  return macs + 2304.0 * 2 * latent + double(latent) * 7 * 7 * 32;
}

// Forward + backward: every layer's input gradient and weight gradient cost what its
// forward does, except conv1's input gradient (the images need none).
double step_flops(int batch, int latent) {
  const auto c1 = cvae::bench::cvae_conv_layer(0, 1);
  const double conv1 = double(c1.K) * c1.P * c1.Q * c1.C * c1.R * c1.S;
  return 2.0 * batch * (3 * forward_macs(latent) - conv1);
}

double time_steps(int batch, int latent, int steps) {
  cvae::CVAE model(latent, 1);
  cvae::Adam adam(model.named_parameters(), cvae::AdamOptions{1e-4});
  cvae::Philox data{2, 0}, noise{3, 0};
  cvae::Tensor x = cvae::rand_uniform({batch, 1, 28, 28}, 0.0, 1.0, data);
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = p[i] < 0.13f ? 1.0f : 0.0f;
  auto step = [&] {
    adam.zero_grad();
    model.loss_backward(x, noise, cvae::KlMode::MonteCarlo);  // as the cvae program's step
    adam.step();
  };
  for (int i = 0; i < 10; ++i) step();  // warm-up: the allocator's cache, page faults
  std::vector<double> runs;
  for (int r = 0; r < 5; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    runs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps);
  }
  std::sort(runs.begin(), runs.end());
  return runs[2];
}

int usage() {
  std::fprintf(stderr, "usage: bench_train_step [--steps N] [--shapes 100x50,32x2] [--threads N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  cvae::kernels::cpu::use_short_openmp_spin(argv);  // as the cvae program does
  int steps = 30;
  std::string shapes = "100x50,32x2";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--steps" || a == "--shapes" || a == "--threads") && i + 1 < argc) {
      const std::string v = argv[++i];
      if (a == "--steps") steps = std::max(1, std::atoi(v.c_str()));
      else if (a == "--shapes") shapes = v;
      else omp_set_num_threads(std::max(1, std::atoi(v.c_str())));
    } else {
      return usage();
    }
  }
  std::printf("cvae-engine, %d threads, kernel code path %s\n", omp_get_max_threads(),
              cvae::kernels::cpu::cpu_isa_name(cvae::kernels::cpu::cpu_isa()));
  for (size_t at = 0; at < shapes.size();) {
    const size_t comma = std::min(shapes.find(',', at), shapes.size());
    int batch = 0, latent = 0;
    if (std::sscanf(shapes.substr(at, comma - at).c_str(), "%dx%d", &batch, &latent) != 2 ||
        batch < 1 || latent < 1)
      return usage();
    const double s = time_steps(batch, latent, steps);
    std::printf("cvae_train_step cpu batch %3d latent %2d: %8.3f ms/step  %9.0f images/s  %6.1f GFLOP/s\n",
                batch, latent, s * 1e3, batch / s, step_flops(batch, latent) / s * 1e-9);
    std::fflush(stdout);
    at = comma + 1;
  }
  return 0;
}
