// SPDX-License-Identifier: Apache-2.0
/// @file matmul.cuh
/// @brief The fused low-bit matmul on the device: `y[M, N] = x[M, K] · dequant(W[N, K])ᵀ (+ bias[N])`
///        with W a device quant_view or scaled_view, decoded in registers and never written out. The bits equal
///        the host's lowbit::matmul (include/lowbit/matmul/matmul.hpp) with options.order = warp for
///        every format, dtype, compute mode and shape: both follow the warp order of
///        include/lowbit/matmul/definition.hpp (the host's default, the lanes order, is host-only).
///
/// @code
///   // an engine's linear layer on the GPU: W [out_features, in_features] in nf4 on the device
///   lowbit::matmul_options o;
///   o.compute = lowbit::matmul_compute::bf16;
///   if (auto s = lowbit::cuda::matmul(x_dev, lowbit::dtype::bf16, tokens, W_dev, bias_dev, y_dev,
///                                     lowbit::dtype::bf16, o, stream); !s) fail(s);
/// @endcode
///
/// @par The kernels
/// - `matmul_operands_kernel` writes x's operands (x widened to float32; in bf16 mode rounded to
///   bfloat16 as mm::bf16_operand) to the workspace, M·K floats. With float32 x, compute f32 and a
///   16-byte aligned x it is skipped and the kernel reads x itself.
/// - `matmul_kernel<F, BF16, MB>`: one warp per 2 rows of W, lane t owning runs 32 j + t of both
///   rows (the definition's thread t), MB rows of x at a time (MB = 1 for M = 1, else 8; more rows
///   of x repeat the pass over the warp's W rows). Per run and row: one 128-bit load of 4-bit codes
///   (two of 8-bit codes), one block scale (the nested one rebuilt in the kernel), the values from
///   a shared decode table, and the run's 32 fused multiply-adds in the definition's order per row
///   of x (x as float4 loads). Then the butterfly of `__shfl_down_sync`, the bias, one rounding.
///   The vector path runs when K is a multiple of 32, the codes and x operands are 16-byte aligned
///   and every run lies in one block (blocks of 2^k >= 32 elements, or blocks holding whole rows:
///   per-row and per-tensor scales); any other layout takes the element-by-element path of the
///   same kernel, same order, same bits.
/// - `matmul_scaled_kernel<SF, BF16, MB>`: the same for a block-scaled weight (a device
///   scaled_view: MX, NVFP4, fp8_e4m3_block, either scale layout), with the weight value of the
///   host's mm::scaled_run_decoder, f32(decode(code) * factor), from shared tables of the code
///   values and the one-byte scale codes' factors; its vector path also takes packed FP6 (three
///   64-bit loads per run and row) and tiles of 2^k >= 16 columns.
/// - Large M: the kernel is a CUDA-core kernel (the warp order is a chain of scalar FMAs
///   per thread); it reaches the FMA rate, not tensor-core rates. An engine that wants tensor cores
///   at large M can dequantize to bf16 (cuda::dequantize) and call cuBLAS, with cuBLAS's bits.
///
/// @par Arguments and special values
/// As lowbit::matmul on the host (NaN/Inf propagate, zero blocks contribute zeros, K = 0 gives
/// y = bias or +0, overflow to ±Inf). x: M·K elements of x_dtype; bias: N elements of y_dtype or
/// null; y: M·N elements of y_dtype; all device pointers aligned to their element size.
/// `options.threads`, `simd` and `avx512` are host settings and are ignored here. A NaN result's
/// sign and payload are unspecified, as on the host (fma.rn.ftz returns the canonical NaN).
#pragma once

#include <lowbit/matmul/definition.hpp>
#include <lowbit/matmul/matmul.hpp>
#include <lowbit/quant_tensor.hpp>

#include "blockscaled.cuh"
#include "blockwise.cuh"
#include "detail/arch.cuh"
#include "detail/launch.cuh"
#include "memory.cuh"

#include <cstddef>
#include <cstdint>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// Rows of W one warp of matmul_kernel computes (sharing x's operands between them).
inline constexpr int mm_warp_rows = 2;
/// Rows of W one CTA computes.
inline constexpr int mm_cta_rows = mm_warp_rows * threads_per_block / 32;
/// Rows of x one pass of the batched kernel holds (MB).
inline constexpr int mm_batch_rows = 8;

/// Arguments of matmul_kernel.
struct matmul_args {
  quant_view q;
  const float* x = nullptr;    ///< operands: M rows of K floats (row stride K)
  const void* bias = nullptr;  ///< N elements of yt, or null
  void* y = nullptr;           ///< M rows of N elements of yt
  std::int64_t M = 0, N = 0, K = 0;
  dtype yt = dtype::f32;
  bool vector = false;      ///< the 128-bit path (see cuda::matmul)
  bool whole_rows = false;  ///< vector path: every row lies in one block (row_block), else blocks of 2^shift
  unsigned shift = 0;       ///< vector path: the block of element k of row n is row_block + ((row_offset + k) >> shift)
};

/// Operands of x: `count` elements widened to float32 and, in bf16 mode, rounded as mm::bf16_operand.
template <class TX>
__global__ void __launch_bounds__(threads_per_block) matmul_operands_kernel(const TX* x, std::int64_t count, bool bf16, float* out) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * threads_per_block;
  for (std::int64_t i = global_thread(); i < count; i += stride) {
    float v;
    if constexpr (std::is_same<TX, f16>::value) {
      v = half_bits_to_float(x[i].bits);
    } else {
      v = load_float(x + i);
    }
    out[i] = bf16 ? mm::bf16_operand(v) : v;
  }
}

