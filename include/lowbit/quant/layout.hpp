// SPDX-License-Identifier: Apache-2.0
/// @file layout.hpp
/// @brief Where the parts of a quantized tensor live: the non-owning `quant_view` that every
///        engine (host and CUDA) reads and writes, its sizes, and its validation.
///
/// @par Layout (bitsandbytes' layout for its formats)
/// - codes: 8-bit formats one byte per element; 4-bit formats two per byte in the format's nibble
///   order (nf4/bnb_fp4: element 2j in the high nibble; e2m1fn: in the low nibble), an odd count
///   padded with the code of 0.0. Elements are the flattened row-major order.
/// - scales: one float32 per block of `block_size` consecutive elements (the last block may be
///   partial); blocks ignore rows.
/// - zero_points: one uint8 per block (uint8_zeropoint only).
/// - nested (double quantization, bitsandbytes formats only): `nested_codes` (one uint8 per block,
///   bitsandbytes' uint8 `absmax`), `nested_scales` (one float32 per 256 blocks) and
///   `nested_offset`; the float32 `scales` are then not stored.
#pragma once

#include "../config.hpp"
#include "../dtype.hpp"
#include "../format.hpp"
#include "../status.hpp"
#include "blockscaled.hpp"
#include "blockwise.hpp"
#include "scale_layout.hpp"

#include <cstdint>
#include <limits>

LOWBIT_NAMESPACE_BEGIN

/// Non-owning description of one quantized tensor's storage (host or device pointers).
/// Trivially copyable, so it can be passed to kernels by value.
struct quant_view {
  format fmt = format::nf4;
  std::int64_t numel = 0;       ///< number of elements
  std::int64_t block_size = 0;  ///< elements per scale block (>= 1)
  std::uint8_t* codes = nullptr;
  float* scales = nullptr;            ///< nblocks float32; null when nested
  std::uint8_t* zero_points = nullptr;  ///< nblocks uint8, uint8_zeropoint only
  /// Optional decode table replacing the built-in one (16 floats for nf4/bnb_fp4, 256 for
  /// bnb_dynamic8), e.g. a checkpoint's `quant_map`. Dequantization only.
  const float* code_table = nullptr;
  std::uint8_t* nested_codes = nullptr;  ///< nblocks uint8 when double-quantized, else null
  float* nested_scales = nullptr;        ///< ceil(nblocks / 256) float32
  float nested_offset = 0.0f;
  /// CUDA engine only: the device address where quantize writes the nested offset and from which
  /// dequantize reads it; when set it replaces `nested_offset` there. The host engine ignores it.
  float* nested_offset_device = nullptr;
  /// Optional 256-entry decode table of the nested codes (a checkpoint's `nested_quant_map`).
  const float* nested_code_table = nullptr;

  LOWBIT_HD constexpr bool nested() const noexcept { return nested_codes != nullptr; }
  LOWBIT_HD constexpr std::int64_t blocks() const noexcept { return quant::block_count(numel, block_size); }
  LOWBIT_HD constexpr std::int64_t nested_blocks() const noexcept {
    return quant::block_count(blocks(), quant::nested_block_size);
  }
};

/// A 2-D tile of a matrix: `rows` x `cols` elements share one scale (block-scaled formats,
/// quant/blockscaled.hpp). A tensor of any rank is viewed as a matrix: its last dimension is the
/// columns, every other dimension is folded into the rows.
///
/// @par Layout rules (one place, host and device)
/// - Tiles cover the matrix from (0, 0) in steps of `rows` x `cols`; a tile at the right or bottom
///   edge may be partial and then covers only the elements that exist.
/// - Scales are stored plain row-major over the tile grid: the scale of tile (ti, tj) is at
///   `ti * grid_cols + tj`, grid_rows = ceil(matrix rows / tile rows), grid_cols likewise.
///   A 1 x 32 tile is MX's "one scale per 32 elements of a row", a 128 x 128 tile DeepSeek's
///   `weight_scale_inv[ceil(M/128), ceil(N/128)]`, a 1 x 128 tile its activation groups.
/// - Codes are in the flattened row-major element order (format packing in blockscaled.hpp).
struct tile_shape {
  std::int64_t rows = 1;
  std::int64_t cols = 32;
};

/// Tile grid of a `rows` x `cols` matrix cut into `tile` tiles (see tile_shape).
struct tile_grid {
  std::int64_t rows = 0;  ///< matrix rows
  std::int64_t cols = 0;  ///< matrix columns
  tile_shape tile{};

