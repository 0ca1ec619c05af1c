// SPDX-License-Identifier: Apache-2.0
// The SIMT executor (kernels/lowbit/simt/simt.hpp): warp intrinsics against the results the CUDA
// Programming Guide documents, barriers under forward/reverse/random schedules, the race a missing
// __syncthreads() causes, strict-mode diagnostics (each with file:line, none hangs), dynamic shared
// memory, multi-block grids, 2-D/3-D blocks and atomics.
#include <lowbit/simt/simt.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using lowbit::simt::launch_options;
using lowbit::simt::order;

constexpr unsigned full = 0xFFFFFFFFu;
const order all_orders[] = {order::forward, order::reverse, order::random};

launch_options opts(order o, std::uint64_t seed = 1, bool strict = true) {
  launch_options opt;
  opt.ord = o;
  opt.seed = seed;
  opt.strict = strict;
  return opt;
}

const char* name(order o) { return o == order::forward ? "forward" : (o == order::reverse ? "reverse" : "random"); }

/// "simt_test.cpp:<line>", as strict-mode messages cite a site of this file.
std::string here(int line) { return "simt_test.cpp:" + std::to_string(line); }
/// " at <__FILE__>:<line>", exactly as strict-mode messages cite a site of this file.
std::string at(int line) { return std::string(" at ") + __FILE__ + ":" + std::to_string(line); }

/// Runs the launch and returns the lowbit::simt::error message ("" if none was thrown).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const lowbit::simt::error& e) {
    return e.what();
  }
  return "";
}

// ---- (a) warp intrinsics -----------------------------------------------------------------------

/// The value lane `lane` of warp `warp` contributes.
__host__ __device__ inline int lane_value(unsigned warp, unsigned lane) { return static_cast<int>(1000 * warp + 10 * lane + 7); }

/// out[4 t + k]: __shfl_up/down/xor/idx results of thread t.
__global__ void shuffle_kernel(int* out, int delta, int xor_mask, int width) {
  const unsigned t = threadIdx.x, lane = t % 32u, warp = t / 32u;
  const int v = lane_value(warp, lane);
  const int src = static_cast<int>((lane * 7u + 3u) % 37u);  // also past width and past 32
  out[4 * t + 0] = __shfl_up_sync(full, v, static_cast<unsigned>(delta), width);
  out[4 * t + 1] = __shfl_down_sync(full, v, static_cast<unsigned>(delta), width);
  out[4 * t + 2] = __shfl_xor_sync(full, v, xor_mask, width);
  out[4 * t + 3] = __shfl_sync(full, v, src, width);
}

TEST(SimtWarp, ShufflesMatchTheCudaDocumentation) {
  const unsigned threads = 64;
  for (order o : all_orders)
    for (int width : {8, 16, 32})
      for (int delta : {1, 2, 3, 5, 7})
        for (int xm : {1, 2, 4, 8, 16, 31}) {
          SCOPED_TRACE(std::string(name(o)) + " width " + std::to_string(width) + " delta " + std::to_string(delta) +
                       " xor " + std::to_string(xm));
          std::vector<int> out(4 * threads, -1);
          lowbit::simt::launch_with(opts(o), shuffle_kernel, dim3(1), dim3(threads), 0, out.data(), delta, xm, width);
          for (unsigned t = 0; t < threads; ++t) {
            const unsigned lane = t % 32u, warp = t / 32u, w = static_cast<unsigned>(width);
            const unsigned seg = lane / w * w;
            // Programming Guide, "Warp Shuffle Functions": up keeps the own value if the source lane
            // would be below the segment; down if it would pass the segment's end; xor may read
            // earlier segments but not later ones; idx reads srcLane modulo width in its segment.
            const unsigned up = lane - seg >= static_cast<unsigned>(delta) ? lane - static_cast<unsigned>(delta) : lane;
            const unsigned down = lane - seg + static_cast<unsigned>(delta) < w ? lane + static_cast<unsigned>(delta) : lane;
            const unsigned x = lane ^ static_cast<unsigned>(xm);
            const unsigned bfly = x / w <= lane / w ? x : lane;
            const unsigned idx = seg + (lane * 7u + 3u) % 37u % w;
            ASSERT_EQ(out[4 * t + 0], lane_value(warp, up)) << "up, thread " << t;
            ASSERT_EQ(out[4 * t + 1], lane_value(warp, down)) << "down, thread " << t;
            ASSERT_EQ(out[4 * t + 2], lane_value(warp, bfly)) << "xor, thread " << t;
            ASSERT_EQ(out[4 * t + 3], lane_value(warp, idx)) << "idx, thread " << t;
          }
        }
}

