// launch.h: the emulator's side of kernels/cuda/launch.cuh: a launch converts its
// arguments to the kernel's parameter types once (CUDA copies them at launch), then
// hands exec.cpp one callable per emulated thread. Every kernel instance that has a
// launch site registers itself before main, so a test can list the never-launched ones.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>

#include "kernels/cuda/kernel_name.h"

namespace cvae::emu {

struct LaunchConfig {
  const char* kernel;  // kernel_name<K>(): lives as long as the program
  dim3 grid, block;
  size_t shared_bytes;
  cudaStream_t stream;
};

// Checks the configuration (errors through cudaGetLastError, as CUDA), then runs the
// grid now, or records it when the stream is being captured (exec.cpp).
void launch_kernel(const LaunchConfig& cfg, std::function<void()> thread_body);
bool register_kernel(const char* name);

template <typename F>
struct KernelParams;
template <typename... P>
struct KernelParams<void (*)(P...)> {
  using Tuple = std::tuple<std::decay_t<P>...>;
};

template <auto Kernel>
struct Registration {
  static inline const bool done = register_kernel(kernels::cuda::kernel_name<Kernel>().c_str());
};

template <auto Kernel, typename... Args>
void launch(const char* name, dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
            const Args&... args) {
  using Tuple = typename KernelParams<decltype(Kernel)>::Tuple;
  (void)Registration<Kernel>::done;
  auto params = std::make_shared<const Tuple>(args...);
  launch_kernel({name, grid, block, shared_bytes, stream}, [params] { std::apply(Kernel, *params); });
}

}  // namespace cvae::emu
