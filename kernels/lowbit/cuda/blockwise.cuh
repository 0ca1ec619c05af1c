// SPDX-License-Identifier: Apache-2.0
/// @file blockwise.cuh
/// @brief CUDA kernels and launchers for blockwise quantize / dequantize of every lowbit format,
///        with double quantization. They evaluate the per-block formulas of
///        lowbit/quant/blockwise.hpp, shared with the host engine, and equal it bit for bit.
///
/// @par Quantize: one pass (the common layouts)
/// When the input is 16-byte aligned and blocks are 2^k elements, from one 16-byte unit (4 float32
/// or 8 16-bit elements) to 4096 (can_stream_quantize), `quantize_stream_kernel` reads each
/// element once: per CTA iteration a 4096-element chunk, each block's statistics reduced in
/// registers (warp shuffles; blocks above 512 elements also across warps), its encoder formed, its
/// scale and codes stored. nf4/bnb_fp4 encode through a 128-cell table (codebook_encode),
/// bnb_dynamic8 through 2944 logarithmic cells (dyn8_encode), e4m3fn/e5m2 two elements per
/// `cvt.rn.satfinite` from sm_89 on (uses_f8_cvt), e2m1fn by bit manipulation (e2m1_encode). With
/// double quantization the same kernel writes the float32 absmax values to the workspace and
/// forms the nested offset as blocks complete (offset_chunk_done), and a second launch of it
/// quantizes absmax - offset in blocks of 256. Before it, when nothing may be written on
/// non-finite input (options::untouched_on_error, the default), `finite_scan_kernel` reads the
/// input once to find a NaN/Inf; the quantizer then writes nothing if it found one. So: a memset
/// of the workspace header and at most three kernels, none single-threaded.
///
/// @par Quantize: the general layouts
/// Any other block size or alignment takes three kernels: `stats_kernel` (per block max |x|, max
/// x, max -x; CTA per block chunk, atomics across chunks; the first non-finite index),
/// `finalize_kernel` (per block scale, zero point, encoder) and `encode_kernel` (16 or 32
/// consecutive elements per thread). With double quantization the absmax values then go through
/// the same three kernels as bnb_dynamic8 in blocks of 256, after `offset_kernel` has formed their
/// mean.
///
/// Either way, if the input holds NaN or Inf and `options::allow_nonfinite` is false, nothing is
/// written (unless options::untouched_on_error is false) and `input_status` reports the first bad
/// index afterwards.
///
/// @par Launchers
/// Take device pointers and a stream; validate their arguments and return lowbit::status;
/// allocate nothing (quantize takes a workspace of `quantize_workspace_size` bytes, 16-byte
/// aligned). Launches are asynchronous; errors of the launch itself are returned.
#pragma once

#include <lowbit/dtype.hpp>
#include <lowbit/format.hpp>
#include <lowbit/quant/blockwise.hpp>
#include <lowbit/quant/layout.hpp>
#include <lowbit/status.hpp>

#include "detail/arch.cuh"
#include "detail/div.cuh"
#include "detail/launch.cuh"

#include <cstddef>
#include <cstdint>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {

/// Options of the CUDA quantizer.
struct options {
  bool allow_nonfinite = false;  ///< as host::options::allow_nonfinite
  /// With allow_nonfinite false: keep the promise that nothing is written when the input holds a
  /// NaN or Inf (default). The one-pass quantizer then scans the input for them first, one more
  /// read of it; false skips the scan for callers that discard every output when input_status
  /// reports non-finite input (cuda::quantize into a new quant_tensor does), so the input is read
  /// once. input_status reports the first non-finite index either way.
  bool untouched_on_error = true;
};

namespace detail {

/// Elements one CTA of stats_kernel reduces at most.
inline constexpr std::int64_t stats_chunk = 8192;
/// Bytes of codes one thread of encode_kernel / dequantize_kernel handles.
inline constexpr int group_bytes = 16;
/// "no non-finite element seen" (int8.cuh's first-bad index). The blockwise quantizers keep the
/// complement, ~index with 0 = none (atomicMax), so one memset of zeros prepares the workspace.
inline constexpr unsigned long long no_bad_index = ~0ull;

/// Whether v is NaN or +-Inf (exponent all ones).
__device__ __forceinline__ bool nonfinite(float v) { return (__float_as_uint(v) & 0x7F800000u) == 0x7F800000u; }

/// Records element i as non-finite in a blockwise flag (the largest complement is the first index).
__device__ __forceinline__ void record_nonfinite(unsigned long long* flag, std::int64_t i) {
  atomicMax(flag, ~static_cast<unsigned long long>(i));
}

/// Per-block encoder as stored in the workspace.
struct packed_encoder {
  float inv;
  int zero_point;
  int zero;
  int pad;
};

/// Byte offsets of the parts of the quantize workspace.
struct workspace_plan {
  std::size_t flag = 0, stats = 0, encoders = 0, absmax = 0, partials = 0, offset = 0, nested = 0, total = 0;
};

constexpr std::size_t align16(std::size_t v) { return (v + 15) / 16 * 16; }

inline workspace_plan plan_workspace(std::int64_t numel, std::int64_t block_size, bool nested) {
  workspace_plan p;
  const auto nb = static_cast<std::size_t>(quant::block_count(numel, block_size));
  p.flag = 0;
  p.stats = 16;
  p.encoders = align16(p.stats + 12 * nb);
  p.total = align16(p.encoders + sizeof(packed_encoder) * nb);
  if (nested) {
    p.absmax = p.total;
    p.partials = align16(p.absmax + 4 * nb);
    p.offset = align16(p.partials + 8 * static_cast<std::size_t>(quant::block_count(static_cast<std::int64_t>(nb), quant::offset_chunk)));
    p.nested = p.offset + 16;
    p.total = p.nested + plan_workspace(static_cast<std::int64_t>(nb), quant::nested_block_size, false).total;
  }
  return p;
}

// ---- element access --------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ float load_float(const T* p) {
  return to_float(*p);
}

/// 16 bytes of T at p (16-byte aligned) as floats: 4 for float32, 8 for 16-bit types.
template <class T>
__device__ __forceinline__ void load16(const T* p, float* v) {
  const uint4 raw = load_vector<uint4>(p);
  const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
  if constexpr (sizeof(T) == 4) {
    for (int k = 0; k < 4; ++k) v[k] = __uint_as_float(w[k]);
  } else if constexpr (std::is_same<T, f16>::value) {
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = half_bits_to_float(static_cast<std::uint16_t>(w[k] & 0xFFFFu));
      v[2 * k + 1] = half_bits_to_float(static_cast<std::uint16_t>(w[k] >> 16));
    }
  } else {
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = to_float(T{static_cast<std::uint16_t>(w[k] & 0xFFFFu)});
      v[2 * k + 1] = to_float(T{static_cast<std::uint16_t>(w[k] >> 16)});
    }
  }
}

template <class T>
__device__ __forceinline__ unsigned raw_bits(T v) {
  if constexpr (sizeof(T) == 4) {
    return __float_as_uint(v);
  } else {
    return v.bits;
  }
}

/// Stores 16 bytes of T values (4 floats or 8 16-bit values) at p (16-byte aligned): the general
/// dequantize_kernel's output, one lane's group at a time, so strided across a warp
/// (store_vector_strided; the streaming kernel is what runs wherever the layout allows).
template <class T>
__device__ __forceinline__ void store16(T* p, const T* v) {
  uint4 raw;
  unsigned w[4];
  if constexpr (sizeof(T) == 4) {
    for (int k = 0; k < 4; ++k) w[k] = raw_bits(v[k]);
  } else {
    for (int k = 0; k < 4; ++k) w[k] = raw_bits(v[2 * k]) | (raw_bits(v[2 * k + 1]) << 16);
  }
  raw.x = w[0];
  raw.y = w[1];
  raw.z = w[2];
  raw.w = w[3];
  store_vector_strided(p, raw);
}

__device__ __forceinline__ bool is_aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

// ---- kernels ---------------------------------------------------------------------------------

/// Pass 1: block statistics. CTA `cta` reduces chunk `cta % chunks` of block `cta / chunks`.
/// stats holds, per block, the float32 bits of max |x|, max(x, 0) and max(-x, 0); NaN is skipped.
template <class T>
__global__ void stats_kernel(const T* x, std::int64_t n, std::int64_t bs, std::int64_t chunks, unsigned* stats,
                             unsigned long long* first_bad, bool record) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  using reduce = block_max<threads_per_block>;
  LOWBIT_SHARED(typename reduce::temp_storage, tmp);
  const std::int64_t cta = blockIdx.x;
  const std::int64_t b = cta / chunks, c = cta % chunks;
  const std::int64_t block_end = (b + 1) * bs < n ? (b + 1) * bs : n;
  const std::int64_t e0 = b * bs + c * stats_chunk;
  const std::int64_t e1 = e0 + stats_chunk < block_end ? e0 + stats_chunk : block_end;
  float amax = 0.0f, hi = 0.0f, neg = 0.0f;
  unsigned long long bad = no_bad_index;
  auto add = [&](float v, std::int64_t i) {
    if (!((__float_as_uint(v) & 0x7F800000u) != 0x7F800000u)) {
      if (static_cast<unsigned long long>(i) < bad) bad = static_cast<unsigned long long>(i);
      if (v != v) return;
    }
    const float a = v < 0.0f ? -v : v;
    amax = a > amax ? a : amax;
    hi = v > hi ? v : hi;
    neg = -v > neg ? -v : neg;
  };
  constexpr int per16 = 16 / static_cast<int>(sizeof(T));
  // scalar head up to a 16-byte boundary, 128-bit body, scalar tail
  std::int64_t head = e0;
  while (head < e1 && !is_aligned16(x + head)) ++head;
  const std::int64_t body = head + (e1 - head) / per16 * per16;
  for (std::int64_t i = e0 + threadIdx.x; i < head; i += blockDim.x) add(load_float(x + i), i);
  for (std::int64_t i = head + static_cast<std::int64_t>(threadIdx.x) * per16; i < body; i += static_cast<std::int64_t>(blockDim.x) * per16) {
    float v[per16];
    load16(x + i, v);
    for (int k = 0; k < per16; ++k) add(v[k], i + k);
  }
  for (std::int64_t i = body + threadIdx.x; i < e1; i += blockDim.x) add(load_float(x + i), i);
  if (record && bad != no_bad_index) record_nonfinite(first_bad, static_cast<std::int64_t>(bad));
  amax = reduce::reduce(tmp, amax);
  __syncthreads();
  hi = reduce::reduce(tmp, hi);
  __syncthreads();
  neg = reduce::reduce(tmp, neg);
  if (threadIdx.x == 0) {
    atomicMax(stats + 3 * b, __float_as_uint(amax));
    atomicMax(stats + 3 * b + 1, __float_as_uint(hi));
    atomicMax(stats + 3 * b + 2, __float_as_uint(neg));
  }
}

