// SPDX-License-Identifier: Apache-2.0
/// @file matmul.hpp
/// @brief The fused low-bit matmul on the host: `y[M, N] = x[M, K] · dequant(W[N, K])ᵀ (+ bias[N])`
///        straight from a QuantTensor, the weight decoded in registers and cache-sized panels and
///        never written out as a dense matrix.
///
/// The numerics (compute modes, the two summation orders) are matmul/definition.hpp; docs/matmul.md
/// explains them and how a new format plugs in.
///
/// @code
///   // an engine's linear layer: W [out_features, in_features] in nf4 with double quantization
///   lowbit::matmul_options o;
///   o.compute = lowbit::matmul_compute::bf16;        // bitsandbytes' bnb_4bit_compute_dtype=bfloat16
///   if (auto s = lowbit::matmul(x, lowbit::dtype::bf16, tokens, W, bias, y, lowbit::dtype::bf16, o); !s) fail(s);
/// @endcode
///
/// @par Arguments and special values
/// - W: a host quant_tensor of shape [N, K] (nn.Linear's [out_features, in_features]) in any format
///   and block size; blocks may straddle rows (K need not be a multiple of the block size).
/// - x: M rows of K elements, row-major, dtype f32, f16 or bf16; y: M rows of N elements, row-major,
///   dtype f32, f16 or bf16; bias: N elements of y's dtype, or null. Any alignment.
/// - options.order: `native` (the default) and `lanes` compute the host's order; `warp` computes
///   the CUDA kernels' order, bit-identical to lowbit::cuda::matmul (slower here: no fused GEMV).
/// - M = 0, N = 0 write nothing; K = 0 gives y = bias (or +0).
/// - NaN and Inf in x, in the bias or decoded from W (e4m3fn/e5m2 NaN/Inf codes, non-finite scales)
///   propagate as in any float32 sum: a NaN result has an unspecified sign and payload (stored as
///   0x7FFF in f16/bf16); no input is rejected for its values.
/// - Zero blocks decode to +0 and contribute products of zero.
/// - Overflow: a float32 sum past 3.4e38 becomes ±Inf; a finite float32 result outside f16's range
///   becomes ±Inf when y is f16 (round to nearest even), as in dequantize.
/// - Errors (nothing written): a device tensor (use lowbit::cuda::matmul), W not 2-D, M < 0, null
///   x or y, a dtype, compute mode or order outside the enumerations, a W view that fails validation.
#pragma once

#include "../config.hpp"
#include "../dtype.hpp"
#include "../format.hpp"
#include "../host/blockscaled.hpp"
#include "../host/engine.hpp"
#include "../host/matmul_kernels.hpp"
#include "../host/parallel.hpp"
#include "../memory.hpp"
#include "../quant/blockwise.hpp"
#include "../quant/layout.hpp"
#include "../quant_tensor.hpp"
#include "../scaled_tensor.hpp"
#include "../status.hpp"
#include "definition.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

LOWBIT_NAMESPACE_BEGIN

/// Options of lowbit::matmul.
struct matmul_options {
  matmul_compute compute = matmul_compute::f32;  ///< see matmul/definition.hpp
  matmul_order order = matmul_order::native;      ///< the summation order (definition.hpp); native: lanes on the host
  int threads = 0;    ///< 0 = every hardware thread; the result does not depend on it
  bool simd = true;   ///< use the SIMD kernels the CPU has (false: portable code only)
  bool avx512 = true; ///< with simd: the AVX-512 kernels when the CPU has them (false: AVX2 only)
};

namespace mm {

/// The piece a format provides: the float32 values `w` of a run of consecutive elements of W
/// (flattened index), exactly the values dequantize writes as float32. Every format of the engine
/// has it through quant::decode_element; a new format provides its own `decode` (and, for speed,
/// a vector decode of 512-element groups in the lanes order, host::mmk::decode_groups_avx512) and
/// the matmul needs nothing else.
template <format F>
class run_decoder {
 public:
  static constexpr bool blockwise = true;  ///< a lowbit::format (the AVX-512 group decoders apply)
  static constexpr format fmt = F;
  explicit run_decoder(const quant_view& q) : q_(q) {
    for (int c = 0; c < 256; ++c) {
      const int k = info(F).bits == 4 ? (c & 15) : c;
      table_[c] = q.code_table ? q.code_table[k] : quant::decode_table<F>(static_cast<std::uint8_t>(k));
      nested_table_[c] = q.nested_code_table ? q.nested_code_table[c] : codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(c));
    }
    for (int c = 0; c < (info(F).bits == 4 ? 16 : 256); ++c) {
      const float v = std::fabs(quant::decode_element<F>(table_[c], 1.0f, 0));
      if (v > 0.0f && v < unit_) unit_ = v;
    }
  }
  /// The float32 scale of block b (the nested one rebuilt as quant::nested_scale).
  float scale(std::int64_t b) const {
    if (!q_.nested()) return q_.scales[b];
    const auto k = static_cast<std::uint64_t>(b);
    return quant::nested_scale(nested_table_[q_.nested_codes[k]], q_.nested_scales[k / quant::nested_block_size], q_.nested_offset);
  }
  int zero_point(std::int64_t b) const { return info(F).zero_point ? q_.zero_points[b] : 0; }
  /// w of elements [e, e + n) into out[0 .. n).
  void decode(std::int64_t e, int n, float* out) const {
    const std::int64_t bs = q_.block_size;
    std::int64_t block = -1;
    float s = 0.0f;
    int zp = 0;
    for (int i = 0; i < n; ++i) {
      const std::int64_t k = e + i;
      if (k / bs != block) {
        block = k / bs;
        s = scale(block);
        zp = zero_point(block);
      }
      const std::uint8_t c = info(F).bits == 4 ? codecs::unpack_nibble<info(F).order>(q_.codes[k / 2], static_cast<int>(k & 1)) : q_.codes[k];
      out[i] = quant::decode_element<F>(table_[c], s, zp);
    }
  }
  const float* table() const { return table_; }
  /// The smallest nonzero |w| per unit scale: min |quant::decode_element(code, 1, 0)| over the
  /// codes (+Inf when every code decodes to zero); every nonzero w of a block with scale s is at
  /// least about unit · |s| (the bf16 flush guard, bf16_exact_exponents).
  float smallest_unit() const { return unit_; }
  /// The 256 values of the nested codes (the checkpoint's or bnb_dynamic8's).
  const float* nested_table() const { return nested_table_; }
  const quant_view& view() const { return q_; }

 private:
  const quant_view& q_;
  alignas(64) float table_[256];
  alignas(64) float nested_table_[256];
  float unit_ = std::numeric_limits<float>::infinity();
};

/// The run decoder of a block-scaled format (MX, NVFP4, fp8_e4m3_block; host/blockscaled.hpp):
/// `w` = f32(decode(code) · the tile's factor), exactly what dequantize_scaled writes as float32.
/// A run never crosses a row of W (the matmul decodes runs of one row), so the row and the tile
/// are found once per run and followed along it.
template <scaled_format SF>
class scaled_run_decoder {
 public:
  static constexpr bool blockwise = false;
  explicit scaled_run_decoder(const host::scaled_view& q) : q_(q), g_(q.grid()), factor_of_(q) {}
  void decode(std::int64_t e, int n, float* out) const {
    if (n <= 0) return;
    const std::int64_t r = e / q_.cols, k0 = e - r * q_.cols;
    const std::int64_t ti = r / g_.tile.rows;
    std::int64_t tj = k0 / g_.tile.cols, end = (tj + 1) * g_.tile.cols;
    float f = factor_of_(ti, tj);
    for (int i = 0; i < n; ++i) {
      const std::int64_t k = k0 + i, idx = e + i;
      if (k == end) {
        ++tj;
        end += g_.tile.cols;
        f = factor_of_(ti, tj);
      }
      out[i] = lowbit::detail::mul_rn(table_.v[quant::scaled_code<SF>(q_.codes, idx, q_.fp6)], f);
    }
  }

 private:
  const host::scaled_view& q_;
  tile_grid g_;
  host::detail::tile_factors<SF> factor_of_;
  host::detail::element_table<SF> table_;
};

/// Whether decoder Dec is a blockwise format's with an AVX-512 group decoder
/// (host::mmk::decode_group_avx512).
template <class Dec>
constexpr bool has_group_decoder() {
  if constexpr (Dec::blockwise) {
    return host::mmk::has_group_decoder<Dec::fmt>();
  } else {
    return false;
  }
}

