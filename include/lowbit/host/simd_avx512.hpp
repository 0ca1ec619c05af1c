// SPDX-License-Identifier: Apache-2.0
/// @file simd_avx512.hpp
/// @brief AVX-512 (F, BW, VL, DQ) kernels of the host engine: block statistics, encoding and
///        (for the arithmetic 8-bit formats) decoding over runs of full blocks, 16 elements per
///        instruction. Selected at run time (`available()`) for block sizes that are multiples of
///        32; otherwise, and on CPUs or compilers without AVX-512, the AVX2 kernels
///        (simd_avx2.hpp) or the portable code run.
///
/// The kernels evaluate exactly the formulas of quant/blockwise.hpp, as the AVX2 ones do: one
/// IEEE multiply per element, strict comparisons against the codecs' own thresholds, integer
/// rounding for minifloats. Nothing is added to a product, so FMA contraction cannot occur.
/// The exhaustive test (`host_simd_exhaustive_test`) checks `codes16` against the scalar codecs
/// for every float32 input.
#pragma once

#include "simd_avx2.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if LOWBIT_HAVE_AVX2_KERNELS
#  define LOWBIT_HAVE_AVX512_KERNELS 1
#  define LOWBIT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c")))
#  define LOWBIT_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,avx512bf16")))
#else
#  define LOWBIT_HAVE_AVX512_KERNELS 0
#endif

LOWBIT_NAMESPACE_BEGIN
namespace host {
namespace avx512 {

#if LOWBIT_HAVE_AVX512_KERNELS

// GCC 12's AVX-512 intrinsics initialize their unused pass-through operand from itself
// (_mm512_undefined_*), which -Wuninitialized reports in every function they are inlined into
// when AVX-512 comes from a target attribute. The warnings are false; files of AVX-512 kernels
// silence them for their own functions only, between these two macros.
#if defined(__GNUC__) && !defined(__clang__)
#  define LOWBIT_AVX512_WARNINGS_PUSH                                                             \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wuninitialized\"") \
        _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")
#  define LOWBIT_AVX512_WARNINGS_POP _Pragma("GCC diagnostic pop")
#else
#  define LOWBIT_AVX512_WARNINGS_PUSH
#  define LOWBIT_AVX512_WARNINGS_POP
#endif
LOWBIT_AVX512_WARNINGS_PUSH

/// True if this CPU (and OS, which must save the zmm state) runs the AVX-512 kernels.
inline bool available() noexcept {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    if (((c >> 27) & 1u) == 0) return false;  // OSXSAVE
    unsigned lo = 0, hi = 0;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const unsigned long long xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
    if ((xcr0 & 0xE6u) != 0xE6u) return false;  // XMM, YMM, opmask, ZMM_Hi256, Hi16_ZMM enabled
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool f = (b >> 16) & 1u, dq = (b >> 17) & 1u, bw = (b >> 30) & 1u, vl = (b >> 31) & 1u;
    return f && dq && bw && vl && avx2::available();
  }();
  return ok;
}

/// True if available() and the CPU has AVX512_BF16 (vcvtne2ps2bf16: 32 float32 -> bfloat16 in
/// one instruction), which decode_run then uses for bfloat16 outputs.
inline bool bf16_available() noexcept {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return available() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 5) & 1u) != 0;
  }();
  return ok;
}

namespace detail {

// 16 consecutive elements widened to float32.
LOWBIT_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
LOWBIT_AVX512 inline __m512 load16(const f16* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
LOWBIT_AVX512 inline __m512 load16(const bf16* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

// 32 consecutive bfloat16 values in one load, split into the float32 values of the even elements
// 0, 2, .., 30 and of the odd ones 1, 3, .., 31 (each dword holds a pair): a shift and a mask
// instead of two widening loads, and codes of the two halves that pair up lane by lane.
struct bf16_halves {
  __m512 even, odd;
};
LOWBIT_AVX512 inline bf16_halves load_bf16_halves(const bf16* p) {
  const __m512i w = _mm512_loadu_si512(p);
  return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16)), _mm512_castsi512_ps(_mm512_and_si512(w, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))))};
}

// Saturating round-to-nearest-even float32 -> minifloat code for finite lanes, as
// avx2::detail::minifloat_codes.
template <class Minifloat>
LOWBIT_AVX512 inline __m512i minifloat_codes(__m512 v) {
  constexpr int M = Minifloat::mantissa_bits;
  constexpr int shift = 23 - M;
  constexpr int emin = Minifloat::min_exponent;
  const __m512i u = _mm512_castps_si512(v);
  const __m512i sign = _mm512_and_si512(u, _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  const __m512i a = _mm512_xor_si512(u, sign);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, shift), _mm512_set1_epi32(1));
  const __m512i rebias = _mm512_set1_epi32(static_cast<int>(static_cast<unsigned>(Minifloat::bias - 127) << 23));
  const __m512i nrm = _mm512_srli_epi32(
      _mm512_add_epi32(_mm512_add_epi32(a, rebias), _mm512_add_epi32(_mm512_set1_epi32((1 << (shift - 1)) - 1), odd)),
      shift);
  const __m512 magic = _mm512_castsi512_ps(_mm512_set1_epi32((127 + emin + 23 - M) << 23));
  const __m512i sub = _mm512_sub_epi32(_mm512_castps_si512(_mm512_add_ps(_mm512_castsi512_ps(a), magic)),
                                       _mm512_castps_si512(magic));
  const __mmask16 is_sub = _mm512_cmpgt_epi32_mask(_mm512_set1_epi32((127 + emin) << 23), a);
  __m512i code = _mm512_mask_blend_epi32(is_sub, nrm, sub);
  code = _mm512_min_epu32(code, _mm512_set1_epi32(static_cast<int>(Minifloat::max_magnitude_code)));
  return _mm512_or_si512(code, _mm512_srli_epi32(sign, 31 - (Minifloat::bits - 1)));
}

/// Constants of codes16<F>. NF4, which takes 16 v (encode_prescale): a 32-cell grid over
/// [-16, 16) (cell j covers [g, g + 1) for g = j < 16 ? j : j - 32, values below -16 and NaN fall
/// into cell 16, values from 15 on into cell 15): `base` holds the code of the cell's lower edge,
/// #{i : g / 16 > T_i}, and `cut` 16 times the one threshold inside the cell (the thresholds lie
/// more than 1/16 apart) or +Inf. bnb_fp4: the 7 magnitude thresholds in lanes 0..6 of `t`.
/// bnb_dynamic8: `search`, the tables of its search.
struct dynamic8_search;
struct thresholds {
  __m512 t;
  __m512i base[2];
  __m512 cut[2];
  const dynamic8_search* search = nullptr;
};

/// codecs::detail::bnb_dynamic8_search as table lookups. Its 7 steps compare x with the table
/// value at a pivot that depends only on the decisions before, so step k reads level[k], the 2^k
/// values at its possible pivots, at the k-bit number of those decisions (first decision highest).
/// After the 7 steps the pivot is 2 d (d the 7 decision bits; 127 + sum of +-64 .. +-1), with the
/// lower and upper neighbours last visited at 2 d - 1 (0 when d = 0) and 2 d + 1: `pivot` holds
/// table[2 d], and `mid` at 2 d + (x > table[2 d]) the float32 midpoint the scalar code compares x
/// with then, computed by the same two roundings.
struct dynamic8_search {
  alignas(64) float level[7][64];
  alignas(64) float pivot[128];
  alignas(64) float mid[256];
  dynamic8_search() {
    auto table = [](int i) { return codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(i)); };
    for (int k = 0; k < 7; ++k)
      for (int d = 0; d < 64; ++d) {
        int p = 127;
        for (int j = 0; j < k; ++j) p += ((d >> (k - 1 - j)) & 1) ? (64 >> j) : -(64 >> j);
        level[k][d] = d < (1 << k) ? table(p) : 0.0f;
      }
    for (int d = 0; d < 128; ++d) {
      const float v = table(2 * d);
      pivot[d] = v;
      mid[2 * d] = lowbit::detail::mul_rn(lowbit::detail::add_rn(table(d > 0 ? 2 * d - 1 : 0), v), 0.5f);
      mid[2 * d + 1] = lowbit::detail::mul_rn(lowbit::detail::add_rn(table(2 * d + 1), v), 0.5f);
    }
  }
  static const dynamic8_search& get() {
    static const dynamic8_search s;  // built once
    return s;
  }
};

