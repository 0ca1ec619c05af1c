// SPDX-License-Identifier: Apache-2.0
/// @file ggml_blocks.hpp
/// @brief ggml's block formats (the tensor types of GGUF files): Q8_0, Q4_0, Q4_1 and MXFP4, with
///        F32, F16 and BF16, quantized and dequantized bit for bit as ggml's reference
///        `quantize_row_*_ref` and `dequantize_row_*` (ggml/src/ggml-quants.c) do.
///
/// @par The blocks (ggml/src/ggml-common.h; 32 elements each, little-endian)
/// | type  | id | bytes | layout | value of element j |
/// |---|---|---|---|---|
/// | Q8_0  |  8 | 34 | f16 d, int8 qs[32] | qs[j] * d |
/// | Q4_0  |  2 | 18 | f16 d, u8 qs[16] | ((qs[j%16] >> 4*(j/16)) & 15) - 8, times d |
/// | Q4_1  |  3 | 20 | f16 d, f16 m, u8 qs[16] | ((qs[j%16] >> 4*(j/16)) & 15) * d + m |
/// | MXFP4 | 39 | 17 | u8 e (E8M0), u8 qs[16] | kv[(qs[j%16] >> 4*(j/16)) & 15] * 2^(e-128) |
/// The 4-bit types put element j of the first half in the low nibble of byte j and element
/// j + 16 in its high nibble. MXFP4's kv = {0,1,2,3,4,6,8,12,0,-1,-2,-3,-4,-6,-8,-12} is twice
/// the OCP E2M1 value of the code, so 2^(e-128) is half the E8M0 scale 2^(e-127): the value is
/// the OCP MX value E2M1(code) * 2^(e-127). F32, F16 and BF16 are plain arrays (ids 0, 1, 30).
///
/// @par Quantization (what ggml's reference functions compute, each step rounded in float32)
/// - Q8_0: d = amax / 127 (amax the largest |x| of the block), id = d ? 1/d : 0, qs = round(x*id)
///   (half away from zero), stored d = f16(d).
/// - Q4_0: m = the element of largest |x| (the first one on ties), d = m / -8, id = d ? 1/d : 0,
///   q = min(15, trunc(x*id + 8.5)), stored d = f16(d).
/// - Q4_1: lo/hi = min/max of the block, d = (hi - lo) / 15, id = d ? 1/d : 0,
///   q = min(15, trunc((x - lo)*id + 0.5)), stored d = f16(d), m = f16(lo).
/// - MXFP4: e = amax > 0 ? floor(log2f(amax)) - 2 + 127 : 0 (log2f of the C library, as ggml
///   calls it: for an amax within a few float32 ulps below a power of two it rounds up to that
///   power), then for each x the code whose kv * 2^(e-128) is nearest (the lower code on ties:
///   positive codes before negative, smaller magnitudes first, so -0.0 gets code 0).
/// Where a conversion to an integer leaves its type's range (an id that overflowed to Inf for a
/// block of subnormal values, a (hi - lo) that overflowed), C leaves ggml's result undefined;
/// these functions give the bytes ggml's x86-64 build gives there (the conversion yields
/// INT32_MIN, whose low byte is 0), and say so because another build of ggml may differ.
/// f16 rounding is to nearest, ties to even (ggml's ggml_compute_fp32_to_fp16 and F16C agree).
/// No product is fused with an add: ggml-base, where these functions live, is compiled for the
/// baseline ISA without FMA.
///
/// @par Semantics for bad input
/// Rows must hold a whole number of blocks (ggml refuses others: GGUF stores no partial block).
/// NaN or Inf in the input of a quantization is errc::non_finite naming the element: ggml's
/// result for them depends on the order of its comparisons and is not a format property. A
/// dequantization reads any bytes: a stored f16 NaN or Inf scale gives NaN/Inf values, as ggml's.
#pragma once

#include "config.hpp"
#include "dtype.hpp"
#include "host/parallel.hpp"
#include "host/simd_avx512.hpp"
#include "status.hpp"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>