/// Whether decoder Dec is a blockwise format's with an AVX2 group decoder (host::mmk::decode_group_avx2).
template <class Dec>
constexpr bool has_group_decoder_avx2() {
  if constexpr (Dec::blockwise) {
    return host::mmk::has_group_decoder_avx2<Dec::fmt>();
  } else {
    return false;
  }
}

/// Which kernels a call uses (matmul_options and the CPU).
struct kernel_choice {
  bool avx2 = false, avx512 = false, avx512_bf16 = false;
  explicit kernel_choice(const matmul_options& o) {
    avx2 = o.simd && host::avx2::available();
    avx512 = avx2 && o.avx512 && host::avx512::available();
    avx512_bf16 = avx512 && host::avx512::bf16_available();
  }
};

/// @par vdpbf16ps and the bf16 flush
/// AVX512_BF16's vdpbf16ps flushes a tiny result to +0 (fma_ftz keeps the sign) and also flushes
/// a sum whose exact value is below 2^-126 but rounds to 2^-126 (fma_ftz keeps 2^-126). Both need
/// a partial sum below 2^-126 in magnitude. Products of bf16 operands with biased exponents ex and
/// ew are multiples of 2^(ex + ew - 268), and so is every partial sum of them; when the smallest
/// nonzero operands of a dot have ex + ew >= bf16_exact_exponents, every nonzero partial sum is at
/// least 2^-126 and vdpbf16ps computes exactly fma_ftz, and so does a plain fma (the outer-product
/// form runs bf16 mode on FMAs of widened operands). Otherwise the dot takes a path with FMAs and
/// an explicit flush (AVX2 or portable). Real activations and weights are far above the bound.
inline constexpr int bf16_exact_exponents = 142;

/// The smallest biased exponent of a nonzero bf16 operand among both halves of words[0 .. n) (255
/// when all are zero; bf16 operands are never subnormal).
inline int bf16_min_exponent(const std::uint32_t* words, std::int64_t n) {
  unsigned low = 255;
  for (std::int64_t i = 0; i < n; ++i) {
    const unsigned a = (words[i] >> 7) & 0xFFu, b = (words[i] >> 23) & 0xFFu;
    low = std::min(low, std::min(a == 0 ? 255u : a, b == 0 ? 255u : b));
  }
  return static_cast<int>(low);
}

/// A lower bound of the biased bf16 exponent of a nonzero w = f32(value · s) rounded to bf16, for
/// |value| >= unit and |s| >= smin (one less than the product's, for the two roundings; 255 when
/// unit · smin is +Inf, i.e. every w is zero).
inline int scale_exponent(float unit, float smin) {
  const float low = unit * smin;
  return low == std::numeric_limits<float>::infinity() ? 255 : static_cast<int>((float_bits(low) >> 23) & 0xFFu) - 1;
}

/// A kernel choice without vdpbf16ps (the lane dots then take AVX2 or portable code, the same bits).
inline kernel_choice without_vdpbf16ps(kernel_choice kc) {
  kc.avx512 = kc.avx512_bf16 = false;
  return kc;
}

/// The bf16 lane layout of one group from its f32 lane layout (32 lane vectors) in order o.
inline void pack_bf16(matmul_order o, const float* in, std::uint32_t* out) {
  for (int p = 0; p < 16; ++p) {
    const int even = pair_step(o, p), odd = even + pair_stride(o);
    for (int t = 0; t < 16; ++t)
      out[p * 16 + t] = bf16_operand_bits(in[even * 16 + t]) | static_cast<std::uint32_t>(bf16_operand_bits(in[odd * 16 + t])) << 16;
  }
}

/// One group of a lane row (mode c, order o) from its 512 consecutive elements v[0 .. 512).
inline void permute_group(matmul_order o, matmul_compute c, const float* v, void* dst) {
  if (c == matmul_compute::f32) {
    float* d = static_cast<float*>(dst);
    for (int e = 0; e < 32; ++e)
      for (int t = 0; t < 16; ++t) d[e * 16 + t] = v[step_offset(o, t, e)];
    return;
  }
  auto* d = static_cast<std::uint32_t*>(dst);
  for (int p = 0; p < 16; ++p)
    for (int t = 0; t < 16; ++t) {
      const int k = step_offset(o, t, pair_step(o, p));
      d[p * 16 + t] = bf16_operand_bits(v[k]) | static_cast<std::uint32_t>(bf16_operand_bits(v[k + pair_stride(o)])) << 16;
    }
}

/// The order a host call follows.
constexpr matmul_order host_order(matmul_order o) noexcept { return o == matmul_order::native ? matmul_order::lanes : o; }

/// The scales and zero points of `count` consecutive chunks of 64 elements of W starting at element
/// `start`, each inside one block (block size a multiple of 64, start a multiple of 64): one
/// division, then steps of 64 elements. With smin, lowers *smin to the smallest nonzero |scale| of
/// those blocks.
template <format F>
inline void chunk_scales(const run_decoder<F>& dec, std::int64_t start, std::int64_t count, float* sc, int* zp, float* smin = nullptr) {
  const std::int64_t bs = dec.view().block_size;
  std::int64_t b = start / bs, off = start - b * bs;
  float s = dec.scale(b);
  int z = dec.zero_point(b);
  float low = std::fabs(s) > 0.0f ? std::fabs(s) : std::numeric_limits<float>::infinity();
  for (std::int64_t t = 0; t < count; ++t) {
    if (off == bs) {
      off = 0;
      s = dec.scale(++b);
      z = dec.zero_point(b);
      if (std::fabs(s) > 0.0f) low = std::min(low, std::fabs(s));
    }
    sc[t] = s;
    zp[t] = z;
    off += chunk_elements;
  }
  if (smin) *smin = std::min(*smin, low);
}

/// Row x (K elements of type T) in the lane layout of mode c, order o at out (lane_row_size(K, c) words).
template <class T>
void build_x_row(const T* x, std::int64_t K, matmul_compute c, matmul_order o, void* out) {
  alignas(64) float v[group_elements];
  const std::int64_t groups = 2 * super_runs(K);
  const std::int64_t words = c == matmul_compute::f32 ? 512 : 256;
  for (std::int64_t i = 0; i < groups; ++i) {
    const std::int64_t k0 = i * group_elements, n = std::max<std::int64_t>(0, std::min<std::int64_t>(group_elements, K - k0));
    for (std::int64_t k = 0; k < n; ++k) v[k] = to_float(host::detail::load(x + k0 + k));
    std::fill(v + n, v + group_elements, 0.0f);
    permute_group(o, c, v, static_cast<std::uint32_t*>(out) + i * words);
  }
}

/// The shift of chunk_scales_avx512 (blocks of 2^shift chunks of 64) for a format without zero
/// points whose block size is 64 times a power of two, else -1 (chunk_scales, one block at a time).
template <format F>
int chunk_shift(const run_decoder<F>& dec) {
  const std::int64_t bs = dec.view().block_size;
  if (info(F).zero_point || bs % chunk_elements != 0) return -1;
  const std::int64_t rpb = bs / chunk_elements;
  if ((rpb & (rpb - 1)) != 0) return -1;
  int shift = 0;
  while ((std::int64_t{1} << shift) < rpb) ++shift;
  return shift;
}

