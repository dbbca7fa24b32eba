#!/bin/sh
# Learning-rate check behind the DL-QAT vs full QAT row of docs/baselines.md:
# W3 g64, the budget of run_compare.sh, DL-QAT at lr 1e-3 and 2e-3 (m, A, B)
# and full QAT at weight lr 2e-5, 1e-4, 2e-4 and 5e-4, each via `dlqat compare` reusing
# the FP, control and tokenized data of WORKROOT/compare-w3g64 (run
# scripts/run_compare.sh first). Two runs at a time, one thread each.
#   sh scripts/run_compare_lr.sh [WORKROOT]
set -eu
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
WORK=${1:-out}
SRC="$WORK/compare-w3g64"
[ -f "$SRC/control.run.json" ] || { echo "run scripts/run_compare.sh first" >&2; exit 1; }
run() { # tag methods extra-flags...   (CFG=w4g128 BITS=4 GROUP=128 for the other configuration)
    tag=$1; meth=$2; shift 2
    cfg=${CFG:-w3g64}; SRC="$WORK/compare-$cfg"
    dir="$WORK/compare-$cfg-$tag"
    mkdir -p "$dir"
    [ -f "$SRC/control.run.json" ] || { echo "run scripts/run_compare.sh first ($SRC)" >&2; return 1; }
    for f in train.tok fp.ppl.json control.run.json control.ppl.json; do [ -e "$dir/$f" ] || cp "$SRC/$f" "$dir/"; done
    [ -e "$dir/control" ] || cp -r "$SRC/control" "$dir/"
    case " $* " in *" --fresh-control "*) rm -rf "$dir/control" "$dir/control.run.json" "$dir/control.ppl.json";; esac
    set -- $(printf '%s\n' "$@" | grep -v -- --fresh-control)
    ./build/dlqat compare --model models/english-mix-7M --bits "${BITS:-3}" --group "${GROUP:-64}" --methods "$meth" \
        --data ../shared/data/text/english-mix/train.txt --eval-text ../shared/data/text/english-mix/valid.txt \
        --ctx 512 --eval-windows 40 --phase1-steps 30 --steps 70 --batch 8 --seq 64 --lr-sb 1e-4 --seed 1 --recompute \
        "$@" --out "$dir" > "$dir.out" 2>&1 || true
    res="docs/results/compare-$cfg-$tag"
    mkdir -p "$res"
    cp "$dir"/*.md "$dir"/*.json "$dir"/*.log "$res"/ 2>/dev/null || true
    grep -E "^\| (\*\*)?(DL-QAT|full QAT|FP \\+ LoRA)" "$dir/compare.md" | sed "s/^/$tag: /"
}
run dlqat-lr1e-3 dlqat --lr 1e-3 & run qat-lr1e-4 qat --lr-qat 1e-4 & wait
run dlqat-lr2e-3 dlqat --lr 2e-3 & run qat-lr2e-5 qat --lr-qat 2e-5 & wait
run qat-lr2e-4 qat --lr-qat 2e-4 & run qat-lr5e-4 qat --lr-qat 5e-4 & wait
# the best rate of each at W4 g128, and the FP + LoRA control at DL-QAT's best rate (a fresh control run)
CFG=w4g128 BITS=4 GROUP=128 run best dlqat,qat --lr 2e-3 --lr-qat 1e-4 &
run control-lr2e-3 rtn --lr 2e-3 --fresh-control & wait
