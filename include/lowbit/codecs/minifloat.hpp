// SPDX-License-Identifier: Apache-2.0
/// @file minifloat.hpp
/// @brief Every small binary floating-point format through one template: OCP FP8 (`e4m3fn`,
///        `e5m2`), OCP FP6 (`e2m3fn`, `e3m2fn`), OCP FP4 (`e2m1fn`), the 4-bit `e3m0`, and the MX
///        scale `e8m0fnu`.
///
/// @par Semantics (all formats; per-format tables in docs/formats.md)
/// - `decode` is exact: every code maps to the float32 of its value. `-0` codes give `-0.0f`.
///   Inf codes give `±inf`. NaN codes give the quiet float32 NaN with the code's sign bit and
///   payload 0x400000 (`0x7FC00000` / `0xFFC00000`).
/// - `encode` rounds the float32 input to the nearest representable value; ties go to the code
///   whose least significant bit is 0 (for formats with mantissa bits this is IEEE round to
///   nearest, ties to even). `rounding::toward_zero` and `rounding::toward_pos_inf` are also
///   offered (NVIDIA's two modes for E8M0 scales).
/// - Values too small for the format round to (signed) zero; a negative input that rounds to zero
///   gives the negative-zero code. Formats without zero (`e8m0fnu`) clip to their smallest value.
/// - Unsigned formats (`e8m0fnu`) encode |x|, as NVIDIA's `cvt ... .ue8m0` does.
/// - Overflow (a rounded magnitude above the largest finite value, or ±inf):
///   `overflow::saturate` gives ±max finite; `overflow::special` gives ±inf where the format has
///   Inf (e5m2), else the NaN code with the input's sign (e4m3fn: `0xFF` for negative, as
///   `__NV_NOSAT` does), else ±max (formats with neither Inf nor NaN always saturate).
/// - A NaN input gives the format's canonical NaN code (sign bit clear: e4m3fn/e5m2 `0x7F`,
///   e8m0fnu `0xFF`) or, for formats without NaN, +max (as NVIDIA's FP4/FP6 conversions do).
///
/// These rules equal `__nv_cvt_float_to_fp8(x, __NV_SATFINITE | __NV_NOSAT, ...)`,
/// `__nv_cvt_float_to_fp6(x, ..., cudaRoundNearest)`, `__nv_cvt_float_to_fp4(x, __NV_E2M1,
/// cudaRoundNearest)` and `__nv_cvt_float_to_e8m0(x, ..., cudaRoundZero | cudaRoundPosInf)` for
/// every float32 input (tests/codecs/exhaustive_test.cpp checks all 2^32 patterns).
#pragma once

#include "../config.hpp"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace codecs {

/// How a format spends its top exponent code on special values.
enum class specials : unsigned char {
  ieee,    ///< top exponent: mantissa 0 = Inf, other mantissas = NaN (e5m2)
  fn,      ///< finite + NaN: only the all-ones code (per sign) is NaN, no Inf (e4m3fn, e8m0fnu)
  finite,  ///< no Inf, no NaN: every code is a finite number (e2m1fn, e2m3fn, e3m2fn, e3m0)
};

/// Rounding direction of `encode`.
enum class rounding : unsigned char {
  nearest_even,    ///< to nearest; ties to the code with an even least significant bit
  toward_zero,     ///< truncate the magnitude
  toward_pos_inf,  ///< toward +infinity (ceiling)
};

/// What `encode` does with values beyond the largest finite value (and with ±inf).
enum class overflow : unsigned char {
  saturate,  ///< clamp to ±max finite (`__NV_SATFINITE`)
  special,   ///< ±inf if the format has Inf, else the NaN code, else ±max (`__NV_NOSAT`)
};

/// A binary minifloat: `ExpBits` exponent bits, `ManBits` mantissa bits, exponent `Bias`,
/// special-value scheme `Specials`, a sign bit if `Signed`, and subnormals (with zero) if
/// `Subnormals` (otherwise exponent code 0 is an ordinary exponent and the format has no zero).
///
/// Codes are the low `bits` bits of a `std::uint8_t`; bits above them are ignored by `decode`.
template <int ExpBits, int ManBits, int Bias, specials Specials, bool Signed = true,
          bool Subnormals = true>
struct minifloat {
  static_assert(ExpBits >= 1 && ManBits >= 0 && ExpBits + ManBits + (Signed ? 1 : 0) <= 8,
                "minifloat: at most 8 bits");