LOWBIT_NAMESPACE_BEGIN
namespace ggml {

/// The ggml tensor types lowbit reads and writes (values are ggml's `enum ggml_type`).
enum class type : std::uint32_t { f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, bf16 = 30, mxfp4 = 39 };

/// Block geometry of a ggml type, its name as ggml spells it (`ggml_type_name`), and whether
/// lowbit quantizes and dequantizes it (the others can still be read and written as bytes).
struct type_traits {
  const char* name;
  int block;     ///< elements per block (1 for the plain types)
  int bytes;     ///< bytes per block
  bool handled;  ///< quantize/dequantize implemented here
};

/// Traits of ggml type `id` (every type of ggml's enum as of ggml 0.9.x, sizes from its
/// ggml-common.h), or false for an id that names no type (a removed or unknown one).
constexpr bool traits_of(std::uint32_t id, type_traits& out) noexcept {
  switch (id) {
    case 0: out = {"f32", 1, 4, true}; return true;
    case 1: out = {"f16", 1, 2, true}; return true;
    case 2: out = {"q4_0", 32, 18, true}; return true;
    case 3: out = {"q4_1", 32, 20, true}; return true;
    case 6: out = {"q5_0", 32, 22, false}; return true;
    case 7: out = {"q5_1", 32, 24, false}; return true;
    case 8: out = {"q8_0", 32, 34, true}; return true;
    case 9: out = {"q8_1", 32, 36, false}; return true;
    case 10: out = {"q2_K", 256, 84, false}; return true;
    case 11: out = {"q3_K", 256, 110, false}; return true;
    case 12: out = {"q4_K", 256, 144, false}; return true;
    case 13: out = {"q5_K", 256, 176, false}; return true;
    case 14: out = {"q6_K", 256, 210, false}; return true;
    case 15: out = {"q8_K", 256, 292, false}; return true;
    case 16: out = {"iq2_xxs", 256, 66, false}; return true;
    case 17: out = {"iq2_xs", 256, 74, false}; return true;
    case 18: out = {"iq3_xxs", 256, 98, false}; return true;
    case 19: out = {"iq1_s", 256, 50, false}; return true;
    case 20: out = {"iq4_nl", 32, 18, false}; return true;
    case 21: out = {"iq3_s", 256, 110, false}; return true;
    case 22: out = {"iq2_s", 256, 82, false}; return true;
    case 23: out = {"iq4_xs", 256, 136, false}; return true;
    case 24: out = {"i8", 1, 1, false}; return true;
    case 25: out = {"i16", 1, 2, false}; return true;
    case 26: out = {"i32", 1, 4, false}; return true;
    case 27: out = {"i64", 1, 8, false}; return true;
    case 28: out = {"f64", 1, 8, false}; return true;
    case 29: out = {"iq1_m", 256, 56, false}; return true;
    case 30: out = {"bf16", 1, 2, true}; return true;
    case 34: out = {"tq1_0", 256, 54, false}; return true;
    case 35: out = {"tq2_0", 256, 66, false}; return true;
    case 39: out = {"mxfp4", 32, 17, true}; return true;
    case 40: out = {"nvfp4", 64, 36, false}; return true;
    case 41: out = {"q1_0", 128, 18, false}; return true;
    case 42: out = {"q2_0", 64, 18, false}; return true;
    default: return false;
  }
}
/// Traits of a type lowbit handles.
constexpr type_traits traits(type t) noexcept {
  type_traits r{"", 1, 1, false};
  traits_of(static_cast<std::uint32_t>(t), r);
  return r;
}
/// Name of a ggml type id, "unknown" for one that names no type.
constexpr const char* type_name(std::uint32_t id) noexcept {
  type_traits r{"unknown", 1, 1, false};
  traits_of(id, r);
  return r.name;
}
/// Bytes of `n` elements of `t` (n a multiple of the block).
constexpr std::uint64_t row_bytes(type t, std::uint64_t n) noexcept {
  const type_traits tr = traits(t);
  return n / static_cast<std::uint64_t>(tr.block) * static_cast<std::uint64_t>(tr.bytes);
}

/// MXFP4's value table, twice the E2M1 values (ggml's kvalues_mxfp4).
inline constexpr std::int8_t mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

namespace detail {

// float -> int32 as x86-64's cvttss2si: truncation, and INT32_MIN for NaN and out-of-range values
// (what ggml's x86-64 build gives where C leaves the conversion undefined).
inline std::int32_t cvtt_i32(float x) noexcept {
  if (!(x > -2147483904.0f && x < 2147483648.0f)) return INT32_MIN;
  return static_cast<std::int32_t>(x);
}
// The same conversion narrowed to 8 bits, as a C cast of a float to int8_t/uint8_t compiles there.
inline std::uint8_t cvtt_u8(float x) noexcept { return static_cast<std::uint8_t>(static_cast<std::uint32_t>(cvtt_i32(x)) & 0xFFu); }
// cvtt_u8(roundf(x)): roundf (half away from zero) without a call into the C library. For
// |x| < 2^31 the fraction x - trunc(x) is exact; larger values, infinities and NaN keep roundf's
// non-integer-range result, which cvtt maps to INT32_MIN (low byte 0).
inline std::uint8_t round_u8(float x) noexcept {
  if (!(x > -2147483520.0f && x < 2147483520.0f)) return cvtt_u8(x);
  std::int32_t i = static_cast<std::int32_t>(x);
  const float frac = x - static_cast<float>(i);
  if (frac >= 0.5f) ++i;
  else if (frac <= -0.5f) --i;
  return static_cast<std::uint8_t>(static_cast<std::uint32_t>(i) & 0xFFu);
}

// 2^(e-128): ggml_e8m0_to_fp32_half.
inline float e8m0_half(std::uint8_t e) noexcept {
  return bits_float(e < 2 ? (0x00200000u << e) : (static_cast<std::uint32_t>(e - 1) << 23));
}

// f32 -> f16 as ggml_compute_fp32_to_fp16: round to nearest even, a NaN becomes sign | 0x7E00.
inline void store_f16(std::uint8_t* p, float v) noexcept {
  const std::uint32_t u = float_bits(v);
  const std::uint16_t h = (u & 0x7FFFFFFFu) > 0x7F800000u ? static_cast<std::uint16_t>(((u >> 16) & 0x8000u) | 0x7E00u) : float_to_f16_bits(v);
  p[0] = static_cast<std::uint8_t>(h);
  p[1] = static_cast<std::uint8_t>(h >> 8);
}
inline float load_f16(const std::uint8_t* p) noexcept {
  return f16_bits_to_float(static_cast<std::uint16_t>(p[0] | (p[1] << 8)));
}

inline void quantize_q8_0(const float* x, std::uint8_t* b) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float a = std::fabs(x[j]);
    amax = amax > a ? amax : a;  // ggml's MAX(amax, fabsf(v))
  }
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  for (int j = 0; j < 32; ++j) b[2 + j] = round_u8(lowbit::detail::opaque(x[j] * id));  // round_u8 subtracts from it
}
inline void quantize_q4_0(const float* x, std::uint8_t* b) noexcept {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  for (int j = 0; j < 16; ++j) {
    // int8_t cast of the sum, then MIN(15, that) as an int, then the low 8 bits.
    const auto q = [&](float v) {
      const int s = static_cast<std::int8_t>(cvtt_u8(lowbit::detail::opaque(v * id) + 8.5f));
      return static_cast<std::uint8_t>(s < 15 ? s : 15);
    };
    b[2 + j] = static_cast<std::uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
  }
}
inline void quantize_q4_1(const float* x, std::uint8_t* b) noexcept {
  float lo = 3.40282347e+38f, hi = -3.40282347e+38f;
  for (int j = 0; j < 32; ++j) {
    if (x[j] < lo) lo = x[j];
    if (x[j] > hi) hi = x[j];
  }
  const float d = (hi - lo) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  store_f16(b + 2, lo);
  for (int j = 0; j < 16; ++j) {
    const auto q = [&](float v) {
      const int s = static_cast<std::int8_t>(cvtt_u8(lowbit::detail::opaque((v - lo) * id) + 0.5f));
      return static_cast<std::uint8_t>(s < 15 ? s : 15);
    };
    b[4 + j] = static_cast<std::uint8_t>(q(x[j]) | (q(x[j + 16]) << 4));
  }
}
inline int mxfp4_best(float x, float d) noexcept {
  int best = 0;
  float best_err = std::fabs(mxfp4_values[0] * d - x);
  for (int i = 1; i < 16; ++i) {
    const float err = std::fabs(mxfp4_values[i] * d - x);
    if (err < best_err) {
      best = i;
      best_err = err;
    }
  }
  return best;
}
inline void quantize_mxfp4(const float* x, std::uint8_t* b) noexcept {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j)
    if (amax < std::fabs(x[j])) amax = std::fabs(x[j]);
  const std::uint8_t e = amax > 0.0f ? cvtt_u8(std::floor(std::log2(amax)) - 2.0f + 127.0f) : 0;
  const float d = e8m0_half(e);
  b[0] = e;
  for (int j = 0; j < 16; ++j) b[1 + j] = static_cast<std::uint8_t>(mxfp4_best(x[j], d) | (mxfp4_best(x[j + 16], d) << 4));
}

