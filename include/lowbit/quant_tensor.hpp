// SPDX-License-Identifier: Apache-2.0
/// @file quant_tensor.hpp
/// @brief `lowbit::quant_tensor` (alias `QuantTensor`): an owning value type holding one quantized
///        tensor (packed codes, scales, optional zero points and nested scales, format, block size,
///        logical shape, source dtype, and the memory space its storage lives in) and the host
///        `quantize` / `dequantize` entry points.
///
/// Storage comes from an `allocator` (memory.hpp): host memory by default, device memory from
/// `lowbit::cuda::stream_allocator` or any user allocator. `copy_to` moves a tensor between
/// spaces; `lowbit::cuda::quantize` / `dequantize` (kernels/lowbit/cuda/memory.cuh) work on
/// device tensors, the functions here on host tensors (a device tensor is refused by name).
///
/// @code
///   std::vector<float> w(4096 * 4096);                      // a weight, row-major
///   lowbit::quant_tensor q;
///   lowbit::quantize_params p;                              // nf4, block 64
///   p.double_quant = true;                                  // QLoRA double quantization
///   if (auto s = lowbit::quantize(w.data(), lowbit::dtype::f32, {4096, 4096}, p, q); !s) fail(s.message());
///   std::vector<lowbit::bf16> out(q.numel());
///   if (auto s = lowbit::dequantize(q, out.data(), lowbit::dtype::bf16); !s) fail(s.message());
///   q.bits_per_value();                                     // 4.127
/// @endcode
#pragma once

#include "config.hpp"
#include "dtype.hpp"
#include "format.hpp"
#include "host/engine.hpp"
#include "memory.hpp"
#include "quant/layout.hpp"
#include "status.hpp"

#include <cstdint>
#include <limits>
#include <initializer_list>
#include <vector>

LOWBIT_NAMESPACE_BEGIN

/// How elements are grouped under one scale.
struct granularity {
  enum class kind : std::uint8_t {
    per_block,   ///< blocks of `block_size` consecutive elements (power of two 32..4096)
    per_row,     ///< one scale per row (vector-wise): the block is the last dimension
    per_tensor,  ///< one scale for the whole tensor
    /// one scale per 2-D tile of `tile_rows` x `tile_cols` (quant/layout.hpp's tile_shape): the
    /// block-scaled formats only (scaled_tensor.hpp); 0 x 0 there means the format's own tile
    per_tile,
  };
  kind k = kind::per_block;
  std::int64_t block_size = 64;  ///< per_block only
  std::int64_t tile_rows = 0;    ///< per_tile only
  std::int64_t tile_cols = 0;    ///< per_tile only

  static constexpr granularity per_block(std::int64_t b) noexcept { return {kind::per_block, b}; }
  static constexpr granularity per_row() noexcept { return {kind::per_row, 0}; }
  static constexpr granularity per_tensor() noexcept { return {kind::per_tensor, 0}; }
  static constexpr granularity per_tile(std::int64_t rows, std::int64_t cols) noexcept { return {kind::per_tile, 0, rows, cols}; }
};

/// What `quantize` produces.
struct quantize_params {
  format fmt = format::nf4;
  granularity gran = granularity::per_block(64);
  /// Double quantization of the block scales (bitsandbytes `compress_statistics`): nf4, bnb_fp4,
  /// bnb_dynamic8 only.
  bool double_quant = false;
  host::options options{};
};

/// An owning quantized tensor (host or device storage).
class quant_tensor {
 public:
  quant_tensor() = default;
  quant_tensor(quant_tensor&&) noexcept = default;
  quant_tensor& operator=(quant_tensor&&) noexcept = default;

