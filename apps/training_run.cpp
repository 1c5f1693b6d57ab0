// training_run.cpp: the run object (see training_run.h). Every random stream
// is keyed by (seed, epoch) and the checkpoint records where the noise stream
// and the epoch's sums stand, so a resumed run repeats an uninterrupted one
// bit for bit.
#include "apps/training_run.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>

#include "apps/failpoint.h"
#include "apps/memory.h"
#include "apps/plot.h"
#include "apps/progress.h"
#include "apps/signals.h"
#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/finite.h"
#include "engine/graph.h"
#include "engine/ops.h"
#include "engine/png.h"
#include "models/vae.h"

namespace cvae::app {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Keeps only the first `limit` images (0: all).
void limit_images(IdxImages& images, std::vector<uint8_t>& labels, int64_t limit) {
  if (limit <= 0 || limit >= images.count) return;
  images.count = limit;
  images.pixels.resize(static_cast<size_t>(limit) * images.rows * images.cols);
  labels.resize(static_cast<size_t>(limit));
}

// Single-quoted for the shell when it holds anything but safe characters.
std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+=./:,@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

std::string image_name(int64_t epoch) {
  char name[64];
  std::snprintf(name, sizeof name, "image_at_epoch_%04lld.png", static_cast<long long>(epoch));
  return name;
}

Device model_device(Model& model) { return model.parameters().at(0).device(); }

// The test set binarized the same way every epoch (dynamic: one fixed draw).
Tensor test_batch(const IdxImages& test, const int64_t* idx, int n, const RunConfig& c, Device d) {
  return gather_batch(test, idx, n, c.binarize, stream_seed(c.seed, Stream::Binarize) + 1, 0).to_device(d);
}

// The tutorial's image_at_epoch_NNNN.png: decoded fixed latents for VAEs,
// reconstructions of the first test images for autoencoders.
void write_epoch_image(Model& model, const IdxImages& test, const RunConfig& c, const fs::path& dir, int64_t epoch) {
  NoGradGuard no_grad;
  Tensor images;
  if (model.is_vae()) {
    Philox rng{stream_seed(c.seed, Stream::Samples), 0};
    images = model.decode_images(randn({16, model.latent_dim()}, rng, DType::F32, model_device(model)));
  } else {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(16, test.count); ++i) idx.push_back(i);
    images = model.reconstruct(test_batch(test, idx.data(), int(idx.size()), c, model_device(model)));
  }
  write_png_grid((dir / image_name(epoch)).string(), images, 4, 4);
}

// The options that shape a run, as the checkpoint and the command line hold
// them (doubles in their shortest exact form, so equal text is equal value).
struct Shaping {
  const char* option;
  std::function<std::string(const RunConfig&)> value;
};
const std::vector<Shaping>& shaping_options() {
  static const std::vector<Shaping> k = {
      {"model", [](const RunConfig& c) { return c.model.kind; }},
      {"latent-dim", [](const RunConfig& c) { return std::to_string(c.model.latent_dim); }},
      {"recon", [](const RunConfig& c) { return std::string(recon_name(c.model.recon)); }},
      {"batch-size", [](const RunConfig& c) { return std::to_string(c.batch_size); }},
      {"lr", [](const RunConfig& c) { return json(c.lr).dump(); }},
      {"seed", [](const RunConfig& c) { return std::to_string(c.seed); }},
      {"kl", [](const RunConfig& c) { return std::string(kl_name(c.kl)); }},
      {"binarize", [](const RunConfig& c) { return std::string(binarize_name(c.binarize)); }},
      {"limit-train", [](const RunConfig& c) { return std::to_string(c.limit_train); }},
      {"limit-test", [](const RunConfig& c) { return std::to_string(c.limit_test); }},
  };
  return k;
}

