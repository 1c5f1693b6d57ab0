// device.cu: asking the CUDA runtime which GPUs there are. Never trusts an
// output argument of a call that failed (DESIGN.md: cudaGetDeviceCount leaves
// the count unset when the driver is missing).
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kernels/cuda/kernels_cuda.h"

namespace cvae::kernels::cuda {

int device_count(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  if (count == 0 && why) *why = "no CUDA devices";
  return count;
}

std::string device_description(int i) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, i) != cudaSuccess) return "unknown device";
  char buf[320];
  std::snprintf(buf, sizeof buf, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1 << 30));
  return buf;
}

}  // namespace cvae::kernels::cuda
