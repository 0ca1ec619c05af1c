// SPDX-License-Identifier: Apache-2.0
// The SIMT executor's emulation of the PTX conversions lowbit's kernels issue by inline assembly
// (kernels/lowbit/simt/simt.hpp, namespace simt::ptx; used through kernels/lowbit/cuda/detail/
// arch.cuh), over every one of the 2^32 float32 inputs, against two oracles: NVIDIA's host-side
// conversions in cuda_bf16.h / cuda_fp16.h (__float2bfloat16_rn, __float2half_rn), and the host
// engine's conversions (lowbit::from_float), whose bits the kernels must reproduce. NaN inputs give
// the canonical NaN 0x7FFF, as the PTX ISA defines for cvt to .bf16 and .f16. CTest label: exhaustive.
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
#include <vector>

#include "test_util.hpp"

namespace {

using lowbit_test::float_of;
using lowbit_test::hex;

struct counts {
  std::uint64_t vs_nvidia = 0, vs_host = 0, nan_not_canonical = 0;
  std::uint32_t first_nvidia = 0, first_host = 0;
};

// One pass over every float32: `emu`, NVIDIA's `nv` and the host engine's `host` conversion.
template <class Emu, class Nv, class Host>
counts sweep(Emu emu, Nv nv, Host host) {
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
        if (e != nv(x) && c.vs_nvidia++ == 0) c.first_nvidia = static_cast<std::uint32_t>(i);
        if (e != host(x) && c.vs_host++ == 0) c.first_host = static_cast<std::uint32_t>(i);
        if (x != x && e != 0x7FFFu) ++c.nan_not_canonical;
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

void expect_clean(const counts& c, const char* what) {
  EXPECT_EQ(c.vs_nvidia, 0u) << what << " differs from NVIDIA's host conversion on " << c.vs_nvidia
                             << " inputs, first " << hex(c.first_nvidia);
  EXPECT_EQ(c.vs_host, 0u) << what << " differs from the host engine on " << c.vs_host << " inputs, first "
                           << hex(c.first_host);
  EXPECT_EQ(c.nan_not_canonical, 0u) << what << ": NaN inputs not mapped to the canonical NaN 0x7FFF";
}

// NVIDIA's host conversion returns a NaN of its own choosing; the ISA fixes 0x7FFF on the device.
unsigned nv_nan_canonical(float x, unsigned bits) { return x != x ? 0x7FFFu : bits; }

TEST(PtxEmulation, CvtRnBf16F32EveryFloat) {
  expect_clean(sweep([](float x) -> unsigned { return lowbit::simt::ptx::cvt_rn_bf16_f32(x); },
                     [](float x) -> unsigned { return nv_nan_canonical(x, __bfloat16_as_ushort(__float2bfloat16_rn(x))); },
                     [](float x) -> unsigned { return lowbit::from_float<lowbit::bf16>(x).bits; }),
               "cvt.rn.bf16.f32");
}

TEST(PtxEmulation, CvtRnF16F32EveryFloat) {
  expect_clean(sweep([](float x) -> unsigned { return lowbit::simt::ptx::cvt_rn_f16_f32(x); },
                     [](float x) -> unsigned { return nv_nan_canonical(x, __half_as_ushort(__float2half_rn(x))); },
                     [](float x) -> unsigned { return lowbit::from_float<lowbit::f16>(x).bits; }),
               "cvt.rn.f16.f32");
}

// The x2 forms put their first operand in the upper half (PTX: "d = {a, b}" with a in the upper half).
TEST(PtxEmulation, X2FormsPackTheFirstOperandHigh) {
  EXPECT_EQ(lowbit::simt::ptx::cvt_rn_bf16x2_f32(1.0f, -2.0f), 0x3F80C000u);
  EXPECT_EQ(lowbit::simt::ptx::cvt_rn_f16x2_f32(1.0f, -2.0f), 0x3C00C000u);
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
