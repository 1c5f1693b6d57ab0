// conv_cudnn.cu: the cuDNN path of the Conv2d passes, only for A/B comparison with conv2d.cu
// (benchmarks and tests). It lives in its own library, cvae_cudnn, so the cvae program does
// not carry libcudnn. Built without cuDNN (CVAE_HAVE_CUDNN unset), it is a stub.
//
// Padding: cuDNN pads symmetrically, while Conv2dShape's TF `same` may put an odd padding
// row/column at the bottom/right. These functions accept only shapes that cuDNN can express
// (P == (H + 2*pad_h - R) / stride_h + 1, likewise Q: e.g. `valid`, or `same` stride 1 with
// an odd kernel) and throw std::invalid_argument for the others (the CVAE's stride-2
// transposed convs). Math is CUDNN_FMA_MATH (no TF32) and only deterministic algorithms are
// chosen, once per shape per thread, from the v7 heuristics (no trial runs, no sync).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/kernels_cuda.h"

#if defined(CVAE_HAVE_CUDNN)

#include <cudnn.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>

namespace cvae::kernels::cuda {
namespace {

void check_cudnn(cudnnStatus_t st, const char* expr, const char* file, int line) {
  if (st != CUDNN_STATUS_SUCCESS)
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr +
                             ": " + cudnnGetErrorString(st));
}
#define CVAE_CUDNN(expr) check_cudnn((expr), #expr, __FILE__, __LINE__)

// True when cuDNN's symmetric padding gives exactly the shape's P and Q.
bool cudnn_expressible(const Conv2dShape& s) {
  if (s.H + 2 * s.pad_h < s.R || s.W + 2 * s.pad_w < s.S) return false;
  return s.P == (s.H + 2 * s.pad_h - s.R) / s.stride_h + 1 &&
         s.Q == (s.W + 2 * s.pad_w - s.S) / s.stride_w + 1;
}

void require_expressible(const Conv2dShape& s, const char* what) {
  const bool ok = s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.K >= 1 && s.R >= 1 &&
                  s.S >= 1 && s.P >= 1 && s.Q >= 1 && s.stride_h >= 1 && s.stride_w >= 1 &&
                  s.pad_h >= 0 && s.pad_w >= 0;
  if (!ok) throw std::invalid_argument(std::string(what) + ": invalid Conv2dShape");
  if (!cudnn_expressible(s))
    throw std::invalid_argument(std::string(what) +
                                ": asymmetric (TF `same`) padding is not expressible in cuDNN");
}

// One cuDNN handle per host thread (cuDNN handles are not thread-safe), destroyed with it.
struct Handle {
  cudnnHandle_t h = nullptr;
  Handle() { CVAE_CUDNN(cudnnCreate(&h)); }
  ~Handle() { cudnnDestroy(h); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
};

cudnnHandle_t handle_on(cudaStream_t stream) {
  thread_local Handle handle;
  CVAE_CUDNN(cudnnSetStream(handle.h, stream));
  return handle.h;
}

// Descriptors and the chosen algorithms of one shape.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  cudnnConvolutionFwdAlgo_t fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnConvolutionBwdDataAlgo_t bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  cudnnConvolutionBwdFilterAlgo_t bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
  size_t workspace = 0;  // the largest of the three algorithms' needs

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (x) cudnnDestroyTensorDescriptor(x);
  }
};

// The first deterministic, FMA-math algorithm of the heuristics' ranking; else `fallback`
// (the ones named as deterministic in cuDNN's documentation).
template <typename Perf, typename Algo>
Algo pick(const Perf* perf, int count, Algo fallback) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
        perf[i].mathType == CUDNN_FMA_MATH)
      return perf[i].algo;
  return fallback;
}

std::unique_ptr<Plan> make_plan(cudnnHandle_t h, const Conv2dShape& s) {
  auto plan = std::make_unique<Plan>();
  Plan& p = *plan;
  CVAE_CUDNN(cudnnCreateTensorDescriptor(&p.x));
  CVAE_CUDNN(cudnnCreateTensorDescriptor(&p.y));
  CVAE_CUDNN(cudnnCreateFilterDescriptor(&p.w));
  CVAE_CUDNN(cudnnCreateConvolutionDescriptor(&p.conv));
  CVAE_CUDNN(cudnnSetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, s.C, s.H, s.W));
  CVAE_CUDNN(cudnnSetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, s.N, s.K, s.P, s.Q));
  CVAE_CUDNN(cudnnSetFilter4dDescriptor(p.w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, s.K, s.C, s.R, s.S));
  // Our conv is a cross-correlation (no kernel flip), as TF's and PyTorch's.
  CVAE_CUDNN(cudnnSetConvolution2dDescriptor(p.conv, s.pad_h, s.pad_w, s.stride_h, s.stride_w, 1,
                                             1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CVAE_CUDNN(cudnnSetConvolutionMathType(p.conv, CUDNN_FMA_MATH));  // float32, not TF32
  int n = 0, c = 0, hh = 0, ww = 0;
  CVAE_CUDNN(cudnnGetConvolution2dForwardOutputDim(p.conv, p.x, p.w, &n, &c, &hh, &ww));
  if (n != s.N || c != s.K || hh != s.P || ww != s.Q)
    throw std::invalid_argument("cudnn conv2d: cuDNN's output shape differs from P x Q");

  constexpr int kMax = 16;
  int got = 0;
  std::array<cudnnConvolutionFwdAlgoPerf_t, kMax> fwd{};
  CVAE_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(h, p.x, p.w, p.conv, p.y, kMax, &got, fwd.data()));
  p.fwd = pick(fwd.data(), got, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
  std::array<cudnnConvolutionBwdDataAlgoPerf_t, kMax> bwd_data{};
  CVAE_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, p.conv, p.x, kMax, &got,
                                                         bwd_data.data()));
  p.bwd_data = pick(bwd_data.data(), got, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
  std::array<cudnnConvolutionBwdFilterAlgoPerf_t, kMax> bwd_filter{};
  CVAE_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, p.conv, p.w, kMax, &got,
                                                           bwd_filter.data()));
  p.bwd_filter = pick(bwd_filter.data(), got, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);

  size_t a = 0, b = 0, d = 0;
  CVAE_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(h, p.x, p.w, p.conv, p.y, p.fwd, &a));
  CVAE_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, p.conv, p.x, p.bwd_data, &b));
  CVAE_CUDNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, p.conv, p.w,
                                                            p.bwd_filter, &d));
  p.workspace = std::max(a, std::max(b, d));
  return plan;
}

