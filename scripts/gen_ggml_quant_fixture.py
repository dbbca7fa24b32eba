#!/usr/bin/env python3
"""Reference ggml quant blocks made by the Python gguf package (llama.cpp's gguf-py).

    .venv/bin/python scripts/gen_ggml_quant_fixture.py [--out tests/fixtures/gguf]

For each type, writes quant_<TYPE>.bin (raw blocks), quant_<TYPE>.f32 (what gguf.quants.dequantize
returns for them, little-endian float32) and, for the types gguf-py can quantize (Q4_0, Q4_1, Q5_0,
Q5_1, Q8_0), quant_<TYPE>.src.f32 (the float32 input that gguf.quants.quantize turned into the blocks).
Q2_K / Q3_K: gguf-py only dequantizes them, so the blocks are random bytes with sane fp16 scales
(every bit pattern of qs / scales / hmask is a valid block).
tests/test_export.c checks our decoders against the .f32 files and our encoders against the bytes.
Also writes quant_tensors.gguf with gguf.GGUFWriter: one 2-D tensor per type ("t.<TYPE>", the
blocks above as rows of 64 values for the 32-blocks and 256 for the K-quants), read back by our
GGUF reader in the same test.
"""
import argparse
import os

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

SEED = 1234


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/gguf")
    a = ap.parse_args()
    rng = np.random.default_rng(SEED)
    os.makedirs(a.out, exist_ok=True)
    tensors = []
    for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
        qt = T[name]
        # 8 blocks of 32: Gaussian weights at a few scales, one constant block, one block of zeros
        x = (rng.standard_normal((8, 32)) * np.array([0.02, 0.05, 1.0, 3.0, 0.001, 0.1, 0.5, 0.01])[:, None]).astype(np.float32)
        x[5, :] = 0.25
        x[6, :] = 0.0
        x = x.reshape(-1)
        q = gguf.quants.quantize(x, qt)
        y = gguf.quants.dequantize(q, qt).astype(np.float32)
        x.astype("<f4").tofile(os.path.join(a.out, f"quant_{name}.src.f32"))
        q.tofile(os.path.join(a.out, f"quant_{name}.bin"))
        y.astype("<f4").tofile(os.path.join(a.out, f"quant_{name}.f32"))
        tensors.append((name, qt, q.reshape(4, -1)))
        print(name, q.nbytes, "bytes", y.size, "values")
    for name, nbytes, dofs in [("Q2_K", 84, [80, 82]), ("Q3_K", 110, [108])]:
        qt = T[name]
        nb = 4
        blk = rng.integers(0, 256, size=(nb, nbytes), dtype=np.uint8)
        for b in range(nb):
            for o in dofs:
                blk[b, o:o + 2] = np.frombuffer(np.float16(rng.uniform(0.001, 0.05) * (1 if o == dofs[0] or b % 2 else -1)).tobytes(), np.uint8)
        y = gguf.quants.dequantize(blk.reshape(-1), qt).astype(np.float32)
        blk.tofile(os.path.join(a.out, f"quant_{name}.bin"))
        y.astype("<f4").tofile(os.path.join(a.out, f"quant_{name}.f32"))
        tensors.append((name, qt, blk.reshape(nb, -1)))
        print(name, blk.nbytes, "bytes", y.size, "values")
    w = gguf.GGUFWriter(os.path.join(a.out, "quant_tensors.gguf"), "llama")
    for name, qt, data in tensors:
        w.add_tensor(f"t.{name}", data, raw_dtype=qt)  # byte shape: gguf-py derives the element shape
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
