// dispatch.h (engine-internal): pick the kernel instantiation for a dtype once
// per op call, and the argument checks every op shares.
#pragma once

#include <initializer_list>
#include <stdexcept>
#include <string>

#include "engine/device.h"
#include "engine/tensor.h"
#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
// The CUDA side of an op; compiled away in builds without CUDA (where no
// tensor can live on the GPU, so it is never reached).
#define CVAE_CUDA_ONLY(...) __VA_ARGS__
#else
#define CVAE_CUDA_ONLY(...) ((void)0)
struct CUstream_st;
using cudaStream_t = CUstream_st*;
#endif

namespace cvae::detail {

// Calls f(float{}) or f(double{}) by dtype; f is a generic lambda.
template <typename F>
decltype(auto) dispatch(DType t, F&& f) {
  if (t == DType::F32) return f(float{});
  return f(double{});
}

// Throws std::invalid_argument("op: message").
[[noreturn]] inline void fail(const char* op, const std::string& message) {
  throw std::invalid_argument(std::string(op) + ": " + message);
}

}  // namespace cvae::detail

// fail(op, message) unless cond. A macro, so that the message (mostly built from shapes)
// is made only when the check fails: made eagerly, the checks in the backward of one
// batch-100 training step wrote ~22,000 times to string streams (gdb).
#define CVAE_CHECK(cond, op, message) ((cond) ? void(0) : ::cvae::detail::fail((op), (message)))

namespace cvae::detail {

// One dispatch per op call: cpu(tag) with tag float or double for CPU tensors,
// cuda(stream) for CUDA tensors (float32 only).
template <typename Cpu, typename Cuda>
void on_device(const Tensor& t, Cpu&& cpu, Cuda&& cuda) {
  if (t.device() == Device::CUDA) {
    cuda(cuda_stream());
    return;
  }
  dispatch(t.dtype(), cpu);
}

// Runs kernels::cpu::NAME<T>(ARGS...) or kernels::cuda::NAME(ARGS..., stream)
// for t's device and dtype. Inside ARGS, T names the element type (float on
// the GPU), so one argument list serves both twins: e.g.
//   CVAE_RUN_KERNEL(x, relu_fwd, x.numel(), x.data<T>(), y.data<T>());
#define CVAE_RUN_KERNEL(t, NAME, ...)                                              \
  ::cvae::detail::on_device(                                                       \
      (t),                                                                         \
      [&](auto tag_) {                                                             \
        using T = decltype(tag_);                                                  \
        ::cvae::kernels::cpu::NAME<T>(__VA_ARGS__);                                \
      },                                                                           \
      [&](cudaStream_t stream_) {                                                  \
        using T = float;                                                           \
        (void)sizeof(T);                                                           \
        (void)stream_;                                                             \
        CVAE_CUDA_ONLY(::cvae::kernels::cuda::NAME(__VA_ARGS__, stream_));         \
      })

// All defined tensors share the first one's dtype and device.
inline void check_same_kind(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) first = t;
    CVAE_CHECK(t->dtype() == first->dtype(), op, "mixed dtypes");
    CVAE_CHECK(t->device() == first->device(), op, "tensors on different devices");
  }
}

inline void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  CVAE_CHECK(a.shape() == b.shape(), op,
        "shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) + " differ");
}

}  // namespace cvae::detail
