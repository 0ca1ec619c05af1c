#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the real bitsandbytes checkpoints of this folder: 4-bit weights saved after a forward pass
on the CPU, which repacks them (docs/bnb-cpu-packed.md), with the values they must dequantize to.

Made with torch 2.9.1 and bitsandbytes 0.50.2 (its Python code is that of the 0.50.1 tag) on an
x86-64 CPU with AVX-512-BF16 (the repacking needs it):

    python3 make_vectors.py OUT_FOLDER

For each case a `bnb.nn.Linear4bit` in eval mode is quantized on the CPU, runs one forward pass with
a bfloat16 input (which repacks it) and is saved through `state_dict()`, as transformers'
`save_pretrained` does. Per case NAME:
  NAME.safetensors           the module's state_dict after the forward pass (tensors "l.weight...")
  NAME.expected.safetensors  "l.weight": the values it must dequantize to, in the weight's dtype
Expected values: without double quantization, bitsandbytes' dequantize_4bit of the state the module
had before the forward pass with its absmax rounded to bfloat16 (the values its packed CPU kernel
computes with); with double quantization, bitsandbytes' own dequantize_4bit of the saved state as
QuantState.from_dict reloads it. Exits non-zero if the case did not repack, or if the saved
non-double-quantized absmax read in memory order (as bitsandbytes' reload reads it) gives the same
values (then the case would not tell the two readings apart).
"""
import logging
import os
import sys

import torch
from safetensors.torch import save_file

import bitsandbytes as bnb
import bitsandbytes.functional as F
from bitsandbytes.nn import Linear4bit, Params4bit

logging.disable(logging.WARNING)
CASES = [  # name, rows N, columns K, quant type, blocksize, double quant, dtype
    ("nf4_bf16", 64, 128, "nf4", 64, False, torch.bfloat16),
    ("fp4_f16_b128", 32, 256, "fp4", 128, False, torch.float16),
    ("nf4_bf16_dq", 32, 256, "nf4", 64, True, torch.bfloat16),
    ("nf4_f16_dq", 32, 256, "nf4", 64, True, torch.float16),
    ("fp4_f32_dq", 32, 128, "fp4", 32, True, torch.float32),
]


def state_of(sd):
    return F.QuantState.from_dict({k[len("l.weight."):]: v.clone() for k, v in sd.items() if k.startswith("l.weight.")}, device=torch.device("cpu"))


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(18)
    for name, n, k, qt, bs, dq, dt in CASES:
        lin = Linear4bit(k, n, bias=False, compute_dtype=torch.bfloat16, compress_statistics=dq, quant_type=qt)
        w = (torch.randn(n, k) * 0.02).to(dt)
        lin.weight = Params4bit(w, requires_grad=False, compress_statistics=dq, quant_type=qt, blocksize=bs, module=lin)
        lin = lin.to("cpu").eval()
        mod = torch.nn.Module()
        mod.l = lin
        before = {kk: v.clone() for kk, v in mod.state_dict().items()}
        with torch.no_grad():
            lin(torch.randn(2, k, dtype=torch.bfloat16))
        if not getattr(lin.weight.quant_state, "packing_format_for_cpu", False):
            sys.exit(f"{name}: the forward pass did not repack the weight (no AVX-512-BF16?)")
        after = {kk: v.detach().clone().contiguous() for kk, v in mod.state_dict().items()}
        if dq:
            expected = F.dequantize_4bit(after["l.weight"], state_of(after))
        else:
            st = state_of(before)
            st.absmax = st.absmax.to(torch.bfloat16).float()
            expected = F.dequantize_4bit(before["l.weight"], st)
            misread = F.dequantize_4bit(after["l.weight"], state_of(after))
            if torch.equal(misread, expected):
                sys.exit(f"{name}: reading absmax in memory order gives the same values")
        save_file(after, os.path.join(out, name + ".safetensors"), metadata={"format": "pt"})
        save_file({"l.weight": expected.contiguous()}, os.path.join(out, name + ".expected.safetensors"), metadata={"format": "pt"})
        print(name, {kk: (str(v.dtype), tuple(v.shape)) for kk, v in after.items() if "quant_state" not in kk})


if __name__ == "__main__":
    print("torch", torch.__version__, "bitsandbytes", bnb.__version__)
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
