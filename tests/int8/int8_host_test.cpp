// SPDX-License-Identifier: Apache-2.0
// LLM.int8 on the host: the int32 GEMM against a naive reference on every kernel path (M = 1, K
// not a multiple of 4/16/64, extreme codes), outlier detection against its definition on planted
// inputs, the full matmul against a float64 evaluation of the same definition and against
// bitsandbytes' own test bounds, and the errors.
#include <lowbit/int8/matmul.hpp>

#include <array>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <random>
#include <vector>

#include "test_util.hpp"

namespace {

using lowbit::dtype;
using lowbit::host::int8_path;

std::vector<int8_path> paths() {
  std::vector<int8_path> out;
  for (auto p : {int8_path::portable, int8_path::avx2, int8_path::avx512_vnni, int8_path::amx})
    if (lowbit::host::int8_path_available(p)) out.push_back(p);
  return out;
}

std::vector<std::int32_t> naive_gemm(const std::vector<std::int8_t>& A, const std::vector<std::int8_t>& B, std::int64_t M,
                                     std::int64_t N, std::int64_t K) {
  std::vector<std::int32_t> C(static_cast<std::size_t>(M * N));
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      std::int64_t s = 0;
      for (std::int64_t k = 0; k < K; ++k) s += std::int64_t{A[m * K + k]} * B[n * K + k];
      C[m * N + n] = static_cast<std::int32_t>(s);
    }
  return C;
}

// C = A · Bᵀ with row strides lda, ldb, ldc equals `ref` (dense [M, N]) on every path and thread
// count, and C's padding past N stays untouched.
void expect_gemm_strided(const std::vector<std::int8_t>& A, std::int64_t lda, const std::vector<std::int8_t>& B,
                         std::int64_t ldb, std::int64_t ldc, std::int64_t M, std::int64_t N, std::int64_t K,
                         const std::vector<std::int32_t>& ref) {
  constexpr std::int32_t fill = 0x5a5a5a5a;
  for (auto p : paths())
    for (int threads : {1, 0}) {
      std::vector<std::int32_t> C(static_cast<std::size_t>(M * ldc), fill);
      lowbit::host::int8_gemm_options o;
      o.path = p;
      o.threads = threads;
      const auto s = lowbit::host::int8_gemm(A.data(), lda, B.data(), ldb, C.data(), ldc, M, N, K, o);
      ASSERT_TRUE(s.ok()) << s.message();
      std::int64_t bad = 0;
      for (std::int64_t m = 0; m < M; ++m)
        for (std::int64_t n = 0; n < ldc; ++n) {
          const std::int32_t want = n < N ? ref[m * N + n] : fill;
          if (C[m * ldc + n] != want && bad++ < 3)
            ADD_FAILURE() << lowbit::host::int8_path_name(p) << " M=" << M << " N=" << N << " K=" << K << " at [" << m << ", "
                          << n << "]: " << C[m * ldc + n] << " != " << want;
        }
      EXPECT_EQ(bad, 0) << lowbit::host::int8_path_name(p) << " threads=" << threads;
    }
}

void expect_gemm(const std::vector<std::int8_t>& A, const std::vector<std::int8_t>& B, std::int64_t M, std::int64_t N,
                 std::int64_t K) {
  expect_gemm_strided(A, K, B, K, N, M, N, K, naive_gemm(A, B, M, N, K));
}

TEST(Int8Gemm, RandomShapesExactOnEveryPath) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x1a7);
  std::uniform_int_distribution<int> code(-128, 127);
  const std::int64_t shapes[][3] = {{1, 1, 1},   {1, 5, 3},     {1, 33, 67},  {2, 7, 4},     {3, 17, 15},
                                    {7, 31, 63}, {9, 32, 65},   {8, 64, 16},  {13, 40, 129}, {65, 257, 100},
                                    {70, 300, 1031}, {1, 513, 2100}, {17, 45, 2049},
                                    // VNNI in place: M = 16 (one task row), past the 96 x 64 task tile
                                    {16, 70, 64},  {100, 133, 70}, {200, 37, 129}};
  for (const auto& s : shapes) {
    const std::int64_t M = s[0], N = s[1], K = s[2];
    std::vector<std::int8_t> A(static_cast<std::size_t>(M * K)), B(static_cast<std::size_t>(N * K));
    for (auto& v : A) v = static_cast<std::int8_t>(code(rng));
    for (auto& v : B) v = static_cast<std::int8_t>(code(rng));
    expect_gemm(A, B, M, N, K);
  }
}

// The first K bytes of each of `rows` rows of stride `ld`, packed densely (the reference's input).
std::vector<std::int8_t> dense_rows(const std::vector<std::int8_t>& src, std::int64_t rows, std::int64_t K, std::int64_t ld) {
  std::vector<std::int8_t> out(static_cast<std::size_t>(rows * K));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t k = 0; k < K; ++k) out[static_cast<std::size_t>(r * K + k)] = src[static_cast<std::size_t>(r * ld + k)];
  return out;
}

