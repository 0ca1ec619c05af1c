// SPDX-License-Identifier: Apache-2.0
// The LLM.int8 CUDA launchers against the host engine, bit for bit: codes, row statistics,
// outlier column lists, the fallback int32 GEMM, the epilogue, and the whole matmul on the
// kernel-only path. Included by int8_simt_test.cpp (SIMT executor, forward/reverse/random thread
// orders) and int8_device_test.cu (a GPU; skipped without one). The including file defines
// `kt::buffer<T>` and `kt::for_each_order(fn)` and includes gtest.

#include <lowbit/int8/matmul.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace kt8 {

using lowbit::dtype;

template <class T>
std::vector<T> activations(std::int64_t rows, std::int64_t cols, std::uint64_t salt) {
  std::mt19937_64 rng(lowbit_test::test_seed() ^ salt);
  std::normal_distribution<float> normal(0.0f, 1.5f);
  std::vector<T> x(static_cast<std::size_t>(rows * cols));
  for (auto& v : x) v = lowbit::from_float<T>(normal(rng));
  if (cols > 7)
    for (std::int64_t r = 0; r < rows; r += 3) x[r * cols + 7] = lowbit::from_float<T>(-9.0f);  // outlier column
  if (cols > 2) x[cols - 2] = lowbit::from_float<T>(6.0f);                                      // a tie
  if (rows > 2)
    for (std::int64_t k = 0; k < cols; ++k) x[2 * cols + k] = lowbit::from_float<T>(0.0f);  // a zero row
  return x;
}

/// `spread`: outliers (|x| of 6 to 12, both signs) also in about 1 of 64 random columns of every
/// row, so that they fall in the vector body, head and tail of rows at every alignment, and in the
/// same vectors as ordinary elements.
template <class T>
void check_quant(std::int64_t rows, std::int64_t cols, float threshold, int shift, bool spread = false) {
  LOWBIT_SEED_TRACE();
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + " " + std::to_string(rows) + "x" +
               std::to_string(cols) + " threshold " + std::to_string(threshold) + " shift " + std::to_string(shift) +
               (spread ? " spread" : ""));
  const dtype dt = lowbit::dtype_of<T>::value;
  auto x = activations<T>(rows, cols, static_cast<std::uint64_t>(rows * 131 + cols));
  if (spread) {
    std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(rows * 7 + cols));
    std::uniform_int_distribution<std::int64_t> col(0, cols - 1);
    std::uniform_real_distribution<float> mag(6.0f, 12.0f);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t j = 0; j < cols / 64 + 1; ++j)
        x[static_cast<std::size_t>(r * cols + col(rng))] = lowbit::from_float<T>((j % 2 ? -1.0f : 1.0f) * mag(rng));
  }
  const std::size_t n = x.size();
  std::vector<std::int8_t> want_codes(n);
  std::vector<float> want_stats(static_cast<std::size_t>(rows));
  std::vector<std::int32_t> want_cols(static_cast<std::size_t>(cols));
  std::int64_t want_count = 0;
  ASSERT_TRUE(lowbit::int8_vectorwise_quant(x.data(), dt, rows, cols, threshold, want_codes.data(), want_stats.data(),
                                            want_cols.data(), &want_count)
                  .ok());
  std::vector<T> padded(n + static_cast<std::size_t>(shift));
  std::copy(x.begin(), x.end(), padded.begin() + shift);
  kt::buffer<T> dx(padded);
  kt::buffer<std::int8_t> dcodes(n + static_cast<std::size_t>(shift));
  kt::buffer<float> dstats(static_cast<std::size_t>(rows));
  kt::buffer<std::int32_t> dcols(static_cast<std::size_t>(cols));
  const std::size_t wsb = lowbit::cuda::int8_quant_workspace_size(rows, cols);
  kt::buffer<unsigned char> ws(wsb);
  auto s = lowbit::cuda::int8_vectorwise_quant(dx.get() + shift, dt, rows, cols, threshold, dcodes.get() + shift,
                                               dstats.get(), dcols.get(), ws.get(), wsb);
  ASSERT_TRUE(s.ok()) << s.message();
  std::int64_t count = -1;
  s = lowbit::cuda::int8_quant_status(ws.get(), cols, &count);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(count, want_count);
  const auto cols_got = dcols.download();
  for (std::int64_t j = 0; j < count; ++j) ASSERT_EQ(cols_got[j], want_cols[j]) << "outlier column " << j;
  const auto stats = dstats.download();
  for (std::int64_t r = 0; r < rows; ++r)
    ASSERT_EQ(lowbit_test::bits_of(stats[r]), lowbit_test::bits_of(want_stats[r])) << "row statistic " << r;
  const auto codes = dcodes.download();
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(codes[i + shift], want_codes[i]) << "code " << i;
}

TEST(Int8Kernels, QuantizeMatchesHost) {
  kt::for_each_order([] {
    for (int shift : {0, 1})
      for (float t : {0.0f, 6.0f}) {
        check_quant<float>(1, 50, t, shift);
        check_quant<float>(37, 291, t, shift);
        check_quant<lowbit::f16>(5, 40, t, shift);
        check_quant<lowbit::bf16>(9, 64, t, shift);
        if (::testing::Test::HasFatalFailure()) return;
      }
    check_quant<lowbit::f16>(3, 700, 6.0f, 0);  // more than one CTA pass of the column list
  });
}