/// Pass 2: per block, the stored scale (to `scales`), the zero point and the encoder.
template <format F>
__global__ void finalize_kernel(const unsigned* stats, std::int64_t nblocks, const unsigned long long* first_bad,
                                bool allow_nonfinite, float* scales, std::uint8_t* zero_points, packed_encoder* enc) {
  const std::int64_t b = global_thread();
  if (b >= nblocks) return;
  if (!allow_nonfinite && *first_bad != 0ull) return;
  quant::block_stats st;
  st.absmax = __uint_as_float(stats[3 * b]);
  st.hi = __uint_as_float(stats[3 * b + 1]);
  const unsigned neg = stats[3 * b + 2];
  st.lo = neg == 0u ? 0.0f : -__uint_as_float(neg);
  const quant::block_encoder e = quant::make_encoder<F>(st, quant::int8_multiplier::quotient, call_free_div{});
  scales[b] = e.scale;
  if constexpr (info(F).zero_point) zero_points[b] = static_cast<std::uint8_t>(e.zero_point);
  enc[b] = packed_encoder{e.inv, e.zero_point, e.zero ? 1 : 0, 0};
}

/// Pass 3: thread g encodes elements [g * G, g * G + G) into the 16 code bytes at codes + 16 g,
/// G = 16 (8-bit) or 32 (4-bit). Each element uses its own block's encoder.
template <format F, class T>
__global__ void encode_kernel(const T* x, std::int64_t n, std::int64_t bs, const packed_encoder* enc,
                              const unsigned long long* first_bad, bool allow_nonfinite, std::uint8_t* codes) {
  constexpr bool four = info(F).bits == 4;
  constexpr int G = four ? 2 * group_bytes : group_bytes;
  constexpr int per16 = 16 / static_cast<int>(sizeof(T));
  if (!allow_nonfinite && *first_bad != 0ull) return;
  const std::int64_t g = global_thread();
  const std::int64_t e0 = g * G;
  if (e0 >= n) return;
  const int count = n - e0 < G ? static_cast<int>(n - e0) : G;
  float v[G];
  if (count == G && is_aligned16(x + e0)) {
    LOWBIT_UNROLL
    for (int k = 0; k < G; k += per16) load16(x + e0 + k, v + k);
  } else {
    LOWBIT_UNROLL
    for (int k = 0; k < G; ++k) v[k] = k < count ? load_float(x + e0 + k) : 0.0f;
  }
  std::int64_t b = e0 / bs;
  std::int64_t next = (b + 1) * bs;
  packed_encoder pe = enc[b];
  quant::block_encoder e{0.0f, pe.inv, pe.zero_point, pe.zero != 0};
  std::uint8_t q[G];
  LOWBIT_UNROLL
  for (int k = 0; k < G; ++k) {
    if (k < count) {
      if (e0 + k >= next) {
        b = (e0 + k) / bs;
        next = (b + 1) * bs;
        pe = enc[b];
        e = quant::block_encoder{0.0f, pe.inv, pe.zero_point, pe.zero != 0};
      }
      q[k] = quant::encode_element<F>(v[k], e);
    } else {
      // an odd-sized tensor pads its last byte with the code of 0.0 in the last element's block
      q[k] = (four && k == count) ? quant::encode_element<F>(0.0f, e) : std::uint8_t{0};
    }
  }
  std::uint8_t out[group_bytes];
  const int nbytes = four ? (count + 1) / 2 : count;
  LOWBIT_UNROLL
  for (int j = 0; j < group_bytes; ++j) {
    out[j] = four ? codecs::pack_nibbles<info(F).order>(q[2 * j], q[2 * j + 1]) : q[j];
  }
  std::uint8_t* dst = codes + g * group_bytes;
  if (nbytes == group_bytes && is_aligned16(dst)) {
    uint4 raw;
    std::memcpy(&raw, out, 16);
    store_vector(dst, raw);
  } else {
    LOWBIT_UNROLL
    for (int j = 0; j < group_bytes; ++j) {
      if (j < nbytes) dst[j] = out[j];
    }
  }
}

/// Double quantization, step 1: partial sums (double, block order) of `offset_chunk` absmax values.
__global__ void offset_partials_kernel(const float* absmax, std::int64_t nblocks, double* partials) {
  const std::int64_t c = global_thread();
  const std::int64_t b0 = c * quant::offset_chunk;
  if (b0 >= nblocks) return;
  const std::int64_t b1 = b0 + quant::offset_chunk < nblocks ? b0 + quant::offset_chunk : nblocks;
  partials[c] = quant::offset_partial(absmax + b0, b1 - b0);
}

/// Double quantization, step 2 (one thread): the offset; the absmax values become absmax - offset.
__global__ void offset_kernel(const double* partials, std::int64_t nchunks, std::int64_t nblocks,
                              const unsigned long long* first_bad, bool allow_nonfinite, float* offset_out) {
  if (global_thread() != 0) return;
  if (!allow_nonfinite && *first_bad != 0ull) return;
  *offset_out = quant::offset_from_partials(partials, nchunks, nblocks);
}

__global__ void subtract_offset_kernel(float* absmax, std::int64_t nblocks, const float* offset) {
  const std::int64_t b = global_thread();
  if (b < nblocks) absmax[b] = absmax[b] - *offset;
}

/// Dequantization: thread g decodes the elements whose codes are the 16 bytes at codes + 16 g.
/// Decode tables live in shared memory (built-in, or the view's overrides).
template <format F, class T>
__global__ void dequantize_kernel(quant_view q, T* out) {
  constexpr bool four = info(F).bits == 4;
  constexpr int G = four ? 2 * group_bytes : group_bytes;
  constexpr int per16 = 16 / static_cast<int>(sizeof(T));
  LOWBIT_SHARED(float[256], table);
  LOWBIT_SHARED(float[256], nested_table);
  for (int c = static_cast<int>(threadIdx.x); c < 256; c += static_cast<int>(blockDim.x)) {
    const int k = four ? (c & 15) : c;
    table[c] = q.code_table ? q.code_table[k] : quant::decode_table<F>(static_cast<std::uint8_t>(k));
    nested_table[c] = q.nested_code_table ? q.nested_code_table[c] : codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(c));
  }
  __syncthreads();
  const std::int64_t g = global_thread();
  const std::int64_t e0 = g * G;
  if (e0 >= q.numel) return;
  const int count = q.numel - e0 < G ? static_cast<int>(q.numel - e0) : G;
  const float offset = q.nested_offset_device ? *q.nested_offset_device : q.nested_offset;
  std::uint8_t bytes[group_bytes];
  const std::uint8_t* src = q.codes + g * group_bytes;
  const int nbytes = four ? (count + 1) / 2 : count;
  if (nbytes == group_bytes && is_aligned16(src)) {
    const uint4 raw = load_vector<uint4>(src);
    std::memcpy(bytes, &raw, 16);
  } else {
    LOWBIT_UNROLL
    for (int j = 0; j < group_bytes; ++j) bytes[j] = j < nbytes ? src[j] : std::uint8_t{0};
  }
  std::int64_t b = -1, next = 0;
  float scale = 0.0f;
  int zp = 0;
  T y[G];
  LOWBIT_UNROLL
  for (int k = 0; k < G; ++k) {
    if (k >= count) break;
    if (e0 + k >= next) {
      b = (e0 + k) / q.block_size;
      next = (b + 1) * q.block_size;
      scale = q.nested() ? quant::nested_scale(nested_table[q.nested_codes[b]],
                                               q.nested_scales[b / quant::nested_block_size], offset)
                         : q.scales[b];
      zp = info(F).zero_point ? q.zero_points[b] : 0;
    }
    const std::uint8_t c = four ? codecs::unpack_nibble<info(F).order>(bytes[k / 2], k & 1) : bytes[k];
    y[k] = from_float<T>(quant::decode_element<F>(table[c], scale, zp));
  }
  T* dst = out + e0;
  if (count == G && is_aligned16(dst)) {
    LOWBIT_UNROLL
    for (int k = 0; k < G; k += per16) store16(dst + k, y + k);
  } else {
    LOWBIT_UNROLL
    for (int k = 0; k < G; ++k) {
      if (k < count) dst[k] = y[k];
    }
  }
}

/// Elements of one unit of the streaming dequantizer: the 16 output bytes a lane writes with one
/// 128-bit store (4 float32 or 8 16-bit values).
template <class T>
inline constexpr int unit_elements = 16 / static_cast<int>(sizeof(T));
/// Units a lane decodes per iteration of the streaming dequantizer (in flight at once).
inline constexpr int stream_unroll = 4;
/// CTAs of the streaming dequantizer at most: 148 SMs (B200) x 8 resident CTAs of 256 threads; each
/// fills its decode tables once and then loops over the tensor.
inline constexpr std::int64_t stream_max_ctas = 148 * 8;

/// The code bytes of one unit: unit_elements<T> codes of `Bits` bits, loaded with one access.
template <int Bytes>
struct code_word;
template <>
struct code_word<2> {
  using type = unsigned short;
};
template <>
struct code_word<4> {
  using type = unsigned;
};
template <>
struct code_word<8> {
  using type = uint2;
};

/// The 2 or 4 32-bit words of `v` (8 bytes of codes as two words).
__device__ __forceinline__ unsigned code_bits(unsigned short v, int) { return v; }
__device__ __forceinline__ unsigned code_bits(unsigned v, int) { return v; }
__device__ __forceinline__ unsigned code_bits(uint2 v, int w) { return w == 0 ? v.x : v.y; }

/// Two decoded values as the 32 bits of two T (T = f16 / bf16) or, for float, stored by the caller.
template <class T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  if constexpr (std::is_same<T, bf16>::value) {
    return pack_rn_bf16x2(hi, lo);
  } else {
    return pack_rn_f16x2(hi, lo);
  }
}

