// SPDX-License-Identifier: Apache-2.0
/// @file blockscaled.hpp
/// @brief Per-tile arithmetic of the block-scaled formats of current hardware, shared by every
///        engine: OCP Microscaling (MXFP8 E4M3/E5M2, MXFP6 E2M3/E3M2, MXFP4), NVIDIA NVFP4, and
///        FP8 E4M3 with float32 tile scales (DeepSeek-V3 / transformers "fine-grained FP8").
///        No CUDA header; every function is LOWBIT_HD.
///
/// @par Formulas (float32, each operation rounded once to nearest even; `amax` = max |x| over a
///      tile, NaN if the tile holds a NaN; docs/formats.md has the full tables and citations)
/// | format | stored per tile | element code | dequantize |
/// |---|---|---|---|
/// | MX* | e8m0 `s` by mx_scale_rule | `sat(x * 2^(127 - s))` | `decode(q) * 2^(s - 127)` |
/// | nvfp4 | e4m3 `b` (see nvfp4_tile) + one float32 per tensor | `sat(x * m)` | `decode(q) * f32(b * t)` or `decode(q) * f32(b / g)` |
/// | fp8_e4m3_block | float32 `s = amax / 448` (`weight_scale_inv`) | `sat(x / s)` | `decode(q) * s` |
///
/// `sat` is the element codec's round-to-nearest-even encode with saturation to ±max (equal to
/// clamping to ±max first, as torchao does). Every formula is written once here.
///
/// @par Special values
/// - MX: a tile whose amax is NaN or ±Inf gets scale 0xFF (NaN), so the whole tile decodes to
///   NaN (torchao's behaviour; the spec leaves NaN handling to the implementation). The element
///   codes of such a tile are the codec's result for `x * NaN` and carry no information.
/// - MX zero tile (amax 0): the rule's exponent clamps to -127, scale code 0 (2^-127); every
///   element encodes as +0 and decodes to 0.
/// - nvfp4: see nvfp4_tile; fp8_e4m3_block: see fp8_block_tile.
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"

#include <cstdint>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN

/// A block-scaled format: element codec, scale type and default tile.
enum class scaled_format : std::uint8_t {
  mxfp8_e4m3,      ///< OCP MX: e4m3fn elements, e8m0 scale per 1 x 32
  mxfp8_e5m2,      ///< OCP MX: e5m2 elements, e8m0 scale per 1 x 32
  mxfp6_e2m3,      ///< OCP MX: e2m3 elements (6 bits), e8m0 scale per 1 x 32
  mxfp6_e3m2,      ///< OCP MX: e3m2 elements (6 bits), e8m0 scale per 1 x 32
  mxfp4,           ///< OCP MX: e2m1 elements, e8m0 scale per 1 x 32, low nibble first
  nvfp4,           ///< NVIDIA NVFP4: e2m1 elements, e4m3 scale per 1 x 16 (or 16 x 16), float32 per tensor
  fp8_e4m3_block,  ///< e4m3fn elements, float32 scale_inv per 128 x 128 (weights) or 1 x 128 (activations)
};

/// Number of block-scaled formats.
inline constexpr int scaled_format_count = 7;

/// What a scale is stored as.
enum class scale_type : std::uint8_t {
  e8m0,  ///< one byte, OCP E8M0 (2^(s - 127), 0xFF NaN)
  e4m3,  ///< one byte, OCP E4M3 (sign bit 0: NVIDIA's UE4M3)
  f32,   ///< float32
};

/// Static facts about a block-scaled format.
struct scaled_format_info {
  const char* name;          ///< e.g. "mxfp4"
  int bits;                  ///< bits per element code: 8, 6 or 4
  scale_type scale;          ///< type of the tile scales
  std::int64_t tile_rows;    ///< default tile
  std::int64_t tile_cols;
  bool global_scale;         ///< stores one float32 per tensor (nvfp4)
};

