// SPDX-License-Identifier: Apache-2.0
/// @file matmul.hpp
/// @brief LLM.int8() on the host: vector-wise int8 quantization of activations with outlier
///        columns, int8 row-wise weights as a `QuantTensor` in bitsandbytes' CB/SCB layout, the
///        epilogue, and the full outlier-split matmul `Y = X · Wᵀ (+ bias)`.
///
/// The definition (which values, which roundings) is in int8/llm_int8.hpp; the integer product is
/// host/int8_gemm.hpp. Every function here is multi-threaded over the host thread pool.
///
/// @code
///   lowbit::quant_tensor w;                                   // weights [N, K]
///   if (auto s = lowbit::quantize_int8_weights(wf.data(), lowbit::dtype::f16, N, K, w); !s) fail(s);
///   lowbit::int8_matmul_options o;                            // threshold 6.0
///   if (auto s = lowbit::int8_matmul(x.data(), lowbit::dtype::f16, M, K, w, nullptr, y.data(), o); !s) fail(s);
/// @endcode
#pragma once

#include "../config.hpp"
#include "../dtype.hpp"
#include "../host/engine.hpp"
#include "../host/int8_gemm.hpp"
#include "../host/int8_simd.hpp"
#include "../host/parallel.hpp"
#include "../memory.hpp"
#include "../quant_tensor.hpp"
#include "../status.hpp"
#include "llm_int8.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

LOWBIT_NAMESPACE_BEGIN

namespace int8 {
namespace detail {

template <class T>
status vectorwise_quant_typed(const T* x, std::int64_t rows, std::int64_t cols, float threshold, std::int8_t* codes,
                              float* row_stats, std::int32_t* outlier_cols, std::int64_t* outlier_count,
                              const host::options& opt) {
  const int threads = opt.threads;
  const bool simd = opt.simd && host::int8_avx512::available();
  const bool split = threshold > 0.0f;
  storage<float> absmax;
  LOWBIT_TRY(absmax.allocate(static_cast<std::size_t>(rows), allocator::host(), "int8_vectorwise_quant: row statistics"));
  // Pass 1: row statistics over the non-outlier elements and outlier flags per column, one flag
  // array per part of the rows (merged afterwards, so no two threads write one flag).
  const int parts = split ? static_cast<int>(std::min<std::int64_t>(host::resolve_threads(threads), rows)) : 1;
  storage<std::uint8_t> flags;
  LOWBIT_TRY(flags.allocate(split ? static_cast<std::size_t>(parts * cols) : 0, allocator::host(), "int8_vectorwise_quant: outlier flags"));
  std::atomic<std::int64_t> first_bad{std::numeric_limits<std::int64_t>::max()};
  const std::int64_t per_part = (rows + parts - 1) / parts;
  auto stats_rows = [&](std::int64_t r0, std::int64_t r1, std::uint8_t* fl) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      float am = 0.0f;
      const std::int64_t done = simd ? host::int8_avx512::row_stats(xr, cols, split, threshold, am, fl) : 0;
      for (std::int64_t k = done; k < cols; ++k) {
        if (!host::detail::is_finite_bits(xr[k])) {
          std::int64_t cur = first_bad.load();
          const std::int64_t i = r * cols + k;
          while (i < cur && !first_bad.compare_exchange_weak(cur, i)) {
          }
          break;
        }
        const float v = to_float(xr[k]);
        if (split && is_outlier(v, threshold)) {
          fl[k] = 1;
          continue;
        }
        const float a = v < 0.0f ? -v : v;
        am = a > am ? a : am;
      }
      absmax[r] = am;
    }
  };
  if (split) {
    host::parallel_for(parts, 1, 1, threads, [&](std::int64_t p0, std::int64_t p1) {
      for (std::int64_t p = p0; p < p1; ++p)
        stats_rows(p * per_part, std::min(rows, (p + 1) * per_part), flags.data() + p * cols);
    });
  } else {
    host::parallel_for(rows, 16, 1, threads, [&](std::int64_t r0, std::int64_t r1) { stats_rows(r0, r1, nullptr); });
  }
  if (first_bad.load() != std::numeric_limits<std::int64_t>::max()) {
    const std::int64_t i = first_bad.load();
    const float v = to_float(x[i]);
    return status::error(errc::non_finite, "int8_vectorwise_quant: x[%lld, %lld] is %s; nothing was written",
                         static_cast<long long>(i / cols), static_cast<long long>(i % cols),
                         v != v ? "NaN" : (v > 0 ? "+Inf" : "-Inf"));
  }
  std::int64_t count = 0;
  if (split) {
    for (std::int64_t k = 0; k < cols; ++k) {
      std::uint8_t any = 0;
      for (int p = 0; p < parts; ++p) any |= flags[p * cols + k];
      flags[k] = any;
      if (any) outlier_cols[count++] = static_cast<std::int32_t>(k);
    }
  }
  if (outlier_count) *outlier_count = count;
  // Pass 2: codes; outlier columns get 0.
  host::parallel_for(rows, 16, 1, threads, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const quant::block_encoder enc = row_encoder(absmax[r]);
      row_stats[r] = enc.scale;
      const T* xr = x + r * cols;
      std::int8_t* cr = codes + r * cols;
      std::int64_t k = 0;
      if (enc.zero) {
        std::memset(cr, 0, static_cast<std::size_t>(cols));
        continue;
      }
      if (simd) k = host::int8_avx512::encode(xr, cols, enc.inv, cr);
      for (; k < cols; ++k) cr[k] = encode(to_float(xr[k]), enc);
      for (std::int64_t j = 0; j < count; ++j) cr[outlier_cols[j]] = 0;
    }
  });
  return {};
}

