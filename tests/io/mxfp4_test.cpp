// SPDX-License-Identifier: Apache-2.0
// gpt-oss's MXFP4 layout (io/mxfp4.hpp): hand-built files (bytes the writer did not make) decode
// to hand-worked values, with and without the expert dimension; the file's bytes are the
// scaled_tensor's bytes unchanged; every malformed pair is an error naming the tensor and leaving
// the output alone; quantize -> write -> load keeps every byte and the scale rule is triton's
// ROUND_UP. The independent check is mxfp4_interop.py.
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

// The e2m1 table, written out from the OCP MX spec (and gpt-oss's FP4_VALUES).
const float fp4[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};

}  // namespace

// One row of K = 64 (two blocks). Block 0, scale 128 = 2^1: byte 0 = 0x21 -> element 0 is code 1
// (0.5 -> 1), element 1 code 2 (1 -> 2); byte 1 = 0xF7 -> code 7 (6 -> 12), code 15 (-6 -> -12);
// byte 2 = 0x98 -> code 8 (-0), code 9 (-0.5 -> -1); the rest 0. Block 1, scale 0 = 2^-127:
// byte 0 = 0x03 -> 1.5 * 2^-127, 0; byte 15 = 0xC0 -> 0, code 12 (-2 -> -2^-126).
// Row 1: one block of scale 124 = 2^-3, every byte 0x5A -> codes 10 (-1), 5 (3): -1/8, 3/8.
TEST(Mxfp4, HandWorkedBlocks) {
  std::vector<std::uint8_t> blocks(2 * 2 * 16, 0);
  blocks[0] = 0x21;
  blocks[1] = 0xF7;
  blocks[2] = 0x98;
  blocks[16] = 0x03;
  blocks[31] = 0xC0;
  for (int i = 32; i < 48; ++i) blocks[static_cast<std::size_t>(i)] = 0x5A;
  for (int i = 48; i < 64; ++i) blocks[static_cast<std::size_t>(i)] = 0x00;
  const std::vector<std::uint8_t> scales{128, 0, 124, 127};
  const std::string file = build({{"l.w_blocks", "U8", {2, 2, 16}, u8_bytes(blocks)}, {"l.w_scales", "U8", {2, 2}, u8_bytes(scales)}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  EXPECT_TRUE(io::is_mxfp4_pair(c, "l.w"));
  EXPECT_FALSE(io::is_mxfp4_pair(c, "l.w", io::mxfp4_naming::openai));
  lowbit::scaled_tensor q;
  const auto s = io::load_mxfp4(c, "l.w", q);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(q.fmt(), lowbit::scaled_format::mxfp4);
  EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{2, 64}));
  const auto got = dequant(q);
  std::vector<float> want(128, 0.0f);
  want[0] = 1;
  want[1] = 2;
  want[2] = 12;
  want[3] = -12;
  want[4] = -0.0f;
  want[5] = -1;
  want[32] = std::ldexp(1.5f, -127);
  want[63] = -std::ldexp(1.0f, -126);
  for (int i = 64; i < 96; ++i) want[static_cast<std::size_t>(i)] = i % 2 == 0 ? -0.125f : 0.375f;
  for (std::size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "element " << i;
  EXPECT_TRUE(std::signbit(got[4]));  // code 8 is -0
  EXPECT_FALSE(std::signbit(got[6]));
  // the straight copy: the scaled_tensor's bytes are the file's
  ASSERT_EQ(q.code_bytes(), 64);
  EXPECT_EQ(std::memcmp(q.codes(), blocks.data(), 64), 0);
  EXPECT_EQ(std::memcmp(q.scale_bytes(), scales.data(), 4), 0);
}

// [E = 3, rows = 2, K = 64]: element [e, r, k] of code (e + r + k / 32) % 16 under scale
// 127 + e - r, checked against FP4 * 2^(s - 127) computed here; one expert copied out.
TEST(Mxfp4, ExpertDimension) {
  const std::int64_t E = 3, R = 2, G = 2, K = 64;
  std::vector<std::uint8_t> blocks(static_cast<std::size_t>(E * R * G * 16)), scales(static_cast<std::size_t>(E * R * G));
  for (std::int64_t e = 0; e < E; ++e)
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t g = 0; g < G; ++g) {
        const auto code = static_cast<std::uint8_t>((e + r + g) % 16);
        const auto hi = static_cast<std::uint8_t>((e + r + g + 7) % 16);
        for (int j = 0; j < 16; ++j) blocks[static_cast<std::size_t>(((e * R + r) * G + g) * 16 + j)] = static_cast<std::uint8_t>(code | hi << 4);
        scales[static_cast<std::size_t>((e * R + r) * G + g)] = static_cast<std::uint8_t>(127 + e - r + g);
      }
  const std::string file = build({{"model.layers.0.mlp.experts.down_proj_blocks", "U8", {E, R, G, 16}, u8_bytes(blocks)},
                                  {"model.layers.0.mlp.experts.down_proj_scales", "U8", {E, R, G}, u8_bytes(scales)},
                                  {"model.layers.0.mlp.experts.down_proj_bias", "F32", {E, R}, std::string(static_cast<std::size_t>(E * R * 4), '\0')}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  std::string base;
  ASSERT_TRUE(io::mxfp4_base_of("model.layers.0.mlp.experts.down_proj_blocks", base));
  EXPECT_EQ(base, "model.layers.0.mlp.experts.down_proj");
  EXPECT_FALSE(io::mxfp4_base_of("model.layers.0.mlp.experts.down_proj_bias", base));
  EXPECT_FALSE(io::mxfp4_base_of("_blocks", base));
  io::mxfp4_layout l;
  ASSERT_TRUE(io::check_mxfp4_layout(c, base, l).ok());
  EXPECT_EQ(l.shape, (std::vector<std::int64_t>{E, R, K}));
  EXPECT_EQ(l.groups, G);
  io::mxfp4_load_options opt;
  opt.expect_shape = {E, R, K};
  lowbit::scaled_tensor q;
  ASSERT_TRUE(io::load_mxfp4(c, base, q, opt).ok());
  EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{E, R, K}));
  EXPECT_EQ(q.rows(), E * R);
  const auto got = dequant(q);
  for (std::int64_t e = 0; e < E; ++e)
    for (std::int64_t r = 0; r < R; ++r)
      for (std::int64_t k = 0; k < K; ++k) {
        const std::int64_t g = k / 32;
        const int code = static_cast<int>(k % 2 == 0 ? (e + r + g) % 16 : (e + r + g + 7) % 16);
        const float want = std::ldexp(fp4[code], static_cast<int>(e - r + g));
        ASSERT_EQ(got[static_cast<std::size_t>((e * R + r) * K + k)], want) << e << "," << r << "," << k;
      }
  // the zero-copy view: pointers into the mapping, the same values
  lowbit::host::scaled_view v;
  ASSERT_TRUE(io::view_mxfp4(c, base, v).ok());
  EXPECT_EQ(v.rows, E * R);
  EXPECT_EQ(v.cols, K);
  EXPECT_EQ(v.codes, c.find(base + "_blocks").file->data(*c.find(base + "_blocks").tensor));
  EXPECT_EQ(v.scales, static_cast<const void*>(c.find(base + "_scales").file->data(*c.find(base + "_scales").tensor)));
  std::vector<float> viewed(got.size());
  ASSERT_TRUE(lowbit::host::dequantize_scaled(v, viewed.data(), lowbit::dtype::f32).ok());
  EXPECT_EQ(std::memcmp(viewed.data(), got.data(), got.size() * 4), 0);
  // dequantize_mxfp4: the same values, f32 and bf16 (exact: at most 2 significant bits)
  std::vector<std::uint8_t> dense;
  std::vector<std::int64_t> shape;
  ASSERT_TRUE(io::dequantize_mxfp4(c, base, lowbit::dtype::f32, dense, shape).ok());
  EXPECT_EQ(shape, (std::vector<std::int64_t>{E, R, K}));
  ASSERT_EQ(dense.size(), got.size() * 4);
  EXPECT_EQ(std::memcmp(dense.data(), got.data(), dense.size()), 0);
  ASSERT_TRUE(io::dequantize_mxfp4(c, base, lowbit::dtype::bf16, dense, shape).ok());
  ASSERT_EQ(dense.size(), got.size() * 2);
  for (std::size_t i = 0; i < got.size(); ++i) {
    std::uint16_t b;
    std::memcpy(&b, dense.data() + 2 * i, 2);
    ASSERT_EQ(lowbit::to_float(lowbit::bf16{b}), got[i]) << i;
  }
  EXPECT_FALSE(io::dequantize_mxfp4(c, base, static_cast<lowbit::dtype>(9), dense, shape).ok());
  // one expert
  lowbit::scaled_tensor one;
  ASSERT_TRUE(io::mxfp4_expert(q, 1, one).ok());
  EXPECT_EQ(one.shape(), (std::vector<std::int64_t>{R, K}));
  const auto g1 = dequant(one);
  EXPECT_EQ(std::memcmp(g1.data(), got.data() + R * K, g1.size() * 4), 0);
  EXPECT_FALSE(io::mxfp4_expert(q, 3, one).ok());
  EXPECT_FALSE(io::mxfp4_expert(q, -1, one).ok());
  EXPECT_EQ(one.shape(), (std::vector<std::int64_t>{R, K}));
  // openai's naming of the same pair
  const std::string oai = build({{"block.0.mlp.mlp2_weight.blocks", "U8", {E, R, G, 16}, u8_bytes(blocks)},
                                 {"block.0.mlp.mlp2_weight.scales", "U8", {E, R, G}, u8_bytes(scales)}});
  io::checkpoint co;
  ASSERT_TRUE(open_bytes(oai, co).ok());
  io::mxfp4_load_options oo;
  oo.naming = io::mxfp4_naming::openai;
  ASSERT_TRUE(io::mxfp4_base_of("block.0.mlp.mlp2_weight.blocks", base, oo.naming));
  EXPECT_EQ(base, "block.0.mlp.mlp2_weight");
  EXPECT_TRUE(io::is_mxfp4_pair(co, base, oo.naming));
  lowbit::scaled_tensor qo;
  ASSERT_TRUE(io::load_mxfp4(co, base, qo, oo).ok());
  EXPECT_EQ(std::memcmp(qo.codes(), q.codes(), static_cast<std::size_t>(q.code_bytes())), 0);
}

