// data.h: MNIST-format datasets. IDX files (raw or gzip) are read and
// validated; images stay uint8 in memory and are converted batch by batch,
// with the binarization chosen, by gather_batch. Shuffling and dynamic
// binarization are Philox streams keyed by (seed, epoch), so an epoch's
// batches can be rebuilt exactly after a resume.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/errors.h"
#include "engine/ops.h"
#include "engine/tensor.h"

namespace cvae {

struct IdxImages {
  int64_t count = 0;
  int rows = 0, cols = 0;
  std::vector<uint8_t> pixels;  // count * rows * cols, row-major per image
};

// Reads an IDX file, raw or gzip (told apart by the gzip magic 1f 8b, not by
// the name). Images: magic 0x00000803, dims count, rows, cols; labels: magic
// 0x00000801, dim count. Dims must be nonzero, rows and cols <= 4096, count
// <= 1e8, and the data must be exactly count*rows*cols bytes (nothing after).
// Throws DataNotFound ("PATH: not found") when the file is missing or cannot
// be opened, FormatError ("PATH: fault", one line) on bad magic, a wrong
// number of dimensions, bad dimensions, truncated data, trailing bytes, or a
// corrupt gzip stream.
IdxImages read_idx_images(const std::string& path);
std::vector<uint8_t> read_idx_labels(const std::string& path);
// The same over bytes in memory (raw or gzip); `name` stands for the path in errors.
IdxImages parse_idx_images(const std::string& name, const uint8_t* bytes, size_t size);
std::vector<uint8_t> parse_idx_labels(const std::string& name, const uint8_t* bytes, size_t size);

struct Dataset {
  std::string dir;
  IdxImages train, test;
  std::vector<uint8_t> train_labels, test_labels;
};

// Debian's dataset-fashion-mnist location.
std::string default_data_dir();
// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] from dir. Throws
// DataNotFound when the directory or a file is missing, FormatError when one
// is malformed, and FormatError when images and labels disagree in count.
Dataset load_dataset(const std::string& dir);
// A CRC-32 of every image and label byte (train, then test): a resumed run
// checks that --data holds the dataset it was trained on.
uint32_t dataset_checksum(const Dataset& d);

enum class Binarize { Threshold, Dynamic, None };
// "threshold" (the tutorial's pixel/255 >= 0.5), "dynamic" (Bernoulli(pixel/255)
// per epoch), "none" (pixel/255). Throws std::invalid_argument otherwise.
Binarize parse_binarize(const std::string& s);
const char* binarize_name(Binarize b);

// x [n,1,rows,cols] float32 (CPU) from images idx[0..n). Threshold: pixel/255
// >= 0.5 (pixel >= 128) -> 1, else 0; None: pixel/255.0f; Dynamic: pixel k of
// image j = idx[i] is 1 iff u_k < pixel/255 (in double), u_k the k-th uniform
// in (0,1) of Philox{seed, (epoch << 32) + j * ceil(rows*cols/4)}, so the
// result depends on the image and the epoch, not on the batch it is in
// (epochs' streams stay apart while count * ceil(rows*cols/4) < 2^32).
// Throws std::out_of_range for an index outside [0, count).
Tensor gather_batch(const IdxImages& images, const int64_t* idx, int n, Binarize mode,
                    uint64_t seed = 0, uint64_t epoch = 0);

// A permutation of [0, n) for this (seed, epoch): Fisher-Yates driven by Philox
// (the exact draw order is documented in data.cpp; it never changes for a
// given (n, seed, epoch)).
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, uint64_t epoch);

// A dataset's images resident on the GPU as uint8 (MNIST's 60k train images
// are 47 MB), with the epoch's order beside them: a step's batch is gathered
// and binarized there by one kernel, with no host-to-device copy per step.
class DeviceImages {
 public:
  explicit DeviceImages(const IdxImages& images);  // one upload
  // The epoch's order of image indices (one upload per epoch).
  void set_order(const std::vector<int64_t>& order);
  // x [n,1,rows,cols] float32 on the GPU from order[start, start+n): the same
  // values gather_batch gives on the CPU, dynamic binarization included.
  Tensor batch(int64_t start, int n, Binarize mode, uint64_t seed, uint64_t epoch) const;
  // The batch at a cursor kept on the device (for a captured step, which gathers the next
  // batch at every replay): set_cursor uploads (position, epoch); batch_at_cursor gathers
  // order[position, position+n) with that epoch and moves the device's position by n.
  // start is where the caller's own count says the cursor is: checked against the order.
  void set_cursor(int64_t position, int64_t epoch);
  Tensor batch_at_cursor(int64_t start, int n, Binarize mode, uint64_t seed) const;

 private:
  std::shared_ptr<Storage> pixels_, order_, cursor_;
  int64_t cursor_upload_[2] = {0, 0};  // the upload's source (position, epoch)
  int64_t count_ = 0, order_len_ = 0;
  int rows_ = 0, cols_ = 0;
};

}  // namespace cvae
