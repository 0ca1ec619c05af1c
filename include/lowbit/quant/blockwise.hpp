// SPDX-License-Identifier: Apache-2.0
/// @file blockwise.hpp
/// @brief Per-block arithmetic shared by every engine (host and CUDA): how a block's statistics
///        become its stored scale and its encoding multiplier, and how one element is encoded and
///        decoded. One definition of every formula; no CUDA header.
///
/// @par Formulas (float32, each operation rounded once; `absmax` = max |x| over the block)
/// | format | stored per block | encode multiplier `inv` | element code | decode |
/// |---|---|---|---|---|
/// | nf4, bnb_fp4, bnb_dynamic8 | `absmax` | `1.0f / absmax` | `codec(x * inv)` | `table[q] * absmax` |
/// | int8_absmax | `absmax` | `127.0f / absmax` (or see int8_multiplier) | `clamp(rne(x * inv), ±127)` | `(q * absmax) * f32(1/127)` |
/// | e4m3fn, e5m2, e2m1fn | `s = absmax / max` | `max / absmax` | `encode_sat(x * inv)` | `decode(q) * s` |
/// | uint8_zeropoint | `s = (hi - lo) / 255`, `zp` | `1.0f / s` | `clamp(rne(x * inv) + zp, 0, 255)` | `(q - zp) * s` |
///
/// For uint8_zeropoint `lo = min(min x, 0)`, `hi = max(max x, 0)` (zero is always exact) and
/// `zp = clamp(rne(-lo * inv), 0, 255)`. `max` is the format's largest finite value (448, 57344, 6).
/// bitsandbytes formats keep bitsandbytes' convention (absmax stored, table normalized to ±1),
/// so dequantizing bitsandbytes' bytes gives its outputs bit for bit; int8_absmax's decode is
/// bitsandbytes' `int8_vectorwise_dequant`. Encoding follows bitsandbytes' CUDA kernels except
/// that `inv` is correctly rounded (CUDA: `rcp.approx`, `div.approx`); where its CPU backend
/// differs see docs/formats.md, "Which bitsandbytes each format matches" (int8_multiplier,
/// bnb4_rule and offset_rule give its CPU int8 codes, 4-bit codes and nested offset).
///
/// @par Zero blocks
/// A block whose elements are all ±0 stores scale 0 (and zero point 0); every element gets the
/// code of +0.0 (`zero_code`) and dequantizes to +0.0. bitsandbytes' CUDA kernels write code 0
/// there (NF4 -1.0 * 0 = -0.0); both decode to zero. A block whose encoding multiplier would
/// overflow float32 (absmax below about 2.9e-39 for the bitsandbytes formats, 3.7e-37 for
/// int8_absmax) is also a zero block.
///
/// @par Subnormals
/// lowbit computes with subnormals (no flush to zero, on every engine). bitsandbytes' CUDA kernels
/// run with FTZ, so its bytes differ where a subnormal matters: a negative subnormal x * inv
/// encodes in bnb_fp4 as the -0 code 8 here and as code 0 there, and a block whose absmax is a
/// subnormal above 2.9e-39 is a zero block there but is scaled here.
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../format.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <tuple>

LOWBIT_NAMESPACE_BEGIN
namespace quant {

/// Statistics of one block, gathered over its finite elements.
struct block_stats {
  float absmax = 0.0f;  ///< max |x|
  float lo = 0.0f;      ///< min(min x, 0)
  float hi = 0.0f;      ///< max(max x, 0)

