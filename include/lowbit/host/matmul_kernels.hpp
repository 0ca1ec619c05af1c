// SPDX-License-Identifier: Apache-2.0
/// @file matmul_kernels.hpp
/// @brief The host kernels of the fused matmul (matmul/matmul.hpp), each with its ISA variants side
///        by side: the lane dots (portable, AVX2, AVX-512, AVX512_BF16) and the AVX-512 decode of
///        groups of codes into the lane layout.
///
/// @par Lane layout (one row of x or of W, K padded to a multiple of 1024; matmul/definition.hpp)
/// - compute f32: float `v[((j * 2 + g) * 32 + e) * 16 + t]` = element 1024 j + 512 g +
///   mm::step_offset(order, t, e): step e of thread 16 g + t in super-run j.
/// - compute bf16: uint32 `v[((j * 2 + g) * 16 + p) * 16 + t]` = the bf16-mode operand bits
///   (mm::bf16_operand_bits) of operand pair p of thread 16 g + t, its even element in the low half
///   and its odd one in the high half: the operand pairs of vdpbf16ps.
/// A dot of an x row with a W row in this layout walks each group's registers in order, so every
/// lane performs thread t's chain of matmul/definition.hpp in the order the layout was built in;
/// the kernels differ only in how many lanes one instruction covers. The values are the same on
/// every path (tests/host/matmul_test.cpp). The AVX-512 decoder below builds the lanes order.
#pragma once

#include "../format.hpp"
#include "../matmul/definition.hpp"
#include "../quant/blockwise.hpp"
#include "simd_avx2.hpp"
#include "simd_avx512.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>


LOWBIT_NAMESPACE_BEGIN
namespace host {
namespace mmk {

/// Floats (f32) or dwords (bf16) of one row in the lane layout.
constexpr std::int64_t lane_row_size(std::int64_t K, matmul_compute c) noexcept {
  return mm::super_runs(K) * (c == matmul_compute::f32 ? mm::super_elements : mm::super_elements / 2);
}

/// The portable lane dot: s[(a * nb + b) * 32 + thread] for x lane rows a < mb and W lane rows
/// b < nb, J super-runs. f32 mode (BF16 false): 32 FMAs per lane, group and super-run; bf16 mode:
/// 16 operand pairs, the odd element first, each step mm::fma_ftz. The reference every SIMD
/// variant equals.
template <bool BF16>
void dot_portable(const void* const* x, int mb, const void* const* w, int nb, std::int64_t J, float* s) {
  constexpr int steps = BF16 ? mm::run_elements / 2 : mm::run_elements;
  for (int a = 0; a < mb; ++a)
    for (int b = 0; b < nb; ++b)
      for (int g = 0; g < 2; ++g)
        for (int t = 0; t < mm::group_lanes; ++t) {
          float acc = 0.0f;
          for (std::int64_t j = 0; j < J; ++j)
            for (int e = 0; e < steps; ++e) {
              const std::int64_t o = ((j * 2 + g) * steps + e) * 16 + t;
              if constexpr (BF16) {
                const std::uint32_t xv = static_cast<const std::uint32_t*>(x[a])[o], wv = static_cast<const std::uint32_t*>(w[b])[o];
                acc = mm::fma_ftz(bits_float(xv & 0xFFFF0000u), bits_float(wv & 0xFFFF0000u), acc);
                acc = mm::fma_ftz(bits_float(xv << 16), bits_float(wv << 16), acc);
              } else {
                acc = std::fma(static_cast<const float*>(x[a])[o], static_cast<const float*>(w[b])[o], acc);
              }
            }
          s[(a * nb + b) * 32 + g * 16 + t] = acc;
        }
}

/// Formats decode_group_avx512 decodes (the others go through the portable run decoder); none
/// without the AVX-512 kernels.
template <format F>
constexpr bool has_group_decoder() {
  return LOWBIT_HAVE_AVX512_KERNELS && F != format::bnb_dynamic8;
}
/// Formats decode_group_avx2 decodes; none without the AVX2 kernels.
template <format F>
constexpr bool has_group_decoder_avx2() {
  return LOWBIT_HAVE_AVX2_KERNELS && F != format::bnb_dynamic8;
}

#if LOWBIT_HAVE_AVX512_KERNELS
LOWBIT_AVX512_WARNINGS_PUSH

// The dot kernels, the decoder, its sinks and the fused row kernels are compiled for AVX-512 with
// FMA and AVX512_BF16 so that the sinks inline into the decoder; vdpbf16ps and vcvtne2ps2bf16
// appear only in the bf16 variants, which run only where bf16_available(). No decoder operation
// is an add, so nothing contracts.
#  define LOWBIT_MM512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))

/// dot_portable<BF16> for MB x rows and NB W rows, 16 lanes per instruction (BF16 false: 32 FMAs
/// per group and super-run; BF16 true: 16 vdpbf16ps of 16 operand pairs). With carry, the chains
/// continue from the sums in s (a previous call's over the super-runs before these: the same FMAs
/// as one call over both, the accumulators only stored and reloaded). Only the groups g0 .. g1 - 1
/// (threads 16 g0 .. 16 g1 - 1) are computed.
template <int MB, int NB, bool BF16>
LOWBIT_MM512 void dot_avx512(const void* const* xv, const void* const* wv, std::int64_t J, float* s, bool carry = false, int g0 = 0,
                             int g1 = 2) {
  constexpr int steps = BF16 ? 16 : 32;  // 16-lane registers per group and super-run
  for (int g = g0; g < g1; ++g) {
    __m512 acc[MB][NB];
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a)
      LOWBIT_HOST_UNROLL for (int b = 0; b < NB; ++b) acc[a][b] = carry ? _mm512_loadu_ps(s + (a * NB + b) * 32 + g * 16) : _mm512_setzero_ps();
    for (std::int64_t j = 0; j < J; ++j) {
      const std::int64_t base = (j * 2 + g) * steps * 16;
      for (int e = 0; e < steps; ++e) {
        __m512 w[NB];
        LOWBIT_HOST_UNROLL for (int b = 0; b < NB; ++b) w[b] = _mm512_load_ps(static_cast<const float*>(wv[b]) + base + e * 16);
        LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) {
          __m512 x = _mm512_load_ps(static_cast<const float*>(xv[a]) + base + e * 16);
          __asm__("" : "+v"(x));  // one load per x word: GCC would fold it into each W row's FMA (2 loads per FMA: -14% at M = 16)
          LOWBIT_HOST_UNROLL for (int b = 0; b < NB; ++b) {
            if constexpr (BF16) acc[a][b] = _mm512_dpbf16_ps(acc[a][b], (__m512bh)x, (__m512bh)w[b]);
            else acc[a][b] = _mm512_fmadd_ps(x, w[b], acc[a][b]);
          }
        }
      }
    }
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a)
      LOWBIT_HOST_UNROLL for (int b = 0; b < NB; ++b) _mm512_storeu_ps(s + (a * NB + b) * 32 + g * 16, acc[a][b]);
  }
}

namespace detail {

// e4m3fn / e5m2 codes (int32 lanes 0..255) to their float32 values, as quant::decode_table:
// the magnitude bits moved into a float32 and scaled by 2^(127 - bias) (exact, subnormals too),
// then NaN (e4m3fn 0x7F) or Inf/NaN (e5m2 exponent 31) patched, the sign or-ed in.
template <format F>
LOWBIT_AVX512 inline __m512 minifloat_values(__m512i c) {
  using codec = typename quant::scheme<F>::codec;
  constexpr int M = codec::mantissa_bits;
  constexpr int special_bits = avx2::special_magnitude_bits<F>();
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
  __m512 v = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(mag, 23 - M)),
                           _mm512_castsi512_ps(_mm512_set1_epi32((127 + 127 - codec::bias) << 23)));
  const __mmask16 special = _mm512_cmpeq_epi32_mask(_mm512_and_si512(mag, _mm512_set1_epi32(special_bits)), _mm512_set1_epi32(special_bits));
  if constexpr (F == format::e4m3fn) {
    v = _mm512_mask_mov_ps(v, special, _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN()));
  } else {
    const __m512i inf_nan = _mm512_or_si512(_mm512_set1_epi32(0x7F800000), _mm512_slli_epi32(_mm512_and_si512(mag, _mm512_set1_epi32(3)), 21));
    v = _mm512_mask_mov_ps(v, special, _mm512_castsi512_ps(inf_nan));
  }
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(v), _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24)));
}

