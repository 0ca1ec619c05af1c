#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent check of lowbit's compressed-tensors reader and writer (numpy + json; no torch, no
compressed-tensors, no lowbit code). Written from the format's documentation (docs/compressed-tensors.md
and its sources in compressed-tensors: pack_to_int32, pack_fp4_to_uint8, calculate_qparams,
_quantize / _dequantize, the OCP FP8 E4M3 and FP4 E2M1 encodings):

    float-quantized       X.weight F8_E4M3 [N, K], X.weight_scale [1] / [N, 1] / [ceil(N/bn), ceil(K/bk)]
                          w = f32(e4m3(q)) * s
    nvfp4-pack-quantized  X.weight_packed U8 [N, K/2] (element 2j in the low nibble), X.weight_scale
                          F8_E4M3 [N, K/16], X.weight_global_scale F32 [1];  w = e2m1(q) * f32(e4m3(b) / g)
    pack-quantized        X.weight_packed I32 [N, ceil(K / (32/b))] holding q + 2^(b-1), code i of a word in
                          bits [i*b, (i+1)*b); X.weight_scale; X.weight_zero_point (asymmetric: I32 packed
                          along dim 0, or I8 [1] per tensor); X.weight_shape I64 [2];  w = f32(q - z) * s
    int-quantized         X.weight I8 [N, K] (the codes), X.weight_scale, X.weight_zero_point I8 (scale's shape)

    compressed_tensors_interop.py --loader LOADER [--tool LOWBIT]

1. Writes DIR/py (model.safetensors + config.json, format mixed-precision): FP8 weights per channel
   (BF16 scales), per block (F32, partial blocks) and per tensor (F16); an NVFP4 weight; an int4
   asymmetric group weight (partial group, packed zero points) and an int8 symmetric channel weight
   (I32 weight_shape); an int8 asymmetric channel weight stored unpacked (int-quantized); an
   ignored dense lm_head. Plus DIR/src.safetensors + DIR/src_config.json.
2. Runs LOADER compressed_tensors DIR (tests/io/compressed_tensors_loader.cpp): lowbit dequantizes DIR/py by module
   name into DIR/py_lowbit.safetensors and quantizes DIR/src.safetensors into the folder DIR/lowbit.
3. Checks: lowbit's float32 values equal this file's bit for bit; DIR/lowbit has exactly the tensors
   (names, dtypes, shapes), config keys, and bytes of this file's own quantization: FP8 and NVFP4 by
   lowbit's documented rules, integers by compressed-tensors' calculate_qparams rule in float32.
4. With --tool: `lowbit convert DIR/py --to safetensors-f32` writes every quantized module's
   weight as this file's float32 values, and drops the quantization parameters and the config;
   `lowbit convert` of a dense checkpoint `--to ct-fp8 / ct-nvfp4 / ct-int4 / ct-int8` writes the
   bytes of this file's quantization (FP8 per channel, NVFP4, int4 groups of 128 and int8 per
   channel, symmetric, BF16 integer scales), keeps a weight without whole groups dense, writes the
   config, and prints error figures equal to this file's. And the chain transformers' fine-grained
   FP8 -> compressed-tensors NVFP4: a 128 x 128-tile FP8 checkpoint written here, `lowbit convert
   --to ct-nvfp4`: the bytes are this file's NVFP4 of this file's FP8 dequantization, and the
   printed figures that conversion's error.
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
    print("[  SKIPPED ] numpy is not installed; compressed-tensors interop check not run")
    sys.exit(77)

from interop_common import arr, check, check_figures, finish, printed_figures, read_st, write_st  # noqa: E402

SEED = int(os.environ.get("LOWBIT_TEST_SEED", "0xc7c7"), 0)
F32 = np.float32


def bits_equal(a, b):
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    return a.shape == b.shape and a.view(np.uint32).tobytes() == b.view(np.uint32).tobytes()


# ---- element formats --------------------------------------------------------------------------
def e4m3_value(code):
    s = -1.0 if code & 0x80 else 1.0
    e, m = (code >> 3) & 0xF, code & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (1 + m / 8.0) * 2.0 ** (e - 7)


