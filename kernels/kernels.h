// kernels.h: the one declaration header for cvae-engine's compute kernels.
// Pure compute on raw pointers: no tensors, no autograd, no I/O, no allocation (one
// exception: the bordered ReLU backward's scratch row per thread, grown once).
// Every CPU kernel is a template instantiated for float (real work) and double
// (gradient checks). CUDA twins (kernels/cuda/) share names and shape structs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace cvae::kernels {

// ---------------------------------------------------------------------------
// Convolution. One problem-size struct serves the three passes (fprop, dgrad,
// wgrad) of Conv2d, and ConvTranspose2d is the same three kernels swapped:
// its forward is a conv dgrad and its input gradient a conv fprop.
//   x [N,C,H,W]   w [K,C,R,S]   y [N,K,P,Q]
//   y[n,k,p,q] = sum_{c,r,s} x[n,c,p*stride_h-pad_h+r, q*stride_w-pad_w+s] * w[k,c,r,s]
// Out-of-range input positions read as zero. Only the top/left padding is
// stored: the bottom/right padding is whatever P,Q imply (TF puts the odd
// padding row of `same` at the bottom/right).
struct Conv2dShape {
  int N, C, H, W;
  int K, R, S;
  int P, Q;
  int stride_h, stride_w;
  int pad_h, pad_w;
};

// TF `valid`: no padding, P = (H - R) / stride + 1.
Conv2dShape conv2d_shape_valid(int N, int C, int H, int W, int K, int R, int S, int stride);
// TF `same`: P = ceil(H / stride), total padding max((P-1)*stride + R - H, 0),
// top = total/2, bottom = the rest.
Conv2dShape conv2d_shape_same(int N, int C, int H, int W, int K, int R, int S, int stride);
// TF Conv2DTranspose `same` on an input [N,Cin,H,W] with Cout output channels:
// the output is [N,Cout,H*stride,W*stride]. Returned is the shape of the
// forward conv it is the transpose of: input [N,Cout,H*s,W*s] (the transposed
// conv's output), weight [Cin,Cout,R,S] (PyTorch's ConvTranspose2d layout),
// output [N,Cin,H,W] (the transposed conv's input), `same` padding.
Conv2dShape conv_transpose2d_shape_same(int N, int Cin, int H, int W, int Cout, int R, int S,
                                        int stride);

// Scratch the CPU conv kernels need (wgrad's per-slot partial sums), in elements of
// T. The caller allocates it; kernels never allocate.
size_t conv2d_workspace_elems(const Conv2dShape& s);

// Philox blocks (4 numbers each) that a draw of n numbers consumes.
inline uint64_t philox_blocks(int64_t n) { return static_cast<uint64_t>((n + 3) / 4); }
// The CPU wgrad splits the batch into this many contiguous image ranges (min(N, 8)),
// each summed into its own partial dw, partials then added in slot order: results never
// depend on the thread count.
int conv2d_batch_slots(const Conv2dShape& s);

// A zero border around every [H, W] plane of a tensor: top and bottom rows, left and
// right columns. The CPU's direct conv passes read an input that taps would leave
// (padding) through a copy with such a border.
struct PlaneBorder {
  int top = 0, left = 0, bottom = 0, right = 0;
  bool any() const { return top || left || bottom || right; }
};
// Elements of an [N, C, H, W] tensor with border b around each plane.
int64_t bordered_elems(int N, int C, int H, int W, const PlaneBorder& b);
// The border with which the CPU's fprop and wgrad of s both read x, when both do (their
// direct forms, with padding); none otherwise. A transposed conv's backward then borders
// its output gradient (conv x) once, fused into the ReLU's backward, for the two passes
// (x_bordered below), instead of each pass copying it.
PlaneBorder conv2d_shared_x_border(const Conv2dShape& s);

