// train.cpp: `cvae train`. One epoch = shuffled batches of the training set,
// Adam steps, then the test-set ELBO, a sample grid, a checkpoint and the
// metrics line. Every random stream is keyed by (seed, epoch), and the
// checkpoint records where the noise stream stands, so a resumed run repeats
// an uninterrupted one bit for bit. Ctrl-C finishes the step and checkpoints.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/plot.h"
#include "apps/progress.h"
#include "engine/autograd.h"
#include "engine/device.h"
#include "engine/png.h"
#include "models/vae.h"

namespace cvae::app {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_interrupt(int) { g_interrupted = 1; }

// Keeps only the first `limit` images (0: all).
void limit_images(IdxImages& images, std::vector<uint8_t>& labels, int64_t limit) {
  if (limit <= 0 || limit >= images.count) return;
  images.count = limit;
  images.pixels.resize(static_cast<size_t>(limit) * images.rows * images.cols);
  labels.resize(static_cast<size_t>(limit));
}

struct EpochEval {
  double elbo = 0, elbo_analytic = 0;  // VAEs
  double recon = 0;                    // autoencoders
  double seconds = 0;
};

// The tutorial's test ELBO: the mean over test images of a single-sample MC
// ELBO; also with the analytic KL. Autoencoders: the mean reconstruction loss.
// The device the model's parameters live on.
Device model_device(Model& model) { return model.parameters().at(0).device(); }

EpochEval evaluate(Model& model, const IdxImages& test, const RunConfig& c, int64_t epoch) {
  auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  EpochEval ev;
  Philox rng{stream_seed(c.seed, Stream::Eval), static_cast<uint64_t>(epoch) << 40};
  const int chunk = 500;
  std::vector<int64_t> idx(static_cast<size_t>(test.count));
  for (int64_t i = 0; i < test.count; ++i) idx[static_cast<size_t>(i)] = i;
  for (int64_t b = 0; b < test.count; b += chunk) {
    int n = static_cast<int>(std::min<int64_t>(chunk, test.count - b));
    // The test set is binarized the same way every epoch (dynamic: one fixed draw).
    Tensor x = gather_batch(test, idx.data() + b, n, c.binarize, stream_seed(c.seed, Stream::Binarize) + 1, 0)
                   .to_device(model_device(model));
    if (auto* vae = dynamic_cast<VAE*>(&model)) {
      BoundSums s = vae_bounds(*vae, x, rng, 1, 0);
      ev.elbo += s.elbo_mc;
      ev.elbo_analytic += s.elbo_analytic;
    } else {
      ev.recon += model.loss(x, rng, c.kl).item() * n;
    }
  }
  double count = static_cast<double>(test.count);
  ev.elbo /= count;
  ev.elbo_analytic /= count;
  ev.recon /= count;
  ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return ev;
}

// The tutorial's image_at_epoch_NNNN.png: decoded fixed latents for VAEs,
// reconstructions of the first test images for autoencoders.
void write_epoch_image(Model& model, const IdxImages& test, const RunConfig& c,
                       const fs::path& dir, int64_t epoch) {
  NoGradGuard no_grad;
  Tensor images;
  if (model.is_vae()) {
    Philox rng{stream_seed(c.seed, Stream::Samples), 0};
    images = model.decode_images(randn({16, model.latent_dim()}, rng, DType::F32, model_device(model)));
  } else {
    std::vector<int64_t> idx;
    for (int64_t i = 0; i < std::min<int64_t>(16, test.count); ++i) idx.push_back(i);
    images = model.reconstruct(gather_batch(test, idx.data(), int(idx.size()), c.binarize,
                                            stream_seed(c.seed, Stream::Binarize) + 1, 0)
                                   .to_device(model_device(model)));
  }
  char name[64];
  std::snprintf(name, sizeof name, "image_at_epoch_%04lld.png", static_cast<long long>(epoch));
  write_png_grid((dir / name).string(), images, 4, 4);
}

void append_metrics(const fs::path& file, const json& line) {
  std::ofstream out(file, std::ios::app);
  out << line.dump() << "\n";
  out.flush();
  if (!out) throw std::runtime_error(file.string() + ": cannot append metrics");
}

// A fresh run refuses a directory that already holds one: nothing on disk is overwritten.
void prepare_new_run_dir(const fs::path& dir) {
  if (fs::exists(dir / kCheckpointName) || fs::exists(dir / "metrics.jsonl"))
    throw UsageError(dir.string() + " already holds a run; continue it with --resume " +
                     dir.string() + " or choose another --out");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw UsageError(dir.string() + ": cannot create the output directory (" + ec.message() + ")");
}

}  // namespace

