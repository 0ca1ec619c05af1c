// SPDX-License-Identifier: Apache-2.0
// Exhaustive decode tables: every code of every element codec is compared BIT FOR BIT (sign of
// zero and NaN payload included) against an expected table written from the specifications, never
// computed by calling lowbit:
// - 4-bit formats (e2m1fn, e3m0, nf4, bnb_fp4): literal float32 bit patterns typed from
//   formats-and-peer-tests.md §4.2 and bitsandbytes-semantics.md §1.1/§1.2.
// - 6- and 8-bit minifloats: an independent sign/exponent/mantissa/bias formula in double
//   precision (std::ldexp) from the format parameters of formats-and-peer-tests.md §4.1/§4.2.
// - bnb_dynamic8: regenerated with bitsandbytes' create_dynamic_map algorithm
//   (bitsandbytes-semantics.md §1.3, FMA linspace) and spot-checked against Appendix A literals.
// NVIDIA's host conversions (cuda_fp8.h, cuda_fp6.h, cuda_fp4.h) serve as a second oracle.

// NVIDIA's headers come before lowbit's (lowbit must not depend on them, but must coexist).
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>

#include <lowbit/lowbit.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

namespace lc = lowbit::codecs;

std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// ---------------------------------------------------------------------------------------------
// Format parameters, typed from the specs (NOT read from lowbit's headers).

enum class Specials { ieee, fn, finite };

struct FormatParams {
  const char* name;
  int exp_bits;
  int man_bits;
  int bias;
  bool has_sign;
  bool has_subnormals;  // exponent field 0 = subnormal (else an ordinary exponent, no zero)
  Specials specials;
};

// §4.1: E4M3 bias 7, NaN S.1111.111, no Inf. E5M2 bias 15, Inf S.11111.00, NaN S.11111.{01,10,11}.
constexpr FormatParams kE4m3fn{"e4m3fn", 4, 3, 7, true, true, Specials::fn};
constexpr FormatParams kE5m2{"e5m2", 5, 2, 15, true, true, Specials::ieee};
// §4.2: FP6 E2M3 bias 1, E3M2 bias 3, FP4 E2M1 bias 1; no Inf/NaN.
constexpr FormatParams kE2m3fn{"e2m3fn", 2, 3, 1, true, true, Specials::finite};
constexpr FormatParams kE3m2fn{"e3m2fn", 3, 2, 3, true, true, Specials::finite};
constexpr FormatParams kE2m1fn{"e2m1fn", 2, 1, 1, true, true, Specials::finite};
// e3m0: sign, 3 exponent bits, bias 3, no mantissa, no Inf/NaN, exponent field 0 = zero.
constexpr FormatParams kE3m0{"e3m0", 3, 0, 3, true, true, Specials::finite};
// §4.2: E8M0 unsigned, bias 127, 2^(e-127) for e in 0..254, 0xFF = NaN, no zero, no Inf.
constexpr FormatParams kE8m0fnu{"e8m0fnu", 8, 0, 127, false, false, Specials::fn};

int spec_num_codes(const FormatParams& f) {
  return 1 << (f.exp_bits + f.man_bits + (f.has_sign ? 1 : 0));
}

