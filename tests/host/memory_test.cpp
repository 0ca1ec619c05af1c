// SPDX-License-Identifier: Apache-2.0
// quant_tensor storage from allocators (memory.hpp): a counting "device" allocator (host memory
// tagged memory_space::device) proves which copies run in which direction, that everything
// allocated is freed, that allocation failures leave the destination untouched, and that copies
// between spaces keep every byte.
#include <lowbit/lowbit.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <random>
#include <vector>

#include "test_util.hpp"

namespace {

struct ledger {
  int live = 0;             // allocations not yet freed
  int allocations = 0;
  int fail_after = -1;      // the allocation with this index (0-based) fails; -1: none
  int from_host = 0, to_host = 0, within = 0, zeroed = 0;
};

lowbit::allocator counting_device(ledger& l) {
  lowbit::allocator a;
  a.space = lowbit::memory_space::device;
  a.name = "counting test device";
  a.context = &l;
  a.allocate = [](std::size_t bytes, void* ctx) -> void* {
    auto& L = *static_cast<ledger*>(ctx);
    if (L.fail_after >= 0 && L.allocations >= L.fail_after) return nullptr;
    ++L.allocations;
    ++L.live;
    void* p = std::malloc(bytes);
    std::memset(p, 0xCD, bytes);  // garbage that zero() must clear
    return p;
  };
  a.deallocate = [](void* p, std::size_t, void* ctx) {
    --static_cast<ledger*>(ctx)->live;
    std::free(p);
  };
  a.zero = [](void* p, std::size_t bytes, void* ctx) -> lowbit::status {
    ++static_cast<ledger*>(ctx)->zeroed;
    std::memset(p, 0, bytes);
    return {};
  };
  a.copy = [](void* dst, const void* src, std::size_t bytes, lowbit::copy_kind k, void* ctx) -> lowbit::status {
    auto& L = *static_cast<ledger*>(ctx);
    (k == lowbit::copy_kind::from_host ? L.from_host : k == lowbit::copy_kind::to_host ? L.to_host : L.within)++;
    std::memcpy(dst, src, bytes);
    return {};
  };
  return a;
}

std::vector<float> weights(std::size_t n) {
  std::mt19937 rng(static_cast<unsigned>(lowbit_test::test_seed()));
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> w(n);
  for (auto& v : w) v = d(rng);
  return w;
}

}  // namespace

TEST(Memory, StorageIsZeroedAndFreed) {
  ledger l;
  {
    lowbit::storage<float> s;
    ASSERT_TRUE(s.allocate(100, counting_device(l), "test").ok());
    EXPECT_EQ(s.space(), lowbit::memory_space::device);
    for (std::size_t i = 0; i < 100; ++i) ASSERT_EQ(lowbit_test::bits_of(s[i]), 0u) << i;
    ASSERT_TRUE(s.allocate(7, counting_device(l), "test").ok());  // replaces: the old array is freed
    EXPECT_EQ(l.live, 1);
    lowbit::storage<float> moved = std::move(s);
    EXPECT_EQ(s.data(), nullptr);
    EXPECT_EQ(moved.size(), 7u);
  }
  EXPECT_EQ(l.live, 0);
  EXPECT_EQ(l.allocations, 2);
}

TEST(Memory, FailedAllocationKeepsTheOldContents) {
  ledger l;
  lowbit::storage<std::uint8_t> s;
  ASSERT_TRUE(s.allocate(16, counting_device(l), "codes").ok());
  s[3] = 42;
  l.fail_after = l.allocations;
  const lowbit::status st = s.allocate(32, counting_device(l), "codes");
  EXPECT_EQ(st.code(), lowbit::errc::out_of_memory);
  EXPECT_NE(std::string(st.message()).find("device memory (counting test device) for codes"), std::string::npos) << st.message();
  EXPECT_EQ(s.size(), 16u);
  EXPECT_EQ(s[3], 42);
  lowbit::allocator incomplete = counting_device(l);
  incomplete.zero = nullptr;
  EXPECT_EQ(s.allocate(4, incomplete, "codes").code(), lowbit::errc::invalid_argument);
}

