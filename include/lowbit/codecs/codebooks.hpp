// SPDX-License-Identifier: Apache-2.0
/// @file codebooks.hpp
/// @brief Table-driven codecs from bitsandbytes: `nf4`, bitsandbytes' own `bnb_fp4`, and the
///        signed 8-bit dynamic map `bnb_dynamic8`. Each table exists once, here.
///
/// These codecs work on values already normalized by the block's absmax (|x| <= 1 for
/// in-range data); the scale is applied by the caller (quant/ and the engines).
///
/// @par Semantics
/// - `decode(c)` returns the table entry exactly (bit for bit what bitsandbytes' CUDA kernels use).
/// - `encode(x)` reproduces bitsandbytes' CUDA quantizers bit for bit for every float32 `x`:
///   NF4 `dQuantizeNF4`, FP4 `dQuantizeFP4`, 8-bit `dQuantize<0>`. NaN gives code 0 in all three.
///   Inputs outside [-1, 1] (including ±inf) map to the end codes.
#pragma once

#include "../config.hpp"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace codecs {
namespace detail {

// NF4 values (bitsandbytes `get_4bit_type("nf4")`), as float32 bit patterns, ascending.
LOWBIT_DEFINE_TABLE(std::uint32_t, nf4_value_bits, 16,
    {0xBF800000u, 0xBF3239B1u, 0xBF066B30u, 0xBECA32A0u, 0xBE91A24Du, 0xBE3D353Fu, 0xBDBA7871u,
      0x00000000u, 0x3DA2FAFFu, 0x3E24CAE3u, 0x3E7C04DDu, 0x3EAD033Au, 0x3EE1A4B8u, 0x3F1007ABu,
      0x3F3913B3u, 0x3F800000u})

// NF4 decision thresholds of bitsandbytes' CUDA `dQuantizeNF4` (its decimal literals rounded to
// float32; four differ by one ulp from the float32 midpoint of their neighbours: T0, T12 and T14
// lie below it, T8 above), so they are listed rather than derived from the values.
// Code = number of thresholds strictly below x.
LOWBIT_DEFINE_TABLE(std::uint32_t, nf4_threshold_bits, 15,
    {0xBF591CD9u, 0xBF1C5270u, 0xBEEB8480u, 0xBEADEA76u, 0xBE703CECu, 0xBE0D38BCu, 0xBD3A7871u,
      0x3D22FAFFu, 0x3DF64863u, 0x3E5067E0u, 0x3E9582D4u, 0x3EC753F9u, 0x3F006D03u, 0x3F248DAFu,
      0x3F5C89D9u})

// bitsandbytes "fp4" values by code: bit 3 = sign, code 8 = -0.0 as in its CUDA kernels.
LOWBIT_DEFINE_TABLE(std::uint32_t, bnb_fp4_value_bits, 16,
    {0x00000000u, 0x3BAAAAABu, 0x3F2AAAABu, 0x3F800000u, 0x3EAAAAABu, 0x3F000000u, 0x3E2AAAABu,
      0x3E800000u, 0x80000000u, 0xBBAAAAABu, 0xBF2AAAABu, 0xBF800000u, 0xBEAAAAABu, 0xBF000000u,
      0xBE2AAAABu, 0xBE800000u})

// Magnitude thresholds of bitsandbytes' CUDA `dQuantizeFP4`, ascending (its literals rounded to
// float32), and the magnitude code for "number of thresholds strictly below |x|".
LOWBIT_DEFINE_TABLE(std::uint32_t, bnb_fp4_threshold_bits, 7,
    {0x3B2AAAB9u, 0x3DB00000u, 0x3E555555u, 0x3E955555u, 0x3ED55556u, 0x3F155550u, 0x3F555555u})
LOWBIT_DEFINE_TABLE(std::uint8_t, bnb_fp4_rank_to_code, 8, {0, 1, 6, 7, 4, 5, 2, 3})

// bitsandbytes' signed dynamic map `create_dynamic_map(signed=True, max_exponent_bits=7,
// total_bits=8)` as produced by current torch builds (FMA linspace), ascending; entry 127 is 0.0,
// entry 0 is -0.99296874, entry 255 is 1.0.
LOWBIT_DEFINE_TABLE(std::uint32_t, bnb_dynamic8_value_bits, 256,
    {
     0xBF7E3333u, 0xBF7A999Au, 0xBF770000u, 0xBF736666u, 0xBF6FCCCDu, 0xBF6C3333u, 0xBF68999Au, 0xBF650000u,  /*   0 */
     0xBF616666u, 0xBF5DCCCDu, 0xBF5A3333u, 0xBF56999Au, 0xBF530000u, 0xBF4F6666u, 0xBF4BCCCDu, 0xBF483333u,  /*   8 */
     0xBF44999Au, 0xBF410000u, 0xBF3D6666u, 0xBF39CCCDu, 0xBF363334u, 0xBF32999Au, 0xBF2F0000u, 0xBF2B6666u,  /*  16 */
     0xBF27CCCDu, 0xBF243334u, 0xBF20999Au, 0xBF1D0000u, 0xBF196666u, 0xBF15CCCDu, 0xBF123334u, 0xBF0E999Au,  /*  24 */
     0xBF0B0000u, 0xBF076666u, 0xBF03CCCCu, 0xBF003333u, 0xBEF93332u, 0xBEF20000u, 0xBEEACCCCu, 0xBEE3999Au,  /*  32 */
     0xBEDC6666u, 0xBED53333u, 0xBECE0000u, 0xBEC6CCCCu, 0xBEBF999Au, 0xBEB86666u, 0xBEB13333u, 0xBEAA0000u,  /*  40 */
     0xBEA2CCCCu, 0xBE9B999Au, 0xBE946666u, 0xBE8D3334u, 0xBE860000u, 0xBE7D9999u, 0xBE6F3333u, 0xBE60CCCDu,  /*  48 */
     0xBE526666u, 0xBE440000u, 0xBE35999Au, 0xBE273333u, 0xBE18CCCDu, 0xBE0A6666u, 0xBDF80000u, 0xBDDB3334u,  /*  56 */
     0xBDC9EB85u, 0xBDC428F7u, 0xBDBE6667u, 0xBDB8A3D7u, 0xBDB2E148u, 0xBDAD1EB8u, 0xBDA75C2Au, 0xBDA1999Au,  /*  64 */
     0xBD9BD70Au, 0xBD96147Bu, 0xBD9051EBu, 0xBD8A8F5Du, 0xBD84CCCDu, 0xBD7E147Bu, 0xBD728F5Du, 0xBD670A3Du,  /*  72 */
     0xBD5B851Fu, 0xBD500000u, 0xBD447AE1u, 0xBD38F5C3u, 0xBD2D70A3u, 0xBD21EB85u, 0xBD166667u, 0xBD0AE148u,  /*  80 */
     0xBCFEB852u, 0xBCE7AE15u, 0xBCD0A3D7u, 0xBCB9999Au, 0xBCA28F5Du, 0xBC8B851Fu, 0xBC68F5C3u, 0xBC3AE148u,  /*  88 */
     0xBC1F3B64u, 0xBC160418u, 0xBC0CCCCDu, 0xBC039581u, 0xBBF4BC6Au, 0xBBE24DD3u, 0xBBCFDF3Bu, 0xBBBD70A4u,  /*  96 */
     0xBBAB020Du, 0xBB989374u, 0xBB8624DDu, 0xBB676C8Au, 0xBB428F5Cu, 0xBB1DB22Du, 0xBAF1A9FCu, 0xBAA7EF9Du,  /* 104 */
     0xBA7765FFu, 0xBA59E83Eu, 0xBA3C6A80u, 0xBA1EECC1u, 0xBA016F01u, 0xB9C7E283u, 0xB98CE705u, 0xB923D70Bu,  /* 112 */
     0xB8BA1F4Bu, 0xB88AEFB3u, 0xB8378034u, 0xB7B24206u, 0xB70205FFu, 0xB65A1A94u, 0xB513A3B7u, 0x00000000u,  /* 120 */
     0x3513A3B7u, 0x365A1A94u, 0x370205FFu, 0x37B24206u, 0x38378034u, 0x388AEFB3u, 0x38BA1F4Bu, 0x3923D70Bu,  /* 128 */
     0x398CE705u, 0x39C7E283u, 0x3A016F01u, 0x3A1EECC1u, 0x3A3C6A80u, 0x3A59E83Eu, 0x3A7765FFu, 0x3AA7EF9Du,  /* 136 */
     0x3AF1A9FCu, 0x3B1DB22Du, 0x3B428F5Cu, 0x3B676C8Au, 0x3B8624DDu, 0x3B989374u, 0x3BAB020Du, 0x3BBD70A4u,  /* 144 */
     0x3BCFDF3Bu, 0x3BE24DD3u, 0x3BF4BC6Au, 0x3C039581u, 0x3C0CCCCDu, 0x3C160418u, 0x3C1F3B64u, 0x3C3AE148u,  /* 152 */
     0x3C68F5C3u, 0x3C8B851Fu, 0x3CA28F5Du, 0x3CB9999Au, 0x3CD0A3D7u, 0x3CE7AE15u, 0x3CFEB852u, 0x3D0AE148u,  /* 160 */
     0x3D166667u, 0x3D21EB85u, 0x3D2D70A3u, 0x3D38F5C3u, 0x3D447AE1u, 0x3D500000u, 0x3D5B851Fu, 0x3D670A3Du,  /* 168 */
     0x3D728F5Du, 0x3D7E147Bu, 0x3D84CCCDu, 0x3D8A8F5Du, 0x3D9051EBu, 0x3D96147Bu, 0x3D9BD70Au, 0x3DA1999Au,  /* 176 */
     0x3DA75C2Au, 0x3DAD1EB8u, 0x3DB2E148u, 0x3DB8A3D7u, 0x3DBE6667u, 0x3DC428F7u, 0x3DC9EB85u, 0x3DDB3334u,  /* 184 */
     0x3DF80000u, 0x3E0A6666u, 0x3E18CCCDu, 0x3E273333u, 0x3E35999Au, 0x3E440000u, 0x3E526666u, 0x3E60CCCDu,  /* 192 */
     0x3E6F3333u, 0x3E7D9999u, 0x3E860000u, 0x3E8D3334u, 0x3E946666u, 0x3E9B999Au, 0x3EA2CCCCu, 0x3EAA0000u,  /* 200 */
     0x3EB13333u, 0x3EB86666u, 0x3EBF999Au, 0x3EC6CCCCu, 0x3ECE0000u, 0x3ED53333u, 0x3EDC6666u, 0x3EE3999Au,  /* 208 */
     0x3EEACCCCu, 0x3EF20000u, 0x3EF93332u, 0x3F003333u, 0x3F03CCCCu, 0x3F076666u, 0x3F0B0000u, 0x3F0E999Au,  /* 216 */
     0x3F123334u, 0x3F15CCCDu, 0x3F196666u, 0x3F1D0000u, 0x3F20999Au, 0x3F243334u, 0x3F27CCCDu, 0x3F2B6666u,  /* 224 */
     0x3F2F0000u, 0x3F32999Au, 0x3F363334u, 0x3F39CCCDu, 0x3F3D6666u, 0x3F410000u, 0x3F44999Au, 0x3F483333u,  /* 232 */
     0x3F4BCCCDu, 0x3F4F6666u, 0x3F530000u, 0x3F56999Au, 0x3F5A3333u, 0x3F5DCCCDu, 0x3F616666u, 0x3F650000u,  /* 240 */
     0x3F68999Au, 0x3F6C3333u, 0x3F6FCCCDu, 0x3F736666u, 0x3F770000u, 0x3F7A999Au, 0x3F7E3333u, 0x3F800000u,  /* 248 */
    })

/// bitsandbytes CUDA `dQuantize<0>`: binary search over an ascending 256-entry table read through
/// `table(i)`, then the nearer neighbour by float32 midpoint; exact ties go to the even index.
template <class Table>
LOWBIT_HD constexpr std::uint8_t bnb_dynamic8_search(float x, Table table) noexcept {
  int pivot = 127, lo_idx = 0, hi_idx = 255;
  float lo_val = -1.0f, hi_val = 1.0f, v = table(pivot);
  for (int step = 64; step > 0; step >>= 1) {
    if (x > v) {
      lo_idx = pivot;
      lo_val = v;
      pivot += step;
    } else {
      hi_idx = pivot;
      hi_val = v;
      pivot -= step;
    }
    v = table(pivot);
  }
  if (hi_idx == 255) hi_val = table(255);
  if (lo_idx == 0) lo_val = table(0);
  if (x > v) {
    const float mid = lowbit::detail::mul_rn(lowbit::detail::add_rn(hi_val, v), 0.5f);
    return static_cast<std::uint8_t>(x > mid ? hi_idx : pivot);
  }
  const float mid = lowbit::detail::mul_rn(lowbit::detail::add_rn(lo_val, v), 0.5f);
  return static_cast<std::uint8_t>(x < mid ? lo_idx : pivot);
}
}  // namespace detail