  LOWBIT_HD constexpr std::int64_t grid_rows() const noexcept { return quant::block_count(rows, tile.rows); }
  LOWBIT_HD constexpr std::int64_t grid_cols() const noexcept { return quant::block_count(cols, tile.cols); }
  /// Number of scales (tiles).
  LOWBIT_HD constexpr std::int64_t tiles() const noexcept { return grid_rows() * grid_cols(); }
  /// Index of the scale of element (r, c).
  LOWBIT_HD constexpr std::int64_t tile_of(std::int64_t r, std::int64_t c) const noexcept {
    return (r / tile.rows) * grid_cols() + c / tile.cols;
  }
  /// First row / column of tile (ti, tj) and its extent (partial at the edges).
  LOWBIT_HD constexpr std::int64_t tile_rows_at(std::int64_t ti) const noexcept {
    return rows - ti * tile.rows < tile.rows ? rows - ti * tile.rows : tile.rows;
  }
  LOWBIT_HD constexpr std::int64_t tile_cols_at(std::int64_t tj) const noexcept {
    return cols - tj * tile.cols < tile.cols ? cols - tj * tile.cols : tile.cols;
  }
};

/// How the tile scales of a block-scaled matrix are laid out.
enum class scale_layout : std::uint8_t {
  /// Row-major over the tile grid: the scale of tile (ti, tj) is at `ti * grid_cols + tj`.
  row_major,
  /// The 128x4 tiled layout cuBLASLt and CUTLASS's block-scaled GEMMs read (quant/scale_layout.hpp):
  /// the scale of tile (ti, tj) is at `swizzled_scale_offset(ti, tj, grid_cols)`, the scale array
  /// holds `swizzled_scale_bytes(grid_rows, grid_cols)` bytes, and quantize writes 0 into the
  /// padding. Defined for one-byte scales (MX, NVFP4) over 1-row tiles (1 x 32, 1 x 16), where a
  /// scale row is a matrix row, as those GEMMs consume them.
  swizzled,
};

/// Non-owning description of one block-scaled matrix's storage (quant/blockscaled.hpp), read and
/// written by the host engine (host/blockscaled.hpp) and the CUDA one (cuda/blockscaled.cuh).
/// Trivially copyable, so it can be passed to kernels by value.
struct scaled_view {
  scaled_format fmt = scaled_format::mxfp8_e4m3;
  std::int64_t rows = 0;  ///< matrix rows (leading dimensions folded in)
  std::int64_t cols = 0;  ///< last dimension
  tile_shape tile{1, 32};
  quant::mx_scale_rule mx_rule = quant::mx_scale_rule::floor;  ///< MX formats
  quant::nvfp4_global nvfp4 = quant::nvfp4_global::scale;      ///< nvfp4
  fp6_packing fp6 = fp6_packing::packed;                       ///< MXFP6 formats
  scale_layout layout = scale_layout::row_major;               ///< where each tile's scale is
  std::uint8_t* codes = nullptr;  ///< scaled_code_bytes(fmt, rows * cols, fp6)
  void* scales = nullptr;         ///< scale_count() scales: uint8 e8m0/e4m3 codes or float32
  float global_scale = 1.0f;      ///< nvfp4: the stored per-tensor float32 (written by quantize)
  /// nvfp4, CUDA engine only: the device address where cuda::quantize_scaled writes the per-tensor
  /// float32 and from which cuda::dequantize_scaled reads it (replacing `global_scale` there).
  /// The host engine ignores it.
  float* global_scale_device = nullptr;

  LOWBIT_HD constexpr std::int64_t numel() const noexcept { return rows * cols; }
  LOWBIT_HD constexpr tile_grid grid() const noexcept { return {rows, cols, tile}; }
  /// Number of scale slots the `scales` array holds (the padded count when swizzled).
  LOWBIT_HD constexpr std::int64_t scale_count() const noexcept {
    return layout == scale_layout::swizzled ? quant::swizzled_scale_bytes(grid().grid_rows(), grid().grid_cols()) : grid().tiles();
  }
  /// Index into `scales` of the scale of tile (ti, 0): the first of tile row ti.
  LOWBIT_HD constexpr std::int64_t scale_row_base(std::int64_t ti) const noexcept {
    return layout == scale_layout::swizzled ? quant::swizzled_row_offset(ti, grid().grid_cols()) : ti * grid().grid_cols();
  }
  /// Index of the scale of tile (ti, tj) from that of (ti, 0), the same for every tile row.
  LOWBIT_HD constexpr std::int64_t scale_column_offset(std::int64_t tj) const noexcept {
    return layout == scale_layout::swizzled ? quant::swizzled_column_offset(tj) : tj;
  }
  /// Index into `scales` of the scale of tile (ti, tj).
  LOWBIT_HD constexpr std::int64_t scale_index(std::int64_t ti, std::int64_t tj) const noexcept {
    return scale_row_base(ti) + scale_column_offset(tj);
  }
};

