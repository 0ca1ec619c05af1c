// SPDX-License-Identifier: Apache-2.0
// The tests' independent oracle: format parameters, literal tables, thresholds and reference
// algorithms typed from the specifications (formats-and-peer-tests.md §4.1/§4.2,
// bitsandbytes-semantics.md §1.1-§1.3, §2.2). It must never include or call lowbit: the tests
// compare lowbit against it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "test_util.hpp"

namespace lowbit_test::spec {

// ---------------------------------------------------------------------------------------------
// Minifloats: format parameters (NOT read from lowbit's headers) and the decode formula.

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
inline constexpr FormatParams kE4m3fn{"e4m3fn", 4, 3, 7, true, true, Specials::fn};
inline constexpr FormatParams kE5m2{"e5m2", 5, 2, 15, true, true, Specials::ieee};
// §4.2: FP6 E2M3 bias 1, E3M2 bias 3, FP4 E2M1 bias 1; no Inf/NaN.
inline constexpr FormatParams kE2m3fn{"e2m3fn", 2, 3, 1, true, true, Specials::finite};
inline constexpr FormatParams kE3m2fn{"e3m2fn", 3, 2, 3, true, true, Specials::finite};
inline constexpr FormatParams kE2m1fn{"e2m1fn", 2, 1, 1, true, true, Specials::finite};
// e3m0: sign, 3 exponent bits, bias 3, no mantissa, no Inf/NaN, exponent field 0 = zero.
inline constexpr FormatParams kE3m0{"e3m0", 3, 0, 3, true, true, Specials::finite};
// §4.2: E8M0 unsigned, bias 127, 2^(e-127) for e in 0..254, 0xFF = NaN, no zero, no Inf.
inline constexpr FormatParams kE8m0fnu{"e8m0fnu", 8, 0, 127, false, false, Specials::fn};

inline constexpr int num_codes(const FormatParams& f) {
  return 1 << (f.exp_bits + f.man_bits + (f.has_sign ? 1 : 0));
}

/// One code of a minifloat, classified and valued from the format parameters alone.
struct RefCode {
  unsigned code;
  bool negative;
  bool nan;
  bool inf;
  double value;  // finite codes only
};

inline RefCode decode(const FormatParams& f, unsigned code) {
  RefCode r{code, false, false, false, 0.0};
  const int mag_bits = f.exp_bits + f.man_bits;
  r.negative = f.has_sign && ((code >> mag_bits) & 1u) != 0u;
  const unsigned e_all_ones = (1u << f.exp_bits) - 1u;
  const unsigned m_all_ones = (1u << f.man_bits) - 1u;
  const unsigned e = (code >> f.man_bits) & e_all_ones;
  const unsigned m = code & m_all_ones;
  if (f.specials == Specials::ieee && e == e_all_ones) {
    (m == 0u ? r.inf : r.nan) = true;
    return r;
  }
  if (f.specials == Specials::fn && e == e_all_ones && m == m_all_ones) {
    r.nan = true;
    return r;
  }
  const double magnitude =
      (e == 0u && f.has_subnormals)
          // subnormal: 0.m * 2^(1 - bias)
          ? std::ldexp(static_cast<double>(m), 1 - f.bias - f.man_bits)
          // normal: 1.m * 2^(e - bias)
          : std::ldexp(static_cast<double>((1u << f.man_bits) + m),
                       static_cast<int>(e) - f.bias - f.man_bits);
  r.value = r.negative ? -magnitude : magnitude;
  return r;
}

/// Expected float32 bit pattern of `code`: +-Inf, a quiet NaN with the code's sign, or the exact
/// value (the sign of zero included).
inline std::uint32_t decode_bits(const FormatParams& f, unsigned code) {
  const RefCode r = decode(f, code);
  const std::uint32_t sign = r.negative ? 0x80000000u : 0u;
  if (r.inf) return sign | 0x7F800000u;
  if (r.nan) return sign | 0x7FC00000u;
  const float as_float = static_cast<float>(r.value);
  // All these values are exact in float32 (the smallest is E8M0's 2^-127, a float32 subnormal).
  EXPECT_EQ(static_cast<double>(as_float), r.value) << f.name << " code " << hex(code, 2);
  return bits_of(as_float);
}

/// decode_bits of every code, indexed by code.
inline std::vector<std::uint32_t> decode_bits_table(const FormatParams& f) {
  std::vector<std::uint32_t> bits;
  for (int c = 0; c < num_codes(f); ++c) bits.push_back(decode_bits(f, static_cast<unsigned>(c)));
  return bits;
}

/// Finite codes of one sign, ascending in magnitude.
inline std::vector<RefCode> finite_codes(const FormatParams& f, bool negative) {
  std::vector<RefCode> out;
  for (int c = 0; c < num_codes(f); ++c) {
    const RefCode r = decode(f, static_cast<unsigned>(c));
    if (!r.nan && !r.inf && r.negative == negative) out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const RefCode& a, const RefCode& b) {
    return std::fabs(a.value) < std::fabs(b.value);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Literal 4-bit decode tables (float32 bit patterns, indexed by code).

// formats-and-peer-tests.md §4.2: E2M1 values ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; code 8 = -0.
inline const std::vector<std::uint32_t> kE2m1fnBits = {
    0x00000000u, 0x3F000000u, 0x3F800000u, 0x3FC00000u,  // 0, 0.5, 1, 1.5
    0x40000000u, 0x40400000u, 0x40800000u, 0x40C00000u,  // 2, 3, 4, 6
    0x80000000u, 0xBF000000u, 0xBF800000u, 0xBFC00000u,  // -0, -0.5, -1, -1.5
    0xC0000000u, 0xC0400000u, 0xC0800000u, 0xC0C00000u,  // -2, -3, -4, -6
};

// e3m0: ±{0, 0.25, 0.5, 1, 2, 4, 8, 16}; code 8 = -0.
inline const std::vector<std::uint32_t> kE3m0Bits = {
    0x00000000u, 0x3E800000u, 0x3F000000u, 0x3F800000u,  // 0, 0.25, 0.5, 1
    0x40000000u, 0x40800000u, 0x41000000u, 0x41800000u,  // 2, 4, 8, 16
    0x80000000u, 0xBE800000u, 0xBF000000u, 0xBF800000u,  // -0, -0.25, -0.5, -1
    0xC0000000u, 0xC0800000u, 0xC1000000u, 0xC1800000u,  // -2, -4, -8, -16
};

// bitsandbytes-semantics.md §1.1, "f32 bits" column.
inline const std::vector<std::uint32_t> kNf4Bits = {
    0xBF800000u, 0xBF3239B1u, 0xBF066B30u, 0xBECA32A0u, 0xBE91A24Du, 0xBE3D353Fu,
    0xBDBA7871u, 0x00000000u, 0x3DA2FAFFu, 0x3E24CAE3u, 0x3E7C04DDu, 0x3EAD033Au,
    0x3EE1A4B8u, 0x3F1007ABu, 0x3F3913B3u, 0x3F800000u,
};

// bitsandbytes-semantics.md §1.2, "f32 bits" column; code 8 is -0.0 as in bnb's CUDA kernels.
inline const std::vector<std::uint32_t> kBnbFp4Bits = {
    0x00000000u, 0x3BAAAAABu, 0x3F2AAAABu, 0x3F800000u,  // 0, 1/192, 2/3, 1
    0x3EAAAAABu, 0x3F000000u, 0x3E2AAAABu, 0x3E800000u,  // 1/3, 1/2, 1/6, 1/4
    0x80000000u, 0xBBAAAAABu, 0xBF2AAAABu, 0xBF800000u,  // -0, -1/192, -2/3, -1
    0xBEAAAAABu, 0xBF000000u, 0xBE2AAAABu, 0xBE800000u,  // -1/3, -1/2, -1/6, -1/4
};

// ---------------------------------------------------------------------------------------------
// bitsandbytes' CUDA encode thresholds (bitsandbytes-semantics.md §1.1 and §1.2, the
// "CUDA f32 bits" columns) and the encoders they define.

/// NF4 thresholds T_0..T_14, ascending.
inline constexpr std::uint32_t kNf4ThresholdBits[15] = {
    0xBF591CD9u, 0xBF1C5270u, 0xBEEB8480u, 0xBEADEA76u, 0xBE703CECu,
    0xBE0D38BCu, 0xBD3A7871u, 0x3D22FAFFu, 0x3DF64863u, 0x3E5067E0u,
    0x3E9582D4u, 0x3EC753F9u, 0x3F006D03u, 0x3F248DAFu, 0x3F5C89D9u,
};

/// bnb FP4 magnitude thresholds, ascending.
inline constexpr std::uint32_t kBnbFp4ThresholdBits[7] = {
    0x3B2AAAB9u, 0x3DB00000u, 0x3E555555u, 0x3E955555u, 0x3ED55556u, 0x3F155550u, 0x3F555555u,
};

/// The bnb FP4 magnitude code of each magnitude rank: 0 -> 0b000, 1/192 -> 0b001, 1/6 -> 0b110,
/// 1/4 -> 0b111, 1/3 -> 0b100, 1/2 -> 0b101, 2/3 -> 0b010, 1 -> 0b011.
inline constexpr unsigned kBnbFp4RankCode[8] = {0b000, 0b001, 0b110, 0b111,
                                                0b100, 0b101, 0b010, 0b011};

/// NF4 encode: #{i : x > T_i} (strict, so NaN -> 0).
inline unsigned nf4_code(float x) {
  unsigned q = 0;
  for (const std::uint32_t t : kNf4ThresholdBits) q += x > float_of(t) ? 1u : 0u;
  return q;
}

/// bnb FP4 encode: sign = (x < 0) in bit 3 (so -0.0 and NaN get sign 0), plus the code of the
/// rank of |x| among the magnitude thresholds.
inline unsigned bnb_fp4_code(float x) {
  const float a = std::fabs(x);
  unsigned rank = 0;
  for (const std::uint32_t t : kBnbFp4ThresholdBits) rank += a > float_of(t) ? 1u : 0u;
  return (x < 0.0f ? 8u : 0u) + kBnbFp4RankCode[rank];
}

// ---------------------------------------------------------------------------------------------
// bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), regenerated
// (§1.3, FMA linspace), and dQuantize<0>'s nearest-entry search (§2.2).

/// Correctly rounded float32 product (the double product of two floats is exact), immune to FMA
/// contraction by the compiler.
inline float mul_f32(float a, float b) {
  return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

/// torch.linspace(start, end, steps, dtype=float32) as the scalar CPU kernel of current torch
/// computes it, with FMA contraction in both branches (the variant Appendix A lists).
inline std::vector<float> torch_linspace_f32_fma(float start, float end, int steps) {
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

/// The 256 entries of bitsandbytes' signed dynamic map, ascending (index = code).
inline std::vector<float> bnb_dynamic_map() {
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

/// The nearest entry of an ascending table, deciding against the float32 midpoint
/// f32((t[k] + t[k+1]) * 0.5) of the two neighbours of x; an exact tie goes to the even index;
/// NaN -> 0; below the first entry -> 0, above the last -> the last index.
inline unsigned dynamic8_nearest_code(const std::vector<float>& t, float x) {
  if (std::isnan(x)) return 0;
  // k = number of entries strictly below x: t[k-1] < x <= t[k].
  const auto k = static_cast<unsigned>(std::lower_bound(t.begin(), t.end(), x) - t.begin());
  if (k == 0) return 0;
  if (k == t.size()) return k - 1;
  const float mid = (t[k - 1] + t[k]) * 0.5f;
  if (x < mid) return k - 1;
  if (x > mid) return k;
  return (k - 1) % 2 == 0 ? k - 1 : k;
}

}  // namespace lowbit_test::spec
