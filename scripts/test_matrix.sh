#!/bin/sh
# `make test` under each BLAS kernel set and each ISA cap this CPU can run: the tests must not depend on
# either (issue: a newcomer's first `make test` was red on a CPU newer than Debian's OpenBLAS).
#   sh scripts/test_matrix.sh                 (about 1.5 min per configuration on 2 cores)
# CORES: the OPENBLAS_CORETYPE values ("" = unset); ISAS: the DLQ_ISA caps (each with the kernel set unset).
# The defaults take what the CPU can run. Prints one line per configuration (and its FAIL lines; whole logs in
# LOGS, default /tmp/dlq_test_matrix) and exits non-zero if any failed.
set -u
cd "$(dirname "$0")/.."
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { case " $flags " in *" $1 "*) return 0;; esac; return 1; }
CORES=${CORES-"unset Prescott"}
ISAS=${ISAS-scalar}
if [ -z "${CORES_SET:-}" ]; then
    has avx && CORES="$CORES Sandybridge"
    has avx2 && has fma && CORES="$CORES Haswell" && ISAS="$ISAS avx2"
    has avx512f && has avx512bw && has avx512vl && CORES="$CORES SkylakeX" && ISAS="$ISAS avx512"
    has avx512_bf16 && CORES="$CORES Cooperlake"
fi
echo "CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1); OpenBLAS alone picks: $(DLQ_AUTO_ENV=0 ./build/dlqat --version | sed -n 's/^blas *//p')"
bad=0
LOGS=${LOGS:-/tmp/dlq_test_matrix}
mkdir -p "$LOGS"
run() { # label, env...
    label=$1; shift
    log="$LOGS/$(echo "$label" | tr -c 'A-Za-z0-9=_\n' '_').log"
    env "$@" make -s test > "$log" 2>&1
    line=$(grep -E '^tests: ' "$log" | tail -1)
    echo "$label: ${line:-no summary (see $log)}"
    grep -E '^FAIL' "$log" | head -5
    case "$line" in *" 0 failed"*) ;; *) bad=1;; esac
}
for c in $CORES; do
    if [ "$c" = unset ]; then run "OPENBLAS_CORETYPE unset" -u OPENBLAS_CORETYPE
    else run "OPENBLAS_CORETYPE=$c" OPENBLAS_CORETYPE=$c; fi
done
for i in $ISAS; do run "DLQ_ISA=$i (kernel set unset)" -u OPENBLAS_CORETYPE DLQ_ISA=$i; done
exit $bad
