// cvae.cpp: the tutorial's CVAE (layers, encode, decode). Its loss is the
// shared VAE loss in vae.cpp; cvae_loss stays as a thin wrapper.
#include "models/cvae.h"

#include <stdexcept>

namespace cvae {

CVAE::CVAE(int latent_dim, uint64_t init_seed) : latent_dim_(latent_dim) {
  if (latent_dim < 1) throw std::invalid_argument("CVAE: latent_dim must be >= 1");
  Philox rng{init_seed, 0};
  // Each ReLU rides in its layer's bias pass (bias_add with relu): one pass less.
  const bool relu = true;
  encoder = register_module("encoder", std::make_shared<Sequential>());
  encoder->add("conv1", std::make_shared<Conv2d>(1, 32, 3, 2, Padding::Valid, rng, relu))
      .add("conv2", std::make_shared<Conv2d>(32, 64, 3, 2, Padding::Valid, rng, relu))
      .add("flatten", std::make_shared<Flatten>())
      .add("fc", std::make_shared<Linear>(64 * 6 * 6, 2 * latent_dim, rng));
  decoder = register_module("decoder", std::make_shared<Sequential>());
  decoder->add("fc", std::make_shared<Linear>(latent_dim, 7 * 7 * 32, rng, relu))
      .add("reshape", std::make_shared<Reshape>(Shape{32, 7, 7}))
      .add("deconv1", std::make_shared<ConvTranspose2d>(32, 64, 3, 2, Padding::Same, rng, relu))
      .add("deconv2", std::make_shared<ConvTranspose2d>(64, 32, 3, 2, Padding::Same, rng, relu))
      .add("deconv3", std::make_shared<ConvTranspose2d>(32, 1, 3, 1, Padding::Same, rng));
}

std::pair<Tensor, Tensor> CVAE::encode(const Tensor& x) {
  std::vector<Tensor> parts = split(encoder->forward(x), {latent_dim_, latent_dim_});
  return {parts[0], parts[1]};
}

Tensor CVAE::decode_logits(const Tensor& z) { return decoder->forward(z); }

Tensor CVAE::decode(const Tensor& z, bool apply_sigmoid) {
  Tensor logits = decode_logits(z);
  return apply_sigmoid ? sigmoid(logits) : logits;
}

Tensor cvae_loss(CVAE& model, const Tensor& x, const Tensor& eps, KlMode kl) {
  return vae_loss(model, x, eps, kl);
}

Tensor cvae_loss(CVAE& model, const Tensor& x, Philox& rng, KlMode kl) {
  return model.loss(x, rng, kl);
}

}  // namespace cvae
