// SPDX-License-Identifier: Apache-2.0
// The AVX2 and AVX-512 element kernels of the host engine against the scalar codecs for every
// float32 input
// (NaN excluded where the engine never hands NaN to a kernel: NaN-carrying blocks take the
// portable path). CTest label: exhaustive.
#include <lowbit/lowbit.hpp>

#include <atomic>
#include <cstdio>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
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

// The threshold vectors avx2::detail::codes8<F> takes (as the engine's encoders set them up).
template <format F>
LOWBIT_AVX2 void avx2_thresholds(__m256* thr) {
  if constexpr (F == format::nf4) {
    avx2::detail::nf4_search_thresholds(thr);
  } else if constexpr (F == format::bnb_fp4) {
    for (int i = 0; i < 7; ++i) thr[i] = _mm256_set1_ps(codecs::bnb_fp4::threshold(i));
  }
}

template <format F, class Scalar>
LOWBIT_AVX2 std::uint64_t sweep_range(std::uint64_t begin, std::uint64_t end, bool skip_nan, Scalar scalar,
                                      std::uint32_t& first_bad) {
  __m256 thr[15];
  avx2_thresholds<F>(thr);
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

// The AVX2 and AVX-512 kernels in one pass, the scalar codec (the slow part) evaluated once per
// input: returns the AVX2 kernel's mismatches (its first bad pattern in first_bad), adds the
// AVX-512 kernel's to bad512 (the first into first_bad512).
template <format F, class Scalar>
LOWBIT_AVX512 std::uint64_t sweep_range_both(std::uint64_t begin, std::uint64_t end, bool skip_nan, Scalar scalar,
                                             std::uint32_t& first_bad, std::uint64_t& bad512, std::uint32_t& first_bad512) {
  __m256 thr[15];
  avx2_thresholds<F>(thr);
  const avx512::detail::thresholds th = avx512::detail::make_thresholds<F>();
  std::uint64_t bad = 0;
  alignas(64) std::int32_t got2[16], got512[16];
  for (std::uint64_t i = begin; i < end; i += 16) {
    const __m512i bits = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(i))),
                                          _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    // codes16 takes the value times the encoders' prescale (16 for NF4: exact, +-Inf past 2^124)
    __m512 v = _mm512_castsi512_ps(bits);
    if constexpr (avx512::detail::encode_prescale<F>() != 1.0f) v = _mm512_mul_ps(v, _mm512_set1_ps(avx512::detail::encode_prescale<F>()));
    _mm512_store_si512(got512, avx512::detail::codes16<F>(v, th));
    for (int h = 0; h < 2; ++h) {
      const __m256i bits8 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(i) + 8u * static_cast<unsigned>(h))),
                                             _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      _mm256_store_si256(reinterpret_cast<__m256i*>(got2 + 8 * h), avx2::detail::codes8<F>(_mm256_castsi256_ps(bits8), thr));
    }
    for (int k = 0; k < 16; ++k) {
      const std::uint32_t u = static_cast<std::uint32_t>(i) + static_cast<std::uint32_t>(k);
      const float x = lowbit_test::float_of(u);
      if (skip_nan && x != x) continue;
      const std::uint32_t want = scalar(x);
      if (static_cast<std::uint32_t>(got2[k]) != want && bad++ == 0) first_bad = u;
      if (static_cast<std::uint32_t>(got512[k]) != want && bad512++ == 0) first_bad512 = u;
    }
  }
  return bad;
}

// Runs range(begin, end, first_bad) over all 2^32 float32 patterns split across the hardware
// threads (ranges a multiple of `step` long); returns the mismatches it counted and, in `where`,
// each thread's first bad pattern.
template <class Range>
std::uint64_t sweep_threads(std::uint64_t step, Range range, std::string& where) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> bad{0};
  std::vector<std::uint32_t> first(threads, 0);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      const std::uint64_t b = (std::uint64_t{1} << 32) / step * t / threads * step;
      const std::uint64_t e = (std::uint64_t{1} << 32) / step * (t + 1) / threads * step;
      bad += range(b, e, first[t]);
    });
  for (auto& th : pool) th.join();
  for (auto f : first) where += " " + lowbit_test::hex(f);
  return bad.load();
}

