// SPDX-License-Identifier: Apache-2.0
/// @file int8_gemm.hpp
/// @brief The host engine's exact int8 x int8 -> int32 matrix product `C = A · Bᵀ` (A [M, K],
///        B [N, K], both row-major with K contiguous, as bitsandbytes' `int8_linear_matmul`).
///
/// Four paths, chosen at run time, all exact and so bit-identical. Every path reads B (the
/// weights) in place, as stored (bitsandbytes' CB bytes): a weight matrix is never copied or
/// repacked per call.
/// - AMX (`tdpbssd`, signed x signed bytes into int32 tiles): B (the weights) is read in place as
///   the tiles' row operand, 16 rows of B x 64 bytes of k per tile load at row stride ldb, so a
///   weight matrix is never copied or repacked; A (the activations, the per-call operand) is laid
///   out once per call in the tiles' column form (16 rows of A, 64 k, as a 16 x 16 transpose of
///   4-byte groups: M·K bytes). Blocks of 32 rows of B x 32 rows of A keep four 16 x 16 int32
///   tiles over the whole of K; the results (Cᵀ tiles) are transposed on the way out. K not a
///   multiple of 64: the last step loads B at K - 64 (inside the row) against A's layout holding
///   zeros for the k already covered; N not a multiple of 32: the last block starts at N - 32 and
///   stores only its own columns. Needs N >= 32 and K >= 64 (smaller products take the VNNI
///   path) and Linux's permission for the tile state (asked once per process, arch_prctl).
///   `automatic` uses it from M = `amx_min_m` on; M = 1 is a GEMV that streams B either way and
///   the VNNI path has no A layout to prepare.
/// - AVX-512 VNNI (`vpdpbusd`): reads A and B in place, row-major, with no packing of either
///   operand, so a weight matrix B is streamed as it is stored (bitsandbytes' CB bytes) and never
///   copied per call. `vpdpbusd` multiplies unsigned by signed bytes: B's bytes are offset to
///   unsigned on the fly (b ^ 0x80 = b + 128, one XOR per 64 bytes loaded), A's stay signed, and
///   `128 · Σ_k A[m, k]` is subtracted at the end. A micro-tile of MR rows of A x 4 rows of B keeps
///   MR x 4 vectors of 16 int32 partial sums over the whole of K (64 bytes of k per step, a masked
///   load for the tail), reduced to 4 outputs per row at the end. For M <= `small_m` every task
///   holds all M rows, so each 4-row group of B is read from memory once and reused from L1 by
///   every row of A (the GEMV case: B streams once); larger M is tiled `task_tile_m` x
///   `task_tile_n` (a B tile resident in L2, an A micro-panel in L1).
///   int32 arithmetic wraps, so the result is exact whenever the true result fits in int32.
/// - AVX2 (`vpmaddwd`): reads A and B in place like the VNNI path, with the same task tiling
///   (`for_each_micro_tile`). A micro-tile of 3 rows of A x 4 rows of B keeps 12 vectors of 8 int32
///   partial sums over the whole of K: per 16 bytes of k, each row's bytes are sign-extended to
///   int16 (`vpmovsxbw`) and multiplied pairwise into int32 (`vpmaddwd`; a sum of two int8 x int8
///   products cannot overflow it); the last K % 16 bytes come from a zero-padded copy on the
///   stack, so nothing past a row's K bytes is read.
/// - portable C++: the same in-place structure, a micro-tile of 4 rows of A x 4 rows of B as int32
///   dot products over blocks of 64 bytes of k (a loop GCC vectorizes), the K tail scalar.
///
/// @par Semantics
/// Every int8 value -128..127 is accepted. C is exact when |C| < 2^31, which always holds for
/// K <= 2^17 - 1 (`int8::max_inner_dim`); larger K is an error. M, N or K = 0 is valid (K = 0 gives zeros).
#pragma once

#include "../config.hpp"
#include "../int8/llm_int8.hpp"
#include "../memory.hpp"
#include "../status.hpp"
#include "parallel.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(LOWBIT_NO_SIMD)
#  define LOWBIT_HAVE_INT8_SIMD 1
#  include <immintrin.h>
#  define LOWBIT_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#  define LOWBIT_TARGET_AVX2_INT __attribute__((target("avx2")))
#else
#  define LOWBIT_HAVE_INT8_SIMD 0
#endif
// AMX (tile) int8: x86-64 Linux, which hands out the tile state on request (arch_prctl); not
// under nvcc, whose host pass has no use for it.
#if LOWBIT_HAVE_INT8_SIMD && defined(__x86_64__) && defined(__linux__) && !defined(__CUDACC__)
#  define LOWBIT_HAVE_INT8_AMX 1
#  include <cpuid.h>
#  include <sys/syscall.h>
#  include <unistd.h>
#  define LOWBIT_TARGET_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,amx-tile,amx-int8")))
#else
#  define LOWBIT_HAVE_INT8_AMX 0
#endif

