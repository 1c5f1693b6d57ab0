// isa_environment.cpp: linked into every test binary that ctest also runs once per CPU
// code path (CVAE_CPU_ISA=generic|avx2|avx512, tests/CMakeLists.txt). A path this CPU
// cannot run skips the whole binary with the reason instead of failing it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "kernels/kernels.h"

namespace {

class CpuIsaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    namespace cpu = cvae::kernels::cpu;
    const char* env = std::getenv("CVAE_CPU_ISA");
    cpu::CpuIsa isa{};
    if (env && cpu::parse_cpu_isa(env, &isa) && !cpu::cpu_isa_supported(isa))
      GTEST_SKIP() << "CVAE_CPU_ISA=" << env << ": this CPU cannot run that code path";
    std::printf("CPU code path: %s\n", cpu::cpu_isa_name(cpu::cpu_isa()));
  }
};

const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new CpuIsaEnvironment);

}  // namespace
