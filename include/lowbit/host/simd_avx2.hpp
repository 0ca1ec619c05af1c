// SPDX-License-Identifier: Apache-2.0
/// @file simd_avx2.hpp
/// @brief AVX2 kernels of the host engine, selected at run time (`available()`); every function
///        processes a prefix of its range and returns how many elements it handled, leaving the
///        rest to the portable code, so results never depend on the path. On other compilers or
///        CPUs `available()` is false and every function handles nothing.
///
/// The kernels evaluate exactly the formulas of quant/blockwise.hpp: one IEEE multiply per
/// element, comparisons against the codecs' own thresholds, integer rounding for minifloats.
/// They are compiled without FMA, so nothing can be contracted.
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../dtype.hpp"
#include "../format.hpp"
#include "../quant/blockwise.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(LOWBIT_NO_SIMD)
#  define LOWBIT_HAVE_AVX2_KERNELS 1
#  include <cpuid.h>
#  include <immintrin.h>
#  define LOWBIT_AVX2 __attribute__((target("avx2,f16c")))
// error_sums only: its fused multiply-adds are part of measure_error's definition. Kept off the
// other kernels, where GCC would otherwise be free to contract a multiply and an add.
#  define LOWBIT_AVX2_FMA __attribute__((target("avx2,fma,f16c")))
#else
#  define LOWBIT_HAVE_AVX2_KERNELS 0
#endif

LOWBIT_NAMESPACE_BEGIN
namespace host {
namespace avx2 {

/// Bytes ahead of a long sequential read that its loop prefetches (detail::prefetch_ahead), the
/// one distance of every streaming kernel (kernels that take an element count pass
/// stream_ahead / sizeof(T)). On this project's Xeon (a VM) the hardware prefetchers leave such
/// a read waiting on memory: a bfloat16 -> e4m3fn conversion took 25 ms for 64M elements
/// without, 8.4 ms with. For float32 -> e2m1fn, 2-16 KiB ahead did equally well (14.8-15.4 ms),
/// 1 KiB less so (16.4-18.7 ms).
inline constexpr std::uintptr_t stream_ahead = 4096;

/// The magnitude bits of an e4m3fn / e5m2 code that are all set exactly in its NaN and Inf codes:
/// e4m3fn 0x7F (its one NaN magnitude), e5m2 0x7C (exponent 31: Inf and NaN).
template <format F>
constexpr int special_magnitude_bits() {
  using codec = typename quant::scheme<F>::codec;
  return codec::has_inf ? 0x7F & ~((1 << codec::mantissa_bits) - 1) : 0x7F;
}

#if LOWBIT_HAVE_AVX2_KERNELS

/// True if this CPU runs the AVX2 kernels.
inline bool available() noexcept {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool f16c = ((c >> 29) & 1u) != 0;  // clang 14 does not know __builtin_cpu_supports("f16c")
    const bool fma = ((c >> 12) & 1u) != 0;   // every AVX2 CPU has it; error_sums uses it
    return f16c && fma && __builtin_cpu_supports("avx2");
  }();
  return ok;
}

namespace detail {

/// Prefetches the `bytes` bytes `ahead` bytes past `at`, one line per 64 bytes, by default into
/// L2 (_MM_HINT_T1). Prefetches never fault, so the address may lie past the end of the input.
/// L2 rather than L1: float32 -> e2m1fn / e4m3fn conversions of 64M elements took 15.0-15.3 ms
/// with T1 or T2 against 17.0-17.4 ms with T0 (and 22-24 ms with NTA), 4 KiB ahead.
template <decltype(_MM_HINT_T1) Hint = _MM_HINT_T1>
inline void prefetch_ahead(const void* at, std::uintptr_t ahead, std::size_t bytes) noexcept {
  const std::uintptr_t a = reinterpret_cast<std::uintptr_t>(at) + ahead;
  std::size_t k = 0;
  do {
    _mm_prefetch(reinterpret_cast<const char*>(a + k), Hint);
    k += 64;
  } while (k < bytes);
}

/// For a loop that reads a stream at base + offset in steps of `step` <= 64 bytes (codes that a
/// decoder reads from memory): prefetch_ahead one line, stream_ahead ahead, on the step that
/// starts each 64 bytes of the stream. One prefetch per 8- or 16-byte block had cost more than
/// it saved (nvfp4 -> bf16 fell from about 105% of memcpy to 96%).
inline void prefetch_stream_step(const void* base, std::uintptr_t offset, std::uintptr_t step) noexcept {
  if ((offset & 63) < step) prefetch_ahead(static_cast<const char*>(base) + offset, stream_ahead, 1);
}

// 8 consecutive elements widened to float32.
LOWBIT_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
LOWBIT_AVX2 inline __m256 load8(const f16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
LOWBIT_AVX2 inline __m256 load8(const bf16* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

// All-ones lanes where v is NaN or +-Inf.
LOWBIT_AVX2 inline __m256i nonfinite_mask(__m256 v) {
  const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7F800000));
  return _mm256_cmpeq_epi32(e, _mm256_set1_epi32(0x7F800000));
}

LOWBIT_AVX2 inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
LOWBIT_AVX2 inline float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// Stores 8 float32 results as T (round to nearest even; NaN -> 0x7FFF for 16-bit outputs).
LOWBIT_AVX2 inline void store8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
LOWBIT_AVX2 inline __m128i nan_fix16(__m256 v, __m128i h) {
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  const __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan), _mm256_extracti128_si256(nan, 1));
  return _mm_blendv_epi8(h, _mm_set1_epi16(0x7FFF), nan16);
}
LOWBIT_AVX2 inline void store8(f16* p, __m256 v) {
  const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), nan_fix16(v, h));
}
LOWBIT_AVX2 inline void store8(bf16* p, __m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), nan_fix16(v, h));
}

