// SPDX-License-Identifier: Apache-2.0
// compressed-tensors checkpoints (io/compressed_tensors.hpp): the quantization_config model and
// its validation, which config group applies to a module, and the float-quantized (FP8) and
// nvfp4-pack-quantized weights: hand-built files (bytes the writer did not make) decode to
// hand-worked values; every malformed file is an error naming the tensor with the output left
// alone; quantize -> write -> load keeps every byte.
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

io::ct_quant_args fp8_args(const char* strategy, std::int64_t group = 0, std::int64_t br = 0, std::int64_t bc = 0) {
  io::ct_quant_args a;
  a.type = "float";
  a.num_bits = 8;
  a.strategy = strategy;
  a.group_size = group;
  a.block_rows = br;
  a.block_cols = bc;
  return a;
}

io::ct_quant_args nvfp4_args() {
  io::ct_quant_args a;
  a.type = "float";
  a.num_bits = 4;
  a.strategy = "tensor_group";
  a.group_size = 16;
  a.dynamic = "false";
  return a;
}

// A quantization_config as llm-compressor writes it for FP8_DYNAMIC (per-channel weights;
// compressed-tensors 0.12 writes the group's "format": null).
const char* fp8_dynamic_config = R"({
  "config_groups": {"group_0": {
    "input_activations": {"actorder": null, "block_structure": null, "dynamic": true, "group_size": null, "num_bits": 8,
                          "observer": null, "observer_kwargs": {}, "strategy": "token", "symmetric": true, "type": "float"},
    "format": null, "output_activations": null, "targets": ["Linear"],
    "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": null, "num_bits": 8,
                "observer": "minmax", "observer_kwargs": {}, "strategy": "channel", "symmetric": true, "type": "float"}}},
  "format": "float-quantized", "global_compression_ratio": 1.24, "ignore": ["lm_head"], "kv_cache_scheme": null,
  "quant_method": "compressed-tensors", "quantization_status": "compressed",
  "sparsity_config": {}, "version": "0.9.1"})";

// The sentinel a loader must leave alone on error.
lowbit::scaled_tensor sentinel() {
  lowbit::scaled_params p;
  p.fmt = lowbit::scaled_format::mxfp4;
  lowbit::scaled_tensor t;
  EXPECT_TRUE(lowbit::scaled_tensor::allocate({1, 32}, lowbit::dtype::f32, p, t).ok());
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The config
// ---------------------------------------------------------------------------------------------

TEST(CompressedTensorsConfig, ReadsLlmCompressorFp8Dynamic) {
  io::ct_config c;
  const auto s = io::from_json(nlohmann::json::parse(fp8_dynamic_config), "config.json", c);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(c.format, "float-quantized");
  EXPECT_EQ(c.quantization_status, "compressed");
  EXPECT_EQ(c.ignore, (std::vector<std::string>{"lm_head"}));
  ASSERT_EQ(c.config_groups.size(), 1u);
  const auto& g = c.config_groups[0];
  EXPECT_EQ(g.first, "group_0");
  EXPECT_EQ(g.second.targets, (std::vector<std::string>{"Linear"}));
  ASSERT_TRUE(g.second.has_weights);
  EXPECT_EQ(g.second.weights.type, "float");
  EXPECT_EQ(g.second.weights.num_bits, 8);
  EXPECT_EQ(g.second.weights.strategy, "channel");
  EXPECT_EQ(g.second.weights.dynamic, "false");
  EXPECT_EQ(g.second.weights.observer, "minmax");
  ASSERT_TRUE(g.second.has_input_activations);
  EXPECT_EQ(g.second.input_activations.strategy, "token");
  EXPECT_EQ(g.second.input_activations.dynamic, "true");
  EXPECT_FALSE(g.second.has_output_activations);
  EXPECT_FALSE(c.has_kv_cache_scheme);
  EXPECT_EQ(c.extra["version"], "0.9.1");
  EXPECT_EQ(c.extra["global_compression_ratio"], 1.24);
}

TEST(CompressedTensorsConfig, RoundTripsThroughJsonAndFile) {
  io::ct_config c;
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(fp8_dynamic_config), "config.json", c).ok());
  const nlohmann::ordered_json j = io::to_json(c);
  EXPECT_EQ(j["quant_method"], "compressed-tensors");
  EXPECT_EQ(j["config_groups"]["group_0"]["weights"]["strategy"], "channel");
  EXPECT_EQ(j["config_groups"]["group_0"]["weights"]["group_size"], nullptr);
  EXPECT_EQ(j["config_groups"]["group_0"]["weights"]["dynamic"], false);
  EXPECT_EQ(j["config_groups"]["group_0"]["input_activations"]["dynamic"], true);
  EXPECT_EQ(j["config_groups"]["group_0"]["output_activations"], nullptr);
  EXPECT_EQ(j["kv_cache_scheme"], nullptr);
  EXPECT_EQ(j["version"], "0.9.1");
  // The semantics survive: the original and the written object parse to the same JSON.
  EXPECT_EQ(nlohmann::json::parse(j.dump()), nlohmann::json::parse(fp8_dynamic_config));

  scratch_dir d;
  ASSERT_FALSE(d.path().empty());
  ASSERT_TRUE(io::write_ct_config(d / "config.json", R"({"model_type": "llama", "quantization_config": {"quant_method": "fp8"}})", c).ok());
  io::ct_config back;
  const auto s = io::read_ct_config(d / "config.json", back);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(io::to_json(back).dump(), j.dump());
  EXPECT_NE(lowbit_test::read_bytes(d / "config.json").find("\"model_type\": \"llama\""), std::string::npos);
}

TEST(CompressedTensorsConfig, InfersStrategyAsCompressedTensorsDoes) {
  io::ct_quant_args a;
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"num_bits": 4, "group_size": 128})"), "w", a).ok());
  EXPECT_EQ(a.strategy, "group");
  EXPECT_EQ(a.type, "int");
  EXPECT_TRUE(a.symmetric);
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"group_size": -1})"), "w", a).ok());
  EXPECT_EQ(a.strategy, "channel");
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({})"), "w", a).ok());
  EXPECT_EQ(a.strategy, "tensor");
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"type": "FLOAT", "strategy": "BLOCK", "block_structure": "128x64"})"), "w", a).ok());
  EXPECT_EQ(a.type, "float");
  EXPECT_EQ(a.strategy, "block");
  EXPECT_EQ(a.block_rows, 128);
  EXPECT_EQ(a.block_cols, 64);
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"strategy": "tensor_group", "group_size": 16, "dynamic": "local", "scale_dtype": "x"})"), "w", a).ok());
  EXPECT_EQ(a.dynamic, "local");
  EXPECT_EQ(a.extra["scale_dtype"], "x");  // an unknown key is kept
  EXPECT_EQ(io::to_json(a)["scale_dtype"], "x");
}

