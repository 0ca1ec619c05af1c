// SPDX-License-Identifier: Apache-2.0
/// @file convert.hpp
/// @brief Plain element-wise conversions, no scaling: float32/float16/bfloat16 arrays to and from
///        every lowbit minifloat (what `torch.Tensor.to(torch.float8_e4m3fn)` and ml_dtypes'
///        `astype` do). Multi-threaded, with AVX-512 and AVX2 kernels chosen at run time and a
///        portable path; every path writes the same bytes. The public entry points and the
///        semantics are in lowbit/convert.hpp.
///
/// The vector encoders evaluate the codecs' rounding with integer arithmetic on the float32
/// bits: a value in the target's normal range is rounded to nearest even by adding
/// `2^(22-M) - 1 + lsb` to its bits and shifting (the carry moves into the exponent exactly as a
/// rounding up does); a value below the target's smallest normal is rounded by one IEEE addition
/// of `2^(emin - M + 23)`, whose ulp is the target's subnormal quantum, so the hardware's round to
/// nearest even does the rounding (this needs IEEE default mode: no flush to zero, which every
/// entry point sets, see detail::ieee_mode). Overflow, Inf and NaN are then selected by masks.
/// The decoders look codes up in a 256-entry table (one entry per byte: one value, or the pair
/// of values of a byte of two 4-bit codes) built from the scalar codec, with vector gathers.
/// tests/host/convert_test.cpp compares every path with the scalar codecs for every float16 and
/// bfloat16 input, every float32 input (e4m3fn, e5m2) or a stratified sweep of them (the other
/// formats), and every code.
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../dtype.hpp"
#include "../status.hpp"
#include "engine.hpp"
#include "parallel.hpp"
#include "simd_avx2.hpp"
#include "simd_avx512.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN

/// The minifloat element types of the plain conversions (codecs/minifloat.hpp has their
/// definitions; docs/convert.md their storage and overflow rules).
enum class minifloat_type : std::uint8_t {
  e4m3fn,   ///< OCP FP8 E4M3, one code per byte
  e5m2,     ///< OCP FP8 E5M2, one code per byte
  e2m3fn,   ///< OCP FP6 E2M3, one code per byte (bits 5..0; bits 7..6 written 0, ignored when read)
  e3m2fn,   ///< OCP FP6 E3M2, one code per byte (bits 5..0; bits 7..6 written 0, ignored when read)
  e2m1fn,   ///< OCP FP4 E2M1, two codes per byte, element 2j in bits 3..0 (as `__nv_fp4x2`)
  e3m0,     ///< 4-bit sign + 3 exponent bits, two codes per byte, element 2j in bits 3..0
  e8m0fnu,  ///< OCP MX scale E8M0 (unsigned), one code per byte
};

/// Number of minifloat_type values (for iteration in tests and tools).
inline constexpr int minifloat_type_count = 7;

/// True if `t` is a minifloat_type enumerator.
constexpr bool is_valid(minifloat_type t) noexcept { return static_cast<unsigned>(t) < unsigned{minifloat_type_count}; }

/// Name of `t`, as ml_dtypes spells the type without its "float8_"/"float6_"/"float4_" prefix.
constexpr const char* minifloat_name(minifloat_type t) noexcept {
  constexpr const char* names[] = {"e4m3fn", "e5m2", "e2m3fn", "e3m2fn", "e2m1fn", "e3m0", "e8m0fnu"};
  return is_valid(t) ? names[static_cast<int>(t)] : "?";
}

/// True if `t` packs two codes per byte.
constexpr bool is_packed4(minifloat_type t) noexcept { return t == minifloat_type::e2m1fn || t == minifloat_type::e3m0; }

/// Bytes of `n` codes of `t` ((n + 1) / 2 for the 4-bit types).
constexpr std::int64_t minifloat_bytes(minifloat_type t, std::int64_t n) noexcept { return is_packed4(t) ? (n + 1) / 2 : n; }

/// Calls `fn(Codec{})` with Codec the codec of `t` (codecs::e4m3fn, ...); `t` must be valid.
template <class Fn>
decltype(auto) visit_minifloat(minifloat_type t, Fn&& fn) {
  switch (t) {
    case minifloat_type::e4m3fn: return fn(codecs::e4m3fn{});
    case minifloat_type::e5m2: return fn(codecs::e5m2{});
    case minifloat_type::e2m3fn: return fn(codecs::e2m3fn{});
    case minifloat_type::e3m2fn: return fn(codecs::e3m2fn{});
    case minifloat_type::e2m1fn: return fn(codecs::e2m1fn{});
    case minifloat_type::e3m0: return fn(codecs::e3m0{});
    case minifloat_type::e8m0fnu: break;
  }
  return fn(codecs::e8m0fnu{});
}

