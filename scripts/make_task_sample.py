#!/usr/bin/env python3
"""Writes data/tasks/ (and data/text/wikitext-2-raw/wiki.test.sample.raw): the small evaluation sample
that ships with the repo, so `dlqat eval` runs in a clone without ../shared. Cut from the shared copies
(see data/tasks/README.md for sources and licences), byte for byte per item:

  <task>/test.json        the first N (100) items of ../shared/data/tasks/<task>/test_shared.json
                          (LLM-Adapters JSON list, re-serialised with indent 4 like the source)
  mmlu/dev/*.csv          the whole dev split (5 few-shot exemplars per subject), copied
  mmlu/test/*.csv         the first M (10) records of each subject's test CSV (records, not lines:
                          questions may span lines)
  mmlu/LICENSE            copied
  ../text/wikitext-2-raw/wiki.test.sample.raw   the first ~120 KB of wiki.test.raw.part1, cut at an
                          article heading (" = Name = ")

    python3 scripts/make_task_sample.py [--shared ../shared] [--n 100] [--mmlu 10]
"""
import argparse
import csv
import io
import json
import os
import shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--mmlu", type=int, default=10)
    a = ap.parse_args()
    src = os.path.join(a.shared, "data", "tasks")
    out = os.path.join(ROOT, "data", "tasks")
    for t in sorted(os.listdir(src)):
        p = os.path.join(src, t, "test_shared.json")
        if not os.path.isfile(p):
            continue
        items = json.load(open(p, encoding="utf-8"))[:a.n]
        os.makedirs(os.path.join(out, t), exist_ok=True)
        with open(os.path.join(out, t, "test.json"), "w", encoding="utf-8") as f:
            json.dump(items, f, indent=4, ensure_ascii=False)
            f.write("\n")
        print(t, len(items))
    m = os.path.join(src, "mmlu")
    shutil.rmtree(os.path.join(out, "mmlu"), ignore_errors=True)
    shutil.copytree(os.path.join(m, "dev"), os.path.join(out, "mmlu", "dev"))
    shutil.copy(os.path.join(m, "LICENSE"), os.path.join(out, "mmlu", "LICENSE"))
    os.makedirs(os.path.join(out, "mmlu", "test"))
    for fn in sorted(os.listdir(os.path.join(m, "test"))):
        rows = list(csv.reader(open(os.path.join(m, "test", fn), encoding="utf-8", newline="")))[:a.mmlu]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        open(os.path.join(out, "mmlu", "test", fn), "w", encoding="utf-8", newline="").write(buf.getvalue())
    print("mmlu: dev", len(os.listdir(os.path.join(out, "mmlu", "dev"))), "subjects; test", a.mmlu, "per subject")
    w = open(os.path.join(a.shared, "data", "text", "wikitext-2-raw", "wiki.test.raw.part1"), "rb").read()
    cut = w.index(b"\r\n = ", 120000) + 2
    os.makedirs(os.path.join(ROOT, "data", "text", "wikitext-2-raw"), exist_ok=True)
    open(os.path.join(ROOT, "data", "text", "wikitext-2-raw", "wiki.test.sample.raw"), "wb").write(w[:cut])
    print("wikitext-2 sample:", cut, "bytes")


if __name__ == "__main__":
    main()
