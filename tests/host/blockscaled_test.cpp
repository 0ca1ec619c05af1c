// SPDX-License-Identifier: Apache-2.0
// Block-scaled formats (MX, NVFP4, FP8 with float32 tile scales) on the host engine.
// Oracles: the scale rules recomputed in double from their definitions (OCP MX v1.0 §6.3 floor,
// ceil(log2), the cuBLAS/torchao RCEIL ceiling, torchao's EVEN rounding) over every float32
// exponent/mantissa edge of amax; element codes from a nearest-value search over
// spec_reference's decode tables (format parameters not read from lowbit); the tiling, packing,
// threading and SIMD paths against a scalar loop over those oracles.
#include <lowbit/scaled_tensor.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "spec_reference.hpp"
#include "test_util.hpp"

namespace {

using lowbit::scaled_format;
using lowbit::quant::mx_scale_rule;
namespace spec = lowbit_test::spec;

float f32_from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct mx_case {
  scaled_format fmt;
  const spec::FormatParams* params;
  int emax;  // exponent of the element's largest normal (OCP MX v1.0 table: 8, 15, 2, 4, 2)
  double max;
};

const std::vector<mx_case>& mx_cases() {
  static const std::vector<mx_case> c = {
      {scaled_format::mxfp8_e4m3, &spec::kE4m3fn, 8, 448.0},  {scaled_format::mxfp8_e5m2, &spec::kE5m2, 15, 57344.0},
      {scaled_format::mxfp6_e2m3, &spec::kE2m3fn, 2, 7.5},    {scaled_format::mxfp6_e3m2, &spec::kE3m2fn, 4, 28.0},
      {scaled_format::mxfp4, &spec::kE2m1fn, 2, 6.0},
  };
  return c;
}

// Expected e8m0 code of an MX tile with max |x| = a, from the rule's definition in double.
unsigned expected_scale(double a, const mx_case& m, mx_scale_rule rule) {
  if (std::isnan(a) || std::isinf(a)) return 0xFF;
  auto clamp_code = [](long k) { return static_cast<unsigned>((k < -127 ? -127 : (k > 127 ? 127 : k)) + 127); };
  if (a == 0.0) return clamp_code(-1000);
  switch (rule) {
    case mx_scale_rule::floor: return clamp_code(std::ilogb(a) - m.emax);
    case mx_scale_rule::ceil: {
      const int e = std::ilogb(a);
      return clamp_code(e + (std::ldexp(1.0, e) == a ? 0 : 1) - m.emax);
    }
    case mx_scale_rule::even: {
      if (a < std::ldexp(1.0, -126)) return clamp_code(-1000);
      const int e = std::ilogb(a);
      const int mbits = m.params->man_bits;
      const double q = std::ldexp(1.0, e - mbits);
      const double r = std::floor(a / q + 0.5) * q;  // half away from zero on the magnitude
      if (r >= std::ldexp(1.0, 128)) return 0xFF;     // the rounded amax overflows float32
      return clamp_code(std::ilogb(r) - m.emax);
    }
    case mx_scale_rule::rceil: {
      // d = amax * f32(1 / max) in float32 (the definition's one rounding), then 2^ceil(log2 d)
      const float d = static_cast<float>(a) * static_cast<float>(1.0 / m.max);
      if (std::isinf(d)) return 0xFF;
      if (d == 0.0f) return 0;
      int e = 0;
      const double frac = std::frexp(static_cast<double>(d), &e);  // d = frac * 2^e, frac in [0.5, 1)
      const int k = frac == 0.5 ? e - 1 : e;
      if (k > 127) return 0xFF;
      return clamp_code(k);
    }
  }
  return 0;
}

// Every float32 exponent/mantissa edge: 0, each power of two 2^-149 .. 2^127 and one ulp either
// side, the largest mantissa of each binade, FLT_MAX, +Inf, NaN.
std::vector<float> amax_edges() {
  std::vector<float> v = {0.0f, std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min()};
  for (int e = -149; e <= 127; ++e) {
    const float p = std::ldexp(1.0f, e);
    v.push_back(p);
    v.push_back(std::nextafter(p, 0.0f));
    v.push_back(std::nextafter(p, 1e30f));
    v.push_back(std::nextafter(std::nextafter(p, 1e30f), 1e30f));
    if (e >= -126) v.push_back(f32_from_bits(lowbit_test::bits_of(p) | 0x7FFFFFu));
    if (e >= -126) v.push_back(f32_from_bits(lowbit_test::bits_of(p) | 0x400000u));  // midpoint of the binade
  }
  return v;
}

template <class Codec>
unsigned rule_code(float a, mx_scale_rule rule) {
  return lowbit::quant::mx_scale_code<Codec>(a, rule);
}

unsigned lowbit_scale(float a, scaled_format f, mx_scale_rule rule) {
  switch (f) {
    case scaled_format::mxfp8_e4m3: return rule_code<lowbit::codecs::e4m3fn>(a, rule);
    case scaled_format::mxfp8_e5m2: return rule_code<lowbit::codecs::e5m2>(a, rule);
    case scaled_format::mxfp6_e2m3: return rule_code<lowbit::codecs::e2m3fn>(a, rule);
    case scaled_format::mxfp6_e3m2: return rule_code<lowbit::codecs::e3m2fn>(a, rule);
    default: return rule_code<lowbit::codecs::e2m1fn>(a, rule);
  }
}

const mx_scale_rule kRules[] = {mx_scale_rule::floor, mx_scale_rule::rceil, mx_scale_rule::ceil, mx_scale_rule::even};
const char* rule_name(mx_scale_rule r) {
  return r == mx_scale_rule::floor ? "floor" : r == mx_scale_rule::rceil ? "rceil" : r == mx_scale_rule::ceil ? "ceil" : "even";
}

TEST(BlockScaledScaleRule, EveryFloat32EdgeOfAmax) {
  const std::vector<float> edges = amax_edges();
  for (const mx_case& m : mx_cases()) {
    for (mx_scale_rule rule : kRules) {
      for (float a : edges) {
        EXPECT_EQ(lowbit_scale(a, m.fmt, rule), expected_scale(a, m, rule))
            << lowbit::info(m.fmt).name << " rule " << rule_name(rule) << " amax " << lowbit_test::hex(lowbit_test::bits_of(a));
      }
    }
  }
}

TEST(BlockScaledScaleRule, SpecExamples) {
  // OCP MX v1.0 §6.3 with E4M3 (emax 8): amax 448 -> 2^(8 - 8) = 1; amax 449 -> still 1 (floor),
  // its elements saturate at 448. RCEIL: 449/448 > 1 -> 2^1.
  EXPECT_EQ(rule_code<lowbit::codecs::e4m3fn>(448.0f, mx_scale_rule::floor), 127u);
  EXPECT_EQ(rule_code<lowbit::codecs::e4m3fn>(449.0f, mx_scale_rule::floor), 127u);
  EXPECT_EQ(rule_code<lowbit::codecs::e4m3fn>(448.0f, mx_scale_rule::rceil), 127u);
  EXPECT_EQ(rule_code<lowbit::codecs::e4m3fn>(449.0f, mx_scale_rule::rceil), 128u);
  // MXFP4: amax 6 -> floor(log2 6) - 2 = 0; amax 1 -> 2^-2
  EXPECT_EQ(rule_code<lowbit::codecs::e2m1fn>(6.0f, mx_scale_rule::floor), 127u);
  EXPECT_EQ(rule_code<lowbit::codecs::e2m1fn>(1.0f, mx_scale_rule::floor), 125u);
  // e8m0 multipliers: 2^(127 - s), 2^-127 the float32 subnormal 0x00400000; 0xFF NaN
  EXPECT_EQ(lowbit_test::bits_of(lowbit::quant::mx_multiplier(254)), 0x00400000u);
  EXPECT_EQ(lowbit_test::bits_of(lowbit::quant::mx_multiplier(0)), 0x7F000000u);
  EXPECT_TRUE(std::isnan(lowbit::quant::mx_multiplier(0xFF)));
}

// Nearest finite code of format p to v (exact double), ties to the even code, saturating.
unsigned nearest_code(const spec::FormatParams& p, double v) {
  if (std::isnan(v)) return ~0u;
  const bool neg = std::signbit(v);
  const std::vector<spec::RefCode> codes = spec::finite_codes(p, neg);
  const double a = std::fabs(v);
  const spec::RefCode* best = &codes.front();
  for (const spec::RefCode& c : codes) {
    const double d = std::fabs(std::fabs(c.value) - a), bd = std::fabs(std::fabs(best->value) - a);
    if (d < bd || (d == bd && (c.code & 1u) == 0u && (best->code & 1u) != 0u)) best = &c;
  }
  return best->code;
}

// The oracle of one element: the scaled value is exact in double (x * 2^k), then rounded by
// nearest_code; for float32 results below 2^-126 the float32 product's rounding comes first.
unsigned expected_element(const spec::FormatParams& p, float x, float factor) {
  const float scaled = x * factor;  // the definition's one float32 rounding
  return nearest_code(p, static_cast<double>(scaled));
}

TEST(BlockScaledElements, EncodingAfterScalingMatchesNearestValueSearch) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  for (const mx_case& m : mx_cases()) {
    // every code's value, the midpoints between neighbours (ties), one ulp either side, beyond max
    const std::vector<spec::RefCode> pos = spec::finite_codes(*m.params, false);
    std::vector<double> probes;
    for (std::size_t i = 0; i < pos.size(); ++i) {
      probes.push_back(pos[i].value);
      if (i + 1 < pos.size()) probes.push_back((pos[i].value + pos[i + 1].value) / 2);
    }
    probes.push_back(m.max * 1.01);
    probes.push_back(m.max * 1000);
    for (int scale_exp : {-20, 0, 7}) {
      const float factor = std::ldexp(1.0f, -scale_exp);
      // one tile of 32: element 0 fixes amax so the floor rule gives 2^scale_exp
      std::vector<float> x(32);
      const int n = static_cast<int>(probes.size());
      for (int start = 0; start < n; start += 30) {
        x[0] = static_cast<float>(std::ldexp(m.max, scale_exp));
        x[1] = -x[0];
        for (int k = 0; k < 30; ++k) {
          const double pv = probes[static_cast<std::size_t>((start + k) % n)];
          float v = static_cast<float>(std::ldexp(pv, scale_exp));
          const int wiggle = static_cast<int>(rng() % 3);
          if (wiggle == 1) v = std::nextafter(v, 0.0f);
          if (wiggle == 2) v = std::nextafter(v, 1e38f);
          if (rng() & 1) v = -v;
          if (std::fabs(v) > x[0]) v = std::copysign(x[0], v);
          x[static_cast<std::size_t>(2 + k)] = v;
        }
        lowbit::scaled_params p;
        p.fmt = m.fmt;
        p.fp6 = lowbit::fp6_packing::unpacked;
        lowbit::scaled_tensor q;
        ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {1, 32}, p, q)) << lowbit::info(m.fmt).name;
        ASSERT_EQ(q.scale_bytes()[0], static_cast<unsigned>(127 + scale_exp)) << lowbit::info(m.fmt).name;
        for (int k = 0; k < 32; ++k) {
          const unsigned got = m.params->exp_bits + m.params->man_bits == 3
                                   ? (q.codes()[k / 2] >> (4 * (k & 1))) & 0xFu
                                   : q.codes()[k];
          EXPECT_EQ(got, expected_element(*m.params, x[static_cast<std::size_t>(k)], factor))
              << lowbit::info(m.fmt).name << " x " << x[static_cast<std::size_t>(k)] << " scale 2^" << scale_exp;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The engine against a scalar loop over the per-tile definitions, for every format, tile,
// partial edge, dtype, thread count and SIMD choice.

struct engine_case {
  scaled_format fmt;
  std::int64_t rows, cols, tr, tc;
};

// Per-tile definitions written out in the test (torchao nvfp4_quantize, DeepSeek act_quant).
struct ref_tile {
  std::uint32_t scale_bits;  // the stored scale (code or float32 bits)
  float factor;              // elements: encode(x * factor) (fp8 block: x / factor)
  bool zero;
};

template <class T>
float at(const std::vector<T>& x, std::int64_t i) {
  return lowbit::to_float(x[static_cast<std::size_t>(i)]);
}

template <class T>
void check_engine(const engine_case& c, const std::vector<T>& x, lowbit::dtype dt, mx_scale_rule rule, lowbit::quant::nvfp4_global conv,
                  const lowbit::host::options& opt) {
  const std::string what = std::string(lowbit::info(c.fmt).name) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) + " tile " +
                           std::to_string(c.tr) + "x" + std::to_string(c.tc) + " rule " + rule_name(rule) + " conv " +
                           std::to_string(static_cast<int>(conv)) + " threads " + std::to_string(opt.threads) + (opt.simd ? " simd" : " scalar");
  lowbit::scaled_params p;
  p.fmt = c.fmt;
  p.gran = lowbit::granularity::per_tile(c.tr, c.tc);
  p.mx_rule = rule;
  p.nvfp4 = conv;
  p.options = opt;
  lowbit::scaled_tensor q;
  ASSERT_TRUE(lowbit::quantize(x.data(), dt, {c.rows, c.cols}, p, q)) << what;
  const lowbit::tile_grid g = q.grid();
  const spec::FormatParams& fp = c.fmt == scaled_format::mxfp8_e4m3 || c.fmt == scaled_format::fp8_e4m3_block ? spec::kE4m3fn
                                 : c.fmt == scaled_format::mxfp8_e5m2                                          ? spec::kE5m2
                                 : c.fmt == scaled_format::mxfp6_e2m3                                          ? spec::kE2m3fn
                                 : c.fmt == scaled_format::mxfp6_e3m2                                          ? spec::kE3m2fn
                                                                                                               : spec::kE2m1fn;
  // the tensor's amax (nvfp4)
  float tamax = 0.0f;
  for (std::int64_t i = 0; i < c.rows * c.cols; ++i) tamax = std::max(tamax, std::fabs(at(x, i)));
  float t = 1.0f;
  if (c.fmt == scaled_format::nvfp4 && conv != lowbit::quant::nvfp4_global::none) {
    t = conv == lowbit::quant::nvfp4_global::scale ? tamax / 2688.0f : 2688.0f / tamax;
    EXPECT_EQ(lowbit_test::bits_of(q.global_scale()), lowbit_test::bits_of(t)) << what;
  }
  std::vector<float> deq(static_cast<std::size_t>(c.rows * c.cols));
  ASSERT_TRUE(lowbit::dequantize(q, deq.data(), lowbit::dtype::f32, opt)) << what;
  for (std::int64_t ti = 0; ti < g.grid_rows(); ++ti) {
    for (std::int64_t tj = 0; tj < g.grid_cols(); ++tj) {
      float amax = 0.0f;
      for (std::int64_t r = ti * c.tr; r < std::min(c.rows, (ti + 1) * c.tr); ++r)
        for (std::int64_t col = tj * c.tc; col < std::min(c.cols, (tj + 1) * c.tc); ++col) amax = std::max(amax, std::fabs(at(x, r * c.cols + col)));
      const std::int64_t s = ti * g.grid_cols() + tj;
      ref_tile rt{};
      float deq_factor = 0.0f;
      if (c.fmt == scaled_format::fp8_e4m3_block) {
        const float sc = amax / 448.0f;
        rt = {lowbit_test::bits_of(sc), sc, sc == 0.0f};
        deq_factor = sc;
        EXPECT_EQ(lowbit_test::bits_of(q.scales_f32()[s]), rt.scale_bits) << what << " tile " << s;
      } else if (c.fmt == scaled_format::nvfp4) {
        float v = amax / 6.0f;
        if (conv == lowbit::quant::nvfp4_global::scale) v = v / t;
        if (conv == lowbit::quant::nvfp4_global::inverse) v = v * t;
        v = std::min(std::max(v, 0.015625f), 448.0f);
        const unsigned code = nearest_code(spec::kE4m3fn, v);
        const float b = static_cast<float>(spec::decode(spec::kE4m3fn, code).value);
        const float m = conv == lowbit::quant::nvfp4_global::scale ? (1.0f / t) / b : conv == lowbit::quant::nvfp4_global::inverse ? t / b : 1.0f / b;
        rt = {code, m, false};
        deq_factor = conv == lowbit::quant::nvfp4_global::scale ? b * t : conv == lowbit::quant::nvfp4_global::inverse ? b / t : b;
        EXPECT_EQ(q.scale_bytes()[s], code) << what << " tile " << s;
      } else {
        const mx_case* m = nullptr;
        for (const mx_case& mc : mx_cases())
          if (mc.fmt == c.fmt) m = &mc;
        const unsigned code = expected_scale(amax, *m, rule);
        rt = {code, std::ldexp(1.0f, 127 - static_cast<int>(code)), false};
        if (code == 254) rt.factor = f32_from_bits(0x00400000u);
        deq_factor = static_cast<float>(std::ldexp(1.0, static_cast<int>(code) - 127));
        EXPECT_EQ(q.scale_bytes()[s], code) << what << " tile " << s;
      }
      for (std::int64_t r = ti * c.tr; r < std::min(c.rows, (ti + 1) * c.tr); ++r) {
        for (std::int64_t col = tj * c.tc; col < std::min(c.cols, (tj + 1) * c.tc); ++col) {
          const std::int64_t i = r * c.cols + col;
          const float xv = at(x, i);
          unsigned want = 0;
          if (!rt.zero) {
            const float v = c.fmt == scaled_format::fp8_e4m3_block ? xv / rt.factor : xv * rt.factor;
            want = nearest_code(fp, v);
          }
          unsigned got = 0;
          const int bits = lowbit::info(c.fmt).bits;
          if (bits == 8) {
            got = q.codes()[i];
          } else if (bits == 4) {
            got = (q.codes()[i / 2] >> (4 * (i & 1))) & 0xFu;
          } else {
            const std::uint8_t* gp = q.codes() + i / 4 * 3;
            const std::uint32_t w = gp[0] | gp[1] << 8 | gp[2] << 16;
            got = (w >> (6 * (i & 3))) & 0x3Fu;
          }
          ASSERT_EQ(got, want) << what << " element " << i << " x " << xv;
          const float dv = static_cast<float>(spec::decode(fp, got).value) * deq_factor;
          ASSERT_EQ(lowbit_test::bits_of(deq[static_cast<std::size_t>(i)]), lowbit_test::bits_of(dv)) << what << " dequantized element " << i;
        }
      }
    }
  }
}

std::vector<float> random_matrix(std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-30, 20);
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& v : x) v = std::ldexp(nd(rng), (rng() % 8 == 0) ? ex(rng) : 0);
  // a zero tile's worth of zeros at the start, and a few exact ties
  for (std::int64_t i = 0; i < std::min<std::int64_t>(n, 40); ++i) x[static_cast<std::size_t>(i)] = 0.0f;
  return x;
}