LOWBIT_NAMESPACE_BEGIN
namespace host {

/// Which integer kernel the int8 GEMM uses.
enum class int8_path : std::uint8_t {
  automatic,    ///< the fastest this CPU runs for the shape (AMX; VNNI at M = 1; see the file comment)
  portable,     ///< plain C++
  avx2,         ///< AVX2 vpmaddwd (error if the CPU lacks AVX2)
  avx512_vnni,  ///< AVX-512 VNNI vpdpbusd (error if the CPU lacks it)
  amx,          ///< AMX tiles, tdpbssd (error if the CPU or OS lacks AMX-INT8); see the file comment
};

/// Name of a path ("portable", "avx2", "avx512_vnni"; "automatic").
constexpr const char* int8_path_name(int8_path p) noexcept {
  return p == int8_path::portable      ? "portable"
         : p == int8_path::avx2        ? "avx2"
         : p == int8_path::avx512_vnni ? "avx512_vnni"
         : p == int8_path::amx         ? "amx"
                                       : "automatic";
}

namespace int8_detail {
/// True if the CPU has AMX-TILE and AMX-INT8 and the OS gave this process the tile state
/// (Linux: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked once, process-wide).
inline bool amx_usable() noexcept {
#if LOWBIT_HAVE_INT8_AMX
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!((d >> 24) & 1u) || !((d >> 25) & 1u)) return false;  // AMX-TILE, AMX-INT8
    constexpr long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
  }();
  return ok;
#else
  return false;
#endif
}
}  // namespace int8_detail

/// True if this CPU runs path `p` (automatic and portable always).
inline bool int8_path_available(int8_path p) noexcept {
#if LOWBIT_HAVE_INT8_SIMD
  if (p == int8_path::avx2) return __builtin_cpu_supports("avx2");
  if (p == int8_path::avx512_vnni)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni");
  if (p == int8_path::amx) return int8_path_available(int8_path::avx512_vnni) && int8_detail::amx_usable();
  return true;
#else
  return p == int8_path::automatic || p == int8_path::portable;
#endif
}

/// The path `automatic` resolves to on this CPU (for M >= int8_detail::amx_min_m, N >= 32, K >= 64
/// when that is amx; smaller products then take avx512_vnni).
inline int8_path resolve_int8_path(int8_path p) noexcept {
  if (p != int8_path::automatic) return p;
  if (int8_path_available(int8_path::amx)) return int8_path::amx;
  if (int8_path_available(int8_path::avx512_vnni)) return int8_path::avx512_vnni;
  if (int8_path_available(int8_path::avx2)) return int8_path::avx2;
  return int8_path::portable;
}

namespace int8_detail {

// ---- task tiling, shared by the in-place paths (VNNI, AVX2, portable) --------------------------

inline constexpr std::int64_t small_m = 16;      // M up to this: one task holds every row of A
inline constexpr std::int64_t task_tile_m = 96;  // rows of A per task (a multiple of every path's MR)
inline constexpr std::int64_t task_tile_n = 64;  // rows of B per task (a multiple of every path's NR)

/// Runtime row count -> the fixed-size kernel of that many rows of A (1..MR).
template <int MR, class F>
inline void dispatch_rows(int mr, F&& f) {
  if constexpr (MR > 1) {
    if (mr < MR) return dispatch_rows<MR - 1>(mr, f);
  }
  f(std::integral_constant<int, MR>{});
}

/// Calls `tile(m, mr, n, nv)` for every micro-tile of C (rows of A [m, m + mr), mr <= MR; rows of
/// B [n, n + nv), nv <= NR), spread over the thread pool in tasks of `task_tile_m` x `task_tile_n`.
/// M <= small_m: a task holds every row of A and walks B's row groups in the outer loop, so each
/// group of B is read from memory once and reused from L1 by every micro-panel of A (the GEMV
/// case: B streams once). Larger M: an A micro-panel stays in L1 while the task's B tile streams
/// from L2.
template <int MR, int NR, class Tile>
inline void for_each_micro_tile(std::int64_t M, std::int64_t N, int threads, Tile&& tile) {
  static_assert(task_tile_m % MR == 0 && task_tile_n % NR == 0, "task tiles hold whole micro-tiles");
  const std::int64_t tm = M <= small_m ? M : task_tile_m, tn = task_tile_n;
  const std::int64_t mt = (M + tm - 1) / tm, nt = (N + tn - 1) / tn;
  // Tasks in m-fastest order: consecutive tasks share B's rows.
  parallel_for(mt * nt, 1, 1, threads, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t m0 = (t % mt) * tm, n0 = (t / mt) * tn;
      const std::int64_t m1 = std::min(M, m0 + tm), n1 = std::min(N, n0 + tn);
      auto one = [&](std::int64_t m, std::int64_t n) {
        tile(m, static_cast<int>(std::min<std::int64_t>(MR, m1 - m)), n, static_cast<int>(std::min<std::int64_t>(NR, n1 - n)));
      };
      if (M <= small_m) {
        for (std::int64_t n = n0; n < n1; n += NR)
          for (std::int64_t m = m0; m < m1; m += MR) one(m, n);
      } else {
        for (std::int64_t m = m0; m < m1; m += MR)
          for (std::int64_t n = n0; n < n1; n += NR) one(m, n);
      }
    }
  });
}