// One 32-byte store: non-temporal when Stream (p must then be 32-byte aligned; the data goes
// to memory without the line being read first, and is ordered only by store_fence()).
template <bool Stream>
LOWBIT_AVX2 inline void put32(void* p, __m256i v) {
  if constexpr (Stream) _mm256_stream_si256(static_cast<__m256i*>(p), v);
  else _mm256_storeu_si256(static_cast<__m256i*>(p), v);
}

// Stores 16 float32 results (a: elements 0..7, b: 8..15) as T, one 256-bit store for 16-bit T.
template <bool Stream = false>
LOWBIT_AVX2 inline void store16(float* p, __m256 a, __m256 b) {
  put32<Stream>(p, _mm256_castps_si256(a));
  put32<Stream>(p + 8, _mm256_castps_si256(b));
}
LOWBIT_AVX2 inline __m256i bf16_round(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
}
// 16 16-bit lanes of a (0..7) and b (8..15) in order, NaN lanes replaced by 0x7FFF.
LOWBIT_AVX2 inline __m256i pack16_nanfix(__m256i ra, __m256i rb, __m256 a, __m256 b) {
  const __m256i r = _mm256_permute4x64_epi64(_mm256_packus_epi32(ra, rb), 0xD8);
  const __m256i na = _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  const __m256i nb = _mm256_castps_si256(_mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  const __m256i nan = _mm256_permute4x64_epi64(_mm256_packs_epi32(na, nb), 0xD8);
  return _mm256_blendv_epi8(r, _mm256_set1_epi16(0x7FFF), nan);
}
template <bool Stream = false>
LOWBIT_AVX2 inline void store16(bf16* p, __m256 a, __m256 b) {
  put32<Stream>(p, pack16_nanfix(bf16_round(a), bf16_round(b), a, b));
}
template <bool Stream = false>
LOWBIT_AVX2 inline void store16(f16* p, __m256 a, __m256 b) {
  const __m128i ha = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m128i hb = _mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256i r = _mm256_set_m128i(hb, ha);
  const __m256i na = _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q));
  const __m256i nb = _mm256_castps_si256(_mm256_cmp_ps(b, b, _CMP_UNORD_Q));
  const __m256i nan = _mm256_permute4x64_epi64(_mm256_packs_epi32(na, nb), 0xD8);
  put32<Stream>(p, _mm256_blendv_epi8(r, _mm256_set1_epi16(0x7FFF), nan));
}

// Count of thresholds t[i] (i < N) strictly below each lane of v, as int32 lanes.
template <int N>
LOWBIT_AVX2 inline __m256i count_below(__m256 v, const __m256* t) {
  __m256i c = _mm256_setzero_si256();
  for (int i = 0; i < N; ++i) c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps(v, t[i], _CMP_GT_OQ)));
  return c;
}

// Saturating round-to-nearest-even float32 -> minifloat code for finite lanes (no NaN):
// Minifloat is a codecs::minifloat with subnormals; returns int32 codes.
template <class Minifloat>
LOWBIT_AVX2 inline __m256i minifloat_codes(__m256 v) {
  constexpr int M = Minifloat::mantissa_bits;
  constexpr int shift = 23 - M;
  constexpr int emin = Minifloat::min_exponent;
  const __m256i u = _mm256_castps_si256(v);
  const __m256i sign = _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256i a = _mm256_xor_si256(u, sign);
  // normal range: add the rounding bias (ties to even) and rebias the exponent
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, shift), _mm256_set1_epi32(1));
  const __m256i rebias = _mm256_set1_epi32(static_cast<int>(static_cast<unsigned>(Minifloat::bias - 127) << 23));
  const __m256i nrm = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(a, rebias), _mm256_add_epi32(_mm256_set1_epi32((1 << (shift - 1)) - 1), odd)),
      shift);
  // subnormal range: let the float adder round |v| to a multiple of 2^(emin - M)
  const __m256 magic = _mm256_castsi256_ps(_mm256_set1_epi32((127 + emin + 23 - M) << 23));
  const __m256i sub = _mm256_sub_epi32(_mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(a), magic)),
                                       _mm256_castps_si256(magic));
  const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32((127 + emin) << 23), a);
  __m256i code = _mm256_blendv_epi8(nrm, sub, is_sub);
  // saturate: anything that rounded above the largest finite code (or was Inf) becomes it
  code = _mm256_min_epu32(code, _mm256_set1_epi32(static_cast<int>(Minifloat::max_magnitude_code)));
  // a huge magnitude can wrap the rebiased add only above 2^128, i.e. never for finite floats
  return _mm256_or_si256(code, _mm256_srli_epi32(sign, 31 - (Minifloat::bits - 1)));
}

