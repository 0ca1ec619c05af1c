// SPDX-License-Identifier: Apache-2.0
/// @file definition.hpp
/// @brief The numerics of the fused low-bit matmul `y = x · dequant(W)ᵀ (+ bias)`: its two compute
///        modes, its one summation order, and the scalar steps every engine (the host paths here,
///        a CUDA kernel later) performs. docs/matmul.md explains the choice.
///
/// @par Values
/// - `w[n, k]` is the float32 value `dequantize(W, float32)` gives element (n, k) of W (flattened
///   index n·K + k; blocks may straddle rows): quant::decode_element of its code and block scale,
///   the nested scale rebuilt as quant::nested_scale.
/// - compute f32: the operands are `x[m, k]` widened to float32 and `w[n, k]`.
/// - compute bf16: each operand is rounded to bfloat16 (nearest even; NaN stays NaN), a float32
///   zero or subnormal becoming a zero of its sign (bf16_operand; vcvtneps2bf16's rule). Each step is a float32 fused
///   multiply-add whose subnormal result becomes a zero of its sign (fma_ftz), what PTX
///   `fma.rn.ftz.f32` computes on bfloat16 operands; products of two bfloat16 are exact.
///   AVX512_BF16's `vdpbf16ps` (DAZ in, FTZ out, one rounding per product) computes the same
///   while no partial sum falls below 2^-126 in magnitude; below it, measured on this project's
///   Xeon, it flushes to +0 rather than a zero of the sum's sign, and it also flushes a sum whose
///   exact value is below 2^-126 but rounds to 2^-126 (e.g. 2^-126 - (1 + 2^-7) 2^-151). A plain
///   float32 fma of the two operands also equals fma_ftz while no partial sum is below 2^-126.
///   The host's AVX-512 kernels use vdpbf16ps (lane dots) or plain FMAs (outer-product form) only
///   where operand exponents rule such sums out, and the exact FMA-and-flush code elsewhere
///   (matmul.hpp, bf16_exact_exponents).
///
/// @par Summation order (both modes; the CUDA warp of 32 threads with 128-bit loads of 32 4-bit codes)
/// - K is cut into runs of 32 consecutive elements, run r = [32 r, 32 r + 32). K is padded with
///   zero elements (x = w = +0) to a multiple of 1024 = 32 runs, one "super-run" j per 1024.
/// - Thread t (0..31) owns the runs r = 32 j + t, j = 0, 1, ... in increasing j, and keeps one
///   float32 sum s_t, starting at +0.
///   - f32: for each of its runs, for e = 0..31: s_t = fma(x[32 r + e], w[32 r + e], s_t).
///   - bf16: for each of its runs, for p = 0..15: s_t = fma_ftz(x[32 r + 2p + 1], w[32 r + 2p + 1], s_t),
///     then s_t = fma_ftz(x[32 r + 2p], w[32 r + 2p], s_t) (the odd element first, as vdpbf16ps).
/// - The 32 sums are added by the warp's butterfly: for h = 16, 8, 4, 2, 1: s_t = s_t + s_{t+h}
///   (t < h), plain float32 adds; the result is s_0.
/// - y[m, n] = s_0 + f32(bias[n]) when there is a bias (one float32 add), then rounded to the
///   output dtype to nearest even.
/// On the host, lanes 0..15 of one 16-lane register are threads 0..15 (group 0) and a second
/// register holds threads 16..31 (group 1): every path performs exactly these operations.
#pragma once

#include "../config.hpp"
#include "../dtype.hpp"

#include <cmath>
#include <cstdint>

LOWBIT_NAMESPACE_BEGIN

/// What the products of `lowbit::matmul` are computed in (see matmul/definition.hpp).
enum class matmul_compute : std::uint8_t {
  f32,   ///< float32 operands, float32 fused multiply-add
  bf16,  ///< bfloat16 operands (subnormals as zero), float32 fused multiply-add flushing subnormal results
};

namespace mm {

inline constexpr int run_elements = 32;       ///< elements per run (one 128-bit load of 4-bit codes)
inline constexpr int warp_threads = 32;       ///< threads (partial sums) per output
inline constexpr int group_lanes = 16;        ///< threads per host register group
inline constexpr int super_elements = run_elements * warp_threads;  ///< 1024: K is padded to a multiple

/// Super-runs (blocks of 1024 padded elements) of a row of K elements.
LOWBIT_HD constexpr std::int64_t super_runs(std::int64_t K) noexcept { return (K + super_elements - 1) / super_elements; }

/// A float32 subnormal becomes a zero of its sign; other values are unchanged.
LOWBIT_HD float flush_subnormal(float v) noexcept {
  const std::uint32_t u = float_bits(v);
  return (u & 0x7F800000u) == 0 ? bits_float(u & 0x80000000u) : v;
}

/// The bfloat16 bits of a bf16-mode operand, as AVX512_BF16's vcvtneps2bf16 converts: a float32
/// zero or subnormal gives a zero of its sign, NaN a quiet NaN (its upper half, quiet bit set),
/// anything else nearest even (a normal float32 never rounds to a bfloat16 subnormal).
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR std::uint16_t bf16_operand_bits(float v) noexcept {
  const std::uint32_t u = float_bits(v);
  if ((u & 0x7F800000u) == 0) return static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// The value of a bf16-mode operand as float32.
LOWBIT_HD float bf16_operand(float v) noexcept { return bf16_bits_to_float(bf16_operand_bits(v)); }

/// One bf16-mode step: fma(a, b, s) rounded once, a subnormal result flushed to a zero of its sign
/// (a and b are bf16 operands, s a previous result, so no input is subnormal).
LOWBIT_HD float fma_ftz(float a, float b, float s) noexcept { return flush_subnormal(std::fma(a, b, s)); }

/// The butterfly over the 32 thread sums (s is overwritten): s_t += s_{t+h} for h = 16 .. 1.
LOWBIT_HD float reduce_threads(float* s) noexcept {
  for (int h = warp_threads / 2; h >= 1; h /= 2)
    for (int t = 0; t < h; ++t) s[t] = lowbit::detail::add_rn(s[t], s[t + h]);
  return s[0];
}

}  // namespace mm
LOWBIT_NAMESPACE_END