// Row strides above the row lengths, on every path: A and B are read in place (no path copies
// B), so only the first K bytes of each row may count, and C's padding stays untouched.
TEST(Int8Gemm, StridedOperands) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x5d1);
  std::uniform_int_distribution<int> code(-128, 127);
  const std::int64_t M = 19, N = 41, K = 150, lda = K + 13, ldb = K + 64, ldc = N + 3;
  std::vector<std::int8_t> A(static_cast<std::size_t>(M * lda)), B(static_cast<std::size_t>(N * ldb));
  for (auto& v : A) v = static_cast<std::int8_t>(code(rng));
  for (auto& v : B) v = static_cast<std::int8_t>(code(rng));
  expect_gemm_strided(A, lda, B, ldb, ldc, M, N, K, naive_gemm(dense_rows(A, M, K, lda), dense_rows(B, N, K, ldb), M, N, K));
}

// Every path (the AVX2 and portable ones included: their micro-tiles are 3 x 4 and 4 x 4 rows,
// their k steps 16 and 64 bytes) over M, N, K around those sizes and the task tiles, each with
// row strides above the row lengths (some odd) and A and B allocated to end exactly at the last
// row's K-th byte, so a read past a row's end shows under AddressSanitizer.
TEST(Int8Gemm, OddShapesStridedOnEveryPath) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0x21b);
  std::uniform_int_distribution<int> code(-128, 127), pad(0, 9);
  const std::int64_t dims[] = {1, 3, 15, 16, 17, 63, 64, 65};
  const std::int64_t ks[] = {1, 3, 15, 16, 17, 63, 64, 65, 1000};
  std::vector<std::array<std::int64_t, 3>> shapes;
  for (std::int64_t M : dims)
    for (std::int64_t N : dims)
      for (std::int64_t K : ks) shapes.push_back({M, N, K});
  for (const auto& s : std::vector<std::array<std::int64_t, 3>>{{1000, 17, 65}, {3, 1000, 1000}, {1000, 65, 17}, {65, 1000, 1000}})
    shapes.push_back(s);
  for (const auto& s : shapes) {
    const std::int64_t M = s[0], N = s[1], K = s[2];
    const std::int64_t lda = K + pad(rng), ldb = K + pad(rng), ldc = N + pad(rng);
    std::vector<std::int8_t> A(static_cast<std::size_t>((M - 1) * lda + K)), B(static_cast<std::size_t>((N - 1) * ldb + K));
    for (auto& v : A) v = static_cast<std::int8_t>(code(rng));
    for (auto& v : B) v = static_cast<std::int8_t>(code(rng));
    SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) + " lda=" + std::to_string(lda) +
                 " ldb=" + std::to_string(ldb) + " ldc=" + std::to_string(ldc));
    expect_gemm_strided(A, lda, B, ldb, ldc, M, N, K, naive_gemm(dense_rows(A, M, K, lda), dense_rows(B, N, K, ldb), M, N, K));
    if (HasFailure()) return;
  }
}

TEST(Int8Gemm, ExtremeValues) {
  // +-127 everywhere (and -128), K not a multiple of 4, 16 or 64, past the K block.
  const std::int64_t M = 9, N = 35, K = 4099;
  std::vector<std::int8_t> A(static_cast<std::size_t>(M * K)), B(static_cast<std::size_t>(N * K));
  for (std::int64_t i = 0; i < M * K; ++i) A[i] = static_cast<std::int8_t>((i % 3 == 0) ? -127 : 127);
  for (std::int64_t i = 0; i < N * K; ++i) B[i] = static_cast<std::int8_t>((i / K) % 2 ? -127 : 127);
  expect_gemm(A, B, M, N, K);
  for (auto& v : A) v = -128;
  for (auto& v : B) v = -128;
  expect_gemm(A, B, M, N, K);
  for (auto& v : B) v = 127;
  expect_gemm(A, B, M, N, K);
}

TEST(Int8Gemm, LargestInnerDimension) {
  // -128 * -128 * (2^17 - 1) = 2^31 - 2^14: the largest exact sum; the VNNI offset sums wrap.
  const std::int64_t M = 1, N = 3, K = lowbit::int8::max_inner_dim;
  std::vector<std::int8_t> A(static_cast<std::size_t>(K), -128), B(static_cast<std::size_t>(N * K), -128);
  for (std::int64_t k = 0; k < K; ++k) B[2 * K + k] = 127;
  expect_gemm(A, B, M, N, K);
  {  // 32 rows of B: the AMX path's smallest block (N = 3 is below it), K with a partial last step
    const std::int64_t n32 = 32;
    std::vector<std::int8_t> B32(static_cast<std::size_t>(n32 * K), -128);
    for (std::int64_t n = 1; n < n32; n += 2)
      for (std::int64_t k = 0; k < K; ++k) B32[n * K + k] = 127;
    expect_gemm(A, B32, M, n32, K);
  }
  std::int32_t c = 0;
  const auto s = lowbit::host::int8_gemm(A.data(), K + 1, B.data(), K + 1, &c, 1, 1, 1, K + 1);
  EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
  EXPECT_NE(std::string(s.message()).find("overflow"), std::string::npos) << s.message();
}

