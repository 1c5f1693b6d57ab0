// ops_layers.cpp: conv2d, conv_transpose2d, linear and bias_add. The three
// convolution kernels (fprop, dgrad, wgrad) serve both conv layers: a
// transposed conv's forward is a dgrad and its input gradient an fprop.
#include "engine/autograd.h"
#include "engine/dispatch.h"
#include "engine/ops.h"
#include "kernels/kernels.h"

namespace cvae {
namespace {

using kernels::Conv2dShape;
using detail::dispatch;

enum class ConvPass { Fprop, Dgrad, Wgrad };

// [N, C, HW] view of a layer output for the bias kernels (HW = 1 for dense layers).
struct BiasShape {
  int N, C;
  int64_t HW;
};
BiasShape bias_shape(const Tensor& y) {
  const int N = int(y.size(0)), C = int(y.size(1));
  return {N, C, y.numel() / (int64_t(N) * C)};
}

// The backward of y = act(pre + b): {dpre, db}. yd is y (detached) when act is ReLU,
// undefined otherwise; db is computed when b is on the tape, into b's own gradient buffer
// when it is pending zero (grad_destination). One pass (one kernel) on either device.
// With a border (CPU, [N,C,H,W] only) dpre is written bordered, as conv2d_shared_x_border's
// passes read it.
std::pair<Tensor, Tensor> bias_act_backward(const Tensor& dy, const Tensor& yd, const Tensor& b,
                                            const kernels::PlaneBorder& border = {}) {
  const BiasShape d = bias_shape(dy);
  const bool want_db = tracks_grad(b);
  Tensor dpre = dy, db;
  if (want_db) db = grad_destination(b);
  if (border.any()) {
    const int H = int(dy.size(2)), W = int(dy.size(3));
    dpre = Tensor::empty({kernels::bordered_elems(d.N, d.C, H, W, border)}, dy.dtype(), dy.device());
    detail::on_device(
        dy,
        [&](auto tag) {
          using T = decltype(tag);
          kernels::cpu::bias_act_bwd_bordered<T>(d.N, d.C, H, W, border,
                                                 yd.defined() ? yd.data<T>() : nullptr, dy.data<T>(),
                                                 dpre.data<T>(), want_db ? db.data<T>() : nullptr);
        },
        [&](cudaStream_t) { throw std::logic_error("bias_act_backward: a border on the GPU"); });
    return {dpre, db};
  }
  if (yd.defined()) dpre = Tensor::empty(dy.shape(), dy.dtype(), dy.device());
  if (yd.defined() && want_db) {
    CVAE_RUN_KERNEL(dy, bias_relu_bwd, d.N, d.C, d.HW, yd.data<T>(), dy.data<T>(), dpre.data<T>(),
                    db.data<T>());
    return {dpre, db};
  }
  if (yd.defined())
    CVAE_RUN_KERNEL(dy, relu_bwd, dy.numel(), yd.data<T>(), dy.data<T>(), dpre.data<T>());
  if (want_db) CVAE_RUN_KERNEL(dpre, bias_add_bwd, d.N, d.C, d.HW, dpre.data<T>(), db.data<T>());
  return {dpre, db};
}

void check_bias(const char* op, const Tensor& b, int64_t channels) {
  CVAE_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == channels), op,
        "bias " + (b.defined() ? shape_str(b.shape()) : std::string()) + " does not fit " +
            std::to_string(channels) + " output channels");
}