TEST(Memory, QuantTensorRoundTripsThroughDeviceSpace) {
  LOWBIT_SEED_TRACE();
  const std::vector<float> w = weights(300 * 64 + 5);
  for (bool nested : {false, true}) {
    for (lowbit::format f : {lowbit::format::nf4, lowbit::format::uint8_zeropoint, lowbit::format::e2m1fn}) {
      if (nested && !lowbit::info(f).bnb) continue;
      SCOPED_TRACE(std::string(lowbit::info(f).name) + (nested ? " nested" : ""));
      ledger l;
      {
        lowbit::quantize_params p;
        p.fmt = f;
        p.double_quant = nested;
        lowbit::quant_tensor h;
        ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {static_cast<std::int64_t>(w.size())}, p, h).ok());
        lowbit::quant_tensor d, d2, back;
        ASSERT_TRUE(h.copy_to(counting_device(l), d).ok());
        EXPECT_EQ(d.location(), lowbit::memory_space::device);
        EXPECT_EQ(d.nbytes(), h.nbytes());
        EXPECT_GT(l.from_host, 0);
        EXPECT_EQ(l.to_host, 0);
        if (nested) {
          ASSERT_NE(d.nested_offset_device(), nullptr);
        }
        ASSERT_TRUE(d.clone(d2).ok());  // device to device
        EXPECT_GT(l.within, 0);
        ASSERT_TRUE(d2.copy_to(lowbit::allocator::host(), back).ok());
        EXPECT_GT(l.to_host, 0);
        EXPECT_EQ(back.location(), lowbit::memory_space::host);
        ASSERT_EQ(std::memcmp(back.codes(), h.codes(), static_cast<std::size_t>(lowbit::code_bytes(f, h.numel()))), 0);
        if (nested) {
          ASSERT_EQ(std::memcmp(back.nested_codes(), h.nested_codes(), static_cast<std::size_t>(h.blocks())), 0);
          ASSERT_EQ(std::memcmp(back.nested_scales(), h.nested_scales(), 4 * static_cast<std::size_t>(h.view().nested_blocks())), 0);
          EXPECT_EQ(lowbit_test::bits_of(back.nested_offset()), lowbit_test::bits_of(h.nested_offset()));
        } else {
          ASSERT_EQ(std::memcmp(back.scales(), h.scales(), 4 * static_cast<std::size_t>(h.blocks())), 0);
        }
        if (lowbit::info(f).zero_point) {
          ASSERT_EQ(std::memcmp(back.zero_points(), h.zero_points(), static_cast<std::size_t>(h.blocks())), 0);
        }
        std::vector<float> a(w.size()), b(w.size());
        ASSERT_TRUE(lowbit::dequantize(h, a.data(), lowbit::dtype::f32).ok());
        ASSERT_TRUE(lowbit::dequantize(back, b.data(), lowbit::dtype::f32).ok());
        ASSERT_EQ(std::memcmp(a.data(), b.data(), 4 * a.size()), 0);
        // the host engine refuses the device tensor instead of reading device pointers
        const lowbit::status st = lowbit::dequantize(d, a.data(), lowbit::dtype::f32);
        EXPECT_EQ(st.code(), lowbit::errc::invalid_argument);
      }
      EXPECT_EQ(l.live, 0) << "device allocations leaked";
    }
  }
}