/// Stores one unit's E = unit_elements<T> values at dst, 16 bytes: 4 float32, or 8 16-bit values
/// packed in pairs by cvt.rn.{bf16,f16}x2 (pack2, the host's rounding bit for bit).
template <class T>
__device__ __forceinline__ void store_unit(const float* y, uint4* dst LOWBIT_CALLER_SITE_) {
  uint4 raw;
  if constexpr (sizeof(T) == 4) {
    raw = make_uint4(__float_as_uint(y[0]), __float_as_uint(y[1]), __float_as_uint(y[2]), __float_as_uint(y[3]));
  } else {
    raw = make_uint4(pack2<T>(y[0], y[1]), pack2<T>(y[2], y[3]), pack2<T>(y[4], y[5]), pack2<T>(y[6], y[7]));
  }
#if LOWBIT_SIMT
  store_vector(dst, raw, file, line);
#else
  store_vector(dst, raw);
#endif
}

/// Decode tables of the streaming dequantizer: for 4-bit formats the two values of every code
/// byte (element 2j, element 2j + 1), for 8-bit formats the value of every code.
template <format F>
using stream_table_entry = std::conditional_t<info(F).bits == 4, float2, float>;

/// Fills the decode tables of a CTA (every thread of the CTA calls it; a barrier must follow):
/// `table` with the values of every code byte (4-bit formats: element 2j and 2j + 1, in the
/// format's nibble order) from the view's code_table or the built-in one, and `nested_table`, when
/// the view is double-quantized, with the nested codes' values.
template <format F>
__device__ __forceinline__ void fill_stream_tables(const quant_view& q, stream_table_entry<F>* table, float* nested_table) {
  for (int c = static_cast<int>(threadIdx.x); c < 256; c += static_cast<int>(blockDim.x)) {
    if constexpr (info(F).bits == 4) {
      const int k0 = codecs::unpack_nibble<info(F).order>(static_cast<std::uint8_t>(c), 0);
      const int k1 = codecs::unpack_nibble<info(F).order>(static_cast<std::uint8_t>(c), 1);
      table[c] = q.code_table ? make_float2(q.code_table[k0], q.code_table[k1])
                              : make_float2(quant::decode_table<F>(static_cast<std::uint8_t>(k0)),
                                            quant::decode_table<F>(static_cast<std::uint8_t>(k1)));
    } else {
      table[c] = q.code_table ? q.code_table[c] : quant::decode_table<F>(static_cast<std::uint8_t>(c));
    }
    if (q.nested())
      nested_table[c] = q.nested_code_table ? q.nested_code_table[c] : codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(c));
  }
}

/// The stored scale of block `b` (32-bit index: the launcher bounds the block count).
__device__ __forceinline__ float stream_block_scale(const quant_view& q, unsigned b, const float* nested_table, float offset) {
  return q.nested() ? quant::nested_scale(nested_table[q.nested_codes[b]], q.nested_scales[b / quant::nested_block_size], offset)
                    : q.scales[b];
}

/// Decodes the E elements of one unit, of one block, from their code word into the 16 bytes at dst.
template <format F, class T, class W>
__device__ __forceinline__ void stream_unit(const W& word, float scale, int zp, const stream_table_entry<F>* table, uint4* dst) {
  constexpr int E = unit_elements<T>;
  float y[E];
  if constexpr (info(F).bits == 4) {
    LOWBIT_UNROLL
    for (int j = 0; j < E / 2; ++j) {
      const float2 pair = table[(code_bits(word, j / 4) >> (8 * (j % 4))) & 0xFFu];
      y[2 * j] = quant::decode_element<F>(pair.x, scale, zp);
      y[2 * j + 1] = quant::decode_element<F>(pair.y, scale, zp);
    }
  } else {
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) y[j] = quant::decode_element<F>(table[(code_bits(word, j / 4) >> (8 * (j % 4))) & 0xFFu], scale, zp);
  }
  store_unit<T>(y, dst);
}

/// Streaming dequantization of tensors whose output is 16-byte aligned, whose code bytes are
/// aligned to a unit's code word and whose blocks are 2^block_shift >= E elements (every unit lies
/// in one block, so it takes one scale). `units` = numel / E < 2^31. Each CTA fills its tables once;
/// warp w then decodes, per iteration, units [c 32 U, c 32 U + 32 U) of chunks c = w, w + warps, ...,
/// lane l unit c 32 U + 32 k + l for k < U: every warp-wide load and store covers contiguous bytes.
/// The units after the last whole chunk go one per thread, the last numel % E elements to one thread.
/// At least 6 resident CTAs per SM (75% occupancy on sm_80/90/100: at most 40 registers); sm_75
/// holds 1024 threads per SM, so 4 CTAs are its whole capacity.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#  define LOWBIT_STREAM_MIN_CTAS_ 4
#else
#  define LOWBIT_STREAM_MIN_CTAS_ 6
#endif
template <format F, class T>
__global__ void __launch_bounds__(threads_per_block, LOWBIT_STREAM_MIN_CTAS_) dequantize_stream_kernel(quant_view q, T* out, unsigned units, unsigned block_shift) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr bool four = info(F).bits == 4;
  constexpr int E = unit_elements<T>;
  constexpr int CB = E * info(F).bits / 8;
  constexpr int U = stream_unroll;
  using word_t = typename code_word<CB>::type;
  LOWBIT_SHARED(stream_table_entry<F>[256], table);
  LOWBIT_SHARED(float[256], nested_table);
  fill_stream_tables<F>(q, table, nested_table);
  __syncthreads();
  const float offset = q.nested() ? (q.nested_offset_device ? *q.nested_offset_device : q.nested_offset) : 0.0f;
  const unsigned unit_shift = block_shift - (E == 4 ? 2u : 3u);  // units per block = 2^unit_shift
  const unsigned lane = threadIdx.x & 31u;
  const unsigned thread = blockIdx.x * static_cast<unsigned>(threads_per_block) + threadIdx.x;
  const unsigned threads = gridDim.x * static_cast<unsigned>(threads_per_block);
  const unsigned chunks = units / (32u * U);
  const auto* words = reinterpret_cast<const word_t*>(q.codes);
  auto* vout = reinterpret_cast<uint4*>(out);  // unit u: vout[u] (the element index u E may pass 2^32)
  for (unsigned c = thread / 32u; c < chunks; c += threads / 32u) {
    const unsigned u0 = c * (32u * U) + lane;
    word_t w[U];
    float scale[U];
    int zp[U];
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) w[k] = load_vector<word_t>(words + u0 + 32u * k);
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) {
      const unsigned b = (u0 + 32u * k) >> unit_shift;
      scale[k] = stream_block_scale(q, b, nested_table, offset);
      zp[k] = info(F).zero_point ? q.zero_points[b] : 0;
    }
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) stream_unit<F, T>(w[k], scale[k], zp[k], table, vout + u0 + 32u * k);
  }
  for (unsigned u = chunks * (32u * U) + thread; u < units; u += threads) {
    const unsigned b = u >> unit_shift;
    stream_unit<F, T>(load_vector<word_t>(words + u), stream_block_scale(q, b, nested_table, offset),
                      info(F).zero_point ? q.zero_points[b] : 0, table, vout + u);
  }
  // the last numel % E elements, element by element
  if (thread == 0) {
    for (std::int64_t e = static_cast<std::int64_t>(units) * E; e < q.numel; ++e) {
      const unsigned b = static_cast<unsigned>(e >> block_shift);
      const std::uint8_t byte = q.codes[four ? e / 2 : e];
      float v;
      if constexpr (four) {
        const float2 pair = table[byte];
        v = (e & 1) ? pair.y : pair.x;
      } else {
        v = table[byte];
      }
      out[e] = from_float<T>(quant::decode_element<F>(v, stream_block_scale(q, b, nested_table, offset),
                                                      info(F).zero_point ? q.zero_points[b] : 0));
    }
  }
}

// ---- one-pass quantizer ------------------------------------------------------------------------

/// Units (16 input bytes: 4 float32 or 8 16-bit elements) a lane of the one-pass quantizer holds
/// per iteration: 4 float32 or 2 16-bit units, 16 floats either way, so a warp's chunk is 32 x that
/// = 512 elements and a CTA's 4096 elements for every dtype.
template <class T>
inline constexpr int quant_unroll = sizeof(T) == 4 ? 4 : 2;
/// Elements of one CTA iteration of the one-pass quantizer (= the largest block it takes).
inline constexpr int quant_chunk_elements = 4096;
/// Largest block the one-pass quantizer reduces within a warp (no shared memory, no barrier).
inline constexpr int quant_warp_elements = 512;

/// One cell of the one-pass quantizer's 4-bit codebook encoder (codebook_encode): the code of
/// every x in the cell is `below` if x <= threshold and `above` if x > threshold.
struct codebook_cell {
  float threshold;  ///< the one decision threshold inside the cell, or +Inf
  unsigned codes;   ///< below | above << 8
};
/// Cells of codebook_encode: 128 cells of width 1/32 over x in [-2, 2).
inline constexpr int codebook_cells = 128;

/// Cell `m` of format F (nf4: x = x̂; bnb_fp4: x = |x̂|, the magnitude): the x with
/// rn(256 x + 512) in [8 m, 8 m + 7], i.e. x in [(8 m - 512.5) / 256, (8 m - 504.5) / 256]. The
/// decision thresholds are at least 0.08 apart, more than a cell's width (1/32 + 1/256), so a cell
/// holds at most one (StreamingQuantizeCells checks every cell against the codec).
template <format F>
__device__ __forceinline__ codebook_cell make_codebook_cell(int m) {
  using codec = typename quant::scheme<F>::codec;
  constexpr int count = F == format::nf4 ? 15 : 7;
  const float lo = (8.0f * static_cast<float>(m) - 512.5f) / 256.0f, hi = (8.0f * static_cast<float>(m) - 504.5f) / 256.0f;
  int below = 0;
  float t = __int_as_float(0x7F800000);
  for (int i = 0; i < count; ++i) {
    const float ti = codec::threshold(i);
    if (ti < lo) ++below;
    else if (ti <= hi) t = ti;
  }
  if constexpr (F == format::nf4) {
    return codebook_cell{t, static_cast<unsigned>(below) | static_cast<unsigned>(below + 1) << 8};
  } else {
    const unsigned lo_code = LOWBIT_TABLE(codecs::detail::bnb_fp4_rank_to_code)[below];
    const unsigned hi_code = LOWBIT_TABLE(codecs::detail::bnb_fp4_rank_to_code)[below < count ? below + 1 : below];
    return codebook_cell{t, lo_code | hi_code << 8};
  }
}

