#!/usr/bin/env bash
# setup.sh: install what is missing, build, and run the main job or the tests.
#   ./setup.sh run    install, build (Release), train the CVAE on Fashion-MNIST (the main job)
#   ./setup.sh test   install, build with warnings as errors, run every test,
#                     then the same unit tests under AddressSanitizer + UBSan,
#                     then each libFuzzer target for CVAE_FUZZ_SECONDS (60) seconds
#   ./setup.sh deps   only install the Debian packages the build needs
# CUDA kernels are compiled when nvcc is found (CVAE_CUDA=AUTO); no GPU is needed.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(cmake ninja-build g++ libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
          zlib1g-dev libpng-dev libcli11-dev dataset-fashion-mnist)
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

# configure_and_build DIR [cmake options...]
configure_and_build() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}

case "${1:-}" in
  deps)
    install_deps ;;
  run)
    install_deps
    configure_and_build build
    ./build/cvae train --out "runs/cvae-$(date +%Y%m%d-%H%M%S)" "${@:2}" ;;
  test)
    install_deps
    configure_and_build build -DCVAE_WERROR=ON
    ctest --test-dir build --output-on-failure -j "$JOBS"
    echo "setup: sanitized unit tests (AddressSanitizer + UBSan)"
    configure_and_build build-asan -DCVAE_WERROR=ON -DCVAE_CUDA=OFF -DCVAE_BUILD_BENCHMARKS=OFF \
      -DCVAE_SANITIZE=address,undefined
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir build-asan --output-on-failure -j "$JOBS"
    echo "setup: fuzzing the readers (libFuzzer + ASan + UBSan, clang), ${CVAE_FUZZ_SECONDS:-60} s per target"
    # Without -Werror: clang warns where gcc does not (e.g. fields only the CUDA build uses).
    CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=Release -DCVAE_FUZZ=ON \
      -DCVAE_CUDA=OFF -DCVAE_BUILD_TESTS=OFF -DCVAE_BUILD_BENCHMARKS=OFF >/dev/null
    cmake --build build-fuzz -j "$JOBS" --target fuzz_idx fuzz_safetensors fuzz_checkpoint_config
    tests/fuzz/run_fuzzers.sh build-fuzz build/cvae "${CVAE_FUZZ_SECONDS:-60}" ;;
  *)
    sed -n '2,8p' "$0"
    exit 2 ;;
esac