// minifloat_values<F> of the four bytes of each dword of 64 e4m3fn / e5m2 codes times `scale`,
// byte b into val[b], with fewer instructions: each code's sign and magnitude bits placed under
// float32's sign, exponent and mantissa by one arithmetic shift and a mask, then one multiply by
// scale 2^(127 - bias), computed first (exact: a power of two). The product of the same two reals
// as minifloat_values(c) * scale, so the same rounding, zeros and subnormals included. Returns
// false (val untouched) when one of the codes is NaN or Inf or scale 2^(127 - bias) is not finite
// (overflow, NaN): the caller then takes minifloat_values.
template <format F>
LOWBIT_AVX512 inline bool minifloat_values_scaled(__m512i v, float scale, __m512 (&val)[4]) {
  using codec = typename quant::scheme<F>::codec;
  constexpr int M = codec::mantissa_bits;
  constexpr std::uint32_t rebias = static_cast<std::uint32_t>(127 + 127 - codec::bias) << 23;
  float k;
  std::memcpy(&k, &rebias, sizeof k);
  const float sk = scale * k;
  // e4m3fn: NaN is magnitude 0x7F; e5m2: exponent 31 (Inf, NaN)
  const __m512i special = _mm512_set1_epi8(static_cast<char>(avx2::special_magnitude_bits<F>()));
  if (!(std::fabs(sk) <= std::numeric_limits<float>::max()) || _mm512_cmpeq_epi8_mask(_mm512_and_si512(v, special), special) != 0)
    return false;
  const __m512 m = _mm512_set1_ps(sk);
  // the code's byte at the top of the dword, shifted down M + 1 bits: its magnitude lands on
  // float32's exponent and mantissa, its sign fills the bits above, of which the mask keeps bit 31
  const __m512i keep = _mm512_set1_epi32(static_cast<int>(0x80000000u | (0x7Fu << (23 - M))));
  LOWBIT_HOST_UNROLL for (int b = 0; b < 4; ++b) {
    const __m512i top = b == 3 ? v : _mm512_slli_epi32(v, static_cast<unsigned>(24 - 8 * b));
    val[b] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(_mm512_srai_epi32(top, M + 1), keep)), m);
  }
  return true;
}

}  // namespace detail

namespace detail {
// The operand pair dwords of vdpbf16ps: element 2p in the low half, 2p + 1 in the high half, each
// mm::bf16_operand_bits by vcvtne2ps2bf16 (a float32 zero or subnormal gives a zero of its sign,
// NaN a quiet NaN, the rest nearest even), the two halves interleaved by one word permute.
LOWBIT_MM512 inline __m512i bf16_pair(__m512 even, __m512 odd) {
  const __m512i halves = (__m512i)_mm512_cvtne2ps_pbh(odd, even);  // words 0..15: even, 16..31: odd
  alignas(64) static constexpr std::uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                             8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(interleave), halves);
}

// bf16_pair of the float32 bit patterns even[0..16) and odd[0..16) into out[0..16) (tests).
LOWBIT_MM512 inline void bf16_pairs(const std::uint32_t* even, const std::uint32_t* odd, std::uint32_t* out) {
  _mm512_storeu_si512(out, bf16_pair(_mm512_castsi512_ps(_mm512_loadu_si512(even)), _mm512_castsi512_ps(_mm512_loadu_si512(odd))));
}

// Sinks of decode_groups_avx512: what happens to the decoded values of one group. An f32 sink
// (pairs false) takes step(e, v), lane t of v the value of thread t's step e; a bf16 sink (pairs
// true) takes pair(p, w), dword t of w thread t's operand pair p as bf16 bits (the even element in
// the low half).
struct store_f32 {  // the f32 lane layout
  static constexpr bool pairs = false;
  float* out;
  LOWBIT_MM512 void step(int e, __m512 v) { _mm512_store_ps(out + e * 16, v); }
};
struct store_bf16 {  // the bf16 lane layout
  static constexpr bool pairs = true;
  std::uint32_t* out;
  LOWBIT_MM512 void pair(int p, __m512i w) { _mm512_store_si512(out + p * 16, w); }
};
template <int MB>
struct fma_f32 {  // thread chains of MB x rows, f32 mode
  static constexpr bool pairs = false;
  const float* const* x;
  std::int64_t base;
  __m512 acc[MB];
  LOWBIT_MM512 void step(int e, __m512 v) {
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) acc[a] = _mm512_fmadd_ps(_mm512_load_ps(x[a] + base + e * 16), v, acc[a]);
  }
};
template <int MB>
struct dp_bf16 {  // thread chains of MB x rows, bf16 mode (vdpbf16ps)
  static constexpr bool pairs = true;
  const std::uint32_t* const* x;
  std::int64_t base;
  __m512 acc[MB];
  LOWBIT_MM512 void pair(int p, __m512i w) {
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a)
      acc[a] = _mm512_dpbf16_ps(acc[a], (__m512bh)_mm512_load_si512(x[a] + base + p * 16), (__m512bh)w);
  }
};
}  // namespace detail

