// grid_reduce.cuh: what kernels/cuda/*.cu need for a reduction over many blocks in ONE
// launch, deterministically: every block writes its partial result to a per-stream
// scratch, then arrives at a counter; the last block to arrive (last_block_arrives)
// adds the partials in index order, never in arrival order, so the bits depend only on
// the shape. The pattern of CUDA's threadFenceReduction sample. Not here: the reductions.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace cvae::kernels::cuda {

// ---------------------------------------------------------------------------- host side
namespace detail {

// Arrival counters of this stream, all zero between launches (each kernel that uses some
// leaves them zero again); at most kMaxCounters per launch. Allocated with the stream
// (stream_create), or here at first use on another stream (never during a capture).
constexpr int kMaxCounters = 1 << 16;
unsigned* arrival_counters(cudaStream_t stream, int needed);
// This stream's scratch for partial results, at least `floats` floats, grown on demand
// (the outgrown buffer is kept: a queued kernel or a captured graph may still use it);
// growing it during a graph capture throws: run the captured work eagerly once first.
// Kernels on one stream run one after another, so they all share it.
float* partials(cudaStream_t stream, size_t floats);

}  // namespace detail

// ---------------------------------------------------------------------------- device side
// Called by every thread of every block, after the block wrote its partials: true in all
// threads of the block that arrives last among `blocks` at *counter; that block then sees
// every other block's partials (read them through volatile pointers: not from L1) and the
// counter is zero again. The fence orders this block's partial writes before its arrival.
__device__ __forceinline__ bool last_block_arrives(unsigned* counter, unsigned blocks) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();  // every thread of the block has written and fenced its partials
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    const unsigned ticket = atomicAdd(counter, 1u);
    last = ticket + 1 == blocks;
    if (last) *counter = 0;  // every block has arrived: ready for the next launch
  }
  __syncthreads();
  if (last) __threadfence();  // order the partial reads after the arrival
  return last;
}

}  // namespace cvae::kernels::cuda
