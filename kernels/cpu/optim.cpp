// optim.cpp: CPU optimizer steps of kernels/kernels.h, one parameter tensor per
// call, in place: Adam (PyTorch's epsilon form) and plain SGD. Not here: the
// step counter, parameter lists, weight decay, gradient clipping (engine/).
#include <cmath>
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

constexpr int64_t kParallelMin = int64_t{1} << 16;

}  // namespace

// m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
// p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Same order of operations as torch.optim.Adam (single-tensor, non-fused):
// denom = sqrt(v)/sqrt(bc2) + eps, p += -step_size * (m/denom); the bias
// corrections and step size are computed in double, then used as T.
template <typename T>
void adam_step(int64_t n, T* p, const T* g, T* m, T* v, double lr, double beta1, double beta2,
               double eps, int64_t step) {
  const double t = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(beta1, t);
  const double bc2 = 1.0 - std::pow(beta2, t);
  const T step_size = static_cast<T>(lr / bc1);
  const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
  const T b1 = static_cast<T>(beta1), b2 = static_cast<T>(beta2);
  const T c1 = static_cast<T>(1.0 - beta1), c2 = static_cast<T>(1.0 - beta2);
  const T e = static_cast<T>(eps);
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = b1 * m[i] + c1 * gi;
    const T vi = b2 * v[i] + c2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    const T denom = std::sqrt(vi) / bc2_sqrt + e;
    p[i] -= step_size * (mi / denom);
  }
}

// p -= lr * g
template <typename T>
void sgd_step(int64_t n, T* p, const T* g, double lr) {
  const T a = static_cast<T>(lr);
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t i = 0; i < n; ++i) p[i] -= a * g[i];
}

template void adam_step<float>(int64_t, float*, const float*, float*, float*, double, double,
                               double, double, int64_t);
template void adam_step<double>(int64_t, double*, const double*, double*, double*, double,
                                double, double, double, int64_t);
template void sgd_step<float>(int64_t, float*, const float*, double);
template void sgd_step<double>(int64_t, double*, const double*, double);

}  // namespace cvae::kernels::cpu
