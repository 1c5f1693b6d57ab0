#!/usr/bin/env bash
# make_corpus.sh: the fuzzers' seed corpus, made from valid files: small IDX
# files (raw and gzip, images and labels), the repository's safetensors
# fixtures, and checkpoints that `cvae train` writes on a tiny dataset (their
# headers are the seeds of the run-configuration target).
#   tests/fuzz/make_corpus.sh CVAE_BINARY OUT_DIR
# No random bytes: the same seeds every time (but for the temporary paths in them).
set -euo pipefail
cvae=$(realpath "$1")
out=$2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"/idx "$out"/safetensors "$out"/checkpoint_config
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Bytes from their values: the inner printf writes escapes, %b turns them into bytes.
bytes() { printf '%b' "$(printf '\\x%02x' "$@")"; }
be32() { bytes $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) $(($1 & 255)); }
# N 28x28 images, alternately dark above and light below, and the other way.
images() {
  be32 2051; be32 "$1"; be32 28; be32 28
  for ((i = 0; i < $1; i++)); do
    if ((i % 2)); then head -c 392 /dev/zero; head -c 392 /dev/zero | tr '\0' '\377'
    else head -c 392 /dev/zero | tr '\0' '\377'; head -c 392 /dev/zero; fi
  done
}
labels() { be32 2049; be32 "$1"; for ((i = 0; i < $1; i++)); do bytes $((i % 2)); done; }

data=$work/data
mkdir -p "$data"
images 8 >"$data/train-images-idx3-ubyte"
labels 8 >"$data/train-labels-idx1-ubyte"
images 4 >"$data/t10k-images-idx3-ubyte"
labels 4 >"$data/t10k-labels-idx1-ubyte"
images 2 >"$out/idx/images-2"
labels 3 >"$out/idx/labels-3"
{ be32 2051; be32 1; be32 2; be32 3; printf 'abcdef'; } >"$out/idx/images-1x2x3"
gzip -9cn "$out/idx/images-2" >"$out/idx/images-2.gz"
gzip -9cn "$out/idx/labels-3" >"$out/idx/labels-3.gz"

for f in relu bias_add linear kl_normal adam; do cp "$here/../fixtures/$f.safetensors" "$out/safetensors/"; done

# Checkpoints of every model kind (one epoch), and one stopped in mid-epoch.
header() {  # the JSON header of a safetensors file
  local len
  len=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
  head -c $((8 + len)) "$1" | tail -c "$len"  # (head first: no SIGPIPE under pipefail)
}
for spec in "cvae 2" "vae-mlp 2" "ae-mlp 4" "ae-conv 2"; do
  set -- $spec
  run=$work/run-$1
  "$cvae" train --data "$data" --out "$run" --model "$1" --latent-dim "$2" --epochs 1 --batch-size 4 \
    --device cpu >/dev/null </dev/null
  header "$run/checkpoint.safetensors" >"$out/checkpoint_config/$1.json"
done
cp "$work/run-cvae/checkpoint.safetensors" "$out/safetensors/cvae-checkpoint.safetensors"
# Stopped mid-epoch: the failpoint holds step 1 until the Ctrl-C arrives.
run=$work/run-stopped
CVAE_FAILPOINT=pause@train-step:1 "$cvae" train --data "$data" --out "$run" --epochs 2 --batch-size 4 \
  --on-nonfinite skip --device cpu >"$work/log" 2>&1 </dev/null &
pid=$!
until grep -q "failpoint" "$work/log"; do sleep 0.05; done
kill -INT "$pid"
wait "$pid" || true
header "$run/checkpoint.safetensors" >"$out/checkpoint_config/cvae-stopped.json"
echo "make_corpus: $(find "$out" -type f | wc -l) seed files in $out"
