#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Times `lowbit quantize` on a synthetic float16 checkpoint of about 1 GB (16 weights [4096, 8192],
# normal values) next to reading the same bytes (cat > /dev/null) and copying them (cp), each with
# the file in the page cache, so that the three figures are comparable.
#
#   bench/quantize_checkpoint.sh path/to/lowbit [WORKDIR]    (WORKDIR default: /tmp/lowbit_bench)
#
# Needs python3 with numpy to write the input. Not a test: nothing here asserts a speed.
set -euo pipefail
tool=$1
work=${2:-/tmp/lowbit_bench}
mkdir -p "$work"
in="$work/model-f16.safetensors"
if [ ! -f "$in" ]; then
  python3 - "$in" <<'PY'
import json, struct, sys
import numpy as np
rng = np.random.default_rng(0)
shape, n = (4096, 8192), 16
nbytes = shape[0] * shape[1] * 2
header = {"__metadata__": {"format": "pt"}}
for i in range(n):
    header[f"model.layers.{i}.mlp.up_proj.weight"] = {"dtype": "F16", "shape": list(shape), "data_offsets": [i * nbytes, (i + 1) * nbytes]}
text = json.dumps(header).encode()
text += b" " * (-(8 + len(text)) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    for i in range(n):
        f.write((rng.standard_normal(shape, dtype=np.float32) * 0.02).astype("<f2").tobytes())
PY
fi
size=$(stat -c %s "$in")
cat "$in" > /dev/null  # warm the page cache
t() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
rate() { echo "scale=2; $size / $1 / 1000000000" | bc; }
rm -rf "$work/out" "$work/copy.safetensors"
read_s=$(t cat "$in")
cp_s=$(t cp "$in" "$work/copy.safetensors"); rm -f "$work/copy.safetensors"
q_s=$(t "$tool" quantize --quiet "$in" "$work/out"); rm -rf "$work/out"
echo "input: $size bytes, $(nproc) threads"
printf "read (cat > /dev/null)   %6.2f s  %5s GB/s\n" "$read_s" "$(rate "$read_s")"
printf "copy (cp)                %6.2f s  %5s GB/s\n" "$cp_s" "$(rate "$cp_s")"
printf "lowbit quantize (nf4+dq) %6.2f s  %5s GB/s of input\n" "$q_s" "$(rate "$q_s")"
