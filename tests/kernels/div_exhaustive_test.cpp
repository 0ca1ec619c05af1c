// SPDX-License-Identifier: Apache-2.0
// The kernels' call-free division (kernels/lowbit/cuda/detail/div.cuh, used by the one-pass
// quantizer's block encoders) against IEEE float32 division on the host, which rounds to nearest
// even and keeps subnormals: the reciprocal over every mantissa, and a / b for every constant the
// encoders divide by or into, over every mantissa at the exponents where results are subnormal,
// overflow or normal, plus every exponent for a seeded sample of mantissas; and the integer
// division by a launch constant (udiv31) against `/`. CTest label: exhaustive.
#include <lowbit/cuda/detail/div.cuh>
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
