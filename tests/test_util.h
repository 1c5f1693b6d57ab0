// test_util.h: the one comparator and the random inputs the suites share.
// Tolerance rule, everywhere: |got - ref| <= atol + rtol * |ref|. A test that
// overrides the defaults says why next to the call.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace cvae::testing {

// Compares n elements; on failure reports the count of bad elements, the
// maximum error and the five worst elements (index, got, ref).
template <typename A, typename B>
::testing::AssertionResult all_close(const A* got, const B* ref, int64_t n, double rtol,
                                     double atol) {
  std::vector<std::pair<double, int64_t>> bad;
  double max_err = 0;
  for (int64_t i = 0; i < n; ++i) {
    double g = static_cast<double>(got[i]), r = static_cast<double>(ref[i]);
    double err = std::fabs(g - r);
    if (!(err <= atol + rtol * std::fabs(r))) bad.emplace_back(std::isnan(err) ? 1e300 : err, i);
    if (!(err <= max_err)) max_err = err;
  }
  if (bad.empty()) return ::testing::AssertionSuccess();
  std::sort(bad.rbegin(), bad.rend());
  std::ostringstream os;
  os << bad.size() << " of " << n << " elements differ (rtol " << rtol << ", atol " << atol
     << "), max error " << max_err << "; worst:";
  for (size_t k = 0; k < std::min<size_t>(5, bad.size()); ++k) {
    int64_t i = bad[k].second;
    os << "\n  [" << i << "] got " << static_cast<double>(got[i]) << " ref "
       << static_cast<double>(ref[i]);
  }
  return ::testing::AssertionFailure() << os.str();
}

template <typename A, typename B>
::testing::AssertionResult all_close(const std::vector<A>& got, const std::vector<B>& ref,
                                     double rtol, double atol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure()
           << "size " << got.size() << " != reference size " << ref.size();
  return all_close(got.data(), ref.data(), static_cast<int64_t>(got.size()), rtol, atol);
}

// Largest |x|: used to scale an absolute tolerance to the data.
template <typename T>
double max_abs(const std::vector<T>& v) {
  double m = 0;
  for (const T& x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// Uniform random values in [lo, hi), reproducible from the seed. Tests never
// check kernels on zeros: a kernel that writes nothing must fail.
template <typename T>
std::vector<T> random_vector(size_t n, uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(gen));
  return v;
}

}  // namespace cvae::testing