/// NormalFloat4 (QLoRA, bitsandbytes "nf4"): 16 ascending quantiles of N(0,1) scaled to [-1, 1];
/// code 7 is 0.0. Encode: code = #{i : x > T_i} over bitsandbytes' CUDA thresholds T_0..T_14
/// (strict, so a value equal to a threshold takes the lower code); NaN -> 0; x < -1 -> 0, x > 1 -> 15.
struct nf4 {
  using storage_type = std::uint8_t;
  static constexpr int bits = 4;
  static constexpr int num_codes = 16;
  /// Code of 0.0 (used to pad odd element counts and for zero blocks).
  static constexpr storage_type zero_code = 7;

  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float decode(storage_type code) noexcept {
    return bits_float(LOWBIT_TABLE(detail::nf4_value_bits)[code & 0xF]);
  }
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float threshold(int i) noexcept {
    return bits_float(LOWBIT_TABLE(detail::nf4_threshold_bits)[i]);
  }
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR storage_type encode(float x) noexcept {
    // Binary search over the sorted thresholds: 4 comparisons, result = #{i : x > T_i}.
    int code = 0;
    if (x > threshold(code + 7)) code += 8;
    if (x > threshold(code + 3)) code += 4;
    if (x > threshold(code + 1)) code += 2;
    if (x > threshold(code + 0)) code += 1;
    return static_cast<storage_type>(code);
  }
};

