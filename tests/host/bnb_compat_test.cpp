// SPDX-License-Identifier: Apache-2.0
// bitsandbytes compatibility of the host engine (spec: shared/reference/bitsandbytes-semantics.md):
// - DequantizeBnbBytes*: random bitsandbytes bytes (codes, float32 absmax, nested absmax, replaced
//   code tables) dequantized by lowbit equal bitsandbytes' formula bit for bit (§3, §4.1, B.5),
//   written here from the spec's tables; NVIDIA's host conversions (cuda_fp16.h, cuda_bf16.h) are
//   the float16/bfloat16 rounding oracle.
// - QuantizeMatchesCudaBytes: lowbit's codes and absmax equal the bytes bitsandbytes' CUDA kernels
//   write, computed by the recipe of Appendix B.1/B.3 on inputs built as B.6 recommends.
// - ErrorBounds*, DoubleQuantNf4Block64: the acceptance bounds of bitsandbytes' own tests (§9) and
//   the nested layout of §4.
// - NativeLibrary: bitsandbytes' own CPU library (libbitsandbytes_cpu.so, path in
//   $LOWBIT_BNB_CPU_LIB, loaded with dlopen) as an oracle for dequantization (§8).
// Every random input comes from lowbit_test::test_seed() ($LOWBIT_TEST_SEED).

// NVIDIA's headers come before lowbit's (lowbit must not depend on them, but must coexist).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <lowbit/lowbit.hpp>

#include <gtest/gtest.h>

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using lowbit::dtype;
using lowbit::format;
using lowbit_test::bits_of;
using lowbit_test::float_of;
using lowbit_test::hex;

// ---------------------------------------------------------------------------------------------
// Spec data (bitsandbytes-semantics.md), typed from the document, not taken from lowbit.

// §1.1 NF4 values by code (float32 bits).
constexpr std::uint32_t kNf4ValueBits[16] = {
    0xBF800000u, 0xBF3239B1u, 0xBF066B30u, 0xBECA32A0u, 0xBE91A24Du, 0xBE3D353Fu, 0xBDBA7871u, 0x00000000u,
    0x3DA2FAFFu, 0x3E24CAE3u, 0x3E7C04DDu, 0x3EAD033Au, 0x3EE1A4B8u, 0x3F1007ABu, 0x3F3913B3u, 0x3F800000u};

// §1.1 NF4 thresholds T0..T14 of CUDA dQuantizeNF4 (float32 bits of its literals).
constexpr std::uint32_t kNf4ThresholdBits[15] = {
    0xBF591CD9u, 0xBF1C5270u, 0xBEEB8480u, 0xBEADEA76u, 0xBE703CECu, 0xBE0D38BCu, 0xBD3A7871u, 0x3D22FAFFu,
    0x3DF64863u, 0x3E5067E0u, 0x3E9582D4u, 0x3EC753F9u, 0x3F006D03u, 0x3F248DAFu, 0x3F5C89D9u};

// §1.2 FP4 values by code; code 8 is -0.0 as in bitsandbytes' CUDA kernels and scalar CPU LUT.
constexpr std::uint32_t kFp4ValueBits[16] = {
    0x00000000u, 0x3BAAAAABu, 0x3F2AAAABu, 0x3F800000u, 0x3EAAAAABu, 0x3F000000u, 0x3E2AAAABu, 0x3E800000u,
    0x80000000u, 0xBBAAAAABu, 0xBF2AAAABu, 0xBF800000u, 0xBEAAAAABu, 0xBF000000u, 0xBE2AAAABu, 0xBE800000u};

// §1.2 magnitude thresholds of CUDA dQuantizeFP4, ascending, and magnitude rank -> code.
constexpr std::uint32_t kFp4ThresholdBits[7] = {0x3B2AAAB9u, 0x3DB00000u, 0x3E555555u, 0x3E955555u,
                                                0x3ED55556u, 0x3F155550u, 0x3F555555u};
constexpr unsigned kFp4RankToCode[8] = {0, 1, 6, 7, 4, 5, 2, 3};

// Appendix A: the 42 entries of the signed dynamic map that differ in the non-FMA linspace variant
// (index, float32 bits). Used as a realistic replaced `quant_map`.
constexpr std::pair<int, std::uint32_t> kDynamicNonFmaEntries[42] = {
    {18, 0xBF3D6667u},  {20, 0xBF363333u},  {23, 0xBF2B6667u},  {25, 0xBF243333u},  {28, 0xBF196667u},
    {30, 0xBF123333u},  {34, 0xBF03CCCDu},  {39, 0xBEE39999u},  {41, 0xBED53332u},  {46, 0xBEB13332u},
    {51, 0xBE8D3333u},  {58, 0xBE359999u},  {72, 0xBD9BD70Bu},  {80, 0xBD5B8520u},  {83, 0xBD38F5C2u},
    {87, 0xBD0AE147u},  {89, 0xBCE7AE13u},  {92, 0xBCA28F5Cu},  {102, 0xBBCFDF3Cu}, {116, 0xBA016F00u},
    {117, 0xB9C7E282u}, {137, 0x39C7E282u}, {138, 0x3A016F00u}, {152, 0x3BCFDF3Cu}, {162, 0x3CA28F5Cu},
    {165, 0x3CE7AE13u}, {167, 0x3D0AE147u}, {171, 0x3D38F5C2u}, {174, 0x3D5B8520u}, {182, 0x3D9BD70Bu},
    {196, 0x3E359999u}, {203, 0x3E8D3333u}, {208, 0x3EB13332u}, {213, 0x3ED53332u}, {215, 0x3EE39999u},
    {220, 0x3F03CCCDu}, {224, 0x3F123333u}, {226, 0x3F196667u}, {229, 0x3F243333u}, {231, 0x3F2B6667u},
    {234, 0x3F363333u}, {236, 0x3F3D6667u}};

/// The signed 8-bit dynamic map (Appendix A, FMA variant). Read from lowbit's
/// codecs::bnb_dynamic8::decode: its 256 values are verified bit for bit against the spec in
/// tests/codecs/decode_table_test.cpp; four entries are spot-checked here against Appendix A.
const std::vector<float>& dynamic_map() {
  static const std::vector<float> map = [] {
    std::vector<float> m(256);
    for (int i = 0; i < 256; ++i) m[i] = lowbit::codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(i));
    return m;
  }();
  return map;
}

