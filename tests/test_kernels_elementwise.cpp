// test_kernels_elementwise.cpp: the CPU elementwise, reduction, loss and
// optimizer kernels against plain double-precision formulas written here.
// Odd sizes, outputs poisoned with NaN, float and double. Not here: GEMM/conv, RNG.
#include <omp.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/kernels.h"
#include "test_util.h"

namespace k = cvae::kernels::cpu;
using cvae::testing::all_close;
using cvae::testing::random_vector;

namespace {

template <typename T>
std::vector<T> nans(size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

template <typename T>
std::vector<double> to_double(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Tolerances: float kernels are checked at a few ulps of float, double ones at a
// few ulps of double (the reference is evaluated in double).
template <typename T>
constexpr double rtol() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-14;
}

double ref_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

template <typename T>
class Elementwise : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Elementwise, Types);

TYPED_TEST(Elementwise, BiasAdd) {
  using T = TypeParam;
  for (int64_t HW : {int64_t{1}, int64_t{7}, int64_t{13}}) {
    const int N = 3, C = 5;
    const size_t n = static_cast<size_t>(N * C * HW);
    auto x = random_vector<T>(n, 1), b = random_vector<T>(C, 2);
    auto y = nans<T>(n);
    std::vector<double> ref(n);
    for (int i = 0; i < N; ++i)
      for (int c = 0; c < C; ++c)
        for (int64_t h = 0; h < HW; ++h) {
          const size_t idx = static_cast<size_t>((i * C + c) * HW + h);
          ref[idx] = static_cast<double>(x[idx]) + static_cast<double>(b[c]);
        }
    k::bias_add_fwd<T>(N, C, HW, x.data(), b.data(), y.data());
    EXPECT_TRUE(all_close(y, ref, rtol<T>(), 0.0)) << "HW " << HW;
    k::bias_add_fwd<T>(N, C, HW, x.data(), b.data(), x.data());  // in place
    EXPECT_TRUE(all_close(x, ref, rtol<T>(), 0.0)) << "in place, HW " << HW;

    auto dy = random_vector<T>(n, 3);
    auto db = nans<T>(C);
    std::vector<double> dref(C, 0.0);
    for (int i = 0; i < N; ++i)
      for (int c = 0; c < C; ++c)
        for (int64_t h = 0; h < HW; ++h) dref[c] += static_cast<double>(dy[(i * C + c) * HW + h]);
    k::bias_add_bwd<T>(N, C, HW, dy.data(), db.data());
    EXPECT_TRUE(all_close(db, dref, rtol<T>(), 1e-15)) << "HW " << HW;
  }
}

// The fused ReLU backward is relu_bwd then bias_add_bwd, bit for bit: for dense layers
// (HW = 1, rows of one element), for planes, in place, with one thread or two, and with
// more channels than one block of a thread's channels (256).
TYPED_TEST(Elementwise, BiasReluBackwardIsReluThenBiasAddBitForBit) {
  using T = TypeParam;
  for (auto [N, C, HW] : {std::array<int64_t, 3>{100, 1568, 1}, {3, 5, 1}, {7, 33, 49}, {2, 600, 3}}) {
    SCOPED_TRACE(::testing::Message() << "N " << N << " C " << C << " HW " << HW);
    const size_t n = size_t(N * C * HW);
    auto y = random_vector<T>(n, 11), dy = random_vector<T>(n, 12);
    auto dpre_ref = nans<T>(n), db_ref = nans<T>(size_t(C));
    k::relu_bwd<T>(int64_t(n), y.data(), dy.data(), dpre_ref.data());
    k::bias_add_bwd<T>(int(N), int(C), HW, dpre_ref.data(), db_ref.data());
    const int saved = omp_get_max_threads();
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      auto dpre = nans<T>(n), db = nans<T>(size_t(C));
      k::bias_relu_bwd<T>(int(N), int(C), HW, y.data(), dy.data(), dpre.data(), db.data());
      EXPECT_EQ(0, std::memcmp(dpre.data(), dpre_ref.data(), n * sizeof(T))) << threads << " threads";
      EXPECT_EQ(0, std::memcmp(db.data(), db_ref.data(), size_t(C) * sizeof(T))) << threads << " threads";
      auto inplace = dy;
      k::bias_relu_bwd<T>(int(N), int(C), HW, y.data(), inplace.data(), inplace.data(), db.data());
      EXPECT_EQ(0, std::memcmp(inplace.data(), dpre_ref.data(), n * sizeof(T))) << "in place";
    }
    omp_set_num_threads(saved);
  }
}