TEST(CompressedTensorsConfig, MalformedIsAnErrorNamingTheKey) {
  const std::vector<std::pair<const char*, const char*>> cases{
      {R"({"num_bits": 0})", "num_bits"},
      {R"({"num_bits": "8"})", "num_bits"},
      {R"({"type": "complex"})", "type"},
      {R"({"symmetric": 1})", "symmetric"},
      {R"({"strategy": "row"})", "strategy"},
      {R"({"group_size": 0})", "group_size"},
      {R"({"group_size": -2})", "group_size"},
      {R"({"group_size": 18446744073709551615})", "group_size"},
      {R"({"strategy": "group"})", "group_size"},
      {R"({"strategy": "channel", "group_size": 128})", "group_size"},
      {R"({"strategy": "block"})", "block_structure"},
      {R"({"block_structure": [128, 128]})", "block_structure"},
      {R"({"strategy": "block", "block_structure": [128]})", "block_structure"},
      {R"({"strategy": "block", "block_structure": [0, 128]})", "block_structure"},
      {R"({"strategy": "block", "block_structure": "axb"})", "block_structure"},
      {R"({"dynamic": "yes"})", "dynamic"},
      {R"({"dynamic": "local"})", "local"},
      {R"({"strategy": "token"})", "dynamic"},
      {R"({"strategy": "channel", "dynamic": true})", "dynamic"},
      {R"({"actorder": "group"})", "actorder"},
      {R"({"actorder": "sideways", "group_size": 128})", "actorder"},
      {R"({"observer": 3})", "observer"},
      {R"({"observer_kwargs": []})", "observer_kwargs"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.first);
    io::ct_quant_args a;
    a.num_bits = 3;
    const auto s = io::from_json(nlohmann::json::parse(c.first), "cfg: weights", a);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(c.second), std::string::npos) << s.message();
    EXPECT_NE(std::string(s.message()).find("cfg: weights"), std::string::npos) << s.message();
    EXPECT_EQ(a.num_bits, 3);  // unchanged
  }
  const std::vector<std::pair<const char*, const char*>> configs{
      {R"([])", "not an object"},
      {R"({"config_groups": {}})", "quant_method"},
      {R"({"quant_method": "fp8", "config_groups": {}})", "quant_method"},
      {R"({"quant_method": "compressed-tensors"})", "config_groups"},
      {R"({"quant_method": "compressed-tensors", "config_groups": []})", "config_groups"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": ["Linear"]}})", "preset"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": 5}})", "config_groups.g"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights": null}}})", "targets"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": [1]}}})", "targets"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "wieghts": {}}}})", "wieghts"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": -1}}}})", "config_groups.g.weights"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"targets": ["Linear"], "format": 3}}})", "format"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {}, "format": null})", "format"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {}, "quantization_status": "done"})", "quantization_status"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {}, "ignore": "lm_head"})", "ignore"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {}, "ignore": [null]})", "ignore"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {}, "kv_cache_scheme": {"type": "x"}})", "kv_cache_scheme"},
  };
  for (const auto& c : configs) {
    SCOPED_TRACE(c.first);
    io::ct_config cfg;
    cfg.format = "sentinel";
    const auto s = io::from_json(nlohmann::json::parse(c.first), "cfg.json", cfg);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(c.second), std::string::npos) << s.message();
    EXPECT_EQ(cfg.format, "sentinel");
  }
}

TEST(CompressedTensorsConfig, GroupOfModule) {
  io::ct_config c;
  const char* text = R"({"quant_method": "compressed-tensors", "format": "float-quantized",
    "ignore": ["lm_head", "re:.*mlp.gate$"],
    "config_groups": {
      "g0": {"targets": ["Linear"]},
      "g1": {"targets": ["re:.*mlp\\..*_proj"]},
      "g2": {"targets": ["model.layers.0.self_attn.q_proj"]},
      "g3": {"targets": ["re:model.layers.1.self_attn"]}}})";
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(text), "cfg", c).ok());
  const std::vector<std::pair<const char*, const char*>> want{
      {"lm_head", ""},                                   // ignored by name
      {"model.layers.3.mlp.gate", ""},                   // ignored by regex
      {"model.layers.0.self_attn.q_proj", "g2"},         // exact name beats the rest
      {"model.layers.3.mlp.up_proj", "g1"},              // regex beats Linear
      {"model.layers.1.self_attn.k_proj", "g3"},         // re.match: a prefix match suffices
      {"model.layers.2.self_attn.k_proj", "g0"},         // only Linear
      {"xmodel.layers.1.self_attn.k_proj", "g0"},        // re.match is anchored at the start
  };
  for (const auto& w : want) {
    std::string g = "sentinel";
    const auto s = io::ct_group_of(c, w.first, g);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(g, w.second) << w.first;
  }
  // A target listed by two groups is refused (the file order that decides it is not kept); no
  // match at all gives "".
  io::ct_config d;
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"quant_method": "compressed-tensors",
    "config_groups": {"a": {"targets": ["m.x"]}, "b": {"targets": ["m.x"]}}})"), "cfg", d).ok());
  std::string g = "sentinel";
  const auto s = io::ct_group_of(d, "m.x", g);
  EXPECT_EQ(s.code(), lowbit::errc::unsupported);
  EXPECT_NE(std::string(s.message()).find("listed by config groups a and b"), std::string::npos) << s.message();
  EXPECT_EQ(g, "sentinel");
  ASSERT_TRUE(io::ct_group_of(c, "model.layers.9.unknown", g).ok());
  EXPECT_EQ(g, "g0");  // Linear
  io::ct_config e;
  ASSERT_TRUE(io::from_json(nlohmann::json::parse(R"({"quant_method": "compressed-tensors", "config_groups": {"a": {"targets": ["m.x"]}}})"), "cfg", e).ok());
  ASSERT_TRUE(io::ct_group_of(e, "m.y", g).ok());
  EXPECT_EQ(g, "");
}

TEST(CompressedTensorsConfig, UndecidableTargetsAreUnsupported) {
  for (const char* t : {"Embedding", "Qwen3MoeSparseMoeBlock", "re:(?P<x>a)", "re:(?<=a)b", "re:[unclosed"}) {
    SCOPED_TRACE(t);
    io::ct_config c;
    c.config_groups.push_back({"g", io::ct_scheme{}});
    c.config_groups[0].second.targets = {t};
    std::string g = "sentinel";
    auto s = io::ct_group_of(c, "model.layers.0.mlp.up_proj", g);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), lowbit::errc::unsupported);
    EXPECT_NE(std::string(s.message()).find(t), std::string::npos) << s.message();
    EXPECT_EQ(g, "sentinel");
    // the same in ignore
    io::ct_config i;
    i.ignore = {t};
    s = io::ct_group_of(i, "model.layers.0.mlp.up_proj", g);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(g, "sentinel");
  }
}

// ---------------------------------------------------------------------------------------------
// float-quantized (FP8)
// ---------------------------------------------------------------------------------------------

