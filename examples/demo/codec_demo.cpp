// SPDX-License-Identifier: Apache-2.0
// lowbit_demo: encodes a float32 tensor with every element codec and prints, per codec, the bits
// stored per value and the reconstruction error.
//
//   lowbit_demo [FILE.f32]   (raw little-endian float32; default: the shipped MiniLM-L6 sample)
//
// Scaling, per block of 64 values (absmax = max |x| of the block, kept as float32, 32/64 bit per
// value): codebooks (nf4, bnb_fp4, bnb_dynamic8) encode x / absmax as bitsandbytes does;
// minifloats encode x * (max_finite / absmax); int8_absmax uses 127 / absmax; uint8_zeropoint
// maps the block's [min, max] onto 0..255 (two float32 per block). e8m0fnu is a scale format: it
// is shown rounding each value on its own to a power of two (|x|, no sign, no block scale).
#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#ifndef LOWBIT_DEMO_DEFAULT_INPUT
#  define LOWBIT_DEMO_DEFAULT_INPUT "examples/data/minilm_l0_query_384x384.f32"
#endif

namespace {

using namespace lowbit::codecs;
constexpr std::size_t kBlock = 64;

struct stats {
  double max_abs = 0, sum_abs = 0, sum_sq_err = 0, sum_sq = 0;
  std::size_t n = 0;
  void add(float x, float y) {
    const double e = std::fabs(double(x) - double(y));
    max_abs = e > max_abs ? e : max_abs;
    sum_abs += e;
    sum_sq_err += e * e;
    sum_sq += double(x) * double(x);
    ++n;
  }
};

float block_absmax(const float* x, std::size_t n) {
  float m = 0.0f;
  for (std::size_t i = 0; i < n; ++i) m = std::fabs(x[i]) > m ? std::fabs(x[i]) : m;
  return m;
}

// Applies `roundtrip(block, count, absmax, out)` block by block and accumulates the error.
template <class F>
stats blockwise(const std::vector<float>& x, F roundtrip) {
  stats s;
  std::vector<float> y(kBlock);
  for (std::size_t b = 0; b < x.size(); b += kBlock) {
    const std::size_t n = x.size() - b < kBlock ? x.size() - b : kBlock;
    roundtrip(&x[b], n, block_absmax(&x[b], n), y.data());
    for (std::size_t i = 0; i < n; ++i) s.add(x[b + i], y[i]);
  }
  return s;
}

template <class Codebook>
stats codebook_roundtrip(const std::vector<float>& x) {
  return blockwise(x, [](const float* v, std::size_t n, float absmax, float* out) {
    const float inv = absmax > 0.0f ? 1.0f / absmax : 0.0f;
    for (std::size_t i = 0; i < n; ++i) out[i] = Codebook::decode(Codebook::encode(v[i] * inv)) * absmax;
  });
}

template <class Minifloat>
stats minifloat_roundtrip(const std::vector<float>& x) {
  return blockwise(x, [](const float* v, std::size_t n, float absmax, float* out) {
    const float scale = absmax > 0.0f ? absmax / Minifloat::max() : 1.0f;
    const float inv = 1.0f / scale;
    for (std::size_t i = 0; i < n; ++i) out[i] = Minifloat::decode(Minifloat::encode(v[i] * inv)) * scale;
  });
}

stats int8_roundtrip(const std::vector<float>& x) {
  return blockwise(x, [](const float* v, std::size_t n, float absmax, float* out) {
    const float inv = absmax > 0.0f ? 127.0f / absmax : 0.0f;
    for (std::size_t i = 0; i < n; ++i) out[i] = int8_absmax::decode(int8_absmax::encode(v[i], inv), absmax / 127.0f);
  });
}

stats zeropoint_roundtrip(const std::vector<float>& x) {
  return blockwise(x, [](const float* v, std::size_t n, float, float* out) {
    float lo = v[0], hi = v[0];
    for (std::size_t i = 1; i < n; ++i) {
      lo = v[i] < lo ? v[i] : lo;
      hi = v[i] > hi ? v[i] : hi;
    }
    const float scale = hi > lo ? (hi - lo) / 255.0f : 1.0f;
    const int zp = static_cast<int>(std::nearbyint(-lo / scale));
    for (std::size_t i = 0; i < n; ++i)
      out[i] = uint8_zeropoint::decode(uint8_zeropoint::encode(v[i], 1.0f / scale, zp), scale, zp);
  });
}

stats e8m0_roundtrip(const std::vector<float>& x) {
  stats s;
  for (float v : x) s.add(std::fabs(v), e8m0fnu::decode(e8m0fnu::encode(v)));
  return s;
}

void print_row(const char* name, double bits, const stats& s) {
  const double sqnr = s.sum_sq_err > 0 ? 10.0 * std::log10(s.sum_sq / s.sum_sq_err) : INFINITY;
  std::printf("%-16s %8.3f %12.3e %12.3e %12.3e %9.2f\n", name, bits, s.max_abs, s.sum_abs / double(s.n),
              std::sqrt(s.sum_sq_err / double(s.n)), sqnr);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : LOWBIT_DEMO_DEFAULT_INPUT;
  if (argc > 2 || path == "-h" || path == "--help") {
    std::fprintf(stderr, "usage: lowbit_demo [FILE.f32]\n");
    return 2;
  }
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    std::fprintf(stderr, "lowbit_demo: cannot open '%s'\n", path.c_str());
    return 1;
  }
  const std::streamsize bytes = in.tellg();
  if (bytes <= 0 || bytes % 4 != 0) {
    std::fprintf(stderr, "lowbit_demo: '%s' holds %lld bytes, not a positive multiple of 4 (float32)\n",
                 path.c_str(), static_cast<long long>(bytes));
    return 1;
  }
  std::vector<float> x(static_cast<std::size_t>(bytes / 4));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(x.data()), bytes);
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) {
      std::fprintf(stderr, "lowbit_demo: element %zu of '%s' is not finite\n", i, path.c_str());
      return 1;
    }
  }

  const double scale_bits = 32.0 / kBlock;
  std::printf("%s: %zu float32 values, block %zu (scale: float32 absmax per block)\n\n", path.c_str(), x.size(), kBlock);
  std::printf("%-16s %8s %12s %12s %12s %9s\n", "codec", "bits/val", "max |err|", "mean |err|", "rmse", "SQNR dB");
  print_row("e5m2", 8 + scale_bits, minifloat_roundtrip<e5m2>(x));
  print_row("e4m3fn", 8 + scale_bits, minifloat_roundtrip<e4m3fn>(x));
  print_row("bnb_dynamic8", 8 + scale_bits, codebook_roundtrip<bnb_dynamic8>(x));
  print_row("int8_absmax", 8 + scale_bits, int8_roundtrip(x));
  print_row("uint8_zeropoint", 8 + 2 * scale_bits, zeropoint_roundtrip(x));
  print_row("e3m2fn", 6 + scale_bits, minifloat_roundtrip<e3m2fn>(x));
  print_row("e2m3fn", 6 + scale_bits, minifloat_roundtrip<e2m3fn>(x));
  print_row("nf4", 4 + scale_bits, codebook_roundtrip<nf4>(x));
  print_row("bnb_fp4", 4 + scale_bits, codebook_roundtrip<bnb_fp4>(x));
  print_row("e2m1fn", 4 + scale_bits, minifloat_roundtrip<e2m1fn>(x));
  print_row("e3m0", 4 + scale_bits, minifloat_roundtrip<e3m0>(x));
  print_row("e8m0fnu (|x|)", 8, e8m0_roundtrip(x));
  return 0;
}
