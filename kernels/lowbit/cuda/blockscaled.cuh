// SPDX-License-Identifier: Apache-2.0
/// @file blockscaled.cuh
/// @brief CUDA kernels and launchers of the block-scaled formats of current hardware (MXFP8,
///        MXFP6, MXFP4, NVFP4, FP8 with float32 tile scales): quantize and dequantize a row-major
///        matrix into / from a `scaled_view` on the device, with the row-major or the swizzled
///        128x4 scale layout. They evaluate the per-tile formulas of lowbit/quant/blockscaled.hpp
///        (encode_tile, encode_scaled_element, scaled_tile_factor), shared with the host engine
///        (host/blockscaled.hpp), and equal it bit for bit; NVFP4's encode_tile is formed by
///        nvfp4_kernel_tile_encoder (detail/nvfp4_tile.cuh), the same bits without a division.
///
/// @par Quantize (cuda::quantize_scaled)
/// A statistics pass over the input, then the encoding; three layouts of the work, each reading
/// the input with warp-contiguous 128-bit loads but the last:
/// - Row tiles (row_tiles: MX and NVFP4 1 x 16 / 1 x 32 tiles that divide the rows, 16-byte
///   aligned input; `scaled_row_tile_quantize_kernel`): a tile per lane, a warp taking 32
///   consecutive tiles at a time (quantize_row_tiles): 128-bit loads of the whole tile, its amax
///   from those registers, its encoding formed once, the codes by the hardware FP8 conversion
///   (sm_89 on) or the bit-level FP4 and FP6 encoder (finite_minifloat_encode), written to a
///   per-warp stage in shared memory, from which the warp stores the 32 tiles' codes with
///   warp-wide stores of contiguous words. Before it: MX, the blockwise quantizer's `finite_scan_kernel` (not under
///   allow_nonfinite); NVFP4, `scaled_unit_amax_kernel` for the tensor's max |x| only.
/// - Units (unit_tiles: every other layout whose 16-byte units of input stay in one row and one
///   tile, 16-byte aligned input: 2-D tiles, fp8_e4m3_block's 128 x 128 and 1 x 128 tiles, tiles
///   partial at the edges): `scaled_unit_amax_kernel` (lane l of a warp reads units 32 k + l of
///   its warp's chunk; each tile's max |x| by a segmented warp max and one atomicMax per tile and
///   warp step; the first non-finite index; nvfp4's tensor max |x|), `scaled_unit_encode_kernel`
///   (a thread per tile: its encoding, its scale stored, and the 8 bytes the next pass reads:
///   the multiplier, or for fp8_e4m3_block the double 1 / s that makes x / s one multiply, see
///   unit_fp8_block_quotient), then `scaled_unit_quantize_kernel` (the same unit layout: a unit's
///   tile by three launch-constant divisions, one 8-byte load of its encoding, its codes as one
///   warp-contiguous 2-, 4- or 8-byte store).
/// - Any other layout (unaligned input, odd columns): `scaled_tile_amax_kernel` (a warp per
///   tile, lanes striding the tile's rows: its max |x| (NaN-propagating: a NaN amax is stored as
///   the quiet NaN 0x7FC00000, as the host forms it), the first non-finite index (atomicMax on
///   its complement, blockwise.cuh's flag), nvfp4's tensor max |x| (atomicMax on the bits:
///   non-negative floats and the positive NaN order like their bits)), then
///   `scaled_tile_quantize_kernel`: a warp per tile, lane 0 storing the scale and the lanes
///   encoding whole packing units (1 code, a byte of two FP4 codes, or 3 bytes of four packed FP6
///   codes) along each row with the codecs' portable encode.
/// Unless the input held a NaN/Inf and `allow_nonfinite` is false (then no kernel after the
/// statistics writes anything), the encoding kernels store each tile's scale and codes, and for
/// nvfp4 the per-tensor float32 at `global_scale_device`. `scaled_swizzle_padding_kernel`
/// (swizzled layout only; gated the same way) stores 0 into the layout's padding slots
/// (quant/scale_layout.hpp).
/// Semantics are the host engine's: partial tiles at the right and bottom edges, zero tiles, NaN and
/// Inf with allow_nonfinite (MX: scale 0xFF; nvfp4: the per-tensor float32 NaN; fp8_e4m3_block:
/// IEEE arithmetic on the float32 scale). `cuda::scaled_input_status` reports non-finite input.
///
/// @par Dequantize (cuda::dequantize_scaled)
/// `scaled_dequantize_kernel`. Layouts whose units of E elements (the 16 bytes of output a lane
/// stores at once: 4 float32 or 8 16-bit values) stay in one row and one tile, with aligned codes
/// and output (unit_stream), take the unit loop: lane l of a warp decodes units 32 k + l of the
/// warp's chunk, so every warp-wide load and store covers contiguous bytes; a unit's codes are one
/// 2-, 4- or 8-byte load (three 16-bit or 8-bit loads of packed FP6), its tile comes from three
/// divisions by launch constants (udiv31: a high multiply and shifts each), its factor is one
/// scale load (MX and NVFP4: and a shared table of the 256 scale codes' factors), its values come
/// from a shared table (FP4: both values of a code byte at once), `cvt.rn.{bf16,f16}x2` packing
/// for 16-bit outputs, one 128-bit store. Any other layout: thread g decodes elements
/// [G g, G g + G), following rows and tiles element by element with scalar loads and stores.
/// Either way each element is
/// `f32(decode(code) * factor)` rounded to the output dtype.
///
/// @par Launchers
/// Take device pointers and a stream; validate their arguments and return lowbit::status; allocate
/// nothing (quantize takes a workspace of `quantize_scaled_workspace_size` bytes, 16-byte aligned).
/// Launches are asynchronous; errors of the launch itself are returned.
#pragma once

#include <lowbit/dtype.hpp>
#include <lowbit/quant/blockscaled.hpp>
#include <lowbit/quant/layout.hpp>
#include <lowbit/quant/scale_layout.hpp>
#include <lowbit/status.hpp>

#include "blockwise.cuh"
#include "detail/arch.cuh"
#include "detail/launch.cuh"
#include "detail/nvfp4_tile.cuh"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// Byte offsets of the quantize workspace: the non-finite flag (blockwise.cuh's: ~index,
/// atomicMax, 0 = none), the tensor's max |x| bits (nvfp4), then 8 bytes per tile: its float32
/// amax (scaled_tile_amax_kernel), or its amax bits and then its unit_tile_code (the unit path).
struct scaled_plan {
  std::size_t flag = 0, tensor_amax = 8, amax = 16, total = 16;
};

inline scaled_plan plan_scaled(const scaled_view& q) {
  scaled_plan p;
  const std::int64_t tiles = q.rows > 0 && q.cols > 0 && q.tile.rows > 0 && q.tile.cols > 0 ? q.grid().tiles() : 0;
  p.total = align16(p.amax + 8 * static_cast<std::size_t>(tiles));
  return p;
}

/// The tile's max |x| bits of one warp (lanes stride the tile), reduced across the warp.
/// NaN-propagating; a NaN amax comes back as the quiet NaN 0x7FC00000.
template <class T>
__device__ __forceinline__ unsigned tile_amax_bits(const T* x, const scaled_view& q, std::int64_t r0, std::int64_t nr, std::int64_t c0,
                                                   std::int64_t nc, unsigned lane, std::int64_t& first_bad) {
  unsigned m = 0;
  for (std::int64_t r = r0; r < r0 + nr; ++r) {
    const T* row = x + r * q.cols + c0;
    for (std::int64_t c = lane; c < nc; c += 32) {
      const unsigned a = __float_as_uint(load_float(row + c)) & 0x7FFFFFFFu;
      if (a >= 0x7F800000u && first_bad < 0) first_bad = r * q.cols + c0 + c;
      m = a > m ? a : m;
    }
  }
  LOWBIT_UNROLL
  for (int d = 16; d >= 1; d /= 2) {
    const unsigned o = __shfl_xor_sync(0xFFFFFFFFu, m, d);
    m = o > m ? o : m;
  }
  return m > 0x7F800000u ? 0x7FC00000u : m;
}

/// The statistics pass of the warp-per-tile layouts (neither row_tiles nor unit_tiles): per tile
/// max |x| into `amax`, the first non-finite index into `flag` (when `record`), the tensor's max
/// |x| bits into `tensor_amax` (nvfp4: `tensor`).
template <class T>
__global__ void __launch_bounds__(threads_per_block) scaled_tile_amax_kernel(const T* x, scaled_view q, float* amax, unsigned* tensor_amax,
                                                                              unsigned long long* flag, bool record, bool tensor) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  const tile_grid g = q.grid();
  const unsigned lane = threadIdx.x & 31u;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (threads_per_block / 32);
  std::int64_t first_bad = -1;
  unsigned tmax = 0;
  for (std::int64_t t = global_thread() / 32; t < g.tiles(); t += warps) {
    const std::int64_t ti = t / g.grid_cols(), tj = t - ti * g.grid_cols();
    const unsigned m = tile_amax_bits(x, q, ti * g.tile.rows, g.tile_rows_at(ti), tj * g.tile.cols, g.tile_cols_at(tj), lane, first_bad);
    if (lane == 0) amax[t] = __uint_as_float(m);
    tmax = m > tmax ? m : tmax;
  }
  if (record && first_bad >= 0) record_nonfinite(flag, first_bad);
  if (tensor && lane == 0 && tmax != 0) atomicMax(tensor_amax, tmax);
}