/// 8-byte and other types: double, long long, unsigned, float.
__global__ void wide_shuffle_kernel(double* d, long long* ll, unsigned* u, float* f) {
  const unsigned t = threadIdx.x, lane = t % 32u;
  const double dv = 1e300 / (lane + 1) + 0.25 * lane;
  const long long lv = (static_cast<long long>(lane) << 40) - static_cast<long long>(lane) * 3;
  d[t] = __shfl_xor_sync(full, dv, 5);
  ll[t] = __shfl_down_sync(full, lv, 3, 16);
  u[t] = __shfl_sync(full, 0x80000000u | lane, 31 - static_cast<int>(lane));
  f[t] = __shfl_up_sync(full, 0.5f * static_cast<float>(lane), 2, 8);
}

TEST(SimtWarp, EightByteAndOtherTypes) {
  for (order o : all_orders) {
    std::vector<double> d(64);
    std::vector<long long> ll(64);
    std::vector<unsigned> u(64);
    std::vector<float> f(64);
    lowbit::simt::launch_with(opts(o), wide_shuffle_kernel, dim3(1), dim3(64), 0, d.data(), ll.data(), u.data(), f.data());
    for (unsigned t = 0; t < 64; ++t) {
      const unsigned lane = t % 32u;
      const unsigned sx = lane ^ 5u;
      EXPECT_EQ(d[t], 1e300 / (sx + 1) + 0.25 * sx) << t;
      const unsigned sd = lane % 16u + 3u < 16u ? lane + 3u : lane;
      EXPECT_EQ(ll[t], (static_cast<long long>(sd) << 40) - static_cast<long long>(sd) * 3) << t;
      EXPECT_EQ(u[t], 0x80000000u | (31u - lane)) << t;
      const unsigned su = lane % 8u >= 2u ? lane - 2u : lane;
      EXPECT_EQ(f[t], 0.5f * static_cast<float>(su)) << t;
    }
  }
}

/// out[4 t + k]: ballot / any / all over predicate patterns; then partial-mask votes.
__global__ void vote_kernel(unsigned* out) {
  const unsigned t = threadIdx.x, lane = t % 32u;
  const bool p = (lane % 3u) == 0u;
  out[8 * t + 0] = __ballot_sync(full, p);
  out[8 * t + 1] = static_cast<unsigned>(__any_sync(full, p));
  out[8 * t + 2] = static_cast<unsigned>(__all_sync(full, p));
  out[8 * t + 3] = static_cast<unsigned>(__all_sync(full, lane < 32u));
  out[8 * t + 4] = static_cast<unsigned>(__any_sync(full, lane > 40u));
  // Only the lanes of 0x0F0F0F0F vote; the others vote in a second group at another site.
  if ((0x0F0F0F0Fu >> lane) & 1u) {
    out[8 * t + 5] = __ballot_sync(0x0F0F0F0Fu, lane & 1u);
    out[8 * t + 6] = static_cast<unsigned>(__all_sync(0x0F0F0F0Fu, lane % 8u < 4u));
  } else {
    out[8 * t + 5] = __ballot_sync(0xF0F0F0F0u, lane & 1u);
    out[8 * t + 6] = static_cast<unsigned>(__any_sync(0xF0F0F0F0u, lane == 3u));
  }
  __syncwarp();
  out[8 * t + 7] = __ballot_sync(full, 1);
}

TEST(SimtWarp, Votes) {
  unsigned every_third = 0;
  for (unsigned l = 0; l < 32; l += 3) every_third |= 1u << l;
  for (order o : all_orders) {
    std::vector<unsigned> out(8 * 64);
    lowbit::simt::launch_with(opts(o), vote_kernel, dim3(2), dim3(64), 0, out.data());
    for (unsigned t = 0; t < 64; ++t) {
      const unsigned lane = t % 32u;
      EXPECT_EQ(out[8 * t + 0], every_third);
      EXPECT_EQ(out[8 * t + 1], 1u);
      EXPECT_EQ(out[8 * t + 2], 0u);
      EXPECT_EQ(out[8 * t + 3], 1u);
      EXPECT_EQ(out[8 * t + 4], 0u);
      if ((0x0F0F0F0Fu >> lane) & 1u) {
        EXPECT_EQ(out[8 * t + 5], 0x0F0F0F0Fu & 0xAAAAAAAAu) << t;
        EXPECT_EQ(out[8 * t + 6], 1u) << t;
      } else {
        EXPECT_EQ(out[8 * t + 5], 0xF0F0F0F0u & 0xAAAAAAAAu) << t;
        EXPECT_EQ(out[8 * t + 6], 0u) << t;
      }
      EXPECT_EQ(out[8 * t + 7], full);
    }
  }
}

