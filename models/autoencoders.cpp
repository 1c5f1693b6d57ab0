// autoencoders.cpp: the MLP and conv autoencoders ("Intro to Autoencoders")
// and the MLP VAE (Keras example): layers, encode/decode and the
// autoencoders' reconstruction losses.
#include "models/autoencoders.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace cvae {

namespace {

constexpr int kPixels = 28 * 28;

void check_latent(const char* kind, int latent_dim) {
  if (latent_dim < 1)
    throw std::invalid_argument(std::string(kind) + ": latent_dim must be >= 1, got " +
                                std::to_string(latent_dim));
}

}  // namespace

Tensor recon_loss(const Tensor& logits, const Tensor& x, ReconLoss recon) {
  // Keras' losses average over the last axis and then over the batch: with
  // equal-sized images that is the mean over every element (not the sum over
  // pixels that the VAEs' log p(x|z) uses).
  if (recon == ReconLoss::BCE) return mean(sigmoid_cross_entropy_with_logits(logits, x));
  Tensor d = sub(sigmoid(logits), x);
  if (recon == ReconLoss::L2) return mean(mul(d, d));
  // The engine has no abs op: |d| = relu(d) + relu(-d), exact, with gradient
  // sign(d) (0 at d == 0, where |d| has no derivative).
  return mean(add(relu(d), relu(scale(d, -1.0))));
}

Tensor Autoencoder::loss(const Tensor& x, Philox& /*rng*/, KlMode /*kl*/) {
  return recon_loss(decode_logits(encode(x).first), x, recon_);
}

// --- ae-mlp ---------------------------------------------------------------------

AeMlp::AeMlp(int latent_dim, ReconLoss recon, uint64_t init_seed)
    : Autoencoder(recon), latent_dim_(latent_dim) {
  check_latent("ae-mlp", latent_dim);
  Philox rng{init_seed, 0};
  encoder = register_module("encoder", std::make_shared<Sequential>());
  encoder->add("fc", std::make_shared<Linear>(kPixels, latent_dim, rng))
      .add("relu", std::make_shared<ReLU>());
  decoder = register_module("decoder", std::make_shared<Sequential>());
  decoder->add("fc", std::make_shared<Linear>(latent_dim, kPixels, rng))
      .add("reshape", std::make_shared<Reshape>(Shape{1, 28, 28}));
}

std::pair<Tensor, Tensor> AeMlp::encode(const Tensor& x) {
  return {encoder->forward(flatten(x)), Tensor()};
}

Tensor AeMlp::decode_logits(const Tensor& z) { return decoder->forward(z); }

// --- ae-conv ----------------------------------------------------------------------

AeConv::AeConv(ReconLoss recon, uint64_t init_seed) : Autoencoder(recon) {
  Philox rng{init_seed, 0};
  encoder = register_module("encoder", std::make_shared<Sequential>());
  encoder->add("conv1", std::make_shared<Conv2d>(1, 16, 3, 2, Padding::Same, rng))
      .add("relu1", std::make_shared<ReLU>())
      .add("conv2", std::make_shared<Conv2d>(16, 8, 3, 2, Padding::Same, rng))
      .add("relu2", std::make_shared<ReLU>())
      .add("flatten", std::make_shared<Flatten>());
  decoder = register_module("decoder", std::make_shared<Sequential>());
  decoder->add("reshape", std::make_shared<Reshape>(Shape{8, 7, 7}))
      .add("deconv1", std::make_shared<ConvTranspose2d>(8, 8, 3, 2, Padding::Same, rng))
      .add("relu1", std::make_shared<ReLU>())
      .add("deconv2", std::make_shared<ConvTranspose2d>(8, 16, 3, 2, Padding::Same, rng))
      .add("relu2", std::make_shared<ReLU>())
      .add("conv", std::make_shared<Conv2d>(16, 1, 3, 1, Padding::Same, rng));
}

std::pair<Tensor, Tensor> AeConv::encode(const Tensor& x) { return {encoder->forward(x), Tensor()}; }

Tensor AeConv::decode_logits(const Tensor& z) { return decoder->forward(z); }

// --- vae-mlp ----------------------------------------------------------------------

VaeMlp::VaeMlp(int latent_dim, uint64_t init_seed) : latent_dim_(latent_dim) {
  check_latent("vae-mlp", latent_dim);
  Philox rng{init_seed, 0};
  encoder = register_module("encoder", std::make_shared<Sequential>());
  encoder->add("fc1", std::make_shared<Linear>(kPixels, 512, rng))
      .add("relu1", std::make_shared<ReLU>())
      .add("fc2", std::make_shared<Linear>(512, 2 * latent_dim, rng));
  decoder = register_module("decoder", std::make_shared<Sequential>());
  decoder->add("fc1", std::make_shared<Linear>(latent_dim, 512, rng))
      .add("relu1", std::make_shared<ReLU>())
      .add("fc2", std::make_shared<Linear>(512, kPixels, rng))
      .add("reshape", std::make_shared<Reshape>(Shape{1, 28, 28}));
}

std::pair<Tensor, Tensor> VaeMlp::encode(const Tensor& x) {
  std::vector<Tensor> parts = split(encoder->forward(flatten(x)), {latent_dim_, latent_dim_});
  return {parts[0], parts[1]};
}

Tensor VaeMlp::decode_logits(const Tensor& z) { return decoder->forward(z); }

}  // namespace cvae
