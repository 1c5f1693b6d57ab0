// safetensors.cpp: a validating reader and an atomic writer. The reader trusts
// nothing in the file: header length, JSON, dtypes, shapes and offsets are all
// checked against the file's real size before a byte is copied.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

namespace cvae {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw FormatError(path + ": " + what);
}

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Parses one tensor entry and copies its bytes out of the data section.
Tensor parse_entry(const std::string& path, const std::string& name, const json& e,
                   const char* data, uint64_t data_size) {
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
    fail(path, "tensor '" + name + "' lacks dtype, shape or data_offsets");
  const json& dt = e["dtype"];
  if (!dt.is_string()) fail(path, "tensor '" + name + "' has a non-string dtype");
  DType dtype;
  if (dt == "F32") dtype = DType::F32;
  else if (dt == "F64") dtype = DType::F64;
  else fail(path, "tensor '" + name + "' has unsupported dtype " + dt.dump());
  Shape shape;
  if (!e["shape"].is_array()) fail(path, "tensor '" + name + "' has a non-array shape");
  // The byte count is worked out before anything is allocated, without
  // overflow: a header may claim any shape, the file holds what it holds.
  uint64_t bytes = dtype_size(dtype);
  bool too_big = false;
  for (const json& d : e["shape"]) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 31))
      fail(path, "tensor '" + name + "' has a bad dimension " + d.dump());
    const uint64_t n = d.get<uint64_t>();
    shape.push_back(static_cast<int64_t>(n));
    if (n != 0 && bytes > data_size / n) too_big = true;  // more than the data section: refused below
    else bytes *= n;
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
      !off[1].is_number_unsigned())
    fail(path, "tensor '" + name + "' has malformed data_offsets");
  uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (begin > end || end > data_size)
    fail(path, "tensor '" + name + "' has offsets [" + std::to_string(begin) + "," +
                   std::to_string(end) + ") outside the " + std::to_string(data_size) +
                   "-byte data section (truncated file?)");
  if (too_big || end - begin != bytes)
    fail(path, "tensor '" + name + "' holds " + std::to_string(end - begin) + " bytes, shape " +
                   shape_str(shape) + " needs " +
                   (too_big ? "more than the " + std::to_string(data_size) + "-byte data section" : std::to_string(bytes)));
  Tensor t = Tensor::empty(shape, dtype);
  std::memcpy(t.raw(), data + begin, t.nbytes());  // little-endian host assumed (x86, arm64)
  return t;
}

}  // namespace

const Tensor& SafeTensors::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  throw FormatError("no tensor named '" + name + "'");
}

SafeTensors load_safetensors(const std::string& path) {
  std::vector<char> bytes = read_all(path);
  return parse_safetensors(path, bytes.data(), bytes.size());
}

SafeTensors parse_safetensors(const std::string& path, const char* bytes, size_t size) {
  if (size < 8) fail(path, "too short for a safetensors header (" + std::to_string(size) + " bytes)");
  uint64_t header_len = read_u64_le(bytes);
  if (header_len > size - 8)
    fail(path, "header length " + std::to_string(header_len) + " exceeds the file size " +
                   std::to_string(size));
  json header = json::parse(bytes + 8, bytes + 8 + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) fail(path, "header is not a JSON object");
  const char* data = bytes + 8 + header_len;
  uint64_t data_size = size - 8 - header_len;
  SafeTensors out;
  // Order tensors by their offsets: the file order, stable across writers.
  std::vector<std::pair<uint64_t, std::string>> order;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it.value().is_object()) fail(path, "__metadata__ is not an object");
      for (auto m = it.value().begin(); m != it.value().end(); ++m) {
        if (!m.value().is_string()) fail(path, "__metadata__ value '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    Tensor t = parse_entry(path, it.key(), it.value(), data, data_size);
    order.emplace_back(it.value()["data_offsets"][0].get<uint64_t>(), it.key());
    out.tensors.emplace_back(it.key(), t);
  }
  std::vector<std::pair<uint64_t, size_t>> idx;
  for (size_t i = 0; i < order.size(); ++i) idx.emplace_back(order[i].first, i);
  std::sort(idx.begin(), idx.end());
  NamedTensors sorted;
  uint64_t prev_end = 0;
  for (auto& [offset, i] : idx) {
    if (offset < prev_end) fail(path, "tensor '" + order[i].second + "' overlaps the previous one");
    prev_end = offset + out.tensors[i].second.nbytes();
    sorted.push_back(out.tensors[i]);
  }
  out.tensors = std::move(sorted);
  return out;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__" || header.contains(name))
      throw std::invalid_argument("save_safetensors: duplicate or reserved name '" + name + "'");
    header[name] = {{"dtype", t.dtype() == DType::F32 ? "F32" : "F64"},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // pad so the data section is 8-byte aligned
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw WriteError(path + ": cannot create a temporary file beside it (" + std::strerror(errno) + ")");
  auto write_all = [&](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n > 0) {
      ssize_t w = ::write(fd, c, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        std::string err = std::strerror(errno);
        ::close(fd);
        ::unlink(tmp.c_str());
        throw WriteError(path + ": write failed (" + err + ")");
      }
      c += w;
      n -= static_cast<size_t>(w);
    }
  };
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((h.size() >> (8 * i)) & 0xff);
  write_all(len, 8);
  write_all(h.data(), h.size());
  for (const auto& [name, t] : tensors) {
    Tensor host = t.device() == Device::CPU ? t : t.to_device(Device::CPU);  // waits for the GPU
    write_all(host.raw(), host.nbytes());
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw WriteError(path + ": fsync/close failed (" + std::strerror(errno) + ")");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw WriteError(path + ": rename failed (" + err + ")");
  }
}

}  // namespace cvae