// out = pass(a, b) for the conv problem s, into `into` when that is given (a weight's
// gradient buffer), else a new tensor of out_shape. Fprop and Dgrad take an epilogue,
// act(out + bias) (bias undefined: none).
// a_bordered (CPU, Fprop and Wgrad): a carries conv2d_shared_x_border(s).
Tensor conv_pass(ConvPass pass, const Conv2dShape& s, const Tensor& a, const Tensor& b,
                 const Shape& out_shape, const Tensor& bias = Tensor(), bool relu = false,
                 Tensor into = Tensor(), bool a_bordered = false) {
  Tensor out = into.defined() ? into : Tensor::empty(out_shape, a.dtype(), a.device());
  detail::on_device(
      a,
      [&](auto tag) {
        using T = decltype(tag);
        Tensor ws = Tensor::empty({static_cast<int64_t>(kernels::conv2d_workspace_elems(s))}, a.dtype());
        const T* pa = a.data<T>();
        const T* pb = b.data<T>();
        T* po = out.data<T>();
        T* pw = ws.data<T>();
        const T* pbias = bias.defined() ? bias.data<T>() : nullptr;
        switch (pass) {  // a=x, b=w | a=dy, b=w | a=x, b=dy
          case ConvPass::Fprop:
            kernels::cpu::conv2d_fprop_bias_act<T>(s, pa, pb, pbias, relu, po, pw, a_bordered);
            break;
          case ConvPass::Dgrad: kernels::cpu::conv2d_dgrad_bias_act<T>(s, pa, pb, pbias, relu, po, pw); break;
          case ConvPass::Wgrad: kernels::cpu::conv2d_wgrad<T>(s, pa, pb, po, pw, a_bordered); break;
        }
      },
      [&](cudaStream_t st) {  // the CUDA kernels gather: no workspace
        const float* pa = a.data<float>();
        const float* pb = b.data<float>();
        float* po = out.data<float>();
        const float* pbias = bias.defined() ? bias.data<float>() : nullptr;
        switch (pass) {
          case ConvPass::Fprop:
            CVAE_CUDA_ONLY(kernels::cuda::conv2d_fprop_bias_act(s, pa, pb, pbias, relu, po, st));
            break;
          case ConvPass::Dgrad:
            CVAE_CUDA_ONLY(kernels::cuda::conv2d_dgrad_bias_act(s, pa, pb, pbias, relu, po, st));
            break;
          case ConvPass::Wgrad: CVAE_CUDA_ONLY(kernels::cuda::conv2d_wgrad(s, pa, pb, po, st)); break;
        }
        (void)pa, (void)pb, (void)po, (void)st, (void)pbias;
      });
  return out;
}

// out = op(A) op(B) for row-major matrices, on a's device.
void matmul_into(bool ta, bool tb, int M, int N, int K, const Tensor& A, int lda, const Tensor& B,
                 int ldb, Tensor& C, int ldc) {
  detail::on_device(
      A,
      [&](auto tag) {
        using T = decltype(tag);
        kernels::cpu::gemm<T>(ta, tb, M, N, K, T(1), A.data<T>(), lda, B.data<T>(), ldb, T(0),
                              C.data<T>(), ldc);
      },
      [&](cudaStream_t st) {
        CVAE_CUDA_ONLY(kernels::cuda::gemm(ta, tb, M, N, K, 1.0f, A.data<float>(), lda,
                                           B.data<float>(), ldb, 0.0f, C.data<float>(), ldc, st));
        (void)st;
      });
}

Shape x_shape(const Conv2dShape& s) { return {s.N, s.C, s.H, s.W}; }
Shape w_shape(const Conv2dShape& s) { return {s.K, s.C, s.R, s.S}; }
Shape y_shape(const Conv2dShape& s) { return {s.N, s.K, s.P, s.Q}; }

void check_conv_args(const char* op, const Tensor& x, const Tensor& w, int stride) {
  detail::check_same_kind(op, {&x, &w});
  CVAE_CHECK(x.dim() == 4, op, "input must be [N,C,H,W], got " + shape_str(x.shape()));
  CVAE_CHECK(w.dim() == 4, op, "weight must be 4-D, got " + shape_str(w.shape()));
  CVAE_CHECK(stride >= 1, op, "stride must be >= 1");
}

// A transposed conv layer with ReLU on the CPU, whose backward borders its dpre: what the
// only consumer of its output needs to do that ReLU backward inside its own input-gradient
// kernel (deconv3's, into deconv2's: the 10 MB gradient between them is never stored).
struct ReluBorderHandOver : GradHandOver {
  Tensor yd, b;  // the layer's output (detached) and bias
  kernels::PlaneBorder border;
  Tensor dpre, db;  // left by the consumer: bias_act_backward's results
};

// x's hand-over, when an fprop of s (into x's shape) may take it: x is such a layer's
// output, this is its only consumer, nothing has been added to its gradient yet.
ReluBorderHandOver* hand_over_for(const Tensor& x, const Conv2dShape& s) {
  Node* node = x.impl()->grad_fn.get();
  if (!node || node->uses != 1 || x.impl()->grad || x.device() != Device::CPU) return nullptr;
  auto* h = dynamic_cast<ReluBorderHandOver*>(node->hand_over.get());
  if (!h || h->taken || h->yd.shape() != y_shape(s) || !kernels::cpu::conv2d_fprop_relu_bwd_fuses(s))
    return nullptr;
  return h;
}

