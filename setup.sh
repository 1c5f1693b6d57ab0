#!/usr/bin/env bash
# setup.sh: install what is missing, build, and run the main job or the tests.
#   ./setup.sh run    install, build (Release), train the CVAE on Fashion-MNIST (the main job)
#   ./setup.sh test   install, build with warnings as errors with the CUDA kernels on the
#                     emulator (CVAE_CUDA=EMULATE) and run every test, GPU suites included;
#                     check that nvcc compiles and links the real CUDA build; then every
#                     test again under AddressSanitizer + UBSan; then each libFuzzer
#                     target for CVAE_FUZZ_SECONDS (60) seconds, the targets side by side
#   ./setup.sh deps   only install the Debian packages the build needs
# CUDA kernels are compiled when nvcc is found (CVAE_CUDA=AUTO); no GPU is needed.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
          zlib1g-dev libpng-dev libcli11-dev dataset-fashion-mnist libboost-context-dev
          libopenblas-openmp-dev)  # the last: only the GEMM benchmark's comparison
PACKAGES+=(clang-14 libclang-rt-14-dev libomp-14-dev)  # the fuzz targets (libFuzzer, ASan, UBSan)
JOBS=$(nproc)

install_deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# configure_and_build DIR [cmake options...] [--target T]: configure, then build (all, or T)
configure_and_build() {
  local dir=$1; shift
  local opts=() target=()
  while (($#)); do
    if [ "$1" = --target ]; then target=(--target "$2"); shift 2; else opts+=("$1"); shift; fi
  done
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${opts[@]}" >/dev/null
  cmake --build "$dir" -j "$JOBS" "${target[@]}"
}

case "${1:-}" in
  deps)
    install_deps ;;
  run)
    install_deps
    configure_and_build build --target cvae  # the program only: the tests are for ./setup.sh test
    ./build/cvae train --out "runs/cvae-$(date +%Y%m%d-%H%M%S)" "${@:2}" ;;
  test)
    install_deps
    echo "setup: release build, the CUDA kernels on the emulator (CVAE_CUDA=EMULATE): every suite"
    configure_and_build build-emu -DCVAE_WERROR=ON -DCVAE_CUDA=EMULATE
    ctest --test-dir build-emu --output-on-failure -j "$JOBS"
    if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
      echo "setup: the CUDA sources through nvcc (sm_90): the program, the GPU suites and benchmarks link"
      configure_and_build build-nvcc -DCVAE_WERROR=ON -DCVAE_CUDA=ON --target cvae cuda_tests \
        bench_kernels_cuda_gemm bench_kernels_cuda_conv bench_train_step_cuda
      ./build-nvcc/cvae info >/dev/null  # runs without a GPU: falls back, says why
      tests/isa/check_baseline_isa.sh build-nvcc/cvae  # the program runs on any x86-64
    fi
    echo "setup: sanitized tests (AddressSanitizer + UBSan), the GPU suites emulated with each"
    echo "       block's threads in reverse order (CVAE_EMU_ORDER=reverse: exposes missing barriers)"
    configure_and_build build-asan -DCVAE_WERROR=ON -DCVAE_CUDA=EMULATE -DCVAE_BUILD_BENCHMARKS=OFF \
      -DCVAE_SANITIZE=address,undefined
    CVAE_EMU_ORDER=reverse ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure -j "$JOBS"
    echo "setup: fuzzing the readers (libFuzzer + ASan + UBSan, clang), ${CVAE_FUZZ_SECONDS:-60} s per target"
    # Without -Werror: clang warns where gcc does not (e.g. fields only the CUDA build uses).
    CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCVAE_FUZZ=ON \
      -DCVAE_CUDA=OFF -DCVAE_BUILD_TESTS=OFF -DCVAE_BUILD_BENCHMARKS=OFF >/dev/null
    cmake --build build-fuzz -j "$JOBS" --target fuzz_idx fuzz_safetensors fuzz_checkpoint_config
    tests/fuzz/run_fuzzers.sh build-fuzz build-emu/cvae "${CVAE_FUZZ_SECONDS:-60}" ;;
  *)
    sed -n '2,10p' "$0"
    exit 2 ;;
esac
