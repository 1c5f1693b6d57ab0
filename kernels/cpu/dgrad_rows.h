// dgrad_rows.h (kernels/cpu internal): the stride-2, 3x3 dgrad with many channels (the
// decoder's transposed convs forward, the encoder's conv2 backward) with both column
// phases of a dx row in one register tile.
// The GEMM form (conv2d.cpp) computes each of the four phases (rho_h, rho_w) as its own
// GEMM, its tiles of positions x channels stored transposed into a stage, and the phases
// then interleaved into dx (spread_phases): 8-10% of a training step only moved data.
// Here a tile is MP consecutive columns q of one output row in both column phases (dx
// columns 2q and 2q + 1) x a block of channels: the even column takes filter columns 0
// and 2, the odd one column 1, all three from the same dy elements (broadcast), against
// the weights packed per channel block (vectors). The tile's 2*MP rows are then dx's
// columns in order: transposed in registers, each channel's 2*MP values are stored as one
// run of its dx row. No stage, no spread. Each element's chain is the GEMM's: from +0,
// over (k, u, v) in order, one FMA per term, then + bias and the ReLU: the same bits
// (Conv.StrideTwoDgradIsOneChainPerElementInTapOrder).
//
// The vector code is compiled once per ISA (dgrad_rows_core.h, dgrad_rows_<isa>.cpp; none
// for the generic path, which keeps the GEMM); this header holds plain structs only (see
// gemm_views.h on why).
#pragma once

#include <cstdint>

namespace cvae::kernels::cpu {

// Channels per block: one vector of floats.
constexpr int kDgradRowsChannelsAvx512 = 16, kDgradRowsChannelsAvx2 = 8;

// One shape's geometry (conv2d.cpp works it out): dx [C, H, W] per image from a bordered
// dy [K, plane] per image (rows Qp apart). Row phase rho: its first row reads bordered dy
// row row0[rho] (filter row rho + 2u then row0 + m - u), has rows[rho] rows and
// taps_h[rho] filter rows, and writes dx row h0[rho] + 2m. Columns: dx column 2q + j
// reads bordered dy column col0 + q - v (even pad: both column phases start at q = 0).
// The weights packed as [C / cb][r][k][s][cb] (dgrad_rows_pack).
struct DgradRowsPlan {
  int C = 0, H = 0, W = 0, K = 0, cb = 0;
  int64_t Qp = 0, plane = 0, image = 0;
  int row0[2] = {}, rows[2] = {}, taps_h[2] = {}, h0[2] = {};
  int col0 = 0;
};

// dx of images [n0, n1) (dy bordered as the plan says; wp the packed weights).
namespace avx2 {
void dgrad_rows_images(const DgradRowsPlan& pl, const float* dyp, const float* wp,
                       const float* bias, bool relu, int n0, int n1, float* dx);
}
namespace avx512 {
void dgrad_rows_images(const DgradRowsPlan& pl, const float* dyp, const float* wp,
                       const float* bias, bool relu, int n0, int n1, float* dx);
}

}  // namespace cvae::kernels::cpu
