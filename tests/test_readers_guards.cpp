// test_readers_guards.cpp: the engine's hooks for the careful cvae program:
// the NaN/Inf scan (first tensor, first element, F32 and F64, CPU), the
// readers over memory (same answers as the file readers, the fuzz targets'
// entry points), the dataset checksum (every byte counts) and the
// allocator's peak (what the memory estimate measures).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>

#include "engine/allocator.h"
#include "engine/data.h"
#include "engine/finite.h"
#include "engine/safetensors.h"
#include "support/app_runner.h"

namespace cvae {
namespace {

TEST(Finite, TheFirstNonFiniteElementOfTheFirstTensorIsNamed) {
  Tensor a = Tensor::from_vector(std::vector<float>(3000, 1.0f), {3000});
  Tensor b = Tensor::from_vector(std::vector<double>(10, 2.0), {2, 5});
  EXPECT_EQ(first_nonfinite_index(a), -1);
  EXPECT_FALSE(first_nonfinite({{"a", a}, {"b", b}}).has_value());
  b.data<double>()[7] = -std::numeric_limits<double>::infinity();
  a.data<float>()[2049] = std::numeric_limits<float>::quiet_NaN();  // in the third block of 1024
  a.data<float>()[2999] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(first_nonfinite_index(a), 2049);
  EXPECT_EQ(first_nonfinite_index(b), 7);
  auto bad = first_nonfinite({{"a", a}, {"b", b}});
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->describe(), "a holds nan at element 2049 of [3000]");
  EXPECT_EQ(first_nonfinite({{"b", b}})->describe(), "b holds -inf at element 7 of [2,5]");
  // Huge but finite values are fine; so is the largest float.
  Tensor c = Tensor::from_vector(std::vector<float>{3e38f, -std::numeric_limits<float>::max(), 0.0f}, {3});
  EXPECT_EQ(first_nonfinite_index(c), -1);
}

TEST(Finite, GradientsAreScannedUnderTheirParametersNames) {
  Tensor p = Tensor::zeros({4}).set_requires_grad();
  Tensor q = Tensor::zeros({2}).set_requires_grad();
  NamedTensors params = {{"p", p}, {"q", q}};
  EXPECT_FALSE(first_nonfinite_grad(params).has_value());  // no gradients yet: nothing to scan
  sum(add(p, p)).backward();
  EXPECT_FALSE(first_nonfinite_grad(params).has_value());
  p.grad().data<float>()[3] = std::numeric_limits<float>::infinity();
  auto bad = first_nonfinite_grad(params);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(bad->describe(), "p holds inf at element 3 of [4]");
}

TEST(Readers, FromMemoryTheyAnswerAsFromAFile) {
  std::string dir = testing::fresh_dir("readers");
  testing::write_synthetic_dataset(dir, 5, 3, 1);
  std::string path = dir + "/train-images-idx3-ubyte";
  std::string bytes = testing::read_text(path);
  IdxImages file = read_idx_images(path);
  IdxImages mem = parse_idx_images("mem", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_EQ(mem.count, file.count);
  EXPECT_EQ(mem.pixels, file.pixels);
  std::string cut = bytes.substr(0, bytes.size() - 3);
  try {
    parse_idx_images("mem", reinterpret_cast<const uint8_t*>(cut.data()), cut.size());
    FAIL() << "a truncated IDX parsed";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("mem: truncated"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_idx_labels("mem", nullptr, 0), FormatError);
  std::string st = testing::read_text(std::string(CVAE_FIXTURE_DIR) + "/relu.safetensors");
  SafeTensors a = load_safetensors(std::string(CVAE_FIXTURE_DIR) + "/relu.safetensors");
  SafeTensors b = parse_safetensors("mem", st.data(), st.size());
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) EXPECT_EQ(a.tensors[i].first, b.tensors[i].first);
  EXPECT_THROW(parse_safetensors("mem", st.data(), 7), FormatError);
  std::filesystem::remove_all(dir);
}

// A header may claim any shape: the bytes it needs are worked out (without
// overflow) and checked against the file before anything is allocated. (The
// fuzz target's regression inputs hold the same three headers.)
TEST(Readers, AShapeIsCheckedAgainstTheFileBeforeAllocating) {
  auto file = [](const std::string& header) {
    std::string h = header;
    h.append((8 - h.size() % 8) % 8, ' ');
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
    return bytes + h;
  };
  for (const char* shape : {"[2147483648]", "[2147483648,2147483648]", "[2147483648,2147483648,4]"}) {
    SCOPED_TRACE(shape);
    std::string f = file(std::string(R"({"a":{"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,0]}})");
    const int64_t before = cpu_bytes_in_use();
    reset_cpu_bytes_peak();
    try {
      parse_safetensors("mem", f.data(), f.size());
      ADD_FAILURE() << "accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("needs more than the 0-byte data section"), std::string::npos) << e.what();
    }
    EXPECT_LT(cpu_bytes_peak() - before, 1 << 20) << "allocated what the header claimed";
  }
}

TEST(Readers, TheDatasetChecksumSeesEveryByteAndWhereItIs) {
  Dataset d;
  d.train.pixels = {1, 2, 3};
  d.train_labels = {4};
  d.test.pixels = {5, 6};
  d.test_labels = {7};
  const uint32_t sum = dataset_checksum(d);
  EXPECT_EQ(dataset_checksum(d), sum);
  Dataset e = d;
  e.test.pixels[1] = 9;
  EXPECT_NE(dataset_checksum(e), sum);
  Dataset moved = d;  // the same bytes, one moved from train to test
  moved.train.pixels = {1, 2};
  moved.test.pixels = {3, 5, 6};
  EXPECT_NE(dataset_checksum(moved), sum);
}

TEST(Allocator, ThePeakIsTheMostHeldSinceTheReset) {
  reset_cpu_bytes_peak();
  const int64_t base = cpu_bytes_in_use();
  {
    Tensor a = Tensor::empty({1 << 20});  // 4 MiB
    { Tensor b = Tensor::empty({1 << 18}); }  // 1 MiB, freed
  }
  EXPECT_EQ(cpu_bytes_peak() - base, int64_t{5} << 20);
  reset_cpu_bytes_peak();
  EXPECT_EQ(cpu_bytes_peak(), cpu_bytes_in_use());
}

}  // namespace
}  // namespace cvae
