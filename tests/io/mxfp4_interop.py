#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent check of lowbit's gpt-oss MXFP4 checkpoint layout (numpy + json; no torch, no lowbit
code). Written from the format's documentation (docs/mxfp4-gptoss.md and its sources: transformers'
integrations/mxfp4.py convert_moe_packed_tensors and Mxfp4Config, openai/gpt-oss
gpt_oss/torch/weights.py, triton_kernels' downcast_to_mxfp, the OCP MX v1.0 spec):

    X_blocks  U8 [E, rows, K / 32, 16]  (or [rows, K / 32, 16]): two e2m1 codes a byte, element 2j
                                         of a block in the low nibble, 2j + 1 in the high nibble
    X_scales  U8 [E, rows, K / 32]      (or [rows, K / 32]): e8m0, the block's factor 2^(s - 127)
    w[.., r, 32 g + i] = FP4[code] * 2^(X_scales[.., r, g] - 127)   (float32: exact, or +-Inf)
    FP4 = [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1, -1.5, -2, -3, -4, -6]
    quantization_config = {"quant_method": "mxfp4", "modules_to_not_convert": [...]}
    quantize (triton_kernels downcast_to_mxfp, DequantScaleRoundingMode.ROUND_UP): per 32 elements
    d = f32(amax / 6), s = d's exponent field rounded up (bits + 0x7FFFFF, mantissa dropped),
    code = e2m1 round-to-nearest-even of x * 2^(127 - s), saturated to +-6, sign kept.

    mxfp4_interop.py --loader LOADER [--tool LOWBIT]

1. Writes DIR/py, a sharded checkpoint folder (two shards + model.safetensors.index.json, as
   gpt-oss ships): expert pairs [E, rows, K / 32, 16] with random codes and scales (0, 254 and
   hand-placed bytes included), a 2-D pair, dense tensors, config.json; plus DIR/src.safetensors
   (BF16 and F32 weights with outliers, a zero block, -0 and exact ties) to quantize.
2. Runs LOADER mxfp4 DIR (tests/io/mxfp4_loader.cpp).
3. Checks: lowbit's dequantization equals this file's bit for bit (Inf where it overflows) and the
   pair it writes back is the bytes this file wrote; DIR/lowbit has exactly the layout (names,
   dtypes, shapes, config.json) and blocks and scales equal to this file's own quantization bit for
   bit, the dense tensor copied unchanged.