  /// Allocates zeroed storage from `alloc` (host memory by default) for a tensor of `shape` in
  /// format `fmt` with the given block size (>= 1; any value, for tensors read from files) and
  /// optional double quantization. Used by loaders that fill the buffers themselves. On error
  /// `out` is unchanged.
  static status allocate(format fmt, const std::vector<std::int64_t>& shape, dtype source, std::int64_t block_size,
                         bool double_quant, quant_tensor& out, const allocator& alloc = allocator::host()) noexcept {
    return allocate_storage(fmt, shape, source, block_size, double_quant, out, alloc, true);
  }

  /// As `allocate`, but the buffers are not zero-filled: for callers that write every byte
  /// before any is read (`quantize` does; zeroing a large tensor's fresh pages on one thread cost
  /// more than writing them from all of the quantizer's threads).
  static status allocate_for_overwrite(format fmt, const std::vector<std::int64_t>& shape, dtype source, std::int64_t block_size,
                                       bool double_quant, quant_tensor& out, const allocator& alloc = allocator::host()) noexcept {
    return allocate_storage(fmt, shape, source, block_size, double_quant, out, alloc, false);
  }

 private:
  static status allocate_storage(format fmt, const std::vector<std::int64_t>& shape, dtype source, std::int64_t block_size,
                                 bool double_quant, quant_tensor& out, const allocator& alloc, bool zero) noexcept {
    if (!is_valid(fmt)) return status::error(errc::invalid_argument, "quant_tensor: format %d is not a lowbit format", static_cast<int>(fmt));
    if (!is_valid(source)) return status::error(errc::invalid_argument, "quant_tensor: dtype %d is not a lowbit dtype", static_cast<int>(source));
    std::int64_t n = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] < 0) return status::error(errc::invalid_argument, "quant_tensor: shape[%zu] is %lld, must be >= 0", d, static_cast<long long>(shape[d]));
      if (shape[d] != 0 && n > (std::int64_t{1} << 62) / shape[d])
        return status::error(errc::invalid_argument, "quant_tensor: shape has more than 2^62 elements");
      n *= shape[d];
    }
    if (block_size < 1) return status::error(errc::invalid_argument, "quant_tensor: block_size is %lld, must be >= 1", static_cast<long long>(block_size));
    if (double_quant && !info(fmt).bnb)
      return status::error(errc::unsupported, "quant_tensor: double quantization is defined for nf4, bnb_fp4 and bnb_dynamic8, not %s", info(fmt).name);
    quant_tensor t;
    t.fmt_ = fmt;
    t.shape_ = shape;
    t.source_ = source;
    t.numel_ = n;
    t.block_size_ = block_size;
    if (!alloc.complete())
      return status::error(errc::invalid_argument, "quant_tensor: allocator '%s' lacks a function", alloc.name);
    const auto nb = static_cast<std::size_t>(quant::block_count(n, block_size));
    t.alloc_ = alloc;
    LOWBIT_TRY(t.codes_.allocate(static_cast<std::size_t>(code_bytes(fmt, n)), alloc, "quant_tensor codes", zero));
    if (double_quant) {
      LOWBIT_TRY(t.nested_codes_.allocate(nb, alloc, "quant_tensor nested codes", zero));
      LOWBIT_TRY(t.nested_scales_.allocate(static_cast<std::size_t>(quant::block_count(static_cast<std::int64_t>(nb), quant::nested_block_size)),
                                            alloc, "quant_tensor nested scales", zero));
      if (alloc.space == memory_space::device) LOWBIT_TRY(t.offset_slot_.allocate(1, alloc, "quant_tensor nested offset"));
    } else {
      LOWBIT_TRY(t.scales_.allocate(nb, alloc, "quant_tensor scales", zero));
    }
    if (info(fmt).zero_point) LOWBIT_TRY(t.zero_points_.allocate(nb, alloc, "quant_tensor zero points", zero));
    t.double_quant_ = double_quant;
    out = std::move(t);
    return {};
  }

 public:
  format fmt() const noexcept { return fmt_; }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  dtype source_dtype() const noexcept { return source_; }
  std::int64_t numel() const noexcept { return numel_; }
  std::int64_t block_size() const noexcept { return block_size_; }
  std::int64_t blocks() const noexcept { return quant::block_count(numel_, block_size_); }
  bool double_quantized() const noexcept { return double_quant_; }
  /// Where the storage lives (every array of one tensor lives in one space).
  memory_space location() const noexcept { return alloc_.space; }
  /// The allocator the storage came from.
  const allocator& storage_allocator() const noexcept { return alloc_; }

  std::uint8_t* codes() noexcept { return codes_.data(); }
  const std::uint8_t* codes() const noexcept { return codes_.data(); }
  float* scales() noexcept { return scales_.data(); }
  const float* scales() const noexcept { return scales_.data(); }
  std::uint8_t* zero_points() noexcept { return zero_points_.data(); }
  const std::uint8_t* zero_points() const noexcept { return zero_points_.data(); }
  std::uint8_t* nested_codes() noexcept { return nested_codes_.data(); }
  const std::uint8_t* nested_codes() const noexcept { return nested_codes_.data(); }
  float* nested_scales() noexcept { return nested_scales_.data(); }
  const float* nested_scales() const noexcept { return nested_scales_.data(); }
  /// The double-quantization offset. For a host tensor this is the value itself. For a device
  /// tensor the kernels read and write it in device memory (`nested_offset_device()`); this host
  /// copy is what `copy_to` and `set_nested_offset` last put there.
  float nested_offset() const noexcept { return nested_offset_; }
  /// Sets the offset (and, for a device tensor, the device copy; ordered on its allocator).
  status set_nested_offset(float v) noexcept {
    if (!offset_slot_.empty()) LOWBIT_TRY(offset_slot_.upload(&v, 1, "quant_tensor nested offset"));
    nested_offset_ = v;
    return {};
  }
  /// The device address of the offset (device tensors with double quantization), else null.
  float* nested_offset_device() noexcept { return offset_slot_.data(); }
  const float* nested_offset_device() const noexcept { return offset_slot_.data(); }

  /// Replaces the built-in decode table with the host array `table` (16 entries for
  /// nf4/bnb_fp4, 256 for bnb_dynamic8), e.g. a checkpoint's `quant_map`; `nested` selects the
  /// nested table. The table is copied into the tensor's own memory space.
  status set_code_table(const float* table, std::size_t count, bool nested = false) noexcept {
    const std::size_t want = nested ? 256 : (info(fmt_).bits == 4 ? 16 : 256);
    if (!info(fmt_).bnb) return status::error(errc::unsupported, "set_code_table: %s has no replaceable code table", info(fmt_).name);
    if (nested && !double_quant_) return status::error(errc::invalid_argument, "set_code_table: tensor is not double-quantized");
    if (count != want) return status::error(errc::invalid_argument, "set_code_table: %zu entries given, %s needs %zu", count, nested ? "the nested table" : info(fmt_).name, want);
    if (table == nullptr) return status::error(errc::invalid_argument, "set_code_table: table is null");
    storage<float> next;
    LOWBIT_TRY(next.allocate(count, alloc_, "code table"));
    LOWBIT_TRY(next.upload(table, count, "code table"));
    (nested ? nested_table_ : table_) = std::move(next);
    return {};
  }
  const float* code_table() const noexcept { return table_.data(); }
  const float* nested_code_table() const noexcept { return nested_table_.data(); }

  /// A non-owning view of the storage (valid while this object lives and is not reassigned).
  quant_view view() noexcept {
    quant_view v;
    v.fmt = fmt_;
    v.numel = numel_;
    v.block_size = block_size_;
    v.codes = codes_.data();
    v.scales = scales_.data();
    v.zero_points = zero_points_.data();
    v.code_table = table_.data();
    v.nested_codes = nested_codes_.data();
    v.nested_scales = nested_scales_.data();
    v.nested_offset = nested_offset_;
    v.nested_offset_device = offset_slot_.data();
    v.nested_code_table = nested_table_.data();
    return v;
  }
  quant_view view() const noexcept { return const_cast<quant_tensor*>(this)->view(); }

  /// Exact bytes of the tensor's data: codes, scales, zero points, nested codes and scales, the
  /// nested offset (4 bytes) and any replaced code tables.
  std::int64_t nbytes() const noexcept {
    return static_cast<std::int64_t>(codes_.size() + scales_.size() * 4 + zero_points_.size() + nested_codes_.size() +
                                     nested_scales_.size() * 4 + (double_quant_ ? 4 : 0) + table_.size() * 4 +
                                     nested_table_.size() * 4);
  }
  /// Stored bits per element, everything in nbytes() included (NF4, block 64, double
  /// quantization: 4.127 for large tensors).
  double bits_per_value() const noexcept {
    return numel_ > 0 ? static_cast<double>(nbytes()) * 8.0 / static_cast<double>(numel_) : 0.0;
  }

  /// A deep copy in the same memory space, from the same allocator.
  status clone(quant_tensor& out) const noexcept { return copy_to(alloc_, out); }

  /// A deep copy whose storage comes from `alloc`: host to device, device to host, host to host,
  /// or within one device space. A device-to-host copy also reads the device's nested offset.
  /// Copies are ordered on the allocators' streams; a copy to the host is complete on return.
  /// On error `out` is unchanged.
  status copy_to(const allocator& alloc, quant_tensor& out) const noexcept {
    if (!alloc.complete())
      return status::error(errc::invalid_argument, "quant_tensor::copy_to: allocator '%s' lacks a function", alloc.name);
    quant_tensor t;
    t.fmt_ = fmt_;
    t.shape_ = shape_;
    t.source_ = source_;
    t.numel_ = numel_;
    t.block_size_ = block_size_;
    t.double_quant_ = double_quant_;
    t.nested_offset_ = nested_offset_;
    t.alloc_ = alloc;
    LOWBIT_TRY(codes_.copy_into(t.codes_, alloc, "codes"));
    LOWBIT_TRY(scales_.copy_into(t.scales_, alloc, "scales"));
    LOWBIT_TRY(zero_points_.copy_into(t.zero_points_, alloc, "zero points"));
    LOWBIT_TRY(nested_codes_.copy_into(t.nested_codes_, alloc, "nested codes"));
    LOWBIT_TRY(nested_scales_.copy_into(t.nested_scales_, alloc, "nested scales"));
    LOWBIT_TRY(table_.copy_into(t.table_, alloc, "code table"));
    LOWBIT_TRY(nested_table_.copy_into(t.nested_table_, alloc, "nested code table"));
    if (double_quant_) {
      if (!offset_slot_.empty()) LOWBIT_TRY(offset_slot_.download(&t.nested_offset_, 1, "nested offset"));
      if (alloc.space == memory_space::device) {
        LOWBIT_TRY(t.offset_slot_.allocate(1, alloc, "quant_tensor nested offset"));
        LOWBIT_TRY(t.offset_slot_.upload(&t.nested_offset_, 1, "quant_tensor nested offset"));
      }
    }
    out = std::move(t);
    return {};
  }

 private:
  format fmt_ = format::nf4;
  std::vector<std::int64_t> shape_;
  dtype source_ = dtype::f32;
  std::int64_t numel_ = 0;
  std::int64_t block_size_ = 1;
  bool double_quant_ = false;
  float nested_offset_ = 0.0f;
  allocator alloc_ = allocator::host();
  storage<std::uint8_t> codes_;
  storage<float> scales_;
  storage<std::uint8_t> zero_points_;
  storage<std::uint8_t> nested_codes_;
  storage<float> nested_scales_;
  storage<float> table_;
  storage<float> nested_table_;
  storage<float> offset_slot_;  ///< device tensors with double quantization: the offset in device memory
};

