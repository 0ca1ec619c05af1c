// SPDX-License-Identifier: Apache-2.0
// The executor's checkers against small kernels written for the purpose, each in a buggy and a
// fixed variant (the same kernel, `Bug` selecting the line that differs): every buggy variant must
// be reported with its class and the file:line of the buggy access, in forward, reverse and random
// thread order; every fixed variant must run clean and compute the right result. One kernel per
// class of GPU bug that compute-sanitizer finds (racecheck, initcheck, memcheck, synccheck) and the
// launch checks: a barrier missing between a shared write and its reads, two block reductions
// sharing temporary storage without a barrier, a divergent barrier, a wrong shuffle mask and a
// shuffle reading a lane outside its mask, shared memory never written by the reading block, a
// never-initialized shared counter, an atomic replaced by a plain read-modify-write across blocks,
// a one-element over-read, a misaligned 128-bit load, a wrong block size, and (a performance bug
// rather than a wrong result) a warp's 128-bit stores that do not cover contiguous bytes.
//
// Built with LOWBIT_SIMT_RACECHECK and -fsanitize=thread instrumentation (see tests/simt/CMakeLists.txt).
#include <lowbit/cuda/detail/arch.cuh>

#include <gtest/gtest.h>

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.hpp"

#if !LOWBIT_SIMT_CHECKER
#  error "checker_test.cpp is built with LOWBIT_SIMT_RACECHECK"
#endif

namespace {

using lowbit::simt::launch_options;
using lowbit::simt::order;

constexpr unsigned full = 0xFFFFFFFFu;

/// The line of this file that holds `marker` (the buggy lines carry "BUG:<name>" comments).
int line_of(const std::string& marker) {
  std::ifstream in(__FILE__);
  std::string l;
  int n = 0;
  while (std::getline(in, l)) {
    ++n;
    if (l.find("// " + marker) != std::string::npos) return n;
  }
  ADD_FAILURE() << "no line marked " << marker << " in " << __FILE__;
  return -1;
}
std::string site(const std::string& marker) { return "checker_test.cpp:" + std::to_string(line_of(marker)); }

/// Exactly-sized "device" memory.
template <class T>
struct dev {
  explicit dev(const std::vector<T>& v) : n(v.size()), p(static_cast<T*>(lowbit::simt::device_malloc(v.size() * sizeof(T)))) {
    std::memcpy(static_cast<void*>(p), v.data(), v.size() * sizeof(T));
    lowbit::simt::device_written(p, v.size() * sizeof(T));
  }
  ~dev() { lowbit::simt::device_free(p); }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
  std::vector<T> get() const { return std::vector<T>(p, p + n); }
  std::size_t n;
  T* p;
};

/// Runs `launch` under every order: with Bug, each order must report `what` naming every site in
/// `sites`; without, each must run clean (and `check` the result).
template <class B, class F, class C>
void expect_caught(const char* what, const std::vector<std::string>& sites, B&& buggy, F&& fixed, C&& check) {
  LOWBIT_SEED_TRACE();
  for (order o : {order::forward, order::reverse, order::random}) {
    launch_options opt;
    opt.ord = o;
    opt.seed = lowbit_test::test_seed();
    SCOPED_TRACE(o == order::forward ? "forward" : (o == order::reverse ? "reverse" : "random"));
    std::string msg;
    try {
      buggy(opt);
    } catch (const lowbit::simt::error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find(what), std::string::npos) << "buggy variant: expected a '" << what << "' report, got: " << msg;
    for (const auto& s : sites) EXPECT_NE(msg.find(s), std::string::npos) << "the report does not name " << s << ": " << msg;
    try {
      fixed(opt);
    } catch (const lowbit::simt::error& e) {
      ADD_FAILURE() << "fixed variant reported: " << e.what();
      continue;
    }
    check();
  }
}

// ---- 1. a barrier missing between a shared-memory write and its reads -------------------------

template <bool Bug>
__global__ void publish_kernel(const int* in, int* out) {
  LOWBIT_SHARED(int[2], value);
  if (threadIdx.x < 2) value[threadIdx.x] = 0;
  __syncthreads();
  if (threadIdx.x == 0) value[1] = in[blockIdx.x];  // BUG:publish-write
  if (!Bug) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = value[1] + static_cast<int>(threadIdx.x);  // BUG:publish-read
}

TEST(CheckerMutations, BarrierMissingBetweenSharedWriteAndRead) {
  const std::vector<int> in_h = {10, 20, 30};
  dev<int> in(in_h), out(std::vector<int>(3 * 64));
  expect_caught(
      "race", {site("BUG:publish-write"), site("BUG:publish-read")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, publish_kernel<true>, dim3(3), dim3(64), 0, in.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, publish_kernel<false>, dim3(3), dim3(64), 0, in.p, out.p); },
      [&] {
        const auto got = out.get();
        for (int i = 0; i < 3 * 64; ++i) ASSERT_EQ(got[i], in_h[i / 64] + i % 64) << i;
      });
}