// The row kernels' paths: 128-bit codes (x and codes 16-byte aligned, cols % 16 == 0) or scalar;
// rows whose start is aligned or not (odd widths: a different head in every row of
// int8_row_absmax_kernel); more than one column tile of int8_row_codes_kernel (4096 columns),
// partial last tiles and threads; CTAs that loop over rows (more than 1024 rows).
TEST(Int8Kernels, QuantizeRowKernelPaths) {
  kt::for_each_order([] {
    for (float t : {0.0f, 6.0f}) {
      check_quant<float>(3, 4096 + 48, t, 0, true);        // 128-bit, two tiles
      check_quant<float>(2, 4096 + 21, t, 0, true);        // scalar, odd width, two tiles
      check_quant<lowbit::bf16>(2, 4096 + 16, t, 1, true);  // scalar (misaligned), two tiles
      check_quant<lowbit::bf16>(4, 96, t, 0, true);         // 128-bit
      check_quant<lowbit::f16>(5, 37, t, 0, true);          // every row starts at another alignment
      check_quant<lowbit::f16>(3, 8208, t, 0, true);        // 128-bit, three tiles, a partial one
      check_quant<lowbit::bf16>(2, 4096, t, 0, true);       // exactly one tile (one whole chunk of the column list)
      if (::testing::Test::HasFatalFailure()) return;
    }
    check_quant<lowbit::f16>(1100, 16, 6.0f, 0, true);   // 128-bit, CTAs loop over rows
    check_quant<float>(1030, 9, 6.0f, 1, true);          // scalar, CTAs loop over rows
    check_quant<lowbit::bf16>(1050, 3, 6.0f, 0, true);   // scalar, fewer columns than a vector
  });
}

/// Non-finite elements at the given [row, col] (Inf, NaN, -Inf in turn): the first in row-major
/// order is reported and nothing is written, with outliers in the same rows and vectors.
template <class T>
void check_nonfinite(std::int64_t rows, std::int64_t cols, int shift,
                     std::initializer_list<std::pair<std::int64_t, std::int64_t>> bad) {
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + " " + std::to_string(rows) + "x" +
               std::to_string(cols) + " shift " + std::to_string(shift));
  const dtype dt = lowbit::dtype_of<T>::value;
  std::vector<T> x(static_cast<std::size_t>(rows * cols + shift), lowbit::from_float<T>(0.5f));
  const float special[3] = {std::numeric_limits<float>::infinity(), std::nanf(""), -std::numeric_limits<float>::infinity()};
  std::int64_t first = rows * cols;
  int i = 0;
  for (const auto& rc : bad) {
    const std::int64_t at = rc.first * cols + rc.second;
    x[static_cast<std::size_t>(at + shift)] = lowbit::from_float<T>(special[i++ % 3]);
    if (rc.second + 1 < cols) x[static_cast<std::size_t>(at + 1 + shift)] = lowbit::from_float<T>(-8.0f);  // an outlier
    first = at < first ? at : first;
  }
  kt::buffer<T> dx(x);
  kt::buffer<std::int8_t> dcodes(x.size());
  kt::buffer<float> dstats(static_cast<std::size_t>(rows));
  kt::buffer<std::int32_t> dcols(static_cast<std::size_t>(cols));
  const std::size_t wsb = lowbit::cuda::int8_quant_workspace_size(rows, cols);
  kt::buffer<unsigned char> ws(wsb);
  ASSERT_TRUE(lowbit::cuda::int8_vectorwise_quant(dx.get() + shift, dt, rows, cols, 6.0f, dcodes.get() + shift,
                                                  dstats.get(), dcols.get(), ws.get(), wsb)
                  .ok());
  const auto s = lowbit::cuda::int8_quant_status(ws.get(), cols, nullptr);
  EXPECT_EQ(s.code(), lowbit::errc::non_finite);
  const std::string where = "x[" + std::to_string(first / cols) + ", " + std::to_string(first % cols) + "]";
  EXPECT_NE(std::string(s.message()).find(where), std::string::npos) << s.message() << " (want " << where << ")";
  for (auto c : dcodes.download()) ASSERT_EQ(c, 0);
  for (auto v : dstats.download()) ASSERT_EQ(v, 0.0f);
}

TEST(Int8Kernels, QuantizeFindsTheFirstNonFiniteOnEveryPath) {
  kt::for_each_order([] {
    // in a 128-bit vector (two in one, the later one first in its row), the head, the tail
    check_nonfinite<float>(3, 64, 0, {{2, 9}, {1, 33}, {1, 30}});
    check_nonfinite<float>(3, 37, 1, {{2, 0}, {1, 36}, {2, 5}});
    check_nonfinite<lowbit::bf16>(2, 64, 0, {{1, 63}, {1, 8}, {1, 9}});
    check_nonfinite<lowbit::f16>(4, 37, 0, {{3, 1}, {3, 36}, {2, 20}, {2, 17}});
    check_nonfinite<lowbit::f16>(2, 5000, 0, {{1, 4999}, {1, 4500}});
  });
}