// t[idx] for 16 indices into an N-entry table (N a power of two; indices below N): one permute
// per 32 entries, then blends on the index bits above 5.
template <int N>
LOWBIT_AVX512 inline __m512 lookup(const float* t, __m512i idx) {
  if constexpr (N <= 16) {
    return _mm512_permutexvar_ps(idx, _mm512_load_ps(t));
  } else {
    __m512 r[N / 32];
    for (int j = 0; j < N / 32; ++j) r[j] = _mm512_permutex2var_ps(_mm512_load_ps(t + 32 * j), idx, _mm512_load_ps(t + 32 * j + 16));
    for (int w = N / 32, bit = 32; w > 1; w /= 2, bit *= 2) {
      const __mmask16 hi = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(bit));
      for (int j = 0; j < w / 2; ++j) r[j] = _mm512_mask_blend_ps(hi, r[2 * j], r[2 * j + 1]);
    }
    return r[0];
  }
}

template <format F>
LOWBIT_AVX512 inline thresholds make_thresholds() {
  alignas(64) float t[16] = {};
  thresholds r{};
  if constexpr (F == format::nf4) {
    struct grid {  // built once
      alignas(64) std::int32_t base[32];
      alignas(64) float cut[32];
      grid() {
        for (int j = 0; j < 32; ++j) {
          const int g = j < 16 ? j : j - 32;
          const float lo = static_cast<float>(g) / 16.0f, hi = static_cast<float>(g + 1) / 16.0f;  // exact
          base[j] = 0;
          cut[j] = std::numeric_limits<float>::infinity();
          for (int i = 0; i < 15; ++i) {
            const float ti = codecs::nf4::threshold(i);
            if (lo > ti) ++base[j];
            if (lo <= ti && ti < hi) cut[j] = ti * 16.0f;  // exact
          }
        }
      }
    };
    static const grid cells;
    r.base[0] = _mm512_load_si512(cells.base);
    r.base[1] = _mm512_load_si512(cells.base + 16);
    r.cut[0] = _mm512_load_ps(cells.cut);
    r.cut[1] = _mm512_load_ps(cells.cut + 16);
  } else if constexpr (F == format::bnb_fp4) {
    for (int i = 0; i < 7; ++i) t[i] = codecs::bnb_fp4::threshold(i);
  } else if constexpr (F == format::bnb_dynamic8) {
    r.search = &dynamic8_search::get();
  }
  r.t = _mm512_load_ps(t);
  return r;
}

// One decision of dynamic8_search: d = 2 d + (v > the level's value).
LOWBIT_AVX512 inline __m512i dynamic8_step(__m512i d, __m512 v, __m512 level_value) {
  const __m512i twice = _mm512_add_epi32(d, d);
  return _mm512_mask_add_epi32(twice, _mm512_cmp_ps_mask(v, level_value, _CMP_GT_OQ), twice, _mm512_set1_epi32(1));
}

/// What encode_run multiplies a block's inv by before codes16<F>: 16 for NF4, whose grid cells
/// are 1/16 wide, so that codes16<nf4> takes 16 v and needs no multiply of its own; 1 otherwise.
template <format F>
constexpr float encode_prescale() {
  return F == format::nf4 ? 16.0f : 1.0f;
}

// Codes of 16 normalized values of format F (x already multiplied by the block's inv, and by
// encode_prescale<F>()), int32.
template <format F>
LOWBIT_AVX512 inline __m512i codes16(__m512 v, const thresholds& th) {
  if constexpr (F == format::nf4) {
    // v = 16 x inv. The grid cell: v clamped to [-16, 16) (NaN to -16), rounded down; its low 5
    // bits index the 32 cells. code = base + (v > cut), as #{i : v > 16 T_i} (one cut per cell).
    const __m512 c = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-16.0f)), _mm512_set1_ps(0x1.fffffep3f));
    const __m512i j = _mm512_cvt_roundps_epi32(c, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m512i base = _mm512_permutex2var_epi32(th.base[0], j, th.base[1]);
    const __m512 cut = _mm512_permutex2var_ps(th.cut[0], j, th.cut[1]);
    return _mm512_mask_add_epi32(base, _mm512_cmp_ps_mask(v, cut, _CMP_GT_OQ), base, _mm512_set1_epi32(1));
  } else if constexpr (F == format::bnb_fp4) {
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
    __m512i rank = _mm512_setzero_si512();
    for (int i = 0; i < 7; ++i)
      rank = _mm512_mask_add_epi32(rank, _mm512_cmp_ps_mask(a, _mm512_permutexvar_ps(_mm512_set1_epi32(i), th.t), _CMP_GT_OQ),
                                   rank, _mm512_set1_epi32(1));
    const __m512i code =
        _mm512_permutexvar_epi32(rank, _mm512_setr_epi32(0, 1, 6, 7, 4, 5, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0));
    const __mmask16 neg = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mask_or_epi32(code, neg, code, _mm512_set1_epi32(8));
  } else if constexpr (F == format::bnb_dynamic8) {
    // dynamic8_search: seven decisions (a NaN takes none: code 0, as the scalar search), then
    // the nearer of the pivot and the neighbour on v's side by their midpoint
    const dynamic8_search& ds = *th.search;
    __m512i d = _mm512_setzero_si512();
    d = dynamic8_step(d, v, _mm512_set1_ps(ds.level[0][0]));
    d = dynamic8_step(d, v, lookup<2>(ds.level[1], d));
    d = dynamic8_step(d, v, lookup<4>(ds.level[2], d));
    d = dynamic8_step(d, v, lookup<8>(ds.level[3], d));
    d = dynamic8_step(d, v, lookup<16>(ds.level[4], d));
    d = dynamic8_step(d, v, lookup<32>(ds.level[5], d));
    d = dynamic8_step(d, v, lookup<64>(ds.level[6], d));
    const __mmask16 up = _mm512_cmp_ps_mask(v, lookup<128>(ds.pivot, d), _CMP_GT_OQ);
    const __m512i p = _mm512_add_epi32(d, d);
    const __m512 m = lookup<256>(ds.mid, _mm512_mask_add_epi32(p, up, p, _mm512_set1_epi32(1)));
    const __mmask16 to_hi = up & _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ);
    const __mmask16 to_lo = static_cast<__mmask16>(~up) & _mm512_cmp_ps_mask(v, m, _CMP_LT_OQ) & _mm512_test_epi32_mask(p, p);
    return _mm512_mask_sub_epi32(_mm512_mask_add_epi32(p, to_hi, p, _mm512_set1_epi32(1)), to_lo, p, _mm512_set1_epi32(1));
  } else if constexpr (F == format::e2m1fn) {
    // Round to nearest even on each of e2m1's three spacings, with the code of the spacing's first
    // value added: round(2|v|) (codes 0..4 for |v| <= 2), round(|v|) + 2 (4..6 on [2, 4]),
    // round(|v| / 2) + 4 (6, 7 on [4, 6]); each adds 1.5 * 2^23, so the rounding is the float add's
    // and the integer sits in the low mantissa bits. Beyond its own interval each form is no
    // smaller than the right code, so the code is the least of the three and 7 (saturation; NaN's
    // sums are NaN, whose bits are larger still: 7, as the scalar codec). Then the sign bit.
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)));
    const __m512i g0 = _mm512_castps_si512(_mm512_fmadd_ps(a, _mm512_set1_ps(2.0f), _mm512_set1_ps(12582912.0f)));
    const __m512i g1 = _mm512_castps_si512(_mm512_add_ps(a, _mm512_set1_ps(12582914.0f)));
    const __m512i g2 = _mm512_castps_si512(_mm512_fmadd_ps(a, _mm512_set1_ps(0.5f), _mm512_set1_ps(12582916.0f)));
    const __m512i m = _mm512_min_epi32(_mm512_min_epi32(g0, g1), _mm512_min_epi32(g2, _mm512_set1_epi32(0x4B400007)));
    const __m512i code = _mm512_and_si512(m, _mm512_set1_epi32(7));
    return _mm512_mask_or_epi32(code, _mm512_movepi32_mask(_mm512_castps_si512(v)), code, _mm512_set1_epi32(8));
  } else if constexpr (F == format::int8_absmax) {
    const __m512 c = _mm512_max_ps(_mm512_min_ps(v, _mm512_set1_ps(127.0f)), _mm512_set1_ps(-127.0f));
    const __m512i q = _mm512_cvt_roundps_epi32(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_and_si512(q, _mm512_set1_epi32(0xFF));
  } else {
    return minifloat_codes<typename quant::scheme<F>::codec>(v);
  }
}