// ---- portable C++, operands in place -----------------------------------------------------------

inline constexpr int portable_mr = 4;               // rows of A per micro-tile
inline constexpr int portable_nr = 4;               // rows of B per micro-tile
inline constexpr std::int64_t portable_kc = 64;     // bytes of k per inner dot product

/// Σ_t a[t] · b[t] over portable_kc bytes. The constant trip count lets GCC vectorize it at -O2
/// (its "very cheap" cost model rejects loops that need a scalar remainder).
inline std::int32_t dot_block(const std::int8_t* a, const std::int8_t* b) noexcept {
  std::int32_t s = 0;
  for (std::int64_t t = 0; t < portable_kc; ++t) s += static_cast<std::int32_t>(a[t]) * static_cast<std::int32_t>(b[t]);
  return s;
}

/// `C[i, j] = Σ_k a_i[k] · B[j, k]` for the `mr` rows a_i = A + i * lda and the `nv` rows of B at
/// `b` (stride ldb), over k < K, reading both in place. A partial sum never exceeds
/// K · 2^14 < 2^31 (K <= int8::max_inner_dim), so no int32 addition overflows.
inline void portable_tile(const std::int8_t* a, std::int64_t lda, const std::int8_t* b, std::int64_t ldb, int mr, int nv,
                          std::int64_t K, std::int32_t* c, std::int64_t ldc) noexcept {
  std::int32_t acc[portable_mr][portable_nr] = {};
  std::int64_t k = 0;
  // a K block of the micro-tile's 8 rows (512 bytes) stays in L1 across its 16 dot products
  for (; k + portable_kc <= K; k += portable_kc)
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nv; ++j) acc[i][j] += dot_block(a + i * lda + k, b + j * ldb + k);
  for (; k < K; ++k)
    for (int i = 0; i < mr; ++i)
      for (int j = 0; j < nv; ++j) acc[i][j] += static_cast<std::int32_t>(a[i * lda + k]) * static_cast<std::int32_t>(b[j * ldb + k]);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nv; ++j) c[i * ldc + j] = acc[i][j];
}

/// The portable path (see the file comment); sizes already checked, K >= 1.
inline void gemm_portable(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb, std::int32_t* C,
                          std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K, int threads) {
  for_each_micro_tile<portable_mr, portable_nr>(M, N, threads, [&](std::int64_t m, int mr, std::int64_t n, int nv) {
    portable_tile(A + m * lda, lda, B + n * ldb, ldb, mr, nv, K, C + m * ldc + n, ldc);
  });
}

#if LOWBIT_HAVE_INT8_SIMD
// ---- AVX2, operands in place -------------------------------------------------------------------

// (LOWBIT_HOST_UNROLL on the loops over the micro-tile's register arrays: without it GCC -O2 kept
// the accumulators in memory, at half the speed.)

inline constexpr int avx2_mr = 3;  // rows of A per micro-tile
inline constexpr int avx2_nr = 4;  // rows of B per micro-tile: 12 accumulators + 3 A + 1 B = 16 ymm

/// The sums of 4 vectors of 8 int32 lanes, as 4 lanes {Σa, Σb, Σc, Σd} (wrapping adds).
LOWBIT_TARGET_AVX2_INT inline __m128i reduce4_avx2(__m256i a, __m256i b, __m256i c, __m256i d) {
  // per 128-bit lane: {a0+a1+a2+a3, b.., c.., d..}; then the two lanes added
  const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
  return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/// acc[i][j] += the 8 int32 pair sums of a_i[k..k+16) · b_j[k..k+16), a_i = a + i * lda: 16 bytes
/// of each row sign-extended to int16, `vpmaddwd` (an int16 x int16 product of two int8 values
/// and the sum of two of them, at most 2^15, fit its int32 lanes exactly).
template <int MR, int NR>
LOWBIT_TARGET_AVX2_INT __attribute__((always_inline)) inline void avx2_step(__m256i (&acc)[MR][NR], const std::int8_t* a,
                                                                            std::int64_t lda, const std::int8_t* const (&b)[NR],
                                                                            std::int64_t k) {
  __m256i av[MR];
  LOWBIT_HOST_UNROLL
  for (int i = 0; i < MR; ++i)
    av[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i * lda + k)));
  LOWBIT_HOST_UNROLL
  for (int j = 0; j < NR; ++j) {
    const __m256i bv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[j] + k)));
    LOWBIT_HOST_UNROLL
    for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_add_epi32(acc[i][j], _mm256_madd_epi16(av[i], bv));
  }
}