/// Code of x̂ = x * factor of an MX / NVFP4 element codec: the hardware satfinite conversion for
/// e4m3/e5m2 where the blockwise quantizer uses it (uses_f8_cvt), e2_minifloat_encode for e2m1
/// and e2m3, finite_minifloat_encode for e3m2, the codec otherwise: codecs' encode<nearest_even,
/// saturate> bit for bit (kernels_ptx_exhaustive_test).
template <scaled_format F>
__device__ __forceinline__ unsigned fast_scaled_encode(float xhat) {
  using codec = quant::scaled_codec<F>;
  if constexpr (std::is_same<codec, codecs::e4m3fn>::value && uses_f8_cvt<format::e4m3fn>) {
    return f8x2_encode<format::e4m3fn>(0.0f, xhat) & 0xFFu;
  } else if constexpr (std::is_same<codec, codecs::e5m2>::value && uses_f8_cvt<format::e5m2>) {
    return f8x2_encode<format::e5m2>(0.0f, xhat) & 0xFFu;
  } else if constexpr (std::is_same<codec, codecs::e2m1fn>::value) {
    return e2m1_encode(xhat);
  } else if constexpr (std::is_same<codec, codecs::e2m3fn>::value) {
    return e2_minifloat_encode<codec::mantissa_bits>(xhat);
  } else if constexpr (std::is_same<codec, codecs::e3m2fn>::value) {
    return finite_minifloat_encode<codec::exponent_bits, codec::mantissa_bits, codec::bias>(xhat);
  } else {
    return codec::template encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(xhat);
  }
}

/// Code bytes of one 1 x tc tile of format F (FP4: tc / 2; packed FP6: 3 tc / 4; 8-bit codes and
/// unpacked FP6: tc).
template <scaled_format F>
__host__ __device__ constexpr int row_tile_code_bytes(int tc, bool packed6) {
  return info(F).bits == 4 ? tc / 2 : (info(F).bits == 6 && packed6 ? 3 * tc / 4 : tc);
}

/// Width of the row-tile loop's coalesced code stores for tiles of `bytes` code bytes: 16 when
/// `bytes` is a multiple of 16, else 8 or 4, so that each lane stores its tile's bytes' worth in
/// whole words and the warp's stores of one round cover 32 consecutive words.
__host__ __device__ constexpr int row_tile_store_width(int bytes) { return bytes % 16 == 0 ? 16 : (bytes % 8 == 0 ? 8 : 4); }

/// Bytes of one warp's staging area in the row-tile loop (32 tiles of at most 32 code bytes).
inline constexpr int row_tile_stage_bytes = 32 * 32;

/// The 32-bit index arithmetic of the row-tile path, formed by the launcher (make_row_tile_plan)
/// so that the kernel divides by no runtime value: `fast` (row_tiles holds), the rows, the tiles
/// per row gc = cols / tile columns and its udiv31, and the swizzled layout's 4-column tiles per
/// row.
struct row_tile_plan {
  bool fast = false;
  unsigned gc = 0, rows = 0, tiles_per_row = 0;
  udiv31 by_gc;
};

/// Whether scaled_tile_quantize_kernel may take its row-tile loop (quantize_row_tiles): MX or
/// NVFP4 1 x 16 / 1 x 32 tiles that divide the rows, 16-byte aligned input, codes aligned to the
/// loop's code stores (row_tile_store_width), 32-bit index arithmetic.
template <class T>
inline bool row_tiles(const scaled_view& q, const T* x) {
  if (q.fmt == scaled_format::fp8_e4m3_block || q.tile.rows != 1 || (q.tile.cols != 16 && q.tile.cols != 32) || q.cols % q.tile.cols != 0 ||
      q.numel() >= (std::int64_t{1} << 32) || reinterpret_cast<std::uintptr_t>(x) % 16 != 0)
    return false;
  const int width = quant::visit_scaled(q.fmt, [&](auto f) {
    return row_tile_store_width(row_tile_code_bytes<decltype(f)::value>(static_cast<int>(q.tile.cols), q.fp6 == fp6_packing::packed));
  });
  return reinterpret_cast<std::uintptr_t>(q.codes) % static_cast<std::uintptr_t>(width) == 0;
}

/// The row_tile_plan of `q` for input x (fast only when row_tiles holds).
template <class T>
inline row_tile_plan make_row_tile_plan(const scaled_view& q, const T* x) {
  row_tile_plan p;
  p.fast = row_tiles(q, x);
  if (!p.fast) return p;
  p.gc = static_cast<unsigned>(q.cols / q.tile.cols);
  p.rows = static_cast<unsigned>(q.rows);
  p.tiles_per_row = static_cast<unsigned>(quant::swizzled_cols(p.gc) / quant::scale_tile_cols);
  p.by_gc = make_udiv31(p.gc);
  return p;
}

/// The tile encoder of the quantize kernels, formed once per thread: quant::encode_tile<F> with
/// the tensor's constants (MX: the scale rule; fp8_e4m3_block: none; nvfp4: below).
template <scaled_format F>
struct tile_encoder {
  quant::mx_scale_rule rule = quant::mx_scale_rule::floor;
  __device__ __forceinline__ explicit tile_encoder(const scaled_view& q) : rule(q.mx_rule) {}
  __device__ __forceinline__ quant::tile_encoding operator()(float amax) const {
    return quant::encode_tile<F>(amax, rule, 1.0f, quant::nvfp4_global::none, false);
  }
};
/// nvfp4: nvfp4_kernel_tile_encoder (quant::encode_tile's bits, the per-tensor divisions prepared).
template <>
struct tile_encoder<scaled_format::nvfp4> : nvfp4_kernel_tile_encoder {
  __device__ __forceinline__ tile_encoder(const scaled_view& q, float g, bool tensor_zero) : nvfp4_kernel_tile_encoder(g, q.nvfp4, tensor_zero) {}
};

/// The tile encoder of a quantize kernel. nvfp4: the stored per-tensor float32 and whether the
/// tensor is all zero come from its amax bits (thread 0 of the grid also stores the float32 at
/// `global_scale_device`).
template <scaled_format F>
__device__ __forceinline__ tile_encoder<F> quantize_encoder(const scaled_view& q, const unsigned* tensor_amax) {
  if constexpr (F == scaled_format::nvfp4) {
    const float ta = __uint_as_float(*tensor_amax);
    const float global = quant::nvfp4_stored_global(ta, q.nvfp4);
    if (global_thread() == 0 && q.global_scale_device != nullptr) *q.global_scale_device = global;
    return tile_encoder<F>(q, global, quant::nvfp4_tensor_zero(ta, q.nvfp4));
  } else {
    return tile_encoder<F>(q);
  }
}

/// One tile of the row-tile loop: U 16-byte units of input (E = 4 float32 or 8 16-bit elements
/// each), all loaded first, the tile's encoding formed once from its amax (from the loaded
/// values), its scale stored, and its codes written to `stage` (shared memory, the tile's
/// row_tile_code_bytes): each unit's E codes as one word (8-bit, FP4, unpacked FP6) or as 3-byte
/// groups (packed FP6).
template <scaled_format F, class T, int U>
__device__ __forceinline__ void quantize_row_tile(const T* x, const scaled_view& q, unsigned t, unsigned si, const tile_encoder<F>& encode,
                                                  std::uint8_t* stage) {
  constexpr int E = unit_elements<T>;
  constexpr int bits = info(F).bits;
  const unsigned e0 = t * static_cast<unsigned>(U * E);
  float v[U][E];
  LOWBIT_UNROLL
  for (int k = 0; k < U; ++k) load16(x + e0 + static_cast<unsigned>(k * E), v[k]);
  // the tile's max |x| from its registers, NaN-propagating as tile_amax_bits: a NaN amax is the
  // quiet NaN 0x7FC00000
  unsigned m = 0;
  LOWBIT_UNROLL
  for (int k = 0; k < U; ++k)
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) {
      const unsigned b = __float_as_uint(v[k][j]) & 0x7FFFFFFFu;
      m = b > m ? b : m;
    }
  const float a = __uint_as_float(m > 0x7F800000u ? 0x7FC00000u : m);
  const quant::tile_encoding enc = encode(a);
  static_cast<std::uint8_t*>(q.scales)[si] = enc.scale_code;
  LOWBIT_UNROLL
  for (int k = 0; k < U; ++k) {
    // a zero tile's codes are those of +0: every code is formed, then the unit's word cleared
    // (a select per word, not a branch per element)
    const unsigned keep = enc.zero ? 0u : ~0u;
    unsigned c[E];
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) c[j] = fast_scaled_encode<F>(lowbit::detail::mul_rn(v[k][j], enc.factor));
    if constexpr (bits == 4) {
      unsigned w = 0;
      LOWBIT_UNROLL
      for (int j = 0; j < E; ++j) w |= c[j] << (4 * j);
      w &= keep;
      if constexpr (E == 4) {
        reinterpret_cast<unsigned short*>(stage)[k] = static_cast<unsigned short>(w);
      } else {
        reinterpret_cast<unsigned*>(stage)[k] = w;
      }
    } else if (bits == 6 && q.fp6 == fp6_packing::packed) {
      LOWBIT_UNROLL
      for (int j = 0; j < E; j += 4)
        codecs::pack_fp6x4(static_cast<std::uint8_t>(c[j] & keep), static_cast<std::uint8_t>(c[j + 1] & keep), static_cast<std::uint8_t>(c[j + 2] & keep),
                           static_cast<std::uint8_t>(c[j + 3] & keep), stage + (k * E + j) / 4 * 3);
    } else {
      unsigned w[2] = {0u, 0u};
      LOWBIT_UNROLL
      for (int j = 0; j < E; ++j) w[j / 4] |= c[j] << (8 * (j % 4));
      w[0] &= keep;
      w[1] &= keep;
      if constexpr (E == 4) {
        reinterpret_cast<unsigned*>(stage)[k] = w[0];
      } else {
        reinterpret_cast<uint2*>(stage)[k] = make_uint2(w[0], w[1]);
      }
    }
  }
}

