// SPDX-License-Identifier: Apache-2.0
/// @file engine.hpp
/// @brief The CPU engine: blockwise quantize and dequantize of float32/float16/bfloat16 tensors
///        for every lowbit format, with double quantization of the scales. Multi-threaded, with
///        AVX-512 and AVX2 kernels for the common formats (chosen at run time from what the CPU
///        has) and a portable path for all; every path gives the same bytes.
///
/// The per-block formulas are those of quant/blockwise.hpp, shared with the CUDA kernels; this
/// engine is the reference they must equal bit for bit.
///
/// @par Semantics
/// - Input: `numel` elements of `x` (float32, float16 or bfloat16, any alignment), flattened.
/// - Non-finite input (NaN, ±Inf) is an error naming the first bad index, and nothing is written,
///   unless `options::allow_nonfinite`; then block statistics ignore NaN (as fmaxf does), an Inf
///   makes its block's absmax Inf, and each element is encoded by the formulas' IEEE results and
///   the codec's rules (a NaN element gets the codec's NaN result: nf4/bnb_fp4/bnb_dynamic8 code 0,
///   e4m3fn/e5m2 0x7F, e2m1fn +6, int8_absmax 0, uint8_zeropoint its zero point).
/// - Zero blocks and blocks too small to scale are zero blocks (quant/blockwise.hpp).
/// - Partial last block: its statistics cover its valid elements only.
/// - numel == 0 is valid and touches nothing.
/// - Double quantization (`quant_view::nested()`): bitsandbytes-compatible. `offset` = mean of the
///   float32 absmax values (summed in double in the order of quant::offset_chunk, then rounded to
///   float32; options::nested_offset = torch_cpu_mean takes bitsandbytes' CPU mean instead); the
///   differences `f32(absmax - offset)` are quantized with bnb_dynamic8 in blocks of 256.
///   Dequantization reconstructs each scale as f32(f32(code2[q] * absmax2) + offset).
/// - Floating-point mode: every entry point computes in IEEE default mode (round to nearest even,
///   no flush to zero, exceptions masked) whatever mode the calling thread has set, and restores
///   the caller's mode before it returns (detail::ieee_mode).
#pragma once

#include "../codecs.hpp"
#include "../config.hpp"
#include "../dtype.hpp"
#include "../format.hpp"
#include "../memory.hpp"
#include "../quant/blockwise.hpp"
#include "../quant/layout.hpp"
#include "../status.hpp"
#include "parallel.hpp"
#include "simd_avx2.hpp"
#include "simd_avx512.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>