TEST(Int8Kernels, QuantizeRejectsNonFiniteAndWritesNothing) {
  kt::for_each_order([] {
    std::vector<float> x(4 * 20, 0.5f);
    x[2 * 20 + 3] = std::nanf("");
    kt::buffer<float> dx(x);
    kt::buffer<std::int8_t> dcodes(x.size());
    kt::buffer<float> dstats(4);
    kt::buffer<std::int32_t> dcols(20);
    const std::size_t wsb = lowbit::cuda::int8_quant_workspace_size(4, 20);
    kt::buffer<unsigned char> ws(wsb);
    ASSERT_TRUE(lowbit::cuda::int8_vectorwise_quant(dx.get(), dtype::f32, 4, 20, 6.0f, dcodes.get(), dstats.get(),
                                                    dcols.get(), ws.get(), wsb)
                    .ok());
    const auto s = lowbit::cuda::int8_quant_status(ws.get(), 20, nullptr);
    EXPECT_EQ(s.code(), lowbit::errc::non_finite);
    EXPECT_NE(std::string(s.message()).find("x[2, 3]"), std::string::npos) << s.message();
    for (auto c : dcodes.download()) EXPECT_EQ(c, 0);
    for (auto v : dstats.download()) EXPECT_EQ(v, 0.0f);
    auto bad = lowbit::cuda::int8_vectorwise_quant(dx.get(), dtype::f32, 4, 20, -1.0f, dcodes.get(), dstats.get(),
                                                   dcols.get(), ws.get(), wsb);
    EXPECT_EQ(bad.code(), lowbit::errc::invalid_argument);
    bad = lowbit::cuda::int8_vectorwise_quant(dx.get(), dtype::f32, 4, 20, 6.0f, dcodes.get(), dstats.get(), dcols.get(),
                                              ws.get(), wsb - 16);
    EXPECT_NE(std::string(bad.message()).find("workspace"), std::string::npos) << bad.message();
  });
}

/// C = A Bᵀ on the fallback kernel against host::int8_gemm. `pad`: row strides lda = K + pad,
/// ldb = K + 2 pad, ldc = N + pad; `offset`: A and B start `offset` bytes into their buffers (with
/// pad 0 and offset 0 and K % 16 == 0 the kernel takes its 128-bit path).
void check_gemm(std::int64_t M, std::int64_t N, std::int64_t K, int extreme, std::int64_t pad = 0, int offset = 0) {
  SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " extreme " +
               std::to_string(extreme) + " pad " + std::to_string(pad) + " offset " + std::to_string(offset));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(M * 7 + N * 13 + K));
  std::uniform_int_distribution<int> code(-128, 127);
  const std::int64_t lda = K + pad, ldb = K + 2 * pad, ldc = N + pad;
  std::vector<std::int8_t> A(static_cast<std::size_t>(M * lda + offset)), B(static_cast<std::size_t>(N * ldb + offset));
  for (auto& v : A) v = static_cast<std::int8_t>(extreme ? (extreme < 0 ? -128 : 127) : code(rng));
  for (auto& v : B) v = static_cast<std::int8_t>(extreme ? -127 : code(rng));
  std::vector<std::int32_t> want(static_cast<std::size_t>(M * ldc), 7);
  kt::buffer<std::int32_t> dc(want);  // the padding's 7s must stay
  ASSERT_TRUE(lowbit::host::int8_gemm(A.data() + offset, lda, B.data() + offset, ldb, want.data(), ldc, M, N, K).ok());
  kt::buffer<std::int8_t> da(A), db(B);
  const auto s = lowbit::cuda::int8_gemm_fallback(da.get() + offset, lda, db.get() + offset, ldb, dc.get(), ldc, M, N, K);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dc.download();
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "C element " << i;  // padding kept
}

TEST(Int8Kernels, FallbackGemmIsExact) {
  LOWBIT_SEED_TRACE();
  kt::for_each_order([] {
    check_gemm(1, 5, 3, 0);     // M = 1, K % 4 != 0
    check_gemm(17, 33, 70, 0);  // K not a multiple of 4/16/64, partial tiles
    check_gemm(16, 16, 32, 0);
    check_gemm(3, 20, 97, -1);  // -128 x -127
    check_gemm(5, 7, 129, 1);   // 127 x -127
    // the 128-bit path (aligned, K % 16 == 0): tiles of 64 crossed in M and N, K over several
    // steps of 64 with a partial last one; and the same shapes on the byte path
    check_gemm(70, 130, 160, 0);
    check_gemm(65, 64, 80, 1);
    check_gemm(70, 130, 160, 0, 3, 0);  // strides not multiples of 16
    check_gemm(66, 67, 144, 0, 0, 5);   // A and B not 16-byte aligned
    check_gemm(64, 65, 64, -1, 16, 0);  // padded strides, still 16-byte rows: 128-bit path
  });
}

