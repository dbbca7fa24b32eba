#!/usr/bin/env python3
"""Check a GGUF written by `dlqat export --format gguf` with llama.cpp's own Python reader (gguf-py).

    .venv/bin/python scripts/check_gguf_export.py --gguf M.gguf [--dlq M.dlq] [--dlqat build/dlqat]

Checks, and prints each check:
  * the metadata keys llama.cpp's llama loader reads (general.architecture, llama.* hyper-parameters,
    rope, general.file_type, tokenizer.ggml.model/tokens/scores/token_type and special ids) with
    consistent values (tokens == vocab_size == token_embd rows, head sizes, ...);
  * tensor names, shapes (ggml ne order) and types: projections in a quantized type (Q4_1, Q5_1,
    Q8_0, Q2_K, Q3_K or F16 fallback), norms F32;
  * with --dlq: every tensor dequantized by gguf-py equals the .dlq weights (fp32 reference from
    `dlqat export --format hf --dtype f32`), q/k rows un-permuted from llama.cpp's RoPE layout
    exactly as convert_hf_to_gguf.py permutes them; prints max |error| per type.
Exit status 0 when every check passes.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

failures = 0


def check(cond, what):
    global failures
    print(("  ok    " if cond else "  FAIL  ") + what)
    if not cond:
        failures += 1


def field_value(r, key):
    f = r.fields.get(key)
    if f is None:
        return None
    if f.types and f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[-1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]][0].item()


def permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> llama.cpp interleaved rows"""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--dlq")
    ap.add_argument("--dlqat", default="build/dlqat")
    a = ap.parse_args()
    r = gguf.GGUFReader(a.gguf)
    print(f"{a.gguf}: GGUF v{field_value(r, 'GGUF.version')}, {len(r.fields)} keys, {len(r.tensors)} tensors")

    print("metadata (llama.cpp llama loader):")
    arch = field_value(r, "general.architecture")
    check(arch in ("llama", "qwen2"), f"general.architecture = {arch!r}")
    hp = {}
    for k in ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
              "attention.head_count_kv", "attention.layer_norm_rms_epsilon", "rope.freq_base", "rope.dimension_count",
              "vocab_size"]:
        v = field_value(r, f"{arch}.{k}")
        hp[k] = v
        check(v is not None, f"{arch}.{k} = {v}")
    ft = field_value(r, "general.file_type")
    check(ft is not None, f"general.file_type = {ft}")
    qv = field_value(r, "general.quantization_version")
    check(qv == 2, f"general.quantization_version = {qv}")
    tm = field_value(r, "tokenizer.ggml.model")
    check(tm in ("llama", "gpt2"), f"tokenizer.ggml.model = {tm!r}")
    toks = field_value(r, "tokenizer.ggml.tokens") or []
    scores = field_value(r, "tokenizer.ggml.scores") or []
    types = field_value(r, "tokenizer.ggml.token_type") or []
    check(len(toks) == hp["vocab_size"] and len(scores) == len(toks) and len(types) == len(toks),
          f"tokenizer.ggml.tokens/scores/token_type: {len(toks)}/{len(scores)}/{len(types)} entries, vocab_size {hp['vocab_size']}")
    check(all(1 <= t <= 6 for t in types), "token types within llama.cpp's 1..6")
    if tm == "gpt2":
        m = field_value(r, "tokenizer.ggml.merges")
        check(bool(m), f"tokenizer.ggml.merges: {len(m or [])} merges; pre = {field_value(r, 'tokenizer.ggml.pre')!r}")
    for k in ["bos_token_id", "eos_token_id", "unknown_token_id"]:
        v = field_value(r, f"tokenizer.ggml.{k}")
        check(v is not None and 0 <= v < len(toks), f"tokenizer.ggml.{k} = {v} ({toks[v] if v is not None and 0 <= v < len(toks) else '?'!r})")
    for k in ["add_bos_token", "add_eos_token"]:
        print(f"  info  tokenizer.ggml.{k} = {field_value(r, 'tokenizer.ggml.' + k)}")
    n_embd, n_head, n_kv = hp["embedding_length"], hp["attention.head_count"], hp["attention.head_count_kv"]
    hd = field_value(r, f"{arch}.attention.key_length") or n_embd // n_head
    check(hp["rope.dimension_count"] == hd, f"rope.dimension_count {hp['rope.dimension_count']} = head size {hd}")

    print("tensors (names, ggml ne shapes, types):")
    T = {t.name: t for t in r.tensors}
    L, F, V = hp["block_count"], hp["feed_forward_length"], hp["vocab_size"]
    want = {"token_embd.weight": [n_embd, V], "output_norm.weight": [n_embd]}
    if "output.weight" in T:
        want["output.weight"] = [n_embd, V]
    for i in range(L):
        want.update({f"blk.{i}.attn_norm.weight": [n_embd], f"blk.{i}.attn_q.weight": [n_embd, n_head * hd],
                     f"blk.{i}.attn_k.weight": [n_embd, n_kv * hd], f"blk.{i}.attn_v.weight": [n_embd, n_kv * hd],
                     f"blk.{i}.attn_output.weight": [n_head * hd, n_embd], f"blk.{i}.ffn_norm.weight": [n_embd],
                     f"blk.{i}.ffn_gate.weight": [n_embd, F], f"blk.{i}.ffn_up.weight": [n_embd, F],
                     f"blk.{i}.ffn_down.weight": [F, n_embd]})
    missing = [n for n in want if n not in T]
    check(not missing, f"all {len(want)} tensors llama.cpp expects are present" + (f" (missing {missing[:3]})" if missing else ""))
    extra = [n for n in T if n not in want and n != "rope_freqs.weight"]
    check(not extra, "no unexpected tensors" + (f" ({extra[:3]})" if extra else ""))
    bad_shape = [n for n in want if n in T and [int(x) for x in T[n].shape] != want[n]]
    check(not bad_shape, "shapes match the hyper-parameters" + (f" (bad: {bad_shape[:3]})" if bad_shape else ""))
    norms_f32 = all(T[n].tensor_type == QT.F32 for n in want if n in T and n.endswith("norm.weight"))
    check(norms_f32, "norms are F32")
    ok_types = {QT.Q4_1, QT.Q5_1, QT.Q8_0, QT.Q2_K, QT.Q3_K, QT.F16, QT.BF16, QT.F32}
    proj = [n for n in want if n in T and n.startswith("blk.") and not n.endswith("norm.weight")]
    counts = {}
    for n in proj:
        counts[T[n].tensor_type.name] = counts.get(T[n].tensor_type.name, 0) + 1
    check(all(T[n].tensor_type in ok_types for n in proj), f"projection types {counts}")
    print(f"  info  token_embd {T['token_embd.weight'].tensor_type.name}, file size {os.path.getsize(a.gguf)} bytes")

    if a.dlq:
        print(f"weights vs {a.dlq} (dequantized by gguf-py):")
        from safetensors.numpy import load_file
        with tempfile.TemporaryDirectory() as td:
            out = os.path.join(td, "ref")
            subprocess.run([a.dlqat, "export", "--model", a.dlq, "--format", "hf", "--dtype", "f32", "--out", out, "--no-ppl"],
                           check=True, stdout=subprocess.DEVNULL)
            ref = load_file(os.path.join(out, "model.safetensors"))
        hf = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}
        mods = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
                "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
        errs = {}
        for n in want:
            if n not in T:
                continue
            if n.startswith("blk."):
                _, i, mod, _ = n.split(".")
                hn = f"model.layers.{i}.{mods[mod]}.weight"
            else:
                hn = hf[n]
            w = ref[hn].astype(np.float32)
            if n.endswith("attn_q.weight") and arch == "llama":
                w = permute(w, n_head)
            if n.endswith("attn_k.weight") and arch == "llama":
                w = permute(w, n_kv)
            t = T[n]
            y = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(w.shape)
            e = float(np.abs(y - w).max()) if w.size else 0.0
            rel = e / max(float(np.abs(w).max()), 1e-30)
            k = t.tensor_type.name
            errs[k] = max(errs.get(k, (0, 0)), (e, rel))
        for k, (e, rel) in sorted(errs.items()):
            lim = {"Q4_1": 2e-3, "Q5_1": 2e-3, "F16": 1e-3, "F32": 0, "BF16": 0}.get(k)
            msg = f"{k}: max |gguf-py dequantized - .dlq| = {e:.3g} ({rel:.2e} of max |w|)"
            if lim is None:
                print(f"  info  {msg} (approximate type)")
            else:
                check(rel <= lim, msg + f" <= {lim:g}")
    print(f"{'PASS' if not failures else 'FAIL'}: {failures} failed check(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
