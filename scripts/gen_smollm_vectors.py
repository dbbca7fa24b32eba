#!/usr/bin/env python3
"""Test vectors for SmolLM2 (GGUF tokenizer.ggml.pre = "smollm") made by llama.cpp itself.

    python3 scripts/gen_smollm_vectors.py --llama-bin DIR [--gguf SmolLM2-135M-Instruct.Q4_1.gguf]
        [--out tests/fixtures/tokenizer/smollm] [--ppl-fixture tests/fixtures/llamacpp/smollm-ppl.json]
        [--only splits]

DIR holds llama.cpp's `llama-tokenize`, `llama-perplexity` and `llama-completion`
(`sh scripts/build_llamacpp.sh DIR0` prints it: llama.cpp vendored in the llama-cpp-python 0.3.36
sdist). The GGUF defaults to ../shared/data/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
(`sh scripts/fetch_smollm2.sh` gets it). Needs Python 3 with `regex` (and `gguf` for --only ppl, below).
The recorded fixtures come from tools built with GGML_NATIVE=OFF (AVX2/FMA/F16C, no AVX-512, no AMX):
on a CPU that reports AMX but whose kernel does not grant it, the default -march=native build dies
with SIGILL in ggml's AMX tile kernels as soon as it multiplies (llama-tokenize still works).

Writes, into --out:
  vectors.inp / vectors.out  llama.cpp's test-tokenizer-0 format: the inputs joined by
      "\\n__ggml_vocab_test__\\n" (each input followed by it), and one line of space-separated ids
      per input, as `llama-tokenize -m GGUF -f INPUT --ids --no-escape` prints them (no BOS: the
      GGUF says add_bos_token = false; CONTROL tokens such as <|im_start|> in the text are parsed,
      llama-tokenize's default). Inputs: llama.cpp's own ggml-vocab-*.gguf.inp cases (when
      ../shared has them), hand-written cases (digits, decimals, contractions, whitespace runs,
      tabs, \\r\\n, accents, CJK, emoji, Arabic, other-script digits, chat markup) and seeded
      random strings over a palette of those characters;
  texts.json  for whole files (data/sample/english-mix-valid-sample.txt, and WikiText-2 test part 1
      from ../shared when present): llama.cpp's id count, FNV-1a 64 of the ids (each as 4
      little-endian bytes), and the first and last 32 ids;
  splits.json  the pre-tokenizer's words for every input, from Python's `regex` (HF tokenizers'
      Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]: each \\p{N} code point
      alone, the GPT-2 regex on the text between them) -- an independent reference for
      dlq_bpe_split_next that needs no model (tests/test_tokenizer_bpe.c);
and --ppl-fixture: `llama-perplexity -m GGUF -f TEXT -c 512 --chunks 4 -t 2` on
data/sample/english-mix-valid-sample.txt and `llama-completion --temp 0` on a chat prompt and a plain
one, each on the GGUF and on an F32 copy of its weights (written here with gguf-py's dequantizers,
so that part needs the `gguf` package, e.g. 0.19.0 in a venv: --f32-gguf reuses a copy). On the
Q4_1 file llama.cpp's CPU kernels quantize the activations to 8 bits; on the F32 copy it computes in
fp32 as dlqat does (tests/test_smollm.c compares `dlqat ppl --protocol llama.cpp` with both numbers
and greedy decoding with both texts).
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile

import regex

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SEP = "\n__ggml_vocab_test__\n"
SEED = 135

GPT2_RE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
DIGIT_RE = regex.compile(r"\p{N}")

OWN = [
    "Hello world",
    " Hello world",
    "Hello World!",
    "The year 2024 had 366 days.",
    "12345",
    " 12345",
    "3.14159",
    "pi = 3.14159, e = 2.71828",
    "1,000,000 and 1 000 000 and 1.000.000",
    "Call 555-0123 now",
    "a1b2c3",
    "x  1",
    "x   22",
    "\t\t3",
    "7\n\n8",
    "version v1.2.3-rc4",
    "don't I'll we're they've she'd it's I'm",
    "DON'T I'LL WE'RE",
    "'s 's' ''s",
    "rock 'n' roll",
    "multiple   spaces    here",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four",
    "windows\r\nline\r\nendings",
    "mixed \t \n whitespace\u00a0nbsp\u3000ideographic",
    "\n",
    " ",
    "  ",
    "\t",
    "",
    "café naïve résumé Ångström Øresund",
    "Straße groß ÄÖÜ äöü",
    "Привет, как дела?",
    "Γειά σου Κόσμε",
    "你好，世界！这是一个测试。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트",
    "مرحبا بالعالم ١٢٣ ٤٥٦",
    "שלום עולם",
    "नमस्ते दुनिया १२३",
    "emoji 🙂😀🚀 and 👍🏽 and 👨‍👩‍👧",
    "x² + y³ = z½ and Ⅻ",
    "①②③ and ٣ and ๓",
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < 10; i++) { sum += a[i]; }",
    "if __name__ == \"__main__\":\n\tmain()",
    "<html><body class=\"x\">Hi</body></html>",
    "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct?x=1&y=2",
    "email: someone@example.com",
    "$100.50 + €20 = £99.99 (approx.)",
    "!!!???...---",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>Hello<|endoftext|>",
    "text <|im_start|> text",
    "<|im_start",
    "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the lazy dog.",
]

PALETTE = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3 + list("0123456789") * 3 +
           [" "] * 20 + ["\t", "\n", "\r", "\r\n", "  ", "\u00a0", "\u3000"] +
           list("'''\".,;:!?-_()[]{}<>/\\@#$%^&*+=~`|") +
           list("éèàçñöüßøåÆŒ") + list("中文字日本語한국") + list("مرحبا") + ["١", "٢", "३", "²", "½", "Ⅻ", "①"] +
           ["🙂", "🚀", "👍🏽", "\u0301", "\u200d"] + ["'s", "'t", "'re", "'ll", "'d", "'m", "'ve"])


def random_cases(n):
    rng = random.Random(SEED)
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(PALETTE) for _ in range(k)))
    return out


def smollm_split(text):
    """HF: Digits(individual_digits) then ByteLevel's GPT-2 regex on each piece between digits"""
    words, pos = [], 0
    for m in DIGIT_RE.finditer(text):
        if m.start() > pos:
            words += GPT2_RE.findall(text[pos:m.start()])
        words.append(m.group())
        pos = m.end()
    if pos < len(text):
        words += GPT2_RE.findall(text[pos:])
    return words


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]!r}")
    return r