TYPED_TEST(Elementwise, ReluAndSigmoid) {
  using T = TypeParam;
  const int64_t n = 1001;
  auto x = random_vector<T>(n, 4, -6, 6);
  x[0] = T(0);
  x[1] = T(100);
  x[2] = T(-100);
  x[3] = T(1000);
  x[4] = T(-1000);
  auto dy = random_vector<T>(n, 5);
  std::vector<double> r(n), dr(n), s(n), ds(n);
  for (int64_t i = 0; i < n; ++i) {
    const double xi = x[i];
    r[i] = xi > 0 ? xi : 0.0;
    dr[i] = xi > 0 ? static_cast<double>(dy[i]) : 0.0;
    s[i] = ref_sigmoid(xi);
  }
  auto y = nans<T>(n), dx = nans<T>(n);
  k::relu_fwd<T>(n, x.data(), y.data());
  EXPECT_TRUE(all_close(y, r, 0.0, 0.0));
  k::relu_bwd<T>(n, y.data(), dy.data(), dx.data());
  EXPECT_TRUE(all_close(dx, dr, 0.0, 0.0));

  y = nans<T>(n);
  k::sigmoid_fwd<T>(n, x.data(), y.data());
  // Relative to the reference: also checks the tiny values at x = -100, -1000
  // (exp(-100) ~ 3.7e-44 is a float denormal: absolute floor for float).
  EXPECT_TRUE(all_close(y, s, rtol<T>(), std::is_same_v<T, float> ? 1e-44 : 0.0));
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(y[i])) << i;
    ds[i] = static_cast<double>(dy[i]) * y[i] * (1.0 - y[i]);
  }
  dx = nans<T>(n);
  k::sigmoid_bwd<T>(n, y.data(), dy.data(), dx.data());
  // Float denormals (y ~ 1e-44 at x = -100) carry an absolute error of ~1e-45.
  EXPECT_TRUE(all_close(dx, ds, 4 * rtol<T>(), std::is_same_v<T, float> ? 1e-43 : 1e-300));

  auto e = nans<T>(n);
  std::vector<double> eref(n);
  auto xe = random_vector<T>(n, 6, -20, 20);
  for (int64_t i = 0; i < n; ++i) eref[i] = std::exp(static_cast<double>(xe[i]));
  k::exp_fwd<T>(n, xe.data(), e.data());
  EXPECT_TRUE(all_close(e, eref, rtol<T>(), 0.0));
}

