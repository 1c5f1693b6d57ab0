// dgrad_rows_avx2.cpp: the stride-2 dgrad by output rows (dgrad_rows.h) for AVX2+FMA
// CPUs, built with -mavx2 -mfma (CMakeLists.txt).
#if defined(__x86_64__)
namespace cvae::kernels::cpu::avx2 {
constexpr int kVectorBytes = 32;
}  // namespace cvae::kernels::cpu::avx2
#define CVAE_ROWS_NS avx2
#include "kernels/cpu/dgrad_rows_core.h"
#endif  // elsewhere never chosen (conv2d.cpp asks cpu_isa() first)
