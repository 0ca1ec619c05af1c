#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Times `lowbit quantize` on a synthetic float16 checkpoint of about 1 GB (16 weights [4096, 8192],
# normal values) next to reading the same bytes (cat > /dev/null) and copying them (cp), each with
# the file in the page cache, so that the three figures are comparable.
#
#   bench/quantize_checkpoint.sh path/to/lowbit [WORKDIR]    (WORKDIR default: /tmp/lowbit_bench)
#
# Needs python3 with numpy to write the input. Not a test: nothing here asserts a speed. RUNS
# (default 3) runs of each command; the fastest wall time is printed with its user+sys CPU time.
#
# Measured on the 2-core development machine, 1073743760-byte input, page cache warm, best of 3
# or 5 runs, in five blocks that started and ended with no other process on a core (top; the
# other engineer's compiles and benchmarks came and went; load average 0.9-1.6 counting these
# runs), the tool of this header next to the previous one (planning read) in the same minutes:
# - read 0.13-0.15 s (7-8.5 GB/s), cp 0.27-0.38 s;
# - `lowbit quantize --no-report` 0.30-0.37 s (cpu 0.42-0.59 s), before 0.40-0.48 s (cpu
#   0.64-0.82 s);
# - with the error report 0.50-0.63 s (cpu 0.87-1.10 s), before 0.58-0.69 s (cpu 1.00-1.22 s);
# - writing an output-sized file (dd bs=4M count=70 oflag=direct, 0.29 GB; the nf4+dq output is
#   0.28 GB): 0.17-0.24 s (1.2-1.7 GB/s), 0.22-0.31 s with conv=fsync.
# The spread is the shared host's: the same binary varies by 20% from one minute to the next, so
# compare figures taken in the same minutes. Earlier sessions (--no-report / report): 0.43 s /
# 0.60 s for the previous tool on a quieter host, 1.14 s / 2.30 s before the pipelining.
# Where the time goes (perf):
# - no planning read: the plan comes from the input's header alone. Only a double-quantized
#   weight's quant_state JSON has a length known once it is quantized (it holds nested_offset,
#   the mean of the block absmax values), so the file is laid out with room for the longest
#   offset text; the real sizes are set as each weight is written, and the header is written
#   last, into a region reserved at the start (padded with spaces, the data page-aligned).
# - quantizing: ~0.4 s of CPU on both cores (--no-report profile: nf4 AVX-512 encode 44%, the
#   nested scales' AVX2 encoder 13%, absmax 11%), i.e. ~0.2 s of wall, reading the input once.
# - writing: O_DIRECT on the writer thread while the next tensor is quantized (its copy into the
#   aligned buffer is 9% of the CPU profile), then the header, fsync and rename.
# So without the report the run takes the disk's time to write the output with its fsync
# (0.22-0.31 s) plus the first tensor's quantizing, before writing starts: bound by the disk,
# with the quantizer's compute (~0.2 s on 2 cores) just under it. The report adds a second
# read of the input and a dequantization, ~0.3 s of CPU (error sums 29%, NF4 decode 15% of its
# profile) with both cores already busy (cpu/wall 1.7): that part is compute. Rescheduling it
# cannot win much: --threads 1 takes 0.51 s without the report (0.82 s with it), so quantizing
# on one core with the report on the other could not beat the 0.50-0.54 s measured in the same
# minute, and the idle core time left (2 x wall - cpu) is ~0.1 s; what would remove the report's
# cost is the engine measuring the error while it encodes.
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
runs=${RUNS:-3}
# t CMD...: "real user sys" seconds of one run
t() { local TIMEFORMAT='%R %U %S'; { time "$@" > /dev/null; } 2>&1; }
# best NAME CMD...: runs CMD $runs times, prints every run and the fastest (wall) one
best() {
  local name=$1 r line min=""
  shift
  for ((r = 0; r < runs; r++)); do
    rm -rf "$work/out" "$work/copy.safetensors"
    line=$(t "$@")
    echo "  $name run $((r + 1)): real/user/sys $line" >&2
    if [ -z "$min" ] || [ "$(echo "${line%% *} < ${min%% *}" | bc)" = 1 ]; then min=$line; fi
  done
  rm -rf "$work/out" "$work/copy.safetensors"
  echo "$min"
}
rate() { echo "scale=2; $size / $1 / 1000000000" | bc; }
read_t=$(best read cat "$in")
cp_t=$(best cp cp "$in" "$work/copy.safetensors")
q_t=$(best quantize "$tool" quantize --quiet "$in" "$work/out")
qn_t=$(best quantize-no-report "$tool" quantize --quiet --no-report "$in" "$work/out")
echo "input: $size bytes, $(nproc) threads, best of $runs runs (wall; user+sys CPU seconds after it)"
row() { local r u s; read -r r u s <<< "$2"; printf "%-34s %6.2f s  %5s GB/s   cpu %5.2f s\n" "$1" "$r" "$(rate "$r")" "$(echo "$u + $s" | bc)"; }
row "read (cat > /dev/null)" "$read_t"
row "copy (cp)" "$cp_t"
row "lowbit quantize (nf4+dq, report)" "$q_t"
row "lowbit quantize --no-report" "$qn_t"
