// SPDX-License-Identifier: Apache-2.0
// The host engine against the scalar reference (tests/support/reference_engine.hpp), bit for bit:
// every format x input dtype x output dtype x block size, partial blocks, n = 0, 1, odd, zero
// blocks, unaligned pointers, one thread and all, AVX2 and portable paths; double quantization;
// errors and the nothing-written guarantee.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#  include <xmmintrin.h>
#endif

#include "reference_engine.hpp"
#include "test_util.hpp"

namespace {

using lowbit::dtype;
using lowbit::format;
using lowbit_test::narrow;

// Seeded input: normal values, a planted zero block, a block of tiny values, and outliers.
template <class T>
std::vector<T> make_input(std::int64_t n, std::int64_t bs, std::uint64_t salt) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<T> x(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) x[i] = narrow<T>(normal(rng));
  if (n > 2 * bs) {
    for (std::int64_t i = bs; i < 2 * bs; ++i) x[i] = narrow<T>(i % 3 ? 0.0f : -0.0f);  // zero block
  }
  if (n > 3 * bs) {
    for (std::int64_t i = 2 * bs; i < 3 * bs; ++i) x[i] = narrow<T>(normal(rng) * 1e-3f);
  }
  if (n > 7) x[n / 2] = narrow<T>(40.0f);
  return x;
}

struct engine_output {
  std::vector<std::uint8_t> codes, zero_points, nested_codes;
  std::vector<float> scales, nested_scales;
  float offset = 0;
};

// Runs host::quantize into buffers placed at a one-byte/one-element offset (unaligned).
template <class T>
lowbit::status run_quantize(format f, const T* x, std::int64_t n, std::int64_t bs, bool nested,
                            const lowbit::host::options& opt, engine_output& out) {
  const std::int64_t nb = lowbit::quant::block_count(n, bs);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(lowbit::code_bytes(f, n)) + 1);
  std::vector<float> scales(static_cast<std::size_t>(nb) + 1);
  std::vector<std::uint8_t> zps(static_cast<std::size_t>(nb) + 1), ncodes(static_cast<std::size_t>(nb) + 1);
  std::vector<float> nscales(static_cast<std::size_t>(lowbit::quant::block_count(nb, 256)) + 1);
  lowbit::quant_view q;
  q.fmt = f;
  q.numel = n;
  q.block_size = bs;
  q.codes = codes.data() + 1;
  q.scales = nested ? nullptr : scales.data() + 1;
  q.zero_points = lowbit::info(f).zero_point ? zps.data() + 1 : nullptr;
  if (nested) {
    q.nested_codes = ncodes.data() + 1;
    q.nested_scales = nscales.data() + 1;
  }
  const lowbit::status s = lowbit::host::quantize(x, lowbit::dtype_of<T>::value, q, opt);
  out.codes.assign(codes.begin() + 1, codes.end());
  out.scales.assign(scales.begin() + 1, scales.end());
  out.zero_points.assign(zps.begin() + 1, zps.end());
  out.nested_codes.assign(ncodes.begin() + 1, ncodes.end());
  out.nested_scales.assign(nscales.begin() + 1, nscales.end());
  out.offset = q.nested_offset;
  return s;
}

// Dequantizes into a buffer at a one-element offset (unaligned) or, with `aligned`, at a 64-byte
// boundary (where store_mode::streaming takes its non-temporal path).
template <class Out>
std::vector<Out> run_dequantize(format f, const engine_output& e, std::int64_t n, std::int64_t bs, bool nested,
                                const lowbit::host::options& opt, bool aligned = false) {
  lowbit::quant_view q;
  q.fmt = f;
  q.numel = n;
  q.block_size = bs;
  q.codes = const_cast<std::uint8_t*>(e.codes.data());
  q.scales = nested ? nullptr : const_cast<float*>(e.scales.data());
  q.zero_points = const_cast<std::uint8_t*>(e.zero_points.data());
  if (nested) {
    q.nested_codes = const_cast<std::uint8_t*>(e.nested_codes.data());
    q.nested_scales = const_cast<float*>(e.nested_scales.data());
    q.nested_offset = e.offset;
  }
  std::vector<Out> out(static_cast<std::size_t>(n) + 64);
  std::size_t at = 1;
  if (aligned) {
    while (reinterpret_cast<std::uintptr_t>(out.data() + at) % 64 != 0) ++at;
  }
  const lowbit::status s = lowbit::host::dequantize(q, out.data() + at, lowbit::dtype_of<Out>::value, opt);
  EXPECT_TRUE(s.ok()) << s.message();
  return std::vector<Out>(out.begin() + static_cast<std::ptrdiff_t>(at), out.begin() + static_cast<std::ptrdiff_t>(at + static_cast<std::size_t>(n)));
}

template <class T>
std::uint16_t raw(T v) {
  return v.bits;
}
inline std::uint32_t raw(float v) { return lowbit_test::bits_of(v); }

template <class In, class Out>
void check_against_reference(format f, std::int64_t n, std::int64_t bs) {
  LOWBIT_SEED_TRACE();
  const std::string ctx = std::string(lowbit::info(f).name) + " in " + lowbit::dtype_name(lowbit::dtype_of<In>::value) +
                          " out " + lowbit::dtype_name(lowbit::dtype_of<Out>::value) + " n " + std::to_string(n) +
                          " block " + std::to_string(bs);
  SCOPED_TRACE(ctx);
  const std::vector<In> x = make_input<In>(n, bs, static_cast<std::uint64_t>(n * 131 + bs));
  const lowbit_test::reference_quantized ref = lowbit_test::ref_quantize(f, x.data(), n, bs);
  const std::int64_t nb = lowbit::quant::block_count(n, bs);
  // variants: 0 all threads, best SIMD (AVX-512 where the CPU has it); 1 one thread; 2 portable
  // code; 3 AVX2 only
  for (int variant = 0; variant < 4; ++variant) {
    lowbit::host::options opt;
    opt.threads = variant == 1 ? 1 : 0;
    opt.simd = variant != 2;
    opt.avx512 = variant != 3;
    engine_output e;
    // input at an odd element offset: copy x one element further into a larger buffer
    std::vector<In> shifted(x.size() + 1);
    std::copy(x.begin(), x.end(), shifted.begin() + 1);
    const lowbit::status s = run_quantize(f, shifted.data() + 1, n, bs, false, opt, e);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(std::vector<std::uint8_t>(e.codes.begin(), e.codes.begin() + static_cast<std::ptrdiff_t>(ref.codes.size())), ref.codes)
        << "codes differ (variant " << variant << ")";
    for (std::int64_t b = 0; b < nb; ++b) {
      ASSERT_EQ(lowbit_test::bits_of(e.scales[b]), lowbit_test::bits_of(ref.scales[b])) << "scale of block " << b;
      if (lowbit::info(f).zero_point) {
        ASSERT_EQ(e.zero_points[b], ref.zero_points[b]) << "zero point of block " << b;
      }
    }
    const std::vector<Out> want = lowbit_test::ref_dequantize<Out>(f, ref.codes.data(), ref.scales.data(),
                                                                   ref.zero_points.data(), n, bs);
    // every store mode, into an unaligned and a 64-byte-aligned output (streaming stores need the
    // latter; the former takes the ordinary stores)
    for (const auto mode : {lowbit::host::store_mode::automatic, lowbit::host::store_mode::cached, lowbit::host::store_mode::streaming}) {
      lowbit::host::options dopt = opt;
      dopt.stores = mode;
      for (const bool aligned : {false, true}) {
        if (mode != lowbit::host::store_mode::streaming && aligned) continue;
        const std::vector<Out> got = run_dequantize<Out>(f, e, n, bs, false, dopt, aligned);
        for (std::int64_t i = 0; i < n; ++i)
          ASSERT_EQ(raw(got[i]), raw(want[i])) << "dequantized element " << i << " (variant " << variant << ", store mode "
                                               << static_cast<int>(mode) << (aligned ? ", aligned" : ", unaligned") << ")";
      }
    }
  }
}