/// `bias` [N] as float32 in `out` (nothing when bias is null); returns out's data or null.
template <class T>
status bias_as_float(const T* bias, std::int64_t N, storage<float>& out, const float** b) {
  *b = nullptr;
  if (!bias) return {};
  LOWBIT_TRY(out.allocate(static_cast<std::size_t>(N), allocator::host(), "int8 epilogue: bias"));
  for (std::int64_t n = 0; n < N; ++n) out[n] = to_float(bias[n]);
  *b = out.data();
  return {};
}

/// The epilogue of `len` (<= 256) outputs of one row: y[n] = to_T(epilogue(c[n], r, col[n], b[n]
/// (0 if b is null), o[n] (none if o is null))), AVX-512 when `simd`, same bits either way.
template <class T>
void epilogue_span(const std::int32_t* c, float r, const float* col, const float* b, const float* o, std::int64_t len,
                   bool simd, T* y) {
  float tmp[256];
  const std::int64_t done = simd ? host::int8_avx512::epilogue_row(c, r, col, b, o, len, tmp) : 0;
  for (std::int64_t j = 0; j < done; ++j) y[j] = from_float<T>(tmp[j]);
  for (std::int64_t n = done; n < len; ++n) {
    const float bn = b ? b[n] : 0.0f;
    y[n] = from_float<T>(o ? epilogue(c[n], r, col[n], bn, o[n]) : epilogue(c[n], r, col[n], bn));
  }
}

template <class T>
status epilogue_typed(const std::int32_t* C, std::int64_t M, std::int64_t N, const float* row_stats, const float* col_stats,
                      const float* outlier, const T* bias, T* out, const host::options& opt) {
  const bool simd = opt.simd && host::int8_avx512::available();
  storage<float> bias_f;
  const float* b = nullptr;
  LOWBIT_TRY(bias_as_float(bias, N, bias_f, &b));
  host::parallel_for(M, 4, 1, opt.threads, [&](std::int64_t m0, std::int64_t m1) {
    for (std::int64_t m = m0; m < m1; ++m)
      for (std::int64_t n0 = 0; n0 < N; n0 += 256)
        epilogue_span(C + m * N + n0, row_stats[m], col_stats + n0, b ? b + n0 : nullptr, outlier ? outlier + m * N + n0 : nullptr,
                      std::min<std::int64_t>(256, N - n0), simd, out + m * N + n0);
  });
  return {};
}