E4M3 = np.array([e4m3_value(c) for c in range(256)], dtype=F32)
E2M1_MAG = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=F32)
E2M1 = np.array([(-1.0 if c & 8 else 1.0) * E2M1_MAG[c & 7] for c in range(16)], dtype=F32)


def rne_encode(v, table, top):
    """float32 array -> index into the increasing non-negative `table` (codes 0..top): round to
    nearest, ties to the even code, saturate to table[top]; the caller adds the sign."""
    a = np.minimum(np.abs(np.asarray(v, F32)), table[top])
    hi = np.minimum(np.searchsorted(table[: top + 1], a, side="left"), top)
    lo = np.maximum(hi - 1, 0)
    dlo = a.astype(np.float64) - table[lo].astype(np.float64)
    dhi = table[hi].astype(np.float64) - a.astype(np.float64)
    return np.where(table[hi] == a, hi, np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi))))


def e4m3_encode(v):
    v = np.asarray(v, F32)
    return (rne_encode(v, E4M3[:127], 126).astype(np.uint8) | np.where(np.signbit(v), 0x80, 0).astype(np.uint8)).astype(np.uint8)


def e2m1_encode(v):
    v = np.asarray(v, F32)
    return (rne_encode(v, E2M1_MAG, 7).astype(np.uint8) | np.where(np.signbit(v), 8, 0).astype(np.uint8)).astype(np.uint8)