/// The name the issue tracker and bitsandbytes users know it by.
using QuantTensor = quant_tensor;

/// The block size `gran` gives a tensor of `shape`, or an error naming what is wrong: a negative
/// dimension (by its index), or an element count past INT64_MAX (each checked before it is
/// multiplied, so no product overflows).
inline status resolve_block_size(const granularity& gran, const std::vector<std::int64_t>& shape, std::int64_t& block) noexcept {
  std::int64_t n = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    const std::int64_t d = shape[i];
    if (d < 0) return status::error(errc::invalid_argument, "quantize: dimension %zu of the shape is negative (%lld)", i, static_cast<long long>(d));
    if (d != 0 && n > std::numeric_limits<std::int64_t>::max() / d)
      return status::error(errc::invalid_argument, "quantize: the shape's element count overflows a 64-bit integer at dimension %zu", i);
    n *= d;
  }
  switch (gran.k) {
    case granularity::kind::per_block: {
      const std::int64_t b = gran.block_size;
      if (b < 32 || b > 4096 || (b & (b - 1)) != 0)
        return status::error(errc::invalid_argument, "quantize: block size %lld is not a power of two in [32, 4096]", static_cast<long long>(b));
      block = b;
      return {};
    }
    case granularity::kind::per_row:
      if (shape.empty()) return status::error(errc::invalid_argument, "quantize: per-row scaling needs a shape with at least one dimension");
      block = shape.back() > 0 ? shape.back() : 1;
      return {};
    case granularity::kind::per_tensor:
      block = n > 0 ? n : 1;
      return {};
    case granularity::kind::per_tile:
      return status::error(errc::unsupported,
                           "quantize: per-tile granularity is for the block-scaled formats (lowbit::scaled_params, scaled_tensor.hpp)");
  }
  return status::error(errc::invalid_argument, "quantize: unknown granularity kind %d", static_cast<int>(gran.k));
}

