// SPDX-License-Identifier: Apache-2.0
/// @file packing.hpp
/// @brief Two 4-bit codes per byte, in either nibble order.
///
/// @par Semantics
/// - `nibble_order::high_first` (bitsandbytes): element 2j in bits 7..4, element 2j+1 in bits 3..0.
/// - `nibble_order::low_first` (OCP MX, NVFP4, `__nv_fp4x2`): element 2j in bits 3..0.
/// - An odd element count pads the last byte with `pad_code` (callers pass the code of 0.0).
/// - Only the low 4 bits of each code are used.
#pragma once

#include "../config.hpp"

#include <cstddef>
#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace codecs {

/// Which nibble of a byte holds the even-indexed element.
enum class nibble_order : unsigned char {
  high_first,  ///< bitsandbytes: byte j = q[2j] << 4 | q[2j+1]
  low_first,   ///< OCP FP4 / __nv_fp4x2: byte j = q[2j] | q[2j+1] << 4
};

/// Packs two 4-bit codes; `first` is the even-indexed element.
template <nibble_order Order>
LOWBIT_HD constexpr std::uint8_t pack_nibbles(std::uint8_t first, std::uint8_t second) noexcept {
  return Order == nibble_order::high_first
             ? static_cast<std::uint8_t>(((first & 0xFu) << 4) | (second & 0xFu))
             : static_cast<std::uint8_t>((first & 0xFu) | ((second & 0xFu) << 4));
}

/// The 4-bit code of element `index` (0 = even, 1 = odd) of a packed byte.
template <nibble_order Order>
LOWBIT_HD constexpr std::uint8_t unpack_nibble(std::uint8_t byte, int index) noexcept {
  const int high = Order == nibble_order::high_first ? (index == 0) : (index != 0);
  return static_cast<std::uint8_t>(high ? (byte >> 4) : (byte & 0xFu));
}

/// Bytes needed for `n` 4-bit codes: ceil(n / 2).
LOWBIT_HD constexpr std::size_t packed_size_4bit(std::size_t n) noexcept { return n / 2 + (n & 1u); }

/// Packs `n` codes from `codes` into `packed_size_4bit(n)` bytes of `out`, padding with `pad_code`.
template <nibble_order Order>
inline void pack_4bit(const std::uint8_t* codes, std::size_t n, std::uint8_t* out,
                      std::uint8_t pad_code) noexcept {
  const std::size_t pairs = n / 2;
  for (std::size_t j = 0; j < pairs; ++j) out[j] = pack_nibbles<Order>(codes[2 * j], codes[2 * j + 1]);
  if (n & 1u) out[pairs] = pack_nibbles<Order>(codes[n - 1], pad_code);
}

/// Unpacks `n` codes from `packed` (which holds `packed_size_4bit(n)` bytes) into `codes`.
template <nibble_order Order>
inline void unpack_4bit(const std::uint8_t* packed, std::size_t n, std::uint8_t* codes) noexcept {
  for (std::size_t k = 0; k < n; ++k) codes[k] = unpack_nibble<Order>(packed[k / 2], static_cast<int>(k & 1u));
}

}  // namespace codecs
LOWBIT_NAMESPACE_END
