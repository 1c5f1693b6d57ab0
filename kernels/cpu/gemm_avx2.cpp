// gemm_avx2.cpp: the CPU GEMM for AVX2+FMA CPUs, built with -mavx2 -mfma (CMakeLists.txt).
// 16 ymm registers: a 6 x 16 tile holds 12 accumulators, 2 B vectors and a broadcast.
#include "kernels/cpu/gemm_views.h"

namespace cvae::kernels::cpu::avx2 {
constexpr int kVectorBytes = 32;
constexpr int kRowsWide = 6, kRowsNarrow = 12;  // MR of the 2-vector / 1-vector tile
constexpr int kKcBytes = 1024, kMcRows = 144, kNcBytes = 2048;
}  // namespace cvae::kernels::cpu::avx2
#if defined(__x86_64__)
#define CVAE_GEMM_NS avx2
#include "kernels/cpu/gemm_core.h"
#endif

namespace cvae::kernels::cpu {
#if defined(__x86_64__)
void gemm_run_avx2(const GemmProblem<float>& p) { avx2::run(p); }
void gemm_run_avx2(const GemmProblem<double>& p) { avx2::run(p); }
#else  // never chosen off x86 (isa.cpp); defined so that the dispatcher links
void gemm_run_avx2(const GemmProblem<float>& p) { gemm_run_generic(p); }
void gemm_run_avx2(const GemmProblem<double>& p) { gemm_run_generic(p); }
#endif
}  // namespace cvae::kernels::cpu
