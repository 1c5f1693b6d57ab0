// png.cpp: 8-bit grayscale PNG writing through libpng, atomic (a temporary
// file beside the target, then rename), and the image-grid layout used for
// sample sheets. Bad arguments throw std::runtime_error("PATH: reason"), failed
// writes WriteError (errors.h).
#include "engine/png.h"

#include "engine/errors.h"

#include <fcntl.h>
#include <png.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace cvae {
namespace {

// libpng reports errors through a callback that must not return; we longjmp
// back to write_rows, which holds only trivially destructible locals, after
// copying the message here.
struct PngError {
  char message[256];
};

void on_png_error(png_structp png, png_const_charp msg) {
  auto* err = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(err->message, sizeof err->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

// Encodes rows (height pointers to width bytes each) to f. Returns false and
// fills err->message on failure. No C++ objects live across the setjmp.
bool write_rows(FILE* f, png_bytep* rows, int height, int width, PngError* err) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, err, on_png_error, on_png_warning);
  if (!png) {
    std::snprintf(err->message, sizeof err->message, "out of memory (libpng)");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(err->message, sizeof err->message, "out of memory (libpng)");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return true;
}

// [0,1] -> 0..255, clamped, rounded to nearest; NaN -> 0.
uint8_t to_byte(float v) {
  if (!(v > 0.0f)) return 0;  // also NaN
  if (v >= 1.0f) return 255;
  return static_cast<uint8_t>(v * 255.0f + 0.5f);
}

std::string temp_name(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp-" + std::to_string(static_cast<long>(::getpid())) + "-" +
         std::to_string(counter.fetch_add(1));
}

}  // namespace

void write_png_gray(const std::string& path, const float* pixels, int height, int width) {
  if (height <= 0 || width <= 0 || pixels == nullptr)
    throw std::runtime_error(path + ": cannot write a " + std::to_string(height) + "x" +
                             std::to_string(width) + " image");
  if (static_cast<int64_t>(height) * width > (int64_t{1} << 31))
    throw std::runtime_error(path + ": image too large (" + std::to_string(height) + "x" +
                             std::to_string(width) + ")");
  const size_t w = static_cast<size_t>(width);
  std::vector<uint8_t> bytes(static_cast<size_t>(height) * w);
  for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = to_byte(pixels[k]);
  std::vector<png_bytep> rows(static_cast<size_t>(height));
  for (size_t r = 0; r < rows.size(); ++r) rows[r] = bytes.data() + r * w;

  // The temporary file lives beside the target so that rename is atomic.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
    tmp = temp_name(path);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0)
    throw WriteError(path + ": cannot create a temporary file: " + std::strerror(errno));
  FILE* f = ::fdopen(fd, "wb");
  if (!f) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw WriteError(path + ": cannot write: " + std::strerror(e));
  }
  PngError err{};
  bool ok = write_rows(f, rows.data(), height, width, &err);
  std::string reason = ok ? "" : std::string(err.message);
  if (ok && (std::fflush(f) != 0 || std::ferror(f))) {
    ok = false;
    reason = std::string("write error: ") + std::strerror(errno);
  }
  if (ok && ::fsync(::fileno(f)) != 0) {
    ok = false;
    reason = std::string("fsync failed: ") + std::strerror(errno);
  }
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    reason = std::string("close failed: ") + std::strerror(errno);
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    reason = std::string("cannot rename the temporary file into place: ") + std::strerror(errno);
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    throw WriteError(path + ": " + reason);
  }
}

void write_png_grid(const std::string& path, const Tensor& images, int rows, int cols, int pad) {
  if (!images.defined() || images.dim() != 4 || images.size(1) != 1)
    throw std::runtime_error(path + ": write_png_grid wants images [N,1,H,W], got " +
                             (images.defined() ? shape_str(images.shape()) : "an undefined tensor"));
  if (rows <= 0 || cols <= 0 || pad < 0)
    throw std::runtime_error(path + ": bad grid " + std::to_string(rows) + "x" +
                             std::to_string(cols) + " with pad " + std::to_string(pad));
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3);
  const int64_t gh = rows * h + (rows + 1) * int64_t{pad};
  const int64_t gw = cols * w + (cols + 1) * int64_t{pad};
  if (h <= 0 || w <= 0 || gh > (int64_t{1} << 20) || gw > (int64_t{1} << 20) ||
      gh * gw > (int64_t{1} << 31))
    throw std::runtime_error(path + ": grid of " + std::to_string(gh) + "x" + std::to_string(gw) +
                             " pixels is empty or too large");
  const std::vector<float> src = images.to_float_vector();
  // White (1) everywhere: the border. Each cell is then overwritten by its image,
  // or by black (0, the datasets' background) when there is no image for it.
  // Images beyond rows*cols are not drawn.
  std::vector<float> grid(static_cast<size_t>(gh * gw), 1.0f);
  for (int64_t cell = 0; cell < int64_t{rows} * cols; ++cell) {
    const int64_t r0 = pad + (cell / cols) * (h + pad);
    const int64_t c0 = pad + (cell % cols) * (w + pad);
    for (int64_t y = 0; y < h; ++y) {
      float* dst = grid.data() + (r0 + y) * gw + c0;
      if (cell < n) {
        const float* s = src.data() + (cell * h + y) * w;
        for (int64_t x = 0; x < w; ++x) dst[x] = s[x];
      } else {
        for (int64_t x = 0; x < w; ++x) dst[x] = 0.0f;
      }
    }
  }
  write_png_gray(path, grid.data(), static_cast<int>(gh), static_cast<int>(gw));
}

}  // namespace cvae
