#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Times `lowbit quantize` and `lowbit convert --to gguf-q4_0` on a synthetic float16 checkpoint of
# about 1 GB (16 weights [4096, 8192], normal values) next to reading the same bytes
# (cat > /dev/null) and copying them (cp), each with the file in the page cache, so that the
# figures are comparable.
#
#   bench/quantize_checkpoint.sh path/to/lowbit [WORKDIR]    (WORKDIR default: /tmp/lowbit_bench)
#
# Needs python3 with numpy to write the input. Not a test: nothing here asserts a speed. RUNS
# (default 3) runs of each command; the fastest wall time is printed with its user+sys CPU time.
#
# Measured on the 2-core development machine, 1073743760-byte input, page cache warm, the tool of
# this header and the previous one (e973c15) run alternately in the same minutes, 6 rounds of 3
# runs each, the fastest of a round counted (the host's speed drifts 20-30% within minutes, so
# only figures taken side by side compare):
# - read 0.14-0.17 s (6.2-7.7 GB/s), cp 0.29-0.39 s (0.30-0.35 s in this tool's rounds);
# - `lowbit quantize` (with the error report) 0.31-0.37 s (cpu 0.54-0.64 s), before 0.34-0.47 s
#   (cpu 0.60-0.80 s);
# - `lowbit quantize --no-report` 0.25-0.40 s (cpu 0.38-0.49 s), unchanged;
# - writing an output-sized file (dd bs=4M count=70 oflag=direct, 0.29 GB; the nf4+dq output is
#   0.28 GB): 0.17-0.24 s (1.2-1.7 GB/s), 0.22-0.31 s with conv=fsync.
# - `lowbit convert --to gguf-q4_0`, writes overlapped with the next tensor's quantization and
#   ggml blocks dequantized with AVX-512 for the report (session 27; load average 1.6-2.3, a
#   compile on the other core at times; 3 rounds of cp, convert, convert --no-report): cp
#   0.33-0.51 s, convert with its report 0.45-0.47 s (cpu 0.75-0.78 s), --no-report 0.39 s
#   (cpu 0.58-0.63 s). Before (fc9d9c8, cp 0.61 s): 1.27-1.57 s and 0.65 s; before the chunk
#   fusion (aaaa7b5): 6.86 s and 2.87 s. The other targets of convert are CPU-bound here with
#   their reports (same rounds, 1 GB f16 in, cp 0.33-0.36 s): bnb-nf4 1.13-1.16 s (cpu 1.2 s),
#   fp8-block 1.41-1.51 s (cpu 1.5 s), ct-nvfp4 2.09-2.13 s (cpu 2.1 s); maximum RSS 1.1-1.26 GB,
#   of which 1 GB is the input's mapping (file pages, one tensor's worth touched at a time).
# Earlier sessions (--no-report / report): 0.31-0.37 s / 0.47-0.58 s (bba998a), 1.14 s / 2.30 s
# before the pipelining.
# Where the time goes:
# - no planning read: the plan comes from the input's header alone. Only a double-quantized
#   weight's quant_state JSON has a length known once it is quantized (it holds nested_offset,
#   the mean of the block absmax values), so the file is laid out with room for the longest
#   offset text; the real sizes are set as each weight is written, and the header is written
#   last, into a region reserved at the start (padded with spaces, the data page-aligned).
# - quantizing: ~0.3 s of CPU on both cores, reading the input once (profile of a default run:
#   the NF4 AVX-512 encode 31%, absmax 10%; the nested scales' bnb_dynamic8 encode ~4%).
# - the report: with double quantization the scales are final only once the whole tensor is
#   quantized, so it reads the input and the codes once more, while the writer writes the
#   tensor, and decodes every code in registers (AVX-512): error sums and decode 31% of the
#   profile. In memory, 1 GB of float16 at nf4 takes it 0.073-0.087 s on two threads, against
#   0.056-0.068 s to read the same bytes: memory-bound, since the float32 sums (measure_error's
#   definition; 0.12-0.15 s with the previous double sums) and the prefetch of x.
# - writing: O_DIRECT on the writer thread while the next tensor is quantized (its copy into the
#   aligned buffer is ~6% of the CPU profile), then the header, fsync and rename.
# So a run, report included, takes about cp's time for the same bytes: the disk's time to write
# the output with its fsync, the input read twice from memory, the quantizer's compute under
# them (cpu/wall 1.7 of the 2 cores).
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
g_t=$(best convert-gguf-q4_0 "$tool" convert --quiet "$in" "$work/out" --to gguf-q4_0)
gn_t=$(best convert-gguf-q4_0-no-report "$tool" convert --quiet --no-report "$in" "$work/out" --to gguf-q4_0)
echo "input: $size bytes, $(nproc) threads, best of $runs runs (wall; user+sys CPU seconds after it)"
row() { local r u s; read -r r u s <<< "$2"; printf "%-34s %6.2f s  %5s GB/s   cpu %5.2f s\n" "$1" "$r" "$(rate "$r")" "$(echo "$u + $s" | bc)"; }
row "read (cat > /dev/null)" "$read_t"
row "copy (cp)" "$cp_t"
row "lowbit quantize (nf4+dq, report)" "$q_t"
row "lowbit quantize --no-report" "$qn_t"
row "lowbit convert --to gguf-q4_0" "$g_t"
row "lowbit convert (gguf-q4_0) --no-report" "$gn_t"
