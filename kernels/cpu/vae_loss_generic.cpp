// vae_loss_generic.cpp: the fused VAE loss's per-element passes (vae_loss_isa.h) for
// any x86-64 (or other) CPU, built with the baseline flags and -ffp-contract=off (CMakeLists.txt).
namespace cvae::kernels::cpu::generic {
constexpr int kVectorBytes = 16;
}  // namespace cvae::kernels::cpu::generic
#define CVAE_LOSS_NS generic
#include "kernels/cpu/vae_loss_core.h"