std::vector<float> spec_table(format f) {
  std::vector<float> t;
  if (f == format::nf4) {
    for (std::uint32_t b : kNf4ValueBits) t.push_back(float_of(b));
  } else if (f == format::bnb_fp4) {
    for (std::uint32_t b : kFp4ValueBits) t.push_back(float_of(b));
  } else {
    t = dynamic_map();
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Formats, dtypes, NVIDIA conversions.

struct FormatCase {
  format fmt;
  const char* name;
  int bits;
};
constexpr FormatCase kBnbFormats[] = {{format::nf4, "nf4", 4}, {format::bnb_fp4, "bnb_fp4", 4}, {format::bnb_dynamic8, "bnb_dynamic8", 8}};

struct DtypeCase {
  dtype dt;
  const char* name;
};
constexpr DtypeCase kDtypes[] = {{dtype::f32, "float32"}, {dtype::f16, "float16"}, {dtype::bf16, "bfloat16"}};

std::uint16_t nv_f16_bits(float x) {
  const __half_raw r = __float2half_rn(x);
  return r.x;
}
std::uint16_t nv_bf16_bits(float x) {
  const __nv_bfloat16_raw r = __float2bfloat16_rn(x);
  return r.x;
}
float nv_f16_to_float(std::uint16_t b) {
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}
float nv_bf16_to_float(std::uint16_t b) {
  __nv_bfloat16_raw r;
  r.x = b;
  return __bfloat162float(__nv_bfloat16(r));
}

/// to_dtype_RNE(v) as raw bits (float32 bits, or the 16-bit pattern), by NVIDIA's conversions.
std::uint32_t oracle_bits(float v, dtype dt) {
  switch (dt) {
    case dtype::f32: return bits_of(v);
    case dtype::f16: return nv_f16_bits(v);
    case dtype::bf16: break;
  }
  return nv_bf16_bits(v);
}

int hex_digits(dtype dt) { return dt == dtype::f32 ? 8 : 4; }

/// True if `bits` (of dtype dt) is +0 or -0.
bool is_zero_bits(std::uint32_t bits, dtype dt) {
  return dt == dtype::f32 ? (bits & 0x7FFFFFFFu) == 0 : (bits & 0x7FFFu) == 0;
}

/// Output of host::dequantize as raw bits per element.
std::vector<std::uint32_t> lowbit_dequant_bits(const lowbit::quant_view& q, dtype dt, bool simd) {
  const auto n = static_cast<std::size_t>(q.numel);
  std::vector<std::uint32_t> bits(n);
  lowbit::host::options opt;
  opt.simd = simd;
  lowbit::status s;
  if (dt == dtype::f32) {
    std::vector<float> out(n, float_of(0x7FC0DEADu));
    s = lowbit::host::dequantize(q, out.data(), dt, opt);
    for (std::size_t i = 0; i < n; ++i) bits[i] = bits_of(out[i]);
  } else if (dt == dtype::f16) {
    std::vector<lowbit::f16> out(n, lowbit::f16{0x7E5Du});
    s = lowbit::host::dequantize(q, out.data(), dt, opt);
    for (std::size_t i = 0; i < n; ++i) bits[i] = out[i].bits;
  } else {
    std::vector<lowbit::bf16> out(n, lowbit::bf16{0x7FDDu});
    s = lowbit::host::dequantize(q, out.data(), dt, opt);
    for (std::size_t i = 0; i < n; ++i) bits[i] = out[i].bits;
  }
  EXPECT_TRUE(s.ok()) << "host::dequantize failed: " << s.message();
  return bits;
}

/// The 4-bit (high nibble first) or 8-bit code of element i.
unsigned code_at(const std::vector<std::uint8_t>& codes, int bits, std::int64_t i) {
  if (bits == 8) return codes[static_cast<std::size_t>(i)];
  const std::uint8_t byte = codes[static_cast<std::size_t>(i / 2)];
  return (i & 1) ? (byte & 0x0Fu) : (byte >> 4);
}

/// Compares element bits; reports up to 8 mismatching indices with `describe(i)`.
template <class Describe>
void expect_same_bits(const std::string& ctx, const std::vector<std::uint32_t>& want, const std::vector<std::uint32_t>& got,
                      int digits, Describe describe) {
  ASSERT_EQ(want.size(), got.size()) << ctx;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    if (want[i] == got[i]) continue;
    if (++bad <= 8)
      ADD_FAILURE() << ctx << ", index " << i << ": " << describe(i) << ": expected " << hex(want[i], digits) << ", got "
                    << hex(got[i], digits);
  }
  EXPECT_EQ(bad, 0u) << ctx << ": " << bad << " of " << want.size() << " elements differ";
}

std::mt19937 make_rng(std::uint32_t salt) {
  const std::uint64_t s = lowbit_test::test_seed();
  std::seed_seq seq{static_cast<std::uint32_t>(s), static_cast<std::uint32_t>(s >> 32), salt};
  return std::mt19937(seq);
}

/// A random float32 absmax: mostly full-precision positive values over a wide exponent range
/// (float16 subnormals and overflow included), some with short mantissas so that products with the
/// short table values hit exact float16/bfloat16 rounding ties, and occasionally 0 (zero block).
float random_absmax(std::mt19937& rng) {
  const unsigned kind = rng() % 16;
  if (kind == 0) return 0.0f;
  const int e = static_cast<int>(rng() % 51) - 30;  // 2^-30 .. 2^20
  std::uint32_t mant = rng() & 0x7FFFFFu;
  if (kind >= 9) {
    const int keep = 1 + static_cast<int>(rng() % 12);  // 1..12 leading mantissa bits
    mant &= ~((1u << (23 - keep)) - 1u);
  }
  return std::ldexp(float_of(0x3F800000u | mant), e);
}

std::string ctx_of(const char* what, const char* fmt, const char* dt, std::int64_t bs, std::int64_t n, bool simd) {
  std::ostringstream os;
  os << what << " format " << fmt << ", dtype " << dt << ", block size " << bs << ", numel " << n << (simd ? ", simd" : ", portable");
  return os.str();
}

std::vector<std::int64_t> dequant_sizes(std::int64_t bs) {
  std::vector<std::int64_t> v = {1, 2, 7, bs - 1, bs, bs + 1, 3 * bs + 5, 5 * bs + bs / 2 + 1};
  if (bs == 64) v.push_back(64 * 700 + 33);  // more than one parallel chunk
  return v;
}

// ---------------------------------------------------------------------------------------------
// 1. Dequantization of bitsandbytes bytes.

TEST(BnbCompat, DynamicMapSpotCheck) {
  // Appendix A, FMA variant.
  EXPECT_EQ(hex(bits_of(dynamic_map()[0])), hex(0xBF7E3333u));
  EXPECT_EQ(hex(bits_of(dynamic_map()[126])), hex(0xB513A3B7u));
  EXPECT_EQ(hex(bits_of(dynamic_map()[127])), hex(0x00000000u));
  EXPECT_EQ(hex(bits_of(dynamic_map()[255])), hex(0x3F800000u));
}

TEST(BnbCompat, DequantizeBnbBytes) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng = make_rng(1);
  for (const FormatCase& fc : kBnbFormats) {
    const std::vector<float> table = spec_table(fc.fmt);
    std::vector<std::int64_t> block_sizes = {64, 128, 4096};
    if (fc.bits == 8) block_sizes.insert(block_sizes.begin() + 2, 256);
    for (std::int64_t bs : block_sizes) {
      for (std::int64_t n : dequant_sizes(bs)) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(lowbit::code_bytes(fc.fmt, n)));
        for (auto& c : codes) c = static_cast<std::uint8_t>(rng());
        std::vector<float> absmax(static_cast<std::size_t>(lowbit::quant::block_count(n, bs)));
        for (auto& a : absmax) a = random_absmax(rng);
        lowbit::quant_view q;
        q.fmt = fc.fmt;
        q.numel = n;
        q.block_size = bs;
        q.codes = codes.data();
        q.scales = absmax.data();
        for (const DtypeCase& dc : kDtypes) {
          // bitsandbytes (§3, B.5): out = to_dtype_RNE(f32(table[q] * absmax[k / blocksize]))
          std::vector<std::uint32_t> want(static_cast<std::size_t>(n));
          for (std::int64_t k = 0; k < n; ++k) {
            const float v = table[code_at(codes, fc.bits, k)] * absmax[static_cast<std::size_t>(k / bs)];
            want[static_cast<std::size_t>(k)] = oracle_bits(v, dc.dt);
          }
          for (bool simd : {true, false}) {
            const std::vector<std::uint32_t> got = lowbit_dequant_bits(q, dc.dt, simd);
            expect_same_bits(ctx_of("dequantize", fc.name, dc.name, bs, n, simd), want, got, hex_digits(dc.dt),
                             [&](std::size_t i) {
                               return "code " + std::to_string(code_at(codes, fc.bits, static_cast<std::int64_t>(i))) +
                                      ", absmax " + hex(bits_of(absmax[i / static_cast<std::size_t>(bs)]));
                             });
          }
        }
      }
    }
  }
}

/// bitsandbytes' reconstruction of a nested absmax (§4.1): f32(f32(code2[q] * absmax2[i/256]) + offset),
/// two roundings. The product goes through a volatile float so it cannot be contracted into an FMA.
float ref_nested_scale(float code2, float absmax2, float offset) {
  volatile float product = code2 * absmax2;
  const float p = product;
  return p + offset;
}

TEST(BnbCompat, DequantizeBnbBytesNested) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng = make_rng(2);
  const std::vector<float>& code2 = dynamic_map();
  for (const FormatCase& fc : kBnbFormats) {
    const std::vector<float> table = spec_table(fc.fmt);
    for (std::int64_t bs : {std::int64_t{64}, std::int64_t{4096}}) {
      // bs 64: 601 blocks -> 3 nested blocks, the last partial; bs 4096: 3 blocks, one nested block.
      const std::int64_t n = bs == 64 ? 64 * 600 + 37 : 4096 * 2 + 1001;
      const std::int64_t nb = lowbit::quant::block_count(n, bs);
      const std::int64_t nnb = lowbit::quant::block_count(nb, 256);
      std::vector<std::uint8_t> codes(static_cast<std::size_t>(lowbit::code_bytes(fc.fmt, n)));
      for (auto& c : codes) c = static_cast<std::uint8_t>(rng());
      std::vector<std::uint8_t> ncodes(static_cast<std::size_t>(nb));
      for (auto& c : ncodes) c = static_cast<std::uint8_t>(rng());
      std::vector<float> nscales(static_cast<std::size_t>(nnb));
      for (auto& s : nscales) s = random_absmax(rng);
      const float offset = std::ldexp(float_of(0x3F800000u | (rng() & 0x7FFFFFu)), static_cast<int>(rng() % 12) - 8);
      lowbit::quant_view q;
      q.fmt = fc.fmt;
      q.numel = n;
      q.block_size = bs;
      q.codes = codes.data();
      q.nested_codes = ncodes.data();
      q.nested_scales = nscales.data();
      q.nested_offset = offset;
      std::vector<float> scale(static_cast<std::size_t>(nb));
      for (std::int64_t b = 0; b < nb; ++b)
        scale[static_cast<std::size_t>(b)] =
            ref_nested_scale(code2[ncodes[static_cast<std::size_t>(b)]], nscales[static_cast<std::size_t>(b / 256)], offset);
      for (const DtypeCase& dc : kDtypes) {
        std::vector<std::uint32_t> want(static_cast<std::size_t>(n));
        for (std::int64_t k = 0; k < n; ++k)
          want[static_cast<std::size_t>(k)] =
              oracle_bits(table[code_at(codes, fc.bits, k)] * scale[static_cast<std::size_t>(k / bs)], dc.dt);
        for (bool simd : {true, false}) {
          const std::vector<std::uint32_t> got = lowbit_dequant_bits(q, dc.dt, simd);
          expect_same_bits(ctx_of("nested dequantize", fc.name, dc.name, bs, n, simd), want, got, hex_digits(dc.dt),
                           [&](std::size_t i) {
                             const std::size_t b = i / static_cast<std::size_t>(bs);
                             return "code " + std::to_string(code_at(codes, fc.bits, static_cast<std::int64_t>(i))) +
                                    ", nested code " + std::to_string(ncodes[b]) + ", absmax2 " + hex(bits_of(nscales[b / 256])) +
                                    ", offset " + hex(bits_of(offset)) + ", expected scale " + hex(bits_of(scale[b]));
                           });
        }
      }
    }
  }
}

