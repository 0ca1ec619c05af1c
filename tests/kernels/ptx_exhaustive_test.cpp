// SPDX-License-Identifier: Apache-2.0
// The SIMT executor's emulation of the PTX conversions lowbit's kernels issue by inline assembly
// (kernels/lowbit/simt/simt.hpp, namespace simt::ptx; used through kernels/lowbit/cuda/detail/
// arch.cuh), over every one of the 2^32 float32 inputs, against lowbit's own conversions whose bits
// the kernels must reproduce (the host engine's lowbit::from_float; the one-pass quantizer's
// codecs::e4m3fn / e5m2 encode<nearest_even, saturate>). NaN inputs give the canonical NaN: 0x7FFF
// for cvt to .bf16 and .f16, 0x7F for the 8-bit floats. Also the one-pass quantizer's e2m1fn
// encoder and the block-scaled quantizers' FP6 encoders (bit manipulation standing in for a
// conversion lowbit's targets lack) against the codecs. CTest label: exhaustive.
//
// NVIDIA's host conversions (cuda_bf16.h, cuda_fp16.h, cuda_fp8.h, cuda_fp6.h, cuda_fp4.h) are the
// independent oracle of every one of these host conversions: codecs_exhaustive_test compares each
// with NVIDIA's over the same 2^32 inputs (Exhaustive.Float32ToFloat16AndBfloat16, E4m3fnSatfinite,
// E5m2Satfinite, E2m1fn, E2m3fn, E3m2fn). Equal to the host conversion on every input here, the
// emulation is then equal to NVIDIA's on every input, so this sweep does not evaluate NVIDIA's
// conversions a second time (they took 30% of its run). The one conversion that has no host
// twin compared with NVIDIA elsewhere, the fused matmul's bf16 operand (flush, then round), is still
// swept against NVIDIA here, and the x2 forms' packing and the ISA's edge cases are checked against
// NVIDIA's x2 conversion and written-out values.
#include <cuda_fp8.h>

#include <lowbit/codecs/minifloat.hpp>
#include <lowbit/cuda/blockwise.cuh>
#include <lowbit/cuda/detail/arch.cuh>
#include <lowbit/dtype.hpp>
#include <lowbit/matmul/definition.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using lowbit_test::float_of;
using lowbit_test::hex;

struct counts {
  std::uint64_t vs_nvidia = 0, vs_host = 0, nan_not_canonical = 0;
  std::uint32_t first_nvidia = 0, first_host = 0;
};

// Stands for "no NVIDIA leg" in sweep: the host conversion is compared with NVIDIA's in
// codecs_exhaustive_test (see the top of this file).
struct host_checked_elsewhere {};

// One pass over every float32: `emu` against the host engine's `host` conversion and, unless `nv`
// is host_checked_elsewhere, NVIDIA's `nv`; a NaN input must give `nan_code`.
template <class Emu, class Nv, class Host>
counts sweep(Emu emu, Nv nv, Host host, unsigned nan_code = 0x7FFFu) {
  constexpr bool with_nv = !std::is_same<Nv, host_checked_elsewhere>::value;
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<counts> part(threads);
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      counts& c = part[t];
      const std::uint64_t end = (std::uint64_t{1} << 32) * (t + 1) / threads;
      for (std::uint64_t i = (std::uint64_t{1} << 32) * t / threads; i < end; ++i) {
        const float x = float_of(static_cast<std::uint32_t>(i));
        const unsigned e = emu(x);
        if constexpr (with_nv) {
          if (e != nv(x) && c.vs_nvidia++ == 0) c.first_nvidia = static_cast<std::uint32_t>(i);
        }
        if (e != host(x) && c.vs_host++ == 0) c.first_host = static_cast<std::uint32_t>(i);
        if (x != x && e != nan_code) ++c.nan_not_canonical;
      }
    });
  }
  for (auto& th : pool) th.join();
  counts all;
  for (const counts& c : part) {
    if (c.vs_nvidia && !all.vs_nvidia) all.first_nvidia = c.first_nvidia;
    if (c.vs_host && !all.vs_host) all.first_host = c.first_host;
    all.vs_nvidia += c.vs_nvidia;
    all.vs_host += c.vs_host;
    all.nan_not_canonical += c.nan_not_canonical;
  }
  return all;
}

