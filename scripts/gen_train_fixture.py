#!/usr/bin/env python3
"""Reference data (PyTorch) for the C training engine: gradients and AdamW steps.

Run from the repository root with the fixture venv (scripts/setup_python.sh):

    .venv/bin/python scripts/gen_train_fixture.py [--out tests/fixtures/train]

Base model: tests/fixtures/hf/llama (LlamaForCausalLM, fp32, untied), loaded in
float32 with eager attention, model.train() (the config has no dropout).

Batch: B=2 rows of T=12 ids.  targets[b, t] is the token that position t must
predict (already shifted: a 13-token random sequence s gives input_ids = s[:12],
targets = s[1:]); -1 = ignored (the first 3 positions of row 1).  Loss = mean
cross-entropy over the non-ignored positions of the whole batch (= HF's causal-LM
loss with -100 labels; checked below).

Writes (deterministic; everything seeded, 1 thread):
  full.json               input_ids, targets, loss, per-tensor max|grad|, 10 AdamW steps
  full_grads.safetensors  d loss / d p for every parameter (HF names), fp32
  full_final.safetensors  the parameters after the 10 AdamW steps, fp32
  lora.json               same batch, LoRA (r 4, alpha 8) loss, 10 AdamW steps
  lora_init.safetensors   initial lora_A / lora_B (PEFT adapter names), fp32
  lora_grads.safetensors  d loss / d lora_{A,B} at the initial values
  lora_final.safetensors  lora_A / lora_B after the 10 AdamW steps
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

SEED = 4242
B, T, V = 2, 12, 256
N_IGNORED = 3          # first 3 positions of row 1
STEPS = 10
BASE = "tests/fixtures/hf/llama"

FULL_HP = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01, clip=1.0)
LORA_R, LORA_ALPHA, LORA_STD = 4, 8, 0.02
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_HP = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0)


def load_base(dtype=torch.float32):
    m = LlamaForCausalLM.from_pretrained(BASE, torch_dtype=torch.float32,
                                         attn_implementation="eager")
    m = m.to(dtype)
    m.train()
    return m


def make_batch():
    g = torch.Generator().manual_seed(SEED)
    seq = torch.randint(0, V, (B, T + 1), generator=g)
    input_ids = seq[:, :T].clone()
    targets = seq[:, 1:].clone()
    targets[1, :N_IGNORED] = -1
    return input_ids, targets


def loss_fn(model, input_ids, targets):
    logits = model(input_ids=input_ids).logits            # [B, T, V]
    t = targets.clone()
    t[t < 0] = -100
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), t.reshape(-1),
                           ignore_index=-100, reduction="mean")


def hf_loss(model, input_ids, targets):
    """HF's own labels path: append a dummy token, labels = [-100, targets]; the model
    shifts internally, and causal attention makes the dummy token irrelevant."""
    ids13 = torch.cat([input_ids, torch.zeros(B, 1, dtype=input_ids.dtype)], 1)
    t = targets.clone()
    t[t < 0] = -100
    labels = torch.cat([torch.full((B, 1), -100, dtype=t.dtype), t], 1)
    return model(input_ids=ids13, labels=labels).loss


def maxabs(t):
    return float(t.detach().abs().max())


def save_st(path, tensors):
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}, path)


# ------------------------------------------------------------------ full fine-tuning

def full_adamw(input_ids, targets, wd2=FULL_HP["weight_decay"], wd1=0.0,
               clip=FULL_HP["clip"], eps=FULL_HP["eps"], dtype=torch.float32):
    model = load_base(dtype)
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() == 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": wd2},
                             {"params": no_decay, "weight_decay": wd1}],
                            lr=FULL_HP["lr"], betas=FULL_HP["betas"], eps=eps)
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        l = loss_fn(model, input_ids, targets)
        l.backward()
        if clip is not None:
            gn = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
        else:
            gn = math.sqrt(sum(float((p.grad.double() ** 2).sum())
                               for p in model.parameters()))
        opt.step()
        losses.append(l.item())
        norms.append(gn)
    with torch.no_grad():
        final_loss = loss_fn(model, input_ids, targets).item()
    return model, losses, norms, final_loss


def run_full(out, input_ids, targets):
    model = load_base()
    names = [n for n, _ in model.named_parameters()]
    loss = loss_fn(model, input_ids, targets)
    with torch.no_grad():
        l_hf = hf_loss(model, input_ids, targets).item()
    assert abs(l_hf - loss.item()) < 1e-6, (l_hf, loss.item())
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    assert all(maxabs(g) > 0 for g in grads.values())
    save_st(os.path.join(out, "full_grads.safetensors"), grads)

    # fp64 reference of the same gradients (tolerance guidance for the C test)
    m64 = load_base(torch.float64)
    l64 = loss_fn(m64, input_ids, targets)
    l64.backward()
    g64 = {n: p.grad for n, p in m64.named_parameters()}
    d64 = {n: float((grads[n].double() - g64[n]).abs().max()) for n in names}
    del m64

    print(f"full: loss {loss.item():.7f} (HF labels path {l_hf:.7f}, fp64 {l64.item():.7f})")
    print(f"  {'tensor':42s} {'shape':>10s} {'max|grad|':>10s} {'|g32-g64|':>9s}")
    for n in names:
        print(f"  {n:42s} {str(list(grads[n].shape)):>10s} {maxabs(grads[n]):10.3e} {d64[n]:9.1e}")

    # 10 AdamW steps from the initial weights, same batch, clipping to global norm 1
    model, losses, norms, final_loss = full_adamw(input_ids, targets)
    save_st(os.path.join(out, "full_final.safetensors"), dict(model.named_parameters()))
    # how much the final weights move if the optimizer details are changed
    # (a C implementation must be closer than these to the golden)
    final = dict(model.named_parameters())
    sens = {}
    for what, kw in (("no weight decay", dict(wd2=0.0)),
                     ("weight decay on norms too", dict(wd1=FULL_HP["weight_decay"])),
                     ("no clipping", dict(clip=None)),
                     ("eps 1e-8", dict(eps=1e-8)),
                     ("float64 (same recipe)", dict(dtype=torch.float64))):
        m2, l2 = full_adamw(input_ids, targets, **kw)[:2]
        if "float64" in what:
            loss64_steps = l2
        sens[what] = max(float((p.detach() - final[n].detach()).abs().max())
                         for n, p in m2.named_parameters())
        print(f"  final params with {what}: max|dw| vs golden {sens[what]:.2e}")
    init = load_base()
    init_p = dict(init.named_parameters())
    dw = {n: float((p.detach() - init_p[n].detach()).abs().max())
          for n, p in model.named_parameters()}
    print("  AdamW steps: loss " + " ".join(f"{x:.5f}" for x in losses)
          + f" -> {final_loss:.5f}")
    print("  grad norm before clipping: " + " ".join(f"{x:.4f}" for x in norms))
    assert losses[0] == loss.item(), (losses[0], loss.item())

    info = {
        "base": BASE,
        "input_ids": input_ids.tolist(),
        "targets": targets.tolist(),
        "ignore_index": -1,
        "n_targets": int((targets >= 0).sum()),
        "loss": loss.item(),
        "loss_fp64": l64.item(),
        "grads": "full_grads.safetensors",
        "grad_max_abs": {n: maxabs(grads[n]) for n in names},
        "grad_fp32_vs_fp64_max_abs_diff": d64,
        "adamw": {
            "steps": STEPS, "lr": FULL_HP["lr"], "betas": list(FULL_HP["betas"]),
            "eps": FULL_HP["eps"],
            "weight_decay": {"2-D weights (embed_tokens, q/k/v/o, gate/up/down, lm_head)":
                             FULL_HP["weight_decay"],
                             "1-D (input_layernorm, post_attention_layernorm, model.norm)": 0.0},
            "clip_grad_norm": FULL_HP["clip"],
            "losses": losses,
            "grad_norm_before_clip": norms,
            "loss_after": final_loss,
            "final_params": "full_final.safetensors",
            "max_abs_param_change": dw,
            "sensitivity_max_abs_final_param_diff": sens,
            "losses_fp64": loss64_steps,
        },
    }
    return info


# ------------------------------------------------------------------ LoRA

class LoRALinear(nn.Module):
    """y = W x + scaling * B(A x), as peft.tuners.lora.Linear (dropout 0, no bias)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


