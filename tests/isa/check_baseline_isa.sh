#!/usr/bin/env bash
# check_baseline_isa.sh BINARY: fails if any function of BINARY outside the per-ISA kernels
# (the GEMM, the one-channel convs: namespaces cvae::kernels::cpu::avx2 / ::avx512) uses
# AVX or AVX-512 registers, i.e. if the build would not run on an x86-64 CPU without AVX2
# (a -march flag, or an inline function from a per-ISA translation unit picked by the linker).
set -euo pipefail
bin=$1
command -v objdump >/dev/null || { echo "check_baseline_isa: objdump not found"; exit 2; }
bad=$(objdump -d --no-show-raw-insn -C "$bin" |
  awk '/^[0-9a-f]+ <.*>:$/ {fn=$0; next} /%[yz]mm|%k[0-7]/ {print fn}' |
  grep -v -e 'cvae::kernels::cpu::avx2::' -e 'cvae::kernels::cpu::avx512::' | sort -u || true)
if [ -n "$bad" ]; then
  echo "check_baseline_isa: $bin: AVX code outside the dispatched kernels in:"
  echo "$bad" | head -20
  exit 1
fi
echo "check_baseline_isa: $bin: only the dispatched kernels use AVX2/AVX-512"
