// SPDX-License-Identifier: Apache-2.0
// Instantiates every lowbit kernel (all formats x dtypes, through the launchers) for the
// resource check: check_kernel_resources.sh compiles this file for every supported architecture
// with ptxas' resource report and inspects its PTX.
#include <lowbit/cuda.cuh>

lowbit::status lowbit_instantiate_all(const void* x, void* out, lowbit::quant_view& q, void* ws, std::size_t bytes) {
  for (lowbit::dtype t : {lowbit::dtype::f32, lowbit::dtype::f16, lowbit::dtype::bf16}) {
    LOWBIT_TRY(lowbit::cuda::quantize(x, t, q, ws, bytes));
    LOWBIT_TRY(lowbit::cuda::dequantize(q, out, t));
  }
  return {};
}