/// The float32 values w of NG groups of 512 consecutive elements of W in the lanes order
/// (matmul/definition.hpp), group i's codes starting at codes[i] (8 chunks of 64 elements, each
/// inside one block), chunk c with scale scale[i][c] and zero point zp[i][c]: quant::decode_element
/// of each code, as dequantize. An f32 sink gets sinks[i].step(e, v) for e = 0..31 in order, a
/// bf16 sink sinks[i].pair(p, w) for p = 0..15 in order (operands rounded as
/// mm::bf16_operand_bits); the NG groups interleaved, their sinks being independent chains (one's
/// FMA latency hides behind the others'). `table` holds the 16 values of a 4-bit format's codes (its
/// own or a checkpoint's).
/// 4-bit codes: per chunk the 16 table values are multiplied by the chunk's scale once, so an
/// element costs a table lookup and no multiply: f32, vpmovzxwd gives thread t the 16 bits of its
/// 4 codes and a shift picks each (vpermps reads only the low 4 bits of an index); bf16, the
/// scaled table is rounded to bf16 in both halves of a register and vpmovzxbw gives each word one
/// byte, whose low nibble alone picks (vpermw reads the low 5 bits), so one lookup makes 16
/// operand pairs. The sinks are copied into registers for the call and back at its end.
template <format F, int NG, class Sink>
LOWBIT_MM512 void decode_groups_avx512(const std::uint8_t* const* codes, const float* const* scale, const int* const* zp, const float* table,
                                       Sink* sinks) {
  constexpr bool four = info(F).bits == 4;
  constexpr int chunks = mm::group_elements / mm::chunk_elements;
  Sink k[NG];
  // the weight streams from memory once: its lines 8 groups ahead (the GEMV's rows advance by two
  // groups a step, so 4 steps ahead), into L2 for 4-bit codes, L1 for 8-bit ones. Measured on the
  // M = 1 GEMVs, interleaved runs of lowbit_bench: 4-bit 2 KiB ahead took 4096 x 4096 nf4 from
  // 0.645-0.654 to 0.540-0.551 ms (f32) and 0.70-0.73 to 0.59-0.61 ms (bf16), 4 KiB or 1 KiB being
  // slower; 8-bit 4 KiB ahead beat 2, 6 and 8 KiB by 3-20%. L2 took 14336 x 4096 nf4 from 3.4 to
  // 3.1 ms, L1 int8 from 4.4-4.7 to 4.1-4.3 ms.
  constexpr std::uintptr_t ahead = 8 * mm::group_elements * info(F).bits / 8;
  LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) {
    k[i] = sinks[i];
    if constexpr (four) {
      avx2::detail::prefetch_ahead(codes[i], ahead, 4 * 64);
    } else {
      avx2::detail::prefetch_ahead<_MM_HINT_T0>(codes[i], ahead, 8 * 64);
    }
  }
  if constexpr (four) {
    const __m512 tab = _mm512_loadu_ps(table);
    constexpr bool high_first = info(F).order == codecs::nibble_order::high_first;
    LOWBIT_HOST_UNROLL for (int c = 0; c < chunks; ++c) {
      if constexpr (Sink::pairs) {
        // the unshifted byte's low nibble is the first code of each byte's pair (element 4 t + 1 of
        // thread t, or 4 t for low-nibble-first formats) and of the next byte (4 t + 3 or 4 t + 2)
        __m512i first[NG], second[NG];
        LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) {
          const __m512 tq = _mm512_mul_ps(tab, _mm512_set1_ps(scale[i][c]));
          const __m512i tb = (__m512i)_mm512_cvtne2ps_pbh(tq, tq);
          const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[i] + 32 * c)));
          first[i] = _mm512_permutexvar_epi16(w, tb);
          second[i] = _mm512_permutexvar_epi16(_mm512_srli_epi16(w, 4), tb);
        }
        LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) k[i].pair(2 * c, high_first ? second[i] : first[i]);
        LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) k[i].pair(2 * c + 1, high_first ? first[i] : second[i]);
      } else {
        __m512 tq[NG];
        __m512i w[NG];
        LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) {
          tq[i] = _mm512_mul_ps(tab, _mm512_set1_ps(scale[i][c]));
          w[i] = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[i] + 32 * c)));
        }
        // bits 0..7 of dword t: the byte of elements 4 t and 4 t + 1, bits 8..15 that of 4 t + 2, 4 t + 3
        constexpr unsigned shift[4] = {high_first ? 4u : 0u, high_first ? 0u : 4u, high_first ? 12u : 8u, high_first ? 8u : 12u};
        LOWBIT_HOST_UNROLL for (int e = 0; e < 4; ++e)
          LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i)
            k[i].step(4 * c + e, _mm512_permutexvar_ps(shift[e] == 0 ? w[i] : _mm512_srli_epi32(w[i], shift[e]), tq[i]));
      }
    }
  } else {
    // one group after the other: interleaving the 8-bit groups as the 4-bit ones measured no
    // faster on the 14336 x 4096 GEMV. Dword t of a chunk's 64 bytes holds thread t's 4 codes.
    LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) {
      LOWBIT_HOST_UNROLL for (int c = 0; c < chunks; ++c) {
        const __m512i v = _mm512_loadu_si512(codes[i] + 64 * c);
        const __m512 s = _mm512_set1_ps(scale[i][c]);
        __m512 val[4];
        bool done = false;  // e4m3fn, e5m2: without special codes, the shorter form
        if constexpr (F == format::e4m3fn || F == format::e5m2) done = detail::minifloat_values_scaled<F>(v, scale[i][c], val);
        if (!done) {
          LOWBIT_HOST_UNROLL for (int b = 0; b < 4; ++b) {
            if constexpr (F == format::int8_absmax) {
              const __m512 q = _mm512_cvtepi32_ps(_mm512_srai_epi32(_mm512_slli_epi32(v, static_cast<unsigned>(24 - 8 * b)), 24));
              val[b] = _mm512_mul_ps(_mm512_mul_ps(q, s), _mm512_set1_ps(quant::int8_dequant_factor));
            } else if constexpr (F == format::uint8_zeropoint) {
              const __m512i q = _mm512_and_si512(_mm512_srli_epi32(v, static_cast<unsigned>(8 * b)), _mm512_set1_epi32(0xFF));
              val[b] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(zp[i][c]))), s);
            } else {
              const __m512i q = _mm512_and_si512(_mm512_srli_epi32(v, static_cast<unsigned>(8 * b)), _mm512_set1_epi32(0xFF));
              val[b] = _mm512_mul_ps(detail::minifloat_values<F>(q), s);
            }
          }
        }
        if constexpr (Sink::pairs) {
          k[i].pair(2 * c, detail::bf16_pair(val[0], val[2]));
          k[i].pair(2 * c + 1, detail::bf16_pair(val[1], val[3]));
        } else {
          LOWBIT_HOST_UNROLL for (int b = 0; b < 4; ++b) k[i].step(4 * c + b, val[b]);
        }
      }
    }
  }
  LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) sinks[i] = k[i];
}

/// decode_groups_avx512 of one group into `sink`.
template <format F, class Sink>
LOWBIT_MM512 void decode_group_avx512(const std::uint8_t* codes, const float* scale, const int* zp, const float* table, Sink&& sink) {
  decode_groups_avx512<F, 1>(&codes, &scale, &zp, table, &sink);
}

/// The scales of chunks r0 .. r0 + count - 1 of 64 elements (mm::chunk_elements) of a weight with
/// 2^shift chunks per block (chunk r in block r >> shift), into out[0 .. count):
/// mm::run_decoder::scale of each chunk's block, the same bits. Plain: scales[b]. Double-quantized
/// (nested_codes not null): the two roundings of quant::nested_scale,
/// f32(f32(nested_table[nested_codes[b]] * nested_scales[b / 256]) + offset), the product kept apart
/// from the sum. The block scales are made 16 blocks at a time and spread over the chunks of those
/// blocks; reads no block past the last chunk's. With smin, lowers *smin to the smallest nonzero
/// |scale| of those blocks (NaN skipped). A scalar loop (one block lookup per 32 elements) cost the
/// nf4 GEMV about a quarter of its time; one vector of scales per 16 runs of 32 rather than per 16
/// blocks still cost it about 11% (perf, blocks of 64 elements).
LOWBIT_MM512 inline void chunk_scales_avx512(std::int64_t r0, std::int64_t count, int shift, const float* scales, const std::uint8_t* nested_codes,
                                           const float* nested_table, const float* nested_scales, float offset, float* out,
                                           float* smin = nullptr) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const std::int64_t within = (std::int64_t{1} << shift) - 1;
  const std::int64_t span = std::int64_t{16} << std::min(shift, 40);  // chunks of 16 blocks
  __m512 low = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (std::int64_t t = 0; t < count;) {
    const std::int64_t r = r0 + t, b0 = r >> shift;
    const int first = static_cast<int>(r & within);                    // chunk r's place in block b0
    const std::int64_t n = std::min<std::int64_t>(count - t, span - first);  // chunks of blocks b0 .. b0 + 15
    const int nb = static_cast<int>(((first + n - 1) >> shift) + 1);   // blocks the n chunks touch (<= 16)
    const __mmask16 bm = static_cast<__mmask16>((1u << nb) - 1u);
    __m512 bs;
    if (nested_codes == nullptr) {
      bs = _mm512_maskz_loadu_ps(bm, scales + b0);
    } else {
      const __m512 code2 = _mm512_i32gather_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(bm, nested_codes + b0)), nested_table, 4);
      const int g0 = static_cast<int>(b0 & 255);  // block b0's place in its group of 256
      const __mmask16 gm = static_cast<__mmask16>(((g0 + nb - 1) >> 8) != 0 ? 3u : 1u);
      const __m512 absmax2 = _mm512_permutexvar_ps(_mm512_srli_epi32(_mm512_add_epi32(_mm512_set1_epi32(g0), lane), 8),
                                                   _mm512_maskz_loadu_ps(gm, nested_scales + (b0 >> 8)));
      bs = _mm512_add_ps(avx512::detail::opaque(_mm512_mul_ps(code2, absmax2)), _mm512_set1_ps(offset));
    }
    const __m512 mag = _mm512_abs_ps(bs);
    low = _mm512_mask_min_ps(low, static_cast<__mmask16>(bm & _mm512_cmp_ps_mask(mag, _mm512_setzero_ps(), _CMP_GT_OQ)), low, mag);
    for (std::int64_t c = 0; c < n; c += 16) {
      const __m512i rel = _mm512_srli_epi32(_mm512_add_epi32(_mm512_set1_epi32(first + static_cast<int>(c)), lane), static_cast<unsigned>(shift));
      const __mmask16 om = static_cast<__mmask16>(n - c >= 16 ? 0xFFFFu : (1u << (n - c)) - 1u);
      _mm512_mask_storeu_ps(out + t + c, om, _mm512_permutexvar_ps(rel, bs));
    }
    t += n;
  }
  if (smin) *smin = std::min(*smin, _mm512_reduce_min_ps(low));
}

/// mm::reduce_threads of the 32 sums s[0 .. 32) in registers: the same additions (s_t + s_{t+h} for
/// h = 16, 8, 4, 2, 1), five instructions instead of 31 scalar ones.
LOWBIT_MM512 inline float reduce32_avx512(const float* s) {
  const __m512 v = _mm512_add_ps(_mm512_loadu_ps(s), _mm512_loadu_ps(s + 16));
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_shuffle_ps(c, c, 1)));
}

