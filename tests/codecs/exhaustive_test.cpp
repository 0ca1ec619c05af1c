// SPDX-License-Identifier: Apache-2.0
// Every one of the 2^32 float32 bit patterns through every encoder, against an independent oracle:
// NVIDIA's host conversions (cuda_fp8.h, cuda_fp6.h, cuda_fp4.h) for the minifloats, and the
// decision thresholds listed in the bitsandbytes reference (§1.1, §1.2) for nf4 and bnb_fp4.
// CTest label: exhaustive.
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>

#include <lowbit/lowbit.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace lowbit::codecs;
using lowbit_test::float_of;
using lowbit_test::hex;

// Runs `expected(x)` and `actual(x)` for every float32 x; reports the count and the first mismatches.
template <class Expected, class Actual>
void sweep_all_floats(const char* what, Expected expected, Actual actual) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<std::uint64_t> mismatches{0};
  std::mutex mu;
  std::vector<std::string> first;
  auto work = [&](unsigned t) {
    const std::uint64_t begin = (std::uint64_t{1} << 32) * t / threads;
    const std::uint64_t end = (std::uint64_t{1} << 32) * (t + 1) / threads;
    std::uint64_t bad = 0;
    for (std::uint64_t i = begin; i < end; ++i) {
      const float x = float_of(static_cast<std::uint32_t>(i));
      const unsigned e = expected(x);
      const unsigned a = actual(x);
      if (e != a) {
        if (++bad <= 4) {
          std::lock_guard<std::mutex> lock(mu);
          if (first.size() < 8)
            first.push_back("input " + hex(i) + ": expected " + hex(e, 2) + ", lowbit " + hex(a, 2));
        }
      }
    }
    mismatches += bad;
  };
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work, t);
  for (auto& th : pool) th.join();
  std::string detail;
  for (const auto& s : first) detail += "\n  " + s;
  EXPECT_EQ(mismatches.load(), 0u) << what << " disagrees on " << mismatches.load()
                                   << " of 2^32 inputs; first:" << detail;
}

template <rounding R, overflow O, class Codec>
unsigned enc(float x) {
  return Codec::template encode<R, O>(x);
}

constexpr auto rn = rounding::nearest_even;
constexpr auto sat = overflow::saturate;
constexpr auto nosat = overflow::special;

TEST(Exhaustive, E4m3fnSatfinite) {
  sweep_all_floats("e4m3fn saturate vs __nv_cvt_float_to_fp8(__NV_SATFINITE, __NV_E4M3)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)); },
                   enc<rn, sat, e4m3fn>);
}
TEST(Exhaustive, E4m3fnNosat) {
  sweep_all_floats("e4m3fn special vs __nv_cvt_float_to_fp8(__NV_NOSAT, __NV_E4M3)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3)); },
                   enc<rn, nosat, e4m3fn>);
}
TEST(Exhaustive, E5m2Satfinite) {
  sweep_all_floats("e5m2 saturate vs __nv_cvt_float_to_fp8(__NV_SATFINITE, __NV_E5M2)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)); },
                   enc<rn, sat, e5m2>);
}
TEST(Exhaustive, E5m2Nosat) {
  sweep_all_floats("e5m2 special vs __nv_cvt_float_to_fp8(__NV_NOSAT, __NV_E5M2)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2)); },
                   enc<rn, nosat, e5m2>);
}
TEST(Exhaustive, E2m1fn) {
  sweep_all_floats("e2m1fn vs __nv_cvt_float_to_fp4(__NV_E2M1, cudaRoundNearest)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest)); },
                   enc<rn, sat, e2m1fn>);
}
TEST(Exhaustive, E2m3fn) {
  sweep_all_floats("e2m3fn vs __nv_cvt_float_to_fp6(__NV_E2M3, cudaRoundNearest)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundNearest)); },
                   enc<rn, sat, e2m3fn>);
}
TEST(Exhaustive, E3m2fn) {
  sweep_all_floats("e3m2fn vs __nv_cvt_float_to_fp6(__NV_E3M2, cudaRoundNearest)",
                   [](float x) { return unsigned(__nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundNearest)); },
                   enc<rn, sat, e3m2fn>);
}
TEST(Exhaustive, E8m0fnuTowardZero) {
  sweep_all_floats("e8m0fnu toward_zero vs __nv_cvt_float_to_e8m0(__NV_SATFINITE / __NV_NOSAT, cudaRoundZero)",
                   [](float x) {
                     return unsigned(__nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero)) |
                            unsigned(__nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundZero)) << 8;
                   },
                   [](float x) {
                     return enc<rounding::toward_zero, sat, e8m0fnu>(x) |
                            enc<rounding::toward_zero, nosat, e8m0fnu>(x) << 8;
                   });
}
TEST(Exhaustive, E8m0fnuTowardPosInf) {
  sweep_all_floats("e8m0fnu toward_pos_inf vs __nv_cvt_float_to_e8m0(__NV_SATFINITE / __NV_NOSAT, cudaRoundPosInf)",
                   [](float x) {
                     return unsigned(__nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf)) |
                            unsigned(__nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundPosInf)) << 8;
                   },
                   [](float x) {
                     return enc<rounding::toward_pos_inf, sat, e8m0fnu>(x) |
                            enc<rounding::toward_pos_inf, nosat, e8m0fnu>(x) << 8;
                   });
}

