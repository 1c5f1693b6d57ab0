// cuda_test_util.h: what the CUDA test suites share: skipping with a reason
// when there is no GPU (or no CUDA in the build), device buffers filled from
// and read back into host vectors, and output poisoning.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace cvae::testing {
// Outside the CUDA block: the suites read it in a build without CUDA too (they skip there).
// Under AddressSanitizer the emulated kernels run 10-20 times slower. The sanitized run
// is there for memory errors, which the same kernels show on smaller work, so the
// heaviest tests take fewer steps and shapes there (every kernel still runs).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace cvae::testing

#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"

namespace cvae::testing {

// The stream every CUDA test queues on (created once).
inline cudaStream_t test_stream() {
  static cudaStream_t s = kernels::cuda::stream_create();
  return s;
}

// A device array of T that frees itself.
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n), p_(static_cast<T*>(kernels::cuda::device_malloc(bytes()))) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { kernels::cuda::device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T) > 0 ? n_ * sizeof(T) : sizeof(T); }
  void upload(const std::vector<T>& host) {
    kernels::cuda::memcpy_h2d(p_, host.data(), host.size() * sizeof(T), test_stream());
  }
  std::vector<T> download() const {  // waits for the stream
    std::vector<T> host(n_);
    kernels::cuda::memcpy_d2h(host.data(), p_, n_ * sizeof(T), test_stream());
    return host;
  }
  // Fills with NaN so elements a kernel forgets to write show up.
  void poison() { upload(std::vector<T>(n_, std::numeric_limits<T>::quiet_NaN())); }

 private:
  size_t n_;
  T* p_;
};

}  // namespace cvae::testing

// Skips the test with the reason when no GPU is usable.
#define CVAE_REQUIRE_GPU()                                                         \
  do {                                                                             \
    std::string why_;                                                              \
    if (cvae::kernels::cuda::device_count(&why_) == 0) GTEST_SKIP() << "no GPU: " << why_; \
  } while (0)
#else
#define CVAE_REQUIRE_GPU() GTEST_SKIP() << "built without CUDA (CVAE_CUDA=OFF or no nvcc)"
#endif