/// The cell of x in [-2, 2): byte offset (bits of rn(256 x + 512 + 1.5 * 2^23)) & 0x3F8 of the
/// 8-byte cells, one FFMA and one LOP3 (the sum's low 10 bits are rn(256 x + 512)).
__device__ __forceinline__ const codebook_cell& cell_of(float x, const codebook_cell* cells) {
  constexpr float magic = 12582912.0f + 512.0f;
  return *reinterpret_cast<const codebook_cell*>(reinterpret_cast<const unsigned char*>(cells) +
                                                 (__float_as_uint(__fmaf_rn(x, 256.0f, magic)) & 0x3F8u));
}

/// The codec's code of xhat (= f32(x * inv)) for nf4 and bnb_fp4, from the cell table: bit for bit
/// codec::encode(xhat) for every xhat in [-2, 1.98] and NaN (which covers every value the quantizer
/// forms: |x| <= absmax, so |xhat| <= 1 + 2^-22), in about 8 instructions instead of a 4-level search.
template <format F>
__device__ __forceinline__ unsigned codebook_encode(float xhat, const codebook_cell* cells) {
  if constexpr (F == format::nf4) {
    const float x = fmaxf(xhat, -2.0f);  // NaN -> -2 (code 0, as the codec's comparisons give)
    const codebook_cell c = cell_of(x, cells);
    return x > c.threshold ? c.codes >> 8 : c.codes & 0xFFu;
  } else {
    const float a = fmaxf(fabsf(xhat), 0.0f);  // NaN -> 0 (rank 0, sign 0: code 0)
    const codebook_cell c = cell_of(a, cells);
    return (a > c.threshold ? c.codes >> 8 : c.codes & 0xFFu) | (xhat < 0.0f ? 8u : 0u);
  }
}

/// bnb_dynamic8's cells (dyn8_encode): 64 per binade of |x| (the exponent and the top 6 mantissa
/// bits of x, |x| clamped to [2^-22, 2)), 23 binades for each sign, the negative ones after the
/// positive ones. Its 255 decision thresholds are dense near 1 (about 0.014 apart) and sparse
/// near 0 (the smallest, +-2.75e-7, lies in the binade of 2^-22), so that each cell holds at most one
/// (StreamingQuantizeCells checks every cell against the codec).
inline constexpr unsigned dyn8_cells_per_sign = 23u * 64u;
inline constexpr int dyn8_cells = 2 * static_cast<int>(dyn8_cells_per_sign);
/// |bits of x| >> 17 at x = 2^-22: the first cell's key.
inline constexpr unsigned dyn8_first_key = (127u - 22u) << 6;

/// The cell of x for dyn8_encode (see dyn8_cells_per_sign): SHF, LOP3 and two IMNMX for the key,
/// one more for the sign.
__device__ __forceinline__ unsigned dyn8_cell_of(float x) {
  const unsigned u = __float_as_uint(x);
  unsigned key = (u & 0x7FFFFFFFu) >> 17;
  key = key > dyn8_first_key ? key : dyn8_first_key;
  key = key < dyn8_first_key + dyn8_cells_per_sign - 1u ? key : dyn8_first_key + dyn8_cells_per_sign - 1u;
  return key - dyn8_first_key + ((u >> 31) != 0u ? dyn8_cells_per_sign : 0u);
}

/// bnb_dynamic8's decision threshold k (0 <= k < 255) between codes k and k + 1: the codec's search
/// (codecs::detail::bnb_dynamic8_search) ends at an even pivot next to x, compares x with the
/// float32 midpoint of the two values and sends a tie to that even code. So x gets code k + 1 iff
/// x > mid for even k, x >= mid for odd k: the threshold is then the float just below mid (mid is
/// never 0).
__device__ __forceinline__ float dyn8_threshold(int k) {
  using codec = codecs::bnb_dynamic8;
  const float mid = lowbit::detail::mul_rn(
      lowbit::detail::add_rn(codec::decode(static_cast<std::uint8_t>(k)), codec::decode(static_cast<std::uint8_t>(k + 1))), 0.5f);
  const unsigned b = __float_as_uint(mid);
  return (k & 1) == 0 ? mid : __uint_as_float(mid < 0.0f ? b + 1u : b - 1u);
}

/// Cell m of dyn8_encode from the 255 ascending thresholds: `below` = the code of the cell's
/// smallest x (the number of thresholds under it, by binary search), and the cell's threshold if
/// the next one lies below its largest x.
__device__ __forceinline__ codebook_cell make_dyn8_cell(int m, const float* thresholds) {
  const bool neg = m >= static_cast<int>(dyn8_cells_per_sign);
  const unsigned j = static_cast<unsigned>(m) - (neg ? dyn8_cells_per_sign : 0u);
  // magnitudes of the cell: from (first + j) << 17 (0 for the first cell, which takes everything
  // below) to the float before (first + j + 1) << 17 (+Inf for the last, which takes everything above)
  const float lo = j == 0u ? 0.0f : __uint_as_float((dyn8_first_key + j) << 17);
  const float hi = j == dyn8_cells_per_sign - 1u ? __uint_as_float(0x7F800000u) : __uint_as_float(((dyn8_first_key + j + 1u) << 17) - 1u);
  const float a = neg ? -hi : lo, b = neg ? -lo : hi;  // the cell's smallest and largest x
  int below = 0;
  for (int step = 128; step > 0; step >>= 1) {
    if (below + step <= 255 && a > thresholds[below + step - 1]) below += step;
  }
  if (below < 255 && thresholds[below] < b) {
    return codebook_cell{thresholds[below], static_cast<unsigned>(below) | static_cast<unsigned>(below + 1) << 8};
  }
  return codebook_cell{__uint_as_float(0x7F800000u), static_cast<unsigned>(below) * 0x101u};
}

/// codecs::bnb_dynamic8::encode(xhat) bit for bit for every float32 xhat but a signaling NaN (quiet
/// NaNs included; no product x * inv is a signaling NaN), from the cell table: FMNMX, the cell (5),
/// LDS.64, FSETP, SEL instead of an 8-level search.
__device__ __forceinline__ unsigned dyn8_encode(float xhat, const codebook_cell* cells) {
  const float x = fmaxf(xhat, -2.0f);  // NaN -> -2 (code 0, as the codec's comparisons give)
  const codebook_cell c = cells[dyn8_cell_of(x)];
  return x > c.threshold ? c.codes >> 8 : c.codes & 0xFFu;
}

/// Formats whose one-pass encoder uses codebook cells (codebook_encode, dyn8_encode), and how many.
template <format F>
inline constexpr bool uses_cells = F == format::nf4 || F == format::bnb_fp4 || F == format::bnb_dynamic8;
template <format F>
inline constexpr int cell_count = F == format::bnb_dynamic8 ? dyn8_cells : uses_cells<F> ? codebook_cells : 1;

/// Fills the CTA's cell table of format F (every thread calls it; it ends with a barrier).
template <format F>
__device__ __forceinline__ void fill_cells(codebook_cell* cells, float* thresholds) {
  if constexpr (F == format::bnb_dynamic8) {
    if (threadIdx.x < 255u) thresholds[threadIdx.x] = dyn8_threshold(static_cast<int>(threadIdx.x));
    __syncthreads();
    for (int m = static_cast<int>(threadIdx.x); m < dyn8_cells; m += threads_per_block) cells[m] = make_dyn8_cell(m, thresholds);
  } else {
    if (threadIdx.x < static_cast<unsigned>(codebook_cells)) cells[threadIdx.x] = make_codebook_cell<F>(static_cast<int>(threadIdx.x));
  }
  __syncthreads();
}

/// Formats whose one-pass encoder rounds x̂ = f32(x * inv) with the 8-bit float conversion of
/// pack_rn_satfinite_e4m3x2 / pack_rn_satfinite_e5m2x2 where it is one instruction per two
/// elements (sm_89 on, and the executor, which emulates it); before sm_89 the kernel keeps the
/// codec (quant::encode_element), as the general path does. The conversion gives the codec's encode<nearest_even, saturate> for every x̂ the quantizer forms:
/// every non-NaN float32 is covered (|x̂| <= max (1 + 2^-22) saturates alike, subnormal x̂ of a block
/// with a huge absmax round to a zero of their sign alike), and the NaN x̂ of allow_nonfinite input
/// (a NaN element, or an Inf one times inv = max / Inf = 0) is the canonical NaN on the GPU, 0x7F.
template <format F>
inline constexpr bool uses_f8_cvt = (F == format::e4m3fn || F == format::e5m2) && LOWBIT_HW_CVT_FP8;

/// The codes of x̂ `hi` and `lo` of format F (uses_f8_cvt), packed {hi in bits 15..8, lo in 7..0}.
template <format F>
__device__ __forceinline__ unsigned f8x2_encode(float hi, float lo) {
  if constexpr (F == format::e4m3fn) {
    return pack_rn_satfinite_e4m3x2(hi, lo);
  } else {
    return pack_rn_satfinite_e5m2x2(hi, lo);
  }
}

