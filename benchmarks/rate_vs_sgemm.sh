#!/bin/bash
# rate_vs_sgemm.sh: issue 7's third target, the batch-100 training step's arithmetic rate
# against the sgemm rate of our GEMM on the same machine, measured alternately: each round,
# for each CPU code path, bench_train_step (its GFLOP/s: the step's FLOPs counted from
# the layer shapes, 3.448 GFLOP at batch 100), then bench_kernels_cpu's square_512 GEMM.
# Prints every round and, per path, the medians and the median of the per-round ratios.
# Both run on 2 threads (the machines this project targets have 2 cores).
#
#   benchmarks/rate_vs_sgemm.sh [BUILD_DIR [ROUNDS [PATHS]]]
#   e.g. benchmarks/rate_vs_sgemm.sh build-dev 5 "avx512 avx2"
#
# Exit codes: 0 done, 2 bad arguments or a benchmark that did not run.
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
build=${1:-build}
rounds=${2:-5}
paths=${3:-"avx512 avx2"}
step_bin=$build/benchmarks/bench_train_step
gemm_bin=$build/benchmarks/bench_kernels_cpu
for b in "$step_bin" "$gemm_bin"; do
  [[ -x "$b" ]] || { echo "rate_vs_sgemm: $b not built" >&2; exit 2; }
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "rate_vs_sgemm: rounds must be a positive integer" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
# The GEMM's GFLOP/s from Google Benchmark's JSON (its console form abbreviates 1000 as 1k).
median_gflops() {
  python3 -c 'import json, sys
runs = [b for b in json.load(sys.stdin)["benchmarks"] if b.get("aggregate_name") == "median"]
print("%.1f" % runs[0]["GFLOP/s"])'
}
for r in $(seq "$rounds"); do
  for isa in $paths; do
    step=$(CVAE_CPU_ISA=$isa "$step_bin" --shapes 100x50 --steps 30 --threads 2 | grep 'batch 100') ||
      { echo "rate_vs_sgemm: bench_train_step failed on $isa" >&2; exit 2; }
    ms=$(grep -o '[0-9.]* ms/step' <<<"$step" | cut -d' ' -f1) &&
      step_gf=$(grep -o '[0-9.]* GFLOP/s' <<<"$step" | cut -d' ' -f1) ||
      { echo "rate_vs_sgemm: cannot read bench_train_step's line: $step" >&2; exit 2; }
    gemm_gf=$(CVAE_CPU_ISA=$isa OMP_NUM_THREADS=2 "$gemm_bin" --benchmark_filter='^BM_Gemm/square_512' \
                --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
                --benchmark_format=json 2>/dev/null | median_gflops) ||
      { echo "rate_vs_sgemm: bench_kernels_cpu failed on $isa" >&2; exit 2; }
    echo "round $r $isa step $ms ms ($step_gf GFLOP/s) sgemm $gemm_gf GFLOP/s" | tee -a "$out"
  done
done
python3 - "$out" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[2], []).append((float(f[4]), float(f[6].strip('(')), float(f[9])))
for isa, r in rows.items():
    ratios = [s / g for _, s, g in r]
    print(f"{isa}: step {statistics.median(x[0] for x in r):.2f} ms, sgemm "
          f"{statistics.median(x[2] for x in r):.1f} GFLOP/s, rate/sgemm per round "
          + ", ".join(f"{q:.2f}" for q in ratios) + f", median {statistics.median(ratios):.2f}")
EOF
