#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes this folder's vectors: float32 input whose NF4 / FP4 codes differ between bitsandbytes'
CUDA rule and its CPU rule, with the codes and absmax bitsandbytes' CPU backend gives.

Made with torch 2.9.1 and bitsandbytes 0.50.2 (Python code as at its 0.50.1 tag) on x86-64:

    python3 make_vectors.py OUT_FOLDER

bitsandbytes' CPU quantize_4bit is its default backend's (backends/default/ops.py, 0.50.x).
N = 64 * 40 + 37 values (block 64; the last block partial, N odd):
  block 0: the block max 1.0 (so x / absmax = x), the float32 midpoints between sorted table
           values and the CUDA thresholds of both formats; block 4: the same, negated;
  block 1: max 1.0, tiny values (+-1e-3, +-1e-4), -0.0, +-0.0026 and their neighbours;
  block 2: all zeros;  block 3: max 1e-39 (a subnormal absmax);
  the rest (and the partial block): normal(0, 0.02), with a power-of-two max in every other block.
Files (little-endian): x.f32 (N), nf4.codes.u8 / fp4.codes.u8 ((N + 1) / 2 packed bytes, high
nibble first), nf4.absmax.f32 / fp4.absmax.f32 (41).
"""
import os
import sys

import numpy as np
import torch

import bitsandbytes as bnb
import bitsandbytes.functional as F

BS, FULL, TAIL = 64, 40, 37
NF4 = [0xBF800000, 0xBF3239B1, 0xBF066B30, 0xBECA32A0, 0xBE91A24D, 0xBE3D353F, 0xBDBA7871, 0x00000000,
       0x3DA2FAFF, 0x3E24CAE3, 0x3E7C04DD, 0x3EAD033A, 0x3EE1A4B8, 0x3F1007AB, 0x3F3913B3, 0x3F800000]
NF4_T = [0xBF591CD9, 0xBF1C5270, 0xBEEB8480, 0xBEADEA76, 0xBE703CEC, 0xBE0D38BC, 0xBD3A7871, 0x3D22FAFF,
         0x3DF64863, 0x3E5067E0, 0x3E9582D4, 0x3EC753F9, 0x3F006D03, 0x3F248DAF, 0x3F5C89D9]
FP4_T = [0x3B2AAAB9, 0x3DB00000, 0x3E555555, 0x3E955555, 0x3ED55556, 0x3F155550, 0x3F555555]
FP4_MAG = [0.0, 1 / 192, 1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0]


def f(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def inputs(rng):
    nf4 = np.sort(f(NF4))
    fp4 = np.array(FP4_MAG, dtype=np.float32)
    special = list((nf4[:-1] + nf4[1:]) / np.float32(2)) + list(f(NF4_T)) + list((fp4[:-1] + fp4[1:]) / np.float32(2)) + list(f(FP4_T))
    special = np.array(special, dtype=np.float32)
    b0 = np.pad(np.concatenate([[1.0], special]).astype(np.float32), (0, BS - 1 - len(special)))
    b4 = np.pad(np.concatenate([[1.0], -special]).astype(np.float32), (0, BS - 1 - len(special)))
    t = np.float32(0.0026)
    tiny = [1e-3, -1e-3, 1e-4, -1e-4, -0.0, 0.0, t, -t, np.nextafter(t, 1), -np.nextafter(t, 1), np.nextafter(t, 0), -np.nextafter(t, 0)]
    b1 = np.pad(np.array([1.0] + tiny, dtype=np.float32), (0, BS - 1 - len(tiny)))
    b2 = np.zeros(BS, dtype=np.float32)
    b3 = (rng.standard_normal(BS) * 1e-40).astype(np.float32)
    b3[5] = np.float32(1e-39)
    rest = (rng.standard_normal(BS * (FULL - 5) + TAIL) * 0.02).astype(np.float32)
    for b in range(0, FULL - 5, 2):
        rest[b * BS + 7] = np.float32(0.125)
    return np.concatenate([b0, b1, b2, b3, b4, rest]).astype(np.float32)


def main(out):
    x = inputs(np.random.default_rng(0x18C4))
    os.makedirs(out, exist_ok=True)
    x.astype("<f4").tofile(os.path.join(out, "x.f32"))
    for qt in ("nf4", "fp4"):
        codes, state = F.quantize_4bit(torch.from_numpy(x.copy()), blocksize=BS, compress_statistics=False, quant_type=qt)
        codes.numpy().reshape(-1).astype(np.uint8).tofile(os.path.join(out, qt + ".codes.u8"))
        state.absmax.numpy().astype("<f4").tofile(os.path.join(out, qt + ".absmax.f32"))
        print(qt, "bytes", codes.numel(), "absmax", state.absmax.numel())


if __name__ == "__main__":
    print("torch", torch.__version__, "bitsandbytes", bnb.__version__)
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
