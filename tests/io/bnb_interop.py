#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent check of lowbit's bitsandbytes checkpoint layout (numpy + json only; no torch, no
lowbit code). Written from ../shared/reference/bitsandbytes-semantics.md §3, §4, §5.5 and §7.

    bnb_interop.py --loader LOADER [--tool LOWBIT] [--sample FOLDER]

1. Writes bnb.safetensors: bitsandbytes-layout weights (NF4 + double quant, FP4, NF4 with an odd
   element count, LLM.int8 with SCB and weight_format) and a dense bias, plus expected.safetensors:
   each weight dequantized by the reference formulas. Likewise cpu_packed.safetensors and
   cpu_packed_expected.safetensors: 4-bit weights as bitsandbytes 0.50 saves them after a CPU
   forward pass (BF16 absmax [K / blocksize, N]; double quantization in float16 / bfloat16),
   written from docs/bnb-cpu-packed.md.
2. Runs LOADER bnb DIR (tests/io/bnb_loader.cpp): lowbit loads every weight, dequantizes it
   (must equal expected.safetensors, and cpu_packed_expected.safetensors, bit for bit), writes everything back (roundtrip.safetensors),
   and quantizes the expected tensors afresh to NF4 + double quant (fresh.safetensors) with its
   own dequantization (fresh_expected.safetensors).
3. Checks: roundtrip.safetensors holds every tensor of bnb.safetensors with the same dtype, shape
   and bytes; fresh.safetensors has exactly the reference's tensor names, dtypes, shapes and
   quant_state JSON (keys, order, json.dumps bytes), and dequantizes here to exactly lowbit's result.
4. With --tool: runs `lowbit quantize` on the shipped sample and checks the folder the same way,
   plus config.json's quantization_config keys.
Exit 0 pass, 1 fail, 77 skipped (numpy missing).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("[  SKIPPED ] numpy is not installed; bitsandbytes interop check not run")
    sys.exit(77)

from interop_common import arr, check, finish, read_st, write_st  # noqa: E402

SEED = int(os.environ.get("LOWBIT_TEST_SEED", "0x10b17"), 0)


# ---- reference tables and formulas -------------------------------------------------------------
NF4_BITS = [0xBF800000, 0xBF3239B1, 0xBF066B30, 0xBECA32A0, 0xBE91A24D, 0xBE3D353F, 0xBDBA7871, 0x00000000,
            0x3DA2FAFF, 0x3E24CAE3, 0x3E7C04DD, 0x3EAD033A, 0x3EE1A4B8, 0x3F1007AB, 0x3F3913B3, 0x3F800000]
# get_4bit_type("fp4"): code 8 is +0.0 (reference §1.2)
FP4_BITS = [0x00000000, 0x3BAAAAAB, 0x3F2AAAAB, 0x3F800000, 0x3EAAAAAB, 0x3F000000, 0x3E2AAAAB, 0x3E800000,
            0x00000000, 0xBBAAAAAB, 0xBF2AAAAB, 0xBF800000, 0xBEAAAAAB, 0xBF000000, 0xBE2AAAAB, 0xBE800000]


def table(bits):
    return np.array(bits, dtype="<u4").view("<f4")


def dynamic_map():
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) in numpy float32 (§1.3);
    its last ulps may differ from torch's, which is why files carry the map."""
    data = []
    for i in range(7):
        fraction_items = 2 ** i + 1
        boundaries = np.linspace(0.1, 1, fraction_items, dtype=np.float32)
        means = ((boundaries[:-1] + boundaries[1:]) / np.float32(2.0)).astype(np.float32)
        scale = np.float32(10.0 ** (-(7 - 1) + i))
        data += list((scale * means).astype(np.float32)) + list((-scale * means).astype(np.float32))
    data += [0.0, 1.0]
    data += [0.0] * (256 - len(data))
    return np.sort(np.array(data, dtype=np.float32))


def to_dtype(values_f32, name):
    """float32 -> the dtype `name`, round to nearest even; returns bytes."""
    if name == "float32":
        return values_f32.astype("<f4").tobytes()
    if name == "float16":
        return values_f32.astype("<f2").tobytes()
    u = values_f32.astype("<f4").view("<u4").astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
    return r.tobytes()


ST_OF = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def unpack(codes, n):
    q = np.empty(2 * len(codes), dtype=np.uint8)
    q[0::2] = codes >> 4
    q[1::2] = codes & 0xF
    return q[:n]


