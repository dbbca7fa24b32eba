#!/usr/bin/env python3
"""PyTorch/transformers side of the perplexity + speed benchmark.

    .venv/bin/python bench/torch_ppl.py MODEL_DIR TEXT [--ctx 512] [--max-windows N]
                                        [--threads N] [--json OUT]

MODEL_DIR: a Hugging Face Llama-family folder with config.json, safetensors and a
SentencePiece tokenizer.model.  The model is loaded in float32 with eager attention.
TEXT is tokenized with python sentencepiece as ONE sequence: a single BOS at the
start of the whole text, then the ids.  Non-overlapping windows of ctx tokens are
cut from it (a shorter tail is dropped); each window runs alone (batch 1) under
torch.inference_mode(); its loss is the mean next-token NLL over its ctx-1
predictions.  ppl = exp(mean over windows of the window losses).

Prints (and with --json writes) {"ppl", "nll", "tokens", "windows", "ctx",
"seconds", "tokens_per_s", "threads"}; seconds counts only the forward passes,
tokens = windows * ctx (tokens fed through the model).
"""
import argparse
import json
import math
import os
import sys
import time

import sentencepiece as spm
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("text")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--max-windows", type=int, default=0, help="0 = all")
    ap.add_argument("--threads", type=int, default=0, help="0 = torch default")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()

    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
    with open(a.text, encoding="utf-8") as f:
        text = f.read()
    ids = [sp.bos_id()] + sp.encode(text)
    n_win = len(ids) // a.ctx
    if a.max_windows > 0:
        n_win = min(n_win, a.max_windows)
    if n_win == 0:
        sys.exit(f"text has {len(ids)} tokens, fewer than ctx={a.ctx}")

    model = AutoModelForCausalLM.from_pretrained(a.model_dir, torch_dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    if a.ctx > model.config.max_position_embeddings:
        print(f"warning: ctx {a.ctx} > max_position_embeddings "
              f"{model.config.max_position_embeddings}", file=sys.stderr)

    losses, seconds = [], 0.0
    with torch.inference_mode():
        for w in range(n_win):
            x = torch.tensor([ids[w * a.ctx:(w + 1) * a.ctx]])
            t0 = time.perf_counter()
            logits = model(x).logits
            seconds += time.perf_counter() - t0
            loss = F.cross_entropy(logits[0, :-1].float(), x[0, 1:], reduction="mean")
            losses.append(loss.item())

    nll = sum(losses) / len(losses)
    res = {
        "ppl": math.exp(nll),
        "nll": nll,
        "tokens": n_win * a.ctx,
        "windows": n_win,
        "ctx": a.ctx,
        "seconds": seconds,
        "tokens_per_s": n_win * a.ctx / seconds,
        "threads": threads,
    }
    print(json.dumps(res))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