TYPED_TEST(Elementwise, Arithmetic) {
  using T = TypeParam;
  const int64_t n = 777;
  auto a = random_vector<T>(n, 7), b = random_vector<T>(n, 8);
  std::vector<double> radd(n), rsub(n), rmul(n), rscale(n), raxpy(n);
  const T alpha = T(-1.75);
  for (int64_t i = 0; i < n; ++i) {
    const double ai = a[i], bi = b[i];
    radd[i] = ai + bi;
    rsub[i] = ai - bi;
    rmul[i] = ai * bi;
    rscale[i] = -1.75 * ai;
    raxpy[i] = bi + -1.75 * ai;
  }
  auto y = nans<T>(n);
  k::add<T>(n, a.data(), b.data(), y.data());
  EXPECT_TRUE(all_close(y, radd, rtol<T>(), 1e-15));
  y = nans<T>(n);
  k::sub<T>(n, a.data(), b.data(), y.data());
  EXPECT_TRUE(all_close(y, rsub, rtol<T>(), 1e-15));
  y = nans<T>(n);
  k::mul<T>(n, a.data(), b.data(), y.data());
  EXPECT_TRUE(all_close(y, rmul, rtol<T>(), 0.0));
  y = nans<T>(n);
  k::scale<T>(n, alpha, a.data(), y.data());
  EXPECT_TRUE(all_close(y, rscale, rtol<T>(), 0.0));
  auto yb = b;
  k::axpy<T>(n, alpha, a.data(), yb.data());
  // Two roundings, alpha*x then + y (no FMA, as the CUDA twin): where the terms cancel the
  // relative error grows, so the bound is one ulp of the terms (|x|, |y| <= 1 here).
  EXPECT_TRUE(all_close(yb, raxpy, rtol<T>(), 4 * std::numeric_limits<T>::epsilon()));
  y = nans<T>(n);
  k::fill<T>(n, T(0.25), y.data());
  EXPECT_TRUE(all_close(y, std::vector<double>(n, 0.25), 0.0, 0.0));
  // Outputs may alias inputs.
  auto ab = a;
  k::add<T>(n, ab.data(), b.data(), ab.data());
  EXPECT_TRUE(all_close(ab, radd, rtol<T>(), 1e-15));
  ab = a;
  k::mul<T>(n, ab.data(), ab.data(), ab.data());
  for (int64_t i = 0; i < n; ++i) rmul[i] = static_cast<double>(a[i]) * a[i];
  EXPECT_TRUE(all_close(ab, rmul, rtol<T>(), 0.0));
}

TYPED_TEST(Elementwise, SumMidAndBroadcastMid) {
  using T = TypeParam;
  struct S { int64_t outer, mid, inner; };
  for (S s : {S{3, 7, 1}, S{1, 1000, 1}, S{2, 5, 300}, S{4, 1, 5}, S{5, 3, 256}, S{3, 101, 1000}}) {
    const size_t n = static_cast<size_t>(s.outer * s.mid * s.inner);
    const size_t m = static_cast<size_t>(s.outer * s.inner);
    auto x = random_vector<T>(n, 9);
    auto y = nans<T>(m);
    std::vector<double> ref(m, 0.0);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t j = 0; j < s.mid; ++j)
        for (int64_t i = 0; i < s.inner; ++i)
          ref[o * s.inner + i] += static_cast<double>(x[(o * s.mid + j) * s.inner + i]);
    k::sum_mid<T>(s.outer, s.mid, s.inner, x.data(), y.data());
    // float: one rounding of a double-accumulated sum; double: ~mid ulps of the terms.
    EXPECT_TRUE(all_close(y, ref, rtol<T>(), std::is_same_v<T, float> ? 1e-6 : 1e-12))
        << s.outer << "x" << s.mid << "x" << s.inner;

    auto dy = random_vector<T>(m, 10);
    auto dx = nans<T>(n);
    std::vector<double> dref(n);
    for (int64_t o = 0; o < s.outer; ++o)
      for (int64_t j = 0; j < s.mid; ++j)
        for (int64_t i = 0; i < s.inner; ++i)
          dref[(o * s.mid + j) * s.inner + i] = 0.5 * static_cast<double>(dy[o * s.inner + i]);
    k::broadcast_mid<T>(s.outer, s.mid, s.inner, T(0.5), dy.data(), dx.data());
    EXPECT_TRUE(all_close(dx, dref, 0.0, 0.0));
  }
}