/// Facts about `f`.
LOWBIT_HD constexpr scaled_format_info info(scaled_format f) noexcept {
  switch (f) {
    case scaled_format::mxfp8_e4m3: return {"mxfp8_e4m3", 8, scale_type::e8m0, 1, 32, false};
    case scaled_format::mxfp8_e5m2: return {"mxfp8_e5m2", 8, scale_type::e8m0, 1, 32, false};
    case scaled_format::mxfp6_e2m3: return {"mxfp6_e2m3", 6, scale_type::e8m0, 1, 32, false};
    case scaled_format::mxfp6_e3m2: return {"mxfp6_e3m2", 6, scale_type::e8m0, 1, 32, false};
    case scaled_format::mxfp4: return {"mxfp4", 4, scale_type::e8m0, 1, 32, false};
    case scaled_format::nvfp4: return {"nvfp4", 4, scale_type::e4m3, 1, 16, true};
    case scaled_format::fp8_e4m3_block: return {"fp8_e4m3_block", 8, scale_type::f32, 128, 128, false};
  }
  return {"?", 0, scale_type::f32, 1, 1, false};
}

/// True if `f` is one of the enumerators.
LOWBIT_HD constexpr bool is_valid(scaled_format f) noexcept {
  return static_cast<unsigned>(f) < static_cast<unsigned>(scaled_format_count);
}

/// Bytes of one stored scale.
LOWBIT_HD constexpr int bytes_per_scale(scaled_format f) noexcept { return info(f).scale == scale_type::f32 ? 4 : 1; }

/// How FP6 codes are laid out in memory.
enum class fp6_packing : std::uint8_t {
  /// 4 codes in 3 bytes: codes c0..c3 form the 24-bit little-endian word
  /// `c0 | c1 << 6 | c2 << 12 | c3 << 18` (element 4j in the lowest bits, as OCP FP4 puts element
  /// 2j in the low nibble); the element count is padded to a multiple of 4 with the code of +0.
  packed,
  /// One code per byte in bits 5..0, bits 7..6 zero: torchao's MXTensor storage of FP6 (its
  /// 3-byte packing was removed in torchao commit fa2cb75c7, PR 3382).
  unpacked,
};

/// Bytes of codes for `n` elements of `f`.
LOWBIT_HD constexpr std::int64_t scaled_code_bytes(scaled_format f, std::int64_t n, fp6_packing p = fp6_packing::packed) noexcept {
  return info(f).bits == 4 ? (n + 1) / 2 : info(f).bits == 6 && p == fp6_packing::packed ? (n + 3) / 4 * 3 : n;
}

