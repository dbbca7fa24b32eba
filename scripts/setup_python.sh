#!/bin/sh
# Recreate the Python environment used ONLY to generate test fixtures and run
# the PyTorch side of benchmarks (the dlqat product never needs Python).
#
# Target: a fresh Debian 12 (bookworm) machine, run as root, from anywhere:
#   sh scripts/setup_python.sh            # creates <repo>/.venv
# Idempotent: when everything is already installed it only checks and exits.
#
# Layout: Debian's python3-torch (1.13), numpy and sentencepiece come from apt;
# the venv is created with --system-site-packages so it sees them; the
# Hugging Face packages are pip-installed into the venv at pinned versions.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}

APT_PKGS="python3-torch python3-numpy python3-venv python3-sentencepiece python3-pip"
# Pinned top-level packages, plus their dependencies at the versions that
# were installed when the committed fixtures were generated.
PIP_PKGS="transformers==4.46.3 tokenizers==0.20.3 safetensors==0.8.0 gguf==0.19.0 \
huggingface_hub==0.36.2 filelock==4.2.11 fsspec==2026.9.0 hf-xet==1.8.0 \
packaging==26.3 regex==2026.11.15 tqdm==4.70.1"

# lm-evaluation-harness, used only by scripts/lmeval_ref.py (the reference of
# tests/fixtures/eval/lmeval_ref.json). Installed with --no-deps: lm-eval's own
# requirements would replace Debian's torch; these are exactly the packages it
# imports for an offline CPU Hugging Face log-likelihood run, at the versions
# that generated the fixture. Debian's numpy 1.24 caps pandas (2.2) and
# pyarrow (20); huggingface_hub 0.36 caps datasets (4.0); Debian's
# sentencepiece_model_pb2 needs protobuf 3.20 (the fast-tokenizer conversion).
LMEVAL_PKGS="lm-eval==0.4.9.1 Jinja2==3.1.6 MarkupSafe==3.0.4 dill==0.4.1 sqlitedict==2.1.0 \
more-itertools==11.2.1 sacrebleu==2.6.0 portalocker==4.4.2 tabulate==0.10.0 lxml==6.1.3 evaluate==0.4.6 \
datasets==4.0.0 multiprocess==0.70.19 pandas==2.2.3 pytz==2026.6 tzdata==2026.6 pyarrow==20.0.0 xxhash==4.1.0 \
aiohttp==3.14.5 multidict==7.2.1 yarl==1.25.1 frozenlist==1.8.0 aiosignal==1.4.0 aiohappyeyeballs==2.7.1 \
propcache==0.5.4 protobuf==3.20.3"

missing=""
for p in $APT_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup_python: apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y $missing
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup_python: creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

# pins_ok SPEC...: every name==version installed in the venv at that version
pins_ok() {
    "$VENV/bin/python" - "$@" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

# Quick check: all pins satisfied -> nothing to do.
if pins_ok $PIP_PKGS; then
    echo "setup_python: $VENV already up to date"
else
    echo "setup_python: pip install (pinned)"
    "$VENV/bin/pip" install --disable-pip-version-check $PIP_PKGS
fi

if pins_ok $LMEVAL_PKGS; then
    echo "setup_python: lm-eval packages up to date"
else
    echo "setup_python: pip install --no-deps (lm-eval reference)"
    "$VENV/bin/pip" install --disable-pip-version-check --no-deps $LMEVAL_PKGS
fi

"$VENV/bin/python" -c "import torch, numpy, sentencepiece, transformers, tokenizers, safetensors, gguf; print('torch', torch.__version__, '| transformers', transformers.__version__, '| numpy', numpy.__version__, '| sentencepiece', sentencepiece.__version__)"
