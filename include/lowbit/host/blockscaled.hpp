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

/// The float32 the codes of tile (ti, tj) are multiplied by on dequantization.
template <scaled_format F>
inline float tile_factor(const scaled_view& q, std::int64_t ti, std::int64_t tj) {
  return quant::scaled_tile_factor<F>(q.scales, q.scale_index(ti, tj), q.global_scale, q.nvfp4);
}

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
inline float segment_amax(const T* p, std::int64_t n, std::int64_t& first_bad, bool simd) {
  float m = 0.0f;
  bool nan = false;
  std::int64_t k = 0;
  if (simd) {
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

/// Tiles along a row one task takes (about 4096 columns).
inline std::int64_t tiles_per_task(const tile_grid& g) { return std::max<std::int64_t>(1, 4096 / g.tile.cols); }

template <scaled_format F, class T>
status quantize_scaled_typed(const T* x, scaled_view& q, const options& opt) {
  const tile_grid g = q.grid();
  const bool simd = opt.simd && avx2::available();
  std::atomic<std::int64_t> first_bad{std::numeric_limits<std::int64_t>::max()};
  bool tensor_zero = false;
  if constexpr (F == scaled_format::nvfp4) {
    // the tensor's amax first (NaN-propagating), in parallel over rows
    std::atomic<std::uint32_t> amax_bits{0};
    parallel_for(q.numel(), 65536, 64, opt.threads, [&](std::int64_t i0, std::int64_t i1) {
      std::int64_t bad = -1;
      const float m = segment_amax(x + i0, i1 - i0, bad, simd);
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
  const std::int64_t elems_per_task = std::max<std::int64_t>(1, g.tile.rows * std::min(q.cols, tpt * g.tile.cols));
  parallel_for(tasks, std::max<std::int64_t>(1, 16384 / elems_per_task), 1, opt.threads, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t task = t0; task < t1; ++task) {
      const std::int64_t ti = task / chunks;
      const std::int64_t tj0 = (task % chunks) * tpt;
      const std::int64_t tj1 = std::min(g.grid_cols(), tj0 + tpt);
      const std::int64_t r0 = ti * g.tile.rows, nr = g.tile_rows_at(ti);
      for (std::int64_t tj = tj0; tj < tj1; ++tj) {
        if constexpr (fused_kernel<F>()) {
          // whole 1 x 16 / 1 x 32 tiles of this row in registers (see quantize_row_tiles)
          const std::int64_t full = std::min(tj1, q.cols / g.tile.cols);
          if (fused && tj < full) {
            const std::int64_t i0 = r0 * q.cols + tj * g.tile.cols;
            std::uint8_t* codes = info(F).bits == 4 ? q.codes + i0 / 2 : q.codes + i0;
            std::uint8_t* sc = static_cast<std::uint8_t*>(q.scales) + ti * g.grid_cols() + tj;
            tj += g.tile.cols == 32 ? quantize_row_tiles<F, 32>(x + i0, full - tj, q, tensor_zero, codes, sc)
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

template <scaled_format F, class T>
status dequantize_scaled_typed(const scaled_view& q, T* out, const options& opt) {
  const tile_grid g = q.grid();
  const bool simd = opt.simd && avx2::available();
  static const element_table<F> table;
  constexpr int bits = info(F).bits;
  // one task = one row's run of tiles_per_task tiles
  const std::int64_t tpt = tiles_per_task(g);
  const std::int64_t chunks = quant::block_count(g.grid_cols(), tpt);
  const std::int64_t per_task = std::max<std::int64_t>(1, std::min(q.cols, tpt * g.tile.cols));
  // runs of full tiles through the blockwise engine's run kernel (tiles of a multiple of 32
  // columns: at most 128 a task), with non-temporal stores for large outputs as host::dequantize
  const bool runs = simd && scaled_scheme<F>::kernel && g.tile.cols % 32 == 0;
  // the AVX-512 run kernels of the 8-bit codecs, as host::dequantize picks them
  const bool wide = runs && opt.avx512 && avx512::available();
  const bool wide_bf16 = wide && avx512::bf16_available();
  const bool stream = opt.stores == store_mode::streaming ||
                      (opt.stores == store_mode::automatic && q.numel() >= streaming_store_bytes / static_cast<std::int64_t>(sizeof(T)));
  parallel_for(q.rows * chunks, std::max<std::int64_t>(1, 16384 / per_task), 1, opt.threads, [&](std::int64_t t0, std::int64_t t1) {
    bool streamed = false;
    for (std::int64_t task = t0; task < t1; ++task) {
      const std::int64_t r = task / chunks;
      const std::int64_t tj0 = (task % chunks) * tpt;
      const std::int64_t tj1 = std::min(g.grid_cols(), tj0 + tpt);
      const std::int64_t ti = r / g.tile.rows;
      std::int64_t tj = tj0;
      if constexpr (scaled_scheme<F>::kernel) {
        const std::int64_t full = std::min(tj1, q.cols / g.tile.cols);  // tiles tj0 .. full - 1 are whole
        if (runs && full > tj0) {
          float factors[128];
          static constexpr int zero_points[128] = {};
          for (std::int64_t j = tj0; j < full; ++j) factors[j - tj0] = tile_factor<F>(q, ti, j);
          const std::int64_t i0 = r * q.cols + tj0 * g.tile.cols;
          const std::uint8_t* c = bits == 4 ? q.codes + i0 / 2 : q.codes + i0;
          const bool st = stream && reinterpret_cast<std::uintptr_t>(out + i0) % 64 == 0;
          streamed = streamed || st;
          constexpr format K = scaled_scheme<F>::kernel_format;
          if constexpr (avx512::detail::has_decode_kernel<K>()) {
            if (wide) {
              if constexpr (std::is_same<T, bf16>::value) {
                if (wide_bf16) {
                  st ? avx512::decode_run_bf16<K, true>(c, full - tj0, g.tile.cols, factors, zero_points, out + i0)
                     : avx512::decode_run_bf16<K, false>(c, full - tj0, g.tile.cols, factors, zero_points, out + i0);
                  tj = full;
                }
              }
              if (tj != full) {
                st ? avx512::decode_run<K, T, true>(c, full - tj0, g.tile.cols, factors, zero_points, out + i0)
                   : avx512::decode_run<K, T, false>(c, full - tj0, g.tile.cols, factors, zero_points, out + i0);
                tj = full;
              }
            }
          }
          if (tj != full) {
            st ? avx2::decode_run<K, T, true>(c, full - tj0, g.tile.cols, factors, zero_points, table.v, out + i0)
               : avx2::decode_run<K, T, false>(c, full - tj0, g.tile.cols, factors, zero_points, table.v, out + i0);
          }
          tj = full;
        }
      }
      for (; tj < tj1; ++tj) {
        const std::int64_t c0 = tj * g.tile.cols, nc = g.tile_cols_at(tj);
        const std::int64_t i0 = r * q.cols + c0;
        const float f = tile_factor<F>(q, ti, tj);
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
