// conv2d.cu: CUDA Conv2d fprop and dgrad (each with a fused bias/ReLU epilogue) and wgrad, NCHW float, the twins
// of kernels/cpu/conv2d.cpp. Direct gather kernels: every output element is summed by one
// thread (fprop, dgrad) or one block (wgrad) in a fixed order. No atomics, no im2col buffer.
//
// Determinism: the order in which an output's terms are added depends only on the shape,
// never on the tile sizes picked below or on timing, so results repeat bit for bit. FMAs
// are explicit (fmaf): the library is built with --fmad=false, which only stops nvcc from
// contracting a*b+c by itself.
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/launch.cuh"  // launch<kernel>(...): throws naming the kernel on a bad launch
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 128;          // fprop / dgrad: one output pixel per thread
constexpr int kWgradThreads = 256;     // wgrad: threads of one block stride over n*P*Q
constexpr int kWgradTaps = 9;          // wgrad: at most this many (r,s) taps per block
constexpr int kWgradGroups = 16;       // wgrad: partial sums per tap after the first level
static_assert(kWgradThreads == kWgradGroups * kWgradGroups && kWgradTaps * kWgradGroups <= kWgradThreads);
constexpr int kSmemFloats = 8192;      // 32 KB of staged weights per block (under the 48 KB default)
constexpr int kTargetBlocks = 256;     // about two waves on a 132-SM H100: below, use narrower tiles

// The CPU twin's shape check, plus the limits of these kernels: 32-bit element indices
// and grid extents.
void check_shape(const Conv2dShape& s, const char* what) {
  bool ok = s.N >= 1 && s.C >= 1 && s.H >= 1 && s.W >= 1 && s.K >= 1 && s.R >= 1 && s.S >= 1;
  ok = ok && s.P >= 1 && s.Q >= 1 && s.stride_h >= 1 && s.stride_w >= 1;
  ok = ok && s.pad_h >= 0 && s.pad_w >= 0;
  if (!ok) throw std::invalid_argument(std::string(what) + ": invalid Conv2dShape");
  const int64_t x = (int64_t)s.N * s.C * s.H * s.W, y = (int64_t)s.N * s.K * s.P * s.Q;
  const int64_t w = (int64_t)s.K * s.C * s.R * s.S;
  if (x > INT_MAX || y > INT_MAX || w > INT_MAX || s.K > 65535 || s.C > 65535)
    throw std::invalid_argument(std::string(what) + ": tensor too large for 32-bit indexing");
  // One output channel (fprop) or input channel (dgrad) of a tile must fit in shared memory.
  if (8 * s.R * s.S > kSmemFloats)
    throw std::invalid_argument(std::string(what) + ": kernel window larger than 1024 taps");
}

unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// Channels per register tile: 1 for a single channel, 4 for a few (or when 8 would leave
// the GPU with too few blocks), else 8. Any choice gives the same bits.
int tile_for(int channels, int64_t pixels) {
  if (channels == 1) return 1;
  if (channels <= 4) return 4;
  const int64_t blocks8 = (int64_t)blocks_for(pixels, kThreads) * ((channels + 7) / 8);
  return blocks8 < kTargetBlocks ? 4 : 8;
}

