// SPDX-License-Identifier: Apache-2.0
// The fused matmul's CUDA launcher (kernels/lowbit/cuda/matmul.cuh) against the host's
// lowbit::matmul with options.order = warp, byte for byte: both implement the warp order of
// include/lowbit/matmul/definition.hpp (the host paths are tested against a scalar model of each
// order and a float64 bound in tests/host/matmul_test.cpp). Included by matmul_simt_test.cpp (the SIMT executor, every thread
// order, plain / sanitize / racecheck builds) and matmul_device_test.cu (a GPU; skipped without one).
// The including file defines kt::buffer, kt::for_each_order and KT_REQUIRE_DEVICE().

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace kt {

using lowbit::dtype;
using lowbit::format;
using lowbit::matmul_compute;

#if defined(LOWBIT_SIMT_CHECKER) && LOWBIT_SIMT_CHECKER
constexpr bool mm_checker = true;  // every access checked, ~50x slower: fewer cases
#else
constexpr bool mm_checker = false;
#endif

struct mm_weight {
  format fmt;
  lowbit::granularity gran;
  bool dq;
  const char* name;
};

inline lowbit::quant_tensor mm_make_weight(const mm_weight& wk, std::int64_t N, std::int64_t K, std::uint64_t salt) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(N * K));
  for (auto& v : w) v = nd(rng);
  if (N * K > 200) std::fill(w.begin() + 70, w.begin() + 200, 0.0f);  // zero blocks
  lowbit::quantize_params p;
  p.fmt = wk.fmt;
  p.gran = wk.gran;
  p.double_quant = wk.dq;
  lowbit::quant_tensor q;
  const lowbit::status s = lowbit::quantize(w.data(), dtype::f32, {N, K}, p, q);
  EXPECT_TRUE(s) << s.message();
  return q;
}

/// Random values of dtype t as bytes (normal; a few exact zeros and, when asked, a NaN and an Inf).
inline std::vector<std::uint8_t> mm_values(dtype t, std::int64_t n, std::uint64_t salt, bool nonfinite = false) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int es = lowbit::dtype_size(t);
  std::vector<std::uint8_t> b(static_cast<std::size_t>(n * es));
  for (std::int64_t i = 0; i < n; ++i) {
    float v = nd(rng);
    if (i % 17 == 5) v = 0.0f;
    if (i % 29 == 3) v = -v * 1e-39f;  // subnormal in float32: a zero operand in bf16 mode
    if (nonfinite && i == n / 2) v = std::numeric_limits<float>::quiet_NaN();
    if (nonfinite && i == n / 3) v = std::numeric_limits<float>::infinity();
    switch (t) {
      case dtype::f32: std::memcpy(&b[i * es], &v, 4); break;
      case dtype::f16: { const lowbit::f16 h = lowbit::from_float<lowbit::f16>(v); std::memcpy(&b[i * es], &h, 2); break; }
      case dtype::bf16: { const lowbit::bf16 h = lowbit::from_float<lowbit::bf16>(v); std::memcpy(&b[i * es], &h, 2); break; }
    }
  }
  return b;
}

/// Device y `got` equals host y `want` byte for byte (NaN results: both NaN, any sign and payload).
inline void mm_expect_same(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& want, dtype yt, std::int64_t N) {
  const int es = lowbit::dtype_size(yt);
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < want.size(); i += static_cast<std::size_t>(es)) {
    if (std::memcmp(&got[i], &want[i], static_cast<std::size_t>(es)) == 0) continue;
    const auto as_float = [&](const std::uint8_t* p) {
      switch (yt) {
        case dtype::f32: { float f; std::memcpy(&f, p, 4); return f; }
        case dtype::f16: { lowbit::f16 h; std::memcpy(&h, p, 2); return lowbit::to_float(h); }
        case dtype::bf16: break;
      }
      lowbit::bf16 h;
      std::memcpy(&h, p, 2);
      return lowbit::to_float(h);
    };
    const float g = as_float(&got[i]), w = as_float(&want[i]);
    ASSERT_TRUE(std::isnan(g) && std::isnan(w)) << "y element " << i / static_cast<std::size_t>(es) << " (m "
                                                 << i / static_cast<std::size_t>(es) / static_cast<std::size_t>(N) << ", n "
                                                 << i / static_cast<std::size_t>(es) % static_cast<std::size_t>(N) << "): device " << g
                                                 << ", host " << w;
  }
}