/// Options of the plain conversions.
struct convert_options {
  /// Overflow (a magnitude that rounds above the largest finite value, and ±Inf) when encoding:
  /// codecs::overflow::special (the default, as ml_dtypes' `astype`) gives ±Inf
  /// for e5m2, the NaN code for e4m3fn and e8m0fnu, and ±max for the formats with neither;
  /// codecs::overflow::saturate gives ±max finite (`__NV_SATFINITE`).
  codecs::overflow overflow = codecs::overflow::special;
  int threads = 0;     ///< 0 = every hardware thread
  bool simd = true;    ///< use the SIMD kernels the CPU has (false: portable code only)
  bool avx512 = true;  ///< with simd: the AVX-512 kernels when the CPU has them (false: AVX2 only)
  /// The output's stores: automatic streams (non-temporal stores) outputs of
  /// host::streaming_store_bytes and more; the bytes written are the same in every mode.
  host::store_mode stores = host::store_mode::automatic;
};

namespace host {
namespace convert_detail {

/// Constants of the vector encoder of codec C (see the file comment).
template <class C, codecs::overflow O>
struct enc {
  static constexpr int M = C::mantissa_bits;
  static constexpr int shift = 23 - M;
  static constexpr std::uint32_t round_bias = (1u << (shift - 1)) - 1u;
  /// Subtracted from the rounded bits >> shift to rebias the exponent.
  static constexpr std::int32_t rebias = (127 - C::bias) << M;
  /// float32 bits of the smallest normal of C (formats with subnormals).
  static constexpr std::uint32_t min_normal_bits = static_cast<std::uint32_t>(C::min_exponent + 127) << 23;
  /// float32 bits of 2^(emin - M + 23): its ulp is C's subnormal quantum.
  static constexpr std::uint32_t magic_bits = static_cast<std::uint32_t>(C::min_exponent - M + 23 + 127) << 23;
  static constexpr std::uint32_t overflow_code =
      O == codecs::overflow::saturate ? C::max_magnitude_code
      : C::has_inf                   ? C::inf_magnitude_code
      : C::has_nan                   ? C::magnitude_mask
                                     : C::max_magnitude_code;
  // The integer rounding breaks ties on the parity of (bits >> shift), which is the code's
  // parity when the rebias is even.
  static_assert((rebias & 1) == 0, "convert: rebias must keep the code's parity");
  // The one format without subnormals (e8m0fnu) is handled below 2^-126 by a comparison.
  static_assert(C::has_subnormals || (C::bias == 127 && M == 0), "convert: no-subnormal formats other than e8m0fnu");
  static_assert(!C::has_subnormals || (C::min_exponent >= -125 && C::min_exponent - M + 23 <= 127),
                "convert: the subnormal quantum's magic number must be a normal float32");
};

/// Rounds one float32 to a code of C (the scalar codec: the reference for every path).
template <class C, codecs::overflow O>
inline std::uint8_t encode_one(float x) noexcept {
  return C::template encode<codecs::rounding::nearest_even, O>(x);
}

/// 256-entry decode table of C for output T: entry b is the value(s) of byte b, as the bits of
/// one T (8-bit formats; std::uint32_t entries) or of two T (4-bit formats, element 2j from the
/// low nibble first in memory; std::uint64_t entries for float32, std::uint32_t for 16-bit).
template <class C, class T>
struct decode_table {
  static constexpr bool four = C::bits == 4;
  using entry = std::conditional_t<four && sizeof(T) == 4, std::uint64_t, std::uint32_t>;
  alignas(64) entry v[256];

