// cvae.cpp: the tutorial's CVAE and its loss (compute_loss in the tutorial).
#include "models/cvae.h"

#include "engine/autograd.h"

namespace cvae {

CVAE::CVAE(int latent_dim, uint64_t init_seed) : latent_dim_(latent_dim) {
  Philox rng{init_seed, 0};
  encoder = register_module("encoder", std::make_shared<Sequential>());
  encoder->add("conv1", std::make_shared<Conv2d>(1, 32, 3, 2, Padding::Valid, rng))
      .add("relu1", std::make_shared<ReLU>())
      .add("conv2", std::make_shared<Conv2d>(32, 64, 3, 2, Padding::Valid, rng))
      .add("relu2", std::make_shared<ReLU>())
      .add("flatten", std::make_shared<Flatten>())
      .add("fc", std::make_shared<Linear>(64 * 6 * 6, 2 * latent_dim, rng));
  decoder = register_module("decoder", std::make_shared<Sequential>());
  decoder->add("fc", std::make_shared<Linear>(latent_dim, 7 * 7 * 32, rng))
      .add("relu0", std::make_shared<ReLU>())
      .add("reshape", std::make_shared<Reshape>(Shape{32, 7, 7}))
      .add("deconv1", std::make_shared<ConvTranspose2d>(32, 64, 3, 2, Padding::Same, rng))
      .add("relu1", std::make_shared<ReLU>())
      .add("deconv2", std::make_shared<ConvTranspose2d>(64, 32, 3, 2, Padding::Same, rng))
      .add("relu2", std::make_shared<ReLU>())
      .add("deconv3", std::make_shared<ConvTranspose2d>(32, 1, 3, 1, Padding::Same, rng));
}

std::pair<Tensor, Tensor> CVAE::encode(const Tensor& x) {
  std::vector<Tensor> parts = split(encoder->forward(x), {latent_dim_, latent_dim_});
  return {parts[0], parts[1]};
}

Tensor CVAE::decode(const Tensor& z, bool apply_sigmoid) {
  Tensor logits = decoder->forward(z);
  return apply_sigmoid ? sigmoid(logits) : logits;
}

Tensor CVAE::forward(const Tensor& x) { return decode(encode(x).first); }

Tensor cvae_loss(CVAE& model, const Tensor& x, const Tensor& eps, KlMode kl) {
  auto [mean, logvar] = model.encode(x);
  Tensor z = reparameterize(mean, logvar, eps);
  Tensor logits = model.decode(z);
  Tensor logpx_z = scale(sum(sigmoid_cross_entropy_with_logits(logits, x), {1, 2, 3}), -1.0);
  Tensor elbo = kl == KlMode::MonteCarlo
                    ? sub(add(logpx_z, log_normal_pdf(z, Tensor(), Tensor())),
                          log_normal_pdf(z, mean, logvar))
                    : sub(logpx_z, kl_normal(mean, logvar));
  return scale(cvae::mean(elbo), -1.0);
}

Tensor cvae_loss(CVAE& model, const Tensor& x, Philox& rng, KlMode kl) {
  Tensor eps = randn({x.size(0), model.latent_dim()}, rng, x.dtype());
  return cvae_loss(model, x, eps, kl);
}

}  // namespace cvae