  /// Adds one element (NaN is ignored, as fmaxf does).
  LOWBIT_HD constexpr void add(float x) noexcept {
    const float a = x < 0.0f ? -x : x;
    absmax = a > absmax ? a : absmax;
    lo = x < lo ? x : lo;
    hi = x > hi ? x : hi;
  }
  /// Merges the statistics of another part of the same block.
  LOWBIT_HD constexpr void merge(const block_stats& o) noexcept {
    absmax = o.absmax > absmax ? o.absmax : absmax;
    lo = o.lo < lo ? o.lo : lo;
    hi = o.hi > hi ? o.hi : hi;
  }
};

/// Everything needed to encode the elements of one block.
struct block_encoder {
  float scale = 0.0f;    ///< the value stored per block (absmax or s)
  float inv = 0.0f;      ///< multiplier applied to each element before the codec
  int zero_point = 0;    ///< uint8_zeropoint only
  bool zero = true;      ///< zero block: every element gets the format's zero code
};

/// The element codecs of the formats, in enum order.
using format_codecs = std::tuple<codecs::nf4, codecs::bnb_fp4, codecs::bnb_dynamic8, codecs::int8_absmax,
                                 codecs::uint8_zeropoint, codecs::e4m3fn, codecs::e5m2, codecs::e2m1fn>;
static_assert(std::tuple_size<format_codecs>::value == format_count, "one codec per format");

/// Compile-time description of one format's per-block arithmetic: its codec and the code every
/// element of a zero block gets (the code of +0.0).
template <format F>
struct scheme {
  using codec = std::tuple_element_t<static_cast<std::size_t>(F), format_codecs>;
  static constexpr std::uint8_t zero_code = [] {
    if constexpr (info(F).bnb) {
      return codec::zero_code;
    } else {
      return std::uint8_t{0};
    }
  }();
  /// The byte a zero block's codes fill: zero_code twice for the 4-bit formats, else zero_code.
  static constexpr std::uint8_t zero_byte =
      info(F).bits == 4 ? static_cast<std::uint8_t>(zero_code << 4 | zero_code) : zero_code;
};

/// The largest finite value of a minifloat format, as used by its block scale.
template <format F>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float minifloat_max() noexcept {
  return scheme<F>::codec::max();
}

/// The per-format constants of make_encoder for the formats without a zero point: a block with
/// max |x| = `absmax` encodes with `inv = code_max / absmax` and stores `absmax / scale_divisor`
/// (`absmax` itself when scale_divisor is 1). One definition for every engine (make_encoder, the
/// host's vectorized scales).
struct encoder_constants {
  float code_max;       ///< largest |x * inv|: 1 (bitsandbytes' ±1 tables), 127 (int8_absmax), minifloat_max
  float scale_divisor;  ///< 1, or minifloat_max for the minifloats (their scale is absmax / max)
};

/// encoder_constants of format F (not uint8_zeropoint, whose scale comes from its range).
template <format F>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR encoder_constants encoder_constants_of() noexcept {
  static_assert(!info(F).zero_point, "uint8_zeropoint's encoder comes from its range, not an absmax");
  if constexpr (F == format::int8_absmax) {
    return {127.0f, 1.0f};
  } else if constexpr (F == format::e4m3fn || F == format::e5m2 || F == format::e2m1fn) {
    return {minifloat_max<F>(), minifloat_max<F>()};
  } else {
    return {1.0f, 1.0f};
  }
}

/// f32(1/127): bitsandbytes' int8 dequantization constant 7.874015718698502e-3.
inline constexpr float int8_dequant_factor = 1.0f / 127.0f;

/// How int8_absmax's encoding multiplier is rounded. Both round `x * inv` once and then to the
/// nearest integer, ties to even; they differ in `inv` by at most 1 ulp, so a code can differ by 1
/// where `x * inv` lies within about an ulp of a half-integer.
enum class int8_multiplier : unsigned char {
  /// `inv = f32(127 / absmax)`, one correctly rounded division (lowbit's default). bitsandbytes'
  /// CUDA `kInt8VectorQuant` divides approximately (`div.approx`), so its codes near .5 differ.
  quotient,
  /// `inv = f32(127 * f32(1 / absmax))`: bitsandbytes' CPU `int8_vectorwise_quant` (its default
  /// backend computes `A * (127.0 / row_stats)`, and torch evaluates `127.0 / t` as
  /// `t.reciprocal() * 127.0`).
  reciprocal_times_127,
};

/// The division of make_encoder: IEEE `a / b`. An engine may pass another routine that gives the
/// same bits for the operands make_encoder divides (a >= 0, b > 0, either possibly +Inf, never
/// both; a kernel's call-free division, for example); `by_constant(a, c)` divides the minifloat
/// scale by the format's constant largest value c (448, 57344, 6), which a routine may exploit.
struct ieee_div {
  LOWBIT_HD float operator()(float a, float b) const noexcept { return a / b; }
  LOWBIT_HD float by_constant(float a, float c) const noexcept { return a / c; }
};

/// Turns block statistics into the block's stored scale and encoding multiplier. `rule` chooses
/// int8_absmax's multiplier (ignored by the other formats); `div` divides (see ieee_div).
template <format F, class Div = ieee_div>
LOWBIT_HD block_encoder make_encoder(const block_stats& st, int8_multiplier rule = int8_multiplier::quotient, Div div = {}) noexcept {
  block_encoder e;
  if constexpr (F == format::uint8_zeropoint) {
    const float range = st.hi - st.lo;
    if (!(range > 0.0f)) return e;
    e.scale = div(range, 255.0f);
    e.inv = div(1.0f, e.scale);
    if (!(e.inv <= 3.40282347e38f)) return block_encoder{};
    e.zero = false;
    const float z = codecs::detail::clamp_or(lowbit::detail::mul_rn(-st.lo, e.inv), 0.0f, 255.0f, 0.0f);
    e.zero_point = static_cast<int>(codecs::detail::round_half_even_small(z));
    return e;
  } else {
    if (!(st.absmax > 0.0f)) return e;
    const encoder_constants c = encoder_constants_of<F>();
    e.scale = c.scale_divisor == 1.0f ? st.absmax : div.by_constant(st.absmax, c.scale_divisor);
    e.inv = F == format::int8_absmax && rule == int8_multiplier::reciprocal_times_127 ? lowbit::detail::mul_rn(c.code_max, div(1.0f, st.absmax))
                                                                                      : div(c.code_max, st.absmax);
    if (!(e.inv <= 3.40282347e38f)) return block_encoder{};
    e.zero = false;
    return e;
  }
}

/// Code of element `x` of a block encoded by `e`.
template <format F>
LOWBIT_HD std::uint8_t encode_element(float x, const block_encoder& e) noexcept {
  using codec = typename scheme<F>::codec;
  if (e.zero) return scheme<F>::zero_code;
  if constexpr (F == format::int8_absmax) {
    return static_cast<std::uint8_t>(codec::encode(x, e.inv));
  } else if constexpr (F == format::uint8_zeropoint) {
    return codec::encode(x, e.inv, e.zero_point);
  } else if constexpr (F == format::e4m3fn || F == format::e5m2 || F == format::e2m1fn) {
    return codec::template encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(
        lowbit::detail::mul_rn(x, e.inv));
  } else {
    return codec::encode(lowbit::detail::mul_rn(x, e.inv));
  }
}

/// Value of code `q` in a block with stored `scale` (and `zero_point`), before conversion to the
/// output dtype. `table_value` is `table[q]` of the format's decode table (see decode_table).
template <format F>
LOWBIT_HD float decode_element(float table_value, float scale, int zero_point = 0) noexcept {
  if constexpr (F == format::int8_absmax) {
    return lowbit::detail::mul_rn(lowbit::detail::mul_rn(table_value, scale), int8_dequant_factor);
  } else if constexpr (F == format::uint8_zeropoint) {
    return lowbit::detail::mul_rn(table_value - static_cast<float>(zero_point), scale);
  } else {
    return lowbit::detail::mul_rn(table_value, scale);
  }
}

/// Value of code `q` in the format's built-in decode table: the codec's decode for codebooks and
/// minifloats, the integer itself for int8_absmax (as int8) and uint8_zeropoint.
template <format F>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float decode_table(std::uint8_t q) noexcept {
  if constexpr (F == format::int8_absmax) {
    return static_cast<float>(static_cast<std::int8_t>(q));
  } else if constexpr (F == format::uint8_zeropoint) {
    return static_cast<float>(q);
  } else {
    return scheme<F>::codec::decode(q);
  }
}

/// Number of blocks of `block_size` elements covering `n` elements.
LOWBIT_HD constexpr std::int64_t block_count(std::int64_t n, std::int64_t block_size) noexcept {
  return block_size > 0 ? (n + block_size - 1) / block_size : 0;
}

/// Block size of bitsandbytes' nested (double) quantization of the absmax values.
inline constexpr std::int64_t nested_block_size = 256;

/// The nested offset is the mean of the block absmax values, summed in double in this fixed order
/// on every engine: partial sums of `offset_chunk` consecutive blocks, each in block order, then
/// the partial sums in order; the total divided by the block count and rounded to float32.
inline constexpr std::int64_t offset_chunk = 1024;

/// The partial sum of one offset chunk: its `count` (<= offset_chunk) absmax values in block
/// order, in double.
LOWBIT_HD double offset_partial(const float* chunk, std::int64_t count) noexcept {
  double s = 0.0;
  LOWBIT_UNROLL_8
  for (std::int64_t b = 0; b < count; ++b) s += chunk[b];
  return s;
}

/// The nested offset from the partial sums of all `nchunks` chunks of `nblocks` blocks: their
/// sum in chunk order, divided by the block count, rounded to float32.
LOWBIT_HD float offset_from_partials(const double* partials, std::int64_t nchunks, std::int64_t nblocks) noexcept {
  double s = 0.0;
  LOWBIT_UNROLL_8
  for (std::int64_t c = 0; c < nchunks; ++c) s += partials[c];
  return static_cast<float>(s / static_cast<double>(nblocks));
}

/// How nf4 and bnb_fp4 choose an element's code.
enum class bnb4_rule : unsigned char {
  /// bitsandbytes' CUDA `kQuantizeBlockwise`: `x̂ = x * f32(1 / absmax)`, then the codec's
  /// decision thresholds with strict `>` (lowbit's default; codecs::nf4, codecs::bnb_fp4).
  cuda_thresholds,
  /// bitsandbytes' CPU backend (`backends/default/ops.py` `quantize_4bit`, 0.50.x): bnb_cpu4_scaled
  /// and bnb_cpu4_code.
  cpu_midpoints,
};

/// The scaled element `x̂` of bitsandbytes' CPU 4-bit quantizer for an element `x` of a block
/// whose max |x| is `absmax`: `clamp(f32(x * f32(1 / m)), -1, 1)` in a full block and
/// `clamp(f32(x / m), -1, 1)` in the tensor's partial last block, with `m = max(absmax,
/// f32(1e-38))` (a zero block scales to 0; no block is too small to scale). NaN stays NaN.
LOWBIT_HD float bnb_cpu4_scaled(float x, float absmax, bool partial_block) noexcept {
  const float m = absmax > 1e-38f ? absmax : 1e-38f;
  const float y = partial_block ? x / m : lowbit::detail::mul_rn(x, 1.0f / m);
  return y < -1.0f ? -1.0f : (y > 1.0f ? 1.0f : y);
}

/// The decision points of bitsandbytes' CPU 4-bit quantizer: the table (`get_4bit_type`: the
/// codec's values, with bnb_fp4's code 8 as +0.0) sorted by a stable sort, and the float32
/// midpoints `f32(sorted[i] + sorted[i + 1]) / 2` between neighbours.
struct bnb_cpu4_points {
  std::uint8_t order[16];  ///< codes in ascending value (bnb_fp4: 11 10 13 12 15 14 9 0 8 1 6 7 4 5 2 3)
  float mid[15];
};

/// bnb_cpu4_points of format F (nf4 or bnb_fp4), derived from the codec's decode table once.
template <format F>
const bnb_cpu4_points& bnb_cpu4_points_of() noexcept {
  static_assert(F == format::nf4 || F == format::bnb_fp4, "bitsandbytes' 4-bit formats only");
  static const bnb_cpu4_points p = [] {
    using codec = typename scheme<F>::codec;
    bnb_cpu4_points r{};
    float v[16];
    for (int c = 0; c < 16; ++c) {
      v[c] = codec::decode(static_cast<std::uint8_t>(c));
      if (v[c] == 0.0f) v[c] = 0.0f;  // get_4bit_type's zeros are +0.0
      r.order[c] = static_cast<std::uint8_t>(c);
    }
    std::stable_sort(r.order, r.order + 16, [&](std::uint8_t a, std::uint8_t b) { return v[a] < v[b]; });
    for (int i = 0; i < 15; ++i) r.mid[i] = (v[r.order[i]] + v[r.order[i + 1]]) / 2.0f;
    return r;
  }();
  return p;
}

/// bitsandbytes' CPU code of a scaled element `xhat` (`torch.bucketize(xhat, mid, right=False)`,
/// then the sort order): the code at position #{i : mid[i] < xhat} of the sorted table, so a tie
/// takes the lower position; NaN takes the last (nf4 15, bnb_fp4 3).
template <format F>
std::uint8_t bnb_cpu4_code(float xhat) noexcept {
  const bnb_cpu4_points& p = bnb_cpu4_points_of<F>();
  int k = 0;
  if (xhat != xhat) k = 15;
  else
    while (k < 15 && p.mid[k] < xhat) ++k;
  return p.order[k];
}

/// How the nested offset is computed.
enum class offset_rule : unsigned char {
  /// offset_partial / offset_from_partials: double sums in offset_chunk order, one rounding to
  /// float32 (lowbit's default, on every engine; the correctly rounded mean but for a double
  /// rounding far below float32's precision).
  exact_mean,
  /// torch_cpu_mean: the float32 mean bitsandbytes' CPU `quantize_4bit` takes (`absmax.mean()`).
  torch_cpu_mean,
};

namespace detail {

/// utils::CeilLog2 of ATen (1 for x <= 2).
inline std::int64_t torch_ceil_log2(std::int64_t x) noexcept {
  if (x <= 2) return 1;
  std::int64_t b = 0;
  for (auto v = static_cast<std::uint64_t>(x - 1); v != 0; v >>= 1) ++b;
  return b;
}

/// ATen's `cascade_sum` loop over n contiguous floats, single-threaded. Every addition is float32.
/// - n >= 8, `vectorized_inner_sum`: `row_sum` over the 8-lane vectors `x[8v .. 8v + 7]` (a
///   4-level cascade over rows of 4 vectors, `multi_row_sum`, then the vectors left over, then
///   the 4 rows added up lane by lane), then a running sum of the elements after the last whole
///   vector, then of the 8 lanes;
/// - n < 8, the scalar `row_sum`: partial sums p[k] = x[k] of the first 4 elements when n >= 4,
///   the rest added to p[0] in order, then p[0] + p[1] + p[2] + p[3].
inline float torch_inner_sum(const float* x, std::int64_t n) noexcept {
  constexpr int levels = 4, rows = 4, lanes = 8;
  if (n < lanes) {
    float p[rows] = {};
    const std::int64_t first = n / rows * rows;
    for (std::int64_t k = 0; k < first; ++k) p[k] = 0.0f + x[k];
    for (std::int64_t k = first; k < n; ++k) p[0] += x[k];
    for (int k = 1; k < rows; ++k) p[0] += p[k];
    return p[0];
  }
  const std::int64_t vectors = n / lanes, size = vectors / rows;
  const std::int64_t power = std::max<std::int64_t>(4, torch_ceil_log2(size) / levels);
  const std::int64_t step = std::int64_t{1} << power, mask = step - 1;
  float acc[levels][rows][lanes] = {};
  const auto add_row = [&](std::int64_t i) {
    for (int k = 0; k < rows; ++k)
      for (int l = 0; l < lanes; ++l) acc[0][k][l] += x[(i * rows + k) * lanes + l];
  };
  std::int64_t i = 0;
  while (i + step <= size) {
    for (std::int64_t j = 0; j < step; ++j, ++i) add_row(i);
    for (int j = 1; j < levels; ++j) {
      for (int k = 0; k < rows; ++k)
        for (int l = 0; l < lanes; ++l) acc[j][k][l] += acc[j - 1][k][l], acc[j - 1][k][l] = 0.0f;
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < size; ++i) add_row(i);
  for (int j = 1; j < levels; ++j)
    for (int k = 0; k < rows; ++k)
      for (int l = 0; l < lanes; ++l) acc[0][k][l] += acc[j][k][l];
  for (std::int64_t v = size * rows; v < vectors; ++v)
    for (int l = 0; l < lanes; ++l) acc[0][0][l] += x[v * lanes + l];
  for (int k = 1; k < rows; ++k)
    for (int l = 0; l < lanes; ++l) acc[0][0][l] += acc[0][k][l];
  float sum = 0.0f;
  for (std::int64_t e = vectors * lanes; e < n; ++e) sum += x[e];
  for (int l = 0; l < lanes; ++l) sum += acc[0][0][l];
  return sum;
}

}  // namespace detail

/// The most intra-op threads torch_cpu_mean models (larger counts are taken as this one; callers
/// validate).
inline constexpr int max_torch_threads = 1024;

/// `torch.mean` of `n` contiguous float32 values on the CPU with `threads` intra-op threads
/// (`torch.get_num_threads()` where the mean was taken), as torch 2.x computes it (ATen
/// `mean_out`: `sum_out(...).div_(n)`; `SumKernel.cpp` `cascade_sum` with `Vectorized<float>` of
/// 8 lanes, the sum kernel x86-64 builds dispatch on AVX2 and AVX-512 CPUs alike;
/// `TensorIteratorReduce.cpp` `two_pass_reduction`):
/// - fewer than 32768 values (ATen's GRAIN_SIZE) or one thread: `sum = 0 + inner_sum(x)`
///   (detail::torch_inner_sum);
/// - else `t = min(threads, ceil(n / 32768))` chunks of `ceil(n / t)` values, each summed by
///   inner_sum into a slot of a `threads`-long buffer of zeros, and the buffer summed the same way;
/// - `mean = f32(sum / f32(n))`.
/// Checked against torch 2.9.1 (tests/data/torch_cpu_mean). The result depends on `threads` for
/// 32768 values and more. NaN and Inf propagate as in any float32 sum, an overflowing sum is
/// ±Inf, and n = 0 gives NaN (0 / 0, as torch's mean of an empty tensor).
inline float torch_cpu_mean(const float* x, std::int64_t n, int threads) {
  constexpr std::int64_t grain = 32768;
  float sum;
  if (n < grain || threads <= 1) {
    sum = 0.0f + detail::torch_inner_sum(x, n);
  } else {
    const std::int64_t t = std::min<std::int64_t>(threads, (n + grain - 1) / grain), chunk = (n + t - 1) / t;
    float parts[max_torch_threads] = {};
    threads = std::min(threads, max_torch_threads);
    for (std::int64_t c = 0; c < t && c * chunk < n; ++c)
      parts[static_cast<std::size_t>(c)] = 0.0f + detail::torch_inner_sum(x + c * chunk, std::min(chunk, n - c * chunk));
    sum = 0.0f + detail::torch_inner_sum(parts, threads);
  }
  return sum / static_cast<float>(n);
}

/// Reconstructs a double-quantized block scale: f32(f32(code2[q] * absmax2) + offset), two
/// roundings as bitsandbytes' dequantize_4bit (never fused into one FMA).
LOWBIT_HD float nested_scale(float code2_value, float absmax2, float offset) noexcept {
  return lowbit::detail::add_rn(lowbit::detail::opaque(lowbit::detail::mul_rn(code2_value, absmax2)), offset);
}

}  // namespace quant
LOWBIT_NAMESPACE_END
