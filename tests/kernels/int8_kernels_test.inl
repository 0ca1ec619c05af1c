// SPDX-License-Identifier: Apache-2.0
// The LLM.int8 CUDA launchers against the host engine, bit for bit: codes, row statistics,
// outlier column lists, the fallback int32 GEMM, the epilogue, and the whole matmul on the
// kernel-only path. Included by int8_simt_test.cpp (SIMT executor, forward/reverse/random thread
// orders) and int8_device_test.cu (a GPU; skipped without one). The including file defines
// `kt::buffer<T>` and `kt::for_each_order(fn)` and includes gtest.

#include <lowbit/int8/matmul.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
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

template <class T>
void check_quant(std::int64_t rows, std::int64_t cols, float threshold, int shift) {
  LOWBIT_SEED_TRACE();
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + " " + std::to_string(rows) + "x" +
               std::to_string(cols) + " threshold " + std::to_string(threshold) + " shift " + std::to_string(shift));
  const dtype dt = lowbit::dtype_of<T>::value;
  const auto x = activations<T>(rows, cols, static_cast<std::uint64_t>(rows * 131 + cols));
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
  kt::buffer<std::int8_t> dcodes(n + 16);
  kt::buffer<float> dstats(static_cast<std::size_t>(rows));
  kt::buffer<std::int32_t> dcols(static_cast<std::size_t>(cols));
  const std::size_t wsb = lowbit::cuda::int8_quant_workspace_size(rows, cols);
  kt::buffer<unsigned char> ws(wsb + 16);
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

void check_gemm(std::int64_t M, std::int64_t N, std::int64_t K, int extreme) {
  SCOPED_TRACE(std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) + " extreme " + std::to_string(extreme));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(M * 7 + N * 13 + K));
  std::uniform_int_distribution<int> code(-128, 127);
  std::vector<std::int8_t> A(static_cast<std::size_t>(M * K)), B(static_cast<std::size_t>(N * K));
  for (auto& v : A) v = static_cast<std::int8_t>(extreme ? (extreme < 0 ? -128 : 127) : code(rng));
  for (auto& v : B) v = static_cast<std::int8_t>(extreme ? -127 : code(rng));
  std::vector<std::int32_t> want(static_cast<std::size_t>(M * N));
  ASSERT_TRUE(lowbit::host::int8_gemm(A.data(), K, B.data(), K, want.data(), N, M, N, K).ok());
  kt::buffer<std::int8_t> da(A), db(B);
  kt::buffer<std::int32_t> dc(want.size());
  const auto s = lowbit::cuda::int8_gemm_fallback(da.get(), K, db.get(), K, dc.get(), N, M, N, K);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dc.download();
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "C element " << i;
}

TEST(Int8Kernels, FallbackGemmIsExact) {
  LOWBIT_SEED_TRACE();
  kt::for_each_order([] {
    check_gemm(1, 5, 3, 0);     // M = 1, K % 4 != 0
    check_gemm(17, 33, 70, 0);  // K not a multiple of 4/16/64, partial tiles
    check_gemm(16, 16, 32, 0);
    check_gemm(3, 20, 97, -1);  // -128 x -127
    check_gemm(5, 7, 129, 1);   // 127 x -127
  });
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

}  // namespace kt8