namespace quant {

/// The MX rule that turns a tile's amax into its e8m0 scale `s` (the element multiplier is then
/// 2^(127 - s)). `emax` is the exponent of the element format's largest normal (8 e4m3, 15 e5m2,
/// 2 e2m3, 4 e3m2, 2 e2m1); every rule clamps the unbiased exponent to [-127, 127] except where
/// noted, and a NaN or ±Inf amax gives 0xFF.
enum class mx_scale_rule : std::uint8_t {
  /// OCP MX v1.0 §6.3: `s = floor(log2 amax) - emax`. Elements above the format's max after
  /// scaling saturate. The default (torchao ScaleCalculationMode.FLOOR).
  floor,
  /// NVIDIA's rule (cuBLAS "Computing scaling and conversion factors for FP8 with UE8M0 scales",
  /// `cvt.rp.satfinite.ue8m0x2.f32`, Transformer Engine, torchao RCEIL): `d = amax * f32(1/max)`,
  /// `s` = the e8m0 code of d rounded toward +Inf (`d` above 2^127 gives 0xFF). Never clips amax.
  rceil,
  /// torchao CEIL: `s = ceil(log2 amax) - emax` (the exponent plus one if amax's mantissa is
  /// nonzero).
  ceil,
  /// torchao EVEN: amax's float32 bits rounded to the element's mantissa width (half away from
  /// zero on the bits: `+ 2^(22 - mbits)`, then the mantissa dropped), then floor. An amax that
  /// rounds past FLT_MAX gives 0xFF, as in torchao (its NaN test runs on the rounded amax).
  even,
};

/// Exponent field of a float32 minus the bias (subnormals and zero give -127).
LOWBIT_HD constexpr int unbiased_exponent_field(std::uint32_t bits) noexcept {
  return static_cast<int>((bits >> 23) & 0xFFu) - 127;
}

/// The e8m0 scale code of an MX tile with max |x| = `amax` for an element codec `Codec` under
/// `rule` (NaN amax: pass NaN).
template <class Codec>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR std::uint8_t mx_scale_code(float amax, mx_scale_rule rule) noexcept {
  const std::uint32_t a = float_bits(amax) & 0x7FFFFFFFu;
  if (a >= 0x7F800000u) return 0xFF;  // NaN or Inf
  // exponent of the largest finite value (every element codec here has subnormals)
  constexpr int emax = static_cast<int>(Codec::max_magnitude_code >> Codec::mantissa_bits) - Codec::bias;
  if (rule == mx_scale_rule::rceil) {
    const float d = amax * (1.0f / Codec::max());
    const std::uint32_t b = float_bits(d) & 0x7FFFFFFFu;
    if (b >= 0x7F800000u) return 0xFF;
    const std::uint32_t e = b >> 23;
    const std::uint32_t m = b & 0x7FFFFFu;
    // e8m0 code e is 2^(e - 127); float32 subnormals are m * 2^-149, code 0 (2^-127) covers
    // m <= 2^22. A code of 255 (d above 2^127) is the NaN code, as the hardware conversion gives.
    const bool up = e == 0u ? m > 0x400000u : m != 0u;
    return static_cast<std::uint8_t>(e + (up ? 1u : 0u));
  }
  std::uint32_t bits = a;
  if (rule == mx_scale_rule::even) {
    bits = (a + (1u << (22 - Codec::mantissa_bits))) & 0xFF800000u;
    if (bits >= 0x7F800000u) return 0xFF;  // rounded past FLT_MAX: torchao's isfinite test fails
  }
  int e = unbiased_exponent_field(bits) - emax;
  if (rule == mx_scale_rule::ceil && (a & 0x7FFFFFu) != 0u) ++e;
  e = e < -127 ? -127 : (e > 127 ? 127 : e);
  return static_cast<std::uint8_t>(e + 127);
}

/// 2^(k) as float32 for k in [-127, 127] (2^-127 is the subnormal 0x00400000).
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float pow2_scale(int k) noexcept {
  return k >= -126 ? bits_float(static_cast<std::uint32_t>(k + 127) << 23) : bits_float(0x00400000u);
}

/// The element multiplier of e8m0 scale code `s`: 2^(127 - s); NaN for 0xFF.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float mx_multiplier(std::uint8_t s) noexcept {
  return s == 0xFF ? bits_float(0x7FC00000u) : pow2_scale(127 - static_cast<int>(s));
}

/// The value of e8m0 scale code `s`: 2^(s - 127); NaN for 0xFF.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float mx_scale_value(std::uint8_t s) noexcept {
  return codecs::e8m0fnu::decode(s);
}

/// Which float32 an NVFP4 tensor stores next to its e4m3 tile scales.
enum class nvfp4_global : std::uint8_t {
  /// `t = amax_tensor / 2688` (448 * 6), dequantize multiplies by it: torchao NVFP4Tensor
  /// `per_tensor_scale`, ModelOpt `weight_scale_2`. The default.
  scale,
  /// `g = 2688 / amax_tensor`, dequantize divides by it: compressed-tensors / llm-compressor
  /// `weight_global_scale`.
  inverse,
  /// No per-tensor scale (single-level scaling, torchao `per_tensor_scale=None`): the e4m3 tile
  /// scale alone; the stored float32 is 1.
  none,
};

/// 448 * 6: the largest e4m3 scale times the largest e2m1 value.
inline constexpr float nvfp4_range = 2688.0f;

/// Smallest `t = amax_tensor / 2688` NVFP4 scales with: below it the multiplier of a zero tile,
/// `f32(1 / t) / 2^-6` (or `g / 2^-6`), would overflow float32. 2^-120.
inline constexpr float nvfp4_min_tensor_scale = 7.52316385e-37f;

/// True if an NVFP4 tensor with max |x| `amax_tensor` (finite, >= 0) is too small to scale under
/// `conv`: all zeros, or `t` below nvfp4_min_tensor_scale (amax below about 2.0e-33). It then
/// stores 1 and every tile is a zero tile.
LOWBIT_HD bool nvfp4_tensor_is_zero(float amax_tensor, nvfp4_global conv) noexcept {
  return conv != nvfp4_global::none && !(amax_tensor / nvfp4_range >= nvfp4_min_tensor_scale);
}