// ---- 2. two block reductions sharing temporary storage without a barrier -----------------------

template <bool Bug>
__global__ void two_reductions_kernel(const float* x, float* out) {
  using reduce = lowbit::cuda::detail::block_max<256>;
  LOWBIT_SHARED(reduce::temp_storage, tmp);
  const float a = reduce::reduce(tmp, x[threadIdx.x]);
  if (!Bug) __syncthreads();  // BUG:reuse-barrier
  const float b = reduce::reduce(tmp, x[256 + threadIdx.x]);
  if (threadIdx.x == 0) {
    out[2 * blockIdx.x] = a;
    out[2 * blockIdx.x + 1] = b;
  }
}

TEST(CheckerMutations, ReductionsSharingStorageWithoutBarrier) {
  std::vector<float> xh(512);
  for (int i = 0; i < 512; ++i) xh[i] = static_cast<float>((i * 37) % 501);
  dev<float> x(xh), out(std::vector<float>(4));
  // the report names the reduction's shared-memory accesses (in arch.cuh), inlined from this kernel
  expect_caught(
      "race", {"arch.cuh:", "two_reductions_kernel<true>"},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, two_reductions_kernel<true>, dim3(2), dim3(256), 0, x.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, two_reductions_kernel<false>, dim3(2), dim3(256), 0, x.p, out.p); },
      [&] {
        float a = 0, b = 0;
        for (int i = 0; i < 256; ++i) a = std::max(a, xh[i]), b = std::max(b, xh[256 + i]);
        const auto got = out.get();
        EXPECT_EQ(got[0], a);
        EXPECT_EQ(got[1], b);
        EXPECT_EQ(got[2], a);
      });
}

// ---- 3. a divergent barrier --------------------------------------------------------------------

template <bool Bug>
__global__ void divergent_barrier_kernel(int* out) {
  if (!Bug || threadIdx.x < 16) __syncthreads();  // BUG:divergent
  out[threadIdx.x] = static_cast<int>(threadIdx.x);
}

TEST(CheckerMutations, DivergentBarrier) {
  dev<int> out(std::vector<int>(64));
  expect_caught(
      "barrier divergence", {site("BUG:divergent")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, divergent_barrier_kernel<true>, dim3(1), dim3(64), 0, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, divergent_barrier_kernel<false>, dim3(1), dim3(64), 0, out.p); },
      [&] {
        const auto got = out.get();
        for (int i = 0; i < 64; ++i) ASSERT_EQ(got[i], i);
      });
}

// ---- 4. a wrong shuffle mask, and a shuffle offset that reads a lane outside the mask ----------

template <bool Bug>
__global__ void shuffle_mask_kernel(const int* x, int* out) {
  int v = x[threadIdx.x];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(Bug ? 0x0000FFFFu : full, v, off);  // BUG:mask
  if (threadIdx.x == 0) out[0] = v;
}

