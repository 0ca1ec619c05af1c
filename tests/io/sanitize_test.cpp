// SPDX-License-Identifier: Apache-2.0
// lowbit::io on inputs that once reached undefined behaviour, built with ASan+UBSan
// (io_sanitize_test): a sanitizer report is a failure even where the result looked right.
// - weights of no elements loaded and dequantized (memcpy to the null buffer of an empty tensor);
// - shapes whose element count overflows, or with a negative dimension (signed overflow in
//   resolve_block_size);
// - JSON nested 100,000 levels deep (recursion over the parsed value: stack overflow), and the
//   limit exactly;
// - a valid file whose data section starts at an odd offset, loaded and dequantized.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include "io_test_util.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace io = lowbit::io;
using lowbit_test::scratch_dir;

namespace {

// Writes the quantized `q` as weight "l.weight" of a checkpoint at `path`.
void write_weight(const std::string& path, const lowbit::quant_tensor& q) {
  std::vector<io::tensor_entry> e;
  ASSERT_TRUE(io::bnb_entries("l.weight", q, e).ok());
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(path, e).ok());
  ASSERT_TRUE(io::write_bnb(w, q).ok());
  ASSERT_TRUE(w.commit().ok());
}

std::string nested_json(int depth) { return "{\"a\": " + std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']') + "}"; }

}  // namespace

TEST(IoSanitize, WeightsWithoutElementsLoadAndDequantize) {
  scratch_dir d;
  int k = 0;
  for (lowbit::format fmt : {lowbit::format::nf4, lowbit::format::bnb_fp4, lowbit::format::int8_absmax}) {
    for (bool dq : {false, true}) {
      if (dq && fmt == lowbit::format::int8_absmax) continue;
      lowbit::quantize_params p;
      p.fmt = fmt;
      p.double_quant = dq;
      p.gran = fmt == lowbit::format::int8_absmax ? lowbit::granularity::per_row() : lowbit::granularity::per_block(64);
      lowbit::quant_tensor q;
      ASSERT_TRUE(lowbit::quantize(nullptr, lowbit::dtype::f16, {0, 64}, p, q).ok());
      const std::string path = d / ("z" + std::to_string(k++) + ".safetensors");
      write_weight(path, q);
      io::checkpoint c;
      ASSERT_TRUE(io::checkpoint::open(path, c).ok());
      lowbit::quant_tensor r;
      const lowbit::status s = fmt == lowbit::format::int8_absmax ? io::load_bnb_int8(c, "l.weight", r) : io::load_bnb_4bit(c, "l.weight", r);
      ASSERT_TRUE(s.ok()) << s.message();
      EXPECT_EQ(r.numel(), 0);
      EXPECT_TRUE(lowbit::dequantize(r, nullptr, lowbit::dtype::f16).ok());
    }
  }
}

TEST(IoSanitize, ShapesThatOverflowOrAreNegativeAreErrors) {
  const std::int64_t big = std::numeric_limits<std::int64_t>::max(), low = std::numeric_limits<std::int64_t>::min();
  struct bad {
    std::vector<std::int64_t> shape;
    const char* says;
  };
  const bad cases[] = {{{64, low}, "dimension 1 of the shape is negative"},
                       {{-1, 64}, "dimension 0 of the shape is negative"},
                       {{std::int64_t{1} << 32, std::int64_t{1} << 32}, "overflows a 64-bit integer at dimension 1"},
                       {{2, big}, "overflows a 64-bit integer at dimension 1"},
                       {{big, 2, 0}, "overflows a 64-bit integer at dimension 1"}};
  for (const auto& c : cases) {
    for (const auto& gran : {lowbit::granularity::per_block(64), lowbit::granularity::per_row(), lowbit::granularity::per_tensor()}) {
      std::int64_t block = -7;
      const lowbit::status s = lowbit::resolve_block_size(gran, c.shape, block);
      ASSERT_FALSE(s.ok());
      EXPECT_NE(std::string(s.message()).find(c.says), std::string::npos) << s.message();
      EXPECT_EQ(block, -7);
    }
  }
}

TEST(IoSanitize, JsonNestingIsLimited) {
  nlohmann::json j;
  for (int depth : {100000, io::max_json_depth}) {  // the object itself is one level
    const lowbit::status s = io::parse_json_text(nested_json(depth), "config.json", j);
    ASSERT_FALSE(s.ok()) << depth;
    EXPECT_NE(std::string(s.message()).find("config.json: not valid JSON: objects and arrays nested deeper than 128 levels"), std::string::npos) << s.message();
  }
  EXPECT_TRUE(io::parse_json_text(nested_json(io::max_json_depth - 1), "config.json", j).ok());
  // A safetensors header too.
  const std::string header = "{\"__metadata__\":{\"x\":\"y\"}," + std::string("\"t\":") + std::string(200, '[') + std::string(200, ']') + "}";
  io::safetensors_file f;
  const std::string bytes = lowbit_test::raw_safetensors(header, "");
  const lowbit::status s = io::safetensors_file::parse(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "deep.safetensors", f);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("nested deeper than 128 levels"), std::string::npos) << s.message();
}

// A header padded to put a float32 tensor at an odd offset of the file (and of the mapping).
TEST(IoSanitize, MisalignedDataLoadsAndDequantizes) {
  scratch_dir d;
  std::vector<float> w(5 * 70);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.37f * static_cast<float>(i));
  lowbit::quantize_params p;
  lowbit::quant_tensor q;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {5, 70}, p, q).ok());
  write_weight(d / "a.safetensors", q);
  std::string bytes = lowbit_test::read_bytes(d / "a.safetensors");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  std::string header = bytes.substr(8, static_cast<std::size_t>(n));
  header.erase(header.find_last_not_of(' ') + 1);
  io::safetensors_file f;
  ASSERT_TRUE(io::safetensors_file::parse(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "a", f).ok());
  while ((8 + header.size() + f.find("l.weight.absmax")->begin) % 4 != 1) header += ' ';  // its float32 absmax at an odd address
  lowbit_test::write_bytes(d / "odd.safetensors", lowbit_test::raw_safetensors(header, bytes.substr(8 + static_cast<std::size_t>(n))));
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d / "odd.safetensors", c).ok());
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(c.find("l.weight.absmax").file->data(*c.find("l.weight.absmax").tensor)) % 4, 1u);
  lowbit::quant_tensor r;
  ASSERT_TRUE(io::load_bnb_4bit(c, "l.weight", r).ok());
  std::vector<float> a(w.size()), b(w.size());
  ASSERT_TRUE(lowbit::dequantize(q, a.data(), lowbit::dtype::f32).ok());
  ASSERT_TRUE(lowbit::dequantize(r, b.data(), lowbit::dtype::f32).ok());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
}
