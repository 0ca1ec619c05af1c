// SPDX-License-Identifier: Apache-2.0
/// @file blockscaled.hpp
/// @brief The CPU engine of the block-scaled formats (MX, NVFP4, FP8 with float32 tile scales):
///        quantize and dequantize float32/float16/bfloat16 matrices tile by tile, multi-threaded,
///        with the AVX2 kernels of the blockwise engine where a format's element rule is theirs.
///
/// The per-tile formulas are those of quant/blockscaled.hpp; the tile grid and scale layout are
/// quant/layout.hpp's tile_grid (plain row-major scales).
///
/// @par Semantics
/// - Input: a row-major `rows` x `cols` matrix (any tensor with its leading dimensions folded into
///   the rows), any alignment.
/// - Non-finite input (NaN, ±Inf) is an error naming the first bad (row-major) index unless
///   `options::allow_nonfinite`; then a tile's amax is NaN if it holds a NaN (NaN-propagating,
///   unlike the blockwise formats) and the results are those of quant/blockscaled.hpp (MX: the
///   tile's scale is 0xFF and it decodes to NaN; NVFP4 with a per-tensor scale: the whole tensor
///   decodes to NaN; fp8_e4m3_block: IEEE arithmetic on the float32 scale).
/// - Partial tiles at the right and bottom edges: their amax covers the elements that exist.
/// - 4-bit formats need even `cols` and tile columns, packed FP6 multiples of 4, so that no byte
///   holds codes of two tiles (they are refused by name otherwise).
/// - On error from `quantize_scaled_into` the buffers may hold partial results; the owning API
///   (scaled_tensor.hpp) discards them.
/// - Floating-point mode: IEEE default mode whatever the caller set (as host/engine.hpp).
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../dtype.hpp"
#include "../quant/blockscaled.hpp"
#include "../quant/layout.hpp"
#include "../status.hpp"
#include "engine.hpp"
#include "parallel.hpp"
#include "simd_avx2.hpp"
#include "simd_avx512.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace host {

/// The view the host and CUDA engines share (quant/layout.hpp).
using lowbit::scaled_view;
using lowbit::validate;
using lowbit::validate_layout;

namespace detail {

/// The element codec of a block-scaled format (quant::scaled_codec), and the blockwise format
/// whose SIMD kernels compute `sat(x * m)` and `decode(q) * f` with it (`kernel`; fp8_e4m3_block
/// uses them to dequantize only, its encode divides).
template <bool Kernel, format KernelFormat>
struct scheme_of {
  static constexpr bool kernel = Kernel;
  static constexpr format kernel_format = KernelFormat;
};
template <scaled_format F>
struct scaled_scheme;
template <>
struct scaled_scheme<scaled_format::mxfp8_e4m3> : scheme_of<true, format::e4m3fn> {};
template <>
struct scaled_scheme<scaled_format::mxfp8_e5m2> : scheme_of<true, format::e5m2> {};
template <>
struct scaled_scheme<scaled_format::mxfp6_e2m3> : scheme_of<false, format::e4m3fn> {};
template <>
struct scaled_scheme<scaled_format::mxfp6_e3m2> : scheme_of<false, format::e4m3fn> {};
template <>
struct scaled_scheme<scaled_format::mxfp4> : scheme_of<true, format::e2m1fn> {};
template <>
struct scaled_scheme<scaled_format::nvfp4> : scheme_of<true, format::e2m1fn> {};
template <>
struct scaled_scheme<scaled_format::fp8_e4m3_block> : scheme_of<true, format::e4m3fn> {};

using quant::visit_scaled;

using quant::tile_encoding;

/// The encoding of a tile with max |x| `amax` (NaN if it holds a NaN): quant::encode_tile.
template <scaled_format F>
inline tile_encoding encode_tile(float amax, const scaled_view& q, bool tensor_zero) {
  return quant::encode_tile<F>(amax, q.mx_rule, q.global_scale, q.nvfp4, tensor_zero);
}

/// The code of one element: quant::encode_scaled_element.
template <scaled_format F>
inline std::uint8_t encode_element(float x, const tile_encoding& t) {
  return quant::encode_scaled_element<F>(x, t);
}

/// The floats the codes of each tile are multiplied by on dequantization
/// (quant::scaled_tile_factor), read row by row: the one-byte scale codes through a table of
/// their 256 factors made once, fp8_e4m3_block's float32 scales as stored.
template <scaled_format F>
class tile_factors {
 public:
  explicit tile_factors(const scaled_view& q) : q_(q), grid_cols_(q.grid().grid_cols()) {
    if constexpr (F != scaled_format::fp8_e4m3_block) {
      for (int c = 0; c < 256; ++c) {
        const auto code = static_cast<std::uint8_t>(c);
        table_[c] = quant::scaled_tile_factor<F>(&code, 0, q.global_scale, q.nvfp4);
      }
    }
  }
  /// The factors of tiles (ti, tj0 .. tj1 - 1) into f[0 .. tj1 - tj0).
  void row(std::int64_t ti, std::int64_t tj0, std::int64_t tj1, float* f) const {
    each(ti, tj0, tj1, [&](std::int64_t j, std::int64_t s) { f[j] = at(s); });
  }
  /// fn(j, s) for tiles (ti, tj0 + j), j < tj1 - tj0, s the index of the tile's scale.
  template <class Fn>
  void each(std::int64_t ti, std::int64_t tj0, std::int64_t tj1, Fn&& fn) const {
    const std::int64_t base = q_.layout == scale_layout::swizzled ? quant::swizzled_row_offset(ti, grid_cols_) : ti * grid_cols_;
    for (std::int64_t tj = tj0; tj < tj1; ++tj) fn(tj - tj0, base + q_.scale_column_offset(tj));
  }
  /// The factor of every tile whose one-byte scale code is c (not fp8_e4m3_block).
  float of_code(std::uint8_t c) const { return table_[c]; }
  /// The factor of tile (ti, tj).
  float operator()(std::int64_t ti, std::int64_t tj) const {
    float f;
    row(ti, tj, tj + 1, &f);
    return f;
  }

