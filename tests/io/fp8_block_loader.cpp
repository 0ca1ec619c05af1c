// SPDX-License-Identifier: Apache-2.0
// The lowbit half of fp8_block_interop.py (which documents the protocol):
//   io_interop_loader fp8_block DIR
// 1. loads every fine-grained FP8 weight of the checkpoint folder DIR/py with DIR/py/config.json's
//    quantization_config, dequantizes it to float32 and writes DIR/py_lowbit.safetensors (same names);
// 2. quantizes every F32 tensor of DIR/src.safetensors with weight_block_size DIR/block.txt
//    ("rows cols") and writes the checkpoint folder DIR/lowbit (model.safetensors, config.json).
// Prints FAIL lines and exits 1 on any error.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace fp8_block_loader {
namespace {

int fail(const char* what, const lowbit::status& s) {
  std::printf("FAIL: %s: %s\n", what, s.message());
  return 1;
}

}  // namespace

// io_interop_loader fp8_block DIR (interop_loader_main.cpp): argv[0] is "fp8_block", argv[1] DIR.
int run(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: io_interop_loader fp8_block DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  lowbit::status s;

  // 1. read what Python wrote
  {
    io::fp8_block_config cfg;
    if (!(s = io::read_fp8_block_config(dir + "/py/config.json", cfg))) return fail("read py/config.json", s);
    io::checkpoint ck;
    if (!(s = io::checkpoint::open(dir + "/py", ck))) return fail("open py", s);
    std::vector<std::string> names;
    std::vector<std::vector<float>> values;
    std::vector<io::tensor_entry> entries;
    for (const auto& name : ck.names()) {
      if (!io::is_fp8_block_weight(ck, name)) continue;
      lowbit::scaled_tensor q;
      if (!(s = io::load_fp8_block(ck, name, cfg, q))) return fail(name.c_str(), s);
      values.emplace_back(static_cast<std::size_t>(q.numel()));
      if (!(s = lowbit::dequantize(q, values.back().data(), lowbit::dtype::f32))) return fail(name.c_str(), s);
      entries.push_back({name, io::st_dtype::F32, q.shape()});
    }
    io::safetensors_writer w;
    if (!(s = w.open(dir + "/py_lowbit.safetensors", entries))) return fail("open py_lowbit", s);
    for (const auto& v : values)
      if (!(s = w.write(v.data(), v.size() * 4))) return fail("write py_lowbit", s);
    if (!(s = w.commit())) return fail("commit py_lowbit", s);
  }

  // 2. quantize what Python gave
  {
    io::fp8_block_config cfg;
    std::ifstream bt(dir + "/block.txt");
    if (!(bt >> cfg.block_rows >> cfg.block_cols)) return fail("block.txt", lowbit::status::error(lowbit::errc::invalid_argument, "unreadable"));
    io::safetensors_file src;
    if (!(s = io::safetensors_file::open(dir + "/src.safetensors", src))) return fail("open src", s);
    std::vector<lowbit::scaled_tensor> qs;
    std::vector<io::tensor_entry> entries;
    for (const auto& t : src.tensors()) {
      if (t.dtype != io::st_dtype::F32) continue;
      std::vector<float> x(static_cast<std::size_t>(t.numel()));
      std::memcpy(x.data(), src.data(t), t.nbytes());
      qs.emplace_back();
      if (!(s = io::quantize_fp8_block(x.data(), lowbit::dtype::f32, t.shape, cfg, qs.back()))) return fail(t.name.c_str(), s);
      if (!(s = io::fp8_block_entries(t.name, qs.back(), entries))) return fail(t.name.c_str(), s);
    }
    const std::string out = dir + "/lowbit";
    if (!io::is_directory(out) && ::mkdir(out.c_str(), 0755) != 0) return fail("mkdir lowbit", lowbit::status::error(lowbit::errc::io, "mkdir"));
    io::safetensors_writer w;
    if (!(s = w.open(out + "/model.safetensors", entries))) return fail("open lowbit/model.safetensors", s);
    for (const auto& q : qs)
      if (!(s = io::write_fp8_block(w, q))) return fail("write lowbit/model.safetensors", s);
    if (!(s = w.commit())) return fail("commit lowbit/model.safetensors", s);
    if (!(s = io::write_fp8_block_config(out + "/config.json", R"({"torch_dtype": "bfloat16"})", cfg))) return fail("config.json", s);
  }
  return 0;
}

}  // namespace fp8_block_loader