/// Row n of W in the lane layout of mode c, order o at out: in the lanes order, groups of 512
/// elements through the AVX-512 decoder when the format has one and each chunk of 64 lies in one
/// block (K and the block size multiples of 64); the rest (and the warp order) through the
/// decoder's `decode` (run_decoder, scaled_run_decoder) and permute_group. With w_exponent (mode
/// bf16), lowers *w_exponent to a lower bound of the row's smallest nonzero operand exponent (from
/// the chunk scales, or from the words the slow groups wrote).
template <class Dec>
void build_w_row(const Dec& dec, std::int64_t n, std::int64_t K, matmul_compute c, matmul_order o, const kernel_choice& kc, void* out,
                 int* w_exponent = nullptr) {
  alignas(64) float tmp[group_elements];
  float smin = std::numeric_limits<float>::infinity();  // of the fast groups' chunk scales
  const std::int64_t groups = 2 * super_runs(K);
  const std::int64_t words = c == matmul_compute::f32 ? 512 : 256;
  const std::int64_t row0 = n * K;
  bool fast = false, fast2 = false;  // the AVX-512 or the AVX2 group decoder
  int shift = -1;  // blocks of 2^shift chunks, no zero points: the chunk scales in vectors
  if constexpr (has_group_decoder<Dec>() || has_group_decoder_avx2<Dec>()) {
    const bool whole = o == matmul_order::lanes && K % chunk_elements == 0 && dec.view().block_size % chunk_elements == 0;
    fast = has_group_decoder<Dec>() && whole && kc.avx512;
    fast2 = has_group_decoder_avx2<Dec>() && whole && !fast && kc.avx2;
    shift = fast ? chunk_shift(dec) : -1;
  }
  for (std::int64_t i = 0; i < groups; ++i) {
    const std::int64_t k0 = i * group_elements;
    auto* dst = static_cast<std::uint32_t*>(out) + i * words;
#if LOWBIT_HAVE_AVX512_KERNELS
    if constexpr (has_group_decoder<Dec>()) {
      constexpr format F = Dec::fmt;
      const quant_view& q = dec.view();
      if (fast && k0 + group_elements <= K) {
        constexpr int chunks = group_elements / chunk_elements;
        alignas(64) float sc[chunks];
        alignas(64) int zp[chunks];
        if (shift >= 0) {
          host::mmk::chunk_scales_avx512((row0 + k0) / chunk_elements, chunks, shift, q.scales, q.nested_codes, dec.nested_table(), q.nested_scales,
                                         q.nested_offset, sc, w_exponent ? &smin : nullptr);
        } else {
          chunk_scales(dec, row0 + k0, chunks, sc, zp, w_exponent ? &smin : nullptr);
        }
        const std::uint8_t* codes = q.codes + code_bytes(F, row0 + k0);
        if (c == matmul_compute::f32) {
          host::mmk::decode_group_avx512<F>(codes, sc, zp, dec.table(), host::mmk::detail::store_f32{reinterpret_cast<float*>(dst)});
        } else if (kc.avx512_bf16) {  // vcvtne2ps2bf16
          host::mmk::decode_group_avx512<F>(codes, sc, zp, dec.table(), host::mmk::detail::store_bf16{dst});
        } else {
          host::mmk::decode_group_avx512<F>(codes, sc, zp, dec.table(), host::mmk::detail::store_f32{tmp});
          pack_bf16(o, tmp, dst);
        }
        continue;
      }
    }
#else
    (void)fast, (void)shift;
#endif
#if LOWBIT_HAVE_AVX2_KERNELS
    if constexpr (has_group_decoder_avx2<Dec>()) {
      constexpr format F = Dec::fmt;
      if (fast2 && k0 + group_elements <= K) {
        alignas(64) float sc[group_elements / chunk_elements];
        alignas(64) int zp[group_elements / chunk_elements];
        chunk_scales(dec, row0 + k0, group_elements / chunk_elements, sc, zp, w_exponent ? &smin : nullptr);
        const std::uint8_t* codes = dec.view().codes + code_bytes(F, row0 + k0);
        if (c == matmul_compute::f32) {
          host::mmk::detail::store_f32_avx2 sink{reinterpret_cast<float*>(dst)};
          host::mmk::decode_group_avx2<F>(codes, sc, zp, dec.table(), dec.smallest_unit(), sink);
        } else {
          host::mmk::detail::store_bf16_avx2 sink{dst};
          host::mmk::decode_group_avx2<F>(codes, sc, zp, dec.table(), dec.smallest_unit(), sink);
        }
        continue;
      }
    }
#else
    (void)fast2;
#endif
    const int len = static_cast<int>(std::max<std::int64_t>(0, std::min<std::int64_t>(group_elements, K - k0)));
    if (len > 0) dec.decode(row0 + k0, len, tmp);
    std::fill(tmp + len, tmp + group_elements, 0.0f);
    permute_group(o, c, tmp, dst);
    if (w_exponent) *w_exponent = std::min(*w_exponent, bf16_min_exponent(dst, words));
  }
  if constexpr (has_group_decoder<Dec>() || has_group_decoder_avx2<Dec>()) {
    if (w_exponent) *w_exponent = std::min(*w_exponent, scale_exponent(dec.smallest_unit(), smin));
  }
}

/// The 32 thread sums s[(a * nb + b) * 32 + t] of x lane rows x[0 .. mb) with W lane rows w[0 .. nb)
/// (mb <= 4, nb <= 2), on the fastest kernel kc allows. With carry and group (AVX-512 kernels
/// only: the caller, lane_dot_slices, passes them only where kc.avx512), the chains continue from
/// the sums in s, and only group `group` (0, 1) is computed.
inline void dot(const kernel_choice& kc, matmul_compute c, const void* const* x, int mb, const void* const* w, int nb, std::int64_t J, float* s,
                bool carry = false, int group = -1) {
  const bool f32 = c == matmul_compute::f32;
#if LOWBIT_HAVE_AVX512_KERNELS
  if (kc.avx512 && (f32 || kc.avx512_bf16)) {
    const int g0 = group < 0 ? 0 : group, g1 = group < 0 ? 2 : group + 1;
    auto run = [&](auto MB, auto NB) {
      if (f32) host::mmk::dot_avx512<decltype(MB)::value, decltype(NB)::value, false>(x, w, J, s, carry, g0, g1);
      else host::mmk::dot_avx512<decltype(MB)::value, decltype(NB)::value, true>(x, w, J, s, carry, g0, g1);
    };
    using one = std::integral_constant<int, 1>;
    using two = std::integral_constant<int, 2>;
    switch (mb * 4 + nb) {
      case 5: return run(one{}, one{});
      case 6: return run(one{}, two{});
      case 9: return run(two{}, one{});
      case 10: return run(two{}, two{});
      case 13: return run(std::integral_constant<int, 3>{}, one{});
      case 14: return run(std::integral_constant<int, 3>{}, two{});
      case 17: return run(std::integral_constant<int, 4>{}, one{});
      default: return run(std::integral_constant<int, 4>{}, two{});
    }
  }
#endif
#if LOWBIT_HAVE_AVX2_KERNELS
  if (kc.avx2) {
    alignas(64) float part[4 * 32];
    for (int b = 0; b < nb; ++b) {
      switch (mb) {
        case 1: f32 ? host::mmk::dot_f32_avx2<1>(reinterpret_cast<const float* const*>(x), static_cast<const float*>(w[b]), J, part)
                    : host::mmk::dot_bf16_avx2<1>(reinterpret_cast<const std::uint32_t* const*>(x), static_cast<const std::uint32_t*>(w[b]), J, part); break;
        case 2: f32 ? host::mmk::dot_f32_avx2<2>(reinterpret_cast<const float* const*>(x), static_cast<const float*>(w[b]), J, part)
                    : host::mmk::dot_bf16_avx2<2>(reinterpret_cast<const std::uint32_t* const*>(x), static_cast<const std::uint32_t*>(w[b]), J, part); break;
        case 3: f32 ? host::mmk::dot_f32_avx2<3>(reinterpret_cast<const float* const*>(x), static_cast<const float*>(w[b]), J, part)
                    : host::mmk::dot_bf16_avx2<3>(reinterpret_cast<const std::uint32_t* const*>(x), static_cast<const std::uint32_t*>(w[b]), J, part); break;
        default: f32 ? host::mmk::dot_f32_avx2<4>(reinterpret_cast<const float* const*>(x), static_cast<const float*>(w[b]), J, part)
                     : host::mmk::dot_bf16_avx2<4>(reinterpret_cast<const std::uint32_t* const*>(x), static_cast<const std::uint32_t*>(w[b]), J, part); break;
      }
      for (int a = 0; a < mb; ++a) std::memcpy(s + (a * nb + b) * 32, part + a * 32, 32 * sizeof(float));
    }
    return;
  }
#endif
  (void)kc, (void)carry, (void)group;  // carry and group are for the AVX-512 kernels only (lane_dot_slices)
  if (f32) host::mmk::dot_portable<false>(x, mb, w, nb, J, s);
  else host::mmk::dot_portable<true>(x, mb, w, nb, J, s);
}

/// y[m, n] = v + bias[n] (one float32 add; v alone without a bias), rounded to y's dtype.
template <class TY>
void store_output(float v, std::int64_t m, std::int64_t n, std::int64_t N, const TY* bias, TY* y) {
  if (bias) v = lowbit::detail::add_rn(v, to_float(host::detail::load(bias + n)));
  host::detail::store(y + m * N + n, from_float<TY>(v));
}

/// mm::reduce_threads of s[0 .. 32), in registers where AVX-512 is used (the same additions).
inline float reduce(const kernel_choice& kc, float* s) {
#if LOWBIT_HAVE_AVX512_KERNELS
  if (kc.avx512) return host::mmk::reduce32_avx512(s);
#endif
  (void)kc;
  return reduce_threads(s);
}

