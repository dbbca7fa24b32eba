#!/bin/sh
# The main job on the bundled demo model, Karpathy's stories260K (a real, fully trained 260K-parameter
# Llama-2-architecture model; models/stories260K/README.md):
#   1. describe it, let it write a story, measure its perplexity on held-out TinyStories text,
#   2. quantize it to 3 bits (groups of 32) by DL-QAT: RTN initialisation, phase 1 (scale/offset),
#      phase 2 (magnitude + LoRA), merged into integers: out/demo-w3g32.dlq,
#   3. print the FP / RTN / DL-QAT perplexity table and what it means,
#   4. let the 3-bit model write the same story (greedy), and the plain RTN 3-bit model too.
# A few minutes on 2 cores (README: "Speed"). Nothing is downloaded.
set -eu
cd "$(dirname "$0")/.."
M=models/stories260K/stories260K.bin
TRAIN=data/sample/tinystories-calib.txt
EVAL=data/sample/tinystories-eval.txt
PROMPT="Once upon a time"
mkdir -p out
echo "== the model"
./build/dlqat info "$M"
echo
echo "== its story (full precision, greedy)"
./build/dlqat generate --model "$M" --prompt "$PROMPT" -n 120 --temp 0 2>/dev/null
echo
echo "== DL-QAT: 3-bit, groups of 32 (RTN init -> phase 1 s,b -> phase 2 m,A,B -> merge)"
./build/dlqat quantize --model "$M" --method dlqat --bits 3 --group 32 \
    --data "$TRAIN" --phase1-steps 150 --steps 450 --batch 8 --seq 256 --lr 2e-3 --seed 1 \
    --eval-text "$EVAL" --ctx 256 --out out/demo-w3g32.dlq --json out/demo-w3g32.json
./build/dlqat quantize --model "$M" --method rtn --bits 3 --group 32 --out out/demo-rtn-w3g32.dlq > /dev/null 2>&1
echo
python_free_summary() { # FP, RTN, DL-QAT perplexities from the run JSON, without Python
    sed -n 's/^ *"\(ppl_fp\|ppl_rtn\|ppl_after\)": \([0-9.]*\).*/\1 \2/p' out/demo-w3g32.json
}
python_free_summary | awk '
    $1 == "ppl_fp" { fp = $2 } $1 == "ppl_rtn" { rtn = $2 } $1 == "ppl_after" { q = $2 }
    END {
        gap = log(rtn) - log(fp); closed = gap > 0 ? (log(rtn) - log(q)) / gap : 0
        printf "What the table says: perplexity on %s (held-out TinyStories text the model never saw;\n", "'"$EVAL"'"
        printf "lower is better). Rounding every weight to 3 bits (RTN) raises it from %.2f to %.2f; DL-QAT,\n", fp, rtn
        printf "training only the per-group scales, offsets, magnitudes and LoRA updates (then merged into plain\n"
        printf "3-bit integers), brings it to %.2f: %.0f %% of the rounding loss (in log-perplexity) recovered.\n", q, 100 * closed
        printf "Part of that is adaptation: the training text comes from the same TinyStories file as the\n"
        printf "evaluation text (README, \"stories260K: the original model\").\n"
    }'
echo
./build/dlqat info out/demo-w3g32.dlq
echo
echo "== the same story from the 3-bit DL-QAT model (greedy)"
./build/dlqat generate --model out/demo-w3g32.dlq --prompt "$PROMPT" -n 120 --temp 0 2>/dev/null
echo
echo "== and from plain 3-bit rounding (RTN), for comparison"
./build/dlqat generate --model out/demo-rtn-w3g32.dlq --prompt "$PROMPT" -n 120 --temp 0 2>/dev/null
