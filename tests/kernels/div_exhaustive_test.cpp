// SPDX-License-Identifier: Apache-2.0
// The kernels' call-free division (kernels/lowbit/cuda/detail/div.cuh, used by the one-pass
// quantizer's block encoders) against IEEE float32 division on the host, which rounds to nearest
// even and keeps subnormals: the reciprocal over every mantissa, and a / b for every constant the
// encoders divide by or into, over every mantissa at the exponents where results are subnormal,
// overflow or normal, plus every exponent for a seeded sample of mantissas; the NVFP4 tile encoder
// of the block-scaled quantize kernels (detail/nvfp4_tile.cuh) against quant::encode_tile; and the
// integer division by a launch constant (udiv31) against `/`. CTest label: exhaustive.
#include <lowbit/cuda/detail/div.cuh>
#include <lowbit/cuda/detail/nvfp4_tile.cuh>
#include <lowbit/quant/blockscaled.hpp>
#include <lowbit/quant/blockwise.hpp>

#include <atomic>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using lowbit::cuda::detail::div_rn_positive;
using lowbit_test::hex;

float from_bits(std::uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
std::uint32_t to_bits(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Runs fn(bits) for bits in [lo, hi) on every core; returns the number of mismatches and the first.
template <class Fn>
std::uint64_t sweep(std::uint32_t lo, std::uint32_t hi, Fn fn, std::uint32_t& first) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint32_t> first_bad{~0u};
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::uint64_t n = hi - lo;
      for (std::uint64_t i = n * t / threads; i < n * (t + 1) / threads; ++i) {
        const auto b = static_cast<std::uint32_t>(lo + i);
        if (!fn(b)) {
          if (bad++ == 0) first_bad = b;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  first = first_bad;
  return bad;
}

TEST(CallFreeDivision, ReciprocalOfEveryMantissa) {
  std::uint32_t first = 0;
  const std::uint64_t bad = sweep(0x3F800000u, 0x40000000u, [](std::uint32_t b) {
    const float m = from_bits(b);
    return to_bits(lowbit::cuda::detail::reciprocal_1_2(m)) == to_bits(1.0f / m);
  }, first);
  EXPECT_EQ(bad, 0u) << "first m = " << hex(first);
}

// The minifloat scale's division by the format's largest value: every positive float32 (subnormals,
// +Inf and 0 included), for each of the three constants.
TEST(CallFreeDivision, ByConstantEveryFloat) {
  for (float c : {448.0f, 57344.0f, 6.0f}) {
    std::uint32_t first = 0;
    const std::uint64_t bad = sweep(0u, 0x7F800001u, [c](std::uint32_t b) {
      const float x = from_bits(b);
      return to_bits(lowbit::cuda::detail::div_rn_by_constant(x, c)) == to_bits(x / c);
    }, first);
    EXPECT_EQ(bad, 0u) << "x / " << c << ", first x = " << hex(first);
  }
}

// The constants the encoders divide: code_max / absmax, absmax / scale_divisor, range / 255, 1 / s.
const float kConstants[] = {1.0f, 6.0f, 127.0f, 255.0f, 448.0f, 57344.0f};

// Every mantissa at exponent fields 0 (subnormals), 1-3, 124-130 and 251-254, both directions.
TEST(CallFreeDivision, EveryMantissaAtTheEdgeExponents) {
  for (float c : kConstants) {
    for (std::uint32_t field : {0u, 1u, 2u, 3u, 124u, 125u, 126u, 127u, 128u, 129u, 130u, 251u, 252u, 253u, 254u}) {
      std::uint32_t first = 0;
      const std::uint32_t lo = field << 23, hi = (field + 1) << 23;
      std::uint64_t bad = sweep(lo, hi, [c](std::uint32_t b) {
        const float x = from_bits(b);
        if (x == 0.0f) return true;
        return to_bits(div_rn_positive(c, x)) == to_bits(c / x);
      }, first);
      EXPECT_EQ(bad, 0u) << c << " / x, first x = " << hex(first);
      bad = sweep(lo, hi, [c](std::uint32_t b) {
        const float x = from_bits(b);
        return to_bits(div_rn_positive(x, c)) == to_bits(x / c);
      }, first);
      EXPECT_EQ(bad, 0u) << "x / " << c << ", first x = " << hex(first);
    }
  }
}

// Every exponent with a seeded sample of mantissas, for pairs of arbitrary positive operands too
// (the encoders divide 1 by a computed scale), and the special operands.
TEST(CallFreeDivision, EveryExponentSampledAndSpecialOperands) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  std::uniform_int_distribution<std::uint32_t> mant(0, 0x7FFFFF), any(1, 0x7F7FFFFF);
  for (float c : kConstants) {
    for (std::uint32_t field = 0; field < 255; ++field) {
      for (int i = 0; i < 2048; ++i) {
        const float x = from_bits(field << 23 | mant(rng));
        if (x == 0.0f) continue;
        ASSERT_EQ(to_bits(div_rn_positive(c, x)), to_bits(c / x)) << c << " / " << hex(to_bits(x));
        ASSERT_EQ(to_bits(div_rn_positive(x, c)), to_bits(x / c)) << hex(to_bits(x)) << " / " << c;
      }
    }
  }
  for (int i = 0; i < 4000000; ++i) {
    const float a = from_bits(any(rng)), b = from_bits(any(rng));
    ASSERT_EQ(to_bits(div_rn_positive(a, b)), to_bits(a / b)) << hex(to_bits(a)) << " / " << hex(to_bits(b));
  }
  const float inf = from_bits(0x7F800000u);
  EXPECT_EQ(to_bits(div_rn_positive(0.0f, 3.0f)), 0u);
  EXPECT_EQ(to_bits(div_rn_positive(5.0f, inf)), 0u);
  EXPECT_EQ(to_bits(div_rn_positive(inf, 448.0f)), 0x7F800000u);
  EXPECT_EQ(to_bits(div_rn_positive(1.0f, 0.0f)), 0x7F800000u);
  EXPECT_EQ(to_bits(div_rn_positive(1.0f, from_bits(1))), 0x7F800000u);  // overflow
}

// make_encoder with the call-free division equals make_encoder with `/` for every format.
TEST(CallFreeDivision, EncodersMatch) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() + 1);
  std::uniform_int_distribution<std::uint32_t> any(1, 0x7F800000);
  for (int i = 0; i < 200000; ++i) {
    lowbit::quant::block_stats st;
    st.absmax = from_bits(any(rng));
    st.hi = from_bits(any(rng));
    st.lo = -from_bits(any(rng));
    lowbit::visit_format(static_cast<lowbit::format>(i % lowbit::format_count), [&](auto f) {
      constexpr lowbit::format F = decltype(f)::value;
      for (auto rule : {lowbit::quant::int8_multiplier::quotient, lowbit::quant::int8_multiplier::reciprocal_times_127}) {
        const auto want = lowbit::quant::make_encoder<F>(st, rule);
        const auto got = lowbit::quant::make_encoder<F>(st, rule, lowbit::cuda::detail::call_free_div{});
        ASSERT_EQ(to_bits(got.scale), to_bits(want.scale)) << lowbit::info(F).name;
        ASSERT_EQ(to_bits(got.inv), to_bits(want.inv)) << lowbit::info(F).name;
        ASSERT_EQ(got.zero_point, want.zero_point);
        ASSERT_EQ(got.zero, want.zero);
      }
    });
  }
}


