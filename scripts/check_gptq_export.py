#!/usr/bin/env python3
"""Dequantize a `dlqat export --format gptq` folder with AutoGPTQ's formula and compare with the .dlq.

    .venv/bin/python scripts/check_gptq_export.py --dlq M.dlq [--out DIR] [--dlqat build/dlqat]

Exports the .dlq as GPTQ (DIR) and as an fp32 HF folder (the reference: the .dlq's weights
w = scale*q + bias in fp32), then for every projection unpacks qweight / qzeros the way AutoGPTQ's
v1 ("gptq" checkpoint format) kernels do -- int32 words, value k of a word at bit bits*k (3 bits: 32
values in 3 words as one bit stream), zeros stored minus one -- and computes
    W[:, i] = scales[g_idx[i]] * (q[i] - (qzeros[g_idx[i]] + 1))
checking it against the reference (up to the fp16 rounding of scales), plus quantize_config.json and
config.json's quantization_config. transformers itself needs optimum + auto-gptq (and a GPU for most
kernels) to run such a folder; they are not installed here, so loading is not attempted.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file


def unpack(words, bits, n, axis):
    """AutoGPTQ v1 unpacking of int32 words along `axis` (0: rows of qweight, 1: columns of qzeros)."""
    w = words.astype(np.uint32)
    if axis == 1:
        w = w.T
    out = np.zeros((n, w.shape[1]), dtype=np.int64)
    if bits in (2, 4, 8):
        per = 32 // bits
        for k in range(n):
            out[k] = (w[k // per] >> np.uint32(bits * (k % per))) & np.uint32((1 << bits) - 1)
    else:  # 3 bits: every 3 words hold 32 values as a 96-bit little-endian stream
        for k in range(n):
            blk, kk = divmod(k, 32)
            pos = 3 * kk
            v = np.zeros(w.shape[1], dtype=np.int64)
            for b in range(3):
                p = pos + b
                v |= ((w[3 * blk + p // 32] >> np.uint32(p % 32)) & np.uint32(1)).astype(np.int64) << b
            out[k] = v
    return out if axis == 0 else out.T


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dlq", required=True)
    ap.add_argument("--out")
    ap.add_argument("--dlqat", default="build/dlqat")
    a = ap.parse_args()
    td = tempfile.TemporaryDirectory()
    out = a.out or os.path.join(td.name, "gptq")
    ref_dir = os.path.join(td.name, "ref")
    r = subprocess.run([a.dlqat, "export", "--model", a.dlq, "--format", "gptq", "--out", out], capture_output=True, text=True)
    if r.returncode:
        print(r.stderr.strip())
        print("FAIL: the GPTQ export was refused")
        return 1
    subprocess.run([a.dlqat, "export", "--model", a.dlq, "--format", "hf", "--dtype", "f32", "--out", ref_dir, "--no-ppl"],
                   check=True, capture_output=True)
    ref = load_file(os.path.join(ref_dir, "model.safetensors"))
    st = load_file(os.path.join(out, "model.safetensors"))
    qc = json.load(open(os.path.join(out, "quantize_config.json")))
    cfg = json.load(open(os.path.join(out, "config.json")))
    fails = 0

    def check(cond, what):
        nonlocal fails
        print(("  ok    " if cond else "  FAIL  ") + what)
        fails += 0 if cond else 1

    bits, gs = qc["bits"], qc["group_size"]
    print(f"{out}: {sorted(os.listdir(out))}")
    check(qc.get("desc_act") is False and qc.get("quant_method") == "gptq" and "sym" in qc,
          f"quantize_config.json: bits {bits}, group_size {gs}, desc_act {qc.get('desc_act')}, sym {qc.get('sym')}")
    check(cfg.get("quantization_config", {}).get("bits") == bits, "config.json carries quantization_config")
    worst, worst_rel, n = 0.0, 0.0, 0
    zeros_all = []
    for name in sorted(k for k in st if k.endswith(".qweight")):
        p = name[: -len(".qweight")]
        qw, qz, sc, gi = st[p + ".qweight"], st[p + ".qzeros"], st[p + ".scales"], st[p + ".g_idx"]
        W = ref[p + ".weight"]  # [out, in]
        out_f, in_f = W.shape
        ok = qw.dtype == np.int32 and qw.shape == (in_f * bits // 32, out_f) and qz.dtype == np.int32 \
            and sc.dtype == np.float16 and gi.shape == (in_f,)
        if not ok:
            check(False, f"{p}: dtypes / shapes {qw.dtype}{qw.shape} {qz.dtype}{qz.shape} {sc.dtype}{sc.shape} {gi.shape}")
            continue
        q = unpack(qw, bits, in_f, 0)                     # [in, out]
        z = unpack(qz, bits, out_f, 1) + 1                # [groups, out]; v1 stores zero - 1
        zeros_all.append(z)
        Wd = sc.astype(np.float32)[gi] * (q - z[gi]).astype(np.float32)   # [in, out]
        e = np.abs(Wd.T - W)
        tol = np.abs(sc.astype(np.float32)[gi].T) * np.abs((q - z[gi]).T) * 2.0 ** -10 + 1e-7  # fp16 scale rounding
        if not (e <= tol).all():
            check(False, f"{p}: dequantized weights differ from the .dlq beyond the fp16 scale rounding (max {e.max():.3g})")
        worst = max(worst, float(e.max()))
        worst_rel = max(worst_rel, float(e.max() / np.abs(W).max()))
        n += 1
        check(np.array_equal(gi, np.arange(in_f) // (gs if gs > 0 else in_f)), f"{p}: g_idx = i // group_size") if n == 1 else None
    check(n > 0, f"{n} projections dequantized with the AutoGPTQ formula; max |W - W_dlq| = {worst:.3g} "
                 f"({worst_rel:.2e} of max |w|), within the fp16 rounding of scales")
    z = np.concatenate([x.reshape(-1) for x in zeros_all]) if zeros_all else np.zeros(1)
    print(f"  info  zero points in [{z.min()}, {z.max()}] (v1 stores zero - 1 in {bits} bits)")
    print(f"{'PASS' if not fails else 'FAIL'}: {fails} failed check(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
