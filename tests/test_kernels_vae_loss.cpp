// test_kernels_vae_loss.cpp: the CPU fused VAE loss (cpu::vae_loss_fwd / _bwd)
// against plain double formulas written here (the naive log-sigmoid CE and the
// two log-normal pdfs or the KL), against the row-wise loss kernels, finite
// differences, float vs double, and determinism. Not here: the CUDA twin.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"
#include "test_util.h"

namespace k = cvae::kernels::cpu;
using cvae::kernels::VaeLossShape;
using cvae::testing::all_close;
using cvae::testing::max_abs;
using cvae::testing::random_vector;

namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

template <typename T>
std::vector<T> nans(size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

template <typename T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Inputs of one problem, in double (cast to float where a test needs float).
struct Inputs {
  VaeLossShape s;
  std::vector<double> logits, x, z, mean, logvar;
};

// Binary targets (the trained case) or fractional ones (Binarize::None).
Inputs make_inputs(int N, int D, int L, bool analytic, bool binary, uint32_t seed) {
  Inputs in;
  in.s = VaeLossShape{N, D, L, analytic};
  const size_t nx = static_cast<size_t>(N) * D, nz = static_cast<size_t>(N) * L;
  in.logits = random_vector<double>(nx, seed, -6.0, 6.0);
  in.x = random_vector<double>(nx, seed + 1, 0.0, 1.0);
  if (binary)
    for (auto& t : in.x) t = t < 0.4 ? 1.0 : 0.0;
  in.z = random_vector<double>(nz, seed + 2, -2.0, 2.0);
  in.mean = random_vector<double>(nz, seed + 3, -1.5, 1.5);
  in.logvar = random_vector<double>(nz, seed + 4, -3.0, 1.5);
  // Round through float so the float and double kernels see the same numbers.
  for (auto* v : {&in.logits, &in.x, &in.z, &in.mean, &in.logvar})
    for (auto& a : *v) a = static_cast<double>(static_cast<float>(a));
  return in;
}

// The reference, straight from the formulas of kernels.h, with the naive CE
//   -(t log(sigmoid(l)) + (1-t) log(1 - sigmoid(l)))   (fine for |l| <= 6 in double)
struct RefFwd {
  std::vector<double> row_elbo;
  double loss = 0;
};
RefFwd ref_fwd(const Inputs& in) {
  const auto& s = in.s;
  RefFwd r;
  r.row_elbo.resize(s.N);
  double total = 0;
  for (int i = 0; i < s.N; ++i) {
    double logpx = 0;
    for (int j = 0; j < s.D; ++j) {
      const size_t q = static_cast<size_t>(i) * s.D + j;
      const double sig = 1.0 / (1.0 + std::exp(-in.logits[q]));
      logpx += in.x[q] * std::log(sig) + (1.0 - in.x[q]) * std::log(1.0 - sig);
    }
    double logpz = 0, logqz = 0, kl = 0;
    for (int j = 0; j < s.L; ++j) {
      const size_t q = static_cast<size_t>(i) * s.L + j;
      const double z = in.z[q], m = in.mean[q], lv = in.logvar[q];
      logpz += -0.5 * (z * z + kLog2Pi);
      logqz += -0.5 * ((z - m) * (z - m) * std::exp(-lv) + lv + kLog2Pi);
      kl += -0.5 * (1.0 + lv - m * m - std::exp(lv));
    }
    r.row_elbo[i] = s.analytic ? logpx - kl : logpx + logpz - logqz;
    total += r.row_elbo[i];
  }
  r.loss = -total / s.N;
  return r;
}

struct Grads {
  std::vector<double> dlogits, dz, dmean, dlogvar;
};
Grads ref_bwd(const Inputs& in, double g) {
  const auto& s = in.s;
  Grads r;
  const double c = g / s.N;
  for (size_t q = 0; q < in.logits.size(); ++q)
    r.dlogits.push_back(c * (1.0 / (1.0 + std::exp(-in.logits[q])) - in.x[q]));
  for (size_t q = 0; q < in.z.size(); ++q) {
    const double z = in.z[q], m = in.mean[q], lv = in.logvar[q];
    if (s.analytic) {
      r.dz.push_back(0.0);
      r.dmean.push_back(c * m);
      r.dlogvar.push_back(c / 2 * (std::exp(lv) - 1.0));
    } else {
      r.dz.push_back(c * (z - (z - m) * std::exp(-lv)));
      r.dmean.push_back(c * (z - m) * std::exp(-lv));
      r.dlogvar.push_back(-c / 2 * (1.0 - (z - m) * (z - m) * std::exp(-lv)));
    }
  }
  return r;
}

template <typename T>
struct Out {
  T loss = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> row_elbo, dlogits, dz, dmean, dlogvar;
};

template <typename T>
Out<T> run(const Inputs& in, double g) {
  const auto& s = in.s;
  const size_t nx = in.logits.size(), nz = in.z.size();
  auto logits = cast<T>(in.logits), x = cast<T>(in.x), z = cast<T>(in.z),
       mean = cast<T>(in.mean), logvar = cast<T>(in.logvar);
  Out<T> o;
  o.row_elbo = nans<T>(s.N);
  o.dlogits = nans<T>(nx);
  o.dz = nans<T>(nz);
  o.dmean = nans<T>(nz);
  o.dlogvar = nans<T>(nz);
  k::vae_loss_fwd<T>(s, logits.data(), x.data(), z.data(), mean.data(), logvar.data(), &o.loss,
                     o.row_elbo.data());
  const T dloss = static_cast<T>(g);
  k::vae_loss_bwd<T>(s, logits.data(), x.data(), z.data(), mean.data(), logvar.data(), &dloss,
                     o.dlogits.data(), o.dz.data(), o.dmean.data(), o.dlogvar.data());
  return o;
}

double loss_only(const Inputs& in) {
  double loss = 0;
  std::vector<double> rows(in.s.N);
  k::vae_loss_fwd<double>(in.s, in.logits.data(), in.x.data(), in.z.data(), in.mean.data(),
                          in.logvar.data(), &loss, rows.data());
  return loss;
}

struct Shape3 {
  int N, D, L;
};
const Shape3 kShapes[] = {{1, 784, 2}, {7, 5, 50}, {33, 784, 3}, {7, 13, 1}, {33, 5, 50}};

}  // namespace

