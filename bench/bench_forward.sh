#!/bin/sh
# Forward-pass throughput: `dlqat ppl` vs a PyTorch (transformers, fp32) forward
# of the same model on the same text and windows, in one invocation; then
# decode tokens/s of `dlqat generate`. Needs the Python env for the PyTorch
# side (sh scripts/setup_python.sh); prints the dlqat figures alone without it.
#   sh bench/bench_forward.sh [MODEL] [TEXT] [CTX] [WINDOWS]
set -eu
cd "$(dirname "$0")/.."
M=${1:-models/english-mix-7M}
TEXT=${2:-data/sample/english-mix-valid-sample.txt}
CTX=${3:-512}
W=${4:-40}
THREADS=$(nproc)
make -s build/dlqat
mkdir -p out
echo "model $M, text $TEXT, ctx $CTX, $W windows, $THREADS threads"
./build/dlqat ppl --model "$M" --text "$TEXT" --ctx "$CTX" --max-windows "$W" --json out/bench-dlqat.json >/dev/null 2>&1
if [ -x .venv/bin/python ]; then
    .venv/bin/python bench/torch_ppl.py "$M" "$TEXT" --ctx "$CTX" --max-windows "$W" --threads "$THREADS" \
        --json out/bench-torch.json >/dev/null 2>&1 || echo "(PyTorch run failed)"
fi
python3 - <<'PY'
import json, os
d = json.load(open("out/bench-dlqat.json"))
print(f"{'engine':<10} {'ppl':>10} {'tokens':>8} {'tok/s':>10} {'peak RSS MiB':>13}")
print(f"{'dlqat':<10} {d['ppl']:>10.4f} {d['tokens']:>8} {d['tokens_per_s']:>10.0f} {d['peak_rss_kb']/1024:>13.1f}")
if os.path.exists("out/bench-torch.json"):
    t = json.load(open("out/bench-torch.json"))
    print(f"{'pytorch':<10} {t['ppl']:>10.4f} {t['tokens']:>8} {t['tokens_per_s']:>10.0f} {'':>13}")
    print(f"speed-up dlqat / pytorch: {d['tokens_per_s'] / t['tokens_per_s']:.2f}x   (ppl difference {abs(d['ppl'] - t['ppl']):.2e})")
PY
./build/dlqat generate --model "$M" --prompt "Call me Ishmael." -n 256 --temp 0 --no-stop 2>&1 >/dev/null | sed 's/^/decode: /'
