// SPDX-License-Identifier: Apache-2.0
// The fused matmul y = x · dequant(W)ᵀ (+ bias) on the host (include/lowbit/matmul/matmul.hpp):
// - every format (with and without double quantization), granularity, x dtype, y dtype and compute
//   mode against a float64 reference built from the codec tables, within docs/matmul.md's bound;
// - every host path (portable, AVX2, AVX-512) and thread count bit for bit equal to a scalar model
//   of the documented summation orders (lanes, the default, and warp, the CUDA kernels'; written
//   here from matmul/definition.hpp's text), at odd M, N, K, K not a multiple of the block size,
//   with and without bias, GEMV, panel and outer-product regimes;
// - special values, argument errors;
// - NativeLibrary: the NF4 GEMV against bitsandbytes' own CPU gemv_4bit ($LOWBIT_BNB_CPU_LIB;
//   skipped, visibly, without it).
#include "lowbit/matmul/matmul.hpp"
#include "lowbit/quant_tensor.hpp"
#include "../support/test_util.hpp"

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

using lowbit::dtype;
using lowbit::format;
using lowbit::matmul_compute;
using lowbit::matmul_order;

struct weight_kind {
  format fmt;
  lowbit::granularity gran;
  bool dq;
  const char* name;
};

std::vector<weight_kind> weight_kinds() {
  using G = lowbit::granularity;
  return {
      {format::nf4, G::per_block(64), false, "nf4/64"},
      {format::nf4, G::per_block(64), true, "nf4/64+dq"},
      {format::nf4, G::per_block(32), true, "nf4/32+dq"},
      {format::bnb_fp4, G::per_block(64), false, "bnb_fp4/64"},
      {format::bnb_fp4, G::per_block(128), true, "bnb_fp4/128+dq"},
      {format::int8_absmax, G::per_row(), false, "int8/row"},
      {format::int8_absmax, G::per_block(64), false, "int8/64"},
      {format::e4m3fn, G::per_block(32), false, "e4m3fn/32"},
      {format::e4m3fn, G::per_row(), false, "e4m3fn/row"},
      {format::e4m3fn, G::per_tensor(), false, "e4m3fn/tensor"},
      {format::e5m2, G::per_block(64), false, "e5m2/64"},
      {format::e5m2, G::per_row(), false, "e5m2/row"},
      {format::e5m2, G::per_tensor(), false, "e5m2/tensor"},
      {format::e2m1fn, G::per_block(32), false, "e2m1fn/32"},
      {format::e2m1fn, G::per_block(64), false, "e2m1fn/64"},
      {format::bnb_dynamic8, G::per_block(64), true, "bnb_dynamic8/64+dq"},
      {format::uint8_zeropoint, G::per_block(64), false, "uint8_zeropoint/64"},
  };
}

// ---- the independent reference: weights from the codec tables, the order from the definition ----

float mul(float a, float b) { return lowbit::detail::opaque(a * b); }
float add(float a, float b) { return lowbit::detail::opaque(a + b); }

float table_value(format f, std::uint8_t c) {
  namespace cd = lowbit::codecs;
  switch (f) {
    case format::nf4: return cd::nf4::decode(c);
    case format::bnb_fp4: return cd::bnb_fp4::decode(c);
    case format::bnb_dynamic8: return cd::bnb_dynamic8::decode(c);
    case format::int8_absmax: return static_cast<float>(static_cast<std::int8_t>(c));
    case format::uint8_zeropoint: return static_cast<float>(c);
    case format::e4m3fn: return cd::e4m3fn::decode(c);
    case format::e5m2: return cd::e5m2::decode(c);
    case format::e2m1fn: return cd::e2m1fn::decode(c);
  }
  return 0.0f;
}

// element i of W as float32: the dequantized value (docs/formats.md's formulas)
float weight(const lowbit::quant_tensor& W, std::int64_t i) {
  const format f = W.fmt();
  std::uint8_t c = W.codes()[lowbit::info(f).bits == 4 ? i / 2 : i];
  if (lowbit::info(f).bits == 4) {
    const bool high = (lowbit::info(f).order == lowbit::codecs::nibble_order::high_first) == (i % 2 == 0);
    c = high ? c >> 4 : c & 15;
  }
  const std::int64_t b = i / W.block_size();
  float s = 0.0f;
  if (W.double_quantized()) {
    s = add(mul(lowbit::codecs::bnb_dynamic8::decode(W.nested_codes()[b]), W.nested_scales()[b / 256]), W.nested_offset());
  } else {
    s = W.scales()[b];
  }
  const float t = table_value(f, c);
  if (f == format::int8_absmax) return mul(mul(t, s), 1.0f / 127.0f);
  if (f == format::uint8_zeropoint) return mul(t - static_cast<float>(W.zero_points()[b]), s);
  return mul(t, s);
}

float ftz(float v) { return std::fabs(v) < 1.17549435e-38f ? std::copysign(0.0f, v) : v; }
// the bf16-mode operand: a float32 subnormal is zero first, then nearest even
float bf16_op(float v) { return lowbit::bf16_bits_to_float(lowbit::float_to_bf16_bits(ftz(v))); }

// The two documented orders, written out from matmul/definition.hpp's text: 32 thread sums
// T = 16 g + t over the groups g of 512 elements of each super-run of 1024, K padded with zeros.
// warp: thread T takes the run [1024 j + 32 T, + 32) in order; bf16 pairs (2p, 2p + 1).
// lanes: step e of thread t is element 64 (e / 4) + 4 t + e % 4 of its group; bf16 pair p is
// (64 (p / 2) + 4 t + p % 2, that + 2). Each bf16 pair: the odd element first.
float model(const float* x, const float* w, std::int64_t K, matmul_compute c, const float* bias, matmul_order order = matmul_order::lanes) {
  const std::int64_t J = (K + 1023) / 1024;
  const bool lanes = order != matmul_order::warp;
  float s[32];
  auto xv = [&](std::int64_t k) { return k < K ? x[k] : 0.0f; };
  auto wv = [&](std::int64_t k) { return k < K ? w[k] : 0.0f; };
  for (int T = 0; T < 32; ++T) {
    const int g = T / 16, t = T % 16;
    float acc = 0.0f;
    for (std::int64_t j = 0; j < J; ++j) {
      const std::int64_t base = 1024 * j + 512 * g;
      if (c == matmul_compute::f32) {
        for (int e = 0; e < 32; ++e) {
          const std::int64_t k = lanes ? base + 64 * (e / 4) + 4 * t + e % 4 : base + 32 * t + e;
          acc = std::fma(xv(k), wv(k), acc);
        }
      } else {
        for (int p = 0; p < 16; ++p) {
          const std::int64_t even = lanes ? base + 64 * (p / 2) + 4 * t + p % 2 : base + 32 * t + 2 * p;
          const std::int64_t odd = even + (lanes ? 2 : 1);
          acc = ftz(std::fma(bf16_op(xv(odd)), bf16_op(wv(odd)), acc));
          acc = ftz(std::fma(bf16_op(xv(even)), bf16_op(wv(even)), acc));
        }
      }
    }
    s[T] = acc;
  }
  for (int h = 16; h >= 1; h /= 2)
    for (int t = 0; t < h; ++t) s[t] = add(s[t], s[t + h]);
  return bias ? add(s[0], *bias) : s[0];
}