/// The code of x̂ in a signed minifloat with E exponent bits, M mantissa bits, bias `Bias`,
/// subnormals and no Inf or NaN (the kernels use it for OCP e3m2fn; e2m1fn and e2m3fn take the
/// cheaper e2_minifloat_encode): Codec::encode<nearest_even, saturate> bit for bit for every
/// float32 (kernels_ptx_exhaustive_test checks all 2^32 for e3m2fn, with NVIDIA's
/// __nv_cvt_float_to_fp6), in about 14 integer and float
/// instructions instead of the codec's normalization and rounding (no conversion instruction
/// exists on lowbit's targets: cvt.rn.satfinite.{e2m1x2,e2m3x2,e3m2x2}.f32 are for arch-specific
/// sm_100a/sm_120a-style targets only). Below the smallest normal 2^(1 - Bias) the grid is the
/// subnormal quantum 2^(1 - Bias - M), so |x̂| rounds as rn(|x̂| / quantum) (one FFMA with
/// 1.5 * 2^23 adds it to an integer's bits: codes 0 .. 2^M, the last being the smallest normal's);
/// from there on it has M mantissa bits, so the float's bits are rounded to nearest even at bit
/// 23 - M and the exponent and mantissa fields are the code (e2m1: 1.0 -> 0x3F8 >> 1 = 0xFE -> 2),
/// clamped to the largest code (saturation; +-Inf and NaN, to which the codecs also give it). The
/// sign is the input's but for a NaN (the codecs' NaN code has none): -0 and negatives that round
/// to 0 give the sign bit alone.
template <int E, int M, int Bias>
__device__ __forceinline__ unsigned finite_minifloat_encode(float xhat) {
  constexpr unsigned max_code = (1u << (E + M)) - 1u;
  constexpr unsigned smallest_normal = static_cast<unsigned>(127 + 1 - Bias) << 23;
  constexpr float inv_quantum = static_cast<float>(1u << (Bias + M - 1));
  constexpr int shift = 23 - M;
  const unsigned u = __float_as_uint(xhat);
  const unsigned a = u & 0x7FFFFFFFu;
  const unsigned small = __float_as_uint(__fmaf_rn(__uint_as_float(a), inv_quantum, 12582912.0f)) & ((2u << M) - 1u);
  unsigned big = ((a + ((1u << (shift - 1)) - 1u) + ((a >> shift) & 1u)) >> shift) - (static_cast<unsigned>(127 - Bias) << M);
  big = big < max_code ? big : max_code;
  return (a < smallest_normal ? small : big) | ((u >> 31) != 0u && a <= 0x7F800000u ? max_code + 1u : 0u);
}

/// The code of x̂ in a signed minifloat with 2 exponent bits, M mantissa bits and bias 1 (OCP
/// e2m1fn, e2m3fn): what finite_minifloat_encode<2, M, 1> gives (Codec::encode<nearest_even,
/// saturate>, kernels_ptx_exhaustive_test checks all 2^32 floats against it and NVIDIA's
/// conversions), in about 9 float instructions instead of about 14. Such a format has three
/// grids on a = |x̂|: steps of 2^-M up to 2 (codes 0 .. 2^(M+1) = rn(2^M a)), of 2^(1-M) up to 4
/// (rn(2^(M-1) a) + 2^M), of 2^(2-M) up to the largest value (rn(2^(M-2) a) + 2^(M+1)), each
/// rounding to nearest even as the code does (even codes have even mantissas). Each candidate is
/// one FFMA adding 1.5 * 2^23 (+ its offset), which rounds the product to an integer in the low
/// bits, and the right one is their minimum: f1 <= f2 exactly when a <= 2, f2 <= f3 when a <= 4,
/// f1 <= f3 when a <= 8 / 3, and rounding keeps those orders. A last minimum with the largest
/// code saturates (and takes NaN, whose FFMAs are NaN and which fminf passes over, to it as the
/// codecs do). The sign is x̂'s but for NaN: as a signed integer, x̂'s bits are at most those of
/// -Inf exactly for -0, the negatives and -Inf (one comparison; fminf(x̂, 0) would keep a
/// signaling NaN's sign on the host, whose fminf quiets it first).
template <int M>
__device__ __forceinline__ unsigned e2_minifloat_encode(float xhat) {
  constexpr float magic = 12582912.0f;  // 1.5 * 2^23: integers n in [0, 2^22) in its low bits
  constexpr float s = static_cast<float>(1 << M);
  constexpr unsigned max_code = (4u << M) - 1u;
  const float a = fabsf(xhat);
  // (e2m1's middle grid has step 1: an FADD, whose immediate needs no register; nvcc does not turn
  // __fmaf_rn(a, 1, c) into one)
  const float f2 = M == 1 ? __fadd_rn(a, magic + s) : __fmaf_rn(a, s / 2.0f, magic + s);
  const float f1 = __fmaf_rn(a, s, magic), f3 = __fmaf_rn(a, s / 4.0f, magic + 2.0f * s);
  const float m = fminf(fminf(fminf(f1, f2), f3), magic + static_cast<float>(max_code));
  return (__float_as_uint(m) & max_code) | (static_cast<int>(__float_as_uint(xhat)) <= -0x800000 ? max_code + 1u : 0u);  // -0x800000: -Inf
}

/// e2m1fn's code of x̂ (e2_minifloat_encode): codecs::e2m1fn::encode<nearest_even, saturate>.
__device__ __forceinline__ unsigned e2m1_encode(float xhat) { return e2_minifloat_encode<1>(xhat); }

/// Code of element v under encoder e, as quant::encode_element<F> (the cell table for nf4/bnb_fp4
/// and bnb_dynamic8, the 8-bit float conversion for e4m3fn/e5m2, e2m1_encode for e2m1fn).
template <format F>
__device__ __forceinline__ unsigned stream_encode(float v, const quant::block_encoder& e, const codebook_cell* cells) {
  if constexpr (F == format::bnb_dynamic8) {
    return e.zero ? quant::scheme<F>::zero_code : dyn8_encode(lowbit::detail::mul_rn(v, e.inv), cells);
  } else if constexpr (uses_cells<F>) {
    return e.zero ? quant::scheme<F>::zero_code : codebook_encode<F>(lowbit::detail::mul_rn(v, e.inv), cells);
  } else if constexpr (uses_f8_cvt<F>) {
    return e.zero ? quant::scheme<F>::zero_code : f8x2_encode<F>(0.0f, lowbit::detail::mul_rn(v, e.inv)) & 0xFFu;
  } else if constexpr (F == format::e2m1fn) {
    return e.zero ? quant::scheme<F>::zero_code : e2m1_encode(lowbit::detail::mul_rn(v, e.inv));
  } else {
    return quant::encode_element<F>(v, e);
  }
}

/// Arguments of the one-pass quantizer.
struct quant_stream_args {
  std::uint8_t* codes = nullptr;
  float* scales = nullptr;               ///< per block: the stored scale, or absmax before double quantization
  std::uint8_t* zero_points = nullptr;   ///< uint8_zeropoint
  unsigned long long* flag = nullptr;    ///< ~(first non-finite index); 0 = none
  bool gated = false;                    ///< the finiteness scan ran: write nothing if it found one
  bool record = false;                   ///< record non-finite elements in `flag` (no scan ran)
  std::int64_t numel = 0;
  unsigned blocks = 0;
  unsigned block_shift = 0;              ///< block size 2^block_shift
  // double quantization of the outer tensor (Nested): offset partial sums as blocks complete
  unsigned* chunk_counts = nullptr;      ///< per offset chunk, blocks whose absmax is written
  unsigned* chunks_done = nullptr;       ///< offset chunks whose partial sum is written
  double* partials = nullptr;            ///< per offset chunk, quant::offset_partial
  float* offset = nullptr;               ///< quant::offset_from_partials, by the last chunk's finisher
  const float* subtract = nullptr;       ///< Sub: every input element is x - *subtract
};

/// `count` more blocks of offset chunk `oc` have their absmax written (and fenced) by the calling
/// thread's CTA or warp; the thread that completes the chunk forms its partial sum, and the one that
/// completes the last chunk the offset. Every sum reads in the fixed order of quant::offset_partial.
__device__ __forceinline__ void offset_chunk_done(const quant_stream_args& a, unsigned oc, unsigned count) {
  const unsigned nchunks = (a.blocks + static_cast<unsigned>(quant::offset_chunk) - 1) / static_cast<unsigned>(quant::offset_chunk);
  const unsigned first = oc * static_cast<unsigned>(quant::offset_chunk);
  const unsigned total = a.blocks - first < quant::offset_chunk ? a.blocks - first : static_cast<unsigned>(quant::offset_chunk);
  __threadfence();
  if (atomicAdd(a.chunk_counts + oc, count) + count != total) return;
  __threadfence();
  a.partials[oc] = quant::offset_partial(a.scales + first, total);
  __threadfence();
  if (atomicAdd(a.chunks_done, 1u) + 1u != nchunks) return;
  __threadfence();
  *a.offset = quant::offset_from_partials(a.partials, nchunks, a.blocks);
}

/// Records the first non-finite element of a lane's K units of E elements (unit u0 + 32 k), read
/// again from memory one at a time: the rare path of a lane that saw one, kept small (a rolled loop)
/// because the steady-state loop that holds it is costed instruction by instruction.
template <int K, int E, class T>
__device__ __forceinline__ void record_first_nonfinite(unsigned long long* flag, const T* x, unsigned u0) {
#if defined(__CUDACC__)
#  pragma unroll 1
#endif
  for (int i = 0; i < K * E; ++i) {
    const std::int64_t e = static_cast<std::int64_t>(u0 + 32u * static_cast<unsigned>(i / E)) * E + i % E;
    if (nonfinite(to_float(x[e]))) {
      record_nonfinite(flag, e);
      return;
    }
  }
}

/// quant::block_stats::add / merge as the one-pass quantizer needs them: formats without a zero
/// point read only absmax, kept as fmaxf(absmax, |x|) (one FMNMX; fmaxf skips NaN and |x| is never
/// -0, so the value is block_stats::add's); uint8_zeropoint keeps all three.
template <format F>
__device__ __forceinline__ void stats_add(quant::block_stats& s, float x) {
  if constexpr (info(F).zero_point) {
    s.add(x);
  } else {
    s.absmax = fmaxf(s.absmax, fabsf(x));
  }
}
template <format F>
__device__ __forceinline__ void stats_merge(quant::block_stats& s, const quant::block_stats& o) {
  if constexpr (info(F).zero_point) {
    s.merge(o);
  } else {
    s.absmax = fmaxf(s.absmax, o.absmax);
  }
}

/// Statistics of one block merged from another lane's (only what make_encoder<F> reads).
template <format F>
__device__ __forceinline__ void shfl_merge(quant::block_stats& s, unsigned mask) {
  quant::block_stats o;
  o.absmax = __shfl_xor_sync(0xFFFFFFFFu, s.absmax, mask);
  if constexpr (info(F).zero_point) {
    o.lo = __shfl_xor_sync(0xFFFFFFFFu, s.lo, mask);
    o.hi = __shfl_xor_sync(0xFFFFFFFFu, s.hi, mask);
  }
  stats_merge<F>(s, o);
}

