// philox.h: Philox4x32-10 and the exact (seed, offset, index) -> number mapping
// shared by the CPU and CUDA random kernels, usable from host C++ and CUDA.
// Not a stateful engine: callers own their (seed, offset) bookkeeping.
//
// Generator: Philox4x32-R (Salmon, Moraes, Dror, Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC'11), Random123 constants: multipliers
// 0xD2511F53 and 0xCD9E8D57, Weyl key increments 0x9E3779B9 and 0xBB67AE85,
// R = 10 rounds for everything the engine draws.
//
// Mapping used by normal_fill / uniform_fill (kernels/cpu/random.cpp and
// kernels/cuda/random.cu), for element i of a fill of n elements:
//   block   b   = offset + i/4                   (uint64, wraps modulo 2^64)
//   counter     = {lo32(b), hi32(b), 0, 0}
//   key         = {lo32(seed), hi32(seed)}
//   r[0..3]     = philox4x32_10(counter, key);   lane = i % 4
//   uniform  u  = (r[lane] + 0.5) * 2^-32, in double: exact, in (0,1), never 0 or 1
//   uniform_fill: y = fma(hi - lo, u, lo) in double, rounded to T; a value that
//                 rounds up to hi is replaced by nextafter(hi, lo), so y in [lo, hi)
//                 (whenever lo < hi).
//   normal_fill:  Box-Muller in double; lanes (0,1) form one pair, lanes (2,3)
//                 the other. For a pair (u0, u1):
//                   rad = sqrt(-2 * log(u0)), theta = 2*pi*u1
//                   y[lane 0|2] = rad * cos(theta), y[lane 1|3] = rad * sin(theta)
//                 computed in double, then rounded to T (so the float fill equals
//                 the double fill rounded to float).
//
// Bit-identical results on CPU and GPU. glibc's and CUDA's libm differ in the
// last ulp, so log/sin/cos here are our own (philox_log, philox_sincos_2pi),
// built only from +, -, *, /, sqrt (correctly rounded IEEE double on both
// devices), exact bit manipulation, and explicit fma() calls. Every
// multiply-add is written as an explicit fma(), so no a*b+c pattern is left
// for the compiler to contract differently; still, the translation units that
// call these functions are compiled without FP contraction (CMake sets
// -ffp-contract=off for kernels/cpu/random.cpp and --fmad=false for
// kernels/cuda/*.cu): call the transforms only from those files (tests may
// call them to check accuracy, not to define results). Accuracy: about 1 ulp
// (~2e-16 relative) for log, ~2e-16 absolute for sin/cos.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define CVAE_HD __host__ __device__
#else
#define CVAE_HD
#endif

namespace cvae::kernels::philox {

struct Ctr4 {
  uint32_t v[4];
};

constexpr uint32_t kM0 = 0xD2511F53u;  // multiplier of counter word 0
constexpr uint32_t kM1 = 0xCD9E8D57u;  // multiplier of counter word 2
constexpr uint32_t kW0 = 0x9E3779B9u;  // Weyl increment of key word 0 (golden ratio)
constexpr uint32_t kW1 = 0xBB67AE85u;  // Weyl increment of key word 1 (sqrt(3)-1)

// One Philox4x32 round (Random123's philox4x32round):
//   (hi0,lo0) = M0*c0, (hi1,lo1) = M1*c2
//   out = {hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0}
CVAE_HD inline Ctr4 philox4x32_round(Ctr4 c, uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kM0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kM1) * c.v[2];
  Ctr4 out;
  out.v[0] = static_cast<uint32_t>(p1 >> 32) ^ c.v[1] ^ k0;
  out.v[1] = static_cast<uint32_t>(p1);
  out.v[2] = static_cast<uint32_t>(p0 >> 32) ^ c.v[3] ^ k1;
  out.v[3] = static_cast<uint32_t>(p0);
  return out;
}

// Philox4x32 with R rounds; the key is bumped by (W0, W1) between rounds.
template <int R>
CVAE_HD inline Ctr4 philox4x32(Ctr4 ctr, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < R; ++r) {
    if (r > 0) {
      k0 += kW0;
      k1 += kW1;
    }
    ctr = philox4x32_round(ctr, k0, k1);
  }
  return ctr;
}

// Philox4x32-10: the generator. key = {key0, key1}.
CVAE_HD inline Ctr4 philox4x32_10(Ctr4 ctr, uint32_t key0, uint32_t key1) {
  return philox4x32<10>(ctr, key0, key1);
}