// Packs 32 int32 4-bit codes (c0: elements 0..15, c1: 16..31; values 0..15) into 16 bytes at p.
// Both vectors at once: dword j holds c0[j] in byte 0 and c1[j] in byte 1, so every 64-bit lane
// pairs an even element with the next odd one for both; one narrowing to 16 bits and one byte
// shuffle put c0's eight pairs before c1's.
template <codecs::nibble_order Order>
LOWBIT_AVX512 inline void store_nibbles32(std::uint8_t* p, __m512i c0, __m512i c1) {
  const __m512i t = _mm512_or_si512(c0, _mm512_slli_epi32(c1, 8));
  const __m512i even = _mm512_and_si512(t, _mm512_set1_epi64(0xFFFF));
  const __m512i odd = _mm512_srli_epi64(t, 32);
  const __m512i pairs = Order == codecs::nibble_order::high_first ? _mm512_or_si512(_mm512_slli_epi64(even, 4), odd)
                                                                  : _mm512_or_si512(even, _mm512_slli_epi64(odd, 4));
  const __m128i w = _mm512_cvtepi64_epi16(pairs);  // word k: c0's pair k, c1's pair k
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm_shuffle_epi8(w, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15)));
}

LOWBIT_AVX512 inline __m256i fold_max_epu32(__m512i v) {
  return _mm512_castsi512_si256(_mm512_max_epu32(v, _mm512_shuffle_i64x2(v, v, 0x4E)));
}
template <format F>
constexpr bool has_encode_kernel() {
  return avx2::detail::has_encode_kernel<F>();
}

/// Formats whose 8-bit codes decode arithmetically here (the others use the AVX2 run kernel).
template <format F>
constexpr bool has_decode_kernel() {
  return F == format::int8_absmax || F == format::uint8_zeropoint || F == format::e4m3fn || F == format::e5m2;
}

// Lookup of the e4m3fn/e5m2 decode: the bfloat16 bits of the value of every magnitude 0..127
// (quant::decode_table, whose values bfloat16 holds exactly: 3 or 2 mantissa bits, NaN 0x7FC0,
// e5m2 Inf 0x7F80), 32 per register. Other formats need none.
struct values_table {
  __m512i mag[4];
};
template <format F>
LOWBIT_AVX512 inline values_table make_values_table() {
  values_table t{};
  if constexpr (F == format::e4m3fn || F == format::e5m2) {
    struct words {  // built once per format
      alignas(64) std::uint16_t w[128];
      words() {
        for (int m = 0; m < 128; ++m)  // the upper half: the lower is 0 for every entry (NaN 0x7FC00000 included)
          w[m] = static_cast<std::uint16_t>(float_bits(quant::decode_table<F>(static_cast<std::uint8_t>(m))) >> 16);
      }
    };
    static const words table;
    for (int k = 0; k < 4; ++k) t.mag[k] = _mm512_load_si512(table.w + 32 * k);
  }
  return t;
}

// e4m3fn/e5m2 zero, subnormal, Inf and NaN codes, which values32's arithmetic path cannot decode:
// with M mantissa bits, (c + inc) & mask is at most 2^M exactly for those codes. e4m3fn (inc 1,
// mask 0x7F) maps magnitude 0x7F to 0 and 0..7 to 1..8; e5m2 (inc 4, mask 0x7C) maps the
// exponent fields 0 and 31 to 4 and 0. special_keys gives that key for 32 codes at p.
template <format F>
struct special_code_keys {
  using codec = typename quant::scheme<F>::codec;
  static constexpr int M = codec::mantissa_bits;
  static constexpr int inc = codec::has_inf ? 1 << M : 1, mask = avx2::special_magnitude_bits<F>();
  static constexpr int limit = 1 << M;
};
template <format F>
LOWBIT_AVX512 inline __m256i special_keys(const std::uint8_t* p) {
  using k = special_code_keys<F>;
  const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm256_and_si256(_mm256_add_epi8(c, _mm256_set1_epi8(k::inc)), _mm256_set1_epi8(k::mask));
}
// True if the smallest key seen marks a special code.
template <format F>
LOWBIT_AVX512 inline bool special_key_seen(__m256i smallest) {
  return _mm256_cmple_epu8_mask(smallest, _mm256_set1_epi8(special_code_keys<F>::limit)) != 0;
}
// True if n (a multiple of 32) e4m3fn/e5m2 codes at p hold a special code.
template <format F>
LOWBIT_AVX512 inline bool special_codes(const std::uint8_t* p, std::int64_t n) {
  __m256i smallest = _mm256_set1_epi8(-1);
  for (std::int64_t i = 0; i < n; i += 32) smallest = _mm256_min_epu8(smallest, special_keys<F>(p + i));
  return special_key_seen<F>(smallest);
}

// Values of 16 normal e4m3fn/e5m2 codes at p: the sign-extended code shifted so that the
// magnitude lies under float32's exponent field, the sign's copies above it cleared but bit 31,
// then the exponent rebiased by an integer add.
template <format F>
LOWBIT_AVX512 inline __m512 normal_values16(const std::uint8_t* p) {
  using codec = typename quant::scheme<F>::codec;
  constexpr int shift = 23 - codec::mantissa_bits;
  const __m512i k = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m512i keep = _mm512_set1_epi32(static_cast<int>(0x80000000u | (0x7Fu << shift)));
  return _mm512_castsi512_ps(
      _mm512_add_epi32(_mm512_and_si512(_mm512_slli_epi32(k, shift), keep), _mm512_set1_epi32((127 - codec::bias) << 23)));
}

// Values of the 32 8-bit codes of format F at p: elements 0..15 into lo, 16..31 into hi, as
// avx2::detail::values8 computes them. e4m3fn/e5m2 codes that are all normal (Exact false, see
// special_codes) go through normal_values16; otherwise (Exact) the magnitude is looked up as
// bfloat16 bits (two 64-entry word permutes, picked by bit 6), the sign put on, widened. Neither
// path has a float operation, so subnormal codes cost nothing extra. int8/uint8 ignore Exact.
template <format F, bool Exact>
LOWBIT_AVX512 inline void values32(const std::uint8_t* p, const values_table& t, __m512& lo, __m512& hi) {
  if constexpr ((F == format::e4m3fn || F == format::e5m2) && !Exact) {
    (void)t;
    lo = normal_values16<F>(p);
    hi = normal_values16<F>(p + 16);
  } else if constexpr (F == format::e4m3fn || F == format::e5m2) {
    const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    const __m512i low = _mm512_permutex2var_epi16(t.mag[0], w, t.mag[1]);    // magnitudes 0..63
    const __m512i high = _mm512_permutex2var_epi16(t.mag[2], w, t.mag[3]);   // 64..127
    __m512i r = _mm512_mask_blend_epi16(_mm512_test_epi16_mask(w, _mm512_set1_epi16(0x40)), low, high);
    r = _mm512_ternarylogic_epi32(r, _mm512_slli_epi16(w, 8), _mm512_set1_epi16(static_cast<short>(0x8000)), 0xF8);  // r | sign
    lo = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(r)), 16));
    hi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r, 1)), 16));
  } else {
    (void)t;
    const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
    if constexpr (F == format::int8_absmax) {
      lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b0));
      hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b1));
    } else {
      static_assert(F == format::uint8_zeropoint, "values32: no AVX-512 decode for this format");
      lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b0));
      hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b1));
    }
  }
}

