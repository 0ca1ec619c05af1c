#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checkpoints at real scale (issue 18): the tool's time on many tensors, and dequantize's memory
# on a large checkpoint. Not a test: nothing here asserts a figure.
#
#   bench/checkpoint_scale.sh path/to/lowbit tensors [WORKDIR]   100,000 tensors (50,000 float16
#       weights [16, 64] and 50,000 biases [16]): wall time of quantize, inspect of its output and
#       dequantize of that output
#   bench/checkpoint_scale.sh path/to/lowbit memory [WORKDIR]    a 4 GiB float16 checkpoint (32
#       weights [8192, 8192]) quantized to nf4 + double quantization (1.1 GB), the input deleted,
#       then dequantized back to 4 GiB: peak anonymous memory (RssAnon of /proc/PID/status,
#       sampled every 20 ms) and peak resident memory (VmHWM, which counts the input's mapped
#       pages too) of dequantize
#
# WORKDIR (default /tmp/lowbit_scale) is created and deleted. Needs python3 (and numpy for
# `memory`) to write the inputs.
#
# Measured on the 2-core development machine, one run each, RelWithDebInfo build, while other
# engineers' builds kept the load average near 3 (so wall time is about twice the CPU time):
# - tensors: 100,000 tensors, 115 MB of float16 (the quantized output holds 350,000 tensors):
#   quantize 7.6 s wall (3.1 + 0.8 s cpu), inspect 5.9 s (3.7 + 0.2 s cpu), dequantize 12.2 s
#   (6.1 + 0.6 s cpu). Before issue 18 quantize was quadratic: 20k tensors 1.5 s, 40k 5.4 s,
#   80k 34 s, 300k > 60 s; inspect of 3000 quantized weights 20 s. What is left is hashed
#   lookups over 350k names (cache misses), JSON parsing and malloc, each linear.
# - memory: 4 GiB of dequantized float16 output (4294975491 bytes) from 1.1 GB of nf4 + double
#   quantization: peak RssAnon 297 MiB = two dequantized tensors of 128 MiB (the one being
#   written, the one being made) + ~40 MiB (one quantized tensor, the 8 MB write buffer, the
#   program); peak VmHWM 1357 MiB (adds the input's mapped file pages); 3.6 s. Before: every
#   output tensor was held until the end (5.5 GB RSS for a 4 GB output).
set -euo pipefail
tool=$(realpath "$1")
what=$2
work=${3:-/tmp/lowbit_scale}
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

secs() { /usr/bin/time -f "%e s wall, %U + %S s cpu" "$@" 2>&1 >/dev/null | tail -n 1; }

case "$what" in
tensors)
  python3 - "$work/in.safetensors" <<'EOF'
import json, struct, sys
n = 50000
header, data, off = {}, [], 0
w = struct.pack("<1024e", *[((k % 37) - 18) * 0.001 for k in range(1024)])  # [16, 64] float16
b = struct.pack("<16e", *([1.0] * 16))                                      # [16] float16
for i in range(n):
    header[f"model.layers.{i}.mlp.weight"] = {"dtype": "F16", "shape": [16, 64], "data_offsets": [off, off + len(w)]}
    off += len(w); data.append(w)
    header[f"model.layers.{i}.mlp.bias"] = {"dtype": "F16", "shape": [16], "data_offsets": [off, off + len(b)]}
    off += len(b); data.append(b)
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-(8 + len(h)) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); f.writelines(data)
EOF
  echo "quantize:   $(secs "$tool" quantize --quiet --no-report "$work/in.safetensors" "$work/q")"
  echo "inspect:    $(secs "$tool" inspect "$work/q")"
  echo "dequantize: $(secs "$tool" dequantize --quiet "$work/q" "$work/dq")"
  ;;
memory)
  python3 - "$work/in.safetensors" <<'EOF'
import json, struct, sys
import numpy as np
n, rows, cols = 32, 8192, 8192
header, off = {}, 0
for i in range(n):
    header[f"model.layers.{i}.mlp.up_proj.weight"] = {"dtype": "F16", "shape": [rows, cols], "data_offsets": [off, off + rows * cols * 2]}
    off += rows * cols * 2
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-(8 + len(h)) % 8)
rng = np.random.default_rng(18)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for i in range(n):
        f.write((rng.standard_normal(rows * cols, dtype=np.float32) * 0.02).astype(np.float16).tobytes())
EOF
  "$tool" quantize --quiet --no-report "$work/in.safetensors" "$work/q" >/dev/null
  rm -f "$work/in.safetensors"
  t0=$(date +%s.%N)
  "$tool" dequantize --quiet "$work/q" "$work/dq" >/dev/null &
  pid=$!
  peak_anon=0 hwm=0
  while kill -0 "$pid" 2>/dev/null; do
    if s=$(cat "/proc/$pid/status" 2>/dev/null); then
      a=$(awk '/^RssAnon:/ {print $2}' <<<"$s"); h=$(awk '/^VmHWM:/ {print $2}' <<<"$s")
      [ -n "$a" ] && [ "$a" -gt "$peak_anon" ] && peak_anon=$a
      [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
    fi
    sleep 0.02
  done
  wait "$pid"
  t1=$(date +%s.%N)
  echo "output: $(du -sb "$work/dq" | cut -f1) bytes"
  echo "dequantize: peak RssAnon $((peak_anon / 1024)) MiB, peak VmHWM $((hwm / 1024)) MiB, $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
  ;;
*)
  echo "usage: $0 path/to/lowbit tensors|memory [WORKDIR]" >&2
  exit 1
  ;;
esac