// Packs 8 int32 codes (0..255) into 8 bytes at p.
LOWBIT_AVX2 inline void store_bytes8(std::uint8_t* p, __m256i c) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(w, w));
}
// Packs 16 int32 4-bit codes (c0: elements 0..7, c1: 8..15) into 8 bytes at p.
template <codecs::nibble_order Order>
LOWBIT_AVX2 inline void store_nibbles16(std::uint8_t* p, __m256i c0, __m256i c1) {
  const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(c0), _mm256_extracti128_si256(c0, 1));
  const __m128i w1 = _mm_packus_epi32(_mm256_castsi256_si128(c1), _mm256_extracti128_si256(c1, 1));
  const __m128i b = _mm_packus_epi16(w, w1);  // 16 bytes, one code each, element order
  // even elements and odd elements
  const __m128i even = _mm_and_si128(b, _mm_set1_epi16(0x00FF));
  const __m128i oddv = _mm_srli_epi16(b, 8);
  const __m128i pair = Order == codecs::nibble_order::high_first ? _mm_or_si128(_mm_slli_epi16(even, 4), oddv)
                                                                 : _mm_or_si128(even, _mm_slli_epi16(oddv, 4));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(pair, pair));
}

// Codes of 8 normalized values of format F (x already multiplied by the block's inv).
template <format F>
LOWBIT_AVX2 inline __m256i codes8(__m256 v, const __m256* thr) {
  if constexpr (F == format::nf4) {
    // binary search over the 15 sorted thresholds: T7; then T3/T11; T1/5/9/13; T0/2/.../14
    // (thr[0] = T7, thr[1] = T3, thr[2] = T11, thr[3] = {T1,T5,T9,T13,..}, thr[4] = {T0,T2,...,T14})
    const __m256i eight = _mm256_set1_epi32(8);
    __m256i idx = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(v, thr[0], _CMP_GT_OQ)), eight);
    const __m256 t1 = _mm256_blendv_ps(thr[1], thr[2], _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    idx = _mm256_add_epi32(idx, _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(v, t1, _CMP_GT_OQ)), _mm256_set1_epi32(4)));
    const __m256 t2 = _mm256_permutevar8x32_ps(thr[3], _mm256_srli_epi32(idx, 2));
    idx = _mm256_add_epi32(idx, _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(v, t2, _CMP_GT_OQ)), _mm256_set1_epi32(2)));
    const __m256 t3 = _mm256_permutevar8x32_ps(thr[4], _mm256_srli_epi32(idx, 1));
    return _mm256_sub_epi32(idx, _mm256_castps_si256(_mm256_cmp_ps(v, t3, _CMP_GT_OQ)));
  } else if constexpr (F == format::bnb_fp4) {
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    const __m256i rank = count_below<7>(a, thr);
    const __m256i code = _mm256_permutevar8x32_epi32(_mm256_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3), rank);
    const __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    return _mm256_or_si256(code, _mm256_and_si256(neg, _mm256_set1_epi32(8)));
  } else if constexpr (F == format::bnb_dynamic8) {
    // codecs::detail::bnb_dynamic8_search on 8 lanes: the same steps, with selects for branches
    // and gathers for table reads. lo_val/hi_val of the scalar search are always the table
    // entries at lo/hi, so only the indices are carried.
    (void)thr;
    const int* table = reinterpret_cast<const int*>(codecs::detail::bnb_dynamic8_value_bits);
    __m256i pivot = _mm256_set1_epi32(127), lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(255);
    __m256 t = _mm256_set1_ps(codecs::bnb_dynamic8::decode(127));
    for (int step = 64; step > 0; step >>= 1) {
      const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(v, t, _CMP_GT_OQ));
      lo = _mm256_blendv_epi8(lo, pivot, up);
      hi = _mm256_blendv_epi8(pivot, hi, up);
      pivot = _mm256_add_epi32(pivot, _mm256_blendv_epi8(_mm256_set1_epi32(-step), _mm256_set1_epi32(step), up));
      t = _mm256_castsi256_ps(_mm256_i32gather_epi32(table, pivot, 4));
    }
    // the nearer of the pivot and its neighbour on v's side, by their float32 midpoint
    const __m256i up = _mm256_castps_si256(_mm256_cmp_ps(v, t, _CMP_GT_OQ));
    const __m256i side = _mm256_blendv_epi8(lo, hi, up);
    const __m256 mid = _mm256_mul_ps(_mm256_add_ps(_mm256_castsi256_ps(_mm256_i32gather_epi32(table, side, 4)), t), _mm256_set1_ps(0.5f));
    const __m256i beyond = _mm256_blendv_epi8(_mm256_castps_si256(_mm256_cmp_ps(v, mid, _CMP_LT_OQ)),
                                              _mm256_castps_si256(_mm256_cmp_ps(v, mid, _CMP_GT_OQ)), up);
    return _mm256_blendv_epi8(pivot, side, beyond);
  } else if constexpr (F == format::int8_absmax) {
    const __m256 c = _mm256_max_ps(_mm256_min_ps(v, _mm256_set1_ps(127.0f)), _mm256_set1_ps(-127.0f));
    const __m256i q = _mm256_cvtps_epi32(_mm256_round_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return _mm256_and_si256(q, _mm256_set1_epi32(0xFF));
  } else {
    return minifloat_codes<typename quant::scheme<F>::codec>(v);
  }
}

