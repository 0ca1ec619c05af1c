// SPDX-License-Identifier: Apache-2.0
// transformers' fine-grained FP8 layout (io/fp8_block.hpp): hand-built files (bytes the writer did
// not make) decode to hand-worked values, including partial edge tiles and BF16 scales; every
// malformed pair is an error naming the tensor and leaving the output alone; quantize -> write
// -> load keeps every byte. The independent check is fp8_block_interop.py.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include "hand_safetensors.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace io = lowbit::io;
using lowbit_test::build;
using lowbit_test::dequant;
using lowbit_test::f32_bytes;
using lowbit_test::open_bytes;
using lowbit_test::raw_tensor;
using lowbit_test::scratch_dir;
using lowbit_test::u16_bytes;
using lowbit_test::u8_bytes;

namespace {

io::fp8_block_config block(std::int64_t r, std::int64_t c) {
  io::fp8_block_config cfg;
  cfg.block_rows = r;
  cfg.block_cols = c;
  return cfg;
}

}  // namespace

// e4m3fn codes worked by hand: 0x38 = 2^(7-7) = 1, 0x40 = 2, 0xB8 = -1, 0x01 = 2^-6 * 1/8 = 2^-9,
// 0x7E = 2^8 * 1.75 = 448, 0x00 = 0, 0x80 = -0, 0x3C = 1.5.
TEST(Fp8Block, HandWorkedSmallTilesWithPartialEdges) {
  // weight [3, 3] in 2 x 2 blocks: scale grid [2, 2]; row 2 and column 2 are partial tiles.
  const std::vector<std::uint8_t> codes{0x38, 0x40, 0xB8,   //
                                        0x01, 0x7E, 0x00,   //
                                        0x80, 0x3C, 0x40};
  const std::vector<float> scales{0.5f, 2.0f, 4.0f, 0.25f};
  const std::string file = build({{"l.weight", "F8_E4M3", {3, 3}, u8_bytes(codes)}, {"l.weight_scale_inv", "F32", {2, 2}, f32_bytes(scales)}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  EXPECT_TRUE(io::is_fp8_block_weight(c, "l.weight"));
  lowbit::scaled_tensor q;
  const auto s = io::load_fp8_block(c, "l.weight", block(2, 2), q);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{3, 3}));
  EXPECT_EQ(q.grid().grid_rows(), 2);
  EXPECT_EQ(q.grid().grid_cols(), 2);
  const std::vector<float> want{1 * 0.5f, 2 * 0.5f, -1 * 2.0f,                 //
                                std::ldexp(1.0f, -9) * 0.5f, 448 * 0.5f, 0,  //
                                -0.0f * 4.0f, 1.5f * 4.0f, 2 * 0.25f};
  const auto got = dequant(q);
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "element " << i;
  EXPECT_TRUE(std::signbit(got[6]));  // -0 * 4 = -0
}