def lora_key(layer, parent, proj, ab):
    return f"base_model.model.model.layers.{layer}.{parent}.{proj}.lora_{ab}.weight"


def lora_init_values(cfg):
    g = torch.Generator().manual_seed(SEED + 1)
    vals = {}
    for li in range(cfg.num_hidden_layers):
        for proj in LORA_TARGETS:
            parent = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            vals[(li, parent, proj)] = None  # filled below, in this order
    model = load_base()
    for (li, parent, proj) in vals:
        lin = getattr(getattr(model.model.layers[li], parent), proj)
        a = LORA_STD * torch.randn(LORA_R, lin.in_features, generator=g)
        b = LORA_STD * torch.randn(lin.out_features, LORA_R, generator=g)
        vals[(li, parent, proj)] = (a, b)
    return vals


def build_lora(vals):
    model = load_base()
    for p in model.parameters():
        p.requires_grad_(False)
    mods = {}
    for (li, parent, proj), (a, b) in vals.items():
        par = getattr(model.model.layers[li], parent)
        lm = LoRALinear(getattr(par, proj), LORA_R, LORA_ALPHA)
        with torch.no_grad():
            lm.lora_A.weight.copy_(a)
            lm.lora_B.weight.copy_(b)
        setattr(par, proj, lm)
        mods[lora_key(li, parent, proj, "A")] = lm.lora_A.weight
        mods[lora_key(li, parent, proj, "B")] = lm.lora_B.weight
    model.train()
    return model, mods


