// check.cuh: the CUDA error checks every kernels/cuda/*.cu file shares. A failed
// call throws std::runtime_error("file:line: expr: cudaGetErrorString(err)") so
// tests can catch it and the app can print one line. Device code only: no kernels here.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace cvae::kernels::cuda::detail {

// Also resets the thread's last error: reported once here, it must not resurface at the
// next launch's check (CUDA keeps a failed call's error until cudaGetLastError reads it).
[[noreturn]] inline void throw_cuda_error(const char* file, int line, const char* expr,
                                          cudaError_t err) {
  cudaGetLastError();
  throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + expr + ": " +
                           cudaGetErrorString(err));
}

}  // namespace cvae::kernels::cuda::detail

// Evaluates a CUDA runtime call once and throws on anything but cudaSuccess.
#define CVAE_CUDA_CHECK(expr)                                                          \
  do {                                                                                 \
    const cudaError_t cvae_err_ = (expr);                                              \
    if (cvae_err_ != cudaSuccess)                                                      \
      ::cvae::kernels::cuda::detail::throw_cuda_error(__FILE__, __LINE__, #expr, cvae_err_); \
  } while (0)

