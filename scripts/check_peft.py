#!/usr/bin/env python3
"""PEFT compatibility check for `dlqat finetune --mode lora --merge`.

1. Runs build/dlqat finetune (LoRA, --merge) briefly on the demo model into a
   temporary directory.
2. Loads the base model with transformers (float32), applies OUT/adapter with
   peft.PeftModel.from_pretrained, computes logits on a fixed token batch.
3. Loads OUT/merged with transformers and computes the same logits.
4. Compares: PEFT vs merged (should be ~1e-5) and PEFT vs base (the adapter
   must matter), and fails (exit 1) if PEFT vs merged exceeds --tol.
5. With --write-fixture (default on): writes tests/fixtures/peft/ for
   tests/test_peft_fixture.c:
     adapter/adapter_config.json, adapter/adapter_model.safetensors
     ref.json         input_ids, shapes, settings, measured diffs, versions
     logits_last.f32  [B, V]   PEFT logits at the last position of each row
     logits_head.f32  [B, T, K] PEFT logits for the first K vocabulary ids at
                      every position
   Everything is raw little-endian float32, row-major.

Usage: .venv/bin/python scripts/check_peft.py [--steps 20 --rank 4 ...] [--no-fixture]
Needs build/dlqat (make) and the venv from scripts/setup_python.sh + peft
(pip install --no-deps peft==0.13.2). Deterministic: dlqat's run is seeded and
single-configuration (OMP_NUM_THREADS=2); re-running reproduces the fixture.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def logits_of(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/english-mix-7M")
    ap.add_argument("--data", default="data/sample/english-mix-valid-sample.txt")
    ap.add_argument("--steps", type=int, default=20)
    # rank 4 on all 7 projections: the adapter is 467 KB in f32 (rank 8 would
    # be 934 KB, over the fixture budget); alpha 16 -> scaling 4
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--targets", default="q,k,v,o,gate,up,down")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rows", type=int, default=2, help="sequences in the logits batch")
    ap.add_argument("--T", type=int, default=32, help="tokens per sequence in the logits batch")
    ap.add_argument("--head-k", type=int, default=256, help="vocabulary ids stored at every position")
    ap.add_argument("--tol", type=float, default=1e-4, help="max |PEFT - merged| allowed")
    ap.add_argument("--fixture", default="tests/fixtures/peft")
    ap.add_argument("--no-fixture", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = ap.parse_args()
    os.chdir(ROOT)

    dlqat = os.path.join(ROOT, "build", "dlqat")
    if not os.access(dlqat, os.X_OK):
        sys.exit("check_peft: build/dlqat is missing; run make")

    import peft
    import transformers
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tmp = tempfile.mkdtemp(prefix="dlqat_peft_")
    out = os.path.join(tmp, "run")
    cmd = [dlqat, "finetune", "--model", args.model, "--data", args.data, "--mode", "lora", "--merge",
           "--rank", str(args.rank), "--alpha", "%g" % args.alpha, "--targets", args.targets,
           "--steps", str(args.steps), "--batch", str(args.batch), "--seq", str(args.seq),
           "--lr", "%g" % args.lr, "--seed", str(args.seed), "--out", out]
    env = dict(os.environ, OMP_NUM_THREADS="2", OPENBLAS_NUM_THREADS="2")
    print("+", " ".join(cmd), file=sys.stderr)
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        sys.exit("check_peft: dlqat finetune exited %d" % r.returncode)
    run = json.loads(r.stdout)

    # fixed token batch: BOS + the tokenized sample text, consecutive windows
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(args.model, "tokenizer.model"))
    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    toks = sp.encode(text[:20000])
    rows = []
    for b in range(args.rows):
        start = 1000 + b * 997  # away from the start of the file, rows do not overlap
        rows.append([1] + toks[start:start + args.T - 1])
    ids = torch.tensor(rows, dtype=torch.long)

    kw = dict(torch_dtype=torch.float32, attn_implementation="eager")
    base = AutoModelForCausalLM.from_pretrained(args.model, **kw).eval()
    base_logits = logits_of(base, ids)
    pm = PeftModel.from_pretrained(base, os.path.join(out, "adapter")).eval()
    peft_logits = logits_of(pm, ids)
    merged = AutoModelForCausalLM.from_pretrained(os.path.join(out, "merged"), **kw).eval()
    merged_logits = logits_of(merged, ids)
    # PEFT's own merge_and_unload, for comparison
    own = pm.merge_and_unload().eval()
    own_logits = logits_of(own, ids)

    d_merged = float(np.abs(peft_logits - merged_logits).max())
    d_own = float(np.abs(peft_logits - own_logits).max())
    d_dlq_vs_own_merge = float(np.abs(merged_logits - own_logits).max())
    d_base = float(np.abs(peft_logits - base_logits).max())
    res = {
        "peft_vs_dlqat_merged_max_abs": d_merged,
        "peft_vs_peft_merge_and_unload_max_abs": d_own,
        "dlqat_merged_vs_peft_merge_and_unload_max_abs": d_dlq_vs_own_merge,
        "peft_vs_base_max_abs": d_base,
        "logits_abs_max": float(np.abs(peft_logits).max()),
        "final_loss": run.get("final_loss"),
    }
    print(json.dumps(res, indent=2))

    ok = d_merged <= args.tol and d_base > 100 * args.tol
    if not ok:
        print("check_peft: FAILED (PEFT vs merged %.3g, tol %.3g; PEFT vs base %.3g must exceed %.3g)"
              % (d_merged, args.tol, d_base, 100 * args.tol), file=sys.stderr)

    if not args.no_fixture and ok:
        fx = os.path.join(ROOT, args.fixture)
        ad = os.path.join(fx, "adapter")
        os.makedirs(ad, exist_ok=True)
        cfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
        cfg["base_model_name_or_path"] = args.model  # relative: the temp path would leak in
        with open(os.path.join(ad, "adapter_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        shutil.copyfile(os.path.join(out, "adapter", "adapter_model.safetensors"),
                        os.path.join(ad, "adapter_model.safetensors"))
        B, T, V = peft_logits.shape
        K = min(args.head_k, V)
        np.ascontiguousarray(peft_logits[:, -1, :], dtype="<f4").tofile(os.path.join(fx, "logits_last.f32"))
        np.ascontiguousarray(peft_logits[:, :, :K], dtype="<f4").tofile(os.path.join(fx, "logits_head.f32"))
        ref = {
            "model": args.model,
            "input_ids": rows,
            "B": B, "T": T, "vocab": V, "head_k": K,
            "logits_last": {"file": "logits_last.f32", "shape": [B, V]},
            "logits_head": {"file": "logits_head.f32", "shape": [B, T, K]},
            "finetune": {"steps": args.steps, "rank": args.rank, "alpha": args.alpha, "targets": args.targets,
                         "batch": args.batch, "seq": args.seq, "lr": args.lr, "seed": args.seed,
                         "data": args.data, "OMP_NUM_THREADS": 2},
            "diffs": res,
            "tolerance": args.tol,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "peft": peft.__version__, "python": sys.version.split()[0]},
        }
        with open(os.path.join(fx, "ref.json"), "w") as f:
            json.dump(ref, f, indent=1)
            f.write("\n")
        print("wrote %s" % fx, file=sys.stderr)

    if args.keep:
        print("kept %s" % tmp, file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
