// SPDX-License-Identifier: Apache-2.0
// GGUF and ggml's block formats.
// - GgmlReference.*: lowbit's Q8_0/Q4_0/Q4_1/MXFP4 against ggml's own quantize_row_*_ref and
//   dequantize_row_* (lowbit_ggml_reference, built from ggml's source that .ci/run fetches),
//   byte for byte and bit for bit, over random and adversarial blocks and every stored scale.
//   Registered as io_ggml_reference_test, reported skipped without the source.
// - GgmlBlocks.*: blocks worked out by hand from the format definitions.
// - Gguf.*: the container, against files assembled byte by byte here; every truncation and
//   corruption of a valid file is an error that names the problem; the writer's refusals.
#include <lowbit/io/gguf.hpp>

#include "io_test_util.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace lb = lowbit;
namespace io = lowbit::io;
namespace gg = lowbit::ggml;
using lowbit_test::scratch_dir;

#if LOWBIT_HAVE_GGML_REFERENCE
extern "C" {
void quantize_row_q8_0_ref(const float* x, void* y, std::int64_t k);
void quantize_row_q4_0_ref(const float* x, void* y, std::int64_t k);
void quantize_row_q4_1_ref(const float* x, void* y, std::int64_t k);
void quantize_row_mxfp4_ref(const float* x, void* y, std::int64_t k);
void dequantize_row_q8_0(const void* x, float* y, std::int64_t k);
void dequantize_row_q4_0(const void* x, float* y, std::int64_t k);
void dequantize_row_q4_1(const void* x, float* y, std::int64_t k);
void dequantize_row_mxfp4(const void* x, float* y, std::int64_t k);
}
#endif

namespace {

constexpr gg::type kBlockTypes[] = {gg::type::q8_0, gg::type::q4_0, gg::type::q4_1, gg::type::mxfp4};

std::vector<std::uint8_t> quantize(gg::type t, const std::vector<float>& x) {
  std::vector<std::uint8_t> out(gg::row_bytes(t, x.size()));
  const lb::status s = gg::quantize(t, x.data(), static_cast<std::int64_t>(x.size()), out.data(), 2);
  EXPECT_TRUE(s) << s.message();
  return out;
}

// Blocks that reach every branch of the quantizers: random scales over the whole float32 range,
// ties of the rounding steps, a single outlier, all-equal, zero, subnormal (where 1/d overflows),
// values near FLT_MAX (where hi - lo overflows), and amax one ulp around powers of two (MXFP4's
// log2f).
std::vector<float> adversarial_blocks(std::mt19937_64& rng, int random_blocks) {
  std::vector<float> x;
  auto block = [&](auto&& f) {
    for (int j = 0; j < 32; ++j) x.push_back(f(j));
  };
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-140, 110);
  for (int b = 0; b < random_blocks; ++b) {
    const float scale = std::ldexp(1.0f, exp(rng));
    const int kind = b % 4;
    block([&](int j) {
      float v = normal(rng) * scale;
      if (kind == 1 && j == 7) v *= 50.0f;                            // an outlier
      if (kind == 2) v = std::round(normal(rng) * 8.0f) * 0.5f * scale;  // ties of x*id + 0.5
      if (kind == 3) v = static_cast<float>(static_cast<int>(j) - 16) * scale;
      return v;
    });
  }
  // Near-ties of the rounding steps: multiples of half a step, a few ulps off, where a product
  // fused with the following add (an FMA) would round to the other code.
  std::uniform_int_distribution<int> half_steps(-16, 15), ulps(-3, 3);
  for (int b = 0; b < 4000; ++b) {
    const float step = std::ldexp(1.0f + static_cast<float>(b % 97) / 97.0f, exp(rng) / 4);
    block([&](int j) {
      if (j == 3) return -8.0f * step;
      float v = static_cast<float>(half_steps(rng)) * 0.5f * step;
      for (int u = ulps(rng); u != 0; u += u > 0 ? -1 : 1) v = std::nextafter(v, u > 0 ? INFINITY : -INFINITY);
      return v;
    });
  }
  block([](int) { return 0.0f; });
  block([](int j) { return j % 2 ? -0.0f : 0.0f; });
  block([](int) { return 1.5f; });
  block([](int) { return -3.0e38f; });
  block([](int j) { return j == 0 ? 3.4e38f : -3.4e38f; });
  block([](int j) { return j % 3 ? 3.0e38f : -3.0e38f; });
  block([](int j) { return lb::bits_float(static_cast<std::uint32_t>(j + 1)); });  // subnormal
  block([](int j) { return -lb::bits_float(static_cast<std::uint32_t>(0x7FFFFF - j)); });
  block([](int j) { return std::ldexp(static_cast<float>(j), -130); });
  for (int e = -149; e <= 127; e += 3)
    for (int d = -2; d <= 2; ++d) {
      const float p = std::ldexp(1.0f, e);
      const float a = d < 0 ? std::nextafter(p, 0.0f) : d > 0 ? std::nextafter(p, INFINITY) : p;
      block([&](int j) { return j == 5 ? (d == 2 ? -a : a) : a / 8.0f * static_cast<float>(j % 7); });
    }
  return x;
}

}  // namespace

