// SPDX-License-Identifier: Apache-2.0
/// @file scale_layout.hpp
/// @brief Block-scale layouts: plain row-major, and the tiled ("swizzled") 128x4 layout that
///        cuBLASLt (`CUBLASLT_MATMUL_MATRIX_SCALE_VEC32_UE8M0` for MX, `VEC16_UE4M3` for NVFP4)
///        and CUTLASS's SM100/SM120 block-scaled GEMMs read, with conversions in both directions.
///
/// @par The layout (K-major scales: one scale per block of 32 (MX) or 16 (NVFP4) elements along
/// the contraction dimension K of a rows x K operand; `cols` = scales per row = ceil(K / block))
/// - The scale matrix (rows x cols, one byte per scale: e8m0fnu or ue4m3) is padded to
///   `rows_p = ceil(rows / 128) * 128` rows and `cols_p = ceil(cols / 4) * 4` columns and cut
///   into tiles of 128 rows x 4 columns, 512 bytes each.
/// - Tiles are stored row-major over the tile grid: tile (R, C) = (r / 128, c / 4) starts at byte
///   `(R * (cols_p / 4) + C) * 512`.
/// - Within a tile, scale (r, c) sits at `(r % 32) * 16 + ((r % 128) / 32) * 4 + (c % 4)`: the 16
///   bytes at 16 * i hold rows i, i + 32, i + 64, i + 96, each with its 4 consecutive scales.
/// - This is CUTLASS's `Sm1xxBlockScaledBasicChunk::SfKMajorAtom`,
///   `((32,4),(SFVec,4)) : ((16,4),(0,1))`, tiled over (M, K) with `Step<_2,_1,_3>` (K tiles
///   first; include/cutlass/detail/sm100_blockscaled_layout.hpp), and the layout of the cuBLAS
///   documentation's section "1D Block Scaling Factors Layout" (cuBLASLt API, block-scaled
///   matmul); Transformer Engine's `nvte_swizzle_scaling_factors` and torchao's `to_blocked`
///   produce it from row-major scales. Batched operands repeat it per matrix, each
///   `swizzled_scale_bytes(rows, cols)` bytes.
/// - Padding: swizzling writes `pad` (default 0) into every position outside rows x cols;
///   unswizzling reads only the rows x cols positions. (A padded row or column multiplies
///   elements that are themselves padding or outside the result, so its value does not matter to
///   a GEMM; 0 keeps the bytes deterministic.)
///
/// The index functions are `LOWBIT_HD` (host and device); the checked conversions are host code.
#pragma once

#include "../config.hpp"
#include "../memory.hpp"
#include "../status.hpp"

#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace quant {

/// Rows of one swizzled tile.
inline constexpr std::int64_t scale_tile_rows = 128;
/// Scale columns of one swizzled tile.
inline constexpr std::int64_t scale_tile_cols = 4;
/// Bytes of one swizzled tile.
inline constexpr std::int64_t scale_tile_bytes = scale_tile_rows * scale_tile_cols;

/// Scales per row for a row of `k` elements in blocks of `block` (ceil(k / block)).
LOWBIT_HD constexpr std::int64_t scale_columns(std::int64_t k, std::int64_t block) noexcept { return (k + block - 1) / block; }

/// Rows of the swizzled layout (rows rounded up to 128).
LOWBIT_HD constexpr std::int64_t swizzled_rows(std::int64_t rows) noexcept {
  return (rows + scale_tile_rows - 1) / scale_tile_rows * scale_tile_rows;
}
/// Scale columns of the swizzled layout (cols rounded up to 4).
LOWBIT_HD constexpr std::int64_t swizzled_cols(std::int64_t cols) noexcept {
  return (cols + scale_tile_cols - 1) / scale_tile_cols * scale_tile_cols;
}
/// Bytes of the swizzled layout of a rows x cols scale matrix (one byte per scale).
LOWBIT_HD constexpr std::int64_t swizzled_scale_bytes(std::int64_t rows, std::int64_t cols) noexcept {
  return swizzled_rows(rows) * swizzled_cols(cols);
}

/// Byte offset of scale (r, c) >= (0, 0) in the swizzled layout whose bands of 128 rows take
/// `band` bytes each (swizzled_cols(cols) * 128), in the caller's integer type I: the kernels
/// take it in 32-bit unsigned arithmetic, where the divisions are shifts and masks. Within a tile
/// of 128 x 4 scales, row r sits at (r % 32) * 16 + (r % 128) / 32 * 4 and column c at c % 4.
template <class I>
LOWBIT_HD constexpr I swizzled_offset(I r, I c, I band) noexcept {
  constexpr I rows = static_cast<I>(scale_tile_rows), cols = static_cast<I>(scale_tile_cols), bytes = static_cast<I>(scale_tile_bytes);
  return (r / rows) * band + (r % 32) * 16 + (r % rows) / 32 * 4 + (c / cols) * bytes + c % cols;
}
/// Byte offset of scale (r, 0) in the swizzled layout of a matrix with `cols` scale columns.
LOWBIT_HD constexpr std::int64_t swizzled_row_offset(std::int64_t r, std::int64_t cols) noexcept {
  return swizzled_offset<std::int64_t>(r, 0, swizzled_cols(cols) * scale_tile_rows);
}
/// Byte offset of scale (r, c) from scale (r, 0) in the swizzled layout (the same for every row).
LOWBIT_HD constexpr std::int64_t swizzled_column_offset(std::int64_t c) noexcept { return swizzled_offset<std::int64_t>(0, c, 0); }
/// Byte offset of scale (r, c) in the swizzled layout of a matrix with `cols` scale columns.
LOWBIT_HD constexpr std::int64_t swizzled_scale_offset(std::int64_t r, std::int64_t c, std::int64_t cols) noexcept {
  return swizzled_row_offset(r, cols) + swizzled_column_offset(c);
}