TEST(Fp8Block, DefaultBlocksPartialEdgesAndBf16Scales) {
  // weight [130, 129] in 128 x 128 blocks: scale [2, 2]; every code 1.0, so each element is its
  // tile's scale. BF16 scales 1, 2, 3, 0.5 (0x3F80, 0x4000, 0x4040, 0x3F00).
  const std::int64_t n = 130, k = 129;
  const std::vector<std::uint8_t> codes(static_cast<std::size_t>(n * k), 0x38);
  for (const char* dt : {"F32", "BF16"}) {
    SCOPED_TRACE(dt);
    const std::string sb = std::string(dt) == "F32" ? f32_bytes({1.0f, 2.0f, 3.0f, 0.5f}) : u16_bytes({0x3F80, 0x4000, 0x4040, 0x3F00});
    const std::string file = build({{"a.weight", "F8_E4M3", {n, k}, u8_bytes(codes)}, {"a.weight_scale_inv", dt, {2, 2}, sb}});
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    lowbit::scaled_tensor q;
    const auto s = io::load_fp8_block(c, "a.weight", io::fp8_block_config{}, q);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(q.tile().rows, 128);
    EXPECT_EQ(q.tile().cols, 128);
    const auto got = dequant(q);
    auto at = [&](std::int64_t r, std::int64_t col) { return got[static_cast<std::size_t>(r * k + col)]; };
    EXPECT_EQ(at(0, 0), 1.0f);
    EXPECT_EQ(at(127, 127), 1.0f);
    EXPECT_EQ(at(0, 128), 2.0f);
    EXPECT_EQ(at(127, 128), 2.0f);
    EXPECT_EQ(at(128, 0), 3.0f);
    EXPECT_EQ(at(129, 127), 3.0f);
    EXPECT_EQ(at(128, 128), 0.5f);
    EXPECT_EQ(at(129, 128), 0.5f);
    // the zero-copy view: F32 scales point into the mapping and decode to the same values;
    // BF16 scales have no float32 bytes to point at
    lowbit::host::scaled_view v;
    const auto vs = io::view_fp8_block(c, "a.weight", io::fp8_block_config{}, v);
    if (std::string(dt) == "BF16") {
      EXPECT_EQ(vs.code(), lowbit::errc::unsupported);
      EXPECT_NE(std::string(vs.message()).find("BF16 scales cannot be viewed"), std::string::npos) << vs.message();
      continue;
    }
    ASSERT_TRUE(vs.ok()) << vs.message();
    const auto loc = c.find("a.weight");
    EXPECT_EQ(v.codes, loc.file->data(*loc.tensor));
    EXPECT_EQ(v.scales, static_cast<const void*>(c.find("a.weight_scale_inv").file->data(*c.find("a.weight_scale_inv").tensor)));
    std::vector<float> viewed(got.size());
    ASSERT_TRUE(lowbit::host::dequantize_scaled(v, viewed.data(), lowbit::dtype::f32).ok());
    EXPECT_EQ(std::memcmp(viewed.data(), got.data(), got.size() * 4), 0);
  }
}