// ---- dense buffers of any dtype ----

struct dense {
  dtype dt;
  std::vector<std::uint8_t> bytes;
  dense(dtype t, std::size_t n) : dt(t), bytes(n * static_cast<std::size_t>(lowbit::dtype_size(t))) {}
  void set(std::size_t i, float v) {
    if (dt == dtype::f32) std::memcpy(bytes.data() + 4 * i, &v, 4);
    else {
      const std::uint16_t h = dt == dtype::f16 ? lowbit::float_to_f16_bits(v) : lowbit::float_to_bf16_bits(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  float get(std::size_t i) const {
    if (dt == dtype::f32) {
      float v;
      std::memcpy(&v, bytes.data() + 4 * i, 4);
      return v;
    }
    std::uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    return dt == dtype::f16 ? lowbit::f16_bits_to_float(h) : lowbit::bf16_bits_to_float(h);
  }
  std::size_t size() const { return bytes.size() / static_cast<std::size_t>(lowbit::dtype_size(dt)); }
};

std::string dname(dtype t) { return lowbit::dtype_name(t); }

// With zeros > 0, elements [zeros, 2 zeros) are zero too: whole zero blocks of every size up to zeros
// that divides it.
lowbit::quant_tensor make_weight(const weight_kind& wk, std::int64_t N, std::int64_t K, std::mt19937_64& rng, std::int64_t zeros = 0) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(static_cast<std::size_t>(N * K));
  for (auto& v : w) v = nd(rng) / std::sqrt(static_cast<float>(K));
  if (N * K > 40) std::fill(w.begin() + 3, w.begin() + 40, 0.0f);  // a zero block for the small block sizes
  if (zeros > 0 && 2 * zeros <= N * K) std::fill(w.begin() + zeros, w.begin() + 2 * zeros, 0.0f);
  lowbit::quantize_params p;
  p.fmt = wk.fmt;
  p.gran = wk.gran;
  p.double_quant = wk.dq;
  lowbit::quant_tensor q;
  const lowbit::status s = lowbit::quantize(w.data(), dtype::f32, {N, K}, p, q);
  EXPECT_TRUE(s) << s.message();
  return q;
}

struct path {
  const char* name;
  bool simd, avx512;
  int threads;
};
const path kPaths[] = {{"portable/1", false, false, 1}, {"portable/3", false, false, 3}, {"avx2/1", true, false, 1},
                       {"avx2/3", true, false, 3},     {"avx512/1", true, true, 1},     {"avx512/4", true, true, 4}};

// The paths of kPaths that run different code on this CPU. A path whose kernels (mm::kernel_choice,
// what its options select here) and thread count are an earlier path's makes the same calls with
// the same inputs: without AVX-512, "avx512/1" is "avx2/1"; under LOWBIT_NO_SIMD every path is
// portable. The sweeps below skip those repeats (they were a third of host_no_simd_test's run).
std::vector<path> distinct_paths() {
  const auto choice = [](const path& p) {
    lowbit::matmul_options o;
    o.simd = p.simd;
    o.avx512 = p.avx512;
    const lowbit::mm::kernel_choice kc(o);
    return (kc.avx2 ? 1 : 0) | (kc.avx512 ? 2 : 0) | (kc.avx512_bf16 ? 4 : 0);
  };
  std::vector<path> out;
  for (const path& p : kPaths) {
    bool repeat = false;
    for (const path& q : out) repeat = repeat || (choice(p) == choice(q) && p.threads == q.threads);
    if (!repeat) out.push_back(p);
  }
  return out;
}

struct shape {
  std::int64_t M, N, K;
};

// One (weight, shape): every x dtype, y dtype, compute mode, bias on/off, path.
void check_all(const weight_kind& wk, const shape& sh, std::uint64_t salt) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  const std::int64_t M = sh.M, N = sh.N, K = sh.K;
  SCOPED_TRACE(std::string(wk.name) + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  const lowbit::quant_tensor W = make_weight(wk, N, K, rng);
  std::vector<float> w(static_cast<std::size_t>(N * K));
  for (std::int64_t i = 0; i < N * K; ++i) w[static_cast<std::size_t>(i)] = weight(W, i);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const dtype dts[] = {dtype::f32, dtype::f16, dtype::bf16};
  int combo = 0;
  for (dtype xt : dts)
    for (dtype yt : dts)
      for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
        const bool with_bias = (combo++ % 2) == 0;
        SCOPED_TRACE("x " + dname(xt) + " y " + dname(yt) + (c == matmul_compute::f32 ? " compute f32" : " compute bf16") +
                     (with_bias ? " bias" : ""));
        dense x(xt, static_cast<std::size_t>(M * K)), bias(yt, static_cast<std::size_t>(N));
        for (std::size_t i = 0; i < x.size(); ++i) x.set(i, nd(rng));
        for (std::size_t i = 0; i < bias.size(); ++i) bias.set(i, nd(rng));
        std::vector<float> xf(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) xf[i] = x.get(i);
        // expected bytes from the model; bound against float64
        dense expect(yt, static_cast<std::size_t>(M * N));
        const std::int64_t J = (K + 1023) / 1024;
        const double u = std::ldexp(1.0, -24), chain = static_cast<double>(32 * J + 6);
        const double rel = c == matmul_compute::f32 ? chain * u * 1.01 : std::ldexp(1.0, -7) + std::ldexp(1.0, -16) + chain * u * 1.01;
        const double out_u = yt == dtype::f32 ? 0.0 : (yt == dtype::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8));
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t n = 0; n < N; ++n) {
            const float b = bias.get(static_cast<std::size_t>(n));
            const float v = model(xf.data() + m * K, w.data() + n * K, K, c, with_bias ? &b : nullptr);
            expect.set(static_cast<std::size_t>(m * N + n), v);
            double ref = with_bias ? static_cast<double>(b) : 0.0, mag = with_bias ? std::fabs(static_cast<double>(b)) : 0.0;
            for (std::int64_t k = 0; k < K; ++k) {
              const double p = static_cast<double>(xf[static_cast<std::size_t>(m * K + k)]) * w[static_cast<std::size_t>(n * K + k)];
              ref += p;
              mag += std::fabs(p);
            }
            const double got = expect.get(static_cast<std::size_t>(m * N + n));
            const double bound = rel * mag + out_u * (std::fabs(ref) + rel * mag) + 1e-30 * static_cast<double>(K + 1);
            ASSERT_LE(std::fabs(got - ref), bound) << "m " << m << " n " << n << " ref " << ref << " got " << got;
          }
        // y of one path in one order, byte for byte against the model's bytes
        auto check_path = [&](const path& p, matmul_order order, const dense& want) {
          SCOPED_TRACE(std::string(order == matmul_order::warp ? "warp order, " : "") + p.name);
          lowbit::matmul_options o;
          o.compute = c;
          o.order = order;
          o.simd = p.simd;
          o.avx512 = p.avx512;
          o.threads = p.threads;
          dense y(yt, static_cast<std::size_t>(M * N));
          const lowbit::status s = lowbit::matmul(x.bytes.data(), xt, M, W, with_bias ? bias.bytes.data() : nullptr, y.bytes.data(), yt, o);
          ASSERT_TRUE(s) << s.message();
          for (std::size_t i = 0; i < y.size(); ++i)
            ASSERT_EQ(lowbit_test::bits_of(y.get(i)), lowbit_test::bits_of(want.get(i)))
                << "element " << i << ": got " << y.get(i) << " expected " << want.get(i);
        };
        for (const path& p : distinct_paths()) check_path(p, matmul_order::native, expect);
        // the warp order (the CUDA kernels'), computed on the host: against its own model
        dense expect_warp(yt, static_cast<std::size_t>(M * N));
        for (std::int64_t m = 0; m < M; ++m)
          for (std::int64_t n = 0; n < N; ++n) {
            const float b = bias.get(static_cast<std::size_t>(n));
            expect_warp.set(static_cast<std::size_t>(m * N + n),
                            model(xf.data() + m * K, w.data() + n * K, K, c, with_bias ? &b : nullptr, matmul_order::warp));
          }
        for (const path& p : {kPaths[1], kPaths[2], kPaths[5]}) check_path(p, matmul_order::warp, expect_warp);
      }
}