/// The GEMV regime without a lane buffer, lanes order: the thread sums s[(b * MB + a) * 32 + thread]
/// of MB x lane rows with NB W rows (row b's codes at codes[b], its chunk scales and zero points at
/// scale[b], zp[b]; K a multiple of 1024, chunks inside blocks), each group decoded in registers
/// straight into the chains; both groups of NB rows in flight. The same operations as dot_avx512
/// on the decoded rows.
template <format F, int MB, int NB, bool BF16>
LOWBIT_MM512 void fused_rows_avx512(const std::uint8_t* const* codes, const float* const* scale, const int* const* zp, const float* table,
                                    const void* const* x, std::int64_t J, float* s) {
  constexpr std::int64_t chunk_bytes = info(F).bits == 4 ? 32 : 64;
  constexpr std::int64_t chunks = mm::group_elements / mm::chunk_elements;
  using sink = std::conditional_t<BF16, detail::dp_bf16<MB>, detail::fma_f32<MB>>;
  using xrow = std::conditional_t<BF16, const std::uint32_t* const*, const float* const*>;
  constexpr std::int64_t group_words = BF16 ? 256 : 512;
  sink k[NB * 2];  // k[2 b + g]: W row b, group g
  LOWBIT_HOST_UNROLL for (int i = 0; i < NB * 2; ++i) {
    k[i].x = reinterpret_cast<xrow>(x);
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) k[i].acc[a] = _mm512_setzero_ps();
  }
  for (std::int64_t j = 0; j < J; ++j) {
    const std::uint8_t* c[NB * 2];
    const float* sc[NB * 2];
    const int* z[NB * 2];
    LOWBIT_HOST_UNROLL for (int i = 0; i < NB * 2; ++i) {
      const std::int64_t r0 = chunks * (2 * j + i % 2);  // the group's first chunk
      c[i] = codes[i / 2] + r0 * chunk_bytes;
      sc[i] = scale[i / 2] + r0;
      z[i] = zp[i / 2] + r0;
      k[i].base = (j * 2 + i % 2) * group_words;
    }
    decode_groups_avx512<F, NB * 2>(c, sc, z, table, k);
  }
  LOWBIT_HOST_UNROLL for (int i = 0; i < NB * 2; ++i)
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) _mm512_storeu_ps(s + ((i / 2) * MB + a) * 32 + (i % 2) * 16, k[i].acc[a]);
}

/// @par The outer-product form (larger M)
/// The lane dots above read an x vector and a W vector per instruction, too many bytes per product
/// once M grows. The same thread chains can be run the other way round: for one thread T, the
/// chain of output (m, n) is x[m]'s and W[n]'s words (T, 0), (T, 1), .., (T, L - 1) in order, so a
/// register of 16 outputs n (one column block of W, its words of step (T, c) side by side) is
/// FMA-ed with x[m]'s word (T, c) broadcast. Each lane performs exactly the chain of dot_portable
/// (same operands, same order, from +0); the 32 chains of an output are then added in the tree of
/// mm::reduce_threads. The operands are in chain-major order: word (T, c) of a row at T * L + c,
/// L = lane_row_size / 32 (mode f32: c = 32 j + e; bf16: c = 16 j + p, one operand pair), and a
/// W panel of 16 V rows holds word (T, c) of its row v at (T * L + c) * 16 V + v. In mode bf16 the
/// kernel's x rows and panel hold each pair widened to two float32 steps (2 L per chain), so that
/// it runs on vfmadd231ps (two per pair, at four times the issue rate of vdpbf16ps here).

/// The chain-major place (T * L + c, above) of lane-layout word ((j * 2 + g) * steps + e) * 16 + t:
/// thread T = 16 g + t, step c = j * steps + e.
constexpr std::int64_t chain_word(std::int64_t j, int g, int e, int t, int steps, std::int64_t L) noexcept {
  return (16 * g + t) * L + j * steps + e;
}

namespace detail {
// 16 x 16 floats transposed in registers: r[i][k] becomes r[k][i] (64 shuffles).
LOWBIT_MM512 inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  LOWBIT_HOST_UNROLL for (int i = 0; i < 8; ++i) {  // per 128-bit lane: pairs of rows interleaved
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  __m512 u[16];  // u[4 q + i], 128-bit lane k: column 4 k + i of rows 4 q .. 4 q + 3
  LOWBIT_HOST_UNROLL for (int q = 0; q < 4; ++q) {
    const __m512d a = _mm512_castps_pd(t[4 * q]), b = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * q + 2]), d = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  LOWBIT_HOST_UNROLL for (int i = 0; i < 4; ++i) {  // lane k of u[i], u[4 + i], u[8 + i], u[12 + i]
    const __m512 v0 = _mm512_shuffle_f32x4(u[i], u[4 + i], 0x88), v1 = _mm512_shuffle_f32x4(u[i], u[4 + i], 0xDD);
    const __m512 w0 = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + i], u[12 + i], 0xDD);
    r[i] = _mm512_shuffle_f32x4(v0, w0, 0x88);
    r[4 + i] = _mm512_shuffle_f32x4(v1, w1, 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(v0, w0, 0xDD);
    r[12 + i] = _mm512_shuffle_f32x4(v1, w1, 0xDD);
  }
}
}  // namespace detail

/// 16 W lane rows (rows[0 .. 16), lane_row_size(K, c) words each, J super-runs; steps = 32 words
/// per group in mode f32, 16 in bf16) into columns col .. col + 15 of a chain-major panel of
/// `width` columns (the layout above), by 16 x 16 transposes. With widen (mode bf16), each operand
/// pair word (T, c) becomes two float32 steps, 2c the odd element (its high half) and 2c + 1 the
/// even one (low half): the chain of definition.hpp's bf16 mode as plain float32 steps.
LOWBIT_MM512 inline void panel_columns16(const float* const* rows, std::int64_t J, int steps, float* panel, int width, int col, bool widen) {
  const std::int64_t L = J * steps;
  const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (std::int64_t j = 0; j < J; ++j)
    for (int g = 0; g < 2; ++g)
      for (int e = 0; e < steps; ++e) {
        const std::int64_t o = ((j * 2 + g) * steps + e) * 16;
        __m512 r[16];
        LOWBIT_HOST_UNROLL for (int i = 0; i < 16; ++i) r[i] = _mm512_load_ps(rows[i] + o);
        detail::transpose16(r);
        LOWBIT_HOST_UNROLL for (int t = 0; t < 16; ++t) {
          const std::int64_t w = chain_word(j, g, e, t, steps, L);
          if (widen) {
            const __m512i u = _mm512_castps_si512(r[t]);
            _mm512_store_si512(panel + 2 * w * width + col, _mm512_and_si512(u, high));
            _mm512_store_si512(panel + (2 * w + 1) * width + col, _mm512_slli_epi32(u, 16));
          } else {
            _mm512_store_ps(panel + w * width + col, r[t]);
          }
        }
      }
}

/// Chain i (thread T = the 5-bit reversal of i) of MR x rows (chain-major float32 steps, x[a] at
/// step 0 of the row) with a panel of 16 V W columns (`panel`, chain-major, L steps per chain), then
/// its place in the reduction tree: the chains are run in the order i = 0 .. 31, so that chain i
/// meets its partners of mm::reduce_threads on a stack of five levels (stack: 5 x MR x V
/// registers); after i = 31 the 16 V sums of each x row are at out[a * 16 V ..]. The stack
/// additions are those of the tree (float addition commutes), so every output is bit for bit
/// mm::reduce_threads of its chains. Mode bf16 runs here on widened operands (panel_columns16):
/// where no partial sum can fall below 2^-126 (the caller's exponent guard), fma is fma_ftz.
template <int MR, int V>
LOWBIT_MM512 void chain_outer_avx512(int i, const void* const* x, const float* panel, std::int64_t L, float* stack, float* out) {
  const int T = ((i & 1) << 4) | ((i & 2) << 2) | (i & 4) | ((i & 8) >> 2) | ((i & 16) >> 4);
  const float* w = panel + T * L * 16 * V;
  const float* xr[MR];
  LOWBIT_HOST_UNROLL for (int a = 0; a < MR; ++a) xr[a] = static_cast<const float*>(x[a]) + T * L;
  __m512 acc[MR][V];
  LOWBIT_HOST_UNROLL for (int a = 0; a < MR; ++a)
    LOWBIT_HOST_UNROLL for (int v = 0; v < V; ++v) acc[a][v] = _mm512_setzero_ps();
  for (std::int64_t c = 0; c < L; ++c) {
    __m512 wv[V];
    LOWBIT_HOST_UNROLL for (int v = 0; v < V; ++v) wv[v] = _mm512_load_ps(w + c * 16 * V + 16 * v);
    LOWBIT_HOST_UNROLL for (int a = 0; a < MR; ++a) {
      const __m512 xb = _mm512_set1_ps(xr[a][c]);
      LOWBIT_HOST_UNROLL for (int v = 0; v < V; ++v) acc[a][v] = _mm512_fmadd_ps(xb, wv[v], acc[a][v]);
    }
  }
  int level = 0;
  for (; level < 5 && ((i >> level) & 1) != 0; ++level)
    LOWBIT_HOST_UNROLL for (int a = 0; a < MR; ++a)
      LOWBIT_HOST_UNROLL for (int v = 0; v < V; ++v)
        acc[a][v] = _mm512_add_ps(_mm512_load_ps(stack + ((level * MR + a) * V + v) * 16), acc[a][v]);
  float* dst = level == 5 ? out : stack + level * MR * V * 16;
  LOWBIT_HOST_UNROLL for (int a = 0; a < MR; ++a)
    LOWBIT_HOST_UNROLL for (int v = 0; v < V; ++v) _mm512_store_ps(dst + (a * V + v) * 16, acc[a][v]);
}

