// simd.h: the small vector helpers of the per-ISA kernel files (gemm_core.h and
// conv_thin_core.h, each compiled once per ISA with that file's -m flags).
// Everything here is in an unnamed namespace on purpose: each translation unit keeps its
// own copy, compiled for its own ISA. With external linkage the linker would keep one
// copy of an inline function for all the ISAs, and could run AVX-512 code on an AVX2 CPU.
// Only the per-ISA files may include it.
#pragma once

#include <cstring>

namespace cvae::kernels::cpu {
namespace {

// A GCC vector of Bytes bytes of T (L lanes); the file's -m flags choose the instructions.
template <typename T, int Bytes>
struct SimdVec {
  typedef T V __attribute__((vector_size(Bytes)));
  static constexpr int L = Bytes / int(sizeof(T));
};

// Unaligned loads and stores of a whole vector (memcpy: no aliasing or alignment promise).
template <typename V, typename T>
inline V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T>
inline void store(T* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}
// The first n lanes (n < L) of p, zeros after; and their store.
template <typename V, typename T>
inline V load_part(const T* p, int n) {
  T t[sizeof(V) / sizeof(T)] = {};
  for (int i = 0; i < n; ++i) t[i] = p[i];
  return load<V>(t);
}
template <typename V, typename T>
inline void store_part(T* p, V v, int n) {
  T t[sizeof(V) / sizeof(T)];
  std::memcpy(t, &v, sizeof(V));
  for (int i = 0; i < n; ++i) p[i] = t[i];
}

template <typename V>
inline V relu_v(V v) {
  return v < V{} ? V{} : v;  // NaN stays NaN, as relu_fwd
}
template <typename T>
inline T relu_s(T v) {
  return v < T(0) ? T(0) : v;
}

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }

}  // namespace
}  // namespace cvae::kernels::cpu
