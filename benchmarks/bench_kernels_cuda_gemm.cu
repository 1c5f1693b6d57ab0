// bench_kernels_cuda_gemm.cu: our CUDA SGEMM vs cuBLAS at the CVAE's dense shapes
// (batch 100, latent 50) plus 1024^3 and 4096^3. Each kernel is first checked
// against cpu::gemm, then timed with CUDA events after a warm-up, flushing L2
// before every repeat; the median is reported. Not Google Benchmark: events only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/kernels_cuda.h"
#include "benchmarks/cvae_shapes.h"
#include "kernels/kernels.h"

namespace {

namespace kc = cvae::kernels;

struct Shape {
  const char* name;
  bool ta, tb;
  int M, N, K;
};

// C[M,N] = op(A)[M,K] op(B)[K,N], tightly packed; dense weights are [out,in].
const Shape kShapes[] = {
    {"enc_fc_fwd  x W^T", false, true, 100, 100, 2304},
    {"enc_fc_dx   dy W", false, false, 100, 2304, 100},
    {"enc_fc_dw   dy^T x", true, false, 100, 2304, 100},
    {"dec_fc_fwd  z W^T", false, true, 100, 1568, 50},
    {"dec_fc_dx   dy W", false, false, 100, 50, 1568},
    {"dec_fc_dw   dy^T z", true, false, 1568, 50, 100},
    {"square 1024", false, false, 1024, 1024, 1024},
    {"square 4096", false, false, 4096, 4096, 4096},
};

using cvae::bench::random_floats;

using GemmFn = void (*)(bool, bool, int, int, int, float, const float*, int, const float*, int,
                        float, float*, int, cudaStream_t);

// The tests' rule: |got - ref| <= 1e-5 |ref| + 1e-5 max|ref|.
bool check(const char* who, const Shape& s, GemmFn fn, const float* dA, const float* dB, float* dC,
           const std::vector<float>& ref, cudaStream_t st) {
  const size_t n = ref.size();
  CVAE_CUDA_CHECK(cudaMemsetAsync(dC, 0xff, n * sizeof(float), st));  // NaN poison (beta = 0)
  fn(s.ta, s.tb, s.M, s.N, s.K, 1.f, dA, s.ta ? s.M : s.K, dB, s.tb ? s.K : s.N, 0.f, dC, s.N, st);
  std::vector<float> got(n);
  CVAE_CUDA_CHECK(cudaMemcpyAsync(got.data(), dC, n * sizeof(float), cudaMemcpyDeviceToHost, st));
  CVAE_CUDA_CHECK(cudaStreamSynchronize(st));  // sync: we read got next
  double maxref = 0, maxerr = 0;
  for (float r : ref) maxref = std::max(maxref, static_cast<double>(std::fabs(r)));
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!(err <= 1e-5 * std::fabs(ref[i]) + 1e-5 * maxref)) ++bad;
    if (!(err <= maxerr)) maxerr = err;
  }
  if (bad) std::printf("  %s %s: %zu of %zu elements wrong, max error %g\n", who, s.name, bad, n, maxerr);
  return bad == 0;
}

