#!/usr/bin/env bash
# gpu_check.sh: the one script to run on a lent GPU machine, from the repository
# root, with a build folder made elsewhere (it compiles nothing):
#   bash benchmarks/gpu_check.sh [BUILD_DIR]      (default: build)
# Most valuable first, each step under its own time limit, all under the one deadline
# (GPU_CHECK_BUDGET_S, default 345 s + 15 s for the summary: 6 minutes). The limits
# add up to more than the budget: each step gets its limit or what the deadline
# leaves, whichever is less, and a step left under 10 s is skipped and listed so.
#   1. the device (nvidia-smi -L, driver version), `cvae info`, and ldd: every carried
#      binary must find its libraries (the comparison ones link cuDNN/cuBLAS);
#   2. the GPU test suites (test_cuda_kernels, _conv, _loss_optim, _training)    130 s;
#   3. one MNIST-sized epoch (batch 100, latent 50) with `cvae train --device
#      cuda`, the step as one CUDA graph (default), then again with --no-graph  2 x 35 s;
#   4. bench_train_step_cuda: our step eager and as a graph replay (the table's
#      reference: the ratios divide by its graph ms/step at batch 100, latent 50) 20 s;
#   5. PyTorch on the same card (benchmarks/reference/bench_step_pytorch.py, batch
#      100, latent 50, 5 x 200 steps): eager 30 s, the whole step captured in one
#      CUDA graph (--cuda-graph) 30 s, torch.compile of the loss (--compile)      90 s;
#   6. JAX: the whole step as one jit (benchmarks/reference/bench_step_jax.py)    45 s;
#   7. compute-sanitizer memcheck over a short training run                       45 s;
#   8. the kernel benchmarks (conv vs cuDNN, GEMM vs cuBLAS)                   2 x 20 s;
#   9. compute-sanitizer racecheck over the same run                              35 s;
#  10. torch.compile with mode reduce-overhead (its own CUDA graphs)              60 s;
#  11. LAST: a self-contained summary (the device tool returns only the tail), with
#      a table of ms/step and epoch seconds (600 steps) for each of 3-6 and 10, and
#      each one's ratio to our graph step. All FP32: the reference scripts keep
#      TF32 off by default, as our kernels do.
# A reference framework that is missing or fails is reported, not counted as a failure.
# Logs go to $OUT/gpu_check, packed at the end into $OUT/gpu_check_logs.tar.gz (the
# device tool returns what is written under $OUT, at most 8 files), or /tmp/gpu_check.
# Without a GPU (nvidia-smi lists none) it says so, runs the test binaries (they
# skip), skips the rest and exits 0 within seconds. When
# nvidia-smi lists a GPU but the engine cannot use it (a binary that does not start,
# a library not found, `cvae info` without a CUDA device), that is a failure (exit 1);
# so is a failed test, a sanitizer error or a failed epoch.
set -u
BUILD=${1:-build}
BUDGET=${GPU_CHECK_BUDGET_S:-345}
DEADLINE=$((SECONDS + BUDGET))
RESERVE=15  # seconds kept for the summary
LOGS=${OUT:-/tmp}/gpu_check
LOGS_WHERE=$LOGS
[ -n "${OUT:-}" ] && LOGS_WHERE="$OUT/gpu_check_logs.tar.gz (the logs folder, packed at the end)"
mkdir -p "$LOGS"
SCRATCH=$(mktemp -d)  # run folders and synthetic data: not under $OUT (too big to return)
trap 'rm -rf "$SCRATCH"' EXIT
declare -a SUMMARY
note() { SUMMARY+=("$1"); }
FAILURES=0

