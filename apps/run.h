// run.h: what the subcommands of `cvae` share: a run's configuration, the
// checkpoint format (model + Adam state + RNG position + config, one
// safetensors file), the derived random streams, and the error for bad usage.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "engine/data.h"
#include "engine/optim.h"
#include "models/model.h"

namespace cvae::app {

// Bad arguments or a state the user must change: one line, exit code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunConfig {
  ModelConfig model;
  std::string data_dir;
  std::string dataset;  // the data directory's last component, e.g. "fashion-mnist"
  Binarize binarize = Binarize::Threshold;
  KlMode kl = KlMode::MonteCarlo;
  int batch_size = 32;
  double lr = 1e-4;
  uint64_t seed = 0;
};

// Where training stands: written into every checkpoint.
struct Progress {
  int64_t epoch = 0;          // completed epochs
  int64_t step = 0;           // optimizer steps so far
  int64_t step_in_epoch = 0;  // steps into the current epoch (nonzero after an interruption)
  uint64_t noise_offset = 0;  // the reparameterisation stream's Philox offset
};

// Independent Philox streams of one run, each from (seed, purpose).
enum class Stream : uint64_t { Init = 0, Noise = 1, Shuffle = 2, Binarize = 3, Samples = 4, Eval = 5 };
uint64_t stream_seed(uint64_t seed, Stream s);

struct Checkpoint {
  std::string path;
  RunConfig config;
  Progress progress;
  std::unique_ptr<Model> model;
  NamedTensors optimizer_state;  // "<param>.exp_avg" / ".exp_avg_sq", empty in exports
  int64_t adam_steps = 0;
};

// Atomic (temporary file, fsync, rename). Model tensors under their export
// names, Adam moments under "optim.", everything else in __metadata__.
void save_checkpoint(const std::string& path, const RunConfig& config, const Progress& progress,
                     Model& model, const Adam* adam);
// Throws FormatError ("FILE: fault") for anything malformed or not matching
// the model its config describes.
Checkpoint load_checkpoint(const std::string& path);
// Copies the checkpoint's optimizer state into adam (same parameter order).
void restore_optimizer(const Checkpoint& ck, Adam& adam);

// A checkpoint path from a run directory or a file.
std::string resolve_checkpoint(const std::string& dir_or_file);
constexpr const char* kCheckpointName = "checkpoint.safetensors";

// Loads the dataset, turning DataNotFound into the one-line message that
// names both fixes.
Dataset load_data_or_explain(const std::string& dir);

}  // namespace cvae::app