/// Partial masks: half warps shuffle independently at different sites; a partial last warp (48
/// threads) uses a 16-lane mask.
__global__ void partial_mask_kernel(int* out) {
  const unsigned t = threadIdx.x, lane = t % 32u, warp = t / 32u;
  const int v = lane_value(warp, lane);
  if (warp == 0) {
    if (lane < 16u)
      out[t] = __shfl_down_sync(0x0000FFFFu, v, 4, 16);
    else
      out[t] = __shfl_xor_sync(0xFFFF0000u, v, 1);
  } else {
    out[t] = __shfl_xor_sync(0x0000FFFFu, v, 8);
  }
}

TEST(SimtWarp, PartialMasks) {
  for (order o : all_orders) {
    std::vector<int> out(48);
    lowbit::simt::launch_with(opts(o), partial_mask_kernel, dim3(1), dim3(48), 0, out.data());
    for (unsigned t = 0; t < 48; ++t) {
      const unsigned lane = t % 32u, warp = t / 32u;
      unsigned src;
      if (warp == 0) src = lane < 16u ? (lane + 4u < 16u ? lane + 4u : lane) : lane ^ 1u;
      else src = lane ^ 8u;
      EXPECT_EQ(out[t], lane_value(warp, src)) << name(o) << " thread " << t;
    }
  }
}

// ---- (b) reduction with correct barriers ------------------------------------------------------

/// out[block] = sum of the block's 4 * Threads inputs: per-thread partial sums, a shared-memory
/// tree with __syncthreads, the last 32 values by shuffles.
template <int Threads>
__global__ void sum_kernel(const int* in, int n, int* out) {
  LOWBIT_SHARED(int[Threads], partial);
  const int t = static_cast<int>(threadIdx.x);
  const int base = static_cast<int>(blockIdx.x) * Threads * 4;
  int s = 0;
  for (int k = 0; k < 4; ++k) {
    const int i = base + k * Threads + t;
    s += i < n ? in[i] : 0;
  }
  partial[t] = s;
  __syncthreads();
  for (int stride = Threads / 2; stride >= 32; stride /= 2) {
    if (t < stride) partial[t] += partial[t + stride];
    __syncthreads();
  }
  if (t < 32) {
    int v = partial[t];
    for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(full, v, off);
    if (t == 0) out[blockIdx.x] = v;
  }
}

TEST(SimtBarrier, ReductionIsRightInEveryOrder) {
  const int n = 256 * 4 * 5 + 77;
  std::vector<int> in(n);
  for (int i = 0; i < n; ++i) in[i] = (i * 7919) % 1000 - 500;
  const int blocks = (n + 1023) / 1024;
  std::vector<int> want(blocks, 0);
  for (int i = 0; i < n; ++i) want[i / 1024] += in[i];
  for (order o : all_orders)
    for (std::uint64_t seed : {1u, 2u, 3u}) {
      std::vector<int> out(blocks, 12345);
      lowbit::simt::launch_with(opts(o, seed), sum_kernel<256>, dim3(blocks), dim3(256), 0, in.data(), n, out.data());
      EXPECT_EQ(out, want) << name(o) << " seed " << seed;
    }
}

// ---- (c) a missing __syncthreads is caught in reverse and random order -------------------------

/// Thread 0 publishes the block's value in shared memory; every thread reads it. Without the
/// barrier this is the classic race.
template <bool Sync>
__global__ void publish_kernel(const int* in, int* out) {
  LOWBIT_SHARED(int, value);
  if (threadIdx.x == 0) value = in[blockIdx.x];
  if (Sync) __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = value + static_cast<int>(threadIdx.x);
}

/// Wrong outputs of a publish_kernel launch (or -1 if the executor reported an error).
template <bool Sync>
long long publish_mismatches(const launch_options& opt) {
  const unsigned blocks = 6, threads = 128;
  std::vector<int> in(blocks), out(blocks * threads, 0);
  for (unsigned b = 0; b < blocks; ++b) in[b] = 1000 * static_cast<int>(b + 1);
  try {
    lowbit::simt::launch_with(opt, publish_kernel<Sync>, dim3(blocks), dim3(threads), 0, in.data(), out.data());
  } catch (const lowbit::simt::error&) {
    return -1;
  }
  long long bad = 0;
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t) bad += out[b * threads + t] != in[b] + static_cast<int>(t);
  return bad;
}

TEST(SimtBarrier, MissingSyncthreadsIsCaughtInReverseAndRandomOrder) {
  for (order o : all_orders) EXPECT_EQ(publish_mismatches<true>(opts(o)), 0) << name(o);
  // Forward order runs thread 0 first and hides the race: that is why kernels are tested in all three.
  EXPECT_EQ(publish_mismatches<false>(opts(order::forward)), 0);
  EXPECT_NE(publish_mismatches<false>(opts(order::reverse)), 0);
  for (std::uint64_t seed = 1; seed <= 5; ++seed)
    EXPECT_NE(publish_mismatches<false>(opts(order::random, seed)), 0) << "seed " << seed;
}

