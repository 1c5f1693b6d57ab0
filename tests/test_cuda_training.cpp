// test_cuda_training.cpp: the GPU backend end to end: from the same seed the GPU's
// gradients equal the CPU's, its weights after 10 steps and its loss curve over 100
// steps stay with the CPU's, two GPU runs are bitwise equal, a CUDA-graph replay of a step equals
// eager execution bitwise, a step makes no host synchronisation, memory stays
// in budget, batches gathered on the device equal the CPU's. Each test skips
// with the reason when there is no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/cuda_test_util.h"
#include "test_util.h"

#if defined(CVAE_HAVE_CUDA)
#include "engine/autograd.h"
#include "engine/data.h"
#include "engine/device.h"
#include "engine/graph.h"
#include "engine/optim.h"
#include "models/cvae.h"
#endif
#if defined(CVAE_CUDA_EMULATED)
#include "kernels/cuda/emulator/emulator.h"
#endif

namespace cvae {
namespace {

#if defined(CVAE_HAVE_CUDA)

// Binary images of bars, different per batch index: real structure, made on the host.
Tensor bars(int n, int batch_index) {
  Philox rng{77, uint64_t(batch_index) << 20};
  Tensor u = rand_uniform({n, 2}, 0.0, 1.0, rng);
  Tensor x = Tensor::zeros({n, 1, 28, 28});
  float* px = x.data<float>();
  for (int i = 0; i < n; ++i) {
    bool vertical = u.data<float>()[2 * i] < 0.5f;
    int first = 2 + int(u.data<float>()[2 * i + 1] * 20);
    for (int r = 0; r < 28; ++r)
      for (int c = 0; c < 28; ++c) px[i * 784 + r * 28 + c] = ((vertical ? c : r) - first + 8) % 8 < 3 ? 1.f : 0.f;
  }
  return x;
}

// Steps of the long and the short runs. The emulated GPU takes about half a second a
// step, several times that under AddressSanitizer (testing::kSanitized), which checks
// memory: there the long run is left to the unsanitized build (its steps take the path
// that the short runs check under ASan already).
constexpr int kLongRunSteps = 100;
constexpr int kShortRunSteps = testing::kSanitized ? 3 : 10;
constexpr int kOneStepBatch = testing::kSanitized ? 4 : 16;

struct TrainRun {
  std::vector<double> losses;
  NamedTensors weights;  // on the host
};

// `steps` Adam steps of a CVAE from init seed 5 on `device`; the loss is read
// back every `read_every` steps only (reads are the only host syncs).
TrainRun train(Device device, int latent, int steps, int batch = 16, int read_every = 1) {
  CVAE model(latent, 5);
  model.to_device(device);
  Adam adam(model.named_parameters(), AdamOptions{1e-3});
  Philox noise{9, 0};
  TrainRun run;
  std::vector<Tensor> pending;
  for (int s = 0; s < steps; ++s) {
    Tensor x = bars(batch, s % 7).to_device(device);
    Tensor loss = cvae_loss(model, x, noise, KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
    adam.step();
    pending.push_back(loss.detach());
    if ((s + 1) % read_every == 0 || s + 1 == steps) {
      for (Tensor& l : pending) run.losses.push_back(l.item());
      pending.clear();
    }
  }
  for (auto& [name, p] : model.named_parameters()) run.weights.emplace_back(name, p.to_device(Device::CPU));
  return run;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

#endif

// One step from identical weights, batch and noise: the gradients agree tightly. They
// differ only by the order of float sums (GEMM and conv reductions), so 1e-4 relative
// plus 1e-5 of each tensor's largest element (for elements that cancel) holds for
// every layer; the loss itself to 1e-5.
TEST(CudaTraining, OneStepGradientsMatchCpu) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  for (int latent : {2, 50}) {
    SCOPED_TRACE(::testing::Message() << "latent " << latent);
    CVAE cpu(latent, 5), gpu(latent, 5);
    gpu.to_device(Device::CUDA);
    Tensor x = bars(kOneStepBatch, 0);
    Philox noise_cpu{9, 0}, noise_gpu{9, 0};
    Tensor lc = cvae_loss(cpu, x, noise_cpu, KlMode::MonteCarlo);
    Tensor lg = cvae_loss(gpu, x.to_device(Device::CUDA), noise_gpu, KlMode::MonteCarlo);
    lc.backward();
    lg.backward();
    EXPECT_NEAR(lg.item(), lc.item(), 1e-5 * std::fabs(lc.item()));
    NamedTensors pc = cpu.named_parameters(), pg = gpu.named_parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      std::vector<float> c = pc[i].second.grad().to_float_vector();
      std::vector<float> g = pg[i].second.grad().to_device(Device::CPU).to_float_vector();
      EXPECT_TRUE(testing::all_close(g, c, 1e-4, 1e-5 * testing::max_abs(c))) << pc[i].first;
    }
  }
#endif
}

// Ten Adam steps (three under ASan): the weights still agree. Adam moves a weight by about lr per step
// whatever the gradient's size, so a gradient that is zero up to rounding (the two
// devices sum in different orders) can move it either way: a few weights may differ by
// up to 2 * lr * steps, the rest agree to the rounding of the gradients. Past ~12 steps
// the two runs diverge chaotically (issue 10, 5a), which is why the bounds below are
// kept to 10 steps and the loss curve is checked loosely.
TEST(CudaTraining, WeightsMatchCpuAfterAShortRun) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  const int steps = kShortRunSteps;
  const double lr = 1e-3;
  TrainRun cpu = train(Device::CPU, 2, steps), gpu = train(Device::CUDA, 2, steps);
  int64_t total = 0, loose = 0;
  for (size_t i = 0; i < cpu.weights.size(); ++i) {
    std::vector<float> c = cpu.weights[i].second.to_float_vector(), g = gpu.weights[i].second.to_float_vector();
    EXPECT_TRUE(testing::all_close(g, c, 0.0, 2 * lr * steps)) << cpu.weights[i].first;
    for (size_t k = 0; k < c.size(); ++k) loose += std::fabs(g[k] - c[k]) > 1e-6 + 1e-4 * std::fabs(c[k]);
    total += static_cast<int64_t>(c.size());
  }
  std::printf("  after %d steps, %lld of %lld weights differ by more than 1e-4 relative\n", steps,
              static_cast<long long>(loose), static_cast<long long>(total));
  EXPECT_LE(loose, total / 100);  // those are the near-zero gradients: a handful, not a layer
#endif
}

// 100 steps: the loss curves stay together loosely (they diverge in the details, 5a).
TEST(CudaTraining, LossCurvesAgreeLooselyOver100Steps) {
  CVAE_REQUIRE_GPU();
  if (testing::kSanitized) GTEST_SKIP() << "run in the unsanitized build (the short runs cover its path under ASan)";
#if defined(CVAE_HAVE_CUDA)
  const int steps = kLongRunSteps, batch = 4;
  TrainRun cpu = train(Device::CPU, 2, steps, batch), gpu = train(Device::CUDA, 2, steps, batch);
  double worst = 0;
  for (int s = 0; s < steps; ++s)
    worst = std::max(worst, std::fabs(gpu.losses[s] - cpu.losses[s]) / std::fabs(cpu.losses[s]));
  std::printf("  largest relative loss difference over %d steps: %.2e\n", steps, worst);
  EXPECT_TRUE(testing::all_close(gpu.losses, cpu.losses, 1e-2, 0.0));
#endif
}

TEST(CudaTraining, TwoGpuRunsAreBitwiseEqual) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  TrainRun a = train(Device::CUDA, 2, kShortRunSteps, 4), b = train(Device::CUDA, 2, kShortRunSteps, 4);
  EXPECT_EQ(a.losses, b.losses);
  for (size_t i = 0; i < a.weights.size(); ++i)
    EXPECT_TRUE(bitwise_equal(a.weights[i].second, b.weights[i].second)) << a.weights[i].first;
#endif
}

