#!/bin/sh
# Task accuracy for the comparison tables (docs/baselines.md): re-runs
# `dlqat compare` on WORKROOT/compare-w3g64 and -w4g128 (everything else is
# reused) with --tasks, i.e. `dlqat eval` on every output: the first LIMIT
# items (default 300) of piqa, arc_easy, arc_challenge, boolq, openbookqa,
# winogrande (lm-eval conventions, docs/eval.md). Run scripts/run_compare.sh first.
#   sh scripts/run_compare_tasks.sh [WORKROOT]
set -eu
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=passive OMP_NUM_THREADS=1
WORK=${1:-out}; LIMIT=${LIMIT:-300}
TASKS=${TASKS:-piqa,arc_easy,arc_challenge,boolq,openbookqa,winogrande}
for c in 3:64 4:128; do
    bits=${c%%:*}; g=${c##*:}; dir="$WORK/compare-w${bits}g${g}"
    (./build/dlqat compare --model models/english-mix-7M --bits "$bits" --group "$g" --methods rtn,gptq,qalora,qat,dlqat \
        --data ../shared/data/text/english-mix/train.txt --eval-text ../shared/data/text/english-mix/valid.txt \
        --ctx 512 --eval-windows 40 --phase1-steps 30 --steps 70 --batch 8 --seq 64 --lr 5e-4 --lr-sb 1e-4 --lr-qat 5e-5 \
        --seed 1 --recompute --tasks "$TASKS" --task-limit "$LIMIT" --out "$dir" > "$dir.tasks.out" 2>&1 || true
     res="docs/results/compare-w${bits}g${g}"
     cp "$dir"/*.md "$dir"/*.json "$dir"/*.svg "$dir"/*.log "$res"/ 2>/dev/null || true
     cat "$dir/compare.md") &
done
wait