TEST(Matmul, EveryFormatDtypeModeAndPathAgainstReferenceAndModel) {
  // odd M, N, K; K not a multiple of the block; a panel regime (M > 16); a K with a fast path
  // (K and block multiples of 64) and a partial last super-run
  // and the fused GEMV (M <= 4, K a multiple of 1024); the sliced lane dots (AVX-512, M < 32) with
  // whole and partial 4 x 4 blocks over three super-runs; the outer-product form (AVX-512, M >= 32)
  // over two x-row super-blocks, a full and a partial W panel; the AVX2 fused GEMV's x-row blocks
  // (4, 4, 2) over a whole and a partial tile of 16 W rows
  const shape shapes[] = {{1, 3, 77}, {5, 7, 160}, {17, 5, 1100}, {3, 9, 2112}, {3, 5, 2048}, {1, 3, 1024}, {8, 9, 2112}, {64, 67, 1056},
                          {10, 19, 1024}};
  std::string run;
  for (const path& p : distinct_paths()) run += std::string(" ") + p.name;
  std::printf("native order on this CPU's distinct paths:%s\n", run.c_str());
  std::uint64_t salt = 1;
  for (const weight_kind& wk : weight_kinds())
    for (const shape& sh : shapes) check_all(wk, sh, salt++);
}

// Block-scaled weights (MX, NVFP4, fp8_e4m3_block; issue 16's formats) through the same matmul:
// w = what dequantize_scaled writes as float32, the order the model's, on every path. Tiles of 1 x
// 32, 1 x 16 and 16 x 16, 128 x 128 with partial edge tiles, K not a multiple of 32.
TEST(Matmul, BlockScaledWeightsFollowTheModel) {
  LOWBIT_SEED_TRACE();
  using lowbit::scaled_format;
  struct kind {
    scaled_format fmt;
    lowbit::granularity gran;
    const char* name;
  };
  const kind kinds[] = {{scaled_format::mxfp4, lowbit::granularity::per_tile(0, 0), "mxfp4"},
                        {scaled_format::mxfp8_e4m3, lowbit::granularity::per_tile(0, 0), "mxfp8_e4m3"},
                        {scaled_format::mxfp8_e5m2, lowbit::granularity::per_tile(0, 0), "mxfp8_e5m2"},
                        {scaled_format::mxfp6_e2m3, lowbit::granularity::per_tile(0, 0), "mxfp6_e2m3"},
                        {scaled_format::mxfp6_e3m2, lowbit::granularity::per_tile(0, 0), "mxfp6_e3m2"},
                        {scaled_format::nvfp4, lowbit::granularity::per_tile(0, 0), "nvfp4 1x16"},
                        {scaled_format::nvfp4, lowbit::granularity::per_tile(16, 16), "nvfp4 16x16"},
                        {scaled_format::fp8_e4m3_block, lowbit::granularity::per_tile(128, 128), "fp8_e4m3_block 128x128"}};
  const shape shapes[] = {{1, 5, 96}, {3, 19, 1100}, {17, 3, 256}, {2, 130, 2080}, {64, 70, 160}};
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x5CA1EDu);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (const kind& kd : kinds)
    for (const shape& sh : shapes) {
      const std::int64_t M = sh.M, N = sh.N, K = sh.K;
      SCOPED_TRACE(std::string(kd.name) + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
      std::vector<float> wsrc(static_cast<std::size_t>(N * K));
      for (auto& v : wsrc) v = nd(rng);
      lowbit::scaled_params p;
      p.fmt = kd.fmt;
      p.gran = kd.gran;
      lowbit::scaled_tensor W;
      lowbit::status s = lowbit::quantize(wsrc.data(), dtype::f32, {N, K}, p, W);
      ASSERT_TRUE(s) << s.message();
      std::vector<float> w(static_cast<std::size_t>(N * K));
      ASSERT_TRUE(lowbit::dequantize(W, w.data(), dtype::f32));
      for (dtype xt : {dtype::f32, dtype::bf16})
        for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
          const dtype yt = xt;
          SCOPED_TRACE("x/y " + dname(xt) + (c == matmul_compute::f32 ? " compute f32" : " compute bf16"));
          dense x(xt, static_cast<std::size_t>(M * K)), bias(yt, static_cast<std::size_t>(N));
          for (std::size_t i = 0; i < x.size(); ++i) x.set(i, nd(rng));
          for (std::size_t i = 0; i < bias.size(); ++i) bias.set(i, nd(rng));
          std::vector<float> xf(x.size());
          for (std::size_t i = 0; i < x.size(); ++i) xf[i] = x.get(i);
          dense expect(yt, static_cast<std::size_t>(M * N));
          for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t n = 0; n < N; ++n) {
              const float b = bias.get(static_cast<std::size_t>(n));
              expect.set(static_cast<std::size_t>(m * N + n), model(xf.data() + m * K, w.data() + n * K, K, c, &b));
            }
          for (const path& pa : distinct_paths()) {
            SCOPED_TRACE(pa.name);
            lowbit::matmul_options o;
            o.compute = c;
            o.simd = pa.simd;
            o.avx512 = pa.avx512;
            o.threads = pa.threads;
            dense y(yt, static_cast<std::size_t>(M * N));
            s = lowbit::matmul(x.bytes.data(), xt, M, W, bias.bytes.data(), y.bytes.data(), yt, o);
            ASSERT_TRUE(s) << s.message();
            for (std::size_t i = 0; i < y.size(); ++i)
              ASSERT_EQ(lowbit_test::bits_of(y.get(i)), lowbit_test::bits_of(expect.get(i)))
                  << "element " << i << ": got " << y.get(i) << " expected " << expect.get(i);
          }
          // the same weight with its scales in the swizzled 128x4 layout (1-row tiles of byte scales)
          if (lowbit::bytes_per_scale(kd.fmt) == 1 && W.grid().tile.rows == 1) {
            lowbit::scaled_view v = W.view();
            const std::int64_t gc = W.grid().grid_cols();
            std::vector<std::uint8_t> swz(static_cast<std::size_t>(lowbit::quant::swizzled_scale_bytes(N, gc)));
            ASSERT_TRUE(lowbit::quant::swizzle_scales(W.scale_bytes(), N, gc, swz.data()));
            v.layout = lowbit::scale_layout::swizzled;
            v.scales = swz.data();
            lowbit::matmul_options o;
            o.compute = c;
            dense y(yt, static_cast<std::size_t>(M * N));
            s = lowbit::host::matmul(x.bytes.data(), xt, M, N, K, v, bias.bytes.data(), y.bytes.data(), yt, o);
            ASSERT_TRUE(s) << s.message();
            for (std::size_t i = 0; i < y.size(); ++i)
              ASSERT_EQ(lowbit_test::bits_of(y.get(i)), lowbit_test::bits_of(expect.get(i))) << "swizzled scales, element " << i;
          }
        }
    }
  // shape mismatches are refused by name
  lowbit::scaled_params p;
  p.fmt = scaled_format::mxfp4;
  std::vector<float> wsrc(4 * 64, 0.5f), x(64), y(4);
  lowbit::scaled_tensor W;
  ASSERT_TRUE(lowbit::quantize(wsrc.data(), dtype::f32, {4, 64}, p, W));
  const lowbit::status s = lowbit::host::matmul(x.data(), dtype::f32, 1, 4, 32, W.view(), nullptr, y.data(), dtype::f32);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("not N x K"), std::string::npos) << s.message();
}