#if LOWBIT_HAVE_GGML_REFERENCE
namespace {
void reference_quantize(gg::type t, const float* x, void* y, std::int64_t k) {
  switch (t) {
    case gg::type::q8_0: quantize_row_q8_0_ref(x, y, k); break;
    case gg::type::q4_0: quantize_row_q4_0_ref(x, y, k); break;
    case gg::type::q4_1: quantize_row_q4_1_ref(x, y, k); break;
    case gg::type::mxfp4: quantize_row_mxfp4_ref(x, y, k); break;
    default: FAIL();
  }
}
void reference_dequantize(gg::type t, const void* x, float* y, std::int64_t k) {
  switch (t) {
    case gg::type::q8_0: dequantize_row_q8_0(x, y, k); break;
    case gg::type::q4_0: dequantize_row_q4_0(x, y, k); break;
    case gg::type::q4_1: dequantize_row_q4_1(x, y, k); break;
    case gg::type::mxfp4: dequantize_row_mxfp4(x, y, k); break;
    default: FAIL();
  }
}
}  // namespace

TEST(GgmlReference, QuantizeIsGgmlsBytes) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  const std::vector<float> x = adversarial_blocks(rng, 4000);
  for (gg::type t : kBlockTypes) {
    SCOPED_TRACE(gg::traits(t).name);
    const std::vector<std::uint8_t> ours = quantize(t, x);
    std::vector<std::uint8_t> ref(ours.size());
    reference_quantize(t, x.data(), ref.data(), static_cast<std::int64_t>(x.size()));
    const int bytes = gg::traits(t).bytes;
    int shown = 0;
    for (std::size_t b = 0; b * 32 < x.size(); ++b) {
      if (std::memcmp(ours.data() + b * bytes, ref.data() + b * bytes, static_cast<std::size_t>(bytes)) == 0) continue;
      std::string in;
      for (int j = 0; j < 32; ++j) in += lowbit_test::hex(lowbit_test::bits_of(x[b * 32 + j])) + " ";
      std::string got, want;
      for (int k = 0; k < bytes; ++k) {
        got += lowbit_test::hex(ours[b * bytes + static_cast<std::size_t>(k)], 2) + " ";
        want += lowbit_test::hex(ref[b * bytes + static_cast<std::size_t>(k)], 2) + " ";
      }
      ADD_FAILURE() << "block " << b << " differs from ggml's\n  lowbit: " << got << "\n  ggml:   " << want << "\n  input bits: " << in;
      if (++shown == 5) return;
    }
  }
}

TEST(GgmlReference, DequantizeIsGgmlsBits) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x5eed);
  for (gg::type t : kBlockTypes) {
    SCOPED_TRACE(gg::traits(t).name);
    const int bytes = gg::traits(t).bytes;
    // Every stored scale (all 65536 f16 d, every E8M0 e; for Q4_1 every d with random m), each
    // with random codes, then random bytes.
    const int scales = t == gg::type::mxfp4 ? 256 : 65536;
    std::vector<std::uint8_t> in(static_cast<std::size_t>(scales + 4096) * static_cast<std::size_t>(bytes));
    for (auto& c : in) c = static_cast<std::uint8_t>(rng());
    for (int s = 0; s < scales; ++s) {
      std::uint8_t* b = in.data() + static_cast<std::size_t>(s) * static_cast<std::size_t>(bytes);
      b[0] = static_cast<std::uint8_t>(s);
      if (t != gg::type::mxfp4) b[1] = static_cast<std::uint8_t>(s >> 8);
    }
    const std::int64_t n = static_cast<std::int64_t>(in.size() / static_cast<std::size_t>(bytes) * 32);
    std::vector<float> ours(static_cast<std::size_t>(n)), ref(static_cast<std::size_t>(n));
    ASSERT_TRUE(gg::dequantize(t, in.data(), n, ours.data(), 2));
    reference_dequantize(t, in.data(), ref.data(), n);
    // Bit for bit, but any NaN equals any NaN: which operand's payload an add of two NaNs (Q4_1's
    // q*d + m with a NaN d and m) keeps depends on the order a compiler gives the operands.
    for (std::int64_t i = 0; i < n; ++i) {
      const float a = ours[static_cast<std::size_t>(i)], r = ref[static_cast<std::size_t>(i)];
      if (std::isnan(a) && std::isnan(r)) continue;
      ASSERT_EQ(lowbit_test::bits_of(a), lowbit_test::bits_of(r)) << "element " << i << " (block " << i / 32 << ")";
    }
  }
}
#else
TEST(GgmlReference, QuantizeIsGgmlsBytes) { GTEST_SKIP() << "ggml's source was not found at configure time (LOWBIT_GGML_SOURCE_DIR; .ci/run fetches it)"; }
TEST(GgmlReference, DequantizeIsGgmlsBits) { GTEST_SKIP() << "ggml's source was not found at configure time (LOWBIT_GGML_SOURCE_DIR; .ci/run fetches it)"; }
#endif

