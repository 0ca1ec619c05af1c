#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Times `lowbit quantize` on a synthetic float16 checkpoint of about 1 GB (16 weights [4096, 8192],
# normal values) next to reading the same bytes (cat > /dev/null) and copying them (cp), each with
# the file in the page cache, so that the three figures are comparable.
#
#   bench/quantize_checkpoint.sh path/to/lowbit [WORKDIR]    (WORKDIR default: /tmp/lowbit_bench)
#
# Needs python3 with numpy to write the input. Not a test: nothing here asserts a speed.
#
# Measured on the 2-core development machine (shared with other builds, so +-30%): read 0.13 s
# (8.5 GB/s), cp 0.29 s (3.7 GB/s), `lowbit quantize` 2.8 s with the error report, 1.3 s with
# --no-report (0.8 GB/s); of those 1.3 s the host engine's quantize is 0.9 s (1.2 GB/s of float16
# input on 2 threads), the rest is page faults of the mapping and writing 0.28 GB. On two cores
# the conversion is bound by the engine's compute, not by memory or disk.
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