/// The epilogue with the outlier sums, in one pass over Y (the sums never go to memory):
/// y[m, n] = to_T(epilogue(C[m, n], row_stats[m], SCB[n], bias[n], O[m, n])) where
/// O[m, n] = Σ_j x[m, c_j] · to_T(dequant_weight(CB[n, c_j], SCB[n])) over the columns
/// c_j = cols[j] (every column 0..K-1 when `cols` is null, count = K), j increasing, each step
/// outlier_step. The dequantized weights are laid out in panels of 32 columns ([count, 32] each,
/// zero padded), so the sums run 4 rows x 32 columns at a time into a buffer on the stack, and
/// the epilogue of those 4 x 32 outputs follows at once; every path gives the same bits.
/// Scratch: 4 * (M + N rounded up to 32) * count bytes.
template <class T>
status outlier_epilogue(const T* x, std::int64_t M, std::int64_t K, const std::int8_t* cb, const float* scb, std::int64_t N,
                        const std::int32_t* cols, std::int64_t count, const std::int32_t* C, const float* row_stats,
                        const T* bias, T* y, int threads, bool simd) {
  constexpr std::int64_t P = host::int8_avx512::outlier_panel_width;
  constexpr std::int64_t R = 4, chunk = 8;  // rows per group, panels per task
  const std::int64_t panels = (N + P - 1) / P;
  storage<float> xo, wp, bias_f;
  const float* b = nullptr;
  LOWBIT_TRY(bias_as_float(bias, N, bias_f, &b));
  LOWBIT_TRY(xo.allocate(static_cast<std::size_t>(M * count), allocator::host(), "int8_matmul: outlier activations"));
  LOWBIT_TRY(wp.allocate(static_cast<std::size_t>(panels * P * count), allocator::host(), "int8_matmul: outlier weights"));
  auto col = [&](std::int64_t j) { return cols ? static_cast<std::int64_t>(cols[j]) : j; };
  host::parallel_for(M, 16, 1, threads, [&](std::int64_t m0, std::int64_t m1) {
    for (std::int64_t m = m0; m < m1; ++m)
      for (std::int64_t j = 0; j < count; ++j) xo[m * count + j] = to_float(x[m * K + col(j)]);
  });
  host::parallel_for(panels, 1, 1, threads, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p)
      for (std::int64_t n = p * P; n < std::min(N, (p + 1) * P); ++n) {
        float* dst = wp.data() + p * P * count + (n - p * P);
        for (std::int64_t j = 0; j < count; ++j)
          dst[j * P] = to_float(from_float<T>(dequant_weight(cb[n * K + col(j)], scb[n])));
      }
  });
  const bool vec = simd && host::int8_avx512::available();
  const std::int64_t groups = (M + R - 1) / R, chunks = (panels + chunk - 1) / chunk;
  // tasks in row-major order: consecutive tasks write consecutive parts of Y's rows
  host::parallel_for(groups * chunks, 1, 1, threads, [&](std::int64_t t0, std::int64_t t1) {
    float sums[R * P];
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t m = (t / chunks) * R, rows = std::min(R, M - m);
      const float* xr = xo.data() + m * count;
      for (std::int64_t p = (t % chunks) * chunk; p < std::min(panels, (t % chunks + 1) * chunk); ++p) {
        const float* panel = wp.data() + p * P * count;
        const std::int64_t n0 = p * P, width = std::min(P, N - n0);
        if (vec) {
          switch (rows) {
            case 4: host::int8_avx512::outlier_panel<4>(xr, count, count, panel, sums, P, width); break;
            case 3: host::int8_avx512::outlier_panel<3>(xr, count, count, panel, sums, P, width); break;
            case 2: host::int8_avx512::outlier_panel<2>(xr, count, count, panel, sums, P, width); break;
            default: host::int8_avx512::outlier_panel<1>(xr, count, count, panel, sums, P, width); break;
          }
        } else {
          for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < width; ++c) {
              float acc = 0.0f;
              for (std::int64_t j = 0; j < count; ++j) acc = outlier_step(acc, xr[r * count + j], panel[j * P + c]);
              sums[r * P + c] = acc;
            }
        }
        for (std::int64_t r = 0; r < rows; ++r)
          epilogue_span(C + (m + r) * N + n0, row_stats[m + r], scb + n0, b ? b + n0 : nullptr, sums + r * P, width, vec,
                        y + (m + r) * N + n0);
      }
    }
  });
  return {};
}

}  // namespace detail
}  // namespace int8