/// y[m, n] for every x lane row m < M (at xl + m * row_words) and the W lane rows n0 .. n1 - 1 (row
/// n at w + (n - n0) * row_words) by the lane dots of kc: 4 x rows by 2 W rows per call.
template <class TY>
void lane_dot_rows(const kernel_choice& kc, matmul_compute c, const float* xl, std::int64_t M, std::int64_t row_words, std::int64_t J,
                   const float* w, std::int64_t n0, std::int64_t n1, std::int64_t N, const TY* bias, TY* y) {
  for (std::int64_t m0 = 0; m0 < M; m0 += 4) {
    const int mb = static_cast<int>(std::min<std::int64_t>(4, M - m0));
    const void* xs[4];
    for (int a = 0; a < mb; ++a) xs[a] = xl + (m0 + a) * row_words;
    for (std::int64_t n = n0; n < n1; n += 2) {
      const int nb = static_cast<int>(std::min<std::int64_t>(2, n1 - n));
      const void* ws[2] = {w + (n - n0) * row_words, w + (n + nb - 1 - n0) * row_words};
      alignas(64) float s[4 * 2 * 32];
      dot(kc, c, xs, mb, ws, nb, J, s);
      for (int a = 0; a < mb; ++a)
        for (int b = 0; b < nb; ++b) store_output(reduce(kc, s + (a * nb + b) * 32), m0 + a, n + b, N, bias, y);
    }
  }
}

#if LOWBIT_HAVE_AVX512_KERNELS
/// lane_dot_rows on the AVX-512 kernels (kc.avx512, and AVX512_BF16 in mode bf16) for the panel
/// regime below the outer-product form: each block of 4 x rows meets each quad of the panel's W
/// rows in a 4 x 4 register block (16 chains; a partial block or quad takes the 4 x 2 kernel by W
/// pairs), K in slices of one group of one super-run, the chains carried between slices in `sums`
/// (512 floats per x block and W quad): the same FMAs in the same order, the same bits. 14336 x
/// 4096 nf4 + double quant, 2 threads, 4 x 2 kernel over all of K -> this: f32 M = 16 15.3 ->
/// 10.8-11.5 ms, M = 24 18.6 -> 15.3; bf16 M = 16 12.7 -> 10.7-11.7.
template <class TY>
void lane_dot_slices(const kernel_choice& kc, matmul_compute c, const float* xl, std::int64_t M, std::int64_t row_words, std::int64_t J,
                     const float* w, std::int64_t n0, std::int64_t n1, std::int64_t N, const TY* bias, TY* y, float* sums) {
  const std::int64_t slice = row_words / J;  // words of one super-run
  const std::int64_t quads = (n1 - n0 + 3) / 4;
  const bool bf = c == matmul_compute::bf16;
  // one x block and W quad: 4 x 4 chains in registers where both are whole, else pairs of W rows
  auto block = [&](std::int64_t j, int g, std::int64_t m0, std::int64_t n, int mb, int nq, float* s) {
    const void* xs[4];
    for (int a = 0; a < mb; ++a) xs[a] = xl + (m0 + a) * row_words + j * slice;
    const void* ws[4];
    for (int b = 0; b < nq; ++b) ws[b] = w + (n - n0 + b) * row_words + j * slice;
    if (mb == 4 && nq == 4) {
      if (bf) host::mmk::dot_avx512<4, 4, true>(xs, ws, 1, s, j > 0, g, g + 1);
      else host::mmk::dot_avx512<4, 4, false>(xs, ws, 1, s, j > 0, g, g + 1);
      return;
    }
    for (int q = 0; q < nq; q += 2) dot(kc, c, xs, mb, ws + q, std::min(2, nq - q), 1, s + q / 2 * 256, j > 0, g);
  };
  for (std::int64_t j = 0; j < J; ++j)
    for (int g = 0; g < 2; ++g)
      for (std::int64_t m0 = 0; m0 < M; m0 += 4)
        for (std::int64_t n = n0; n < n1; n += 4)
          block(j, g, m0, n, static_cast<int>(std::min<std::int64_t>(4, M - m0)), static_cast<int>(std::min<std::int64_t>(4, n1 - n)),
                sums + ((m0 / 4) * quads + (n - n0) / 4) * 512);
  for (std::int64_t m0 = 0; m0 < M; m0 += 4) {
    const int mb = static_cast<int>(std::min<std::int64_t>(4, M - m0));
    for (std::int64_t n = n0; n < n1; n += 4) {
      const int nq = static_cast<int>(std::min<std::int64_t>(4, n1 - n));
      const float* s = sums + ((m0 / 4) * quads + (n - n0) / 4) * 512;
      for (int a = 0; a < mb; ++a)
        for (int b = 0; b < nq; ++b) {
          // the 4 x 4 kernel's sums at (a * 4 + b) * 32; a pair's at its 256 floats, (a * nb + b) * 32
          const int nb = std::min(2, nq - b / 2 * 2);
          const float* t = mb == 4 && nq == 4 ? s + (a * 4 + b) * 32 : s + b / 2 * 256 + (a * nb + b % 2) * 32;
          store_output(host::mmk::reduce32_avx512(t), m0 + a, n + b, N, bias, y);
        }
    }
  }
}
#endif

/// W rows per panel of lane_dot_slices (one x block and W quad per kernel call). 16 x 14336 x 4096
/// nf4 + double quant, 2 threads: panels of 4, 8, 16 rows 10.8, 11.0, 11.1 ms (f32 mode).
constexpr std::int64_t slice_panel_rows = 4;

/// Per-thread lane buffers of matmul (W panels), kept between calls.
inline storage<float>& panel_scratch() {
  thread_local storage<float> b;
  return b;
}

/// W rows per panel: decoded once, then multiplied by every row of x. Two rows (one pass over W)
/// in the GEMV regime; for larger M a panel of about 1 MiB per thread, held in L2, so that x
/// (read once per panel) costs little next to the products.
inline std::int64_t panel_rows(std::int64_t M, std::int64_t row_words) {
  if (M <= 16) return 2;
  return std::max<std::int64_t>(2, std::min<std::int64_t>(128, (std::int64_t{1} << 20) / 4 / row_words) & ~std::int64_t{1});
}

#if LOWBIT_HAVE_AVX512_KERNELS
/// y = s_0 (+ bias) of the 32 thread sums s of output (m, n).
template <class TY>
void finish(float* s, std::int64_t m, std::int64_t n, std::int64_t N, const TY* bias, TY* y) {
  store_output(host::mmk::reduce32_avx512(s), m, n, N, bias, y);
}

/// Rows n0 .. n1 of the fused GEMV for MB x rows. bf16 mode: x_exponent is the smallest
/// bf16_min_exponent of the x rows; a row pair whose smallest possible nonzero w (smallest_unit
/// times its smallest nonzero chunk scale) could bring a sum into the flush range of vdpbf16ps is
/// decoded to a lane row (lane, lane_row_size words) and taken by the portable lane dot.
template <format F, int MB, class TY>
void gemv_fused_rows(const run_decoder<F>& dec, const void* const* xs, std::int64_t n0, std::int64_t n1, std::int64_t N, std::int64_t K,
                     matmul_compute c, const kernel_choice& kc, int x_exponent, const TY* bias, TY* y, float* sc, int* zp,
                     float* lane) {
  const std::int64_t R = K / chunk_elements, J = super_runs(K);
  const int shift = chunk_shift(dec);
  for (std::int64_t n = n0; n < n1; n += 2) {
    const int nb = n + 1 < n1 ? 2 : 1;
    const std::uint8_t* codes[2];
    const float* scales[2] = {sc, sc + R};
    const int* zps[2] = {zp, zp + R};
    const bool bf = c == matmul_compute::bf16;
    float smin = std::numeric_limits<float>::infinity();  // the rows' smallest nonzero |scale| (bf16 mode)
    for (int b = 0; b < nb; ++b) {
      if (shift >= 0) {
        const quant_view& q = dec.view();
        host::mmk::chunk_scales_avx512((n + b) * R, R, shift, q.scales, q.nested_codes, dec.nested_table(), q.nested_scales, q.nested_offset,
                                     sc + b * R, bf ? &smin : nullptr);
      } else {
        chunk_scales(dec, (n + b) * K, R, sc + b * R, zp + b * R, bf ? &smin : nullptr);
      }
      codes[b] = dec.view().codes + code_bytes(F, (n + b) * K);
    }
    alignas(64) float s[2 * 4 * 32];
    if (bf) {
      if (x_exponent + scale_exponent(dec.smallest_unit(), smin) < bf16_exact_exponents) {
        for (int b = 0; b < nb; ++b) {
          build_w_row(dec, n + b, K, c, matmul_order::lanes, kc, lane);
          const void* w1 = lane;
          host::mmk::dot_portable<true>(xs, MB, &w1, 1, J, s);
          for (int a = 0; a < MB; ++a) finish(s + a * 32, a, n + b, N, bias, y);
        }
        continue;
      }
    }
    if (nb == 2) {
      if (bf) host::mmk::fused_rows_avx512<F, MB, 2, true>(codes, scales, zps, dec.table(), xs, J, s);
      else host::mmk::fused_rows_avx512<F, MB, 2, false>(codes, scales, zps, dec.table(), xs, J, s);
    } else {
      if (bf) host::mmk::fused_rows_avx512<F, MB, 1, true>(codes, scales, zps, dec.table(), xs, J, s);
      else host::mmk::fused_rows_avx512<F, MB, 1, false>(codes, scales, zps, dec.table(), xs, J, s);
    }
    for (int b = 0; b < nb; ++b)
      for (int a = 0; a < MB; ++a) finish(s + (b * MB + a) * 32, a, n + b, N, bias, y);
  }
}