/// The stored per-tensor float32 of an NVFP4 tensor whose max |x| is `amax_tensor` (finite,
/// >= 0): `t`, `g = 2688 / amax` or 1 (none, and tensors too small to scale).
LOWBIT_HD float nvfp4_global_value(float amax_tensor, nvfp4_global conv) noexcept {
  if (conv == nvfp4_global::none || nvfp4_tensor_is_zero(amax_tensor, conv)) return 1.0f;
  return conv == nvfp4_global::scale ? amax_tensor / nvfp4_range : nvfp4_range / amax_tensor;
}

/// Encoding of one NVFP4 tile.
struct nvfp4_tile {
  std::uint8_t scale = 0;  ///< e4m3 code of the tile scale
  float multiplier = 0.0f; ///< elements are encoded as sat(x * multiplier)
};

/// The e4m3 tile scale and element multiplier of an NVFP4 tile with max |x| `amax` (NaN if the
/// tile holds one), `global` being the stored per-tensor float32 of `conv` (torchao
/// nvfp4_quantize's arithmetic, written once):
/// - scale:   `b = e4m3(clamp(f32(f32(amax / 6) / t), 2^-6, 448))`, `m = f32(f32(1 / t) / b)`
/// - inverse: `b = e4m3(clamp(f32(f32(amax / 6) * g), 2^-6, 448))`, `m = f32(g / b)`
/// - none:    `b = e4m3(clamp(f32(amax / 6), 2^-6, 448))`,          `m = f32(1 / b)`
/// The clamp's lower end is e4m3's smallest normal (torch.finfo(float8_e4m3fn).tiny), so a zero
/// tile stores 2^-6 (code 0x08) and its elements encode as +0. A NaN amax gives the e4m3 NaN
/// code 0x7F and a NaN multiplier.
LOWBIT_HD nvfp4_tile nvfp4_tile_encoder(float amax, float global, nvfp4_global conv) noexcept {
  const float block = amax / 6.0f;
  float v = conv == nvfp4_global::scale ? block / global : conv == nvfp4_global::inverse ? block * global : block;
  if (v != v) return {0x7F, bits_float(0x7FC00000u)};
  v = v < 0.015625f ? 0.015625f : (v > 448.0f ? 448.0f : v);
  nvfp4_tile r;
  r.scale = codecs::e4m3fn::encode(v);
  const float b = codecs::e4m3fn::decode(r.scale);
  r.multiplier = conv == nvfp4_global::scale ? (1.0f / global) / b : conv == nvfp4_global::inverse ? global / b : 1.0f / b;
  return r;
}

/// The dequantization factor of an NVFP4 tile: `f32(b * t)`, `f32(b / g)` or `b`.
LOWBIT_HD float nvfp4_tile_factor(std::uint8_t scale, float global, nvfp4_global conv) noexcept {
  const float b = codecs::e4m3fn::decode(scale);
  return conv == nvfp4_global::scale ? b * global : conv == nvfp4_global::inverse ? b / global : b;
}

/// The stored float32 `scale_inv` of an fp8_e4m3_block tile with max |x| `amax`:
/// `f32(amax / 448)` (DeepSeek-V3 `act_quant` / `weight_dequant`). Elements encode as
/// sat(x / s). A tile where `s` is 0 (all zeros, or amax below 448 * 2^-150) is a zero tile:
/// it stores 0 and every element gets the code of +0 (DeepSeek's reference would divide by
/// zero there). NaN and Inf follow IEEE: a NaN amax stores NaN; an Inf amax stores Inf, the
/// finite elements encode as ±0 and the infinite ones as NaN.
LOWBIT_HD float fp8_block_scale(float amax) noexcept { return amax / 448.0f; }

