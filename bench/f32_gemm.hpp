// SPDX-License-Identifier: Apache-2.0
/// @file f32_gemm.hpp
/// @brief The float32 comparison for the int8 matmul rows: `C = A · Bᵀ` (A [M, K], B [N, K]
///        row-major), lowbit's own blocked sgemm: B packed into panels per call, 64 x 256 tiles of
///        C, K blocks, on lowbit's thread pool, and the widest FMA the CPU has: AVX-512 (8 x 32
///        micro-kernel, 16 zmm accumulators) or AVX2 (6 x 16), so the comparison is ISA for ISA. No BLAS: the only one installed here is the reference
///        (netlib) BLAS, which would make the int8 rows look better than they are.
#pragma once

#include <lowbit/host/parallel.hpp>
#include <lowbit/memory.hpp>

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace lowbit_bench {

namespace detail {

constexpr std::int64_t tile_m = 64, tile_n = 256, block_k = 256;

template <int MR>
__attribute__((target("avx512f,fma"))) inline void micro512(const float* a, std::int64_t lda, const float* b,
                                                            std::int64_t kc, bool first, float* c, std::int64_t ldc,
                                                            int nv) {
  __m512 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    acc0[i] = _mm512_setzero_ps();
    acc1[i] = _mm512_setzero_ps();
  }
  for (std::int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(b + k * 32), b1 = _mm512_loadu_ps(b + k * 32 + 16);
    for (int i = 0; i < MR; ++i) {
      const __m512 av = _mm512_set1_ps(a[i * lda + k]);
      acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
    }
  }
  alignas(64) float t[32];
  for (int i = 0; i < MR; ++i) {
    _mm512_store_ps(t, acc0[i]);
    _mm512_store_ps(t + 16, acc1[i]);
    float* ci = c + i * ldc;
    for (int j = 0; j < nv; ++j) ci[j] = first ? t[j] : ci[j] + t[j];
  }
}

template <int MR>
__attribute__((target("avx2,fma"))) inline void micro256(const float* a, std::int64_t lda, const float* b,
                                                         std::int64_t kc, bool first, float* c, std::int64_t ldc, int nv) {
  __m256 acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    acc0[i] = _mm256_setzero_ps();
    acc1[i] = _mm256_setzero_ps();
  }
  for (std::int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * 16), b1 = _mm256_loadu_ps(b + k * 16 + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(a + i * lda + k);
      acc0[i] = _mm256_fmadd_ps(av, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(av, b1, acc1[i]);
    }
  }
  alignas(32) float t[16];
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(t, acc0[i]);
    _mm256_store_ps(t + 8, acc1[i]);
    float* ci = c + i * ldc;
    for (int j = 0; j < nv; ++j) ci[j] = first ? t[j] : ci[j] + t[j];
  }
}

template <int MR, class F>
void rows(int mr, F&& f) {
  if constexpr (MR > 1) {
    if (mr < MR) return rows<MR - 1>(mr, f);
  }
  f(std::integral_constant<int, MR>{});
}

}  // namespace detail

/// Name of the kernel sgemm uses on this CPU.
inline const char* sgemm_isa() {
  return __builtin_cpu_supports("avx512f") ? "avx512 fma" : (__builtin_cpu_supports("avx2") ? "avx2 fma" : "none");
}

/// C = A · Bᵀ in float32 (A [M, K], B [N, K], C [M, N], dense row-major); false if the CPU has
/// neither AVX-512 nor AVX2+FMA or memory runs out.
inline bool sgemm(const float* A, const float* B, float* C, std::int64_t M, std::int64_t N, std::int64_t K, int threads) {
  const bool w512 = __builtin_cpu_supports("avx512f");
  if (!w512 && !(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return false;
  const int nr = w512 ? 32 : 16, mr = w512 ? 8 : 6;
  const std::int64_t panels = (N + nr - 1) / nr;
  lowbit::storage<float> bp;
  if (!bp.allocate(static_cast<std::size_t>(panels * nr * K), lowbit::allocator::host(), "sgemm packed B").ok()) return false;
  lowbit::host::parallel_for(panels, 4, 1, threads, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p)
      for (std::int64_t k = 0; k < K; ++k)
        for (int j = 0; j < nr; ++j) {
          const std::int64_t n = p * nr + j;
          bp[(p * K + k) * nr + j] = n < N ? B[n * K + k] : 0.0f;
        }
  });
  // A rows past M are never read: the last micro-tile uses a smaller fixed kernel.
  const std::int64_t tn = detail::tile_n;
  const std::int64_t mt = (M + detail::tile_m - 1) / detail::tile_m, nt = (N + tn - 1) / tn;
  lowbit::host::parallel_for(mt * nt, 1, 1, threads, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t m0 = (t % mt) * detail::tile_m, n0 = (t / mt) * tn;
      const std::int64_t m1 = std::min(M, m0 + detail::tile_m), n1 = std::min(N, n0 + tn);
      for (std::int64_t k0 = 0; k0 < K; k0 += detail::block_k) {
        const std::int64_t kc = std::min(detail::block_k, K - k0);
        for (std::int64_t n = n0; n < n1; n += nr) {
          const float* b = bp.data() + ((n / nr) * K + k0) * nr;
          const int nv = static_cast<int>(std::min<std::int64_t>(nr, n1 - n));
          for (std::int64_t m = m0; m < m1; m += mr) {
            const int r = static_cast<int>(std::min<std::int64_t>(mr, m1 - m));
            const float* a = A + m * K + k0;
            float* c = C + m * N + n;
            if (w512)
              detail::rows<8>(r, [&](auto R) { detail::micro512<decltype(R)::value>(a, K, b, kc, k0 == 0, c, N, nv); });
            else
              detail::rows<6>(r, [&](auto R) { detail::micro256<decltype(R)::value>(a, K, b, kc, k0 == 0, c, N, nv); });
          }
        }
      }
    }
  });
  return true;
}

}  // namespace lowbit_bench
