// SPDX-License-Identifier: Apache-2.0
/// @file quant_tensor.hpp
/// @brief `lowbit::quant_tensor` (alias `QuantTensor`): an owning value type holding one quantized
///        tensor (packed codes, scales, optional zero points and nested scales, format, block size,
///        logical shape, source dtype) and the `quantize` / `dequantize` entry points.
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
#include "host/buffer.hpp"
#include "host/engine.hpp"
#include "quant/layout.hpp"
#include "status.hpp"

#include <cstdint>
#include <initializer_list>
#include <vector>

LOWBIT_NAMESPACE_BEGIN

/// How elements are grouped under one scale.
struct granularity {
  enum class kind : std::uint8_t {
    per_block,   ///< blocks of `block_size` consecutive elements (power of two 32..4096)
    per_row,     ///< one scale per row (vector-wise): the block is the last dimension
    per_tensor,  ///< one scale for the whole tensor
  };
  kind k = kind::per_block;
  std::int64_t block_size = 64;  ///< per_block only

  static constexpr granularity per_block(std::int64_t b) noexcept { return {kind::per_block, b}; }
  static constexpr granularity per_row() noexcept { return {kind::per_row, 0}; }
  static constexpr granularity per_tensor() noexcept { return {kind::per_tensor, 0}; }
};

/// Where a quant_tensor's storage lives.
enum class memory_space : std::uint8_t { host, device };

/// What `quantize` produces.
struct quantize_params {
  format fmt = format::nf4;
  granularity gran = granularity::per_block(64);
  /// Double quantization of the block scales (bitsandbytes `compress_statistics`): nf4, bnb_fp4,
  /// bnb_dynamic8 only.
  bool double_quant = false;
  host::options options{};
};

/// An owning quantized tensor (host storage).
class quant_tensor {
 public:
  quant_tensor() = default;
  quant_tensor(quant_tensor&&) noexcept = default;
  quant_tensor& operator=(quant_tensor&&) noexcept = default;

  /// Allocates zeroed storage for a tensor of `shape` in format `fmt` with the given block size
  /// (>= 1; any value, for tensors read from files) and optional double quantization. Used by
  /// `quantize` and by loaders that fill the buffers themselves.
  static status allocate(format fmt, const std::vector<std::int64_t>& shape, dtype source, std::int64_t block_size,
                         bool double_quant, quant_tensor& out) noexcept {
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
    const auto nb = static_cast<std::size_t>(quant::block_count(n, block_size));
    LOWBIT_TRY(t.codes_.allocate(static_cast<std::size_t>(code_bytes(fmt, n)), "quant_tensor codes"));
    if (double_quant) {
      LOWBIT_TRY(t.nested_codes_.allocate(nb, "quant_tensor nested codes"));
      LOWBIT_TRY(t.nested_scales_.allocate(static_cast<std::size_t>(quant::block_count(static_cast<std::int64_t>(nb), quant::nested_block_size)),
                                            "quant_tensor nested scales"));
    } else {
      LOWBIT_TRY(t.scales_.allocate(nb, "quant_tensor scales"));
    }
    if (info(fmt).zero_point) LOWBIT_TRY(t.zero_points_.allocate(nb, "quant_tensor zero points"));
    t.double_quant_ = double_quant;
    out = std::move(t);
    return {};
  }

  format fmt() const noexcept { return fmt_; }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  dtype source_dtype() const noexcept { return source_; }
  std::int64_t numel() const noexcept { return numel_; }
  std::int64_t block_size() const noexcept { return block_size_; }
  std::int64_t blocks() const noexcept { return quant::block_count(numel_, block_size_); }
  bool double_quantized() const noexcept { return double_quant_; }
  memory_space location() const noexcept { return memory_space::host; }

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
  float nested_offset() const noexcept { return nested_offset_; }
  void set_nested_offset(float v) noexcept { nested_offset_ = v; }

  /// Replaces the built-in decode table with `table` (16 entries for nf4/bnb_fp4, 256 for
  /// bnb_dynamic8), e.g. a checkpoint's `quant_map`; `nested` selects the nested table.
  status set_code_table(const float* table, std::size_t count, bool nested = false) noexcept {
    const std::size_t want = nested ? 256 : (info(fmt_).bits == 4 ? 16 : 256);
    if (!info(fmt_).bnb) return status::error(errc::unsupported, "set_code_table: %s has no replaceable code table", info(fmt_).name);
    if (nested && !double_quant_) return status::error(errc::invalid_argument, "set_code_table: tensor is not double-quantized");
    if (count != want) return status::error(errc::invalid_argument, "set_code_table: %zu entries given, %s needs %zu", count, nested ? "the nested table" : info(fmt_).name, want);
    host::buffer<float>& dst = nested ? nested_table_ : table_;
    LOWBIT_TRY(dst.allocate(count, "code table"));
    for (std::size_t i = 0; i < count; ++i) dst[i] = table[i];
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
    v.nested_code_table = nested_table_.data();
    return v;
  }
  quant_view view() const noexcept { return const_cast<quant_tensor*>(this)->view(); }

  /// Exact bytes of storage: codes, scales, zero points, nested codes and scales, the nested
  /// offset (4 bytes) and any replaced code tables.
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

  /// A deep copy.
  status clone(quant_tensor& out) const noexcept {
    quant_tensor t;
    t.fmt_ = fmt_;
    t.shape_ = shape_;
    t.source_ = source_;
    t.numel_ = numel_;
    t.block_size_ = block_size_;
    t.double_quant_ = double_quant_;
    t.nested_offset_ = nested_offset_;
    LOWBIT_TRY(codes_.clone_into(t.codes_, "codes"));
    LOWBIT_TRY(scales_.clone_into(t.scales_, "scales"));
    LOWBIT_TRY(zero_points_.clone_into(t.zero_points_, "zero points"));
    LOWBIT_TRY(nested_codes_.clone_into(t.nested_codes_, "nested codes"));
    LOWBIT_TRY(nested_scales_.clone_into(t.nested_scales_, "nested scales"));
    LOWBIT_TRY(table_.clone_into(t.table_, "code table"));
    LOWBIT_TRY(nested_table_.clone_into(t.nested_table_, "nested code table"));
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
  host::buffer<std::uint8_t> codes_;
  host::buffer<float> scales_;
  host::buffer<std::uint8_t> zero_points_;
  host::buffer<std::uint8_t> nested_codes_;
  host::buffer<float> nested_scales_;
  host::buffer<float> table_;
  host::buffer<float> nested_table_;
};

/// The name the issue tracker and bitsandbytes users know it by.
using QuantTensor = quant_tensor;

/// The block size `gran` gives a tensor of `shape`, or an error naming what is wrong.
inline status resolve_block_size(const granularity& gran, const std::vector<std::int64_t>& shape, std::int64_t& block) noexcept {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
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
  LOWBIT_TRY(quant_tensor::allocate(p.fmt, shape, dt, block, p.double_quant, t));
  quant_view v = t.view();
  LOWBIT_TRY(host::quantize_into(data, dt, v, p.options));  // t is discarded on error
  t.set_nested_offset(v.nested_offset);
  out = std::move(t);
  return {};
}

/// Dequantizes `q` into `q.numel()` elements of dtype `dt` at `out`.
inline status dequantize(const quant_tensor& q, void* out, dtype dt, const host::options& opt = {}) noexcept {
  return host::dequantize(q.view(), out, dt, opt);
}

LOWBIT_NAMESPACE_END