#if LOWBIT_HAVE_AVX512_KERNELS
LOWBIT_AVX512_WARNINGS_PUSH
// AVX-512 versions of the four quantizers above: the same float32 operations, one instruction
// each (separate vmulps/vaddps/vsubps, never an FMA: see avx512_rounded), the same truncating
// conversion (vcvttps2dq gives INT32_MIN where cvttss2si does), so the same bytes. io_gguf_test
// compares them with the scalar ones and with ggml's code, near-ties of every rounding included.
// `v` unchanged, opaque to the optimizer: GCC contracts the generic vector operations behind
// _mm512_mul_ps/_mm512_add_ps into an FMA (one rounding instead of two) when the target has FMA,
// as it does a scalar a * b + c; a product that passes through here is rounded on its own.
LOWBIT_AVX512 inline __m512 avx512_rounded(__m512 v) noexcept {
  __asm__("" : "+v"(v));
  return v;
}
LOWBIT_AVX512 inline void avx512_store_nibbles(__m512i lo, __m512i hi, std::uint8_t* out) noexcept {
  // lo/hi: 16 int32 codes each, already in [0, 15]
  const __m128i l = _mm512_cvtepi32_epi8(lo), h = _mm512_cvtepi32_epi8(hi);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_or_si128(l, _mm_slli_epi16(h, 4)));
}
// min(15, (int8_t)cvtt(v)) as ggml's MIN(15, (int8_t)(...)), then the low 8 bits.
LOWBIT_AVX512 inline __m512i avx512_nibble(__m512 v) noexcept {
  const __m512i i = _mm512_cvttps_epi32(v);
  const __m512i s8 = _mm512_srai_epi32(_mm512_slli_epi32(i, 24), 24);  // (int8_t) of the low byte
  return _mm512_and_si512(_mm512_min_epi32(s8, _mm512_set1_epi32(15)), _mm512_set1_epi32(0xFF));
}
LOWBIT_AVX512 inline void avx512_quantize_q4_0(const float* x, std::uint8_t* b) noexcept {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const __m512 a0 = _mm512_abs_ps(x0), a1 = _mm512_abs_ps(x1);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  const __m512 am = _mm512_set1_ps(amax);
  const std::uint32_t hit = static_cast<std::uint32_t>(_mm512_cmpeq_ps_mask(a0, am)) | (static_cast<std::uint32_t>(_mm512_cmpeq_ps_mask(a1, am)) << 16);
  const float max = amax > 0.0f ? x[__builtin_ctz(hit)] : 0.0f;  // the first element of largest magnitude
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  const __m512 vid = _mm512_set1_ps(id), half = _mm512_set1_ps(8.5f);
  avx512_store_nibbles(avx512_nibble(_mm512_add_ps(avx512_rounded(_mm512_mul_ps(x0, vid)), half)),
                       avx512_nibble(_mm512_add_ps(avx512_rounded(_mm512_mul_ps(x1, vid)), half)), b + 2);
}
// The first of the 32 elements (x0: 0-15, x1: 16-31) equal to v, which one of them is.
LOWBIT_AVX512 inline float avx512_first_equal(const float* x, __m512 x0, __m512 x1, float v) noexcept {
  const __m512 vv = _mm512_set1_ps(v);
  const std::uint32_t hit = static_cast<std::uint32_t>(_mm512_cmpeq_ps_mask(x0, vv)) | (static_cast<std::uint32_t>(_mm512_cmpeq_ps_mask(x1, vv)) << 16);
  return x[__builtin_ctz(hit)];
}
LOWBIT_AVX512 inline void avx512_quantize_q4_1(const float* x, std::uint8_t* b) noexcept {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  // The scalar loop keeps the first element equal to the min (max): that decides the sign of a
  // zero, which a vector reduction leaves to the order of its steps.
  const float lo = avx512_first_equal(x, x0, x1, _mm512_reduce_min_ps(_mm512_min_ps(x0, x1)));
  const float hi = avx512_first_equal(x, x0, x1, _mm512_reduce_max_ps(_mm512_max_ps(x0, x1)));
  const float d = (hi - lo) / 15.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  store_f16(b + 2, lo);
  const __m512 vid = _mm512_set1_ps(id), vlo = _mm512_set1_ps(lo), half = _mm512_set1_ps(0.5f);
  avx512_store_nibbles(avx512_nibble(_mm512_add_ps(avx512_rounded(_mm512_mul_ps(_mm512_sub_ps(x0, vlo), vid)), half)),
                       avx512_nibble(_mm512_add_ps(avx512_rounded(_mm512_mul_ps(_mm512_sub_ps(x1, vlo), vid)), half)), b + 4);
}
// round_u8 on 16 lanes: half away from zero where |v| < 2147483520, cvtt's INT32_MIN elsewhere.
LOWBIT_AVX512 inline __m128i avx512_round_i8(__m512 v) noexcept {
  const __m512i i = _mm512_cvttps_epi32(v);
  const __m512 frac = _mm512_sub_ps(v, _mm512_cvtepi32_ps(i));
  const __mmask16 in = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(2147483520.0f), _CMP_LT_OQ);
  const __mmask16 up = _mm512_mask_cmp_ps_mask(in, frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __mmask16 down = _mm512_mask_cmp_ps_mask(in, frac, _mm512_set1_ps(-0.5f), _CMP_LE_OQ);
  __m512i r = _mm512_mask_add_epi32(i, up, i, _mm512_set1_epi32(1));
  r = _mm512_mask_sub_epi32(r, down, r, _mm512_set1_epi32(1));
  return _mm512_cvtepi32_epi8(r);  // the low byte of each
}
LOWBIT_AVX512 inline void avx512_quantize_q8_0(const float* x, std::uint8_t* b) noexcept {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b, d);
  const __m512 vid = _mm512_set1_ps(id);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b + 2), avx512_round_i8(avx512_rounded(_mm512_mul_ps(x0, vid))));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b + 18), avx512_round_i8(avx512_rounded(_mm512_mul_ps(x1, vid))));
}
// True if x[0..n) holds no NaN or Inf (an exponent field of all ones).
LOWBIT_AVX512 inline bool avx512_all_finite(const float* x, std::int64_t n) noexcept {
  const __m512i e = _mm512_set1_epi32(0x7F800000);
  __mmask16 bad = 0;
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) bad |= _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_loadu_si512(x + i), e), e);
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    bad |= _mm512_mask_cmpeq_epi32_mask(m, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), e), e);
  }
  return bad == 0;
}
// MXFP4's nearest-code search on 16 lanes: the same |kv*d - x| in the same order, a code
// replacing the best only when strictly nearer (so the lower code wins ties, as in mxfp4_best).
LOWBIT_AVX512 inline __m128i avx512_mxfp4_codes(__m512 x, float d) noexcept {
  __m512i best = _mm512_setzero_si512();
  // kv * d is exact (a small integer times a power of two), so no contraction can change it.
  __m512 best_err = _mm512_abs_ps(_mm512_sub_ps(_mm512_set1_ps(static_cast<float>(mxfp4_values[0]) * d), x));
  for (int i = 1; i < 16; ++i) {
    const __m512 err = _mm512_abs_ps(_mm512_sub_ps(_mm512_set1_ps(static_cast<float>(mxfp4_values[i]) * d), x));
    const __mmask16 nearer = _mm512_cmp_ps_mask(err, best_err, _CMP_LT_OQ);
    best = _mm512_mask_mov_epi32(best, nearer, _mm512_set1_epi32(i));
    best_err = _mm512_mask_mov_ps(best_err, nearer, err);
  }
  return _mm512_cvtepi32_epi8(best);
}
LOWBIT_AVX512 inline void avx512_quantize_mxfp4(const float* x, std::uint8_t* b) noexcept {
  const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
  const std::uint8_t e = amax > 0.0f ? cvtt_u8(std::floor(std::log2(amax)) - 2.0f + 127.0f) : 0;
  const float d = e8m0_half(e);
  b[0] = e;
  const __m128i lo = avx512_mxfp4_codes(x0, d), hi = avx512_mxfp4_codes(x1, d);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(b + 1), _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
}
// AVX-512 versions of dequantize_block: the same float32 operations (an int or table value
// converted exactly, one product, for q4_1 one sum: no FMA), so the same bits; compared with the
// scalar ones over random block bytes (NaN/Inf/subnormal scales included) in io_gguf_test.
LOWBIT_AVX512 inline void avx512_dequantize_block(type t, const std::uint8_t* b, float* y) noexcept {
  if (t == type::q8_0) {
    const __m512 d = _mm512_set1_ps(load_f16(b));
    const __m512i q0 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)));
    const __m512i q1 = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18)));
    _mm512_storeu_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
    _mm512_storeu_ps(y + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
    return;
  }
  const int off = t == type::q4_1 ? 4 : t == type::q4_0 ? 2 : 1;
  const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + off)));
  const __m512i lo = _mm512_and_si512(q, _mm512_set1_epi32(15)), hi = _mm512_srli_epi32(q, 4);
  __m512 v0, v1, d;
  if (t == type::mxfp4) {
    alignas(64) static constexpr float table[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    const __m512 tv = _mm512_load_ps(table);
    v0 = _mm512_permutexvar_ps(lo, tv), v1 = _mm512_permutexvar_ps(hi, tv), d = _mm512_set1_ps(e8m0_half(b[0]));
  } else if (t == type::q4_0) {
    const __m512i eight = _mm512_set1_epi32(8);
    v0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, eight)), v1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, eight)), d = _mm512_set1_ps(load_f16(b));
  } else {  // q4_1: opaque(q * d) + m, as the scalar code
    v0 = _mm512_cvtepi32_ps(lo), v1 = _mm512_cvtepi32_ps(hi), d = _mm512_set1_ps(load_f16(b));
    const __m512 m = _mm512_set1_ps(load_f16(b + 2));
    _mm512_storeu_ps(y, _mm512_add_ps(avx512_rounded(_mm512_mul_ps(v0, d)), m));
    _mm512_storeu_ps(y + 16, _mm512_add_ps(avx512_rounded(_mm512_mul_ps(v1, d)), m));
    return;
  }
  _mm512_storeu_ps(y, _mm512_mul_ps(v0, d));
  _mm512_storeu_ps(y + 16, _mm512_mul_ps(v1, d));
}
LOWBIT_AVX512_WARNINGS_POP
#endif

