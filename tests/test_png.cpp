// test_png.cpp: PNG writing. Files are read back with libpng's own reader and
// checked byte for byte (signature, size, 8-bit gray, pixel values, the grid
// layout); failures must throw naming the path and leave no temporary file.
#include <gtest/gtest.h>
#include <dirent.h>
#include <png.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "engine/png.h"

namespace cvae {
namespace {

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "cvae_png_" + name; }

struct Gray {
  int width = 0, height = 0;
  std::vector<uint8_t> px;
  uint8_t at(int y, int x) const { return px[static_cast<size_t>(y) * width + x]; }
};

// Checks the signature and IHDR (8-bit, gray, not interlaced), then decodes.
Gray read_png(const std::string& path) {
  Gray g;
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> head(33);
  in.read(reinterpret_cast<char*>(head.data()), 33);
  EXPECT_EQ(in.gcount(), 33);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
  EXPECT_TRUE(std::equal(sig, sig + 8, head.begin())) << "PNG signature";
  EXPECT_EQ(std::string(head.begin() + 12, head.begin() + 16), "IHDR");
  EXPECT_EQ(head[24], 8) << "bit depth";
  EXPECT_EQ(head[25], 0) << "color type (0 = gray)";
  EXPECT_EQ(head[28], 0) << "interlace";

  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    ADD_FAILURE() << path << ": " << image.message;
    return g;
  }
  EXPECT_EQ(image.format, static_cast<png_uint_32>(PNG_FORMAT_GRAY));
  image.format = PNG_FORMAT_GRAY;
  g.width = static_cast<int>(image.width);
  g.height = static_cast<int>(image.height);
  g.px.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, g.px.data(), 0, nullptr))
    ADD_FAILURE() << path << ": " << image.message;
  return g;
}

// Files in the temp dir whose names start with prefix (to find stray temporaries).
int count_files_with_prefix(const std::string& prefix) {
  int n = 0;
  DIR* d = opendir(::testing::TempDir().c_str());
  if (!d) return -1;
  while (dirent* e = readdir(d))
    if (std::string(e->d_name).rfind(prefix, 0) == 0) ++n;
  closedir(d);
  return n;
}

TEST(Png, GrayRoundTripsEveryByte) {
  std::vector<float> v(256);
  for (int p = 0; p < 256; ++p) v[p] = static_cast<float>(p) / 255.0f;
  const std::string path = temp_path("bytes.png");
  write_png_gray(path, v.data(), 8, 32);
  Gray g = read_png(path);
  ASSERT_EQ(g.width, 32);
  ASSERT_EQ(g.height, 8);
  for (int p = 0; p < 256; ++p) EXPECT_EQ(g.px[p], p);
}

TEST(Png, ClampsAndRounds) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> v = {-0.5f, 1.7f, nan, 0.5f, 0.2f, 1.0f / 510.0f, 0.999f, -inf, inf, 0.0f};
  const std::string path = temp_path("clamp.png");
  write_png_gray(path, v.data(), 1, static_cast<int>(v.size()));
  Gray g = read_png(path);
  ASSERT_EQ(g.px.size(), v.size());
  const std::vector<uint8_t> want = {0, 255, 0, 128, 51, 1, 255, 0, 255, 0};
  EXPECT_EQ(g.px, want);
}