// ---- quantization and outliers --------------------------------------------------------------

struct quantized {
  std::vector<std::int8_t> codes;
  std::vector<float> stats;
  std::vector<std::int32_t> cols;
};

quantized quant(const std::vector<float>& x, std::int64_t rows, std::int64_t cols, float threshold) {
  quantized q;
  q.codes.assign(x.size(), 99);
  q.stats.assign(static_cast<std::size_t>(rows), -1.0f);
  q.cols.assign(static_cast<std::size_t>(cols), -1);
  std::int64_t count = -1;
  const auto s = lowbit::int8_vectorwise_quant(x.data(), dtype::f32, rows, cols, threshold, q.codes.data(), q.stats.data(),
                                               q.cols.data(), &count);
  EXPECT_TRUE(s.ok()) << s.message();
  q.cols.resize(static_cast<std::size_t>(count < 0 ? 0 : count));
  return q;
}

// The definition, written independently of the library.
void expect_definition(const std::vector<float>& x, std::int64_t rows, std::int64_t cols, float threshold,
                       const quantized& q) {
  std::vector<bool> outcol(static_cast<std::size_t>(cols), false);
  std::vector<std::int32_t> want_cols;
  for (std::int64_t k = 0; k < cols; ++k) {
    for (std::int64_t r = 0; r < rows; ++r)
      if (threshold > 0 && std::fabs(x[r * cols + k]) >= threshold) outcol[k] = true;
    if (outcol[k]) want_cols.push_back(static_cast<std::int32_t>(k));
  }
  EXPECT_EQ(q.cols, want_cols);
  for (std::int64_t r = 0; r < rows; ++r) {
    float am = 0.0f;
    for (std::int64_t k = 0; k < cols; ++k) {
      const float a = std::fabs(x[r * cols + k]);
      if (!(threshold > 0 && a >= threshold)) am = std::max(am, a);
    }
    EXPECT_EQ(lowbit_test::bits_of(q.stats[r]), lowbit_test::bits_of(am)) << "row " << r;
    const float inv = 127.0f / am;
    for (std::int64_t k = 0; k < cols; ++k) {
      int want = 0;
      if (!outcol[k] && am > 0) want = static_cast<int>(std::nearbyint(std::min(127.0f, std::max(-127.0f, x[r * cols + k] * inv))));
      EXPECT_EQ(int{q.codes[r * cols + k]}, want) << "row " << r << " col " << k << " x=" << x[r * cols + k];
    }
  }
}

std::vector<float> randn(std::int64_t n, std::uint64_t salt, float scale = 1.0f) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& e : v) e = d(rng);
  return v;
}

TEST(Int8Quant, NoOutliers) {
  LOWBIT_SEED_TRACE();
  const std::int64_t R = 13, C = 77;
  auto x = randn(R * C, 1, 0.5f);
  for (auto& v : x) v = std::max(-5.9f, std::min(5.9f, v));
  for (float t : {0.0f, 6.0f}) {
    const auto q = quant(x, R, C, t);
    EXPECT_TRUE(q.cols.empty());
    expect_definition(x, R, C, t, q);
  }
}

TEST(Int8Quant, AllColumnsAreOutliers) {
  const std::int64_t R = 4, C = 19;
  auto x = randn(R * C, 2);
  for (std::int64_t k = 0; k < C; ++k) x[(k % R) * C + k] = (k & 1) ? -7.0f : 7.0f;
  const auto q = quant(x, R, C, 6.0f);
  EXPECT_EQ(q.cols.size(), static_cast<std::size_t>(C));
  expect_definition(x, R, C, 6.0f, q);
  for (auto c : q.codes) EXPECT_EQ(c, 0);
}

TEST(Int8Quant, OneRowAndOneOutlierRow) {
  LOWBIT_SEED_TRACE();
  auto x = randn(50, 3);
  x[7] = 9.0f;
  x[31] = -6.5f;
  auto q = quant(x, 1, 50, 6.0f);
  EXPECT_EQ(q.cols, (std::vector<std::int32_t>{7, 31}));
  expect_definition(x, 1, 50, 6.0f, q);
  // outliers only in row 2 of 5: their columns are zero in every row, other rows' stats include
  // the column's other values
  auto y = randn(5 * 40, 4);
  y[2 * 40 + 3] = 100.0f;
  q = quant(y, 5, 40, 6.0f);
  EXPECT_EQ(q.cols, (std::vector<std::int32_t>{3}));
  expect_definition(y, 5, 40, 6.0f, q);
}

