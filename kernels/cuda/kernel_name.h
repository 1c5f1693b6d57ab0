// kernel_name.h: the readable name of a __global__ function given as a template
// argument ("sgemm_kernel<Cfg<128, 128, 8, 8, 8, 1>, false, true>"), for launch errors
// and the emulator's launch counts. Host code only; built from the compiler's
// __PRETTY_FUNCTION__, so it needs no registration at the kernel.
#pragma once

#include <string>

namespace cvae::kernels::cuda {

namespace detail {
// "... [with auto Kernel = ns::{anonymous}::name<args>]" -> "name<args>" (namespaces dropped).
inline std::string kernel_name_from_signature(const std::string& sig) {
  const std::string key = "Kernel = ";
  size_t from = sig.find(key);
  std::string s = from == std::string::npos ? sig : sig.substr(from + key.size());
  s = s.substr(0, s.find("; "));  // GCC appends "; std::string = ..." for the return type
  if (!s.empty() && s.back() == ']') s.pop_back();
  for (const char* prefix : {"cvae::kernels::cuda::", "{anonymous}::", "<unnamed>::", "(anonymous namespace)::", "& "})
    for (size_t at; (at = s.find(prefix)) != std::string::npos;) s.erase(at, std::string(prefix).size());
  if (s.size() > 2 && s.front() == '(' && s.back() == ')') s = s.substr(1, s.size() - 2);
  return s;
}
}  // namespace detail

template <auto Kernel>
const std::string& kernel_name() {
  static const std::string name = detail::kernel_name_from_signature(__PRETTY_FUNCTION__);
  return name;
}

// "sgemm_kernel<...>" -> "sgemm_kernel": the name as written at its __global__ definition.
inline std::string kernel_base_name(const std::string& name) { return name.substr(0, name.find('<')); }

}  // namespace cvae::kernels::cuda