LOWBIT_NAMESPACE_BEGIN
namespace host {

/// How dequantize's SIMD kernels write the output. The values written are the same in every mode;
/// only where they end up in the memory hierarchy differs.
enum class store_mode : unsigned char {
  /// streaming for an output of at least streaming_store_bytes, cached below
  automatic,
  /// ordinary stores: the output stays in the caches for whatever reads it next, but each line is
  /// read from memory before it is overwritten (about twice the write traffic of a large output)
  cached,
  /// non-temporal stores for every run of full blocks (an output that does not start 64-byte
  /// aligned is decoded bounce_elements at a time into an aligned buffer and copied out; partial
  /// blocks, and blocks of more than bounce_elements at such an output, use ordinary stores); the
  /// output is complete and visible when dequantize returns
  streaming,
};

/// Output size from which store_mode::automatic streams: well past a core's L2 and the typical
/// per-core share of a last-level cache, so the output would not have stayed cached anyway.
inline constexpr std::int64_t streaming_store_bytes = std::int64_t{16} << 20;

/// Elements a streamed decode that does not start 64-byte aligned decodes at a time into an
/// aligned buffer before copying them out with non-temporal stores: 4 KiB of float32, small
/// enough that one piece's stores drain while the next decodes (on this project's Xeon, 1024
/// beat 4096 by 25-35% and 256, whose partial lines at the piece ends cost more, by 40%).
inline constexpr std::int64_t bounce_elements = 1024;

/// Options of the host engine.
struct options {
  int threads = 0;               ///< 0 = every hardware thread
  bool allow_nonfinite = false;  ///< accept NaN/Inf input (see the file comment)
  bool simd = true;              ///< use the SIMD kernels the CPU has (false: portable code only)
  bool avx512 = true;            ///< with simd: use the AVX-512 kernels when the CPU has them (false: AVX2 only)
  store_mode stores = store_mode::automatic;  ///< dequantize's output stores (see store_mode)
  /// quantize: how int8_absmax rounds its multiplier 127 / absmax. The default follows the
  /// correctly rounded quotient; quant::int8_multiplier::reciprocal_times_127 gives bitsandbytes'
  /// CPU codes (docs/formats.md, "Which bitsandbytes each format matches").
  quant::int8_multiplier int8_inverse = quant::int8_multiplier::quotient;
  /// quantize with double quantization: how the nested offset (the mean of the block absmax
  /// values) is taken. quant::offset_rule::torch_cpu_mean gives bitsandbytes' CPU offset, with
  /// `torch_threads` as torch.get_num_threads() there (it matters from 32768 blocks on).
  quant::offset_rule nested_offset = quant::offset_rule::exact_mean;
  int torch_threads = 1;  ///< see nested_offset
  /// quantize: how nf4 and bnb_fp4 choose codes. quant::bnb4_rule::cpu_midpoints gives
  /// bitsandbytes' CPU codes and absmax (not with allow_nonfinite: an error).
  quant::bnb4_rule bnb4 = quant::bnb4_rule::cuda_thresholds;
};

namespace detail {

/// *p read byte-wise: sources (and outputs) may have any alignment (a safetensors file's tensor
/// data need not be aligned), and dereferencing a misaligned float* or f16* is undefined
/// behaviour. Compilers turn the memcpy into one ordinary load.
template <class T>
inline T load(const T* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
/// *p = v, byte-wise (see load).
template <class T>
inline void store(T* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

template <class T>
LOWBIT_HD bool is_finite_bits(T v) noexcept {
  if constexpr (std::is_same<T, float>::value) {
    return (float_bits(v) & 0x7F800000u) != 0x7F800000u;
  } else {
    return (v.bits & (std::is_same<T, f16>::value ? 0x7C00u : 0x7F80u)) != (std::is_same<T, f16>::value ? 0x7C00u : 0x7F80u);
  }
}

/// Per-block statistics plus whether the block holds a NaN or an Inf (allow_nonfinite only). Either
/// makes some `x * inv` NaN (an Inf block's inv is 0, and Inf * 0 is NaN), which the SIMD encoders
/// do not give the codec's NaN result, so such blocks are encoded by the portable code.
struct stats_entry {
  quant::block_stats st;
  bool has_nan = false;
};

/// Statistics of the elements [e0, e1) of one block into s; returns the first non-finite index or -1.
template <class T>
std::int64_t range_stats(const T* x, std::int64_t e0, std::int64_t e1, stats_entry& s, bool use_simd) {
  std::int64_t first_bad = -1;
  s = stats_entry{};
  std::int64_t i = e0;
  if (use_simd) {
    const std::int64_t done = avx2::block_stats(x + e0, e1 - e0, s.st);
    if (done < 0) {
      // a non-finite element somewhere in the range: fall back to the scalar scan below
      s = stats_entry{};
    } else {
      i = e0 + done;
    }
  }
  for (; i < e1; ++i) {
    const float v = to_float(load(x + i));
    if (!is_finite_bits(load(x + i))) {
      if (first_bad < 0) first_bad = i;
      s.has_nan = true;
      if (v != v) continue;
    }
    s.st.add(v);
  }
  return first_bad;
}

/// Statistics of blocks [b0, b1) into out[0 .. b1 - b0); returns the first non-finite index or -1.
template <class T>
std::int64_t gather_stats(const T* x, std::int64_t n, std::int64_t bs, std::int64_t b0, std::int64_t b1,
                          stats_entry* out, bool use_simd) {
  std::int64_t first_bad = -1;
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t e0 = b * bs;
    const std::int64_t fb = range_stats(x, e0, e0 + bs < n ? e0 + bs : n, out[b - b0], use_simd);
    if (first_bad < 0) first_bad = fb;
  }
  return first_bad;
}

/// Pass B: encodes the elements [e0, e1) of block b (e0 even for 4-bit formats).
template <format F, class T>
void encode_block(const T* x, std::int64_t e0, std::int64_t e1, const quant::block_encoder& enc, bool has_nan,
                  std::uint8_t* codes, bool use_simd) {
  constexpr bool four = info(F).bits == 4;
  std::int64_t i = e0;
  if (use_simd && !has_nan) i += avx2::encode_block<F>(x + e0, e1 - e0, enc, four ? codes + e0 / 2 : codes + e0);
  if constexpr (four) {
    constexpr auto order = info(F).order;
    for (; i + 1 < e1; i += 2) {
      codes[i / 2] = codecs::pack_nibbles<order>(quant::encode_element<F>(to_float(load(x + i)), enc),
                                                 quant::encode_element<F>(to_float(load(x + i + 1)), enc));
    }
    if (i < e1) {  // odd element count: the last element of the tensor, padded with zero's code
      const std::uint8_t pad = enc.zero ? quant::scheme<F>::zero_code
                                        : quant::encode_element<F>(0.0f, enc);
      codes[i / 2] = codecs::pack_nibbles<order>(quant::encode_element<F>(to_float(load(x + i)), enc), pad);
    }
  } else {
    for (; i < e1; ++i) codes[i] = quant::encode_element<F>(to_float(load(x + i)), enc);
  }
}

/// Elements one task of the fused quantizer handles at a time (statistics, then codes, while the
/// chunk is still in L1; blocks larger than this one block at a time). Measured at memory speed
/// (64M float32, block 64, two threads, interleaved in one process), 2^11 quantizes nf4, e4m3fn
/// and int8 5-9% faster than 2^14: the statistics read and the encoding overlap more finely.
inline constexpr std::int64_t fused_chunk_elements = std::int64_t{1} << 11;
inline constexpr std::int64_t fused_chunk_blocks = 512;
/// Largest block the fused quantizer takes (larger blocks read the input twice).
inline constexpr std::int64_t fused_block_limit = std::int64_t{1} << 16;
/// Elements per slice of the two-pass quantizer's larger blocks (see quantize_typed).
inline constexpr std::int64_t stats_slice = std::int64_t{1} << 16;

/// Blocks of one fused-quantizer chunk at block size bs.
constexpr std::int64_t fused_chunk_blocks_for(std::int64_t bs) noexcept {
  return std::max<std::int64_t>(1, std::min(fused_chunk_blocks, fused_chunk_elements / bs));
}

inline status nonfinite_error(std::int64_t i, float v) {
  return status::error(errc::non_finite,
                       "quantize: input element %lld is %s; nothing was written (options::allow_nonfinite accepts it)",
                       static_cast<long long>(i), v != v ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
}

/// One pass over the input: each task takes a cache-sized chunk of whole blocks, gathers their
/// statistics and encodes them at once. The outputs of chunks before a non-finite element may be
/// written when the error is returned: callers that must leave their buffers untouched write
/// into scratch first (see quantize below).
template <format F, class T>
status quantize_fused(const T* x, const quant_view& q, const options& opt, float* scales_out) {
  const std::int64_t n = q.numel, bs = q.block_size, nb = q.blocks();
  const bool simd = opt.simd && avx2::available();
  const std::int64_t per_chunk = fused_chunk_blocks_for(bs);
  const std::int64_t chunks = (nb + per_chunk - 1) / per_chunk;
  std::atomic<std::int64_t> first_bad{std::numeric_limits<std::int64_t>::max()};
  // AVX2 run kernels take the chunk's full blocks when the block size allows
  const bool runs = simd && bs % 16 == 0 && avx2::detail::has_encode_kernel<F>();
  // AVX-512 run kernels: 32 elements per step, encoders 16 at a time (formats without a zero
  // point, which has_encode_kernel already excludes)
  const bool wide = runs && bs % 32 == 0 && !info(F).zero_point && opt.avx512 && avx512::available();
  parallel_for(chunks, 1, 1, opt.threads, [&](std::int64_t c0, std::int64_t c1) {
    stats_entry st[fused_chunk_blocks];
    quant::block_stats run_st[fused_chunk_blocks];
    quant::block_encoder run_enc[fused_chunk_blocks];
    float run_absmax[fused_chunk_blocks], run_inv[fused_chunk_blocks];
    auto codes_at = [&](std::int64_t b) { return info(F).bits == 4 ? q.codes + b * bs / 2 : q.codes + b * bs; };
    for (std::int64_t c = c0; c < c1; ++c) {
      std::int64_t b0 = c * per_chunk;
      const std::int64_t b1 = std::min(nb, b0 + per_chunk);
      const std::int64_t full = runs ? std::min(b1, n / bs) - b0 : 0;
      // the encode kernels prefetch this task's next chunk, which the statistics read next
      const std::int64_t ahead = c + 1 < c1 ? per_chunk * bs : 0;
      bool done = false;  // full blocks encoded by a run kernel
      if constexpr (avx2::detail::has_encode_kernel<F>()) {  // formats without a zero point
        if (full > 0 && wide) {
          if (avx512::absmax_run(x + b0 * bs, full, bs, run_absmax)) {
            avx512::scales_run<F>(run_absmax, full, scales_out + b0, run_inv);
            avx512::encode_run<F>(x + b0 * bs, full, bs, run_inv, codes_at(b0), ahead);
            done = true;
          }
        } else if (full > 0 && avx2::stats_run(x + b0 * bs, full, bs, run_st)) {
          for (std::int64_t j = 0; j < full; ++j) {
            run_enc[j] = quant::make_encoder<F>(run_st[j]);
            scales_out[b0 + j] = run_enc[j].scale;
          }
          avx2::encode_run<F>(x + b0 * bs, full, bs, run_enc, codes_at(b0), ahead);
          done = true;
        }
      }
      if (done) {
        if (b0 + full == b1) continue;
        b0 += full;  // the tensor's last, partial block: the block-by-block code below
      }
      const std::int64_t fb = gather_stats(x, n, bs, b0, b1, st, simd);
      if (fb >= 0) {
        std::int64_t cur = first_bad.load();
        while (fb < cur && !first_bad.compare_exchange_weak(cur, fb)) {
        }
      }
      if (!opt.allow_nonfinite && first_bad.load(std::memory_order_relaxed) != std::numeric_limits<std::int64_t>::max())
        continue;  // the call fails: skip the remaining work
      for (std::int64_t b = b0; b < b1; ++b) {
        const quant::block_encoder enc = quant::make_encoder<F>(st[b - b0].st);
        scales_out[b] = enc.scale;
        if constexpr (info(F).zero_point) q.zero_points[b] = static_cast<std::uint8_t>(enc.zero_point);
        const std::int64_t e0 = b * bs;
        encode_block<F>(x, e0, e0 + bs < n ? e0 + bs : n, enc, st[b - b0].has_nan, q.codes, simd);
      }
    }
  });
  if (!opt.allow_nonfinite && first_bad.load() != std::numeric_limits<std::int64_t>::max()) {
    const std::int64_t i = first_bad.load();
    return nonfinite_error(i, to_float(load(x + i)));
  }
  return {};
}

template <format F, class T>
status quantize_typed(const T* x, const quant_view& q, const options& opt, float* scales_out) {
  constexpr bool four = info(F).bits == 4;
  const std::int64_t n = q.numel, bs = q.block_size, nb = q.blocks();
  // Blocks up to fused_block_limit (and 4-bit blocks that start on whole bytes) take the one-pass
  // path; larger blocks (per tensor, long rows) read the input twice, and so does int8_absmax with
  // the reciprocal multiplier (whose encoders the fused path's run kernels do not compute).
  const quant::int8_multiplier rule = opt.int8_inverse;
  constexpr bool bnb4 = F == format::nf4 || F == format::bnb_fp4;
  const bool cpu4 = bnb4 && opt.bnb4 == quant::bnb4_rule::cpu_midpoints;  // element by element, below
  const bool fused = !(F == format::int8_absmax && rule != quant::int8_multiplier::quotient) && !cpu4;
  if (fused && bs <= fused_block_limit && !(four && (bs & 1))) return quantize_fused<F>(x, q, opt, scales_out);
  const bool simd = opt.simd && avx2::available();
  // With an odd block size a 4-bit byte can hold elements of two blocks, so pass B's chunks then
  // start at even blocks (an even element) and codes go pair by pair, as they do for
  // bitsandbytes' CPU 4-bit rule (scale: the absmax itself, even of a zero block).
  const bool pairwise = four && ((bs & 1) || cpu4);
  // Blocks larger than stats_slice elements (per tensor, long rows) are cut into slices, so both
  // passes use every thread even for a single block: the slices' statistics are merged per block
  // (max and min, the same in any order), then every slice is encoded with its block's encoder.
  // The bytes therefore depend neither on the slicing nor on the thread count.
  const std::int64_t slice = (pairwise || bs <= stats_slice) ? bs : stats_slice;
  const std::int64_t spb = (bs + slice - 1) / slice;  // slices per block
  const std::int64_t ns = nb * spb;
  storage<stats_entry> stats;  // per slice; after the merge, stats[b * spb] holds block b's
  LOWBIT_TRY(stats.allocate(static_cast<std::size_t>(ns), allocator::host(), "quantize: block statistics"));
  auto slice_range = [&](std::int64_t k, std::int64_t& e0, std::int64_t& e1) {
    const std::int64_t b0 = k / spb * bs;
    e0 = std::min(n, b0 + k % spb * slice);
    e1 = std::min(std::min(n, b0 + bs), e0 + slice);
  };
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 15) / slice);

  // With AVX-512, formats whose encoder needs only max |x| (no zero point) take each slice's
  // whole 32-element pieces through the run kernels: absmax_run (prefetching) in pass A,
  // encode_run in pass B; the rest, and slices with a non-finite element, as below.
  const bool wide = simd && !info(F).zero_point && opt.avx512 && avx512::available();

  // Pass A: statistics and validation; nothing is written to the outputs yet.
  std::atomic<std::int64_t> first_bad{std::numeric_limits<std::int64_t>::max()};
  parallel_for(ns, grain, 1, opt.threads, [&](std::int64_t k0, std::int64_t k1) {
    for (std::int64_t k = k0; k < k1; ++k) {
      std::int64_t e0, e1;
      slice_range(k, e0, e1);
      const std::int64_t whole = (e1 - e0) & ~std::int64_t{31};
      if constexpr (!info(F).zero_point) {
        stats_entry& st = stats[static_cast<std::size_t>(k)];
        st = stats_entry{};
        if (wide && whole > 0 && avx512::absmax_run(x + e0, 1, whole, &st.st.absmax, avx2::stream_ahead / sizeof(T))) {
          stats_entry tail;
          if (range_stats(x, e0 + whole, e1, tail, simd) < 0) {  // (lo and hi are not used: no zero point)
            st.st.absmax = std::max(st.st.absmax, tail.st.absmax);
            st.has_nan = false;
            continue;
          }
        }
      }
      const std::int64_t fb = range_stats(x, e0, e1, stats[static_cast<std::size_t>(k)], simd);
      std::int64_t cur = first_bad.load();
      while (fb >= 0 && fb < cur && !first_bad.compare_exchange_weak(cur, fb)) {
      }
    }
  });
  if (!opt.allow_nonfinite && first_bad.load() != std::numeric_limits<std::int64_t>::max()) {
    const std::int64_t i = first_bad.load();
    return nonfinite_error(i, to_float(load(x + i)));
  }
  for (std::int64_t b = 0; spb > 1 && b < nb; ++b) {
    stats_entry& s = stats[static_cast<std::size_t>(b * spb)];
    for (std::int64_t j = 1; j < spb; ++j) {
      const stats_entry& o = stats[static_cast<std::size_t>(b * spb + j)];
      s.st.merge(o.st);
      s.has_nan = s.has_nan || o.has_nan;
    }
  }

  // Pass B: scales and codes.
  if (!pairwise) {
    parallel_for(ns, grain, 1, opt.threads, [&](std::int64_t k0, std::int64_t k1) {
      for (std::int64_t k = k0; k < k1; ++k) {
        const std::int64_t b = k / spb;
        const quant::block_encoder enc = quant::make_encoder<F>(stats[static_cast<std::size_t>(b * spb)].st, rule);
        if (k % spb == 0) {
          scales_out[b] = enc.scale;
          if constexpr (info(F).zero_point) q.zero_points[b] = static_cast<std::uint8_t>(enc.zero_point);
        }
        std::int64_t e0, e1;
        slice_range(k, e0, e1);
        if constexpr (!info(F).zero_point && avx2::detail::has_encode_kernel<F>()) {
          const std::int64_t whole = (e1 - e0) & ~std::int64_t{31};
          if (wide && whole > 0 && !stats[static_cast<std::size_t>(k)].has_nan && !(four && (e0 & 1))) {
            const float inv = enc.zero ? 0.0f : enc.inv;  // encode_run: 0 is a zero block
            avx512::encode_run<F>(x + e0, 1, whole, &inv, four ? q.codes + e0 / 2 : q.codes + e0, avx2::stream_ahead / sizeof(T));
            e0 += whole;
          }
        }
        encode_block<F>(x, e0, e1, enc, stats[static_cast<std::size_t>(k)].has_nan, q.codes, simd);
      }
    });
    return {};
  }
  parallel_for(nb, grain, 2, opt.threads, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const quant::block_encoder enc = quant::make_encoder<F>(stats[b].st, rule);
      scales_out[b] = cpu4 ? stats[b].st.absmax : enc.scale;
    }
    constexpr auto order = info(F).order;
    const std::int64_t e1 = b1 * bs < n ? b1 * bs : n;
    std::int64_t cached = -1;
    quant::block_encoder enc;
    auto encode_at = [&](std::int64_t i) -> std::uint8_t {
      if (i / bs != cached) {
        cached = i / bs;
        enc = quant::make_encoder<F>(stats[cached].st);
      }
      if constexpr (bnb4) {
        if (cpu4) return quant::bnb_cpu4_code<F>(quant::bnb_cpu4_scaled(to_float(load(x + i)), stats[cached].st.absmax, (cached + 1) * bs > n));
      }
      return quant::encode_element<F>(to_float(load(x + i)), enc);
    };
    for (std::int64_t i = b0 * bs; i < e1; i += 2) {
      const std::uint8_t c0 = encode_at(i);
      // past the end of an odd-sized tensor: the code of 0.0 in the last element's block
      std::uint8_t pad = quant::encode_element<F>(0.0f, enc);
      if constexpr (bnb4) {
        if (cpu4) pad = quant::bnb_cpu4_code<F>(0.0f);
      }
      const std::uint8_t c1 = i + 1 < n ? encode_at(i + 1) : pad;
      q.codes[i / 2] = codecs::pack_nibbles<order>(c0, c1);
    }
  });
  return {};
}