// ---- (d) strict-mode diagnostics ---------------------------------------------------------------

// Set by kernels just before the barrier or warp op on the same line (volatile: the store must not
// be sunk past a call that never returns to the kernel).
volatile int g_line_a = 0, g_line_b = 0;

/// Threads past `limit` return before the barrier.
__global__ void early_return_kernel(int limit, int* out) {
  if (static_cast<int>(threadIdx.x) >= limit) return;
  g_line_a = __LINE__; __syncthreads();
  out[threadIdx.x] = 1;
}

TEST(SimtStrict, BarrierDivergence) {
  std::vector<int> out(256);
  for (order o : all_orders) {
    const std::string m = error_of([&] {
      lowbit::simt::launch_with(opts(o), early_return_kernel, dim3(4), dim3(256), 0, 200, out.data());
    });
    EXPECT_NE(m.find("barrier divergence: 56 threads exited"), std::string::npos) << m;
    EXPECT_NE(m.find("while 200 wait at __syncthreads()" + at(g_line_a)), std::string::npos) << m;
    EXPECT_NE(m.find("of block ("), std::string::npos) << m;
  }
  // Non-strict: exited threads count as arrived, as on the hardware.
  for (order o : all_orders) {
    std::vector<int> got(256, 0);
    lowbit::simt::launch_with(opts(o, 1, false), early_return_kernel, dim3(1), dim3(256), 0, 200, got.data());
    for (int t = 0; t < 256; ++t) EXPECT_EQ(got[t], t < 200 ? 1 : 0);
  }
}

/// Warp 0 and the other warps wait at different __syncthreads() calls.
__global__ void two_barriers_kernel(int* out) {
  if (threadIdx.x < 32) {
    g_line_a = __LINE__; __syncthreads();
  } else {
    g_line_b = __LINE__; __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(SimtStrict, MismatchedBarriers) {
  std::vector<int> out(128);
  for (order o : all_orders) {
    const std::string m = error_of([&] {
      lowbit::simt::launch_with(opts(o), two_barriers_kernel, dim3(2), dim3(128), 0, out.data());
    });
    EXPECT_NE(m.find("barrier mismatch"), std::string::npos) << m;
    EXPECT_NE(m.find(here(g_line_a)), std::string::npos) << m;
    EXPECT_NE(m.find(here(g_line_b)), std::string::npos) << m;
  }
}

/// The upper half of each warp returns; the lower half shuffles with a full mask.
__global__ void exited_lane_kernel(int* out) {
  const unsigned lane = threadIdx.x % 32u;
  if (lane >= 16u) return;
  int v = static_cast<int>(lane);
  g_line_a = __LINE__; v = __shfl_xor_sync(full, v, 1);
  out[threadIdx.x] = v;
}

/// A 48-thread block: warp 1 has 16 lanes, but the mask names 32.
__global__ void missing_lane_kernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  g_line_a = __LINE__; v = __shfl_down_sync(full, v, 1);
  out[threadIdx.x] = v;
}

TEST(SimtStrict, InvalidShuffleMask) {
  std::vector<int> out(64);
  for (order o : all_orders) {
    const std::string m = error_of([&] {
      lowbit::simt::launch_with(opts(o), exited_lane_kernel, dim3(1), dim3(64), 0, out.data());
    });
    EXPECT_NE(m.find("invalid warp mask"), std::string::npos) << m;
    EXPECT_NE(m.find("exited"), std::string::npos) << m;
    EXPECT_NE(m.find("__shfl_xor_sync(mask 0xffffffff"), std::string::npos) << m;
    EXPECT_NE(m.find(here(g_line_a)), std::string::npos) << m;

    const std::string m2 = error_of([&] {
      lowbit::simt::launch_with(opts(o), missing_lane_kernel, dim3(1), dim3(48), 0, out.data());
    });
    EXPECT_NE(m2.find("invalid warp mask"), std::string::npos) << m2;
    EXPECT_NE(m2.find("does not exist"), std::string::npos) << m2;
    EXPECT_NE(m2.find(here(g_line_a)), std::string::npos) << m2;
  }
}

/// Half a warp shuffles at one site, the other half at another, both naming the whole warp.
__global__ void split_shuffle_kernel(int* out) {
  const unsigned lane = threadIdx.x % 32u;
  int v = static_cast<int>(lane);
  if (lane < 16u) {
    g_line_a = __LINE__; v = __shfl_xor_sync(full, v, 1);
  } else {
    g_line_b = __LINE__; v = __shfl_down_sync(full, v, 1);
  }
  out[threadIdx.x] = v;
}

TEST(SimtStrict, LanesAtDifferentWarpOps) {
  std::vector<int> out(32);
  for (order o : all_orders) {
    const std::string m = error_of([&] {
      lowbit::simt::launch_with(opts(o), split_shuffle_kernel, dim3(1), dim3(32), 0, out.data());
    });
    EXPECT_NE(m.find("warp op divergence"), std::string::npos) << m;
    EXPECT_NE(m.find("__shfl_xor_sync" + at(g_line_a)), std::string::npos) << m;
    EXPECT_NE(m.find("__shfl_down_sync" + at(g_line_b)), std::string::npos) << m;
  }
}

/// Half a warp waits in __syncwarp, the rest of the block at __syncthreads: a deadlock, reported
/// in strict and non-strict mode alike.
__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x < 16u) {
    g_line_a = __LINE__; __syncwarp();
  } else {
    g_line_b = __LINE__; __syncthreads();
  }
  out[threadIdx.x] = 1;
}