// Reductions repeat bit for bit whatever the thread count.
TYPED_TEST(Elementwise, ReductionsAreDeterministic) {
  using T = TypeParam;
  const int64_t outer = 3, mid = 257, inner = 999;
  auto x = random_vector<T>(static_cast<size_t>(outer * mid * inner), 11);
  std::vector<T> a(outer * inner), b(outer * inner), ca(mid), cb(mid);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  k::sum_mid<T>(outer, mid, inner, x.data(), a.data());
  k::bias_add_bwd<T>(static_cast<int>(outer), static_cast<int>(mid), inner, x.data(), ca.data());
  omp_set_num_threads(std::max(2, threads));
  k::sum_mid<T>(outer, mid, inner, x.data(), b.data());
  k::bias_add_bwd<T>(static_cast<int>(outer), static_cast<int>(mid), inner, x.data(), cb.data());
  omp_set_num_threads(threads);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(T)), 0);
  EXPECT_EQ(std::memcmp(ca.data(), cb.data(), ca.size() * sizeof(T)), 0);
}

TYPED_TEST(Elementwise, SigmoidCrossEntropy) {
  using T = TypeParam;
  const int64_t n = 513;
  auto x = random_vector<T>(n, 12, -8, 8);
  auto t = random_vector<T>(n, 13, 0, 1);
  x[0] = T(100);
  x[1] = T(-100);
  x[2] = T(100);
  x[3] = T(-100);
  x[4] = T(0);
  t[0] = T(0);
  t[1] = T(1);
  t[2] = T(1);
  t[3] = T(0);
  for (int64_t i = 5; i < 50; ++i) t[i] = T(i % 2);  // binarized targets too
  auto dl = random_vector<T>(n, 14, 0.5, 2);
  std::vector<double> l(n), dlog(n), dtgt(n);
  for (int64_t i = 0; i < n; ++i) {
    const double xi = x[i], ti = t[i];
    // -t*log(sigmoid(x)) - (1-t)*log(1-sigmoid(x)), via log(sigmoid(x)) = -log1p(exp(-x)).
    const double log_p = xi >= 0 ? -std::log1p(std::exp(-xi)) : xi - std::log1p(std::exp(xi));
    const double log_1mp = xi >= 0 ? -xi - std::log1p(std::exp(-xi)) : -std::log1p(std::exp(xi));
    l[i] = -ti * log_p - (1 - ti) * log_1mp;
    dlog[i] = static_cast<double>(dl[i]) * (ref_sigmoid(xi) - ti);
    dtgt[i] = -static_cast<double>(dl[i]) * xi;
  }
  auto y = nans<T>(n);
  k::sigmoid_ce_fwd<T>(n, x.data(), t.data(), y.data());
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(y[i])) << i;
  // |x| = 100: loss 100 (wrong side) or ~3.7e-44 (right side).
  EXPECT_NEAR(y[0], 100.0, 100.0 * rtol<T>());
  EXPECT_NEAR(y[1], 100.0, 100.0 * rtol<T>());
  EXPECT_GE(y[2], T(0));
  EXPECT_LT(y[2], T(1e-40));
  // The loss is a difference of O(|x|) terms: absolute error ~ ulp(|x|).
  EXPECT_TRUE(all_close(y, l, rtol<T>(), std::is_same_v<T, float> ? 4e-6 : 1e-14));

  auto gx = nans<T>(n), gt = nans<T>(n);
  k::sigmoid_ce_bwd<T>(n, x.data(), t.data(), dl.data(), gx.data(), gt.data());
  // sigmoid(x) - t cancels when t ~ sigmoid(x): absolute error ~ ulp(1) * |dl|.
  EXPECT_TRUE(all_close(gx, dlog, 4 * rtol<T>(), std::is_same_v<T, float> ? 1e-6 : 1e-15));
  EXPECT_TRUE(all_close(gt, dtgt, rtol<T>(), 0.0));
  for (int64_t i = 0; i < n; ++i) ASSERT_TRUE(std::isfinite(gx[i])) << i;
  // Either output may be null.
  auto gx2 = nans<T>(n), gt2 = nans<T>(n);
  k::sigmoid_ce_bwd<T>(n, x.data(), t.data(), dl.data(), gx2.data(), nullptr);
  k::sigmoid_ce_bwd<T>(n, x.data(), t.data(), dl.data(), nullptr, gt2.data());
  EXPECT_TRUE(all_close(gx2, gx, 0.0, 0.0));
  EXPECT_TRUE(all_close(gt2, gt, 0.0, 0.0));
}

