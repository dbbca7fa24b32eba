#!/usr/bin/env python3
"""Run llama.cpp itself on a GGUF written by `dlqat export --format gguf`, and check what it computes
against an independent reference: transformers on the same .dlq exported as a Hugging Face folder
(fp32), fed llama.cpp's own token ids.

    .venv/bin/python scripts/check_llamacpp.py --llama-bin DIR [--model models/english-mix-7M]
        [--text data/sample/english-mix-valid-sample.txt] [--bits 4] [--group 32] [--ctx 128] [--chunks 40]
        [--dlq M.dlq] [--keep DIR]
    .venv/bin/python scripts/check_llamacpp.py --llama-bin DIR --write-fixture tests/fixtures/llamacpp/ppl.json
    .venv/bin/python scripts/check_llamacpp.py --llama-bin DIR --model models/stories260K/stories260K.bin \
        --tokens ROWS.tok [--max-rows N] [--dlq M.dlq] [--write-fixture tests/fixtures/llamacpp/tokens.json]

DIR holds llama.cpp's `llama-perplexity`, `llama-tokenize` and `llama-completion` (a CMake build of
llama.cpp, e.g. the copy vendored in the llama-cpp-python sdist on PyPI; nothing is downloaded here).
Without --dlq the model is quantized by `dlqat quantize --method rtn`.

--write-fixture records llama-perplexity's number for RTN exports of the model at W4/W5/W8 g32 and
W3/W2 g64 (Q4_1, Q5_1, Q8_0, Q3_K, Q2_K), which tests/test_llamacpp.c compares with
`dlqat ppl --protocol llama.cpp` on the same GGUF files (no llama.cpp needed there).

With --tokens (models without a tokenizer, e.g. stories260K, whose GGUF says tokenizer.ggml.model =
none): the perplexity over the rows of a dlqat token file through libllama
(`llamacpp-tokens-ppl`, scripts/llamacpp_tokens_ppl.cpp, built by build_llamacpp.sh) against
`dlqat ppl --tokens` on the same GGUF (within 1 %: llama.cpp's 8-bit activations, on a model that
8-bit noise moves by tenths of a percent) and transformers on the HF export (fp32 weights of the
.dlq) against `dlqat ppl` on the .dlq (within 1e-4). stories260K's MLP rows of 172 are written as F16 (no ggml block type fits them), so this also
runs the ragged export in llama.cpp. --write-fixture records llama.cpp's number for the RTN W4 g32 file.

Checks (exit status 0 when every check passes):
  1. the GGUF loads in llama.cpp and `llama-tokenize` gives the text's ids; they equal the
     SentencePiece ids of the model's tokenizer.model (when the model folder has one);
  2. `llama-perplexity -c CTX` (llama.cpp's protocol: chunks of CTX ids, the first one set to BOS,
     the second half of each chunk scored) against the same protocol computed by transformers on those
     ids: relative difference <= 1 %. llama.cpp's CPU kernels multiply Q4_1 / Q5_1 / K-quant weights
     with 8-bit-quantized activations (Q8_1 / Q8_K), transformers in fp32: that, not the weights
     (identical up to fp16 scale rounding; scripts/check_gguf_export.py), is what the tolerance covers;
  3. greedy continuation of a prompt: `llama-completion --temp 0` against `dlqat generate --temp 0`
     on the same GGUF and transformers' greedy search on the HF folder. Printed with the length of
     the common prefix; a difference after a near-tie is reported, not failed (8-bit activations).
"""
import argparse
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch

fails = 0


def check(ok, what):
    global fails
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        fails += 1


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return r


def llama_ppl(lb, gguf, text, ctx, chunks):
    r = run([lb("llama-perplexity"), "-m", gguf, "-f", text, "-c", str(ctx), "--chunks", str(chunks), "-t", "2"])
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", r.stdout + r.stderr)
    if not m:
        sys.exit("llama-perplexity printed no final estimate:\n" + (r.stdout + r.stderr)[-2000:])
    return float(m.group(1))


