#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent check of lowbit's fine-grained FP8 checkpoint layout (numpy + json; ml_dtypes, when
installed, only cross-checks this file's own e4m3fn tables; no torch, no lowbit code). Written from
the format's documentation (docs/fp8-block.md and its sources: transformers' FineGrainedFP8Config
and FP8Linear, DeepSeek-V3 inference/kernel.py weight_dequant / act_quant, the OCP FP8 E4M3 spec):

    X.weight            F8_E4M3 [N, K]
    X.weight_scale_inv  F32 (or BF16) [ceil(N / bn), ceil(K / bk)]
    w[n, k] = f32(e4m3(X.weight[n, k])) * X.weight_scale_inv[n // bn, k // bk]   (float32 product)
    quantization_config = {"quant_method": "fp8", "weight_block_size": [bn, bk], ...}
    quantize (DeepSeek-V3's rule): s = f32(amax(tile) / 448), code = RNE-saturating e4m3(f32(x / s));
    a tile with s == 0 stores 0 and codes +0 (lowbit's documented choice).

    fp8_block_interop.py --loader LOADER [--tool LOWBIT]

1. Writes DIR/py (model.safetensors + config.json): fine-grained FP8 weights with random codes
   (no NaN code) and random scales, with partial edge tiles, F32 and BF16 scales, block size of the
   config, and a dense tensor; plus DIR/src.safetensors (random F32 weights, with an outlier, a zero
   tile and partial edges) and DIR/block.txt.
2. Runs LOADER fp8_block DIR (tests/io/fp8_block_loader.cpp): lowbit dequantizes DIR/py into
   DIR/py_lowbit.safetensors and quantizes DIR/src.safetensors into the folder DIR/lowbit.
3. Checks: lowbit's dequantization equals this file's bit for bit; DIR/lowbit has exactly the
   layout (names, dtypes, shapes, config.json keys) and codes and scales equal to this file's own
   quantization bit for bit, and its dequantization is within half an e4m3 step of the input.
4. With --tool: `lowbit convert DIR/src.safetensors --to fp8-block` writes this file's codes and
   scales and prints error figures equal to this file's (max/mean |err| within 1e-3 relative,
   SQNR within 0.006 dB); `lowbit convert DIR/py --to safetensors-f32` writes this file's
   dequantization bit for bit, with no quantization_config.
Exit 0 pass, 1 fail, 77 skipped (numpy missing). LOWBIT_TEST_SEED sets the seed (printed on failure).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("[  SKIPPED ] numpy is not installed; fine-grained FP8 interop check not run")
    sys.exit(77)

from interop_common import arr, check, check_figures, finish, printed_figures, read_st, write_st  # noqa: E402

SEED = int(os.environ.get("LOWBIT_TEST_SEED", "0xf8b10c"), 0)


# ---- e4m3fn (OCP FP8 E4M3: bias 7, no infinities, S.1111.111 is NaN) -----------------------------
def e4m3_value(code):
    s = -1.0 if code & 0x80 else 1.0
    e = (code >> 3) & 0xF
    m = code & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (1 + m / 8.0) * 2.0 ** (e - 7)


E4M3 = np.array([e4m3_value(c) for c in range(256)], dtype=np.float32)
POS = E4M3[:127]  # codes 0x00..0x7E: 0 .. 448, increasing


def e4m3_encode(v):
    """float32 array -> e4m3fn codes: round to nearest, ties to even code, saturate to +-448."""
    v = np.asarray(v, dtype=np.float32)
    a = np.minimum(np.abs(v), np.float32(448.0))
    hi = np.searchsorted(POS, a, side="left")  # POS[hi] >= a
    hi = np.minimum(hi, 126)
    lo = np.maximum(hi - 1, 0)
    dlo = a.astype(np.float64) - POS[lo].astype(np.float64)
    dhi = POS[hi].astype(np.float64) - a.astype(np.float64)
    pick = np.where(POS[hi] == a, hi, np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi))))
    return (pick.astype(np.uint8) | np.where(np.signbit(v), 0x80, 0).astype(np.uint8)).astype(np.uint8)


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def dequant(codes, scales, bn, bk):
    n, k = codes.shape
    s = np.repeat(np.repeat(scales, bn, axis=0), bk, axis=1)[:n, :k]
    return (E4M3[codes] * s).astype(np.float32)  # one float32 product per element