/// The block scale of block b: stored, or rebuilt from the nested codes (quant::nested_scale).
__device__ __forceinline__ float mm_block_scale(const quant_view& q, std::int64_t b, const float* nested_table, float offset) {
  return q.nested() ? quant::nested_scale(nested_table[q.nested_codes[b]], q.nested_scales[b / quant::nested_block_size], offset)
                    : q.scales[b];
}

/// w as an operand of the mode: itself (f32), or rounded to bfloat16 (bf16, mm::bf16_operand).
template <bool BF16>
__device__ __forceinline__ float mm_operand(float w) {
  if constexpr (BF16) {
    return mm::bf16_operand(w);
  } else {
    return w;
  }
}

/// One step of a thread's chain: fma (f32) or fma.rn.ftz (bf16; its operands are never subnormal,
/// so it is mm::fma_ftz).
template <bool BF16>
__device__ __forceinline__ float mm_step(float x, float w, float s) {
  if constexpr (BF16) {
    return fma_rn_ftz(x, w, s);
  } else {
    return fma_rn(x, w, s);
  }
}

/// 32-bit word i (0..3) of v.
__device__ __forceinline__ unsigned mm_word(const uint4& v, int i) { return i == 0 ? v.x : (i == 1 ? v.y : (i == 2 ? v.z : v.w)); }

/// The 4 values w of a quad as operands of the mode: themselves (f32), or rounded to bfloat16 as
/// mm::bf16_operand (two pack_operand_bf16x2 conversions, the halves widened back).
template <bool BF16>
__device__ __forceinline__ void mm_operand_quad(float* w) {
  if constexpr (BF16) {
    LOWBIT_UNROLL
    for (int e = 0; e < 4; e += 2) {
      const unsigned p = pack_operand_bf16x2(w[e + 1], w[e]);
      w[e] = __uint_as_float(p << 16);
      w[e + 1] = __uint_as_float(p & 0xFFFF0000u);
    }
  }
}

/// The 4 values of elements 4 d .. 4 d + 3 of a run from its code words `cw` (one uint4 of 4-bit
/// codes, two of 8-bit codes), decoded with the block's scale and zero point, as operands.
template <format F, bool BF16>
__device__ __forceinline__ void mm_decode_quad(const uint4* cw, int d, float scale, int zp, const stream_table_entry<F>* table, float* w) {
  if constexpr (info(F).bits == 4) {
    const unsigned half = mm_word(cw[0], d >> 1) >> (16 * (d & 1));
    const float2 p0 = table[half & 0xFFu], p1 = table[(half >> 8) & 0xFFu];
    w[0] = quant::decode_element<F>(p0.x, scale, zp);
    w[1] = quant::decode_element<F>(p0.y, scale, zp);
    w[2] = quant::decode_element<F>(p1.x, scale, zp);
    w[3] = quant::decode_element<F>(p1.y, scale, zp);
  } else {
    // scalar selects (d may be a loop variable): a select of the uint4 itself would put the code
    // words in local memory
    const unsigned lo = mm_word(cw[0], d & 3), hi = mm_word(cw[1], d & 3);
    const unsigned word = (d >> 2) != 0 ? hi : lo;
    LOWBIT_UNROLL
    for (int e = 0; e < 4; ++e) w[e] = quant::decode_element<F>(table[(word >> (8 * e)) & 0xFFu], scale, zp);
  }
  mm_operand_quad<BF16>(w);
}

/// The value (as an operand) of element g of W, element by element (any layout).
template <format F, bool BF16>
__device__ __forceinline__ float mm_element(const quant_view& q, std::int64_t g, float scale, int zp, const stream_table_entry<F>* table) {
  if constexpr (info(F).bits == 4) {
    const float2 p = table[q.codes[g >> 1]];
    return mm_operand<BF16>(quant::decode_element<F>((g & 1) ? p.y : p.x, scale, zp));
  } else {
    return mm_operand<BF16>(quant::decode_element<F>(table[q.codes[g]], scale, zp));
  }
}

/// y[m, n] = s + bias[n] rounded to the output dtype (a: matmul_args or matmul_scaled_args).
template <class A>
__device__ __forceinline__ void mm_store(const A& a, std::int64_t m, std::int64_t n, float s) {
  const std::int64_t i = m * a.N + n;
  switch (a.yt) {
    case dtype::f32:
      if (a.bias) s = lowbit::detail::add_rn(s, static_cast<const float*>(a.bias)[n]);
      static_cast<float*>(a.y)[i] = s;
      break;
    case dtype::f16:
      if (a.bias) s = lowbit::detail::add_rn(s, half_bits_to_float(static_cast<const f16*>(a.bias)[n].bits));
      static_cast<f16*>(a.y)[i] = round_to<f16>(s);
      break;
    case dtype::bf16:
      if (a.bias) s = lowbit::detail::add_rn(s, to_float(static_cast<const bf16*>(a.bias)[n]));
      static_cast<bf16*>(a.y)[i] = round_to<bf16>(s);
      break;
  }
}

