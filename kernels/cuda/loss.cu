// loss.cu: CUDA twins of kernels/cpu/loss.cpp (sigmoid CE, log-normal pdf,
// analytic KL) and kernels/cpu/vae_loss.cpp (the fused VAE loss). Deterministic:
// no atomics; row sums are fixed-order shared-memory trees, one block per row.
// Precision follows the CPU twins: the elementwise sigmoid CE is float math, every
// row-wise term is computed and summed in double and rounded once to float.
// Compiled with --fmad=false.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/grid_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 256;     // elementwise kernels
constexpr int kRowThreads = 128;  // row kernels: one block per row (power of two)
constexpr int64_t kMaxGrid = 65535;  // grid-stride beyond this
constexpr double kLog2Pi = 1.8378770664093454835606594728112;  // log(2*pi)

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid)));
}

// Fixed-order block sum of one double per thread: sh[t] += sh[t+s] for
// s = B/2, B/4, ..., 1. The result is returned to every thread. A second call in the same
// kernel needs a barrier between the two (every thread reads the first result).
template <int B>
__device__ double block_sum(double v, double* sh) {
  const int t = threadIdx.x;
  sh[t] = v;
  __syncthreads();
#pragma unroll
  for (int s = B / 2; s > 0; s >>= 1) {
    if (t < s) sh[t] += sh[t + s];
    __syncthreads();
  }
  return sh[0];
}

// CE(l, t) = max(l,0) - l*t + log1p(exp(-|l|)), in double
__device__ inline double ce_term(double l, double t) {
  return (l > 0.0 ? l : 0.0) - l * t + ::log1p(::exp(-::fabs(l)));
}

// Stable sigmoid in double.
__device__ inline double sigmoid_d(double l) {
  const double e = ::exp(-::fabs(l));
  const double r = 1.0 / (1.0 + e);
  return l >= 0.0 ? r : e * r;
}

// Layout: logits, targets, loss [n]; one thread per element (grid-stride).
// loss = max(x,0) - x*t + log1p(exp(-|x|))   (float, as the CPU float twin)
__global__ void sigmoid_ce_fwd_kernel(int64_t n, const float* logits, const float* targets,
                                      float* loss) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = logits[i];
    loss[i] = (x > 0.0f ? x : 0.0f) - x * targets[i] + log1pf(expf(-fabsf(x)));
  }
}

// Layout: [n]; one thread per element.
// dlogits = dl * (sigmoid(x) - t);  dtargets = -dl * x   (either may be null)
__global__ void sigmoid_ce_bwd_kernel(int64_t n, const float* logits, const float* targets,
                                      const float* dloss, float* dlogits, float* dtargets) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = logits[i];
    if (dlogits) {
      const float e = expf(-fabsf(x));
      const float r = 1.0f / (1.0f + e);
      const float sig = x >= 0.0f ? r : e * r;
      dlogits[i] = dloss[i] * (sig - targets[i]);
    }
    if (dtargets) dtargets[i] = -dloss[i] * x;
  }
}

// Layout: x, mean, logvar [N,D] -> out [N]; block i = row i, thread t sums j = t, t+B, ...
// out[i] = sum_j -0.5 * ((x-m)^2 * exp(-lv) + lv + log(2*pi))   (m, lv null -> 0; double)
__global__ void log_normal_pdf_fwd_kernel(int D, const float* x, const float* mean,
                                          const float* logvar, float* out) {
  __shared__ double sh[kRowThreads];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * D;
  double acc = 0;
  for (int j = threadIdx.x; j < D; j += kRowThreads) {
    const double d = static_cast<double>(x[row + j]) - (mean ? static_cast<double>(mean[row + j]) : 0.0);
    const double lv = logvar ? static_cast<double>(logvar[row + j]) : 0.0;
    acc += -0.5 * (d * d * ::exp(-lv) + lv + kLog2Pi);
  }
  const double s = block_sum<kRowThreads>(acc, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<float>(s);
}

// Layout: [N,D], dout [N]; one thread per element.
// dx = -dout (x-m) e^-lv;  dmean = -dx;  dlogvar = 0.5 dout ((x-m)^2 e^-lv - 1)   (double)
__global__ void log_normal_pdf_bwd_kernel(int64_t total, int D, const float* x, const float* mean,
                                          const float* logvar, const float* dout, float* dx,
                                          float* dmean, float* dlogvar) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    const double g = static_cast<double>(dout[k / D]);
    const double d = static_cast<double>(x[k]) - (mean ? static_cast<double>(mean[k]) : 0.0);
    const double inv_var = logvar ? ::exp(-static_cast<double>(logvar[k])) : 1.0;
    const double gx = -g * d * inv_var;
    if (dx) dx[k] = static_cast<float>(gx);
    if (dmean) dmean[k] = static_cast<float>(-gx);
    if (dlogvar) dlogvar[k] = static_cast<float>(0.5 * g * (d * d * inv_var - 1.0));
  }
}

