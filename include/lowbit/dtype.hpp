// SPDX-License-Identifier: Apache-2.0
/// @file dtype.hpp
/// @brief The tensor element types lowbit reads and writes (float32, float16, bfloat16) and exact
///        conversions between them, usable on host and device.
///
/// @par Semantics
/// - float16/bfloat16 -> float32 is exact. NaN stays NaN with its sign; a float16 NaN payload is
///   shifted into the float32 payload and quieted (as F16C `vcvtph2ps` does), a bfloat16 NaN is
///   `bits << 16`.
/// - float32 -> float16/bfloat16 rounds to nearest, ties to even (`__float2half_rn`,
///   `__float2bfloat16_rn`). Overflow gives ±inf. Every NaN gives 0x7FFF, as NVIDIA's conversions do.
#pragma once

#include "config.hpp"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN

/// Element type of a dense tensor.
enum class dtype : std::uint8_t { f32, f16, bf16 };

/// IEEE binary16 storage (no arithmetic).
struct f16 {
  std::uint16_t bits;
};
/// bfloat16 storage (no arithmetic).
struct bf16 {
  std::uint16_t bits;
};

/// Bytes per element of `t`.
LOWBIT_HD constexpr int dtype_size(dtype t) noexcept { return t == dtype::f32 ? 4 : 2; }

/// Name of `t` as bitsandbytes/safetensors spell it ("float32", "float16", "bfloat16").
constexpr const char* dtype_name(dtype t) noexcept {
  return t == dtype::f32 ? "float32" : (t == dtype::f16 ? "float16" : "bfloat16");
}

/// float16 bits -> float32 (exact).
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float f16_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t man = h & 0x3FFu;
  if (exp == 0x1Fu) return bits_float(sign | 0x7F800000u | (man << 13) | (man ? 0x400000u : 0u));
  if (exp != 0u) return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
  if (man == 0u) return bits_float(sign);
  // subnormal: man * 2^-24, normalize
  int e = -14;
  while ((man & 0x400u) == 0u) {
    man <<= 1;
    --e;
  }
  return bits_float(sign | (static_cast<std::uint32_t>(e + 127) << 23) | ((man & 0x3FFu) << 13));
}

/// float32 -> float16 bits, round to nearest even; overflow -> ±inf; NaN -> 0x7FFF.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR std::uint16_t float_to_f16_bits(float x) noexcept {
  const std::uint32_t u = float_bits(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return 0x7FFFu;
  if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u);  // >= 65520: rounds to inf
  if (a >= 0x38800000u) {                                                   // normal half (>= 2^-14)
    const std::uint32_t r = a + 0x0FFFu + ((a >> 13) & 1u) - (112u << 23);
    return static_cast<std::uint16_t>(sign | (r >> 13));
  }
  if (a < 0x33000000u) return static_cast<std::uint16_t>(sign);  // < 2^-25: rounds to zero (tie 2^-25 -> 0)
  // subnormal half: value = a * 2^24 rounded to an integer, ties to even
  const std::uint32_t e = a >> 23;                   // 102..112
  const std::uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
  const std::uint32_t shift = 126u - e;             // 14..24
  const std::uint32_t q = sig >> shift;
  const std::uint32_t rem = sig & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  const std::uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  return static_cast<std::uint16_t>(sign | r);
}

/// bfloat16 bits -> float32 (exact).
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float bf16_bits_to_float(std::uint16_t b) noexcept {
  return bits_float(static_cast<std::uint32_t>(b) << 16);
}

/// float32 -> bfloat16 bits, round to nearest even; overflow -> ±inf; NaN -> 0x7FFF.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR std::uint16_t float_to_bf16_bits(float x) noexcept {
  const std::uint32_t u = float_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FFFu;
  return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// Widens one element to float32.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float to_float(float x) noexcept { return x; }
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float to_float(f16 x) noexcept { return f16_bits_to_float(x.bits); }
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float to_float(bf16 x) noexcept { return bf16_bits_to_float(x.bits); }

/// Narrows float32 to element type T (round to nearest even).
template <class T>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR T from_float(float x) noexcept;
template <>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float from_float<float>(float x) noexcept { return x; }
template <>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR f16 from_float<f16>(float x) noexcept { return f16{float_to_f16_bits(x)}; }
template <>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR bf16 from_float<bf16>(float x) noexcept { return bf16{float_to_bf16_bits(x)}; }

/// The dtype tag of element type T.
template <class T>
struct dtype_of;
template <>
struct dtype_of<float> {
  static constexpr dtype value = dtype::f32;
};
template <>
struct dtype_of<f16> {
  static constexpr dtype value = dtype::f16;
};
template <>
struct dtype_of<bf16> {
  static constexpr dtype value = dtype::bf16;
};

/// Calls `fn(T{})` with T the element type of `t` (float, f16 or bf16) and returns its result;
/// a value that is not an enumerator counts as bf16, so callers validate `t` first.
template <class Fn>
decltype(auto) visit_dtype(dtype t, Fn&& fn) {
  switch (t) {
    case dtype::f32: return fn(float{});
    case dtype::f16: return fn(f16{});
    case dtype::bf16: break;
  }
  return fn(bf16{});
}

LOWBIT_NAMESPACE_END
