// SPDX-License-Identifier: Apache-2.0
// The host engine on sources and outputs at odd addresses (a safetensors file's tensor data need
// not be aligned; the engine documents "any alignment"). Built with -fsanitize=address,undefined
// (host_misaligned_sanitize_test), where any misaligned load or store is a failure; the property
// checked besides is that the bytes and values equal those of the same data at aligned addresses
// (the aligned results themselves are checked against the scalar reference in host_engine_test).
// Covered paths: block tails, the scalar NaN scan (a NaN in a block, allowed and refused), the
// two-pass quantizer (blocks past the fused limit, odd per-row blocks), double quantization,
// dequantize's scalar tail, and measure_error's double-precision re-sum (Inf in the input).
#include <lowbit/lowbit.hpp>

#include "test_util.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::dtype;
using lowbit::format;

// `n` random values of dtype `dt` at byte offset `offset` of `buf` (`poison` put at n / 2 if set).
const std::uint8_t* make_source(std::vector<std::uint8_t>& buf, std::size_t offset, dtype dt, std::size_t n, float poison, std::mt19937_64& rng) {
  const std::size_t size = static_cast<std::size_t>(lowbit::dtype_size(dt));
  buf.assign(offset + n * size + 8, 0);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (std::size_t i = 0; i < n; ++i) {
    float v = nd(rng);
    if (poison != 0.0f && i == n / 2) v = poison;
    std::uint8_t* p = buf.data() + offset + i * size;
    if (dt == dtype::f32) std::memcpy(p, &v, 4);
    else if (dt == dtype::f16) {
      const lowbit::f16 h = lowbit::from_float<lowbit::f16>(v);
      std::memcpy(p, &h, 2);
    } else {
      const lowbit::bf16 h = lowbit::from_float<lowbit::bf16>(v);
      std::memcpy(p, &h, 2);
    }
  }
  return buf.data() + offset;
}

bool same_bytes(const void* a, const void* b, std::size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

struct variant {
  format fmt;
  lowbit::granularity gran;
  bool dq;
};

}  // namespace

TEST(MisalignedData, QuantizeDequantizeAndMeasureAtOddAddresses) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  const std::vector<variant> variants = {
      {format::nf4, lowbit::granularity::per_block(64), true},      {format::bnb_fp4, lowbit::granularity::per_block(32), false},
      {format::int8_absmax, lowbit::granularity::per_row(), false},  {format::e4m3fn, lowbit::granularity::per_block(4096), false},
      {format::nf4, lowbit::granularity::per_row(), false},          {format::uint8_zeropoint, lowbit::granularity::per_block(128), false},
      {format::e2m1fn, lowbit::granularity::per_block(64), false},
  };
  const std::vector<std::vector<std::int64_t>> shapes = {{3, 37}, {5, 1000}, {1, 8195}};
  for (dtype dt : {dtype::f32, dtype::f16, dtype::bf16}) {
    const std::size_t size = static_cast<std::size_t>(lowbit::dtype_size(dt));
    for (const auto& v : variants) {
      for (const auto& shape : shapes) {
        for (float poison : {0.0f, std::nanf(""), INFINITY}) {
          const std::size_t n = static_cast<std::size_t>(shape[0] * shape[1]);
          SCOPED_TRACE(std::string(lowbit::info(v.fmt).name) + " " + lowbit::dtype_name(dt) + " n=" + std::to_string(n) + " poison=" + std::to_string(poison));
          std::vector<std::uint8_t> abuf, mbuf;
          const std::uint64_t state = rng();
          std::mt19937_64 r1(state), r2(state);
          const std::uint8_t* aligned = make_source(abuf, 0, dt, n, poison, r1);
          const std::uint8_t* odd = make_source(mbuf, 1, dt, n, poison, r2);
          lowbit::quantize_params p;
          p.fmt = v.fmt;
          p.gran = v.gran;
          p.double_quant = v.dq;
          // Refused without allow_nonfinite, naming the same index either way.
          lowbit::quant_tensor qa, qm;
          const lowbit::status sa = lowbit::quantize(aligned, dt, shape, p, qa), sm = lowbit::quantize(odd, dt, shape, p, qm);
          ASSERT_EQ(sa.ok(), sm.ok());
          ASSERT_EQ(sa.ok(), poison == 0.0f);
          if (!sa.ok()) {
            EXPECT_STREQ(sa.message(), sm.message());
            p.options.allow_nonfinite = true;
            ASSERT_TRUE(lowbit::quantize(aligned, dt, shape, p, qa).ok());
            ASSERT_TRUE(lowbit::quantize(odd, dt, shape, p, qm).ok());
          }
          ASSERT_TRUE(same_bytes(qa.codes(), qm.codes(), static_cast<std::size_t>(lowbit::code_bytes(v.fmt, static_cast<std::int64_t>(n)))));
          if (v.dq) {
            ASSERT_TRUE(same_bytes(qa.nested_codes(), qm.nested_codes(), static_cast<std::size_t>(qa.blocks())));
            EXPECT_EQ(lowbit_test::bits_of(qa.nested_offset()), lowbit_test::bits_of(qm.nested_offset()));
          } else {
            ASSERT_TRUE(same_bytes(qa.scales(), qm.scales(), static_cast<std::size_t>(qa.blocks()) * 4));
          }
          // Dequantized to an odd address: the same bytes as to an aligned one.
          std::vector<std::uint8_t> oa(n * size + 8), om(n * size + 8);
          ASSERT_TRUE(lowbit::dequantize(qa, oa.data(), dt, p.options).ok());
          ASSERT_TRUE(lowbit::dequantize(qa, om.data() + 1, dt, p.options).ok());
          ASSERT_TRUE(same_bytes(oa.data(), om.data() + 1, n * size));
          // The error sums (with Inf in x they are re-summed in double): equal from both sources.
          lowbit::host::error_stats ea, em;
          ASSERT_TRUE(lowbit::measure_error(aligned, dt, qa, ea, p.options).ok());
          ASSERT_TRUE(lowbit::measure_error(odd, dt, qa, em, p.options).ok());
          EXPECT_TRUE(lowbit_test::bits_of(static_cast<float>(ea.sum_abs)) == lowbit_test::bits_of(static_cast<float>(em.sum_abs)) ||
                      (std::isnan(ea.sum_abs) && std::isnan(em.sum_abs)));
          EXPECT_TRUE(ea.sum_sq_err == em.sum_sq_err || (std::isnan(ea.sum_sq_err) && std::isnan(em.sum_sq_err)));
        }
      }
    }
  }
}