/// Expected float32 bit pattern of `code`, from the format parameters alone.
std::uint32_t expected_minifloat_bits(const FormatParams& f, unsigned code) {
  const int mag_bits = f.exp_bits + f.man_bits;
  const bool negative = f.has_sign && ((code >> mag_bits) & 1u) != 0u;
  const std::uint32_t sign = negative ? 0x80000000u : 0u;
  const unsigned e_all_ones = (1u << f.exp_bits) - 1u;
  const unsigned m_all_ones = (1u << f.man_bits) - 1u;
  const unsigned e = (code >> f.man_bits) & e_all_ones;
  const unsigned m = code & m_all_ones;
  if (f.specials == Specials::ieee && e == e_all_ones) {
    return sign | (m == 0u ? 0x7F800000u : 0x7FC00000u);  // Inf, or quiet NaN with the code's sign
  }
  if (f.specials == Specials::fn && e == e_all_ones && m == m_all_ones) {
    return sign | 0x7FC00000u;
  }
  double magnitude;
  if (e == 0u && f.has_subnormals) {
    // subnormal: 0.m * 2^(1 - bias)
    magnitude = std::ldexp(static_cast<double>(m), 1 - f.bias - f.man_bits);
  } else {
    // normal: 1.m * 2^(e - bias)
    magnitude = std::ldexp(static_cast<double>((1u << f.man_bits) + m),
                           static_cast<int>(e) - f.bias - f.man_bits);
  }
  const double value = negative ? -magnitude : magnitude;
  const float as_float = static_cast<float>(value);
  // All these values are exact in float32 (the smallest is E8M0's 2^-127, a float32 subnormal).
  EXPECT_EQ(static_cast<double>(as_float), value) << f.name << " code 0x" << std::hex << code;
  return bits_of(as_float);
}

/// Compares Codec::decode(c) with `expected[c]` bit for bit for every code.
template <class Codec>
void expect_decode_table(const char* name, const std::vector<std::uint32_t>& expected) {
  ASSERT_EQ(static_cast<std::size_t>(Codec::num_codes), expected.size()) << name;
  for (std::size_t c = 0; c < expected.size(); ++c) {
    const float got = Codec::decode(static_cast<typename Codec::storage_type>(c));
    EXPECT_EQ(bits_of(got), expected[c])
        << name << " code 0x" << std::hex << c << ": expected bits 0x" << expected[c]
        << ", got 0x" << bits_of(got) << " (" << got << ")";
  }
}

template <class Codec>
void expect_minifloat_decode_formula(const FormatParams& f) {
  std::vector<std::uint32_t> expected;
  for (int c = 0; c < spec_num_codes(f); ++c) {
    expected.push_back(expected_minifloat_bits(f, static_cast<unsigned>(c)));
  }
  expect_decode_table<Codec>(f.name, expected);
}

// ---------------------------------------------------------------------------------------------
// Literal 4-bit tables.

// formats-and-peer-tests.md §4.2: E2M1 values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; code 8 = -0.
const std::vector<std::uint32_t> kE2m1fnBits = {
    0x00000000u, 0x3F000000u, 0x3F800000u, 0x3FC00000u,  // 0, 0.5, 1, 1.5
    0x40000000u, 0x40400000u, 0x40800000u, 0x40C00000u,  // 2, 3, 4, 6
    0x80000000u, 0xBF000000u, 0xBF800000u, 0xBFC00000u,  // -0, -0.5, -1, -1.5
    0xC0000000u, 0xC0400000u, 0xC0800000u, 0xC0C00000u,  // -2, -3, -4, -6
};

// e3m0: ±{0, 0.25, 0.5, 1, 2, 4, 8, 16}; code 8 = -0.
const std::vector<std::uint32_t> kE3m0Bits = {
    0x00000000u, 0x3E800000u, 0x3F000000u, 0x3F800000u,  // 0, 0.25, 0.5, 1
    0x40000000u, 0x40800000u, 0x41000000u, 0x41800000u,  // 2, 4, 8, 16
    0x80000000u, 0xBE800000u, 0xBF000000u, 0xBF800000u,  // -0, -0.25, -0.5, -1
    0xC0000000u, 0xC0800000u, 0xC1000000u, 0xC1800000u,  // -2, -4, -8, -16
};

// bitsandbytes-semantics.md §1.1, "f32 bits" column.
const std::vector<std::uint32_t> kNf4Bits = {
    0xBF800000u, 0xBF3239B1u, 0xBF066B30u, 0xBECA32A0u, 0xBE91A24Du, 0xBE3D353Fu,
    0xBDBA7871u, 0x00000000u, 0x3DA2FAFFu, 0x3E24CAE3u, 0x3E7C04DDu, 0x3EAD033Au,
    0x3EE1A4B8u, 0x3F1007ABu, 0x3F3913B3u, 0x3F800000u,
};