void expect_clean(const counts& c, const char* what, const char* nan = "0x7FFF") {
  EXPECT_EQ(c.vs_nvidia, 0u) << what << " differs from NVIDIA's host conversion on " << c.vs_nvidia
                             << " inputs, first " << hex(c.first_nvidia);
  EXPECT_EQ(c.vs_host, 0u) << what << " differs from the host engine on " << c.vs_host << " inputs, first "
                           << hex(c.first_host);
  EXPECT_EQ(c.nan_not_canonical, 0u) << what << ": NaN inputs not mapped to the canonical NaN " << nan;
}

// NVIDIA's host conversion returns a NaN of its own choosing; the ISA fixes 0x7FFF on the device.
unsigned nv_nan_canonical(float x, unsigned bits) { return x != x ? 0x7FFFu : bits; }

TEST(PtxEmulation, CvtRnBf16F32EveryFloat) {
  expect_clean(sweep([](float x) -> unsigned { return lowbit::simt::ptx::cvt_rn_bf16_f32(x); },
                     host_checked_elsewhere{},  // Exhaustive.Float32ToFloat16AndBfloat16
                     [](float x) -> unsigned { return lowbit::from_float<lowbit::bf16>(x).bits; }),
               "cvt.rn.bf16.f32");
}

TEST(PtxEmulation, CvtRnF16F32EveryFloat) {
  expect_clean(sweep([](float x) -> unsigned { return lowbit::simt::ptx::cvt_rn_f16_f32(x); },
                     host_checked_elsewhere{},  // Exhaustive.Float32ToFloat16AndBfloat16
                     [](float x) -> unsigned { return lowbit::from_float<lowbit::f16>(x).bits; }),
               "cvt.rn.f16.f32");
}

// The x2 forms put their first operand in the upper half (PTX: "d = {a, b}" with a in the upper half).
TEST(PtxEmulation, X2FormsPackTheFirstOperandHigh) {
  EXPECT_EQ(lowbit::simt::ptx::cvt_rn_bf16x2_f32(1.0f, -2.0f), 0x3F80C000u);
  EXPECT_EQ(lowbit::simt::ptx::cvt_rn_f16x2_f32(1.0f, -2.0f), 0x3C00C000u);
  EXPECT_EQ(lowbit::simt::ptx::cvt_rn_satfinite_e4m3x2_f32(1.0f, -2.0f), 0x38C0u);
  EXPECT_EQ(lowbit::simt::ptx::cvt_rn_satfinite_e5m2x2_f32(1.0f, -2.0f), 0x3CC0u);
  // the upper half is the same conversion: a few values of every kind against NVIDIA's x2
  const float probes[] = {0.0f, -0.0f, 1e-45f, -3e-39f, 0x1p-10f, 0x3p-10f, 0x1p-17f, 0x1.ep-7f, 1.0625f, -1.375f,
                          447.0f, 464.0f, -57344.0f, 61440.0f, 1e30f, -std::numeric_limits<float>::infinity(),
                          std::numeric_limits<float>::quiet_NaN()};
  for (float hi : probes) {
    for (float lo : probes) {
      EXPECT_EQ(lowbit::simt::ptx::cvt_rn_satfinite_e4m3x2_f32(hi, lo), __nv_cvt_float2_to_fp8x2(float2{lo, hi}, __NV_SATFINITE, __NV_E4M3))
          << hi << ", " << lo;
      EXPECT_EQ(lowbit::simt::ptx::cvt_rn_satfinite_e5m2x2_f32(hi, lo), __nv_cvt_float2_to_fp8x2(float2{lo, hi}, __NV_SATFINITE, __NV_E5M2))
          << hi << ", " << lo;
    }
  }
}

// cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32 d, a, b with every float32 as b and a = 0 (both halves
// are the one conversion cvt_rn_satfinite_f8_f32; X2FormsPackTheFirstOperandHigh and the edge
// cases check the upper one), against the codec the one-pass quantizer replaces with it
// (kernels/lowbit/cuda/blockwise.cuh, uses_f8_cvt): codec::encode<nearest_even, saturate>, over
// every float32 including the NaNs, so over every x̂ the quantizer can form. That codec equals
// NVIDIA's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, ...) on every input (Exhaustive.E4m3fnSatfinite,
// E5m2Satfinite), the conversion whose x2 form, on sm_89+, is this very instruction.
template <class Codec, class Emu>
counts sweep_f8(Emu emu) {
  using lowbit::codecs::overflow;
  using lowbit::codecs::rounding;
  return sweep([&](float x) -> unsigned { return emu(0.0f, x); }, host_checked_elsewhere{},
               [](float x) -> unsigned { return Codec::template encode<rounding::nearest_even, overflow::saturate>(x); },
               0x7Fu);
}

