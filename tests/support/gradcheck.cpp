// gradcheck.cpp: central differences in float64 against the tape.
#include "support/gradcheck.h"

#include <random>
#include <sstream>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "test_util.h"

namespace cvae::testing {
namespace {

double objective(const TensorFn& f, const std::vector<Tensor>& inputs, const Tensor& r) {
  NoGradGuard no_grad;
  Tensor out = f(inputs);
  const double* po = out.data<double>();
  const double* pr = r.data<double>();
  double s = 0;
  for (int64_t i = 0; i < out.numel(); ++i) s += po[i] * pr[i];
  return s;
}

// The element indices to check: all, or a fixed random sample.
std::vector<int64_t> elements_to_check(int64_t n, int64_t max_elems, uint32_t seed) {
  std::vector<int64_t> idx;
  if (max_elems <= 0 || n <= max_elems) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  for (int64_t k = 0; k < max_elems; ++k) idx.push_back(pick(gen));
  return idx;
}

}  // namespace

::testing::AssertionResult gradcheck(const TensorFn& f, std::vector<Tensor> inputs,
                                     GradcheckOptions opt) {
  for (const Tensor& t : inputs)
    if (t.defined() && t.dtype() != DType::F64)
      return ::testing::AssertionFailure() << "gradcheck needs float64 inputs";
  Tensor out = f(inputs);
  Tensor r = Tensor::from_vector(random_vector<double>(out.numel(), 1234, 0.5, 1.5), out.shape());
  for (Tensor& t : inputs)
    if (t.defined()) t.zero_grad();
  sum(mul(out, r)).backward();

  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad();
    if (!g.defined()) return ::testing::AssertionFailure() << "input " << k << " got no gradient";
    std::vector<int64_t> idx = elements_to_check(x.numel(), opt.max_elems, 99 + uint32_t(k));
    std::vector<double> analytic, numeric;
    double* px = x.data<double>();
    for (int64_t j : idx) {
      double saved = px[j];
      px[j] = saved + opt.h;
      double lp = objective(f, inputs, r);
      px[j] = saved - opt.h;
      double lm = objective(f, inputs, r);
      px[j] = saved;
      numeric.push_back((lp - lm) / (2 * opt.h));
      analytic.push_back(g.data<double>()[j]);
    }
    auto res = all_close(analytic, numeric, opt.rtol, opt.atol);
    if (!res) return ::testing::AssertionFailure() << "input " << k << " " << shape_str(x.shape())
                                                   << ": analytic vs numeric: " << res.message();
  }
  return ::testing::AssertionSuccess();
}

Tensor random_leaf(const Shape& shape, uint32_t seed, double lo, double hi, bool requires_grad) {
  Tensor t = Tensor::from_vector(random_vector<double>(size_t(shape_numel(shape)), seed, lo, hi), shape);
  if (requires_grad) t.set_requires_grad(true);
  return t;
}

Tensor random_leaf_away_from_zero(const Shape& shape, uint32_t seed, double lo, double hi) {
  std::vector<double> v = random_vector<double>(size_t(shape_numel(shape)), seed, lo, hi);
  std::vector<double> sign = random_vector<double>(v.size(), seed + 7, -1.0, 1.0);
  for (size_t i = 0; i < v.size(); ++i) v[i] = sign[i] < 0 ? -v[i] : v[i];
  Tensor t = Tensor::from_vector(v, shape);
  t.set_requires_grad(true);
  return t;
}

}  // namespace cvae::testing