/// The most elements measure_error sums in float32 before adding the sums up in double: 128
/// terms in each of the 16 lanes.
inline constexpr std::int64_t error_span_limit = 2048;

/// The spans of measure_error over n elements at block size bs. Blocks of at most
/// error_span_limit elements: runs of floor(error_span_limit / bs) whole blocks (the last run
/// shorter). Larger blocks: slices of error_span_limit elements from each block's start (a
/// block's last slice shorter). So every span starts a block or lies inside one, and its float32
/// sums have at most 128 terms a lane. Fixed by n and bs alone: the sums do not depend on the
/// thread count.
struct error_spans {
  std::int64_t n, bs;
  std::int64_t count() const noexcept {
    if (bs <= error_span_limit) return (n + run() - 1) / run();
    return n / bs * slices() + (n % bs + error_span_limit - 1) / error_span_limit;
  }
  /// Elements [e0, e1) of span c (c < count()).
  void range(std::int64_t c, std::int64_t& e0, std::int64_t& e1) const noexcept {
    if (bs <= error_span_limit) {
      e0 = c * run();
      e1 = std::min(n, e0 + run());
      return;
    }
    const std::int64_t b = c / slices();
    e0 = b * bs + c % slices() * error_span_limit;
    e1 = std::min(std::min(e0 + error_span_limit, (b + 1) * bs), n);
  }

