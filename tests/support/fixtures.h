// fixtures.h: the PyTorch golden fixtures (tests/fixtures/*.safetensors, made
// by tests/golden/make_fixtures.py) as engine tensors. Inputs are stored as
// float32, references as float64 (see the script's docstring).
//
//   cvae::testing::Fixture fx;
//   ASSERT_TRUE(cvae::testing::load_fixture("conv2d", &fx));
//   for (int k = 0; k < fx.num_cases(); ++k) {
//     Tensor x = fx.f32(fx.case_key(k, "x"));          // "case<k>.x"
//     int stride = fx.case_info(k)["stride"];
//   }
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/safetensors.h"

namespace cvae::testing {

// CVAE_FIXTURE_DIR/<name>.safetensors
std::string fixture_path(const std::string& name);

class Fixture {
 public:
  Fixture() = default;
  // Loads CVAE_FIXTURE_DIR/<name>.safetensors. Throws std::runtime_error whose
  // message names the file, the fault and `python3 tests/golden/make_fixtures.py`.
  static Fixture load(const std::string& name);

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }
  bool has(const std::string& tensor) const;
  // A fresh CPU copy converted to float32 / float64 (not tracked by autograd,
  // so a test may set_requires_grad on it). Throws naming the file when absent.
  Tensor f32(const std::string& tensor) const;
  Tensor f64(const std::string& tensor) const;
  // The stored values, converted to double.
  std::vector<double> values(const std::string& tensor) const;
  const NamedTensors& tensors() const { return st_.tensors; }

  const std::map<std::string, std::string>& metadata() const { return st_.metadata; }
  std::string meta(const std::string& key) const;  // throws naming the file when absent
  // "num_cases" from the metadata (0 when the file has no cases).
  int num_cases() const;
  // "case<k>." + field
  static std::string case_key(int k, const std::string& field);
  // The JSON description of case k (metadata "case<k>"), parsed.
  nlohmann::json case_info(int k) const;

 private:
  const Tensor& at(const std::string& tensor) const;
  std::string name_, path_;
  SafeTensors st_;
};

// GTEST-friendly loading: ASSERT_TRUE(load_fixture("conv2d", &fx)); on failure
// the message says which file and how to regenerate it.
::testing::AssertionResult load_fixture(const std::string& name, Fixture* out);

}  // namespace cvae::testing
