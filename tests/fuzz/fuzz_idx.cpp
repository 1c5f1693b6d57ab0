// fuzz_idx.cpp: the IDX reader (raw or gzip) on arbitrary bytes, as images and
// as labels. A FormatError is the expected answer to garbage; anything else
// (a crash, a sanitizer report, another exception) is a finding. What parses
// must be self-consistent: count*rows*cols pixels, gatherable.
#include <cstdint>
#include <cstdlib>

#include "engine/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cvae;
  try {
    IdxImages im = parse_idx_images("input", data, size);
    if (im.pixels.size() != static_cast<size_t>(im.count) * im.rows * im.cols) std::abort();
    int64_t idx[2] = {0, im.count - 1};
    Tensor x = gather_batch(im, idx, 2, Binarize::Threshold);
    if (x.numel() != 2 * int64_t{im.rows} * im.cols) std::abort();
  } catch (const FormatError&) {
  }
  try {
    std::vector<uint8_t> labels = parse_idx_labels("input", data, size);
    if (labels.empty()) std::abort();
  } catch (const FormatError&) {
  }
  return 0;
}