TEST(PtxEmulation, CvtRnSatfiniteE4m3x2F32EveryFloat) {
  expect_clean(sweep_f8<lowbit::codecs::e4m3fn>(lowbit::simt::ptx::cvt_rn_satfinite_e4m3x2_f32),
               "cvt.rn.satfinite.e4m3x2.f32", "0x7F");
}

TEST(PtxEmulation, CvtRnSatfiniteE5m2x2F32EveryFloat) {
  expect_clean(sweep_f8<lowbit::codecs::e5m2>(lowbit::simt::ptx::cvt_rn_satfinite_e5m2x2_f32),
               "cvt.rn.satfinite.e5m2x2.f32", "0x7F");
}

// The one-pass quantizer's e2m1fn encoder over every float32 against the codec the kernel replaces
// (saturating; NaN -> 0x7, E2M1 has no NaN), which equals NVIDIA's round-to-nearest E2M1 conversion
// __nv_cvt_float_to_fp4 on every input (Exhaustive.E2m1fn).
TEST(QuantizerEncoders, E2m1EveryFloat) {
  using lowbit::codecs::overflow;
  using lowbit::codecs::rounding;
  expect_clean(sweep([](float x) -> unsigned { return lowbit::cuda::detail::e2m1_encode(x); },
                     host_checked_elsewhere{},
                     [](float x) -> unsigned {
                       return lowbit::codecs::e2m1fn::encode<rounding::nearest_even, overflow::saturate>(x);
                     },
                     0x7u),
               "e2m1_encode", "0x7");
}

// The block-scaled quantizers' FP6 encoders (e2_minifloat_encode for e2m3, finite_minifloat_encode
// for e3m2: bit manipulation as for e2m1) over every float32 against the codec the kernels replace
// (saturating; FP6 has no NaN), which equals NVIDIA's round-to-nearest E2M3 / E3M2 conversion
// __nv_cvt_float_to_fp6 on every input (Exhaustive.E2m3fn, E3m2fn).
template <class Codec, class Encode>
void expect_fp6_encoder_clean(Encode encode, const char* what) {
  using lowbit::codecs::overflow;
  using lowbit::codecs::rounding;
  expect_clean(sweep(encode, host_checked_elsewhere{},
                     [](float x) -> unsigned { return Codec::template encode<rounding::nearest_even, overflow::saturate>(x); }, 0x1Fu),
               what, "0x1F");
}

TEST(QuantizerEncoders, E2m3EveryFloat) {
  expect_fp6_encoder_clean<lowbit::codecs::e2m3fn>([](float x) -> unsigned { return lowbit::cuda::detail::e2_minifloat_encode<3>(x); },
                                                   "e2_minifloat_encode<3>");
}

TEST(QuantizerEncoders, E3m2EveryFloat) {
  expect_fp6_encoder_clean<lowbit::codecs::e3m2fn>([](float x) -> unsigned { return lowbit::cuda::detail::finite_minifloat_encode<3, 2, 3>(x); },
                                                   "finite_minifloat_encode<3, 2, 3>");
}

// The ISA's edge cases spelled out: satfinite (Inf and values past MAX_NORM give +-MAX_NORM, never
// e5m2's Inf), ties to even at the top and in the subnormals, signed zeros, NaN of either sign.
TEST(PtxEmulation, CvtRnSatfiniteF8EdgeCases) {
  const auto e4 = [](float x) { return lowbit::simt::ptx::cvt_rn_satfinite_e4m3x2_f32(0.0f, x); };
  const auto e5 = [](float x) { return lowbit::simt::ptx::cvt_rn_satfinite_e5m2x2_f32(0.0f, x); };
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(e4(448.0f), 0x7Eu);
  EXPECT_EQ(e4(464.0f), 0x7Eu);  // halfway to the absent 480: still MAX_NORM
  EXPECT_EQ(e4(1e30f), 0x7Eu);
  EXPECT_EQ(e4(inf), 0x7Eu);
  EXPECT_EQ(e4(-inf), 0xFEu);
  EXPECT_EQ(e4(nan), 0x7Fu);
  EXPECT_EQ(e4(-nan), 0x7Fu);
  EXPECT_EQ(e4(-0.0f), 0x80u);
  EXPECT_EQ(e4(0x1p-10f), 0x00u);         // half the smallest subnormal: tie to even 0
  EXPECT_EQ(e4(-0x1p-10f), 0x80u);
  EXPECT_EQ(e4(0x3p-10f), 0x02u);         // 1.5 subnormal quanta: tie to even 2
  EXPECT_EQ(e4(1e-45f), 0x00u);           // a float32 subnormal
  EXPECT_EQ(e4(-1e-45f), 0x80u);
  EXPECT_EQ(e4(1.0625f), 0x38u);          // tie between 1 and 1.125: 1
  EXPECT_EQ(e4(0x1.ep-7f), 0x08u);        // 0.9375 * 2^-6 rounds up into the first normal binade
  EXPECT_EQ(e5(57344.0f), 0x7Bu);
  EXPECT_EQ(e5(61440.0f), 0x7Bu);         // halfway to Inf: MAX_NORM, not Inf
  EXPECT_EQ(e5(inf), 0x7Bu);
  EXPECT_EQ(e5(-inf), 0xFBu);
  EXPECT_EQ(e5(nan), 0x7Fu);
  EXPECT_EQ(e5(-nan), 0x7Fu);
  EXPECT_EQ(e5(-0.0f), 0x80u);
  EXPECT_EQ(e5(0x1p-17f), 0x00u);         // half the smallest subnormal 2^-16
  EXPECT_EQ(e5(0x3p-17f), 0x02u);
  EXPECT_EQ(e5(1.125f), 0x3Cu);           // tie between 1 and 1.25: 1
  EXPECT_EQ(e5(1.375f), 0x3Eu);           // tie between 1.25 and 1.5: 1.5
}

