#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Independent numpy reference of lowbit's block-scaled formats (numpy only; no torch, no lowbit
code). Written from the definitions: OCP Microscaling v1.0 (§5.4.1 E8M0, §6.3 the shared-exponent
rule, element casts with saturation), the OCP FP8/FP6/FP4 element formats (bias, no Inf/NaN for
FP6/FP4, E4M3 max 448), torchao's scale modes (RCEIL, CEIL, EVEN in
torchao/prototype/mx_formats/mx_tensor.py) and nvfp4_quantize (nvfp4_tensor.py), DeepSeek-V3's
act_quant / weight_dequant (inference/kernel.py), as docs/formats.md restates them.

    blockscaled_numpy.py --dump BLOCKSCALED_DUMP

For each case it writes a seeded float32 matrix (normal values over a wide exponent range, exact
code values and midpoints between codes (ties), zero tiles, a tile of subnormals), runs the dump
helper, and requires the codes, scales, per-tensor float32 and float32 dequantization to equal
this file's, byte for byte. Exit 0 pass, 1 fail, 77 skipped (numpy missing).
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("[  SKIPPED ] numpy is not installed; block-scaled numpy reference not run")
    sys.exit(77)

SEED = int(os.environ.get("LOWBIT_TEST_SEED", "0x10b17"), 0)
F32 = np.float32


class Minifloat:
    """A sign + ebits + mbits format with subnormals; `fn`: only the all-ones code is NaN (E4M3);
    `ieee`: the top exponent is Inf/NaN (E5M2); `finite`: every code is a number (FP6, FP4)."""

    def __init__(self, ebits, mbits, bias, specials):
        self.ebits, self.mbits, self.bias, self.specials = ebits, mbits, bias, specials
        self.sign_bit = 1 << (ebits + mbits)
        mags = []
        for code in range(self.sign_bit):
            e, m = code >> mbits, code & ((1 << mbits) - 1)
            if specials == "ieee" and e == (1 << ebits) - 1:
                break
            if specials == "fn" and code == self.sign_bit - 1:
                break
            mags.append(float(m) * 2.0 ** (1 - bias - mbits) if e == 0 else (1 + m / 2.0 ** mbits) * 2.0 ** (e - bias))
        self.values = np.array(mags, dtype=np.float64)  # magnitude code k has value values[k]
        self.max = self.values[-1]

    def encode(self, v):
        """Round-to-nearest-even with saturation to +-max (float32 input array)."""
        v = np.asarray(v, dtype=np.float32)
        a = np.abs(v.astype(np.float64))
        hi = np.clip(np.searchsorted(self.values, a, side="left"), 0, len(self.values) - 1)
        lo = np.clip(hi - 1, 0, None)
        dl, dh = a - self.values[lo], self.values[hi] - a
        pick = np.where(dh < dl, hi, np.where(dl < dh, lo, np.where(hi % 2 == 0, hi, lo)))
        pick = np.where(a >= self.max, len(self.values) - 1, pick)
        code = pick.astype(np.uint32) | np.where(np.signbit(v), self.sign_bit, 0).astype(np.uint32)
        nan = self.sign_bit - 1 if self.specials == "fn" else (len(self.values) | 3 if self.specials == "ieee" else len(self.values) - 1)
        return np.where(np.isnan(v), nan, code).astype(np.uint8)

    def decode(self, c):
        c = np.asarray(c, dtype=np.uint32)
        mag = c & (self.sign_bit - 1)
        val = self.values[np.clip(mag, 0, len(self.values) - 1)]
        val = np.where(mag >= len(self.values), np.nan, val)
        return np.where(c & self.sign_bit, -val, val).astype(np.float32)


E4M3 = Minifloat(4, 3, 7, "fn")
E5M2 = Minifloat(5, 2, 15, "ieee")
E2M3 = Minifloat(2, 3, 1, "finite")
E3M2 = Minifloat(3, 2, 3, "finite")
E2M1 = Minifloat(2, 1, 1, "finite")
# element format, emax (exponent of its largest normal, OCP MX v1.0 table), mantissa bits, bits
MX = {"mxfp8_e4m3": (E4M3, 8, 3, 8), "mxfp8_e5m2": (E5M2, 15, 2, 8), "mxfp6_e2m3": (E2M3, 2, 3, 6),
      "mxfp6_e3m2": (E3M2, 4, 2, 6), "mxfp4": (E2M1, 2, 1, 4)}


def floor_log2(a):
    """floor(log2 a) for finite a > 0 (float64, exact)."""
    m, e = np.frexp(a)
    return e - 1


