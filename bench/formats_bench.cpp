// SPDX-License-Identifier: Apache-2.0
/// @file formats_bench.cpp
/// @brief lowbit_bench rows of the block-scaled formats (issue 16): `quantize/<fmt>/<dtype>`
///        (f32 or bf16 input -> codes + scales) and `dequantize/<fmt>/<dtype>` for MXFP8 E4M3,
///        MXFP6 E2M3, MXFP4, NVFP4 and FP8 E4M3 with 128 x 128 tiles, on an 8192 x 8192 matrix
///        (64M elements, the size of lowbit_bench's other rows), all hardware threads. Bytes
///        counted as lowbit_bench counts them: the dense tensor, the codes and the scales, each
///        once. The summary's targets apply: quantize >= 60%, dequantize >= 85% of memcpy.
#include <lowbit/scaled_tensor.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "formats_bench.hpp"

namespace {

namespace lb = ::lowbit;

constexpr std::int64_t kRows = 8192, kCols = 8192, kNumel = kRows * kCols;

struct scaled_data {
  std::vector<float> x;  // quantize input (weight-like values)
  std::vector<lb::bf16> xb;
  std::vector<float> out;  // dequantize output (any dtype)
  std::vector<std::unique_ptr<lb::scaled_tensor>> tensors;
};

struct row_format {
  const char* label;
  lb::scaled_format fmt;
};

constexpr row_format kRowFormats[] = {{"mxfp8_e4m3", lb::scaled_format::mxfp8_e4m3},
                                      {"mxfp6_e2m3", lb::scaled_format::mxfp6_e2m3},
                                      {"mxfp4", lb::scaled_format::mxfp4},
                                      {"nvfp4", lb::scaled_format::nvfp4},
                                      {"fp8_e4m3_128x128", lb::scaled_format::fp8_e4m3_block}};

lb::scaled_params params_of(lb::scaled_format f) {
  lb::scaled_params p;
  p.fmt = f;
  return p;
}

scaled_data& data(const lowbit_bench::hooks& h) {
  static scaled_data d = [&] {
    scaled_data s;
    s.x.resize(static_cast<std::size_t>(kNumel));
    s.xb.resize(s.x.size());
    s.out.assign(s.x.size(), 0.0f);
    for (std::int64_t i = 0; i < kNumel; ++i) {
      s.x[static_cast<std::size_t>(i)] = h.weight(i);
      s.xb[static_cast<std::size_t>(i)] = lb::from_float<lb::bf16>(s.x[static_cast<std::size_t>(i)]);
    }
    for (const row_format& r : kRowFormats) {
      auto t = std::make_unique<lb::scaled_tensor>();
      const lb::status st = lb::quantize(s.x.data(), lb::dtype::f32, {kRows, kCols}, params_of(r.fmt), *t);
      if (!st) {
        std::fprintf(stderr, "lowbit_bench: setup quantize(%s) failed: %s\n", r.label, st.message());
        std::exit(1);
      }
      s.tensors.push_back(std::move(t));
    }
    return s;
  }();
  return d;
}

std::int64_t stored_bytes(const lb::scaled_tensor& t) { return t.nbytes(); }

}  // namespace

namespace lowbit_bench {

void register_format_rows(const hooks& h) {
  const hooks* hp = &h;
  for (std::size_t k = 0; k < sizeof kRowFormats / sizeof kRowFormats[0]; ++k) {
    const row_format r = kRowFormats[k];
    for (lb::dtype dt : {lb::dtype::f32, lb::dtype::bf16}) {
      const std::string suffix = dt == lb::dtype::f32 ? "/f32" : "/bf16";
      const std::string qname = std::string("quantize/") + r.label + suffix;
      h.add(qname, [hp, k, r, dt](benchmark::State& state) {
        scaled_data& d = data(*hp);
        const void* x = dt == lb::dtype::f32 ? static_cast<const void*>(d.x.data()) : static_cast<const void*>(d.xb.data());
        lb::scaled_tensor& t = *d.tensors[k];
        const std::int64_t bytes = stored_bytes(t) + kNumel * (dt == lb::dtype::f32 ? 4 : 2);
        // into the tensor's existing buffers (what quantize into a new tensor runs, minus the allocation)
        hp->timed(state, bytes, [&] {
          lb::host::scaled_view v = t.view();
          return lb::host::quantize_scaled_into(x, dt, v, {});
        });
      });
      const std::string dname = std::string("dequantize/") + r.label + suffix;
      h.add(dname, [hp, k, dt](benchmark::State& state) {
        scaled_data& d = data(*hp);
        const lb::scaled_tensor& t = *d.tensors[k];
        const std::int64_t bytes = stored_bytes(t) + kNumel * (dt == lb::dtype::f32 ? 4 : 2);
        hp->timed(state, bytes, [&] { return lb::dequantize(t, d.out.data(), dt); });
      });
    }
  }
}

}  // namespace lowbit_bench
