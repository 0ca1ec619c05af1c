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

// LLM.int8: every int8 kernel for every dtype through int8_matmul (quantization, outlier list,
// gathers, outlier sums, epilogue, fallback GEMM; cuBLASLt/cuBLAS are library calls).
lowbit::status lowbit_instantiate_int8(const lowbit::cuda::int8_handles& h, const void* x, void* y,
                                       const lowbit::cuda::int8_weights& w, void* ws, std::size_t bytes) {
  for (lowbit::dtype t : {lowbit::dtype::f32, lowbit::dtype::f16, lowbit::dtype::bf16})
    LOWBIT_TRY(lowbit::cuda::int8_matmul(h, x, t, 16, w.k, w, x, y, 6.0f, ws, bytes));
  return {};
}

// The fused matmul: the operand kernel for every x dtype, matmul_kernel for every format and
// matmul_scaled_kernel for every block-scaled format, both compute modes, the GEMV (M = 1) and the
// batched kernel (M = 8).
lowbit::status lowbit_instantiate_matmul(const void* x, const lowbit::quant_view& w, lowbit::scaled_view& sw, void* y, void* ws,
                                         std::size_t bytes) {
  for (lowbit::dtype t : {lowbit::dtype::f32, lowbit::dtype::f16, lowbit::dtype::bf16})
    for (lowbit::matmul_compute c : {lowbit::matmul_compute::f32, lowbit::matmul_compute::bf16}) {
      lowbit::matmul_options o;
      o.compute = c;
      for (std::int64_t M : {1, 8}) {
        LOWBIT_TRY(lowbit::cuda::matmul(x, t, M, w.numel / 4096, 4096, w, nullptr, y, t, o, ws, bytes));
        for (int f = 0; f < lowbit::scaled_format_count; ++f) {
          sw.fmt = static_cast<lowbit::scaled_format>(f);
          LOWBIT_TRY(lowbit::cuda::matmul(x, t, M, sw.rows, sw.cols, sw, nullptr, y, t, o, ws, bytes));
        }
      }
    }
  return {};
}

// The block-scaled formats: the tile statistics kernel for every dtype, the encode and dequantize
// kernels for every format x dtype.
lowbit::status lowbit_instantiate_blockscaled(const void* x, void* out, lowbit::scaled_view& q, void* ws, std::size_t bytes) {
  for (int f = 0; f < lowbit::scaled_format_count; ++f) {
    q.fmt = static_cast<lowbit::scaled_format>(f);
    for (lowbit::dtype t : {lowbit::dtype::f32, lowbit::dtype::f16, lowbit::dtype::bf16}) {
      LOWBIT_TRY(lowbit::cuda::quantize_scaled(x, t, q, ws, bytes));
      LOWBIT_TRY(lowbit::cuda::dequantize_scaled(q, out, t));
    }
  }
  return {};
}