TEST(CheckerMutations, WrongShuffleMask) {
  std::vector<int> xh(32);
  for (int i = 0; i < 32; ++i) xh[i] = i * i;
  dev<int> x(xh), out(std::vector<int>(1));
  expect_caught(
      "invalid warp mask", {site("BUG:mask")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, shuffle_mask_kernel<true>, dim3(1), dim3(32), 0, x.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, shuffle_mask_kernel<false>, dim3(1), dim3(32), 0, x.p, out.p); },
      [&] { EXPECT_EQ(out.get()[0], 10416); });  // sum of i^2, i < 32
}

/// The first 16 lanes reduce their values. The buggy variant forgets the width: with width 32,
/// lane 8 + 8 = 16 is a source lane outside the mask (an undefined value on a GPU).
template <bool Bug>
__global__ void shuffle_offset_kernel(const int* x, int* out) {
  if (threadIdx.x >= 16) return;
  int v = x[threadIdx.x];
  for (int off = 8; off > 0; off >>= 1) v += __shfl_down_sync(0x0000FFFFu, v, off, Bug ? 32 : 16);  // BUG:offset
  if (threadIdx.x == 0) out[0] = v;
}

TEST(CheckerMutations, ShuffleReadsALaneOutsideTheMask) {
  std::vector<int> xh(32);
  for (int i = 0; i < 32; ++i) xh[i] = i + 1;
  dev<int> x(xh), out(std::vector<int>(1));
  expect_caught(
      "invalid warp mask (a shuffle reads a lane outside its mask)", {site("BUG:offset")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, shuffle_offset_kernel<true>, dim3(1), dim3(32), 0, x.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, shuffle_offset_kernel<false>, dim3(1), dim3(32), 0, x.p, out.p); },
      [&] { EXPECT_EQ(out.get()[0], 136); });  // 1 + ... + 16
}

// ---- 5. shared memory read but never written by the reading block ------------------------------

template <bool Bug>
__global__ void table_kernel(const float* src, float* out) {
  LOWBIT_SHARED(float[64], table);
  if (!Bug || blockIdx.x == 0) table[threadIdx.x] = src[threadIdx.x] * 2.0f;  // only block 0 fills it
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = table[63 - threadIdx.x];  // BUG:table-read
}

TEST(CheckerMutations, SharedTableFilledByOneBlockOnly) {
  std::vector<float> sh(64);
  for (int i = 0; i < 64; ++i) sh[i] = static_cast<float>(i) * 0.5f;
  dev<float> src(sh), out(std::vector<float>(4 * 64));
  expect_caught(
      "uninitialized shared memory read", {site("BUG:table-read")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, table_kernel<true>, dim3(4), dim3(64), 0, src.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, table_kernel<false>, dim3(4), dim3(64), 0, src.p, out.p); },
      [&] {
        const auto got = out.get();
        for (int i = 0; i < 4 * 64; ++i) ASSERT_EQ(got[i], sh[63 - i % 64] * 2.0f) << i;
      });
}

template <bool Bug>
__global__ void counter_kernel(const int* flags, int* out) {
  LOWBIT_SHARED(int, count);
  if (!Bug && threadIdx.x == 0) count = 0;
  __syncthreads();
  if (flags[threadIdx.x] != 0) atomicAdd(&count, 1);  // BUG:counter
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = count;
}

TEST(CheckerMutations, NeverInitializedSharedCounter) {
  std::vector<int> fh(128);
  for (int i = 0; i < 128; ++i) fh[i] = i % 3 == 0;
  dev<int> flags(fh), out(std::vector<int>(2));
  expect_caught(
      "uninitialized shared memory read", {site("BUG:counter")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, counter_kernel<true>, dim3(2), dim3(128), 0, flags.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, counter_kernel<false>, dim3(2), dim3(128), 0, flags.p, out.p); },
      [&] {
        const auto got = out.get();
        EXPECT_EQ(got[0], 43);
        EXPECT_EQ(got[1], 43);
      });
}

// ---- 6. an atomic update replaced by a plain read-modify-write across blocks --------------------

