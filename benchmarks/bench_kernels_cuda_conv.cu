// bench_kernels_cuda_conv.cu: the CUDA conv kernels (kernels/cuda/conv2d.cu) against cuDNN
// at the CVAE's conv passes, batch 100 (the list of bench_kernels_cpu.cpp). Each kernel is
// first checked against its CPU twin, then timed with CUDA events: warm-up, L2 flushed by a
// 64 MB write before every repeat, median of 20. Plain main(), not Google Benchmark.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cuda/kernels_cuda.h"
#include "benchmarks/cvae_shapes.h"
#include "kernels/kernels.h"

namespace {

namespace kc = cvae::kernels;
namespace cu = cvae::kernels::cuda;
using kc::Conv2dShape;

constexpr int kWarmup = 3;
constexpr int kRepeats = 20;
constexpr size_t kFlushBytes = size_t(64) << 20;  // more than the H100's / H200's 50 MB L2

void check(cudaError_t err, const char* expr, int line) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(line) + ": " + expr +
                             ": " + cudaGetErrorString(err));
}
#define CHECK_CUDA(expr) check((expr), #expr, __LINE__)

using cvae::bench::random_floats;

enum class Pass { Fprop, Dgrad, Wgrad };
struct Case {
  const char* name;
  int layer;
  Pass pass;
};
const Case kCases[] = {
    {"conv1_fwd_fprop", 0, Pass::Fprop},           {"conv1_bwd_data_dgrad", 0, Pass::Dgrad},
    {"conv1_bwd_weight_wgrad", 0, Pass::Wgrad},    {"conv2_fwd_fprop", 1, Pass::Fprop},
    {"conv2_bwd_data_dgrad", 1, Pass::Dgrad},      {"conv2_bwd_weight_wgrad", 1, Pass::Wgrad},
    {"deconv1_fwd_dgrad", 2, Pass::Dgrad},         {"deconv1_bwd_data_fprop", 2, Pass::Fprop},
    {"deconv1_bwd_weight_wgrad", 2, Pass::Wgrad},  {"deconv2_fwd_dgrad", 3, Pass::Dgrad},
    {"deconv2_bwd_data_fprop", 3, Pass::Fprop},    {"deconv2_bwd_weight_wgrad", 3, Pass::Wgrad},
    {"deconv3_fwd_dgrad", 4, Pass::Dgrad},         {"deconv3_bwd_data_fprop", 4, Pass::Fprop},
    {"deconv3_bwd_weight_wgrad", 4, Pass::Wgrad},
};

// cuDNN pads symmetrically: only shapes whose P, Q it reproduces (see conv_cudnn.cu).
bool cudnn_expressible(const Conv2dShape& s) {
  return s.H + 2 * s.pad_h >= s.R && s.W + 2 * s.pad_w >= s.S &&
         s.P == (s.H + 2 * s.pad_h - s.R) / s.stride_h + 1 &&
         s.Q == (s.W + 2 * s.pad_w - s.S) / s.stride_w + 1;
}

// max |got - ref| / max |ref|: the error relative to the output's scale.
double scaled_error(const std::vector<float>& got, const std::vector<float>& ref) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::fabs((double)got[i] - ref[i]);
    err = std::isnan(e) ? INFINITY : std::max(err, e);
    scale = std::max(scale, std::fabs((double)ref[i]));
  }
  return scale > 0 ? err / scale : err;
}

// Median time in microseconds of fn on stream, L2 flushed before every repeat.
double time_us(const std::function<void()>& fn, void* flush, cudaStream_t stream) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < kWarmup; ++i) fn();
  std::vector<float> ms(kRepeats);
  for (int i = 0; i < kRepeats; ++i) {
    CHECK_CUDA(cudaMemsetAsync(flush, i & 0xff, kFlushBytes, stream));
    CHECK_CUDA(cudaEventRecord(start, stream));
    fn();
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));  // the host reads the timing now
    CHECK_CUDA(cudaEventElapsedTime(&ms[i], start, stop));
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  std::sort(ms.begin(), ms.end());
  return 1e3 * 0.5 * (ms[kRepeats / 2 - 1] + ms[kRepeats / 2]);
}

