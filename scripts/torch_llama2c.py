#!/usr/bin/env python3
"""A small PyTorch implementation of the llama2.c ("version 0" .bin) Llama model.

Written from the published architecture of karpathy/llama2.c (model.py / run.c):
  * RMSNorm: x * rsqrt(mean(x^2) + 1e-5) * g
  * RoPE on INTERLEAVED pairs (x[2i], x[2i+1]) of each head, rotated by
    angle pos * theta^(-2i/head_dim), theta = 10000 (the freq_cis tables
    stored in the file are checked against this)
  * grouped-query attention (each KV head serves n_heads / n_kv_heads heads)
  * SwiGLU FFN: w2(silu(w1 x) * w3 x)
  * classifier shared with the token embedding unless vocab_size < 0 in the
    header (then an extra wcls matrix follows the freq_cis tables)

Usable as a module (load_llama2c_bin, Llama2c) or as a script:
    python scripts/torch_llama2c.py MODEL.bin [--steps 64]   # greedy ids from BOS
"""
import argparse
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

HEADER = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")


def load_llama2c_bin(path):
    """Return (config dict, dict of float32 tensors) from a version-0 llama2.c file."""
    with open(path, "rb") as f:
        raw = f.read()
    vals = struct.unpack("<7i", raw[:28])
    cfg = dict(zip(HEADER, vals))
    cfg["shared_classifier"] = cfg["vocab_size"] > 0
    cfg["vocab_size"] = abs(cfg["vocab_size"])
    data = np.frombuffer(raw, dtype="<f4", offset=28)
    dim, hid, L = cfg["dim"], cfg["hidden_dim"], cfg["n_layers"]
    nh, nkv, V, S = cfg["n_heads"], cfg["n_kv_heads"], cfg["vocab_size"], cfg["seq_len"]
    hs = dim // nh
    kv_dim = hs * nkv
    shapes = [
        ("token_embedding", (V, dim)),
        ("rms_att", (L, dim)),
        ("wq", (L, dim, dim)),
        ("wk", (L, kv_dim, dim)),
        ("wv", (L, kv_dim, dim)),
        ("wo", (L, dim, dim)),
        ("rms_ffn", (L, dim)),
        ("w1", (L, hid, dim)),
        ("w2", (L, dim, hid)),
        ("w3", (L, hid, dim)),
        ("rms_final", (dim,)),
        ("freq_cis_real", (S, hs // 2)),
        ("freq_cis_imag", (S, hs // 2)),
    ]
    if not cfg["shared_classifier"]:
        shapes.append(("wcls", (V, dim)))
    w, off = {}, 0
    for name, shp in shapes:
        n = int(np.prod(shp))
        if off + n > data.size:
            raise ValueError(f"{path}: truncated at {name}")
        w[name] = torch.from_numpy(data[off:off + n].copy()).reshape(shp)
        off += n
    if off != data.size:
        raise ValueError(f"{path}: {data.size - off} trailing floats")
    if cfg["shared_classifier"]:
        w["wcls"] = w["token_embedding"]
    return cfg, w


def rms_norm(x, g, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def rope_interleaved(x, cos, sin):
    """x: [B, T, H, hs]; rotate pairs (x[2i], x[2i+1]) by the angle table [T, hs/2]."""
    xr, xi = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack((xr * c - xi * s, xr * s + xi * c), dim=-1)
    return out.flatten(-2)


class Llama2c:
    def __init__(self, cfg, w, theta=10000.0):
        self.cfg, self.w = cfg, w
        hs = cfg["dim"] // cfg["n_heads"]
        self.hs = hs
        inv = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
        ang = torch.arange(cfg["seq_len"], dtype=torch.float64)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos().float(), ang.sin().float()
        # the file's tables must be the standard ones
        self.freq_table_err = max((self.cos - w["freq_cis_real"]).abs().max().item(),
                                  (self.sin - w["freq_cis_imag"]).abs().max().item())

    @torch.no_grad()
    def forward(self, tokens):
        """tokens: LongTensor [B, T] (positions 0..T-1) -> logits [B, T, V] float32."""
        c, w, hs = self.cfg, self.w, self.hs
        B, T = tokens.shape
        nh, nkv = c["n_heads"], c["n_kv_heads"]
        rep = nh // nkv
        cos, sin = self.cos[:T], self.sin[:T]
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = w["token_embedding"][tokens]
        for l in range(c["n_layers"]):
            h = rms_norm(x, w["rms_att"][l])
            q = (h @ w["wq"][l].T).view(B, T, nh, hs)
            k = (h @ w["wk"][l].T).view(B, T, nkv, hs)
            v = (h @ w["wv"][l].T).view(B, T, nkv, hs)
            q, k = rope_interleaved(q, cos, sin), rope_interleaved(k, cos, sin)
            k = k.repeat_interleave(rep, dim=2)   # KV head j serves heads j*rep..j*rep+rep-1
            v = v.repeat_interleave(rep, dim=2)
            q, k, v = (t.transpose(1, 2) for t in (q, k, v))          # [B, H, T, hs]
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hs) + mask
            o = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, nh * hs)
            x = x + o @ w["wo"][l].T
            h = rms_norm(x, w["rms_ffn"][l])
            x = x + (F.silu(h @ w["w1"][l].T) * (h @ w["w3"][l].T)) @ w["w2"][l].T
        x = rms_norm(x, w["rms_final"])
        return x @ w["wcls"].T

    __call__ = forward

    def greedy(self, prompt, steps):
        """Greedy continuation (recomputes the full prefix each step: simple and exact)."""
        ids = list(prompt)
        for _ in range(steps):
            logits = self.forward(torch.tensor([ids]))[0, -1]
            ids.append(int(logits.argmax()))
        return ids


def load_token_file(path):
    """A dlqat token file (docs/data.md: 24-byte header, then rows x T little-endian int32) as a LongTensor [rows, T]."""
    raw = open(path, "rb").read()
    rows, T = int.from_bytes(raw[8:16], "little"), int.from_bytes(raw[16:20], "little")
    return torch.from_numpy(np.frombuffer(raw, dtype="<i4", offset=24).copy().reshape(rows, T)).long()


def mean_nll(cfg, w, toks, batch=32):
    """Mean next-token NLL of the model (cfg, w) over the rows of toks (each row a window from position 0)."""
    m = Llama2c(cfg, w)
    tot, n = 0.0, 0
    for i in range(0, toks.shape[0], batch):
        b = toks[i:i + batch]
        lg = m.forward(b[:, :-1])
        tot += F.cross_entropy(lg.reshape(-1, lg.shape[-1]), b[:, 1:].reshape(-1), reduction="sum").item()
        n += b[:, 1:].numel()
    return tot / n


def permute_for_hf(w, n_heads):
    """Interleaved-pair rows (Meta / llama2.c) -> HF rotate_half rows.

    Same reshuffle as the `permute` in transformers' convert_llama_weights_to_hf.py:
    within each head, output row 2i -> i and 2i+1 -> i + hs/2."""
    d1, d2 = w.shape
    return w.view(n_heads, d1 // n_heads // 2, 2, d2).transpose(1, 2).reshape(d1, d2)


def to_hf_state_dict(cfg, w):
    sd = {"model.embed_tokens.weight": w["token_embedding"], "model.norm.weight": w["rms_final"],
          "lm_head.weight": w["wcls"]}
    for l in range(cfg["n_layers"]):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = w["rms_att"][l]
        sd[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        sd[p + "self_attn.q_proj.weight"] = permute_for_hf(w["wq"][l], cfg["n_heads"])
        sd[p + "self_attn.k_proj.weight"] = permute_for_hf(w["wk"][l], cfg["n_kv_heads"])
        sd[p + "self_attn.v_proj.weight"] = w["wv"][l]
        sd[p + "self_attn.o_proj.weight"] = w["wo"][l]
        sd[p + "mlp.gate_proj.weight"] = w["w1"][l]
        sd[p + "mlp.down_proj.weight"] = w["w2"][l]
        sd[p + "mlp.up_proj.weight"] = w["w3"][l]
    return {k: v.contiguous().clone() for k, v in sd.items()}


def hf_config_kwargs(cfg):
    return dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"],
                intermediate_size=cfg["hidden_dim"], num_hidden_layers=cfg["n_layers"],
                num_attention_heads=cfg["n_heads"], num_key_value_heads=cfg["n_kv_heads"],
                max_position_embeddings=cfg["seq_len"], rms_norm_eps=1e-5, rope_theta=10000.0,
                tie_word_embeddings=cfg["shared_classifier"], bos_token_id=1, eos_token_id=2,
                hidden_act="silu")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=64)
    a = ap.parse_args()
    cfg, w = load_llama2c_bin(a.model)
    m = Llama2c(cfg, w)
    print(cfg, "freq table err", m.freq_table_err)
    print(m.greedy([1], a.steps))


if __name__ == "__main__":
    main()