TEST(SimtStrict, WarpAndBlockBarrierDeadlockNeverHangs) {
  std::vector<int> out(64);
  for (bool strict : {true, false})
    for (order o : all_orders) {
      const std::string m = error_of([&] {
        lowbit::simt::launch_with(opts(o, 1, strict), deadlock_kernel, dim3(1), dim3(64), 0, out.data());
      });
      EXPECT_NE(m.find("deadlock: 16 threads wait in a warp op"), std::string::npos) << m;
      EXPECT_NE(m.find("__syncwarp(mask 0xffffffff)" + at(g_line_a)), std::string::npos) << m;
      EXPECT_NE(m.find("48 wait at __syncthreads()" + at(g_line_b)), std::string::npos) << m;
    }
}

/// After a strict-mode error the executor runs the next launch normally.
TEST(SimtStrict, RecoversAfterAnError) {
  std::vector<int> out(256);
  EXPECT_THROW(lowbit::simt::launch_with(opts(order::random), early_return_kernel, dim3(2), dim3(256), 0, 10, out.data()),
               lowbit::simt::error);
  EXPECT_NO_THROW(lowbit::simt::launch_with(opts(order::random), early_return_kernel, dim3(2), dim3(256), 0, 256, out.data()));
  for (int v : out) EXPECT_EQ(v, 1);
}

__global__ void throwing_kernel(int bad_thread) {
  __syncthreads();
  if (static_cast<int>(threadIdx.x) == bad_thread) throw std::invalid_argument("kernel says no");
}

TEST(SimtStrict, KernelExceptionsPropagate) {
  EXPECT_THROW(lowbit::simt::launch_with(opts(order::reverse), throwing_kernel, dim3(3), dim3(64), 0, 17),
               std::invalid_argument);
  EXPECT_NO_THROW(lowbit::simt::launch_with(opts(order::reverse), throwing_kernel, dim3(3), dim3(64), 0, -1));
}

TEST(SimtStrict, InvalidLaunchConfiguration) {
  EXPECT_THROW(lowbit::simt::launch(throwing_kernel, dim3(1), dim3(1025), 0, -1), lowbit::simt::error);
  EXPECT_THROW(lowbit::simt::launch(throwing_kernel, dim3(1), dim3(32, 32, 2), 0, -1), lowbit::simt::error);
  EXPECT_THROW(lowbit::simt::launch(throwing_kernel, dim3(0), dim3(32), 0, -1), lowbit::simt::error);
}

TEST(SimtStrict, DefaultOptions) {
  const launch_options before = lowbit::simt::default_options();
  EXPECT_EQ(before.ord, order::forward);
  EXPECT_TRUE(before.strict);
  std::vector<int> out(256);
  EXPECT_THROW(lowbit::simt::launch(early_return_kernel, dim3(1), dim3(256), 0, 100, out.data()), lowbit::simt::error);
  lowbit::simt::set_default_options(opts(order::reverse, 7, false));
  EXPECT_EQ(lowbit::simt::default_options().ord, order::reverse);
  EXPECT_EQ(lowbit::simt::default_options().seed, 7u);
  EXPECT_NO_THROW(lowbit::simt::launch(early_return_kernel, dim3(1), dim3(256), 0, 100, out.data()));
  lowbit::simt::set_default_options(before);
}

// ---- (e) shared memory, grids, block shapes, atomics --------------------------------------------