namespace cpu {

// y = conv(x, w)                      (overwrites y)
template <typename T>
void conv2d_fprop(const Conv2dShape& s, const T* x, const T* w, T* y, T* workspace);
// y = act(conv(x, w) + bias[k]): fprop with its epilogue fused (bias may be null; relu
// max(., 0) keeps NaN as relu_fwd does). The CUDA twin has the same name.
// x_bordered: x already carries conv2d_shared_x_border(s) (which must be some border).
template <typename T>
void conv2d_fprop_bias_act(const Conv2dShape& s, const T* x, const T* w, const T* bias, bool relu,
                           T* y, T* workspace, bool x_bordered = false);
// dx = conv^T(dy, w)                  (overwrites dx)
template <typename T>
void conv2d_dgrad(const Conv2dShape& s, const T* dy, const T* w, T* dx, T* workspace);
// dx = act(conv^T(dy, w) + bias[c]): a transposed conv's forward with its epilogue.
template <typename T>
void conv2d_dgrad_bias_act(const Conv2dShape& s, const T* dy, const T* w, const T* bias,
                           bool relu, T* dx, T* workspace);
// dw = sum_n x (*) dy                 (overwrites dw; x_bordered as for fprop)
template <typename T>
void conv2d_wgrad(const Conv2dShape& s, const T* x, const T* dy, T* dw, T* workspace,
                  bool x_bordered = false);

// A conv fprop (no bias, no activation) straight into the bordered ReLU backward of the
// layer whose output's gradient it is (yd: that layer's output): dpre = fprop(x, w) *
// (yd > 0) with border b around each [P, Q] plane, db (may be null) the bias gradient:
// bit for bit conv2d_fprop then bias_act_bwd_bordered, but each image's fprop output
// stays in cache instead of going to memory and back. Only where fuses(s): the
// one-channel fprops (deconv3's input gradient, into deconv2's ReLU backward).
bool conv2d_fprop_relu_bwd_fuses(const Conv2dShape& s);
// Its workspace, in elements of elem_bytes: the row sums, a fprop output image per thread.
size_t conv2d_fprop_relu_bwd_workspace_elems(const Conv2dShape& s, size_t elem_bytes);
template <typename T>
void conv2d_fprop_relu_bwd_bordered(const Conv2dShape& s, const T* x, const T* w, const T* yd,
                                    const PlaneBorder& b, T* dpre, T* db, T* workspace);

// ---------------------------------------------------------------------------
// CPU code paths. The GEMM (and through it every convolution) runs the micro-kernel
// of the best path the running CPU supports, chosen once at run time; the binary
// itself needs only x86-64. CVAE_CPU_ISA=generic|avx2|avx512 (or auto) forces a path;
// an unknown or unsupported one makes the first kernel call throw, saying why.
// Results are deterministic for a given path, not equal across paths (FMA, tiling).
enum class CpuIsa { Generic, Avx2, Avx512 };
CpuIsa cpu_isa();                     // the path in use
bool cpu_isa_supported(CpuIsa isa);   // whether this CPU can run it
void set_cpu_isa(CpuIsa isa);         // tests, benchmarks: throws if unsupported
const char* cpu_isa_name(CpuIsa isa); // "generic", "avx2", "avx512"
bool parse_cpu_isa(const std::string& name, CpuIsa* isa);

// Call first thing in main(): unless OMP_WAIT_POLICY or GOMP_SPINCOUNT is set, executes the
// program again with GOMP_SPINCOUNT=1000, so that waiting threads give the CPU back soon
// (beside another busy process a step slowed 3.2x with libgomp's default spin, 1.6x with
// this; alone it is ~10% slower: threads.cpp).
void use_short_openmp_spin(char** argv);

// ---------------------------------------------------------------------------
// GEMM, row-major: C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
// op(A) = A (lda >= K) or A^T (A stored [K,M], lda >= M); likewise B.
// beta == 0 means C is not read (it may hold garbage or NaN).
// Cache-blocked with packed panels; OpenMP over blocks of C (deterministic:
// each C element is summed by one thread in a fixed order).
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc);

// y[N,out] = act(x[N,in] w[out,in]^T + b[out]): a dense layer with its epilogue fused
// (b may be null; relu as above).
template <typename T>
void linear_fwd(int N, int in, int out, const T* x, const T* w, const T* b, bool relu, T* y);

