// SPDX-License-Identifier: Apache-2.0
// The block-scaled CUDA launchers (kernels/lowbit/cuda/blockscaled.cuh) against the host engine
// (host/blockscaled.hpp), byte for byte: codes, scales (row-major and swizzled, padding included),
// the NVFP4 per-tensor float32, and dequantized values in every dtype; non-finite input (nothing
// written, the first bad index reported) and allow_nonfinite; argument errors. The host engine is
// itself tested against scalar definitions, torchao's vectors and a numpy reference
// (tests/host/blockscaled_test.cpp, blockscaled_numpy.py). Included by blockscaled_simt_test.cpp
// (the SIMT executor, every thread order, plain / sanitize / racecheck builds) and
// blockscaled_device_test.cu (a GPU; skipped without one). The including file defines kt::buffer,
// kt::for_each_order and KT_REQUIRE_DEVICE().

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace kt {

using lowbit::dtype;
using lowbit::scaled_format;
using lowbit::quant::mx_scale_rule;
using lowbit::quant::nvfp4_global;

#if defined(LOWBIT_SIMT_CHECKER) && LOWBIT_SIMT_CHECKER
constexpr bool bs_checker = true;  // every access checked, ~50x slower: smaller matrices
#else
constexpr bool bs_checker = false;
#endif

/// Values of dtype t as bytes: normal values with a spread of exponents (down to float32
/// subnormals after scaling), a zero tile's worth of zeros first, and optionally a NaN or an Inf.
inline std::vector<std::uint8_t> bs_values(dtype t, std::int64_t n, std::uint64_t salt, int nonfinite_at = -1, bool inf = false) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // float16 holds 2^-24 .. 65504: a narrower spread there (subnormal halves included)
  std::uniform_int_distribution<int> ex(t == dtype::f16 ? -20 : -30, t == dtype::f16 ? 10 : 20);
  const int es = lowbit::dtype_size(t);
  std::vector<std::uint8_t> b(static_cast<std::size_t>(n * es));
  for (std::int64_t i = 0; i < n; ++i) {
    float v = std::ldexp(nd(rng), rng() % 8 == 0 ? ex(rng) : 0);
    if (i < 40) v = 0.0f;
    if (i == nonfinite_at) v = inf ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    switch (t) {
      case dtype::f32: std::memcpy(&b[i * es], &v, 4); break;
      case dtype::f16: { const lowbit::f16 h = lowbit::from_float<lowbit::f16>(v); std::memcpy(&b[i * es], &h, 2); break; }
      case dtype::bf16: { const lowbit::bf16 h = lowbit::from_float<lowbit::bf16>(v); std::memcpy(&b[i * es], &h, 2); break; }
    }
  }
  return b;
}

struct bs_case {
  scaled_format fmt;
  std::int64_t rows, cols, tr, tc;
  lowbit::scale_layout layout = lowbit::scale_layout::row_major;
  lowbit::fp6_packing fp6 = lowbit::fp6_packing::packed;
};

inline std::string bs_name(const bs_case& c, dtype t, mx_scale_rule rule, nvfp4_global conv) {
  return std::string(lowbit::info(c.fmt).name) + " " + std::to_string(c.rows) + "x" + std::to_string(c.cols) + " tile " + std::to_string(c.tr) +
         "x" + std::to_string(c.tc) + (c.layout == lowbit::scale_layout::swizzled ? " swizzled" : "") +
         (c.fp6 == lowbit::fp6_packing::unpacked ? " fp6-unpacked" : "") + " x " + lowbit::dtype_name(t) + " rule " +
         std::to_string(static_cast<int>(rule)) + " conv " + std::to_string(static_cast<int>(conv));
}

inline lowbit::scaled_view bs_view(const bs_case& c, mx_scale_rule rule, nvfp4_global conv) {
  lowbit::scaled_view v;
  v.fmt = c.fmt;
  v.rows = c.rows;
  v.cols = c.cols;
  v.tile = {c.tr, c.tc};
  v.mx_rule = rule;
  v.nvfp4 = conv;
  v.fp6 = c.fp6;
  v.layout = c.layout;
  return v;
}