TEST(Int8Quant, TiesAtTheThreshold) {
  const std::int64_t R = 3, C = 8;
  std::vector<float> x(R * C, 0.25f);
  x[0 * C + 1] = 6.0f;                          // exactly at the threshold: outlier
  x[1 * C + 2] = -6.0f;                         // negative tie: outlier
  x[2 * C + 3] = std::nextafter(6.0f, 0.0f);    // just below: not an outlier, sets the row's stat
  x[2 * C + 4] = 1.5f;
  const auto q = quant(x, R, C, 6.0f);
  EXPECT_EQ(q.cols, (std::vector<std::int32_t>{1, 2}));
  expect_definition(x, R, C, 6.0f, q);
  EXPECT_EQ(q.stats[2], std::nextafter(6.0f, 0.0f));
  EXPECT_EQ(q.stats[0], 0.25f);
  // threshold 0 disables the split
  const auto q0 = quant(x, R, C, 0.0f);
  EXPECT_TRUE(q0.cols.empty());
  EXPECT_EQ(q0.stats[0], 6.0f);
}

TEST(Int8Quant, ZeroRowAndHalfTies) {
  const std::int64_t C = 6;
  // row 0 all zero; row 1 values whose scaled value is exactly k + 0.5 (absmax 127 => inv 1)
  std::vector<float> x = {0, -0.0f, 0, 0, 0, 0, 127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f};
  const auto q = quant(x, 2, C, 0.0f);
  EXPECT_EQ(q.stats[0], 0.0f);
  for (int k = 0; k < C; ++k) EXPECT_EQ(q.codes[k], 0);
  const std::int8_t want[] = {127, 0, 2, 2, 0, -2};
  for (int k = 0; k < C; ++k) EXPECT_EQ(q.codes[C + k], want[k]) << k;
}

// ---- full matmul ------------------------------------------------------------------------------

template <class T>
T narrow(float v) {
  return lowbit::from_float<T>(v);
}

struct problem {
  std::int64_t M, K, N;
  std::vector<float> x, w, bias;  // float32 values, already representable in the test's dtype
};

// float64 evaluation of the definition (int8/llm_int8.hpp) from the library's codes and stats.
template <class T>
std::vector<double> definition64(const problem& p, const lowbit::quant_tensor& wq, float threshold, bool with_bias,
                                 lowbit::int8::matmul_mode mode) {
  const auto q = quant(p.x, p.M, p.K, threshold);
  // weight_only: every column is an outlier column
  std::vector<bool> out(static_cast<std::size_t>(p.K), mode == lowbit::int8::matmul_mode::weight_only);
  for (auto c : q.cols) out[c] = true;
  const auto* cb = reinterpret_cast<const std::int8_t*>(wq.codes());
  std::vector<double> y(static_cast<std::size_t>(p.M * p.N));
  for (std::int64_t m = 0; m < p.M; ++m)
    for (std::int64_t n = 0; n < p.N; ++n) {
      double ci = 0, fo = 0;
      for (std::int64_t k = 0; k < p.K; ++k) {
        if (out[k]) {
          const float wd = lowbit::to_float(narrow<T>((static_cast<float>(cb[n * p.K + k]) * wq.scales()[n]) * (1.0f / 127.0f)));
          fo += double{p.x[m * p.K + k]} * wd;
        } else {
          ci += static_cast<double>(q.codes[m * p.K + k]) * cb[n * p.K + k];
        }
      }
      y[m * p.N + n] = ci * q.stats[m] * wq.scales()[n] / 16129.0 + (with_bias ? p.bias[n] : 0.0) + fo;
    }
  return y;
}

template <class T>
problem make_problem(std::int64_t M, std::int64_t K, std::int64_t N, std::uint64_t salt, float wscale) {
  problem p{M, K, N, randn(M * K, salt), randn(N * K, salt + 1, wscale), randn(N, salt + 2)};
  for (auto* v : {&p.x, &p.w, &p.bias})
    for (auto& e : *v) e = lowbit::to_float(narrow<T>(e));
  return p;
}

// The problem's values in the test's dtype.
template <class T>
struct typed_problem {
  std::vector<T> x, w, b;
};
template <class T>
typed_problem<T> typed(const problem& p) {
  typed_problem<T> t{std::vector<T>(p.x.size()), std::vector<T>(p.w.size()), std::vector<T>(p.bias.size())};
  for (std::size_t i = 0; i < t.x.size(); ++i) t.x[i] = narrow<T>(p.x[i]);
  for (std::size_t i = 0; i < t.w.size(); ++i) t.w[i] = narrow<T>(p.w[i]);
  for (std::size_t i = 0; i < t.b.size(); ++i) t.b[i] = narrow<T>(p.bias[i]);
  return t;
}

template <class T>
struct run_result {
  std::vector<double> y, def, truth;
};