TEST(Int8Kernels, FallbackGemmErrorsNameTheArgument) {
  kt::buffer<std::int8_t> a(64), b(64);
  kt::buffer<std::int32_t> c(64);
  auto msg = [](const lowbit::status& s) { return std::string(s.message()); };
  auto s = lowbit::cuda::int8_gemm_fallback(a.get(), 3, b.get(), 4, c.get(), 4, 2, 2, 4);
  EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
  EXPECT_NE(msg(s).find("lda=3"), std::string::npos) << msg(s);
  s = lowbit::cuda::int8_gemm_fallback(a.get(), 4, b.get(), 2, c.get(), 4, 2, 2, 4);
  EXPECT_NE(msg(s).find("ldb=2"), std::string::npos) << msg(s);
  s = lowbit::cuda::int8_gemm_fallback(a.get(), 4, b.get(), 4, c.get(), 1, 2, 2, 4);
  EXPECT_NE(msg(s).find("ldc=1"), std::string::npos) << msg(s);
  s = lowbit::cuda::int8_gemm_fallback(a.get(), 4, nullptr, 4, c.get(), 4, 2, 2, 4);
  EXPECT_NE(msg(s).find("B"), std::string::npos) << msg(s);
}

template <class T>
void check_epilogue(std::int64_t M, std::int64_t N, bool outliers, bool bias) {
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + (outliers ? " outliers" : "") + (bias ? " bias" : ""));
  const dtype dt = lowbit::dtype_of<T>::value;
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(M * 3 + N));
  std::uniform_int_distribution<std::int32_t> c(-2000000, 2000000);
  std::uniform_real_distribution<float> u(0.01f, 8.0f), o(-3.0f, 3.0f);
  std::vector<std::int32_t> C(static_cast<std::size_t>(M * N));
  std::vector<float> row(static_cast<std::size_t>(M)), col(static_cast<std::size_t>(N)), out(C.size());
  std::vector<T> b(static_cast<std::size_t>(N));
  for (auto& v : C) v = c(rng);
  C[0] = 0x7FFFFFFF;
  for (auto& v : row) v = u(rng);
  for (auto& v : col) v = u(rng);
  for (auto& v : out) v = o(rng);
  for (auto& v : b) v = lowbit::from_float<T>(o(rng));
  std::vector<T> want(C.size());
  ASSERT_TRUE(lowbit::int8_epilogue(C.data(), M, N, row.data(), col.data(), outliers ? out.data() : nullptr,
                                    bias ? b.data() : nullptr, dt, want.data())
                  .ok());
  kt::buffer<std::int32_t> dC(C);
  kt::buffer<float> drow(row), dcol(col), dout(out);
  kt::buffer<T> db(b), dy(C.size());
  const auto s = lowbit::cuda::int8_epilogue(dC.get(), M, N, drow.get(), dcol.get(), outliers ? dout.get() : nullptr,
                                             bias ? db.get() : nullptr, dt, dy.get());
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dy.download();
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(T)), 0) << "output " << i;
}

TEST(Int8Kernels, EpilogueMatchesHost) {
  LOWBIT_SEED_TRACE();
  kt::for_each_order([] {
    for (bool o : {false, true})
      for (bool b : {false, true}) {
        check_epilogue<float>(7, 45, o, b);
        check_epilogue<lowbit::f16>(3, 33, o, b);
        check_epilogue<lowbit::bf16>(2, 70, o, b);
        // several column tiles (1024 columns) of a row with a partial last one; more rows than
        // the grid has rows of CTAs (1024 with one tile), so that CTAs loop over rows
        check_epilogue<float>(2, 2 * 1024 + 77, o, b);
        check_epilogue<lowbit::bf16>(1030, 3, o, b);
      }
  });
}

template <class T>
void check_matmul(std::int64_t M, std::int64_t K, std::int64_t N, float threshold,
                  lowbit::int8::matmul_mode mode = lowbit::int8::matmul_mode::split) {
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + " " + std::to_string(M) + "x" +
               std::to_string(K) + "x" + std::to_string(N) + " threshold " + std::to_string(threshold) +
               (mode == lowbit::int8::matmul_mode::weight_only ? " weight_only" : " split"));
  const dtype dt = lowbit::dtype_of<T>::value;
  const auto x = activations<T>(M, K, 77);
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 78);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<T> w(static_cast<std::size_t>(N * K)), b(static_cast<std::size_t>(N));
  for (auto& v : w) v = lowbit::from_float<T>(nd(rng));
  for (auto& v : b) v = lowbit::from_float<T>(nd(rng));
  lowbit::quant_tensor wq;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dt, N, K, wq).ok());
  lowbit::int8_matmul_options o;
  o.threshold = threshold;
  o.mode = mode;
  std::vector<T> want(static_cast<std::size_t>(M * N));
  ASSERT_TRUE(lowbit::int8_matmul(x.data(), dt, M, K, wq, b.data(), want.data(), o).ok());
  std::vector<std::int8_t> cb(static_cast<std::size_t>(N * K));
  std::memcpy(cb.data(), wq.codes(), cb.size());
  std::vector<float> scb(wq.scales(), wq.scales() + N);
  kt::buffer<T> dx(x), db(b), dy(want.size());
  kt::buffer<std::int8_t> dcb(cb);
  kt::buffer<float> dscb(scb);
  const std::size_t wsb = lowbit::cuda::int8_matmul_workspace_size(M, K, N, dt);
  kt::buffer<unsigned char> ws(wsb);
  lowbit::cuda::int8_weights dw{dcb.get(), dscb.get(), N, K};
  const lowbit::cuda::int8_handles none{};
  const auto s = lowbit::cuda::int8_matmul(none, dx.get(), dt, M, K, dw, db.get(), dy.get(), threshold, ws.get(), wsb,
                                           nullptr, mode);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dy.download();
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(T)), 0) << "y element " << i;
}

