// fixtures.cpp: loading the golden fixtures over cvae::load_safetensors.
#include "support/fixtures.h"

#include <sys/stat.h>

#include <stdexcept>

#ifndef CVAE_FIXTURE_DIR
#error "CVAE_FIXTURE_DIR must be defined (tests/CMakeLists.txt does it)"
#endif

namespace cvae::testing {
namespace {

const char* kRegenerate = "python3 tests/golden/make_fixtures.py";

std::runtime_error fixture_error(const std::string& path, const std::string& what) {
  return std::runtime_error("golden fixture " + path + ": " + what +
                            " (regenerate the fixtures with `" + kRegenerate +
                            "` from the repository root)");
}

}  // namespace

std::string fixture_path(const std::string& name) {
  return std::string(CVAE_FIXTURE_DIR) + "/" + name + ".safetensors";
}

Fixture Fixture::load(const std::string& name) {
  Fixture fx;
  fx.name_ = name;
  fx.path_ = fixture_path(name);
  struct stat sb;
  if (::stat(fx.path_.c_str(), &sb) != 0) throw fixture_error(fx.path_, "missing");
  try {
    fx.st_ = load_safetensors(fx.path_);
  } catch (const std::exception& e) {
    throw fixture_error(fx.path_, std::string("unreadable: ") + e.what());
  }
  auto it = fx.st_.metadata.find("format_version");
  if (it == fx.st_.metadata.end() || it->second != "1")
    throw fixture_error(fx.path_, "format_version is not \"1\"");
  return fx;
}

bool Fixture::has(const std::string& tensor) const {
  for (const auto& [n, t] : st_.tensors)
    if (n == tensor) return true;
  return false;
}

const Tensor& Fixture::at(const std::string& tensor) const {
  for (const auto& [n, t] : st_.tensors)
    if (n == tensor) return t;
  throw fixture_error(path_, "no tensor named '" + tensor + "'");
}

Tensor Fixture::f32(const std::string& tensor) const { return at(tensor).to(DType::F32); }
Tensor Fixture::f64(const std::string& tensor) const { return at(tensor).to(DType::F64); }

std::vector<double> Fixture::values(const std::string& tensor) const {
  return at(tensor).to_double_vector();
}

std::string Fixture::meta(const std::string& key) const {
  auto it = st_.metadata.find(key);
  if (it == st_.metadata.end()) throw fixture_error(path_, "no metadata key '" + key + "'");
  return it->second;
}

int Fixture::num_cases() const {
  auto it = st_.metadata.find("num_cases");
  return it == st_.metadata.end() ? 0 : std::stoi(it->second);
}

std::string Fixture::case_key(int k, const std::string& field) {
  return "case" + std::to_string(k) + "." + field;
}

nlohmann::json Fixture::case_info(int k) const {
  std::string key = "case" + std::to_string(k);
  nlohmann::json j = nlohmann::json::parse(meta(key), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw fixture_error(path_, "metadata '" + key + "' is not JSON");
  return j;
}

::testing::AssertionResult load_fixture(const std::string& name, Fixture* out) {
  try {
    *out = Fixture::load(name);
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << e.what();
  }
  return ::testing::AssertionSuccess();
}

}  // namespace cvae::testing