TEST(Memory, DeviceOffsetFollowsSetNestedOffset) {
  ledger l;
  lowbit::quant_tensor d;
  ASSERT_TRUE(lowbit::quant_tensor::allocate(lowbit::format::nf4, {512}, lowbit::dtype::f32, 64, true, d, counting_device(l)).ok());
  ASSERT_TRUE(d.set_nested_offset(0.125f).ok());
  EXPECT_EQ(*d.nested_offset_device(), 0.125f);
  EXPECT_EQ(d.view().nested_offset_device, d.nested_offset_device());
  lowbit::quant_tensor h;
  *d.nested_offset_device() = 0.5f;  // as a kernel would write it
  ASSERT_TRUE(d.copy_to(lowbit::allocator::host(), h).ok());
  EXPECT_EQ(h.nested_offset(), 0.5f);
  EXPECT_EQ(h.nested_offset_device(), nullptr);
}

TEST(Memory, FailedCopyLeavesTheDestinationUnchanged) {
  ledger l;
  lowbit::quant_tensor h, d;
  const std::vector<float> w = weights(4096);
  lowbit::quantize_params p;
  p.double_quant = true;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {64, 64}, p, h).ok());
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {4096}, {}, d).ok());
  int arrays = 0;  // allocations of one successful copy
  {
    lowbit::quant_tensor ok;
    ASSERT_TRUE(h.copy_to(counting_device(l), ok).ok());
    arrays = l.allocations;
    ASSERT_GE(arrays, 4);  // codes, nested codes, nested scales, nested offset
  }
  for (int k = 0; k < arrays; ++k) {
    l.allocations = 0;
    l.fail_after = k;  // fail the k-th array of the copy
    const lowbit::status st = h.copy_to(counting_device(l), d);
    EXPECT_EQ(st.code(), lowbit::errc::out_of_memory) << k;
    EXPECT_EQ(d.location(), lowbit::memory_space::host);
    EXPECT_EQ(d.shape(), std::vector<std::int64_t>{4096});
    EXPECT_EQ(l.live, 0) << "a failed copy leaked device memory";
  }
}

// allocator::host(): the contract's 256-byte alignment for small blocks; large ones 2 MiB aligned
// and, on Linux with transparent huge pages in `always` or `madvise` mode, in a mapping the kernel
// marks THPeligible (read back from /proc/self/smaps, the kernel's own account).
TEST(HostAllocator, LargeBlocksAreOfferedHugePages) {
  const lowbit::allocator a = lowbit::allocator::host();
  for (std::size_t bytes : {std::size_t{1}, std::size_t{1000}, lowbit::allocator::huge_page_threshold - 1}) {
    void* p = a.allocate(bytes, a.context);
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 256, 0u) << bytes;
    a.deallocate(p, bytes, a.context);
  }
  const std::size_t bytes = (std::size_t{8} << 20) + 12345;
  auto* p = static_cast<unsigned char*>(a.allocate(bytes, a.context));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % (std::size_t{2} << 20), 0u);
  std::memset(p, 1, bytes);  // first touch
#if defined(__linux__)
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string m((std::istreambuf_iterator<char>(mode)), std::istreambuf_iterator<char>());
  if (m.find("[always]") == std::string::npos && m.find("[madvise]") == std::string::npos) {
    a.deallocate(p, bytes, a.context);
    GTEST_SKIP() << "transparent huge pages are off here (" << m << "): nothing to check";
  }
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in = false, eligible = false, found = false;
  long long huge_kb = -1;
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  while (std::getline(smaps, line)) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      in = addr >= lo && addr < hi;
      found = found || in;
    } else if (in && line.rfind("THPeligible:", 0) == 0) {
      eligible = line.find('1') != std::string::npos;
    } else if (in && line.rfind("AnonHugePages:", 0) == 0) {
      huge_kb = std::atoll(line.c_str() + 14);
    }
  }
  ASSERT_TRUE(found) << "no mapping of /proc/self/smaps holds the allocation";
  EXPECT_TRUE(eligible) << "the allocation's mapping is not THPeligible";
  std::printf("8 MiB allocation: AnonHugePages %lld kB in its mapping\n", huge_kb);
#endif
  a.deallocate(p, bytes, a.context);
}
