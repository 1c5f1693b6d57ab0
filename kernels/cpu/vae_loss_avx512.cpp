// vae_loss_avx512.cpp: the fused VAE loss's per-element passes (vae_loss_isa.h) for
// AVX-512 CPUs (F, VL, BW, DQ), built with those -m flags and -ffp-contract=off (CMakeLists.txt).
namespace cvae::kernels::cpu::avx512 {
constexpr int kVectorBytes = 64;
}  // namespace cvae::kernels::cpu::avx512
#define CVAE_LOSS_NS avx512
#include "kernels/cpu/vae_loss_core.h"