def mx_scale(amax, fmt, rule):
    elem, emax, mbits, _ = MX[fmt]
    a = amax.astype(np.float64)
    with np.errstate(all="ignore"):
        safe = np.where((a > 0) & np.isfinite(a), a, 1.0)
        if rule == "floor":
            k = floor_log2(safe) - emax
        elif rule == "ceil":
            k = floor_log2(safe) + (np.exp2(floor_log2(safe)) != safe) - emax
        elif rule == "even":
            e = floor_log2(safe)
            q = np.exp2(e - mbits)
            r = np.floor(safe / q + 0.5) * q  # mantissa rounded to mbits, half away from zero
            k = floor_log2(r) - emax
            k = np.where(safe < 2.0 ** -126, -1000, k)
            over = r >= 2.0 ** 128
        elif rule == "rceil":
            d = (amax.astype(np.float32) * F32(1.0 / elem.max)).astype(np.float64)  # one float32 rounding
            dm, de = np.frexp(np.where(d > 0, d, 1.0))
            k = np.where(dm == 0.5, de - 1, de)
            k = np.where(d > 0, k, -1000)
            over = k > 127
        k = np.where(a > 0, k, -1000)
        code = np.clip(k, -127, 127) + 127
        if rule in ("even", "rceil"):
            code = np.where(over, 255, code)
        code = np.where(np.isfinite(a), code, 255)
    return code.astype(np.uint8)


def e8m0_value(code, exponent_sign):
    """2^(s - 127) (exponent_sign 1) or the multiplier 2^(127 - s) (-1), float32, 0xFF NaN."""
    c = code.astype(np.int64)
    v = np.exp2(exponent_sign * (c - 127).astype(np.float64)).astype(np.float32)
    return np.where(c == 255, np.float32(np.nan), v)


def tiles(x, tr, tc):
    rows, cols = x.shape
    for ti in range(0, rows, tr):
        for tj in range(0, cols, tc):
            yield ti // tr, tj // tc, x[ti:ti + tr, tj:tj + tc]


def reference(fmt, rule, conv, x, tr, tc):
    rows, cols = x.shape
    gr, gc = -(-rows // tr), -(-cols // tc)
    codes = np.zeros(x.shape, dtype=np.uint8)
    deq = np.zeros(x.shape, dtype=np.float32)
    glob = F32(1.0)
    if fmt == "fp8_e4m3_block":
        scales = np.zeros((gr, gc), dtype=np.float32)
        elem = E4M3
    else:
        scales = np.zeros((gr, gc), dtype=np.uint8)
        elem = E2M1 if fmt == "nvfp4" else MX[fmt][0]
    if fmt == "nvfp4" and conv != "none":
        amax_t = np.max(np.abs(x))
        t = F32(amax_t / F32(2688.0))
        glob = t if conv == "scale" else F32(F32(2688.0) / amax_t)
    for i, j, blk in tiles(x, tr, tc):
        amax = np.max(np.abs(blk)).astype(np.float32)
        sl = np.s_[i * tr:i * tr + blk.shape[0], j * tc:j * tc + blk.shape[1]]
        if fmt == "fp8_e4m3_block":  # DeepSeek-V3: s = amax / 448, q = x / s, dequant q * s
            s = F32(amax / F32(448.0))
            scales[i, j] = s
            c = np.zeros(blk.shape, np.uint8) if s == 0 else elem.encode(blk / s)
            codes[sl] = c
            deq[sl] = elem.decode(c) * s
        elif fmt == "nvfp4":  # torchao nvfp4_quantize, written out
            block = F32(amax / F32(6.0))
            v = block / glob if conv == "scale" else (block * glob if conv == "inverse" else block)
            v = F32(min(max(v, F32(2.0 ** -6)), F32(448.0)))
            sc = E4M3.encode(np.array([v], np.float32))[0]
            b = E4M3.decode(np.array([sc]))[0]
            m = F32(F32(1.0) / glob) / b if conv == "scale" else (glob / b if conv == "inverse" else F32(1.0) / b)
            scales[i, j] = sc
            c = E2M1.encode(blk * F32(m))
            codes[sl] = c
            f = b * glob if conv == "scale" else (b / glob if conv == "inverse" else b)
            deq[sl] = E2M1.decode(c) * F32(f)
        else:
            s = mx_scale(np.array([amax]), fmt, rule)[0]
            scales[i, j] = s
            c = elem.encode(blk * e8m0_value(np.array([s]), -1)[0])
            codes[sl] = c
            deq[sl] = elem.decode(c) * e8m0_value(np.array([s]), 1)[0]
    return codes, scales, glob, deq


def pack(fmt, codes, fp6):
    flat = codes.reshape(-1).astype(np.uint32)
    bits = 4 if fmt in ("mxfp4", "nvfp4") else (6 if fmt.startswith("mxfp6") else 8)
    if bits == 4:  # OCP FP4: element 2j in the low nibble
        return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8).tobytes()
    if bits == 6 and fp6 == "packed":  # 4 codes -> 24-bit little-endian word, element 4j lowest
        w = flat[0::4] | (flat[1::4] << 6) | (flat[2::4] << 12) | (flat[3::4] << 18)
        return np.stack([w & 0xFF, (w >> 8) & 0xFF, (w >> 16) & 0xFF], axis=-1).astype(np.uint8).tobytes()
    return flat.astype(np.uint8).tobytes()