  static std::uint32_t bits_of(std::uint8_t code) noexcept {
    const T t = from_float<T>(C::decode(code));
    if constexpr (sizeof(T) == 4) {
      std::uint32_t u;
      std::memcpy(&u, &t, 4);
      return u;
    } else {
      return t.bits;
    }
  }
  decode_table() noexcept {
    for (int b = 0; b < 256; ++b) {
      const auto byte = static_cast<std::uint8_t>(b);
      if constexpr (four) {
        const entry lo = bits_of(static_cast<std::uint8_t>(byte & 0xFu));
        const entry hi = bits_of(static_cast<std::uint8_t>(byte >> 4));
        v[b] = static_cast<entry>(lo | (hi << (8 * sizeof(T))));
      } else {
        v[b] = bits_of(byte);
      }
    }
  }
  static const decode_table& get() {
    static const decode_table t;
    return t;
  }
};

template <class T>
inline void put(T* p, std::uint32_t bits) noexcept {
  if constexpr (sizeof(T) == 4) {
    std::memcpy(p, &bits, 4);
  } else {
    const auto h = static_cast<std::uint16_t>(bits);
    std::memcpy(p, &h, 2);
  }
}

/// Portable encode of elements [i0, i1) (i0 even for 4-bit formats; an odd i1 only at the end
/// of the tensor, whose last byte is padded with the code of +0.0).
template <class C, codecs::overflow O, class T>
void encode_portable(const T* x, std::int64_t i0, std::int64_t i1, std::uint8_t* codes) {
  if constexpr (C::bits == 4) {
    std::int64_t i = i0;
    for (; i + 1 < i1; i += 2) {
      codes[i / 2] = codecs::pack_nibbles<codecs::nibble_order::low_first>(encode_one<C, O>(to_float(detail::load(x + i))),
                                                                            encode_one<C, O>(to_float(detail::load(x + i + 1))));
    }
    if (i < i1) {
      codes[i / 2] = codecs::pack_nibbles<codecs::nibble_order::low_first>(encode_one<C, O>(to_float(detail::load(x + i))),
                                                                            encode_one<C, O>(0.0f));
    }
  } else {
    for (std::int64_t i = i0; i < i1; ++i) codes[i] = encode_one<C, O>(to_float(detail::load(x + i)));
  }
}

/// Portable decode of elements [i0, i1) (i0 even for 4-bit formats) through the table.
template <class C, class T>
void decode_portable(const std::uint8_t* codes, std::int64_t i0, std::int64_t i1, T* out) {
  const auto& tab = decode_table<C, T>::get();
  if constexpr (C::bits == 4) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const auto e = tab.v[codes[i / 2]];
      put(out + i, static_cast<std::uint32_t>(e >> ((i & 1) * 8 * sizeof(T))));
    }
  } else {
    for (std::int64_t i = i0; i < i1; ++i) put(out + i, static_cast<std::uint32_t>(tab.v[codes[i]]));
  }
}

#if LOWBIT_HAVE_AVX512_KERNELS
LOWBIT_AVX512_WARNINGS_PUSH

namespace v512 {

LOWBIT_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
LOWBIT_AVX512 inline __m512 load16(const f16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
LOWBIT_AVX512 inline __m512 load16(const bf16* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

/// Codes of 16 float32 (one per 32-bit lane).
template <class C, codecs::overflow O>
LOWBIT_AVX512 inline __m512i encode16(__m512 x) {
  using K = enc<C, O>;
  const __m512i u = _mm512_castps_si512(x);
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(a, K::shift), _mm512_set1_epi32(1));
  const __m512i rnd = _mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(static_cast<int>(K::round_bias))), lsb);
  __m512i mag = _mm512_sub_epi32(_mm512_srli_epi32(rnd, K::shift), _mm512_set1_epi32(K::rebias));
  if constexpr (C::has_subnormals) {
    const __m512 magic = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(K::magic_bits)));
    const __m512i sub = _mm512_sub_epi32(_mm512_castps_si512(_mm512_add_ps(_mm512_castsi512_ps(a), magic)),
                                         _mm512_set1_epi32(static_cast<int>(K::magic_bits)));
    mag = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(static_cast<int>(K::min_normal_bits))), mag, sub);
  } else {  // e8m0fnu below 2^-126: 2^-127 (code 0) up to the midpoint 1.5 * 2^-127 (a tie: even code 0), else code 1
    const __m512i sub = _mm512_maskz_mov_epi32(_mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x00600000)), _mm512_set1_epi32(1));
    mag = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(0x00800000)), mag, sub);
  }
  mag = _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(mag, _mm512_set1_epi32(static_cast<int>(C::max_magnitude_code))), mag,
                                _mm512_set1_epi32(static_cast<int>(K::overflow_code)));
  if constexpr (C::is_signed) {
    constexpr int em = C::exponent_bits + C::mantissa_bits;
    mag = _mm512_or_si512(mag, _mm512_and_si512(_mm512_srli_epi32(u, 31 - em), _mm512_set1_epi32(static_cast<int>(C::sign_mask))));
  }
  return _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32(0x7F800000)), mag,
                                 _mm512_set1_epi32(static_cast<int>(C::nan_code)));
}

/// Float16 (5 exponent bits, 10 mantissa) and bfloat16 (8, 7) as encode32's sources.
template <class T>
struct half_source {
  static constexpr int exponent_bits = std::is_same<T, f16>::value ? 5 : 8;
  static constexpr int mantissa_bits = std::is_same<T, f16>::value ? 10 : 7;
  static constexpr int bias = (1 << (exponent_bits - 1)) - 1;
  static constexpr std::uint32_t inf_bits = ((1u << exponent_bits) - 1u) << mantissa_bits;
};