/// The chain steps of quad d of a run (elements 4 d .. 4 d + 3, values w[b] of the warp's 2 rows of
/// W) for the mc rows of x at xr (row stride K), in the definition's order: f32 in element order,
/// bf16 in pairs with the odd element first.
template <bool BF16, int MB>
__device__ __forceinline__ void mm_quad_steps(float (&acc)[MB][2], const float* xr, std::int64_t K, int mc, int d, const float (&w)[2][4]) {
  LOWBIT_UNROLL
  for (int m = 0; m < MB; ++m) {
    if (MB == 1 || m < mc) {
      const float4 xv = load_vector<float4>(xr + m * K + 4 * d);
      LOWBIT_UNROLL
      for (int b = 0; b < 2; ++b) {
        if constexpr (BF16) {  // pairs, the odd element first
          acc[m][b] = mm_step<true>(xv.y, w[b][1], acc[m][b]);
          acc[m][b] = mm_step<true>(xv.x, w[b][0], acc[m][b]);
          acc[m][b] = mm_step<true>(xv.w, w[b][3], acc[m][b]);
          acc[m][b] = mm_step<true>(xv.z, w[b][2], acc[m][b]);
        } else {
          acc[m][b] = mm_step<false>(xv.x, w[b][0], acc[m][b]);
          acc[m][b] = mm_step<false>(xv.y, w[b][1], acc[m][b]);
          acc[m][b] = mm_step<false>(xv.z, w[b][2], acc[m][b]);
          acc[m][b] = mm_step<false>(xv.w, w[b][3], acc[m][b]);
        }
      }
    }
  }
}

/// The chain steps of the element pair at xr (w[0]; w[1] when `odd`, the pair is whole) of row b of
/// the warp for the mc rows of x (row stride K), in the definition's order.
template <bool BF16, int MB>
__device__ __forceinline__ void mm_pair_steps(float (&acc)[MB][2], int b, const float* xr, std::int64_t K, int mc, bool odd, const float (&w)[2]) {
  LOWBIT_UNROLL
  for (int m = 0; m < MB; ++m) {
    if (MB == 1 || m < mc) {
      const float* xm = xr + m * K;
      if constexpr (BF16) {  // the odd element first
        if (odd) acc[m][b] = mm_step<true>(xm[1], w[1], acc[m][b]);
        acc[m][b] = mm_step<true>(xm[0], w[0], acc[m][b]);
      } else {
        acc[m][b] = mm_step<false>(xm[0], w[0], acc[m][b]);
        if (odd) acc[m][b] = mm_step<false>(xm[1], w[1], acc[m][b]);
      }
    }
  }
}

/// The end of a pass: each chain's butterfly of `__shfl_down_sync`, then lane 0 stores rows m0 ..
/// m0 + mc - 1 of y for the warp's `rows` rows of W.
template <int MB, class A>
__device__ __forceinline__ void mm_reduce_store(const A& a, float (&acc)[MB][2], int mc, std::int64_t m0, const std::int64_t (&row)[2], int rows,
                                                int lane) {
  LOWBIT_UNROLL
  for (int m = 0; m < MB; ++m) {
    if (m < mc) {
      LOWBIT_UNROLL
      for (int b = 0; b < 2; ++b) {
        float s = acc[m][b];
        LOWBIT_UNROLL
        for (int h = 16; h >= 1; h >>= 1) s = lowbit::detail::add_rn(s, __shfl_down_sync(0xFFFFFFFFu, s, h));
        if (lane == 0 && b < rows) mm_store(a, m0 + m, row[b], s);
      }
    }
  }
}

