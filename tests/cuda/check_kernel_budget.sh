#!/usr/bin/env bash
# cuda_kernel_budget: checks the SASS of every lowbit kernel (tests/cuda/instantiate_kernels.cu), for
# each architecture, against docs/cuda-kernel-budgets.md with kernel_budget.py. It reads the object
# cuda_kernel_resources compiled for all architectures (its CTest fixture), so the kernels are
# compiled once per CI run, not twice. Skips (exit 77, reported by CTest as skipped) without
# cuobjdump or python3.
# usage: check_kernel_budget.sh OBJECT SOURCE_DIR "80;90;100" [CUOBJDUMP]
set -euo pipefail
obj=$1 src=$2 archs=$3 cuobjdump=${4:-${LOWBIT_CUOBJDUMP:-}}
if [ -z "$cuobjdump" ] || [ ! -x "$cuobjdump" ]; then
  for c in "$(command -v cuobjdump || true)"; do
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
[ -f "$obj" ] || { echo "FAIL: $obj is missing: cuda_kernel_resources (this test's fixture) did not build it"; exit 1; }
echo "cuobjdump: $cuobjdump ($("$cuobjdump" --version | tail -1))"
fail=0
for a in ${archs//;/ }; do
  python3 "$src/tests/cuda/kernel_budget.py" --cuobjdump "$cuobjdump" --cubin "$obj" \
    --arch "$a" --budgets "$src/docs/cuda-kernel-budgets.md" || fail=1
done
[ "$fail" = 0 ] && echo "kernel budget check passed" || { echo "FAIL: a kernel exceeds its budget"; exit 1; }
