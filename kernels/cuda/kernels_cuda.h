// kernels_cuda.h: host launchers of cvae-engine's CUDA kernels, the twins of
// kernels/kernels.h's CPU kernels: same names, same shape structs, same math,
// plus the stream they are queued on. Plain C++ may include this header
// without the CUDA headers; the __global__ kernels stay static in the .cu files.
// Launchers are asynchronous (no host synchronisation inside) and throw
// std::runtime_error("file:line: message") on a launch or runtime error.
// All pointers are device memory unless said otherwise. float only: the GPU
// does real work; float64 gradient checks run on the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"

// cuda_runtime_api.h declares exactly this; redeclaring the same alias is legal.
struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace cvae::kernels::cuda {

// ---------------------------------------------------------------------------
// Runtime (runtime.cu). The engine reaches the CUDA runtime only through these.
// Devices usable now. Any CUDA error (no driver, "driver version is
// insufficient", ...) means no GPU: returns 0 and, when why is given, the reason.
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" for device i.
std::string device_description(int i);
// Free device memory in bytes, or -1 when the runtime cannot tell.
int64_t device_free_bytes();
// The device is full: device_malloc's error, distinct from the other runtime errors
// (a caller may free cached memory and retry on this one only).
struct DeviceOutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void* device_malloc(size_t bytes);          // throws DeviceOutOfMemory when the device is full
void device_free(void* ptr);
void memcpy_h2d(void* dst, const void* src, size_t bytes, cudaStream_t stream);  // async (pageable: staged)
void memcpy_d2h(void* dst, const void* src, size_t bytes, cudaStream_t stream);  // waits for the copy
void memcpy_d2d(void* dst, const void* src, size_t bytes, cudaStream_t stream);
void memset_zero(void* dst, size_t bytes, cudaStream_t stream);
cudaStream_t stream_create();
void stream_synchronize(cudaStream_t stream);
// True while stream is being captured into a graph: no allocation, copy from pageable
// host memory or synchronisation may happen then.
bool stream_capturing(cudaStream_t stream);
// CUDA graphs: capture everything queued on stream between begin and end.
void graph_capture_begin(cudaStream_t stream);
void* graph_capture_end(cudaStream_t stream);  // returns an instantiated graph (cudaGraphExec_t)
void graph_launch(void* exec, cudaStream_t stream);
void graph_destroy(void* exec);

// ---------------------------------------------------------------------------
// Convolution (conv2d.cu): one thread per output element, gathering (no
// atomics), so results are deterministic. Conv2dShape as in kernels.h.
void conv2d_fprop(const Conv2dShape& s, const float* x, const float* w, float* y,
                  cudaStream_t stream);
// y = act(conv(x, w) + bias): the fused epilogue (bias may be null; relu on/off)
void conv2d_fprop_bias_act(const Conv2dShape& s, const float* x, const float* w,
                           const float* bias, bool relu, float* y, cudaStream_t stream);
void conv2d_dgrad(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                  cudaStream_t stream);
// dw = sum over n,p,q: one block per dw element (or per tile), fixed-order reduction.
void conv2d_wgrad(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                  cudaStream_t stream);

// cuDNN path for A/B comparison (conv_cudnn.cu; compiled only with cuDNN).
// Returns false when cuDNN is not compiled in. workspace >= cudnn_workspace_bytes(s).
bool cudnn_available();
size_t cudnn_workspace_bytes(const Conv2dShape& s);
void cudnn_conv2d_fprop(const Conv2dShape& s, const float* x, const float* w, float* y,
                        void* workspace, cudaStream_t stream);
void cudnn_conv2d_dgrad(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                        void* workspace, cudaStream_t stream);
void cudnn_conv2d_wgrad(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                        void* workspace, cudaStream_t stream);

// ---------------------------------------------------------------------------
// GEMM (gemm.cu), row-major as cpu::gemm: C = alpha op(A) op(B) + beta C.
// Tiled shared-memory SGEMM; deterministic (no split-K atomics).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream);
// The same through cuBLAS (gemm_cublas.cu), for comparison; false when not compiled in.
bool cublas_available();
void cublas_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc,
                 cudaStream_t stream);