/// Checks the format, shape, tile, conventions and scale layout of `q` (not its pointers);
/// messages name the offending field and start with `what`.
inline status validate_layout(const scaled_view& q, const char* what) noexcept {
  if (!is_valid(q.fmt)) return status::error(errc::invalid_argument, "%s: scaled format %d is not a lowbit format", what, static_cast<int>(q.fmt));
  if (q.rows < 0 || q.cols < 0)
    return status::error(errc::invalid_argument, "%s: rows %lld and cols %lld must be >= 0", what, static_cast<long long>(q.rows), static_cast<long long>(q.cols));
  if (q.cols > 0 && q.rows > std::numeric_limits<std::int64_t>::max() / 8 / q.cols)
    return status::error(errc::invalid_argument, "%s: rows * cols overflows", what);
  if (q.tile.rows < 1 || q.tile.cols < 1)
    return status::error(errc::invalid_argument, "%s: tile is %lld x %lld, both must be >= 1", what, static_cast<long long>(q.tile.rows),
                         static_cast<long long>(q.tile.cols));
  const std::int64_t unit = quant::packing_unit(q.fmt, q.fp6);
  if (unit > 1 && (q.cols % unit != 0 || q.tile.cols % unit != 0))
    return status::error(errc::invalid_argument, "%s: %s packs %lld codes per byte group, so cols (%lld) and the tile's columns (%lld) must be multiples of %lld",
                         what, info(q.fmt).name, static_cast<long long>(unit), static_cast<long long>(q.cols), static_cast<long long>(q.tile.cols),
                         static_cast<long long>(unit));
  if (static_cast<unsigned>(q.mx_rule) > 3u) return status::error(errc::invalid_argument, "%s: mx_rule %d is not a rule", what, static_cast<int>(q.mx_rule));
  if (static_cast<unsigned>(q.nvfp4) > 2u) return status::error(errc::invalid_argument, "%s: nvfp4 convention %d is not one", what, static_cast<int>(q.nvfp4));
  if (static_cast<unsigned>(q.fp6) > 1u) return status::error(errc::invalid_argument, "%s: fp6 packing %d is not one", what, static_cast<int>(q.fp6));
  if (static_cast<unsigned>(q.layout) > 1u) return status::error(errc::invalid_argument, "%s: scale layout %d is not one", what, static_cast<int>(q.layout));
  if (q.layout == scale_layout::swizzled && (bytes_per_scale(q.fmt) != 1 || q.tile.rows != 1))
    return status::error(errc::unsupported, "%s: the swizzled scale layout holds one-byte scales of 1-row tiles; %s with %lld x %lld tiles has %s",
                         what, info(q.fmt).name, static_cast<long long>(q.tile.rows), static_cast<long long>(q.tile.cols),
                         bytes_per_scale(q.fmt) != 1 ? "float32 scales" : "tiles of several rows");
  return {};
}

/// Checks `q` (validate_layout, and the pointers a non-empty tensor needs).
inline status validate(const scaled_view& q, const char* what) noexcept {
  LOWBIT_TRY(validate_layout(q, what));
  if (q.numel() == 0) return {};
  if (q.codes == nullptr) return status::error(errc::invalid_argument, "%s: codes is null", what);
  if (q.scales == nullptr) return status::error(errc::invalid_argument, "%s: scales is null", what);
  return {};
}

/// Bytes of packed codes for `n` elements of format `f`.
LOWBIT_HD constexpr std::int64_t code_bytes(format f, std::int64_t n) noexcept {
  return info(f).bits == 4 ? (n + 1) / 2 : n;
}

/// True if `f` is one of the enumerators.
constexpr bool is_valid(format f) noexcept { return static_cast<unsigned>(f) < static_cast<unsigned>(format_count); }
/// True if `t` is one of the enumerators.
constexpr bool is_valid(dtype t) noexcept { return t == dtype::f32 || t == dtype::f16 || t == dtype::bf16; }

/// Checks the fields of `q` that every engine relies on; messages name the offending field and
/// start with `what` (the calling operation).
inline status validate(const quant_view& q, const char* what) noexcept {
  if (!is_valid(q.fmt)) return status::error(errc::invalid_argument, "%s: format %d is not a lowbit format", what, static_cast<int>(q.fmt));
  if (q.numel < 0) return status::error(errc::invalid_argument, "%s: numel is %lld, must be >= 0", what, static_cast<long long>(q.numel));
  if (q.block_size < 1) return status::error(errc::invalid_argument, "%s: block_size is %lld, must be >= 1", what, static_cast<long long>(q.block_size));
  if (q.numel == 0) return {};
  if (q.codes == nullptr) return status::error(errc::invalid_argument, "%s: codes is null", what);
  if (q.nested()) {
    if (!info(q.fmt).bnb)
      return status::error(errc::unsupported, "%s: double quantization is defined for nf4, bnb_fp4 and bnb_dynamic8, not %s", what, info(q.fmt).name);
    if (q.nested_scales == nullptr) return status::error(errc::invalid_argument, "%s: nested_codes is set but nested_scales is null", what);
  } else if (q.scales == nullptr) {
    return status::error(errc::invalid_argument, "%s: scales is null", what);
  }
  if (info(q.fmt).zero_point && q.zero_points == nullptr)
    return status::error(errc::invalid_argument, "%s: zero_points is null (uint8_zeropoint needs one per block)", what);
  if (q.code_table != nullptr && !info(q.fmt).bnb)
    return status::error(errc::unsupported, "%s: a code_table override applies to nf4, bnb_fp4 and bnb_dynamic8 only", what);
  return {};
}

LOWBIT_NAMESPACE_END
