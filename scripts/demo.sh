#!/bin/sh
# The main job on the bundled demo model (models/english-mix-7M, 6.8M parameters):
#   1. describe it and measure its perplexity on held-out text,
#   2. quantize it to 3 bits (groups of 64) by DL-QAT: RTN initialisation,
#      phase 1 (scale/offset), phase 2 (magnitude + LoRA), merged into integers,
#   3. print FP / RTN / DL-QAT perplexity and write out/demo-w3g64.dlq,
#   4. generate a sample from the 3-bit model.
# About 4 minutes on 2 cores. Nothing is downloaded.
set -eu
cd "$(dirname "$0")/.."
M=models/english-mix-7M
TRAIN=data/sample/english-mix-train-sample.txt
EVAL=data/sample/english-mix-valid-sample.txt
mkdir -p out
echo "== the model"
./build/dlqat info "$M"
echo
echo "== full-precision perplexity on $EVAL"
./build/dlqat ppl --model "$M" --text "$EVAL" --ctx 512 --json out/demo-ppl-fp.json
echo
echo "== DL-QAT: 3-bit, groups of 64 (RTN init -> phase 1 s,b -> phase 2 m,A,B -> merge)"
./build/dlqat quantize --model "$M" --method dlqat --bits 3 --group 64 \
    --data "$TRAIN" --phase1-steps 100 --steps 200 --batch 8 --seq 128 --lr 2e-4 --seed 1 \
    --eval-text "$EVAL" --ctx 512 --out out/demo-w3g64.dlq --json out/demo-w3g64.json
echo
./build/dlqat info out/demo-w3g64.dlq
echo
echo "== a sample from the 3-bit model"
./build/dlqat generate --model out/demo-w3g64.dlq --prompt "Call me Ishmael. Some years ago," -n 80 --temp 0.8 --top-p 0.9 --seed 42
