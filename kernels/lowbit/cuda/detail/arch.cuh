// SPDX-License-Identifier: Apache-2.0
/// @file arch.cuh
/// @brief The portability layer under every lowbit kernel. Under nvcc: the CUDA runtime and CUB.
///        Under any other compiler: the CUDA type headers and the SIMT executor
///        (kernels/lowbit/simt/simt.hpp), which runs the same kernel source on the CPU.
///        Kernels use only what this layer provides; nothing device-only appears inline in them.
#pragma once

#include <lowbit/config.hpp>

#if defined(__CUDACC__)
#  include <cuda_runtime.h>
#  include <cub/block/block_reduce.cuh>
#  define LOWBIT_SIMT 0
#else
#  include <cuda_runtime_api.h>
#  include "../../simt/simt.hpp"
#  define LOWBIT_SIMT 1
#endif

#include <cstdint>

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

/// Maximum of non-negative `v` over the CTA; valid in thread 0. `Threads` (a multiple of 32) is the
/// CTA size; every thread must call it. CUB on the device, warp shuffles and shared memory in the
/// SIMT executor.
template <int Threads>
struct block_max {
#if defined(__CUDACC__)
  using cub_reduce = cub::BlockReduce<float, Threads>;
  using temp_storage = typename cub_reduce::TempStorage;
  struct max_op {
    __device__ __forceinline__ float operator()(float a, float b) const { return a > b ? a : b; }
  };
  __device__ __forceinline__ static float reduce(temp_storage& tmp, float v) { return cub_reduce(tmp).Reduce(v, max_op{}); }
#else
  struct temp_storage {
    float warp[Threads / 32];
  };
  static float reduce(temp_storage& tmp, float v) {
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
#endif
};

}  // namespace detail
}  // namespace cuda
LOWBIT_NAMESPACE_END
