// SPDX-License-Identifier: Apache-2.0
/// @file convert_bench.cpp
/// @brief lowbit_bench rows of the plain conversions (lowbit/convert.hpp), next to the memcpy row
///        of the same run: `convert/<from>_to_<to>` over 64M elements (256 MiB of float32, far
///        past the last-level cache), all hardware threads, bytes = elements read + codes written
///        (or codes read + elements written), each byte once. Target: >= 85% of memcpy.
///
/// With `--lowbit_diagnostics`: the same at one thread (`/threads:1`), with the AVX2 kernels
/// only (`/avx2`), the portable code (`/nosimd`), ordinary stores (`diag/convert/.../cached`), and
/// `diag/convert/scalar_loop_f32_to_e4m3fn`: one thread calling codecs::e4m3fn::encode per element,
/// the loop this API replaces.
#include <lowbit/convert.hpp>

#include "bench_rows.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace lowbit_bench {
namespace {

namespace lb = ::lowbit;

constexpr std::int64_t kElements = std::int64_t{1} << 26;

struct buffers {
  void* f32 = nullptr;   // input values as float32
  void* b16 = nullptr;   // the same as bfloat16 / float16 (rows of either dtype share it)
  void* out = nullptr;   // decode output, up to float32
  std::uint8_t* codes = nullptr;
};

void* allocate_bytes(std::int64_t bytes) {
  void* p = std::aligned_alloc(4096, static_cast<std::size_t>((bytes + 4095) / 4096 * 4096));
  if (p == nullptr) {
    std::fprintf(stderr, "lowbit_bench: cannot allocate %lld bytes for the convert rows\n", static_cast<long long>(bytes));
    std::exit(1);
  }
  std::memset(p, 0, static_cast<std::size_t>(bytes));  // first touch
  return p;
}

// Allocated and filled on first use (only if a convert row runs): roughly normal values with std
// ~20, as an activation already scaled into FP8's range is, and their e4m3fn codes.
const buffers& data() {
  static const buffers b = [] {
    buffers s;
    s.f32 = allocate_bytes(kElements * 4);
    s.b16 = allocate_bytes(kElements * 2);
    s.out = allocate_bytes(kElements * 4);
    s.codes = static_cast<std::uint8_t*>(allocate_bytes(kElements));
    auto* x = static_cast<float*>(s.f32);
    auto* h = static_cast<std::uint16_t*>(s.b16);
    std::uint64_t r = 0x2545F4914F6CDD1Dull;
    for (std::int64_t i = 0; i < kElements; ++i) {
      r ^= r << 13, r ^= r >> 7, r ^= r << 17;
      const float u = static_cast<float>(r & 0xFFFF) + static_cast<float>((r >> 16) & 0xFFFF) + static_cast<float>((r >> 32) & 0xFFFF) +
                      static_cast<float>(r >> 48);
      x[i] = (u / 65536.0f - 2.0f) * 35.0f;
      h[i] = lb::float_to_bf16_bits(x[i]);
    }
    if (!lb::convert_to_minifloat(x, lb::dtype::f32, kElements, lb::minifloat_type::e4m3fn, s.codes).ok()) std::exit(1);
    return s;
  }();
  return b;
}

const char* dtype_label(lb::dtype d) { return d == lb::dtype::f32 ? "f32" : (d == lb::dtype::f16 ? "f16" : "bf16"); }

// Rows named convert/... (variant "" or /threads:, /avx2, /nosimd), or diag/convert/... for
// the other diagnostics (prefix "diag").
void add_to(lb::dtype d, lb::minifloat_type t, const char* variant, lb::convert_options opt, const char* prefix = "") {
  const std::string name = std::string(prefix) + "convert/" + dtype_label(d) + "_to_" + lb::minifloat_name(t) + variant;
  const std::int64_t bytes = kElements * lb::dtype_size(d) + lb::minifloat_bytes(t, kElements);
  add_row(name, [=](benchmark::State& state) {
    const buffers& b = data();
    const void* x = d == lb::dtype::f32 ? b.f32 : b.b16;
    time_row(state, opt.threads, bytes, [&] { return lb::convert_to_minifloat(x, d, kElements, t, b.codes, opt).ok(); });
  });
}

void add_from(lb::minifloat_type t, lb::dtype d, const char* variant, lb::convert_options opt, const char* prefix = "") {
  const std::string name = std::string(prefix) + "convert/" + lb::minifloat_name(t) + "_to_" + dtype_label(d) + variant;
  const std::int64_t bytes = kElements * lb::dtype_size(d) + lb::minifloat_bytes(t, kElements);
  add_row(name, [=](benchmark::State& state) {
    const buffers& b = data();
    time_row(state, opt.threads, bytes, [&] { return lb::convert_from_minifloat(b.codes, t, kElements, b.out, d, opt).ok(); });
  });
}

}  // namespace

void register_convert_rows(bool diagnostics) {
  using lb::dtype;
  using lb::minifloat_type;
  const lb::convert_options all{};
  struct pair {
    dtype d;
    minifloat_type t;
  };
  const pair rows[] = {{dtype::f32, minifloat_type::e4m3fn}, {dtype::bf16, minifloat_type::e4m3fn}, {dtype::f16, minifloat_type::e5m2},
                       {dtype::f32, minifloat_type::e2m1fn}, {dtype::bf16, minifloat_type::e2m1fn}, {dtype::f32, minifloat_type::e8m0fnu}};
  for (const pair& p : rows) add_to(p.d, p.t, "", all);
  for (const pair& p : rows) add_from(p.t, p.d, "", all);
  if (!diagnostics) return;
  lb::convert_options one{}, avx2{}, portable{}, cached{};
  one.threads = 1;
  avx2.avx512 = false;
  portable.simd = false;
  cached.stores = lb::host::store_mode::cached;
  for (const auto& v : {std::make_pair("/threads:1", one), std::make_pair("/avx2", avx2), std::make_pair("/nosimd", portable),
                        std::make_pair("/cached", cached)}) {
    const char* prefix = v.second.stores == lb::host::store_mode::cached ? "diag/" : "";
    add_to(dtype::f32, minifloat_type::e4m3fn, v.first, v.second, prefix);
    add_from(minifloat_type::e4m3fn, dtype::f32, v.first, v.second, prefix);
    add_to(dtype::bf16, minifloat_type::e2m1fn, v.first, v.second, prefix);
    add_from(minifloat_type::e2m1fn, dtype::bf16, v.first, v.second, prefix);
  }
  add_row("diag/convert/scalar_loop_f32_to_e4m3fn", [](benchmark::State& state) {
    const buffers& b = data();
    const auto* x = static_cast<const float*>(b.f32);
    time_row(state, 1, kElements * 5, [&] {
      for (std::int64_t i = 0; i < kElements; ++i) b.codes[i] = lb::codecs::e4m3fn::encode<lb::codecs::rounding::nearest_even, lb::codecs::overflow::special>(x[i]);
      return true;
    });
  });
}

}  // namespace lowbit_bench
