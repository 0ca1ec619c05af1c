// SPDX-License-Identifier: Apache-2.0
// Compile-time pins of key codec facts (values from formats-and-peer-tests.md §4.1/§4.2 and
// bitsandbytes-semantics.md §1): if any of these drift, this file stops compiling. The single
// runtime test only makes the binary a runnable CTest target.

#include <lowbit/lowbit.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <type_traits>

namespace {

namespace lc = lowbit::codecs;
using lowbit::float_bits;

constexpr bool str_eq(const char* a, const char* b) {
  while (*a != '\0' && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

// --- bits / num_codes --------------------------------------------------------------------------
static_assert(lc::e4m3fn::bits == 8 && lc::e4m3fn::num_codes == 256, "e4m3fn width");
static_assert(lc::e5m2::bits == 8 && lc::e5m2::num_codes == 256, "e5m2 width");
static_assert(lc::e2m3fn::bits == 6 && lc::e2m3fn::num_codes == 64, "e2m3fn width");
static_assert(lc::e3m2fn::bits == 6 && lc::e3m2fn::num_codes == 64, "e3m2fn width");
static_assert(lc::e2m1fn::bits == 4 && lc::e2m1fn::num_codes == 16, "e2m1fn width");
static_assert(lc::e3m0::bits == 4 && lc::e3m0::num_codes == 16, "e3m0 width");
static_assert(lc::e8m0fnu::bits == 8 && lc::e8m0fnu::num_codes == 256, "e8m0fnu width");
static_assert(lc::nf4::bits == 4 && lc::nf4::num_codes == 16, "nf4 width");
static_assert(lc::bnb_fp4::bits == 4 && lc::bnb_fp4::num_codes == 16, "bnb_fp4 width");
static_assert(lc::bnb_dynamic8::bits == 8 && lc::bnb_dynamic8::num_codes == 256, "bnb_dynamic8 width");
static_assert(lc::int8_absmax::bits == 8 && lc::uint8_zeropoint::bits == 8, "integer widths");
static_assert(lc::bits_v<lc::e2m3fn> == 6 && lc::bits_v<lc::nf4> == 4, "bits_v");

// --- format parameters (§4.1, §4.2) -------------------------------------------------------------
static_assert(lc::e4m3fn::exponent_bits == 4 && lc::e4m3fn::mantissa_bits == 3 && lc::e4m3fn::bias == 7,
              "e4m3fn params");
static_assert(lc::e5m2::exponent_bits == 5 && lc::e5m2::mantissa_bits == 2 && lc::e5m2::bias == 15,
              "e5m2 params");
static_assert(lc::e2m3fn::bias == 1 && lc::e3m2fn::bias == 3 && lc::e2m1fn::bias == 1 &&
                  lc::e3m0::bias == 3 && lc::e8m0fnu::bias == 127,
              "biases");
static_assert(lc::e5m2::has_inf && !lc::e4m3fn::has_inf && !lc::e8m0fnu::has_inf, "Inf");
static_assert(lc::e4m3fn::has_nan && lc::e5m2::has_nan && lc::e8m0fnu::has_nan && !lc::e2m1fn::has_nan &&
                  !lc::e2m3fn::has_nan && !lc::e3m2fn::has_nan && !lc::e3m0::has_nan,
              "NaN");
static_assert(!lc::e8m0fnu::is_signed && !lc::e8m0fnu::has_zero && lc::e4m3fn::has_zero, "e8m0fnu");

// --- decode / max / min_normal / min_positive ---------------------------------------------------
static_assert(lc::e4m3fn::decode(0x7E) == 448.0f, "e4m3fn 0x7E");
static_assert(lc::e4m3fn::max() == 448.0f, "e4m3fn max");
static_assert(lc::e4m3fn::min_normal() == 0x1p-6f, "e4m3fn min normal");
static_assert(lc::e4m3fn::min_positive() == 0x1p-9f, "e4m3fn min subnormal");
static_assert(float_bits(lc::e4m3fn::decode(0x7F)) == 0x7FC00000u, "e4m3fn NaN");
static_assert(float_bits(lc::e4m3fn::decode(0xFF)) == 0xFFC00000u, "e4m3fn -NaN");
static_assert(float_bits(lc::e4m3fn::decode(0x80)) == 0x80000000u, "e4m3fn -0");

static_assert(lc::e5m2::max() == 57344.0f, "e5m2 max");
static_assert(lc::e5m2::min_normal() == 0x1p-14f, "e5m2 min normal");
static_assert(lc::e5m2::min_positive() == 0x1p-16f, "e5m2 min subnormal");
static_assert(float_bits(lc::e5m2::decode(0x7C)) == 0x7F800000u, "e5m2 +inf");
static_assert(float_bits(lc::e5m2::decode(0xFC)) == 0xFF800000u, "e5m2 -inf");

static_assert(lc::e2m3fn::max() == 7.5f, "e2m3fn max");
static_assert(lc::e2m3fn::min_normal() == 1.0f, "e2m3fn min normal");
static_assert(lc::e2m3fn::min_positive() == 0.125f, "e2m3fn min subnormal");

static_assert(lc::e3m2fn::max() == 28.0f, "e3m2fn max");
static_assert(lc::e3m2fn::min_normal() == 0.25f, "e3m2fn min normal");
static_assert(lc::e3m2fn::min_positive() == 0.0625f, "e3m2fn min subnormal");

static_assert(lc::e2m1fn::max() == 6.0f, "e2m1fn max");
static_assert(lc::e2m1fn::min_normal() == 1.0f, "e2m1fn min normal");
static_assert(lc::e2m1fn::min_positive() == 0.5f, "e2m1fn min subnormal");

static_assert(lc::e3m0::max() == 16.0f, "e3m0 max");
static_assert(lc::e3m0::min_normal() == 0.25f, "e3m0 min normal");
static_assert(lc::e3m0::min_positive() == 0.25f, "e3m0 min positive (no mantissa: no subnormals)");

static_assert(lc::e8m0fnu::decode(127) == 1.0f, "e8m0fnu 2^0");
static_assert(lc::e8m0fnu::max() == 0x1p127f, "e8m0fnu max");
static_assert(float_bits(lc::e8m0fnu::min_positive()) == 0x00400000u, "e8m0fnu 2^-127 (fp32 subnormal)");
static_assert(float_bits(lc::e8m0fnu::min_normal()) == 0x00400000u, "e8m0fnu smallest value");
static_assert(float_bits(lc::e8m0fnu::decode(0xFF)) == 0x7FC00000u, "e8m0fnu NaN");

// --- encode ------------------------------------------------------------------------------------
static_assert(lc::e4m3fn::encode(448.0f) == 0x7E, "e4m3fn encode max");
static_assert(lc::e4m3fn::encode(-0.0f) == 0x80, "e4m3fn encode -0");
static_assert(lc::e4m3fn::encode<lc::rounding::nearest_even, lc::overflow::special>(-1000.0f) == 0xFF,
              "e4m3fn NOSAT overflow keeps the sign");
static_assert(lc::e5m2::encode<lc::rounding::nearest_even, lc::overflow::special>(1e6f) == 0x7C,
              "e5m2 overflow to inf");
static_assert(lc::e5m2::encode(1e6f) == 0x7B, "e5m2 saturate");
static_assert(lc::e2m1fn::encode(5.0f) == 0x6, "e2m1fn tie 5 -> 4 (even)");
static_assert(lc::e8m0fnu::encode(1.0f) == 127, "e8m0fnu encode 1");
static_assert(lc::nf4::encode(0.f) == 7, "nf4 zero");
static_assert(lc::nf4::zero_code == 7, "nf4 zero code");
static_assert(lc::bnb_fp4::encode(0.f) == 0 && lc::bnb_fp4::zero_code == 0, "bnb_fp4 zero");
static_assert(lc::bnb_dynamic8::encode(0.f) == 127, "bnb_dynamic8 zero");
static_assert(lc::bnb_dynamic8::zero_code == 127, "bnb_dynamic8 zero code");
static_assert(lc::bnb_dynamic8::decode(255) == 1.0f, "bnb_dynamic8 max");
static_assert(float_bits(lc::bnb_dynamic8::decode(0)) == 0xBF7E3333u, "bnb_dynamic8 min -0.99296874");
static_assert(float_bits(lc::nf4::decode(0)) == 0xBF800000u && float_bits(lc::nf4::decode(15)) == 0x3F800000u,
              "nf4 ends");
static_assert(float_bits(lc::bnb_fp4::decode(8)) == 0x80000000u, "bnb_fp4 code 8 = -0.0");
static_assert(lc::int8_absmax::encode(2.5f, 1.0f) == 2 && lc::int8_absmax::encode(-2.5f, 1.0f) == -2,
              "int8 ties to even");
static_assert(lc::int8_absmax::max_code == 127 && lc::int8_absmax::zero_code == 0, "int8 codes");
static_assert(lc::uint8_zeropoint::encode(1.5f, 1.0f, 128) == 130, "uint8 ties to even");

// --- packing -----------------------------------------------------------------------------------
static_assert(lc::pack_nibbles<lc::nibble_order::high_first>(1, 2) == 0x12, "high_first");
static_assert(lc::pack_nibbles<lc::nibble_order::low_first>(1, 2) == 0x21, "low_first");
static_assert(lc::packed_size_4bit(0) == 0 && lc::packed_size_4bit(1) == 1 && lc::packed_size_4bit(17) == 9,
              "packed size");

// --- traits ------------------------------------------------------------------------------------
static_assert(lc::is_element_codec_v<lc::e4m3fn> && lc::is_element_codec_v<lc::e5m2> &&
                  lc::is_element_codec_v<lc::e2m3fn> && lc::is_element_codec_v<lc::e3m2fn> &&
                  lc::is_element_codec_v<lc::e2m1fn> && lc::is_element_codec_v<lc::e3m0> &&
                  lc::is_element_codec_v<lc::e8m0fnu> && lc::is_element_codec_v<lc::nf4> &&
                  lc::is_element_codec_v<lc::bnb_fp4> && lc::is_element_codec_v<lc::bnb_dynamic8>,
              "element codecs");
static_assert(!lc::is_element_codec_v<lc::int8_absmax> && !lc::is_element_codec_v<lc::uint8_zeropoint>,
              "integer codecs need a scale");
static_assert(std::is_same_v<lc::storage_t<lc::e4m3fn>, std::uint8_t>, "storage e4m3fn");
static_assert(std::is_same_v<lc::storage_t<lc::nf4>, std::uint8_t>, "storage nf4");
static_assert(std::is_same_v<lc::storage_t<lc::int8_absmax>, std::int8_t>, "storage int8");
static_assert(std::is_same_v<lc::storage_t<lc::uint8_zeropoint>, std::uint8_t>, "storage uint8");
static_assert(str_eq(lc::codec_name_v<lc::e4m3fn>, "e4m3fn") && str_eq(lc::codec_name_v<lc::e8m0fnu>, "e8m0fnu") &&
                  str_eq(lc::codec_name_v<lc::bnb_dynamic8>, "bnb_dynamic8") &&
                  str_eq(lc::codec_name_v<lc::uint8_zeropoint>, "uint8_zeropoint"),
              "codec names");

TEST(StaticChecks, Compiled) {
  // Everything above is checked at compile time; confirm one value at run time as well.
  EXPECT_EQ(float_bits(lc::e4m3fn::decode(0x7E)), 0x43E00000u) << "e4m3fn code 0x" << std::hex << 0x7E;
}

}  // namespace