#if LOWBIT_HAVE_AVX2_KERNELS
// The block scale of block b as docs/formats.md defines it (the nested one: two roundings).
float block_scale(const lowbit::quant_tensor& W, std::int64_t b) {
  if (!W.double_quantized()) return W.scales()[b];
  return add(mul(lowbit::codecs::bnb_dynamic8::decode(W.nested_codes()[b]), W.nested_scales()[b / 256]), W.nested_offset());
}
#endif

#if LOWBIT_HAVE_AVX2_KERNELS
// The vector chunk scales of the GEMVs (host::mmk::chunk_scales_avx512, chunk_scales_avx2: `fn`)
// against the definition: every chunk of 64 elements of windows that start anywhere (inside a
// block, on either side of a 256-block group boundary of the nested scales) and end anywhere, for
// 1, 2, 32 and 64 chunks per block, plain and double-quantized, and the smallest nonzero |scale| it
// reports.
template <class Fn>
void check_chunk_scales(Fn&& fn) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x5CA1E5u);
  const std::int64_t N = 40, K = 4096;  // 2560 chunks: 2560 blocks of 64, 10 groups of 256
  for (std::int64_t bs : {64, 128, 2048, 4096})
    for (bool dq : {false, true}) {
      SCOPED_TRACE("block " + std::to_string(bs) + (dq ? " double-quantized" : " float32 absmax"));
      const lowbit::quant_tensor W = make_weight({format::nf4, lowbit::granularity::per_block(bs), dq, "nf4"}, N, K, rng, 2048);
      const lowbit::quant_view v = W.view();
      lowbit::mm::run_decoder<format::nf4> dec(v);
      int shift = 0;
      while ((std::int64_t{64} << shift) < bs) ++shift;
      const std::int64_t runs = N * K / 64;
      std::vector<std::pair<std::int64_t, std::int64_t>> windows;  // (first run, count)
      for (std::int64_t r0 : {std::int64_t{0}, std::int64_t{1}, std::int64_t{64}, (std::int64_t{256} << shift) - 3, (std::int64_t{512} << shift) - 7,
                              runs - 17})
        for (std::int64_t count : {std::int64_t{1}, std::int64_t{5}, std::int64_t{16}, std::int64_t{17}, std::int64_t{40}})
          if (r0 < runs) windows.emplace_back(r0, std::min(count, runs - r0));
      std::uniform_int_distribution<std::int64_t> first(0, runs - 1);
      for (int i = 0; i < 200; ++i) {
        const std::int64_t r0 = first(rng);
        windows.emplace_back(r0, std::uniform_int_distribution<std::int64_t>(1, std::min<std::int64_t>(100, runs - r0))(rng));
      }
      std::vector<float> out(101);
      for (const auto& w : windows) {
        std::fill(out.begin(), out.end(), -1.0f);
        float smin = 1e30f;  // lowered to the smallest nonzero |scale| of the window's blocks
        fn(w.first, w.second, shift, v.scales, v.nested_codes, dec.nested_table(), v.nested_scales, v.nested_offset, out.data(), &smin);
        float want = 1e30f;
        for (std::int64_t t = 0; t < w.second; ++t) {
          const float bsc = block_scale(W, (w.first + t) >> shift);
          ASSERT_EQ(lowbit_test::bits_of(out[static_cast<std::size_t>(t)]), lowbit_test::bits_of(bsc))
              << "chunk " << w.first + t << " of window (" << w.first << ", " << w.second << ")";
          if (std::fabs(bsc) > 0.0f) want = std::min(want, std::fabs(bsc));
        }
        ASSERT_EQ(lowbit_test::bits_of(smin), lowbit_test::bits_of(want)) << "smallest scale of window (" << w.first << ", " << w.second << ")";
        ASSERT_EQ(out[static_cast<std::size_t>(w.second)], -1.0f) << "wrote past the window (" << w.first << ", " << w.second << ")";
      }
    }
}
#endif

TEST(Matmul, VectorChunkScalesEqualTheDefinition) {
#if LOWBIT_HAVE_AVX2_KERNELS
  bool ran = false;
#  if LOWBIT_HAVE_AVX512_KERNELS
  if (lowbit::host::avx512::bf16_available()) {
    SCOPED_TRACE("chunk_scales_avx512");
    check_chunk_scales([](auto... a) { lowbit::host::mmk::chunk_scales_avx512(a...); });
    ran = true;
  } else {
    std::printf("note: this CPU has no AVX512_BF16; chunk_scales_avx512 not checked\n");
  }
#  endif
  if (lowbit::host::avx2::available()) {
    SCOPED_TRACE("chunk_scales_avx2");
    check_chunk_scales([](auto... a) { lowbit::host::mmk::chunk_scales_avx2(a...); });
    ran = true;
  }
  if (!ran) GTEST_SKIP() << "this CPU has no AVX2";
#else
  GTEST_SKIP() << "built without the SIMD kernels";
#endif
}

