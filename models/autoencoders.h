// autoencoders.h: the seed's other models, beside the tutorial's CVAE: the
// plain autoencoders of TensorFlow's "Intro to Autoencoders" (MLP and conv)
// and the MLP VAE of the Keras examples. PyTorch-style names, Keras init.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "engine/nn.h"
#include "models/model.h"
#include "models/vae.h"

namespace cvae {

// A deterministic autoencoder: encode gives (code, undefined), the decoder
// gives logits, images are their sigmoid. loss(x, rng, kl) ignores rng and kl.
class Autoencoder : public Model {
 public:
  explicit Autoencoder(ReconLoss recon) : recon_(recon) {}
  bool is_vae() const override { return false; }
  virtual Tensor decode_logits(const Tensor& z) = 0;  // [N,L] -> [N,1,28,28]
  Tensor decode_images(const Tensor& z) override { return sigmoid(decode_logits(z)); }
  Tensor loss(const Tensor& x, Philox& rng, KlMode kl) override;
  ReconLoss recon() const { return recon_; }

 private:
  ReconLoss recon_;
};

// The reconstruction loss of logits against targets x in [0,1], a mean over
// ALL elements (batch and pixels), as Keras' losses reduce:
//   BCE: mean sigmoid_cross_entropy(logits, x)   (the stable form of Keras'
//        binary_crossentropy on y = sigmoid(logits))
//   L1:  mean |y - x|,  L2: mean (y - x)^2,  y = sigmoid(logits)
Tensor recon_loss(const Tensor& logits, const Tensor& x, ReconLoss recon);

// "ae-mlp": encoder.fc 784 -> L, relu; decoder.fc L -> 784, sigmoid. Input flattened.
class AeMlp : public Autoencoder {
 public:
  AeMlp(int latent_dim, ReconLoss recon, uint64_t init_seed);
  std::string kind() const override { return "ae-mlp"; }
  int latent_dim() const override { return latent_dim_; }
  std::pair<Tensor, Tensor> encode(const Tensor& x) override;
  Tensor decode_logits(const Tensor& z) override;
  std::shared_ptr<Sequential> encoder, decoder;

 private:
  int latent_dim_;
};

// "ae-conv": encoder conv1 1->16 k3 s2 same, relu, conv2 16->8 k3 s2 same,
// relu (code [8,7,7], flattened to 392); decoder deconv1 8->8 k3 s2 same, relu,
// deconv2 8->16 k3 s2 same, relu, conv 16->1 k3 s1 same, sigmoid. The code
// size is fixed by the architecture: latent_dim() is 392 whatever the config
// asked for; encode gives [N,392] and decode_images takes [N,392].
class AeConv : public Autoencoder {
 public:
  static constexpr int kCodeSize = 8 * 7 * 7;
  AeConv(ReconLoss recon, uint64_t init_seed);
  std::string kind() const override { return "ae-conv"; }
  int latent_dim() const override { return kCodeSize; }
  std::pair<Tensor, Tensor> encode(const Tensor& x) override;
  Tensor decode_logits(const Tensor& z) override;
  std::shared_ptr<Sequential> encoder, decoder;
};

// "vae-mlp": encoder.fc1 784 -> 512, relu, encoder.fc2 512 -> 2L ([mean | logvar]);
// decoder.fc1 L -> 512, relu, decoder.fc2 512 -> 784 logits, as [N,1,28,28].
class VaeMlp : public VAE {
 public:
  VaeMlp(int latent_dim, uint64_t init_seed);
  std::string kind() const override { return "vae-mlp"; }
  int latent_dim() const override { return latent_dim_; }
  std::pair<Tensor, Tensor> encode(const Tensor& x) override;
  Tensor decode_logits(const Tensor& z) override;
  std::shared_ptr<Sequential> encoder, decoder;

 private:
  int latent_dim_;
};

}  // namespace cvae
