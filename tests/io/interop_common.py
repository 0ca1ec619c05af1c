# SPDX-License-Identifier: Apache-2.0
"""Pieces the independent interop checks share (numpy + json; no lowbit code): failure
bookkeeping, a safetensors writer and reader written from the format description (8-byte header
length, JSON header, raw little-endian data), and the comparison of the error figures `lowbit
quantize` / `lowbit convert` print with the same figures computed here in float64.

Import it after checking that numpy is installed (the scripts exit 77 without it)."""
import json
import struct

import numpy as np

FAILURES = []

# numpy dtypes of the safetensors dtypes the checks use (BF16 and the 8-bit floats as raw bits)
NP = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "F8_E4M3": "u1", "U8": "u1", "I8": "i1", "I32": "<i4", "I64": "<i8"}


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def finish(name, seed):
    """The exit code of a check script: 1 (printing the seed) after any failure, else 0."""
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed; LOWBIT_TEST_SEED={seed:#x}")
        return 1
    print(f"{name}: all checks passed")
    return 0


def write_st(path, tensors):
    """tensors: list of (name, dtype string, shape, bytes); the header padded to 8 bytes."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_st(path):
    """{name: (dtype, shape, bytes)}"""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        out[name] = (e["dtype"], list(e["shape"]), data[8 + n + b : 8 + n + t])
    return out


def arr(entry):
    dt, shape, raw = entry
    return np.frombuffer(raw, dtype=NP[dt]).reshape(shape)


def printed_figures(stdout, fmt=None):
    """{tensor: (max|err|, mean|err|, SQNR)} from the lines `NAME FORMAT B bits max|err| X
    mean|err| Y SQNR Z dB` the tool prints (only FORMAT `fmt` when given)."""
    out = {}
    for line in stdout.splitlines():
        f = line.split()
        if len(f) >= 11 and f[3] == "bits" and f[4] == "max|err|" and (fmt is None or f[1] == fmt):
            out[f[0]] = (float(f[5]), float(f[7]), float(f[9]))
    return out


def check_figures(reported, x, y, what):
    """The tool's figures `reported` for input x and dequantization y against float64 ones here:
    max and mean |x - y| within 1e-3 relative, SQNR 10 log10(sum x^2 / sum (x - y)^2) within
    0.006 dB (the tool sums float32 lanes over spans of 2048, then double)."""
    e = x.reshape(-1).astype(np.float64) - y.reshape(-1).astype(np.float64)
    maxe, meane = np.abs(e).max(), np.abs(e).mean()
    sqnr = 10 * np.log10((x.astype(np.float64) ** 2).sum() / (e ** 2).sum())
    ok = reported is not None and abs(reported[0] - maxe) <= 1e-3 * maxe and abs(reported[1] - meane) <= 1e-3 * meane and abs(reported[2] - sqnr) <= 0.006
    check(ok, f"{what}: reported {reported}; numpy max|err| {maxe:.4g}, mean|err| {meane:.4g}, SQNR {sqnr:.3f}")
