// SPDX-License-Identifier: Apache-2.0
// The LLM.int8 CUDA launchers with their kernels run on the SIMT executor (the same kernel
// source, compiled by g++/clang++), in forward, reverse and random thread orders, strict mode,
// against the host engine. See int8_kernels_test.inl; its library-path tests run here against the
// cuBLAS(Lt) stand-in (kernels/lowbit/simt/cublas.hpp). This file adds the stand-in's own tests:
// its results against independent references, and every argument rule it implements returning the
// status NVIDIA's documentation gives (cublas_api_conformance.cpp checks its declarations against
// the real headers).
#include <lowbit/cuda/int8.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "simt_harness.hpp"
#include "test_util.hpp"

#include "int8_kernels_test.inl"

namespace {

using kt8::lt_workspace;
using lowbit::dtype;

/// Descriptors of one int8 cuBLASLt problem, destroyed at the end of the scope.
struct lt_problem {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr, d = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  /// D (m x n, ldd) = op(A) op(B) + C with int8 A (stored rows_a x cols_a, lda), B (rows_b x cols_b, ldb).
  lt_problem(cublasOperation_t ta, cublasOperation_t tb, std::uint64_t rows_a, std::uint64_t cols_a, std::int64_t lda,
             std::uint64_t rows_b, std::uint64_t cols_b, std::int64_t ldb, std::uint64_t m, std::uint64_t n,
             std::int64_t ldc, std::int64_t ldd, cudaDataType_t scale = CUDA_R_32I) {
    EXPECT_EQ(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, scale), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&a, CUDA_R_8I, rows_a, cols_a, lda), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&b, CUDA_R_8I, rows_b, cols_b, ldb), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&c, CUDA_R_32I, m, n, ldc), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatrixLayoutCreate(&d, CUDA_R_32I, m, n, ldd), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
  }
  /// TN, dense: A stored k x m, B k x n, C and D m x n.
  lt_problem(std::uint64_t m, std::uint64_t n, std::uint64_t k)
      : lt_problem(CUBLAS_OP_T, CUBLAS_OP_N, k, m, static_cast<std::int64_t>(k), k, n, static_cast<std::int64_t>(k), m,
                   n, static_cast<std::int64_t>(m), static_cast<std::int64_t>(m)) {}
  ~lt_problem() {
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(d);
    cublasLtMatrixLayoutDestroy(c);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatmulDescDestroy(op);
  }
  void set_workspace(std::uint64_t bytes) {
    EXPECT_EQ(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof bytes),
        CUBLAS_STATUS_SUCCESS);
  }
  void set_alignments(std::uint32_t align) {
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
      EXPECT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align), CUBLAS_STATUS_SUCCESS);
  }
  cublasStatus_t heuristic(cublasLtHandle_t lt, cublasLtMatmulHeuristicResult_t* r, int* found, int requested = 1) {
    return cublasLtMatmulAlgoGetHeuristic(lt, op, a, b, c, d, pref, requested, r, found);
  }
};

/// Memory aligned to 256 bytes (as cudaMalloc's) for `n` elements of T.
template <class T>
struct aligned_buffer {
  explicit aligned_buffer(std::size_t n) : raw(n * sizeof(T) + 256) {
    const auto a = reinterpret_cast<std::uintptr_t>(raw.data());
    p = reinterpret_cast<T*>(raw.data() + (256 - a % 256) % 256);
  }
  std::vector<unsigned char> raw;
  T* p;
};

std::string why() { return std::string("stand-in: ") + lowbit::simt::cublas_last_error(); }

// The kernels' float16 conversion (half_bits_to_float, as the executor runs it) equals the host
// engine's on all 65536 inputs; on a GPU it is one cvt.f32.f16, exact by the PTX ISA.
TEST(Int8KernelHelpers, F16ConversionIsTheHostsOnEveryInput) {
  for (unsigned h = 0; h < 65536u; ++h) {
    const float want = lowbit::f16_bits_to_float(static_cast<std::uint16_t>(h));
    ASSERT_EQ(lowbit_test::bits_of(lowbit::cuda::detail::half_bits_to_float(static_cast<std::uint16_t>(h))), lowbit_test::bits_of(want))
        << std::hex << h;
  }
}

