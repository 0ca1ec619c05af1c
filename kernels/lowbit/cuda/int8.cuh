// SPDX-License-Identifier: Apache-2.0
/// @file int8.cuh
/// @brief LLM.int8() on CUDA: vector-wise quantization with outlier columns, the int8 GEMM
///        (cuBLASLt, with an exact fallback kernel), the outlier GEMM (cuBLAS, with a fallback
///        kernel) and the epilogue. The kernels evaluate the per-element functions of
///        lowbit/int8/llm_int8.hpp, shared with the host engine, and equal it bit for bit
///        (codes, row statistics, outlier columns, int32 products, epilogue outputs).
///
/// @par Pipeline (`int8_matmul`)
/// 1. `int8_row_absmax_kernel` (one CTA per row, 128-bit loads): max |x| over the row's
///    non-outliers and from it the row's encoding, outlier columns flagged, first non-finite index.
/// 2. `int8_outlier_list_kernel` (one CTA): the flagged columns as a sorted list and its length.
/// 3. `int8_row_codes_kernel` (a row kernel, 16 columns per thread): codes (0 in outlier columns)
///    and row statistics, with 128-bit loads and stores when x, codes and the width allow.
/// 4. `C = codes · CBᵀ` in int32: cuBLASLt (`CUBLAS_COMPUTE_32I`, int8 "TN", as bitsandbytes'
///    igemmlt) when a handle is given and it takes the shape, else `int8_gemm_fallback_kernel`
///    (exact int32, 64 x 64 shared-memory tiles, dp4a; any shape, e.g. K % 4 != 0).
///    The weights go to cuBLASLt in the layout they are stored in: CB row-major [N, K] is, to
///    cuBLASLt, a column-major (CUBLASLT_ORDER_COL, its default) K x N int8 matrix taken with
///    CUBLAS_OP_T. Nothing is transformed, per call or at all: no cublasLtMatrixTransform into
///    the tiled COL32 / COL4_4R2_8C / COL32_2R_4R4 orders (older bitsandbytes transformed the
///    weights into them and the activations into COL32), so the weight layout is the one
///    produced once by quantization. The launcher expects CB as stored, 16-byte aligned, with N
///    and K multiples of 4; other shapes take the fallback kernel.
/// 5. With outlier columns: the columns of X and the dequantized weight columns (rounded to X's
///    dtype) are gathered, then multiplied into float32 sums by cuBLAS (`cublasGemmEx`, 16-bit or
///    float32 inputs, float32 accumulation and output) when a handle is given, else by
///    `int8_outlier_sums_kernel` (the host's summation order, so then bit-identical to the host).
/// 6. `int8_epilogue_kernel`: the epilogue, output in X's dtype.
///
/// In weight-only mode (int8::matmul_mode::weight_only) steps 1-3 run with threshold 0 (they
/// reject non-finite X and give the row statistics), step 4 is replaced by C = 0 and step 5 takes
/// every column (the gathers with a null column list), as on the host.
///
/// @par Launchers
/// Take device pointers, a stream, and the handles and workspaces they use (nothing is created or
/// allocated inside); validate arguments and return lowbit::status. `int8_matmul` synchronizes
/// `stream` once, after step 3, to learn the outlier count (as bitsandbytes does) and to report
/// non-finite input before anything is written to `y`.
#pragma once

#include <lowbit/dtype.hpp>
#include <lowbit/int8/llm_int8.hpp>
#include <lowbit/quant_tensor.hpp>
#include <lowbit/quant/blockwise.hpp>
#include <lowbit/status.hpp>

#include "blockwise.cuh"
#include "detail/arch.cuh"
#include "detail/launch.cuh"

// cuBLASLt and cuBLAS: NVIDIA's headers under nvcc; in the SIMT build the stand-in that implements
// the documented semantics of exactly the calls below on the CPU (kernels/lowbit/simt/cublas.hpp), so
// the library paths are the same code in both builds.
#if defined(__CUDACC__)
#  include <cublasLt.h>
#  include <cublas_v2.h>
#else
#  include "../simt/cublas.hpp"
#endif

#include <cstddef>
#include <cstdint>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace int8_detail {

using detail::global_thread;
using detail::threads_per_block;

/// Keeps nvcc from unrolling a row kernel's loop over rows (its body is already several elements wide).
#if defined(__CUDACC__)
#  define LOWBIT_INT8_ROW_LOOP _Pragma("unroll 1")
#else
#  define LOWBIT_INT8_ROW_LOOP
#endif


template <class T>
__device__ __forceinline__ bool finite(float v) {
  return (__float_as_uint(v) & 0x7F800000u) != 0x7F800000u;
}

/// What int8_row_absmax_kernel leaves per row for int8_row_codes_kernel: the row's statistic and
/// its encoding multiplier (int8::row_encoder: inv = 127 / absmax, 0 for a zero row), so that the
/// codes kernel divides nothing. One 64-bit load per row.
struct alignas(8) row_encoding {
  float scale, inv;
};

/// |v|'s bits for an element of type T given its raw bits (float32: 31 bits, 16-bit types: 15).
template <class T>
inline constexpr unsigned abs_mask = sizeof(T) == 4 ? 0x7FFFFFFFu : 0x7FFFu;
/// The smallest |v| bits of a non-finite T (infinity): at or above it, an element is Inf or NaN.
template <class T>
inline constexpr unsigned nonfinite_bits = sizeof(T) == 4 ? 0x7F800000u : (std::is_same<T, bf16>::value ? 0x7F80u : 0x7C00u);

/// to_float(v), with one cvt.f32.f16 for float16 (half_bits_to_float).
template <class T>
__device__ __forceinline__ float value_of(T v) {
  if constexpr (std::is_same<T, f16>::value) {
    return cuda::detail::half_bits_to_float(v.bits);
  } else {
    return to_float(v);
  }
}

/// float32 value of the |v| bits `a` of a finite T (a < nonfinite_bits<T>): exact.
template <class T>
__device__ __forceinline__ float abs_bits_to_float(unsigned a) {
  if constexpr (sizeof(T) == 4) {
    return __uint_as_float(a);
  } else {
    return value_of(T{static_cast<std::uint16_t>(a)});
  }
}