  using storage_type = std::uint8_t;
  static constexpr int exponent_bits = ExpBits;
  static constexpr int mantissa_bits = ManBits;
  static constexpr int bias = Bias;
  static constexpr specials special_values = Specials;
  static constexpr bool is_signed = Signed;
  static constexpr bool has_subnormals = Subnormals;
  /// Bits per code.
  static constexpr int bits = ExpBits + ManBits + (Signed ? 1 : 0);
  static constexpr int num_codes = 1 << bits;
  static constexpr bool has_inf = Specials == specials::ieee;
  static constexpr bool has_nan = Specials != specials::finite;
  static constexpr bool has_zero = Subnormals;

  /// Sign-bit mask within the code (0 for unsigned formats).
  static constexpr std::uint32_t sign_mask = Signed ? (1u << (ExpBits + ManBits)) : 0u;
  /// Mask of the magnitude (exponent and mantissa) bits.
  static constexpr std::uint32_t magnitude_mask = (1u << (ExpBits + ManBits)) - 1u;
  /// Magnitude code of the largest finite value.
  static constexpr std::uint32_t max_magnitude_code =
      Specials == specials::ieee ? (((1u << ExpBits) - 2u) << ManBits) | ((1u << ManBits) - 1u)
      : Specials == specials::fn ? magnitude_mask - 1u
                                 : magnitude_mask;
  /// Magnitude code of infinity (meaningful only when `has_inf`).
  static constexpr std::uint32_t inf_magnitude_code = ((1u << ExpBits) - 1u) << ManBits;
  /// The code `encode` returns for a NaN input.
  static constexpr std::uint32_t nan_code = has_nan ? magnitude_mask : max_magnitude_code;
  /// Unbiased exponent of exponent code 1 (or code 0 when the format has no subnormals).
  static constexpr int min_exponent = Subnormals ? 1 - Bias : -Bias;

  /// True if `code` is a NaN code of this format.
  LOWBIT_HD static constexpr bool is_nan(storage_type code) noexcept {
    const std::uint32_t mag = code & magnitude_mask;
    if constexpr (Specials == specials::ieee) {
      return (mag >> ManBits) == ((1u << ExpBits) - 1u) && (mag & ((1u << ManBits) - 1u)) != 0u;
    } else if constexpr (Specials == specials::fn) {
      return mag == magnitude_mask;
    } else {
      return false;
    }
  }

  /// True if `code` is ±Inf.
  LOWBIT_HD static constexpr bool is_inf(storage_type code) noexcept {
    return has_inf && (code & magnitude_mask) == inf_magnitude_code;
  }

  /// Exact value of `code` as float32 (see the file comment for NaN and zero).
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float decode(storage_type code) noexcept {
    const std::uint32_t sign = (code & sign_mask) ? 0x80000000u : 0u;
    const std::uint32_t mag = code & magnitude_mask;
    if (is_nan(code)) return bits_float(sign | 0x7FC00000u);
    if (is_inf(code)) return bits_float(sign | 0x7F800000u);
    const std::uint32_t e = mag >> ManBits;
    const std::uint32_t m = mag & ((1u << ManBits) - 1u);
    // value = significand * 2^(exponent - ManBits), with an exact integer significand
    std::uint32_t significand = m;
    int exponent = min_exponent;
    if (e != 0u || !Subnormals) {
      significand |= 1u << ManBits;
      exponent = static_cast<int>(e) + min_exponent - (Subnormals ? 1 : 0);
    }
    if (significand == 0u) return bits_float(sign);
    return bits_float(sign | float_bits(static_cast<float>(significand) * pow2(exponent - ManBits)));
  }

