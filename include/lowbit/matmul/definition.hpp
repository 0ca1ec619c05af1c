// SPDX-License-Identifier: Apache-2.0
/// @file definition.hpp
/// @brief The numerics of the fused low-bit matmul `y = x · dequant(W)ᵀ (+ bias)`: its two compute
///        modes, its two summation orders, and the scalar steps every engine (the host paths here,
///        the CUDA kernels) performs. docs/matmul.md explains the choice.
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
/// @par Summation orders (both modes)
/// Two orders, one per kind of device, because no single one suits both (docs/matmul.md has the
/// measurements): `warp`, what a CUDA warp computes with one 128-bit load of 32 4-bit codes per
/// thread, and `lanes`, what a 16-lane AVX-512 register computes with one table lookup per 16
/// elements of one block. matmul_options::order picks one; `native` (the default) is `lanes` on the
/// host and `warp` in CUDA, and the host computes `warp` too (bit-identical to the CUDA kernels).
/// Both have the same frame:
/// - K is padded with zero elements (x = w = +0) to a multiple of 1024, one "super-run" j per 1024.
///   Super-run j is two groups of 512 consecutive elements, group g = [1024 j + 512 g, + 512).
/// - Thread T = 16 g + t (g = 0, 1; t = 0..15) keeps one float32 sum s_T, starting at +0, and takes
///   32 steps in group g of each super-run, j = 0, 1, ... in increasing j. Step e of thread t is
///   the element at offset step_offset(order, t, e) of its group:
///   - warp: 32 t + e (thread T owns the run of 32 elements [1024 j + 32 T, + 32));
///   - lanes: 64 (e / 4) + 4 t + e % 4 (at steps 4 c .. 4 c + 3 the 16 threads cover the 64
///     elements of chunk c of the group, thread t elements 4 t .. 4 t + 3).
///   - f32: each step is s_T = fma(x[k], w[k], s_T) at the step's element k, e = 0..31 in order.
///   - bf16: the steps come in operand pairs p = 0..15: the even element is step pair_step(order,
///     p) (warp: 2 p; lanes: 4 (p / 2) + p % 2) and the odd one is pair_stride(order) elements
///     later (warp: 1, lanes: 2). For each pair, s_T = fma_ftz(x[odd], w[odd], s_T), then s_T =
///     fma_ftz(x[even], w[even], s_T) (the odd element first, as vdpbf16ps).
/// - The 32 sums are added by the warp's butterfly: for h = 16, 8, 4, 2, 1: s_T = s_T + s_{T+h}
///   (T < h), plain float32 adds; the result is s_0.
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

/// Which summation order `lowbit::matmul` follows (see matmul/definition.hpp).
enum class matmul_order : std::uint8_t {
  native,  ///< the order of the device that computes: lanes on the host, warp in CUDA
  warp,    ///< each thread a run of 32 consecutive elements (the CUDA kernels; the host computes it too)
  lanes,   ///< 16 threads across each 64 consecutive elements (the host's AVX-512 decode; host only)
};

namespace mm {

inline constexpr int run_elements = 32;       ///< elements per run (one 128-bit load of 4-bit codes)
inline constexpr int warp_threads = 32;       ///< threads (partial sums) per output
inline constexpr int group_lanes = 16;        ///< threads per host register group
inline constexpr int super_elements = run_elements * warp_threads;  ///< 1024: K is padded to a multiple
inline constexpr int group_elements = super_elements / 2;           ///< 512: the elements of one thread group
inline constexpr int chunk_elements = 64;  ///< lanes order: the elements the 16 threads of a group cover in 4 steps

/// The offset in its group of step e (0..31) of thread t (0..15) in `order` (warp or lanes).
LOWBIT_HD constexpr int step_offset(matmul_order order, int t, int e) noexcept {
  return order == matmul_order::lanes ? chunk_elements * (e >> 2) + 4 * t + (e & 3) : run_elements * t + e;
}
/// The step of the even element of bf16 operand pair p (0..15) in `order` (warp or lanes).
LOWBIT_HD constexpr int pair_step(matmul_order order, int p) noexcept { return order == matmul_order::lanes ? 4 * (p >> 1) + (p & 1) : 2 * p; }
/// How many steps (and elements) after the even element of a pair its odd element is.
LOWBIT_HD constexpr int pair_stride(matmul_order order) noexcept { return order == matmul_order::lanes ? 2 : 1; }

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