/// The |v| bits from which a finite element of type T is an outlier for `threshold`
/// (int8::is_outlier: threshold > 0 and |v| >= threshold): the smallest finite a with
/// to_float(a) >= threshold, else nonfinite_bits<T> (no finite outlier, e.g. threshold 0). For
/// finite elements of one sign |v| is monotone in its bits, so `a >= outlier_bits` is is_outlier.
template <class T>
inline unsigned outlier_bits(float threshold) {
  constexpr unsigned nf = nonfinite_bits<T>;
  if (!(threshold > 0.0f)) return nf;
  unsigned lo = 0, hi = nf;  // the answer lies in [lo, hi]
  while (lo < hi) {
    const unsigned mid = lo + (hi - lo) / 2;
    float v;
    if constexpr (sizeof(T) == 4) {
      v = bits_float(mid);
    } else {
      v = to_float(T{static_cast<std::uint16_t>(mid)});
    }
    if (v >= threshold) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

/// Step 1 (CTA r = row r): the row's encoding from max |x| over its finite non-outlier elements;
/// outlier columns get flag 1; the first non-finite element's flat index goes to first_bad. The
/// row is read in 16-byte vectors from its first 16-byte boundary (a scalar head before it and a
/// scalar tail after the last whole vector), so any row alignment takes the vector loop. All of it
/// on |v|'s bits (unsigned compares; a finite element's |v| is monotone in them): the vector loop
/// takes the maximum of a vector's bits, and only a vector holding an outlier or a non-finite
/// element (its maximum at or above `outlier_from`, see outlier_bits) is looked at element by
/// element. Column indices are 32-bit (cols < 2^31, checked by the launcher).
template <class T>
__global__ void int8_row_absmax_kernel(const T* x, std::int64_t cols, unsigned outlier_from, row_encoding* enc,
                                       unsigned* col_flags, unsigned long long* first_bad) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  using reduce = detail::block_max<threads_per_block>;
  LOWBIT_SHARED(typename reduce::temp_storage, tmp);
  constexpr unsigned per16 = 16 / sizeof(T);
  constexpr unsigned nf = nonfinite_bits<T>;
  const unsigned n = static_cast<unsigned>(cols);
  const T* xr = x + static_cast<std::int64_t>(blockIdx.x) * cols;
  unsigned am = 0;          // max |v| bits over the finite non-outliers
  unsigned bad_from = ~0u;  // the first non-finite element is at or after this column
  // one element, without a branch: its bits count towards am unless it is an outlier or not
  // finite; an outlier column is flagged (atomic: the CTAs of other rows may flag it too)
  auto one = [&](unsigned a, unsigned k) {
    am = a < outlier_from && a > am ? a : am;
    if (a - outlier_from < nf - outlier_from) atomicOr(col_flags + k, 1u);
  };
  const unsigned mis = static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(xr) & 15u) / sizeof(T);
  unsigned head = mis == 0 ? 0u : per16 - mis;  // elements before the row's first 16-byte boundary
  head = head < n ? head : n;
  const unsigned body_end = head + (n - head) / per16 * per16;
  for (unsigned k = threadIdx.x; k < head; k += threads_per_block) {
    const unsigned a = detail::raw_bits(xr[k]) & abs_mask<T>;
    one(a, k);
    if (a >= nf) bad_from = k < bad_from ? k : bad_from;
  }
  unsigned am_hi = 0, am_lo = 0;  // 16-bit types: maxima of the upper and lower halves' bits
  const unsigned kof = (0x8000u - outlier_from) * 0x10001u, knf = (0x8000u - nf) * 0x10001u;
  for (unsigned k = head + threadIdx.x * per16; k < body_end; k += threads_per_block * per16) {
    const uint4 raw = detail::load_vector<uint4>(xr + k);
    const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
    if constexpr (sizeof(T) == 4) {
      unsigned a[4];
      LOWBIT_UNROLL
      for (int j = 0; j < 4; ++j) a[j] = w[j] & 0x7FFFFFFFu;
      unsigned m = a[0];
      LOWBIT_UNROLL
      for (int i = 1; i < 4; ++i) m = a[i] > m ? a[i] : m;
      if (m < outlier_from) {
        am = m > am ? m : am;
      } else {
        // a vector with an outlier or a non-finite element: the maximum over the others, a mask
        // of the outliers, flagged one by one
        unsigned outl = 0;
        LOWBIT_UNROLL
        for (unsigned i = 0; i < 4; ++i) {
          am = a[i] < outlier_from && a[i] > am ? a[i] : am;
          outl |= a[i] - outlier_from < nf - outlier_from ? 1u << i : 0u;
        }
        while (outl != 0u) {
          atomicOr(col_flags + k + static_cast<unsigned>(__ffs(static_cast<int>(outl)) - 1), 1u);
          outl &= outl - 1u;
        }
        if (m >= nf) bad_from = k < bad_from ? k : bad_from;  // the exact column is found below
      }
    } else {
      // two elements per word, compared as packed halves: a half h (|v|'s 15 bits) plus
      // 0x8000 - c has bit 15 set iff h >= c, with no carry into the other half
      unsigned outw[4], any_out = 0, any_bad = 0;
      LOWBIT_UNROLL
      for (int j = 0; j < 4; ++j) {
        const unsigned aw = w[j] & 0x7FFF7FFFu;
        const unsigned ge = (aw + kof) & 0x80008000u;           // halves at or above outlier_from
        const unsigned gnf = (aw + knf) & 0x80008000u;          // halves not finite
        const unsigned below = aw & ~(ge | (ge - (ge >> 15)));  // the others, and 0
        am_hi = (below & 0xFFFF0000u) > am_hi ? below & 0xFFFF0000u : am_hi;
        am_lo = (below & 0xFFFFu) > am_lo ? below & 0xFFFFu : am_lo;
        outw[j] = ge & ~gnf;
        any_out |= outw[j];
        any_bad |= gnf;
      }
      if (any_bad != 0u) bad_from = k < bad_from ? k : bad_from;  // the exact column is found below
      if (any_out != 0u) {
        // bit 15 of outw[j] is element 2 j, bit 31 element 2 j + 1: mask bits 2 j and 16 + 2 j
        unsigned outl = (outw[0] >> 15) | (outw[1] >> 13) | (outw[2] >> 11) | (outw[3] >> 9);
        while (outl != 0u) {
          const unsigned bit = static_cast<unsigned>(__ffs(static_cast<int>(outl)) - 1);
          atomicOr(col_flags + k + (bit & 15u) + (bit >> 4), 1u);
          outl &= outl - 1u;
        }
      }
    }
  }
  am_hi >>= 16;
  am = am_hi > am ? am_hi : am;
  am = am_lo > am ? am_lo : am;
  for (unsigned k = body_end + threadIdx.x; k < n; k += threads_per_block) {
    const unsigned a = detail::raw_bits(xr[k]) & abs_mask<T>;
    one(a, k);
    if (a >= nf) bad_from = k < bad_from ? k : bad_from;
  }
  if (bad_from != ~0u) {  // the first non-finite element of this thread, at or after bad_from
    unsigned k = bad_from;
    while ((detail::raw_bits(xr[k]) & abs_mask<T>) < nf) ++k;
    atomicMin(first_bad, static_cast<unsigned long long>(blockIdx.x) * static_cast<unsigned long long>(n) + k);
  }
  const float amax = reduce::reduce(tmp, abs_bits_to_float<T>(am));
  if (threadIdx.x == 0) {
    const quant::block_encoder e = int8::row_encoder(amax);
    enc[blockIdx.x] = row_encoding{e.scale, e.inv};
  }
}

/// Step 2 (one CTA): the flagged columns in increasing order and their number. Chunks of
/// list_chunk = 4096 columns: thread t reads the flags of columns [16 t, 16 t + 16) of the chunk
/// (four 128-bit loads; the last, partial chunk with scalar loads) into a 16-bit mask (a flag is
/// 0 or 1: int8_row_absmax_kernel only ORs in 1), a warp-inclusive scan of the masks' popcounts and
/// one barrier give each thread the position of its first outlier, and it writes its outliers'
/// columns there. The warps' totals are double-buffered in shared memory, so that one barrier per
/// chunk suffices. `col_flags` is 16-byte aligned (the quantization workspace's).
inline constexpr unsigned list_cols = 16;
inline constexpr unsigned list_chunk = list_cols * threads_per_block;

__global__ void int8_outlier_list_kernel(const unsigned* col_flags, std::int64_t cols, std::int32_t* outlier_cols,
                                         int* count) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr unsigned warps = threads_per_block / 32;
  LOWBIT_SHARED(unsigned[2][warps], warp_counts);
  const unsigned tid = threadIdx.x, lane = tid & 31u, warp = tid >> 5;
  const unsigned n = static_cast<unsigned>(cols);
  unsigned base = 0;  // outliers in the chunks before this one (the same in every thread)
  unsigned buf = 0;
  auto list = [&](unsigned c0, unsigned mask) {
    const unsigned cnt = static_cast<unsigned>(__popc(mask));
    unsigned incl = cnt;
    LOWBIT_UNROLL
    for (unsigned d = 1; d < 32u; d *= 2u) {
      const unsigned y = __shfl_up_sync(0xFFFFFFFFu, incl, d);
      incl += lane >= d ? y : 0u;
    }
    if (lane == 31u) warp_counts[buf][warp] = incl;
    __syncthreads();
    unsigned before = base, total = 0;
    LOWBIT_UNROLL
    for (unsigned w = 0; w < warps; ++w) {
      const unsigned v = warp_counts[buf][w];
      before += w < warp ? v : 0u;
      total += v;
    }
    unsigned at = before + incl - cnt;
    while (mask != 0u) {
      outlier_cols[at++] = static_cast<std::int32_t>(c0 + static_cast<unsigned>(__ffs(static_cast<int>(mask)) - 1));
      mask &= mask - 1u;
    }
    base += total;
    buf ^= 1u;
  };
  unsigned c = 0;
  for (; c + list_chunk <= n; c += list_chunk) {
    const unsigned c0 = c + tid * list_cols;
    unsigned mask = 0;
    LOWBIT_UNROLL
    for (unsigned q = 0; q < list_cols / 4u; ++q) {
      const uint4 f = detail::load_vector<uint4>(col_flags + c0 + 4u * q);
      mask |= (f.x | f.y << 1 | f.z << 2 | f.w << 3) << (4u * q);
    }
    list(c0, mask);
  }
  if (c < n) {  // the last, partial chunk
    const unsigned c0 = c + tid * list_cols;
    unsigned mask = 0;
    LOWBIT_UNROLL
    for (unsigned i = 0; i < list_cols; ++i) {
      if (c0 + i < n) mask |= col_flags[c0 + i] << i;
    }
    list(c0, mask);
  }
  if (tid == 0) *count = static_cast<int>(base);
}