const std::int64_t kBlocks[] = {32, 64, 128, 256, 512, 1024, 2048, 4096, 1, 3, 37, 100};

template <class In, class Out>
void sweep_format(format f) {
  for (std::int64_t bs : kBlocks) {
    for (std::int64_t n : {std::int64_t{0}, std::int64_t{1}, std::int64_t{2}, std::int64_t{3}, bs - 1, bs, bs + 1,
                           4 * bs + 17, 5 * bs}) {
      if (n < 0) continue;
      check_against_reference<In, Out>(f, n, bs);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

class EngineVsReference : public ::testing::TestWithParam<format> {};

TEST_P(EngineVsReference, Float32In) { sweep_format<float, float>(GetParam()); }
TEST_P(EngineVsReference, Float16InBfloat16Out) { sweep_format<lowbit::f16, lowbit::bf16>(GetParam()); }
TEST_P(EngineVsReference, Bfloat16InFloat16Out) { sweep_format<lowbit::bf16, lowbit::f16>(GetParam()); }
TEST_P(EngineVsReference, Float32InBfloat16Out) {
  for (std::int64_t bs : {64, 4096, 7}) check_against_reference<float, lowbit::bf16>(GetParam(), 3 * bs + 5, bs);
}
TEST_P(EngineVsReference, LargeMultiThreaded) {
  check_against_reference<float, float>(GetParam(), (1 << 20) + 3, 64);
  check_against_reference<lowbit::bf16, lowbit::bf16>(GetParam(), (1 << 18) + 1, 4096);
}

// Per-tensor and long-row blocks (larger than host::detail::fused_block_limit) are quantized in slices
// on every thread: the bytes must be the reference's at every thread count and on every path,
// for a block cut into several slices plus a partial one, a whole tensor as one block, a 4-bit
// odd block (pair by pair, not sliced) and int8 with bitsandbytes' reciprocal rule (two passes
// at any block size).
TEST_P(EngineVsReference, PerTensorAndLongRowsAtEveryThreadCount) {
  const format f = GetParam();
  constexpr std::int64_t slice = lowbit::host::detail::stats_slice;
  struct shape {
    std::int64_t n, bs;
  };
  // (and rows up to host::detail::fused_block_limit, which take the one-pass path with one block
  // a chunk: a multiple of 32 for its run kernels, and an odd length)
  const shape shapes[] = {{3 * slice + 777, 3 * slice + 777}, {5 * (2 * slice + 5) + 3, 2 * slice + 5}, {2 * slice + 1, slice + 1},
                          {4 * slice, 4 * slice}, {3 * (slice / 2 + 64) + 40, slice / 2 + 64}, {2 * 20001 + 3, 20001}};
  for (const shape& sh : shapes) {
    SCOPED_TRACE("n " + std::to_string(sh.n) + " block " + std::to_string(sh.bs));
    std::vector<float> x = make_input<float>(sh.n, sh.bs, static_cast<std::uint64_t>(sh.n));
    for (std::int64_t i = slice; i < slice + 1000 && i < sh.n; ++i) x[static_cast<std::size_t>(i)] = 0.0f;  // zeros inside a slice
    const lowbit_test::reference_quantized ref = lowbit_test::ref_quantize(f, x.data(), sh.n, sh.bs);
    for (const int threads : {1, 2, 3, 0}) {
      for (int variant = 0; variant < 3; ++variant) {
        lowbit::host::options opt;
        opt.threads = threads;
        opt.simd = variant != 1;
        opt.avx512 = variant != 2;
        engine_output e;
        ASSERT_TRUE(run_quantize(f, x.data(), sh.n, sh.bs, false, opt, e).ok());
        ASSERT_EQ(std::vector<std::uint8_t>(e.codes.begin(), e.codes.begin() + static_cast<std::ptrdiff_t>(ref.codes.size())), ref.codes)
            << "codes differ, threads " << threads << " variant " << variant;
        for (std::size_t b = 0; b < ref.scales.size(); ++b) {
          ASSERT_EQ(lowbit_test::bits_of(e.scales[b]), lowbit_test::bits_of(ref.scales[b])) << "scale of block " << b;
          if (lowbit::info(f).zero_point) {
            ASSERT_EQ(e.zero_points[b], ref.zero_points[b]) << "zero point of block " << b;
          }
        }
      }
    }
  }
  // the reciprocal int8 rule: a per-tensor block equals the same rule's result at one thread
  if (f == format::int8_absmax) {
    const std::int64_t n = 3 * slice + 11;
    const std::vector<float> x = make_input<float>(n, n, 99);
    lowbit::host::options one;
    one.threads = 1;
    one.int8_inverse = lowbit::quant::int8_multiplier::reciprocal_times_127;
    engine_output want;
    ASSERT_TRUE(run_quantize(f, x.data(), n, n, false, one, want).ok());
    for (const int threads : {2, 3, 0}) {
      lowbit::host::options opt = one;
      opt.threads = threads;
      engine_output got;
      ASSERT_TRUE(run_quantize(f, x.data(), n, n, false, opt, got).ok());
      EXPECT_EQ(got.codes, want.codes) << "threads " << threads;
      EXPECT_EQ(lowbit_test::bits_of(got.scales[0]), lowbit_test::bits_of(want.scales[0]));
    }
  }
}

// A per-tensor block with non-finite elements in several slices: the error names the first, at
// every thread count; with allow_nonfinite the bytes equal one thread's.
TEST(Errors, NonFiniteInSlicedBlocks) {
  constexpr std::int64_t slice = lowbit::host::detail::stats_slice;
  const std::int64_t n = 4 * slice + 3;
  std::vector<float> x = make_input<float>(n, n, 7);
  x[static_cast<std::size_t>(3 * slice + 5)] = INFINITY;
  x[static_cast<std::size_t>(slice + 17)] = std::nanf("");
  x[static_cast<std::size_t>(2 * slice)] = -INFINITY;
  for (const format f : {format::e4m3fn, format::nf4, format::int8_absmax, format::uint8_zeropoint}) {
    engine_output one_thread;
    for (const int threads : {1, 2, 3, 0}) {
      lowbit::host::options opt;
      opt.threads = threads;
      engine_output e;
      const lowbit::status s = run_quantize(f, x.data(), n, n, false, opt, e);
      EXPECT_EQ(s.code(), lowbit::errc::non_finite);
      EXPECT_NE(std::string(s.message()).find("element " + std::to_string(slice + 17) + " "), std::string::npos) << s.message();
      opt.allow_nonfinite = true;
      ASSERT_TRUE(run_quantize(f, x.data(), n, n, false, opt, e).ok());
      if (threads == 1) {
        one_thread = e;
      } else {
        EXPECT_EQ(e.codes, one_thread.codes) << lowbit::info(f).name << " threads " << threads;
        EXPECT_EQ(lowbit_test::bits_of(e.scales[0]), lowbit_test::bits_of(one_thread.scales[0]));
      }
    }
  }
}

// An output of at least streaming_store_bytes: store_mode::automatic takes the non-temporal
// stores there (aligned output) and must give the reference's bits, with and without double
// quantization (the latter against the cached stores, which the sweeps check against the
// reference).
TEST_P(EngineVsReference, AutomaticStreamingOfLargeOutputs) {
  LOWBIT_SEED_TRACE();
  const format f = GetParam();
  const std::int64_t n = lowbit::host::streaming_store_bytes / 4 + 37, bs = 64;
  const std::vector<float> x = make_input<float>(n, bs, 2024);
  const lowbit_test::reference_quantized ref = lowbit_test::ref_quantize(f, x.data(), n, bs);
  engine_output e;
  e.codes = ref.codes;
  e.scales = ref.scales;
  e.zero_points = ref.zero_points;
  const std::vector<float> want = lowbit_test::ref_dequantize<float>(f, ref.codes.data(), ref.scales.data(), ref.zero_points.data(), n, bs);
  const std::vector<float> got = run_dequantize<float>(f, e, n, bs, false, {}, true);
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(raw(got[i]), raw(want[i])) << "dequantized element " << i;
  if (!lowbit::info(f).bnb) return;  // double quantization is defined for the bitsandbytes formats
  engine_output dq;
  ASSERT_TRUE(run_quantize(f, x.data(), n, bs, true, {}, dq).ok());
  lowbit::host::options cached;
  cached.stores = lowbit::host::store_mode::cached;
  const std::vector<float> a = run_dequantize<float>(f, dq, n, bs, true, {}, true);
  const std::vector<float> b = run_dequantize<float>(f, dq, n, bs, true, cached, true);
  for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(raw(a[i]), raw(b[i])) << "double-quantized element " << i;
}

INSTANTIATE_TEST_SUITE_P(AllFormats, EngineVsReference,
                         ::testing::Values(format::nf4, format::bnb_fp4, format::bnb_dynamic8, format::int8_absmax,
                                           format::uint8_zeropoint, format::e4m3fn, format::e5m2, format::e2m1fn),
                         [](const ::testing::TestParamInfo<format>& p) { return std::string(lowbit::info(p.param).name); });

// NF4's AVX-512 encoder multiplies by 16 inv instead of inv (avx512::detail::encode_prescale):
// blocks where x inv is subnormal or zero (maximum 1 with subnormal and tiny elements), where
// 16 inv is just finite (maximum 2^-123) or overflows (2^-124, 2^-125 and subnormal maxima),
// each with values at and next to the thresholds, against the scalar reference.
TEST(Engine, Nf4PrescaleEdgeBlocks) {
  const std::int64_t bs = 64;
  const float maxima[] = {1.0f, std::ldexp(1.0f, -123), std::ldexp(1.0f, -124), std::ldexp(1.0f, -125), 3e-39f, 1.5e-44f};
  std::vector<float> x;
  for (const float m : maxima) {
    std::vector<float> block = {m, -m};
    for (int i = 0; i < 15 && block.size() + 4 <= bs; ++i) {  // around thresholds 0, 2, 4, ..., 14
      const float t = lowbit::codecs::nf4::threshold(i) * m;
      block.push_back(t);
      block.push_back(std::nextafter(t, 2.0f * m));
      if (i % 2 == 0) {
        block.push_back(-t);
        block.push_back(std::nextafter(t, -2.0f * m));
      }
    }
    for (const float tiny : {1e-40f, -1e-40f, 1e-45f, -1e-45f, 0.0f, -0.0f, 1e-38f, -1e-38f})
      if (block.size() < bs) block.push_back(tiny * (m < 1.0f ? m : 1.0f));
    while (block.size() < bs) block.push_back(m * 0.5f);
    x.insert(x.end(), block.begin(), block.begin() + bs);
  }
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  const lowbit_test::reference_quantized ref = lowbit_test::ref_quantize(format::nf4, x.data(), n, bs);
  for (int variant = 0; variant < 3; ++variant) {
    lowbit::host::options opt;
    opt.simd = variant != 1;
    opt.avx512 = variant != 2;
    engine_output e;
    ASSERT_TRUE(run_quantize(format::nf4, x.data(), n, bs, false, opt, e).ok());
    for (std::int64_t i = 0; i < n / 2; ++i)
      ASSERT_EQ(e.codes[i], ref.codes[i]) << "code byte " << i << " (block " << 2 * i / bs << ", variant " << variant << ")";
  }
}

// Double quantization against the definition: offset = mean of the float32 absmax (double sums of
// 1024 blocks, then of those sums), absmax - offset quantized with bnb_dynamic8 in blocks of 256; the dequantized
// scale is f32(f32(code2 * absmax2) + offset).
TEST(DoubleQuant, MatchesDefinition) {
  LOWBIT_SEED_TRACE();
  for (format f : {format::nf4, format::bnb_fp4, format::bnb_dynamic8}) {
    for (std::int64_t bs : {32, 64, 4096}) {
      const std::int64_t n = (bs == 32 ? 2100 : 300) * bs + 11;  // block 32: more than 1024 blocks
      SCOPED_TRACE(std::string(lowbit::info(f).name) + " block " + std::to_string(bs));
      const std::vector<float> x = make_input<float>(n, bs, 99);
      const auto ref = lowbit_test::ref_quantize(f, x.data(), n, bs);
      const std::int64_t nb = lowbit::quant::block_count(n, bs);
      double sum = 0;  // partial sums of 1024 blocks each, in order (the documented order)
      for (std::int64_t c = 0; c < nb; c += 1024) {
        double partial = 0;
        for (std::int64_t b = c; b < std::min(nb, c + 1024); ++b) partial += ref.scales[b];
        sum += partial;
      }
      const float offset = static_cast<float>(sum / static_cast<double>(nb));
      std::vector<float> diff(static_cast<std::size_t>(nb));
      for (std::int64_t b = 0; b < nb; ++b) diff[b] = ref.scales[b] - offset;
      const auto nested = lowbit_test::ref_quantize(format::bnb_dynamic8, diff.data(), nb, 256);

      engine_output e;
      ASSERT_TRUE(run_quantize(f, x.data(), n, bs, true, {}, e).ok());
      EXPECT_EQ(lowbit_test::bits_of(e.offset), lowbit_test::bits_of(offset));
      EXPECT_EQ(std::vector<std::uint8_t>(e.codes.begin(), e.codes.begin() + static_cast<std::ptrdiff_t>(ref.codes.size())), ref.codes);
      for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(e.nested_codes[b], nested.codes[b]) << "nested code " << b;
      for (std::size_t j = 0; j < nested.scales.size(); ++j)
        ASSERT_EQ(lowbit_test::bits_of(e.nested_scales[j]), lowbit_test::bits_of(nested.scales[j])) << "nested scale " << j;

      std::vector<float> scale(static_cast<std::size_t>(nb));
      for (std::int64_t b = 0; b < nb; ++b) {
        volatile float p = lowbit::codecs::bnb_dynamic8::decode(nested.codes[b]) * nested.scales[b / 256];
        scale[b] = p + offset;
      }
      const auto want = lowbit_test::ref_dequantize<float>(f, ref.codes.data(), scale.data(), nullptr, n, bs);
      const auto got = run_dequantize<float>(f, e, n, bs, true, {});
      for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(lowbit_test::bits_of(got[i]), lowbit_test::bits_of(want[i])) << i;
    }
  }
}

// Non-finite input: an error naming the first bad index, and no output byte changes; the bad
// element in a full block (SIMD run kernels) or only in the partial last block. Float16 and
// bfloat16 inputs (whose SIMD statistics compare the 16-bit patterns) with every kind of
// non-finite pattern: Inf, -Inf, the smallest and largest NaN of either sign.
template <class T>
void check_nonfinite(std::initializer_list<T> bad_values) {
  // blocks of 16 and 32 also take the 16-blocks-at-a-time statistics (element 300: in such a group)
  for (format f : {format::nf4, format::e4m3fn, format::int8_absmax, format::uint8_zeropoint})
  for (std::int64_t bs : {64, 32, 16})
  for (std::int64_t first : {300, 777, 990})
  for (T bad : bad_values) {
    SCOPED_TRACE(std::string(lowbit::info(f).name) + " " + lowbit::dtype_name(lowbit::dtype_of<T>::value) + " pattern " +
                 lowbit_test::hex(raw(bad)) + " at element " + std::to_string(first) + ", blocks of " + std::to_string(bs));
    std::vector<T> x(1000, lowbit::from_float<T>(0.5f));
    x[static_cast<std::size_t>(first)] = bad;
    x[995] = bad;
    std::vector<std::uint8_t> codes(1000, 0xAB), zps(64, 0xAB);
    std::vector<float> scales(64, 12.5f);
    lowbit::quant_view q;
    q.fmt = f;
    q.numel = 1000;
    q.block_size = bs;
    q.codes = codes.data();
    q.scales = scales.data();
    q.zero_points = zps.data();
    const lowbit::status s = lowbit::host::quantize(x.data(), lowbit::dtype_of<T>::value, q);
    EXPECT_EQ(s.code(), lowbit::errc::non_finite);
    EXPECT_NE(std::string(s.message()).find("element " + std::to_string(first)), std::string::npos) << s.message();
    for (auto c : codes) ASSERT_EQ(c, 0xAB);
    for (auto c : zps) ASSERT_EQ(c, 0xAB);
    for (float v : scales) ASSERT_EQ(v, 12.5f);
  }
}
TEST(Errors, NonFiniteInputWritesNothing) {
  check_nonfinite<float>({std::nanf(""), INFINITY, -INFINITY});
  using lowbit::bf16;
  using lowbit::f16;
  check_nonfinite<f16>({f16{0x7C00}, f16{0xFC00}, f16{0x7C01}, f16{0x7FFF}, f16{0xFC01}, f16{0xFFFF}});
  check_nonfinite<bf16>({bf16{0x7F80}, bf16{0xFF80}, bf16{0x7F81}, bf16{0x7FFF}, bf16{0xFF81}, bf16{0xFFFF}});
}

#if defined(__x86_64__) || defined(__i386__)
// The engine's bits do not depend on the caller's floating-point mode: with flush-to-zero,
// denormals-are-zero and round-toward-zero set on the calling thread, quantize, dequantize and
// measure_error give what they give in IEEE default mode (one thread: all work on the caller;
// all threads: the pool's workers too), and the caller's mode is intact afterwards.
TEST(Engine, CallerFloatingPointModeDoesNotMatter) {
  LOWBIT_SEED_TRACE();
  const std::int64_t n = 64 * 600 + 13, bs = 64;
  std::vector<float> x = make_input<float>(n, bs, 31);
  for (std::int64_t i = 5 * bs; i < 6 * bs; ++i) x[static_cast<std::size_t>(i)] *= 1e-39f;  // subnormal inputs
  constexpr unsigned hostile = 0x1F80u | 0x8000u /* FTZ */ | 0x0040u /* DAZ */ | 0x6000u /* toward zero */;
  for (format f : {format::nf4, format::e4m3fn, format::e5m2, format::int8_absmax}) {
    for (int threads : {1, 0}) {
      SCOPED_TRACE(std::string(lowbit::info(f).name) + (threads == 1 ? ", one thread" : ", all threads"));
      lowbit::host::options opt;
      opt.threads = threads;
      engine_output want, got;
      ASSERT_TRUE(run_quantize(f, x.data(), n, bs, false, opt, want).ok());
      const std::vector<float> want_f32 = run_dequantize<float>(f, want, n, bs, false, opt);
      const std::vector<lowbit::bf16> want_bf16 = run_dequantize<lowbit::bf16>(f, want, n, bs, false, opt);
      lowbit::host::error_stats want_err{}, got_err{};
      lowbit::quant_view qv;
      qv.fmt = f;
      qv.numel = n;
      qv.block_size = bs;
      qv.codes = want.codes.data();
      qv.scales = want.scales.data();
      ASSERT_TRUE(lowbit::host::measure_error(x.data(), dtype::f32, qv, want_err, opt).ok());

      const unsigned saved = _mm_getcsr();
      _mm_setcsr(hostile);
      const lowbit::status qs = run_quantize(f, x.data(), n, bs, false, opt, got);
      const std::vector<float> got_f32 = run_dequantize<float>(f, want, n, bs, false, opt);
      const std::vector<lowbit::bf16> got_bf16 = run_dequantize<lowbit::bf16>(f, want, n, bs, false, opt);
      const lowbit::status es = lowbit::host::measure_error(x.data(), dtype::f32, qv, got_err, opt);
      const unsigned after = _mm_getcsr();
      _mm_setcsr(saved);
      ASSERT_TRUE(qs.ok()) << qs.message();
      ASSERT_TRUE(es.ok()) << es.message();
      EXPECT_EQ(after & ~0x3Fu, hostile) << "the caller's MXCSR was not restored";
      ASSERT_EQ(got.codes, want.codes);
      for (std::size_t b = 0; b < want.scales.size(); ++b)
        ASSERT_EQ(lowbit_test::bits_of(got.scales[b]), lowbit_test::bits_of(want.scales[b])) << "scale " << b;
      for (std::int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(lowbit_test::bits_of(got_f32[i]), lowbit_test::bits_of(want_f32[i])) << "f32 element " << i;
        ASSERT_EQ(got_bf16[i].bits, want_bf16[i].bits) << "bf16 element " << i;
      }
      EXPECT_EQ(std::memcmp(&got_err, &want_err, sizeof want_err), 0) << "measure_error differs";
    }
  }
}
#endif

// With allow_nonfinite, NaN elements get the codec's NaN result and are ignored by the block
// statistics; an Inf makes its block's absmax Inf.
TEST(Errors, AllowNonFinite) {
  std::vector<float> x(128, 0.25f);
  x[3] = std::nanf("");
  x[70] = INFINITY;
  lowbit::host::options opt;
  opt.allow_nonfinite = true;
  for (format f : {format::nf4, format::e4m3fn, format::int8_absmax}) {
    engine_output e;
    ASSERT_TRUE(run_quantize(f, x.data(), 128, 64, false, opt, e).ok()) << lowbit::info(f).name;
    EXPECT_EQ(e.scales[0], f == format::e4m3fn ? 0.25f / 448.0f : 0.25f);
    const std::uint8_t nan_code = f == format::e4m3fn ? 0x7F : 0;
    // element 3: nf4 packs it in the low nibble of byte 1
    EXPECT_EQ(f == format::nf4 ? (e.codes[1] & 15) : e.codes[3], nan_code) << lowbit::info(f).name;
    EXPECT_TRUE(std::isinf(f == format::e4m3fn ? e.scales[1] * 448.0f : e.scales[1])) << lowbit::info(f).name;
  }
}

// An Inf without a NaN in its block (allow_nonfinite): the block's inv is 0, so the Inf's x * inv is
// NaN and takes the codec's NaN result on every path. The SIMD encoders once took the sign of x86's
// default NaN instead (int8_absmax 127, e4m3fn -448, e2m1fn -6).
TEST(Errors, AllowNonFiniteInfBlocksEncodeAsNaNOnEveryPath) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (dtype dt : {dtype::f32, dtype::bf16}) {
    std::vector<float> xf(4096);
    for (float& v : xf) v = normal(rng);
    xf[200] = INFINITY;
    xf[1000] = -INFINITY;
    xf[1001] = INFINITY;
    std::vector<lowbit::bf16> xb(xf.size());
    for (std::size_t i = 0; i < xf.size(); ++i) xb[i] = lowbit::from_float<lowbit::bf16>(xf[i]);
    for (format f : {format::nf4, format::bnb_fp4, format::bnb_dynamic8, format::int8_absmax, format::uint8_zeropoint,
                     format::e4m3fn, format::e5m2, format::e2m1fn}) {
      SCOPED_TRACE(std::string(lowbit::info(f).name) + " " + lowbit::dtype_name(dt));
      std::vector<std::vector<std::uint8_t>> codes;
      for (int path = 0; path < 3; ++path) {
        lowbit::host::options opt;
        opt.allow_nonfinite = true;
        opt.simd = path > 0;
        opt.avx512 = path > 1;
        engine_output e;
        ASSERT_TRUE((dt == dtype::f32 ? run_quantize(f, xf.data(), 4096, 64, false, opt, e)
                                      : run_quantize(f, xb.data(), 4096, 64, false, opt, e)).ok());
        codes.push_back(e.codes);
      }
      EXPECT_EQ(codes[1], codes[0]) << "AVX2 path";
      EXPECT_EQ(codes[2], codes[0]) << "AVX-512 path";
      // the portable path against engine.hpp's definition: the Inf elements get the code of NaN
      // (uint8_zeropoint: its zero point, 0 here as lo is finite and inv 0)
      const int want = f == format::e4m3fn || f == format::e5m2 ? 0x7F : (f == format::e2m1fn ? 7 : 0);
      for (std::size_t i : {std::size_t{200}, std::size_t{1000}, std::size_t{1001}}) {
        const std::uint8_t c = lowbit::info(f).bits == 4 ? ((i & 1) == (lowbit::info(f).order == lowbit::codecs::nibble_order::high_first ? 0u : 1u)
                                                               ? codes[0][i / 2] >> 4
                                                               : codes[0][i / 2] & 15)
                                                         : codes[0][i];
        EXPECT_EQ(c, want) << "element " << i;
      }
    }
  }
}

TEST(Errors, BadArguments) {
  std::vector<float> x(100, 1.0f);
  std::vector<std::uint8_t> codes(100), zps(4);
  std::vector<float> scales(4);
  auto base = [&] {
    lowbit::quant_view q;
    q.fmt = format::nf4;
    q.numel = 100;
    q.block_size = 32;
    q.codes = codes.data();
    q.scales = scales.data();
    return q;
  };
  auto expect_error = [&](lowbit::quant_view q, const void* in, dtype dt, lowbit::errc code, const char* needle) {
    const lowbit::status s = lowbit::host::quantize(in, dt, q);
    EXPECT_EQ(s.code(), code) << s.message();
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message();
  };
  auto q = base();
  expect_error(q, nullptr, dtype::f32, lowbit::errc::invalid_argument, "input x is null");
  q.codes = nullptr;
  expect_error(q, x.data(), dtype::f32, lowbit::errc::invalid_argument, "codes is null");
  q = base();
  q.scales = nullptr;
  expect_error(q, x.data(), dtype::f32, lowbit::errc::invalid_argument, "scales is null");
  q = base();
  q.block_size = 0;
  expect_error(q, x.data(), dtype::f32, lowbit::errc::invalid_argument, "block_size is 0");
  q = base();
  q.numel = -5;
  expect_error(q, x.data(), dtype::f32, lowbit::errc::invalid_argument, "numel is -5");
  q = base();
  q.fmt = static_cast<format>(42);
  expect_error(q, x.data(), dtype::f32, lowbit::errc::invalid_argument, "format 42");
  q = base();
  expect_error(q, x.data(), static_cast<dtype>(9), lowbit::errc::invalid_argument, "dtype 9");
  q = base();
  q.fmt = format::e4m3fn;
  q.nested_codes = zps.data();
  q.nested_scales = scales.data();
  expect_error(q, x.data(), dtype::f32, lowbit::errc::unsupported, "double quantization");
  q = base();
  q.fmt = format::uint8_zeropoint;
  expect_error(q, x.data(), dtype::f32, lowbit::errc::invalid_argument, "zero_points is null");
  std::vector<float> out(100);
  q = base();
  EXPECT_EQ(lowbit::host::dequantize(q, nullptr, dtype::f32).code(), lowbit::errc::invalid_argument);
  EXPECT_EQ(lowbit::host::dequantize(q, out.data(), static_cast<dtype>(7)).code(), lowbit::errc::invalid_argument);
  lowbit::host::options bad;
  bad.stores = static_cast<lowbit::host::store_mode>(5);
  std::fill(out.begin(), out.end(), 7.0f);
  const lowbit::status s = lowbit::host::dequantize(q, out.data(), dtype::f32, bad);
  EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
  EXPECT_NE(std::string(s.message()).find("options::stores is 5"), std::string::npos) << s.message();
  EXPECT_EQ(std::count(out.begin(), out.end(), 7.0f), 100) << "an invalid store mode wrote output";
}

TEST(QuantTensor, GranularitiesAndSizes) {
  std::vector<float> w(4096 * 64);
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  std::normal_distribution<float> normal;
  for (float& v : w) v = normal(rng);
  lowbit::quant_tensor q;
  lowbit::quantize_params p;
  for (std::int64_t bad : {0, 16, 48, 8192}) {
    p.gran = lowbit::granularity::per_block(bad);
    const lowbit::status s = lowbit::quantize(w.data(), dtype::f32, {4096, 64}, p, q);
    EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
    EXPECT_NE(std::string(s.message()).find("power of two"), std::string::npos) << s.message();
  }
  p.gran = lowbit::granularity::per_row();
  p.fmt = format::int8_absmax;
  ASSERT_TRUE(lowbit::quantize(w.data(), dtype::f32, {4096, 64}, p, q).ok());
  EXPECT_EQ(q.block_size(), 64);
  EXPECT_EQ(q.blocks(), 4096);
  EXPECT_EQ(q.nbytes(), 4096 * 64 + 4096 * 4);
  p.gran = lowbit::granularity::per_tensor();
  p.fmt = format::e4m3fn;
  ASSERT_TRUE(lowbit::quantize(w.data(), dtype::f32, {4096, 64}, p, q).ok());
  EXPECT_EQ(q.blocks(), 1);
  p = {};
  p.double_quant = true;
  std::vector<float> big(4096 * 4096, 0.0f);
  for (std::size_t i = 0; i < big.size(); i += 7) big[i] = normal(rng);
  ASSERT_TRUE(lowbit::quantize(big.data(), dtype::f32, {4096, 4096}, p, q).ok());
  EXPECT_NEAR(q.bits_per_value(), 4.127, 0.0005);
  EXPECT_EQ(q.nbytes(), 4096 * 4096 / 2 + 4096 * 4096 / 64 + 4096 * 4096 / 64 / 256 * 4 + 4);
  p.fmt = format::e2m1fn;
  EXPECT_EQ(lowbit::quantize(big.data(), dtype::f32, {4096, 4096}, p, q).code(), lowbit::errc::unsupported);
}

}  // namespace

namespace {

// Arbitrary stored bytes (NaN and Inf codes of e4m3fn/e5m2 included) and scales (a few Inf/NaN),
// as a corrupt or foreign file may hold: dequantize still equals the reference on every element.
template <class Out>
void dequantize_arbitrary(format f, std::int64_t bs) {
  LOWBIT_SEED_TRACE();
  SCOPED_TRACE(std::string(lowbit::info(f).name) + " block " + std::to_string(bs) + " out " +
               lowbit::dtype_name(lowbit::dtype_of<Out>::value));
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed() + bs));
  const std::int64_t n = 40 * bs + 3, nb = lowbit::quant::block_count(n, bs);
  engine_output e;
  e.codes.resize(static_cast<std::size_t>(lowbit::code_bytes(f, n)));
  for (auto& c : e.codes) c = static_cast<std::uint8_t>(rng());
  for (std::int64_t b = 0; b < nb; ++b) {
    e.scales.push_back(std::ldexp(static_cast<float>(rng() % 1000) / 999.0f, static_cast<int>(rng() % 40) - 20));
    e.zero_points.push_back(static_cast<std::uint8_t>(rng()));
  }
  e.scales[3] = INFINITY;
  e.scales[5] = std::nanf("");
  // subnormal and tiny scales (subnormal results: the AVX512_BF16 conversion reads those as zero
  // and must not be used for them), a negative and a zero scale
  e.scales[7] = 1e-40f;
  e.scales[9] = 0x1p-130f;
  e.scales[11] = -0.75f;
  e.scales[13] = 0.0f;
  // From block 20 on, e4m3fn/e5m2 blocks hold only normal codes (the AVX-512 arithmetic path)
  // but block 30, which has one special code (zero, subnormal, Inf or NaN) among them; their
  // scales include the edges of the range where the bfloat16 conversion goes unchecked.
  const auto normal_code = [f](std::uint8_t c) {
    if (f == format::e4m3fn) return (c & 0x78) != 0 && (c & 0x7F) != 0x7F;
    return (c & 0x7C) != 0 && (c & 0x7C) != 0x7C;
  };
  if (f == format::e4m3fn || f == format::e5m2) {
    for (std::int64_t i = 20 * bs; i < n; ++i)
      while (!normal_code(e.codes[static_cast<std::size_t>(i)])) e.codes[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(rng());
    const std::uint8_t specials[2][8] = {{0x00, 0x80, 0x01, 0x87, 0x7F, 0xFF, 0x05, 0x82},    // e4m3fn
                                         {0x00, 0x80, 0x01, 0x83, 0x7F, 0xFE, 0x7C, 0xFC}};  // e5m2
    e.codes[static_cast<std::size_t>(30 * bs + static_cast<std::int64_t>(rng() % static_cast<unsigned>(bs)))] =
        specials[f == format::e5m2][rng() % 8];
  }
  const float edge_scales[] = {0x1p-100f, -0x1p-100f, 0x1.fffffep-101f, 0x1p-127f, 3.4028235e38f,
                               -0.0f,      0x1p-60f,   256.0f,          65536.0f};
  for (int k = 0; k < 9; ++k) e.scales[static_cast<std::size_t>(21 + k)] = edge_scales[k];
  // variants: best SIMD (AVX-512 where the CPU has it), portable, AVX2 only
  for (int variant = 0; variant < 3; ++variant) {
    lowbit::host::options opt;
    opt.simd = variant != 1;
    opt.avx512 = variant != 2;
    const auto got = run_dequantize<Out>(f, e, n, bs, false, opt);
    const auto want = lowbit_test::ref_dequantize<Out>(f, e.codes.data(), e.scales.data(), e.zero_points.data(), n, bs);
    for (std::int64_t i = 0; i < n; ++i) {
      if constexpr (std::is_same<Out, float>::value) {
        // a NaN code times a NaN scale: IEEE leaves the sign and payload of the result open
        if (std::isnan(want[i])) {
          ASSERT_TRUE(std::isnan(got[i])) << "element " << i << " variant " << variant;
          continue;
        }
      }
      ASSERT_EQ(raw(got[i]), raw(want[i])) << "element " << i << " variant " << variant;
    }
  }
}

TEST(Dequantize, ArbitraryCodesAndScales) {
  for (format f : {format::nf4, format::bnb_fp4, format::bnb_dynamic8, format::int8_absmax, format::uint8_zeropoint,
                   format::e4m3fn, format::e5m2, format::e2m1fn}) {
    for (std::int64_t bs : {32, 64, 4096, 48}) {
      dequantize_arbitrary<float>(f, bs);
      dequantize_arbitrary<lowbit::bf16>(f, bs);
      dequantize_arbitrary<lowbit::f16>(f, bs);
    }
  }
}

// ---- measure_error: the fused error statistics against a plain scalar loop ----------------------

// The definition: dequantize the whole tensor to float32, then one sequential loop in double.
template <class T>
lowbit::host::error_stats scalar_error(const std::vector<T>& x, const lowbit::quant_tensor& q) {
  std::vector<float> y(x.size());
  EXPECT_TRUE(lowbit::dequantize(q, y.data(), dtype::f32).ok());
  lowbit::host::error_stats r;
  r.count = static_cast<std::int64_t>(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double v = lowbit::to_float(x[i]);
    const double d = std::fabs(v - static_cast<double>(y[i]));
    r.max_abs = std::max(r.max_abs, d);
    r.sum_abs += d;
    r.sum_sq += v * v;
    r.sum_sq_err += d * d;
  }
  return r;
}

// measure_error's documented accuracy against the exact double loop: max_abs is the exact max
// rounded to float32 (a max of float32-rounded differences), or exact when it comes from a span
// summed again in double (max_from_double); each sum within 1e-5 relative (float32 lane sums of
// at most 128 terms; sequential double adds little on top), NaN where the exact sum is NaN.
void expect_same_error(const lowbit::host::error_stats& got, const lowbit::host::error_stats& want, const std::string& ctx,
                       bool max_from_double = false) {
  EXPECT_EQ(got.count, want.count) << ctx;
  EXPECT_EQ(got.max_abs, max_from_double ? want.max_abs : static_cast<double>(static_cast<float>(want.max_abs))) << ctx;
  const double g[3] = {got.sum_abs, got.sum_sq, got.sum_sq_err}, w[3] = {want.sum_abs, want.sum_sq, want.sum_sq_err};
  for (int k = 0; k < 3; ++k) {
    if (std::isnan(w[k])) {
      EXPECT_TRUE(std::isnan(g[k])) << ctx << " sum " << k << ": " << g[k];
    } else {
      EXPECT_NEAR(g[k], w[k], 1e-5 * w[k]) << ctx << " sum " << k;
    }
  }
}

std::uint64_t bits64(double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, 8);
  return u;
}