/// The row-tile loop for 1 x U E tiles (U units of 16 bytes: 2 or 4 for 16-bit input, 4 or 8 for
/// float32). CTA b of the grid takes tiles [256 i, 256 i + 256) for i = b, b + CTAs, ..., thread
/// j tile 256 i + j (1-row tiles that divide the rows are numbered in element order, so tile t
/// holds elements [t tc, t tc + tc) and its codes follow tile t - 1's). Each lane encodes its tile
/// into its warp's `stage` (shared memory); after a barrier each warp stores its 32 tiles' codes,
/// one contiguous range, in rounds of 32 consecutive words of row_tile_store_width bytes (every
/// lane the same number of rounds but in a last partial group of tiles), and a second barrier
/// lets the next group reuse the stage.
template <scaled_format F, class T, int U>
__device__ __forceinline__ void quantize_row_tile_loop(const T* x, const scaled_view& q, const row_tile_plan& rp, const tile_encoder<F>& encode,
                                                       std::uint8_t* stage) {
  constexpr int tc = U * unit_elements<T>;
  const bool packed6 = q.fp6 == fp6_packing::packed;
  const unsigned tile_bytes = static_cast<unsigned>(row_tile_code_bytes<F>(tc, packed6));
  const unsigned tiles = rp.gc * rp.rows;
  const unsigned lane = threadIdx.x & 31u;
  // the scale index of tile t = (ti, tj): t, or in the swizzled layout quant::swizzled_offset in
  // 32-bit arithmetic (row_tiles bounds the element count by 2^32)
  const bool swizzled = q.layout == scale_layout::swizzled;
  const unsigned band = rp.tiles_per_row * static_cast<unsigned>(quant::scale_tile_bytes);
  const auto scale_slot = [&](unsigned t) {
    const unsigned ti = rp.by_gc.div(t), tj = t - ti * rp.gc;
    return swizzled ? quant::swizzled_offset(ti, tj, band) : t;
  };
  // the group's `bytes` code bytes (packed FP6 or not), from the stage to `to`, in words of B =
  // row_tile_store_width bytes: round r stores words 32 r + lane, a warp-wide store of 32
  // consecutive words, and a full group takes tile_bytes / B rounds
  const auto store_codes = [&](auto packed, unsigned bytes, std::uint8_t* to) {
    constexpr int TB = row_tile_code_bytes<F>(tc, decltype(packed)::value);
    constexpr int B = row_tile_store_width(TB);
    using W = std::conditional_t<B == 16, uint4, std::conditional_t<B == 8, uint2, unsigned>>;
    LOWBIT_UNROLL
    for (int r = 0; r < TB / B; ++r) {
      const unsigned o = 32u * static_cast<unsigned>(r) + lane;
      if (o < bytes / B) store_vector(reinterpret_cast<W*>(to) + o, reinterpret_cast<const W*>(stage)[o]);
    }
  };
  // a loop every thread of the CTA runs the same number of times, so that its barriers are
  // __syncthreads (a __syncwarp after the divergent tile would be a CALL of a WARPSYNC routine on
  // sm_80, and registers live across it spill); warp w stores tiles [t0, t0 + 32) of the group
  for (unsigned g0 = blockIdx.x * static_cast<unsigned>(threads_per_block); g0 < tiles; g0 += gridDim.x * static_cast<unsigned>(threads_per_block)) {
    const unsigned t0 = g0 + (threadIdx.x & ~31u), t = t0 + lane;
    // the tile's amax from its loaded values (nvfp4's statistics pass forms only the tensor's)
    if (t < tiles) quantize_row_tile<F, T, U>(x, q, t, scale_slot(t), encode, stage + lane * tile_bytes);
    __syncthreads();
    const unsigned bytes = t0 < tiles ? (tiles - t0 < 32u ? tiles - t0 : 32u) * tile_bytes : 0u;
    std::uint8_t* to = q.codes + static_cast<std::size_t>(t0) * tile_bytes;
    if (info(F).bits == 6 && packed6) {
      store_codes(std::true_type{}, bytes, to);
    } else {
      store_codes(std::false_type{}, bytes, to);
    }
    __syncthreads();
  }
}

/// The row-tile loop of scaled_tile_quantize_kernel (row_tiles): one loop per tile width, 1 x 16
/// or 1 x 32 (the budget check measures both: "in T each").
template <scaled_format F, class T>
__device__ __forceinline__ void quantize_row_tiles(const T* x, const scaled_view& q, const row_tile_plan& rp, const tile_encoder<F>& encode,
                                                   std::uint8_t* stage) {
  constexpr int UN = sizeof(T) == 4 ? 4 : 2;  // units of a 1 x 16 tile
  if (q.tile.cols == 2 * UN * unit_elements<T>) {
    quantize_row_tile_loop<F, T, 2 * UN>(x, q, rp, encode, stage);
  } else {
    quantize_row_tile_loop<F, T, UN>(x, q, rp, encode, stage);
  }
}

/// Whether the quantize kernels write nothing: `gate` and the flag records a non-finite element
/// (the 64-bit flag read as two words: the kernels' widest loads stay those of their input).
__device__ __forceinline__ bool gated_off(const unsigned long long* flag, bool gate) {
  if (!gate) return false;
  const auto* w = reinterpret_cast<const unsigned*>(flag);
  return (w[0] | w[1]) != 0u;
}

/// The padding pass of quantize_scaled with the swizzled layout: 0 into the layout's padding slots
/// (quant::swizzled_scale_position), unless `gate` and the flag records a non-finite element. A
/// kernel of its own so that its 64-bit divisions (calls) stay out of the quantize kernel.
__global__ void __launch_bounds__(threads_per_block) scaled_swizzle_padding_kernel(scaled_view q, const unsigned long long* flag, bool gate) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  if (gated_off(flag, gate)) return;
  const tile_grid g = q.grid();
  auto* sc = static_cast<std::uint8_t*>(q.scales);
  const std::int64_t threads = static_cast<std::int64_t>(gridDim.x) * threads_per_block;
  for (std::int64_t o = global_thread(); o < q.scale_count(); o += threads) {
    std::int64_t r = 0, c = 0;
    quant::swizzled_scale_position(o, g.grid_cols(), r, c);
    if (r >= g.grid_rows() || c >= g.grid_cols()) sc[o] = 0;
  }
}

/// The encoding pass of quantize_scaled on the row-tile path (row_tiles, MX and NVFP4): quantize_row_tiles.
/// A kernel of its own, apart from the warp-per-tile one, so that nothing of that one's 64-bit
/// index arithmetic (division calls, and the registers held across them) reaches this loop.
template <scaled_format F, class T>
__global__ void __launch_bounds__(threads_per_block) scaled_row_tile_quantize_kernel(const T* x, scaled_view q, const unsigned* tensor_amax,
                                                                                   const unsigned long long* flag, bool gate, row_tile_plan rp) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  if (gated_off(flag, gate)) return;
  const tile_encoder<F> encode = quantize_encoder<F>(q, tensor_amax);
  // the row-tile loop's per-warp staging of its code bytes (row_tile_stage_bytes each)
  LOWBIT_SHARED(uint4[threads_per_block / 32 * row_tile_stage_bytes / 16], stage);
  quantize_row_tiles<F>(x, q, rp, encode, reinterpret_cast<std::uint8_t*>(stage) + (threadIdx.x >> 5) * row_tile_stage_bytes);
}

