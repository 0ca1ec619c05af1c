// SPDX-License-Identifier: Apache-2.0
// Speed of the SIMT executor on a blockwise-absmax int8 quantization kernel (warp shuffles, static
// shared memory, two __syncthreads per block), in forward order. Not a test: prints elements/s.
//   simt_bench [elements=4194304]
#include <lowbit/simt/simt.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

/// Block b of `Threads * Per` elements: absmax[b] = max |x|, q[i] = round(x[i] / absmax * 127).
template <int Threads, int Per>
__global__ void absmax_int8(const float* x, long long n, signed char* q, float* absmax) {
  LOWBIT_SHARED(float[Threads / 32], warp_max);
  LOWBIT_SHARED(float, s_absmax);
  const long long base = static_cast<long long>(blockIdx.x) * Threads * Per;
  float v[Per];
  float m = 0.0f;
  for (int k = 0; k < Per; ++k) {
    const long long i = base + static_cast<long long>(k) * Threads + threadIdx.x;
    v[k] = i < n ? x[i] : 0.0f;
    const float a = std::fabs(v[k]);
    m = a > m ? a : m;
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float o = __shfl_xor_sync(0xFFFFFFFFu, m, off);
    m = o > m ? o : m;
  }
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < Threads / 32 ? warp_max[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1) {
      const float o = __shfl_down_sync(0xFFFFFFFFu, m, off);
      m = o > m ? o : m;
    }
    if (lane == 0) {
      s_absmax = m;
      absmax[blockIdx.x] = m;
    }
  }
  __syncthreads();
  const float scale = s_absmax > 0.0f ? 127.0f / s_absmax : 0.0f;
  for (int k = 0; k < Per; ++k) {
    const long long i = base + static_cast<long long>(k) * Threads + threadIdx.x;
    if (i < n) q[i] = static_cast<signed char>(__float2int_rn(v[k] * scale));
  }
}

template <int Threads, int Per>
void run(const std::vector<float>& x) {
  const long long n = static_cast<long long>(x.size());
  const long long bs = Threads * Per, blocks = (n + bs - 1) / bs;
  std::vector<signed char> q(x.size());
  std::vector<float> absmax(static_cast<std::size_t>(blocks));
  lowbit::simt::launch_options opt;  // forward, strict
  const auto t0 = std::chrono::steady_clock::now();
  lowbit::simt::launch_with(opt, absmax_int8<Threads, Per>, dim3(static_cast<unsigned>(blocks)), dim3(Threads), 0,
                            x.data(), n, q.data(), absmax.data());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Check against a serial reference.
  long long bad = 0;
  for (long long b = 0; b < blocks; ++b) {
    float m = 0.0f;
    for (long long i = b * bs; i < n && i < (b + 1) * bs; ++i) m = std::fabs(x[i]) > m ? std::fabs(x[i]) : m;
    bad += m != absmax[static_cast<std::size_t>(b)];
  }
#if defined(LOWBIT_SIMT_BOOST_CONTEXT)
  const char* backend = "boost.context";
#else
  const char* backend = "ucontext";
#endif
  std::printf("%-13s blocksize %5lld (%4d threads x %d): %8.3f s, %7.2f Melem/s, %lld bad blocks\n", backend, bs,
              Threads, Per, s, static_cast<double>(n) / s * 1e-6, bad);
}

}  // namespace

int main(int argc, char** argv) {
  const long long n = argc > 1 ? std::atoll(argv[1]) : 4194304;
  std::vector<float> x(static_cast<std::size_t>(n));
  unsigned s = 12345;
  for (auto& v : x) {
    s = s * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int>(s >> 8) - (1 << 23)) * 1e-6f;
  }
  run<32, 2>(x);
  run<256, 16>(x);
  run<1024, 4>(x);
  return 0;
}