/// The blocks of the tensor's last, partial CTA chunk: one warp per block, scalar loads; any block
/// size up to quant_chunk_elements, a partial last block, an odd element count.
template <format F, class T, bool Nested, bool Sub>
__device__ void quantize_tail(const T* x, const quant_stream_args& a, unsigned first_block, const codebook_cell* cells) {
  constexpr bool four = info(F).bits == 4;
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warps = gridDim.x * static_cast<unsigned>(threads_per_block / 32);
  const float sub = Sub ? *a.subtract : 0.0f;
  for (unsigned b = first_block + blockIdx.x * static_cast<unsigned>(threads_per_block / 32) + (threadIdx.x >> 5); b < a.blocks; b += warps) {
    const std::int64_t e0 = static_cast<std::int64_t>(b) << a.block_shift;
    const std::int64_t e1 = e0 + (std::int64_t{1} << a.block_shift) < a.numel ? e0 + (std::int64_t{1} << a.block_shift) : a.numel;
    quant::block_stats st;
    for (std::int64_t e = e0 + lane; e < e1; e += 32) {
      float v = to_float(x[e]);
      if (Sub) v = v - sub;
      if (a.record && nonfinite(v)) record_nonfinite(a.flag, e);
      stats_add<F>(st, v);
    }
    for (unsigned m = 16; m > 0; m >>= 1) shfl_merge<F>(st, m);
    const quant::block_encoder enc = quant::make_encoder<F>(st, quant::int8_multiplier::quotient, call_free_div{});
    if (lane == 0) {
      a.scales[b] = enc.scale;
      if constexpr (info(F).zero_point) a.zero_points[b] = static_cast<std::uint8_t>(enc.zero_point);
    }
    if constexpr (Nested) {
      __syncwarp();
      if (lane == 0) offset_chunk_done(a, b / static_cast<unsigned>(quant::offset_chunk), 1u);
    }
    if constexpr (four) {
      const std::int64_t pairs = (e1 - e0 + 1) / 2;
      for (std::int64_t p = lane; p < pairs; p += 32) {
        const std::int64_t e = e0 + 2 * p;
        float v0 = to_float(x[e]);
        float v1 = e + 1 < e1 ? to_float(x[e + 1]) : 0.0f;
        if (Sub) v0 = v0 - sub;
        if (Sub && e + 1 < e1) v1 = v1 - sub;
        a.codes[e / 2] = codecs::pack_nibbles<info(F).order>(static_cast<std::uint8_t>(stream_encode<F>(v0, enc, cells)),
                                                             static_cast<std::uint8_t>(stream_encode<F>(v1, enc, cells)));
      }
    } else {
      for (std::int64_t e = e0 + lane; e < e1; e += 32) {
        float v = to_float(x[e]);
        if (Sub) v = v - sub;
        a.codes[e] = static_cast<std::uint8_t>(stream_encode<F>(v, enc, cells));
      }
    }
  }
}

/// One-pass blockwise quantization of 16-byte aligned input in blocks of 2^block_shift elements,
/// 16 <= block <= quant_chunk_elements (Wide: block > quant_warp_elements). Per CTA
/// iteration a chunk of 4096 elements: warp w takes its 512 (lane l: units 32 k + l of the warp's,
/// so every warp-wide load covers 512 contiguous bytes), gathers each block's statistics in
/// registers (shuffles within the warp; Wide blocks also across warps through shared memory),
/// forms the block's encoder, stores the scale (the block's first lane) and the codes (one word per
/// unit, contiguous across the warp). The chunk after the last whole one goes to quantize_tail.
/// Nested: absmax values for double quantization, with their offset sums (offset_chunk_done). Sub:
/// the nested pass, whose input is absmax - offset.
/// At least 6 resident CTAs per SM (75% occupancy on sm_80/90/100: at most 40 registers), 5 for
/// the double-quantization variant, whose offset sums after the loop need 48 registers to run
/// without spills; sm_75 holds 1024 threads per SM, so 4 CTAs are its whole capacity.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#  define LOWBIT_QUANT_MIN_CTAS_(nested) 4
#else
#  define LOWBIT_QUANT_MIN_CTAS_(nested) ((nested) ? 5 : 6)
#endif
template <format F, class T, bool Wide, bool Nested, bool Sub>
__global__ void __launch_bounds__(threads_per_block, LOWBIT_QUANT_MIN_CTAS_(Nested)) quantize_stream_kernel(const T* x, quant_stream_args a) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr bool four = info(F).bits == 4;
  constexpr int E = unit_elements<T>;
  constexpr int R = quant_unroll<T>;
  constexpr int CB = E * info(F).bits / 8;
  constexpr int log2E = E == 4 ? 2 : 3;
  using word_t = typename code_word<CB>::type;
  LOWBIT_SHARED(codebook_cell[cell_count<F>], cells);
  LOWBIT_SHARED(float[F == format::bnb_dynamic8 ? 255 : 1], thresholds);
  LOWBIT_SHARED(quant::block_stats[threads_per_block / 32], part);
  if (a.gated && *a.flag != 0ull) return;  // the scan found a non-finite element: write nothing
  if constexpr (uses_cells<F>) fill_cells<F>(cells, thresholds);
  const float sub = Sub ? *a.subtract : 0.0f;
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
  const unsigned unit_shift = a.block_shift - log2E;  // units per block: 2^unit_shift
  const unsigned block_units = 1u << unit_shift;
  const unsigned chunks = static_cast<unsigned>(a.numel / quant_chunk_elements);
  const auto* vin = reinterpret_cast<const uint4*>(x);
  auto* words = reinterpret_cast<word_t*>(a.codes);
  for (unsigned c = blockIdx.x; c < chunks; c += gridDim.x) {
    // unit index of this lane's k-th unit: u0 + 32 k
    const unsigned u0 = c * static_cast<unsigned>(quant_chunk_elements / E) + warp * (32u * R) + lane;
    float v[R][E];
    LOWBIT_UNROLL
    for (int k = 0; k < R; ++k) load16(reinterpret_cast<const T*>(vin + u0 + 32u * k), v[k]);
    float bad = 0.0f;
    quant::block_stats st[R];
    LOWBIT_UNROLL
    for (int k = 0; k < R; ++k) {
      LOWBIT_UNROLL
      for (int j = 0; j < E; ++j) {
        if (Sub) v[k][j] = v[k][j] - sub;
        if (!Sub) bad = __fmaf_rn(v[k][j], 0.0f, bad);  // NaN once any element is NaN or Inf
        stats_add<F>(st[k], v[k][j]);
      }
    }
    if (!Sub && a.record && bad != 0.0f) record_first_nonfinite<R, E>(a.flag, x, u0);  // rare
    // a block's units: 2^unit_shift consecutive lanes of one k (up to 32), then consecutive k
    LOWBIT_UNROLL
    for (unsigned m = 1; m < 32; m <<= 1) {
      if (Wide || m < block_units) {
        LOWBIT_UNROLL
        for (int k = 0; k < R; ++k) shfl_merge<F>(st[k], m);
      }
    }
    LOWBIT_UNROLL
    for (int span = 2; span <= R; span *= 2) {
      if (Wide || block_units >= 32u * static_cast<unsigned>(span)) {
        LOWBIT_UNROLL
        for (int k = 0; k < R; k += span) {
          stats_merge<F>(st[k], st[k + span / 2]);
          LOWBIT_UNROLL
          for (int j = 1; j < span; ++j) st[k + j] = st[k];
        }
      }
    }
    if constexpr (Wide) {
      // blocks of 2^unit_shift > 32 R units: 2^unit_shift / (32 R) consecutive warps
      const unsigned group = block_units / (32u * R);
      if (lane == 0) part[warp] = st[0];
      __syncthreads();
      quant::block_stats s = part[warp & ~(group - 1u)];
      for (unsigned w = 1; w < group; ++w) stats_merge<F>(s, part[(warp & ~(group - 1u)) + w]);
      LOWBIT_UNROLL
      for (int k = 0; k < R; ++k) st[k] = s;
      __syncthreads();  // part is rewritten next iteration
    }
    // Every aligned group of R lanes lies in one block for each k (blocks hold >= R units), so
    // lane l forms only the encoder of its unit k = l mod R, stores that block's scale if lane
    // l - k holds the block's first unit, and the group's lanes exchange the R encoders by
    // shuffles: one division sequence per lane instead of R.
    const unsigned mine = lane & static_cast<unsigned>(R - 1);
    quant::block_stats own = st[0];
    LOWBIT_UNROLL
    for (int k = 1; k < R; ++k) own = mine == static_cast<unsigned>(k) ? st[k] : own;
    const quant::block_encoder made = quant::make_encoder<F>(own, quant::int8_multiplier::quotient, call_free_div{});
    if (((u0 + 32u * mine - mine) & (block_units - 1u)) == 0u) {
      const unsigned b = (u0 + 32u * mine) >> unit_shift;
      a.scales[b] = made.scale;
      if constexpr (info(F).zero_point) a.zero_points[b] = static_cast<std::uint8_t>(made.zero_point);
    }
    const float tagged = made.zero ? -0.0f : made.inv;  // inv >= +0; -0 marks a zero block
    LOWBIT_UNROLL
    for (int k = 0; k < R; ++k) {
      const unsigned src = (lane & ~static_cast<unsigned>(R - 1)) | static_cast<unsigned>(k);
      const float inv = __shfl_sync(0xFFFFFFFFu, tagged, static_cast<int>(src));
      quant::block_encoder enc;
      enc.inv = inv;
      enc.zero = __float_as_uint(inv) == 0x80000000u;
      if constexpr (info(F).zero_point) enc.zero_point = __shfl_sync(0xFFFFFFFFu, made.zero_point, static_cast<int>(src));
      const unsigned u = u0 + 32u * k;
      // a zero block's word is its zero code repeated: one branch per unit, none per element
      constexpr unsigned zero_byte = four ? quant::scheme<F>::zero_code * 0x11u : quant::scheme<F>::zero_code;
      unsigned w[CB / 4 > 0 ? CB / 4 : 1];
      LOWBIT_UNROLL
      for (int i = 0; i < (CB / 4 > 0 ? CB / 4 : 1); ++i) w[i] = zero_byte * 0x01010101u;
      if (!enc.zero) {
        LOWBIT_UNROLL
        for (int i = 0; i < (CB / 4 > 0 ? CB / 4 : 1); ++i) w[i] = 0u;
        if constexpr (uses_f8_cvt<F>) {
          // two elements per conversion: element j in byte j % 4 of word j / 4
          LOWBIT_UNROLL
          for (int j = 0; j < E; j += 2)
            w[j / 4] |= f8x2_encode<F>(lowbit::detail::mul_rn(v[k][j + 1], enc.inv), lowbit::detail::mul_rn(v[k][j], enc.inv)) << (8 * (j % 4));
        } else {
          LOWBIT_UNROLL
          for (int j = 0; j < E; ++j) {
            const unsigned q = stream_encode<F>(v[k][j], enc, cells);
            if constexpr (four) {
              const int nib = info(F).order == codecs::nibble_order::high_first ? (j ^ 1) : j;
              w[nib / 8] |= q << (4 * (nib % 8));
            } else {
              w[j / 4] |= q << (8 * (j % 4));
            }
          }
        }
      }
      word_t out;
      if constexpr (CB == 2) {
        out = static_cast<unsigned short>(w[0]);
      } else if constexpr (CB == 4) {
        out = w[0];
      } else {
        out = make_uint2(w[0], w[1]);
      }
      store_vector(words + u, out);
    }
  }
  if constexpr (Nested) {
    // this CTA's absmax values count toward their offset chunks once its loop is done (not per
    // iteration: the rare partial-sum code then stays out of the steady state)
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      const unsigned per_chunk = static_cast<unsigned>(quant_chunk_elements) >> a.block_shift;
      for (unsigned c = blockIdx.x; c < chunks; c += gridDim.x)
        offset_chunk_done(a, c * per_chunk / static_cast<unsigned>(quant::offset_chunk), per_chunk);
    }
  }
  // the last, partial chunk: whole blocks and the partial last block, one warp per block
  quantize_tail<F, T, Nested, Sub>(x, a, static_cast<unsigned>((static_cast<std::int64_t>(chunks) * quant_chunk_elements) >> a.block_shift), cells);
}