// e4m3fn codes by hand: 0x38 = 2^(7-7) = 1, 0x40 = 2, 0x48 = 4, 0xB8 = -1, 0xC0 = -2, 0x3C = 1.5,
// 0x7E = 2^8 * 1.75 = 448, 0x01 = 2^-9, 0x00 = 0, 0x80 = -0.
TEST(CompressedTensorsFp8, HandWorkedPerChannelWithBf16Scales) {
  // [2, 3]; scale [2, 1] BF16 0.5 (0x3F00) and 2 (0x4000).
  const std::string file = build({{"m.weight", "F8_E4M3", {2, 3}, u8_bytes({0x38, 0x40, 0xB8, 0x3C, 0x00, 0x7E})},
                                  {"m.weight_scale", "BF16", {2, 1}, u16_bytes({0x3F00, 0x4000})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  const auto s = io::load_ct_fp8(c, "m", fp8_args("channel"), q);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(q.tile().rows, 1);
  EXPECT_EQ(q.tile().cols, 3);
  const std::vector<float> want{0.5f, 1.0f, -0.5f, 3.0f, 0.0f, 896.0f};
  EXPECT_EQ(dequant(q), want);
}

TEST(CompressedTensorsFp8, HandWorkedPerTensorScalarAndOneElementScale) {
  for (const std::vector<std::int64_t>& sshape : {std::vector<std::int64_t>{}, std::vector<std::int64_t>{1}}) {
    const std::string file = build({{"m.weight", "F8_E4M3", {2, 2}, u8_bytes({0x40, 0xC0, 0x01, 0x80})}, {"m.weight_scale", "F32", sshape, f32_bytes({0.25f})}});
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    lowbit::scaled_tensor q;
    const auto s = io::load_ct_fp8(c, "m", fp8_args("tensor"), q);
    ASSERT_TRUE(s.ok()) << s.message();
    const auto got = dequant(q);
    EXPECT_EQ(got, (std::vector<float>{0.5f, -0.5f, std::ldexp(1.0f, -11), 0.0f}));
    EXPECT_TRUE(std::signbit(got[3]));
  }
}

TEST(CompressedTensorsFp8, HandWorkedBlocksWithPartialEdgesAndF16Scales) {
  // [3, 3] in 2 x 2 blocks: scale [2, 2] F16 0.5 (0x3800), 2 (0x4000), 4 (0x4400), 0.25 (0x3400).
  const std::string file = build({{"m.weight", "F8_E4M3", {3, 3}, u8_bytes({0x38, 0x40, 0xB8, 0x01, 0x7E, 0x00, 0x80, 0x3C, 0x40})},
                                  {"m.weight_scale", "F16", {2, 2}, u16_bytes({0x3800, 0x4000, 0x4400, 0x3400})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  const auto s = io::load_ct_fp8(c, "m", fp8_args("block", 0, 2, 2), q);
  ASSERT_TRUE(s.ok()) << s.message();
  const std::vector<float> want{0.5f, 1.0f, -2.0f, std::ldexp(1.0f, -10), 224.0f, 0.0f, -0.0f, 6.0f, 0.5f};
  EXPECT_EQ(dequant(q), want);
  // F16 scales have no float32 bytes to point at: the view refuses, naming why
  lowbit::host::scaled_view v;
  const auto vs = io::view_ct_weight(c, "m", fp8_args("block", 0, 2, 2), v);
  EXPECT_EQ(vs.code(), lowbit::errc::unsupported);
  EXPECT_NE(std::string(vs.message()).find("F16 weight_scale cannot be viewed"), std::string::npos) << vs.message();
  // with F32 scales it points into the mapping and decodes to the same values
  const std::string f32file = build({{"m.weight", "F8_E4M3", {3, 3}, u8_bytes({0x38, 0x40, 0xB8, 0x01, 0x7E, 0x00, 0x80, 0x3C, 0x40})},
                                     {"m.weight_scale", "F32", {2, 2}, f32_bytes({0.5f, 2.0f, 4.0f, 0.25f})}});
  io::checkpoint c32;
  ASSERT_TRUE(open_bytes(f32file, c32).ok());
  ASSERT_TRUE(io::view_ct_weight(c32, "m", fp8_args("block", 0, 2, 2), v).ok());
  EXPECT_EQ(v.codes, c32.find("m.weight").file->data(*c32.find("m.weight").tensor));
  std::vector<float> viewed(9);
  ASSERT_TRUE(lowbit::host::dequantize_scaled(v, viewed.data(), lowbit::dtype::f32).ok());
  EXPECT_EQ(viewed, want);
}

TEST(CompressedTensorsFp8, HandWorkedGroups) {
  // [1, 4] in groups of 2: scale [1, 2] F32 2 and 0.125.
  const std::string file = build({{"m.weight", "F8_E4M3", {1, 4}, u8_bytes({0x38, 0x38, 0x40, 0x48})}, {"m.weight_scale", "F32", {1, 2}, f32_bytes({2.0f, 0.125f})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  ASSERT_TRUE(io::load_ct_fp8(c, "m", fp8_args("group", 2), q).ok());
  EXPECT_EQ(dequant(q), (std::vector<float>{2.0f, 2.0f, 0.25f, 0.5f}));
}

TEST(CompressedTensorsFp8, ZeroZeroPointIsAccepted) {
  const std::string file = build({{"m.weight", "F8_E4M3", {1, 2}, u8_bytes({0x38, 0x40})},
                                  {"m.weight_scale", "F32", {1, 1}, f32_bytes({3.0f})},
                                  {"m.weight_zero_point", "F8_E4M3", {1, 1}, u8_bytes({0x00})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  ASSERT_TRUE(io::load_ct_fp8(c, "m", fp8_args("channel"), q).ok());
  EXPECT_EQ(dequant(q), (std::vector<float>{3.0f, 6.0f}));
}

TEST(CompressedTensorsFp8, MalformedIsAnErrorWithOutUnchanged) {
  const std::string w = u8_bytes({0x38, 0x40, 0xB8, 0x3C});
  const std::string s2 = f32_bytes({1.0f, 2.0f});
  struct bad {
    const char* what;
    std::vector<raw_tensor> ts;
    io::ct_quant_args args;
    const char* needle;
  };
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<bad> cases{
      {"no weight", {{"m.weight_scale", "F32", {2, 1}, s2}}, fp8_args("channel"), "\"m.weight\" (of weight \"m.weight\") is missing"},
      {"no scale", {{"m.weight", "F8_E4M3", {2, 2}, w}}, fp8_args("channel"), "\"m.weight_scale\" (of weight \"m.weight\") is missing"},
      {"weight dtype", {{"m.weight", "U8", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, s2}}, fp8_args("channel"), "has dtype U8"},
      {"weight 1-D", {{"m.weight", "F8_E4M3", {4}, w}, {"m.weight_scale", "F32", {2, 1}, s2}}, fp8_args("channel"), "has shape [4]"},
      {"weight empty", {{"m.weight", "F8_E4M3", {0, 2}, ""}, {"m.weight_scale", "F32", {0, 1}, ""}}, fp8_args("channel"), "has shape [0, 2]"},
      {"scale dtype", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "I32", {2, 1}, s2}}, fp8_args("channel"), "has dtype I32"},
      {"channel shape", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {1, 2}, s2}}, fp8_args("channel"), "needs [2, 1]"},
      {"tensor shape", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2}, s2}}, fp8_args("tensor"), "needs [1]"},
      {"group shape", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, s2}}, fp8_args("group", 1), "needs [2, 2]"},
      {"block shape", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, s2}}, fp8_args("block", 0, 2, 1), "has shape [2, 1]"},
      {"NaN scale", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1.0f, nan})}}, fp8_args("channel"), "scale 1 is NaN"},
      {"Inf scale", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({inf, 1.0f})}}, fp8_args("channel"), "scale 0 is infinite"},
      {"NaN code", {{"m.weight", "F8_E4M3", {2, 2}, u8_bytes({0x38, 0x40, 0xFF, 0x3C})}, {"m.weight_scale", "F32", {2, 1}, s2}}, fp8_args("channel"),
       "element [1, 0] is the NaN code 0xFF"},
      {"zero point", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, s2}, {"m.weight_zero_point", "I8", {2, 1}, u8_bytes({0, 1})}},
       fp8_args("channel"), "nonzero zero point"},
      {"zero point count", {{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, s2}, {"m.weight_zero_point", "I8", {1}, u8_bytes({0})}},
       fp8_args("channel"), "has 1 elements"},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.what);
    const std::string file = build(b.ts);
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    lowbit::scaled_tensor q = sentinel();
    const auto s = io::load_ct_fp8(c, "m", b.args, q);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(b.needle), std::string::npos) << s.message();
    EXPECT_NE(std::string(s.message()).find("hand.safetensors"), std::string::npos) << s.message();
    EXPECT_EQ(q.fmt(), lowbit::scaled_format::mxfp4);
    EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{1, 32}));
  }
  // Args that are not float-quantized FP8.
  io::ct_quant_args a = fp8_args("channel");
  a.type = "int";
  const std::string file = build({{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, s2}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q = sentinel();
  EXPECT_EQ(io::load_ct_fp8(c, "m", a, q).code(), lowbit::errc::unsupported);
  a = fp8_args("token");
  EXPECT_EQ(io::load_ct_fp8(c, "m", a, q).code(), lowbit::errc::unsupported);
  // Args built by hand (not through from_json) with an empty group or block: an error, no division.
  EXPECT_EQ(io::load_ct_fp8(c, "m", fp8_args("group", 0), q).code(), lowbit::errc::invalid_argument);
  EXPECT_EQ(io::load_ct_fp8(c, "m", fp8_args("block", 0, 0, 2), q).code(), lowbit::errc::invalid_argument);
  std::vector<float> x(4, 1.0f);
  EXPECT_EQ(io::quantize_ct_fp8(x.data(), lowbit::dtype::f32, {2, 2}, fp8_args("group", 0), q).code(), lowbit::errc::invalid_argument);
  EXPECT_EQ(q.fmt(), lowbit::scaled_format::mxfp4);
  // allow_nonfinite lets NaN through, decoded by IEEE arithmetic.
  const std::string nf = build({{"m.weight", "F8_E4M3", {2, 2}, w}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1.0f, nan})}});
  io::checkpoint cn;
  ASSERT_TRUE(open_bytes(nf, cn).ok());
  io::ct_load_options o;
  o.allow_nonfinite = true;
  ASSERT_TRUE(io::load_ct_fp8(cn, "m", fp8_args("channel"), q, o).ok());
  const auto got = dequant(q);
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_TRUE(std::isnan(got[2]));
}