def peft_check(vals, input_ids, targets, loss_ref, grads_ref):
    try:
        import peft
        from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    except Exception as e:  # noqa: BLE001
        print(f"  peft not available: {e!r}")
        return {"peft": None, "error": repr(e)}
    cfg = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, bias="none",
                     target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                     init_lora_weights=False)
    pm = get_peft_model(load_base(), cfg)
    pm.train()
    sd = {}
    for (li, parent, proj), (a, b) in vals.items():
        sd[lora_key(li, parent, proj, "A")] = a
        sd[lora_key(li, parent, proj, "B")] = b
    params = dict(pm.named_parameters())
    with torch.no_grad():
        for k, v in sd.items():
            params[k.replace(".weight", ".default.weight")].copy_(v)
    saved_names = set(get_peft_model_state_dict(pm).keys())
    assert saved_names == set(sd.keys()), sorted(saved_names ^ set(sd.keys()))[:4]
    trainable = {n for n, p in pm.named_parameters() if p.requires_grad}
    assert trainable == {k.replace(".weight", ".default.weight") for k in sd}, trainable
    loss = loss_fn(pm, input_ids, targets)
    loss.backward()
    dl = abs(loss.item() - loss_ref)
    dg = max(float((params[k.replace(".weight", ".default.weight")].grad - grads_ref[k])
                   .abs().max()) for k in sd)
    print(f"  peft {peft.__version__}: loss {loss.item():.7f} |dloss| {dl:.1e} "
          f"max|dgrad| {dg:.1e}; adapter names match")
    assert dl < 1e-6 and dg < 1e-6, (dl, dg)
    return {"peft": peft.__version__, "loss": loss.item(), "abs_loss_diff": dl,
            "max_abs_grad_diff": dg, "adapter_names_match": True}


