// cvae_main.cpp: the `cvae` program. Until the data pipeline lands it has one
// subcommand, `demo`: train the tutorial's CVAE for a few steps on synthetic
// binary images (random bars) and print the loss falling.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "engine/optim.h"
#include "models/cvae.h"

namespace {

const char* kUsage =
    "usage: cvae demo [--steps N] [--batch B] [--latent L] [--lr LR] [--seed S]\n"
    "  Trains the tutorial's CVAE on synthetic 28x28 binary images (bars) on the CPU\n"
    "  and prints the negative ELBO every few steps.\n"
    "  defaults: --steps 60 --batch 32 --latent 2 --lr 1e-3 --seed 1\n";

struct DemoArgs {
  int steps = 60, batch = 32, latent = 2;
  double lr = 1e-3;
  uint64_t seed = 1;
};

// Parses a positive number or exits 2 with a one-line message.
double parse_number(const char* flag, const char* text) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (!text[0] || *end || !(v > 0)) {
    std::fprintf(stderr, "cvae: %s needs a positive number, got '%s'\n%s", flag, text, kUsage);
    std::exit(2);
  }
  return v;
}

DemoArgs parse_demo(int argc, char** argv) {
  DemoArgs a;
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--help" || f == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "cvae: unknown or incomplete option '%s'\n%s", f.c_str(), kUsage);
      std::exit(2);
    }
    double v = parse_number(f.c_str(), argv[++i]);
    if (f == "--steps") a.steps = static_cast<int>(v);
    else if (f == "--batch") a.batch = static_cast<int>(v);
    else if (f == "--latent") a.latent = static_cast<int>(v);
    else if (f == "--lr") a.lr = v;
    else if (f == "--seed") a.seed = static_cast<uint64_t>(v);
    else {
      std::fprintf(stderr, "cvae: unknown option '%s'\n%s", f.c_str(), kUsage);
      std::exit(2);
    }
  }
  return a;
}

// A batch of binary images, each a few horizontal or vertical bars: data with
// structure a CVAE can learn, drawn from the Philox stream.
cvae::Tensor synthetic_batch(int n, cvae::Philox& rng) {
  cvae::Tensor u = cvae::rand_uniform({n, 3}, 0.0, 1.0, rng);
  cvae::Tensor x = cvae::Tensor::zeros({n, 1, 28, 28});
  float* px = x.data<float>();
  const float* pu = u.data<float>();
  for (int i = 0; i < n; ++i) {
    bool vertical = pu[3 * i] < 0.5f;
    int first = 2 + static_cast<int>(pu[3 * i + 1] * 20), width = 2 + static_cast<int>(pu[3 * i + 2] * 4);
    for (int r = 0; r < 28; ++r)
      for (int c = 0; c < 28; ++c) {
        int k = vertical ? c : r;
        px[i * 784 + r * 28 + c] = (k >= first && k < first + width) ? 1.0f : 0.0f;
      }
  }
  return x;
}

int run_demo(const DemoArgs& a) {
  cvae::CVAE model(a.latent, a.seed);
  cvae::Adam adam(model.named_parameters(), cvae::AdamOptions{a.lr});
  cvae::Philox data_rng{a.seed, 1ull << 40}, noise_rng{a.seed + 1, 0};
  std::printf("demo: CVAE latent %d, batch %d, Adam lr %g, %d steps on synthetic bars (CPU)\n",
              a.latent, a.batch, a.lr, a.steps);
  auto t0 = std::chrono::steady_clock::now();
  for (int step = 1; step <= a.steps; ++step) {
    cvae::Tensor x = synthetic_batch(a.batch, data_rng);
    cvae::Tensor loss = cvae::cvae_loss(model, x, noise_rng, cvae::KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
    adam.step();
    if (step == 1 || step % 10 == 0 || step == a.steps) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("step %4d  loss (-ELBO) %9.3f  %6.1f images/s\n", step, loss.item(),
                  step * a.batch / secs);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "demo") != 0) {
    std::fprintf(stderr, "cvae: unknown command '%s'\n%s", argv[1], kUsage);
    return 2;
  }
  try {
    return run_demo(parse_demo(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cvae: %s\n", e.what());
    return 1;
  }
}