// bitsandbytes-semantics.md §1.2, "f32 bits" column; code 8 is -0.0 as in bnb's CUDA kernels.
const std::vector<std::uint32_t> kBnbFp4Bits = {
    0x00000000u, 0x3BAAAAABu, 0x3F2AAAABu, 0x3F800000u,  // 0, 1/192, 2/3, 1
    0x3EAAAAABu, 0x3F000000u, 0x3E2AAAABu, 0x3E800000u,  // 1/3, 1/2, 1/6, 1/4
    0x80000000u, 0xBBAAAAABu, 0xBF2AAAABu, 0xBF800000u,  // -0, -1/192, -2/3, -1
    0xBEAAAAABu, 0xBF000000u, 0xBE2AAAABu, 0xBE800000u,  // -1/3, -1/2, -1/6, -1/4
};

// ---------------------------------------------------------------------------------------------
// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), regenerated.

/// Correctly rounded float32 product (the double product of two floats is exact), immune to FMA
/// contraction by the compiler.
float mul_f32(float a, float b) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

/// torch.linspace(start, end, steps, dtype=float32) as the scalar CPU kernel of current torch
/// computes it, with FMA contraction in both branches (the variant Appendix A lists).
std::vector<float> torch_linspace_f32_fma(float start, float end, int steps) {
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int halfway = steps / 2;
  std::vector<float> out(static_cast<std::size_t>(steps));
  for (int idx = 0; idx < steps; ++idx) {
    out[static_cast<std::size_t>(idx)] =
        idx < halfway ? std::fma(step, static_cast<float>(idx), start)
                      : std::fma(-step, static_cast<float>(steps - idx - 1), end);
  }
  return out;
}

