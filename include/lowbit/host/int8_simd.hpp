// SPDX-License-Identifier: Apache-2.0
/// @file int8_simd.hpp
/// @brief AVX-512 kernels of the LLM.int8 host path around the GEMM: row statistics with the
///        outlier mask, activation encoding, and the epilogue. Each evaluates exactly the
///        formulas of int8/llm_int8.hpp (IEEE multiply, FMA and add, rounding by an explicit
///        round-to-nearest-even instruction, never the floating-point environment), so results
///        equal the portable code bit for bit; each handles a prefix of its range and returns its
///        length, leaving the rest to the portable code.
#pragma once

#include "../config.hpp"
#include "../dtype.hpp"
#include "../int8/llm_int8.hpp"
#include "simd_avx512.hpp"

#include <cstdint>
#include <cstring>

#if LOWBIT_HAVE_AVX512_KERNELS
// The engine's AVX-512 target (so its load16 inlines here) plus FMA for the epilogue.
#  define LOWBIT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#endif

LOWBIT_NAMESPACE_BEGIN
namespace host {
namespace int8_avx512 {

/// Columns per weight panel of the outlier sums (int8/matmul.hpp lays the panels out, the
/// AVX-512 kernel below takes one panel as two 16-lane vectors).
inline constexpr std::int64_t outlier_panel_width = 32;

#if LOWBIT_HAVE_AVX512_KERNELS

LOWBIT_AVX512_WARNINGS_PUSH  // simd_avx512.hpp: GCC 12's false -Wuninitialized in AVX-512 intrinsics

/// True if this CPU runs these kernels: the engine's AVX-512 kernels (which checks the OS saves
/// the zmm state) and FMA.
inline bool available() noexcept {
  static const bool ok = avx512::available() && __builtin_cpu_supports("fma");
  return ok;
}

/// Row statistics over x[0, n): max |x| over the non-outliers into `absmax` (merged), outlier
/// columns flagged in `flags` (when `split`). Stops before the first 16-element group holding
/// NaN/Inf (the portable code then finds it) and returns the number of elements done.
template <class T>
LOWBIT_TARGET_AVX512 std::int64_t row_stats(const T* x, std::int64_t n, bool split, float threshold, float& absmax,
                                            std::uint8_t* flags) {
  const __m512i magnitude = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512 big = _mm512_set1_ps(3.40282347e38f);
  const __m512 thr = _mm512_set1_ps(threshold);
  __m512 am = _mm512_setzero_ps();
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(avx512::detail::load16(x + i)), magnitude));
    if (_mm512_cmp_ps_mask(a, big, _CMP_LE_OQ) != 0xFFFF) break;  // NaN or Inf in the group
    __mmask16 keep = 0xFFFF;
    if (split) {
      const __mmask16 out = _mm512_cmp_ps_mask(a, thr, _CMP_GE_OQ);
      if (out) {
        for (int j = 0; j < 16; ++j)
          if ((out >> j) & 1) flags[i + j] = 1;
        keep = static_cast<__mmask16>(~out);
      }
    }
    am = _mm512_mask_max_ps(am, keep, am, a);
  }
  const float m = _mm512_reduce_max_ps(am);
  absmax = m > absmax ? m : absmax;
  return i;
}

/// Codes of x[0, n) with multiplier `inv` (a row that is not a zero row): clamp(rne(x * inv)).
template <class T>
LOWBIT_TARGET_AVX512 std::int64_t encode(const T* x, std::int64_t n, float inv, std::int8_t* out) {
  const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 y = _mm512_mul_ps(avx512::detail::load16(x + i), vinv);
    y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);  // finite input: no NaN here
    y = _mm512_roundscale_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(y)));
  }
  return i;
}

/// Epilogue of one output row into float32: out[n] = epilogue(c[n], row, col[n], bias[n]
/// (0 if null), outlier[n] (none if null)).
LOWBIT_TARGET_AVX512 inline std::int64_t epilogue_row(const std::int32_t* c, float row, const float* col, const float* bias,
                                                      const float* outlier, std::int64_t n, float* out) {
  const __m512 vrow = _mm512_set1_ps(row), k = _mm512_set1_ps(int8::inv_127_squared);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 cf = _mm512_cvt_roundepi32_ps(_mm512_loadu_si512(c + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 rc = _mm512_mul_ps(_mm512_mul_ps(cf, vrow), _mm512_loadu_ps(col + i));
    __m512 y = _mm512_fmadd_ps(rc, k, bias ? _mm512_loadu_ps(bias + i) : _mm512_setzero_ps());
    if (outlier) y = _mm512_add_ps(y, _mm512_loadu_ps(outlier + i));
    _mm512_storeu_ps(out + i, y);
  }
  return i;
}

/// Outlier sums of R rows (1..4) and one panel of outlier_panel_width (P = 32) columns:
/// out[r * ldo + c] = Σ_j xo[r * ldx + j] · wp[j * P + c], j = 0..count-1 in order, each step
/// int8::outlier_step (a rounded multiply, then a rounded add: never fused). `wp` is the panel
/// [count, P]; `width` (<= P) columns are stored.
template <int R>
LOWBIT_TARGET_AVX512 void outlier_panel(const float* xo, std::int64_t ldx, std::int64_t count, const float* wp, float* out,
                                        std::int64_t ldo, std::int64_t width) {
  static_assert(outlier_panel_width == 32, "one panel is two 16-lane vectors");
  constexpr std::int64_t P = outlier_panel_width;
  __m512 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (std::int64_t j = 0; j < count; ++j) {
    const __m512 w0 = _mm512_loadu_ps(wp + j * P), w1 = _mm512_loadu_ps(wp + j * P + 16);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(xo[r * ldx + j]);
      __m512 p0 = _mm512_mul_ps(a, w0), p1 = _mm512_mul_ps(a, w1);
      __asm__("" : "+v"(p0), "+v"(p1));  // keep the products rounded: no contraction into an FMA
      acc[r][0] = _mm512_add_ps(acc[r][0], p0);
      acc[r][1] = _mm512_add_ps(acc[r][1], p1);
    }
  }
  const __mmask16 m0 = width >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << width) - 1u);
  const __mmask16 m1 = width >= P ? __mmask16(0xFFFF) : (width <= 16 ? __mmask16(0) : static_cast<__mmask16>((1u << (width - 16)) - 1u));
  for (int r = 0; r < R; ++r) {
    _mm512_mask_storeu_ps(out + r * ldo, m0, acc[r][0]);
    _mm512_mask_storeu_ps(out + r * ldo + 16, m1, acc[r][1]);
  }
}

LOWBIT_AVX512_WARNINGS_POP

#else

inline bool available() noexcept { return false; }
template <class T>
std::int64_t row_stats(const T*, std::int64_t, bool, float, float&, std::uint8_t*) { return 0; }
template <class T>
std::int64_t encode(const T*, std::int64_t, float, std::int8_t*) { return 0; }
inline std::int64_t epilogue_row(const std::int32_t*, float, const float*, const float*, const float*, std::int64_t, float*) {
  return 0;
}
template <int R>
void outlier_panel(const float*, std::int64_t, std::int64_t, const float*, float*, std::int64_t, std::int64_t) {}

#endif

}  // namespace int8_avx512
}  // namespace host
LOWBIT_NAMESPACE_END
