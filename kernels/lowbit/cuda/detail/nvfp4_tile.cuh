// SPDX-License-Identifier: Apache-2.0
/// @file nvfp4_tile.cuh
/// @brief The NVFP4 tile encoder of the kernels: quant::nvfp4_tile_encoder bit for bit, with the
///        per-tensor work done once per thread, no division call and no portable e4m3 codec.
#pragma once

#include <lowbit/quant/blockscaled.hpp>

#include "arch.cuh"
#include "div.cuh"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// RN(1 / (1 + m / 8)) for m = 0 .. 7 (reciprocal_1_2 of each, as bits): the reciprocals of the
/// mantissas an e4m3 scale can have.
__device__ __forceinline__ float e4m3_mantissa_reciprocal(unsigned m) {
  const unsigned b = m < 4u ? (m < 2u ? (m == 0u ? 0x3F800000u : 0x3F638E39u) : (m == 2u ? 0x3F4CCCCDu : 0x3F3A2E8Cu))
                            : (m < 6u ? (m == 4u ? 0x3F2AAAABu : 0x3F1D89D9u) : (m == 6u ? 0x3F124925u : 0x3F088889u));
  return __uint_as_float(b);
}

/// quant::encode_tile<scaled_format::nvfp4>(amax, rule, global, conv, tensor_zero) for the tiles of
/// one tensor, bit for bit, where `global` and `tensor_zero` are what the quantizer stores for it
/// (quant::nvfp4_stored_global and quant::nvfp4_tensor_zero of its max |x|: NaN, 1, or under
/// `scale` t in [2^-120, FLT_MAX / 2688], under `inverse` g in [2688 / FLT_MAX, 2^120]; the
/// precondition every step below relies on). The reference makes three IEEE divisions and a
/// portable e4m3 round trip per tile; here, per tile:
/// - `block = amax / 6`: div_markstein by 6 (float32 only: no FP64, which sm_86/89/120 run at 2
///   per clock and SM), exact wherever the quotient is a normal float. A subnormal block gives a
///   v of at most 2^-126 / t <= 2^-6 (scale), 2^-126 g <= 2^-6 (1 + 2^-23) (inverse) or 2^-126,
///   whatever its bits: the code of 2^-6 either way. +Inf amax is replaced by FLT_MAX: v is then
///   448 (1 +- 2^-22) or more, the same largest scale code.
/// - `scale`: `v = f32(block / t)` as div_rn_positive forms it, t's mantissa mt, exponent et and
///   reciprocal RN(1 / mt) prepared once: `q = RN(mb / mt)` (div_markstein) times 2^(eb - et),
///   exact while the result is a normal float. Only clamp(v, 2^-6, 448) is used, so a result whose
///   exponent lies above 9 is replaced by 1024 and one below -8 by 0 (both clamp as v does; block
///   = 0 splits as 2^-159 and +Inf as 2^128, which take those two branches). `inverse`:
///   `f32(block * g)`; `none`: block.
/// - The e4m3 code of the clamped v, a normal float in [2^-6, 448]: its bits rounded to nearest
///   even at bit 20, less the exponent bias difference (120 << 3); no saturation is reachable.
/// - The multiplier `f32(c / b)` for c = f32(1 / t), g or 1: b = (1 + m / 8) 2^E from the code,
///   c = mc 2^ec prepared once, so c / b = (mc / (1 + m / 8)) 2^(ec - E), div_markstein with the
///   reciprocal of one of eight mantissas (e4m3_mantissa_reciprocal) and an exponent addition.
///   Exact because c / b is a normal float under the precondition: c lies in [2688 / FLT_MAX,
///   2^120] and b in [2^-6, 448], so c / b lies in [1.7e-38, 2^126].
/// kernels_div_exhaustive_test checks the pieces over every mantissa and the whole against
/// quant::nvfp4_tile_encoder at every amax exponent, every e4m3 rounding boundary and both ends
/// of the global's range, for each convention.
struct nvfp4_kernel_tile_encoder {
  quant::nvfp4_global conv = quant::nvfp4_global::scale;
  bool tensor_zero = false;
  bool nan = false;   ///< the stored global is NaN (a NaN or Inf in the tensor): every tile is NaN
  float mt = 1.0f;    ///< scale: t = mt 2^et, rt = RN(1 / mt)
  float rt = 1.0f;
  int et = 0;
  float g = 1.0f;     ///< inverse
  float mc = 1.0f;    ///< the multiplier's numerator c = mc 2^ec
  int ec = 0;

  __device__ __forceinline__ nvfp4_kernel_tile_encoder(float global, quant::nvfp4_global cv, bool zero) : conv(cv), tensor_zero(zero) {
    nan = cv != quant::nvfp4_global::none && !(global == global);
    float c = 1.0f;
    if (!nan && cv == quant::nvfp4_global::scale) {
      mt = split_exponent(global, et);
      rt = reciprocal_1_2(mt);
      c = div_rn_positive(1.0f, global);
    } else if (!nan && cv == quant::nvfp4_global::inverse) {
      g = global;
      c = global;
    }
    mc = split_exponent(c, ec);
  }

  __device__ __forceinline__ quant::tile_encoding operator()(float amax) const {
    quant::tile_encoding r;
    r.zero = tensor_zero;
    const float a = tensor_zero ? 0.0f : amax;
    if (nan || !(a == a)) {
      r.scale_code = 0x7F;
      r.factor = __uint_as_float(0x7FC00000u);
      return r;
    }
    // amax / 6 where it is a normal float: +Inf takes FLT_MAX's place (both give the largest
    // scale), and below 6 * 2^-126 the quotient (at most 2^-126, as the exact one) clamps alike
    const float block = div_markstein(a < 3.40282347e38f ? a : 3.40282347e38f, 6.0f, 0.166666672f);
    float v = block;
    if (conv == quant::nvfp4_global::scale) {
      int eb;
      const float mb = split_exponent(block, eb);
      const float q = div_markstein(mb, mt, rt);
      const int d = eb - et;
      const int e = static_cast<int>(__float_as_uint(q) >> 23) - 127 + d;
      v = e > 9 ? 1024.0f : (e < -8 ? 0.0f : __uint_as_float(__float_as_uint(q) + static_cast<unsigned>(d) * (1u << 23)));
    } else if (conv == quant::nvfp4_global::inverse) {
      v = lowbit::detail::mul_rn(block, g);
    }
    v = v < 0.015625f ? 0.015625f : (v > 448.0f ? 448.0f : v);
    const unsigned vb = __float_as_uint(v);
    const unsigned code = ((vb + 0x7FFFFu + ((vb >> 20) & 1u)) >> 20) - (120u << 3);
    r.scale_code = static_cast<std::uint8_t>(code);
    const unsigned m = code & 7u;
    const float q = div_markstein(mc, __uint_as_float(0x3F800000u | (m << 20)), e4m3_mantissa_reciprocal(m));
    const int E = static_cast<int>(code >> 3) - 7;
    r.factor = __uint_as_float(__float_as_uint(q) + static_cast<unsigned>(ec - E) * (1u << 23));
    return r;
  }
};

}  // namespace detail
}  // namespace cuda
LOWBIT_NAMESPACE_END
