// optim.cpp: Adam and SGD. On the CPU, one kernel call per parameter tensor;
// on the GPU, Adam is one launch over every parameter (a table of pointers in
// device memory, written in place only when a pointer changes) with the step
// counter on the device, so the update needs no host round trip and can sit in a
// graph. Both are uploaded eagerly; inside a graph capture an upload is refused.
#include "engine/optim.h"

#include <cstring>

#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/dispatch.h"
#include "kernels/kernels.h"

namespace cvae {

// Zeroes gradients without dropping them, so each parameter keeps one gradient
// buffer for the whole run: the GPU Adam's pointer table never changes (no upload
// inside a step) and a step can be captured into a CUDA graph. (Dropping them made
// the caching allocator alternate two buffers from step to step.) Nothing is filled:
// the buffer is marked pending zero, and the next backward's first contribution
// writes it (autograd.h: grad_destination); a gradient read before any contribution
// is filled with zeros then. A buffer shared with another tensor is replaced.
void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) {
    TensorImpl* impl = p.impl();
    if (!impl->grad) continue;
    if (impl->grad.use_count() > 1 || impl->grad->storage.use_count() > 1)
      impl->grad = Tensor::empty(p.shape(), p.dtype(), p.device()).impl_ptr();
    impl->grad_zero_pending = true;
  }
}

Adam::Adam(NamedTensors params, AdamOptions opt) : Optimizer(std::move(params)), opt_(opt) {
  for (auto& [name, p] : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
  }
}

void Adam::set_steps(int64_t s) {
  step_ = s;
  device_step_.reset();  // re-uploaded from step_ at the next GPU step
}

void Adam::step() {
  ++step_;
  if (!params_.empty() && params_[0].second.device() == Device::CUDA) return step_cuda();
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    detail::dispatch(p.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::adam_step<T>(p.numel(), p.data<T>(), g.data<T>(), m_[i].data<T>(),
                                 v_[i].data<T>(), opt_.lr, opt_.beta1, opt_.beta2, opt_.eps, step_);
    });
  }
}

void Adam::step_cuda() {
#if defined(CVAE_HAVE_CUDA)
  std::vector<kernels::cuda::AdamTensor> table;
  int64_t total = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& p = params_[i].second;
    Tensor g = p.grad();
    if (!g.defined()) continue;
    table.push_back({p.data<float>(), g.data<float>(), m_[i].data<float>(), v_[i].data<float>(), p.numel()});
    total += p.numel();
  }
  if (table.empty()) return;
  auto* stream = cuda_stream();
  const size_t bytes = table.size() * sizeof(kernels::cuda::AdamTensor);
  const bool moved = table_host_.size() != bytes || std::memcmp(table_host_.data(), table.data(), bytes) != 0;
  const bool lr_stale = !device_lr_ || lr_uploaded_ != opt_.lr;
  if ((moved || !device_step_ || lr_stale) && cuda_capturing()) {
    // A copy inside a capture would be replayed from host memory that has changed by
    // then (or fail the capture): the table and the counter must be on the device already.
    throw std::logic_error(std::string("Adam::step inside a CUDA graph capture: ") +
                           (moved ? "a parameter or gradient moved since the last step"
                                  : "the step counter or learning rate is not on the device yet") +
                           "; run a step eagerly (after zero_grad) before capturing");
  }
  if (!device_step_) {  // the counter lives on the device; seeded from the host count once
    device_step_ = std::make_shared<Storage>(sizeof(int64_t), cuda_allocator());
    step_seed_ = step_ - 1;  // a member: the copy never reads a dead stack slot
    kernels::cuda::memcpy_h2d(device_step_->data, &step_seed_, sizeof step_seed_, stream);
  }
  if (lr_stale) {  // read by the kernel, so a captured step follows a changed rate once uploaded
    if (!device_lr_) device_lr_ = std::make_shared<Storage>(sizeof(double), cuda_allocator());
    lr_uploaded_ = opt_.lr;
    kernels::cuda::memcpy_h2d(device_lr_->data, &lr_uploaded_, sizeof lr_uploaded_, stream);
  }
  if (moved) {
    // First step, or gradients reallocated elsewhere: rewrite the table, in place when
    // the count is unchanged (a graph captured earlier reads the same device table).
    // With the caching allocator a steady training loop does this once.
    table_host_.assign(reinterpret_cast<const char*>(table.data()),
                       reinterpret_cast<const char*>(table.data()) + bytes);
    if (!table_dev_ || table_dev_->bytes != bytes) table_dev_ = std::make_shared<Storage>(bytes, cuda_allocator());
    kernels::cuda::memcpy_h2d(table_dev_->data, table_host_.data(), bytes, stream);
  }
  // The launch takes step *step_dev + 1 and stores it there.
  kernels::cuda::adam_step_multi(static_cast<const kernels::cuda::AdamTensor*>(table_dev_->data),
                                 static_cast<int>(table.size()), total, static_cast<int64_t*>(device_step_->data),
                                 static_cast<const double*>(device_lr_->data), opt_.beta1, opt_.beta2,
                                 opt_.eps, stream);
#endif
}

NamedTensors Adam::state() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + ".exp_avg", m_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", v_[i]);
  }
  return out;
}

void SGD::step() {
  for (auto& named : params_) {
    Tensor& p = named.second;  // not a structured binding: the kernel lambda uses it (C++20 to capture)
    Tensor g = p.grad();
    if (!g.defined()) continue;
    CVAE_RUN_KERNEL(p, sgd_step, p.numel(), p.data<T>(), g.data<T>(), lr_);
  }
}

}  // namespace cvae