/// `C[i, j] = Σ_k a_i[k] · B[j, k]` for MR rows a_i = A + i * lda and the `nv` (1..4) rows of B
/// at `b` (stride ldb), over k < K, reading both in place: 16 bytes of k per step, the last
/// K % 16 bytes from a zero-padded copy (nothing is read past a row's K bytes).
template <int MR>
LOWBIT_TARGET_AVX2_INT inline void avx2_tile(const std::int8_t* a, std::int64_t lda, const std::int8_t* b, std::int64_t ldb,
                                             int nv, std::int64_t K, std::int32_t* c, std::int64_t ldc) {
  constexpr int NR = avx2_nr;
  const std::int8_t* bj[NR];
  for (int j = 0; j < NR; ++j) bj[j] = b + (j < nv ? j : 0) * ldb;  // missing rows repeat row 0, never stored
  __m256i acc[MR][NR];
  LOWBIT_HOST_UNROLL
  for (int i = 0; i < MR; ++i) {
    LOWBIT_HOST_UNROLL
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_si256();
  }
  const std::int64_t full = K / 16 * 16;
  for (std::int64_t k = 0; k < full; k += 16) avx2_step<MR, NR>(acc, a, lda, bj, k);
  if (full < K) {
    const std::size_t rest = static_cast<std::size_t>(K - full);
    alignas(16) std::int8_t ta[MR][16] = {}, tb[NR][16] = {};
    const std::int8_t* tbj[NR];
    for (int i = 0; i < MR; ++i) std::memcpy(ta[i], a + i * lda + full, rest);
    for (int j = 0; j < NR; ++j) {
      std::memcpy(tb[j], bj[j] + full, rest);
      tbj[j] = tb[j];
    }
    avx2_step<MR, NR>(acc, &ta[0][0], 16, tbj, 0);
  }
  LOWBIT_HOST_UNROLL
  for (int i = 0; i < MR; ++i) {
    const __m128i s = reduce4_avx2(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
    if (nv == NR) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(c + i * ldc), s);
    } else {
      alignas(16) std::int32_t out[NR];
      _mm_store_si128(reinterpret_cast<__m128i*>(out), s);
      std::memcpy(c + i * ldc, out, sizeof(std::int32_t) * static_cast<std::size_t>(nv));
    }
  }
}

/// The AVX2 path (see the file comment); sizes already checked, K >= 1.
inline void gemm_avx2(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb, std::int32_t* C,
                      std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K, int threads) {
  for_each_micro_tile<avx2_mr, avx2_nr>(M, N, threads, [&](std::int64_t m, int mr, std::int64_t n, int nv) {
    dispatch_rows<avx2_mr>(mr, [&](auto R) {
      avx2_tile<decltype(R)::value>(A + m * lda, lda, B + n * ldb, ldb, nv, K, C + m * ldc + n, ldc);
    });
  });
}
// ---- VNNI, operands in place (no packing) ------------------------------------------------------

// GCC 12 reports -Wuninitialized inside its own AVX-512 reduction/extract intrinsics (as
// simd_avx512.hpp notes); the warnings are false, silenced for these kernels only.
#  if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic push
#    pragma GCC diagnostic ignored "-Wuninitialized"
#    pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  endif

inline constexpr std::int64_t amx_min_m = 2;     // automatic: AMX from this M on, VNNI below
inline constexpr int vnni_mr = 6;                // rows of A per micro-tile
inline constexpr int vnni_nr = 4;                // rows of B per micro-tile

