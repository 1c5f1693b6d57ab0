// test_data.cpp: the IDX reader (raw, gzip, and every malformed case we can
// think of: each must throw the right exception naming the file and the
// fault), load_dataset, binarizing gathers, and the per-epoch shuffle.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "engine/data.h"
#include "kernels/kernels.h"
#include "kernels/philox.h"

namespace cvae {
namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "cvae_data_" + name; }

std::string make_dir(const std::string& name) {
  std::string dir = temp_path(name);
  ::mkdir(dir.c_str(), 0755);
  return dir;
}

using Bytes = std::vector<uint8_t>;

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

Bytes idx_images(uint32_t count, uint32_t rows, uint32_t cols, const Bytes& pixels,
                 uint32_t magic = 0x00000803) {
  Bytes b;
  put_be32(b, magic);
  put_be32(b, count);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// Pixels with an easily checked pattern: image i, pixel k -> (7*i + 3*k) % 256.
Bytes pattern(uint32_t count, uint32_t rows, uint32_t cols) {
  Bytes p(static_cast<size_t>(count) * rows * cols);
  for (size_t i = 0; i < count; ++i)
    for (size_t k = 0; k < size_t{rows} * cols; ++k)
      p[i * rows * cols + k] = static_cast<uint8_t>((7 * i + 3 * k) % 256);
  return p;
}

void write_raw(const std::string& path, const Bytes& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_gz(const std::string& path, const Bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb6");
  ASSERT_NE(f, nullptr);
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

Bytes read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs fn, expecting exception E whose message is "PATH: ..." containing fault, on one line.
template <typename E>
void expect_error(const std::function<void()>& fn, const std::string& path, const std::string& fault) {
  try {
    fn();
    ADD_FAILURE() << "no exception for " << path << " (expected: " << fault << ")";
  } catch (const E& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "message does not start with the path: " << msg;
    EXPECT_NE(msg.find(fault), std::string::npos) << "message lacks '" << fault << "': " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type for " << path << ": " << e.what();
  }
}

// --- reading good files ---------------------------------------------------------

TEST(Idx, ReadsRawAndGzipImages) {
  const Bytes px = pattern(5, 3, 4);
  const Bytes file = idx_images(5, 3, 4, px);
  const std::string raw = temp_path("good_raw-idx3-ubyte");
  const std::string gz = temp_path("good_gz-idx3-ubyte.gz");
  write_raw(raw, file);
  write_gz(gz, file);
  for (const std::string& path : {raw, gz}) {
    SCOPED_TRACE(path);
    IdxImages im = read_idx_images(path);
    EXPECT_EQ(im.count, 5);
    EXPECT_EQ(im.rows, 3);
    EXPECT_EQ(im.cols, 4);
    EXPECT_EQ(im.pixels, px);
  }
}

TEST(Idx, ReadsRawAndGzipLabels) {
  const Bytes labels = {5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 255};
  const std::string raw = temp_path("labels_raw");
  const std::string gz = temp_path("labels_gz.gz");
  write_raw(raw, idx_labels(labels));
  write_gz(gz, idx_labels(labels));
  EXPECT_EQ(read_idx_labels(raw), labels);
  EXPECT_EQ(read_idx_labels(gz), labels);
}

TEST(Idx, GzipIsDetectedByMagicNotByName) {
  const Bytes px = pattern(2, 2, 2);
  const std::string gz_named_raw = temp_path("really_gzip_no_ext");
  const std::string raw_named_gz = temp_path("really_raw.gz");
  write_gz(gz_named_raw, idx_images(2, 2, 2, px));
  write_raw(raw_named_gz, idx_images(2, 2, 2, px));
  EXPECT_EQ(read_idx_images(gz_named_raw).pixels, px);
  EXPECT_EQ(read_idx_images(raw_named_gz).pixels, px);
}

TEST(Idx, ReadsConcatenatedGzipMembers) {
  // `cat a.gz b.gz` is a valid gzip file whose content is a then b.
  const Bytes file = idx_images(4, 2, 3, pattern(4, 2, 3));
  const Bytes head(file.begin(), file.begin() + 13), tail(file.begin() + 13, file.end());
  const std::string a = temp_path("member_a.gz"), b = temp_path("member_b.gz");
  write_gz(a, head);
  write_gz(b, tail);
  Bytes joined = read_raw(a), second = read_raw(b);
  joined.insert(joined.end(), second.begin(), second.end());
  const std::string path = temp_path("members.gz");
  write_raw(path, joined);
  EXPECT_EQ(read_idx_images(path).pixels, pattern(4, 2, 3));
}

TEST(Idx, ReadsLargeGzipThroughManyChunks) {
  // Larger than the reader's 1 MiB input chunk, compressed and not.
  const uint32_t count = 3000;
  const Bytes px = pattern(count, 28, 28);
  const std::string gz = temp_path("large.gz"), raw = temp_path("large_raw");
  write_gz(gz, idx_images(count, 28, 28, px));
  write_raw(raw, idx_images(count, 28, 28, px));
  EXPECT_EQ(read_idx_images(gz).pixels, px);
  EXPECT_EQ(read_idx_images(raw).pixels, px);
}

// --- malformed files -------------------------------------------------------------

struct BadCase {
  const char* name;
  Bytes bytes;
  const char* fault;
};

std::vector<BadCase> bad_image_files() {
  const Bytes px = pattern(2, 3, 4);  // 24 bytes
  Bytes truncated = idx_images(2, 3, 4, px);
  truncated.resize(truncated.size() - 17);  // 7 of 24 pixel bytes left
  Bytes trailing = idx_images(2, 3, 4, px);
  trailing.push_back(0);
  trailing.push_back(1);
  return {
      {"empty", {}, "empty file"},
      {"short_header", {0, 0, 8, 3, 0, 0}, "truncated header: expected 16 bytes, got 6"},
      {"tiny", {0, 0, 8}, "truncated header"},
      {"bad_magic", idx_images(2, 3, 4, px, 0x12345678), "bad magic 0x12345678"},
      {"float_magic", idx_images(2, 3, 4, px, 0x00000D03), "bad magic 0x00000D03"},
      {"labels_magic", idx_labels({1, 2, 3}), "wrong number of dimensions: 1"},
      {"two_dims", idx_images(2, 3, 4, px, 0x00000802), "wrong number of dimensions: 2"},
      {"four_dims", idx_images(2, 3, 4, px, 0x00000804), "wrong number of dimensions: 4"},
      {"truncated", truncated, "truncated: expected 24 bytes of pixel data, got 7"},
      {"header_only", idx_images(2, 3, 4, {}), "truncated: expected 24 bytes of pixel data, got 0"},
      {"trailing", trailing, "trailing garbage: 2 bytes"},
      {"zero_count", idx_images(0, 3, 4, {}), "zero count"},
      {"zero_rows", idx_images(2, 0, 4, {}), "zero rows"},
      {"zero_cols", idx_images(2, 3, 0, {}), "zero cols"},
      {"huge_rows", idx_images(1, 5000, 4, {}), "implausible rows 5000"},
      {"huge_cols", idx_images(1, 4, 4097, {}), "implausible cols 4097"},
      {"huge_count", idx_images(100000001, 28, 28, {}), "implausible count 100000001"},
      {"max_claims", idx_images(0xffffffffu, 0xffffffffu, 0xffffffffu, {}), "implausible count"},
  };
}

TEST(IdxMalformed, RawFilesThrowFormatErrorNamingPathAndFault) {
  for (const BadCase& c : bad_image_files()) {
    SCOPED_TRACE(c.name);
    const std::string path = temp_path(std::string("bad_raw_") + c.name);
    write_raw(path, c.bytes);
    expect_error<FormatError>([&] { read_idx_images(path); }, path, c.fault);
  }
}

TEST(IdxMalformed, GzipFilesThrowTheSameFaults) {
  for (const BadCase& c : bad_image_files()) {
    if (c.bytes.empty()) continue;  // an empty gzip member is covered below
    SCOPED_TRACE(c.name);
    const std::string path = temp_path(std::string("bad_gz_") + c.name + ".gz");
    write_gz(path, c.bytes);
    expect_error<FormatError>([&] { read_idx_images(path); }, path, c.fault);
  }
  // A valid gzip stream with nothing inside.
  const std::string path = temp_path("bad_gz_empty_member.gz");
  write_gz(path, {});
  expect_error<FormatError>([&] { read_idx_images(path); }, path, "empty file");
}

TEST(IdxMalformed, CorruptGzipStream) {
  const Bytes file = idx_images(50, 28, 28, pattern(50, 28, 28));
  const std::string good = temp_path("gz_for_corruption.gz");
  write_gz(good, file);
  const Bytes gz = read_raw(good);
  ASSERT_GT(gz.size(), 100u);

  // Garbage in the middle of the deflate data.
  Bytes flipped = gz;
  for (size_t k = 20; k < 60; ++k) flipped[k] ^= 0x5a;
  const std::string p1 = temp_path("gz_flipped.gz");
  write_raw(p1, flipped);
  expect_error<FormatError>([&] { read_idx_images(p1); }, p1, "corrupt gzip stream");

  // A wrong CRC in the trailer: the data inflates but fails its check.
  Bytes bad_crc = gz;
  bad_crc[bad_crc.size() - 8] ^= 0xff;
  const std::string p2 = temp_path("gz_bad_crc.gz");
  write_raw(p2, bad_crc);
  expect_error<FormatError>([&] { read_idx_images(p2); }, p2, "corrupt gzip stream");

  // Cut short: the stream ends before its end-of-stream marker.
  Bytes cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  const std::string p3 = temp_path("gz_cut.gz");
  write_raw(p3, cut);
  expect_error<FormatError>([&] { read_idx_images(p3); }, p3, "corrupt gzip stream");

  // Only the two magic bytes.
  const std::string p4 = temp_path("gz_magic_only.gz");
  write_raw(p4, {0x1f, 0x8b});
  expect_error<FormatError>([&] { read_idx_images(p4); }, p4, "corrupt gzip stream");

  // Non-gzip bytes after the stream.
  Bytes junk = gz;
  junk.push_back('x');
  junk.push_back('y');
  const std::string p5 = temp_path("gz_junk_after.gz");
  write_raw(p5, junk);
  expect_error<FormatError>([&] { read_idx_images(p5); }, p5, "trailing bytes after the compressed data");
}

TEST(IdxMalformed, LabelFiles) {
  const std::string wrong = temp_path("labels_wrong_magic");
  write_raw(wrong, idx_images(1, 1, 1, {7}));
  expect_error<FormatError>([&] { read_idx_labels(wrong); }, wrong, "wrong number of dimensions: 3");

  Bytes cut = idx_labels({1, 2, 3, 4, 5});
  cut.pop_back();
  const std::string truncated = temp_path("labels_truncated");
  write_raw(truncated, cut);
  expect_error<FormatError>([&] { read_idx_labels(truncated); }, truncated,
                            "truncated: expected 5 bytes of label data, got 4");

  Bytes extra = idx_labels({1, 2, 3});
  extra.push_back(9);
  const std::string trailing = temp_path("labels_trailing.gz");
  write_gz(trailing, extra);
  expect_error<FormatError>([&] { read_idx_labels(trailing); }, trailing, "trailing garbage: 1 bytes");

  const std::string zero = temp_path("labels_zero");
  write_raw(zero, idx_labels({}));
  expect_error<FormatError>([&] { read_idx_labels(zero); }, zero, "zero count");
}

TEST(IdxMalformed, MissingFileIsDataNotFound) {
  const std::string path = temp_path("does_not_exist-idx3-ubyte.gz");
  std::remove(path.c_str());
  expect_error<DataNotFound>([&] { read_idx_images(path); }, path, "not found");
  expect_error<DataNotFound>([&] { read_idx_labels(path); }, path, "not found");
  const std::string in_missing_dir = temp_path("no_such_dir/x");
  expect_error<DataNotFound>([&] { read_idx_images(in_missing_dir); }, in_missing_dir, "not found");
}

TEST(IdxMalformed, DirectoryIsNotAFile) {
  const std::string dir = make_dir("a_directory");
  expect_error<DataNotFound>([&] { read_idx_images(dir); }, dir, "is a directory");
}

// --- load_dataset ------------------------------------------------------------------

// Writes a small dataset: 6 train and 4 test images of 3x2.
void write_small_dataset(const std::string& dir, bool gz) {
  auto put = [&](const std::string& name, const Bytes& b) {
    if (gz) write_gz(dir + "/" + name + ".gz", b);
    else write_raw(dir + "/" + name, b);
  };
  put("train-images-idx3-ubyte", idx_images(6, 3, 2, pattern(6, 3, 2)));
  put("train-labels-idx1-ubyte", idx_labels({0, 1, 2, 3, 4, 5}));
  put("t10k-images-idx3-ubyte", idx_images(4, 3, 2, pattern(4, 3, 2)));
  put("t10k-labels-idx1-ubyte", idx_labels({9, 8, 7, 6}));
}

TEST(LoadDataset, ReadsRawAndGzipDirectories) {
  for (bool gz : {false, true}) {
    SCOPED_TRACE(gz ? "gzip" : "raw");
    const std::string dir = make_dir(gz ? "ds_gz" : "ds_raw");
    write_small_dataset(dir, gz);
    Dataset ds = load_dataset(dir);
    EXPECT_EQ(ds.dir, dir);
    EXPECT_EQ(ds.train.count, 6);
    EXPECT_EQ(ds.test.count, 4);
    EXPECT_EQ(ds.train.rows, 3);
    EXPECT_EQ(ds.train.cols, 2);
    EXPECT_EQ(ds.train.pixels, pattern(6, 3, 2));
    EXPECT_EQ(ds.test.pixels, pattern(4, 3, 2));
    EXPECT_EQ(ds.train_labels, (Bytes{0, 1, 2, 3, 4, 5}));
    EXPECT_EQ(ds.test_labels, (Bytes{9, 8, 7, 6}));
  }
}

TEST(LoadDataset, PrefersGzipWhenBothExist) {
  const std::string dir = make_dir("ds_both");
  write_small_dataset(dir, true);
  // A raw train file with other content beside the .gz: the .gz wins.
  write_raw(dir + "/train-images-idx3-ubyte", idx_images(6, 3, 2, Bytes(36, 0)));
  write_raw(dir + "/t10k-labels-idx1-ubyte", Bytes{1, 2, 3});  // malformed, never read
  Dataset ds = load_dataset(dir);
  EXPECT_EQ(ds.train.pixels, pattern(6, 3, 2));
  EXPECT_EQ(ds.test_labels, (Bytes{9, 8, 7, 6}));
}

TEST(LoadDataset, MissingDirectoryOrFile) {
  const std::string missing = temp_path("no_such_dataset_dir");
  expect_error<DataNotFound>([&] { load_dataset(missing); }, missing, "not found");

  const std::string dir = make_dir("ds_missing_file");
  write_small_dataset(dir, true);
  const std::string gone = dir + "/t10k-images-idx3-ubyte.gz";
  std::remove(gone.c_str());
  expect_error<DataNotFound>([&] { load_dataset(dir); }, gone, "not found");
}

TEST(LoadDataset, LabelCountMustMatchImages) {
  const std::string dir = make_dir("ds_mismatch");
  write_small_dataset(dir, false);
  const std::string labels = dir + "/train-labels-idx1-ubyte";
  write_raw(labels, idx_labels({0, 1, 2, 3, 4}));  // 5 labels, 6 images
  expect_error<FormatError>([&] { load_dataset(dir); }, labels, "5 labels for 6 images");
}

TEST(LoadDataset, MalformedFileIsFormatErrorNamingIt) {
  const std::string dir = make_dir("ds_malformed");
  write_small_dataset(dir, true);
  const std::string bad = dir + "/t10k-images-idx3-ubyte.gz";
  write_gz(bad, idx_images(4, 3, 2, Bytes(5, 1)));
  expect_error<FormatError>([&] { load_dataset(dir); }, bad, "truncated: expected 24 bytes");
}

TEST(LoadDataset, DefaultDirIsDebianFashionMnist) {
  EXPECT_EQ(default_data_dir(), "/usr/share/datasets/fashion-mnist");
  struct stat st {};
  if (::stat(default_data_dir().c_str(), &st) != 0)
    GTEST_SKIP() << default_data_dir() << " is absent (Debian package dataset-fashion-mnist)";
  Dataset ds = load_dataset(default_data_dir());
  EXPECT_EQ(ds.train.count, 60000);
  EXPECT_EQ(ds.test.count, 10000);
  EXPECT_EQ(ds.train.rows, 28);
  EXPECT_EQ(ds.train.cols, 28);
}

TEST(LoadDataset, RealMnist) {
  const std::string dir = CVAE_SHARED_MNIST;
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) GTEST_SKIP() << "no real MNIST at " << dir;
  const auto t0 = std::chrono::steady_clock::now();
  Dataset ds = load_dataset(dir);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "load_dataset(" << dir << "): " << secs << " s\n";
  RecordProperty("load_seconds", std::to_string(secs));
  ASSERT_EQ(ds.train.count, 60000);
  ASSERT_EQ(ds.test.count, 10000);
  EXPECT_EQ(ds.train.rows, 28);
  EXPECT_EQ(ds.train.cols, 28);
  EXPECT_EQ(Bytes(ds.train_labels.begin(), ds.train_labels.begin() + 10),
            (Bytes{5, 0, 4, 1, 9, 2, 1, 3, 1, 4}));
  EXPECT_EQ(Bytes(ds.test_labels.begin(), ds.test_labels.begin() + 10),
            (Bytes{7, 2, 1, 0, 4, 1, 4, 9, 5, 9}));
  const double sum = std::accumulate(ds.train.pixels.begin(), ds.train.pixels.end(), 0.0);
  EXPECT_NEAR(sum / static_cast<double>(ds.train.pixels.size()), 33.3184, 0.001);
  const double test_sum = std::accumulate(ds.test.pixels.begin(), ds.test.pixels.end(), 0.0);
  EXPECT_NEAR(test_sum / static_cast<double>(ds.test.pixels.size()), 33.7912, 0.001);
  std::vector<int> counts(10, 0);
  for (uint8_t l : ds.train_labels) ++counts.at(l);
  EXPECT_EQ(counts, (std::vector<int>{5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949}));
}

// --- binarization and gathers --------------------------------------------------------

TEST(Binarize, ParseAndName) {
  for (Binarize b : {Binarize::Threshold, Binarize::Dynamic, Binarize::None})
    EXPECT_EQ(parse_binarize(binarize_name(b)), b);
  EXPECT_STREQ(binarize_name(Binarize::Threshold), "threshold");
  EXPECT_STREQ(binarize_name(Binarize::Dynamic), "dynamic");
  EXPECT_STREQ(binarize_name(Binarize::None), "none");
  EXPECT_THROW(parse_binarize("Threshold"), std::invalid_argument);
  EXPECT_THROW(parse_binarize(""), std::invalid_argument);
  EXPECT_THROW(parse_binarize("bernoulli"), std::invalid_argument);
}

// Two 16x16 images: image 0 holds every byte value 0..255 in order, image 1 the reverse.
IdxImages all_bytes_images() {
  IdxImages im;
  im.count = 2;
  im.rows = 16;
  im.cols = 16;
  im.pixels.resize(512);
  for (int p = 0; p < 256; ++p) {
    im.pixels[p] = static_cast<uint8_t>(p);
    im.pixels[256 + p] = static_cast<uint8_t>(255 - p);
  }
  return im;
}

TEST(GatherBatch, ShapeAndThresholdAt128) {
  const IdxImages im = all_bytes_images();
  const int64_t idx[] = {1, 0, 1};
  Tensor x = gather_batch(im, idx, 3, Binarize::Threshold);
  EXPECT_EQ(x.shape(), (Shape{3, 1, 16, 16}));
  EXPECT_EQ(x.dtype(), DType::F32);
  const float* v = x.data<float>();
  for (int p = 0; p < 256; ++p) {
    const float want = p >= 128 ? 1.0f : 0.0f;  // 127/255 < 0.5 <= 128/255
    EXPECT_EQ(v[256 + p], want) << "pixel " << p;
    EXPECT_EQ(v[255 - p], want) << "pixel " << p;
    EXPECT_EQ(v[512 + 255 - p], want) << "pixel " << p;
  }
  EXPECT_EQ(v[256 + 127], 0.0f);
  EXPECT_EQ(v[256 + 128], 1.0f);
}

TEST(GatherBatch, NoneIsPixelOver255Exactly) {
  const IdxImages im = all_bytes_images();
  const int64_t idx[] = {0};
  Tensor x = gather_batch(im, idx, 1, Binarize::None);
  const float* v = x.data<float>();
  for (int p = 0; p < 256; ++p) EXPECT_EQ(v[p], static_cast<float>(p) / 255.0f) << "pixel " << p;
  EXPECT_EQ(v[0], 0.0f);
  EXPECT_EQ(v[255], 1.0f);
}

TEST(GatherBatch, DynamicFollowsTheDocumentedPhiloxStream) {
  const IdxImages im = all_bytes_images();
  const uint64_t seed = 0x1234abcdULL, epoch = 3;
  const int64_t idx[] = {1, 0};
  Tensor x = gather_batch(im, idx, 2, Binarize::Dynamic, seed, epoch);
  const float* v = x.data<float>();
  // Independent reference straight from the generator (kernels/philox.h mapping).
  const uint64_t blocks = kernels::philox_blocks(256);
  for (int i = 0; i < 2; ++i) {
    const uint64_t offset = (epoch << 32) + static_cast<uint64_t>(idx[i]) * blocks;
    for (int k = 0; k < 256; ++k) {
      const kernels::philox::Ctr4 r = kernels::philox::philox_block(seed, offset + k / 4);
      const double u = kernels::philox::philox_u01(r.v[k % 4]);
      const uint8_t p = im.pixels[idx[i] * 256 + k];
      const float want = u < static_cast<double>(p) / 255.0 ? 1.0f : 0.0f;
      ASSERT_EQ(v[i * 256 + k], want) << "image " << idx[i] << " pixel " << k;
    }
  }
}

TEST(GatherBatch, DynamicDependsOnImageAndEpochNotOnBatch) {
  IdxImages im;
  im.count = 10;
  im.rows = 28;
  im.cols = 28;
  im.pixels.assign(10 * 784, 128);  // p = 0.502: maximal variance
  const int64_t alone[] = {7};
  const int64_t batch[] = {3, 7, 1, 7};
  Tensor a = gather_batch(im, alone, 1, Binarize::Dynamic, 42, 5);
  Tensor b = gather_batch(im, batch, 4, Binarize::Dynamic, 42, 5);
  const float* va = a.data<float>();
  const float* vb = b.data<float>();
  for (int k = 0; k < 784; ++k) {
    ASSERT_EQ(va[k], vb[784 + k]) << k;
    ASSERT_EQ(va[k], vb[3 * 784 + k]) << k;
  }
  // Other images, epochs and seeds draw other noise.
  auto differs = [](const float* p, const float* q) {
    int n = 0;
    for (int k = 0; k < 784; ++k) n += p[k] != q[k];
    return n;
  };
  EXPECT_GT(differs(vb, vb + 784), 200);  // image 3 vs image 7
  Tensor c = gather_batch(im, alone, 1, Binarize::Dynamic, 42, 6);
  Tensor d = gather_batch(im, alone, 1, Binarize::Dynamic, 43, 5);
  EXPECT_GT(differs(va, c.data<float>()), 200);
  EXPECT_GT(differs(va, d.data<float>()), 200);
  // And the same call repeats exactly.
  Tensor e = gather_batch(im, alone, 1, Binarize::Dynamic, 42, 5);
  EXPECT_EQ(differs(va, e.data<float>()), 0);
}

TEST(GatherBatch, DynamicMeanIsPixelOver255) {
  const IdxImages im = all_bytes_images();
  const int64_t idx[] = {0};
  const int epochs = 4000;
  std::vector<double> mean(256, 0.0);
  for (int e = 0; e < epochs; ++e) {
    Tensor x = gather_batch(im, idx, 1, Binarize::Dynamic, 7, static_cast<uint64_t>(e));
    const float* v = x.data<float>();
    for (int p = 0; p < 256; ++p) {
      EXPECT_TRUE(v[p] == 0.0f || v[p] == 1.0f);
      mean[p] += v[p];
    }
  }
  double total_err = 0;
  for (int p = 0; p < 256; ++p) {
    mean[p] /= epochs;
    const double q = p / 255.0;
    // 5 standard deviations of a mean of `epochs` Bernoulli(q) draws.
    EXPECT_NEAR(mean[p], q, 5 * std::sqrt(q * (1 - q) / epochs) + 1e-12) << "pixel " << p;
    total_err += mean[p] - q;
  }
  EXPECT_EQ(mean[0], 0.0);    // u > 0 always
  EXPECT_EQ(mean[255], 1.0);  // u < 1 always
  EXPECT_NEAR(total_err / 256, 0.0, 0.002);
}

TEST(GatherBatch, IndexOutOfRangeThrows) {
  const IdxImages im = all_bytes_images();
  const int64_t too_big[] = {0, 2};
  const int64_t negative[] = {-1};
  for (Binarize b : {Binarize::Threshold, Binarize::Dynamic, Binarize::None}) {
    EXPECT_THROW(gather_batch(im, too_big, 2, b), std::out_of_range);
    EXPECT_THROW(gather_batch(im, negative, 1, b), std::out_of_range);
  }
  Tensor empty = gather_batch(im, nullptr, 0, Binarize::Threshold);
  EXPECT_EQ(empty.shape(), (Shape{0, 1, 16, 16}));
}

// --- shuffling ----------------------------------------------------------------------

TEST(Shuffle, IsADeterministicPermutationThatChangesPerEpoch) {
  for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{17}, int64_t{60000}}) {
    SCOPED_TRACE(n);
    std::vector<int64_t> a = shuffled_indices(n, 11, 0);
    std::vector<int64_t> sorted = a;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> iota(static_cast<size_t>(n));
    std::iota(iota.begin(), iota.end(), int64_t{0});
    EXPECT_EQ(sorted, iota);
    EXPECT_EQ(shuffled_indices(n, 11, 0), a);
    if (n >= 17) {
      EXPECT_NE(shuffled_indices(n, 11, 1), a);
      EXPECT_NE(shuffled_indices(n, 12, 0), a);
      EXPECT_NE(a, iota);
    }
  }
  EXPECT_TRUE(shuffled_indices(0, 1, 1).empty());
  EXPECT_THROW(shuffled_indices(-1, 1, 1), std::invalid_argument);
}

TEST(Shuffle, AllPermutationsOfThreeAreEquallyLikely) {
  std::map<std::vector<int64_t>, int> seen;
  const int epochs = 6000;
  for (int e = 0; e < epochs; ++e) ++seen[shuffled_indices(3, 99, static_cast<uint64_t>(e))];
  ASSERT_EQ(seen.size(), 6u);
  for (const auto& kv : seen) EXPECT_NEAR(kv.second, epochs / 6, 150);  // ~5 standard deviations
}

TEST(Shuffle, PositionsAreUniform) {
  // Where element 0 lands, over many epochs, across 10 positions.
  const int epochs = 5000;
  std::vector<int> where(10, 0);
  for (int e = 0; e < epochs; ++e) {
    std::vector<int64_t> p = shuffled_indices(10, 5, static_cast<uint64_t>(e));
    ++where[std::find(p.begin(), p.end(), 0) - p.begin()];
  }
  for (int c : where) EXPECT_NEAR(c, epochs / 10, 110);  // ~5 standard deviations
}

}  // namespace
}  // namespace cvae