TEST(BlockScaledEngine, EveryFormatTileAndPathMatchesTheScalarDefinitions) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  const std::vector<engine_case> cases = {
      {scaled_format::mxfp8_e4m3, 7, 96, 1, 32},     {scaled_format::mxfp8_e4m3, 3, 100, 1, 32},  // partial last tile
      {scaled_format::mxfp8_e5m2, 5, 64, 1, 32},     {scaled_format::mxfp6_e2m3, 4, 64, 1, 32},
      {scaled_format::mxfp6_e3m2, 3, 96, 1, 32},     {scaled_format::mxfp4, 6, 64, 1, 32},
      {scaled_format::mxfp4, 2, 70, 1, 32},          {scaled_format::nvfp4, 5, 48, 1, 16},
      {scaled_format::nvfp4, 33, 40, 16, 16},        {scaled_format::fp8_e4m3_block, 200, 300, 128, 128},
      {scaled_format::fp8_e4m3_block, 3, 300, 1, 128}, {scaled_format::mxfp8_e4m3, 1, 4096 + 64, 1, 32},
      {scaled_format::nvfp4, 24, 256 + 16, 1, 16},  // runs of 16 tiles and a partial one, 408 tiles
  };
  for (const engine_case& c : cases) {
    const std::vector<float> x = random_matrix(c.rows * c.cols, rng);
    for (int threads : {1, 2}) {
      for (bool simd : {true, false}) {
        lowbit::host::options opt;
        opt.threads = threads;
        opt.simd = simd;
        if (c.fmt == scaled_format::nvfp4) {
          for (auto conv : {lowbit::quant::nvfp4_global::scale, lowbit::quant::nvfp4_global::inverse, lowbit::quant::nvfp4_global::none})
            check_engine(c, x, lowbit::dtype::f32, mx_scale_rule::floor, conv, opt);
        } else if (c.fmt == scaled_format::fp8_e4m3_block) {
          check_engine(c, x, lowbit::dtype::f32, mx_scale_rule::floor, lowbit::quant::nvfp4_global::scale, opt);
        } else {
          for (mx_scale_rule rule : kRules) check_engine(c, x, lowbit::dtype::f32, rule, lowbit::quant::nvfp4_global::scale, opt);
        }
        // bfloat16 input: the same definitions on the widened values
        std::vector<lowbit::bf16> xb(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) xb[i] = lowbit::from_float<lowbit::bf16>(x[i]);
        check_engine(c, xb, lowbit::dtype::bf16, mx_scale_rule::rceil, lowbit::quant::nvfp4_global::scale, opt);
        // and float16 (values past its range saturate to Inf: clamped first)
        std::vector<lowbit::f16> xh(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) xh[i] = lowbit::from_float<lowbit::f16>(std::max(-60000.0f, std::min(60000.0f, x[i])));
        check_engine(c, xh, lowbit::dtype::f16, mx_scale_rule::floor, lowbit::quant::nvfp4_global::inverse, opt);
      }
    }
  }
}

