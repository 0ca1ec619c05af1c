// SPDX-License-Identifier: Apache-2.0
/// @file convert.hpp
/// @brief Plain array conversions without scaling: float32, float16 or bfloat16 to and from every
///        lowbit minifloat (e4m3fn, e5m2, e2m3fn, e3m2fn, e2m1fn, e3m0, e8m0fnu), element by
///        element, as `torch.Tensor.to(torch.float8_e4m3fn)` and ml_dtypes' `astype` do.
///        Multi-threaded and vectorized (AVX-512, AVX2 or portable code, chosen at run time; every
///        path writes the same bytes). docs/convert.md has the tables and the peers' differences.
///
/// @par Semantics of convert_to_minifloat (float -> codes)
/// - Every element is rounded to nearest, ties to even, exactly as the scalar codec
///   (`Codec::encode<rounding::nearest_even, overflow>`), which equals NVIDIA's
///   `__nv_cvt_float_to_fp8/fp6/fp4/e8m0` for every float32 input. float16 and bfloat16 inputs are
///   widened to float32 first (exactly), so there is one rounding.
/// - Overflow (a magnitude that rounds above the largest finite value, and ±Inf), by
///   `convert_options::overflow`:
///   - `overflow::special` (default; as ml_dtypes' `astype`, and torch 2.15's e5m2 cast):
///     e5m2 gives ±Inf (0x7C/0xFC); e4m3fn gives the NaN code with the input's sign (0x7F/0xFF,
///     as `__NV_NOSAT`); e8m0fnu gives its NaN 0xFF; e2m3fn, e3m2fn, e2m1fn and e3m0 have neither
///     Inf nor NaN and give ±max.
///   - `overflow::saturate`: ±max finite for every format (`__NV_SATFINITE`; torch 2.15's
///     `to(torch.float8_e4m3fn)` saturates: this mode gives its bytes).
/// - NaN input: the canonical NaN code (e4m3fn 0x7F, e5m2 0x7F, e8m0fnu 0xFF), or +max for the
///   formats without NaN (e2m3fn 0x1F, e3m2fn 0x1F, e2m1fn 0x7, e3m0 0x7), as NVIDIA's FP6/FP4
///   conversions do.
/// - Underflow rounds to (signed) zero; -0.0 gives the negative-zero code. e8m0fnu is unsigned
///   and has no zero: it encodes |x| and clips values below 2^-127 (zero included) to 2^-127.
/// - Storage: 8-bit formats one code per byte; the 6-bit formats one code per byte in bits 5..0
///   (bits 7..6 zero), as ml_dtypes stores float6; 4-bit formats (e2m1fn, e3m0) two codes per
///   byte, element 2j in bits 3..0 and element 2j+1 in bits 7..4 (OCP / `__nv_fp4x2` order);
///   an odd count pads the last high nibble with the code of +0.0 (0).
///
/// @par Semantics of convert_from_minifloat (codes -> float)
/// - Exact decode to float32, then round to nearest even into float16/bfloat16 (dtype.hpp):
///   e8m0fnu values above 65504 give +Inf in float16 and below 2^-25 give +0; everything else
///   is exact in every output. Inf codes give ±Inf. NaN codes give a quiet NaN: in float32 with
///   the code's sign (0x7FC00000 / 0xFFC00000), in float16/bfloat16 0x7FFF (dtype.hpp's rule).
/// - Bits 7..6 of a 6-bit code are ignored; for 4-bit formats an odd count ignores the last high
///   nibble.
///
/// @par Arguments and errors (nothing is written on error)
/// - `n` elements; `n == 0` touches nothing. Any alignment of either array. The input and output
///   must not overlap (an error). `opt.threads` <= 0 means every hardware thread.
/// - Errors name the bad argument: a negative `n`, a null array with `n > 0`, a dtype or
///   minifloat_type or option that is not one of its enumerators, overlapping arrays.
/// - The floating-point mode of the calling thread (FTZ/DAZ, rounding) does not matter: the
///   conversions run in IEEE default mode and restore the caller's.
#pragma once

