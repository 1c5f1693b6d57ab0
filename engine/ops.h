// ops.h: differentiable operations, free functions over Tensors. Each picks
// the kernel for the tensor's device and dtype once per call and records its
// backward on the tape (autograd.h). float32 for real work, float64 for
// gradient checks; all inputs of one op share dtype and device.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace cvae {

enum class Padding { Valid, Same };  // TensorFlow's padding modes

// --- layers -------------------------------------------------------------------
// x [N,C,H,W], w [K,C,R,S] (PyTorch Conv2d layout) -> [N,K,P,Q]. No bias.
Tensor conv2d(const Tensor& x, const Tensor& w, int stride, Padding padding);
// TF Conv2DTranspose: x [N,Cin,H,W], w [Cin,Cout,R,S] (PyTorch ConvTranspose2d
// layout). `Same` gives [N,Cout,H*stride,W*stride] (the odd padding row of the
// forward conv at the bottom/right, as TF); `Valid` gives (H-1)*stride+R.
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, int stride, Padding padding);
// x [N,in], w [out,in] (PyTorch Linear layout) -> x w^T, [N,out]. No bias.
Tensor linear(const Tensor& x, const Tensor& w);
// x [N,C,...] + b[C], broadcast over the batch and the trailing dims; with
// relu, max(. , 0) in the same pass (the fused epilogue of a layer + ReLU).
Tensor bias_add(const Tensor& x, const Tensor& b, bool relu = false);
// Whole layers, act(op(x, w) + b) in one op: the bias and ReLU ride in the conv's or
// GEMM's epilogue on the CPU (no extra pass), and the backward takes one fused pass for
// the ReLU mask and the bias gradient. b may be undefined (no bias). Bit for bit the
// results of bias_add(op(x, w), b, relu) and its backward.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, Padding padding,
              bool relu);
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride,
                        Padding padding, bool relu);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, bool relu);

// --- elementwise ---------------------------------------------------------------
Tensor relu(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor add(const Tensor& a, const Tensor& b);  // same shapes
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double alpha);   // alpha * x

// --- reductions and shape ------------------------------------------------------
// Sum / mean over the given axes (negative counts from the end; any order).
Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdim = false);
Tensor sum(const Tensor& x);   // all elements -> shape []
Tensor mean(const Tensor& x);  // all elements -> shape []
// Same elements, new shape (one -1 allowed). Shares storage with x.
Tensor reshape(const Tensor& x, Shape shape);
Tensor flatten(const Tensor& x);  // [N, ...] -> [N, rest]
// Splits along dim 1 into pieces of the given sizes (they must add up).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes);

// --- losses and the VAE's densities ---------------------------------------------
// Elementwise max(x,0) - x*t + log1p(exp(-|x|)), the stable form. Shape of x.
Tensor sigmoid_cross_entropy_with_logits(const Tensor& logits, const Tensor& labels);
// Per row of [N, ...]: sum -0.5*((x-m)^2*exp(-lv) + lv + log(2*pi)) -> [N].
// An undefined mean / logvar means 0 (the standard normal).
Tensor log_normal_pdf(const Tensor& x, const Tensor& mean, const Tensor& logvar);
// Per row: KL(N(m, exp(lv)) || N(0, I)) = -0.5*sum(1 + lv - m^2 - exp(lv)) -> [N].
Tensor kl_normal(const Tensor& mean, const Tensor& logvar);

// The tutorial's whole loss in one fused op (kernels.h: vae_loss_fwd/bwd):
// logits, x [N,...]; z, mean, logvar [N,L]; -mean over rows of
// log p(x|z) + log p(z) - log q(z|x) (Monte Carlo) or log p(x|z) - KL
// (analytic). Gradients flow to logits, z, mean and logvar (not x).
Tensor vae_elbo_loss(const Tensor& logits, const Tensor& x, const Tensor& z, const Tensor& mean,
                     const Tensor& logvar, bool analytic);

// --- randomness -------------------------------------------------------------------
// A Philox4x32-10 stream: (seed, offset). Each draw of n numbers uses the
// blocks [offset, offset + ceil(n/4)) and advances offset past them, so a
// stream is reproducible on any device from its two integers.
struct Philox {
  uint64_t seed = 0;
  uint64_t offset = 0;
};
Tensor randn(const Shape& shape, Philox& rng, DType dtype = DType::F32,
             Device device = Device::CPU);
// A Philox stream whose offset lives on the GPU: each draw reads it there and advances it
// as randn does, by ceil(numel / 4) (a captured step draws new numbers at every replay;
// the host counts the offset itself, nothing is read back). set_offset uploads.
class DevicePhilox {
 public:
  explicit DevicePhilox(uint64_t seed) : seed_(seed) {}
  void set_offset(uint64_t offset);
  Tensor randn(const Shape& shape);  // float32 on the GPU, bitwise randn at the device's offset
 private:
  uint64_t seed_, upload_ = 0;
  std::shared_ptr<Storage> device_offset_;
};
// Per-step scalars (the training loss) logged on the GPU into a ring that the host reads
// now and then: append queues one tiny kernel (capturable), read_unread reads back (one
// synchronisation) the values appended since the last read, oldest first (at most capacity).
class DeviceScalarLog {
 public:
  explicit DeviceScalarLog(int64_t capacity);
  void append(const Tensor& value);
  std::vector<float> read_unread();
  int64_t unread() const { return appended_ - read_; }
  // The host's count of appends, for a captured append: a capture queues nothing
  // (uncount_capture undoes its count), each replay appends once (count_replay).
  void count_replay() { ++appended_; }
  void uncount_capture() { --appended_; }

 private:
  int64_t capacity_, appended_ = 0, read_ = 0, zero_ = 0;
  Tensor ring_;
  std::shared_ptr<Storage> count_;
};
Tensor rand_uniform(const Shape& shape, double lo, double hi, Philox& rng,
                    DType dtype = DType::F32, Device device = Device::CPU);
// z = eps * exp(logvar / 2) + mean (composite: gradients flow to mean, logvar).
Tensor reparameterize(const Tensor& mean, const Tensor& logvar, const Tensor& eps);
Tensor reparameterize(const Tensor& mean, const Tensor& logvar, Philox& rng);

}  // namespace cvae
