// SPDX-License-Identifier: Apache-2.0
// The LLM.int8 launchers on a GPU against the host engine (int8_kernels_test.inl, kernel-only
// path, bit for bit), plus the cuBLASLt int8 GEMM (exact) and the cuBLAS outlier GEMM (within
// float32 rounding of the host). Without a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/cuda/int8.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "device_harness.cuh"
#include "test_util.hpp"

#include "int8_kernels_test.inl"

namespace kt8 {

// cuBLASLt's int8 GEMM equals the host's int32 products exactly on the shapes it takes, and
// refuses K % 4 != 0 without launching (the caller then runs the fallback kernel).
TEST(Int8Device, CublasLtGemmExact) {
  cublasLtHandle_t lt = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  kt::buffer<unsigned char> lt_ws(1 << 22);
  for (auto shape : {std::vector<std::int64_t>{64, 128, 256}, std::vector<std::int64_t>{1, 4096, 1024},
                     std::vector<std::int64_t>{33, 96, 64}, std::vector<std::int64_t>{8, 8, 30}}) {
    const std::int64_t M = shape[0], N = shape[1], K = shape[2];
    std::mt19937_64 rng(lowbit_test::test_seed() ^ static_cast<std::uint64_t>(M + N + K));
    std::uniform_int_distribution<int> code(-128, 127);
    std::vector<std::int8_t> A(static_cast<std::size_t>(M * K)), B(static_cast<std::size_t>(N * K));
    for (auto& v : A) v = static_cast<std::int8_t>(code(rng));
    for (auto& v : B) v = static_cast<std::int8_t>(code(rng));
    std::vector<std::int32_t> want(static_cast<std::size_t>(M * N));
    ASSERT_TRUE(lowbit::host::int8_gemm(A.data(), K, B.data(), K, want.data(), N, M, N, K).ok());
    kt::buffer<std::int8_t> da(A), db(B);
    kt::buffer<std::int32_t> dc(want.size());
    bool used = false;
    const auto s = lowbit::cuda::int8_gemm_cublaslt(lt, da.get(), db.get(), dc.get(), M, N, K, lt_ws.get(), 1 << 22,
                                                    nullptr, &used);
    ASSERT_TRUE(s.ok()) << s.message();
    if (K % 4 != 0) {
      EXPECT_FALSE(used);
      continue;
    }
    if (!used) continue;  // this GPU's cuBLASLt has no int8 kernel for the shape
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(dc.download(), want);
  }
  cublasLtDestroy(lt);
}

// The library path (cuBLASLt + cuBLAS) against the host within float rounding of the outlier sums.
TEST(Int8Device, MatmulWithLibrariesCloseToHost) {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  ASSERT_EQ(cublasLtCreate(&lt), CUBLAS_STATUS_SUCCESS);
  ASSERT_EQ(cublasCreate(&blas), CUBLAS_STATUS_SUCCESS);
  kt::buffer<unsigned char> lt_ws(1 << 22);
  const std::int64_t M = 64, K = 256, N = 96;
  const auto x = activations<lowbit::f16>(M, K, 91);
  std::vector<lowbit::f16> w(static_cast<std::size_t>(N * K));
  std::mt19937_64 rng(lowbit_test::test_seed() ^ 92);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (auto& v : w) v = lowbit::from_float<lowbit::f16>(nd(rng));
  lowbit::quant_tensor wq;
  ASSERT_TRUE(lowbit::quantize_int8_weights(w.data(), dtype::f16, N, K, wq).ok());
  std::vector<lowbit::f16> want(static_cast<std::size_t>(M * N));
  ASSERT_TRUE(lowbit::int8_matmul(x.data(), dtype::f16, M, K, wq, nullptr, want.data()).ok());
  std::vector<std::int8_t> cb(static_cast<std::size_t>(N * K));
  std::memcpy(cb.data(), wq.codes(), cb.size());
  kt::buffer<lowbit::f16> dx(x), dy(want.size());
  kt::buffer<std::int8_t> dcb(cb);
  kt::buffer<float> dscb(std::vector<float>(wq.scales(), wq.scales() + N));
  const std::size_t wsb = lowbit::cuda::int8_matmul_workspace_size(M, K, N, dtype::f16);
  kt::buffer<unsigned char> ws(wsb);
  lowbit::cuda::int8_handles h;
  h.lt = lt;
  h.blas = blas;
  h.lt_workspace = lt_ws.get();
  h.lt_workspace_bytes = 1 << 22;
  const auto s = lowbit::cuda::int8_matmul(h, dx.get(), dtype::f16, M, K, {dcb.get(), dscb.get(), N, K}, nullptr, dy.get(),
                                           6.0f, ws.get(), wsb);
  ASSERT_TRUE(s.ok()) << s.message();
  const auto got = dy.download();
  for (std::size_t i = 0; i < got.size(); ++i) {
    const float a = lowbit::to_float(got[i]), b = lowbit::to_float(want[i]);
    ASSERT_NEAR(a, b, 2e-3f * std::fabs(b) + 1e-3f) << "y element " << i;
  }
  cublasDestroy(blas);
  cublasLtDestroy(lt);
}

}  // namespace kt8