inline void dequantize_block(type t, const std::uint8_t* b, float* y) noexcept {
  switch (t) {
    case type::q8_0: {
      const float d = load_f16(b);
      for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<std::int8_t>(b[2 + j])) * d;
      break;
    }
    case type::q4_0: {
      const float d = load_f16(b);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((b[2 + j] & 15) - 8) * d;
        y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
      }
      break;
    }
    case type::q4_1: {
      const float d = load_f16(b), m = load_f16(b + 2);
      for (int j = 0; j < 16; ++j) {
        y[j] = lowbit::detail::opaque(static_cast<float>(b[4 + j] & 15) * d) + m;
        y[j + 16] = lowbit::detail::opaque(static_cast<float>(b[4 + j] >> 4) * d) + m;
      }
      break;
    }
    case type::mxfp4: {
      const float d = e8m0_half(b[0]);
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(mxfp4_values[b[1 + j] & 15]) * d;
        y[j + 16] = static_cast<float>(mxfp4_values[b[1 + j] >> 4]) * d;
      }
      break;
    }
    default: break;
  }
}

inline status check_count(type t, std::int64_t n, const char* what) {
  const type_traits tr = traits(t);
  if (n < 0) return status::error(errc::invalid_argument, "%s: negative element count %lld", what, static_cast<long long>(n));
  if (n % tr.block != 0)
    return status::error(errc::invalid_argument, "%s: %lld elements is not a whole number of %s blocks of %d (ggml stores no partial block)", what,
                         static_cast<long long>(n), tr.name, tr.block);
  return {};
}

}  // namespace detail

