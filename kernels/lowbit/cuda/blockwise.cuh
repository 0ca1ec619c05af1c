// SPDX-License-Identifier: Apache-2.0
/// @file blockwise.cuh
/// @brief CUDA kernels and launchers for blockwise quantize / dequantize of every lowbit format,
///        with double quantization. They evaluate the per-block formulas of
///        lowbit/quant/blockwise.hpp, shared with the host engine, and equal it bit for bit.
///
/// @par Pipeline (quantize)
/// 1. `stats_kernel`: per block max |x|, max x, max -x (CTA per block chunk, atomics across
///    chunks), and the first non-finite index.
/// 2. `finalize_kernel`: per block, the stored scale / zero point and the encoding multiplier.
/// 3. `encode_kernel`: each thread encodes 16 (8-bit) or 32 (4-bit) consecutive elements into 16
///    bytes of codes, reading its input with 128-bit loads where the address allows.
/// With double quantization, the float32 absmax values then go through the same three kernels as
/// bnb_dynamic8 in blocks of 256, after `offset_kernel` has formed their mean.
/// If the input holds NaN or Inf and `options::allow_nonfinite` is false, kernels 2 and 3 write
/// nothing; `input_status` reports the first bad index afterwards.
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
#include "detail/launch.cuh"

#include <cstddef>
#include <cstdint>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {

/// Options of the CUDA quantizer.
struct options {
  bool allow_nonfinite = false;  ///< as host::options::allow_nonfinite
};

namespace detail {

/// Elements one CTA of stats_kernel reduces at most.
inline constexpr std::int64_t stats_chunk = 8192;
/// Bytes of codes one thread of encode_kernel / dequantize_kernel handles.
inline constexpr int group_bytes = 16;
/// "no non-finite element seen"
inline constexpr unsigned long long no_bad_index = ~0ull;

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

/// Stores 16 bytes of T values (4 floats or 8 16-bit values) at p (16-byte aligned).
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
  store_vector(p, raw);
}

__device__ __forceinline__ bool is_aligned16(const void* p) {
  return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0;
}

// ---- kernels ---------------------------------------------------------------------------------

/// Pass 1: block statistics. CTA `cta` reduces chunk `cta % chunks` of block `cta / chunks`.
/// stats holds, per block, the float32 bits of max |x|, max(x, 0) and max(-x, 0); NaN is skipped.
template <class T>
__global__ void stats_kernel(const T* x, std::int64_t n, std::int64_t bs, std::int64_t chunks, unsigned* stats,
                             unsigned long long* first_bad) {
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
  if (bad != no_bad_index) atomicMin(first_bad, bad);
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
  if (!allow_nonfinite && *first_bad != no_bad_index) return;
  quant::block_stats st;
  st.absmax = __uint_as_float(stats[3 * b]);
  st.hi = __uint_as_float(stats[3 * b + 1]);
  const unsigned neg = stats[3 * b + 2];
  st.lo = neg == 0u ? 0.0f : -__uint_as_float(neg);
  const quant::block_encoder e = quant::make_encoder<F>(st);
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
  if (!allow_nonfinite && *first_bad != no_bad_index) return;
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
  if (!allow_nonfinite && *first_bad != no_bad_index) return;
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

/// Decode tables of the streaming dequantizer: for 4-bit formats the two values of every code
/// byte (element 2j, element 2j + 1), for 8-bit formats the value of every code.
template <format F>
using stream_table_entry = std::conditional_t<info(F).bits == 4, float2, float>;

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
  uint4 raw;
  if constexpr (sizeof(T) == 4) {
    raw = make_uint4(__float_as_uint(y[0]), __float_as_uint(y[1]), __float_as_uint(y[2]), __float_as_uint(y[3]));
  } else {
    raw = make_uint4(pack2<T>(y[0], y[1]), pack2<T>(y[2], y[3]), pack2<T>(y[4], y[5]), pack2<T>(y[6], y[7]));
  }
  store_vector(dst, raw);
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
  for (int c = static_cast<int>(threadIdx.x); c < 256; c += threads_per_block) {
    if constexpr (four) {
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
  LOWBIT_TRY(memset_async(flag, 0xFF, 8, stream));
  LOWBIT_TRY(launch("quantize (block statistics)", stats_kernel<T>, nb * chunks, threads_per_block, 0, stream, x,
                    q.numel, q.block_size, chunks, stats, flag));
  // the outer input's flag gates every pass (the nested pass reads finite values by construction)
  const unsigned long long* g = gate ? gate : flag;
  LOWBIT_TRY(launch_items("quantize (block scales)", finalize_kernel<F>, nb, stream, stats, nb, g, allow_nonfinite, scales,
                          q.zero_points, enc));
  const std::int64_t groups = (code_bytes(F, q.numel) + group_bytes - 1) / group_bytes;
  return launch_items("quantize (codes)", encode_kernel<F, T>, groups, stream, x, q.numel, q.block_size, enc, g,
                      allow_nonfinite, q.codes);
}

template <class T>
status quantize_typed(const T* x, quant_view& q, const options& opt, void* workspace, cudaStream_t stream) {
  const workspace_plan p = plan_workspace(q.numel, q.block_size, q.nested());
  auto* ws = static_cast<unsigned char*>(workspace);
  return visit_format(q.fmt, [&](auto f) -> status {
    constexpr format F = decltype(f)::value;
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

/// log2(v) if v is a power of two, else -1.
constexpr int exact_log2(std::int64_t v) noexcept {
  int k = 0;
  while (k < 62 && (std::int64_t{1} << k) < v) ++k;
  return (std::int64_t{1} << k) == v ? k : -1;
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
  return detail::plan_workspace(q.numel, q.block_size < 1 ? 1 : q.block_size, q.nested()).total;
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
  unsigned long long bad = 0;
  LOWBIT_TRY(detail::copy_to_host(&bad, workspace, sizeof bad, stream));
  if (bad == detail::no_bad_index) return {};
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