def llama_ids(lb, gguf, data: bytes, tmp):
    p = os.path.join(tmp, "in.txt")
    with open(p, "wb") as f:
        f.write(data)
    r = run([lb("llama-tokenize"), "-m", gguf, "-f", p, "--ids", "--log-disable", "--no-escape"])
    line = r.stdout.decode().strip().splitlines()[-1] if r.stdout.strip() else "[]"
    if not (line.startswith("[") and line.endswith("]")):
        sys.exit(f"llama-tokenize printed {line!r}")
    return [int(x) for x in re.findall(r"-?\d+", line)]


def llama_ppl(lb, gguf, text, chunks):
    r = run([lb("llama-perplexity"), "-m", gguf, "-f", text, "-c", "512", "--chunks", str(chunks), "-t", "2"])
    log = (r.stdout + r.stderr).decode()
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", log)
    if not m:
        sys.exit("llama-perplexity printed no final estimate:\n" + log[-2000:])
    return float(m.group(1))


def llama_complete(lb, gguf, prompt, n):
    r = run([lb("llama-completion"), "-m", gguf, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "2", "-no-cnv",
             "--no-display-prompt", "--no-escape"])
    # llama-completion prints " [end of text]" after an end-of-generation token, and "\n\n" at the end
    return r.stdout.decode("utf-8").replace(" [end of text]", "").rstrip("\n")


