// SPDX-License-Identifier: Apache-2.0
// Helper of blockscaled_numpy.py: quantizes a raw float32 matrix into a block-scaled format and
// writes what lowbit stores (codes, scales, the per-tensor float32) and its float32
// dequantization, for the independent numpy reference to compare byte for byte.
//
//   blockscaled_dump FORMAT RULE NVFP4_CONVENTION FP6_PACKING ROWS COLS TILE_ROWS TILE_COLS IN.f32 OUT_PREFIX
//
// RULE: floor|rceil|ceil|even; NVFP4_CONVENTION: scale|inverse|none; FP6_PACKING: packed|unpacked.
// Writes OUT_PREFIX.codes, .scales, .global (4 bytes), .deq (float32). Exit 0, or 1 with a message.
#include <lowbit/scaled_tensor.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

int fail(const std::string& m) {
  std::fprintf(stderr, "blockscaled_dump: %s\n", m.c_str());
  return 1;
}

bool write(const std::string& path, const void* p, std::size_t n) {
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  return static_cast<bool>(f);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 11) return fail("usage: FORMAT RULE NVFP4_CONVENTION FP6_PACKING ROWS COLS TILE_ROWS TILE_COLS IN.f32 OUT_PREFIX");
  lowbit::scaled_params p;
  bool found = false;
  for (int i = 0; i < lowbit::scaled_format_count; ++i) {
    const auto f = static_cast<lowbit::scaled_format>(i);
    if (std::strcmp(lowbit::info(f).name, argv[1]) == 0) {
      p.fmt = f;
      found = true;
    }
  }
  if (!found) return fail(std::string("unknown format ") + argv[1]);
  const std::string rule = argv[2], conv = argv[3], pack = argv[4];
  using lowbit::quant::mx_scale_rule;
  using lowbit::quant::nvfp4_global;
  p.mx_rule = rule == "rceil" ? mx_scale_rule::rceil : rule == "ceil" ? mx_scale_rule::ceil : rule == "even" ? mx_scale_rule::even : mx_scale_rule::floor;
  p.nvfp4 = conv == "inverse" ? nvfp4_global::inverse : conv == "none" ? nvfp4_global::none : nvfp4_global::scale;
  p.fp6 = pack == "unpacked" ? lowbit::fp6_packing::unpacked : lowbit::fp6_packing::packed;
  const std::int64_t rows = std::atoll(argv[5]), cols = std::atoll(argv[6]);
  p.gran = lowbit::granularity::per_tile(std::atoll(argv[7]), std::atoll(argv[8]));
  p.options.allow_nonfinite = true;
  std::ifstream in(argv[9], std::ios::binary);
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (static_cast<std::int64_t>(raw.size()) != rows * cols * 4) return fail("input size does not match ROWS x COLS float32");
  lowbit::scaled_tensor q;
  if (auto s = lowbit::quantize(raw.data(), lowbit::dtype::f32, {rows, cols}, p, q); !s) return fail(s.message());
  std::vector<float> deq(static_cast<std::size_t>(rows * cols));
  if (auto s = lowbit::dequantize(q, deq.data(), lowbit::dtype::f32); !s) return fail(s.message());
  const std::string out = argv[10];
  const float g = q.global_scale();
  const std::size_t scale_bytes = static_cast<std::size_t>(q.grid().tiles() * lowbit::bytes_per_scale(p.fmt));
  if (!write(out + ".codes", q.codes(), static_cast<std::size_t>(q.code_bytes())) || !write(out + ".scales", q.scale_bytes(), scale_bytes) ||
      !write(out + ".global", &g, 4) || !write(out + ".deq", deq.data(), deq.size() * 4))
    return fail("cannot write " + out);
  return 0;
}
