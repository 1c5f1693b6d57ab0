// optim.cpp: Adam and SGD. Each step is one kernel call per parameter tensor.
#include "engine/optim.h"

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "kernels/kernels.h"

namespace cvae {

void Optimizer::zero_grad() {
  for (auto& [name, p] : params_) p.zero_grad();
}

Adam::Adam(NamedTensors params, AdamOptions opt) : Optimizer(std::move(params)), opt_(opt) {
  for (auto& [name, p] : params_) {
    m_.push_back(Tensor::zeros(p.shape(), p.dtype()));
    v_.push_back(Tensor::zeros(p.shape(), p.dtype()));
  }
}

void Adam::step() {
  ++step_;
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

NamedTensors Adam::state() const {
  NamedTensors out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back(params_[i].first + ".exp_avg", m_[i]);
    out.emplace_back(params_[i].first + ".exp_avg_sq", v_[i]);
  }
  return out;
}

void SGD::step() {
  for (auto& [name, p] : params_) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    detail::dispatch(p.dtype(), [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::sgd_step<T>(p.numel(), p.data<T>(), g.data<T>(), lr_);
    });
  }
}

}  // namespace cvae
