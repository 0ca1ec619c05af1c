// SPDX-License-Identifier: Apache-2.0
// Writes the reader fuzzer's seed corpus into DIR: small valid files made by lowbit's writers, one
// per layout (dense tensors of several dtypes with metadata; NF4 + double quant; FP4; LLM.int8;
// transformers' fine-grained FP8; gpt-oss MXFP4 expert and 2-D pairs in both namings;
// compressed-tensors FP8 per channel and per block, NVFP4, packed int4 with zero points, packed
// int8 and unpacked int8 with zero points, with their quantization_config in the metadata; GGUF
// files of every ggml type lowbit decodes),
// each also with its header's padding cut to the next multiple of 8 (the writer pads the header
// to a 4096-byte boundary, and mutations spent on spaces find little).
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace {

// Writes DIR/NAME.safetensors again as DIR/NAME.compact.safetensors with the header's trailing
// spaces cut to an 8-byte boundary; false if it cannot be read or written.
bool write_compact(const std::string& dir, const std::string& name) {
  const std::string path = dir + "/" + name + ".safetensors";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  std::string bytes;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) bytes.append(buf, n);
  std::fclose(f);
  if (bytes.size() < 8) return false;
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (n > bytes.size() - 8) return false;
  std::string header = bytes.substr(8, static_cast<std::size_t>(n));
  header.erase(header.find_last_not_of(' ') + 1);
  while ((8 + header.size()) % 8 != 0) header.push_back(' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>(static_cast<std::uint64_t>(header.size()) >> (8 * i));
  out += header + bytes.substr(8 + static_cast<std::size_t>(n));
  std::FILE* g = std::fopen((dir + "/" + name + ".compact.safetensors").c_str(), "wb");
  if (g == nullptr) return false;
  const bool ok = std::fwrite(out.data(), 1, out.size(), g) == out.size();
  return std::fclose(g) == 0 && ok;
}

bool write_quantized(const std::string& path, lowbit::format fmt, bool dq, std::int64_t rows, std::int64_t cols) {
  std::vector<float> w(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * 0.02f;
  lowbit::quantize_params p;
  p.fmt = fmt;
  p.double_quant = dq;
  p.gran = fmt == lowbit::format::int8_absmax ? lowbit::granularity::per_row() : lowbit::granularity::per_block(32);
  lowbit::quant_tensor q;
  if (!lowbit::quantize(w.data(), lowbit::dtype::f32, {rows, cols}, p, q)) return false;
  std::vector<io::tensor_entry> e;
  if (!io::bnb_entries("l.weight", q, e)) return false;
  e.push_back({"l.bias", io::st_dtype::F16, {rows}});
  io::safetensors_writer wr;
  if (!wr.open(path, e, {{"format", "pt"}})) return false;
  if (!io::write_bnb(wr, q)) return false;
  const std::vector<std::uint16_t> bias(static_cast<std::size_t>(rows), 0x3C00);
  return wr.write(bias.data(), bias.size() * 2) && wr.commit();
}

// transformers' fine-grained FP8: a [5, 130] weight with partial 128 x 128 tiles (grid [1, 2]) and
// its weight_scale_inv, and a bias.
bool write_fp8_block(const std::string& path) {
  std::vector<float> w(5 * 130);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.41f * static_cast<float>(i)) * 0.5f;
  io::fp8_block_config cfg;
  lowbit::scaled_tensor q;
  if (!io::quantize_fp8_block(w.data(), lowbit::dtype::f32, {5, 130}, cfg, q)) return false;
  std::vector<io::tensor_entry> e;
  if (!io::fp8_block_entries("l.weight", q, e)) return false;
  e.push_back({"l.bias", io::st_dtype::BF16, {5}});
  io::safetensors_writer wr;
  if (!wr.open(path, e, {{"format", "pt"}}) || !io::write_fp8_block(wr, q)) return false;
  const std::vector<std::uint16_t> bias(5, 0x3F80);
  return wr.write(bias.data(), bias.size() * 2) && wr.commit();
}

// gpt-oss MXFP4: an expert pair [2, 2, 64] (`_blocks` / `_scales`) with its bias, and a 2-D pair
// [3, 32] named as openai's original checkpoint names it (`.blocks` / `.scales`).
bool write_mxfp4(const std::string& path) {
  std::vector<float> w(2 * 2 * 64);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i)) * 0.02f;
  lowbit::scaled_tensor experts, flat;
  if (!io::quantize_mxfp4(w.data(), lowbit::dtype::f32, {2, 2, 64}, experts)) return false;
  if (!io::quantize_mxfp4(w.data(), lowbit::dtype::f32, {3, 32}, flat)) return false;
  std::vector<io::tensor_entry> e;
  if (!io::mxfp4_entries("model.layers.0.mlp.experts.down_proj", experts, e)) return false;
  e.push_back({"model.layers.0.mlp.experts.down_proj_bias", io::st_dtype::F32, {2, 2}});
  if (!io::mxfp4_entries("block.0.mlp.mlp2_weight", flat, e, io::mxfp4_naming::openai)) return false;
  io::safetensors_writer wr;
  if (!wr.open(path, e, {{"format", "pt"}})) return false;
  const float bias[4] = {0.5f, -0.5f, 0.0f, 1.0f};
  return io::write_mxfp4(wr, experts) && wr.write(bias, sizeof bias) && io::write_mxfp4(wr, flat) && wr.commit();
}