TEST(CompressedTensorsFp8, QuantizeWriteLoadKeepsEveryByte) {
  const unsigned seed = 20261203u;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  const std::int64_t n = 37, k = 70;
  std::vector<float> w(static_cast<std::size_t>(n * k));
  for (auto& x : w) x = nd(rng);
  for (std::int64_t k2 = 0; k2 < k; ++k2) w[static_cast<std::size_t>(5 * k + k2)] = 0.0f;  // a zero row
  const std::vector<io::ct_quant_args> all{fp8_args("tensor"), fp8_args("channel"), fp8_args("group", 32), fp8_args("block", 0, 16, 32)};
  for (const auto& a : all) {
    SCOPED_TRACE(a.strategy);
    io::ct_encoded e;
    const auto s = io::ct_encode_weight("model.layers.0.mlp.up_proj", w.data(), {n, k}, a, "float-quantized", e);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(e.entries.size(), 2u);
    EXPECT_EQ(e.entries[0].name, "model.layers.0.mlp.up_proj.weight");
    EXPECT_EQ(e.entries[0].dtype, io::st_dtype::F8_E4M3);
    EXPECT_EQ(e.entries[1].name, "model.layers.0.mlp.up_proj.weight_scale");
    EXPECT_EQ(e.entries[1].dtype, io::st_dtype::F32);
    const std::vector<std::int64_t> sshape = a.strategy == "tensor"    ? std::vector<std::int64_t>{1}
                                             : a.strategy == "channel" ? std::vector<std::int64_t>{n, 1}
                                             : a.strategy == "group"   ? std::vector<std::int64_t>{n, 3}
                                                                       : std::vector<std::int64_t>{3, 3};
    EXPECT_EQ(e.entries[1].shape, sshape);
    // compressed-tensors' scale, by hand: amax / 448 of the first scale's tile.
    float amax = 0.0f;
    const std::int64_t tr = a.strategy == "tensor" ? n : a.strategy == "block" ? 16 : 1;
    const std::int64_t tc = a.strategy == "group" ? 32 : a.strategy == "block" ? 32 : k;
    for (std::int64_t r = 0; r < tr; ++r)
      for (std::int64_t cc = 0; cc < tc; ++cc) amax = std::max(amax, std::fabs(w[static_cast<std::size_t>(r * k + cc)]));
    float s0;
    std::memcpy(&s0, e.data[1].data(), 4);
    EXPECT_EQ(s0, amax / 448.0f);

    scratch_dir d;
    ASSERT_FALSE(d.path().empty());
    io::safetensors_writer wr;
    ASSERT_TRUE(wr.open(d / "model.safetensors", e.entries).ok());
    ASSERT_TRUE(io::write_ct_encoded(wr, e).ok());
    ASSERT_TRUE(wr.commit().ok());
    io::checkpoint c;
    ASSERT_TRUE(io::checkpoint::open(d / "model.safetensors", c).ok());
    lowbit::scaled_tensor q;
    const auto ls = io::load_ct_fp8(c, "model.layers.0.mlp.up_proj", a, q);
    ASSERT_TRUE(ls.ok()) << ls.message();
    ASSERT_EQ(q.code_bytes(), static_cast<std::int64_t>(e.data[0].size()));
    EXPECT_EQ(std::memcmp(q.codes(), e.data[0].data(), e.data[0].size()), 0);
    EXPECT_EQ(std::memcmp(q.scale_bytes(), e.data[1].data(), e.data[1].size()), 0);

    // By module name through the config, as the tool asks.
    io::ct_config cfg;
    cfg.format = "float-quantized";
    cfg.ignore = {"lm_head"};
    cfg.config_groups.push_back({"group_0", io::ct_scheme{}});
    cfg.config_groups[0].second.targets = {"Linear"};
    cfg.config_groups[0].second.has_weights = true;
    cfg.config_groups[0].second.weights = a;
    std::vector<float> values;
    std::vector<std::int64_t> shape;
    const auto ds = io::dequantize_ct_weight(c, cfg, "model.layers.0.mlp.up_proj", values, shape);
    ASSERT_TRUE(ds.ok()) << ds.message();
    EXPECT_EQ(shape, (std::vector<std::int64_t>{n, k}));
    EXPECT_EQ(values, dequant(q));
    for (std::size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(values[i], w[i], std::fabs(w[i]) / 8 + 1e-3f) << i;
    EXPECT_EQ(io::dequantize_ct_weight(c, cfg, "lm_head", values, shape).code(), lowbit::errc::invalid_argument);
  }
}

// ---------------------------------------------------------------------------------------------
// nvfp4-pack-quantized
// ---------------------------------------------------------------------------------------------

// e2m1 codes by hand: magnitude index 0..7 = 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 the sign. Byte
// 0x21: element 2j = code 1 (0.5) in the low nibble, element 2j+1 = code 2 (1). e4m3 0x38 = 1,
// 0x40 = 2; global 4: factors 1 / 4 and 2 / 4.
TEST(CompressedTensorsNvfp4, HandWorkedBytes) {
  std::vector<std::uint8_t> packed(16, 0x00);
  packed[0] = 0x21;  // 0.5, 1
  packed[1] = 0x7F;  // -6, 6
  packed[8] = 0x9A;  // -1, -0.5
  const std::string file = build({{"m.weight_packed", "U8", {1, 16}, u8_bytes(packed)},
                                  {"m.weight_scale", "F8_E4M3", {1, 2}, u8_bytes({0x38, 0x40})},
                                  {"m.weight_global_scale", "F32", {1}, f32_bytes({4.0f})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  const auto s = io::load_ct_nvfp4(c, "m", nvfp4_args(), q);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(q.shape(), (std::vector<std::int64_t>{1, 32}));
  EXPECT_EQ(q.global_scale(), 4.0f);
  std::vector<float> want(32, 0.0f);
  want[0] = 0.125f;
  want[1] = 0.25f;
  want[2] = -1.5f;
  want[3] = 1.5f;
  want[16] = -0.5f;
  want[17] = -0.25f;
  EXPECT_EQ(dequant(q), want);
  // The copy: codes and scales are the file's bytes.
  EXPECT_EQ(std::memcmp(q.codes(), packed.data(), 16), 0);
  EXPECT_EQ(q.scale_bytes()[0], 0x38);
  EXPECT_EQ(q.scale_bytes()[1], 0x40);
  // The zero-copy view: pointers into the mapping, the global scale copied, the same values.
  lowbit::host::scaled_view v;
  ASSERT_TRUE(io::view_ct_weight(c, "m", nvfp4_args(), v).ok());
  EXPECT_EQ(v.codes, c.find("m.weight_packed").file->data(*c.find("m.weight_packed").tensor));
  EXPECT_EQ(v.scales, static_cast<const void*>(c.find("m.weight_scale").file->data(*c.find("m.weight_scale").tensor)));
  EXPECT_EQ(v.global_scale, 4.0f);
  std::vector<float> viewed(32);
  ASSERT_TRUE(lowbit::host::dequantize_scaled(v, viewed.data(), lowbit::dtype::f32).ok());
  EXPECT_EQ(viewed, want);
}

TEST(CompressedTensorsNvfp4, PartialLastGroup) {
  // K = 24: scale [1, 2]; the second group holds 8 elements. Every code 2 (1.0): 0x22.
  const std::string file = build({{"m.weight_packed", "U8", {1, 12}, u8_bytes(std::vector<std::uint8_t>(12, 0x22))},
                                  {"m.weight_scale", "F8_E4M3", {1, 2}, u8_bytes({0x38, 0x48})},
                                  {"m.weight_global_scale", "F32", {}, f32_bytes({2.0f})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q;
  ASSERT_TRUE(io::load_ct_nvfp4(c, "m", nvfp4_args(), q).ok());
  const auto got = dequant(q);
  ASSERT_EQ(got.size(), 24u);
  for (std::size_t i = 0; i < 24; ++i) EXPECT_EQ(got[i], i < 16 ? 0.5f : 2.0f) << i;
}

TEST(CompressedTensorsNvfp4, MalformedIsAnErrorWithOutUnchanged) {
  const std::string p = u8_bytes(std::vector<std::uint8_t>(16, 0x22));
  const std::string sc = u8_bytes({0x38, 0x40});
  const std::string g = f32_bytes({4.0f});
  struct bad {
    const char* what;
    std::vector<raw_tensor> ts;
    const char* needle;
  };
  const std::vector<bad> cases{
      {"no packed", {{"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "F32", {1}, g}}, "\"m.weight_packed\""},
      {"no scale", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_global_scale", "F32", {1}, g}}, "\"m.weight_scale\""},
      {"no global", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}}, "\"m.weight_global_scale\""},
      {"packed dtype", {{"m.weight_packed", "I8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "F32", {1}, g}}, "has dtype I8"},
      {"packed 1-D", {{"m.weight_packed", "U8", {16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "F32", {1}, g}}, "has shape [16]"},
      {"scale dtype", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "U8", {1, 2}, sc}, {"m.weight_global_scale", "F32", {1}, g}}, "has dtype U8"},
      {"scale shape", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {2, 1}, sc}, {"m.weight_global_scale", "F32", {1}, g}}, "needs [1, 2]"},
      {"global dtype", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "BF16", {2}, u16_bytes({1, 2})}},
       "has dtype BF16"},
      {"global shape", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "F32", {2}, f32_bytes({1, 2})}},
       "needs [1]"},
      {"global zero", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "F32", {1}, f32_bytes({0.0f})}},
       "finite and > 0"},
      {"global inf",
       {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc},
        {"m.weight_global_scale", "F32", {1}, f32_bytes({std::numeric_limits<float>::infinity()})}},
       "finite and > 0"},
      {"NaN scale", {{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, u8_bytes({0x38, 0xFF})}, {"m.weight_global_scale", "F32", {1}, g}},
       "scale [0, 1] is the NaN code 0xFF"},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.what);
    const std::string file = build(b.ts);
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    lowbit::scaled_tensor q = sentinel();
    const auto s = io::load_ct_nvfp4(c, "m", nvfp4_args(), q);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(b.needle), std::string::npos) << s.message();
    EXPECT_EQ(q.fmt(), lowbit::scaled_format::mxfp4);
  }
  io::ct_quant_args a = nvfp4_args();
  a.group_size = 32;
  const std::string file = build({{"m.weight_packed", "U8", {1, 16}, p}, {"m.weight_scale", "F8_E4M3", {1, 2}, sc}, {"m.weight_global_scale", "F32", {1}, g}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  lowbit::scaled_tensor q = sentinel();
  EXPECT_EQ(io::load_ct_nvfp4(c, "m", a, q).code(), lowbit::errc::unsupported);
  EXPECT_EQ(q.fmt(), lowbit::scaled_format::mxfp4);
}

TEST(CompressedTensorsNvfp4, QuantizeWriteLoadKeepsEveryByte) {
  const unsigned seed = 17u;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  const std::int64_t n = 9, k = 48;
  std::vector<float> w(static_cast<std::size_t>(n * k));
  for (auto& x : w) x = nd(rng);
  io::ct_encoded e;
  const auto s = io::ct_encode_weight("l", w.data(), {n, k}, nvfp4_args(), "nvfp4-pack-quantized", e);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(e.entries.size(), 3u);
  EXPECT_EQ(e.entries[0].name, "l.weight_packed");
  EXPECT_EQ(e.entries[0].shape, (std::vector<std::int64_t>{n, k / 2}));
  EXPECT_EQ(e.entries[1].name, "l.weight_scale");
  EXPECT_EQ(e.entries[1].dtype, io::st_dtype::F8_E4M3);
  EXPECT_EQ(e.entries[1].shape, (std::vector<std::int64_t>{n, 3}));
  EXPECT_EQ(e.entries[2].name, "l.weight_global_scale");
  EXPECT_EQ(e.entries[2].shape, (std::vector<std::int64_t>{1}));
  // compressed-tensors' global scale, by hand: 448 * 6 / amax.
  float amax = 0.0f;
  for (float x : w) amax = std::max(amax, std::fabs(x));
  float g;
  std::memcpy(&g, e.data[2].data(), 4);
  EXPECT_EQ(g, 2688.0f / amax);

  scratch_dir d;
  ASSERT_FALSE(d.path().empty());
  io::safetensors_writer wr;
  ASSERT_TRUE(wr.open(d / "model.safetensors", e.entries).ok());
  ASSERT_TRUE(io::write_ct_encoded(wr, e).ok());
  ASSERT_TRUE(wr.commit().ok());
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d / "model.safetensors", c).ok());
  io::ct_config cfg;
  cfg.format = "float-quantized";  // the group's own format wins (mixed-precision)
  cfg.config_groups.push_back({"g", io::ct_scheme{}});
  cfg.config_groups[0].second.targets = {"re:l$"};
  cfg.config_groups[0].second.has_weights = true;
  cfg.config_groups[0].second.weights = nvfp4_args();
  cfg.config_groups[0].second.format = "nvfp4-pack-quantized";
  lowbit::scaled_tensor q;
  const auto ls = io::load_ct_weight(c, cfg, "l", q);
  ASSERT_TRUE(ls.ok()) << ls.message();
  EXPECT_EQ(std::memcmp(q.codes(), e.data[0].data(), e.data[0].size()), 0);
  EXPECT_EQ(std::memcmp(q.scale_bytes(), e.data[1].data(), e.data[1].size()), 0);
  EXPECT_EQ(q.global_scale(), g);
  std::vector<float> values;
  std::vector<std::int64_t> shape;
  ASSERT_TRUE(io::dequantize_ct_weight(c, cfg, "l", values, shape).ok());
  // Each value is e2m1(q) * f32(b / g), worked here from the bytes.
  static const float e2m1[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t col = 0; col < k; ++col) {
      const std::size_t i = static_cast<std::size_t>(r * k + col);
      const std::uint8_t byte = e.data[0][i / 2];
      const std::uint8_t code = (col % 2 == 0) ? (byte & 0xF) : (byte >> 4);
      const float b = lowbit::codecs::e4m3fn::decode(e.data[1][static_cast<std::size_t>(r * 3 + col / 16)]);
      const float v = (code & 8 ? -1.0f : 1.0f) * e2m1[code & 7] * (b / g);
      ASSERT_EQ(values[i], v) << r << ", " << col;
    }
  // Odd K and the wrong format are errors.
  io::ct_encoded e2;
  EXPECT_FALSE(io::ct_encode_weight("l", w.data(), {n * k}, nvfp4_args(), "nvfp4-pack-quantized", e2).ok());
  EXPECT_FALSE(io::ct_encode_weight("l", w.data(), {1, 3}, nvfp4_args(), "nvfp4-pack-quantized", e2).ok());
  EXPECT_EQ(io::ct_encode_weight("l", w.data(), {n, k}, nvfp4_args(), "pack-quantized", e2).code(), lowbit::errc::unsupported);
  EXPECT_TRUE(e2.entries.empty());
}

