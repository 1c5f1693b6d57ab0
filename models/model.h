// model.h: what the `cvae` program needs of a model, whatever its kind: a
// training loss, an encoder, and a decoder to images. Models take and give
// images as [N,1,28,28] float32 in [0,1].
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "engine/nn.h"

namespace cvae {

enum class KlMode { MonteCarlo, Analytic };
enum class ReconLoss { BCE, L1, L2 };  // for the plain autoencoders

struct ModelConfig {
  std::string kind = "cvae";  // cvae | vae-mlp | ae-conv | ae-mlp
  int latent_dim = 2;
  ReconLoss recon = ReconLoss::BCE;
};

// Throws std::invalid_argument on an unknown name.
KlMode parse_kl(const std::string& s);            // "mc" | "analytic"
ReconLoss parse_recon(const std::string& s);      // "bce" | "l1" | "l2"
const char* kl_name(KlMode k);
const char* recon_name(ReconLoss r);

class Model : public Module {
 public:
  virtual std::string kind() const = 0;
  virtual bool is_vae() const = 0;
  // The latent size of encode(); for ae-conv the flattened feature map.
  virtual int latent_dim() const = 0;
  // The scalar training objective for a batch x (the negative ELBO for VAEs,
  // the reconstruction loss for autoencoders), averaged over the batch.
  virtual Tensor loss(const Tensor& x, Philox& rng, KlMode kl) = 0;
  // loss() with its backward() done (the gradients accumulated into the parameters); the
  // loss returned detached. A VAE on the CPU splits the batch in two (vae.h).
  virtual Tensor loss_backward(const Tensor& x, Philox& rng, KlMode kl);
  // (mean, logvar) for VAEs; (code, undefined) for autoencoders. [N,L] each.
  virtual std::pair<Tensor, Tensor> encode(const Tensor& x) = 0;
  // Images in [0,1], [N,1,28,28], from codes [N,L].
  virtual Tensor decode_images(const Tensor& z) = 0;
  // The model's reconstruction of x (decodes the mean for VAEs).
  Tensor reconstruct(const Tensor& x) { return decode_images(encode(x).first); }
  Tensor forward(const Tensor& x) override { return reconstruct(x); }
};

// Builds a model of the configured kind, initialised from init_seed.
std::unique_ptr<Model> make_model(const ModelConfig& config, uint64_t init_seed);

}  // namespace cvae
