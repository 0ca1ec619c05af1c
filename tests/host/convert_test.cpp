// SPDX-License-Identifier: Apache-2.0
// The plain conversions (lowbit/convert.hpp) against the scalar codecs, which are themselves
// checked against NVIDIA's host conversions for every float32 (tests/codecs/exhaustive_test.cpp):
// every path (portable, AVX2, AVX-512) bit for bit over every float16 and bfloat16 input, a
// stratified sweep of float32 inputs that holds every rounding situation (the bits around each
// format's rounding position in every binade), every code in every decode direction; odd
// lengths, misaligned arrays, tails, thread counts and store modes; argument errors.
// The sweep over all 2^32 float32 inputs is convert_exhaustive_test.cpp.
#include <lowbit/convert.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#  include <xmmintrin.h>
#endif

#include "test_util.hpp"

namespace {

namespace lb = ::lowbit;
namespace codecs = lb::codecs;
using lb::minifloat_type;

constexpr minifloat_type kTypes[] = {minifloat_type::e4m3fn, minifloat_type::e5m2,   minifloat_type::e2m3fn, minifloat_type::e3m2fn,
                                     minifloat_type::e2m1fn, minifloat_type::e3m0, minifloat_type::e8m0fnu};
constexpr codecs::overflow kModes[] = {codecs::overflow::saturate, codecs::overflow::special};
constexpr lb::dtype kDtypes[] = {lb::dtype::f32, lb::dtype::f16, lb::dtype::bf16};

struct path {
  const char* name;
  bool simd, avx512;
};
// Paths this CPU runs (the portable one always).
std::vector<path> paths() {
  std::vector<path> p{{"portable", false, false}};
  if (lb::host::avx2::available()) p.push_back({"avx2", true, false});
  if (lb::host::avx512::available()) p.push_back({"avx512", true, true});
  return p;
}

lb::convert_options opts(const path& p, codecs::overflow o, int threads = 0,
                         lb::host::store_mode s = lb::host::store_mode::automatic) {
  lb::convert_options c;
  c.overflow = o;
  c.simd = p.simd;
  c.avx512 = p.avx512;
  c.threads = threads;
  c.stores = s;
  return c;
}

// The scalar codec's code of x (the oracle).
std::uint8_t oracle_code(minifloat_type t, codecs::overflow o, float x) {
  return lb::visit_minifloat(t, [&](auto c) -> std::uint8_t {
    using C = decltype(c);
    return o == codecs::overflow::saturate ? C::template encode<codecs::rounding::nearest_even, codecs::overflow::saturate>(x)
                                           : C::template encode<codecs::rounding::nearest_even, codecs::overflow::special>(x);
  });
}

// Code of element i of a code array of t.
std::uint8_t code_at(minifloat_type t, const std::uint8_t* codes, std::int64_t i) {
  if (!lb::is_packed4(t)) return codes[i];
  return static_cast<std::uint8_t>((i & 1) ? codes[i / 2] >> 4 : codes[i / 2] & 0xF);
}

// Widens element i of an array of dtype d to float32.
float widen(lb::dtype d, const void* p, std::int64_t i) {
  const auto* b = static_cast<const unsigned char*>(p);
  if (d == lb::dtype::f32) {
    float v;
    std::memcpy(&v, b + 4 * i, 4);
    return v;
  }
  std::uint16_t h;
  std::memcpy(&h, b + 2 * i, 2);
  return d == lb::dtype::f16 ? lb::f16_bits_to_float(h) : lb::bf16_bits_to_float(h);
}

// Encodes n elements of x (dtype d) on every path and checks each code against the oracle (and
// the pad nibble of an odd 4-bit count); returns the number of mismatches (first few reported).
std::int64_t check_encode(minifloat_type t, codecs::overflow o, lb::dtype d, const void* x, std::int64_t n, const path& p,
                          int threads = 0, lb::host::store_mode s = lb::host::store_mode::automatic, std::size_t out_offset = 0) {
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(lb::minifloat_bytes(t, n)) + out_offset + 1, 0xA5);
  std::uint8_t* codes = buf.data() + out_offset;
  const lb::status st = lb::convert_to_minifloat(x, d, n, t, codes, opts(p, o, threads, s));
  EXPECT_TRUE(st.ok()) << st.message();
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = widen(d, x, i);
    const std::uint8_t want = oracle_code(t, o, v), got = code_at(t, codes, i);
    if (want != got && bad++ < 5) {
      ADD_FAILURE() << lb::minifloat_name(t) << " " << lb::dtype_name(d) << " path " << p.name << " overflow "
                    << static_cast<int>(o) << " threads " << threads << ": element " << i << " bits "
                    << lowbit_test::hex(lowbit_test::bits_of(v)) << " -> " << lowbit_test::hex(got, 2) << ", want "
                    << lowbit_test::hex(want, 2);
    }
  }
  if (lb::is_packed4(t) && (n & 1)) {
    EXPECT_EQ(codes[n / 2] >> 4, 0) << "pad nibble of an odd count";
  }
  EXPECT_EQ(buf[static_cast<std::size_t>(lb::minifloat_bytes(t, n)) + out_offset], 0xA5) << "wrote past the end";
  if (out_offset > 0) {
    EXPECT_EQ(buf[out_offset - 1], 0xA5) << "wrote before the start";
  }
  return bad;
}