def quant(x, bn, bk):
    n, k = x.shape
    gr, gc = -(-n // bn), -(-k // bk)
    codes = np.zeros((n, k), dtype=np.uint8)
    scales = np.zeros((gr, gc), dtype=np.float32)
    for i in range(gr):
        for j in range(gc):
            t = x[i * bn : (i + 1) * bn, j * bk : (j + 1) * bk]
            s = np.float32(np.max(np.abs(t))) / np.float32(448.0)
            scales[i, j] = s
            if s != 0:
                codes[i * bn : (i + 1) * bn, j * bk : (j + 1) * bk] = e4m3_encode((t / s).astype(np.float32))
    return codes, scales


def self_check(rng):
    """This file's tables against hand-worked codes, and against ml_dtypes when present."""
    check(E4M3[0x38] == 1.0 and E4M3[0x7E] == 448.0 and E4M3[0x01] == 2.0 ** -9 and E4M3[0xB8] == -1.0, "e4m3 hand values")
    check(np.isnan(E4M3[0x7F]) and np.isnan(E4M3[0xFF]), "e4m3 NaN codes")
    check(list(e4m3_encode(np.array([1.0625, 1.1875, 500.0, -1e-9, 2.0 ** -10], np.float32))) == [0x38, 0x3A, 0x7E, 0x80, 0x00],
          "e4m3 encode: ties to even, saturation, sign, underflow")
    try:
        import ml_dtypes
    except ImportError:
        print("note: ml_dtypes not installed; e4m3 tables checked by hand values only")
        return
    ref = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    check(np.array_equal(ref, E4M3, equal_nan=True), "decode table equals ml_dtypes.float8_e4m3fn")
    x = (rng.standard_normal(20000) * 100).astype(np.float32)
    x = np.clip(x, -448, 448)
    check(np.array_equal(x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8), e4m3_encode(x)), "encode equals ml_dtypes.float8_e4m3fn")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loader", required=True)
    ap.add_argument("--tool", help="the lowbit tool: also check `lowbit convert` to and from this layout")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    self_check(rng)
    with tempfile.TemporaryDirectory(prefix="lowbit_fp8_interop_") as d:
        # 1. a checkpoint lowbit must read: block [64, 32] from config.json
        bn, bk = 64, 32
        os.mkdir(os.path.join(d, "py"))
        tensors, expected = [], {}
        for name, (n, k), sdt in [("model.layers.0.mlp.up_proj.weight", (130, 70), "F32"),
                                  ("model.layers.0.mlp.down_proj.weight", (64, 96), "BF16"),
                                  ("model.layers.0.self_attn.o_proj.weight", (3, 5), "F32")]:
            codes = rng.integers(0, 256, size=(n, k), dtype=np.uint8)
            codes[(codes & 0x7F) == 0x7F] = 0x38  # no NaN code
            gr, gc = -(-n // bn), -(-k // bk)
            scales = (np.exp2(rng.uniform(-14, 0, size=(gr, gc))) * rng.uniform(1, 2, size=(gr, gc))).astype(np.float32)
            if sdt == "BF16":
                sb = (scales.view(np.uint32) >> 16).astype("<u2")
                scales = bf16_to_f32(sb)
                raw = sb.tobytes()
            else:
                raw = scales.astype("<f4").tobytes()
            tensors.append((name, "F8_E4M3", [n, k], codes.tobytes()))
            tensors.append((name + "_scale_inv", sdt, [gr, gc], raw))
            expected[name] = dequant(codes, scales, bn, bk)
        tensors.append(("model.norm.weight", "F32", [4], np.ones(4, np.float32).tobytes()))
        write_st(os.path.join(d, "py", "model.safetensors"), tensors)
        with open(os.path.join(d, "py", "config.json"), "w") as f:
            json.dump({"torch_dtype": "bfloat16", "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                                                         "weight_block_size": [bn, bk]}}, f, indent=2)

        # lowbit quantizes these with block [128, 128]
        qbn, qbk = 128, 128
        src = {}
        for name, (n, k) in [("a.weight", (300, 260)), ("b.weight", (128, 128)), ("c.weight", (1, 7))]:
            x = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
            x[0, 0] = 1.5  # an outlier
            if n > 128 and k > 128:
                x[128:256, 128:256] = 0  # a zero tile
            src[name] = x
        write_st(os.path.join(d, "src.safetensors"), [(nm, "F32", list(x.shape), x.astype("<f4").tobytes()) for nm, x in src.items()])
        with open(os.path.join(d, "block.txt"), "w") as f:
            f.write(f"{qbn} {qbk}\n")

        # 2. lowbit
        r = subprocess.run([args.loader, "fp8_block", d], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        check(r.returncode == 0, f"loader exit code {r.returncode}")
        if r.returncode != 0:
            return finish("fp8_block_interop", SEED)

        # 3a. lowbit's dequantization of our file
        got = read_st(os.path.join(d, "py_lowbit.safetensors"))
        check(set(got) == set(expected), f"py_lowbit tensors {sorted(got)}")
        for name, want in expected.items():
            if name in got:
                g = arr(got[name])
                check(g.shape == want.shape and g.view(np.uint32).tobytes() == want.view(np.uint32).tobytes(),
                      f"{name}: lowbit's dequantization differs from the reference (first at "
                      f"{np.argwhere(g.view(np.uint32) != want.view(np.uint32))[:1].tolist() if g.shape == want.shape else 'shape'})")

        # 3b. what lowbit wrote
        out = read_st(os.path.join(d, "lowbit", "model.safetensors"))
        names = set()
        for name in src:
            names |= {name, name + "_scale_inv"}
        check(set(out) == names, f"lowbit tensors {sorted(out)}")
        with open(os.path.join(d, "lowbit", "config.json")) as f:
            cfg = json.load(f)
        qc = cfg.get("quantization_config", {})
        check(qc.get("quant_method") == "fp8", f"quant_method {qc.get('quant_method')}")
        check(qc.get("weight_block_size") == [qbn, qbk], f"weight_block_size {qc.get('weight_block_size')}")
        check(qc.get("activation_scheme") == "dynamic", f"activation_scheme {qc.get('activation_scheme')}")
        check("modules_to_not_convert" in qc, "modules_to_not_convert present")
        check(cfg.get("torch_dtype") == "bfloat16", "base config kept")
        for name, x in src.items():
            if name not in out or name + "_scale_inv" not in out:
                continue
            w, s = out[name], out[name + "_scale_inv"]
            n, k = x.shape
            check(w[0] == "F8_E4M3" and w[1] == [n, k], f"{name}: {w[0]} {w[1]}")
            check(s[0] == "F32" and s[1] == [-(-n // qbn), -(-k // qbk)], f"{name}_scale_inv: {s[0]} {s[1]}")
            codes, scales = quant(x, qbn, qbk)
            lc, ls = arr(w), arr(s)
            check(ls.view(np.uint32).tobytes() == scales.view(np.uint32).tobytes(), f"{name}: scales differ from f32(amax / 448)")
            bad = np.argwhere(lc != codes)
            check(bad.size == 0, f"{name}: codes differ from RNE e4m3(x / s) at {bad[:3].tolist()}")
            y = dequant(lc, ls, qbn, qbk)
            # e4m3 spacing at |y / s| is at most |y / s| * 2^-3 (2^-9 below 2^-6, the subnormals)
            sfull = np.repeat(np.repeat(ls, qbn, 0), qbk, 1)[:n, :k].astype(np.float64)
            step = sfull * 2.0 ** -3 * np.maximum(np.abs(y) / np.where(sfull == 0, 1, sfull), 2.0 ** -6)
            err = np.abs(y.astype(np.float64) - x.astype(np.float64))
            check(bool(np.all(err <= step * 0.5 * (1 + 2.0 ** -16))), f"{name}: dequantization further than half a step from the input")
        if args.tool:
            tool_converts(args.tool, d, src, expected, qbn, qbk)
    return finish("fp8_block_interop", SEED)


def tool_converts(tool, d, src, expected, qbn, qbk):
    """`lowbit convert` into this layout (bytes and printed error figures against this file's
    quantization) and out of it (`--to safetensors-f32` equals this file's dequantization)."""
    out = os.path.join(d, "tool_fp8")
    p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "src.safetensors"), out, "--to", "fp8-block"], capture_output=True, text=True)
    check(p.returncode == 0, f"lowbit convert --to fp8-block failed: {p.stderr.strip()}")
    if p.returncode == 0:
        got = read_st(os.path.join(out, "model.safetensors"))
        reported = printed_figures(p.stdout, "fp8_e4m3_block")
        for name, x in src.items():
            codes, scales = quant(x, qbn, qbk)
            w, s = got.get(name), got.get(name + "_scale_inv")
            check(w is not None and s is not None and np.array_equal(arr(w), codes) and arr(s).tobytes() == scales.tobytes(),
                  f"convert --to fp8-block: {name}: codes or scales differ from this file's quantization")
            check_figures(reported.get(name), x, dequant(codes, scales, qbn, qbk), f"convert --to fp8-block: {name}")
    back = os.path.join(d, "tool_f32")
    p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "py"), back, "--to", "safetensors-f32"], capture_output=True, text=True)
    check(p.returncode == 0, f"lowbit convert --to safetensors-f32 failed: {p.stderr.strip()}")
    if p.returncode == 0:
        got = read_st(os.path.join(back, "model.safetensors"))
        for name, want in expected.items():
            g = got.get(name)
            check(g is not None and g[0] == "F32" and arr(g).tobytes() == want.tobytes(), f"convert --to safetensors-f32: {name} differs from this file's dequantization")
        with open(os.path.join(back, "config.json")) as f:
            check("quantization_config" not in json.load(f), "convert --to safetensors-f32 keeps a quantization_config")


if __name__ == "__main__":
    sys.exit(main())