def run_lora(out, input_ids, targets, base_loss):
    vals = lora_init_values(load_base().config)
    model, mods = build_lora(vals)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(mods) == 2 * len(LORA_TARGETS) * 2
    save_st(os.path.join(out, "lora_init.safetensors"), mods)
    loss = loss_fn(model, input_ids, targets)
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in mods.items()}
    assert all(maxabs(g) > 0 for g in grads.values())
    save_st(os.path.join(out, "lora_grads.safetensors"), grads)
    print(f"lora: loss {loss.item():.7f} (base without adapters {base_loss:.7f})")
    for k, gr in grads.items():
        print(f"  {k:64s} {str(list(gr.shape)):>8s} max|grad| {maxabs(gr):.3e}")
    pc = peft_check(vals, input_ids, targets, loss.item(), grads)

    model, mods = build_lora(vals)
    opt = torch.optim.AdamW(list(mods.values()), lr=LORA_HP["lr"], betas=LORA_HP["betas"],
                            eps=LORA_HP["eps"], weight_decay=LORA_HP["weight_decay"])
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        l = loss_fn(model, input_ids, targets)
        l.backward()
        norms.append(math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in mods.values())))
        opt.step()
        losses.append(l.item())
    with torch.no_grad():
        final_loss = loss_fn(model, input_ids, targets).item()
    save_st(os.path.join(out, "lora_final.safetensors"), mods)
    print("  AdamW steps: loss " + " ".join(f"{x:.5f}" for x in losses)
          + f" -> {final_loss:.5f}")
    assert losses[0] == loss.item()

    return {
        "base": BASE,
        "input_ids": input_ids.tolist(),
        "targets": targets.tolist(),
        "ignore_index": -1,
        "rank": LORA_R, "alpha": LORA_ALPHA, "scaling": LORA_ALPHA / LORA_R,
        "dropout": 0.0,
        "targets_modules": LORA_TARGETS,
        "formula": "y = W x + scaling * B (A x); A [r, in], B [out, r]",
        "init": f"A, B ~ N(0, {LORA_STD}) (torch.Generator seed {SEED + 1}, "
                "order: layer, q,k,v,o,gate,up,down, A then B)",
        "init_file": "lora_init.safetensors",
        "loss": loss.item(),
        "loss_base_without_lora": base_loss,
        "grads": "lora_grads.safetensors",
        "grad_max_abs": {k: maxabs(g) for k, g in grads.items()},
        "peft_check": pc,
        "adamw": {
            "steps": STEPS, "lr": LORA_HP["lr"], "betas": list(LORA_HP["betas"]),
            "eps": LORA_HP["eps"], "weight_decay": LORA_HP["weight_decay"],
            "clip_grad_norm": None,
            "params": "lora_A/lora_B only (base frozen)",
            "losses": losses,
            "grad_norm": norms,
            "loss_after": final_loss,
            "final_params": "lora_final.safetensors",
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/train")
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    os.makedirs(a.out, exist_ok=True)
    input_ids, targets = make_batch()
    print("input_ids", input_ids.tolist())
    print("targets  ", targets.tolist())
    versions = {"transformers": transformers.__version__, "torch": torch.__version__,
                "seed": SEED}
    full = run_full(a.out, input_ids, targets)
    lora = run_lora(a.out, input_ids, targets, full["loss"])
    for name, d in (("full.json", full), ("lora.json", lora)):
        d.update(versions)
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(d, f, indent=1)
            f.write("\n")
    tot = 0
    for f in sorted(os.listdir(a.out)):
        s = os.path.getsize(os.path.join(a.out, f))
        tot += s
        print(f"  {f:26s} {s / 1024:7.1f} KiB")
    print(f"  total {tot / 1024:.1f} KiB")
    print("transformers", transformers.__version__, "torch", torch.__version__, file=sys.stderr)


if __name__ == "__main__":
    main()
