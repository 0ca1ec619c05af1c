// SPDX-License-Identifier: Apache-2.0
/// @file arch.cuh
/// @brief The portability layer under every lowbit kernel. Under nvcc: the CUDA runtime.
///        Under any other compiler: the CUDA type headers and the SIMT executor
///        (kernels/lowbit/simt/simt.hpp), which runs the same kernel source on the CPU.
///        Kernels use only what this layer provides; nothing device-only appears inline in them.
#pragma once

#include <lowbit/codecs/minifloat.hpp>
#include <lowbit/config.hpp>
#include <lowbit/dtype.hpp>
#include <lowbit/matmul/definition.hpp>

#if defined(__CUDACC__)
#  include <cuda_runtime.h>
#  define LOWBIT_SIMT 0
#else
#  include <cuda_runtime_api.h>
#  define LOWBIT_SIMT 1
#endif
// LOWBIT_SHARED / LOWBIT_DYNAMIC_SHARED under nvcc; the whole executor otherwise
#include "../../simt/simt.hpp"

#include <cmath>
#include <cstdint>
#include <type_traits>

/// The kernel was written for blocks of `threads` x 1 x 1 threads: a launch with any other block
/// shape stops with an error (`__trap()` on a GPU; a lowbit::simt::error naming both shapes under
/// the executor). Costs one uniform comparison per thread.
#if defined(__CUDACC__)
#  define LOWBIT_ASSUME_BLOCK(threads) \
    do {                                \
      if (blockDim.x != static_cast<unsigned>(threads) || blockDim.y != 1u || blockDim.z != 1u) __trap(); \
    } while (0)
#else
#  define LOWBIT_ASSUME_BLOCK(threads) ::lowbit::simt::detail::assume_block(static_cast<unsigned>(threads), __FILE__, __LINE__)
#endif

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// Threads per CTA of every lowbit kernel.
inline constexpr int threads_per_block = 256;

/// Linear index of thread `thread` of CTA `block` with `dim` threads per CTA, in 64 bits (grids
/// of up to 2^31 - 1 CTAs of 1024 threads pass 2^31 threads).
LOWBIT_HD constexpr std::int64_t linear_index(unsigned block, unsigned dim, unsigned thread) noexcept {
  return static_cast<std::int64_t>(block) * static_cast<std::int64_t>(dim) + static_cast<std::int64_t>(thread);
}

/// Linear thread index within the grid, in 64 bits.
__device__ __forceinline__ std::int64_t global_thread() { return linear_index(blockIdx.x, blockDim.x, threadIdx.x); }

#if LOWBIT_SIMT
#  define LOWBIT_CALLER_SITE_ , const char* file = __builtin_FILE(), int line = __builtin_LINE()
#else
#  define LOWBIT_CALLER_SITE_
#endif

/// One vector load (`V` of 8 or 16 bytes, e.g. uint4: LDG.128) from `p`, which must be aligned to
/// sizeof(V). Under the executor the address is checked first, alignment and bounds (the device
/// allocation or shared memory it points into), and a violation stops the kernel with the caller's
/// file:line: a GPU would fault ("misaligned address", "out of bounds").
template <class V>
__device__ __forceinline__ V load_vector(const void* p LOWBIT_CALLER_SITE_) {
#if LOWBIT_SIMT
  simt::detail::check_vector(p, sizeof(V), false, file, line);
#endif
  return *static_cast<const V*>(p);
}

/// One vector store of `v` to `p` (aligned to sizeof(V)); checked like load_vector. Under the
/// executor a store to device memory is also checked for coalescing when its block ends: the lanes
/// of a warp that make their k-th store at this call site must cover one contiguous range of bytes
/// together (simt::detail::check_coalesced), as a warp-wide store that moves only whole sectors.
template <class V>
__device__ __forceinline__ void store_vector(void* p, const V& v LOWBIT_CALLER_SITE_) {
#if LOWBIT_SIMT
  simt::detail::check_vector(p, sizeof(V), true, file, line);
#endif
  *static_cast<V*>(p) = v;
}

/// store_vector without the coalescing check, for the stores known not to coalesce, each listed in
/// docs/cuda-kernel-budgets.md: a lane writes a group of outputs contiguous to each other, so a
/// warp's stores are strided (the general dequantize_kernel, the block-scaled dequantizer's vector
/// loop), or a thread writes its tile's codes (the block-scaled quantizer's row-tile loop). Every
/// other kernel stores through store_vector and is checked.
template <class V>
__device__ __forceinline__ void store_vector_strided(void* p, const V& v LOWBIT_CALLER_SITE_) {
#if LOWBIT_SIMT
  simt::detail::check_vector(p, sizeof(V), true, file, line, false);  // bounds and alignment only
#endif
  *static_cast<V*>(p) = v;
}

