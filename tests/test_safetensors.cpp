// test_safetensors.cpp: round trip and malformed files. Every malformed case
// must throw FormatError naming the file and the fault, never crash.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "engine/safetensors.h"

namespace cvae {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "cvae_st_" + name;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A file with the given JSON header and data bytes.
std::string with_header(const std::string& json, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + json + data;
}

TEST(SafeTensors, RoundTripIsBitwise) {
  std::string path = temp_path("roundtrip.safetensors");
  Tensor a = Tensor::from_vector(std::vector<float>{1.5f, -2.25f, 3e-39f, 7.0f, 0.1f, -0.0f}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<double>{0.1, 1e300}, {2});
  save_safetensors(path, {{"a.weight", a}, {"b", b}}, {{"epoch", "3"}, {"model", "cvae"}});
  SafeTensors st = load_safetensors(path);
  ASSERT_EQ(st.tensors.size(), 2u);
  EXPECT_EQ(st.tensors[0].first, "a.weight");
  EXPECT_EQ(st.tensors[1].first, "b");
  EXPECT_EQ(st.at("a.weight").shape(), (Shape{2, 3}));
  EXPECT_EQ(st.at("a.weight").dtype(), DType::F32);
  EXPECT_EQ(std::memcmp(st.at("a.weight").raw(), a.raw(), a.nbytes()), 0);
  EXPECT_EQ(std::memcmp(st.at("b").raw(), b.raw(), b.nbytes()), 0);
  EXPECT_EQ(st.metadata.at("epoch"), "3");
  EXPECT_EQ(st.metadata.at("model"), "cvae");
  // Header is padded so the data section starts 8-byte aligned.
  std::string bytes = read_file(path);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(hlen % 8, 0u);
  std::remove(path.c_str());
}

TEST(SafeTensors, SaveIsAtomicAndLeavesNoTemporary) {
  std::string path = temp_path("atomic.safetensors");
  write_file(path, "old contents");
  Tensor a = Tensor::full({3}, 2.0);
  save_safetensors(path, {{"a", a}});
  EXPECT_EQ(load_safetensors(path).at("a").to_double_vector(), (std::vector<double>{2, 2, 2}));
  // A failing save (duplicate names) must leave the previous file as it was.
  std::string before = read_file(path);
  EXPECT_THROW(save_safetensors(path, {{"a", a}, {"a", a}}), std::invalid_argument);
  EXPECT_EQ(read_file(path), before);
  std::remove(path.c_str());
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* fault;  // a word the message must contain
};

TEST(SafeTensors, MalformedFilesAreRejectedWithTheFault) {
  const std::string eight_bytes(8, 'x');
  std::vector<BadCase> cases = {
      {"short", "abc", "too short"},
      {"header_len", with_header("{}", "").replace(0, 8, std::string("\xff\xff\xff\xff\0\0\0\0", 8)),
       "header length"},
      {"bad_json", with_header("{\"a\": [1,", ""), "JSON"},
      {"not_object", with_header("[1,2]", ""), "JSON"},
      {"dtype", with_header(R"({"a":{"dtype":"I7","shape":[2],"data_offsets":[0,8]}})", eight_bytes),
       "dtype"},
      {"missing_field", with_header(R"({"a":{"dtype":"F32","shape":[2]}})", eight_bytes),
       "data_offsets"},
      {"outside", with_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight_bytes),
       "outside"},
      {"size_mismatch", with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight_bytes),
       "needs"},
      {"negative_dim", with_header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight_bytes),
       "dimension"},
      {"overlap", with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight_bytes),
       "overlaps"},
      {"metadata", with_header(R"({"__metadata__":{"k":3}})", ""), "metadata"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    std::string path = temp_path(std::string("bad_") + c.name + ".safetensors");
    write_file(path, c.bytes);
    try {
      load_safetensors(path);
      ADD_FAILURE() << "no error for " << c.name;
    } catch (const FormatError& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(c.fault), std::string::npos) << msg;
    }
    std::remove(path.c_str());
  }
  EXPECT_THROW(load_safetensors(temp_path("does_not_exist")), FormatError);
}

}  // namespace
}  // namespace cvae