// The AVX-512 128 x 128 quantizer multiplies by f32(1 / s) and divides only vectors where a lane
// is near an e4m3 rounding boundary (host/blockscaled.hpp, e4m3_divided16). Here every element
// is near one: x = f32(b * s) and the 8 float32 on either side, b every midpoint between two
// adjacent positive e4m3 values (subnormal ones included) and 2^-6, both signs, for scales s
// that are not powers of two, near float32's smallest normal (where 1 / s is near overflow) and
// subnormal (divided throughout); then the boundary values f32(b * s) alone, exact quotients,
// which the multiply misses and the corrected lanes must restore; and everything as bfloat16
// (whose tiles are divided). The codes must be those of f32(x / s) (check_engine).
TEST(BlockScaledEngine, FP8BlockMultiplyAgreesWithDivisionNearEveryBoundary) {
  std::vector<double> bounds = {std::ldexp(1.0, -6)};
  for (unsigned c = 0; c + 1 <= 0x7Eu; ++c)
    bounds.push_back((spec::decode(spec::kE4m3fn, c).value + spec::decode(spec::kE4m3fn, c + 1).value) / 2.0);
  std::vector<float> amaxes = {582.4f, 313.6f, 3.3e-3f, 1.0e30f, 7.1e-36f, 448.0f * f32_from_bits(0x00ABCDEFu)};
  // scales of 10 significant bits, so that f32(b * s) = b * s: x / s is exactly the boundary b,
  // and of those the two whose f32(1 / s) is furthest from 1 / s (x * f32(1 / s) most often
  // rounds off the boundary, which the corrected lanes must undo)
  std::vector<std::pair<double, float>> far;
  for (int k = 513; k < 1024; k += 2) {
    const float sc = std::ldexp(static_cast<float>(k), -10);
    far.push_back({std::fabs(static_cast<double>(sc) * static_cast<double>(1.0f / sc) - 1.0), 448.0f * sc});
  }
  std::sort(far.begin(), far.end());
  amaxes.push_back(far[far.size() - 1].second);
  amaxes.push_back(far[far.size() - 2].second);
  for (const float amax : amaxes) {
    const float s = amax / 448.0f;
    std::vector<float> x;
    for (const double b : bounds) {
      const std::uint32_t mid = lowbit_test::bits_of(static_cast<float>(b * static_cast<double>(s)));
      for (int k = -8; k <= 8; ++k) {
        const float v = f32_from_bits(mid + static_cast<std::uint32_t>(k));
        if (v > 0.0f && v < amax) {
          x.push_back(v);
          x.push_back(-v);
        }
      }
    }
    // and the values f32(b * s) alone, so that whole vectors hold exact quotients
    for (const double b : bounds) {
      const float v = static_cast<float>(b * static_cast<double>(s));
      if (v > 0.0f && v < amax) {
        x.push_back(v);
        x.push_back(-v);
      }
    }
    ASSERT_GT(x.size(), 3000u) << "amax " << amax;
    // rows of 128: the tile's amax first, then 127 of the values (zeros fill the last row)
    const std::int64_t rows = (static_cast<std::int64_t>(x.size()) + 126) / 127;
    std::vector<float> m(static_cast<std::size_t>(rows * 128), 0.0f);
    for (std::int64_t r = 0; r < rows; ++r) {
      m[static_cast<std::size_t>(r * 128)] = amax;
      for (std::int64_t k = 0; k < 127 && r * 127 + k < static_cast<std::int64_t>(x.size()); ++k)
        m[static_cast<std::size_t>(r * 128 + 1 + k)] = x[static_cast<std::size_t>(r * 127 + k)];
    }
    for (bool simd : {true, false}) {
      lowbit::host::options opt;
      opt.threads = 1;
      opt.simd = simd;
      SCOPED_TRACE(std::string("amax ") + std::to_string(amax) + (simd ? " simd" : " scalar"));
      check_engine({scaled_format::fp8_e4m3_block, rows, 128, 1, 128}, m, lowbit::dtype::f32, mx_scale_rule::floor,
                   lowbit::quant::nvfp4_global::scale, opt);
      // one 128 x 128 tile per 128 rows: the same elements, the amax of row 0 covering them
      check_engine({scaled_format::fp8_e4m3_block, rows, 128, 128, 128}, m, lowbit::dtype::f32, mx_scale_rule::floor,
                   lowbit::quant::nvfp4_global::scale, opt);
      // as bfloat16
      std::vector<lowbit::bf16> mb(m.size());
      for (std::size_t i = 0; i < m.size(); ++i) mb[i] = lowbit::from_float<lowbit::bf16>(m[i]);
      check_engine({scaled_format::fp8_e4m3_block, rows, 128, 1, 128}, mb, lowbit::dtype::bf16, mx_scale_rule::floor,
                   lowbit::quant::nvfp4_global::scale, opt);
    }
  }
}

