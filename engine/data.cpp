// data.cpp: the IDX reader (raw or gzip, detected by magic bytes, validated
// strictly), load_dataset, binarizing batch gathers and the per-epoch shuffle,
// both driven by Philox streams so that an epoch can be rebuilt after a resume.
#include "engine/data.h"

#include <zlib.h>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace cvae {
namespace {

// Limits on what an IDX header may claim (anything larger is corrupt, not data).
constexpr uint32_t kMaxSide = 4096;
constexpr uint32_t kMaxCount = 100000000;  // 1e8
constexpr uint32_t kMagicImages = 0x00000803;  // unsigned bytes, 3 dims
constexpr uint32_t kMagicLabels = 0x00000801;  // unsigned bytes, 1 dim

[[noreturn]] void fail(const std::string& path, const std::string& fault) {
  throw FormatError(path + ": " + fault);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

// A byte source over a raw or gzip file, or over bytes in memory (the fuzz
// target's input). read() fills dst completely unless the (decompressed)
// stream ends first, and returns the byte count; faults throw FormatError
// naming the path.
class ByteSource {
 public:
  explicit ByteSource(const std::string& path) : path_(path) {
    open_file();
    start();
  }
  ByteSource(const std::string& name, const uint8_t* bytes, size_t size)
      : path_(name), in_memory_(true), mem_(bytes), mem_size_(size), file_size_(static_cast<int64_t>(size)) {
    start();
  }
  ~ByteSource() {
    if (z_init_) inflateEnd(&zs_);
  }
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  bool gzip() const { return gzip_; }
  // Size of a regular raw file, -1 otherwise (gzip, pipes).
  int64_t raw_size() const { return gzip_ ? -1 : file_size_; }

  size_t read(uint8_t* dst, size_t n) { return gzip_ ? gz_read(dst, n) : plain_read(dst, n); }

 private:
  static constexpr size_t kChunk = size_t{1} << 20;

  void open_file() {
    const std::string& path = path_;
    errno = 0;
    f_.reset(std::fopen(path.c_str(), "rb"));
    if (!f_) {
      const int e = errno;
      if (e == ENOENT || e == ENOTDIR) throw DataNotFound(path + ": not found");
      throw DataNotFound(path + ": cannot open: " + std::strerror(e));
    }
    struct stat st {};
    if (::fstat(fileno(f_.get()), &st) == 0) {
      if (S_ISDIR(st.st_mode)) throw DataNotFound(path + ": is a directory, not an IDX file");
      if (S_ISREG(st.st_mode)) file_size_ = static_cast<int64_t>(st.st_size);
    }
  }

  void start() {
    // Sniff the gzip magic (1f 8b); everything read so far is kept in in_
    // (bytes in memory need no more buffer than they are).
    in_.resize(in_memory_ ? std::max<size_t>(2, std::min(kChunk, mem_size_)) : kChunk);
    in_len_ = raw_read(in_.data(), 2);
    gzip_ = in_len_ == 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (gzip_) {
      std::memset(&zs_, 0, sizeof zs_);
      if (inflateInit2(&zs_, 15 + 16) != Z_OK) fail(path_, "cannot initialise zlib");
      z_init_ = true;
      zs_.next_in = in_.data();
      zs_.avail_in = static_cast<uInt>(in_len_);
    }
  }

  size_t raw_read(uint8_t* dst, size_t n) {
    if (in_memory_) {
      size_t got = std::min(n, mem_size_ - mem_pos_);
      if (got > 0) std::memcpy(dst, mem_ + mem_pos_, got);
      mem_pos_ += got;
      return got;
    }
    size_t got = std::fread(dst, 1, n, f_.get());
    if (got < n && std::ferror(f_.get())) fail(path_, std::string("read error: ") + std::strerror(errno));
    return got;
  }

  size_t plain_read(uint8_t* dst, size_t n) {
    size_t got = 0;
    // The sniffed bytes first.
    while (in_pos_ < in_len_ && got < n) dst[got++] = in_[in_pos_++];
    if (got < n) got += raw_read(dst + got, n - got);
    return got;
  }

  size_t gz_read(uint8_t* dst, size_t n) {
    size_t got = 0;
    while (got < n && !done_) {
      if (zs_.avail_in == 0) {
        in_len_ = raw_read(in_.data(), in_.size());
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(in_len_);
        if (in_len_ == 0) {
          if (member_started_)
            fail(path_, "corrupt gzip stream: unexpected end of compressed data");
          done_ = true;  // cleanly at the end of the last member
          break;
        }
      }
      const size_t want = std::min<size_t>(n - got, size_t{1} << 30);
      zs_.next_out = dst + got;
      zs_.avail_out = static_cast<uInt>(want);
      member_started_ = true;
      const int rc = inflate(&zs_, Z_NO_FLUSH);
      got += want - zs_.avail_out;
      if (rc == Z_STREAM_END) {
        member_started_ = false;
        // Another gzip member may follow (concatenated .gz files are valid);
        // anything else after the stream is garbage.
        if (zs_.avail_in == 0) {
          in_len_ = raw_read(in_.data(), in_.size());
          zs_.next_in = in_.data();
          zs_.avail_in = static_cast<uInt>(in_len_);
        }
        if (zs_.avail_in == 0) {
          done_ = true;
        } else if (zs_.next_in[0] == 0x1f) {
          if (inflateReset(&zs_) != Z_OK) fail(path_, "corrupt gzip stream");
        } else {
          fail(path_, "corrupt gzip stream: trailing bytes after the compressed data");
        }
      } else if (rc == Z_BUF_ERROR) {
        // No progress possible: needs input (handled above) or output (none wanted).
        if (zs_.avail_in != 0) fail(path_, "corrupt gzip stream");
      } else if (rc != Z_OK) {
        fail(path_, std::string("corrupt gzip stream: ") + (zs_.msg ? zs_.msg : zError(rc)));
      }
    }
    return got;
  }

  std::string path_;
  File f_;
  bool in_memory_ = false;  // read mem_ instead of f_
  const uint8_t* mem_ = nullptr;
  size_t mem_size_ = 0, mem_pos_ = 0;
  int64_t file_size_ = -1;
  bool gzip_ = false;
  bool z_init_ = false;
  bool done_ = false;
  bool member_started_ = false;
  z_stream zs_{};
  std::vector<uint8_t> in_;
  size_t in_len_ = 0, in_pos_ = 0;
};

// Reads the header (magic + ndims big-endian sizes), checks it, and reads the
// payload of prod(dims) bytes into out, insisting that nothing follows it.
std::vector<uint32_t> read_idx(ByteSource& src, const std::string& path, uint32_t magic,
                               const char* what, std::vector<uint8_t>& out) {
  const int ndims = static_cast<int>(magic & 0xff);
  const std::string data_name = ndims == 1 ? "label data" : "pixel data";
  const size_t header_bytes = 4 + 4 * static_cast<size_t>(ndims);
  uint8_t header[16];
  const size_t got_header = src.read(header, header_bytes);
  if (got_header == 0) fail(path, "empty file");
  if (got_header < 4)
    fail(path, "truncated header: expected " + std::to_string(header_bytes) + " bytes, got " +
                   std::to_string(got_header));
  const uint32_t m = be32(header);
  if ((m >> 16) != 0 || ((m >> 8) & 0xff) != 0x08)
    fail(path, "bad magic " + hex32(m) + ", expected " + hex32(magic) + " (IDX " + what +
                   ", unsigned bytes, " + std::to_string(ndims) + " dims)");
  if ((m & 0xff) != static_cast<uint32_t>(ndims))
    fail(path, "wrong number of dimensions: " + std::to_string(m & 0xff) + " (magic " + hex32(m) +
                   "), expected " + std::to_string(ndims) + " for IDX " + what);
  if (got_header < header_bytes)
    fail(path, "truncated header: expected " + std::to_string(header_bytes) + " bytes, got " +
                   std::to_string(got_header));
  std::vector<uint32_t> dims(ndims);
  static const char* const kDimNames[] = {"count", "rows", "cols"};
  uint64_t payload = 1;
  for (int d = 0; d < ndims; ++d) {
    dims[d] = be32(header + 4 + 4 * d);
    const uint32_t limit = d == 0 ? kMaxCount : kMaxSide;
    if (dims[d] == 0) fail(path, std::string("zero ") + kDimNames[d] + " in the header");
    if (dims[d] > limit)
      fail(path, std::string("implausible ") + kDimNames[d] + " " + std::to_string(dims[d]) +
                     " in the header (at most " + std::to_string(limit) + ")");
    payload *= dims[d];
  }
  // A regular raw file's size is known: check it before allocating anything.
  const int64_t raw_size = src.raw_size();
  if (raw_size >= 0) {
    const uint64_t have = static_cast<uint64_t>(raw_size) - header_bytes;
    if (have < payload)
      fail(path, "truncated: expected " + std::to_string(payload) + " bytes of " + data_name +
                     ", got " + std::to_string(have));
    if (have > payload)
      fail(path, "trailing garbage: " + std::to_string(have - payload) +
                     " bytes after the expected " + std::to_string(payload) + " bytes of data");
  }
  size_t got = 0;
  if (raw_size >= 0) {
    out.resize(static_cast<size_t>(payload));
    got = src.read(out.data(), out.size());
  } else {
    // Compressed (or unsized) input: the header's claim is not proof of the
    // data, so grow the buffer geometrically as bytes actually arrive.
    size_t cap = static_cast<size_t>(std::min<uint64_t>(payload, uint64_t{64} << 20));
    out.resize(cap);
    got = src.read(out.data(), cap);
    while (got == out.size() && out.size() < payload) {
      cap = static_cast<size_t>(std::min<uint64_t>(payload, uint64_t{2} * out.size()));
      out.resize(cap);
      got += src.read(out.data() + got, cap - got);
    }
  }
  if (got < payload) {
    out.clear();
    out.shrink_to_fit();
    fail(path, "truncated: expected " + std::to_string(payload) + " bytes of " + data_name +
                   ", got " + std::to_string(got));
  }
  // Nothing may follow. Draining a gzip stream to its end also checks its CRC.
  uint8_t extra[4096];
  uint64_t n_extra = 0;
  for (size_t k; (k = src.read(extra, sizeof extra)) > 0;) {
    n_extra += k;
    if (n_extra >= (uint64_t{1} << 20)) break;
  }
  if (n_extra > 0)
    fail(path, "trailing garbage: " + std::string(n_extra >= (uint64_t{1} << 20) ? "at least " : "") +
                   std::to_string(n_extra) + " bytes after the expected " + std::to_string(payload) +
                   " bytes of data");
  return dims;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string join(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

// dir/base.gz if it exists, else dir/base; DataNotFound when neither does.
std::string find_file(const std::string& dir, const std::string& base) {
  const std::string plain = join(dir, base);
  if (exists(plain + ".gz")) return plain + ".gz";
  if (exists(plain)) return plain;
  throw DataNotFound(plain + ".gz: not found (nor " + base + ")");
}


IdxImages images_from(ByteSource& src, const std::string& path) {
  IdxImages im;
  const std::vector<uint32_t> dims = read_idx(src, path, kMagicImages, "images", im.pixels);
  im.count = dims[0];
  im.rows = static_cast<int>(dims[1]);
  im.cols = static_cast<int>(dims[2]);
  return im;
}

std::vector<uint8_t> labels_from(ByteSource& src, const std::string& path) {
  std::vector<uint8_t> labels;
  read_idx(src, path, kMagicLabels, "labels", labels);
  return labels;
}

}  // namespace

IdxImages read_idx_images(const std::string& path) {
  ByteSource src(path);
  return images_from(src, path);
}

std::vector<uint8_t> read_idx_labels(const std::string& path) {
  ByteSource src(path);
  return labels_from(src, path);
}

IdxImages parse_idx_images(const std::string& name, const uint8_t* bytes, size_t size) {
  ByteSource src(name, bytes, size);
  return images_from(src, name);
}

std::vector<uint8_t> parse_idx_labels(const std::string& name, const uint8_t* bytes, size_t size) {
  ByteSource src(name, bytes, size);
  return labels_from(src, name);
}

uint32_t dataset_checksum(const Dataset& d) {
  // CRC-32 (zlib) over the four arrays in a fixed order, each preceded by its
  // size, so that moving bytes between the arrays changes the sum.
  uLong crc = crc32(0L, Z_NULL, 0);
  auto add = [&](const std::vector<uint8_t>& v) {
    const uint64_t n = v.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    crc = crc32(crc, len, 8);
    for (size_t at = 0; at < v.size(); at += size_t{1} << 30)  // crc32 takes a uInt length
      crc = crc32(crc, v.data() + at, static_cast<uInt>(std::min(v.size() - at, size_t{1} << 30)));
  };
  add(d.train.pixels);
  add(d.train_labels);
  add(d.test.pixels);
  add(d.test_labels);
  return static_cast<uint32_t>(crc);
}

std::string default_data_dir() { return "/usr/share/datasets/fashion-mnist"; }

Dataset load_dataset(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw DataNotFound(dir + ": not found");
  if (!S_ISDIR(st.st_mode)) throw DataNotFound(dir + ": not a directory");
  Dataset ds;
  ds.dir = dir;
  const std::string train_images = find_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = find_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = find_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = find_file(dir, "t10k-labels-idx1-ubyte");
  ds.train = read_idx_images(train_images);
  ds.train_labels = read_idx_labels(train_labels);
  ds.test = read_idx_images(test_images);
  ds.test_labels = read_idx_labels(test_labels);
  auto check_count = [](const std::string& label_path, size_t n_labels,
                        const std::string& image_path, int64_t n_images) {
    if (static_cast<int64_t>(n_labels) != n_images)
      fail(label_path, std::to_string(n_labels) + " labels for " + std::to_string(n_images) +
                           " images in " + image_path);
  };
  check_count(train_labels, ds.train_labels.size(), train_images, ds.train.count);
  check_count(test_labels, ds.test_labels.size(), test_images, ds.test.count);
  if (ds.test.rows != ds.train.rows || ds.test.cols != ds.train.cols)
    fail(test_images, "images are " + std::to_string(ds.test.rows) + "x" +
                          std::to_string(ds.test.cols) + ", the training images " +
                          std::to_string(ds.train.rows) + "x" + std::to_string(ds.train.cols));
  return ds;
}

Binarize parse_binarize(const std::string& s) {
  if (s == "threshold") return Binarize::Threshold;
  if (s == "dynamic") return Binarize::Dynamic;
  if (s == "none") return Binarize::None;
  throw std::invalid_argument("unknown binarization '" + s +
                              "' (expected threshold, dynamic or none)");
}

const char* binarize_name(Binarize b) {
  switch (b) {
    case Binarize::Threshold: return "threshold";
    case Binarize::Dynamic: return "dynamic";
    case Binarize::None: return "none";
  }
  return "?";
}

Tensor gather_batch(const IdxImages& images, const int64_t* idx, int n, Binarize mode,
                    uint64_t seed, uint64_t epoch) {
  if (n < 0) throw std::invalid_argument("gather_batch: negative batch size " + std::to_string(n));
  if (n > 0 && idx == nullptr) throw std::invalid_argument("gather_batch: null index array");
  const int64_t pix = int64_t{images.rows} * images.cols;
  if (static_cast<int64_t>(images.pixels.size()) != images.count * pix)
    throw std::invalid_argument("gather_batch: images hold " + std::to_string(images.pixels.size()) +
                                " bytes, not count*rows*cols");
  for (int i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= images.count)
      throw std::out_of_range("gather_batch: index " + std::to_string(idx[i]) + " at position " +
                              std::to_string(i) + " is outside [0, " +
                              std::to_string(images.count) + ")");
  Tensor x = Tensor::empty({n, 1, images.rows, images.cols}, DType::F32, Device::CPU);
  float* out = x.data<float>();
  const uint8_t* src = images.pixels.data();

  if (mode != Binarize::Dynamic) {
    // Both modes are a function of the pixel byte: a 256-entry table.
    float lut[256];
    for (int p = 0; p < 256; ++p)
      lut[p] = mode == Binarize::None ? static_cast<float>(p) / 255.0f
                                      : (static_cast<double>(p) / 255.0 >= 0.5 ? 1.0f : 0.0f);
    for (int i = 0; i < n; ++i) {
      const uint8_t* s = src + idx[i] * pix;
      float* d = out + static_cast<int64_t>(i) * pix;
      for (int64_t k = 0; k < pix; ++k) d[k] = lut[s[k]];
    }
    return x;
  }

  // Dynamic: pixel k of image j is 1 iff u < pixel/255 (double), u the k-th
  // uniform of Philox{seed, (epoch << 32) + j * ceil(pix/4)}: a pure function
  // of (seed, epoch, j, k), so the CUDA gather can draw the same bits.
  double prob[256];
  for (int p = 0; p < 256; ++p) prob[p] = static_cast<double>(p) / 255.0;
  const uint64_t base = epoch << 32;
  const uint64_t stride = kernels::philox_blocks(pix);
#pragma omp parallel if (static_cast<int64_t>(n) * pix >= (int64_t{1} << 16))
  {
    std::vector<double> u(static_cast<size_t>(pix));  // one scratch buffer per thread
#pragma omp for schedule(static)
    for (int i = 0; i < n; ++i) {
      const uint64_t offset = base + static_cast<uint64_t>(idx[i]) * stride;
      kernels::cpu::uniform_fill<double>(pix, seed, offset, 0.0, 1.0, u.data());
      const uint8_t* s = src + idx[i] * pix;
      float* d = out + static_cast<int64_t>(i) * pix;
      for (int64_t k = 0; k < pix; ++k) d[k] = u[k] < prob[s[k]] ? 1.0f : 0.0f;
    }
  }
  return x;
}

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, uint64_t epoch) {
  if (n < 0) throw std::invalid_argument("shuffled_indices: negative n " + std::to_string(n));
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  if (n < 2) return perm;
  // Fisher-Yates from the back: draw k (k = 0, 1, ...) swaps position i = n-1-k
  // with j = floor(u_k * (i+1)), clamped to i. u_k is uniform k of the Philox
  // stream with key seed ^ kShuffleKey at offset epoch << 32: a key of its own,
  // so the shuffle never reuses the numbers of dynamic binarization (which
  // uses key seed in the same offset range). Drawn in chunks of whole blocks,
  // so the numbers equal one long uniform_fill. Bias of j: at most
  // (i+1)/2^32 relative, from u's 32 bits.
  constexpr uint64_t kShuffleKey = 0x53485546464C4521ull;  // "SHUFFLE!"
  const uint64_t key = seed ^ kShuffleKey;
  constexpr int64_t kChunk = 4096;  // a multiple of 4: chunks start on block boundaries
  std::vector<double> u(static_cast<size_t>(std::min<int64_t>(kChunk, n - 1)));
  uint64_t offset = epoch << 32;
  int64_t k = 0;  // draws made
  for (int64_t i = n - 1; i >= 1; --i, ++k) {
    const int64_t c = k % kChunk;
    if (c == 0) {
      // Only the draws still needed; the stream advances by whole chunks.
      const int64_t len = std::min<int64_t>(kChunk, i);
      kernels::cpu::uniform_fill<double>(len, key, offset, 0.0, 1.0, u.data());
      offset += kernels::philox_blocks(kChunk);
    }
    int64_t j = static_cast<int64_t>(std::floor(u[c] * static_cast<double>(i + 1)));
    if (j > i) j = i;
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

}  // namespace cvae