/// Step 3: codes and row statistics, a row kernel (see the gathers below for the grid): thread t
/// of a CTA owns the code_cols = 16 consecutive columns [16 t, 16 t + 16) of its column tile of
/// 4096 and keeps, once, a byte mask of those that are not outlier columns; CTAs loop over rows.
/// Per row: the row's encoding (one 64-bit load, no division: int8_row_absmax_kernel computed it),
/// 16 elements encoded (encode_finite), masked and stored; the thread owning column 0 writes the
/// statistic. `Vec` (the launcher's choice: x and codes 16-byte aligned, cols a multiple of 16, so
/// that every row of every thread is): 128-bit loads and one 128-bit store per row; otherwise
/// scalar loads and byte stores. Nothing is written after a non-finite input, so every element
/// converted here is finite.
inline constexpr unsigned code_cols = 16;

/// int8::encode(x, enc) for a finite x, with enc.inv = inv (0 for a zero row): a product of finite
/// values is never NaN, so codecs::int8_absmax::encode's NaN case drops out; the clamp to ±127 and
/// one round-to-nearest-even conversion (`cvt.rni.s32.f32`) in place of the host's two magic-number
/// additions, which round every |y| <= 127 the same way.
__device__ __forceinline__ int encode_finite(float x, float inv) {
  return __float2int_rn(fminf(fmaxf(__fmul_rn(x, inv), -127.0f), 127.0f));
}
inline constexpr unsigned code_tile = code_cols * threads_per_block;

template <class T, bool Vec>
__global__ void int8_row_codes_kernel(const T* x, std::int64_t rows, std::int64_t cols, const row_encoding* enc,
                                      const unsigned* col_flags, const unsigned long long* first_bad,
                                      std::int64_t grid_rows, std::int8_t* codes, float* row_stats) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  constexpr unsigned per16 = 16 / sizeof(T);
  if (*first_bad != detail::no_bad_index) return;
  const unsigned w = static_cast<unsigned>(cols);
  const unsigned tiles = (w + code_tile - 1u) / code_tile;
  const unsigned c0 = blockIdx.x % tiles * code_tile + threadIdx.x * code_cols;
  if (c0 >= w) return;
  const unsigned count = w - c0 < code_cols ? w - c0 : code_cols;
  unsigned keep[4];  // byte k of keep[k / 4]: 0xFF, or 0 for an outlier column
  LOWBIT_UNROLL
  for (int j = 0; j < 4; ++j) {
    keep[j] = 0xFFFFFFFFu;
    if (col_flags != nullptr) {
      LOWBIT_UNROLL
      for (int b = 0; b < 4; ++b) {
        const unsigned k = 4u * j + b;
        if (k < count && col_flags[c0 + k] != 0u) keep[j] &= ~(0xFFu << (8 * b));
      }
    }
  }
  std::int64_t m = blockIdx.x / tiles;
  const std::int64_t step = grid_rows * cols;
  const T* xr = x + m * cols + c0;
  std::int8_t* cr = codes + m * cols + c0;
  LOWBIT_INT8_ROW_LOOP
  for (; m < rows; m += grid_rows, xr += step, cr += step) {
    const row_encoding e = enc[m];
    float v[code_cols];
    if constexpr (Vec) {
      LOWBIT_UNROLL
      for (unsigned k = 0; k < code_cols; k += per16) {
        const uint4 raw = detail::load_vector<uint4>(xr + k);
        const unsigned wd[4] = {raw.x, raw.y, raw.z, raw.w};
        LOWBIT_UNROLL
        for (int j = 0; j < 4; ++j) {
          if constexpr (sizeof(T) == 4) {
            v[k + j] = __uint_as_float(wd[j]);
          } else {
            v[k + 2 * j] = value_of(T{static_cast<std::uint16_t>(wd[j] & 0xFFFFu)});
            v[k + 2 * j + 1] = value_of(T{static_cast<std::uint16_t>(wd[j] >> 16)});
          }
        }
      }
    } else {
      LOWBIT_UNROLL
      for (unsigned k = 0; k < code_cols; ++k) v[k] = k < count ? value_of(xr[k]) : 0.0f;
    }
    unsigned q[4];
    LOWBIT_UNROLL
    for (int j = 0; j < 4; ++j) {
      unsigned word = 0;
      LOWBIT_UNROLL
      for (int b = 0; b < 4; ++b)
        word |= (static_cast<unsigned>(encode_finite(v[4 * j + b], e.inv)) & 0xFFu) << (8 * b);
      q[j] = word & keep[j];
    }
    if constexpr (Vec) {
      detail::store_vector(cr, uint4{q[0], q[1], q[2], q[3]});
    } else {
      LOWBIT_UNROLL
      for (unsigned k = 0; k < code_cols; ++k) {
        if (k < count) cr[k] = static_cast<std::int8_t>(q[k / 4] >> (8 * (k % 4)));
      }
    }
    if (c0 == 0) row_stats[m] = e.scale;
  }
}

/// Step 4 fallback: C[m, n] = Σ_k A[m, k] B[n, k] exactly in int32 (the sum of at most
/// max_inner_dim products of int8 values cannot overflow; integer sums do not depend on order).
/// CTA t computes the gemm_tile x gemm_tile tile (t / tiles_n, t % tiles_n) of C; thread
/// (ty, tx) = (tid / 16, tid % 16) its 4 x 4 outputs (ty + 16 i, tx + 16 j), in registers. Per step
/// of gemm_tile_k = 64 along K, each thread copies 16 bytes of A's tile rows and 16 of B's into
/// shared memory (zeros past M, N or K), then, per 4 bytes of K, reads one 32-bit word of each of
/// its 4 rows of A and 4 rows of B and issues 16 `dp4a` (4 int8 products and an int32 add each).
/// `Vec` (the launcher's choice: A and B 16-byte aligned, lda, ldb and K multiples of 16): each
/// copy is one 128-bit load; otherwise 16 byte loads. Indices along K are 32-bit (K < 2^17).
inline constexpr int gemm_tile = 64;      ///< fallback GEMM: 64 x 64 outputs per CTA
inline constexpr unsigned gemm_tile_k = 64;    ///< K bytes per shared-memory step
inline constexpr unsigned gemm_row_words = 17; ///< 32-bit words per shared row: 16 of data, 1 of padding

/// CTAs per SM the fallback GEMM is compiled for: 40 registers, 75% occupancy where an SM holds 64
/// warps (sm_80/90/100); 48 registers, 83% where it holds 48 (sm_86/87/89/120), within which
/// the byte-copy variant does not spill; sm_75 holds 32 warps (a count above 4 is out of range,
/// which ptxas reports and -Werror=all-warnings makes an error), and at 4 CTAs (64 registers) the
/// byte-copy variant spills, so 3 (85 registers, 75%).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#  define LOWBIT_INT8_GEMM_CTAS 3
#elif defined(__CUDA_ARCH__) && (__CUDA_ARCH__ == 860 || __CUDA_ARCH__ == 870 || __CUDA_ARCH__ == 890 || __CUDA_ARCH__ >= 1200)
#  define LOWBIT_INT8_GEMM_CTAS 5
#else
#  define LOWBIT_INT8_GEMM_CTAS 6
#endif

