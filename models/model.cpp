// model.cpp: the model factory (kind name -> model) and the names of the
// loss options (KL form, reconstruction loss) used on the command line.
#include "models/model.h"

#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "models/autoencoders.h"
#include "models/cvae.h"

namespace cvae {

KlMode parse_kl(const std::string& s) {
  if (s == "mc") return KlMode::MonteCarlo;
  if (s == "analytic") return KlMode::Analytic;
  throw std::invalid_argument("unknown KL form '" + s + "' (valid: mc, analytic)");
}

ReconLoss parse_recon(const std::string& s) {
  if (s == "bce") return ReconLoss::BCE;
  if (s == "l1") return ReconLoss::L1;
  if (s == "l2") return ReconLoss::L2;
  throw std::invalid_argument("unknown reconstruction loss '" + s + "' (valid: bce, l1, l2)");
}

const char* kl_name(KlMode k) { return k == KlMode::Analytic ? "analytic" : "mc"; }

const char* recon_name(ReconLoss r) {
  switch (r) {
    case ReconLoss::L1: return "l1";
    case ReconLoss::L2: return "l2";
    case ReconLoss::BCE: break;
  }
  return "bce";
}

Tensor Model::loss_backward(const Tensor& x, Philox& rng, KlMode kl) {
  Tensor l = loss(x, rng, kl);
  l.backward();
  return l.detach();
}

std::unique_ptr<Model> make_model(const ModelConfig& config, uint64_t init_seed) {
  const std::string& k = config.kind;
  bool known = k == "cvae" || k == "vae-mlp" || k == "ae-conv" || k == "ae-mlp";
  if (!known)
    throw std::invalid_argument("unknown model kind '" + k +
                                "' (valid: cvae, vae-mlp, ae-conv, ae-mlp)");
  // ae-conv's code size is fixed (392) but a nonsensical request is still an error.
  if (config.latent_dim < 1)
    throw std::invalid_argument("latent_dim must be >= 1, got " + std::to_string(config.latent_dim));
  if (k == "cvae") return std::make_unique<CVAE>(config.latent_dim, init_seed);
  if (k == "vae-mlp") return std::make_unique<VaeMlp>(config.latent_dim, init_seed);
  if (k == "ae-conv") return std::make_unique<AeConv>(config.recon, init_seed);
  return std::make_unique<AeMlp>(config.latent_dim, config.recon, init_seed);
}

}  // namespace cvae
