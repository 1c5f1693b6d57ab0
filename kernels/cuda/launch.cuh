// launch.cuh: the one way kernels/cuda/*.cu start a kernel, launch<kernel>(grid, block,
// dynamic shared bytes, stream, args...): the triple-chevron launch under nvcc, the
// emulator's launch in the emulated build (CVAE_CUDA_EMULATED). Either way a bad
// configuration throws at once, naming the kernel; each launch is counted
// (stream_counts in kernels_cuda.h). Also CVAE_EXTERN_SHARED, the portable spelling of
// `extern __shared__ T name[]`.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/kernel_name.h"
#include "kernels/cuda/kernels_cuda.h"
#if defined(CVAE_CUDA_EMULATED)
#include "kernels/cuda/emulator/launch.h"
#endif

namespace cvae::kernels::cuda {

template <auto Kernel, typename... Args>
void launch(dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream, const Args&... args) {
#if defined(CVAE_CUDA_EMULATED)
  emu::launch<Kernel>(kernel_name<Kernel>().c_str(), grid, block, shared_bytes, stream, args...);
#else
  Kernel<<<grid, block, shared_bytes, stream>>>(args...);
#endif
  // A bad configuration shows up here (and is cleared); faults inside the kernel
  // surface at the next synchronising call (at once in the emulator, which runs it now).
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error("launch of " + kernel_name<Kernel>() + ": " + cudaGetErrorString(err));
  detail::count_kernel(stream);
}

}  // namespace cvae::kernels::cuda

// Dynamic shared memory (the launch's shared_bytes), 16-byte aligned.
#if defined(CVAE_CUDA_EMULATED)
#define CVAE_EXTERN_SHARED(type, name) type* const name = static_cast<type*>(::cvae::emu::dynamic_shared())
#else
#define CVAE_EXTERN_SHARED(type, name) extern __shared__ __align__(16) type name[]
#endif