template <bool Vec>
__global__ void __launch_bounds__(threads_per_block, LOWBIT_INT8_GEMM_CTAS) int8_gemm_fallback_kernel(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb,
                                          std::int32_t* C, std::int64_t ldc, std::int64_t M, std::int64_t N,
                                          std::int64_t K, std::int64_t tiles_n) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  LOWBIT_SHARED(unsigned[gemm_tile * gemm_row_words], as);
  LOWBIT_SHARED(unsigned[gemm_tile * gemm_row_words], bs);
  const unsigned tid = threadIdx.x, tx = tid % 16u, ty = tid / 16u;
  const unsigned tn = static_cast<unsigned>(tiles_n);
  const std::int64_t m0 = static_cast<std::int64_t>(blockIdx.x / tn) * gemm_tile;
  const std::int64_t n0 = static_cast<std::int64_t>(blockIdx.x % tn) * gemm_tile;
  const unsigned k_len = static_cast<unsigned>(K);
  // the copy: row lr of both tiles, bytes [lc, lc + 16) of the step
  const unsigned lr = tid / 4u, lc = tid % 4u * 16u;
  const bool a_row = m0 + lr < M, b_row = n0 + lr < N;
  const std::int8_t* ar = A + (a_row ? (m0 + lr) * lda : 0) + lc;
  const std::int8_t* br = B + (b_row ? (n0 + lr) * ldb : 0) + lc;
  unsigned* const a_dst = as + lr * gemm_row_words + lc / 4u;
  unsigned* const b_dst = bs + lr * gemm_row_words + lc / 4u;
  std::int32_t acc[4][4];
  LOWBIT_UNROLL
  for (int i = 0; i < 4; ++i) {
    LOWBIT_UNROLL
    for (int j = 0; j < 4; ++j) acc[i][j] = 0;
  }
  for (unsigned k0 = 0; k0 < k_len; k0 += gemm_tile_k) {
    if constexpr (Vec) {
      const bool in_k = k0 + lc < k_len;  // K % 16 == 0: all 16 bytes, or none
      uint4 va{0u, 0u, 0u, 0u}, vb{0u, 0u, 0u, 0u};
      if (a_row && in_k) va = detail::load_vector<uint4>(ar + k0);
      if (b_row && in_k) vb = detail::load_vector<uint4>(br + k0);
      a_dst[0] = va.x, a_dst[1] = va.y, a_dst[2] = va.z, a_dst[3] = va.w;
      b_dst[0] = vb.x, b_dst[1] = vb.y, b_dst[2] = vb.z, b_dst[3] = vb.w;
    } else {
      auto* a8 = reinterpret_cast<std::int8_t*>(a_dst);
      auto* b8 = reinterpret_cast<std::int8_t*>(b_dst);
      LOWBIT_UNROLL
      for (unsigned b = 0; b < 16u; ++b) {
        const bool in_k = k0 + lc + b < k_len;
        a8[b] = a_row && in_k ? ar[k0 + b] : std::int8_t{0};
        b8[b] = b_row && in_k ? br[k0 + b] : std::int8_t{0};
      }
    }
    __syncthreads();
    // per 4 bytes of K: one word of each of the thread's 4 rows of A and of B, 16 dp4a (32-bit
    // fragments keep the kernel within 40 registers; see docs/cuda-kernel-budgets.md)
    LOWBIT_UNROLL
    for (unsigned kw = 0; kw < gemm_tile_k / 4; ++kw) {
      int a[4], b[4];
      LOWBIT_UNROLL
      for (unsigned i = 0; i < 4; ++i) {
        a[i] = static_cast<int>(as[(ty + 16u * i) * gemm_row_words + kw]);
        b[i] = static_cast<int>(bs[(tx + 16u * i) * gemm_row_words + kw]);
      }
      LOWBIT_UNROLL
      for (int i = 0; i < 4; ++i) {
        LOWBIT_UNROLL
        for (int j = 0; j < 4; ++j) acc[i][j] = __dp4a(a[i], b[j], acc[i][j]);
      }
    }
    __syncthreads();
  }
  LOWBIT_UNROLL
  for (int i = 0; i < 4; ++i) {
    const std::int64_t m = m0 + ty + 16 * i;
    if (m >= M) break;
    std::int32_t* cr = C + m * ldc + n0 + tx;
    LOWBIT_UNROLL
    for (int j = 0; j < 4; ++j) {
      if (n0 + tx + 16 * j < N) cr[16 * j] = acc[i][j];
    }
  }
}

/// Row-major [rows, width] elementwise kernels (gathers, epilogue) without a division per element:
/// the grid is `tiles` column tiles of row_tile columns times `grid_rows` rows of CTAs; CTA b takes
/// tile b % tiles of rows b / tiles, b / tiles + grid_rows, ... Thread t of the CTA owns the
/// row_cols columns t, t + 256, t + 512, t + 768 of its tile (so a warp's accesses to a row are
/// contiguous), and everything that depends only on the column (gather sources, column scales,
/// bias) is loaded once into registers before the loop over rows. Column indices are 32-bit (the
/// launchers bound the width by check_row_width); per row, one 64-bit pointer step per array.
inline constexpr int row_cols = 4;
inline constexpr unsigned row_tile = row_cols * threads_per_block;
/// CTAs a row kernel launches at most (with enough rows): about one wave of 8 CTAs on 132 SMs, so
/// that each CTA reuses its column registers over several rows.
inline constexpr std::int64_t row_kernel_ctas = 1024;

/// This CTA's first row, its thread's first column and the end of its tile.
struct row_span {
  std::int64_t row;
  unsigned begin, end;
};

__device__ __forceinline__ row_span cta_row_span(std::int64_t width) {
  const unsigned w = static_cast<unsigned>(width);
  const unsigned tiles = (w + row_tile - 1u) / row_tile;
  const unsigned t = blockIdx.x % tiles;
  const unsigned end = w - t * row_tile < row_tile ? w : t * row_tile + row_tile;
  return {static_cast<std::int64_t>(blockIdx.x / tiles), t * row_tile + threadIdx.x, end};
}

/// CTAs and rows of CTAs for a [rows, width] row kernel (width < 2^31 - row_tile, checked by
/// check_row_width): about row_kernel_ctas CTAs, at least one per column tile; CTAs loop over rows.
struct row_grid {
  std::int64_t ctas, grid_rows;
};
inline row_grid plan_rows(std::int64_t rows, std::int64_t width) {
  const std::int64_t tiles = (width + row_tile - 1) / row_tile;
  std::int64_t grid_rows = row_kernel_ctas / tiles;
  grid_rows = grid_rows < 1 ? 1 : (grid_rows > rows ? rows : grid_rows);
  return {tiles * grid_rows, grid_rows};
}

inline status check_row_width(const char* what, const char* name, std::int64_t width) {
  if (width > (std::int64_t{1} << 31) - static_cast<std::int64_t>(row_tile))
    return status::error(errc::invalid_argument, "%s: %s=%lld exceeds the int8 kernels' column range (2^31 - %u)", what,
                         name, static_cast<long long>(width), row_tile);
  return {};
}

/// Step 5a: xo[m, j] = x[m, cols[j]] (X's dtype); a null `cols` is every column (count = K).
template <class T>
__global__ void int8_gather_columns_kernel(const T* x, std::int64_t M, std::int64_t K, const std::int32_t* cols,
                                           std::int64_t count, std::int64_t grid_rows, T* xo) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  const row_span s = cta_row_span(count);
  unsigned src[row_cols];
  LOWBIT_UNROLL
  for (int c = 0; c < row_cols; ++c) {
    const unsigned j = s.begin + c * threads_per_block;
    src[c] = j < s.end && cols != nullptr ? static_cast<unsigned>(cols[j]) : j;
  }
  const T* xr = x + s.row * K;
  T* out = xo + s.row * count + s.begin;
  LOWBIT_INT8_ROW_LOOP
  for (std::int64_t m = s.row; m < M; m += grid_rows, xr += grid_rows * K, out += grid_rows * count) {
    LOWBIT_UNROLL
    for (int c = 0; c < row_cols; ++c) {
      if (s.begin + c * threads_per_block < s.end) out[c * threads_per_block] = xr[src[c]];
    }
  }
}