/// Vector-wise int8 quantization of activations (bitsandbytes `int8_vectorwise_quant`): for the
/// row-major [rows, cols] tensor `x` of dtype `dt`, writes `codes` [rows, cols], `row_stats` [rows]
/// and, if `threshold > 0`, the sorted outlier column indices to `outlier_cols` (capacity `cols`)
/// and their number to `*outlier_count` (0 when threshold is 0; `outlier_cols` may then be null).
/// Semantics (int8/llm_int8.hpp): an element is an outlier iff |x| >= threshold; `row_stats` is the
/// max |x| over each row's non-outlier elements; codes are `clamp(rne(x * (127 / row_stats)), ±127)`
/// and 0 in outlier columns; an all-zero row gets stats 0 and codes 0.
/// Errors: rows or cols < 1, null pointers, a negative, NaN or infinite threshold, an invalid dtype,
/// NaN/Inf in x (errc::non_finite naming the first bad [row, col]; nothing is written then).
/// `opt.threads` and `opt.simd` (AVX-512 kernels, same results) apply; `opt.allow_nonfinite` does not.
inline status int8_vectorwise_quant(const void* x, dtype dt, std::int64_t rows, std::int64_t cols, float threshold,
                                    std::int8_t* codes, float* row_stats, std::int32_t* outlier_cols,
                                    std::int64_t* outlier_count, const host::options& opt = {}) noexcept {
  const host::detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  constexpr const char* what = "int8_vectorwise_quant";
  LOWBIT_TRY(int8::detail::check_dims(what, "rows", rows, "cols", cols));
  LOWBIT_TRY(int8::detail::check_threshold(what, threshold));
  if (!is_valid(dt)) return status::error(errc::invalid_argument, "%s: dtype %d is not a lowbit dtype", what, static_cast<int>(dt));
  if (cols > 0x7FFFFFFF) return status::error(errc::invalid_argument, "%s: cols=%lld exceeds 2^31 - 1", what, static_cast<long long>(cols));
  if (!x) return status::error(errc::invalid_argument, "%s: x is null", what);
  if (!codes) return status::error(errc::invalid_argument, "%s: codes is null", what);
  if (!row_stats) return status::error(errc::invalid_argument, "%s: row_stats is null", what);
  if (threshold > 0.0f && !outlier_cols)
    return status::error(errc::invalid_argument, "%s: outlier_cols is null but threshold %g > 0", what, static_cast<double>(threshold));
  return visit_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    return int8::detail::vectorwise_quant_typed(static_cast<const T*>(x), rows, cols, threshold, codes, row_stats,
                                                outlier_cols, outlier_count, opt);
  });
}

/// Quantizes weights W [N, K] (dtype `dt`) row-wise into `out`: format::int8_absmax with one scale
/// per row, i.e. bitsandbytes' `CB = out.codes()` (int8 [N, K]) and `SCB = out.scales()` (float32
/// [N], the row absmax). `CB = clamp(rne(w * (127 / SCB)))`, an all-zero row has SCB 0 and codes 0.
/// bitsandbytes converts weights to float16 first; pass float16 weights for its exact bytes.
/// Errors: as `quantize` (non-finite weights name the first bad index), N or K < 1.
inline status quantize_int8_weights(const void* w, dtype dt, std::int64_t N, std::int64_t K, quant_tensor& out,
                                    const host::options& opt = {}) noexcept {
  const host::detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  LOWBIT_TRY(int8::detail::check_dims("quantize_int8_weights", "N", N, "K", K));
  quantize_params p;
  p.fmt = format::int8_absmax;
  p.gran = granularity::per_row();
  p.options = opt;
  return quantize(w, dt, {N, K}, p, out);
}

