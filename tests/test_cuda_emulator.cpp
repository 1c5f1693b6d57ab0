// test_cuda_emulator.cpp: the CUDA emulator's own promises (kernels/cuda/emulator/),
// with small kernels written here: the launch limits of an H100, __syncthreads as a
// real barrier (and the faults a GPU or compute-sanitizer reports: divergent barriers,
// a thread that ends while others wait), poisoned fresh memory, the reverse thread
// order that exposes a missing barrier, stream capture's rules, graph replay, the
// device's answers. Emulated builds only; elsewhere the file holds one skipping test.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/cuda_test_util.h"

#if defined(CVAE_CUDA_EMULATED)
#include <cuda_runtime.h>

#include "kernels/cuda/emulator/emulator.h"
#include "kernels/cuda/launch.cuh"

namespace {

namespace kc = cvae::kernels::cuda;
using cvae::testing::DeviceBuffer;
using cvae::testing::test_stream;

// ------------------------------------------------------------------ test kernels
// y[i] = i for i < n (one thread per element, no barrier).
__global__ void iota_kernel(int n, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = static_cast<float>(i);
}

// Layout: y [gridDim.x * blockDim.x]. Each thread writes its index to shared memory,
// waits, and reads its right neighbour's: y = (t + 1) % blockDim.x.
__global__ void neighbour_kernel(float* y) {
  __shared__ float sh[1024];
  const unsigned t = threadIdx.x;
  sh[t] = static_cast<float>(t);
  __syncthreads();
  y[blockIdx.x * blockDim.x + t] = sh[(t + 1) % blockDim.x];
}

// The same without the barrier, reading the LEFT neighbour through dynamic shared
// memory (poisoned at block start): in the forward order the writer t-1 has always
// run before the reader t, so the bug hides; the reverse order shows it.
__global__ void left_neighbour_no_barrier_kernel(float* y) {
  CVAE_EXTERN_SHARED(float, sh);
  const unsigned t = threadIdx.x;
  sh[t] = static_cast<float>(t);
  y[t] = t == 0 ? 0.f : sh[t - 1];
}

// Odd threads reach a barrier, even threads do not.
__global__ void odd_threads_sync_kernel(float* y) {
  if (threadIdx.x % 2 == 1) __syncthreads();
  y[threadIdx.x] = 1.f;
}

// Thread 0 waits at a barrier the others never reach.
__global__ void only_thread0_syncs_kernel(float* y) {
  if (threadIdx.x == 0) __syncthreads();
  y[threadIdx.x] = 1.f;
}

// Two different barriers: the first half of the block waits at one, the rest at another.
__global__ void two_barriers_kernel(float* y) {
  if (threadIdx.x < blockDim.x / 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  y[threadIdx.x] = 1.f;
}

// Every thread passes a barrier, then thread 0 faults (throws, as the emulator's own
// checks do) while the others wait to be resumed past the barrier.
__global__ void faults_after_barrier_kernel(float* y) {
  __syncthreads();
  if (threadIdx.x == 0) throw std::runtime_error("thread 0 faults");
  y[threadIdx.x] = 1.f;
}

// y[t] = the block's dynamic shared memory as written by nobody.
__global__ void read_unwritten_shared_kernel(float* y) {
  CVAE_EXTERN_SHARED(float, sh);
  y[threadIdx.x] = sh[threadIdx.x];
}

// y[i] = 2 * x[i] + 1
__global__ void affine_kernel(int n, const float* x, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = 2.f * x[i] + 1.f;
}

// Runs f, which must throw std::runtime_error; returns its message.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

// Runs a block's threads in the given order while in scope (CI runs the suite in both).
struct ScopedOrder {
  explicit ScopedOrder(cvae::emu::ThreadOrder order) : before(cvae::emu::thread_order()) {
    cvae::emu::set_thread_order(order);
  }
  ~ScopedOrder() { cvae::emu::set_thread_order(before); }
  cvae::emu::ThreadOrder before;
};

// Faults inside a kernel are sticky (as on a GPU, where the process must restart):
// every test that provokes one clears it before its buffers are freed.
struct ClearStickyError {
  ~ClearStickyError() { cvae::emu::clear_sticky_error(); }
};

}  // namespace

// ------------------------------------------------------------------ launch limits
TEST(CudaEmulator, LaunchLimitsAreAnH100s) {
  DeviceBuffer<float> y(4096);
  const std::string threads = error_of([&] { kc::launch<iota_kernel>(2, 2048, 0, test_stream(), 4096, y.get()); });
  EXPECT_NE(threads.find("iota_kernel"), std::string::npos) << threads;
  EXPECT_NE(threads.find("2048 threads per block"), std::string::npos) << threads;
  const std::string grid = error_of([&] { kc::launch<iota_kernel>(dim3(1, 65536), 1, 0, test_stream(), 0, y.get()); });
  EXPECT_NE(grid.find("65535"), std::string::npos) << grid;
  const std::string shared = error_of([&] { kc::launch<iota_kernel>(1, 1, 48 * 1024 + 4, test_stream(), 0, y.get()); });
  EXPECT_NE(shared.find("48 KB"), std::string::npos) << shared;
  // Configuration errors are not sticky: the next launch runs.
  kc::launch<iota_kernel>(4, 1024, 48 * 1024, test_stream(), 4096, y.get());
  const std::vector<float> got = y.download();
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(got[i], static_cast<float>(i)) << i;
}

TEST(CudaEmulator, DeviceAnswersLikeAnH100) {
  cudaDeviceProp p;
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_EQ(p.multiProcessorCount, 132);  // the GEMM picks its tiles from this
  EXPECT_EQ(p.sharedMemPerBlock, size_t{48} << 10);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  EXPECT_EQ(p.major * 10 + p.minor, 90);
  EXPECT_NE(kc::device_description(0).find("emulated"), std::string::npos);
}

// ------------------------------------------------------------------ barriers
TEST(CudaEmulator, SyncthreadsIsABarrierInBothOrders) {
  for (auto order : {cvae::emu::ThreadOrder::Forward, cvae::emu::ThreadOrder::Reverse}) {
    ScopedOrder in(order);
    for (unsigned threads : {1u, 33u, 256u, 1024u}) {
      DeviceBuffer<float> y(3 * threads);
      y.poison();
      kc::launch<neighbour_kernel>(3, threads, 0, test_stream(), y.get());
      const std::vector<float> got = y.download();
      for (unsigned i = 0; i < 3 * threads; ++i)
        ASSERT_EQ(got[i], static_cast<float>((i % threads + 1) % threads)) << "threads " << threads << " i " << i;
    }
  }
}

TEST(CudaEmulator, ReverseOrderExposesAMissingBarrier) {
  std::vector<float> got[2];
  for (int reverse = 0; reverse < 2; ++reverse) {
    ScopedOrder in(reverse ? cvae::emu::ThreadOrder::Reverse : cvae::emu::ThreadOrder::Forward);
    DeviceBuffer<float> y(64);
    kc::launch<left_neighbour_no_barrier_kernel>(1, 64, 64 * sizeof(float), test_stream(), y.get());
    got[reverse] = y.download();
  }
  for (int t = 1; t < 64; ++t) EXPECT_EQ(got[0][t], static_cast<float>(t - 1)) << "forward order, thread " << t;
  int poisoned = 0;
  for (int t = 1; t < 64; ++t) poisoned += std::isnan(got[1][t]);
  EXPECT_EQ(poisoned, 63) << "in reverse every reader runs before its writer";
}

TEST(CudaEmulator, DivergentBarrierIsAFaultNamingTheKernel) {
  DeviceBuffer<float> y(64);
  ClearStickyError clear;  // destroyed first: y's cudaFree would fail while the error sticks
  ScopedOrder forward(cvae::emu::ThreadOrder::Forward);  // which thread is named depends on the order
  const std::string e = error_of([&] { kc::launch<odd_threads_sync_kernel>(1, 64, 0, test_stream(), y.get()); });
  EXPECT_NE(e.find("odd_threads_sync_kernel"), std::string::npos) << e;
  EXPECT_NE(e.find("divergent __syncthreads"), std::string::npos) << e;
  // Sticky, as on a GPU: the next call fails too, until cleared.
  EXPECT_THROW(y.download(), std::runtime_error);
}

TEST(CudaEmulator, ThreadEndingWhileOthersWaitIsAFault) {
  DeviceBuffer<float> y(64);
  ClearStickyError clear;  // destroyed first: y's cudaFree would fail while the error sticks
  ScopedOrder forward(cvae::emu::ThreadOrder::Forward);  // which thread is named depends on the order
  const std::string e = error_of([&] { kc::launch<only_thread0_syncs_kernel>(1, 64, 0, test_stream(), y.get()); });
  EXPECT_NE(e.find("only_thread0_syncs_kernel"), std::string::npos) << e;
  EXPECT_NE(e.find("ended while thread (0,0,0) waits at __syncthreads"), std::string::npos) << e;
}

TEST(CudaEmulator, TwoDifferentBarriersAreAFault) {
  DeviceBuffer<float> y(64);
  ClearStickyError clear;  // destroyed first: y's cudaFree would fail while the error sticks
  ScopedOrder forward(cvae::emu::ThreadOrder::Forward);  // which thread is named depends on the order
  const std::string e = error_of([&] { kc::launch<two_barriers_kernel>(1, 64, 0, test_stream(), y.get()); });
  EXPECT_NE(e.find("divergent __syncthreads"), std::string::npos) << e;
  EXPECT_NE(e.find("test_cuda_emulator.cpp"), std::string::npos) << e;  // the two call sites
}

// A block's fibers outlive it and run the threads of later blocks (exec.cpp): after a
// fault, no thread may go on with the faulted kernel there. One block runs on the
// calling OS thread, so the second launch reuses the first one's fibers.
TEST(CudaEmulator, AFaultedBlockLeavesNoThreadInsideItsKernel) {
  for (auto order : {cvae::emu::ThreadOrder::Forward, cvae::emu::ThreadOrder::Reverse}) {
    ScopedOrder in(order);
    DeviceBuffer<float> y(64), z(64);
    y.poison();
    {
      ClearStickyError clear;
      const std::string e = error_of([&] { kc::launch<faults_after_barrier_kernel>(1, 64, 0, test_stream(), y.get()); });
      EXPECT_NE(e.find("thread 0 faults"), std::string::npos) << e;
    }
    kc::launch<neighbour_kernel>(1, 64, 0, test_stream(), z.get());
    const std::vector<float> got = z.download(), old = y.download();
    for (unsigned t = 0; t < 64; ++t) ASSERT_EQ(got[t], static_cast<float>((t + 1) % 64)) << "thread " << t;
    // Forward, thread 0 faults first: the others never went past the barrier.
    if (order == cvae::emu::ThreadOrder::Forward) {
      for (unsigned t = 0; t < 64; ++t) EXPECT_TRUE(std::isnan(old[t])) << "thread " << t << " went on";
    }
  }
}

// ------------------------------------------------------------------ memory
TEST(CudaEmulator, FreshMemoryIsPoisoned) {
  DeviceBuffer<float> fresh(1000);
  for (float v : fresh.download()) ASSERT_TRUE(std::isnan(v));
  DeviceBuffer<float> y(128);
  kc::launch<read_unwritten_shared_kernel>(1, 128, 128 * sizeof(float), test_stream(), y.get());
  for (float v : y.download()) ASSERT_TRUE(std::isnan(v)) << "dynamic shared memory";
}

TEST(CudaEmulator, CopiesCheckTheDeviceSide) {
  DeviceBuffer<float> d(10);
  std::vector<float> host(20, 1.f);
  EXPECT_EQ(cudaMemcpyAsync(d.get(), host.data(), 20 * sizeof(float), cudaMemcpyHostToDevice, test_stream()),
            cudaErrorInvalidValue);  // 20 floats into a 10-float block
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpyAsync(host.data(), host.data() + 10, 4, cudaMemcpyDeviceToHost, test_stream()),
            cudaErrorInvalidValue);  // the source is host memory
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
}

