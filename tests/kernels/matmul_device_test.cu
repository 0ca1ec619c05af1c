// SPDX-License-Identifier: Apache-2.0
// The fused matmul's CUDA launcher on a GPU against the host lowbit::matmul
// (matmul_kernels_test.inl). Without a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <limits>
#include <vector>

#include "device_harness.cuh"
#include "test_util.hpp"

#define KT_REQUIRE_DEVICE()                                                                    \
  do {                                                                                         \
    if (!lowbit::cuda::device_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

#include "matmul_kernels_test.inl"