/// y from cuda::matmul (W on the device) equals y from lowbit::matmul (W on the host), byte for byte.
/// `x_shift` elements of offset defeat x's 16-byte alignment.
inline void mm_check(const mm_weight& wk, std::int64_t M, std::int64_t N, std::int64_t K, dtype xt, dtype yt, matmul_compute c,
                     bool bias, int x_shift = 0, bool nonfinite = false) {
  LOWBIT_SEED_TRACE();
  const std::string ctx = std::string(wk.name) + " M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K) + " x " +
                          lowbit::dtype_name(xt) + " y " + lowbit::dtype_name(yt) + (c == matmul_compute::bf16 ? " bf16" : " f32") +
                          (bias ? " bias" : "") + " x_shift " + std::to_string(x_shift);
  SCOPED_TRACE(ctx);
  const lowbit::quant_tensor W = mm_make_weight(wk, N, K, static_cast<std::uint64_t>(N * 131 + K));
  const std::vector<std::uint8_t> x = mm_values(xt, M * K, static_cast<std::uint64_t>(M * 7 + K), nonfinite);
  const std::vector<std::uint8_t> bv = mm_values(yt, N, 99);
  lowbit::matmul_options o;
  o.compute = c;
  o.order = lowbit::matmul_order::warp;  // the kernels' order, computed on the host
  std::vector<std::uint8_t> want(static_cast<std::size_t>(M * N * lowbit::dtype_size(yt)));
  lowbit::status s = lowbit::matmul(x.data(), xt, M, W, bias ? bv.data() : nullptr, want.data(), yt, o);
  ASSERT_TRUE(s) << s.message();

  lowbit::quant_tensor Wd;
  s = lowbit::cuda::to_device(W, Wd);
  ASSERT_TRUE(s) << s.message();
  const std::size_t xs = static_cast<std::size_t>(x_shift * lowbit::dtype_size(xt));
  std::vector<std::uint8_t> xpad(x.size() + xs);
  std::copy(x.begin(), x.end(), xpad.begin() + static_cast<std::ptrdiff_t>(xs));
  buffer<std::uint8_t> dx(xpad), dbias(bv), dy(want.size());
  for_each_order([&] {
    s = lowbit::cuda::matmul(dx.get() + xs, xt, M, Wd, bias ? dbias.get() : nullptr, dy.get(), yt, o);
    ASSERT_TRUE(s) << s.message();
    mm_expect_same(dy.download(), want, yt, N);
  });
}

inline std::vector<mm_weight> mm_weights() {
  using G = lowbit::granularity;
  return {
      {format::nf4, G::per_block(64), false, "nf4/64"},
      {format::nf4, G::per_block(64), true, "nf4/64+dq"},
      {format::bnb_fp4, G::per_block(128), true, "bnb_fp4/128+dq"},
      {format::bnb_fp4, G::per_block(32), false, "bnb_fp4/32"},
      {format::int8_absmax, G::per_row(), false, "int8/row"},
      {format::int8_absmax, G::per_block(64), false, "int8/64"},
      {format::e4m3fn, G::per_block(128), false, "e4m3fn/128"},
      {format::e4m3fn, G::per_tensor(), false, "e4m3fn/tensor"},
      {format::e5m2, G::per_row(), false, "e5m2/row"},
      {format::e2m1fn, G::per_block(32), false, "e2m1fn/32"},
      {format::bnb_dynamic8, G::per_block(64), true, "bnb_dynamic8/64+dq"},
      {format::uint8_zeropoint, G::per_block(64), false, "uint8_zeropoint/64"},
  };
}

// Every weight kind, both compute modes, the GEMV (M = 1) and the batched kernel (M = 3), on the
// vector path (K a multiple of 32) with a partial super-run, bias on.
TEST(CudaMatmul, EveryFormatBothModesMatchesHost) {
  KT_REQUIRE_DEVICE();
  const std::int64_t K = mm_checker ? 1088 : 2112;
  for (const mm_weight& wk : mm_weights())
    for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
      mm_check(wk, 1, 5, K, dtype::bf16, dtype::f32, c, true);
      if (!mm_checker || wk.fmt == format::nf4) mm_check(wk, 3, 3, K, dtype::f32, dtype::bf16, c, false);
      if (::testing::Test::HasFatalFailure()) return;
    }
}

