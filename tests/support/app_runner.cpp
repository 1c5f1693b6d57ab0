// app_runner.cpp: process spawning and test files for the app tests.
#include "support/app_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstring>
#include <sstream>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <vector>

#include "engine/safetensors.h"

namespace cvae::testing {

RunResult run_cvae(const std::string& args) {
  return run_shell(std::string(CVAE_BINARY) + " " + args + " </dev/null");
}

std::string train_args(const std::string& data, const std::string& out, int epochs, const std::string& extra) {
  return "train --data " + data + " --out " + out + " --epochs " + std::to_string(epochs) +
         " --batch-size 16 --lr 1e-3 --seed 3 " + extra;
}

RunResult run_shell(const std::string& command) {
  std::string cmd = command + " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  RunResult r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

void SmallRunTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  root_ = fresh_dir(std::string(info->test_suite_name()) + "_" + info->name());
  data_ = root_ + "/data";
  write_synthetic_dataset(data_, 48, 20, 7);
}

void SmallRunTest::TearDown() { std::filesystem::remove_all(root_); }

::testing::AssertionResult has_all(const std::string& output, std::initializer_list<std::string> words) {
  for (const std::string& w : words)
    if (output.find(w) == std::string::npos) return ::testing::AssertionFailure() << "no '" << w << "' in: " << output;
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult refused_with(const RunResult& r, std::initializer_list<std::string> words) {
  if (r.code != 2) return ::testing::AssertionFailure() << "exit code " << r.code << ", not 2: " << r.output;
  return has_all(r.output, words);
}

std::string fresh_dir(const std::string& name) {
  // ctest runs each TEST in its own process, several at once: one directory per process.
  std::filesystem::path p = std::filesystem::path(::testing::TempDir()) /
                            ("cvae_app_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

namespace {

void put_u32(std::ofstream& out, uint32_t v) {
  unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                        static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  out.write(reinterpret_cast<const char*>(b), 4);
}

void write_split(const std::string& dir, const std::string& prefix, int count, std::mt19937& gen) {
  std::ofstream img(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  std::ofstream lab(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  put_u32(img, 0x803);
  put_u32(img, uint32_t(count));
  put_u32(img, 28);
  put_u32(img, 28);
  put_u32(lab, 0x801);
  put_u32(lab, uint32_t(count));
  std::uniform_int_distribution<int> pos(2, 21), width(2, 5), coin(0, 1);
  std::vector<char> pixels(784);
  for (int i = 0; i < count; ++i) {
    bool vertical = coin(gen);
    int first = pos(gen), w = width(gen);
    for (int r = 0; r < 28; ++r)
      for (int c = 0; c < 28; ++c) {
        int k = vertical ? c : r;
        pixels[size_t(r * 28 + c)] = static_cast<char>(k >= first && k < first + w ? 230 : 10);
      }
    img.write(pixels.data(), 784);
    char label = static_cast<char>(vertical ? 1 : 0);
    lab.write(&label, 1);
  }
}

}  // namespace

void write_synthetic_dataset(const std::string& dir, int train, int test, uint32_t seed) {
  std::filesystem::create_directories(dir);
  std::mt19937 gen(seed);
  write_split(dir, "train", train, gen);
  write_split(dir, "t10k", test, gen);
}

bool png_size(const std::string& path, int* width, int* height) {
  std::string s = read_text(path);
  static const char sig[] = "\x89PNG\r\n\x1a\n";
  if (s.size() < 24 || s.compare(0, 8, std::string(sig, 8)) != 0 || s.compare(12, 4, "IHDR") != 0)
    return false;
  auto be32 = [&](size_t o) {
    return int((uint32_t(uint8_t(s[o])) << 24) | (uint32_t(uint8_t(s[o + 1])) << 16) |
               (uint32_t(uint8_t(s[o + 2])) << 8) | uint32_t(uint8_t(s[o + 3])));
  };
  *width = be32(16);
  *height = be32(20);
  return true;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

BackgroundCvae::BackgroundCvae(const std::string& args, const std::string& env) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const std::string cmd = "exec " + std::string(CVAE_BINARY) + " " + args + " </dev/null";
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    if (!env.empty()) ::putenv(const_cast<char*>(env.c_str()));
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  fd_ = fds[0];
}

BackgroundCvae::~BackgroundCvae() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (fd_ >= 0) ::close(fd_);
}

bool BackgroundCvae::read_some(double timeout_s) {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0) return false;
  char buf[4096];
  ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n <= 0) {
    ::close(fd_);
    fd_ = -1;
    return false;
  }
  output_.append(buf, static_cast<size_t>(n));
  return true;
}

bool BackgroundCvae::wait_for(const std::string& text, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (output_.find(text) == std::string::npos) {
    double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0 || !read_some(left)) return output_.find(text) != std::string::npos;
  }
  return true;
}

void BackgroundCvae::signal(int sig) { ::kill(pid_, sig); }

RunResult BackgroundCvae::finish(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (fd_ >= 0) {
    double left = std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      ::kill(pid_, SIGKILL);  // hung: fail the test rather than the suite
      break;
    }
    read_some(left);
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  RunResult r;
  r.output = output_;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::vector<nlohmann::json> metrics_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (const std::string& line : lines_of(read_text(path))) out.push_back(nlohmann::json::parse(line));
  return out;
}

nlohmann::json checkpoint_metadata(const std::string& path, const std::string& key) {
  return nlohmann::json::parse(load_safetensors(path).metadata.at(key));
}

void poke_f32(const std::string& path, const std::string& name, int64_t index, float value) {
  std::string bytes = read_text(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  auto header = nlohmann::json::parse(bytes.substr(8, n));
  const auto& e = header.at(name);
  if (e.at("dtype") != "F32") throw std::runtime_error(name + " is not F32");
  size_t at = 8 + n + e.at("data_offsets")[0].get<size_t>() + static_cast<size_t>(index) * 4;
  std::memcpy(&bytes[at], &value, 4);
  write_text(path, bytes);
}

::testing::AssertionResult same_tensors(const std::string& a, const std::string& b) {
  SafeTensors x = load_safetensors(a), y = load_safetensors(b);
  if (x.tensors.size() != y.tensors.size())
    return ::testing::AssertionFailure() << x.tensors.size() << " vs " << y.tensors.size() << " tensors";
  for (const auto& [name, t] : x.tensors) {
    const Tensor& u = y.at(name);
    if (t.shape() != u.shape() || t.nbytes() != u.nbytes() || std::memcmp(t.raw(), u.raw(), t.nbytes()) != 0)
      return ::testing::AssertionFailure() << name << " differs between " << a << " and " << b;
  }
  return ::testing::AssertionSuccess();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace cvae::testing