void expect_identical(const lowbit::host::error_stats& a, const lowbit::host::error_stats& b, const std::string& ctx) {
  EXPECT_EQ(a.count, b.count) << ctx;
  EXPECT_EQ(bits64(a.max_abs), bits64(b.max_abs)) << ctx;
  EXPECT_EQ(bits64(a.sum_abs), bits64(b.sum_abs)) << ctx;
  EXPECT_EQ(bits64(a.sum_sq), bits64(b.sum_sq)) << ctx;
  EXPECT_EQ(bits64(a.sum_sq_err), bits64(b.sum_sq_err)) << ctx;
}

// measure_error of x quantized as given, in every variant, against the double loop.
template <class T>
void check_measure_error_on(const std::vector<T>& x, format f, lowbit::granularity gran, bool dq, const std::vector<std::int64_t>& shape,
                            const std::string& ctx, bool max_from_double = false) {
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  lowbit::quantize_params p;
  p.fmt = f;
  p.gran = gran;
  p.double_quant = dq;
  p.options.allow_nonfinite = true;
  lowbit::quant_tensor q;
  ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype_of<T>::value, shape, p, q).ok()) << ctx;
  const lowbit::host::error_stats want = scalar_error(x, q);
  // variants: all threads and the best SIMD; 1 thread; 2 threads; portable code; AVX2 only
  lowbit::host::error_stats first;
  for (int variant = 0; variant < 5; ++variant) {
    lowbit::host::options opt;
    opt.threads = variant == 1 ? 1 : variant == 2 ? 2 : 0;
    opt.simd = variant != 3;
    opt.avx512 = variant != 4;
    lowbit::host::error_stats got;
    ASSERT_TRUE(lowbit::measure_error(x.data(), lowbit::dtype_of<T>::value, q, got, opt).ok()) << ctx;
    const std::string vctx = ctx + " variant " + std::to_string(variant);
    expect_same_error(got, want, vctx, max_from_double);
    // neither the thread count nor the code path changes a bit of the result
    if (variant == 0) first = got;
    else expect_identical(got, first, vctx);
    EXPECT_EQ(bits64(got.mean_abs()), bits64(got.sum_abs / static_cast<double>(n))) << vctx;  // NaN too
    if (std::isfinite(got.sum_sq_err)) {
      EXPECT_EQ(got.sqnr_db(), 10.0 * std::log10(got.sum_sq / got.sum_sq_err)) << vctx;
    }
  }
}