 private:
  float at(std::int64_t s) const {
    if constexpr (F == scaled_format::fp8_e4m3_block) return static_cast<const float*>(q_.scales)[s];
    else return table_[static_cast<const std::uint8_t*>(q_.scales)[s]];
  }
  const scaled_view& q_;
  std::int64_t grid_cols_;
  float table_[F == scaled_format::fp8_e4m3_block ? 1 : 256];
};

#if LOWBIT_HAVE_AVX2_KERNELS
/// fp8_e4m3_block's element rule on a prefix of whole vectors: e4m3 codes of sat(x / s), one
/// IEEE division per element (the AVX2 minifloat kernel of the blockwise engine does the cast).
template <class T>
LOWBIT_AVX2 std::int64_t encode_e4m3_divided(const T* x, std::int64_t n, float s, std::uint8_t* out) {
  const __m256 d = _mm256_set1_ps(s);
  const std::int64_t m = n & ~std::int64_t{7};
  for (std::int64_t i = 0; i < m; i += 8)
    avx2::detail::store_bytes8(out + i, avx2::detail::minifloat_codes<codecs::e4m3fn>(_mm256_div_ps(avx2::detail::load8(x + i), d)));
  return m;
}
#else
template <class T>
std::int64_t encode_e4m3_divided(const T*, std::int64_t, float, std::uint8_t*) {
  return 0;
}
#endif

/// Formats whose 1 x 16 and 1 x 32 tiles quantize_row_tiles takes (sat(x * m) with a blockwise
/// kernel codec; not fp8_e4m3_block, whose elements are divided).
template <scaled_format F>
constexpr bool fused_kernel() {
  return scaled_scheme<F>::kernel && F != scaled_format::fp8_e4m3_block;
}

#if LOWBIT_HAVE_AVX2_KERNELS
/// Quantizes `ntiles` consecutive whole 1 x TC tiles of one row (TC = 16 or 32) starting at x:
/// each tile's amax, scale and codes while its elements are in registers, the same arithmetic as
/// encode_tile and encode_segment. Returns the tiles done: it stops before a tile holding a
/// non-finite element or whose multiplier is not finite (NVFP4 with a NaN per-tensor scale),
/// which the caller encodes with the general code.
template <scaled_format F, int TC, class T>
LOWBIT_AVX2 std::int64_t quantize_row_tiles(const T* x, std::int64_t ntiles, const scaled_view& q, bool tensor_zero, std::uint8_t* codes,
                                            std::uint8_t* scales) {
  using codec = quant::scaled_codec<F>;
  constexpr int V = TC / 8;
  constexpr bool four = info(F).bits == 4;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  for (std::int64_t t = 0; t < ntiles; ++t) {
    __m256 v[V];
    __m256 a = _mm256_setzero_ps();
    __m256i bad = _mm256_setzero_si256();
    for (int k = 0; k < V; ++k) {
      v[k] = avx2::detail::load8(x + t * TC + 8 * k);
      bad = _mm256_or_si256(bad, avx2::detail::nonfinite_mask(v[k]));
      a = _mm256_max_ps(_mm256_and_ps(v[k], abs_mask), a);
    }
    if (!_mm256_testz_si256(bad, bad)) return t;
    const tile_encoding e = encode_tile<F>(avx2::detail::hmax(a), q, tensor_zero);
    if (!is_finite_bits(e.factor)) return t;
    scales[t] = e.scale_code;
    if (e.zero) {  // every code +0 (not x * 0, which keeps the sign of negative elements)
      std::memset(codes + (four ? t * TC / 2 : t * TC), 0, four ? TC / 2 : TC);
      continue;
    }
    const __m256 f = _mm256_set1_ps(e.factor);
    if constexpr (four) {
      for (int k = 0; k < V; k += 2)
        avx2::detail::store_nibbles16<codecs::nibble_order::low_first>(codes + t * TC / 2 + 4 * k,
                                                                      avx2::detail::minifloat_codes<codec>(_mm256_mul_ps(v[k], f)),
                                                                      avx2::detail::minifloat_codes<codec>(_mm256_mul_ps(v[k + 1], f)));
    } else {
      for (int k = 0; k < V; ++k)
        avx2::detail::store_bytes8(codes + t * TC + 8 * k, avx2::detail::minifloat_codes<codec>(_mm256_mul_ps(v[k], f)));
    }
  }
  return ntiles;
}
#else
template <scaled_format F, int TC, class T>
std::int64_t quantize_row_tiles(const T*, std::int64_t, const scaled_view&, bool, std::uint8_t*, std::uint8_t*) {
  return 0;
}
#endif

#if LOWBIT_HAVE_AVX512_KERNELS
LOWBIT_AVX512_WARNINGS_PUSH  // (simd_avx512.hpp: GCC 12's false -Wuninitialized in its intrinsics)

/// quant::nvfp4_tile_encoder of 16 tiles with finite max |x| amax[0 .. 16), the same operations
/// in the same order: the e4m3 scale codes into sc, the multipliers into m (NaN where the scale
/// is).
LOWBIT_AVX512 inline void nvfp4_tiles16(const float* amax, float global, quant::nvfp4_global conv, std::uint8_t* sc, float* m) {
  const __m512 block = _mm512_div_ps(_mm512_loadu_ps(amax), _mm512_set1_ps(6.0f));
  const __m512 g = _mm512_set1_ps(global);
  const __m512 v = conv == quant::nvfp4_global::scale ? _mm512_div_ps(block, g) : conv == quant::nvfp4_global::inverse ? _mm512_mul_ps(block, g) : block;
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  // the clamp to [2^-6, 448] on the bit patterns as int32, which order as the floats do where
  // one of the two is non-negative (NaN lanes are replaced below)
  const __m512 c = _mm512_castsi512_ps(_mm512_min_epi32(_mm512_max_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(0x3C800000)), _mm512_set1_epi32(0x43E00000)));
  // c is a normal e4m3 magnitude or rounds to one: the code, and its value placed in a float32
  const __m512i code = avx512::detail::minifloat_codes<codecs::e4m3fn>(c);
  const __m512 b = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(code, 20), _mm512_set1_epi32((127 - 7) << 23)));
  const __m512 mult = conv == quant::nvfp4_global::scale     ? _mm512_div_ps(_mm512_set1_ps(1.0f / global), b)
                      : conv == quant::nvfp4_global::inverse ? _mm512_div_ps(g, b)
                                                      : _mm512_div_ps(_mm512_set1_ps(1.0f), b);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(sc), _mm512_cvtepi32_epi8(_mm512_mask_blend_epi32(nan, code, _mm512_set1_epi32(0x7F))));
  _mm512_storeu_ps(m, _mm512_mask_blend_ps(nan, mult, _mm512_castsi512_ps(_mm512_set1_epi32(0x7FC00000))));
}

/// 16 values v / d for fp8_e4m3_block's element rule e4m3(sat(f32(v / d))), m being f32(1 / d)
/// (or 0: every lane divided). The lanes agree with f32(v / d) wherever the e4m3 code can tell:
/// y = f32(v * m) is within 1.5 ulp of v / d (m is within 2^-24 relative of 1 / d, and the
/// product is rounded once), so within 4 representations (bit patterns, across a binade
/// boundary) of f32(v / d). e4m3's code of a normal magnitude changes only at the midpoints of
/// its 3-bit mantissa: the float32 patterns with low 20 bits 0x80000. So a lane of y not within
/// 4 patterns of such a midpoint, and not nonzero below 2^-6 + 8 patterns (e4m3's subnormal
/// range, where the boundaries lie elsewhere), has the code of f32(v / d). A lane near a
/// midpoint is most often an exact quotient (inputs with short significands, such as round
/// numbers, land on midpoints exactly): it is corrected once, y' = f32(y + (v - y d) m)
/// (both by FMA; for an exact quotient q, y' = f32(q + (q - y) * 2^-24 at most) = q), and kept
/// if v - y' d is exactly 0. That test needs the residual not to underflow, so `exact_ok` says
/// d >= 2^-90 (a nonzero residual is then at least 2^-142). Any other lane makes the vector
/// divided. The division (about 16 cycles a vector on this Xeon) took 60% of the 128 x 128
/// quantizer's time. The test FP8BlockMultiplyAgreesWithDivisionNearEveryBoundary walks every
/// e4m3 rounding boundary.
LOWBIT_AVX512 inline __m512 e4m3_divided16(__m512 v, __m512 d, __m512 m, bool exact_ok) {
  const __m512 y = _mm512_mul_ps(v, m);
  const __m512i a = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(0x7FFFFFFF));
  // 1 <= a <= 2^-6 + 7 patterns (0x3C800007)
  const __mmask16 small = _mm512_cmplt_epu32_mask(_mm512_sub_epi32(a, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x3C800007));
  // |(a & 0xFFFFF) - 0x80000| <= 4
  const __mmask16 mid = _mm512_cmple_epu32_mask(_mm512_sub_epi32(_mm512_and_si512(a, _mm512_set1_epi32(0xFFFFF)), _mm512_set1_epi32(0x7FFFC)),
                                                _mm512_set1_epi32(8));
  if (_mm512_cmpeq_ps_mask(m, _mm512_setzero_ps()) != 0 || small != 0) return _mm512_div_ps(v, d);
  if (mid == 0) return y;
  if (exact_ok) {
    const __m512 y1 = _mm512_fmadd_ps(_mm512_fnmadd_ps(y, d, v), m, y);
    if ((mid & ~_mm512_cmpeq_ps_mask(_mm512_fnmadd_ps(y1, d, v), _mm512_setzero_ps())) == 0) return _mm512_mask_mov_ps(y, mid, y1);
  }
  return _mm512_div_ps(v, d);
}

