// data.cu: the CUDA batch gather, twin of engine/data.cpp's gather_batch: uint8
// images on the device -> a float batch, binarized by threshold, dynamically
// (Philox, bit-identical to the CPU stream) or not at all; from a position given by
// the host, or read on the device (a cursor the launch advances). Indices are not
// range-checked here (that would need a host round trip): the caller checks them.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/grid_reduce.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/kernels_cuda.h"
#include "kernels/philox.h"

namespace cvae::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxGrid = 65535;  // grid-stride beyond this

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxGrid)));
}

// Where a launch reads its batch: idx, or (cursor given) order + cursor->position, with
// the epoch the cursor holds; its last block then moves the cursor past the batch.
struct BatchAt {
  const int64_t* idx;
  BatchCursor* cursor;
  unsigned* counter;  // arrivals, with a cursor
  __device__ const int64_t* rows() const { return cursor ? idx + cursor->position : idx; }
  __device__ void advance(int n) const {
    if (cursor && last_block_arrives(counter, gridDim.x) && threadIdx.x == 0) cursor->position += n;
  }
};

// Layout: images [count, pixels] uint8, idx [n] -> x [n, pixels]; one thread per output pixel.
// mode 0: x = (pixel/255 >= 0.5) = (pixel >= 128);  mode 2: x = pixel / 255.0f (float division)
__global__ void gather_lut_kernel(const uint8_t* images, int64_t pixels, BatchAt at, int n,
                                  bool threshold, float* x) {
  const int64_t* idx = at.rows();
  const int64_t total = static_cast<int64_t>(n) * pixels;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < total; q += stride) {
    const int64_t i = q / pixels, k = q - i * pixels;
    const uint8_t p = images[idx[i] * pixels + k];
    x[q] = threshold ? (p >= 128 ? 1.0f : 0.0f) : static_cast<float>(p) / 255.0f;
  }
  at.advance(n);
}

// Layout: x [n, pixels]; one thread per (row i, Philox block b), b in [0, ceil(pixels/4)),
// writing pixels 4b .. 4b+3 of row i.
// x[i,k] = (u_k < pixel/255) with u_k = lane k%4 of Philox{seed, (epoch<<32) + idx[i]*ceil(pixels/4) + k/4}
// u_k and pixel/255 in double, exactly as engine/data.cpp (uniform_fill<double> on [0,1)).
// (epoch: the cursor's, when the batch is read at a cursor)
__global__ void gather_dynamic_kernel(const uint8_t* images, int64_t pixels, BatchAt at, int n,
                                      uint64_t blocks_per_image, uint64_t seed, uint64_t epoch, float* x) {
  const int64_t* idx = at.rows();
  const uint64_t base = (at.cursor ? static_cast<uint64_t>(at.cursor->epoch) : epoch) << 32;
  const int64_t total_blocks = static_cast<int64_t>(n) * static_cast<int64_t>(blocks_per_image);
  const int64_t bpi = static_cast<int64_t>(blocks_per_image);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t q = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < total_blocks;
       q += stride) {
    const int64_t i = q / bpi, b = q - i * bpi;
    const int64_t j = idx[i];
    const uint64_t offset = base + static_cast<uint64_t>(j) * blocks_per_image;
    double u[4];
    philox::philox_uniform4<double>(seed, offset + static_cast<uint64_t>(b), 0.0, 1.0, u);
    const uint8_t* src = images + j * pixels;
    float* dst = x + i * pixels;
    const int64_t k0 = 4 * b;
    const int64_t cnt = pixels - k0 < 4 ? pixels - k0 : 4;
    for (int64_t l = 0; l < cnt; ++l) {
      const double prob = static_cast<double>(src[k0 + l]) / 255.0;
      dst[k0 + l] = u[l] < prob ? 1.0f : 0.0f;
    }
  }
  at.advance(n);
}

void gather(const uint8_t* images, int64_t pixels, BatchAt at, int n, int mode, uint64_t seed, uint64_t epoch,
            float* x, cudaStream_t stream) {
  if (mode < 0 || mode > 2)
    throw std::invalid_argument("gather_batch: binarization mode " + std::to_string(mode) +
                                " is not 0 (threshold), 1 (dynamic) or 2 (none)");
  if (n <= 0 || pixels <= 0) return;
  if (at.cursor) at.counter = detail::arrival_counters(stream, 1);
  if (mode == 1) {
    const uint64_t bpi = philox_blocks(pixels);
    const int64_t total_blocks = static_cast<int64_t>(n) * static_cast<int64_t>(bpi);
    launch<gather_dynamic_kernel>(grid_for(total_blocks), kThreads, 0, stream, images, pixels, at, n, bpi, seed,
                                  epoch, x);
  } else {
    launch<gather_lut_kernel>(grid_for(static_cast<int64_t>(n) * pixels), kThreads, 0, stream, images, pixels,
                              at, n, mode == 0, x);
  }
}

}  // namespace

void gather_batch(const uint8_t* images, int64_t pixels, const int64_t* idx, int n, int mode,
                  uint64_t seed, uint64_t epoch, float* x, cudaStream_t stream) {
  gather(images, pixels, BatchAt{idx, nullptr, nullptr}, n, mode, seed, epoch, x, stream);
}

void gather_batch_at(const uint8_t* images, int64_t pixels, const int64_t* order, BatchCursor* cursor, int n,
                     int mode, uint64_t seed, float* x, cudaStream_t stream) {
  gather(images, pixels, BatchAt{order, cursor, nullptr}, n, mode, seed, 0, x, stream);
}

}  // namespace cvae::kernels::cuda
