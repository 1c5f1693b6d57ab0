// dispatch.h (engine-internal): pick the kernel instantiation for a dtype once
// per op call, and the argument checks every op shares.
#pragma once

#include <initializer_list>
#include <stdexcept>
#include <string>

#include "engine/tensor.h"

namespace cvae::detail {

// Calls f(float{}) or f(double{}) by dtype; f is a generic lambda.
template <typename F>
decltype(auto) dispatch(DType t, F&& f) {
  if (t == DType::F32) return f(float{});
  return f(double{});
}

// Throws std::invalid_argument("op: message") unless cond.
inline void check(bool cond, const char* op, const std::string& message) {
  if (!cond) throw std::invalid_argument(std::string(op) + ": " + message);
}

// All defined tensors share the first one's dtype and device, and live on the CPU
// (the CUDA dispatch arrives with the CUDA backend).
inline void check_same_kind(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = nullptr;
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    if (!first) first = t;
    check(t->dtype() == first->dtype(), op, "mixed dtypes");
    check(t->device() == first->device(), op, "tensors on different devices");
    check(t->device() == Device::CPU, op, "CUDA tensors are not supported yet");
  }
}

inline void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  check(a.shape() == b.shape(), op,
        "shapes " + shape_str(a.shape()) + " and " + shape_str(b.shape()) + " differ");
}

}  // namespace cvae::detail
