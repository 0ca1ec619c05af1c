// SPDX-License-Identifier: Apache-2.0
// Writes the reader fuzzer's seed corpus into DIR: small valid files made by lowbit's writer, one
// per layout (dense tensors of several dtypes with metadata; NF4 + double quant; FP4; LLM.int8).
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace {

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
  return ok ? 0 : 1;
}