std::vector<float> regenerate_bnb_dynamic_map() {
  constexpr int max_exponent_bits = 7;  // E
  constexpr int total_bits = 8;
  constexpr int non_sign_bits = total_bits - 1;
  // additional_items = 2^(non_sign_bits - E) - 1 = 0 for these parameters.
  static_assert((1 << (non_sign_bits - max_exponent_bits)) - 1 == 0, "no additional items");
  // 10^(-(E-1)+i) for i = 0..E-1, as Python floats; torch rounds the scalar to float32.
  const double powers_of_ten[max_exponent_bits] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
  std::vector<float> data;
  for (int i = 0; i < max_exponent_bits; ++i) {
    const int fraction_items = (1 << (i + non_sign_bits - max_exponent_bits)) + 1;  // signed
    const std::vector<float> boundaries = torch_linspace_f32_fma(0.1f, 1.0f, fraction_items);
    const float scale = static_cast<float>(powers_of_ten[i]);
    for (std::size_t k = 0; k + 1 < boundaries.size(); ++k) {
      const float mean = (boundaries[k] + boundaries[k + 1]) / 2.0f;
      const float value = mul_f32(scale, mean);
      data.push_back(value);
      data.push_back(-value);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  EXPECT_EQ(data.size(), std::size_t{1} << total_bits);
  std::sort(data.begin(), data.end());
  return data;
}

// ---------------------------------------------------------------------------------------------
// NVIDIA host conversions (oracle).

float half_raw_to_float(__half_raw h) { return __half2float(__half(h)); }

template <class Codec, class ToHalf>
void expect_matches_nvidia(const FormatParams& f, ToHalf to_half) {
  int compared = 0;
  for (int c = 0; c < spec_num_codes(f); ++c) {
    const float nv = half_raw_to_float(to_half(static_cast<unsigned char>(c)));
    if (std::isnan(nv)) continue;  // NaN payloads are not compared against NVIDIA
    const float got = Codec::decode(static_cast<typename Codec::storage_type>(c));
    // Value equality including the sign of zero (non-NaN float32 values: equal bits).
    EXPECT_EQ(bits_of(got), bits_of(nv))
        << f.name << " code 0x" << std::hex << c << ": NVIDIA 0x" << bits_of(nv) << " (" << nv
        << "), lowbit 0x" << bits_of(got) << " (" << got << ")";
    ++compared;
  }
  EXPECT_GT(compared, 0) << f.name;
}

// ---------------------------------------------------------------------------------------------
// Minifloats: the independent formula.

TEST(DecodeTable, E4m3fnAllCodes) { expect_minifloat_decode_formula<lc::e4m3fn>(kE4m3fn); }
TEST(DecodeTable, E5m2AllCodes) { expect_minifloat_decode_formula<lc::e5m2>(kE5m2); }
TEST(DecodeTable, E2m3fnAllCodes) { expect_minifloat_decode_formula<lc::e2m3fn>(kE2m3fn); }
TEST(DecodeTable, E3m2fnAllCodes) { expect_minifloat_decode_formula<lc::e3m2fn>(kE3m2fn); }
TEST(DecodeTable, E8m0fnuAllCodes) { expect_minifloat_decode_formula<lc::e8m0fnu>(kE8m0fnu); }

// 4-bit formats: literal tables (the formula is checked against the literals too, so the formula
// itself is validated on formats whose tables are printed in the spec).
TEST(DecodeTable, E2m1fnAllCodes) {
  expect_decode_table<lc::e2m1fn>("e2m1fn", kE2m1fnBits);
  for (unsigned c = 0; c < 16; ++c) {
    EXPECT_EQ(expected_minifloat_bits(kE2m1fn, c), kE2m1fnBits[c])
        << "formula vs literal, e2m1fn code 0x" << std::hex << c;
  }
}
TEST(DecodeTable, E3m0AllCodes) {
  expect_decode_table<lc::e3m0>("e3m0", kE3m0Bits);
  for (unsigned c = 0; c < 16; ++c) {
    EXPECT_EQ(expected_minifloat_bits(kE3m0, c), kE3m0Bits[c])
        << "formula vs literal, e3m0 code 0x" << std::hex << c;
  }
}
TEST(DecodeTable, Nf4AllCodes) { expect_decode_table<lc::nf4>("nf4", kNf4Bits); }
TEST(DecodeTable, BnbFp4AllCodes) { expect_decode_table<lc::bnb_fp4>("bnb_fp4", kBnbFp4Bits); }

// Literal spot checks of the 6/8-bit formats (values quoted in the spec tables).
TEST(DecodeTable, MinifloatLiteralSpotChecks) {
  struct Case {
    const char* name;
    float (*decode)(std::uint8_t);
    unsigned code;
    std::uint32_t bits;
  };
  const Case cases[] = {
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0x7E, 0x43E00000u},  // 448
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0xFE, 0xC3E00000u},  // -448
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0x08, 0x3C800000u},  // 2^-6
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0x01, 0x3B000000u},  // 2^-9
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0x38, 0x3F800000u},  // 1
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0x80, 0x80000000u},  // -0
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0x7F, 0x7FC00000u},  // NaN
      {"e4m3fn", [](std::uint8_t c) { return lc::e4m3fn::decode(c); }, 0xFF, 0xFFC00000u},  // -NaN
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0x7B, 0x47600000u},  // 57344
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0x04, 0x38800000u},  // 2^-14
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0x01, 0x37800000u},  // 2^-16
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0x7C, 0x7F800000u},  // +inf
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0xFC, 0xFF800000u},  // -inf
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0x7D, 0x7FC00000u},  // NaN
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0x7E, 0x7FC00000u},  // NaN
      {"e5m2", [](std::uint8_t c) { return lc::e5m2::decode(c); }, 0xFF, 0xFFC00000u},  // -NaN
      {"e2m3fn", [](std::uint8_t c) { return lc::e2m3fn::decode(c); }, 0x1F, 0x40F00000u},  // 7.5
      {"e2m3fn", [](std::uint8_t c) { return lc::e2m3fn::decode(c); }, 0x01, 0x3E000000u},  // .125
      {"e2m3fn", [](std::uint8_t c) { return lc::e2m3fn::decode(c); }, 0x3F, 0xC0F00000u},  // -7.5
      {"e3m2fn", [](std::uint8_t c) { return lc::e3m2fn::decode(c); }, 0x1F, 0x41E00000u},  // 28
      {"e3m2fn", [](std::uint8_t c) { return lc::e3m2fn::decode(c); }, 0x01, 0x3D800000u},  // 1/16
      {"e3m2fn", [](std::uint8_t c) { return lc::e3m2fn::decode(c); }, 0x20, 0x80000000u},  // -0
      {"e8m0fnu", [](std::uint8_t c) { return lc::e8m0fnu::decode(c); }, 0x00, 0x00400000u},  // 2^-127
      {"e8m0fnu", [](std::uint8_t c) { return lc::e8m0fnu::decode(c); }, 0x01, 0x00800000u},  // 2^-126
      {"e8m0fnu", [](std::uint8_t c) { return lc::e8m0fnu::decode(c); }, 0x7F, 0x3F800000u},  // 1
      {"e8m0fnu", [](std::uint8_t c) { return lc::e8m0fnu::decode(c); }, 0xFE, 0x7F000000u},  // 2^127
      {"e8m0fnu", [](std::uint8_t c) { return lc::e8m0fnu::decode(c); }, 0xFF, 0x7FC00000u},  // NaN
  };
  for (const Case& k : cases) {
    const float got = k.decode(static_cast<std::uint8_t>(k.code));
    EXPECT_EQ(bits_of(got), k.bits) << k.name << " code 0x" << std::hex << k.code
                                    << ": expected 0x" << k.bits << ", got 0x" << bits_of(got);
  }
}