def make_input(rng, rows, cols, elem):
    x = (rng.standard_normal((rows, cols)) * np.exp2(rng.integers(-40, 40, (rows, 1)))).astype(np.float32)
    # exact code values and midpoints (ties) of the element format, at scale 2^0 (amax set below)
    vals = np.concatenate([elem.values, (elem.values[1:] + elem.values[:-1]) / 2])
    n = min(cols, vals.size)
    x[0, :n] = (vals[:n] * np.where(rng.integers(0, 2, n) == 1, -1, 1)).astype(np.float32)
    x[0, 0] = elem.max
    if rows > 2:
        x[1, :] = 0.0  # zero tiles
        x[2, :] = (rng.standard_normal(cols) * 1e-40).astype(np.float32)  # subnormal inputs
    return x


CASES = [
    # fmt, rule, nvfp4 convention, fp6 packing, rows, cols, tile
    ("mxfp8_e4m3", "floor", "scale", "packed", 9, 96, (1, 32)),
    ("mxfp8_e4m3", "rceil", "scale", "packed", 9, 80, (1, 32)),
    ("mxfp8_e5m2", "floor", "scale", "packed", 5, 64, (1, 32)),
    ("mxfp8_e5m2", "ceil", "scale", "packed", 5, 64, (1, 32)),
    ("mxfp6_e2m3", "floor", "scale", "packed", 6, 64, (1, 32)),
    ("mxfp6_e3m2", "even", "scale", "unpacked", 6, 64, (1, 32)),
    ("mxfp6_e3m2", "rceil", "scale", "packed", 4, 96, (1, 32)),
    ("mxfp4", "floor", "scale", "packed", 7, 64, (1, 32)),
    ("mxfp4", "even", "scale", "packed", 7, 48, (1, 32)),
    ("mxfp4", "rceil", "scale", "packed", 3, 64, (1, 32)),
    ("nvfp4", "floor", "scale", "packed", 6, 64, (1, 16)),
    ("nvfp4", "floor", "inverse", "packed", 6, 64, (1, 16)),
    ("nvfp4", "floor", "none", "packed", 6, 64, (1, 16)),
    ("nvfp4", "floor", "scale", "packed", 40, 36, (16, 16)),
    ("fp8_e4m3_block", "floor", "scale", "packed", 260, 200, (128, 128)),
    ("fp8_e4m3_block", "floor", "scale", "packed", 5, 300, (1, 128)),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    failures = 0
    with tempfile.TemporaryDirectory() as d:
        for fmt, rule, conv, fp6, rows, cols, (tr, tc) in CASES:
            elem = E4M3 if fmt == "fp8_e4m3_block" else (E2M1 if fmt == "nvfp4" else MX[fmt][0])
            x = make_input(rng, rows, cols, elem)
            src = os.path.join(d, "in.f32")
            x.tofile(src)
            out = os.path.join(d, "out")
            r = subprocess.run([args.dump, fmt, rule, conv, fp6, str(rows), str(cols), str(tr), str(tc), src, out],
                               capture_output=True, text=True)
            name = "%s rule=%s conv=%s fp6=%s %dx%d tile %dx%d" % (fmt, rule, conv, fp6, rows, cols, tr, tc)
            if r.returncode != 0:
                print("FAIL:", name, r.stderr.strip())
                failures += 1
                continue
            codes, scales, glob, deq = reference(fmt, rule, conv, x, tr, tc)
            got = {k: open(out + "." + k, "rb").read() for k in ("codes", "scales", "global", "deq")}
            want = {"codes": pack(fmt, codes, fp6), "scales": scales.tobytes(), "global": np.float32(glob).tobytes(),
                    "deq": deq.tobytes()}
            for k in want:
                if got[k] != want[k]:
                    a = np.frombuffer(got[k], np.uint8)
                    b = np.frombuffer(want[k], np.uint8)
                    bad = np.nonzero(a[:b.size] != b[:a.size])[0] if a.size == b.size else []
                    print("FAIL: %s: %s differ (%d vs %d bytes; first differing byte %s)" %
                          (name, k, a.size, b.size, bad[0] if len(bad) else "-"))
                    failures += 1
            print("ok  " if not failures else "    ", name)
    if failures:
        print("%d failures (LOWBIT_TEST_SEED=%d)" % (failures, SEED))
        return 1
    print("block-scaled numpy reference: %d cases bit-exact" % len(CASES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
