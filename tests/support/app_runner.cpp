// app_runner.cpp: process spawning and test files for the app tests.
#include "support/app_runner.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <vector>

#include <gtest/gtest.h>

namespace cvae::testing {

RunResult run_cvae(const std::string& args) {
  return run_shell(std::string(CVAE_BINARY) + " " + args + " </dev/null");
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

}  // namespace cvae::testing