TEST(Int8Kernels, MatmulKernelPathMatchesHostBitForBit) {
  LOWBIT_SEED_TRACE();
  kt::for_each_order([] {
    for (float t : {0.0f, 6.0f}) {
      check_matmul<float>(5, 37, 19, t);
      check_matmul<lowbit::f16>(1, 64, 9, t);
      check_matmul<lowbit::bf16>(4, 30, 17, t);
    }
    check_matmul<float>(5, 37, 19, 6.0f, lowbit::int8::matmul_mode::weight_only);
    check_matmul<lowbit::f16>(6, 40, 35, 6.0f, lowbit::int8::matmul_mode::weight_only);
    check_matmul<lowbit::bf16>(4, 30, 17, 0.0f, lowbit::int8::matmul_mode::weight_only);
    // the gathers over more than one column tile (K = 1100 columns), and with CTAs that loop over
    // rows: M = 1030 rows of X, N = 1030 rows of weights (and epilogue columns over two tiles)
    check_matmul<lowbit::bf16>(2, 1100, 3, 0.0f, lowbit::int8::matmul_mode::weight_only);
    check_matmul<lowbit::f16>(1030, 6, 3, 0.0f, lowbit::int8::matmul_mode::weight_only);
    check_matmul<float>(2, 5, 1030, 0.0f, lowbit::int8::matmul_mode::weight_only);
  });
}

TEST(Int8Kernels, MatmulErrors) {
  std::vector<float> x(8, 1.0f);
  kt::buffer<float> dx(x), dy(8);
  kt::buffer<std::int8_t> dcb(16);
  kt::buffer<float> dscb(2);
  kt::buffer<unsigned char> ws(lowbit::cuda::int8_matmul_workspace_size(4, 2, 2, dtype::f32));
  lowbit::cuda::int8_weights w{dcb.get(), dscb.get(), 2, 8};
  const lowbit::cuda::int8_handles none{};
  auto s = lowbit::cuda::int8_matmul(none, dx.get(), dtype::f32, 4, 2, w, nullptr, dy.get(), 6.0f, ws.get(), 1 << 20);
  EXPECT_NE(std::string(s.message()).find("K mismatch"), std::string::npos) << s.message();
  w.k = 2;
  s = lowbit::cuda::int8_matmul(none, dx.get(), dtype::f32, 4, 2, w, nullptr, dy.get(), 6.0f, ws.get(), 16);
  EXPECT_NE(std::string(s.message()).find("workspace"), std::string::npos) << s.message();
  s = lowbit::cuda::int8_matmul(none, dx.get(), dtype::f32, 0, 2, w, nullptr, dy.get(), 6.0f, ws.get(), 1 << 20);
  EXPECT_NE(std::string(s.message()).find("M=0"), std::string::npos) << s.message();
  s = lowbit::cuda::int8_matmul(none, dx.get(), dtype::f32, 4, 2, w, nullptr, dy.get(), -1.0f, ws.get(), 1 << 20, nullptr,
                                lowbit::int8::matmul_mode::weight_only);
  EXPECT_NE(std::string(s.message()).find("threshold"), std::string::npos) << s.message();
  s = lowbit::cuda::int8_matmul(none, dx.get(), dtype::f32, 4, 2, w, nullptr, dy.get(), 6.0f, ws.get(), 1 << 20, nullptr,
                                static_cast<lowbit::int8::matmul_mode>(9));
  EXPECT_NE(std::string(s.message()).find("mode 9"), std::string::npos) << s.message();
}


// ---- the library paths: cuBLASLt int8 GEMM and cuBLAS outlier GEMM -----------------------------
// Run on a GPU with NVIDIA's libraries and in the SIMT build with the stand-in
// (kernels/lowbit/simt/cublas.hpp): the launchers are the same code in both.

/// One cuBLASLt and one cuBLAS handle for a test.
struct library_handles {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  library_handles() {
    EXPECT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  }
  ~library_handles() {
    EXPECT_EQ(cublasDestroy(blas), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtDestroy(lt), CUBLAS_STATUS_SUCCESS);
  }
  library_handles(const library_handles&) = delete;
  library_handles& operator=(const library_handles&) = delete;
};

/// A cuBLASLt workspace: `bytes` bytes at a 256-byte aligned address inside a device buffer.
struct lt_workspace {
  explicit lt_workspace(std::size_t bytes) : bytes(bytes), storage(bytes + 256) {
    const auto a = reinterpret_cast<std::uintptr_t>(storage.get());
    ptr = storage.get() + (256 - a % 256) % 256;
  }
  std::size_t bytes;
  kt::buffer<unsigned char> storage;
  unsigned char* ptr = nullptr;
};