/// Two floats rounded to nearest even onto bfloat16, packed {hi in bits 31..16, lo in 15..0}; NaN
/// gives 0x7FFF: the host engine's float_to_bf16_bits, bit for bit. One `cvt.rn.bf16x2.f32` from
/// sm_80 on (the PTX ISA defines it so; the executor emulates it from that definition, checked over
/// every float32 by kernels_ptx_exhaustive_test); before sm_80, the host engine's conversion.
__device__ __forceinline__ unsigned pack_rn_bf16x2(float hi, float lo) {
#if LOWBIT_SIMT
  return simt::ptx::cvt_rn_bf16x2_f32(hi, lo);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
#else
  return (static_cast<unsigned>(float_to_bf16_bits(hi)) << 16) | float_to_bf16_bits(lo);
#endif
}

/// As pack_rn_bf16x2 for float16 (float_to_f16_bits): one `cvt.rn.f16x2.f32` from sm_80 on.
__device__ __forceinline__ unsigned pack_rn_f16x2(float hi, float lo) {
#if LOWBIT_SIMT
  return simt::ptx::cvt_rn_f16x2_f32(hi, lo);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  unsigned d;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(hi), "f"(lo));
  return d;
#else
  return (static_cast<unsigned>(float_to_f16_bits(hi)) << 16) | float_to_f16_bits(lo);
#endif
}

/// 1 where pack_rn_satfinite_e4m3x2 / pack_rn_satfinite_e5m2x2 are one hardware conversion: from
/// sm_89 on (`cvt.rn.satfinite.e4m3x2.f32` needs sm_89 and PTX ISA 7.8), and under the executor,
/// which emulates that instruction from the PTX ISA, so the SIMT tests prove the sm_89+ path.
#if LOWBIT_SIMT || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890)
#  define LOWBIT_HW_CVT_FP8 1
#else
#  define LOWBIT_HW_CVT_FP8 0
#endif

/// Two floats rounded to nearest even onto OCP E4M3 (e4m3fn), saturated to +-448, packed {hi in
/// bits 15..8, lo in 7..0}: for every non-NaN float32, codecs::e4m3fn::encode<nearest_even,
/// saturate> bit for bit (-0 and negative values that round to zero give 0x80, +-Inf +-448); a NaN
/// gives 0x7F, the codec's NaN code (see the note below). One `cvt.rn.satfinite.e4m3x2.f32`
/// (`F2FP.SATFINITE.E4M3.F32.PACK_AB`) from sm_89 on, emulated by the executor from the PTX ISA's
/// definition (simt::ptx::cvt_rn_satfinite_e4m3x2_f32, checked over every float32 against NVIDIA's
/// __nv_cvt_float2_to_fp8x2 and the codec by kernels_ptx_exhaustive_test); before sm_89 the codec.
/// NaN: the ISA promises "NaN in the destination format". The codec's NaN code 0x7F is what NVIDIA's
/// host conversion (its model of the instruction) gives for every NaN, and a NaN a kernel forms by
/// arithmetic (FMUL of a NaN or of Inf by 0) is the canonical 0x7FFFFFFF, sign clear, on the GPU.
__device__ __forceinline__ unsigned pack_rn_satfinite_e4m3x2(float hi, float lo) {
#if LOWBIT_SIMT
  return simt::ptx::cvt_rn_satfinite_e4m3x2_f32(hi, lo);
#elif LOWBIT_HW_CVT_FP8
  unsigned short d;
  asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(d) : "f"(hi), "f"(lo));
  return d;
#else
  using c = codecs::e4m3fn;
  return static_cast<unsigned>(c::encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(hi)) << 8 |
         c::encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(lo);
#endif
}

/// As pack_rn_satfinite_e4m3x2 for OCP E5M2 (saturated to +-57344: never its Inf; NaN 0x7F):
/// codecs::e5m2::encode<nearest_even, saturate>. One `cvt.rn.satfinite.e5m2x2.f32` from sm_89 on.
__device__ __forceinline__ unsigned pack_rn_satfinite_e5m2x2(float hi, float lo) {
#if LOWBIT_SIMT
  return simt::ptx::cvt_rn_satfinite_e5m2x2_f32(hi, lo);
#elif LOWBIT_HW_CVT_FP8
  unsigned short d;
  asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(d) : "f"(hi), "f"(lo));
  return d;
#else
  using c = codecs::e5m2;
  return static_cast<unsigned>(c::encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(hi)) << 8 |
         c::encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(lo);
#endif
}

/// The float32 value of float16 bits `b`, as lowbit::f16_bits_to_float gives it: one
/// `cvt.f32.f16` on a GPU instead of the portable bit manipulation (the PTX ISA defines the
/// conversion to a wider type as exact); the executor runs the host conversion. Only the payload
/// of a NaN can differ (the hardware returns the canonical NaN): no kernel's result depends on it
/// (every codec gives a NaN one code whatever its payload; the int8 kernels stop at non-finite input).
__device__ __forceinline__ float half_bits_to_float(std::uint16_t b) {
#if LOWBIT_SIMT || !defined(__CUDA_ARCH__)
  return to_float(f16{b});
#else
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
  return f;
#endif
}

