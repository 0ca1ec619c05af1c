// SPDX-License-Identifier: Apache-2.0
// Encode semantics at the decision points: round trips of every code, every midpoint between
// adjacent representable values (and its one-ulp neighbours) under each rounding mode, overflow
// and underflow policies, the bitsandbytes codebook thresholds, the integer codecs and nibble
// packing. Expected values come from the specs (formats-and-peer-tests.md §4.1/§4.2,
// bitsandbytes-semantics.md §1.1-§1.3, §2.2) and from the documented contracts in lowbit's codec
// headers, computed here independently of lowbit's own implementation.

#include <lowbit/lowbit.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

namespace lc = lowbit::codecs;
using lc::overflow;
using lc::rounding;

std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kNaN = float_of(0x7FC00000u);
const float kNegNaN = float_of(0xFFC00000u);
const float kSignalingNaN = float_of(0x7F800001u);

// ---------------------------------------------------------------------------------------------
// Format parameters, typed from the specs (NOT read from lowbit's headers).

enum class Specials { ieee, fn, finite };

struct FormatParams {
  const char* name;
  int exp_bits;
  int man_bits;
  int bias;
  bool has_sign;
  bool has_subnormals;
  Specials specials;
};

constexpr FormatParams kE4m3fn{"e4m3fn", 4, 3, 7, true, true, Specials::fn};
constexpr FormatParams kE5m2{"e5m2", 5, 2, 15, true, true, Specials::ieee};
constexpr FormatParams kE2m3fn{"e2m3fn", 2, 3, 1, true, true, Specials::finite};
constexpr FormatParams kE3m2fn{"e3m2fn", 3, 2, 3, true, true, Specials::finite};
constexpr FormatParams kE2m1fn{"e2m1fn", 2, 1, 1, true, true, Specials::finite};
constexpr FormatParams kE3m0{"e3m0", 3, 0, 3, true, true, Specials::finite};
constexpr FormatParams kE8m0fnu{"e8m0fnu", 8, 0, 127, false, false, Specials::fn};

/// One code of a minifloat, classified and valued from the format parameters alone.
struct RefCode {
  unsigned code;
  bool negative;
  bool nan;
  bool inf;
  double value;  // finite codes only
};

RefCode ref_decode(const FormatParams& f, unsigned code) {
  RefCode r{code, false, false, false, 0.0};
  const int mag_bits = f.exp_bits + f.man_bits;
  r.negative = f.has_sign && ((code >> mag_bits) & 1u) != 0u;
  const unsigned e_all = (1u << f.exp_bits) - 1u;
  const unsigned m_all = (1u << f.man_bits) - 1u;
  const unsigned e = (code >> f.man_bits) & e_all;
  const unsigned m = code & m_all;
  if (f.specials == Specials::ieee && e == e_all) {
    (m == 0u ? r.inf : r.nan) = true;
    return r;
  }
  if (f.specials == Specials::fn && e == e_all && m == m_all) {
    r.nan = true;
    return r;
  }
  const double mag = (e == 0u && f.has_subnormals)
                         ? std::ldexp(static_cast<double>(m), 1 - f.bias - f.man_bits)
                         : std::ldexp(static_cast<double>((1u << f.man_bits) + m),
                                      static_cast<int>(e) - f.bias - f.man_bits);
  r.value = r.negative ? -mag : mag;
  return r;
}

int spec_num_codes(const FormatParams& f) {
  return 1 << (f.exp_bits + f.man_bits + (f.has_sign ? 1 : 0));
}

/// Finite codes of one sign, ascending in magnitude.
std::vector<RefCode> finite_codes(const FormatParams& f, bool negative) {
  std::vector<RefCode> out;
  for (int c = 0; c < spec_num_codes(f); ++c) {
    const RefCode r = ref_decode(f, static_cast<unsigned>(c));
    if (!r.nan && !r.inf && r.negative == negative) out.push_back(r);
  }
  std::sort(out.begin(), out.end(),
            [](const RefCode& a, const RefCode& b) { return std::fabs(a.value) < std::fabs(b.value); });
  return out;
}

float exact_float(double v) {
  const float f = static_cast<float>(v);
  EXPECT_EQ(static_cast<double>(f), v) << "value not exact in float32: " << v;
  return f;
}

template <class Codec, rounding R = rounding::nearest_even, overflow O = overflow::saturate>
unsigned enc(float x) {
  return static_cast<unsigned>(Codec::template encode<R, O>(x));
}

#define LOWBIT_EXPECT_CODE(name, mode, x, got, want)                                            \
  EXPECT_EQ((got), (want)) << (name) << " [" << (mode) << "] input 0x" << std::hex << bits_of(x) \
                           << " (" << (x) << "): expected code 0x" << (want) << ", got 0x" << (got)

// ---------------------------------------------------------------------------------------------
// (a) Round trips.

