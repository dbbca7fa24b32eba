#!/bin/sh
# Data-free QAT table of issue 8 (README "Data-free QAT on stories260K"):
# stories260K has no tokenizer, so both the training and the evaluation data
# are token rows sampled from the full-precision model itself (dlqat sample,
# different seeds). For each configuration: RTN, DL-QAT with cross-entropy on
# the samples and DL-QAT with KL distillation to the FP model, plus GPTQ,
# QA-LoRA and full QAT when this build has them (dlqat quantize --method ...).
# Perplexity = exp(mean NLL) over the evaluation rows. Needs only the repo.
#   sh scripts/run_datafree.sh [OUTDIR]
# Environment: P1 (phase-1 steps, 50), P2 (phase-2 steps, 450), B (4), LR (3e-3; LoRA, m),
# LRSB (3e-4; s, b), LRQAT (1e-3; full QAT's weights), SCHED (cosine),
# NTRAIN (2048 rows), NEVAL (256 rows), LEN (256 ids per row),
# CONFIGS ("4:32 3:32 2:32 4:channel"), METHODS ("rtn dlqat-ce dlqat-kl gptq qalora qat"),
# QARGS (extra dlqat quantize options for the trained methods, e.g. "--train-norms"),
# ROTATE=1 (every method, RTN and GPTQ included, quantizes the model after `--rotate`),
# ROTATE_STEPS=N (after `--rotate-steps N --rotate-lr ${ROTATE_LR:-2e-2}`, learned with --loss kl),
# ROTATE_HEADS=1 (with ROTATE_STEPS: the per-head v/o rotations are learned too, --rotate-heads).
# The README's 2000-step batch-16 W4 g32 row:
#   NTRAIN=16384 B=16 P1=100 P2=1900 CONFIGS=4:32 METHODS=dlqat-kl sh scripts/run_datafree.sh out/datafree-b16
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-out/datafree}
M=${MODEL:-models/stories260K/stories260K.bin}
P1=${P1:-50}; P2=${P2:-450}; B=${B:-4}; LR=${LR:-3e-3}; LRSB=${LRSB:-3e-4}; LRQAT=${LRQAT:-1e-3}; SCHED=${SCHED:-cosine}
NTRAIN=${NTRAIN:-2048}; NEVAL=${NEVAL:-256}; LEN=${LEN:-256}
CONFIGS=${CONFIGS:-"4:32 3:32 2:32 4:channel"}
METHODS=${METHODS:-"rtn dlqat-ce dlqat-kl gptq qalora qat"}
QARGS=${QARGS:-}
RARGS=""; [ "${ROTATE:-0}" = 1 ] && RARGS="--rotate"
[ "${ROTATE_STEPS:-0}" -gt 0 ] && RARGS="--rotate-steps $ROTATE_STEPS --rotate-lr ${ROTATE_LR:-2e-2}"
[ "${ROTATE_HEADS:-0}" = 1 ] && RARGS="$RARGS --rotate-heads"
D=${DLQAT:-./build/dlqat}
mkdir -p "$OUT"
[ -f "$OUT/train.tok" ] || $D sample --model "$M" --n $NTRAIN --len $LEN --seed 1 --batch 64 --out "$OUT/train.tok" --json "$OUT/sample-train.json"
[ -f "$OUT/eval.tok" ] || $D sample --model "$M" --n $NEVAL --len $LEN --seed 2 --batch 64 --out "$OUT/eval.tok" --json "$OUT/sample-eval.json"
[ -f "$OUT/fp.json" ] || $D ppl --model "$M" --tokens "$OUT/eval.tok" --batch 8 --json "$OUT/fp.json" > /dev/null
has_method() { $D quantize --method "$1" --help > /dev/null 2>&1; }
for c in $CONFIGS; do
    bits=${c%%:*}; g=${c##*:}
    for meth in $METHODS; do
        tag=w${bits}g${g}-$meth
        [ -f "$OUT/$tag.json" ] && continue
        case $meth in
            dlqat-ce) mm=dlqat; args="--loss ce" ;;
            dlqat-kl) mm=dlqat; args="--loss kl" ;;
            qat) mm=qat; args="--loss kl" ;;
            qalora) mm=qalora; args="--loss kl" ;;
            *) mm=$meth; args=""; [ "${ROTATE_STEPS:-0}" -gt 0 ] && args="--loss kl" ;;
        esac
        if ! has_method $mm; then echo "[datafree] skipping $meth: not in this build"; continue; fi
        echo "[datafree] $tag"
        lr=$LR; [ $mm = qat ] && lr=$LRQAT
        case $mm in dlqat|qat|qalora) args="$args $QARGS" ;; esac
        args="$args $RARGS"
        $D quantize --model "$M" --method $mm $args --bits $bits --group $g --data "$OUT/train.tok" --eval-tokens "$OUT/eval.tok" \
            --phase1-steps $P1 --steps $P2 --batch $B --lr $lr --lr-sb $LRSB --schedule $SCHED --seed 1 --val-fraction 0.01 \
            --out "$OUT/$tag.dlq" --json "$OUT/$tag.json" > "$OUT/$tag.log" 2>&1 || { echo "[datafree] $tag failed: see $OUT/$tag.log"; continue; }
    done
done
python3 scripts/datafree_table.py "$OUT"
