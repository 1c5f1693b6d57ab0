// output_file.h: the check every command that writes one file (sample,
// reconstruct, interpolate, manifold, export) makes before doing any work:
// never a checkpoint, never an existing file without --force, and a directory
// that exists and takes new files.
#pragma once

#include <string>

namespace cvae::app {

// Throws Refused when `path` is a checkpoint (the input one, or any cvae
// checkpoint: never overwritten, --force or not), a directory, an existing
// file while !force, or in a directory that is missing or not writable.
void check_output_file(const std::string& path, bool force, const std::string& input_checkpoint);

}  // namespace cvae::app