template <class T>
run_result<T> run(const problem& p, float threshold, bool with_bias,
                  lowbit::int8::matmul_mode mode = lowbit::int8::matmul_mode::split) {
  const dtype dt = lowbit::dtype_of<T>::value;
  std::vector<T> x(p.x.size()), w(p.w.size()), b(p.bias.size()), y(static_cast<std::size_t>(p.M * p.N));
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = narrow<T>(p.x[i]);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = narrow<T>(p.w[i]);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = narrow<T>(p.bias[i]);
  lowbit::quant_tensor wq;
  auto s = lowbit::quantize_int8_weights(w.data(), dt, p.N, p.K, wq);
  EXPECT_TRUE(s.ok()) << s.message();
  lowbit::int8_matmul_options o;
  o.threshold = threshold;
  o.mode = mode;
  s = lowbit::int8_matmul(x.data(), dt, p.M, p.K, wq, with_bias ? b.data() : nullptr, y.data(), o);
  EXPECT_TRUE(s.ok()) << s.message();
  run_result<T> r;
  for (auto v : y) r.y.push_back(lowbit::to_float(v));
  r.def = definition64<T>(p, wq, threshold, with_bias, mode);
  r.truth.resize(y.size());
  for (std::int64_t m = 0; m < p.M; ++m)
    for (std::int64_t n = 0; n < p.N; ++n) {
      double t = with_bias ? p.bias[n] : 0.0;
      for (std::int64_t k = 0; k < p.K; ++k) t += double{p.x[m * p.K + k]} * p.w[n * p.K + k];
      r.truth[m * p.N + n] = t;
    }
  return r;
}

// The implementation equals the float64 definition up to float rounding of the output dtype.
template <class T>
void expect_close_to_definition(const run_result<T>& r) {
  const double eps = std::is_same<T, float>::value ? 1e-5 : (std::is_same<T, lowbit::f16>::value ? 2e-3 : 1.6e-2);
  double scale = 0;
  for (auto v : r.def) scale = std::max(scale, std::fabs(v));
  for (std::size_t i = 0; i < r.y.size(); ++i)
    ASSERT_NEAR(r.y[i], r.def[i], eps * std::fabs(r.def[i]) + 1e-6 * scale) << "element " << i;
}

std::size_t count_not_close(const std::vector<double>& a, const std::vector<double>& b, double atol, double rtol) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::fabs(a[i] - b[i]) > atol + rtol * std::fabs(b[i])) ++bad;
  return bad;
}

double fraction_not_close(const std::vector<double>& a, const std::vector<double>& b, double atol, double rtol) {
  return static_cast<double>(count_not_close(a, b, atol, rtol)) / static_cast<double>(a.size());
}

template <class T>
class Int8Matmul : public ::testing::Test {};
using dtypes = ::testing::Types<float, lowbit::f16, lowbit::bf16>;
TYPED_TEST_SUITE(Int8Matmul, dtypes);

// bitsandbytes test_integrated_int8_linear_matmul: error against the exact product no more than
// 1.025x the error of the quantized definition evaluated in float64 and rounded to the dtype.
TYPED_TEST(Int8Matmul, IntegratedLinearMatmul) {
  LOWBIT_SEED_TRACE();
  const std::int64_t shapes[][3] = {{1, 2, 4}, {8, 128, 256}, {256, 512, 96}};
  for (const auto& sh : shapes) {
    const auto p = make_problem<TypeParam>(sh[0], sh[1], sh[2], 10 + sh[1], 1.0f);
    const auto r = run<TypeParam>(p, 0.0f, false);
    expect_close_to_definition(r);
    double e_ours = 0, e_def = 0;
    for (std::size_t i = 0; i < r.y.size(); ++i) {
      e_ours += std::fabs(r.y[i] - r.truth[i]);
      // the reference is in the output dtype too, as bitsandbytes' torch reference is
      e_def += std::fabs(lowbit::to_float(narrow<TypeParam>(static_cast<float>(r.def[i]))) - r.truth[i]);
    }
    EXPECT_LE(e_ours, 1.025 * e_def + 1e-12) << sh[0] << "x" << sh[1] << "x" << sh[2];
  }
}

// bitsandbytes test_matmullt: A randn (64, 32), xavier-uniform B, threshold 0 and 6 with a
// planted 6.0 outlier column, fraction not close at (0.01, 0.1) <= 1.75 % (fp16) / 2.1 %, at
// (0.035, 0.2) <= 0.1 %.
TYPED_TEST(Int8Matmul, MatmulLt) {
  LOWBIT_SEED_TRACE();
  for (float threshold : {0.0f, 6.0f})
    for (bool bias : {false, true}) {
      const std::int64_t M = 64, K = 32, N = 48;
      auto p = make_problem<TypeParam>(M, K, N, 20, 1.0f);
      const float bound = std::sqrt(6.0f / static_cast<float>(K + N));  // xavier uniform
      std::mt19937_64 rng(lowbit_test::test_seed() ^ 21);
      std::uniform_real_distribution<float> u(-bound, bound);
      for (auto& e : p.w) e = lowbit::to_float(narrow<TypeParam>(u(rng)));
      if (threshold > 0)
        for (std::int64_t m = 0; m < M; ++m) p.x[m * K + 5] = 6.0f;
      const auto r = run<TypeParam>(p, threshold, bias);
      expect_close_to_definition(r);
      const double lim = std::is_same<TypeParam, lowbit::f16>::value ? 0.0175 : 0.021;
      EXPECT_LE(fraction_not_close(r.y, r.truth, 0.01, 0.1), lim) << "threshold " << threshold;
      EXPECT_LE(fraction_not_close(r.y, r.truth, 0.035, 0.2), 0.001) << "threshold " << threshold;
    }
}