TEST(BlockScaledEngine, Fp6PackingBitOrder) {
  // codes c0..c3 = 1, 2, 3, 4 (values 0.125 .. 0.5 in e2m3, with a scale of 1 fixed by 4.0)
  std::vector<float> x(32, 0.0f);
  x[0] = 0.125f;
  x[1] = 0.25f;
  x[2] = 0.375f;
  x[3] = 0.5f;
  x[31] = 4.0f;  // amax 4: floor(log2 4) - 2 = 0
  lowbit::scaled_params p;
  p.fmt = scaled_format::mxfp6_e2m3;
  lowbit::scaled_tensor q;
  ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {1, 32}, p, q));
  ASSERT_EQ(q.code_bytes(), 24);
  EXPECT_EQ(q.scale_bytes()[0], 127u);
  // 24-bit little-endian word 1 | 2 << 6 | 3 << 12 | 4 << 18 = 0x103081
  EXPECT_EQ(q.codes()[0], 0x81u);
  EXPECT_EQ(q.codes()[1], 0x30u);
  EXPECT_EQ(q.codes()[2], 0x10u);
}

TEST(BlockScaledEngine, SpecialValuesAndZeroTiles) {
  std::vector<float> x(64, 0.0f);
  x[40] = std::numeric_limits<float>::quiet_NaN();
  lowbit::scaled_params p;
  p.fmt = scaled_format::mxfp8_e4m3;
  lowbit::scaled_tensor q;
  const lowbit::status s = lowbit::quantize(x.data(), lowbit::dtype::f32, {2, 32}, p, q);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("element 40 is NaN"), std::string::npos) << s.message();
  EXPECT_EQ(q.numel(), 0) << "out must stay unchanged on error";
  p.options.allow_nonfinite = true;
  ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {2, 32}, p, q));
  EXPECT_EQ(q.scale_bytes()[0], 0u) << "zero tile: exponent clamps to -127";
  EXPECT_EQ(q.scale_bytes()[1], 0xFFu) << "NaN tile: scale NaN";
  std::vector<float> out(64);
  ASSERT_TRUE(lowbit::dequantize(q, out.data(), lowbit::dtype::f32));
  for (int i = 0; i < 32; ++i) EXPECT_EQ(lowbit_test::bits_of(out[static_cast<std::size_t>(i)]), 0u);
  for (int i = 32; i < 64; ++i) EXPECT_TRUE(std::isnan(out[static_cast<std::size_t>(i)]));
  // Inf: MX tile NaN too
  x[40] = std::numeric_limits<float>::infinity();
  ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {2, 32}, p, q));
  EXPECT_EQ(q.scale_bytes()[1], 0xFFu);
  // fp8 block: a zero tile stores 0 and +0 codes
  p.fmt = scaled_format::fp8_e4m3_block;
  std::vector<float> z(256, 0.0f);
  z[200] = -1.0f;
  ASSERT_TRUE(lowbit::quantize(z.data(), lowbit::dtype::f32, {2, 128}, p, q));
  EXPECT_EQ(q.grid().grid_rows(), 1);
  EXPECT_EQ(q.scales_f32()[0], 1.0f / 448.0f);
  p.gran = lowbit::granularity::per_block(128);  // 1 x 128 activation groups
  ASSERT_TRUE(lowbit::quantize(z.data(), lowbit::dtype::f32, {2, 128}, p, q));
  EXPECT_EQ(q.scales_f32()[0], 0.0f);
  EXPECT_EQ(q.codes()[0], 0u);
  EXPECT_EQ(q.codes()[200], 0xFEu) << "-1 / (1 / 448) = -448, e4m3 S.1111.110";
  // nvfp4 all-zero tensor: global 1, tile scales 2^-6 (0x08), codes 0
  p = lowbit::scaled_params{};
  p.fmt = scaled_format::nvfp4;
  ASSERT_TRUE(lowbit::quantize(z.data(), lowbit::dtype::f32, {1, 32}, p, q));
  EXPECT_EQ(q.global_scale(), 1.0f);
  EXPECT_EQ(q.scale_bytes()[0], 0x08u);
  EXPECT_EQ(q.codes()[0], 0u);
  // nvfp4 tiny tensors: below 2688 * 2^-120 a zero tile's multiplier would overflow (0 * Inf);
  // such a tensor is all zero tiles; just above, zero tiles still encode as +0
  for (auto conv : {lowbit::quant::nvfp4_global::scale, lowbit::quant::nvfp4_global::inverse}) {
    p.nvfp4 = conv;
    const float edge = 2688.0f * std::ldexp(1.0f, -120);
    for (float tiny : {std::nextafter(edge, 0.0f), edge, 1e-30f}) {
      std::vector<float> w(32, 0.0f);
      w[20] = tiny;
      if (tiny < edge) w[3] = -tiny / 1024;  // a negative element of a zero tensor still gets the code of +0
      ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {1, 32}, p, q));
      const bool zero = tiny < edge;
      EXPECT_EQ(q.global_scale() == 1.0f, zero) << tiny;
      for (int k = 0; k < 16; ++k) {
        if (k != 10) {
          EXPECT_EQ(q.codes()[k], 0u) << "tiny " << tiny << " byte " << k;
        }
      }
      EXPECT_EQ(q.scale_bytes()[0], 0x08u);
      std::vector<float> back(32);
      ASSERT_TRUE(lowbit::dequantize(q, back.data(), lowbit::dtype::f32));
      if (zero) {
        EXPECT_EQ(back[20], 0.0f);
      } else {
        EXPECT_EQ(q.codes()[10], 0x07u) << "the amax element encodes as 6";
        EXPECT_NEAR(back[20], tiny, tiny * 1e-6f) << "6 * b * t is the tile's amax to float32 rounding";
      }
    }
  }
}