inline std::size_t bs_scale_bytes(const lowbit::scaled_view& v) {
  return static_cast<std::size_t>(v.scale_count() * lowbit::bytes_per_scale(v.fmt));
}

/// Device quantize == host quantize (codes, scales, per-tensor float32), then device dequantize ==
/// host dequantize in every dtype, aligned and not.
inline void bs_check(const bs_case& c, dtype xt, mx_scale_rule rule, nvfp4_global conv, bool allow_nonfinite = false, int nonfinite_at = -1,
                     bool inf = false) {
  LOWBIT_SEED_TRACE();
  const std::string what = bs_name(c, xt, rule, conv) + (nonfinite_at >= 0 ? (inf ? " Inf at " : " NaN at ") + std::to_string(nonfinite_at) : "");
  SCOPED_TRACE(what);
  const std::vector<std::uint8_t> x = bs_values(xt, c.rows * c.cols, static_cast<std::uint64_t>(c.rows * 977 + c.cols), nonfinite_at, inf);
  lowbit::scaled_view hv = bs_view(c, rule, conv);
  std::vector<std::uint8_t> hcodes(static_cast<std::size_t>(lowbit::scaled_code_bytes(c.fmt, c.rows * c.cols, c.fp6)), 0xEE);
  std::vector<std::uint8_t> hscales(bs_scale_bytes(hv), 0xEE);
  hv.codes = hcodes.data();
  hv.scales = hscales.data();
  lowbit::host::options ho;
  ho.allow_nonfinite = allow_nonfinite;
  const lowbit::status hs = lowbit::host::quantize_scaled_into(x.data(), xt, hv, ho);
  const bool refused = nonfinite_at >= 0 && !allow_nonfinite;
  ASSERT_EQ(static_cast<bool>(hs), !refused) << hs.message();

  buffer<std::uint8_t> dx(x), dcodes(std::vector<std::uint8_t>(hcodes.size(), 0xEE)), dscales(std::vector<std::uint8_t>(hscales.size(), 0xEE));
  buffer<float> dglobal(std::vector<float>{-5.0f});
  lowbit::scaled_view dv = bs_view(c, rule, conv);
  dv.codes = dcodes.get();
  dv.scales = dscales.get();
  dv.global_scale_device = dglobal.get();
  const std::size_t wsb = lowbit::cuda::quantize_scaled_workspace_size(dv);
  buffer<std::uint8_t> ws(wsb);
  lowbit::cuda::options o;
  o.allow_nonfinite = allow_nonfinite;
  for_each_order([&] {
    lowbit::status s = lowbit::cuda::quantize_scaled(dx.get(), xt, dv, ws.get(), wsb, nullptr, o);
    ASSERT_TRUE(s) << s.message();
    s = lowbit::cuda::scaled_input_status(ws.get());
    if (refused) {
      ASSERT_FALSE(s);
      EXPECT_EQ(s.code(), lowbit::errc::non_finite);
      EXPECT_NE(std::string(s.message()).find("element " + std::to_string(nonfinite_at) + " "), std::string::npos) << s.message();
      // nothing written
      EXPECT_EQ(dcodes.download(), std::vector<std::uint8_t>(hcodes.size(), 0xEE));
      EXPECT_EQ(dscales.download(), std::vector<std::uint8_t>(hscales.size(), 0xEE));
      EXPECT_EQ(dglobal.download()[0], -5.0f);
      return;
    }
    ASSERT_TRUE(s) << s.message();
    const std::vector<std::uint8_t> gc = dcodes.download(), gs = dscales.download();
    for (std::size_t i = 0; i < gc.size(); ++i) ASSERT_EQ(gc[i], hcodes[i]) << "code byte " << i;
    for (std::size_t i = 0; i < gs.size(); ++i) ASSERT_EQ(gs[i], hscales[i]) << "scale byte " << i;
    if (c.fmt == scaled_format::nvfp4) {
      EXPECT_EQ(lowbit_test::bits_of(dglobal.download()[0]), lowbit_test::bits_of(hv.global_scale));
    }
  });
  if (refused || ::testing::Test::HasFatalFailure()) return;

  // dequantize the host's bytes on both sides, every output dtype, aligned and one element off
  buffer<std::uint8_t> qcodes(hcodes), qscales(hscales);
  lowbit::scaled_view qv = hv;
  qv.codes = qcodes.get();
  qv.scales = qscales.get();
  for (dtype ot : {dtype::f32, dtype::f16, dtype::bf16}) {
    const int es = lowbit::dtype_size(ot);
    std::vector<std::uint8_t> want(static_cast<std::size_t>(c.rows * c.cols * es));
    ASSERT_TRUE(lowbit::host::dequantize_scaled(hv, want.data(), ot));
    for (int shift : {0, 1}) {
      buffer<std::uint8_t> dout(want.size() + static_cast<std::size_t>(es));
      for_each_order([&] {
        const lowbit::status s = lowbit::cuda::dequantize_scaled(qv, dout.get() + shift * es, ot);
        ASSERT_TRUE(s) << s.message();
        const std::vector<std::uint8_t> got = dout.download();
        for (std::size_t i = 0; i < want.size(); i += static_cast<std::size_t>(es)) {
          if (std::memcmp(&got[i + static_cast<std::size_t>(shift * es)], &want[i], static_cast<std::size_t>(es)) != 0) {
            ADD_FAILURE() << "dequantized element " << i / static_cast<std::size_t>(es) << " to " << lowbit::dtype_name(ot) << " shift " << shift;
            return;
          }
        }
      });
    }
  }
}