/// The encoding pass of quantize_scaled on the layouts neither row_tiles nor unit_tiles takes: a
/// warp per tile (see the file comment).
/// `gate`: write nothing if the flag records a non-finite element.
template <scaled_format F, class T>
__global__ void __launch_bounds__(threads_per_block) scaled_tile_quantize_kernel(const T* x, scaled_view q, const float* amax,
                                                                               const unsigned* tensor_amax, const unsigned long long* flag,
                                                                               bool gate) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  if (gated_off(flag, gate)) return;
  const tile_grid g = q.grid();
  const unsigned lane = threadIdx.x & 31u;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (threads_per_block / 32);
  const tile_encoder<F> encode = quantize_encoder<F>(q, tensor_amax);
  const int unit = quant::packing_unit(F, q.fp6);
  for (std::int64_t t = global_thread() / 32; t < g.tiles(); t += warps) {
    const std::int64_t ti = t / g.grid_cols(), tj = t - ti * g.grid_cols();
    const quant::tile_encoding e = encode(amax[t]);
    if (lane == 0) {
      if constexpr (F == scaled_format::fp8_e4m3_block) {
        static_cast<float*>(q.scales)[q.scale_index(ti, tj)] = e.scale_f32;
      } else {
        static_cast<std::uint8_t*>(q.scales)[q.scale_index(ti, tj)] = e.scale_code;
      }
    }
    const std::int64_t r0 = ti * g.tile.rows, nr = g.tile_rows_at(ti), c0 = tj * g.tile.cols, nc = g.tile_cols_at(tj);
    for (std::int64_t r = r0; r < r0 + nr; ++r) {
      const std::int64_t i0 = r * q.cols + c0;
      for (std::int64_t c = static_cast<std::int64_t>(lane) * unit; c < nc; c += 32 * unit) {
        const std::int64_t i = i0 + c;
        if constexpr (info(F).bits == 4) {
          const std::uint8_t lo = quant::encode_scaled_element<F>(load_float(x + i), e);
          const std::uint8_t hi = quant::encode_scaled_element<F>(load_float(x + i + 1), e);
          q.codes[i / 2] = codecs::pack_nibbles<codecs::nibble_order::low_first>(lo, hi);
        } else if constexpr (info(F).bits == 6) {
          if (unit == 4) {
            codecs::pack_fp6x4(quant::encode_scaled_element<F>(load_float(x + i), e), quant::encode_scaled_element<F>(load_float(x + i + 1), e),
                               quant::encode_scaled_element<F>(load_float(x + i + 2), e), quant::encode_scaled_element<F>(load_float(x + i + 3), e),
                               q.codes + i / 4 * 3);
          } else {
            q.codes[i] = quant::encode_scaled_element<F>(load_float(x + i), e);
          }
        } else {
          q.codes[i] = quant::encode_scaled_element<F>(load_float(x + i), e);
        }
      }
    }
  }
}

/// nvfp4's per-tensor float32 on the device: `*q.global_scale_device` when set, else
/// `q.global_scale`.
__device__ __forceinline__ float scaled_global(const scaled_view& q) {
  return q.global_scale_device != nullptr ? *q.global_scale_device : q.global_scale;
}

/// Fills (the calling CTA, before a barrier) the shared decode tables of format F: `values[c]`,
/// the value of code c (bits above the code width ignored), and, when `factors` is not null (one-
/// byte scales only), `factors[s]`, the factor of scale code s: nvfp4_tile_factor with
/// scaled_global(q), or the e8m0 value (mx_scale_value).
template <scaled_format F>
__device__ __forceinline__ void fill_scaled_tables(const scaled_view& q, float* values, float* factors) {
  using codec = quant::scaled_codec<F>;
  const float global = F == scaled_format::nvfp4 && factors != nullptr ? scaled_global(q) : 0.0f;
  for (int c = static_cast<int>(threadIdx.x); c < 256; c += threads_per_block) {
    const auto code = static_cast<std::uint8_t>(c);
    values[c] = codec::decode(static_cast<std::uint8_t>(c & ((1 << codec::bits) - 1)));
    if (factors != nullptr) factors[c] = F == scaled_format::nvfp4 ? quant::nvfp4_tile_factor(code, global, q.nvfp4) : quant::mx_scale_value(code);
  }
}

/// Elements one thread of scaled_dequantize_kernel's general path decodes: 16 bytes of codes (12
/// of packed FP6).
template <scaled_format F>
inline constexpr int scaled_group = info(F).bits == 4 ? 32 : 16;

/// The code of element k of a group whose code bytes are `b`.
template <scaled_format F>
__device__ __forceinline__ std::uint8_t group_code(const std::uint8_t* b, int k, bool packed6) {
  if constexpr (info(F).bits == 4) {
    return codecs::unpack_nibble<codecs::nibble_order::low_first>(b[k / 2], k & 1);
  } else if constexpr (info(F).bits == 6) {
    return packed6 ? codecs::unpack_fp6(b + k / 4 * 3, k & 3) : static_cast<std::uint8_t>(b[k] & 0x3Fu);
  } else {
    return b[k];
  }
}

/// Bytes of codes of one unit of scaled_dequantize_kernel's unit loop (E = unit_elements<T>
/// elements, the 16 bytes a lane stores at once): E / 2 for FP4, E for 8-bit codes and unpacked
/// FP6, 3 E / 4 for packed FP6.
template <scaled_format F>
__host__ __device__ constexpr int scaled_unit_bytes(int E, bool packed6) {
  return info(F).bits == 4 ? E / 2 : (info(F).bits == 6 && packed6 ? 3 * E / 4 : E);
}

/// The index arithmetic of scaled_dequantize_kernel's unit loop, formed once by the launcher
/// (make_scaled_stream): unit u lies in row r = u / row_units at unit column c = u - r units_per_row,
/// in tile (ti, tj) = (r / tile_rows, c / tile_units) (tile_units = tile columns / E), and the
/// scale of that tile is at
///   (ti >> ti_shift) ti_mul + (ti & ti_low) 16 + ((ti >> 3) & ti_mid) + (tj >> tj_shift) tj_mul + (tj & tj_low),
/// one formula for both layouts, so the loop holds one body: row-major is ti grid_cols + tj (shifts
/// 0, ti_mul = grid_cols, tj_mul = 1, masks 0); swizzled is quant::swizzled_scale_offset, (ti >> 7)
/// (bytes per 128 tile rows) + (ti % 32) 16 + ((ti / 32) % 4) 4 + (tj / 4) 512 + tj % 4.
struct scaled_stream {
  unsigned units = 0;          ///< numel / E
  unsigned units_per_row = 0;  ///< cols / E
  udiv31 row_units, tile_rows, tile_units;
  unsigned ti_shift = 0, ti_mul = 0, ti_low = 0, ti_mid = 0, tj_shift = 0, tj_mul = 1, tj_low = 0;
  unsigned grid_cols = 0;                  ///< tiles per row of tiles (the quantizer's linear tile index)
  unsigned tile_rows_n = 1, tile_units_n = 1;  ///< the divisors of tile_rows and tile_units

  /// Unit u's row r, unit column c and tile (ti, tj).
  __device__ __forceinline__ void locate(unsigned u, unsigned& r, unsigned& c, unsigned& ti, unsigned& tj) const {
    r = row_units.div(u);
    c = u - r * units_per_row;
    ti = tile_rows.div(r);
    tj = tile_units.div(c);
  }

  /// The index into the scales of tile (ti, tj).
  __device__ __forceinline__ unsigned scale_index(unsigned ti, unsigned tj) const {
    return (ti >> ti_shift) * ti_mul + (ti & ti_low) * 16u + ((ti >> 3) & ti_mid) + (tj >> tj_shift) * tj_mul + (tj & tj_low);
  }
};

/// Whether scaled_dequantize_kernel may take its unit loop for `q` and output `out` of dtype T:
/// a unit of E elements lies in one row and one tile (cols and tile columns multiples of E), the
/// output is 16-byte aligned, each unit's code bytes are aligned to their load (a 2-, 4- or 8-byte
/// word; 16-bit loads for packed FP6 into 16-bit outputs, bytes into float32), and the element
/// and scale counts fit its 32-bit index arithmetic.
template <scaled_format F, class T>
inline bool unit_stream(const scaled_view& q, const void* out) {
  constexpr int E = unit_elements<T>;
  const bool packed6 = info(F).bits == 6 && q.fp6 == fp6_packing::packed;
  const int align = packed6 ? (E == 8 ? 2 : 1) : scaled_unit_bytes<F>(E, false);
  return q.cols % E == 0 && q.tile.cols % E == 0 && q.numel() < (std::int64_t{1} << 32) && q.scale_count() < (std::int64_t{1} << 31) &&
         reinterpret_cast<std::uintptr_t>(out) % 16 == 0 && reinterpret_cast<std::uintptr_t>(q.codes) % static_cast<std::uintptr_t>(align) == 0;
}

