// evaluate.cpp: `cvae eval`: test-set bounds on log p(x) for a checkpoint, in
// nats per image: the ELBO by Monte Carlo and with the analytic KL, and the
// importance-weighted bound (IWAE) with k samples. Autoencoders: the mean
// reconstruction loss. Ctrl-C stops it between chunks; progress goes to
// stderr so that stdout holds only the results.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "apps/commands.h"
#include "apps/failpoint.h"
#include "apps/progress.h"
#include "apps/signals.h"
#include "engine/autograd.h"
#include "engine/finite.h"
#include "engine/device.h"
#include "models/vae.h"

namespace cvae::app {

int run_eval(const EvalOptions& opt) {
  StopOnSignal stop("after the current chunk of images (nothing is written)");
  Device device;
  try {
    device = resolve_device(opt.device, nullptr);
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  Checkpoint ck = load_checkpoint(resolve_checkpoint(opt.checkpoint));
  ck.model->to_device(device);
  const RunConfig& c = ck.config;
  Dataset data = load_data_or_explain(opt.data_dir.empty() ? c.data_dir : opt.data_dir);
  int64_t count = opt.limit > 0 ? std::min(opt.limit, data.test.count) : data.test.count;
  NoGradGuard no_grad;
  Philox rng{stream_seed(opt.seed, Stream::Eval), 0};
  auto* vae = dynamic_cast<VAE*>(ck.model.get());
  // Iwae samples multiply the work: keep a chunk's decoded images near a few thousand.
  int chunk = std::max(1, std::min<int>(opt.batch_size, 4000 / std::max(1, opt.k_iwae)));
  BoundSums sums;
  double recon = 0;
  std::vector<int64_t> idx(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) idx[static_cast<size_t>(i)] = i;
  const int64_t chunks = (count + chunk - 1) / chunk;
  ProgressBar bar("eval", chunks, 0, std::max<int64_t>(1, chunks / 10), stderr, vae ? "elbo" : "recon");
  for (int64_t k = 0; k < chunks; ++k) {
    if (stop_requested()) {  // the safe point: between chunks
      bar.finish();
      std::fprintf(stderr, "interrupted (%s): evaluated %lld of %lld images; nothing written\n", stop_signal_name(),
                   static_cast<long long>(k * chunk), static_cast<long long>(count));
      return stopped_exit_code();
    }
    const int64_t b = k * chunk;
    int n = static_cast<int>(std::min<int64_t>(chunk, count - b));
    // The same test binarization as training used (dynamic: one fixed draw).
    Tensor x = gather_batch(data.test, idx.data() + b, n, c.binarize,
                            stream_seed(c.seed, Stream::Binarize) + 1, 0)
                   .to_device(device);
    if (vae) {
      BoundSums s = vae_bounds(*vae, x, rng, opt.k_mc, opt.k_iwae);
      sums.elbo_mc += s.elbo_mc;
      sums.elbo_analytic += s.elbo_analytic;
      sums.iwae += s.iwae;
    } else {
      recon += ck.model->loss(x, rng, c.kl).item() * n;
    }
    failpoint("eval-chunk");
    bar.update(k + 1, n, (vae ? sums.elbo_mc : recon) / double(b + n));
  }
  bar.finish();
  double N = static_cast<double>(count);
  nlohmann::ordered_json out = {{"checkpoint", ck.path}, {"model", c.model.kind},
                                {"epoch", ck.progress.epoch}, {"images", count}};
  std::vector<std::pair<std::string, double>> lines;
  if (vae) {
    lines.emplace_back("elbo_mc", sums.elbo_mc / N);
    lines.emplace_back("elbo_analytic", sums.elbo_analytic / N);
    if (opt.k_iwae > 0) lines.emplace_back("iwae_k" + std::to_string(opt.k_iwae), sums.iwae / N);
  } else {
    lines.emplace_back(std::string("recon_loss_") + recon_name(c.model.recon), recon / N);
  }
  for (auto& [name, v] : lines) {
    if (!std::isfinite(v))
      throw NonFiniteError(ck.path + ": " + name + " is " + nonfinite_name(v) + " over " + std::to_string(count) +
                           " test images (the model's outputs overflow); no bound to report");
    out[name] = v;
  }
  if (opt.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    for (auto& [name, v] : lines) std::printf("%s %.4f\n", name.c_str(), v);
  }
  return 0;
}

}  // namespace cvae::app
