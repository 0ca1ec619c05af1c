// SPDX-License-Identifier: Apache-2.0
// Exhaustive decode tables: every code of every element codec is compared BIT FOR BIT (sign of
// zero and NaN payload included) against an expected table written from the specifications, never
// computed by calling lowbit (the spec data and formulas are in tests/support/spec_reference.hpp):
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

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "spec_reference.hpp"

namespace {

namespace lc = lowbit::codecs;
namespace spec = lowbit_test::spec;
using lowbit_test::bits_of;

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
void expect_minifloat_decode_formula(const spec::FormatParams& f) {
  expect_decode_table<Codec>(f.name, spec::decode_bits_table(f));
}

/// A 4-bit minifloat against its literal table; the formula is checked against the literals too,
/// so the formula itself is validated on formats whose tables are printed in the spec.
template <class Codec>
void expect_literal_minifloat_table(const spec::FormatParams& f,
                                    const std::vector<std::uint32_t>& literal) {
  expect_decode_table<Codec>(f.name, literal);
  for (unsigned c = 0; c < 16; ++c) {
    EXPECT_EQ(spec::decode_bits(f, c), literal[c])
        << "formula vs literal, " << f.name << " code 0x" << std::hex << c;
  }
}

struct CodeBits {
  unsigned code;
  std::uint32_t bits;
};

/// Codec::decode(code) has the listed bits, for each listed code.
template <class Codec>
void expect_decodes(const char* name, std::initializer_list<CodeBits> cases) {
  for (const CodeBits& k : cases) {
    const float got = Codec::decode(static_cast<typename Codec::storage_type>(k.code));
    EXPECT_EQ(bits_of(got), k.bits) << name << " code 0x" << std::hex << k.code
                                    << ": expected 0x" << k.bits << ", got 0x" << bits_of(got);
  }
}

/// Every byte decodes as its low log2(table.size()) bits: bits above the code width are ignored.
template <class Codec>
void expect_high_bits_ignored(const char* name, const std::vector<std::uint32_t>& table) {
  const unsigned mask = static_cast<unsigned>(table.size()) - 1u;
  for (unsigned c = 0; c < 256; ++c) {
    EXPECT_EQ(bits_of(Codec::decode(static_cast<std::uint8_t>(c))), table[c & mask])
        << name << " code 0x" << std::hex << c;
  }
}

// ---------------------------------------------------------------------------------------------
// NVIDIA host conversions (oracle).

float half_raw_to_float(__half_raw h) { return __half2float(__half(h)); }

template <__nv_fp8_interpretation_t I>
__half_raw nv_fp8_to_half(unsigned char c) {
  return __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), I);
}
template <__nv_fp6_interpretation_t I>
__half_raw nv_fp6_to_half(unsigned char c) {
  return __nv_cvt_fp6_to_halfraw(static_cast<__nv_fp6_storage_t>(c), I);
}
template <__nv_fp4_interpretation_t I>
__half_raw nv_fp4_to_half(unsigned char c) {
  return __nv_cvt_fp4_to_halfraw(static_cast<__nv_fp4_storage_t>(c), I);
}