/// Quantizes the dense row-major tensor `data` (dtype `dt`, `shape`) into `out`. On error `out` is
/// left unchanged.
inline status quantize(const void* data, dtype dt, const std::vector<std::int64_t>& shape, const quantize_params& p,
                       quant_tensor& out) noexcept {
  std::int64_t block = 0;
  LOWBIT_TRY(resolve_block_size(p.gran, shape, block));
  quant_tensor t;
  LOWBIT_TRY(quant_tensor::allocate_for_overwrite(p.fmt, shape, dt, block, p.double_quant, t));  // quantize_into writes every byte
  quant_view v = t.view();
  LOWBIT_TRY(host::quantize_into(data, dt, v, p.options));  // t is discarded on error
  LOWBIT_TRY(t.set_nested_offset(v.nested_offset));
  out = std::move(t);
  return {};
}

/// Dequantizes host tensor `q` into `q.numel()` elements of dtype `dt` at host address `out`
/// (a device tensor is refused: use lowbit::cuda::dequantize, or copy_to the host first).
inline status dequantize(const quant_tensor& q, void* out, dtype dt, const host::options& opt = {}) noexcept {
  if (q.location() != memory_space::host)
    return status::error(errc::invalid_argument,
                         "dequantize: the tensor lives in device memory; use lowbit::cuda::dequantize or copy it to the host");
  return host::dequantize(q.view(), out, dt, opt);
}

/// Quantization error of host tensor `q` against the dense tensor `x` (dtype `dt`, q.numel()
/// elements) it was quantized from: host::measure_error (max and mean absolute error, SQNR of the
/// float32 dequantization, in double, independent of the thread count).
inline status measure_error(const void* x, dtype dt, const quant_tensor& q, host::error_stats& out, const host::options& opt = {}) noexcept {
  if (q.location() != memory_space::host)
    return status::error(errc::invalid_argument, "measure_error: the tensor lives in device memory; copy it to the host first");
  return host::measure_error(x, dt, q.view(), out, opt);
}

LOWBIT_NAMESPACE_END