std::vector<float> download(const float* d, size_t n) {
  std::vector<float> h(n);
  CHECK_CUDA(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

int run() {
  std::string why;
  if (cu::device_count(&why) == 0) {
    std::printf("bench_kernels_cuda_conv: no GPU (%s); nothing to time\n", why.c_str());
    return 0;
  }
  std::printf("device: %s\ncuDNN: %s (FMA math, deterministic algorithms)\n",
              cu::device_description(0).c_str(), cu::cudnn_available() ? "yes" : "not built in");
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  void* flush = nullptr;
  CHECK_CUDA(cudaMalloc(&flush, kFlushBytes));

  std::printf("%-26s %10s %10s %7s %9s %9s %9s\n", "pass", "ours_us", "cudnn_us", "ratio",
              "GFLOP/s", "err_ours", "err_cudnn");
  for (const Case& c : kCases) {
    const Conv2dShape s = cvae::bench::cvae_conv_layer(c.layer);
    const size_t xs = (size_t)s.N * s.C * s.H * s.W, ws = (size_t)s.K * s.C * s.R * s.S;
    const size_t ys = (size_t)s.N * s.K * s.P * s.Q;
    // Inputs of the pass (a, b) and its output size: fprop (x, w) -> y, dgrad (dy, w) -> dx,
    // wgrad (x, dy) -> dw.
    const size_t a_n = c.pass == Pass::Dgrad ? ys : xs;
    const size_t b_n = c.pass == Pass::Wgrad ? ys : ws;
    const size_t o_n = c.pass == Pass::Fprop ? ys : c.pass == Pass::Dgrad ? xs : ws;
    const auto a = random_floats(a_n, 1), b = random_floats(b_n, 2);
    std::vector<float> ref(o_n), work(kc::conv2d_workspace_elems(s));
    if (c.pass == Pass::Fprop) kc::cpu::conv2d_fprop(s, a.data(), b.data(), ref.data(), work.data());
    if (c.pass == Pass::Dgrad) kc::cpu::conv2d_dgrad(s, a.data(), b.data(), ref.data(), work.data());
    if (c.pass == Pass::Wgrad) kc::cpu::conv2d_wgrad(s, a.data(), b.data(), ref.data(), work.data());

    float *da, *db, *dout;
    CHECK_CUDA(cudaMalloc(&da, a_n * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&db, b_n * sizeof(float)));
    CHECK_CUDA(cudaMalloc(&dout, o_n * sizeof(float)));
    CHECK_CUDA(cudaMemcpy(da, a.data(), a_n * sizeof(float), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(db, b.data(), b_n * sizeof(float), cudaMemcpyHostToDevice));

    auto ours = [&] {
      if (c.pass == Pass::Fprop) cu::conv2d_fprop(s, da, db, dout, stream);
      if (c.pass == Pass::Dgrad) cu::conv2d_dgrad(s, da, db, dout, stream);
      if (c.pass == Pass::Wgrad) cu::conv2d_wgrad(s, da, db, dout, stream);
    };
    CHECK_CUDA(cudaMemset(dout, 0xff, o_n * sizeof(float)));  // NaN: unwritten outputs show
    ours();
    CHECK_CUDA(cudaStreamSynchronize(stream));  // the result is read back next
    const double err_ours = scaled_error(download(dout, o_n), ref);
    const double t_ours = time_us(ours, flush, stream);

    double t_cudnn = NAN, err_cudnn = NAN;
    if (cu::cudnn_available() && cudnn_expressible(s)) {
      void* cw = nullptr;
      const size_t cw_bytes = cu::cudnn_workspace_bytes(s);
      if (cw_bytes) CHECK_CUDA(cudaMalloc(&cw, cw_bytes));
      auto theirs = [&] {
        if (c.pass == Pass::Fprop) cu::cudnn_conv2d_fprop(s, da, db, dout, cw, stream);
        if (c.pass == Pass::Dgrad) cu::cudnn_conv2d_dgrad(s, da, db, dout, cw, stream);
        if (c.pass == Pass::Wgrad) cu::cudnn_conv2d_wgrad(s, da, db, dout, cw, stream);
      };
      CHECK_CUDA(cudaMemset(dout, 0xff, o_n * sizeof(float)));
      theirs();
      CHECK_CUDA(cudaStreamSynchronize(stream));  // the result is read back next
      err_cudnn = scaled_error(download(dout, o_n), ref);
      t_cudnn = time_us(theirs, flush, stream);
      if (cw) CHECK_CUDA(cudaFree(cw));
    }
    const double flops = 2.0 * s.N * s.K * s.P * s.Q * s.C * s.R * s.S;
    std::printf("%-26s %10.1f %10.1f %7.2f %9.1f %9.1e %9.1e\n", c.name, t_ours, t_cudnn,
                t_ours / t_cudnn, flops / (t_ours * 1e3), err_ours, err_cudnn);
    CHECK_CUDA(cudaFree(da));
    CHECK_CUDA(cudaFree(db));
    CHECK_CUDA(cudaFree(dout));
  }
  std::printf("ratio = ours / cuDNN (below 1: ours faster); nan: cuDNN cannot express the\n"
              "asymmetric TF `same` padding of the stride-2 deconvs. err = max|got-cpu| / "
              "max|cpu|.\n");
  CHECK_CUDA(cudaFree(flush));
  CHECK_CUDA(cudaStreamDestroy(stream));
  return 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_kernels_cuda_conv: %s\n", e.what());
    return 1;
  }
}
