#!/bin/sh
# The comparison tables of issue 6 (docs/baselines.md): english-mix-7M at
# W3 g64 and W4 g128, every method on the same data, step budget and
# evaluation, by `dlqat compare`. Needs ../shared for the full text (DATA /
# VALID; the repo's data/sample files work too).
#   sh scripts/run_compare.sh [WORKROOT]
# Environment: P1 (phase-1 steps, 30), P2 (phase-2 steps, 70), B (8), T (64),
# LR (5e-4), LRSB (1e-4), LRQAT (5e-5), WINDOWS (perplexity windows of 512
# tokens, 40), CONFIGS ("3:64 4:128"), PARALLEL (1: the configurations run at
# the same time, one thread each; 0: one after the other with all threads),
# EXTRA (more compare flags; default --recompute).
# Everything goes to WORKROOT/compare-wNgG (default out/); the small files
# (tables, JSON, plots, logs) are copied to docs/results/compare-wNgG.
# Results already in WORKROOT are reused, so a stopped run continues.
set -eu
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive
WORK=${1:-out}
DATA=${DATA:-../shared/data/text/english-mix/train.txt}
VALID=${VALID:-../shared/data/text/english-mix/valid.txt}
M=models/english-mix-7M
P1=${P1:-30}; P2=${P2:-70}; B=${B:-8}; T=${T:-64}; LR=${LR:-5e-4}; LRSB=${LRSB:-1e-4}; LRQAT=${LRQAT:-5e-5}
WINDOWS=${WINDOWS:-40}; CONFIGS=${CONFIGS:-"3:64 4:128"}; PARALLEL=${PARALLEL:-1}; EXTRA=${EXTRA:---recompute}
mkdir -p "$WORK"
uptime
one() {
    bits=$1; g=$2
    dir="$WORK/compare-w${bits}g${g}"
    # shellcheck disable=SC2086
    ./build/dlqat compare --model "$M" --bits "$bits" --group "$g" --methods rtn,gptq,qalora,qat,dlqat \
        --data "$DATA" --eval-text "$VALID" --ctx 512 --eval-windows "$WINDOWS" \
        --phase1-steps "$P1" --steps "$P2" --batch "$B" --seq "$T" --lr "$LR" --lr-sb "$LRSB" --lr-qat "$LRQAT" \
        --seed 1 $EXTRA --out "$dir" > "$WORK/compare-w${bits}g${g}.out" 2>&1 || true
    res="docs/results/compare-w${bits}g${g}"
    mkdir -p "$res"
    cp "$dir"/*.md "$dir"/*.json "$dir"/*.svg "$dir"/*.log "$res"/ 2>/dev/null || true
    cat "$dir/compare.md" 2>/dev/null || echo "W$bits g$g: no table, see $WORK/compare-w${bits}g${g}.out"
}
for c in $CONFIGS; do
    if [ "$PARALLEL" = 1 ]; then OMP_NUM_THREADS=1 one "${c%%:*}" "${c##*:}" & else one "${c%%:*}" "${c##*:}"; fi
done
wait
uptime
