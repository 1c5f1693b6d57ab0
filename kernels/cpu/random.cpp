// random.cpp: CPU normal_fill / uniform_fill from Philox4x32-10, bit-identical
// to the CUDA twins (kernels/cuda/random.cu). The mapping (seed, offset, i) ->
// value is defined in kernels/philox.h; this file only loops over blocks.
// Compiled with -ffp-contract=off (see CMakeLists.txt and kernels/philox.h).
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/parallel.h"
#include "kernels/kernels.h"
#include "kernels/philox.h"

namespace cvae::kernels::cpu {
namespace {

// Fills below this many elements stay on one thread (thread start-up costs more). A
// normal costs ~40 ns (Box-Muller with philox.h's own log and sincos), so the 5,000 of a
// batch-100 step's reparameterization (0.2 ms, 1.3% of the step, the other thread idle)
// are worth splitting; a uniform is a few ns.
constexpr int64_t kNormalParallelMin = int64_t{1} << 11;
constexpr int64_t kParallelMin = int64_t{1} << 15;

}  // namespace

// y[i] = Box-Muller normal, element i from Philox block offset + i/4, lane i%4
template <typename T>
void normal_fill(int64_t n, uint64_t seed, uint64_t offset, T* y) {
  if (n <= 0) return;
  const int64_t nblocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (parallel_worth(n, kNormalParallelMin))
  for (int64_t j = 0; j < nblocks; ++j) {
    double v[4];
    philox::philox_normal4(seed, offset + static_cast<uint64_t>(j), v);
    const int64_t base = 4 * j;
    const int64_t cnt = std::min<int64_t>(4, n - base);
    for (int64_t l = 0; l < cnt; ++l) y[base + l] = static_cast<T>(v[l]);
  }
}

// y[i] = lo + (hi - lo) * u, u = (r + 0.5) * 2^-32 of block offset + i/4, lane i%4
template <typename T>
void uniform_fill(int64_t n, uint64_t seed, uint64_t offset, T lo, T hi, T* y) {
  if (n <= 0) return;
  const int64_t nblocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (parallel_worth(n, kParallelMin))
  for (int64_t j = 0; j < nblocks; ++j) {
    T v[4];
    philox::philox_uniform4<T>(seed, offset + static_cast<uint64_t>(j), lo, hi, v);
    const int64_t base = 4 * j;
    const int64_t cnt = std::min<int64_t>(4, n - base);
    for (int64_t l = 0; l < cnt; ++l) y[base + l] = v[l];
  }
}

template void normal_fill<float>(int64_t, uint64_t, uint64_t, float*);
template void normal_fill<double>(int64_t, uint64_t, uint64_t, double*);
template void uniform_fill<float>(int64_t, uint64_t, uint64_t, float, float, float*);
template void uniform_fill<double>(int64_t, uint64_t, uint64_t, double, double, double*);

}  // namespace cvae::kernels::cpu
