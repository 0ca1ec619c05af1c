#!/usr/bin/env bash
# Compiles every lowbit kernel for each supported architecture with ptxas' resource report,
# prints the report, and fails if any kernel spills registers or uses local memory (a stack
# frame); then checks in the PTX that every elementwise kernel has a 128-bit global load.
# usage: check_kernel_resources.sh NVCC SOURCE_DIR WORK_DIR "75;80;86;89;90;100;120"
set -euo pipefail
nvcc=$1 src=$2 work=$3 archs=$4
mkdir -p "$work"
tu="$src/tests/cuda/instantiate_kernels.cu"
flags=(-std=c++17 -O3 -I"$src/include" -I"$src/kernels" --threads 2 -Xptxas -v)
gencode=()
for a in ${archs//;/ }; do gencode+=(-gencode "arch=compute_$a,code=sm_$a"); done
# the load-width check below reads sm_80 PTX: generated here as well when sm_80 is not checked
case ";$archs;" in *";80;"*) ;; *) gencode+=(-gencode "arch=compute_80,code=compute_80") ;; esac

# -keep: the compile's own sm_80 PTX is what the load-width check below reads (with a second nvcc
# run for it, this test took 537 s on the 2-core CI machine; without, 400 s).
rm -rf "$work/keep" && mkdir -p "$work/keep"
if ! "$nvcc" "${flags[@]}" "${gencode[@]}" -keep -keep-dir "$work/keep" -c "$tu" -o "$work/kernels.o" 2> "$work/ptxas.log"; then
  cat "$work/ptxas.log"; echo "FAIL: nvcc could not compile the kernels"; exit 1
fi
cat "$work/ptxas.log"
bad=$(grep -E "bytes spill (stores|loads)" "$work/ptxas.log" | grep -vc " 0 bytes spill stores, 0 bytes spill loads" || true)
frames=$(grep -E "bytes stack frame" "$work/ptxas.log" | grep -vc "^ *0 bytes stack frame" || true)
kernels=$(grep -c "Compiling entry function" "$work/ptxas.log" || true)
echo "resource check: $kernels kernel compilations over architectures [$archs]: $bad with spills, $frames with a stack frame"
[ "$kernels" -gt 0 ] || { echo "FAIL: no kernel was compiled"; exit 1; }
# a ptxas warning (a launch bound out of an architecture's range, ...) is an error where the
# CUDA targets build with -Werror=all-warnings
if grep -q "ptxas warning\|ptxas error" "$work/ptxas.log"; then
  grep "ptxas warning\|ptxas error" "$work/ptxas.log"; echo "FAIL: ptxas warnings"; exit 1
fi
[ "$bad" -eq 0 ] || { echo "FAIL: register spills"; exit 1; }
[ "$frames" -eq 0 ] || { echo "FAIL: local memory (stack frame) in a kernel"; exit 1; }

# 128-bit global loads in every elementwise kernel that reads its input (stats, encode, the general
# dequantize, the one-pass quantizer and its finiteness scan, the fused matmul, the block-scaled
# unit path's statistics and quantize passes), in the PTX. Names are matched after their mangled
# length digits, so that `encode_kernel` is not `scaled_unit_encode_kernel` (a thread per tile,
# no input). The
# streaming dequantizers (dequantize_stream_kernel, scaled_dequantize_kernel) are not in the list:
# a lane loads one unit's codes (2-8 bytes, a warp-wide access over contiguous bytes) for each
# 128-bit store, so their loads are narrower by design; the budget check lists their widths.
ptx="$work/keep/$(basename "$tu" .cu).compute_80.ptx"
[ -f "$ptx" ] || { echo "FAIL: nvcc -keep left no $ptx"; exit 1; }
awk '
  /^\.visible \.entry|^\.entry|^\.weak \.entry/ { name = $NF; sub(/\(.*/, "", name); entry = name; entries[entry] = 0; next }
  entry != "" && /ld\.global(\.nc)?\.v4\./ { entries[entry]++ }
  END {
    fail = 0; n = 0
    for (e in entries) {
      if (e ~ /stats_kernel|[0-9]encode_kernel|[0-9]dequantize_kernel|[0-9]quantize_stream_kernel|finite_scan_kernel|matmul_kernel|scaled_unit_(amax|quantize)_kernel/) {
        n++
        if (entries[e] == 0) { print "FAIL: no 128-bit global load in " e; fail = 1 }
      }
    }
    print "128-bit load check: " n " elementwise kernels inspected"
    if (n == 0) { print "FAIL: no elementwise kernel found in the PTX"; fail = 1 }
    exit fail
  }' "$ptx"
echo "resource check passed"
