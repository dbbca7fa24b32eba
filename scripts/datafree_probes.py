"""W4 g32 recipe probes on stories260K (issue 8): reads the run JSONs in
docs/results/datafree-stories260K/w4-probes/ and prints a Markdown table. Every
probe is `dlqat quantize --method dlqat --loss kl --bits 4 --group 32` on the
2048-row training file and the 256-row evaluation file of scripts/run_datafree.sh,
P1 50 + P2 250 steps, batch 4, lr 3e-3, lr-sb 3e-4, cosine, seed 1, plus the
options listed (b16_300: batch 16 on the 16384-row file; *_2000: 100 + 1900 steps). "% closed" is measured
against the run's own RTN start, so the single-kind rows (--targets) give the
share of that kind's own gap. rtn-only-*: --method rtn with one --targets kind.
The rot* probes (learned rotation, session 5) are measured against the plain RTN row
(wBgG-rtn.json beside this folder), like the README table: `--rotate-steps N --rotate-lr LR
[--rotate-heads]` before RTN or the 2000-step DL-QAT run of the README's rotation rows
(P1 100 + P2 1900, batch 4, --train-norms --train-embeddings); the same without the probed
option is in the README table (wBgG-*-rotate1600lr4*.json).
Usage: python3 scripts/datafree_probes.py [DIR]"""
import json, math, os, sys
D = sys.argv[1] if len(sys.argv) > 1 else "docs/results/datafree-stories260K/w4-probes"
what = {
    "base300": "baseline", "gptq300": "--base gptq", "sb2_300": "--phase2-sb", "b16_300": "--batch 16 (16384 rows)",
    "lsq300": "--lsq", "cekl300": "--loss ce+kl", "lrm1e2_300": "--lr-m 1e-2", "damp01_300": "--dampen 0.1",
    "damp1_300": "--dampen 1", "damp10_300": "--dampen 10", "qk300": "--targets q_proj,k_proj",
    "vo300": "--targets v_proj,o_proj", "mlp300": "--targets gate_proj,up_proj,down_proj",
    "vo_2000": "--targets v_proj,o_proj, P1 100 + P2 1900", "lr1e3_2000": "P1 100 + P2 1900, --lr 1e-3", "qat_2000": "--method qat, P1 100 + P2 1900, --lr 1e-3",
    "normsemb_8000": "--train-norms --train-embeddings, P1 100 + P2 7900 (16384-row file)",
}
print("| probe | options | steps | wall | RTN ppl | ppl | % of the RTN-to-FP gap closed |")
print("|---|---|---|---|---|---|---|")
for t, opt in what.items():
    p = os.path.join(D, t + ".json")
    if not os.path.exists(p):
        continue
    j = json.load(open(p))
    nf, nr, nq = math.log(j["ppl_fp"]), math.log(j["ppl_rtn"]), math.log(j["ppl_after"])
    steps = j["phase1_steps"] + j["steps"]
    print(f"| {t} | `{opt}` | {steps} | {j['wall_s']:.0f} s | {j['ppl_rtn']:.2f} | {j['ppl_after']:.2f} | {100 * (nr - nq) / (nr - nf):.1f} % |")
rot = {
    "rot1600_rtn": "RTN after --rotate-steps 1600 (lr 2e-2)",
    "rot400heads_rtn": "RTN after --rotate-steps 400 --rotate-heads",
    "rot1600lr4heads_2000": "DL-QAT after --rotate-steps 1600 --rotate-lr 4e-2 --rotate-heads",
    "rot1600lr4_lr6e3_2000": "DL-QAT after --rotate-steps 1600 --rotate-lr 4e-2, --lr 6e-3",
}
base = os.path.join(D, "..", "w4g32-rtn.json")
if os.path.exists(base):
    nr = math.log(json.load(open(base))["ppl_rtn"])
    print("\n| rotation probe | options | steps | wall | RTN ppl in that basis | ppl | % of the plain RTN-to-FP gap closed |")
    print("|---|---|---|---|---|---|---|")
    for t, opt in rot.items():
        p = os.path.join(D, t + ".json")
        if not os.path.exists(p):
            continue
        j = json.load(open(p))
        nf, nq = math.log(j["ppl_fp"]), math.log(j["ppl_after"])
        steps = f"{j['rotate_steps']} + {j.get('phase1_steps', 0) + j.get('steps', 0)}"
        print(f"| {t} | `{opt}` | {steps} | {j['wall_s']:.0f} s | {j['ppl_rtn']:.2f} | {j['ppl_after']:.2f} | {100 * (nr - nq) / (nr - nf):.1f} % |")
print("\n| RTN W4 g32 on one kind only | ppl | added mean NLL |")
print("|---|---|---|")
for k in ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]:
    p = os.path.join(D, f"rtn-only-{k}.json")
    if os.path.exists(p):
        j = json.load(open(p))
        print(f"| {k} | {j['ppl_after']:.2f} | +{math.log(j['ppl_after']) - math.log(j['ppl_fp']):.3f} |")
