// SPDX-License-Identifier: Apache-2.0
/// @file llm_int8.hpp
/// @brief LLM.int8() per-element arithmetic shared by the host engine and the CUDA kernels: the
///        outlier predicate, the row encoder, the code of one activation, the dequantized weight
///        value used against outlier columns, and the epilogue of one output. No CUDA header; one
///        definition of every formula, so host and device cannot drift.
///
/// @par Definition (bitsandbytes `MatMul8bitLt.forward`, reference §5)
/// For X [M, K] (float32/float16/bfloat16), int8 weights CB [N, K] with row scales SCB [N]
/// (format::int8_absmax, per row: `SCB[n] = max |W[n, :]|`, `CB = clamp(rne(W * (127 / SCB)))`):
/// 1. Outliers (only if `threshold > 0`): element x[m, k] is an outlier iff `|x| >= threshold`;
///    the outlier columns are the sorted k where any row has an outlier.
/// 2. `row_stats[m]` = max |x[m, k]| over the elements that are not outliers (elements of an
///    outlier column that are below the threshold still count, as in bitsandbytes).
/// 3. `CA[m, k] = clamp(rne(x * f32(127 / row_stats[m])), ±127)` (IEEE division, one rounded
///    multiply), and 0 in every outlier column. A row whose statistic is 0 (or too small to scale,
///    below about 3.7e-37) is a zero row: codes 0, row_stats 0.
/// 4. `C = CA · CBᵀ` exactly in int32.
/// 5. `y = f32(C) * row_stats[m]` rounded, `* SCB[n]` rounded, then `fmaf(·, f32(1/16129), bias[n])`
///    (bitsandbytes' CUDA `kdequant_mm_int32_fp16`, constant 0x38820610); without bias, bias = 0.
/// 6. With outlier columns: `y += Σ_j x[m, j] · wdq[n, j]` over the outlier columns j in
///    increasing order, accumulated in float32, where `wdq[n, j] = to_dtype_of_X((f32(CB[n, j]) *
///    SCB[n]) * f32(1/127))` is the dequantized int8 weight (bitsandbytes' `int8_vectorwise_dequant`
///    rounded to X's dtype; the original weights are not available after quantization).
/// 7. Output: `y` rounded to X's dtype (round to nearest even).
///
/// @par Weight-only mode (matmul_mode::weight_only)
/// bitsandbytes' `MatMul8bitLt` without the int8 GEMM (`state.force_no_igemmlt`, the path of its
/// `test_linear_no_igemmlt`): X is not quantized. lowbit defines it as the definition above with
/// every column of X an outlier column: C = 0 and step 6 runs over every k, so
/// `y = to_dtype_of_X((bias[n] + 0) + Σ_k x[m, k] · wdq[n, k])` (k increasing, float32). Only the
/// weights carry quantization error. bitsandbytes computes `(X · CB) · (SCB / 127) + bias`
/// instead (the weight scale applied after the sum); the two differ by float rounding only.
///
/// @par Differences from bitsandbytes, documented
/// - bitsandbytes casts X to float16 before step 1-3; lowbit quantizes X's own values (identical
///   for float16 input; convert float32/bfloat16 input to float16 first for its exact codes).
///   The threshold is compared in float32.
/// - The multiplier 127 / absmax: lowbit divides once, correctly rounded. Neither bitsandbytes
///   backend does: its CUDA kernel uses `div.approx`, its CPU backend `127 * f32(1 / absmax)` (torch's
///   `127.0 / t`). Either can move a code by 1 where `x * inv` lies within an ulp of a half-integer.
///   For weights, host::options::int8_inverse = quant::int8_multiplier::reciprocal_times_127 gives
///   the CPU backend's codes; the activations here always use the quotient.
/// - bitsandbytes rounds step 5 to float16 before adding step 6 (and so clips bfloat16/float32
///   outputs to ±65504); lowbit adds in float32 and rounds once to X's dtype.
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../dtype.hpp"
#include "../format.hpp"
#include "../quant/blockwise.hpp"
#include "../status.hpp"

#include <cmath>
#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace int8 {

/// What multiplies the int8 weights (int8_matmul_options::mode, cuda::int8_matmul).
enum class matmul_mode : std::uint8_t {
  split,        ///< LLM.int8(): outlier columns in float32, the rest int8 x int8 in int32 (default)
  weight_only,  ///< X unquantized: every column an outlier column (see the file comment)
};

/// bitsandbytes' int8 matmul output constant f32(1/16129) = 6.200012e-05f (bits 0x38820610).
inline constexpr float inv_127_squared = 1.0f / 16129.0f;
static_assert(inv_127_squared == 6.200012e-05f, "bitsandbytes' CUDA constant");