#if LOWBIT_HAVE_AVX2_KERNELS
// float32 bit patterns for the bf16 operand conversions: every one around the subnormal/normal and
// the NaN boundaries, a stride through the rest, both signs, padded with zeros to a multiple of `lanes`.
std::vector<std::uint32_t> bf16_boundary_patterns(std::size_t lanes) {
  std::vector<std::uint32_t> pats;
  for (std::uint32_t u = 0x007E0000u; u < 0x00820000u; ++u) pats.push_back(u);
  for (std::uint32_t u = 0x7F7F0000u; u < 0x7F810000u; ++u) pats.push_back(u);
  for (std::uint64_t u = 0; u < (std::uint64_t{1} << 32); u += 4099) pats.push_back(static_cast<std::uint32_t>(u));
  const std::size_t base = pats.size();
  for (std::size_t i = 0; i < base; ++i) pats.push_back(pats[i] | 0x80000000u);
  while (pats.size() % lanes) pats.push_back(0);
  return pats;
}

// The AVX2 bf16 operand rounding (mmk::detail::bf16_operand8) against mm::bf16_operand_bits on
// every float32 around the subnormal/normal and the NaN boundaries and a stride through the rest;
// its shortcut bf16_round_normal8 on those that are neither NaN nor subnormal.
LOWBIT_AVX2_FMA_DOT void round_bf16_avx2(const std::uint32_t* in, std::uint32_t* full, std::uint32_t* normal) {
  const __m256 v = _mm256_loadu_ps(reinterpret_cast<const float*>(in));
  _mm256_storeu_ps(reinterpret_cast<float*>(full), lowbit::host::mmk::detail::bf16_operand8(v));
  _mm256_storeu_ps(reinterpret_cast<float*>(normal), lowbit::host::mmk::detail::bf16_round_normal8(v));
}
#endif

TEST(Matmul, Avx2Bf16OperandRoundingMatchesDefinition) {
#if LOWBIT_HAVE_AVX2_KERNELS
  if (!lowbit::host::avx2::available()) GTEST_SKIP() << "this CPU has no AVX2";
  const std::vector<std::uint32_t> pats = bf16_boundary_patterns(8);
  std::size_t normal_checked = 0;
  for (std::size_t i = 0; i < pats.size(); i += 8) {
    std::uint32_t full[8], normal[8];
    round_bf16_avx2(pats.data() + i, full, normal);
    for (int l = 0; l < 8; ++l) {
      const std::uint32_t u = pats[i + l];
      const std::uint32_t want = static_cast<std::uint32_t>(lowbit::mm::bf16_operand_bits(lowbit_test::float_of(u))) << 16;
      ASSERT_EQ(full[l], want) << lowbit_test::hex(u);
      const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u, subnormal = (u & 0x7F800000u) == 0 && (u & 0x007FFFFFu) != 0;
      if (!nan && !subnormal) {
        ASSERT_EQ(normal[l], want) << lowbit_test::hex(u);
        ++normal_checked;
      }
    }
  }
  EXPECT_GT(normal_checked, pats.size() / 2);
#else
  GTEST_SKIP() << "built without the AVX2 kernels";
#endif
}

// The AVX-512 operand conversion (vcvtne2ps2bf16 and a word permute) against mm::bf16_operand_bits:
// every float32 around the subnormal/normal boundary, the NaN boundary, and a stride through the rest.
TEST(Matmul, Bf16OperandConversionMatchesDefinition) {
#if LOWBIT_HAVE_AVX512_KERNELS
  if (!lowbit::host::avx512::bf16_available()) GTEST_SKIP() << "this CPU has no AVX512_BF16";
  const std::vector<std::uint32_t> pats = bf16_boundary_patterns(32);
  std::vector<std::uint32_t> got(pats.size() / 2);
  for (std::size_t i = 0; i < pats.size(); i += 32)
    lowbit::host::mmk::detail::bf16_pairs(pats.data() + i, pats.data() + i + 16, got.data() + i / 2);
  for (std::size_t i = 0; i < pats.size(); i += 32)
    for (int t = 0; t < 16; ++t) {
      const std::uint32_t e = pats[i + t], o = pats[i + 16 + t], w = got[i / 2 + t];
      ASSERT_EQ(w & 0xFFFFu, lowbit::mm::bf16_operand_bits(lowbit_test::float_of(e))) << lowbit_test::hex(e);
      ASSERT_EQ(w >> 16, lowbit::mm::bf16_operand_bits(lowbit_test::float_of(o))) << lowbit_test::hex(o);
    }
#else
  GTEST_SKIP() << "built without the AVX-512 kernels";
#endif
}

TEST(Matmul, SpecialValues) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x5eed);
  const std::int64_t N = 4, K = 96;
  const lowbit::quant_tensor W = make_weight(weight_kinds()[1], N, K, rng);
  std::vector<float> x(2 * K, 0.5f);
  x[5] = std::numeric_limits<float>::quiet_NaN();             // row 0: NaN
  x[K + 7] = std::numeric_limits<float>::infinity();         // row 1: Inf times weights of both signs or zero
  for (const path& p : kPaths) {
    SCOPED_TRACE(p.name);
    for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
      lowbit::matmul_options o;
      o.compute = c;
      o.simd = p.simd, o.avx512 = p.avx512, o.threads = p.threads;
      std::vector<float> y(2 * N);
      ASSERT_TRUE(lowbit::matmul(x.data(), dtype::f32, 2, W, nullptr, y.data(), dtype::f32, o));
      for (std::int64_t n = 0; n < N; ++n) {
        EXPECT_TRUE(std::isnan(y[n])) << n;
        const float w7 = weight(W, n * K + 7);
        if (w7 != 0.0f) EXPECT_TRUE(std::isinf(y[N + n]) && (y[N + n] > 0) == (w7 > 0)) << n << " " << y[N + n];
        else EXPECT_TRUE(std::isnan(y[N + n])) << n;  // Inf * 0
      }
    }
  }
  // K = 0: y = bias (or +0)
  lowbit::quant_tensor E;
  lowbit::quantize_params qp;
  ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f32, {3, 0}, qp, E));
  const float bias[3] = {1.5f, -0.0f, 2.0f};
  float y[6] = {9, 9, 9, 9, 9, 9};
  ASSERT_TRUE(lowbit::matmul(x.data(), dtype::f32, 2, E, bias, y, dtype::f32));
  EXPECT_EQ(y[0], 1.5f);
  EXPECT_EQ(lowbit_test::bits_of(y[1]), 0u);  // +0 + -0 = +0
  EXPECT_EQ(y[5], 2.0f);
  ASSERT_TRUE(lowbit::matmul(x.data(), dtype::f32, 2, E, nullptr, y, dtype::f32));
  EXPECT_EQ(lowbit_test::bits_of(y[2]), 0u);
}

// Every path's y = x W^T (f32 x and y, M rows, mode c) against expect: NaN where expect is NaN,
// bit for bit elsewhere.
void every_path_nan_or_bits(const lowbit::quant_tensor& W, const std::vector<float>& x, std::int64_t M, matmul_compute c,
                            const std::vector<float>& expect) {
  for (const path& p : kPaths) {
    lowbit::matmul_options o;
    o.compute = c;
    o.simd = p.simd, o.avx512 = p.avx512, o.threads = p.threads;
    std::vector<float> y(expect.size());
    ASSERT_TRUE(lowbit::matmul(x.data(), dtype::f32, M, W, nullptr, y.data(), dtype::f32, o)) << p.name;
    for (std::size_t i = 0; i < y.size(); ++i) {
      if (std::isnan(expect[i])) {
        ASSERT_TRUE(std::isnan(y[i])) << p.name << " element " << i << ": got " << y[i];
      } else {
        ASSERT_EQ(lowbit_test::bits_of(y[i]), lowbit_test::bits_of(expect[i])) << p.name << " element " << i << ": got " << y[i] << " expected " << expect[i];
      }
    }
  }
}

