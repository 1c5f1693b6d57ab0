// memory.h: will a training run fit? A small training step of the run's model
// is measured at two batch sizes on the CPU (the bytes the engine's allocator
// holds at its peak); the line through the two gives the bytes per image, and
// the run's total at its batch size is compared, before the run allocates,
// with what the machine has available (or --max-memory). Kernels that take
// less per image at large batches make it an upper estimate (~25% today).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "apps/run.h"

namespace cvae::app {

struct MemoryEstimate {
  int64_t batch = 0;
  int64_t per_image = 0;  // activations, their gradients and workspaces, per image of a batch
  int64_t fixed = 0;      // parameters, gradients, Adam moments, the dataset
  int64_t eval = 0;       // the end-of-epoch evaluation (a chunk of test images, no tape)
  int64_t total() const { return fixed + std::max(per_image * batch, eval); }
};

// `batch`: images per step (the batch size, at most the training set);
// `eval_batch`: images per evaluation chunk; `data_bytes`: the dataset held
// in memory for the run.
MemoryEstimate estimate_training_memory(const RunConfig& c, int64_t batch, int64_t eval_batch, int64_t data_bytes);

struct MemoryBudget {
  int64_t bytes = 0;
  std::string what;  // "available", "available on the GPU", "allowed by --max-memory"
};
// MemAvailable from /proc/meminfo, lowered to the cgroup's remaining limit when
// one is set; on the GPU its free memory. -1 bytes when it cannot be told.
MemoryBudget available_memory(bool gpu);

// Throws Refused ("batch 60000 needs about 41.2 GiB (0.70 MiB per image);
// 21.9 GiB available ...") when the estimate exceeds the budget.
void check_memory(const MemoryEstimate& e, const MemoryBudget& budget);

std::string format_bytes(int64_t bytes);  // "812 KiB", "41.2 GiB"
// "123456", "512M", "4G", "1.5GiB" (powers of 1024); throws std::invalid_argument.
int64_t parse_bytes(const std::string& text);

}  // namespace cvae::app
