#!/bin/sh
# Figures of docs/export.md: english-mix-7M quantized (RTN W4/W3/W2 g64, and the DL-QAT .dlq files
# of scripts/run_accuracy.sh when present), exported to GGUF; perplexity of the .dlq and of the GGUF
# read back by our loader on the first WINDOWS windows of english-mix/valid.txt; the gguf-py,
# transformers and AutoGPTQ-formula checks.
#   sh scripts/export_figures.sh [OUT_DIR] [ACCURACY_DIR]      (needs ../shared; ~10 min on 2 cores)
# ACCURACY_DIR: where run_accuracy.sh wrote w4g128-dlqat.dlq, w3g64-dlqat.dlq, w2g64-dlqat.dlq
# (default out/accuracy). Environment: WINDOWS (ppl windows of 512, default 100).
set -e
OUT=${1:-/tmp/dlqat-export-figures}
ACC=${2:-out/accuracy}
D=build/dlqat
PY=${PY:-/work/main/.venv/bin/python}
M=${M:-../shared/data/models/english-mix-7M}
VALID=../shared/data/text/english-mix/valid.txt
W=${WINDOWS:-100}
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"
ppl() { $D ppl --model "$1" --text "$VALID" --max-windows "$W" --json "$2" > /dev/null 2>&1; \
        $PY -c "import json,sys; print('%.4f' % json.load(open(sys.argv[1]))['ppl'])" "$2"; }
row() { # row LABEL DLQ
    tag=$(basename "$2" .dlq)
    $D export --model "$2" --format gguf --out "$OUT/$tag.gguf" --no-ppl --json "$OUT/$tag.export.json" > /dev/null 2>&1
    t=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['tensors'][-1]['type'])" "$OUT/$tag.export.json")
    e=$($PY -c "import json,sys; j=json.load(open(sys.argv[1])); print('%.2g / %.2g' % (j['max_abs_err'], j['mean_abs_err']))" "$OUT/$tag.export.json")
    p0=$(ppl "$2" "$OUT/$tag.dlq.ppl.json"); p1=$(ppl "$OUT/$tag.gguf" "$OUT/$tag.gguf.ppl.json")
    echo "| $1 | $p0 | $t | $e | $p1 | $($PY -c "print('%+.3f %%' % (100*($p1/$p0-1)))") |"
}
echo "| model | .dlq ppl | GGUF type | weight error max / mean | GGUF ppl | change |"
echo "|---|---|---|---|---|---|"
for b in 4 3 2; do
    $D quantize --model "$M" --method rtn --bits $b --group 64 --out "$OUT/w${b}g64-rtn.dlq" > /dev/null 2>&1
    row "W$b g64 RTN" "$OUT/w${b}g64-rtn.dlq"
done
for tag in w4g128-dlqat w3g64-dlqat w2g64-dlqat; do
    if [ -f "$ACC/$tag.dlq" ]; then row "$tag" "$ACC/$tag.dlq"; else echo "| $tag | (not found in $ACC) |"; fi
done
REF=$OUT/w4g64-rtn.dlq
[ -f "$ACC/w4g128-dlqat.dlq" ] && REF=$ACC/w4g128-dlqat.dlq
echo
$PY scripts/check_gguf_export.py --gguf "$OUT/$(basename "$REF" .dlq).gguf" --dlq "$REF" | tail -12
$PY scripts/check_hf_export.py --dlq "$REF" 2>/dev/null | tail -4
$D quantize --model "$M" --method rtn --bits 4 --group 64 --int-zero --out "$OUT/w4g64-intzero.dlq" > /dev/null 2>&1
$PY scripts/check_gptq_export.py --dlq "$OUT/w4g64-intzero.dlq" | tail -4