def write_f32_gguf(src, dst):
    """every tensor dequantized to F32 by gguf-py, metadata copied (needs the gguf package, e.g. 0.19.0)"""
    import gguf
    import numpy as np
    from gguf import GGUFValueType as VT
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        if f.types[0] == VT.ARRAY:
            w.add_key_value(k, f.contents(), VT.ARRAY, sub_type=f.types[-1])
        else:
            w.add_key_value(k, f.contents(), f.types[0])
    for t in r.tensors:
        y = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, y.reshape([int(x) for x in reversed(t.shape)]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def fnv64(ids):
    h = 1469598103934665603
    for v in ids:
        for b in (v & 0xFFFFFFFF).to_bytes(4, "little"):
            h ^= b
            h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def llama_version(lb):
    r = subprocess.run([lb("llama-tokenize"), "--version"], capture_output=True, text=True)
    m = re.search(r"version: ([^\n]+)", r.stdout + r.stderr)  # "0.5.0-dev (build 1, commit 0c1e570)"
    return m.group(1).strip() if m else "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bin")
    ap.add_argument("--gguf", default=os.path.join(ROOT, "..", "shared", "data", "models", "smollm2-135m",
                                                   "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tokenizer", "smollm"))
    ap.add_argument("--ppl-fixture", default=os.path.join(ROOT, "tests", "fixtures", "llamacpp", "smollm-ppl.json"))
    ap.add_argument("--only", choices=["splits", "vectors", "ppl"], help="write only this part")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--f32-gguf", help="the F32 copy of --gguf (written with gguf-py when absent)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    shared_inp = os.path.join(ROOT, "..", "shared", "data", "models", "gguf-vocab")
    cases = []
    for name in ("ggml-vocab-gpt-2.gguf.inp", "ggml-vocab-llama-bpe.gguf.inp", "ggml-vocab-qwen2.gguf.inp"):
        p = os.path.join(shared_inp, name)
        if os.path.isfile(p):
            txt = open(p, encoding="utf-8", newline="").read()
            cases += txt.split(SEP)[:-1]
    cases += OWN + random_cases(150)
    seen, uniq = set(), []
    for c in cases:
        if c not in seen:
            seen.add(c)
            uniq.append(c)
    cases = uniq

    if a.only in (None, "splits"):
        with open(os.path.join(a.out, "splits.json"), "w", encoding="utf-8") as f:
            json.dump({"what": "smollm pre-tokenizer words (Python regex: Digits(individual) + GPT-2 regex), "
                               "scripts/gen_smollm_vectors.py",
                       "cases": [[c, smollm_split(c)] for c in cases]}, f, ensure_ascii=False, indent=0)
            f.write("\n")
        print(f"splits.json: {len(cases)} cases")
        if a.only:
            return 0

    if not a.llama_bin:
        sys.exit("--llama-bin DIR is needed for the llama.cpp vectors")
    lb = lambda t: os.path.join(a.llama_bin, t)
    if not os.path.isfile(a.gguf):
        sys.exit(f"{a.gguf}: not found (sh scripts/fetch_smollm2.sh)")
    ver = llama_version(lb)
    tmp = tempfile.mkdtemp(prefix="dlq-smollm-")

    if a.only in (None, "vectors"):
        outs = []
        for c in cases:
            outs.append(llama_ids(lb, a.gguf, c.encode("utf-8"), tmp))
        with open(os.path.join(a.out, "vectors.inp"), "w", encoding="utf-8", newline="") as f:
            for c in cases:
                f.write(c + SEP)
        with open(os.path.join(a.out, "vectors.out"), "w") as f:
            for ids in outs:
                f.write(" ".join(map(str, ids)) + "\n")
        texts = []
        for rel, path in (("data/sample/english-mix-valid-sample.txt", os.path.join(ROOT, "data", "sample",
                                                                                   "english-mix-valid-sample.txt")),
                          ("../shared/data/text/wikitext-2-raw/wiki.test.raw.part1",
                           os.path.join(ROOT, "..", "shared", "data", "text", "wikitext-2-raw", "wiki.test.raw.part1"))):
            if not os.path.isfile(path):
                continue
            data = open(path, "rb").read()
            ids = llama_ids(lb, a.gguf, data, tmp)
            texts.append({"file": rel, "bytes": len(data), "n": len(ids), "fnv1a64": f"{fnv64(ids):016x}",
                          "head": ids[:32], "tail": ids[-32:]})
            print(f"{rel}: {len(data)} bytes -> {len(ids)} ids")
        with open(os.path.join(a.out, "texts.json"), "w") as f:
            json.dump({"what": "llama-tokenize -m GGUF -f FILE --ids --no-escape on whole files: id count, FNV-1a 64 of "
                               "the ids as 4 little-endian bytes each, first and last 32 ids (scripts/gen_smollm_vectors.py)",
                       "llama_cpp": ver, "gguf": os.path.basename(a.gguf), "texts": texts}, f, indent=1)
            f.write("\n")
        print(f"vectors: {len(cases)} cases, {sum(len(o) for o in outs)} ids; llama.cpp {ver}")

    if a.only in (None, "ppl"):
        # the same weights as an F32 GGUF (gguf-py's dequantizers): llama.cpp then multiplies in fp32 like us, where on
        # the Q4_1 file its CPU kernels quantize the activations to 8 bits (Q8_1 / Q8_0)
        f32 = a.f32_gguf or os.path.join(tmp, "smollm2-f32.gguf")
        if not os.path.isfile(f32):
            write_f32_gguf(a.gguf, f32)
        text = "data/sample/english-mix-valid-sample.txt"
        ppl = llama_ppl(lb, a.gguf, os.path.join(ROOT, text), a.chunks)
        ppl32 = llama_ppl(lb, f32, os.path.join(ROOT, text), a.chunks)
        greedy = []
        for prompt in ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                       "Once upon a time, there was a"):
            n_gen = 24
            cq, cf = llama_complete(lb, a.gguf, prompt, n_gen), llama_complete(lb, f32, prompt, n_gen)
            greedy.append({"prompt": prompt, "n": n_gen, "completion": cq, "completion_f32": cf})
            print(f"greedy {prompt!r}: Q4_1 {cq!r}, F32 {cf!r}")
        out = {"what": "llama-perplexity -m GGUF -f TEXT -c CTX --chunks CHUNKS -t 2 (ppl_llamacpp), the same on the GGUF's "
                       "weights written as F32 by gguf-py (ppl_llamacpp_f32), and llama-completion -p PROMPT -n N --temp 0 "
                       "-no-cnv --no-display-prompt on both (completion, completion_f32) (scripts/gen_smollm_vectors.py)",
               "llama_cpp": ver, "gguf": os.path.basename(a.gguf),
               "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
               "text": text, "ctx": 512, "chunks": a.chunks, "ppl_llamacpp": ppl, "ppl_llamacpp_f32": ppl32,
               "greedy": greedy}
        os.makedirs(os.path.dirname(a.ppl_fixture), exist_ok=True)
        with open(a.ppl_fixture, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"llama-perplexity {ppl} (F32 copy {ppl32}; {a.chunks} chunks of 512)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