/// The scaled_stream of `q` (unit_stream holds) for units of E elements.
inline scaled_stream make_scaled_stream(const scaled_view& q, int E) {
  constexpr std::int64_t cap = std::int64_t{1} << 30;  // > every row and unit column index
  scaled_stream s;
  s.units = static_cast<unsigned>(q.numel() / E);
  s.units_per_row = static_cast<unsigned>(q.cols / E);
  s.row_units = make_udiv31(static_cast<std::uint32_t>(q.cols / E < cap ? q.cols / E : cap));
  s.tile_rows = make_udiv31(static_cast<std::uint32_t>(q.tile.rows < cap ? q.tile.rows : cap));
  s.tile_units = make_udiv31(static_cast<std::uint32_t>(q.tile.cols / E < cap ? q.tile.cols / E : cap));
  s.tile_rows_n = static_cast<unsigned>(q.tile.rows < cap ? q.tile.rows : cap);
  s.tile_units_n = static_cast<unsigned>(q.tile.cols / E < cap ? q.tile.cols / E : cap);
  const std::int64_t gc = q.grid().grid_cols();
  s.grid_cols = static_cast<unsigned>(gc);
  if (q.layout == scale_layout::swizzled) {
    static_assert(quant::scale_tile_rows == 128 && quant::scale_tile_cols == 4, "scale_index's swizzled constants");
    s.ti_shift = 7;
    s.ti_mul = static_cast<unsigned>(quant::swizzled_cols(gc) / quant::scale_tile_cols * quant::scale_tile_bytes);
    s.ti_low = 31;
    s.ti_mid = 12;
    s.tj_shift = 2;
    s.tj_mul = static_cast<unsigned>(quant::scale_tile_bytes);
    s.tj_low = 3;
  } else {
    s.ti_mul = static_cast<unsigned>(gc);
  }
  return s;
}

/// The E codes of unit u as bits: code j at bits [b j, b j + b) of the result (b = 4, 8 or 6; for
/// unpacked FP6 b = 8 with the top two bits of each byte ignored by the decode table).
template <scaled_format F, int E>
__device__ __forceinline__ unsigned long long scaled_unit_codes(const std::uint8_t* codes, unsigned u, bool packed6) {
  if (info(F).bits == 6 && packed6) {
    // 3 E / 4 bytes at byte 3 E u / 4: three 16-bit loads (E = 8, 2-byte aligned) or three bytes
    if constexpr (E == 8) {
      const auto* h = reinterpret_cast<const unsigned short*>(codes + std::size_t{6} * u);
      return static_cast<unsigned long long>(load_vector<unsigned short>(h)) | static_cast<unsigned long long>(load_vector<unsigned short>(h + 1)) << 16 |
             static_cast<unsigned long long>(load_vector<unsigned short>(h + 2)) << 32;
    } else {
      const std::uint8_t* b = codes + std::size_t{3} * u;
      return static_cast<unsigned long long>(b[0]) | static_cast<unsigned long long>(b[1]) << 8 | static_cast<unsigned long long>(b[2]) << 16;
    }
  } else {
    constexpr int CB = scaled_unit_bytes<F>(E, false);
    using word_t = typename code_word<CB>::type;
    const word_t w = load_vector<word_t>(reinterpret_cast<const word_t*>(codes) + u);
    return static_cast<unsigned long long>(code_bits(w, 0)) | (CB == 8 ? static_cast<unsigned long long>(code_bits(w, 1)) << 32 : 0ull);
  }
}

/// Byte j (< 8) of `bits`, by one byte permute (prmt) rather than a shift and a mask.
__device__ __forceinline__ unsigned code_byte(unsigned long long bits, int j) {
  return __byte_perm(static_cast<unsigned>(bits >> (j < 4 ? 0 : 32)), 0u, 0x4440u + static_cast<unsigned>(j % 4));
}

/// Decodes unit u (its codes `bits`, its factor f) into the 16 bytes at dst: f32(value * f) per
/// element, rounded to T (cvt.rn.{bf16,f16}x2 for 16-bit outputs). FP4 reads `pairs` (both values
/// of a code byte), the others `table`.
template <scaled_format F, class T>
__device__ __forceinline__ void scaled_unit(unsigned long long bits, float f, const float* table, const float2* pairs, bool packed6, uint4* dst) {
  constexpr int E = unit_elements<T>;
  float y[E];
  if constexpr (info(F).bits == 4) {
    LOWBIT_UNROLL
    for (int j = 0; j < E / 2; ++j) {
      const float2 p = pairs[code_byte(bits, j)];
      y[2 * j] = p.x * f;
      y[2 * j + 1] = p.y * f;
    }
  } else {
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) {
      const unsigned code = info(F).bits == 6 && packed6 ? static_cast<unsigned>(bits >> (6 * j)) & 0x3Fu : code_byte(bits, j);
      y[j] = table[code] * f;
    }
  }
  store_unit<T>(y, dst);
}

/// The E codes of one unit as bits, code j at bits [b j, b j + b) (b = 4 for FP4, 6 for packed
/// FP6, 8 otherwise): the layout of the unit's code bytes, little-endian (scaled_unit_codes reads
/// it back; packed FP6 is codecs::pack_fp6x4's order).
template <scaled_format F, int E>
__device__ __forceinline__ unsigned long long unit_code_bits(const unsigned (&c)[E], bool packed6) {
  constexpr int bits = info(F).bits;
  unsigned long long w = 0;
  if constexpr (bits == 4) {
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) w |= static_cast<unsigned long long>(c[j]) << (4 * j);
  } else if (bits == 6 && packed6) {
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) w |= static_cast<unsigned long long>(c[j] & 0x3Fu) << (6 * j);
  } else {
    LOWBIT_UNROLL
    for (int j = 0; j < E; ++j) w |= static_cast<unsigned long long>(c[j]) << (8 * j);
  }
  return w;
}

/// Whether quantize_scaled takes the unit path (scaled_unit_amax_kernel, scaled_unit_encode_kernel,
/// then scaled_unit_quantize_kernel) for `q` and input x of dtype T: the layouts unit_stream accepts
/// (a unit of E elements in one row and one tile, 32-bit index arithmetic) with 16-byte aligned
/// input and codes aligned to their unit stores, and fewer than 2^31 tiles.
template <scaled_format F, class T>
inline bool unit_tiles(const scaled_view& q, const T* x) {
  return unit_stream<F, T>(q, x) && q.grid().tiles() < (std::int64_t{1} << 31);
}

/// The tile statistics of the unit path: units of E elements (16 input bytes), warp w of the grid
/// reading per iteration the 32 stream_unroll units of chunks c = w, w + warps, ..., lane l unit
/// 32 k + l of the chunk (then the last partial chunk, 32 consecutive units per warp step), each
/// 128-bit load warp-contiguous. Per unit: its max |x| bits, and with `Tiles` a segmented max
/// across the lanes of each warp-wide step whose units lie in the same tile (a tile's units of
/// one step are consecutive lanes but for tiles one column wide in a grid of more, where the
/// equality test still only ever merges values of one tile) and one atomicMax of the bits per
/// tile and step into the first word of the tile's 8-byte slot (tile_amax[2 t]; the workspace
/// starts at 0; non-negative floats and NaN order like their bits; the encode pass reads a NaN
/// amax as the quiet NaN 0x7FC00000, as the host forms it). Without `Tiles` (nvfp4 row tiles)
/// only the tensor's max |x| and the finiteness are formed. The first non-finite index goes to
/// `flag` when `record`; when `tensor_amax` is not null (nvfp4), the tensor's max |x| bits (NaN
/// as 0x7FC00000) by one atomicMax per warp.
template <class T, bool Tiles>
__global__ void __launch_bounds__(threads_per_block) scaled_unit_amax_kernel(const T* x, scaled_stream s, unsigned* tile_amax, unsigned* tensor_amax,
                                                                              unsigned long long* flag, bool record) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr int E = unit_elements<T>;
  constexpr int U = stream_unroll;
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = (blockIdx.x * static_cast<unsigned>(threads_per_block) + threadIdx.x) / 32u;
  const unsigned warps = gridDim.x * static_cast<unsigned>(threads_per_block / 32);
  const unsigned chunks = s.units / (32u * U);
  unsigned tmax = 0;
  // unit u's max |x| as float32 bits (`valid`: u < s.units, else 0); 16-bit inputs take the
  // maximum of their magnitude bits (sign-magnitude formats order like their bits, NaN above
  // Inf) two at a time (vmax2) and convert only that one value
  const auto unit_max = [&](unsigned u, bool valid) {
    unsigned m = 0;
    if (valid) {
      if constexpr (sizeof(T) == 2) {
        const uint4 w = load_vector<uint4>(reinterpret_cast<const uint4*>(x) + u);
        const unsigned h = __vmaxu2(__vmaxu2(w.x & 0x7FFF7FFFu, w.y & 0x7FFF7FFFu), __vmaxu2(w.z & 0x7FFF7FFFu, w.w & 0x7FFF7FFFu));
        const unsigned h1 = (h & 0xFFFFu) > (h >> 16) ? (h & 0xFFFFu) : (h >> 16);
        const auto b16 = static_cast<std::uint16_t>(h1);
        m = __float_as_uint(std::is_same<T, f16>::value ? half_bits_to_float(b16) : to_float(T{b16}));
      } else {
        float v[E];
        load16(x + static_cast<std::size_t>(u) * E, v);
        LOWBIT_UNROLL
        for (int j = 0; j < E; ++j) {
          const unsigned b = __float_as_uint(v[j]) & 0x7FFFFFFFu;
          m = b > m ? b : m;
        }
      }
    }
    return m;
  };
  // a warp-wide step over 32 consecutive units, lane l unit u (valid: u < s.units)
  const auto merge = [&](unsigned u, unsigned m, bool valid) {
    tmax = m > tmax ? m : tmax;
    if constexpr (!Tiles) return;
    unsigned r, c, ti, tj;
    s.locate(u, r, c, ti, tj);
    const unsigned t = valid ? ti * s.grid_cols + tj : 0xFFFFFFFFu;
    LOWBIT_UNROLL
    for (int d = 1; d < 32; d *= 2) {
      const unsigned o = __shfl_down_sync(0xFFFFFFFFu, m, d), ot = __shfl_down_sync(0xFFFFFFFFu, t, d);
      if (ot == t) m = o > m ? o : m;
    }
    const unsigned before = __shfl_up_sync(0xFFFFFFFFu, t, 1);
    if (valid && m != 0u && (lane == 0u || before != t)) atomicMax(tile_amax + 2 * static_cast<std::size_t>(t), m);
  };
  for (unsigned c = warp; c < chunks; c += warps) {
    const unsigned u0 = c * (32u * U) + lane;
    unsigned m[U];
    unsigned all = 0;
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) {
      m[k] = unit_max(u0 + 32u * k, true);
      all = m[k] > all ? m[k] : all;
    }
    if (record && all >= 0x7F800000u) record_first_nonfinite<U, E>(flag, x, u0);  // rare
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) merge(u0 + 32u * k, m[k], true);
  }
  for (unsigned w0 = chunks * (32u * U) + warp * 32u; w0 < s.units; w0 += warps * 32u) {
    const unsigned u = w0 + lane;
    const bool valid = u < s.units;
    const unsigned m = unit_max(u, valid);
    if (record && m >= 0x7F800000u) record_first_nonfinite<1, E>(flag, x, u);
    merge(u, m, valid);
  }
  if (tensor_amax != nullptr) {
    LOWBIT_UNROLL
    for (int d = 16; d >= 1; d /= 2) {
      const unsigned o = __shfl_xor_sync(0xFFFFFFFFu, tmax, d);
      tmax = o > tmax ? o : tmax;
    }
    if (lane == 0u && tmax != 0u) atomicMax(tensor_amax, tmax > 0x7F800000u ? 0x7FC00000u : tmax);
  }
}