// ---------------------------------------------------------------------------- fprop
// Layout: x [N,C,H,W], w [K,C,R,S], y [N,K,P,Q]; thread = (n,p,q), block.y = KT channels k.
// y[n,k,p,q] = act(sum_{c,r,s} x[n,c,p*sh-ph+r,q*sw-pw+s] * w[k,c,r,s] + bias[k])
// Terms are added in (c, r, s) order. The block's weights w[k0:k0+KT, c0:c0+cc] are staged
// in shared memory chunk by chunk of channels; every thread reads the same weight at a
// time (a broadcast), and consecutive threads read consecutive q of x.
template <int KT>
__global__ void fprop_kernel(Conv2dShape s, const float* __restrict__ x,
                             const float* __restrict__ w, const float* __restrict__ bias,
                             bool relu, int c_chunk, float* __restrict__ y) {
  CVAE_EXTERN_SHARED(float, ws);  // [KT][cc][R][S]
  const int RS = s.R * s.S;
  const int k0 = blockIdx.y * KT;
  // 64-bit: the last block of a grid over nearly INT_MAX pixels reaches past INT_MAX.
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const bool active = idx < (int64_t)s.N * s.P * s.Q;
  const int q = (int)(idx % s.Q), p = (int)(idx / s.Q % s.P);
  const int64_t n = idx / ((int64_t)s.P * s.Q);
  const int h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;

  float acc[KT];
#pragma unroll
  for (int kk = 0; kk < KT; ++kk) acc[kk] = 0.f;

  for (int c0 = 0; c0 < s.C; c0 += c_chunk) {
    const int cc = min(c_chunk, s.C - c0), tile = cc * RS;
    __syncthreads();  // the previous chunk's weights are no longer read
    for (int j = threadIdx.x; j < KT * tile; j += blockDim.x) {
      const int kk = j / tile, k = k0 + kk;
      ws[j] = k < s.K ? w[((int64_t)k * s.C + c0) * RS + (j - kk * tile)] : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    for (int c = 0; c < cc; ++c) {
      const float* xc = x + ((int64_t)n * s.C + c0 + c) * s.H * s.W;
      for (int r = 0; r < s.R; ++r) {
        const int h = h0 + r;
        if (h < 0 || h >= s.H) continue;
        for (int t = 0; t < s.S; ++t) {
          const int wi = w0 + t;
          if (wi < 0 || wi >= s.W) continue;
          const float v = xc[h * s.W + wi];
          const float* wp = ws + c * RS + r * s.S + t;
#pragma unroll
          for (int kk = 0; kk < KT; ++kk) acc[kk] = fmaf(v, wp[kk * tile], acc[kk]);
        }
      }
    }
  }
  if (!active) return;
#pragma unroll
  for (int kk = 0; kk < KT; ++kk) {
    const int k = k0 + kk;
    if (k >= s.K) break;
    float v = acc[kk];
    if (bias) v += bias[k];
    if (relu) v = v < 0.f ? 0.f : v;  // NaN kept, as the CPU's relu_fwd / bias_relu_fwd
    y[(((int64_t)n * s.K + k) * s.P + p) * s.Q + q] = v;
  }
}

template <int KT>
void launch_fprop(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                  bool relu, float* y, cudaStream_t stream) {
  const int RS = s.R * s.S;
  const int c_chunk = std::min(s.C, std::max(1, kSmemFloats / (KT * RS)));
  const dim3 grid(blocks_for((int64_t)s.N * s.P * s.Q, kThreads), (s.K + KT - 1) / KT);
  const size_t smem = sizeof(float) * KT * c_chunk * RS;
  launch<fprop_kernel<KT>>(grid, kThreads, smem, stream, s, x, w, bias, relu, c_chunk, y);
}

void fprop_dispatch(const Conv2dShape& s, const float* x, const float* w, const float* bias,
                    bool relu, float* y, cudaStream_t stream) {
  switch (tile_for(s.K, (int64_t)s.N * s.P * s.Q)) {
    case 1: launch_fprop<1>(s, x, w, bias, relu, y, stream); break;
    case 4: launch_fprop<4>(s, x, w, bias, relu, y, stream); break;
    default: launch_fprop<8>(s, x, w, bias, relu, y, stream); break;
  }
}

// ---------------------------------------------------------------------------- dgrad
// Layout: dy [N,K,P,Q], w [K,C,R,S], dx [N,C,H,W]; thread = (n,h,w), block.y = CT channels c.
// dx[n,c,h,w] = act(sum_{k,r,s} dy[n,k,(h+ph-r)/sh,(w+pw-s)/sw] * w[k,c,r,s] + bias[c])
//   over the (r,s) for which both divisions are exact and land inside [0,P) x [0,Q)
//   (bias null: none; the epilogue of a transposed conv, whose forward this is).
// A gather: the taps that reach h are r = (h+ph) mod sh, + sh, ...; terms are added in
// (k, r, s) order. Weights w[k0:k0+kc, c0:c0+CT] are staged in shared memory.
template <int CT>
__global__ void dgrad_kernel(Conv2dShape s, const float* __restrict__ dy,
                             const float* __restrict__ w, const float* __restrict__ bias, bool relu,
                             int k_chunk, float* __restrict__ dx) {
  CVAE_EXTERN_SHARED(float, ws);  // [kc][CT][R][S]
  const int RS = s.R * s.S, PQ = s.P * s.Q;
  const int c0 = blockIdx.y * CT;
  const int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;  // 64-bit, as fprop
  const bool active = idx < (int64_t)s.N * s.H * s.W;
  const int wi = (int)(idx % s.W), h = (int)(idx / s.W % s.H);
  const int64_t n = idx / ((int64_t)s.H * s.W);
  const int hp = h + s.pad_h, wp = wi + s.pad_w;  // >= 0
  const int r_first = hp % s.stride_h, t_first = wp % s.stride_w;

  float acc[CT];
#pragma unroll
  for (int ct = 0; ct < CT; ++ct) acc[ct] = 0.f;

  for (int k0 = 0; k0 < s.K; k0 += k_chunk) {
    const int kc = min(k_chunk, s.K - k0), tile = CT * RS;
    __syncthreads();  // the previous chunk's weights are no longer read
    for (int j = threadIdx.x; j < kc * tile; j += blockDim.x) {
      const int k = j / tile, rem = j - k * tile, ct = rem / RS, c = c0 + ct;
      ws[j] = c < s.C ? w[((int64_t)(k0 + k) * s.C + c) * RS + (rem - ct * RS)] : 0.f;
    }
    __syncthreads();
    if (!active) continue;
    for (int k = 0; k < kc; ++k) {
      const float* dyk = dy + ((int64_t)n * s.K + k0 + k) * PQ;
      for (int r = r_first; r < s.R && r <= hp; r += s.stride_h) {
        const int p = (hp - r) / s.stride_h;
        if (p >= s.P) continue;
        for (int t = t_first; t < s.S && t <= wp; t += s.stride_w) {
          const int q = (wp - t) / s.stride_w;
          if (q >= s.Q) continue;
          const float v = dyk[p * s.Q + q];
          const float* wk = ws + k * tile + r * s.S + t;
#pragma unroll
          for (int ct = 0; ct < CT; ++ct) acc[ct] = fmaf(v, wk[ct * RS], acc[ct]);
        }
      }
    }
  }
  if (!active) return;
#pragma unroll
  for (int ct = 0; ct < CT; ++ct) {
    const int c = c0 + ct;
    if (c >= s.C) break;
    float v = acc[ct];
    if (bias) v += bias[c];
    if (relu) v = v < 0.f ? 0.f : v;  // NaN kept, as the CPU's conv2d_dgrad_bias_act
    dx[(((int64_t)n * s.C + c) * s.H + h) * s.W + wi] = v;
  }
}

template <int CT>
void launch_dgrad(const Conv2dShape& s, const float* dy, const float* w, const float* bias, bool relu,
                  float* dx, cudaStream_t stream) {
  const int RS = s.R * s.S;
  const int k_chunk = std::min(s.K, std::max(1, kSmemFloats / (CT * RS)));
  const dim3 grid(blocks_for((int64_t)s.N * s.H * s.W, kThreads), (s.C + CT - 1) / CT);
  const size_t smem = sizeof(float) * k_chunk * CT * RS;
  launch<dgrad_kernel<CT>>(grid, kThreads, smem, stream, s, dy, w, bias, relu, k_chunk, dx);
}

// ---------------------------------------------------------------------------- wgrad
// Layout: x [N,C,H,W], dy [N,K,P,Q], dw [K,C,R,S]; block = (k, c, up to 9 taps (r,s)).
// dw[k,c,r,s] = sum_{n,p,q} dy[n,k,p,q] * x[n,c,p*sh-ph+r,q*sw-pw+s]
// Thread i of the block sums the terms i, i+256, i+512, ... of the flattened (n,p,q) range
// (consecutive threads read consecutive q), then the block adds the 256 partial sums in a
// fixed order, in two levels of 16: thread g of a tap adds partials g, g+16, ..., g+240,
// then one thread adds those 16. Two barriers, where a binary tree takes nine: on a GPU
// the two 16-term chains cost about what the tree's levels do, and the emulator visits
// every thread of the block at each barrier. Every tap's sum has this same order whatever
// the taps per block, so the result depends only on the shape. A block with several taps reads each dy
// element once for all of them.
__global__ void wgrad_kernel(Conv2dShape s, const float* __restrict__ x,
                             const float* __restrict__ dy, int taps_per_block,
                             float* __restrict__ dw) {
  __shared__ float red[kWgradTaps][kWgradThreads];
  const int RS = s.R * s.S, PQ = s.P * s.Q, HW = s.H * s.W;
  const int chunks = (RS + taps_per_block - 1) / taps_per_block;
  const int k = blockIdx.y, c = blockIdx.x / chunks;
  const int tap0 = (blockIdx.x % chunks) * taps_per_block;
  const int ntaps = min(taps_per_block, RS - tap0);
  int tr[kWgradTaps], ts[kWgradTaps];  // (r,s) of tap tap0 + t, by counting: one division
  tr[0] = tap0 / s.S;
  ts[0] = tap0 - tr[0] * s.S;
#pragma unroll
  for (int t = 1; t < kWgradTaps; ++t) {
    const bool wrap = ts[t - 1] + 1 == s.S;
    tr[t] = tr[t - 1] + (wrap ? 1 : 0);
    ts[t] = wrap ? 0 : ts[t - 1] + 1;
  }
  float acc[kWgradTaps];
#pragma unroll
  for (int t = 0; t < kWgradTaps; ++t) acc[t] = 0.f;

  // 64-bit: i + 256 passes INT_MAX when N*P*Q is near it (the shape check allows that).
  // (n, pq) of i follow i by addition: a division only where a stride crosses an image
  // (64-bit division is a long instruction sequence on the GPU, and slow emulated).
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t total = (int64_t)s.N * PQ;
  int64_t n = tid / PQ;
  uint32_t pq_next = (uint32_t)(tid % PQ);  // below PQ + 256, which fits 32 bits unsigned
  for (int64_t i = tid; i < total; i += kWgradThreads) {
    const int pq = (int)pq_next, p = pq / s.Q, q = pq - p * s.Q;
    const float d = dy[(n * s.K + k) * PQ + pq];
    const float* xc = x + (n * s.C + c) * HW;
    const int h0 = p * s.stride_h - s.pad_h, w0 = q * s.stride_w - s.pad_w;
#pragma unroll
    for (int t = 0; t < kWgradTaps; ++t) {
      if (t >= ntaps) break;
      const int h = h0 + tr[t], wi = w0 + ts[t];
      if (h >= 0 && h < s.H && wi >= 0 && wi < s.W) acc[t] = fmaf(d, xc[h * s.W + wi], acc[t]);
    }
    pq_next += kWgradThreads;  // to i + 256
    if (pq_next >= (uint32_t)PQ) {
      n += pq_next / (uint32_t)PQ;
      pq_next %= (uint32_t)PQ;
    }
  }
#pragma unroll
  for (int t = 0; t < kWgradTaps; ++t) red[t][tid] = acc[t];
  __syncthreads();
  __shared__ float part[kWgradTaps][kWgradGroups];
  if (tid < ntaps * kWgradGroups) {
    const int t = tid / kWgradGroups, g = tid % kWgradGroups;  // consecutive threads, consecutive banks
    float v = red[t][g];
    for (int j = 1; j < kWgradThreads / kWgradGroups; ++j) v += red[t][g + j * kWgradGroups];
    part[t][g] = v;
  }
  __syncthreads();
  if (tid < ntaps) {
    float v = part[tid][0];
    for (int g = 1; g < kWgradGroups; ++g) v += part[tid][g];
    dw[((int64_t)k * s.C + c) * RS + tap0 + tid] = v;
  }
}

}  // namespace

