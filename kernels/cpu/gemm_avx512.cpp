// gemm_avx512.cpp: the CPU GEMM for AVX-512 CPUs (F, VL, BW, DQ), built with those -m flags
// (CMakeLists.txt). 32 zmm registers: an 8 x 32 tile holds 16 accumulators, 2 B vectors
// and a broadcast.
#include "kernels/cpu/gemm_views.h"

namespace cvae::kernels::cpu::avx512 {
constexpr int kVectorBytes = 64;
constexpr int kRowsWide = 8, kRowsNarrow = 16;  // MR of the 2-vector / 1-vector tile
constexpr int kKcBytes = 1024, kMcRows = 128, kNcBytes = 2048;
}  // namespace cvae::kernels::cpu::avx512
#if defined(__x86_64__)
#define CVAE_GEMM_NS avx512
#include "kernels/cpu/gemm_core.h"
#endif

namespace cvae::kernels::cpu {
#if defined(__x86_64__)
void gemm_run_avx512(const GemmProblem<float>& p) { avx512::run(p); }
void gemm_run_avx512(const GemmProblem<double>& p) { avx512::run(p); }
#else  // never chosen off x86 (isa.cpp); defined so that the dispatcher links
void gemm_run_avx512(const GemmProblem<float>& p) { gemm_run_generic(p); }
void gemm_run_avx512(const GemmProblem<double>& p) { gemm_run_generic(p); }
#endif
}  // namespace cvae::kernels::cpu