 private:
  std::int64_t run() const noexcept { return error_span_limit / bs * bs; }
  std::int64_t slices() const noexcept { return (bs + error_span_limit - 1) / error_span_limit; }
};

/// Adds the error terms of n elements, x the source and y its float32 dequantization, to the
/// float32 lane sums acc (see avx2::error_sums; element i into lane i % 16, so a caller
/// continuing a span passes a multiple of 16 elements before): acc[0] max |d|, acc[1] sum |d|,
/// acc[2] sum x^2, acc[3] sum d^2, d = x - y rounded to float32, the squares added with one
/// rounding (fused multiply-add).
template <class T>
void error_accumulate(const T* x, const float* y, std::int64_t n, bool simd, bool wide, float (*acc)[16]) {
  std::int64_t done = wide ? avx512::error_sums(x, y, n, acc) : 0;  // a multiple of 16: lanes stay aligned
  if (simd) done += avx2::error_sums(x + done, y + done, n - done, acc);
  for (std::int64_t i = done; i < n; ++i) {
    const float v = to_float(load(x + i));
    const float d = std::fabs(v - y[i]);
    const int l = static_cast<int>(i & 15);
    acc[0][l] = std::max(acc[0][l], d);
    acc[1][l] = acc[1][l] + d;
    acc[2][l] = std::fma(v, v, acc[2][l]);
    acc[3][l] = std::fma(d, d, acc[3][l]);
  }
}