/// The fused matmul of 2 rows of W per warp (see the file comment), MB rows of x per pass: thread
/// t's chain over runs 32 j + t in the definition's warp order, then the butterfly.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 1000
#  define LOWBIT_MM_GEMV_MIN_CTAS_ 3  // sm_100's GEMV needs 72 registers to keep a run's x in flight without spills
#else
#  define LOWBIT_MM_GEMV_MIN_CTAS_ 4
#endif
template <format F, bool BF16, int MB>
__global__ void __launch_bounds__(threads_per_block, MB == 1 ? LOWBIT_MM_GEMV_MIN_CTAS_ : 1) matmul_kernel(matmul_args a) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr int CW = info(F).bits == 4 ? 1 : 2;  // 128-bit code words per run
  LOWBIT_SHARED(stream_table_entry<F>[256], table);
  LOWBIT_SHARED(float[256], nested_table);
  const quant_view& q = a.q;
  fill_stream_tables<F>(q, table, nested_table);
  __syncthreads();
  const float offset = q.nested() ? (q.nested_offset_device ? *q.nested_offset_device : q.nested_offset) : 0.0f;
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const std::int64_t n0 = (static_cast<std::int64_t>(blockIdx.x) * (threads_per_block / 32) + (threadIdx.x >> 5)) * mm_warp_rows;
  if (n0 >= a.N) return;
  const int rows = n0 + 1 < a.N ? 2 : 1;
  const std::int64_t K = a.K, bs = q.block_size;
  const std::int64_t row[2] = {n0, rows == 2 ? n0 + 1 : n0};  // a lone last row is computed twice, stored once
  for (std::int64_t m0 = 0; m0 < a.M; m0 += MB) {
    const int mc = a.M - m0 < MB ? static_cast<int>(a.M - m0) : MB;
    const float* x0 = a.x + m0 * K;
    float acc[MB][2];
    LOWBIT_UNROLL
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = 0.0f;
    if (a.vector) {
      // per row: its code words and its first block, then 32-bit offsets (the launcher bounds
      // K < 2^31 and, for blocks of 2^k, the block size to 2^31: offset + 32 r < 2^32)
      const uint4* crow[2];
      std::int64_t row_block[2];
      unsigned boff[2];
      LOWBIT_UNROLL
      for (int b = 0; b < 2; ++b) {
        const std::int64_t g = row[b] * K;
        row_block[b] = g / bs;
        boff[b] = a.whole_rows ? 0u : static_cast<unsigned>(g - row_block[b] * bs);
        crow[b] = reinterpret_cast<const uint4*>(q.codes + code_bytes(F, g));
      }
      const unsigned runs = static_cast<unsigned>(K / mm::run_elements);
      for (unsigned r = static_cast<unsigned>(lane); r < runs; r += 32u) {
        uint4 cw[2][CW];
        float scale[2];
        int zp[2];
        LOWBIT_UNROLL
        for (int b = 0; b < 2; ++b) {
          LOWBIT_UNROLL
          for (int c = 0; c < CW; ++c) cw[b][c] = load_vector<uint4>(crow[b] + r * CW + c);
          const std::int64_t blk = row_block[b] + ((boff[b] + mm::run_elements * r) >> a.shift);
          scale[b] = mm_block_scale(q, blk, nested_table, offset);
          zp[b] = info(F).zero_point ? q.zero_points[blk] : 0;
        }
        const float* xr = x0 + mm::run_elements * r;
        // the GEMV unrolls the run; the batched kernel keeps 2 quads of its MB rows of x in flight
        // (all 8 would hold MB x 32 values of x in registers and spill)
#if defined(__CUDA_ARCH__)
#  pragma unroll(MB == 1 ? 8 : 2)
#endif
        for (int d = 0; d < mm::run_elements / 4; ++d) {
          float w[2][4];
          LOWBIT_UNROLL
          for (int b = 0; b < 2; ++b) mm_decode_quad<F, BF16>(cw[b], d, scale[b], zp[b], table, w[b]);
          mm_quad_steps<BF16, MB>(acc, xr, K, mc, d, w);
        }
      }
    } else {
      // any layout: element pairs (2p, 2p + 1) of each run, the block found once per run and
      // followed across its ends; loops kept rolled (this path is for unusual layouts)
      for (std::int64_t k0 = mm::run_elements * static_cast<std::int64_t>(lane); k0 < K; k0 += mm::run_elements * 32) {
        const int len = K - k0 < mm::run_elements ? static_cast<int>(K - k0) : mm::run_elements;
        LOWBIT_UNROLL
        for (int b = 0; b < 2; ++b) {
          const std::int64_t g0 = row[b] * K + k0;
          std::int64_t blk = g0 / bs, off = g0 - blk * bs;
          float scale = mm_block_scale(q, blk, nested_table, offset);
          int zp = info(F).zero_point ? q.zero_points[blk] : 0;
#if defined(__CUDA_ARCH__)
#  pragma unroll 1
#endif
          for (int e = 0; e < len; e += 2) {
            float w[2] = {0.0f, 0.0f};
            LOWBIT_UNROLL
            for (int h = 0; h < 2; ++h) {
              if (e + h < len) {
                if (off == bs) {
                  ++blk;
                  off = 0;
                  scale = mm_block_scale(q, blk, nested_table, offset);
                  zp = info(F).zero_point ? q.zero_points[blk] : 0;
                }
                w[h] = mm_element<F, BF16>(q, g0 + e + h, scale, zp, table);
                ++off;
              }
            }
            mm_pair_steps<BF16, MB>(acc, b, x0 + k0 + e, K, mc, e + 1 < len, w);
          }
        }
      }
    }
    mm_reduce_store<MB>(a, acc, mc, m0, row, rows, lane);
  }
}

/// Arguments of matmul_scaled_kernel.
struct matmul_scaled_args {
  scaled_view q;
  const float* x = nullptr;    ///< operands: M rows of K floats (row stride K)
  const void* bias = nullptr;  ///< N elements of yt, or null
  void* y = nullptr;           ///< M rows of N elements of yt
  std::int64_t M = 0, N = 0, K = 0;
  dtype yt = dtype::f32;
  bool vector = false;     ///< the 128-bit path (see cuda::matmul for a scaled_view)
  unsigned tile_shift = 0;  ///< vector path: log2 of the tile columns (16, 32, 64, 128, ...)
};

/// The factor of the block-scaled weight tile whose scale is at index s: the float32 scale
/// (fp8_e4m3_block), else the shared table `factors` of the factor of every one-byte scale code.
template <scaled_format SF>
__device__ __forceinline__ float mm_tile_factor(const scaled_view& q, std::int64_t s, const float* factors) {
  if constexpr (SF == scaled_format::fp8_e4m3_block) {
    return static_cast<const float*>(q.scales)[s];
  } else {
    return factors[static_cast<const std::uint8_t*>(q.scales)[s]];
  }
}

/// A run of 32 packed FP6 codes (24 bytes at `src`, 8-byte aligned; code k at bits 6 k .. 6 k + 5
/// of the little-endian group, as codecs::unpack_fp6 reads it) as 32 bytes, one code per byte: the
/// two 8-bit code words the vector path decodes.
__device__ __forceinline__ void mm_unpack_fp6_run(const uint2* src, uint4& lo, uint4& hi) {
  unsigned v[6];
  LOWBIT_UNROLL
  for (int j = 0; j < 3; ++j) {
    const uint2 p = load_vector<uint2>(src + j);
    v[2 * j] = p.x;
    v[2 * j + 1] = p.y;
  }
  unsigned o[8];
  LOWBIT_UNROLL
  for (int d = 0; d < 8; ++d) {  // quad d: bits 24 d .. 24 d + 23
    const int i = 24 * d / 32, sh = 24 * d % 32;
    const unsigned u = (v[i] >> sh) | (sh > 8 ? v[i + 1] << (32 - sh) : 0u);
    o[d] = (u & 0x3Fu) | ((u << 2) & 0x3F00u) | ((u << 4) & 0x3F0000u) | ((u << 6) & 0x3F000000u);
  }
  lo = make_uint4(o[0], o[1], o[2], o[3]);
  hi = make_uint4(o[4], o[5], o[6], o[7]);
}