/// The LLM.int8 epilogue (bitsandbytes `int8_mm_dequant`, plus the outlier sums): for C int32
/// [M, N], `out[m, n] = to_dt(epilogue(C, row_stats[m], col_stats[n], bias[n], outlier[m, n]))`
/// with the formulas of int8/llm_int8.hpp. `outlier` (float32 [M, N]) and `bias` (dtype dt, [N])
/// may be null. IEEE semantics: Inf/NaN statistics propagate, results beyond the dtype's range
/// round to ±Inf. Errors: M or N < 1, null required pointers, invalid dtype.
inline status int8_epilogue(const std::int32_t* C, std::int64_t M, std::int64_t N, const float* row_stats,
                            const float* col_stats, const float* outlier, const void* bias, dtype dt, void* out,
                            const host::options& opt = {}) noexcept {
  const host::detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  constexpr const char* what = "int8_epilogue";
  LOWBIT_TRY(int8::detail::check_dims(what, "M", M, "N", N));
  if (!is_valid(dt)) return status::error(errc::invalid_argument, "%s: dtype %d is not a lowbit dtype", what, static_cast<int>(dt));
  if (!C) return status::error(errc::invalid_argument, "%s: C is null", what);
  if (!row_stats) return status::error(errc::invalid_argument, "%s: row_stats is null", what);
  if (!col_stats) return status::error(errc::invalid_argument, "%s: col_stats is null", what);
  if (!out) return status::error(errc::invalid_argument, "%s: out is null", what);
  return visit_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    return int8::detail::epilogue_typed(C, M, N, row_stats, col_stats, outlier, static_cast<const T*>(bias),
                                        static_cast<T*>(out), opt);
  });
}

/// Options of int8_matmul.
struct int8_matmul_options {
  float threshold = 6.0f;  ///< outlier threshold; 0 disables the split; must be finite and >= 0
  /// `split` (LLM.int8) or `weight_only` (x unquantized, bitsandbytes' path without the int8
  /// GEMM; int8/llm_int8.hpp). weight_only runs a float32 GEMM against the dequantized weights,
  /// with 4 * N * K bytes of scratch; `threshold` is validated but does not change its result.
  int8::matmul_mode mode = int8::matmul_mode::split;
  int threads = 0;         ///< 0 = every hardware thread
  /// integer kernel (host/int8_gemm.hpp); `portable` also turns off the AVX-512 quantization,
  /// outlier-sum and epilogue kernels (host/int8_simd.hpp). Every path gives the same bits.
  host::int8_path path = host::int8_path::automatic;
};

/// Checks that `w` is an int8 row-wise weight of inner dimension K (host storage, int8_absmax,
/// shape [N, K], one scale per row, not double-quantized).
inline status check_int8_weights(const char* what, const quant_tensor& w, std::int64_t K) noexcept {
  if (w.location() != memory_space::host)
    return status::error(errc::invalid_argument, "%s: w lives in device memory; the host matmul needs a host tensor", what);
  if (w.fmt() != format::int8_absmax)
    return status::error(errc::invalid_argument, "%s: w has format %s, LLM.int8 needs int8_absmax", what, info(w.fmt()).name);
  if (w.shape().size() != 2)
    return status::error(errc::invalid_argument, "%s: w has %zu dimensions, needs 2 ([N, K])", what, w.shape().size());
  if (w.shape()[1] != K)
    return status::error(errc::invalid_argument, "%s: K mismatch: x has K=%lld columns, w is [%lld, %lld]", what,
                         static_cast<long long>(K), static_cast<long long>(w.shape()[0]), static_cast<long long>(w.shape()[1]));
  if (w.shape()[0] < 1) return status::error(errc::invalid_argument, "%s: w has N=%lld rows, needs >= 1", what, static_cast<long long>(w.shape()[0]));
  if (w.block_size() != K || w.double_quantized())
    return status::error(errc::invalid_argument, "%s: w must have one scale per row (block %lld, K=%lld)%s", what,
                         static_cast<long long>(w.block_size()), static_cast<long long>(K), w.double_quantized() ? " and no double quantization" : "");
  return {};
}