def dequant_4bit(t, w):
    """Reference §3 + §4.1 from the tensors of weight `w` in `t` ({name: entry})."""
    qs_name = [k for k in t if k.startswith(w + ".quant_state.bitsandbytes__")]
    assert len(qs_name) == 1, qs_name
    qs = json.loads(t[qs_name[0]][2].decode("utf-8"))
    n = int(np.prod(qs["shape"]))
    bs = qs["blocksize"]
    q = unpack(arr(t[w]).reshape(-1), n)
    code = arr(t[w + ".quant_map"]).astype(np.float32)
    if "nested_offset" in qs:
        q2 = arr(t[w + ".absmax"]).astype(np.int64)
        absmax2 = arr(t[w + ".nested_absmax"]).astype(np.float32)
        code2 = arr(t[w + ".nested_quant_map"]).astype(np.float32)
        idx = np.arange(len(q2)) // qs["nested_blocksize"]
        absmax = (code2[q2] * absmax2[idx]).astype(np.float32) + np.float32(qs["nested_offset"])
        absmax = absmax.astype(np.float32)
    else:
        absmax = arr(t[w + ".absmax"]).astype(np.float32)
    vals = (code[q] * absmax[np.arange(n) // bs]).astype(np.float32)
    return qs, to_dtype(vals, qs["dtype"])


def dequant_int8(t, prefix):
    q = arr(t[prefix + "weight"]).astype(np.float32)
    scb = arr(t[prefix + "SCB"]).astype(np.float32)
    vals = ((q * scb[:, None]).astype(np.float32) * np.float32(7.874015718698502e-3)).astype(np.float32)
    return vals.astype("<f4").tobytes()  # int8_vectorwise_dequant returns float32


# ---- 1. a bitsandbytes-layout checkpoint ----------------------------------------------------------
def make_4bit(rng, w, shape, quant_type, bs, dtype, nested):
    n = int(np.prod(shape))
    nb = -(-n // bs)
    codes = rng.integers(0, 256, size=(n + 1) // 2, dtype=np.uint8)
    if n % 2:
        codes[-1] = (codes[-1] & 0xF0) | (7 if quant_type == "nf4" else 0)  # padding: the code of 0.0
    out = [(w, "U8", [(n + 1) // 2, 1], codes.tobytes())]
    qmap = table(NF4_BITS if quant_type == "nf4" else FP4_BITS)
    d = {"quant_type": quant_type, "blocksize": bs, "dtype": dtype, "shape": list(shape)}
    if nested:
        q2 = rng.integers(0, 256, size=nb, dtype=np.uint8)
        absmax2 = (rng.random(-(-nb // 256)) * 0.05 + 0.01).astype(np.float32)
        offset = float(np.float32(rng.random() * 0.05 + 0.02))
        out += [(w + ".absmax", "U8", [nb], q2.tobytes()), (w + ".quant_map", "F32", [16], qmap.tobytes()),
                (w + ".nested_absmax", "F32", [len(absmax2)], absmax2.tobytes()),
                (w + ".nested_quant_map", "F32", [256], dynamic_map().tobytes())]
        d.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset})
    else:
        absmax = (rng.random(nb) * 0.1 + 1e-3).astype(np.float32)
        out += [(w + ".absmax", "F32", [nb], absmax.tobytes()), (w + ".quant_map", "F32", [16], qmap.tobytes())]
    js = json.dumps(d).encode("utf-8")
    out.append((w + ".quant_state.bitsandbytes__" + quant_type, "U8", [len(js)], js))
    return out


def make_int8(rng, prefix, shape):
    q = rng.integers(-127, 128, size=shape, dtype=np.int8)
    scb = (rng.random(shape[0]) * 2 + 0.01).astype(np.float32)
    return [(prefix + "weight", "I8", list(shape), q.tobytes()), (prefix + "SCB", "F32", [shape[0]], scb.tobytes()),
            (prefix + "weight_format", "U8", [], bytes([0]))]


WEIGHTS_4BIT = [  # name, shape, quant_type, blocksize, dtype, nested
    ("model.layers.0.mlp.up_proj.weight", [64, 1000], "nf4", 64, "float16", True),
    ("model.layers.0.self_attn.q_proj.weight", [48, 96], "fp4", 128, "float32", False),
    ("model.layers.0.self_attn.k_proj.weight", [5, 13], "nf4", 32, "bfloat16", False),
    ("model.layers.1.mlp.down_proj.weight", [7, 300], "fp4", 256, "bfloat16", True),
]
INT8_PREFIX = "model.layers.0.mlp.gate_proj."


def write_inputs(d, rng):
    tensors = []
    for w, shape, qt, bs, dt, nested in WEIGHTS_4BIT:
        tensors += make_4bit(rng, w, shape, qt, bs, dt, nested)
    tensors += make_int8(rng, INT8_PREFIX, [24, 40])
    bias = rng.standard_normal(64).astype("<f2")
    tensors.append(("model.layers.0.mlp.up_proj.bias", "F16", [64], bias.tobytes()))
    rng.shuffle(tensors)  # data order must not matter
    write_st(os.path.join(d, "bnb.safetensors"), tensors)
    t = {name: (dt, shape, raw) for name, dt, shape, raw in tensors}
    expected = []
    for w, shape, *_ in WEIGHTS_4BIT:
        qs, raw = dequant_4bit(t, w)
        expected.append((w, ST_OF[qs["dtype"]], shape, raw))
    expected.append((INT8_PREFIX + "weight", "F32", [24, 40], dequant_int8(t, INT8_PREFIX)))
    write_st(os.path.join(d, "expected.safetensors"), expected)
    return t


# ---- 1b. 4-bit weights saved after a CPU forward pass (docs/bnb-cpu-packed.md) --------------------
CPU_PACKED = [  # name, shape [N, K], quant_type, blocksize, dtype, nested dtype (None: no double quant)
    ("model.layers.2.mlp.up_proj.weight", [64, 256], "nf4", 64, "bfloat16", None),
    ("model.layers.2.mlp.down_proj.weight", [32, 384], "fp4", 128, "float16", None),
    ("model.layers.2.self_attn.q_proj.weight", [32, 1024], "nf4", 64, "bfloat16", "bfloat16"),  # 512 blocks: 2 nested blocks
    ("model.layers.2.self_attn.k_proj.weight", [64, 64], "fp4", 32, "float16", "float16"),
]


def round16(x, name):
    """float32 -> the nearest float16 / bfloat16 (ties to even), back as float32."""
    raw = to_dtype(np.asarray(x, dtype=np.float32), name)
    if name == "float16":
        return np.frombuffer(raw, dtype="<f2").astype(np.float32)
    return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)


def make_cpu_packed(rng, w, shape, quant_type, bs, dtype, nested):
    """The tensors of one weight and the values it dequantizes to (bytes of `dtype`)."""
    rows, cols = shape
    n, nb, per_row = rows * cols, rows * cols // bs, cols // bs
    codes = rng.integers(0, 256, size=n // 2, dtype=np.uint8)
    qmap = table(NF4_BITS if quant_type == "nf4" else FP4_BITS)
    d = {"quant_type": quant_type, "blocksize": bs, "dtype": dtype, "shape": list(shape)}
    out = [(w, "U8", [n // 2, 1], codes.tobytes()), (w + ".quant_map", "F32", [16], qmap.tobytes())]
    if nested is None:
        # block b = r * per_row + j of row r; the file holds bf16(absmax[b]) at [j, r]
        scales = round16(rng.random(nb) * 0.1 + 1e-3, "bfloat16")
        stored = np.ascontiguousarray(scales.reshape(rows, per_row).T)
        out.append((w + ".absmax", "BF16", [per_row, rows], to_dtype(stored.reshape(-1), "bfloat16")))
    else:
        # absmax re-quantized in the weight's 16-bit dtype: dequantize_blockwise rounds to it, then
        # "absmax += offset" (float32 sum) rounds to it again
        q2 = rng.integers(0, 256, size=nb, dtype=np.uint8)
        absmax2 = (rng.random(-(-nb // 256)) * 0.05 + 0.01).astype(np.float32)
        offset = float(round16(rng.random() * 0.05 + 0.02, nested)[0])
        code2 = dynamic_map()
        v = round16(code2[q2] * absmax2[np.arange(nb) // 256], nested)
        scales = round16(v + np.float32(offset), nested)
        out += [(w + ".absmax", "U8", [nb], q2.tobytes()), (w + ".nested_absmax", "F32", [len(absmax2)], absmax2.tobytes()),
                (w + ".nested_quant_map", "F32", [256], code2.tobytes())]
        d.update({"nested_blocksize": 256, "nested_dtype": nested, "nested_offset": offset})
    js = json.dumps(d).encode("utf-8")
    out.append((w + ".quant_state.bitsandbytes__" + quant_type, "U8", [len(js)], js))
    vals = (qmap[unpack(codes, n)] * scales[np.arange(n) // bs]).astype(np.float32)
    return out, to_dtype(vals, dtype)


def write_cpu_packed(d, rng):
    tensors, expected = [], []
    for w, shape, qt, bs, dt, nested in CPU_PACKED:
        t, raw = make_cpu_packed(rng, w, shape, qt, bs, dt, nested)
        tensors += t
        expected.append((w, ST_OF[dt], shape, raw))
    rng.shuffle(tensors)
    write_st(os.path.join(d, "cpu_packed.safetensors"), tensors)
    write_st(os.path.join(d, "cpu_packed_expected.safetensors"), expected)


# ---- 3. lowbit's output, checked against the reference layout -------------------------------------
def check_4bit_layout(t, w, shape, dtype, quant_type, bs, nested, where):
    n = int(np.prod(shape))
    nb = -(-n // bs)
    qs_name = w + ".quant_state.bitsandbytes__" + quant_type
    want = {w: ("U8", [(n + 1) // 2, 1]), w + ".absmax": ("U8" if nested else "F32", [nb]), w + ".quant_map": ("F32", [16]), qs_name: ("U8", None)}
    if nested:
        want[w + ".nested_absmax"] = ("F32", [-(-nb // 256)])
        want[w + ".nested_quant_map"] = ("F32", [256])
    have = {k for k in t if k == w or k.startswith(w + ".")}
    check(have == set(want), f"{where}: tensors of {w}: {sorted(have)} != {sorted(want)}")
    for k, (dt, sh) in want.items():
        if k not in t:
            continue
        check(t[k][0] == dt, f"{where}: {k} dtype {t[k][0]} != {dt}")
        if sh is not None:
            check(t[k][1] == sh, f"{where}: {k} shape {t[k][1]} != {sh}")
    if qs_name not in t:
        return None
    raw = t[qs_name][2]
    check(len(t[qs_name][1]) == 1 and t[qs_name][1][0] == len(raw), f"{where}: {qs_name} is not 1-D of its byte length")
    qs = json.loads(raw.decode("utf-8"))
    keys = ["quant_type", "blocksize", "dtype", "shape"] + (["nested_blocksize", "nested_dtype", "nested_offset"] if nested else [])
    check(list(qs.keys()) == keys, f"{where}: {qs_name} keys {list(qs.keys())} != {keys}")
    check(json.dumps(qs).encode("utf-8") == raw, f"{where}: {qs_name} is not json.dumps' text: {raw!r}")
    check(qs.get("quant_type") == quant_type and qs.get("blocksize") == bs and qs.get("dtype") == dtype and qs.get("shape") == list(shape),
          f"{where}: {qs_name} values {qs}")
    if nested:
        check(qs.get("nested_blocksize") == 256 and qs.get("nested_dtype") == "float32" and isinstance(qs.get("nested_offset"), float),
              f"{where}: {qs_name} nested values {qs}")
        m = arr(t[w + ".nested_quant_map"])
        check(bool(np.all(np.diff(m) >= 0)) and m[127] == 0.0 and m[255] == 1.0 and abs(float(m[0]) + 0.992968738079071) < 1e-7,
              f"{where}: {w}.nested_quant_map is not the signed dynamic map")
    qmap = arr(t[w + ".quant_map"]).view("<u4")
    check(list(qmap) == (NF4_BITS if quant_type == "nf4" else FP4_BITS), f"{where}: {w}.quant_map is not get_4bit_type({quant_type!r})")
    return qs


def check_outputs(d, original):
    rt = read_st(os.path.join(d, "roundtrip.safetensors"))
    check(set(rt) == set(original), f"roundtrip: names differ: {sorted(set(rt) ^ set(original))}")
    for k, (dt, shape, raw) in original.items():
        if k in rt:
            check(rt[k][0] == dt and rt[k][1] == shape, f"roundtrip: {k}: {rt[k][0]}{rt[k][1]} != {dt}{shape}")
            check(rt[k][2] == raw, f"roundtrip: {k}: bytes differ")
    fresh = read_st(os.path.join(d, "fresh.safetensors"))
    fexp = read_st(os.path.join(d, "fresh_expected.safetensors"))
    for w, shape, _, _, dtype, _ in WEIGHTS_4BIT:
        qs = check_4bit_layout(fresh, w, shape, dtype, "nf4", 64, True, "fresh")
        if qs is not None:
            _, raw = dequant_4bit(fresh, w)
            check(raw == fexp[w][2], f"fresh: {w}: the reference dequantization differs from lowbit's")
    # the int8 weight was quantized afresh to LLM.int8 (row-wise) from its float32 dequantization
    p = INT8_PREFIX
    want = {p + "weight": ("I8", [24, 40]), p + "SCB": ("F32", [24]), p + "weight_format": ("U8", [])}
    for k, (dt, sh) in want.items():
        check(k in fresh and fresh[k][0] == dt and fresh[k][1] == sh, f"fresh: {k}: {fresh.get(k, ('missing',))[:2]} != {dt}{sh}")
    if all(k in fresh for k in want):
        check(fresh[p + "weight_format"][2] == b"\x00", "fresh: weight_format is not 0")
        check(dequant_int8(fresh, p) == fexp[p + "weight"][2], "fresh: int8 reference dequantization differs from lowbit's")
        # row-wise int8 quantization of x: q = round_half_even(x * f32(127 / absmax_row))
        x = arr(read_st(os.path.join(d, "expected.safetensors"))[p + "weight"]).astype(np.float32)
        absmax = np.abs(x).max(axis=1).astype(np.float32)
        check(bool(np.array_equal(arr(fresh[p + "SCB"]), absmax)), "fresh: SCB is not the row absmax")
        q = np.rint(x * (np.float32(127.0) / absmax)[:, None]).astype(np.int8)
        check(bool(np.array_equal(arr(fresh[p + "weight"]), q)), "fresh: int8 codes differ from round(x * 127 / absmax)")


# ---- 4. the command-line tool's folder -------------------------------------------------------------
CONFIG_KEYS = ["_load_in_4bit", "_load_in_8bit", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage", "bnb_4bit_quant_type",
               "bnb_4bit_use_double_quant", "llm_int8_enable_fp32_cpu_offload", "llm_int8_has_fp16_weight", "llm_int8_skip_modules",
               "llm_int8_threshold", "load_in_4bit", "load_in_8bit", "quant_method"]


def check_tool(tool, sample, d):
    out = os.path.join(d, "tool_out")
    r = subprocess.run([tool, "quantize", sample, out, "--quiet"], capture_output=True, text=True)
    check(r.returncode == 0, f"lowbit quantize exited {r.returncode}: {r.stderr}")
    if r.returncode != 0:
        return
    check(sorted(os.listdir(out)) == ["config.json", "model.safetensors"], f"tool output holds {os.listdir(out)}")
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(sample, "config.json")) as f:
        base = json.load(f)
    qc = cfg.get("quantization_config", {})
    check(sorted(qc.keys()) == CONFIG_KEYS, f"quantization_config keys {sorted(qc.keys())}")
    check(qc.get("quant_method") == "bitsandbytes" and qc.get("load_in_4bit") is True and qc.get("load_in_8bit") is False
          and qc.get("bnb_4bit_quant_type") == "nf4" and qc.get("bnb_4bit_use_double_quant") is True
          and qc.get("bnb_4bit_compute_dtype") == "bfloat16" and qc.get("llm_int8_threshold") == 6.0, f"quantization_config values {qc}")
    check({k: v for k, v in cfg.items() if k != "quantization_config"} == base, "config.json lost keys of the input's config")
    src = read_st(os.path.join(sample, "model.safetensors"))
    q = read_st(os.path.join(out, "model.safetensors"))
    for name, (dt, shape, raw) in src.items():
        if len(shape) == 2:
            check_4bit_layout(q, name, shape, "float16", "nf4", 64, True, "tool")
            _, deq = dequant_4bit(q, name)
            x = arr(src[name]).astype(np.float32).reshape(-1)
            y = np.frombuffer(deq, "<f2").astype(np.float32)
            err = float(np.abs(x - y).mean() / np.abs(x).mean())
            check(err < 0.15, f"tool: {name}: relative mean error {err:.3f} of the NF4 weight is too large")
        else:
            check(q.get(name) == (dt, shape, raw), f"tool: {name} not passed through unchanged")


def main():
    args = sys.argv[1:]
    opts = dict(zip(args[0::2], args[1::2]))
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory(prefix="lowbit_interop_") as d:
        original = write_inputs(d, rng)
        write_cpu_packed(d, rng)
        r = subprocess.run([opts["--loader"], "bnb", d], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        check(r.returncode == 0, f"loader exited {r.returncode}")
        if r.returncode == 0:
            check_outputs(d, original)
        if "--tool" in opts:
            check_tool(opts["--tool"], opts["--sample"], d)
    return finish("bitsandbytes interop", SEED)


if __name__ == "__main__":
    sys.exit(main())