def bf16_round(x):
    """float32 -> bfloat16 bits, round to nearest even (finite inputs)."""
    b = np.asarray(x, F32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(u16):
    return (np.asarray(u16, np.uint16).astype(np.uint32) << 16).view(F32)


# ---- pack_to_int32 / unpack_from_int32 ----------------------------------------------------------
def pack_int32(q, bits):
    """q: int [rows, cols] signed codes -> int32 [rows, ceil(cols / (32 // bits))] packed along dim 1."""
    pf = 32 // bits
    rows, cols = q.shape
    u = (q.astype(np.int64) + (1 << (bits - 1))).astype(np.uint64)
    words = -(-cols // pf)
    u = np.pad(u, ((0, 0), (0, words * pf - cols)))
    out = np.zeros((rows, words), dtype=np.uint64)
    for i in range(pf):
        out |= u[:, i::pf] << np.uint64(i * bits)
    return out.astype(np.uint32).view(np.int32)


def unpack_int32(w, bits, cols):
    pf = 32 // bits
    u = w.view(np.uint32).astype(np.int64)
    out = np.zeros((w.shape[0], w.shape[1] * pf), dtype=np.int64)
    for i in range(pf):
        out[:, i::pf] = (u >> (i * bits)) & ((1 << bits) - 1)
    return out[:, :cols] - (1 << (bits - 1))


# ---- the quantizers ---------------------------------------------------------------------------
def fp8_quant(x, tr, tc):
    n, k = x.shape
    gr, gc = -(-n // tr), -(-k // tc)
    codes, scales = np.zeros((n, k), np.uint8), np.zeros((gr, gc), F32)
    for i in range(gr):
        for j in range(gc):
            t = x[i * tr : (i + 1) * tr, j * tc : (j + 1) * tc]
            s = F32(np.max(np.abs(t))) / F32(448)
            scales[i, j] = s
            if s != 0:
                codes[i * tr : (i + 1) * tr, j * tc : (j + 1) * tc] = e4m3_encode((t / s).astype(F32))
    return codes, scales


def nvfp4_quant(x):
    n, k = x.shape
    amax_t = F32(np.max(np.abs(x)))
    g = F32(2688) / amax_t
    codes = np.zeros((n, k), np.uint8)
    scales = np.zeros((n, -(-k // 16)), np.uint8)
    for r in range(n):
        for j in range(scales.shape[1]):
            t = x[r, j * 16 : (j + 1) * 16]
            v = F32(F32(np.max(np.abs(t))) / F32(6)) * g
            v = min(max(v, F32(2.0 ** -6)), F32(448))
            b = e4m3_encode(np.array([v], F32))[0]
            scales[r, j] = b
            m = F32(g / E4M3[b])
            codes[r, j * 16 : (j + 1) * 16] = e2m1_encode((t * m).astype(F32))
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, scales, g


def int_quant(x, bits, strategy, group, symmetric, scale_dtype):
    """compressed-tensors' calculate_qparams + _quantize (min-max observer), in float32."""
    n, k = x.shape
    qmin, qmax = F32(-(1 << (bits - 1))), F32((1 << (bits - 1)) - 1)
    rng_ = F32((1 << bits) - 1)
    gc = k if strategy in ("tensor", "channel") else group
    ng = -(-k // gc)
    sr = 1 if strategy == "tensor" else n
    scales, zps, q = np.zeros((sr, ng), F32), np.zeros((sr, ng), np.int64), np.zeros((n, k), np.int64)
    for r in range(sr):
        rows = slice(0, n) if strategy == "tensor" else slice(r, r + 1)
        for j in range(ng):
            t = x[rows, j * gc : (j + 1) * gc]
            lo, hi = min(F32(np.min(t)), F32(0)), max(F32(np.max(t)), F32(0))
            s = F32(max(-lo, hi)) / F32(rng_ / F32(2)) if symmetric else F32(hi - lo) / rng_
            s = max(F32(s), F32(2.0 ** -23))
            if scale_dtype == "BF16":
                s = bf16_value(bf16_round(np.array([s], F32)))[0]
            elif scale_dtype == "F16":
                s = F32(np.float16(s))
            z = F32(0)
            if not symmetric:
                z = F32(qmin - F32(lo / s))
                z = F32(np.round(min(max(z, qmin), qmax)))
            scales[r, j], zps[r, j] = s, int(z)
            v = (t / s).astype(F32) + z
            q[rows, j * gc : (j + 1) * gc] = np.round(np.clip(v, qmin, qmax)).astype(np.int64)
    return q, scales, zps


def scale_bytes(s, dt):
    if dt == "F32":
        return s.astype("<f4").tobytes()
    if dt == "BF16":
        return bf16_round(s).astype("<u2").tobytes()
    return s.astype("<f2").tobytes()


def self_check():
    check(E4M3[0x38] == 1.0 and E4M3[0x7E] == 448.0 and np.isnan(E4M3[0x7F]), "e4m3 hand values")
    check(list(e2m1_encode(np.array([0.25, 0.75, 1.25, 2.5, 5.0, 7.0, -0.1, -3.0], F32))) == [0, 2, 2, 4, 6, 7, 8, 0xD],
          "e2m1 encode: ties to even, saturation, sign")
    w = pack_int32(np.array([[-8, -7, -1, 0, 1, 7, 3, -2, 5, -4]]), 4)
    check(w.view(np.uint32).tolist() == [[0x6BF98710, 0x4D]], "pack_int32 hand value")
    check(unpack_int32(w, 4, 10).tolist() == [[-8, -7, -1, 0, 1, 7, 3, -2, 5, -4]], "unpack_int32")


def args_json(num_bits, typ, strategy, group=None, block=None, symmetric=True):
    return {"num_bits": num_bits, "type": typ, "symmetric": symmetric, "group_size": group, "strategy": strategy,
            "block_structure": block, "dynamic": False, "actorder": None, "observer": "minmax", "observer_kwargs": {}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loader", required=True)
    ap.add_argument("--tool")
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    self_check()
    with tempfile.TemporaryDirectory(prefix="lowbit_ct_interop_") as d:
        # 1. a checkpoint lowbit must read
        os.mkdir(os.path.join(d, "py"))
        tensors, expected = [], {}

        def fp8(module, n, k, tr, tc, sdt, sshape):
            codes = rng.integers(0, 256, size=(n, k), dtype=np.uint8)
            codes[(codes & 0x7F) == 0x7F] = 0x38
            gr, gc = -(-n // tr), -(-k // tc)
            s = (np.exp2(rng.uniform(-12, 2, size=(gr, gc))) * rng.uniform(1, 2, size=(gr, gc))).astype(F32)
            if sdt == "BF16":
                s = bf16_value(bf16_round(s))
            elif sdt == "F16":
                s = s.astype(np.float16).astype(F32)
            tensors.append((module + ".weight", "F8_E4M3", [n, k], codes.tobytes()))
            tensors.append((module + ".weight_scale", sdt, sshape(gr, gc), scale_bytes(s, sdt)))
            full = np.repeat(np.repeat(s, tr, 0), tc, 1)[:n, :k]
            expected[module + ".weight"] = (E4M3[codes] * full).astype(F32)

        fp8("model.layers.0.self_attn.q_proj", 40, 70, 1, 70, "BF16", lambda gr, gc: [gr, gc])
        fp8("model.layers.0.self_attn.k_proj", 37, 70, 16, 32, "F32", lambda gr, gc: [gr, gc])
        fp8("model.layers.0.self_attn.v_proj", 8, 24, 8, 24, "F16", lambda gr, gc: [1])

        # NVFP4 [12, 48]
        n, k = 12, 48
        packed = rng.integers(0, 256, size=(n, k // 2), dtype=np.uint8)
        bs = rng.integers(0x08, 0x7F, size=(n, k // 16), dtype=np.uint8)  # positive normal e4m3, no NaN
        g = F32(rng.uniform(100, 5000))
        codes = np.zeros((n, k), np.uint8)
        codes[:, 0::2], codes[:, 1::2] = packed & 0xF, packed >> 4
        fac = (E4M3[bs] / g).astype(F32)
        expected["model.layers.0.mlp.gate_proj.weight"] = (E2M1[codes] * np.repeat(fac, 16, 1)).astype(F32)
        m = "model.layers.0.mlp.gate_proj"
        tensors += [(m + ".weight_packed", "U8", [n, k // 2], packed.tobytes()), (m + ".weight_scale", "F8_E4M3", [n, k // 16], bs.tobytes()),
                    (m + ".weight_global_scale", "F32", [1], np.array([g], "<f4").tobytes())]

        # int4 asymmetric, groups of 32 over K = 70 (the last partial), BF16 scales
        n, k, bits, grp = 20, 70, 4, 32
        q = rng.integers(-8, 8, size=(n, k))
        ng = -(-k // grp)
        z = rng.integers(-8, 8, size=(n, ng))
        s = bf16_value(bf16_round((rng.uniform(0.001, 0.1, size=(n, ng))).astype(F32)))
        m = "model.layers.0.mlp.up_proj"
        tensors += [(m + ".weight_packed", "I32", [n, -(-k // 8)], pack_int32(q, bits).astype("<i4").tobytes()),
                    (m + ".weight_scale", "BF16", [n, ng], scale_bytes(s, "BF16")),
                    (m + ".weight_zero_point", "I32", [-(-n // 8), ng], pack_int32(z.T, bits).T.astype("<i4").tobytes()),
                    (m + ".weight_shape", "I64", [2], np.array([n, k], "<i8").tobytes())]
        col_group = np.arange(k) // grp
        expected[m + ".weight"] = ((q - z[:, col_group]).astype(F32) * s[:, col_group]).astype(F32)

        # int8 symmetric per channel, F32 scales, I32 weight_shape
        n, k = 9, 13
        q = rng.integers(-128, 128, size=(n, k))
        s = rng.uniform(0.001, 0.1, size=(n, 1)).astype(F32)
        m = "model.layers.0.mlp.down_proj"
        tensors += [(m + ".weight_packed", "I32", [n, -(-k // 4)], pack_int32(q, 8).astype("<i4").tobytes()),
                    (m + ".weight_scale", "F32", [n, 1], scale_bytes(s, "F32")),
                    (m + ".weight_shape", "I32", [2], np.array([n, k], "<i4").tobytes())]
        expected[m + ".weight"] = (q.astype(F32) * s).astype(F32)

        # int8 asymmetric per channel, unpacked (int-quantized): I8 codes, BF16 scales, I8 zero points
        n, k = 6, 11
        q = rng.integers(-128, 128, size=(n, k))
        z = rng.integers(-128, 128, size=(n, 1))
        s = bf16_value(bf16_round(rng.uniform(0.001, 0.1, size=(n, 1)).astype(F32)))
        m = "model.layers.1.mlp.up_proj"
        tensors += [(m + ".weight", "I8", [n, k], q.astype("i1").tobytes()), (m + ".weight_scale", "BF16", [n, 1], scale_bytes(s, "BF16")),
                    (m + ".weight_zero_point", "I8", [n, 1], z.astype("i1").tobytes())]
        expected[m + ".weight"] = ((q - z).astype(F32) * s).astype(F32)

        tensors.append(("lm_head.weight", "BF16", [4, 4], np.zeros(16, "<u2").tobytes()))
        write_st(os.path.join(d, "py", "model.safetensors"), tensors)
        py_config = {"torch_dtype": "bfloat16", "quantization_config": {
            "quant_method": "compressed-tensors", "format": "mixed-precision", "quantization_status": "compressed",
            "ignore": ["lm_head"], "kv_cache_scheme": None, "global_compression_ratio": None,
            "config_groups": {
                "fp8_channel": {"targets": ["re:.*q_proj$"], "weights": args_json(8, "float", "channel"), "format": "float-quantized",
                                "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True, "symmetric": True}},
                "fp8_block": {"targets": ["re:.*k_proj$"], "weights": args_json(8, "float", "block", block=[16, 32]), "format": "float-quantized"},
                "fp8_tensor": {"targets": ["model.layers.0.self_attn.v_proj"], "weights": args_json(8, "float", "tensor"), "format": "float-quantized"},
                "nvfp4": {"targets": ["re:.*gate_proj"], "weights": args_json(4, "float", "tensor_group", group=16), "format": "nvfp4-pack-quantized"},
                "w8a8": {"targets": ["model.layers.1.mlp.up_proj"], "weights": args_json(8, "int", "channel", symmetric=False), "format": "int-quantized"},
                "w4a16": {"targets": ["re:.*up_proj"], "weights": args_json(4, "int", "group", group=32, symmetric=False), "format": "pack-quantized"},
                "w8a16": {"targets": ["Linear"], "weights": args_json(8, "int", "channel"), "format": "pack-quantized"}}}}
        with open(os.path.join(d, "py", "config.json"), "w") as f:
            json.dump(py_config, f, indent=2)

        # what lowbit quantizes
        src = {}
        for name, (n, k) in [("m.fp8c", (30, 50)), ("m.fp8b", (37, 70)), ("m.nv", (9, 48)), ("m.w4a", (20, 70)), ("m.w8s", (11, 40)), ("m.w4t", (6, 16)), ("m.i8", (5, 24))]:
            x = (rng.standard_normal((n, k)) * 0.02 + 0.003).astype(F32)
            x[0, 0] = 0.5  # an outlier
            x[1, :] = 0  # a zero row: zero tiles / groups
            src[name] = x
        write_st(os.path.join(d, "src.safetensors"), [(nm + ".weight", "F32", list(x.shape), x.astype("<f4").tobytes()) for nm, x in src.items()])
        src_groups = {
            "a": {"targets": ["m.fp8c"], "weights": args_json(8, "float", "channel"), "format": "float-quantized"},
            "b": {"targets": ["m.fp8b"], "weights": args_json(8, "float", "block", block=[16, 32]), "format": "float-quantized"},
            "c": {"targets": ["m.nv"], "weights": args_json(4, "float", "tensor_group", group=16), "format": "nvfp4-pack-quantized"},
            "d": {"targets": ["m.w4a"], "weights": args_json(4, "int", "group", group=32, symmetric=False), "format": "pack-quantized"},
            "e": {"targets": ["m.w8s"], "weights": args_json(8, "int", "channel"), "format": "pack-quantized"},
            "f": {"targets": ["m.w4t"], "weights": args_json(4, "int", "tensor", symmetric=False), "format": "pack-quantized"},
            "g": {"targets": ["m.i8"], "weights": args_json(8, "int", "group", group=8), "format": "int-quantized"},
        }
        src_qc = {"quant_method": "compressed-tensors", "format": "mixed-precision", "quantization_status": "compressed",
                  "ignore": ["lm_head"], "config_groups": src_groups}
        with open(os.path.join(d, "src_config.json"), "w") as f:
            json.dump({"quantization_config": src_qc}, f)

        # 2. lowbit
        r = subprocess.run([args.loader, "compressed_tensors", d], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        check(r.returncode == 0, f"loader exit code {r.returncode}")
        if r.returncode != 0:
            return finish("compressed_tensors_interop", SEED)

        # 3a. lowbit's dequantization of our file
        got = read_st(os.path.join(d, "py_lowbit.safetensors"))
        check(set(got) == set(expected), f"py_lowbit tensors {sorted(got)}")
        for name, want in expected.items():
            if name in got:
                gv = arr(got[name])
                check(bits_equal(gv, want), f"{name}: lowbit's float32 values differ from the reference "
                      f"(first at {np.argwhere(gv.view(np.uint32) != want.view(np.uint32))[:1].tolist() if gv.shape == want.shape else 'shape'})")

        # 3b. what lowbit wrote
        out = read_st(os.path.join(d, "lowbit", "model.safetensors"))
        with open(os.path.join(d, "lowbit", "config.json")) as f:
            cfg = json.load(f)
        check(cfg.get("torch_dtype") == "bfloat16", "base config kept")
        qc = cfg.get("quantization_config", {})
        check(qc.get("quant_method") == "compressed-tensors", f"quant_method {qc.get('quant_method')}")
        check(qc.get("format") == "mixed-precision", f"format {qc.get('format')}")
        check(qc.get("ignore") == ["lm_head"], f"ignore {qc.get('ignore')}")
        check(qc.get("quantization_status") == "compressed", f"quantization_status {qc.get('quantization_status')}")
        groups = qc.get("config_groups", {})
        check(set(groups) == set(src_groups), f"config_groups {sorted(groups)}")
        for gname, gsrc in src_groups.items():
            gw = groups.get(gname, {})
            check(gw.get("targets") == gsrc["targets"] and gw.get("format") == gsrc["format"], f"group {gname}: targets / format {gw}")
            for key, val in gsrc["weights"].items():
                check(gw.get("weights", {}).get(key) == val, f"group {gname}: weights.{key} = {gw.get('weights', {}).get(key)}, want {val}")

        names = {}
        x = src["m.fp8c"]
        c_, s_ = fp8_quant(x, 1, x.shape[1])
        names["m.fp8c.weight"] = ("F8_E4M3", list(x.shape), c_.tobytes())
        names["m.fp8c.weight_scale"] = ("F32", [x.shape[0], 1], s_.astype("<f4").tobytes())
        x = src["m.fp8b"]
        c_, s_ = fp8_quant(x, 16, 32)
        names["m.fp8b.weight"] = ("F8_E4M3", list(x.shape), c_.tobytes())
        names["m.fp8b.weight_scale"] = ("F32", list(s_.shape), s_.astype("<f4").tobytes())
        x = src["m.nv"]
        p_, b_, g_ = nvfp4_quant(x)
        names["m.nv.weight_packed"] = ("U8", list(p_.shape), p_.tobytes())
        names["m.nv.weight_scale"] = ("F8_E4M3", list(b_.shape), b_.tobytes())
        names["m.nv.weight_global_scale"] = ("F32", [1], np.array([g_], "<f4").tobytes())
        for nm, bits, strat, grp, sym in [("m.w4a", 4, "group", 32, False), ("m.w8s", 8, "channel", None, True), ("m.w4t", 4, "tensor", None, False)]:
            x = src[nm]
            n, k = x.shape
            q, s, z = int_quant(x, bits, strat, grp, sym, "BF16")
            names[nm + ".weight_packed"] = ("I32", [n, -(-k // (32 // bits))], pack_int32(q, bits).astype("<i4").tobytes())
            names[nm + ".weight_scale"] = ("BF16", [1] if strat == "tensor" else list(s.shape), scale_bytes(s, "BF16"))
            if not sym:
                if strat == "tensor":
                    names[nm + ".weight_zero_point"] = ("I8", [1], z.astype("i1").tobytes())
                else:
                    names[nm + ".weight_zero_point"] = ("I32", [-(-n // (32 // bits)), z.shape[1]], pack_int32(z.T, bits).T.astype("<i4").tobytes())
            names[nm + ".weight_shape"] = ("I64", [2], np.array([n, k], "<i8").tobytes())
        x = src["m.i8"]
        q, s, z = int_quant(x, 8, "group", 8, True, "BF16")
        names["m.i8.weight"] = ("I8", list(x.shape), q.astype("i1").tobytes())
        names["m.i8.weight_scale"] = ("BF16", list(s.shape), scale_bytes(s, "BF16"))
        check(set(out) == set(names), f"lowbit tensors {sorted(out)} want {sorted(names)}")
        for name, (dt, shape, raw) in names.items():
            if name not in out:
                continue
            check(out[name][0] == dt and out[name][1] == shape, f"{name}: {out[name][0]} {out[name][1]}, want {dt} {shape}")
            if out[name][2] != raw:
                a, b = np.frombuffer(out[name][2], np.uint8), np.frombuffer(raw, np.uint8)
                first = np.argwhere(a != b)[:1].tolist() if a.shape == b.shape else "size"
                check(False, f"{name}: bytes differ from this file's quantization (first byte {first})")
        if args.tool:
            tool_converts(args.tool, d, expected, rng)
            tool_chain_fp8_to_nvfp4(args.tool, d, rng)
    return finish("compressed_tensors_interop", SEED)


def tool_chain_fp8_to_nvfp4(tool, d, rng):
    n, k = 130, 96  # partial 128 x 128 tiles
    x = (rng.standard_normal((n, k)) * 0.05).astype(F32)
    codes, scales = fp8_quant(x, 128, 128)
    os.mkdir(os.path.join(d, "fp8_src"))
    write_st(os.path.join(d, "fp8_src", "model.safetensors"), [("l.weight", "F8_E4M3", [n, k], codes.tobytes()),
                                                               ("l.weight_scale_inv", "F32", list(scales.shape), scales.astype("<f4").tobytes())])
    with open(os.path.join(d, "fp8_src", "config.json"), "w") as f:
        json.dump({"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}}, f)
    out = os.path.join(d, "fp8_to_nvfp4")
    p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "fp8_src"), out, "--to", "ct-nvfp4"], capture_output=True, text=True)
    check(p.returncode == 0, f"chain fp8-block -> ct-nvfp4 failed: {p.stderr.strip()}")
    if p.returncode != 0:
        return
    full = np.repeat(np.repeat(scales, 128, 0), 128, 1)[:n, :k]
    y8 = (E4M3[codes] * full).astype(F32)  # the FP8 checkpoint's values
    p_, b_, g_ = nvfp4_quant(y8)
    got = read_st(os.path.join(out, "model.safetensors"))
    check(got.get("l.weight_packed", (0, 0, b""))[2] == p_.tobytes() and got.get("l.weight_scale", (0, 0, b""))[2] == b_.tobytes()
          and got.get("l.weight_global_scale", (0, 0, b""))[2] == np.array([g_], "<f4").tobytes(),
          "chain fp8-block -> ct-nvfp4: bytes differ from this file's NVFP4 of the FP8 values")
    c4 = np.stack([p_ & 15, p_ >> 4], axis=-1).reshape(n, k)
    y4 = (E2M1[c4] * np.repeat((E4M3[b_] / g_).astype(F32), 16, 1)).astype(F32)
    check_figures(printed_figures(p.stdout).get("l.weight"), y8, y4, "chain fp8-block -> ct-nvfp4")


def tool_converts(tool, d, expected, rng):
    dense = os.path.join(d, "tool_dense")
    p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "py"), dense, "--to", "safetensors-f32"], capture_output=True, text=True)
    check(p.returncode == 0, f"lowbit convert --to safetensors-f32 failed: {p.stderr.strip()}")
    if p.returncode == 0:
        got = read_st(os.path.join(dense, "model.safetensors"))
        for name, want in expected.items():
            g = got.get(name)
            check(g is not None and g[0] == "F32" and g[2] == want.astype("<f4").tobytes(), f"convert --to safetensors-f32: {name} is not this file's dequantization")
        left = [n for n in got if any(n.endswith(sfx) for sfx in ("_scale", "_packed", "_zero_point", "_shape", "_global_scale"))]
        check(not left, f"convert --to safetensors-f32 kept quantization parameters {left}")
        with open(os.path.join(dense, "config.json")) as f:
            check("quantization_config" not in json.load(f), "convert --to safetensors-f32 keeps a quantization_config")
    a = (rng.standard_normal((6, 256)) * 0.02).astype(F32)
    a[0, 3] = 0.4  # an outlier
    b = (rng.standard_normal((5, 48)) * 0.02).astype(F32)
    write_st(os.path.join(d, "tool_src.safetensors"), [("t.a.weight", "F32", [6, 256], a.tobytes()), ("t.b.weight", "F32", [5, 48], b.tobytes()),
                                                       ("t.norm.weight", "F32", [3], np.ones(3, "<f4").tobytes())])
    for target in ("ct-fp8", "ct-nvfp4", "ct-int4", "ct-int8"):
        out = os.path.join(d, "tool_" + target)
        p = subprocess.run([tool, "convert", "--quiet", os.path.join(d, "tool_src.safetensors"), out, "--to", target], capture_output=True, text=True)
        check(p.returncode == 0, f"lowbit convert --to {target} failed: {p.stderr.strip()}")
        if p.returncode != 0:
            continue
        got = read_st(os.path.join(out, "model.safetensors"))
        with open(os.path.join(out, "config.json")) as f:
            qc = json.load(f).get("quantization_config", {})
        reported = printed_figures(p.stdout)
        want, deq = {}, {}
        for name, x in (("t.a", a), ("t.b", b)):
            n, k = x.shape
            if target == "ct-fp8":
                c_, s_ = fp8_quant(x, 1, k)
                want[name + ".weight"] = ("F8_E4M3", [n, k], c_.tobytes())
                want[name + ".weight_scale"] = ("F32", [n, 1], s_.astype("<f4").tobytes())
                deq[name] = (E4M3[c_] * s_).astype(F32)
            elif target == "ct-nvfp4":
                p_, b_, g_ = nvfp4_quant(x)
                want[name + ".weight_packed"] = ("U8", list(p_.shape), p_.tobytes())
                want[name + ".weight_scale"] = ("F8_E4M3", list(b_.shape), b_.tobytes())
                want[name + ".weight_global_scale"] = ("F32", [1], np.array([g_], "<f4").tobytes())
                codes = np.stack([p_ & 15, p_ >> 4], axis=-1).reshape(n, k)
                fac = (E4M3[b_] / g_).astype(F32)
                deq[name] = (E2M1[codes] * np.repeat(fac, 16, 1)).astype(F32)
            else:
                bits, strat, grp = (4, "group", 128) if target == "ct-int4" else (8, "channel", None)
                if strat == "group" and k % grp != 0:
                    want[name + ".weight"] = ("F32", [n, k], x.tobytes())  # no whole groups: kept dense
                    continue
                q, s_, _ = int_quant(x, bits, strat, grp, True, "BF16")
                want[name + ".weight_packed"] = ("I32", [n, -(-k // (32 // bits))], pack_int32(q, bits).astype("<i4").tobytes())
                want[name + ".weight_scale"] = ("BF16", list(s_.shape), scale_bytes(s_, "BF16"))
                want[name + ".weight_shape"] = ("I64", [2], np.array([n, k], "<i8").tobytes())
                deq[name] = (q.astype(F32) * np.repeat(s_, k // s_.shape[1], 1)).astype(F32)
        want["t.norm.weight"] = ("F32", [3], np.ones(3, "<f4").tobytes())
        check(set(got) == set(want), f"convert --to {target}: tensors {sorted(got)}, want {sorted(want)}")
        for name, w in want.items():
            check(name in got and tuple(got[name]) == w, f"convert --to {target}: {name} differs from this file's quantization")
        check(qc.get("quant_method") == "compressed-tensors" and qc.get("ignore") == ["re:.*lm_head", "re:.*embed"], f"convert --to {target}: config {qc}")
        for name, y in deq.items():
            check_figures(reported.get(name + ".weight"), a if name == "t.a" else b, y, f"convert --to {target}: {name}")


if __name__ == "__main__":
    sys.exit(main())