TEST(BlockScaledEngine, NonFiniteInputGivesTheSameBytesOnEveryPath) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  std::vector<float> x = random_matrix(64 * 128, rng);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()};
  for (int k = 0; k < 12; ++k) x[rng() % x.size()] = specials[k % 3];
  for (int f = 0; f < lowbit::scaled_format_count; ++f) {
    for (auto conv : {lowbit::quant::nvfp4_global::scale, lowbit::quant::nvfp4_global::none}) {
      lowbit::scaled_params p;
      p.fmt = static_cast<scaled_format>(f);
      p.nvfp4 = conv;
      p.gran = p.fmt == scaled_format::fp8_e4m3_block ? lowbit::granularity::per_block(128) : lowbit::granularity::per_tile(0, 0);
      p.options.allow_nonfinite = true;
      lowbit::scaled_tensor a, b;
      ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {64, 128}, p, a));
      p.options.simd = false;
      p.options.threads = 1;
      ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {64, 128}, p, b));
      const std::string what = lowbit::info(p.fmt).name;
      ASSERT_EQ(std::memcmp(a.codes(), b.codes(), static_cast<std::size_t>(a.code_bytes())), 0) << what;
      ASSERT_EQ(std::memcmp(a.scale_bytes(), b.scale_bytes(), static_cast<std::size_t>(a.grid().tiles() * lowbit::bytes_per_scale(p.fmt))), 0) << what;
      if (p.fmt == scaled_format::nvfp4 && conv == lowbit::quant::nvfp4_global::scale) {
        EXPECT_TRUE(std::isnan(a.global_scale()));
      }
    }
  }
}

