// vae_loss_core.h: the per-element work of the fused VAE loss (vae_loss.cpp) over the
// reconstruction: the sigmoid cross-entropy terms and the logits' gradient, a vector of
// doubles at a time, compiled once per ISA. A vae_loss_<isa>.cpp defines CVAE_LOSS_NS
// and, in it, the vector width, then includes this file; nothing else may include it.
//
// Why: in double, glibc's scalar exp and log1p (and their call overhead) were ~4% of a
// batch-100 training step. Here exp(-|l|) and log1p of it are evaluated in double with
// the vector width's lanes at once, by the same arithmetic on every ISA: plain IEEE
// multiplies, adds and divides, no FMA (these files build with -ffp-contract=off), so
// each lane's bits do not depend on the path. Their error is an ulp or two of double,
// where glibc's is under one: both round to the same float but in about one case in
// 10^8. Lanes outside what the vector code covers (x < -708, where exp leaves the normal
// range, and NaN) take std::exp / std::log1p.
#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/vae_loss_isa.h"

namespace cvae::kernels::cpu::CVAE_LOSS_NS {
namespace {

using DV = typename SimdVec<double, kVectorBytes>::V;
constexpr int L = SimdVec<double, kVectorBytes>::L;  // doubles per vector
typedef int64_t IV __attribute__((vector_size(kVectorBytes)));
typedef uint64_t UV __attribute__((vector_size(kVectorBytes)));
typedef float FV __attribute__((vector_size(kVectorBytes / 2)));  // L floats

// ln 2 in two parts (fdlibm's): the high part's last 21 bits are zero, so k * kLn2Hi is
// exact for the |k| < 1100 that occur here.
constexpr double kLn2Hi = 6.93147180369123816490e-01, kLn2Lo = 1.90821492927058770002e-10;
constexpr double kInvLn2 = 1.44269504088896338700e+00;
constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52: x + kRound rounds x to an integer
constexpr double kExpMin = -708.0;              // exp(x) normal for x >= this

constexpr double inv_factorial(int k) {
  double f = 1;
  for (int i = 2; i <= k; ++i) f *= i;
  return 1.0 / f;
}

// exp(x) for x in [kExpMin, 0]: x = k ln2 + r, |r| <= ln2 / 2, exp(r) by its Taylor series
// to r^13 (truncation below 1e-17 relative), times 2^k built in the exponent bits.
inline DV exp_v(DV x) {
  const DV t = x * kInvLn2 + kRound;  // k in the low bits of t's pattern
  const DV k = t - kRound;
  const DV r = (x - k * kLn2Hi) - k * kLn2Lo;
  DV p = DV{} + inv_factorial(13);
#pragma GCC unroll 13
  for (int i = 12; i >= 0; --i) p = p * r + inv_factorial(i);
  const UV scale = ((UV)t + 1023) << 52;  // 2^k (the high bits of t shift out)
  return p * (DV)scale;
}

// log1p(e) for e in (0, 1]: u = 1 + e rounded, log1p(e) = log(u) + (e - (u - 1)) / u (the
// rounding of u corrected to first order); log(u) = j ln2 + log(m) with u = 2^j m, m in
// [sqrt(1/2), sqrt(2)], and log(m) = 2 atanh(f), f = (m - 1) / (m + 1), by its series to
// f^21 (|f| <= 0.172: truncation below 1e-18 relative).
inline DV log1p_v(DV e) {
  const DV u = e + 1.0;
  const DV big = u > 1.4142135623730951 ? DV{} + 1.0 : DV{};  // j: 0 or 1
  const DV m = big > 0.0 ? u * 0.5 : u;
  const DV f = (m - 1.0) / (m + 1.0);
  const DV s = f * f;
  DV q = DV{} + 2.0 / 21;
#pragma GCC unroll 9
  for (int n = 9; n >= 1; --n) q = q * s + 2.0 / (2 * n + 1);
  const DV log_m = f * 2.0 + f * (s * q);
  const DV log_u = big * kLn2Hi + (log_m + big * kLn2Lo);
  return log_u + (e - (u - 1.0)) / u;
}

// Whether a lane of x lies where exp_v does not go (those take the scalar forms).
inline bool any_outside(DV x) {
  const IV out = (x < kExpMin) | (x != x);
  bool any = false;
  for (int i = 0; i < L; ++i) any |= out[i] != 0;
  return any;
}

template <typename T>
inline DV load_d(const T* p) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return load<DV>(p);
  } else {
    return __builtin_convertvector(load<FV>(p), DV);
  }
}

inline DV abs_v(DV x) { return (DV)((IV)x & INT64_MAX); }

// The scalar forms (vae_loss.cpp had them): the lanes the vector code leaves, and the tails.
inline double ce_scalar(double l, double t) {
  return (l > 0.0 ? l : 0.0) - l * t + std::log1p(std::exp(-std::fabs(l)));
}
inline double sigmoid_scalar(double l) {
  const double e = std::exp(-std::fabs(l));
  const double r = 1.0 / (1.0 + e);
  return l >= 0.0 ? r : e * r;
}

template <typename T>
void ce_terms_t(const T* logits, const T* x, int64_t n, double* out) {
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const DV l = load_d(logits + j), t = load_d(x + j);
    const DV a = -abs_v(l);
    if (any_outside(a)) {
      for (int i = 0; i < L; ++i) out[j + i] = ce_scalar(l[i], t[i]);
      continue;
    }
    const DV ce = (l > 0.0 ? l : DV{}) - l * t + log1p_v(exp_v(a));
    store(out + j, ce);
  }
  for (; j < n; ++j) out[j] = ce_scalar(double(logits[j]), double(x[j]));
}

template <typename T>
void sigmoid_grads_t(const T* logits, const T* x, int64_t n, double c, T* out) {
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const DV l = load_d(logits + j), t = load_d(x + j);
    const DV a = -abs_v(l);
    DV sig;
    if (any_outside(a)) {
      for (int i = 0; i < L; ++i) sig[i] = sigmoid_scalar(l[i]);
    } else {
      const DV e = exp_v(a);
      const DV r = 1.0 / (1.0 + e);
      sig = l >= 0.0 ? r : e * r;
    }
    const DV g = c * (sig - t);
    for (int i = 0; i < L; ++i) out[j + i] = static_cast<T>(g[i]);
  }
  for (; j < n; ++j) out[j] = static_cast<T>(c * (sigmoid_scalar(double(logits[j])) - double(x[j])));
}

}  // namespace

void ce_terms(const float* logits, const float* x, int64_t n, double* out) {
  ce_terms_t(logits, x, n, out);
}
void ce_terms(const double* logits, const double* x, int64_t n, double* out) {
  ce_terms_t(logits, x, n, out);
}
void sigmoid_grads(const float* logits, const float* x, int64_t n, double c, float* out) {
  sigmoid_grads_t(logits, x, n, c, out);
}
void sigmoid_grads(const double* logits, const double* x, int64_t n, double c, double* out) {
  sigmoid_grads_t(logits, x, n, c, out);
}

}  // namespace cvae::kernels::cpu::CVAE_LOSS_NS
