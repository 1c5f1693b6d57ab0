// simd.h: the small vector helpers of the per-ISA kernel files (gemm_core.h,
// conv_thin_core.h and dgrad_rows_core.h, each compiled once per ISA with its file's -m flags).
// Everything here is in an unnamed namespace on purpose: each translation unit keeps its
// own copy, compiled for its own ISA. With external linkage the linker would keep one
// copy of an inline function for all the ISAs, and could run AVX-512 code on an AVX2 CPU.
// Only the per-ISA files may include it.
#pragma once

#include <cstdint>
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

// Float vectors of L lanes and the interleaves of two: lo(a, b) = a0 b0 a1 b1 ... from
// their first halves, hi(a, b) the same from their second halves (GCC 12+ and clang).
template <int L>
struct Lanes;
template <>
struct Lanes<4> {
  typedef float V __attribute__((vector_size(16)));
  static V lo(V a, V b) { return __builtin_shufflevector(a, b, 0, 4, 1, 5); }
  static V hi(V a, V b) { return __builtin_shufflevector(a, b, 2, 6, 3, 7); }
};
#if defined(__AVX__)  // wider vectors only where this translation unit's ISA has them
template <>
struct Lanes<8> {
  typedef float V __attribute__((vector_size(32)));
  static V lo(V a, V b) { return __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11); }
  static V hi(V a, V b) { return __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15); }
};
#endif
#if defined(__AVX512F__)
template <>
struct Lanes<16> {
  typedef float V __attribute__((vector_size(64)));
  static V lo(V a, V b) {
    return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  }
  static V hi(V a, V b) {
    return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  }
};
#endif

// An L x L block of floats transposed in registers, L = the vector's lanes:
// dst[t * ldd + j] = src[j * step + t]. log2(L) rounds of pairwise interleaves (row i
// with row i + L/2: lows, then highs) leave row t holding what was column t.
// fin(v, t) finishes output row t (column t of src) before it is stored; N < L: only the
// first N floats of each output row are stored.
template <int L, int N = L, typename Fin>
inline void transpose_block(const float* src, int64_t step, float* dst, int64_t ldd, Fin&& fin) {
  using V = typename Lanes<L>::V;
  V r[L], n[L];
#pragma GCC unroll 16
  for (int j = 0; j < L; ++j) std::memcpy(&r[j], src + j * step, sizeof(V));
#pragma GCC unroll 4
  for (int round = 1; round < L; round *= 2) {
#pragma GCC unroll 8
    for (int i = 0; i < L / 2; ++i) {
      n[2 * i] = Lanes<L>::lo(r[i], r[i + L / 2]);
      n[2 * i + 1] = Lanes<L>::hi(r[i], r[i + L / 2]);
    }
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) r[i] = n[i];
  }
#pragma GCC unroll 16
  for (int t = 0; t < L; ++t) {
    fin(r[t], t);
    std::memcpy(dst + t * ldd, &r[t], N * sizeof(float));
  }
}
template <int L>
inline void transpose_block(const float* src, int64_t step, float* dst, int64_t ldd) {
  transpose_block<L>(src, step, dst, ldd, [](typename Lanes<L>::V&, int) {});
}

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }

}  // namespace
}  // namespace cvae::kernels::cpu
