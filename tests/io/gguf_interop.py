#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""lowbit's GGUF files against the two references users have: the `gguf` package (llama.cpp's own
Python reader and writer) and ggml's reference quantizers (quantize_row_*_ref, dequantize_row_*
from ggml-quants.c, built as lowbit_ggml_reference and called here through ctypes).

    gguf_interop.py --loader GGUF_LOADER --ggml-lib LIBLOWBIT_GGML_REFERENCE.so

1. lowbit writes: a seeded float32 matrix goes to `gguf_loader write`, which writes one tensor per
   ggml type lowbit handles (F32, F16, BF16, Q8_0, Q4_0, Q4_1, MXFP4) and metadata of several
   value types with general.alignment = 64. gguf.GGUFReader must read it: every key with its type
   and value, every tensor with its type, shape (ggml order) and bytes, and those bytes must be
   ggml's own quantization of the same matrix (numpy's astype for F32/F16, ggml's BF16 rule).
2. lowbit reads: gguf.GGUFWriter writes a file of tensors quantized by ggml's reference functions
   (plus an F32 tensor and a Q4_K tensor lowbit does not decode); `gguf_loader dump` must list
   every key and tensor, and its dequantization of each handled tensor must equal ggml's
   dequantize_row_* bit for bit.
3. With --tool and --sample: `lowbit convert SAMPLE OUT --to gguf-q4_0` on the shipped checkpoint;
   gguf.GGUFReader reads OUT/model.gguf, every 2-D weight's bytes are ggml's quantization of the
   sample's values and every 1-D tensor is F32, and the error report the tool prints (max and mean
   |err|, SQNR per tensor) matches the same figures computed here from ggml's dequantization.