template <class T>
void check_measure_error(format f, lowbit::granularity gran, bool dq, const std::vector<std::int64_t>& shape) {
  LOWBIT_SEED_TRACE();
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  const std::string ctx = std::string(lowbit::info(f).name) + (dq ? "+dq" : "") + " in " + lowbit::dtype_name(lowbit::dtype_of<T>::value) +
                          " n " + std::to_string(n);
  check_measure_error_on(make_input<T>(n, 64, static_cast<std::uint64_t>(n * 7 + static_cast<int>(f))), f, gran, dq, shape, ctx);
}

TEST(MeasureError, MatchesScalarDefinition) {
  using g = lowbit::granularity;
  // many spans (error_spans: 2048 elements at block 64; slices of 2048 of blocks of 4096) and a
  // partial one, partial last blocks, odd 4-bit rows (blocks that start on odd elements), double
  // quantization, every input dtype
  check_measure_error<lowbit::f16>(format::nf4, g::per_block(64), true, {513, 129});
  check_measure_error<float>(format::nf4, g::per_block(64), false, {3, 16384 + 37});
  check_measure_error<lowbit::bf16>(format::bnb_fp4, g::per_block(4096), true, {70001});
  check_measure_error<lowbit::f16>(format::nf4, g::per_row(), false, {301, 333});
  check_measure_error<lowbit::f16>(format::int8_absmax, g::per_row(), false, {97, 1031});
  check_measure_error<float>(format::e4m3fn, g::per_block(32), false, {40000});
  check_measure_error<float>(format::uint8_zeropoint, g::per_tensor(), false, {33333});
  check_measure_error<lowbit::bf16>(format::bnb_dynamic8, g::per_block(256), true, {5, 7});
  // chunks of whole blocks that are not powers of two (rows of 320 and 4000 elements: 6 rows and
  // 1 row a chunk), e5m2, zero points, and partial last chunks: the in-register decode of
  // range_decoder::measure
  check_measure_error<float>(format::nf4, g::per_row(), true, {301, 320});
  check_measure_error<lowbit::f16>(format::e4m3fn, g::per_row(), false, {7, 4000});
  check_measure_error<lowbit::bf16>(format::e5m2, g::per_block(64), false, {3001});
  check_measure_error<float>(format::e2m1fn, g::per_block(32), false, {2, 2500});  // low nibble first
  check_measure_error<lowbit::bf16>(format::uint8_zeropoint, g::per_block(128), false, {3, 1000});
  // slices of blocks larger than a span: rows of 4001 (4-bit, slices starting on odd elements) and
  // 6144 (three whole slices a row, in registers)
  check_measure_error<lowbit::f16>(format::nf4, g::per_row(), false, {3, 4001});
  check_measure_error<lowbit::bf16>(format::nf4, g::per_row(), true, {2, 6144});
}