namespace {

// Reference log N(x; m, exp(lv)) summed per row, and its gradients, in double.
struct LogPdfRef {
  std::vector<double> out, dx, dm, dlv;
};
template <typename T>
LogPdfRef log_pdf_ref(int N, int D, const std::vector<T>& x, const T* m, const T* lv,
                      const std::vector<T>& dout) {
  const double log2pi = std::log(2 * M_PI);
  LogPdfRef r{std::vector<double>(N, 0.0), {}, {}, {}};
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < D; ++j) {
      const size_t k = static_cast<size_t>(i * D + j);
      const double d = static_cast<double>(x[k]) - (m ? static_cast<double>(m[k]) : 0.0);
      const double l = lv ? static_cast<double>(lv[k]) : 0.0;
      r.out[i] += -0.5 * (d * d / std::exp(l) + l + log2pi);
      r.dx.push_back(-static_cast<double>(dout[i]) * d / std::exp(l));
      r.dm.push_back(static_cast<double>(dout[i]) * d / std::exp(l));
      r.dlv.push_back(static_cast<double>(dout[i]) * -0.5 * (1 - d * d / std::exp(l)));
    }
  return r;
}

}  // namespace

TYPED_TEST(Elementwise, LogNormalPdf) {
  using T = TypeParam;
  const int N = 7, D = 13;
  const size_t n = static_cast<size_t>(N * D);
  auto x = random_vector<T>(n, 15, -3, 3), m = random_vector<T>(n, 16, -1, 1);
  auto lv = random_vector<T>(n, 17, -2, 2), dout = random_vector<T>(N, 18, -1, 1);
  for (int variant = 0; variant < 3; ++variant) {
    const T* mp = variant == 0 ? m.data() : nullptr;
    const T* lp = variant == 2 ? nullptr : lv.data();
    const LogPdfRef r = log_pdf_ref(N, D, x, mp, lp, dout);
    auto out = nans<T>(N);
    k::log_normal_pdf_fwd<T>(N, D, x.data(), mp, lp, out.data());
    EXPECT_TRUE(all_close(out, r.out, rtol<T>(), 0.0)) << "variant " << variant;
    auto dx = nans<T>(n), dm = nans<T>(n), dlv = nans<T>(n);
    k::log_normal_pdf_bwd<T>(N, D, x.data(), mp, lp, dout.data(), dx.data(), dm.data(),
                             dlv.data());
    EXPECT_TRUE(all_close(dx, r.dx, rtol<T>(), 1e-300)) << "variant " << variant;
    EXPECT_TRUE(all_close(dm, r.dm, rtol<T>(), 1e-300)) << "variant " << variant;
    // dlogvar = 0.5*dout*(d^2/var - 1) cancels near d^2 = var: absolute part.
    EXPECT_TRUE(all_close(dlv, r.dlv, rtol<T>(), std::is_same_v<T, float> ? 1e-6 : 1e-14))
        << "variant " << variant;
    // Null outputs are skipped.
    auto dx2 = nans<T>(n);
    k::log_normal_pdf_bwd<T>(N, D, x.data(), mp, lp, dout.data(), dx2.data(), nullptr, nullptr);
    EXPECT_TRUE(all_close(dx2, dx, 0.0, 0.0));
  }
}

