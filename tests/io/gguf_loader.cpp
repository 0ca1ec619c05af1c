// SPDX-License-Identifier: Apache-2.0
// The lowbit side of gguf_interop.py (the check of lowbit's GGUF files against the gguf package
// and ggml's own quantizers).
//   gguf_loader write OUT.gguf IN.f32 ROWS COLS
//       writes a GGUF v3 file: metadata of several value types and one tensor per ggml type lowbit
//       handles, "t.<type>" (shape [ROWS, COLS], ne = {COLS, ROWS}), quantized from the float32
//       matrix in IN.f32 by lowbit::ggml::quantize.
//   gguf_loader dump IN.gguf OUTDIR
//       reads IN.gguf with lowbit::io::gguf_file, prints one line per key ("kv KEY TYPE ARRAY COUNT
//       FIRST") and per tensor ("tensor NAME TYPE DIM..."), and writes each tensor of a handled type,
//       dequantized, to OUTDIR/NAME.f32.
// Exit 0 on success, 1 with the error on stderr.
#include <lowbit/io/gguf.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace io = lowbit::io;
namespace gg = lowbit::ggml;

namespace {

int fail(const lowbit::status& s) {
  std::fprintf(stderr, "gguf_loader: %s\n", s.message());
  return 1;
}

int write(const std::string& out, const std::string& in, std::int64_t rows, std::int64_t cols) {
  std::ifstream f(in, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (static_cast<std::int64_t>(bytes.size()) != rows * cols * 4) {
    std::fprintf(stderr, "gguf_loader: %s has %zu bytes, not %lld float32\n", in.c_str(), bytes.size(), static_cast<long long>(rows * cols));
    return 1;
  }
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  std::memcpy(x.data(), bytes.data(), bytes.size());
  const gg::type types[] = {gg::type::f32, gg::type::f16, gg::type::bf16, gg::type::q8_0, gg::type::q4_0, gg::type::q4_1, gg::type::mxfp4};
  std::vector<io::gguf_tensor> tensors;
  std::vector<std::vector<std::uint8_t>> data;
  for (gg::type t : types) {
    io::gguf_tensor e;
    e.name = std::string("t.") + gg::traits(t).name;
    e.ne = {cols, rows};
    e.type = static_cast<std::uint32_t>(t);
    tensors.push_back(e);
    data.emplace_back(gg::row_bytes(t, x.size()));
    const lowbit::status s = gg::quantize(t, x.data(), static_cast<std::int64_t>(x.size()), data.back().data());
    if (!s) return fail(s);
  }
  io::gguf_value scores = io::gguf_value::scalar(io::gguf_type::f32, 0.25f);
  scores.array = true;
  const float more[2] = {-1.5f, 3.0f};
  scores.raw.insert(scores.raw.end(), reinterpret_cast<const std::uint8_t*>(more), reinterpret_cast<const std::uint8_t*>(more) + 8);
  const std::vector<io::gguf_kv> kv = {
      {"general.architecture", io::gguf_value::string("lowbit-test")},
      {"general.alignment", io::gguf_value::scalar(io::gguf_type::u32, std::uint32_t{64})},
      {"test.count", io::gguf_value::scalar(io::gguf_type::u64, std::uint64_t{1} << 40)},
      {"test.offset", io::gguf_value::scalar(io::gguf_type::i32, std::int32_t{-7})},
      {"test.flag", io::gguf_value::scalar(io::gguf_type::boolean, std::uint8_t{1})},
      {"test.ratio", io::gguf_value::scalar(io::gguf_type::f64, 0.1)},
      {"test.scores", scores},
      {"tokenizer.ggml.tokens", io::gguf_value::string_array({"<s>", "</s>", "\xE2\x96\x81lowbit", ""})},
  };
  io::gguf_writer w;
  lowbit::status s = w.open(out, kv, tensors);
  if (!s) return fail(s);
  for (const auto& d : data)
    if (!(s = w.write(d.data(), d.size()))) return fail(s);
  if (!(s = w.commit())) return fail(s);
  return 0;
}

int dump(const std::string& in, const std::string& dir) {
  io::gguf_file f;
  lowbit::status s = io::gguf_file::open(in, f);
  if (!s) return fail(s);
  for (const auto& kv : f.metadata()) {
    std::string first;
    const io::gguf_value& v = kv.value;
    if (v.count() > 0) {
      std::int64_t i = 0;
      double d = 0;
      if (v.type == io::gguf_type::string) first = v.strings[0];
      else if (v.type != io::gguf_type::f32 && v.type != io::gguf_type::f64 && v.get(0, i)) first = std::to_string(i);
      else if (v.get(0, d)) {
        char b[64];
        std::snprintf(b, sizeof b, "%.17g", d);
        first = b;
      }
    }
    std::printf("kv %s %s %d %llu %s\n", kv.key.c_str(), io::gguf_type_name(static_cast<std::uint32_t>(v.type)), v.array ? 1 : 0,
                static_cast<unsigned long long>(v.count()), first.c_str());
  }
  for (const auto& t : f.tensors()) {
    std::printf("tensor %s %s", t.name.c_str(), gg::type_name(t.type));
    for (auto d : t.ne) std::printf(" %lld", static_cast<long long>(d));
    std::printf("\n");
    gg::type_traits tr{};
    if (!gg::traits_of(t.type, tr) || !tr.handled) continue;
    std::vector<float> y(static_cast<std::size_t>(t.numel()));
    if (!(s = io::gguf_file::dequantize(t, y.data()))) return fail(s);
    std::ofstream o(dir + "/" + t.name + ".f32", std::ios::binary);
    o.write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(y.size() * 4));
    if (!o) {
      std::fprintf(stderr, "gguf_loader: cannot write %s/%s.f32\n", dir.c_str(), t.name.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::string(argv[1]) == "write") return write(argv[2], argv[3], std::atoll(argv[4]), std::atoll(argv[5]));
  if (argc == 4 && std::string(argv[1]) == "dump") return dump(argv[2], argv[3]);
  std::fprintf(stderr, "usage: gguf_loader write OUT.gguf IN.f32 ROWS COLS | gguf_loader dump IN.gguf OUTDIR\n");
  return 2;
}