// Squares past float32's range (inputs above 1.8e19): those spans are summed again in double, so
// the sums stay finite and exact to the double loop's rounding; the spans between them keep
// float32. NaN inputs: NaN sums, max_abs over the rest.
TEST(MeasureError, SpansPastFloat32SummedInDouble) {
  LOWBIT_SEED_TRACE();
  const std::int64_t n = 3 * 2048 + 100;  // spans of 2048 at block 64, the last one partial
  for (int dt = 0; dt < 2; ++dt) {
    std::vector<float> xf = make_input<float>(n, 64, 77);
    for (std::int64_t i = 2048; i < 4096; ++i) xf[static_cast<std::size_t>(i)] *= 3e20f;  // span 1
    for (std::int64_t i = 3 * 2048; i < n; ++i) xf[static_cast<std::size_t>(i)] *= 1e25f;  // the partial span
    const std::string ctx = dt == 0 ? "float32 input" : "bfloat16 input";
    if (dt == 0) {
      check_measure_error_on(xf, format::nf4, lowbit::granularity::per_block(64), false, {n}, ctx, true);
      check_measure_error_on(xf, format::int8_absmax, lowbit::granularity::per_block(64), false, {n}, ctx, true);
    } else {
      std::vector<lowbit::bf16> xb(xf.size());
      for (std::size_t i = 0; i < xf.size(); ++i) xb[i] = narrow<lowbit::bf16>(xf[i]);
      check_measure_error_on(xb, format::nf4, lowbit::granularity::per_block(64), true, {n}, ctx, true);
    }
  }
  lowbit::host::error_stats e;
  {
    std::vector<float> x = make_input<float>(n, 64, 78);
    for (std::size_t i = 2048; i < 4096; ++i) x[i] *= 3e20f;
    lowbit::quant_tensor q;
    ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f32, {n}, lowbit::quantize_params{}, q).ok());
    ASSERT_TRUE(lowbit::measure_error(x.data(), dtype::f32, q, e).ok());
    EXPECT_TRUE(std::isfinite(e.sum_sq) && std::isfinite(e.sum_sq_err) && e.sum_sq > 1e40) << e.sum_sq << " " << e.sum_sq_err;
  }
  std::vector<float> x = make_input<float>(n, 64, 79);
  x[3000] = std::nanf("");
  check_measure_error_on(x, format::nf4, lowbit::granularity::per_block(64), false, {n}, "a NaN input", true);
  lowbit::quant_tensor q;
  lowbit::quantize_params p;
  p.options.allow_nonfinite = true;
  ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f32, {n}, p, q).ok());
  ASSERT_TRUE(lowbit::measure_error(x.data(), dtype::f32, q, e).ok());
  EXPECT_TRUE(std::isnan(e.sum_abs) && std::isnan(e.sum_sq) && std::isnan(e.sum_sq_err));
  EXPECT_TRUE(std::isfinite(e.max_abs) && e.max_abs > 0) << e.max_abs;
}