// FP8 weights whose codes include NaN (and e5m2's Inf) and whose scales overflow when multiplied
// by 2^(127 - bias) (the AVX-512 decoder's shorter form declines those chunks) or are subnormal,
// negative or tiny: every path and compute mode bit for bit against the model (NaN results as
// NaN), at M = 1 (the fused GEMV) and M = 5.
TEST(Matmul, Fp8WeightsWithSpecialCodesAndExtremeScales) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0xf8f8u);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // row 0 takes all of these (3e38 makes infinite weights), the other rows the first six; rows 0
  // and 1 have NaN (and e5m2's Inf) codes, so the other rows' results are finite
  const float scales[] = {0.75f, 0x1p100f, 0x1p-140f, 1e-30f, -0.5f, 0x1p7f, 3e38f};
  const std::int64_t N = 7, K = 2048;
  for (const format f : {format::e4m3fn, format::e5m2})
    for (const lowbit::granularity g : {lowbit::granularity::per_block(64), lowbit::granularity::per_row()}) {
      lowbit::quantize_params qp;
      qp.fmt = f;
      qp.gran = g;
      std::vector<float> dense(static_cast<std::size_t>(N * K));
      for (float& v : dense) v = nd(rng);
      lowbit::quant_tensor W;
      ASSERT_TRUE(lowbit::quantize(dense.data(), dtype::f32, {N, K}, qp, W));
      const std::uint8_t special = f == format::e4m3fn ? 0x7F : 0x7C;
      for (std::int64_t i = 0; i < N * K; ++i) {
        std::uint8_t c = static_cast<std::uint8_t>(rng());
        // rows 0 and 1 keep every code, the others none of the special ones
        if (i / K >= 2 && (c & special) == special) c = static_cast<std::uint8_t>(c & ~0x40);
        W.codes()[i] = c;
      }
      const std::int64_t blocks_per_row = W.blocks() / N;
      for (std::int64_t b = 0; b < W.blocks(); ++b) W.scales()[b] = scales[b / blocks_per_row == 0 ? b % 7 : b % 6];
      std::vector<float> w(static_cast<std::size_t>(N * K));
      for (std::int64_t i = 0; i < N * K; ++i) w[static_cast<std::size_t>(i)] = weight(W, i);
      for (const std::int64_t M : {1, 5}) {
        std::vector<float> x(static_cast<std::size_t>(M * K));
        for (float& v : x) v = std::ldexp(nd(rng), -20);
        for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
          SCOPED_TRACE(std::string(lowbit::info(f).name) + (g.k == lowbit::granularity::kind::per_row ? " per row" : " block 64") +
                       " M=" + std::to_string(M) + (c == matmul_compute::f32 ? " f32" : " bf16"));
          std::vector<float> expect(static_cast<std::size_t>(M * N));
          for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t n = 0; n < N; ++n)
              expect[static_cast<std::size_t>(m * N + n)] = model(x.data() + m * K, w.data() + n * K, K, c, nullptr);
          for (std::size_t i = 0; i < expect.size(); ++i)
            if (static_cast<std::int64_t>(i) % N >= 2) {
              ASSERT_TRUE(std::isfinite(expect[i])) << "element " << i;
            }
          ASSERT_NO_FATAL_FAILURE(every_path_nan_or_bits(W, x, M, c, expect));
        }
      }
    }
}

// 4-bit weights (plain block scales) whose scales are NaN with every payload bit set, subnormal
// enough that every w of the block is a float32 subnormal, zero or negative, beside ordinary rows:
// every path and compute mode bit for bit against the model (NaN results as NaN), at M = 1, 2, 5
// (the AVX2 fused GEMV's one- and two-row tiles). Its bf16 mode rounds a chunk's 16 values the
// short way only where the whole row allows it: rounding the NaN 0x7FFFFFFF that way gives -0,
// and rounding a subnormal keeps it, where the definition flushes it (row 1's y is then not 0).
TEST(Matmul, FourBitWeightsWithNanTinyAndZeroScales) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x4b17u);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::int64_t N = 7, K = 2048;
  const float nan_all_ones = lowbit_test::float_of(0x7FFFFFFFu);
  for (const format f : {format::nf4, format::bnb_fp4})
    for (const std::int64_t block : {64, 256}) {
      lowbit::quantize_params qp;
      qp.fmt = f;
      qp.gran = lowbit::granularity::per_block(block);
      std::vector<float> dense(static_cast<std::size_t>(N * K));
      for (float& v : dense) v = nd(rng);
      lowbit::quant_tensor W;
      ASSERT_TRUE(lowbit::quantize(dense.data(), dtype::f32, {N, K}, qp, W));
      const std::int64_t per_row = K / block;
      float* sc = W.scales();
      sc[1] = nan_all_ones;                                                          // row 0: one NaN block
      for (std::int64_t b = 0; b < per_row; ++b) sc[per_row + b] = 0x1p-127f;       // row 1: every w subnormal
      for (std::int64_t b = 0; b < per_row; b += 2) sc[2 * per_row + b] = 0x1p-127f;  // row 2: every other block
      sc[3 * per_row] = 0.0f;                                                        // row 3: a zero and a negative block
      sc[3 * per_row + 1] = -sc[3 * per_row + 1];
      std::vector<float> w(static_cast<std::size_t>(N * K));
      for (std::int64_t i = 0; i < N * K; ++i) w[static_cast<std::size_t>(i)] = weight(W, i);
      for (const std::int64_t M : {1, 2, 5}) {
        std::vector<float> x(static_cast<std::size_t>(M * K));
        for (float& v : x) v = std::ldexp(nd(rng), 100);  // products of row 1 far from the flush range
        for (matmul_compute c : {matmul_compute::f32, matmul_compute::bf16}) {
          SCOPED_TRACE(std::string(lowbit::info(f).name) + " block " + std::to_string(block) + " M=" + std::to_string(M) +
                       (c == matmul_compute::f32 ? " f32" : " bf16"));
          std::vector<float> expect(static_cast<std::size_t>(M * N));
          for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t n = 0; n < N; ++n) {
              const float v = model(x.data() + m * K, w.data() + n * K, K, c, nullptr);
              expect[static_cast<std::size_t>(m * N + n)] = v;
              ASSERT_EQ(std::isnan(v), n == 0) << "row " << n;
              if (n == 1) {
                ASSERT_EQ(v == 0.0f, c == matmul_compute::bf16) << "row 1 is not what the test is for";
              }
            }
          ASSERT_NO_FATAL_FAILURE(every_path_nan_or_bits(W, x, M, c, expect));
        }
      }
    }
}

