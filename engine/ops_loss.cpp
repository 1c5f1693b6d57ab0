// ops_loss.cpp: sigmoid cross-entropy, the Gaussian log-density and the
// analytic KL, Philox sampling and the reparameterisation trick.
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {


template <typename T>
const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// An output gradient for t when it is on the tape, else an undefined tensor.
Tensor grad_buffer(const Tensor& t) {
  return tracks_grad(t) ? Tensor::empty(t.shape(), t.dtype(), t.device()) : Tensor();
}

template <typename T>
T* ptr_or_null_mut(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

// Rows of a [N, ...] tensor: (N, D).
std::pair<int, int> rows(const Tensor& x, const char* op) {
  CVAE_CHECK(x.dim() >= 1 && x.size(0) > 0, op, "needs a batch dimension, got " + shape_str(x.shape()));
  return {int(x.size(0)), int(x.numel() / x.size(0))};
}

}  // namespace

// l = max(x,0) - x*t + log1p(exp(-|x|));  dx = dl*(sigmoid(x)-t);  dt = -dl*x
Tensor sigmoid_cross_entropy_with_logits(const Tensor& logits, const Tensor& labels) {
  detail::check_same_kind("sigmoid_cross_entropy_with_logits", {&logits, &labels});
  detail::check_same_shape("sigmoid_cross_entropy_with_logits", logits, labels);
  Tensor y = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  CVAE_RUN_KERNEL(logits, sigmoid_ce_fwd, y.numel(), logits.data<T>(), labels.data<T>(), y.data<T>());
  return attach(y, {logits, labels}, [logits, labels](const Tensor& dl) -> std::vector<Tensor> {
    Tensor dx = grad_buffer(logits), dt = grad_buffer(labels);
    CVAE_RUN_KERNEL(dl, sigmoid_ce_bwd, dl.numel(), logits.data<T>(), labels.data<T>(),
                    dl.data<T>(), ptr_or_null_mut<T>(dx), ptr_or_null_mut<T>(dt));
    return {dx, dt};
  });
}

// out[n] = sum_j -0.5*((x-m)^2*exp(-lv) + lv + log(2*pi))
Tensor log_normal_pdf(const Tensor& x, const Tensor& mean, const Tensor& logvar) {
  const char* op = "log_normal_pdf";
  detail::check_same_kind(op, {&x, &mean, &logvar});
  if (mean.defined()) detail::check_same_shape(op, x, mean);
  if (logvar.defined()) detail::check_same_shape(op, x, logvar);
  // Plain variables, not a structured binding: CVAE_RUN_KERNEL's lambda uses
  // them, and capturing bindings is C++20 (clang rejects it in C++17).
  const auto nd = rows(x, op);
  const auto N = nd.first, D = nd.second;
  Tensor y = Tensor::empty({N}, x.dtype(), x.device());
  CVAE_RUN_KERNEL(x, log_normal_pdf_fwd, N, D, x.data<T>(), ptr_or_null<T>(mean),
                  ptr_or_null<T>(logvar), y.data<T>());
  return attach(y, {x, mean, logvar}, [x, mean, logvar, N = N, D = D](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = grad_buffer(x), dm = grad_buffer(mean), dlv = grad_buffer(logvar);
    CVAE_RUN_KERNEL(dy, log_normal_pdf_bwd, N, D, x.data<T>(), ptr_or_null<T>(mean),
                    ptr_or_null<T>(logvar), dy.data<T>(), ptr_or_null_mut<T>(dx),
                    ptr_or_null_mut<T>(dm), ptr_or_null_mut<T>(dlv));
    return {dx, dm, dlv};
  });
}

// out[n] = -0.5 * sum_j (1 + lv - m^2 - exp(lv))
Tensor kl_normal(const Tensor& mean, const Tensor& logvar) {
  const char* op = "kl_normal";
  detail::check_same_kind(op, {&mean, &logvar});
  detail::check_same_shape(op, mean, logvar);
  const auto nd = rows(mean, op);  // not a structured binding: see log_normal_pdf
  const auto N = nd.first, D = nd.second;
  Tensor y = Tensor::empty({N}, mean.dtype(), mean.device());
  CVAE_RUN_KERNEL(mean, kl_normal_fwd, N, D, mean.data<T>(), logvar.data<T>(), y.data<T>());
  return attach(y, {mean, logvar}, [mean, logvar, N = N, D = D](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dm = grad_buffer(mean), dlv = grad_buffer(logvar);
    CVAE_RUN_KERNEL(dy, kl_normal_bwd, N, D, mean.data<T>(), logvar.data<T>(), dy.data<T>(),
                    ptr_or_null_mut<T>(dm), ptr_or_null_mut<T>(dlv));
    return {dm, dlv};
  });
}

Tensor randn(const Shape& shape, Philox& rng, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  CVAE_RUN_KERNEL(t, normal_fill, t.numel(), rng.seed, rng.offset, t.data<T>());
  rng.offset += kernels::philox_blocks(t.numel());
  return t;
}

void DevicePhilox::set_offset(uint64_t offset) {
  upload_ = offset;
#if defined(CVAE_HAVE_CUDA)
  if (!device_offset_) device_offset_ = std::make_shared<Storage>(sizeof(uint64_t), cuda_allocator());
  kernels::cuda::memcpy_h2d(device_offset_->data, &upload_, sizeof upload_, cuda_stream());
#endif
}

Tensor DevicePhilox::randn(const Shape& shape) {
  CVAE_CHECK(device_offset_ != nullptr, "DevicePhilox::randn", "set_offset first");
  Tensor t = Tensor::empty(shape, DType::F32, Device::CUDA);
  CVAE_CUDA_ONLY(kernels::cuda::normal_fill_from_device(t.numel(), seed_, static_cast<uint64_t*>(device_offset_->data),
                                                        t.data<float>(), cuda_stream()));
  return t;
}

DeviceScalarLog::DeviceScalarLog(int64_t capacity) : capacity_(capacity) {
  CVAE_CHECK(capacity > 0, "DeviceScalarLog", "capacity must be positive");
  ring_ = Tensor::empty({capacity}, DType::F32, Device::CUDA);
#if defined(CVAE_HAVE_CUDA)
  count_ = std::make_shared<Storage>(sizeof(int64_t), cuda_allocator());
  kernels::cuda::memcpy_h2d(count_->data, &zero_, sizeof zero_, cuda_stream());
#endif
}

void DeviceScalarLog::append(const Tensor& value) {
  CVAE_CHECK(value.numel() == 1 && value.device() == Device::CUDA && value.dtype() == DType::F32,
        "DeviceScalarLog::append", "needs one float32 on the GPU");
  CVAE_CHECK(appended_ - read_ < capacity_, "DeviceScalarLog::append", "the ring is full: read it first");
  CVAE_CUDA_ONLY(kernels::cuda::append_to_ring(value.data<float>(), ring_.data<float>(), capacity_,
                                               static_cast<int64_t*>(count_->data), cuda_stream()));
  ++appended_;
}

std::vector<float> DeviceScalarLog::read_unread() {
  std::vector<float> out;
  if (appended_ == read_) return out;
  const std::vector<double> ring = ring_.to_double_vector();  // the one synchronisation
  for (int64_t k = read_; k < appended_; ++k) out.push_back(static_cast<float>(ring[static_cast<size_t>(k % capacity_)]));
  read_ = appended_;
  return out;
}

Tensor rand_uniform(const Shape& shape, double lo, double hi, Philox& rng, DType dtype,
                    Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  CVAE_RUN_KERNEL(t, uniform_fill, t.numel(), rng.seed, rng.offset, T(lo), T(hi), t.data<T>());
  rng.offset += kernels::philox_blocks(t.numel());
  return t;
}

// The fused loss: forward writes the scalar and the per-row ELBOs; backward
// reads the upstream gradient where it lives (no host round trip on the GPU).
Tensor vae_elbo_loss(const Tensor& logits, const Tensor& x, const Tensor& z, const Tensor& mean,
                     const Tensor& logvar, bool analytic) {
  const char* op = "vae_elbo_loss";
  detail::check_same_kind(op, {&logits, &x, &z, &mean, &logvar});
  detail::check_same_shape(op, logits, x);
  detail::check_same_shape(op, z, mean);
  detail::check_same_shape(op, z, logvar);
  CVAE_CHECK(z.dim() == 2 && logits.size(0) == z.size(0), op,
        "logits " + shape_str(logits.shape()) + " and latents " + shape_str(z.shape()) + " do not fit");
  kernels::VaeLossShape s{int(z.size(0)), int(logits.numel() / z.size(0)), int(z.size(1)), analytic};
  Tensor loss = Tensor::empty({}, x.dtype(), x.device());
  Tensor rows_elbo = Tensor::empty({s.N}, x.dtype(), x.device());
  CVAE_RUN_KERNEL(x, vae_loss_fwd, s, logits.data<T>(), x.data<T>(), z.data<T>(), mean.data<T>(),
                  logvar.data<T>(), loss.data<T>(), rows_elbo.data<T>());
  return attach(loss, {logits, x, z, mean, logvar},
                [logits, x, z, mean, logvar, s](const Tensor& g) -> std::vector<Tensor> {
                  Tensor dl = grad_buffer(logits), dz = grad_buffer(z), dm = grad_buffer(mean),
                         dlv = grad_buffer(logvar);
                  CVAE_RUN_KERNEL(g, vae_loss_bwd, s, logits.data<T>(), x.data<T>(), z.data<T>(),
                                  mean.data<T>(), logvar.data<T>(), g.data<T>(),
                                  ptr_or_null_mut<T>(dl), ptr_or_null_mut<T>(dz),
                                  ptr_or_null_mut<T>(dm), ptr_or_null_mut<T>(dlv));
                  return {dl, Tensor(), dz, dm, dlv};
                });
}

// z = eps * exp(logvar / 2) + mean. On the CPU the chain of ops (the specification);
// on the GPU one kernel each way, the same float operations in the same order:
//   dmean = dz;  dlogvar = 0.5 * ((dz * eps) * exp(logvar / 2));  deps = dz * exp(logvar / 2)
Tensor reparameterize(const Tensor& mean, const Tensor& logvar, const Tensor& eps) {
  if (mean.device() != Device::CUDA) return add(mul(eps, exp(scale(logvar, 0.5))), mean);
  detail::check_same_kind("reparameterize", {&mean, &logvar, &eps});
  detail::check_same_shape("reparameterize", mean, logvar);
  detail::check_same_shape("reparameterize", mean, eps);
  Tensor z = Tensor::empty(mean.shape(), mean.dtype(), mean.device());
  const int64_t n = mean.numel();
  CVAE_CUDA_ONLY(kernels::cuda::reparameterize_fwd(n, mean.data<float>(), logvar.data<float>(), eps.data<float>(),
                                                   z.data<float>(), cuda_stream()));
  (void)n;
  return attach(z, {mean, logvar, eps}, [mean, logvar, eps, n](const Tensor& dz) -> std::vector<Tensor> {
    // mean's and logvar's gradients so far (the loss's terms) take this contribution in
    // place when they may (grad_to_add_into): no separate add.
    Tensor add_mean = grad_to_add_into(mean), add_logvar = grad_to_add_into(logvar);
    Tensor dmean = add_mean.defined() ? add_mean : grad_buffer(mean);
    Tensor dlogvar = add_logvar.defined() ? add_logvar : grad_buffer(logvar);
    Tensor deps = grad_buffer(eps);
    CVAE_CUDA_ONLY(kernels::cuda::reparameterize_bwd(n, logvar.data<float>(), eps.data<float>(), dz.data<float>(),
                                                     ptr_or_null_mut<float>(dmean), add_mean.defined(),
                                                     ptr_or_null_mut<float>(dlogvar), add_logvar.defined(),
                                                     ptr_or_null_mut<float>(deps), cuda_stream()));
    (void)n, (void)dz;  // used only by the CUDA kernel above
    return {add_mean.defined() ? Tensor() : dmean, add_logvar.defined() ? Tensor() : dlogvar, deps};
  });
}

Tensor reparameterize(const Tensor& mean, const Tensor& logvar, Philox& rng) {
  return reparameterize(mean, logvar, randn(mean.shape(), rng, mean.dtype(), mean.device()));
}

}  // namespace cvae
