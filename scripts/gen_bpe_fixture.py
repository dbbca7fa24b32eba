#!/usr/bin/env python3
"""Generate the byte-level BPE test fixtures in tests/fixtures/tokenizer/.

Run from the repository root with the project venv:

    .venv/bin/python scripts/gen_bpe_fixture.py [--shared ../shared]

Needs the PyPI packages `tokenizers` and `regex`, and the shared data folder
(../shared/data/text/english-mix/train.txt for training text, the llama.cpp
vocab test inputs ../shared/data/models/gguf-vocab/*.inp).

Writes
  bpe-gpt2/tokenizer.json     byte-level BPE (vocab 1000) trained by HF tokenizers
                              on the first 200 KB of english-mix; ByteLevel
                              pre-tokenizer (GPT-2 regex); merges in the old
                              "a b" string form; added tokens <|endoftext|>,
                              <|im_start|> (special), <mask> (special, lstrip),
                              [NEWTOKEN] (not special)
  bpe-gpt2-prefix/tokenizer.json  same with ByteLevel(add_prefix_space=true)
  bpe-llama3/tokenizer.json   trained with Llama 3's Split regex +
                              ByteLevel(use_regex=false) as Llama 3 ships it,
                              ignore_merges=true, merges in the [a, b] pair
                              form, a few extra vocab pieces no merge reaches
                              (so ignore_merges matters), <|begin_of_text|>
                              BOS template
  bpe-qwen2/tokenizer.json    same with Qwen2's regex (single digits)
  bpe-cases.json              {name: [{"text", "ids", "decoded"}]}: ids from
                              HF tokenizers (Tokenizer.from_file of the saved
                              file, add_special_tokens=False), decoded =
                              decode(ids, skip_special_tokens=True)
  bpe-splits.json             {"gpt2"|"llama3"|"qwen2": [[text, [pieces]]]}: the
                              regex module's findall of each pre-tokenizer
                              regex (cross-checked against HF's Split)
Deterministic: fixed training text and seeds.
"""
import argparse
import json
import os
import random

import regex
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
            r"|\s*[\r\n]+|\s+(?!\S)|\s+")
REGEXES = {"gpt2": GPT2_RE, "llama3": LLAMA3_RE, "qwen2": QWEN2_RE}

OUT = "tests/fixtures/tokenizer"


def read_vocab_inputs(path):
    """llama.cpp test-tokenizer-0 convention: the file is a sequence of
    `text + "\\n__ggml_vocab_test__\\n"`; split on that separator."""
    with open(path, encoding="utf-8", newline="") as f:
        raw = f.read()
    parts = raw.split("\n__ggml_vocab_test__\n")
    if parts and parts[-1] == "":
        parts.pop()
    return parts


HAND = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\n\n\n", "\t\n", " \n", "\n ", "  \n  x", "a  b", "a   b ",
    "a\t\tb", "a \t b", "x\r\ny", "x\r\n\r\n  y", "x \r\n", "end   ", "Hello world", " Hello world",
    "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～", "it's don't I'M we'Re they'VE he'LL she'D 'S",
    "'s 'sa ''s '  's", "'ſ 'ſt", "3", "33", "333", "3333", "33333", "1234567890", "١٢٣٤٥ ½ Ⅻ ²",
    "w048 7tuijk dsdfhu", "нещо на Български", "Cửa Việt", "Führer", "ied 4 ½ months",
    "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅", "日本語のテキスト、中文文本。",
    "한국어 텍스트", "עברית ערבית العربية", "e\u0301 combining", "a\u00a0b\u3000c\u2028d\u0085e\u000bf\u000cg\u001ch",
    "(abc) [def] {ghi} <jkl>", "...!!!???", " ...abc", "..abc", ".abc", "x.\n\ny", "a)\n\n\n b", "$100.00 + 5%",
    "snake_case and camelCase and kebab-case", "e-mail: foo@bar.com, http://x.y/z?q=1&r=2",
    "def f(x):\n    return x  # comment\n\n\n", "    Hello\n    Hello", "\n =", "' era", " discards",
    "<|endoftext|>", "a<|endoftext|>b", "Hello <|endoftext|> world", "<|im_start|>user\nhi<|endoftext|>",
    "x <mask> y", "x   <mask>", "[NEWTOKEN]", "a[NEWTOKEN]b", "<|begin_of_text|>Hi<|end_of_text|>",
    "<|endoftext", "<|endoftext|><|endoftext|>", "the zebra quagga", "the zebra", " zebra",
    "Ǆ ǅ ǆ ß ẞ ﬃ", "\u0000nul?".replace("\u0000", ""), "tab\tsep\tvalues\t", "trailing space ",
]

# characters for random strings: letters / numbers / spaces / punctuation /
# marks from several scripts, all assigned since Unicode 6 (no version skew)
ALPHA = list("aZé ßſ中ё1٣½Ⅻ \t\n\r'sStTrReEvVmMlLdD.!-_(😀") + ["\u00a0", "\u3000", "\u2028", "\u0085",
                                                                "\u000b", "\u000c", "\u001c", "\u200d",
                                                                "\u0301", "  ", "\r\n", "'s", "'LL", "123"]