/// Reverses each block's chunk through dynamic shared memory; records the bytes found there before
/// any write (the poison) and the buffer's alignment.
template <class T>
__global__ void reverse_kernel(const T* in, T* out, unsigned* seen) {
  LOWBIT_DYNAMIC_SHARED(T, buf);
  const unsigned t = threadIdx.x, n = blockDim.x, g = blockIdx.x * n + t;
  if (t == 0) {
    unsigned char first;
    std::memcpy(&first, buf, 1);
    seen[2 * blockIdx.x] = first;
    seen[2 * blockIdx.x + 1] = static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(buf) % 16u);
  }
  __syncthreads();
  buf[n - 1 - t] = in[g];
  __syncthreads();
  out[g] = buf[t];
}

TEST(SimtMemory, DynamicSharedMemory) {
  const unsigned blocks = 5, threads = 96;
  std::vector<double> in(blocks * threads), out(blocks * threads);
  for (std::size_t i = 0; i < in.size(); ++i) in[i] = 0.5 * static_cast<double>(i);
  std::vector<unsigned> seen(2 * blocks);
  for (order o : all_orders) {
    lowbit::simt::launch_with(opts(o), reverse_kernel<double>, dim3(blocks), dim3(threads), threads * sizeof(double),
                              in.data(), out.data(), seen.data());
    for (unsigned b = 0; b < blocks; ++b) {
      for (unsigned t = 0; t < threads; ++t) EXPECT_EQ(out[b * threads + t], in[b * threads + threads - 1 - t]);
      EXPECT_NE(seen[2 * b], 0u) << "dynamic shared memory is poisoned before every block";
      EXPECT_EQ(seen[2 * b + 1], 0u) << "16-byte aligned";
    }
  }
  std::vector<short> si(64), so(64);
  for (int i = 0; i < 64; ++i) si[i] = static_cast<short>(i * 3);
  lowbit::simt::launch_with(opts(order::random), reverse_kernel<short>, dim3(2), dim3(32), 32 * sizeof(short), si.data(),
                            so.data(), seen.data());
  for (int i = 0; i < 64; ++i) EXPECT_EQ(so[i], si[i / 32 * 32 + 31 - i % 32]);
}

/// Reads a static shared array before any thread of the block writes it.
template <int N>
__global__ void read_unwritten_shared_kernel(unsigned char* out) {
  LOWBIT_SHARED(unsigned char[N], junk);
  __syncthreads();
  out[blockIdx.x * N + threadIdx.x] = junk[threadIdx.x];
  __syncthreads();
  junk[threadIdx.x] = 0;
}

TEST(SimtMemory, StaticSharedMemoryIsPoisonedBeforeEveryBlock) {
  // every block (the first included) finds nonzero poison, never what the previous block left
  std::vector<unsigned char> out(3 * 16);
  lowbit::simt::launch_with(opts(order::random), read_unwritten_shared_kernel<16>, dim3(3), dim3(16), 0, out.data());
  for (unsigned char c : out) EXPECT_NE(c, 0) << "each block starts with poisoned shared memory";
}

/// Every thread of a 3-D grid of 3-D blocks records its coordinates.
__global__ void coords_kernel(unsigned* out, unsigned* ballots) {
  const unsigned tpb = blockDim.x * blockDim.y * blockDim.z;
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  unsigned* o = out + 8 * (b * tpb + t);
  o[0] = threadIdx.x;
  o[1] = threadIdx.y;
  o[2] = threadIdx.z;
  o[3] = blockIdx.x;
  o[4] = blockIdx.y;
  o[5] = blockIdx.z;
  o[6] = blockDim.x * 10000 + blockDim.y * 100 + blockDim.z;
  o[7] = gridDim.x * 10000 + gridDim.y * 100 + gridDim.z;
  // Warps are 32 consecutive linear thread ids (x fastest).
  const unsigned vote = __ballot_sync(full, threadIdx.y == 1);
  if (b == 0) ballots[t] = vote;
}

TEST(SimtGrid, MultiBlockGridsAndThreeDimensionalBlocks) {
  const dim3 grid(3, 2, 2), block(8, 4, 2);
  const unsigned tpb = 64, nb = 12;
  for (order o : all_orders) {
    std::vector<unsigned> out(8 * tpb * nb, ~0u), ballots(tpb);
    lowbit::simt::launch_with(opts(o), coords_kernel, grid, block, 0, out.data(), ballots.data());
    for (unsigned b = 0; b < nb; ++b)
      for (unsigned t = 0; t < tpb; ++t) {
        const unsigned* r = &out[8 * (b * tpb + t)];
        ASSERT_EQ(r[0], t % 8);
        ASSERT_EQ(r[1], t / 8 % 4);
        ASSERT_EQ(r[2], t / 32);
        ASSERT_EQ(r[3], b % 3);
        ASSERT_EQ(r[4], b / 3 % 2);
        ASSERT_EQ(r[5], b / 6);
        ASSERT_EQ(r[6], 80402u);
        ASSERT_EQ(r[7], 30202u);
      }
    for (unsigned t = 0; t < tpb; ++t) EXPECT_EQ(ballots[t], 0x0000FF00u);
  }
  // A 2-D block of 1024 threads and a 2-D grid.
  std::vector<unsigned> big(8 * 1024 * 2), bal(1024);
  lowbit::simt::launch_with(opts(order::random), coords_kernel, dim3(1, 2), dim3(32, 32), 0, big.data(), bal.data());
  for (unsigned t = 0; t < 2048; ++t) {
    EXPECT_EQ(big[8 * t + 0], t % 32);
    EXPECT_EQ(big[8 * t + 1], t / 32 % 32);
    EXPECT_EQ(big[8 * t + 4], t / 1024);
  }
  for (unsigned t = 0; t < 1024; ++t) EXPECT_EQ(bal[t], t / 32 == 1 ? full : 0u);
}