/// The stored per-tensor float32 of an NVFP4 tensor whose max |x| is `amax_tensor` (>= 0, NaN
/// if the tensor holds one): nvfp4_global_value for finite amax; for NaN or Inf, NaN (1 under
/// `none`), so that every tile decodes to NaN.
LOWBIT_HD float nvfp4_stored_global(float amax_tensor, nvfp4_global conv) noexcept {
  if (!(amax_tensor < bits_float(0x7F800000u))) return conv == nvfp4_global::none ? 1.0f : bits_float(0x7FC00000u);
  return nvfp4_global_value(amax_tensor, conv);
}

/// Whether every tile of an NVFP4 tensor with max |x| `amax_tensor` is a zero tile
/// (nvfp4_tensor_is_zero for finite amax; never for NaN or Inf).
LOWBIT_HD bool nvfp4_tensor_zero(float amax_tensor, nvfp4_global conv) noexcept {
  return amax_tensor < bits_float(0x7F800000u) && nvfp4_tensor_is_zero(amax_tensor, conv);
}

/// The element codec of a block-scaled format.
template <scaled_format F>
struct scaled_codec_of {
  using type = codecs::e4m3fn;  // mxfp8_e4m3, fp8_e4m3_block
};
template <>
struct scaled_codec_of<scaled_format::mxfp8_e5m2> {
  using type = codecs::e5m2;
};
template <>
struct scaled_codec_of<scaled_format::mxfp6_e2m3> {
  using type = codecs::e2m3fn;
};
template <>
struct scaled_codec_of<scaled_format::mxfp6_e3m2> {
  using type = codecs::e3m2fn;
};
template <>
struct scaled_codec_of<scaled_format::mxfp4> {
  using type = codecs::e2m1fn;
};
template <>
struct scaled_codec_of<scaled_format::nvfp4> {
  using type = codecs::e2m1fn;
};
template <scaled_format F>
using scaled_codec = typename scaled_codec_of<F>::type;

/// How one tile's elements are encoded, and what is stored for it.
struct tile_encoding {
  float factor = 0.0f;  ///< multiplier (divisor for fp8_e4m3_block)
  bool zero = false;    ///< every element gets the code of +0
  std::uint8_t scale_code = 0;  ///< e8m0 / e4m3 formats
  float scale_f32 = 0.0f;       ///< fp8_e4m3_block
};

/// The encoding of a tile of format F with max |x| `amax` (NaN if it holds a NaN): `rule` for
/// MX, the stored per-tensor float32 `global` and its convention for nvfp4 (`tensor_zero`: the
/// whole tensor is a zero tensor, nvfp4_tensor_zero). Every engine encodes tiles with this.
template <scaled_format F>
LOWBIT_HD tile_encoding encode_tile(float amax, mx_scale_rule rule, float global, nvfp4_global conv, bool tensor_zero) noexcept {
  tile_encoding t;
  if constexpr (F == scaled_format::fp8_e4m3_block) {
    t.scale_f32 = fp8_block_scale(amax);
    t.factor = t.scale_f32;
    t.zero = t.scale_f32 == 0.0f;
  } else if constexpr (F == scaled_format::nvfp4) {
    const nvfp4_tile n = nvfp4_tile_encoder(tensor_zero ? 0.0f : amax, global, conv);
    t.scale_code = n.scale;
    t.factor = n.multiplier;
    t.zero = tensor_zero;
  } else {
    t.scale_code = mx_scale_code<scaled_codec<F>>(amax, rule);
    t.factor = mx_multiplier(t.scale_code);
  }
  return t;
}

/// The code of one element of a tile encoded as `t`: +0 in a zero tile, else
/// `sat(x * factor)` (`sat(x / factor)` for fp8_e4m3_block), round to nearest even.
template <scaled_format F>
LOWBIT_HD std::uint8_t encode_scaled_element(float x, const tile_encoding& t) noexcept {
  if (t.zero) return 0;
  const float v = F == scaled_format::fp8_e4m3_block ? x / t.factor : x * t.factor;
  return scaled_codec<F>::template encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(v);
}

