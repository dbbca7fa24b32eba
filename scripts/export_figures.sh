#!/bin/sh
# Figures of docs/export.md: english-mix-7M quantized (RTN W4/W3/W2 g64, and a short DL-QAT W4 g64
# run), exported to GGUF; perplexity of the .dlq and of the GGUF read back by our loader on
# english-mix/valid.txt; the gguf-py, transformers and AutoGPTQ-formula checks.
#   sh scripts/export_figures.sh [OUT_DIR]      (needs ../shared; ~10 minutes on 2 cores)
# Environment: WINDOWS (ppl windows of 512, default 100), STEPS1 / STEPS2 (DL-QAT steps, default 50 / 150).
set -e
OUT=${1:-/tmp/dlqat-export-figures}
D=build/dlqat
PY=${PY:-/work/main/.venv/bin/python}
M=${M:-../shared/data/models/english-mix-7M}
DATA=../shared/data/text/english-mix/train.txt
VALID=../shared/data/text/english-mix/valid.txt
W=${WINDOWS:-100}
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"
ppl() { $D ppl --model "$1" --text "$VALID" --max-windows "$W" --json "$2" > /dev/null 2>&1; \
        $PY -c "import json,sys; print('%.4f' % json.load(open(sys.argv[1]))['ppl'])" "$2"; }
echo "| model | .dlq ppl | GGUF type | GGUF ppl | change |"
echo "|---|---|---|---|---|"
for spec in "4 rtn" "3 rtn" "2 rtn" "4 dlqat"; do
    set -- $spec
    b=$1; meth=$2; tag="w${b}g64-$meth"
    if [ "$meth" = rtn ]; then
        $D quantize --model "$M" --method rtn --bits $b --group 64 --out "$OUT/$tag.dlq" > /dev/null 2>&1
    else
        $D quantize --model "$M" --method dlqat --bits $b --group 64 --data "$DATA" --phase1-steps ${STEPS1:-50} \
            --steps ${STEPS2:-150} --batch 8 --seq 256 --lr 5e-4 --lr-sb 1e-4 --out "$OUT/$tag.dlq" > "$OUT/$tag.train.log" 2>&1
    fi
    $D export --model "$OUT/$tag.dlq" --format gguf --out "$OUT/$tag.gguf" --no-ppl --json "$OUT/$tag.export.json" > /dev/null 2>&1
    t=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['tensors'][-1]['type'])" "$OUT/$tag.export.json")
    p0=$(ppl "$OUT/$tag.dlq" "$OUT/$tag.dlq.ppl.json"); p1=$(ppl "$OUT/$tag.gguf" "$OUT/$tag.gguf.ppl.json")
    echo "| W$b g64 $meth | $p0 | $t | $p1 | $($PY -c "print('%+.3f %%' % (100*($p1/$p0-1)))") |"
done
echo
$PY scripts/check_gguf_export.py --gguf "$OUT/w4g64-dlqat.gguf" --dlq "$OUT/w4g64-dlqat.dlq" | tail -12
$PY scripts/check_hf_export.py --dlq "$OUT/w4g64-dlqat.dlq" 2>/dev/null | tail -4
$D quantize --model "$M" --method rtn --bits 4 --group 64 --int-zero --out "$OUT/w4g64-intzero.dlq" > /dev/null 2>&1
$PY scripts/check_gptq_export.py --dlq "$OUT/w4g64-intzero.dlq" | tail -4