/// LLM.int8 matmul `y = x · Wᵀ (+ bias)` (bitsandbytes `MatMul8bitLt.forward`) for x [M, K] of
/// dtype `dt`, int8 row-wise weights `w` [N, K] (quantize_int8_weights), optional `bias` [N] of
/// dtype `dt`, output `y` [M, N] of dtype `dt`. Outlier columns of x (|x| >= opt.threshold) are
/// multiplied in float32 against the dequantized int8 weights rounded to `dt`; the rest exactly in
/// int32; see int8/llm_int8.hpp for every rounding. Results beyond `dt`'s range are ±Inf.
/// With `opt.mode = weight_only` x is not quantized and every column goes the outlier way.
/// Errors: an invalid opt.mode, M or K < 1, K mismatch with w, w not int8 row-wise, K > int8::max_inner_dim, null x/y,
/// invalid dtype, a negative/NaN/infinite threshold, NaN/Inf in x (errc::non_finite), out of memory.
inline status int8_matmul(const void* x, dtype dt, std::int64_t M, std::int64_t K, const quant_tensor& w,
                          const void* bias, void* y, const int8_matmul_options& opt = {}) noexcept {
  const host::detail::ieee_mode ieee;  // the defined bits whatever the caller's MXCSR
  constexpr const char* what = "int8_matmul";
  LOWBIT_TRY(int8::detail::check_dims(what, "M", M, "K", K));
  LOWBIT_TRY(int8::detail::check_threshold(what, opt.threshold));
  LOWBIT_TRY(int8::detail::check_mode(what, opt.mode));
  if (!is_valid(dt)) return status::error(errc::invalid_argument, "%s: dtype %d is not a lowbit dtype", what, static_cast<int>(dt));
  LOWBIT_TRY(check_int8_weights(what, w, K));
  if (!x) return status::error(errc::invalid_argument, "%s: x is null", what);
  if (!y) return status::error(errc::invalid_argument, "%s: y is null", what);
  const std::int64_t N = w.shape()[0];
  LOWBIT_TRY(int8::detail::check_dims(what, "M", M, "N", N));
  storage<std::int8_t> codes;
  storage<float> row_stats;
  storage<std::int32_t> cols, acc;
  LOWBIT_TRY(codes.allocate(static_cast<std::size_t>(M * K), allocator::host(), "int8_matmul: activation codes"));
  LOWBIT_TRY(row_stats.allocate(static_cast<std::size_t>(M), allocator::host(), "int8_matmul: row statistics"));
  LOWBIT_TRY(cols.allocate(static_cast<std::size_t>(K), allocator::host(), "int8_matmul: outlier columns"));
  LOWBIT_TRY(acc.allocate(static_cast<std::size_t>(M * N), allocator::host(), "int8_matmul: int32 products"));
  std::int64_t count = 0;
  host::options ho;
  ho.threads = opt.threads;
  ho.simd = opt.path != host::int8_path::portable;
  const bool weight_only = opt.mode == int8::matmul_mode::weight_only;
  // weight_only: the quantization still rejects non-finite x and gives the row statistics (the
  // epilogue multiplies them by C = 0); every column is an outlier column.
  LOWBIT_TRY(int8_vectorwise_quant(x, dt, M, K, weight_only ? 0.0f : opt.threshold, codes.data(), row_stats.data(),
                                   cols.data(), &count, ho));
  const auto* cb = reinterpret_cast<const std::int8_t*>(w.codes());
  if (weight_only) {
    count = K;
    std::fill(acc.data(), acc.data() + M * N, 0);
  } else {
    host::int8_gemm_options go;
    go.threads = opt.threads;
    go.path = opt.path;
    LOWBIT_TRY(host::int8_gemm(codes.data(), K, cb, K, acc.data(), N, M, N, K, go));
  }
  if (count == 0) return int8_epilogue(acc.data(), M, N, row_stats.data(), w.scales(), nullptr, bias, dt, y, ho);
  return visit_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    return int8::detail::outlier_epilogue(static_cast<const T*>(x), M, K, cb, w.scales(), N, weight_only ? nullptr : cols.data(),
                                          count, acc.data(), row_stats.data(), static_cast<const T*>(bias), static_cast<T*>(y),
                                          opt.threads, ho.simd);
  });
}

LOWBIT_NAMESPACE_END