/// Quantizes `n` float32 values (a multiple of the type's block; rows of a tensor are simply
/// consecutive) into `out` (row_bytes(t, n) bytes), on up to `threads` threads (0 = all), with
/// the AVX-512 kernels where the CPU has them and `simd` is true (the same bytes either way).
/// Errors, with nothing written: a type not handled, n not a multiple of the block, null
/// pointers, NaN/Inf in `x` for a block type (errc::non_finite, naming the first such index).
/// F16/BF16 round to nearest even; a finite value past the type's range becomes Inf; a NaN stays a
/// NaN with its sign (F16: sign | 0x7E00; BF16: the top 16 bits with the quiet bit set; ggml's rules).
inline status quantize(type t, const float* x, std::int64_t n, void* out, int threads = 0, bool simd = true) {
  (void)simd;
  type_traits tr{};
  if (!traits_of(static_cast<std::uint32_t>(t), tr) || !tr.handled)
    return status::error(errc::unsupported, "ggml::quantize: ggml type %u (%s) is not handled", static_cast<unsigned>(t), type_name(static_cast<std::uint32_t>(t)));
  LOWBIT_TRY(detail::check_count(t, n, "ggml::quantize"));
  if (n > 0 && (x == nullptr || out == nullptr)) return status::error(errc::invalid_argument, "ggml::quantize: null %s", x == nullptr ? "x" : "out");
  if (tr.block > 1) {  // the first non-finite element, found on every thread
    std::atomic<std::int64_t> first{n};
    host::parallel_for(n, std::int64_t{1} << 16, 1, threads, [&](std::int64_t b, std::int64_t e) {
#if LOWBIT_HAVE_AVX512_KERNELS
      if (simd && host::avx512::available() && detail::avx512_all_finite(x + b, e - b)) return;
#endif
      for (std::int64_t i = b; i < e; ++i)
        if (!std::isfinite(x[i])) {
          std::int64_t cur = first.load();
          while (i < cur && !first.compare_exchange_weak(cur, i)) {
          }
          return;
        }
    });
    const std::int64_t i = first.load();
    if (i < n)
      return status::error(errc::non_finite, "ggml::quantize: x[%lld] is %s; ggml's %s result for it is undefined", static_cast<long long>(i), std::isnan(x[i]) ? "NaN" : "Inf",
                           tr.name);
  }
  auto* o = static_cast<std::uint8_t*>(out);
#if LOWBIT_HAVE_AVX512_KERNELS
  if (simd && host::avx512::available() && tr.block > 1) {
    host::parallel_for(n / tr.block, 4096, 1, threads, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float* xi = x + i * tr.block;
        std::uint8_t* oi = o + i * tr.bytes;
        if (t == type::q8_0) detail::avx512_quantize_q8_0(xi, oi);
        else if (t == type::q4_0) detail::avx512_quantize_q4_0(xi, oi);
        else if (t == type::q4_1) detail::avx512_quantize_q4_1(xi, oi);
        else detail::avx512_quantize_mxfp4(xi, oi);
      }
    });
    return {};
  }
