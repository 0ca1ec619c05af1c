// SPDX-License-Identifier: Apache-2.0
// The lowbit half of compressed_tensors_interop.py (which documents the protocol):
//   io_interop_loader compressed_tensors DIR
// 1. reads DIR/py/config.json's compressed-tensors quantization_config and, for every module X of
//    the checkpoint folder DIR/py with an X.weight_scale, dequantizes its weight to float32 by
//    module name (dequantize_ct_weight) and writes DIR/py_lowbit.safetensors (X.weight, F32);
// 2. reads the quantization_config of DIR/src_config.json and quantizes every F32 tensor X.weight
//    of DIR/src.safetensors with the group that applies to module X (ct_encode_weight, the group's
//    format), writing the checkpoint folder DIR/lowbit (model.safetensors, config.json).
// Prints FAIL lines and exits 1 on any error.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace compressed_tensors_loader {
namespace {

int fail(const std::string& what, const lowbit::status& s) {
  std::printf("FAIL: %s: %s\n", what.c_str(), s.message());
  return 1;
}

bool ends_with(const std::string& s, const std::string& t) { return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0; }

}  // namespace

// io_interop_loader compressed_tensors DIR (interop_loader_main.cpp): argv[0] is "compressed_tensors", argv[1] DIR.
int run(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: io_interop_loader compressed_tensors DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  lowbit::status s;

  // 1. read what Python wrote
  {
    io::ct_config cfg;
    if (!(s = io::read_ct_config(dir + "/py/config.json", cfg))) return fail("read py/config.json", s);
    io::checkpoint ck;
    if (!(s = io::checkpoint::open(dir + "/py", ck))) return fail("open py", s);
    std::vector<std::vector<float>> values;
    std::vector<io::tensor_entry> entries;
    for (const auto& name : ck.names()) {
      if (!ends_with(name, ".weight_scale")) continue;
      const std::string module = name.substr(0, name.size() - std::strlen(".weight_scale"));
      values.emplace_back();
      std::vector<std::int64_t> shape;
      if (!(s = io::dequantize_ct_weight(ck, cfg, module, values.back(), shape))) return fail(module, s);
      entries.push_back({module + ".weight", io::st_dtype::F32, shape});
    }
    io::safetensors_writer w;
    if (!(s = w.open(dir + "/py_lowbit.safetensors", entries))) return fail("open py_lowbit", s);
    for (const auto& v : values)
      if (!(s = w.write(v.data(), v.size() * 4))) return fail("write py_lowbit", s);
    if (!(s = w.commit())) return fail("commit py_lowbit", s);
  }

  // 2. quantize what Python gave
  {
    io::ct_config cfg;
    if (!(s = io::read_ct_config(dir + "/src_config.json", cfg))) return fail("read src_config.json", s);
    io::safetensors_file src;
    if (!(s = io::safetensors_file::open(dir + "/src.safetensors", src))) return fail("open src", s);
    io::ct_encoded e;
    for (const auto& t : src.tensors()) {
      if (t.dtype != io::st_dtype::F32 || !ends_with(t.name, ".weight")) continue;
      const std::string module = t.name.substr(0, t.name.size() - std::strlen(".weight"));
      std::string group;
      if (!(s = io::ct_group_of(cfg, module, group))) return fail(module, s);
      const io::ct_scheme* scheme = io::ct_find_scheme(cfg, group);
      if (scheme == nullptr || !scheme->has_weights) return fail(module, lowbit::status::error(lowbit::errc::invalid_argument, "no group with weights"));
      std::vector<float> x(static_cast<std::size_t>(t.numel()));
      std::memcpy(x.data(), src.data(t), t.nbytes());
      if (!(s = io::ct_encode_weight(module, x.data(), t.shape, scheme->weights, io::ct_group_format(cfg, *scheme), e))) return fail(module, s);
    }
    const std::string out = dir + "/lowbit";
    if (!io::is_directory(out) && ::mkdir(out.c_str(), 0755) != 0) return fail("mkdir lowbit", lowbit::status::error(lowbit::errc::io, "mkdir"));
    io::safetensors_writer w;
    if (!(s = w.open(out + "/model.safetensors", e.entries))) return fail("open lowbit/model.safetensors", s);
    if (!(s = io::write_ct_encoded(w, e))) return fail("write lowbit/model.safetensors", s);
    if (!(s = w.commit())) return fail("commit lowbit/model.safetensors", s);
    if (!(s = io::write_ct_config(out + "/config.json", R"({"torch_dtype": "bfloat16"})", cfg))) return fail("config.json", s);
  }
  return 0;
}

}  // namespace compressed_tensors_loader
