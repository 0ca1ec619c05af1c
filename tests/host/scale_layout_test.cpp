// SPDX-License-Identifier: Apache-2.0
// The swizzled 128x4 block-scale layout (lowbit/quant/scale_layout.hpp) against two independent
// statements of its definition:
// - CUTLASS's CuTe layout (include/cutlass/detail/sm100_blockscaled_layout.hpp): the atom
//   ((32,4),(SFVec,4)) : ((16,4),(0,1)) over (row, element along K), tiled with Step<_2,_1,_3>
//   (K tiles vary fastest), evaluated at element coordinates, as the GEMM addresses it;
// - the array reshapes with which Transformer Engine / torchao build it from row-major scales
//   (pad to 128 x 4 multiples, view (R, 128, C, 4), permute to (R, C, 128, 4), view each tile as
//   (4, 32, 4), transpose to (32, 4, 4), flatten);
// the worked example of NVIDIA's nvmath-python `get_block_scale_offset` documentation, round
// trips, padding, strides, and argument errors.
#include <lowbit/quant/scale_layout.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

namespace q = ::lowbit::quant;

// CuTe: offset of the scale that applies to element (m, k) of a rows x K operand with blocks of
// sf_vec elements along K (k_tiles = tiles along K, each 4 * sf_vec elements).
std::int64_t cute_offset(std::int64_t m, std::int64_t k, std::int64_t sf_vec, std::int64_t k_tiles) {
  const std::int64_t mt = m / 128, mi = m % 128, kt = k / (4 * sf_vec), ki = k % (4 * sf_vec);
  // atom: mode 0 = (32, 4) : (16, 4) over mi (colexicographic), mode 1 = (sf_vec, 4) : (0, 1) over ki
  const std::int64_t atom = (mi % 32) * 16 + (mi / 32) * 4 + (ki % sf_vec) * 0 + (ki / sf_vec) * 1;
  // tile_to_shape(..., Step<_2,_1,_3>): the K tile index is the fastest-varying one
  return (mt * k_tiles + kt) * 512 + atom;
}

// Transformer Engine / torchao: the swizzled bytes built by reshapes of the padded matrix.
std::vector<std::uint8_t> reshape_swizzle(const std::vector<std::uint8_t>& a, std::int64_t rows, std::int64_t cols) {
  const std::int64_t rb = (rows + 127) / 128, cb = (cols + 3) / 4;
  auto padded = [&](std::int64_t r, std::int64_t c) -> std::uint8_t {
    return r < rows && c < cols ? a[static_cast<std::size_t>(r * cols + c)] : 0;
  };
  std::vector<std::uint8_t> out;
  for (std::int64_t R = 0; R < rb; ++R) {            // permute(0, 2, 1, 3): (R, C, 128, 4)
    for (std::int64_t C = 0; C < cb; ++C) {
      for (std::int64_t i = 0; i < 32; ++i) {        // (4, 32, 4).transpose(1, 2) -> (32, 4, 4)
        for (std::int64_t j = 0; j < 4; ++j) {
          for (std::int64_t c = 0; c < 4; ++c) out.push_back(padded(R * 128 + j * 32 + i, C * 4 + c));
        }
      }
    }
  }
  return out;
}

std::vector<std::uint8_t> random_bytes(std::size_t n, std::mt19937_64& rng) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(1 + rng() % 255);  // never the pad value 0
  return v;
}

TEST(ScaleLayout, EqualsCutlassCuteLayout) {
  // MX (32-element blocks) and NVFP4 (16-element blocks), ragged shapes
  for (const std::int64_t sf_vec : {32, 16}) {
    for (const std::int64_t m : {1, 127, 128, 129, 300}) {
      for (const std::int64_t k : {sf_vec, 3 * sf_vec, 4 * sf_vec, 9 * sf_vec + 5}) {
        const std::int64_t cols = q::scale_columns(k, sf_vec);
        const std::int64_t k_tiles = (cols + 3) / 4;
        for (std::int64_t r = 0; r < m; ++r) {
          for (std::int64_t e = 0; e < k; ++e) {
            ASSERT_EQ(q::swizzled_scale_offset(r, e / sf_vec, cols), cute_offset(r, e, sf_vec, k_tiles))
                << "element (" << r << ", " << e << "), block " << sf_vec << ", " << m << " x " << k;
          }
        }
      }
    }
  }
}

TEST(ScaleLayout, EqualsTheReshapeDefinition) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  for (const std::int64_t rows : {1, 31, 32, 33, 128, 129, 255, 256, 400}) {
    for (const std::int64_t cols : {1, 3, 4, 5, 8, 17}) {
      const std::vector<std::uint8_t> a = random_bytes(static_cast<std::size_t>(rows * cols), rng);
      std::vector<std::uint8_t> got(static_cast<std::size_t>(q::swizzled_scale_bytes(rows, cols)), 0xEE);
      ASSERT_TRUE(q::swizzle_scales(a.data(), rows, cols, got.data()).ok());
      EXPECT_EQ(got, reshape_swizzle(a, rows, cols)) << rows << " x " << cols;
    }
  }
}