// Double kernel vs the naive formulas: the kernel's stable CE and cancelled log(2 pi)
// differ from them only by double rounding.
TEST(VaeLoss, DoubleMatchesFormulas) {
  uint32_t seed = 10;
  for (const Shape3& sh : kShapes)
    for (bool analytic : {false, true})
      for (bool binary : {true, false}) {
        SCOPED_TRACE(::testing::Message() << "N " << sh.N << " D " << sh.D << " L " << sh.L
                                          << (analytic ? " analytic" : " MC")
                                          << (binary ? " binary" : " fractional"));
        const Inputs in = make_inputs(sh.N, sh.D, sh.L, analytic, binary, seed += 7);
        const double g = 0.75;
        const RefFwd rf = ref_fwd(in);
        const Grads rg = ref_bwd(in, g);
        const Out<double> o = run<double>(in, g);
        // Row ELBOs are sums of D + L terms of size ~ 1..10; rounding of the naive
        // reference dominates: 1e-10 relative plus 1e-11 per term absolute.
        const double atol_row = 1e-11 * (sh.D + sh.L);
        EXPECT_TRUE(all_close(o.row_elbo, rf.row_elbo, 1e-10, atol_row));
        EXPECT_TRUE(all_close(&o.loss, &rf.loss, 1, 1e-10, atol_row));
        // Gradients: a few ulps of double; atol for elements that cancel to near 0
        // ((z-m)^2 e^-lv is grouped differently in the kernel and here).
        EXPECT_TRUE(all_close(o.dlogits, rg.dlogits, 1e-12, 1e-13 * max_abs(rg.dlogits)));
        EXPECT_TRUE(all_close(o.dz, rg.dz, 1e-12, 1e-13 * max_abs(rg.dz)));
        EXPECT_TRUE(all_close(o.dmean, rg.dmean, 1e-12, 1e-13 * max_abs(rg.dmean)));
        EXPECT_TRUE(all_close(o.dlogvar, rg.dlogvar, 1e-12, 1e-13 * max_abs(rg.dlogvar)));
      }
}