// ---------------------------------------------------------------------------
// Bias over channels of an [N,C,HW] tensor (HW = 1 for dense layers).
// y = x + b[c]                        (y may alias x)
template <typename T>
void bias_add_fwd(int N, int C, int64_t HW, const T* x, const T* b, T* y);
// y = max(x + b[c], 0): bias and ReLU in one pass (y may alias x)
template <typename T>
void bias_relu_fwd(int N, int C, int64_t HW, const T* x, const T* b, T* y);
// db[c] = sum_{n,hw} dy               (overwrites db)
template <typename T>
void bias_add_bwd(int N, int C, int64_t HW, const T* dy, T* db);
// The backward of y = max(x + b, 0) in one pass: dpre = dy * (y > 0) and db = the
// bias_add_bwd of dpre, bit for bit as relu_bwd then bias_add_bwd (dpre may alias dy).
template <typename T>
void bias_relu_bwd(int N, int C, int64_t HW, const T* y, const T* dy, T* dpre, T* db);
// The same for an [N,C,H,W] tensor with dpre written with border b around each plane
// (zeros there; dpre must not alias dy when b has any): dpre = dy * (y > 0), or dpre = dy
// when y is null; db (may be null) bit for bit as bias_relu_bwd's or bias_add_bwd's.
template <typename T>
void bias_act_bwd_bordered(int N, int C, int H, int W, const PlaneBorder& b, const T* y,
                           const T* dy, T* dpre, T* db);
// One image of it without db: rows [0, C) into their bordered planes, rowsum[c] each
// row's sum; bias_sums_of_rows then makes db from N images' row sums (rowsum[n*C + c]),
// bit for bit as bias_act_bwd_bordered.
template <typename T>
void bias_act_bwd_bordered_image(int C, int H, int W, const PlaneBorder& b, const T* y,
                                 const T* dy, T* dpre, double* rowsum);
template <typename T>
void bias_sums_of_rows(int N, int C, const double* rowsum, T* db);

// ---------------------------------------------------------------------------
// Elementwise, n elements. Outputs may alias inputs.
template <typename T> void relu_fwd(int64_t n, const T* x, T* y);
// dx = dy * (y > 0)
template <typename T> void relu_bwd(int64_t n, const T* y, const T* dy, T* dx);
template <typename T> void sigmoid_fwd(int64_t n, const T* x, T* y);
// dx = dy * y * (1 - y)
template <typename T> void sigmoid_bwd(int64_t n, const T* y, const T* dy, T* dx);
template <typename T> void exp_fwd(int64_t n, const T* x, T* y);
template <typename T> void add(int64_t n, const T* a, const T* b, T* y);   // y = a + b
template <typename T> void sub(int64_t n, const T* a, const T* b, T* y);   // y = a - b
template <typename T> void mul(int64_t n, const T* a, const T* b, T* y);   // y = a * b
template <typename T> void scale(int64_t n, T alpha, const T* x, T* y);   // y = alpha * x
template <typename T> void axpy(int64_t n, T alpha, const T* x, T* y);    // y += alpha * x
template <typename T> void fill(int64_t n, T value, T* y);

// ---------------------------------------------------------------------------
// Reductions over a view [outer, mid, inner] of a contiguous tensor: summing
// over the middle extent. Any set of adjacent axes maps to this form.
// y[o,i] = sum_m x[o,m,i]             (overwrites y; fixed order: deterministic)
template <typename T>
void sum_mid(int64_t outer, int64_t mid, int64_t inner, const T* x, T* y);
// dx[o,m,i] = dy[o,i] * alpha         (the backward of alpha * sum_mid)
template <typename T>
void broadcast_mid(int64_t outer, int64_t mid, int64_t inner, T alpha, const T* dy, T* dx);

// ---------------------------------------------------------------------------
// Losses. Row-wise ones work on [N,D] and write one value per row.
//
// Sigmoid cross-entropy with logits, elementwise, in the stable form
//   l = max(x,0) - x*t + log1p(exp(-|x|))
template <typename T>
void sigmoid_ce_fwd(int64_t n, const T* logits, const T* targets, T* loss);
// dlogits = dl * (sigmoid(x) - t);  dtargets = -dl * x   (either may be null)
template <typename T>
void sigmoid_ce_bwd(int64_t n, const T* logits, const T* targets, const T* dloss, T* dlogits,
                    T* dtargets);