// outlier_bits<T>(threshold): for every finite value of the 16-bit types, |v|'s bits at or above it
// is exactly int8::is_outlier; for float32 around the threshold and at the ends.
template <class T>
void check_outlier_bits(float threshold) {
  namespace d = lowbit::cuda::int8_detail;
  const unsigned from = d::outlier_bits<T>(threshold);
  ASSERT_LE(from, d::nonfinite_bits<T>);
  if constexpr (sizeof(T) == 2) {
    for (unsigned h = 0; h < 65536u; ++h) {
      const unsigned a = h & 0x7FFFu;
      if (a >= d::nonfinite_bits<T>) continue;
      const float v = lowbit::to_float(T{static_cast<std::uint16_t>(h)});
      ASSERT_EQ(a >= from, lowbit::int8::is_outlier(v, threshold)) << std::hex << h << " threshold " << threshold;
    }
  } else {
    const unsigned t = lowbit_test::bits_of(threshold) & 0x7FFFFFFFu;
    for (unsigned base : {0u, 1u, t, 0x7F7FFFFFu})
      for (unsigned a = base > 64 ? base - 64 : 0; a < base + 64 && a < 0x7F800000u; ++a)
        for (unsigned sign : {0u, 0x80000000u}) {
          float v;
          const unsigned bits = a | sign;
          std::memcpy(&v, &bits, 4);
          ASSERT_EQ(a >= from, lowbit::int8::is_outlier(v, threshold)) << std::hex << bits << " threshold " << threshold;
        }
  }
}

TEST(Int8KernelHelpers, OutlierBitsAreIsOutlier) {
  for (float t : {0.0f, 6.0f, 1e-40f, 1e-7f, 0.1f, 65504.0f, 65505.0f, 70000.0f, 3.0e38f, 3.4028235e38f}) {
    check_outlier_bits<lowbit::f16>(t);
    check_outlier_bits<lowbit::bf16>(t);
    check_outlier_bits<float>(t);
  }
}

// D = alpha op(A) op(B) + beta C in wrapping int32 against a plain int64 triple loop, with leading
// dimensions above the rows (a sub-matrix), C and D distinct, alpha and beta not 1/0, both algorithms.
TEST(CublasStandIn, LtMatmulComputesTheDocumentedProduct) {
  LOWBIT_SEED_TRACE();
  kt8::library_handles h;
  const std::int64_t m = 12, n = 5, k = 36, lda = 40, ldb = 44, ldc = 16, ldd = 20;
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 0xC0B1A5ull);
  std::uniform_int_distribution<int> code(-128, 127), big(-2000000000, 2000000000);
  aligned_buffer<std::int8_t> A(static_cast<std::size_t>(lda * m)), B(static_cast<std::size_t>(ldb * n));
  aligned_buffer<std::int32_t> C(static_cast<std::size_t>(ldc * n)), D(static_cast<std::size_t>(ldd * n));
  for (std::int64_t i = 0; i < lda * m; ++i) A.p[i] = static_cast<std::int8_t>(code(rng));
  for (std::int64_t i = 0; i < ldb * n; ++i) B.p[i] = static_cast<std::int8_t>(code(rng));
  for (std::int64_t i = 0; i < ldc * n; ++i) C.p[i] = big(rng);
  for (std::uint64_t ws : {std::uint64_t{0}, std::uint64_t{1} << 16}) {
    SCOPED_TRACE("max workspace " + std::to_string(ws));
    for (std::int64_t i = 0; i < ldd * n; ++i) D.p[i] = 0x5A5A5A5A;
    lt_problem pr(CUBLAS_OP_T, CUBLAS_OP_N, k, m, lda, k, n, ldb, m, n, ldc, ldd);
    pr.set_workspace(ws);
    cublasLtMatmulHeuristicResult_t r[2]{};
    int found = 0;
    ASSERT_EQ(pr.heuristic(h.lt, r, &found, 2), CUBLAS_STATUS_SUCCESS) << why();
    ASSERT_EQ(found, ws ? 2 : 1);
    EXPECT_EQ(r[0].workspaceSize, ws ? std::size_t{8 * m * n} : 0u);
    aligned_buffer<unsigned char> wsbuf(ws ? ws : 1);
    const std::int32_t alpha = 3, beta = -7;
    ASSERT_EQ(cublasLtMatmul(h.lt, pr.op, &alpha, A.p, pr.a, B.p, pr.b, &beta, C.p, pr.c, D.p, pr.d, &r[0].algo,
                             ws ? wsbuf.p : nullptr, ws, nullptr),
              CUBLAS_STATUS_SUCCESS)
        << why();
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t i = 0; i < ldd; ++i) {
        if (i >= m) {
          ASSERT_EQ(D.p[i + j * ldd], 0x5A5A5A5A) << "D written outside its m rows";
          continue;
        }
        std::int64_t s = 0;
        for (std::int64_t l = 0; l < k; ++l) s += std::int64_t{A.p[l + i * lda]} * B.p[l + j * ldb];
        const std::int64_t full = alpha * s + beta * std::int64_t{C.p[i + j * ldc]};
        const auto want = static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint64_t>(full)));
        ASSERT_EQ(D.p[i + j * ldd], want) << "D(" << i << ", " << j << ")";
      }
  }
  // beta = 0: C is not read (it may be null), and a null algo runs the implicit heuristic.
  lt_problem pr(CUBLAS_OP_T, CUBLAS_OP_N, k, m, lda, k, n, ldb, m, n, ldc, ldd);
  const std::int32_t one = 1, zero = 0;
  ASSERT_EQ(cublasLtMatmul(h.lt, pr.op, &one, A.p, pr.a, B.p, pr.b, &zero, nullptr, pr.c, D.p, pr.d, nullptr, nullptr,
                           0, nullptr),
            CUBLAS_STATUS_SUCCESS)
      << why();
  std::int64_t s = 0;
  for (std::int64_t l = 0; l < k; ++l) s += std::int64_t{A.p[l + 2 * lda]} * B.p[l + 3 * ldb];
  EXPECT_EQ(D.p[2 + 3 * ldd], s);
}