// Blocks worked out by hand from the definitions in ggml_blocks.hpp's table.
TEST(GgmlBlocks, WorkedExamples) {
  // MXFP4: amax 6 -> e = floor(log2 6) - 2 + 127 = 127, values kv * 2^-1 = the E2M1 values, so
  // the E2M1 magnitudes 0..6 get codes 0..7 and their negatives 9..15 (-0.0 gets code 0).
  const float e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  std::vector<float> x(32);
  for (int j = 0; j < 16; ++j) x[static_cast<std::size_t>(j)] = e2m1[j % 8] * (j < 8 ? 1.0f : -1.0f);
  for (int j = 16; j < 32; ++j) x[static_cast<std::size_t>(j)] = e2m1[(31 - j) % 8];
  std::vector<std::uint8_t> b = quantize(gg::type::mxfp4, x);
  ASSERT_EQ(b.size(), 17u);
  EXPECT_EQ(b[0], 127);
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? j : (j == 8 ? 0 : j);  // -0.0 -> code 0; -0.5 -> 9, ...
    const int hi = (31 - (j + 16)) % 8;
    EXPECT_EQ(b[static_cast<std::size_t>(1 + j)], lo | (hi << 4)) << "byte " << j;
  }
  // Q4_0: the largest magnitude is -8 (first), so d = -8 / -8 = 1 (f16 0x3C00) and
  // q = trunc(x + 8.5) clamped to 15: -8 -> 0, -0.5 -> 8, 0 -> 8, 0.49 -> 8, 0.5 -> 9, 7 -> 15.
  x.assign(32, 0.0f);
  x[0] = -8.0f;
  x[1] = -0.5f;
  x[2] = 0.49f;
  x[3] = 0.5f;
  x[4] = 7.0f;
  x[16] = 7.9f;  // 16.4 -> 16 -> clamped to 15
  b = quantize(gg::type::q4_0, x);
  ASSERT_EQ(b.size(), 18u);
  EXPECT_EQ(b[0], 0x00);
  EXPECT_EQ(b[1], 0x3C);
  EXPECT_EQ(b[2], 0x00 | (15 << 4));
  EXPECT_EQ(b[3], 8 | (8 << 4));
  EXPECT_EQ(b[4], 8 | (8 << 4));
  EXPECT_EQ(b[5], 9 | (8 << 4));
  EXPECT_EQ(b[6], 15 | (8 << 4));
  // Q8_0: amax 127 -> d = 1, codes = round(x) half away from zero: 2.5 -> 3, -2.5 -> -3.
  x.assign(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = -127.0f;
  b = quantize(gg::type::q8_0, x);
  ASSERT_EQ(b.size(), 34u);
  EXPECT_EQ(b[0], 0x00);
  EXPECT_EQ(b[1], 0x3C);
  EXPECT_EQ(static_cast<std::int8_t>(b[2]), 127);
  EXPECT_EQ(static_cast<std::int8_t>(b[3]), 3);
  EXPECT_EQ(static_cast<std::int8_t>(b[4]), -3);
  EXPECT_EQ(static_cast<std::int8_t>(b[5]), -127);
  // Q4_1: lo = -1, hi = 14 -> d = 1, m = -1 (f16 0xBC00); q = trunc(x + 1 + 0.5).
  for (int j = 0; j < 32; ++j) x[static_cast<std::size_t>(j)] = static_cast<float>(j % 16) - 1.0f;
  b = quantize(gg::type::q4_1, x);
  ASSERT_EQ(b.size(), 20u);
  EXPECT_EQ(b[0] | (b[1] << 8), 0x3C00);
  EXPECT_EQ(b[2] | (b[3] << 8), 0xBC00);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[static_cast<std::size_t>(4 + j)], j | (j << 4));
  // And back: every value above is representable, so dequantization returns it exactly.
  std::vector<float> y(32);
  ASSERT_TRUE(gg::dequantize(gg::type::q4_1, b.data(), 32, y.data(), 1));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[static_cast<std::size_t>(j)], x[static_cast<std::size_t>(j)]);
}