TYPED_TEST(Elementwise, KlNormal) {
  using T = TypeParam;
  const int N = 5, D = 11;
  const size_t n = static_cast<size_t>(N * D);
  auto m = random_vector<T>(n, 19, -2, 2), lv = random_vector<T>(n, 20, -3, 3);
  auto dout = random_vector<T>(N, 21, -1, 1);
  std::vector<double> out(N, 0.0), dm(n), dlv(n);
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < D; ++j) {
      const size_t k = static_cast<size_t>(i * D + j);
      const double mi = m[k], li = lv[k];
      out[i] += -0.5 * (1 + li - mi * mi - std::exp(li));
      dm[k] = static_cast<double>(dout[i]) * mi;
      dlv[k] = static_cast<double>(dout[i]) * 0.5 * (std::exp(li) - 1);
    }
  auto y = nans<T>(N);
  k::kl_normal_fwd<T>(N, D, m.data(), lv.data(), y.data());
  EXPECT_TRUE(all_close(y, out, rtol<T>(), 0.0));
  auto gm = nans<T>(n), glv = nans<T>(n);
  k::kl_normal_bwd<T>(N, D, m.data(), lv.data(), dout.data(), gm.data(), glv.data());
  EXPECT_TRUE(all_close(gm, dm, rtol<T>(), 0.0));
  EXPECT_TRUE(all_close(glv, dlv, rtol<T>(), 1e-15));
  auto gm2 = nans<T>(n), glv2 = nans<T>(n);
  k::kl_normal_bwd<T>(N, D, m.data(), lv.data(), dout.data(), gm2.data(), nullptr);
  k::kl_normal_bwd<T>(N, D, m.data(), lv.data(), dout.data(), nullptr, glv2.data());
  EXPECT_TRUE(all_close(gm2, gm, 0.0, 0.0));
  EXPECT_TRUE(all_close(glv2, glv, 0.0, 0.0));
}

// Finite differences in double confirm the gradient formulas the references use.
TEST(LossGradients, FiniteDifferencesDouble) {
  const int N = 2, D = 3;
  const size_t n = N * D;
  auto x = random_vector<double>(n, 22, -2, 2), m = random_vector<double>(n, 23);
  auto lv = random_vector<double>(n, 24), dout = random_vector<double>(N, 25);
  std::vector<double> dx(n), dm(n), dlv(n), km(n), klv(n);
  k::log_normal_pdf_bwd<double>(N, D, x.data(), m.data(), lv.data(), dout.data(), dx.data(),
                                dm.data(), dlv.data());
  k::kl_normal_bwd<double>(N, D, m.data(), lv.data(), dout.data(), km.data(), klv.data());
  auto objective = [&](int which) {  // sum_i dout[i] * f_i
    std::vector<double> o(N);
    if (which == 0)
      k::log_normal_pdf_fwd<double>(N, D, x.data(), m.data(), lv.data(), o.data());
    else
      k::kl_normal_fwd<double>(N, D, m.data(), lv.data(), o.data());
    return dout[0] * o[0] + dout[1] * o[1];
  };
  const double h = 1e-6;
  auto fd = [&](int which, std::vector<double>& v, size_t k) {
    const double keep = v[k];
    v[k] = keep + h;
    const double up = objective(which);
    v[k] = keep - h;
    const double down = objective(which);
    v[k] = keep;
    return (up - down) / (2 * h);
  };
  for (size_t k = 0; k < n; ++k) {
    EXPECT_NEAR(dx[k], fd(0, x, k), 1e-7);
    EXPECT_NEAR(dm[k], fd(0, m, k), 1e-7);
    EXPECT_NEAR(dlv[k], fd(0, lv, k), 1e-7);
    EXPECT_NEAR(km[k], fd(1, m, k), 1e-7);
    EXPECT_NEAR(klv[k], fd(1, lv, k), 1e-7);
  }
}