template <bool Bug>
__global__ void block_max_to_global_kernel(const unsigned* x, unsigned* result) {
  const unsigned v = x[blockIdx.x * blockDim.x + threadIdx.x];
  LOWBIT_SHARED(unsigned, m);
  if (threadIdx.x == 0) m = 0;
  __syncthreads();
  atomicMax(&m, v);
  __syncthreads();
  if (threadIdx.x == 0) {
    if (Bug) {
      if (m > *result) *result = m;  // BUG:lost-update
    } else {
      atomicMax(result, m);
    }
  }
}

TEST(CheckerMutations, LostAtomicUpdateAcrossBlocks) {
  std::vector<unsigned> xh(8 * 32);
  for (unsigned i = 0; i < xh.size(); ++i) xh[i] = (i * 2654435761u) % 100000u;
  const unsigned want = *std::max_element(xh.begin(), xh.end());
  dev<unsigned> x(xh), result(std::vector<unsigned>(1));
  expect_caught(
      "race", {site("BUG:lost-update"), "blocks of one launch are not ordered"},
      [&](const launch_options& o) {
        result.p[0] = 0;
        lowbit::simt::launch_with(o, block_max_to_global_kernel<true>, dim3(8), dim3(32), 0, x.p, result.p);
      },
      [&](const launch_options& o) {
        result.p[0] = 0;
        lowbit::simt::launch_with(o, block_max_to_global_kernel<false>, dim3(8), dim3(32), 0, x.p, result.p);
      },
      [&] { EXPECT_EQ(result.get()[0], want); });
}

// ---- 6b. the "last block" pattern: blocks publish through __threadfence() and an atomic -------

/// Bug 0: correct (the CUDA samples' threadFenceReduction); 1: no fence between the partial sums'
/// stores and the counter (nothing releases them); 2: the last block reads the partial sums
/// without a fence after its atomic (nothing acquires them).
template <int Bug>
__global__ void last_block_sum_kernel(const int* x, int* partial, unsigned* count, int* result) {
  LOWBIT_SHARED(int, sum);
  LOWBIT_SHARED(bool, last);
  if (threadIdx.x == 0) sum = 0;
  __syncthreads();
  atomicAdd(&sum, x[blockIdx.x * blockDim.x + threadIdx.x]);
  __syncthreads();
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = sum;  // BUG:release-write
    if (Bug != 1) __threadfence();
    last = atomicAdd(count, 1u) == gridDim.x - 1;
    if (last && Bug != 2) __threadfence();
  }
  __syncthreads();
  if (last && threadIdx.x == 0) {
    int total = 0;
    for (unsigned b = 0; b < gridDim.x; ++b) total += partial[b];  // BUG:acquire-read
    *result = total;
  }
}

TEST(CheckerRules, LastBlockPatternNeedsAFenceOnEitherSide) {
  std::vector<int> xh(6 * 32);
  for (std::size_t i = 0; i < xh.size(); ++i) xh[i] = static_cast<int>(i % 7) - 3;
  int want = 0;
  for (int v : xh) want += v;
  dev<int> x(xh), partial(std::vector<int>(6)), result(std::vector<int>(1));
  dev<unsigned> count(std::vector<unsigned>(1));
  auto run = [&](auto kernel, const launch_options& o) {
    count.p[0] = 0;
    lowbit::simt::launch_with(o, kernel, dim3(6), dim3(32), 0, x.p, partial.p, count.p, result.p);
  };
  for (int bug : {1, 2}) {
    SCOPED_TRACE(bug == 1 ? "no release fence" : "no acquire fence");
    expect_caught(
        "race", {site("BUG:release-write"), site("BUG:acquire-read"), "no __threadfence() + atomic release and acquire"},
        [&](const launch_options& o) {
          if (bug == 1) run(last_block_sum_kernel<1>, o);
          else run(last_block_sum_kernel<2>, o);
        },
        [&](const launch_options& o) { run(last_block_sum_kernel<0>, o); },
        [&] { EXPECT_EQ(result.get()[0], want); });
  }
}

// ---- 7. a one-element over-read (a dropped tail check) -----------------------------------------

template <bool Bug>
__global__ void shift_kernel(const float* x, int n, float* y) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const float next = (Bug || i + 1 < n) ? x[i + 1] : 0.0f;  // BUG:over-read
  y[i] = x[i] + next;
}