// bitsandbytes' CUDA NF4 thresholds, typed from the reference §1.1 (f32 bit patterns).
constexpr std::uint32_t kNf4Thresholds[15] = {
    0xBF591CD9, 0xBF1C5270, 0xBEEB8480, 0xBEADEA76, 0xBE703CEC, 0xBE0D38BC, 0xBD3A7871, 0x3D22FAFF,
    0x3DF64863, 0x3E5067E0, 0x3E9582D4, 0x3EC753F9, 0x3F006D03, 0x3F248DAF, 0x3F5C89D9};
// bitsandbytes' CUDA FP4 magnitude thresholds (§1.2) and the magnitude code of each rank.
constexpr std::uint32_t kFp4Thresholds[7] = {0x3B2AAAB9, 0x3DB00000, 0x3E555555, 0x3E955555,
                                             0x3ED55556, 0x3F155550, 0x3F555555};
constexpr unsigned kFp4RankCode[8] = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};

TEST(Exhaustive, Nf4AgainstReferenceThresholds) {
  sweep_all_floats("nf4 vs #{i : x > T_i}",
                   [](float x) {
                     unsigned q = 0;
                     for (std::uint32_t t : kNf4Thresholds) q += x > float_of(t) ? 1u : 0u;
                     return q;
                   },
                   [](float x) { return unsigned(nf4::encode(x)); });
}

TEST(Exhaustive, BnbFp4AgainstReferenceThresholds) {
  sweep_all_floats("bnb_fp4 vs sign(x < 0) + rank of |x|",
                   [](float x) {
                     const float a = std::fabs(x);
                     unsigned rank = 0;
                     for (std::uint32_t t : kFp4Thresholds) rank += a > float_of(t) ? 1u : 0u;
                     return (x < 0.0f ? 8u : 0u) + kFp4RankCode[rank];
                   },
                   [](float x) { return unsigned(bnb_fp4::encode(x)); });
}

// The dynamic map's values are checked code by code in decode_table_test; here the encoder's
// search is checked against a plain formulation: the nearest of the two neighbouring entries by
// float32 midpoint f32((a + b) * 0.5), an exact tie going to the even index, NaN to 0.
TEST(Exhaustive, BnbDynamic8NearestEntry) {
  std::vector<float> table(256);
  for (int i = 0; i < 256; ++i) table[i] = bnb_dynamic8::decode(static_cast<std::uint8_t>(i));
  sweep_all_floats("bnb_dynamic8 vs nearest entry (ties to even index)",
                   [&table](float x) -> unsigned {
                     if (std::isnan(x)) return 0;
                     // k = number of entries strictly below x
                     const auto k = static_cast<unsigned>(std::lower_bound(table.begin(), table.end(), x) - table.begin());
                     if (k == 0) return 0;
                     if (k == 256) return 255;
                     const float lo = table[k - 1], hi = table[k];
                     const float mid = (lo + hi) * 0.5f;
                     if (x < mid) return k - 1;
                     if (x > mid) return k;
                     return (k - 1) % 2 == 0 ? k - 1 : k;
                   },
                   [](float x) { return unsigned(bnb_dynamic8::encode(x)); });
}

}  // namespace
