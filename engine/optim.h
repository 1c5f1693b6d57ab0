// optim.h: Adam and SGD over named parameters. Updates run outside the tape.
// Adam uses PyTorch's epsilon form, p -= lr * m_hat / (sqrt(v_hat) + eps),
// with Keras' default eps = 1e-7 (the tutorial's optimizer); pass 1e-8 to
// match torch.optim.Adam's default.
#pragma once

#include <cstdint>
#include <string>

#include "engine/nn.h"

namespace cvae {

class Optimizer {
 public:
  explicit Optimizer(NamedTensors params) : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  // Sets every gradient to zero in place (see optim.cpp for why not to none).
  void zero_grad();
  const NamedTensors& params() const { return params_; }

 protected:
  NamedTensors params_;
};

struct AdamOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-7;
};

class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, AdamOptions opt = {});
  void step() override;  // parameters without a gradient are skipped
  int64_t steps() const { return step_; }
  void set_steps(int64_t s);
  // The host's count for a captured step (the device counts itself): a capture takes no
  // step (uncount_capture), each replay one (count_replay).
  void count_replay() { ++step_; }
  void uncount_capture() { --step_; }
  // First and second moments named "<param>.exp_avg" / "<param>.exp_avg_sq".
  NamedTensors state() const;
  const AdamOptions& options() const { return opt_; }

 private:
  void step_cuda();
  AdamOptions opt_;
  int64_t step_ = 0;  // counted on the host too, for checkpoints (no read-back)
  std::vector<Tensor> m_, v_;
  // GPU: the pointer table of the single-launch update, the count of steps taken and
  // the learning rate, all read on the device (the launch advances the count).
  std::vector<char> table_host_;  // what table_dev_ holds (also the upload's source)
  int64_t step_seed_ = 0;          // the upload's source for device_step_
  double lr_uploaded_ = 0;         // the upload's source for device_lr_
  std::shared_ptr<Storage> table_dev_, device_step_, device_lr_;
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, double lr) : Optimizer(std::move(params)), lr_(lr) {}
  void step() override;

 private:
  double lr_;
};

}  // namespace cvae