/// The sums of 4 vectors of 16 int32 lanes, as 4 lanes {Σa, Σb, Σc, Σd} (wrapping adds).
LOWBIT_TARGET_VNNI inline __m128i reduce4(__m512i a, __m512i b, __m512i c, __m512i d) {
  // per 128-bit lane: ab = {a0+a2, b0+b2, a1+a3, b1+b3}, cd likewise; then {Σa, Σb, Σc, Σd}
  const __m512i ab = _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
  const __m512i cd = _mm512_add_epi32(_mm512_unpacklo_epi32(c, d), _mm512_unpackhi_epi32(c, d));
  const __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/// `C[i, j] = Σ_k a_i[k] · B[j, k]` for MR rows a_i = A + i * lda and the `nv` (1..4) rows of B
/// at `b` (stride ldb), over k < K; `corr[i]` = 128 · Σ_k a_i[k] (wrapping) is subtracted.
template <int MR>
LOWBIT_TARGET_VNNI inline void vnni_direct_tile(const std::int8_t* a, std::int64_t lda, const std::int8_t* b,
                                                std::int64_t ldb, int nv, std::int64_t K, const std::int32_t* corr,
                                                std::int32_t* c, std::int64_t ldc) {
  constexpr int NR = vnni_nr;
  const std::int8_t* bj[NR];
  for (int j = 0; j < NR; ++j) bj[j] = b + (j < nv ? j : 0) * ldb;  // missing rows repeat row 0, never stored
  __m512i acc[MR][NR];
  LOWBIT_HOST_UNROLL
  for (int i = 0; i < MR; ++i)
    LOWBIT_HOST_UNROLL
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_si512();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  std::int64_t k = 0;
  for (; k + 64 <= K; k += 64) {
    __m512i bv[NR];
    LOWBIT_HOST_UNROLL
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_xor_si512(_mm512_loadu_si512(bj[j] + k), flip);
    LOWBIT_HOST_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_loadu_si512(a + i * lda + k);
      LOWBIT_HOST_UNROLL
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], bv[j], av);
    }
  }
  if (k < K) {  // tail: masked loads read nothing past the row; A's zeros cancel B's offset
    const __mmask64 m = static_cast<__mmask64>((std::uint64_t{1} << (K - k)) - 1u);
    __m512i bv[NR];
    LOWBIT_HOST_UNROLL
    for (int j = 0; j < NR; ++j) bv[j] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, bj[j] + k), flip);
    LOWBIT_HOST_UNROLL
    for (int i = 0; i < MR; ++i) {
      const __m512i av = _mm512_maskz_loadu_epi8(m, a + i * lda + k);
      LOWBIT_HOST_UNROLL
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], bv[j], av);
    }
  }
  const __mmask8 store = static_cast<__mmask8>((1u << nv) - 1u);
  LOWBIT_HOST_UNROLL
  for (int i = 0; i < MR; ++i) {
    const __m128i s = _mm_sub_epi32(reduce4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]), _mm_set1_epi32(corr[i]));
    _mm_mask_storeu_epi32(c + i * ldc, store, s);
  }
}

/// 128 · Σ_k A[m, k] (wrapping) for rows [m0, m1), into corr[m - m0].
LOWBIT_TARGET_VNNI inline void vnni_row_corrections(const std::int8_t* A, std::int64_t lda, std::int64_t K, std::int64_t m0,
                                                    std::int64_t m1, std::int32_t* corr) {
  const __m512i ones = _mm512_set1_epi8(1);
  for (std::int64_t m = m0; m < m1; ++m) {
    const std::int8_t* a = A + m * lda;
    __m512i acc = _mm512_setzero_si512();
    std::int64_t k = 0;
    for (; k + 64 <= K; k += 64) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(a + k));
    if (k < K) acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(static_cast<__mmask64>((std::uint64_t{1} << (K - k)) - 1u), a + k));
    corr[m - m0] = static_cast<std::int32_t>(static_cast<std::uint32_t>(_mm512_reduce_add_epi32(acc)) * 128u);
  }
}

#  if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic pop
#  endif

/// The VNNI path over operands in place (see the file comment); sizes already checked, K >= 1.
inline status gemm_vnni_direct(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb,
                               std::int32_t* C, std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K,
                               int threads) {
  storage<std::int32_t> corr;
  LOWBIT_TRY(corr.allocate(static_cast<std::size_t>(M), allocator::host(), "int8 gemm: row sums of A"));
  parallel_for(M, 64, 1, threads, [&](std::int64_t m0, std::int64_t m1) { vnni_row_corrections(A, lda, K, m0, m1, corr.data() + m0); });
  for_each_micro_tile<vnni_mr, vnni_nr>(M, N, threads, [&](std::int64_t m, int mr, std::int64_t n, int nv) {
    dispatch_rows<vnni_mr>(mr, [&](auto R) {
      vnni_direct_tile<decltype(R)::value>(A + m * lda, lda, B + n * ldb, ldb, nv, K, corr.data() + m, C + m * ldc + n, ldc);
    });
  });
  return {};
}
#endif

