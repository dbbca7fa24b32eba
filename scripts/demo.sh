#!/bin/sh
# The main job on the bundled demo model (models/english-mix-7M):
# describe it, measure perplexity on the shipped sample text, generate a sample.
set -eu
cd "$(dirname "$0")/.."
M=models/english-mix-7M
TEXT=${TEXT:-data/sample/english-mix-valid-sample.txt}
mkdir -p out
./build/dlqat info "$M"
echo
./build/dlqat ppl --model "$M" --text "$TEXT" --ctx 512 --json out/demo-ppl.json
echo
./build/dlqat generate --model "$M" --prompt "Call me Ishmael. Some years ago," -n 80 --temp 0.8 --top-p 0.9 --seed 42