/// The e4m3 codes (one a byte) of the 16 values at p divided by d: e4m3_divided16, or with Divide
/// a plain division (m == 0, where e4m3_divided16 would compute and test its product for nothing).
template <bool Divide, class T>
LOWBIT_AVX512 inline __m128i e4m3_codes16(const T* p, __m512 d, __m512 m, bool exact_ok, const avx512::detail::thresholds& th) {
  const __m512 v = avx512::detail::load16(p);
  return _mm512_cvtepi32_epi8(avx512::detail::codes16<format::e4m3fn>(Divide ? _mm512_div_ps(v, d) : e4m3_divided16(v, d, m, exact_ok), th));
}

/// The e4m3 codes of one row segment of a tile, tc elements at p into o (e4m3_codes16); whole
/// 64-byte lines of codes streamed where `stream` and o is aligned.
template <bool Divide, class T>
LOWBIT_AVX512 void e4m3_tile_row(const T* p, std::uint8_t* o, std::int64_t tc, bool stream, __m512 d, __m512 m, bool exact_ok,
                                 const avx512::detail::thresholds& th) {
  std::int64_t i = 0;
  if (stream && (reinterpret_cast<std::uintptr_t>(o) & 63) == 0) {
    for (; i + 64 <= tc; i += 64) {
      __m512i v = _mm512_castsi128_si512(e4m3_codes16<Divide>(p + i, d, m, exact_ok, th));
      v = _mm512_inserti32x4(v, e4m3_codes16<Divide>(p + i + 16, d, m, exact_ok, th), 1);
      v = _mm512_inserti32x4(v, e4m3_codes16<Divide>(p + i + 32, d, m, exact_ok, th), 2);
      v = _mm512_inserti32x4(v, e4m3_codes16<Divide>(p + i + 48, d, m, exact_ok, th), 3);
      _mm512_stream_si512(reinterpret_cast<__m512i*>(o + i), v);
    }
  }
  for (; i < tc; i += 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(o + i), e4m3_codes16<Divide>(p + i, d, m, exact_ok, th));
}

/// fp8_e4m3_block: the tiles (ti, tj0 .. tj0 + n - 1), whole and of a multiple of 16 columns,
/// rows r0 .. r0 + nr - 1, row by row (contiguous reads): every tile's amax
/// (avx512::absmax_run on each row's segment), its scale (encode_tile, stored), then each row's
/// codes sat(x / s) (e4m3_divided16), +0 in a zero tile; rows of whole 64-byte lines of codes
/// are streamed (non-temporal stores, no read of the lines they replace). The task's tiles are
/// sized so that the second read finds them in cache (tiles_per_task). While the codes are
/// computed, the rows of the block `next` (`next_rows` rows of `next_cols` elements at stride
/// q.cols: the caller's next task, null if none) are prefetched, a slice per tile, so that the
/// encoding overlaps that task's memory reads. Returns false, having written nothing, if an
/// element is not finite (the caller's general code finds it).
template <class T>
LOWBIT_AVX512 bool block_tiles_encode(const T* x, const scaled_view& q, std::int64_t r0, std::int64_t nr, std::int64_t ti, std::int64_t tj0,
                                      std::int64_t n, const T* next, std::int64_t next_rows, std::int64_t next_cols) {
  const std::int64_t tc = q.tile.cols, c0 = tj0 * tc;
  // the codes bypass the cache where whole lines are written (no read of the lines they replace)
  const bool stream = tc % 64 == 0;
  alignas(64) float amax[256], row[256], s[256], rcp[256];
  std::fill(amax, amax + n, 0.0f);
  for (std::int64_t r = r0; r < r0 + nr; ++r) {
    // (the next row's segment prefetched while this one is read)
    if (!avx512::absmax_run(x + r * q.cols + c0, n, tc, row, q.cols)) return false;
    for (std::int64_t j = 0; j < n; ++j) amax[j] = row[j] > amax[j] ? row[j] : amax[j];
  }
  for (std::int64_t j = 0; j < n; ++j) {
    const tile_encoding e = encode_tile<scaled_format::fp8_e4m3_block>(amax[j], q, false);
    static_cast<float*>(q.scales)[q.scale_index(ti, tj0 + j)] = e.scale_f32;
    s[j] = e.zero ? 0.0f : e.factor;
    // 1 / s for the multiply of e4m3_divided16, or 0 (divide every element) where s is
    // subnormal, and for 16-bit inputs: measured on 8192 x 8192 bfloat16, the multiply made the
    // row slower (45-46% of memcpy against 53% dividing), float32 faster (60-64% against 56-58%)
    rcp[j] = sizeof(T) == 4 && s[j] >= std::numeric_limits<float>::min() && 1.0f / s[j] < bits_float(0x7F800000u) ? 1.0f / s[j] : 0.0f;
  }
  const avx512::detail::thresholds th = avx512::detail::make_thresholds<format::e4m3fn>();
  // the next task's row r - r0 is prefetched a slice per tile, spread over this row's work
  const std::size_t next_bytes = static_cast<std::size_t>(next_cols) * sizeof(T);
  const std::size_t slice = (next_bytes / static_cast<std::size_t>(n) + 63) / 64 * 64;
  for (std::int64_t r = r0; r < r0 + nr; ++r) {
    const bool pf = next != nullptr && r - r0 < next_rows;
    for (std::int64_t j = 0; j < n; ++j) {
      const std::size_t from = static_cast<std::size_t>(j) * slice;
      if (pf && from < next_bytes) avx2::detail::prefetch_ahead(next + (r - r0) * q.cols, from, std::min(slice, next_bytes - from));
      const T* p = x + r * q.cols + c0 + j * tc;
      std::uint8_t* o = q.codes + r * q.cols + c0 + j * tc;
      if (s[j] == 0.0f) {
        std::memset(o, 0, static_cast<std::size_t>(tc));
        continue;
      }
      const __m512 d = _mm512_set1_ps(s[j]), m = _mm512_set1_ps(rcp[j]);
      const bool exact_ok = s[j] >= 8.07793567e-28f;  // 2^-90
      if (rcp[j] == 0.0f) e4m3_tile_row<true>(p, o, tc, stream, d, m, exact_ok, th);
      else e4m3_tile_row<false>(p, o, tc, stream, d, m, exact_ok, th);
    }
  }
  if (stream) _mm_sfence();
  return true;
}

