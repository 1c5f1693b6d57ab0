// plane_border.h (kernels/cpu internal): copying one [H, W] plane into a plane with a zero
// border, shared by the conv passes' bordered copies (conv2d.cpp) and the ReLU backward
// that writes its gradient bordered (elementwise.cpp). Both are baseline x86-64 code.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace cvae::kernels::cpu {

// GCC turns short zeroing and copy loops into memset / memcpy calls; clang has no such
// attribute (and warns about an unknown one).
#if defined(__GNUC__) && !defined(__clang__)
#define CVAE_KEEP_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CVAE_KEEP_LOOPS
#endif

// dst[h + top][w + left] = src[h][w], zeros in the border. Rows are short (6 to 28
// elements): the loops stay loops, not a memset or memcpy call per row.
template <typename T>
CVAE_KEEP_LOOPS inline void put_plane(
    int H, int W, const PlaneBorder& b, const T* src, T* dst) {
  const int Wp = W + b.left + b.right;
  for (int64_t i = 0; i < int64_t(b.top) * Wp; ++i) dst[i] = T(0);
  for (int h = 0; h < H; ++h) {
    T* row = dst + int64_t(h + b.top) * Wp;
    const T* in = src + int64_t(h) * W;
    for (int i = 0; i < b.left; ++i) row[i] = T(0);
    for (int i = 0; i < W; ++i) row[b.left + i] = in[i];
    for (int i = 0; i < b.right; ++i) row[b.left + W + i] = T(0);
  }
  T* tail = dst + int64_t(H + b.top) * Wp;
  for (int64_t i = 0; i < int64_t(b.bottom) * Wp; ++i) tail[i] = T(0);
}

}  // namespace cvae::kernels::cpu
