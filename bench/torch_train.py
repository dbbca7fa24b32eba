#!/usr/bin/env python3
"""PyTorch/transformers side of the training benchmark.

    .venv/bin/python bench/torch_train.py MODEL_DIR --mode full|lora [--seq 256] [--batch 16]
                                          [--steps N] [--threads N] [--text FILE]
                                          [--lr 1e-4] [--peft] [--json OUT]

MODEL_DIR: a Hugging Face Llama-family folder; weights are loaded as float32 (bf16 files
are upcast), eager attention, model.train() (no dropout in these configs).

Data: each step is a batch of `batch` sequences of `seq` tokens; labels = input ids (HF
shifts inside, so seq-1 predictions per row, mean loss).  Without --text the ids are
uniform random in [0, vocab) (torch.Generator seed 0, a new batch each step); with --text
the file is tokenized with sentencepiece (MODEL_DIR/tokenizer.model, one BOS then the
ids) and consecutive non-overlapping seq-token windows are used (wrapping around).

Optimizer: torch.optim.AdamW, lr 1e-4, betas (0.9, 0.999), eps 1e-6;
  --mode full: every parameter trained, weight decay 0.01 on 2-D weights, 0 on norms;
  --mode lora: base frozen (requires_grad False everywhere), LoRA r 16, alpha 16 (scaling 1)
    on q,k,v,o,gate,up,down of every layer, y = W x + scaling * B(A x), A kaiming-uniform
    (a=sqrt(5)) and B zero like PEFT's default; weight decay 0.  Hand-written modules,
    or PEFT's LoraModel with --peft.
No gradient clipping.  Each step: zero_grad(set_to_none) -> forward -> backward -> step.

Timing: one warm-up step (not timed), then `steps` timed steps;
tokens_per_s = batch * seq * steps / timed seconds, step_s = timed seconds / steps.
peak_rss_mb = resource.getrusage(RUSAGE_SELF).ru_maxrss / 1024 at the end (whole
process: Python + torch + model + activations + optimizer state).
loss_first = loss of the warm-up step (initial weights), loss_last = loss of the last step.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
from transformers import AutoModelForCausalLM

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoRALinear(nn.Module):
    """y = W x + scaling * B(A x), as peft.tuners.lora.Linear (dropout 0, no bias)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


def add_lora(model, r, alpha):
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name in LORA_TARGETS:
                if hasattr(parent, name):
                    setattr(parent, name, LoRALinear(getattr(parent, name), r, alpha))
    return model


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--mode", choices=["full", "lora"], required=True)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0 = torch default")
    ap.add_argument("--text", help="train on the tokens of this text file instead of random ids")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--peft", action="store_true", help="use peft's LoraModel for --mode lora")
    ap.add_argument("--json", dest="json_out")
    a = ap.parse_args()

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    torch.manual_seed(0)

    model = AutoModelForCausalLM.from_pretrained(a.model_dir, torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    V = model.config.vocab_size
    if a.seq > model.config.max_position_embeddings:
        print(f"warning: seq {a.seq} > max_position_embeddings "
              f"{model.config.max_position_embeddings}", file=sys.stderr)

    if a.mode == "full":
        decay = [p for p in model.parameters() if p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": 0.01},
                  {"params": no_decay, "weight_decay": 0.0}]
        lora_impl = None
    else:
        if a.peft:
            from peft import LoraConfig, get_peft_model
            import peft
            model = get_peft_model(model, LoraConfig(
                r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=0.0, bias="none",
                target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
            lora_impl = "peft " + peft.__version__
        else:
            model = add_lora(model, a.lora_r, a.lora_alpha)
            lora_impl = "hand-written"
        groups = [{"params": [p for p in model.parameters() if p.requires_grad],
                   "weight_decay": 0.0}]
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-6)
    rss_loaded = rss_mb()

    if a.text:
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model_dir, "tokenizer.model"))
        with open(a.text, encoding="utf-8") as f:
            ids = torch.tensor([sp.bos_id()] + sp.encode(f.read()), dtype=torch.long)
        n_win = len(ids) // a.seq
        if n_win == 0:
            sys.exit(f"text has {len(ids)} tokens, fewer than seq={a.seq}")
        wins = ids[:n_win * a.seq].view(n_win, a.seq)
        cursor = [0]

        def next_batch():
            rows = [(cursor[0] + i) % n_win for i in range(a.batch)]
            cursor[0] = (cursor[0] + a.batch) % n_win
            return wins[rows]
    else:
        g = torch.Generator().manual_seed(0)

        def next_batch():
            return torch.randint(0, V, (a.batch, a.seq), generator=g)

    def step():
        x = next_batch()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        return loss.item()

    loss_first = step()                       # warm-up
    losses = []
    t0 = time.perf_counter()
    for _ in range(a.steps):
        losses.append(step())
    dt = time.perf_counter() - t0

    res = {
        "mode": a.mode,
        "tokens_per_s": round(a.batch * a.seq * a.steps / dt, 1),
        "step_s": round(dt / a.steps, 4),
        "peak_rss_mb": round(rss_mb(), 1),
        "threads": threads,
        "loss_first": round(loss_first, 5),
        "loss_last": round(losses[-1], 5),
        "losses": [round(x, 5) for x in losses],
        "rss_after_load_mb": round(rss_loaded, 1),
        "batch": a.batch, "seq": a.seq, "steps": a.steps, "lr": a.lr,
        "data": a.text or "random",
        "params": n_params, "trainable_params": n_train,
        "lora": None if a.mode == "full" else
        {"r": a.lora_r, "alpha": a.lora_alpha, "impl": lora_impl},
        "torch": torch.__version__,
    }
    print(json.dumps(res))
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