TEST(Mxfp4, NanScaleAndOverflow) {
  // scale 0xFF: refused (index named), or read and decoded to NaN on request
  std::vector<std::uint8_t> blocks(2 * 16, 0x11);
  const std::string file = build({{"m_blocks", "U8", {1, 2, 16}, u8_bytes(blocks)}, {"m_scales", "U8", {1, 2}, u8_bytes({127, 0xFF})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  auto s = io::load_mxfp4(c, "m", q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("\"m_scales\": scale [0, 1] is 0xFF"), std::string::npos) << s.message();
  EXPECT_EQ(q.numel(), 0) << "output touched on error";
  io::mxfp4_load_options opt;
  opt.allow_nan_scale = true;
  ASSERT_TRUE(io::load_mxfp4(c, "m", q, opt).ok());
  const auto got = dequant(q);
  EXPECT_EQ(got[0], 0.5f);
  for (int i = 32; i < 64; ++i) EXPECT_TRUE(std::isnan(got[static_cast<std::size_t>(i)])) << i;
  // scale 254 = 2^127: code 1 (0.5) is 2^126, code 7 (6) overflows float32 to +Inf, code 15 to -Inf;
  // 0 stays 0
  std::vector<std::uint8_t> big(16, 0x00);
  big[0] = 0x71;
  big[1] = 0x0F;
  const std::string f2 = build({{"b_blocks", "U8", {1, 1, 16}, u8_bytes(big)}, {"b_scales", "U8", {1, 1}, u8_bytes({254})}});
  io::checkpoint c2;
  ASSERT_TRUE(open_bytes(f2, c2).ok());
  ASSERT_TRUE(io::load_mxfp4(c2, "b", q).ok());
  const auto g2 = dequant(q);
  EXPECT_EQ(g2[0], std::ldexp(1.0f, 126));
  EXPECT_EQ(g2[1], std::numeric_limits<float>::infinity());
  EXPECT_EQ(g2[2], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(g2[3], 0.0f);
  EXPECT_EQ(g2[4], 0.0f);
}

namespace {

struct bad_case {
  const char* what;
  std::vector<raw_tensor> tensors;
  const char* must_mention;  // besides the tensor name
  const char* tensor;        // the tensor the message names
};

std::vector<bad_case> bad_cases() {
  // the weight is [E = 2, rows = 1, K = 32]: blocks [2, 1, 1, 16], scales [2, 1, 1]
  const auto b = [](const char* dt, std::vector<std::int64_t> shape, std::size_t itemsize = 1) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return raw_tensor{"x.e.gate_up_proj_blocks", dt, std::move(shape), std::string(static_cast<std::size_t>(n) * itemsize, '\x22')};
  };
  const auto s = [](const char* dt, std::vector<std::int64_t> shape, std::size_t itemsize = 1) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return raw_tensor{"x.e.gate_up_proj_scales", dt, std::move(shape), std::string(static_cast<std::size_t>(n) * itemsize, '\x7F')};
  };
  const auto good_b = b("U8", {2, 1, 1, 16});
  const auto good_s = s("U8", {2, 1, 1});
  return {
      {"blocks missing", {good_s}, "missing", "x.e.gate_up_proj_blocks"},
      {"scales missing", {good_b}, "missing", "x.e.gate_up_proj_scales"},
      {"blocks I8", {b("I8", {2, 1, 1, 16}), good_s}, "I8", "x.e.gate_up_proj_blocks"},
      {"blocks F8_E4M3", {b("F8_E4M3", {2, 1, 1, 16}), good_s}, "F8_E4M3", "x.e.gate_up_proj_blocks"},
      {"blocks BF16", {b("BF16", {2, 1, 1, 16}, 2), good_s}, "BF16", "x.e.gate_up_proj_blocks"},
      {"scales BF16", {good_b, s("BF16", {2, 1, 1}, 2)}, "BF16", "x.e.gate_up_proj_scales"},
      {"scales F32", {good_b, s("F32", {2, 1, 1}, 4)}, "F32", "x.e.gate_up_proj_scales"},
      {"scales F8_E8M0", {good_b, s("F8_E8M0", {2, 1, 1})}, "F8_E8M0", "x.e.gate_up_proj_scales"},
      {"blocks 2-D", {b("U8", {2, 16}), s("U8", {2})}, "[2, 16]", "x.e.gate_up_proj_blocks"},
      {"blocks 5-D", {b("U8", {1, 2, 1, 1, 16}), s("U8", {1, 2, 1, 1})}, "[1, 2, 1, 1, 16]", "x.e.gate_up_proj_blocks"},
      {"blocks last dim 8", {b("U8", {2, 1, 2, 8}), s("U8", {2, 1, 2})}, "must be 16", "x.e.gate_up_proj_blocks"},
      {"blocks last dim 32 (unpacked)", {b("U8", {2, 1, 1, 32}), good_s}, "must be 16", "x.e.gate_up_proj_blocks"},
      {"scales E mismatch", {good_b, s("U8", {3, 1, 1})}, "need scales [2, 1, 1]", "x.e.gate_up_proj_scales"},
      {"scales rows mismatch", {good_b, s("U8", {2, 2, 1})}, "need scales [2, 1, 1]", "x.e.gate_up_proj_scales"},
      {"scales groups mismatch", {good_b, s("U8", {2, 1, 2})}, "need scales [2, 1, 1]", "x.e.gate_up_proj_scales"},
      {"scales one per byte", {good_b, s("U8", {2, 1, 1, 16})}, "need scales [2, 1, 1]", "x.e.gate_up_proj_scales"},
      {"scales flattened", {good_b, s("U8", {2, 1})}, "need scales [2, 1, 1]", "x.e.gate_up_proj_scales"},
      {"scales transposed", {b("U8", {2, 3, 1, 16}), s("U8", {2, 1, 3})}, "need scales [2, 3, 1]", "x.e.gate_up_proj_scales"},
      {"empty, with 2^60 groups", {raw_tensor{"x.e.gate_up_proj_blocks", "U8", {0, 1, std::int64_t{1} << 60, 16}, ""},
                                   raw_tensor{"x.e.gate_up_proj_scales", "U8", {0, 1, std::int64_t{1} << 60}, ""}}, "more than the 2^58", "x.e.gate_up_proj_blocks"},
      {"NaN scale", {good_b, raw_tensor{"x.e.gate_up_proj_scales", "U8", {2, 1, 1}, u8_bytes({127, 255})}}, "scale [1, 0, 0] is 0xFF", "x.e.gate_up_proj_scales"},
  };
}

}  // namespace

TEST(Mxfp4, MalformedPairsAreErrorsNamingTheTensor) {
  for (const auto& bc : bad_cases()) {
    SCOPED_TRACE(bc.what);
    const std::string file = build(bc.tensors);
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    // a sentinel tensor that must survive the error
    lowbit::scaled_tensor q;
    const float one[32] = {1};
    ASSERT_TRUE(io::quantize_mxfp4(one, lowbit::dtype::f32, {1, 32}, q).ok());
    const auto s = io::load_mxfp4(c, "x.e.gate_up_proj", q);
    ASSERT_FALSE(s.ok());
    const std::string msg = s.message();
    EXPECT_NE(msg.find(std::string("\"") + bc.tensor + "\""), std::string::npos) << msg;
    EXPECT_NE(msg.find(bc.must_mention), std::string::npos) << msg;
    EXPECT_NE(msg.find("hand.safetensors"), std::string::npos) << msg;
    EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{1, 32})) << "output touched on error";
    std::vector<std::uint8_t> dense{1, 2, 3};
    std::vector<std::int64_t> shape{7};
    EXPECT_FALSE(io::dequantize_mxfp4(c, "x.e.gate_up_proj", lowbit::dtype::f32, dense, shape).ok());
    EXPECT_EQ(dense, (std::vector<std::uint8_t>{1, 2, 3}));
    EXPECT_EQ(shape, (std::vector<std::int64_t>{7}));
  }
  // the expected shape (E from config.json) must match
  const std::string file = build({bad_cases()[0].tensors[0], raw_tensor{"x.e.gate_up_proj_blocks", "U8", {2, 1, 1, 16}, std::string(32, '\0')}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  io::mxfp4_load_options opt;
  opt.expect_shape = {4, 1, 32};
  lowbit::scaled_tensor q;
  const auto s = io::load_mxfp4(c, "x.e.gate_up_proj", q, opt);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("shape [2, 1, 32]; expected [4, 1, 32]"), std::string::npos) << s.message();
}

TEST(Mxfp4, TruncatedFileIsRefused) {
  const std::string file = build({{"m_blocks", "U8", {1, 2, 16}, std::string(32, '\x11')}, {"m_scales", "U8", {1, 2}, u8_bytes({127, 127})}});
  scratch_dir d;
  for (std::size_t cut : {file.size() - 1, file.size() - 2, file.size() - 17, std::size_t{20}}) {
    lowbit_test::write_bytes(d / "t.safetensors", file.substr(0, cut));
    io::checkpoint c;
    EXPECT_FALSE(io::checkpoint::open(d / "t.safetensors", c).ok()) << "cut at " << cut;
  }
  lowbit_test::write_bytes(d / "t.safetensors", file);
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d / "t.safetensors", c).ok());
  lowbit::scaled_tensor q;
  EXPECT_TRUE(io::load_mxfp4(c, "m", q).ok());
}