// Every float32 through the AVX2 kernel, and through the AVX-512 one where the CPU has it (both
// in one pass).
template <format F, class Scalar>
void sweep(bool skip_nan, Scalar scalar) {
  if (!avx2::available()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernels are not used here";
  const bool wide = avx512::available();
  if (!wide) std::printf("note: this CPU has no AVX-512; only the AVX2 kernel of %s was swept\n", lowbit::info(F).name);
  std::string where;
  std::mutex m;
  std::uint64_t bad512 = 0;
  std::string where512;
  const std::uint64_t bad = sweep_threads(16, [&](std::uint64_t b, std::uint64_t e, std::uint32_t& first) {
    if (!wide) return sweep_range<F>(b, e, skip_nan, scalar, first);
    std::uint64_t bad_here = 0;
    std::uint32_t first_here = 0;
    const std::uint64_t r = sweep_range_both<F>(b, e, skip_nan, scalar, first, bad_here, first_here);
    const std::lock_guard<std::mutex> lock(m);
    bad512 += bad_here;
    if (bad_here > 0) where512 += " " + lowbit_test::hex(first_here);
    return r;
  }, where);
  EXPECT_EQ(bad, 0u) << lowbit::info(F).name << ": AVX2 codes differ from the codec; first per thread:" << where;
  EXPECT_EQ(bad512, 0u) << lowbit::info(F).name << ": AVX-512 codes differ from the codec; first in the threads with one:" << where512;
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
// The engine's encoder of the nested scales of double quantization (and of bnb_dynamic8 tensors).
// NaN included: a NaN scale difference is never produced, but the kernels give the codec's NaN
// code anyway.
TEST(SimdExhaustive, BnbDynamic8) {
  sweep<format::bnb_dynamic8>(false, [](float x) { return unsigned(codecs::bnb_dynamic8::encode(x)); });
}
TEST(SimdExhaustive, Int8Absmax) {
  sweep<format::int8_absmax>(true, [](float x) { return unsigned(std::uint8_t(codecs::int8_absmax::encode(x, 1.0f))); });
}

// The 16-bit output stores of the decode kernels against float_to_bf16_bits / float_to_f16_bits
// (round to nearest even, NaN -> 0x7FFF) for every float32, NaN and subnormals included (a NaN
// code or scale reaches them). `Store` writes the 32 results of the floats with bit patterns
// i .. i + 31 to its output.
template <class T, class Store>
std::uint64_t sweep_stores16(std::uint64_t begin, std::uint64_t end, Store store, std::uint32_t& first_bad) {
  std::uint64_t bad = 0;
  alignas(64) T got[32];
  for (std::uint64_t i = begin; i < end; i += 32) {
    store(static_cast<std::uint32_t>(i), got);
    for (int k = 0; k < 32; ++k) {
      const std::uint32_t u = static_cast<std::uint32_t>(i) + static_cast<std::uint32_t>(k);
      const float x = lowbit_test::float_of(u);
      const std::uint16_t want = std::is_same<T, lowbit::bf16>::value ? lowbit::float_to_bf16_bits(x) : lowbit::float_to_f16_bits(x);
      if (got[k].bits != want && bad++ == 0) first_bad = u;
    }
  }
  return bad;
}

template <class T, class Store>
void sweep_stores(const char* what, Store store) {
  std::string where;
  const std::uint64_t bad = sweep_threads(
      32, [&](std::uint64_t b, std::uint64_t e, std::uint32_t& first) { return sweep_stores16<T>(b, e, store, first); }, where);
  EXPECT_EQ(bad, 0u) << what << " differs from the scalar conversion; first per thread:" << where;
}

LOWBIT_AVX2 __m256 bits8(std::uint32_t i) {
  return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(i)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}
LOWBIT_AVX512 __m512 bits16(std::uint32_t i) {
  return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(i)),
                                              _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)));
}
template <class T>
LOWBIT_AVX2 void avx2_store32(std::uint32_t i, T* out) {
  avx2::detail::store16(out, bits8(i), bits8(i + 8));
  avx2::detail::store16(out + 16, bits8(i + 16), bits8(i + 24));
}
template <class T>
LOWBIT_AVX512 void avx512_store32(std::uint32_t i, T* out) {
  avx512::detail::store16(out, bits16(i));
  avx512::detail::store16(out + 16, bits16(i + 16));
}
LOWBIT_AVX512_BF16 void avx512_bf16_store32(std::uint32_t i, lowbit::bf16* out) {
  avx512::detail::store32_native<false>(out, bits16(i), bits16(i + 16), true);
}

template <class T>
void sweep_all_stores() {
  if (!avx2::available()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernels are not used here";
  sweep_stores<T>("AVX2 store16", [](std::uint32_t i, T* o) { avx2_store32(i, o); });
  if (!avx512::available()) {
    std::printf("note: this CPU has no AVX-512; only the AVX2 16-bit stores were swept\n");
    return;
  }
  sweep_stores<T>("AVX-512 store16", [](std::uint32_t i, T* o) { avx512_store32(i, o); });
  if constexpr (std::is_same<T, lowbit::bf16>::value) {
    if (!avx512::bf16_available()) {
      std::printf("note: this CPU has no AVX512_BF16; its bfloat16 store was not swept\n");
      return;
    }
    sweep_stores<T>("AVX512_BF16 store32_native", [](std::uint32_t i, T* o) { avx512_bf16_store32(i, o); });
  }
}
TEST(SimdExhaustive, Bfloat16Stores) { sweep_all_stores<lowbit::bf16>(); }
TEST(SimdExhaustive, Float16Stores) { sweep_all_stores<lowbit::f16>(); }

}  // namespace

#else

TEST(SimdExhaustive, NotBuilt) { GTEST_SKIP() << "no AVX2 kernels on this compiler/architecture"; }

#endif