TEST(CudaEmulator, MemoryLimitGivesOutOfMemory) {
  const size_t used = cvae::emu::device_bytes_in_use();
  const size_t before = cvae::emu::set_memory_limit(used + (1 << 20));
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, 2 << 20), cudaErrorMemoryAllocation);
  EXPECT_EQ(cudaGetLastError(), cudaErrorMemoryAllocation);
  EXPECT_THROW(kc::device_malloc(2 << 20), kc::DeviceOutOfMemory);
  ASSERT_EQ(cudaMalloc(&p, 1 << 19), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  cvae::emu::set_memory_limit(before);
}

// ------------------------------------------------------------------ capture
TEST(CudaEmulator, CaptureRefusesWhatGlobalModeRefuses) {
  cudaStream_t s = test_stream();
  std::vector<float> pageable(16, 1.f);
  DeviceBuffer<float> d(16);
  cudaGraph_t graph = nullptr;
  struct Case {
    const char* name;
    std::function<cudaError_t()> call;
  };
  const Case cases[] = {
      {"cudaMalloc", [] { void* p; return cudaMalloc(&p, 64); }},
      {"cudaFree", [&] { return cudaFree(d.get()); }},
      {"stream sync", [&] { return cudaStreamSynchronize(s); }},
      {"device sync", [] { return cudaDeviceSynchronize(); }},
      {"pageable H2D", [&] { return cudaMemcpyAsync(d.get(), pageable.data(), 64, cudaMemcpyHostToDevice, s); }},
      {"pageable D2H", [&] { return cudaMemcpyAsync(pageable.data(), d.get(), 64, cudaMemcpyDeviceToHost, s); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    EXPECT_EQ(c.call(), cudaErrorStreamCaptureUnsupported);
    EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureUnsupported);
    // The capture is invalidated: it ends with an error and no graph.
    EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    cudaGetLastError();
  }
  // Work on the legacy stream during a capture.
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaMemsetAsync(d.get(), 0, 64, nullptr), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(cudaStreamEndCapture(s, &graph), cudaErrorStreamCaptureInvalidated);
  cudaGetLastError();
  // Through the engine's wrappers: an error that says so.
  kc::graph_capture_begin(s);
  EXPECT_TRUE(kc::stream_capturing(s));
  const std::string e = error_of([&] { kc::memcpy_d2h(pageable.data(), d.get(), 64, s); });
  EXPECT_NE(e.find("operation not permitted when stream is capturing"), std::string::npos) << e;
  EXPECT_THROW(kc::graph_capture_end(s), std::runtime_error);
  EXPECT_FALSE(kc::stream_capturing(s));
}

// A graph replays its kernels, copies and memsets on the data present at replay time.
TEST(CudaEmulator, GraphReplaysLaunchesCopiesAndMemsets) {
  cudaStream_t s = test_stream();
  const int n = 1000;
  DeviceBuffer<float> x(n), y(n), z(n);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(float)), cudaSuccess);
  kc::graph_capture_begin(s);
  kc::memcpy_h2d(x.get(), pinned, n * sizeof(float), s);  // pinned memory may be captured
  kc::launch<affine_kernel>((n + 255) / 256, 256, 0, s, n, x.get(), y.get());
  kc::memset_zero(z.get(), n * sizeof(float), s);
  kc::memcpy_d2d(z.get(), y.get(), (n / 2) * sizeof(float), s);
  void* exec = kc::graph_capture_end(s);
  for (float v : y.download()) ASSERT_TRUE(std::isnan(v)) << "capturing must not run anything";
  for (int rep = 0; rep < 2; ++rep) {
    for (int i = 0; i < n; ++i) pinned[i] = static_cast<float>(i + 100 * rep);
    kc::graph_launch(exec, s);
    const std::vector<float> got = z.download();
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(got[i], i < n / 2 ? 2.f * (i + 100 * rep) + 1.f : 0.f) << "replay " << rep << " i " << i;
  }
  kc::graph_destroy(exec);
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

// ------------------------------------------------------------------ counts
TEST(CudaEmulator, LaunchesAreCountedPerKernel) {
  const auto name = kc::kernel_name<iota_kernel>();
  EXPECT_EQ(name, "iota_kernel");
  EXPECT_TRUE(cvae::emu::registered_kernels().count(name));
  const int64_t before = cvae::emu::launch_counts()[name];
  DeviceBuffer<float> y(10);
  for (int i = 0; i < 3; ++i) kc::launch<iota_kernel>(1, 10, 0, test_stream(), 10, y.get());
  EXPECT_EQ(cvae::emu::launch_counts()[name], before + 3);
}

#else

TEST(CudaEmulator, Skipped) { GTEST_SKIP() << "not an emulated build (CVAE_CUDA=EMULATE)"; }

#endif