/// Codes of 32 float16 or bfloat16 values (16-bit lanes, bits u) for a C with subnormals:
/// encode16's rounding done in 16-bit lanes, 32 values an instruction and no widening. In C's
/// normal range the bits are rounded to nearest even by the same bias-and-shift. Below C's
/// smallest normal the value is sig * 2^(e - bias - m) (sig with its implicit bit, e at least 1),
/// i.e. sig * 2^-s quanta of C's subnormal step 2^(emin - M), s = bias + m + emin - M - e; it is
/// rounded to nearest even by a variable shift (s clamped to 15, where every sig rounds to 0).
/// Overflow, Inf and NaN as encode16. The exhaustive tests check every float16 and bfloat16.
template <class C, codecs::overflow O, class T>
LOWBIT_AVX512 inline __m512i encode32(__m512i u) {
  static_assert(C::has_subnormals, "encode32: formats with subnormals");
  using S = half_source<T>;
  using K = enc<C, O>;
  constexpr int MS = S::mantissa_bits, M = C::mantissa_bits, shift = MS - M;
  static_assert(shift >= 1, "encode32: the source has more mantissa bits");
  const __m512i a = _mm512_and_si512(u, _mm512_set1_epi16(0x7FFF));
  // normal range (as encode16; the rebias is the exponent's move from the source's bias to C's)
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi16(a, shift), _mm512_set1_epi16(1));
  const __m512i rnd = _mm512_add_epi16(_mm512_add_epi16(a, _mm512_set1_epi16(static_cast<short>((1 << (shift - 1)) - 1))), lsb);
  __m512i mag = _mm512_sub_epi16(_mm512_srli_epi16(rnd, shift), _mm512_set1_epi16(static_cast<short>((S::bias - C::bias) << M)));
  // below C's smallest normal, 2^emin: source exponent field e < bias + emin
  constexpr int e_min_normal = S::bias + C::min_exponent;
  static_assert(e_min_normal >= 1, "encode32: C's smallest normal is a normal of the source");
  const __m512i e = _mm512_srli_epi16(a, MS);
  const __m512i sig = _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi16(static_cast<short>((1 << MS) - 1))),
                                      _mm512_maskz_mov_epi16(_mm512_cmpgt_epi16_mask(e, _mm512_setzero_si512()), _mm512_set1_epi16(static_cast<short>(1 << MS))));
  const __m512i e1 = _mm512_max_epi16(e, _mm512_set1_epi16(1));
  const __m512i sh = _mm512_min_epi16(_mm512_sub_epi16(_mm512_set1_epi16(static_cast<short>(S::bias + MS + C::min_exponent - M)), e1), _mm512_set1_epi16(15));
  const __m512i q = _mm512_srlv_epi16(sig, sh);
  const __m512i one = _mm512_set1_epi16(1);
  const __m512i half = _mm512_sllv_epi16(one, _mm512_sub_epi16(sh, one));
  const __m512i rem = _mm512_and_si512(sig, _mm512_sub_epi16(_mm512_sllv_epi16(one, sh), one));
  // round up: rem > half, or rem == half and q odd
  const __mmask32 up = _mm512_cmpgt_epu16_mask(rem, half) | (_mm512_cmpeq_epi16_mask(rem, half) & _mm512_test_epi16_mask(q, one));
  const __m512i sub = _mm512_mask_add_epi16(q, up, q, one);
  mag = _mm512_mask_blend_epi16(_mm512_cmplt_epi16_mask(e, _mm512_set1_epi16(static_cast<short>(e_min_normal))), mag, sub);
  mag = _mm512_mask_blend_epi16(_mm512_cmpgt_epi16_mask(mag, _mm512_set1_epi16(static_cast<short>(C::max_magnitude_code))), mag,
                                _mm512_set1_epi16(static_cast<short>(K::overflow_code)));
  if constexpr (C::is_signed) {
    constexpr int em = C::exponent_bits + C::mantissa_bits;
    mag = _mm512_or_si512(mag, _mm512_and_si512(_mm512_srli_epi16(u, 15 - em), _mm512_set1_epi16(static_cast<short>(C::sign_mask))));
  }
  return _mm512_mask_blend_epi16(_mm512_cmpgt_epi16_mask(a, _mm512_set1_epi16(static_cast<short>(S::inf_bits))), mag,
                                 _mm512_set1_epi16(static_cast<short>(C::nan_code)));
}

/// 16 codes of 4 bits (32-bit lanes) -> 8 bytes, element 2j in the low nibble.
LOWBIT_AVX512 inline __m128i pack_pairs(__m512i c) {
  return _mm512_cvtepi64_epi8(_mm512_or_si512(c, _mm512_srli_epi64(c, 28)));
}

