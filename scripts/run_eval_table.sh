#!/bin/sh
# Evaluation table of issue 5 (README "Evaluation"): english-mix-7M at full
# precision, RTN W3 g64 and DL-QAT W3 g64 on the seven multiple-choice tasks
# of ../shared/data/tasks (lm-eval 0.4.x conventions, 0-shot), MMLU 5-shot
# and WikiText-2 perplexity, all by `dlqat eval`. Needs ../shared.
#   sh scripts/run_eval_table.sh [OUTDIR]
# Limits (environment) keep the whole table at ~25 CPU-minutes on 2 cores:
#   LIMIT (first N items of each task, 500), MMLU_LIMIT (first N questions of
#   each of the 57 subjects, 10), WT_WINDOWS (WikiText-2 windows of 512, 40).
# The quantized models are made if missing: RTN, and DL-QAT with the
# schedule of scripts/run_accuracy.sh shortened to P1=100 + P2=200 steps.
# Raw JSON goes to docs/results/eval-<model>-<part>.json.
set -eu
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
OUT=${1:-out/eval}
RES=docs/results
LIMIT=${LIMIT:-500}; MMLU_LIMIT=${MMLU_LIMIT:-10}; WT_WINDOWS=${WT_WINDOWS:-40}
P1=${P1:-100}; P2=${P2:-200}
M=models/english-mix-7M
DATA=../shared/data/tasks
TRAIN=../shared/data/text/english-mix/train.txt
D=${D:-./build/dlqat}
TASKS=piqa,arc_easy,arc_challenge,boolq,openbookqa,winogrande,social_iqa
mkdir -p "$OUT" "$RES"
[ -f "$OUT/w3g64-rtn.dlq" ] || $D quantize --model $M --method rtn --bits 3 --group 64 --out "$OUT/w3g64-rtn.dlq" > /dev/null
[ -f "$OUT/w3g64-dlqat.dlq" ] || $D quantize --model $M --method dlqat --bits 3 --group 64 --data "$TRAIN" \
    --phase1-steps $P1 --steps $P2 --batch 8 --seq 256 --lr 5e-4 --lr-sb 1e-4 --seed 1 --val-fraction 0.01 \
    --out "$OUT/w3g64-dlqat.dlq" --json "$OUT/w3g64-dlqat-run.json" > /dev/null
for tag in fp rtn dlqat; do
    case $tag in fp) model=$M;; rtn) model=$OUT/w3g64-rtn.dlq;; dlqat) model=$OUT/w3g64-dlqat.dlq;; esac
    [ -f "$RES/eval-$tag-mc.json" ] || $D eval --model "$model" --tasks $TASKS --data $DATA --limit $LIMIT --batch 8 \
        --json "$RES/eval-$tag-mc.json"
    [ -f "$RES/eval-$tag-mmlu.json" ] || $D eval --model "$model" --tasks mmlu --data $DATA --limit $MMLU_LIMIT --shots 5 \
        --batch 8 --json "$RES/eval-$tag-mmlu.json"
    [ -f "$RES/eval-$tag-wikitext2.json" ] || $D eval --model "$model" --tasks wikitext2 --data $DATA --limit $WT_WINDOWS \
        --json "$RES/eval-$tag-wikitext2.json"
done
python3 - "$RES" "$LIMIT" "$MMLU_LIMIT" "$WT_WINDOWS" <<'PY'
import json, os, sys
res, limit, mlimit, wtw = sys.argv[1:5]
j = lambda t, p: json.load(open(os.path.join(res, f"eval-{t}-{p}.json")))["results"]
tags = [("fp", "FP (bf16)"), ("rtn", "RTN W3 g64"), ("dlqat", "DL-QAT W3 g64")]
tasks = ["piqa", "arc_easy", "arc_challenge", "boolq", "openbookqa", "winogrande", "social_iqa"]
mc = {t: j(t, "mc") for t, _ in tags}
mm = {t: j(t, "mmlu") for t, _ in tags}
wt = {t: j(t, "wikitext2")["wikitext2"] for t, _ in tags}
def cell(r, k="acc"):
    return f"{100 * r[k]:.1f} ± {100 * r[k + '_stderr']:.1f}"
print(f"| task (n) | metric | " + " | ".join(n for _, n in tags) + " |")
print("|---|---|" + "---|" * len(tags))
for task in tasks:
    r0 = mc["fp"][task]
    for k in (["acc", "acc_norm"] if "acc_norm" in r0 else ["acc"]):
        print(f"| {task} ({r0['n']}) | {k} | " + " | ".join(cell(mc[t][task], k) for t, _ in tags) + " |")
for g in ["mmlu", "mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other"]:
    r0 = mm["fp"][g]
    print(f"| {g} 5-shot ({r0['n']}) | acc | " + " | ".join(cell(mm[t][g]) for t, _ in tags) + " |")
w0 = wt["fp"]
print(f"| WikiText-2 GPTQ join ({w0['tokens']} tokens, ctx {w0['ctx']}) | ppl | " + " | ".join(f"{wt[t]['ppl']:.2f}" for t, _ in tags) + " |")
print(f"| WikiText-2 plain file ({w0['tokens_plain']} tokens, ctx {w0['ctx']}) | ppl | " + " | ".join(f"{wt[t]['ppl_plain']:.2f}" for t, _ in tags) + " |")
print(f"\nLimits: first {limit} items of each task (openbookqa has 350), first {mlimit} test questions of each MMLU subject, "
      f"{wtw} WikiText-2 windows of 512; accuracies in % ± stderr.")
PY