struct atomic_results {
  int sum;
  unsigned usum;
  unsigned long long ull;
  float fsum;
  int imax, imin;
  unsigned umax, umin;
  unsigned bits_or, bits_and;
  int exch;
  unsigned inc;
  float cas_max;
  int slot_hits[64];
};

__global__ void atomics_kernel(atomic_results* r) {
  const int g = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(&r->sum, g);
  atomicAdd(&r->usum, 2u);
  atomicAdd(&r->ull, 1ull << 33);
  atomicAdd(&r->fsum, 0.5f);
  atomicMax(&r->imax, g * 3 - 100);
  atomicMin(&r->imin, g * 3 - 100);
  atomicMax(&r->umax, static_cast<unsigned>(g));
  atomicMin(&r->umin, static_cast<unsigned>(g) + 5u);
  atomicOr(&r->bits_or, 1u << (g % 32));
  atomicAnd(&r->bits_and, ~(1u << (g % 16)));
  atomicExch(&r->exch, 42);
  atomicInc(&r->inc, 9u);
  // A float max by compare-and-swap on the bits.
  const float v = static_cast<float>((g * 37) % 101);
  unsigned* addr = reinterpret_cast<unsigned*>(&r->cas_max);
  unsigned old = *addr;
  while (__uint_as_float(old) < v) {
    const unsigned prev = atomicCAS(addr, old, __float_as_uint(v));
    if (prev == old) break;
    old = prev;
  }
  // Claim a slot: each slot is taken by exactly one thread.
  const int slot = atomicAdd(&r->slot_hits[63], 1);
  if (slot < 63) atomicAdd(&r->slot_hits[slot], 1);
}

TEST(SimtGrid, Atomics) {
  for (order o : all_orders) {
    atomic_results r{};
    r.imin = 1 << 30;
    r.umin = ~0u;
    r.bits_and = ~0u;
    lowbit::simt::launch_with(opts(o), atomics_kernel, dim3(4), dim3(64), 0, &r);
    const int n = 256;
    EXPECT_EQ(r.sum, n * (n - 1) / 2);
    EXPECT_EQ(r.usum, 2u * n);
    EXPECT_EQ(r.ull, (1ull << 33) * n);
    EXPECT_EQ(r.fsum, 0.5f * n);
    EXPECT_EQ(r.imax, (n - 1) * 3 - 100);
    EXPECT_EQ(r.imin, -100);
    EXPECT_EQ(r.umax, static_cast<unsigned>(n - 1));
    EXPECT_EQ(r.umin, 5u);
    EXPECT_EQ(r.bits_or, full);
    EXPECT_EQ(r.bits_and, 0xFFFF0000u);
    EXPECT_EQ(r.exch, 42);
    EXPECT_EQ(r.inc, static_cast<unsigned>(n % 10));
    EXPECT_EQ(r.cas_max, 100.0f);
    EXPECT_EQ(r.slot_hits[63], n);
    for (int s = 0; s < 63; ++s) EXPECT_EQ(r.slot_hits[s], 1);
  }
}

/// __syncthreads_count / _and / _or.
__global__ void sync_reduce_kernel(int* out) {
  const int t = static_cast<int>(threadIdx.x);
  const int c = __syncthreads_count(t % 3 == 0);
  const int a = __syncthreads_and(t < 1000);
  const int o = __syncthreads_or(t == 77);
  const int z = __syncthreads_and(t != 5);
  if (t == 0) {
    out[0] = c;
    out[1] = a;
    out[2] = o;
    out[3] = z;
  }
}

TEST(SimtBarrier, SyncthreadsReductions) {
  for (order o : all_orders) {
    std::vector<int> out(4, -1);
    lowbit::simt::launch_with(opts(o), sync_reduce_kernel, dim3(1), dim3(160), 0, out.data());
    EXPECT_EQ(out, (std::vector<int>{54, 1, 1, 0})) << name(o);
  }
}

