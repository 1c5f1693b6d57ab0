// finite.h: finding NaN and Inf in tensors, for the training guard (a step's
// loss and gradients), for checkpoints (refused on load, never written) and
// for evaluation results. The scan runs on the host: a GPU tensor is copied
// first, so GPU callers decide when that synchronisation is worth it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "engine/nn.h"

namespace cvae {

// The first NaN or Inf element of a tensor: which tensor, where, what.
struct NonFinite {
  std::string name;
  Shape shape;
  int64_t index = 0;  // flat element index
  double value = 0;   // NaN, +Inf or -Inf
  // "encoder.conv1.weight holds nan at element 17 of [32,1,3,3]"
  std::string describe() const;
};

// The flat index of the first NaN/Inf element of t, or -1 when all are finite.
int64_t first_nonfinite_index(const Tensor& t);
// The first of `tensors`, in order, that holds a NaN or Inf.
std::optional<NonFinite> first_nonfinite(const NamedTensors& tensors);
// The same over the gradients of `params` (parameters without one are skipped);
// the name is the parameter's.
std::optional<NonFinite> first_nonfinite_grad(const NamedTensors& params);
// "nan", "inf" or "-inf" (for messages; a finite value prints as %g).
std::string nonfinite_name(double v);

}  // namespace cvae