// out[i] = sum_j -0.5 * ((x-m)^2 * exp(-lv) + lv + log(2*pi))
// mean / logvar may be null, meaning 0 (the standard normal, log p(z)).
template <typename T>
void log_normal_pdf_fwd(int N, int D, const T* x, const T* mean, const T* logvar, T* out);
// Gradients scaled by dout[i]; any of dx, dmean, dlogvar may be null. They are
// overwritten, not accumulated.
template <typename T>
void log_normal_pdf_bwd(int N, int D, const T* x, const T* mean, const T* logvar,
                        const T* dout, T* dx, T* dmean, T* dlogvar);

// Analytic KL(N(m, exp(lv)) || N(0,1)) per row:
//   out[i] = -0.5 * sum_j (1 + lv - m^2 - exp(lv))
template <typename T>
void kl_normal_fwd(int N, int D, const T* mean, const T* logvar, T* out);
// dmean = dout * m;  dlogvar = dout * 0.5 * (exp(lv) - 1)   (either may be null)
template <typename T>
void kl_normal_bwd(int N, int D, const T* mean, const T* logvar, const T* dout, T* dmean,
                   T* dlogvar);

// The whole VAE loss of a batch in one pass (the tutorial's compute_loss),
// for logits, x [N,D] and z, mean, logvar [N,L]:
//   logpx[i] = -sum_j CE(logits_ij, x_ij)                    (stable sigmoid CE)
//   MC:       elbo[i] = logpx[i] + log N(z_i; 0, I) - log N(z_i; m_i, exp(lv_i))
//   analytic: elbo[i] = logpx[i] - KL(N(m_i, exp(lv_i)) || N(0, I))
//   loss = -(1/N) sum_i elbo[i]
// Row sums and the batch mean are reduced in a fixed order (deterministic).
}  // namespace cpu
// In cvae::kernels, not cpu: shared with the CUDA twin, like Conv2dShape.
struct VaeLossShape {
  int N, D, L;
  bool analytic;
};
namespace cpu {
// Writes loss[0] and row_elbo[i] (the per-image ELBO).
template <typename T>
void vae_loss_fwd(const VaeLossShape& s, const T* logits, const T* x, const T* z, const T* mean,
                  const T* logvar, T* loss, T* row_elbo);
// Gradients of dloss[0] * loss, overwritten (dz is all zero for the analytic
// form: z reaches the loss only through the logits):
//   dlogits = g/N (sigmoid(l) - x)
//   MC:       dz = g/N (z - (z-m) e^-lv),  dm = g/N (z-m) e^-lv,  dlv = -g/(2N) (1 - (z-m)^2 e^-lv)
//   analytic: dm = g/N m,                   dlv = g/(2N) (e^lv - 1)
template <typename T>
void vae_loss_bwd(const VaeLossShape& s, const T* logits, const T* x, const T* z, const T* mean,
                  const T* logvar, const T* dloss, T* dlogits, T* dz, T* dmean, T* dlogvar);

// ---------------------------------------------------------------------------
// Random numbers: Philox4x32-10 (Salmon et al., SC'11), counter-based, so any
// element can be drawn independently on any device. See kernels/philox.h for
// the exact mapping from (seed, offset, index) to a number; the CUDA twin
// reproduces it bit for bit.
//
// y[i] ~ N(0,1) for i in [0,n): element i comes from Philox block offset + i/4.
// The caller advances its offset by philox_blocks(n) after the call.
template <typename T> void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y);
// y[i] ~ U[lo, hi): element i from Philox block offset + i/4.
template <typename T>
void uniform_fill(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi, T* y);

// ---------------------------------------------------------------------------
// Optimizers, one parameter tensor per call, in place.
// Adam, PyTorch's form (epsilon added after the bias-corrected sqrt):
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// step is t >= 1, counted before the call.
template <typename T>
void adam_step(int64_t n, T* p, const T* g, T* m, T* v, double lr, double beta1, double beta2,
               double eps, int64_t step);
// p -= lr * g
template <typename T> void sgd_step(int64_t n, T* p, const T* g, double lr);

}  // namespace cpu
}  // namespace cvae::kernels
