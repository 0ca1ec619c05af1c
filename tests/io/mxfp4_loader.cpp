// SPDX-License-Identifier: Apache-2.0
// The lowbit half of mxfp4_interop.py (which documents the protocol):
//   io_interop_loader mxfp4 DIR
// 1. reads DIR/py/config.json's mxfp4 quantization_config and every `X_blocks` / `X_scales` pair of
//    the checkpoint folder DIR/py, and writes DIR/py_lowbit.safetensors holding, per pair, `X`
//    (its float32 dequantization) and `X_blocks` / `X_scales` written back from the loaded tensor;
// 2. quantizes every 2-D or 3-D tensor (F32 or BF16) of DIR/src.safetensors with the default
//    (gpt-oss) rule, copies the other tensors unchanged, and writes the checkpoint folder
//    DIR/lowbit (model.safetensors, and config.json with the quantization_config read in 1).
// Prints FAIL lines and exits 1 on any error.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace mxfp4_loader {
namespace {

int fail(const char* what, const lowbit::status& s) {
  std::printf("FAIL: %s: %s\n", what, s.message());
  return 1;
}

}  // namespace

// io_interop_loader mxfp4 DIR (interop_loader_main.cpp): argv[0] is "mxfp4", argv[1] DIR.
int run(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: io_interop_loader mxfp4 DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  lowbit::status s;
  io::mxfp4_config cfg;

  // 1. read what Python wrote
  {
    if (!(s = io::read_mxfp4_config(dir + "/py/config.json", cfg))) return fail("read py/config.json", s);
    io::checkpoint ck;
    if (!(s = io::checkpoint::open(dir + "/py", ck))) return fail("open py", s);
    std::vector<std::vector<std::uint8_t>> dense;
    std::vector<lowbit::scaled_tensor> qs;
    std::vector<io::tensor_entry> entries;
    for (const auto& name : ck.names()) {
      std::string base;
      if (!io::mxfp4_base_of(name, base) || !io::is_mxfp4_pair(ck, base)) continue;
      qs.emplace_back();
      if (!(s = io::load_mxfp4(ck, base, qs.back()))) return fail(base.c_str(), s);
      dense.emplace_back();
      std::vector<std::int64_t> shape;
      if (!(s = io::dequantize_mxfp4(ck, base, lowbit::dtype::f32, dense.back(), shape))) return fail(base.c_str(), s);
      entries.push_back({base, io::st_dtype::F32, shape});
      if (!(s = io::mxfp4_entries(base, qs.back(), entries))) return fail(base.c_str(), s);
    }
    io::safetensors_writer w;
    if (!(s = w.open(dir + "/py_lowbit.safetensors", entries))) return fail("open py_lowbit", s);
    for (std::size_t i = 0; i < qs.size(); ++i) {
      if (!(s = w.write(dense[i].data(), dense[i].size()))) return fail("write py_lowbit", s);
      if (!(s = io::write_mxfp4(w, qs[i]))) return fail("write py_lowbit", s);
    }
    if (!(s = w.commit())) return fail("commit py_lowbit", s);
  }

  // 2. quantize what Python gave
  {
    io::safetensors_file src;
    if (!(s = io::safetensors_file::open(dir + "/src.safetensors", src))) return fail("open src", s);
    std::vector<lowbit::scaled_tensor> qs;
    std::vector<const io::tensor_info*> order;  // null: the next quantized tensor
    std::vector<io::tensor_entry> entries;
    for (const auto& t : src.tensors()) {
      const bool quantize = (t.shape.size() == 2 || t.shape.size() == 3) && (t.dtype == io::st_dtype::F32 || t.dtype == io::st_dtype::BF16);
      if (!quantize) {
        entries.push_back({t.name, t.dtype, t.shape});
        order.push_back(&t);
        continue;
      }
      // copied out: the mapping gives no alignment
      std::vector<std::uint8_t> x(static_cast<std::size_t>(t.nbytes()));
      if (!x.empty()) std::memcpy(x.data(), src.data(t), x.size());
      qs.emplace_back();
      const lowbit::dtype dt = t.dtype == io::st_dtype::F32 ? lowbit::dtype::f32 : lowbit::dtype::bf16;
      if (!(s = io::quantize_mxfp4(x.data(), dt, t.shape, qs.back()))) return fail(t.name.c_str(), s);
      if (!(s = io::mxfp4_entries(t.name, qs.back(), entries))) return fail(t.name.c_str(), s);
      order.push_back(nullptr);
    }
    const std::string out = dir + "/lowbit";
    if (!io::is_directory(out) && ::mkdir(out.c_str(), 0755) != 0) return fail("mkdir lowbit", lowbit::status::error(lowbit::errc::io, "mkdir"));
    io::safetensors_writer w;
    if (!(s = w.open(out + "/model.safetensors", entries))) return fail("open lowbit/model.safetensors", s);
    std::size_t next = 0;
    for (const io::tensor_info* t : order) {
      if (t != nullptr) s = w.write(src.data(*t), static_cast<std::size_t>(t->nbytes()));
      else s = io::write_mxfp4(w, qs[next++]);
      if (!s) return fail("write lowbit/model.safetensors", s);
    }
    if (!(s = w.commit())) return fail("commit lowbit/model.safetensors", s);
    if (!(s = io::write_mxfp4_config(out + "/config.json", R"({"model_type": "gpt_oss", "torch_dtype": "bfloat16"})", cfg))) return fail("config.json", s);
  }
  return 0;
}

}  // namespace mxfp4_loader