// decode_element of quant/blockwise.hpp on 16 values (avx2::detail::finish).
template <format F>
LOWBIT_AVX512 inline __m512 finish(__m512 t, __m512 scale, __m512 zp) {
  if constexpr (F == format::uint8_zeropoint) t = _mm512_sub_ps(t, zp);
  t = _mm512_mul_ps(t, scale);
  if constexpr (F == format::int8_absmax) t = _mm512_mul_ps(t, _mm512_set1_ps(quant::int8_dequant_factor));
  return t;
}

// Stores 16 float32 results as T: round to nearest even; NaN -> 0x7FFF for 16-bit outputs.
// Stream: non-temporal stores (p aligned to the store's size), as avx2::decode_run<..., true>.
template <bool Stream = false>
LOWBIT_AVX512 inline void store16(float* p, __m512 v) {
  if constexpr (Stream) _mm512_stream_ps(p, v);
  else _mm512_storeu_ps(p, v);
}
// The 16-bit patterns store16 writes for 16 float32 values.
LOWBIT_AVX512 inline __m256i bits16(const bf16*, __m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FFF));
  return _mm512_cvtepi32_epi16(r);
}
LOWBIT_AVX512 inline __m256i bits16(const f16*, __m512 v) {
  const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256i nan = _mm256_movm_epi16(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(h, _mm256_set1_epi16(0x7FFF), nan);
}
template <bool Stream = false>
LOWBIT_AVX512 inline void store16(bf16* p, __m512 v) {
  avx2::detail::put32<Stream>(p, bits16(p, v));
}
template <bool Stream = false>
LOWBIT_AVX512 inline void store16(f16* p, __m512 v) {
  avx2::detail::put32<Stream>(p, bits16(p, v));
}
// Elements 0..15 (a) and 16..31 (b) as store16 writes them, 16-bit outputs in one 64-byte store.
template <bool Stream = false>
LOWBIT_AVX512 inline void store32(float* p, __m512 a, __m512 b) {
  store16<Stream>(p, a);
  store16<Stream>(p + 16, b);
}
template <bool Stream = false, class T>
LOWBIT_AVX512 inline void store32(T* p, __m512 a, __m512 b) {
  const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(bits16(p, a)), bits16(p, b), 1);
  if constexpr (Stream) _mm512_stream_si512(reinterpret_cast<__m512i*>(p), w);
  else _mm512_storeu_si512(p, w);
}

// Elements 0..15 (a) and 16..31 (b) as bfloat16, the bits two store16 calls write. vcvtne2ps2bf16
// rounds to nearest even as store16 does, but reads subnormal inputs as zero and keeps NaN
// payloads, so a pair with a NaN or subnormal lane goes through store16 instead. `check`: test
// for such lanes; false only where the caller knows there are none. Stream: p 64-byte aligned.
template <bool Stream>
LOWBIT_AVX512_BF16 inline void store32_native(bf16* p, __m512 a, __m512 b, bool check) {
  constexpr int nan_or_subnormal = 0x01 | 0x20 | 0x80;  // fpclass: QNaN, denormal, SNaN
  if (check && (_mm512_fpclass_ps_mask(a, nan_or_subnormal) | _mm512_fpclass_ps_mask(b, nan_or_subnormal)) != 0) {
    store16<Stream>(p, a);
    store16<Stream>(p + 16, b);
    return;
  }
  const __m512i r = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));  // b: high half
  if constexpr (Stream) _mm512_stream_si512(reinterpret_cast<__m512i*>(p), r);
  else _mm512_storeu_si512(p, r);
}

// The permutation of halve_blocks<D>: result lane l = j (D / 2) + e takes dword e of block j
// (a's blocks first, then b's; vpermt2d index bit 4 selects b); add D / 2 for the upper halves.
template <int D>
struct halve_index {
  int lo[16];
  constexpr halve_index() : lo{} {
    for (int l = 0; l < 16; ++l) {
      const int j = l / (D / 2), e = l % (D / 2), g = 16 / D;
      lo[l] = (j < g ? 0 : 16) + (j % g) * D + e;
    }
  }
};
template <int D>
inline constexpr halve_index<D> halve_index_v{};

// One step of a transposed max: a and b each hold 16 / D blocks of D dwords; the result holds
// their 32 / D blocks (a's, then b's) of D / 2 dwords, the max of each block's two halves, taken
// on 16-bit words (Words) or on dwords.
template <int D, bool Words>
LOWBIT_AVX512 inline __m512i halve_blocks(__m512i a, __m512i b) {
  const __m512i lo = _mm512_loadu_si512(halve_index_v<D>.lo);
  const __m512i x = _mm512_permutex2var_epi32(a, lo, b), y = _mm512_permutex2var_epi32(a, _mm512_add_epi32(lo, _mm512_set1_epi32(D / 2)), b);
  return Words ? _mm512_max_epu16(x, y) : _mm512_max_epu32(x, y);
}

}  // namespace detail

/// absmax_run of 16 blocks of 16 or 32 elements at x (|x| patterns, no NaN/Inf check) reduced
/// side by side: the blocks' partial maxima transposed into fewer registers at every step
/// (detail::halve_blocks) instead of one horizontal reduction per block, which had cost more
/// than the loads for NVFP4's and MX's small blocks. Returns the 16 maxima as float32 bit
/// patterns (exact: a 16-bit value widened).
template <class T>
LOWBIT_AVX512 inline __m512i absmax16_blocks(const T* x, std::int64_t bs) {
  if constexpr (sizeof(T) == 2) {
    const __m512i abs_mask = _mm512_set1_epi16(0x7FFF);
    __m512i r[8];  // r[k]: blocks 2k, 2k + 1, 16 words (8 dwords) each
    LOWBIT_HOST_UNROLL for (int k = 0; k < 8; ++k) {
      if (bs == 16) {
        r[k] = _mm512_and_si512(_mm512_loadu_si512(x + 32 * k), abs_mask);
      } else {
        const __m512i a = _mm512_and_si512(_mm512_loadu_si512(x + 64 * k), abs_mask);
        const __m512i b = _mm512_and_si512(_mm512_loadu_si512(x + 64 * k + 32), abs_mask);
        r[k] = _mm512_max_epu16(_mm512_shuffle_i64x2(a, b, 0x44), _mm512_shuffle_i64x2(a, b, 0xEE));
      }
    }
    LOWBIT_HOST_UNROLL for (int k = 0; k < 4; ++k) r[k] = detail::halve_blocks<8, true>(r[2 * k], r[2 * k + 1]);
    LOWBIT_HOST_UNROLL for (int k = 0; k < 2; ++k) r[k] = detail::halve_blocks<4, true>(r[2 * k], r[2 * k + 1]);
    const __m512i d = detail::halve_blocks<2, true>(r[0], r[1]);                         // dword b: two maxima of block b
    const __m512i w = _mm512_and_si512(_mm512_max_epu16(d, _mm512_srli_epi32(d, 16)), _mm512_set1_epi32(0xFFFF));
    if constexpr (std::is_same<T, bf16>::value) return _mm512_slli_epi32(w, 16);
    return _mm512_castps_si512(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(w)));
  } else {
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i r[16];  // r[k]: block k, 16 dwords
    LOWBIT_HOST_UNROLL for (int k = 0; k < 16; ++k) {
      r[k] = _mm512_and_si512(_mm512_castps_si512(detail::load16(x + bs * k)), abs_mask);
      if (bs == 32) r[k] = _mm512_max_epu32(r[k], _mm512_and_si512(_mm512_castps_si512(detail::load16(x + bs * k + 16)), abs_mask));
    }
    LOWBIT_HOST_UNROLL for (int k = 0; k < 8; ++k) r[k] = detail::halve_blocks<16, false>(r[2 * k], r[2 * k + 1]);
    LOWBIT_HOST_UNROLL for (int k = 0; k < 4; ++k) r[k] = detail::halve_blocks<8, false>(r[2 * k], r[2 * k + 1]);
    LOWBIT_HOST_UNROLL for (int k = 0; k < 2; ++k) r[k] = detail::halve_blocks<4, false>(r[2 * k], r[2 * k + 1]);
    return detail::halve_blocks<2, false>(r[0], r[1]);
  }
}

