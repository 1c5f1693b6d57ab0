// conv_shapes.cpp: the Conv2dShape builders (TF `valid` / `same`, Conv2DTranspose `same`)
// and the CPU conv workspace size. Pure integer arithmetic with argument checks; no
// compute kernels live here (see kernels/cpu/conv2d.cpp).
#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"

namespace cvae::kernels {
namespace {

// Batch slots of the CPU wgrad: images are split into min(N, kConvSlots) contiguous
// ranges, each summed into its own partial dw. A constant, not the thread count, so
// results never depend on it.
constexpr int kConvSlots = 8;

void require(bool ok, const char* what) {
  if (!ok) throw std::invalid_argument(std::string("conv2d shape: ") + what);
}

void check_common(int N, int C, int H, int W, int K, int R, int S, int stride) {
  require(N >= 1 && C >= 1 && K >= 1, "N, C and K must be >= 1");
  require(H >= 1 && W >= 1, "H and W must be >= 1");
  require(R >= 1 && S >= 1, "R and S must be >= 1");
  require(stride >= 1, "stride must be >= 1");
}

// P = ceil(H / stride); total padding max((P-1)*stride + R - H, 0); returns the top part.
int same_out(int H, int R, int stride, int* pad_top) {
  int P = (H + stride - 1) / stride;
  int total = std::max((P - 1) * stride + R - H, 0);
  *pad_top = total / 2;
  return P;
}

}  // namespace

Conv2dShape conv2d_shape_valid(int N, int C, int H, int W, int K, int R, int S, int stride) {
  check_common(N, C, H, W, K, R, S, stride);
  require(H >= R && W >= S, "`valid` needs the input at least as large as the kernel");
  int P = (H - R) / stride + 1, Q = (W - S) / stride + 1;
  return Conv2dShape{N, C, H, W, K, R, S, P, Q, stride, stride, 0, 0};
}

Conv2dShape conv2d_shape_same(int N, int C, int H, int W, int K, int R, int S, int stride) {
  check_common(N, C, H, W, K, R, S, stride);
  int pad_h = 0, pad_w = 0;
  int P = same_out(H, R, stride, &pad_h);
  int Q = same_out(W, S, stride, &pad_w);
  return Conv2dShape{N, C, H, W, K, R, S, P, Q, stride, stride, pad_h, pad_w};
}

Conv2dShape conv_transpose2d_shape_same(int N, int Cin, int H, int W, int Cout, int R, int S,
                                        int stride) {
  check_common(N, Cin, H, W, Cout, R, S, stride);
  require(static_cast<long long>(H) * stride <= 1 << 30 &&
              static_cast<long long>(W) * stride <= 1 << 30,
          "H*stride or W*stride overflows");
  // The forward conv: input = transposed output [N,Cout,H*s,W*s], output [N,Cin,H,W].
  return conv2d_shape_same(N, Cout, H * stride, W * stride, Cin, R, S, stride);
}

// slots = min(N, kConvSlots)
int conv2d_batch_slots(const Conv2dShape& s) { return std::max(1, std::min(s.N, kConvSlots)); }

}  // namespace cvae::kernels