TEST(Fp8Block, ZeroTileAndZeroScale) {
  // A zero scale decodes its tile to zeros (signed by the code), whatever the codes.
  const std::string file = build({{"z.weight", "F8_E4M3", {1, 2}, u8_bytes({0x7E, 0xB8})}, {"z.weight_scale_inv", "F32", {1, 1}, f32_bytes({0.0f})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  ASSERT_TRUE(io::load_fp8_block(c, "z.weight", io::fp8_block_config{}, q).ok());
  const auto got = dequant(q);
  EXPECT_EQ(got[0], 0.0f);
  EXPECT_FALSE(std::signbit(got[0]));
  EXPECT_EQ(got[1], 0.0f);
  EXPECT_TRUE(std::signbit(got[1]));
}

namespace {

struct bad_case {
  const char* what;
  std::vector<raw_tensor> tensors;
  const char* must_mention;  // besides the tensor name
  const char* tensor;        // the tensor the message names
};

std::vector<bad_case> bad_cases() {
  const auto w = [](const char* dt, std::vector<std::int64_t> shape, std::string bytes) { return raw_tensor{"m.weight", dt, std::move(shape), std::move(bytes)}; };
  const auto sc = [](const char* dt, std::vector<std::int64_t> shape, std::string bytes) {
    return raw_tensor{"m.weight_scale_inv", dt, std::move(shape), std::move(bytes)};
  };
  const std::string codes(6, '\x38');  // [2, 3]
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::string nan_code = codes;
  nan_code[5] = '\xFF';
  return {
      {"weight missing", {sc("F32", {1, 2}, f32_bytes({1, 1}))}, "missing", "m.weight"},
      {"weight U8", {w("U8", {2, 3}, codes), sc("F32", {1, 2}, f32_bytes({1, 1}))}, "U8", "m.weight"},
      {"weight BF16", {w("BF16", {2, 3}, codes + codes), sc("F32", {1, 2}, f32_bytes({1, 1}))}, "BF16", "m.weight"},
      {"weight 3-D", {w("F8_E4M3", {1, 2, 3}, codes), sc("F32", {1, 2}, f32_bytes({1, 1}))}, "2-D", "m.weight"},
      {"scale missing", {w("F8_E4M3", {2, 3}, codes)}, "missing", "m.weight_scale_inv"},
      {"scale F16", {w("F8_E4M3", {2, 3}, codes), sc("F16", {1, 2}, u16_bytes({0x3C00, 0x3C00}))}, "F16", "m.weight_scale_inv"},
      {"scale U8", {w("F8_E4M3", {2, 3}, codes), sc("U8", {1, 2}, u8_bytes({1, 1}))}, "U8", "m.weight_scale_inv"},
      {"scale too few columns", {w("F8_E4M3", {2, 3}, codes), sc("F32", {1, 1}, f32_bytes({1}))}, "[1, 2]", "m.weight_scale_inv"},
      {"scale too many rows", {w("F8_E4M3", {2, 3}, codes), sc("F32", {2, 2}, f32_bytes({1, 1, 1, 1}))}, "[1, 2]", "m.weight_scale_inv"},
      {"scale transposed", {w("F8_E4M3", {2, 3}, codes), sc("F32", {2, 1}, f32_bytes({1, 1}))}, "[1, 2]", "m.weight_scale_inv"},
      {"scale 1-D", {w("F8_E4M3", {2, 3}, codes), sc("F32", {2}, f32_bytes({1, 1}))}, "[1, 2]", "m.weight_scale_inv"},
      {"scale 3-D", {w("F8_E4M3", {2, 3}, codes), sc("F32", {1, 2, 1}, f32_bytes({1, 1}))}, "[1, 2]", "m.weight_scale_inv"},
      {"scale NaN", {w("F8_E4M3", {2, 3}, codes), sc("F32", {1, 2}, f32_bytes({1, nan}))}, "[0, 1] is NaN", "m.weight_scale_inv"},
      {"scale Inf", {w("F8_E4M3", {2, 3}, codes), sc("F32", {1, 2}, f32_bytes({-inf, 1}))}, "[0, 0] is infinite", "m.weight_scale_inv"},
      {"scale BF16 NaN", {w("F8_E4M3", {2, 3}, codes), sc("BF16", {1, 2}, u16_bytes({0x3F80, 0x7FC0}))}, "[0, 1] is NaN", "m.weight_scale_inv"},
      {"weight NaN code", {w("F8_E4M3", {2, 3}, nan_code), sc("F32", {1, 2}, f32_bytes({1, 1}))}, "[1, 2] is the NaN code 0xFF", "m.weight"},
  };
}

}  // namespace

TEST(Fp8Block, MalformedPairsAreErrorsNamingTheTensor) {
  // blocks of 2 x 2 for a [2, 3] weight: the scale grid is [1, 2]
  for (const auto& b : bad_cases()) {
    SCOPED_TRACE(b.what);
    const std::string file = build(b.tensors);
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    // a sentinel tensor that must survive the error
    lowbit::scaled_tensor q;
    const float one[4] = {1, 1, 1, 1};
    ASSERT_TRUE(io::quantize_fp8_block(one, lowbit::dtype::f32, {1, 4}, io::fp8_block_config{}, q).ok());
    const auto s = io::load_fp8_block(c, "m.weight", block(2, 2), q);
    ASSERT_FALSE(s.ok());
    const std::string msg = s.message();
    EXPECT_NE(msg.find(std::string("\"") + b.tensor + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find(b.must_mention), std::string::npos) << msg;
    EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{1, 4})) << "output touched on error";
  }
}

TEST(Fp8Block, NonfiniteAcceptedOnRequest) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::string file = build({{"m.weight", "F8_E4M3", {1, 2}, u8_bytes({0x38, 0x7F})}, {"m.weight_scale_inv", "F32", {1, 1}, f32_bytes({nan})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  io::fp8_load_options opt;
  opt.allow_nonfinite = true;
  ASSERT_TRUE(io::load_fp8_block(c, "m.weight", io::fp8_block_config{}, q, opt).ok());
  const auto got = dequant(q);
  EXPECT_TRUE(std::isnan(got[0]));
  EXPECT_TRUE(std::isnan(got[1]));
}

TEST(Fp8Block, TruncatedFileIsRefused) {
  const std::string codes(6, '\x38');
  const std::string file = build({{"m.weight", "F8_E4M3", {2, 3}, codes}, {"m.weight_scale_inv", "F32", {1, 1}, f32_bytes({1})}});
  scratch_dir d;
  for (std::size_t cut : {file.size() - 1, file.size() - 4, file.size() - 7, std::size_t{20}}) {
    lowbit_test::write_bytes(d / "t.safetensors", file.substr(0, cut));
    io::checkpoint c;
    const auto s = io::checkpoint::open(d / "t.safetensors", c);
    EXPECT_FALSE(s.ok()) << "cut at " << cut;
  }
}

TEST(Fp8Block, ConfigReadAndWritten) {
  io::fp8_block_config c;
  nlohmann::json j = {{"quant_method", "fp8"}};
  ASSERT_TRUE(io::from_json(j, "cfg", c).ok());
  EXPECT_EQ(c.block_rows, 128);
  EXPECT_EQ(c.block_cols, 128);
  EXPECT_FALSE(c.has_modules_to_not_convert);
  // DeepSeek-V3's config.json, with its "fmt" key, and an ignored_layers alias
  j = nlohmann::json::parse(R"({"activation_scheme":"dynamic","fmt":"e4m3","quant_method":"fp8","weight_block_size":[64,32],"ignored_layers":["lm_head"]})");
  ASSERT_TRUE(io::from_json(j, "cfg", c).ok());
  EXPECT_EQ(c.block_rows, 64);
  EXPECT_EQ(c.block_cols, 32);
  ASSERT_TRUE(c.has_modules_to_not_convert);
  EXPECT_EQ(c.modules_to_not_convert, std::vector<std::string>{"lm_head"});
  for (const char* bad : {R"({"quant_method":"bitsandbytes"})", R"({"quant_method":"fp8","weight_block_size":[128]})",
                          R"({"quant_method":"fp8","weight_block_size":[0,128]})", R"({"quant_method":"fp8","weight_block_size":"128"})",
                          R"({"quant_method":"fp8","activation_scheme":"per_tensor"})", R"({"quant_method":"fp8","scale_fmt":"e8m0"})",
                          R"({"quant_method":"fp8","modules_to_not_convert":"lm_head"})", R"([1])"}) {
    io::fp8_block_config o;
    EXPECT_FALSE(io::from_json(nlohmann::json::parse(bad), "cfg", o).ok()) << bad;
  }
  scratch_dir d;
  io::fp8_block_config w = block(128, 128);
  w.has_modules_to_not_convert = true;
  w.modules_to_not_convert = {"lm_head", "model.layers.0.mlp.gate"};
  ASSERT_TRUE(io::write_fp8_block_config(d / "config.json", R"({"model_type":"qwen3","torch_dtype":"bfloat16"})", w).ok());
  io::fp8_block_config r;
  ASSERT_TRUE(io::read_fp8_block_config(d / "config.json", r).ok());
  EXPECT_EQ(r.block_rows, 128);
  EXPECT_EQ(r.modules_to_not_convert, w.modules_to_not_convert);
  const auto text = lowbit_test::read_bytes(d / "config.json");
  EXPECT_NE(text.find("\"quant_method\": \"fp8\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"model_type\": \"qwen3\""), std::string::npos) << text;
  nlohmann::json parsed = nlohmann::json::parse(text);
  std::string method;
  ASSERT_TRUE(io::quantization_method(parsed, "config.json", method).ok());
  EXPECT_EQ(method, "fp8");
}

TEST(Fp8Block, WriteThenLoadKeepsEveryByte) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  struct shape_case {
    std::int64_t n, k, bn, bk;
    lowbit::dtype dt;
  };
  for (const auto& sc : {shape_case{300, 260, 128, 128, lowbit::dtype::f32}, shape_case{128, 256, 128, 128, lowbit::dtype::bf16},
                         shape_case{5, 7, 2, 3, lowbit::dtype::f16}, shape_case{1, 1, 128, 128, lowbit::dtype::f32}}) {
    SCOPED_TRACE(std::to_string(sc.n) + "x" + std::to_string(sc.k));
    std::normal_distribution<float> nd(0.0f, 0.05f);
    std::vector<float> w(static_cast<std::size_t>(sc.n * sc.k));
    for (auto& v : w) v = nd(rng);
    w[0] = 3.0f;  // an outlier in tile 0
    std::vector<std::uint16_t> half(w.size());
    const void* src = w.data();
    if (sc.dt != lowbit::dtype::f32) {
      for (std::size_t i = 0; i < w.size(); ++i)
        half[i] = sc.dt == lowbit::dtype::bf16 ? lowbit::from_float<lowbit::bf16>(w[i]).bits : lowbit::from_float<lowbit::f16>(w[i]).bits;
      src = half.data();
    }
    const io::fp8_block_config cfg = block(sc.bn, sc.bk);
    lowbit::scaled_tensor q;
    ASSERT_TRUE(io::quantize_fp8_block(src, sc.dt, {sc.n, sc.k}, cfg, q).ok());
    ASSERT_TRUE(io::matches(q, cfg));
    // tile 0's scale is amax / 448, computed here from the input
    float amax = 0;
    for (std::int64_t r = 0; r < std::min(sc.n, sc.bn); ++r)
      for (std::int64_t c = 0; c < std::min(sc.k, sc.bk); ++c) {
        const std::size_t i = static_cast<std::size_t>(r * sc.k + c);
        const float x = sc.dt == lowbit::dtype::f32 ? w[i]
                        : sc.dt == lowbit::dtype::bf16 ? lowbit::to_float(lowbit::bf16{half[i]})
                                                       : lowbit::to_float(lowbit::f16{half[i]});
        amax = std::max(amax, std::fabs(x));
      }
    EXPECT_EQ(q.scales_f32()[0], amax / 448.0f);

    scratch_dir d;
    std::vector<io::tensor_entry> e;
    ASSERT_TRUE(io::fp8_block_entries("model.layers.0.mlp.up_proj.weight", q, e).ok());
    e.push_back({"model.norm.weight", io::st_dtype::F32, {2}});
    io::safetensors_writer wr;
    ASSERT_TRUE(wr.open(d / "model.safetensors", e).ok());
    ASSERT_TRUE(io::write_fp8_block(wr, q).ok());
    const float norm[2] = {1, 1};
    ASSERT_TRUE(wr.write(norm, 8).ok());
    ASSERT_TRUE(wr.commit().ok());
    ASSERT_TRUE(io::write_fp8_block_config(d / "config.json", "", cfg).ok());

    io::fp8_block_config rc;
    ASSERT_TRUE(io::read_fp8_block_config(d / "config.json", rc).ok());
    io::checkpoint ck;
    ASSERT_TRUE(io::checkpoint::open(d.path(), ck).ok());
    EXPECT_TRUE(io::is_fp8_block_weight(ck, "model.layers.0.mlp.up_proj.weight"));
    EXPECT_FALSE(io::is_fp8_block_weight(ck, "model.norm.weight"));
    const auto* st = ck.find("model.layers.0.mlp.up_proj.weight_scale_inv").tensor;
    ASSERT_NE(st, nullptr);
    EXPECT_EQ(st->dtype, io::st_dtype::F32);
    EXPECT_EQ(st->shape, (std::vector<std::int64_t>{(sc.n + sc.bn - 1) / sc.bn, (sc.k + sc.bk - 1) / sc.bk}));
    lowbit::scaled_tensor r;
    const auto s = io::load_fp8_block(ck, "model.layers.0.mlp.up_proj.weight", rc, r);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(r.code_bytes(), q.code_bytes());
    EXPECT_EQ(std::memcmp(r.codes(), q.codes(), static_cast<std::size_t>(q.code_bytes())), 0);
    ASSERT_EQ(r.grid().tiles(), q.grid().tiles());
    EXPECT_EQ(std::memcmp(r.scale_bytes(), q.scale_bytes(), static_cast<std::size_t>(q.grid().tiles() * 4)), 0);
    const auto a = dequant(q), b = dequant(r);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
  }
}

TEST(Fp8Block, WriterRefusesOtherFormats) {
  const float x[32] = {};
  lowbit::scaled_params p;  // mxfp8_e4m3
  lowbit::scaled_tensor q;
  ASSERT_TRUE(lowbit::quantize(x, lowbit::dtype::f32, {1, 32}, p, q).ok());
  std::vector<io::tensor_entry> e;
  const auto s = io::fp8_block_entries("w.weight", q, e);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("w.weight"), std::string::npos);
  EXPECT_TRUE(e.empty());
  lowbit::scaled_tensor q3;
  std::vector<float> y(2 * 2 * 4, 1.0f);
  ASSERT_TRUE(lowbit::quantize(y.data(), lowbit::dtype::f32, {2, 2, 4}, lowbit::scaled_params{lowbit::scaled_format::fp8_e4m3_block}, q3).ok());
  EXPECT_FALSE(io::fp8_block_entries("w.weight", q3, e).ok());
  EXPECT_FALSE(io::quantize_fp8_block(y.data(), lowbit::dtype::f32, {2, 2, 4}, io::fp8_block_config{}, q3).ok());
}