/// Max |x| of `nblocks` consecutive full blocks of `bs` elements (bs a multiple of 16) into
/// absmax[0 .. nblocks). Returns false if any element is NaN or Inf (absmax is then unspecified
/// and the caller rescans with the portable code).
template <class T>
LOWBIT_AVX512 bool absmax_run(const T* x, std::int64_t nblocks, std::int64_t bs, float* absmax, std::int64_t prefetch_ahead = 0) {
  // with prefetch_ahead > 0, the input that many elements past each 64 bytes read is prefetched
  const std::uintptr_t ahead = prefetch_ahead > 0 ? static_cast<std::uintptr_t>(prefetch_ahead) * sizeof(T) : 0;
  std::int64_t b0 = 0;
  if (bs == 16 || bs == 32) {  // 16 small blocks at a time (absmax16_blocks)
    // any pattern at or above the Inf one (as a float32) is a non-finite element
    __m512i top = _mm512_setzero_si512();
    for (; b0 + 16 <= nblocks; b0 += 16) {
      const T* p = x + b0 * bs;
      if (ahead) avx2::detail::prefetch_ahead(p, ahead, static_cast<std::size_t>(16 * bs) * sizeof(T));
      const __m512i m = absmax16_blocks(p, bs);
      top = _mm512_max_epu32(top, m);
      _mm512_storeu_si512(absmax + b0, m);
    }
    if (_mm512_cmpgt_epu32_mask(top, _mm512_set1_epi32(0x7F7FFFFF)) != 0) return false;
    x += b0 * bs;
    absmax += b0;
    nblocks -= b0;
  }
  if constexpr (sizeof(T) == 2) {
    // the same max on the 16-bit patterns themselves, 32 lanes per instruction, no widening:
    // |x| patterns order as the magnitudes do, with NaN and Inf above every finite value
    const __m512i abs_mask = _mm512_set1_epi16(0x7FFF);
    const std::uint16_t inf = std::is_same<T, f16>::value ? 0x7C00 : 0x7F80;
    __m512i all = _mm512_setzero_si512();
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const T* p = x + b * bs;
      __m512i amax = _mm512_setzero_si512();
      std::int64_t i = 0;
      for (; i + 32 <= bs; i += 32) {
        if (ahead) avx2::detail::prefetch_ahead(p + i, ahead, 64);
        amax = _mm512_max_epu16(amax, _mm512_and_si512(_mm512_loadu_si512(p + i), abs_mask));
      }
      if (i < bs)  // a block of 16 (NVFP4's tiles), or its last 16
        amax = _mm512_max_epu16(amax, _mm512_and_si512(_mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i))), abs_mask));
      all = _mm512_max_epu16(all, amax);
      const __m256i m = _mm256_max_epu16(_mm512_castsi512_si256(amax), _mm512_extracti64x4_epi64(amax, 1));
      const __m128i h = _mm_max_epu16(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
      // the largest of 8 lanes as the complement of the smallest complement (phminposuw)
      const int top = ~_mm_cvtsi128_si32(_mm_minpos_epu16(_mm_xor_si128(h, _mm_set1_epi16(-1)))) & 0xFFFF;
      absmax[b] = to_float(T{static_cast<std::uint16_t>(top)});  // exact
    }
    return _mm512_cmpge_epu16_mask(all, _mm512_set1_epi16(static_cast<short>(inf))) == 0;
  } else {
    const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    __m512i all = _mm512_setzero_si512();
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const T* p = x + b * bs;
      // max of |x| as integers: the order of non-negative floats, with NaN/Inf above every finite
      __m512i amax = _mm512_setzero_si512();
      std::int64_t i = 0;
      for (; i + 32 <= bs; i += 32) {
        if (ahead) avx2::detail::prefetch_ahead(p + i, ahead, 128);
        const __m512 v0 = detail::load16(p + i), v1 = detail::load16(p + i + 16);
        amax = _mm512_max_epu32(amax, _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v0), abs_mask),
                                                       _mm512_and_si512(_mm512_castps_si512(v1), abs_mask)));
      }
      if (i < bs) amax = _mm512_max_epu32(amax, _mm512_and_si512(_mm512_castps_si512(detail::load16(p + i)), abs_mask));
      all = _mm512_max_epu32(all, amax);
      // finite non-negative floats order as their bit patterns, so a float max of them is exact
      absmax[b] = avx2::detail::hmax(_mm256_castsi256_ps(detail::fold_max_epu32(amax)));
    }
    // any lane at or above the Inf pattern held a non-finite element
    return _mm512_cmpgt_epu32_mask(all, _mm512_set1_epi32(0x7F7FFFFF)) == 0;
  }
}

/// quant::make_encoder<F> of `n` blocks from their finite absmax values, 16 at a time: the stored
/// scale into scale[0 .. n) and the encoding multiplier into inv[0 .. n), both 0 for a zero
/// block (absmax 0, or a multiplier that overflows). Formats without a zero point.
template <format F>
LOWBIT_AVX512 void scales_run(const float* absmax, std::int64_t n, float* scale, float* inv) {
  static_assert(!info(F).zero_point, "uint8_zeropoint takes quant::make_encoder");
  const quant::encoder_constants c = quant::encoder_constants_of<F>();  // inv = code_max / absmax
  const __m512 vnum = _mm512_set1_ps(c.code_max), vden = _mm512_set1_ps(c.scale_divisor);
  const __m512 fmax = _mm512_set1_ps(3.40282347e38f);
  for (std::int64_t b = 0; b < n; b += 16) {
    const __mmask16 lanes = n - b >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (n - b)) - 1u);
    const __m512 a = _mm512_maskz_loadu_ps(lanes, absmax + b);
    const __m512 i = _mm512_div_ps(vnum, a);
    const __mmask16 ok = _mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_GT_OQ) & _mm512_cmp_ps_mask(i, fmax, _CMP_LE_OQ);
    const __m512 sc = c.scale_divisor == 1.0f ? a : _mm512_div_ps(a, vden);
    _mm512_mask_storeu_ps(scale + b, lanes, _mm512_maskz_mov_ps(ok, sc));
    _mm512_mask_storeu_ps(inv + b, lanes, _mm512_maskz_mov_ps(ok, i));
  }
}