/// The finiteness scan before a one-pass quantization that must write nothing on non-finite input:
/// the first non-finite index goes to `flag` (as ~index, atomicMax). 16-byte aligned input.
template <class T>
__global__ void __launch_bounds__(threads_per_block) finite_scan_kernel(const T* x, std::int64_t numel, unsigned long long* flag) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr int E = unit_elements<T>;
  constexpr int U = stream_unroll;
  const unsigned lane = threadIdx.x & 31u;
  const unsigned thread = blockIdx.x * static_cast<unsigned>(threads_per_block) + threadIdx.x;
  const unsigned threads = gridDim.x * static_cast<unsigned>(threads_per_block);
  const unsigned units = static_cast<unsigned>(numel / E);
  const unsigned chunks = units / (32u * U);
  const auto* vin = reinterpret_cast<const uint4*>(x);
  for (unsigned c = thread / 32u; c < chunks; c += threads / 32u) {
    const unsigned u0 = c * (32u * U) + lane;
    float v[U][E];
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) load16(reinterpret_cast<const T*>(vin + u0 + 32u * k), v[k]);
    float bad = 0.0f;
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k)
      LOWBIT_UNROLL
      for (int j = 0; j < E; ++j) bad = __fmaf_rn(v[k][j], 0.0f, bad);
    if (bad != 0.0f) record_first_nonfinite<U, E>(flag, x, u0);  // rare
  }
  for (std::int64_t e = static_cast<std::int64_t>(chunks) * (32 * U * E) + thread; e < numel; e += threads) {
    const float v = to_float(x[e]);
    if (nonfinite(v)) record_nonfinite(flag, e);
  }
}

// ---- launcher helpers ------------------------------------------------------------------------

inline status check_index_range(const quant_view& q, const char* what) {
  // Every kernel indexes in 64 bits; the grid must still fit 2^31 - 1 CTAs.
  const std::int64_t groups = (code_bytes(q.fmt, q.numel) + group_bytes - 1) / group_bytes;
  const std::int64_t ctas = ctas_for(groups);
  const std::int64_t chunks = (q.block_size < stats_chunk ? q.block_size : stats_chunk);
  const std::int64_t stat_ctas = q.blocks() * ((q.block_size + chunks - 1) / chunks);
  if (ctas > 0x7FFFFFFF || stat_ctas > 0x7FFFFFFF || q.numel > (std::int64_t{1} << 50))
    return status::error(errc::invalid_argument, "%s: %lld elements in blocks of %lld exceed the kernels' index range",
                         what, static_cast<long long>(q.numel), static_cast<long long>(q.block_size));
  return {};
}

/// Runs stats, finalize and encode for one tensor (the outer or the nested one).
template <format F, class T>
status quantize_pass(const T* x, const quant_view& q, float* scales, unsigned char* ws, const workspace_plan& p,
                     const unsigned long long* gate, bool allow_nonfinite, cudaStream_t stream) {
  const std::int64_t nb = q.blocks();
  const std::int64_t chunks = (q.block_size + stats_chunk - 1) / stats_chunk;
  auto* stats = reinterpret_cast<unsigned*>(ws + p.stats);
  auto* flag = reinterpret_cast<unsigned long long*>(ws + p.flag);
  auto* enc = reinterpret_cast<packed_encoder*>(ws + p.encoders);
  LOWBIT_TRY(memset_async(stats, 0, static_cast<std::size_t>(12 * nb), stream));
  LOWBIT_TRY(memset_async(flag, 0, 8, stream));
  LOWBIT_TRY(launch("quantize (block statistics)", stats_kernel<T>, nb * chunks, threads_per_block, 0, stream, x,
                    q.numel, q.block_size, chunks, stats, flag, !allow_nonfinite));
  // the outer input's flag gates every pass (the nested pass reads finite values by construction)
  const unsigned long long* g = gate ? gate : flag;
  LOWBIT_TRY(launch_items("quantize (block scales)", finalize_kernel<F>, nb, stream, stats, nb, g, allow_nonfinite, scales,
                          q.zero_points, enc));
  const std::int64_t groups = (code_bytes(F, q.numel) + group_bytes - 1) / group_bytes;
  return launch_items("quantize (codes)", encode_kernel<F, T>, groups, stream, x, q.numel, q.block_size, enc, g,
                      allow_nonfinite, q.codes);
}

/// log2(v) if v is a power of two, else -1.
constexpr int exact_log2(std::int64_t v) noexcept {
  int k = 0;
  while (k < 62 && (std::int64_t{1} << k) < v) ++k;
  return (std::int64_t{1} << k) == v ? k : -1;
}

/// Byte offsets of the one-pass quantizer's workspace (inside quantize_workspace_size): the flag,
/// the finished-chunk count and the per-offset-chunk block counts (zeroed by one memset), then the
/// offset partial sums, the offset and the absmax values of double quantization.
struct stream_plan {
  std::size_t flag = 0, chunks_done = 8, counts = 16, partials = 0, offset = 0, absmax = 0, total = 0, zeroed = 8;
};

inline stream_plan plan_stream(std::int64_t numel, std::int64_t block_size, bool nested) {
  stream_plan p;
  if (!nested) {
    p.total = 16;
    return p;
  }
  const auto nb = static_cast<std::size_t>(quant::block_count(numel, block_size));
  const auto nchunks = static_cast<std::size_t>(quant::block_count(static_cast<std::int64_t>(nb), quant::offset_chunk));
  p.zeroed = p.counts + 4 * nchunks;
  p.partials = align16(p.zeroed);
  p.offset = p.partials + 8 * nchunks;
  p.absmax = align16(p.offset + 4);
  p.total = align16(p.absmax + 4 * nb);
  return p;
}

/// The one-pass quantizer takes `q` when the input is 16-byte aligned, blocks are 2^k elements
/// with 16 <= 2^k <= quant_chunk_elements (at least quant_unroll<T> units, see the encoder
/// exchange in quantize_stream_kernel), the code bytes (and the nested codes) are
/// aligned to a unit's code word and the unit count fits 31 bits.
template <class T>
bool can_stream_quantize(const T* x, const quant_view& q) {
  constexpr int E = unit_elements<T>;
  const int shift = exact_log2(q.block_size);
  const std::int64_t code_word_bytes = E * info(q.fmt).bits / 8;
  return reinterpret_cast<std::uintptr_t>(x) % 16 == 0 && shift >= 4 && q.block_size <= quant_chunk_elements &&
         reinterpret_cast<std::uintptr_t>(q.codes) % static_cast<std::uintptr_t>(code_word_bytes) == 0 &&
         (!q.nested() || reinterpret_cast<std::uintptr_t>(q.nested_codes) % 4 == 0) && q.numel / E < (std::int64_t{1} << 31);
}

/// One-pass quantization (can_stream_quantize): a memset of the workspace header, the finiteness
/// scan when nothing may be written on non-finite input, quantize_stream_kernel, and with double
/// quantization its nested pass: at most three kernels, none of them single-threaded.
template <format F, class T>
status quantize_stream(const T* x, quant_view& q, const options& opt, unsigned char* ws, cudaStream_t stream,
                       std::int64_t max_ctas) {
  constexpr bool nested_ok = info(F).bnb;
  const bool nested = q.nested();
  const stream_plan p = plan_stream(q.numel, q.block_size, nested);
  const std::int64_t chunks = q.numel / quant_chunk_elements;
  const std::int64_t ctas = chunks < 1 ? 1 : (chunks > max_ctas ? max_ctas : chunks);
  auto* flag = reinterpret_cast<unsigned long long*>(ws + p.flag);
  const bool scan = !opt.allow_nonfinite && opt.untouched_on_error;
  LOWBIT_TRY(memset_async(ws, 0, p.zeroed, stream));
  if (scan) {
    const std::int64_t units = q.numel / unit_elements<T>;
    const std::int64_t per_cta = std::int64_t{threads_per_block} * stream_unroll;
    std::int64_t sctas = (units + per_cta - 1) / per_cta;
    sctas = sctas < 1 ? 1 : (sctas > max_ctas ? max_ctas : sctas);
    LOWBIT_TRY(launch("quantize (finiteness scan)", finite_scan_kernel<T>, sctas, threads_per_block, 0, stream, x, q.numel, flag));
  }
  quant_stream_args a;
  a.codes = q.codes;
  a.zero_points = q.zero_points;
  a.flag = flag;
  a.gated = scan;
  a.record = !opt.allow_nonfinite && !scan;
  a.numel = q.numel;
  a.blocks = static_cast<unsigned>(q.blocks());
  a.block_shift = static_cast<unsigned>(exact_log2(q.block_size));
  const bool wide = q.block_size > quant_warp_elements;
  if (!nested) {
    a.scales = q.scales;
    return wide ? launch("quantize", quantize_stream_kernel<F, T, true, false, false>, ctas, threads_per_block, 0, stream, x, a)
                : launch("quantize", quantize_stream_kernel<F, T, false, false, false>, ctas, threads_per_block, 0, stream, x, a);
  }
  if constexpr (!nested_ok) {
    return status::error(errc::unsupported, "quantize: double quantization needs a bitsandbytes format");
  } else {
    auto* absmax = reinterpret_cast<float*>(ws + p.absmax);
    float* offset = q.nested_offset_device ? q.nested_offset_device : reinterpret_cast<float*>(ws + p.offset);
    a.scales = absmax;
    a.chunk_counts = reinterpret_cast<unsigned*>(ws + p.counts);
    a.chunks_done = reinterpret_cast<unsigned*>(ws + p.chunks_done);
    a.partials = reinterpret_cast<double*>(ws + p.partials);
    a.offset = offset;
    LOWBIT_TRY(wide ? launch("quantize", quantize_stream_kernel<F, T, true, true, false>, ctas, threads_per_block, 0, stream, x, a)
                    : launch("quantize", quantize_stream_kernel<F, T, false, true, false>, ctas, threads_per_block, 0, stream, x, a));
    // the nested pass: absmax - offset in blocks of 256, bnb_dynamic8 (finite by construction)
    quant_stream_args n;
    n.codes = q.nested_codes;
    n.scales = q.nested_scales;
    n.flag = flag;
    n.gated = scan;
    n.numel = q.blocks();
    n.blocks = static_cast<unsigned>(q.nested_blocks());
    n.block_shift = static_cast<unsigned>(exact_log2(quant::nested_block_size));
    n.subtract = offset;
    const std::int64_t nchunks = n.numel / quant_chunk_elements;
    const std::int64_t nctas = nchunks < 1 ? 1 : (nchunks > max_ctas ? max_ctas : nchunks);
    return launch("quantize (nested scales)", quantize_stream_kernel<format::bnb_dynamic8, float, false, false, true>, nctas,
                  threads_per_block, 0, stream, static_cast<const float*>(absmax), n);
  }
}

