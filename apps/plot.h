// plot.h: the training curve (test ELBO per epoch, or the reconstruction loss
// for autoencoders) drawn from metrics.jsonl as a small standalone SVG.
#pragma once

#include <filesystem>

namespace cvae::app {

// Reads every line of metrics_jsonl and writes the curve to svg (atomically).
// Throws std::runtime_error naming the file if it cannot be read, WriteError
// if the curve cannot be written.
void write_training_curve(const std::filesystem::path& metrics_jsonl,
                          const std::filesystem::path& svg);

}  // namespace cvae::app
