// vae.h: what every VAE here shares: a Gaussian encoder q(z|x) = N(mean,
// exp(logvar)), a Bernoulli decoder p(x|z) given by logits, the standard
// normal prior, the tutorial's loss, and the evaluation bounds (ELBO by Monte
// Carlo or with the analytic KL, and the importance-weighted bound).
#pragma once

#include "models/model.h"

namespace cvae {

class VAE : public Model {
 public:
  bool is_vae() const override { return true; }
  virtual Tensor decode_logits(const Tensor& z) = 0;  // [N,L] -> [N,1,28,28]
  Tensor decode_images(const Tensor& z) override { return sigmoid(decode_logits(z)); }
  Tensor loss(const Tensor& x, Philox& rng, KlMode kl) override;
  Tensor loss_backward(const Tensor& x, Philox& rng, KlMode kl) override;
};

// The negative ELBO averaged over the batch, the tutorial's compute_loss:
//   MonteCarlo: -mean(log p(x|z) + log p(z) - log q(z|x)), one z per image
//   Analytic:   -mean(log p(x|z) - KL(q(z|x) || p(z)))
// eps [N,L] is the reparameterisation noise.
Tensor vae_loss(VAE& model, const Tensor& x, const Tensor& eps, KlMode kl);

// vae_loss with its backward() done; returns the loss, detached. On the CPU a batch of at
// least 2 * kVaeChunkRows images goes as two chunks of rows (backward_in_chunks, one per
// thread: no barrier between the layers of a step, no layer split over threads); the loss
// is each chunk's mean weighted by its share of the rows. The chunks depend on the batch
// size alone, so the bits do not depend on the thread count; they do differ in the last
// places from one whole-batch backward(), whose sums over the batch run in another order.
constexpr int64_t kVaeChunkRows = 8;
Tensor vae_loss_backward(VAE& model, const Tensor& x, const Tensor& eps, KlMode kl);

// Evaluation, no tape: sums over the images of x (divide by the count for a mean).
struct BoundSums {
  double elbo_mc = 0;        // mean over k_mc single-sample ELBOs per image, summed
  double elbo_analytic = 0;  // mean log p(x|z) over the same k_mc samples - KL, summed
  double iwae = 0;           // log (1/k) sum_k p(x,z_k)/q(z_k|x), summed (0 when k_iwae == 0)
};
BoundSums vae_bounds(VAE& model, const Tensor& x, Philox& rng, int k_mc, int k_iwae);

}  // namespace cvae
