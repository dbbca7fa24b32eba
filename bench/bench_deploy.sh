#!/bin/sh
# Deployment benchmark (docs/deployment.md): decode and evaluation tokens/s,
# peak RSS and resident weight memory of fp32, bf16 and RTN .dlq 4/3/2-bit
# versions of (a) models/english-mix-7M and (b) a TinyLlama-1.1B-shaped model
# with seeded random weights (dim 2048, 22 layers, 32/4 heads, MLP 5632, vocab
# 32000, untied head); the packed decode kernel's GB/s against a STREAM-style
# triad measured in the same run. Every variant runs in a fresh process.
#
#   sh bench/bench_deploy.sh            full run (~5 GB of temporary model files)
#   sh bench/bench_deploy.sh --short    4 layers, fewer tokens (while developing)
#
# Environment: DIR=folder for the generated models (kept, and reused when
# present; default: a temporary folder removed at the end), GROUP (64),
# PARAM (f16|f32 group parameters, f16), HEAD_BITS (8; 0 = bf16 head).
set -eu
cd "$(dirname "$0")/.."
SHORT=0
[ "${1:-}" = "--short" ] && SHORT=1
make -s build/bench/bench_deploy
B=build/bench/bench_deploy
KEEP=1
if [ -z "${DIR:-}" ]; then DIR=$(mktemp -d /tmp/bench_deploy.XXXXXX); KEEP=0; fi
GROUP=${GROUP:-64}; PARAM=${PARAM:-f16}; HEAD_BITS=${HEAD_BITS:-8}
if [ $SHORT = 1 ]; then LAYERS=4; PROMPT=32; DECODE=8; TL=$DIR/tl-short
else LAYERS=22; PROMPT=128; DECODE=32; TL=$DIR/tl; fi
mkdir -p out
OUT=out/bench-deploy.jsonl
: > "$OUT"
echo "== $(date -u) $(uname -m), $(nproc) cores, threads ${OMP_NUM_THREADS:-$(nproc)}; load: $(uptime | sed 's/.*load average: //')"
echo "triad: $($B triad --mib 256 --reps 10)   (each run below measures its own, right after its kernel pass)"

run() { # name model [env...]
    name=$1; model=$2; shift 2
    env "$@" $B run --model "$model" --name "$name" --prompt "$PROMPT" --decode "$N" --json "$OUT" > /dev/null
}

# (a) english-mix-7M: bf16 as shipped, fp32 and RTN .dlq written from it (more decode
# steps: one step of this model takes about a millisecond)
N=256
[ -f "$DIR/em/w2.dlq" ] || $B make --out "$DIR/em" --from models/english-mix-7M --group "$GROUP" --param "$PARAM" \
    --head-bits "$HEAD_BITS"
run em/fp32 "$DIR/em/fp32"
run em/bf16 models/english-mix-7M
for b in 4 3 2; do
    run em/w$b "$DIR/em/w$b.dlq"
    run em/w$b-f32act "$DIR/em/w$b.dlq" DLQ_QACT=f32
done

# (b) TinyLlama-1.1B shape, random weights
N=$DECODE
[ -f "$TL/w2.dlq" ] || $B make --out "$TL" --tinyllama --layers "$LAYERS" --group "$GROUP" --param "$PARAM" \
    --head-bits "$HEAD_BITS"
run tl/fp32 "$TL/fp32"
run tl/bf16 "$TL/bf16"
for b in 4 3 2; do
    run tl/w$b "$TL/w$b.dlq"
    run tl/w$b-f32act "$TL/w$b.dlq" DLQ_QACT=f32
done
for f in "$TL"/fp32/model.safetensors "$TL"/bf16/model.safetensors "$TL"/w4.dlq "$TL"/w3.dlq "$TL"/w2.dlq; do
    [ -f "$f" ] && awk -v f="$f" -v s="$(stat -c %s "$f")" 'BEGIN { printf "  %-60s %9.1f MiB\n", f, s / 1048576 }'
done

echo
$B table "$OUT"
echo "== done $(date -u); load: $(uptime | sed 's/.*load average: //'); JSON lines: $OUT"
[ $KEEP = 1 ] || rm -rf "$DIR"