#if LOWBIT_HAVE_INT8_AMX
#  if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic push
#    pragma GCC diagnostic ignored "-Wuninitialized"
#    pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#  endif
// ---- AMX, W in place --------------------------------------------------------------------------
// tdpbssd: C[16 x 16] (int32) += T1[16 x 64] (int8 rows) · T2 where T2 row q holds, for 16
// columns c, the 4 bytes of k = 4q..4q+3. W's rows are T1 as stored (16 rows of W, 64 bytes of k,
// row stride ldb), so W is never copied; A (the activations) is laid out per call in T2's form,
// 16 rows of A per "A tile" of 1 KiB per 64 k. The product is Cᵀ, transposed on the way out.

inline constexpr std::int64_t amx_n = 32;     // rows of W per block (two W tiles)
inline constexpr std::int64_t amx_tile = 16;  // rows / columns of a tile
inline constexpr std::int64_t amx_kstep = 64; // bytes of k per tile

/// 64-byte tile configuration (palette 1): 8 tiles of 16 rows x 64 bytes.
struct alignas(64) amx_config {
  std::uint8_t palette = 1, start_row = 0, reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
};

/// The 16 x 16 matrix of 32-bit elements in `r` (row i = r[i]) transposed in place.
LOWBIT_TARGET_AMX inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + q]: 128-bit lane L holds column 4L + q of rows 4i..4i+3
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int q = 0; q < 4; ++q) {
    t[4 * q + 0] = _mm512_shuffle_i32x4(r[q], r[4 + q], 0x88);
    t[4 * q + 1] = _mm512_shuffle_i32x4(r[q], r[4 + q], 0xDD);
    t[4 * q + 2] = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0x88);
    t[4 * q + 3] = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0xDD);
  }
  for (int q = 0; q < 4; ++q) {
    r[q] = _mm512_shuffle_i32x4(t[4 * q + 0], t[4 * q + 2], 0x88);
    r[8 + q] = _mm512_shuffle_i32x4(t[4 * q + 0], t[4 * q + 2], 0xDD);
    r[4 + q] = _mm512_shuffle_i32x4(t[4 * q + 1], t[4 * q + 3], 0x88);
    r[12 + q] = _mm512_shuffle_i32x4(t[4 * q + 1], t[4 * q + 3], 0xDD);
  }
}

/// A laid out in T2 form: for row tile t (16 rows of A, zero past M) and k step s, 1 KiB
/// `a[(t * steps + s) * 1024 + q * 64 + c * 4 + u] = A[16 t + c, k_s + 4 q + u]`, where k_s = 64 s,
/// except for a partial last step, which starts at K - 64 (K >= 64) and holds zeros below the
/// k already covered, so that W's tiles are always loaded inside W's rows. A step is the 16 x 16
/// transpose of A's 16 x 64-byte block taken as 32-bit elements.
LOWBIT_TARGET_AMX inline void amx_pack_a(const std::int8_t* A, std::int64_t lda, std::int64_t M, std::int64_t K,
                                         std::int64_t steps, std::int64_t t0, std::int64_t t1, std::int8_t* out) {
  const std::int64_t full = K / amx_kstep;
  for (std::int64_t t = t0; t < t1; ++t)
    for (std::int64_t st = 0; st < steps; ++st) {
      const std::int64_t ks = st < full ? st * amx_kstep : K - amx_kstep;
      const std::int64_t skip = st < full ? 0 : full * amx_kstep - ks;  // bytes covered by the step before
      const __mmask64 mask = static_cast<__mmask64>(~std::uint64_t{0} << skip);
      __m512i r[16];
      for (std::int64_t c = 0; c < amx_tile; ++c) {
        const std::int64_t m = t * amx_tile + c;
        r[c] = m < M ? _mm512_maskz_loadu_epi8(mask, A + m * lda + ks) : _mm512_setzero_si512();
      }
      transpose16(r);
      std::int8_t* o = out + (t * steps + st) * 1024;
      for (int q = 0; q < 16; ++q) _mm512_storeu_si512(o + q * 64, r[q]);
    }
}

/// Stores the tile product buffer `buf` (16 rows of W x 16 rows of A) to C: rows of A [m, m + mv),
/// columns n + [r0, 16).
LOWBIT_TARGET_AMX inline void amx_store(const std::int32_t* buf, std::int64_t mv, int r0, std::int32_t* c, std::int64_t ldc) {
  __m512i col[16];
  for (int i = 0; i < 16; ++i) col[i] = _mm512_load_si512(buf + 16 * i);
  transpose16(col);
  const __mmask16 keep = static_cast<__mmask16>(0xFFFFu << r0);
  for (std::int64_t i = 0; i < mv; ++i) _mm512_mask_storeu_epi32(c + i * ldc, keep, col[i]);
}

