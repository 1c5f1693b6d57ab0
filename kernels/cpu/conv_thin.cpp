// conv_thin.cpp: when the one-channel kernels (conv_thin.h) run, their geometry, each
// thread's scratch, the threads over images, and the dispatch to the CPU's code path.
#include "kernels/cpu/conv_thin.h"

#include <omp.h>

#include <algorithm>

#include "kernels/cpu/gemm_views.h"

namespace cvae::kernels::cpu {
namespace {

constexpr int kChunkPositions = 1024;  // output positions per column chunk (about)

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// C = 1 and a 3x3 filter (kThinTaps).
bool thin_shape(const Conv2dShape& s) { return s.C == 1 && s.R == 3 && s.S == 3; }

ThinPlan plan_of(const Conv2dShape& s) {
  ThinPlan pl;
  pl.rows = std::max(1, std::min(s.P, kChunkPositions / s.Q));
  pl.ld = (int)round_up(int64_t(pl.rows) * s.Q, kThinMaxLanes);
  if (s.stride_h == 1 && s.stride_w == 1) {  // dgrad: dy bordered so that every tap reads inside
    PlaneBorder& b = pl.border;
    b.top = std::max(0, s.R - 1 - s.pad_h), b.bottom = std::max(0, s.H - s.P + s.pad_h);
    b.left = std::max(0, s.S - 1 - s.pad_w);
    // Rows of whole vectors (the zeros on the right pad them) and >= W, so dx's rows fit.
    pl.Qp = (int)round_up(s.Q + b.left + std::max(0, s.W - s.Q + s.pad_w), kThinMaxLanes);
    b.right = pl.Qp - s.Q - b.left;
    pl.rows_acc = (int)round_up(s.H, kThinDgradRows);
    pl.acc = int64_t(pl.rows_acc) * pl.Qp;
    pl.base = int64_t(s.pad_h + b.top) * pl.Qp + (s.pad_w + b.left);
    // the dropped rows and columns read up to acc - 1 + base
    const int64_t bordered = int64_t(s.P + b.top + b.bottom) * pl.Qp;
    pl.plane = round_up(std::max(bordered, pl.acc + pl.base), kThinMaxLanes);
  }
  return pl;
}

// Elements of T each pass needs in one thread's scratch.
int64_t fprop_scratch(const ThinPlan& pl) { return int64_t(kThinTaps) * pl.ld; }
int64_t dgrad_scratch(const ThinPlan& pl) { return pl.acc + kThinDgradPlanes * pl.plane; }
int64_t wgrad_scratch(const ThinPlan& pl, const Conv2dShape& s) {
  return int64_t(kThinTaps) * pl.ld + int64_t(s.K) * kThinTaps * kThinMaxLanes;
}
template <typename T>
bool fits(int64_t elems) {
  return elems * int64_t(sizeof(T)) <= kThinScratchBytes;
}

// Each thread's scratch is its GEMM B-packing buffer (kernels never allocate): these
// kernels call no GEMM, and a GEMM keeps nothing packed from one call to the next.
static_assert(kThinScratchBytes <= kGemmPackBBytes, "the scratch lives in the B buffer");
template <typename T>
T* scratch() {
  return reinterpret_cast<T*>(gemm_pack_b_buffer());
}

template <typename T>
struct Kernels {
  void (*fprop)(const ThinPlan&, const Conv2dShape&, const T*, const T*, const T*, bool, T*, T*);
  void (*dgrad)(const ThinPlan&, const Conv2dShape&, const T*, const T*, const T*, bool, T*, T*);
  void (*wgrad)(const ThinPlan&, const Conv2dShape&, const T*, const T*, int, int, T*, T*);
};

template <typename T>
Kernels<T> kernels() {
  switch (cpu_isa()) {
    case CpuIsa::Avx512:
      return {avx512::thin_fprop_image, avx512::thin_dgrad_image, avx512::thin_wgrad_images};
    case CpuIsa::Avx2:
      return {avx2::thin_fprop_image, avx2::thin_dgrad_image, avx2::thin_wgrad_images};
    case CpuIsa::Generic: break;
  }
  return {generic::thin_fprop_image, generic::thin_dgrad_image, generic::thin_wgrad_images};
}

// f(n) for every image n, images split statically over the threads (each image's
// outputs are one thread's, so the split does not change a bit).
template <typename F>
void for_each_image(int N, F f) {
#pragma omp parallel for schedule(static) if (N > 1 && !omp_in_parallel())
  for (int n = 0; n < N; ++n) f(n);
}

}  // namespace

// The largest of the element types decides, so that float and double take the same path.
bool thin_fprop_applies(const Conv2dShape& s) {
  return thin_shape(s) && fits<double>(fprop_scratch(plan_of(s)));
}
bool thin_dgrad_applies(const Conv2dShape& s) {
  return thin_shape(s) && s.stride_h == 1 && s.stride_w == 1 &&
         fits<double>(dgrad_scratch(plan_of(s)));
}
bool thin_wgrad_applies(const Conv2dShape& s) {
  return thin_shape(s) && fits<double>(wgrad_scratch(plan_of(s), s));
}

// f (a per-image kernel) for every image: in and out step by their images' elements.
template <typename T, typename F>
void per_image(const Conv2dShape& s, F f, const T* in, int64_t in_image, const T* w,
               const T* bias, bool relu, T* out, int64_t out_image) {
  const ThinPlan pl = plan_of(s);
  for_each_image(s.N, [&](int n) {
    f(pl, s, in + n * in_image, w, bias, relu, out + n * out_image, scratch<T>());
  });
}

template <typename T>
void thin_fprop(const Conv2dShape& s, const T* x, const T* w, const T* bias, bool relu, T* y) {
  const int64_t hw = int64_t(s.H) * s.W, kpq = int64_t(s.K) * s.P * s.Q;
  per_image(s, kernels<T>().fprop, x, hw, w, bias, relu, y, kpq);
}

template <typename T>
void thin_dgrad(const Conv2dShape& s, const T* dy, const T* w, const T* bias, bool relu, T* dx) {
  const int64_t hw = int64_t(s.H) * s.W, kpq = int64_t(s.K) * s.P * s.Q;
  per_image(s, kernels<T>().dgrad, dy, kpq, w, bias, relu, dx, hw);
}

template <typename T>
void thin_fprop_relu_bwd(const Conv2dShape& s, const T* x, const T* w, const T* yd,
                         const PlaneBorder& b, T* dpre, double* rowsum, T* image_out) {
  const ThinPlan pl = plan_of(s);
  const auto fprop = kernels<T>().fprop;
  const int64_t hw = int64_t(s.H) * s.W, kpq = int64_t(s.K) * s.P * s.Q;
  const int64_t kplanes = s.K * int64_t(s.P + b.top + b.bottom) * (s.Q + b.left + b.right);
#pragma omp parallel if (s.N > 1 && !omp_in_parallel())
  {
    T* out = image_out + omp_get_thread_num() * kpq;  // 0 in a team of one
#pragma omp for schedule(static)
    for (int n = 0; n < s.N; ++n) {
      fprop(pl, s, x + n * hw, w, nullptr, false, out, scratch<T>());
      bias_act_bwd_bordered_image<T>(s.K, s.P, s.Q, b, yd + n * kpq, out, dpre + n * kplanes,
                                     rowsum + int64_t(n) * s.K);
    }
  }
}

template <typename T>
void thin_wgrad_slot(const Conv2dShape& s, const T* x, const T* dy, int n0, int n1, T* dw) {
  kernels<T>().wgrad(plan_of(s), s, x, dy, n0, n1, dw, scratch<T>());
}

#define CVAE_INSTANTIATE_THIN(T)                                                             \
  template void thin_fprop<T>(const Conv2dShape&, const T*, const T*, const T*, bool, T*);  \
  template void thin_dgrad<T>(const Conv2dShape&, const T*, const T*, const T*, bool, T*);  \
  template void thin_wgrad_slot<T>(const Conv2dShape&, const T*, const T*, int, int, T*);     \
  template void thin_fprop_relu_bwd<T>(const Conv2dShape&, const T*, const T*, const T*,     \
                                       const PlaneBorder&, T*, double*, T*);
CVAE_INSTANTIATE_THIN(float)
CVAE_INSTANTIATE_THIN(double)
#undef CVAE_INSTANTIATE_THIN

}  // namespace cvae::kernels::cpu
