// vae_loss_avx2.cpp: the fused VAE loss's per-element passes (vae_loss_isa.h) for
// AVX2+FMA CPUs, built with -mavx2 -mfma and -ffp-contract=off (CMakeLists.txt).
namespace cvae::kernels::cpu::avx2 {
constexpr int kVectorBytes = 32;
}  // namespace cvae::kernels::cpu::avx2
#define CVAE_LOSS_NS avx2
#include "kernels/cpu/vae_loss_core.h"
