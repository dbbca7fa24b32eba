#!/bin/sh
# Accuracy table of issue 4 (README "Accuracy"): english-mix-7M trained on
# english-mix/train.txt, perplexity by `dlqat ppl` on english-mix/valid.txt
# (787 windows of 512). For each configuration: RTN (no training) and DL-QAT;
# plus the control: the full-precision model fine-tuned with LoRA on the same
# data, steps, batch and learning rate, merged. Needs ../shared.
#   sh scripts/run_accuracy.sh [OUTDIR] [DATA]
# Environment: P1 (phase-1 steps, 100), P2 (phase-2 steps, 400), B (8), T (256),
# LR (5e-4, LoRA/magnitude and the control), LRSB (1e-4, scale/offset),
# CONFIGS ("4:128 3:64 3:channel 2:64").
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-out/accuracy}
DATA=${2:-../shared/data/text/english-mix/train.txt}
VALID=${VALID:-../shared/data/text/english-mix/valid.txt}
M=models/english-mix-7M
P1=${P1:-100}; P2=${P2:-400}; B=${B:-8}; T=${T:-256}; LR=${LR:-5e-4}; LRSB=${LRSB:-1e-4}
CONFIGS=${CONFIGS:-"4:128 3:64 3:channel 2:64"}
STEPS=$((P1 + P2))
mkdir -p "$OUT"
D=./build/dlqat
ppl() { $D ppl --model "$1" --text "$VALID" --ctx 512 --json "$2" > /dev/null; }
[ -f "$OUT/fp.json" ] || ppl "$M" "$OUT/fp.json"
if [ ! -f "$OUT/control.json" ]; then
    $D finetune --model "$M" --data "$DATA" --mode lora --rank 16 --alpha 16 --steps $STEPS --batch $B --seq $T \
        --lr $LR --seed 1 --val-fraction 0.01 --eval-batches 4 --merge --out "$OUT/control" > /dev/null
    ppl "$OUT/control/merged" "$OUT/control.json"
fi
for c in $CONFIGS; do
    bits=${c%%:*}; g=${c##*:}
    tag=w${bits}g${g}
    if [ ! -f "$OUT/$tag-rtn.json" ]; then
        $D quantize --model "$M" --method rtn --bits $bits --group $g --out "$OUT/$tag-rtn.dlq" > /dev/null
        ppl "$OUT/$tag-rtn.dlq" "$OUT/$tag-rtn.json"
    fi
    if [ ! -f "$OUT/$tag-dlqat.json" ]; then
        $D quantize --model "$M" --method dlqat --bits $bits --group $g --data "$DATA" --phase1-steps $P1 --steps $P2 \
            --batch $B --seq $T --lr $LR --lr-sb $LRSB --seed 1 --val-fraction 0.01 --out "$OUT/$tag-dlqat.dlq" \
            --json "$OUT/$tag-dlqat-run.json" > /dev/null
        ppl "$OUT/$tag-dlqat.dlq" "$OUT/$tag-dlqat.json"
    fi
done
python3 - "$OUT" "$CONFIGS" <<'PY'
import json, sys, os
out, configs = sys.argv[1], sys.argv[2].split()
j = lambda n: json.load(open(os.path.join(out, n)))
fp, ctl = j("fp.json")["ppl"], j("control.json")["ppl"]
print(f"FP {fp:.3f}   FP + LoRA control {ctl:.3f}")
print("| config | RTN | DL-QAT | DL-QAT / control |")
print("|---|---|---|---|")
for c in configs:
    b, g = c.split(":")
    t = f"w{b}g{g}"
    r, d = j(t + "-rtn.json")["ppl"], j(t + "-dlqat.json")["ppl"]
    print(f"| W{b} {'per-channel' if g == 'channel' else 'g' + g} | {r:.3f} | {d:.3f} | {d / ctl:.4f} |")
PY