// ---------------------------------------------------------------------------------------------
// pack-quantized
// ---------------------------------------------------------------------------------------------

namespace {

io::ct_quant_args int_args(int bits, const char* strategy, std::int64_t group = 0, bool symmetric = true) {
  io::ct_quant_args a;
  a.num_bits = bits;
  a.strategy = strategy;
  a.group_size = group;
  a.symmetric = symmetric;
  return a;
}

std::string i64_bytes(const std::vector<std::int64_t>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 8); }
std::string i32_bytes(const std::vector<std::uint32_t>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

// int4 [2, 10] in groups of 8 (the second group partial), by hand. Row 0 codes -8 -7 -1 0 1 7 3 -2 |
// 5 -4 are stored as q + 8 = 0 1 7 8 9 15 11 6 | 13 4, eight nibbles a word from the low end:
// 0x6BF98710, then 0x0000004D (padding nibbles 0). Row 1 is all code 0 (nibble 8): 0x88888888,
// 0x00000088. Scales BF16: row 0 0.5 (0x3F00) and 2 (0x4000); row 1 1 (0x3F80) and 0.25 (0x3E80).
std::vector<raw_tensor> int4_file(bool with_zero_points) {
  std::vector<raw_tensor> ts{{"m.weight_packed", "I32", {2, 2}, i32_bytes({0x6BF98710u, 0x0000004Du, 0x88888888u, 0x00000088u})},
                             {"m.weight_scale", "BF16", {2, 2}, u16_bytes({0x3F00, 0x4000, 0x3F80, 0x3E80})},
                             {"m.weight_shape", "I64", {2}, i64_bytes({2, 10})}};
  // Zero points [2 rows, 2 groups] = (1, -2), (3, 0), packed along dim 0 (rows n = 0, 1 in the
  // low nibbles of one word per group): group 0 = 9 | 11 << 4 = 0xB9, group 1 = 6 | 8 << 4 = 0x86.
  if (with_zero_points) ts.push_back({"m.weight_zero_point", "I32", {1, 2}, i32_bytes({0xB9u, 0x86u})});
  return ts;
}

}  // namespace

