// SPDX-License-Identifier: Apache-2.0
// libFuzzer target over lowbit::io's reader: any byte string is parsed as a safetensors file; a
// file that validates has every tensor's bytes read, and every bitsandbytes weight in it loaded
// (4-bit through its quant_state JSON, LLM.int8 through SCB) and dequantized. The reader must
// answer every input with ok or an error status: never a crash, a sanitizer report or a leak.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace io = lowbit::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  io::safetensors_file f;
  if (!io::safetensors_file::parse(data, size, "fuzz.safetensors", f)) return 0;
  unsigned sum = 0;
  for (const auto& t : f.tensors())
    for (std::uint64_t i = 0; i < t.nbytes(); ++i) sum += f.data(t)[i];
  const io::checkpoint c = io::checkpoint::adopt(std::move(f), "fuzz.safetensors");
  for (const auto& name : c.names()) {
    lowbit::quant_tensor q;
    lowbit::status s;
    const auto* t = c.find(name).tensor;
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
