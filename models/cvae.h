// cvae.h: the convolutional VAE exactly as TensorFlow's tutorial builds it,
// with PyTorch-style parameter names (encoder.conv1.weight, ...). The
// encoder's dense output is [mean | logvar].
//   encoder: conv 1->32 k3 s2 valid, relu, conv 32->64 k3 s2 valid, relu,
//            flatten (2304), dense 2L
//   decoder: dense L->7*7*32, relu, reshape [32,7,7], deconv 32->64 k3 s2 same,
//            relu, deconv 64->32 k3 s2 same, relu, deconv 32->1 k3 s1 same (logits)
#pragma once

#include <memory>
#include <utility>

#include "engine/nn.h"

namespace cvae {

class CVAE : public Module {
 public:
  CVAE(int latent_dim, uint64_t init_seed);
  // x [N,1,28,28] -> (mean, logvar), each [N,L]
  std::pair<Tensor, Tensor> encode(const Tensor& x);
  // z [N,L] -> logits [N,1,28,28], or probabilities when apply_sigmoid
  Tensor decode(const Tensor& z, bool apply_sigmoid = false);
  Tensor forward(const Tensor& x) override;  // the mean's reconstruction logits
  int latent_dim() const { return latent_dim_; }
  std::shared_ptr<Sequential> encoder, decoder;

 private:
  int latent_dim_;
};

enum class KlMode { MonteCarlo, Analytic };

// The negative ELBO averaged over the batch, the tutorial's compute_loss:
//   MonteCarlo: -mean(log p(x|z) + log p(z) - log q(z|x)), one z per image
//   Analytic:   -mean(log p(x|z) - KL(q(z|x) || p(z)))
// eps [N,L] is the reparameterisation noise.
Tensor cvae_loss(CVAE& model, const Tensor& x, const Tensor& eps, KlMode kl);
Tensor cvae_loss(CVAE& model, const Tensor& x, Philox& rng, KlMode kl);

}  // namespace cvae