TEST(Mxfp4, ConfigReadAndWritten) {
  io::mxfp4_config c;
  ASSERT_TRUE(io::from_json(nlohmann::json{{"quant_method", "mxfp4"}}, "cfg", c).ok());
  EXPECT_FALSE(c.has_modules_to_not_convert);
  // gpt-oss-20b's config.json (transformers' convert_gpt_oss_weights_to_hf.py writes this list)
  const auto j = nlohmann::json::parse(
      R"({"modules_to_not_convert":["model.layers.*.self_attn","model.layers.*.mlp.router","model.embed_tokens","lm_head"],"quant_method":"mxfp4"})");
  ASSERT_TRUE(io::from_json(j, "cfg", c).ok());
  ASSERT_TRUE(c.has_modules_to_not_convert);
  EXPECT_EQ(c.modules_to_not_convert.size(), 4u);
  EXPECT_EQ(c.modules_to_not_convert[3], "lm_head");
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"quant_method":"mxfp4","dequantize":true,"modules_to_not_convert":null})"), "cfg", c).ok());
  EXPECT_FALSE(c.has_modules_to_not_convert);
  for (const char* bad : {R"({"quant_method":"fp8"})", R"({"modules_to_not_convert":[]})", R"({"quant_method":"mxfp4","modules_to_not_convert":"lm_head"})",
                          R"({"quant_method":"mxfp4","modules_to_not_convert":[1]})", R"({"quant_method":"mxfp4","dequantize":"yes"})", R"([1])"}) {
    io::mxfp4_config o;
    o.has_modules_to_not_convert = true;
    EXPECT_FALSE(io::from_json(nlohmann::json::parse(bad), "cfg", o).ok()) << bad;
    EXPECT_TRUE(o.has_modules_to_not_convert) << "output touched on error";
  }
  EXPECT_EQ(io::to_json(io::mxfp4_config{}).dump(), R"({"modules_to_not_convert":null,"quant_method":"mxfp4"})");
  scratch_dir d;
  io::mxfp4_config w;
  w.has_modules_to_not_convert = true;
  w.modules_to_not_convert = {"model.layers.*.self_attn", "lm_head"};
  ASSERT_TRUE(io::write_mxfp4_config(d / "config.json", R"({"model_type":"gpt_oss","num_local_experts":32})", w).ok());
  io::mxfp4_config r;
  ASSERT_TRUE(io::read_mxfp4_config(d / "config.json", r).ok());
  EXPECT_EQ(r.modules_to_not_convert, w.modules_to_not_convert);
  const auto text = lowbit_test::read_bytes(d / "config.json");
  EXPECT_NE(text.find("\"quant_method\": \"mxfp4\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"num_local_experts\": 32"), std::string::npos) << text;
  nlohmann::json parsed = nlohmann::json::parse(text);
  std::string method;
  ASSERT_TRUE(io::quantization_method(parsed, "config.json", method).ok());
  EXPECT_EQ(method, "mxfp4");
  EXPECT_FALSE(io::read_mxfp4_config(d / "missing.json", r).ok());
  lowbit_test::write_bytes(d / "plain.json", R"({"model_type":"gpt_oss"})");
  EXPECT_FALSE(io::read_mxfp4_config(d / "plain.json", r).ok());
}