// The data directory as the checkpoint stores it: absolute, and text that
// JSON can hold (a Linux path may be any bytes; found when a run with such a
// path trained an epoch and then failed to write its checkpoint).
std::string stored_data_dir(const std::string& given) {
  std::string dir = fs::absolute(given).lexically_normal().string();
  try {
    (void)json(dir).dump();
  } catch (const json::type_error&) {
    throw UsageError("--data " + json(given).dump(-1, ' ', true, json::error_handler_t::replace) +
                     ": the path is not valid UTF-8, and a run stores it in its checkpoint; rename the "
                     "directory or point --data at a link with a UTF-8 name");
  }
  return dir;
}

std::string identity_text(const DataIdentity& d) {
  char sum[16];
  std::snprintf(sum, sizeof sum, "%08x", d.checksum);
  return std::to_string(d.train_images) + " train / " + std::to_string(d.test_images) + " test images, checksum " + sum;
}

}  // namespace

TrainingRun::TrainingRun(const TrainOptions& opt) : opt_(opt) {
  try {
    device_ = resolve_device(opt.device, &device_note_);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
}

// A new run that wrote nothing (refused, or stopped by a NaN in its first
// epoch) leaves no directory behind that would look like a run.
TrainingRun::~TrainingRun() {
  if (!made_dir_ || fs::exists(checkpoint_path())) return;
  lock_.reset();
  std::error_code ec;
  fs::remove(dir_ / ".cvae.lock", ec);
  fs::remove(dir_, ec);  // only when empty
}

// Locks dir for this process after checking that it takes files: nothing is
// computed before a run knows it can write its results.
void TrainingRun::take_directory(const fs::path& dir) {
  dir_ = fs::absolute(dir).lexically_normal();
  prepare_writable_dir(dir_);
  lock_ = std::make_unique<RunDirLock>(dir_);
  remove_stale_temporaries(dir_);
}

std::unique_ptr<TrainingRun> TrainingRun::open(const TrainOptions& opt) {
  std::unique_ptr<TrainingRun> run(new TrainingRun(opt));
  RunConfig& c = run->state_.config;
  c = opt.config;
  const fs::path dir = opt.out_dir.empty() ? fs::path("runs") / c.model.kind : fs::path(opt.out_dir);
  run->made_dir_ = !fs::exists(dir);
  run->take_directory(dir);
  if (fs::exists(run->checkpoint_path()) || fs::exists(run->dir_ / "metrics.jsonl"))
    throw Refused(run->dir_.string() + " already holds a run; continue it with: " + run->continue_command() +
                  " (or choose another --out)");
  c.data_dir = stored_data_dir(c.data_dir);
  fs::path d = fs::path(c.data_dir);
  c.dataset = (d.filename().empty() ? d.parent_path() : d).filename().string();
  run->load_data(false);
  run->build(make_model(c.model, stream_seed(c.seed, Stream::Init)), nullptr);
  run->print_start("training");
  return run;
}

std::unique_ptr<TrainingRun> TrainingRun::resume(const TrainOptions& opt) {
  std::unique_ptr<TrainingRun> run(new TrainingRun(opt));
  // A run directory, or the checkpoint.safetensors in one: the run continues
  // where it lives, so no other directory's checkpoint is ever written.
  fs::path dir = opt.resume;
  std::error_code ec;
  if (!fs::exists(dir, ec)) throw UsageError(opt.resume + ": no such run directory");
  if (!fs::is_directory(dir, ec)) {
    if (dir.filename() != kCheckpointName)
      throw UsageError("--resume takes a run directory (or its " + std::string(kCheckpointName) + "), not " +
                       opt.resume + "; to continue from a copy, put it in a directory of its own as " +
                       kCheckpointName);
    dir = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  }
  if (!opt.out_dir.empty() && !fs::equivalent(opt.out_dir, dir, ec))
    throw UsageError("--out " + opt.out_dir + " is not the resumed run's directory " + dir.string() +
                     ": a resumed run continues in its own directory");
  run->take_directory(dir);  // first: a run still starting there holds the lock, not yet a checkpoint
  if (!fs::exists(dir / kCheckpointName)) throw UsageError(opt.resume + ": holds no " + std::string(kCheckpointName));
  Checkpoint ck = load_checkpoint(run->checkpoint_path().string());
  if (ck.format_version < 2)
    throw Refused(ck.path + " was written by an older cvae that did not record every option of its run; "
                  "it can be evaluated and sampled, not resumed (start a new run)");
  run->checkpoint_at_ = ck.at();
  run->stored_epochs_ = ck.config.epochs;
  run->check_resume_options(ck);
  RunConfig& c = run->state_.config;
  run->state_ = static_cast<const RunState&>(ck);
  if (opt.given.count("epochs")) c.epochs = opt.config.epochs;
  if (opt.given.count("on-nonfinite")) c.on_nonfinite = opt.config.on_nonfinite;
  if (run->done()) return run;  // close() says so; nothing to load
  if (opt.given.count("data")) c.data_dir = stored_data_dir(opt.config.data_dir);
  run->load_data(true);
  run->build(std::move(ck.model), &ck);
  // The checkpoint is the record: metrics.jsonl gets exactly its epochs, and
  // what a kill between the checkpoint and the epoch's other files left out
  // is written now.
  const Progress& p = run->state_.progress;
  reconcile_metrics(run->dir_ / "metrics.jsonl", p.epoch, run->state_.metrics_line);
  if (p.epoch >= 1 && p.step_in_epoch == 0 && !fs::exists(run->dir_ / image_name(p.epoch)))
    write_epoch_image(*run->model_, run->data_.test, c, run->dir_, p.epoch);
  if (fs::exists(run->dir_ / "metrics.jsonl"))
    write_training_curve(run->dir_ / "metrics.jsonl", run->dir_ / "training_curve.svg");
  std::printf("resuming %s at epoch %lld, step %lld\n", run->checkpoint_path().c_str(),
              static_cast<long long>(p.epoch), static_cast<long long>(p.step));
  run->print_start("continuing");
  return run;
}

// Options given with --resume must be the run's own, but for those that may change.
void TrainingRun::check_resume_options(const Checkpoint& ck) {
  for (const Shaping& s : shaping_options()) {
    if (!opt_.given.count(s.option)) continue;
    std::string mine = s.value(ck.config), given = s.value(opt_.config);
    if (mine != given)
      throw UsageError("--" + std::string(s.option) + " " + given + " differs from this run's " + mine +
                       ": a resumed run keeps the options it started with (only --epochs, --data to the same "
                       "dataset, --device, --on-nonfinite, --log-every and --max-memory may be given); "
                       "start a new run in another --out to change it");
  }
  if (opt_.given.count("epochs") && opt_.config.epochs < ck.progress.epoch)
    throw UsageError("--epochs " + std::to_string(opt_.config.epochs) + " is below the " +
                     std::to_string(ck.progress.epoch) + " epochs this run has already trained");
}

// Loads the dataset (a resumed run: the one it trained on, by content), applies
// the limits and checks the memory before anything of the run is allocated.
void TrainingRun::load_data(bool check_identity) {
  RunConfig& c = state_.config;
  data_ = load_data_or_explain(c.data_dir);
  DataIdentity found{data_.train.count, data_.test.count, dataset_checksum(data_)};
  if (!check_identity) {
    c.data = found;
  } else if (found.train_images != c.data.train_images || found.test_images != c.data.test_images ||
             found.checksum != c.data.checksum) {
    throw Refused(c.data_dir + " holds a different dataset (" + identity_text(found) +
                  ") from the one this run trained on (" + identity_text(c.data) +
                  "); pass --data with the directory that holds it");
  }
  limit_images(data_.train, data_.train_labels, c.limit_train);
  limit_images(data_.test, data_.test_labels, c.limit_test);
  const int64_t ntrain = data_.train.count, B = c.batch_size;
  steps_ = (ntrain + B - 1) / B;  // the last partial batch is kept
  int64_t data_bytes = static_cast<int64_t>(data_.train.pixels.size() + data_.test.pixels.size() +
                                            data_.train_labels.size() + data_.test_labels.size());
  MemoryEstimate need = estimate_training_memory(c, std::min(B, ntrain), std::min<int64_t>(500, data_.test.count),
                                                 data_bytes);
  MemoryBudget budget = available_memory(device_ == Device::CUDA);
  if (opt_.max_memory > 0) budget = {opt_.max_memory, "allowed by --max-memory"};
  check_memory(need, budget);
}

// The model on its device, Adam (restored from ck), the training set on the
// GPU, and how often progress is shown and the loss read back.
void TrainingRun::build(std::unique_ptr<Model> model, const Checkpoint* ck) {
  model_ = std::move(model);
  model_->to_device(device_);
  adam_ = std::make_unique<Adam>(model_->named_parameters(), adam_options(state_.config));
  if (ck) restore_optimizer(*ck, *adam_);
  if (device_ == Device::CUDA) train_on_device_ = std::make_unique<DeviceImages>(data_.train);
  plain_every_ = opt_.log_every > 0 ? opt_.log_every : std::max<int64_t>(1, steps_ / 10);
  // The loss comes back to the host only every read_every steps on the GPU (a
  // read is a synchronisation); on the CPU it is free, so every step.
  read_every_ = device_ == Device::CUDA ? std::min<int64_t>(plain_every_, 50) : 1;
}

void TrainingRun::print_start(const char* verb) {
  const RunConfig& c = state_.config;
  std::printf("%s %s (latent %d) on %s: %lld train / %lld test images, batch %d, Adam lr %g, KL %s, "
              "binarization %s, %s, %d epochs -> %s\n",
              verb, c.model.kind.c_str(), model_->latent_dim(), c.data_dir.c_str(),
              static_cast<long long>(data_.train.count), static_cast<long long>(data_.test.count), c.batch_size,
              c.lr, kl_name(c.kl), binarize_name(c.binarize), device_note_.c_str(), c.epochs, dir_.c_str());
  std::fflush(stdout);
}

bool TrainingRun::done() const { return state_.progress.epoch >= state_.config.epochs; }

// What continues this run from the checkpoint on disk: everything is stored
// there but an --epochs given to this session that it has not recorded yet.
std::string TrainingRun::continue_command(const std::string& extra) const {
  std::string epochs = !checkpoint_at_.empty() && state_.config.epochs != stored_epochs_
                           ? " --epochs " + std::to_string(state_.config.epochs)
                           : "";
  return shell_quote(opt_.program) + " train --resume " + shell_quote(dir_.string()) + epochs + extra;
}

std::string TrainingRun::kept_checkpoint(bool suggest_skip) const {
  if (checkpoint_at_.empty())
    return "no checkpoint was written yet (this is the run's first epoch): start again with a lower --lr";
  std::string kept = "the last good checkpoint " + checkpoint_path().string() + " (" + checkpoint_at_ + ") is kept";
  if (!suggest_skip || state_.config.on_nonfinite == NonFinitePolicy::Skip) return kept;
  return kept + "; continue past such steps with: " + continue_command(" --on-nonfinite skip");
}

void TrainingRun::nonfinite(const std::string& where, const std::string& what, bool suggest_skip) const {
  throw NonFiniteError("training stopped at " + where + ": " + what + "; " + kept_checkpoint(suggest_skip));
}

bool TrainingRun::train_epoch() {
  const RunConfig& c = state_.config;
  Progress& p = state_.progress;
  EpochSoFar& so = p.so_far;
  const int64_t epoch = p.epoch, ntrain = data_.train.count, B = c.batch_size;
  std::vector<int64_t> order = shuffled_indices(ntrain, stream_seed(c.seed, Stream::Shuffle), uint64_t(epoch));
  Philox noise{stream_seed(c.seed, Stream::Noise), p.step_in_epoch > 0 ? p.noise_offset : uint64_t(epoch) << 40};
  char label[48];
  std::snprintf(label, sizeof label, "epoch %lld/%d", static_cast<long long>(epoch + 1), c.epochs);
  ProgressBar bar(label, steps_, p.step_in_epoch, plain_every_);
  if (train_on_device_) train_on_device_->set_order(order);
  // "epoch 2, step 7 (1 of 6 in the epoch)" for the s-th step of this epoch.
  auto where = [&](int64_t s) {
    return "epoch " + std::to_string(epoch + 1) + ", step " + std::to_string(p.step - (p.step_in_epoch - s)) + " (" +
           std::to_string(s) + " of " + std::to_string(steps_) + " in the epoch)";
  };
  // The guard. On the CPU, and with --on-nonfinite skip, each step's loss and
  // gradients are checked before the update (on the GPU that costs one
  // synchronisation per step). Otherwise the GPU sums the losses where they
  // are and the sum is checked when it is read back: a NaN in a gradient
  // makes the next loss NaN, and the exact step is found among the kept ones.
  const bool check_each_step = device_ == Device::CPU || c.on_nonfinite == NonFinitePolicy::Skip;
  // On the GPU, a VAE's steps are driven from device memory (unless each step is checked
  // or a test's failpoint is armed): the batch position, the noise offset and Adam's step
  // are read and advanced there, the loss goes to a log on the device, and every full
  // batch replays one CUDA graph of the whole step (--no-graph: the same step eagerly).
  auto* vae = dynamic_cast<VAE*>(model_.get());
  const bool device_driven =
      device_ == Device::CUDA && !check_each_step && vae && train_on_device_ && !std::getenv("CVAE_FAILPOINT");
  std::vector<int64_t> unread_steps;  // device-driven: the steps whose losses are in the log unread
  if (device_driven) {
    if (!loss_log_) loss_log_ = std::make_unique<DeviceScalarLog>(std::max<int64_t>(64, read_every_));
    if (!device_noise_) device_noise_ = std::make_unique<DevicePhilox>(stream_seed(c.seed, Stream::Noise));
    train_on_device_->set_cursor(p.step_in_epoch * B, epoch);  // in place: a graph's pointers stay valid
    device_noise_->set_offset(noise.offset);
  }
  Tensor device_sum = Tensor::zeros({}, DType::F32, device_);
  std::vector<std::pair<int64_t, Tensor>> unread;  // (step, loss) since the last read, GPU only
  auto read_back = [&] {
    if (device_driven) {
      const std::vector<float> losses = loss_log_->read_unread();  // the only host read of the GPU loop
      for (size_t i = 0; i < losses.size(); ++i) {
        if (!std::isfinite(losses[i])) {
          std::string what = "the loss is " + nonfinite_name(losses[i]);
          if (auto bad = first_nonfinite(model_->named_parameters())) what += " (now the parameter " + bad->describe() + ")";
          nonfinite(where(unread_steps[i]), what);
        }
        so.loss_sum += losses[i];
      }
      unread_steps.clear();
      return;
    }
    if (unread.empty()) return;
    const double sum = device_sum.item();  // the only host read of the GPU loop
    if (!std::isfinite(sum)) {
      for (auto& [s, loss] : unread) {
        const double v = loss.item();
        if (std::isfinite(v)) continue;
        std::string what = "the loss is " + nonfinite_name(v);
        if (auto bad = first_nonfinite(model_->named_parameters())) what += " (now the parameter " + bad->describe() + ")";
        nonfinite(where(s), what);
      }
    }
    so.loss_sum += sum;
    device_sum.fill_(0.0);  // a kernel, not a memset: a step's stream work stays kernels only
    unread.clear();
  };
  // The tests' hooks between backward and the update (failpoint.h).
  auto after_backward = [&] {
    failpoint("train-step");
    if (failpoint_nan("gradient")) adam_->params().at(0).second.grad().fill_(std::nan(""));
  };
  const auto t0 = Clock::now();
  const double seconds_before = so.seconds;
  int64_t images_unreported = 0;
  const int64_t first_step = p.step_in_epoch;
  const CudaCounts counts_before = cuda_counts();
  for (int64_t s = p.step_in_epoch; s < steps_; ++s) {
    if (stop_requested()) break;  // the safe point: between steps
    const int n = static_cast<int>(std::min(B, ntrain - s * B));
    const uint64_t bin_seed = stream_seed(c.seed, Stream::Binarize);
    if (device_driven) {
      device_step(s * B, n, bin_seed);
      noise.offset += (int64_t(n) * vae->latent_dim() + 3) / 4;  // as the device's draw: Philox blocks of 4
      ++p.step;
      p.step_in_epoch = s + 1;
      p.noise_offset = noise.offset;
      ++so.loss_count;
      so.images += n;
      unread_steps.push_back(s + 1);
      images_unreported += n;
      if ((s + 1) % read_every_ == 0 || s + 1 == steps_ || stop_requested()) {
        read_back();
        bar.update(s + 1, images_unreported, so.loss_count ? so.loss_sum / double(so.loss_count) : 0.0);
        images_unreported = 0;
      }
      continue;
    }
    Tensor x = train_on_device_ ? train_on_device_->batch(s * B, n, c.binarize, bin_seed, uint64_t(epoch))
                                : gather_batch(data_.train, order.data() + s * B, n, c.binarize, bin_seed, uint64_t(epoch));
    adam_->zero_grad();
    Tensor loss = model_->loss_backward(x, noise, c.kl);
    std::string bad;
    double value = 0;
    if (check_each_step) {
      value = loss.item();
      if (!std::isfinite(value)) {
        bad = "the loss is " + nonfinite_name(value);  // its gradients are not applied
      } else {
        after_backward();
        if (auto g = first_nonfinite_grad(adam_->params())) bad = "the gradient of " + g->describe();
      }
    } else {
      after_backward();
    }
    ++p.step;
    p.step_in_epoch = s + 1;
    p.noise_offset = noise.offset;
    if (!bad.empty()) {
      if (c.on_nonfinite == NonFinitePolicy::Stop) nonfinite(where(s + 1), bad);
      ++so.skipped;
      ++p.skipped_steps;
      std::printf("skipped %s: %s\n", where(s + 1).c_str(), bad.c_str());
    } else {
      adam_->step();
      ++so.loss_count;
      so.images += n;
      if (check_each_step) {
        so.loss_sum += value;
      } else {
        NoGradGuard no_grad;
        device_sum = add(device_sum, loss.detach());
        unread.emplace_back(s + 1, loss.detach());
      }
    }
    images_unreported += n;
    if ((s + 1) % read_every_ == 0 || s + 1 == steps_ || stop_requested()) {
      read_back();
      bar.update(s + 1, images_unreported, so.loss_count ? so.loss_sum / double(so.loss_count) : 0.0);
      images_unreported = 0;
    }
  }
  read_back();
  epoch_counts_ = cuda_counts() - counts_before;
  epoch_counted_steps_ = p.step_in_epoch - first_step;
  bar.finish();
  so.seconds = seconds_before + seconds_since(t0);
  if (p.step_in_epoch < steps_) return false;
  if (so.skipped == steps_)
    nonfinite("epoch " + std::to_string(epoch + 1),
              "every one of its " + std::to_string(steps_) + " steps was skipped as non-finite", false);
  return true;
}

// One device-driven step of a VAE (train_epoch): batch at the device's cursor, noise at
// the device's offset, loss, backward, Adam, the loss logged on the device. A full batch
// replays the step's CUDA graph: the first two full batches of a session run it eagerly in
// the graph's memory pool (which fills the pool: the first step also makes the gradient
// buffers, so only the second allocates as every later one), the third captures it and
// replays it. The
// last, partial batch of an epoch (another shape) and --no-graph run it eagerly.
void TrainingRun::device_step(int64_t start, int n, uint64_t bin_seed) {
  const RunConfig& c = state_.config;
  auto& vae = dynamic_cast<VAE&>(*model_);
  auto body = [&, start, n] {
    Tensor x = train_on_device_->batch_at_cursor(start, n, c.binarize, bin_seed);
    Tensor eps = device_noise_->randn({n, vae.latent_dim()});
    Tensor loss = vae_loss(vae, x, eps, c.kl);
    adam_->zero_grad();
    loss.backward();
    adam_->step();
    loss_log_->append(loss.detach());
  };
  if (opt_.no_graph || n != c.batch_size) return body();
  if (!graph_) graph_ = std::make_unique<CudaGraph>();
  if (graph_warm_runs_ < 2) {
    ++graph_warm_runs_;
    return graph_->run_in_pool(body);
  }
  if (!graph_->captured()) {
    graph_->capture(body);  // queues nothing: the host's counts of the captured step are undone
    adam_->uncount_capture();
    loss_log_->uncount_capture();
  }
  graph_->replay();
  adam_->count_replay();
  loss_log_->count_replay();
}

std::optional<EpochEval> TrainingRun::evaluate() {
  if (stop_requested()) return std::nullopt;
  const RunConfig& c = state_.config;
  const IdxImages& test = data_.test;
  const int64_t epoch = state_.progress.epoch + 1;
  const auto t0 = Clock::now();
  NoGradGuard no_grad;
  EpochEval ev;
  // The tutorial's test ELBO: the mean over test images of a single-sample MC
  // ELBO; also with the analytic KL. Autoencoders: the mean reconstruction loss.
  Philox rng{stream_seed(c.seed, Stream::Eval), static_cast<uint64_t>(epoch) << 40};
  const int chunk = 500;
  const int64_t chunks = (test.count + chunk - 1) / chunk;
  std::vector<int64_t> idx(static_cast<size_t>(test.count));
  for (int64_t i = 0; i < test.count; ++i) idx[static_cast<size_t>(i)] = i;
  ProgressBar bar("eval epoch " + std::to_string(epoch), chunks, 0, std::max<int64_t>(1, chunks / 4), stdout,
                  model_->is_vae() ? "elbo" : "recon");
  auto* vae = dynamic_cast<VAE*>(model_.get());
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t b = k * chunk;
    const int n = static_cast<int>(std::min<int64_t>(chunk, test.count - b));
    Tensor x = test_batch(test, idx.data() + b, n, c, device_);
    if (vae) {
      BoundSums s = vae_bounds(*vae, x, rng, 1, 0);
      ev.elbo += s.elbo_mc;
      ev.elbo_analytic += s.elbo_analytic;
    } else {
      ev.recon += model_->loss(x, rng, c.kl).item() * n;
    }
    failpoint("eval-chunk");
    bar.update(k + 1, n, (vae ? ev.elbo : ev.recon) / double(b + n));
    if (stop_requested() && k + 1 < chunks) {  // the safe point: between chunks
      bar.finish();
      return std::nullopt;
    }
  }
  bar.finish();
  const double count = static_cast<double>(test.count);
  ev.elbo /= count;
  ev.elbo_analytic /= count;
  ev.recon /= count;
  ev.seconds = seconds_since(t0);
  for (double v : {ev.elbo, ev.elbo_analytic, ev.recon})
    if (!std::isfinite(v))
      nonfinite("the end of epoch " + std::to_string(epoch),
                "the test " + std::string(vae ? "ELBO" : "reconstruction loss") + " is " + nonfinite_name(v) +
                    " (the model's outputs overflow)",
                false);
  return ev;
}

