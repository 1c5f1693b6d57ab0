// vae_loss.cpp: the CPU fused VAE loss of kernels/kernels.h (vae_loss_fwd /
// vae_loss_bwd): sigmoid cross-entropy + log-normal pdfs (MC) or analytic KL,
// and the batch mean, in one pass. Not here: drawing z (the caller's reparameterization).
// Precision and order (the CUDA twin in kernels/cuda/loss.cu follows them): every
// term is computed in double from the T inputs; a row's ELBO is one double sum
// (CE terms j = 0..D-1, then latent terms j = 0..L-1), rounded once to T into
// row_elbo; the loss sums those rounded row_elbo in double, i = 0..N-1. The reconstruction's
// terms and gradient are vector passes (vae_loss_core.h), with their own exp and log1p.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vae_loss_isa.h"
#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = int64_t{1} << 15;
constexpr int64_t kBlock = 256;  // CE terms computed at once (a stack buffer), then summed

// The per-element passes of the path in use (vae_loss_isa.h), as conv_thin.cpp picks its
// kernels: the same bits on every path (VaeLoss.EveryCodePathGivesTheSameBits; a NaN
// result may differ in sign).
template <typename T>
struct Passes {
  void (*ce_terms)(const T* logits, const T* x, int64_t n, double* out);
  void (*sigmoid_grads)(const T* logits, const T* x, int64_t n, double c, T* out);
};

template <typename T>
Passes<T> passes() {
  switch (cpu_isa()) {
    case CpuIsa::Avx512: return {avx512::ce_terms, avx512::sigmoid_grads};
    case CpuIsa::Avx2: return {avx2::ce_terms, avx2::sigmoid_grads};
    case CpuIsa::Generic: break;
  }
  return {generic::ce_terms, generic::sigmoid_grads};
}

}  // namespace

// MC:       elbo[i] = -sum_j CE + sum_j -0.5 (z^2 - (z-m)^2 e^-lv - lv)   (log 2pi cancels)
// analytic: elbo[i] = -sum_j CE + 0.5 sum_j (1 + lv - m^2 - e^lv)
// loss = -(1/N) sum_i elbo[i]
template <typename T>
void vae_loss_fwd(const VaeLossShape& s, const T* logits, const T* x, const T* z, const T* mean,
                  const T* logvar, T* loss, T* row_elbo) {
  const int N = s.N, D = s.D, L = s.L;
  const auto ce_terms = passes<T>().ce_terms;
#pragma omp parallel for schedule(static) if (parallel_worth(static_cast<int64_t>(N) * (D + L), kParallelMin))
  for (int i = 0; i < N; ++i) {
    const int64_t rx = static_cast<int64_t>(i) * D;
    const int64_t rz = static_cast<int64_t>(i) * L;
    double acc = 0;
    for (int j0 = 0; j0 < D; j0 += kBlock) {  // the terms in blocks, summed in j order
      double ce[kBlock];
      const int n = std::min<int>(kBlock, D - j0);
      ce_terms(logits + rx + j0, x + rx + j0, n, ce);
      for (int j = 0; j < n; ++j) acc -= ce[j];
    }
    for (int j = 0; j < L; ++j) {
      const double m = static_cast<double>(mean[rz + j]);
      const double lv = static_cast<double>(logvar[rz + j]);
      if (s.analytic) {
        acc += 0.5 * (1.0 + lv - m * m - std::exp(lv));
      } else {
        const double zz = static_cast<double>(z[rz + j]);
        const double d = zz - m;
        acc += -0.5 * (zz * zz - d * d * std::exp(-lv) - lv);
      }
    }
    row_elbo[i] = static_cast<T>(acc);
  }
  double total = 0;  // serial, row order: the mean never depends on the thread count
  for (int i = 0; i < N; ++i) total += static_cast<double>(row_elbo[i]);
  loss[0] = static_cast<T>(N > 0 ? -total / N : 0.0);
}

// g = dloss[0], c = g/N:
//   dlogits = c (sigmoid(l) - x)
//   MC:       dz = c (z - (z-m) e^-lv),  dm = c (z-m) e^-lv,  dlv = -c/2 (1 - (z-m)^2 e^-lv)
//   analytic: dz = 0,  dm = c m,  dlv = c/2 (e^lv - 1)
// Every gradient is overwritten; a null gradient pointer is skipped.
template <typename T>
void vae_loss_bwd(const VaeLossShape& s, const T* logits, const T* x, const T* z, const T* mean,
                  const T* logvar, const T* dloss, T* dlogits, T* dz, T* dmean, T* dlogvar) {
  const int N = s.N;
  if (N <= 0) return;
  const double c = static_cast<double>(dloss[0]) / N;
  const int64_t nx = static_cast<int64_t>(N) * s.D;
  const int64_t nz = static_cast<int64_t>(N) * s.L;
  if (dlogits) {
    const auto sigmoid_grads = passes<T>().sigmoid_grads;
    const int64_t blocks = (nx + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (parallel_worth(nx, kParallelMin))
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k = b * kBlock;
      sigmoid_grads(logits + k, x + k, std::min(kBlock, nx - k), c, dlogits + k);
    }
  }
  for (int64_t k = 0; k < nz; ++k) {
    const double m = static_cast<double>(mean[k]);
    const double lv = static_cast<double>(logvar[k]);
    if (s.analytic) {
      if (dz) dz[k] = T(0);
      if (dmean) dmean[k] = static_cast<T>(c * m);
      if (dlogvar) dlogvar[k] = static_cast<T>(0.5 * c * std::expm1(lv));
    } else {
      const double zz = static_cast<double>(z[k]);
      const double d = zz - m;
      const double w = d * std::exp(-lv);  // (z-m) e^-lv
      if (dz) dz[k] = static_cast<T>(c * (zz - w));
      if (dmean) dmean[k] = static_cast<T>(c * w);
      if (dlogvar) dlogvar[k] = static_cast<T>(-0.5 * c * (1.0 - d * w));
    }
  }
}

#define CVAE_INSTANTIATE(T)                                                                      \
  template void vae_loss_fwd<T>(const VaeLossShape&, const T*, const T*, const T*, const T*,    \
                                const T*, T*, T*);                                              \
  template void vae_loss_bwd<T>(const VaeLossShape&, const T*, const T*, const T*, const T*,    \
                                const T*, const T*, T*, T*, T*, T*);
CVAE_INSTANTIATE(float)
CVAE_INSTANTIATE(double)
#undef CVAE_INSTANTIATE

}  // namespace cvae::kernels::cpu