// triton_kernels' downcast_to_mxfp (ROUND_UP, the default gpt-oss and transformers use), written
// out from its description for one block: s = the exponent field of f32(amax / 6) rounded up,
// elements RNE of x * 2^(127 - s) to e2m1, saturated.
namespace {
std::uint8_t round_up_scale(float amax) {
  const float ds = amax / 6.0f;
  std::uint32_t b;
  std::memcpy(&b, &ds, 4);
  return static_cast<std::uint8_t>(((b + 0x7FFFFFu) & 0x7F800000u) >> 23);
}
}  // namespace

TEST(Mxfp4, WriteThenLoadKeepsEveryByte) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  struct shape_case {
    std::vector<std::int64_t> shape;
    lowbit::dtype dt;
  };
  for (const auto& sc : {shape_case{{4, 3, 96}, lowbit::dtype::bf16}, shape_case{{5, 64}, lowbit::dtype::f32}, shape_case{{2, 1, 32}, lowbit::dtype::f16},
                         shape_case{{0, 4, 32}, lowbit::dtype::bf16}}) {
    SCOPED_TRACE(lowbit::io::detail::mx_shape_text(sc.shape));
    std::int64_t n = 1;
    for (auto d : sc.shape) n *= d;
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> w(static_cast<std::size_t>(n));
    for (auto& v : w) v = nd(rng);
    if (n >= 64) {
      w[0] = 0.75f;                                        // outlier in block 0
      for (int i = 32; i < 64; ++i) w[static_cast<std::size_t>(i)] = i % 3 == 0 ? -0.0f : 0.0f;  // a zero block
    }
    std::vector<std::uint16_t> half(w.size());
    std::vector<float> seen(w);  // the values the quantizer sees
    const void* src = w.data();
    if (sc.dt != lowbit::dtype::f32) {
      for (std::size_t i = 0; i < w.size(); ++i) {
        half[i] = sc.dt == lowbit::dtype::bf16 ? lowbit::from_float<lowbit::bf16>(w[i]).bits : lowbit::from_float<lowbit::f16>(w[i]).bits;
        seen[i] = sc.dt == lowbit::dtype::bf16 ? lowbit::to_float(lowbit::bf16{half[i]}) : lowbit::to_float(lowbit::f16{half[i]});
      }
      src = half.data();
    }
    lowbit::scaled_tensor q;
    const auto qs = io::quantize_mxfp4(src, sc.dt, sc.shape, q);
    ASSERT_TRUE(qs.ok()) << qs.message();
    // every scale is triton's ROUND_UP of its block's amax; every code its RNE
    for (std::int64_t blk = 0; blk < n / 32; ++blk) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(seen[static_cast<std::size_t>(blk * 32 + i)]));
      const std::uint8_t s = round_up_scale(amax);
      ASSERT_EQ(q.scale_bytes()[blk], s) << "block " << blk;
      for (int i = 0; i < 32; ++i) {
        const float x = seen[static_cast<std::size_t>(blk * 32 + i)] * std::ldexp(1.0f, 127 - s);
        const std::uint8_t code = (q.codes()[blk * 16 + i / 2] >> (4 * (i % 2))) & 0xF;
        // RNE among the table: the nearest value, ties to the even code (mantissa bit 0)
        int best = 0;
        for (int cnd = 1; cnd < 8; ++cnd) {
          const float dc = std::fabs(std::fabs(x) - fp4[cnd]), db = std::fabs(std::fabs(x) - fp4[best]);
          if (dc < db || (dc == db && cnd % 2 == 0)) best = cnd;
        }
        const int want = best | (std::signbit(x) ? 8 : 0);
        ASSERT_EQ(code, want) << "block " << blk << " element " << i << " x " << x;
      }
    }
    if (n >= 64) {
      EXPECT_EQ(q.scale_bytes()[1], 0) << "zero block";
      EXPECT_EQ(q.codes()[16], 0x80);  // element 32 is +0 (low nibble), 33 is -0 (high nibble)
    }

    scratch_dir d;
    std::vector<io::tensor_entry> e;
    const std::string base = "model.layers.0.mlp.experts.gate_up_proj";
    ASSERT_TRUE(io::mxfp4_entries(base, q, e).ok());
    ASSERT_EQ(e.size(), 2u);
    std::vector<std::int64_t> want_scales(sc.shape);
    want_scales.back() /= 32;
    std::vector<std::int64_t> want_blocks(want_scales);
    want_blocks.push_back(16);
    EXPECT_EQ(e[0].name, base + "_blocks");
    EXPECT_EQ(e[0].dtype, io::st_dtype::U8);
    EXPECT_EQ(e[0].shape, want_blocks);
    EXPECT_EQ(e[1].name, base + "_scales");
    EXPECT_EQ(e[1].shape, want_scales);
    e.push_back({"model.norm.weight", io::st_dtype::F32, {2}});
    io::safetensors_writer wr;
    ASSERT_TRUE(wr.open(d / "model.safetensors", e).ok());
    ASSERT_TRUE(io::write_mxfp4(wr, q).ok());
    const float norm[2] = {1, 1};
    ASSERT_TRUE(wr.write(norm, 8).ok());
    ASSERT_TRUE(wr.commit().ok());
    ASSERT_TRUE(io::write_mxfp4_config(d / "config.json", "", io::mxfp4_config{}).ok());

    io::mxfp4_config rc;
    ASSERT_TRUE(io::read_mxfp4_config(d / "config.json", rc).ok());
    io::checkpoint ck;
    ASSERT_TRUE(io::checkpoint::open(d.path(), ck).ok());
    EXPECT_TRUE(io::is_mxfp4_pair(ck, base));
    EXPECT_FALSE(io::is_mxfp4_pair(ck, "model.norm.weight"));
    lowbit::scaled_tensor r;
    const auto s = io::load_mxfp4(ck, base, r);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(r.shape(), sc.shape);
    ASSERT_EQ(r.code_bytes(), q.code_bytes());
    if (q.code_bytes() > 0) {
      EXPECT_EQ(std::memcmp(r.codes(), q.codes(), static_cast<std::size_t>(q.code_bytes())), 0);
    }
    ASSERT_EQ(r.grid().tiles(), q.grid().tiles());
    if (q.grid().tiles() > 0) {
      EXPECT_EQ(std::memcmp(r.scale_bytes(), q.scale_bytes(), static_cast<std::size_t>(q.grid().tiles())), 0);
    }
    const auto a = dequant(q), b = dequant(r);
    if (!a.empty()) {
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
    }
  }
}

