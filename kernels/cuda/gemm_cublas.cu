// gemm_cublas.cu: cublas_gemm, the cuBLAS SGEMM behind the same row-major
// interface as gemm.cu, for tests and benchmarks to compare against. Built into
// its own library (cvae_cublas) so the cvae program never links cuBLAS.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/kernels_cuda.h"

#if defined(CVAE_HAVE_CUBLAS)
#include <cublas_v2.h>

#define CVAE_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                     \
    const cublasStatus_t cvae_st_ = (expr);                                                \
    if (cvae_st_ != CUBLAS_STATUS_SUCCESS)                                                 \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) +    \
                               ": " #expr ": " + cublasGetStatusString(cvae_st_));         \
  } while (0)
#endif

namespace cvae::kernels::cuda {

#if defined(CVAE_HAVE_CUBLAS)
namespace {

// One handle per host thread and device, created on first use and never
// destroyed: destroying it from a thread_local/static destructor can run after
// the CUDA context is gone at exit. The stream is set on every call (cheap).
cublasHandle_t handle_for_this_thread() {
  thread_local cublasHandle_t handle = nullptr;
  thread_local int handle_dev = -1;
  int dev = 0;
  CVAE_CUDA_CHECK(cudaGetDevice(&dev));
  if (handle == nullptr || dev != handle_dev) {
    CVAE_CUBLAS_CHECK(cublasCreate(&handle));
    // Plain FP32 (no TF32 tensor cores): the same arithmetic as gemm.cu.
    CVAE_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH));
    handle_dev = dev;
  }
  return handle;
}

}  // namespace

bool cublas_available() { return true; }

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: hand cuBLAS
// B for A and A for B with M and N swapped; the leading dimensions stay.
void cublas_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc,
                 cudaStream_t stream) {
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("cublas_gemm: negative size");
  if (M == 0 || N == 0) return;
  cublasHandle_t h = handle_for_this_thread();
  CVAE_CUBLAS_CHECK(cublasSetStream(h, stream));
  CVAE_CUBLAS_CHECK(cublasSgemm(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb, A,
                                lda, &beta, C, ldc));
}

#else  // built without cuBLAS: the comparison is skipped by its callers

bool cublas_available() { return false; }

void cublas_gemm(bool, bool, int, int, int, float, const float*, int, const float*, int, float,
                 float*, int, cudaStream_t) {
  throw std::runtime_error("cublas_gemm: built without cuBLAS");
}

#endif

}  // namespace cvae::kernels::cuda