// fprop(dpre, w) handed over as the ReLU backward of x's layer: h.dpre, h.db, one kernel.
void hand_over_fprop(const Conv2dShape& s, const Tensor& dpre, const Tensor& w, ReluBorderHandOver& h) {
  h.dpre = Tensor::empty({kernels::bordered_elems(s.N, s.K, s.P, s.Q, h.border)}, dpre.dtype(), dpre.device());
  if (tracks_grad(h.b)) h.db = grad_destination(h.b);
  detail::on_device(
      dpre,
      [&](auto tag) {
        using T = decltype(tag);
        Tensor ws = Tensor::empty(
            {static_cast<int64_t>(kernels::cpu::conv2d_fprop_relu_bwd_workspace_elems(s, sizeof(T)))},
            dpre.dtype());
        kernels::cpu::conv2d_fprop_relu_bwd_bordered<T>(s, dpre.data<T>(), w.data<T>(), h.yd.data<T>(),
                                                        h.border, h.dpre.data<T>(),
                                                        h.db.defined() ? h.db.data<T>() : nullptr, ws.data<T>());
      },
      [&](cudaStream_t) { throw std::logic_error("hand_over_fprop: on the GPU"); });
  h.taken = true;
}

// The backward of a conv layer whose forward is one pass of the conv s with a fused
// bias/ReLU epilogue: Fprop for conv2d, Dgrad for conv_transpose2d (yd: the output, when
// ReLU was applied). dpre = act'(y) dy; dx comes from the other data pass; dw from wgrad
// with s's input and output gradient in their conv roles (x and dpre, or swapped).
// On the CPU a transposed conv's dpre is s's x for both of its passes: when they read it
// through the same border, dpre is written bordered (no plain copy, no copy per pass).
// h: this layer's hand-over (null: none offered); when its consumer took it, dy is
// undefined and dpre, db are h's. A transposed conv offers to take its input's.
BackwardFn conv_layer_backward(ConvPass forward, const Conv2dShape& s, const Tensor& x, const Tensor& w,
                               const Tensor& b, const Tensor& yd,
                               std::shared_ptr<ReluBorderHandOver> h = nullptr) {
  const bool transposed = forward == ConvPass::Dgrad;
  return [=](const Tensor& dy) -> std::vector<Tensor> {
    const kernels::PlaneBorder border =
        transposed && x.device() == Device::CPU ? kernels::conv2d_shared_x_border(s) : kernels::PlaneBorder{};
    auto [dpre, db] = h && h->taken ? std::make_pair(h->dpre, h->db) : bias_act_backward(dy, yd, b, border);
    const bool bordered = border.any();
    Tensor dx;
    ReluBorderHandOver* into = transposed && !bordered && tracks_grad(x) ? hand_over_for(x, s) : nullptr;
    if (into)
      hand_over_fprop(s, dpre, w, *into);
    else if (tracks_grad(x))
      dx = conv_pass(transposed ? ConvPass::Fprop : ConvPass::Dgrad, s, dpre, w,
                     transposed ? y_shape(s) : x_shape(s), Tensor(), false, Tensor(), bordered);
    const Tensor& conv_x = transposed ? dpre : x;
    const Tensor& conv_dy = transposed ? x : dpre;
    Tensor dw = tracks_grad(w) ? conv_pass(ConvPass::Wgrad, s, conv_x, conv_dy, w_shape(s), Tensor(), false,
                                           grad_destination(w), bordered)
                               : Tensor();
    return {dx, dw, db};
  };
}

}  // namespace

// y = act(conv(x, w) + b);  dpre = act'(y) dy;  dx = dgrad(dpre, w);  dw = wgrad(x, dpre)
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, Padding padding,
              bool relu) {
  check_conv_args("conv2d", x, w, stride);
  detail::check_same_kind("conv2d", {&x, &w, &b});
  CVAE_CHECK(x.size(1) == w.size(1), "conv2d",
        "input channels " + std::to_string(x.size(1)) + " != weight " + shape_str(w.shape()));
  check_bias("conv2d", b, w.size(0));
  int N = int(x.size(0)), C = int(x.size(1)), H = int(x.size(2)), W = int(x.size(3));
  int K = int(w.size(0)), R = int(w.size(2)), S = int(w.size(3));
  CVAE_CHECK(padding == Padding::Same || (H >= R && W >= S), "conv2d", "input smaller than the kernel");
  Conv2dShape s = padding == Padding::Valid ? kernels::conv2d_shape_valid(N, C, H, W, K, R, S, stride)
                                            : kernels::conv2d_shape_same(N, C, H, W, K, R, S, stride);
  Tensor y = conv_pass(ConvPass::Fprop, s, x, w, y_shape(s), b, relu);
  return attach(y, {x, w, b}, conv_layer_backward(ConvPass::Fprop, s, x, w, b, relu ? y.detach() : Tensor()));
}

Tensor conv2d(const Tensor& x, const Tensor& w, int stride, Padding padding) {
  return conv2d(x, w, Tensor(), stride, padding, false);
}