int run_train(const TrainOptions& opt) {
  std::string device_note;
  Device device;
  try {
    device = resolve_device(opt.device, &device_note);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  // From here on Ctrl-C (or SIGTERM) only sets a flag: the loop checkpoints and stops.
  g_interrupted = 0;
  auto old_int = std::signal(SIGINT, on_interrupt);
  auto old_term = std::signal(SIGTERM, on_interrupt);
  struct Restore {
    decltype(old_int) i, t;
    ~Restore() { std::signal(SIGINT, i); std::signal(SIGTERM, t); }
  } restore{old_int, old_term};

  RunConfig c = opt.config;
  Progress progress;
  std::unique_ptr<Model> model;
  std::unique_ptr<Checkpoint> ck;
  fs::path dir = opt.out_dir.empty() ? fs::path("runs") / c.model.kind : fs::path(opt.out_dir);
  if (!opt.resume.empty()) {
    std::string path = resolve_checkpoint(opt.resume);
    ck = std::make_unique<Checkpoint>(load_checkpoint(path));
    c = ck->config;  // the run's own configuration wins over flags
    progress = ck->progress;
    model = std::move(ck->model);
    if (opt.out_dir.empty()) dir = fs::path(path).parent_path();
    if (dir.empty()) dir = ".";
    fs::create_directories(dir);
    std::printf("resuming %s at epoch %lld, step %lld\n", path.c_str(),
                static_cast<long long>(progress.epoch), static_cast<long long>(progress.step));
  } else {
    prepare_new_run_dir(dir);
    model = make_model(c.model, stream_seed(c.seed, Stream::Init));
  }
  if (progress.epoch >= opt.epochs) {
    std::printf("the run has already trained %lld epochs; pass --epochs above that to continue\n",
                static_cast<long long>(progress.epoch));
    return 0;
  }
  model->to_device(device);
  Adam adam(model->named_parameters(), AdamOptions{c.lr});
  if (ck) restore_optimizer(*ck, adam);

  Dataset data = load_data_or_explain(c.data_dir);
  limit_images(data.train, data.train_labels, opt.limit_train);
  limit_images(data.test, data.test_labels, opt.limit_test);
  const int64_t ntrain = data.train.count, B = c.batch_size;
  const int64_t steps = (ntrain + B - 1) / B;  // the last partial batch is kept
  // On the GPU the training set lives there; a step gathers its batch in place.
  std::unique_ptr<DeviceImages> train_on_device;
  if (device == Device::CUDA) train_on_device = std::make_unique<DeviceImages>(data.train);
  // The loss comes back to the host only every read_every steps on the GPU
  // (a read is a synchronisation); on the CPU it is free, so every step.
  const int64_t plain_every = opt.log_every > 0 ? opt.log_every : std::max<int64_t>(1, steps / 10);
  const int64_t read_every = device == Device::CUDA ? std::min<int64_t>(plain_every, 50) : 1;
  std::printf("training %s (latent %d) on %s: %lld train / %lld test images, batch %lld, "
              "Adam lr %g, KL %s, binarization %s, %s, %d epochs -> %s\n",
              c.model.kind.c_str(), model->latent_dim(), c.data_dir.c_str(),
              static_cast<long long>(ntrain), static_cast<long long>(data.test.count),
              static_cast<long long>(B), c.lr, kl_name(c.kl), binarize_name(c.binarize),
              device_note.c_str(), opt.epochs, dir.string().c_str());

  for (int64_t epoch = progress.epoch; epoch < opt.epochs; ++epoch) {
    std::vector<int64_t> order = shuffled_indices(ntrain, stream_seed(c.seed, Stream::Shuffle), uint64_t(epoch));
    Philox noise{stream_seed(c.seed, Stream::Noise),
                 progress.step_in_epoch > 0 ? progress.noise_offset : uint64_t(epoch) << 40};
    char label[48];
    std::snprintf(label, sizeof label, "epoch %lld/%d", static_cast<long long>(epoch + 1), opt.epochs);
    ProgressBar bar(label, steps, progress.step_in_epoch, plain_every);
    if (train_on_device) train_on_device->set_order(order);
    auto t0 = std::chrono::steady_clock::now();
    Tensor loss_sum = Tensor::zeros({}, DType::F32, device);  // summed where the losses are
    int64_t loss_count = 0, images_seen = 0, images_unreported = 0;
    double loss_mean = 0;
    for (int64_t s = progress.step_in_epoch; s < steps; ++s) {
      int n = static_cast<int>(std::min(B, ntrain - s * B));
      uint64_t bin_seed = stream_seed(c.seed, Stream::Binarize);
      Tensor x = train_on_device
                     ? train_on_device->batch(s * B, n, c.binarize, bin_seed, uint64_t(epoch))
                     : gather_batch(data.train, order.data() + s * B, n, c.binarize, bin_seed, uint64_t(epoch));
      Tensor loss = model->loss(x, noise, c.kl);
      adam.zero_grad();
      loss.backward();
      adam.step();
      ++progress.step;
      {
        NoGradGuard no_grad;
        loss_sum = add(loss_sum, loss.detach());
      }
      ++loss_count;
      images_seen += n;
      images_unreported += n;
      if ((s + 1) % read_every == 0 || s + 1 == steps || g_interrupted) {
        loss_mean = loss_sum.item() / double(loss_count);  // the only host read of a step
        bar.update(s + 1, images_unreported, loss_mean);
        images_unreported = 0;
      }
      if (g_interrupted) {
        bar.finish();
        progress.step_in_epoch = s + 1;
        progress.noise_offset = noise.offset;
        save_checkpoint((dir / kCheckpointName).string(), c, progress, *model, &adam);
        std::printf("interrupted: checkpoint saved to %s; continue with: cvae train --resume %s\n",
                    (dir / kCheckpointName).string().c_str(), dir.string().c_str());
        return 130;
      }
    }
    bar.finish();
    double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.epoch = epoch + 1;
    progress.step_in_epoch = 0;
    progress.noise_offset = noise.offset;

    EpochEval ev = evaluate(*model, data.test, c, epoch + 1);
    json line = {{"epoch", epoch + 1}, {"step", progress.step},
                 {"train_loss", loss_mean},
                 {"device", device == Device::CUDA ? "cuda" : "cpu"},
                 {"epoch_time_s", train_secs},
                 {"images_per_s", double(images_seen) / train_secs},
                 {"eval_time_s", ev.seconds}};
    if (model->is_vae()) {
      line["test_elbo"] = ev.elbo;
      line["test_elbo_analytic"] = ev.elbo_analytic;
      std::printf("epoch %lld: test ELBO %.3f (analytic KL %.3f), train loss %.3f, %.1f s (%.0f img/s)\n",
                  static_cast<long long>(epoch + 1), ev.elbo, ev.elbo_analytic,
                  line["train_loss"].get<double>(), train_secs, double(images_seen) / train_secs);
    } else {
      line["test_recon_loss"] = ev.recon;
      std::printf("epoch %lld: test %s reconstruction loss %.5f, %.1f s\n",
                  static_cast<long long>(epoch + 1), recon_name(c.model.recon), ev.recon, train_secs);
    }
    append_metrics(dir / "metrics.jsonl", line);
    write_epoch_image(*model, data.test, c, dir, epoch + 1);
    save_checkpoint((dir / kCheckpointName).string(), c, progress, *model, &adam);
    write_training_curve(dir / "metrics.jsonl", dir / "training_curve.svg");
    std::fflush(stdout);
  }
  std::printf("done: checkpoint %s, metrics %s, samples %s/image_at_epoch_*.png, curve %s\n",
              (dir / kCheckpointName).string().c_str(), (dir / "metrics.jsonl").string().c_str(),
              dir.string().c_str(), (dir / "training_curve.svg").string().c_str());
  return 0;
}

}  // namespace cvae::app