def write_fixture(a, lb, work):
    import json
    rev = "unknown"
    for up in (a.llama_bin, os.path.join(a.llama_bin, ".."), os.path.join(a.llama_bin, "..", "..")):
        r = subprocess.run(["git", "-C", up, "rev-parse", "HEAD"], capture_output=True, text=True)
        if r.returncode == 0:
            rev = r.stdout.strip()
            break
    cases = []
    for bits, group in ((4, 32), (5, 32), (8, 32), (3, 64), (2, 64)):
        dlq, gguf = os.path.join(work, f"w{bits}g{group}.dlq"), os.path.join(work, f"w{bits}g{group}.gguf")
        run([a.dlqat, "quantize", "--model", a.model, "--method", "rtn", "--bits", str(bits), "--group", str(group),
             "--out", dlq])
        run([a.dlqat, "export", "--model", dlq, "--format", "gguf", "--no-ppl", "--out", gguf])
        p = llama_ppl(lb, gguf, a.text, a.ctx, a.chunks)
        print(f"W{bits} g{group}: llama-perplexity {p:.4f}")
        cases.append({"bits": bits, "group": group, "ppl_llamacpp": p})
    out = {"what": "llama-perplexity -c CTX --chunks CHUNKS -t 2 on GGUF files written by `dlqat quantize --method rtn` + "
                   "`dlqat export --format gguf` (scripts/check_llamacpp.py --write-fixture)",
           "llama_cpp_commit": rev, "model": a.model, "text": a.text, "ctx": a.ctx, "chunks": a.chunks, "cases": cases}
    os.makedirs(os.path.dirname(a.write_fixture) or ".", exist_ok=True)
    with open(a.write_fixture, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", a.write_fixture)
    return 0


def make_files(a, work, stem):
    """the .dlq (--dlq, or RTN of --model) and its GGUF; returns (dlq, gguf, hf folder path, written later)"""
    dlq = a.dlq
    if not dlq:
        dlq = os.path.join(work, stem + ".dlq")
        run([a.dlqat, "quantize", "--model", a.model, "--method", "rtn", "--bits", str(a.bits), "--group", a.group,
             "--out", dlq])
    gguf = os.path.join(work, stem + ".gguf")
    run([a.dlqat, "export", "--model", dlq, "--format", "gguf", "--no-ppl", "--out", gguf])
    return dlq, gguf, os.path.join(work, stem + "-hf")


def check_tokens(a, lb, work):
    import json
    dlq, gguf, hf = make_files(a, work, "t")
    r = run([lb("llamacpp-tokens-ppl"), gguf, a.tokens] + ([str(a.max_rows)] if a.max_rows else []))
    cpp = json.loads(r.stdout.strip().splitlines()[-1])
    jp = os.path.join(work, "t-ppl.json")
    run([a.dlqat, "ppl", "--model", gguf, "--tokens", a.tokens, "--batch", "8", "--json", jp]
        + (["--max-windows", str(a.max_rows)] if a.max_rows else []))
    ours = json.load(open(jp))
    check(cpp["rows"] == ours["windows"], f"rows: llama.cpp {cpp['rows']}, dlqat {ours['windows']}")
    rel = abs(cpp["ppl"] - ours["ppl"]) / ours["ppl"]
    check(rel <= 0.01, f"llama.cpp {cpp['ppl']:.4f} vs dlqat {ours['ppl']:.4f} on the GGUF ({cpp['rows']} rows of {cpp['T']}): "
                       f"relative difference {100 * rel:.3f} %")
    if a.write_fixture:
        out = {"what": "libllama perplexity (scripts/llamacpp_tokens_ppl.cpp) over the rows of TOKENS for the GGUF written by "
                       "`dlqat quantize --method rtn --bits BITS --group GROUP` + `dlqat export --format gguf` "
                       "(scripts/check_llamacpp.py --tokens --write-fixture)",
               "model": a.model, "tokens": a.tokens, "bits": a.bits, "group": int(a.group), "rows": cpp["rows"],
               "ppl_llamacpp": cpp["ppl"], "ppl_dlqat_when_recorded": ours["ppl"]}
        with open(a.write_fixture, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print("wrote", a.write_fixture)
    run([a.dlqat, "export", "--model", dlq, "--format", "hf", "--dtype", "f32", "--out", hf])
    from transformers import AutoModelForCausalLM
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_llama2c import load_token_file
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    toks = load_token_file(a.tokens)
    if a.max_rows:
        toks = toks[:a.max_rows]
    tot = 0.0
    with torch.no_grad():
        for i in range(0, toks.shape[0], 16):
            t = toks[i:i + 16].long()
            lp = torch.log_softmax(model(t[:, :-1]).logits.double(), -1)
            tot += (-lp.gather(-1, t[:, 1:, None])[..., 0]).mean(1).sum().item()
    ref = math.exp(tot / toks.shape[0])
    jd = os.path.join(work, "t-ppl-dlq.json")
    run([a.dlqat, "ppl", "--model", dlq, "--tokens", a.tokens, "--batch", "8", "--json", jd]
        + (["--max-windows", str(a.max_rows)] if a.max_rows else []))
    od = json.load(open(jd))["ppl"]
    rel = abs(ref - od) / ref
    check(rel <= 1e-4, f"transformers on the HF export {ref:.4f} vs dlqat on the .dlq {od:.4f}: relative difference {rel:.2e} "
                       f"(the GGUF's fp16 scales move dlqat's number by {100 * abs(ours['ppl'] - od) / od:.3f} %)")
    print(f"{fails} check(s) failed" if fails else "every check passed")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--llama-bin", required=True)
    ap.add_argument("--model", default="models/english-mix-7M")
    ap.add_argument("--text", default="data/sample/english-mix-valid-sample.txt")
    ap.add_argument("--dlq")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group", default="32")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--dlqat", default="build/dlqat")
    ap.add_argument("--keep")
    ap.add_argument("--write-fixture")
    ap.add_argument("--tokens")
    ap.add_argument("--max-rows", type=int, default=0)
    a = ap.parse_args()
    lb = lambda t: os.path.join(a.llama_bin, t)
    for t in (("llamacpp-tokens-ppl",) if a.tokens else ("llama-perplexity", "llama-tokenize", "llama-completion")):
        if not os.access(lb(t), os.X_OK):
            sys.exit(f"{lb(t)}: not found (build llama.cpp's {t} target)")
    work = a.keep or tempfile.mkdtemp(prefix="dlq-llamacpp-")
    os.makedirs(work, exist_ok=True)
    if a.tokens:
        return check_tokens(a, lb, work)
    if a.write_fixture:
        return write_fixture(a, lb, work)
    dlq, gguf, hf = make_files(a, work, "m")
    run([a.dlqat, "export", "--model", dlq, "--format", "hf", "--dtype", "f32", "--out", hf])

    # 1. llama.cpp's ids of the text (BOS first, as llama-perplexity tokenizes it)
    r = run([lb("llama-tokenize"), "-m", gguf, "-f", a.text, "--ids", "--log-disable"])
    ids = [int(x) for x in re.findall(r"-?\d+", r.stdout.strip().splitlines()[-1])]
    check(len(ids) >= 2 * a.ctx, f"llama-tokenize: {len(ids)} ids from {a.text}")
    spm = os.path.join(a.model, "tokenizer.model")
    if os.path.isfile(spm):
        import sentencepiece as sp
        s = sp.SentencePieceProcessor(model_file=spm)
        ref = [s.bos_id()] + s.encode(open(a.text, encoding="utf-8").read())
        same = next((i for i, (x, y) in enumerate(zip(ids, ref)) if x != y), min(len(ids), len(ref)))
        check(ids == ref, f"llama.cpp ids == sentencepiece ids ({len(ids)} vs {len(ref)}; first difference at {same})")

    # 2. perplexity, llama.cpp's protocol, both sides on llama.cpp's ids
    ppl_cpp = llama_ppl(lb, gguf, a.text, a.ctx, a.chunks)
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(hf, torch_dtype=torch.float32).eval()
    bos = model.config.bos_token_id
    n_chunk = min(a.chunks, len(ids) // a.ctx)
    first, nll, cnt = a.ctx // 2, 0.0, 0
    with torch.no_grad():
        for c in range(n_chunk):
            t = list(ids[c * a.ctx:(c + 1) * a.ctx])
            t[0] = bos
            lp = torch.log_softmax(model(torch.tensor([t])).logits[0].double(), -1)
            for j in range(first, a.ctx - 1):
                nll -= lp[j, t[j + 1]].item() if j + 1 < a.ctx else 0
                cnt += 1
    ppl_ref = math.exp(nll / cnt)
    rel = abs(ppl_cpp - ppl_ref) / ppl_ref
    check(rel <= 0.01, f"llama-perplexity {ppl_cpp:.4f} vs transformers {ppl_ref:.4f} (same protocol, {n_chunk} chunks of "
                       f"{a.ctx}): relative difference {100 * rel:.3f} %")

    # 3. greedy continuation
    r = run([lb("llama-completion"), "-m", gguf, "-p", a.prompt, "-n", str(a.n), "--temp", "0", "-t", "2", "-no-cnv",
             "--no-display-prompt"])
    cpp = r.stdout.strip()
    ours = run([a.dlqat, "generate", "--model", gguf, "--prompt", a.prompt, "-n", str(a.n), "--temp", "0"]).stdout.strip()
    if ours.startswith(a.prompt):
        ours = ours[len(a.prompt):].strip()
    from transformers import AutoTokenizer
    tok = None
    try:
        tok = AutoTokenizer.from_pretrained(a.model)
    except Exception:
        pass
    pre = lambda x, y: next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    print(f"      llama.cpp : {cpp!r}")
    print(f"      dlqat     : {ours!r}")
    if tok is not None:
        enc = tok(a.prompt, return_tensors="pt")
        seq = enc["input_ids"][0].tolist()
        with torch.no_grad():  # greedy by hand (model.generate needs torch.distributed, broken in Debian's torch 1.13)
            for _ in range(a.n):
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
                if nxt == model.config.eos_token_id:
                    break
                seq.append(nxt)
        hft = tok.decode(seq[enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        print(f"      transformers: {hft!r}")
        # where llama.cpp's text leaves the fp32 greedy path: the fp32 logit margin between the two tokens there
        alt = tok(a.prompt + (" " if not cpp[:1] in ",.;:!?" else "") + cpp)["input_ids"]
        k = next((i for i, (x, y) in enumerate(zip(seq, alt)) if x != y), None)
        if k is not None and k >= enc["input_ids"].shape[1]:
            with torch.no_grad():
                lg = model(torch.tensor([seq[:k]])).logits[0, -1]
            print(f"      llama.cpp leaves the fp32 greedy path at token {k}: {tok.convert_ids_to_tokens(seq[k])!r} vs "
                  f"{tok.convert_ids_to_tokens(alt[k])!r}, fp32 logit margin {float(lg[seq[k]] - lg[alt[k]]):.4f}")
        print(f"      common prefix: llama.cpp/transformers {pre(cpp, hft)} chars, dlqat/transformers {pre(ours, hft)} chars"
              f" (of {len(hft)})")
    print(f"      common prefix llama.cpp/dlqat: {pre(cpp, ours)} chars (of {len(cpp)})")
    print(f"{fails} check(s) failed" if fails else "every check passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