/// The fused GEMV (lanes order, M <= 4, K a multiple of 1024, chunks inside blocks, AVX-512): each W row decoded
/// in registers straight into the thread chains; rows split over the threads.
template <format F, class TY>
status gemv_fused(const run_decoder<F>& dec, const float* xl, std::int64_t M, std::int64_t N, std::int64_t K, const TY* bias, TY* y,
                  const matmul_options& o, const kernel_choice& kc, int x_exponent) {
  const std::int64_t row_words = host::mmk::lane_row_size(K, o.compute), R = K / chunk_elements;
  const void* xs[4];
  for (std::int64_t a = 0; a < M; ++a) xs[a] = xl + a * row_words;
  const std::int64_t need = 4 * R + row_words;
  std::atomic<bool> no_memory{false};
  host::parallel_for(N, 16, 2, o.threads, [&](std::int64_t n0, std::int64_t n1) {
    storage<float>& buf = panel_scratch();  // the rows' chunk scales and zero points, a lane row
    if (buf.size() < static_cast<std::size_t>(need) && !buf.allocate(static_cast<std::size_t>(need), allocator::host(), "matmul: chunk scales", false)) {
      no_memory = true;
      return;
    }
    float* sc = buf.data();  // two rows' worth of each
    int* zp = reinterpret_cast<int*>(buf.data() + 2 * R);
    float* lane = buf.data() + 4 * R;
    switch (M) {
      case 1: return gemv_fused_rows<F, 1>(dec, xs, n0, n1, N, K, o.compute, kc, x_exponent, bias, y, sc, zp, lane);
      case 2: return gemv_fused_rows<F, 2>(dec, xs, n0, n1, N, K, o.compute, kc, x_exponent, bias, y, sc, zp, lane);
      case 3: return gemv_fused_rows<F, 3>(dec, xs, n0, n1, N, K, o.compute, kc, x_exponent, bias, y, sc, zp, lane);
      default: return gemv_fused_rows<F, 4>(dec, xs, n0, n1, N, K, o.compute, kc, x_exponent, bias, y, sc, zp, lane);
    }
  });
  if (no_memory) return status::error(errc::out_of_memory, "matmul: cannot allocate %lld bytes of chunk scales", static_cast<long long>(need * 4));
  return {};
}

/// The outer-product GEMM (host::mmk::chain_outer_avx512): x rows in blocks of outer_rows, W in
/// panels of outer_cols columns, outer_blocks x-row blocks sharing each panel chain while it is in
/// L1. Below outer_min_rows the lane dots were measured faster: 1 x 14336 x 4096 nf4 with double
/// quantization, 2 threads, lane dots -> outer form in ms: f32 M = 16 15.1 -> 16.5, M = 32 32.6 ->
/// 28.1, M = 128 118 -> 75; bf16 (the outer form on widened operands) M = 16 12.9 -> 15.0, M = 32
/// 22.3 -> 21.3, M = 48 34.1 -> 26.1.
constexpr int outer_rows = 6, outer_v = 4, outer_cols = 16 * outer_v, outer_blocks = 2;
constexpr std::int64_t outer_min_rows = 32;

/// chain_outer_avx512 for mr (1 .. outer_rows) x rows.
inline void outer_chain(int mr, int i, const void* const* x, const float* panel, std::int64_t L, float* stack, float* out) {
  switch (mr) {
    case 1: return host::mmk::chain_outer_avx512<1, outer_v>(i, x, panel, L, stack, out);
    case 2: return host::mmk::chain_outer_avx512<2, outer_v>(i, x, panel, L, stack, out);
    case 3: return host::mmk::chain_outer_avx512<3, outer_v>(i, x, panel, L, stack, out);
    case 4: return host::mmk::chain_outer_avx512<4, outer_v>(i, x, panel, L, stack, out);
    case 5: return host::mmk::chain_outer_avx512<5, outer_v>(i, x, panel, L, stack, out);
    default: return host::mmk::chain_outer_avx512<outer_rows, outer_v>(i, x, panel, L, stack, out);
  }
}

/// The matmul in the outer-product form (AVX-512, and AVX512_BF16 in mode bf16; M >=
/// outer_min_rows): x rows (lane layout xl) moved once to chain-major order; per panel, W rows
/// decoded to lane rows (build_w_row, as the lane-dot path) and transposed into the panel; then
/// the 32 chains of every x block. The same chains and tree as the lane dots: the same bits. Mode
/// bf16 widens each operand pair to two float32 steps (odd element first) in x and in the panel
/// and runs the f32 kernel: exactly fma_ftz where the exponent guard holds (a panel where it does
/// not takes the exact lane dots). 14336 x 4096 nf4 + double quant, 2 threads, vdpbf16ps ->
/// widened: M = 64 39.6-40.0 -> 32.0-32.7 ms, M = 512 288-293 -> 193-206 ms.
template <class Dec, class TY>
status gemm_outer(const Dec& dec, const float* xl, std::int64_t M, std::int64_t N, std::int64_t K, const TY* bias, TY* y,
                  const matmul_options& o, const kernel_choice& kc, int x_exponent) {
  const matmul_compute c = o.compute;
  const matmul_order ord = host_order(o.order);
  const bool bf = c == matmul_compute::bf16;
  const std::int64_t row_words = host::mmk::lane_row_size(K, c), J = super_runs(K);
  const int steps = bf ? run_elements / 2 : run_elements;
  const std::int64_t L = J * steps;
  const std::int64_t kw = bf ? 2 : 1;  // kernel float32 steps per lane word
  storage<float> xc;  // x in chain-major order, bf16 pairs widened
  LOWBIT_TRY(xc.allocate(static_cast<std::size_t>(M * row_words * kw), allocator::host(), "matmul: x in chain-major order", false));
  host::parallel_for(M, 4, 1, o.threads, [&](std::int64_t m0, std::int64_t m1) {
    for (std::int64_t m = m0; m < m1; ++m) {
      const float* src = xl + m * row_words;
      float* dst = xc.data() + m * row_words * kw;
      for (std::int64_t j = 0; j < J; ++j)
        for (int g = 0; g < 2; ++g)
          for (int e = 0; e < steps; ++e)
            for (int t = 0; t < 16; ++t) {
              const float v = src[((j * 2 + g) * steps + e) * 16 + t];
              const std::int64_t w = host::mmk::chain_word(j, g, e, t, steps, L);
              if (bf) {
                const std::uint32_t u = float_bits(v);
                dst[2 * w] = bits_float(u & 0xFFFF0000u);
                dst[2 * w + 1] = bits_float(u << 16);
              } else {
                dst[w] = v;
              }
            }
    }
  });
  constexpr std::int64_t stack_words = 5 * outer_rows * outer_cols, out_words = outer_rows * outer_cols;
  const std::int64_t need = (outer_cols * kw + 16) * row_words + outer_blocks * (stack_words + out_words);
  const std::int64_t panels = (N + outer_cols - 1) / outer_cols;
  std::atomic<bool> no_memory{false};
  host::parallel_for(panels, 1, 1, o.threads, [&](std::int64_t p0, std::int64_t p1) {
    storage<float>& buf = panel_scratch();
    if (buf.size() < static_cast<std::size_t>(need) && !buf.allocate(static_cast<std::size_t>(need), allocator::host(), "matmul: weight panel", false)) {
      no_memory = true;
      return;
    }
    float* panel = buf.data();
    float* lanes = panel + outer_cols * row_words * kw;  // 16 W rows in the lane layout
    float* stack = lanes + 16 * row_words;
    float* out = stack + outer_blocks * stack_words;
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::int64_t n0 = p * outer_cols;
      const int cols = static_cast<int>(std::min<std::int64_t>(outer_cols, N - n0));
      int w_exponent = 255;
      for (int q = 0; q < outer_v; ++q) {
        const float* rows[16];
        for (int r = 0; r < 16; ++r) {
          const std::int64_t n = n0 + 16 * q + r;
          float* dst = lanes + r * row_words;
          if (n < N) build_w_row(dec, n, K, c, ord, kc, dst, bf ? &w_exponent : nullptr);
          else std::fill(dst, dst + row_words, 0.0f);  // a column past N: zeros, never stored
          rows[r] = dst;
        }
        host::mmk::panel_columns16(rows, J, steps, panel, outer_cols, 16 * q, bf);
      }
      if (bf && x_exponent + w_exponent < bf16_exact_exponents) {
        // vdpbf16ps could flush differently (see bf16_exact_exponents): the lane dots without it
        // (decoded again 16 rows at a time into the lane rows, which hold only 16: a pathological case)
        const kernel_choice exact = without_vdpbf16ps(kc);
        for (int r0 = 0; r0 < cols; r0 += 16) {
          const int rows = std::min(16, cols - r0);
          for (int r = 0; r < rows; ++r) build_w_row(dec, n0 + r0 + r, K, c, ord, kc, lanes + r * row_words);
          lane_dot_rows(exact, c, xl, M, row_words, J, lanes, n0 + r0, n0 + r0 + rows, N, bias, y);
        }
        continue;
      }
      for (std::int64_t s0 = 0; s0 < M; s0 += outer_rows * outer_blocks) {
        const int blocks = static_cast<int>(std::min<std::int64_t>(outer_blocks, (M - s0 + outer_rows - 1) / outer_rows));
        for (int i = 0; i < 32; ++i)
          for (int k = 0; k < blocks; ++k) {
            const std::int64_t m0 = s0 + k * outer_rows;
            const int mr = static_cast<int>(std::min<std::int64_t>(outer_rows, M - m0));
            const void* xs[outer_rows];
            for (int a = 0; a < mr; ++a) xs[a] = xc.data() + (m0 + a) * row_words * kw;
            outer_chain(mr, i, xs, panel, L * kw, stack + k * stack_words, out + k * out_words);
          }
        for (int k = 0; k < blocks; ++k) {
          const std::int64_t m0 = s0 + k * outer_rows;
          const int mr = static_cast<int>(std::min<std::int64_t>(outer_rows, M - m0));
          for (int a = 0; a < mr; ++a)
            for (int col = 0; col < cols; ++col) store_output(out[k * out_words + a * outer_cols + col], m0 + a, n0 + col, N, bias, y);
        }
      }
    }
  });
  if (no_memory) return status::error(errc::out_of_memory, "matmul: cannot allocate a weight panel of %lld bytes", static_cast<long long>(need * 4));
  return {};
}
#endif

