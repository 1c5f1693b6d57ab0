#!/usr/bin/env bash
# run_fuzzers.sh: runs each libFuzzer target for a bounded time from the seed
# corpus (make_corpus.sh) plus the kept regression inputs, and reports what
# each ran (time, executions) and found. A finding fails the script; its
# input is left in BUILD_FUZZ/fuzz-findings/ (fix the bug, then move it into
# tests/fuzz/regressions/TARGET/ so every build replays it).
#   tests/fuzz/run_fuzzers.sh BUILD_FUZZ CVAE_BINARY [SECONDS_PER_TARGET]
set -uo pipefail
build=$(realpath "$1")
cvae=$2
seconds=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
findings=$build/fuzz-findings
mkdir -p "$findings"
"$here/make_corpus.sh" "$cvae" "$work/seeds" || exit 1
# One target: its result line into $work/$t.result, its verdict (0: no finding) into $work/$t.rc.
fuzz_one() {
  local t=$1 corpus=$work/corpus/$1 log=$work/$1.log dict=() rc runs cov stalled unit
  mkdir -p "$corpus"
  cp "$work/seeds/$t"/* "$corpus"/
  cp "$here/regressions/$t"/* "$corpus"/ 2>/dev/null || true
  [ "$t" = idx ] || dict=(-dict="$here/json.dict")
  # -rss_limit_mb: a reader that allocates what a header claims is a finding. -timeout: a
  # hang; generous, since a loaded machine can stall a process for seconds.
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -max_len=1048576 \
    "${dict[@]}" -print_final_stats=1 -artifact_prefix="$findings/$t-" "$corpus" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
  stalled=""
  if [ "$rc" -ne 0 ] && grep -q 'libFuzzer: timeout' "$log"; then
    # A timeout is a hang only if the input hangs again: on a loaded machine a
    # process can be stalled for a minute by others (seen on shared machines).
    unit=$(grep -o "Test unit written to .*" "$log" | sed 's/Test unit written to //' | tail -1)
    if [ -n "$unit" ] && timeout 60 "$build/tests/fuzz/fuzz_$t" "$unit" >/dev/null 2>&1; then
      stalled=" (stopped early: the machine stalled the process past -timeout; the input runs at once when rerun)"
      rc=0
    fi
  fi
  if [ "$rc" -eq 0 ]; then
    echo "fuzz_$t: ${seconds} s, $runs executions, coverage $cov edges, $(ls "$corpus" | wc -l) corpus inputs: no findings$stalled" >"$work/$t.result"
  else
    { echo "fuzz_$t: FINDING after $runs executions (exit $rc); input and log in $findings:"
      grep -E 'ERROR|SUMMARY|Test unit written|terminate called|what\(\)' "$log" | head -8; } >"$work/$t.result"
    cp "$log" "$findings/$t.log"
  fi
  echo "$rc" >"$work/$t.rc"
}

# The targets run side by side (each is one process): the time bound is per target, so
# CI waits about SECONDS in all rather than three times that.
targets=(idx safetensors checkpoint_config)
for t in "${targets[@]}"; do fuzz_one "$t" & done
wait
failed=0
for t in "${targets[@]}"; do
  cat "$work/$t.result"
  [ "$(cat "$work/$t.rc" 2>/dev/null)" = 0 ] || failed=1
done
exit "$failed"
