#!/bin/sh
# OpenMP waiting and the OpenBLAS kernel set, idle and on a shared machine: DL-QAT training
# tokens/s on the demo's settings (english-mix-7M, W3 g64, batch 8 x 128, phase 2 = m + LoRA),
# for each environment, with no other load and with BUSY busy-looping background jobs.
#   sh bench/bench_threads.sh            (BUSY=2 STEPS=12 LOADS="idle busy"; 15-20 minutes on 2 cores:
#                                         the collapsing configurations run at ~30 tokens/s when busy)
# Each run sets the variables itself with DLQ_AUTO_ENV=0 (dlqat changes nothing then); the
# "dlqat default" row is what a plain `dlqat` run gets (no variable set, dlqat's own choice).
# Prints one table row per (environment, load): phase-2 tokens/s as the training loop reports it.
set -eu
cd "$(dirname "$0")/.."
BUSY=${BUSY:-2}
STEPS=${STEPS:-12}
OUT=${OUT:-/tmp/dlq_bench_threads}
mkdir -p "$OUT"
BEST=$(./build/dlqat --version | sed -n 's/^env *OPENBLAS_CORETYPE=\([^ ]*\).*/\1/p')
DETECTED=$(DLQ_AUTO_ENV=0 ./build/dlqat --version | sed -n 's/^blas.*(\([A-Za-z0-9]*\) kernels.*/\1/p')
echo "CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; OpenBLAS picks $DETECTED, dlqat sets ${BEST}"
echo "env before: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}"
run() { # name, env assignments...
    name=$1; shift
    env -u OPENBLAS_CORETYPE -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$@" ./build/dlqat quantize --model models/english-mix-7M \
        --method dlqat --bits 3 --group 64 --data data/sample/english-mix-train-sample.txt --phase1-steps 2 --steps "$STEPS" \
        --batch 8 --seq 128 --seed 1 --eval-text data/sample/english-mix-valid-sample.txt --ctx 64 --eval-windows 2 \
        --out "$OUT/x.dlq" > "$OUT/log" 2>&1
    tps=$(tr '\r' '\n' < "$OUT/log" | grep 'phase2' | tail -1 | sed -n 's/.*| \([0-9]*\) tok\/s.*/\1/p')
    printf '| %s | %s | %s |\n' "$name" "$load" "$tps"
}
echo "| environment | load | phase-2 tok/s |"
echo "|---|---|---|"
for load in ${LOADS:-idle busy}; do
    pids=""
    if [ $load = busy ]; then
        i=0
        while [ $i -lt "$BUSY" ]; do sh -c 'while :; do :; done' & pids="$pids $!"; i=$((i + 1)); done
        load="$BUSY busy jobs"
    fi
    run "OpenBLAS's pick ($DETECTED), libgomp default" DLQ_AUTO_ENV=0
    run "$BEST, libgomp default" DLQ_AUTO_ENV=0 OPENBLAS_CORETYPE=$BEST
    run "$BEST, GOMP_SPINCOUNT=10000" DLQ_AUTO_ENV=0 OPENBLAS_CORETYPE=$BEST GOMP_SPINCOUNT=10000
    run "$BEST, GOMP_SPINCOUNT=1000" DLQ_AUTO_ENV=0 OPENBLAS_CORETYPE=$BEST GOMP_SPINCOUNT=1000
    run "$BEST, OMP_WAIT_POLICY=passive" DLQ_AUTO_ENV=0 OPENBLAS_CORETYPE=$BEST OMP_WAIT_POLICY=passive
    run "dlqat default (no variable set: $BEST, passive)"
    [ -n "$pids" ] && kill $pids
done
