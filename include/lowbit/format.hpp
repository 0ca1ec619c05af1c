// SPDX-License-Identifier: Apache-2.0
/// @file format.hpp
/// @brief The runtime list of blockwise formats and the one place that maps them onto codecs.
#pragma once

#include "codecs.hpp"
#include "config.hpp"

#include <cstdint>
#include <cstring>

LOWBIT_NAMESPACE_BEGIN

/// A blockwise quantization format: an element codec plus the rule that scales each block.
enum class format : std::uint8_t {
  nf4,              ///< bitsandbytes NF4, float32 absmax per block, codes packed high nibble first
  bnb_fp4,          ///< bitsandbytes "fp4", float32 absmax per block, packed high nibble first
  bnb_dynamic8,     ///< bitsandbytes 8-bit dynamic map (quantize_blockwise), float32 absmax
  int8_absmax,      ///< symmetric int8, float32 absmax per block (LLM.int8 CB/SCB convention)
  uint8_zeropoint,  ///< asymmetric uint8, float32 scale + uint8 zero point per block
  e4m3fn,           ///< OCP FP8 E4M3, float32 scale = absmax / 448 per block
  e5m2,             ///< OCP FP8 E5M2, float32 scale = absmax / 57344 per block
  e2m1fn,           ///< OCP FP4 E2M1, float32 scale = absmax / 6, packed low nibble first
};

/// Number of formats (for iteration in tests and tools).
inline constexpr int format_count = 8;

/// Static facts about a format.
struct format_info {
  const char* name;  ///< e.g. "nf4"
  int bits;          ///< bits per element code (4 or 8)
  bool bnb;          ///< stores bitsandbytes' float32 absmax and a bitsandbytes code table
  bool zero_point;   ///< stores a uint8 zero point per block
  codecs::nibble_order order;  ///< nibble order of 4-bit codes
};

/// Facts about `f`.
LOWBIT_HD constexpr format_info info(format f) noexcept {
  using codecs::nibble_order;
  switch (f) {
    case format::nf4: return {"nf4", 4, true, false, nibble_order::high_first};
    case format::bnb_fp4: return {"bnb_fp4", 4, true, false, nibble_order::high_first};
    case format::bnb_dynamic8: return {"bnb_dynamic8", 8, true, false, nibble_order::high_first};
    case format::int8_absmax: return {"int8_absmax", 8, false, false, nibble_order::high_first};
    case format::uint8_zeropoint: return {"uint8_zeropoint", 8, false, true, nibble_order::high_first};
    case format::e4m3fn: return {"e4m3fn", 8, false, false, nibble_order::high_first};
    case format::e5m2: return {"e5m2", 8, false, false, nibble_order::high_first};
    case format::e2m1fn: return {"e2m1fn", 4, false, false, nibble_order::low_first};
  }
  return {"?", 0, false, false, nibble_order::high_first};
}

/// Looks up a format by name; false if `name` is not one.
inline bool parse_format(const char* name, format& out) noexcept {
  for (int i = 0; i < format_count; ++i) {
    const auto f = static_cast<format>(i);
    if (std::strcmp(info(f).name, name) == 0) {
      out = f;
      return true;
    }
  }
  return false;
}

/// Calls `fn(std::integral_constant<format, F>{})` for the runtime value `f` and returns its result.
template <class Fn>
decltype(auto) visit_format(format f, Fn&& fn) {
  switch (f) {
    case format::nf4: return fn(std::integral_constant<format, format::nf4>{});
    case format::bnb_fp4: return fn(std::integral_constant<format, format::bnb_fp4>{});
    case format::bnb_dynamic8: return fn(std::integral_constant<format, format::bnb_dynamic8>{});
    case format::int8_absmax: return fn(std::integral_constant<format, format::int8_absmax>{});
    case format::uint8_zeropoint: return fn(std::integral_constant<format, format::uint8_zeropoint>{});
    case format::e4m3fn: return fn(std::integral_constant<format, format::e4m3fn>{});
    case format::e5m2: return fn(std::integral_constant<format, format::e5m2>{});
    case format::e2m1fn: break;
  }
  return fn(std::integral_constant<format, format::e2m1fn>{});
}

LOWBIT_NAMESPACE_END
