// bench_kernels_cpu.cpp: Google Benchmark of the CPU gemm and conv2d kernels at the CVAE's
// shapes (batch 100, latent 50), reported as GFLOP/s (FLOPs = 2 * multiply-adds), with
// OpenBLAS's sgemm at the same GEMM shapes beside ours when it is found at configure time.
// Kernels only: no autograd, no allocation inside the timed loop, no GPU. The code path
// is the CPU's best unless CVAE_CPU_ISA says otherwise; the first line of the context
// names it.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <cstdlib>
#include <vector>

#include "benchmarks/cvae_shapes.h"
#include "kernels/kernels.h"
#if defined(CVAE_HAVE_OPENBLAS)
#include <cblas.h>
#endif

namespace {

namespace kc = cvae::kernels;
using kc::Conv2dShape;

using cvae::bench::random_floats;

void set_flops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9 * state.iterations(),
                                                 benchmark::Counter::kIsRate);
}

// ------------------------------------------------------------------------- conv

enum class Pass { Fprop, Dgrad, Wgrad };

// The conv layers' batch: 100, or CVAE_BENCH_BATCH (e.g. 32, the tutorial's).
int conv_batch() {
  const char* v = std::getenv("CVAE_BENCH_BATCH");
  return v && std::atoi(v) > 0 ? std::atoi(v) : 100;
}

void BM_Conv(benchmark::State& state, int layer_index, Pass pass) {
  const Conv2dShape s = cvae::bench::cvae_conv_layer(layer_index, conv_batch());
  const size_t xs = (size_t)s.N * s.C * s.H * s.W, ws = (size_t)s.K * s.C * s.R * s.S;
  const size_t ys = (size_t)s.N * s.K * s.P * s.Q;
  auto x = random_floats(xs, 1), w = random_floats(ws, 2), y = random_floats(ys, 3);
  std::vector<float> work(kc::conv2d_workspace_elems(s));
  for (auto _ : state) {
    if (pass == Pass::Fprop) kc::cpu::conv2d_fprop(s, x.data(), w.data(), y.data(), work.data());
    if (pass == Pass::Dgrad) kc::cpu::conv2d_dgrad(s, y.data(), w.data(), x.data(), work.data());
    if (pass == Pass::Wgrad) kc::cpu::conv2d_wgrad(s, x.data(), y.data(), w.data(), work.data());
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * s.N * s.K * s.P * s.Q * s.C * s.R * s.S);
}

BENCHMARK_CAPTURE(BM_Conv, conv1_fwd_fprop, 0, Pass::Fprop)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, conv1_bwd_data_dgrad, 0, Pass::Dgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, conv1_bwd_weight_wgrad, 0, Pass::Wgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, conv2_fwd_fprop, 1, Pass::Fprop)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, conv2_bwd_data_dgrad, 1, Pass::Dgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, conv2_bwd_weight_wgrad, 1, Pass::Wgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv1_fwd_dgrad, 2, Pass::Dgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv1_bwd_data_fprop, 2, Pass::Fprop)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv1_bwd_weight_wgrad, 2, Pass::Wgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv2_fwd_dgrad, 3, Pass::Dgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv2_bwd_data_fprop, 3, Pass::Fprop)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv2_bwd_weight_wgrad, 3, Pass::Wgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv3_fwd_dgrad, 4, Pass::Dgrad)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv3_bwd_data_fprop, 4, Pass::Fprop)->UseRealTime();
BENCHMARK_CAPTURE(BM_Conv, deconv3_bwd_weight_wgrad, 4, Pass::Wgrad)->UseRealTime();

// ------------------------------------------------------------------------- gemm

// C[M,N] = op(A)[M,K] op(B)[K,N], tightly packed. Dense weights are [out,in] (PyTorch).
void BM_Gemm(benchmark::State& state, bool ta, bool tb, int M, int N, int K) {
  auto A = random_floats((size_t)M * K, 4), B = random_floats((size_t)K * N, 5);
  std::vector<float> C((size_t)M * N);
  for (auto _ : state) {
    kc::cpu::gemm<float>(ta, tb, M, N, K, 1.f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.f,
                         C.data(), N);
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * M * N * K);
}

#if defined(CVAE_HAVE_OPENBLAS)
// The same product through OpenBLAS (its own threads, OMP_NUM_THREADS of them).
void BM_GemmOpenBLAS(benchmark::State& state, bool ta, bool tb, int M, int N, int K) {
  auto A = random_floats((size_t)M * K, 4), B = random_floats((size_t)K * N, 5);
  std::vector<float> C((size_t)M * N);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, 1.f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.f, C.data(), N);
    benchmark::ClobberMemory();
  }
  set_flops(state, 2.0 * M * N * K);
}
#define CVAE_GEMM_BENCH(name, ...)                                         \
  BENCHMARK_CAPTURE(BM_Gemm, name, __VA_ARGS__)->UseRealTime();            \
  BENCHMARK_CAPTURE(BM_GemmOpenBLAS, name, __VA_ARGS__)->UseRealTime();
#else
#define CVAE_GEMM_BENCH(name, ...) BENCHMARK_CAPTURE(BM_Gemm, name, __VA_ARGS__)->UseRealTime();
#endif

// encoder fc 2304 -> 100 (2 * latent): y = x W^T, dx = dy W, dW = dy^T x
CVAE_GEMM_BENCH(enc_fc_fwd_100x2304_x_2304x100, false, true, 100, 100, 2304)
CVAE_GEMM_BENCH(enc_fc_dx_100x100_x_100x2304, false, false, 100, 2304, 100)
CVAE_GEMM_BENCH(enc_fc_dw_100x100T_x_100x2304, true, false, 100, 2304, 100)
// decoder fc 50 -> 1568 (7*7*32)
CVAE_GEMM_BENCH(dec_fc_fwd_100x50_x_50x1568, false, true, 100, 1568, 50)
CVAE_GEMM_BENCH(dec_fc_dx_100x1568_x_1568x50, false, false, 100, 50, 1568)
CVAE_GEMM_BENCH(dec_fc_dw_100x1568T_x_100x50, true, false, 1568, 50, 100)
// the sgemm rate to hold the training step against (RESULTS.md): large square products
CVAE_GEMM_BENCH(square_512, false, false, 512, 512, 512)
CVAE_GEMM_BENCH(square_1024, false, false, 1024, 1024, 1024)

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cvae_cpu_code_path", cvae::kernels::cpu::cpu_isa_name(cvae::kernels::cpu::cpu_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
