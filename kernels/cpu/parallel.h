// parallel.h (kernels/cpu internal): when an elementwise kernel's loop opens a parallel
// region. Plain code, no vectors: any translation unit may include it.
#pragma once

#include <omp.h>

#include <cstdint>

namespace cvae::kernels::cpu {

// Enough work (n elements, at least min), and not already inside a region: a half of the
// training step runs its kernels on its own thread (engine/autograd.h: backward_in_chunks),
// and a nested team there would only oversubscribe the cores.
inline bool parallel_worth(int64_t n, int64_t min) { return n >= min && !omp_in_parallel(); }

}  // namespace cvae::kernels::cpu