namespace detail {
/// encode_run's loop over `steps` steps of 32 elements: with Two, two blocks of 16 a step (block 2 s
/// and 2 s + 1, each 16 lanes with its multiplier), else one block of 32 (block s). (A function
/// rather than a lambda: nvcc's host pass drops a lambda's target attribute.)
template <format F, bool Two, class T>
LOWBIT_AVX512 void encode_steps32(const T* x, std::int64_t steps, const float* inv, std::uint8_t* out, std::uintptr_t ahead,
                                  const thresholds& th) {
  constexpr bool four = info(F).bits == 4;
  constexpr std::uint8_t z = quant::scheme<F>::zero_code;
  const __m128i zz = _mm_set1_epi8(static_cast<char>(quant::scheme<F>::zero_byte));  // a zero step's bytes
  const __m512i zc = _mm512_set1_epi32(z);
  for (std::int64_t s = 0; s < steps; ++s) {
    const T* p = x + s * 32;
    std::uint8_t* o = four ? out + s * 16 : out + s * 32;
    if (ahead) avx2::detail::prefetch_ahead(p, ahead, 32 * sizeof(T));
    const float i0 = Two ? inv[2 * s] : inv[s], i1 = Two ? inv[2 * s + 1] : i0;  // each half's
    const bool live0 = i0 > 0.0f, live1 = i1 > 0.0f;  // a block with inv 0 (or NaN): zero codes
    if (!live0 && !live1) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), zz);
      if constexpr (!four) _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), zz);
      continue;
    }
    __m512i c0, c1;  // the codes of 16 lanes each, paired up lane by lane if pairs
    constexpr bool pairs = std::is_same_v<T, bf16>;
    if constexpr (pairs) {
      // bfloat16: the even and odd elements of one load (lanes 0-7 of each the first 16
      // elements', 8-15 the last 16's), whose codes pair up lane by lane: one narrowing of
      // the packed pairs
      const bf16_halves h = load_bf16_halves(p);
      const __m512 m = Two ? _mm512_insertf32x8(_mm512_set1_ps(i0), _mm256_set1_ps(i1), 1) : _mm512_set1_ps(i0);
      c0 = codes16<F>(_mm512_mul_ps(h.even, m), th);
      c1 = codes16<F>(_mm512_mul_ps(h.odd, m), th);
      if (!(live0 && live1)) {
        const __mmask16 live = static_cast<__mmask16>((live0 ? 0x00FFu : 0u) | (live1 ? 0xFF00u : 0u));
        c0 = _mm512_mask_mov_epi32(zc, live, c0);
        c1 = _mm512_mask_mov_epi32(zc, live, c1);
      }
    } else {
      c0 = codes16<F>(_mm512_mul_ps(load16(p), _mm512_set1_ps(i0)), th);
      c1 = codes16<F>(_mm512_mul_ps(load16(p + 16), _mm512_set1_ps(i1)), th);
      if (!(live0 && live1)) {
        c0 = live0 ? c0 : zc;
        c1 = live1 ? c1 : zc;
      }
    }
    if constexpr (pairs && four) {
      const __m512i pair = info(F).order == codecs::nibble_order::high_first ? _mm512_or_si512(_mm512_slli_epi32(c0, 4), c1)
                                                                            : _mm512_or_si512(c0, _mm512_slli_epi32(c1, 4));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm512_cvtepi32_epi8(pair));
    } else if constexpr (pairs) {
      const __m512i pair = _mm512_or_si512(_mm512_and_si512(c0, _mm512_set1_epi32(0xFF)), _mm512_slli_epi32(c1, 8));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm512_cvtepi32_epi16(pair));
    } else if constexpr (four) {
      store_nibbles32<info(F).order>(o, c0, c1);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm512_cvtepi32_epi8(c0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 16), _mm512_cvtepi32_epi8(c1));
    }
  }
}
}  // namespace detail

/// Encodes `nblocks` full blocks of `bs` elements (bs a multiple of 16, the first element even)
/// with block b's multiplier inv[b] (as scales_run gives it); a block with inv 0 is a zero block
/// and gets the format's zero code. `prefetch_ahead` as avx2::encode_run's.
template <format F, class T>
LOWBIT_AVX512 void encode_run(const T* x, std::int64_t nblocks, std::int64_t bs, const float* inv, std::uint8_t* out,
                              std::int64_t prefetch_ahead = 0) {
  static_assert(detail::has_encode_kernel<F>(), "encode_run: no run encoder for this format");
  const std::uintptr_t ahead = prefetch_ahead > 0 ? static_cast<std::uintptr_t>(prefetch_ahead) * sizeof(T) : 0;
  constexpr bool four = info(F).bits == 4;
  const detail::thresholds th = detail::make_thresholds<F>();
  constexpr std::uint8_t zero_byte = quant::scheme<F>::zero_byte;  // a zero block's bytes
  constexpr float k = detail::encode_prescale<F>();
  if ((bs == 32 || (bs == 16 && sizeof(T) == 2)) && k == 1.0f) {
    // steps of 32 elements: one block of 32 (MX) or, from 16-bit input, two blocks of 16 (NVFP4)
    // with a multiplier for each 16 lanes, in one loop over all of them, so that the constants of
    // codes16 and the nibble packing stay in registers (in the general loop below GCC rebuilt
    // them, a dozen broadcasts, for every block: a third of the instructions of a 32-element
    // block). Two blocks of 16 a step share the narrowing and packing: from L2, bfloat16 NVFP4
    // took 0.32 ns an element with a block a step, 0.19 so, and lowbit_bench's quantize/nvfp4/bf16
    // 9.8-10.1 -> 11.0-11.6 GB/s. Float32 blocks of 16 keep a block a step (below): paired, they
    // too were faster from L2 (0.30 -> 0.21 ns) but 5-10% slower at 64M elements (26-27 -> 28-30
    // ms), where they wait on memory.
    const std::int64_t steps = nblocks * bs / 32;
    if (bs == 32) detail::encode_steps32<F, false>(x, steps, inv, out, ahead, th);
    else detail::encode_steps32<F, true>(x, steps, inv, out, ahead, th);
    if (steps * 32 == nblocks * bs) return;
    // an odd count of blocks of 16: the last one below
    x += steps * 32;
    out += four ? steps * 16 : steps * 32;
    inv += steps * 2;
    nblocks = 1;
  }
  if (bs == 16 && k == 1.0f) {  // float32 blocks of 16 (see above), a block a step
    const __m128i zz = _mm_set1_epi8(static_cast<char>(zero_byte));
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const T* p = x + b * 16;
      std::uint8_t* o = four ? out + b * 8 : out + b * 16;
      if (ahead) avx2::detail::prefetch_ahead(p, ahead, 16 * sizeof(T));
      __m128i c = zz;  // one code a byte, or for 4-bit formats the 8 bytes of packed pairs
      if (inv[b] > 0.0f) {
        c = _mm512_cvtepi32_epi8(detail::codes16<F>(_mm512_mul_ps(detail::load16(p), _mm512_set1_ps(inv[b])), th));
        if constexpr (four) {
          const __m128i even = _mm_and_si128(c, _mm_set1_epi16(0x00FF)), odd = _mm_srli_epi16(c, 8);
          const __m128i pairs = info(F).order == codecs::nibble_order::high_first ? _mm_or_si128(_mm_slli_epi16(even, 4), odd)
                                                                                  : _mm_or_si128(even, _mm_slli_epi16(odd, 4));
          c = _mm_packus_epi16(pairs, pairs);
        }
      }
      if constexpr (four) {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(o), c);
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o), c);
      }
    }
    return;
  }
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const T* p = x + b * bs;
    std::uint8_t* o = four ? out + b * bs / 2 : out + b * bs;
    if (!(inv[b] > 0.0f)) {
      // the zero codes stored inline: a call to memset here made GCC rebuild the loop's
      // constants (a dozen broadcasts) for every block, zero or not
      const std::int64_t nbytes = four ? bs / 2 : bs;
      const __m128i zz = _mm_set1_epi8(static_cast<char>(zero_byte));
      std::int64_t j = 0;
      for (; j + 16 <= nbytes; j += 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(o + j), zz);
      for (; j < nbytes; ++j) o[j] = zero_byte;
      if (ahead) avx2::detail::prefetch_ahead(p, ahead, static_cast<std::size_t>(bs) * sizeof(T));
      continue;
    }
    // codes16 takes x inv times the prescale k (16 for NF4): x (k inv) is k (x inv) exactly
    // where x inv is a normal float; where it is subnormal or zero both are within 2^-122 of 0,
    // far from every threshold, so the codes are the same. When k inv overflows (NF4: inv of
    // 2^124 or more, block maxima of 2^-124 or less) the block takes x inv, then times k (exact).
    float mk = inv[b] * k;
    const bool rescale = k != 1.0f && !(mk < std::numeric_limits<float>::infinity());
    if (rescale) mk = inv[b];
    const __m512 m = _mm512_set1_ps(mk);
    std::int64_t i = 0;
    for (; i + 32 <= bs; i += 32) {
      if (ahead) avx2::detail::prefetch_ahead(p + i, ahead, 32 * sizeof(T));
      __m512 v0 = _mm512_mul_ps(detail::load16(p + i), m), v1 = _mm512_mul_ps(detail::load16(p + i + 16), m);
      if (rescale) {
        v0 = _mm512_mul_ps(v0, _mm512_set1_ps(k));
        v1 = _mm512_mul_ps(v1, _mm512_set1_ps(k));
      }
      const __m512i c0 = detail::codes16<F>(v0, th);
      const __m512i c1 = detail::codes16<F>(v1, th);
      if constexpr (four) {
        detail::store_nibbles32<info(F).order>(o + i / 2, c0, c1);
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), _mm512_cvtepi32_epi8(c0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i + 16), _mm512_cvtepi32_epi8(c1));
      }
    }
    if (i < bs) {  // a block of 16 (NVFP4's tiles), or its last 16
      if (ahead) avx2::detail::prefetch_ahead(p + i, ahead, 16 * sizeof(T));
      __m512 v = _mm512_mul_ps(detail::load16(p + i), m);
      if (rescale) v = _mm512_mul_ps(v, _mm512_set1_ps(k));
      const __m128i c = _mm512_cvtepi32_epi8(detail::codes16<F>(v, th));  // one code a byte
      if constexpr (four) {
        const __m128i even = _mm_and_si128(c, _mm_set1_epi16(0x00FF)), odd = _mm_srli_epi16(c, 8);
        const __m128i pairs = info(F).order == codecs::nibble_order::high_first ? _mm_or_si128(_mm_slli_epi16(even, 4), odd)
                                                                                : _mm_or_si128(even, _mm_slli_epi16(odd, 4));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(o + i / 2), _mm_packus_epi16(pairs, pairs));
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), c);
      }
    }
  }
}