// The four words of Philox block b under seed (see the mapping above).
CVAE_HD inline Ctr4 philox_block(uint64_t seed, uint64_t b) {
  Ctr4 c;
  c.v[0] = static_cast<uint32_t>(b);
  c.v[1] = static_cast<uint32_t>(b >> 32);
  c.v[2] = 0;
  c.v[3] = 0;
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// u = (r + 0.5) * 2^-32: exact in double (33 significant bits), in (0,1).
CVAE_HD inline double philox_u01(uint32_t r) {
  return (static_cast<double>(r) + 0.5) * 2.3283064365386962890625e-10;  // 2^-32
}

// ---------------------------------------------------------------------------
// Device-independent elementary functions (see the header comment).

CVAE_HD inline uint64_t philox_bits(double x) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(x));
#else
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

CVAE_HD inline double philox_from_bits(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

// Natural log for finite x > 0 (subnormals included). x = 2^e * m with m in
// [sqrt(1/2), sqrt(2)) split exactly from the bits; f = (m-1)/(m+1) (m-1 is
// exact), log m = 2*atanh(f) = 2f * (1 + f^2/3 + f^4/5 + ...), |f| <= 0.1716,
// so f^2 <= 0.0295 and terms through f^24/25 reach 2^-60 relative;
// log x = e*ln2_hi + (e*ln2_lo + log m), ln2_hi with 32 significant bits so
// e*ln2_hi is exact.
CVAE_HD inline double philox_log(double x) {
  int e = 0;
  if (x < 2.2250738585072014e-308) {  // subnormal: scale by 2^54 (exact)
    x = x * 18014398509481984.0;
    e = -54;
  }
  uint64_t bits = philox_bits(x);
  e += static_cast<int>((bits >> 52) & 0x7ff) - 1023;
  // m in [1, 2): same mantissa, exponent field of 1.0.
  bits = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  double m = philox_from_bits(bits);
  if (m > 1.4142135623730951) {  // m in (sqrt2, 2) -> m/2 (exact), e+1
    m = m * 0.5;
    e += 1;
  }
  const double f = (m - 1.0) / (m + 1.0);
  const double s = f * f;
  // P(s) = 1/3 + s/5 + s^2/7 + ... + s^11/25, Horner with explicit fma.
  double p = 1.0 / 25.0;
  p = ::fma(p, s, 1.0 / 23.0);
  p = ::fma(p, s, 1.0 / 21.0);
  p = ::fma(p, s, 1.0 / 19.0);
  p = ::fma(p, s, 1.0 / 17.0);
  p = ::fma(p, s, 1.0 / 15.0);
  p = ::fma(p, s, 1.0 / 13.0);
  p = ::fma(p, s, 1.0 / 11.0);
  p = ::fma(p, s, 1.0 / 9.0);
  p = ::fma(p, s, 1.0 / 7.0);
  p = ::fma(p, s, 1.0 / 5.0);
  p = ::fma(p, s, 1.0 / 3.0);
  const double t = 2.0 * f;                  // exact
  const double log_m = ::fma(t * s, p, t);   // 2f + 2f*s*P(s)
  const double ln2_hi = 6.93147180369123816490e-01;  // fdlibm: 32 significant bits
  const double ln2_lo = 1.90821492927058770002e-10;
  const double de = static_cast<double>(e);
  return ::fma(de, ln2_hi, ::fma(de, ln2_lo, log_m));
}

// sin and cos of a in [0, pi/4] by Taylor series (Horner, explicit fma):
// sin through a^19/19!, cos through a^20/20!; truncation < 1e-19.
CVAE_HD inline double philox_sin_reduced(double a) {
  const double s = a * a;
  double p = -1.0 / 121645100408832000.0;  // -1/19!
  p = ::fma(p, s, 1.0 / 355687428096000.0);  // 1/17!
  p = ::fma(p, s, -1.0 / 1307674368000.0);   // -1/15!
  p = ::fma(p, s, 1.0 / 6227020800.0);       // 1/13!
  p = ::fma(p, s, -1.0 / 39916800.0);        // -1/11!
  p = ::fma(p, s, 1.0 / 362880.0);           // 1/9!
  p = ::fma(p, s, -1.0 / 5040.0);            // -1/7!
  p = ::fma(p, s, 1.0 / 120.0);              // 1/5!
  p = ::fma(p, s, -1.0 / 6.0);               // -1/3!
  return ::fma(a * s, p, a);                 // a + a^3 * P(a^2)
}

CVAE_HD inline double philox_cos_reduced(double a) {
  const double s = a * a;
  double p = 1.0 / 2432902008176640000.0;     // 1/20!
  p = ::fma(p, s, -1.0 / 6402373705728000.0);  // -1/18!
  p = ::fma(p, s, 1.0 / 20922789888000.0);     // 1/16!
  p = ::fma(p, s, -1.0 / 87178291200.0);       // -1/14!
  p = ::fma(p, s, 1.0 / 479001600.0);          // 1/12!
  p = ::fma(p, s, -1.0 / 3628800.0);           // -1/10!
  p = ::fma(p, s, 1.0 / 40320.0);              // 1/8!
  p = ::fma(p, s, -1.0 / 720.0);               // -1/6!
  p = ::fma(p, s, 1.0 / 24.0);                 // 1/4!
  p = ::fma(p, s, -0.5);                       // -1/2!
  return ::fma(s, p, 1.0);                     // 1 + a^2 * P(a^2)
}

// sin(2*pi*u) and cos(2*pi*u) for u in [0, 1). Exact reduction: t = 4u is
// exact, quadrant k = floor(t), fraction q = t - k in [0,1) exact; the angle
// left is q*pi/2, and for q > 1/2 we use its complement (1-q)*pi/2 (1-q exact)
// so the series always sees [0, pi/4]. Only the final product with pi/2 rounds.
CVAE_HD inline void philox_sincos_2pi(double u, double* sin_out, double* cos_out) {
  const double t = 4.0 * u;  // exact
  const int k = static_cast<int>(t);  // t >= 0: truncation is floor
  const double q = t - static_cast<double>(k);  // exact
  const double half_pi = 1.5707963267948966;
  double s, c;  // sin and cos of q*pi/2
  if (q <= 0.5) {
    const double a = q * half_pi;
    s = philox_sin_reduced(a);
    c = philox_cos_reduced(a);
  } else {
    const double a = (1.0 - q) * half_pi;
    s = philox_cos_reduced(a);
    c = philox_sin_reduced(a);
  }
  // angle = k*pi/2 + q*pi/2
  switch (k & 3) {
    case 0: *sin_out = s;  *cos_out = c;  break;
    case 1: *sin_out = c;  *cos_out = -s; break;
    case 2: *sin_out = -s; *cos_out = -c; break;
    default: *sin_out = -c; *cos_out = s; break;
  }
}

// Box-Muller on one pair of uniforms: n0 = rad*cos(2 pi u1), n1 = rad*sin(2 pi u1),
// rad = sqrt(-2 log u0).
CVAE_HD inline void philox_box_muller(double u0, double u1, double* n0, double* n1) {
  const double rad = ::sqrt(-2.0 * philox_log(u0));
  double s, c;
  philox_sincos_2pi(u1, &s, &c);
  *n0 = rad * c;
  *n1 = rad * s;
}

// The four normals of Philox block b (lanes 0..3).
CVAE_HD inline void philox_normal4(uint64_t seed, uint64_t b, double out[4]) {
  const Ctr4 r = philox_block(seed, b);
  philox_box_muller(philox_u01(r.v[0]), philox_u01(r.v[1]), &out[0], &out[1]);
  philox_box_muller(philox_u01(r.v[2]), philox_u01(r.v[3]), &out[2], &out[3]);
}

// The neighbour of x toward y, as float or double on either device.
CVAE_HD inline float philox_nextafter(float x, float y) {
#if defined(__CUDA_ARCH__)
  return ::nextafterf(x, y);
#else
  return std::nextafter(x, y);
#endif
}
CVAE_HD inline double philox_nextafter(double x, double y) {
#if defined(__CUDA_ARCH__)
  return ::nextafter(x, y);
#else
  return std::nextafter(x, y);
#endif
}

// y = fma(hi - lo, u, lo) in double, rounded to T; a y that rounded up to hi
// becomes the T just below hi, so y is in [lo, hi) whenever lo < hi.
template <typename T>
CVAE_HD inline T philox_uniform_from_u01(double u, T lo, T hi) {
  const double dlo = static_cast<double>(lo);
  T y = static_cast<T>(::fma(static_cast<double>(hi) - dlo, u, dlo));
  if (y >= hi && lo < hi) y = philox_nextafter(hi, lo);
  return y;
}

// The four uniforms in [lo, hi) of Philox block b, as T (see the mapping above).
template <typename T>
CVAE_HD inline void philox_uniform4(uint64_t seed, uint64_t b, T lo, T hi, T out[4]) {
  const Ctr4 r = philox_block(seed, b);
  for (int l = 0; l < 4; ++l) out[l] = philox_uniform_from_u01<T>(philox_u01(r.v[l]), lo, hi);
}

}  // namespace cvae::kernels::philox