/// x rows of the AVX2 fused GEMV (gemv_fused_avx2), and W rows per tile of its x-row blocks. It
/// decodes W again for each block of 4 x rows, which on the AMD EPYC measured faster than the
/// panel path up to M = 16 (2 threads, 16 x 4096 x 4096 nf4 + double quant, interleaved: f32
/// 12.2-13.2 -> 11.6-12.0 ms, bf16 16.7-17.8 -> 12.2-12.6 ms).
inline constexpr std::int64_t gemv_avx2_max_rows = 16, gemv_tile_rows = 16;

#if LOWBIT_HAVE_AVX2_KERNELS
/// Rows n0 .. n1 of the fused GEMV on AVX2 for MB x rows: x rows xf (the f32 lane layout, in mode
/// bf16 of the rounded operands) for the fused kernel, xp (the lane layout of mode c) for the exact
/// lane dot that a row whose smallest possible nonzero w could bring a sum into the flush range
/// (mode bf16, bf16_exact_exponents) takes on a lane row decoded into `lane`.
template <format F, int MB, class TY>
void gemv_fused_rows_avx2(const run_decoder<F>& dec, const float* const* xf, const void* const* xp, std::int64_t n0, std::int64_t n1,
                          std::int64_t N, std::int64_t K, matmul_compute c, const kernel_choice& kc, int x_exponent, const TY* bias, TY* y,
                          float* sc, int* zp, float* lane) {
  constexpr int NB = MB == 2 ? 2 : 1;  // W rows a call: 4 to 8 chains of 8 lanes (fused_rows_avx2)
  const std::int64_t R = K / chunk_elements, J = super_runs(K);
  const bool bf = c == matmul_compute::bf16;
  const int shift = chunk_shift(dec);
  for (std::int64_t n = n0; n < n1; n += NB) {
    const int nb = static_cast<int>(std::min<std::int64_t>(NB, n1 - n));
    const std::uint8_t* codes[NB];
    const float* scales[NB];
    const int* zps[NB];
    float smin = std::numeric_limits<float>::infinity();  // the rows' smallest nonzero |scale| (bf16 mode)
    bool nan = false;                                     // a NaN among the rows' scales (bf16 mode, shift >= 0)
    for (int b = 0; b < nb; ++b) {
      if (shift >= 0) {
        const quant_view& q = dec.view();
        host::mmk::chunk_scales_avx2((n + b) * R, R, shift, q.scales, q.nested_codes, dec.nested_table(), q.nested_scales, q.nested_offset,
                                     sc + b * R, bf ? &smin : nullptr, bf ? &nan : nullptr);
      } else {
        chunk_scales(dec, (n + b) * K, R, sc + b * R, zp + b * R, bf ? &smin : nullptr);
      }
      codes[b] = dec.view().codes + code_bytes(F, (n + b) * K);
      scales[b] = sc + b * R;
      zps[b] = zp + b * R;
    }
    alignas(64) float s[NB * 4 * 32];
    if (bf && x_exponent + scale_exponent(dec.smallest_unit(), smin) < bf16_exact_exponents) {
      for (int b = 0; b < nb; ++b) {
        build_w_row(dec, n + b, K, c, matmul_order::lanes, kc, lane);
        const void* w1 = lane;
        dot(kc, c, xp, MB, &w1, 1, J, s);
        for (int a = 0; a < MB; ++a) store_output(reduce_threads(s + a * 32), a, n + b, N, bias, y);
      }
      continue;
    }
    // every chunk's scale zero or large enough that no w is subnormal (decode_groups_avx2's `normal`)
    const float unit = dec.smallest_unit();
    const bool normal = bf && shift >= 0 && !nan && (smin == std::numeric_limits<float>::infinity() || smin * unit >= std::numeric_limits<float>::min());
    if (nb == NB) {
      if (bf) host::mmk::fused_rows_avx2<F, MB, NB, true>(codes, scales, zps, dec.table(), unit, normal, xf, J, s);
      else host::mmk::fused_rows_avx2<F, MB, NB, false>(codes, scales, zps, dec.table(), unit, normal, xf, J, s);
    } else {
      if (bf) host::mmk::fused_rows_avx2<F, MB, 1, true>(codes, scales, zps, dec.table(), unit, normal, xf, J, s);
      else host::mmk::fused_rows_avx2<F, MB, 1, false>(codes, scales, zps, dec.table(), unit, normal, xf, J, s);
    }
    for (int b = 0; b < nb; ++b)
      for (int a = 0; a < MB; ++a) store_output(reduce_threads(s + (b * MB + a) * 32), a, n + b, N, bias, y);
  }
}