/// quantize_row_tiles with the AVX-512 run kernels of the blockwise engine, for up to 256 tiles of
/// tc = 16 or 32 columns: every tile's amax (avx512::absmax_run), then its scale and multiplier
/// (encode_tile, one scalar call a tile), then the codes (avx512::encode_run: sat(x * m), a zero
/// tile +0). Returns the tiles done: -1 if one of them holds a non-finite element (the caller
/// takes quantize_row_tiles, which finds it), else all of them or those before the first whose
/// multiplier is not finite (NVFP4 with a NaN per-tensor scale), which the caller encodes with
/// the general code.
template <scaled_format F, class T>
LOWBIT_AVX512 std::int64_t wide_row_tiles(const T* x, std::int64_t ntiles, std::int64_t tc, const scaled_view& q, bool tensor_zero,
                                          std::uint8_t* codes, std::uint8_t* scales) {
  alignas(64) float amax[256], inv[256];
  alignas(64) std::uint8_t sc[256];
  const std::int64_t n = std::min<std::int64_t>(ntiles, 256);
  if (!avx512::absmax_run(x, n, tc, amax)) return -1;
  std::fill(amax + n, amax + (n + 15) / 16 * 16, 0.0f);  // nvfp4_tiles16's lanes past the run
  std::int64_t k = 0;
  if constexpr (F == scaled_format::nvfp4) {
    if (!tensor_zero) {  // nvfp4_tile_encoder 16 tiles at a time
      for (std::int64_t j = 0; j < n; j += 16) nvfp4_tiles16(amax + j, q.global_scale, q.nvfp4, sc + j, inv + j);
      for (; k < n && is_finite_bits(inv[k]) && inv[k] > 0.0f; ++k) scales[k] = sc[k];
    }
  }
  for (; k < n; ++k) {
    const tile_encoding e = encode_tile<F>(amax[k], q, tensor_zero);
    if (!is_finite_bits(e.factor) || !(e.zero || e.factor > 0.0f)) break;
    scales[k] = e.scale_code;
    inv[k] = e.zero ? 0.0f : e.factor;  // encode_run: a multiplier of 0 is a zero tile
  }
  // the run after this one (the next task's, most often) is prefetched while this one encodes
  avx512::encode_run<scaled_scheme<F>::kernel_format>(x, k, tc, inv, codes, n * tc);
  return k;
}

/// The 16 six-bit codes (one a byte) of 12 bytes packed as codecs::pack_fp6x4 packs them: those
/// at p, or with `Tail` those ending at p + 12, read as the last 12 of the 16 bytes from p - 4 (so
/// that no byte past the run is read).
template <bool Tail>
LOWBIT_AVX512 inline __m128i fp6_unpack16(const std::uint8_t* p) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(Tail ? p - 4 : p));
  const __m128i w = Tail ? _mm_shuffle_epi8(b, _mm_setr_epi8(4, 5, 6, -1, 7, 8, 9, -1, 10, 11, 12, -1, 13, 14, 15, -1))
                         : _mm_shuffle_epi8(b, _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1));
  // each dword: the 24 bits c0 | c1 << 6 | c2 << 12 | c3 << 18, spread to one code a byte
  return _mm_or_si128(_mm_or_si128(_mm_and_si128(w, _mm_set1_epi32(0x3F)), _mm_and_si128(_mm_slli_epi32(w, 2), _mm_set1_epi32(0x3F00))),
                      _mm_or_si128(_mm_and_si128(_mm_slli_epi32(w, 4), _mm_set1_epi32(0x3F0000)),
                                   _mm_and_si128(_mm_slli_epi32(w, 6), _mm_set1_epi32(0x3F000000))));
}

/// fp6_unpack16's inverse: 16 codes (one a byte, below 64) as 12 packed bytes, in the low 12
/// bytes of the result (the rest 0).
LOWBIT_AVX512 inline __m128i fp6_pack16(__m128i u) {
  const __m128i w = _mm_or_si128(_mm_or_si128(_mm_and_si128(u, _mm_set1_epi32(0x3F)), _mm_and_si128(_mm_srli_epi32(u, 2), _mm_set1_epi32(0xFC0))),
                                 _mm_or_si128(_mm_and_si128(_mm_srli_epi32(u, 4), _mm_set1_epi32(0x3F000)),
                                              _mm_and_si128(_mm_srli_epi32(u, 6), _mm_set1_epi32(0xFC0000))));
  return _mm_shuffle_epi8(w, _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
}

/// MXFP6: quantize_row_tiles for up to 256 whole 1 x 32 tiles (row-major scales): every tile's
/// amax (avx512::absmax_run), its scale and multiplier (encode_tile), then the codes sat(x * m)
/// 16 at a time (the minifloat rounding of every SIMD encoder), packed or one a byte as q.fp6
/// says. Returns the tiles done, or -1 if one holds a non-finite element (the caller's general
/// code finds it).
template <scaled_format F, class T>
LOWBIT_AVX512 std::int64_t fp6_row_tiles(const T* x, std::int64_t ntiles, const scaled_view& q, std::uint8_t* codes, std::uint8_t* scales) {
  using codec = quant::scaled_codec<F>;
  alignas(64) float amax[256];
  const std::int64_t n = std::min<std::int64_t>(ntiles, 256);
  if (!avx512::absmax_run(x, n, 32, amax)) return -1;
  const bool packed = q.fp6 == fp6_packing::packed;
  const std::uintptr_t ahead = static_cast<std::uintptr_t>(n) * 32 * sizeof(T);  // the next run
  std::int64_t k = 0;
  for (; k < n; ++k) {
    const tile_encoding e = encode_tile<F>(amax[k], q, false);
    if (!is_finite_bits(e.factor) || !(e.factor > 0.0f)) break;
    scales[k] = e.scale_code;
    const T* p = x + k * 32;
    avx2::detail::prefetch_ahead(p, ahead, 32 * sizeof(T));
    const __m512 m = _mm512_set1_ps(e.factor);
    if constexpr (std::is_same_v<T, bf16>) {
      if (packed) {
        // bfloat16: the even and odd elements of one load (load_bf16_halves), their codes
        // joined in the 32-bit lanes before any narrowing: lane i holds codes 2i, 2i + 1 as 12
        // bits, qword j codes 4j .. 4j + 3 as the 24 bits of pack_fp6x4, and one narrowing and
        // one byte shuffle leave the 24 bytes of the tile
        const avx512::detail::bf16_halves h = avx512::detail::load_bf16_halves(p);
        const __m512i ce = avx512::detail::minifloat_codes<codec>(_mm512_mul_ps(h.even, m));
        const __m512i co = avx512::detail::minifloat_codes<codec>(_mm512_mul_ps(h.odd, m));
        const __m512i pair = _mm512_or_si512(ce, _mm512_slli_epi32(co, 6));  // codes < 64
        const __m256i quad = _mm512_cvtepi64_epi32(_mm512_or_si512(pair, _mm512_srli_epi64(pair, 20)));
        const __m256i bytes = _mm256_shuffle_epi8(quad, _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1, 0, 1, 2, 4, 5,
                                                                         6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1));
        std::uint8_t* o = codes + k * 24;
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm256_castsi256_si128(bytes));  // its last 4 bytes rewritten next
        _mm_mask_storeu_epi8(o + 12, 0x0FFF, _mm256_extracti128_si256(bytes, 1));
        continue;
      }
    }
    const __m128i c0 = _mm512_cvtepi32_epi8(avx512::detail::minifloat_codes<codec>(_mm512_mul_ps(avx512::detail::load16(p), m)));
    const __m128i c1 = _mm512_cvtepi32_epi8(avx512::detail::minifloat_codes<codec>(_mm512_mul_ps(avx512::detail::load16(p + 16), m)));
    if (packed) {
      std::uint8_t* o = codes + k * 24;
      const __m128i a = fp6_pack16(c0), b = fp6_pack16(c1);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm_or_si128(a, _mm_slli_si128(b, 12)));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(o + 16), _mm_srli_si128(b, 4));
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k * 32), c0);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + k * 32 + 16), c1);
    }
  }
  return k;
}