/// The float32 the codes of a tile are multiplied by on dequantization, from its scale at index
/// `s` of `scales` (bytes, or float32 for fp8_e4m3_block) and, for nvfp4, the per-tensor float32.
template <scaled_format F>
LOWBIT_HD float scaled_tile_factor(const void* scales, std::int64_t s, float global, nvfp4_global conv) noexcept {
  if constexpr (F == scaled_format::fp8_e4m3_block) {
    return static_cast<const float*>(scales)[s];
  } else if constexpr (F == scaled_format::nvfp4) {
    return nvfp4_tile_factor(static_cast<const std::uint8_t*>(scales)[s], global, conv);
  } else {
    return mx_scale_value(static_cast<const std::uint8_t*>(scales)[s]);
  }
}

/// Elements per packing unit of `f`: the codes that share bytes (FP4 pairs, packed FP6 quads).
LOWBIT_HD constexpr int packing_unit(scaled_format f, fp6_packing p) noexcept {
  return info(f).bits == 4 ? 2 : (info(f).bits == 6 && p == fp6_packing::packed ? 4 : 1);
}

/// Calls fn(std::integral_constant<scaled_format, F>{}) for the runtime `f` (host code; an
/// invalid `f` takes fp8_e4m3_block: validate first).
template <class Fn>
decltype(auto) visit_scaled(scaled_format f, Fn&& fn) {
  switch (f) {
    case scaled_format::mxfp8_e4m3: return fn(std::integral_constant<scaled_format, scaled_format::mxfp8_e4m3>{});
    case scaled_format::mxfp8_e5m2: return fn(std::integral_constant<scaled_format, scaled_format::mxfp8_e5m2>{});
    case scaled_format::mxfp6_e2m3: return fn(std::integral_constant<scaled_format, scaled_format::mxfp6_e2m3>{});
    case scaled_format::mxfp6_e3m2: return fn(std::integral_constant<scaled_format, scaled_format::mxfp6_e3m2>{});
    case scaled_format::mxfp4: return fn(std::integral_constant<scaled_format, scaled_format::mxfp4>{});
    case scaled_format::nvfp4: return fn(std::integral_constant<scaled_format, scaled_format::nvfp4>{});
    case scaled_format::fp8_e4m3_block: break;
  }
  return fn(std::integral_constant<scaled_format, scaled_format::fp8_e4m3_block>{});
}

}  // namespace quant

namespace codecs {

/// Packs 4 six-bit codes into 3 bytes (fp6_packing::packed).
LOWBIT_HD constexpr void pack_fp6x4(std::uint8_t c0, std::uint8_t c1, std::uint8_t c2, std::uint8_t c3, std::uint8_t* out) noexcept {
  const std::uint32_t w = (c0 & 0x3Fu) | (c1 & 0x3Fu) << 6 | (c2 & 0x3Fu) << 12 | (c3 & 0x3Fu) << 18;
  out[0] = static_cast<std::uint8_t>(w);
  out[1] = static_cast<std::uint8_t>(w >> 8);
  out[2] = static_cast<std::uint8_t>(w >> 16);
}

/// Code `k` (0..3) of a 3-byte group packed by pack_fp6x4.
LOWBIT_HD constexpr std::uint8_t unpack_fp6(const std::uint8_t* group, int k) noexcept {
  const std::uint32_t w = group[0] | static_cast<std::uint32_t>(group[1]) << 8 | static_cast<std::uint32_t>(group[2]) << 16;
  return static_cast<std::uint8_t>((w >> (6 * k)) & 0x3Fu);
}

}  // namespace codecs

namespace quant {

/// The code of element `i` of a block-scaled format F's code array (8-bit: byte i; 4-bit: low
/// nibble first; FP6 by `p`). Every engine reads codes with this.
template <scaled_format F>
LOWBIT_HD constexpr std::uint8_t scaled_code(const std::uint8_t* codes, std::int64_t i, fp6_packing p) noexcept {
  if constexpr (info(F).bits == 8) {
    return codes[i];
  } else if constexpr (info(F).bits == 4) {
    return codecs::unpack_nibble<codecs::nibble_order::low_first>(codes[i / 2], static_cast<int>(i & 1));
  } else {
    return p == fp6_packing::unpacked ? static_cast<std::uint8_t>(codes[i] & 0x3Fu) : codecs::unpack_fp6(codes + i / 4 * 3, static_cast<int>(i & 3));
  }
}

}  // namespace quant

LOWBIT_NAMESPACE_END
