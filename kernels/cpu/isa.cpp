// isa.cpp: which CPU code path the kernels run (runtime dispatch). Detected once from
// the CPU's features (the compiler runtime also checks that the OS saves the wider
// registers); the environment variable CVAE_CPU_ISA=generic|avx2|avx512 forces one, so
// that every path the machine can run gets tested. Nothing here depends on the flags
// the program was built with.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/kernels.h"

namespace cvae::kernels::cpu {
namespace {

bool supported(CpuIsa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (isa) {
    case CpuIsa::Generic: return true;
    case CpuIsa::Avx2: return avx2;
    case CpuIsa::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
  }
  return false;
#else
  return isa == CpuIsa::Generic;
#endif
}

CpuIsa best_supported() {
  if (supported(CpuIsa::Avx512)) return CpuIsa::Avx512;
  if (supported(CpuIsa::Avx2)) return CpuIsa::Avx2;
  return CpuIsa::Generic;
}

CpuIsa from_environment() {
  const char* env = std::getenv("CVAE_CPU_ISA");
  if (!env || !*env || std::string(env) == "auto") return best_supported();
  CpuIsa isa{};
  if (!parse_cpu_isa(env, &isa))
    throw std::runtime_error(std::string("CVAE_CPU_ISA=") + env +
                             ": unknown code path (auto, generic, avx2, avx512)");
  if (!supported(isa))
    throw std::runtime_error(std::string("CVAE_CPU_ISA=") + env + ": this CPU cannot run it (" +
                             cpu_isa_name(best_supported()) + " is the best it can)");
  return isa;
}

CpuIsa& current() {
  static CpuIsa isa = from_environment();
  return isa;
}

}  // namespace

bool parse_cpu_isa(const std::string& name, CpuIsa* isa) {
  if (name == "generic") *isa = CpuIsa::Generic;
  else if (name == "avx2") *isa = CpuIsa::Avx2;
  else if (name == "avx512") *isa = CpuIsa::Avx512;
  else return false;
  return true;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx2: return "avx2";
    case CpuIsa::Generic: return "generic";
  }
  return "?";
}

bool cpu_isa_supported(CpuIsa isa) { return supported(isa); }
CpuIsa cpu_isa() { return current(); }

void set_cpu_isa(CpuIsa isa) {
  if (!supported(isa))
    throw std::invalid_argument(std::string("set_cpu_isa: this CPU cannot run ") +
                                cpu_isa_name(isa));
  current() = isa;
}

}  // namespace cvae::kernels::cpu
