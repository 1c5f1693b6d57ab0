// nn.cpp: module bookkeeping (names, conversion, loading) and the layers.
#include "engine/nn.h"

#include <cmath>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/dispatch.h"

namespace cvae {

NamedTensors Module::named_parameters(const std::string& prefix) const {
  NamedTensors out;
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) {
    NamedTensors sub = child->named_parameters(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

void Module::zero_grad() {
  for (Tensor& t : parameters()) t.zero_grad();
}

void Module::to(DType dtype) {
  for (Tensor& t : parameters()) {
    if (t.dtype() == dtype) continue;
    Tensor converted = t.to(dtype);
    TensorImpl* impl = t.impl();  // swap the storage under every handle to this parameter
    impl->storage = converted.impl()->storage;
    impl->dtype = dtype;
    impl->grad.reset();
  }
}

void Module::to_device(Device device) {
  for (Tensor& t : parameters()) {
    if (t.device() == device) continue;
    Tensor moved = t.to_device(device);
    TensorImpl* impl = t.impl();  // swap the storage under every handle to this parameter
    impl->storage = moved.impl()->storage;
    impl->device = device;
    impl->grad.reset();
  }
}

void Module::load(const NamedTensors& src, const std::string& prefix) {
  for (auto& [name, dst] : named_parameters(prefix)) {
    const Tensor* found = nullptr;
    for (const auto& [n, t] : src)
      if (n == name) found = &t;
    if (!found) throw std::invalid_argument("load: no tensor named " + name);
    if (found->shape() != dst.shape())
      throw std::invalid_argument("load: " + name + " has shape " + shape_str(found->shape()) +
                                  ", the model expects " + shape_str(dst.shape()));
    dst.copy_from(found->dtype() == dst.dtype() ? *found : found->to(dst.dtype()));
  }
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

void glorot_uniform_(Tensor& w, int64_t fan_in, int64_t fan_out, Philox& rng) {
  double a = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  w.copy_from(rand_uniform(w.shape(), -a, a, rng, w.dtype()));
}

namespace {

// Keras computes fans from the kernel's shape: receptive field times channels.
Tensor conv_kernel(int64_t a, int64_t b, int kernel, int64_t fan_in_ch, int64_t fan_out_ch,
                   Philox& rng) {
  Tensor w = Tensor::empty({a, b, kernel, kernel});
  glorot_uniform_(w, fan_in_ch * kernel * kernel, fan_out_ch * kernel * kernel, rng);
  return w;
}

}  // namespace

Conv2d::Conv2d(int in, int out, int kernel, int stride_, Padding padding_, Philox& rng, bool relu_)
    : stride(stride_), padding(padding_), relu(relu_) {
  weight = register_parameter("weight", conv_kernel(out, in, kernel, in, out, rng));
  bias = register_parameter("bias", Tensor::zeros({out}));
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight, bias, stride, padding, relu);  // bias and ReLU fused
}

ConvTranspose2d::ConvTranspose2d(int in, int out, int kernel, int stride_, Padding padding_,
                                 Philox& rng, bool relu_)
    : stride(stride_), padding(padding_), relu(relu_) {
  // Keras' Conv2DTranspose kernel is (k, k, out, in): fan_in = k*k*out, fan_out = k*k*in.
  weight = register_parameter("weight", conv_kernel(in, out, kernel, out, in, rng));
  bias = register_parameter("bias", Tensor::zeros({out}));
}

Tensor ConvTranspose2d::forward(const Tensor& x) {
  return conv_transpose2d(x, weight, bias, stride, padding, relu);
}

Linear::Linear(int in, int out, Philox& rng, bool relu_) : relu(relu_) {
  Tensor w = Tensor::empty({out, in});
  glorot_uniform_(w, in, out, rng);
  weight = register_parameter("weight", w);
  bias = register_parameter("bias", Tensor::zeros({out}));
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias, relu); }

Tensor Reshape::forward(const Tensor& x) {
  Shape s{x.size(0)};
  s.insert(s.end(), per_sample_.begin(), per_sample_.end());
  return reshape(x, s);
}

Sequential& Sequential::add(const std::string& name, std::shared_ptr<Module> m) {
  layers_.push_back(register_module(name, std::move(m)));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& layer : layers_) h = layer->forward(h);
  return h;
}

}  // namespace cvae