inline std::vector<bs_case> bs_cases() {
  using lowbit::scale_layout;
  const std::int64_t big = bs_checker ? 136 : 300;
  return {
      {scaled_format::mxfp8_e4m3, 7, 96, 1, 32},
      {scaled_format::mxfp8_e4m3, 3, 100, 1, 32},  // partial last tile
      {scaled_format::mxfp8_e5m2, 5, 64, 1, 32},
      {scaled_format::mxfp6_e2m3, 4, 64, 1, 32},
      {scaled_format::mxfp6_e2m3, 3, 72, 1, 32, scale_layout::row_major, lowbit::fp6_packing::unpacked},
      {scaled_format::mxfp6_e3m2, 3, 96, 1, 32},
      {scaled_format::mxfp4, 6, 64, 1, 32},
      {scaled_format::mxfp4, 2, 70, 1, 32},
      {scaled_format::nvfp4, 5, 48, 1, 16},
      {scaled_format::nvfp4, 33, 40, 16, 16},
      {scaled_format::nvfp4, 6, 64, 1, 16},  // the uniform dequantize loop: two tiles per 32-code group
      {scaled_format::fp8_e4m3_block, 200, big, 128, 128},
      {scaled_format::fp8_e4m3_block, 3, big, 1, 128},
      {scaled_format::fp8_e4m3_block, 130, 256, 128, 128},  // the uniform dequantize loop
      {scaled_format::mxfp6_e2m3, 3, 64, 1, 32, scale_layout::row_major, lowbit::fp6_packing::unpacked},
      {scaled_format::mxfp8_e4m3, 5, 44, 3, 8},  // an odd 2-D tile (the unit loop for float32 output)
      {scaled_format::fp8_e4m3_block, 5, 144, 1, 128},  // the unit loop with a partial tile at each row's end
      {scaled_format::nvfp4, 35, 96, 16, 16},           // the unit loop over 2-D tiles, a partial bottom tile row
      {scaled_format::mxfp4, 130, 96, 1, 32, scale_layout::swizzled},
      {scaled_format::nvfp4, 129, 64, 1, 16, scale_layout::swizzled},
      {scaled_format::mxfp6_e3m2, 3, 200, 1, 32, scale_layout::swizzled},
  };
}