/// bitsandbytes' "fp4": sign in bit 3, then a 2-bit *reversed* exponent and 1 mantissa bit,
/// normalized by 12: magnitudes by code & 7 = {0, 1/192, 2/3, 1, 1/3, 1/2, 1/6, 1/4}.
/// A different code assignment from OCP E2M1 (`e2m1fn`). Encode: sign = (x < 0) (so -0.0 and
/// NaN get sign 0), magnitude = rank of |x| among bitsandbytes' CUDA thresholds (strict `>`);
/// NaN -> 0; |x| > 1 -> magnitude 1.0.
struct bnb_fp4 {
  using storage_type = std::uint8_t;
  static constexpr int bits = 4;
  static constexpr int num_codes = 16;
  static constexpr storage_type zero_code = 0;

  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float decode(storage_type code) noexcept {
    return bits_float(LOWBIT_TABLE(detail::bnb_fp4_value_bits)[code & 0xF]);
  }
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float threshold(int i) noexcept {
    return bits_float(LOWBIT_TABLE(detail::bnb_fp4_threshold_bits)[i]);
  }
  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR storage_type encode(float x) noexcept {
    const std::uint8_t sign = x < 0.0f ? 8 : 0;
    const float a = bits_float(float_bits(x) & 0x7FFFFFFFu);
    int rank = 0;
    if (a > threshold(rank + 3)) rank += 4;
    if (a > threshold(rank + 1)) rank += 2;
    if (a > threshold(rank + 0)) rank += 1;
    return static_cast<storage_type>(LOWBIT_TABLE(detail::bnb_fp4_rank_to_code)[rank] | sign);
  }
};