// The fused matmul's bf16-mode operand on the device (pack_operand_bf16x2: mul.rn.ftz by 1, then
// cvt.rn.bf16x2) over every float32: the host definition's mm::bf16_operand_bits (a NaN's payload
// is unspecified: any NaN maps to 0x7FFF here) and NVIDIA's conversion of the flushed value.
TEST(PtxEmulation, MatmulBf16OperandEveryFloat) {
  const auto flushed = [](float x) { return (lowbit::float_bits(x) & 0x7F800000u) == 0 ? lowbit::bits_float(lowbit::float_bits(x) & 0x80000000u) : x; };
  expect_clean(sweep([](float x) -> unsigned { return lowbit::cuda::detail::pack_operand_bf16x2(0.0f, x) & 0xFFFFu; },
                     [&](float x) -> unsigned { return nv_nan_canonical(x, __bfloat16_as_ushort(__float2bfloat16_rn(flushed(x)))); },
                     [](float x) -> unsigned { return x != x ? 0x7FFFu : lowbit::mm::bf16_operand_bits(x); }),
               "mul.rn.ftz.f32 + cvt.rn.bf16x2.f32");
  EXPECT_EQ(lowbit::cuda::detail::pack_operand_bf16x2(1.0f, -2.0f), 0x3F80C000u);  // the first operand high
}

// fma.rn.ftz.f32 and mul.rn.ftz.f32 as the PTX ISA defines them: one rounding, subnormal inputs and
// results flushed to zeros of their sign, NaN canonical.
TEST(PtxEmulation, FmaAndMulFtz) {
  using lowbit::simt::ptx::fma_rn_ftz_f32;
  using lowbit::simt::ptx::mul_rn_ftz_f32;
  const float sub = lowbit::bits_float(0x00400000u), nsub = lowbit::bits_float(0x80400000u);
  EXPECT_EQ(lowbit::float_bits(fma_rn_ftz_f32(sub, 1.0f, 0.0f)), 0u);               // subnormal input
  EXPECT_EQ(lowbit::float_bits(fma_rn_ftz_f32(1.0f, 1.0f, nsub)), 0x3F800000u);     // subnormal addend
  EXPECT_EQ(lowbit::float_bits(fma_rn_ftz_f32(0x1p-70f, -0x1p-70f, 0.0f)), 0x80000000u);  // subnormal result
  EXPECT_EQ(lowbit::float_bits(fma_rn_ftz_f32(0x1p-63f, 0x1p-63f, 0.0f)), 0x00800000u);   // smallest normal kept
  EXPECT_EQ(fma_rn_ftz_f32(1.0f + 0x1p-23f, 1.0f + 0x1p-23f, -1.0f), std::fma(1.0f + 0x1p-23f, 1.0f + 0x1p-23f, -1.0f));  // fused
  EXPECT_EQ(lowbit::float_bits(fma_rn_ftz_f32(std::numeric_limits<float>::infinity(), 0.0f, 1.0f)), 0x7FFFFFFFu);
  EXPECT_EQ(lowbit::float_bits(mul_rn_ftz_f32(nsub, 1.0f)), 0x80000000u);
  EXPECT_EQ(lowbit::float_bits(mul_rn_ftz_f32(-3.0f, 1.0f)), lowbit::float_bits(-3.0f));
}

}  // namespace
