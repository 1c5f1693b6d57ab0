// app_runner.h: running the built `cvae` program from tests, and the small
// files those tests need (a synthetic IDX dataset, PNG header reading).
#pragma once

#include <cstdint>
#include <string>

namespace cvae::testing {

struct RunResult {
  int code = -1;       // exit status
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout and stderr together.
RunResult run_shell(const std::string& command);
// Runs `cvae ARGS` (ARGS is shell-quoted by the caller), capturing output.
RunResult run_cvae(const std::string& args);

// A fresh empty directory under the test temp dir, private to this process.
std::string fresh_dir(const std::string& name);

// Writes an MNIST-format dataset (raw IDX, not gzip'd) of synthetic 28x28
// images (bars of random position and orientation) into dir.
void write_synthetic_dataset(const std::string& dir, int train, int test, uint32_t seed);

// Width and height from a PNG's IHDR; false when the file is not a PNG.
bool png_size(const std::string& path, int* width, int* height);

std::string read_text(const std::string& path);
void write_text(const std::string& path, const std::string& bytes);

}  // namespace cvae::testing
