// gradcheck.h: the float64 finite-difference oracle for backward passes.
// For a function f of some tensors, compares the autograd gradient of
// L = sum(f(inputs) * r), r a fixed random tensor, with central differences
// (L(x + h e_j) - L(x - h e_j)) / 2h for every element j of every input that
// requires grad (or a fixed random sample of `max_elems` of them).
#pragma once

#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "engine/tensor.h"

namespace cvae::testing {

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradcheckOptions {
  double h = 1e-6;
  double rtol = 1e-5;
  double atol = 1e-7;
  int64_t max_elems = 0;  // 0: every element
};

::testing::AssertionResult gradcheck(const TensorFn& f, std::vector<Tensor> inputs,
                                     GradcheckOptions opt = {});

// A float64 leaf of the given shape, uniform in [lo, hi), requiring grad.
Tensor random_leaf(const Shape& shape, uint32_t seed, double lo = -1.0, double hi = 1.0,
                   bool requires_grad = true);

// Values in +-[lo, hi] with random sign: keeps inputs off kinks such as relu's 0.
Tensor random_leaf_away_from_zero(const Shape& shape, uint32_t seed, double lo = 0.1,
                                  double hi = 1.0);

}  // namespace cvae::testing