TEST(Mxfp4, WriterRefusesWhatTheLayoutCannotHold) {
  std::vector<float> x(4 * 48, 1.0f);
  lowbit::scaled_tensor q;
  // K = 48 is not a multiple of 32: no partial blocks
  auto s = io::quantize_mxfp4(x.data(), lowbit::dtype::f32, {4, 48}, q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("not a multiple of 32"), std::string::npos) << s.message();
  EXPECT_FALSE(io::quantize_mxfp4(x.data(), lowbit::dtype::f32, {1, 2, 3, 32}, q).ok());
  EXPECT_FALSE(io::quantize_mxfp4(x.data(), lowbit::dtype::f32, {192}, q).ok());
  EXPECT_EQ(q.numel(), 0);
  // NaN input: an error unless allowed, then a 0xFF scale the reader refuses by default
  x[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(io::quantize_mxfp4(x.data(), lowbit::dtype::f32, {2, 64}, q).ok());
  io::mxfp4_quantize_options qo;
  qo.engine.allow_nonfinite = true;
  ASSERT_TRUE(io::quantize_mxfp4(x.data(), lowbit::dtype::f32, {2, 64}, q, qo).ok());
  EXPECT_EQ(q.scale_bytes()[0], 0xFF);
  EXPECT_EQ(q.scale_bytes()[1], round_up_scale(1.0f));
  // other formats and tiles
  lowbit::scaled_params p;  // mxfp8_e4m3
  lowbit::scaled_tensor o;
  ASSERT_TRUE(lowbit::quantize(x.data() + 64, lowbit::dtype::f32, {1, 64}, p, o).ok());
  std::vector<io::tensor_entry> e;
  s = io::mxfp4_entries("w", o, e);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("\"w\""), std::string::npos);
  p.fmt = lowbit::scaled_format::mxfp4;
  p.gran = lowbit::granularity::per_tile(1, 16);
  ASSERT_TRUE(lowbit::quantize(x.data() + 64, lowbit::dtype::f32, {1, 64}, p, o).ok());
  EXPECT_FALSE(io::mxfp4_entries("w", o, e).ok());
  p.gran = lowbit::granularity::per_tile(1, 32);
  ASSERT_TRUE(lowbit::quantize(x.data() + 64, lowbit::dtype::f32, {1, 2, 2, 32}, p, o).ok());
  EXPECT_FALSE(io::mxfp4_entries("w", o, e).ok());
  ASSERT_TRUE(lowbit::quantize(x.data() + 64, lowbit::dtype::f32, {2, 48}, p, o).ok());  // a partial block
  EXPECT_FALSE(io::mxfp4_entries("w", o, e).ok());
  EXPECT_TRUE(e.empty());
  // the OCP floor rule on request: amax 7 -> floor(log2 7) - 2 = 0 -> 127; ROUND_UP: ceil(log2 7/6) = 1 -> 128
  std::vector<float> y(32, 0.0f);
  y[0] = 7.0f;
  io::mxfp4_quantize_options fl;
  fl.rule = lowbit::quant::mx_scale_rule::floor;
  ASSERT_TRUE(io::quantize_mxfp4(y.data(), lowbit::dtype::f32, {1, 32}, q, fl).ok());
  EXPECT_EQ(q.scale_bytes()[0], 127);
  ASSERT_TRUE(io::quantize_mxfp4(y.data(), lowbit::dtype::f32, {1, 32}, q).ok());
  EXPECT_EQ(q.scale_bytes()[0], 128);
}

