// SPDX-License-Identifier: Apache-2.0
// Conformance vectors (tests/data/conformance, described in its README.md): a committed float32
// input, and for every format the codes, scales, zero points, nested parts and dequantized
// float32 output lowbit produces. This test quantizes the committed input and requires every file
// to match byte for byte; with LOWBIT_REGENERATE_CONFORMANCE=1 it rewrites them instead (and
// fails, so a regeneration is never mistaken for a pass). The committed codes, scales and outputs
// are also checked against the independent scalar reference, so the files do not merely record
// what lowbit happens to compute.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "reference_engine.hpp"
#include "test_util.hpp"

#ifndef LOWBIT_CONFORMANCE_DIR
#  error "LOWBIT_CONFORMANCE_DIR must name tests/data/conformance"
#endif

namespace {

const std::string kDir = LOWBIT_CONFORMANCE_DIR;
constexpr std::int64_t kNumel = 1000;  // 15 full blocks of 64 and a partial one of 40
constexpr std::int64_t kBlock = 64;

bool regenerate() {
  const char* v = std::getenv("LOWBIT_REGENERATE_CONFORMANCE");
  return v != nullptr && std::string(v) == "1";
}

std::vector<std::uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

template <class T>
std::vector<std::uint8_t> bytes_of(const T* p, std::size_t n) {
  const auto* b = reinterpret_cast<const std::uint8_t*>(p);
  return std::vector<std::uint8_t>(b, b + n * sizeof(T));
}

// Writes (regenerate) or compares one vector file.
void check_file(const std::string& name, const std::vector<std::uint8_t>& data) {
  const std::string path = kDir + "/" + name;
  if (regenerate()) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    ADD_FAILURE() << "regenerated " << path;
    return;
  }
  const std::vector<std::uint8_t> want = read_file(path);
  ASSERT_FALSE(want.empty()) << path << " is missing";
  ASSERT_EQ(data.size(), want.size()) << path;
  for (std::size_t i = 0; i < data.size(); ++i) ASSERT_EQ(data[i], want[i]) << path << " differs at byte " << i;
}

// The committed input: seeded normal values with a zero block (block 3), a block of tiny values
// (block 5), an outlier, and an exact power of two in every other block.
std::vector<float> input() {
  const std::string path = kDir + "/input.f32";
  if (regenerate()) {
    std::mt19937 rng(20261122);
    std::normal_distribution<float> normal;
    std::vector<float> x(kNumel);
    for (auto& v : x) v = normal(rng);
    for (int i = 3 * kBlock; i < 4 * kBlock; ++i) x[i] = 0.0f;
    for (int i = 5 * kBlock; i < 6 * kBlock; ++i) x[i] *= 1e-4f;
    x[500] = 17.0f;
    for (int b = 0; b < 16; b += 2) x[b * kBlock + 7] = -4.0f;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(x.data()), kNumel * 4);
  }
  const std::vector<std::uint8_t> raw = read_file(path);
  std::vector<float> x(raw.size() / 4);
  std::memcpy(x.data(), raw.data(), x.size() * 4);
  return x;
}

void check_format(lowbit::format f, bool double_quant) {
  const std::vector<float> x = input();
  ASSERT_EQ(static_cast<std::int64_t>(x.size()), kNumel) << "input.f32";
  lowbit::quantize_params p;
  p.fmt = f;
  p.gran = lowbit::granularity::per_block(kBlock);
  p.double_quant = double_quant;
  lowbit::quant_tensor q;
  const lowbit::status s = lowbit::quantize(x.data(), lowbit::dtype::f32, {kNumel}, p, q);
  ASSERT_TRUE(s.ok()) << s.message();
  const std::string base = std::string(lowbit::info(f).name) + (double_quant ? "_dq" : "") + "_b64";
  check_file(base + ".codes.u8", bytes_of(q.codes(), static_cast<std::size_t>(lowbit::code_bytes(f, kNumel))));
  if (double_quant) {
    check_file(base + ".nested_codes.u8", bytes_of(q.nested_codes(), static_cast<std::size_t>(q.blocks())));
    check_file(base + ".nested_scales.f32", bytes_of(q.nested_scales(), 1));
    const float off = q.nested_offset();
    check_file(base + ".nested_offset.f32", bytes_of(&off, 1));
  } else {
    check_file(base + ".scales.f32", bytes_of(q.scales(), static_cast<std::size_t>(q.blocks())));
  }
  if (lowbit::info(f).zero_point) check_file(base + ".zero_points.u8", bytes_of(q.zero_points(), static_cast<std::size_t>(q.blocks())));
  std::vector<float> out(kNumel);
  ASSERT_TRUE(lowbit::dequantize(q, out.data(), lowbit::dtype::f32).ok());
  check_file(base + ".output.f32", bytes_of(out.data(), out.size()));

  // The committed files against the scalar reference.
  if (double_quant) return;  // nested parts: covered by engine_test's DoubleQuant.MatchesDefinition
  const auto ref = lowbit_test::ref_quantize(f, x.data(), kNumel, kBlock);
  EXPECT_EQ(read_file(kDir + "/" + base + ".codes.u8"), ref.codes) << base;
  EXPECT_EQ(read_file(kDir + "/" + base + ".scales.f32"), bytes_of(ref.scales.data(), ref.scales.size())) << base;
  const auto ref_out = lowbit_test::ref_dequantize<float>(f, ref.codes.data(), ref.scales.data(), ref.zero_points.data(),
                                                          kNumel, kBlock);
  EXPECT_EQ(read_file(kDir + "/" + base + ".output.f32"), bytes_of(ref_out.data(), ref_out.size())) << base;
}

class Conformance : public ::testing::TestWithParam<lowbit::format> {};

TEST_P(Conformance, Block64) { check_format(GetParam(), false); }

INSTANTIATE_TEST_SUITE_P(AllFormats, Conformance,
                         ::testing::Values(lowbit::format::nf4, lowbit::format::bnb_fp4, lowbit::format::bnb_dynamic8,
                                           lowbit::format::int8_absmax, lowbit::format::uint8_zeropoint,
                                           lowbit::format::e4m3fn, lowbit::format::e5m2, lowbit::format::e2m1fn),
                         [](const ::testing::TestParamInfo<lowbit::format>& p) { return std::string(lowbit::info(p.param).name); });

TEST(Conformance, Nf4DoubleQuant) { check_format(lowbit::format::nf4, true); }

}  // namespace