/// One block of C: rows of A [m, m + 16·JB) (`mv` of them valid) x rows of W [n, n + 32) at `w`,
/// the columns below n + r0 not stored (the previous block holds them). `at` = the T2 tiles of
/// A's first row tile (amx_pack_a); the configured tiles: 0..3 products, 4..5 W, 6..7 A.
template <int JB>
LOWBIT_TARGET_AMX inline void amx_block(const std::int8_t* w, std::int64_t ldb, std::int64_t K, const std::int8_t* at,
                                        std::int64_t steps, std::int64_t mv, int r0, std::int32_t* c, std::int64_t ldc) {
  _tile_zero(0);
  _tile_zero(1);
  if (JB == 2) {
    _tile_zero(2);
    _tile_zero(3);
  }
  const std::int64_t full = K / amx_kstep;
  for (std::int64_t st = 0; st < steps; ++st) {
    const std::int64_t ks = st < full ? st * amx_kstep : K - amx_kstep;
    _tile_loadd(4, w + ks, ldb);
    _tile_loadd(5, w + 16 * ldb + ks, ldb);
    _tile_loadd(6, at + st * 1024, 64);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 5, 6);
    if (JB == 2) {
      _tile_loadd(7, at + (steps + st) * 1024, 64);
      _tile_dpbssd(2, 4, 7);
      _tile_dpbssd(3, 5, 7);
    }
  }
  alignas(64) std::int32_t buf[amx_tile * amx_tile];
  const std::int64_t mv0 = std::min<std::int64_t>(mv, amx_tile), mv1 = mv - mv0;
  const int r0a = r0 < 16 ? r0 : 16, r0b = r0 > 16 ? r0 - 16 : 0;
  if (r0a < 16) {
    _tile_stored(0, buf, 64);
    amx_store(buf, mv0, r0a, c, ldc);
  }
  _tile_stored(1, buf, 64);
  amx_store(buf, mv0, r0b, c + 16, ldc);
  if (JB == 2 && mv1 > 0) {
    if (r0a < 16) {
      _tile_stored(2, buf, 64);
      amx_store(buf, mv1, r0a, c + 16 * ldc, ldc);
    }
    _tile_stored(3, buf, 64);
    amx_store(buf, mv1, r0b, c + 16 * ldc + 16, ldc);
  }
}

inline constexpr std::int64_t amx_task_pairs = 8;   // pairs of A row tiles per task (256 rows)
inline constexpr std::int64_t amx_task_blocks = 4;  // W blocks per task (128 rows)

/// AMX tasks [t0, t1) of gemm_amx, on one thread (its own tile configuration).
LOWBIT_TARGET_AMX inline void amx_tasks(const std::int8_t* B, std::int64_t ldb, std::int32_t* C, std::int64_t ldc, std::int64_t M,
                                        std::int64_t N, std::int64_t K, const std::int8_t* at, std::int64_t steps,
                                        std::int64_t pairs, std::int64_t mt, std::int64_t t0, std::int64_t t1) {
  const std::int64_t blocks = (N + amx_n - 1) / amx_n;
  amx_config cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = static_cast<std::uint8_t>(amx_tile);
    cfg.colsb[t] = static_cast<std::uint16_t>(amx_kstep);
  }
  _tile_loadconfig(&cfg);
  for (std::int64_t t = t0; t < t1; ++t) {
    const std::int64_t p0 = (t % mt) * amx_task_pairs, p1 = std::min(pairs, p0 + amx_task_pairs);
    const std::int64_t b0 = (t / mt) * amx_task_blocks, b1 = std::min(blocks, b0 + amx_task_blocks);
    for (std::int64_t b = b0; b < b1; ++b) {
      // the last block ends at N: it starts earlier and leaves the overlap to the block before
      const std::int64_t n = std::min(b * amx_n, N - amx_n);
      const int r0 = static_cast<int>(b * amx_n - n);
      for (std::int64_t pr = p0; pr < p1; ++pr) {
        const std::int64_t m = pr * 2 * amx_tile, mv = std::min<std::int64_t>(2 * amx_tile, M - m);
        const std::int8_t* a = at + pr * 2 * steps * 1024;
        if (mv > amx_tile)
          amx_block<2>(B + n * ldb, ldb, K, a, steps, mv, r0, C + m * ldc + n, ldc);
        else
          amx_block<1>(B + n * ldb, ldb, K, a, steps, mv, r0, C + m * ldc + n, ldc);
      }
    }
  }
  _tile_release();
}