/// The fused GEMV on AVX2 (lanes order, M <= gemv_avx2_max_rows, K a multiple of 1024, chunks
/// inside blocks): each W row decoded in registers (host::mmk::decode_group_avx2) straight into the
/// thread chains of up to 4 x rows (blocks of 4 x rows over tiles of W rows), rows split over the
/// threads; xl is x in the lane layout of the compute mode. In mode bf16 the kernel runs plain
/// FMAs on the operands widened to float32, exactly fma_ftz where the exponent guard holds
/// (x_exponent: the x rows' smallest operand exponent), the exact lane dot elsewhere.
template <format F, class TY>
status gemv_fused_avx2(const run_decoder<F>& dec, const float* xl, std::int64_t M, std::int64_t N, std::int64_t K, const TY* bias, TY* y,
                       const matmul_options& o, const kernel_choice& kc, int x_exponent) {
  const matmul_compute c = o.compute;
  const std::int64_t row_words = host::mmk::lane_row_size(K, c), R = K / chunk_elements;
  const std::int64_t f32_words = host::mmk::lane_row_size(K, matmul_compute::f32);
  // x for the fused kernel: the f32 lane layout with each step's 16 words in the decoder's lane
  // order (host::mmk::detail::avx2_lane_thread); mode bf16: each operand pair word of xl widened
  // to its two steps
  storage<float> xw;
  LOWBIT_TRY(xw.allocate(static_cast<std::size_t>(M * f32_words), allocator::host(), "matmul: x in the AVX2 lane order", false));
  for (std::int64_t m = 0; m < M; ++m) {
    const float* src = xl + m * row_words;
    float* dst = xw.data() + m * f32_words;
    for (std::int64_t gi = 0; gi < f32_words / group_elements; ++gi)
      for (int e = 0; e < run_elements; ++e)
        for (int l = 0; l < 16; ++l) {
          const int t = host::mmk::detail::avx2_lane_thread(l);
          float v;
          if (c == matmul_compute::f32) {
            v = src[(gi * 32 + e) * 16 + t];
          } else {  // step e is the even (low half) or odd element of pair p
            const int p = (e / 4) * 2 + e % 2;
            const std::uint32_t w = reinterpret_cast<const std::uint32_t*>(src)[(gi * 16 + p) * 16 + t];
            v = bits_float(e % 4 < 2 ? w << 16 : w & 0xFFFF0000u);
          }
          dst[(gi * 32 + e) * 16 + l] = v;
        }
  }
  const float* xf[gemv_avx2_max_rows];
  const void* xp[gemv_avx2_max_rows];
  for (std::int64_t a = 0; a < M; ++a) {
    xf[a] = xw.data() + a * f32_words;
    xp[a] = xl + a * row_words;
  }
  const std::int64_t need = 4 * R + row_words;
  std::atomic<bool> no_memory{false};
  host::parallel_for(N, 16, 2, o.threads, [&](std::int64_t n0, std::int64_t n1) {
    storage<float>& buf = panel_scratch();  // two rows' chunk scales and zero points, a lane row
    if (buf.size() < static_cast<std::size_t>(need) && !buf.allocate(static_cast<std::size_t>(need), allocator::host(), "matmul: chunk scales", false)) {
      no_memory = true;
      return;
    }
    float* sc = buf.data();
    int* zp = reinterpret_cast<int*>(buf.data() + 2 * R);
    float* lane = buf.data() + 4 * R;
    // x rows in blocks of 4, each over a tile of gemv_tile_rows W rows (held in L2 for the next block)
    for (std::int64_t t0 = n0; t0 < n1; t0 += gemv_tile_rows) {
      const std::int64_t t1 = std::min(n1, t0 + gemv_tile_rows);
      for (std::int64_t m0 = 0; m0 < M; m0 += 4) {
        const float* const* xb = xf + m0;
        const void* const* pb = xp + m0;
        TY* yb = y + m0 * N;
        switch (std::min<std::int64_t>(4, M - m0)) {
          case 1: gemv_fused_rows_avx2<F, 1>(dec, xb, pb, t0, t1, N, K, c, kc, x_exponent, bias, yb, sc, zp, lane); break;
          case 2: gemv_fused_rows_avx2<F, 2>(dec, xb, pb, t0, t1, N, K, c, kc, x_exponent, bias, yb, sc, zp, lane); break;
          case 3: gemv_fused_rows_avx2<F, 3>(dec, xb, pb, t0, t1, N, K, c, kc, x_exponent, bias, yb, sc, zp, lane); break;
          default: gemv_fused_rows_avx2<F, 4>(dec, xb, pb, t0, t1, N, K, c, kc, x_exponent, bias, yb, sc, zp, lane); break;
        }
      }
    }
  });
  if (no_memory) return status::error(errc::out_of_memory, "matmul: cannot allocate %lld bytes of chunk scales", static_cast<long long>(need * 4));
  return {};
}
#endif

/// The matmul with W's runs from decoder `dec` (run_decoder or scaled_run_decoder).
template <class Dec, class TX, class TY>
status matmul_with(const Dec& dec, const TX* x, std::int64_t M, std::int64_t N, std::int64_t K, const TY* bias, TY* y,
                   const matmul_options& o) {
  if (K == 0) {  // every thread sum is +0
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n)
        store_output(0.0f, m, n, N, bias, y);
    return {};
  }
  const kernel_choice kc(o);
  const matmul_compute c = o.compute;
  const matmul_order ord = host_order(o.order);
  const std::int64_t J = super_runs(K);
  const std::int64_t row_words = host::mmk::lane_row_size(K, c);
  storage<float> xl;  // x in the lane layout (float words in both modes)
  LOWBIT_TRY(xl.allocate(static_cast<std::size_t>(M * row_words), allocator::host(), "matmul: x in lane layout", false));
  host::parallel_for(M, 4, 1, o.threads, [&](std::int64_t m0, std::int64_t m1) {
    for (std::int64_t m = m0; m < m1; ++m) build_x_row(x + m * K, K, c, ord, xl.data() + m * row_words);
  });
  // GEMV with few rows of x and whole groups everywhere: W decoded in registers into the chains,
  // on AVX-512 (and AVX512_BF16 in mode bf16), else on AVX2
  bool gemv_shape = false;
  if constexpr (Dec::blockwise)
    gemv_shape = ord == matmul_order::lanes && M <= 4 && K % super_elements == 0 && dec.view().block_size % chunk_elements == 0;
  const bool avx512_mode = kc.avx512 && (c == matmul_compute::f32 || kc.avx512_bf16);  // the AVX-512 kernels serve this mode
  const bool gemv512 = has_group_decoder<Dec>() && gemv_shape && avx512_mode;
  bool gemv2 = false;  // only where the AVX-512 kernels do not serve the mode: they have their own M > 4 paths
  if constexpr (Dec::blockwise)
    gemv2 = has_group_decoder_avx2<Dec>() && kc.avx2 && !avx512_mode && ord == matmul_order::lanes && M <= gemv_avx2_max_rows &&
            K % super_elements == 0 && dec.view().block_size % chunk_elements == 0;
  // bf16 mode on vdpbf16ps or on plain FMAs: the smallest operand exponent of all x rows (the flush guard above)
  const bool guard = c == matmul_compute::bf16 && (kc.avx512_bf16 || gemv2);
  int x_exponent = 255;
  if (guard)
    for (std::int64_t m = 0; m < M; ++m)
      x_exponent = std::min(x_exponent, bf16_min_exponent(reinterpret_cast<const std::uint32_t*>(xl.data() + m * row_words), row_words));
#if LOWBIT_HAVE_AVX2_KERNELS
  if constexpr (has_group_decoder_avx2<Dec>()) {
    if (gemv2) return gemv_fused_avx2<Dec::fmt>(dec, xl.data(), M, N, K, bias, y, o, kc, x_exponent);
  }
#endif
#if LOWBIT_HAVE_AVX512_KERNELS
  if constexpr (has_group_decoder<Dec>()) {
    if (gemv512) return gemv_fused<Dec::fmt>(dec, xl.data(), M, N, K, bias, y, o, kc, x_exponent);
  }
  if (kc.avx512 && M >= outer_min_rows && (c == matmul_compute::f32 || kc.avx512_bf16))
    return gemm_outer(dec, xl.data(), M, N, K, bias, y, o, kc, x_exponent);
#else
  (void)gemv512;
#endif
#if LOWBIT_HAVE_AVX512_KERNELS
  const bool slices = kc.avx512 && (c == matmul_compute::f32 || kc.avx512_bf16);
#else
  const bool slices = false;