// Every (x dtype, y dtype) pair, with and without bias, both modes.
TEST(CudaMatmul, EveryDtypePair) {
  KT_REQUIRE_DEVICE();
  const mm_weight wk{format::nf4, lowbit::granularity::per_block(64), true, "nf4/64+dq"};
  for (dtype xt : {dtype::f32, dtype::f16, dtype::bf16})
    for (dtype yt : {dtype::f32, dtype::f16, dtype::bf16})
      for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
        mm_check(wk, 2, 3, 320, xt, yt, c, xt != yt);
        if (::testing::Test::HasFatalFailure()) return;
      }
}

// Layouts off the vector path and at its edges: K not a multiple of 32 (blocks straddle rows), K a
// multiple of 32 with blocks straddling rows, per-row blocks of a K that is not a power of two
// (whole-row blocks), per-tensor and per-row scales over K not a multiple of 32, misaligned x (float32 x read in place vs converted),
// 17 rows of x (two passes of the batched kernel), odd N.
TEST(CudaMatmul, ShapesAndLayouts) {
  KT_REQUIRE_DEVICE();
  using G = lowbit::granularity;
  for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
    mm_check({format::nf4, G::per_block(64), true, "nf4/64+dq"}, 1, 7, 100, dtype::f32, dtype::f32, c, true);
    mm_check({format::nf4, G::per_block(64), false, "nf4/64"}, 2, 5, 96, dtype::f32, dtype::f32, c, true);
    mm_check({format::e4m3fn, G::per_row(), false, "e4m3fn/row"}, 1, 4, 96, dtype::f16, dtype::f32, c, true);
    mm_check({format::int8_absmax, G::per_tensor(), false, "int8/tensor"}, 2, 3, 96, dtype::f32, dtype::bf16, c, false);
    mm_check({format::e5m2, G::per_row(), false, "e5m2/row"}, 2, 3, 100, dtype::f32, dtype::bf16, c, true);
    mm_check({format::uint8_zeropoint, G::per_block(64), false, "uint8_zeropoint/64"}, 1, 3, 33, dtype::bf16, dtype::f16, c, true);
    mm_check({format::nf4, G::per_block(32), false, "nf4/32"}, 1, 3, 256, dtype::f32, dtype::f32, c, true, 1);
    mm_check({format::e2m1fn, G::per_block(32), false, "e2m1fn/32"}, 17, 3, mm_checker ? 64 : 160, dtype::bf16, dtype::bf16, c, true);
    mm_check({format::nf4, G::per_block(64), false, "nf4/64"}, 1, mm_checker ? 17 : 33, 64, dtype::f32, dtype::f32, c, false);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// NaN and Inf in x propagate as on the host (both results NaN, or the same Inf).
TEST(CudaMatmul, NonFiniteInputPropagates) {
  KT_REQUIRE_DEVICE();
  const mm_weight wk{format::nf4, lowbit::granularity::per_block(64), false, "nf4/64"};
  for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) mm_check(wk, 2, 3, 256, dtype::f32, dtype::f32, c, true, 0, true);
}

// K = 0 gives y = bias (or +0); M = 0 or N = 0 writes nothing.
TEST(CudaMatmul, EmptyShapes) {
  KT_REQUIRE_DEVICE();
  const mm_weight wk{format::nf4, lowbit::granularity::per_block(64), false, "nf4/64"};
  for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
    mm_check(wk, 2, 3, 0, dtype::f32, dtype::bf16, c, true);
    mm_check(wk, 0, 3, 64, dtype::f32, dtype::f32, c, true);
  }
}

/// A block-scaled weight kind: format, tile, scale layout, FP6 packing.
struct mm_scaled_weight {
  lowbit::scaled_format fmt;
  std::int64_t tr, tc;
  lowbit::scale_layout layout = lowbit::scale_layout::row_major;
  lowbit::fp6_packing fp6 = lowbit::fp6_packing::packed;
};

