// SPDX-License-Identifier: Apache-2.0
// Test of the kernel budget check itself (cuda_kernel_budget_selftest): a grid-stride kernel that
// scales a float array, in a fast variant (32-bit index math) and, with LOWBIT_BUDGET_SLOW, a
// deliberately slowed one whose loop divides in 64 bits (nvcc calls its division routine). The
// fast one must meet the budget of budget_selftest.md, the slowed one must fail it.
#include <cstdint>

extern "C" __global__ void budget_probe_kernel(const float4* x, float4* y, unsigned n4, float s, std::int64_t d) {
  const unsigned stride = gridDim.x * blockDim.x;
  for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
    float4 v = x[i];
#ifdef LOWBIT_BUDGET_SLOW
    const float k = static_cast<float>(static_cast<std::int64_t>(i) / d);
#else
    const float k = 1.0f;
#endif
    v.x *= s * k;
    v.y *= s * k;
    v.z *= s * k;
    v.w *= s * k;
    y[i] = v;
  }
}