TEST(BnbCompat, DequantizeBnbBytesCodeTableOverride) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng = make_rng(3);
  // The dynamic map as the non-FMA torch builds produce it (Appendix A deviations).
  std::vector<float> non_fma = dynamic_map();
  for (const auto& e : kDynamicNonFmaEntries) non_fma[static_cast<std::size_t>(e.first)] = float_of(e.second);
  struct Override {
    const FormatCase* fc;
    const char* what;
    std::vector<float> table;
    bool nested;
    std::vector<float> nested_table;
  };
  std::vector<Override> cases;
  {
    // NF4 with every entry moved by a few ulps and two entries replaced by arbitrary values.
    std::vector<float> t = spec_table(format::nf4);
    for (auto& v : t) v = std::nextafter(v, (rng() & 1) ? 2.0f : -2.0f);
    t[3] = -0.4375f;
    t[12] = 3.0e-3f;
    cases.push_back({&kBnbFormats[0], "perturbed nf4 table", t, false, {}});
  }
  {
    // FP4 as get_4bit_type("fp4") builds it (QuantState.code): code 8 is +0.0 (§1.2).
    std::vector<float> t = spec_table(format::bnb_fp4);
    t[8] = 0.0f;
    cases.push_back({&kBnbFormats[1], "get_4bit_type fp4 table (code 8 = +0.0)", t, true, non_fma});
  }
  {
    std::vector<float> t(16);
    for (auto& v : t) v = std::ldexp(static_cast<float>(static_cast<std::int32_t>(rng() % 2001) - 1000), -10);
    cases.push_back({&kBnbFormats[1], "random 16-entry table", t, false, {}});
  }
  cases.push_back({&kBnbFormats[2], "non-FMA dynamic map", non_fma, false, {}});
  cases.push_back({&kBnbFormats[2], "non-FMA dynamic map, nested too", non_fma, true, non_fma});
  cases.push_back({&kBnbFormats[0], "nf4 with non-FMA nested map", spec_table(format::nf4), true, non_fma});

  const std::int64_t bs = 64, n = 64 * 520 + 11;  // 521 blocks: 3 nested blocks
  const std::int64_t nb = lowbit::quant::block_count(n, bs);
  for (const Override& oc : cases) {
    const FormatCase& fc = *oc.fc;
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(lowbit::code_bytes(fc.fmt, n)));
    for (auto& c : codes) c = static_cast<std::uint8_t>(rng());
    std::vector<float> absmax(static_cast<std::size_t>(nb));
    for (auto& a : absmax) a = random_absmax(rng);
    std::vector<std::uint8_t> ncodes(static_cast<std::size_t>(nb));
    for (auto& c : ncodes) c = static_cast<std::uint8_t>(rng());
    std::vector<float> nscales(static_cast<std::size_t>(lowbit::quant::block_count(nb, 256)));
    for (auto& s : nscales) s = random_absmax(rng);
    const float offset = 0.03125f + std::ldexp(static_cast<float>(rng() & 0xFFFF), -22);
    lowbit::quant_view q;
    q.fmt = fc.fmt;
    q.numel = n;
    q.block_size = bs;
    q.codes = codes.data();
    q.code_table = oc.table.data();
    std::vector<float> scale = absmax;
    if (oc.nested) {
      q.nested_codes = ncodes.data();
      q.nested_scales = nscales.data();
      q.nested_offset = offset;
      q.nested_code_table = oc.nested_table.data();
      for (std::int64_t b = 0; b < nb; ++b)
        scale[static_cast<std::size_t>(b)] = ref_nested_scale(oc.nested_table[ncodes[static_cast<std::size_t>(b)]],
                                                              nscales[static_cast<std::size_t>(b / 256)], offset);
    } else {
      q.scales = absmax.data();
    }
    for (const DtypeCase& dc : kDtypes) {
      std::vector<std::uint32_t> want(static_cast<std::size_t>(n));
      for (std::int64_t k = 0; k < n; ++k)
        want[static_cast<std::size_t>(k)] =
            oracle_bits(oc.table[code_at(codes, fc.bits, k)] * scale[static_cast<std::size_t>(k / bs)], dc.dt);
      for (bool simd : {true, false}) {
        const std::vector<std::uint32_t> got = lowbit_dequant_bits(q, dc.dt, simd);
        expect_same_bits(ctx_of((std::string("code_table override (") + oc.what + ")").c_str(), fc.name, dc.name, bs, n, simd),
                         want, got, hex_digits(dc.dt), [&](std::size_t i) {
                           const unsigned c = code_at(codes, fc.bits, static_cast<std::int64_t>(i));
                           return "code " + std::to_string(c) + ", table value " + hex(bits_of(oc.table[c])) + ", scale " +
                                  hex(bits_of(scale[i / static_cast<std::size_t>(bs)]));
                         });
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Quantization: bitsandbytes' CUDA bytes (Appendix B.1/B.3) on B.6 inputs.

/// Position of a float on the integer line of float32 values (adjacent floats differ by 1).
std::int64_t ordinal(float x) {
  const std::uint32_t b = bits_of(x);
  return (b & 0x80000000u) ? -static_cast<std::int64_t>(b & 0x7FFFFFFFu) : static_cast<std::int64_t>(b);
}
float from_ordinal(std::int64_t o) {
  return o < 0 ? float_of(0x80000000u | static_cast<std::uint32_t>(-o)) : float_of(static_cast<std::uint32_t>(o));
}
std::int64_t ulp_distance(float a, float b) {
  const std::int64_t d = ordinal(a) - ordinal(b);
  return d < 0 ? -d : d;
}

constexpr std::int64_t kMarginUlps = 16;

/// B.1 NF4: number of CUDA thresholds strictly below y.
unsigned ref_nf4_code(float y) {
  unsigned q = 0;
  for (std::uint32_t t : kNf4ThresholdBits) q += y > float_of(t) ? 1u : 0u;
  return q;
}
/// B.1 FP4: sign from y < 0, magnitude rank among the CUDA thresholds.
unsigned ref_fp4_code(float y) {
  const unsigned s = y < 0.0f ? 8u : 0u;
  const float a = std::fabs(y);
  unsigned j = 0;
  for (std::uint32_t t : kFp4ThresholdBits) j += a > float_of(t) ? 1u : 0u;
  return s + kFp4RankToCode[j];
}
/// B.3 dQuantize<0> where no tie is possible: the nearest entry of the map (linear scan, exact
/// distances in double).
unsigned ref_dynamic8_code(float y, const std::vector<float>& map) {
  unsigned best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (unsigned i = 0; i < 256; ++i) {
    const double d = std::fabs(static_cast<double>(y) - static_cast<double>(map[i]));
    if (d < best_d) {
      best_d = d;
      best = i;
    }
  }
  return best;
}
unsigned ref_code(format f, float y) {
  if (f == format::nf4) return ref_nf4_code(y);
  if (f == format::bnb_fp4) return ref_fp4_code(y);
  return ref_dynamic8_code(y, dynamic_map());
}

/// Exact midpoints (in double) between neighbouring entries of the dynamic map.
const std::vector<double>& dynamic_midpoints() {
  static const std::vector<double> mids = [] {
    std::vector<double> m;
    const std::vector<float>& map = dynamic_map();
    for (int i = 0; i < 255; ++i) m.push_back((static_cast<double>(map[i]) + static_cast<double>(map[i + 1])) / 2.0);
    return m;
  }();
  return mids;
}

/// B.6 constraints on a normalized value y = x / absmax.
bool acceptable(format f, float y) {
  if (!(std::fabs(y) <= 1.0f)) return false;
  if (f == format::nf4) {
    for (std::uint32_t t : kNf4ThresholdBits)
      if (ulp_distance(y, float_of(t)) < kMarginUlps) return false;
    return true;
  }
  if (f == format::bnb_fp4) {
    const float a = std::fabs(y);
    if (a > 0.0f && a < 0.0027f) return false;
    for (std::uint32_t t : kFp4ThresholdBits)
      if (ulp_distance(a, float_of(t)) < kMarginUlps) return false;
    return true;
  }
  for (double m : dynamic_midpoints()) {
    const float mf = std::fabs(static_cast<float>(m));
    const double ulp = static_cast<double>(std::nextafter(mf, 2.0f)) - static_cast<double>(mf);
    if (std::fabs(static_cast<double>(y) - m) < static_cast<double>(kMarginUlps) * ulp) return false;
  }
  return true;
}

/// A normalized value satisfying B.6 for format f: uniform, log-uniform small, near a code value,
/// near (but >= 16 ulps from) a decision point, or a signed zero.
float draw_normalized(format f, std::mt19937& rng) {
  const std::vector<float>& map = dynamic_map();
  for (;;) {
    float y = 0.0f;
    const unsigned kind = rng() % 20;
    if (kind == 0) {
      y = (rng() & 1) ? -0.0f : 0.0f;
    } else if (kind < 8) {
      y = std::ldexp(static_cast<float>(static_cast<std::int32_t>(rng() >> 7) - (1 << 24)), -24);
    } else if (kind < 11) {
      const double mag = std::exp2(-24.0 * std::ldexp(static_cast<double>(rng()), -32));
      y = static_cast<float>((rng() & 1) ? -mag : mag);
    } else if (kind < 14) {
      float v;
      if (f == format::nf4) v = float_of(kNf4ValueBits[rng() % 16]);
      else if (f == format::bnb_fp4) v = float_of(kFp4ValueBits[rng() % 16]);
      else v = map[rng() % 256];
      y = from_ordinal(ordinal(v) + static_cast<std::int64_t>(rng() % 2001) - 1000);
    } else {
      float t;
      if (f == format::nf4) {
        t = float_of(kNf4ThresholdBits[rng() % 15]);
      } else if (f == format::bnb_fp4) {
        t = float_of(kFp4ThresholdBits[rng() % 7]);
        if (rng() & 1) t = -t;
      } else {
        t = static_cast<float>(dynamic_midpoints()[rng() % 255]);
      }
      const std::int64_t d = kMarginUlps + static_cast<std::int64_t>(rng() % 200);
      y = from_ordinal(ordinal(t) + ((rng() & 1) ? d : -d));
    }
    if (acceptable(f, y)) return y;
  }
}

/// B.6 input: every block holds one element ±2^e (its absmax, so the reciprocal is exact); the
/// others are y * 2^e with y from draw_normalized (exact, no subnormals).
std::vector<float> make_b6_input(format f, std::int64_t n, std::int64_t bs, std::mt19937& rng) {
  std::vector<float> x(static_cast<std::size_t>(n));
  for (std::int64_t b0 = 0; b0 < n; b0 += bs) {
    const std::int64_t len = std::min(bs, n - b0);
    const int e = static_cast<int>(rng() % 41) - 20;
    const std::int64_t pos = b0 + static_cast<std::int64_t>(rng() % static_cast<std::uint32_t>(len));
    for (std::int64_t k = b0; k < b0 + len; ++k)
      x[static_cast<std::size_t>(k)] = k == pos ? std::ldexp((rng() & 1) ? -1.0f : 1.0f, e) : std::ldexp(draw_normalized(f, rng), e);
  }
  return x;
}

/// Appendix B.1 / B.3: the bytes and absmax bitsandbytes' CUDA kernels write for float32 input x.
void cuda_reference(format f, const std::vector<float>& x, std::int64_t bs, std::vector<std::uint8_t>& codes,
                    std::vector<float>& absmax, std::vector<float>& normalized) {
  const auto n = static_cast<std::int64_t>(x.size());
  const bool four = f != format::bnb_dynamic8;
  const std::int64_t nb = (n + bs - 1) / bs;
  absmax.assign(static_cast<std::size_t>(nb), 0.0f);
  normalized.assign(x.size(), 0.0f);
  std::vector<unsigned> q(static_cast<std::size_t>(n + 1), 0);
  float last_r = 0.0f;
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::int64_t e0 = b * bs, e1 = std::min(n, e0 + bs);
    float m = 0.0f;
    for (std::int64_t k = e0; k < e1; ++k) m = std::max(m, std::fabs(x[static_cast<std::size_t>(k)]));
    absmax[static_cast<std::size_t>(b)] = m;
    const float r = 1.0f / m;  // exact: m is a power of two
    last_r = r;
    for (std::int64_t k = e0; k < e1; ++k) {
      const float y = x[static_cast<std::size_t>(k)] * r;
      normalized[static_cast<std::size_t>(k)] = y;
      q[static_cast<std::size_t>(k)] = ref_code(f, y);
    }
  }
  if (four) {
    if (n & 1) q[static_cast<std::size_t>(n)] = ref_code(f, 0.0f * last_r);  // odd n: pad with the code of 0
    codes.assign(static_cast<std::size_t>((n + 1) / 2), 0);
    for (std::int64_t j = 0; j < (n + 1) / 2; ++j)
      codes[static_cast<std::size_t>(j)] =
          static_cast<std::uint8_t>((q[static_cast<std::size_t>(2 * j)] << 4) | q[static_cast<std::size_t>(2 * j + 1)]);
  } else {
    codes.assign(static_cast<std::size_t>(n), 0);
    for (std::int64_t k = 0; k < n; ++k) codes[static_cast<std::size_t>(k)] = static_cast<std::uint8_t>(q[static_cast<std::size_t>(k)]);
  }
}

TEST(BnbCompat, QuantizeMatchesCudaBytes) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng = make_rng(4);
  for (const FormatCase& fc : kBnbFormats) {
    std::vector<std::int64_t> block_sizes = {64, 128, 256, 1024, 4096};
    if (fc.bits == 4) block_sizes.insert(block_sizes.begin(), 32);
    for (std::int64_t bs : block_sizes) {
      std::vector<std::int64_t> sizes = {1, 3, bs - 1, 4 * bs, 2 * bs + 1, 7 * bs + bs / 2 + 3};
      if (bs == 64) sizes.push_back(64 * 1100 + 13);  // several parallel chunks
      for (std::int64_t n : sizes) {
        const std::vector<float> x = make_b6_input(fc.fmt, n, bs, rng);
        std::vector<std::uint8_t> want_codes;
        std::vector<float> want_absmax, y;
        cuda_reference(fc.fmt, x, bs, want_codes, want_absmax, y);
        for (bool simd : {true, false}) {
          const std::string ctx = ctx_of("quantize", fc.name, "float32", bs, n, simd);
          std::vector<std::uint8_t> codes(want_codes.size(), 0xA5);
          std::vector<float> absmax(want_absmax.size(), -1.0f);
          lowbit::quant_view q;
          q.fmt = fc.fmt;
          q.numel = n;
          q.block_size = bs;
          q.codes = codes.data();
          q.scales = absmax.data();
          lowbit::host::options opt;
          opt.simd = simd;
          const lowbit::status s = lowbit::host::quantize(x.data(), dtype::f32, q, opt);
          ASSERT_TRUE(s.ok()) << ctx << ": " << s.message();
          std::size_t bad = 0;
          for (std::size_t b = 0; b < absmax.size(); ++b) {
            if (bits_of(absmax[b]) == bits_of(want_absmax[b])) continue;
            if (++bad <= 8)
              ADD_FAILURE() << ctx << ", block " << b << ": absmax expected " << hex(bits_of(want_absmax[b])) << ", got "
                            << hex(bits_of(absmax[b]));
          }
          for (std::size_t j = 0; j < codes.size(); ++j) {
            if (codes[j] == want_codes[j]) continue;
            if (++bad <= 8) {
              std::ostringstream os;
              os << ctx << ", " << (fc.bits == 4 ? "byte " : "element ") << j << ": expected " << hex(want_codes[j], 2)
                 << ", got " << hex(codes[j], 2) << "; element(s)";
              const std::size_t k0 = fc.bits == 4 ? 2 * j : j;
              for (std::size_t k = k0; k < k0 + (fc.bits == 4 ? 2u : 1u) && k < x.size(); ++k)
                os << " [" << k << "] x=" << hex(bits_of(x[k])) << " x/absmax=" << hex(bits_of(y[k])) << " (" << y[k] << ")";
              ADD_FAILURE() << os.str();
            }
          }
          EXPECT_EQ(bad, 0u) << ctx << ": " << bad << " mismatches";
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Error bounds of bitsandbytes' tests (§9).

/// An input tensor in one dtype: the raw buffer lowbit reads and its values as float32 (A1).
struct TypedInput {
  dtype dt;
  std::vector<float> a1;
  std::vector<lowbit::f16> h;
  std::vector<lowbit::bf16> b;
  const void* data() const {
    return dt == dtype::f32 ? static_cast<const void*>(a1.data())
                            : (dt == dtype::f16 ? static_cast<const void*>(h.data()) : static_cast<const void*>(b.data()));
  }
};

/// Converts float32 values to dt with NVIDIA's round-to-nearest conversions.
TypedInput make_typed(const std::vector<float>& src, dtype dt) {
  TypedInput t;
  t.dt = dt;
  t.a1.resize(src.size());
  if (dt == dtype::f16) t.h.resize(src.size());
  if (dt == dtype::bf16) t.b.resize(src.size());
  for (std::size_t i = 0; i < src.size(); ++i) {
    if (dt == dtype::f32) {
      t.a1[i] = src[i];
    } else if (dt == dtype::f16) {
      t.h[i].bits = nv_f16_bits(src[i]);
      t.a1[i] = nv_f16_to_float(t.h[i].bits);
    } else {
      t.b[i].bits = nv_bf16_bits(src[i]);
      t.a1[i] = nv_bf16_to_float(t.b[i].bits);
    }
  }
  return t;
}

constexpr std::int64_t kRows = 1024, kCols = 1024;

std::vector<float> randn_matrix(std::uint32_t salt) {
  std::mt19937 rng = make_rng(salt);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(kRows * kCols));
  for (auto& x : v) x = nd(rng);
  return v;
}

struct ErrStats {
  double abs = 0, rel = 0;
};

/// Quantizes `in` with lowbit::quantize, dequantizes to the same dtype and returns bitsandbytes'
/// statistics: mean |A1 - A2| and mean |A1 - A2| / (|A1| + eps), in double.
ErrStats roundtrip_error(const TypedInput& in, format f, std::int64_t bs, bool double_quant, double eps,
                         const std::string& ctx) {
  lowbit::quantize_params p;
  p.fmt = f;
  p.gran = lowbit::granularity::per_block(bs);
  p.double_quant = double_quant;
  lowbit::quant_tensor q;
  lowbit::status s = lowbit::quantize(in.data(), in.dt, {kRows, kCols}, p, q);
  EXPECT_TRUE(s.ok()) << ctx << ": quantize: " << s.message();
  const std::size_t n = in.a1.size();
  std::vector<float> a2(n);
  if (in.dt == dtype::f32) {
    s = lowbit::dequantize(q, a2.data(), dtype::f32);
  } else if (in.dt == dtype::f16) {
    std::vector<lowbit::f16> o(n);
    s = lowbit::dequantize(q, o.data(), dtype::f16);
    for (std::size_t i = 0; i < n; ++i) a2[i] = nv_f16_to_float(o[i].bits);
  } else {
    std::vector<lowbit::bf16> o(n);
    s = lowbit::dequantize(q, o.data(), dtype::bf16);
    for (std::size_t i = 0; i < n; ++i) a2[i] = nv_bf16_to_float(o[i].bits);
  }
  EXPECT_TRUE(s.ok()) << ctx << ": dequantize: " << s.message();
  ErrStats e;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = std::fabs(static_cast<double>(in.a1[i]) - static_cast<double>(a2[i]));
    e.abs += d;
    e.rel += d / (std::fabs(static_cast<double>(in.a1[i])) + eps);
  }
  e.abs /= static_cast<double>(n);
  e.rel /= static_cast<double>(n);
  std::printf("[ bnb err  ] %-60s mean-abs %.6f  rel %.6f\n", ctx.c_str(), e.abs, e.rel);
  return e;
}

std::string err_ctx(const char* data, const char* fmt, const char* dt, std::int64_t bs, bool nested) {
  std::ostringstream os;
  os << data << " " << fmt << " " << dt << " bs " << bs << (nested ? " nested" : "");
  return os.str();
}

TEST(BnbCompat, ErrorBounds4bit) {
  LOWBIT_SEED_TRACE();
  // test_4bit_quant limits (mean + 7 sigma): {block size, abs limit, rel limit}.
  struct Limit {
    std::int64_t bs;
    double abs, rel;
  };
  constexpr Limit kNf4[8] = {{32, 0.068229, 0.191854},   {64, 0.073316, 0.205719},   {128, 0.077468, 0.217974},
                             {256, 0.081051, 0.228891},  {512, 0.084548, 0.239887},  {1024, 0.087919, 0.249570},
                             {2048, 0.091349, 0.259392}, {4096, 0.095067, 0.269466}};
  constexpr Limit kFp4[8] = {{32, 0.089562, 0.244753},   {64, 0.097320, 0.262778},   {128, 0.103907, 0.278848},
                             {256, 0.109958, 0.293310},  {512, 0.115753, 0.306962},  {1024, 0.121573, 0.320299},
                             {2048, 0.127741, 0.333292}, {4096, 0.133820, 0.345842}};
  const std::vector<float> src = randn_matrix(5);
  for (const DtypeCase& dc : kDtypes) {
    const TypedInput in = make_typed(src, dc.dt);
    for (int which = 0; which < 2; ++which) {
      const FormatCase& fc = kBnbFormats[which];
      for (const Limit& lim : which == 0 ? kNf4 : kFp4) {
        const std::string ctx = err_ctx("randn(1024,1024)", fc.name, dc.name, lim.bs, false);
        const ErrStats e = roundtrip_error(in, fc.fmt, lim.bs, false, 1e-8, ctx);
        EXPECT_LT(e.abs, lim.abs) << ctx;
        EXPECT_LT(e.rel, lim.rel) << ctx;
      }
    }
  }
}

TEST(BnbCompat, ErrorBoundsCompressedStats) {
  LOWBIT_SEED_TRACE();
  // test_4bit_compressed_stats: plain and double-quantized, mean-abs < 0.11, rel (eps 1e-15) < 0.28.
  const std::vector<float> src = randn_matrix(6);
  for (const DtypeCase& dc : {kDtypes[0], kDtypes[1]}) {
    const TypedInput in = make_typed(src, dc.dt);
    for (int which = 0; which < 2; ++which) {
      const FormatCase& fc = kBnbFormats[which];
      for (std::int64_t bs : {32, 64, 128}) {
        for (bool nested : {false, true}) {
          const std::string ctx = err_ctx("randn(1024,1024)", fc.name, dc.name, bs, nested);
          const ErrStats e = roundtrip_error(in, fc.fmt, bs, nested, 1e-15, ctx);
          EXPECT_LT(e.abs, 0.11) << ctx;
          EXPECT_LT(e.rel, 0.28) << ctx;
        }
      }
    }
  }
}

TEST(BnbCompat, ErrorBounds8bit) {
  LOWBIT_SEED_TRACE();
  // test_dynamic_blockwise_quantization: randn mean-abs < 0.011, rel (eps 1e-8) < 0.018; uniform
  // rand in [0, 1) with the signed map: mean-abs < 0.0036, rel < 0.015 (block sizes 64 and 4096).
  const std::vector<float> normal = randn_matrix(7);
  std::vector<float> uniform(normal.size());
  {
    std::mt19937 rng = make_rng(8);
    std::uniform_real_distribution<float> ud(0.0f, 1.0f);
    for (auto& x : uniform) x = ud(rng);
  }
  for (const DtypeCase& dc : kDtypes) {
    const TypedInput in_n = make_typed(normal, dc.dt);
    const TypedInput in_u = make_typed(uniform, dc.dt);
    for (std::int64_t bs : {64, 128, 256, 512, 1024, 2048, 4096}) {
      for (bool nested : {false, true}) {
        std::string ctx = err_ctx("randn(1024,1024)", "bnb_dynamic8", dc.name, bs, nested);
        ErrStats e = roundtrip_error(in_n, format::bnb_dynamic8, bs, nested, 1e-8, ctx);
        EXPECT_LT(e.abs, 0.011) << ctx;
        EXPECT_LT(e.rel, 0.018) << ctx;
        if (bs != 64 && bs != 4096) continue;  // uniform: the smallest and largest block (run time)
        ctx = err_ctx("rand(1024,1024)", "bnb_dynamic8", dc.name, bs, nested);
        e = roundtrip_error(in_u, format::bnb_dynamic8, bs, nested, 1e-8, ctx);
        EXPECT_LT(e.abs, 0.0036) << ctx;
        EXPECT_LT(e.rel, 0.015) << ctx;
      }
    }
  }
}

TEST(BnbCompat, DoubleQuantNf4Block64) {
  LOWBIT_SEED_TRACE();
  const std::vector<float> src = randn_matrix(9);
  const std::int64_t n = kRows * kCols, bs = 64, nb = n / bs, nnb = (nb + 255) / 256;
  lowbit::quantize_params p;
  p.fmt = format::nf4;
  p.gran = lowbit::granularity::per_block(bs);
  lowbit::quant_tensor plain, nested;
  ASSERT_TRUE(lowbit::quantize(src.data(), dtype::f32, {kRows, kCols}, p, plain).ok());
  p.double_quant = true;
  ASSERT_TRUE(lowbit::quantize(src.data(), dtype::f32, {kRows, kCols}, p, nested).ok());

  // Layout (§4.1): packed codes as without double quantization, one uint8 nested code per block,
  // ceil(nblocks / 256) float32 nested scales, a float32 offset, no float32 absmax.
  ASSERT_TRUE(nested.double_quantized());
  EXPECT_EQ(nested.blocks(), nb);
  EXPECT_EQ(nested.scales(), nullptr);
  ASSERT_NE(nested.nested_codes(), nullptr);
  ASSERT_NE(nested.nested_scales(), nullptr);
  EXPECT_EQ(nested.view().nested_blocks(), nnb);
  EXPECT_EQ(nested.nbytes(), n / 2 + nb + nnb * 4 + 4);
  EXPECT_EQ(std::memcmp(nested.codes(), plain.codes(), static_cast<std::size_t>(n / 2)), 0)
      << "double quantization changed the 4-bit codes";

  // offset = float32 mean of the un-nested absmax, summed in double in block order.
  const float* absmax = plain.scales();
  double sum = 0.0;
  for (std::int64_t b = 0; b < nb; ++b) sum += static_cast<double>(absmax[b]);
  const float offset = static_cast<float>(sum / static_cast<double>(nb));
  EXPECT_EQ(hex(bits_of(nested.nested_offset())), hex(bits_of(offset))) << "nested offset";

  // Nested scales: max |f32(absmax - offset)| over each group of 256 blocks (exact); nested codes:
  // the nearest dynamic-map entry of f32(d * f32(1 / absmax2)), checked where no midpoint is within
  // one ulp (the 8-bit rounding itself is covered by QuantizeMatchesCudaBytes).
  const std::vector<float>& map = dynamic_map();
  std::size_t bad = 0, checked = 0;
  for (std::int64_t j = 0; j < nnb; ++j) {
    float m = 0.0f;
    for (std::int64_t b = j * 256; b < std::min(nb, (j + 1) * 256); ++b) m = std::max(m, std::fabs(absmax[b] - offset));
    EXPECT_EQ(hex(bits_of(nested.nested_scales()[j])), hex(bits_of(m))) << "nf4 float32 block size 64: nested scale " << j;
    const float r = 1.0f / m;
    for (std::int64_t b = j * 256; b < std::min(nb, (j + 1) * 256); ++b) {
      const float y = (absmax[b] - offset) * r;
      bool near_mid = false;
      for (double mid : dynamic_midpoints()) near_mid = near_mid || ulp_distance(y, static_cast<float>(mid)) <= 1;
      if (near_mid) continue;
      ++checked;
      const unsigned want = ref_dynamic8_code(y, map);
      if (nested.nested_codes()[b] != want && ++bad <= 8)
        ADD_FAILURE() << "nf4 float32 block size 64, nested (bnb_dynamic8, block size 256) code of block " << b << " (absmax " << hex(bits_of(absmax[b])) << ", y " << y << "): expected "
                      << want << ", got " << unsigned{nested.nested_codes()[b]};
    }
  }
  EXPECT_EQ(bad, 0u);
  EXPECT_GT(checked, static_cast<std::size_t>(nb * 9 / 10));

  // Dequantization: bit-exact with §4.1 on lowbit's own bytes, and mean |error| < 0.11.
  std::vector<float> out(static_cast<std::size_t>(n));
  ASSERT_TRUE(lowbit::dequantize(nested, out.data(), dtype::f32).ok());
  double err = 0.0;
  std::size_t wrong = 0;
  for (std::int64_t k = 0; k < n; ++k) {
    const std::int64_t b = k / bs;
    const float scale = ref_nested_scale(map[nested.nested_codes()[b]], nested.nested_scales()[b / 256], nested.nested_offset());
    const std::uint8_t byte = nested.codes()[k / 2];
    const float want = float_of(kNf4ValueBits[(k & 1) ? (byte & 15) : (byte >> 4)]) * scale;
    if (bits_of(want) != bits_of(out[static_cast<std::size_t>(k)]) && ++wrong <= 8)
      ADD_FAILURE() << "nested dequantize, format nf4, dtype float32, block size 64, index " << k << ": expected " << hex(bits_of(want)) << ", got "
                    << hex(bits_of(out[static_cast<std::size_t>(k)]));
    err += std::fabs(static_cast<double>(src[static_cast<std::size_t>(k)]) - static_cast<double>(out[static_cast<std::size_t>(k)]));
  }
  EXPECT_EQ(wrong, 0u);
  err /= static_cast<double>(n);
  std::printf("[ bnb err  ] %-60s mean-abs %.6f\n", "randn(1024,1024) nf4 float32 bs 64 nested (DoubleQuantNf4Block64)", err);
  EXPECT_LT(err, 0.11);
}

// ---------------------------------------------------------------------------------------------
// 4. bitsandbytes' own CPU library as the dequantization oracle (§8).

struct raw16 {  // bitsandbytes' bf16_t / fp16_t: struct { uint16_t v; }
  std::uint16_t v;
};
static_assert(sizeof(raw16) == 2, "raw16");

template <class T>
using Deq4Fn = void (*)(std::uint8_t*, const float*, T*, long long, long long, long long);
template <class T>
using Deq8Fn = void (*)(float*, std::uint8_t*, const float*, T*, long long, long long);
using BoolFn = bool (*)();

template <class Fn>
Fn lookup(void* lib, const std::string& name) {
  void* p = dlsym(lib, name.c_str());
  Fn f = nullptr;
  if (p != nullptr) std::memcpy(&f, &p, sizeof f);
  return f;
}

const char* dtype_suffix(dtype dt) { return dt == dtype::f32 ? "fp32" : (dt == dtype::f16 ? "fp16" : "bf16"); }

/// Calls the library's dequantizer for (format, dtype) and returns raw output bits; false if the
/// symbol is missing.
bool native_dequant(void* lib, const FormatCase& fc, dtype dt, std::vector<std::uint8_t>& codes, const std::vector<float>& absmax,
                    std::vector<float>& code_map, std::int64_t bs, std::int64_t n, std::vector<std::uint32_t>& out_bits,
                    std::string& missing) {
  const std::string name = fc.bits == 8 ? std::string("cdequantize_blockwise_cpu_") + dtype_suffix(dt)
                                        : std::string("cdequantize_blockwise_cpu_") + (fc.fmt == format::nf4 ? "nf4_" : "fp4_") +
                                              dtype_suffix(dt);
  const auto un = static_cast<std::size_t>(n);
  out_bits.assign(un, 0);
  if (dt == dtype::f32) {
    std::vector<float> out(un, float_of(0x7FC0BEEFu));
    if (fc.bits == 8) {
      auto f = lookup<Deq8Fn<float>>(lib, name);
      if (f == nullptr) {
        missing = name;
        return false;
      }
      f(code_map.data(), codes.data(), absmax.data(), out.data(), bs, n);
    } else {
      auto f = lookup<Deq4Fn<float>>(lib, name);
      if (f == nullptr) {
        missing = name;
        return false;
      }
      f(codes.data(), absmax.data(), out.data(), bs, 1, n);  // m = 1, n = numel (§3, §8)
    }
    for (std::size_t i = 0; i < un; ++i) out_bits[i] = bits_of(out[i]);
  } else {
    std::vector<raw16> out(un, raw16{0x7E5Du});
    if (fc.bits == 8) {
      auto f = lookup<Deq8Fn<raw16>>(lib, name);
      if (f == nullptr) {
        missing = name;
        return false;
      }
      f(code_map.data(), codes.data(), absmax.data(), out.data(), bs, n);
    } else {
      auto f = lookup<Deq4Fn<raw16>>(lib, name);
      if (f == nullptr) {
        missing = name;
        return false;
      }
      f(codes.data(), absmax.data(), out.data(), bs, 1, n);  // m = 1, n = numel (§3, §8)
    }
    for (std::size_t i = 0; i < un; ++i) out_bits[i] = out[i].v;
  }
  return true;
}

// bitsandbytes' CPU int8 multiplier (quant::int8_multiplier::reciprocal_times_127), written here
// from its default backend's `torch.round(A * (127.0 / row_stats))` with torch's
// `127.0 / t == t.reciprocal() * 127.0`: q = clamp(rne(f32(x * f32(127 * f32(1 / absmax))))).
std::int8_t bnb_cpu_int8_code(float x, float absmax) {
  volatile float r = 1.0f / absmax;
  volatile float inv = r * 127.0f;
  volatile float y = x * inv;
  const float q = std::nearbyint(y);  // the default rounding mode: nearest, ties to even
  return static_cast<std::int8_t>(std::max(-127.0f, std::min(127.0f, q)));
}

std::vector<std::uint8_t> read_vector_file(const std::string& path, std::size_t bytes) {
  std::vector<std::uint8_t> v(bytes);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return {};
  const std::size_t got = std::fread(v.data(), 1, bytes, f);
  std::fclose(f);
  return got == bytes ? v : std::vector<std::uint8_t>{};
}

// Random rows (float32, float16, bfloat16 input; widths below, at and above the SIMD widths), per
// row: lowbit with the reciprocal rule equals the scalar reference above for every element.
TEST(BnbCompat, Int8ReciprocalMultiplierMatchesBnbCpuFormula) {
  LOWBIT_SEED_TRACE();
  std::mt19937 rng = make_rng(18);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::size_t differ_from_quotient = 0, total = 0;
  for (dtype dt : {dtype::f32, dtype::f16, dtype::bf16})
    for (std::int64_t cols : {1, 7, 64, 300, 4096}) {
      const std::int64_t rows = 37;
      std::vector<float> x(static_cast<std::size_t>(rows * cols));
      for (auto& v : x) v = nd(rng) * 0.05f;
      if (cols > 1) x[5] = 0.0f, x[static_cast<std::size_t>(cols)] = 0.0f;
      for (std::int64_t c = 0; c < cols; ++c) x[static_cast<std::size_t>(2 * cols + c)] = 0.0f;  // a zero row
      std::vector<std::uint16_t> half(x.size());
      for (std::size_t i = 0; i < x.size(); ++i) {  // the input in dtype dt, and x its exact value
        if (dt == dtype::f16) x[i] = __half2float(__float2half_rn(x[i]));
        if (dt == dtype::bf16) x[i] = __bfloat162float(__float2bfloat16_rn(x[i]));
        const auto h = __float2half_rn(x[i]);
        const auto b = __float2bfloat16_rn(x[i]);
        std::memcpy(&half[i], dt == dtype::f16 ? static_cast<const void*>(&h) : static_cast<const void*>(&b), 2);
      }
      lowbit::quantize_params p;
      p.fmt = format::int8_absmax;
      p.gran = lowbit::granularity::per_row();
      p.options.int8_inverse = lowbit::quant::int8_multiplier::reciprocal_times_127;
      lowbit::quant_tensor q, d;
      const void* src = dt == dtype::f32 ? static_cast<const void*>(x.data()) : static_cast<const void*>(half.data());
      ASSERT_TRUE(lowbit::quantize(src, dt, {rows, cols}, p, q).ok());
      p.options.int8_inverse = lowbit::quant::int8_multiplier::quotient;
      ASSERT_TRUE(lowbit::quantize(src, dt, {rows, cols}, p, d).ok());
      for (std::int64_t r = 0; r < rows; ++r) {
        float absmax = 0.0f;
        for (std::int64_t c = 0; c < cols; ++c) absmax = std::max(absmax, std::fabs(x[static_cast<std::size_t>(r * cols + c)]));
        ASSERT_EQ(bits_of(q.scales()[r]), bits_of(absmax)) << "row " << r;
        for (std::int64_t c = 0; c < cols; ++c) {
          const std::size_t i = static_cast<std::size_t>(r * cols + c);
          const std::int8_t want = absmax == 0.0f ? 0 : bnb_cpu_int8_code(x[i], absmax);
          ASSERT_EQ(static_cast<std::int8_t>(q.codes()[i]), want) << "dtype " << static_cast<int>(dt) << ", cols " << cols << ", row " << r << ", col " << c
                                                                << ", x " << x[i] << ", absmax " << absmax;
          differ_from_quotient += q.codes()[i] != d.codes()[i];
          ++total;
        }
      }
    }
  std::printf("[ int8     ] reciprocal vs quotient multiplier: %zu of %zu codes differ\n", differ_from_quotient, total);
}

// Real bitsandbytes 0.50.2 CPU codes (tests/data/bnb_cpu_int8, see make_vectors.py): rows built so
// that almost every code depends on the rounding of the multiplier. lowbit's reciprocal rule
// gives bitsandbytes' bytes; its default (quotient) rule differs on those codes.
TEST(BnbCompat, Int8ReciprocalMultiplierMatchesRealBnbCpuCodes) {
  constexpr std::int64_t rows = 64, cols = 64;
  const std::string dir = LOWBIT_BNB_CPU_INT8_DIR;
  const auto x = read_vector_file(dir + "/x.f16", rows * cols * 2);
  const auto codes = read_vector_file(dir + "/codes.i8", rows * cols);
  const auto scb = read_vector_file(dir + "/scb.f32", rows * 4);
  ASSERT_FALSE(x.empty() || codes.empty() || scb.empty()) << "cannot read the vectors in " << dir;
  lowbit::quantize_params p;
  p.fmt = format::int8_absmax;
  p.gran = lowbit::granularity::per_row();
  std::size_t differ[2] = {0, 0};
  for (auto rule : {lowbit::quant::int8_multiplier::reciprocal_times_127, lowbit::quant::int8_multiplier::quotient}) {
    p.options.int8_inverse = rule;
    lowbit::quant_tensor q;
    ASSERT_TRUE(lowbit::quantize(x.data(), dtype::f16, {rows, cols}, p, q).ok());
    EXPECT_EQ(std::memcmp(q.scales(), scb.data(), scb.size()), 0);
    const bool reciprocal = rule == lowbit::quant::int8_multiplier::reciprocal_times_127;
    for (std::size_t i = 0; i < codes.size(); ++i) differ[reciprocal ? 0 : 1] += q.codes()[i] != codes[i];
  }
  EXPECT_EQ(differ[0], 0u) << "reciprocal_times_127 differs from bitsandbytes' CPU codes";
  EXPECT_GT(differ[1], codes.size() / 2) << "the vectors no longer tell the two rules apart";
}

// The inputs of tests/data/torch_cpu_mean/make_vectors.py (its comment defines them).
std::vector<float> torch_mean_inputs(std::int64_t n, std::uint64_t seed, float scale) {
  std::vector<float> x(static_cast<std::size_t>(n));
  std::uint64_t st = seed;
  for (auto& v : x) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(static_cast<double>(st >> 40) / 16777216.0) * scale;
  }
  return x;
}

// bitsandbytes' CPU nested offset is torch.mean of the float32 absmax: quant::torch_cpu_mean
// equals the means real torch 2.9.1 gave (tests/data/torch_cpu_mean/means.txt) for 1 to 262144
// values and 1, 2, 3 and 12 threads; and quantize with options::nested_offset = torch_cpu_mean
// stores that offset for a tensor whose block absmax are those values.
TEST(BnbCompat, TorchCpuMeanMatchesRealTorch) {
  FILE* f = std::fopen(LOWBIT_TORCH_CPU_MEAN_FILE, "r");
  ASSERT_NE(f, nullptr) << LOWBIT_TORCH_CPU_MEAN_FILE;
  long long n = 0;
  unsigned long long seed = 0;
  double scale = 0;
  int threads = 0;
  unsigned bits = 0;
  int cases = 0, thread_dependent = 0, differ_from_exact = 0;
  while (std::fscanf(f, "%lld %llu %lf %d %x", &n, &seed, &scale, &threads, &bits) == 5) {
    const auto x = torch_mean_inputs(n, seed, static_cast<float>(scale));
    const float got = lowbit::quant::torch_cpu_mean(x.data(), n, threads);
    EXPECT_EQ(bits_of(got), bits) << "n " << n << ", threads " << threads;
    thread_dependent += bits_of(lowbit::quant::torch_cpu_mean(x.data(), n, 1)) != bits;
    if (threads == 1 && n >= 100) {  // the engine, on blocks of 64 whose absmax are x
      std::vector<float> w(static_cast<std::size_t>(n * 64));
      for (std::int64_t b = 0; b < n; ++b)
        for (std::int64_t k = 0; k < 64; ++k) w[static_cast<std::size_t>(b * 64 + k)] = (k == b % 64 ? 1.0f : 0.5f) * x[static_cast<std::size_t>(b)] * (k % 2 ? -1.0f : 1.0f);
      lowbit::quantize_params p;
      p.fmt = format::nf4;
      p.double_quant = true;
      lowbit::quant_tensor q, exact;
      ASSERT_TRUE(lowbit::quantize(w.data(), dtype::f32, {n * 64}, p, exact).ok());
      p.options.nested_offset = lowbit::quant::offset_rule::torch_cpu_mean;
      ASSERT_TRUE(lowbit::quantize(w.data(), dtype::f32, {n * 64}, p, q).ok());
      EXPECT_EQ(bits_of(q.nested_offset()), bits) << "n " << n;
      differ_from_exact += bits_of(exact.nested_offset()) != bits;
    }
    ++cases;
  }
  std::fclose(f);
  EXPECT_EQ(cases, 36);
  EXPECT_GT(thread_dependent, 0) << "the vectors no longer show torch's thread dependence";
  std::printf("[ offset   ] %d cases; torch's mean depends on the thread count in %d; lowbit's exact mean differs in %d of the engine cases\n", cases,
              thread_dependent, differ_from_exact);
  lowbit::quantize_params p;
  p.fmt = format::nf4;
  p.double_quant = true;
  p.options.nested_offset = lowbit::quant::offset_rule::torch_cpu_mean;
  p.options.torch_threads = 0;
  std::vector<float> w(64, 1.0f);
  lowbit::quant_tensor q;
  const lowbit::status s = lowbit::quantize(w.data(), dtype::f32, {64}, p, q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::strstr(s.message(), "torch_threads"), nullptr) << s.message();
}

// bitsandbytes 0.50.2's CPU 4-bit codes and absmax (tests/data/bnb_cpu_4bit, see make_vectors.py:
// midpoints and CUDA thresholds as x / absmax, tiny and signed-zero values, a zero block, a
// subnormal absmax, a partial last block, an odd length): quant::bnb4_rule::cpu_midpoints gives
// them byte for byte; the default CUDA rule differs on some of those codes.
TEST(BnbCompat, Bnb4CpuMidpointRuleMatchesRealBnbCpuCodes) {
  constexpr std::int64_t n = 64 * 40 + 37, blocks = 41;
  const std::string dir = LOWBIT_BNB_CPU_4BIT_DIR;
  const auto xb = read_vector_file(dir + "/x.f32", n * 4);
  ASSERT_FALSE(xb.empty()) << "cannot read " << dir << "/x.f32";
  for (format f : {format::nf4, format::bnb_fp4}) {
    const std::string name = f == format::nf4 ? "nf4" : "fp4";
    const auto codes = read_vector_file(dir + "/" + name + ".codes.u8", (n + 1) / 2);
    const auto absmax = read_vector_file(dir + "/" + name + ".absmax.f32", blocks * 4);
    ASSERT_FALSE(codes.empty() || absmax.empty()) << name;
    lowbit::quantize_params p;
    p.fmt = f;
    p.options.bnb4 = lowbit::quant::bnb4_rule::cpu_midpoints;
    for (int threads : {1, 2}) {
      p.options.threads = threads;
      lowbit::quant_tensor q;
      ASSERT_TRUE(lowbit::quantize(xb.data(), dtype::f32, {n}, p, q).ok()) << name;
      std::size_t bad = 0;
      for (std::size_t i = 0; i < codes.size(); ++i)
        if (q.codes()[i] != codes[i] && ++bad <= 8)
          ADD_FAILURE() << name << ", byte " << i << ": got " << hex(q.codes()[i], 2) << ", bitsandbytes' CPU " << hex(codes[i], 2);
      EXPECT_EQ(bad, 0u) << name;
      EXPECT_EQ(std::memcmp(q.scales(), absmax.data(), absmax.size()), 0) << name;
    }
    p.options.bnb4 = lowbit::quant::bnb4_rule::cuda_thresholds;
    lowbit::quant_tensor d;
    ASSERT_TRUE(lowbit::quantize(xb.data(), dtype::f32, {n}, p, d).ok());
    std::size_t differ = 0;
    for (std::size_t i = 0; i < codes.size(); ++i) differ += d.codes()[i] != codes[i];
    EXPECT_GT(differ, 0u) << name << ": the vectors no longer tell the two rules apart";
    std::printf("[ 4-bit    ] %s: the CUDA rule differs from bitsandbytes' CPU bytes in %zu of %zu bytes\n", name.c_str(), differ, codes.size());
  }
  lowbit::quantize_params p;
  p.options.bnb4 = lowbit::quant::bnb4_rule::cpu_midpoints;
  p.options.allow_nonfinite = true;
  lowbit::quant_tensor q;
  const std::vector<float> w(64, 1.0f);
  const lowbit::status s = lowbit::quantize(w.data(), dtype::f32, {64}, p, q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::strstr(s.message(), "allow_nonfinite"), nullptr) << s.message();
}

TEST(BnbCompat, NativeLibrary) {
  LOWBIT_SEED_TRACE();
  const char* path = std::getenv("LOWBIT_BNB_CPU_LIB");
  static const char* const kHowTo =
      "set LOWBIT_BNB_CPU_LIB to bitsandbytes' CPU library, e.g. `pip download --no-deps -d /tmp/bnb bitsandbytes && "
      "unzip -o -d /tmp/bnb/whl /tmp/bnb/bitsandbytes-*.whl` then "
      "LOWBIT_BNB_CPU_LIB=/tmp/bnb/whl/bitsandbytes/libbitsandbytes_cpu.so";
  if (path == nullptr || *path == '\0') GTEST_SKIP() << "LOWBIT_BNB_CPU_LIB is not set: " << kHowTo;
  // libgomp's idle workers spin by default and then starve lowbit's worker threads on small
  // machines (seconds instead of milliseconds); ask for passive waiting unless the user chose.
  setenv("OMP_WAIT_POLICY", "passive", 0);
  // Never closed: the library's OpenMP worker threads may outlive a dlclose.
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) GTEST_SKIP() << "cannot load " << path << " (" << dlerror() << "): " << kHowTo;
  if (BoolFn has512 = lookup<BoolFn>(lib, "has_avx512f_cpu")) std::printf("[ bnb lib  ] %s: has_avx512f_cpu() = %d\n", path, has512() ? 1 : 0);

  std::mt19937 rng = make_rng(10);
  std::vector<float> code_map = dynamic_map();  // lowbit's dynamic map, passed as `code`
  std::size_t fp4_code8 = 0, zero_sign_differences = 0;
  for (const FormatCase& fc : kBnbFormats) {
    const std::vector<float> table = spec_table(fc.fmt);
    for (std::int64_t bs : {64, 128, 256, 4096}) {
      // multiples of the block size and of 16 (the AVX-512 4-bit path), and odd / partial sizes
      for (std::int64_t n : {16 * bs, 2 * 4096 + 2 * bs, std::int64_t{48}, std::int64_t{1}, std::int64_t{15}, bs + 1, 3 * bs + 37,
                             5 * bs + bs / 2}) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(lowbit::code_bytes(fc.fmt, n)));
        for (auto& c : codes) c = static_cast<std::uint8_t>(rng());
        std::vector<float> absmax(static_cast<std::size_t>(lowbit::quant::block_count(n, bs)));
        for (auto& a : absmax) a = random_absmax(rng);
        lowbit::quant_view q;
        q.fmt = fc.fmt;
        q.numel = n;
        q.block_size = bs;
        q.codes = codes.data();
        q.scales = absmax.data();
        for (const DtypeCase& dc : kDtypes) {
          std::ostringstream os;
          os << "native libbitsandbytes_cpu, format " << fc.name << ", dtype " << dc.name << ", block size " << bs << ", numel " << n;
          const std::string ctx = os.str();
          std::vector<std::uint32_t> want;
          std::string missing;
          std::vector<std::uint8_t> codes_copy = codes;  // the C API takes non-const pointers
          ASSERT_TRUE(native_dequant(lib, fc, dc.dt, codes_copy, absmax, code_map, bs, n, want, missing))
              << path << " does not export " << missing << " (bitsandbytes-semantics.md §8 lists the expected exports)";
          ASSERT_EQ(codes_copy, codes) << ctx << ": the library modified its input";
          for (bool simd : {true, false}) {
            const std::vector<std::uint32_t> got = lowbit_dequant_bits(q, dc.dt, simd);
            // FP4 code 8 is -0.0 in lowbit (as in CUDA and bitsandbytes' scalar CPU LUT) but +0.0 on
            // bitsandbytes' AVX-512 path (§1.2): those elements are compared modulo the sign of zero.
            std::vector<std::uint32_t> want_cmp = want;
            if (fc.fmt == format::bnb_fp4) {
              for (std::size_t i = 0; i < want.size(); ++i) {
                if (code_at(codes, 4, static_cast<std::int64_t>(i)) != 8) continue;
                if (simd) ++fp4_code8;
                if (is_zero_bits(want[i], dc.dt) && is_zero_bits(got[i], dc.dt) && want[i] != got[i]) {
                  want_cmp[i] = got[i];
                  if (simd) ++zero_sign_differences;
                }
              }
            }
            expect_same_bits(ctx + (simd ? ", simd" : ", portable"), want_cmp, got, hex_digits(dc.dt), [&](std::size_t i) {
              const unsigned c = code_at(codes, fc.bits, static_cast<std::int64_t>(i));
              const float a = absmax[i / static_cast<std::size_t>(bs)];
              return "code " + std::to_string(c) + ", absmax " + hex(bits_of(a)) + ", bnb formula " +
                     hex(oracle_bits(table[c] * a, dc.dt), hex_digits(dc.dt));
            });
          }
        }
      }
    }
  }
  std::printf("[ bnb lib  ] FP4 code-8 elements: %zu, of which the library's zero had the other sign (allowed): %zu\n", fp4_code8,
              zero_sign_differences);
}

}  // namespace
