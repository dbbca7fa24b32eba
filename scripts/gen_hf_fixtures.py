#!/usr/bin/env python3
"""Generate tiny random Hugging Face checkpoints + reference logits.

Run from the repository root with the fixture venv (scripts/setup_python.sh):

    .venv/bin/python scripts/gen_hf_fixtures.py [--out tests/fixtures/hf] [--only NAME ...]

Every fixture folder tests/fixtures/hf/<name>/ holds what save_pretrained
wrote (config.json, generation_config.json, *.safetensors[, index]) plus

  ref.json                 input ids, shapes, versions, file names
  ref_logits.f32           little-endian float32 [2, T, V]: model(input_ids).logits
  ref_greedy_logits.f32    little-endian float32 [8, V]: the logits of each step of
                           a greedy 8-token continuation of sequence 0 (KV-cache path)

Logits are always computed in float32 with eager attention, no attention mask,
by reloading the saved folder with torch_dtype=float32 (so bf16/f16 fixtures
use exactly the rounded stored weights).  Deterministic: torch.manual_seed.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM,
                          MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)
import transformers.generation.utils as _gen_utils

# Debian's torch 1.13 cannot import torch.distributed.fsdp under Python 3.11
# (dataclass "mutable default" error); generate() only asks whether the model
# is FSDP-managed, which it never is here.
_gen_utils.is_fsdp_managed_module = lambda module: False

SEED = 1234
INIT_STD = 0.1      # weights ~N(0, 0.1): logits span several units across the vocab
N_GREEDY = 8


def common(**kw):
    d = dict(vocab_size=256, hidden_size=64, intermediate_size=96,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             max_position_embeddings=128, rope_theta=10000.0, rms_norm_eps=1e-5,
             initializer_range=INIT_STD, tie_word_embeddings=False,
             bos_token_id=1, eos_token_id=2, hidden_act="silu")
    d.update(kw)
    return d


# name -> (model class, config, T, save dtype, save kwargs)
def fixtures():
    return {
        "llama": (LlamaForCausalLM, LlamaConfig(**common()), 16, torch.float32, {}),
        "llama-tied": (LlamaForCausalLM,
                       LlamaConfig(**common(tie_word_embeddings=True, head_dim=32)),
                       16, torch.float32, {}),
        "llama3-rope": (LlamaForCausalLM,
                        LlamaConfig(**common(rope_theta=500000.0, rope_scaling={
                            "rope_type": "llama3", "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 32})),
                        48, torch.float32, {}),
        "mistral": (MistralForCausalLM,
                    MistralConfig(**common(sliding_window=None, head_dim=16)),
                    16, torch.float32, {}),
        "qwen2": (Qwen2ForCausalLM,
                  Qwen2Config(**common(use_sliding_window=False, sliding_window=None,
                                       rope_theta=1000000.0, rms_norm_eps=1e-6)),
                  16, torch.float32, {}),
        # same weights as "llama" (same seed), stored rounded
        "llama-bf16": (LlamaForCausalLM, LlamaConfig(**common()), 16, torch.bfloat16, {}),
        "llama-f16-sharded": (LlamaForCausalLM, LlamaConfig(**common()), 16, torch.float16,
                              {"max_shard_size": "100KB"}),
    }


def build(cls, cfg, seed):
    torch.manual_seed(seed)
    cfg._attn_implementation = "eager"
    model = cls(cfg).float().eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                # RMSNorm gains default to 1: perturb so that using them is tested
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                # HF inits biases at zero; make them matter (qwen2 q/k/v biases)
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


def ref_extra(m):
    hd = getattr(m.config, "head_dim", None)
    if hd and hd * m.config.num_attention_heads != m.config.hidden_size:
        return {"head_dim": hd}
    return {}


def input_ids_for(name, T, V):
    g = torch.Generator().manual_seed(SEED + sum(map(ord, name)))
    ids = torch.randint(3, V, (2, T), generator=g)
    ids[:, 0] = 1  # BOS
    return ids


def dump_f32(path, arr):
    a = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
    a.tofile(path)


def folder_size(d):
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def make(name, spec, outroot):
    cls, cfg, T, dtype, save_kw = spec
    out = os.path.join(outroot, name)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    model = build(cls, cfg, SEED)
    model.generation_config.do_sample = False
    model.to(dtype).save_pretrained(out, safe_serialization=True, **save_kw)

    # reload exactly what was stored, compute in fp32 with eager attention
    m = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float32,
                                             attn_implementation="eager").eval()
    V = m.config.vocab_size
    # the rounded copies of "llama" reuse its inputs so their logits are comparable
    ids = input_ids_for("llama" if name in ("llama-bf16", "llama-f16-sharded") else name, T, V)
    with torch.no_grad():
        logits = m(ids).logits.float()
    assert tuple(logits.shape) == (2, T, V)
    dump_f32(os.path.join(out, "ref_logits.f32"), logits.numpy())

    with torch.no_grad():
        gen = m.generate(ids[:1], max_new_tokens=N_GREEDY, min_new_tokens=N_GREEDY,
                         do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0,
                         output_logits=True, return_dict_in_generate=True,
                         attention_mask=torch.ones_like(ids[:1]))
    glog = torch.stack([s[0] for s in gen.logits]).float()  # [8, V]
    greedy_ids = gen.sequences[0].tolist()
    assert len(greedy_ids) == T + N_GREEDY
    # the first step of generate must equal the full forward's last position
    d0 = (glog[0] - logits[0, -1]).abs().max().item()
    assert d0 < 1e-4, d0
    # and a full forward over the greedy sequence must reproduce every step
    with torch.no_grad():
        full = m(torch.tensor([greedy_ids])).logits[0, T - 1:T - 1 + N_GREEDY]
    dfull = (full - glog).abs().max().item()
    assert dfull < 1e-4, dfull
    top2 = glog.topk(2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()
    dump_f32(os.path.join(out, "ref_greedy_logits.f32"), glog.numpy())

    extra = ref_extra(m)
    if getattr(m.config, "rope_scaling", None):
        # show that the scaled RoPE matters: same weights without rope_scaling
        cfg2 = m.config.to_dict()
        cfg2["rope_scaling"] = None
        m2 = type(m)(type(m.config).from_dict(cfg2, attn_implementation="eager")).eval()
        m2.load_state_dict(m.state_dict())
        with torch.no_grad():
            extra["max_abs_logit_diff_without_rope_scaling"] = round(
                (m2(ids).logits - logits).abs().max().item(), 4)
        print("  without rope_scaling: max|dlogit| =", extra["max_abs_logit_diff_without_rope_scaling"])
    spread = (logits.max(-1).values - logits.min(-1).values).min().item()
    ref = {
        "model": name,
        "architecture": cls.__name__,
        "stored_dtype": str(dtype).replace("torch.", ""),
        "input_ids": ids.tolist(),
        "shape": [2, T, V],
        "logits": "ref_logits.f32",
        "greedy_prompt": "input_ids[0]",
        "greedy_ids": greedy_ids,
        "greedy_new_tokens": N_GREEDY,
        "greedy_logits": "ref_greedy_logits.f32",
        "greedy_logits_shape": [N_GREEDY, V],
        "greedy_min_top1_top2_margin": round(margin, 6),
        "dtype_compute": "float32",
        "attn_implementation": "eager",
        "seed": SEED,
        "init_std": INIT_STD,
        "logit_min_spread_over_vocab": round(spread, 4),
        "logit_abs_max": round(logits.abs().max().item(), 4),
        **extra,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }
    with open(os.path.join(out, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    print(f"{name:18s} T={T:2d} V={V} spread>={spread:.2f} |max|={logits.abs().max():.2f} "
          f"greedy margin={margin:.4f} gen-vs-full={dfull:.1e} "
          f"files={sorted(os.listdir(out))} size={folder_size(out) / 1024:.0f} KiB")
    return logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/hf")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    res = {}
    for name, spec in fixtures().items():
        if a.only and name not in a.only:
            continue
        res[name] = make(name, spec, a.out)
    for r in ("llama-bf16", "llama-f16-sharded"):
        if "llama" in res and r in res:
            print("llama vs %s max|dlogit| = %.3g" % (r, (res["llama"] - res[r]).abs().max()))
    print("transformers", transformers.__version__, "torch", torch.__version__, file=sys.stderr)


if __name__ == "__main__":
    main()