/// MXFP6 dequantization of `ntiles` whole tiles of `tc` columns (a multiple of 32) of one row:
/// element = T(f32(value * factors[tile])), value looked up in the 64 entries of `values` (two
/// two-register permutes), as the element loop computes it. `codes`: the run's first code
/// (packed: its 3-byte group). Stream: out 64-byte aligned, non-temporal stores.
template <class T, bool Stream>
LOWBIT_AVX512 void fp6_decode_run(const std::uint8_t* codes, std::int64_t ntiles, std::int64_t tc, const float* factors, bool packed,
                                  const float* values, T* out) {
  const __m512 v0 = _mm512_loadu_ps(values), v1 = _mm512_loadu_ps(values + 16);
  const __m512 v2 = _mm512_loadu_ps(values + 32), v3 = _mm512_loadu_ps(values + 48);
  for (std::int64_t b = 0; b < ntiles; ++b) {
    const __m512 f = _mm512_set1_ps(factors[b]);
    for (std::int64_t i = b * tc; i < (b + 1) * tc; i += 32) {
      avx2::detail::prefetch_stream_step(codes, static_cast<std::uintptr_t>(packed ? i / 4 * 3 : i), packed ? 24 : 32);
      __m128i c[2];
      if (packed) {
        c[0] = fp6_unpack16<false>(codes + i / 4 * 3);
        c[1] = fp6_unpack16<true>(codes + i / 4 * 3 + 12);
      } else {
        c[0] = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i)), _mm_set1_epi8(0x3F));
        c[1] = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i + 16)), _mm_set1_epi8(0x3F));
      }
      __m512 y[2];
      for (int h = 0; h < 2; ++h) {
        const __m512i idx = _mm512_cvtepu8_epi32(c[h]);
        const __m512 lo = _mm512_permutex2var_ps(v0, idx, v1), hi = _mm512_permutex2var_ps(v2, idx, v3);
        y[h] = _mm512_mul_ps(_mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), lo, hi), f);
      }
      avx512::detail::store32<Stream>(out + i, y[0], y[1]);
    }
  }
}

/// fp6_decode_run into 16-bit T from tables of the outputs: tile b's 64 possible outputs (the
/// bits of T(f32(value(code) * factor))) at rows[b][0 .. 64), looked up 32 at a time (vpermt2w).
template <class T, bool Stream>
LOWBIT_AVX512 void fp6_decode_run16(const std::uint8_t* codes, std::int64_t ntiles, std::int64_t tc, const std::uint16_t* const* rows,
                                    bool packed, T* out) {
  for (std::int64_t b = 0; b < ntiles; ++b) {
    const __m512i t0 = _mm512_loadu_si512(rows[b]), t1 = _mm512_loadu_si512(rows[b] + 32);
    for (std::int64_t i = b * tc; i < (b + 1) * tc; i += 32) {
      avx2::detail::prefetch_stream_step(codes, static_cast<std::uintptr_t>(packed ? i / 4 * 3 : i), packed ? 24 : 32);
      __m256i c;
      if (packed) {
        c = _mm256_set_m128i(fp6_unpack16<true>(codes + i / 4 * 3 + 12), fp6_unpack16<false>(codes + i / 4 * 3));
      } else {
        c = _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i)), _mm256_set1_epi8(0x3F));
      }
      const __m512i w = _mm512_permutex2var_epi16(t0, _mm512_cvtepu8_epi16(c), t1);
      if constexpr (Stream) _mm512_stream_si512(reinterpret_cast<__m512i*>(out + i), w);
      else _mm512_storeu_si512(out + i, w);
    }
  }
}
LOWBIT_AVX512_WARNINGS_POP
#else
template <scaled_format F, class T>
std::int64_t fp6_row_tiles(const T*, std::int64_t, const scaled_view&, std::uint8_t*, std::uint8_t*) {
  return -1;
}
template <class T, bool Stream>
void fp6_decode_run(const std::uint8_t*, std::int64_t, std::int64_t, const float*, bool, const float*, T*) {}
template <class T, bool Stream>
void fp6_decode_run16(const std::uint8_t*, std::int64_t, std::int64_t, const std::uint16_t* const*, bool, T*) {}
template <class T>
bool block_tiles_encode(const T*, const scaled_view&, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, const T*, std::int64_t,
                        std::int64_t) {
  return false;
}
template <scaled_format F, class T>
std::int64_t wide_row_tiles(const T*, std::int64_t, std::int64_t, const scaled_view&, bool, std::uint8_t*, std::uint8_t*) {
  return -1;
}
#endif

/// Writes the codes of elements [i0, i0 + n) (a tile's row segment; i0 and n multiples of the
/// packing unit) from their values.
template <scaled_format F, class T>
inline void encode_segment(const T* x, std::int64_t i0, std::int64_t n, const tile_encoding& t, const scaled_view& q, bool simd) {
  constexpr int bits = info(F).bits;
  std::uint8_t* out = q.codes;
  std::int64_t k = 0;
  if constexpr (F == scaled_format::fp8_e4m3_block) {
    if (simd && !t.zero && is_finite_bits(t.factor)) k = encode_e4m3_divided(x + i0, n, t.factor, out + i0);
  } else if constexpr (scaled_scheme<F>::kernel) {
    if (simd && !t.zero && t.factor == t.factor) {
      quant::block_encoder e;
      e.inv = t.factor;
      e.zero = false;
      k = avx2::encode_block<scaled_scheme<F>::kernel_format>(x + i0, n, e, bits == 4 ? out + i0 / 2 : out + i0);
    }
  }
  if constexpr (bits == 8) {
    for (; k < n; ++k) out[i0 + k] = encode_element<F>(to_float(load(x + i0 + k)), t);
  } else if constexpr (bits == 4) {
    for (; k < n; k += 2)
      out[(i0 + k) / 2] = codecs::pack_nibbles<codecs::nibble_order::low_first>(encode_element<F>(to_float(load(x + i0 + k)), t),
                                                                               encode_element<F>(to_float(load(x + i0 + k + 1)), t));
  } else if (q.fp6 == fp6_packing::unpacked) {
    for (; k < n; ++k) out[i0 + k] = encode_element<F>(to_float(load(x + i0 + k)), t);
  } else {
    for (; k < n; k += 4) {
      const T* p = x + i0 + k;
      codecs::pack_fp6x4(encode_element<F>(to_float(load(p)), t), encode_element<F>(to_float(load(p + 1)), t),
                         encode_element<F>(to_float(load(p + 2)), t), encode_element<F>(to_float(load(p + 3)), t),
                         out + (i0 + k) / 4 * 3);
    }
  }
}

#if LOWBIT_HAVE_AVX2_KERNELS
/// max |x| of the first floor(n / 8) * 8 elements into amax; returns how many it took, or -1 if
/// one of them is not finite (amax is then unspecified).
template <class T>
LOWBIT_AVX2 std::int64_t finite_amax(const T* x, std::int64_t n, float& amax) {
  const std::int64_t m = n & ~std::int64_t{7};
  if (m == 0) return 0;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 a = _mm256_setzero_ps();
  __m256i bad = _mm256_setzero_si256();
  for (std::int64_t i = 0; i < m; i += 8) {
    const __m256 v = avx2::detail::load8(x + i);
    bad = _mm256_or_si256(bad, avx2::detail::nonfinite_mask(v));
    a = _mm256_max_ps(_mm256_and_ps(v, abs_mask), a);
  }
  if (!_mm256_testz_si256(bad, bad)) return -1;
  amax = avx2::detail::hmax(a);
  return m;
}
#else
template <class T>
std::int64_t finite_amax(const T*, std::int64_t, float&) {
  return 0;
}
#endif