template <class Codec>
void check_minifloat_round_trip(const FormatParams& f) {
  for (int ci = 0; ci < spec_num_codes(f); ++ci) {
    const auto c = static_cast<unsigned>(ci);
    const RefCode r = ref_decode(f, c);
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

TEST(RoundTrip, E4m3fnAllCodes) { check_minifloat_round_trip<lc::e4m3fn>(kE4m3fn); }
TEST(RoundTrip, E5m2AllCodes) { check_minifloat_round_trip<lc::e5m2>(kE5m2); }
TEST(RoundTrip, E2m3fnAllCodes) { check_minifloat_round_trip<lc::e2m3fn>(kE2m3fn); }
TEST(RoundTrip, E3m2fnAllCodes) { check_minifloat_round_trip<lc::e3m2fn>(kE3m2fn); }
TEST(RoundTrip, E2m1fnAllCodes) { check_minifloat_round_trip<lc::e2m1fn>(kE2m1fn); }
TEST(RoundTrip, E3m0AllCodes) { check_minifloat_round_trip<lc::e3m0>(kE3m0); }
TEST(RoundTrip, E8m0fnuAllCodes) { check_minifloat_round_trip<lc::e8m0fnu>(kE8m0fnu); }

TEST(RoundTrip, Nf4AllCodes) {
  for (unsigned c = 0; c < 16; ++c) {
    const float x = lc::nf4::decode(static_cast<std::uint8_t>(c));
    LOWBIT_EXPECT_CODE("nf4", "table", x, static_cast<unsigned>(lc::nf4::encode(x)), c);
  }
}

TEST(RoundTrip, BnbFp4AllCodes) {
  for (unsigned c = 0; c < 16; ++c) {
    const float x = lc::bnb_fp4::decode(static_cast<std::uint8_t>(c));
    // Code 8 decodes to -0.0 (bnb CUDA), but bnb's encoder takes the sign from (x < 0), which is
    // false for -0.0, so -0.0 encodes to code 0 (bitsandbytes-semantics.md §1.2).
    const unsigned want = c == 8 ? 0u : c;
    LOWBIT_EXPECT_CODE("bnb_fp4", "table", x, static_cast<unsigned>(lc::bnb_fp4::encode(x)), want);
  }
}

TEST(RoundTrip, BnbDynamic8AllCodes) {
  for (unsigned c = 0; c < 256; ++c) {
    const float x = lc::bnb_dynamic8::decode(static_cast<std::uint8_t>(c));
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "table", x, static_cast<unsigned>(lc::bnb_dynamic8::encode(x)), c);
  }
}

// ---------------------------------------------------------------------------------------------
// (b) Midpoints between adjacent representable values, and their one-ulp neighbours.

template <class Codec>
void check_minifloat_midpoints(const FormatParams& f) {
  for (const bool negative : {false, true}) {
    if (negative && !f.has_sign) continue;
    const std::vector<RefCode> codes = finite_codes(f, negative);
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

TEST(Midpoints, E4m3fn) { check_minifloat_midpoints<lc::e4m3fn>(kE4m3fn); }
TEST(Midpoints, E5m2) { check_minifloat_midpoints<lc::e5m2>(kE5m2); }
TEST(Midpoints, E2m3fn) { check_minifloat_midpoints<lc::e2m3fn>(kE2m3fn); }
TEST(Midpoints, E3m2fn) { check_minifloat_midpoints<lc::e3m2fn>(kE3m2fn); }
TEST(Midpoints, E2m1fn) { check_minifloat_midpoints<lc::e2m1fn>(kE2m1fn); }
TEST(Midpoints, E3m0) { check_minifloat_midpoints<lc::e3m0>(kE3m0); }
TEST(Midpoints, E8m0fnu) { check_minifloat_midpoints<lc::e8m0fnu>(kE8m0fnu); }

// e8m0fnu is unsigned: it encodes |x| in every rounding mode.
TEST(Midpoints, E8m0fnuNegativeInputsEncodeMagnitude) {
  const std::vector<RefCode> codes = finite_codes(kE8m0fnu, false);
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
    const unsigned spec = neg_code ? k.neg_special_code : k.special_code;
    LOWBIT_EXPECT_CODE(k.name, "saturate", s * k.max, sat(s * k.max), maxc);
    LOWBIT_EXPECT_CODE(k.name, "special", s * k.max, spc(s * k.max), maxc);
    LOWBIT_EXPECT_CODE(k.name, "saturate", s * just_below, sat(s * just_below), maxc);
    LOWBIT_EXPECT_CODE(k.name, "special", s * just_below, spc(s * just_below), maxc);
    LOWBIT_EXPECT_CODE(k.name, "saturate", s * k.mid_above, sat(s * k.mid_above), maxc);
    LOWBIT_EXPECT_CODE(k.name, "special", s * k.mid_above, spc(s * k.mid_above),
                       k.mid_above_stays_max ? maxc : spec);
    for (const float x : {just_above, twice, std::numeric_limits<float>::max(), kInf}) {
      LOWBIT_EXPECT_CODE(k.name, "saturate", s * x, sat(s * x), maxc);
      LOWBIT_EXPECT_CODE(k.name, "special", s * x, spc(s * x), spec);
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
                         (enc<Codec, rounding::toward_pos_inf, overflow::special>(s * above_max)), spec);
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
void check_underflow(const FormatParams& f) {
  const std::vector<RefCode> pos = finite_codes(f, false);
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

TEST(Underflow, E4m3fn) { check_underflow<lc::e4m3fn>(kE4m3fn); }
TEST(Underflow, E5m2) { check_underflow<lc::e5m2>(kE5m2); }
TEST(Underflow, E2m3fn) { check_underflow<lc::e2m3fn>(kE2m3fn); }
TEST(Underflow, E3m2fn) { check_underflow<lc::e3m2fn>(kE3m2fn); }
TEST(Underflow, E2m1fn) { check_underflow<lc::e2m1fn>(kE2m1fn); }
TEST(Underflow, E3m0) { check_underflow<lc::e3m0>(kE3m0); }

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
// nf4 / bnb_fp4 thresholds (bit patterns typed from bitsandbytes-semantics.md §1.1 and §1.2, the
// "CUDA f32 bits" columns).

TEST(Thresholds, Nf4) {
  const std::uint32_t t_bits[15] = {
      0xBF591CD9u, 0xBF1C5270u, 0xBEEB8480u, 0xBEADEA76u, 0xBE703CECu,
      0xBE0D38BCu, 0xBD3A7871u, 0x3D22FAFFu, 0x3DF64863u, 0x3E5067E0u,
      0x3E9582D4u, 0x3EC753F9u, 0x3F006D03u, 0x3F248DAFu, 0x3F5C89D9u,
  };
  for (unsigned i = 0; i < 15; ++i) {
    const float t = float_of(t_bits[i]);
    // x == T_i takes the lower code (strict >), the next float up takes the upper one.
    LOWBIT_EXPECT_CODE("nf4", "threshold", t, static_cast<unsigned>(lc::nf4::encode(t)), i);
    const float below = std::nextafter(t, -kInf);
    LOWBIT_EXPECT_CODE("nf4", "threshold", below, static_cast<unsigned>(lc::nf4::encode(below)), i);
    const float above = std::nextafter(t, kInf);
    LOWBIT_EXPECT_CODE("nf4", "threshold", above, static_cast<unsigned>(lc::nf4::encode(above)), i + 1);
  }
  const struct {
    float x;
    unsigned code;
  } specials[] = {{kNaN, 0},   {kNegNaN, 0},  {kSignalingNaN, 0}, {-kInf, 0}, {kInf, 15},
                  {-2.0f, 0},  {2.0f, 15},    {-1.0f, 0},         {1.0f, 15}, {0.0f, 7},
                  {-0.0f, 7},  {1e-30f, 7},   {-1e-30f, 7}};
  for (const auto& s : specials) {
    LOWBIT_EXPECT_CODE("nf4", "special", s.x, static_cast<unsigned>(lc::nf4::encode(s.x)), s.code);
  }
}

TEST(Thresholds, BnbFp4) {
  // Magnitude thresholds, ascending, and the code of each magnitude rank:
  // 0 -> 0b000, 1/192 -> 0b001, 1/6 -> 0b110, 1/4 -> 0b111, 1/3 -> 0b100, 1/2 -> 0b101,
  // 2/3 -> 0b010, 1 -> 0b011.
  const std::uint32_t t_bits[7] = {0x3B2AAAB9u, 0x3DB00000u, 0x3E555555u, 0x3E955555u,
                                   0x3ED55556u, 0x3F155550u, 0x3F555555u};
  const unsigned rank_code[8] = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};
  for (unsigned i = 0; i < 7; ++i) {
    const float t = float_of(t_bits[i]);
    const float above = std::nextafter(t, kInf);
    const float below = std::nextafter(t, 0.0f);
    for (const bool negative : {false, true}) {
      const float s = negative ? -1.0f : 1.0f;
      const unsigned sign = negative ? 8u : 0u;
      LOWBIT_EXPECT_CODE("bnb_fp4", "threshold", s * t,
                         static_cast<unsigned>(lc::bnb_fp4::encode(s * t)), rank_code[i] | sign);
      LOWBIT_EXPECT_CODE("bnb_fp4", "threshold", s * below,
                         static_cast<unsigned>(lc::bnb_fp4::encode(s * below)), rank_code[i] | sign);
      LOWBIT_EXPECT_CODE("bnb_fp4", "threshold", s * above,
                         static_cast<unsigned>(lc::bnb_fp4::encode(s * above)), rank_code[i + 1] | sign);
    }
  }
  // sign = (x < 0): -0.0 and every NaN give sign 0 and magnitude 0 -> code 0. Tiny negative values
  // give bnb's "negative zero" code 8.
  const struct {
    float x;
    unsigned code;
  } specials[] = {{kNaN, 0},  {kNegNaN, 0}, {kSignalingNaN, 0}, {-kInf, 11}, {kInf, 3},
                  {-2.0f, 11}, {2.0f, 3},   {-1.0f, 11},        {1.0f, 3},   {0.0f, 0},
                  {-0.0f, 0},  {1e-30f, 0}, {-1e-30f, 8}};
  for (const auto& s : specials) {
    LOWBIT_EXPECT_CODE("bnb_fp4", "special", s.x, static_cast<unsigned>(lc::bnb_fp4::encode(s.x)), s.code);
  }
}

// ---------------------------------------------------------------------------------------------
// bnb_dynamic8: CUDA dQuantize<0> semantics (bitsandbytes-semantics.md §2.2) against a linear scan
// over a table regenerated with create_dynamic_map (§1.3, FMA linspace).

float mul_f32(float a, float b) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

std::vector<float> regenerate_bnb_dynamic_map() {
  const double powers_of_ten[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0};
  std::vector<float> data;
  for (int i = 0; i < 7; ++i) {
    const int steps = (1 << i) + 1;  // fraction_items (signed, E = 7, 8 bits)
    const float start = 0.1f, end = 1.0f;
    const float step = (end - start) / static_cast<float>(steps - 1);
    std::vector<float> b(static_cast<std::size_t>(steps));
    for (int idx = 0; idx < steps; ++idx) {
      b[static_cast<std::size_t>(idx)] =
          idx < steps / 2 ? std::fma(step, static_cast<float>(idx), start)
                          : std::fma(-step, static_cast<float>(steps - idx - 1), end);
    }
    const float scale = static_cast<float>(powers_of_ten[i]);
    for (std::size_t k = 0; k + 1 < b.size(); ++k) {
      const float v = mul_f32(scale, (b[k] + b[k + 1]) / 2.0f);
      data.push_back(v);
      data.push_back(-v);
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  std::sort(data.begin(), data.end());
  return data;
}

/// Nearest entry of an ascending table, deciding against the float32 midpoint
/// f32((t[k] + t[k+1]) * 0.5); exact ties go to the even index; NaN -> 0.
unsigned ref_dynamic8_encode(const std::vector<float>& t, float x) {
  if (std::isnan(x) || x <= t[0]) return 0;
  if (x > t[255]) return 255;
  std::size_t k = 0;
  while (!(x <= t[k + 1])) ++k;  // t[k] < x <= t[k+1]
  const float mid = (t[k] + t[k + 1]) * 0.5f;
  if (x < mid) return static_cast<unsigned>(k);
  if (x > mid) return static_cast<unsigned>(k + 1);
  return static_cast<unsigned>(k % 2 == 0 ? k : k + 1);
}

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
  const std::vector<float> t = regenerate_bnb_dynamic_map();
  ASSERT_EQ(t.size(), 256u);
  int probes = 0;
  for (const float x : dynamic8_probe_points(t)) {
    const unsigned want = ref_dynamic8_encode(t, x);
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "encode", x, static_cast<unsigned>(lc::bnb_dynamic8::encode(x)), want);
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "encode_with_table", x,
                       static_cast<unsigned>(lc::bnb_dynamic8::encode_with_table(t.data(), x)), want);
    ++probes;
  }
  EXPECT_GE(probes, 256 * 6);
  // Every pair's float32 midpoint is itself an exact tie and must resolve to the even index.
  for (unsigned k = 0; k + 1 < 256; ++k) {
    const float mid = (t[k] + t[k + 1]) * 0.5f;
    const unsigned even = k % 2 == 0 ? k : k + 1;
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "tie", mid, static_cast<unsigned>(lc::bnb_dynamic8::encode(mid)), even);
  }
}

// encode_with_table searches the table it is given: a different ascending table (a linear map)
// gives the linear scan's answers over that table.
TEST(BnbDynamic8, EncodeWithTableUsesGivenTable) {
  std::vector<float> linear(256);
  for (int i = 0; i < 256; ++i) linear[static_cast<std::size_t>(i)] = static_cast<float>(i - 127) / 128.0f;
  for (const float x : dynamic8_probe_points(linear)) {
    LOWBIT_EXPECT_CODE("bnb_dynamic8", "encode_with_table(linear)", x,
                       static_cast<unsigned>(lc::bnb_dynamic8::encode_with_table(linear.data(), x)),
                       ref_dynamic8_encode(linear, x));
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