/// Largest K for which an int32 sum of int8 x int8 products cannot overflow
/// (K * 128 * 128 < 2^31).
inline constexpr std::int64_t max_inner_dim = (std::int64_t{1} << 17) - 1;

/// True iff `a` is an outlier for `threshold`: `threshold > 0` and `|a| >= threshold`. NaN is never
/// an outlier; ±Inf is one whenever the split is enabled.
LOWBIT_HD constexpr bool is_outlier(float a, float threshold) noexcept {
  const float m = a < 0.0f ? -a : a;
  return threshold > 0.0f && m >= threshold;
}

/// The encoder of a row whose statistic (max |x| over its non-outlier elements) is `absmax`:
/// format::int8_absmax's per-block encoder (`inv = 127 / absmax`, zero row when absmax is 0).
LOWBIT_HD quant::block_encoder row_encoder(float absmax) noexcept {
  quant::block_stats st;
  st.absmax = absmax;
  return quant::make_encoder<format::int8_absmax>(st);
}

/// Code of one activation that is not in an outlier column: `clamp(rne(x * inv), ±127)`, 0 in a
/// zero row; NaN encodes to 0.
LOWBIT_HD std::int8_t encode(float x, const quant::block_encoder& enc) noexcept {
  return static_cast<std::int8_t>(quant::encode_element<format::int8_absmax>(x, enc));
}

/// The weight value used against an outlier column, in float32 before rounding to X's dtype:
/// `(f32(q) * scb) * f32(1/127)` (format::int8_absmax's decode).
LOWBIT_HD float dequant_weight(std::int8_t q, float scb) noexcept {
  return quant::decode_element<format::int8_absmax>(static_cast<float>(q), scb);
}

/// One correctly rounded fused multiply-add (`__fmaf_rn` on the device, `std::fma` on the host).
LOWBIT_HD float fma_rn(float a, float b, float c) noexcept {
#if LOWBIT_DEVICE_PASS
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

/// int32 -> float32, round to nearest even (exact for |c| <= 2^24).
LOWBIT_HD float int_to_float(std::int32_t c) noexcept {
#if LOWBIT_DEVICE_PASS
  return __int2float_rn(c);
#else
  return static_cast<float>(c);
#endif
}

/// Epilogue of one output without outliers: `fmaf((f32(c) * row) * col, f32(1/16129), bias)`.
/// IEEE results throughout: an Inf/NaN statistic propagates, overflow gives ±Inf.
LOWBIT_HD float epilogue(std::int32_t c, float row, float col, float bias) noexcept {
  const float rc = lowbit::detail::mul_rn(lowbit::detail::mul_rn(int_to_float(c), row), col);
  return fma_rn(rc, inv_127_squared, bias);
}

/// Epilogue of one output with the float32 outlier sum `outlier` added (one rounded add).
LOWBIT_HD float epilogue(std::int32_t c, float row, float col, float bias, float outlier) noexcept {
  return lowbit::detail::add_rn(epilogue(c, row, col, bias), outlier);
}

/// `acc + x * w` as two rounded operations (never fused), the outlier accumulation step.
LOWBIT_HD float outlier_step(float acc, float x, float w) noexcept {
  return lowbit::detail::add_rn(acc, lowbit::detail::opaque(lowbit::detail::mul_rn(x, w)));
}

namespace detail {

// Argument checks shared by the host and CUDA entry points (dtype dispatch: lowbit::visit_dtype).

inline status check_mode(const char* what, matmul_mode mode) {
  if (mode != matmul_mode::split && mode != matmul_mode::weight_only)
    return status::error(errc::invalid_argument, "%s: mode %d is not an int8::matmul_mode", what, static_cast<int>(mode));
  return {};
}

inline status check_threshold(const char* what, float threshold) {
  if (!(threshold >= 0.0f) || !(threshold <= 3.40282347e38f))
    return status::error(errc::invalid_argument, "%s: threshold is %g; it must be finite and >= 0 (0 disables the outlier split)",
                         what, static_cast<double>(threshold));
  return {};
}

inline status check_dims(const char* what, const char* a, std::int64_t va, const char* b, std::int64_t vb) {
  if (va <= 0 || vb <= 0)
    return status::error(errc::invalid_argument, "%s: %s=%lld, %s=%lld; both must be >= 1", what, a,
                         static_cast<long long>(va), b, static_cast<long long>(vb));
  if (va > (std::int64_t{1} << 62) / vb) return status::error(errc::invalid_argument, "%s: %s x %s overflows", what, a, b);
  return {};
}

}  // namespace detail
}  // namespace int8
LOWBIT_NAMESPACE_END