// No host synchronisation inside a step (DESIGN.md). Two checks: reading the
// loss back only every 10 steps changes nothing; and a whole step, noise drawn
// from Philox on the device included, can be captured into a CUDA graph, which
// fails on any synchronising call (a device-to-host copy, a stream wait, a
// cudaMalloc) made while capturing.
TEST(CudaTraining, NoHostSyncInsideAStep) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  TrainRun every = train(Device::CUDA, 2, kShortRunSteps, 4, 1), rarely = train(Device::CUDA, 2, kShortRunSteps, 4, 2);
  EXPECT_EQ(every.losses, rarely.losses);
  for (size_t i = 0; i < every.weights.size(); ++i)
    EXPECT_TRUE(bitwise_equal(every.weights[i].second, rarely.weights[i].second)) << every.weights[i].first;

  CVAE model(2, 5);
  model.to_device(Device::CUDA);
  Adam adam(model.named_parameters(), AdamOptions{1e-3});
  Philox noise{9, 0};
  Tensor x = bars(4, 0).to_device(Device::CUDA);
  auto step = [&] {
    Tensor loss = cvae_loss(model, x, noise, KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
    adam.step();
  };
  CudaGraph graph;
  for (int i = 0; i < 2; ++i) graph.run_in_pool(step);  // warm the graph's pool
  EXPECT_NO_THROW(graph.capture(step));
  cuda_synchronize();
#endif
}