/// The inverse of swizzled_scale_offset: the (padded) row and column of the scale at byte `o`
/// (< swizzled_scale_bytes(rows, cols)) of the swizzled layout of a matrix with `cols` scale
/// columns. Position (r, c) is padding when r >= rows or c >= cols.
LOWBIT_HD constexpr void swizzled_scale_position(std::int64_t o, std::int64_t cols, std::int64_t& r, std::int64_t& c) noexcept {
  const std::int64_t tiles_per_row = swizzled_cols(cols) / scale_tile_cols;
  const std::int64_t tile = o / scale_tile_bytes, w = o % scale_tile_bytes;
  r = (tile / tiles_per_row) * scale_tile_rows + (w % 16) / 4 * 32 + w / 16;
  c = (tile % tiles_per_row) * scale_tile_cols + w % 4;
}

/// Row-major `src` (rows x cols, row stride `ld` >= cols) into the swizzled layout `dst`
/// (swizzled_scale_bytes(rows, cols) bytes), `pad` in the padding. No argument checks.
LOWBIT_HD void swizzle_scales_unchecked(const std::uint8_t* src, std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                               std::uint8_t* dst, std::uint8_t pad = 0) noexcept {
  const std::int64_t rp = swizzled_rows(rows), cp = swizzled_cols(cols);
  for (std::int64_t r = 0; r < rp; ++r) {
    for (std::int64_t c = 0; c < cp; ++c) {
      dst[swizzled_scale_offset(r, c, cols)] = (r < rows && c < cols) ? src[r * ld + c] : pad;
    }
  }
}

/// The swizzled layout `src` back into row-major `dst` (rows x cols, row stride `ld` >= cols).
/// No argument checks.
LOWBIT_HD void unswizzle_scales_unchecked(const std::uint8_t* src, std::int64_t rows, std::int64_t cols, std::uint8_t* dst,
                                                 std::int64_t ld) noexcept {
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t c = 0; c < cols; ++c) dst[r * ld + c] = src[swizzled_scale_offset(r, c, cols)];
  }
}

namespace detail {
inline status check_scale_layout_args(const char* what, const void* src, std::int64_t src_bytes, const void* dst,
                                      std::int64_t dst_bytes, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  if (rows < 0) return status::error(errc::invalid_argument, "%s: rows is %lld (negative)", what, static_cast<long long>(rows));
  if (cols < 0) return status::error(errc::invalid_argument, "%s: cols is %lld (negative)", what, static_cast<long long>(cols));
  if (ld < cols)
    return status::error(errc::invalid_argument, "%s: row stride ld is %lld, less than cols %lld", what, static_cast<long long>(ld),
                         static_cast<long long>(cols));
  if (rows == 0 || cols == 0) return {};
  if (src == nullptr) return status::error(errc::invalid_argument, "%s: source scales are null", what);
  if (dst == nullptr) return status::error(errc::invalid_argument, "%s: destination scales are null", what);
  if (ranges_overlap(src, src_bytes, dst, dst_bytes))
    return status::error(errc::invalid_argument, "%s: source and destination overlap", what);
  return {};
}
}  // namespace detail

/// Swizzles a rows x cols row-major scale matrix `src` (row stride `ld`; 0 means cols) into
/// `dst`, which must hold swizzled_scale_bytes(rows, cols) bytes; padding gets `pad`.
/// Errors (nothing written): negative rows/cols, ld < cols, null or overlapping arrays.
/// rows == 0 or cols == 0 writes nothing (the swizzled size is 0).
inline status swizzle_scales(const std::uint8_t* src, std::int64_t rows, std::int64_t cols, std::uint8_t* dst, std::int64_t ld = 0,
                             std::uint8_t pad = 0) {
  if (ld == 0) ld = cols;
  LOWBIT_TRY(detail::check_scale_layout_args("swizzle_scales", src, rows > 0 ? (rows - 1) * ld + cols : 0, dst,
                                             swizzled_scale_bytes(rows, cols), rows, cols, ld));
  if (rows == 0 || cols == 0) return {};
  swizzle_scales_unchecked(src, rows, cols, ld, dst, pad);
  return {};
}

/// Unswizzles `src` (the swizzled layout of a rows x cols scale matrix) into row-major `dst`
/// (row stride `ld`; 0 means cols). Errors as swizzle_scales.
inline status unswizzle_scales(const std::uint8_t* src, std::int64_t rows, std::int64_t cols, std::uint8_t* dst, std::int64_t ld = 0) {
  if (ld == 0) ld = cols;
  LOWBIT_TRY(detail::check_scale_layout_args("unswizzle_scales", src, swizzled_scale_bytes(rows, cols), dst,
                                             rows > 0 ? (rows - 1) * ld + cols : 0, rows, cols, ld));
  if (rows == 0 || cols == 0) return {};
  unswizzle_scales_unchecked(src, rows, cols, dst, ld);
  return {};
}

}  // namespace quant
LOWBIT_NAMESPACE_END
