// SPDX-License-Identifier: Apache-2.0
// The AVX2 and AVX-512 element kernels of the host engine against the scalar codecs for every
// float32 input
// (NaN excluded where the engine never hands NaN to a kernel: NaN-carrying blocks take the
// portable path). CTest label: exhaustive.
#include <lowbit/lowbit.hpp>

#include <atomic>
#include <cstdio>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

#if LOWBIT_HAVE_AVX2_KERNELS

namespace {

using lowbit::format;
namespace avx2 = lowbit::host::avx2;
namespace avx512 = lowbit::host::avx512;
namespace codecs = lowbit::codecs;

// Mismatches of the kernel's codes `got` for the `lanes` floats whose bit patterns start at
// `first`, against `scalar`; the first bad pattern of the sweep (bad_so_far == 0) goes to first_bad.
template <class Scalar>
std::uint64_t check_lanes(std::uint64_t first, const std::int32_t* got, int lanes, bool skip_nan, Scalar scalar,
                          std::uint64_t bad_so_far, std::uint32_t& first_bad) {
  std::uint64_t bad = 0;
  for (int k = 0; k < lanes; ++k) {
    const std::uint32_t u = static_cast<std::uint32_t>(first) + static_cast<std::uint32_t>(k);
    const float x = lowbit_test::float_of(u);
    if (skip_nan && x != x) continue;
    if (static_cast<std::uint32_t>(got[k]) != scalar(x)) {
      if (bad_so_far + bad++ == 0) first_bad = u;
    }
  }
  return bad;
}

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
    bad += check_lanes(i, got, 8, skip_nan, scalar, bad, first_bad);
  }
  return bad;
}

template <format F, class Scalar>
LOWBIT_AVX512 std::uint64_t sweep_range512(std::uint64_t begin, std::uint64_t end, bool skip_nan, Scalar scalar,
                                           std::uint32_t& first_bad) {
  const avx512::detail::thresholds th = avx512::detail::make_thresholds<F>();
  std::uint64_t bad = 0;
  alignas(64) std::int32_t got[16];
  for (std::uint64_t i = begin; i < end; i += 16) {
    const __m512i bits = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(i))),
                                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    _mm512_store_si512(got, avx512::detail::codes16<F>(_mm512_castsi512_ps(bits), th));
    bad += check_lanes(i, got, 16, skip_nan, scalar, bad, first_bad);
  }
  return bad;
}

template <format F, class Scalar>
void sweep_with(bool skip_nan, Scalar scalar, bool wide) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> bad{0};
  std::vector<std::uint32_t> first(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const std::uint64_t b = (std::uint64_t{1} << 32) / 16 * t / threads * 16;
      const std::uint64_t e = (std::uint64_t{1} << 32) / 16 * (t + 1) / threads * 16;
      if constexpr (F == format::bnb_dynamic8) {  // no AVX-512 kernel
        (void)wide;
        bad += sweep_range<F>(b, e, skip_nan, scalar, first[t]);
      } else {
        bad += wide ? sweep_range512<F>(b, e, skip_nan, scalar, first[t]) : sweep_range<F>(b, e, skip_nan, scalar, first[t]);
      }
    });
  for (auto& th : pool) th.join();
  std::string where;
  for (auto f : first) where += " " + lowbit_test::hex(f);
  EXPECT_EQ(bad.load(), 0u) << lowbit::info(F).name << (wide ? ": AVX-512" : ": AVX2")
                            << " codes differ from the codec; first per thread:" << where;
}

// Every float32 through the AVX2 kernel, and through the AVX-512 one where the CPU has it.
template <format F, class Scalar>
void sweep(bool skip_nan, Scalar scalar) {
  if (!avx2::available()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernels are not used here";
  for (int wide = 0; wide < 2; ++wide) {
    if (wide && !avx512::available()) {
      std::printf("note: this CPU has no AVX-512; only the AVX2 kernel of %s was swept\n", lowbit::info(F).name);
      break;
    }
    sweep_with<F>(skip_nan, scalar, wide != 0);
  }
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
// AVX2 only: bnb_dynamic8 has no AVX-512 kernel (the engine uses it for the nested scales of
// double quantization, block by block). NaN included: a NaN scale difference is never produced,
// but the kernel gives the codec's NaN code anyway.
TEST(SimdExhaustive, BnbDynamic8) {
  if (!avx2::available()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernels are not used here";
  sweep_with<format::bnb_dynamic8>(false, [](float x) { return unsigned(codecs::bnb_dynamic8::encode(x)); }, false);
}
TEST(SimdExhaustive, Int8Absmax) {
  sweep<format::int8_absmax>(true, [](float x) { return unsigned(std::uint8_t(codecs::int8_absmax::encode(x, 1.0f))); });
}

}  // namespace

#else

TEST(SimdExhaustive, NotBuilt) { GTEST_SKIP() << "no AVX2 kernels on this compiler/architecture"; }

#endif
