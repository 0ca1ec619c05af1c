// SPDX-License-Identifier: Apache-2.0
/// @file memory.cuh
/// @brief Device storage for `quant_tensor`: the stream-ordered allocator, host <-> device copies,
///        and `quantize` / `dequantize` on device tensors.
///
/// @code
///   cudaStream_t s = ...;
///   const lowbit::allocator dev = lowbit::cuda::stream_allocator(s);
///   lowbit::quant_tensor q;                                     // NF4, block 64, on the device
///   if (auto st = lowbit::cuda::quantize(x_dev, lowbit::dtype::bf16, {4096, 4096}, {}, q, dev, s); !st) fail(st);
///   if (auto st = lowbit::cuda::dequantize(q, y_dev, lowbit::dtype::bf16, s); !st) fail(st);
///   lowbit::quant_tensor h;
///   if (auto st = lowbit::cuda::to_host(q, h); !st) fail(st);  // the same bytes the host engine makes
/// @endcode
///
/// Compiled by nvcc this is CUDA memory. Compiled by g++/clang++ (the SIMT executor, where kernels
/// run on the CPU) "device memory" is host memory from simt::device_malloc (exact size between
/// redzones, poisoned, watched by the executor's checker), tagged memory_space::device, so the same
/// code paths, including every copy, run in the CPU tests.
#pragma once

#include <lowbit/memory.hpp>
#include <lowbit/quant_tensor.hpp>

#include "blockwise.cuh"
#include "detail/launch.cuh"

#include <cstdlib>
#include <cstring>
#include <vector>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

