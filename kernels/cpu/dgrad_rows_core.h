// dgrad_rows_core.h: the stride-2 dgrad, both column phases in one tile (dgrad_rows.h says
// what and why), compiled once per ISA. A dgrad_rows_<isa>.cpp defines CVAE_ROWS_NS and,
// in it, the vector width, then includes this file; nothing else may include it.
#include <cstring>
#include <utility>

#include "kernels/cpu/dgrad_rows.h"
#include "kernels/cpu/simd.h"

namespace cvae::kernels::cpu::CVAE_ROWS_NS {
namespace {

constexpr int L = kVectorBytes / int(sizeof(float));  // lanes: channels
constexpr int CB = L;                                  // a channel block: one vector
// Columns q per tile: 2*MP x CB accumulators, 3 weight vectors and the broadcasts in the
// registers (AVX-512: 14 + 5 of 32 zmm; AVX2: 10 + 5 of 16 ymm). Seven also divides the
// CVAE's rows (14 and 7 columns a phase): no remainder tiles there.
constexpr int MP = kVectorBytes == 64 ? 7 : 5;
constexpr int RT = 8;  // rows (dx columns) per register transpose
using V = typename SimdVec<float, kVectorBytes>::V;
static_assert(CB == (kVectorBytes == 64 ? kDgradRowsChannelsAvx512 : kDgradRowsChannelsAvx2), "cb");
static_assert(CB % RT == 0, "a channel block in whole transposes");

// dx columns [2 q0 + r0, + n) of the tile (rows r0 .. of out), each channel's run of n
// floats transposed in registers, + bias and the ReLU; a run cut by the row's end (odd W)
// element by element.
template <int N>
inline void store_runs(const DgradRowsPlan& pl, const float (*out)[CB], int r0, int q0,
                       const float* bias, bool relu, float* d) {
  using VT = typename Lanes<RT>::V;
  const int64_t hw = int64_t(pl.H) * pl.W;
  if (2 * q0 + r0 + N <= pl.W) {
    for (int c0 = 0; c0 < CB; c0 += RT)
      transpose_block<RT, N>(&out[r0][c0], CB, d + c0 * hw + r0, hw, [&](VT& v, int t) {
        if (bias) v += bias[c0 + t];  // none: nothing added (-0 stays)
        if (relu) v = relu_v(v);
      });
    return;
  }
  const int cols = pl.W - 2 * q0 - r0;
  for (int c = 0; c < CB; ++c)
    for (int r = 0; r < cols; ++r) {
      float v = out[r0 + r][c];
      if (bias) v += bias[c];
      d[c * hw + r0 + r] = relu ? relu_s(v) : v;
    }
}

// The tile of columns [q0, q0 + MQ) of dx row h0[rho] + 2m, channels of the block whose
// packed weights are wp and dx plane dx (that block's first): acc[i][j] is column
// 2(q0 + i) + j. U: the phase's filter rows (taps_h), a constant so that the loop over them
// unrolls into the loop over k (as a loop of one or two turns it cost a dozen register
// moves a k).
template <int MQ, int U>
void tile(const DgradRowsPlan& pl, const float* dyp, const float* wp, const float* bias,
          bool relu, int rho, int m, int q0, float* dx) {
  V acc[MQ][2];
#pragma GCC unroll 8
  for (int i = 0; i < MQ; ++i) acc[i][0] = acc[i][1] = V{};
  const float* row = dyp + (int64_t(pl.row0[rho]) + m) * pl.Qp + pl.col0 + q0;
  const int64_t kstep = 3 * CB;  // the packed weights of one k (filter row r): s = 0, 1, 2
  for (int k = 0; k < pl.K; ++k, row += pl.plane)
#pragma GCC unroll 2
    for (int u = 0; u < U; ++u) {
      const float* x = row - u * pl.Qp;  // x[i]: dy of column q0 + i, tap v = 0
      const float* w = wp + (int64_t(rho + 2 * u) * pl.K + k) * kstep;
      const V w0 = load<V>(w);           // s = 0: even column, v = 0
      const V w1 = load<V>(w + CB);      // s = 1: odd column, v = 0
      const V w2 = load<V>(w + 2 * CB);  // s = 2: even column, v = 1 (one column left)
#pragma GCC unroll 8
      for (int i = 0; i < MQ; ++i) {
        const float a = x[i], b = x[i - 1];
        acc[i][0] += a * w0;  // FMAs, each element's terms in (k, u, v) order
        acc[i][1] += a * w1;
        acc[i][0] += b * w2;
      }
    }
  // Row 2i + j of out is dx column 2 q0 + 2i + j.
  constexpr int kRows = (2 * MQ + RT - 1) / RT * RT;
  alignas(64) float out[kRows][CB];
#pragma GCC unroll 8
  for (int i = 0; i < MQ; ++i) store(out[2 * i], acc[i][0]), store(out[2 * i + 1], acc[i][1]);
  for (int r = 2 * MQ; r < kRows; ++r) store(out[r], V{});  // transposed, then dropped
  float* d = dx + int64_t(pl.h0[rho] + 2 * m) * pl.W + 2 * q0;
#pragma GCC unroll 2
  for (int r0 = 0; r0 < 2 * MQ; r0 += RT) {
    if (2 * MQ - r0 >= RT) store_runs<RT>(pl, out, r0, q0, bias, relu, d);
    else store_runs<(2 * MQ) % RT>(pl, out, r0, q0, bias, relu, d);
  }
}

// One row's tiles: MP columns at a time, the rest in one smaller tile.
template <int U, int... Q>
void last_tile(int rest, const DgradRowsPlan& pl, const float* dyp, const float* wp,
               const float* bias, bool relu, int rho, int m, int q0, float* dx,
               std::integer_sequence<int, Q...>) {
  ((rest == Q + 1 ? tile<Q + 1, U>(pl, dyp, wp, bias, relu, rho, m, q0, dx) : void()), ...);
}
template <int U>
void row(const DgradRowsPlan& pl, const float* dyp, const float* wp, const float* bias,
         bool relu, int rho, int m, float* dx) {
  const int columns = (pl.W + 1) / 2;
  int q0 = 0;
  for (; q0 + MP <= columns; q0 += MP) tile<MP, U>(pl, dyp, wp, bias, relu, rho, m, q0, dx);
  if (q0 < columns)
    last_tile<U>(columns - q0, pl, dyp, wp, bias, relu, rho, m, q0, dx,
              std::make_integer_sequence<int, MP - 1>{});
}

}  // namespace

// Images [n0, n1): each channel block's rows in turn, so that the block's packed weights
// stay near (L2) while the image's dy is read again for every block.
void dgrad_rows_images(const DgradRowsPlan& pl, const float* dyp, const float* wp,
                       const float* bias, bool relu, int n0, int n1, float* dx) {
  const int64_t chw = int64_t(pl.C) * pl.H * pl.W, block = 9 * int64_t(pl.K) * CB;
  for (int n = n0; n < n1; ++n)
    for (int c0 = 0; c0 < pl.C; c0 += CB)
      for (int rho = 0; rho < 2; ++rho)
        for (int m = 0; m < pl.rows[rho]; ++m) {
          // A 3x3 filter at stride 2: phase 0 takes filter rows 0 and 2, phase 1 row 1.
          const auto row_of = pl.taps_h[rho] == 2 ? row<2> : row<1>;
          row_of(pl, dyp + n * pl.image, wp + (c0 / CB) * block, bias ? bias + c0 : nullptr, relu,
                 rho, m, dx + n * chw + int64_t(c0) * pl.H * pl.W);
        }
}

}  // namespace cvae::kernels::cpu::CVAE_ROWS_NS
