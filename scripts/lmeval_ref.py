#!/usr/bin/env python3
"""Reference per-item log-likelihoods from lm-evaluation-harness itself.

Feeds lm-eval (PyPI lm-eval 0.4.9.1, Hugging Face backend, CPU, offline) the
SAME items the C harness scores, as custom tasks: each task's items are
converted to lm-eval's native dataset fields (JSON Lines) and evaluated
through a YAML config that `include:`s lm-eval's OWN task YAML (prompt
format, choices, target delimiter, metrics, preprocessing functions) and only
replaces the dataset by the local file. MMLU: lm-eval's own
mmlu/default/_default_template_yaml with the subject's description, the dev
CSV as the few-shot split (first_n sampler); the number of shots of each
question is chosen by the C harness's rule (drop examples while
len(context) + len(continuation) - 1 > max_length) and questions are grouped
into one task per (subject, shots).

Writes tests/fixtures/eval/lmeval_ref.json: for every item the (context,
continuation) requests as lm-eval built them, the per-choice
log-likelihoods, gold, and lm-eval's acc / acc_norm of the item.

    HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 /work/main/.venv/bin/python scripts/lmeval_ref.py \
        [--model models/english-mix-7M] [--data ../shared/data/tasks] [--n 50] [--mmlu-n 8]

Setup: scripts/setup_python.sh installs lm-eval and the packages it imports
for this run (all with --no-deps; the list is there).
"""
import argparse
import csv
import json
import os
import re
import sys
import tempfile

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import lm_eval  # noqa: E402
import lm_eval.evaluator  # noqa: E402
import lm_eval.tasks  # noqa: E402
import transformers  # noqa: E402

LMEVAL_TASKS = os.path.join(os.path.dirname(lm_eval.tasks.__file__))
YAML = {
    "piqa": "piqa/piqa.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "openbookqa": "openbookqa/openbookqa.yaml",
    "winogrande": "winogrande/default.yaml",
    "social_iqa": "siqa/siqa.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
}
DIRS = {"social_iqa": "social_i_qa"}
MMLU_SUBJECTS = ["abstract_algebra", "high_school_geography", "philosophy", "nutrition", "college_medicine"]


def parse_llm_adapters(task, ins, ans):
    """LLM-Adapters instruction text -> lm-eval native fields (an independent
    re-implementation of the C reader, by regular expressions)."""
    if task == "piqa":
        m = re.fullmatch(r"Please choose the correct solution to the question: (.*?)\n\nSolution1: (.*?)\n\n"
                         r"Solution2: (.*)\n\nAnswer format: solution1/solution2", ins, re.S)
        return {"goal": m[1], "sol1": m[2], "sol2": m[3], "label": int(ans[len("solution"):]) - 1}
    if task == "boolq":
        m = re.fullmatch(r"Please answer the following question with true or false, question: (.*)\n\n"
                         r"Answer format: true/false", ins, re.S)
        q = m[1][:-1] if m[1].endswith("?") else m[1]
        return {"passage": "", "question": q, "label": {"true": 1, "false": 0}[ans]}
    if task == "winogrande":
        m = re.fullmatch(r"Please choose the correct answer to fill in the blank to complete the given sentence: "
                         r"(.*?)\n\nOption1: (.*?) Option2: (.*) Answer format: option1/option2", ins, re.S)
        return {"sentence": m[1], "option1": m[2], "option2": m[3], "answer": ans[len("option"):]}
    m = re.fullmatch(r"Please choose the correct answer to the question: (.*?)\n\n(Answer1: .*)\n\n"
                     r"Answer format: (answer\d(?:/answer\d)*)", ins, re.S)
    n = len(m[3].split("/"))
    body, choices = m[2][len("Answer1: "):], []
    for k in range(2, n + 1):
        i = body.index(f" Answer{k}: ")
        choices.append(body[:i])
        body = body[i + len(f" Answer{k}: "):]
    choices.append(body)
    gold = int(ans[len("answer"):]) - 1
    q = m[1]
    if task == "social_iqa":
        # the format merged "context question"; lm-eval's template is "Q: {{context}} {{question}}\nA:",
        # so any split at a space gives the same prompt
        i = q.index(" ")
        return {"context": q[:i], "question": q[i + 1:], "answerA": choices[0], "answerB": choices[1],
                "answerC": choices[2], "label": str(gold + 1)}
    labels = [chr(ord("A") + i) for i in range(n)]
    key = "question_stem" if task == "openbookqa" else "question"
    return {key: q, "choices": {"text": choices, "label": labels}, "answerKey": labels[gold]}


def yaml_str(s):
    return json.dumps(s)  # a JSON string is a valid YAML scalar


def mmlu_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [{"question": r[0], "choices": r[1:5], "answer": "ABCD".index(r[5])} for r in csv.reader(f)]