// The AVX-512 kernels (where the CPU has them) give the scalar code's bytes; the scalar code is
// the one io_ggml_reference_test holds to ggml's.
TEST(GgmlBlocks, SimdPathIsTheScalarPath) {
  if (!lb::host::avx512::available()) GTEST_SKIP() << "this CPU has no AVX-512: only the scalar path runs";
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x51d);
  const std::vector<float> x = adversarial_blocks(rng, 2000);
  for (gg::type t : kBlockTypes) {
    SCOPED_TRACE(gg::traits(t).name);
    std::vector<std::uint8_t> fast(gg::row_bytes(t, x.size())), slow(fast.size());
    ASSERT_TRUE(gg::quantize(t, x.data(), static_cast<std::int64_t>(x.size()), fast.data(), 2, true));
    ASSERT_TRUE(gg::quantize(t, x.data(), static_cast<std::int64_t>(x.size()), slow.data(), 1, false));
    for (std::size_t b = 0; b < fast.size(); b += static_cast<std::size_t>(gg::traits(t).bytes))
      ASSERT_EQ(std::memcmp(fast.data() + b, slow.data() + b, static_cast<std::size_t>(gg::traits(t).bytes)), 0) << "block " << b / static_cast<std::size_t>(gg::traits(t).bytes);
  }
  // The non-finite check finds the first bad element anywhere, also in a vector's tail, on
  // either path and any thread count.
  for (std::int64_t n : {32, 96, 4096 * 32 + 96}) {
    for (std::int64_t at : {std::int64_t{0}, n / 2 + 3, n - 1}) {
      std::vector<float> y(static_cast<std::size_t>(n), 0.25f);
      y[static_cast<std::size_t>(at)] = -INFINITY;
      if (at + 5 < n) y[static_cast<std::size_t>(at + 5)] = std::nanf("");
      std::vector<std::uint8_t> out(gg::row_bytes(gg::type::q4_0, static_cast<std::uint64_t>(n)));
      for (bool simd : {true, false}) {
        const lb::status s = gg::quantize(gg::type::q4_0, y.data(), n, out.data(), 2, simd);
        EXPECT_EQ(s.code(), lb::errc::non_finite);
        EXPECT_NE(std::string(s.message()).find("x[" + std::to_string(at) + "] is Inf"), std::string::npos) << s.message();
      }
    }
  }
}

// The AVX-512 dequantizers give the scalar code's bits for any block bytes: random codes with
// scales of every kind (normal, subnormal, zero, Inf, NaN; e8m0 0x00, 0xFE, 0xFF).
TEST(GgmlBlocks, SimdDequantizeIsTheScalarDequantize) {
  if (!lb::host::avx512::available()) GTEST_SKIP() << "this CPU has no AVX-512: only the scalar path runs";
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0xdeb10c);
  for (gg::type t : kBlockTypes) {
    SCOPED_TRACE(gg::traits(t).name);
    const std::size_t blocks = 4096 + 37, bytes = static_cast<std::size_t>(gg::traits(t).bytes);
    std::vector<std::uint8_t> q(blocks * bytes);
    for (auto& c : q) c = static_cast<std::uint8_t>(rng());
    static const std::uint16_t halves[] = {0x0000, 0x8000, 0x0001, 0x03FF, 0x3C00, 0x7BFF, 0x7C00, 0xFC00, 0x7E00, 0x7C01};
    static const std::uint8_t e8m0[] = {0x00, 0x01, 0x7F, 0xFE, 0xFF};
    for (std::size_t b = 0; b < blocks; ++b) {
      if (b % 3 != 0) continue;  // a third of the blocks get special scales
      if (t == gg::type::mxfp4) {
        q[b * bytes] = e8m0[b / 3 % 5];
      } else {
        const std::uint16_t h = halves[b / 3 % 10];
        q[b * bytes] = static_cast<std::uint8_t>(h), q[b * bytes + 1] = static_cast<std::uint8_t>(h >> 8);
        if (t == gg::type::q4_1) q[b * bytes + 2] = static_cast<std::uint8_t>(halves[b / 7 % 10]), q[b * bytes + 3] = static_cast<std::uint8_t>(halves[b / 7 % 10] >> 8);
      }
    }
    const std::int64_t n = static_cast<std::int64_t>(blocks) * gg::traits(t).block;
    std::vector<float> fast(static_cast<std::size_t>(n)), slow(fast.size());
    ASSERT_TRUE(gg::dequantize(t, q.data(), n, fast.data(), 2, true));
    ASSERT_TRUE(gg::dequantize(t, q.data(), n, slow.data(), 1, false));
    for (std::size_t i = 0; i < fast.size(); ++i) {
      std::uint32_t a, b;
      std::memcpy(&a, &fast[i], 4), std::memcpy(&b, &slow[i], 4);
      // q4_1 adds m to q * d: when both are NaN, IEEE 754 leaves open which payload the sum
      // carries and compilers order the scalar operands as they like; any NaN is then right.
      const std::uint8_t* blk = q.data() + i / 32 * bytes;
      const std::size_t j = i % 32;
      const int code = j < 16 ? blk[4 + j] & 15 : blk[4 + j - 16] >> 4;
      const float product = static_cast<float>(code) * lb::f16_bits_to_float(static_cast<std::uint16_t>(blk[0] | blk[1] << 8));
      const bool two_nans = t == gg::type::q4_1 && std::isnan(product) && std::isnan(lb::f16_bits_to_float(static_cast<std::uint16_t>(blk[2] | blk[3] << 8)));
      if (two_nans) ASSERT_TRUE(std::isnan(fast[i]) && std::isnan(slow[i])) << "element " << i;
      else ASSERT_EQ(a, b) << "element " << i;
    }
  }
}

