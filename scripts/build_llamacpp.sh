#!/bin/sh
# Builds llama.cpp's llama-perplexity, llama-tokenize and llama-completion, and our small
# llamacpp-tokens-ppl (scripts/llamacpp_tokens_ppl.cpp: token-file perplexity through libllama), for the cross-check
# scripts/check_llamacpp.py, from the llama.cpp copy vendored in the llama-cpp-python source
# distribution on PyPI (the only registry these machines reach; MIT licence). Not needed by the
# build or the tests: tests/test_llamacpp.c compares against numbers recorded from these tools.
#   sh scripts/build_llamacpp.sh [DIR]        (DIR: /tmp/llamacpp; needs cmake, g++; ~15 min on 2 cores)
# Prints the folder to pass as --llama-bin. Version: LLAMA_CPP_PYTHON (default 0.3.36, llama.cpp 0c1e570).
set -eu
DIR=${1:-/tmp/llamacpp}
VER=${LLAMA_CPP_PYTHON:-0.3.36}
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[ -x "$PY" ] || PY=python3
mkdir -p "$DIR"
[ -f "$DIR/llama_cpp_python-$VER.tar.gz" ] ||
    "$PY" -m pip download --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d "$DIR"
[ -d "$DIR/llama_cpp_python-$VER" ] || tar xzf "$DIR/llama_cpp_python-$VER.tar.gz" -C "$DIR"
SRC="$DIR/llama_cpp_python-$VER/vendor/llama.cpp"
# Not -march=native: on AMX Xeons under KVM ggml's native build dies with SIGILL in its AMX
# kernels at the first matrix product; an AVX2/FMA build runs on every x86-64 CPU we use
# (LLAMA_NATIVE=1 restores ggml's default).
ARCH="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
[ "${LLAMA_NATIVE:-0}" = 1 ] && ARCH=""
[ "$(uname -m)" = x86_64 ] || ARCH=""
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DGGML_OPENMP=OFF $ARCH > "$DIR/cmake.log"
cmake --build "$SRC/build" -j "$(nproc)" --target llama-perplexity llama-tokenize llama-completion > "$DIR/build.log"
${CXX:-g++} -O2 -std=c++17 -I"$SRC/include" -I"$SRC/ggml/include" "$(dirname "$0")/llamacpp_tokens_ppl.cpp" \
    -L"$SRC/build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$SRC/build/bin" -o "$SRC/build/bin/llamacpp-tokens-ppl"
echo "$SRC/build/bin"