/// The lanes of acc into out, in double: [0] their max, [1..3] their sums, each a fixed pairwise
/// tree (lane l + w combined into lane l for w = 8, 4, 2, 1: four dependent steps, not fifteen).
inline void fold_error_lanes(const float (*acc)[16], double* out /* [4] */) {
  double t[4][8];
  for (int l = 0; l < 8; ++l) {
    t[0][l] = std::max(static_cast<double>(acc[0][l]), static_cast<double>(acc[0][l + 8]));
    for (int k = 1; k < 4; ++k) t[k][l] = static_cast<double>(acc[k][l]) + static_cast<double>(acc[k][l + 8]);
  }
  for (int w = 4; w >= 1; w /= 2)
    for (int l = 0; l < w; ++l) {
      t[0][l] = std::max(t[0][l], t[0][l + w]);
      for (int k = 1; k < 4; ++k) t[k][l] = t[k][l] + t[k][l + w];
    }
  for (int k = 0; k < 4; ++k) out[k] = t[k][0];
}

/// Decodes the elements [e0, e1) of one block into out[0 .. e1 - e0) (the vector path needs e0
/// even for 4-bit formats).
template <format F, class T>
void decode_block(const std::uint8_t* codes, std::int64_t e0, std::int64_t e1, const float* table, float scale,
                  int zp, T* out, bool use_simd) {
  constexpr bool four = info(F).bits == 4;
  std::int64_t i = e0;
  if (use_simd) i += avx2::decode_block<F>(four ? codes + e0 / 2 : codes + e0, e1 - e0, table, scale, zp, out);
  for (; i < e1; ++i) {
    const std::uint8_t c = four ? codecs::unpack_nibble<info(F).order>(codes[i / 2], static_cast<int>(i & 1)) : codes[i];
    store(out + (i - e0), from_float<T>(quant::decode_element<F>(table[c], scale, zp)));
  }
}

/// Dequantization of any element range of `q`: the code tables and kernel choice are set up
/// once, then `decode(e0, e1, out)` fills out[0 .. e1 - e0) with elements [e0, e1) (e0 even for
/// 4-bit formats), the same values whichever ranges are asked for. `stream`: the run kernels
/// write 64-byte-aligned output with non-temporal stores (fenced before decode returns).
template <format F>
class range_decoder {
 public:
  range_decoder(const quant_view& q, const options& opt, bool stream = false)
      : q_(q), simd_(opt.simd && avx2::available()), stream_(stream) {
    for (int c = 0; c < 256; ++c) {
      const int k = four ? (c & 15) : c;
      table_[c] = q.code_table ? q.code_table[k] : quant::decode_table<F>(static_cast<std::uint8_t>(k));
    }
    for (int c = 0; c < 256; ++c)
      nested_table_[c] = q.nested_code_table ? q.nested_code_table[c] : codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(c));
    // Runs of full blocks whose size is a multiple of 32 go through the run kernels, 256 blocks
    // at a time with their scales gathered first; everything else block by block.
    runs_ = simd_ && q.block_size % 32 == 0;
    wide_ = runs_ && opt.avx512 && avx512::detail::has_decode_kernel<F>() && avx512::available();
    wide_bf16_ = wide_ && avx512::bf16_available();
    wide_sums_ = simd_ && opt.avx512 && avx512::available();
  }

  template <class T>
  void decode(std::int64_t e0, std::int64_t e1, T* out) const {
    const std::int64_t bs = q_.block_size, full_blocks = q_.numel / bs;
    std::int64_t i = e0;
    bool streamed = false;
    while (i < e1) {
      std::int64_t b = i / bs;
      if (runs_ && i == b * bs && b < full_blocks && (b + 1) * bs <= e1) {
        const std::int64_t run_end = std::min(e1 / bs, full_blocks);  // the full blocks inside [i, e1)
        float scale[256];
        int zp[256];
        while (b < run_end) {
          const std::int64_t m = std::min<std::int64_t>(256, run_end - b);
          gather(b, m, scale, zp);
          T* o = out + (b * bs - e0);
          // runs after the first start a multiple of 64 bytes further on (bs % 32 == 0)
          if (stream_ && reinterpret_cast<std::uintptr_t>(o) % 64 == 0) {
            run<true>(b, m, scale, zp, o);
            streamed = true;
          } else if (stream_ && bs <= bounce_elements) {
            // a misaligned output (a std::vector's, say) is streamed too: whole blocks decoded
            // into an L1-resident buffer, then copied out with non-temporal stores
            alignas(64) T buf[bounce_elements];
            const std::int64_t per = bounce_elements / bs;
            for (std::int64_t j = 0; j < m; j += per) {
              const std::int64_t k = std::min(per, m - j);
              avx2::stream_copy_prepare(o + j * bs, static_cast<std::size_t>(k * bs) * sizeof(T));
              run<false>(b + j, k, scale + j, zp + j, buf);
              avx2::stream_copy(o + j * bs, buf, static_cast<std::size_t>(k * bs) * sizeof(T));
            }
            streamed = true;
          } else {
            run<false>(b, m, scale, zp, o);
          }
          b += m;
        }
        i = b * bs;
        continue;
      }
      const std::int64_t end = std::min(std::min((b + 1) * bs, q_.numel), e1);
      const int zp = info(F).zero_point ? q_.zero_points[b] : 0;
      // a 4-bit range starting at an odd element decodes element by element (no vector path)
      decode_block<F>(q_.codes, i, end, table_, scale_of(b), zp, out + (i - e0), simd_ && !(four && (i & 1)));
      i = end;
    }
    if (streamed) avx2::store_fence();
  }

  /// The four error sums of one span [e0, e1) (see error_spans) against source x (x[0] is
  /// element e0) into out: each element's float32 dequantization y as decode gives it, the float32
  /// lane sums of error_accumulate (element i into lane (i - e0) % 16), the lanes folded in double
  /// (fold_error_lanes). A span whose folded sums are not finite (a square or a sum past float32's
  /// range, or NaN or Inf in x or y) is summed again in double (measure_double). Where
  /// avx512::error_run has the format and the block size is a multiple of 32, the span's full
  /// blocks (or its slice of a block) are decoded in registers; the rest goes through decode and a
  /// buffer, with the same bits.
  template <class T>
  void measure(const T* x, std::int64_t e0, std::int64_t e1, double* out /* [4] */) const {
    const std::int64_t bs = q_.block_size;
    float acc[4][16];
    for (int k = 0; k < 4; ++k)
      for (int l = 0; l < 16; ++l) acc[k][l] = 0.0f;
    std::int64_t i = e0;
    if constexpr (avx512::has_error_kernel<F>()) {
      if (wide_sums_ && bs % 32 == 0) {
        const std::uint8_t* codes = four ? q_.codes + e0 / 2 : q_.codes + e0;  // e0 % 32 == 0
        float scale[error_span_limit / 32];
        int zp[error_span_limit / 32];
        if (bs <= error_span_limit) {  // the span's full blocks
          const std::int64_t b0 = e0 / bs, m = std::min(e1 / bs, q_.numel / bs) - b0;
          if (m > 0) {
            gather(b0, m, scale, zp);
            avx512::error_run<F>(x, codes, m, bs, scale, zp, table_, acc);
            i = e0 + m * bs;
          }
        } else if (const std::int64_t m = (e1 - e0) & ~std::int64_t{31}; m > 0) {  // a slice of one block
          gather(e0 / bs, 1, scale, zp);
          avx512::error_run<F>(x, codes, 1, m, scale, zp, table_, acc);
          i = e0 + m;
        }
      }
    }
    if (i < e1) {  // the rest (i - e0 a multiple of 32 after error_run: lanes stay aligned)
      alignas(64) float y[error_span_limit];
      decode(i, e1, y);
      error_accumulate(x + (i - e0), y, e1 - i, simd_, wide_sums_, acc);
    }
    fold_error_lanes(acc, out);
    if (!(std::isfinite(out[1]) && std::isfinite(out[2]) && std::isfinite(out[3]))) measure_double(x, e0, e1, out);
  }

  /// measure's sums of one span in double, one element after another: d = |x - y| exact, the
  /// squares added with one rounding.
  template <class T>
  void measure_double(const T* x, std::int64_t e0, std::int64_t e1, double* out /* [4] */) const {
    alignas(64) float y[error_span_limit];
    decode(e0, e1, y);
    for (int k = 0; k < 4; ++k) out[k] = 0.0;
    for (std::int64_t i = 0; i < e1 - e0; ++i) {
      const double v = static_cast<double>(to_float(load(x + i)));
      const double d = std::fabs(v - static_cast<double>(y[i]));
      out[0] = std::max(out[0], d);
      out[1] = out[1] + d;
      out[2] = std::fma(v, v, out[2]);
      out[3] = std::fma(d, d, out[3]);
    }
  }

 private:
  static constexpr bool four = info(F).bits == 4;
  // m full blocks from block b (scales and zero points gathered) into o
  template <bool Stream, class T>
  void run(std::int64_t b, std::int64_t m, const float* scale, const int* zp, T* o) const {
    const std::int64_t bs = q_.block_size;
    if constexpr (std::is_same<T, bf16>::value) {
      if (wide_bf16_) return avx512::decode_run_bf16<F, Stream>(q_.codes + b * bs, m, bs, scale, zp, o);
    }
    if (wide_) avx512::decode_run<F, T, Stream>(q_.codes + b * bs, m, bs, scale, zp, o);
    else avx2::decode_run<F, T, Stream>(four ? q_.codes + b * bs / 2 : q_.codes + b * bs, m, bs, scale, zp, table_, o);
  }
  // the scales and zero points of blocks b .. b + m - 1
  void gather(std::int64_t b, std::int64_t m, float* scale, int* zp) const {
    if (q_.nested()) {  // scale_of, its test out of the loop
      for (std::int64_t j = 0; j < m; ++j) scale[j] = nested_scale_of(b + j);
    } else {
      for (std::int64_t j = 0; j < m; ++j) scale[j] = q_.scales[b + j];
    }
    for (std::int64_t j = 0; j < m; ++j) zp[j] = info(F).zero_point ? q_.zero_points[b + j] : 0;
  }
  float scale_of(std::int64_t b) const { return q_.nested() ? nested_scale_of(b) : q_.scales[b]; }
  float nested_scale_of(std::int64_t b) const {
    const auto k = static_cast<std::uint64_t>(b);  // b >= 0: the division a shift
    return quant::nested_scale(nested_table_[q_.nested_codes[k]], q_.nested_scales[k / quant::nested_block_size], q_.nested_offset);
  }
  const quant_view& q_;
  bool simd_, stream_, runs_ = false, wide_ = false, wide_bf16_ = false;
  bool wide_sums_ = false;  // AVX-512 error sums (measure)
  alignas(64) float table_[256];
  alignas(64) float nested_table_[256];
};

