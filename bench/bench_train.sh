#!/bin/sh
# Training throughput and memory: `dlqat finetune` (full and LoRA) vs PyTorch
# (bench/torch_train.py: transformers fp32, eager attention, AdamW) with the
# same model, text, sequence length, batch and thread count, in one invocation.
#   sh bench/bench_train.sh [MODEL] [TEXT] [SEQ] [BATCH] [STEPS]
# defaults: models/english-mix-7M, data/sample/english-mix-valid-sample.txt,
# seq 256, 16 sequences per step, 4 steps.
#
# Both sides run STEPS optimizer steps and time the last STEPS-1 (the first is
# warm-up): dlqat's tokens/s = BATCH*SEQ*(STEPS-1) / (elapsed_s[last] -
# elapsed_s[1]) from OUT/metrics.jsonl, PyTorch's is torch_train.py's
# (1 warm-up step + STEPS-1 timed). Peak RSS: dlqat's run.json peak_rss_kb
# (whole process), PyTorch's getrusage ru_maxrss (whole process, incl. the
# Python interpreter and torch, ~300 MiB before the model is loaded).
# Settings matched on both sides: lr 1e-4, AdamW eps 1e-6, no gradient
# clipping, LoRA r 16 / alpha 16 on q,k,v,o,gate,up,down, full: weight decay
# 0.01. dlqat validates once at the end (1 batch, outside the timed steps).
# Threads: $THREADS (default nproc) for both (OMP_NUM_THREADS / torch.set_num_threads).
# REPEAT=N (default 1) runs the four configurations N times, interleaved, and
# reports the best tokens/s of each (and the spread): use it on a busy machine.
# Needs the Python env (sh scripts/setup_python.sh) for the PyTorch rows.
set -eu
cd "$(dirname "$0")/.."
M=${1:-models/english-mix-7M}
TEXT=${2:-data/sample/english-mix-valid-sample.txt}
SEQ=${3:-256}
BATCH=${4:-16}
STEPS=${5:-4}
THREADS=${THREADS:-$(nproc)}
REPEAT=${REPEAT:-1}
[ "$STEPS" -ge 2 ] || { echo "bench_train: STEPS must be >= 2" >&2; exit 2; }
make -s build/dlqat
OUT=out/bench-train
rm -rf "$OUT"
mkdir -p "$OUT"
echo "model $M, text $TEXT, seq $SEQ, batch $BATCH, $STEPS steps (first not timed), $THREADS threads"
echo "load: $(uptime | sed 's/.*load average/load average/')"
r=1
while [ "$r" -le "$REPEAT" ]; do
  D=$OUT/r$r
  mkdir -p "$D"
  for mode in full lora; do
    extra=""
    [ "$mode" = full ] && extra="--weight-decay 0.01"
    OMP_NUM_THREADS=$THREADS ./build/dlqat finetune --model "$M" --data "$TEXT" --mode "$mode" --rank 16 --alpha 16 \
        --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" --lr 1e-4 --clip 0 --eps 1e-6 --seed 0 $extra \
        --eval-batches 1 --out "$D/dlqat-$mode" >"$D/dlqat-$mode.log" 2>&1 ||
        { echo "dlqat finetune --mode $mode failed:" >&2; tail -5 "$D/dlqat-$mode.log" >&2; exit 1; }
    if [ -x .venv/bin/python ]; then
        .venv/bin/python bench/torch_train.py "$M" --mode "$mode" --seq "$SEQ" --batch "$BATCH" \
            --steps $((STEPS - 1)) --threads "$THREADS" --text "$TEXT" --lr 1e-4 --lora-r 16 --lora-alpha 16 \
            --json "$D/torch-$mode.json" >"$D/torch-$mode.log" 2>&1 || echo "(PyTorch $mode run failed: $D/torch-$mode.log)"
    fi
  done
  r=$((r + 1))
done
echo "load: $(uptime | sed 's/.*load average/load average/')"
REPEAT=$REPEAT BATCH=$BATCH SEQ=$SEQ OUT=$OUT python3 - <<'PY'
import json, os
out, B, T, R = os.environ["OUT"], int(os.environ["BATCH"]), int(os.environ["SEQ"]), int(os.environ["REPEAT"])
def dlqat(d, mode):
    rows = [json.loads(l) for l in open(f"{d}/dlqat-{mode}/metrics.jsonl") if l.strip()]
    run = json.load(open(f"{d}/dlqat-{mode}/run.json"))
    dt = rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]
    return {"tps": B * T * (len(rows) - 1) / dt, "rss": run["peak_rss_kb"] / 1024.0,
            "loss": (rows[0]["loss"], rows[-1]["loss"])}
def torch(d, mode):
    p = f"{d}/torch-{mode}.json"
    if not os.path.exists(p):
        return None
    t = json.load(open(p))
    return {"tps": t["tokens_per_s"], "rss": t["peak_rss_mb"], "loss": (t["loss_first"], t["loss_last"])}
def best(runs):
    runs = [x for x in runs if x]
    if not runs:
        return None
    b = dict(max(runs, key=lambda x: x["tps"]))
    b["all_tps"] = [round(x["tps"]) for x in runs]
    b["rss"] = max(x["rss"] for x in runs)
    return b
print(f"{'mode':<6} {'engine':<8} {'tokens/s':>10} {'peak RSS MiB':>13} {'loss first->last':>20}   tokens/s of each run")
summary = {}
for mode in ("full", "lora"):
    d = best([dlqat(f"{out}/r{r}", mode) for r in range(1, R + 1)])
    t = best([torch(f"{out}/r{r}", mode) for r in range(1, R + 1)])
    for name, x in (("dlqat", d), ("pytorch", t)):
        if x:
            print(f"{mode:<6} {name:<8} {x['tps']:>10.0f} {x['rss']:>13.1f} {x['loss'][0]:>9.4f} -> {x['loss'][1]:<8.4f}   {x['all_tps']}")
    if t:
        print(f"{mode:<6} {'ratio':<8} {d['tps'] / t['tps']:>9.2f}x {d['rss'] / t['rss']:>12.2f}x   (dlqat / pytorch)")
    summary[mode] = {"dlqat": d, "pytorch": t}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
PY