// Sub-byte codes: bits above the code width are ignored by decode.
TEST(DecodeTable, SubByteCodesIgnoreHighBits) {
  for (unsigned c = 0; c < 256; ++c) {
    const auto b = static_cast<std::uint8_t>(c);
    EXPECT_EQ(bits_of(lc::e2m1fn::decode(b)), kE2m1fnBits[c & 0xF]) << "e2m1fn code 0x" << std::hex << c;
    EXPECT_EQ(bits_of(lc::e3m0::decode(b)), kE3m0Bits[c & 0xF]) << "e3m0 code 0x" << std::hex << c;
    EXPECT_EQ(bits_of(lc::nf4::decode(b)), kNf4Bits[c & 0xF]) << "nf4 code 0x" << std::hex << c;
    EXPECT_EQ(bits_of(lc::bnb_fp4::decode(b)), kBnbFp4Bits[c & 0xF])
        << "bnb_fp4 code 0x" << std::hex << c;
    EXPECT_EQ(bits_of(lc::e2m3fn::decode(b)), expected_minifloat_bits(kE2m3fn, c & 0x3F))
        << "e2m3fn code 0x" << std::hex << c;
    EXPECT_EQ(bits_of(lc::e3m2fn::decode(b)), expected_minifloat_bits(kE3m2fn, c & 0x3F))
        << "e3m2fn code 0x" << std::hex << c;
  }
}

// ---------------------------------------------------------------------------------------------
// bnb_dynamic8.

TEST(DecodeTable, BnbDynamic8AllCodes) {
  const std::vector<float> regenerated = regenerate_bnb_dynamic_map();
  ASSERT_EQ(regenerated.size(), 256u);
  std::vector<std::uint32_t> expected;
  for (float v : regenerated) expected.push_back(bits_of(v));
  expect_decode_table<lc::bnb_dynamic8>("bnb_dynamic8", expected);
}