// Issue 8's count at the tutorial's GPU size, batch 100, latent 50: after one warm step
// (Adam's table, step and rate go up once), a step queues at most 40 kernels, no copy or
// memset (no copy per batch row: split is one kernel) and no host synchronisation. The
// counts are the runtime wrapper's and the launch helper's (engine/device.h: cuda_counts).
TEST(CudaTraining, AStepAtBatch100QueuesAtMost40KernelsAndNoCopies) {
  CVAE_REQUIRE_GPU();
  // Under ASan two steps at batch 100 would take minutes: the same step at batch 8 there
  // (the kernels are the same ones; their grids are smaller).
#if defined(CVAE_HAVE_CUDA)
  const int batch = testing::kSanitized ? 8 : 100;
  CVAE model(50, 5);
  model.to_device(Device::CUDA);
  Adam adam(model.named_parameters(), AdamOptions{1e-3});
  Philox noise{9, 0};
  Tensor x = bars(batch, 0).to_device(Device::CUDA);
  auto step = [&] {
    Tensor loss = cvae_loss(model, x, noise, KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
    adam.step();
  };
  step();  // warm: uploads, the cached seed gradient, gradient buffers
  const CudaCounts before = cuda_counts();
  step();
  const CudaCounts c = cuda_counts() - before;
  EXPECT_LE(c.kernels, 40);
  EXPECT_GE(c.kernels, 30);  // every layer's forward and backward really ran (7 layers, ~5 each)
  EXPECT_EQ(c.copies, 0);
  EXPECT_EQ(c.host_syncs, 0);
  EXPECT_EQ(c.graph_launches, 0);
  std::printf("one eager step, batch %d, latent 50: %lld kernels, %lld copies, %lld host syncs\n",
              batch, static_cast<long long>(c.kernels), static_cast<long long>(c.copies),
              static_cast<long long>(c.host_syncs));
  cuda_synchronize();  // the host reads the counts only; the work finishes before the model dies
#endif
}

TEST(CudaTraining, GraphReplayEqualsEagerBitwise) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  // Fixed batch and noise: what a replayed graph repeats.
  Tensor x = bars(4, 0).to_device(Device::CUDA);
  Philox e{3, 0};
  Tensor eps = randn({4, 2}, e, DType::F32, Device::CUDA);
  auto make = [] {
    auto m = std::make_unique<CVAE>(2, 5);
    m->to_device(Device::CUDA);
    return m;
  };
  auto eager = make(), graphed = make();
  Adam adam_e(eager->named_parameters(), AdamOptions{1e-3}), adam_g(graphed->named_parameters(), AdamOptions{1e-3});
  auto step = [&](CVAE& m, Adam& a) {
    Tensor loss = cvae_loss(m, x, eps, KlMode::MonteCarlo);
    a.zero_grad();
    loss.backward();
    a.step();
  };
  CudaGraph graph;
  for (int i = 0; i < 2; ++i) {  // warm the graph's pool (and build Adam's table) eagerly
    step(*eager, adam_e);
    graph.run_in_pool([&] { step(*graphed, adam_g); });
  }
  const int64_t before_capture = cuda_memory_stats().reserved;
  graph.capture([&] { step(*graphed, adam_g); });  // captures, does not run
  EXPECT_EQ(cuda_memory_stats().reserved, before_capture);  // the body hit the warm cache
  // Eager steps interleaved with the replays: the graph's blocks are its own pool's
  // (graph.h), so eager tensors never sit where a replay writes.
  const int runs = testing::kSanitized ? 1 : 3;
  const int64_t before_replays = cuda_memory_stats().reserved;
  for (int i = 0; i < runs; ++i) {
    step(*eager, adam_e);
    graph.replay();
  }
  cuda_synchronize();  // the host compares the weights next
  EXPECT_EQ(cuda_memory_stats().reserved, before_replays);  // replays allocate nothing
  NamedTensors pe = eager->named_parameters(), pg = graphed->named_parameters();
  for (size_t i = 0; i < pe.size(); ++i)
    EXPECT_TRUE(bitwise_equal(pe[i].second.to_device(Device::CPU), pg[i].second.to_device(Device::CPU)))
        << pe[i].first;
#endif
}