// Layout: mean, logvar [N,D] -> out [N]; block i = row i.
// out[i] = -0.5 * sum_j (1 + lv - m^2 - exp(lv))   (double)
__global__ void kl_normal_fwd_kernel(int D, const float* mean, const float* logvar, float* out) {
  __shared__ double sh[kRowThreads];
  const int64_t row = static_cast<int64_t>(blockIdx.x) * D;
  double acc = 0;
  for (int j = threadIdx.x; j < D; j += kRowThreads) {
    const double m = static_cast<double>(mean[row + j]);
    const double lv = static_cast<double>(logvar[row + j]);
    acc += 1.0 + lv - m * m - ::exp(lv);
  }
  const double s = block_sum<kRowThreads>(acc, sh);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<float>(-0.5 * s);
}

// Layout: [N,D], dout [N]; one thread per element.
// dmean = dout * m;  dlogvar = dout * 0.5 * (exp(lv) - 1)   (double; either may be null)
__global__ void kl_normal_bwd_kernel(int64_t total, int D, const float* mean, const float* logvar,
                                     const float* dout, float* dmean, float* dlogvar) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    const double g = static_cast<double>(dout[k / D]);
    if (dmean) dmean[k] = static_cast<float>(g * static_cast<double>(mean[k]));
    if (dlogvar) dlogvar[k] = static_cast<float>(g * 0.5 * ::expm1(static_cast<double>(logvar[k])));
  }
}

// Layout: logits, x [N,D], z, mean, logvar [N,L] -> row_elbo [N], loss [1]; block i = row i,
// thread t sums CE terms j = t, t+B, ... then latent terms j = t, t+B, ... (double).
// MC:       elbo = -sum_j CE + sum_j -0.5 (z^2 - (z-m)^2 e^-lv - lv)
// analytic: elbo = -sum_j CE + 0.5 sum_j (1 + lv - m^2 - e^lv)
// The last block to finish its row then sums the rows: thread t takes rows t, t+B, ... (double)
// loss = -(1/N) sum_i row_elbo[i]
__global__ void vae_loss_fwd_kernel(VaeLossShape s, const float* logits, const float* x,
                                    const float* z, const float* mean, const float* logvar,
                                    float* row_elbo, unsigned* counter, float* loss) {
  __shared__ double sh[kRowThreads];
  const int64_t rx = static_cast<int64_t>(blockIdx.x) * s.D;
  const int64_t rz = static_cast<int64_t>(blockIdx.x) * s.L;
  double acc = 0;
  for (int j = threadIdx.x; j < s.D; j += kRowThreads)
    acc -= ce_term(static_cast<double>(logits[rx + j]), static_cast<double>(x[rx + j]));
  for (int j = threadIdx.x; j < s.L; j += kRowThreads) {
    const double m = static_cast<double>(mean[rz + j]);
    const double lv = static_cast<double>(logvar[rz + j]);
    if (s.analytic) {
      acc += 0.5 * (1.0 + lv - m * m - ::exp(lv));
    } else {
      const double zz = static_cast<double>(z[rz + j]);
      const double d = zz - m;
      acc += -0.5 * (zz * zz - d * d * ::exp(-lv) - lv);
    }
  }
  const double e = block_sum<kRowThreads>(acc, sh);
  if (threadIdx.x == 0) row_elbo[blockIdx.x] = static_cast<float>(e);
  if (!last_block_arrives(counter, gridDim.x)) return;
  const volatile float* rows = row_elbo;
  double part = 0;
  for (int i = threadIdx.x; i < s.N; i += kRowThreads) part += static_cast<double>(rows[i]);
  const double total = block_sum<kRowThreads>(part, sh);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(-total / s.N);
}