/// cuda::matmul with a block-scaled device weight equals host::matmul with the same bytes on the
/// host, byte for byte. W: N x K normal values with a spread of exponents and a zero tile, quantized
/// by the host engine (with `nan_in_w`, a NaN in W under allow_nonfinite: a NaN scale or code).
/// nvfp4's per-tensor float32 is given to the device only through global_scale_device.
inline void mm_scaled_check(const mm_scaled_weight& wk, std::int64_t M, std::int64_t N, std::int64_t K, dtype xt, dtype yt, matmul_compute c,
                            bool bias, int x_shift = 0, bool nan_in_w = false) {
  LOWBIT_SEED_TRACE();
  SCOPED_TRACE(std::string(lowbit::info(wk.fmt).name) + " tile " + std::to_string(wk.tr) + "x" + std::to_string(wk.tc) +
               (wk.layout == lowbit::scale_layout::swizzled ? " swizzled" : "") + (wk.fp6 == lowbit::fp6_packing::unpacked ? " fp6-unpacked" : "") +
               " M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K) + " x " + lowbit::dtype_name(xt) + " y " +
               lowbit::dtype_name(yt) + (c == matmul_compute::bf16 ? " bf16" : " f32") + (bias ? " bias" : "") + " x_shift " +
               std::to_string(x_shift) + (nan_in_w ? " NaN in W" : ""));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(N * 7919 + K));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(N * K));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = i < 40 ? 0.0f : std::ldexp(nd(rng), rng() % 8 == 0 ? static_cast<int>(rng() % 24) - 12 : 0);
  if (nan_in_w) w[w.size() / 2] = std::numeric_limits<float>::quiet_NaN();
  lowbit::scaled_view hv;
  hv.fmt = wk.fmt;
  hv.rows = N;
  hv.cols = K;
  hv.tile = {wk.tr, wk.tc};
  hv.layout = wk.layout;
  hv.fp6 = wk.fp6;
  std::vector<std::uint8_t> hcodes(static_cast<std::size_t>(lowbit::scaled_code_bytes(wk.fmt, N * K, wk.fp6)));
  std::vector<std::uint8_t> hscales(static_cast<std::size_t>(hv.scale_count() * lowbit::bytes_per_scale(wk.fmt)));
  hv.codes = hcodes.data();
  hv.scales = hscales.data();
  lowbit::host::options ho;
  ho.allow_nonfinite = nan_in_w;
  lowbit::status s = lowbit::host::quantize_scaled_into(w.data(), dtype::f32, hv, ho);
  ASSERT_TRUE(s) << s.message();

  const std::vector<std::uint8_t> x = mm_values(xt, M * K, static_cast<std::uint64_t>(M * 7 + K));
  const std::vector<std::uint8_t> bv = mm_values(yt, N, 99);
  lowbit::matmul_options o;
  o.compute = c;
  o.order = lowbit::matmul_order::warp;  // the kernels' order, computed on the host
  std::vector<std::uint8_t> want(static_cast<std::size_t>(M * N * lowbit::dtype_size(yt)));
  s = lowbit::host::matmul(x.data(), xt, M, N, K, hv, bias ? bv.data() : nullptr, want.data(), yt, o);
  ASSERT_TRUE(s) << s.message();

  buffer<std::uint8_t> dcodes(hcodes), dscales(hscales);
  buffer<float> dglobal(std::vector<float>{hv.global_scale});
  lowbit::scaled_view dv = hv;
  dv.codes = dcodes.get();
  dv.scales = dscales.get();
  if (wk.fmt == lowbit::scaled_format::nvfp4) {
    dv.global_scale_device = dglobal.get();
    dv.global_scale = 12345.0f;  // must not be read
  }
  const std::size_t xs = static_cast<std::size_t>(x_shift * lowbit::dtype_size(xt));
  std::vector<std::uint8_t> xpad(x.size() + xs);
  std::copy(x.begin(), x.end(), xpad.begin() + static_cast<std::ptrdiff_t>(xs));
  buffer<std::uint8_t> dx(xpad), dbias(bv), dy(want.size());
  const std::size_t wsb = lowbit::cuda::matmul_workspace_size(xt, M, K, o, dx.get() + xs);
  buffer<unsigned char> ws(wsb > 0 ? wsb : 1);
  for_each_order([&] {
    s = lowbit::cuda::matmul(dx.get() + xs, xt, M, N, K, dv, bias ? dbias.get() : nullptr, dy.get(), yt, o, ws.get(), wsb);
    ASSERT_TRUE(s) << s.message();
    mm_expect_same(dy.download(), want, yt, N);
  });
}

