// SPDX-License-Identifier: Apache-2.0
// The blockwise CUDA launchers against the host engine, bit for bit. Included twice:
//  - blockwise_simt_test.cpp: compiled by g++/clang++; the kernels run on the SIMT executor in
//    forward, reverse and random thread orders (strict mode), buffers are host memory;
//  - blockwise_device_test.cu: compiled by nvcc; the kernels run on a GPU (skipped without one).
// The including file defines `kt::buffer<T>` (device storage with upload/download),
// `kt::for_each_order(fn)` (runs fn once per schedule to cover) and `KT_REQUIRE_DEVICE()` (skips
// the test when it needs a GPU and there is none), and includes gtest.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace kt {

using lowbit::dtype;
using lowbit::format;

/// True in the SIMT checker build (every memory access checked, about 50x slower): the tests then
/// take fewer shapes, still covering partial blocks, odd sizes, misaligned inputs, several CTAs per
/// block and two offset chunks of double quantization.
#if defined(LOWBIT_SIMT_CHECKER) && LOWBIT_SIMT_CHECKER
constexpr bool thorough_checker = true;
#else
constexpr bool thorough_checker = false;
#endif

template <class T>
std::vector<T> input(std::int64_t n, std::int64_t bs, std::uint64_t salt) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<T> x(static_cast<std::size_t>(n));
  for (auto& v : x) v = lowbit::from_float<T>(normal(rng));
  if (n > 2 * bs)
    for (std::int64_t i = bs; i < 2 * bs; ++i) x[i] = lowbit::from_float<T>(0.0f);
  if (n > 5) x[n / 3] = lowbit::from_float<T>(-30.0f);
  return x;
}

struct host_result {
  std::vector<std::uint8_t> codes, zero_points, nested_codes;
  std::vector<float> scales, nested_scales;
  float offset = 0.0f;
};

template <class T>
host_result host_quantize(format f, const std::vector<T>& x, std::int64_t bs, bool nested, bool allow_nonfinite = false) {
  const std::int64_t n = static_cast<std::int64_t>(x.size()), nb = lowbit::quant::block_count(n, bs);
  host_result r;
  r.codes.resize(static_cast<std::size_t>(lowbit::code_bytes(f, n)));
  r.scales.resize(static_cast<std::size_t>(nb));
  r.zero_points.resize(static_cast<std::size_t>(nb));
  r.nested_codes.resize(static_cast<std::size_t>(nb));
  r.nested_scales.resize(static_cast<std::size_t>(lowbit::quant::block_count(nb, 256)));
  lowbit::quant_view q;
  q.fmt = f;
  q.numel = n;
  q.block_size = bs;
  q.codes = r.codes.data();
  q.scales = nested ? nullptr : r.scales.data();
  q.zero_points = r.zero_points.data();
  if (nested) {
    q.nested_codes = r.nested_codes.data();
    q.nested_scales = r.nested_scales.data();
  }
  lowbit::host::options opt;
  opt.allow_nonfinite = allow_nonfinite;
  const lowbit::status s = lowbit::host::quantize(x.data(), lowbit::dtype_of<T>::value, q, opt);
  EXPECT_TRUE(s.ok()) << s.message();
  r.offset = q.nested_offset;
  return r;
}

// Quantizes on the device (input at element offset `shift`, so shift 1 defeats 128-bit loads),
// dequantizes to Out on the device and the host, and compares everything with the host engine.
template <class T, class Out>
void check(format f, std::int64_t n, std::int64_t bs, bool nested, int shift) {
  LOWBIT_SEED_TRACE();
  const std::string ctx = std::string(lowbit::info(f).name) + " in " + lowbit::dtype_name(lowbit::dtype_of<T>::value) +
                          " out " + lowbit::dtype_name(lowbit::dtype_of<Out>::value) + " n " + std::to_string(n) +
                          " block " + std::to_string(bs) + (nested ? " nested" : "") + " shift " + std::to_string(shift);
  SCOPED_TRACE(ctx);
  const std::vector<T> x = input<T>(n, bs, static_cast<std::uint64_t>(n * 7 + bs));
  const host_result want = host_quantize(f, x, bs, nested);
  const std::int64_t nb = lowbit::quant::block_count(n, bs);

  std::vector<T> padded(x.size() + static_cast<std::size_t>(shift));
  std::copy(x.begin(), x.end(), padded.begin() + shift);
  buffer<T> dx(padded);
  // exact sizes: an access one past the end lands in a redzone (reported under the executor)
  buffer<std::uint8_t> dcodes(want.codes.size()), dzp(static_cast<std::size_t>(nb)), dncodes(static_cast<std::size_t>(nb));
  buffer<float> dscales(static_cast<std::size_t>(nb)), dnscales(want.nested_scales.size()), doffset(1);
  lowbit::quant_view q;
  q.fmt = f;
  q.numel = n;
  q.block_size = bs;
  q.codes = dcodes.get();
  q.scales = nested ? nullptr : dscales.get();
  q.zero_points = lowbit::info(f).zero_point ? dzp.get() : nullptr;
  if (nested) {
    q.nested_codes = dncodes.get();
    q.nested_scales = dnscales.get();
    q.nested_offset_device = doffset.get();
  }
  buffer<unsigned char> ws(lowbit::cuda::quantize_workspace_size(q));
  lowbit::status s = lowbit::cuda::quantize(dx.get() + shift, lowbit::dtype_of<T>::value, q, ws.get(),
                                            lowbit::cuda::quantize_workspace_size(q));
  ASSERT_TRUE(s.ok()) << s.message();
  s = lowbit::cuda::input_status(ws.get());
  ASSERT_TRUE(s.ok()) << s.message();

  const auto codes = dcodes.download();
  for (std::size_t i = 0; i < want.codes.size(); ++i) ASSERT_EQ(codes[i], want.codes[i]) << "code byte " << i;
  if (nested) {
    const auto nc = dncodes.download();
    const auto ns = dnscales.download();
    for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(nc[b], want.nested_codes[b]) << "nested code " << b;
    for (std::size_t j = 0; j < want.nested_scales.size(); ++j)
      ASSERT_EQ(lowbit_test::bits_of(ns[j]), lowbit_test::bits_of(want.nested_scales[j])) << "nested scale " << j;
    ASSERT_EQ(lowbit_test::bits_of(doffset.download()[0]), lowbit_test::bits_of(want.offset)) << "nested offset";
  } else {
    const auto sc = dscales.download();
    for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(lowbit_test::bits_of(sc[b]), lowbit_test::bits_of(want.scales[b])) << "scale " << b;
  }
  if (lowbit::info(f).zero_point) {
    const auto zp = dzp.download();
    for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(zp[b], want.zero_points[b]) << "zero point " << b;
  }

  // dequantize (device output at an element offset too) against the host engine
  buffer<Out> dout(static_cast<std::size_t>(n) + static_cast<std::size_t>(shift));
  s = lowbit::cuda::dequantize(q, dout.get() + shift, lowbit::dtype_of<Out>::value);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dout.download();
  lowbit::quant_view h = q;
  host_result hw = want;
  h.codes = hw.codes.data();
  h.scales = hw.scales.data();
  h.zero_points = hw.zero_points.data();
  h.nested_offset_device = nullptr;
  if (nested) {
    h.nested_codes = hw.nested_codes.data();
    h.nested_scales = hw.nested_scales.data();
    h.nested_offset = hw.offset;
  }
  std::vector<Out> ref(static_cast<std::size_t>(n));
  ASSERT_TRUE(lowbit::host::dequantize(h, ref.data(), lowbit::dtype_of<Out>::value).ok());
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_EQ(std::memcmp(&got[static_cast<std::size_t>(i + shift)], &ref[static_cast<std::size_t>(i)], sizeof(Out)), 0)
        << "dequantized element " << i;
}