/// The fused matmul with a block-scaled weight (MX, NVFP4, fp8_e4m3_block): matmul_kernel's warps,
/// passes and order (mm_quad_steps, mm_pair_steps, mm_reduce_store), with the weight value
/// `f32(decode(code) * factor)` of host matmul's scaled_run_decoder, decoded through shared tables
/// of the codes' values (FP4: of each code byte's pair) and (one-byte scales) of the 256 scale
/// codes' factors. The vector path (K a multiple of 32; tiles of 2^k >= 16 columns, so each half of
/// a run lies in one tile): per run and row, its codes as 128-bit loads (packed FP6: three 64-bit
/// loads, spread to a byte per code) and the factors of its two halves. Any other layout: element
/// by element, the tile followed along the run.
/// (The FP6 GEMV needs up to 80 registers to spread a run's codes without spills, and on sm_75
/// so does the NVFP4 GEMV with its two factors per run: 3 CTAs per SM.)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#  define LOWBIT_MM_SCALED_SM75_ true
#else
#  define LOWBIT_MM_SCALED_SM75_ false
#endif
template <scaled_format SF, bool BF16, int MB>
__global__ void __launch_bounds__(threads_per_block,
                                  MB == 1 ? (info(SF).bits == 6 || (SF == scaled_format::nvfp4 && LOWBIT_MM_SCALED_SM75_) ? 3 : LOWBIT_MM_GEMV_MIN_CTAS_) : 1)
    matmul_scaled_kernel(matmul_scaled_args a) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  using codec = quant::scaled_codec<SF>;
  constexpr int bits = info(SF).bits;
  constexpr int CW = bits == 4 ? 1 : 2;  // 128-bit code words per run (vector path; FP6: a byte per code)
  LOWBIT_SHARED(float[256], table);
  LOWBIT_SHARED(float2[bits == 4 ? 256 : 1], pairs);  // FP4: the values of a code byte's two codes, low nibble first
  LOWBIT_SHARED(float[SF == scaled_format::fp8_e4m3_block ? 1 : 256], factors);
  const scaled_view& q = a.q;
  fill_scaled_tables<SF>(q, table, SF == scaled_format::fp8_e4m3_block ? nullptr : factors);
  if constexpr (bits == 4) {
    for (int c = static_cast<int>(threadIdx.x); c < 256; c += threads_per_block)
      pairs[c] = make_float2(codec::decode(static_cast<std::uint8_t>(c & 15)), codec::decode(static_cast<std::uint8_t>(c >> 4)));
  }
  __syncthreads();
  const int lane = static_cast<int>(threadIdx.x & 31u);
  const std::int64_t n0 = (static_cast<std::int64_t>(blockIdx.x) * (threads_per_block / 32) + (threadIdx.x >> 5)) * mm_warp_rows;
  if (n0 >= a.N) return;
  const int rows = n0 + 1 < a.N ? 2 : 1;
  const std::int64_t K = a.K, tr = q.tile.rows, tc = q.tile.cols;
  const std::int64_t row[2] = {n0, rows == 2 ? n0 + 1 : n0};  // a lone last row is computed twice, stored once
  const bool packed6 = bits == 6 && q.fp6 == fp6_packing::packed;
  for (std::int64_t m0 = 0; m0 < a.M; m0 += MB) {
    const int mc = a.M - m0 < MB ? static_cast<int>(a.M - m0) : MB;
    const float* x0 = a.x + m0 * K;
    float acc[MB][2];
    LOWBIT_UNROLL
    for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = 0.0f;
    if (a.vector) {
      // per row: its codes and the index of its first scale (scaled_view::scale_row_base)
      const std::uint8_t* crow[2];
      std::int64_t base[2];
      LOWBIT_UNROLL
      for (int b = 0; b < 2; ++b) {
        crow[b] = q.codes + (packed6 ? row[b] * K / 4 * 3 : row[b] * K * (bits == 4 ? 4 : 8) / 8);
        base[b] = q.scale_row_base(row[b] / tr);
      }
      const unsigned runs = static_cast<unsigned>(K / mm::run_elements);
      for (unsigned r = static_cast<unsigned>(lane); r < runs; r += 32u) {
        uint4 cw[2][CW];
        float f[2][2];
        LOWBIT_UNROLL
        for (int b = 0; b < 2; ++b) {
          if (packed6) {
            mm_unpack_fp6_run(reinterpret_cast<const uint2*>(crow[b]) + 3 * r, cw[b][0], cw[b][CW - 1]);
          } else {
            LOWBIT_UNROLL
            for (int c = 0; c < CW; ++c) cw[b][c] = load_vector<uint4>(reinterpret_cast<const uint4*>(crow[b]) + r * CW + c);
          }
          LOWBIT_UNROLL
          for (int h = 0; h < 2; ++h) {
            const unsigned tj = (mm::run_elements * r + 16u * h) >> a.tile_shift;
            f[b][h] = mm_tile_factor<SF>(q, base[b] + q.scale_column_offset(tj), factors);
          }
        }
        const float* xr = x0 + mm::run_elements * r;
#if defined(__CUDA_ARCH__)
#  pragma unroll(MB == 1 ? 8 : 2)
#endif
        for (int d = 0; d < mm::run_elements / 4; ++d) {
          float w[2][4];
          LOWBIT_UNROLL
          for (int b = 0; b < 2; ++b) {
            // the quad's 4 codes: 16 bits of FP4 codes (low nibble first), or a word of 8-bit codes
            // (FP6: the table ignores bits 7..6)
            const unsigned word = bits == 4 ? mm_word(cw[b][0], d >> 1) >> (16 * (d & 1))
                                            : ((d >> 2) != 0 ? mm_word(cw[b][CW - 1], d & 3) : mm_word(cw[b][0], d & 3));
            const float fq = (d >> 2) != 0 ? f[b][1] : f[b][0];  // a select: d is a loop variable when MB > 1
            if constexpr (bits == 4) {
              const float2 p0 = pairs[word & 0xFFu], p1 = pairs[(word >> 8) & 0xFFu];
              w[b][0] = lowbit::detail::mul_rn(p0.x, fq);
              w[b][1] = lowbit::detail::mul_rn(p0.y, fq);
              w[b][2] = lowbit::detail::mul_rn(p1.x, fq);
              w[b][3] = lowbit::detail::mul_rn(p1.y, fq);
            } else {
              LOWBIT_UNROLL
              for (int e = 0; e < 4; ++e) w[b][e] = lowbit::detail::mul_rn(table[(word >> (8 * e)) & 0xFFu], fq);
            }
            mm_operand_quad<BF16>(w[b]);
          }
          mm_quad_steps<BF16, MB>(acc, xr, K, mc, d, w);
        }
      }
    } else {
      // any layout: element pairs of each run, the tile found once per run and followed along it
      for (std::int64_t k0 = mm::run_elements * static_cast<std::int64_t>(lane); k0 < K; k0 += mm::run_elements * 32) {
        const int len = K - k0 < mm::run_elements ? static_cast<int>(K - k0) : mm::run_elements;
        LOWBIT_UNROLL
        for (int b = 0; b < 2; ++b) {
          const std::int64_t g0 = row[b] * K + k0, sbase = q.scale_row_base(row[b] / tr);
          std::int64_t tj = k0 / tc, end = (tj + 1) * tc;
          float f = mm_tile_factor<SF>(q, sbase + q.scale_column_offset(tj), factors);
#if defined(__CUDA_ARCH__)
#  pragma unroll 1
#endif
          for (int e = 0; e < len; e += 2) {
            float w[2] = {0.0f, 0.0f};
            LOWBIT_UNROLL
            for (int h = 0; h < 2; ++h) {
              if (e + h < len) {
                if (k0 + e + h == end) {
                  ++tj;
                  end += tc;
                  f = mm_tile_factor<SF>(q, sbase + q.scale_column_offset(tj), factors);
                }
                w[h] = mm_operand<BF16>(lowbit::detail::mul_rn(table[quant::scaled_code<SF>(q.codes, g0 + e + h, q.fp6)], f));
              }
            }
            mm_pair_steps<BF16, MB>(acc, b, x0 + k0 + e, K, mc, e + 1 < len, w);
          }
        }
      }
    }
    mm_reduce_store<MB>(a, acc, mc, m0, row, rows, lane);
  }
}

