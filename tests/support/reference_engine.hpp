// SPDX-License-Identifier: Apache-2.0
// A scalar blockwise quantizer written directly from the codecs and the formulas documented in
// include/lowbit/quant/blockwise.hpp: one element at a time, one block at a time, no threads, no
// SIMD, none of the engine's code. Inputs and outputs are converted with NVIDIA's host
// conversions (cuda_fp16.h, cuda_bf16.h), which must be included before this header.
#pragma once

#include <lowbit/codecs.hpp>
#include <lowbit/format.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace lowbit_test {

struct reference_quantized {
  std::vector<std::uint8_t> codes;  // packed exactly as the engine stores them
  std::vector<float> scales;
  std::vector<std::uint8_t> zero_points;
};

inline float widen(float x) { return x; }
inline float widen(lowbit::f16 h) {
  __half_raw r;
  r.x = h.bits;
  return __half2float(__half(r));
}
inline float widen(lowbit::bf16 b) {
  __nv_bfloat16_raw r;
  r.x = b.bits;
  return __bfloat162float(__nv_bfloat16(r));
}
template <class T>
T narrow(float x);
template <>
inline float narrow<float>(float x) { return x; }
template <>
inline lowbit::f16 narrow<lowbit::f16>(float x) {
  const __half h = __float2half_rn(x);
  lowbit::f16 out;
  std::memcpy(&out.bits, &h, 2);
  return out;
}
template <>
inline lowbit::bf16 narrow<lowbit::bf16>(float x) {
  const __nv_bfloat16 b = __float2bfloat16_rn(x);
  lowbit::bf16 out;
  std::memcpy(&out.bits, &b, 2);
  return out;
}

// Code of element x of a block with statistics (absmax, lo, hi), per format.
struct ref_block {
  bool zero = true;
  float scale = 0.0f, inv = 0.0f;
  int zp = 0;
};

inline ref_block ref_block_params(lowbit::format f, float absmax, float lo, float hi) {
  using lowbit::format;
  ref_block r;
  if (f == format::uint8_zeropoint) {
    if (!(hi - lo > 0.0f)) return r;
    r.scale = (hi - lo) / 255.0f;
    r.inv = 1.0f / r.scale;
    if (std::isinf(r.inv)) return ref_block{};
    const float z = std::min(255.0f, std::max(0.0f, -lo * r.inv));
    r.zp = static_cast<int>(std::nearbyint(z));  // default FP environment: ties to even
    r.zero = false;
    return r;
  }
  if (!(absmax > 0.0f)) return r;
  switch (f) {
    case format::int8_absmax:
      r.scale = absmax;
      r.inv = 127.0f / absmax;
      break;
    case format::e4m3fn:
      r.scale = absmax / 448.0f;
      r.inv = 448.0f / absmax;
      break;
    case format::e5m2:
      r.scale = absmax / 57344.0f;
      r.inv = 57344.0f / absmax;
      break;
    case format::e2m1fn:
      r.scale = absmax / 6.0f;
      r.inv = 6.0f / absmax;
      break;
    default:
      r.scale = absmax;
      r.inv = 1.0f / absmax;
  }
  if (std::isinf(r.inv)) return ref_block{};
  r.zero = false;
  return r;
}

inline std::uint8_t ref_zero_code(lowbit::format f) {
  using lowbit::format;
  return f == format::nf4 ? 7 : (f == format::bnb_dynamic8 ? 127 : 0);
}

inline std::uint8_t ref_encode(lowbit::format f, float x, const ref_block& b) {
  namespace c = lowbit::codecs;
  using lowbit::format;
  if (b.zero) return ref_zero_code(f);
  const float y = x * b.inv;
  switch (f) {
    case format::nf4: return c::nf4::encode(y);
    case format::bnb_fp4: return c::bnb_fp4::encode(y);
    case format::bnb_dynamic8: return c::bnb_dynamic8::encode(y);
    case format::int8_absmax: return static_cast<std::uint8_t>(c::int8_absmax::encode(x, b.inv));
    case format::uint8_zeropoint: return c::uint8_zeropoint::encode(x, b.inv, b.zp);
    case format::e4m3fn: return c::e4m3fn::encode(y);
    case format::e5m2: return c::e5m2::encode(y);
    case format::e2m1fn: return c::e2m1fn::encode(y);
  }
  return 0;
}