// The default rule is triton's ROUND_UP: the same scale code as rceil for every amax whose
// f32(amax / 6) is a normal float, checked here over every mantissa at the exponents where the
// rounding of amax / 6 and amax * f32(1 / 6) could part (the whole float32 range was checked once
// while writing docs/mxfp4-gptoss.md); below 2^-126 the two differ as documented.
TEST(Mxfp4, RoundUpRuleEqualsRceil) {
  using codec = lowbit::codecs::e2m1fn;
  for (std::uint32_t field : {3u, 4u, 5u, 60u, 126u, 127u, 128u, 129u, 200u, 252u, 253u, 254u}) {
    std::uint32_t differ = 0, first = 0;
    for (std::uint32_t m = 0; m < (1u << 23); ++m) {
      const std::uint32_t bits = field << 23 | m;
      float amax;
      std::memcpy(&amax, &bits, 4);
      if (!(amax / 6.0f >= std::ldexp(1.0f, -126))) continue;
      if (lowbit::quant::mx_scale_code<codec>(amax, lowbit::quant::mx_scale_rule::rceil) != round_up_scale(amax) && differ++ == 0) first = bits;
    }
    EXPECT_EQ(differ, 0u) << "exponent field " << field << ", first amax bits " << lowbit_test::hex(first);
  }
  // below: amax = 6 * 2^-128, d = 2^-128 (subnormal): triton rounds up to 2^-126 (code 1), rceil
  // to 2^-127 (code 0); a zero block is code 0 in both
  const float tiny = 6.0f * std::ldexp(1.0f, -128);
  EXPECT_EQ(round_up_scale(tiny), 1);
  EXPECT_EQ((lowbit::quant::mx_scale_code<codec>(tiny, lowbit::quant::mx_scale_rule::rceil)), 0);
  EXPECT_EQ(round_up_scale(0.0f), 0);
  EXPECT_EQ((lowbit::quant::mx_scale_code<codec>(0.0f, lowbit::quant::mx_scale_rule::rceil)), 0);
}