// The threshold vectors of codes8<nf4>'s binary search.
LOWBIT_AVX2 inline void nf4_search_thresholds(__m256* thr) {
  auto t = [](int i) { return codecs::nf4::threshold(i); };
  thr[0] = _mm256_set1_ps(t(7));
  thr[1] = _mm256_set1_ps(t(3));
  thr[2] = _mm256_set1_ps(t(11));
  thr[3] = _mm256_setr_ps(t(1), t(5), t(9), t(13), t(13), t(13), t(13), t(13));
  thr[4] = _mm256_setr_ps(t(0), t(2), t(4), t(6), t(8), t(10), t(12), t(14));
}

// decode_element of quant/blockwise.hpp on 8 table values.
template <format F>
LOWBIT_AVX2 inline __m256 finish(__m256 t, __m256 scale, __m256 zp) {
  if constexpr (F == format::uint8_zeropoint) t = _mm256_sub_ps(t, zp);
  t = _mm256_mul_ps(t, scale);
  if constexpr (F == format::int8_absmax) t = _mm256_mul_ps(t, _mm256_set1_ps(quant::int8_dequant_factor));
  return t;
}

/// Formats with run encoders (encode_block, encode_run); none has a zero point.
template <format F>
constexpr bool has_encode_kernel() {
  return F == format::nf4 || F == format::bnb_fp4 || F == format::bnb_dynamic8 || F == format::int8_absmax ||
         F == format::e4m3fn || F == format::e5m2 || F == format::e2m1fn;
}

}  // namespace detail

/// Block statistics of the first floor(n/8)*8 elements of x, merged into st; -1 if one of them is
/// not finite (st is then unspecified).
template <class T>
LOWBIT_AVX2 std::int64_t block_stats(const T* x, std::int64_t n, quant::block_stats& st) {
  const std::int64_t m = n & ~std::int64_t{7};
  if (m == 0) return 0;
  __m256 amax = _mm256_setzero_ps(), lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  __m256i bad = _mm256_setzero_si256();
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (std::int64_t i = 0; i < m; i += 8) {
    // long blocks (per tensor, per row) stream from memory: read ahead (see stream_ahead)
    detail::prefetch_ahead(x + i, stream_ahead, 1);
    const __m256 v = detail::load8(x + i);
    bad = _mm256_or_si256(bad, detail::nonfinite_mask(v));
    amax = _mm256_max_ps(_mm256_and_ps(v, abs_mask), amax);
    lo = _mm256_min_ps(v, lo);
    hi = _mm256_max_ps(v, hi);
  }
  if (!_mm256_testz_si256(bad, bad)) return -1;
  quant::block_stats s;
  s.absmax = detail::hmax(amax);
  s.lo = detail::hmin(lo);
  s.hi = detail::hmax(hi);
  st.merge(s);
  return m;
}

/// Encodes a prefix of the n elements of one block (n counted from an even element for 4-bit
/// formats); returns how many it encoded (a multiple of 16, or 0 for formats without a kernel and
/// for zero blocks).
template <format F, class T>
LOWBIT_AVX2 std::int64_t encode_block(const T* x, std::int64_t n, const quant::block_encoder& e, std::uint8_t* out) {
  if constexpr (!detail::has_encode_kernel<F>()) {
    (void)x, (void)n, (void)e, (void)out;
    return 0;
  } else {
    if (e.zero) return 0;
    __m256 thr[15];
    if constexpr (F == format::nf4) {
      detail::nf4_search_thresholds(thr);
    } else if constexpr (F == format::bnb_fp4) {
      for (int i = 0; i < 7; ++i) thr[i] = _mm256_set1_ps(codecs::bnb_fp4::threshold(i));
    }
    const __m256 inv = _mm256_set1_ps(e.inv);
    const std::int64_t m = n & ~std::int64_t{15};
    for (std::int64_t i = 0; i < m; i += 16) {
      detail::prefetch_ahead(x + i, stream_ahead, 1);
      const __m256i c0 = detail::codes8<F>(_mm256_mul_ps(detail::load8(x + i), inv), thr);
      const __m256i c1 = detail::codes8<F>(_mm256_mul_ps(detail::load8(x + i + 8), inv), thr);
      if constexpr (info(F).bits == 4) {
        detail::store_nibbles16<info(F).order>(out + i / 2, c0, c1);
      } else {
        detail::store_bytes8(out + i, c0);
        detail::store_bytes8(out + i + 8, c1);
      }
    }
    return m;
  }
}