// Layout: indices [0, N*D) are logits [N,D], [N*D, N*D + N*L) latents [N,L]; one
// thread per element. c = dloss[0]/N (read on the device):
//   dlogits = c (sigmoid(l) - x)
//   MC:       dz = c (z - (z-m) e^-lv),  dm = c (z-m) e^-lv,  dlv = -c/2 (1 - (z-m)^2 e^-lv)
//   analytic: dz = 0,  dm = c m,  dlv = c/2 (e^lv - 1)
__global__ void vae_loss_bwd_kernel(VaeLossShape s, const float* logits, const float* x,
                                    const float* z, const float* mean, const float* logvar,
                                    const float* dloss, float* dlogits, float* dz, float* dmean,
                                    float* dlogvar) {
  const int64_t nx = static_cast<int64_t>(s.N) * s.D;
  const int64_t total = nx + static_cast<int64_t>(s.N) * s.L;
  const double c = static_cast<double>(dloss[0]) / s.N;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += stride) {
    if (k < nx) {
      if (dlogits)
        dlogits[k] = static_cast<float>(c * (sigmoid_d(static_cast<double>(logits[k])) -
                                             static_cast<double>(x[k])));
      continue;
    }
    const int64_t q = k - nx;
    const double m = static_cast<double>(mean[q]);
    const double lv = static_cast<double>(logvar[q]);
    if (s.analytic) {
      if (dz) dz[q] = 0.0f;
      if (dmean) dmean[q] = static_cast<float>(c * m);
      if (dlogvar) dlogvar[q] = static_cast<float>(0.5 * c * ::expm1(lv));
    } else {
      const double zz = static_cast<double>(z[q]);
      const double d = zz - m;
      const double w = d * ::exp(-lv);  // (z-m) e^-lv
      if (dz) dz[q] = static_cast<float>(c * (zz - w));
      if (dmean) dmean[q] = static_cast<float>(c * w);
      if (dlogvar) dlogvar[q] = static_cast<float>(-0.5 * c * (1.0 - d * w));
    }
  }
}

}  // namespace

void sigmoid_ce_fwd(int64_t n, const float* logits, const float* targets, float* loss,
                    cudaStream_t stream) {
  if (n <= 0) return;
  launch<sigmoid_ce_fwd_kernel>(grid_for(n), kThreads, 0, stream, n, logits, targets, loss);
}

void sigmoid_ce_bwd(int64_t n, const float* logits, const float* targets, const float* dloss,
                    float* dlogits, float* dtargets, cudaStream_t stream) {
  if (n <= 0 || (!dlogits && !dtargets)) return;
  launch<sigmoid_ce_bwd_kernel>(grid_for(n), kThreads, 0, stream, n, logits, targets, dloss, dlogits,
      dtargets);
}

void log_normal_pdf_fwd(int N, int D, const float* x, const float* mean, const float* logvar,
                        float* out, cudaStream_t stream) {
  if (N <= 0) return;
  launch<log_normal_pdf_fwd_kernel>(N, kRowThreads, 0, stream, D, x, mean, logvar, out);
}

void log_normal_pdf_bwd(int N, int D, const float* x, const float* mean, const float* logvar,
                        const float* dout, float* dx, float* dmean, float* dlogvar,
                        cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(N) * D;
  if (total <= 0 || (!dx && !dmean && !dlogvar)) return;
  launch<log_normal_pdf_bwd_kernel>(grid_for(total), kThreads, 0, stream, total, D, x, mean, logvar,
      dout, dx, dmean, dlogvar);
}

void kl_normal_fwd(int N, int D, const float* mean, const float* logvar, float* out,
                   cudaStream_t stream) {
  if (N <= 0) return;
  launch<kl_normal_fwd_kernel>(N, kRowThreads, 0, stream, D, mean, logvar, out);
}

void kl_normal_bwd(int N, int D, const float* mean, const float* logvar, const float* dout,
                   float* dmean, float* dlogvar, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(N) * D;
  if (total <= 0 || (!dmean && !dlogvar)) return;
  launch<kl_normal_bwd_kernel>(grid_for(total), kThreads, 0, stream, total, D, mean, logvar, dout,
      dmean, dlogvar);
}

// One launch, no host synchronisation: the rows, and the fixed-order batch mean in the
// last block (a batch of no rows has the loss 0).
void vae_loss_fwd(const VaeLossShape& s, const float* logits, const float* x, const float* z,
                  const float* mean, const float* logvar, float* loss, float* row_elbo,
                  cudaStream_t stream) {
  if (s.N <= 0) return fill(1, 0.f, loss, stream);
  launch<vae_loss_fwd_kernel>(s.N, kRowThreads, 0, stream, s, logits, x, z, mean, logvar, row_elbo,
                              detail::arrival_counters(stream, 1), loss);
}

void vae_loss_bwd(const VaeLossShape& s, const float* logits, const float* x, const float* z,
                  const float* mean, const float* logvar, const float* dloss, float* dlogits,
                  float* dz, float* dmean, float* dlogvar, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(s.N) * (static_cast<int64_t>(s.D) + s.L);
  if (s.N <= 0 || total <= 0) return;
  launch<vae_loss_bwd_kernel>(grid_for(total), kThreads, 0, stream, s, logits, x, z, mean, logvar,
      dloss, dlogits, dz, dmean, dlogvar);
}

}  // namespace cvae::kernels::cuda