/// Whether `v` is a power of two, and its log2.
inline bool mm_log2(std::int64_t v, unsigned& shift) {
  if (v <= 0 || (v & (v - 1)) != 0) return false;
  shift = 0;
  while ((std::int64_t{1} << shift) < v) ++shift;
  return true;
}

/// Bytes of operand workspace for x (0 when the kernel reads x itself).
inline std::size_t mm_operand_bytes(dtype xt, std::int64_t M, std::int64_t K, const matmul_options& o, const void* x) {
  if (xt == dtype::f32 && o.compute == matmul_compute::f32 && (reinterpret_cast<std::uintptr_t>(x) & 15u) == 0) return 0;
  return static_cast<std::size_t>(M) * static_cast<std::size_t>(K) * sizeof(float);
}

/// Checks M, N, K of a cuda::matmul call (`what`): each >= 0.
inline status mm_check_shape(std::int64_t M, std::int64_t N, std::int64_t K, const char* what) {
  if (M < 0 || N < 0 || K < 0)
    return status::error(errc::invalid_argument, "%s: M, N, K are %lld, %lld, %lld; each must be >= 0", what, static_cast<long long>(M),
                         static_cast<long long>(N), static_cast<long long>(K));
  return {};
}

/// The checks of cuda::matmul's x, y, bias, dtypes, options and workspace after W's (`what`
/// names the call), then x's operands: `ops` = x itself (16-byte aligned float32 x, compute f32)
/// or the workspace that matmul_operands_kernel fills on `stream`. `empty`: M or N is 0, nothing
/// to launch.
inline status mm_operands(const void* x, dtype x_dtype, std::int64_t M, std::int64_t N, std::int64_t K, const void* bias, void* y,
                          dtype y_dtype, const matmul_options& o, void* workspace, std::size_t workspace_bytes, cudaStream_t stream,
                          const char* what, const float*& ops, bool& empty) {
  LOWBIT_TRY(check_dtype(x_dtype, what, "x_dtype"));
  LOWBIT_TRY(check_dtype(y_dtype, what, "y_dtype"));
  if (o.compute != matmul_compute::f32 && o.compute != matmul_compute::bf16)
    return status::error(errc::invalid_argument, "%s: options.compute is %d, not a matmul_compute", what, static_cast<int>(o.compute));
  if (o.order == matmul_order::lanes)
    return status::error(errc::invalid_argument, "%s: options.order is lanes, the host's order; the CUDA kernels compute the warp order (native or warp)", what);
  if (o.order != matmul_order::native && o.order != matmul_order::warp)
    return status::error(errc::invalid_argument, "%s: options.order is %d, not a matmul_order", what, static_cast<int>(o.order));
  empty = M == 0 || N == 0;
  if (empty) return {};
  if (K > 0) LOWBIT_TRY(check_not_null(x, what, "x"));
  LOWBIT_TRY(check_not_null(y, what, "y"));
  LOWBIT_TRY(check_aligned(x, static_cast<std::size_t>(dtype_size(x_dtype)), what, "x"));
  LOWBIT_TRY(check_aligned(y, static_cast<std::size_t>(dtype_size(y_dtype)), what, "y"));
  LOWBIT_TRY(check_aligned(bias, static_cast<std::size_t>(dtype_size(y_dtype)), what, "bias"));
  if (M > (std::int64_t{1} << 40) / (N > K ? N : (K > 0 ? K : 1)))
    return status::error(errc::invalid_argument, "%s: M = %lld rows exceed the kernels' index range", what, static_cast<long long>(M));
  const std::size_t need = K > 0 ? mm_operand_bytes(x_dtype, M, K, o, x) : 0;
  if (need > 0) LOWBIT_TRY(check_workspace(workspace, workspace_bytes, need, what));
  ops = static_cast<const float*>(x);
  if (need == 0) return {};
  auto* out = static_cast<float*>(workspace);
  ops = out;
  const std::int64_t count = M * K;
  std::int64_t ctas = ctas_for(count);
  ctas = ctas > 1024 ? 1024 : ctas;
  const bool bf16 = o.compute == matmul_compute::bf16;
  return visit_dtype(x_dtype, [&](auto tag) {
    using TX = decltype(tag);
    return launch("cuda::matmul operands", matmul_operands_kernel<TX>, ctas, threads_per_block, 0, stream, static_cast<const TX*>(x), count, bf16,
                  out);
  });
}

