// conv_thin.h (kernels/cpu internal): the convolution passes with one channel on one side
// (C = 1: the encoder's conv1 reads the image, the decoder's deconv3 writes the logits).
// Their GEMMs have a reduction or an output of only R*S = 9 rows, so packing and 9-row
// tiles cost more than the arithmetic (25-47 GFLOP/s); these kernels vectorize over
// output positions with the weights broadcast instead, and never pack:
//   fprop: per image, the 9 shifted copies of the plane ("columns", a few KB), then
//          y[k] = sum_t w[k,t] col[t] for every channel k, straight into y.
//   dgrad (stride 1): per image, dy's planes a few at a time with a zero border, and
//          dx = sum_k sum_t w[k,t] dy_k shifted by tap t, over the bordered row length,
//          a band of rows at a time so that each load serves three rows' taps.
//   wgrad: per batch slot, dw[k,t] = sum over the slot's positions of dy[k] col[t].
// Every output element is summed by one thread in a fixed order: the results do not
// depend on the thread count. The shape alone decides whether these kernels run.
//
// The vector code is compiled once per ISA (conv_thin_core.h, conv_thin_<isa>.cpp); this
// header holds plain structs and declarations only (see gemm_views.h on why).
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace cvae::kernels::cpu {

constexpr int kThinTaps = 9;               // R*S of the shapes these kernels take (3x3)
constexpr int kThinDgradPlanes = 4;        // dy planes bordered at a time (dgrad)
constexpr int kThinDgradRows = 4;          // dx rows summed at once (dgrad)
constexpr int kThinMaxLanes = 16;          // the widest vector's lanes (float, AVX-512)
constexpr int64_t kThinScratchBytes = 256 * 1024;  // scratch per thread a shape may use

// The geometry of one shape, worked out once by the dispatcher (conv_thin.cpp).
struct ThinPlan {
  int rows = 0;          // output rows per column chunk (fprop, wgrad)
  int ld = 0;            // a column's length: rows*Q rounded up to kThinMaxLanes, zeros after
  PlaneBorder border;    // dgrad: dy's zero border
  int Qp = 0;            // dgrad: a bordered dy row, a multiple of kThinMaxLanes; dx is
                         // summed over rows of this length
  int rows_acc = 0;      // dgrad: H rounded up to kThinDgradRows
  int64_t plane = 0;     // dgrad: one bordered plane in scratch, with zero slack past it
  int64_t acc = 0;       // dgrad: the sum plane, rows_acc * Qp
  int64_t base = 0;      // dgrad: tap (r, s) reads a bordered plane at base - r*Qp - s
};

// One image (fprop, dgrad) or images [n0, n1) summed into dw (wgrad); x, dy, y and dx
// point at image 0 of the batch; scratch holds kThinScratchBytes.
#define CVAE_THIN_DECLARE(ns, T)                                                              \
  namespace ns {                                                                              \
  void thin_fprop_image(const ThinPlan&, const Conv2dShape&, const T* x, const T* w,           \
                        const T* bias, bool relu, T* y, T* scratch);                          \
  void thin_dgrad_image(const ThinPlan&, const Conv2dShape&, const T* dy, const T* w,          \
                        const T* bias, bool relu, T* dx, T* scratch);                         \
  void thin_wgrad_images(const ThinPlan&, const Conv2dShape&, const T* x, const T* dy, int n0, \
                         int n1, T* dw, T* scratch);                                          \
  }
CVAE_THIN_DECLARE(generic, float)
CVAE_THIN_DECLARE(generic, double)
CVAE_THIN_DECLARE(avx2, float)
CVAE_THIN_DECLARE(avx2, double)
CVAE_THIN_DECLARE(avx512, float)
CVAE_THIN_DECLARE(avx512, double)
#undef CVAE_THIN_DECLARE

// Which passes of s these kernels take (conv2d.cpp asks before its own forms).
bool thin_fprop_applies(const Conv2dShape& s);
bool thin_dgrad_applies(const Conv2dShape& s);
bool thin_wgrad_applies(const Conv2dShape& s);

template <typename T>
void thin_fprop(const Conv2dShape& s, const T* x, const T* w, const T* bias, bool relu, T* y);
template <typename T>
void thin_dgrad(const Conv2dShape& s, const T* dy, const T* w, const T* bias, bool relu, T* dx);
// thin_fprop, each image's output (into image_out, one image per thread) then through
// bias_act_bwd_bordered_image with yd and border b into dpre, its row sums into
// rowsum[n*K + k]: conv2d_fprop_relu_bwd_bordered (kernels.h) without the bias sums.
template <typename T>
void thin_fprop_relu_bwd(const Conv2dShape& s, const T* x, const T* w, const T* yd,
                         const PlaneBorder& b, T* dpre, double* rowsum, T* image_out);
// Images [n0, n1) of the batch into dw (overwritten): one wgrad batch slot, on this thread.
template <typename T>
void thin_wgrad_slot(const Conv2dShape& s, const T* x, const T* dy, int n0, int n1, T* dw);

}  // namespace cvae::kernels::cpu
