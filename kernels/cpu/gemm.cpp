// gemm.cpp: the public CPU GEMM (row-major C = alpha*op(A)*op(B) + beta*C) and the
// dispatch of every GEMM, plain or gathered, to the code path of the running CPU
// (gemm_generic.cpp, gemm_avx2.cpp, gemm_avx512.cpp; kernels/cpu/isa.cpp chooses).
#include <algorithm>
#include <stdexcept>

#include "kernels/cpu/gemm_views.h"
#include "kernels/kernels.h"

namespace cvae::kernels::cpu {

// One pair of packing buffers per thread, shared by every code path.
unsigned char* gemm_pack_a_buffer() {
  alignas(64) static thread_local unsigned char buf[kGemmPackABytes];
  return buf;
}
unsigned char* gemm_pack_b_buffer() {
  alignas(64) static thread_local unsigned char buf[kGemmPackBBytes];
  return buf;
}

template <typename T>
void gemm_run(const GemmProblem<T>& p) {
  if (p.M <= 0 || p.N <= 0 || p.K <= 0)
    throw std::invalid_argument("gemm_run: empty problem (the callers handle K == 0)");
  switch (cpu_isa()) {
    case CpuIsa::Avx512: return gemm_run_avx512(p);
    case CpuIsa::Avx2: return gemm_run_avx2(p);
    case CpuIsa::Generic: return gemm_run_generic(p);
  }
}
template void gemm_run<float>(const GemmProblem<float>&);
template void gemm_run<double>(const GemmProblem<double>&);

namespace {

// K == 0: C = beta * C (beta == 0: zeros, C not read).
template <typename T>
void scale_c(int M, int N, T beta, T* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      T& c = C[(size_t)i * ldc + j];
      c = beta == T(0) ? T(0) : beta * c;
    }
}

template <typename T>
GemmOperand<T> plain(const T* p, bool trans, int ld) {
  GemmOperand<T> op;
  op.base = p;
  op.layout = trans ? GemmLayout::Cols : GemmLayout::Rows;
  op.ld = ld;
  return op;
}

}  // namespace

// C = alpha * op(A) * op(B) + beta * C
template <typename T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda,
          const T* B, int ldb, T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  bool ok = M >= 0 && N >= 0 && K >= 0 && A && B && C;
  ok = ok && lda >= std::max(1, trans_a ? M : K) && ldb >= std::max(1, trans_b ? K : N);
  ok = ok && ldc >= std::max(1, N);
  if (!ok) throw std::invalid_argument("gemm: bad sizes, leading dimensions or null pointer");
  if (K == 0) return scale_c(M, N, beta, C, ldc);
  GemmProblem<T> p;
  p.M = M, p.N = N, p.K = K;
  p.A = plain(A, trans_a, lda);
  p.B = plain(B, trans_b, ldb);
  p.C.base = C;
  p.C.ld = ldc;
  p.C.alpha = alpha, p.C.beta = beta;
  gemm_run(p);
}

// y = act(x w^T + b), the bias and ReLU applied as each tile is stored
template <typename T>
void linear_fwd(int N, int in, int out, const T* x, const T* w, const T* b, bool relu, T* y) {
  if (N < 0 || in < 0 || out < 0 || !x || !w || !y)
    throw std::invalid_argument("linear_fwd: bad sizes or null pointer");
  if (N == 0 || out == 0) return;
  if (in == 0) {  // an empty sum: act(b)
    for (int i = 0; i < N; ++i)
      for (int j = 0; j < out; ++j) {
        const T v = b ? b[j] : T(0);
        y[(size_t)i * out + j] = relu && v < T(0) ? T(0) : v;
      }
    return;
  }
  GemmProblem<T> p;
  p.M = N, p.N = out, p.K = in;
  p.A = plain(x, false, in);
  p.B = plain(w, true, in);
  p.C.base = y, p.C.ld = out;
  p.C.bias = b, p.C.bias_per_col = true, p.C.relu = relu;
  gemm_run(p);
}
template void linear_fwd<float>(int, int, int, const float*, const float*, const float*, bool,
                                float*);
template void linear_fwd<double>(int, int, int, const double*, const double*, const double*, bool,
                                 double*);

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*,
                          int, float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int,
                           const double*, int, double, double*, int);

}  // namespace cvae::kernels::cpu
