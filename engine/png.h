// png.h: writing 8-bit grayscale PNG images (libpng), and laying a batch of
// images out as a grid, as the tutorial's image_at_epoch_NNNN.png.
#pragma once

#include <string>

#include "engine/tensor.h"

namespace cvae {

// Writes pixels [height, width] (values in [0,1], clamped; NaN -> 0) as an
// 8-bit grayscale PNG, byte = round(v * 255), atomically (a temporary file
// beside path, then rename; no temporary is left behind on failure). Throws
// WriteError("PATH: reason") when the file cannot be written.
void write_png_gray(const std::string& path, const float* pixels, int height, int width);

// Lays images [N,1,H,W] (float32 in [0,1]) out as a rows x cols grid, row-major,
// with `pad` pixels of border (value 1, white) between cells and around the
// edge, and writes it: the PNG is (rows*H + (rows+1)*pad) x (cols*W + (cols+1)*pad).
// Cells beyond N stay blank: black (0, the datasets' background). Images
// beyond rows*cols are not drawn. Throws std::runtime_error("PATH: reason").
void write_png_grid(const std::string& path, const Tensor& images, int rows, int cols, int pad = 2);

}  // namespace cvae