#endif
  const std::int64_t P = slices ? slice_panel_rows : panel_rows(M, row_words);
  const std::int64_t panels = (N + P - 1) / P;
  const std::int64_t need = P * row_words + (slices ? (M + 3) / 4 * ((P + 3) / 4) * 512 : 0);
  std::atomic<bool> no_memory{false};
  host::parallel_for(panels, 1, 1, o.threads, [&](std::int64_t p0, std::int64_t p1) {
    storage<float>& buf = panel_scratch();
    if (buf.size() < static_cast<std::size_t>(need)) {
      if (!buf.allocate(static_cast<std::size_t>(need), allocator::host(), "matmul: weight panel", false)) {
        no_memory = true;
        return;
      }
    }
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::int64_t n0 = p * P, n1 = std::min(N, n0 + P);
      int w_exponent = 255;
      for (std::int64_t n = n0; n < n1; ++n) {
        build_w_row(dec, n, K, c, ord, kc, buf.data() + (n - n0) * row_words, guard ? &w_exponent : nullptr);
      }
      const kernel_choice kp = guard && x_exponent + w_exponent < bf16_exact_exponents ? without_vdpbf16ps(kc) : kc;
#if LOWBIT_HAVE_AVX512_KERNELS
      if (slices && kp.avx512) {
        lane_dot_slices(kp, c, xl.data(), M, row_words, J, buf.data(), n0, n1, N, bias, y, buf.data() + P * row_words);
        continue;
      }
#endif
      lane_dot_rows(kp, c, xl.data(), M, row_words, J, buf.data(), n0, n1, N, bias, y);
    }
  });
  if (no_memory) return status::error(errc::out_of_memory, "matmul: cannot allocate a weight panel of %lld bytes", static_cast<long long>(need * 4));
  return {};
}


template <format F, class TX, class TY>
status matmul_typed(const TX* x, std::int64_t M, std::int64_t N, std::int64_t K, const quant_view& W, const TY* bias, TY* y,
                    const matmul_options& o) {
  const run_decoder<F> dec(W);
  return matmul_with(dec, x, M, N, K, bias, y, o);
}

/// The checks of x, y, the dtypes and the options every host entry point makes after its weight's;
/// `empty` when M or N is 0 (nothing to write).
inline status check_args(const void* x, dtype x_dtype, std::int64_t M, std::int64_t N, std::int64_t K, const void* y, dtype y_dtype,
                         const matmul_options& o, bool& empty) {
  if (!is_valid(x_dtype)) return status::error(errc::invalid_argument, "matmul: x_dtype %d is not a lowbit dtype", static_cast<int>(x_dtype));
  if (!is_valid(y_dtype)) return status::error(errc::invalid_argument, "matmul: y_dtype %d is not a lowbit dtype", static_cast<int>(y_dtype));
  if (o.compute != matmul_compute::f32 && o.compute != matmul_compute::bf16)
    return status::error(errc::invalid_argument, "matmul: options.compute is %d, not a matmul_compute", static_cast<int>(o.compute));
  if (o.order != matmul_order::native && o.order != matmul_order::warp && o.order != matmul_order::lanes)
    return status::error(errc::invalid_argument, "matmul: options.order is %d, not a matmul_order", static_cast<int>(o.order));
  empty = M == 0 || N == 0;
  if (empty) return {};
  if (x == nullptr && K > 0) return status::error(errc::invalid_argument, "matmul: x is null");
  if (y == nullptr) return status::error(errc::invalid_argument, "matmul: y is null");
  return {};
}

/// y for every (x dtype, y dtype) pair: fn(x typed, bias typed, y typed).
template <class Fn>
status with_matmul_dtypes(const void* x, dtype x_dtype, const void* bias, void* y, dtype y_dtype, Fn&& fn) {
  auto with_y = [&](auto* xs) -> status {
    switch (y_dtype) {
      case dtype::f32: return fn(xs, static_cast<const float*>(bias), static_cast<float*>(y));
      case dtype::f16: return fn(xs, static_cast<const f16*>(bias), static_cast<f16*>(y));
      case dtype::bf16: break;
    }
    return fn(xs, static_cast<const bf16*>(bias), static_cast<bf16*>(y));
  };
  switch (x_dtype) {
    case dtype::f32: return with_y(static_cast<const float*>(x));
    case dtype::f16: return with_y(static_cast<const f16*>(x));
    case dtype::bf16: break;
  }
  return with_y(static_cast<const bf16*>(x));
}
}  // namespace mm

namespace host {

/// The fused matmul on host memory: `y[M, N] = x[M, K] · dequant(W)ᵀ (+ bias[N])` with W a view of
/// N·K elements (row n = elements n·K .. n·K + K - 1). See lowbit::matmul for the semantics.
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, std::int64_t N, std::int64_t K, const quant_view& W, const void* bias,
                     void* y, dtype y_dtype, const matmul_options& o = {}) {
  const detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(validate(W, "matmul"));
  if (M < 0 || N < 0 || K < 0)
    return status::error(errc::invalid_argument, "matmul: M, N, K are %lld, %lld, %lld; each must be >= 0", static_cast<long long>(M),
                         static_cast<long long>(N), static_cast<long long>(K));
  if ((N != 0 && K > W.numel / N) || W.numel != N * K)
    return status::error(errc::invalid_argument, "matmul: W holds %lld elements, not N * K = %lld * %lld", static_cast<long long>(W.numel),
                         static_cast<long long>(N), static_cast<long long>(K));
  bool empty = false;
  LOWBIT_TRY(mm::check_args(x, x_dtype, M, N, K, y, y_dtype, o, empty));
  if (empty) return {};
  return visit_format(W.fmt, [&](auto f) -> status {
    constexpr format F = decltype(f)::value;
    return mm::with_matmul_dtypes(x, x_dtype, bias, y, y_dtype,
                                  [&](auto* xs, auto* bs, auto* ys) { return mm::matmul_typed<F>(xs, M, N, K, W, bs, ys, o); });
  });
}

/// The fused matmul with a block-scaled weight (MX, NVFP4, fp8_e4m3_block; host/blockscaled.hpp):
/// W a view of N rows of K columns (W.rows == N, W.cols == K), w[n, k] the float32 value
/// dequantize_scaled writes; otherwise as the quant_view overload (numerics: matmul/definition.hpp).
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, std::int64_t N, std::int64_t K, const scaled_view& W, const void* bias,
                     void* y, dtype y_dtype, const matmul_options& o = {}) {
  const detail::ieee_mode ieee;
  LOWBIT_TRY(validate(W, "matmul"));
  if (M < 0 || N < 0 || K < 0)
    return status::error(errc::invalid_argument, "matmul: M, N, K are %lld, %lld, %lld; each must be >= 0", static_cast<long long>(M),
                         static_cast<long long>(N), static_cast<long long>(K));
  if (W.rows != N || W.cols != K)
    return status::error(errc::invalid_argument, "matmul: W is %lld x %lld, not N x K = %lld x %lld", static_cast<long long>(W.rows),
                         static_cast<long long>(W.cols), static_cast<long long>(N), static_cast<long long>(K));
  bool empty = false;
  LOWBIT_TRY(mm::check_args(x, x_dtype, M, N, K, y, y_dtype, o, empty));
  if (empty) return {};
  return detail::visit_scaled(W.fmt, [&](auto f) -> status {
    const mm::scaled_run_decoder<decltype(f)::value> dec(W);
    return mm::with_matmul_dtypes(x, x_dtype, bias, y, y_dtype,
                                  [&](auto* xs, auto* bs, auto* ys) { return mm::matmul_with(dec, xs, M, N, K, bs, ys, o); });
  });
}

}  // namespace host

/// `y[M, N] = x[M, K] · dequant(W)ᵀ (+ bias[N])` for a host quant_tensor W of shape [N, K] (see the
/// file comment for the arguments, matmul/definition.hpp for the numerics). x: M·K elements of
/// x_dtype; bias: N elements of y_dtype or null; y: M·N elements of y_dtype.
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, const quant_tensor& W, const void* bias, void* y, dtype y_dtype,
                     const matmul_options& o = {}) {
  if (W.location() != memory_space::host)
    return status::error(errc::invalid_argument, "matmul: the weight W lives in device memory; use lowbit::cuda::matmul, or copy it to the host");
  if (W.shape().size() != 2)
    return status::error(errc::invalid_argument, "matmul: the weight W must have shape [N, K] (2 dimensions), it has %zu", W.shape().size());
  return host::matmul(x, x_dtype, M, W.shape()[0], W.shape()[1], W.view(), bias, y, y_dtype, o);
}

/// `y[M, N] = x[M, K] · dequant(W)ᵀ (+ bias[N])` for a block-scaled weight W of shape [N, K] (MX,
/// NVFP4, fp8_e4m3_block with 1-D or 2-D tiles): the same numerics and order as for a quant_tensor.
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, const scaled_tensor& W, const void* bias, void* y, dtype y_dtype,
                     const matmul_options& o = {}) {
  if (W.shape().size() != 2)
    return status::error(errc::invalid_argument, "matmul: the weight W must have shape [N, K] (2 dimensions), it has %zu", W.shape().size());
  return host::matmul(x, x_dtype, M, W.shape()[0], W.shape()[1], W.view(), bias, y, y_dtype, o);
}

LOWBIT_NAMESPACE_END