// bf16 mode with sums near float32's smallest normal: partial sums that round to a subnormal
// must become a zero of their sign, one that rounds to 2^-126 must stay (fma_ftz), on every path
// and in every kernel regime (the fused GEMV, the lane dots, the outer-product form). AVX512_BF16's
// vdpbf16ps flushes to +0, and also flushes a sum whose exact value is below 2^-126 but rounds to
// it: such inputs must not reach it.
TEST(Matmul, Bf16TinySumsFlushAsTheDefinitionOnEveryPath) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x71e5u);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // every path in bf16 mode against expect(i), bit for bit
  auto every_path = [](const lowbit::quant_tensor& W, const std::vector<float>& x, std::int64_t M, std::int64_t N, auto&& expect,
                       matmul_order order = matmul_order::lanes) {
    for (const path& p : kPaths) {
      SCOPED_TRACE(p.name);
      lowbit::matmul_options o;
      o.compute = matmul_compute::bf16;
      o.order = order;
      o.simd = p.simd, o.avx512 = p.avx512, o.threads = p.threads;
      std::vector<float> y(static_cast<std::size_t>(M * N));
      ASSERT_TRUE(lowbit::matmul(x.data(), dtype::f32, M, W, nullptr, y.data(), dtype::f32, o));
      for (std::size_t i = 0; i < y.size(); ++i)
        ASSERT_EQ(lowbit_test::bits_of(y[i]), lowbit_test::bits_of(expect(i))) << "element " << i << ": got " << y[i] << " expected " << expect(i);
    }
  };
  const shape shapes[] = {{1, 9, 2048}, {3, 5, 1024}, {7, 6, 1056}, {64, 66, 1024}};
  for (const weight_kind& wk : {weight_kinds()[0], weight_kinds()[1]})
    for (const shape& sh : shapes) {
      const std::int64_t M = sh.M, N = sh.N, K = sh.K;
      SCOPED_TRACE(std::string(wk.name) + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
      const lowbit::quant_tensor W = make_weight(wk, N, K, rng);
      std::vector<float> w(static_cast<std::size_t>(N * K));
      for (std::int64_t i = 0; i < N * K; ++i) w[static_cast<std::size_t>(i)] = weight(W, i);
      // products of a few 2^-126: the chains cross the subnormal range again and again
      std::vector<float> x(static_cast<std::size_t>(M * K));
      for (float& v : x) v = std::ldexp(nd(rng), -124);
      std::vector<float> expect(static_cast<std::size_t>(M * N));
      std::int64_t tiny = 0;
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = 0; n < N; ++n) {
          const float v = model(x.data() + m * K, w.data() + n * K, K, matmul_compute::bf16, nullptr);
          expect[static_cast<std::size_t>(m * N + n)] = v;
          tiny += std::fabs(v) < 1e-36f;
        }
      EXPECT_GT(tiny, 0) << "the inputs no longer reach the subnormal range";
      every_path(W, x, M, N, [&](std::size_t i) { return expect[i]; });
    }
  // The edge itself: thread 0's first pair in every row is (x1 w1 = 2^-126, then x0 w0 = -(1 +
  // 2^-7) 2^-151), whose exact sum lies below 2^-126 but rounds to it, so the chain keeps 2^-126;
  // the rest of the row is zero. The pair is elements (0, 2) in the lanes order, (0, 1) in the
  // warp order. An e4m3fn weight with power-of-two scales gives w exactly. Without the guard,
  // vdpbf16ps gives +0 here. Blocks of 64: the lanes order's fast decoders apply.
  for (const matmul_order order : {matmul_order::lanes, matmul_order::warp})
  for (const std::int64_t M : {1, 7, 64}) {
    const std::int64_t N = 3, K = 1024, odd = order == matmul_order::lanes ? 2 : 1;
    SCOPED_TRACE(std::string(order == matmul_order::lanes ? "lanes" : "warp") + " edge M=" + std::to_string(M));
    lowbit::quantize_params qp;
    qp.fmt = format::e4m3fn;
    qp.gran = lowbit::granularity::per_block(64);
    const std::vector<float> ones(static_cast<std::size_t>(N * K), 1.0f);
    lowbit::quant_tensor W;
    ASSERT_TRUE(lowbit::quantize(ones.data(), dtype::f32, {N, K}, qp, W));
    std::fill(W.codes(), W.codes() + N * K, std::uint8_t{0});
    std::fill(W.scales(), W.scales() + N * K / 64, std::ldexp(1.0f, -70));
    for (std::int64_t n = 0; n < N; ++n) {
      W.codes()[n * K] = 0x08;        // 2^-6: w0 = 2^-76
      W.codes()[n * K + odd] = 0x70;  // 2^7: w1 = 2^-63
    }
    std::vector<float> x(static_cast<std::size_t>(M * K), 0.0f);
    for (std::int64_t m = 0; m < M; ++m) {
      x[static_cast<std::size_t>(m * K)] = -std::ldexp(1.0f + 1.0f / 128, -75);
      x[static_cast<std::size_t>(m * K + odd)] = std::ldexp(1.0f, -63);
    }
    ASSERT_EQ(weight(W, 0), std::ldexp(1.0f, -76));
    ASSERT_EQ(weight(W, odd), std::ldexp(1.0f, -63));
    std::vector<float> wrow(static_cast<std::size_t>(K));
    for (std::int64_t k = 0; k < K; ++k) wrow[static_cast<std::size_t>(k)] = weight(W, k);
    const float expect = model(x.data(), wrow.data(), K, matmul_compute::bf16, nullptr, order);
    ASSERT_EQ(expect, std::numeric_limits<float>::min());
    every_path(W, x, M, N, [&](std::size_t) { return expect; }, order);
  }
}

TEST(Matmul, Errors) {
  std::mt19937_64 rng(lowbit_test::test_seed());
  const lowbit::quant_tensor W = make_weight(weight_kinds()[0], 4, 64, rng);
  std::vector<float> x(64 * 2), y(8);
  auto expect_error = [](const lowbit::status& s, const char* needle) {
    ASSERT_FALSE(s);
    EXPECT_NE(std::string(s.message()).find(needle), std::string::npos) << s.message();
  };
  expect_error(lowbit::matmul(x.data(), dtype::f32, -1, W, nullptr, y.data(), dtype::f32), "M, N, K");
  expect_error(lowbit::matmul(nullptr, dtype::f32, 2, W, nullptr, y.data(), dtype::f32), "x is null");
  expect_error(lowbit::matmul(x.data(), dtype::f32, 2, W, nullptr, nullptr, dtype::f32), "y is null");
  expect_error(lowbit::matmul(x.data(), static_cast<dtype>(7), 2, W, nullptr, y.data(), dtype::f32), "x_dtype");
  expect_error(lowbit::matmul(x.data(), dtype::f32, 2, W, nullptr, y.data(), static_cast<dtype>(9)), "y_dtype");
  lowbit::matmul_options bad;
  bad.compute = static_cast<matmul_compute>(5);
  expect_error(lowbit::matmul(x.data(), dtype::f32, 2, W, nullptr, y.data(), dtype::f32, bad), "options.compute");
  lowbit::matmul_options bad_order;
  bad_order.order = static_cast<matmul_order>(3);
  expect_error(lowbit::matmul(x.data(), dtype::f32, 2, W, nullptr, y.data(), dtype::f32, bad_order), "options.order");
  // a 3-D weight
  lowbit::quant_tensor W3;
  lowbit::quantize_params qp;
  ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f32, {2, 2, 32}, qp, W3));
  expect_error(lowbit::matmul(x.data(), dtype::f32, 1, W3, nullptr, y.data(), dtype::f32), "shape [N, K]");
  // raw views: N * K must be the element count
  expect_error(lowbit::host::matmul(x.data(), dtype::f32, 1, 4, 63, W.view(), nullptr, y.data(), dtype::f32), "N * K");
  expect_error(lowbit::host::matmul(x.data(), dtype::f32, 1, 3, 64, W.view(), nullptr, y.data(), dtype::f32), "N * K");
  // device weights (an allocator of the device space; its memory is never touched by matmul)
  lowbit::allocator dev = lowbit::allocator::host();
  dev.space = lowbit::memory_space::device;
  dev.name = "test device";
  lowbit::quant_tensor D;
  ASSERT_TRUE(W.copy_to(dev, D));
  expect_error(lowbit::matmul(x.data(), dtype::f32, 1, D, nullptr, y.data(), dtype::f32), "device memory");
  // a view that fails validation names its field
  lowbit::quant_view v = W.view();
  v.scales = nullptr;
  expect_error(lowbit::host::matmul(x.data(), dtype::f32, 1, 4, 64, v, nullptr, y.data(), dtype::f32), "scales is null");
}

