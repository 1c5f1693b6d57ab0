// safetensors.h: read and write the safetensors format (an 8-byte little-endian
// header length, a JSON header of {name: {dtype, shape, data_offsets}} plus an
// optional "__metadata__" string map, then the raw little-endian bytes).
// Used for checkpoints, exports and the PyTorch test fixtures.
#pragma once

#include <map>
#include <string>

#include "engine/errors.h"
#include "engine/nn.h"

namespace cvae {

struct SafeTensors {
  NamedTensors tensors;  // in file order; F32 and F64 become CPU tensors of that dtype
  std::map<std::string, std::string> metadata;
  const Tensor& at(const std::string& name) const;  // throws FormatError when absent
};

// Throws FormatError on any fault (bad header length, bad JSON, unknown dtype,
// offsets outside the file or overlapping, truncation).
SafeTensors load_safetensors(const std::string& path);
// The same checks over bytes already in memory; `path` names them in errors.
SafeTensors parse_safetensors(const std::string& path, const char* bytes, size_t size);

// Writes atomically: a temporary file beside `path`, fsync, rename. A failure
// throws WriteError and leaves what was at `path` untouched.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace cvae
