// ops_elementwise.cpp: relu, sigmoid, exp, add, sub, mul, scale. Backward
// closures capture outputs detached (no reference cycle through the tape).
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {

using detail::dispatch;

// A new tensor shaped like `like`, filled by fn(T tag, T* out).
template <typename Fn>
Tensor make_like(const Tensor& like, Fn fn) {
  Tensor out = Tensor::empty(like.shape(), like.dtype());
  dispatch(like.dtype(), [&](auto tag) { fn(tag, out.template data<decltype(tag)>()); });
  return out;
}

void check_binary(const char* op, const Tensor& a, const Tensor& b) {
  detail::check_same_kind(op, {&a, &b});
  detail::check_same_shape(op, a, b);
}

// y = fwd(x);  dx = bwd(y, dy): the unary ops whose gradient needs only the
// output. fwd(n, x, y) and bwd(n, y, dy, dx) are called with typed pointers.
template <typename Fwd, typename Bwd>
Tensor unary_from_output(const char* op, const Tensor& x, Fwd fwd, Bwd bwd) {
  detail::check_same_kind(op, {&x});
  Tensor y = make_like(x, [&](auto tag, auto* out) { fwd(x.numel(), x.data<decltype(tag)>(), out); });
  Tensor yd = y.detach();
  return attach(y, {x}, [yd, bwd](const Tensor& dy) -> std::vector<Tensor> {
    return {make_like(dy, [&](auto tag, auto* out) {
      using T = decltype(tag);
      bwd(dy.numel(), yd.data<T>(), dy.data<T>(), out);
    })};
  });
}

}  // namespace

// y = max(x, 0);  dx = dy * (y > 0)
Tensor relu(const Tensor& x) {
  return unary_from_output(
      "relu", x, [](int64_t n, auto* in, auto* out) { kernels::cpu::relu_fwd(n, in, out); },
      [](int64_t n, auto* y, auto* dy, auto* dx) { kernels::cpu::relu_bwd(n, y, dy, dx); });
}

// y = 1 / (1 + exp(-x));  dx = dy * y * (1 - y)
Tensor sigmoid(const Tensor& x) {
  return unary_from_output(
      "sigmoid", x, [](int64_t n, auto* in, auto* out) { kernels::cpu::sigmoid_fwd(n, in, out); },
      [](int64_t n, auto* y, auto* dy, auto* dx) { kernels::cpu::sigmoid_bwd(n, y, dy, dx); });
}

// y = exp(x);  dx = dy * y
Tensor exp(const Tensor& x) {
  return unary_from_output(
      "exp", x, [](int64_t n, auto* in, auto* out) { kernels::cpu::exp_fwd(n, in, out); },
      [](int64_t n, auto* y, auto* dy, auto* dx) { kernels::cpu::mul(n, dy, y, dx); });
}

// y = a + b;  da = dy;  db = dy
Tensor add(const Tensor& a, const Tensor& b) {
  check_binary("add", a, b);
  Tensor y = make_like(a, [&](auto tag, auto* out) {
    using T = decltype(tag);
    kernels::cpu::add<T>(a.numel(), a.data<T>(), b.data<T>(), out);
  });
  return attach(y, {a, b}, [](const Tensor& dy) -> std::vector<Tensor> { return {dy, dy}; });
}

// y = a - b;  da = dy;  db = -dy
Tensor sub(const Tensor& a, const Tensor& b) {
  check_binary("sub", a, b);
  Tensor y = make_like(a, [&](auto tag, auto* out) {
    using T = decltype(tag);
    kernels::cpu::sub<T>(a.numel(), a.data<T>(), b.data<T>(), out);
  });
  return attach(y, {a, b}, [b](const Tensor& dy) -> std::vector<Tensor> {
    Tensor db = tracks_grad(b) ? scale(dy, -1.0) : Tensor();
    return {dy, db};
  });
}

// y = a * b;  da = dy * b;  db = dy * a
Tensor mul(const Tensor& a, const Tensor& b) {
  check_binary("mul", a, b);
  Tensor y = make_like(a, [&](auto tag, auto* out) {
    using T = decltype(tag);
    kernels::cpu::mul<T>(a.numel(), a.data<T>(), b.data<T>(), out);
  });
  return attach(y, {a, b}, [a, b](const Tensor& dy) -> std::vector<Tensor> {
    Tensor da = tracks_grad(a) ? mul(dy, b.detach()) : Tensor();
    Tensor db = tracks_grad(b) ? mul(dy, a.detach()) : Tensor();
    return {da, db};
  });
}

// y = alpha * x;  dx = alpha * dy
Tensor scale(const Tensor& x, double alpha) {
  detail::check_same_kind("scale", {&x});
  Tensor y = make_like(x, [&](auto tag, auto* out) {
    using T = decltype(tag);
    kernels::cpu::scale<T>(x.numel(), T(alpha), x.data<T>(), out);
  });
  return attach(y, {x}, [alpha](const Tensor& dy) -> std::vector<Tensor> {
    return {scale(dy, alpha)};
  });
}

}  // namespace cvae