/// Step 5b: wo[n, j] = to_T(dequant_weight(CB[n, cols[j]], SCB[n])); a null `cols` is every column.
template <class T>
__global__ void int8_gather_weights_kernel(const std::int8_t* cb, const float* scb, std::int64_t N, std::int64_t K,
                                           const std::int32_t* cols, std::int64_t count, std::int64_t grid_rows, T* wo) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  const row_span s = cta_row_span(count);
  unsigned src[row_cols];
  LOWBIT_UNROLL
  for (int c = 0; c < row_cols; ++c) {
    const unsigned j = s.begin + c * threads_per_block;
    src[c] = j < s.end && cols != nullptr ? static_cast<unsigned>(cols[j]) : j;
  }
  const std::int8_t* cr = cb + s.row * K;
  T* out = wo + s.row * count + s.begin;
  LOWBIT_INT8_ROW_LOOP
  for (std::int64_t n = s.row; n < N; n += grid_rows, cr += grid_rows * K, out += grid_rows * count) {
    const float scale = scb[n];
    LOWBIT_UNROLL
    for (int c = 0; c < row_cols; ++c) {
      if (s.begin + c * threads_per_block < s.end)
        out[c * threads_per_block] = detail::round_to<T>(int8::dequant_weight(cr[src[c]], scale));
    }
  }
}

/// Step 5 fallback: out[m, n] = Σ_j xo[m, j] · wo[n, j] in float32, j increasing (the host's order).
template <class T>
__global__ void int8_outlier_sums_kernel(const T* xo, const T* wo, std::int64_t M, std::int64_t N, std::int64_t count,
                                         float* out) {
  const std::int64_t i = global_thread();
  if (i >= M * N) return;
  const std::int64_t m = i / N, n = i % N;
  float acc = 0.0f;
  for (std::int64_t j = 0; j < count; ++j) acc = int8::outlier_step(acc, value_of(xo[m * count + j]), value_of(wo[n * count + j]));
  out[i] = acc;
}

/// Step 6: out[m, n] = to_T(epilogue(C, row_stats[m], col_stats[n], bias[n], outlier[m, n])); rows
/// and columns as the gathers (cta_row_span), col_stats and bias in registers. `Outlier`: whether
/// `outlier` is given (a template argument, so that the loop over rows has no branch on it).
template <class T, bool Outlier>
__global__ void int8_epilogue_kernel(const std::int32_t* C, std::int64_t M, std::int64_t N, const float* row_stats,
                                     const float* col_stats, const float* outlier, const T* bias, std::int64_t grid_rows,
                                     T* out) {
  LOWBIT_ASSUME_BLOCK(threads_per_block);
  const row_span s = cta_row_span(N);
  float col[row_cols], b[row_cols];
  LOWBIT_UNROLL
  for (int c = 0; c < row_cols; ++c) {
    const unsigned n = s.begin + c * threads_per_block;
    col[c] = n < s.end ? col_stats[n] : 0.0f;
    b[c] = n < s.end && bias != nullptr ? to_float(bias[n]) : 0.0f;
  }
  const std::int64_t step = grid_rows * N;
  const std::int64_t first = s.row * N + s.begin;
  const std::int32_t* cr = C + first;
  const float* orow = Outlier ? outlier + first : nullptr;
  T* yr = out + first;
  LOWBIT_INT8_ROW_LOOP
  for (std::int64_t m = s.row; m < M; m += grid_rows, cr += step, yr += step) {
    const float rs = row_stats[m];
    LOWBIT_UNROLL
    for (int c = 0; c < row_cols; ++c) {
      if (s.begin + c * threads_per_block < s.end) {
        const int o = c * threads_per_block;
        float y;
        if constexpr (Outlier) {
          y = int8::epilogue(cr[o], rs, col[c], b[c], orow[o]);
        } else {
          y = int8::epilogue(cr[o], rs, col[c], b[c]);
        }
        yr[o] = detail::round_to<T>(y);
      }
    }
    if constexpr (Outlier) orow += step;
  }
}

using int8::detail::check_dims;
using int8::detail::check_threshold;

/// Byte offsets of the quantization workspace: first_bad (8), count (4), the rows' encodings
/// (row_encoding, 8 bytes per row), column flags.
struct quant_plan {
  std::size_t bad = 0, count = 8, enc = 16, flags = 0, total = 0;
};
inline quant_plan plan_quant(std::int64_t rows, std::int64_t cols) {
  quant_plan p;
  p.flags = detail::align16(p.enc + sizeof(row_encoding) * static_cast<std::size_t>(rows));
  p.total = detail::align16(p.flags + 4 * static_cast<std::size_t>(cols));
  return p;
}

template <class T>
status quant_typed(const T* x, std::int64_t rows, std::int64_t cols, float threshold, std::int8_t* codes, float* row_stats,
                   std::int32_t* outlier_cols, unsigned char* ws, cudaStream_t stream) {
  const quant_plan p = plan_quant(rows, cols);
  auto* bad = reinterpret_cast<unsigned long long*>(ws + p.bad);
  auto* count = reinterpret_cast<int*>(ws + p.count);
  auto* enc = reinterpret_cast<row_encoding*>(ws + p.enc);
  auto* flags = reinterpret_cast<unsigned*>(ws + p.flags);
  const bool split = threshold > 0.0f;
  LOWBIT_TRY(detail::memset_async(bad, 0xFF, 8, stream));
  LOWBIT_TRY(detail::memset_async(count, 0, 4, stream));
  LOWBIT_TRY(detail::memset_async(flags, 0, 4 * static_cast<std::size_t>(cols), stream));
  LOWBIT_TRY(detail::launch("int8 quantize (row statistics)", int8_row_absmax_kernel<T>, rows, threads_per_block, 0, stream,
                            x, cols, outlier_bits<T>(threshold), enc, flags, bad));
  if (split)
    LOWBIT_TRY(detail::launch("int8 quantize (outlier columns)", int8_outlier_list_kernel, 1, threads_per_block, 0, stream,
                              static_cast<const unsigned*>(flags), cols, outlier_cols, count));
  // the codes kernel's grid: column tiles of code_tile columns times rows of CTAs (as plan_rows)
  const std::int64_t tiles = (cols + code_tile - 1) / code_tile;
  std::int64_t grid_rows = row_kernel_ctas / tiles;
  grid_rows = grid_rows < 1 ? 1 : (grid_rows > rows ? rows : grid_rows);
  auto aligned16 = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  const bool vec = aligned16(x) && aligned16(codes) && cols % code_cols == 0;
  auto codes_kernel = vec ? int8_row_codes_kernel<T, true> : int8_row_codes_kernel<T, false>;
  return detail::launch("int8 quantize (codes)", codes_kernel, tiles * grid_rows, threads_per_block, 0, stream, x, rows, cols,
                        static_cast<const row_encoding*>(enc), static_cast<const unsigned*>(split ? flags : nullptr),
                        static_cast<const unsigned long long*>(bad), grid_rows, codes, row_stats);
}

}  // namespace int8_detail

/// Bytes of device workspace `int8_vectorwise_quant` needs (16-byte aligned).
inline std::size_t int8_quant_workspace_size(std::int64_t rows, std::int64_t cols) noexcept {
  return int8_detail::plan_quant(rows < 1 ? 1 : rows, cols < 1 ? 1 : cols).total;
}

