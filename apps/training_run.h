// training_run.h: one training run as an object, the home of everything a run
// must get right: its locked directory, its stored options (a resumed run is
// the same run), the non-finite guard, the stop points for Ctrl-C and SIGTERM,
// and the order of writes that keeps the checkpoint and metrics.jsonl in step.
// train.cpp drives it: open or resume, then per epoch train_epoch, evaluate,
// finish_epoch; stop() when a signal asked for it, close() at the end.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "apps/commands.h"
#include "apps/run_dir.h"
#include "engine/device.h"
#include "engine/graph.h"
#include "engine/ops.h"

namespace cvae::app {

struct EpochEval {
  double elbo = 0, elbo_analytic = 0;  // VAEs
  double recon = 0;                    // autoencoders
  double seconds = 0;
};

class TrainingRun {
 public:
  // A new run in opt.out_dir: checks the directory (writable, not in use, not
  // holding a run), the data and the memory before it builds the model.
  static std::unique_ptr<TrainingRun> open(const TrainOptions& opt);
  // The run in opt.resume, with its stored options; refuses options that
  // differ (except --epochs, --data to the same dataset elsewhere, and those
  // that do not shape the run: --device, --on-nonfinite, --log-every, --max-memory).
  static std::unique_ptr<TrainingRun> resume(const TrainOptions& opt);
  ~TrainingRun();

  bool done() const;  // the run has trained its epochs
  // Trains the current epoch to its end; false when a stop was requested first.
  // Throws NonFiniteError (policy stop) on a non-finite loss or gradient.
  bool train_epoch();
  // The test set's ELBO for the epoch just trained; nothing when a stop was
  // requested. Throws NonFiniteError when it is not finite.
  std::optional<EpochEval> evaluate();
  // Ends the epoch: its checkpoint first (atomic: the record), then its
  // metrics line, sample image and the curve.
  void finish_epoch(const EpochEval& ev);
  // Writes the checkpoint where the run stands and says how to continue;
  // returns the exit code (128 + the signal).
  int stop();
  int close();  // the summary line; returns 0

 private:
  explicit TrainingRun(const TrainOptions& opt);
  void take_directory(const std::filesystem::path& dir);
  void check_resume_options(const Checkpoint& ck);
  void load_data(bool check_identity);
  void build(std::unique_ptr<Model> model, const Checkpoint* ck);
  void print_start(const char* verb);
  std::string continue_command(const std::string& extra = "") const;
  // What the guard's message says is left on disk, and how to go on (past
  // non-finite steps with skip, when skipping can help).
  std::string kept_checkpoint(bool suggest_skip) const;
  [[noreturn]] void nonfinite(const std::string& where, const std::string& what, bool suggest_skip = true) const;
  std::filesystem::path checkpoint_path() const { return dir_ / kCheckpointName; }

  TrainOptions opt_;
  std::filesystem::path dir_;
  std::unique_ptr<RunDirLock> lock_;
  RunState state_;
  bool made_dir_ = false;      // open() created the directory (removed again if the run leaves nothing)
  std::string checkpoint_at_;  // where the good checkpoint on disk stands ("" when there is none)
  int stored_epochs_ = 0;      // the epoch total that checkpoint holds
  Device device_ = Device::CPU;
  std::string device_note_;
  Dataset data_;
  std::unique_ptr<DeviceImages> train_on_device_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Adam> adam_;
  int64_t steps_ = 0, plain_every_ = 1, read_every_ = 1;
  int64_t epochs_this_session_ = 0;
  // What the GPU was given to do over the steps of the current epoch this session ran
  // (metrics.jsonl's per-step counts), and how many steps that was.
  CudaCounts epoch_counts_;
  int64_t epoch_counted_steps_ = 0;
  // The device-driven GPU step (train_epoch): the loss log, the noise stream and the graph.
  void device_step(int64_t start, int n, uint64_t bin_seed);
  std::unique_ptr<DeviceScalarLog> loss_log_;
  std::unique_ptr<DevicePhilox> device_noise_;
  std::unique_ptr<CudaGraph> graph_;
  int graph_warm_runs_ = 0;
};

}  // namespace cvae::app
