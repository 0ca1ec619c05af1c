// SPDX-License-Identifier: Apache-2.0
/// @file scaled_tensor.hpp
/// @brief `lowbit::scaled_tensor`: an owning host tensor in one of the block-scaled formats of
///        current hardware (MXFP8/MXFP6/MXFP4, NVFP4, FP8 E4M3 with float32 128x128 / 1x128
///        scales), and the `quantize` / `dequantize` overloads that make and read it.
///
/// @code
///   lowbit::scaled_params p;                                // mxfp8_e4m3, 1 x 32, OCP floor rule
///   p.mx_rule = lowbit::quant::mx_scale_rule::rceil;        // cuBLAS / TE / torchao RCEIL
///   lowbit::scaled_tensor q;
///   if (auto s = lowbit::quantize(w.data(), lowbit::dtype::bf16, {4096, 4096}, p, q); !s) fail(s.message());
///   q.scale_bytes();                                        // e8m0 codes, row-major [4096, 128]
///
///   p.fmt = lowbit::scaled_format::fp8_e4m3_block;          // DeepSeek-V3 weight: 128 x 128 tiles
///   p.gran = lowbit::granularity::per_tile(0, 0);           // 0 x 0: the format's tile
///   ... q.scales_f32()                                      // weight_scale_inv [32, 32]
/// @endcode
///
/// The shape is viewed as a matrix: the last dimension is the columns, the others fold into the
/// rows (quant/layout.hpp, tile_grid). Granularity: per_tile(r, c) (0 x 0 = the format's tile:
/// 1 x 32 MX, 1 x 16 NVFP4, 128 x 128 FP8), per_block(b) = a 1 x b tile (rows respected, e.g.
/// 1 x 128 activation groups, 16 x 16 NVFP4 weights via per_tile(16, 16)), per_row = 1 x cols,
/// per_tensor = rows x cols.
#pragma once

#include "config.hpp"
#include "dtype.hpp"
#include "host/blockscaled.hpp"
#include "memory.hpp"
#include "quant/blockscaled.hpp"
#include "quant/layout.hpp"
#include "quant_tensor.hpp"
#include "status.hpp"

#include <cstdint>
#include <limits>
#include <vector>

LOWBIT_NAMESPACE_BEGIN

/// What `quantize` produces for a block-scaled format.
struct scaled_params {
  scaled_format fmt = scaled_format::mxfp8_e4m3;
  granularity gran = granularity::per_tile(0, 0);  ///< 0 x 0: the format's own tile
  quant::mx_scale_rule mx_rule = quant::mx_scale_rule::floor;  ///< MX formats
  quant::nvfp4_global nvfp4 = quant::nvfp4_global::scale;      ///< nvfp4
  fp6_packing fp6 = fp6_packing::packed;                       ///< MXFP6 formats
  host::options options{};
};

/// The tile `gran` gives a `rows` x `cols` matrix of format `f`, or an error naming what is wrong.
inline status resolve_tile(const granularity& gran, scaled_format f, std::int64_t rows, std::int64_t cols, tile_shape& tile) noexcept {
  switch (gran.k) {
    case granularity::kind::per_tile:
      if (gran.tile_rows == 0 && gran.tile_cols == 0) {
        tile = {info(f).tile_rows, info(f).tile_cols};
        return {};
      }
      if (gran.tile_rows < 1 || gran.tile_cols < 1)
        return status::error(errc::invalid_argument, "quantize: tile %lld x %lld, both must be >= 1 (or both 0 for the format's tile)",
                             static_cast<long long>(gran.tile_rows), static_cast<long long>(gran.tile_cols));
      tile = {gran.tile_rows, gran.tile_cols};
      return {};
    case granularity::kind::per_block:
      if (gran.block_size < 1) return status::error(errc::invalid_argument, "quantize: block size %lld must be >= 1", static_cast<long long>(gran.block_size));
      tile = {1, gran.block_size};
      return {};
    case granularity::kind::per_row:
      tile = {1, cols > 0 ? cols : 1};
      return {};
    case granularity::kind::per_tensor:
      tile = {rows > 0 ? rows : 1, cols > 0 ? cols : 1};
      return {};
  }
  return status::error(errc::invalid_argument, "quantize: unknown granularity kind %d", static_cast<int>(gran.k));
}

/// An owning host tensor in a block-scaled format.
class scaled_tensor {
 public:
  scaled_tensor() = default;
  scaled_tensor(scaled_tensor&&) noexcept = default;
  scaled_tensor& operator=(scaled_tensor&&) noexcept = default;

  /// Allocates zeroed storage for a tensor of `shape` in `p`'s format, tile and conventions
  /// (for loaders that fill the buffers themselves). On error `out` is unchanged.
  static status allocate(const std::vector<std::int64_t>& shape, dtype source, const scaled_params& p, scaled_tensor& out) noexcept {
    return allocate_storage(shape, source, p, out, true);
  }
  /// As `allocate`, without zero-filling (for `quantize`, which writes every byte).
  static status allocate_for_overwrite(const std::vector<std::int64_t>& shape, dtype source, const scaled_params& p, scaled_tensor& out) noexcept {
    return allocate_storage(shape, source, p, out, false);
  }