void conv2d_fprop(const Conv2dShape& s, const float* x, const float* w, float* y,
                  cudaStream_t stream) {
  check_shape(s, "conv2d_fprop");
  fprop_dispatch(s, x, w, nullptr, false, y, stream);
}

void conv2d_fprop_bias_act(const Conv2dShape& s, const float* x, const float* w,
                           const float* bias, bool relu, float* y, cudaStream_t stream) {
  check_shape(s, "conv2d_fprop_bias_act");
  fprop_dispatch(s, x, w, bias, relu, y, stream);
}

void conv2d_dgrad_bias_act(const Conv2dShape& s, const float* dy, const float* w,
                           const float* bias, bool relu, float* dx, cudaStream_t stream) {
  check_shape(s, "conv2d_dgrad");
  switch (tile_for(s.C, (int64_t)s.N * s.H * s.W)) {
    case 1: launch_dgrad<1>(s, dy, w, bias, relu, dx, stream); break;
    case 4: launch_dgrad<4>(s, dy, w, bias, relu, dx, stream); break;
    default: launch_dgrad<8>(s, dy, w, bias, relu, dx, stream); break;
  }
}

void conv2d_dgrad(const Conv2dShape& s, const float* dy, const float* w, float* dx,
                  cudaStream_t stream) {
  conv2d_dgrad_bias_act(s, dy, w, nullptr, false, dx, stream);
}

void conv2d_wgrad(const Conv2dShape& s, const float* x, const float* dy, float* dw,
                  cudaStream_t stream) {
  check_shape(s, "conv2d_wgrad");
  const int RS = s.R * s.S;
  // Up to 9 taps per block share the dy reads; when that leaves too few blocks (a layer
  // with one input channel), one tap per block spreads the work wider. Same bits either way.
  const int64_t wide = (int64_t)s.K * s.C * ((RS + kWgradTaps - 1) / kWgradTaps);
  const int taps = wide >= 4 * kTargetBlocks ? std::min(RS, kWgradTaps) : 1;
  const int chunks = (RS + taps - 1) / taps;
  if ((int64_t)s.C * chunks > INT_MAX)
    throw std::invalid_argument("conv2d_wgrad: too many channel x tap blocks");
  const dim3 grid((unsigned)(s.C * chunks), (unsigned)s.K);
  launch<wgrad_kernel>(grid, kWgradThreads, 0, stream, s, x, dy, taps, dw);
}

}  // namespace cvae::kernels::cuda