// A second oracle: the row-wise loss kernels composed the way the engine ops
// would compose them (sum of sigmoid_ce, log_normal_pdf twice, or kl_normal).
TEST(VaeLoss, DoubleMatchesRowKernels) {
  for (bool analytic : {false, true}) {
    const Inputs in = make_inputs(7, 784, 50, analytic, true, 99);
    const auto& s = in.s;
    std::vector<double> ce(in.logits.size()), lpz(s.N), lqz(s.N), kl(s.N);
    k::sigmoid_ce_fwd<double>(static_cast<int64_t>(ce.size()), in.logits.data(), in.x.data(),
                              ce.data());
    k::log_normal_pdf_fwd<double>(s.N, s.L, in.z.data(), nullptr, nullptr, lpz.data());
    k::log_normal_pdf_fwd<double>(s.N, s.L, in.z.data(), in.mean.data(), in.logvar.data(),
                                  lqz.data());
    k::kl_normal_fwd<double>(s.N, s.L, in.mean.data(), in.logvar.data(), kl.data());
    std::vector<double> rows(s.N);
    for (int i = 0; i < s.N; ++i) {
      double logpx = 0;
      for (int j = 0; j < s.D; ++j) logpx -= ce[static_cast<size_t>(i) * s.D + j];
      rows[i] = analytic ? logpx - kl[i] : logpx + lpz[i] - lqz[i];
    }
    const Out<double> o = run<double>(in, 1.0);
    EXPECT_TRUE(all_close(o.row_elbo, rows, 1e-12, 1e-10)) << (analytic ? "analytic" : "MC");
  }
}

// Central differences in double: d(g * loss)/d input vs vae_loss_bwd, for every
// element of logits, z, mean, logvar (x is data, not differentiated).
TEST(VaeLoss, FiniteDifferences) {
  for (bool analytic : {false, true})
    for (const Shape3& sh : {Shape3{3, 5, 2}, Shape3{1, 7, 3}}) {
      SCOPED_TRACE(::testing::Message() << "N " << sh.N << " D " << sh.D << " L " << sh.L
                                        << (analytic ? " analytic" : " MC"));
      Inputs in = make_inputs(sh.N, sh.D, sh.L, analytic, false, 1234);
      const double g = -1.3, h = 1e-6;
      const Out<double> o = run<double>(in, g);
      auto fd = [&](std::vector<double>& v) {
        std::vector<double> d(v.size());
        for (size_t q = 0; q < v.size(); ++q) {
          const double keep = v[q];
          v[q] = keep + h;
          const double up = loss_only(in);
          v[q] = keep - h;
          const double down = loss_only(in);
          v[q] = keep;
          d[q] = g * (up - down) / (2 * h);
        }
        return d;
      };
      // Truncation O(h^2 f''') ~ 1e-12, rounding ~ 1e-16 * |loss| / h ~ 1e-9.
      EXPECT_TRUE(all_close(o.dlogits, fd(in.logits), 1e-6, 1e-8));
      EXPECT_TRUE(all_close(o.dz, fd(in.z), 1e-6, 1e-8));
      EXPECT_TRUE(all_close(o.dmean, fd(in.mean), 1e-6, 1e-8));
      EXPECT_TRUE(all_close(o.dlogvar, fd(in.logvar), 1e-6, 1e-8));
    }
}

// The float kernel does its arithmetic in double and rounds once: within 1e-5
// relative of the double kernel (atol: 1e-7 of the largest element, for the
// elements that are near zero in a vector of larger ones).
TEST(VaeLoss, FloatMatchesDouble) {
  uint32_t seed = 500;
  for (const Shape3& sh : kShapes)
    for (bool analytic : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "N " << sh.N << " D " << sh.D << " L " << sh.L
                                        << (analytic ? " analytic" : " MC"));
      const Inputs in = make_inputs(sh.N, sh.D, sh.L, analytic, true, seed += 11);
      const Out<double> d = run<double>(in, 2.5);
      const Out<float> f = run<float>(in, 2.5);
      auto close = [](const std::vector<float>& a, const std::vector<double>& b) {
        return all_close(a, b, 1e-5, 1e-7 * max_abs(b));
      };
      EXPECT_TRUE(all_close(&f.loss, &d.loss, 1, 1e-5, 0.0));
      EXPECT_TRUE(close(f.row_elbo, d.row_elbo));
      EXPECT_TRUE(close(f.dlogits, d.dlogits));
      EXPECT_TRUE(close(f.dz, d.dz));
      EXPECT_TRUE(close(f.dmean, d.dmean));
      EXPECT_TRUE(close(f.dlogvar, d.dlogvar));
    }
}