TEST(GgmlBlocks, ErrorsNameTheProblem) {
  std::vector<float> x(64, 1.0f);
  std::vector<std::uint8_t> out(64 * 4, 0xAB);
  lb::status s = gg::quantize(gg::type::q4_0, x.data(), 48, out.data());
  EXPECT_EQ(s.code(), lb::errc::invalid_argument);
  EXPECT_NE(std::string(s.message()).find("48 elements is not a whole number of q4_0 blocks of 32"), std::string::npos) << s.message();
  x[37] = std::nanf("");
  s = gg::quantize(gg::type::q8_0, x.data(), 64, out.data());
  EXPECT_EQ(s.code(), lb::errc::non_finite);
  EXPECT_NE(std::string(s.message()).find("x[37] is NaN"), std::string::npos) << s.message();
  for (auto c : out) ASSERT_EQ(c, 0xAB) << "nothing is written on error";
  s = gg::quantize(static_cast<gg::type>(12), x.data(), 256, out.data());
  EXPECT_EQ(s.code(), lb::errc::unsupported);
  EXPECT_NE(std::string(s.message()).find("q4_K"), std::string::npos) << s.message();
  // Plain types convert NaN and Inf (they are values of F16/BF16 too).
  x[0] = INFINITY;
  std::vector<std::uint8_t> h(128);
  ASSERT_TRUE(gg::quantize(gg::type::f16, x.data(), 64, h.data()));
  EXPECT_EQ(h[0] | (h[1] << 8), 0x7C00);
  EXPECT_EQ(h[74] | (h[75] << 8), 0x7E00);
}

// ---- the container ----

