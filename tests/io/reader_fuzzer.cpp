// SPDX-License-Identifier: Apache-2.0
// libFuzzer target over lowbit::io's readers: a byte string starting with "GGUF" is parsed as a
// GGUF file, whose every tensor of a type lowbit decodes is then dequantized; any other is parsed
// as a safetensors file, which, if valid, has every tensor's bytes read and every bitsandbytes
// weight in it loaded (4-bit through its quant_state JSON, LLM.int8 through SCB), every
// fine-grained FP8 weight (with 128 x 128 and 3 x 3 tiles), and dequantized, and every gpt-oss
// MXFP4 pair (`X_blocks` / `X_scales`, or openai's `X.blocks` / `X.scales`) checked, loaded (NaN
// scales accepted, so that the bytes get decoded), dequantized, split into experts and written
// back into entries,
// and every module X with an X.weight_scale loaded as each compressed-tensors layout (FP8 per
// tensor / channel / group / block, NVFP4, packed int4 / int8, unpacked int8 / int4) and
// dequantized; a metadata entry "quantization_config" is read as a compressed-tensors config and
// asked for every module's group.
// The readers must answer every input with ok or an error status: never a crash, a sanitizer
// report or a leak.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace {
int fuzz_gguf(const std::uint8_t* data, std::size_t size) {
  io::gguf_file g;
  if (!io::gguf_file::parse(data, size, "fuzz.gguf", g)) return 0;
  unsigned sum = 0;
  for (const auto& t : g.tensors()) {
    for (std::uint64_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    if (t.numel() > (1 << 20)) continue;
    std::vector<float> out(static_cast<std::size_t>(t.numel()));
    (void)io::gguf_file::dequantize(t, out.data(), 1);
  }
  return static_cast<int>(sum & 0u);
}
// Every MXFP4 pair of `c` whose blocks tensor is `name` (either naming).
void fuzz_mxfp4(const io::checkpoint& c, const std::string& name) {
  for (const auto naming : {io::mxfp4_naming::transformers, io::mxfp4_naming::openai}) {
    std::string base;
    if (!io::mxfp4_base_of(name, base, naming) || !io::is_mxfp4_pair(c, base, naming)) continue;
    io::mxfp4_load_options opt;
    opt.naming = naming;
    io::mxfp4_layout l;
    if (!io::check_mxfp4_layout(c, base, l, opt)) continue;
    lowbit::scaled_tensor q;
    (void)io::load_mxfp4(c, base, q, opt);  // refuses NaN scales
    opt.allow_nan_scale = true;
    if (!io::load_mxfp4(c, base, q, opt) || q.numel() > (1 << 20)) continue;
    std::vector<float> out(static_cast<std::size_t>(q.numel()));
    (void)lowbit::dequantize(q, out.data(), lowbit::dtype::f32, lowbit::host::options{1, false, true});
    if (q.shape().size() == 3 && q.shape()[0] > 0) {
      lowbit::scaled_tensor one;
      (void)io::mxfp4_expert(q, q.shape()[0] - 1, one);
    }
    std::vector<io::tensor_entry> e;
    (void)io::mxfp4_entries(base, q, e, naming);
  }
}

void fuzz_compressed_tensors(const io::checkpoint& c, const std::map<std::string, std::string>& metadata) {
  io::ct_config cfg;
  bool have_cfg = false;
  if (const auto m = metadata.find("quantization_config"); m != metadata.end()) {
    nlohmann::json j;
    if (io::parse_json_text(m->second, "fuzz metadata", j)) have_cfg = static_cast<bool>(io::from_json(j, "fuzz metadata", cfg));
  }
  const std::string suffix = ".weight_scale";
  for (const auto& name : c.names()) {
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string module = name.substr(0, name.size() - suffix.size());
    if (have_cfg) {
      std::string group;
      (void)io::ct_group_of(cfg, module, group);
      std::vector<float> v;
      std::vector<std::int64_t> shape;
      (void)io::dequantize_ct_weight(c, cfg, module, v, shape);
    }
    io::ct_quant_args f8;
    f8.type = "float";
    std::vector<io::ct_quant_args> fp8(4, f8);
    fp8[0].strategy = "tensor";
    fp8[1].strategy = "channel";
    fp8[2].strategy = "group";
    fp8[2].group_size = 16;
    fp8[3].strategy = "block";
    fp8[3].block_rows = 2;
    fp8[3].block_cols = 4;
    io::ct_load_options opt;
    for (int nonfinite = 0; nonfinite < 2; ++nonfinite) {
      opt.allow_nonfinite = nonfinite == 1;
      for (const auto& a : fp8) {
        lowbit::scaled_tensor q;
        if (!io::load_ct_fp8(c, module, a, q, opt) || q.numel() > (1 << 20)) continue;
        std::vector<float> out(static_cast<std::size_t>(q.numel()));
        (void)lowbit::dequantize(q, out.data(), lowbit::dtype::f32, lowbit::host::options{1, false, true});
      }
      io::ct_quant_args nv = f8;
      nv.num_bits = 4;
      nv.strategy = "tensor_group";
      nv.group_size = 16;
      lowbit::scaled_tensor q;
      if (io::load_ct_nvfp4(c, module, nv, q, opt) && q.numel() <= (1 << 20)) {
        std::vector<float> out(static_cast<std::size_t>(q.numel()));
        (void)lowbit::dequantize(q, out.data(), lowbit::dtype::f32, lowbit::host::options{1, false, true});
      }
      for (int variant = 0; variant < 4; ++variant) {
        io::ct_quant_args a;
        a.num_bits = variant < 2 ? 4 : 8;
        a.strategy = variant < 2 ? "group" : variant == 2 ? "channel" : "tensor";
        a.group_size = variant < 2 ? 8 : 0;
        a.symmetric = variant % 2 == 0;
        io::ct_int_weight w;
        if (!io::load_ct_packed(c, module, a, w, opt) || w.rows * w.cols > (1 << 20)) continue;
        std::vector<float> out;
        (void)io::dequantize(w, out);
        io::ct_encoded e;
        (void)io::ct_packed_entries(module, w, e);
      }
      for (int variant = 0; variant < 3; ++variant) {
        io::ct_quant_args a;
        a.num_bits = variant == 2 ? 4 : 8;
        a.strategy = variant == 2 ? "group" : "channel";
        a.group_size = variant == 2 ? 4 : 0;
        a.symmetric = variant != 1;
        io::ct_int_weight w;
        if (!io::load_ct_int_quantized(c, module, a, w, opt) || w.rows * w.cols > (1 << 20)) continue;
        std::vector<float> out;
        (void)io::dequantize(w, out);
        io::ct_encoded e;
        (void)io::ct_int_quantized_entries(module, w, e);
      }
    }
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size >= 4 && std::memcmp(data, "GGUF", 4) == 0) return fuzz_gguf(data, size);
  io::safetensors_file f;
  if (!io::safetensors_file::parse(data, size, "fuzz.safetensors", f)) return 0;
  unsigned sum = 0;
  for (const auto& t : f.tensors())
    for (std::uint64_t i = 0; i < t.nbytes(); ++i) sum += f.data(t)[i];
  const std::map<std::string, std::string> metadata = f.metadata();
  const io::checkpoint c = io::checkpoint::adopt(std::move(f), "fuzz.safetensors");
  fuzz_compressed_tensors(c, metadata);
  for (const auto& name : c.names()) {
    fuzz_mxfp4(c, name);
    lowbit::quant_tensor q;
    lowbit::status s;
    const auto* t = c.find(name).tensor;
    if (io::is_fp8_block_weight(c, name)) {  // transformers' fine-grained FP8, two tile shapes
      for (const std::int64_t b : {128, 3}) {
        io::fp8_block_config cfg;
        cfg.block_rows = cfg.block_cols = b;
        io::fp8_block_layout l;
        lowbit::scaled_tensor st;
        if (!io::check_fp8_block_layout(c, name, cfg, l) || !io::load_fp8_block(c, name, cfg, st) || l.rows * l.cols > (1 << 20)) continue;
        std::vector<float> out(static_cast<std::size_t>(l.rows * l.cols));
        (void)lowbit::dequantize(st, out.data(), lowbit::dtype::f32, lowbit::host::options{1, false, true});
        std::vector<io::tensor_entry> e;
        (void)io::fp8_block_entries(name, st, e);
      }
      continue;
    }
    if (io::has_bnb_quant_state(c, name)) s = io::load_bnb_4bit(c, name, q);
    else if (t->dtype == io::st_dtype::I8) s = io::load_bnb_int8(c, name, q);
    else continue;
    if (!s || q.numel() > (1 << 20)) continue;
    std::vector<float> out(static_cast<std::size_t>(q.numel()));
    (void)lowbit::dequantize(q, out.data(), lowbit::dtype::f32, lowbit::host::options{1, false, true});
    std::vector<io::tensor_entry> e;
    (void)io::bnb_entries(name, q, e);
  }
  return static_cast<int>(sum & 0u);
}
