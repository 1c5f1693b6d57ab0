// cvae.h: the convolutional VAE exactly as TensorFlow's tutorial builds it,
// with PyTorch-style parameter names (encoder.conv1.weight, ...). The
// encoder's dense output is [mean | logvar].
//   encoder: conv 1->32 k3 s2 valid, relu, conv 32->64 k3 s2 valid, relu,
//            flatten (2304), dense 2L
//   decoder: dense L->7*7*32, relu, reshape [32,7,7], deconv 32->64 k3 s2 same,
//            relu, deconv 64->32 k3 s2 same, relu, deconv 32->1 k3 s1 same (logits)
// Its loss and evaluation bounds are the shared VAE ones (models/vae.h).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "engine/nn.h"
#include "models/vae.h"

namespace cvae {

class CVAE : public VAE {
 public:
  CVAE(int latent_dim, uint64_t init_seed);
  std::string kind() const override { return "cvae"; }
  int latent_dim() const override { return latent_dim_; }
  // x [N,1,28,28] -> (mean, logvar), each [N,L]
  std::pair<Tensor, Tensor> encode(const Tensor& x) override;
  // z [N,L] -> logits [N,1,28,28]
  Tensor decode_logits(const Tensor& z) override;
  // z [N,L] -> logits [N,1,28,28], or probabilities when apply_sigmoid (the tutorial's decode)
  Tensor decode(const Tensor& z, bool apply_sigmoid = false);
  // forward (from Model) is reconstruct(x): the decoded mean as probabilities in [0,1].
  std::shared_ptr<Sequential> encoder, decoder;

 private:
  int latent_dim_;
};

// The tutorial's compute_loss for the CVAE: thin wrappers over vae_loss /
// VAE::loss (models/vae.h), kept for the golden and gradient tests.
Tensor cvae_loss(CVAE& model, const Tensor& x, const Tensor& eps, KlMode kl);
Tensor cvae_loss(CVAE& model, const Tensor& x, Philox& rng, KlMode kl);

}  // namespace cvae