/// Device math helpers behave like CUDA's.
TEST(SimtIntrinsics, BitAndConversionFunctions) {
  EXPECT_EQ(__popc(0xF0F0u), 8);
  EXPECT_EQ(__popcll(~0ull), 64);
  EXPECT_EQ(__ffs(0), 0);
  EXPECT_EQ(__ffs(8), 4);
  EXPECT_EQ(__clz(0), 32);
  EXPECT_EQ(__clz(1), 31);
  EXPECT_EQ(__brev(1u), 0x80000000u);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x5140u), 0x55114400u);
  EXPECT_EQ(__float_as_uint(1.0f), 0x3F800000u);
  EXPECT_EQ(__int_as_float(0x40000000), 2.0f);
  EXPECT_EQ(__float2int_rn(2.5f), 2);
  EXPECT_EQ(__float2int_rn(3.5f), 4);
  EXPECT_EQ(__float2int_rn(-2.5f), -2);
  EXPECT_EQ(__float2int_rn(1e10f), 2147483647);
  EXPECT_EQ(__float2int_rn(__uint_as_float(0x7FC00000u)), 0);
  EXPECT_EQ(__fmul_rn(3.0f, 0.5f), 1.5f);
  EXPECT_EQ(__fdiv_rn(1.0f, 4.0f), 0.25f);
  EXPECT_EQ(__frcp_rn(8.0f), 0.125f);
  EXPECT_EQ(__fmaf_rn(2.0f, 3.0f, 1.0f), 7.0f);
  float x = 3.0f;
  EXPECT_EQ(__ldg(&x), 3.0f);
}

/// __dp4a (PTX dp4a.s32.s32 / dp4a.u32.u32: c plus the four byte products, sign- or zero-extended,
/// modulo 2^32) against a 64-bit reference: every pair of byte values in every lane (the other
/// lanes and c random), 2^20 random words, and the extremes and wrap-around by hand.
TEST(SimtIntrinsics, Dp4aIsThePtxDefinition) {
  auto ref_s = [](std::uint32_t a, std::uint32_t b, std::uint32_t c) {
    long long d = static_cast<std::int32_t>(c);
    for (int i = 0; i < 4; ++i)
      d += static_cast<long long>(static_cast<std::int8_t>(a >> (8 * i))) * static_cast<std::int8_t>(b >> (8 * i));
    return static_cast<std::uint32_t>(static_cast<unsigned long long>(d));
  };
  auto ref_u = [](std::uint32_t a, std::uint32_t b, std::uint32_t c) {
    unsigned long long d = c;
    for (int i = 0; i < 4; ++i) d += static_cast<unsigned long long>((a >> (8 * i)) & 0xFFu) * ((b >> (8 * i)) & 0xFFu);
    return static_cast<std::uint32_t>(d);
  };
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<std::uint32_t>(state >> 32);
  };
  for (int lane = 0; lane < 4; ++lane)
    for (std::uint32_t x = 0; x < 256; ++x)
      for (std::uint32_t y = 0; y < 256; ++y) {
        const std::uint32_t keep = ~(0xFFu << (8 * lane));
        const std::uint32_t a = (next() & keep) | (x << (8 * lane)), b = (next() & keep) | (y << (8 * lane)), c = next();
        ASSERT_EQ(static_cast<std::uint32_t>(__dp4a(static_cast<int>(a), static_cast<int>(b), static_cast<int>(c))),
                  ref_s(a, b, c)) << std::hex << a << " " << b << " " << c;
        ASSERT_EQ(__dp4a(a, b, c), ref_u(a, b, c)) << std::hex << a << " " << b << " " << c;
      }
  for (int k = 0; k < (1 << 20); ++k) {
    const std::uint32_t a = next(), b = next(), c = next();
    ASSERT_EQ(static_cast<std::uint32_t>(__dp4a(static_cast<int>(a), static_cast<int>(b), static_cast<int>(c))),
              ref_s(a, b, c));
    ASSERT_EQ(__dp4a(a, b, c), ref_u(a, b, c));
  }
  const int m128 = static_cast<int>(0x80808080u), p127 = 0x7F7F7F7F, m127 = static_cast<int>(0x81818181u);
  EXPECT_EQ(__dp4a(m128, m128, 0), 65536);
  EXPECT_EQ(__dp4a(p127, m127, 0), -64516);
  EXPECT_EQ(__dp4a(m128, m128, 0x7FFFFFFF), static_cast<int>(0x8000FFFFu));  // wraps modulo 2^32
  EXPECT_EQ(__dp4a(0xFFFFFFFFu, 0xFFFFFFFFu, 0u), 4u * 255u * 255u);
}

}  // namespace