/// The per-tile encoding the unit path's quantize pass reads, 8 bytes a tile in the workspace
/// (in place of the tile's amax bits, which scaled_unit_encode_kernel reads first):
/// fp8_e4m3_block stores the double `1 / s` of its scale s (a zero tile: -0.0, which no scale
/// gives), so that each element is one double multiply (unit_fp8_block_quotient); the other
/// formats store their float32 multiplier and whether every element gets the code of +0.
struct unit_tile_code {
  float factor;
  unsigned zero;
};

/// f32(x / s) for fp8_e4m3_block, from rd = 1 / s in double (RN): exactly the IEEE float32
/// quotient the host forms whenever that is a normal float32, and otherwise a value of its sign
/// and of magnitude at most 2^-126, whose e4m3 code is +-0 as the host's is. Proof: for floats a, b > 0 with Q = a / b normal,
/// a - m b is a nonzero multiple of 2^(ea - 48) for every float32 rounding midpoint m of Q's
/// binade (m b is a multiple of 2^(e + eb - 47), e >= ea - eb - 1; it is nonzero because a
/// midpoint's 25-bit odd significand times b's cannot be a 24-bit a), so |Q - m| > Q 2^-50;
/// the double product is within Q (2^-52 + 2^-106) of Q, on the same side of every midpoint, so
/// it rounds to float32 as Q does. Zero and Inf scales are the callers' (zero tile; 1 / Inf = 0
/// gives +-0 as x / Inf does, and NaN for infinite x as x / Inf does).
__device__ __forceinline__ float unit_fp8_block_quotient(float x, double rd) {
  return static_cast<float>(static_cast<double>(x) * rd);
}

/// The tile encodings of the unit path (unit_tiles; `gate`: write nothing if the flag records a
/// non-finite element): thread t of the grid (grid-stride) takes tile t, reads its amax bits (a
/// NaN as the quiet NaN 0x7FC00000, as the host forms it), forms quant::encode_tile (the host's),
/// stores its scale, and overwrites the tile's 8 workspace bytes with its unit_tile_code. nvfp4
/// also stores the per-tensor float32 (quantize_global).
template <scaled_format F>
__global__ void __launch_bounds__(threads_per_block) scaled_unit_encode_kernel(scaled_view q, scaled_stream s, udiv31 by_gc, unsigned tiles, void* codes,
                                                                             const unsigned* tensor_amax, const unsigned long long* flag, bool gate) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  if (gated_off(flag, gate)) return;
  const tile_encoder<F> encode = quantize_encoder<F>(q, tensor_amax);
  const unsigned threads = gridDim.x * static_cast<unsigned>(threads_per_block);
  for (unsigned t = blockIdx.x * static_cast<unsigned>(threads_per_block) + threadIdx.x; t < tiles; t += threads) {
    const unsigned ti = by_gc.div(t), tj = t - ti * s.grid_cols;
    auto* slot = static_cast<unit_tile_code*>(codes) + t;
    const unsigned ab = reinterpret_cast<const unsigned*>(slot)[0];  // scaled_unit_amax_kernel's
    const quant::tile_encoding enc = encode(__uint_as_float(ab > 0x7F800000u ? 0x7FC00000u : ab));
    if constexpr (F == scaled_format::fp8_e4m3_block) {
      static_cast<float*>(q.scales)[s.scale_index(ti, tj)] = enc.scale_f32;
      *reinterpret_cast<double*>(slot) = enc.zero ? -0.0 : 1.0 / static_cast<double>(enc.scale_f32);
    } else {
      static_cast<std::uint8_t*>(q.scales)[s.scale_index(ti, tj)] = enc.scale_code;
      *slot = unit_tile_code{enc.factor, enc.zero ? 1u : 0u};
    }
  }
}

/// The quantize pass of the unit path (unit_tiles; `gate`: write nothing if the flag records a
/// non-finite element): the units and warp layout of scaled_unit_amax_kernel; per unit its tile
/// (three udiv31 divisions), the tile's unit_tile_code (one 8-byte load), and its E codes
/// (fast_scaled_encode of x * factor, or of unit_fp8_block_quotient; +0 in a zero tile) stored as
/// one 2-, 4- or 8-byte word (warp-contiguous), or for packed FP6 three bytes or three 16-bit
/// words.
template <scaled_format F, class T>
__global__ void __launch_bounds__(threads_per_block) scaled_unit_quantize_kernel(const T* x, scaled_view q, scaled_stream s, const void* tile_codes,
                                                                               const unsigned long long* flag, bool gate) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  if (gated_off(flag, gate)) return;
  constexpr int E = unit_elements<T>;
  constexpr int U = stream_unroll;
  const bool packed6 = info(F).bits == 6 && q.fp6 == fp6_packing::packed;
  const unsigned lane = threadIdx.x & 31u;
  const unsigned thread = blockIdx.x * static_cast<unsigned>(threads_per_block) + threadIdx.x;
  const unsigned threads = gridDim.x * static_cast<unsigned>(threads_per_block);
  const unsigned chunks = s.units / (32u * U);
  const auto unit = [&](unsigned u) {
    float v[E];
    load16(x + static_cast<std::size_t>(u) * E, v);
    unsigned r, c, ti, tj;
    s.locate(u, r, c, ti, tj);
    const unsigned t = ti * s.grid_cols + tj;
    unsigned code[E];
    bool zero;
    if constexpr (F == scaled_format::fp8_e4m3_block) {
      const double rd = static_cast<const double*>(tile_codes)[t];
      zero = __double_as_longlong(rd) == static_cast<long long>(0x8000000000000000ull);
      LOWBIT_UNROLL
      for (int j = 0; j < E; ++j) code[j] = fast_scaled_encode<F>(unit_fp8_block_quotient(v[j], rd));
    } else {
      const unit_tile_code tc = static_cast<const unit_tile_code*>(tile_codes)[t];
      const float f = tc.factor;
      zero = tc.zero != 0u;
      LOWBIT_UNROLL
      for (int j = 0; j < E; ++j) code[j] = fast_scaled_encode<F>(lowbit::detail::mul_rn(v[j], f));
    }
    const unsigned long long w = zero ? 0ull : unit_code_bits<F, E>(code, packed6);
    if (info(F).bits == 6 && packed6) {
      // 3 E / 4 bytes at byte 3 E u / 4: three 16-bit words (E = 8) or three bytes
      if constexpr (E == 8) {
        auto* h = reinterpret_cast<unsigned short*>(q.codes + std::size_t{6} * u);
        h[0] = static_cast<unsigned short>(w);
        h[1] = static_cast<unsigned short>(w >> 16);
        h[2] = static_cast<unsigned short>(w >> 32);
      } else {
        std::uint8_t* b = q.codes + std::size_t{3} * u;
        b[0] = static_cast<std::uint8_t>(w);
        b[1] = static_cast<std::uint8_t>(w >> 8);
        b[2] = static_cast<std::uint8_t>(w >> 16);
      }
    } else {
      constexpr int CB = scaled_unit_bytes<F>(E, false);
      using word_t = typename code_word<CB>::type;
      word_t out;
      if constexpr (CB == 8) {
        out = make_uint2(static_cast<unsigned>(w), static_cast<unsigned>(w >> 32));
      } else {
        out = static_cast<word_t>(w);
      }
      store_vector(reinterpret_cast<word_t*>(q.codes) + u, out);
    }
  };
  for (unsigned c = thread / 32u; c < chunks; c += threads / 32u) {
    const unsigned u0 = c * (32u * U) + lane;
    LOWBIT_UNROLL
    for (int k = 0; k < U; ++k) unit(u0 + 32u * k);
  }
  for (unsigned u = chunks * (32u * U) + thread; u < s.units; u += threads) unit(u);
}

