#!/usr/bin/python3
"""Writes the SentencePiece-BPE tokenizer fixtures for tests/test_tokenizer_spm.c.

Expected ids come from Debian's python3-sentencepiece (run with /usr/bin/python3):

  tests/fixtures/tokenizer/english-mix-7M.valid.ids.i32
      little-endian int32 ids of ../shared/data/text/english-mix/valid.txt
      encoded in ONE call without BOS (as `dlq ppl` does).
  tests/fixtures/tokenizer/english-mix-7M.valid.json
      {"text_bytes", "n_ids", "decode_equals_input", "sentencepiece"}
  tests/fixtures/tokenizer/spm_cases.json
      {"models": {name: [{"text_hex", "ids", "decoded_hex"}, ...]}} for
      english-mix-7M, llama2 (if ../shared is present) and spm-variant.
  tests/fixtures/tokenizer/spm-variant.model
      english-mix-7M's model with some pieces re-typed UNUSED and a few
      USER_DEFINED pieces appended (exercises resegmentation / user pieces).

Usage: /usr/bin/python3 scripts/gen_spm_fixture.py [--shared ../shared]
Deterministic: no randomness, output depends only on the inputs.
"""
import argparse
import json
import os
import random
import struct
import sys

import sentencepiece as spm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

CASES = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\t\n", " \n ", "a", " a", "a ", "  a  b  ",
    "Hello world", " Hello world", "Hello World!", "Hello, world!\nHow are you?\n",
    "trailing spaces   ", "   leading spaces", "multiple   inner    spaces",
    "tabs\tand\ttabs", "line1\r\nline2\rline3", "digits 0123456789 3.14159 1,000,000",
    "2024-01-01T12:34:56Z", "x = a[i] + b[j] * (c - d) / e;",
    "<s>", "</s>", "<unk>", "<s>Hello</s>", "<0x41>", "\u2581", "\u2581\u2581 x",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9", "e\u0301 a\u0308 n\u0303",  # combining marks
    "\u4e2d\u6587\u5b57\u7b26 \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4",  # CJK
    "emoji \U0001F999 \U0001F600\U0001F44D\U0001F3FD \u2764\ufe0f",
    "\u043f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440",
    "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd",
    "\u00a0nbsp\u2003emspace\u200bzwsp",
    "\x00\x01\x02 control \x7f",
    "ied 4 \u00bd months", "F\u00fchrer",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "CHAPTER 5. Breakfast.\n\nI quickly followed suit,",
    "Mr. Speaker, Mr. President, Members of Congress",
    "Once upon a time, there was a little girl named Lily.",
    "\U0010FFFF \uFFFD \uFFFF",
]
# invalid UTF-8 (sentencepiece replaces each bad byte by U+FFFD)
BYTE_CASES = [b"a\xffb", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\xf4\x90\x80\x80!"]
# extra cases for the variant model (user-defined pieces)
VARIANT_CASES = ["<tag>hello</tag>", "a@@b @@ c", "x<tag><tag>y", "no tags here", "the thing that is"]


def random_cases(seed=1234, count=60):
    """Seeded random strings: words, runs of spaces, newlines, digits, unicode."""
    rng = random.Random(seed)
    atoms = ["the", "and", "of", "whale", "ship", "Congress", "Lily", "ing", "ed", "er", " ", "  ", "   ",
             "\n", "\n\n", "\t", ".", ",", "'", "\"", "-", "0", "7", "42", "1999", "\u00e9", "\u00fc",
             "\u4e2d", "\U0001F999", "\u0301", "\u2581", "<s>", "\r\n", "A", "Z", "q", "x"]
    out = []
    for _ in range(count):
        n = rng.randint(1, 40)
        s = "".join(rng.choice(atoms) for _ in range(n))
        b = s.encode("utf-8")
        if rng.random() < 0.15:
            i = rng.randint(0, len(b))
            b = b[:i] + bytes([rng.randint(0x80, 0xFF)]) + b[i:]
        out.append(b)
    return out


def cases_for(sp, extra=()):
    out = []
    for c in list(CASES) + list(extra) + list(BYTE_CASES) + random_cases():
        b = c if isinstance(c, bytes) else c.encode("utf-8")
        ids = sp.encode(b)
        dec = sp.decode(ids).encode("utf-8")
        out.append({"text_hex": b.hex(), "ids": ids, "decoded_hex": dec.hex()})
    return out


# --- minimal protobuf writer/reader for the variant model -------------------
def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def enc_varint(v):
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def fields(b):
    i, out = 0, []
    while i < len(b):
        k, j = varint(b, i)
        f, w = k >> 3, k & 7
        if w == 0:
            _, j = varint(b, j)
        elif w == 1:
            j += 8
        elif w == 5:
            j += 4
        elif w == 2:
            n, j = varint(b, j)
            j += n
        else:
            raise ValueError("wire type %d" % w)
        out.append((f, w, b[i:j]))
        i = j
    return out


def piece_msg(piece, score, typ):
    p = piece.encode("utf-8")
    return b"\x0a" + enc_varint(len(p)) + p + b"\x15" + struct.pack("<f", score) + b"\x18" + enc_varint(typ)


def make_variant(src, dst):
    data = open(src, "rb").read()
    unused = {"ing", "\u2581the", "er", "\u2581and", "ed", "\u2581of"}
    out = bytearray()
    for f, w, raw in fields(data):
        if f == 1:
            # raw = key + len + message
            _, j = varint(raw, 0)
            n, j = varint(raw, j)
            msg = raw[j:j + n]
            piece = score = None
            typ = 1
            for ff, ww, r2 in fields(msg):
                if ff == 1:
                    _, q = varint(r2, 0)
                    ln, q = varint(r2, q)
                    piece = r2[q:q + ln].decode("utf-8")
                elif ff == 2:
                    score = struct.unpack("<f", r2[1:5])[0]
                elif ff == 3:
                    typ = varint(r2, 1)[0]
            if piece in unused:
                typ = 5
            m = piece_msg(piece, score, typ)
            out += b"\x0a" + enc_varint(len(m)) + m
        else:
            out += raw
    # append user-defined pieces after the vocabulary (ids follow field-1 order)
    pieces = [r for f, w, r in fields(bytes(out)) if f == 1]
    specs = [r for f, w, r in fields(bytes(out)) if f != 1]
    for ud in ["<tag>", "</tag>", "@@"]:
        m = piece_msg(ud, 0.0, 4)
        pieces.append(b"\x0a" + enc_varint(len(m)) + m)
    with open(dst, "wb") as fh:
        fh.write(b"".join(pieces) + b"".join(specs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    fixture_model = os.path.join(ROOT, "models", "english-mix-7M", "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=fixture_model)
    models = {"english-mix-7M": cases_for(sp)}

    variant = os.path.join(OUT, "spm-variant.model")
    make_variant(fixture_model, variant)
    spv = spm.SentencePieceProcessor(model_file=variant)
    models["spm-variant"] = cases_for(spv, VARIANT_CASES)

    tok512 = os.path.join(ROOT, "models", "stories260K", "tok512.model")
    sp512 = spm.SentencePieceProcessor(model_file=tok512)
    models["tok512"] = cases_for(sp512)

    llama = os.path.join(a.shared, "data", "models", "llama2-tokenizer", "tokenizer.model")
    if os.path.exists(llama):
        models["llama2"] = cases_for(spm.SentencePieceProcessor(model_file=llama))
    else:
        print("note: %s absent, llama2 cases not written" % llama, file=sys.stderr)

    with open(os.path.join(OUT, "spm_cases.json"), "w") as fh:
        json.dump({"sentencepiece": spm.__version__, "models": models}, fh, separators=(",", ":"))
        fh.write("\n")

    # stories260K's tokenizer on the shipped TinyStories evaluation text
    ts = os.path.join(ROOT, "data", "sample", "tinystories-eval.txt")
    raw = open(ts, "rb").read()
    ids = sp512.encode(raw.decode("utf-8"))
    with open(os.path.join(OUT, "tok512.tinystories-eval.ids.i32"), "wb") as fh:
        fh.write(struct.pack("<%di" % len(ids), *ids))
    print("tinystories-eval.txt: %d bytes -> %d ids (tok512)" % (len(raw), len(ids)))

    valid = os.path.join(a.shared, "data", "text", "english-mix", "valid.txt")
    if os.path.exists(valid):
        raw = open(valid, "rb").read()
        ids = sp.encode(raw)
        dec = sp.decode(ids).encode("utf-8")
        with open(os.path.join(OUT, "english-mix-7M.valid.ids.i32"), "wb") as fh:
            fh.write(struct.pack("<%di" % len(ids), *ids))
        with open(os.path.join(OUT, "english-mix-7M.valid.json"), "w") as fh:
            json.dump({"text_bytes": len(raw), "n_ids": len(ids), "decode_equals_input": dec == raw,
                       "sentencepiece": spm.__version__}, fh)
            fh.write("\n")
        print("valid.txt: %d bytes -> %d ids" % (len(raw), len(ids)))
    else:
        print("note: %s absent, valid.txt ids not written" % valid, file=sys.stderr)


if __name__ == "__main__":
    main()