// The plan of a shape, built on first use by this thread (descriptors belong to the
// thread's handle's cache; no locking needed).
const Plan& plan_for(cudnnHandle_t h, const Conv2dShape& s) {
  using Key = std::array<int, 13>;
  thread_local std::map<Key, std::unique_ptr<Plan>> plans;
  const Key key{s.N, s.C, s.H, s.W, s.K, s.R, s.S, s.P, s.Q, s.stride_h, s.stride_w, s.pad_h, s.pad_w};
  auto it = plans.find(key);
  if (it == plans.end()) it = plans.emplace(key, make_plan(h, s)).first;
  return *it->second;
}

}  // namespace

bool cudnn_available() { return true; }

size_t cudnn_workspace_bytes(const Conv2dShape& s) {
  require_expressible(s, "cudnn_workspace_bytes");
  cudnnHandle_t h = handle_on(nullptr);
  return plan_for(h, s).workspace;
}

// y = conv(x, w)
void cudnn_conv2d_fprop(const Conv2dShape& s, const float* x, const float* w, float* y,
                        void* workspace, cudaStream_t stream) {
  require_expressible(s, "cudnn_conv2d_fprop");
  cudnnHandle_t h = handle_on(stream);
  const Plan& p = plan_for(h, s);
  const float one = 1.f, zero = 0.f;
  CVAE_CUDNN(cudnnConvolutionForward(h, &one, p.x, x, p.w, w, p.conv, p.fwd, workspace,
                                     p.workspace, &zero, p.y, y));
}

// dx = conv^T(dy, w)
void cudnn_conv2d_dgrad(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                        void* workspace, cudaStream_t stream) {
  require_expressible(s, "cudnn_conv2d_dgrad");
  cudnnHandle_t h = handle_on(stream);
  const Plan& p = plan_for(h, s);
  const float one = 1.f, zero = 0.f;
  CVAE_CUDNN(cudnnConvolutionBackwardData(h, &one, p.w, w, p.y, dy, p.conv, p.bwd_data,
                                          workspace, p.workspace, &zero, p.x, dx));
}

// dw = sum_n x (*) dy
void cudnn_conv2d_wgrad(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                        void* workspace, cudaStream_t stream) {
  require_expressible(s, "cudnn_conv2d_wgrad");
  cudnnHandle_t h = handle_on(stream);
  const Plan& p = plan_for(h, s);
  const float one = 1.f, zero = 0.f;
  CVAE_CUDNN(cudnnConvolutionBackwardFilter(h, &one, p.x, x, p.y, dy, p.conv, p.bwd_filter,
                                            workspace, p.workspace, &zero, p.w, dw));
}

}  // namespace cvae::kernels::cuda

#else  // !CVAE_HAVE_CUDNN: the stub

namespace cvae::kernels::cuda {
namespace {
[[noreturn]] void no_cudnn(const char* what) {
  throw std::runtime_error(std::string(what) + ": cvae-engine was built without cuDNN");
}
}  // namespace

bool cudnn_available() { return false; }
size_t cudnn_workspace_bytes(const Conv2dShape&) { no_cudnn("cudnn_workspace_bytes"); }
void cudnn_conv2d_fprop(const Conv2dShape&, const float*, const float*, float*, void*,
                        cudaStream_t) {
  no_cudnn("cudnn_conv2d_fprop");
}
void cudnn_conv2d_dgrad(const Conv2dShape&, const float*, const float*, float*, void*,
                        cudaStream_t) {
  no_cudnn("cudnn_conv2d_dgrad");
}
void cudnn_conv2d_wgrad(const Conv2dShape&, const float*, const float*, float*, void*,
                        cudaStream_t) {
  no_cudnn("cudnn_conv2d_wgrad");
}

}  // namespace cvae::kernels::cuda

#endif