template <format F, class T>
status dequantize_typed(const quant_view& q, T* out, const options& opt) {
  constexpr bool four = info(F).bits == 4;
  const std::int64_t n = q.numel, bs = q.block_size, nb = q.blocks();
  const bool stream = opt.stores == store_mode::streaming ||
                      (opt.stores == store_mode::automatic && n >= streaming_store_bytes / static_cast<std::int64_t>(sizeof(T)));
  const range_decoder<F> dec(q, opt, stream);
  const std::int64_t grain = std::max<std::int64_t>(1, (std::int64_t{1} << 15) / bs);
  const bool pairwise = four && (bs & 1);  // chunks start at even blocks, so at even elements
  parallel_for(nb, grain, pairwise ? 2 : 1, opt.threads, [&](std::int64_t b0, std::int64_t b1) {
    dec.decode(b0 * bs, std::min(n, b1 * bs), out + b0 * bs);
  });
  return {};
}

template <format F, class T>
status measure_error_typed(const T* x, const quant_view& q, const options& opt, double* sums /* [4] */) {
  const error_spans spans{q.numel, q.block_size};
  const std::int64_t count = spans.count();
  const range_decoder<F> dec(q, opt);
  storage<double> part;  // 4 sums per span, reduced in span order below
  LOWBIT_TRY(part.allocate(static_cast<std::size_t>(count) * 4, allocator::host(), "measure_error: partial sums"));
  parallel_for(count, 1, 1, opt.threads, [&](std::int64_t c0, std::int64_t c1) {
    for (std::int64_t c = c0; c < c1; ++c) {
      std::int64_t e0, e1;
      spans.range(c, e0, e1);
      dec.measure(x + e0, e0, e1, part.data() + 4 * c);
    }
  });
  for (int k = 0; k < 4; ++k) sums[k] = 0.0;
  for (std::int64_t c = 0; c < count; ++c) {
    sums[0] = std::max(sums[0], part[static_cast<std::size_t>(4 * c)]);
    for (int k = 1; k < 4; ++k) sums[k] = sums[k] + part[static_cast<std::size_t>(4 * c + k)];
  }
  return {};
}