/// Decodes a prefix of the n elements of one block whose codes start at `codes` (byte aligned);
/// returns how many it decoded (a multiple of 16).
template <format F, class T>
LOWBIT_AVX2 std::int64_t decode_block(const std::uint8_t* codes, std::int64_t n, const float* table, float scale,
                                      int zp, T* out) {
  const std::int64_t m = n & ~std::int64_t{15};
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 z = _mm256_set1_ps(static_cast<float>(zp));
  if constexpr (info(F).bits == 4) {
    const __m256 lut_lo = _mm256_loadu_ps(table), lut_hi = _mm256_loadu_ps(table + 8);
    for (std::int64_t i = 0; i < m; i += 16) {
      const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i / 2));
      const __m128i hi4 = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
      const __m128i lo4 = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
      // element order: high_first -> (hi, lo) per byte; low_first -> (lo, hi)
      const __m128i idx = info(F).order == codecs::nibble_order::high_first ? _mm_unpacklo_epi8(hi4, lo4)
                                                                            : _mm_unpacklo_epi8(lo4, hi4);
      for (int h = 0; h < 2; ++h) {
        const __m256i k = _mm256_cvtepu8_epi32(h == 0 ? idx : _mm_srli_si128(idx, 8));
        const __m256 lo = _mm256_permutevar8x32_ps(lut_lo, k);
        const __m256 hi = _mm256_permutevar8x32_ps(lut_hi, k);
        const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(k, 28));  // bit 3 -> sign bit
        detail::store8(out + i + 8 * h, detail::finish<F>(_mm256_blendv_ps(lo, hi, sel), s, z));
      }
    }
  } else {
    for (std::int64_t i = 0; i < m; i += 8) {
      const __m256i k = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
      detail::store8(out + i, detail::finish<F>(_mm256_i32gather_ps(table, k, 4), s, z));
    }
  }
  return m;
}

/// Statistics of `nblocks` consecutive full blocks of `bs` elements (bs a multiple of 16) into
/// st[0 .. nblocks): max |x| only (lo and hi stay 0), which is all the formats with a run encoder
/// (detail::has_encode_kernel, no zero point) need. Returns false if any element is NaN or Inf
/// (st is then unspecified and the caller rescans with the portable code).
template <class T>
LOWBIT_AVX2 bool stats_run(const T* x, std::int64_t nblocks, std::int64_t bs, quant::block_stats* st) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i all = _mm256_setzero_si256();
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const T* p = x + b * bs;
    // max of |x| as integers: the order of non-negative floats, with NaN/Inf above every finite
    __m256i amax = _mm256_setzero_si256();
    for (std::int64_t i = 0; i < bs; i += 16) {
      const __m256 v0 = detail::load8(p + i), v1 = detail::load8(p + i + 8);
      amax = _mm256_max_epu32(amax, _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(v0), abs_mask),
                                                     _mm256_and_si256(_mm256_castps_si256(v1), abs_mask)));
    }
    all = _mm256_max_epu32(all, amax);
    quant::block_stats s;
    s.absmax = detail::hmax(_mm256_castsi256_ps(amax));
    st[b] = s;
  }
  // any lane at or above the Inf pattern held a non-finite element
  const __m256i bad = _mm256_cmpgt_epi32(all, _mm256_set1_epi32(0x7F7FFFFF));
  return _mm256_testz_si256(bad, bad) != 0;
}

/// Encodes `nblocks` full blocks of `bs` elements (bs a multiple of 16, the first element even)
/// with block b's encoder enc[b]; zero blocks get the format's zero code. With `prefetch_ahead`
/// > 0 it also prefetches the input that many elements past each position it reads: the engine
/// passes the distance to the next chunk, which the statistics pass reads next (while this pass
/// works from the cache the hardware prefetcher idles, and that chunk would start cold).
template <format F, class T>
LOWBIT_AVX2 void encode_run(const T* x, std::int64_t nblocks, std::int64_t bs, const quant::block_encoder* enc,
                            std::uint8_t* out, std::int64_t prefetch_ahead = 0) {
  static_assert(detail::has_encode_kernel<F>(), "encode_run: no run encoder for this format");
  const std::uintptr_t ahead = prefetch_ahead > 0 ? static_cast<std::uintptr_t>(prefetch_ahead) * sizeof(T) : 0;
  constexpr bool four = info(F).bits == 4;
  __m256 thr[15];
  if constexpr (F == format::nf4) {
    detail::nf4_search_thresholds(thr);
  } else if constexpr (F == format::bnb_fp4) {
    for (int i = 0; i < 7; ++i) thr[i] = _mm256_set1_ps(codecs::bnb_fp4::threshold(i));
  }
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const T* p = x + b * bs;
    std::uint8_t* o = four ? out + b * bs / 2 : out + b * bs;
    if (enc[b].zero) {
      std::memset(o, quant::scheme<F>::zero_byte, static_cast<std::size_t>(four ? bs / 2 : bs));
      if (ahead) detail::prefetch_ahead(p, ahead, static_cast<std::size_t>(bs) * sizeof(T));
      continue;
    }
    const __m256 inv = _mm256_set1_ps(enc[b].inv);
    for (std::int64_t i = 0; i < bs; i += 16) {
      if (ahead) detail::prefetch_ahead(p + i, ahead, 16 * sizeof(T));
      const __m256i c0 = detail::codes8<F>(_mm256_mul_ps(detail::load8(p + i), inv), thr);
      const __m256i c1 = detail::codes8<F>(_mm256_mul_ps(detail::load8(p + i + 8), inv), thr);
      if constexpr (four) {
        detail::store_nibbles16<info(F).order>(o + i / 2, c0, c1);
      } else {
        detail::store_bytes8(o + i, c0);
        detail::store_bytes8(o + i + 8, c1);
      }
    }
  }
}