/// max |x| over [p, p + n), NaN-propagating; first_bad receives the offset of the first
/// non-finite element (or stays -1). The AVX2 statistics kernel takes the finite prefix of
/// whole vectors (it reports a non-finite element by handling nothing).
template <class T>
inline float segment_amax(const T* p, std::int64_t n, std::int64_t& first_bad, bool simd, bool wide = false) {
  float m = 0.0f;
  bool nan = false;
  std::int64_t k = 0;
  if (wide && n >= 32) {  // whole 32-element pieces with AVX-512, the rest below
    const std::int64_t whole = n & ~std::int64_t{31};
    if (avx512::absmax_run(p, 1, whole, &m, avx2::stream_ahead / sizeof(T))) k = whole;
    else m = 0.0f;
  }
  if (simd && k == 0) {
    const std::int64_t done = finite_amax(p, n, m);
    if (done > 0) k = done;
  }
  for (; k < n; ++k) {
    const T v = load(p + k);
    const float f = to_float(v);
    if (!is_finite_bits(v)) {
      if (first_bad < 0) first_bad = k;
      if (f != f) {
        nan = true;
        continue;
      }
    }
    const float a = f < 0.0f ? -f : f;
    m = a > m ? a : m;
  }
  return nan ? bits_float(0x7FC00000u) : m;
}

/// Atomically lowers `slot` to `v`.
inline void lower_to(std::atomic<std::int64_t>& slot, std::int64_t v) {
  std::int64_t cur = slot.load(std::memory_order_relaxed);
  while (v < cur && !slot.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

/// Tiles along a row one task takes: about 4096 columns, and for 2-D tiles about 128K elements
/// (128 x 128 tiles: 8, 512 KiB of float32, which a quantizer reads a second time from L2); at
/// most 256.
inline std::int64_t tiles_per_task(const tile_grid& g) {
  std::int64_t per = std::min<std::int64_t>(256, 4096 / g.tile.cols);
  if (g.tile.rows > 1) per = std::min(per, 131072 / g.tile.cols / g.tile.rows);
  return std::max<std::int64_t>(1, per);
}

template <scaled_format F, class T>
status quantize_scaled_typed(const T* x, scaled_view& q, const options& opt) {
  const tile_grid g = q.grid();
  const bool simd = opt.simd && avx2::available();
  std::atomic<std::int64_t> first_bad{std::numeric_limits<std::int64_t>::max()};
  bool tensor_zero = false;
  if constexpr (F == scaled_format::nvfp4) {
    // the tensor's amax first (NaN-propagating), in parallel over rows
    std::atomic<std::uint32_t> amax_bits{0};
    const bool wide_amax = simd && opt.avx512 && avx512::available();
    parallel_for(q.numel(), 65536, 64, opt.threads, [&](std::int64_t i0, std::int64_t i1) {
      std::int64_t bad = -1;
      const float m = segment_amax(x + i0, i1 - i0, bad, simd, wide_amax);
      if (bad >= 0) lower_to(first_bad, i0 + bad);
      // non-negative floats (and the positive NaN) order like their bits
      std::uint32_t b = float_bits(m), cur = amax_bits.load(std::memory_order_relaxed);
      while (b > cur && !amax_bits.compare_exchange_weak(cur, b, std::memory_order_relaxed)) {
      }
    });
    if (first_bad.load() != std::numeric_limits<std::int64_t>::max() && !opt.allow_nonfinite) {
      const std::int64_t i = first_bad.load();
      return nonfinite_error(i, to_float(load(x + i)));
    }
    const float amax = bits_float(amax_bits.load());
    q.global_scale = quant::nvfp4_stored_global(amax, q.nvfp4);
    tensor_zero = quant::nvfp4_tensor_zero(amax, q.nvfp4);
  }
  // the swizzled layout's padding slots hold 0 (quant/scale_layout.hpp); tiles fill the rest
  if (q.layout == scale_layout::swizzled) std::memset(q.scales, 0, static_cast<std::size_t>(q.scale_count()));
  const std::int64_t tpt = tiles_per_task(g);
  const std::int64_t chunks = quant::block_count(g.grid_cols(), tpt);
  const std::int64_t tasks = g.grid_rows() * chunks;
  // (the fused kernel stores a run of tiles' scales consecutively: the row-major layout)
  const bool fused = simd && g.tile.rows == 1 && (g.tile.cols == 16 || g.tile.cols == 32) && q.layout == scale_layout::row_major;
  // ... and with AVX-512, through the blockwise engine's run kernels (wide_row_tiles)
  const bool wide = fused && opt.avx512 && avx512::available();
  // fp8_e4m3_block tiles of a multiple of 16 columns (1 x 128 groups, 128 x 128 tiles)
  const bool wide_blocks = simd && opt.avx512 && avx512::available() && g.tile.cols % 16 == 0;
  const std::int64_t elems_per_task = std::max<std::int64_t>(1, g.tile.rows * std::min(q.cols, tpt * g.tile.cols));
  parallel_for(tasks, std::max<std::int64_t>(1, 16384 / elems_per_task), 1, opt.threads, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t task = t0; task < t1; ++task) {
      const std::int64_t ti = task / chunks;
      const std::int64_t tj0 = (task % chunks) * tpt;
      const std::int64_t tj1 = std::min(g.grid_cols(), tj0 + tpt);
      const std::int64_t r0 = ti * g.tile.rows, nr = g.tile_rows_at(ti);
      std::int64_t tj_first = tj0;
      if constexpr (F == scaled_format::fp8_e4m3_block) {
        // the task's whole tiles row by row with the AVX-512 kernels (block_tiles_encode)
        const std::int64_t full = std::min(tj1, q.cols / g.tile.cols);
        // this thread's next task (parallel_for's ranges are contiguous): the rest of the tile
        // row, or the start of the next one
        const T* next = nullptr;
        std::int64_t next_rows = nr, next_cols = 0;
        if (task + 1 < t1) {
          if (tj1 < g.grid_cols()) {
            next = x + r0 * q.cols + tj1 * g.tile.cols;
            next_cols = std::min(q.cols, (tj1 + tpt) * g.tile.cols) - tj1 * g.tile.cols;
          } else {
            next = x + (r0 + nr) * q.cols;
            next_rows = g.tile_rows_at(ti + 1);
            next_cols = std::min(q.cols, tpt * g.tile.cols);
          }
        }
        if (wide_blocks && full > tj0 && block_tiles_encode(x, q, r0, nr, ti, tj0, full - tj0, next, next_rows, next_cols))
          tj_first = full;
      }
      for (std::int64_t tj = tj_first; tj < tj1; ++tj) {
        if constexpr (info(F).bits == 6) {
          // whole 1 x 32 tiles of this row with the AVX-512 kernels (fp6_row_tiles)
          const std::int64_t full = std::min(tj1, q.cols / g.tile.cols);
          if (wide && g.tile.cols == 32 && tj < full) {
            const std::int64_t i0 = r0 * q.cols + tj * 32;
            std::uint8_t* codes = q.fp6 == fp6_packing::packed ? q.codes + i0 / 4 * 3 : q.codes + i0;
            const std::int64_t done = fp6_row_tiles<F>(x + i0, full - tj, q, codes, static_cast<std::uint8_t*>(q.scales) + ti * g.grid_cols() + tj);
            if (done > 0) {
              tj += done;
              if (tj >= tj1) break;  // else tile tj: the code below
            }
          }
        }
        if constexpr (fused_kernel<F>()) {
          // whole 1 x 16 / 1 x 32 tiles of this row in registers (see quantize_row_tiles)
          const std::int64_t full = std::min(tj1, q.cols / g.tile.cols);
          if (fused && tj < full) {
            const std::int64_t i0 = r0 * q.cols + tj * g.tile.cols;
            std::uint8_t* codes = info(F).bits == 4 ? q.codes + i0 / 2 : q.codes + i0;
            std::uint8_t* sc = static_cast<std::uint8_t*>(q.scales) + ti * g.grid_cols() + tj;
            const std::int64_t done = wide ? wide_row_tiles<F>(x + i0, full - tj, g.tile.cols, q, tensor_zero, codes, sc) : -1;
            if (done >= 0) tj += done;
            else tj += g.tile.cols == 32 ? quantize_row_tiles<F, 32>(x + i0, full - tj, q, tensor_zero, codes, sc)
                                         : quantize_row_tiles<F, 16>(x + i0, full - tj, q, tensor_zero, codes, sc);
            if (tj >= tj1) break;  // else tile tj holds a non-finite element: the code below
          }
        }
        const std::int64_t c0 = tj * g.tile.cols, nc = g.tile_cols_at(tj);
        float amax = 0.0f;
        for (std::int64_t r = r0; r < r0 + nr; ++r) {
          std::int64_t bad = -1;
          const float m = segment_amax(x + r * q.cols + c0, nc, bad, simd);
          if (bad >= 0) lower_to(first_bad, r * q.cols + c0 + bad);
          amax = (m != m || amax != amax) ? bits_float(0x7FC00000u) : (m > amax ? m : amax);
        }
        const tile_encoding e = encode_tile<F>(amax, q, tensor_zero);
        const std::int64_t s = q.scale_index(ti, tj);
        if constexpr (F == scaled_format::fp8_e4m3_block) {
          static_cast<float*>(q.scales)[s] = e.scale_f32;
        } else {
          static_cast<std::uint8_t*>(q.scales)[s] = e.scale_code;
        }
        for (std::int64_t r = r0; r < r0 + nr; ++r) encode_segment<F>(x, r * q.cols + c0, nc, e, q, simd);
      }
    }
  });
  if (first_bad.load() != std::numeric_limits<std::int64_t>::max() && !opt.allow_nonfinite) {
    const std::int64_t i = first_bad.load();
    return nonfinite_error(i, to_float(load(x + i)));
  }
  return {};
}

