// test_python_export.cpp: a `cvae export` file loads into the PyTorch module of
// apps/python/cvae_torch.py and gives the same test ELBO as `cvae eval`
// (analytic KL, 20 samples per image on 1000 images: the two differ only by
// sampling noise, about 0.03 nat here once the model has trained 4 epochs).
// Skips where torch is not installed (CI).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include "support/app_runner.h"

namespace cvae {
namespace {

using testing::run_cvae;

double json_field(const std::string& output, const char* key) {
  return nlohmann::json::parse(output.substr(output.find('{'))).at(key).get<double>();
}

TEST(PythonExport, TorchModuleGivesTheSameElbo) {
  if (testing::run_shell("python3 -c 'import torch, safetensors'").code != 0)
    GTEST_SKIP() << "torch or safetensors is not installed (pip install torch safetensors)";
  std::string dir = testing::fresh_dir("python");
  std::string data = dir + "/data";
  testing::write_synthetic_dataset(data, 1024, 1000, 5);
  ASSERT_EQ(run_cvae("train --data " + data + " --out " + dir + "/run --epochs 4 --batch-size 16 "
                     "--lr 1e-3 --seed 1").code, 0);
  std::string exported = dir + "/export.safetensors";
  ASSERT_EQ(run_cvae("export --checkpoint " + dir + "/run --out " + exported).code, 0);
  testing::RunResult ours = run_cvae("eval --checkpoint " + dir + "/run --k 0 --k-mc 20 --json");
  ASSERT_EQ(ours.code, 0) << ours.output;
  testing::RunResult torch = testing::run_shell("python3 " CVAE_SOURCE_DIR "/apps/python/eval_export.py " + exported +
                                   " --data " + data + " --k 20 --threads 1 --json");
  ASSERT_EQ(torch.code, 0) << torch.output;
  double a = json_field(ours.output, "elbo_analytic"), b = json_field(torch.output, "elbo_analytic");
  EXPECT_NEAR(a, b, 0.1) << "cvae eval " << a << " vs PyTorch " << b;
  EXPECT_NEAR(json_field(ours.output, "elbo_mc"), json_field(torch.output, "elbo_mc"), 0.3);
  if (!HasFailure()) std::filesystem::remove_all(dir);  // kept for a look when it fails
}

}  // namespace
}  // namespace cvae
