// conv_thin_avx2.cpp: the one-channel convolution kernels (conv_thin.h) for AVX2+FMA CPUs,
// built with -mavx2 -mfma (CMakeLists.txt).
namespace cvae::kernels::cpu::avx2 {
constexpr int kVectorBytes = 32;
}  // namespace cvae::kernels::cpu::avx2
#define CVAE_THIN_NS avx2
#include "kernels/cpu/conv_thin_core.h"
