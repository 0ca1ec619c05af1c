// SPDX-License-Identifier: Apache-2.0
// The vector paths of the plain conversions (lowbit/convert.hpp) against the scalar codecs for
// every float32 bit pattern (2^32), for the two FP8 formats in both overflow modes. The other
// formats share the same generic arithmetic and are swept over a stratified set of float32 inputs
// in convert_test.cpp. CTest label: exhaustive.
#include <lowbit/convert.hpp>

#include <atomic>
#include <cstdint>
#include <vector>

#include "test_util.hpp"

namespace {

namespace lb = ::lowbit;
namespace codecs = lb::codecs;

template <class C, codecs::overflow O>
void sweep(lb::minifloat_type t) {
  struct path {
    const char* name;
    bool avx512;
  };
  std::vector<path> paths;
  if (lb::host::avx2::available()) paths.push_back({"avx2", false});
  if (lb::host::avx512::available()) paths.push_back({"avx512", true});
  if (paths.empty()) GTEST_SKIP() << "no SIMD path on this CPU: the portable path is the scalar codec itself";
  constexpr std::int64_t chunk = std::int64_t{1} << 24;
  std::vector<std::uint32_t> x(static_cast<std::size_t>(chunk));
  std::vector<std::vector<std::uint8_t>> got(paths.size(), std::vector<std::uint8_t>(static_cast<std::size_t>(chunk)));
  std::vector<std::uint64_t> bad(paths.size(), 0);
  std::vector<std::uint32_t> first_bad(paths.size(), 0);
  for (std::uint64_t base = 0; base < (std::uint64_t{1} << 32); base += static_cast<std::uint64_t>(chunk)) {
    for (std::int64_t i = 0; i < chunk; ++i) x[static_cast<std::size_t>(i)] = static_cast<std::uint32_t>(base + static_cast<std::uint64_t>(i));
    for (std::size_t p = 0; p < paths.size(); ++p) {
      lb::convert_options o;
      o.overflow = O;
      o.avx512 = paths[p].avx512;
      ASSERT_TRUE(lb::convert_to_minifloat(x.data(), lb::dtype::f32, chunk, t, got[p].data(), o).ok());
    }
    // the oracle, on every thread
    std::vector<std::atomic<std::uint64_t>> bad_here(paths.size());
    std::vector<std::atomic<std::uint32_t>> first_here(paths.size());
    for (std::size_t p = 0; p < paths.size(); ++p) {
      bad_here[p] = 0;
      first_here[p] = 0xFFFFFFFFu;
    }
    lb::host::parallel_for(chunk, 1 << 16, 2, 0, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float v = lowbit_test::float_of(x[static_cast<std::size_t>(i)]);
        const std::uint8_t want = C::template encode<codecs::rounding::nearest_even, O>(v);
        for (std::size_t p = 0; p < paths.size(); ++p) {
          std::uint8_t g = got[p][static_cast<std::size_t>(lb::is_packed4(t) ? i / 2 : i)];
          if (lb::is_packed4(t)) g = static_cast<std::uint8_t>((i & 1) ? g >> 4 : g & 0xF);
          if (g != want) {
            bad_here[p] += 1;
            std::uint32_t cur = first_here[p].load();
            while (x[static_cast<std::size_t>(i)] < cur && !first_here[p].compare_exchange_weak(cur, x[static_cast<std::size_t>(i)])) {
            }
          }
        }
      }
    });
    for (std::size_t p = 0; p < paths.size(); ++p) {
      if (bad[p] == 0 && bad_here[p] > 0) first_bad[p] = first_here[p];
      bad[p] += bad_here[p];
    }
  }
  for (std::size_t p = 0; p < paths.size(); ++p) {
    EXPECT_EQ(bad[p], 0u) << lb::minifloat_name(t) << " " << paths[p].name << " overflow " << static_cast<int>(O)
                          << ": first mismatching float32 bits " << lowbit_test::hex(first_bad[p]);
  }
}

TEST(ConvertExhaustive, E4m3fnSaturate) { sweep<codecs::e4m3fn, codecs::overflow::saturate>(lb::minifloat_type::e4m3fn); }
TEST(ConvertExhaustive, E4m3fnSpecial) { sweep<codecs::e4m3fn, codecs::overflow::special>(lb::minifloat_type::e4m3fn); }
TEST(ConvertExhaustive, E5m2Saturate) { sweep<codecs::e5m2, codecs::overflow::saturate>(lb::minifloat_type::e5m2); }
TEST(ConvertExhaustive, E5m2Special) { sweep<codecs::e5m2, codecs::overflow::special>(lb::minifloat_type::e5m2); }

}  // namespace