/// C = A · Bᵀ through int8_gemm_cublaslt against the host's int32 products (exact). Shapes that
/// cuBLASLt's int8 kernels do not take (K or N not a multiple of 4, `offset` making A unaligned)
/// must come back with used == false, nothing launched; int8_gemm_fallback then gives the products.
void check_cublaslt_gemm(cublasLtHandle_t lt, std::int64_t M, std::int64_t N, std::int64_t K, int extreme, int offset,
                         std::size_t ws_bytes) {
  SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " extreme " +
               std::to_string(extreme) + " offset " + std::to_string(offset) + " workspace " + std::to_string(ws_bytes));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(M * 5 + N * 11 + K));
  std::uniform_int_distribution<int> code(-128, 127);
  std::vector<std::int8_t> A(static_cast<std::size_t>(M * K)), B(static_cast<std::size_t>(N * K));
  for (auto& v : A) v = static_cast<std::int8_t>(extreme ? -128 : code(rng));
  for (auto& v : B) v = static_cast<std::int8_t>(extreme ? (extreme < 0 ? -128 : 127) : code(rng));
  std::vector<std::int32_t> want(static_cast<std::size_t>(M * N));
  ASSERT_TRUE(lowbit::host::int8_gemm(A.data(), K, B.data(), K, want.data(), N, M, N, K).ok());
  std::vector<std::int8_t> padded(A.size() + static_cast<std::size_t>(offset));
  std::copy(A.begin(), A.end(), padded.begin() + offset);
  kt::buffer<std::int8_t> da(padded), db(B);
  kt::buffer<std::int32_t> dc(want.size());
  lt_workspace ws(ws_bytes);
  const bool takes = K % 4 == 0 && N % 4 == 0 && offset % 16 == 0;
  const auto before = kt::library_call_counts();
  bool used = !takes;
  auto s = lowbit::cuda::int8_gemm_cublaslt(lt, da.get() + offset, db.get(), dc.get(), M, N, K,
                                            ws_bytes ? ws.ptr : nullptr, ws_bytes, nullptr, &used);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto after = kt::library_call_counts();
  if (!takes) {
    EXPECT_FALSE(used) << "cuBLASLt's int8 kernels need K and N multiples of 4 and aligned pointers";
    if (after.counted) {
      EXPECT_EQ(after.lt_matmul, before.lt_matmul) << "nothing may be launched";
    }
    s = lowbit::cuda::int8_gemm_fallback(da.get() + offset, K, db.get(), K, dc.get(), N, M, N, K);
    ASSERT_TRUE(s.ok()) << s.message();
  } else if (after.counted) {
    EXPECT_TRUE(used) << "the stand-in has an algorithm for every TN shape with K, N multiples of 4";
    EXPECT_EQ(after.lt_matmul, before.lt_matmul + 1);
  } else if (!used) {
    return;  // this GPU's cuBLASLt has no int8 kernel for the shape
  }
  const auto got = dc.download();
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "C element " << i;
}

TEST(Int8Libraries, CublasLtGemmExactOrDeclined) {
  LOWBIT_SEED_TRACE();
  library_handles h;
  kt::for_each_order([&] {
    for (std::size_t ws : {std::size_t{0}, std::size_t{1} << 20}) {
      check_cublaslt_gemm(h.lt, 33, 96, 64, 0, 0, ws);
      check_cublaslt_gemm(h.lt, 1, 128, 256, 0, 0, ws);
      check_cublaslt_gemm(h.lt, 7, 20, 1028, -1, 0, ws);  // -128 x -128 sums: 1028 * 16384
      check_cublaslt_gemm(h.lt, 5, 8, 96, 1, 0, ws);      // -128 x 127
      check_cublaslt_gemm(h.lt, 8, 8, 30, 0, 0, ws);      // K % 4 != 0: declined, fallback kernel
      check_cublaslt_gemm(h.lt, 4, 6, 8, 0, 0, ws);       // N % 4 != 0: declined, fallback kernel
      check_cublaslt_gemm(h.lt, 4, 8, 8, 0, 4, ws);       // A only 4-byte aligned: declined, fallback kernel
    }
  });
  // A workspace that is not 256-byte aligned is the caller's error (cuBLASLt requires it).
  kt::buffer<std::int8_t> da(64), db(64);
  kt::buffer<std::int32_t> dc(64);
  lt_workspace ws(1024);
  bool used = true;
  const auto s = lowbit::cuda::int8_gemm_cublaslt(h.lt, da.get(), db.get(), dc.get(), 4, 4, 16, ws.ptr + 16, 512, nullptr, &used);
  EXPECT_EQ(s.code(), lowbit::errc::misaligned) << s.message();
  EXPECT_FALSE(used);
}

