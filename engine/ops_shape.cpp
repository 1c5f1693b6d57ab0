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
    CVAE_CHECK(b >= 0 && b < n, op, "axis " + std::to_string(a) + " out of range for " + shape_str(x.shape()));
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
// (row stride dst_stride), all in bytes: the CPU side of narrow1.
void copy_rows(char* dst, int64_t dst_stride, const char* src, int64_t src_stride, int64_t rows,
               int64_t bytes) {
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(dst + r * dst_stride, src + r * src_stride, static_cast<size_t>(bytes));
}

// x seen as a [rows, cols] matrix (rows = size(0), cols = the rest), and where the piece
// of dim 1 [start, start+len) lies in it: columns [start*inner, (start+len)*inner).
struct Columns {
  int64_t rows, cols, offset, width;
};
Columns columns_of(const Tensor& x, int64_t start, int64_t len) {
  const int64_t inner = prod(x.shape(), 2, x.shape().size());
  return {x.size(0), x.size(1) * inner, start * inner, len * inner};
}

// The gradient of a piece: zeros with dy placed at its columns (one kernel on the GPU,
// which adds dy into x's gradient instead when another piece's is there already).
BackwardFn place_piece(const Tensor& x, const Columns& c) {
  return [x, c](const Tensor& dy) -> std::vector<Tensor> {
    const Shape& xs = x.shape();
    if (dy.device() == Device::CUDA) {
      Tensor so_far = grad_to_add_into(x);
      if (so_far.defined()) {
        CVAE_CUDA_ONLY(kernels::cuda::place_cols(c.rows, c.cols, c.offset, c.width, dy.data<float>(),
                                                 so_far.data<float>(), true, cuda_stream()));
        return {Tensor()};
      }
      Tensor dx = Tensor::empty(xs, dy.dtype(), dy.device());
      CVAE_CUDA_ONLY(kernels::cuda::place_cols(c.rows, c.cols, c.offset, c.width, dy.data<float>(),
                                               dx.data<float>(), false, cuda_stream()));
      return {dx};
    }
    Tensor dx = Tensor::zeros(xs, dy.dtype(), dy.device());
    const int64_t es = static_cast<int64_t>(dtype_size(dy.dtype()));
    copy_rows(static_cast<char*>(dx.raw()) + c.offset * es, c.cols * es, static_cast<const char*>(dy.raw()),
              c.width * es, c.rows, c.width * es);
    return {dx};
  };
}

// Narrow along dim 1 on the CPU: y = x[:, start:start+len, ...]; dx = zeros with dy placed.
Tensor narrow1(const Tensor& x, int64_t start, int64_t len) {
  Shape ys = x.shape();
  ys[1] = len;
  const Columns c = columns_of(x, start, len);
  const int64_t es = static_cast<int64_t>(dtype_size(x.dtype()));
  Tensor y = Tensor::empty(ys, x.dtype(), x.device());
  copy_rows(static_cast<char*>(y.raw()), c.width * es, static_cast<const char*>(x.raw()) + c.offset * es,
            c.cols * es, c.rows, c.width * es);
  return attach(y, {x}, place_piece(x, c));
}

// All pieces of a CUDA tensor in one strided-copy launch (no copy per row).
std::vector<Tensor> split_cuda(const Tensor& x, const std::vector<int64_t>& sizes) {
  std::vector<Tensor> out;
  int64_t start = 0;
#if defined(CVAE_HAVE_CUDA)
  std::vector<kernels::cuda::ColumnPiece> pieces;
#endif
  for (int64_t s : sizes) {
    Shape ys = x.shape();
    ys[1] = s;
    out.push_back(Tensor::empty(ys, x.dtype(), x.device()));
#if defined(CVAE_HAVE_CUDA)
    const Columns c = columns_of(x, start, s);
    pieces.push_back({out.back().data<float>(), c.offset, c.width});
#endif
    start += s;
  }
#if defined(CVAE_HAVE_CUDA)
  const Columns all = columns_of(x, 0, x.size(1));
  constexpr size_t kMax = kernels::cuda::kMaxColumnPieces;
  for (size_t first = 0; first < out.size(); first += kMax) {
    kernels::cuda::split_cols(all.rows, all.cols, x.data<float>(), pieces.data() + first,
                              static_cast<int>(std::min(out.size() - first, kMax)), cuda_stream());
  }
#endif
  start = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = attach(out[i], {x}, place_piece(x, columns_of(x, start, sizes[i])));
    start += sizes[i];
  }
  return out;
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
  CVAE_CHECK(count > 0, "mean", "mean over an empty axis");
  return scale(sum(x, std::move(axes), keepdim), 1.0 / static_cast<double>(count));
}

Tensor sum(const Tensor& x) {
  detail::check_same_kind("sum", {&x});
  if (x.dim() == 0) return reshape(x, {});
  return reshape(sum_run(reshape(x, {x.numel()}), 0, 0), {});
}

Tensor mean(const Tensor& x) {
  CVAE_CHECK(x.numel() > 0, "mean", "mean of an empty tensor");
  return scale(sum(x), 1.0 / static_cast<double>(x.numel()));
}

// Shares x's storage;  dx = reshape(dy, x.shape)
Tensor reshape(const Tensor& x, Shape shape) {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      CVAE_CHECK(infer < 0, "reshape", "more than one -1 in " + shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      CVAE_CHECK(shape[i] >= 0, "reshape", "negative dimension in " + shape_str(shape));
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    CVAE_CHECK(known > 0 && x.numel() % known == 0, "reshape",
          "cannot infer -1 in " + shape_str(shape) + " for " + shape_str(x.shape()));
    shape[static_cast<size_t>(infer)] = x.numel() / known;
  }
  CVAE_CHECK(shape_numel(shape) == x.numel(), "reshape",
        "cannot view " + shape_str(x.shape()) + " as " + shape_str(shape));
  Tensor y = x.detach();
  y.impl()->shape = shape;
  Shape xs = x.shape();
  return attach(y, {x}, [xs](const Tensor& dy) -> std::vector<Tensor> { return {reshape(dy, xs)}; });
}

Tensor flatten(const Tensor& x) {
  CVAE_CHECK(x.dim() >= 1, "flatten", "needs a batch dimension");
  return reshape(x, {x.size(0), -1});
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes) {
  detail::check_same_kind("split", {&x});
  CVAE_CHECK(x.dim() >= 2, "split", "needs at least 2 dimensions, got " + shape_str(x.shape()));
  int64_t total = 0;
  for (int64_t s : sizes) {
    CVAE_CHECK(s >= 0, "split", "negative size");
    total += s;
  }
  CVAE_CHECK(total == x.size(1), "split",
        "sizes add up to " + std::to_string(total) + ", dim 1 is " + std::to_string(x.size(1)));
  if (x.device() == Device::CUDA) return split_cuda(x, sizes);
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow1(x, start, s));
    start += s;
  }
  return out;
}

}  // namespace cvae