/// fma(a, b, c) rounded once to nearest even: FFMA (`__fmaf_rn`, never split or contracted
/// differently), std::fma under the executor.
__device__ __forceinline__ float fma_rn(float a, float b, float c) {
#if LOWBIT_SIMT || !defined(__CUDA_ARCH__)
  return std::fma(a, b, c);
#else
  return __fmaf_rn(a, b, c);
#endif
}

/// `fma.rn.ftz.f32`: fma(a, b, c) rounded once to nearest even, subnormal inputs and result flushed
/// to zeros of their sign (the executor emulates the PTX ISA's definition, simt::ptx). For
/// non-subnormal inputs it equals mm::fma_ftz of the host engine, but for the payload of a NaN.
__device__ __forceinline__ float fma_rn_ftz(float a, float b, float c) {
#if LOWBIT_SIMT
  return simt::ptx::fma_rn_ftz_f32(a, b, c);
#elif defined(__CUDA_ARCH__)
  float d;
  asm("fma.rn.ftz.f32 %0, %1, %2, %3;" : "=f"(d) : "f"(a), "f"(b), "f"(c));
  return d;
#else
  return std::fma(a, b, c);  // nvcc's host pass: compiled, never run (kernels run on the device)
#endif
}

/// Two float32 values as bf16-mode operands of the fused matmul, packed as bfloat16 bits {hi in
/// bits 31..16, lo in 15..0}: mm::bf16_operand_bits of each (a zero or subnormal gives a zero of
/// its sign, others nearest even) but for the payload of a NaN. From sm_80 on: `mul.rn.ftz.f32` by
/// 1 (flushes a subnormal, keeps every other value) then one `cvt.rn.bf16x2.f32`; the executor
/// emulates both from the PTX ISA, and kernels_ptx_exhaustive_test checks the pair over every
/// float32 against mm::bf16_operand_bits and NVIDIA's host conversion.
__device__ __forceinline__ unsigned pack_operand_bf16x2(float hi, float lo) {
#if LOWBIT_SIMT
  return simt::ptx::cvt_rn_bf16x2_f32(simt::ptx::mul_rn_ftz_f32(hi, 1.0f), simt::ptx::mul_rn_ftz_f32(lo, 1.0f));
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  float h, l;
  asm("mul.rn.ftz.f32 %0, %1, 0f3F800000;" : "=f"(h) : "f"(hi));
  asm("mul.rn.ftz.f32 %0, %1, 0f3F800000;" : "=f"(l) : "f"(lo));
  unsigned d;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(h), "f"(l));
  return d;
#else
  return (static_cast<unsigned>(mm::bf16_operand_bits(hi)) << 16) | mm::bf16_operand_bits(lo);
#endif
}

/// `x` rounded to element type T as the host engine's from_float<T> does, with the hardware
/// conversion (the lower half of pack_rn_bf16x2 / pack_rn_f16x2) for the 16-bit types.
template <class T>
__device__ __forceinline__ T round_to(float x) {
  if constexpr (sizeof(T) == 4) {
    return x;
  } else if constexpr (std::is_same<T, bf16>::value) {
    return bf16{static_cast<std::uint16_t>(pack_rn_bf16x2(0.0f, x) & 0xFFFFu)};
  } else {
    return f16{static_cast<std::uint16_t>(pack_rn_f16x2(0.0f, x) & 0xFFFFu)};
  }
}

/// Maximum of non-negative `v` over the CTA; valid in thread 0. `Threads` (a multiple of 32, at
/// most 1024) is the CTA size; every thread must call it. The same code under nvcc and the SIMT
/// executor: warp shuffles, then lane 0 of every warp publishes its warp's maximum in `tmp`, a
/// barrier, and warp 0 reduces those (what cub::BlockReduce's WARP_REDUCTIONS algorithm does, with
/// one shuffle tree per warp). As with CUB's TempStorage, a second reduction that reuses `tmp` must
/// be separated from this one by `__syncthreads()` (warp 0 may still be reading it).
template <int Threads>
struct block_max {
  static_assert(Threads % 32 == 0 && Threads >= 32 && Threads <= 1024, "block_max: Threads must be a multiple of 32 in [32, 1024]");
  struct temp_storage {
    float warp[Threads / 32];
  };
  __device__ __forceinline__ static float reduce(temp_storage& tmp, float v) {
    for (int off = 16; off > 0; off >>= 1) {
      const float o = __shfl_down_sync(0xFFFFFFFFu, v, off);
      v = o > v ? o : v;
    }
    const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
    if (lane == 0) tmp.warp[warp] = v;
    __syncthreads();
    if (warp == 0) {
      v = lane < Threads / 32 ? tmp.warp[lane] : 0.0f;
      for (int off = 16; off > 0; off >>= 1) {
        const float o = __shfl_down_sync(0xFFFFFFFFu, v, off);
        v = o > v ? o : v;
      }
    }
    return v;
  }
};

}  // namespace detail
}  // namespace cuda
LOWBIT_NAMESPACE_END