namespace detail {

// Elements of a run that the decode takes at a time: a piece in which the arithmetic path met a
// special code is decoded again, block by block, the exact path where a block needs it.
inline constexpr std::int64_t decode_piece = 1 << 10;

// True if decode_range_bf16 can skip its check for a block with this scale: without special codes
// every value before the scale is 0 or at least 2^-14 in magnitude (int8: 1/127, uint8: 1,
// e4m3fn: 2^-6, e5m2: 2^-14) and finite; times a zero or a finite scale of at least 2^-100 the
// products are 0, normal or (by overflow) Inf, never NaN or subnormal.
inline bool scale_safe(float scale) {
  const std::uint32_t a = float_bits(scale) & 0x7FFFFFFFu;  // |scale|; 0x0D800000 = 2^-100
  return a == 0 || a - 0x0D800000u < 0x7F800000u - 0x0D800000u;
}

// Elements e0 .. e1 (multiples of 32) of a run of blocks of bs into out + e0 .. (store16 per 16
// values); element e has scale scales[e / bs]. Returns false if the arithmetic path (Exact false,
// e4m3fn/e5m2) met a special code: the piece's values are then not all right.
template <format F, bool Exact, bool Stream, class T>
LOWBIT_AVX512 inline bool decode_range(const std::uint8_t* codes, std::int64_t e0, std::int64_t e1, std::int64_t bs,
                                       const float* scales, const int* zps, const values_table& t, T* out) {
  constexpr bool keys = !Exact && (F == format::e4m3fn || F == format::e5m2);
  __m256i smallest = _mm256_set1_epi8(-1);
  for (std::int64_t e = e0, b = e0 / bs; e < e1; ++b) {
    const std::int64_t end = std::min(e1, (b + 1) * bs);
    const __m512 s = _mm512_set1_ps(scales[b]), z = _mm512_set1_ps(static_cast<float>(zps[b]));
    for (; e < end; e += 32) {
      avx2::detail::prefetch_stream_step(codes, static_cast<std::uintptr_t>(e), 32);
      if constexpr (keys) smallest = _mm256_min_epu8(smallest, special_keys<F>(codes + e));
      __m512 lo, hi;
      values32<F, Exact>(codes + e, t, lo, hi);
      store16<Stream>(out + e, finish<F>(lo, s, z));
      store16<Stream>(out + e + 16, finish<F>(hi, s, z));
    }
  }
  if constexpr (keys) return !special_key_seen<F>(smallest);
  return true;
}

// decode_range for bfloat16 through store32_native, which checks the values of blocks whose
// scale is not scale_safe (and all on the exact path).
template <format F, bool Exact, bool Stream>
LOWBIT_AVX512_BF16 inline bool decode_range_bf16(const std::uint8_t* codes, std::int64_t e0, std::int64_t e1,
                                                 std::int64_t bs, const float* scales, const int* zps,
                                                 const values_table& t, bf16* out) {
  constexpr bool keys = !Exact && (F == format::e4m3fn || F == format::e5m2);
  __m256i smallest = _mm256_set1_epi8(-1);
  for (std::int64_t e = e0, b = e0 / bs; e < e1; ++b) {
    const std::int64_t end = std::min(e1, (b + 1) * bs);
    const __m512 s = _mm512_set1_ps(scales[b]), z = _mm512_set1_ps(static_cast<float>(zps[b]));
    const bool check = Exact || !scale_safe(scales[b]);
    for (; e < end; e += 32) {
      avx2::detail::prefetch_stream_step(codes, static_cast<std::uintptr_t>(e), 32);
      if constexpr (keys) smallest = _mm256_min_epu8(smallest, special_keys<F>(codes + e));
      __m512 lo, hi;
      values32<F, Exact>(codes + e, t, lo, hi);
      store32_native<Stream>(out + e, finish<F>(lo, s, z), finish<F>(hi, s, z), check);
    }
  }
  if constexpr (keys) return !special_key_seen<F>(smallest);
  return true;
}

// Decodes a run of nblocks blocks of bs piece by piece: range(exact, e0, e1) decodes elements
// e0 .. e1 on the arithmetic (exact false) or exact path and returns decode_range's answer. A
// piece whose arithmetic decode met a special code is decoded again block by block, the exact
// path for the blocks that hold one (after a fence, so that the second stores land last).
template <format F, bool Stream, class Range>
LOWBIT_AVX512 inline void decode_pieces(const std::uint8_t* codes, std::int64_t nblocks, std::int64_t bs, Range&& range) {
  const std::int64_t n = nblocks * bs;
  for (std::int64_t e0 = 0; e0 < n; e0 += decode_piece) {
    const std::int64_t e1 = std::min(n, e0 + decode_piece);
    if (range(false, e0, e1)) continue;
    if constexpr (F == format::e4m3fn || F == format::e5m2) {
      if (Stream) avx2::store_fence();
      for (std::int64_t b = e0 / bs; b * bs < e1; ++b) {
        const std::int64_t s0 = std::max(e0, b * bs), s1 = std::min(e1, (b + 1) * bs);
        if (special_codes<F>(codes + s0, s1 - s0)) range(true, s0, s1);
      }
    }
  }
}

}  // namespace detail

/// As avx2::decode_run for the formats of detail::has_decode_kernel (8-bit codes, `bs` a
/// multiple of 32): block b's codes decoded with scales[b] and zero point zps[b]; Stream as there.
/// e4m3fn/e5m2 take the arithmetic path, and the exact one for blocks with special codes
/// (detail::decode_pieces).
template <format F, class T, bool Stream = false>
LOWBIT_AVX512 void decode_run(const std::uint8_t* codes, std::int64_t nblocks, std::int64_t bs, const float* scales,
                              const int* zps, T* out) {
  if constexpr (!detail::has_decode_kernel<F>()) {
    (void)codes, (void)nblocks, (void)bs, (void)scales, (void)zps, (void)out;
  } else {
    const detail::values_table t = detail::make_values_table<F>();
    detail::decode_pieces<F, Stream>(codes, nblocks, bs, [&](bool exact, std::int64_t e0, std::int64_t e1) {
      return exact ? detail::decode_range<F, true, Stream>(codes, e0, e1, bs, scales, zps, t, out)
                   : detail::decode_range<F, false, Stream>(codes, e0, e1, bs, scales, zps, t, out);
    });
  }
}

