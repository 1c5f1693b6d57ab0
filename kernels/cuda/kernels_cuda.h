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

// What this process queued, counted where it is queued: kernels by the launch helper
// (launch.cuh), the rest by the wrappers above. A graph launch counts once in
// graph_launches and adds the kernels and copies its capture recorded (work queued during
// a capture is counted into the graph, not as run).
struct StreamCounts {
  int64_t kernels = 0;         // kernel launches, and the kernel nodes graph launches ran
  int64_t copies = 0;          // device-side data movement: host-to-device, device-to-device, memsets
  int64_t host_syncs = 0;      // host waits: device-to-host reads (each waits), stream synchronisations
  int64_t graph_launches = 0;
};
StreamCounts stream_counts();           // totals since the process started
StreamCounts graph_counts(void* exec);  // what one launch of this graph adds (graph_launches 0)
namespace detail {
void count_kernel(cudaStream_t stream);  // launch.cuh, after each launch
}

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
// dx = act(conv^T(dy, w) + bias[c]): a transposed conv's forward with its epilogue fused
void conv2d_dgrad_bias_act(const Conv2dShape& s, const float* dy, const float* w,
                           const float* bias, bool relu, float* dx, cudaStream_t stream);
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
// Tiled shared-memory SGEMM. Deterministic: a C with too few tiles to fill the GPU
// splits K over blocks, and the last block of a tile adds the K slices in order.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc, cudaStream_t stream);
// y[N,out] = act(x[N,in] w[out,in]^T + b[out]): a dense layer, bias and ReLU in the GEMM's
// epilogue (b may be null), as cpu::linear_fwd.
void linear_fwd(int N, int in, int out, const float* x, const float* w, const float* b, bool relu,
                float* y, cudaStream_t stream);
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
// db[c] = sum over n, hw, and (bias_relu_bwd) dpre = dy * (y > 0) in the same pass, as the CPU
// twins. Many blocks per channel, one launch: the last block of a channel adds its blocks'
// partial sums in order (deterministic; double sums, as the CPU).
void bias_add_bwd(int N, int C, int64_t HW, const float* dy, float* db, cudaStream_t stream);
void bias_relu_bwd(int N, int C, int64_t HW, const float* y, const float* dy, float* dpre, float* db,
                   cudaStream_t stream);
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
// Splitting a row-major [rows, cols] matrix along its columns (split along dim 1) and
// back, without a copy per row. split_cols: piece p gets columns [offset, offset+width)
// as a [rows, width] matrix, all pieces in one launch.
struct ColumnPiece {
  float* data;
  int64_t offset, width;
};
constexpr int kMaxColumnPieces = 8;
void split_cols(int64_t rows, int64_t cols, const float* x, const ColumnPiece* pieces, int count,
                cudaStream_t stream);
// dx[:, offset:offset+width] (+)= dy; without accumulate, dx's other columns become 0
// (the gradient of one piece), with it they are left alone (a later piece's gradient).
void place_cols(int64_t rows, int64_t cols, int64_t offset, int64_t width, const float* dy, float* dx,
                bool accumulate, cudaStream_t stream);
// ring[*count % capacity] = *value; ++*count (one thread): a log of per-step scalars
// (the training loss) that a captured step fills at every replay and the host reads now and then.
void append_to_ring(const float* value, float* ring, int64_t capacity, int64_t* count, cudaStream_t stream);

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
// points at the count of steps taken, on the device: the launch takes step
// t = *step_dev + 1 and stores t (its last block, once every block has read it), so a
// replayed graph advances it. lr_dev: the learning rate, read on the device too.
struct AdamTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
};
void adam_step_multi(const AdamTensor* table_dev, int count, int64_t total_elems, int64_t* step_dev,
                     const double* lr_dev, double beta1, double beta2, double eps, cudaStream_t stream);
void sgd_step(int64_t n, float* p, const float* g, double lr, cudaStream_t stream);

// ---------------------------------------------------------------------------
// Data (data.cu): a batch from the dataset kept on the device as uint8.
// x[i, pixel] from images[idx[i], pixel] with binarization mode 0 threshold
// (pixel >= 128), 1 dynamic (u < pixel/255, u from Philox{seed, (epoch << 32)
// + idx[i] * ceil(pixels/4)}, as engine/data.h), 2 none (pixel/255).
void gather_batch(const uint8_t* images, int64_t pixels, const int64_t* idx, int n, int mode,
                  uint64_t seed, uint64_t epoch, float* x, cudaStream_t stream);
// The same from order[cursor->position ...] with cursor->epoch, both read on the device;
// the launch's last block then advances cursor->position by n. A captured step gathers
// the next batch at every replay.
struct BatchCursor {
  int64_t position;  // index into the epoch's order
  int64_t epoch;
};
void gather_batch_at(const uint8_t* images, int64_t pixels, const int64_t* order, BatchCursor* cursor,
                     int n, int mode, uint64_t seed, float* x, cudaStream_t stream);

// ---------------------------------------------------------------------------
// Random numbers (random.cu), bit-identical to cpu::normal_fill /
// cpu::uniform_fill for the same (n, seed, offset): element i from Philox
// block offset + i/4 (kernels/philox.h).
template <typename T>
void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y, cudaStream_t stream);
template <typename T>
void uniform_fill(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi, T* y,
                  cudaStream_t stream);
// normal_fill at the offset *device_offset holds (device memory), which the launch's last
// block then advances by philox_blocks(n): a stream whose position lives on the device.
void normal_fill_from_device(int64_t n, uint64_t seed, uint64_t* device_offset, float* y,
                             cudaStream_t stream);

// ---------------------------------------------------------------------------
// The reparameterisation z = eps * exp(logvar / 2) + mean in one pass (random.cu), and its
// backward, the fused form of the CPU's chain scale, exp, mul, add (same float operations
// in the same order, so bitwise the CPU's values):
//   dmean (+)= dz;  dlogvar (+)= 0.5 * ((dz * eps) * exp(logvar / 2));  deps = dz * exp(logvar / 2)
// Any gradient may be null; accumulate_* adds into it instead of overwriting.
void reparameterize_fwd(int64_t n, const float* mean, const float* logvar, const float* eps, float* z,
                        cudaStream_t stream);
void reparameterize_bwd(int64_t n, const float* logvar, const float* eps, const float* dz, float* dmean,
                        bool accumulate_mean, float* dlogvar, bool accumulate_logvar, float* deps,
                        cudaStream_t stream);

}  // namespace cvae::kernels::cuda