// The NVFP4 tile encoder's amax / 6: every positive float32 a (and +Inf, as FLT_MAX) gives
// a / 6 where that is a normal float, and at most 2^-126 where it is not.
TEST(Nvfp4KernelTileEncoder, AmaxOverSixEveryFloat) {
  std::uint32_t first = 0;
  const std::uint64_t bad = sweep(0u, 0x7F800000u, [](std::uint32_t b) {
    const float a = from_bits(b), got = lowbit::cuda::detail::div_markstein(a, 6.0f, 1.0f / 6.0f), want = a / 6.0f;
    return want >= 1.17549435e-38f ? to_bits(got) == to_bits(want) : got <= 1.17549435e-38f;
  }, first);
  EXPECT_EQ(bad, 0u) << "first a = " << hex(first);
}

// The NVFP4 tile multiplier's division: every numerator mantissa over each of the eight e4m3
// scale mantissas 1 + m / 8, with the reciprocals e4m3_mantissa_reciprocal holds.
TEST(Nvfp4KernelTileEncoder, MultiplierMantissasEveryNumerator) {
  using lowbit::cuda::detail::div_markstein;
  using lowbit::cuda::detail::e4m3_mantissa_reciprocal;
  for (std::uint32_t m = 0; m < 8; ++m) {
    const float mb = from_bits(0x3F800000u | (m << 20));
    ASSERT_EQ(to_bits(e4m3_mantissa_reciprocal(m)), to_bits(1.0f / mb)) << "m = " << m;
    std::uint32_t first = 0;
    const std::uint64_t bad = sweep(0x3F800000u, 0x40000000u, [&](std::uint32_t b) {
      const float mc = from_bits(b);
      return to_bits(div_markstein(mc, mb, e4m3_mantissa_reciprocal(m))) == to_bits(mc / mb);
    }, first);
    EXPECT_EQ(bad, 0u) << "mc / " << mb << ", first mc = " << hex(first);
  }
}