// ---------------------------------------------------------------------------
// Elementwise, reductions, bias (elementwise.cu): as their CPU twins.
void bias_add_fwd(int N, int C, int64_t HW, const float* x, const float* b, float* y, cudaStream_t stream);
// y = relu(x + b[c]): the fused epilogue for dense layers and deconvs
void bias_relu_fwd(int N, int C, int64_t HW, const float* x, const float* b, float* y, cudaStream_t stream);
void bias_add_bwd(int N, int C, int64_t HW, const float* dy, float* db, cudaStream_t stream);
void relu_fwd(int64_t n, const float* x, float* y, cudaStream_t stream);
void relu_bwd(int64_t n, const float* y, const float* dy, float* dx, cudaStream_t stream);
void sigmoid_fwd(int64_t n, const float* x, float* y, cudaStream_t stream);
void sigmoid_bwd(int64_t n, const float* y, const float* dy, float* dx, cudaStream_t stream);
void exp_fwd(int64_t n, const float* x, float* y, cudaStream_t stream);
void add(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream);
void sub(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream);
void mul(int64_t n, const float* a, const float* b, float* y, cudaStream_t stream);
void scale(int64_t n, float alpha, const float* x, float* y, cudaStream_t stream);
void axpy(int64_t n, float alpha, const float* x, float* y, cudaStream_t stream);
void fill(int64_t n, float value, float* y, cudaStream_t stream);
void sum_mid(int64_t outer, int64_t mid, int64_t inner, const float* x, float* y, cudaStream_t stream);
void broadcast_mid(int64_t outer, int64_t mid, int64_t inner, float alpha, const float* dy, float* dx,
                   cudaStream_t stream);

// ---------------------------------------------------------------------------
// Losses (loss.cu): the CPU twins' per-element / per-row kernels ...
void sigmoid_ce_fwd(int64_t n, const float* logits, const float* targets, float* loss, cudaStream_t stream);
void sigmoid_ce_bwd(int64_t n, const float* logits, const float* targets, const float* dloss,
                    float* dlogits, float* dtargets, cudaStream_t stream);
void log_normal_pdf_fwd(int N, int D, const float* x, const float* mean, const float* logvar,
                        float* out, cudaStream_t stream);
void log_normal_pdf_bwd(int N, int D, const float* x, const float* mean, const float* logvar,
                        const float* dout, float* dx, float* dmean, float* dlogvar, cudaStream_t stream);
void kl_normal_fwd(int N, int D, const float* mean, const float* logvar, float* out, cudaStream_t stream);
void kl_normal_bwd(int N, int D, const float* mean, const float* logvar, const float* dout,
                   float* dmean, float* dlogvar, cudaStream_t stream);
// ... and the whole VAE loss in one pass: cpu::vae_loss_fwd / vae_loss_bwd's
// twins (kernels.h has the formulas). dloss is a device pointer, so a backward
// from the loss needs no host round trip.
void vae_loss_fwd(const VaeLossShape& s, const float* logits, const float* x, const float* z,
                  const float* mean, const float* logvar, float* loss, float* row_elbo,
                  cudaStream_t stream);
void vae_loss_bwd(const VaeLossShape& s, const float* logits, const float* x, const float* z,
                  const float* mean, const float* logvar, const float* dloss, float* dlogits,
                  float* dz, float* dmean, float* dlogvar, cudaStream_t stream);

// ---------------------------------------------------------------------------
// Optimizer (optim.cu): Adam over every parameter tensor in one launch.
// The table lives in device memory (written once; addresses stay put thanks to
// the caching allocator, so the launch can be captured in a graph). step_dev
// points at the step counter on the device, incremented by the kernel's caller
// (adam_increment_step) so a replayed graph advances it.
struct AdamTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
};
void adam_increment_step(int64_t* step_dev, cudaStream_t stream);
void adam_step_multi(const AdamTensor* table_dev, int count, int64_t total_elems, const int64_t* step_dev,
                     double lr, double beta1, double beta2, double eps, cudaStream_t stream);
void sgd_step(int64_t n, float* p, const float* g, double lr, cudaStream_t stream);

// ---------------------------------------------------------------------------
// Data (data.cu): a batch from the dataset kept on the device as uint8.
// x[i, pixel] from images[idx[i], pixel] with binarization mode 0 threshold
// (pixel >= 128), 1 dynamic (u < pixel/255, u from Philox{seed, (epoch << 32)
// + idx[i] * ceil(pixels/4)}, as engine/data.h), 2 none (pixel/255).
void gather_batch(const uint8_t* images, int64_t pixels, const int64_t* idx, int n, int mode,
                  uint64_t seed, uint64_t epoch, float* x, cudaStream_t stream);

// ---------------------------------------------------------------------------
// Random numbers (random.cu), bit-identical to cpu::normal_fill /
// cpu::uniform_fill for the same (n, seed, offset): element i from Philox
// block offset + i/4 (kernels/philox.h).
template <typename T>
void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y, cudaStream_t stream);
template <typename T>
void uniform_fill(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi, T* y,
                  cudaStream_t stream);

}  // namespace cvae::kernels::cuda
