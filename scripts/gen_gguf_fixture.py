#!/usr/bin/env python3
"""Convert HF fixtures (tests/fixtures/hf/{llama,qwen2}) to GGUF + reference logits.

    .venv/bin/python scripts/gen_gguf_fixture.py [--hf tests/fixtures/hf] [--out tests/fixtures/gguf]

Follows what llama.cpp's convert_hf_to_gguf.py writes for these architectures:
  * metadata {arch}.context_length / embedding_length / block_count /
    feed_forward_length / attention.head_count / attention.head_count_kv /
    rope.freq_base / attention.layer_norm_rms_epsilon / rope.dimension_count,
    general.name, general.file_type, {arch}.vocab_size
  * tensor names token_embd, blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,
    ffn_norm,ffn_gate,ffn_up,ffn_down}, output_norm, output (+ attn_{q,k,v}.bias for qwen2)
  * llama: attn_q / attn_k rows permuted from HF's rotate_half layout back to the
    interleaved-pair layout (convert_hf_to_gguf LlamaModel.permute); qwen2: not permuted
    (llama.cpp runs qwen2 with NEOX-style RoPE)
  * F16 files: 2-D weights in F16, 1-D norms and biases stay F32 (as llama.cpp does)
  * a minimal "llama" (SentencePiece-style) tokenizer of vocab_size tokens

Outputs <name>.gguf, <name>_ref.json, <name>_ref.f32 (little-endian float32 [2, T, V]
computed by transformers in fp32 from exactly the weights stored in the GGUF,
on the HF fixture's input_ids).
"""
import argparse
import json
import os
import sys

import gguf
import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

FIXTURES = [
    # (gguf name, hf fixture, arch, weight dtype)
    ("llama-f32", "llama", "llama", "F32"),
    ("llama-f16", "llama", "llama", "F16"),
    ("qwen2-f32", "qwen2", "qwen2", "F32"),
]