LOWBIT_AVX512_WARNINGS_POP
#endif

#if LOWBIT_HAVE_AVX2_KERNELS

#  define LOWBIT_AVX2_FMA_DOT __attribute__((target("avx2,fma,f16c")))

/// dot_portable<false>, 8 lanes per instruction (two registers per 16-lane group).
template <int MB>
LOWBIT_AVX2_FMA_DOT void dot_f32_avx2(const float* const* x, const float* w, std::int64_t J, float* s) {
  for (int g = 0; g < 2; ++g) {
    __m256 acc[MB][2];
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) acc[a][0] = acc[a][1] = _mm256_setzero_ps();
    for (std::int64_t j = 0; j < J; ++j) {
      const std::int64_t base = (j * 2 + g) * 32 * 16;
      for (int e = 0; e < 32; ++e) {
        const __m256 w0 = _mm256_load_ps(w + base + e * 16), w1 = _mm256_load_ps(w + base + e * 16 + 8);
        LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) {
          acc[a][0] = _mm256_fmadd_ps(_mm256_load_ps(x[a] + base + e * 16), w0, acc[a][0]);
          acc[a][1] = _mm256_fmadd_ps(_mm256_load_ps(x[a] + base + e * 16 + 8), w1, acc[a][1]);
        }
      }
    }
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) {
      _mm256_storeu_ps(s + a * 32 + g * 16, acc[a][0]);
      _mm256_storeu_ps(s + a * 32 + g * 16 + 8, acc[a][1]);
    }
  }
}

namespace detail {
// mm::fma_ftz on 8 lanes.
LOWBIT_AVX2_FMA_DOT inline __m256 fma_ftz8(__m256 a, __m256 b, __m256 c) {
  const __m256 r = _mm256_fmadd_ps(a, b, c);
  const __m256 mag = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), r);
  const __m256 tiny = _mm256_cmp_ps(mag, _mm256_set1_ps(1.17549435e-38f), _CMP_LT_OQ);
  return _mm256_blendv_ps(r, _mm256_and_ps(r, _mm256_set1_ps(-0.0f)), tiny);
}
}  // namespace detail

/// dot_portable<true>, 8 lanes per instruction, the flush of vdpbf16ps done by compare and blend.
template <int MB>
LOWBIT_AVX2_FMA_DOT void dot_bf16_avx2(const std::uint32_t* const* x, const std::uint32_t* w, std::int64_t J, float* s) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int g = 0; g < 2; ++g) {
    __m256 acc[MB][2];
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) acc[a][0] = acc[a][1] = _mm256_setzero_ps();
    for (std::int64_t j = 0; j < J; ++j) {
      const std::int64_t base = (j * 2 + g) * 16 * 16;
      for (int p = 0; p < 16; ++p)
        LOWBIT_HOST_UNROLL for (int h = 0; h < 2; ++h) {
          const __m256i wv = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + base + p * 16 + 8 * h));
          const __m256 w_odd = _mm256_castsi256_ps(_mm256_and_si256(wv, hi_mask));
          const __m256 w_even = _mm256_castsi256_ps(_mm256_slli_epi32(wv, 16));
          LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) {
            const __m256i xv = _mm256_load_si256(reinterpret_cast<const __m256i*>(x[a] + base + p * 16 + 8 * h));
            acc[a][h] = detail::fma_ftz8(_mm256_castsi256_ps(_mm256_and_si256(xv, hi_mask)), w_odd, acc[a][h]);
            acc[a][h] = detail::fma_ftz8(_mm256_castsi256_ps(_mm256_slli_epi32(xv, 16)), w_even, acc[a][h]);
          }
        }
    }
    LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) {
      _mm256_storeu_ps(s + a * 32 + g * 16, acc[a][0]);
      _mm256_storeu_ps(s + a * 32 + g * 16 + 8, acc[a][1]);
    }
  }
}


namespace detail {
// mm::bf16_operand of 8 float32 lanes, as float32: a zero or subnormal gives a zero of its sign,
// NaN a quiet NaN (bit 22 set), the rest rounds to nearest even.
LOWBIT_AVX2_FMA_DOT inline __m256 bf16_operand8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i hi = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rne = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), hi);
  const __m256i nan = _mm256_and_si256(_mm256_or_si256(u, _mm256_set1_epi32(0x00400000)), hi);
  const __m256i zero = _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(0x80000000u)));
  const __m256i mag = _mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256i is_nan = _mm256_cmpgt_epi32(mag, _mm256_set1_epi32(0x7F800000));
  const __m256i is_tiny = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
  const __m256i r = _mm256_blendv_epi8(_mm256_blendv_epi8(rne, nan, is_nan), zero, is_tiny);
  return _mm256_castsi256_ps(r);
}
// bf16_operand8 of values none of which is NaN or subnormal (zeros and Inf may be): nearest even
// alone (a zero stays a zero of its sign, Inf stays Inf).
// The nearest-even sum: v's bits plus 0x7FFF plus the lowest bit kept, whose top 16 bits are the
// rounded value's (bf16_round_normal8 masks them, bf16_bits_normal8 shifts them down).
LOWBIT_AVX2_FMA_DOT inline __m256i bf16_nearest_even_sum8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd);
}
LOWBIT_AVX2_FMA_DOT inline __m256 bf16_round_normal8(__m256 v) {
  return _mm256_castsi256_ps(_mm256_and_si256(bf16_nearest_even_sum8(v), _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// avx512 minifloat_values on 8 lanes: e4m3fn / e5m2 codes (int32 lanes 0..255) to float32.
template <format F>
LOWBIT_AVX2_FMA_DOT inline __m256 minifloat_values8(__m256i c) {
  using codec = typename quant::scheme<F>::codec;
  constexpr int M = codec::mantissa_bits;
  constexpr int special_bits = avx2::special_magnitude_bits<F>();
  const __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7F));
  __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(mag, 23 - M)),
                           _mm256_castsi256_ps(_mm256_set1_epi32((127 + 127 - codec::bias) << 23)));
  const __m256 special = _mm256_castsi256_ps(
      _mm256_cmpeq_epi32(_mm256_and_si256(mag, _mm256_set1_epi32(special_bits)), _mm256_set1_epi32(special_bits)));
  if constexpr (F == format::e4m3fn) {
    v = _mm256_blendv_ps(v, _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN()), special);
  } else {
    const __m256i inf_nan = _mm256_or_si256(_mm256_set1_epi32(0x7F800000), _mm256_slli_epi32(_mm256_and_si256(mag, _mm256_set1_epi32(3)), 21));
    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(inf_nan), special);
  }
  return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(v), _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24)));
}

