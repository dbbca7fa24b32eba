"""README table of scripts/run_datafree.sh: reads OUT/*.json (500-step runs of every
method) and OUT2/*.json (DL-QAT kl at 2000 steps: run_datafree.sh with P1=100 P2=1900
METHODS=dlqat-kl OUT2) and OUT3/*.json (the same at batch 16 on 16384 training rows:
NTRAIN=16384 B=16 P1=100 P2=1900 CONFIGS=4:32 METHODS=dlqat-kl), prints Markdown.
Usage: python3 scripts/datafree_table.py [OUT] [OUT2] [OUT3]"""
import json, math, os, sys
rows = []
OUT = sys.argv[1] if len(sys.argv) > 1 else 'out/datafree'
OUT2 = sys.argv[2] if len(sys.argv) > 2 else 'out/datafree-2000'
OUT3 = sys.argv[3] if len(sys.argv) > 3 else 'out/datafree-b16'
fp = json.load(open(os.path.join(OUT, 'fp.json')))
print(f"FP: ppl {fp['ppl']:.2f} (mean NLL {fp['nll']:.4f}) on 256 sampled rows of 256 ids (seed 2); training rows: 2048 x 256 sampled with seed 1 (16384 x 256, seed 1, for the batch-16 row).\n")
print("| config | method | steps | wall | ppl | mean NLL | RTN-to-FP gap closed | target |")
print("|---|---|---|---|---|---|---|---|")
names = {"rtn": "RTN", "gptq": "GPTQ", "dlqat-ce": "DL-QAT (ce)", "dlqat-kl": "DL-QAT (kl)", "qalora": "QA-LoRA (kl)", "qat": "full QAT (kl)"}
targets = {"4:32": "80 %", "3:32": "60 %", "2:32": "40 %", "4:channel": "–"}
for c in ["4:32", "3:32", "2:32", "4:channel"]:
    b, g = c.split(":")
    cname = f"W{b} {'per-channel' if g == 'channel' else 'g' + g}"
    for d, m in [(OUT, "rtn"), (OUT, "gptq"), (OUT, "qalora"), (OUT, "qat"),
                 (OUT, "dlqat-ce"), (OUT, "dlqat-kl"), (OUT2, "dlqat-kl"), (OUT3, "dlqat-kl")]:
        p = os.path.join(d, f"w{b}g{g}-{m}.json")
        if not os.path.exists(p):
            continue
        j = json.load(open(p))
        nfp, nrtn = math.log(j["ppl_fp"]), math.log(j["ppl_rtn"])
        q = j.get("ppl_after", j["ppl_rtn"])
        nq = math.log(q)
        closed = (nrtn - nq) / (nrtn - nfp)
        steps = j.get("phase1_steps", 0) + j.get("steps", 0) + j.get("m_steps", 0)
        tgt = targets[c] if m.startswith("dlqat") else ""
        name = names[m] + (f", batch {j['batch']}" if j.get("batch", 4) != 4 else "")
        bold = "**" if m.startswith("dlqat") else ""
        print(f"| {cname} | {name} | {steps} | {j['wall_s']:.0f} s | {bold}{q:.2f}{bold} | {nq:.4f} | {bold}{100 * closed:.1f} %{bold} | {tgt} |")