// nvfp4_kernel_tile_encoder against quant::encode_tile<nvfp4> (IEEE division and the e4m3 codec
// on the host), for each convention and per-tensor float32s across their whole range (as the
// quantizer forms them from a tensor amax: the smallest that is not a zero tensor, 1, FLT_MAX,
// a seeded sample; NaN; the zero tensor), at: every amax exponent with a seeded sample of
// mantissas; 64 ulps either side of the amax where the scale crosses each e4m3 rounding boundary
// or a clamp end; and 0, the smallest subnormal, +Inf and NaN.
TEST(Nvfp4KernelTileEncoder, MatchesEncodeTile) {
  using lowbit::quant::nvfp4_global;
  using lowbit::scaled_format;
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() + 3);
  std::uniform_int_distribution<std::uint32_t> mant(0, 0x7FFFFF), finite(1, 0x7F7FFFFF);
  // the e4m3 values in [2^-6, 448] and the points between them where the code changes
  std::vector<double> edges;
  for (std::uint32_t c = 0x08; c <= 0x7E; ++c) {
    const double v = lowbit::codecs::e4m3fn::decode(static_cast<std::uint8_t>(c));
    edges.push_back(v);
    if (c < 0x7E) edges.push_back((v + lowbit::codecs::e4m3fn::decode(static_cast<std::uint8_t>(c + 1))) / 2);
  }
  for (nvfp4_global conv : {nvfp4_global::scale, nvfp4_global::inverse, nvfp4_global::none}) {
    std::vector<float> tensor_amax = {2688.0f * 7.52316385e-37f, 1.0f, 2688.0f, from_bits(0x7F7FFFFFu), from_bits(0x7FC00000u), 0.0f};
    for (int i = 0; i < 24; ++i) tensor_amax.push_back(from_bits(finite(rng)));
    for (float ta : tensor_amax) {
      if (lowbit::quant::nvfp4_tensor_is_zero(ta, conv) && ta != 0.0f && !(ta != ta)) continue;  // sampled too small: a zero tensor like 0
      const float global = lowbit::quant::nvfp4_stored_global(ta, conv);
      const bool zero = lowbit::quant::nvfp4_tensor_zero(ta, conv);
      const lowbit::cuda::detail::nvfp4_kernel_tile_encoder enc(global, conv, zero);
      std::uint64_t checked = 0;
      const auto check = [&](float amax) {
        const auto want = lowbit::quant::encode_tile<scaled_format::nvfp4>(amax, lowbit::quant::mx_scale_rule::floor, global, conv, zero);
        const auto got = enc(amax);
        ++checked;
        ASSERT_TRUE(got.scale_code == want.scale_code && to_bits(got.factor) == to_bits(want.factor) && got.zero == want.zero)
            << "convention " << static_cast<int>(conv) << ", global " << hex(to_bits(global)) << ", amax " << hex(to_bits(amax)) << ": code "
            << int(got.scale_code) << " / " << int(want.scale_code) << ", factor " << hex(to_bits(got.factor)) << " / " << hex(to_bits(want.factor));
      };
      for (std::uint32_t field = 0; field < 255; ++field) {
        check(from_bits(field << 23));
        check(from_bits(field << 23 | 0x7FFFFFu));
        for (int i = 0; i < 2048; ++i) check(from_bits(field << 23 | mant(rng)));
        if (::testing::Test::HasFatalFailure()) return;
      }
      // amax / 6 / t, amax / 6 * g or amax / 6 at an edge e: amax = 6 e t, 6 e / g or 6 e
      const double per = conv == nvfp4_global::scale ? 6.0 * global : (conv == nvfp4_global::inverse ? 6.0 / global : 6.0);
      for (double e : edges) {
        const double a = e * (zero || global != global ? 6.0 : per);
        if (!(a < 3.4e38)) continue;
        const std::uint32_t b = to_bits(static_cast<float>(a));
        for (std::uint32_t k = b < 64 ? 0 : b - 64; k <= b + 64 && k < 0x7F800000u; ++k) check(from_bits(k));
        if (::testing::Test::HasFatalFailure()) return;
      }
      for (std::uint32_t b : {0u, 1u, 0x7F800000u, 0x7FC00000u}) check(from_bits(b));
      EXPECT_GT(checked, 100000u);
    }
  }
}