TEST(CompressedTensorsPacked, HandWorkedInt4GroupsSymmetric) {
  const std::string file = build(int4_file(false));
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  io::ct_int_weight w;
  const auto s = io::load_ct_packed(c, "m", int_args(4, "group", 8), w);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w.rows, 2);
  EXPECT_EQ(w.cols, 10);
  EXPECT_EQ(w.scale_dtype, io::st_dtype::BF16);
  EXPECT_EQ(w.codes, (std::vector<std::int8_t>{-8, -7, -1, 0, 1, 7, 3, -2, 5, -4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  std::vector<float> v;
  ASSERT_TRUE(io::dequantize(w, v).ok());
  const std::vector<float> want{-4, -3.5f, -0.5f, 0, 0.5f, 3.5f, 1.5f, -1, 10, -8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(v, want);
}

TEST(CompressedTensorsPacked, HandWorkedInt4GroupsAsymmetric) {
  const std::string file = build(int4_file(true));
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  io::ct_int_weight w;
  const auto s = io::load_ct_packed(c, "m", int_args(4, "group", 8, false), w);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(w.zero_points, (std::vector<std::int8_t>{1, -2, 3, 0}));
  std::vector<float> v;
  ASSERT_TRUE(io::dequantize(w, v).ok());
  // (q - z) * s
  const std::vector<float> want{-4.5f, -4, -1, -0.5f, 0, 3, 1, -1.5f, 14, -4, -3, -3, -3, -3, -3, -3, -3, -3, 0, 0};
  EXPECT_EQ(v, want);
}

TEST(CompressedTensorsPacked, HandWorkedInt8Channel) {
  // Codes -128 127 0 -1 5 stored as q + 128 = 0 255 128 127 133, four bytes a word from the low
  // end: 0x7F80FF00, 0x00000085. weight_shape as I32 (compression_param_info's dtype).
  const std::string file = build({{"m.weight_packed", "I32", {1, 2}, i32_bytes({0x7F80FF00u, 0x00000085u})},
                                  {"m.weight_scale", "F32", {1, 1}, f32_bytes({0.5f})},
                                  {"m.weight_shape", "I32", {2}, i32_bytes({1, 5})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  io::ct_int_weight w;
  const auto s = io::load_ct_packed(c, "m", int_args(8, "channel"), w);
  ASSERT_TRUE(s.ok()) << s.message();
  std::vector<float> v;
  ASSERT_TRUE(io::dequantize(w, v).ok());
  EXPECT_EQ(v, (std::vector<float>{-64, 63.5f, 0, -0.5f, 2.5f}));
}

TEST(CompressedTensorsPacked, QuantizeRuleWorkedByHand) {
  // Symmetric int4, one group of 4: lo = -1.5, hi = 0.75, s = 1.5 / 7.5 = 0.2f; x / s = 3.75,
  // -7.5, 1.5, 0 in float32, rounded half to even: 4, -8, 2, 0.
  const std::vector<float> x{0.75f, -1.5f, 0.3f, 0.0f};
  io::ct_int_weight w;
  ASSERT_TRUE(io::quantize_ct_int(x.data(), {1, 4}, int_args(4, "group", 4), io::st_dtype::F32, w).ok());
  EXPECT_EQ(w.scales, (std::vector<float>{1.5f / 7.5f}));
  EXPECT_EQ(w.codes, (std::vector<std::int8_t>{4, -8, 2, 0}));
  EXPECT_TRUE(w.zero_points.empty());
  // Asymmetric: lo = -0.5, hi = 2, s = 2.5 / 15, z = round(-8 + 0.5 / s) = -5; q = round(x / s +
  // z) = 1, -8, round(-3.5) = -4, 7.
  const std::vector<float> y{1.0f, -0.5f, 0.25f, 2.0f};
  ASSERT_TRUE(io::quantize_ct_int(y.data(), {1, 4}, int_args(4, "group", 4, false), io::st_dtype::F32, w).ok());
  EXPECT_EQ(w.scales, (std::vector<float>{2.5f / 15.0f}));
  EXPECT_EQ(w.zero_points, (std::vector<std::int8_t>{-5}));
  EXPECT_EQ(w.codes, (std::vector<std::int8_t>{1, -8, -4, 7}));
  // A zero group gets float32 eps; BF16 scales are rounded before the codes: 0.2 -> 0x3E4D.
  const std::vector<float> z{0, 0, 0, 0, 0.75f, -1.5f, 0.3f, 0};
  ASSERT_TRUE(io::quantize_ct_int(z.data(), {2, 4}, int_args(4, "channel"), io::st_dtype::BF16, w).ok());
  EXPECT_EQ(w.scales[0], std::ldexp(1.0f, -23));
  EXPECT_EQ(w.scales[1], lowbit::bf16_bits_to_float(0x3E4D));
  EXPECT_EQ(w.codes, (std::vector<std::int8_t>{0, 0, 0, 0, 4, -7, 1, 0}));  // 3.746, -7.493, 1.499
  // Non-finite input is an error naming the element; out unchanged.
  const std::vector<float> bad{0, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(io::quantize_ct_int(bad.data(), {1, 2}, int_args(4, "channel"), io::st_dtype::F32, w).code(), lowbit::errc::non_finite);
  EXPECT_EQ(w.codes.size(), 8u);
}

TEST(CompressedTensorsPacked, QuantizeWriteLoadKeepsEveryValue) {
  const unsigned seed = 4242u;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.01f, 0.05f);
  const std::int64_t n = 11, k = 70;
  std::vector<float> x(static_cast<std::size_t>(n * k));
  for (auto& v : x) v = nd(rng);
  struct variant {
    io::ct_quant_args a;
    io::st_dtype sd;
  };
  const std::vector<variant> all{{int_args(4, "group", 32), io::st_dtype::BF16}, {int_args(4, "group", 32, false), io::st_dtype::F16},
                                 {int_args(8, "channel"), io::st_dtype::F32},    {int_args(8, "channel", 0, false), io::st_dtype::BF16},
                                 {int_args(4, "tensor", 0, false), io::st_dtype::F32}, {int_args(3, "group", 16), io::st_dtype::F32}};
  for (const auto& vt : all) {
    SCOPED_TRACE(std::to_string(vt.a.num_bits) + " bits " + vt.a.strategy + (vt.a.symmetric ? " sym" : " asym"));
    io::ct_int_weight w;
    ASSERT_TRUE(io::quantize_ct_int(x.data(), {n, k}, vt.a, vt.sd, w).ok());
    io::ct_encoded e;
    const auto es = io::ct_encode_weight("l", x.data(), {n, k}, vt.a, "pack-quantized", e, {}, vt.sd);
    ASSERT_TRUE(es.ok()) << es.message();
    const int pf = 32 / vt.a.num_bits;
    EXPECT_EQ(e.entries[0].name, "l.weight_packed");
    EXPECT_EQ(e.entries[0].shape, (std::vector<std::int64_t>{n, (k + pf - 1) / pf}));
    EXPECT_EQ(e.entries[1].name, "l.weight_scale");
    EXPECT_EQ(e.entries[1].dtype, vt.sd);
    EXPECT_EQ(e.entries.back().name, "l.weight_shape");
    EXPECT_EQ(e.entries.size(), vt.a.symmetric ? 3u : 4u);
    scratch_dir d;
    ASSERT_FALSE(d.path().empty());
    io::safetensors_writer wr;
    ASSERT_TRUE(wr.open(d / "model.safetensors", e.entries).ok());
    ASSERT_TRUE(io::write_ct_encoded(wr, e).ok());
    ASSERT_TRUE(wr.commit().ok());
    io::checkpoint c;
    ASSERT_TRUE(io::checkpoint::open(d / "model.safetensors", c).ok());
    io::ct_int_weight back;
    const auto ls = io::load_ct_packed(c, "l", vt.a, back);
    ASSERT_TRUE(ls.ok()) << ls.message();
    EXPECT_EQ(back.codes, w.codes);
    EXPECT_EQ(back.scales, w.scales);
    EXPECT_EQ(back.zero_points, w.zero_points);
    io::ct_config cfg;
    cfg.format = "pack-quantized";
    cfg.config_groups.push_back({"g", io::ct_scheme{}});
    cfg.config_groups[0].second.targets = {"Linear"};
    cfg.config_groups[0].second.has_weights = true;
    cfg.config_groups[0].second.weights = vt.a;
    std::vector<float> values, want;
    std::vector<std::int64_t> shape;
    ASSERT_TRUE(io::dequantize_ct_weight(c, cfg, "l", values, shape).ok());
    ASSERT_TRUE(io::dequantize(w, want).ok());
    EXPECT_EQ(values, want);
    // Each value is within half a step (plus the clamped tail) of the input.
    for (std::size_t i = 0; i < x.size(); ++i) {
      const std::int64_t r = static_cast<std::int64_t>(i) / k, col = static_cast<std::int64_t>(i) % k;
      const std::size_t si = static_cast<std::size_t>((vt.a.strategy == "tensor" ? 0 : r * w.groups()) + (w.groups() == 1 ? 0 : col / w.group_cols));
      ASSERT_LE(std::fabs(values[i] - x[i]), w.scales[si] * 1.01f) << i;
    }
  }
}

TEST(CompressedTensorsPacked, MalformedIsAnErrorWithOutUnchanged) {
  struct bad {
    const char* what;
    std::vector<raw_tensor> ts;
    io::ct_quant_args args;
    const char* needle;
  };
  auto with = [](std::vector<raw_tensor> ts, const raw_tensor& r) {
    for (auto& t : ts)
      if (t.name == r.name) {
        t = r;
        return ts;
      }
    ts.push_back(r);
    return ts;
  };
  auto without = [](std::vector<raw_tensor> ts, const std::string& name) {
    std::vector<raw_tensor> r;
    for (auto& t : ts)
      if (t.name != name) r.push_back(t);
    return r;
  };
  const auto good = int4_file(false);
  const auto g8 = int_args(4, "group", 8);
  const std::vector<bad> cases{
      {"no shape", without(good, "m.weight_shape"), g8, "\"m.weight_shape\" (of weight \"m.weight_packed\") is missing"},
      {"no packed", without(good, "m.weight_packed"), g8, "\"m.weight_packed\" (of weight \"m.weight_packed\") is missing"},
      {"no scale", without(good, "m.weight_scale"), g8, "\"m.weight_scale\""},
      {"shape dtype", with(good, {"m.weight_shape", "F32", {2}, f32_bytes({2, 10})}), g8, "has dtype F32"},
      {"shape count", with(good, {"m.weight_shape", "I64", {3}, i64_bytes({2, 10, 1})}), g8, "has shape [3]"},
      {"shape zero", with(good, {"m.weight_shape", "I64", {2}, i64_bytes({0, 10})}), g8, "dimension 0 is 0"},
      {"shape huge", with(good, {"m.weight_shape", "I64", {2}, i64_bytes({2, std::int64_t{1} << 62})}), g8, "dimension 1 is"},
      {"packed dtype", with(good, {"m.weight_packed", "U32", {2, 2}, i32_bytes({0, 0, 0, 0})}), g8, "has dtype U32"},
      {"packed width", with(good, {"m.weight_packed", "I32", {2, 1}, i32_bytes({0, 0})}), g8, "needs [2, 2]"},
      {"scale shape", with(good, {"m.weight_scale", "BF16", {2, 1}, u16_bytes({0, 0})}), g8, "needs [2, 2]"},
      {"scale dtype", with(good, {"m.weight_scale", "I8", {2, 2}, u8_bytes({0, 0, 0, 0})}), g8, "has dtype I8"},
      {"NaN scale", with(good, {"m.weight_scale", "BF16", {2, 2}, u16_bytes({0x3F00, 0x7FC0, 0x3F80, 0x3E80})}), g8, "scale 1 is NaN"},
      {"g_idx", with(good, {"m.weight_g_idx", "I32", {10}, i32_bytes({0, 0, 0, 0, 0, 0, 0, 0, 1, 1})}), g8, "activation-order"},
      {"symmetric with zp", int4_file(true), g8, "a symmetric weight has no zero point"},
      {"asym no zp", good, int_args(4, "group", 8, false), "weight_zero_point\" (asymmetric"},
      {"zp shape", with(good, {"m.weight_zero_point", "I32", {2, 2}, i32_bytes({0, 0, 0, 0})}), int_args(4, "group", 8, false), "needs [1, 2]"},
      {"zp dtype", with(good, {"m.weight_zero_point", "I8", {1, 2}, u8_bytes({0, 0})}), int_args(4, "group", 8, false), "has dtype I8"},
      {"tensor zp range",
       {{"m.weight_packed", "I32", {2, 2}, i32_bytes({0, 0, 0, 0})}, {"m.weight_scale", "F32", {1}, f32_bytes({1})}, {"m.weight_shape", "I64", {2}, i64_bytes({2, 10})},
        {"m.weight_zero_point", "I8", {1}, u8_bytes({9})}},
       int_args(4, "tensor", 0, false), "outside the 4-bit range"},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.what);
    const std::string file = build(b.ts);
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    io::ct_int_weight w;
    w.rows = 77;
    const auto s = io::load_ct_packed(c, "m", b.args, w);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(b.needle), std::string::npos) << s.message();
    EXPECT_NE(std::string(s.message()).find("hand.safetensors"), std::string::npos) << s.message();
    EXPECT_EQ(w.rows, 77);
  }
  // Args lowbit does not read as pack-quantized.
  const std::string file = build(good);
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  io::ct_int_weight w;
  for (auto a : {int_args(16, "group", 8), int_args(4, "block", 0), int_args(4, "token", 0)}) {
    if (a.strategy == "block") a.block_rows = a.block_cols = 8;
    EXPECT_EQ(io::load_ct_packed(c, "m", a, w).code(), lowbit::errc::unsupported) << a.strategy;
  }
  EXPECT_EQ(io::load_ct_packed(c, "m", int_args(4, "group", 0), w).code(), lowbit::errc::invalid_argument);
  std::vector<float> x(4, 1.0f);
  EXPECT_EQ(io::quantize_ct_int(x.data(), {2, 2}, int_args(4, "group", 0), io::st_dtype::F32, w).code(), lowbit::errc::invalid_argument);
  io::ct_quant_args f = int_args(4, "group", 8);
  f.type = "float";
  EXPECT_EQ(io::load_ct_packed(c, "m", f, w).code(), lowbit::errc::unsupported);
}

// ---------------------------------------------------------------------------------------------
// int-quantized
// ---------------------------------------------------------------------------------------------

TEST(CompressedTensorsIntQuantized, HandWorkedInt8ChannelSymmetricAndGroupAsymmetric) {
  // I8 codes as they are: -128 127 0 | -1 5 3; scales [2, 1] F32 0.5 and 0.25.
  const std::vector<std::uint8_t> codes{0x80, 0x7F, 0x00, 0xFF, 0x05, 0x03};
  std::string file = build({{"m.weight", "I8", {2, 3}, u8_bytes(codes)}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({0.5f, 0.25f})}});
  io::checkpoint c;
  ASSERT_TRUE(open_bytes(file, c).ok());
  io::ct_int_weight w;
  auto s = io::load_ct_int_quantized(c, "m", int_args(8, "channel"), w);
  ASSERT_TRUE(s.ok()) << s.message();
  std::vector<float> v;
  ASSERT_TRUE(io::dequantize(w, v).ok());
  EXPECT_EQ(v, (std::vector<float>{-64, 63.5f, 0, -0.25f, 1.25f, 0.75f}));
  // Asymmetric groups of 2 over K = 3 (the second partial): scale [2, 2] BF16 1 (0x3F80), 2
  // (0x4000), 0.5 (0x3F00), 4 (0x4080); zero points I8 [2, 2] = 1, -1, 0, 2.
  file = build({{"m.weight", "I8", {2, 3}, u8_bytes(codes)},
                {"m.weight_scale", "BF16", {2, 2}, u16_bytes({0x3F80, 0x4000, 0x3F00, 0x4080})},
                {"m.weight_zero_point", "I8", {2, 2}, u8_bytes({0x01, 0xFF, 0x00, 0x02})}});
  ASSERT_TRUE(open_bytes(file, c).ok());
  s = io::load_ct_int_quantized(c, "m", int_args(8, "group", 2, false), w);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_TRUE(io::dequantize(w, v).ok());
  // row 0: (-128 - 1) * 1, (127 - 1) * 1, (0 + 1) * 2; row 1: (-1 - 0) * 0.5, (5 - 0) * 0.5, (3 - 2) * 4
  EXPECT_EQ(v, (std::vector<float>{-129, 126, 2, -0.5f, 2.5f, 4}));
}

TEST(CompressedTensorsIntQuantized, MalformedIsAnErrorWithOutUnchanged) {
  const std::string w8 = u8_bytes({0x01, 0x02, 0x03, 0x04});
  struct bad {
    const char* what;
    std::vector<raw_tensor> ts;
    io::ct_quant_args args;
    const char* needle;
  };
  const std::vector<bad> cases{
      {"weight dtype", {{"m.weight", "U8", {2, 2}, w8}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1, 1})}}, int_args(8, "channel"), "has dtype U8"},
      {"scale shape", {{"m.weight", "I8", {2, 2}, w8}, {"m.weight_scale", "F32", {1, 2}, f32_bytes({1, 1})}}, int_args(8, "channel"), "needs [2, 1]"},
      {"int4 range", {{"m.weight", "I8", {2, 2}, u8_bytes({1, 2, 8, 0})}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1, 1})}}, int_args(4, "channel"),
       "element [1, 0] is 8, outside the 4-bit range"},
      {"zp missing", {{"m.weight", "I8", {2, 2}, w8}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1, 1})}}, int_args(8, "channel", 0, false), "is missing"},
      {"zp shape", {{"m.weight", "I8", {2, 2}, w8}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1, 1})}, {"m.weight_zero_point", "I8", {2}, u8_bytes({0, 0})}},
       int_args(8, "channel", 0, false), "needs [2, 1]"},
      {"zp on symmetric", {{"m.weight", "I8", {2, 2}, w8}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1, 1})}, {"m.weight_zero_point", "I8", {2, 1}, u8_bytes({0, 0})}},
       int_args(8, "channel"), "no zero point"},
      {"Inf scale", {{"m.weight", "I8", {2, 2}, w8}, {"m.weight_scale", "F32", {2, 1}, f32_bytes({1, std::numeric_limits<float>::infinity()})}}, int_args(8, "channel"),
       "scale 1 is infinite"},
  };
  for (const auto& b : cases) {
    SCOPED_TRACE(b.what);
    const std::string file = build(b.ts);
    io::checkpoint c;
    ASSERT_TRUE(open_bytes(file, c).ok());
    io::ct_int_weight w;
    w.rows = 77;
    const auto s = io::load_ct_int_quantized(c, "m", b.args, w);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(b.needle), std::string::npos) << s.message();
    EXPECT_EQ(w.rows, 77);
  }
}