namespace detail {

// 16 float32 -> 16-bit codes for a per-block lookup table: bytes split into a low-byte table and a
// high-byte table (each 16 bytes, broadcast to both 128-bit lanes) for _mm256_shuffle_epi8.
template <class T>
LOWBIT_AVX2 inline void byte_tables(__m256 v0, __m256 v1, __m256i& lo, __m256i& hi) {
  alignas(32) T tmp[16];
  store8(tmp, v0);
  store8(tmp + 8, v1);
  const __m128i w0 = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  const __m128i w1 = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp + 8));
  const __m128i mask = _mm_set1_epi16(0x00FF);
  const __m128i l = _mm_packus_epi16(_mm_and_si128(w0, mask), _mm_and_si128(w1, mask));
  const __m128i h = _mm_packus_epi16(_mm_srli_epi16(w0, 8), _mm_srli_epi16(w1, 8));
  lo = _mm256_broadcastsi128_si256(l);
  hi = _mm256_broadcastsi128_si256(h);
}

// Values of 8 8-bit codes of format F (the decode table's values, computed), as float32.
template <format F>
LOWBIT_AVX2 inline __m256 values8(const std::uint8_t* p, const float* table) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  if constexpr (F == format::int8_absmax) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  } else if constexpr (F == format::uint8_zeropoint) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
  } else if constexpr (F == format::e4m3fn || F == format::e5m2) {
    // Normal codes: exponent and mantissa bits placed in a float32, the exponent rebiased by an
    // integer add. Subnormal codes (exponent field 0, zero included) from a table of
    // mantissa * 2^(1 - bias - M). No float operation sees a subnormal operand, which on x86
    // costs a microcode assist per instruction. NaN (and e5m2 Inf) codes patched in.
    using codec = typename quant::scheme<F>::codec;
    constexpr int M = codec::mantissa_bits;
    const __m256i k = _mm256_cvtepu8_epi32(b);
    const __m256i mag = _mm256_and_si256(k, _mm256_set1_epi32(0x7F));
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(k, _mm256_set1_epi32(0x80)), 24);
    const __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, 23 - M), _mm256_set1_epi32((127 - codec::bias) << 23));
    // the subnormal magnitudes 0 .. 2^M - 1 are the decode table's first entries
    const __m256 subnormals = _mm256_setr_ps(quant::decode_table<F>(0), quant::decode_table<F>(1), quant::decode_table<F>(2),
                                             quant::decode_table<F>(3), quant::decode_table<F>(4 % (1 << M)),
                                             quant::decode_table<F>(5 % (1 << M)), quant::decode_table<F>(6 % (1 << M)),
                                             quant::decode_table<F>(7 % (1 << M)));
    const __m256 sub = _mm256_permutevar8x32_ps(subnormals, _mm256_and_si256(k, _mm256_set1_epi32((1 << M) - 1)));
    const __m256i is_sub = _mm256_cmpeq_epi32(_mm256_and_si256(k, _mm256_set1_epi32(0x7F & ~((1 << M) - 1))), _mm256_setzero_si256());
    __m256 v = _mm256_blendv_ps(_mm256_castsi256_ps(normal), sub, _mm256_castsi256_ps(is_sub));
    v = _mm256_or_ps(v, _mm256_castsi256_ps(sign));
    const __m256 qnan = _mm256_castsi256_ps(_mm256_or_si256(sign, _mm256_set1_epi32(0x7FC00000)));
    if constexpr (F == format::e4m3fn) {
      return _mm256_blendv_ps(v, qnan, _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F))));
    } else {
      const __m256 inf = _mm256_castsi256_ps(_mm256_or_si256(sign, _mm256_set1_epi32(0x7F800000)));
      v = _mm256_blendv_ps(v, inf, _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7C))));
      return _mm256_blendv_ps(v, qnan, _mm256_castsi256_ps(_mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7C))));
    }
  } else {
    return _mm256_i32gather_ps(table, _mm256_cvtepu8_epi32(b), 4);
  }
}

// One block of bs (a multiple of 16) 4-bit codes at c into 16-bit outputs at o, through byte
// tables: the low bytes of the block's 16 possible outputs in each 128-bit lane of lo, their
// high bytes in hi (byte_tables). Stream: o 32-byte aligned.
template <bool HighFirst, bool Stream, class T>
LOWBIT_AVX2 inline void nibble_block16(const std::uint8_t* c, std::int64_t bs, __m256i lo, __m256i hi, T* o) {
  std::int64_t i = 0;
  for (; i + 32 <= bs; i += 32) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + i / 2));
    const __m128i hi4 = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
    const __m128i lo4 = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
    const __m128i a = HighFirst ? _mm_unpacklo_epi8(hi4, lo4) : _mm_unpacklo_epi8(lo4, hi4);
    const __m128i z = HighFirst ? _mm_unpackhi_epi8(hi4, lo4) : _mm_unpackhi_epi8(lo4, hi4);
    const __m256i idx = _mm256_set_m128i(z, a);  // elements 0..15 | 16..31
    const __m256i l = _mm256_shuffle_epi8(lo, idx), h = _mm256_shuffle_epi8(hi, idx);
    const __m256i p0 = _mm256_unpacklo_epi8(l, h), p1 = _mm256_unpackhi_epi8(l, h);
    put32<Stream>(o + i, _mm256_permute2x128_si256(p0, p1, 0x20));
    put32<Stream>(o + i + 16, _mm256_permute2x128_si256(p0, p1, 0x31));
  }
  if (i < bs) {  // a 16-element block, or the last 16 of one
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + i / 2));
    const __m128i hi4 = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
    const __m128i lo4 = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
    const __m128i idx = HighFirst ? _mm_unpacklo_epi8(hi4, lo4) : _mm_unpacklo_epi8(lo4, hi4);
    const __m128i l = _mm_shuffle_epi8(_mm256_castsi256_si128(lo), idx), h = _mm_shuffle_epi8(_mm256_castsi256_si128(hi), idx);
    put32<Stream>(o + i, _mm256_set_m128i(_mm_unpackhi_epi8(l, h), _mm_unpacklo_epi8(l, h)));
  }
}

}  // namespace detail

