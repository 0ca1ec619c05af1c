// SPDX-License-Identifier: Apache-2.0
/// @file integer.hpp
/// @brief Integer codecs with an explicit scale: symmetric `int8_absmax` (codes -127..127) and
///        asymmetric `uint8_zeropoint` (codes 0..255 around an integer zero point).
///
/// @par Semantics
/// - Rounding is to nearest, ties to even (as `torch.round` and CUDA `cvt.rni`), done with exact
///   float32 arithmetic, never with the current floating-point environment.
/// - The scaled value `x * inv_scale` is one rounded float32 multiply.
/// - Out-of-range values clamp to the end codes; ±inf clamps too.
/// - NaN encodes to the code of zero (int8_absmax 0, uint8_zeropoint the zero point).
/// - `decode` is one rounded float32 multiply: `f32(q * scale)`.
#pragma once

#include "../config.hpp"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace codecs {
namespace detail {

/// Rounds `y` to the nearest integer, ties to even, for |y| <= 2^22 (exact: adding and
/// subtracting 1.5 * 2^23 leaves only the integer part under IEEE round-to-nearest-even).
LOWBIT_HD constexpr float round_half_even_small(float y) noexcept {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23
  const float t = lowbit::detail::add_rn(y, magic);
  return lowbit::detail::add_rn(t, -magic);
}

/// Clamps `y` to [lo, hi]; NaN becomes `nan_value`.
LOWBIT_HD constexpr float clamp_or(float y, float lo, float hi, float nan_value) noexcept {
  return y != y ? nan_value : (y < lo ? lo : (y > hi ? hi : y));
}

}  // namespace detail

/// Symmetric 8-bit integer: `q = clamp(round_half_even(x * inv_scale), -127, 127)`,
/// `decode(q, scale) = f32(q * scale)`. With absmax scaling `inv_scale = 127 / absmax` and
/// `scale = absmax / 127`. Code -128 is never produced; `decode` accepts it.
struct int8_absmax {
  using storage_type = std::int8_t;
  static constexpr int bits = 8;
  static constexpr int max_code = 127;
  static constexpr storage_type zero_code = 0;

  LOWBIT_HD static constexpr storage_type encode(float x, float inv_scale) noexcept {
    const float y = detail::clamp_or(lowbit::detail::mul_rn(x, inv_scale), -127.0f, 127.0f, 0.0f);
    return static_cast<storage_type>(detail::round_half_even_small(y));
  }
  LOWBIT_HD static constexpr float decode(storage_type q, float scale) noexcept {
    return lowbit::detail::mul_rn(static_cast<float>(q), scale);
  }
};

/// Asymmetric 8-bit integer around an integer zero point `zp` in [0, 255]:
/// `q = clamp(round_half_even(x * inv_scale) + zp, 0, 255)`, `decode(q, scale, zp) =
/// f32((q - zp) * scale)`. With min/max scaling `scale = (max - min) / 255` and
/// `zp = round_half_even(-min / scale)`; the caller chooses both.
struct uint8_zeropoint {
  using storage_type = std::uint8_t;
  static constexpr int bits = 8;

  LOWBIT_HD static constexpr storage_type encode(float x, float inv_scale, int zero_point) noexcept {
    // Clamping to +-256 before rounding changes nothing after adding zp in [0,255] and clamping.
    const float y = detail::clamp_or(lowbit::detail::mul_rn(x, inv_scale), -256.0f, 256.0f, 0.0f);
    const int q = static_cast<int>(detail::round_half_even_small(y)) + zero_point;
    return static_cast<storage_type>(q < 0 ? 0 : (q > 255 ? 255 : q));
  }
  LOWBIT_HD static constexpr float decode(storage_type q, float scale, int zero_point) noexcept {
    return lowbit::detail::mul_rn(static_cast<float>(static_cast<int>(q) - zero_point), scale);
  }
};

}  // namespace codecs
LOWBIT_NAMESPACE_END
