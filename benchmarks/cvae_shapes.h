// cvae_shapes.h: what the kernel benchmarks (CPU and CUDA) share: the CVAE's
// five conv layers at batch 100 and reproducible random inputs.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace cvae::bench {

// Uniform in [-1, 1): real data, never zeros.
inline std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// The CVAE's conv layers. Transposed convs are given as the forward conv they
// transpose: their forward is its dgrad, their backward fprop + wgrad.
constexpr int kCvaeConvLayers = 5;
inline kernels::Conv2dShape cvae_conv_layer(int i, int batch = 100) {
  namespace kc = cvae::kernels;
  switch (i) {
    case 0: return kc::conv2d_shape_valid(batch, 1, 28, 28, 32, 3, 3, 2);          // conv1 28->13
    case 1: return kc::conv2d_shape_valid(batch, 32, 13, 13, 64, 3, 3, 2);         // conv2 13->6
    case 2: return kc::conv_transpose2d_shape_same(batch, 32, 7, 7, 64, 3, 3, 2);   // deconv1 7->14
    case 3: return kc::conv_transpose2d_shape_same(batch, 64, 14, 14, 32, 3, 3, 2); // deconv2 14->28
    default: return kc::conv_transpose2d_shape_same(batch, 32, 28, 28, 1, 3, 3, 1); // deconv3 28->28
  }
}

}  // namespace cvae::bench