TEST(Convert, EveryFloat16AndBfloat16InputOnEveryPath) {
  std::vector<std::uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(i);
  for (const path& p : paths()) {
    for (const minifloat_type t : kTypes) {
      for (const codecs::overflow o : kModes) {
        for (const lb::dtype d : {lb::dtype::f16, lb::dtype::bf16}) {
          EXPECT_EQ(check_encode(t, o, d, all.data(), 65536, p), 0);
        }
      }
    }
  }
}

// Every sign and exponent, the top 10 mantissa bits exhaustively, and the low 13 bits in the
// patterns that decide a rounding (zero, one, just below/at/above the half of bit 13, all ones,
// and one random value): every format's round bit lies in mantissa bits 22..19 or is the implicit
// bit (or, for e8m0fnu below 2^-126, in the top bits of a float32 subnormal), so this holds every
// tie, near-tie and sticky case of every binade. 3.7M inputs.
std::vector<float> stratified_float32() {
  std::mt19937_64 rng(lowbit_test::test_seed());
  std::vector<float> v;
  v.reserve(std::size_t{1} << 22);
  for (std::uint32_t top = 0; top < (1u << 19); ++top) {
    const std::uint32_t low[] = {0u, 1u, 0x0FFFu, 0x1000u, 0x1001u, 0x1FFFu, static_cast<std::uint32_t>(rng()) & 0x1FFFu};
    for (const std::uint32_t l : low) v.push_back(lowbit_test::float_of((top << 13) | l));
  }
  return v;
}

TEST(Convert, StratifiedFloat32OnEveryPath) {
  LOWBIT_SEED_TRACE();
  const std::vector<float> x = stratified_float32();
  for (const path& p : paths()) {
    for (const minifloat_type t : kTypes) {
      for (const codecs::overflow o : kModes) {
        EXPECT_EQ(check_encode(t, o, lb::dtype::f32, x.data(), static_cast<std::int64_t>(x.size()), p), 0);
      }
    }
  }
}

// The oracle value of code c of t in dtype d, as output bits.
std::uint32_t decoded_bits(minifloat_type t, lb::dtype d, std::uint8_t c) {
  const float v = lb::visit_minifloat(t, [&](auto k) { return decltype(k)::decode(c); });
  if (d == lb::dtype::f32) return lowbit_test::bits_of(v);
  return d == lb::dtype::f16 ? lb::float_to_f16_bits(v) : lb::float_to_bf16_bits(v);
}

std::int64_t check_decode(minifloat_type t, lb::dtype d, const std::uint8_t* codes, std::int64_t n, const path& p, int threads = 0,
                          lb::host::store_mode s = lb::host::store_mode::automatic, std::size_t out_offset = 0) {
  const std::size_t size = static_cast<std::size_t>(lb::dtype_size(d));
  std::vector<unsigned char> buf(static_cast<std::size_t>(n) * size + out_offset + 1, 0xA5);
  unsigned char* out = buf.data() + out_offset;
  lb::convert_options o = opts(p, codecs::overflow::special, threads, s);
  const lb::status st = lb::convert_from_minifloat(codes, t, n, out, d, o);
  EXPECT_TRUE(st.ok()) << st.message();
  std::int64_t bad = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint32_t got = 0;
    std::memcpy(&got, out + static_cast<std::size_t>(i) * size, size);
    const std::uint8_t c = code_at(t, codes, i);
    const std::uint32_t want = decoded_bits(t, d, c);
    if (got != want && bad++ < 5) {
      ADD_FAILURE() << lb::minifloat_name(t) << " -> " << lb::dtype_name(d) << " path " << p.name << " threads " << threads
                    << ": element " << i << " code " << lowbit_test::hex(c, 2) << " -> " << lowbit_test::hex(got)
                    << ", want " << lowbit_test::hex(want);
    }
  }
  EXPECT_EQ(buf[static_cast<std::size_t>(n) * size + out_offset], 0xA5) << "wrote past the end";
  return bad;
}