// Linear(1024 -> 3072) as bitsandbytes' test_linear8bitlt builds it: weights and bias uniform
// +-1/32, x randn (3, 1024), plus one outlier column.
template <class T>
problem linear_problem(int draw) {
  auto p = make_problem<T>(3, 1024, 3072, 30 + 8 * draw, 1.0f);
  std::mt19937_64 rng(lowbit_test::test_seed() ^ (31 + 8 * draw));
  std::uniform_real_distribution<float> u(-1.0f / 32, 1.0f / 32);
  for (auto& e : p.w) e = lowbit::to_float(narrow<T>(u(rng)));
  for (auto& e : p.bias) e = lowbit::to_float(narrow<T>(u(rng)));
  p.x[17] = 8.0f;
  return p;
}

// bitsandbytes test_linear_no_igemmlt: linear_problem, threshold 6.0, through MatMul8bitLt
// without the int8 GEMM (force_no_igemmlt), i.e. lowbit's weight_only mode. Its bounds, on every
// draw: fewer than 2.5e-4 * numel elements beyond atol 0.02 / rtol 1e-5, and all within atol
// 0.03 (+ the dtype's rtol) of the exact product.
TYPED_TEST(Int8Matmul, LinearNoIgemmlt) {
  LOWBIT_SEED_TRACE();
  for (int d = 0; d < 4; ++d) {
    const auto p = linear_problem<TypeParam>(d);
    const auto r = run<TypeParam>(p, 6.0f, true, lowbit::int8::matmul_mode::weight_only);
    expect_close_to_definition(r);
    if (d == 0) {
      EXPECT_EQ(run<TypeParam>(p, 0.0f, true, lowbit::int8::matmul_mode::weight_only).y, r.y) << "threshold has no effect";
    }
    EXPECT_LT(static_cast<double>(count_not_close(r.y, r.truth, 0.02, 1e-5)), 2.5e-4 * static_cast<double>(r.y.size())) << "draw " << d;
    const double rtol = std::is_same<TypeParam, float>::value ? 1.3e-6 : 1e-3;
    EXPECT_EQ(count_not_close(r.y, r.truth, 0.03, rtol), 0u) << "draw " << d;
  }
}

// The same problem through the int8 x int8 split (what bitsandbytes runs when its int8 GEMM is
// available): activation quantization adds rms error ~0.005, so bitsandbytes' tail bound above is
// not a property of this definition (even evaluated in float64 it averages 2.4..3.3 elements
// beyond 0.02 against the bound's 2.3). Here: all within 0.03, and the implementation adds no
// elements beyond 0.02 to those of the float64 definition rounded to the dtype.
TYPED_TEST(Int8Matmul, LinearSplitMode) {
  LOWBIT_SEED_TRACE();
  for (int d = 0; d < 4; ++d) {
    const auto p = linear_problem<TypeParam>(d);
    const auto r = run<TypeParam>(p, 6.0f, true);
    expect_close_to_definition(r);
    std::vector<double> def_t(r.def.size());
    for (std::size_t i = 0; i < def_t.size(); ++i) def_t[i] = lowbit::to_float(narrow<TypeParam>(static_cast<float>(r.def[i])));
    EXPECT_LE(count_not_close(r.y, r.truth, 0.02, 1e-5), count_not_close(def_t, r.truth, 0.02, 1e-5)) << "draw " << d;
    const double rtol = std::is_same<TypeParam, float>::value ? 1.3e-6 : 1e-3;
    EXPECT_EQ(count_not_close(r.y, r.truth, 0.03, rtol), 0u) << "draw " << d;
  }
}