// Appendix A literals (FMA variant), including entries where the non-FMA variant differs
// (18, 20, 34, 220, 224, ...), checked against both the regenerated map and lowbit.
TEST(DecodeTable, BnbDynamic8AppendixASpotChecks) {
  struct Entry {
    unsigned code;
    std::uint32_t bits;
  };
  const Entry entries[] = {
      {0, 0xBF7E3333u},   {1, 0xBF7A999Au},   {18, 0xBF3D6666u},  {20, 0xBF363334u},
      {34, 0xBF03CCCCu},  {63, 0xBDDB3334u},  {64, 0xBDC9EB85u},  {102, 0xBBCFDF3Bu},
      {117, 0xB9C7E283u}, {119, 0xB923D70Bu}, {126, 0xB513A3B7u}, {127, 0x00000000u},
      {128, 0x3513A3B7u}, {137, 0x39C7E283u}, {190, 0x3DC9EB85u}, {191, 0x3DDB3334u},
      {192, 0x3DF80000u}, {220, 0x3F03CCCCu}, {224, 0x3F123334u}, {236, 0x3F3D6666u},
      {254, 0x3F7E3333u}, {255, 0x3F800000u},
  };
  const std::vector<float> regenerated = regenerate_bnb_dynamic_map();
  for (const Entry& e : entries) {
    const float got = lc::bnb_dynamic8::decode(static_cast<std::uint8_t>(e.code));
    EXPECT_EQ(bits_of(got), e.bits) << "bnb_dynamic8 code 0x" << std::hex << e.code
                                    << ": Appendix A 0x" << e.bits << ", lowbit 0x" << bits_of(got);
    EXPECT_EQ(bits_of(regenerated[e.code]), e.bits)
        << "regenerated dynamic map, code 0x" << std::hex << e.code << ": Appendix A 0x" << e.bits
        << ", regenerated 0x" << bits_of(regenerated[e.code]);
  }
}

// ---------------------------------------------------------------------------------------------
// NVIDIA host conversions as a second oracle (NaN codes skipped).

TEST(NvidiaDecode, E4m3fnAllCodes) {
  expect_matches_nvidia<lc::e4m3fn>(kE4m3fn, [](unsigned char c) {
    return __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E4M3);
  });
}
TEST(NvidiaDecode, E5m2AllCodes) {
  expect_matches_nvidia<lc::e5m2>(kE5m2, [](unsigned char c) {
    return __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E5M2);
  });
}
TEST(NvidiaDecode, E2m3fnAllCodes) {
  expect_matches_nvidia<lc::e2m3fn>(kE2m3fn, [](unsigned char c) {
    return __nv_cvt_fp6_to_halfraw(static_cast<__nv_fp6_storage_t>(c), __NV_E2M3);
  });
}
TEST(NvidiaDecode, E3m2fnAllCodes) {
  expect_matches_nvidia<lc::e3m2fn>(kE3m2fn, [](unsigned char c) {
    return __nv_cvt_fp6_to_halfraw(static_cast<__nv_fp6_storage_t>(c), __NV_E3M2);
  });
}
TEST(NvidiaDecode, E2m1fnAllCodes) {
  expect_matches_nvidia<lc::e2m1fn>(kE2m1fn, [](unsigned char c) {
    return __nv_cvt_fp4_to_halfraw(static_cast<__nv_fp4_storage_t>(c), __NV_E2M1);
  });
}
TEST(NvidiaDecode, E8m0fnuAllCodes) {
  for (unsigned c = 0; c < 255; ++c) {  // 0xFF (NaN) skipped
    const __nv_bfloat16_raw raw = __nv_cvt_e8m0_to_bf16raw(static_cast<__nv_fp8_storage_t>(c));
    const std::uint32_t nv = static_cast<std::uint32_t>(raw.x) << 16;  // bf16 -> float32 bits
    const float got = lc::e8m0fnu::decode(static_cast<std::uint8_t>(c));
    EXPECT_EQ(bits_of(got), nv) << "e8m0fnu code 0x" << std::hex << c << ": NVIDIA 0x" << nv
                                << ", lowbit 0x" << bits_of(got);
  }
}

}  // namespace