/// The outlier GEMM through cuBLAS (int8_outlier_gemm_cublas): out [M, N] = xo [M, count] · wo [N, count]ᵀ
/// in float32. Against the host's order (int8::outlier_step, j increasing) and an exact double
/// reference (the products of two 16-bit or float32 values are exact in double; the sums of at most
/// 333 such terms lose no more than double rounding, far below the bounds): both are within
/// gamma_count * sum_j |xo_mj wo_nj| of the exact sum, gamma_c = c u / (1 - c u), u = 2^-24, so they
/// differ from each other by at most twice that.
template <class T>
void check_outlier_gemm(cublasHandle_t blas, std::int64_t M, std::int64_t N, std::int64_t count) {
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + " " + std::to_string(M) + "x" +
               std::to_string(N) + " count " + std::to_string(count));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(count * 31 + M));
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<T> xo(static_cast<std::size_t>(M * count)), wo(static_cast<std::size_t>(N * count));
  for (auto& v : xo) v = lowbit::from_float<T>(nd(rng));
  for (auto& v : wo) v = lowbit::from_float<T>(nd(rng) * 0.01f);
  kt::buffer<T> dxo(xo), dwo(wo);
  kt::buffer<float> dout(static_cast<std::size_t>(M * N));
  const auto s = lowbit::cuda::int8_outlier_gemm_cublas(blas, dxo.get(), dwo.get(), lowbit::dtype_of<T>::value, M, N, count,
                                                       dout.get());
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dout.download();
  const double u = std::ldexp(1.0, -24), c = static_cast<double>(count);
  const double gamma = c * u / (1.0 - c * u);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      float host = 0.0f;
      double exact = 0.0, mag = 0.0;
      for (std::int64_t j = 0; j < count; ++j) {
        const float a = lowbit::to_float(xo[m * count + j]), b = lowbit::to_float(wo[n * count + j]);
        host = lowbit::int8::outlier_step(host, a, b);
        exact += static_cast<double>(a) * b;
        mag += std::fabs(static_cast<double>(a) * b);
      }
      const float lib = got[static_cast<std::size_t>(m * N + n)];
      ASSERT_LE(std::fabs(lib - exact), gamma * mag) << "(" << m << ", " << n << ") against the exact sum";
      ASSERT_LE(std::fabs(host - exact), gamma * mag) << "(" << m << ", " << n << ") host against the exact sum";
      ASSERT_LE(std::fabs(static_cast<double>(lib) - host), 2 * gamma * mag) << "(" << m << ", " << n << ") against the host";
    }
}

TEST(Int8Libraries, OutlierGemmWithinFloatRoundingOfHost) {
  LOWBIT_SEED_TRACE();
  library_handles h;
  for (std::int64_t count : {1, 15, 16, 17, 100, 333}) {
    check_outlier_gemm<float>(h.blas, 3, 5, count);
    check_outlier_gemm<lowbit::f16>(h.blas, 4, 3, count);
    check_outlier_gemm<lowbit::bf16>(h.blas, 2, 6, count);
  }
}

/// 2^-(p-1) times the power of two at or below max(|v|, FLT_MIN): one unit in the last place of a
/// p-bit significand at v.
inline float ulp_at(float v, int p) {
  v = std::fabs(v);
  if (!(v > std::numeric_limits<float>::min())) v = std::numeric_limits<float>::min();
  return std::ldexp(1.0f, std::ilogb(v) - (p - 1));
}