// Every block-scaled format with its own tiles (MX 1x32, NVFP4 1x16, FP8 128x128), both modes, the
// GEMV and the batched kernel: FP4/FP8 on the vector path, FP6 element by element.
TEST(CudaMatmul, BlockScaledEveryFormatBothModesMatchesHost) {
  KT_REQUIRE_DEVICE();
  using F = lowbit::scaled_format;
  const std::int64_t K = mm_checker ? 256 : 544;
  for (int f = 0; f < lowbit::scaled_format_count; ++f) {
    const auto fmt = static_cast<F>(f);
    const mm_scaled_weight wk{fmt, fmt == F::fp8_e4m3_block ? 128 : 1, fmt == F::fp8_e4m3_block ? 128 : (fmt == F::nvfp4 ? 16 : 32)};
    for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
      mm_scaled_check(wk, 1, 5, K, dtype::bf16, dtype::f32, c, true);
      mm_scaled_check(wk, 3, 3, K, dtype::f32, dtype::bf16, c, false);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

// Layouts: swizzled scales (MX, NVFP4; more than 4 scale columns), NVFP4 16x16 tiles, unpacked FP6,
// partial tiles and K not a multiple of 32 (element path), tiles ending inside a run (NVFP4 with K
// not a multiple of 32, 24- and 8-column tiles), FP8 1x128 groups, misaligned x, 17 rows
// of x (two passes), a NaN in W (a NaN scale or code: NaN rows of y), every dtype pair once.
TEST(CudaMatmul, BlockScaledLayouts) {
  KT_REQUIRE_DEVICE();
  using F = lowbit::scaled_format;
  const auto swz = lowbit::scale_layout::swizzled;
  for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
    mm_scaled_check({F::mxfp4, 1, 32, swz}, 2, 5, 320, dtype::f32, dtype::f32, c, true);
    mm_scaled_check({F::nvfp4, 1, 16, swz}, 1, 3, 192, dtype::f16, dtype::f16, c, true);
    mm_scaled_check({F::mxfp8_e5m2, 1, 32, swz}, 1, 3, 100, dtype::bf16, dtype::bf16, c, false);
    mm_scaled_check({F::nvfp4, 16, 16}, 2, 19, 96, dtype::f32, dtype::bf16, c, true);
    mm_scaled_check({F::mxfp6_e2m3, 1, 32, lowbit::scale_layout::row_major, lowbit::fp6_packing::unpacked}, 1, 3, 96, dtype::f32, dtype::f32, c, true);
    mm_scaled_check({F::mxfp6_e3m2, 1, 32, swz}, 2, 3, 68, dtype::f16, dtype::f32, c, true);
    mm_scaled_check({F::fp8_e4m3_block, 1, 128}, 2, 3, 200, dtype::bf16, dtype::f32, c, true);
    mm_scaled_check({F::nvfp4, 1, 16}, 2, 3, 80, dtype::f32, dtype::f32, c, true);
    mm_scaled_check({F::mxfp8_e4m3, 2, 24}, 1, 5, 96, dtype::f32, dtype::f32, c, true);
    mm_scaled_check({F::mxfp4, 2, 8}, 2, 3, 64, dtype::f32, dtype::f32, c, true);
    mm_scaled_check({F::fp8_e4m3_block, 128, 128}, 1, 130, 160, dtype::f32, dtype::f32, c, false, 1);
    mm_scaled_check({F::mxfp8_e4m3, 1, 32}, 17, 3, mm_checker ? 64 : 128, dtype::bf16, dtype::f32, c, true);
    mm_scaled_check({F::mxfp4, 1, 32}, 2, 3, 96, dtype::f32, dtype::f32, c, true, 0, true);
    mm_scaled_check({F::fp8_e4m3_block, 128, 128}, 1, 3, 64, dtype::f32, dtype::f32, c, true, 0, true);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(CudaMatmul, BlockScaledBadArgumentsAreRefused) {
  buffer<float> x(2 * 64), y(8);
  buffer<std::uint8_t> codes(4 * 64), scales(8);
  lowbit::scaled_view v;
  v.fmt = lowbit::scaled_format::mxfp8_e4m3;
  v.rows = 4;
  v.cols = 64;
  v.tile = {1, 32};
  v.codes = codes.get();
  v.scales = scales.get();
  const auto expect = [&](const lowbit::status& s, const char* needle) {
    ASSERT_FALSE(s) << "expected an error naming " << needle;
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message();
  };
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, 4, 32, v, nullptr, y.get(), dtype::f32, {}, nullptr, 0), "not N x K");
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, -4, 64, v, nullptr, y.get(), dtype::f32, {}, nullptr, 0), "must be >= 0");
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, 4, 64, v, nullptr, nullptr, dtype::f32, {}, nullptr, 0), "y is null");
  buffer<unsigned char> ws(16);
  expect(lowbit::cuda::matmul(x.get(), dtype::bf16, 2, 4, 64, v, nullptr, y.get(), dtype::f32, {}, ws.get(), 16), "workspace");
  lowbit::scaled_view bad = v;
  bad.tile = {0, 32};
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, 4, 64, bad, nullptr, y.get(), dtype::f32, {}, nullptr, 0), "tile");
  bad = v;
  bad.scales = nullptr;
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, 4, 64, bad, nullptr, y.get(), dtype::f32, {}, nullptr, 0), "scales");
  for (float f : y.download()) ASSERT_EQ(f, 0.0f);
}