template <class T>
status quantize_typed(const T* x, quant_view& q, const options& opt, void* workspace, cudaStream_t stream,
                      std::int64_t max_ctas = stream_max_ctas) {
  const workspace_plan p = plan_workspace(q.numel, q.block_size, q.nested());
  auto* ws = static_cast<unsigned char*>(workspace);
  return visit_format(q.fmt, [&](auto f) -> status {
    constexpr format F = decltype(f)::value;
    if (can_stream_quantize(x, q)) return quantize_stream<F>(x, q, opt, ws, stream, max_ctas);
    if (!q.nested()) return quantize_pass<F>(x, q, q.scales, ws, p, nullptr, opt.allow_nonfinite, stream);
    if constexpr (!info(F).bnb) {
      return status::error(errc::unsupported, "quantize: double quantization needs a bitsandbytes format");
    } else {
      auto* absmax = reinterpret_cast<float*>(ws + p.absmax);
      auto* flag = reinterpret_cast<unsigned long long*>(ws + p.flag);
      LOWBIT_TRY(quantize_pass<F>(x, q, absmax, ws, p, nullptr, opt.allow_nonfinite, stream));
      const std::int64_t nb = q.blocks();
      const std::int64_t nchunks = quant::block_count(nb, quant::offset_chunk);
      auto* partials = reinterpret_cast<double*>(ws + p.partials);
      auto* offset = q.nested_offset_device ? q.nested_offset_device : reinterpret_cast<float*>(ws + p.offset);
      LOWBIT_TRY(launch_items("quantize (nested offset)", offset_partials_kernel, nchunks, stream, absmax, nb, partials));
      LOWBIT_TRY(launch("quantize (nested offset)", offset_kernel, 1, 32, 0, stream, partials, nchunks, nb, flag,
                        opt.allow_nonfinite, offset));
      LOWBIT_TRY(launch_items("quantize (nested offset)", subtract_offset_kernel, nb, stream, absmax, nb, offset));
      quant_view nested;
      nested.fmt = format::bnb_dynamic8;
      nested.numel = nb;
      nested.block_size = quant::nested_block_size;
      nested.codes = q.nested_codes;
      nested.scales = q.nested_scales;
      const workspace_plan np = plan_workspace(nb, quant::nested_block_size, false);
      return quantize_pass<format::bnb_dynamic8>(static_cast<const float*>(absmax), nested, q.nested_scales, ws + p.nested,
                                                 np, opt.allow_nonfinite ? nullptr : flag, true, stream);
    }
  });
}

/// Dequantizes with dequantize_stream_kernel (at most `max_ctas` CTAs) where the layout allows it:
/// 16-byte aligned output, code bytes aligned to a unit's code word, blocks of 2^k >= E elements,
/// fewer than 2^31 units; otherwise with dequantize_kernel.
template <class T>
status dequantize_typed(const quant_view& q, T* out, cudaStream_t stream, std::int64_t max_ctas = stream_max_ctas) {
  const std::int64_t groups = (code_bytes(q.fmt, q.numel) + group_bytes - 1) / group_bytes;
  return visit_format(q.fmt, [&](auto f) {
    constexpr format F = decltype(f)::value;
    constexpr int E = unit_elements<T>;
    constexpr int CB = E * info(F).bits / 8;
    const int shift = exact_log2(q.block_size);
    const std::int64_t units = q.numel / E;
    if (reinterpret_cast<std::uintptr_t>(out) % 16 == 0 && reinterpret_cast<std::uintptr_t>(q.codes) % CB == 0 && shift >= (E == 4 ? 2 : 3) &&
        units < (std::int64_t{1} << 31)) {
      const std::int64_t per_cta = std::int64_t{threads_per_block} * stream_unroll;
      std::int64_t ctas = (units + per_cta - 1) / per_cta;
      ctas = ctas < 1 ? 1 : (ctas > max_ctas ? max_ctas : ctas);
      return launch("dequantize", dequantize_stream_kernel<F, T>, ctas, threads_per_block, 0, stream, q, out,
                    static_cast<unsigned>(units), static_cast<unsigned>(shift));
    }
    return launch_items("dequantize", dequantize_kernel<F, T>, groups, stream, q, out);
  });
}

inline status validate_device_view(const quant_view& q, const char* what) {
  LOWBIT_TRY(validate(q, what));
  LOWBIT_TRY(check_aligned(q.scales, 4, what, "scales"));
  LOWBIT_TRY(check_aligned(q.nested_scales, 4, what, "nested_scales"));
  LOWBIT_TRY(check_aligned(q.nested_offset_device, 4, what, "nested_offset_device"));
  LOWBIT_TRY(check_aligned(q.code_table, 4, what, "code_table"));
  LOWBIT_TRY(check_aligned(q.nested_code_table, 4, what, "nested_code_table"));
  return check_index_range(q, what);
}

}  // namespace detail

/// Bytes of device workspace `quantize` needs for `q` (16-byte aligned).
inline std::size_t quantize_workspace_size(const quant_view& q) noexcept {
  const std::int64_t bs = q.block_size < 1 ? 1 : q.block_size;
  const std::size_t general = detail::plan_workspace(q.numel, bs, q.nested()).total;
  const std::size_t stream = detail::plan_stream(q.numel, bs, q.nested()).total;
  return general > stream ? general : stream;
}

/// Quantizes `q.numel` elements of device array `x` (dtype `xt`) into the device storage of `q`,
/// asynchronously on `stream`, exactly as host::quantize does. `workspace` (device memory,
/// `quantize_workspace_size(q)` bytes, 16-byte aligned) is scratch and afterwards holds the input
/// status read by `input_status`. With double quantization the offset goes to
/// `q.nested_offset_device` if set (else it stays in the workspace).
inline status quantize(const void* x, dtype xt, quant_view& q, void* workspace, std::size_t workspace_bytes,
                       cudaStream_t stream = nullptr, const options& opt = {}) {
  LOWBIT_TRY(detail::validate_device_view(q, "cuda::quantize"));
  LOWBIT_TRY(detail::check_dtype(xt, "cuda::quantize", "input dtype"));
  if (q.numel == 0) return {};
  LOWBIT_TRY(detail::check_not_null(x, "cuda::quantize", "input x"));
  if (q.code_table != nullptr)
    return status::error(errc::unsupported, "cuda::quantize: encodes with the built-in tables; code_table is for dequantization");
  LOWBIT_TRY(detail::check_aligned(x, static_cast<std::size_t>(dtype_size(xt)), "cuda::quantize", "x"));
  LOWBIT_TRY(detail::check_workspace(workspace, workspace_bytes, quantize_workspace_size(q), "cuda::quantize"));
  return visit_dtype(xt, [&](auto tag) {
    using T = decltype(tag);
    return detail::quantize_typed(static_cast<const T*>(x), q, opt, workspace, stream);
  });
}

/// After `quantize` on `stream`: waits for it and reports non-finite input (errc::non_finite with
/// the first bad index; the outputs were then left untouched) or ok.
inline status input_status(const void* workspace, cudaStream_t stream = nullptr) {
  LOWBIT_TRY(detail::check_not_null(workspace, "cuda::input_status", "workspace"));
  unsigned long long flag = 0;
  LOWBIT_TRY(detail::copy_to_host(&flag, workspace, sizeof flag, stream));
  if (flag == 0) return {};
  const unsigned long long bad = ~flag;
  return status::error(errc::non_finite, "cuda::quantize: input element %llu is not finite; nothing was written", bad);
}

/// Dequantizes `q` (device storage) into `q.numel` elements of dtype `ot` at device address `out`,
/// asynchronously on `stream`, exactly as host::dequantize does.
inline status dequantize(const quant_view& q, void* out, dtype ot, cudaStream_t stream = nullptr) {
  LOWBIT_TRY(detail::validate_device_view(q, "cuda::dequantize"));
  LOWBIT_TRY(detail::check_dtype(ot, "cuda::dequantize", "output dtype"));
  if (q.numel == 0) return {};
  LOWBIT_TRY(detail::check_not_null(out, "cuda::dequantize", "output"));
  LOWBIT_TRY(detail::check_aligned(out, static_cast<std::size_t>(dtype_size(ot)), "cuda::dequantize", "out"));
  return visit_dtype(ot, [&](auto tag) {
    using T = decltype(tag);
    return detail::dequantize_typed(q, static_cast<T*>(out), stream);
  });
}

}  // namespace cuda
LOWBIT_NAMESPACE_END