/// int8_matmul with handles against the host engine:
/// - cuBLASLt only (`blas` null): y equals the host's bit for bit (the int32 products are exact and
///   the outlier sums run in the lowbit kernel, the host's order);
/// - cuBLASLt and cuBLAS: the outlier sums (count terms, 16-bit or float32 inputs, float32
///   accumulation in the library's order) differ from the host's by at most
///   2 gamma_count * sum_j |x_mj w_nj|, gamma_c = c u / (1 - c u), u = 2^-24 (each order is within
///   gamma_count of the exact sum, the products being exact for 16-bit inputs and rounded once for
///   float32 in both); the epilogue's rounded add and the rounding to T then move y by at most one
///   float32 ulp and one ulp of T: |y - y_host| <= bound + 2 ulp_T(|y_host| + bound).
template <class T>
void check_matmul_libraries(cublasLtHandle_t lt, cublasHandle_t blas, std::int64_t M, std::int64_t K, std::int64_t N,
                            float threshold, lowbit::int8::matmul_mode mode) {
  const bool weight_only = mode == lowbit::int8::matmul_mode::weight_only;
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + " " + std::to_string(M) + "x" +
               std::to_string(K) + "x" + std::to_string(N) + " threshold " + std::to_string(threshold) +
               (weight_only ? " weight_only" : " split") + (blas ? " cuBLASLt+cuBLAS" : " cuBLASLt"));
  const dtype dt = lowbit::dtype_of<T>::value;
  const auto x = activations<T>(M, K, 177);
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 178);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<T> w(static_cast<std::size_t>(N * K)), b(static_cast<std::size_t>(N));
  for (auto& v : w) v = lowbit::from_float<T>(nd(rng));
  for (auto& v : b) v = lowbit::from_float<T>(nd(rng));
  lowbit::quant_tensor wq;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dt, N, K, wq).ok());
  lowbit::int8_matmul_options o;
  o.threshold = threshold;
  o.mode = mode;
  std::vector<T> want(static_cast<std::size_t>(M * N));
  ASSERT_TRUE(lowbit::int8_matmul(x.data(), dt, M, K, wq, b.data(), want.data(), o).ok());
  // The columns that go through the outlier GEMM, as the host engine picks them.
  std::vector<std::int32_t> cols;
  if (weight_only) {
    for (std::int64_t k = 0; k < K; ++k) cols.push_back(static_cast<std::int32_t>(k));
  } else {
    std::vector<std::int8_t> codes(x.size());
    std::vector<float> stats(static_cast<std::size_t>(M));
    std::vector<std::int32_t> all(static_cast<std::size_t>(K));
    std::int64_t count = 0;
    ASSERT_TRUE(lowbit::int8_vectorwise_quant(x.data(), dt, M, K, threshold, codes.data(), stats.data(), all.data(), &count).ok());
    cols.assign(all.begin(), all.begin() + count);
  }
  std::vector<std::int8_t> cb(static_cast<std::size_t>(N * K));
  std::memcpy(cb.data(), wq.codes(), cb.size());
  std::vector<float> scb(wq.scales(), wq.scales() + N);
  kt::buffer<T> dx(x), db(b), dy(want.size());
  kt::buffer<std::int8_t> dcb(cb);
  kt::buffer<float> dscb(scb);
  const std::size_t wsb = lowbit::cuda::int8_matmul_workspace_size(M, K, N, dt);
  kt::buffer<unsigned char> ws(wsb);
  lt_workspace ltws(std::size_t{1} << 16);
  lowbit::cuda::int8_handles h;
  h.lt = lt;
  h.blas = blas;
  h.lt_workspace = ltws.ptr;
  h.lt_workspace_bytes = ltws.bytes;
  const auto before = kt::library_call_counts();
  const auto s = lowbit::cuda::int8_matmul(h, dx.get(), dt, M, K, {dcb.get(), dscb.get(), N, K}, db.get(), dy.get(),
                                           threshold, ws.get(), wsb, nullptr, mode);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto after = kt::library_call_counts();
  if (after.counted) {
    const bool lt_takes = !weight_only && K % 4 == 0 && N % 4 == 0;
    EXPECT_EQ(after.lt_matmul - before.lt_matmul, lt_takes ? 1u : 0u) << "cuBLASLt used iff it takes the shape";
    EXPECT_EQ(after.gemm_ex - before.gemm_ex, blas && !cols.empty() ? 1u : 0u) << "cuBLAS used iff there are outliers";
  }
  const auto got = dy.download();
  const int p = dt == dtype::f32 ? 24 : (dt == dtype::f16 ? 11 : 8);
  const double u = std::ldexp(1.0, -24), c = static_cast<double>(cols.size());
  const double gamma = c * u / (1.0 - c * u);
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < N; ++n) {
      const std::size_t i = static_cast<std::size_t>(m * N + n);
      if (!blas) {
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(T)), 0) << "y element " << i << ": the cuBLASLt path must be exact";
        continue;
      }
      double mag = 0.0;
      for (std::int32_t k : cols) {
        const float wv = lowbit::to_float(lowbit::from_float<T>(lowbit::int8::dequant_weight(cb[n * K + k], scb[n])));
        mag += std::fabs(static_cast<double>(lowbit::to_float(x[m * K + k])) * wv);
      }
      const float bound = static_cast<float>(2.0 * gamma * mag);
      const float yh = lowbit::to_float(want[i]), yc = lowbit::to_float(got[i]);
      const float tol = bound + 2.0f * ulp_at(std::fabs(yh) + bound, p);
      ASSERT_LE(std::fabs(yc - yh), tol) << "y element " << i << " (" << m << ", " << n << "): " << yc << " vs host " << yh
                                         << ", outlier-sum bound " << bound;
    }
}

TEST(Int8Libraries, MatmulWithHandlesMatchesHost) {
  LOWBIT_SEED_TRACE();
  library_handles h;
  using lowbit::int8::matmul_mode;
  kt::for_each_order([&] {
    for (cublasHandle_t blas : {static_cast<cublasHandle_t>(nullptr), h.blas}) {
      for (float t : {0.0f, 6.0f}) {
        check_matmul_libraries<float>(h.lt, blas, 5, 40, 20, t, matmul_mode::split);  // cuBLASLt takes it
        check_matmul_libraries<lowbit::f16>(h.lt, blas, 6, 64, 36, t, matmul_mode::split);
        check_matmul_libraries<lowbit::bf16>(h.lt, blas, 4, 96, 12, t, matmul_mode::split);
        check_matmul_libraries<lowbit::f16>(h.lt, blas, 3, 37, 8, t, matmul_mode::split);  // K % 4 != 0: fallback
        check_matmul_libraries<float>(h.lt, blas, 2, 16, 10, t, matmul_mode::split);       // N % 4 != 0: fallback
      }
      check_matmul_libraries<lowbit::f16>(h.lt, blas, 4, 72, 12, 6.0f, matmul_mode::weight_only);  // 72 terms
      check_matmul_libraries<lowbit::bf16>(h.lt, blas, 3, 40, 8, 0.0f, matmul_mode::weight_only);
      check_matmul_libraries<float>(h.lt, blas, 2, 33, 4, 6.0f, matmul_mode::weight_only);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}
}  // namespace kt8