def random_strings(n, seed):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(ALPHA) for _ in range(k)))
    return out


def text_chunks(path, n, size, seed):
    with open(path, encoding="utf-8") as f:
        data = f.read()
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = rng.randrange(0, len(data) - size)
        out.append(data[a:a + size])
    return out


def split_pieces(name, text, hf_split):
    pieces = regex.findall(REGEXES[name], text)
    assert "".join(pieces) == text, (name, text)
    hf = [p for p, _ in hf_split.pre_tokenize_str(text)]
    if hf != pieces:
        raise SystemExit("regex and tokenizers disagree on %r: %r vs %r" % (text, pieces, hf))
    return pieces


def train(name, text, regex_str):
    tok = Tokenizer(models.BPE())
    if regex_str is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex_str), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>"] if name == "gpt2" else ["<|begin_of_text|>", "<|end_of_text|>"]
    trainer = trainers.BpeTrainer(vocab_size=1000, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text[i:i + 4096] for i in range(0, len(text), 4096)], trainer)
    return json.loads(tok.to_str())


def finish(js, name):
    """Post-edit the trained tokenizer.json into the shape the real models ship."""
    model = js["model"]
    vocab = model["vocab"]
    nxt = max(vocab.values()) + 1
    if name == "gpt2" or name == "gpt2-prefix":
        # old "a b" merge strings, as GPT-2's own tokenizer.json
        model["merges"] = [m if isinstance(m, str) else m[0] + " " + m[1] for m in model["merges"]]
        extra = [("<|im_start|>", True, False), ("<mask>", True, True), ("[NEWTOKEN]", False, False)]
        for content, special, lstrip in extra:
            js["added_tokens"].append({"id": nxt, "content": content, "single_word": False, "lstrip": lstrip,
                                       "rstrip": False, "normalized": not special, "special": special})
            nxt += 1
        js["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                                "use_regex": True}
        if name == "gpt2-prefix":
            js["pre_tokenizer"]["add_prefix_space"] = True
    else:
        model["merges"] = [m if isinstance(m, list) else m.split(" ", 1) for m in model["merges"]]
        model["ignore_merges"] = True
        # whole-word pieces that no merge builds: only ignore_merges reaches them
        for piece in ["Ġzebra", "Ġquagga", "zebra"]:
            if piece not in vocab:
                vocab[piece] = nxt
                nxt += 1
        bos = js["added_tokens"][0]
        js["post_processor"] = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": bos["content"], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": bos["content"], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": bos["content"], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {bos["content"]: {"id": bos["content"], "ids": [bos["id"]], "tokens": [bos["content"]]}}}]}
    return js


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    a = ap.parse_args()
    data = os.path.join(a.shared, "data")
    with open(os.path.join(data, "text/english-mix/train.txt"), "rb") as f:
        raw = f.read(200_000)
    train_text = raw.decode("utf-8", errors="ignore")
    vin = read_vocab_inputs(os.path.join(data, "models/gguf-vocab/ggml-vocab-llama-bpe.gguf.inp"))
    chunks = text_chunks(os.path.join(data, "text/english-mix/valid.txt"), 10, 500, 1)
    chunks += text_chunks(os.path.join(data, "text/wikitext-2-raw/wiki.test.raw.part1"), 6, 500, 2)
    rnd = random_strings(400, 3)
    os.makedirs(OUT, exist_ok=True)

    # 1. pre-tokenizer splits
    splits = {}
    for name, rx in REGEXES.items():
        hf_split = pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False)
        texts = vin + HAND + rnd + chunks[:6]
        splits[name] = [[t, split_pieces(name, t, hf_split)] for t in texts]
    with open(os.path.join(OUT, "bpe-splits.json"), "w", encoding="utf-8") as f:
        json.dump(splits, f, ensure_ascii=False, indent=0)

    # 2. trained tokenizers and their encodings
    cases = {}
    base = {"gpt2": train("gpt2", train_text, None),
            "llama3": train("llama3", train_text, LLAMA3_RE),
            "qwen2": train("qwen2", train_text, QWEN2_RE)}
    base["gpt2-prefix"] = json.loads(json.dumps(base["gpt2"]))
    texts = vin + HAND + rnd[:120] + chunks
    for name in ["gpt2", "gpt2-prefix", "llama3", "qwen2"]:
        js = finish(base[name], name)
        d = os.path.join(OUT, "bpe-" + name)
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "tokenizer.json")
        with open(p, "w", encoding="utf-8") as f:
            json.dump(js, f, ensure_ascii=False, separators=(",", ":"))
        tok = Tokenizer.from_file(p)
        out = []
        for t in texts:
            ids = tok.encode(t, add_special_tokens=False).ids
            out.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True)})
        cases[name] = out
        print(name, os.path.getsize(p), "bytes,", tok.get_vocab_size(), "tokens")
    with open(os.path.join(OUT, "bpe-cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, separators=(",", ":"))
    for n in ["bpe-splits.json", "bpe-cases.json"]:
        print(n, os.path.getsize(os.path.join(OUT, n)), "bytes")


if __name__ == "__main__":
    main()