/// The decode table of a format's element codec (256 or 16 or 64 entries used).
template <scaled_format F>
struct element_table {
  alignas(64) float v[256];
  element_table() {
    using codec = quant::scaled_codec<F>;
    for (int i = 0; i < 256; ++i) v[i] = codec::decode(static_cast<std::uint8_t>(i & ((1 << codec::bits) - 1)));
  }
};

/// fn(c, k, b) for every scale code c < 256 and element code k < K, b the 16-bit pattern
/// from_float<T>(f32(values[k] * factor of c)) (what the element loop stores): the entries of
/// the decoders' output tables below.
template <class T, int K, scaled_format F, class Fn>
void each_output(const tile_factors<F>& factors, const float* values, Fn&& fn) {
  for (int c = 0; c < 256; ++c) {
    const float f = factors.of_code(static_cast<std::uint8_t>(c));
    for (int k = 0; k < K; ++k) fn(c, k, from_float<T>(values[k] * f).bits);
  }
}

/// For a 4-bit format and 16-bit output T: the byte planes of the 16 outputs of each of the 256
/// scale codes (each_output), the low bytes at p[c][0 .. 16) and the high bytes at
/// p[c][16 .. 32): avx2::decode_run_planes' tables.
struct nibble_planes {
  alignas(32) std::uint8_t p[256][32];
  template <scaled_format F, class T>
  void fill(const tile_factors<F>& factors, const float* values) {
    each_output<T, 16>(factors, values, [&](int c, int k, std::uint16_t b) {
      p[c][k] = static_cast<std::uint8_t>(b & 0xFF);
      p[c][16 + k] = static_cast<std::uint8_t>(b >> 8);
    });
  }
};

/// For MXFP6 and 16-bit output T: the 64 outputs of each of the 256 scale codes (each_output):
/// fp6_decode_run16's tables.
struct fp6_planes {
  alignas(64) std::uint16_t w[256][64];
  template <scaled_format F, class T>
  void fill(const tile_factors<F>& factors, const float* values) {
    each_output<T, 64>(factors, values, [&](int c, int k, std::uint16_t b) { w[c][k] = b; });
  }
};