// Every dequantize path against the portable loop: the run kernels, the per-scale-code byte
// tables of 4-bit codes into 16-bit outputs (from 64K elements), and the streamed output at a
// 64-byte-aligned address and at one that is not (decoded through an aligned buffer, then copied
// out with non-temporal stores), for every format and output dtype.
TEST(BlockScaledEngine, DequantizeIsTheSameOnEveryPathAndStoreMode) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  struct aligned_free {
    void operator()(void* p) const { std::free(p); }
  };
  for (const std::int64_t rows : {130, 260}) {
    const std::int64_t cols = 320;
    const std::vector<float> x = random_matrix(rows * cols, rng);
    const std::size_t bytes = static_cast<std::size_t>(rows * cols * 4 + 128) / 64 * 64;
    std::unique_ptr<unsigned char, aligned_free> ref(static_cast<unsigned char*>(std::aligned_alloc(64, bytes))),
        got(static_cast<unsigned char*>(std::aligned_alloc(64, bytes)));
    for (int f = 0; f < lowbit::scaled_format_count; ++f) {
      lowbit::scaled_params p;
      p.fmt = static_cast<scaled_format>(f);
      lowbit::scaled_tensor q;
      ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {rows, cols}, p, q));
      for (lowbit::dtype dt : {lowbit::dtype::f32, lowbit::dtype::bf16, lowbit::dtype::f16}) {
        lowbit::host::options portable;
        portable.simd = false;
        portable.threads = 1;
        ASSERT_TRUE(lowbit::dequantize(q, ref.get(), dt, portable));
        const std::size_t n = static_cast<std::size_t>(rows * cols) * (dt == lowbit::dtype::f32 ? 4 : 2);
        for (const std::size_t offset : {std::size_t{0}, std::size_t{4}, std::size_t{34}}) {  // bytes past a 64-byte boundary
          for (auto mode : {lowbit::host::store_mode::streaming, lowbit::host::store_mode::cached, lowbit::host::store_mode::automatic}) {
            lowbit::host::options o;
            o.stores = mode;
            std::memset(got.get(), 0xA5, bytes);
            ASSERT_TRUE(lowbit::dequantize(q, got.get() + offset, dt, o));
            const std::string what = std::string(lowbit::info(p.fmt).name) + " " + std::to_string(rows) + "x" + std::to_string(cols) + " dtype " +
                                     std::to_string(static_cast<int>(dt)) + " mode " + std::to_string(static_cast<int>(mode)) + " offset " +
                                     std::to_string(offset);
            EXPECT_EQ(std::memcmp(ref.get(), got.get() + offset, n), 0) << what;
            // nothing written outside the output
            for (std::size_t i = 0; i < offset; ++i) ASSERT_EQ(got.get()[i], 0xA5) << what << " byte " << i << " before the output";
            for (std::size_t i = offset + n; i < bytes; ++i) ASSERT_EQ(got.get()[i], 0xA5) << what << " byte " << i - offset - n << " past the output";
          }
        }
      }
    }
  }
}

// MXFP6, packed and one code a byte: the AVX-512 encoder and decoders (and from 1M elements
// the decoders' tables of 16-bit outputs) against the portable loop, bytes and values.
TEST(BlockScaledEngine, Fp6PathsMatchThePortableLoop) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()) ^ 0x6666u);
  for (const std::int64_t rows : {7, 3300}) {
    const std::int64_t cols = 320;
    const std::vector<float> x = random_matrix(rows * cols, rng);
    std::vector<lowbit::bf16> xb(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) xb[i] = lowbit::from_float<lowbit::bf16>(x[i]);
    for (scaled_format f : {scaled_format::mxfp6_e2m3, scaled_format::mxfp6_e3m2}) {
      for (lowbit::fp6_packing packing : {lowbit::fp6_packing::packed, lowbit::fp6_packing::unpacked}) {
        for (lowbit::dtype in : {lowbit::dtype::f32, lowbit::dtype::bf16}) {
          const void* src = in == lowbit::dtype::f32 ? static_cast<const void*>(x.data()) : static_cast<const void*>(xb.data());
          const std::string what = std::string(lowbit::info(f).name) + (packing == lowbit::fp6_packing::packed ? " packed " : " unpacked ") +
                                   std::to_string(rows) + "x" + std::to_string(cols) + " input " + lowbit::dtype_name(in);
          lowbit::scaled_params p;
          p.fmt = f;
          p.fp6 = packing;
          lowbit::scaled_tensor fast, slow;
          ASSERT_TRUE(lowbit::quantize(src, in, {rows, cols}, p, fast)) << what;
          p.options.simd = false;
          ASSERT_TRUE(lowbit::quantize(src, in, {rows, cols}, p, slow)) << what;
          ASSERT_EQ(std::memcmp(fast.codes(), slow.codes(), static_cast<std::size_t>(fast.code_bytes())), 0) << what << ": codes";
          ASSERT_EQ(std::memcmp(fast.scale_bytes(), slow.scale_bytes(), static_cast<std::size_t>(fast.grid().tiles())), 0) << what << ": scales";
          for (lowbit::dtype out : {lowbit::dtype::f32, lowbit::dtype::bf16, lowbit::dtype::f16}) {
            const std::size_t bytes = x.size() * static_cast<std::size_t>(lowbit::dtype_size(out));
            std::vector<unsigned char> a(bytes + 4), b(bytes);
            lowbit::host::options portable;
            portable.simd = false;
            ASSERT_TRUE(lowbit::dequantize(fast, b.data(), out, portable)) << what;
            for (const std::size_t offset : {std::size_t{0}, std::size_t{2}}) {
              lowbit::host::options o;
              o.stores = lowbit::host::store_mode::streaming;
              ASSERT_TRUE(lowbit::dequantize(fast, a.data() + offset, out, o)) << what;
              EXPECT_EQ(std::memcmp(a.data() + offset, b.data(), bytes), 0) << what << " into " << lowbit::dtype_name(out) << " at offset " << offset;
            }
          }
        }
      }
    }
  }
}