// AVX2 sinks of decode_groups_avx2: chunk(c, v) takes the 4 steps of chunk c of a group, v[i][h]
// the values of step 4 c + i of 8 threads: h = 0 threads 0..3 and 8..11 (lanes 0..3, 4..7), h = 1
// threads 4..7 and 12..15 (the order byte lookups and unpacks leave them in); the values already
// rounded as mm::bf16_operand for a sink with `rounded`.
// The lanes of a (h = 0, h = 1) pair as threads 0..7 and 8..15.
LOWBIT_AVX2_FMA_DOT inline __m256 threads_low(__m256 a, __m256 b) { return _mm256_permute2f128_ps(a, b, 0x20); }
LOWBIT_AVX2_FMA_DOT inline __m256 threads_high(__m256 a, __m256 b) { return _mm256_permute2f128_ps(a, b, 0x31); }
/// The thread of lane l (0..15) of a decode_groups_avx2 (h = 0, h = 1) pair.
constexpr int avx2_lane_thread(int l) noexcept { return (l & 3) | ((l & 4) << 1) | ((l & 8) >> 1); }
struct store_f32_avx2 {  // the f32 lane layout
  static constexpr bool rounded = false;
  float* out;
  LOWBIT_AVX2_FMA_DOT void chunk(int c, const __m256 (&v)[4][2]) {
    LOWBIT_HOST_UNROLL for (int i = 0; i < 4; ++i) {
      _mm256_storeu_ps(out + (4 * c + i) * 16, threads_low(v[i][0], v[i][1]));
      _mm256_storeu_ps(out + (4 * c + i) * 16 + 8, threads_high(v[i][0], v[i][1]));
    }
  }
};
struct store_bf16_avx2 {  // the bf16 lane layout: pair 2 c of steps 4 c (low half), 4 c + 2; pair 2 c + 1 of 4 c + 1, 4 c + 3
  static constexpr bool rounded = true;
  std::uint32_t* out;
  LOWBIT_AVX2_FMA_DOT void chunk(int c, const __m256 (&v)[4][2]) {
    LOWBIT_HOST_UNROLL for (int q = 0; q < 2; ++q) {
      __m256 w[2];
      LOWBIT_HOST_UNROLL for (int h = 0; h < 2; ++h)
        w[h] = _mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(_mm256_castps_si256(v[q][h]), 16), _mm256_castps_si256(v[q + 2][h])));
      _mm256_storeu_ps(reinterpret_cast<float*>(out + (2 * c + q) * 16), threads_low(w[0], w[1]));
      _mm256_storeu_ps(reinterpret_cast<float*>(out + (2 * c + q) * 16 + 8), threads_high(w[0], w[1]));
    }
  }
};
// Thread chains of MB x rows (the f32 lane layout with its 16 words of a step in lane order,
// avx2_lane_thread; in mode bf16 the operands already rounded): f32 mode the steps in order,
// bf16 mode each pair's odd element first (steps 4 c + 2, 4 c, 4 c + 3, 4 c + 1), plain FMAs
// (exactly fma_ftz where the caller's exponent guard holds).
template <int MB, bool BF16>
struct fma_avx2 {
  static constexpr bool rounded = BF16;
  const float* const* x;
  std::int64_t base;
  __m256 acc[MB][2];
  LOWBIT_AVX2_FMA_DOT void chunk(int c, const __m256 (&v)[4][2]) {
    constexpr int order[4] = {BF16 ? 2 : 0, BF16 ? 0 : 1, BF16 ? 3 : 2, BF16 ? 1 : 3};
    LOWBIT_HOST_UNROLL for (int k = 0; k < 4; ++k) {
      const int i = order[k];
      LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a)
        LOWBIT_HOST_UNROLL for (int h = 0; h < 2; ++h)
          acc[a][h] = _mm256_fmadd_ps(_mm256_loadu_ps(x[a] + base + (4 * c + i) * 16 + 8 * h), v[i][h], acc[a][h]);
    }
  }
};
// The byte planes of the 16 float32 values t0 (entries 0..7), t1 (8..15), each plane (byte k of
// every entry, entry order) in both 128-bit lanes of p[k]: vpshufb tables.
LOWBIT_AVX2_FMA_DOT inline void byte_planes(__m256 t0, __m256 t1, __m256i (&p)[4]) {
  // per lane: byte k of its 4 entries to dword k
  const __m256i gather = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  // u: planes 0, 1 of entries 0..7 (lane 0) and planes 2, 3 (lane 1); w the same for 8..15
  const __m256i u = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_castps_si256(t0), gather), order);
  const __m256i w = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_castps_si256(t1), gather), order);
  const __m256i even = _mm256_unpacklo_epi64(u, w), odd = _mm256_unpackhi_epi64(u, w);  // planes 0 | 2, 1 | 3
  p[0] = _mm256_permute2x128_si256(even, even, 0x00);
  p[1] = _mm256_permute2x128_si256(odd, odd, 0x00);
  p[2] = _mm256_permute2x128_si256(even, even, 0x11);
  p[3] = _mm256_permute2x128_si256(odd, odd, 0x11);
}
// The two planes of the bfloat16 bits of 16 values (byte_planes' p[2], p[3]), from those bits in
// the low word of each dword: lo holds entries 0..3 and 8..11, hi entries 4..7 and 12..15 (the
// packing then puts the 16 words in entry order, 0..7 in lane 0 and 8..15 in lane 1).
LOWBIT_AVX2_FMA_DOT inline void bf16_planes(__m256i lo, __m256i hi, __m256i (&p)[4]) {
  const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i w = _mm256_shuffle_epi8(_mm256_packus_epi32(lo, hi), split);  // per lane: the 8 low bytes, the 8 high bytes
  p[2] = _mm256_permute4x64_epi64(w, 0x88);
  p[3] = _mm256_permute4x64_epi64(w, 0xDD);
}
// The bfloat16 bits of bf16_round_normal8(v) in the low word of each dword.
LOWBIT_AVX2_FMA_DOT inline __m256i bf16_bits_normal8(__m256 v) { return _mm256_srli_epi32(bf16_nearest_even_sum8(v), 16); }

// decode_groups_avx2's 8-bit step: the values of the 8 codes of each dword of in[h] (threads as
// there), v[b][h] from byte b, times scale s (zero point zp for uint8_zeropoint); e4m3fn/e5m2
// with `fast` by the shift-and-mask form times sk = s 2^(127 - bias); rounded as bf16 operands
// with Rounded (the add-and-mask alone with `plain_round`). Fast = true fixes fast and
// plain_round to true at compile time.
template <format F, bool Fast, bool Rounded>
LOWBIT_AVX2_FMA_DOT inline void decode_codes8(const __m256i (&in)[2], __m256 s, float sk, int zp, bool fast, bool plain_round, __m256 (&v)[4][2]) {
  LOWBIT_HOST_UNROLL for (int h = 0; h < 2; ++h) {
    const __m256i w = in[h];
    LOWBIT_HOST_UNROLL for (int b = 0; b < 4; ++b) {
      __m256 val;
      if constexpr (F == format::int8_absmax) {
        const __m256 q = _mm256_cvtepi32_ps(_mm256_srai_epi32(_mm256_slli_epi32(w, 24 - 8 * b), 24));
        val = _mm256_mul_ps(_mm256_mul_ps(q, s), _mm256_set1_ps(quant::int8_dequant_factor));
      } else if constexpr (F == format::uint8_zeropoint) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi32(w, 8 * b), _mm256_set1_epi32(0xFF));
        val = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(zp))), s);
      } else if (Fast || fast) {
        // as avx512 minifloat_values_scaled: the code's byte at the top of the dword, shifted
        // down M + 1 bits, the sign kept, times scale 2^(127 - bias)
        constexpr int M = quant::scheme<F>::codec::mantissa_bits;
        const __m256i keep = _mm256_set1_epi32(static_cast<int>(0x80000000u | (0x7Fu << (23 - M))));
        const __m256i top = b == 3 ? w : _mm256_slli_epi32(w, 24 - 8 * b);
        val = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(_mm256_srai_epi32(top, M + 1), keep)), _mm256_set1_ps(sk));
      } else {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi32(w, 8 * b), _mm256_set1_epi32(0xFF));
        val = _mm256_mul_ps(minifloat_values8<F>(q), s);
      }
      if constexpr (Rounded) val = Fast || plain_round ? bf16_round_normal8(val) : bf16_operand8(val);
      v[b][h] = val;
    }
  }
}
}  // namespace detail