template <bool Stream>
LOWBIT_AVX512 inline void store_line(void* p, __m512i v) {
  if constexpr (Stream) {
    _mm512_stream_si512(static_cast<__m512i*>(p), v);
  } else {
    _mm512_storeu_si512(p, v);
  }
}

/// Encodes `lines` runs of 64 output bytes (64 elements, 128 for 4-bit formats).
template <class C, codecs::overflow O, bool Stream, class T>
LOWBIT_AVX512 void encode_lines(const T* x, std::int64_t lines, std::uint8_t* codes) {
  if constexpr (sizeof(T) == 2 && C::has_subnormals) {  // 16-bit sources in 16-bit lanes (encode32)
    for (std::int64_t l = 0; l < lines; ++l) {
      avx2::detail::prefetch_ahead(x + l * 64 * (C::bits == 4 ? 2 : 1), avx2::stream_ahead, (C::bits == 4 ? 256 : 128));
      __m512i v;
      if constexpr (C::bits == 4) {  // 128 elements: 4 x 32 codes, pairs packed into 4 x 16 bytes
        __m128i q[4];
        for (int k = 0; k < 4; ++k) {
          const __m512i c = encode32<C, O, T>(_mm512_loadu_si512(x + l * 128 + 32 * k));
          q[k] = _mm512_cvtepi32_epi8(_mm512_or_si512(_mm512_and_si512(c, _mm512_set1_epi32(0xF)), _mm512_srli_epi32(c, 12)));
        }
        v = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(q[0]), q[1], 1), q[2], 2), q[3], 3);
      } else {  // 64 elements: 2 x 32 codes
        const __m256i lo = _mm512_cvtepi16_epi8(encode32<C, O, T>(_mm512_loadu_si512(x + l * 64)));
        const __m256i hi = _mm512_cvtepi16_epi8(encode32<C, O, T>(_mm512_loadu_si512(x + l * 64 + 32)));
        v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      }
      store_line<Stream>(codes + l * 64, v);
    }
  } else {
    for (std::int64_t l = 0; l < lines; ++l) {
      avx2::detail::prefetch_ahead(x + l * 64 * (C::bits == 4 ? 2 : 1), avx2::stream_ahead, 64 * (C::bits == 4 ? 2 : 1) * sizeof(T));
      __m128i q[4];
      if constexpr (C::bits == 4) {
        const T* p = x + l * 128;
        for (int k = 0; k < 4; ++k) {
          q[k] = _mm_unpacklo_epi64(pack_pairs(encode16<C, O>(load16(p + 32 * k))),
                                    pack_pairs(encode16<C, O>(load16(p + 32 * k + 16))));
        }
      } else {
        const T* p = x + l * 64;
        for (int k = 0; k < 4; ++k) q[k] = _mm512_cvtepi32_epi8(encode16<C, O>(load16(p + 16 * k)));
      }
      __m512i v = _mm512_castsi128_si512(q[0]);
      v = _mm512_inserti32x4(v, q[1], 1);
      v = _mm512_inserti32x4(v, q[2], 2);
      v = _mm512_inserti32x4(v, q[3], 3);
      store_line<Stream>(codes + l * 64, v);
    }
  }
}

/// Decodes `lines` runs of 64 output bytes (64 / sizeof(T) elements).
template <class C, bool Stream, class T>
LOWBIT_AVX512 void decode_lines(const std::uint8_t* codes, std::int64_t lines, T* out, const void* table) {
  constexpr std::int64_t per = 64 / static_cast<std::int64_t>(sizeof(T));  // elements per line
  // 8-bit codes into 16-bit values: the table's 256 entries as words in eight registers, looked
  // up 64 at a time by vpermt2w and picked by the index's bits 6 and 7 (4 permutes for 32 codes
  // instead of two 16-lane gathers)
  __m512i words[8];
  if constexpr (C::bits != 4 && sizeof(T) == 2) {
    const auto* t = static_cast<const std::uint32_t*>(table);
    for (int k = 0; k < 8; ++k)
      words[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(_mm512_loadu_si512(t + 32 * k))),
                                    _mm512_cvtepi32_epi16(_mm512_loadu_si512(t + 32 * k + 16)), 1);
  }
  constexpr std::int64_t code_bytes = C::bits == 4 ? per / 2 : per;  // read per line
  for (std::int64_t l = 0; l < lines; ++l) {
    avx2::detail::prefetch_ahead(codes + l * code_bytes, avx2::stream_ahead, code_bytes);
    __m512i v;
    if constexpr (C::bits == 4 && sizeof(T) == 4) {  // 8 bytes -> 8 pairs of float32
      const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + l * 8)));
      v = _mm512_i32gather_epi64(idx, table, 8);
    } else if constexpr (C::bits == 4) {  // 16 bytes -> 16 pairs of 16-bit values
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + l * 16)));
      v = _mm512_i32gather_epi32(idx, table, 4);
    } else if constexpr (sizeof(T) == 4) {  // 16 codes -> 16 float32
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + l * per)));
      v = _mm512_i32gather_epi32(idx, table, 4);
    } else {  // 32 codes -> 32 16-bit values
      const __m512i idx = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + l * per)));
      const __mmask32 b6 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x40)), b7 = _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x80));
      const __m512i lo = _mm512_mask_blend_epi16(b6, _mm512_permutex2var_epi16(words[0], idx, words[1]), _mm512_permutex2var_epi16(words[2], idx, words[3]));
      const __m512i hi = _mm512_mask_blend_epi16(b6, _mm512_permutex2var_epi16(words[4], idx, words[5]), _mm512_permutex2var_epi16(words[6], idx, words[7]));
      v = _mm512_mask_blend_epi16(b7, lo, hi);
    }
    store_line<Stream>(out + l * per, v);
  }
}

}  // namespace v512