TEST(BlockScaledKernels, EveryFormatTileAndLayoutMatchesTheHostEngine) {
  KT_REQUIRE_DEVICE();
  for (const bs_case& c : bs_cases()) {
    if (lowbit::info(c.fmt).scale == lowbit::scale_type::e8m0) {
      for (mx_scale_rule rule : {mx_scale_rule::floor, mx_scale_rule::rceil, mx_scale_rule::ceil, mx_scale_rule::even})
        bs_check(c, dtype::f32, rule, nvfp4_global::scale);
    } else if (c.fmt == scaled_format::nvfp4) {
      for (nvfp4_global conv : {nvfp4_global::scale, nvfp4_global::inverse, nvfp4_global::none}) bs_check(c, dtype::f32, mx_scale_rule::floor, conv);
    } else {
      bs_check(c, dtype::f32, mx_scale_rule::floor, nvfp4_global::scale);
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(BlockScaledKernels, SixteenBitInputs) {
  KT_REQUIRE_DEVICE();
  const std::vector<bs_case> cases = bs_cases();
  for (std::size_t k = 0; k < cases.size(); k += 2) {
    for (dtype t : {dtype::f16, dtype::bf16}) {
      bs_check(cases[k], t, mx_scale_rule::rceil, nvfp4_global::inverse);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

TEST(BlockScaledKernels, NonFiniteInput) {
  KT_REQUIRE_DEVICE();
  const bs_case cases[] = {{scaled_format::mxfp8_e4m3, 7, 96, 1, 32}, {scaled_format::nvfp4, 5, 48, 1, 16}, {scaled_format::fp8_e4m3_block, 130, 136, 128, 128},
                           {scaled_format::mxfp4, 130, 96, 1, 32, lowbit::scale_layout::swizzled}};
  for (const bs_case& c : cases) {
    for (bool inf : {false, true}) {
      const int at = static_cast<int>(c.rows * c.cols * 2 / 3 + 1);
      bs_check(c, dtype::f32, mx_scale_rule::floor, nvfp4_global::scale, false, at, inf);  // refused, nothing written
      bs_check(c, dtype::f32, mx_scale_rule::floor, nvfp4_global::scale, true, at, inf);   // encoded as the host does
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
  // nvfp4 without a per-tensor scale: a NaN leaves the other tiles finite
  bs_check({scaled_format::nvfp4, 5, 48, 1, 16}, dtype::bf16, mx_scale_rule::floor, nvfp4_global::none, true, 100);
  // 16-bit input through the unit path's statistics (the maximum of the magnitude bits)
  for (const bs_case& c : {bs_case{scaled_format::fp8_e4m3_block, 130, 136, 128, 128}, bs_case{scaled_format::nvfp4, 35, 96, 16, 16}}) {
    for (dtype t : {dtype::f16, dtype::bf16}) {
      for (bool inf : {false, true}) {
        const int at = static_cast<int>(c.rows * c.cols / 2 + 3);
        bs_check(c, t, mx_scale_rule::floor, nvfp4_global::scale, false, at, inf);
        bs_check(c, t, mx_scale_rule::floor, nvfp4_global::scale, true, at, inf);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

TEST(BlockScaledKernels, AllZeroAndTinyTensors) {
  KT_REQUIRE_DEVICE();
  // an all-zero tensor (every tile a zero tile), and one too small for an NVFP4 per-tensor scale
  for (float v : {0.0f, 1e-36f}) {
    for (scaled_format f : {scaled_format::nvfp4, scaled_format::mxfp4, scaled_format::fp8_e4m3_block}) {
      SCOPED_TRACE(std::string(lowbit::info(f).name) + " all " + std::to_string(v));
      const std::int64_t rows = 3, cols = 32;
      std::vector<float> x(static_cast<std::size_t>(rows * cols), v);
      for (std::size_t i = 1; i < x.size(); i += 3) x[i] = -v;  // a zero tile's codes are +0, not -0
      lowbit::scaled_view hv;
      hv.fmt = f;
      hv.rows = rows;
      hv.cols = cols;
      hv.tile = {1, f == scaled_format::nvfp4 ? 16 : 32};
      std::vector<std::uint8_t> hc(static_cast<std::size_t>(lowbit::scaled_code_bytes(f, rows * cols))), hsc(bs_scale_bytes(hv));
      hv.codes = hc.data();
      hv.scales = hsc.data();
      ASSERT_TRUE(lowbit::host::quantize_scaled_into(x.data(), dtype::f32, hv));
      buffer<float> dx(x), dg(1);
      buffer<std::uint8_t> dc(hc.size()), ds(hsc.size());
      lowbit::scaled_view dv = hv;
      dv.codes = dc.get();
      dv.scales = ds.get();
      dv.global_scale_device = dg.get();
      const std::size_t wsb = lowbit::cuda::quantize_scaled_workspace_size(dv);
      buffer<std::uint8_t> ws(wsb);
      for_each_order([&] {
        ASSERT_TRUE(lowbit::cuda::quantize_scaled(dx.get(), dtype::f32, dv, ws.get(), wsb));
        ASSERT_TRUE(lowbit::cuda::scaled_input_status(ws.get()));
        EXPECT_EQ(dc.download(), hc);
        EXPECT_EQ(ds.download(), hsc);
        if (f == scaled_format::nvfp4) {
          EXPECT_EQ(lowbit_test::bits_of(dg.download()[0]), lowbit_test::bits_of(hv.global_scale));
        }
      });
    }
  }
}

// The dequantizer's unit loop on one and on three CTAs, so that every warp loops over several
// chunks of 32 x 4 units and the last units go to the one-per-thread tail: both scale layouts,
// 2-D and partial tiles, packed FP6 (whose 3- and 6-byte unit codes start at every byte offset),
// every output dtype, against the host engine.
TEST(BlockScaledKernels, UnitLoopOverSeveralChunksPerWarp) {
  KT_REQUIRE_DEVICE();
  LOWBIT_SEED_TRACE();
  const std::int64_t rows = bs_checker ? 34 : 130;
  const std::vector<bs_case> cases = {
      {scaled_format::mxfp4, rows, 256, 1, 32, lowbit::scale_layout::swizzled},
      {scaled_format::nvfp4, rows, 96, 16, 16},
      {scaled_format::fp8_e4m3_block, rows, 272, 1, 128},
      {scaled_format::mxfp6_e3m2, rows, 160, 1, 32},
      {scaled_format::mxfp8_e5m2, rows, 224, 1, 32, lowbit::scale_layout::swizzled},
  };
  for (const bs_case& c : cases) {
    SCOPED_TRACE(bs_name(c, dtype::f32, mx_scale_rule::floor, nvfp4_global::scale));
    const std::vector<std::uint8_t> x = bs_values(dtype::f32, c.rows * c.cols, static_cast<std::uint64_t>(c.cols) * 31);
    lowbit::scaled_view hv = bs_view(c, mx_scale_rule::floor, nvfp4_global::scale);
    std::vector<std::uint8_t> hcodes(static_cast<std::size_t>(lowbit::scaled_code_bytes(c.fmt, c.rows * c.cols, c.fp6)), 0xEE);
    std::vector<std::uint8_t> hscales(bs_scale_bytes(hv), 0xEE);
    hv.codes = hcodes.data();
    hv.scales = hscales.data();
    ASSERT_TRUE(lowbit::host::quantize_scaled_into(x.data(), dtype::f32, hv));
    buffer<std::uint8_t> qcodes(hcodes), qscales(hscales);
    lowbit::scaled_view qv = hv;
    qv.codes = qcodes.get();
    qv.scales = qscales.get();
    for (dtype ot : {dtype::f32, dtype::f16, dtype::bf16}) {
      const int es = lowbit::dtype_size(ot);
      std::vector<std::uint8_t> want(static_cast<std::size_t>(c.rows * c.cols * es));
      ASSERT_TRUE(lowbit::host::dequantize_scaled(hv, want.data(), ot));
      for (std::int64_t ctas : {1, 3}) {
        buffer<std::uint8_t> dout(want.size());
        for_each_order([&] {
          const lowbit::status st = lowbit::visit_dtype(ot, [&](auto tag) {
            using T = decltype(tag);
            const bool unit = lowbit::quant::visit_scaled(qv.fmt, [&](auto f) {
              return lowbit::cuda::detail::unit_stream<decltype(f)::value, T>(qv, dout.get());
            });
            EXPECT_TRUE(unit) << "the case does not take the unit loop";
            return lowbit::cuda::detail::dequantize_scaled_typed(qv, reinterpret_cast<T*>(dout.get()), nullptr, ctas);
          });
          ASSERT_TRUE(st) << st.message();
          const std::vector<std::uint8_t> got = dout.download();
          for (std::size_t i = 0; i < want.size(); i += static_cast<std::size_t>(es)) {
            if (std::memcmp(&got[i], &want[i], static_cast<std::size_t>(es)) != 0) {
              ADD_FAILURE() << "element " << i / static_cast<std::size_t>(es) << " to " << lowbit::dtype_name(ot) << " on " << ctas << " CTAs";
              return;
            }
          }
        });
      }
    }
  }
}

/// Which quantize kernels a case takes (quantize_scaled_ctas).
enum class bs_path { row_tiles, unit_tiles, warp_per_tile };

/// The device quantizer on at most `ctas` CTAs, from input `shift` elements past an aligned
/// address, equals the host byte for byte (codes, scales, the nvfp4 per-tensor float32) in every
/// thread order, and the case takes the kernels of `path`.
/// `given`: the input (shift = 0), else bs_values.
inline void bs_quantize_path(const bs_case& c, dtype xt, std::int64_t ctas, int shift, bs_path path, const std::vector<std::uint8_t>* given = nullptr) {
  SCOPED_TRACE(bs_name(c, xt, mx_scale_rule::floor, nvfp4_global::scale) + " on " + std::to_string(ctas) + " CTAs, input shifted by " +
               std::to_string(shift));
  const int es = lowbit::dtype_size(xt);
  const std::vector<std::uint8_t> x = given != nullptr ? *given : bs_values(xt, c.rows * c.cols + shift, static_cast<std::uint64_t>(c.cols) * 7 + 1);
  lowbit::scaled_view hv = bs_view(c, mx_scale_rule::floor, nvfp4_global::scale);
  std::vector<std::uint8_t> hcodes(static_cast<std::size_t>(lowbit::scaled_code_bytes(c.fmt, c.rows * c.cols, c.fp6)), 0xEE);
  std::vector<std::uint8_t> hscales(bs_scale_bytes(hv), 0xEE);
  hv.codes = hcodes.data();
  hv.scales = hscales.data();
  ASSERT_TRUE(lowbit::host::quantize_scaled_into(x.data() + shift * es, xt, hv));
  buffer<std::uint8_t> dx(x), dcodes(std::vector<std::uint8_t>(hcodes.size(), 0xEE)), dscales(std::vector<std::uint8_t>(hscales.size(), 0xEE));
  buffer<float> dglobal(std::vector<float>{-5.0f});
  lowbit::scaled_view dv = hv;
  dv.codes = dcodes.get();
  dv.scales = dscales.get();
  dv.global_scale_device = dglobal.get();
  const std::uint8_t* in = dx.get() + shift * es;
  lowbit::visit_dtype(xt, [&](auto tag) {
    using T = decltype(tag);
    const T* tx = reinterpret_cast<const T*>(in);
    const bool rows = lowbit::cuda::detail::row_tiles(dv, tx);
    const bool units = !rows && lowbit::quant::visit_scaled(dv.fmt, [&](auto f) { return lowbit::cuda::detail::unit_tiles<decltype(f)::value>(dv, tx); });
    const bs_path took = rows ? bs_path::row_tiles : (units ? bs_path::unit_tiles : bs_path::warp_per_tile);
    EXPECT_EQ(static_cast<int>(took), static_cast<int>(path)) << "the case does not take the kernels it tests";
  });
  const std::size_t wsb = lowbit::cuda::quantize_scaled_workspace_size(dv);
  buffer<std::uint8_t> ws(wsb);
  for_each_order([&] {
    const lowbit::status s = lowbit::cuda::detail::quantize_scaled_ctas(in, xt, dv, ws.get(), wsb, nullptr, lowbit::cuda::options{}, ctas);
    ASSERT_TRUE(s) << s.message();
    ASSERT_TRUE(lowbit::cuda::scaled_input_status(ws.get()));
    const std::vector<std::uint8_t> gc = dcodes.download(), gs = dscales.download();
    for (std::size_t i = 0; i < gc.size(); ++i) ASSERT_EQ(gc[i], hcodes[i]) << "code byte " << i;
    for (std::size_t i = 0; i < gs.size(); ++i) ASSERT_EQ(gs[i], hscales[i]) << "scale byte " << i;
    if (c.fmt == scaled_format::nvfp4) {
      EXPECT_EQ(lowbit_test::bits_of(dglobal.download()[0]), lowbit_test::bits_of(hv.global_scale));
    }
  });
}

// The row-tile quantizer on one CTA, so that the CTA loops over several groups of 256 tiles (the
// shared stage reused after its barriers) and ends on a partial group: 1 x 16 and 1 x 32 tiles,
// both scale layouts, packed FP6, float32 and bf16 input, against the host engine byte for byte.
TEST(BlockScaledKernels, RowTileQuantizerLoopsOverGroups) {
  KT_REQUIRE_DEVICE();
  LOWBIT_SEED_TRACE();
  const std::vector<bs_case> cases = {
      {scaled_format::mxfp8_e4m3, 21, 512, 1, 32},
      {scaled_format::nvfp4, 70, 96, 1, 16, lowbit::scale_layout::swizzled},
      {scaled_format::mxfp6_e2m3, 27, 384, 1, 32},
      {scaled_format::mxfp4, 33, 160, 1, 32, lowbit::scale_layout::swizzled},
  };
  for (const bs_case& c : cases)
    for (dtype xt : {dtype::f32, dtype::bf16}) bs_quantize_path(c, xt, 1, 0, bs_path::row_tiles);
}

// The unit quantizer (tile statistics by a segmented warp max, per-tile encodings, a unit per
// lane) on one and on three CTAs, so that every warp loops over several chunks and ends in the
// partial last chunk: 128 x 128 and 1 x 128 FP8 tiles (partial at the right and bottom edges),
// 2-D NVFP4 and MX tiles, 1-column tile grids whose tiles span several rows of one warp step,
// 1 x 16 and 1 x 32 tiles that do not divide the rows (swizzled scales), packed and unpacked FP6,
// every input dtype.
TEST(BlockScaledKernels, UnitQuantizerLoopsOverChunks) {
  KT_REQUIRE_DEVICE();
  LOWBIT_SEED_TRACE();
  const std::int64_t rows = bs_checker ? 40 : 130;
  const std::vector<bs_case> cases = {
      {scaled_format::fp8_e4m3_block, rows, 272, 128, 128},
      {scaled_format::fp8_e4m3_block, 9, 200, 1, 128},
      {scaled_format::fp8_e4m3_block, rows, 64, 128, 128},  // one tile column: a warp step spans rows
      {scaled_format::nvfp4, 35, 96, 16, 16},
      {scaled_format::nvfp4, 7, 40, 1, 16, lowbit::scale_layout::swizzled},  // tiles that do not divide the rows
      {scaled_format::mxfp4, 19, 96, 2, 32},
      {scaled_format::mxfp6_e3m2, 21, 64, 4, 32},
      {scaled_format::mxfp6_e2m3, 6, 48, 3, 8, lowbit::scale_layout::row_major, lowbit::fp6_packing::unpacked},
      {scaled_format::mxfp8_e5m2, 10, 48, 1, 32, lowbit::scale_layout::swizzled},
  };
  for (const bs_case& c : cases)
    for (dtype xt : {dtype::f32, dtype::f16, dtype::bf16})
      for (std::int64_t ctas : {1, 3}) bs_quantize_path(c, xt, ctas, 0, bs_path::unit_tiles);
}

// fp8_e4m3_block encodes sat(x / s) from the IEEE float32 quotient; the unit quantizer forms it
// as one double multiply by 1 / s (unit_fp8_block_quotient). Elements that are e4m3 rounding
// midpoints times s (ties to even) are where a float32 multiply by a rounded reciprocal differs
// (about a quarter of them): every tile holds its amax and such elements, both signs.
TEST(BlockScaledKernels, Fp8BlockQuotientsOnE4m3Midpoints) {
  KT_REQUIRE_DEVICE();
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x448);
  const bs_case c{scaled_format::fp8_e4m3_block, 24, 256, 1, 128};
  std::vector<float> x(static_cast<std::size_t>(c.rows * c.cols));
  for (std::size_t t = 0; t < x.size(); t += 128) {
    const float amax = std::ldexp(1.0f + static_cast<float>(rng() % (1u << 23)) / 8388608.0f, static_cast<int>(rng() % 40) - 20);
    const float s = amax / 448.0f;
    x[t] = amax;
    for (std::size_t i = 1; i < 128; ++i) {
      // 1 + (2k + 1) / 16 times 2^e: the midpoint between two e4m3 normals, |m| <= 248 < 448
      const float m = std::ldexp(1.0f + static_cast<float>(2 * (rng() % 8) + 1) / 16.0f, static_cast<int>(rng() % 11) - 3);
      x[t + i] = (rng() & 1 ? -m : m) * s;
    }
  }
  std::vector<std::uint8_t> bytes(x.size() * 4);
  std::memcpy(bytes.data(), x.data(), bytes.size());
  for (std::int64_t ctas : {1, 3}) bs_quantize_path(c, dtype::f32, ctas, 0, bs_path::unit_tiles, &bytes);
}

// Input that is not 16-byte aligned takes the warp-per-tile kernels, which handle any layout.
TEST(BlockScaledKernels, UnalignedInputTakesTheWarpPerTileKernels) {
  KT_REQUIRE_DEVICE();
  LOWBIT_SEED_TRACE();
  const std::vector<bs_case> cases = {
      {scaled_format::fp8_e4m3_block, 130, 136, 128, 128},
      {scaled_format::nvfp4, 5, 48, 1, 16, lowbit::scale_layout::swizzled},
      {scaled_format::mxfp6_e2m3, 4, 64, 1, 32},
      {scaled_format::mxfp4, 6, 64, 2, 32},
  };
  for (const bs_case& c : cases)
    for (dtype xt : {dtype::f32, dtype::bf16}) bs_quantize_path(c, xt, lowbit::cuda::detail::stream_max_ctas, 1, bs_path::warp_per_tile);
}

TEST(BlockScaledKernels, BadArgumentsAreNamed) {
  KT_REQUIRE_DEVICE();
  buffer<float> x(64), g(1);
  buffer<std::uint8_t> codes(64), scales(8), ws(256);
  lowbit::scaled_view v;
  v.fmt = scaled_format::nvfp4;
  v.rows = 2;
  v.cols = 32;
  v.tile = {1, 16};
  v.codes = codes.get();
  v.scales = scales.get();
  lowbit::status s = lowbit::cuda::quantize_scaled(x.get(), dtype::f32, v, ws.get(), 256);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("global_scale_device"), std::string::npos) << s.message();
  v.global_scale_device = g.get();
  s = lowbit::cuda::quantize_scaled(x.get(), dtype::f32, v, ws.get(), 8);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("workspace has 8 bytes"), std::string::npos) << s.message();
  s = lowbit::cuda::quantize_scaled(reinterpret_cast<const std::uint8_t*>(x.get()) + 2, dtype::f32, v, ws.get(), 256);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), lowbit::errc::misaligned) << s.message();
  v.fmt = scaled_format::fp8_e4m3_block;
  v.tile = {128, 128};
  v.layout = lowbit::scale_layout::swizzled;
  s = lowbit::cuda::dequantize_scaled(v, x.get(), dtype::f32);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("swizzled"), std::string::npos) << s.message();
  v.layout = lowbit::scale_layout::row_major;
  v.scales = scales.get() + 1;  // float32 scales must be 4-byte aligned
  s = lowbit::cuda::dequantize_scaled(v, x.get(), dtype::f32);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), lowbit::errc::misaligned) << s.message();
  v.fmt = scaled_format::mxfp4;
  v.tile = {1, 32};
  v.cols = 31;
  s = lowbit::cuda::dequantize_scaled(v, x.get(), dtype::f32);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("cols (31)"), std::string::npos) << s.message();
}

}  // namespace kt
