// finite.cpp: the NaN/Inf scan. A float is NaN or Inf exactly when its
// exponent bits are all ones, so the scan is an integer test per element that
// the compiler vectorises; only a block that fails is searched for its index.
#include "engine/finite.h"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace cvae {
namespace {

template <typename Bits>
int64_t first_bad(const void* data, int64_t n, Bits exponent) {
  const auto* p = static_cast<const unsigned char*>(data);
  constexpr int64_t kBlock = 1024;
  for (int64_t b = 0; b < n; b += kBlock) {
    const int64_t e = b + kBlock < n ? b + kBlock : n;
    bool bad = false;
    for (int64_t i = b; i < e; ++i) {
      Bits u;
      std::memcpy(&u, p + i * int64_t{sizeof(Bits)}, sizeof(Bits));
      bad |= (u & exponent) == exponent;
    }
    if (!bad) continue;
    for (int64_t i = b; i < e; ++i) {
      Bits u;
      std::memcpy(&u, p + i * int64_t{sizeof(Bits)}, sizeof(Bits));
      if ((u & exponent) == exponent) return i;
    }
  }
  return -1;
}

std::optional<NonFinite> scan(const std::string& name, const Tensor& t) {
  const Tensor host = t.device() == Device::CPU ? t : t.to_device(Device::CPU);
  const int64_t i = first_nonfinite_index(host);
  if (i < 0) return std::nullopt;
  const double v = host.dtype() == DType::F32 ? double(host.data<float>()[i]) : host.data<double>()[i];
  return NonFinite{name, host.shape(), i, v};
}

}  // namespace

int64_t first_nonfinite_index(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return -1;
  const Tensor host = t.device() == Device::CPU ? t : t.to_device(Device::CPU);
  if (host.dtype() == DType::F32) return first_bad<uint32_t>(host.raw(), host.numel(), 0x7f800000u);
  return first_bad<uint64_t>(host.raw(), host.numel(), 0x7ff0000000000000ull);
}

std::optional<NonFinite> first_nonfinite(const NamedTensors& tensors) {
  for (const auto& [name, t] : tensors)
    if (auto bad = scan(name, t)) return bad;
  return std::nullopt;
}

std::optional<NonFinite> first_nonfinite_grad(const NamedTensors& params) {
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (auto bad = scan(name, g)) return bad;
  }
  return std::nullopt;
}

std::string nonfinite_name(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string NonFinite::describe() const {
  return name + " holds " + nonfinite_name(value) + " at element " + std::to_string(index) + " of " +
         shape_str(shape);
}

}  // namespace cvae