template <class T>
status quantize_dispatch(const T* x, quant_view& q, const options& opt) {
  if (!q.nested()) return visit_format(q.fmt, [&](auto f) { return quantize_typed<decltype(f)::value>(x, q, opt, q.scales); });
  // Double quantization: float32 absmax first, then bitsandbytes' nested 8-bit quantization.
  const std::int64_t nb = q.blocks();
  storage<float> absmax;
  LOWBIT_TRY(absmax.allocate(static_cast<std::size_t>(nb), allocator::host(), "quantize: absmax before double quantization"));
  LOWBIT_TRY(visit_format(q.fmt, [&](auto f) { return quantize_typed<decltype(f)::value>(x, q, opt, absmax.data()); }));
  float offset;
  if (opt.nested_offset == quant::offset_rule::torch_cpu_mean) {
    offset = quant::torch_cpu_mean(absmax.data(), nb, opt.torch_threads);
  } else {
    const std::int64_t nchunks = quant::block_count(nb, quant::offset_chunk);
    storage<double> partials;
    LOWBIT_TRY(partials.allocate(static_cast<std::size_t>(nchunks), allocator::host(), "quantize: nested offset partial sums"));
    for (std::int64_t c = 0; c < nchunks; ++c)
      partials[c] = quant::offset_partial(absmax.data() + c * quant::offset_chunk, std::min(quant::offset_chunk, nb - c * quant::offset_chunk));
    offset = quant::offset_from_partials(partials.data(), nchunks, nb);
  }
  for (std::int64_t b = 0; b < nb; ++b) absmax[b] = absmax[b] - offset;
  quant_view nested;
  nested.fmt = format::bnb_dynamic8;
  nested.numel = nb;
  nested.block_size = quant::nested_block_size;
  nested.codes = q.nested_codes;
  nested.scales = q.nested_scales;
  options inner = opt;
  inner.allow_nonfinite = true;  // finite by construction
  LOWBIT_TRY((quantize_typed<format::bnb_dynamic8, float>(absmax.data(), nested, inner, q.nested_scales)));
  q.nested_offset = offset;
  return {};
}

}  // namespace detail

namespace detail {

inline status check_quantize_args(const void* x, dtype xt, const quant_view& q, const options& opt) {
  LOWBIT_TRY(validate(q, "quantize"));
  if (opt.bnb4 == quant::bnb4_rule::cpu_midpoints && opt.allow_nonfinite && (q.fmt == format::nf4 || q.fmt == format::bnb_fp4))
    return status::error(errc::unsupported, "quantize: options.bnb4 = cpu_midpoints is defined for finite input only; allow_nonfinite must be false");
  if (q.nested() && opt.nested_offset == quant::offset_rule::torch_cpu_mean && (opt.torch_threads < 1 || opt.torch_threads > quant::max_torch_threads))
    return status::error(errc::invalid_argument, "quantize: options.torch_threads is %d; torch's thread count is 1..%d", opt.torch_threads,
                         quant::max_torch_threads);
  if (!is_valid(xt)) return status::error(errc::invalid_argument, "quantize: input dtype %d is not a lowbit dtype", static_cast<int>(xt));
  if (q.numel > 0 && x == nullptr) return status::error(errc::invalid_argument, "quantize: input x is null");
  if (q.code_table != nullptr)
    return status::error(errc::unsupported, "quantize: encodes with the built-in tables; code_table is for dequantization");
  return {};
}

inline status quantize_any(const void* x, dtype xt, quant_view& q, const options& opt) {
  switch (xt) {
    case dtype::f32: return quantize_dispatch(static_cast<const float*>(x), q, opt);
    case dtype::f16: return quantize_dispatch(static_cast<const f16*>(x), q, opt);
    case dtype::bf16: break;
  }
  return quantize_dispatch(static_cast<const bf16*>(x), q, opt);
}

/// Per-thread scratch of `quantize`, kept between calls (see release_scratch).
inline storage<unsigned char>& scratch() {
  thread_local storage<unsigned char> b;
  return b;
}

constexpr std::size_t align64(std::size_t v) { return (v + 63) / 64 * 64; }

}  // namespace detail

/// Quantizes `q.numel` elements of `x` (dtype `xt`) into the storage described by `q`
/// (format, block size, codes, scales, zero points, nested buffers). With double quantization,
/// `q.nested_offset` receives the offset.
///
/// On error nothing is written. To keep that promise while reading the input only once, the
/// results go to a per-thread scratch buffer first (the size of the outputs; kept for the next
/// call, freed by `release_scratch`) and are copied to `q` on success; with
/// `options::allow_nonfinite` (no input can fail) they are written directly. `quantize_into`
/// skips the scratch for callers that discard `q` on error.
inline status quantize(const void* x, dtype xt, quant_view& q, const options& opt = {}) {
  const detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(detail::check_quantize_args(x, xt, q, opt));
  if (q.numel == 0) return {};
  if (opt.allow_nonfinite) return detail::quantize_any(x, xt, q, opt);
  const std::size_t nb = static_cast<std::size_t>(q.blocks());
  const std::size_t nnb = static_cast<std::size_t>(q.nested_blocks());
  const std::size_t codes = detail::align64(static_cast<std::size_t>(code_bytes(q.fmt, q.numel)));
  const std::size_t scales = q.nested() ? 0 : detail::align64(nb * 4);
  const std::size_t zps = info(q.fmt).zero_point ? detail::align64(nb) : 0;
  const std::size_t ncodes = q.nested() ? detail::align64(nb) : 0;
  const std::size_t nscales = q.nested() ? detail::align64(nnb * 4) : 0;
  const std::size_t total = codes + scales + zps + ncodes + nscales;
  storage<unsigned char>& scratch = detail::scratch();
  if (scratch.size() < total) LOWBIT_TRY(scratch.allocate(total, allocator::host(), "quantize: scratch for the outputs"));
  unsigned char* p = scratch.data();
  quant_view s = q;
  s.codes = p;
  s.scales = q.nested() ? nullptr : reinterpret_cast<float*>(p + codes);
  s.zero_points = info(q.fmt).zero_point ? p + codes + scales : nullptr;
  if (q.nested()) {
    s.nested_codes = p + codes + scales + zps;
    s.nested_scales = reinterpret_cast<float*>(p + codes + scales + zps + ncodes);
  }
  LOWBIT_TRY(detail::quantize_any(x, xt, s, opt));
  const std::int64_t code_len = code_bytes(q.fmt, q.numel);
  parallel_for(code_len, std::int64_t{1} << 20, 64, opt.threads, [&](std::int64_t b, std::int64_t e) {
    std::memcpy(q.codes + b, s.codes + b, static_cast<std::size_t>(e - b));
  });
  if (!q.nested()) std::memcpy(q.scales, s.scales, nb * 4);
  if (info(q.fmt).zero_point) std::memcpy(q.zero_points, s.zero_points, nb);
  if (q.nested()) {
    std::memcpy(q.nested_codes, s.nested_codes, nb);
    std::memcpy(q.nested_scales, s.nested_scales, nnb * 4);
    q.nested_offset = s.nested_offset;
  }
  return {};
}

