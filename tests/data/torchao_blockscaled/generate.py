#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Generates the torchao conformance vectors of lowbit's block-scaled formats (this folder).

Run with torch + torchao installed (CPU is enough):  python3 generate.py
Versions used for the committed files are in MANIFEST (first lines). Every case runs torchao's own
reference code on a float32 input:
  MX:    torchao.prototype.mx_formats.mx_tensor.to_mx(x, elem_dtype, 32, ScaleCalculationMode.X)
  NVFP4: torchao.prototype.mx_formats.nvfp4_tensor.nvfp4_quantize(x, 16, per_tensor_scale)
         with per_tensor_scale = per_tensor_amax_to_scale(max |x|) or None
and stores its codes (FP4 packed by torchao's pack_uint4, FP6 one code per byte as torchao keeps
them), its e8m0 / e4m3 scales and the per-tensor float32. The input avoids the cases where torchao
0.18.0 is known to differ from lowbit's definitions (docs/formats.md, "Differences from the
peers"): no tile's scale is 2^-127, no Inf, every tile's amax at least 2^-100.
MANIFEST lines: name format rule nvfp4_convention rows cols input codes scales global_bits_hex
"""
import os
import sys

import numpy as np
import torch
import torchao
from torchao.prototype.mx_formats.config import ScaleCalculationMode
from torchao.prototype.mx_formats.constants import DTYPE_FP6_E2M3, DTYPE_FP6_E3M2
from torchao.prototype.mx_formats.mx_tensor import to_mx
from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize, per_tensor_amax_to_scale

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS, COLS = 8, 64


def make_input(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((ROWS, COLS)) * np.exp2(rng.integers(-24, 24, (ROWS, 1)))).astype(np.float32)
    # row 0: e2m1 / e2m3 / e4m3 code values and midpoints between them (ties), amax 448 per tile
    ties = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 0.0625, 0.1875, 7.25, 13.0, 26.0, 104.0, 416.0], np.float32)
    x[0, :ties.size] = ties
    x[0, 32:32 + ties.size] = -ties
    x[0, 31] = 448.0
    x[0, 63] = -448.0
    return x


def main():
    torch.manual_seed(0)
    x = make_input(0x10b17)
    x.tofile(os.path.join(HERE, "input_8x64.f32"))
    xt = torch.from_numpy(x.copy())
    lines = ["# torch %s torchao %s numpy %s python %s" % (torch.__version__, torchao.__version__, np.__version__, sys.version.split()[0])]
    elems = [("mxfp8_e4m3", torch.float8_e4m3fn), ("mxfp8_e5m2", torch.float8_e5m2), ("mxfp6_e2m3", DTYPE_FP6_E2M3),
             ("mxfp6_e3m2", DTYPE_FP6_E3M2), ("mxfp4", torch.float4_e2m1fn_x2)]
    modes = [("floor", ScaleCalculationMode.FLOOR), ("ceil", ScaleCalculationMode.CEIL), ("even", ScaleCalculationMode.EVEN),
             ("rceil", ScaleCalculationMode.RCEIL)]
    for fmt, dt in elems:
        for rule, mode in modes:
            scale, data = to_mx(xt, dt, 32, mode)
            name = "%s_%s" % (fmt, rule)
            data.view(torch.uint8).numpy().tofile(os.path.join(HERE, name + ".codes"))
            scale.view(torch.uint8).numpy().tofile(os.path.join(HERE, name + ".scales"))
            lines.append("%s %s %s none %d %d input_8x64.f32 %s.codes %s.scales 3f800000" % (name, fmt, rule, ROWS, COLS, name, name))
    for conv in ("scale", "none"):
        pts = per_tensor_amax_to_scale(xt.abs().max()) if conv == "scale" else None
        scale, data = nvfp4_quantize(xt, 16, pts)
        name = "nvfp4_%s" % conv
        data.view(torch.uint8).numpy().tofile(os.path.join(HERE, name + ".codes"))
        scale.view(torch.uint8).numpy().tofile(os.path.join(HERE, name + ".scales"))
        g = np.float32(pts.item() if pts is not None else 1.0).view(np.uint32)
        lines.append("%s nvfp4 floor %s %d %d input_8x64.f32 %s.codes %s.scales %08x" % (name, conv, ROWS, COLS, name, name, g))
    with open(os.path.join(HERE, "MANIFEST"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
