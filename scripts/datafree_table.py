"""README table of the data-free runs (scripts/run_datafree.sh), from the raw run JSON kept in
docs/results/datafree-stories260K/ (or another folder with the same file names):
  wBgG-METHOD.json                          500-step runs of every method (run_datafree.sh OUT)
  wBgG-dlqat-kl-2000steps.json              P1=100 P2=1900 METHODS=dlqat-kl
  wBgG-dlqat-kl-2000steps-b16.json          the same at batch 16 on 16384 training rows
                                            (NTRAIN=16384 B=16 P1=100 P2=1900 CONFIGS=4:32 METHODS=dlqat-kl)
  wBgG-dlqat-kl-2000steps-train-norms.json  P1=100 P2=1900 METHODS=dlqat-kl QARGS=--train-norms
  wBgG-dlqat-kl-2000steps-train-norms-embeddings.json   QARGS="--train-norms --train-embeddings"
  wBgG-dlqat-kl-2000steps-b16-train-norms-embeddings.json   both: batch 16, 16384 rows, and the two options
  wBgG-rtn-rotate.json, wBgG-gptq-rotate.json   ROTATE=1 METHODS="rtn gptq" (quantize --rotate)
  wBgG-dlqat-kl-2000steps-rotate-train-norms-embeddings.json      ROTATE=1 and the two options
  wBgG-dlqat-kl-2000steps-b16-rotate-train-norms-embeddings.json  the same at batch 16 on 16384 rows
  wBgG-rtn-rotate400.json, wBgG-gptq-rotate400.json   ROTATE_STEPS=400 METHODS="rtn gptq" (learned rotation)
  wBgG-dlqat-kl-2000steps[-b16]-rotate400-train-norms-embeddings.json   ROTATE_STEPS=400 and the two options
  wBgG-{rtn,gptq}-rotate1600lr4.json, wBgG-dlqat-kl-2000steps[-b16]-rotate1600lr4-train-norms-embeddings.json
                                            the same with ROTATE_STEPS=1600 ROTATE_LR=4e-2
Every row's gap is measured against the plain RTN row of its configuration (wBgG-rtn.json), so
the --rotate rows count what the rotation itself gains.
Prints Markdown (run_datafree.sh prints its OUT folder this way).
Usage: python3 scripts/datafree_table.py [FOLDER]"""
import json, math, os, sys

D = sys.argv[1] if len(sys.argv) > 1 else 'docs/results/datafree-stories260K'
fp = json.load(open(os.path.join(D, 'fp.json')))
print(f"FP: ppl {fp['ppl']:.2f} (mean NLL {fp['nll']:.4f}) on {fp['windows']} sampled rows of {fp['ctx']} ids (seed 2); "
      "training rows sampled with seed 1 (2048 x 256; 16384 x 256 for the batch-16 rows).\n")
print("| config | method | steps | wall | ppl | mean NLL | RTN-to-FP gap closed | target |")
print("|---|---|---|---|---|---|---|---|")
rows = [("rtn", "RTN"), ("gptq", "GPTQ"), ("rtn-rotate", "RTN after `--rotate`"), ("gptq-rotate", "GPTQ after `--rotate`"),
        ("rtn-rotate400", "RTN after `--rotate-steps 400`"), ("gptq-rotate400", "GPTQ after `--rotate-steps 400`"),
        ("rtn-rotate1600lr4", "RTN after `--rotate-steps 1600 --rotate-lr 4e-2`"),
        ("gptq-rotate1600lr4", "GPTQ after `--rotate-steps 1600 --rotate-lr 4e-2`"),
        ("qalora", "QA-LoRA (kl)"), ("qat", "full QAT (kl)"),
        ("dlqat-ce", "DL-QAT (ce)"), ("dlqat-kl", "DL-QAT (kl)"), ("dlqat-kl-2000steps", "DL-QAT (kl)"),
        ("dlqat-kl-2000steps-b16", "DL-QAT (kl), batch 16"),
        ("dlqat-kl-2000steps-train-norms", "DL-QAT (kl) + `--train-norms`"),
        ("dlqat-kl-2000steps-train-norms-embeddings", "DL-QAT (kl) + `--train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-b16-train-norms-embeddings", "DL-QAT (kl), batch 16 + `--train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-rotate-train-norms-embeddings", "DL-QAT (kl) + `--rotate --train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-b16-rotate-train-norms-embeddings",
         "DL-QAT (kl), batch 16 + `--rotate --train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-rotate400-train-norms-embeddings",
         "DL-QAT (kl) + `--rotate-steps 400 --train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-b16-rotate400-train-norms-embeddings",
         "DL-QAT (kl), batch 16 + `--rotate-steps 400 --train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-rotate1600lr4-train-norms-embeddings",
         "DL-QAT (kl) + `--rotate-steps 1600 --rotate-lr 4e-2 --train-norms --train-embeddings`"),
        ("dlqat-kl-2000steps-b16-rotate1600lr4-train-norms-embeddings",
         "DL-QAT (kl), batch 16 + `--rotate-steps 1600 --rotate-lr 4e-2 --train-norms --train-embeddings`")]
targets = {"4:32": "80 %", "3:32": "60 %", "2:32": "40 %", "4:channel": "–"}
for c in ["4:32", "3:32", "2:32", "4:channel"]:
    b, g = c.split(":")
    cname = f"W{b} {'per-channel' if g == 'channel' else 'g' + g}"
    base = os.path.join(D, f"w{b}g{g}-rtn.json")
    nbase = math.log(json.load(open(base))["ppl_rtn"]) if os.path.exists(base) else None
    for tag, name in rows:
        p = os.path.join(D, f"w{b}g{g}-{tag}.json")
        if not os.path.exists(p):
            continue
        j = json.load(open(p))
        nfp, nrtn = math.log(j["ppl_fp"]), nbase if nbase is not None else math.log(j["ppl_rtn"])
        q = j.get("ppl_after", j["ppl_rtn"])
        nq = math.log(q)
        closed = (nrtn - nq) / (nrtn - nfp)
        steps = j.get("phase1_steps", 0) + j.get("steps", 0) + j.get("m_steps", 0)
        if j.get("rotate_steps"):   # rotation-learning steps, then the method's own
            steps = f"{j['rotate_steps']} + {steps}"
        dl = tag.startswith("dlqat")
        bold = "**" if dl else ""
        print(f"| {cname} | {name} | {steps} | {j['wall_s']:.0f} s | {bold}{q:.2f}{bold} | {nq:.4f} | "
              f"{bold}{100 * closed:.1f} %{bold} | {targets[c] if dl else ''} |")