#endif
  host::parallel_for(n / tr.block, 4096, 1, threads, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const float* xi = x + i * tr.block;
      std::uint8_t* oi = o + i * tr.bytes;
      switch (t) {
        case type::f32: std::memcpy(oi, xi, 4); break;
        case type::f16: detail::store_f16(oi, *xi); break;
        case type::bf16: {  // ggml_compute_fp32_to_bf16: a NaN keeps its sign and top payload, quieted
          const std::uint32_t u = float_bits(*xi);
          const std::uint16_t h = (u & 0x7FFFFFFFu) > 0x7F800000u ? static_cast<std::uint16_t>((u >> 16) | 64u) : float_to_bf16_bits(*xi);
          oi[0] = static_cast<std::uint8_t>(h);
          oi[1] = static_cast<std::uint8_t>(h >> 8);
          break;
        }
        case type::q8_0: detail::quantize_q8_0(xi, oi); break;
        case type::q4_0: detail::quantize_q4_0(xi, oi); break;
        case type::q4_1: detail::quantize_q4_1(xi, oi); break;
        case type::mxfp4: detail::quantize_mxfp4(xi, oi); break;
      }
    }
  });
  return {};
}

/// Dequantizes `n` elements of type `t` at `in` (row_bytes(t, n) bytes) into float32 `y`, on up
/// to `threads` threads, with the AVX-512 kernels where the CPU has them and `simd` is true (the
/// same bits either way). Any bytes are accepted (see the file comment). Errors: a type not
/// handled, n not a multiple of the block, null pointers.
inline status dequantize(type t, const void* in, std::int64_t n, float* y, int threads = 0, bool simd = true) {
  (void)simd;
  type_traits tr{};
  if (!traits_of(static_cast<std::uint32_t>(t), tr) || !tr.handled)
    return status::error(errc::unsupported, "ggml::dequantize: ggml type %u (%s) is not handled", static_cast<unsigned>(t), type_name(static_cast<std::uint32_t>(t)));
  LOWBIT_TRY(detail::check_count(t, n, "ggml::dequantize"));
  if (n > 0 && (in == nullptr || y == nullptr)) return status::error(errc::invalid_argument, "ggml::dequantize: null %s", in == nullptr ? "in" : "y");
  const auto* p = static_cast<const std::uint8_t*>(in);
#if LOWBIT_HAVE_AVX512_KERNELS
  if (simd && host::avx512::available() && tr.block > 1) {
    host::parallel_for(n / tr.block, 4096, 1, threads, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) detail::avx512_dequantize_block(t, p + i * tr.bytes, y + i * tr.block);
    });
    return {};
  }
#endif
  host::parallel_for(n / tr.block, 4096, 1, threads, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const std::uint8_t* pi = p + i * tr.bytes;
      float* yi = y + i * tr.block;
      switch (t) {
        case type::f32: std::memcpy(yi, pi, 4); break;
        case type::f16: *yi = detail::load_f16(pi); break;
        case type::bf16: *yi = bf16_bits_to_float(static_cast<std::uint16_t>(pi[0] | (pi[1] << 8))); break;
        default: detail::dequantize_block(t, pi, yi); break;
      }
    }
  });
  return {};
}

}  // namespace ggml
LOWBIT_NAMESPACE_END
