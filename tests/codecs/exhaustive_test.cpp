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
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "spec_reference.hpp"
#include "test_util.hpp"

namespace {

using namespace lowbit::codecs;
namespace spec = lowbit_test::spec;
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

// The two sides of a sweep as function objects (a type each, so that every sweep inlines them).

template <rounding R, overflow O, class Codec>
struct Enc {
  unsigned operator()(float x) const { return Codec::template encode<R, O>(x); }
};

// e8m0fnu under both overflow policies at once: saturate in the low byte, special in the high one.
template <rounding R>
struct EncE8m0fnuBothPolicies {
  unsigned operator()(float x) const {
    return Enc<R, overflow::saturate, e8m0fnu>{}(x) | Enc<R, overflow::special, e8m0fnu>{}(x) << 8;
  }
};

template <__nv_saturation_t S, __nv_fp8_interpretation_t I>
struct NvFp8 {
  unsigned operator()(float x) const { return __nv_cvt_float_to_fp8(x, S, I); }
};
template <__nv_fp6_interpretation_t I>
struct NvFp6 {
  unsigned operator()(float x) const { return __nv_cvt_float_to_fp6(x, I, cudaRoundNearest); }
};
template <__nv_fp4_interpretation_t I>
struct NvFp4 {
  unsigned operator()(float x) const { return __nv_cvt_float_to_fp4(x, I, cudaRoundNearest); }
};
// __NV_SATFINITE in the low byte, __NV_NOSAT in the high one.
template <cudaRoundMode R>
struct NvE8m0BothPolicies {
  unsigned operator()(float x) const {
    return unsigned(__nv_cvt_float_to_e8m0(x, __NV_SATFINITE, R)) |
           unsigned(__nv_cvt_float_to_e8m0(x, __NV_NOSAT, R)) << 8;
  }
};

constexpr auto rn = rounding::nearest_even;
constexpr auto sat = overflow::saturate;
constexpr auto nosat = overflow::special;

TEST(Exhaustive, E4m3fnSatfinite) {
  sweep_all_floats("e4m3fn saturate vs __nv_cvt_float_to_fp8(__NV_SATFINITE, __NV_E4M3)",
                   NvFp8<__NV_SATFINITE, __NV_E4M3>{}, Enc<rn, sat, e4m3fn>{});
}
TEST(Exhaustive, E4m3fnNosat) {
  sweep_all_floats("e4m3fn special vs __nv_cvt_float_to_fp8(__NV_NOSAT, __NV_E4M3)",
                   NvFp8<__NV_NOSAT, __NV_E4M3>{}, Enc<rn, nosat, e4m3fn>{});
}
TEST(Exhaustive, E5m2Satfinite) {
  sweep_all_floats("e5m2 saturate vs __nv_cvt_float_to_fp8(__NV_SATFINITE, __NV_E5M2)",
                   NvFp8<__NV_SATFINITE, __NV_E5M2>{}, Enc<rn, sat, e5m2>{});
}
TEST(Exhaustive, E5m2Nosat) {
  sweep_all_floats("e5m2 special vs __nv_cvt_float_to_fp8(__NV_NOSAT, __NV_E5M2)",
                   NvFp8<__NV_NOSAT, __NV_E5M2>{}, Enc<rn, nosat, e5m2>{});
}
TEST(Exhaustive, E2m1fn) {
  sweep_all_floats("e2m1fn vs __nv_cvt_float_to_fp4(__NV_E2M1, cudaRoundNearest)",
                   NvFp4<__NV_E2M1>{}, Enc<rn, sat, e2m1fn>{});
}
TEST(Exhaustive, E2m3fn) {
  sweep_all_floats("e2m3fn vs __nv_cvt_float_to_fp6(__NV_E2M3, cudaRoundNearest)",
                   NvFp6<__NV_E2M3>{}, Enc<rn, sat, e2m3fn>{});
}
TEST(Exhaustive, E3m2fn) {
  sweep_all_floats("e3m2fn vs __nv_cvt_float_to_fp6(__NV_E3M2, cudaRoundNearest)",
                   NvFp6<__NV_E3M2>{}, Enc<rn, sat, e3m2fn>{});
}
TEST(Exhaustive, E8m0fnuTowardZero) {
  sweep_all_floats(
      "e8m0fnu toward_zero vs __nv_cvt_float_to_e8m0(__NV_SATFINITE / __NV_NOSAT, cudaRoundZero)",
      NvE8m0BothPolicies<cudaRoundZero>{}, EncE8m0fnuBothPolicies<rounding::toward_zero>{});
}
TEST(Exhaustive, E8m0fnuTowardPosInf) {
  sweep_all_floats(
      "e8m0fnu toward_pos_inf vs __nv_cvt_float_to_e8m0(__NV_SATFINITE / __NV_NOSAT, cudaRoundPosInf)",
      NvE8m0BothPolicies<cudaRoundPosInf>{}, EncE8m0fnuBothPolicies<rounding::toward_pos_inf>{});
}

// bitsandbytes' CUDA NF4 and FP4 thresholds, typed from the reference §1.1 and §1.2.
TEST(Exhaustive, Nf4AgainstReferenceThresholds) {
  sweep_all_floats("nf4 vs #{i : x > T_i}", [](float x) { return spec::nf4_code(x); },
                   [](float x) { return unsigned(nf4::encode(x)); });
}

TEST(Exhaustive, BnbFp4AgainstReferenceThresholds) {
  sweep_all_floats("bnb_fp4 vs sign(x < 0) + rank of |x|",
                   [](float x) { return spec::bnb_fp4_code(x); },
                   [](float x) { return unsigned(bnb_fp4::encode(x)); });
}

// The dynamic map's values are checked code by code in decode_table_test; here the encoder's
// search is checked against a plain formulation over the regenerated map: the nearest of the two
// neighbouring entries by float32 midpoint f32((a + b) * 0.5), an exact tie going to the even
// index, NaN to 0.
TEST(Exhaustive, BnbDynamic8NearestEntry) {
  const std::vector<float> table = spec::bnb_dynamic_map();
  ASSERT_EQ(table.size(), 256u);
  sweep_all_floats("bnb_dynamic8 vs nearest entry (ties to even index)",
                   [&table](float x) { return spec::dynamic8_nearest_code(table, x); },
                   [](float x) { return unsigned(bnb_dynamic8::encode(x)); });
}

}  // namespace

// The 16-bit conversions of lowbit/dtype.hpp against NVIDIA's, for every float32.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

TEST(Exhaustive, Float32ToFloat16AndBfloat16) {
  sweep_all_floats("float_to_f16_bits / float_to_bf16_bits vs __float2half_rn / __float2bfloat16_rn",
                   [](float x) {
                     const __half h = __float2half_rn(x);
                     const __nv_bfloat16 b = __float2bfloat16_rn(x);
                     std::uint16_t hu, bu;
                     std::memcpy(&hu, &h, 2);
                     std::memcpy(&bu, &b, 2);
                     return unsigned(hu) | unsigned(bu) << 16;
                   },
                   [](float x) { return unsigned(lowbit::float_to_f16_bits(x)) | unsigned(lowbit::float_to_bf16_bits(x)) << 16; });
}

}  // namespace
