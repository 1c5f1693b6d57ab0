#!/usr/bin/env bash
# gpu_check.sh: the one script to run on a lent GPU machine, from the repository
# root, with a build folder made elsewhere (it compiles nothing):
#   bash benchmarks/gpu_check.sh [BUILD_DIR]      (default: build)
# Runs, each under a timeout, in about 6 minutes: the GPU test suites, a
# compute-sanitizer memcheck and racecheck pass over a short training run, one
# MNIST epoch (batch 100, latent 50) with timing, and the CUDA benchmarks.
# Logs go to $OUT (the device tool returns what is written there) or /tmp.
# The last lines are a self-contained summary table.
set -u
BUILD=${1:-build}
LOGS=${OUT:-/tmp}/gpu_check
mkdir -p "$LOGS"
declare -a SUMMARY
note() { SUMMARY+=("$1"); }

# The comparison binaries link cuDNN and cuBLAS dynamically (the app does not):
# on a machine that has them only inside Python packages, point the loader there.
NV=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)
if [ -n "$NV" ] && [ -d "$NV" ]; then
  for lib in "$NV"/*/lib; do LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"; done
  export LD_LIBRARY_PATH
fi

echo "== device"
if ! command -v nvidia-smi > /dev/null || ! nvidia-smi -L > "$LOGS/nvidia-smi.txt" 2>&1; then
  note "device            : no nvidia-smi / no GPU"
else
  cat "$LOGS/nvidia-smi.txt"
  note "device            : $(nvidia-smi -L | head -1 | cut -c1-60)"
  note "driver            : $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
fi
"$BUILD/cvae" info | tee "$LOGS/info.txt"

# A dataset: the real MNIST if this checkout has it beside it, Debian's
# Fashion-MNIST, or a small synthetic IDX set written here.
DATA=""
for d in ../shared/data/mnist shared/data/mnist /usr/share/datasets/fashion-mnist; do
  [ -f "$d/train-images-idx3-ubyte.gz" ] && { DATA=$d; break; }
done
if [ -z "$DATA" ]; then
  DATA=$LOGS/synthetic
  mkdir -p "$DATA"
  python3 - "$DATA" <<'PY' || true
import os, random, struct, sys
d = sys.argv[1]
random.seed(0)
for split, n in (("train", 6000), ("t10k", 1000)):
    with open(os.path.join(d, split + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        for _ in range(n):
            v, a = random.random() < 0.5, random.randint(2, 21)
            f.write(bytes(230 if (c if v else r) in range(a, a + 4) else 10 for r in range(28) for c in range(28)))
    with open(os.path.join(d, split + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(n))
PY
fi
echo "== data: $DATA"
note "data              : $DATA"

echo "== GPU test suites"
for t in test_cuda_kernels test_cuda_conv test_cuda_loss_optim test_cuda_training; do
  bin=$BUILD/tests/$t
  if [ ! -x "$bin" ]; then note "$(printf '%-18s: missing' "$t")"; continue; fi
  timeout 120 "$bin" --gtest_brief=1 > "$LOGS/$t.txt" 2>&1
  rc=$?
  # gtest's closing counts: "[  PASSED  ] N tests.", "[  SKIPPED ] N tests,", "[  FAILED  ] N tests,"
  count() { grep -E "^\[  $1 *\] [0-9]+ tests?[.,]" "$LOGS/$t.txt" | head -1 | grep -oE '[0-9]+' | head -1; }
  pass=$(count PASSED); fail=$(count FAILED); skip=$(count SKIPPED)
  pass=${pass:-0}; fail=${fail:-0}; skip=${skip:-0}
  tail -5 "$LOGS/$t.txt"
  note "$(printf '%-20s: rc %d, %d passed, %d failed, %d skipped' "$t" "$rc" "$pass" "$fail" "$skip")"
done

echo "== compute-sanitizer over a short training run"
CS=$(command -v compute-sanitizer || find /usr/local -maxdepth 3 -name compute-sanitizer -type f 2>/dev/null | head -1)
if [ -z "$CS" ]; then
  note "compute-sanitizer : not found on this machine (skipped)"
else
  for tool in memcheck racecheck; do
    run=$(mktemp -d)
    timeout 150 "$CS" --tool "$tool" --error-exitcode 9 "$BUILD/cvae" train --device cuda --data "$DATA" \
      --epochs 1 --limit-train 512 --limit-test 256 --batch-size 32 --out "$run/r" > "$LOGS/sanitizer_$tool.txt" 2>&1
    rc=$?
    errors=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOGS/sanitizer_$tool.txt" | tail -1)
    tail -3 "$LOGS/sanitizer_$tool.txt"
    note "$(printf '%-18s: rc %d, %s' "$tool" "$rc" "${errors:-no summary line}")"
  done
fi

echo "== one epoch on the GPU (batch 100, latent 50)"
run=$(mktemp -d)
timeout 120 "$BUILD/cvae" train --device cuda --data "$DATA" --epochs 1 --batch-size 100 \
  --latent-dim 50 --lr 1e-3 --out "$run/e" > "$LOGS/epoch.txt" 2>&1
rc=$?
tail -3 "$LOGS/epoch.txt"
if [ -f "$run/e/metrics.jsonl" ]; then
  cp "$run/e/metrics.jsonl" "$LOGS/epoch_metrics.jsonl"
  note "epoch (cvae train): rc $rc, $(python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).readline()); print("%.3f s train, %.0f img/s, test ELBO %.2f" % (j["epoch_time_s"], j["images_per_s"], j["test_elbo"]))' "$run/e/metrics.jsonl" 2>/dev/null || head -c 200 "$run/e/metrics.jsonl")"
else
  note "epoch (cvae train): rc $rc, no metrics (see $LOGS/epoch.txt)"
fi

echo "== benchmarks"
for b in bench_train_step_cuda bench_kernels_cuda_conv bench_kernels_cuda_gemm; do
  bin=$BUILD/benchmarks/$b
  [ -x "$bin" ] || { note "$(printf '%-18s: missing' "$b")"; continue; }
  timeout 90 "$bin" > "$LOGS/$b.txt" 2>&1
  rc=$?
  cat "$LOGS/$b.txt"
  note "$(printf '%-18s: rc %d (table in %s)' "$b" "$rc" "$LOGS/$b.txt")"
done

echo "== PyTorch on the same card, same step (if torch is installed here)"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  timeout 120 python3 benchmarks/reference/bench_step_pytorch.py --device cuda --steps 100 \
    > "$LOGS/pytorch_step.txt" 2>&1
  cat "$LOGS/pytorch_step.txt"
  while IFS= read -r line; do note "pytorch  $line"; done < <(grep '^pytorch_train_step' "$LOGS/pytorch_step.txt")
else
  note "pytorch           : torch with CUDA not available here (skipped)"
fi
if [ -f "$LOGS/bench_train_step_cuda.txt" ]; then
  while IFS= read -r line; do note "ours     $line"; done < <(grep '^batch' "$LOGS/bench_train_step_cuda.txt")
fi

echo
echo "================ gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ)) ================"
for line in "${SUMMARY[@]}"; do echo "$line"; done