TEST(MeasureError, ZeroAndEmptyTensors) {
  for (std::int64_t n : {std::int64_t{0}, std::int64_t{1}, std::int64_t{100000}}) {
    const std::vector<lowbit::f16> x(static_cast<std::size_t>(n), lowbit::f16{});
    lowbit::quantize_params p;
    p.double_quant = true;
    lowbit::quant_tensor q;
    ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f16, {n}, p, q).ok());
    lowbit::host::error_stats e;
    e.max_abs = 1.0;  // overwritten
    ASSERT_TRUE(lowbit::measure_error(x.data(), dtype::f16, q, e).ok());
    EXPECT_EQ(e.count, n);
    EXPECT_EQ(e.max_abs, 0.0);
    EXPECT_EQ(e.sum_abs, 0.0);
    EXPECT_EQ(e.sum_sq, 0.0);
    EXPECT_EQ(e.sum_sq_err, 0.0);
    EXPECT_EQ(e.mean_abs(), 0.0);
    EXPECT_TRUE(std::isinf(e.sqnr_db()) && e.sqnr_db() > 0);  // exact: infinite SQNR
  }
}

TEST(MeasureError, BadArguments) {
  const std::vector<float> x(64, 1.0f);
  lowbit::quant_tensor q;
  ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f32, {64}, lowbit::quantize_params{}, q).ok());
  lowbit::host::error_stats e;
  EXPECT_EQ(lowbit::measure_error(nullptr, dtype::f32, q, e).code(), lowbit::errc::invalid_argument);
  EXPECT_EQ(lowbit::measure_error(x.data(), static_cast<dtype>(99), q, e).code(), lowbit::errc::invalid_argument);
}

}  // namespace