// A compressed-tensors checkpoint (format mixed-precision, config in the metadata entry
// "quantization_config", as the reader fuzzer looks for it) with one small weight per layout.
bool write_compressed_tensors(const std::string& path) {
  const char* config = R"({"quant_method": "compressed-tensors", "format": "mixed-precision", "ignore": ["lm_head"],
    "config_groups": {
      "a": {"targets": ["re:.*fp8c$"], "format": "float-quantized", "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}},
      "b": {"targets": ["m.fp8b"], "format": "float-quantized", "weights": {"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [2, 4]}},
      "c": {"targets": ["m.nv"], "format": "nvfp4-pack-quantized", "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}},
      "d": {"targets": ["m.w4"], "format": "pack-quantized", "weights": {"num_bits": 4, "strategy": "group", "group_size": 8, "symmetric": false}},
      "e": {"targets": ["Linear"], "format": "pack-quantized", "weights": {"num_bits": 8, "strategy": "channel"}},
      "f": {"targets": ["m.i8"], "format": "int-quantized", "weights": {"num_bits": 8, "strategy": "channel", "symmetric": false}}}})";
  io::ct_config cfg;
  if (!io::from_json(nlohmann::json::parse(config), "seed", cfg)) return false;
  std::vector<float> x(5 * 32);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 0.02f;
  io::ct_encoded e;
  for (const char* m : {"m.fp8c", "m.fp8b", "m.nv", "m.w4", "m.w8", "m.i8"}) {
    std::string group;
    if (!io::ct_group_of(cfg, m, group) || io::ct_find_scheme(cfg, group) == nullptr) return false;
    const io::ct_scheme& s = *io::ct_find_scheme(cfg, group);
    const std::vector<std::int64_t> shape = std::string(m) == "m.nv" ? std::vector<std::int64_t>{5, 32} : std::vector<std::int64_t>{5, 13};
    if (!io::ct_encode_weight(m, x.data(), shape, s.weights, io::ct_group_format(cfg, s), e)) return false;
  }
  io::safetensors_writer wr;
  if (!wr.open(path, e.entries, {{"format", "pt"}, {"quantization_config", io::to_json(cfg).dump()}})) return false;
  if (!io::write_ct_encoded(wr, e) || !wr.commit()) return false;
  // the seed must reach the loaders: every module reads back
  io::checkpoint c;
  if (!io::checkpoint::open(path, c)) return false;
  for (const char* m : {"m.fp8c", "m.fp8b", "m.nv", "m.w4", "m.w8", "m.i8"}) {
    std::vector<float> v;
    std::vector<std::int64_t> shape;
    if (!io::dequantize_ct_weight(c, cfg, m, v, shape)) return false;
  }
  return true;
}

// A GGUF file of every ggml type lowbit decodes (and a Q4_K tensor it only lists), with metadata
// of scalar, string and array values and general.alignment.
bool write_gguf(const std::string& path, std::uint32_t alignment) {
  std::vector<io::gguf_kv> kv = {{"general.architecture", io::gguf_value::string("llama")},
                                 {"general.alignment", io::gguf_value::scalar(io::gguf_type::u32, alignment)},
                                 {"llama.block_count", io::gguf_value::scalar(io::gguf_type::u32, std::uint32_t{1})},
                                 {"tokenizer.ggml.tokens", io::gguf_value::string_array({"<s>", "a"})}};
  const std::uint32_t types[] = {0, 1, 30, 8, 2, 3, 39, 12};
  std::vector<io::gguf_tensor> t;
  std::vector<std::vector<std::uint8_t>> data;
  std::vector<float> x(256 * 2);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 0.02f;
  for (std::uint32_t ty : types) {
    io::gguf_tensor e;
    e.type = ty;
    e.name = std::string("blk.0.") + lowbit::ggml::type_name(ty);
    e.ne = {ty == 12 ? 256 : 64, 2};
    t.push_back(e);
    if (ty == 12) {
      data.emplace_back(2 * 144, std::uint8_t{0x11});
    } else {
      data.emplace_back(lowbit::ggml::row_bytes(static_cast<lowbit::ggml::type>(ty), 128));
      if (!lowbit::ggml::quantize(static_cast<lowbit::ggml::type>(ty), x.data(), 128, data.back().data(), 1)) return false;
    }
  }
  io::gguf_writer w;
  if (!w.open(path, kv, t)) return false;
  for (const auto& d : data)
    if (!w.write(d.data(), d.size())) return false;
  return static_cast<bool>(w.commit());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: io_fuzz_seeds DIR\n"), 2;
  const std::string dir = argv[1];
  io::safetensors_writer w;
  const std::vector<io::tensor_entry> dense = {{"a", io::st_dtype::F32, {2, 3}}, {"b", io::st_dtype::BF16, {4}}, {"c", io::st_dtype::I64, {}},
                                               {"d", io::st_dtype::U8, {0}}};
  const std::vector<std::uint8_t> bytes(24 + 8 + 8, 0x41);
  bool ok = w.open(dir + "/dense.safetensors", dense, {{"format", "pt"}, {"k", "v"}}) && w.write(bytes.data(), bytes.size()) && w.commit();
  ok = ok && write_quantized(dir + "/nf4_dq.safetensors", lowbit::format::nf4, true, 8, 40);
  ok = ok && write_quantized(dir + "/fp4.safetensors", lowbit::format::bnb_fp4, false, 3, 21);
  ok = ok && write_quantized(dir + "/int8.safetensors", lowbit::format::int8_absmax, false, 4, 8);
  ok = ok && write_fp8_block(dir + "/fp8_block.safetensors");
  ok = ok && write_mxfp4(dir + "/mxfp4.safetensors");
  ok = ok && write_compressed_tensors(dir + "/compressed_tensors.safetensors");
  for (const char* name : {"dense", "nf4_dq", "fp4", "int8", "fp8_block", "mxfp4", "compressed_tensors"}) ok = ok && write_compact(dir, name);
  ok = ok && write_gguf(dir + "/types.gguf", 32) && write_gguf(dir + "/aligned8.gguf", 8);
  return ok ? 0 : 1;
}