/// Calls fn(bool_constant<BF16>, integral_constant<int, MB>) with the kernel instantiation of a
/// cuda::matmul call: MB = 1 for M = 1 (the GEMV), else mm_batch_rows.
template <class Fn>
status mm_dispatch(std::int64_t M, bool bf16, Fn&& fn) {
  using one = std::integral_constant<int, 1>;
  using batch = std::integral_constant<int, mm_batch_rows>;
  if (M == 1) return bf16 ? fn(std::true_type{}, one{}) : fn(std::false_type{}, one{});
  return bf16 ? fn(std::true_type{}, batch{}) : fn(std::false_type{}, batch{});
}

}  // namespace detail

/// Bytes of device workspace cuda::matmul needs for M rows of x (dtype xt) of K elements in mode
/// o.compute: M·K float32 operands, or 0 for 16-byte aligned float32 x in f32 mode (pass x to get
/// that answer; without it the bound for any alignment is returned).
inline std::size_t matmul_workspace_size(dtype xt, std::int64_t M, std::int64_t K, const matmul_options& o = {}, const void* x = nullptr) {
  if (M <= 0 || K <= 0) return 0;
  return detail::mm_operand_bytes(xt, M, K, o, x == nullptr ? reinterpret_cast<const void*>(std::uintptr_t{1}) : x);
}

/// The fused matmul on device memory: `y[M, N] = x[M, K] · dequant(W)ᵀ (+ bias[N])` with W a device
/// view of N·K elements (row n = elements n·K .. n·K + K - 1), asynchronously on `stream`; the bits
/// equal lowbit::host::matmul's. `workspace`: device memory of at least
/// matmul_workspace_size(x_dtype, M, K, o, x) bytes, 16-byte aligned (may be null when that is 0).
/// Errors (nothing launched): a view that fails validation, M/N/K negative or not N·K = W.numel, a
/// dtype or compute mode outside the enumerations, null or misaligned x, y, bias or workspace.
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, std::int64_t N, std::int64_t K, const quant_view& W, const void* bias,
                     void* y, dtype y_dtype, const matmul_options& o, void* workspace, std::size_t workspace_bytes,
                     cudaStream_t stream = nullptr) {
  const char* what = "cuda::matmul";
  LOWBIT_TRY(detail::validate_device_view(W, what));
  LOWBIT_TRY(detail::mm_check_shape(M, N, K, what));
  if ((N != 0 && K > W.numel / N) || W.numel != N * K)
    return status::error(errc::invalid_argument, "%s: W holds %lld elements, not N * K = %lld * %lld", what, static_cast<long long>(W.numel),
                         static_cast<long long>(N), static_cast<long long>(K));
  bool empty = false;
  detail::matmul_args a;
  LOWBIT_TRY(detail::mm_operands(x, x_dtype, M, N, K, bias, y, y_dtype, o, workspace, workspace_bytes, stream, what, a.x, empty));
  if (empty) return {};
  const bool bf16 = o.compute == matmul_compute::bf16;
  a.q = W;
  a.bias = bias;
  a.y = y;
  a.M = M;
  a.N = N;
  a.K = K;
  a.yt = y_dtype;
  // the vector path: K a multiple of 32 below 2^31, 16-byte aligned codes and operands, every run
  // in one block (blocks of 2^k, 32 <= 2^k <= 2^31, or blocks holding whole rows)
  unsigned shift = 0;
  const bool pow2 = detail::mm_log2(W.block_size, shift) && W.block_size >= mm::run_elements && shift <= 31;
  a.whole_rows = !pow2 && K > 0 && W.block_size % K == 0;
  a.shift = a.whole_rows ? 31u : shift;
  a.vector = K % mm::run_elements == 0 && K < (std::int64_t{1} << 31) && (reinterpret_cast<std::uintptr_t>(W.codes) & 15u) == 0 &&
             (reinterpret_cast<std::uintptr_t>(a.x) & 15u) == 0 && (pow2 || a.whole_rows);
  const std::int64_t ctas = (N + detail::mm_cta_rows - 1) / detail::mm_cta_rows;
  return visit_format(W.fmt, [&](auto f) -> status {
    return detail::mm_dispatch(M, bf16, [&](auto mode, auto mb) {
      return detail::launch(what, detail::matmul_kernel<decltype(f)::value, decltype(mode)::value, decltype(mb)::value>, ctas,
                            detail::threads_per_block, 0, stream, a);
    });
  });
}

