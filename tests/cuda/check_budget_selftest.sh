#!/usr/bin/env bash
# cuda_kernel_budget_selftest: the budget check must pass a fast grid-stride kernel and fail the
# same kernel slowed by a 64-bit division in its loop (tests/cuda/budget_selftest.cu), naming the
# call and the instruction count. Skips (exit 77) without cuobjdump or python3.
# usage: check_budget_selftest.sh NVCC SOURCE_DIR WORK_DIR [CUOBJDUMP]
set -euo pipefail
nvcc=$1 src=$2 work=$3 cuobjdump=${4:-${LOWBIT_CUOBJDUMP:-}}
if [ -z "$cuobjdump" ] || [ ! -x "$cuobjdump" ]; then
  for c in "$(dirname "$nvcc")/cuobjdump" "$(command -v cuobjdump || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then cuobjdump=$c; break; fi
  done
fi
if [ -z "$cuobjdump" ] || [ ! -x "$cuobjdump" ] || ! command -v python3 >/dev/null 2>&1; then
  echo "SKIPPED: cuobjdump or python3 not found; the budget check was NOT tested"; exit 77
fi
mkdir -p "$work"
check() {  # ARCH CUBIN LOG
  python3 "$src/tests/cuda/kernel_budget.py" --cuobjdump "$cuobjdump" --cubin "$2" --arch "$1" \
    --budgets "$src/tests/cuda/budget_selftest.md" >"$3" 2>&1
}
for a in 80 90 100; do
  "$nvcc" -O3 -cubin -arch=sm_$a "$src/tests/cuda/budget_selftest.cu" -o "$work/fast_sm$a.cubin"
  "$nvcc" -O3 -cubin -arch=sm_$a -DLOWBIT_BUDGET_SLOW "$src/tests/cuda/budget_selftest.cu" -o "$work/slow_sm$a.cubin"
  if ! check "$a" "$work/fast_sm$a.cubin" "$work/fast_sm$a.log"; then
    cat "$work/fast_sm$a.log"; echo "FAIL: sm_$a: the fast kernel did not meet its budget"; exit 1
  fi
  cat "$work/fast_sm$a.log"
  if check "$a" "$work/slow_sm$a.cubin" "$work/slow_sm$a.log"; then
    cat "$work/slow_sm$a.log"; echo "FAIL: sm_$a: the check passed a kernel with a 64-bit division in its loop"; exit 1
  fi
  cat "$work/slow_sm$a.log"
  for want in "CALL(s) in the steady state" "instructions/element > ceiling"; do
    grep -qF "$want" "$work/slow_sm$a.log" || { echo "FAIL: sm_$a: the slowed kernel's report lacks '$want'"; exit 1; }
  done
done
echo "budget check self-test passed: the slowed kernel fails on sm_80, sm_90 and sm_100, the fast one passes"