/// bitsandbytes' signed 8-bit dynamic map (the default code of `quantize_blockwise` and of the
/// nested absmax quantization). 127 negative values down to -0.99296874, 0.0 at code 127, 128
/// positive values up to 1.0 at code 255.
///
/// Encode reproduces bitsandbytes' CUDA `dQuantize<0>`: the nearest table entry, where "nearest"
/// compares against the float32 midpoint f32((a + b) * 0.5) of neighbours; an exact tie goes to
/// the even code. NaN -> 0. `encode_with_table` runs the same search on any ascending 256-entry
/// table (for instance a `quant_map` read from a checkpoint).
struct bnb_dynamic8 {
  using storage_type = std::uint8_t;
  static constexpr int bits = 8;
  static constexpr int num_codes = 256;
  static constexpr storage_type zero_code = 127;

  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR float decode(storage_type code) noexcept {
    return bits_float(LOWBIT_TABLE(detail::bnb_dynamic8_value_bits)[code]);
  }

  LOWBIT_HD static LOWBIT_BITCAST_CONSTEXPR storage_type encode(float x) noexcept {
    return detail::bnb_dynamic8_search(x, [](int i) { return decode(static_cast<storage_type>(i)); });
  }

  /// `encode` against a caller-provided ascending table of 256 float32 values.
  LOWBIT_HD static constexpr storage_type encode_with_table(const float* table, float x) noexcept {
    return detail::bnb_dynamic8_search(x, [table](int i) { return table[i]; });
  }

};

}  // namespace codecs
LOWBIT_NAMESPACE_END
