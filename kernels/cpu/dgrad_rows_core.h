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

// The sums of a tile's (k, u, v) terms for R rows m .. m + R - 1 of phase rho from the
// bordered dy rows at `row` (row m's, q0 included), the weights wp: acc[r][i][j] is dx
// column 2(q0 + i) + j of row m + r. The rows share each weight load. U: the phase's
// filter rows (taps_h), a constant so that the loop over them unrolls into the loop over
// k (as a loop of one or two turns it cost a dozen register moves a k).
template <int MQ, int U, int R>
inline void tile_sums(const DgradRowsPlan& pl, const float* row, const float* wp, int rho,
                      V (&acc)[R][MQ][2]) {
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int i = 0; i < MQ; ++i) acc[r][i][0] = acc[r][i][1] = V{};
  const int64_t kstep = 3 * CB;  // the packed weights of one k (filter row r): s = 0, 1, 2
  for (int k = 0; k < pl.K; ++k, row += pl.plane)
#pragma GCC unroll 2
    for (int u = 0; u < U; ++u) {
      const float* w = wp + (int64_t(rho + 2 * u) * pl.K + k) * kstep;
      const V w0 = load<V>(w);           // s = 0: even column, v = 0
      const V w1 = load<V>(w + CB);      // s = 1: odd column, v = 0
      const V w2 = load<V>(w + 2 * CB);  // s = 2: even column, v = 1 (one column left)
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        const float* x = row + (r - u) * pl.Qp;  // x[i]: dy of column q0 + i, tap v = 0
#pragma GCC unroll 8
        for (int i = 0; i < MQ; ++i) {
          const float a = x[i], b = x[i - 1];
          acc[r][i][0] += a * w0;  // FMAs, each element's terms in (k, u, v) order
          acc[r][i][1] += a * w1;
          acc[r][i][0] += b * w2;
        }
      }
    }
}

// A tile's sums into dx row h0[rho] + 2m, columns from 2 q0, with the bias and the ReLU.
template <int MQ>
inline void store_tile(const DgradRowsPlan& pl, const V (&acc)[MQ][2], const float* bias,
                       bool relu, int rho, int m, int q0, float* dx) {
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

// The tile of columns [q0, q0 + MQ) of R dx rows h0[rho] + 2m, + 2(m + 1), .., channels of
// the block whose packed weights are wp and dx plane dx (that block's first).
template <int MQ, int U, int R = 1>
void tile(const DgradRowsPlan& pl, const float* dyp, const float* wp, const float* bias,
          bool relu, int rho, int m, int q0, float* dx) {
  V acc[R][MQ][2];
  tile_sums<MQ, U, R>(pl, dyp + (int64_t(pl.row0[rho]) + m) * pl.Qp + pl.col0 + q0, wp, rho, acc);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) store_tile<MQ>(pl, acc[r], bias, relu, rho, m + r, q0, dx);
}

// A remainder tile this narrow goes two rows at once: alone its few accumulators wait on
// the FMA latency (the even column's two FMAs a (k, u) depend on each other: 8 cycles,
// against 3 for a 2-column tile's 6 FMAs on AVX2's two pipes); two rows share the weight
// loads and double the chains. AVX2: up to 2 columns (3 would need 17 ymm of 16);
// AVX-512: up to 3 (the CVAE's rows leave no rest there; wider pairs untried).
constexpr int kPairedRest = MP == 7 ? 3 : 2;

// Rows [m, m + R)'s last tile: `rest` (< MP) columns from q0.
template <int U, int R, int... Q>
void last_tile(int rest, const DgradRowsPlan& pl, const float* dyp, const float* wp,
               const float* bias, bool relu, int rho, int m, int q0, float* dx,
               std::integer_sequence<int, Q...>) {
  ((rest == Q + 1 ? tile<Q + 1, U, R>(pl, dyp, wp, bias, relu, rho, m, q0, dx) : void()), ...);
}

// The tiles of rows m (and m + 1 when pair): MP columns at a time, row by row, then the
// rest in one smaller tile, of both rows at once when it is narrow enough.
template <int U>
void rows(const DgradRowsPlan& pl, const float* dyp, const float* wp, const float* bias,
          bool relu, int rho, int m, bool pair, float* dx) {
  const int columns = (pl.W + 1) / 2, full = columns / MP * MP, rest = columns - full;
  for (int r = 0; r < 1 + pair; ++r)
    for (int q0 = 0; q0 < full; q0 += MP) tile<MP, U>(pl, dyp, wp, bias, relu, rho, m + r, q0, dx);
  if (rest == 0) return;
  if (pair && rest <= kPairedRest) {
    last_tile<U, 2>(rest, pl, dyp, wp, bias, relu, rho, m, full, dx,
                    std::make_integer_sequence<int, kPairedRest>{});
    return;
  }
  for (int r = 0; r < 1 + pair; ++r)
    last_tile<U, 1>(rest, pl, dyp, wp, bias, relu, rho, m + r, full, dx,
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
        for (int m = 0; m < pl.rows[rho]; m += 2) {  // rows in pairs (the last may be alone)
          // A 3x3 filter at stride 2: phase 0 takes filter rows 0 and 2, phase 1 row 1.
          const auto rows_of = pl.taps_h[rho] == 2 ? rows<2> : rows<1>;
          rows_of(pl, dyp + n * pl.image, wp + (c0 / CB) * block, bias ? bias + c0 : nullptr, relu,
                  rho, m, m + 1 < pl.rows[rho], dx + n * chw + int64_t(c0) * pl.H * pl.W);
        }
}

}  // namespace cvae::kernels::cpu::CVAE_ROWS_NS