template <class Codec>
void expect_matches_nvidia(const spec::FormatParams& f, __half_raw (*to_half)(unsigned char)) {
  int compared = 0;
  for (int c = 0; c < spec::num_codes(f); ++c) {
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

TEST(DecodeTable, E4m3fnAllCodes) { expect_minifloat_decode_formula<lc::e4m3fn>(spec::kE4m3fn); }
TEST(DecodeTable, E5m2AllCodes) { expect_minifloat_decode_formula<lc::e5m2>(spec::kE5m2); }
TEST(DecodeTable, E2m3fnAllCodes) { expect_minifloat_decode_formula<lc::e2m3fn>(spec::kE2m3fn); }
TEST(DecodeTable, E3m2fnAllCodes) { expect_minifloat_decode_formula<lc::e3m2fn>(spec::kE3m2fn); }
TEST(DecodeTable, E8m0fnuAllCodes) { expect_minifloat_decode_formula<lc::e8m0fnu>(spec::kE8m0fnu); }

// 4-bit formats: literal tables (and, for the minifloats, the formula against the literals).
TEST(DecodeTable, E2m1fnAllCodes) {
  expect_literal_minifloat_table<lc::e2m1fn>(spec::kE2m1fn, spec::kE2m1fnBits);
}
TEST(DecodeTable, E3m0AllCodes) {
  expect_literal_minifloat_table<lc::e3m0>(spec::kE3m0, spec::kE3m0Bits);
}
TEST(DecodeTable, Nf4AllCodes) { expect_decode_table<lc::nf4>("nf4", spec::kNf4Bits); }
TEST(DecodeTable, BnbFp4AllCodes) {
  expect_decode_table<lc::bnb_fp4>("bnb_fp4", spec::kBnbFp4Bits);
}

// Literal spot checks of the 6/8-bit formats (values quoted in the spec tables).
TEST(DecodeTable, MinifloatLiteralSpotChecks) {
  expect_decodes<lc::e4m3fn>("e4m3fn", {
      {0x7E, 0x43E00000u},  // 448
      {0xFE, 0xC3E00000u},  // -448
      {0x08, 0x3C800000u},  // 2^-6
      {0x01, 0x3B000000u},  // 2^-9
      {0x38, 0x3F800000u},  // 1
      {0x80, 0x80000000u},  // -0
      {0x7F, 0x7FC00000u},  // NaN
      {0xFF, 0xFFC00000u},  // -NaN
  });
  expect_decodes<lc::e5m2>("e5m2", {
      {0x7B, 0x47600000u},  // 57344
      {0x04, 0x38800000u},  // 2^-14
      {0x01, 0x37800000u},  // 2^-16
      {0x7C, 0x7F800000u},  // +inf
      {0xFC, 0xFF800000u},  // -inf
      {0x7D, 0x7FC00000u},  // NaN
      {0x7E, 0x7FC00000u},  // NaN
      {0xFF, 0xFFC00000u},  // -NaN
  });
  expect_decodes<lc::e2m3fn>("e2m3fn", {
      {0x1F, 0x40F00000u},  // 7.5
      {0x01, 0x3E000000u},  // .125
      {0x3F, 0xC0F00000u},  // -7.5
  });
  expect_decodes<lc::e3m2fn>("e3m2fn", {
      {0x1F, 0x41E00000u},  // 28
      {0x01, 0x3D800000u},  // 1/16
      {0x20, 0x80000000u},  // -0
  });
  expect_decodes<lc::e8m0fnu>("e8m0fnu", {
      {0x00, 0x00400000u},  // 2^-127
      {0x01, 0x00800000u},  // 2^-126
      {0x7F, 0x3F800000u},  // 1
      {0xFE, 0x7F000000u},  // 2^127
      {0xFF, 0x7FC00000u},  // NaN
  });
}

// Sub-byte codes: bits above the code width are ignored by decode.
TEST(DecodeTable, SubByteCodesIgnoreHighBits) {
  expect_high_bits_ignored<lc::e2m1fn>("e2m1fn", spec::kE2m1fnBits);
  expect_high_bits_ignored<lc::e3m0>("e3m0", spec::kE3m0Bits);
  expect_high_bits_ignored<lc::nf4>("nf4", spec::kNf4Bits);
  expect_high_bits_ignored<lc::bnb_fp4>("bnb_fp4", spec::kBnbFp4Bits);
  expect_high_bits_ignored<lc::e2m3fn>("e2m3fn", spec::decode_bits_table(spec::kE2m3fn));
  expect_high_bits_ignored<lc::e3m2fn>("e3m2fn", spec::decode_bits_table(spec::kE3m2fn));
}

// ---------------------------------------------------------------------------------------------
// bnb_dynamic8.

TEST(DecodeTable, BnbDynamic8AllCodes) {
  const std::vector<float> regenerated = spec::bnb_dynamic_map();
  ASSERT_EQ(regenerated.size(), 256u);
  std::vector<std::uint32_t> expected;
  for (float v : regenerated) expected.push_back(bits_of(v));
  expect_decode_table<lc::bnb_dynamic8>("bnb_dynamic8", expected);
}

// Appendix A literals (FMA variant), including entries where the non-FMA variant differs
// (18, 20, 34, 220, 224, ...), checked against both the regenerated map and lowbit.
TEST(DecodeTable, BnbDynamic8AppendixASpotChecks) {
  const CodeBits entries[] = {
      {0, 0xBF7E3333u},   {1, 0xBF7A999Au},   {18, 0xBF3D6666u},  {20, 0xBF363334u},
      {34, 0xBF03CCCCu},  {63, 0xBDDB3334u},  {64, 0xBDC9EB85u},  {102, 0xBBCFDF3Bu},
      {117, 0xB9C7E283u}, {119, 0xB923D70Bu}, {126, 0xB513A3B7u}, {127, 0x00000000u},
      {128, 0x3513A3B7u}, {137, 0x39C7E283u}, {190, 0x3DC9EB85u}, {191, 0x3DDB3334u},
      {192, 0x3DF80000u}, {220, 0x3F03CCCCu}, {224, 0x3F123334u}, {236, 0x3F3D6666u},
      {254, 0x3F7E3333u}, {255, 0x3F800000u},
  };
  const std::vector<float> regenerated = spec::bnb_dynamic_map();
  for (const CodeBits& e : entries) {
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
  expect_matches_nvidia<lc::e4m3fn>(spec::kE4m3fn, nv_fp8_to_half<__NV_E4M3>);
}
TEST(NvidiaDecode, E5m2AllCodes) {
  expect_matches_nvidia<lc::e5m2>(spec::kE5m2, nv_fp8_to_half<__NV_E5M2>);
}
TEST(NvidiaDecode, E2m3fnAllCodes) {
  expect_matches_nvidia<lc::e2m3fn>(spec::kE2m3fn, nv_fp6_to_half<__NV_E2M3>);
}
TEST(NvidiaDecode, E3m2fnAllCodes) {
  expect_matches_nvidia<lc::e3m2fn>(spec::kE3m2fn, nv_fp6_to_half<__NV_E3M2>);
}
TEST(NvidiaDecode, E2m1fnAllCodes) {
  expect_matches_nvidia<lc::e2m1fn>(spec::kE2m1fn, nv_fp4_to_half<__NV_E2M1>);
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
