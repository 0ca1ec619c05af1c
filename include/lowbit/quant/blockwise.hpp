// SPDX-License-Identifier: Apache-2.0
/// @file blockwise.hpp
/// @brief Per-block arithmetic shared by every engine (host and CUDA): how a block's statistics
///        become its stored scale and its encoding multiplier, and how one element is encoded and
///        decoded. One definition of every formula; no CUDA header.
///
/// @par Formulas (float32, each operation rounded once; `absmax` = max |x| over the block)
/// | format | stored per block | encode multiplier `inv` | element code | decode |
/// |---|---|---|---|---|
/// | nf4, bnb_fp4, bnb_dynamic8 | `absmax` | `1.0f / absmax` | `codec(x * inv)` | `table[q] * absmax` |
/// | int8_absmax | `absmax` | `127.0f / absmax` | `clamp(rne(x * inv), ±127)` | `(q * absmax) * f32(1/127)` |
/// | e4m3fn, e5m2, e2m1fn | `s = absmax / max` | `max / absmax` | `encode_sat(x * inv)` | `decode(q) * s` |
/// | uint8_zeropoint | `s = (hi - lo) / 255`, `zp` | `1.0f / s` | `clamp(rne(x * inv) + zp, 0, 255)` | `(q - zp) * s` |
///
/// For uint8_zeropoint `lo = min(min x, 0)`, `hi = max(max x, 0)` (zero is always exact) and
/// `zp = clamp(rne(-lo * inv), 0, 255)`. `max` is the format's largest finite value (448, 57344, 6).
/// bitsandbytes formats keep bitsandbytes' convention (absmax stored, table normalized to ±1),
/// so dequantizing bitsandbytes' bytes gives its outputs bit for bit; int8_absmax's decode is
/// bitsandbytes' `int8_vectorwise_dequant`.
///
/// @par Zero blocks
/// A block whose elements are all ±0 stores scale 0 (and zero point 0); every element gets the
/// code of +0.0 (`zero_code`) and dequantizes to +0.0. bitsandbytes' CUDA kernels write code 0
/// there (NF4 -1.0 * 0 = -0.0); both decode to zero. A block whose encoding multiplier would
/// overflow float32 (absmax below about 2.9e-39 for the bitsandbytes formats, 3.7e-37 for
/// int8_absmax) is also a zero block.
///
/// @par Subnormals
/// lowbit computes with subnormals (no flush to zero, on every engine). bitsandbytes' CUDA kernels
/// run with FTZ, so its bytes differ where a subnormal matters: a negative subnormal x * inv
/// encodes in bnb_fp4 as the -0 code 8 here and as code 0 there, and a block whose absmax is a
/// subnormal above 2.9e-39 is a zero block there but is scaled here.
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../format.hpp"

#include <cstddef>
#include <cstdint>
#include <tuple>

LOWBIT_NAMESPACE_BEGIN
namespace quant {

/// Statistics of one block, gathered over its finite elements.
struct block_stats {
  float absmax = 0.0f;  ///< max |x|
  float lo = 0.0f;      ///< min(min x, 0)
  float hi = 0.0f;      ///< max(max x, 0)

