// ops_loss.cpp: sigmoid cross-entropy, the Gaussian log-density and the
// analytic KL, Philox sampling and the reparameterisation trick.
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {

using detail::check;
using detail::dispatch;

template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// An output gradient for t when it is on the tape, else an undefined tensor.
Tensor grad_buffer(const Tensor& t) {
  return tracks_grad(t) ? Tensor::empty(t.shape(), t.dtype()) : Tensor();
}

template <typename T>
T* ptr_or_null_mut(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Rows of a [N, ...] tensor: (N, D).
std::pair<int, int> rows(const Tensor& x, const char* op) {
  check(x.dim() >= 1 && x.size(0) > 0, op, "needs a batch dimension, got " + shape_str(x.shape()));
  return {int(x.size(0)), int(x.numel() / x.size(0))};
}

}  // namespace

// l = max(x,0) - x*t + log1p(exp(-|x|));  dx = dl*(sigmoid(x)-t);  dt = -dl*x
Tensor sigmoid_cross_entropy_with_logits(const Tensor& logits, const Tensor& labels) {
  detail::check_same_kind("sigmoid_cross_entropy_with_logits", {&logits, &labels});
  detail::check_same_shape("sigmoid_cross_entropy_with_logits", logits, labels);
  Tensor y = Tensor::empty(logits.shape(), logits.dtype());
  dispatch(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::sigmoid_ce_fwd<T>(y.numel(), logits.data<T>(), labels.data<T>(), y.data<T>());
  });
  return attach(y, {logits, labels}, [logits, labels](const Tensor& dl) -> std::vector<Tensor> {
    Tensor dx = grad_buffer(logits), dt = grad_buffer(labels);
    dispatch(dl.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::sigmoid_ce_bwd<T>(dl.numel(), logits.data<T>(), labels.data<T>(),
                                      dl.data<T>(), ptr_or_null_mut<T>(dx), ptr_or_null_mut<T>(dt));
    });
    return {dx, dt};
  });
}

// out[n] = sum_j -0.5*((x-m)^2*exp(-lv) + lv + log(2*pi))
Tensor log_normal_pdf(const Tensor& x, const Tensor& mean, const Tensor& logvar) {
  const char* op = "log_normal_pdf";
  detail::check_same_kind(op, {&x, &mean, &logvar});
  if (mean.defined()) detail::check_same_shape(op, x, mean);
  if (logvar.defined()) detail::check_same_shape(op, x, logvar);
  auto [N, D] = rows(x, op);
  Tensor y = Tensor::empty({N}, x.dtype());
  dispatch(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::log_normal_pdf_fwd<T>(N, D, x.data<T>(), ptr_or_null<T>(mean),
                                        ptr_or_null<T>(logvar), y.data<T>());
  });
  return attach(y, {x, mean, logvar}, [x, mean, logvar, N = N, D = D](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = grad_buffer(x), dm = grad_buffer(mean), dlv = grad_buffer(logvar);
    dispatch(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::log_normal_pdf_bwd<T>(N, D, x.data<T>(), ptr_or_null<T>(mean),
                                          ptr_or_null<T>(logvar), dy.data<T>(),
                                          ptr_or_null_mut<T>(dx), ptr_or_null_mut<T>(dm),
                                          ptr_or_null_mut<T>(dlv));
    });
    return {dx, dm, dlv};
  });
}

// out[n] = -0.5 * sum_j (1 + lv - m^2 - exp(lv))
Tensor kl_normal(const Tensor& mean, const Tensor& logvar) {
  const char* op = "kl_normal";
  detail::check_same_kind(op, {&mean, &logvar});
  detail::check_same_shape(op, mean, logvar);
  auto [N, D] = rows(mean, op);
  Tensor y = Tensor::empty({N}, mean.dtype());
  dispatch(mean.dtype(), [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::kl_normal_fwd<T>(N, D, mean.data<T>(), logvar.data<T>(), y.data<T>());
  });
  return attach(y, {mean, logvar}, [mean, logvar, N = N, D = D](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dm = grad_buffer(mean), dlv = grad_buffer(logvar);
    dispatch(dy.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::kl_normal_bwd<T>(N, D, mean.data<T>(), logvar.data<T>(), dy.data<T>(),
                                     ptr_or_null_mut<T>(dm), ptr_or_null_mut<T>(dlv));
    });
    return {dm, dlv};
  });
}

Tensor randn(const Shape& shape, Philox& rng, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::normal_fill<T>(t.numel(), rng.seed, rng.offset, t.data<T>());
  });
  rng.offset += kernels::philox_blocks(t.numel());
  return t;
}

Tensor rand_uniform(const Shape& shape, double lo, double hi, Philox& rng, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::uniform_fill<T>(t.numel(), rng.seed, rng.offset, T(lo), T(hi), t.data<T>());
  });
  rng.offset += kernels::philox_blocks(t.numel());
  return t;
}

Tensor reparameterize(const Tensor& mean, const Tensor& logvar, const Tensor& eps) {
  return add(mul(eps, exp(scale(logvar, 0.5))), mean);
}

Tensor reparameterize(const Tensor& mean, const Tensor& logvar, Philox& rng) {
  return reparameterize(mean, logvar, randn(mean.shape(), rng, mean.dtype()));
}

}  // namespace cvae
