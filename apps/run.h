// run.h: what the subcommands of `cvae` share: a run's options (everything
// that shapes it, stored in its checkpoint so that a resumed run is the same
// run), where it stands, the checkpoint format (model + Adam state + RNG
// position + options, one safetensors file), the derived random streams, and
// the ranges every numeric option is held to (the command line and the
// checkpoint reader use the same ones).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "apps/errors.h"
#include "engine/data.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "models/model.h"

namespace cvae::app {

// What a training run does with a step whose loss or gradients are NaN or Inf.
enum class NonFinitePolicy { Stop, Skip };
NonFinitePolicy parse_nonfinite_policy(const std::string& s);  // "stop" | "skip"
const char* policy_name(NonFinitePolicy p);

// The ranges of the numeric options, for the command line and the checkpoint reader.
namespace range {
constexpr int kLatentMax = 4096;
constexpr int kBatchMax = 1000000;
constexpr int kEpochsMax = 100000;
constexpr double kLrMax = 1.0;             // Adam steps move each weight by about lr
constexpr int64_t kImagesMax = 100000000;  // as the IDX reader
}  // namespace range

// The dataset a run trains on, known by its content: a resumed run given
// --data elsewhere must find the same images there.
struct DataIdentity {
  int64_t train_images = 0, test_images = 0;
  uint32_t checksum = 0;  // dataset_checksum()
};

struct RunConfig {
  ModelConfig model;
  std::string data_dir;  // absolute
  std::string dataset;   // the data directory's last component, e.g. "fashion-mnist"
  DataIdentity data;
  int64_t limit_train = 0;  // the first N training images only (0: all)
  int64_t limit_test = 0;   // the first N test images only (0: all)
  Binarize binarize = Binarize::Threshold;
  KlMode kl = KlMode::MonteCarlo;
  int batch_size = 32;
  double lr = 1e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-7;  // Adam, Keras' defaults (the tutorial's)
  uint64_t seed = 0;
  int epochs = 3;  // the total to train; a resume may raise it
  NonFinitePolicy on_nonfinite = NonFinitePolicy::Stop;
};
AdamOptions adam_options(const RunConfig& c);

// The current epoch's running sums, so that an epoch cut by a stop and
// resumed reports what an uninterrupted one would.
struct EpochSoFar {
  double loss_sum = 0;     // of the training losses of the steps taken
  int64_t loss_count = 0;  // steps taken (not skipped)
  int64_t images = 0;      // images of those steps
  int64_t skipped = 0;     // steps skipped as non-finite
  double seconds = 0;      // training time so far
};

// Where training stands.
struct Progress {
  int64_t epoch = 0;          // completed epochs (trained, evaluated, checkpointed)
  int64_t step = 0;           // batches so far, skipped ones included
  int64_t step_in_epoch = 0;  // batches into the current epoch (all of them: trained, not evaluated)
  uint64_t noise_offset = 0;  // the reparameterisation stream's Philox offset
  int64_t skipped_steps = 0;  // non-finite steps skipped, in the whole run
  EpochSoFar so_far;
};

// Everything in a checkpoint besides tensors (its __metadata__).
struct RunState {
  static constexpr int kFormatVersion = 2;
  RunConfig config;
  Progress progress;
  int64_t adam_steps = 0;
  std::string metrics_line;  // metrics.jsonl's line for progress.epoch ("" before epoch 1)
  int format_version = kFormatVersion;
  std::string at() const;  // "epoch 1, step 6"
};
constexpr const char* kCheckpointFormat = "cvae-checkpoint";
constexpr const char* kCheckpointName = "checkpoint.safetensors";

// The metadata map of a checkpoint, and back. parse_run_state throws
// FormatError ("PATH: fault") for anything missing, mistyped or out of range.
std::map<std::string, std::string> run_metadata(const RunState& s);
RunState parse_run_state(const std::map<std::string, std::string>& metadata, const std::string& path);

// Independent Philox streams of one run, each from (seed, purpose).
enum class Stream : uint64_t { Init = 0, Noise = 1, Shuffle = 2, Binarize = 3, Samples = 4, Eval = 5 };
uint64_t stream_seed(uint64_t seed, Stream s);

struct Checkpoint : RunState {
  std::string path;
  std::unique_ptr<Model> model;
  NamedTensors optimizer_state;  // "<param>.exp_avg" / ".exp_avg_sq"
};

// Atomic (temporary file, fsync, rename). Model tensors under their export
// names, Adam moments under "optim.", the RunState in __metadata__ (its
// adam_steps taken from adam). Throws NonFiniteError, writing nothing, when a
// tensor holds NaN or Inf; WriteError when the file cannot be written.
void save_checkpoint(const std::string& path, const RunState& state, Model& model, const Adam* adam);
// Throws FormatError ("FILE: fault") for anything malformed, not matching the
// model its config describes, or not finite (naming the tensor).
Checkpoint load_checkpoint(const std::string& path);
Checkpoint checkpoint_from(const SafeTensors& st, const std::string& path);
// Copies the checkpoint's optimizer state into adam (same parameter order).
void restore_optimizer(const Checkpoint& ck, Adam& adam);

// A checkpoint path from a run directory or a file.
std::string resolve_checkpoint(const std::string& dir_or_file);

// Loads the dataset, turning DataNotFound into the one-line message that
// names both fixes.
Dataset load_data_or_explain(const std::string& dir);

}  // namespace cvae::app
