// SPDX-License-Identifier: Apache-2.0
// lowbit's float16/bfloat16 conversions against NVIDIA's host conversions (cuda_fp16.h,
// cuda_bf16.h): every 16-bit pattern widened, and a million seeded float32 patterns narrowed
// (all 2^32 are in exhaustive_test).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <lowbit/dtype.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>

#include "test_util.hpp"

namespace {

using lowbit_test::bits_of;
using lowbit_test::float_of;
using lowbit_test::hex;

std::uint16_t nv_f16(float x) {
  const __half h = __float2half_rn(x);
  std::uint16_t u;
  std::memcpy(&u, &h, 2);
  return u;
}
std::uint16_t nv_bf16(float x) {
  const __nv_bfloat16 b = __float2bfloat16_rn(x);
  std::uint16_t u;
  std::memcpy(&u, &b, 2);
  return u;
}

TEST(Dtype, WidenEvery16BitPattern) {
  for (std::uint32_t v = 0; v < 65536; ++v) {
    __half_raw hr;
    hr.x = static_cast<std::uint16_t>(v);
    const float nh = __half2float(__half(hr));
    const float lh = lowbit::f16_bits_to_float(static_cast<std::uint16_t>(v));
    if (std::isnan(nh)) {
      ASSERT_TRUE(std::isnan(lh)) << "f16 " << hex(v, 4);
      // lowbit keeps the sign and payload (quieted), as F16C does
      ASSERT_EQ(bits_of(lh) >> 31, v >> 15) << "f16 " << hex(v, 4);
    } else {
      ASSERT_EQ(bits_of(lh), bits_of(nh)) << "f16 " << hex(v, 4);
    }
    __nv_bfloat16_raw br;
    br.x = static_cast<std::uint16_t>(v);
    const float nb = __bfloat162float(__nv_bfloat16(br));
    const float lb = lowbit::bf16_bits_to_float(static_cast<std::uint16_t>(v));
    ASSERT_EQ(bits_of(lb), v << 16) << "bf16 " << hex(v, 4);
    if (!std::isnan(nb)) {
      ASSERT_EQ(bits_of(lb), bits_of(nb)) << "bf16 " << hex(v, 4);
    }
  }
}

TEST(Dtype, NarrowSampledFloats) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  for (int i = 0; i < 1 << 20; ++i) {
    const std::uint32_t u = rng();
    const float x = float_of(u);
    ASSERT_EQ(lowbit::float_to_f16_bits(x), nv_f16(x)) << "input " << hex(u);
    ASSERT_EQ(lowbit::float_to_bf16_bits(x), nv_bf16(x)) << "input " << hex(u);
  }
  // ties and edges
  for (float x : {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65519.0f, 65520.0f, 0x1p-25f, 0x1.8p-25f, 0x1p-24f,
                  -0x1p-26f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 3.3895314e38f}) {
    EXPECT_EQ(lowbit::float_to_f16_bits(x), nv_f16(x)) << x;
    EXPECT_EQ(lowbit::float_to_bf16_bits(x), nv_bf16(x)) << x;
  }
}

static_assert(lowbit::float_to_bf16_bits(1.0f) == 0x3F80, "bf16 of 1");
static_assert(lowbit::float_to_f16_bits(1.0f) == 0x3C00, "f16 of 1");
static_assert(lowbit::float_to_f16_bits(1.0f + 0x1p-11f) == 0x3C00, "f16 tie to even");
static_assert(lowbit::f16_bits_to_float(0x0001) == 0x1p-24f, "smallest f16 subnormal");

}  // namespace