// Logits far out (|l| up to 80): the stable form stays finite, and the gradient
// saturates to c * (0 or 1 - t) without NaN.
TEST(VaeLoss, ExtremeLogitsStayFinite) {
  Inputs in = make_inputs(3, 13, 2, false, true, 77);
  for (size_t q = 0; q < in.logits.size(); ++q) in.logits[q] = (q % 2 ? 80.0 : -80.0) * in.logits[q] / 6.0;
  const Out<float> f = run<float>(in, 1.0);
  EXPECT_TRUE(std::isfinite(f.loss));
  for (float v : f.row_elbo) EXPECT_TRUE(std::isfinite(v));
  for (float v : f.dlogits) EXPECT_TRUE(std::isfinite(v));
}

// Same inputs, same bits: twice, and with 1 or 2 OpenMP threads (the shape is
// large enough for the parallel row loop to engage).
TEST(VaeLoss, Deterministic) {
  for (bool analytic : {false, true}) {
    const Inputs in = make_inputs(64, 784, 50, analytic, true, 4242);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const Out<float> a = run<float>(in, 1.0);
    omp_set_num_threads(2);
    const Out<float> b = run<float>(in, 1.0);
    const Out<float> c = run<float>(in, 1.0);
    omp_set_num_threads(threads);
    auto same = [](const std::vector<float>& u, const std::vector<float>& v) {
      return u.size() == v.size() && std::memcmp(u.data(), v.data(), u.size() * sizeof(float)) == 0;
    };
    for (const Out<float>* o : {&b, &c}) {
      EXPECT_EQ(std::memcmp(&a.loss, &o->loss, sizeof(float)), 0);
      EXPECT_TRUE(same(a.row_elbo, o->row_elbo));
      EXPECT_TRUE(same(a.dlogits, o->dlogits));
      EXPECT_TRUE(same(a.dz, o->dz));
      EXPECT_TRUE(same(a.dmean, o->dmean));
      EXPECT_TRUE(same(a.dlogvar, o->dlogvar));
    }
  }
}

namespace {
// |got - want| within `ulps` units in the last place of want (double), NaN only for NaN.
bool within_ulps(double got, long double want, double ulps) {
  if (std::isnan(static_cast<double>(want))) return std::isnan(got);
  if (std::isinf(static_cast<double>(want))) return got == static_cast<double>(want);
  const long double ulp = std::max<long double>(std::fabs(want) * std::numeric_limits<double>::epsilon(),
                                                std::numeric_limits<double>::denorm_min());
  return std::fabs(static_cast<long double>(got) - want) <= ulps * ulp;
}
}  // namespace