  /// Adds one element (NaN is ignored, as fmaxf does).
  LOWBIT_HD constexpr void add(float x) noexcept {
    const float a = x < 0.0f ? -x : x;
    absmax = a > absmax ? a : absmax;
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  /// Merges the statistics of another part of the same block.
  LOWBIT_HD constexpr void merge(const block_stats& o) noexcept {
    absmax = o.absmax > absmax ? o.absmax : absmax;
    lo = o.lo < lo ? o.lo : lo;
    hi = o.hi > hi ? o.hi : hi;
  }
};

/// Everything needed to encode the elements of one block.
struct block_encoder {
  float scale = 0.0f;    ///< the value stored per block (absmax or s)
  float inv = 0.0f;      ///< multiplier applied to each element before the codec
  int zero_point = 0;    ///< uint8_zeropoint only
  bool zero = true;      ///< zero block: every element gets the format's zero code
};

/// The element codecs of the formats, in enum order.
using format_codecs = std::tuple<codecs::nf4, codecs::bnb_fp4, codecs::bnb_dynamic8, codecs::int8_absmax,
                                 codecs::uint8_zeropoint, codecs::e4m3fn, codecs::e5m2, codecs::e2m1fn>;
static_assert(std::tuple_size<format_codecs>::value == format_count, "one codec per format");

/// Compile-time description of one format's per-block arithmetic: its codec and the code every
/// element of a zero block gets (the code of +0.0).
template <format F>
struct scheme {
  using codec = std::tuple_element_t<static_cast<std::size_t>(F), format_codecs>;
  static constexpr std::uint8_t zero_code = [] {
    if constexpr (info(F).bnb) {
      return codec::zero_code;
    } else {
      return std::uint8_t{0};
    }
  }();
};

/// The largest finite value of a minifloat format, as used by its block scale.
template <format F>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float minifloat_max() noexcept {
  return scheme<F>::codec::max();
}

/// The per-format constants of make_encoder for the formats without a zero point: a block with
/// max |x| = `absmax` encodes with `inv = code_max / absmax` and stores `absmax / scale_divisor`
/// (`absmax` itself when scale_divisor is 1). One definition for every engine (make_encoder, the
/// host's vectorized scales).
struct encoder_constants {
  float code_max;       ///< largest |x * inv|: 1 (bitsandbytes' ±1 tables), 127 (int8_absmax), minifloat_max
  float scale_divisor;  ///< 1, or minifloat_max for the minifloats (their scale is absmax / max)
};

/// encoder_constants of format F (not uint8_zeropoint, whose scale comes from its range).
template <format F>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR encoder_constants encoder_constants_of() noexcept {
  static_assert(!info(F).zero_point, "uint8_zeropoint's encoder comes from its range, not an absmax");
  if constexpr (F == format::int8_absmax) {
    return {127.0f, 1.0f};
  } else if constexpr (F == format::e4m3fn || F == format::e5m2 || F == format::e2m1fn) {
    return {minifloat_max<F>(), minifloat_max<F>()};
  } else {
    return {1.0f, 1.0f};
  }
}

/// f32(1/127): bitsandbytes' int8 dequantization constant 7.874015718698502e-3.
inline constexpr float int8_dequant_factor = 1.0f / 127.0f;

/// Turns block statistics into the block's stored scale and encoding multiplier.
template <format F>
LOWBIT_HD block_encoder make_encoder(const block_stats& st) noexcept {
  block_encoder e;
  if constexpr (F == format::uint8_zeropoint) {
    const float range = st.hi - st.lo;
    if (!(range > 0.0f)) return e;
    e.scale = range / 255.0f;
    e.inv = 1.0f / e.scale;
    if (!(e.inv <= 3.40282347e38f)) return block_encoder{};
    e.zero = false;
    const float z = codecs::detail::clamp_or(lowbit::detail::mul_rn(-st.lo, e.inv), 0.0f, 255.0f, 0.0f);
    e.zero_point = static_cast<int>(codecs::detail::round_half_even_small(z));
    return e;
  } else {
    if (!(st.absmax > 0.0f)) return e;
    const encoder_constants c = encoder_constants_of<F>();
    e.scale = c.scale_divisor == 1.0f ? st.absmax : st.absmax / c.scale_divisor;
    e.inv = c.code_max / st.absmax;
    if (!(e.inv <= 3.40282347e38f)) return block_encoder{};
    e.zero = false;
    return e;
  }
}

/// Code of element `x` of a block encoded by `e`.
template <format F>
LOWBIT_HD std::uint8_t encode_element(float x, const block_encoder& e) noexcept {
  using codec = typename scheme<F>::codec;
  if (e.zero) return scheme<F>::zero_code;
  if constexpr (F == format::int8_absmax) {
    return static_cast<std::uint8_t>(codec::encode(x, e.inv));
  } else if constexpr (F == format::uint8_zeropoint) {
    return codec::encode(x, e.inv, e.zero_point);
  } else if constexpr (F == format::e4m3fn || F == format::e5m2 || F == format::e2m1fn) {
    return codec::template encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(
        lowbit::detail::mul_rn(x, e.inv));
  } else {
    return codec::encode(lowbit::detail::mul_rn(x, e.inv));
  }
}

/// Value of code `q` in a block with stored `scale` (and `zero_point`), before conversion to the
/// output dtype. `table_value` is `table[q]` of the format's decode table (see decode_table).
template <format F>
LOWBIT_HD float decode_element(float table_value, float scale, int zero_point = 0) noexcept {
  if constexpr (F == format::int8_absmax) {
    return lowbit::detail::mul_rn(lowbit::detail::mul_rn(table_value, scale), int8_dequant_factor);
  } else if constexpr (F == format::uint8_zeropoint) {
    return lowbit::detail::mul_rn(table_value - static_cast<float>(zero_point), scale);
  } else {
    return lowbit::detail::mul_rn(table_value, scale);
  }
}

/// Value of code `q` in the format's built-in decode table: the codec's decode for codebooks and
/// minifloats, the integer itself for int8_absmax (as int8) and uint8_zeropoint.
template <format F>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float decode_table(std::uint8_t q) noexcept {
  if constexpr (F == format::int8_absmax) {
    return static_cast<float>(static_cast<std::int8_t>(q));
  } else if constexpr (F == format::uint8_zeropoint) {
    return static_cast<float>(q);
  } else {
    return scheme<F>::codec::decode(q);
  }
}

/// Number of blocks of `block_size` elements covering `n` elements.
LOWBIT_HD constexpr std::int64_t block_count(std::int64_t n, std::int64_t block_size) noexcept {
  return block_size > 0 ? (n + block_size - 1) / block_size : 0;
}

/// Block size of bitsandbytes' nested (double) quantization of the absmax values.
inline constexpr std::int64_t nested_block_size = 256;

/// The nested offset is the mean of the block absmax values, summed in double in this fixed order
/// on every engine: partial sums of `offset_chunk` consecutive blocks, each in block order, then
/// the partial sums in order; the total divided by the block count and rounded to float32.
inline constexpr std::int64_t offset_chunk = 1024;

/// The partial sum of one offset chunk: its `count` (<= offset_chunk) absmax values in block
/// order, in double.
LOWBIT_HD double offset_partial(const float* chunk, std::int64_t count) noexcept {
  double s = 0.0;
  for (std::int64_t b = 0; b < count; ++b) s += chunk[b];
  return s;
}

/// The nested offset from the partial sums of all `nchunks` chunks of `nblocks` blocks: their
/// sum in chunk order, divided by the block count, rounded to float32.
LOWBIT_HD float offset_from_partials(const double* partials, std::int64_t nchunks, std::int64_t nblocks) noexcept {
  double s = 0.0;
  for (std::int64_t c = 0; c < nchunks; ++c) s += partials[c];
  return static_cast<float>(s / static_cast<double>(nblocks));
}

/// Reconstructs a double-quantized block scale: f32(f32(code2[q] * absmax2) + offset), two
/// roundings as bitsandbytes' dequantize_4bit (never fused into one FMA).
LOWBIT_HD float nested_scale(float code2_value, float absmax2, float offset) noexcept {
  return lowbit::detail::add_rn(lowbit::detail::opaque(lowbit::detail::mul_rn(code2_value, absmax2)), offset);
}

}  // namespace quant
LOWBIT_NAMESPACE_END