void TrainingRun::finish_epoch(const EpochEval& ev) {
  const RunConfig& c = state_.config;
  Progress& p = state_.progress;
  const EpochSoFar so = p.so_far;
  const int64_t epoch = p.epoch + 1;
  const double train_loss = so.loss_count ? so.loss_sum / double(so.loss_count) : 0.0;
  const double rate = so.seconds > 0 ? double(so.images) / so.seconds : 0.0;
  json line = {{"epoch", epoch},
               {"step", p.step},
               {"train_loss", train_loss},
               {"skipped_steps", so.skipped},
               {"device", device_ == Device::CUDA ? "cuda" : "cpu"},
               {"epoch_time_s", so.seconds},
               {"images_per_s", rate},
               {"eval_time_s", ev.seconds}};
  if (device_ == Device::CUDA && epoch_counted_steps_ > 0) {
    // Per step of this epoch (the part this session ran): what the GPU was handed.
    const double n = static_cast<double>(epoch_counted_steps_);
    line["kernels_per_step"] = static_cast<double>(epoch_counts_.kernels) / n;
    line["copies_per_step"] = static_cast<double>(epoch_counts_.copies) / n;
    line["host_syncs_per_step"] = static_cast<double>(epoch_counts_.host_syncs) / n;
    line["graph_launches_per_step"] = static_cast<double>(epoch_counts_.graph_launches) / n;
    line["cuda_graph"] = epoch_counts_.graph_launches > 0;
  }
  if (model_->is_vae()) {
    line["test_elbo"] = ev.elbo;
    line["test_elbo_analytic"] = ev.elbo_analytic;
    std::printf("epoch %lld: test ELBO %.3f (analytic KL %.3f), train loss %.3f, %.1f s (%.0f img/s)%s\n",
                static_cast<long long>(epoch), ev.elbo, ev.elbo_analytic, train_loss, so.seconds, rate,
                so.skipped ? (", " + std::to_string(so.skipped) + " steps skipped").c_str() : "");
  } else {
    line["test_recon_loss"] = ev.recon;
    std::printf("epoch %lld: test %s reconstruction loss %.5f, %.1f s\n", static_cast<long long>(epoch),
                recon_name(c.model.recon), ev.recon, so.seconds);
  }
  p.epoch = epoch;
  p.step_in_epoch = 0;
  p.so_far = EpochSoFar{};
  state_.metrics_line = line.dump();
  save_checkpoint(checkpoint_path().string(), state_, *model_, adam_.get());
  checkpoint_at_ = state_.at();
  stored_epochs_ = state_.config.epochs;
  failpoint("checkpoint");
  append_line(dir_ / "metrics.jsonl", state_.metrics_line);
  write_epoch_image(*model_, data_.test, c, dir_, epoch);
  write_training_curve(dir_ / "metrics.jsonl", dir_ / "training_curve.svg");
  ++epochs_this_session_;
  std::fflush(stdout);
}

