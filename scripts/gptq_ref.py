#!/usr/bin/env python3
"""GPTQ reference (PyTorch, float64) and the fixture for tests/test_gptq.c.

Usage: /work/main/.venv/bin/python scripts/gptq_ref.py [outdir]   (default tests/fixtures/gptq; seeded)

The algorithm is Algorithm 1 of Frantar et al. 2022 as implemented by the
reference gptq.py (fasterquant), with the choices of src/quant/gptq.h:

  H = 2 X^T X; dead inputs (H_jj = 0): H_jj = 1, W[:, j] = 0
  act-order: columns by decreasing H_jj (stable), static groups (group
             parameters from the original W, the reference's --static-groups)
  H += percdamp * mean(diag H) * I
  U = cholesky(cholesky_inverse(cholesky(H)), upper=True)
  for each block [i1, i2) of `blocksize` columns:
      for i in block:
          group parameters when the group is first reached (no act-order), from
          the group's CURRENT weights (in-block columns already compensated)
          q = clamp(round((w - b)/s), qmin, qmax); dq = s*q + b (float32)
          e = (w - dq) / U_ii; w_k -= e U_ik for the rest of the block
      W[:, i2:] -= E U[i1:i2, i2:]

The quantizer is dlqat's min-max group quantizer (src/quant/fakequant.c,
dlq_quant_init_rtn) evaluated in float32 exactly as the C code does:
s = (max - min) / (2^n - 1) (guarded), b = min - s*qmin, q half-to-even.
The reference differs from gptq.py only in that quantizer (real-valued offset
instead of an integer zero point) and in taking the current weights of a group
that starts inside a block (gptq.py reads the not-yet-updated W there).

Fixture: gptq.safetensors holds W, X and, per configuration, the dequantized
weights, the integers (as float32), s and b; index.json lists the
configurations. The script asserts that GPTQ's layer-output error is below
RTN's for every configuration.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file


def rtn_params(wg, bits):
    """dlq_quant_init_rtn for one group per row, float32: wg [rows, n] -> s, b [rows]."""
    wg = wg.astype(np.float32)
    lo = wg.min(axis=1).astype(np.float32)
    hi = wg.max(axis=1).astype(np.float32)
    sc = ((hi - lo) / np.float32((1 << bits) - 1)).astype(np.float32)
    tiny = (np.float32(1e-8) * np.maximum(np.float32(1), np.maximum(np.abs(lo), np.abs(hi)))).astype(np.float32)
    sc = np.where(sc > tiny, sc, tiny).astype(np.float32)
    b = (lo - sc * np.float32(-(1 << (bits - 1)))).astype(np.float32)
    return sc, b


def gptq_ref(W, H, bits, group, blocksize, percdamp, act_order):
    W = torch.tensor(W, dtype=torch.float64).clone()
    H = torch.tensor(H, dtype=torch.float64).clone()
    rows, cols = W.shape
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    gs = cols if group <= 0 or group >= cols else group
    ng = (cols + gs - 1) // gs
    S = np.zeros((rows, ng), np.float32)
    B = np.zeros((rows, ng), np.float32)
    have = [False] * ng
    if act_order:
        perm = torch.tensor(sorted(range(cols), key=lambda j: (-float(H[j, j]), j)))
        Wf = W.numpy().astype(np.float32)
        for g in range(ng):
            S[:, g], B[:, g] = rtn_params(Wf[:, g * gs:min(cols, (g + 1) * gs)], bits)
            have[g] = True
    else:
        perm = torch.arange(cols)
    W = W[:, perm]
    H = H[perm][:, perm]
    H += percdamp * torch.mean(torch.diag(H)) * torch.eye(cols, dtype=torch.float64)
    L = torch.linalg.cholesky(H)
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros(rows, cols, dtype=torch.float64)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        E = torch.zeros(rows, i2 - i1, dtype=torch.float64)
        for i in range(i1, i2):
            j = int(perm[i])
            g = j // gs
            if not have[g]:  # only without act-order: perm is the identity
                j0, j1 = g * gs, min(cols, (g + 1) * gs)
                S[:, g], B[:, g] = rtn_params(W[:, j0:j1].numpy().astype(np.float32), bits)
                have[g] = True
            w = W[:, i]
            s = torch.tensor(S[:, g], dtype=torch.float64)
            b = torch.tensor(B[:, g], dtype=torch.float64)
            q = torch.clamp(torch.round((w - b) / s), qmin, qmax)  # torch.round: half to even
            dq = torch.tensor(S[:, g] * q.numpy().astype(np.float32) + B[:, g], dtype=torch.float64)  # float32 s*q+b
            e = (w - dq) / U[i, i]
            Q[:, i] = q
            W[:, i] = dq
            W[:, i + 1:i2] -= e[:, None] * U[i, i + 1:i2][None, :]
            E[:, i - i1] = e
        W[:, i2:] -= E @ U[i1:i2, i2:]
    inv = torch.argsort(perm)
    return W[:, inv].numpy().astype(np.float32), Q[:, inv].numpy().astype(np.float32), S, B


def rtn(W, bits, group):
    rows, cols = W.shape
    gs = cols if group <= 0 or group >= cols else group
    out = np.zeros_like(W)
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    for g0 in range(0, cols, gs):
        wg = W[:, g0:g0 + gs]
        s, b = rtn_params(wg, bits)
        q = np.clip(np.round((wg - b[:, None]) / s[:, None]), qmin, qmax).astype(np.float32)
        out[:, g0:g0 + gs] = s[:, None] * q + b[:, None]
    return out


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gptq"
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(20240607)
    rows, cols, n = 24, 80, 256
    W = (rng.standard_normal((rows, cols)) * 0.1).astype(np.float32)
    # correlated inputs with uneven column scales (what makes GPTQ differ from RTN), one dead column
    M = rng.standard_normal((cols, cols)) * 0.3 + np.eye(cols)
    X = (rng.standard_normal((n, cols)) @ M * rng.uniform(0.2, 2.0, cols)).astype(np.float32)
    X[:, 5] = 0
    H = 2.0 * X.astype(np.float64).T @ X.astype(np.float64)
    tensors = {"W": W, "X": X}
    configs = [
        dict(name="b3_g16_bs32", bits=3, group=16, blocksize=32, act_order=0),
        dict(name="b3_g24_bs32", bits=3, group=24, blocksize=32, act_order=0),  # groups straddle blocks, short last group
        dict(name="b4_g16_bs32_act", bits=4, group=16, blocksize=32, act_order=1),
        dict(name="b2_pc_bs16", bits=2, group=0, blocksize=16, act_order=0),
        dict(name="b3_g32_bs128", bits=3, group=32, blocksize=128, act_order=0),  # one block (in < blocksize)
    ]
    Y = X.astype(np.float64) @ W.astype(np.float64).T
    for c in configs:
        c["percdamp"] = 0.01
        wq, q, s, b = gptq_ref(W, H, c["bits"], c["group"], c["blocksize"], c["percdamp"], c["act_order"])
        e_gptq = float(np.sum((X.astype(np.float64) @ wq.astype(np.float64).T - Y) ** 2))
        e_rtn = float(np.sum((X.astype(np.float64) @ rtn(W, c["bits"], c["group"]).astype(np.float64).T - Y) ** 2))
        assert e_gptq < e_rtn, (c["name"], e_gptq, e_rtn)
        c["err_gptq"], c["err_rtn"] = e_gptq, e_rtn
        print(f"{c['name']}: layer-output squared error GPTQ {e_gptq:.5g} < RTN {e_rtn:.5g} ({e_gptq / e_rtn:.3f})")
        for k, v in (("wq", wq), ("q", q), ("s", s), ("b", b)):
            tensors[f"{c['name']}.{k}"] = np.ascontiguousarray(v, dtype=np.float32)
    save_file(tensors, os.path.join(outdir, "gptq.safetensors"))
    with open(os.path.join(outdir, "index.json"), "w") as f:
        json.dump({"rows": rows, "cols": cols, "n": n, "dead_column": 5, "configs": configs}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
