#!/usr/bin/env bash
# gpu_bundle.sh: build, on this machine, the binaries benchmarks/gpu_check.sh
# runs on a lent GPU machine, into build-gpu/ (small enough to carry: ~20 MB).
# No -march flag is needed for the GPU machine's CPU (the CPU kernels pick their code
# path at run time); sm_90 for the GPU; the CUDA runtime is static.
#   bash benchmarks/gpu_bundle.sh          then, on the device:
#   bash benchmarks/gpu_check.sh build-gpu
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCVAE_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 > /dev/null
cmake --build build-gpu --target cvae test_cuda_kernels test_cuda_conv test_cuda_loss_optim \
  test_cuda_training bench_kernels_cuda_conv bench_kernels_cuda_gemm bench_train_step_cuda
du -sh build-gpu/cvae build-gpu/tests/test_cuda_* build-gpu/benchmarks/bench_*cuda* 2>/dev/null | grep -v cmake
