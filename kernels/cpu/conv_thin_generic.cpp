// conv_thin_generic.cpp: the one-channel convolution kernels (conv_thin.h) for any CPU
// (SSE2 on x86-64), built with the baseline flags.
namespace cvae::kernels::cpu::generic {
constexpr int kVectorBytes = 16;
}  // namespace cvae::kernels::cpu::generic
#define CVAE_THIN_NS generic
#include "kernels/cpu/conv_thin_core.h"
