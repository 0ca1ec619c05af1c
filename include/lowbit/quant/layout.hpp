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
#include "blockwise.hpp"

#include <cstdint>

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