4. With --tool and --sample, a chain bitsandbytes NF4 -> GGUF Q4_0 -> dense: `lowbit quantize`
   (NF4, double quantization), `lowbit convert --to gguf-q4_0`, `lowbit convert --to
   safetensors-f32`. Here the NF4 weights are decoded from the file's own tensors by bitsandbytes'
   documented formula (codes through quant_map, absmax through nested_quant_map, nested_absmax and
   the quant_state's nested_offset, float32 products); the GGUF bytes must be ggml's Q4_0 of those
   values, the printed figures their error, and the dense output ggml's dequantization, bit for bit.
Exit 0 pass, 1 fail, 77 skipped (numpy, the gguf package or the ggml library missing).
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import gguf
except ImportError as e:
    print(f"[  SKIPPED ] {e.name} is not installed; GGUF interop check not run (.ci/run installs numpy and gguf)")
    sys.exit(77)

from interop_common import FAILURES, check, check_figures, printed_figures, read_st  # noqa: E402

SEED = int(os.environ.get("LOWBIT_TEST_SEED", "0x10b17"), 0)
BLOCK_TYPES = {"q8_0": (8, 34), "q4_0": (2, 18), "q4_1": (3, 20), "mxfp4": (39, 17)}


def ggml_quantize(lib, name, x):
    _, nbytes = BLOCK_TYPES[name]
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.zeros(x.size // 32 * nbytes, dtype=np.uint8)
    fn = getattr(lib, f"quantize_row_{name}_ref")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn(x.ctypes.data, out.ctypes.data, x.size)
    return out


def ggml_dequantize(lib, name, blocks, n):
    out = np.zeros(n, dtype=np.float32)
    blocks = np.ascontiguousarray(blocks, dtype=np.uint8)
    fn = getattr(lib, f"dequantize_row_{name}")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn(blocks.ctypes.data, out.ctypes.data, n)
    return out


def bf16_bytes(x):
    # ggml_compute_fp32_to_bf16: round to nearest even; a NaN keeps its top bits, quiet bit set.
    u = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    r[nan] = ((u[nan] >> 16) | 64).astype(np.uint16)
    return r.view(np.uint8)


def field_value(f):
    return f.contents()


def lowbit_writes(loader, lib, work, rng):
    rows, cols = 6, 160
    x = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    x[1, 7] = 3.0   # an outlier
    x[2, :32] = 0.0  # a zero block
    src = os.path.join(work, "in.f32")
    x.tofile(src)
    path = os.path.join(work, "lowbit.gguf")
    subprocess.run([loader, "write", path, src, str(rows), str(cols)], check=True)
    r = gguf.GGUFReader(path)
    check(r.alignment == 64, f"alignment {r.alignment}, expected 64")
    want = {
        "general.architecture": (gguf.GGUFValueType.STRING, "lowbit-test"),
        "general.alignment": (gguf.GGUFValueType.UINT32, 64),
        "test.count": (gguf.GGUFValueType.UINT64, 1 << 40),
        "test.offset": (gguf.GGUFValueType.INT32, -7),
        "test.flag": (gguf.GGUFValueType.BOOL, True),
        "test.ratio": (gguf.GGUFValueType.FLOAT64, 0.1),
        "test.scores": (gguf.GGUFValueType.ARRAY, [0.25, -1.5, 3.0]),
        "tokenizer.ggml.tokens": (gguf.GGUFValueType.ARRAY, ["<s>", "</s>", "\u2581lowbit", ""]),
    }
    for key, (vtype, value) in want.items():
        f = r.get_field(key)
        check(f is not None, f"key {key} missing in gguf's reading")
        if f is None:
            continue
        check(f.types[0] == vtype, f"{key}: type {f.types}, expected {vtype}")
        got = field_value(f)
        if isinstance(value, list):
            got = list(got)
        check(got == value, f"{key}: {got!r}, expected {value!r}")
    expected = {
        "f32": (0, x.view(np.uint8).reshape(-1)),
        "f16": (1, x.astype(np.float16).view(np.uint8).reshape(-1)),
        "bf16": (30, bf16_bytes(x.reshape(-1))),
    }
    for name in BLOCK_TYPES:
        expected[name] = (BLOCK_TYPES[name][0], ggml_quantize(lib, name, x))
    seen = set()
    for t in r.tensors:
        name = t.name[2:]
        seen.add(name)
        if name not in expected:
            check(False, f"unexpected tensor {t.name}")
            continue
        tid, data = expected[name]
        check(int(t.tensor_type) == tid, f"{t.name}: type {int(t.tensor_type)}, expected {tid}")
        check(list(t.shape) == [cols, rows], f"{t.name}: shape {list(t.shape)} (ggml order), expected {[cols, rows]}")
        got = np.asarray(t.data).view(np.uint8).reshape(-1)
        check(got.size == data.size and np.array_equal(got, data), f"{t.name}: bytes differ from ggml's quantization of the same matrix")
        check(t.data_offset % 64 == 0, f"{t.name}: data offset {t.data_offset} not 64-aligned")
    check(seen == set(expected), f"tensors {sorted(seen)}, expected {sorted(expected)}")


def lowbit_reads(loader, lib, work, rng):
    path = os.path.join(work, "gguf.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint32("llama.block_count", 3)
    w.add_int64("test.big", -(1 << 50))
    w.add_float32("test.eps", 1e-5)
    w.add_bool("test.off", False)
    w.add_array("test.ids", [3, 1, 4, 1, 5])
    w.add_token_list(["a", "b\u00e9", ""])
    rows, cols = 5, 96
    x = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
    x[0, 0] = -1.0
    blocks = {}
    for name, (tid, nbytes) in BLOCK_TYPES.items():
        b = ggml_quantize(lib, name, x).reshape(rows, cols // 32 * nbytes)
        # every scale byte pattern in one row: random bytes dequantize too
        b[4] = rng.integers(0, 256, size=b.shape[1], dtype=np.uint8)
        blocks[name] = b
        w.add_tensor(f"w.{name}", b, raw_dtype=gguf.GGMLQuantizationType(tid))
    w.add_tensor("w.f32", x)
    k = np.zeros((2, 144), dtype=np.uint8)  # two Q4_K rows of 256 elements: listed, not decoded
    w.add_tensor("w.q4_K", k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = os.path.join(work, "dump")
    os.mkdir(out)
    p = subprocess.run([loader, "dump", path, out], capture_output=True, text=True)
    check(p.returncode == 0, f"gguf_loader dump failed: {p.stderr.strip()}")
    lines = p.stdout.splitlines()
    kv = {l.split(" ", 2)[1]: l.split(" ", 2)[2] for l in lines if l.startswith("kv ")}
    check(kv.get("general.architecture") == "str 0 1 llama", f"general.architecture: {kv.get('general.architecture')!r}")
    check(kv.get("llama.block_count") == "u32 0 1 3", f"llama.block_count: {kv.get('llama.block_count')!r}")
    check(kv.get("test.big") == f"i64 0 1 {-(1 << 50)}", f"test.big: {kv.get('test.big')!r}")
    check(kv.get("test.eps") == f"f32 0 1 {float(np.float32(1e-5)):.17g}", f"test.eps: {kv.get('test.eps')!r}")
    check(kv.get("test.off") == "bool 0 1 0", f"test.off: {kv.get('test.off')!r}")
    check(kv.get("test.ids", "").startswith("i32 1 5 3") or kv.get("test.ids", "").startswith("i64 1 5 3") or
          kv.get("test.ids", "").startswith("u8 1 5 3"), f"test.ids: {kv.get('test.ids')!r}")
    check(kv.get("tokenizer.ggml.tokens") == "str 1 3 a", f"tokenizer.ggml.tokens: {kv.get('tokenizer.ggml.tokens')!r}")
    tensors = {l.split()[1]: l.split()[2:] for l in lines if l.startswith("tensor ")}
    check(tensors.get("w.q4_K") == ["q4_K", "256", "2"], f"w.q4_K listed as {tensors.get('w.q4_K')}")
    check(tensors.get("w.f32") == ["f32", str(cols), str(rows)], f"w.f32 listed as {tensors.get('w.f32')}")
    got = np.fromfile(os.path.join(out, "w.f32.f32"), dtype=np.float32)
    check(np.array_equal(got.view(np.uint32), x.reshape(-1).view(np.uint32)), "w.f32 read back differs")
    for name, b in blocks.items():
        check(tensors.get(f"w.{name}") == [name, str(cols), str(rows)], f"w.{name} listed as {tensors.get('w.' + name)}")
        f = os.path.join(out, f"w.{name}.f32")
        if not os.path.exists(f):
            check(False, f"w.{name} was not dequantized")
            continue
        got = np.fromfile(f, dtype=np.float32)
        ref = ggml_dequantize(lib, name, b, rows * cols)
        same = np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        check(same, f"w.{name}: lowbit's dequantization differs from ggml's dequantize_row_{name} "
                    f"(first at {int(np.argmax(got.view(np.uint32) != ref.view(np.uint32))) if got.size == ref.size else 'size'})")
    check(not os.path.exists(os.path.join(out, "w.q4_K.f32")), "a Q4_K tensor was 'dequantized'")


def read_safetensors(path):
    import json
    import struct
    with open(path, "rb") as f:
        b = f.read()
    (n,) = struct.unpack("<Q", b[:8])
    h = json.loads(b[8:8 + n])
    out = {}
    np_dtype = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}
    for name, t in h.items():
        if name == "__metadata__":
            continue
        s, e = t["data_offsets"]
        a = np.frombuffer(b[8 + n + s:8 + n + e], dtype=np_dtype[t["dtype"]])
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.astype(np.float32).reshape(t["shape"])
    return out


def tool_converts(tool, sample, lib, work):
    out = os.path.join(work, "converted")
    p = subprocess.run([tool, "convert", "--quiet", sample, out, "--to", "gguf-q4_0"], capture_output=True, text=True)
    check(p.returncode == 0, f"lowbit convert failed: {p.stderr.strip()}")
    if p.returncode != 0:
        return
    src = read_safetensors(os.path.join(sample, "model.safetensors"))
    r = gguf.GGUFReader(os.path.join(out, "model.gguf"))
    reported = printed_figures(p.stdout, "q4_0")
    tensors = {t.name: t for t in r.tensors}
    check(set(tensors) == set(src), f"tensors {sorted(tensors)} differ from the sample's {sorted(src)}")
    for name, x in src.items():
        t = tensors.get(name)
        if t is None:
            continue
        check(list(t.shape) == list(reversed(x.shape)), f"{name}: shape {list(t.shape)} (ggml order) for {list(x.shape)}")
        if x.ndim == 1:
            check(t.tensor_type == gguf.GGMLQuantizationType.F32, f"{name}: 1-D tensor as {t.tensor_type.name}, expected F32")
            check(np.array_equal(np.asarray(t.data).reshape(-1).view(np.uint32), x.reshape(-1).view(np.uint32)), f"{name}: F32 values differ")
            continue
        check(t.tensor_type == gguf.GGMLQuantizationType.Q4_0, f"{name}: {t.tensor_type.name}, expected Q4_0")
        want = ggml_quantize(lib, "q4_0", x)
        got = np.asarray(t.data).view(np.uint8).reshape(-1)
        check(np.array_equal(got, want), f"{name}: bytes differ from ggml's quantize_row_q4_0_ref of the sample")
        check_figures(reported.get(name), x, ggml_dequantize(lib, "q4_0", want, x.size), name)


def nf4_values(t, w):
    """bitsandbytes 4-bit weight `w` of raw tensors `t`, decoded with the tables the file carries:
    element 2j in the high nibble; absmax[i] = f32(f32(nested_quant_map[c] * nested_absmax[i // 256])
    + nested_offset); x = f32(quant_map[q] * absmax[i // blocksize])."""
    import json
    qs = json.loads([v for k, v in t.items() if k.startswith(w + ".quant_state.")][0][2].decode())
    n = int(np.prod(qs["shape"]))
    codes = np.frombuffer(t[w][2], np.uint8)
    q = np.empty(2 * codes.size, np.uint8)
    q[0::2], q[1::2] = codes >> 4, codes & 15
    f32 = lambda name: np.frombuffer(t[name][2], "<f4")
    c2 = np.frombuffer(t[w + ".absmax"][2], np.uint8).astype(np.int64)
    absmax = (f32(w + ".nested_quant_map")[c2] * f32(w + ".nested_absmax")[np.arange(c2.size) // qs["nested_blocksize"]]).astype(np.float32)
    absmax = (absmax + np.float32(qs["nested_offset"])).astype(np.float32)
    return (f32(w + ".quant_map")[q[:n]] * absmax[np.arange(n) // qs["blocksize"]]).astype(np.float32).reshape(qs["shape"])


def tool_chains(tool, sample, lib, work):
    nf4, g, dense = (os.path.join(work, k) for k in ("chain_nf4", "chain_gguf", "chain_dense"))
    for cmd in (["quantize", "--quiet", "--no-report", sample, nf4], ["convert", "--quiet", nf4, g, "--to", "gguf-q4_0"],
                ["convert", "--quiet", os.path.join(g, "model.gguf"), dense, "--to", "safetensors-f32"]):
        p = subprocess.run([tool] + cmd, capture_output=True, text=True)
        check(p.returncode == 0, f"lowbit {' '.join(cmd[:1] + cmd[-2:])} failed: {p.stderr.strip()}")
        if p.returncode != 0:
            return
        if cmd[0] == "convert" and cmd[-1] == "gguf-q4_0":
            printed = p.stdout
    reported = printed_figures(printed, "q4_0")
    t = read_st(os.path.join(nf4, "model.safetensors"))
    r = {x.name: x for x in gguf.GGUFReader(os.path.join(g, "model.gguf")).tensors}
    back = read_safetensors(os.path.join(dense, "model.safetensors"))
    weights = [k for k in t if any(c.startswith(k + ".quant_state.") for c in t)]
    check(len(weights) == 6, f"chain: {len(weights)} NF4 weights in the sample's quantization, expected 6")
    for w in weights:
        x = nf4_values(t, w)
        want = ggml_quantize(lib, "q4_0", x)
        check(w in r and np.array_equal(np.asarray(r[w].data).view(np.uint8).reshape(-1), want), f"chain: {w}: GGUF bytes are not ggml's Q4_0 of the NF4 values")
        y = ggml_dequantize(lib, "q4_0", want, x.size)
        check(w in back and back[w].reshape(-1).view(np.uint32).tobytes() == y.astype(np.float32).view(np.uint32).tobytes(),
              f"chain: {w}: the dense output is not ggml's dequantization of the Q4_0 bytes")
        check_figures(reported.get(w), x, y, f"chain: {w}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loader", required=True)
    ap.add_argument("--ggml-lib")
    ap.add_argument("--tool")
    ap.add_argument("--sample")
    a = ap.parse_args()
    if not a.ggml_lib or not os.path.exists(a.ggml_lib):
        print("[  SKIPPED ] ggml's reference library was not built (its source is fetched by .ci/run); GGUF interop check not run")
        return 77
    lib = ctypes.CDLL(a.ggml_lib)
    rng = np.random.default_rng(SEED)
    with tempfile.TemporaryDirectory() as work:
        lowbit_writes(a.loader, lib, work, rng)
        lowbit_reads(a.loader, lib, work, rng)
        if a.tool and a.sample:
            tool_converts(a.tool, a.sample, lib, work)
            tool_chains(a.tool, a.sample, lib, work)
    if FAILURES:
        print(f"{len(FAILURES)} failure(s); LOWBIT_TEST_SEED={SEED:#x}")
        return 1
    try:
        from importlib.metadata import version
        v = version("gguf")
    except Exception:  # a gguf on PYTHONPATH without its metadata
        v = "unknown"
    print(f"gguf interop: OK (gguf {v}; LOWBIT_TEST_SEED={SEED:#x})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