TEST(Convert, EveryCodeDecodesOnEveryPath) {
  // every byte value many times, in a scrambled order, so the vector lines see every code
  std::vector<std::uint8_t> codes(4096 * 3 + 17);
  for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<std::uint8_t>(i * 167 + (i >> 8));
  for (const path& p : paths()) {
    for (const minifloat_type t : kTypes) {
      for (const lb::dtype d : kDtypes) {
        const std::int64_t n = static_cast<std::int64_t>(codes.size()) * (lb::is_packed4(t) ? 2 : 1);
        EXPECT_EQ(check_decode(t, d, codes.data(), n, p), 0);
      }
    }
  }
}

TEST(Convert, DecodeValuesFollowTheDocumentedRules) {
  auto f32 = [](minifloat_type t, std::uint8_t c) {
    float v;
    EXPECT_TRUE(lb::convert_from_minifloat(&c, t, 1, &v, lb::dtype::f32).ok());
    return lowbit_test::bits_of(v);
  };
  auto half = [](minifloat_type t, std::uint8_t c, lb::dtype d) {
    std::uint16_t v;
    EXPECT_TRUE(lb::convert_from_minifloat(&c, t, 1, &v, d).ok());
    return v;
  };
  EXPECT_EQ(f32(minifloat_type::e4m3fn, 0x7E), lowbit_test::bits_of(448.0f));
  EXPECT_EQ(f32(minifloat_type::e4m3fn, 0xFF), 0xFFC00000u);  // NaN keeps the code's sign in float32
  EXPECT_EQ(half(minifloat_type::e4m3fn, 0xFF, lb::dtype::f16), 0x7FFFu);
  EXPECT_EQ(f32(minifloat_type::e5m2, 0xFC), 0xFF800000u);  // -Inf
  EXPECT_EQ(f32(minifloat_type::e8m0fnu, 0x00), 0x00400000u);  // 2^-127: a float32 subnormal
  EXPECT_EQ(half(minifloat_type::e8m0fnu, 0x00, lb::dtype::f16), 0x0000u);  // below float16's range
  EXPECT_EQ(half(minifloat_type::e8m0fnu, 0x90, lb::dtype::f16), 0x7C00u);  // 2^17: +Inf in float16
  EXPECT_EQ(half(minifloat_type::e8m0fnu, 0x00, lb::dtype::bf16), 0x0040u);  // exact in bfloat16
  EXPECT_EQ(f32(minifloat_type::e2m3fn, 0xBF), lowbit_test::bits_of(-7.5f));  // bits 7..6 ignored
  EXPECT_EQ(f32(minifloat_type::e2m1fn, 0xF7), lowbit_test::bits_of(6.0f));   // element 0: the low nibble
}

TEST(Convert, EncodeValuesFollowTheDocumentedRules) {
  auto code = [](minifloat_type t, float x, codecs::overflow o) {
    std::uint8_t c = 0xEE;
    lb::convert_options opt;
    opt.overflow = o;
    EXPECT_TRUE(lb::convert_to_minifloat(&x, lb::dtype::f32, 1, t, &c, opt).ok());
    return static_cast<int>(c);
  };
  const auto sat = codecs::overflow::saturate, nosat = codecs::overflow::special;
  const float inf = lowbit_test::float_of(0x7F800000u), nan = lowbit_test::float_of(0x7FC00000u);
  EXPECT_EQ(code(minifloat_type::e4m3fn, 480.0f, sat), 0x7E);     // rounds past 448
  EXPECT_EQ(code(minifloat_type::e4m3fn, 480.0f, nosat), 0x7F);   // NaN
  EXPECT_EQ(code(minifloat_type::e4m3fn, -1e9f, nosat), 0xFF);    // NaN with the sign (__NV_NOSAT)
  EXPECT_EQ(code(minifloat_type::e4m3fn, 464.0f, nosat), 0x7E);   // the tie above 448 goes to 448 (even)
  EXPECT_EQ(code(minifloat_type::e5m2, 65536.0f, nosat), 0x7C);   // +Inf
  EXPECT_EQ(code(minifloat_type::e5m2, -inf, sat), 0xFB);         // -57344
  EXPECT_EQ(code(minifloat_type::e5m2, nan, sat), 0x7F);
  EXPECT_EQ(code(minifloat_type::e2m1fn, 1e9f, nosat), 0x7);       // no Inf/NaN: +6
  EXPECT_EQ(code(minifloat_type::e2m1fn, nan, nosat), 0x7);        // NaN: +max
  EXPECT_EQ(code(minifloat_type::e2m1fn, -0.0f, nosat), 0x8);      // -0 code
  EXPECT_EQ(code(minifloat_type::e2m1fn, 0.25f, nosat), 0x0);      // tie to even: 0
  EXPECT_EQ(code(minifloat_type::e2m1fn, 0.75f, nosat), 0x2);      // tie to even: 1.0
  EXPECT_EQ(code(minifloat_type::e8m0fnu, -4.0f, nosat), 127 + 2); // unsigned: |x|
  EXPECT_EQ(code(minifloat_type::e8m0fnu, 0.0f, nosat), 0x00);     // no zero: 2^-127
  EXPECT_EQ(code(minifloat_type::e8m0fnu, inf, nosat), 0xFF);
  EXPECT_EQ(code(minifloat_type::e8m0fnu, inf, sat), 0xFE);
  EXPECT_EQ(code(minifloat_type::e3m2fn, 1e9f, nosat), 0x1F);      // 28, bits 7..6 zero
}