/// Vector-wise int8 quantization on the device, exactly as lowbit::int8_vectorwise_quant: codes
/// [rows, cols], row_stats [rows], and (threshold > 0) the sorted outlier columns at outlier_cols
/// (capacity cols). Asynchronous on `stream`; `int8_quant_status` then reports the outlier count
/// and non-finite input (after which nothing was written). Errors: rows/cols < 1, null pointers,
/// a negative/NaN/infinite threshold, a bad dtype, a workspace too small or misaligned.
inline status int8_vectorwise_quant(const void* x, dtype dt, std::int64_t rows, std::int64_t cols, float threshold,
                                    std::int8_t* codes, float* row_stats, std::int32_t* outlier_cols, void* workspace,
                                    std::size_t workspace_bytes, cudaStream_t stream = nullptr) {
  constexpr const char* what = "cuda::int8_vectorwise_quant";
  LOWBIT_TRY(int8_detail::check_dims(what, "rows", rows, "cols", cols));
  LOWBIT_TRY(int8_detail::check_threshold(what, threshold));
  LOWBIT_TRY(detail::check_dtype(dt, what));
  if (rows > 0x7FFFFFFF || cols > 0x7FFFFFFF)
    return status::error(errc::invalid_argument, "%s: rows and cols must be below 2^31", what);
  LOWBIT_TRY(detail::check_not_null(x, what, "x"));
  LOWBIT_TRY(detail::check_not_null(codes, what, "codes"));
  LOWBIT_TRY(detail::check_not_null(row_stats, what, "row_stats"));
  if (threshold > 0.0f) LOWBIT_TRY(detail::check_not_null(outlier_cols, what, "outlier_cols"));
  LOWBIT_TRY(detail::check_workspace(workspace, workspace_bytes, int8_quant_workspace_size(rows, cols), what));
  LOWBIT_TRY(detail::check_aligned(x, static_cast<std::size_t>(dtype_size(dt)), what, "x"));
  LOWBIT_TRY(detail::check_aligned(row_stats, 4, what, "row_stats"));
  LOWBIT_TRY(detail::check_aligned(outlier_cols, 4, what, "outlier_cols"));
  return visit_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    return int8_detail::quant_typed(static_cast<const T*>(x), rows, cols, threshold, codes, row_stats, outlier_cols,
                                    static_cast<unsigned char*>(workspace), stream);
  });
}

/// After `int8_vectorwise_quant` on `stream`: waits for it; the outlier column count goes to
/// `*outlier_count`; errc::non_finite names the first bad [row, col] (nothing was written).
inline status int8_quant_status(const void* workspace, std::int64_t cols, std::int64_t* outlier_count,
                                cudaStream_t stream = nullptr) {
  LOWBIT_TRY(detail::check_not_null(workspace, "cuda::int8_quant_status", "workspace"));
  unsigned char head[16];
  LOWBIT_TRY(detail::copy_to_host(head, workspace, sizeof head, stream));
  unsigned long long bad;
  int count;
  std::memcpy(&bad, head, 8);
  std::memcpy(&count, head + 8, 4);
  if (outlier_count) *outlier_count = count;
  if (bad == detail::no_bad_index) return {};
  return status::error(errc::non_finite, "cuda::int8_vectorwise_quant: x[%llu, %llu] is not finite; nothing was written",
                       bad / static_cast<unsigned long long>(cols), bad % static_cast<unsigned long long>(cols));
}

/// `C = A · Bᵀ` exactly in int32 with the fallback kernel (any shape): A [M, K] (row stride lda),
/// B [N, K] (ldb), C [M, N] (ldc); device pointers, A and B of any alignment, C 4-byte aligned;
/// only C's [M, N] elements are written. With A and B 16-byte aligned and lda, ldb and K multiples
/// of 16 the kernel copies its tiles with 128-bit loads, otherwise byte by byte. Errors as
/// host::int8_gemm (each naming the argument), and errc::invalid_argument when M x N needs more
/// than 2^31 - 1 tiles of 64 x 64.
inline status int8_gemm_fallback(const std::int8_t* A, std::int64_t lda, const std::int8_t* B, std::int64_t ldb,
                                 std::int32_t* C, std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K,
                                 cudaStream_t stream = nullptr) {
  constexpr const char* what = "cuda::int8_gemm_fallback";
  LOWBIT_TRY(int8_detail::check_dims(what, "M", M, "N", N));
  if (K < 1 || K > int8::max_inner_dim)
    return status::error(errc::invalid_argument, "%s: K=%lld must be in [1, %lld] (int32 accumulation)", what,
                         static_cast<long long>(K), static_cast<long long>(int8::max_inner_dim));
  if (lda < K)
    return status::error(errc::invalid_argument, "%s: lda=%lld is below K=%lld", what, static_cast<long long>(lda),
                         static_cast<long long>(K));
  if (ldb < K)
    return status::error(errc::invalid_argument, "%s: ldb=%lld is below K=%lld", what, static_cast<long long>(ldb),
                         static_cast<long long>(K));
  if (ldc < N)
    return status::error(errc::invalid_argument, "%s: ldc=%lld is below N=%lld", what, static_cast<long long>(ldc),
                         static_cast<long long>(N));
  LOWBIT_TRY(detail::check_not_null(A, what, "A"));
  LOWBIT_TRY(detail::check_not_null(B, what, "B"));
  LOWBIT_TRY(detail::check_not_null(C, what, "C"));
  LOWBIT_TRY(detail::check_aligned(C, 4, what, "C"));
  const std::int64_t tiles_n = (N + int8_detail::gemm_tile - 1) / int8_detail::gemm_tile;
  const std::int64_t tiles_m = (M + int8_detail::gemm_tile - 1) / int8_detail::gemm_tile;
  if (tiles_m * tiles_n > 0x7FFFFFFF)
    return status::error(errc::invalid_argument, "%s: M=%lld x N=%lld needs more than 2^31 - 1 tiles of %d x %d", what,
                         static_cast<long long>(M), static_cast<long long>(N), int8_detail::gemm_tile, int8_detail::gemm_tile);
  auto aligned16 = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  const bool vec = aligned16(A) && aligned16(B) && lda % 16 == 0 && ldb % 16 == 0 && K % 16 == 0;
  return detail::launch("int8 gemm (fallback kernel)",
                        vec ? int8_detail::int8_gemm_fallback_kernel<true> : int8_detail::int8_gemm_fallback_kernel<false>,
                        tiles_m * tiles_n, detail::threads_per_block, 0, stream, A, lda, B, ldb, C, ldc, M, N, K, tiles_n);
}

/// The LLM.int8 epilogue on the device, exactly as lowbit::int8_epilogue: out [M, N] (dtype dt) from
/// C int32 [M, N], row_stats [M], col_stats [N], optional float32 outlier sums [M, N] and bias [N]
/// (dtype dt). Errors: M/N < 1, null required pointers, bad dtype.
inline status int8_epilogue(const std::int32_t* C, std::int64_t M, std::int64_t N, const float* row_stats,
                            const float* col_stats, const float* outlier, const void* bias, dtype dt, void* out,
                            cudaStream_t stream = nullptr) {
  constexpr const char* what = "cuda::int8_epilogue";
  LOWBIT_TRY(int8_detail::check_dims(what, "M", M, "N", N));
  LOWBIT_TRY(detail::check_dtype(dt, what));
  LOWBIT_TRY(detail::check_not_null(C, what, "C"));
  LOWBIT_TRY(detail::check_not_null(row_stats, what, "row_stats"));
  LOWBIT_TRY(detail::check_not_null(col_stats, what, "col_stats"));
  LOWBIT_TRY(detail::check_not_null(out, what, "out"));
  LOWBIT_TRY(int8_detail::check_row_width(what, "N", N));
  const int8_detail::row_grid g = int8_detail::plan_rows(M, N);
  return visit_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    return outlier != nullptr
               ? detail::launch("int8 epilogue", int8_detail::int8_epilogue_kernel<T, true>, g.ctas, detail::threads_per_block,
                                0, stream, C, M, N, row_stats, col_stats, outlier, static_cast<const T*>(bias), g.grid_rows,
                                static_cast<T*>(out))
               : detail::launch("int8 epilogue", int8_detail::int8_epilogue_kernel<T, false>, g.ctas,
                                detail::threads_per_block, 0, stream, C, M, N, row_stats, col_stats, outlier,
                                static_cast<const T*>(bias), g.grid_rows, static_cast<T*>(out));
  });
}