LOWBIT_AVX512_WARNINGS_POP
#endif  // LOWBIT_HAVE_AVX512_KERNELS

#if LOWBIT_HAVE_AVX2_KERNELS
namespace v256 {

LOWBIT_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
LOWBIT_AVX2 inline __m256 load8(const f16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
LOWBIT_AVX2 inline __m256 load8(const bf16* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}

LOWBIT_AVX2 inline __m256i select(__m256i mask, __m256i if_false, __m256i if_true) { return _mm256_blendv_epi8(if_false, if_true, mask); }

/// Codes of 8 float32 (one per 32-bit lane): encode16's arithmetic on 8 lanes.
template <class C, codecs::overflow O>
LOWBIT_AVX2 inline __m256i encode8(__m256 x) {
  using K = enc<C, O>;
  const __m256i u = _mm256_castps_si256(x);
  const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, K::shift), _mm256_set1_epi32(1));
  const __m256i rnd = _mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(static_cast<int>(K::round_bias))), lsb);
  __m256i mag = _mm256_sub_epi32(_mm256_srli_epi32(rnd, K::shift), _mm256_set1_epi32(K::rebias));
  if constexpr (C::has_subnormals) {
    const __m256 magic = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(K::magic_bits)));
    const __m256i sub = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(a), magic)),
                                         _mm256_set1_epi32(static_cast<int>(K::magic_bits)));
    mag = select(_mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(K::min_normal_bits)), a), mag, sub);
  } else {
    const __m256i sub = _mm256_and_si256(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x00600000)), _mm256_set1_epi32(1));
    mag = select(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x00800000), a), mag, sub);
  }
  mag = select(_mm256_cmpgt_epi32(mag, _mm256_set1_epi32(static_cast<int>(C::max_magnitude_code))), mag,
               _mm256_set1_epi32(static_cast<int>(K::overflow_code)));
  if constexpr (C::is_signed) {
    constexpr int em = C::exponent_bits + C::mantissa_bits;
    mag = _mm256_or_si256(mag, _mm256_and_si256(_mm256_srli_epi32(u, 31 - em), _mm256_set1_epi32(static_cast<int>(C::sign_mask))));
  }
  return select(_mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000)), mag, _mm256_set1_epi32(static_cast<int>(C::nan_code)));
}

