// SPDX-License-Identifier: Apache-2.0
// Adds malformed inputs to a corpus folder that io_fuzz_seeds has filled with valid files, for
// the sanitizer build of the tool (io_tool_corpus_test): every valid file cut short, with a wrong
// header length, and with its header or quant_state edited in the ways hostile or broken files
// are (wrong types, negative and overflowing shapes, gaps, an empty tensor name, nesting past the
// limit, missing or renamed companions); folders with a broken config.json or index, FIFOs in
// place of files. Deterministic: the same corpus on every run.
//
// Usage: io_malformed_corpus DIR
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace {

std::string read_file(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

bool write_file(const std::string& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

std::string le64(std::uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}

// A safetensors file split into its header text and data.
struct parts {
  std::string header, data;
  bool ok = false;
};

parts split(const std::string& bytes) {
  parts p;
  if (bytes.size() < 8) return p;
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (n > bytes.size() - 8) return p;
  p.header = bytes.substr(8, static_cast<std::size_t>(n));
  p.data = bytes.substr(8 + static_cast<std::size_t>(n));
  p.ok = true;
  return p;
}

std::string join(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

// `s` with the first `from` replaced by `to`; "" if `from` is not in `s`.
std::string replace_first(const std::string& s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  if (at == std::string::npos) return "";
  return s.substr(0, at) + to + s.substr(at + from.size());
}

std::string nested(int depth) { return std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']'); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: io_malformed_corpus DIR\n"), 2;
  const std::string dir = argv[1];
  bool ok = true;
  int written = 0;
  auto emit = [&](const std::string& name, const std::string& bytes) {
    ok = write_file(dir + "/" + name, bytes) && ok;
    ++written;
  };
  // Header edits: (name, from, to), applied to every seed whose header has `from`.
  const std::vector<std::vector<std::string>> header_edits = {
      {"dtype_number", "\"dtype\":\"F32\"", "\"dtype\":5"},
      {"dtype_unknown", "\"dtype\":\"U8\"", "\"dtype\":\"Q7\""},
      {"dtype_f32_as_i32", "\"dtype\":\"F32\"", "\"dtype\":\"I32\""},
      {"dtype_f16_as_bf16", "\"dtype\":\"F16\"", "\"dtype\":\"BF16\""},
      {"shape_negative", "\"shape\":[", "\"shape\":[-1,"},
      {"shape_overflow", "\"shape\":[", "\"shape\":[4294967296,4294967296,"},
      {"shape_string", "\"shape\":[", "\"shape\":\"x\",\"y\":["},
      {"offsets_gap", "\"data_offsets\":[0,", "\"data_offsets\":[1,"},
      {"empty_name", "{", "{\"\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]},"},
      {"deep_header", "{", "{\"deep\":" + nested(100000) + ","},
      {"metadata_renamed", "__metadata__", "__metadata_x"},
      {"absmax_renamed", ".absmax\"", ".absmaz\""},
      {"quant_map_renamed", ".quant_map\"", ".quant_mab\""},
      {"nested_absmax_renamed", ".nested_absmax\"", ".nested_absmaz\""},
      {"quant_type_unknown", "bitsandbytes__nf4", "bitsandbytes__xx4"},
      {"quant_type_swapped", "bitsandbytes__fp4", "bitsandbytes__nf4"},
      {"scb_renamed", ".SCB\"", ".SCC\""},
      {"weight_format_renamed", ".weight_format\"", ".weight_formax\""},
      {"companion_clash", "\"l.bias\"", "\"l.weight.absmax\""},
  };
  // quant_state JSON edits inside the data, each keeping the length.
  const std::vector<std::vector<std::string>> data_edits = {
      {"qs_blocksize_zero", "\"blocksize\": 32", "\"blocksize\":  0"},
      {"qs_quant_type", "\"quant_type\": \"nf4\"", "\"quant_type\": \"xf4\""},
      {"qs_dtype", "\"float32\"", "\"float64\""},
      {"qs_shape_nested", "\"shape\": [", "\"shape\":[["},
      {"qs_not_object", "{\"quant_type\"", "[\"quant_type\""},
      {"qs_nested_blocksize", "\"nested_blocksize\": 256", "\"nested_blocksize\": 255"},
      {"qs_bad_utf8", "\"quant_type\"", "\"quant_typ\xff\""},
  };
  for (const char* seed : {"dense", "nf4_dq", "fp4", "int8", "dense.compact", "nf4_dq.compact"}) {
    const std::string bytes = read_file(dir + "/" + seed + ".safetensors");
    const parts p = split(bytes);
    if (!p.ok) return std::fprintf(stderr, "io_malformed_corpus: %s/%s.safetensors is not a seed file\n", dir.c_str(), seed), 1;
    const std::string base = std::string("bad_") + seed + "_";
    emit(base + "cut7.safetensors", bytes.substr(0, 7));
    emit(base + "cut_header.safetensors", bytes.substr(0, 8 + p.header.size() / 2));
    emit(base + "cut_data.safetensors", bytes.substr(0, bytes.size() - 1));
    emit(base + "extra_byte.safetensors", bytes + "x");
    emit(base + "len_zero.safetensors", le64(0) + bytes.substr(8));
    emit(base + "len_huge.safetensors", le64(std::uint64_t{1} << 63) + bytes.substr(8));
    emit(base + "len_plus1.safetensors", le64(p.header.size() + 1) + bytes.substr(8));
    for (const auto& e : header_edits) {
      const std::string h = replace_first(p.header, e[1], e[2]);
      if (!h.empty()) emit(base + e[0] + ".safetensors", join(h, p.data));
    }
    for (const auto& e : data_edits) {
      const std::string d = replace_first(p.data, e[1], e[2]);
      if (!d.empty()) emit(base + e[0] + ".safetensors", join(p.header, d));
    }
  }
  // Folders: a valid model with a broken config.json or index, FIFOs in place of files.
  const std::string model = read_file(dir + "/nf4_dq.safetensors");
  auto folder = [&](const std::string& name) {
    const std::string f = dir + "/" + name;
    ::mkdir(f.c_str(), 0755);
    ++written;
    return f;
  };
  std::string f = folder("dir_config_deep");
  ok = write_file(f + "/model.safetensors", model) && write_file(f + "/config.json", "{\"a\": " + nested(100000) + "}") && ok;
  f = folder("dir_config_list");
  ok = write_file(f + "/model.safetensors", model) && write_file(f + "/config.json", "[1, 2]") && ok;
  f = folder("dir_config_utf8");
  ok = write_file(f + "/model.safetensors", model) && write_file(f + "/config.json", "{\"a\": \"\xff\"}") && ok;
  f = folder("dir_config_quant_method");
  ok = write_file(f + "/model.safetensors", model) && write_file(f + "/config.json", "{\"quantization_config\": {\"quant_method\": \"gptq\"}}") && ok;
  f = folder("dir_config_fifo");
  ok = write_file(f + "/model.safetensors", model) && ::mkfifo((f + "/config.json").c_str(), 0644) == 0 && ok;
  f = folder("dir_model_fifo");
  ok = ::mkfifo((f + "/model.safetensors").c_str(), 0644) == 0 && ok;
  f = folder("dir_empty");
  const std::string shard = "model-00001-of-00001.safetensors";
  f = folder("dir_index_missing_shard");
  ok = write_file(f + "/model.safetensors.index.json", "{\"weight_map\": {\"l.weight\": \"" + shard + "\"}}") && ok;
  f = folder("dir_index_outside");
  ok = write_file(f + "/model.safetensors.index.json", "{\"weight_map\": {\"l.weight\": \"../nf4_dq.safetensors\"}}") && ok;
  f = folder("dir_index_unlisted");
  ok = write_file(f + "/" + shard, model) && write_file(f + "/model.safetensors.index.json", "{\"weight_map\": {\"l.weight\": \"" + shard + "\"}}") && ok;
  f = folder("dir_index_deep");
  ok = write_file(f + "/" + shard, model) && write_file(f + "/model.safetensors.index.json", "{\"weight_map\": " + nested(100000) + "}") && ok;
  f = folder("dir_index_fifo");
  ok = write_file(f + "/" + shard, model) && ::mkfifo((f + "/model.safetensors.index.json").c_str(), 0644) == 0 && ok;
  std::printf("io_malformed_corpus: %d inputs\n", written);
  return ok ? 0 : 1;
}