/// Decodes `nblocks` consecutive full blocks of `bs` elements (bs a multiple of 32, or of 16 for
/// 4-bit formats; the first element even) whose codes start at `codes`, with block b's scale `scales[b]` and zero point
/// `zps[b]`, into `out`: exactly decode_element of quant/blockwise.hpp, then from_float<T>.
/// 4-bit formats: each block's 16 possible outputs are computed once (a per-block table), and
/// elements are looked up with byte shuffles.
/// Stream: every store is non-temporal (`out` must be 64-byte aligned; the caller issues
/// store_fence() before anything else reads the output): for outputs far larger than the caches,
/// where an ordinary store first reads each line it fills, nearly doubling the memory traffic.
template <format F, class T, bool Stream = false>
LOWBIT_AVX2 void decode_run(const std::uint8_t* codes, std::int64_t nblocks, std::int64_t bs, const float* scales,
                            const int* zps, const float* table, T* out) {
  if constexpr (info(F).bits == 4) {
    const __m256 lut_lo = _mm256_loadu_ps(table), lut_hi = _mm256_loadu_ps(table + 8);
    constexpr bool high_first = info(F).order == codecs::nibble_order::high_first;
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const __m256 s = _mm256_set1_ps(scales[b]);
      const __m256 v_lo = detail::finish<F>(lut_lo, s, s), v_hi = detail::finish<F>(lut_hi, s, s);
      const std::uint8_t* c = codes + b * (bs / 2);
      detail::prefetch_stream_step(codes, static_cast<std::uintptr_t>(b * (bs / 2)), static_cast<std::uintptr_t>(bs / 2));
      T* o = out + b * bs;
      if constexpr (sizeof(T) == 4) {
        for (std::int64_t i = 0; i < bs; i += 16) {
          const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + i / 2));
          const __m128i hi4 = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
          const __m128i lo4 = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
          const __m128i idx = high_first ? _mm_unpacklo_epi8(hi4, lo4) : _mm_unpacklo_epi8(lo4, hi4);
          for (int h = 0; h < 2; ++h) {
            const __m256i k = _mm256_cvtepu8_epi32(h == 0 ? idx : _mm_srli_si128(idx, 8));
            const __m256 sel = _mm256_castsi256_ps(_mm256_slli_epi32(k, 28));
            detail::put32<Stream>(o + i + 8 * h, _mm256_castps_si256(_mm256_blendv_ps(_mm256_permutevar8x32_ps(v_lo, k),
                                                                                        _mm256_permutevar8x32_ps(v_hi, k), sel)));
          }
        }
      } else {
        __m256i tlo, thi;
        detail::byte_tables<T>(v_lo, v_hi, tlo, thi);
        detail::nibble_block16<high_first, Stream>(c, bs, tlo, thi, o);
      }
    }
  } else {
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const __m256 s = _mm256_set1_ps(scales[b]);
      const __m256 z = _mm256_set1_ps(static_cast<float>(zps[b]));
      const std::uint8_t* c = codes + b * bs;
      T* o = out + b * bs;
      for (std::int64_t i = 0; i < bs; i += 16)
        detail::store16<Stream>(o + i, detail::finish<F>(detail::values8<F>(c + i, table), s, z),
                                detail::finish<F>(detail::values8<F>(c + i + 8, table), s, z));
    }
  }
}

/// decode_run of a 4-bit format (nibble order `Order`) into 16-bit T with the blocks' byte
/// tables given: block b's 16 possible outputs have their low bytes at planes[b][0 .. 16) and
/// their high bytes at planes[b][16 .. 32) (a table the caller builds once per scale, as the
/// block-scaled formats do for their 256 scale codes). bs a multiple of 16; Stream as there.
template <codecs::nibble_order Order, class T, bool Stream = false>
LOWBIT_AVX2 void decode_run_planes(const std::uint8_t* codes, std::int64_t nblocks, std::int64_t bs, const std::uint8_t* const* planes,
                                   T* out) {
  static_assert(sizeof(T) == 2, "decode_run_planes: 16-bit outputs");
  for (std::int64_t b = 0; b < nblocks; ++b) {
    detail::prefetch_stream_step(codes, static_cast<std::uintptr_t>(b * (bs / 2)), static_cast<std::uintptr_t>(bs / 2));
    const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(planes[b]));
    detail::nibble_block16<Order == codecs::nibble_order::high_first, Stream>(codes + b * (bs / 2), bs, _mm256_permute2x128_si256(t, t, 0x00),
                                                                              _mm256_permute2x128_si256(t, t, 0x11), out + b * bs);
  }
}

