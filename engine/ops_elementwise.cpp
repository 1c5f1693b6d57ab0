// ops_elementwise.cpp: relu, sigmoid, exp, add, sub, mul, scale. Backward
// closures capture outputs detached (no reference cycle through the tape).
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {

Tensor empty_like(const Tensor& t) { return Tensor::empty(t.shape(), t.dtype(), t.device()); }

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  detail::check_same_kind(op, {&a, &b});
  detail::check_same_shape(op, a, b);
}

}  // namespace

// y = max(x, 0);  dx = dy * (y > 0)
Tensor relu(const Tensor& x) {
  detail::check_same_kind("relu", {&x});
  Tensor y = empty_like(x);
  CVAE_RUN_KERNEL(x, relu_fwd, x.numel(), x.data<T>(), y.data<T>());
  Tensor yd = y.detach();
  return attach(y, {x}, [yd](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = empty_like(dy);
    CVAE_RUN_KERNEL(dy, relu_bwd, dy.numel(), yd.data<T>(), dy.data<T>(), dx.data<T>());
    return {dx};
  });
}

// y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
Tensor sigmoid(const Tensor& x) {
  detail::check_same_kind("sigmoid", {&x});
  Tensor y = empty_like(x);
  CVAE_RUN_KERNEL(x, sigmoid_fwd, x.numel(), x.data<T>(), y.data<T>());
  Tensor yd = y.detach();
  return attach(y, {x}, [yd](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = empty_like(dy);
    CVAE_RUN_KERNEL(dy, sigmoid_bwd, dy.numel(), yd.data<T>(), dy.data<T>(), dx.data<T>());
    return {dx};
  });
}

// y = exp(x);  dx = dy * y
Tensor exp(const Tensor& x) {
  detail::check_same_kind("exp", {&x});
  Tensor y = empty_like(x);
  CVAE_RUN_KERNEL(x, exp_fwd, x.numel(), x.data<T>(), y.data<T>());
  Tensor yd = y.detach();
  return attach(y, {x}, [yd](const Tensor& dy) -> std::vector<Tensor> { return {mul(dy, yd)}; });
}

// y = a + b;  da = dy;  db = dy
Tensor add(const Tensor& a, const Tensor& b) {
  check_binary("add", a, b);
  Tensor y = empty_like(a);
  CVAE_RUN_KERNEL(a, add, a.numel(), a.data<T>(), b.data<T>(), y.data<T>());
  return attach(y, {a, b}, [](const Tensor& dy) -> std::vector<Tensor> { return {dy, dy}; });
}

// y = a - b;  da = dy;  db = -dy
Tensor sub(const Tensor& a, const Tensor& b) {
  check_binary("sub", a, b);
  Tensor y = empty_like(a);
  CVAE_RUN_KERNEL(a, sub, a.numel(), a.data<T>(), b.data<T>(), y.data<T>());
  return attach(y, {a, b}, [b](const Tensor& dy) -> std::vector<Tensor> {
    Tensor db = tracks_grad(b) ? scale(dy, -1.0) : Tensor();
    return {dy, db};
  });
}

// y = a * b;  da = dy * b;  db = dy * a
Tensor mul(const Tensor& a, const Tensor& b) {
  check_binary("mul", a, b);
  Tensor y = empty_like(a);
  CVAE_RUN_KERNEL(a, mul, a.numel(), a.data<T>(), b.data<T>(), y.data<T>());
  return attach(y, {a, b}, [a, b](const Tensor& dy) -> std::vector<Tensor> {
    Tensor da = tracks_grad(a) ? mul(dy, b.detach()) : Tensor();
    Tensor db = tracks_grad(b) ? mul(dy, a.detach()) : Tensor();
    return {da, db};
  });
}

// y = alpha * x;  dx = alpha * dy
Tensor scale(const Tensor& x, double alpha) {
  detail::check_same_kind("scale", {&x});
  Tensor y = empty_like(x);
  CVAE_RUN_KERNEL(x, scale, x.numel(), T(alpha), x.data<T>(), y.data<T>());
  return attach(y, {x}, [alpha](const Tensor& dy) -> std::vector<Tensor> {
    return {scale(dy, alpha)};
  });
}

}  // namespace cvae