int TrainingRun::stop() {
  save_checkpoint(checkpoint_path().string(), state_, *model_, adam_.get());
  checkpoint_at_ = state_.at();
  stored_epochs_ = state_.config.epochs;
  const Progress& p = state_.progress;
  std::printf("interrupted (%s): checkpoint saved to %s at epoch %lld, step %lld; continue with: %s\n",
              stop_signal_name(), checkpoint_path().c_str(), static_cast<long long>(p.epoch),
              static_cast<long long>(p.step), continue_command().c_str());
  std::fflush(stdout);
  return stopped_exit_code();
}

int TrainingRun::close() {
  const Progress& p = state_.progress;
  if (epochs_this_session_ == 0) {
    std::printf("the run in %s has already trained its %lld epochs; pass --epochs above that to train further\n",
                dir_.c_str(), static_cast<long long>(p.epoch));
    return kExitOk;
  }
  std::printf("done: checkpoint %s, metrics %s, samples %s/image_at_epoch_*.png, curve %s%s\n",
              checkpoint_path().c_str(), (dir_ / "metrics.jsonl").c_str(), dir_.c_str(),
              (dir_ / "training_curve.svg").c_str(),
              p.skipped_steps ? ("; " + std::to_string(p.skipped_steps) + " non-finite steps skipped").c_str() : "");
  return kExitOk;
}

}  // namespace cvae::app