template <scaled_format F, class T>
status dequantize_scaled_typed(const scaled_view& q, T* out, const options& opt) {
  const tile_grid g = q.grid();
  const bool simd = opt.simd && avx2::available();
  static const element_table<F> table;
  constexpr int bits = info(F).bits;
  const tile_factors<F> factor_of(q);
  // one task = one row's run of tiles_per_task tiles
  const std::int64_t tpt = tiles_per_task(g);
  const std::int64_t chunks = quant::block_count(g.grid_cols(), tpt);
  const std::int64_t per_task = std::max<std::int64_t>(1, std::min(q.cols, tpt * g.tile.cols));
  // runs of full tiles through the blockwise engine's run kernel (tiles of a multiple of 32
  // columns, or of 16 for the 4-bit formats: at most 256 a task), with non-temporal stores for
  // large outputs as host::dequantize
  // (MXFP6: tiles of a multiple of 32 columns with AVX-512, fp6_decode_run)
  const bool runs = simd && (scaled_scheme<F>::kernel ? g.tile.cols % (bits == 4 ? 16 : 32) == 0
                                                      : bits == 6 && g.tile.cols % 32 == 0 && opt.avx512 && avx512::available());
  // the AVX-512 run kernels of the 8-bit codecs, as host::dequantize picks them
  const bool wide = runs && opt.avx512 && avx512::available();
  const bool wide_bf16 = wide && avx512::bf16_available();
  const bool stream = opt.stores == store_mode::streaming ||
                      (opt.stores == store_mode::automatic && q.numel() >= streaming_store_bytes / static_cast<std::int64_t>(sizeof(T)));
  // 4-bit codes into 16-bit outputs: the runs look each tile's byte tables up by its scale code
  // (made once a call: worth it from 64K elements on)
  constexpr bool planar = bits == 4 && sizeof(T) == 2 && F != scaled_format::fp8_e4m3_block;
  std::unique_ptr<nibble_planes> planes;
  if constexpr (planar) {
    if (runs && q.numel() >= (std::int64_t{1} << 16)) {
      planes = std::make_unique<nibble_planes>();
      planes->fill<F, T>(factor_of, table.v);
    }
  }
  // MXFP6 into 16-bit outputs: the same by tables of 64 outputs (16K conversions: from 1M elements)
  constexpr bool planar6 = bits == 6 && sizeof(T) == 2;
  std::unique_ptr<fp6_planes> planes6;
  if constexpr (planar6) {
    if (runs && q.numel() >= (std::int64_t{1} << 20)) {
      planes6 = std::make_unique<fp6_planes>();
      planes6->fill<F, T>(factor_of, table.v);
    }
  }
  parallel_for(q.rows * chunks, std::max<std::int64_t>(1, 16384 / per_task), 1, opt.threads, [&](std::int64_t t0, std::int64_t t1) {
    bool streamed = false;
    alignas(64) T buf[bounce_elements];
    for (std::int64_t task = t0; task < t1; ++task) {
      const std::int64_t r = task / chunks;
      const std::int64_t tj0 = (task % chunks) * tpt;
      const std::int64_t tj1 = std::min(g.grid_cols(), tj0 + tpt);
      const std::int64_t ti = r / g.tile.rows;
      std::int64_t tj = tj0;
      if constexpr (scaled_scheme<F>::kernel || bits == 6) {
        const std::int64_t full = std::min(tj1, q.cols / g.tile.cols);  // tiles tj0 .. full - 1 are whole
        if (runs && full > tj0) {
          const std::int64_t nt = full - tj0, tc = g.tile.cols;
          const std::int64_t i0 = r * q.cols + tj0 * tc;
          constexpr format K = scaled_scheme<F>::kernel_format;
          // the tiles' factors, or with byte tables (planar) their tables
          float factors[256];
          static constexpr int zero_points[256] = {};
          const std::uint8_t* pl[256];
          const std::uint16_t* pl6[256];
          const bool by_planes = (planar && planes) || (planar6 && planes6);
          if (by_planes) {
            const auto* sc = static_cast<const std::uint8_t*>(q.scales);
            if constexpr (planar6) factor_of.each(ti, tj0, full, [&](std::int64_t j, std::int64_t si) { pl6[j] = planes6->w[sc[si]]; });
            else factor_of.each(ti, tj0, full, [&](std::int64_t j, std::int64_t si) { pl[j] = planes->p[sc[si]]; });
          } else {
            factor_of.row(ti, tj0, full, factors);
          }
          // tiles j .. j + m - 1 of the run into o (Stream: o 64-byte aligned)
          auto decode = [&](std::int64_t j, std::int64_t m, T* o, auto stream_tag) {
            constexpr bool S = decltype(stream_tag)::value;
            const std::int64_t e = i0 + j * tc;  // the first element
            if constexpr (bits == 6) {
              const bool packed = q.fp6 == fp6_packing::packed;
              const std::uint8_t* c = packed ? q.codes + e / 4 * 3 : q.codes + e;
              if constexpr (planar6) {
                if (by_planes) return fp6_decode_run16<T, S>(c, m, tc, pl6 + j, packed, o);
              }
              fp6_decode_run<T, S>(c, m, tc, factors + j, packed, table.v, o);
            } else {
              const std::uint8_t* c = bits == 4 ? q.codes + e / 2 : q.codes + e;
              if constexpr (planar) {
                if (by_planes) return avx2::decode_run_planes<info(K).order, T, S>(c, m, tc, pl + j, o);
              }
              if constexpr (avx512::detail::has_decode_kernel<K>()) {
                if (wide) {
                  if constexpr (std::is_same<T, bf16>::value) {
                    if (wide_bf16) return avx512::decode_run_bf16<K, S>(c, m, tc, factors + j, zero_points, o);
                  }
                  return avx512::decode_run<K, T, S>(c, m, tc, factors + j, zero_points, o);
                }
              }
              avx2::decode_run<K, T, S>(c, m, tc, factors + j, zero_points, table.v, o);
            }
          };
          using streaming = std::true_type;
          using cached = std::false_type;
          if (stream && reinterpret_cast<std::uintptr_t>(out + i0) % 64 == 0) {
            decode(0, nt, out + i0, streaming{});
            streamed = true;
          } else if (stream && tc <= bounce_elements) {
            // a misaligned output (a std::vector's, say) is streamed too: a few tiles at a time
            // decoded into an L1-resident buffer, then copied out with non-temporal stores (small
            // pieces, so that the copy's stores drain while the next piece decodes)
            const std::int64_t per = std::max<std::int64_t>(1, bounce_elements / tc);
            for (std::int64_t j = 0; j < nt; j += per) {
              const std::int64_t m = std::min(per, nt - j);
              const std::size_t bytes = static_cast<std::size_t>(m * tc) * sizeof(T);
              avx2::stream_copy_prepare(out + i0 + j * tc, bytes);
              decode(j, m, buf, cached{});
              avx2::stream_copy(out + i0 + j * tc, buf, bytes);
            }
            streamed = true;
          } else {
            decode(0, nt, out + i0, cached{});
          }
          tj = full;
        }
      }
      for (; tj < tj1; ++tj) {
        const std::int64_t c0 = tj * g.tile.cols, nc = g.tile_cols_at(tj);
        const std::int64_t i0 = r * q.cols + c0;
        const float f = factor_of(ti, tj);
        std::int64_t k = 0;
        if constexpr (scaled_scheme<F>::kernel) {
          if (simd) k = avx2::decode_block<scaled_scheme<F>::kernel_format>(bits == 4 ? q.codes + i0 / 2 : q.codes + i0, nc, table.v, f, 0, out + i0);
        }
        for (; k < nc; ++k) {
          const std::int64_t i = i0 + k;
          store(out + i, from_float<T>(table.v[quant::scaled_code<F>(q.codes, i, q.fp6)] * f));
        }
      }
    }
    if (streamed) avx2::store_fence();
  });
  return {};
}

template <class Fn>
status with_input(const void* x, dtype t, Fn&& fn) {
  switch (t) {
    case dtype::f32: return fn(static_cast<const float*>(x));
    case dtype::f16: return fn(static_cast<const f16*>(x));
    case dtype::bf16: break;
  }
  return fn(static_cast<const bf16*>(x));
}

}  // namespace detail

/// Quantizes the row-major `q.rows` x `q.cols` matrix `x` (dtype `xt`) into `q`'s codes and
/// scales (and, for nvfp4, `q.global_scale`) with the tile, rule and convention `q` names. See
/// the file comment for errors, non-finite input and partial tiles.
inline status quantize_scaled_into(const void* x, dtype xt, scaled_view& q, const options& opt = {}) {
  const detail::ieee_mode ieee;
  LOWBIT_TRY(validate(q, "quantize"));
  if (!is_valid(xt)) return status::error(errc::invalid_argument, "quantize: input dtype %d is not a lowbit dtype", static_cast<int>(xt));
  if (q.numel() > 0 && x == nullptr) return status::error(errc::invalid_argument, "quantize: input x is null");
  if (q.numel() == 0) return {};
  return detail::with_input(x, xt, [&](auto p) {
    return detail::visit_scaled(q.fmt, [&](auto f) { return detail::quantize_scaled_typed<decltype(f)::value>(p, q, opt); });
  });
}

/// Dequantizes `q` into `q.rows * q.cols` row-major elements of dtype `ot` at `out`:
/// `to_dtype_RNE(f32(decode(code) * factor))`, factor the tile's (quant/blockscaled.hpp). Stored
/// bytes are not validated: NaN codes and NaN scales give NaN.
inline status dequantize_scaled(const scaled_view& q, void* out, dtype ot, const options& opt = {}) {
  const detail::ieee_mode ieee;
  LOWBIT_TRY(validate(q, "dequantize"));
  if (!is_valid(ot)) return status::error(errc::invalid_argument, "dequantize: output dtype %d is not a lowbit dtype", static_cast<int>(ot));
  if (q.numel() > 0 && out == nullptr) return status::error(errc::invalid_argument, "dequantize: output is null");
  if (q.numel() == 0) return {};
  return detail::visit_scaled(q.fmt, [&](auto f) -> status {
    constexpr scaled_format F = decltype(f)::value;
    switch (ot) {
      case dtype::f32: return detail::dequantize_scaled_typed<F>(q, static_cast<float*>(out), opt);
      case dtype::f16: return detail::dequantize_scaled_typed<F>(q, static_cast<f16*>(out), opt);
      case dtype::bf16: break;
    }
    return detail::dequantize_scaled_typed<F>(q, static_cast<bf16*>(out), opt);
  });
}

}  // namespace host
LOWBIT_NAMESPACE_END