4. With --tool, the command-line tool in both directions, with transformers' orientation of the
   dense expert parameters ([E, K, rows]: the stored [E, rows, K] with the last two dimensions
   swapped, as transformers' convert_moe_packed_tensors returns them): `lowbit convert DIR/py
   --to safetensors-f32` writes every transformers-named expert pair as this file's dequantization
   swapped (openai's 2-D naming unswapped) and no quantization_config; `lowbit convert` of a dense
   checkpoint `--to mxfp4` writes blocks and scales equal to this file's quantization of the
   swapped experts, leaves the 2-D weight dense, and prints error figures equal to this file's.
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
    print("[  SKIPPED ] numpy is not installed; gpt-oss MXFP4 interop check not run")
    sys.exit(77)

from interop_common import arr, check, check_figures, finish, printed_figures, read_st, write_st  # noqa: E402

SEED = int(os.environ.get("LOWBIT_TEST_SEED", "0x3f4b10c"), 0)


# ---- MXFP4 ----------------------------------------------------------------------------------------
FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float32)
POS = FP4[:8]


def unpack(blocks):
    """[.., G, 16] bytes -> [.., G * 32] codes, low nibble first."""
    lo, hi = blocks & 0x0F, blocks >> 4
    codes = np.stack([lo, hi], axis=-1)  # [.., G, 16, 2]
    return codes.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def dequant(blocks, scales):
    codes = unpack(blocks)
    e = np.repeat(scales.astype(np.int32) - 127, 32, axis=-1)
    with np.errstate(over="ignore"):
        return np.ldexp(FP4[codes], e).astype(np.float32)


def e2m1_encode(v):
    """float32 array -> e2m1 codes: round to nearest, ties to the even code, saturate to +-6."""
    v = np.asarray(v, dtype=np.float32)
    a = np.minimum(np.abs(v), np.float32(6.0))
    hi = np.minimum(np.searchsorted(POS, a, side="left"), 7)  # POS[hi] >= a
    lo = np.maximum(hi - 1, 0)
    dlo = a.astype(np.float64) - POS[lo].astype(np.float64)
    dhi = POS[hi].astype(np.float64) - a.astype(np.float64)
    pick = np.where(POS[hi] == a, hi, np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi))))
    return (pick.astype(np.uint8) | np.where(np.signbit(v), 8, 0).astype(np.uint8)).astype(np.uint8)


def quant(x):
    """x float32 [.., K] -> (blocks [.., K/32, 16] u8, scales [.., K/32] u8) by ROUND_UP."""
    *lead, k = x.shape
    g = x.reshape(*lead, k // 32, 32)
    amax = np.max(np.abs(g), axis=-1)
    d = (amax / np.float32(6.0)).astype(np.float32)
    bits = d.view(np.uint32).astype(np.uint64)
    s = (((bits + 0x7FFFFF) & 0x7F800000) >> 23).astype(np.uint8)
    m = np.ldexp(np.float32(1.0), 127 - s.astype(np.int32)).astype(np.float32)
    codes = e2m1_encode((g * m[..., None]).astype(np.float32))  # [.., G, 32]
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return blocks, s


def f32_to_bf16(x):
    """round to nearest even (finite input)."""
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def bf16_to_f32(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32)


def self_check():
    """This file's tables against hand-worked values."""
    b = np.zeros((1, 1, 16), np.uint8)
    b[0, 0, 0] = 0x21
    b[0, 0, 1] = 0xF7
    y = dequant(b, np.array([[128]], np.uint8))
    check(list(y[0, :4]) == [1.0, 2.0, 12.0, -12.0], "hand block: 0x21 0xF7 at 2^1")
    check(list(e2m1_encode(np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, -0.1, 0.26], np.float32))) == [0, 2, 2, 4, 4, 6, 6, 7, 8, 1],
          "e2m1 encode: ties to even, saturation, sign, rounding")
    blk, s = quant(np.array([[6.0] + [0.0] * 31], np.float32))
    check(int(s[0, 0]) == 127 and int(blk[0, 0, 0]) == 7, "quant: amax 6 -> scale 127, code 7")
    blk, s = quant(np.array([[7.0] + [0.0] * 31], np.float32))
    check(int(s[0, 0]) == 128 and int(blk[0, 0, 0]) == 6, "quant: amax 7 -> scale 128 (rounded up), 7/2 = 3.5 -> 4 (code 6)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loader", required=True)
    ap.add_argument("--tool")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    self_check()
    with tempfile.TemporaryDirectory(prefix="lowbit_mxfp4_interop_") as d:
        # 1. a gpt-oss-style checkpoint lowbit must read
        py = os.path.join(d, "py")
        os.mkdir(py)
        E, H, I = 4, 64, 96  # experts, hidden, intermediate
        pairs = {
            "model.layers.0.mlp.experts.gate_up_proj": (E, 2 * I, H),
            "model.layers.0.mlp.experts.down_proj": (E, H, I),
            "model.layers.1.mlp.experts.gate_up_proj": (E, 2 * I, H),
            "model.layers.1.extra.proj": (3, 32),  # a 2-D pair
        }
        shards = [[], []]
        expected, written = {}, {}
        for i, (base, shape) in enumerate(pairs.items()):
            *lead, k = shape
            blocks = rng.integers(0, 256, size=(*lead, k // 32, 16), dtype=np.uint8)
            scales = rng.integers(110, 135, size=(*lead, k // 32), dtype=np.uint8)
            if i == 0:
                scales.flat[0] = 0  # 2^-127: subnormal results
                scales.flat[1] = 254  # 2^127: codes of magnitude >= 2 overflow to +-Inf
                blocks.reshape(-1, 16)[1, :4] = [0x71, 0x0F, 0x98, 0x80]
                blocks.reshape(-1, 16)[2] = 0  # a zero block
            expected[base] = dequant(blocks, scales)
            written[base] = (blocks.tobytes(), scales.tobytes(), list(blocks.shape), list(scales.shape))
            shard = shards[i % 2]
            shard.append((base + "_blocks", "U8", list(blocks.shape), blocks.tobytes()))
            shard.append((base + "_scales", "U8", list(scales.shape), scales.tobytes()))
            if len(shape) == 3:
                shard.append((base + "_bias", "F32", [E, shape[1]], rng.standard_normal((E, shape[1])).astype("<f4").tobytes()))
        shards[0].append(("model.norm.weight", "BF16", [H], f32_to_bf16(np.ones(H, np.float32)).astype("<u2").tobytes()))
        weight_map = {}
        for j, sh in enumerate(shards):
            fname = f"model-{j:05d}-of-{len(shards) - 1:05d}.safetensors"
            write_st(os.path.join(py, fname), sh)
            for t in sh:
                weight_map[t[0]] = fname
        with open(os.path.join(py, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
        modules = ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]
        with open(os.path.join(py, "config.json"), "w") as f:
            json.dump({"architectures": ["GptOssForCausalLM"], "num_local_experts": E, "hidden_size": H, "intermediate_size": I,
                       "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": modules}}, f, indent=2)

        # weights lowbit quantizes
        src, seen = [], {}
        for name, shape, dt in [("a.experts.gate_up_proj", (E, 2 * I, H), "BF16"), ("b.experts.down_proj", (2, H, I), "BF16"),
                                ("c.proj.weight", (5, 64), "F32"), ("d.proj.weight", (3, 32), "BF16")]:
            x = (rng.standard_normal(shape) * 0.02).astype(np.float32)
            flat = x.reshape(-1, shape[-1])
            flat[0, 0] = 1.5  # an outlier
            if name.startswith("a."):
                flat[1, 32:64] = 0.0  # a zero block
                flat[1, 33:64:3] = -0.0
                # exact ties once scaled: amax 6 * 2^-4 -> s = 123
                flat[2, 0:12] = np.array([6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.25, -2.5, -5, 0.5], np.float32) * np.float32(2.0 ** -4)
                flat[2, 12:32] = 0.0
            if dt == "BF16":
                u = f32_to_bf16(x)
                seen[name] = bf16_to_f32(u)
                src.append((name, dt, list(shape), u.astype("<u2").tobytes()))
            else:
                seen[name] = x
                src.append((name, dt, list(shape), x.astype("<f4").tobytes()))
        norm = rng.standard_normal(7).astype(np.float32)
        src.append(("e.norm.weight", "F32", [7], norm.astype("<f4").tobytes()))
        write_st(os.path.join(d, "src.safetensors"), src)

        # 2. lowbit
        r = subprocess.run([args.loader, "mxfp4", d], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        check(r.returncode == 0, f"loader exit code {r.returncode}")
        if r.returncode != 0:
            return finish("mxfp4_interop", SEED)

        # 3a. lowbit's reading of our checkpoint
        got = read_st(os.path.join(d, "py_lowbit.safetensors"))
        names = set()
        for base in pairs:
            names |= {base, base + "_blocks", base + "_scales"}
        check(set(got) == names, f"py_lowbit tensors {sorted(got)}")
        for base, want in expected.items():
            if base not in got:
                continue
            g = arr(got[base])
            same = g.shape == want.shape and g.view(np.uint32).tobytes() == want.view(np.uint32).tobytes()
            check(same, f"{base}: lowbit's dequantization differs from the reference (first at "
                        f"{np.argwhere(g.view(np.uint32) != want.view(np.uint32))[:1].tolist() if g.shape == want.shape else 'shape'})")
            check(got[base][1] == list(pairs[base]), f"{base}: dense shape {got[base][1]}")
            wb, ws, bshape, sshape = written[base]
            check(got[base + "_blocks"][0] == "U8" and got[base + "_blocks"][1] == bshape and got[base + "_blocks"][2] == wb,
                  f"{base}_blocks: not written back byte for byte")
            check(got[base + "_scales"][0] == "U8" and got[base + "_scales"][1] == sshape and got[base + "_scales"][2] == ws,
                  f"{base}_scales: not written back byte for byte")
        first = expected["model.layers.0.mlp.experts.gate_up_proj"].reshape(-1)
        check(first[32] == np.float32(2.0 ** 126) and first[33] == np.inf and first[34] == -np.inf and first[35] == 0,
              "reference: at scale 254, 0x71 -> 2^126 (low nibble), +Inf; 0x0F -> -Inf, 0")

        # 3b. what lowbit wrote
        out = read_st(os.path.join(d, "lowbit", "model.safetensors"))
        want_names = {"e.norm.weight"}
        for name, _, _, _ in src[:-1]:
            want_names |= {name + "_blocks", name + "_scales"}
        check(set(out) == want_names, f"lowbit tensors {sorted(out)}")
        with open(os.path.join(d, "lowbit", "config.json")) as f:
            cfg = json.load(f)
        qc = cfg.get("quantization_config", {})
        check(qc == {"quant_method": "mxfp4", "modules_to_not_convert": modules}, f"quantization_config {qc}")
        check(cfg.get("model_type") == "gpt_oss", "base config kept")
        check("e.norm.weight" in out and out["e.norm.weight"][0] == "F32" and out["e.norm.weight"][2] == norm.astype("<f4").tobytes(),
              "e.norm.weight copied unchanged")
        for name, x in seen.items():
            bn, sn = name + "_blocks", name + "_scales"
            if bn not in out or sn not in out:
                continue
            *lead, k = x.shape
            check(out[bn][0] == "U8" and out[bn][1] == [*lead, k // 32, 16], f"{bn}: {out[bn][0]} {out[bn][1]}")
            check(out[sn][0] == "U8" and out[sn][1] == [*lead, k // 32], f"{sn}: {out[sn][0]} {out[sn][1]}")
            blocks, scales = quant(x)
            lb, ls = arr(out[bn]), arr(out[sn])
            bad = np.argwhere(ls != scales)
            check(bad.size == 0, f"{name}: scales differ from ROUND_UP at {bad[:3].tolist()}")
            bad = np.argwhere(lb != blocks)
            check(bad.size == 0, f"{name}: blocks differ from RNE e2m1 at {bad[:3].tolist()}")
            if name.startswith("a."):
                f2 = ls.reshape(-1, ls.shape[-1])
                check(int(f2[1, 1]) == 0 and int(f2[2, 0]) == 123, f"{name}: zero block scale 0, tie block scale 123")
                codes = unpack(lb).reshape(-1, k)
                check(list(codes[2, :12]) == [7, 0, 2, 2, 4, 4, 6, 6, 8, 12, 14, 1], f"{name}: tie codes {list(codes[2, :12])}")
                check(int(codes[1, 33]) == 8 and int(codes[1, 32]) == 0, f"{name}: -0 keeps its sign")
            y = dequant(lb, ls)
            # within half an e2m1 step of the block's scale (or saturated at 6 * 2^(s - 127): never, as s rounds up)
            step = np.ldexp(np.float32(1.0), np.repeat(ls.astype(np.int32) - 127, 32, axis=-1)).astype(np.float64)
            err = np.abs(y.astype(np.float64) - x.astype(np.float64))
            check(bool(np.all(err <= step * 1.0)), f"{name}: dequantization further than half the coarsest e2m1 step from the input")
        if args.tool:
            tool_converts(args.tool, d, pairs, expected, rng)
    return finish("mxfp4_interop", SEED)


def tool_converts(tool, d, pairs, expected, rng):
    dense = os.path.join(d, "tool_dense")
    p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "py"), dense, "--to", "safetensors-f32"], capture_output=True, text=True)
    check(p.returncode == 0, f"lowbit convert --to safetensors-f32 failed: {p.stderr.strip()}")
    if p.returncode == 0:
        got = {}
        for fn in os.listdir(dense):
            if fn.endswith(".safetensors"):
                got.update(read_st(os.path.join(dense, fn)))
        for base, shape in pairs.items():
            want = expected[base].swapaxes(1, 2) if len(shape) == 3 else expected[base]
            g = got.get(base)
            check(g is not None and g[0] == "F32" and g[1] == list(want.shape) and g[2] == np.ascontiguousarray(want).astype("<f4").tobytes(),
                  f"convert --to safetensors-f32: {base}: not this file's dequantization in transformers' orientation")
        with open(os.path.join(dense, "config.json")) as f:
            check("quantization_config" not in json.load(f), "convert --to safetensors-f32 keeps a quantization_config")
    # a dense gpt-oss-like checkpoint, experts as transformers' parameters [E, K, rows]
    E, H, I = 3, 64, 32
    src = {"model.layers.0.mlp.experts.gate_up_proj": (rng.standard_normal((E, H, 2 * I)) * 0.02).astype(np.float32),
           "model.layers.0.mlp.experts.down_proj": (rng.standard_normal((E, I, H)) * 0.02).astype(np.float32)}
    src["model.layers.0.mlp.experts.down_proj"][0, 0, 0] = 0.9  # an outlier
    q_proj = rng.standard_normal((H, H)).astype(np.float32)
    os.mkdir(os.path.join(d, "gptoss_dense"))
    tensors = [(n, "BF16", list(x.shape), f32_to_bf16(x).astype("<u2").tobytes()) for n, x in src.items()]
    tensors.append(("model.layers.0.self_attn.q_proj.weight", "F32", [H, H], q_proj.astype("<f4").tobytes()))
    write_st(os.path.join(d, "gptoss_dense", "model.safetensors"), tensors)
    with open(os.path.join(d, "gptoss_dense", "config.json"), "w") as f:
        json.dump({"model_type": "gpt_oss"}, f)
    out = os.path.join(d, "tool_mxfp4")
    p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "gptoss_dense"), out, "--to", "mxfp4"], capture_output=True, text=True)
    check(p.returncode == 0, f"lowbit convert --to mxfp4 failed: {p.stderr.strip()}")
    if p.returncode != 0:
        return
    got = read_st(os.path.join(out, "model.safetensors"))
    reported = printed_figures(p.stdout, "mxfp4")
    check(set(got) == {"model.layers.0.self_attn.q_proj.weight"} | {n + sfx for n in src for sfx in ("_blocks", "_scales")}, f"convert --to mxfp4 tensors {sorted(got)}")
    check(got.get("model.layers.0.self_attn.q_proj.weight", (None, None, b""))[2] == q_proj.astype("<f4").tobytes(), "convert --to mxfp4: a 2-D weight is not kept dense")
    with open(os.path.join(out, "config.json")) as f:
        qc = json.load(f).get("quantization_config")
    check(qc == {"modules_to_not_convert": ["lm_head", "embed"], "quant_method": "mxfp4"}, f"convert --to mxfp4: quantization_config {qc}")
    for name, x in src.items():
        xs = np.ascontiguousarray(bf16_to_f32(f32_to_bf16(x)).swapaxes(1, 2))  # the stored orientation [E, rows, K]
        blocks, scales = quant(xs)
        b, sc = got.get(name + "_blocks"), got.get(name + "_scales")
        check(b is not None and sc is not None and np.array_equal(arr(b), blocks) and np.array_equal(arr(sc), scales),
              f"convert --to mxfp4: {name}: blocks or scales differ from this file's quantization")
        check_figures(reported.get(name), xs, dequant(blocks, scales), f"convert --to mxfp4: {name}")


if __name__ == "__main__":
    sys.exit(main())