const format kFormats[] = {format::nf4, format::bnb_fp4, format::bnb_dynamic8, format::int8_absmax,
                           format::uint8_zeropoint, format::e4m3fn, format::e5m2, format::e2m1fn};

}  // namespace kt

class Kernels : public ::testing::TestWithParam<lowbit::format> {};

TEST_P(Kernels, MatchHostEngine) {
  KT_REQUIRE_DEVICE();
  const lowbit::format f = GetParam();
  const std::vector<std::int64_t> block_sizes =
      kt::thorough_checker ? std::vector<std::int64_t>{64, 37} : std::vector<std::int64_t>{32, 64, 256, 4096, 3, 37};
  kt::for_each_order([&] {
    for (std::int64_t bs : block_sizes) {
      for (std::int64_t n : {std::int64_t{1}, std::int64_t{2}, bs - 1, bs + 1, 3 * bs + 17}) {
        if (n < 1) continue;
        kt::check<float, float>(f, n, bs, false, 0);
        kt::check<float, lowbit::bf16>(f, n, bs, false, 1);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
    kt::check<lowbit::bf16, lowbit::f16>(f, kt::thorough_checker ? 700 : 5000, 64, false, 0);
    kt::check<lowbit::f16, float>(f, kt::thorough_checker ? 701 : 5001, 128, false, 1);
    // per tensor: several CTAs per block (stats_chunk elements each)
    kt::check<float, lowbit::f16>(f, kt::thorough_checker ? 8200 : 20000, kt::thorough_checker ? 8200 : 20000, false, 0);
  });
}

class KernelsDoubleQuant : public ::testing::TestWithParam<lowbit::format> {};

TEST_P(KernelsDoubleQuant, MatchHostEngine) {
  KT_REQUIRE_DEVICE();
  const lowbit::format f = GetParam();
  kt::for_each_order([&] {
    kt::check<float, float>(f, kt::thorough_checker ? 64 * 30 + 5 : 64 * 300 + 5, 64, true, 0);
    kt::check<lowbit::bf16, lowbit::bf16>(f, 32 * 1100, 32, true, 1);  // > 1024 blocks: two offset chunks
  });
}

INSTANTIATE_TEST_SUITE_P(AllFormats, Kernels, ::testing::ValuesIn(kt::kFormats),
                         [](const ::testing::TestParamInfo<lowbit::format>& p) { return std::string(lowbit::info(p.param).name); });
// double quantization is defined for the bitsandbytes formats only
INSTANTIATE_TEST_SUITE_P(BitsandbytesFormats, KernelsDoubleQuant,
                         ::testing::Values(lowbit::format::nf4, lowbit::format::bnb_fp4, lowbit::format::bnb_dynamic8),
                         [](const ::testing::TestParamInfo<lowbit::format>& p) { return std::string(lowbit::info(p.param).name); });

TEST(KernelErrors, NonFiniteWritesNothing) {
  KT_REQUIRE_DEVICE();
  std::vector<float> host(1000, 0.5f);
  host[600] = std::nanf("");
  host[700] = -INFINITY;
  kt::buffer<float> x(host);
  kt::buffer<std::uint8_t> codes(std::vector<std::uint8_t>(1000, 0xAB));
  kt::buffer<float> scales(std::vector<float>(16, 9.0f));
  lowbit::quant_view q;
  q.fmt = lowbit::format::e4m3fn;
  q.numel = 1000;
  q.block_size = 64;
  q.codes = codes.get();
  q.scales = scales.get();
  kt::buffer<unsigned char> ws(lowbit::cuda::quantize_workspace_size(q));
  ASSERT_TRUE(lowbit::cuda::quantize(x.get(), lowbit::dtype::f32, q, ws.get(), lowbit::cuda::quantize_workspace_size(q)).ok());
  const lowbit::status s = lowbit::cuda::input_status(ws.get());
  EXPECT_EQ(s.code(), lowbit::errc::non_finite);
  EXPECT_NE(std::string(s.message()).find("element 600"), std::string::npos) << s.message();
  for (auto c : codes.download()) ASSERT_EQ(c, 0xAB);
  for (float v : scales.download()) ASSERT_EQ(v, 9.0f);
}

TEST(KernelErrors, BadArguments) {
  KT_REQUIRE_DEVICE();
  kt::buffer<float> x(std::vector<float>(130, 1.0f));
  kt::buffer<std::uint8_t> codes(130);
  kt::buffer<float> scales(8);
  kt::buffer<unsigned char> ws(4096);
  auto base = [&] {
    lowbit::quant_view q;
    q.fmt = lowbit::format::nf4;
    q.numel = 128;
    q.block_size = 64;
    q.codes = codes.get();
    q.scales = scales.get();
    return q;
  };
  auto expect = [](lowbit::status s, lowbit::errc code, const char* needle) {
    EXPECT_EQ(s.code(), code) << s.message();
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message();
  };
  lowbit::quant_view q = base();
  expect(lowbit::cuda::quantize(nullptr, lowbit::dtype::f32, q, ws.get(), 4096), lowbit::errc::invalid_argument, "x is null");
  const void* misaligned = reinterpret_cast<const unsigned char*>(x.get()) + 1;
  expect(lowbit::cuda::quantize(misaligned, lowbit::dtype::f32, q, ws.get(), 4096), lowbit::errc::misaligned, "x (");
  expect(lowbit::cuda::quantize(x.get(), lowbit::dtype::f32, q, ws.get(), 16), lowbit::errc::invalid_argument, "workspace has 16 bytes");
  expect(lowbit::cuda::quantize(x.get(), lowbit::dtype::f32, q, ws.get() + 4, 4000), lowbit::errc::misaligned, "workspace");
  expect(lowbit::cuda::quantize(x.get(), lowbit::dtype::f32, q, nullptr, 4096), lowbit::errc::invalid_argument, "workspace is null");
  q.block_size = 0;
  expect(lowbit::cuda::quantize(x.get(), lowbit::dtype::f32, q, ws.get(), 4096), lowbit::errc::invalid_argument, "block_size is 0");
  q = base();
  q.scales = reinterpret_cast<float*>(reinterpret_cast<unsigned char*>(scales.get()) + 2);
  expect(lowbit::cuda::quantize(x.get(), lowbit::dtype::f32, q, ws.get(), 4096), lowbit::errc::misaligned, "scales");
  q = base();
  q.numel = std::int64_t{1} << 52;
  expect(lowbit::cuda::dequantize(q, x.get(), lowbit::dtype::f32), lowbit::errc::invalid_argument, "index range");
  q = base();
  q.fmt = lowbit::format::int8_absmax;
  q.code_table = scales.get();
  expect(lowbit::cuda::dequantize(q, x.get(), lowbit::dtype::f32), lowbit::errc::unsupported, "code_table");
  q = base();
  expect(lowbit::cuda::dequantize(q, reinterpret_cast<unsigned char*>(x.get()) + 1, lowbit::dtype::bf16),
         lowbit::errc::misaligned, "out");
  expect(lowbit::cuda::dequantize(q, x.get(), static_cast<lowbit::dtype>(5)), lowbit::errc::invalid_argument, "dtype 5");
}

// The kernels index in 64 bits: thread indices past 2^31 are exact.
namespace kt {

/// The streaming dequantizer with at most `max_ctas` CTAs (so that every warp loops over several
/// chunks) on the host engine's quantization of `n` elements in blocks of `bs` (a power of two),
/// into 16-byte aligned Out: bit for bit the host engine's dequantization.
template <class Out>
void check_stream(format f, std::int64_t n, std::int64_t bs, bool nested, std::int64_t max_ctas) {
  LOWBIT_SEED_TRACE();
  SCOPED_TRACE(std::string(lowbit::info(f).name) + " out " + lowbit::dtype_name(lowbit::dtype_of<Out>::value) + " n " +
               std::to_string(n) + " block " + std::to_string(bs) + (nested ? " nested" : "") + " ctas " +
               std::to_string(max_ctas));
  const std::vector<float> x = input<float>(n, bs, static_cast<std::uint64_t>(n * 5 + bs));
  host_result hw = host_quantize(f, x, bs, nested);
  lowbit::quant_view h;
  h.fmt = f;
  h.numel = n;
  h.block_size = bs;
  h.codes = hw.codes.data();
  h.scales = nested ? nullptr : hw.scales.data();
  h.zero_points = lowbit::info(f).zero_point ? hw.zero_points.data() : nullptr;
  if (nested) {
    h.nested_codes = hw.nested_codes.data();
    h.nested_scales = hw.nested_scales.data();
    h.nested_offset = hw.offset;
  }
  std::vector<Out> want(static_cast<std::size_t>(n));
  ASSERT_TRUE(lowbit::host::dequantize(h, want.data(), lowbit::dtype_of<Out>::value).ok());

  buffer<std::uint8_t> dcodes(hw.codes), dzp(hw.zero_points), dncodes(hw.nested_codes);
  buffer<float> dscales(hw.scales), dnscales(hw.nested_scales);
  lowbit::quant_view q = h;
  q.codes = dcodes.get();
  q.scales = nested ? nullptr : dscales.get();
  q.zero_points = lowbit::info(f).zero_point ? dzp.get() : nullptr;
  if (nested) {
    q.nested_codes = dncodes.get();
    q.nested_scales = dnscales.get();
  }
  buffer<Out> dout(static_cast<std::size_t>(n));
  const lowbit::status s = lowbit::cuda::detail::dequantize_typed(q, dout.get(), nullptr, max_ctas);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dout.download();
  for (std::int64_t i = 0; i < n; ++i)
    ASSERT_EQ(std::memcmp(&got[static_cast<std::size_t>(i)], &want[static_cast<std::size_t>(i)], sizeof(Out)), 0)
        << "dequantized element " << i;
}

/// How check_quant_stream feeds the one-pass quantizer.
enum class stream_input {
  finite,         ///< default options
  allow,          ///< NaN and +-Inf in the input, options::allow_nonfinite: the host's bytes, status ok
  discard_error,  ///< NaN/Inf in two CTA chunks, untouched_on_error = false: the first index reported
};

/// The one-pass quantizer (detail::quantize_typed with at most `max_ctas` CTAs, so CTAs loop over
/// several chunks) against the host engine on `n` elements of T in blocks of `bs`.
template <class T>
void check_quant_stream(format f, std::int64_t n, std::int64_t bs, bool nested, std::int64_t max_ctas, stream_input mode) {
  LOWBIT_SEED_TRACE();
  SCOPED_TRACE(std::string(lowbit::info(f).name) + " in " + lowbit::dtype_name(lowbit::dtype_of<T>::value) + " n " +
               std::to_string(n) + " block " + std::to_string(bs) + (nested ? " nested" : "") + " ctas " +
               std::to_string(max_ctas) + " mode " + std::to_string(static_cast<int>(mode)));
  std::vector<T> x = input<T>(n, bs, static_cast<std::uint64_t>(n * 3 + bs));
  const std::int64_t bad0 = n - 3, bad1 = n > 9000 ? 4100 + 7 : n / 2;  // bad1 < bad0, other chunk
  if (mode != stream_input::finite) {
    x[static_cast<std::size_t>(bad0)] = lowbit::from_float<T>(-INFINITY);
    x[static_cast<std::size_t>(bad1)] = lowbit::from_float<T>(std::nanf(""));
    if (n > 300) x[200] = lowbit::from_float<T>(INFINITY);
  }
  const std::int64_t nb = lowbit::quant::block_count(n, bs);
  buffer<T> dx(x);
  buffer<std::uint8_t> dcodes(static_cast<std::size_t>(lowbit::code_bytes(f, n))), dzp(static_cast<std::size_t>(nb)),
      dncodes(static_cast<std::size_t>(nb));
  buffer<float> dscales(static_cast<std::size_t>(nb)), dnscales(static_cast<std::size_t>(lowbit::quant::block_count(nb, 256))), doffset(1);
  lowbit::quant_view q;
  q.fmt = f;
  q.numel = n;
  q.block_size = bs;
  q.codes = dcodes.get();
  q.scales = nested ? nullptr : dscales.get();
  q.zero_points = lowbit::info(f).zero_point ? dzp.get() : nullptr;
  if (nested) {
    q.nested_codes = dncodes.get();
    q.nested_scales = dnscales.get();
    q.nested_offset_device = doffset.get();
  }
  ASSERT_TRUE(lowbit::cuda::detail::can_stream_quantize(dx.get(), q)) << "not the one-pass path";
  buffer<unsigned char> ws(lowbit::cuda::quantize_workspace_size(q));
  lowbit::cuda::options opt;
  opt.allow_nonfinite = mode == stream_input::allow;
  opt.untouched_on_error = mode != stream_input::discard_error;
  lowbit::status s = lowbit::cuda::detail::quantize_typed(dx.get(), q, opt, ws.get(), nullptr, max_ctas);
  ASSERT_TRUE(s.ok()) << s.message();
  s = lowbit::cuda::input_status(ws.get());
  if (mode == stream_input::discard_error) {
    EXPECT_EQ(s.code(), lowbit::errc::non_finite);
    const std::int64_t first = n > 300 ? 200 : bad1;
    EXPECT_NE(std::string(s.message()).find("element " + std::to_string(first) + " "), std::string::npos) << s.message();
    return;
  }
  ASSERT_TRUE(s.ok()) << s.message();
  const host_result want = host_quantize(f, x, bs, nested, mode == stream_input::allow);
  const auto codes = dcodes.download();
  for (std::size_t i = 0; i < want.codes.size(); ++i) ASSERT_EQ(codes[i], want.codes[i]) << "code byte " << i;
  if (nested) {
    const auto nc = dncodes.download();
    const auto ns = dnscales.download();
    for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(nc[b], want.nested_codes[b]) << "nested code " << b;
    for (std::size_t j = 0; j < want.nested_scales.size(); ++j)
      ASSERT_EQ(lowbit_test::bits_of(ns[j]), lowbit_test::bits_of(want.nested_scales[j])) << "nested scale " << j;
    ASSERT_EQ(lowbit_test::bits_of(doffset.download()[0]), lowbit_test::bits_of(want.offset)) << "nested offset";
  } else {
    const auto sc = dscales.download();
    for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(lowbit_test::bits_of(sc[b]), lowbit_test::bits_of(want.scales[b])) << "scale " << b;
  }
  if (lowbit::info(f).zero_point) {
    const auto zp = dzp.download();
    for (std::int64_t b = 0; b < nb; ++b) ASSERT_EQ(zp[b], want.zero_points[b]) << "zero point " << b;
  }
}

}  // namespace kt

class StreamingQuantize : public ::testing::TestWithParam<lowbit::format> {};

// CTAs looping over several 4096-element chunks, then the partial chunk; blocks from 16 elements
// (4 float32 or 2 16-bit units) through a warp's 512 elements (shuffles only) to a CTA's 4096
// (across warps); double quantization with more than one offset chunk completed in the main loop
// and in the tail; non-finite input in each mode.
TEST_P(StreamingQuantize, OnePassMatchesHostEngine) {
  KT_REQUIRE_DEVICE();
  const lowbit::format f = GetParam();
  const std::int64_t big = kt::thorough_checker ? 3 * 4096 + 4 * 37 + 5 : 7 * 4096 + 4 * 37 + 5;
  kt::for_each_order([&] {
    for (std::int64_t bs : {std::int64_t{16}, std::int64_t{64}, std::int64_t{512}, std::int64_t{1024}, std::int64_t{4096}}) {
      kt::check_quant_stream<float>(f, big, bs, false, 2, kt::stream_input::finite);
      kt::check_quant_stream<lowbit::bf16>(f, big - 1, bs, false, 3, kt::stream_input::finite);
      kt::check_quant_stream<lowbit::f16>(f, big + 2, bs, false, 1, kt::stream_input::finite);
      if (::testing::Test::HasFatalFailure()) return;
    }
    kt::check_quant_stream<float>(f, 4 * 4096, 16, false, 2, kt::stream_input::finite);  // no tail
    kt::check_quant_stream<float>(f, 37, 16, false, 2, kt::stream_input::finite);        // tail only
    kt::check_quant_stream<lowbit::bf16>(f, 4 * 4096 + 9, 32, false, 3, kt::stream_input::finite);
    kt::check_quant_stream<float>(f, big, 64, false, 2, kt::stream_input::allow);
    kt::check_quant_stream<lowbit::bf16>(f, big, 2048, false, 2, kt::stream_input::allow);
    kt::check_quant_stream<float>(f, big, 64, false, 2, kt::stream_input::discard_error);
    kt::check_quant_stream<lowbit::bf16>(f, 250, 32, false, 1, kt::stream_input::discard_error);
    if (lowbit::info(f).bnb) {
      // 1024-block offset chunks: two complete in the main loop (blocks of 32 and 64), the last in the tail
      kt::check_quant_stream<float>(f, kt::thorough_checker ? 32 * 2100 + 3 : 64 * 2100 + 3, kt::thorough_checker ? 32 : 64, true, 3,
                                    kt::stream_input::finite);
      kt::check_quant_stream<lowbit::bf16>(f, big, 1024, true, 2, kt::stream_input::finite);
      kt::check_quant_stream<lowbit::f16>(f, 5000, 16, true, 2, kt::stream_input::allow);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(AllFormats, StreamingQuantize, ::testing::ValuesIn(kt::kFormats),
                         [](const ::testing::TestParamInfo<lowbit::format>& p) { return std::string(lowbit::info(p.param).name); });

// The cell table is built by device code; under the executor it runs on the host directly.
#if !defined(__CUDACC__)
namespace kt {

/// Every cell of the one-pass quantizer's codebook table against the codec, at both ends of the
/// cell and at its threshold +-1 ulp, over x in [-2, 1.98] (nf4) and |x| in [0, 1.98] (bnb_fp4).
template <format F>
void check_codebook_cells() {
  using codec = typename lowbit::quant::scheme<F>::codec;
  std::vector<lowbit::cuda::detail::codebook_cell> got(static_cast<std::size_t>(lowbit::cuda::detail::codebook_cells));
  for (int n = 0; n < lowbit::cuda::detail::codebook_cells; ++n) got[static_cast<std::size_t>(n)] = lowbit::cuda::detail::make_codebook_cell<F>(n);
  std::vector<float> probes;
  for (float x = -2.0f; x < 1.984f; x = std::nextafter(x, 2.0f) + 1.0f / 4096.0f) probes.push_back(x);
  for (int i = 0; i < (F == format::nf4 ? 15 : 7); ++i) {
    const float t = codec::threshold(i);
    for (float v : {t, std::nextafter(t, -3.0f), std::nextafter(t, 3.0f), -t, std::nextafter(-t, -3.0f), std::nextafter(-t, 3.0f)}) probes.push_back(v);
  }
  for (int m = 1; m < 128; ++m) {
    for (int d = -1; d <= 1; ++d) {  // around the boundary of cells m - 1 and m, and its rounding slack
      const float b = (8.0f * static_cast<float>(m) - 512.5f + 0.5f * static_cast<float>(d)) / 256.0f;
      for (float v : {b, std::nextafter(b, -3.0f), std::nextafter(b, 3.0f)}) probes.push_back(v);
    }
  }
  for (float v : {0.0f, -0.0f, 1e-45f, -1e-45f, 1.0f, -1.0f, 1.0000001f, -1.0000001f, std::nanf(""), -std::nanf("")}) probes.push_back(v);
  for (float v : probes) {
    if (F == format::bnb_fp4 && !(std::fabs(v) < 1.984f) && v == v) continue;
    ASSERT_EQ(lowbit::cuda::detail::codebook_encode<F>(v, got.data()), static_cast<unsigned>(codec::encode(v))) << "x = " << v;
  }
}

/// Every cell of bnb_dynamic8's table (dyn8_encode) against the codec: both ends of every cell,
/// every threshold and its neighbours (a cell holding two thresholds fails at its upper end), the
/// signed zeros, subnormals, NaN of either sign, +-Inf and values past +-1, and a seeded sample.
inline void check_dyn8_cells() {
  namespace d = lowbit::cuda::detail;
  using codec = lowbit::codecs::bnb_dynamic8;
  std::vector<float> thresholds(255);
  for (int k = 0; k < 255; ++k) thresholds[static_cast<std::size_t>(k)] = d::dyn8_threshold(k);
  std::vector<d::codebook_cell> cells(static_cast<std::size_t>(d::dyn8_cells));
  for (int m = 0; m < d::dyn8_cells; ++m) cells[static_cast<std::size_t>(m)] = d::make_dyn8_cell(m, thresholds.data());
  std::vector<float> probes;
  for (unsigned j = 0; j <= d::dyn8_cells_per_sign; ++j) {
    const float edge = lowbit_test::float_of((d::dyn8_first_key + j) << 17);
    for (float v : {edge, std::nextafter(edge, 0.0f), std::nextafter(edge, 4.0f)}) {
      probes.push_back(v);
      probes.push_back(-v);
    }
  }
  for (float t : thresholds) {
    for (float v : {t, std::nextafter(t, -4.0f), std::nextafter(t, 4.0f)}) probes.push_back(v);
  }
  for (int c = 0; c < 256; ++c) {
    const float v = codec::decode(static_cast<std::uint8_t>(c));
    for (float w : {v, std::nextafter(v, -4.0f), std::nextafter(v, 4.0f)}) probes.push_back(w);
  }
  for (float v : {0.0f, -0.0f, 1e-45f, -1e-45f, 1e-38f, -1e-38f, 2.4e-7f, -2.4e-7f, 1.0f, -1.0f, 1.0000001f, -1.0000001f, 1.98f,
                  -1.98f, 2.0f, -2.0f, 3.0f, -3.0f, 1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::nanf(""), -std::nanf("")}) {
    probes.push_back(v);
  }
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  std::uniform_int_distribution<std::uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    // mostly |v| below 4; NaNs quiet, as every product x * inv is (fmaxf of a signaling NaN is
    // NaN on the host, the other operand on a GPU)
    const std::uint32_t u = any(rng);
    const float v = lowbit_test::float_of((u & 0x7F800000u) == 0x7F800000u ? u | 0x00400000u : u);
    probes.push_back(std::fabs(v) < 4.0f || v != v ? v : v * 1e-38f);
  }
  for (float v : probes) {
    ASSERT_EQ(d::dyn8_encode(v, cells.data()), static_cast<unsigned>(codec::encode(v))) << "x = " << v << " (" << lowbit_test::hex(lowbit_test::bits_of(v)) << ")";
  }
}

}  // namespace kt

TEST(StreamingQuantizeCells, EveryCellMatchesTheCodec) {
  kt::check_codebook_cells<lowbit::format::nf4>();
  kt::check_codebook_cells<lowbit::format::bnb_fp4>();
  kt::check_dyn8_cells();
}
#endif


class StreamingDequantize : public ::testing::TestWithParam<lowbit::format> {};

// Several chunks per warp (1-2 CTAs), whole units after the last chunk, a partial last unit, blocks
// of 8 (one unit of 16-bit output) to 4096, double quantization for the bitsandbytes formats.
TEST_P(StreamingDequantize, GridStrideMatchesHostEngine) {
  KT_REQUIRE_DEVICE();
  const lowbit::format f = GetParam();
  const std::int64_t big = kt::thorough_checker ? 2 * 256 * 4 * 8 + 8 * 37 + 5 : 6 * 256 * 4 * 8 + 8 * 37 + 5;
  kt::for_each_order([&] {
    for (std::int64_t bs : {std::int64_t{8}, std::int64_t{64}, std::int64_t{4096}}) {
      kt::check_stream<lowbit::bf16>(f, big, bs, false, 1);
      kt::check_stream<lowbit::f16>(f, big - 2, bs, false, 2);
      kt::check_stream<float>(f, big + 3, bs, false, 1);
      if (::testing::Test::HasFatalFailure()) return;
    }
    kt::check_stream<lowbit::bf16>(f, 13, 8, false, 1);  // fewer elements than one chunk
    if (lowbit::info(f).bnb) {
      kt::check_stream<lowbit::bf16>(f, big, 64, true, 2);
      kt::check_stream<float>(f, big + 1, 64, true, 1);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(AllFormats, StreamingDequantize, ::testing::ValuesIn(kt::kFormats),
                         [](const ::testing::TestParamInfo<lowbit::format>& p) { return std::string(lowbit::info(p.param).name); });

TEST(KernelIndexMath, PastTwoToThe31) {
  using lowbit::cuda::detail::linear_index;
  EXPECT_EQ(linear_index(0x7FFFFFFFu, 256u, 255u), std::int64_t{0x7FFFFFFF} * 256 + 255);
  EXPECT_EQ(linear_index(1u << 24, 256u, 3u), (std::int64_t{1} << 32) + 3);
  static_assert(linear_index(8388608u, 256u, 0u) == std::int64_t{1} << 31, "2^31 threads");
  // a 4-bit tensor of 2^33 elements: its last group of codes starts past 2^32 bytes
  const std::int64_t n = std::int64_t{1} << 33;
  const std::int64_t groups = (lowbit::code_bytes(lowbit::format::nf4, n) + 15) / 16;
  EXPECT_EQ(groups, std::int64_t{1} << 28);
  EXPECT_EQ(linear_index(static_cast<unsigned>((groups - 1) / 256), 256u, 255u) * 32, n - 32);
}

// ---- QuantTensor with device storage ----------------------------------------------------------

namespace kt {

/// Every array of two tensors, compared byte for byte (both on the host).
inline void expect_same_tensor(const lowbit::quant_tensor& a, const lowbit::quant_tensor& b) {
  ASSERT_EQ(a.fmt(), b.fmt());
  ASSERT_EQ(a.shape(), b.shape());
  ASSERT_EQ(a.numel(), b.numel());
  ASSERT_EQ(a.block_size(), b.block_size());
  ASSERT_EQ(a.double_quantized(), b.double_quantized());
  ASSERT_EQ(a.nbytes(), b.nbytes());
  const std::int64_t nb = a.blocks();
  const auto cb = static_cast<std::size_t>(lowbit::code_bytes(a.fmt(), a.numel()));
  for (std::size_t i = 0; i < cb; ++i) ASSERT_EQ(a.codes()[i], b.codes()[i]) << "code byte " << i;
  if (a.double_quantized()) {
    for (std::int64_t i = 0; i < nb; ++i) ASSERT_EQ(a.nested_codes()[i], b.nested_codes()[i]) << "nested code " << i;
    for (std::int64_t i = 0; i < a.view().nested_blocks(); ++i)
      ASSERT_EQ(lowbit_test::bits_of(a.nested_scales()[i]), lowbit_test::bits_of(b.nested_scales()[i])) << "nested scale " << i;
    ASSERT_EQ(lowbit_test::bits_of(a.nested_offset()), lowbit_test::bits_of(b.nested_offset())) << "nested offset";
  } else {
    for (std::int64_t i = 0; i < nb; ++i)
      ASSERT_EQ(lowbit_test::bits_of(a.scales()[i]), lowbit_test::bits_of(b.scales()[i])) << "scale " << i;
  }
  if (lowbit::info(a.fmt()).zero_point) {
    for (std::int64_t i = 0; i < nb; ++i) ASSERT_EQ(a.zero_points()[i], b.zero_points()[i]) << "zero point " << i;
  }
}

/// Quantizes on the host and on the device into quant_tensors; the device tensor, copied back,
/// equals the host one, and both dequantize to the same bytes.
template <class T>
void check_tensor(format f, std::vector<std::int64_t> shape, lowbit::granularity g, bool nested) {
  LOWBIT_SEED_TRACE();
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  SCOPED_TRACE(std::string(lowbit::info(f).name) + " " + lowbit::dtype_name(lowbit::dtype_of<T>::value) + " n " +
               std::to_string(n) + (nested ? " nested" : ""));
  const std::vector<T> x = input<T>(n, 64, 0x7e45u + static_cast<std::uint64_t>(n));
  lowbit::quantize_params p;
  p.fmt = f;
  p.gran = g;
  p.double_quant = nested;
  lowbit::quant_tensor want;
  lowbit::status s = lowbit::quantize(x.data(), lowbit::dtype_of<T>::value, shape, p, want);
  ASSERT_TRUE(s.ok()) << s.message();

  buffer<T> dx(x);
  const lowbit::allocator dev = lowbit::cuda::stream_allocator();
  lowbit::quant_tensor q;
  s = lowbit::cuda::quantize(dx.get(), lowbit::dtype_of<T>::value, shape, p, q, dev);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(q.location(), lowbit::memory_space::device);
  EXPECT_EQ(lowbit_test::bits_of(q.nested_offset()), lowbit_test::bits_of(want.nested_offset()));
  lowbit::quant_tensor back;
  s = lowbit::cuda::to_host(q, back);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(back.location(), lowbit::memory_space::host);
  expect_same_tensor(back, want);

  // dequantize the device tensor, and the host tensor moved to the device, against the host
  std::vector<lowbit::bf16> ref(static_cast<std::size_t>(n));
  ASSERT_TRUE(lowbit::dequantize(want, ref.data(), lowbit::dtype::bf16).ok());
  lowbit::quant_tensor moved;
  s = lowbit::cuda::to_device(want, moved, dev);
  ASSERT_TRUE(s.ok()) << s.message();
  for (const lowbit::quant_tensor* t : {&q, &moved}) {
    buffer<lowbit::bf16> dout(static_cast<std::size_t>(n));
    s = lowbit::cuda::dequantize(*t, dout.get(), lowbit::dtype::bf16);
    ASSERT_TRUE(s.ok()) << s.message();
    const auto got = dout.download();
    for (std::int64_t i = 0; i < n; ++i)
      ASSERT_EQ(got[static_cast<std::size_t>(i)].bits, ref[static_cast<std::size_t>(i)].bits) << "element " << i;
  }
}

}  // namespace kt

TEST(DeviceQuantTensor, MatchesHostTensor) {
  KT_REQUIRE_DEVICE();
  kt::for_each_order([&] {
    for (lowbit::format f : kt::kFormats) {
      kt::check_tensor<float>(f, {37, 129}, lowbit::granularity::per_block(64), false);
      kt::check_tensor<lowbit::bf16>(f, {16, 100}, lowbit::granularity::per_row(), false);
      kt::check_tensor<lowbit::f16>(f, {kt::thorough_checker ? 301 : 3001}, lowbit::granularity::per_tensor(), false);
      if (::testing::Test::HasFatalFailure()) return;
    }
    for (lowbit::format f : {lowbit::format::nf4, lowbit::format::bnb_fp4, lowbit::format::bnb_dynamic8})
      kt::check_tensor<float>(f, {kt::thorough_checker ? 30 : 300, 64}, lowbit::granularity::per_block(64), true);
    kt::check_tensor<float>(lowbit::format::nf4, {0, 64}, lowbit::granularity::per_block(64), true);  // empty
  });
}

TEST(DeviceQuantTensor, CodeTablesTravelToTheDevice) {
  KT_REQUIRE_DEVICE();
  // a checkpoint's quant_map differing from the built-in table (every entry negated) decodes on the
  // device exactly as on the host
  std::vector<float> x(640);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 23) - 11) * 0.1f;
  lowbit::quantize_params p;
  p.double_quant = true;
  lowbit::quant_tensor h;
  ASSERT_TRUE(lowbit::quantize(x.data(), lowbit::dtype::f32, {10, 64}, p, h).ok());
  float table[16];
  for (int c = 0; c < 16; ++c) table[c] = -lowbit::codecs::nf4::decode(static_cast<std::uint8_t>(c));
  ASSERT_TRUE(h.set_code_table(table, 16).ok());
  std::vector<float> want(x.size());
  ASSERT_TRUE(lowbit::dequantize(h, want.data(), lowbit::dtype::f32).ok());
  lowbit::quant_tensor d;
  ASSERT_TRUE(lowbit::cuda::to_device(h, d).ok());
  kt::buffer<float> out(x.size());
  ASSERT_TRUE(lowbit::cuda::dequantize(d, out.get(), lowbit::dtype::f32).ok());
  const auto got = out.download();
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(lowbit_test::bits_of(got[i]), lowbit_test::bits_of(want[i])) << i;
}

TEST(DeviceQuantTensor, Errors) {
  KT_REQUIRE_DEVICE();
  std::vector<float> x(256, 0.25f);
  x[77] = INFINITY;
  kt::buffer<float> dx(x);
  lowbit::quant_tensor q, h;
  ASSERT_TRUE(lowbit::quantize(std::vector<float>(64, 1.0f).data(), lowbit::dtype::f32, {64}, {}, h).ok());
  ASSERT_TRUE(lowbit::cuda::to_device(h, q).ok());
  const std::int64_t before = q.numel();
  // non-finite input: named, and `q` keeps what it held
  lowbit::status s = lowbit::cuda::quantize(dx.get(), lowbit::dtype::f32, {256}, {}, q);
  EXPECT_EQ(s.code(), lowbit::errc::non_finite);
  EXPECT_NE(std::string(s.message()).find("element 77"), std::string::npos) << s.message();
  EXPECT_EQ(q.numel(), before);
  // the wrong memory space, by name
  std::vector<float> out(64);
  s = lowbit::dequantize(q, out.data(), lowbit::dtype::f32);
  EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
  EXPECT_NE(std::string(s.message()).find("device memory"), std::string::npos) << s.message();
  s = lowbit::cuda::dequantize(h, dx.get(), lowbit::dtype::f32);
  EXPECT_NE(std::string(s.message()).find("host memory"), std::string::npos) << s.message();
  lowbit::quant_tensor tmp;
  EXPECT_FALSE(lowbit::cuda::to_device(q, tmp).ok());
  EXPECT_FALSE(lowbit::cuda::to_host(h, tmp).ok());
  s = lowbit::cuda::quantize(dx.get(), lowbit::dtype::f32, {256}, {}, tmp, lowbit::allocator::host());
  EXPECT_NE(std::string(s.message()).find("not a device allocator"), std::string::npos) << s.message();
  lowbit::quantize_params bad;
  bad.gran = lowbit::granularity::per_block(48);
  s = lowbit::cuda::quantize(dx.get(), lowbit::dtype::f32, {256}, bad, tmp);
  EXPECT_NE(std::string(s.message()).find("block size 48"), std::string::npos) << s.message();
}

TEST(DeviceQuantTensor, Int8WeightsView) {
  KT_REQUIRE_DEVICE();
  std::vector<float> w(6 * 40);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int>(i % 17) - 8) * 0.03f;
  lowbit::quant_tensor h, d;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), lowbit::dtype::f32, 6, 40, h).ok());
  lowbit::cuda::int8_weights view;
  lowbit::status s = lowbit::cuda::int8_weights_of(h, view);
  EXPECT_NE(std::string(s.message()).find("host memory"), std::string::npos) << s.message();
  ASSERT_TRUE(lowbit::cuda::to_device(h, d).ok());
  ASSERT_TRUE(lowbit::cuda::int8_weights_of(d, view).ok());
  EXPECT_EQ(view.n, 6);
  EXPECT_EQ(view.k, 40);
  EXPECT_EQ(static_cast<const void*>(view.cb), static_cast<const void*>(d.codes()));
  EXPECT_EQ(view.scb, d.scales());
  // the host matmul refuses the device copy
  std::vector<float> y(6);
  s = lowbit::int8_matmul(w.data(), lowbit::dtype::f32, 1, 40, d, nullptr, y.data());
  EXPECT_NE(std::string(s.message()).find("device memory"), std::string::npos) << s.message();
  lowbit::quant_tensor nf4;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {6, 40}, {}, nf4).ok());
  ASSERT_TRUE(lowbit::cuda::to_device(nf4, d).ok());
  EXPECT_FALSE(lowbit::cuda::int8_weights_of(d, view).ok());
}