/// 8 codes (32-bit lanes, each < 256) -> 8 bytes in the low half.
LOWBIT_AVX2 inline __m128i pack_bytes(__m256i c) {
  const __m256i p = _mm256_packus_epi16(_mm256_packus_epi32(c, c), _mm256_setzero_si256());
  return _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
}
/// 8 codes of 4 bits -> 4 bytes in the low 32 bits, element 2j in the low nibble.
LOWBIT_AVX2 inline __m128i pack_pairs(__m256i c) {
  const __m256i w = _mm256_or_si256(c, _mm256_srli_epi64(c, 28));  // each 64-bit lane: its pair in byte 0
  const __m256i b = _mm256_shuffle_epi8(w, _mm256_setr_epi8(0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                                                            0, 8, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  return _mm_unpacklo_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
}

template <bool Stream>
LOWBIT_AVX2 inline void store_line(void* p, __m256i v) {
  if constexpr (Stream) {
    _mm256_stream_si256(static_cast<__m256i*>(p), v);
  } else {
    _mm256_storeu_si256(static_cast<__m256i*>(p), v);
  }
}

/// Encodes `lines` runs of 32 output bytes (32 elements, 64 for 4-bit formats).
template <class C, codecs::overflow O, bool Stream, class T>
LOWBIT_AVX2 void encode_lines(const T* x, std::int64_t lines, std::uint8_t* codes) {
  for (std::int64_t l = 0; l < lines; ++l) {
    avx2::detail::prefetch_ahead(x + l * 32 * (C::bits == 4 ? 2 : 1), avx2::stream_ahead, 32 * (C::bits == 4 ? 2 : 1) * sizeof(T));
    __m128i lo, hi;
    if constexpr (C::bits == 4) {
      const T* p = x + l * 64;
      __m128i w[4];
      for (int k = 0; k < 4; ++k) {
        w[k] = _mm_unpacklo_epi32(pack_pairs(encode8<C, O>(load8(p + 16 * k))), pack_pairs(encode8<C, O>(load8(p + 16 * k + 8))));
      }
      lo = _mm_unpacklo_epi64(w[0], w[1]);
      hi = _mm_unpacklo_epi64(w[2], w[3]);
    } else {
      const T* p = x + l * 32;
      lo = _mm_unpacklo_epi64(pack_bytes(encode8<C, O>(load8(p))), pack_bytes(encode8<C, O>(load8(p + 8))));
      hi = _mm_unpacklo_epi64(pack_bytes(encode8<C, O>(load8(p + 16))), pack_bytes(encode8<C, O>(load8(p + 24))));
    }
    store_line<Stream>(codes + l * 32, _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
  }
}

/// Decodes `lines` runs of 32 output bytes (32 / sizeof(T) elements).
template <class C, bool Stream, class T>
LOWBIT_AVX2 void decode_lines(const std::uint8_t* codes, std::int64_t lines, T* out, const void* table) {
  constexpr std::int64_t per = 32 / static_cast<std::int64_t>(sizeof(T));
  const auto* t32 = static_cast<const int*>(table);
  const auto* t64 = static_cast<const long long*>(table);
  constexpr std::int64_t code_bytes = C::bits == 4 ? per / 2 : per;  // read per line
  for (std::int64_t l = 0; l < lines; ++l) {
    avx2::detail::prefetch_ahead(codes + l * code_bytes, avx2::stream_ahead, code_bytes);
    __m256i v;
    if constexpr (C::bits == 4 && sizeof(T) == 4) {  // 4 bytes -> 4 pairs of float32
      std::int32_t four;
      std::memcpy(&four, codes + l * 4, 4);
      v = _mm256_i32gather_epi64(t64, _mm_cvtepu8_epi32(_mm_cvtsi32_si128(four)), 8);
    } else if constexpr (C::bits == 4) {  // 8 bytes -> 8 pairs of 16-bit values
      v = _mm256_i32gather_epi32(t32, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + l * 8))), 4);
    } else if constexpr (sizeof(T) == 4) {  // 8 codes -> 8 float32
      v = _mm256_i32gather_epi32(t32, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + l * per))), 4);
    } else {  // 16 codes -> 16 16-bit values
      const std::uint8_t* c = codes + l * per;
      const __m256i g0 = _mm256_i32gather_epi32(t32, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c))), 4);
      const __m256i g1 = _mm256_i32gather_epi32(t32, _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + 8))), 4);
      v = _mm256_permute4x64_epi64(_mm256_packus_epi32(g0, g1), 0xD8);
    }
    store_line<Stream>(out + l * per, v);
  }
}

}  // namespace v256
#endif  // LOWBIT_HAVE_AVX2_KERNELS

/// Which vector kernels a call uses.
enum class isa : unsigned char { portable, avx2, avx512 };

inline isa pick_isa(const convert_options& opt) noexcept {
  if (!opt.simd || !avx2::available()) return isa::portable;
  return opt.avx512 && avx512::available() ? isa::avx512 : isa::avx2;
}

/// Elements per chunk boundary: a multiple of every kernel's line (128 elements fill 64 bytes of
/// 4-bit codes), so chunks of an aligned output start aligned.
inline constexpr std::int64_t chunk_align = 128;
/// Smallest chunk a thread takes.
inline constexpr std::int64_t chunk_grain = std::int64_t{1} << 16;

inline bool streams(const convert_options& opt, std::int64_t out_bytes) noexcept {
  return opt.stores == store_mode::streaming || (opt.stores == store_mode::automatic && out_bytes >= streaming_store_bytes);
}

/// Bytes from p to the next multiple of 64.
inline std::int64_t to_line(const void* p) noexcept {
  return static_cast<std::int64_t>((64u - (reinterpret_cast<std::uintptr_t>(p) & 63u)) & 63u);
}