/// Dequantization (see the file comment). With `stream` (unit_stream holds; `s` its arithmetic):
/// units of E elements (16 output bytes), warp w of the grid decoding per iteration the
/// 32 stream_unroll units of chunks c = w, w + warps, ..., lane l unit 32 k + l of the chunk, so
/// that every warp-wide load and store covers contiguous bytes; each unit takes one code load,
/// three udiv31 divisions to find its tile, one scale load and factor, and decodes through shared
/// tables. Otherwise thread g decodes elements [G g, G g + G) following rows and tiles element by
/// element, with scalar loads and stores.
template <scaled_format F, class T>
__global__ void __launch_bounds__(threads_per_block, LOWBIT_STREAM_MIN_CTAS_)
    scaled_dequantize_kernel(scaled_view q, T* out, scaled_stream s, bool stream) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr int G = scaled_group<F>;
  constexpr bool one_byte_scales = F != scaled_format::fp8_e4m3_block;
  LOWBIT_SHARED(float[256], table);
  // FP4: both values of every code byte, so that a byte takes one shared load
  LOWBIT_SHARED(float2[info(F).bits == 4 ? 256 : 1], pairs);
  // the factor of every one-byte scale code: the e8m0 value (MX), nvfp4_tile_factor with this
  // tensor's float32 (nvfp4), so that a tile's factor is one shared load
  LOWBIT_SHARED(float[one_byte_scales ? 256 : 1], factors);
  const float global = scaled_global(q);
  fill_scaled_tables<F>(q, table, one_byte_scales ? factors : nullptr);
  if constexpr (info(F).bits == 4) {
    __syncthreads();
    for (int c = static_cast<int>(threadIdx.x); c < 256; c += threads_per_block) pairs[c] = make_float2(table[c & 15], table[c >> 4]);
  }
  __syncthreads();
  const bool packed6 = info(F).bits == 6 && q.fp6 == fp6_packing::packed;
  // the factor of the tile whose scale is at index i
  const auto factor_at = [&](std::int64_t i) {
    if constexpr (one_byte_scales) {
      return factors[static_cast<const std::uint8_t*>(q.scales)[i]];
    } else {
      return quant::scaled_tile_factor<F>(q.scales, i, global, q.nvfp4);
    }
  };
  const std::int64_t n = q.numel();
  if (stream) {
    constexpr int E = unit_elements<T>;
    constexpr int U = stream_unroll;
    const unsigned lane = threadIdx.x & 31u;
    const unsigned thread = blockIdx.x * static_cast<unsigned>(threads_per_block) + threadIdx.x;
    const unsigned threads = gridDim.x * static_cast<unsigned>(threads_per_block);
    const unsigned chunks = s.units / (32u * U);
    auto* vout = reinterpret_cast<uint4*>(out);
    // the factor of unit u: its row, unit column and tile, then the tile's scale
    const auto factor_of = [&](unsigned u) {
      unsigned r, c, ti, tj;
      s.locate(u, r, c, ti, tj);
      return factor_at(s.scale_index(ti, tj));
    };
    for (unsigned c = thread / 32u; c < chunks; c += threads / 32u) {
      const unsigned u0 = c * (32u * U) + lane;
      LOWBIT_UNROLL
      for (int k = 0; k < U; ++k)
        scaled_unit<F, T>(scaled_unit_codes<F, E>(q.codes, u0 + 32u * k, packed6), factor_of(u0 + 32u * k), table, pairs, packed6, vout + u0 + 32u * k);
    }
    for (unsigned u = chunks * (32u * U) + thread; u < s.units; u += threads)
      scaled_unit<F, T>(scaled_unit_codes<F, E>(q.codes, u, packed6), factor_of(u), table, pairs, packed6, vout + u);
    return;
  }
  const std::int64_t g = global_thread();
  const std::int64_t e0 = g * G;
  if (e0 >= n) return;
  const int count = n - e0 < G ? static_cast<int>(n - e0) : G;
  const int group_bytes = info(F).bits == 4 ? 16 : (packed6 ? 12 : 16);
  const std::uint8_t* src = q.codes + g * group_bytes;  // each code's bytes read where it is decoded
  const tile_grid tg = q.grid();
  std::int64_t r = e0 / q.cols, c = e0 - r * q.cols, end = 0;
  float f = 0.0f;
#if defined(__CUDACC__)
#  pragma unroll 1
#endif
  for (int k = 0; k < count; ++k) {
    if (c == q.cols) {
      ++r;
      c = 0;
    }
    if (k == 0 || c == end || c == 0) {
      const std::int64_t tj = c / tg.tile.cols;
      end = (tj + 1) * tg.tile.cols;
      f = factor_at(q.scale_index(r / tg.tile.rows, tj));
    }
    out[e0 + k] = from_float<T>(table[group_code<F>(src, k, packed6)] * f);
    ++c;
  }
}

/// Checks a device scaled_view: validate, scale alignment, and the kernels' index range.
inline status validate_device_scaled(const scaled_view& q, const char* what) {
  LOWBIT_TRY(validate(q, what));
  LOWBIT_TRY(check_aligned(q.scales, static_cast<std::size_t>(bytes_per_scale(q.fmt)), what, "scales"));
  LOWBIT_TRY(check_aligned(q.global_scale_device, 4, what, "global_scale_device"));
  const std::int64_t groups = quant::block_count(q.numel(), 16);
  if (ctas_for(groups) > 0x7FFFFFFF || q.numel() > (std::int64_t{1} << 50))
    return status::error(errc::invalid_argument, "%s: %lld x %lld elements exceed the kernels' index range", what,
                         static_cast<long long>(q.rows), static_cast<long long>(q.cols));
  return {};
}

/// CTAs of the tile kernels: a warp per tile, at most stream_max_ctas CTAs (grid-stride).
inline std::int64_t tile_ctas(const scaled_view& q) {
  const std::int64_t ctas = quant::block_count(q.grid().tiles(), threads_per_block / 32);
  return ctas < 1 ? 1 : (ctas > stream_max_ctas ? stream_max_ctas : ctas);
}

}  // namespace detail

/// Bytes of device workspace `quantize_scaled` needs for `q` (16-byte aligned).
inline std::size_t quantize_scaled_workspace_size(const scaled_view& q) noexcept { return detail::plan_scaled(q).total; }

