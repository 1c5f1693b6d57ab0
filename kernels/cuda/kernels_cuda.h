// kernels_cuda.h: host launchers of cvae-engine's CUDA kernels (the twins of
// kernels/kernels.h's CPU kernels: same names, same math). Plain C++ may include
// it without the CUDA headers; the kernels themselves stay static in the .cu files.
// Launchers are asynchronous on `stream` and throw std::runtime_error on a launch error.
#pragma once

#include <cstdint>
#include <string>

// cuda_runtime_api.h declares exactly this; redeclaring the same alias is legal.
struct CUstream_st;
using cudaStream_t = CUstream_st*;

namespace cvae::kernels::cuda {

// Devices usable now. Any CUDA error (no driver, "driver version is
// insufficient", ...) means no GPU: returns 0 and, when why is given, the reason.
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" for device i.
std::string device_description(int i);

// ---------------------------------------------------------------------------
// Random numbers, bit-identical to cpu::normal_fill / cpu::uniform_fill for the
// same (n, seed, offset): element i from Philox block offset + i/4 (kernels/philox.h).
// y is device memory.
template <typename T>
void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y, cudaStream_t stream);
template <typename T>
void uniform_fill(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi, T* y,
                  cudaStream_t stream);

}  // namespace cvae::kernels::cuda