namespace int8_detail {
inline status from_cublas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return status::error(errc::cuda, "%s: cuBLAS status %d (%s)", what, static_cast<int>(s), cublasGetStatusString(s));
}
/// The largest power of two, at most 256, that divides the address of `p` (a cuBLASLt alignment).
inline std::uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t r = 1;
  while (r < 256 && (a & (2 * r - 1)) == 0) r *= 2;
  return r;
}
/// Destroys the cuBLASLt descriptors of one call, whatever path returns.
struct lt_descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  ~lt_descriptors() {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};
}  // namespace int8_detail

/// `C = A · Bᵀ` in int32 through cuBLASLt (`CUBLAS_COMPUTE_32I`, int8 inputs, int32 output, the
/// "TN" form bitsandbytes uses: C (column-major N x M) = Bᵀ-op(B as K x N) · (A as K x M)), dense
/// row-major A [M, K], B [N, K], C [M, N]. `workspace` (may be null with 0 bytes) is cuBLASLt's and
/// must be 256-byte aligned (cuBLASLt's rule; cudaMalloc's alignment), else errc::misaligned.
/// Shapes cuBLASLt's int8 kernels do not take (K or N not a multiple of 4, pointers not 16-byte
/// aligned, no algorithm found, CUBLAS_STATUS_NOT_SUPPORTED) are not errors: `*used_cublaslt` is
/// then false and nothing was launched; callers run int8_gemm_fallback instead. The heuristic is
/// told the pointers' actual alignments (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES; its default of
/// 256 bytes would let it pick an algorithm that needs more than these pointers have).
inline status int8_gemm_cublaslt(cublasLtHandle_t handle, const std::int8_t* A, const std::int8_t* B, std::int32_t* C,
                                 std::int64_t M, std::int64_t N, std::int64_t K, void* workspace,
                                 std::size_t workspace_bytes, cudaStream_t stream, bool* used_cublaslt) {
  constexpr const char* what = "cuda::int8_gemm_cublaslt";
  LOWBIT_TRY(detail::check_not_null(used_cublaslt, what, "used_cublaslt"));
  *used_cublaslt = false;
  LOWBIT_TRY(detail::check_not_null(handle, what, "handle"));
  LOWBIT_TRY(int8_detail::check_dims(what, "M", M, "N", N));
  if (K < 1 || K > int8::max_inner_dim) return status::error(errc::invalid_argument, "%s: K=%lld out of range", what, static_cast<long long>(K));
  LOWBIT_TRY(detail::check_not_null(A, what, "A"));
  LOWBIT_TRY(detail::check_not_null(B, what, "B"));
  LOWBIT_TRY(detail::check_not_null(C, what, "C"));
  LOWBIT_TRY(detail::check_aligned(workspace, 256, what, "workspace"));
  auto aligned16 = [](const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; };
  if (K % 4 != 0 || N % 4 != 0 || !aligned16(A) || !aligned16(B) || !aligned16(C)) return {};
  int8_detail::lt_descriptors d;
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32I, CUDA_R_32I), what));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), what));
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), what));
  const auto uk = static_cast<std::uint64_t>(K), un = static_cast<std::uint64_t>(N), um = static_cast<std::uint64_t>(M);
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatrixLayoutCreate(&d.a, CUDA_R_8I, uk, un, K), what));
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatrixLayoutCreate(&d.b, CUDA_R_8I, uk, um, K), what));
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatrixLayoutCreate(&d.c, CUDA_R_32I, un, um, N), what));
  LOWBIT_TRY(int8_detail::from_cublas(cublasLtMatmulPreferenceCreate(&d.pref), what));
  const std::uint64_t ws = workspace ? workspace_bytes : 0;
  LOWBIT_TRY(int8_detail::from_cublas(
      cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), what));
  // cuBLASLt's A is our B, its B our A, its C and D our C.
  const std::uint32_t align_a = int8_detail::alignment_of(B), align_b = int8_detail::alignment_of(A),
                      align_c = int8_detail::alignment_of(C);
  LOWBIT_TRY(int8_detail::from_cublas(
      cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a), what));
  LOWBIT_TRY(int8_detail::from_cublas(
      cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b), what));
  LOWBIT_TRY(int8_detail::from_cublas(
      cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof align_c), what));
  LOWBIT_TRY(int8_detail::from_cublas(
      cublasLtMatmulPreferenceSetAttribute(d.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof align_c), what));
  cublasLtMatmulHeuristicResult_t heur{};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(handle, d.op, d.a, d.b, d.c, d.c, d.pref, 1, &heur, &found);
  if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && found == 0)) return {};
  LOWBIT_TRY(int8_detail::from_cublas(hs, what));
  const std::int32_t alpha = 1, beta = 0;
  const cublasStatus_t ms = cublasLtMatmul(handle, d.op, &alpha, B, d.a, A, d.b, &beta, C, d.c, C, d.c, &heur.algo,
                                           workspace, workspace ? workspace_bytes : 0, stream);
  if (ms == CUBLAS_STATUS_NOT_SUPPORTED) return {};
  LOWBIT_TRY(int8_detail::from_cublas(ms, what));
  *used_cublaslt = true;
  return {};
}

/// Float32 outlier sums `out [M, N] = xo [M, count] · wo [N, count]ᵀ` through cuBLAS
/// (`cublasGemmEx`, inputs of dtype dt, float32 accumulation (CUBLAS_COMPUTE_32F) and output),
/// on the handle's stream as set by the caller. cuBLAS's summation order is its own: results equal
/// the host's to float32 rounding, not bit for bit.
inline status int8_outlier_gemm_cublas(cublasHandle_t handle, const void* xo, const void* wo, dtype dt, std::int64_t M,
                                       std::int64_t N, std::int64_t count, float* out) {
  constexpr const char* what = "cuda::int8_outlier_gemm_cublas";
  LOWBIT_TRY(detail::check_not_null(handle, what, "handle"));
  if (M < 1 || N < 1 || count < 1 || M > 0x7FFFFFFF || N > 0x7FFFFFFF || count > 0x7FFFFFFF)
    return status::error(errc::invalid_argument, "%s: M, N and count must be in [1, 2^31)", what);
  if (!xo || !wo || !out) return status::error(errc::invalid_argument, "%s: an operand is null", what);
  const cudaDataType_t t = dt == dtype::f32 ? CUDA_R_32F : (dt == dtype::f16 ? CUDA_R_16F : CUDA_R_16BF);
  const float alpha = 1.0f, beta = 0.0f;
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(count);
  return int8_detail::from_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, wo, t, k, xo, t, k, &beta,
                                               out, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                                  what);
}

/// The libraries `int8_matmul` may use, created and owned by the caller. Null handles select the
/// fallback kernels. In the SIMT build the handles come from the cuBLAS(Lt) stand-in.
struct int8_handles {
  cublasLtHandle_t lt = nullptr;       ///< int8 GEMM; null: int8_gemm_fallback_kernel
  cublasHandle_t blas = nullptr;       ///< outlier GEMM; null: int8_outlier_sums_kernel. Its stream is set to `stream`.
  void* lt_workspace = nullptr;        ///< cuBLASLt workspace (device memory, 256-byte aligned as cudaMalloc's), may be null
  std::size_t lt_workspace_bytes = 0;
};

/// Device int8 weights: bitsandbytes' CB (int8 [N, K], row-major) and SCB (float32 [N]), e.g. a
/// host quant_tensor's codes() and scales() copied to the device.
struct int8_weights {
  const std::int8_t* cb = nullptr;
  const float* scb = nullptr;
  std::int64_t n = 0, k = 0;
};

