// memory.cpp: the measured estimate, the available memory (procfs, cgroups,
// the CUDA runtime) and the sizes in messages.
#include "apps/memory.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <stdexcept>

#include "apps/errors.h"
#include "engine/allocator.h"
#include "engine/autograd.h"
#if defined(CVAE_HAVE_CUDA)
#include "kernels/cuda/kernels_cuda.h"
#endif

namespace cvae::app {
namespace {

// Peak bytes allocated by one step of a fresh model on a batch of b blank
// images: a training step (loss + backward) or, without grad, an evaluation.
int64_t step_peak(const RunConfig& c, int b, bool train) {
  std::unique_ptr<Model> model = make_model(c.model, 1);
  Tensor x = Tensor::zeros({b, 1, 28, 28});
  Philox rng{0, 0};
  const int64_t before = cpu_bytes_in_use();
  reset_cpu_bytes_peak();
  if (train) {
    model->loss_backward(x, rng, c.kl);  // the training step's call (b is below its halving)
  } else {
    NoGradGuard no_grad;
    model->loss(x, rng, c.kl);
  }
  return cpu_bytes_peak() - before;
}

// First number on the line of /proc/meminfo that starts with key, in bytes.
int64_t meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size())) * 1024;
  return -1;
}

int64_t read_number(const char* path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return -1;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

MemoryEstimate estimate_training_memory(const RunConfig& c, int64_t batch, int64_t eval_batch, int64_t data_bytes) {
  // Two probes fix the line: peak(b) = step_fixed + b * per_image.
  const int b1 = 2, b2 = 4;
  const int64_t t1 = step_peak(c, b1, true), t2 = step_peak(c, b2, true);
  const int64_t e1 = step_peak(c, b1, false), e2 = step_peak(c, b2, false);
  const int64_t input = 28 * 28 * int64_t{sizeof(float)};  // the batch itself
  MemoryEstimate e;
  e.batch = batch;
  e.per_image = std::max<int64_t>(0, (t2 - t1) / (b2 - b1)) + input;
  int64_t params = 0;
  for (const Tensor& p : make_model(c.model, 1)->parameters()) params += static_cast<int64_t>(p.nbytes());
  e.fixed = std::max<int64_t>(0, t1 - b1 * (e.per_image - input)) + 3 * params + data_bytes;
  // The end-of-epoch evaluation runs its chunks without a tape.
  e.eval = (std::max<int64_t>(0, (e2 - e1) / (b2 - b1)) + input) * eval_batch;
  return e;
}

MemoryBudget available_memory(bool gpu) {
  MemoryBudget b;
  if (gpu) {
    b.what = "free on the GPU";
    b.bytes = -1;
#if defined(CVAE_HAVE_CUDA)
    b.bytes = kernels::cuda::device_free_bytes();  // through the runtime wrapper, as all CUDA
#endif
    return b;
  }
  b.what = "available";
  b.bytes = meminfo("MemAvailable:");
  // A cgroup limit (a container, a systemd slice) binds before the machine does.
  int64_t limit = read_number("/sys/fs/cgroup/memory.max");
  int64_t used = read_number("/sys/fs/cgroup/memory.current");
  if (limit < 0) {
    limit = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    used = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  if (limit > 0 && used >= 0 && limit < (int64_t{1} << 60)) {
    int64_t left = std::max<int64_t>(0, limit - used);
    if (b.bytes < 0 || left < b.bytes) {
      b.bytes = left;
      b.what = "left under this cgroup's memory limit";
    }
  }
  return b;
}

void check_memory(const MemoryEstimate& e, const MemoryBudget& budget) {
  if (budget.bytes < 0 || e.total() <= budget.bytes) return;
  throw Refused("batch " + std::to_string(e.batch) + " needs about " + format_bytes(e.total()) + " (" +
                format_bytes(e.per_image) + " per image of the batch, " + format_bytes(e.fixed) +
                " for the model, optimizer and data); " + format_bytes(budget.bytes) + " " + budget.what +
                ": choose a smaller --batch-size");
}

std::string format_bytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  else std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

int64_t parse_bytes(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "KB" || unit == "KiB") scale = 1024.0;
  else if (unit == "M" || unit == "MB" || unit == "MiB") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "GB" || unit == "GiB") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "TB" || unit == "TiB") scale = 1024.0 * 1024 * 1024 * 1024;
  if (used == 0 || scale == 0 || !std::isfinite(v) || v <= 0 || v * scale > 9e18)
    throw std::invalid_argument("'" + text + "' is not a size (e.g. 800M, 4G, 1.5GiB)");
  return static_cast<int64_t>(v * scale);
}

}  // namespace cvae::app