namespace detail {

/// cuda::quantize_scaled with the row-tile kernel on at most `max_ctas` CTAs (tests pass one, so
/// that its CTAs loop over several groups of tiles).
inline status quantize_scaled_ctas(const void* x, dtype xt, const scaled_view& q, void* workspace, std::size_t workspace_bytes, cudaStream_t stream,
                                  const options& opt, std::int64_t max_ctas) {
  constexpr const char* what = "cuda::quantize_scaled";
  LOWBIT_TRY(detail::validate_device_scaled(q, what));
  LOWBIT_TRY(detail::check_dtype(xt, what, "input dtype"));
  LOWBIT_TRY(detail::check_workspace(workspace, workspace_bytes, quantize_scaled_workspace_size(q), what));
  if (q.numel() == 0) return detail::memset_async(workspace, 0, 8, stream);
  LOWBIT_TRY(detail::check_not_null(x, what, "input x"));
  LOWBIT_TRY(detail::check_aligned(x, static_cast<std::size_t>(dtype_size(xt)), what, "x"));
  if (q.fmt == scaled_format::nvfp4) LOWBIT_TRY(detail::check_not_null(q.global_scale_device, what, "global_scale_device (nvfp4)"));
  const detail::scaled_plan p = detail::plan_scaled(q);
  auto* ws = static_cast<unsigned char*>(workspace);
  auto* flag = reinterpret_cast<unsigned long long*>(ws + p.flag);
  auto* tensor_amax = reinterpret_cast<unsigned*>(ws + p.tensor_amax);
  auto* amax = reinterpret_cast<float*>(ws + p.amax);
  const std::int64_t ctas = detail::tile_ctas(q);
  return visit_dtype(xt, [&](auto tag) -> status {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x);
    const detail::row_tile_plan rp = detail::make_row_tile_plan(q, in);
    const bool fast = rp.fast;
    const bool units = !fast && quant::visit_scaled(q.fmt, [&](auto f) { return detail::unit_tiles<decltype(f)::value>(q, in); });
    const detail::scaled_stream st = fast || units ? detail::make_scaled_stream(q, detail::unit_elements<T>) : detail::scaled_stream{};
    // the unit path's atomicMax needs its tile amax bits at 0
    LOWBIT_TRY(detail::memset_async(ws, 0, units ? p.total : p.amax, stream));
    // CTAs of the unit loops
    const std::int64_t per_cta = std::int64_t{detail::threads_per_block} * detail::stream_unroll;
    std::int64_t uctas = (static_cast<std::int64_t>(st.units) + per_cta - 1) / per_cta;
    uctas = uctas < 1 ? 1 : (uctas > max_ctas ? max_ctas : uctas);
    const bool nvfp4 = q.fmt == scaled_format::nvfp4;
    if (units || (fast && nvfp4)) {
      // per tile amax bits (unit path; row tiles form theirs in registers) and nvfp4's tensor amax
      if (units) {
        LOWBIT_TRY(detail::launch("quantize_scaled (tile statistics)", detail::scaled_unit_amax_kernel<T, true>, uctas, detail::threads_per_block, 0,
                                  stream, in, st, reinterpret_cast<unsigned*>(amax), nvfp4 ? tensor_amax : nullptr, flag, !opt.allow_nonfinite));
      } else {
        LOWBIT_TRY(detail::launch("quantize_scaled (tensor statistics)", detail::scaled_unit_amax_kernel<T, false>, uctas, detail::threads_per_block, 0,
                                  stream, in, st, nullptr, tensor_amax, flag, !opt.allow_nonfinite));
      }
    } else if (fast) {
      // MX row tiles form their amax in registers: only the finiteness scan runs first, and only
      // when nothing may be written on non-finite input
      if (!opt.allow_nonfinite) {
        const std::int64_t per_cta = std::int64_t{detail::threads_per_block} * detail::stream_unroll * detail::unit_elements<T>;
        std::int64_t sctas = (q.numel() + per_cta - 1) / per_cta;
        sctas = sctas < 1 ? 1 : (sctas > detail::stream_max_ctas ? detail::stream_max_ctas : sctas);
        LOWBIT_TRY(detail::launch("quantize_scaled (finiteness scan)", detail::finite_scan_kernel<T>, sctas, detail::threads_per_block, 0, stream, in,
                                  q.numel(), flag));
      }
    } else {
      LOWBIT_TRY(detail::launch("quantize_scaled (tile statistics)", detail::scaled_tile_amax_kernel<T>, ctas, detail::threads_per_block, 0, stream, in,
                                q, amax, tensor_amax, flag, !opt.allow_nonfinite, nvfp4));
    }
    std::int64_t qctas = ctas;
    if (fast) {
      qctas = detail::ctas_for(q.numel() / q.tile.cols);
      qctas = qctas < 1 ? 1 : (qctas > max_ctas ? max_ctas : qctas);
    }
    if (q.layout == scale_layout::swizzled) {
      std::int64_t pctas = quant::block_count(q.scale_count(), detail::threads_per_block);
      pctas = pctas < 1 ? 1 : (pctas > detail::stream_max_ctas ? detail::stream_max_ctas : pctas);
      LOWBIT_TRY(detail::launch("quantize_scaled (swizzle padding)", detail::scaled_swizzle_padding_kernel, pctas, detail::threads_per_block, 0, stream,
                                q, static_cast<const unsigned long long*>(flag), !opt.allow_nonfinite));
    }
    return quant::visit_scaled(q.fmt, [&](auto f) -> status {
      constexpr scaled_format F = decltype(f)::value;
      if (units) {
        const auto tiles = static_cast<unsigned>(q.grid().tiles());
        std::int64_t ectas = quant::block_count(tiles, detail::threads_per_block);
        ectas = ectas < 1 ? 1 : (ectas > max_ctas ? max_ctas : ectas);
        LOWBIT_TRY(detail::launch("quantize_scaled (tile encodings)", detail::scaled_unit_encode_kernel<F>, ectas, detail::threads_per_block, 0, stream, q,
                                  st, detail::make_udiv31(st.grid_cols), tiles, static_cast<void*>(amax), static_cast<const unsigned*>(tensor_amax),
                                  static_cast<const unsigned long long*>(flag), !opt.allow_nonfinite));
        return detail::launch("quantize_scaled", detail::scaled_unit_quantize_kernel<F, T>, uctas, detail::threads_per_block, 0, stream, in, q, st,
                              static_cast<const void*>(amax), static_cast<const unsigned long long*>(flag), !opt.allow_nonfinite);
      }
      if constexpr (F != scaled_format::fp8_e4m3_block) {
        if (fast)
          return detail::launch("quantize_scaled", detail::scaled_row_tile_quantize_kernel<F, T>, qctas, detail::threads_per_block, 0, stream, in, q,
                                static_cast<const unsigned*>(tensor_amax), static_cast<const unsigned long long*>(flag), !opt.allow_nonfinite, rp);
      }
      return detail::launch("quantize_scaled", detail::scaled_tile_quantize_kernel<F, T>, qctas, detail::threads_per_block, 0, stream, in, q,
                            static_cast<const float*>(amax), static_cast<const unsigned*>(tensor_amax),
                            static_cast<const unsigned long long*>(flag), !opt.allow_nonfinite);
    });
  });
}

}  // namespace detail

/// Quantizes the row-major `q.rows` x `q.cols` device matrix `x` (dtype `xt`) into the device
/// storage of `q` (its codes and scales, in `q.layout`), asynchronously on `stream`, exactly as
/// host::quantize_scaled_into does. nvfp4 stores its per-tensor float32 at `q.global_scale_device`
/// (required for nvfp4; `q.global_scale` is not read). `workspace` (device memory,
/// `quantize_scaled_workspace_size(q)` bytes, 16-byte aligned) is scratch and afterwards holds the
/// input status read by `scaled_input_status`: if the input holds NaN or Inf and
/// `opt.allow_nonfinite` is false, nothing at all is written (the tile statistics pass reads the
/// whole input before anything is stored, so `opt.untouched_on_error` has nothing to save here).
inline status quantize_scaled(const void* x, dtype xt, const scaled_view& q, void* workspace, std::size_t workspace_bytes,
                              cudaStream_t stream = nullptr, const options& opt = {}) {
  return detail::quantize_scaled_ctas(x, xt, q, workspace, workspace_bytes, stream, opt, detail::stream_max_ctas);
}

/// After `quantize_scaled` on `stream`: waits for it and reports non-finite input (errc::non_finite
/// with the first bad row-major index; nothing was written) or ok (with `allow_nonfinite` the
/// status is always ok).
inline status scaled_input_status(const void* workspace, cudaStream_t stream = nullptr) {
  LOWBIT_TRY(detail::check_not_null(workspace, "cuda::scaled_input_status", "workspace"));
  unsigned long long flag = 0;
  LOWBIT_TRY(detail::copy_to_host(&flag, workspace, sizeof flag, stream));
  if (flag == 0) return {};
  return status::error(errc::non_finite, "cuda::quantize_scaled: input element %llu is not finite; nothing was written", ~flag);
}

namespace detail {

/// cuda::dequantize_scaled after validation, with the unit loop on at most `max_ctas` CTAs (tests
/// pass a few, so that every warp loops over several chunks).
template <class T>
status dequantize_scaled_typed(const scaled_view& q, T* out, cudaStream_t stream, std::int64_t max_ctas = stream_max_ctas) {
  return quant::visit_scaled(q.fmt, [&](auto f) {
    constexpr scaled_format F = decltype(f)::value;
    if (unit_stream<F, T>(q, out)) {
      const scaled_stream s = make_scaled_stream(q, unit_elements<T>);
      const std::int64_t per_cta = std::int64_t{threads_per_block} * stream_unroll;
      std::int64_t ctas = (static_cast<std::int64_t>(s.units) + per_cta - 1) / per_cta;
      ctas = ctas < 1 ? 1 : (ctas > max_ctas ? max_ctas : ctas);
      return launch("dequantize_scaled", scaled_dequantize_kernel<F, T>, ctas, threads_per_block, 0, stream, q, out, s, true);
    }
    return launch_items("dequantize_scaled", scaled_dequantize_kernel<F, T>, quant::block_count(q.numel(), scaled_group<F>), stream, q, out,
                        scaled_stream{}, false);
  });
}

}  // namespace detail

/// Dequantizes `q` (device storage) into `q.rows * q.cols` row-major elements of dtype `ot` at
/// device address `out`, asynchronously on `stream`, exactly as host::dequantize_scaled does
/// (`to_dtype_RNE(f32(decode(code) * factor))`; NaN codes and NaN scales give NaN). nvfp4 reads its
/// per-tensor float32 from `q.global_scale_device` when set, else `q.global_scale`.
inline status dequantize_scaled(const scaled_view& q, void* out, dtype ot, cudaStream_t stream = nullptr) {
  constexpr const char* what = "cuda::dequantize_scaled";
  LOWBIT_TRY(detail::validate_device_scaled(q, what));
  LOWBIT_TRY(detail::check_dtype(ot, what, "output dtype"));
  if (q.numel() == 0) return {};
  LOWBIT_TRY(detail::check_not_null(out, what, "output"));
  LOWBIT_TRY(detail::check_aligned(out, static_cast<std::size_t>(dtype_size(ot)), what, "out"));
  return visit_dtype(ot, [&](auto tag) { return detail::dequantize_scaled_typed(q, static_cast<decltype(tag)*>(out), stream); });
}

}  // namespace cuda
LOWBIT_NAMESPACE_END
