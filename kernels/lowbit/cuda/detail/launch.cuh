// SPDX-License-Identifier: Apache-2.0
/// @file launch.cuh
/// @brief One launch path for every lowbit kernel: `<<<>>>` under nvcc, the SIMT executor
///        otherwise; the few runtime calls the launchers need (memset, copy to host), each with
///        its SIMT equivalent; and the argument checks the launchers share (null and misaligned
///        pointers, dtypes, workspaces). All return lowbit::status.
#pragma once

#include <lowbit/dtype.hpp>
#include <lowbit/quant/layout.hpp>
#include <lowbit/status.hpp>

#include "arch.cuh"

#include <cstddef>
#include <cstdint>
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

/// CTAs of threads_per_block threads that give `items` threads.
constexpr std::int64_t ctas_for(std::int64_t items) noexcept { return (items + threads_per_block - 1) / threads_per_block; }

/// Launches `kernel` with (at least) one thread per item: ctas_for(items) CTAs of
/// threads_per_block threads, no dynamic shared memory.
template <class... P, class... A>
status launch_items(const char* what, void (*kernel)(P...), std::int64_t items, cudaStream_t stream, A&&... args) {
  return launch(what, kernel, ctas_for(items), threads_per_block, 0, stream, static_cast<A&&>(args)...);
}

/// errc::invalid_argument "<what>: <name> is null" if `p` is null.
inline status check_not_null(const void* p, const char* what, const char* name) {
  if (p == nullptr) return status::error(errc::invalid_argument, "%s: %s is null", what, name);
  return {};
}

/// errc::misaligned if `p` (null passes) is not aligned to `a` bytes.
inline status check_aligned(const void* p, std::size_t a, const char* what, const char* name) {
  if (p != nullptr && (reinterpret_cast<std::uintptr_t>(p) % a) != 0)
    return status::error(errc::misaligned, "%s: %s (%p) is not aligned to %zu bytes", what, name, p, a);
  return {};
}

/// errc::invalid_argument "<what>: <name> <t> is not a lowbit dtype" unless `t` is an enumerator.
inline status check_dtype(dtype t, const char* what, const char* name = "dtype") {
  if (!is_valid(t)) return status::error(errc::invalid_argument, "%s: %s %d is not a lowbit dtype", what, name, static_cast<int>(t));
  return {};
}

/// A launcher's device workspace: not null, 16-byte aligned, at least `need` bytes.
inline status check_workspace(const void* workspace, std::size_t bytes, std::size_t need, const char* what) {
  LOWBIT_TRY(check_not_null(workspace, what, "workspace"));
  LOWBIT_TRY(check_aligned(workspace, 16, what, "workspace"));
  if (bytes < need) return status::error(errc::invalid_argument, "%s: workspace has %zu bytes, needs %zu", what, bytes, need);
  return {};
}

/// Sets `bytes` bytes at device address `p` to `value`, ordered on `stream`.
inline status memset_async(void* p, int value, std::size_t bytes, cudaStream_t stream) {
#if defined(__CUDACC__)
  return from_cuda(cudaMemsetAsync(p, value, bytes, stream), "cudaMemsetAsync");
#else
  (void)stream;
  std::memset(p, value, bytes);
  simt::device_written(p, bytes);
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