// Random float32 values over the whole range, with zeros, subnormals, Inf and NaN mixed in.
std::vector<float> random_values(std::size_t n, std::mt19937_64& rng) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t r = rng();
    switch (r % 8) {
      case 0: v[i] = lowbit_test::float_of(static_cast<std::uint32_t>(r >> 32)); break;  // any pattern
      case 1: v[i] = (r & 256) ? -0.0f : 0.0f; break;
      default: {  // magnitudes around every format's range: 2^-20 .. 2^20
        const int e = static_cast<int>((r >> 8) % 41) - 20;
        v[i] = std::ldexp(1.0f + static_cast<float>((r >> 20) & 0xFFFF) / 65536.0f, e) * ((r >> 40) & 1 ? -1.0f : 1.0f);
      }
    }
  }
  return v;
}

TEST(Convert, LengthsOffsetsThreadsAndStoreModes) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  const std::int64_t lengths[] = {0, 1, 2, 3, 15, 16, 17, 63, 64, 65, 127, 128, 129, 255, 1000, 4097, 65536 + 129, 300001};
  const int threads[] = {1, 2, 3, 0};
  const lb::host::store_mode stores[] = {lb::host::store_mode::cached, lb::host::store_mode::streaming};
  const std::vector<float> pool = random_values(300001 + 8, rng);
  std::vector<unsigned char> in(pool.size() * 4 + 8);
  for (const path& p : paths()) {
    for (const std::int64_t n : lengths) {
      for (const lb::dtype d : kDtypes) {
        const std::size_t in_off = static_cast<std::size_t>(rng() % 4);  // misaligned input
        for (std::int64_t i = 0; i < n; ++i) {
          const float v = pool[static_cast<std::size_t>(i)];
          const std::size_t at = in_off + static_cast<std::size_t>(i) * static_cast<std::size_t>(lb::dtype_size(d));
          if (d == lb::dtype::f32) {
            std::memcpy(in.data() + at, &v, 4);
          } else {
            const std::uint16_t h = d == lb::dtype::f16 ? lb::float_to_f16_bits(v) : lb::float_to_bf16_bits(v);
            std::memcpy(in.data() + at, &h, 2);
          }
        }
        for (const minifloat_type t : kTypes) {
          const int th = threads[rng() % 4];
          const lb::host::store_mode s = stores[rng() % 2];
          const std::size_t out_off = static_cast<std::size_t>(rng() % 67);
          SCOPED_TRACE("n " + std::to_string(n) + " in offset " + std::to_string(in_off) + " out offset " + std::to_string(out_off));
          EXPECT_EQ(check_encode(t, kModes[rng() % 2], d, in.data() + in_off, n, p, th, s, out_off), 0);
          // decode the codes of the same values again, to a misaligned output
          std::vector<std::uint8_t> codes(static_cast<std::size_t>(lb::minifloat_bytes(t, n)) + 1);
          ASSERT_TRUE(lb::convert_to_minifloat(in.data() + in_off, d, n, t, codes.data()).ok());
          EXPECT_EQ(check_decode(t, d, codes.data(), n, p, th, s, out_off), 0);
        }
      }
    }
  }
}