// The loss's own vector exp and log1p (vae_loss_core.h), on every ISA path, against long
// double libm: the logits' gradient element by element (t = 0: c sigmoid(l), which is
// exp(l) for l < 0: every exponent of exp's normal range), and row sums of CE terms with
// t = (l > 0), each term then log1p(exp(-|l|)) alone, for |l| from 1e-8 to 700 (log1p's
// arguments from 1 down to 1e-304). Specials (NaN, infinities, logits past exp's normal
// range) take the scalar forms and agree with them.
TEST(VaeLoss, OwnExpAndLog1pWithinUlpsOfLibm) {
  const int D = 4099;  // whole vectors and a tail on every path
  Inputs in = make_inputs(1, D, 1, true, true, 31);
  in.mean = {0.0}, in.logvar = {0.0};  // analytic latent term: 0.5 (1 + 0 - 0 - e^0) = 0
  for (int j = 0; j < D; ++j) in.logits[j] = -708.0 + 748.0 * j / (D - 1), in.x[j] = 0.0;
  const double specials[] = {std::nan(""), -INFINITY, INFINITY, -709.0, -745.5, -800.0, 0.0, -0.0};
  for (int q = 0; q < 8; ++q) in.logits[37 * q + 5] = specials[q];
  const Out<double> o = run<double>(in, 1.0);  // c = g / N = 1
  for (int j = 0; j < D; ++j) {
    const long double l = in.logits[j], e = std::exp(-std::fabs(l));
    const long double sig = l >= 0 ? 1 / (1 + e) : e / (1 + e);
    EXPECT_TRUE(within_ulps(o.dlogits[j], std::isnan(in.logits[j]) ? NAN : sig, 4))
        << "l " << in.logits[j] << " got " << o.dlogits[j] << " want " << static_cast<double>(sig);
  }
  const int N = 600, W = 8;
  Inputs rows = make_inputs(N, W, 1, true, true, 32);
  rows.mean.assign(N, 0.0), rows.logvar.assign(N, 0.0);
  for (int i = 0; i < N; ++i) {
    const double size = std::pow(10.0, -8.0 + 10.845 * i / (N - 1));  // 1e-8 .. 700
    for (int j = 0; j < W; ++j) {
      double& l = rows.logits[i * W + j];
      l *= size / 6.0;
      rows.x[i * W + j] = l > 0 ? 1.0 : 0.0;  // max(l, 0) - l t = 0 exactly
    }
  }
  const Out<double> r = run<double>(rows, 1.0);
  for (int i = 0; i < N; ++i) {
    long double sum = 0, size = 0;
    for (int j = 0; j < W; ++j) {
      const long double l = rows.logits[i * W + j], t = rows.x[i * W + j];
      const long double ce = (l > 0 ? l : 0) - l * t + std::log1p(std::exp(-std::fabs(l)));
      sum -= ce, size += std::fabs(ce);
    }
    EXPECT_LE(std::fabs(r.row_elbo[i] - sum), 8 * size * std::numeric_limits<double>::epsilon())
        << "row " << i << " got " << r.row_elbo[i] << " want " << static_cast<double>(sum);
  }
}

// Each element's bits depend on its inputs alone, not on the vector width: the same
// results on every path this CPU runs, with rows (D = 13) and a batch of gradients
// (91 elements) that end in partial vectors, and NaN, -800 and +inf logits beside
// ordinary ones in the same vectors. A NaN result is only required to be NaN on every
// path: its sign comes from the order of an add's operands, which each ISA's code may
// choose differently.
TEST(VaeLoss, EveryCodePathGivesTheSameBits) {
  Inputs in = make_inputs(7, 13, 3, false, false, 808);
  in.logits[1] = std::nan(""), in.logits[9] = -800.0, in.logits[20] = INFINITY;
  in.logits[40] = -709.5, in.logits[41] = 707.9;
  const k::CpuIsa saved = k::cpu_isa();
  std::vector<Out<float>> outs;
  std::vector<Out<double>> outs_d;
  for (k::CpuIsa isa : {k::CpuIsa::Generic, k::CpuIsa::Avx2, k::CpuIsa::Avx512}) {
    if (!k::cpu_isa_supported(isa)) continue;
    k::set_cpu_isa(isa);
    outs.push_back(run<float>(in, 1.5));
    outs_d.push_back(run<double>(in, 1.5));
  }
  k::set_cpu_isa(saved);
  ASSERT_GE(outs.size(), 1u);
  auto same = [](const auto& u, const auto& v) {
    if (u.size() != v.size()) return false;
    for (size_t i = 0; i < u.size(); ++i)
      if (std::isnan(u[i]) ? !std::isnan(v[i]) : std::memcmp(&u[i], &v[i], sizeof(u[i])) != 0)
        return false;
    return true;
  };
  for (size_t p = 1; p < outs.size(); ++p) {
    SCOPED_TRACE(::testing::Message() << "path " << p << " against the generic one");
    EXPECT_TRUE(same(outs[p].row_elbo, outs[0].row_elbo));
    EXPECT_TRUE(same(outs[p].dlogits, outs[0].dlogits));
    EXPECT_TRUE(same(outs_d[p].row_elbo, outs_d[0].row_elbo));
    EXPECT_TRUE(same(outs_d[p].dlogits, outs_d[0].dlogits));
  }
  EXPECT_TRUE(std::isnan(outs[0].dlogits[1]));  // the NaN logit's own gradient
  EXPECT_TRUE(std::isfinite(outs[0].dlogits[9]) && std::isfinite(outs[0].dlogits[2]));
}