/// `quantize` without the scratch: writes `q`'s buffers directly, so on error they may hold
/// partial results (for callers that discard them then, like lowbit::quantize into a new tensor).
inline status quantize_into(const void* x, dtype xt, quant_view& q, const options& opt = {}) {
  const detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(detail::check_quantize_args(x, xt, q, opt));
  if (q.numel == 0) return {};
  return detail::quantize_any(x, xt, q, opt);
}

/// Frees the calling thread's quantize scratch.
inline void release_scratch() noexcept { detail::scratch() = storage<unsigned char>{}; }

/// Dequantizes `q` into `q.numel` elements of `out` (dtype `ot`), rounding each float32 value
/// to the output dtype to nearest even. The input is never modified. Stored bytes are not
/// validated: NaN/Inf codes (e4m3fn, e5m2) and non-finite scales give NaN/Inf results; a float32
/// NaN result has an unspecified sign and payload, a float16/bfloat16 one is 0x7FFF.
/// `opt.stores` chooses cached or non-temporal stores for the output (store_mode; automatic
/// streams outputs of streaming_store_bytes and more); the values are the same in every mode.
inline status dequantize(const quant_view& q, void* out, dtype ot, const options& opt = {}) {
  const detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(validate(q, "dequantize"));
  if (!is_valid(ot)) return status::error(errc::invalid_argument, "dequantize: output dtype %d is not a lowbit dtype", static_cast<int>(ot));
  if (opt.stores != store_mode::automatic && opt.stores != store_mode::cached && opt.stores != store_mode::streaming)
    return status::error(errc::invalid_argument, "dequantize: options::stores is %d, not a store_mode", static_cast<int>(opt.stores));
  if (q.numel == 0) return {};
  if (out == nullptr) return status::error(errc::invalid_argument, "dequantize: output is null");
  return visit_format(q.fmt, [&](auto f) {
    constexpr format F = decltype(f)::value;
    switch (ot) {
      case dtype::f32: return detail::dequantize_typed<F>(q, static_cast<float*>(out), opt);
      case dtype::f16: return detail::dequantize_typed<F>(q, static_cast<f16*>(out), opt);
      case dtype::bf16: break;
    }
    return detail::dequantize_typed<F>(q, static_cast<bf16*>(out), opt);
  });
}

/// How far a quantized tensor is from its source (see measure_error).
struct error_stats {
  std::int64_t count = 0;  ///< elements compared
  double max_abs = 0.0;     ///< max |x - x'| (float32-rounded; see measure_error's accuracy)
  double sum_abs = 0.0;     ///< sum |x - x'|
  double sum_sq = 0.0;      ///< sum x^2
  double sum_sq_err = 0.0;  ///< sum (x - x')^2
  /// Mean absolute error (0 for an empty tensor).
  double mean_abs() const noexcept { return count > 0 ? sum_abs / static_cast<double>(count) : 0.0; }
  /// Signal-to-quantization-noise ratio 10 log10(sum x^2 / sum (x - x')^2) in dB; +Inf when the
  /// dequantization is exact (a zero tensor included).
  double sqnr_db() const noexcept { return sum_sq_err > 0 ? 10.0 * std::log10(sum_sq / sum_sq_err) : HUGE_VAL; }
};

/// Compares `q` with the `q.numel` elements of `x` (dtype `xt`) it was quantized from, x' being
/// the float32 dequantization `dequantize(q, ..., dtype::f32)` gives, without materializing it.
///
/// Arithmetic: the tensor is cut into spans of at most 2048 elements (detail::error_spans: whole
/// blocks, or slices of blocks larger than that). Within a span, d = |x - x'| is taken in float32
/// and element i of the span goes into float32 lane i % 16: a running max of d, a sum of d, and
/// sums of x^2 and d^2 by fused multiply-add. The 16 lanes are added in double in a fixed
/// pairwise tree (detail::fold_error_lanes), then the spans in span order. That order is fixed by
/// the shape and block size, so the result does not depend on `opt.threads`, and the SIMD and
/// portable paths perform the same operations in it: every bit is the same on every path.
///
/// Accuracy: max_abs is the exact max |x - x'| rounded to float32 (exact where a span is summed
/// again in double, below). Each sum is within 1e-5 relative of the exact sum of the exact terms
/// (at most 128 float32 additions a lane, 2^-24 each), plus at most 2^-149 absolute per term
/// whose square is below float32's normal range (|x| or |x - x'| under 1.1e-19). A span whose
/// float32 sums are not finite (a square or sum past 3.4e38, from inputs above 1.8e19 in float32
/// or bfloat16; or NaN or Inf in x or x') is summed again in double, every difference exact:
/// then an infinite difference makes the sums infinite, and a NaN one (NaN in x or in the
/// dequantization, or Inf - Inf) makes them NaN and is passed over by max_abs. Zero blocks give
/// zero terms; partial last blocks and spans are summed like full ones. Costs about one pass over
/// x and the codes (the report of the `lowbit` tool calls this for every weight).
inline status measure_error(const void* x, dtype xt, const quant_view& q, error_stats& out, const options& opt = {}) {
  const detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(validate(q, "measure_error"));
  if (!is_valid(xt)) return status::error(errc::invalid_argument, "measure_error: input dtype %d is not a lowbit dtype", static_cast<int>(xt));
  error_stats r;
  r.count = q.numel;
  if (q.numel > 0) {
    if (x == nullptr) return status::error(errc::invalid_argument, "measure_error: input x is null");
    double sums[4];
    LOWBIT_TRY(visit_format(q.fmt, [&](auto f) {
      constexpr format F = decltype(f)::value;
      switch (xt) {
        case dtype::f32: return detail::measure_error_typed<F>(static_cast<const float*>(x), q, opt, sums);
        case dtype::f16: return detail::measure_error_typed<F>(static_cast<const f16*>(x), q, opt, sums);
        case dtype::bf16: break;
      }
      return detail::measure_error_typed<F>(static_cast<const bf16*>(x), q, opt, sums);
    }));
    r.max_abs = sums[0], r.sum_abs = sums[1], r.sum_sq = sums[2], r.sum_sq_err = sums[3];
  }
  out = r;
  return {};
}

}  // namespace host
LOWBIT_NAMESPACE_END