inline float ref_decode(lowbit::format f, std::uint8_t q, float scale, int zp) {
  namespace c = lowbit::codecs;
  using lowbit::format;
  switch (f) {
    case format::nf4: return c::nf4::decode(q) * scale;
    case format::bnb_fp4: return c::bnb_fp4::decode(q) * scale;
    case format::bnb_dynamic8: return c::bnb_dynamic8::decode(q) * scale;
    case format::int8_absmax: {
      const float p = static_cast<float>(static_cast<std::int8_t>(q)) * scale;
      return p * (1.0f / 127.0f);
    }
    case format::uint8_zeropoint: return static_cast<float>(static_cast<int>(q) - zp) * scale;
    case format::e4m3fn: return c::e4m3fn::decode(q) * scale;
    case format::e5m2: return c::e5m2::decode(q) * scale;
    case format::e2m1fn: return c::e2m1fn::decode(q) * scale;
  }
  return 0.0f;
}

inline bool ref_is_4bit(lowbit::format f) {
  return f == lowbit::format::nf4 || f == lowbit::format::bnb_fp4 || f == lowbit::format::e2m1fn;
}

/// Quantizes n finite elements in blocks of bs.
template <class T>
reference_quantized ref_quantize(lowbit::format f, const T* x, std::int64_t n, std::int64_t bs) {
  reference_quantized out;
  const std::int64_t nb = (n + bs - 1) / bs;
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
  std::vector<ref_block> blocks;
  for (std::int64_t b = 0; b < nb; ++b) {
    float absmax = 0.0f, lo = 0.0f, hi = 0.0f;
    for (std::int64_t i = b * bs; i < std::min(n, (b + 1) * bs); ++i) {
      const float v = widen(x[i]);
      absmax = std::max(absmax, std::fabs(v));
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    const ref_block r = ref_block_params(f, absmax, lo, hi);
    blocks.push_back(r);
    out.scales.push_back(r.scale);
    out.zero_points.push_back(static_cast<std::uint8_t>(r.zp));
    for (std::int64_t i = b * bs; i < std::min(n, (b + 1) * bs); ++i) codes[i] = ref_encode(f, widen(x[i]), r);
  }
  if (ref_is_4bit(f)) {
    const bool high_first = f != lowbit::format::e2m1fn;
    for (std::int64_t j = 0; 2 * j < n; ++j) {
      const std::uint8_t a = codes[2 * j];
      const std::uint8_t b = 2 * j + 1 < n ? codes[2 * j + 1] : ref_encode(f, 0.0f, blocks[(2 * j) / bs]);
      out.codes.push_back(high_first ? static_cast<std::uint8_t>(a << 4 | b) : static_cast<std::uint8_t>(b << 4 | a));
    }
  } else {
    out.codes = codes;
  }
  return out;
}

/// Dequantizes n elements (scales/zero points per block of bs) into T.
template <class T>
std::vector<T> ref_dequantize(lowbit::format f, const std::uint8_t* codes, const float* scales, const std::uint8_t* zps,
                              std::int64_t n, std::int64_t bs) {
  std::vector<T> out;
  for (std::int64_t i = 0; i < n; ++i) {
    std::uint8_t q;
    if (ref_is_4bit(f)) {
      const std::uint8_t byte = codes[i / 2];
      const bool high = (f != lowbit::format::e2m1fn) == (i % 2 == 0);
      q = high ? byte >> 4 : byte & 15;
    } else {
      q = codes[i];
    }
    out.push_back(narrow<T>(ref_decode(f, q, scales[i / bs], zps ? zps[i / bs] : 0)));
  }
  return out;
}

}  // namespace lowbit_test