// The swizzled scale layout (scaled_view::layout): quantize gives the codes of the row-major
// layout and its scales put through quant::swizzle_scales (tested against cuBLAS's layout in
// host_scale_layout_test), padding 0; dequantize and the matmul read it back to the same values.
TEST(BlockScaledEngine, SwizzledScaleLayoutIsTheRowMajorScalesSwizzled) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()) ^ 0x5A5Au);
  struct sw_case {
    scaled_format fmt;
    std::int64_t rows, cols, tc;
  };
  const sw_case cases[] = {{scaled_format::mxfp4, 130, 320, 32}, {scaled_format::nvfp4, 3, 48, 16}, {scaled_format::mxfp8_e4m3, 129, 96, 32},
                           {scaled_format::mxfp6_e3m2, 5, 200, 32}, {scaled_format::mxfp8_e5m2, 1, 4096 + 64, 32}};
  for (const sw_case& c : cases) {
    const std::vector<float> x = random_matrix(c.rows * c.cols, rng);
    for (bool simd : {true, false}) {
      lowbit::host::options opt;
      opt.simd = simd;
      const std::string what = std::string(lowbit::info(c.fmt).name) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) + (simd ? " simd" : " scalar");
      lowbit::scaled_view v;
      v.fmt = c.fmt;
      v.rows = c.rows;
      v.cols = c.cols;
      v.tile = {1, c.tc};
      v.mx_rule = mx_scale_rule::rceil;
      const std::int64_t gc = lowbit::quant::scale_columns(c.cols, c.tc);
      std::vector<std::uint8_t> codes_a(static_cast<std::size_t>(lowbit::scaled_code_bytes(c.fmt, c.rows * c.cols)));
      std::vector<std::uint8_t> codes_b(codes_a.size()), plain(static_cast<std::size_t>(c.rows * gc));
      std::vector<std::uint8_t> swz(static_cast<std::size_t>(lowbit::quant::swizzled_scale_bytes(c.rows, gc)), 0xEE);
      v.codes = codes_a.data();
      v.scales = plain.data();
      ASSERT_TRUE(lowbit::host::quantize_scaled_into(x.data(), lowbit::dtype::f32, v, opt)) << what;
      lowbit::scaled_view w = v;
      w.layout = lowbit::scale_layout::swizzled;
      w.codes = codes_b.data();
      w.scales = swz.data();
      EXPECT_EQ(w.scale_count(), static_cast<std::int64_t>(swz.size()));
      ASSERT_TRUE(lowbit::host::quantize_scaled_into(x.data(), lowbit::dtype::f32, w, opt)) << what;
      EXPECT_EQ(codes_a, codes_b) << what;
      EXPECT_EQ(lowbit_test::bits_of(v.global_scale), lowbit_test::bits_of(w.global_scale)) << what;
      std::vector<std::uint8_t> want(swz.size(), 0xCC);
      ASSERT_TRUE(lowbit::quant::swizzle_scales(plain.data(), c.rows, gc, want.data()));
      ASSERT_EQ(swz, want) << what;
      std::vector<float> da(static_cast<std::size_t>(c.rows * c.cols)), db(da.size());
      ASSERT_TRUE(lowbit::host::dequantize_scaled(v, da.data(), lowbit::dtype::f32, opt)) << what;
      ASSERT_TRUE(lowbit::host::dequantize_scaled(w, db.data(), lowbit::dtype::f32, opt)) << what;
      EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size() * 4), 0) << what;
    }
  }
  // only one-byte scales of one-row tiles have the layout
  lowbit::scaled_view bad;
  bad.fmt = scaled_format::fp8_e4m3_block;
  bad.tile = {128, 128};
  bad.layout = lowbit::scale_layout::swizzled;
  const lowbit::status s = lowbit::validate_layout(bad, "quantize");
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("swizzled"), std::string::npos) << s.message();
  bad.fmt = scaled_format::nvfp4;
  bad.tile = {16, 16};
  EXPECT_FALSE(lowbit::validate_layout(bad, "quantize"));
}

#if LOWBIT_HAVE_AVX512_KERNELS
// avx512::encode_run's loop over steps of 32 elements, two NVFP4 blocks of 16 a step (each half
// with its own multiplier), for float32, float16 and bfloat16 input (bfloat16 takes the even and
// odd elements apart, so its lanes 0-7 and 8-15 belong to different blocks): every element
// against the nearest-value search, with zero blocks (multiplier 0 or NaN) alone, paired with a
// live block on either side, in pairs, and as the last block of an odd count.
template <lowbit::format F, class T>
void check_encode_run(std::int64_t bs, std::int64_t nblocks, const std::vector<int>& dead, std::mt19937& rng) {
  const spec::FormatParams& fp = F == lowbit::format::e2m1fn ? spec::kE2m1fn : spec::kE4m3fn;
  const float top = F == lowbit::format::e2m1fn ? 6.0f : 448.0f;
  const std::int64_t n = nblocks * bs;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<T> x(static_cast<std::size_t>(n));
  std::vector<float> inv(static_cast<std::size_t>(nblocks));
  for (std::int64_t b = 0; b < nblocks; ++b) {
    float amax = 0.0f;
    for (std::int64_t i = b * bs; i < (b + 1) * bs; ++i) {
      x[static_cast<std::size_t>(i)] = lowbit::from_float<T>(std::ldexp(nd(rng), static_cast<int>(b % 9) - 4));
      amax = std::max(amax, std::fabs(lowbit::to_float(x[static_cast<std::size_t>(i)])));
    }
    inv[static_cast<std::size_t>(b)] = top / amax;
  }
  for (const int d : dead) inv[static_cast<std::size_t>(d)] = d % 2 ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
  const bool four = lowbit::info(F).bits == 4;
  std::vector<std::uint8_t> out(static_cast<std::size_t>(four ? n / 2 : n), 0xA5);
  lowbit::host::avx512::encode_run<F>(x.data(), nblocks, bs, inv.data(), out.data());
  const std::string what = std::string(lowbit::info(F).name) + " block " + std::to_string(bs) + " x " + std::to_string(nblocks) + " " +
                           (sizeof(T) == 4 ? "f32" : std::is_same<T, lowbit::bf16>::value ? "bf16" : "f16");
  for (std::int64_t i = 0; i < n; ++i) {
    const float m = inv[static_cast<std::size_t>(i / bs)];
    const unsigned want = m > 0.0f ? nearest_code(fp, static_cast<double>(lowbit::to_float(x[static_cast<std::size_t>(i)]) * m)) : 0u;
    const unsigned got = four ? (out[static_cast<std::size_t>(i / 2)] >> (4 * (i & 1))) & 0xFu : out[static_cast<std::size_t>(i)];
    ASSERT_EQ(got, want) << what << " element " << i << " (block " << i / bs << ", multiplier " << m << ")";
  }
}

