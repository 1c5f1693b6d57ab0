// conv_thin_avx512.cpp: the one-channel convolution kernels (conv_thin.h) for AVX-512 CPUs
// (F, VL, BW, DQ), built with those -m flags (CMakeLists.txt).
namespace cvae::kernels::cpu::avx512 {
constexpr int kVectorBytes = 64;
}  // namespace cvae::kernels::cpu::avx512
#define CVAE_THIN_NS avx512
#include "kernels/cpu/conv_thin_core.h"
