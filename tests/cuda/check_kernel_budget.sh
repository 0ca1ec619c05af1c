#!/usr/bin/env bash
# cuda_kernel_budget: compiles every lowbit kernel (tests/cuda/instantiate_kernels.cu) for each
# architecture, and checks the SASS of every kernel against docs/cuda-kernel-budgets.md with
# kernel_budget.py. Skips (exit 77, reported by CTest as skipped) without cuobjdump or python3.
# usage: check_kernel_budget.sh NVCC SOURCE_DIR WORK_DIR "80;90;100" [CUOBJDUMP]
set -euo pipefail
nvcc=$1 src=$2 work=$3 archs=$4 cuobjdump=${5:-${LOWBIT_CUOBJDUMP:-}}
if [ -z "$cuobjdump" ] || [ ! -x "$cuobjdump" ]; then
  for c in "$(dirname "$nvcc")/cuobjdump" "$(command -v cuobjdump || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then cuobjdump=$c; break; fi
  done
fi
if [ -z "$cuobjdump" ] || [ ! -x "$cuobjdump" ]; then
  echo "SKIPPED: cuobjdump not found (install the nvidia-cuda-cuobjdump wheel, as .ci/run does, and"
  echo "set LOWBIT_CUOBJDUMP); the kernel budgets were NOT checked"
  exit 77
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "SKIPPED: python3 not found; the kernel budgets were NOT checked"; exit 77
fi
mkdir -p "$work"
echo "cuobjdump: $cuobjdump ($("$cuobjdump" --version | tail -1))"
fail=0
for a in ${archs//;/ }; do
  "$nvcc" -std=c++17 -O3 -I"$src/include" -I"$src/kernels" --threads 2 -cubin -arch=sm_$a \
    "$src/tests/cuda/instantiate_kernels.cu" -o "$work/kernels_sm$a.cubin"
  python3 "$src/tests/cuda/kernel_budget.py" --cuobjdump "$cuobjdump" --cubin "$work/kernels_sm$a.cubin" \
    --arch "$a" --budgets "$src/docs/cuda-kernel-budgets.md" || fail=1
done
[ "$fail" = 0 ] && echo "kernel budget check passed" || { echo "FAIL: a kernel exceeds its budget"; exit 1; }