# The timeout for a step that wants $1 seconds: what the deadline leaves, or
# nothing (prints 0) when under 10 s are left.
budget() {
  local left=$((DEADLINE - SECONDS - RESERVE))
  local t=$1
  ((left < t)) && t=$left
  ((t < 10)) && t=0
  echo "$t"
}
# run_step NAME WANT LOG CMD...: runs CMD under the budget with output in LOG;
# sets RC (124/137: timed out; 125: skipped for lack of time).
run_step() {
  local name=$1 want=$2 log=$3
  shift 3
  local t
  t=$(budget "$want")
  if ((t == 0)); then
    echo "(skipped $name: out of time)" > "$log"
    RC=125
    return
  fi
  local t0=$SECONDS
  timeout -k 5 "$t" "$@" > "$log" 2>&1
  RC=$?
  echo "  [$name: rc $RC, $((SECONDS - t0)) s, limit $t s]"
}
rc_word() {  # a readable exit status
  case $1 in
    0) echo "ok" ;;
    124 | 137) echo "TIMED OUT" ;;
    125) echo "skipped (out of time)" ;;
    *) echo "rc $1" ;;
  esac
}

# The comparison table (ms per step at batch 100, latent 50; an epoch is 600 steps):
# add_row NAME MS EPOCH_S, MS or EPOCH_S empty when not measured. The ratio column
# divides by REF_MS, cvae-engine's graph step (bench_train_step_cuda's replay, or the
# graph epoch's time per step when that benchmark gave nothing).
declare -a ROW_NAME ROW_MS ROW_EPOCH
add_row() { ROW_NAME+=("$1"); ROW_MS+=("$2"); ROW_EPOCH+=("$3"); }
REF_MS=""
REF_WHAT=""
# ms_of LOG: the ms/step of the "batch 100 latent 50:" line of a reference script's log.
ms_of() { sed -nE 's/.*batch +100 +latent +50: +([0-9.]+) ms\/step.*/\1/p' "$1" 2> /dev/null | head -1; }
# mul A B / div A B: floating point by awk (empty when an operand is empty).
mul() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", a * b }'; }
div() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.4f", a / b }'; }
print_table() {
  ((${#ROW_NAME[@]})) || return 0
  echo "comparison            : batch 100, latent 50, FP32 (no TF32), same card; x = ms/step over ${REF_WHAT:-cvae graph step}"
  printf '  %-38s %10s %10s %8s\n' "what" "ms/step" "epoch s" "x cvae"
  local i ms ep r
  for i in "${!ROW_NAME[@]}"; do
    ms=${ROW_MS[$i]}
    ep=${ROW_EPOCH[$i]}
    r=$(div "$ms" "$REF_MS")
    printf '  %-38s %10s %10s %8s\n' "${ROW_NAME[$i]}" "$( [ -n "$ms" ] && printf '%.3f' "$ms" || echo -)" \
      "$( [ -n "$ep" ] && printf '%.3f' "$ep" || echo -)" "$( [ -n "$r" ] && printf '%.2f' "$r" || echo -)"
  done
}
# pack_logs: under the device tool, the logs as one archive (it returns at most 8 files).
pack_logs() {
  [ -n "${OUT:-}" ] && [ -d "$LOGS" ] || return 0
  tar -czf "$OUT/gpu_check_logs.tar.gz" -C "$LOGS" . 2> /dev/null && rm -rf "$LOGS"
}

# The comparison binaries link cuDNN and cuBLAS dynamically (the app does not):
# on a machine that has them only inside Python packages, point the loader there.
NV=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]) + "/nvidia")' 2>/dev/null || true)
if [ -n "$NV" ] && [ -d "$NV" ]; then
  for lib in "$NV"/*/lib; do LD_LIBRARY_PATH="$lib:${LD_LIBRARY_PATH:-}"; done
  export LD_LIBRARY_PATH
fi

echo "== 1. device (build folder: $BUILD, budget ${BUDGET} s, logs in $LOGS)"
GPU=0
SMI_GPU=0  # nvidia-smi lists a GPU: from here on, anything that keeps us from using it fails
if command -v nvidia-smi > /dev/null && timeout 30 nvidia-smi -L > "$LOGS/nvidia-smi.txt" 2>&1 \
  && grep -q '^GPU' "$LOGS/nvidia-smi.txt"; then
  GPU=1
  SMI_GPU=1
  cat "$LOGS/nvidia-smi.txt"
  note "device                : $(head -1 "$LOGS/nvidia-smi.txt" | cut -c1-70)"
  note "driver                : $(timeout 30 nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader | head -1)"
else
  note "device                : no GPU (nvidia-smi missing or lists none)"
fi
# Every carried binary must find its shared libraries, or it cannot even start.
for bin in "$BUILD/cvae" "$BUILD"/tests/test_cuda_* "$BUILD"/benchmarks/bench_*cuda*; do
  [ -x "$bin" ] || continue
  missing=$(ldd "$bin" 2> /dev/null | grep 'not found' | awk '{print $1}' | tr '\n' ' ')
  if [ -n "$missing" ]; then
    note "$(printf '%-22s: CANNOT START, libraries not found: %s' "$(basename "$bin")" "$missing")"
    ((SMI_GPU)) && FAILURES=$((FAILURES + 1))
  fi
done
if [ -x "$BUILD/cvae" ]; then
  timeout 30 "$BUILD/cvae" info > "$LOGS/info.txt" 2>&1
  info_rc=$?
  cat "$LOGS/info.txt"
  cuda_line=$(grep -E '^ *cuda:' "$LOGS/info.txt" | head -1 | sed 's/^ *//')
  note "engine                : ${cuda_line:-no 'cuda:' line in cvae info (rc $info_rc: $(tail -1 "$LOGS/info.txt" | cut -c1-60))}"
  # The engine is the judge: a GPU that nvidia-smi lists but CUDA cannot use is a
  # failure to report (a binary that does not start, a driver too old), not "no GPU".
  if [ -n "$cuda_line" ] && ! grep -qE 'cuda: none|emulated' <<< "$cuda_line"; then GPU=1; else GPU=0; fi
  if ((SMI_GPU && !GPU)); then
    note "engine                : FAILURE: nvidia-smi lists a GPU, the engine cannot use it"
    FAILURES=$((FAILURES + 1))
  fi