namespace {

// Little-endian byte assembly, independent of the writer.
struct bytes_builder {
  std::string b;
  template <class T>
  bytes_builder& num(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  bytes_builder& str(const std::string& s) {
    num<std::uint64_t>(s.size());
    b += s;
    return *this;
  }
  bytes_builder& pad(std::size_t a) {
    while (b.size() % a) b.push_back('\0');
    return *this;
  }
};

// A small valid file: two KV pairs and two tensors (an f32 [2,3] and a q8_0 row of 32).
std::string sample_file() {
  bytes_builder f;
  f.b = "GGUF";
  f.num<std::uint32_t>(3).num<std::int64_t>(2).num<std::int64_t>(3);
  f.str("general.architecture").num<std::uint32_t>(8).str("llama");
  f.str("llama.block_count").num<std::uint32_t>(4).num<std::uint32_t>(2);
  f.str("tokenizer.scores").num<std::uint32_t>(9).num<std::uint32_t>(6).num<std::uint64_t>(2).num<float>(0.5f).num<float>(-1.0f);
  f.str("w").num<std::uint32_t>(2).num<std::int64_t>(3).num<std::int64_t>(2).num<std::uint32_t>(0).num<std::uint64_t>(0);
  f.str("q").num<std::uint32_t>(1).num<std::int64_t>(32).num<std::uint32_t>(8).num<std::uint64_t>(32);
  f.pad(32);
  for (int i = 0; i < 6; ++i) f.num<float>(static_cast<float>(i));
  f.pad(32);
  f.num<std::uint16_t>(0x3C00);  // d = 1
  for (int j = 0; j < 32; ++j) f.num<std::int8_t>(static_cast<std::int8_t>(j - 16));
  f.pad(32);
  return f.b;
}

lb::status parse(const std::string& bytes, io::gguf_file& f) {
  return io::gguf_file::parse(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "t.gguf", f);
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST(Gguf, ReadsAFileAssembledByHand) {
  const std::string bytes = sample_file();
  io::gguf_file f;
  const lb::status s = parse(bytes, f);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  ASSERT_EQ(f.metadata().size(), 3u);
  ASSERT_NE(f.find("general.architecture"), nullptr);
  EXPECT_EQ(f.find("general.architecture")->strings.at(0), "llama");
  std::int64_t v = 0;
  ASSERT_TRUE(f.find("llama.block_count")->get(0, v));
  EXPECT_EQ(v, 2);
  const io::gguf_value* scores = f.find("tokenizer.scores");
  ASSERT_TRUE(scores->array);
  ASSERT_EQ(scores->count(), 2u);
  double d = 0;
  ASSERT_TRUE(scores->get(1, d));
  EXPECT_EQ(d, -1.0);
  const io::gguf_tensor* w = f.find_tensor("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape(), (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(w->nbytes, 24u);
  std::vector<float> y(6);
  ASSERT_TRUE(io::gguf_file::dequantize(*w, y.data()));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(y[static_cast<std::size_t>(i)], static_cast<float>(i));
  const io::gguf_tensor* q = f.find_tensor("q");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->nbytes, 34u);
  y.resize(32);
  ASSERT_TRUE(io::gguf_file::dequantize(*q, y.data()));
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[static_cast<std::size_t>(j)], static_cast<float>(j - 16));
}

TEST(Gguf, WriterMakesTheSameBytes) {
  scratch_dir dir;
  const std::string path = dir / "w.gguf";
  std::vector<io::gguf_kv> kv;
  kv.push_back({"general.architecture", io::gguf_value::string("llama")});
  kv.push_back({"llama.block_count", io::gguf_value::scalar(io::gguf_type::u32, std::uint32_t{2})});
  io::gguf_value scores = io::gguf_value::scalar(io::gguf_type::f32, 0.5f);
  scores.array = true;
  const float m1 = -1.0f;
  scores.raw.insert(scores.raw.end(), reinterpret_cast<const std::uint8_t*>(&m1), reinterpret_cast<const std::uint8_t*>(&m1) + 4);
  kv.push_back({"tokenizer.scores", scores});
  std::vector<io::gguf_tensor> t(2);
  t[0].name = "w";
  t[0].ne = {3, 2};
  t[0].type = 0;
  t[1].name = "q";
  t[1].ne = {32};
  t[1].type = 8;
  io::gguf_writer wr;
  ASSERT_TRUE(wr.open(path, kv, t));
  for (int i = 0; i < 6; ++i) {  // in pieces
    const float v = static_cast<float>(i);
    ASSERT_TRUE(wr.write(&v, 4));
  }
  std::string q;
  q.push_back('\x00');
  q.push_back('\x3C');
  for (int j = 0; j < 32; ++j) q.push_back(static_cast<char>(j - 16));
  ASSERT_TRUE(wr.write(q.data(), 10));
  EXPECT_EQ(wr.current(), 1u);
  ASSERT_TRUE(wr.write(q.data() + 10, q.size() - 10));
  ASSERT_TRUE(wr.commit());
  EXPECT_EQ(read_all(path), sample_file());
}

TEST(Gguf, EveryTruncationIsAnError) {
  const std::string bytes = sample_file();
  // The data of the last tensor ends 30 bytes before the padded end: cutting only padding
  // leaves a valid file (ggml pads, but a tensor's bytes are all it needs).
  const std::size_t needed = bytes.size() - 30;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    io::gguf_file f;
    const lb::status s = parse(bytes.substr(0, n), f);
    if (n >= needed) {
      EXPECT_TRUE(s) << n << ": " << s.message();
    } else {
      ASSERT_FALSE(s) << "a file cut to " << n << " bytes was accepted";
      EXPECT_EQ(s.code(), lb::errc::invalid_argument);
    }
  }
}

TEST(Gguf, CorruptionsAreNamed) {
  const std::string good = sample_file();
  // Offsets in sample_file(): version 4, counts 8/16, first key length 24.
  struct corruption {
    const char* what;
    std::function<void(std::string&)> apply;
    const char* message;
  };
  auto put = [](std::string& b, std::size_t at, auto v) { std::memcpy(&b[at], &v, sizeof v); };
  const std::size_t kv2 = 24 + 8 + 20 + 4 + 8 + 5;            // "llama.block_count" pair
  const std::size_t kv3 = kv2 + 8 + 17 + 4 + 4;               // "tokenizer.scores" pair
  const std::size_t t1 = kv3 + 8 + 16 + 4 + 4 + 8 + 8;        // tensor "w"
  const std::size_t t2 = t1 + 8 + 1 + 4 + 16 + 4 + 8;         // tensor "q"
  const std::vector<corruption> cases = {
      {"magic", [](std::string& b) { b[0] = 'X'; }, "not a GGUF file"},
      {"version 1", [&](std::string& b) { put(b, 4, std::uint32_t{1}); }, "GGUF version 1"},
      {"big-endian", [&](std::string& b) { put(b, 4, std::uint32_t{0x03000000}); }, "other byte order"},
      {"tensor count", [&](std::string& b) { put(b, 8, std::int64_t{1} << 40); }, "tensor count 1099511627776 is impossible"},
      {"negative kv count", [&](std::string& b) { put(b, 16, std::int64_t{-1}); }, "key-value count -1 is impossible"},
      {"key length", [&](std::string& b) { put(b, 24, std::uint64_t{1} << 60); }, "claims 1152921504606846976 bytes"},
      {"empty key", [&](std::string& b) { put(b, 24, std::uint64_t{0}); }, "empty key"},
      {"value type", [&](std::string& b) { put(b, 24 + 8 + 20, std::uint32_t{13}); }, "unknown value type 13"},
      {"array of arrays", [&](std::string& b) { put(b, kv3 + 8 + 16 + 4, std::uint32_t{9}); }, "array of arrays"},
      {"array length", [&](std::string& b) { put(b, kv3 + 8 + 16 + 8, std::uint64_t{1} << 62); }, "cannot fit"},
      {"dimensions", [&](std::string& b) { put(b, t1 + 9, std::uint32_t{5}); }, "has 5 dimensions"},
      {"negative dimension", [&](std::string& b) { put(b, t1 + 13, std::int64_t{-3}); }, "dimension 0 is -3"},
      {"ggml type", [&](std::string& b) { put(b, t1 + 29, std::uint32_t{4}); }, "ggml type 4, which names no type"},
      {"partial block", [&](std::string& b) { put(b, t2 + 13, std::int64_t{16}); }, "rows of 16 elements are not a whole number of q8_0 blocks of 32"},
      {"misaligned offset", [&](std::string& b) { put(b, t2 + 25, std::uint64_t{8}); }, "offset 8 is not a multiple of the alignment 32"},
      {"overlap", [&](std::string& b) { put(b, t2 + 25, std::uint64_t{0}); }, "overlap"},
      {"past the end", [&](std::string& b) { put(b, t2 + 25, std::uint64_t{64}); }, "run past its end"},
      {"size overflow", [&](std::string& b) { put(b, t1 + 13, std::int64_t{1} << 62); put(b, t1 + 21, std::int64_t{1} << 62); }, "overflows 64 bits"},
  };
  for (const auto& c : cases) {
    std::string b = good;
    c.apply(b);
    io::gguf_file f;
    const lb::status s = parse(b, f);
    ASSERT_FALSE(s) << c.what << " was accepted";
    EXPECT_NE(std::string(s.message()).find(c.message), std::string::npos) << c.what << ": " << s.message();
  }
  // A repeated key and a repeated tensor name.
  bytes_builder d;
  d.b = "GGUF";
  d.num<std::uint32_t>(3).num<std::int64_t>(0).num<std::int64_t>(2);
  d.str("a").num<std::uint32_t>(0).num<std::uint8_t>(1);
  d.str("a").num<std::uint32_t>(0).num<std::uint8_t>(2);
  io::gguf_file f;
  lb::status s = parse(d.b, f);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("key \"a\" appears twice"), std::string::npos) << s.message();
  bytes_builder e;
  e.b = "GGUF";
  e.num<std::uint32_t>(3).num<std::int64_t>(2).num<std::int64_t>(0);
  e.str("t").num<std::uint32_t>(1).num<std::int64_t>(1).num<std::uint32_t>(0).num<std::uint64_t>(0);
  e.str("t").num<std::uint32_t>(1).num<std::int64_t>(1).num<std::uint32_t>(0).num<std::uint64_t>(32);
  e.pad(32);
  e.b.append(64, '\0');
  s = parse(e.b, f);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("tensor \"t\" appears twice"), std::string::npos) << s.message();
  // general.alignment of the wrong type, and not a power of two.
  for (int k = 0; k < 2; ++k) {
    bytes_builder a;
    a.b = "GGUF";
    a.num<std::uint32_t>(3).num<std::int64_t>(0).num<std::int64_t>(1);
    a.str("general.alignment");
    if (k == 0) a.num<std::uint32_t>(10).num<std::uint64_t>(64);
    else a.num<std::uint32_t>(4).num<std::uint32_t>(48);
    s = parse(a.b, f);
    ASSERT_FALSE(s);
    EXPECT_NE(std::string(s.message()).find(k == 0 ? "must be a u32, not u64" : "48 is not a power of two"), std::string::npos) << s.message();
  }
}

