#!/usr/bin/env python3
"""Generate tests/fixtures/ste/: PyTorch-autograd reference for the DL-QAT
quantized linear layer (docs/spec.md §1-2), checked by tests/test_ste_torch.c.

Usage: .venv/bin/python scripts/gen_ste_fixture.py [outdir]   (seeded, deterministic)

For each configuration it draws W0, A, B (B != 0), the per-group s, b, m, the
input x and an upstream gradient dy, runs the forward

    W' = W0 + scale * B A            scale = lora_alpha / r (PEFT)
    u  = (W' - b) / s                per group along the input dimension
    q  = clamp(round(u), qmin, qmax) round half to even (torch.round / C rintf)
    Wq = m * (s * q + b)
    y  = x Wq^T

in float64 with autograd, takes L = sum(y * dy) and saves the inputs, y and
the autograd gradients dL/dA, dL/dB, dL/ds, dL/db, dL/dm, dL/dx as float32
little-endian in <name>.safetensors, plus index.json with the configurations.

STE construction and why autograd then yields SPEC §2
-----------------------------------------------------
r is the integer round(u), a constant (no gradient). The straight-through
rounding is written

    q_ste = (u - u.detach()) + r

whose value is exactly r (u - u.detach() is exactly 0.0 and 0.0 + r = r; the
common form u + (r - u).detach() is also exact here, since r - u is exact by
Sterbenz's lemma, but this form makes it obvious; the value matters because
the clamp below compares it with the integer bounds), and whose derivative
w.r.t. u is 1.
Then q = clamp(q_ste, qmin, qmax). torch's clamp backward passes the gradient
where qmin <= input <= qmax (bounds inclusive) and zeroes it elsewhere, so
dq/du = I with I = [qmin <= round(u) <= qmax], the SPEC's in-range mask.

Chain rule per element, with G = dL/dWq = (dy^T x) and Gq = m G:
    dWq/dq = m s,  du/dW' = 1/s,  du/ds = -(W'-b)/s^2 = -u/s,  du/db = -1/s
    dL/dm  = G (s q + b)
    dL/dW' = Gq s * I * (1/s)                      = Gq I
    dL/ds  = Gq q + Gq s I (-u/s)                  = Gq (q - I u)
    dL/db  = Gq (1) + Gq s I (-1/s)                = Gq (1 - I)
summed over each group for s, b, m; dL/dB = scale dW' A^T, dL/dA = scale B^T dW'.
This is SPEC §2 term for term. The script also evaluates these closed forms
directly (numpy, float64) and asserts they match autograd to 1e-9 relative,
so the reference is pinned to the SPEC, not only to torch's conventions.

Rounding decisions
------------------
The C code computes u = (wp - b) / s in float32, with wp = W0 + scale*B A from
an sgemm. The reference takes round() of the same float32 u (computed in
float32 here), not of the float64 one, and the draw is rejected and redone if
any u (float32 or float64) lies within MARGIN = 1e-4 of a half-integer, so a
last-bit difference in wp (sgemm summation order) cannot flip a rounding or an
in-range decision. The perturbation of s and b from their RTN init makes some
elements clamp at qmin and some at qmax in every configuration (asserted).
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

MARGIN = 1e-4
SEED = 20240611

CONFIGS = [
    # name, bits, group (0 = per-channel), in, out, r, lora_alpha, n
    dict(name="b3_g16_in40", bits=3, group=16, inp=40, out=7, r=4, alpha=8.0, n=5),
    dict(name="b2_pc_in33", bits=2, group=0, inp=33, out=6, r=2, alpha=4.0, n=5),
    dict(name="b4_g8_nolora", bits=4, group=8, inp=24, out=5, r=0, alpha=0.0, n=5),
]


def groups_of(inp, group):
    gsz = inp if group <= 0 or group >= inp else group
    ng = (inp + gsz - 1) // gsz
    return gsz, ng


def rtn_init(w, bits, gsz, ng):
    """SPEC §1 RTN min-max, float32 arithmetic like dlq_quant_init_rtn."""
    out, inp = w.shape
    s = np.zeros((out, ng), np.float32)
    b = np.zeros((out, ng), np.float32)
    qmin = -(1 << (bits - 1))
    for i in range(out):
        for g in range(ng):
            seg = w[i, g * gsz:min(inp, (g + 1) * gsz)]
            lo, hi = np.float32(seg.min()), np.float32(seg.max())
            sc = np.float32((hi - lo) / np.float32((1 << bits) - 1))
            s[i, g] = sc
            b[i, g] = np.float32(lo - sc * np.float32(qmin))
    return s, b


def draw(cfg, rng):
    bits, inp, out, r, n = cfg["bits"], cfg["inp"], cfg["out"], cfg["r"], cfg["n"]
    gsz, ng = groups_of(inp, cfg["group"])
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    scale = np.float32(cfg["alpha"] / r) if r > 0 else np.float32(0)
    f32 = lambda a: np.asarray(a, dtype=np.float32)
    W0 = f32(rng.standard_normal((out, inp)) * 0.5)
    A = f32(rng.standard_normal((r, inp)) * 0.3)
    B = f32(rng.standard_normal((out, r)) * 0.2)
    s0, b0 = rtn_init(W0, bits, gsz, ng)
    # perturb away from the init: shrink s (clamping at both ends), shift b
    s = f32(s0 * rng.uniform(0.55, 0.8, size=s0.shape))
    b = f32(b0 + s0 * rng.uniform(-0.3, 0.3, size=s0.shape))
    m = f32(1.0 + rng.uniform(-0.1, 0.1, size=s0.shape))
    x = f32(rng.standard_normal((n, inp)))
    dy = f32(rng.standard_normal((n, out)))
    gidx = np.arange(inp) // gsz

    # u in float32 the way the C code forms it
    t = lambda a: torch.from_numpy(a)
    wp32 = t(W0) + scale * (t(B) @ t(A)) if r > 0 else t(W0).clone()
    u32 = ((wp32 - t(b)[:, gidx]) / t(s)[:, gidx]).numpy()
    wp64 = W0.astype(np.float64) + (float(scale) * (B.astype(np.float64) @ A.astype(np.float64)) if r > 0 else 0.0)
    u64 = (wp64 - b.astype(np.float64)[:, gidx]) / s.astype(np.float64)[:, gidx]
    for u in (u32.astype(np.float64), u64):
        if np.min(np.abs(u - np.floor(u) - 0.5)) < MARGIN:
            return None
    rnd = np.round(u32.astype(np.float64))  # half to even; no ties by the margin
    assert np.array_equal(rnd, np.round(u64))
    if not ((rnd < qmin).any() and (rnd > qmax).any() and ((rnd >= qmin) & (rnd <= qmax)).any()):
        return None
    return dict(W0=W0, A=A, B=B, s=s, b=b, m=m, x=x, dy=dy, rnd=rnd, gidx=gidx, gsz=gsz, ng=ng, scale=scale,
                qmin=qmin, qmax=qmax)


def reference(cfg, d):
    """float64 autograd forward/backward; returns dict of float64 numpy arrays."""
    r = cfg["r"]
    t = lambda a, g=True: torch.tensor(np.asarray(a, np.float64), requires_grad=g)
    W0 = t(d["W0"], False)
    A, B = t(d["A"]), t(d["B"])
    s, b, m, x = t(d["s"]), t(d["b"]), t(d["m"]), t(d["x"])
    dy = t(d["dy"], False)
    gidx = torch.from_numpy(d["gidx"])
    se, be, me = s[:, gidx], b[:, gidx], m[:, gidx]
    Wp = W0 + float(d["scale"]) * (B @ A) if r > 0 else W0
    u = (Wp - be) / se
    rnd = torch.from_numpy(d["rnd"])  # round-half-even of the float32 u, a constant
    q_ste = (u - u.detach()) + rnd  # value == rnd exactly, d/du == 1
    assert torch.equal(q_ste.detach(), rnd)
    q = torch.clamp(q_ste, d["qmin"], d["qmax"])  # grad passes iff qmin <= rnd <= qmax
    Wq = me * (se * q + be)
    y = x @ Wq.T
    L = (y * dy).sum()
    L.backward()
    res = dict(y=y.detach().numpy(), q=q.detach().numpy(), gs=s.grad.numpy(), gb=b.grad.numpy(), gm=m.grad.numpy(),
               dx=x.grad.numpy())
    if r > 0:
        res["gA"], res["gB"] = A.grad.numpy(), B.grad.numpy()

    # SPEC §2 closed forms, independently (numpy float64)
    u_np = u.detach().numpy()
    I = ((d["rnd"] >= d["qmin"]) & (d["rnd"] <= d["qmax"])).astype(np.float64)
    qn = np.clip(d["rnd"], d["qmin"], d["qmax"])
    G = d["dy"].astype(np.float64).T @ d["x"].astype(np.float64)
    s64, b64, m64 = (d[k].astype(np.float64)[:, d["gidx"]] for k in ("s", "b", "m"))
    Gq = m64 * G
    per = dict(gm=G * (s64 * qn + b64), gs=Gq * (qn - I * u_np), gb=Gq * (1 - I))
    dWp = Gq * I
    spec = {k: np.stack([v[:, d["gidx"] == g].sum(1) for g in range(d["ng"])], 1) for k, v in per.items()}
    if r > 0:
        spec["gB"] = float(d["scale"]) * dWp @ d["A"].astype(np.float64).T
        spec["gA"] = float(d["scale"]) * d["B"].astype(np.float64).T @ dWp
    spec["dx"] = d["dy"].astype(np.float64) @ (m64 * (s64 * qn + b64))
    for k, v in spec.items():
        err = np.max(np.abs(v - res[k])) / max(1e-30, np.max(np.abs(v)))
        assert err < 1e-9, f"{cfg['name']}: autograd {k} != SPEC §2 closed form (rel {err:.3g})"
    return res, I


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "ste")
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    index = []
    for ci, cfg in enumerate(CONFIGS):
        rng = np.random.default_rng([SEED, ci])
        tries = 0
        while True:
            tries += 1
            d = draw(cfg, rng)
            if d is not None:
                break
            assert tries < 1000
        res, I = reference(cfg, d)
        tensors = {k: d[k] for k in ("W0", "s", "b", "m", "x", "dy")}
        if cfg["r"] > 0:
            tensors["A"], tensors["B"] = d["A"], d["B"]
        tensors.update(res)
        tensors = {k: np.ascontiguousarray(v, dtype="<f4") for k, v in tensors.items()}
        fname = cfg["name"] + ".safetensors"
        meta = dict(bits=cfg["bits"], group=cfg["group"], **{"in": cfg["inp"]}, out=cfg["out"], r=cfg["r"],
                    lora_alpha=cfg["alpha"], n=cfg["n"])
        # no __metadata__: the safetensors writer orders it as a hash map (not byte-reproducible);
        # the configuration lives in index.json
        save_file(tensors, os.path.join(outdir, fname))
        nlo, nhi = int((d["rnd"] < d["qmin"]).sum()), int((d["rnd"] > d["qmax"]).sum())
        index.append(dict(name=cfg["name"], file=fname, draws=tries, clamped_low=nlo, clamped_high=nhi,
                          in_range=int(I.sum()), seed=[SEED, ci], **meta))
        print(f"{cfg['name']}: draws {tries}, clamped low {nlo} high {nhi}, in range {int(I.sum())}")
    with open(os.path.join(outdir, "index.json"), "w") as f:
        json.dump(dict(generator="scripts/gen_ste_fixture.py", margin=MARGIN, torch=torch.__version__,
                       configs=index), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
