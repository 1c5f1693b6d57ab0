// gemm_generic.cpp: the CPU GEMM for any CPU (SSE2 on x86-64), built with the baseline
// flags. 16 xmm registers and no FMA: a 4 x 8 tile, 8 accumulators, room for the products.
#include "kernels/cpu/gemm_views.h"

namespace cvae::kernels::cpu::generic {
constexpr int kVectorBytes = 16;
constexpr int kRowsWide = 4, kRowsNarrow = 8;  // MR of the 2-vector / 1-vector tile
constexpr int kKcBytes = 1024, kMcRows = 96, kNcBytes = 2048;
}  // namespace cvae::kernels::cpu::generic
#define CVAE_GEMM_NS generic
#include "kernels/cpu/gemm_core.h"

namespace cvae::kernels::cpu {
void gemm_run_generic(const GemmProblem<float>& p) { generic::run(p); }
void gemm_run_generic(const GemmProblem<double>& p) { generic::run(p); }
}  // namespace cvae::kernels::cpu
