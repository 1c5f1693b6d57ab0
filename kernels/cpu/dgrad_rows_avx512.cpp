// dgrad_rows_avx512.cpp: the stride-2 dgrad by output rows (dgrad_rows.h) for AVX-512
// CPUs (F, VL, BW, DQ), built with those -m flags (CMakeLists.txt).
#if defined(__x86_64__)
namespace cvae::kernels::cpu::avx512 {
constexpr int kVectorBytes = 64;
}  // namespace cvae::kernels::cpu::avx512
#define CVAE_ROWS_NS avx512
#include "kernels/cpu/dgrad_rows_core.h"
#endif  // elsewhere never chosen (conv2d.cpp asks cpu_isa() first)