// Adam, three steps, lr 0.1, betas (0.9, 0.999), eps 1e-8. Expected values
// computed by hand (50-digit decimal arithmetic of the formula in kernels.h):
//   p0 = 1,   g = 0.5, -0.25, 0.1  -> p = 0.9000000020, 0.8733662987078462, 0.8418419430257160
//   p0 = -2,  g = 3, 3, 3          -> p = -2.0999999996666667, -2.1999999993333333, -2.2999999990000000
//   p0 = 0.5, g = 0, 1e-3, 0       -> p = 0.5, 0.42558736973368934, 0.36806637389094788
TYPED_TEST(Elementwise, AdamThreeSteps) {
  using T = TypeParam;
  const double g[3][3] = {{0.5, 3, 0}, {-0.25, 3, 1e-3}, {0.1, 3, 0}};
  const double want[3][3] = {{0.90000000199999996, -2.0999999996666667, 0.5},
                             {0.87336629870784616, -2.1999999993333333, 0.42558736973368934},
                             {0.84184194302571600, -2.2999999990000000, 0.36806637389094788}};
  const double want_m[3] = {0.0280, 0.813, 0.00009};
  const double want_v[3] = {0.00032193775, 0.026973009, 9.99e-10};
  std::vector<T> p = {T(1), T(-2), T(0.5)}, m(3, T(0)), v(3, T(0));
  for (int t = 0; t < 3; ++t) {
    std::vector<T> gt = {T(g[t][0]), T(g[t][1]), T(g[t][2])};
    k::adam_step<T>(3, p.data(), gt.data(), m.data(), v.data(), 0.1, 0.9, 0.999, 1e-8, t + 1);
    // float: the update is computed in float; its rounding (~1e-7 of 0.1) shows up
    // absolutely in p.
    EXPECT_TRUE(all_close(p.data(), want[t], 3, std::is_same_v<T, float> ? 1e-6 : 1e-14,
                          std::is_same_v<T, float> ? 1e-7 : 1e-15))
        << "step " << t + 1;
  }
  EXPECT_TRUE(all_close(m.data(), want_m, 3, 8 * rtol<T>(), 0.0));
  EXPECT_TRUE(all_close(v.data(), want_v, 3, 8 * rtol<T>(), 0.0));
}

// Adam over a long odd-sized tensor vs a double reference of the same formula.
TYPED_TEST(Elementwise, AdamMatchesReference) {
  using T = TypeParam;
  const int64_t n = 100003;  // parallel path
  auto p = random_vector<T>(n, 26), m = random_vector<T>(n, 27, -0.1, 0.1);
  auto v = random_vector<T>(n, 28, 0, 0.01);
  auto g = random_vector<T>(n, 29);
  std::vector<double> pr = to_double(p), mr = to_double(m), vr = to_double(v);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const int64_t step = 7;
  for (int64_t i = 0; i < n; ++i) {
    mr[i] = b1 * mr[i] + (1 - b1) * g[i];
    vr[i] = b2 * vr[i] + (1 - b2) * static_cast<double>(g[i]) * g[i];
    pr[i] -= lr * (mr[i] / (1 - std::pow(b1, 7))) / (std::sqrt(vr[i] / (1 - std::pow(b2, 7))) + eps);
  }
  k::adam_step<T>(n, p.data(), g.data(), m.data(), v.data(), lr, b1, b2, eps, step);
  // b1*m + (1-b1)*g cancels: absolute error ~ ulp(0.1).
  EXPECT_TRUE(all_close(m, mr, 4 * rtol<T>(), std::is_same_v<T, float> ? 3e-8 : 1e-16));
  EXPECT_TRUE(all_close(v, vr, 4 * rtol<T>(), 1e-18));
  // The step is <= ~lr/(1-b1^7) in size; its float rounding is absolute in p.
  EXPECT_TRUE(all_close(p, pr, 4 * rtol<T>(), std::is_same_v<T, float> ? 1e-8 : 1e-16));
}

TYPED_TEST(Elementwise, Sgd) {
  using T = TypeParam;
  const int64_t n = 1003;
  auto p = random_vector<T>(n, 30), g = random_vector<T>(n, 31);
  std::vector<double> ref(n);
  for (int64_t i = 0; i < n; ++i) ref[i] = static_cast<double>(p[i]) - 0.01 * g[i];
  k::sgd_step<T>(n, p.data(), g.data(), 0.01);
  EXPECT_TRUE(all_close(p, ref, rtol<T>(), 1e-16));
}