// Adam's pointer table and step counter are uploaded eagerly. A capture whose Adam step
// would need an upload (a dead host buffer by replay time) is refused, saying what to do.
TEST(CudaTraining, AdamRefusesUploadsInsideACapture) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  CVAE model(2, 5);
  model.to_device(Device::CUDA);
  Adam adam(model.named_parameters(), AdamOptions{1e-3});
  Tensor x = bars(4, 0).to_device(Device::CUDA);
  Philox noise{9, 0};
  auto forward_backward = [&] {
    Tensor loss = cvae_loss(model, x, noise, KlMode::MonteCarlo);
    adam.zero_grad();
    loss.backward();
  };
  CudaGraph graph;
  for (int i = 0; i < 2; ++i) graph.run_in_pool(forward_backward);  // the pool is warm, Adam's state is not
  try {
    graph.capture([&] {
      forward_backward();
      adam.step();
    });
    FAIL() << "captured an Adam step that uploads";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("run a step eagerly"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(cuda_capturing());
  graph.run_in_pool([&] {
    forward_backward();
    adam.step();  // eager: uploads the table and the counter
  });
  adam.set_steps(adam.steps());  // the counter must be uploaded again
  EXPECT_THROW(graph.capture([&] { adam.step(); }), std::logic_error);
  for (int i = 0; i < 2; ++i) {  // whole eager steps: Adam's blocks are taken, the pool warm again
    graph.run_in_pool([&] {
      forward_backward();
      adam.step();
    });
  }
  EXPECT_NO_THROW(graph.capture([&] {
    forward_backward();
    adam.step();
  }));
#endif
}

// A graph's pool keeps its blocks: freed, they go back to it, and work outside its scope
// gets other blocks (a replay writes the pool's blocks); inside the scope they come back.
TEST(CudaTraining, GraphPoolBlocksAreNeverHandedToOtherWork) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  const int pool = cuda_new_pool();
  void* in_pool = nullptr;
  {
    CudaPoolScope scope(pool);
    in_pool = Tensor::empty({12345}, DType::F32, Device::CUDA).raw();  // freed at once, back to the pool
  }
  Tensor outside = Tensor::empty({12345}, DType::F32, Device::CUDA);
  EXPECT_NE(outside.raw(), in_pool);
  cuda_empty_cache();  // gives back the shared pool's cache, not the graph's
  CudaPoolScope scope(pool);
  EXPECT_EQ(Tensor::empty({12345}, DType::F32, Device::CUDA).raw(), in_pool);
#endif
}

