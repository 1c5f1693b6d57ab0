// vae_loss_core.h: the per-element work of the fused VAE loss (vae_loss.cpp) over the
// reconstruction: the sigmoid cross-entropy terms and the logits' gradient, a vector of
// doubles at a time, compiled once per ISA. A vae_loss_<isa>.cpp defines CVAE_LOSS_NS
// and, in it, the vector width, then includes this file; nothing else may include it.
//
// Why: in double, glibc's scalar exp and log1p (and the loss around them) were 3.7% of
// a batch-100 training step's thread time. Here exp(-|l|) and log1p of it are evaluated
// in double with the vector width's lanes at once, by the same arithmetic on every ISA:
// plain IEEE multiplies, adds and divides, no FMA (built with -ffp-contract=off). Every
// element goes through the same code on every path, whatever the vector width: a short
// tail in a vector padded with zeros, and a lane outside what the vector code covers
// (x < -708, where exp leaves the normal range, and NaN) computed on 0 and then
// overwritten by std::exp / std::log1p: each element's bits depend on its inputs alone
// (a NaN's sign aside: it follows the operand order each ISA's code gives an add).
// The vector functions' error is an ulp or two of double, where glibc's is under one:
// both round to the same float but in about one case in 10^8.
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

// Lanes [0, n) of p as doubles (n <= L), zeros after: 0 is inside what the vector code covers.
template <typename T>
inline DV load_d(const T* p, int n) {
  if constexpr (sizeof(T) == sizeof(double)) {
    return n == L ? load<DV>(p) : load_part<DV>(p, n);
  } else {
    return __builtin_convertvector(n == L ? load<FV>(p) : load_part<FV>(p, n), DV);
  }
}

inline DV abs_v(DV x) { return (DV)((IV)x & INT64_MAX); }

// The scalar forms, for the lanes outside.
inline double ce_scalar(double l, double t) {
  return (l > 0.0 ? l : 0.0) - l * t + std::log1p(std::exp(-std::fabs(l)));
}
inline double sigmoid_scalar(double l) {
  const double e = std::exp(-std::fabs(l));
  const double r = 1.0 / (1.0 + e);
  return l >= 0.0 ? r : e * r;
}

// x = -|l| of a vector of logits, and which lanes lie outside (there: x = 0, computed and
// then overwritten).
inline DV safe_neg_abs(DV l, IV* outside) {
  const DV x = -abs_v(l);
  *outside = (x < kExpMin) | (x != x);
  return *outside ? DV{} : x;
}

template <typename T>
void ce_terms_t(const T* logits, const T* x, int64_t n, double* out) {
  for (int64_t j = 0; j < n; j += L) {
    const int len = n - j < L ? int(n - j) : L;
    const DV l = load_d(logits + j, len), t = load_d(x + j, len);
    IV outside;
    const DV a = safe_neg_abs(l, &outside);
    const DV ce = (l > 0.0 ? l : DV{}) - l * t + log1p_v(exp_v(a));
    if (len == L) store(out + j, ce);
    else store_part(out + j, ce, len);
    for (int i = 0; i < len; ++i)
      if (outside[i]) out[j + i] = ce_scalar(l[i], t[i]);
  }
}

template <typename T>
void sigmoid_grads_t(const T* logits, const T* x, int64_t n, double c, T* out) {
  for (int64_t j = 0; j < n; j += L) {
    const int len = n - j < L ? int(n - j) : L;
    const DV l = load_d(logits + j, len), t = load_d(x + j, len);
    IV outside;
    const DV e = exp_v(safe_neg_abs(l, &outside));
    const DV r = 1.0 / (1.0 + e);
    const DV g = c * ((l >= 0.0 ? r : e * r) - t);
    for (int i = 0; i < len; ++i)
      out[j + i] = static_cast<T>(outside[i] ? c * (sigmoid_scalar(l[i]) - t[i]) : g[i]);
  }
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