TEST(Gguf, WriterRefusesWhatGgmlCannotRead) {
  scratch_dir dir;
  const std::string path = dir / "bad.gguf";
  io::gguf_writer w;
  std::vector<io::gguf_tensor> t(1);
  t[0].name = std::string(64, 'n');
  t[0].ne = {32};
  t[0].type = 8;
  lb::status s = w.open(path, {}, t);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("has 64 bytes; ggml reads at most 63"), std::string::npos) << s.message();
  t[0].name = "x";
  t[0].ne = {48};
  s = w.open(path, {}, t);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("rows of 48 elements"), std::string::npos) << s.message();
  t[0].ne = {32, 1, 1, 1, 1};
  s = w.open(path, {}, t);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("5 dimensions"), std::string::npos) << s.message();
  std::vector<io::gguf_kv> kv{{"general.alignment", io::gguf_value::scalar(io::gguf_type::u32, std::uint32_t{24})}};
  t[0].ne = {32};
  s = w.open(path, kv, t);
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("power of two"), std::string::npos) << s.message();
  // Incomplete: no file is left behind; writing past the end abandons the file.
  ASSERT_TRUE(w.open(path, {}, t));
  const std::string tmp = w.temp_path();
  ASSERT_TRUE(w.write("0123456789", 10));
  s = w.commit();
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("tensor \"x\" is incomplete (10 of 34 bytes written)"), std::string::npos) << s.message();
  EXPECT_FALSE(exists(path));
  EXPECT_FALSE(exists(tmp));
  ASSERT_TRUE(w.open(path, {}, t));
  const std::string blob(40, 'x');
  s = w.write(blob.data(), blob.size());
  ASSERT_FALSE(s);
  EXPECT_NE(std::string(s.message()).find("past the last tensor"), std::string::npos) << s.message();
  EXPECT_FALSE(exists(path));
}