/// decode_groups_avx512 on AVX2: the float32 values w of NG groups of 512 consecutive elements of
/// W in the lanes order, group i's codes at codes[i] (8 chunks of 64 elements, each inside one
/// block; chunk c with scale scale[i][c] and zero point zp[i][c]), quant::decode_element of each
/// code, handed to sinks[i].chunk(c, v) for c = 0..7, the NG groups interleaved chunk by chunk
/// (independent chains: one's FMA latency hides behind the others'). A sink that asks for rounded
/// values gets mm::bf16_operand of each; `unit` is the decoder's smallest_unit (run_decoder): a
/// chunk whose smallest nonzero |w| is at least 2^-126 and whose scale is not NaN holds no NaN and
/// no subnormal (for 8-bit formats other than e4m3fn/e5m2, whose special codes take their own
/// check), so its rounding needs no NaN or flush fix-up. `normal` says that holds for every chunk
/// of the NG groups (4-bit codes: no scale NaN, each zero or at least 2^-126 / unit), and the
/// check per chunk is skipped.
/// 4-bit codes: each nibble picks its value's bytes from byte planes of the 16 values by vpshufb
/// (one per plane and 32 codes), which unpacks interleave into dwords. float32: the planes of the
/// table, each value then multiplied by the chunk's scale (the same product as decode_element);
/// bfloat16: the planes of the chunk's 16 values scaled and rounded once (two planes, the bf16
/// bits). Two vpermps and a blend per 8 codes measured 2.5x slower on this project's AMD EPYC
/// (vpermps one a cycle, vpshufb two). 8-bit codes: as the AVX-512 decoder, 8 lanes at a time.
template <format F, int NG, class Sink>
LOWBIT_AVX2_FMA_DOT void decode_groups_avx2(const std::uint8_t* const* codes, const float* const* scale, const int* const* zp, const float* table,
                                            float unit, Sink* sinks, bool normal = false) {
  constexpr bool four = info(F).bits == 4;
  constexpr int chunks = mm::group_elements / mm::chunk_elements;
  constexpr std::uintptr_t ahead = 8 * mm::group_elements * info(F).bits / 8;  // as decode_groups_avx512
  LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) {
    if constexpr (four) {
      avx2::detail::prefetch_ahead(codes[i], ahead, 4 * 64);
    } else {
      avx2::detail::prefetch_ahead<_MM_HINT_T0>(codes[i], ahead, 8 * 64);
    }
  }
  Sink k[NG];
  LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) k[i] = sinks[i];
  if constexpr (four) {
    const __m256 t0 = _mm256_loadu_ps(table), t1 = _mm256_loadu_ps(table + 8);
    const __m256 t0p = _mm256_permute2f128_ps(t0, t1, 0x20), t1p = _mm256_permute2f128_ps(t0, t1, 0x31);  // bf16_planes' order
    constexpr bool high_first = info(F).order == codecs::nibble_order::high_first;
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    // per lane: the even bytes (each thread's first, elements 4 t, 4 t + 1) before the odd ones
    const __m256i evens_first = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9,
                                                 11, 13, 15);
    __m256i table_planes[4];  // float32: the unscaled values' planes, the scale multiplied after the lookup
    if constexpr (!Sink::rounded) detail::byte_planes(t0, t1, table_planes);
    for (int c = 0; c < chunks; ++c)
      LOWBIT_HOST_UNROLL for (int g = 0; g < NG; ++g) {
        const __m256 s = _mm256_set1_ps(scale[g][c]);
        __m256i planes[4];
        if constexpr (Sink::rounded) {
          // bfloat16: the chunk's 16 values scaled and rounded once, as vpshufb tables of their bytes
          const __m256 lo = _mm256_mul_ps(t0p, s), hi = _mm256_mul_ps(t1p, s);
          if (normal || scale[g][c] == 0.0f || std::fabs(scale[g][c]) * unit >= std::numeric_limits<float>::min()) {
            detail::bf16_planes(detail::bf16_bits_normal8(lo), detail::bf16_bits_normal8(hi), planes);
          } else {
            detail::bf16_planes(_mm256_srli_epi32(_mm256_castps_si256(detail::bf16_operand8(lo)), 16),
                                _mm256_srli_epi32(_mm256_castps_si256(detail::bf16_operand8(hi)), 16), planes);
          }
        } else {
          LOWBIT_HOST_UNROLL for (int b = 0; b < 4; ++b) planes[b] = table_planes[b];
        }
        // lane 0: threads 0..7's 16 bytes, lane 1 threads 8..15's
        const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[g] + 32 * c));
        __m256 v[4][2];
        if constexpr (Sink::rounded) {
          // bfloat16: the two planes of a byte's codes interleave into words; a dword pairs a
          // thread's two bytes: (first, second) element of each, steps (0, 2) or (1, 3), the even
          // step in the low half, as the bf16 lane layout
          const __m256i n[2] = {_mm256_and_si256(_mm256_srli_epi16(bytes, 4), nibble), _mm256_and_si256(bytes, nibble)};
          LOWBIT_HOST_UNROLL for (int half = 0; half < 2; ++half) {
            const __m256i pl = _mm256_shuffle_epi8(planes[2], n[half]), ph = _mm256_shuffle_epi8(planes[3], n[half]);
            const int i = (half == 0) == high_first ? 0 : 1;  // the steps (i, i + 2) of these nibbles
            const __m256i d[2] = {_mm256_unpacklo_epi8(pl, ph), _mm256_unpackhi_epi8(pl, ph)};
            LOWBIT_HOST_UNROLL for (int h = 0; h < 2; ++h) {
              v[i][h] = _mm256_castsi256_ps(_mm256_slli_epi32(d[h], 16));
              v[i + 2][h] = _mm256_castsi256_ps(_mm256_and_si256(d[h], _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
            }
          }
        } else {
          // float32: the four planes of each nibble interleave into dwords; with the even bytes
          // first, each 4 dwords of a lane are one step of 4 threads
          const __m256i r = _mm256_shuffle_epi8(bytes, evens_first);
          const __m256i n[2] = {_mm256_and_si256(_mm256_srli_epi16(r, 4), nibble), _mm256_and_si256(r, nibble)};
          LOWBIT_HOST_UNROLL for (int half = 0; half < 2; ++half) {
            __m256i q[4];
            LOWBIT_HOST_UNROLL for (int b = 0; b < 4; ++b) q[b] = _mm256_shuffle_epi8(planes[b], n[half]);
            const __m256i w01l = _mm256_unpacklo_epi8(q[0], q[1]), w01h = _mm256_unpackhi_epi8(q[0], q[1]);
            const __m256i w23l = _mm256_unpacklo_epi8(q[2], q[3]), w23h = _mm256_unpackhi_epi8(q[2], q[3]);
            const int i = (half == 0) == high_first ? 0 : 1;  // first bytes: step i; second bytes: step i + 2
            v[i][0] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(w01l, w23l)), s);
            v[i][1] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(w01l, w23l)), s);
            v[i + 2][0] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(w01h, w23h)), s);
            v[i + 2][1] = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(w01h, w23h)), s);
          }
        }
        k[g].chunk(c, v);
      }
  } else {
    for (int c = 0; c < chunks; ++c)
      LOWBIT_HOST_UNROLL for (int g = 0; g < NG; ++g) {
        const float sc = scale[g][c];
        const __m256 s = _mm256_set1_ps(sc);
        bool fast = false;  // e4m3fn, e5m2 without special codes and with a finite scale 2^(127 - bias)
        float sk = 0.0f;
        if constexpr (F == format::e4m3fn || F == format::e5m2) {
          using codec = typename quant::scheme<F>::codec;
          constexpr std::uint32_t rebias = static_cast<std::uint32_t>(127 + 127 - codec::bias) << 23;
          float kb;
          std::memcpy(&kb, &rebias, sizeof kb);
          sk = sc * kb;
          const __m256i sp = _mm256_set1_epi8(static_cast<char>(avx2::special_magnitude_bits<F>()));
          const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[g] + 64 * c));
          const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[g] + 64 * c + 32));
          const __m256i hit = _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_and_si256(a, sp), sp), _mm256_cmpeq_epi8(_mm256_and_si256(b, sp), sp));
          fast = std::fabs(sk) <= std::numeric_limits<float>::max() && _mm256_testz_si256(hit, hit);
        }
        // no NaN, no subnormal w in this chunk: rounding to bf16 is the add-and-mask alone
        const bool plain = (F != format::e4m3fn && F != format::e5m2) || fast;
        const bool plain_round = plain && (sc == 0.0f || std::fabs(sc) * unit >= std::numeric_limits<float>::min());
        // dword t of the 64 bytes: thread t's 4 codes; in[h] threads 0..3, 8..11 (h = 0) or 4..7, 12..15
        const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[g] + 64 * c));
        const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes[g] + 64 * c + 32));
        const __m256i in[2] = {_mm256_permute2x128_si256(y0, y1, 0x20), _mm256_permute2x128_si256(y0, y1, 0x31)};
        __m256 v[4][2];
        // the common chunk (e4m3fn/e5m2 without special codes, no NaN or subnormal w) in a body of its own
        if (fast && plain_round) detail::decode_codes8<F, true, Sink::rounded>(in, s, sk, 0, true, true, v);
        else detail::decode_codes8<F, false, Sink::rounded>(in, s, sk, zp[g][c], fast, plain_round, v);
        k[g].chunk(c, v);
      }
  }
  LOWBIT_HOST_UNROLL for (int i = 0; i < NG; ++i) sinks[i] = k[i];
}