TEST(CheckerMutations, OverReadByOneElement) {
  const int n = 100;
  std::vector<float> xh(n);
  for (int i = 0; i < n; ++i) xh[i] = static_cast<float>(i);
  dev<float> x(xh), y{std::vector<float>(n)};
  expect_caught(
      "out-of-bounds", {site("BUG:over-read"), "ends 4 bytes past the end"},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, shift_kernel<true>, dim3(4), dim3(32), 0, x.p, n, y.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, shift_kernel<false>, dim3(4), dim3(32), 0, x.p, n, y.p); },
      [&] {
        const auto got = y.get();
        for (int i = 0; i < n; ++i) ASSERT_EQ(got[i], static_cast<float>(i) + (i + 1 < n ? static_cast<float>(i + 1) : 0.0f));
      });
}

// ---- 8. a 128-bit load without its alignment check ---------------------------------------------

template <bool Bug>
__global__ void sum4_kernel(const float* x, float* out) {
  const float* p = x + 4 * threadIdx.x + 1;  // an odd element offset: not 16-byte aligned
  float s = 0.0f;
  if (Bug || (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0) {
    const float4 v = lowbit::cuda::detail::load_vector<float4>(p);  // BUG:misaligned
    s = v.x + v.y + v.z + v.w;
  } else {
    for (int k = 0; k < 4; ++k) s += p[k];
  }
  out[threadIdx.x] = s;
}

TEST(CheckerMutations, MisalignedVectorLoad) {
  std::vector<float> xh(4 * 32 + 8);
  for (std::size_t i = 0; i < xh.size(); ++i) xh[i] = static_cast<float>(i);
  dev<float> x(xh), out(std::vector<float>(32));
  expect_caught(
      "misaligned", {site("BUG:misaligned")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, sum4_kernel<true>, dim3(1), dim3(32), 0, x.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, sum4_kernel<false>, dim3(1), dim3(32), 0, x.p, out.p); },
      [&] {
        const auto got = out.get();
        for (int t = 0; t < 32; ++t) ASSERT_EQ(got[t], static_cast<float>(16 * t + 10)) << t;
      });
}

// ---- 9. a block size other than the one the kernel assumes -------------------------------------

__global__ void assumes_256_kernel(const float* x, float* out) {
  LOWBIT_ASSUME_BLOCK(256);  // BUG:block-size
  using reduce = lowbit::cuda::detail::block_max<256>;
  LOWBIT_SHARED(reduce::temp_storage, tmp);
  const float m = reduce::reduce(tmp, x[threadIdx.x]);
  if (threadIdx.x == 0) out[0] = m;
}

TEST(CheckerMutations, WrongBlockSize) {
  std::vector<float> xh(256);
  for (int i = 0; i < 256; ++i) xh[i] = static_cast<float>((i * 91) % 256);
  dev<float> x(xh), out(std::vector<float>(1));
  expect_caught(
      "launch configuration", {site("BUG:block-size"), "(128,1,1)"},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, assumes_256_kernel, dim3(1), dim3(128), 0, x.p, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, assumes_256_kernel, dim3(1), dim3(256), 0, x.p, out.p); },
      [&] { EXPECT_EQ(out.get()[0], 255.0f); });
}

// ---- 10. an uncoalesced warp store ---------------------------------------------------------------

/// Copies `units` float4s with 128-bit stores, two per thread. Fixed: the k-th store of lane l of a
/// warp writes unit 64 k + (warp base + l), so each warp-wide store covers 512 contiguous bytes (a
/// tail of fewer lanes included). Buggy: thread t writes units 2 t and 2 t + 1, the same bytes in
/// the end, but each warp-wide store leaves a 16-byte gap between lanes: twice the sectors on a GPU.
template <bool Bug>
__global__ void copy_units_kernel(const float4* x, float4* y, int units) {
  for (int k = 0; k < 2; ++k) {
    const int u = Bug ? 2 * static_cast<int>(threadIdx.x) + k : 64 * k + static_cast<int>(threadIdx.x);
    if (u < units) lowbit::cuda::detail::store_vector(y + u, lowbit::cuda::detail::load_vector<float4>(x + u));  // BUG:uncoalesced
  }
}

