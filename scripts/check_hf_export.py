#!/usr/bin/env python3
"""Load a `dlqat export --format hf` folder with Hugging Face transformers and compare its logits with
our runtime's on the same tokens.

    .venv/bin/python scripts/check_hf_export.py --dlq M.dlq [--out DIR] [--dtype f16|bf16] [--dlqat build/dlqat]
        [--text data/sample/english-mix-valid-sample.txt] [--tokens 64]

Runs `dlqat export --format hf --dtype D --ref-logits` (our runtime's logits of the .dlq on the first
--tokens tokens of --text, and those token ids), loads DIR with AutoModelForCausalLM (float32 compute)
and the tokenizer with AutoTokenizer, checks that the tokenizer gives the same ids, and compares logits.
The exported weights are the .dlq's rounded to f16/bf16, so the logits agree to about that rounding
(thresholds below). Exit status 0 when every check passes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dlq", required=True)
    ap.add_argument("--out")
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16"])
    ap.add_argument("--dlqat", default="build/dlqat")
    ap.add_argument("--text", default="data/sample/english-mix-valid-sample.txt")
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    td = tempfile.TemporaryDirectory()
    out = a.out or os.path.join(td.name, "hf")
    ref = os.path.join(td.name, "ref.f32")
    subprocess.run([a.dlqat, "export", "--model", a.dlq, "--format", "hf", "--dtype", a.dtype, "--out", out,
                    "--ppl-text", a.text, "--no-ppl", "--ref-logits", ref, "--ref-tokens", str(a.tokens)],
                   check=True, stdout=subprocess.DEVNULL)
    meta = json.load(open(ref + ".json"))
    ids, T, V = meta["ids"], meta["T"], meta["vocab"]
    ours = np.fromfile(ref, dtype="<f4").reshape(T, V)
    fails = 0

    def check(cond, what):
        nonlocal fails
        print(("  ok    " if cond else "  FAIL  ") + what)
        fails += 0 if cond else 1

    print(f"{out}: {sorted(os.listdir(out))}")
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32)
    model.eval()
    cfg = model.config
    print(f"  info  transformers {type(model).__name__}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, "
          f"vocab {cfg.vocab_size}, weights stored as {json.load(open(os.path.join(out, 'config.json')))['torch_dtype']}")
    try:
        tok = AutoTokenizer.from_pretrained(out, use_fast=False)
    except Exception:  # no slow tokenizer class for this tokenizer (tokenizer.json only)
        tok = AutoTokenizer.from_pretrained(out)
    text = open(a.text, encoding="utf-8").read()
    hf_ids = tok(text, add_special_tokens=True)["input_ids"][:T]
    check(hf_ids == ids, f"transformers' tokenizer ({type(tok).__name__}) gives our {T} token ids")
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].numpy()
    d = np.abs(theirs - ours).max()
    rel = d / np.abs(ours).max()
    # weights are the .dlq's rounded to f16 (2^-11) / bf16 (2^-8): logits agree to a small multiple of that
    lim = 5e-3 if a.dtype == "f16" else 3e-2
    check(rel < lim, f"logits: max |transformers - dlqat| = {d:.4g} ({rel:.2e} of max |logit|) < {lim:g}")
    agree = float((theirs.argmax(-1) == ours.argmax(-1)).mean())
    check(agree >= 0.95, f"next-token argmax agrees on {agree * 100:.1f}% of {T} positions")
    print(f"{'PASS' if not fails else 'FAIL'}: {fails} failed check(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