TEST(Gguf, RoundTripOfEveryHandledTypeWithAlignment) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x6767);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  scratch_dir dir;
  const std::string path = dir / "rt.gguf";
  const gg::type types[] = {gg::type::f32, gg::type::f16, gg::type::bf16, gg::type::q8_0, gg::type::q4_0, gg::type::q4_1, gg::type::mxfp4};
  std::vector<float> x(96 * 7);
  for (auto& v : x) v = normal(rng);
  std::vector<io::gguf_tensor> t;
  std::vector<std::vector<std::uint8_t>> data;
  for (gg::type ty : types) {
    io::gguf_tensor e;
    e.name = std::string("blk.0.") + gg::traits(ty).name;
    e.ne = {96, 7};
    e.type = static_cast<std::uint32_t>(ty);
    t.push_back(e);
    data.push_back(quantize(ty, x));
  }
  std::vector<io::gguf_kv> kv{{"general.alignment", io::gguf_value::scalar(io::gguf_type::u32, std::uint32_t{64})},
                              {"tokenizer.ggml.tokens", io::gguf_value::string_array({"<s>", "", "\xE2\x96\x81the"})}};
  io::gguf_writer w;
  ASSERT_TRUE(w.open(path, kv, t));
  for (const auto& d : data) ASSERT_TRUE(w.write(d.data(), d.size()));
  ASSERT_TRUE(w.commit());
  io::gguf_file f;
  const lb::status s = io::gguf_file::open(path, f);
  ASSERT_TRUE(s) << s.message();
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.find("tokenizer.ggml.tokens")->strings, (std::vector<std::string>{"<s>", "", "\xE2\x96\x81the"}));
  for (std::size_t i = 0; i < t.size(); ++i) {
    const io::gguf_tensor* g = f.find_tensor(t[i].name);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(g->shape(), (std::vector<std::int64_t>{7, 96}));
    EXPECT_EQ(g->offset % 64, 0u);
    ASSERT_EQ(g->nbytes, data[i].size());
    EXPECT_EQ(std::memcmp(g->data, data[i].data(), data[i].size()), 0) << t[i].name;
    std::vector<float> a(x.size()), b(x.size());
    ASSERT_TRUE(io::gguf_file::dequantize(*g, a.data()));
    ASSERT_TRUE(gg::dequantize(types[i], data[i].data(), static_cast<std::int64_t>(x.size()), b.data()));
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  }
}
