// nn.h: modules with named parameters (PyTorch names and layouts) and Keras
// default initialisation: Glorot-uniform kernels, zero biases. A module owns
// parameters and children; forward is built from the ops in ops.h.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/ops.h"
#include "engine/tensor.h"

namespace cvae {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  virtual Tensor forward(const Tensor& x) = 0;

  // Every parameter under this module, with dotted names ("conv1.weight"),
  // in registration order: stable across runs, used by checkpoints.
  NamedTensors named_parameters(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  void zero_grad();
  // Converts every parameter in place (handles stay valid): float64 for gradient checks.
  void to(DType dtype);
  // Moves every parameter to the device in place (handles stay valid).
  void to_device(Device device);
  // Copies values from `src` (by name); throws when a name or shape is missing.
  void load(const NamedTensors& src, const std::string& prefix = "");

 protected:
  Tensor register_parameter(const std::string& name, Tensor t);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    children_.emplace_back(name, m);
    return m;
  }

 private:
  NamedTensors params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// Keras' glorot_uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
void glorot_uniform_(Tensor& w, int64_t fan_in, int64_t fan_out, Philox& rng);

class Conv2d : public Module {
 public:
  // weight [out,in,k,k], bias [out]; relu: a ReLU fused into the bias pass
  Conv2d(int in, int out, int kernel, int stride, Padding padding, Philox& init_rng,
         bool relu = false);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int stride;
  Padding padding;
  bool relu;
};

class ConvTranspose2d : public Module {
 public:
  // weight [in,out,k,k] (PyTorch layout), bias [out]; TF Conv2DTranspose semantics.
  ConvTranspose2d(int in, int out, int kernel, int stride, Padding padding, Philox& init_rng,
                  bool relu = false);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int stride;
  Padding padding;
  bool relu;
};

class Linear : public Module {
 public:
  // weight [out,in], bias [out]
  Linear(int in, int out, Philox& init_rng, bool relu = false);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  bool relu;
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
};

class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return flatten(x); }
};

// [N, prod(shape)] -> [N, shape...]
class Reshape : public Module {
 public:
  explicit Reshape(Shape per_sample) : per_sample_(std::move(per_sample)) {}
  Tensor forward(const Tensor& x) override;

 private:
  Shape per_sample_;
};

class Sequential : public Module {
 public:
  Sequential& add(const std::string& name, std::shared_ptr<Module> m);
  Tensor forward(const Tensor& x) override;

 private:
  std::vector<std::shared_ptr<Module>> layers_;
};

}  // namespace cvae