// Handles and descriptors: null, never created and destroyed ones.
TEST(CublasStandIn, HandlesAndDescriptorsMustBeLive) {
  EXPECT_EQ(cublasLtCreate(nullptr), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasCreate(nullptr), CUBLAS_STATUS_INVALID_VALUE);
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  lt_problem pr(8, 8, 8);
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  ASSERT_EQ(pr.heuristic(lt, &r, &found), CUBLAS_STATUS_SUCCESS) << why();
  ASSERT_EQ(found, 1);
  EXPECT_EQ(pr.heuristic(nullptr, &r, &found), CUBLAS_STATUS_NOT_INITIALIZED);
  aligned_buffer<std::int8_t> A(64), B(64);
  aligned_buffer<std::int32_t> C(64);
  const std::int32_t one = 1, zero = 0;
  auto matmul = [&](cublasLtHandle_t handle) {
    return cublasLtMatmul(handle, pr.op, &one, A.p, pr.a, B.p, pr.b, &zero, C.p, pr.c, C.p, pr.d, &r.algo, nullptr, 0,
                          nullptr);
  };
  EXPECT_EQ(matmul(lt), CUBLAS_STATUS_SUCCESS) << why();
  EXPECT_EQ(matmul(nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
  ASSERT_EQ(cublasLtDestroy(lt), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(matmul(lt), CUBLAS_STATUS_NOT_INITIALIZED) << "a destroyed handle";
  EXPECT_EQ(pr.heuristic(lt, &r, &found), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasLtDestroy(lt), CUBLAS_STATUS_NOT_INITIALIZED) << "destroyed twice";
  EXPECT_EQ(cublasLtDestroy(nullptr), CUBLAS_STATUS_NOT_INITIALIZED);

  EXPECT_EQ(cublasSetStream(blas, nullptr), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasDestroy(blas), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasSetStream(blas, nullptr), CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasDestroy(blas), CUBLAS_STATUS_NOT_INITIALIZED);
  const float a1 = 1.0f, b0 = 0.0f;
  float out[4] = {};
  const float in[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  EXPECT_EQ(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &a1, in, CUDA_R_32F, 2, in, CUDA_R_32F, 2, &b0, out,
                         CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_INITIALIZED);
  EXPECT_EQ(cublasGemmEx(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &a1, in, CUDA_R_32F, 2, in, CUDA_R_32F, 2, &b0,
                         out, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_NOT_INITIALIZED);

  // Descriptors: setters check buf and size; destroyed descriptors are invalid values.
  cublasLtMatmulDesc_t op = nullptr;
  EXPECT_EQ(cublasLtMatmulDescCreate(nullptr, CUBLAS_COMPUTE_32I, CUDA_R_32I), CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_EQ(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32I, CUDA_R_32I), CUBLAS_STATUS_SUCCESS);
  const std::int32_t t = CUBLAS_OP_T;
  const std::int64_t t64 = CUBLAS_OP_T;
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, nullptr, 4), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t64, sizeof t64),
            CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatmulDescDestroy(op), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtMatmulDescDestroy(op), CUBLAS_STATUS_INVALID_VALUE);
  cublasLtMatmulPreference_t pref = nullptr;
  ASSERT_EQ(cublasLtMatmulPreferenceCreate(&pref), CUBLAS_STATUS_SUCCESS);
  const std::uint32_t ws32 = 1024;
  EXPECT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws32, sizeof ws32),
            CUBLAS_STATUS_INVALID_VALUE)
      << "MAX_WORKSPACE_BYTES is a uint64_t";
  EXPECT_EQ(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, nullptr, 4),
            CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_EQ(cublasLtMatmulPreferenceDestroy(pref), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatmulPreferenceDestroy(pref), CUBLAS_STATUS_INVALID_VALUE);
  cublasLtMatrixLayout_t lay = nullptr;
  EXPECT_EQ(cublasLtMatrixLayoutCreate(nullptr, CUDA_R_8I, 4, 4, 4), CUBLAS_STATUS_INVALID_VALUE);
  ASSERT_EQ(cublasLtMatrixLayoutCreate(&lay, CUDA_R_8I, 4, 4, 4), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtMatrixLayoutDestroy(lay), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(cublasLtMatrixLayoutDestroy(lay), CUBLAS_STATUS_INVALID_VALUE);
}

// The heuristic: the documented IMMA requirements and the argument rules.
TEST(CublasStandIn, LtHeuristicAppliesTheDocumentedRules) {
  kt8::library_handles h;
  cublasLtMatmulHeuristicResult_t r[4]{};
  int found = -1;
  {
    lt_problem pr(8, 8, 8);
    EXPECT_EQ(pr.heuristic(h.lt, r, &found, 0), CUBLAS_STATUS_INVALID_VALUE) << "requestedAlgoCount <= 0";
    EXPECT_EQ(pr.heuristic(h.lt, r, nullptr), CUBLAS_STATUS_INVALID_VALUE);
    pr.set_alignments(2);  // IMMA: "All matrix pointers must be 4-byte aligned"
    EXPECT_EQ(pr.heuristic(h.lt, r, &found), CUBLAS_STATUS_SUCCESS) << why();
    EXPECT_EQ(found, 0) << "no algorithm works with 2-byte alignment";
    pr.set_alignments(4);
    EXPECT_EQ(pr.heuristic(h.lt, r, &found), CUBLAS_STATUS_SUCCESS) << why();
    EXPECT_EQ(found, 1);
  }
  struct rule {
    const char* what;
    cublasOperation_t ta, tb;
    std::uint64_t ra, ca;
    std::int64_t lda;
    std::uint64_t rb, cb;
    std::int64_t ldb;
    std::uint64_t m, n;
    std::int64_t ldc;
    cublasStatus_t want;
  };
  // m = 8, n = 12, k = 16 unless the rule says otherwise.
  const rule rules[] = {
      {"TN, everything a multiple of 4", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 12, 16, 8, 12, 8,
       CUBLAS_STATUS_SUCCESS},
      {"NN: IMMA takes only TN", CUBLAS_OP_N, CUBLAS_OP_N, 8, 16, 8, 16, 12, 16, 8, 12, 8, CUBLAS_STATUS_NOT_SUPPORTED},
      {"TT: IMMA takes only TN", CUBLAS_OP_T, CUBLAS_OP_T, 16, 8, 16, 12, 16, 12, 8, 12, 8,
       CUBLAS_STATUS_NOT_SUPPORTED},
      {"NT: IMMA takes only TN", CUBLAS_OP_N, CUBLAS_OP_T, 8, 16, 8, 12, 16, 12, 8, 12, 8, CUBLAS_STATUS_NOT_SUPPORTED},
      {"k = 18 not a multiple of 4", CUBLAS_OP_T, CUBLAS_OP_N, 18, 8, 20, 18, 12, 20, 8, 12, 8,
       CUBLAS_STATUS_NOT_SUPPORTED},
      {"m = 6 not a multiple of 4", CUBLAS_OP_T, CUBLAS_OP_N, 16, 6, 16, 16, 12, 16, 6, 12, 8,
       CUBLAS_STATUS_NOT_SUPPORTED},
      {"lda = 18 not a multiple of 4", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 18, 16, 12, 16, 8, 12, 8,
       CUBLAS_STATUS_NOT_SUPPORTED},
      {"ldc = 10 not a multiple of 4", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 12, 16, 8, 12, 10,
       CUBLAS_STATUS_NOT_SUPPORTED},
      {"n = 5 is free", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 5, 16, 8, 5, 8, CUBLAS_STATUS_SUCCESS},
      {"lda = 12 < rows of A (16)", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 12, 16, 12, 16, 8, 12, 8,
       CUBLAS_STATUS_INVALID_VALUE},
      {"ldb = 8 < rows of B (16)", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 12, 8, 8, 12, 8,
       CUBLAS_STATUS_INVALID_VALUE},
      {"ldc = 4 < m (8)", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 12, 16, 8, 12, 4, CUBLAS_STATUS_INVALID_VALUE},
      {"negative lda", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, -16, 16, 12, 16, 8, 12, 8, CUBLAS_STATUS_INVALID_VALUE},
      {"k of op(A) 16, of op(B) 20", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 20, 12, 20, 8, 12, 8,
       CUBLAS_STATUS_INVALID_VALUE},
      {"C is 8 x 8, not m x n", CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 12, 16, 8, 8, 8, CUBLAS_STATUS_INVALID_VALUE},
  };
  for (const rule& ru : rules) {
    SCOPED_TRACE(ru.what);
    lt_problem pr(ru.ta, ru.tb, ru.ra, ru.ca, ru.lda, ru.rb, ru.cb, ru.ldb, ru.m, ru.n, ru.ldc, ru.ldc);
    found = -1;
    EXPECT_EQ(pr.heuristic(h.lt, r, &found), ru.want) << why();
    if (ru.want == CUBLAS_STATUS_SUCCESS) {
      EXPECT_EQ(found, 1);
    }
    // cublasLtMatmul reports the same (with an implicit heuristic, algo = NULL).
    aligned_buffer<std::int8_t> A(1024), B(1024);
    aligned_buffer<std::int32_t> C(1024);
    const std::int32_t one = 1, zero = 0;
    EXPECT_EQ(cublasLtMatmul(h.lt, pr.op, &one, A.p, pr.a, B.p, pr.b, &zero, C.p, pr.c, C.p, pr.d, nullptr, nullptr, 0,
                             nullptr),
              ru.want)
        << why();
  }
  // Type rows: the int8 row needs scale type CUDA_R_32I with int32 output.
  lt_problem f32scale(CUBLAS_OP_T, CUBLAS_OP_N, 16, 8, 16, 16, 12, 16, 8, 12, 8, 8, CUDA_R_32F);
  EXPECT_EQ(f32scale.heuristic(h.lt, r, &found), CUBLAS_STATUS_NOT_SUPPORTED) << why();
  // TRANSC: "Currently only CUBLAS_OP_N is supported".
  lt_problem transc(8, 8, 8);
  const std::int32_t t = CUBLAS_OP_T;
  ASSERT_EQ(cublasLtMatmulDescSetAttribute(transc.op, CUBLASLT_MATMUL_DESC_TRANSC, &t, sizeof t),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(transc.heuristic(h.lt, r, &found), CUBLAS_STATUS_NOT_SUPPORTED) << why();
  // A transpose value that is no cublasOperation_t.
  lt_problem bad_op(8, 8, 8);
  const std::int32_t seven = 7;
  ASSERT_EQ(cublasLtMatmulDescSetAttribute(bad_op.op, CUBLASLT_MATMUL_DESC_TRANSA, &seven, 4), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(bad_op.heuristic(h.lt, r, &found), CUBLAS_STATUS_INVALID_VALUE) << why();
}

// cublasLtMatmul: workspace, alignment and algo rules.
TEST(CublasStandIn, LtMatmulChecksWorkspaceAlignmentAndAlgo) {
  kt8::library_handles h;
  lt_problem pr(8, 8, 16);
  pr.set_workspace(1 << 12);
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  ASSERT_EQ(pr.heuristic(h.lt, &r, &found), CUBLAS_STATUS_SUCCESS) << why();
  ASSERT_EQ(found, 1);
  ASSERT_EQ(r.workspaceSize, 8u * 8u * 8u) << "the split-K algorithm comes first when its workspace is allowed";
  aligned_buffer<std::int8_t> A(256), B(256);
  aligned_buffer<std::int32_t> C(64);
  aligned_buffer<unsigned char> ws(4096);
  const std::int32_t one = 1, zero = 0;
  auto run = [&](const void* a, void* w, std::size_t bytes, const cublasLtMatmulAlgo_t* algo) {
    return cublasLtMatmul(h.lt, pr.op, &one, a, pr.a, B.p, pr.b, &zero, C.p, pr.c, C.p, pr.d, algo, w, bytes, nullptr);
  };
  EXPECT_EQ(run(A.p, ws.p, 4096, &r.algo), CUBLAS_STATUS_SUCCESS) << why();
  // "when workspaceSizeInBytes is less than workspace required by configured algo"
  EXPECT_EQ(run(A.p, ws.p, r.workspaceSize - 4, &r.algo), CUBLAS_STATUS_INVALID_VALUE) << why();
  EXPECT_EQ(run(A.p, nullptr, 0, &r.algo), CUBLAS_STATUS_INVALID_VALUE) << why();
  // The workspace "Must be 256B aligned".
  EXPECT_EQ(run(A.p, ws.p + 16, 2048, &r.algo), CUBLAS_STATUS_INVALID_VALUE) << why();
  // The algo was chosen for the default 256-byte alignment; A at 16 bytes conflicts with it.
  EXPECT_EQ(run(A.p + 16, ws.p, 4096, &r.algo), CUBLAS_STATUS_INVALID_VALUE) << why();
  // An algo that no heuristic query returned for this problem.
  cublasLtMatmulAlgo_t junk{};
  EXPECT_EQ(run(A.p, ws.p, 4096, &junk), CUBLAS_STATUS_INVALID_VALUE) << why();
  lt_problem other(8, 12, 16);
  cublasLtMatmulHeuristicResult_t r2{};
  ASSERT_EQ(other.heuristic(h.lt, &r2, &found), CUBLAS_STATUS_SUCCESS) << why();
  EXPECT_EQ(run(A.p, ws.p, 4096, &r2.algo), CUBLAS_STATUS_INVALID_VALUE) << "an algo of another problem";
  // Null operands and scalars.
  EXPECT_EQ(run(nullptr, ws.p, 4096, &r.algo), CUBLAS_STATUS_INVALID_VALUE);
  EXPECT_EQ(cublasLtMatmul(h.lt, pr.op, nullptr, A.p, pr.a, B.p, pr.b, &zero, C.p, pr.c, C.p, pr.d, &r.algo, ws.p, 4096,
                           nullptr),
            CUBLAS_STATUS_INVALID_VALUE);
  const std::int32_t two = 2;
  EXPECT_EQ(cublasLtMatmul(h.lt, pr.op, &one, A.p, pr.a, B.p, pr.b, &two, nullptr, pr.c, C.p, pr.d, &r.algo, ws.p, 4096,
                           nullptr),
            CUBLAS_STATUS_INVALID_VALUE)
      << "C is read when beta != 0";
}

// cublasGemmEx: the documented product with transposes and leading dimensions, against a double
// reference (exact for these inputs) within gamma_k sum |a b|, and the documented argument rules.
template <class T>
void check_gemm_ex(cublasHandle_t blas, cudaDataType_t type, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                   int k) {
  SCOPED_TRACE(std::string(lowbit::dtype_name(lowbit::dtype_of<T>::value)) + (ta == CUBLAS_OP_N ? " N" : " T") +
               (tb == CUBLAS_OP_N ? "N " : "T ") + std::to_string(m) + "x" + std::to_string(n) + "x" +
               std::to_string(k));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(m * 1000 + n * 10 + k));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int ra = ta == CUBLAS_OP_N ? m : k, ca = ta == CUBLAS_OP_N ? k : m;
  const int rb = tb == CUBLAS_OP_N ? k : n, cbn = tb == CUBLAS_OP_N ? n : k;
  const int lda = ra + 3, ldb = rb + 1, ldc = m + 2;
  std::vector<T> A(static_cast<std::size_t>(lda * ca)), B(static_cast<std::size_t>(ldb * cbn));
  for (auto& v : A) v = lowbit::from_float<T>(nd(rng));
  for (auto& v : B) v = lowbit::from_float<T>(nd(rng));
  std::vector<float> C(static_cast<std::size_t>(ldc * n)), C0;
  for (auto& v : C) v = nd(rng);
  C0 = C;
  const float alpha = 1.0f, beta = 0.0f;
  ASSERT_EQ(cublasGemmEx(blas, ta, tb, m, n, k, &alpha, A.data(), type, lda, B.data(), type, ldb, &beta, C.data(),
                         CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS)
      << why();
  const double u = std::ldexp(1.0, -24), gamma = k * u / (1.0 - k * u);
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < ldc; ++i) {
      const float got = C[static_cast<std::size_t>(i + j * ldc)];
      if (i >= m) {
        ASSERT_EQ(lowbit_test::bits_of(got), lowbit_test::bits_of(C0[static_cast<std::size_t>(i + j * ldc)]))
            << "C written outside m rows";
        continue;
      }
      double exact = 0.0, mag = 0.0;
      for (int l = 0; l < k; ++l) {
        const double a = lowbit::to_float(A[static_cast<std::size_t>(ta == CUBLAS_OP_N ? i + l * lda : l + i * lda)]);
        const double b = lowbit::to_float(B[static_cast<std::size_t>(tb == CUBLAS_OP_N ? l + j * ldb : j + l * ldb)]);
        exact += a * b;
        mag += std::fabs(a * b);
      }
      // float32 inputs: each product is rounded once as well, within u |ab| more: gamma_{k+1}.
      const double bound = (gamma + 2 * u) * mag;
      ASSERT_LE(std::fabs(got - exact), bound) << "C(" << i << ", " << j << ")";
    }
}

TEST(CublasStandIn, GemmExComputesTheDocumentedProduct) {
  LOWBIT_SEED_TRACE();
  kt8::library_handles h;
  for (auto ta : {CUBLAS_OP_N, CUBLAS_OP_T})
    for (auto tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      check_gemm_ex<float>(h.blas, CUDA_R_32F, ta, tb, 5, 3, 40);
      check_gemm_ex<lowbit::f16>(h.blas, CUDA_R_16F, ta, tb, 4, 6, 70);
      check_gemm_ex<lowbit::bf16>(h.blas, CUDA_R_16BF, ta, tb, 7, 2, 33);
    }
  // alpha and beta: C = 2 A B - 0.5 C, exactly representable here.
  const float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8};
  float C[4] = {8, 8, 8, 8};
  const float alpha = 2.0f, beta = -0.5f;
  ASSERT_EQ(cublasGemmEx(h.blas, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &alpha, A, CUDA_R_32F, 2, B, CUDA_R_32F, 2, &beta,
                         C, CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  // column-major: A = [1 3; 2 4], B = [5 7; 6 8]; A B = [23 31; 34 46]
  EXPECT_EQ(C[0], 2 * 23 - 4.0f);
  EXPECT_EQ(C[1], 2 * 34 - 4.0f);
  EXPECT_EQ(C[2], 2 * 31 - 4.0f);
  EXPECT_EQ(C[3], 2 * 46 - 4.0f);
  // beta = 0: C is not read (NaN there does not propagate).
  float D[4] = {std::nanf(""), std::nanf(""), std::nanf(""), std::nanf("")};
  const float one = 1.0f, zero = 0.0f;
  ASSERT_EQ(cublasGemmEx(h.blas, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, A, CUDA_R_32F, 2, B, CUDA_R_32F, 2, &zero, D,
                         CUDA_R_32F, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(D[0], 23.0f);
}

TEST(CublasStandIn, GemmExAppliesTheDocumentedRules) {
  kt8::library_handles h;
  std::vector<float> buf(256, 1.0f), out(256);
  const float one = 1.0f, zero = 0.0f;
  auto gemm = [&](cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc,
                  cudaDataType_t at = CUDA_R_32F, cudaDataType_t bt = CUDA_R_32F, cudaDataType_t ct = CUDA_R_32F,
                  cublasComputeType_t compute = CUBLAS_COMPUTE_32F) {
    return cublasGemmEx(h.blas, ta, tb, m, n, k, &one, buf.data(), at, lda, buf.data(), bt, ldb, &zero, out.data(), ct,
                        ldc, compute, CUBLAS_GEMM_DEFAULT);
  };
  const auto N = CUBLAS_OP_N, T = CUBLAS_OP_T;
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 4, 6, 4), CUBLAS_STATUS_SUCCESS) << why();
  EXPECT_EQ(gemm(N, N, -1, 5, 6, 4, 6, 4), CUBLAS_STATUS_INVALID_VALUE) << "m < 0";
  EXPECT_EQ(gemm(N, N, 4, 5, -6, 4, 6, 4), CUBLAS_STATUS_INVALID_VALUE) << "k < 0";
  EXPECT_EQ(gemm(static_cast<cublasOperation_t>(5), N, 4, 5, 6, 6, 6, 4), CUBLAS_STATUS_INVALID_VALUE) << "transa";
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 3, 6, 4), CUBLAS_STATUS_INVALID_VALUE) << "lda < max(1, m) with transa N";
  EXPECT_EQ(gemm(T, N, 4, 5, 6, 4, 6, 4), CUBLAS_STATUS_INVALID_VALUE) << "lda < max(1, k) with transa T";
  EXPECT_EQ(gemm(T, N, 4, 5, 6, 6, 6, 4), CUBLAS_STATUS_SUCCESS) << why();
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 4, 5, 4), CUBLAS_STATUS_INVALID_VALUE) << "ldb < max(1, k) with transb N";
  EXPECT_EQ(gemm(N, T, 4, 5, 6, 4, 4, 4), CUBLAS_STATUS_INVALID_VALUE) << "ldb < max(1, n) with transb T";
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 4, 6, 3), CUBLAS_STATUS_INVALID_VALUE) << "ldc < max(1, m)";
  EXPECT_EQ(gemm(N, N, 0, 5, 6, 1, 6, 1), CUBLAS_STATUS_SUCCESS) << "m = 0: nothing to do, lda >= 1";
  EXPECT_EQ(gemm(N, N, 0, 5, 6, 0, 6, 1), CUBLAS_STATUS_INVALID_VALUE) << "lda < max(1, m) = 1";
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 4, 6, 4, CUDA_R_16F, CUDA_R_32F), CUBLAS_STATUS_NOT_SUPPORTED) << "Atype != Btype";
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 4, 6, 4, CUDA_R_16F, CUDA_R_16F, CUDA_R_32F, CUBLAS_COMPUTE_32I),
            CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(N, N, 4, 5, 6, 4, 6, 4, CUDA_R_8I, CUDA_R_8I, CUDA_R_8I), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(cublasGemmEx(h.blas, N, N, 4, 5, 6, nullptr, buf.data(), CUDA_R_32F, 4, buf.data(), CUDA_R_32F, 6, &zero,
                         out.data(), CUDA_R_32F, 4, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            CUBLAS_STATUS_INVALID_VALUE)
      << "alpha is NULL";
}