#include "config.hpp"
#include "dtype.hpp"
#include "host/convert.hpp"
#include "memory.hpp"
#include "quant/layout.hpp"
#include "status.hpp"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN

namespace detail {

inline status check_convert_args(const char* what, const void* in, std::int64_t in_bytes, const void* out,
                                 std::int64_t out_bytes, dtype t, minifloat_type m, std::int64_t n, const convert_options& opt) {
  if (n < 0) return status::error(errc::invalid_argument, "%s: element count n is %lld (negative)", what, static_cast<long long>(n));
  if (!is_valid(t)) return status::error(errc::invalid_argument, "%s: dtype %d is not a lowbit dtype", what, static_cast<int>(t));
  if (!is_valid(m))
    return status::error(errc::invalid_argument, "%s: minifloat_type %d is not a minifloat_type", what, static_cast<int>(m));
  if (opt.overflow != codecs::overflow::saturate && opt.overflow != codecs::overflow::special)
    return status::error(errc::invalid_argument, "%s: options.overflow is %d, not a codecs::overflow", what,
                         static_cast<int>(opt.overflow));
  if (opt.stores != host::store_mode::automatic && opt.stores != host::store_mode::cached && opt.stores != host::store_mode::streaming)
    return status::error(errc::invalid_argument, "%s: options.stores is %d, not a store_mode", what, static_cast<int>(opt.stores));
  if (n == 0) return {};
  if (in == nullptr) return status::error(errc::invalid_argument, "%s: input array is null", what);
  if (out == nullptr) return status::error(errc::invalid_argument, "%s: output array is null", what);
  if (ranges_overlap(in, in_bytes, out, out_bytes))
    return status::error(errc::invalid_argument, "%s: input and output arrays overlap", what);
  return {};
}

}  // namespace detail

/// Converts `n` elements of `x` (dtype `xt`) to codes of `t` in `codes`
/// (minifloat_bytes(t, n) bytes). See the file comment for rounding, overflow and storage.
inline status convert_to_minifloat(const void* x, dtype xt, std::int64_t n, minifloat_type t, void* codes,
                                   const convert_options& opt = {}) {
  const host::detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(detail::check_convert_args("convert_to_minifloat", x, n * dtype_size(xt), codes, minifloat_bytes(t, n), xt, t, n, opt));
  if (n == 0) return {};
  auto* out = static_cast<std::uint8_t*>(codes);
  visit_minifloat(t, [&](auto codec) {
    using C = decltype(codec);
    visit_dtype(xt, [&](auto tag) {
      using T = decltype(tag);
      const T* in = static_cast<const T*>(x);
      if (opt.overflow == codecs::overflow::saturate) {
        host::convert_detail::encode_all<C, codecs::overflow::saturate>(in, n, out, opt);
      } else {
        host::convert_detail::encode_all<C, codecs::overflow::special>(in, n, out, opt);
      }
    });
  });
  return {};
}

/// Converts `n` codes of `t` in `codes` (minifloat_bytes(t, n) bytes) to `n` elements of `out`
/// (dtype `ot`). See the file comment for the values of NaN and Inf codes.
inline status convert_from_minifloat(const void* codes, minifloat_type t, std::int64_t n, void* out, dtype ot,
                                     const convert_options& opt = {}) {
  const host::detail::ieee_mode ieee;
  LOWBIT_TRY(detail::check_convert_args("convert_from_minifloat", codes, minifloat_bytes(t, n), out, n * dtype_size(ot), ot, t, n, opt));
  if (n == 0) return {};
  const auto* in = static_cast<const std::uint8_t*>(codes);
  visit_minifloat(t, [&](auto codec) {
    using C = decltype(codec);
    visit_dtype(ot, [&](auto tag) {
      using T = decltype(tag);
      host::convert_detail::decode_all<C>(in, n, static_cast<T*>(out), opt);
    });
  });
  return {};
}

LOWBIT_NAMESPACE_END
