// vae_loss_isa.h (kernels/cpu internal): the per-element passes of the fused VAE loss,
// compiled once per ISA (vae_loss_core.h, vae_loss_<isa>.cpp); vae_loss.cpp picks one by
// cpu_isa(). Declarations only (see gemm_views.h on why).
#pragma once

#include <cstdint>

namespace cvae::kernels::cpu {

// out[j] = max(l, 0) - l t + log1p(exp(-|l|)) in double (l = logits[j], t = x[j]);
// and out[j] = T(c (sigmoid(l) - t)), the logits' gradient.
#define CVAE_LOSS_DECLARE(ns)                                                              \
  namespace ns {                                                                           \
  void ce_terms(const float* logits, const float* x, int64_t n, double* out);              \
  void ce_terms(const double* logits, const double* x, int64_t n, double* out);            \
  void sigmoid_grads(const float* logits, const float* x, int64_t n, double c, float* out); \
  void sigmoid_grads(const double* logits, const double* x, int64_t n, double c, double* out); \
  }
CVAE_LOSS_DECLARE(generic)
CVAE_LOSS_DECLARE(avx2)
CVAE_LOSS_DECLARE(avx512)
#undef CVAE_LOSS_DECLARE

}  // namespace cvae::kernels::cpu