else
  note "engine                : $BUILD/cvae missing (build with benchmarks/gpu_bundle.sh and carry it)"
  if ((SMI_GPU)); then FAILURES=$((FAILURES + 1)); GPU=0; fi
fi

# A dataset: the real MNIST if this checkout has it beside it, Debian's
# Fashion-MNIST, or an MNIST-sized synthetic IDX set (bars via python3, or
# random bytes when there is no python3).
DATA=""
for d in ${GPU_CHECK_DATA:-} ../shared/data/mnist shared/data/mnist data/mnist /usr/share/datasets/fashion-mnist; do
  if [ -f "$d/train-images-idx3-ubyte.gz" ] || [ -f "$d/train-images-idx3-ubyte" ]; then
    DATA=$d
    break
  fi
done
if [ -z "$DATA" ] && ((GPU)); then
  DATA=$SCRATCH/synthetic
  mkdir -p "$DATA"
  if ! python3 - "$DATA" 2> /dev/null <<'PY'; then
import os, random, struct, sys
d = sys.argv[1]
random.seed(0)
# 2 orientations x 22 positions of a 4-pixel bar, as 784-byte images
bars = []
for vertical in (False, True):
    for a in range(2, 24):
        bars.append(bytes(230 if a <= (c if vertical else r) < a + 4 else 10
                          for r in range(28) for c in range(28)))
