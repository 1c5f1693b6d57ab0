// cuda_kernel_coverage.cpp: run by ctest after the GPU suites on the emulator (a fixture
// cleanup): every __global__ kernel of kernels/cuda/*.cu ran at least once. Each test
// process appended to $CVAE_EMU_LAUNCH_LOG the kernel instances it has launch sites for
// and the launches it made; here every registered instance must have launched, and every
// kernel defined in the sources must be among them (a kernel with no launch site at all).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "kernels/cuda/kernel_name.h"

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The names at `__global__ void [__launch_bounds__(...)] name(` in every .cu file.
// (A hand scan: std::regex trips GCC 12's -Wmaybe-uninitialized under ASan.)
std::set<std::string> kernels_in_sources(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".cu") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    const std::string s = text.str();
    for (size_t at = s.find("__global__"); at != std::string::npos; at = s.find("__global__", at + 1)) {
      std::istringstream rest(s.substr(at + 10, 300));
      std::string word;
      rest >> word;  // "void"
      rest >> word;
      if (word.rfind("__launch_bounds__", 0) == 0) rest >> word;  // "__launch_bounds__(G::THREADS)"
      const size_t paren = word.find('(');
      if (word != "void" && paren != 0) names.insert(word.substr(0, paren));
    }
  }
  return names;
}

TEST(CudaKernelCoverage, EveryKernelRanInTheGpuSuites) {
  const std::string log_path = env("CVAE_EMU_LAUNCH_LOG"), src = env("CVAE_SOURCE_DIR");
  ASSERT_FALSE(log_path.empty() || src.empty()) << "run by ctest (it sets CVAE_EMU_LAUNCH_LOG, CVAE_SOURCE_DIR)";
  std::ifstream log(log_path);
  ASSERT_TRUE(log) << "no launch log at " << log_path << ": did the GPU suites run?";
  std::set<std::string> registered;
  std::map<std::string, int64_t> launched;
  for (std::string line; std::getline(log, line);) {
    if (line.rfind("registered ", 0) == 0) {
      registered.insert(line.substr(11));
    } else if (line.rfind("launched ", 0) == 0) {
      const size_t sp = line.find(' ', 9);
      launched[line.substr(sp + 1)] += std::stoll(line.substr(9, sp - 9));
    }
  }
  int64_t total = 0;
  for (const auto& [name, n] : launched) total += n;
  std::printf("  %zu kernel instances with launch sites, %zu launched, %lld launches in all\n",
              registered.size(), launched.size(), static_cast<long long>(total));
  for (const std::string& k : registered) EXPECT_GT(launched[k], 0) << "never launched: " << k;

  std::set<std::string> launched_bases;
  for (const auto& [name, n] : launched)
    if (n > 0) launched_bases.insert(cvae::kernels::cuda::kernel_base_name(name));
  const std::set<std::string> defined = kernels_in_sources(src + "/kernels/cuda");
  EXPECT_GE(defined.size(), 20u) << "the source scan found too few kernels: is the pattern stale?";
  for (const std::string& k : defined) EXPECT_TRUE(launched_bases.count(k)) << "never launched: " << k;
}

}  // namespace
