// loss.cpp: CPU loss kernels of kernels/kernels.h: elementwise sigmoid
// cross-entropy, and the row-wise log-normal pdf and analytic KL on [N,D].
// Not here: the final mean over the batch (engine ops use sum_mid / scale).
// Row sums: every term is computed in double and summed in double, j in
// increasing order, then rounded once to T (float rows lose nothing to the sum).
#include <cmath>
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = int64_t{1} << 16;
constexpr double kLog2Pi = 1.8378770664093454835606594728112;  // log(2*pi)

}  // namespace

// l = max(x,0) - x*t + log1p(exp(-|x|))
template <typename T>
void sigmoid_ce_fwd(int64_t n, const T* logits, const T* targets, T* loss) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) {
    const T x = logits[i];
    loss[i] = (x > T(0) ? x : T(0)) - x * targets[i] + std::log1p(std::exp(-std::fabs(x)));
  }
}

// dlogits = dl * (sigmoid(x) - t);  dtargets = -dl * x   (either may be null)
template <typename T>
void sigmoid_ce_bwd(int64_t n, const T* logits, const T* targets, const T* dloss, T* dlogits,
                    T* dtargets) {
  if (dlogits) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
    for (int64_t i = 0; i < n; ++i) {
      const T x = logits[i];
      const T e = std::exp(-std::fabs(x));  // stable sigmoid, as sigmoid_fwd
      const T r = T(1) / (T(1) + e);
      const T sig = x >= T(0) ? r : e * r;
      dlogits[i] = dloss[i] * (sig - targets[i]);
    }
  }
  if (dtargets) {
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
    for (int64_t i = 0; i < n; ++i) dtargets[i] = -dloss[i] * logits[i];
  }
}

// out[i] = sum_j -0.5 * ((x-m)^2 * exp(-lv) + lv + log(2*pi))   (m, lv null -> 0)
template <typename T>
void log_normal_pdf_fwd(int N, int D, const T* x, const T* mean, const T* logvar, T* out) {
#pragma omp parallel for schedule(static) if (parallel_worth(static_cast<int64_t>(N) * D, kParallelMin))
  for (int i = 0; i < N; ++i) {
    const int64_t row = static_cast<int64_t>(i) * D;
    double s = 0;
    for (int j = 0; j < D; ++j) {
      const double d = static_cast<double>(x[row + j]) - (mean ? static_cast<double>(mean[row + j]) : 0.0);
      const double lv = logvar ? static_cast<double>(logvar[row + j]) : 0.0;
      s += -0.5 * (d * d * std::exp(-lv) + lv + kLog2Pi);
    }
    out[i] = static_cast<T>(s);
  }
}

// dx = -dout*(x-m)*exp(-lv);  dmean = -dx;  dlogvar = 0.5*dout*((x-m)^2*exp(-lv) - 1)
template <typename T>
void log_normal_pdf_bwd(int N, int D, const T* x, const T* mean, const T* logvar,
                        const T* dout, T* dx, T* dmean, T* dlogvar) {
#pragma omp parallel for schedule(static) if (parallel_worth(static_cast<int64_t>(N) * D, kParallelMin))
  for (int i = 0; i < N; ++i) {
    const int64_t row = static_cast<int64_t>(i) * D;
    const double g = static_cast<double>(dout[i]);
    for (int j = 0; j < D; ++j) {
      const int64_t k = row + j;
      const double d = static_cast<double>(x[k]) - (mean ? static_cast<double>(mean[k]) : 0.0);
      const double inv_var = logvar ? std::exp(-static_cast<double>(logvar[k])) : 1.0;
      const double gx = -g * d * inv_var;
      if (dx) dx[k] = static_cast<T>(gx);
      if (dmean) dmean[k] = static_cast<T>(-gx);
      if (dlogvar) dlogvar[k] = static_cast<T>(0.5 * g * (d * d * inv_var - 1.0));
    }
  }
}

// out[i] = -0.5 * sum_j (1 + lv - m^2 - exp(lv))
template <typename T>
void kl_normal_fwd(int N, int D, const T* mean, const T* logvar, T* out) {
#pragma omp parallel for schedule(static) if (parallel_worth(static_cast<int64_t>(N) * D, kParallelMin))
  for (int i = 0; i < N; ++i) {
    const int64_t row = static_cast<int64_t>(i) * D;
    double s = 0;
    for (int j = 0; j < D; ++j) {
      const double m = static_cast<double>(mean[row + j]);
      const double lv = static_cast<double>(logvar[row + j]);
      s += 1.0 + lv - m * m - std::exp(lv);
    }
    out[i] = static_cast<T>(-0.5 * s);
  }
}

// dmean = dout * m;  dlogvar = dout * 0.5 * (exp(lv) - 1)   (either may be null)
template <typename T>
void kl_normal_bwd(int N, int D, const T* mean, const T* logvar, const T* dout, T* dmean,
                   T* dlogvar) {
#pragma omp parallel for schedule(static) if (parallel_worth(static_cast<int64_t>(N) * D, kParallelMin))
  for (int i = 0; i < N; ++i) {
    const int64_t row = static_cast<int64_t>(i) * D;
    const double g = static_cast<double>(dout[i]);
    for (int j = 0; j < D; ++j) {
      const int64_t k = row + j;
      if (dmean) dmean[k] = static_cast<T>(g * static_cast<double>(mean[k]));
      if (dlogvar)
        dlogvar[k] = static_cast<T>(g * 0.5 * std::expm1(static_cast<double>(logvar[k])));
    }
  }
}

#define CVAE_INSTANTIATE(T)                                                                   \
  template void sigmoid_ce_fwd<T>(int64_t, const T*, const T*, T*);                          \
  template void sigmoid_ce_bwd<T>(int64_t, const T*, const T*, const T*, T*, T*);            \
  template void log_normal_pdf_fwd<T>(int, int, const T*, const T*, const T*, T*);           \
  template void log_normal_pdf_bwd<T>(int, int, const T*, const T*, const T*, const T*, T*,  \
                                      T*, T*);                                                \
  template void kl_normal_fwd<T>(int, int, const T*, const T*, T*);                          \
  template void kl_normal_bwd<T>(int, int, const T*, const T*, const T*, T*, T*);
CVAE_INSTANTIATE(float)
CVAE_INSTANTIATE(double)
#undef CVAE_INSTANTIATE

}  // namespace cvae::kernels::cpu