for split, n in (("train", 60000), ("t10k", 10000)):
    with open(os.path.join(d, split + "-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28))
        f.write(b"".join(random.choice(bars) for _ in range(n)))
    with open(os.path.join(d, split + "-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(n))
PY
    # No python3: big-endian IDX headers by printf, pixels from /dev/urandom, labels 0.
    # 60000 = 0x0000ea60, 10000 = 0x00002710, 28 = 0x1c.
    { printf '\x00\x00\x08\x03\x00\x00\xea\x60\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c $((60000 * 784)) /dev/urandom; } \
      > "$DATA/train-images-idx3-ubyte"
    { printf '\x00\x00\x08\x01\x00\x00\xea\x60'; head -c 60000 /dev/zero; } > "$DATA/train-labels-idx1-ubyte"
    { printf '\x00\x00\x08\x03\x00\x00\x27\x10\x00\x00\x00\x1c\x00\x00\x00\x1c'; head -c $((10000 * 784)) /dev/urandom; } \
      > "$DATA/t10k-images-idx3-ubyte"
    { printf '\x00\x00\x08\x01\x00\x00\x27\x10'; head -c 10000 /dev/zero; } > "$DATA/t10k-labels-idx1-ubyte"
    DATA_KIND="synthetic random bytes (no python3), 60000/10000"
  else
    DATA_KIND="synthetic bars (python3), 60000/10000"
  fi
fi
echo "== data: ${DATA:-none}"
note "data                  : ${DATA:-none} ${DATA_KIND:-}"

echo "== 2. GPU test suites"
# gtest's closing counts: "[  PASSED  ] N tests.", "[  SKIPPED ] N tests,", "[  FAILED  ] N tests,"
count() { grep -E "^\[ *$1 *\] [0-9]+ tests?[.,]" "$2" | head -1 | grep -oE '[0-9]+' | head -1; }
for spec in test_cuda_kernels:25 test_cuda_conv:25 test_cuda_loss_optim:20 test_cuda_training:60; do
  t=${spec%%:*}
  bin=$BUILD/tests/$t
  if [ ! -x "$bin" ]; then
    note "$(printf '%-22s: MISSING (%s)' "$t" "$bin")"
    ((GPU)) && FAILURES=$((FAILURES + 1))
    continue
  fi
  log=$LOGS/$t.txt
  run_step "$t" "${spec##*:}" "$log" "$bin" --gtest_brief=1
  pass=$(count PASSED "$log")
  fail=$(count FAILED "$log")
  skip=$(count SKIPPED "$log")
  tail -4 "$log"
  # failed tests by name (gtest prints each twice: with its time, then in the list)
  failed=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$log" | sed -E 's/^\[  FAILED  \] //; s/ \([0-9]+ ms\)$//' | sort -u)
  note "$(printf '%-22s: %s, %d passed, %d failed, %d skipped' "$t" "$(rc_word "$RC")" "${pass:-0}" "${fail:-0}" "${skip:-0}")"
  [ -n "$failed" ] && while IFS= read -r f; do note "    failed: $f"; done < <(head -6 <<< "$failed")
  if [ "$RC" != 0 ] && ((GPU)); then FAILURES=$((FAILURES + 1)); fi
done
peak=$(grep -h 'peak GPU memory' "$LOGS/test_cuda_training.txt" 2> /dev/null | head -1 | sed 's/^ *//')
[ -n "$peak" ] && note "memory                : $peak"

if ((GPU == 0)); then
  note "epochs, comparisons (PyTorch, JAX), benchmarks, sanitizers: skipped (no usable GPU here)"
  echo
  echo "================ gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), ${SECONDS} s) ================"
  for line in "${SUMMARY[@]}"; do echo "$line"; done
  if ((SMI_GPU)); then
    echo "verdict               : FAILURE: a GPU is present but the engine could not use it (see above)"
    pack_logs
    exit 1
  fi
  echo "verdict               : NO GPU: nothing was measured (test binaries skip); exit 0"
  pack_logs
  exit 0
fi

# epoch_run TAG LIMIT [FLAGS...]: one epoch of `cvae train` at batch 100, latent 50;
# its metrics line into the summary and its time into the table.
epoch_run() {
  local tag=$1 want=$2 log=$LOGS/epoch$1.txt dir=$SCRATCH/epoch$1 label
  shift 2
  label="epoch (cvae train${*:+ $*})"
  run_step "epoch$tag" "$want" "$log" "$BUILD/cvae" train --device cuda --data "$DATA" --epochs 1 \
    --batch-size 100 --latent-dim 50 --lr 1e-3 --out "$dir" "$@"
  tail -3 "$log"
  if [ -f "$dir/metrics.jsonl" ]; then
    cp "$dir/metrics.jsonl" "$LOGS/epoch${tag}_metrics.jsonl"
    local m line ep steps
    m=$(python3 -c 'import json,sys; j=json.loads(open(sys.argv[1]).readline()); print("%.3f s train, %.0f img/s, test ELBO %.2f, graph %s, %.1f kernels %.2f copies %.3f syncs a step" % (j["epoch_time_s"], j["images_per_s"], j["test_elbo"], j.get("cuda_graph"), j.get("kernels_per_step", -1), j.get("copies_per_step", -1), j.get("host_syncs_per_step", -1)))' \
      "$dir/metrics.jsonl" 2> /dev/null) \
      || m=$(head -1 "$dir/metrics.jsonl" | grep -oE '"(epoch_time_s|images_per_s|test_elbo)": *[-0-9.e+]+' | tr '\n' ' ')
    note "$(printf '%-22s: %s, %s' "$label" "$(rc_word "$RC")" "$m")"
    line=$(head -1 "$dir/metrics.jsonl")
    ep=$(grep -oE '"epoch_time_s": *[0-9.e+-]+' <<< "$line" | grep -oE '[0-9.e+-]+$')
    steps=$(grep -oE '"step": *[0-9]+' <<< "$line" | grep -oE '[0-9]+$')
    add_row "cvae train, 1 epoch${*:+, $*}" "$(div "$(mul "$ep" 1000)" "$steps")" "$ep"
  else
    note "$(printf '%-22s: %s, no metrics.jsonl (see %s: %s)' "$label" "$(rc_word "$RC")" "$(basename "$log")" "$(tail -1 "$log" | cut -c1-80)")"
    add_row "cvae train, 1 epoch${*:+, $*}" "" ""
  fi
  [ "$RC" != 0 ] && FAILURES=$((FAILURES + 1))
}

# ref_step TAG NAME LIMIT SCRIPT [ARGS...]: a reference script's step at batch 100,
# latent 50 on the GPU, 5 repeats of 200 steps; its line into the summary and the
# table. A reference that fails is reported, not counted as our failure.
ref_step() {
  local tag=$1 name=$2 want=$3 script=$4 log=$LOGS/ref_$1.txt ms
  shift 4
  run_step "$tag" "$want" "$log" env PYTHONUNBUFFERED=1 python3 "benchmarks/reference/$script" \
    --device cuda --shapes 100x50 --steps 200 "$@"
  tail -4 "$log"
  ms=$(ms_of "$log")
  if [ -n "$ms" ]; then
    note "$(printf '%-22s: %s' "$tag" "$(grep -E '_train_step .*batch +100 +latent +50:' "$log" | head -1 | sed -E 's/^[a-z]+_train_step cuda //')")"
  else
    note "$(printf '%-22s: %s, no result line (%s: %s)' "$tag" "$(rc_word "$RC")" "$(basename "$log")" "$(grep -v '^ *$' "$log" | tail -1 | cut -c1-90)")"
  fi
  add_row "$name" "$ms" "$(mul "$ms" 0.6)"
}
TORCH_CUDA=0
python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2> /dev/null && TORCH_CUDA=1
JAX_OK=0
python3 -c 'import jax' 2> /dev/null && JAX_OK=1

echo "== 3. one epoch on the GPU (batch 100, latent 50): the CUDA graph (default), then --no-graph"
epoch_run "" 35
epoch_run _nograph 35 --no-graph

echo "== 4. cvae-engine's step: eager and graph replay (the table's reference)"
b=bench_train_step_cuda
if [ -x "$BUILD/benchmarks/$b" ]; then
  run_step "$b" 20 "$LOGS/$b.txt" "$BUILD/benchmarks/$b"
  cat "$LOGS/$b.txt"
  note "$(printf '%-22s: %s (table in %s.txt)' "$b" "$(rc_word "$RC")" "$b")"
  while IFS= read -r line; do note "  ours    $line"; done < <(grep '^batch' "$LOGS/$b.txt")
  # "batch 100 latent 50 | eager ms img/s | graph ms img/s | ..."
  row=$(grep -E '^batch +100 +latent +50 ' "$LOGS/$b.txt" | head -1)
  e_ms=$(awk -F'|' '{ split($2, a, " "); print a[1] }' <<< "$row")
  g_ms=$(awk -F'|' '{ split($3, a, " "); print a[1] }' <<< "$row")
  add_row "cvae step bench, eager" "$e_ms" "$(mul "$e_ms" 0.6)"
  add_row "cvae step bench, CUDA graph replay" "$g_ms" "$(mul "$g_ms" 0.6)"
  [ -n "$g_ms" ] && { REF_MS=$g_ms; REF_WHAT="cvae step bench, CUDA graph replay"; }
else
  note "$(printf '%-22s: missing' "$b")"
fi
if [ -z "$REF_MS" ] && [ -n "${ROW_MS[0]:-}" ]; then
  REF_MS=${ROW_MS[0]}
  REF_WHAT="cvae train graph epoch per step"
fi

echo "== 5. PyTorch on the same card: eager, the whole step as one CUDA graph, torch.compile"
if ((TORCH_CUDA)); then
  ref_step pytorch_eager "pytorch eager" 30 bench_step_pytorch.py
  ref_step pytorch_cudagraph "pytorch, whole step in a CUDA graph" 30 bench_step_pytorch.py --cuda-graph
  ref_step pytorch_compile "pytorch torch.compile (loss)" 90 bench_step_pytorch.py --compile
else
  note "pytorch               : torch with CUDA not available here (skipped)"
fi

echo "== 6. JAX: the step as one jit"
if ((JAX_OK)); then
  ref_step jax_jit "jax jit (whole step)" 45 bench_step_jax.py
else
  note "jax                   : jax not importable here (skipped)"
fi

# compute-sanitizer: on PATH, in a CUDA toolkit, named by CVAE_COMPUTE_SANITIZER, or
# from the pip wheel nvidia-cuda-sanitizer-api (a folder that could be carried).
CS=${CVAE_COMPUTE_SANITIZER:-$(command -v compute-sanitizer)}
if [ -z "$CS" ]; then
  for c in /usr/local/cuda*/bin/compute-sanitizer /usr/local/cuda*/compute-sanitizer/compute-sanitizer \
    "${NV:-/nonexistent}"/cuda_sanitizer_api/compute-sanitizer/compute-sanitizer; do
    [ -x "$c" ] && { CS=$c; break; }
  done
fi
# sanitize TOOL SECONDS: the tool over a short training run (256 images, batch 32).
sanitize() {
  local tool=$1 log=$LOGS/sanitizer_$1.txt
  if [ -z "$CS" ]; then
    note "$(printf '%-22s: compute-sanitizer not found on this machine (skipped)' "$tool")"
    return
  fi
  run_step "$tool" "$2" "$log" "$CS" --tool "$tool" --error-exitcode 9 --print-limit 20 \
    "$BUILD/cvae" train --device cuda --data "$DATA" --epochs 1 --limit-train 256 --limit-test 128 \
    --batch-size 32 --out "$SCRATCH/sanitizer_$tool"
  local summary
  summary=$(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1 | sed 's/^=* *//')
  tail -3 "$log"
  note "$(printf '%-22s: %s, %s' "$tool" "$(rc_word "$RC")" "${summary:-no summary line}")"
  if [ "$RC" = 9 ]; then FAILURES=$((FAILURES + 1)); fi
}

echo "== 7. compute-sanitizer memcheck over a short training run"
sanitize memcheck 45

echo "== 8. kernel benchmarks (conv vs cuDNN, GEMM vs cuBLAS)"
for b in bench_kernels_cuda_conv bench_kernels_cuda_gemm; do
  bin=$BUILD/benchmarks/$b
  [ -x "$bin" ] || { note "$(printf '%-22s: missing' "$b")"; continue; }
  run_step "$b" 20 "$LOGS/$b.txt" "$bin"
  cat "$LOGS/$b.txt"
  note "$(printf '%-22s: %s (table in %s.txt)' "$b" "$(rc_word "$RC")" "$b")"
done

echo "== 9. compute-sanitizer racecheck over the same run"
sanitize racecheck 35

echo "== 10. torch.compile with CUDA graphs (mode reduce-overhead), if time is left"
if ((TORCH_CUDA)); then
  ref_step pytorch_compile_ro "pytorch torch.compile reduce-overhead" 60 bench_step_pytorch.py \
    --compile --compile-mode reduce-overhead
fi

echo
echo "================ gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), ${SECONDS} s) ================"
for line in "${SUMMARY[@]}"; do echo "$line"; done
print_table
if ((FAILURES)); then
  echo "verdict               : $FAILURES FAILURE(S): see the lines above and the logs in $LOGS_WHERE"
  pack_logs
  exit 1
fi
echo "verdict               : all ran clean (timeouts and skips are listed above)"
pack_logs
exit 0