// udiv31 (the block-scaled dequantizer's index arithmetic) against `/`: every n < 2^31 for
// divisors of each kind (1, a small odd one, a row's unit count, the largest),
// and for every divisor up to 2^16 the n where a quotient changes (k d - 1, k d) at the top of the
// range, the bottom, and a seeded sample in between; then seeded divisors up to 2^31 - 1.
TEST(UnsignedDivision, Udiv31ExactBelow2To31) {
  using lowbit::cuda::detail::make_udiv31;
  for (std::uint32_t d : {1u, 3u, 96u, 0x7FFFFFFFu}) {
    const auto q = make_udiv31(d);
    std::uint32_t first = 0;
    const std::uint64_t bad = sweep(0u, 0x80000000u, [&](std::uint32_t n) { return q.div(n) == n / d; }, first);
    EXPECT_EQ(bad, 0u) << "d = " << d << ", first n = " << first;
  }
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() + 2);
  std::uniform_int_distribution<std::uint32_t> any_n(0, 0x7FFFFFFFu), any_d(1, 0x7FFFFFFFu);
  const auto check = [&](std::uint32_t d, std::uint32_t n) {
    ASSERT_EQ(make_udiv31(d).div(n), n / d) << n << " / " << d;
  };
  for (std::uint32_t d = 1; d <= 65536; ++d) {
    const std::uint32_t top = 0x7FFFFFFFu / d * d;  // the largest multiple of d below 2^31
    for (std::uint32_t n : {0u, 1u, d - 1, d, d + 1, top - 1, top, 0x7FFFFFFFu}) check(d, n);
    for (int i = 0; i < 64; ++i) {
      const std::uint32_t k = any_n(rng) / d * d;
      check(d, k);
      if (k > 0) check(d, k - 1);
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
  for (int i = 0; i < 2000000; ++i) {
    const std::uint32_t d = any_d(rng), n = any_n(rng);
    check(d, n);
    check(d, n / d * d);
    if (::testing::Test::HasFatalFailure()) return;
  }
}
}  // namespace