def permute(w, n_head, n_head_kv=None):
    """HF rotate_half rows -> interleaved (GGML/Meta) rows, per head."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def gguf_tensors(sd, cfg, arch):
    """HF state dict -> ordered {gguf name: float32 numpy array}."""
    nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
    t = {"token_embd.weight": sd["model.embed_tokens.weight"]}
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        q = sd[p + "self_attn.q_proj.weight"]
        k = sd[p + "self_attn.k_proj.weight"]
        if arch == "llama":
            q, k = permute(q, nh, nh), permute(k, nh, nkv)
        t[b + "attn_norm.weight"] = sd[p + "input_layernorm.weight"]
        t[b + "attn_q.weight"] = q
        t[b + "attn_k.weight"] = k
        t[b + "attn_v.weight"] = sd[p + "self_attn.v_proj.weight"]
        for x in "qkv":
            if p + f"self_attn.{x}_proj.bias" in sd:
                t[b + f"attn_{x}.bias"] = sd[p + f"self_attn.{x}_proj.bias"]
        t[b + "attn_output.weight"] = sd[p + "self_attn.o_proj.weight"]
        t[b + "ffn_norm.weight"] = sd[p + "post_attention_layernorm.weight"]
        t[b + "ffn_gate.weight"] = sd[p + "mlp.gate_proj.weight"]
        t[b + "ffn_up.weight"] = sd[p + "mlp.up_proj.weight"]
        t[b + "ffn_down.weight"] = sd[p + "mlp.down_proj.weight"]
    t["output_norm.weight"] = sd["model.norm.weight"]
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        t["output.weight"] = sd["lm_head.weight"]
    return {k: v.detach().float().numpy() for k, v in t.items()}


def minimal_vocab(n):
    """<unk>, <s>, </s>, printable ASCII pieces ("▁" for space), then unused dummies."""
    toks = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    for c in range(0x20, 0x7F):
        if len(toks) == n:
            break
        toks.append("\u2581" if c == 0x20 else chr(c))
        types.append(gguf.TokenType.NORMAL)
    while len(toks) < n:
        toks.append(f"<dummy{len(toks):03d}>")
        types.append(gguf.TokenType.UNUSED)
    scores = [0.0, 0.0, 0.0] + [-float(i) for i in range(n - 3)]
    return toks, scores, [int(x) for x in types]


def write_gguf(path, name, arch, cfg, tensors, wtype):
    w = gguf.GGUFWriter(path, arch)
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_name(name)
    w.add_file_type(gguf.LlamaFileType.ALL_F32 if wtype == "F32" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(float(cfg.rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_rope_dimension_count(hd)
    w.add_vocab_size(cfg.vocab_size)
    toks, scores, types = minimal_vocab(cfg.vocab_size)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    stored = {}
    for tname, arr in tensors.items():
        if wtype == "F16" and arr.ndim == 2:
            arr = arr.astype(np.float16)
        else:
            arr = arr.astype(np.float32)
        stored[tname] = arr
        w.add_tensor(tname, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def check_gguf(path, stored, arch, cfg):
    """Read back with gguf.GGUFReader: keys, shapes, types, data."""
    r = gguf.GGUFReader(path)
    kv = {}
    for f in r.fields.values():
        if f.types and f.types[0] == gguf.GGUFValueType.STRING:
            kv[f.name] = bytes(f.parts[f.data[0]]).decode()
        elif f.types and f.types[0] != gguf.GGUFValueType.ARRAY:
            kv[f.name] = f.parts[f.data[0]].tolist()[0]
        else:
            kv[f.name] = f"array[{len(f.data)}]"
    assert kv["general.architecture"] == arch
    assert kv[f"{arch}.block_count"] == cfg.num_hidden_layers
    assert kv[f"{arch}.attention.head_count_kv"] == cfg.num_key_value_heads
    assert kv["tokenizer.ggml.tokens"] == f"array[{cfg.vocab_size}]"
    names = [t.name for t in r.tensors]
    assert names == list(stored), (names, list(stored))
    for t in r.tensors:
        want = stored[t.name]
        got = np.asarray(t.data).reshape(want.shape)
        assert got.dtype == want.dtype and np.array_equal(got, want), t.name
        # GGUF dims are innermost-first: ne = reversed numpy shape
        assert list(t.shape) == list(reversed(want.shape)), (t.name, t.shape)
    return kv, r


def interleaved_check(stored, cfg, ids, expect):
    """Run scripts/torch_llama2c.py's interleaved-pair RoPE model directly on the stored
    llama GGUF tensors: it must reproduce the HF logits (proves the q/k permutation)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_llama2c as tl
    T = {k: torch.from_numpy(v.astype(np.float32)) for k, v in stored.items()}
    L = cfg.num_hidden_layers
    st = lambda n: torch.stack([T[f"blk.{i}.{n}.weight"] for i in range(L)])  # noqa: E731
    c = dict(dim=cfg.hidden_size, hidden_dim=cfg.intermediate_size, n_layers=L,
             n_heads=cfg.num_attention_heads, n_kv_heads=cfg.num_key_value_heads,
             vocab_size=cfg.vocab_size, seq_len=cfg.max_position_embeddings, shared_classifier=False)
    hs = cfg.hidden_size // cfg.num_attention_heads
    w = dict(token_embedding=T["token_embd.weight"], rms_att=st("attn_norm"), wq=st("attn_q"),
             wk=st("attn_k"), wv=st("attn_v"), wo=st("attn_output"), rms_ffn=st("ffn_norm"),
             w1=st("ffn_gate"), w2=st("ffn_down"), w3=st("ffn_up"), rms_final=T["output_norm.weight"],
             wcls=T["output.weight"],
             freq_cis_real=torch.zeros(c["seq_len"], hs // 2), freq_cis_imag=torch.zeros(c["seq_len"], hs // 2))
    m = tl.Llama2c(c, w, theta=float(cfg.rope_theta))
    return (m(ids) - expect).abs().max().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", default="tests/fixtures/hf")
    ap.add_argument("--out", default="tests/fixtures/gguf")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    for name, hfname, arch, wtype in FIXTURES:
        src = os.path.join(a.hf, hfname)
        ref = json.load(open(os.path.join(src, "ref.json")))
        m = AutoModelForCausalLM.from_pretrained(src, torch_dtype=torch.float32,
                                                 attn_implementation="eager").eval()
        cfg = m.config
        sd = m.state_dict()
        path = os.path.join(a.out, name + ".gguf")
        stored = write_gguf(path, name, arch, cfg, gguf_tensors(sd, cfg, arch), wtype)
        kv, _ = check_gguf(path, stored, arch, cfg)

        # un-permute what was stored back into the HF model and compute logits
        nh, nkv = cfg.num_attention_heads, cfg.num_key_value_heads
        new_sd = {}
        for k, v in sd.items():
            new_sd[k] = v
        back = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}
        for i in range(cfg.num_hidden_layers):
            p, b = f"model.layers.{i}.", f"blk.{i}."
            back.update({p + "input_layernorm.weight": b + "attn_norm.weight",
                         p + "self_attn.q_proj.weight": b + "attn_q.weight",
                         p + "self_attn.k_proj.weight": b + "attn_k.weight",
                         p + "self_attn.v_proj.weight": b + "attn_v.weight",
                         p + "self_attn.o_proj.weight": b + "attn_output.weight",
                         p + "post_attention_layernorm.weight": b + "ffn_norm.weight",
                         p + "mlp.gate_proj.weight": b + "ffn_gate.weight",
                         p + "mlp.up_proj.weight": b + "ffn_up.weight",
                         p + "mlp.down_proj.weight": b + "ffn_down.weight"})
            for x in "qkv":
                back[p + f"self_attn.{x}_proj.bias"] = b + f"attn_{x}.bias"
        for hk, gk in back.items():
            if hk not in sd:
                continue
            arr = stored[gk].astype(np.float32)
            if arch == "llama" and gk.endswith("attn_q.weight"):
                arr = unpermute(arr, nh)
            elif arch == "llama" and gk.endswith("attn_k.weight"):
                arr = unpermute(arr, nkv)
            new_sd[hk] = torch.from_numpy(arr.copy())
        if wtype == "F32":
            assert all(torch.equal(new_sd[k], sd[k]) for k in sd), "F32 round trip is not exact"
        m.load_state_dict(new_sd)
        ids = torch.tensor(ref["input_ids"])
        with torch.no_grad():
            logits = m(ids).logits.float()
        hf_logits = torch.from_numpy(np.fromfile(os.path.join(src, ref["logits"]), dtype="<f4")
                                     ).reshape(logits.shape)
        d_hf = (logits - hf_logits).abs().max().item()
        d_il = interleaved_check(stored, cfg, ids, logits) if arch == "llama" else None
        np.ascontiguousarray(logits.numpy().astype("<f4")).tofile(os.path.join(a.out, name + "_ref.f32"))
        out = {
            "gguf": name + ".gguf",
            "from_hf_fixture": f"tests/fixtures/hf/{hfname}",
            "architecture": arch,
            "weight_type": wtype + " (2-D weights; norms and biases F32)",
            "qk_rows": "permuted to interleaved pairs (convert_hf_to_gguf LlamaModel.permute)"
                       if arch == "llama" else "not permuted (NEOX-style rope in llama.cpp)",
            "input_ids": ref["input_ids"],
            "shape": list(logits.shape),
            "logits": name + "_ref.f32",
            "max_abs_diff_vs_hf_fixture_logits": d_hf,
            "interleaved_rope_model_on_gguf_tensors_max_abs_diff": d_il,
            "metadata": {k: v for k, v in kv.items() if not k.startswith("GGUF.")},
            "dtype_compute": "float32",
            "gguf_py": "0.19.0",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }
        with open(os.path.join(a.out, name + "_ref.json"), "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"{name:10s} {arch:6s} {wtype} tensors={len(stored)} size={os.path.getsize(path) / 1024:.0f} KiB "
              f"max|dlogit| vs HF fixture={d_hf:.3g} interleaved-RoPE model on stored tensors={d_il}")


if __name__ == "__main__":
    main()