 private:
  static status allocate_storage(const std::vector<std::int64_t>& shape, dtype source, const scaled_params& p, scaled_tensor& out, bool zero) noexcept {
    if (!is_valid(p.fmt)) return status::error(errc::invalid_argument, "scaled_tensor: scaled format %d is not a lowbit format", static_cast<int>(p.fmt));
    if (!is_valid(source)) return status::error(errc::invalid_argument, "scaled_tensor: dtype %d is not a lowbit dtype", static_cast<int>(source));
    std::int64_t rows = 1;
    for (std::size_t d = 0; d < shape.size(); ++d) {
      if (shape[d] < 0) return status::error(errc::invalid_argument, "scaled_tensor: shape[%zu] is %lld, must be >= 0", d, static_cast<long long>(shape[d]));
      if (shape[d] != 0 && rows > (std::int64_t{1} << 58) / shape[d])
        return status::error(errc::invalid_argument, "scaled_tensor: shape has more than 2^58 elements");
      rows *= shape[d];
    }
    const std::int64_t cols = shape.empty() ? 1 : shape.back();  // a scalar is a 1 x 1 matrix
    rows = cols > 0 ? rows / cols : 0;
    scaled_tensor t;
    t.shape_ = shape;
    t.source_ = source;
    t.v_.fmt = p.fmt;
    t.v_.rows = rows;
    t.v_.cols = cols;
    LOWBIT_TRY(resolve_tile(p.gran, p.fmt, rows, cols, t.v_.tile));
    t.v_.mx_rule = p.mx_rule;
    t.v_.nvfp4 = p.nvfp4;
    t.v_.fp6 = p.fp6;
    LOWBIT_TRY(host::validate_layout(t.v_, "scaled_tensor"));
    LOWBIT_TRY(t.codes_.allocate(static_cast<std::size_t>(scaled_code_bytes(p.fmt, rows * cols, p.fp6)), allocator::host(), "scaled_tensor codes", zero));
    LOWBIT_TRY(t.scales_.allocate(static_cast<std::size_t>(t.v_.grid().tiles() * bytes_per_scale(p.fmt)), allocator::host(), "scaled_tensor scales", zero));
    t.v_.codes = t.codes_.data();
    t.v_.scales = t.scales_.data();
    out = std::move(t);
    return {};
  }

 public:
  scaled_format fmt() const noexcept { return v_.fmt; }
  const std::vector<std::int64_t>& shape() const noexcept { return shape_; }
  dtype source_dtype() const noexcept { return source_; }
  std::int64_t numel() const noexcept { return v_.numel(); }
  std::int64_t rows() const noexcept { return v_.rows; }
  std::int64_t cols() const noexcept { return v_.cols; }
  tile_shape tile() const noexcept { return v_.tile; }
  /// The scale grid: grid().grid_rows() x grid().grid_cols() scales, row-major.
  tile_grid grid() const noexcept { return v_.grid(); }
  quant::mx_scale_rule mx_rule() const noexcept { return v_.mx_rule; }
  quant::nvfp4_global nvfp4_convention() const noexcept { return v_.nvfp4; }
  fp6_packing fp6() const noexcept { return v_.fp6; }
  /// nvfp4: the stored per-tensor float32 (t, or g = 1/t for nvfp4_global::inverse; 1 for none).
  float global_scale() const noexcept { return v_.global_scale; }
  void set_global_scale(float g) noexcept { v_.global_scale = g; }

  std::uint8_t* codes() noexcept { return codes_.data(); }
  const std::uint8_t* codes() const noexcept { return codes_.data(); }
  std::int64_t code_bytes() const noexcept { return static_cast<std::int64_t>(codes_.size()); }
  /// The scales as bytes (e8m0 or e4m3 codes; the float32 scales' bytes for fp8_e4m3_block).
  std::uint8_t* scale_bytes() noexcept { return scales_.data(); }
  const std::uint8_t* scale_bytes() const noexcept { return scales_.data(); }
  /// fp8_e4m3_block: the float32 scale_inv values; null for the other formats.
  float* scales_f32() noexcept { return info(v_.fmt).scale == scale_type::f32 ? reinterpret_cast<float*>(scales_.data()) : nullptr; }
  const float* scales_f32() const noexcept { return const_cast<scaled_tensor*>(this)->scales_f32(); }

  /// A non-owning view (valid while this object lives and is not reassigned).
  host::scaled_view view() const noexcept { return v_; }

  /// Exact bytes of the data: codes, scales and (nvfp4) the 4-byte per-tensor scale.
  std::int64_t nbytes() const noexcept {
    return static_cast<std::int64_t>(codes_.size() + scales_.size()) + (info(v_.fmt).global_scale ? 4 : 0);
  }
  /// Stored bits per element (mxfp4 at 1 x 32: 4.25; nvfp4 at 1 x 16: 4.5 plus the global).
  double bits_per_value() const noexcept { return numel() > 0 ? static_cast<double>(nbytes()) * 8.0 / static_cast<double>(numel()) : 0.0; }

 private:
  std::vector<std::int64_t> shape_;
  dtype source_ = dtype::f32;
  host::scaled_view v_{};
  storage<std::uint8_t> codes_;
  storage<std::uint8_t> scales_;
};

/// Quantizes the dense row-major tensor `data` (dtype `dt`, `shape`) into `out` in a block-scaled
/// format (host/blockscaled.hpp has the semantics). On error `out` is left unchanged.
inline status quantize(const void* data, dtype dt, const std::vector<std::int64_t>& shape, const scaled_params& p,
                       scaled_tensor& out) noexcept {
  scaled_tensor t;
  LOWBIT_TRY(scaled_tensor::allocate_for_overwrite(shape, dt, p, t));  // quantize writes every byte
  host::scaled_view v = t.view();
  LOWBIT_TRY(host::quantize_scaled_into(data, dt, v, p.options));  // t is discarded on error
  t.set_global_scale(v.global_scale);
  out = std::move(t);
  return {};
}

/// Dequantizes `q` into `q.numel()` row-major elements of dtype `dt` at `out`.
inline status dequantize(const scaled_tensor& q, void* out, dtype dt, const host::options& opt = {}) noexcept {
  return host::dequantize_scaled(q.view(), out, dt, opt);
}

LOWBIT_NAMESPACE_END
