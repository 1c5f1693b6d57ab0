// output_file.cpp: see output_file.h.
#include "apps/output_file.h"

#include <cstdint>
#include <filesystem>
#include <fstream>

#include "apps/errors.h"
#include "apps/run.h"
#include "apps/run_dir.h"

namespace cvae::app {
namespace {

namespace fs = std::filesystem;

// A cvae checkpoint announces itself in its safetensors header's metadata: the
// header (length-prefixed, read up to 16 MiB) is enough to tell.
bool looks_like_checkpoint(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  unsigned char len[8] = {};
  if (!in.read(reinterpret_cast<char*>(len), 8)) return false;
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | len[i];
  if (n > (uint64_t{16} << 20)) return false;
  std::string header(static_cast<size_t>(n), '\0');
  in.read(header.data(), static_cast<std::streamsize>(n));
  return header.find(std::string("\"format\":\"") + kCheckpointFormat + "\"") != std::string::npos;
}

}  // namespace

void check_output_file(const std::string& path, bool force, const std::string& input_checkpoint) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::exists(p, ec)) {
    if (fs::is_directory(p, ec)) throw Refused(path + ": is a directory; --out takes a file name");
    if (fs::equivalent(p, input_checkpoint, ec) || looks_like_checkpoint(p) ||
        p.filename() == kCheckpointName)
      throw Refused(path + ": is a checkpoint; it is never overwritten (choose another --out)");
    if (!force) throw Refused(path + ": already exists; pass --force to replace it");
  }
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) throw Refused(path + ": the directory " + dir.string() + " does not exist");
  prepare_writable_dir(dir);
}

}  // namespace cvae::app