TEST(CompressedTensorsIntQuantized, QuantizeWriteLoadKeepsEveryValue) {
  const unsigned seed = 808u;
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  const std::int64_t n = 7, k = 40;
  std::vector<float> x(static_cast<std::size_t>(n * k));
  for (auto& v : x) v = nd(rng);
  for (const auto& a : {int_args(8, "channel"), int_args(8, "group", 16, false), int_args(8, "tensor", 0, false)}) {
    SCOPED_TRACE(a.strategy);
    io::ct_encoded e;
    ASSERT_TRUE(io::ct_encode_weight("l", x.data(), {n, k}, a, "int-quantized", e, {}, io::st_dtype::F32).ok());
    EXPECT_EQ(e.entries[0].name, "l.weight");
    EXPECT_EQ(e.entries[0].dtype, io::st_dtype::I8);
    EXPECT_EQ(e.entries.size(), a.symmetric ? 2u : 3u);
    scratch_dir d;
    ASSERT_FALSE(d.path().empty());
    io::safetensors_writer wr;
    ASSERT_TRUE(wr.open(d / "model.safetensors", e.entries).ok());
    ASSERT_TRUE(io::write_ct_encoded(wr, e).ok());
    ASSERT_TRUE(wr.commit().ok());
    io::checkpoint c;
    ASSERT_TRUE(io::checkpoint::open(d / "model.safetensors", c).ok());
    io::ct_int_weight want, back;
    ASSERT_TRUE(io::quantize_ct_int(x.data(), {n, k}, a, io::st_dtype::F32, want).ok());
    const auto ls = io::load_ct_int_quantized(c, "l", a, back);
    ASSERT_TRUE(ls.ok()) << ls.message();
    EXPECT_EQ(back.codes, want.codes);
    EXPECT_EQ(back.scales, want.scales);
    EXPECT_EQ(back.zero_points, want.zero_points);
    io::ct_config cfg;
    cfg.format = "int-quantized";
    cfg.config_groups.push_back({"g", io::ct_scheme{}});
    cfg.config_groups[0].second.targets = {"Linear"};
    cfg.config_groups[0].second.has_weights = true;
    cfg.config_groups[0].second.weights = a;
    std::vector<float> values, ref;
    std::vector<std::int64_t> shape;
    ASSERT_TRUE(io::dequantize_ct_weight(c, cfg, "l", values, shape).ok());
    ASSERT_TRUE(io::dequantize(want, ref).ok());
    EXPECT_EQ(values, ref);
  }
}