/// The AMX path (see the file comment); N >= 32, K >= 64 and sizes already checked.
inline status gemm_amx(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb, std::int32_t* C,
                       std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K, int threads) {
  const std::int64_t steps = (K + amx_kstep - 1) / amx_kstep, tiles = (M + amx_tile - 1) / amx_tile;
  const std::int64_t pairs = (tiles + 1) / 2;
  storage<std::int8_t> at;
  // whole pairs of row tiles, so a pair's second tile exists (zeros past M)
  LOWBIT_TRY(at.allocate(static_cast<std::size_t>(pairs * 2 * steps * 1024), allocator::host(), "int8 gemm: A in tile form"));
  parallel_for(pairs * 2, 1, 1, threads, [&](std::int64_t t0, std::int64_t t1) { amx_pack_a(A, lda, M, K, steps, t0, t1, at.data()); });
  const std::int64_t blocks = (N + amx_n - 1) / amx_n;
  const std::int64_t mt = (pairs + amx_task_pairs - 1) / amx_task_pairs, nt = (blocks + amx_task_blocks - 1) / amx_task_blocks;
  parallel_for(mt * nt, 1, 1, threads, [&](std::int64_t t0, std::int64_t t1) {
    amx_tasks(B, ldb, C, ldc, M, N, K, at.data(), steps, pairs, mt, t0, t1);
  });
  return {};
}
#  if defined(__GNUC__) && !defined(__clang__)
#    pragma GCC diagnostic pop
#  endif
#endif

}  // namespace int8_detail

/// Options of the int8 GEMM.
struct int8_gemm_options {
  int threads = 0;                      ///< 0 = every hardware thread
  int8_path path = int8_path::automatic;
};

/// `C[m, n] = Σ_k A[m, k] · B[n, k]` exactly in int32, for A [M, K] (row stride lda >= K),
/// B [N, K] (row stride ldb >= K), C [M, N] (row stride ldc >= N).
/// Errors: null pointers (with a nonzero extent), negative sizes, strides below the row length,
/// K > int8::max_inner_dim (int32 could overflow), a path the CPU does not run, out of memory.
inline status int8_gemm(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb, std::int32_t* C,
                        std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K,
                        const int8_gemm_options& opt = {}) noexcept {
  if (M < 0 || N < 0 || K < 0)
    return status::error(errc::invalid_argument, "int8_gemm: M=%lld, N=%lld, K=%lld; sizes must be >= 0",
                         static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K));
  if (K > int8::max_inner_dim)
    return status::error(errc::invalid_argument, "int8_gemm: K=%lld exceeds %lld, int32 accumulation could overflow",
                         static_cast<long long>(K), static_cast<long long>(int8::max_inner_dim));
  if (lda < K || ldb < K || ldc < N)
    return status::error(errc::invalid_argument, "int8_gemm: strides lda=%lld, ldb=%lld, ldc=%lld below the row lengths (K=%lld, N=%lld)",
                         static_cast<long long>(lda), static_cast<long long>(ldb), static_cast<long long>(ldc),
                         static_cast<long long>(K), static_cast<long long>(N));
  if (M == 0 || N == 0) return {};
  if (C == nullptr) return status::error(errc::invalid_argument, "int8_gemm: C is null");
  if (K > 0 && A == nullptr) return status::error(errc::invalid_argument, "int8_gemm: A is null");
  if (K > 0 && B == nullptr) return status::error(errc::invalid_argument, "int8_gemm: B is null");
  if (!int8_path_available(opt.path))
    return status::error(errc::unsupported, "int8_gemm: this CPU does not run the %s path", int8_path_name(opt.path));
  [[maybe_unused]] const int8_path p = resolve_int8_path(opt.path);  // unused without SIMD: portable
  if (K == 0) {
    for (std::int64_t m = 0; m < M; ++m) std::memset(C + m * ldc, 0, sizeof(std::int32_t) * static_cast<std::size_t>(N));
    return {};
  }
#if LOWBIT_HAVE_INT8_AMX
  if (p == int8_path::amx && N >= int8_detail::amx_n && K >= int8_detail::amx_kstep &&
      (opt.path == int8_path::amx || M >= int8_detail::amx_min_m))
    return int8_detail::gemm_amx(A, lda, B, ldb, C, ldc, M, N, K, opt.threads);
#endif
#if LOWBIT_HAVE_INT8_SIMD
  if (p == int8_path::avx512_vnni || p == int8_path::amx)
    return int8_detail::gemm_vnni_direct(A, lda, B, ldb, C, ldc, M, N, K, opt.threads);
#endif
#if LOWBIT_HAVE_INT8_SIMD
  if (p == int8_path::avx2) {
    int8_detail::gemm_avx2(A, lda, B, ldb, C, ldc, M, N, K, opt.threads);
    return {};
  }
#endif
  int8_detail::gemm_portable(A, lda, B, ldb, C, ldc, M, N, K, opt.threads);
  return {};
}

}  // namespace host
LOWBIT_NAMESPACE_END