TEST(ScaleLayout, DocumentationExample) {
  // nvmath-python get_block_scale_offset: an NVFP4 operand a of shape (M=128, K=128), 16-element
  // blocks along K: the elements a[5, 32..47] form K-group 2, whose scale is (5, 2) of the 128 x 8
  // scale matrix. By the layout: tile (0, 0), row 5 -> 5 * 16, column 2 -> + 2.
  EXPECT_EQ(q::swizzled_scale_offset(5, 32 / 16, q::scale_columns(128, 16)), 82);
  EXPECT_EQ(q::swizzled_scale_offset(5, 47 / 16, q::scale_columns(128, 16)), 82);
  // MX: a 256 x 256 operand, 32-element blocks (8 scale columns, 2 tiles across): scale (130, 5)
  // is in tile (1, 1) = the fourth 512-byte tile, row 130 -> (2 * 16 + 0 * 4), column 5 -> + 1.
  EXPECT_EQ(q::swizzled_scale_offset(130, 5, 8), 3 * 512 + 2 * 16 + 1);
  // rows 0, 32, 64, 96 share the first 16 bytes of a tile, 4 scales each
  EXPECT_EQ(q::swizzled_scale_offset(32, 0, 4), 4);
  EXPECT_EQ(q::swizzled_scale_offset(96, 3, 4), 15);
  EXPECT_EQ(q::swizzled_scale_offset(1, 0, 4), 16);
  EXPECT_EQ(q::swizzled_scale_bytes(130, 5), 256 * 8);
  EXPECT_EQ(q::swizzled_scale_bytes(0, 5), 0);
}

TEST(ScaleLayout, RoundTripsPaddingAndStrides) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x5ca1e);
  for (int trial = 0; trial < 200; ++trial) {
    const std::int64_t rows = 1 + static_cast<std::int64_t>(rng() % 300), cols = 1 + static_cast<std::int64_t>(rng() % 20);
    const std::int64_t ld = cols + static_cast<std::int64_t>(rng() % 3);
    const std::uint8_t pad = static_cast<std::uint8_t>(rng() % 2 ? 0 : 0x7F);
    SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols) + " ld " + std::to_string(ld));
    const std::vector<std::uint8_t> a = random_bytes(static_cast<std::size_t>(rows * ld), rng);
    std::vector<std::uint8_t> s(static_cast<std::size_t>(q::swizzled_scale_bytes(rows, cols)), 0xEE);
    ASSERT_TRUE(q::swizzle_scales(a.data(), rows, cols, s.data(), ld, pad).ok());
    // a permutation of the padded matrix: every in-range scale once, the rest padding
    std::vector<int> hits(s.size(), 0);
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        const std::int64_t o = q::swizzled_scale_offset(r, c, cols);
        ASSERT_LT(o, static_cast<std::int64_t>(s.size()));
        hits[static_cast<std::size_t>(o)] += 1;
        ASSERT_EQ(s[static_cast<std::size_t>(o)], a[static_cast<std::size_t>(r * ld + c)]);
      }
    }
    for (std::size_t i = 0; i < s.size(); ++i) {
      ASSERT_LE(hits[i], 1) << "offset " << i << " taken twice";
      if (hits[i] == 0) {
        ASSERT_EQ(s[i], pad) << "padding at offset " << i;
      }
    }
    std::vector<std::uint8_t> back(static_cast<std::size_t>(rows * ld), 0xEE);
    ASSERT_TRUE(q::unswizzle_scales(s.data(), rows, cols, back.data(), ld).ok());
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < ld; ++c) {
        ASSERT_EQ(back[static_cast<std::size_t>(r * ld + c)], c < cols ? a[static_cast<std::size_t>(r * ld + c)] : 0xEE)
            << "(" << r << ", " << c << ")";
      }
    }
  }
}

// swizzled_scale_position inverts swizzled_scale_offset over every byte of the padded layout
// (the CUDA quantizer finds the padding it zeroes with it).
TEST(ScaleLayout, PositionInvertsOffset) {
  for (std::int64_t rows : {1, 127, 128, 129, 300}) {
    for (std::int64_t cols : {1, 3, 4, 5, 9}) {
      for (std::int64_t o = 0; o < q::swizzled_scale_bytes(rows, cols); ++o) {
        std::int64_t r = -1, c = -1;
        q::swizzled_scale_position(o, cols, r, c);
        ASSERT_TRUE(r >= 0 && r < q::swizzled_rows(rows) && c >= 0 && c < q::swizzled_cols(cols)) << rows << "x" << cols << " byte " << o;
        ASSERT_EQ(q::swizzled_scale_offset(r, c, cols), o) << rows << "x" << cols << " byte " << o << " -> (" << r << ", " << c << ")";
      }
    }
  }
}

TEST(ScaleLayout, BadArgumentsAreNamed) {
  std::vector<std::uint8_t> a(64, 1), s(512, 9);
  auto msg = [](const lowbit::status& st) { return std::string(st.ok() ? "ok" : st.message()); };
  EXPECT_NE(msg(q::swizzle_scales(a.data(), -1, 4, s.data())).find("rows is -1"), std::string::npos);
  EXPECT_NE(msg(q::swizzle_scales(a.data(), 4, -2, s.data())).find("cols is -2"), std::string::npos);
  EXPECT_NE(msg(q::swizzle_scales(a.data(), 4, 4, s.data(), 3)).find("ld is 3"), std::string::npos);
  EXPECT_NE(msg(q::swizzle_scales(nullptr, 4, 4, s.data())).find("source"), std::string::npos);
  EXPECT_NE(msg(q::unswizzle_scales(s.data(), 4, 4, nullptr)).find("destination"), std::string::npos);
  EXPECT_NE(msg(q::swizzle_scales(s.data(), 4, 4, s.data() + 8)).find("overlap"), std::string::npos);
  for (const std::uint8_t b : s) EXPECT_EQ(b, 9);
  EXPECT_TRUE(q::swizzle_scales(nullptr, 0, 4, nullptr).ok());
}

}  // namespace
