// test_kernels_philox.cpp: Philox4x32 known answers, the device-independent
// log/sin/cos of kernels/philox.h, and cpu::normal_fill / cpu::uniform_fill
// (moments, addressing, float vs double, determinism). Not here: CPU/GPU parity.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/philox.h"
#include "test_util.h"

namespace ph = cvae::kernels::philox;
namespace cpu = cvae::kernels::cpu;

namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t out[4];
};

template <int R>
void check_kat(const Kat& k) {
  ph::Ctr4 c{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}};
  const ph::Ctr4 r = ph::philox4x32<R>(c, k.key[0], k.key[1]);
  for (int l = 0; l < 4; ++l) EXPECT_EQ(r.v[l], k.out[l]) << "rounds " << R << " word " << l;
}

bool bits_equal(const void* a, const void* b, size_t bytes) { return std::memcmp(a, b, bytes) == 0; }

}  // namespace

// Known-answer vectors of Random123's tests/kat_vectors file ("philox4x32 R
// ctr0..3 key0..1 out0..3"), as cut-and-pasted into DEShawResearch/Random123-Boost,
// libs/random/test/test_philox.cpp (test_kat_philox4x32).
TEST(Philox, KnownAnswers10Rounds) {
  check_kat<10>({{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
  check_kat<10>({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                 {0xffffffff, 0xffffffff},
                 {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
  check_kat<10>({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                 {0xa4093822, 0x299f31d0},
                 {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST(Philox, KnownAnswers7Rounds) {
  check_kat<7>({{0, 0, 0, 0}, {0, 0}, {0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}});
  check_kat<7>({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                {0xffffffff, 0xffffffff},
                {0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}});
  check_kat<7>({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                {0xa4093822, 0x299f31d0},
                {0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}});
}

TEST(Philox, BlockMappingUsesCounterAndSeedWords) {
  const uint64_t seed = 0x299f31d0a4093822ull, b = 0x85a308d3243f6a88ull;
  const ph::Ctr4 got = ph::philox_block(seed, b);
  const ph::Ctr4 want =
      ph::philox4x32_10(ph::Ctr4{{0x243f6a88, 0x85a308d3, 0, 0}}, 0xa4093822, 0x299f31d0);
  EXPECT_TRUE(bits_equal(&got, &want, sizeof got));
}

TEST(Philox, UniformIsOpenInterval) {
  EXPECT_EQ(ph::philox_u01(0), std::ldexp(1.0, -33));
  EXPECT_EQ(ph::philox_u01(0xffffffffu), 1.0 - std::ldexp(1.0, -33));
  EXPECT_GT(ph::philox_u01(0), 0.0);
  EXPECT_LT(ph::philox_u01(0xffffffffu), 1.0);
  // The largest u rounds to 1.0f in float: it must come back just below hi.
  const float top = ph::philox_uniform_from_u01<float>(ph::philox_u01(0xffffffffu), 0.0f, 1.0f);
  EXPECT_LT(top, 1.0f);
  EXPECT_EQ(top, std::nextafter(1.0f, 0.0f));
  EXPECT_EQ(ph::philox_uniform_from_u01<double>(ph::philox_u01(0), -2.0, 2.0),
            -2.0 + 4.0 * std::ldexp(1.0, -33));
}

// Our log vs std::log: every u the generator can produce is (k + 0.5) * 2^-32;
// sample them across the whole range plus the extremes, and other magnitudes.
TEST(Philox, LogMatchesStdLog) {
  std::vector<double> xs;
  for (uint64_t r = 0; r <= 0xffffffffull; r += 65521) xs.push_back(ph::philox_u01(static_cast<uint32_t>(r)));
  for (uint32_t r : {0u, 1u, 2u, 3u, 0x7fffffffu, 0x80000000u, 0xfffffffeu, 0xffffffffu})
    xs.push_back(ph::philox_u01(r));
  for (double x : {1.0, 2.0, 0.5, 1.4142135623730951, 1.4142135623730949, 0.7071067811865476,
                   1e-300, 5e-324, 2.2250738585072014e-308, 1e300, 1.7976931348623157e308,
                   1.0 + 1e-15, 1.0 - 1e-16, 3.0, 10.0, 123456.789})
    xs.push_back(x);
  std::vector<double> got, ref;
  for (double x : xs) {
    got.push_back(ph::philox_log(x));
    ref.push_back(std::log(x));
  }
  EXPECT_TRUE(cvae::testing::all_close(got, ref, 1e-14, 0.0));
  EXPECT_EQ(ph::philox_log(1.0), 0.0);
}

// sin/cos(2*pi*u) vs a long-double reference (std::sin(2*M_PI*u) in double would
// itself be off by the rounding of its argument, ~4e-16 absolute).
TEST(Philox, SinCosMatchStd) {
  const long double two_pi = 6.283185307179586476925286766559005768L;
  std::vector<double> s_got, c_got, s_ref, c_ref;
  auto add = [&](double u) {
    double s, c;
    ph::philox_sincos_2pi(u, &s, &c);
    s_got.push_back(s);
    c_got.push_back(c);
    s_ref.push_back(static_cast<double>(std::sin(two_pi * static_cast<long double>(u))));
    c_ref.push_back(static_cast<double>(std::cos(two_pi * static_cast<long double>(u))));
  };
  for (uint64_t r = 0; r <= 0xffffffffull; r += 65521) add(ph::philox_u01(static_cast<uint32_t>(r)));
  for (uint32_t r : {0u, 1u, 0x1fffffffu, 0x20000000u, 0x3fffffffu, 0x40000000u, 0x7fffffffu,
                     0x80000000u, 0xbfffffffu, 0xc0000000u, 0xffffffffu})
    add(ph::philox_u01(r));
  for (double u : {0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875}) add(u);
  // Relative 1e-14; the absolute 1e-15 covers the zeros of sin and cos, where the
  // double argument itself carries ~2e-16 absolute error.
  EXPECT_TRUE(cvae::testing::all_close(s_got, s_ref, 1e-14, 1e-15));
  EXPECT_TRUE(cvae::testing::all_close(c_got, c_ref, 1e-14, 1e-15));
  double s, c;
  ph::philox_sincos_2pi(0.0, &s, &c);
  EXPECT_EQ(s, 0.0);
  EXPECT_EQ(c, 1.0);
}

// Each element against an independent Box-Muller built on std::log/sin/cos from
// the raw Philox words: checks the lane/pair mapping documented in philox.h.
TEST(NormalFill, MatchesDocumentedMapping) {
  const uint64_t seed = 0x0123456789abcdefull, offset = 0xfffffffffffffff0ull;  // wraps
  const int64_t n = 103;
  std::vector<double> y(n, std::nan("")), ref(n);
  cpu::normal_fill<double>(n, seed, offset, y.data());
  const long double two_pi = 6.283185307179586476925286766559005768L;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t b = offset + static_cast<uint64_t>(i / 4);
    const ph::Ctr4 r = ph::philox4x32_10(
        ph::Ctr4{{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0, 0}},
        static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    const int lane = static_cast<int>(i % 4), first = lane & 2;
    const double u0 = (r.v[first] + 0.5) / 4294967296.0, u1 = (r.v[first + 1] + 0.5) / 4294967296.0;
    const long double rad = std::sqrt(-2.0L * std::log(static_cast<long double>(u0)));
    const long double th = two_pi * static_cast<long double>(u1);
    ref[i] = static_cast<double>((lane & 1) ? rad * std::sin(th) : rad * std::cos(th));
  }
  EXPECT_TRUE(cvae::testing::all_close(y, ref, 1e-13, 1e-14));
}

TEST(NormalFill, MeanAndVariance) {
  const int64_t n = 1000000;
  std::vector<double> y(n, std::nan(""));
  cpu::normal_fill<double>(n, 42, 7, y.data());
  double s = 0, s2 = 0, s3 = 0, s4 = 0;
  int64_t below0 = 0, below1 = 0, below_m196 = 0;
  for (double v : y) {
    ASSERT_TRUE(std::isfinite(v));
    s += v;
    s2 += v * v;
    s3 += v * v * v;
    s4 += v * v * v * v;
    below0 += v < 0;
    below1 += v < 1;
    below_m196 += v < -1.959963984540054;
  }
  const double nn = static_cast<double>(n);
  const double mean = s / nn, var = s2 / nn - mean * mean;
  // Standard errors for N(0,1): mean 1/sqrt(n), variance sqrt(2/n), third moment
  // sqrt(15/n), fourth moment sqrt(96/n); a proportion p: sqrt(p(1-p)/n). Allow 5 SE.
  EXPECT_NEAR(mean, 0.0, 5 / std::sqrt(nn));
  EXPECT_NEAR(var, 1.0, 5 * std::sqrt(2 / nn));
  EXPECT_NEAR(s3 / nn, 0.0, 5 * std::sqrt(15 / nn));
  EXPECT_NEAR(s4 / nn, 3.0, 5 * std::sqrt(96 / nn));
  auto prop = [&](int64_t k, double p) { EXPECT_NEAR(k / nn, p, 5 * std::sqrt(p * (1 - p) / nn)); };
  prop(below0, 0.5);
  prop(below1, 0.8413447460685429);
  prop(below_m196, 0.025);
  // Pairs are independent normals: correlation of lanes 0 and 1 ~ 0.
  double c01 = 0;
  for (int64_t i = 0; i + 1 < n; i += 4) c01 += y[i] * y[i + 1];
  EXPECT_NEAR(c01 / (nn / 4), 0.0, 5 / std::sqrt(nn / 4));
}

TEST(UniformFill, RangeMeanAndVariance) {
  const int64_t n = 1000000;
  std::vector<float> y(n, std::nanf(""));
  cpu::uniform_fill<float>(n, 3, 0, -2.0f, 3.0f, y.data());
  double s = 0, s2 = 0;
  for (float v : y) {
    ASSERT_GE(v, -2.0f);
    ASSERT_LT(v, 3.0f);
    s += v;
    s2 += static_cast<double>(v) * v;
  }
  const double nn = static_cast<double>(n), mean = s / nn, var = s2 / nn - mean * mean;
  // U[-2,3): mean 0.5, variance 25/12; SE of mean sqrt(var/n), of variance
  // sqrt((mu4 - var^2)/n) with mu4 = 5^4/80.
  EXPECT_NEAR(mean, 0.5, 5 * std::sqrt(25.0 / 12 / nn));
  EXPECT_NEAR(var, 25.0 / 12, 5 * std::sqrt((625.0 / 80 - (25.0 / 12) * (25.0 / 12)) / nn));
}

// Filling from element i (i % 4 == 0) is filling from block offset + i/4.
TEST(NormalFill, OffsetAddressing) {
  const uint64_t seed = 99, offset = 1000;
  const int64_t n = 1001;
  std::vector<double> all(n);
  cpu::normal_fill<double>(n, seed, offset, all.data());
  for (int64_t i : {0, 4, 8, 400, 996, 1000}) {
    const int64_t m = n - i;
    std::vector<double> part(m, std::nan(""));
    cpu::normal_fill<double>(m, seed, offset + static_cast<uint64_t>(i / 4), part.data());
    EXPECT_TRUE(bits_equal(part.data(), all.data() + i, m * sizeof(double))) << "i = " << i;
  }
  // A tail shorter than a block writes only n elements.
  std::vector<double> three(4, -7.0);
  cpu::normal_fill<double>(3, seed, offset, three.data());
  EXPECT_TRUE(bits_equal(three.data(), all.data(), 3 * sizeof(double)));
  EXPECT_EQ(three[3], -7.0);
  // Different seeds and offsets differ.
  std::vector<double> other(n);
  cpu::normal_fill<double>(n, seed + 1, offset, other.data());
  EXPECT_NE(other[0], all[0]);
  std::vector<float> uf(n), ufp(n - 8);
  cpu::uniform_fill<float>(n, seed, offset, 0.f, 1.f, uf.data());
  cpu::uniform_fill<float>(n - 8, seed, offset + 2, 0.f, 1.f, ufp.data());
  EXPECT_TRUE(bits_equal(ufp.data(), uf.data() + 8, (n - 8) * sizeof(float)));
}

TEST(NormalFill, FloatIsDoubleRounded) {
  const int64_t n = 100003;
  std::vector<double> d(n);
  std::vector<float> f(n, std::nanf("")), fd(n);
  cpu::normal_fill<double>(n, 5, 11, d.data());
  cpu::normal_fill<float>(n, 5, 11, f.data());
  for (int64_t i = 0; i < n; ++i) fd[i] = static_cast<float>(d[i]);
  EXPECT_TRUE(bits_equal(f.data(), fd.data(), n * sizeof(float)));
  std::vector<double> ud(n);
  std::vector<float> uf(n, std::nanf("")), ufd(n);
  cpu::uniform_fill<double>(n, 5, 11, -1.0, 1.0, ud.data());
  cpu::uniform_fill<float>(n, 5, 11, -1.0f, 1.0f, uf.data());
  for (int64_t i = 0; i < n; ++i) ufd[i] = static_cast<float>(ud[i]);
  EXPECT_TRUE(bits_equal(uf.data(), ufd.data(), n * sizeof(float)));
}

// Same call, same bits, whatever the thread count.
TEST(NormalFill, Deterministic) {
  const int64_t n = 300001;  // above the parallel threshold
  std::vector<float> a(n), b(n), c(n);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  cpu::normal_fill<float>(n, 123, 456, a.data());
  omp_set_num_threads(std::max(2, threads));
  cpu::normal_fill<float>(n, 123, 456, b.data());
  cpu::normal_fill<float>(n, 123, 456, c.data());
  omp_set_num_threads(threads);
  EXPECT_TRUE(bits_equal(a.data(), b.data(), n * sizeof(float)));
  EXPECT_TRUE(bits_equal(b.data(), c.data(), n * sizeof(float)));
}