// The transpose of the conv s whose output has x's shape:
// y = act(dgrad(x, w) + b);  dpre = act'(y) dy;  dx = fprop(dpre, w);  dw = wgrad(dpre, x)
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride,
                        Padding padding, bool relu) {
  check_conv_args("conv_transpose2d", x, w, stride);
  detail::check_same_kind("conv_transpose2d", {&x, &w, &b});
  CVAE_CHECK(x.size(1) == w.size(0), "conv_transpose2d",
        "input channels " + std::to_string(x.size(1)) + " != weight " + shape_str(w.shape()));
  check_bias("conv_transpose2d", b, w.size(1));
  int N = int(x.size(0)), Cin = int(x.size(1)), H = int(x.size(2)), W = int(x.size(3));
  int Cout = int(w.size(1)), R = int(w.size(2)), S = int(w.size(3));
  Conv2dShape s =
      padding == Padding::Same
          ? kernels::conv_transpose2d_shape_same(N, Cin, H, W, Cout, R, S, stride)
          : kernels::conv2d_shape_valid(N, Cout, (H - 1) * stride + R, (W - 1) * stride + S, Cin,
                                        R, S, stride);
  Tensor y = conv_pass(ConvPass::Dgrad, s, x, w, x_shape(s), b, relu);
  const Tensor yd = relu ? y.detach() : Tensor();
  std::shared_ptr<ReluBorderHandOver> h;
  const kernels::PlaneBorder border =
      x.device() == Device::CPU ? kernels::conv2d_shared_x_border(s) : kernels::PlaneBorder{};
  if (relu && border.any()) {
    h = std::make_shared<ReluBorderHandOver>();
    h->yd = yd, h->b = b, h->border = border;
  }
  y = attach(y, {x, w, b}, conv_layer_backward(ConvPass::Dgrad, s, x, w, b, yd, h));
  if (h && y.impl()->grad_fn) y.impl()->grad_fn->hand_over = h;
  return y;
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, int stride, Padding padding) {
  return conv_transpose2d(x, w, Tensor(), stride, padding, false);
}

// y[N,out] = act(x[N,in] w[out,in]^T + b);  dpre = act'(y) dy;  dx = dpre w;  dw = dpre^T x
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b, bool relu) {
  detail::check_same_kind("linear", {&x, &w, &b});
  CVAE_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(1), "linear",
        "shapes " + shape_str(x.shape()) + " and " + shape_str(w.shape()) + " do not fit");
  check_bias("linear", b, w.size(0));
  int N = int(x.size(0)), in = int(x.size(1)), out = int(w.size(0));
  Tensor y = Tensor::empty({N, out}, x.dtype(), x.device());
  // One kernel on either device: the GEMM with bias and ReLU in its epilogue.
  CVAE_RUN_KERNEL(x, linear_fwd, N, in, out, x.data<T>(), w.data<T>(), b.defined() ? b.data<T>() : nullptr,
                  relu, y.data<T>());
  Tensor yd = relu ? y.detach() : Tensor();
  return attach(y, {x, w, b}, [x, w, b, yd, N, in, out](const Tensor& dy) -> std::vector<Tensor> {
    auto [dpre, db] = bias_act_backward(dy, yd, b);
    Tensor dx, dw;
    if (tracks_grad(x)) {
      dx = Tensor::empty(x.shape(), x.dtype(), x.device());
      matmul_into(false, false, N, in, out, dpre, out, w, in, dx, in);
    }
    if (tracks_grad(w)) {
      dw = grad_destination(w);
      matmul_into(true, false, out, in, N, dpre, out, x, in, dw, in);
    }
    return {dx, dw, db};
  });
}

Tensor linear(const Tensor& x, const Tensor& w) { return linear(x, w, Tensor(), false); }

// y = x + b[c] (relu: y = max(x + b[c], 0), one fused pass);
// dpre = dy (relu: dy * (y > 0));  dx = dpre;  db[c] = sum over batch and trailing dims of dpre
Tensor bias_add(const Tensor& x, const Tensor& b, bool relu) {
  detail::check_same_kind("bias_add", {&x, &b});
  CVAE_CHECK(x.dim() >= 2 && b.dim() == 1 && b.size(0) == x.size(1), "bias_add",
        "bias " + shape_str(b.shape()) + " does not fit input " + shape_str(x.shape()));
  const BiasShape d = bias_shape(x);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (relu)
    CVAE_RUN_KERNEL(x, bias_relu_fwd, d.N, d.C, d.HW, x.data<T>(), b.data<T>(), y.data<T>());
  else
    CVAE_RUN_KERNEL(x, bias_add_fwd, d.N, d.C, d.HW, x.data<T>(), b.data<T>(), y.data<T>());
  Tensor yd = relu ? y.detach() : Tensor();
  return attach(y, {x, b}, [b, yd](const Tensor& dy) -> std::vector<Tensor> {
    auto [dpre, db] = bias_act_backward(dy, yd, b);
    return {dpre, db};
  });
}

}  // namespace cvae