TEST(Png, GridLayout) {
  // 5 images of 3x4 in a 2x3 grid with pad 2: cell 5 is blank.
  const int n = 5, h = 3, w = 4, rows = 2, cols = 3, pad = 2;
  std::vector<float> v(static_cast<size_t>(n) * h * w);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < h * w; ++k) v[i * h * w + k] = static_cast<float>(10 * i + k) / 255.0f;
  Tensor images = Tensor::from_vector(v, {n, 1, h, w});
  const std::string path = temp_path("grid.png");
  write_png_grid(path, images, rows, cols, pad);
  Gray g = read_png(path);
  ASSERT_EQ(g.width, cols * w + (cols + 1) * pad);   // 20
  ASSERT_EQ(g.height, rows * h + (rows + 1) * pad);  // 12
  std::vector<bool> in_cell(g.px.size(), false);
  for (int cell = 0; cell < rows * cols; ++cell) {
    const int r0 = pad + (cell / cols) * (h + pad), c0 = pad + (cell % cols) * (w + pad);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const int want = cell < n ? 10 * cell + y * w + x : 0;  // blank cells are black
        EXPECT_EQ(g.at(r0 + y, c0 + x), want) << "cell " << cell << " y " << y << " x " << x;
        in_cell[static_cast<size_t>(r0 + y) * g.width + c0 + x] = true;
      }
  }
  for (size_t k = 0; k < g.px.size(); ++k)
    if (!in_cell[k]) {
      EXPECT_EQ(g.px[k], 255) << "border pixel " << k;  // white border
    }
  EXPECT_EQ(g.at(0, 0), 255);
  EXPECT_EQ(g.at(2, 2), 0);  // cell 0, pixel 0
  EXPECT_EQ(g.at(2, 8), 10);  // cell 1, pixel 0
}

TEST(Png, GridWithoutPaddingAndExtraImages) {
  // pad 0; 3 images in a 1x2 grid: the third is not drawn.
  std::vector<float> v = {0.0f, 1.0f, 1.0f, 0.0f, 0.5f, 0.5f};
  Tensor images = Tensor::from_vector(v, {3, 1, 1, 2});
  const std::string path = temp_path("grid_nopad.png");
  write_png_grid(path, images, 1, 2, 0);
  Gray g = read_png(path);
  ASSERT_EQ(g.width, 4);
  ASSERT_EQ(g.height, 1);
  EXPECT_EQ(g.px, (std::vector<uint8_t>{0, 255, 255, 0}));
}

TEST(Png, OverwritesAtomicallyAndLeavesNoTemporary) {
  const std::string path = temp_path("atomic.png");
  std::vector<float> a(6, 0.0f), b(12, 1.0f);
  write_png_gray(path, a.data(), 2, 3);
  write_png_gray(path, b.data(), 3, 4);
  Gray g = read_png(path);
  EXPECT_EQ(g.width, 4);
  EXPECT_EQ(g.height, 3);
  EXPECT_EQ(count_files_with_prefix("cvae_png_atomic.png.tmp"), 0);
}

TEST(Png, FailuresNameThePathAndLeaveNoTemporary) {
  std::vector<float> v(4, 0.5f);
  // A directory that does not exist.
  const std::string nodir = temp_path("no_such_dir/x.png");
  try {
    write_png_gray(nodir, v.data(), 2, 2);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(nodir + ": ", 0), 0u) << e.what();
  }
  // The target is a directory: the temporary gets written, the rename fails,
  // and the temporary must be removed.
  const std::string dir = temp_path("target_is_dir.png");
  ::mkdir(dir.c_str(), 0755);
  try {
    write_png_gray(dir, v.data(), 2, 2);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(dir + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("rename"), std::string::npos) << e.what();
  }
  EXPECT_EQ(count_files_with_prefix("cvae_png_target_is_dir.png.tmp"), 0);
  // Bad sizes and shapes.
  EXPECT_THROW(write_png_gray(temp_path("zero.png"), v.data(), 0, 2), std::runtime_error);
  EXPECT_THROW(write_png_grid(temp_path("shape.png"), Tensor::from_vector(v, {2, 2}), 1, 1),
               std::runtime_error);
  EXPECT_THROW(write_png_grid(temp_path("grid0.png"), Tensor::from_vector(v, {1, 1, 2, 2}), 0, 1),
               std::runtime_error);
  EXPECT_THROW(write_png_grid(temp_path("chan.png"), Tensor::from_vector(v, {1, 2, 1, 2}), 1, 1),
               std::runtime_error);
}

}  // namespace
}  // namespace cvae