def mmlu_prompt(subject, dev, k, q):
    def one(d):
        c = d["choices"]
        return f"{d['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"
    s = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    for d in dev[:k]:
        s += one(d) + " " + "ABCD"[d["answer"]] + "\n\n"
    return s + one(q)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/english-mix-7M")
    ap.add_argument("--data", default="../shared/data/tasks")
    ap.add_argument("--hellaswag", default="tests/fixtures/eval/hellaswag_sample.jsonl")
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--mmlu-n", type=int, default=8)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--out", default="tests/fixtures/eval/lmeval_ref.json")
    a = ap.parse_args()

    tok = transformers.AutoTokenizer.from_pretrained(a.model)
    max_length = 512  # english-mix-7M: max_position_embeddings (lm-eval's HFLM.max_length reads the same)
    tmp = tempfile.mkdtemp(prefix="lmeval_ref_")
    names, meta = [], {}
    for task, y in YAML.items():
        if task == "hellaswag":
            docs = [json.loads(l) for l in open(a.hellaswag, encoding="utf-8") if l.strip()][: a.n]
            src = a.hellaswag
        else:
            src = os.path.join(a.data, DIRS.get(task, task), "test_shared.json")
            items = json.load(open(src, encoding="utf-8"))[: a.n]
            docs = [parse_llm_adapters(task, it["instruction"], it["answer"]) for it in items]
        jl = os.path.join(tmp, f"{task}.jsonl")
        with open(jl, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d) + "\n")
        name = f"ref_{task}"
        with open(os.path.join(tmp, f"{name}.yaml"), "w") as f:
            f.write(f"include: {os.path.join(LMEVAL_TASKS, y)}\ntask: {name}\ndataset_path: json\n"
                    f"dataset_name: null\ndataset_kwargs:\n  data_files:\n    validation: {jl}\n"
                    "training_split: null\nvalidation_split: validation\ntest_split: null\n")
        names.append(name)
        meta[name] = ("mc", task, src)

    mmlu_dir = os.path.join(a.data, "mmlu")
    mmlu_k = {}
    for sub in MMLU_SUBJECTS:
        dev = mmlu_rows(os.path.join(mmlu_dir, "dev", f"{sub}_dev.csv"))
        test = mmlu_rows(os.path.join(mmlu_dir, "test", f"{sub}_test.csv"))[: a.mmlu_n]
        devf = os.path.join(tmp, f"mmlu_{sub}_dev.jsonl")
        with open(devf, "w", encoding="utf-8") as f:
            for d in dev:
                f.write(json.dumps(d) + "\n")
        by_k = {}
        for i, q in enumerate(test):
            k = a.shots
            while True:  # the C harness's rule: drop the last example while the request does not fit
                p = mmlu_prompt(sub, dev, k, q)
                ctx = tok(p).input_ids
                fit = all(len(ctx) + len(tok(p + " " + L).input_ids) - len(ctx) - 1 <= max_length for L in "ABCD")
                if fit or k == 0:
                    break
                k -= 1
            by_k.setdefault(k, []).append((i, q, p))
        for k, qs in sorted(by_k.items()):
            name = f"ref_mmlu_{sub}_k{k}"
            tf = os.path.join(tmp, f"{name}.jsonl")
            with open(tf, "w", encoding="utf-8") as f:
                for _, q, _ in qs:
                    f.write(json.dumps(q) + "\n")
            desc = f"The following are multiple choice questions (with answers) about {sub.replace('_', ' ')}.\n\n"
            with open(os.path.join(tmp, f"{name}.yaml"), "w") as f:
                f.write(f"include: {os.path.join(LMEVAL_TASKS, 'mmlu/default/_default_template_yaml')}\n"
                        f"task: {name}\ndataset_path: json\ndataset_name: null\n"
                        f"dataset_kwargs:\n  data_files:\n    test: {tf}\n    dev: {devf}\n"
                        f"test_split: test\nfewshot_split: dev\nnum_fewshot: {k}\ndescription: {yaml_str(desc)}\n")
            names.append(name)
            meta[name] = ("mmlu", sub, k)
            mmlu_k[name] = qs

    tm = lm_eval.tasks.TaskManager(include_path=tmp)
    out = lm_eval.evaluator.simple_evaluate(
        model="hf", model_args=f"pretrained={a.model},dtype=float32,add_bos_token=True", tasks=names,
        task_manager=tm, batch_size=1, device="cpu", log_samples=True, bootstrap_iters=0, random_seed=0,
        numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)

    fx = {"lm_eval": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.9.1",
          "transformers": transformers.__version__, "model": a.model,
          "model_args": "dtype=float32,add_bos_token=True,batch_size=1,device=cpu", "max_length": max_length,
          "tasks": {}, "mmlu": []}
    for name in names:
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        kind = meta[name][0]
        if kind == "mc":
            task = meta[name][1]
            items = []
            for s in samples:
                args = [list(x) for x in s["arguments"]]
                ctxs = [c for c, _ in args]
                it = {"ctx": ctxs[0] if len(set(ctxs)) == 1 else ctxs, "cont": [k for _, k in args],
                      "ll": [r[0] for r in s["filtered_resps"]],
                      # winogrande's target is the shared continuation; its gold is the doc's answer
                      "gold": int(s["doc"]["answer"]) - 1 if task == "winogrande" else int(s["target"]),
                      "acc": s["acc"]}
                if "acc_norm" in s:
                    it["acc_norm"] = s["acc_norm"]
                items.append(it)
            r = out["results"][name]
            fx["tasks"][task] = {"source": meta[name][2], "n": len(items), "acc": r["acc,none"],
                                 "acc_norm": r.get("acc_norm,none"), "items": items}
        else:
            _, sub, k = meta[name]
            for s, (i, q, p) in zip(samples, mmlu_k[name]):
                ctx = s["arguments"][0][0]
                if ctx != p:
                    sys.exit(f"MMLU prompt mismatch for {sub} question {i}:\nlm-eval: {ctx!r}\nmine:    {p!r}")
                fx["mmlu"].append({"subject": sub, "index": i, "shots": k, "ctx": ctx,
                                   "cont": [c for _, c in s["arguments"]],
                                   "ll": [r[0] for r in s["filtered_resps"]], "gold": int(s["target"]),
                                   "acc": s["acc"]})
    fx["mmlu"].sort(key=lambda x: (MMLU_SUBJECTS.index(x["subject"]), x["index"]))
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(fx, f, indent=0, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {a.out}: " + ", ".join(f"{t} {v['n']} items acc {v['acc']:.4f}" for t, v in fx["tasks"].items())
          + f"; mmlu {len(fx['mmlu'])} questions")


if __name__ == "__main__":
    main()