/// The CB/SCB view of a device int8 weight tensor (quantize_int8_weights on the host, then
/// cuda::to_device, or a checkpoint's weight moved to the device). Errors name what is wrong:
/// host storage, a format other than int8_absmax, a shape that is not [N, K] with one scale per
/// row, double quantization.
inline status int8_weights_of(const quant_tensor& w, int8_weights& out) {
  constexpr const char* what = "cuda::int8_weights_of";
  if (w.location() != memory_space::device)
    return status::error(errc::invalid_argument, "%s: w lives in host memory; copy it with cuda::to_device first", what);
  if (w.fmt() != format::int8_absmax)
    return status::error(errc::invalid_argument, "%s: w has format %s, LLM.int8 needs int8_absmax", what, info(w.fmt()).name);
  if (w.shape().size() != 2 || w.shape()[0] < 1 || w.shape()[1] < 1 || w.block_size() != w.shape()[1] || w.double_quantized())
    return status::error(errc::invalid_argument, "%s: w must be [N, K] with one scale per row and no double quantization", what);
  out.cb = reinterpret_cast<const std::int8_t*>(w.codes());
  out.scb = w.scales();
  out.n = w.shape()[0];
  out.k = w.shape()[1];
  return {};
}

namespace int8_detail {
/// Byte offsets of int8_matmul's workspace.
struct matmul_plan {
  std::size_t quant = 0, stats = 0, cols = 0, codes = 0, acc = 0, outlier = 0, xo = 0, wo = 0, total = 0;
};
inline matmul_plan plan_matmul(std::int64_t M, std::int64_t K, std::int64_t N, dtype dt) {
  matmul_plan p;
  const auto m = static_cast<std::size_t>(M), k = static_cast<std::size_t>(K), n = static_cast<std::size_t>(N);
  const auto e = static_cast<std::size_t>(dtype_size(dt));
  p.stats = plan_quant(M, K).total;
  p.cols = detail::align16(p.stats + 4 * m);
  p.codes = detail::align16(p.cols + 4 * k);
  p.acc = detail::align16(p.codes + m * k);
  p.outlier = detail::align16(p.acc + 4 * m * n);
  p.xo = detail::align16(p.outlier + 4 * m * n);
  p.wo = detail::align16(p.xo + e * m * k);
  p.total = detail::align16(p.wo + e * n * k);
  return p;
}
}  // namespace int8_detail

/// Bytes of device workspace `int8_matmul` needs (16-byte aligned), for the worst case of every
/// column an outlier.
inline std::size_t int8_matmul_workspace_size(std::int64_t M, std::int64_t K, std::int64_t N, dtype dt) noexcept {
  return int8_detail::plan_matmul(M < 1 ? 1 : M, K < 1 ? 1 : K, N < 1 ? 1 : N, dt).total;
}

/// LLM.int8 `y = x · Wᵀ (+ bias)` on the device, the definition of lowbit::int8_matmul: x [M, K] and
/// y [M, N] of dtype dt, bias [N] (dtype dt) optional, W as `w`. With null handles every step is a
/// lowbit kernel and y equals the host's bit for bit; with cuBLASLt the int32 products are the same
/// (exact), with cuBLAS the outlier sums differ by float32 rounding. Synchronizes `stream` once
/// (after quantization). `mode` as lowbit::int8_matmul_options::mode (weight_only: x unquantized,
/// every column through step 5). Errors: as lowbit::int8_matmul, plus a workspace too small or
/// misaligned and CUDA/cuBLAS failures (errc::cuda).
inline status int8_matmul(const int8_handles& h, const void* x, dtype dt, std::int64_t M, std::int64_t K,
                          const int8_weights& w, const void* bias, void* y, float threshold, void* workspace,
                          std::size_t workspace_bytes, cudaStream_t stream = nullptr,
                          int8::matmul_mode mode = int8::matmul_mode::split) {
  constexpr const char* what = "cuda::int8_matmul";
  LOWBIT_TRY(int8_detail::check_threshold(what, threshold));
  LOWBIT_TRY(int8::detail::check_mode(what, mode));
  LOWBIT_TRY(int8_detail::check_dims(what, "M", M, "K", K));
  if (w.k != K)
    return status::error(errc::invalid_argument, "%s: K mismatch: x has K=%lld columns, w is [%lld, %lld]", what,
                         static_cast<long long>(K), static_cast<long long>(w.n), static_cast<long long>(w.k));
  LOWBIT_TRY(int8_detail::check_dims(what, "M", M, "N", w.n));
  LOWBIT_TRY(int8_detail::check_row_width(what, "K", K));
  LOWBIT_TRY(int8_detail::check_row_width(what, "N", w.n));
  LOWBIT_TRY(detail::check_not_null(w.cb, what, "w.cb"));
  LOWBIT_TRY(detail::check_not_null(w.scb, what, "w.scb"));
  LOWBIT_TRY(detail::check_not_null(y, what, "y"));
  if (K > int8::max_inner_dim) return status::error(errc::invalid_argument, "%s: K=%lld exceeds %lld, int32 accumulation could overflow", what, static_cast<long long>(K), static_cast<long long>(int8::max_inner_dim));
  LOWBIT_TRY(detail::check_dtype(dt, what));
  const std::int64_t N = w.n;
  LOWBIT_TRY(detail::check_workspace(workspace, workspace_bytes, int8_matmul_workspace_size(M, K, N, dt), what));
  const int8_detail::matmul_plan p = int8_detail::plan_matmul(M, K, N, dt);
  auto* ws = static_cast<unsigned char*>(workspace);
  auto* stats = reinterpret_cast<float*>(ws + p.stats);
  auto* cols = reinterpret_cast<std::int32_t*>(ws + p.cols);
  auto* codes = reinterpret_cast<std::int8_t*>(ws + p.codes);
  auto* acc = reinterpret_cast<std::int32_t*>(ws + p.acc);
  auto* outl = reinterpret_cast<float*>(ws + p.outlier);
  const bool weight_only = mode == int8::matmul_mode::weight_only;
  LOWBIT_TRY(int8_vectorwise_quant(x, dt, M, K, weight_only ? 0.0f : threshold, codes, stats, cols, ws + p.quant, p.stats,
                                   stream));
  std::int64_t count = 0;
  LOWBIT_TRY(int8_quant_status(ws + p.quant, K, &count, stream));
  bool done = false;
  if (h.lt && !weight_only)
    LOWBIT_TRY(int8_gemm_cublaslt(h.lt, codes, w.cb, acc, M, N, K, h.lt_workspace, h.lt_workspace_bytes, stream, &done));
  if (weight_only) {
    count = K;
    LOWBIT_TRY(detail::memset_async(acc, 0, static_cast<std::size_t>(M * N) * sizeof(std::int32_t), stream));
  } else if (!done) {
    LOWBIT_TRY(int8_gemm_fallback(codes, K, w.cb, K, acc, N, M, N, K, stream));
  }
  const std::int32_t* gather_cols = weight_only ? nullptr : cols;
  if (count > 0) {
    LOWBIT_TRY(visit_dtype(dt, [&](auto tag) -> status {
      using T = decltype(tag);
      T* xo = reinterpret_cast<T*>(ws + p.xo);
      T* wo = reinterpret_cast<T*>(ws + p.wo);
      const int8_detail::row_grid gx = int8_detail::plan_rows(M, count), gw = int8_detail::plan_rows(N, count);
      LOWBIT_TRY(detail::launch("int8 matmul (outlier columns)", int8_detail::int8_gather_columns_kernel<T>, gx.ctas,
                                detail::threads_per_block, 0, stream, static_cast<const T*>(x), M, K, gather_cols, count,
                                gx.grid_rows, xo));
      LOWBIT_TRY(detail::launch("int8 matmul (outlier weights)", int8_detail::int8_gather_weights_kernel<T>, gw.ctas,
                                detail::threads_per_block, 0, stream, w.cb, w.scb, N, K, gather_cols, count, gw.grid_rows,
                                wo));
      if (h.blas) {
        LOWBIT_TRY(int8_detail::from_cublas(cublasSetStream(h.blas, stream), what));
        return int8_outlier_gemm_cublas(h.blas, xo, wo, dt, M, N, count, outl);
      }
      return detail::launch_items("int8 matmul (outlier sums)", int8_detail::int8_outlier_sums_kernel<T>, M * N, stream,
                                  static_cast<const T*>(xo), static_cast<const T*>(wo), M, N, count, outl);
    }));
  }
  return int8_epilogue(acc, M, N, stats, w.scb, count > 0 ? outl : nullptr, bias, dt, y, stream);
}

}  // namespace cuda
LOWBIT_NAMESPACE_END