// The AVX-512 quantization/epilogue kernels and the AMX/VNNI/AVX2 GEMMs give the portable code's bits
// for every dtype, with outliers, bias, and sizes that leave SIMD tails.
TYPED_TEST(Int8Matmul, EveryPathSameBits) {
  LOWBIT_SEED_TRACE();
  const dtype dt = lowbit::dtype_of<TypeParam>::value;
  const std::int64_t M = 37, K = 291, N = 83;
  auto p = make_problem<TypeParam>(M, K, N, 50, 0.1f);
  for (std::int64_t m = 0; m < M; m += 5) p.x[m * K + 100] = 7.5f;
  p.x[3 * K + 290] = -6.0f;
  for (std::int64_t k = 0; k < K; ++k) p.x[11 * K + k] = 0.0f;  // a zero row
  const auto t = typed<TypeParam>(p);
  const auto &x = t.x, &w = t.w, &b = t.b;
  // both modes; N = 83 and the first 7 weight rows leave outlier-panel tails past and below 16
  for (auto mode : {lowbit::int8::matmul_mode::split, lowbit::int8::matmul_mode::weight_only})
    for (std::int64_t n_used : {N, std::int64_t{7}}) {
      lowbit::quant_tensor wn;
      ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dt, n_used, K, wn).ok());
      std::vector<std::uint16_t> ref;
      for (auto path : paths()) {
        std::vector<TypeParam> y(static_cast<std::size_t>(M * n_used));
        lowbit::int8_matmul_options o;
        o.path = path;
        o.mode = mode;
        const auto s = lowbit::int8_matmul(x.data(), dt, M, K, wn, b.data(), y.data(), o);
        ASSERT_TRUE(s.ok()) << s.message();
        std::vector<std::uint16_t> bits(y.size() * sizeof(TypeParam) / 2);
        std::memcpy(bits.data(), y.data(), bits.size() * 2);
        if (ref.empty()) ref = bits;
        EXPECT_EQ(bits, ref) << lowbit::host::int8_path_name(path) << " N=" << n_used
                             << (mode == lowbit::int8::matmul_mode::weight_only ? " weight_only" : " split");
      }
    }
  // the quantizer alone, AVX-512 on and off
  std::vector<std::int8_t> c0(x.size()), c1(x.size());
  std::vector<float> s0(M), s1(M);
  std::vector<std::int32_t> o0(K), o1(K);
  std::int64_t n0 = 0, n1 = 0;
  lowbit::host::options on, off;
  off.simd = false;
  ASSERT_TRUE(lowbit::int8_vectorwise_quant(x.data(), dt, M, K, 6.0f, c0.data(), s0.data(), o0.data(), &n0, off).ok());
  ASSERT_TRUE(lowbit::int8_vectorwise_quant(x.data(), dt, M, K, 6.0f, c1.data(), s1.data(), o1.data(), &n1, on).ok());
  EXPECT_EQ(c0, c1);
  EXPECT_EQ(s0, s1);
  EXPECT_EQ(n0, 2);
  EXPECT_EQ(o0, o1);
}

// The whole call equals the definition evaluated here in scalar float32, bit for bit: codes and
// stats from int8_vectorwise_quant, the int32 product summed here, step 5 as two rounded
// multiplies and one fma, step 6 as rounded products added in column order, one rounding to the
// dtype. Sizes put the outlier/epilogue pass's tails everywhere (M % 4, N past 256 and % 32), with
// bias, on every path and thread count, in both modes.
TYPED_TEST(Int8Matmul, BitsEqualTheScalarDefinition) {
  LOWBIT_SEED_TRACE();
  const dtype dt = lowbit::dtype_of<TypeParam>::value;
  const std::int64_t M = 23, K = 203, N = 301;
  auto p = make_problem<TypeParam>(M, K, N, 77, 0.1f);
  for (std::int64_t m = 0; m < M; m += 3) p.x[m * K + 5] = 9.5f;
  p.x[7 * K + 150] = -7.0f;
  p.x[22 * K + 202] = 6.0f;
  const auto t = typed<TypeParam>(p);
  const auto &x = t.x, &w = t.w, &b = t.b;
  lowbit::quant_tensor wq;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dt, N, K, wq).ok());
  const auto* cb = reinterpret_cast<const std::int8_t*>(wq.codes());
  const float* scb = wq.scales();
  for (auto mode : {lowbit::int8::matmul_mode::split, lowbit::int8::matmul_mode::weight_only}) {
    const bool wo = mode == lowbit::int8::matmul_mode::weight_only;
    const auto q = quant(p.x, M, K, wo ? 0.0f : 6.0f);
    std::vector<bool> outcol(static_cast<std::size_t>(K), wo);
    for (auto c : q.cols) outcol[c] = true;
    if (!wo) {
      ASSERT_EQ(q.cols.size(), 3u);
    }
    std::vector<std::uint16_t> want(static_cast<std::size_t>(M * N) * sizeof(TypeParam) / 2);
    std::vector<TypeParam> yw(static_cast<std::size_t>(M * N));
    for (std::int64_t m = 0; m < M; ++m)
      for (std::int64_t n = 0; n < N; ++n) {
        std::int64_t c = 0;
        float o = 0.0f;
        for (std::int64_t k = 0; k < K; ++k) {
          if (outcol[k]) {
            volatile float wd = (static_cast<float>(cb[n * K + k]) * scb[n]) * (1.0f / 127.0f);
            wd = lowbit::to_float(narrow<TypeParam>(wd));
            volatile float prod = lowbit::to_float(x[m * K + k]) * wd;
            o = o + prod;
          } else if (!wo) {
            c += std::int64_t{q.codes[m * K + k]} * cb[n * K + k];
          }
        }
        volatile float rc = static_cast<float>(static_cast<std::int32_t>(c)) * q.stats[m];
        rc = rc * scb[n];
        const float e = std::fma(static_cast<float>(rc), 1.0f / 16129.0f, lowbit::to_float(b[n]));
        yw[m * N + n] = narrow<TypeParam>(e + o);
      }
    std::memcpy(want.data(), yw.data(), want.size() * 2);
    for (auto path : paths())
      for (int threads : {1, 0}) {
        std::vector<TypeParam> y(static_cast<std::size_t>(M * N));
        lowbit::int8_matmul_options o;
        o.path = path;
        o.mode = mode;
        o.threads = threads;
        ASSERT_TRUE(lowbit::int8_matmul(x.data(), dt, M, K, wq, b.data(), y.data(), o).ok());
        std::vector<std::uint16_t> bits(want.size());
        std::memcpy(bits.data(), y.data(), bits.size() * 2);
        for (std::size_t i = 0; i < bits.size(); ++i)
          ASSERT_EQ(bits[i], want[i]) << lowbit::host::int8_path_name(path) << " threads=" << threads << (wo ? " weight_only" : " split")
                                      << " at 16-bit word " << i;
      }
  }
}