TEST(BlockScaledEngine, EncodeRunPairsBlocksOf16) {
  if (!lowbit::host::avx512::available()) GTEST_SKIP() << "this CPU has no AVX-512: the run kernels are not used";
  LOWBIT_SEED_TRACE();
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  // blocks 1 and 2: a zero block after / before a live one in a step; 10, 11: a zero step;
  // 20: NaN multiplier; the last of 37 (odd: the single-block tail) zero, or live
  const std::vector<int> dead_tail = {1, 2, 10, 11, 20, 36}, live_tail = {1, 2, 10, 11, 21};
  for (const auto& dead : {dead_tail, live_tail}) {
    for (std::int64_t bs : {16, 32}) {
      check_encode_run<lowbit::format::e2m1fn, float>(bs, 37, dead, rng);
      check_encode_run<lowbit::format::e2m1fn, lowbit::bf16>(bs, 37, dead, rng);
      check_encode_run<lowbit::format::e2m1fn, lowbit::f16>(bs, 37, dead, rng);
      check_encode_run<lowbit::format::e4m3fn, float>(bs, 37, dead, rng);
      check_encode_run<lowbit::format::e4m3fn, lowbit::bf16>(bs, 37, dead, rng);
      check_encode_run<lowbit::format::e4m3fn, lowbit::f16>(bs, 37, dead, rng);
    }
  }
}
#endif

TEST(BlockScaledEngine, BadArgumentsAreNamed) {
  std::vector<float> x(64, 1.0f);
  lowbit::scaled_tensor q;
  lowbit::scaled_params p;
  p.fmt = scaled_format::mxfp4;
  lowbit::status s = lowbit::quantize(x.data(), lowbit::dtype::f32, {1, 63}, p, q);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("cols (63)"), std::string::npos) << s.message();
  p.fmt = scaled_format::mxfp6_e2m3;
  p.gran = lowbit::granularity::per_tile(1, 30);
  s = lowbit::quantize(x.data(), lowbit::dtype::f32, {2, 32}, p, q);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("tile's columns (30)"), std::string::npos) << s.message();
  p.gran = lowbit::granularity::per_tile(-1, 4);
  s = lowbit::quantize(x.data(), lowbit::dtype::f32, {2, 32}, p, q);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("tile -1 x 4"), std::string::npos) << s.message();
  // per_tile on a blockwise format is refused by name
  lowbit::quantize_params bp;
  bp.gran = lowbit::granularity::per_tile(16, 16);
  lowbit::quant_tensor bq;
  s = lowbit::quantize(x.data(), lowbit::dtype::f32, {4, 16}, bp, bq);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("per-tile"), std::string::npos) << s.message();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// torchao's own reference code (tests/data/torchao_blockscaled, generate.py and the versions in
// MANIFEST): codes, scales and the per-tensor float32 must be equal byte for byte.

#ifdef LOWBIT_TORCHAO_BLOCKSCALED_DIR
#  include <fstream>
#  include <iterator>
#  include <sstream>

namespace {

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

TEST(BlockScaledTorchao, VectorsAreBitExact) {
  const std::string dir = LOWBIT_TORCHAO_BLOCKSCALED_DIR;
  std::ifstream manifest(dir + "/MANIFEST");
  ASSERT_TRUE(manifest) << "missing " << dir << "/MANIFEST";
  std::string line;
  int cases = 0;
  while (std::getline(manifest, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string name, fmt, rule, conv, input, codes_file, scales_file, global_hex;
    std::int64_t rows = 0, cols = 0;
    in >> name >> fmt >> rule >> conv >> rows >> cols >> input >> codes_file >> scales_file >> global_hex;
    ASSERT_TRUE(in) << "bad MANIFEST line: " << line;
    lowbit::scaled_params p;
    bool found = false;
    for (int i = 0; i < lowbit::scaled_format_count; ++i)
      if (fmt == lowbit::info(static_cast<scaled_format>(i)).name) p.fmt = static_cast<scaled_format>(i), found = true;
    ASSERT_TRUE(found) << fmt;
    p.mx_rule = rule == "rceil" ? mx_scale_rule::rceil : rule == "ceil" ? mx_scale_rule::ceil : rule == "even" ? mx_scale_rule::even : mx_scale_rule::floor;
    p.nvfp4 = conv == "scale" ? lowbit::quant::nvfp4_global::scale : lowbit::quant::nvfp4_global::none;
    p.fp6 = lowbit::fp6_packing::unpacked;  // torchao keeps one FP6 code per byte
    const std::vector<std::uint8_t> x = read_bytes(dir + "/" + input);
    ASSERT_EQ(static_cast<std::int64_t>(x.size()), rows * cols * 4) << name;
    lowbit::scaled_tensor q;
    ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {rows, cols}, p, q)) << name;
    const std::vector<std::uint8_t> codes = read_bytes(dir + "/" + codes_file), scales = read_bytes(dir + "/" + scales_file);
    ASSERT_EQ(static_cast<std::int64_t>(codes.size()), q.code_bytes()) << name;
    ASSERT_EQ(static_cast<std::int64_t>(scales.size()), q.grid().tiles()) << name;
    for (std::size_t i = 0; i < codes.size(); ++i)
      EXPECT_EQ(q.codes()[i], codes[i]) << name << " code byte " << i;
    for (std::size_t i = 0; i < scales.size(); ++i)
      EXPECT_EQ(q.scale_bytes()[i], scales[i]) << name << " scale " << i;
    EXPECT_EQ(lowbit_test::hex(lowbit_test::bits_of(q.global_scale())), "0x" + global_hex) << name;
    ++cases;
  }
  EXPECT_EQ(cases, 22);
}

}  // namespace
#endif
