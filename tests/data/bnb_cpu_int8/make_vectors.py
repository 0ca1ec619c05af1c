#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes this folder's vectors: float16 rows whose LLM.int8 codes depend on how the multiplier
127 / absmax is rounded, with the codes and row absmax bitsandbytes' CPU backend gives them.

Made with torch 2.9.1 and bitsandbytes 0.50.2 (Python code as at its 0.50.1 tag) on x86-64:

    python3 make_vectors.py OUT_FOLDER

bitsandbytes' CPU `int8_vectorwise_quant` is its default backend's (backends/default/ops.py):
`torch.round(A * (127.0 / row_stats))`, where torch evaluates `127.0 / t` as
`t.reciprocal() * 127.0`. Each row has an absmax `a` for which f32(127 * f32(1 / a)) differs from
f32(127 / a), and values x whose codes differ between the two (x * inv within an ulp of k + 0.5),
found by trying every float16 below `a`; random signs.
Files (little-endian, row-major, ROWS x COLS = 64 x 64):
  x.f16      the input
  codes.i8   bitsandbytes' codes (torch.ops.bitsandbytes.int8_vectorwise_quant on the CPU)
  scb.f32    bitsandbytes' row absmax
"""
import os
import sys

import numpy as np
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F

ROWS, COLS = 64, 64


def rows(rng):
    h = np.arange(0x0400, 0x7C00, dtype=np.uint16).view(np.float16)  # positive normal float16
    out = []
    while len(out) < ROWS:
        a = np.float16(rng.uniform(0.01, 4.0))
        a32 = np.float32(a)
        quotient = np.float32(127) / a32
        reciprocal = np.float32(np.float32(1) / a32) * np.float32(127)
        if quotient == reciprocal:
            continue
        xs = h[h < a].astype(np.float32)
        differ = xs[np.rint(xs * quotient) != np.rint(xs * reciprocal)]
        if len(differ) == 0:
            continue
        picks = rng.choice(differ, size=COLS - 1, replace=len(differ) < COLS - 1)
        signs = np.where(rng.random(COLS - 1) < 0.5, -1, 1).astype(np.float32)
        row = np.concatenate([[a32], picks * signs]).astype(np.float16)
        rng.shuffle(row)
        out.append(row)
    return np.stack(out)


def main(out):
    rng = np.random.default_rng(0x18C)
    x = rows(rng)
    codes, scb, _ = F.int8_vectorwise_quant(torch.from_numpy(x.copy()))
    codes, scb = codes.numpy(), scb.numpy()
    quotient = np.rint(x.astype(np.float32) * (np.float32(127) / scb)[:, None]).astype(np.int8)
    print("codes that differ from the quotient rule:", int((codes != quotient).sum()), "of", codes.size)
    os.makedirs(out, exist_ok=True)
    x.astype("<f2").tofile(os.path.join(out, "x.f16"))
    codes.astype("i1").tofile(os.path.join(out, "codes.i8"))
    scb.astype("<f4").tofile(os.path.join(out, "scb.f32"))


if __name__ == "__main__":
    print("torch", torch.__version__, "bitsandbytes", bnb.__version__)
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