inline void* stream_allocate(std::size_t bytes, void* ctx) {
#if defined(__CUDACC__)
  void* p = nullptr;
  if (cudaMallocAsync(&p, bytes, static_cast<cudaStream_t>(ctx)) != cudaSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return p;
#else
  (void)ctx;
  try {
    return simt::device_malloc(bytes);  // exactly `bytes`, between redzones, like cudaMalloc uninitialized
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
#endif
}

inline void stream_deallocate(void* p, std::size_t, void* ctx) {
#if defined(__CUDACC__)
  (void)cudaFreeAsync(p, static_cast<cudaStream_t>(ctx));
#else
  (void)ctx;
  simt::device_free(p);
#endif
}

inline status stream_zero(void* p, std::size_t bytes, void* ctx) {
  return memset_async(p, 0, bytes, static_cast<cudaStream_t>(ctx));
}

inline status stream_copy(void* dst, const void* src, std::size_t bytes, copy_kind kind, void* ctx) {
  const auto stream = static_cast<cudaStream_t>(ctx);
#if defined(__CUDACC__)
  const cudaMemcpyKind k = kind == copy_kind::from_host ? cudaMemcpyHostToDevice
                           : kind == copy_kind::to_host ? cudaMemcpyDeviceToHost
                                                        : cudaMemcpyDeviceToDevice;
  LOWBIT_TRY(from_cuda(cudaMemcpyAsync(dst, src, bytes, k, stream), "cudaMemcpyAsync"));
  if (kind == copy_kind::to_host) return from_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return {};
#else
  (void)stream;
  std::memcpy(dst, src, bytes);
  if (kind != copy_kind::to_host) simt::device_written(dst, bytes);
  return {};
#endif
}

}  // namespace detail

/// The stream-ordered device allocator: `cudaMallocAsync` / `cudaFreeAsync`, zeroing and copies
/// on `stream` (the stream must outlive every tensor allocated from it). Copies to the host wait
/// for the stream.
inline allocator stream_allocator(cudaStream_t stream = nullptr) noexcept {
  allocator a;
  a.space = memory_space::device;
  a.name = "cuda stream-ordered";
  a.context = static_cast<void*>(stream);
  a.allocate = detail::stream_allocate;
  a.deallocate = detail::stream_deallocate;
  a.zero = detail::stream_zero;
  a.copy = detail::stream_copy;
  return a;
}

/// Copies host tensor `src` to device memory from `alloc` (default: stream-ordered on the default
/// stream). On error `out` is unchanged.
inline status to_device(const quant_tensor& src, quant_tensor& out, const allocator& alloc = stream_allocator()) {
  if (src.location() != memory_space::host)
    return status::error(errc::invalid_argument, "cuda::to_device: the source tensor already lives in device memory");
  if (alloc.space != memory_space::device)
    return status::error(errc::invalid_argument, "cuda::to_device: allocator '%s' is not a device allocator", alloc.name);
  return src.copy_to(alloc, out);
}

/// Copies device tensor `src` into host memory from `alloc` (default: the C++ heap); complete on
/// return. On error `out` is unchanged.
inline status to_host(const quant_tensor& src, quant_tensor& out, const allocator& alloc = allocator::host()) {
  if (src.location() != memory_space::device)
    return status::error(errc::invalid_argument, "cuda::to_host: the source tensor already lives in host memory");
  if (alloc.space != memory_space::host)
    return status::error(errc::invalid_argument, "cuda::to_host: allocator '%s' is not a host allocator", alloc.name);
  return src.copy_to(alloc, out);
}

/// Bytes of workspace `quantize` takes from its allocator for a tensor of `shape` quantized with
/// `p` (0 if `p` is invalid for `shape`).
inline std::size_t quantize_workspace_size(const std::vector<std::int64_t>& shape, const quantize_params& p) noexcept {
  std::int64_t block = 0;
  if (!resolve_block_size(p.gran, shape, block)) return 0;
  quant_view v;
  v.fmt = p.fmt;
  v.block_size = block;
  v.numel = 1;
  for (auto d : shape) v.numel *= d;
  std::uint8_t marker = 0;
  if (p.double_quant) v.nested_codes = &marker;
  return quantize_workspace_size(v);
}

/// Quantizes the dense row-major device tensor `x` (dtype `xt`, `shape`) into a new device tensor
/// `out` whose storage and workspace (`quantize_workspace_size` bytes, released before return)
/// come from `alloc`, on `stream`. Same formats, granularities and bytes as lowbit::quantize on
/// the host. It waits for `stream` once at the end, to report non-finite input (errc::non_finite
/// naming the first bad index unless `p.options.allow_nonfinite`) and to read the nested offset
/// into `out.nested_offset()`. On error `out` is unchanged.
inline status quantize(const void* x, dtype xt, const std::vector<std::int64_t>& shape, const quantize_params& p,
                       quant_tensor& out, const allocator& alloc = stream_allocator(), cudaStream_t stream = nullptr) {
  if (alloc.space != memory_space::device)
    return status::error(errc::invalid_argument, "cuda::quantize: allocator '%s' is not a device allocator", alloc.name);
  std::int64_t block = 0;
  LOWBIT_TRY(resolve_block_size(p.gran, shape, block));
  quant_tensor t;
  LOWBIT_TRY(quant_tensor::allocate(p.fmt, shape, xt, block, p.double_quant, t, alloc));
  if (t.numel() == 0) {
    out = std::move(t);
    return {};
  }
  quant_view v = t.view();
  storage<unsigned char> ws;
  LOWBIT_TRY(ws.allocate(quantize_workspace_size(v), alloc, "cuda::quantize workspace"));
  options opt;
  opt.allow_nonfinite = p.options.allow_nonfinite;
  opt.untouched_on_error = false;  // t is dropped on error: one read of the input, no finiteness scan
  LOWBIT_TRY(quantize(x, xt, v, ws.data(), ws.size(), stream, opt));
  LOWBIT_TRY(input_status(ws.data(), stream));
  if (t.double_quantized()) {
    float offset = 0.0f;
    LOWBIT_TRY(detail::copy_to_host(&offset, t.nested_offset_device(), sizeof offset, stream));
    LOWBIT_TRY(t.set_nested_offset(offset));
  }
  out = std::move(t);
  return {};
}

/// Dequantizes device tensor `q` into `q.numel()` elements of dtype `ot` at device address `out`,
/// asynchronously on `stream`; the bytes equal lowbit::dequantize of the same tensor on the host.
inline status dequantize(const quant_tensor& q, void* out, dtype ot, cudaStream_t stream = nullptr) {
  if (q.location() != memory_space::device)
    return status::error(errc::invalid_argument,
                         "cuda::dequantize: the tensor lives in host memory; use lowbit::dequantize or cuda::to_device");
  return dequantize(q.view(), out, ot, stream);
}

}  // namespace cuda
LOWBIT_NAMESPACE_END