template <class C, codecs::overflow O, class T>
void encode_chunk(const T* x, std::int64_t i0, std::int64_t i1, std::uint8_t* codes, isa path, bool stream) {
  std::int64_t i = i0;
#if LOWBIT_HAVE_AVX2_KERNELS
  if (path != isa::portable) {
    constexpr std::int64_t per_byte = C::bits == 4 ? 2 : 1;
    // elements up to the first 64-byte boundary of the output go through the portable code, so
    // the vector lines are aligned (as non-temporal stores need)
    const std::int64_t head = std::min(i1 - i0, to_line(codes + i0 / per_byte) * per_byte);
    encode_portable<C, O>(x, i0, i0 + head, codes);
    i += head;
#if LOWBIT_HAVE_AVX512_KERNELS
    if (path == isa::avx512) {
      const std::int64_t lines = (i1 - i) / (64 * per_byte);
      if (stream) {
        v512::encode_lines<C, O, true>(x + i, lines, codes + i / per_byte);
      } else {
        v512::encode_lines<C, O, false>(x + i, lines, codes + i / per_byte);
      }
      i += lines * 64 * per_byte;
    }
#endif
    const std::int64_t lines = (i1 - i) / (32 * per_byte);
    if (stream) {
      v256::encode_lines<C, O, true>(x + i, lines, codes + i / per_byte);
    } else {
      v256::encode_lines<C, O, false>(x + i, lines, codes + i / per_byte);
    }
    i += lines * 32 * per_byte;
  }
#else
  (void)path, (void)stream;  // portable code only
#endif
  encode_portable<C, O>(x, i, i1, codes);
}

template <class C, class T>
void decode_chunk(const std::uint8_t* codes, std::int64_t i0, std::int64_t i1, T* out, isa path, bool stream) {
  std::int64_t i = i0;
#if LOWBIT_HAVE_AVX2_KERNELS
  if (path != isa::portable) {
    constexpr bool four = C::bits == 4;
    const void* table = decode_table<C, T>::get().v;
    // align the output to 64 bytes when whole elements (an even number, for 4-bit codes) get it there
    const std::int64_t gap = to_line(out + i0);
    const bool aligned = gap % static_cast<std::int64_t>(sizeof(T)) == 0 && (!four || (gap / static_cast<std::int64_t>(sizeof(T))) % 2 == 0);
    const std::int64_t head = aligned ? std::min(i1 - i0, gap / static_cast<std::int64_t>(sizeof(T))) : 0;
    stream = stream && aligned;
    decode_portable<C>(codes, i0, i0 + head, out);
    i += head;
    constexpr std::int64_t per_byte = four ? 2 : 1;
#if LOWBIT_HAVE_AVX512_KERNELS
    if (path == isa::avx512) {
      constexpr std::int64_t per = 64 / static_cast<std::int64_t>(sizeof(T));
      const std::int64_t lines = (i1 - i) / per;
      if (stream) {
        v512::decode_lines<C, true>(codes + i / per_byte, lines, out + i, table);
      } else {
        v512::decode_lines<C, false>(codes + i / per_byte, lines, out + i, table);
      }
      i += lines * per;
    }
#endif
    constexpr std::int64_t per = 32 / static_cast<std::int64_t>(sizeof(T));
    const std::int64_t lines = (i1 - i) / per;
    if (stream) {
      v256::decode_lines<C, true>(codes + i / per_byte, lines, out + i, table);
    } else {
      v256::decode_lines<C, false>(codes + i / per_byte, lines, out + i, table);
    }
    i += lines * per;
    if (stream) _mm_sfence();  // the streamed lines are visible before the call returns
  }
#else
  (void)path, (void)stream;  // portable code only
#endif
  decode_portable<C>(codes, i, i1, out);
}

template <class C, codecs::overflow O, class T>
void encode_all(const T* x, std::int64_t n, std::uint8_t* codes, const convert_options& opt) {
  const isa path = pick_isa(opt);
  const bool stream = path != isa::portable && streams(opt, C::bits == 4 ? (n + 1) / 2 : n);
  parallel_for(n, chunk_grain, chunk_align, opt.threads, [&](std::int64_t b, std::int64_t e) {
    encode_chunk<C, O>(x, b, e, codes, path, stream);
#if LOWBIT_HAVE_AVX2_KERNELS
    if (stream) _mm_sfence();  // the streamed lines are visible before the call returns
#endif
  });
}

template <class C, class T>
void decode_all(const std::uint8_t* codes, std::int64_t n, T* out, const convert_options& opt) {
  const isa path = pick_isa(opt);
  const bool stream = path != isa::portable && streams(opt, n * static_cast<std::int64_t>(sizeof(T)));
  parallel_for(n, chunk_grain, chunk_align, opt.threads,
               [&](std::int64_t b, std::int64_t e) { decode_chunk<C>(codes, b, e, out, path, stream); });
}

}  // namespace convert_detail
}  // namespace host

LOWBIT_NAMESPACE_END
