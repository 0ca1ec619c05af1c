// SPDX-License-Identifier: Apache-2.0
/// @file launch.cuh
/// @brief One launch path for every lowbit kernel: `<<<>>>` under nvcc, the SIMT executor
///        otherwise; plus the few runtime calls the launchers need (memset, copy to host), each
///        with its SIMT equivalent. All return lowbit::status.
#pragma once

#include <lowbit/status.hpp>

#include "arch.cuh"

#include <cstddef>
#include <cstring>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

#if defined(__CUDACC__)
inline status from_cuda(cudaError_t e, const char* what) noexcept {
  if (e == cudaSuccess) return {};
  return status::error(errc::cuda, "%s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
}
#endif

/// Launches `kernel` on `grid` x `block` threads with `smem` bytes of dynamic shared memory.
template <class... P, class... A>
status launch(const char* what, void (*kernel)(P...), std::int64_t grid, int block, std::size_t smem,
              cudaStream_t stream, A&&... args) {
  if (grid <= 0) return {};
  if (grid > 0x7FFFFFFF)
    return status::error(errc::invalid_argument, "%s: needs %lld CTAs, more than a grid holds (2^31 - 1)", what,
                         static_cast<long long>(grid));
#if defined(__CUDACC__)
  kernel<<<static_cast<unsigned>(grid), static_cast<unsigned>(block), smem, stream>>>(static_cast<A&&>(args)...);
  return from_cuda(cudaPeekAtLastError(), what);
#else
  (void)stream;
  simt::launch(kernel, dim3(static_cast<unsigned>(grid)), dim3(static_cast<unsigned>(block)), smem, static_cast<A&&>(args)...);
  return {};
#endif
}

/// Sets `bytes` bytes at device address `p` to `value`, ordered on `stream`.
inline status memset_async(void* p, int value, std::size_t bytes, cudaStream_t stream) {
#if defined(__CUDACC__)
  return from_cuda(cudaMemsetAsync(p, value, bytes, stream), "cudaMemsetAsync");
#else
  (void)stream;
  std::memset(p, value, bytes);
  return {};
#endif
}

/// Copies `bytes` bytes from device address `src` to host memory, waiting for `stream`.
inline status copy_to_host(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
#if defined(__CUDACC__)
  LOWBIT_TRY(from_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync"));
  return from_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
#else
  (void)stream;
  std::memcpy(dst, src, bytes);
  return {};
#endif
}

}  // namespace detail
}  // namespace cuda
LOWBIT_NAMESPACE_END
