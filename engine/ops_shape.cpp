// ops_shape.cpp: sums and means over axes, reshape/flatten, split along dim 1.
// A sum over any axis set is a chain of one primitive: the sum over one run
// of adjacent axes, seen as [outer, mid, inner] (its backward broadcasts).
#include <algorithm>
#include <cstring>

#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {

using detail::check;

int64_t prod(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

// Sum over axes [first, last] (adjacent), which are removed from the shape.
Tensor sum_run(const Tensor& x, size_t first, size_t last) {
  const Shape& xs = x.shape();
  int64_t outer = prod(xs, 0, first), mid = prod(xs, first, last + 1),
          inner = prod(xs, last + 1, xs.size());
  Shape ys(xs.begin(), xs.begin() + static_cast<int64_t>(first));
  ys.insert(ys.end(), xs.begin() + static_cast<int64_t>(last) + 1, xs.end());
  Tensor y = Tensor::empty(ys, x.dtype(), x.device());
  CVAE_RUN_KERNEL(x, sum_mid, outer, mid, inner, x.data<T>(), y.data<T>());
  Shape shape = xs;
  return attach(y, {x}, [shape, outer, mid, inner](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::empty(shape, dy.dtype(), dy.device());
    CVAE_RUN_KERNEL(dy, broadcast_mid, outer, mid, inner, T(1), dy.data<T>(), dx.data<T>());
    return {dx};
  });
}

// Normalised, sorted, unique axes; throws on an axis out of range.
std::vector<size_t> normalise_axes(const Tensor& x, std::vector<int> axes, const char* op) {
  int64_t n = x.dim();
  std::vector<size_t> out;
  for (int a : axes) {
    int64_t b = a < 0 ? a + n : a;
    check(b >= 0 && b < n, op, "axis " + std::to_string(a) + " out of range for " + shape_str(x.shape()));
    out.push_back(static_cast<size_t>(b));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

int64_t reduced_count(const Tensor& x, const std::vector<size_t>& axes) {
  int64_t c = 1;
  for (size_t a : axes) c *= x.shape()[a];
  return c;
}

// Copies `rows` rows of `bytes` bytes from src (row stride src_stride) to dst
// (row stride dst_stride), all in bytes, on t's device.
void copy_rows(const Tensor& t, char* dst, int64_t dst_stride, const char* src, int64_t src_stride,
               int64_t rows, int64_t bytes) {
  for (int64_t r = 0; r < rows; ++r) {
    if (t.device() == Device::CPU) {
      std::memcpy(dst + r * dst_stride, src + r * src_stride, static_cast<size_t>(bytes));
    } else {
      CVAE_CUDA_ONLY(kernels::cuda::memcpy_d2d(dst + r * dst_stride, src + r * src_stride,
                                               static_cast<size_t>(bytes), cuda_stream()));
    }
  }
}

// Narrow along dim 1: y = x[:, start:start+len, ...]; dx = zeros with dy placed.
Tensor narrow1(const Tensor& x, int64_t start, int64_t len) {
  Shape ys = x.shape();
  ys[1] = len;
  int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  int64_t rows = x.size(0), inner = prod(x.shape(), 2, x.shape().size());
  int64_t xrow = x.size(1) * inner * es, yrow = len * inner * es, off = start * inner * es;
  Tensor y = Tensor::empty(ys, x.dtype(), x.device());
  copy_rows(x, static_cast<char*>(y.raw()), yrow, static_cast<const char*>(x.raw()) + off, xrow, rows, yrow);
  Shape xs = x.shape();
  return attach(y, {x}, [xs, rows, xrow, yrow, off](const Tensor& dy) -> std::vector<Tensor> {
    Tensor dx = Tensor::zeros(xs, dy.dtype(), dy.device());
    copy_rows(dy, static_cast<char*>(dx.raw()) + off, xrow, static_cast<const char*>(dy.raw()), yrow,
              rows, yrow);
    return {dx};
  });
}

}  // namespace

Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdim) {
  detail::check_same_kind("sum", {&x});
  std::vector<size_t> ax = normalise_axes(x, std::move(axes), "sum");
  Shape kept = x.shape();
  for (size_t a : ax) kept[a] = 1;
  Tensor y = x;
  // Runs of adjacent axes, last run first, so earlier axis numbers stay valid.
  for (size_t end = ax.size(); end > 0;) {
    size_t begin = end - 1;
    while (begin > 0 && ax[begin - 1] + 1 == ax[begin]) --begin;
    y = sum_run(y, ax[begin], ax[end - 1]);
    end = begin;
  }
  return keepdim ? reshape(y, kept) : y;
}

Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdim) {
  int64_t count = reduced_count(x, normalise_axes(x, axes, "mean"));
  check(count > 0, "mean", "mean over an empty axis");
  return scale(sum(x, std::move(axes), keepdim), 1.0 / static_cast<double>(count));
}

Tensor sum(const Tensor& x) {
  detail::check_same_kind("sum", {&x});
  if (x.dim() == 0) return reshape(x, {});
  return reshape(sum_run(reshape(x, {x.numel()}), 0, 0), {});
}

Tensor mean(const Tensor& x) {
  check(x.numel() > 0, "mean", "mean of an empty tensor");
  return scale(sum(x), 1.0 / static_cast<double>(x.numel()));
}

// Shares x's storage;  dx = reshape(dy, x.shape)
Tensor reshape(const Tensor& x, Shape shape) {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      check(infer < 0, "reshape", "more than one -1 in " + shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      check(shape[i] >= 0, "reshape", "negative dimension in " + shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    check(known > 0 && x.numel() % known == 0, "reshape",
          "cannot infer -1 in " + shape_str(shape) + " for " + shape_str(x.shape()));
    shape[static_cast<size_t>(infer)] = x.numel() / known;
  }
  check(shape_numel(shape) == x.numel(), "reshape",
        "cannot view " + shape_str(x.shape()) + " as " + shape_str(shape));
  Tensor y = x.detach();
  y.impl()->shape = shape;
  Shape xs = x.shape();
  return attach(y, {x}, [xs](const Tensor& dy) -> std::vector<Tensor> { return {reshape(dy, xs)}; });
}

Tensor flatten(const Tensor& x) {
  check(x.dim() >= 1, "flatten", "needs a batch dimension");
  return reshape(x, {x.size(0), -1});
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes) {
  detail::check_same_kind("split", {&x});
  check(x.dim() >= 2, "split", "needs at least 2 dimensions, got " + shape_str(x.shape()));
  int64_t total = 0;
  for (int64_t s : sizes) {
    check(s >= 0, "split", "negative size");
    total += s;
  }
  check(total == x.size(1), "split",
        "sizes add up to " + std::to_string(total) + ", dim 1 is " + std::to_string(x.size(1)));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow1(x, start, s));
    start += s;
  }
  return out;
}

}  // namespace cvae