/// decode_groups_avx2 of one group into `sink`.
template <format F, class Sink>
LOWBIT_AVX2_FMA_DOT void decode_group_avx2(const std::uint8_t* codes, const float* scale, const int* zp, const float* table, float unit, Sink&& sink) {
  decode_groups_avx2<F, 1>(&codes, &scale, &zp, table, unit, &sink);
}

/// chunk_scales_avx512 on AVX2, 8 blocks at a time: the scales of chunks r0 .. r0 + count - 1 of a
/// weight with 2^shift chunks per block into out[0 .. count), mm::run_decoder::scale of each
/// chunk's block, the same bits (double quantization: the product and the sum rounded apart).
/// Reads no block past the last chunk's. With smin, lowers *smin to the smallest nonzero |scale|
/// of those blocks (NaN skipped); with nan, sets *nan where one of them is NaN.
LOWBIT_AVX2_FMA_DOT inline void chunk_scales_avx2(std::int64_t r0, std::int64_t count, int shift, const float* scales,
                                                  const std::uint8_t* nested_codes, const float* nested_table, const float* nested_scales,
                                                  float offset, float* out, float* smin = nullptr, bool* nan = nullptr) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const std::int64_t within = (std::int64_t{1} << shift) - 1;
  const std::int64_t span = std::int64_t{8} << std::min(shift, 40);  // chunks of 8 blocks
  __m256 low = _mm256_set1_ps(std::numeric_limits<float>::infinity()), unordered = _mm256_setzero_ps();
  for (std::int64_t t = 0; t < count;) {
    const std::int64_t r = r0 + t, b0 = r >> shift;
    const int first = static_cast<int>(r & within);                          // chunk r's place in block b0
    const std::int64_t n = std::min<std::int64_t>(count - t, span - first);  // chunks of blocks b0 .. b0 + 7
    const int nb = static_cast<int>(((first + n - 1) >> shift) + 1);         // blocks the n chunks touch (<= 8)
    const __m256i bm = _mm256_cmpgt_epi32(_mm256_set1_epi32(nb), lane);
    __m256 bs;
    if (nested_codes == nullptr) {
      bs = _mm256_maskload_ps(scales + b0, bm);
    } else {
      // the nested codes' values by a gather (8 codes loaded at once where 8 blocks are read; a
      // scalar fill of a buffer reloaded as a vector stalled on store forwarding: 40% of the GEMV),
      // the groups' absmax by a blend of the (at most two) groups the blocks lie in
      __m128i idx8;
      if (nb == 8) {
        idx8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(nested_codes + b0));
      } else {
        std::uint64_t u = 0;
        for (int k = 0; k < nb; ++k) u |= static_cast<std::uint64_t>(nested_codes[b0 + k]) << (8 * k);
        idx8 = _mm_cvtsi64_si128(static_cast<long long>(u));
      }
      const __m256 code2 = _mm256_i32gather_ps(nested_table, _mm256_cvtepu8_epi32(idx8), 4);
      const std::int64_t g0 = b0 / quant::nested_block_size;
      const int at = static_cast<int>(b0 - g0 * quant::nested_block_size);  // block b0's place in its group
      const bool two = at + nb > quant::nested_block_size;
      const __m256 next = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_add_epi32(_mm256_set1_epi32(at), lane),
                                                                 _mm256_set1_epi32(static_cast<int>(quant::nested_block_size) - 1)));
      const __m256 absmax2 = _mm256_blendv_ps(_mm256_set1_ps(nested_scales[g0]), _mm256_set1_ps(two ? nested_scales[g0 + 1] : 0.0f), next);
      __m256 prod = _mm256_mul_ps(code2, absmax2);
      __asm__("" : "+x"(prod));  // the product rounded apart from the sum (quant::nested_scale)
      bs = _mm256_add_ps(prod, _mm256_set1_ps(offset));
    }
    const __m256 mag = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), bs);
    const __m256 keep = _mm256_and_ps(_mm256_castsi256_ps(bm), _mm256_cmp_ps(mag, _mm256_setzero_ps(), _CMP_GT_OQ));
    low = _mm256_blendv_ps(low, _mm256_min_ps(low, mag), keep);
    unordered = _mm256_or_ps(unordered, _mm256_and_ps(_mm256_castsi256_ps(bm), _mm256_cmp_ps(bs, bs, _CMP_UNORD_Q)));
    for (std::int64_t c = 0; c < n; c += 8) {
      const __m256i rel = _mm256_srli_epi32(_mm256_add_epi32(_mm256_set1_epi32(first + static_cast<int>(c)), lane), shift);
      const __m256 v = _mm256_permutevar8x32_ps(bs, rel);
      if (n - c >= 8) _mm256_storeu_ps(out + t + c, v);
      else _mm256_maskstore_ps(out + t + c, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - c)), lane), v);
    }
    t += n;
  }
  if (smin) {
    alignas(32) float l[8];
    _mm256_store_ps(l, low);
    for (float v : l) *smin = std::min(*smin, v);
  }
  if (nan && _mm256_movemask_ps(unordered) != 0) *nan = true;
}

/// The GEMV regime on AVX2 (fused_rows_avx512's counterpart): the thread sums
/// s[(b * MB + a) * 32 + thread] of MB x rows (the f32 lane layout, each step's 16 words in the
/// lane order of decode_groups_avx2, detail::avx2_lane_thread; in mode bf16 the operands already
/// rounded, mm::bf16_operand) with NB W rows (row b's codes at codes[b], its chunk scales and zero
/// points at scale[b], zp[b]; K a multiple of 1024, chunks inside blocks), each group decoded in
/// registers straight into the chains (`unit`, `normal`: decode_groups_avx2's). Mode bf16 runs plain FMAs: the caller makes sure they equal
/// fma_ftz (mm::bf16_exact_exponents). With MB * NB <= 2 both groups of a super-run are in
/// flight (8 chains); otherwise one group's chains over all super-runs, then the other's.
template <format F, int MB, int NB, bool BF16>
LOWBIT_AVX2_FMA_DOT void fused_rows_avx2(const std::uint8_t* const* codes, const float* const* scale, const int* const* zp, const float* table,
                                         float unit, bool normal, const float* const* x, std::int64_t J, float* s) {
  constexpr std::int64_t chunk_bytes = info(F).bits == 4 ? 32 : 64;
  constexpr std::int64_t chunks = mm::group_elements / mm::chunk_elements;
  constexpr int G = MB * NB <= 2 ? 2 : 1;  // groups in flight
  using sink = detail::fma_avx2<MB, BF16>;
  for (int g0 = 0; g0 < 2; g0 += G) {
    sink k[NB * G];  // k[b * G + g]: W row b, group g0 + g
    LOWBIT_HOST_UNROLL for (int i = 0; i < NB * G; ++i) {
      k[i].x = x;
      LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) k[i].acc[a][0] = k[i].acc[a][1] = _mm256_setzero_ps();
    }
    for (std::int64_t j = 0; j < J; ++j) {
      const std::uint8_t* c[NB * G];
      const float* sc[NB * G];
      const int* z[NB * G];
      LOWBIT_HOST_UNROLL for (int i = 0; i < NB * G; ++i) {
        const std::int64_t r0 = chunks * (2 * j + g0 + i % G);  // the group's first chunk
        c[i] = codes[i / G] + r0 * chunk_bytes;
        sc[i] = scale[i / G] + r0;
        z[i] = zp[i / G] + r0;
        k[i].base = (2 * j + g0 + i % G) * mm::group_elements;
      }
      decode_groups_avx2<F, NB * G>(c, sc, z, table, unit, k, normal);
    }
    LOWBIT_HOST_UNROLL for (int i = 0; i < NB * G; ++i)
      LOWBIT_HOST_UNROLL for (int a = 0; a < MB; ++a) {
        float* o = s + ((i / G) * MB + a) * 32 + (g0 + i % G) * 16;
        _mm256_storeu_ps(o, detail::threads_low(k[i].acc[a][0], k[i].acc[a][1]));
        _mm256_storeu_ps(o + 8, detail::threads_high(k[i].acc[a][0], k[i].acc[a][1]));
      }
  }
}

#endif

}  // namespace mmk
}  // namespace host
LOWBIT_NAMESPACE_END
