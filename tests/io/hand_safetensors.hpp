// SPDX-License-Identifier: Apache-2.0
// Safetensors files built by hand in memory for the layout tests (fine-grained FP8, MXFP4,
// compressed-tensors): tensors given as raw bytes, so each reader is tested against bytes its
// writer did not make, opened as a checkpoint without touching the disk.
#pragma once

#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <gtest/gtest.h>

#include "io_test_util.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit_test {

/// One tensor of a hand-built file: name, safetensors dtype, shape and its bytes.
struct raw_tensor {
  std::string name, dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

/// A safetensors file built by hand from `ts` (in order).
inline std::string build(const std::vector<raw_tensor>& ts) {
  std::string h = "{", data;
  for (const auto& t : ts) {
    std::string shape;
    for (auto d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    if (h.size() > 1) h += ",";
    h += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
         std::to_string(data.size() + t.bytes.size()) + "]}";
    data += t.bytes;
  }
  return raw_safetensors(h + "}", data);
}

inline std::string f32_bytes(const std::vector<float>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }
inline std::string u8_bytes(const std::vector<std::uint8_t>& v) { return std::string(v.begin(), v.end()); }
/// 16-bit values (BF16 / F16 bit patterns) as little-endian bytes.
inline std::string u16_bytes(const std::vector<std::uint16_t>& v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 2); }

/// Parses the bytes of a file built by `build` into checkpoint `c`.
inline lowbit::status open_bytes(const std::string& file, lowbit::io::checkpoint& c) {
  lowbit::io::safetensors_file f;
  LOWBIT_TRY(lowbit::io::safetensors_file::parse(reinterpret_cast<const std::uint8_t*>(file.data()), file.size(), "hand.safetensors", f));
  c = lowbit::io::checkpoint::adopt(std::move(f), "hand.safetensors");
  return {};
}

/// `q` dequantized to float32 (a test failure if dequantize fails).
inline std::vector<float> dequant(const lowbit::scaled_tensor& q) {
  std::vector<float> out(static_cast<std::size_t>(q.numel()));
  EXPECT_TRUE(lowbit::dequantize(q, out.data(), lowbit::dtype::f32).ok());
  return out;
}

}  // namespace lowbit_test