  /// Rounds float32 `x` to a code of this format (see the file comment).
  template <rounding Round = rounding::nearest_even, overflow Overflow = overflow::saturate>
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR storage_type encode(float x) noexcept {
    const std::uint32_t u = float_bits(x);
    const bool negative = (u >> 31) != 0u;
    const std::uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return static_cast<storage_type>(nan_code);
    const std::uint32_t sign = (negative && Signed) ? sign_mask : 0u;
    if (a == 0x7F800000u) return static_cast<storage_type>(sign | overflow_magnitude<Overflow>());

    // a = sig * 2^(ea - 23) with 2^23 <= sig < 2^24 (float32 subnormals normalized, because a
    // format without subnormals may reach below 2^-126: e8m0fnu's smallest value is 2^-127).
    const std::uint32_t fexp = a >> 23;
    int ea = static_cast<int>(fexp) - 127;
    std::uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
    if (fexp == 0u) {
      ea = -126;
      sig = a;
      while (sig != 0u && sig < 0x800000u) {
        sig <<= 1;
        --ea;
      }
    }

    // Quantum of the result: 2^(max(ea, min_exponent) - ManBits). shift >= 23 - ManBits >= 16.
    const int top = ea > min_exponent ? ea : min_exponent;
    const int shift = top - ManBits - (ea - 23);
    std::uint32_t r = 0u;
    std::uint32_t rem = 0u;
    std::uint32_t half = 0u;
    if (shift < 32) {
      r = sig >> shift;
      rem = sig & ((1u << shift) - 1u);
      half = 1u << (shift - 1);
    } else {
      rem = sig;  // everything is below the quantum; rem < 2^24 <= half
      half = 0x80000000u;
    }
    // Candidate magnitude code for the truncated value. Without subnormals the leading 1 of a
    // normal significand is implicit, so it is subtracted (r < 2^ManBits means "below the range").
    std::int32_t code = static_cast<std::int32_t>(static_cast<std::uint32_t>(top - min_exponent) << ManBits) +
                        static_cast<std::int32_t>(r) - (Subnormals ? 0 : (1 << ManBits));
    bool up = false;
    if constexpr (Round == rounding::nearest_even) {
      up = rem > half || (rem == half && (code & 1) != 0);
    } else if constexpr (Round == rounding::toward_pos_inf) {
      up = rem != 0u && !(negative && Signed);  // unsigned formats round |x|
    }
    code += up ? 1 : 0;
    if (code < 0) code = 0;  // no-subnormal formats clip to their smallest value
    if (static_cast<std::uint32_t>(code) > max_magnitude_code) {
      return static_cast<storage_type>(sign | overflow_magnitude<Overflow>());
    }
    return static_cast<storage_type>(sign | static_cast<std::uint32_t>(code));
  }

  /// Largest finite value.
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float max() noexcept {
    return decode(static_cast<storage_type>(max_magnitude_code));
  }
  /// Smallest positive normal value.
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float min_normal() noexcept {
    return decode(static_cast<storage_type>(Subnormals ? (1u << ManBits) : 0u));
  }
  /// Smallest positive value (subnormal if the format has subnormals).
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float min_positive() noexcept {
    return decode(static_cast<storage_type>(Subnormals ? 1u : 0u));
  }

 private:
  /// 2^k as float32, exact for k in [-149, 127].
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float pow2(int k) noexcept {
    if (k >= -126) return bits_float(static_cast<std::uint32_t>(k + 127) << 23);
    return bits_float(1u << (k + 149));
  }

  template <overflow Overflow>
  LOWBIT_HD static constexpr std::uint32_t overflow_magnitude() noexcept {
    if constexpr (Overflow == overflow::saturate) {
      return max_magnitude_code;
    } else if constexpr (has_inf) {
      return inf_magnitude_code;
    } else if constexpr (has_nan) {
      return magnitude_mask;  // the NaN code
    } else {
      return max_magnitude_code;
    }
  }
};

/// OCP FP8 E4M3 ("fn": finite + NaN). Bias 7, max 448, min normal 2^-6, min subnormal 2^-9,
/// NaN = S.1111.111, no Inf.
using e4m3fn = minifloat<4, 3, 7, specials::fn>;
/// OCP FP8 E5M2 (IEEE-like). Bias 15, max 57344, min normal 2^-14, min subnormal 2^-16,
/// Inf = S.11111.00, NaN = S.11111.{01,10,11}.
using e5m2 = minifloat<5, 2, 15, specials::ieee>;
/// OCP FP6 E2M3. Bias 1, max 7.5, min subnormal 0.125, no Inf/NaN.
using e2m3fn = minifloat<2, 3, 1, specials::finite>;
/// OCP FP6 E3M2. Bias 3, max 28, min subnormal 0.0625, no Inf/NaN.
using e3m2fn = minifloat<3, 2, 3, specials::finite>;
/// OCP FP4 E2M1 (MX, NVFP4 elements). Bias 1, values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, no Inf/NaN.
/// Not bitsandbytes' "fp4" (see bnb_fp4).
using e2m1fn = minifloat<2, 1, 1, specials::finite>;
/// 4-bit sign + 3 exponent bits, no mantissa. Bias 3, values ±{0, 0.25, 0.5, 1, 2, 4, 8, 16},
/// no Inf/NaN (exponent code 0 is zero).
using e3m0 = minifloat<3, 0, 3, specials::finite>;
/// OCP MX scale E8M0 (unsigned, "fnu"): 2^(e-127) for e in 0..254, 0xFF = NaN, no zero, no Inf.
/// Code 0 decodes to the float32 subnormal 2^-127 (0x00400000).
using e8m0fnu = minifloat<8, 0, 127, specials::fn, /*Signed=*/false, /*Subnormals=*/false>;

}  // namespace codecs
LOWBIT_NAMESPACE_END
