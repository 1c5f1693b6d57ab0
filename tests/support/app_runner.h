// app_runner.h: running the built `cvae` program from tests (to the end, or
// in the background with its output read as it comes, for signals), and the
// small files those tests need (a synthetic IDX dataset, PNG headers, metrics
// lines, a tensor element changed in a checkpoint).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace cvae::testing {

struct RunResult {
  int code = -1;       // exit status
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout and stderr together.
RunResult run_shell(const std::string& command);
// Runs `cvae ARGS` (ARGS is shell-quoted by the caller), capturing output.
RunResult run_cvae(const std::string& args);
// The app tests' small training runs: "train --data DATA --out OUT --epochs N
// --batch-size 16 --lr 1e-3 --seed 3 EXTRA".
std::string train_args(const std::string& data, const std::string& out, int epochs, const std::string& extra = "");

// `cvae ARGS` started in the background (stdin /dev/null, stdout and stderr
// into one pipe). The signal tests wait for a line the program prints (a
// readiness line), never for a length of time; the timeouts only keep a hung
// program from hanging the suite.
class BackgroundCvae {
 public:
  // env: "NAME=value" set for the program only ("" for none).
  explicit BackgroundCvae(const std::string& args, const std::string& env = "");
  ~BackgroundCvae();  // kills the program if it still runs
  BackgroundCvae(const BackgroundCvae&) = delete;
  BackgroundCvae& operator=(const BackgroundCvae&) = delete;
  // Reads output until it holds `text` (true), or the program ends or
  // timeout_s passes (false).
  bool wait_for(const std::string& text, double timeout_s = 600);
  void signal(int sig);
  // Reads the rest of the output and waits for the exit (code as run_shell).
  RunResult finish(double timeout_s = 600);
  int pid() const { return pid_; }
  const std::string& output() const { return output_; }

 private:
  bool read_some(double timeout_s);  // false at EOF or timeout
  int pid_ = -1, fd_ = -1;
  std::string output_;
};

// A fresh directory (root_) holding a small dataset (data_: 48 training
// images, 3 steps of 16 an epoch; 20 test images), removed after each test.
class SmallRunTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  std::string root_, data_;
};

// Whether `output` holds each of `words` (the failure names the first missing).
::testing::AssertionResult has_all(const std::string& output, std::initializer_list<std::string> words);
// Exit code 2 and each of `words` in the output.
::testing::AssertionResult refused_with(const RunResult& r, std::initializer_list<std::string> words);

// A fresh empty directory under the test temp dir, private to this process.
std::string fresh_dir(const std::string& name);

// Writes an MNIST-format dataset (raw IDX, not gzip'd) of synthetic 28x28
// images (bars of random position and orientation) into dir.
void write_synthetic_dataset(const std::string& dir, int train, int test, uint32_t seed);

// Width and height from a PNG's IHDR; false when the file is not a PNG.
bool png_size(const std::string& path, int* width, int* height);

std::string read_text(const std::string& path);
void write_text(const std::string& path, const std::string& bytes);

// The JSON objects of a metrics.jsonl, one per line.
std::vector<nlohmann::json> metrics_lines(const std::string& path);
// The JSON of __metadata__ entry `key` of a safetensors file (e.g. "config").
nlohmann::json checkpoint_metadata(const std::string& path, const std::string& key);
// Overwrites element `index` of float32 tensor `name` in a safetensors file.
void poke_f32(const std::string& path, const std::string& name, int64_t index, float value);
// Whether two safetensors files hold the same tensors bit for bit.
::testing::AssertionResult same_tensors(const std::string& a, const std::string& b);
// Lines of text (without their newlines).
std::vector<std::string> lines_of(const std::string& text);

}  // namespace cvae::testing