TEST(Convert, CallerFloatingPointModeDoesNotMatter) {
#if defined(__x86_64__) || defined(__i386__)
  // subnormal targets are rounded by an IEEE addition: flush-to-zero / denormals-are-zero or
  // another rounding mode in the caller's MXCSR must not change a bit
  const std::vector<float> x = stratified_float32();
  const std::int64_t n = static_cast<std::int64_t>(x.size());
  std::vector<std::uint8_t> want(static_cast<std::size_t>(n)), got(static_cast<std::size_t>(n));
  std::vector<float> back_want(static_cast<std::size_t>(n)), back_got(static_cast<std::size_t>(n));
  for (const minifloat_type t : {minifloat_type::e4m3fn, minifloat_type::e2m1fn, minifloat_type::e8m0fnu}) {
    ASSERT_TRUE(lb::convert_to_minifloat(x.data(), lb::dtype::f32, n, t, want.data()).ok());
    ASSERT_TRUE(lb::convert_from_minifloat(want.data(), t, n, back_want.data(), lb::dtype::f32).ok());
    const unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040u | 0x6000u);  // FTZ, DAZ, round toward zero
    const lb::status s1 = lb::convert_to_minifloat(x.data(), lb::dtype::f32, n, t, got.data());
    const lb::status s2 = lb::convert_from_minifloat(want.data(), t, n, back_got.data(), lb::dtype::f32);
    const unsigned after = _mm_getcsr();
    _mm_setcsr(saved);
    ASSERT_TRUE(s1.ok() && s2.ok());
    EXPECT_EQ(after & ~0x3Fu, (saved | 0x8040u | 0x6000u) & ~0x3Fu) << "the caller's mode is restored";
    EXPECT_TRUE(want == got) << lb::minifloat_name(t);
    EXPECT_EQ(std::memcmp(back_want.data(), back_got.data(), back_want.size() * 4), 0) << lb::minifloat_name(t);
  }
#else
  GTEST_SKIP() << "x86 only (MXCSR)";
#endif
}

TEST(Convert, BadArgumentsAreNamedAndNothingIsWritten) {
  float x[4] = {1, 2, 3, 4};
  std::uint8_t c[4] = {9, 9, 9, 9};
  auto msg = [](const lb::status& s) { return std::string(s.ok() ? "ok" : s.message()); };
  EXPECT_NE(msg(lb::convert_to_minifloat(x, lb::dtype::f32, -1, minifloat_type::e4m3fn, c)).find("n is -1"), std::string::npos);
  EXPECT_NE(msg(lb::convert_to_minifloat(nullptr, lb::dtype::f32, 4, minifloat_type::e4m3fn, c)).find("input"), std::string::npos);
  EXPECT_NE(msg(lb::convert_to_minifloat(x, lb::dtype::f32, 4, minifloat_type::e4m3fn, nullptr)).find("output"), std::string::npos);
  EXPECT_NE(msg(lb::convert_to_minifloat(x, static_cast<lb::dtype>(7), 4, minifloat_type::e4m3fn, c)).find("dtype 7"), std::string::npos);
  EXPECT_NE(msg(lb::convert_to_minifloat(x, lb::dtype::f32, 4, static_cast<minifloat_type>(9), c)).find("minifloat_type 9"),
            std::string::npos);
  lb::convert_options bad;
  bad.overflow = static_cast<codecs::overflow>(5);
  EXPECT_NE(msg(lb::convert_to_minifloat(x, lb::dtype::f32, 4, minifloat_type::e4m3fn, c, bad)).find("options.overflow"),
            std::string::npos);
  bad = {};
  bad.stores = static_cast<lb::host::store_mode>(5);
  EXPECT_NE(msg(lb::convert_from_minifloat(c, minifloat_type::e4m3fn, 4, x, lb::dtype::f32, bad)).find("options.stores"),
            std::string::npos);
  // overlap: the codes inside the input array
  EXPECT_NE(msg(lb::convert_to_minifloat(x, lb::dtype::f32, 4, minifloat_type::e4m3fn, reinterpret_cast<std::uint8_t*>(x) + 3))
                .find("overlap"),
            std::string::npos);
  EXPECT_NE(msg(lb::convert_from_minifloat(reinterpret_cast<std::uint8_t*>(x), minifloat_type::e4m3fn, 4, x, lb::dtype::f32)).find("overlap"),
            std::string::npos);
  for (const std::uint8_t v : c) EXPECT_EQ(v, 9);
  EXPECT_EQ(x[0], 1.0f);
  EXPECT_TRUE(lb::convert_to_minifloat(nullptr, lb::dtype::f32, 0, minifloat_type::e4m3fn, nullptr).ok());  // n == 0
}

}  // namespace