/// Runs fn, which must throw lowbit::simt::error naming every string in `want`.
void expect_simt_error(const std::function<void()>& fn, std::initializer_list<const char*> want) {
  try {
    fn();
    ADD_FAILURE() << "no simt::error";
  } catch (const lowbit::simt::error& e) {
    for (const char* w : want) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

// The stand-in's device accesses are checked like a kernel's: an operand that does not fit its
// simt::device_malloc allocation is reported, not read past (memcheck).
TEST(CublasStandIn, DeviceAccessesStayInTheirAllocations) {
  kt8::library_handles h;
  lt_problem pr(8, 4, 16);  // A stored 16 x 8, B 16 x 4, D 8 x 4
  kt::buffer<std::int8_t> A(16 * 8 - 1), B(16 * 4), A_ok(16 * 8);
  kt::buffer<std::int32_t> D(8 * 4), D_short(8 * 4 - 2);
  const std::int32_t one = 1, zero = 0;
  expect_simt_error(
      [&] {
        (void)cublasLtMatmul(h.lt, pr.op, &one, A.get(), pr.a, B.get(), pr.b, &zero, nullptr, pr.c, D.get(), pr.d,
                             nullptr, nullptr, 0, nullptr);
      },
      {"cublasLtMatmul", "A (128 bytes", "ends 1 bytes past the end of a 127-byte device allocation"});
  expect_simt_error(
      [&] {
        (void)cublasLtMatmul(h.lt, pr.op, &one, A_ok.get(), pr.a, B.get(), pr.b, &zero, nullptr, pr.c, D_short.get(),
                             pr.d, nullptr, nullptr, 0, nullptr);
      },
      {"cublasLtMatmul", "D (128 bytes", "past the end"});
  EXPECT_EQ(cublasLtMatmul(h.lt, pr.op, &one, A_ok.get(), pr.a, B.get(), pr.b, &zero, nullptr, pr.c, D.get(), pr.d,
                           nullptr, nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS)
      << why();
  kt::buffer<float> X(6 * 5), Y(6 * 5 - 1), C(5 * 5);
  const float onef = 1.0f, zerof = 0.0f;
  expect_simt_error(
      [&] {
        (void)cublasGemmEx(h.blas, CUBLAS_OP_T, CUBLAS_OP_N, 5, 5, 6, &onef, X.get(), CUDA_R_32F, 6, Y.get(),
                           CUDA_R_32F, 6, &zerof, C.get(), CUDA_R_32F, 5, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      },
      {"cublasGemmEx", "B (120 bytes", "past the end"});
}

#if LOWBIT_SIMT_CHECKER
// Checker build: reading device memory nothing wrote is reported (initcheck), and what the stand-in
// writes counts as written for the kernels that read it next (here the epilogue reads cuBLASLt's C).
TEST(CublasStandIn, CheckerSeesTheStandInsReadsAndWrites) {
  kt8::library_handles h;
  lt_problem pr(8, 4, 16);
  auto* raw_a = static_cast<std::int8_t*>(lowbit::simt::device_malloc(16 * 8));  // never written
  kt::buffer<std::int8_t> A(16 * 8), B(16 * 4);
  auto* D = static_cast<std::int32_t*>(lowbit::simt::device_malloc(8 * 4 * 4));  // written only by cublasLtMatmul
  const std::int32_t one = 1, zero = 0;
  expect_simt_error(
      [&] {
        (void)cublasLtMatmul(h.lt, pr.op, &one, raw_a, pr.a, B.get(), pr.b, &zero, nullptr, pr.c, D, pr.d, nullptr,
                             nullptr, 0, nullptr);
      },
      {"cublasLtMatmul", "A (128 bytes", "uninitialized"});
  ASSERT_EQ(cublasLtMatmul(h.lt, pr.op, &one, A.get(), pr.a, B.get(), pr.b, &zero, nullptr, pr.c, D, pr.d, nullptr,
                           nullptr, 0, nullptr),
            CUBLAS_STATUS_SUCCESS)
      << why();
  // D is [N = 4 rows of the output, M = 8]: as int8_matmul's C (row-major [M, N] = column-major N x M)
  // with M = 4, N = 8 read by the epilogue kernel.
  kt::buffer<float> row(std::vector<float>(4, 1.0f)), col(std::vector<float>(8, 1.0f)), out(32);
  const auto s = lowbit::cuda::int8_epilogue(D, 4, 8, row.get(), col.get(), nullptr, nullptr, dtype::f32, out.get());
  EXPECT_TRUE(s.ok()) << s.message();
  lowbit::simt::device_free(D);
  lowbit::simt::device_free(raw_a);
}
#endif

// The launchers pass the stand-in arguments it accepts, and report its refusals as errors.
TEST(CublasStandIn, LaunchersReportLibraryErrors) {
  kt8::library_handles h;
  kt::buffer<float> xo(std::vector<float>(64, 1.0f)), wo(std::vector<float>(64, 1.0f)), out(16);
  auto s = lowbit::cuda::int8_outlier_gemm_cublas(h.blas, xo.get(), wo.get(), dtype::f32, 4, 4, 16, out.get());
  ASSERT_TRUE(s.ok()) << s.message();
  for (float v : out.download()) EXPECT_EQ(v, 16.0f);
  cublasHandle_t gone = nullptr;
  ASSERT_EQ(cublasCreate(&gone), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasDestroy(gone), CUBLAS_STATUS_SUCCESS);
  s = lowbit::cuda::int8_outlier_gemm_cublas(gone, xo.get(), wo.get(), dtype::f32, 4, 4, 16, out.get());
  EXPECT_EQ(s.code(), lowbit::errc::cuda);
  EXPECT_NE(std::string(s.message()).find("cuBLAS status 1"), std::string::npos) << s.message();
  cublasLtHandle_t lt_gone = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt_gone), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasLtDestroy(lt_gone), CUBLAS_STATUS_SUCCESS);
  kt::buffer<std::int8_t> a(64), b(64);
  kt::buffer<std::int32_t> c(16);
  bool used = true;
  s = lowbit::cuda::int8_gemm_cublaslt(lt_gone, a.get(), b.get(), c.get(), 4, 4, 16, nullptr, 0, nullptr, &used);
  EXPECT_EQ(s.code(), lowbit::errc::cuda) << s.message();
  EXPECT_FALSE(used);
}

}  // namespace
