// SPDX-License-Identifier: Apache-2.0
// Encode semantics at the decision points: round trips of every code, every midpoint between
// adjacent representable values (and its one-ulp neighbours) under each rounding mode, overflow
// and underflow policies, the bitsandbytes codebook thresholds, the integer codecs and nibble
// packing. Expected values come from the specs (formats-and-peer-tests.md §4.1/§4.2,
// bitsandbytes-semantics.md §1.1-§1.3, §2.2) and from the documented contracts in lowbit's codec
// headers, computed here and in tests/support/spec_reference.hpp independently of lowbit's own
// implementation.

#include <lowbit/lowbit.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <vector>

#include "spec_reference.hpp"

namespace {

namespace lc = lowbit::codecs;
namespace spec = lowbit_test::spec;
using lc::overflow;
using lc::rounding;
using lowbit_test::bits_of;
using lowbit_test::float_of;
using spec::RefCode;

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = float_of(0x7FC00000u);
const float kNegNaN = float_of(0xFFC00000u);
const float kSignalingNaN = float_of(0x7F800001u);

float exact_float(double v) {
  const float f = static_cast<float>(v);
  EXPECT_EQ(static_cast<double>(f), v) << "value not exact in float32: " << v;
  return f;
}

template <class Codec, rounding R = rounding::nearest_even, overflow O = overflow::saturate>
unsigned enc(float x) {
  return static_cast<unsigned>(Codec::template encode<R, O>(x));
}

/// The code of a codebook codec (nf4, bnb_fp4, bnb_dynamic8), which has one encode.
template <class Codec>
unsigned code_of(float x) {
  return static_cast<unsigned>(Codec::encode(x));
}

#define LOWBIT_EXPECT_CODE(name, mode, x, got, want)                                            \
  EXPECT_EQ((got), (want)) << (name) << " [" << (mode) << "] input 0x" << std::hex << bits_of(x) \
                           << " (" << (x) << "): expected code 0x" << (want) << ", got 0x" << (got)

// ---------------------------------------------------------------------------------------------
// (a) Round trips.

template <class Codec>
void check_minifloat_round_trip(const spec::FormatParams& f) {
  for (int ci = 0; ci < spec::num_codes(f); ++ci) {
    const auto c = static_cast<unsigned>(ci);
    const RefCode r = spec::decode(f, c);
    if (r.nan) continue;
    const float x = Codec::decode(static_cast<std::uint8_t>(c));
    if (r.inf) {
      // Only overflow::special maps +-inf back to the Inf code; saturate clamps to +-max.
      LOWBIT_EXPECT_CODE(f.name, "special", x, (enc<Codec, rounding::nearest_even, overflow::special>(x)), c);
      continue;
    }
    // An exactly representable value encodes to its own code under every mode and policy
    // (so the -0 code round-trips to itself).
    LOWBIT_EXPECT_CODE(f.name, "nearest_even", x, (enc<Codec>(x)), c);
    LOWBIT_EXPECT_CODE(f.name, "nearest_even/special", x,
                       (enc<Codec, rounding::nearest_even, overflow::special>(x)), c);
    LOWBIT_EXPECT_CODE(f.name, "toward_zero", x, (enc<Codec, rounding::toward_zero>(x)), c);
    LOWBIT_EXPECT_CODE(f.name, "toward_pos_inf", x, (enc<Codec, rounding::toward_pos_inf>(x)), c);
  }
}

TEST(RoundTrip, E4m3fnAllCodes) { check_minifloat_round_trip<lc::e4m3fn>(spec::kE4m3fn); }
TEST(RoundTrip, E5m2AllCodes) { check_minifloat_round_trip<lc::e5m2>(spec::kE5m2); }
TEST(RoundTrip, E2m3fnAllCodes) { check_minifloat_round_trip<lc::e2m3fn>(spec::kE2m3fn); }
TEST(RoundTrip, E3m2fnAllCodes) { check_minifloat_round_trip<lc::e3m2fn>(spec::kE3m2fn); }
TEST(RoundTrip, E2m1fnAllCodes) { check_minifloat_round_trip<lc::e2m1fn>(spec::kE2m1fn); }
TEST(RoundTrip, E3m0AllCodes) { check_minifloat_round_trip<lc::e3m0>(spec::kE3m0); }
TEST(RoundTrip, E8m0fnuAllCodes) { check_minifloat_round_trip<lc::e8m0fnu>(spec::kE8m0fnu); }

unsigned same_code(unsigned c) { return c; }

/// Each of a codebook's `num_codes` codes decodes to a value that encodes to `want(code)`.
template <class Codec>
void check_codebook_round_trip(const char* name, unsigned num_codes,
                               unsigned (*want)(unsigned) = same_code) {
  for (unsigned c = 0; c < num_codes; ++c) {
    const float x = Codec::decode(static_cast<std::uint8_t>(c));
    LOWBIT_EXPECT_CODE(name, "table", x, code_of<Codec>(x), want(c));
  }
}

TEST(RoundTrip, Nf4AllCodes) { check_codebook_round_trip<lc::nf4>("nf4", 16); }

TEST(RoundTrip, BnbFp4AllCodes) {
  // Code 8 decodes to -0.0 (bnb CUDA), but bnb's encoder takes the sign from (x < 0), which is
  // false for -0.0, so -0.0 encodes to code 0 (bitsandbytes-semantics.md §1.2).
  check_codebook_round_trip<lc::bnb_fp4>("bnb_fp4", 16, [](unsigned c) { return c == 8 ? 0u : c; });
}

TEST(RoundTrip, BnbDynamic8AllCodes) {
  check_codebook_round_trip<lc::bnb_dynamic8>("bnb_dynamic8", 256);
}

// ---------------------------------------------------------------------------------------------
// (b) Midpoints between adjacent representable values, and their one-ulp neighbours.

template <class Codec>
void check_minifloat_midpoints(const spec::FormatParams& f) {
  for (const bool negative : {false, true}) {
    if (negative && !f.has_sign) continue;
    const std::vector<RefCode> codes = spec::finite_codes(f, negative);
    for (std::size_t i = 0; i + 1 < codes.size(); ++i) {
      const RefCode& lo = codes[i];      // smaller magnitude
      const RefCode& hi = codes[i + 1];  // larger magnitude
      const float flo = exact_float(lo.value);
      const float fhi = exact_float(hi.value);
      const float mid = exact_float((lo.value + hi.value) / 2.0);
      const float toward_lo = std::nextafter(mid, flo);
      const float toward_hi = std::nextafter(mid, fhi);
      // nearest_even: ties to the code whose least significant bit is 0.
      const unsigned even = (lo.code & 1u) == 0u ? lo.code : hi.code;
      EXPECT_NE(lo.code & 1u, hi.code & 1u) << f.name << " adjacent codes 0x" << std::hex << lo.code
                                             << ", 0x" << hi.code;
      LOWBIT_EXPECT_CODE(f.name, "nearest_even tie", mid, enc<Codec>(mid), even);
      LOWBIT_EXPECT_CODE(f.name, "nearest_even", toward_lo, enc<Codec>(toward_lo), lo.code);
      LOWBIT_EXPECT_CODE(f.name, "nearest_even", toward_hi, enc<Codec>(toward_hi), hi.code);
      // toward_zero: truncate the magnitude.
      for (const float x : {mid, toward_lo, toward_hi}) {
        LOWBIT_EXPECT_CODE(f.name, "toward_zero", x, (enc<Codec, rounding::toward_zero>(x)), lo.code);
      }
      // toward_pos_inf: the larger value, i.e. the larger magnitude for positive inputs and the
      // smaller magnitude for negative ones.
      for (const float x : {mid, toward_lo, toward_hi}) {
        LOWBIT_EXPECT_CODE(f.name, "toward_pos_inf", x, (enc<Codec, rounding::toward_pos_inf>(x)),
                           negative ? lo.code : hi.code);
      }
    }
  }
}

TEST(Midpoints, E4m3fn) { check_minifloat_midpoints<lc::e4m3fn>(spec::kE4m3fn); }
TEST(Midpoints, E5m2) { check_minifloat_midpoints<lc::e5m2>(spec::kE5m2); }
TEST(Midpoints, E2m3fn) { check_minifloat_midpoints<lc::e2m3fn>(spec::kE2m3fn); }
TEST(Midpoints, E3m2fn) { check_minifloat_midpoints<lc::e3m2fn>(spec::kE3m2fn); }
TEST(Midpoints, E2m1fn) { check_minifloat_midpoints<lc::e2m1fn>(spec::kE2m1fn); }
TEST(Midpoints, E3m0) { check_minifloat_midpoints<lc::e3m0>(spec::kE3m0); }
TEST(Midpoints, E8m0fnu) { check_minifloat_midpoints<lc::e8m0fnu>(spec::kE8m0fnu); }

// e8m0fnu is unsigned: it encodes |x| in every rounding mode.
TEST(Midpoints, E8m0fnuNegativeInputsEncodeMagnitude) {
  const std::vector<RefCode> codes = spec::finite_codes(spec::kE8m0fnu, false);
  for (std::size_t i = 0; i + 1 < codes.size(); ++i) {
    const float mid = exact_float((codes[i].value + codes[i + 1].value) / 2.0);
    for (const float x : {exact_float(codes[i].value), mid, std::nextafter(mid, 0.0f),
                          std::nextafter(mid, kInf)}) {
      LOWBIT_EXPECT_CODE("e8m0fnu", "nearest_even", -x, enc<lc::e8m0fnu>(-x), enc<lc::e8m0fnu>(x));
      LOWBIT_EXPECT_CODE("e8m0fnu", "toward_zero", -x, (enc<lc::e8m0fnu, rounding::toward_zero>(-x)),
                         (enc<lc::e8m0fnu, rounding::toward_zero>(x)));
      LOWBIT_EXPECT_CODE("e8m0fnu", "toward_pos_inf", -x,
                         (enc<lc::e8m0fnu, rounding::toward_pos_inf>(-x)),
                         (enc<lc::e8m0fnu, rounding::toward_pos_inf>(x)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// (c) Overflow and NaN inputs (expectations from minifloat.hpp's contract and the spec tables).

struct OverflowCase {
  const char* name;
  float max;                  // largest finite value
  float mid_above;            // midpoint between max and the next value of an unbounded exponent
  bool mid_above_stays_max;   // ties-to-even keeps max (max code has an even LSB)
  unsigned max_code, neg_max_code;
  unsigned special_code, neg_special_code;  // overflow::special result
  unsigned nan_code;
};

template <class Codec>
void check_overflow(const OverflowCase& k, bool is_signed) {
  const float just_above = std::nextafter(k.mid_above, kInf);
  const float just_below = std::nextafter(k.mid_above, 0.0f);
  const float twice = k.max * 2.0f;  // +inf for e8m0fnu
  const auto sat = [](float x) { return enc<Codec, rounding::nearest_even, overflow::saturate>(x); };
  const auto spc = [](float x) { return enc<Codec, rounding::nearest_even, overflow::special>(x); };
  for (const bool negative : {false, true}) {
    const float s = negative ? -1.0f : 1.0f;
    // Unsigned formats encode |x|.
    const bool neg_code = negative && is_signed;
    const unsigned maxc = neg_code ? k.neg_max_code : k.max_code;
    const unsigned special = neg_code ? k.neg_special_code : k.special_code;
    LOWBIT_EXPECT_CODE(k.name, "saturate", s * k.max, sat(s * k.max), maxc);
    LOWBIT_EXPECT_CODE(k.name, "special", s * k.max, spc(s * k.max), maxc);
    LOWBIT_EXPECT_CODE(k.name, "saturate", s * just_below, sat(s * just_below), maxc);
    LOWBIT_EXPECT_CODE(k.name, "special", s * just_below, spc(s * just_below), maxc);
    LOWBIT_EXPECT_CODE(k.name, "saturate", s * k.mid_above, sat(s * k.mid_above), maxc);
    LOWBIT_EXPECT_CODE(k.name, "special", s * k.mid_above, spc(s * k.mid_above),
                       k.mid_above_stays_max ? maxc : special);
    for (const float x : {just_above, twice, std::numeric_limits<float>::max(), kInf}) {
      LOWBIT_EXPECT_CODE(k.name, "saturate", s * x, sat(s * x), maxc);
      LOWBIT_EXPECT_CODE(k.name, "special", s * x, spc(s * x), special);
    }
    // toward_zero never rounds a finite value above max; toward_pos_inf rounds just above max up
    // (for positive inputs) and so overflows.
    for (const float x : {k.mid_above, just_above}) {
      if (!std::isfinite(x)) continue;
      LOWBIT_EXPECT_CODE(k.name, "toward_zero/special", s * x,
                         (enc<Codec, rounding::toward_zero, overflow::special>(s * x)), maxc);
    }
    const float above_max = std::nextafter(k.max, kInf);
    if (!negative || !is_signed) {
      LOWBIT_EXPECT_CODE(k.name, "toward_pos_inf/saturate", s * above_max,
                         (enc<Codec, rounding::toward_pos_inf, overflow::saturate>(s * above_max)), maxc);
      LOWBIT_EXPECT_CODE(k.name, "toward_pos_inf/special", s * above_max,
                         (enc<Codec, rounding::toward_pos_inf, overflow::special>(s * above_max)), special);
    } else {
      LOWBIT_EXPECT_CODE(k.name, "toward_pos_inf/special", s * above_max,
                         (enc<Codec, rounding::toward_pos_inf, overflow::special>(s * above_max)), maxc);
    }
  }
  // NaN inputs (any sign, any payload) give the canonical NaN code, or +max without NaN.
  for (const float x : {kNaN, kNegNaN, kSignalingNaN, float_of(0xFF800001u)}) {
    LOWBIT_EXPECT_CODE(k.name, "saturate", x, sat(x), k.nan_code);
    LOWBIT_EXPECT_CODE(k.name, "special", x, spc(x), k.nan_code);
    LOWBIT_EXPECT_CODE(k.name, "toward_zero", x, (enc<Codec, rounding::toward_zero>(x)), k.nan_code);
    LOWBIT_EXPECT_CODE(k.name, "toward_pos_inf", x, (enc<Codec, rounding::toward_pos_inf>(x)), k.nan_code);
  }
}

// e4m3fn: max 448 = S.1111.110 (even LSB, so 464 rounds back to 448); NOSAT overflow gives the
// NaN code with the input's sign (0x7F / 0xFF); NaN input gives 0x7F.
TEST(Overflow, E4m3fn) {
  check_overflow<lc::e4m3fn>({"e4m3fn", 448.0f, 464.0f, true, 0x7E, 0xFE, 0x7F, 0xFF, 0x7F}, true);
}
// e5m2: max 57344 = S.11110.11 (odd LSB, the tie 61440 overflows); special gives +-inf.
TEST(Overflow, E5m2) {
  check_overflow<lc::e5m2>({"e5m2", 57344.0f, 61440.0f, false, 0x7B, 0xFB, 0x7C, 0xFC, 0x7F}, true);
}
// Finite formats always saturate; NaN input gives +max.
TEST(Overflow, E2m3fn) {
  check_overflow<lc::e2m3fn>({"e2m3fn", 7.5f, 7.75f, false, 0x1F, 0x3F, 0x1F, 0x3F, 0x1F}, true);
}
TEST(Overflow, E3m2fn) {
  check_overflow<lc::e3m2fn>({"e3m2fn", 28.0f, 30.0f, false, 0x1F, 0x3F, 0x1F, 0x3F, 0x1F}, true);
}
TEST(Overflow, E2m1fn) {
  check_overflow<lc::e2m1fn>({"e2m1fn", 6.0f, 7.0f, false, 0x7, 0xF, 0x7, 0xF, 0x7}, true);
}
TEST(Overflow, E3m0) {
  check_overflow<lc::e3m0>({"e3m0", 16.0f, 24.0f, false, 0x7, 0xF, 0x7, 0xF, 0x7}, true);
}
// e8m0fnu: max 2^127 = 0xFE (even, so 1.5 * 2^127 stays max); special overflow and NaN give 0xFF;
// unsigned, so -x behaves as x.
TEST(Overflow, E8m0fnu) {
  check_overflow<lc::e8m0fnu>({"e8m0fnu", 0x1p127f, 0x1.8p127f, true, 0xFE, 0xFE, 0xFF, 0xFF, 0xFF},
                              false);
}

// ---------------------------------------------------------------------------------------------
// Underflow.

template <class Codec>
void check_underflow(const spec::FormatParams& f) {
  const std::vector<RefCode> pos = spec::finite_codes(f, false);
  ASSERT_GE(pos.size(), 2u);
  ASSERT_EQ(pos[0].value, 0.0) << f.name;
  const unsigned zero = pos[0].code;
  const unsigned min_code = pos[1].code;
  const unsigned sign = 1u << (f.exp_bits + f.man_bits);
  const float min_sub = exact_float(pos[1].value);
  const float half = exact_float(pos[1].value / 2.0);
  const float tiny = float_of(0x00000001u);
  // Below half the smallest subnormal -> signed zero; half itself ties to the even code (zero).
  for (const float x : {std::nextafter(half, 0.0f), half, tiny, 1e-30f, 0.0f}) {
    LOWBIT_EXPECT_CODE(f.name, "nearest_even", x, enc<Codec>(x), zero);
    LOWBIT_EXPECT_CODE(f.name, "nearest_even", -x, enc<Codec>(-x), zero | sign);
    LOWBIT_EXPECT_CODE(f.name, "toward_zero", x, (enc<Codec, rounding::toward_zero>(x)), zero);
    LOWBIT_EXPECT_CODE(f.name, "toward_zero", -x, (enc<Codec, rounding::toward_zero>(-x)), zero | sign);
    // toward_pos_inf: a negative value rounds up to -0; a positive nonzero one to min_sub.
    LOWBIT_EXPECT_CODE(f.name, "toward_pos_inf", -x, (enc<Codec, rounding::toward_pos_inf>(-x)),
                       zero | sign);
    LOWBIT_EXPECT_CODE(f.name, "toward_pos_inf", x, (enc<Codec, rounding::toward_pos_inf>(x)),
                       x == 0.0f ? zero : min_code);
  }
  const float above_half = std::nextafter(half, kInf);
  LOWBIT_EXPECT_CODE(f.name, "nearest_even", above_half, enc<Codec>(above_half), min_code);
  LOWBIT_EXPECT_CODE(f.name, "nearest_even", -above_half, enc<Codec>(-above_half), min_code | sign);
  const float below_min = std::nextafter(min_sub, 0.0f);
  LOWBIT_EXPECT_CODE(f.name, "toward_zero", below_min, (enc<Codec, rounding::toward_zero>(below_min)), zero);
}

TEST(Underflow, E4m3fn) { check_underflow<lc::e4m3fn>(spec::kE4m3fn); }
TEST(Underflow, E5m2) { check_underflow<lc::e5m2>(spec::kE5m2); }
TEST(Underflow, E2m3fn) { check_underflow<lc::e2m3fn>(spec::kE2m3fn); }
TEST(Underflow, E3m2fn) { check_underflow<lc::e3m2fn>(spec::kE3m2fn); }
TEST(Underflow, E2m1fn) { check_underflow<lc::e2m1fn>(spec::kE2m1fn); }
TEST(Underflow, E3m0) { check_underflow<lc::e3m0>(spec::kE3m0); }

// e8m0fnu has no zero: zero, tiny and negative inputs clip to the smallest value 2^-127 (code 0)
// in every mode, and |x| is encoded. Between 2^-127 (code 0) and 2^-126 (code 1) -- float32
// subnormal inputs -- ordinary rounding applies: nearest with the tie 1.5*2^-127 going to the even
// code 0; toward_pos_inf is the ceiling (NVIDIA cvt.rp.ue8m0: 2^-127 itself stays code 0).
TEST(Underflow, E8m0fnu) {
  struct Case {
    float x;
    unsigned nearest, zero, pos_inf;
  };
  const Case cases[] = {
      {0.0f, 0, 0, 0},
      {float_of(0x00000001u), 0, 0, 0},  // 2^-149
      {1e-40f, 0, 0, 0},
      {0x1p-140f, 0, 0, 0},
      {0x1p-128f, 0, 0, 0},
      {0x1p-127f, 0, 0, 0},    // exactly code 0
      {0x1.4p-127f, 0, 0, 1},  // nearer to 2^-127
      {0x1.8p-127f, 0, 0, 1},  // tie -> even code 0
      {0x1.cp-127f, 1, 0, 1},  // nearer to 2^-126
      {0x1p-126f, 1, 1, 1},
      {1.0f, 127, 127, 127},
      {2.0f, 128, 128, 128},
  };
  for (const Case& k : cases) {
    for (const float x : {k.x, -k.x}) {
      LOWBIT_EXPECT_CODE("e8m0fnu", "nearest_even", x, enc<lc::e8m0fnu>(x), k.nearest);
      LOWBIT_EXPECT_CODE("e8m0fnu", "toward_zero", x, (enc<lc::e8m0fnu, rounding::toward_zero>(x)), k.zero);
      LOWBIT_EXPECT_CODE("e8m0fnu", "toward_pos_inf", x, (enc<lc::e8m0fnu, rounding::toward_pos_inf>(x)),
                         k.pos_inf);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// nf4 / bnb_fp4 thresholds (spec::kNf4ThresholdBits, spec::kBnbFp4ThresholdBits).

struct InputCode {
  float x;
  unsigned code;
};

/// Inputs with their expected codes, for a codebook codec.
template <class Codec>
void expect_codes(const char* name, const char* mode, std::initializer_list<InputCode> cases) {
  for (const InputCode& k : cases) {
    LOWBIT_EXPECT_CODE(name, mode, k.x, code_of<Codec>(k.x), k.code);
  }
}

TEST(Thresholds, Nf4) {
  for (unsigned i = 0; i < 15; ++i) {
    const float t = float_of(spec::kNf4ThresholdBits[i]);
    // x == T_i takes the lower code (strict >), the next float up takes the upper one.
    LOWBIT_EXPECT_CODE("nf4", "threshold", t, code_of<lc::nf4>(t), i);
    const float below = std::nextafter(t, -kInf);
    LOWBIT_EXPECT_CODE("nf4", "threshold", below, code_of<lc::nf4>(below), i);
    const float above = std::nextafter(t, kInf);
    LOWBIT_EXPECT_CODE("nf4", "threshold", above, code_of<lc::nf4>(above), i + 1);
  }
  expect_codes<lc::nf4>("nf4", "special",
                        {{kNaN, 0},  {kNegNaN, 0}, {kSignalingNaN, 0}, {-kInf, 0}, {kInf, 15},
                         {-2.0f, 0}, {2.0f, 15},   {-1.0f, 0},         {1.0f, 15}, {0.0f, 7},
                         {-0.0f, 7}, {1e-30f, 7},  {-1e-30f, 7}});
}

TEST(Thresholds, BnbFp4) {
  // Magnitude thresholds, ascending; spec::kBnbFp4RankCode is the code of each magnitude rank.
  for (unsigned i = 0; i < 7; ++i) {
    const float t = float_of(spec::kBnbFp4ThresholdBits[i]);
    const float above = std::nextafter(t, kInf);
    const float below = std::nextafter(t, 0.0f);
    for (const bool negative : {false, true}) {
      const float s = negative ? -1.0f : 1.0f;
      const unsigned sign = negative ? 8u : 0u;
      const unsigned lower = spec::kBnbFp4RankCode[i] | sign;
      const unsigned upper = spec::kBnbFp4RankCode[i + 1] | sign;
      LOWBIT_EXPECT_CODE("bnb_fp4", "threshold", s * t, code_of<lc::bnb_fp4>(s * t), lower);
      LOWBIT_EXPECT_CODE("bnb_fp4", "threshold", s * below, code_of<lc::bnb_fp4>(s * below), lower);
      LOWBIT_EXPECT_CODE("bnb_fp4", "threshold", s * above, code_of<lc::bnb_fp4>(s * above), upper);
    }
  }
  // sign = (x < 0): -0.0 and every NaN give sign 0 and magnitude 0 -> code 0. Tiny negative values
  // give bnb's "negative zero" code 8.
  expect_codes<lc::bnb_fp4>("bnb_fp4", "special",
                            {{kNaN, 0},   {kNegNaN, 0}, {kSignalingNaN, 0}, {-kInf, 11}, {kInf, 3},
                             {-2.0f, 11}, {2.0f, 3},    {-1.0f, 11},        {1.0f, 3},   {0.0f, 0},
                             {-0.0f, 0},  {1e-30f, 0},  {-1e-30f, 8}});
}

// ---------------------------------------------------------------------------------------------
// bnb_dynamic8: CUDA dQuantize<0> semantics (bitsandbytes-semantics.md §2.2, the nearest-entry
// search of spec::dynamic8_nearest_code) over the table regenerated with create_dynamic_map
// (§1.3, FMA linspace).

std::vector<float> dynamic8_probe_points(const std::vector<float>& t) {
  std::vector<float> xs = {kNaN, kNegNaN, -kInf, kInf, -2.0f, 2.0f, -1.0f, 1.0f, 0.0f, -0.0f,
                           std::nextafter(1.0f, kInf), std::nextafter(t[0], -kInf)};
  for (std::size_t k = 0; k < t.size(); ++k) {
    xs.push_back(t[k]);
    xs.push_back(std::nextafter(t[k], -kInf));
    xs.push_back(std::nextafter(t[k], kInf));
    if (k + 1 < t.size()) {
      const float mid = (t[k] + t[k + 1]) * 0.5f;
      xs.push_back(mid);
      xs.push_back(std::nextafter(mid, -kInf));
      xs.push_back(std::nextafter(mid, kInf));
    }
  }
  return xs;
}

TEST(BnbDynamic8, MidpointsAndTies) {
  const std::vector<float> t = spec::bnb_dynamic_map();
  ASSERT_EQ(t.size(), 256u);
  int probes = 0;
  for (const float x : dynamic8_probe_points(t)) {
    const unsigned want = spec::dynamic8_nearest_code(t, x);
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "encode", x, code_of<lc::bnb_dynamic8>(x), want);
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "encode_with_table", x,
                       static_cast<unsigned>(lc::bnb_dynamic8::encode_with_table(t.data(), x)), want);
    ++probes;
  }
  EXPECT_GE(probes, 256 * 6);
  // Every pair's float32 midpoint is itself an exact tie and must resolve to the even index.
  for (unsigned k = 0; k + 1 < 256; ++k) {
    const float mid = (t[k] + t[k + 1]) * 0.5f;
    const unsigned even = k % 2 == 0 ? k : k + 1;
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "tie", mid, code_of<lc::bnb_dynamic8>(mid), even);
  }
}

// encode_with_table searches the table it is given: a different ascending table (a linear map)
// gives the reference search's answers over that table.
TEST(BnbDynamic8, EncodeWithTableUsesGivenTable) {
  std::vector<float> linear(256);
  for (int i = 0; i < 256; ++i) linear[static_cast<std::size_t>(i)] = static_cast<float>(i - 127) / 128.0f;
  for (const float x : dynamic8_probe_points(linear)) {
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "encode_with_table(linear)", x,
                       static_cast<unsigned>(lc::bnb_dynamic8::encode_with_table(linear.data(), x)),
                       spec::dynamic8_nearest_code(linear, x));
  }
}

// ---------------------------------------------------------------------------------------------
// Integer codecs.

TEST(Integer, Int8AbsmaxEncode) {
  const struct {
    float x;
    float inv_scale;
    int q;
  } cases[] = {
      {0.5f, 1.0f, 0},     {1.5f, 1.0f, 2},      {2.5f, 1.0f, 2},      {-0.5f, 1.0f, 0},
      {-1.5f, 1.0f, -2},   {-2.5f, 1.0f, -2},    {3.5f, 1.0f, 4},      {0.49999997f, 1.0f, 0},
      {126.5f, 1.0f, 126}, {127.0f, 1.0f, 127},  {127.5f, 1.0f, 127},  {-127.5f, 1.0f, -127},
      {128.0f, 1.0f, 127}, {-128.0f, 1.0f, -127}, {1e30f, 1.0f, 127},  {-1e30f, 1.0f, -127},
      {kInf, 1.0f, 127},   {-kInf, 1.0f, -127},  {kNaN, 1.0f, 0},      {kNegNaN, 1.0f, 0},
      {1.0f, 127.0f, 127}, {-1.0f, 127.0f, -127}, {0.25f, 10.0f, 2},   {0.35f, 10.0f, 4},
      {1e30f, 1e30f, 127}, {0.0f, kInf, 0},  // 0 * inf = NaN -> 0
  };
  for (const auto& k : cases) {
    const int got = lc::int8_absmax::encode(k.x, k.inv_scale);
    EXPECT_EQ(got, k.q) << "int8_absmax input 0x" << std::hex << bits_of(k.x) << " (" << k.x
                        << "), inv_scale 0x" << bits_of(k.inv_scale);
  }
}

TEST(Integer, Int8AbsmaxDecode) {
  for (int q = -128; q <= 127; ++q) {
    for (const float scale : {1.0f, 0.5f, 0.1f, 3.0e-3f, 1.0f / 127.0f}) {
      const float got = lc::int8_absmax::decode(static_cast<std::int8_t>(q), scale);
      // One correctly rounded float32 multiply (the double product is exact).
      const float want = static_cast<float>(static_cast<double>(q) * static_cast<double>(scale));
      EXPECT_EQ(bits_of(got), bits_of(want)) << "int8_absmax decode q=" << q << " scale 0x" << std::hex
                                             << bits_of(scale) << ": want 0x" << bits_of(want)
                                             << ", got 0x" << bits_of(got);
    }
  }
}

TEST(Integer, Uint8ZeropointEncode) {
  const struct {
    float x;
    float inv_scale;
    int zp;
    int q;
  } cases[] = {
      {0.0f, 1.0f, 128, 128},   {0.5f, 1.0f, 128, 128},     {1.5f, 1.0f, 128, 130},
      {2.5f, 1.0f, 128, 130},   {-0.5f, 1.0f, 128, 128},    {-1.5f, 1.0f, 128, 126},
      {-2.5f, 1.0f, 128, 126},  {127.0f, 1.0f, 128, 255},   {127.5f, 1.0f, 128, 255},
      {-128.0f, 1.0f, 128, 0},  {-128.5f, 1.0f, 128, 0},    {-129.0f, 1.0f, 128, 0},
      {1000.0f, 1.0f, 0, 255},  {-1000.0f, 1.0f, 255, 0},   {1e30f, 1.0f, 7, 255},
      {-1e30f, 1.0f, 7, 0},     {kInf, 1.0f, 0, 255},       {-kInf, 1.0f, 255, 0},
      {kNaN, 1.0f, 128, 128},   {kNegNaN, 1.0f, 0, 0},      {kNaN, 1.0f, 255, 255},
      {0.5f, 1.0f, 3, 3},       {1.5f, 1.0f, 3, 5},         {1.0f, 2.5f, 0, 2},
      {255.0f, 1.0f, 0, 255},   {-255.0f, 1.0f, 255, 0},    {300.0f, 1.0f, 0, 255},
  };
  for (const auto& k : cases) {
    const int got = lc::uint8_zeropoint::encode(k.x, k.inv_scale, k.zp);
    EXPECT_EQ(got, k.q) << "uint8_zeropoint input 0x" << std::hex << bits_of(k.x) << " (" << k.x
                        << "), inv_scale 0x" << bits_of(k.inv_scale) << std::dec << ", zp " << k.zp;
  }
}

TEST(Integer, Uint8ZeropointDecode) {
  for (int q = 0; q <= 255; ++q) {
    for (const int zp : {0, 1, 128, 255}) {
      for (const float scale : {1.0f, 0.5f, 0.1f, 1.0f / 255.0f}) {
        const float got = lc::uint8_zeropoint::decode(static_cast<std::uint8_t>(q), scale, zp);
        const float want = static_cast<float>(static_cast<double>(q - zp) * static_cast<double>(scale));
        EXPECT_EQ(bits_of(got), bits_of(want))
            << "uint8_zeropoint decode q=0x" << std::hex << q << " zp=0x" << zp << " scale 0x"
            << bits_of(scale) << ": want 0x" << bits_of(want) << ", got 0x" << bits_of(got);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Nibble packing.

using lc::nibble_order;

TEST(Packing, KnownBytes) {
  EXPECT_EQ(lc::pack_nibbles<nibble_order::high_first>(1, 2), 0x12);
  EXPECT_EQ(lc::pack_nibbles<nibble_order::low_first>(1, 2), 0x21);
  // Only the low 4 bits of each code are used.
  EXPECT_EQ(lc::pack_nibbles<nibble_order::high_first>(0xF1, 0xE2), 0x12);
  EXPECT_EQ(lc::pack_nibbles<nibble_order::low_first>(0xF1, 0xE2), 0x21);
  EXPECT_EQ(lc::unpack_nibble<nibble_order::high_first>(0x12, 0), 1);
  EXPECT_EQ(lc::unpack_nibble<nibble_order::high_first>(0x12, 1), 2);
  EXPECT_EQ(lc::unpack_nibble<nibble_order::low_first>(0x21, 0), 1);
  EXPECT_EQ(lc::unpack_nibble<nibble_order::low_first>(0x21, 1), 2);
}

TEST(Packing, AllNibblePairs) {
  for (unsigned a = 0; a < 16; ++a) {
    for (unsigned b = 0; b < 16; ++b) {
      const auto ua = static_cast<std::uint8_t>(a), ub = static_cast<std::uint8_t>(b);
      const unsigned hi = lc::pack_nibbles<nibble_order::high_first>(ua, ub);
      const unsigned lo = lc::pack_nibbles<nibble_order::low_first>(ua, ub);
      EXPECT_EQ(hi, (a << 4) | b) << "high_first pack 0x" << std::hex << a << ", 0x" << b;
      EXPECT_EQ(lo, a | (b << 4)) << "low_first pack 0x" << std::hex << a << ", 0x" << b;
      EXPECT_EQ(lc::unpack_nibble<nibble_order::high_first>(static_cast<std::uint8_t>(hi), 0), a);
      EXPECT_EQ(lc::unpack_nibble<nibble_order::high_first>(static_cast<std::uint8_t>(hi), 1), b);
      EXPECT_EQ(lc::unpack_nibble<nibble_order::low_first>(static_cast<std::uint8_t>(lo), 0), a);
      EXPECT_EQ(lc::unpack_nibble<nibble_order::low_first>(static_cast<std::uint8_t>(lo), 1), b);
    }
  }
}

template <nibble_order Order>
void check_pack_round_trip(const char* order_name) {
  constexpr std::uint8_t pad = 0x7;  // e.g. nf4's code of 0.0
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{3},
                              std::size_t{17}}) {
    std::vector<std::uint8_t> codes(n);
    for (std::size_t i = 0; i < n; ++i) codes[i] = static_cast<std::uint8_t>((i * 5 + 3) & 0xF);
    const std::size_t bytes = (n + 1) / 2;
    EXPECT_EQ(lc::packed_size_4bit(n), bytes) << order_name << " n=" << n;
    std::vector<std::uint8_t> packed(bytes + 2, 0xAB);  // two guard bytes
    lc::pack_4bit<Order>(codes.data(), n, packed.data(), pad);
    for (std::size_t j = 0; j < bytes; ++j) {
      const unsigned first = codes[2 * j];
      const unsigned second = 2 * j + 1 < n ? codes[2 * j + 1] : pad;
      const unsigned want = Order == nibble_order::high_first ? (first << 4 | second) : (first | second << 4);
      EXPECT_EQ(packed[j], want) << order_name << " n=" << n << " byte " << j << ": want 0x"
                                 << std::hex << want << ", got 0x" << unsigned(packed[j]);
    }
    EXPECT_EQ(packed[bytes], 0xAB) << order_name << " n=" << n << ": wrote past the end";
    EXPECT_EQ(packed[bytes + 1], 0xAB) << order_name << " n=" << n << ": wrote past the end";
    std::vector<std::uint8_t> unpacked(n + 1, 0xCD);
    lc::unpack_4bit<Order>(packed.data(), n, unpacked.data());
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(unpacked[i], codes[i]) << order_name << " n=" << n << " element " << i;
    }
    EXPECT_EQ(unpacked[n], 0xCD) << order_name << " n=" << n << ": unpacked past the end";
  }
}

TEST(Packing, HighFirstRoundTrip) { check_pack_round_trip<nibble_order::high_first>("high_first"); }
TEST(Packing, LowFirstRoundTrip) { check_pack_round_trip<nibble_order::low_first>("low_first"); }

TEST(Packing, OddCountPadsWithPadCode) {
  const std::uint8_t codes[3] = {0x1, 0x2, 0x3};
  std::uint8_t out[2] = {0, 0};
  lc::pack_4bit<nibble_order::high_first>(codes, 3, out, 0xA);
  EXPECT_EQ(out[0], 0x12);
  EXPECT_EQ(out[1], 0x3A);
  lc::pack_4bit<nibble_order::low_first>(codes, 3, out, 0xA);
  EXPECT_EQ(out[0], 0x21);
  EXPECT_EQ(out[1], 0xA3);
}

}  // namespace