/// decode_run for bfloat16 output on CPUs with bf16_available(): the same bits, 32 elements per
/// conversion instruction.
template <format F, bool Stream = false>
LOWBIT_AVX512_BF16 void decode_run_bf16(const std::uint8_t* codes, std::int64_t nblocks, std::int64_t bs,
                                        const float* scales, const int* zps, bf16* out) {
  if constexpr (!detail::has_decode_kernel<F>()) {
    (void)codes, (void)nblocks, (void)bs, (void)scales, (void)zps, (void)out;
  } else {
    const detail::values_table t = detail::make_values_table<F>();
    detail::decode_pieces<F, Stream>(codes, nblocks, bs, [&](bool exact, std::int64_t e0, std::int64_t e1) {
      return exact ? detail::decode_range_bf16<F, true, Stream>(codes, e0, e1, bs, scales, zps, t, out)
                   : detail::decode_range_bf16<F, false, Stream>(codes, e0, e1, bs, scales, zps, t, out);
    });
  }
}

namespace detail {
// error_sums' four lane sums in registers, float32 (max |d|, sum |d|, sum x^2, sum d^2);
// error_step adds 16 elements of x and y, element l into lane l.
struct error_acc {
  __m512 mx, ab, sq, se;
};
LOWBIT_AVX512 inline error_acc load_error_acc(const float (*acc)[16]) {
  return {_mm512_loadu_ps(acc[0]), _mm512_loadu_ps(acc[1]), _mm512_loadu_ps(acc[2]), _mm512_loadu_ps(acc[3])};
}
LOWBIT_AVX512 inline void store_error_acc(const error_acc& a, float (*acc)[16]) {
  _mm512_storeu_ps(acc[0], a.mx);
  _mm512_storeu_ps(acc[1], a.ab);
  _mm512_storeu_ps(acc[2], a.sq);
  _mm512_storeu_ps(acc[3], a.se);
}
// v unchanged, opaque to the optimizer: the multiply that made it is not contracted into the
// subtraction that uses it (as lowbit::detail::opaque).
LOWBIT_AVX512 inline __m512 opaque(__m512 v) {
  __asm__("" : "+v"(v));
  return v;
}
LOWBIT_AVX512 inline void error_step(error_acc& a, __m512 xs, __m512 ys) {
  const __m512 d = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), _mm512_sub_ps(xs, ys));
  a.mx = _mm512_max_ps(d, a.mx);  // d NaN: keeps the running max, as std::max(max, d)
  a.ab = _mm512_add_ps(a.ab, d);
  a.sq = _mm512_fmadd_ps(xs, xs, a.sq);
  a.se = _mm512_fmadd_ps(d, d, a.se);
}

// The 32 4-bit codes packed in the 16 bytes at p as int32, in element order: elements 0..15 into
// lo, 16..31 into hi.
template <codecs::nibble_order Order>
LOWBIT_AVX512 inline void nibbles32(const std::uint8_t* p, __m512i& lo, __m512i& hi) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(15);
  const __m128i h = _mm_and_si128(_mm_srli_epi16(b, 4), m), l = _mm_and_si128(b, m);
  const __m128i even = Order == codecs::nibble_order::high_first ? h : l;  // element 2j
  const __m128i odd = Order == codecs::nibble_order::high_first ? l : h;
  lo = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(even, odd));
  hi = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(even, odd));
}
}  // namespace detail

/// As avx2::error_sums, 16 elements a step: elements i..i+15 go to lanes 0..15, so every lane
/// sums the same elements in the same order as the AVX2 and portable loops. Takes the first
/// floor(n/16)*16 elements.
template <class T>
LOWBIT_AVX512 std::int64_t error_sums(const T* x, const float* y, std::int64_t n, float (*acc)[16]) {
  const std::int64_t m = n & ~std::int64_t{15};
  if (m == 0) return 0;
  detail::error_acc a = detail::load_error_acc(acc);
  for (std::int64_t i = 0; i < m; i += 16) detail::error_step(a, detail::load16(x + i), _mm512_loadu_ps(y + i));
  detail::store_error_acc(a, acc);
  return m;
}

/// Formats whose codes error_run decodes: the 4-bit ones (by `table`) and those of
/// has_decode_kernel.
template <format F>
constexpr bool has_error_kernel() {
  return info(F).bits == 4 || detail::has_decode_kernel<F>();
}

/// error_sums of `nblocks` full blocks of `bs` elements (a multiple of 32) of x against their
/// dequantization from `codes` (the first block's), block b with scales[b] and zero point zps[b],
/// decoded in registers to the float32 values decode_run writes and summed as error_sums sums
/// them (element i of the run into lane i % 16). A slice of one block is a block of its own
/// length here (nblocks 1, `bs` the slice's length, its block's scale). 4-bit formats decode
/// through `table` (16 values, the format's or a checkpoint's); the 8-bit formats of
/// has_decode_kernel as values32<F, true>.
template <format F, class T>
LOWBIT_AVX512 void error_run(const T* x, const std::uint8_t* codes, std::int64_t nblocks, std::int64_t bs, const float* scales,
                             const int* zps, const float* table, float (*acc)[16]) {
  static_assert(has_error_kernel<F>(), "error_run: no decode of this format's codes");
  constexpr bool four = info(F).bits == 4;
  detail::error_acc a = detail::load_error_acc(acc);
  const __m512 tab = _mm512_loadu_ps(table);
  const detail::values_table vt = detail::make_values_table<F>();
  for (std::int64_t b = 0; b < nblocks; ++b) {
    const __m512 s = _mm512_set1_ps(scales[b]);
    const __m512 zp = _mm512_set1_ps(static_cast<float>(zps[b]));
    const T* xb = x + b * bs;
    for (std::int64_t j = 0; j < bs; j += 32) {
      // x from memory is the stream this loop waits on (1.3-1.5x slower without, measured on 1 GB
      // of float16)
      avx2::detail::prefetch_ahead(xb + j, avx2::stream_ahead, 32 * sizeof(T));
      __m512 lo, hi;
      if constexpr (four) {
        __m512i l, h;
        detail::nibbles32<info(F).order>(codes + (b * bs + j) / 2, l, h);
        lo = _mm512_permutexvar_ps(l, tab);
        hi = _mm512_permutexvar_ps(h, tab);
      } else {
        detail::values32<F, true>(codes + b * bs + j, vt, lo, hi);
      }
      // the float32 values decode_run stores, not fused into error_step's subtraction
      detail::error_step(a, detail::load16(xb + j), detail::opaque(detail::finish<F>(lo, s, zp)));
      detail::error_step(a, detail::load16(xb + j + 16), detail::opaque(detail::finish<F>(hi, s, zp)));
    }
  }
  detail::store_error_acc(a, acc);
}

LOWBIT_AVX512_WARNINGS_POP

#else

inline bool available() noexcept { return false; }
template <class T>
bool absmax_run(const T*, std::int64_t, std::int64_t, float*, std::int64_t = 0) { return false; }
template <format F>
void scales_run(const float*, std::int64_t, float*, float*) {}
template <format F, class T>
void encode_run(const T*, std::int64_t, std::int64_t, const float*, std::uint8_t*, std::int64_t = 0) {}
template <format F, class T, bool Stream = false>
void decode_run(const std::uint8_t*, std::int64_t, std::int64_t, const float*, const int*, T*) {}
inline bool bf16_available() noexcept { return false; }
template <format F, bool Stream = false>
void decode_run_bf16(const std::uint8_t*, std::int64_t, std::int64_t, const float*, const int*, bf16*) {}
template <class T>
std::int64_t error_sums(const T*, const float*, std::int64_t, float (*)[16]) { return 0; }
namespace detail {
template <format F>
constexpr bool has_decode_kernel() {
  return false;
}
}  // namespace detail
template <format F>
constexpr bool has_error_kernel() {
  return false;
}
template <format F, class T>
void error_run(const T*, const std::uint8_t*, std::int64_t, std::int64_t, const float*, const int*, const float*, float (*)[16]) {}

#endif

}  // namespace avx512
}  // namespace host
LOWBIT_NAMESPACE_END