/// Orders the non-temporal stores of decode_run<..., true> before every later store, so that
/// the output is complete when the caller hands it on.
LOWBIT_AVX2 inline void store_fence() { _mm_sfence(); }

/// Copies `n` bytes from `src` to `dst` (any alignments, not overlapping) with non-temporal
/// stores for every whole 64-byte line of `dst` and ordinary stores for the partial lines at the
/// ends (so that no line is written both ways): how a decoder streams output that does not start
/// 64-byte aligned, from an L1-resident buffer it decoded into (store_fence() before the output
/// is handed on, as for decode_run<..., true>).
LOWBIT_AVX2 inline void stream_copy(void* dst, const void* src, std::size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  const std::size_t head = std::min<std::size_t>(n, (64 - reinterpret_cast<std::uintptr_t>(d) % 64) % 64);
  std::memcpy(d, s, head);
  std::size_t i = head;
  for (; i + 64 <= n; i += 64) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i + 32), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i + 32)));
  }
  std::memcpy(d + i, s + i, n - i);
}

/// Asks for the partial last line of stream_copy(dst, ..., n)'s destination in the cache with
/// write intent, so that its ordinary stores find it there: called before decoding into the
/// buffer, it hides the line's read from memory behind the decode.
inline void stream_copy_prepare(void* dst, std::size_t n) {
  const auto end = reinterpret_cast<std::uintptr_t>(dst) + n;
  if (n > 0 && end % 64 != 0) __builtin_prefetch(reinterpret_cast<const void*>(end - 1), 1, 3);
}

/// Error sums of `measure_error` (engine.hpp) over the first floor(n/16)*16 elements: x the
/// source, y its dequantization; element i goes to lane i % 16 of acc, in float32: acc[0] max
/// |x - y|, acc[1] sum |x - y|, acc[2] sum x^2 (fused multiply-add), acc[3] sum (x - y)^2 (fused
/// multiply-add), the same operations in the same order as the portable loop. Returns how many
/// elements it took.
template <class T>
LOWBIT_AVX2_FMA std::int64_t error_sums(const T* x, const float* y, std::int64_t n, float (*acc)[16]) {
  const std::int64_t m = n & ~std::int64_t{15};
  if (m == 0) return 0;
  __m256 mx[2], ab[2], sq[2], se[2];  // lanes 0..7 and 8..15
  for (int h = 0; h < 2; ++h) {
    mx[h] = _mm256_loadu_ps(acc[0] + 8 * h);
    ab[h] = _mm256_loadu_ps(acc[1] + 8 * h);
    sq[h] = _mm256_loadu_ps(acc[2] + 8 * h);
    se[h] = _mm256_loadu_ps(acc[3] + 8 * h);
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (std::int64_t i = 0; i < m; i += 16) {
    for (int h = 0; h < 2; ++h) {
      const __m256 xv = detail::load8(x + i + 8 * h);
      const __m256 d = _mm256_andnot_ps(sign, _mm256_sub_ps(xv, _mm256_loadu_ps(y + i + 8 * h)));
      mx[h] = _mm256_max_ps(d, mx[h]);  // d NaN: keeps the running max, as std::max(max, d)
      ab[h] = _mm256_add_ps(ab[h], d);
      sq[h] = _mm256_fmadd_ps(xv, xv, sq[h]);
      se[h] = _mm256_fmadd_ps(d, d, se[h]);
    }
  }
  for (int h = 0; h < 2; ++h) {
    _mm256_storeu_ps(acc[0] + 8 * h, mx[h]);
    _mm256_storeu_ps(acc[1] + 8 * h, ab[h]);
    _mm256_storeu_ps(acc[2] + 8 * h, sq[h]);
    _mm256_storeu_ps(acc[3] + 8 * h, se[h]);
  }
  return m;
}

#else

namespace detail {
template <format F>
constexpr bool has_encode_kernel() {
  return false;
}
}  // namespace detail
inline bool available() noexcept { return false; }
template <class T>
std::int64_t block_stats(const T*, std::int64_t, quant::block_stats&) { return 0; }
template <format F, class T>
std::int64_t encode_block(const T*, std::int64_t, const quant::block_encoder&, std::uint8_t*) { return 0; }
template <format F, class T>
std::int64_t decode_block(const std::uint8_t*, std::int64_t, const float*, float, int, T*) { return 0; }
template <format F, class T, bool Stream = false>
void decode_run(const std::uint8_t*, std::int64_t, std::int64_t, const float*, const int*, const float*, T*) {}
inline void store_fence() {}
inline void stream_copy(void* dst, const void* src, std::size_t n) { std::memcpy(dst, src, n); }
inline void stream_copy_prepare(void*, std::size_t) {}
template <codecs::nibble_order Order, class T, bool Stream = false>
void decode_run_planes(const std::uint8_t*, std::int64_t, std::int64_t, const std::uint8_t* const*, T*) {}
template <class T>
bool stats_run(const T*, std::int64_t, std::int64_t, quant::block_stats*) { return false; }
template <format F, class T>
void encode_run(const T*, std::int64_t, std::int64_t, const quant::block_encoder*, std::uint8_t*, std::int64_t = 0) {}
template <class T>
std::int64_t error_sums(const T*, const float*, std::int64_t, float (*)[16]) { return 0; }

#endif

}  // namespace avx2
}  // namespace host
LOWBIT_NAMESPACE_END