/// The fused matmul with a block-scaled device weight (MX, NVFP4, fp8_e4m3_block; 1-D or 2-D tiles,
/// either scale layout): `y[M, N] = x[M, K] · dequant(W)ᵀ (+ bias[N])`, W a device scaled_view of N
/// rows of K columns, w[n, k] the float32 value cuda::dequantize_scaled writes (NaN for a NaN
/// scale or code; nvfp4's per-tensor float32 read from `W.global_scale_device` when set, else
/// `W.global_scale`). The bits equal lowbit::host::matmul's for the same view on the host;
/// otherwise as the quant_view overload (workspace: matmul_workspace_size(x_dtype, M, K, o, x)).
/// Errors (nothing launched): a view that fails validation or is not N x K, and the quant_view
/// overload's.
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, std::int64_t N, std::int64_t K, const scaled_view& W, const void* bias,
                     void* y, dtype y_dtype, const matmul_options& o, void* workspace, std::size_t workspace_bytes,
                     cudaStream_t stream = nullptr) {
  const char* what = "cuda::matmul";
  LOWBIT_TRY(detail::validate_device_scaled(W, what));
  LOWBIT_TRY(detail::mm_check_shape(M, N, K, what));
  if (W.rows != N || W.cols != K)
    return status::error(errc::invalid_argument, "%s: W is %lld x %lld, not N x K = %lld x %lld", what, static_cast<long long>(W.rows),
                         static_cast<long long>(W.cols), static_cast<long long>(N), static_cast<long long>(K));
  bool empty = false;
  detail::matmul_scaled_args a;
  LOWBIT_TRY(detail::mm_operands(x, x_dtype, M, N, K, bias, y, y_dtype, o, workspace, workspace_bytes, stream, what, a.x, empty));
  if (empty) return {};
  a.q = W;
  a.bias = bias;
  a.y = y;
  a.M = M;
  a.N = N;
  a.K = K;
  a.yt = y_dtype;
  // the vector path: K a multiple of 32 below 2^31, 16-byte aligned codes (8 for packed FP6) and
  // operands, tiles of 2^k >= 16 columns
  const bool pow2 = detail::mm_log2(W.tile.cols, a.tile_shift) && W.tile.cols >= 16;
  const std::uintptr_t code_align = info(W.fmt).bits == 6 && W.fp6 == fp6_packing::packed ? 8 : 16;
  a.vector = K % mm::run_elements == 0 && K < (std::int64_t{1} << 31) && reinterpret_cast<std::uintptr_t>(W.codes) % code_align == 0 &&
             (reinterpret_cast<std::uintptr_t>(a.x) & 15u) == 0 && pow2;
  const std::int64_t ctas = (N + detail::mm_cta_rows - 1) / detail::mm_cta_rows;
  return quant::visit_scaled(W.fmt, [&](auto f) -> status {
    return detail::mm_dispatch(M, o.compute == matmul_compute::bf16, [&](auto mode, auto mb) {
      return detail::launch(what, detail::matmul_scaled_kernel<decltype(f)::value, decltype(mode)::value, decltype(mb)::value>, ctas,
                            detail::threads_per_block, 0, stream, a);
    });
  });
}

/// `y[M, N] = x[M, K] · dequant(W)ᵀ (+ bias[N])` for a device quant_tensor W of shape [N, K], on
/// `stream`; the workspace (matmul_workspace_size) comes from the stream-ordered allocator and is
/// released before return (the call does not wait for the kernels). See the raw-view overload.
inline status matmul(const void* x, dtype x_dtype, std::int64_t M, const quant_tensor& W, const void* bias, void* y, dtype y_dtype,
                     const matmul_options& o = {}, cudaStream_t stream = nullptr) {
  if (W.location() != memory_space::device)
    return status::error(errc::invalid_argument, "cuda::matmul: the weight W lives in host memory; use lowbit::matmul, or cuda::to_device");
  if (W.shape().size() != 2)
    return status::error(errc::invalid_argument, "cuda::matmul: the weight W must have shape [N, K] (2 dimensions), it has %zu",
                         W.shape().size());
  const std::int64_t N = W.shape()[0], K = W.shape()[1];
  const std::size_t bytes = M > 0 && N > 0 ? matmul_workspace_size(x_dtype, M, K, o, x) : 0;
  storage<unsigned char> ws;
  if (bytes > 0) LOWBIT_TRY(ws.allocate(bytes, stream_allocator(stream), "cuda::matmul workspace"));
  return matmul(x, x_dtype, M, N, K, W.view(), bias, y, y_dtype, o, ws.data(), bytes, stream);
}

}  // namespace cuda
LOWBIT_NAMESPACE_END