TEST(CudaMatmul, BadArgumentsAreRefusedAndNothingIsWritten) {
  const mm_weight wk{format::nf4, lowbit::granularity::per_block(64), false, "nf4/64"};
  const lowbit::quant_tensor W = mm_make_weight(wk, 4, 64, 1);
  lowbit::quant_tensor Wd;
  ASSERT_TRUE(lowbit::cuda::to_device(W, Wd));
  buffer<float> x(2 * 64), y(8);
  const auto expect = [&](const lowbit::status& s, const char* needle) {
    ASSERT_FALSE(s);
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message();
  };
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, W, nullptr, y.get(), dtype::f32), "lives in host memory");
  expect(lowbit::matmul(x.get(), dtype::f32, 2, Wd, nullptr, y.get(), dtype::f32), "lives in device memory");
  lowbit::matmul_options bad;
  bad.compute = static_cast<matmul_compute>(7);
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, Wd, nullptr, y.get(), dtype::f32, bad), "options.compute");
  lowbit::matmul_options host_order;  // the lanes order is the host's: refused, not computed in another order
  host_order.order = lowbit::matmul_order::lanes;
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, Wd, nullptr, y.get(), dtype::f32, host_order), "options.order is lanes");
  host_order.order = static_cast<lowbit::matmul_order>(5);
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, Wd, nullptr, y.get(), dtype::f32, host_order), "not a matmul_order");
  expect(lowbit::cuda::matmul(x.get(), static_cast<dtype>(9), 2, Wd, nullptr, y.get(), dtype::f32), "x_dtype");
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, Wd, nullptr, nullptr, dtype::f32), "y is null");
  expect(lowbit::cuda::matmul(nullptr, dtype::f32, 2, Wd, nullptr, y.get(), dtype::f32), "x is null");
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, -1, Wd, nullptr, y.get(), dtype::f32), "must be >= 0");
  expect(lowbit::cuda::matmul(reinterpret_cast<char*>(x.get()) + 1, dtype::bf16, 2, Wd, nullptr, y.get(), dtype::f32), "not aligned");
  // raw views: N * K must be the weight's size; the workspace must be large enough
  expect(lowbit::cuda::matmul(x.get(), dtype::f32, 2, 4, 32, Wd.view(), nullptr, y.get(), dtype::f32, {}, nullptr, 0), "N * K");
  buffer<unsigned char> ws(16);
  expect(lowbit::cuda::matmul(x.get(), dtype::bf16, 2, 4, 64, Wd.view(), nullptr, y.get(), dtype::f32, {}, ws.get(), 16), "workspace");
  const std::vector<float> untouched = y.download();
  for (float v : untouched) ASSERT_EQ(v, 0.0f);
}

}  // namespace kt