TEST(CheckerMutations, UncoalescedWarpStore) {
  const int units = 100;  // the second store of warp 1 has only 4 lanes
  std::vector<float4> xh(units);
  for (int i = 0; i < units; ++i) xh[i] = make_float4(4.0f * i, 4.0f * i + 1, 4.0f * i + 2, 4.0f * i + 3);
  dev<float4> x(xh), y{std::vector<float4>(units)};
  expect_caught(
      "uncoalesced store", {site("BUG:uncoalesced"), "a gap between them"},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, copy_units_kernel<true>, dim3(1), dim3(64), 0, x.p, y.p, units); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, copy_units_kernel<false>, dim3(1), dim3(64), 0, x.p, y.p, units); },
      [&] {
        const auto got = y.get();
        for (int i = 0; i < units; ++i) ASSERT_EQ(std::memcmp(&got[i], &xh[i], sizeof(float4)), 0) << i;
      });
}

// ---- the checker's own rules ---------------------------------------------------------------------

/// A __syncwarp orders the lanes it names, and only those: in the buggy variant only lanes 0-15
/// synchronize, yet every lane reads what the lane 16 places away wrote.
template <bool Bug>
__global__ void syncwarp_kernel(int* out) {
  LOWBIT_SHARED(int[64], s);
  s[threadIdx.x] = -1;
  __syncthreads();
  s[threadIdx.x] = static_cast<int>(threadIdx.x);  // BUG:syncwarp-write
  if (!Bug) __syncwarp(full);
  else if (threadIdx.x % 32u < 16u) __syncwarp(0x0000FFFFu);
  const unsigned w = threadIdx.x / 32u * 32u;
  out[threadIdx.x] = s[w + (threadIdx.x + 16u) % 32u];  // BUG:syncwarp-read
}

TEST(CheckerRules, SyncwarpOrdersOnlyItsLanes) {
  dev<int> out(std::vector<int>(64));
  expect_caught(
      "race", {site("BUG:syncwarp-write"), site("BUG:syncwarp-read")},
      [&](const launch_options& o) { lowbit::simt::launch_with(o, syncwarp_kernel<true>, dim3(1), dim3(64), 0, out.p); },
      [&](const launch_options& o) { lowbit::simt::launch_with(o, syncwarp_kernel<false>, dim3(1), dim3(64), 0, out.p); },
      [&] {
        const auto got = out.get();
        for (int t = 0; t < 64; ++t) ASSERT_EQ(got[t], t / 32 * 32 + (t + 16) % 32);
      });
}

/// Reads of host-initialized memory and of what an earlier launch wrote are fine; a read of
/// device memory nobody wrote is reported.
__global__ void copy_kernel(const int* x, int* y, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = x[i];  // BUG:device-read
}

TEST(CheckerRules, UninitializedDeviceMemory) {
  int* raw = static_cast<int*>(lowbit::simt::device_malloc(64 * sizeof(int)));
  dev<int> y(std::vector<int>(64));
  std::string msg;
  try {
    lowbit::simt::launch(copy_kernel, dim3(2), dim3(32), 0, static_cast<const int*>(raw), y.p, 64);
  } catch (const lowbit::simt::error& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("uninitialized device memory read"), std::string::npos) << msg;
  EXPECT_NE(msg.find(site("BUG:device-read")), std::string::npos) << msg;
  // written by one launch, read by the next: ordered and initialized
  EXPECT_NO_THROW(lowbit::simt::launch(copy_kernel, dim3(2), dim3(32), 0, static_cast<const int*>(y.p), raw, 64));
  dev<int> z(std::vector<int>(64, 7));
  EXPECT_NO_THROW(lowbit::simt::launch(copy_kernel, dim3(2), dim3(32), 0, static_cast<const int*>(raw), z.p, 64));
  lowbit::simt::device_free(raw);
}

}  // namespace