// Inside a capture the caching allocator serves only cached blocks; a miss is an error
// that says so (it used to reach cudaMalloc, then synchronise and free mid-capture).
TEST(CudaTraining, AllocatorRefusesCacheMissesInsideACapture) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  CudaGraph graph;
  try {
    graph.capture([] { Tensor t = Tensor::zeros({777777}, DType::F32, Device::CUDA); });
    FAIL() << "allocated during a capture";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("during a graph capture"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(cuda_capturing());
#endif
}

#if defined(CVAE_CUDA_EMULATED)
// Out of device memory, the caching allocator gives its cache back and tries again
// (the emulator's memory limit makes the device small enough to run out).
TEST(CudaTraining, AllocatorFreesItsCacheWhenTheDeviceIsFull) {
  const size_t MiB = size_t{1} << 20;
  { Tensor cached = Tensor::empty({int64_t(2 * MiB)}, DType::F32, Device::CUDA); }  // 8 MiB, now cached
  const int64_t reserved = cuda_memory_stats().reserved;
  const size_t before = emu::set_memory_limit(emu::device_bytes_in_use() + 4 * MiB);
  Tensor fits = Tensor::empty({int64_t(6 * MiB / 4)}, DType::F32, Device::CUDA);  // 6 MiB: only after the flush
  emu::set_memory_limit(before);
  EXPECT_LT(cuda_memory_stats().reserved, reserved + int64_t(6 * MiB));  // the 8 MiB block went back
  EXPECT_THROW(Tensor::empty({int64_t(1) << 45}, DType::F32, Device::CUDA), kernels::cuda::DeviceOutOfMemory);
}
#endif

TEST(CudaTraining, MemoryStaysUnderBudget) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  train(Device::CUDA, 50, testing::kSanitized ? 1 : 2, 100);  // the peak is reached in the first step
  // The peak is over the whole process; the tests before this one use batch 16.
  const CudaMemoryStats m = cuda_memory_stats();
  const double peak_mb = double(m.peak_in_use) / (1 << 20), reserved_mb = double(m.reserved) / (1 << 20);
  std::printf("  peak GPU memory in use, batch 100 latent 50: %.1f MB (reserved from the driver: %.1f MB)\n",
              peak_mb, reserved_mb);
  std::fflush(stdout);
  EXPECT_LT(peak_mb, 128.0);  // DESIGN.md: under 128 MB beyond the context
#endif
}

TEST(CudaTraining, DeviceBatchesEqualCpuBatches) {
  CVAE_REQUIRE_GPU();
#if defined(CVAE_HAVE_CUDA)
  IdxImages images;
  images.count = 50;
  images.rows = images.cols = 28;
  std::vector<float> u = testing::random_vector<float>(50 * 784, 4, 0.0, 256.0);
  for (float v : u) images.pixels.push_back(uint8_t(v));
  DeviceImages dev(images);
  std::vector<int64_t> order = shuffled_indices(50, 8, 1);
  dev.set_order(order);
  for (Binarize mode : {Binarize::Threshold, Binarize::Dynamic, Binarize::None}) {
    Tensor g = dev.batch(10, 17, mode, 21, 3).to_device(Device::CPU);
    Tensor c = gather_batch(images, order.data() + 10, 17, mode, 21, 3);
    EXPECT_TRUE(bitwise_equal(g, c)) << binarize_name(mode);
  }
#endif
}

}  // namespace
}  // namespace cvae