// Median microseconds of `reps` timed runs, L2 flushed (a 256 MiB memset)
// before each so every run starts from HBM like a training step's GEMM does.
double time_us(const Shape& s, GemmFn fn, const float* dA, const float* dB, float* dC, void* flush,
               size_t flush_bytes, cudaStream_t st) {
  auto run = [&] {
    fn(s.ta, s.tb, s.M, s.N, s.K, 1.f, dA, s.ta ? s.M : s.K, dB, s.tb ? s.K : s.N, 0.f, dC, s.N, st);
  };
  for (int i = 0; i < 3; ++i) run();  // warm-up (handles, caches, clocks)
  const double flops = 2.0 * s.M * s.N * s.K;
  const int reps = flops > 1e11 ? 10 : 50;
  cudaEvent_t e0, e1;
  CVAE_CUDA_CHECK(cudaEventCreate(&e0));
  CVAE_CUDA_CHECK(cudaEventCreate(&e1));
  std::vector<double> us;
  for (int r = 0; r < reps; ++r) {
    CVAE_CUDA_CHECK(cudaMemsetAsync(flush, r & 0xff, flush_bytes, st));
    CVAE_CUDA_CHECK(cudaEventRecord(e0, st));
    run();
    CVAE_CUDA_CHECK(cudaEventRecord(e1, st));
    CVAE_CUDA_CHECK(cudaEventSynchronize(e1));  // sync: read this repeat's time
    float ms = 0;
    CVAE_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    us.push_back(1e3 * ms);
  }
  CVAE_CUDA_CHECK(cudaEventDestroy(e0));
  CVAE_CUDA_CHECK(cudaEventDestroy(e1));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main() {
  std::string why;
  if (kc::cuda::device_count(&why) == 0) {
    std::printf("no GPU: %s\n", why.c_str());
    return 0;
  }
  std::printf("device: %s\ncuBLAS: %s\n\n", kc::cuda::device_description(0).c_str(),
              kc::cuda::cublas_available() ? "yes" : "not built in");
  const bool cublas = kc::cuda::cublas_available();
  cudaStream_t st = kc::cuda::stream_create();
  const size_t flush_bytes = size_t{256} << 20;
  void* flush = kc::cuda::device_malloc(flush_bytes);
  bool all_ok = true;

  std::printf("%-22s %5s %5s %5s %11s %11s %7s %11s %11s\n", "shape", "M", "N", "K", "ours us",
              "cublas us", "ratio", "ours GF/s", "cublas GF/s");
  for (const Shape& s : kShapes) {
    const size_t na = size_t(s.M) * s.K, nb = size_t(s.K) * s.N, nc = size_t(s.M) * s.N;
    const auto A = random_floats(na, 1), B = random_floats(nb, 2);
    std::vector<float> ref(nc);
    kc::cpu::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.f, A.data(), s.ta ? s.M : s.K, B.data(),
                         s.tb ? s.K : s.N, 0.f, ref.data(), s.N);
    auto* dA = static_cast<float*>(kc::cuda::device_malloc(na * sizeof(float)));
    auto* dB = static_cast<float*>(kc::cuda::device_malloc(nb * sizeof(float)));
    auto* dC = static_cast<float*>(kc::cuda::device_malloc(nc * sizeof(float)));
    kc::cuda::memcpy_h2d(dA, A.data(), na * sizeof(float), st);
    kc::cuda::memcpy_h2d(dB, B.data(), nb * sizeof(float), st);

    const bool ok_ours = check("ours", s, kc::cuda::gemm, dA, dB, dC, ref, st);
    const bool ok_cublas = !cublas || check("cublas", s, kc::cuda::cublas_gemm, dA, dB, dC, ref, st);
    all_ok = all_ok && ok_ours && ok_cublas;
    const double flops = 2.0 * s.M * s.N * s.K;
    const double t_ours = ok_ours ? time_us(s, kc::cuda::gemm, dA, dB, dC, flush, flush_bytes, st) : NAN;
    const double t_cub = cublas && ok_cublas
                             ? time_us(s, kc::cuda::cublas_gemm, dA, dB, dC, flush, flush_bytes, st)
                             : NAN;
    std::printf("%-22s %5d %5d %5d %11.1f %11.1f %7.2f %11.0f %11.0f\n", s.name, s.M, s.N, s.K,
                t_ours, t_cub, t_ours / t_cub, flops / (t_ours * 1e3), flops / (t_cub * 1e3));
    kc::cuda::device_free(dA);
    kc::cuda::device_free(dB);
    kc::cuda::device_free(dC);
  }
  std::printf("\nratio = ours / cuBLAS time (below 1: ours faster); GF/s = 2MNK / time.\n");
  kc::cuda::device_free(flush);
  return all_ok ? 0 : 1;
}