// ---- bitsandbytes' CPU gemv_4bit ----

using gemv_fn = void (*)(std::int64_t, std::int64_t, std::int64_t, const std::uint16_t*, const std::uint8_t*, const std::uint16_t*,
                         std::uint16_t*, std::int64_t, std::int64_t, std::int64_t);

TEST(MatmulNativeLibrary, Nf4GemvAgainstBitsandbytesCpuGemv4bit) {
  const char* lib_path = std::getenv("LOWBIT_BNB_CPU_LIB");
  if (lib_path == nullptr || *lib_path == '\0')
    GTEST_SKIP() << "LOWBIT_BNB_CPU_LIB is not set (.ci/run fetches bitsandbytes' libbitsandbytes_cpu.so and sets it)";
  void* lib = dlopen(lib_path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) GTEST_SKIP() << "cannot load " << lib_path << ": " << dlerror();
  auto gemv = reinterpret_cast<gemv_fn>(dlsym(lib, "gemv_4bit_inference_cpu_nf4_bf16"));
  auto has_bf16 = reinterpret_cast<bool (*)()>(dlsym(lib, "has_avx512bf16_cpu"));
  if (gemv == nullptr || has_bf16 == nullptr || !has_bf16())
    GTEST_SKIP() << "this libbitsandbytes_cpu.so or CPU has no AVX512-BF16 gemv_4bit_inference_cpu_nf4_bf16";
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0xb4b);
  const std::int64_t N = 96, K = 512, bs = 64;
  for (bool dq : {false, true}) {
    SCOPED_TRACE(dq ? "double quantization" : "float32 absmax");
    const lowbit::quant_tensor W = make_weight({format::nf4, lowbit::granularity::per_block(bs), dq, "nf4"}, N, K, rng, 2048);
    // bitsandbytes' CPU layout (reference §6, _convert_weight_packed_for_cpu): codes [N/32, K/2, 32, 2]
    // in rows of 64, byte j = code[32 + j] << 4 | code[j]; absmax [K/bs, N] in bfloat16
    std::vector<std::uint8_t> packed(static_cast<std::size_t>(N * K / 2));
    auto code = [&](std::int64_t n, std::int64_t k) {
      const std::uint8_t b = W.codes()[(n * K + k) / 2];
      return static_cast<std::uint8_t>((k % 2 == 0) ? b >> 4 : b & 15);
    };
    for (std::int64_t nb = 0; nb < N / 32; ++nb)
      for (std::int64_t kk = 0; kk < K / 2; ++kk) {
        std::uint8_t row[64];
        for (int i = 0; i < 32; ++i)
          for (int c2 = 0; c2 < 2; ++c2) row[2 * i + c2] = code(nb * 32 + i, 2 * kk + c2);
        for (int j = 0; j < 32; ++j) packed[static_cast<std::size_t>((nb * (K / 2) + kk) * 32 + j)] = static_cast<std::uint8_t>(row[32 + j] << 4 | row[j]);
      }
    std::vector<std::uint16_t> absmax(static_cast<std::size_t>(N * K / bs));
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t kb = 0; kb < K / bs; ++kb) {
        float sc;
        if (W.double_quantized()) {
          const std::int64_t b = (n * K) / bs + kb;
          sc = add(mul(lowbit::codecs::bnb_dynamic8::decode(W.nested_codes()[b]), W.nested_scales()[b / 256]), W.nested_offset());
        } else {
          sc = W.scales()[(n * K) / bs + kb];
        }
        absmax[static_cast<std::size_t>(kb * N + n)] = lowbit::float_to_bf16_bits(sc);
      }
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<std::uint16_t> x(static_cast<std::size_t>(K));
    for (auto& v : x) v = lowbit::float_to_bf16_bits(nd(rng));
    std::vector<std::uint16_t> theirs(static_cast<std::size_t>(N)), ours(static_cast<std::size_t>(N));
    gemv(1, N, K, x.data(), packed.data(), absmax.data(), theirs.data(), bs, K, N);
    lowbit::matmul_options o;
    o.compute = matmul_compute::bf16;
    ASSERT_TRUE(lowbit::matmul(x.data(), dtype::bf16, 1, W, nullptr, ours.data(), dtype::bf16, o));
    // Tolerance: both compute the same exact sum up to bf16 operands (2^-8 relative each; bitsandbytes
    // also rounds each absmax to bf16, 2^-9), float32 accumulation and a bf16 output (2^-8 of |y|):
    // |ours - theirs| <= 2^-6 sum |x w| + 2^-7 |ref|.
    double err_sum = 0.0, mag_sum = 0.0;
    for (std::int64_t n = 0; n < N; ++n) {
      double ref = 0.0, mag = 0.0;
      for (std::int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(lowbit::bf16_bits_to_float(x[static_cast<std::size_t>(k)])) * weight(W, n * K + k);
        ref += p;
        mag += std::fabs(p);
      }
      const double a = lowbit::bf16_bits_to_float(ours[static_cast<std::size_t>(n)]);
      const double b = lowbit::bf16_bits_to_float(theirs[static_cast<std::size_t>(n)]);
      EXPECT_LE(std::fabs(a - b), std::ldexp(mag, -6) + std::ldexp(std::fabs(ref), -7)) << "n " << n << " ours " << a << " bnb " << b << " ref " << ref;
      err_sum += std::fabs(a - b);
      mag_sum += std::fabs(ref);
    }
    EXPECT_LT(err_sum / mag_sum, 0.01) << "mean |ours - bnb| relative to mean |y|";
  }
  // no dlclose: the library's OpenMP threads outlive the call, and unloading their code under them
  // crashes the process later
}

}  // namespace
