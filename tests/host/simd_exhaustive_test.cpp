// SPDX-License-Identifier: Apache-2.0
// The AVX2 element kernels of the host engine against the scalar codecs for every float32 input
// (NaN excluded where the engine never hands NaN to a kernel: NaN-carrying blocks take the
// portable path). CTest label: exhaustive.
#include <lowbit/lowbit.hpp>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

#if LOWBIT_HAVE_AVX2_KERNELS

namespace {

using lowbit::format;
namespace avx2 = lowbit::host::avx2;
namespace codecs = lowbit::codecs;

template <format F, class Scalar>
LOWBIT_AVX2 std::uint64_t sweep_range(std::uint64_t begin, std::uint64_t end, bool skip_nan, Scalar scalar,
                                      std::uint32_t& first_bad) {
  __m256 thr[15];
  if constexpr (F == format::nf4) {
    avx2::detail::nf4_search_thresholds(thr);
  } else if constexpr (F == format::bnb_fp4) {
    for (int i = 0; i < 7; ++i) thr[i] = _mm256_set1_ps(codecs::bnb_fp4::threshold(i));
  }
  std::uint64_t bad = 0;
  alignas(32) std::int32_t got[8];
  for (std::uint64_t i = begin; i < end; i += 8) {
    const __m256i bits = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(i))),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_store_si256(reinterpret_cast<__m256i*>(got), avx2::detail::codes8<F>(_mm256_castsi256_ps(bits), thr));
    for (int k = 0; k < 8; ++k) {
      const std::uint32_t u = static_cast<std::uint32_t>(i) + static_cast<std::uint32_t>(k);
      const float x = lowbit_test::float_of(u);
      if (skip_nan && x != x) continue;
      if (static_cast<std::uint32_t>(got[k]) != scalar(x)) {
        if (bad++ == 0) first_bad = u;
      }
    }
  }
  return bad;
}

template <format F, class Scalar>
void sweep(bool skip_nan, Scalar scalar) {
  if (!avx2::available()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernels are not used here";
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> bad{0};
  std::vector<std::uint32_t> first(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const std::uint64_t b = (std::uint64_t{1} << 32) / 8 * t / threads * 8;
      const std::uint64_t e = (std::uint64_t{1} << 32) / 8 * (t + 1) / threads * 8;
      bad += sweep_range<F>(b, e, skip_nan, scalar, first[t]);
    });
  for (auto& th : pool) th.join();
  std::string where;
  for (auto f : first) where += " " + lowbit_test::hex(f);
  EXPECT_EQ(bad.load(), 0u) << lowbit::info(F).name << ": AVX2 codes differ from the codec; first per thread:" << where;
}

TEST(SimdExhaustive, Nf4) {
  sweep<format::nf4>(false, [](float x) { return unsigned(codecs::nf4::encode(x)); });
}
TEST(SimdExhaustive, BnbFp4) {
  sweep<format::bnb_fp4>(false, [](float x) { return unsigned(codecs::bnb_fp4::encode(x)); });
}
TEST(SimdExhaustive, E4m3fn) {
  sweep<format::e4m3fn>(true, [](float x) { return unsigned(codecs::e4m3fn::encode(x)); });
}
TEST(SimdExhaustive, E5m2) {
  sweep<format::e5m2>(true, [](float x) { return unsigned(codecs::e5m2::encode(x)); });
}
TEST(SimdExhaustive, E2m1fn) {
  sweep<format::e2m1fn>(true, [](float x) { return unsigned(codecs::e2m1fn::encode(x)); });
}
TEST(SimdExhaustive, Int8Absmax) {
  sweep<format::int8_absmax>(true, [](float x) { return unsigned(std::uint8_t(codecs::int8_absmax::encode(x, 1.0f))); });
}

}  // namespace

#else

TEST(SimdExhaustive, NotBuilt) { GTEST_SKIP() << "no AVX2 kernels on this compiler/architecture"; }

#endif