TEST(Int8Matmul, WeightsAreBitsandbytesCBSCB) {
  // CB = rne(w * (127 / SCB)), SCB = row absmax, as int8_vectorwise_quant with threshold 0.
  const std::int64_t N = 5, K = 33;
  auto w = randn(N * K, 40);
  lowbit::quant_tensor wq;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dtype::f32, N, K, wq).ok());
  const auto q = quant(w, N, K, 0.0f);
  for (std::int64_t n = 0; n < N; ++n) EXPECT_EQ(wq.scales()[n], q.stats[n]);
  for (std::int64_t i = 0; i < N * K; ++i) EXPECT_EQ(static_cast<std::int8_t>(wq.codes()[i]), q.codes[i]);
}

TEST(Int8Matmul, Errors) {
  std::vector<float> x(4 * 8, 1.0f), w(3 * 8, 1.0f), y(12);
  lowbit::quant_tensor wq;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dtype::f32, 3, 8, wq).ok());
  auto expect_err = [](const lowbit::status& s, const char* word) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(std::string(s.message()).find(word), std::string::npos) << s.message();
  };
  lowbit::int8_matmul_options o;
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 7, wq, nullptr, y.data(), o), "K mismatch");
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 0, 8, wq, nullptr, y.data(), o), "M=0");
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, -1, 8, wq, nullptr, y.data(), o), "M=-1");
  expect_err(lowbit::int8_matmul(nullptr, dtype::f32, 4, 8, wq, nullptr, y.data(), o), "x is null");
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, wq, nullptr, nullptr, o), "y is null");
  expect_err(lowbit::int8_matmul(x.data(), static_cast<dtype>(9), 4, 8, wq, nullptr, y.data(), o), "dtype");
  o.threshold = -1.0f;
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, wq, nullptr, y.data(), o), "threshold");
  o.threshold = std::nanf("");
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, wq, nullptr, y.data(), o), "threshold");
  o.threshold = 6.0f;
  lowbit::quant_tensor nf;
  lowbit::quantize_params qp;
  ASSERT_TRUE(lowbit::quantize(w.data(), dtype::f32, {3, 8}, qp, nf).ok());  // nf4
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, nf, nullptr, y.data(), o), "format nf4");
  o.mode = static_cast<lowbit::int8::matmul_mode>(7);
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, wq, nullptr, y.data(), o), "mode 7");
  o.mode = lowbit::int8::matmul_mode::weight_only;
  o.threshold = -1.0f;
  expect_err(lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, wq, nullptr, y.data(), o), "threshold");
  o.threshold = 6.0f;
  x[9] = std::nanf("");
  const std::vector<float> y0 = y;
  for (auto mode : {lowbit::int8::matmul_mode::split, lowbit::int8::matmul_mode::weight_only}) {
    o.mode = mode;
    auto s = lowbit::int8_matmul(x.data(), dtype::f32, 4, 8, wq, nullptr, y.data(), o);
    EXPECT_EQ(s.code(), lowbit::errc::non_finite);
    expect_err(s, "x[1, 1]");
    EXPECT_EQ(y, y0) << "nothing written";
  }
  std::int8_t codes[4];
  float stats[1];
  expect_err(lowbit::int8_vectorwise_quant(x.data(), dtype::f32, 1, 4, 2.0f, codes, stats, nullptr, nullptr), "outlier_cols is null");
  expect_err(lowbit::int8_vectorwise_quant(x.data(), dtype::f32, 1, 4, -2.0f, codes, stats, nullptr, nullptr), "threshold");
  expect_err(lowbit::int8_vectorwise_quant(x.data(), dtype::f32, 1, 0, 0.0f, codes, stats, nullptr, nullptr), "cols=0");
  expect_err(lowbit::quantize_int8_weights(w.data(), dtype::f32, 3, 0, wq), "K=0");
  std::int32_t c[1];
  expect_err(lowbit::host::int8_gemm(codes, 4, codes, 4, c, 1, 1, 1, -4), "sizes must be >= 0");
  expect_err(lowbit::host::int8_gemm(codes, 2, codes, 4, c, 1, 1, 1, 4), "strides");
  expect_err(lowbit::host::int8_gemm(nullptr, 4, codes, 4, c, 1, 1, 1, 4), "A is null");
}

}  // namespace
